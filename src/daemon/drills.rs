//! The daemon's side of restore drills: what `.drill.json` remembers at start, the drill loop's
//! reports (status entry and alerting hub), and drills run by hand that the journal reports.

use chrono::{DateTime, Utc};

use super::{Ctx, Owned};
use crate::alerting::{DrillReport, DrillsOnDisk};
use crate::drill::run::{DrillOutcome, DrillRunError};
use crate::status::journal::ManualRun;
use crate::status::DrillRun;
use crate::store::Store;

/// The drills `<service>/.drill.json` remembers: the newest, and the newest that passed.
pub(super) fn drills_on_disk(store: &Store, service: &str) -> DrillsOnDisk {
    let records = crate::drill::record::load_records(&store.root().join(service));
    let newest = records.iter().max_by_key(|(_, r)| r.drilled_at);
    DrillsOnDisk {
        last: newest.map(|(archive, r)| DrillReport {
            started_at: r.drilled_at,
            finished_at: r.drilled_at,
            archive: Some(archive.clone()),
            outcome: if r.ok { Ok(r.result.clone()) } else { Err(r.result.clone()) },
        }),
        last_success: records.values().filter(|r| r.ok).map(|r| r.drilled_at).max(),
    }
}

pub(super) fn drill_run(report: &DrillReport) -> DrillRun {
    DrillRun {
        started_at: report.started_at,
        finished_at: report.finished_at,
        ok: report.outcome.is_ok(),
        archive: report.archive.clone(),
        detail: match &report.outcome {
            Ok(s) | Err(s) => s.clone(),
        },
    }
}

/// A drill's result as the hub and the status file take it.
fn drill_report(started_at: DateTime<Utc>, result: &Result<DrillOutcome, DrillRunError>) -> DrillReport {
    let (archive, outcome) = match result {
        Ok(done) => (Some(done.archive.clone()), Ok(done.summary())),
        Err(e @ DrillRunError::Mismatch { archive, .. }) => (Some(archive.clone()), Err(e.to_string())),
        Err(e) => (None, Err(e.to_string())),
    };
    DrillReport { started_at, finished_at: Utc::now(), archive, outcome }
}

/// The daemon's ears for one service's drill loop: its status entry and the alerting hub.
pub(super) struct DrillReports<'a> {
    pub(super) ctx: &'a Ctx,
    pub(super) task: &'a Owned,
}

impl crate::drill::schedule::DrillObserver for DrillReports<'_> {
    fn next_drill(&self, at: Option<DateTime<Utc>>) {
        self.ctx.update_service(self.task, |s| s.next_drill = at);
        self.ctx.alerts.set_next_drill(self.task.spec.service.as_str(), at);
    }

    fn drill_finished(&self, started_at: DateTime<Utc>, result: &Result<DrillOutcome, DrillRunError>) {
        let report = drill_report(started_at, result);
        self.ctx.update_service(self.task, |s| s.last_drill = Some(drill_run(&report)));
        self.ctx.alerts.drill_finished(self.task.spec.service.as_str(), report);
    }
}

/// A run by hand that the journal reports: a drill reaches the service's status entry, the
/// metrics and notifications as a scheduled one does.
pub(super) fn manual_run(ctx: &Ctx, run: &ManualRun) {
    if run.command != "drill" {
        return;
    }
    let report = DrillReport {
        started_at: run.started_at,
        finished_at: run.finished_at,
        archive: None,
        outcome: if run.ok { Ok(run.detail.clone()) } else { Err(run.detail.clone()) },
    };
    let followed = {
        let mut state = ctx.lock();
        let entry = state.status.services.iter_mut().find(|s| s.service == run.service);
        entry.map(|s| s.last_drill = Some(drill_run(&report))).is_some()
    };
    if followed {
        ctx.write_status();
        ctx.alerts.drill_finished(&run.service, report);
    }
}
