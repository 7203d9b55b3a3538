//! The status page (pure): one server-rendered HTML document, inline CSS and SVG, no script and
//! no external asset. Every text that comes from outside (service and container names, schedules,
//! error texts, label problems) is escaped: it is hostile input.

use std::fmt::Write;

use chrono::{DateTime, Utc};

use super::chart::{runs_chart, seconds};
use super::escape::esc;
use super::view::{Condition, ServiceView, StatusView};
use crate::output::human_bytes;

/// The page reloads itself this often (a meta refresh: no script).
const REFRESH_SECONDS: u32 = 60;

pub fn render(view: &StatusView) -> String {
    let mut services: Vec<&ServiceView> = view.services.iter().collect();
    services.sort_by(|a, b| a.condition().cmp(&b.condition()).then_with(|| a.service.cmp(&b.service)));
    let mut html = String::with_capacity(8192 + 4096 * services.len());
    let _ = write!(
        html,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECONDS}\">\
         <title>{title}</title><style>{STYLE}</style></head><body>",
        title = esc(&format!("{} db-backup on {}", summary_mark(&services), view.host))
    );
    let _ = write!(
        html,
        "<header><h1>db-backup <span class=\"host\">on {}</span></h1><p class=\"summary\">{}</p></header>",
        esc(&view.host),
        summary(&services, view.generated_at)
    );
    if !view.engine_connected {
        html.push_str(
            "<p class=\"banner\">The Docker Engine cannot be reached: no backup can run until it answers.</p>",
        );
    }
    if !view.problems.is_empty() {
        html.push_str("<section class=\"problems\"><h2>Label problems</h2><ul>");
        for p in &view.problems {
            let _ = write!(html, "<li>{}</li>", esc(p));
        }
        html.push_str("</ul></section>");
    }
    if services.is_empty() {
        html.push_str("<p class=\"empty\">No labeled database container is running.</p>");
    }
    html.push_str("<main>");
    for s in services {
        service_card(&mut html, s, view.generated_at);
    }
    let _ = write!(
        html,
        "</main><footer>Updated {} · reloads every {REFRESH_SECONDS} s · <a href=\"metrics\">metrics</a></footer></body></html>",
        esc(&absolute(view.generated_at))
    );
    html
}

fn summary_mark(services: &[&ServiceView]) -> &'static str {
    if services.iter().any(|s| matches!(s.condition(), Condition::Failed | Condition::Stale)) {
        "✗"
    } else {
        "✓"
    }
}

fn summary(services: &[&ServiceView], now: DateTime<Utc>) -> String {
    let count = |c: Condition| services.iter().filter(|s| s.condition() == c).count();
    let mut parts = vec![format!("{} service{}", services.len(), if services.len() == 1 { "" } else { "s" })];
    for (c, class) in [(Condition::Failed, "bad"), (Condition::Stale, "warn"), (Condition::Running, "")] {
        let n = count(c);
        if n > 0 {
            parts.push(format!("<strong class=\"{class}\">{n} {}</strong>", c.label()));
        }
    }
    let ok = count(Condition::Ok);
    if ok > 0 {
        parts.push(format!("{ok} ok"));
    }
    format!("{} · <span class=\"nowrap\">{}</span>", parts.join(" · "), esc(&absolute(now)))
}

fn service_card(html: &mut String, s: &ServiceView, now: DateTime<Utc>) {
    let c = s.condition();
    let _ = write!(
        html,
        "<section class=\"card {class}\" id=\"service-{id}\"><div class=\"head\"><h2>{name}</h2>\
         <span class=\"badge {class}\">{label}</span></div><dl>",
        class = c.class(),
        id = esc(&s.service),
        name = esc(&s.service),
        label = c.label()
    );
    let mut row = |k: &str, v: String| {
        let _ = write!(html, "<dt>{k}</dt><dd>{v}</dd>");
    };
    row("Engine", esc(&s.engine));
    row("Container", esc(&s.container));
    row("Schedule", format!("<code>{}</code>", esc(&s.schedule)));
    row("Next run", s.next_run.map(|t| when(t, now)).unwrap_or_else(|| "—".into()));
    match s.last_run() {
        Some(run) => {
            let result = if run.ok { "ok" } else { "failed" };
            row(
                "Last run",
                format!("{result}, {} · {}", when(run.finished_at, now), esc(&seconds(run.duration_seconds))),
            );
        }
        None => row("Last run", "—".into()),
    }
    let last_good = s.last_success.map(|t| when(t, now)).unwrap_or_else(|| "never".into());
    row("Last success", last_good);
    let size = s.last_archive_bytes.or_else(|| s.runs.iter().rev().find_map(|r| r.bytes));
    row("Last archive", size.map(|b| esc(&human_bytes(b))).unwrap_or_else(|| "—".into()));
    if let Some(schedule) = &s.drill_schedule {
        let next = s.next_drill.map(|t| format!(", next {}", when(t, now))).unwrap_or_default();
        row("Drills", format!("<code>{}</code>{next}", esc(schedule)));
    }
    if let Some(d) = &s.last_drill {
        let (class, result) = if d.ok { ("drill-ok", "passed") } else { ("drill-failed", "FAILED") };
        let archive = d.archive.as_deref().map(|a| format!(" · {}", esc(a))).unwrap_or_default();
        row("Last drill", format!("<span class=\"{class}\">{result}</span>, {}{archive}", when(d.finished_at, now)));
    }
    html.push_str("</dl>");
    if let Some(error) = s.last_run().and_then(|r| r.error.as_deref()) {
        let _ = write!(html, "<p class=\"error\"><span>Error</span> {}</p>", esc(error));
    }
    match &s.last_drill {
        Some(d) if !d.ok => {
            let _ = write!(html, "<p class=\"error\"><span>Drill</span> {}</p>", esc(&d.detail));
        }
        Some(d) => {
            let _ = write!(html, "<p class=\"drill\">{}</p>", esc(&d.detail));
        }
        None => {}
    }
    if s.stale {
        html.push_str("<p class=\"note\">No good archive for longer than the stale limit.</p>");
    }
    let _ = write!(html, "<figure>{}</figure></section>", runs_chart(&s.runs));
}

fn absolute(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// `2026-11-29 03:00 UTC (in 2 h 5 min)`.
fn when(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let delta = t - now;
    let secs = delta.num_seconds().unsigned_abs();
    let span = if secs < 60 {
        "less than a minute".to_string()
    } else if secs < 3600 {
        format!("{} min", secs / 60)
    } else if secs < 2 * 86_400 && !(secs / 60).is_multiple_of(60) {
        format!("{} h {} min", secs / 3600, secs / 60 % 60)
    } else if secs < 2 * 86_400 {
        format!("{} h", secs / 3600)
    } else {
        format!("{} days", secs / 86_400)
    };
    let relative = if delta.num_seconds() >= 0 { format!("in {span}") } else { format!("{span} ago") };
    format!("{} <span class=\"rel\">({})</span>", esc(&absolute(t)), esc(&relative))
}

const STYLE: &str = "\
:root{--bg:#f5f6f8;--card:#fff;--fg:#1d2430;--muted:#5d6778;--line:#d9dde4;--ok:#2f8f5b;--bad:#c62f2f;\
--warn:#b7791f;--run:#2b6cb0;--accent:#4a5bd4;color-scheme:light dark}\
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--card:#1d2128;--fg:#e6e9ee;--muted:#9aa3b2;--line:#343a45;\
--ok:#4cc17f;--bad:#f06262;--warn:#e0a84a;--run:#63a4ff;--accent:#8c9bff}}\
*{box-sizing:border-box}body{margin:0;padding:1rem;background:var(--bg);color:var(--fg);\
font:15px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}\
header h1{margin:0;font-size:1.4rem}.host{color:var(--muted);font-weight:400}\
.summary{margin:.25rem 0 1rem;color:var(--muted)}.summary .bad{color:var(--bad)}.summary .warn{color:var(--warn)}\
.banner,.problems{background:var(--card);border-left:4px solid var(--bad);padding:.6rem .9rem;margin:0 0 1rem;border-radius:6px}\
.problems h2{font-size:1rem;margin:0 0 .3rem}.problems ul{margin:0;padding-left:1.2rem}\
main{display:grid;gap:1rem;grid-template-columns:repeat(auto-fill,minmax(min(100%,23rem),1fr))}\
.card{background:var(--card);border:1px solid var(--line);border-top:4px solid var(--ok);border-radius:8px;padding:.8rem 1rem;min-width:0}\
.card.failed{border-top-color:var(--bad)}.card.stale{border-top-color:var(--warn)}.card.running{border-top-color:var(--run)}\
.card.idle{border-top-color:var(--line)}\
.head{display:flex;align-items:center;justify-content:space-between;gap:.5rem}\
.head h2{margin:0;font-size:1.15rem;overflow-wrap:anywhere}\
.badge{font-size:.8rem;font-weight:600;padding:.1rem .55rem;border-radius:999px;color:#fff;background:var(--ok);white-space:nowrap}\
.badge.failed{background:var(--bad)}.badge.stale{background:var(--warn)}.badge.running{background:var(--run)}\
.badge.idle{background:var(--muted)}\
dl{display:grid;grid-template-columns:auto 1fr;gap:.15rem .8rem;margin:.6rem 0}dt{color:var(--muted)}\
dd{margin:0;overflow-wrap:anywhere}code{font-size:.9em}.rel{color:var(--muted)}\
.error{margin:.4rem 0;padding:.45rem .6rem;border-radius:6px;background:color-mix(in srgb,var(--bad) 12%,transparent);\
white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.4 ui-monospace,Menlo,Consolas,monospace;max-height:9rem;overflow:auto}\
.error span{font:600 .8rem system-ui,sans-serif;color:var(--bad);margin-right:.3rem}\
.note{color:var(--warn);margin:.3rem 0}.drill{color:var(--muted);margin:.3rem 0;font-size:.9em}\
.drill-ok{color:var(--ok);font-weight:600}.drill-failed{color:var(--bad);font-weight:600}\
figure{margin:.5rem 0 0}.chart{width:100%;height:auto;display:block}\
.chart .axis{font:9px system-ui,sans-serif;fill:var(--muted)}.chart .base{stroke:var(--line);stroke-width:1}\
.chart .bar{fill:var(--accent)}.chart .bar.fail,.chart .dot.fail{fill:var(--bad)}\
.chart .line{fill:none;stroke:var(--muted);stroke-width:1.2}.chart .dot{fill:var(--fg)}\
.nochart,.empty{color:var(--muted)}footer{margin-top:1.2rem;color:var(--muted);font-size:.85rem}\
footer a{color:inherit}.nowrap{white-space:nowrap}";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::RunPoint;
    use crate::http::DrillPoint;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 29, 12, 0, 0).unwrap()
    }

    fn view(services: Vec<ServiceView>) -> StatusView {
        StatusView { host: "host<1>".into(), generated_at: now(), engine_connected: true, services, problems: vec![] }
    }

    #[test]
    fn hostile_text_is_escaped_everywhere() {
        let evil = "<script>alert(1)</script>\"'&";
        let mut svc = ServiceView {
            service: "db".into(),
            engine: evil.into(),
            container: evil.into(),
            schedule: evil.into(),
            ..Default::default()
        };
        svc.runs.push(RunPoint::failure(now(), 1.0, evil));
        let mut v = view(vec![svc]);
        v.problems.push(evil.into());
        let html = render(&v);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("\"'&<"));
        assert_eq!(html.matches("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;").count(), 5);
        assert!(html.contains("host&lt;1&gt;"));
    }

    #[test]
    fn failed_and_stale_services_come_first_with_their_error() {
        let ok = ServiceView { service: "a-ok".into(), last_success: Some(now()), ..Default::default() };
        let stale = ServiceView { service: "b-stale".into(), stale: true, ..Default::default() };
        let mut failed = ServiceView { service: "c-failed".into(), ..Default::default() };
        failed.runs.push(RunPoint::failure(now(), 1.0, "pg_dump: connection refused"));
        let html = render(&view(vec![ok, stale, failed]));
        let pos = |s: &str| html.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(pos("id=\"service-c-failed\"") < pos("id=\"service-b-stale\""));
        assert!(pos("id=\"service-b-stale\"") < pos("id=\"service-a-ok\""));
        assert!(html.contains("pg_dump: connection refused"));
        assert!(html.contains(
            "3 services · <strong class=\"bad\">1 failed</strong> · <strong class=\"warn\">1 stale</strong> · 1 ok"
        ));
        assert!(html.starts_with("<!doctype html>") && html.ends_with("</html>"));
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
    }

    #[test]
    fn the_last_drill_is_shown_with_its_result_escaped() {
        let mut passed =
            ServiceView { service: "a".into(), drill_schedule: Some("0 5 * * 0".into()), ..Default::default() };
        passed.last_drill = Some(DrillPoint {
            finished_at: now() - chrono::Duration::hours(3),
            ok: true,
            archive: Some("2026-11-29T05-00-00Z.tar.gz".into()),
            detail: "database app: 12 tables, 5,123,456 rows matched".into(),
        });
        let mut failed = ServiceView { service: "b".into(), ..Default::default() };
        failed.last_drill = Some(DrillPoint {
            finished_at: now(),
            ok: false,
            archive: None,
            detail: "table <b>x</b>: 4 rows restored, 5 backed up".into(),
        });
        let html = render(&view(vec![passed, failed]));
        assert!(html.contains("<dt>Drills</dt><dd><code>0 5 * * 0</code></dd>"), "{html}");
        assert!(html.contains("<span class=\"drill-ok\">passed</span>, 2026-11-29 09:00 UTC"), "{html}");
        assert!(html.contains("<p class=\"drill\">database app: 12 tables, 5,123,456 rows matched</p>"));
        assert!(html.contains("<span class=\"drill-failed\">FAILED</span>"), "{html}");
        assert!(html.contains("<p class=\"error\"><span>Drill</span> table &lt;b&gt;x&lt;/b&gt;: 4 rows restored"));
        assert!(!html.contains("<b>x"));
    }

    #[test]
    fn times_are_absolute_with_a_relative_hint() {
        let next = now() + chrono::Duration::minutes(125);
        assert_eq!(when(next, now()), "2026-11-29 14:05 UTC <span class=\"rel\">(in 2 h 5 min)</span>");
        assert!(when(now() - chrono::Duration::days(3), now()).contains("(3 days ago)"));
        assert!(when(now() - chrono::Duration::hours(3), now()).contains("(3 h ago)"));
    }
}
