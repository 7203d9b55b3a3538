//! The label contract against a real Docker Engine: `db-backup check` reports every malformed
//! label (naming the container and the label, and saying what is valid), one bad container never
//! stops the others, and a duplicate service name refuses both containers. (Credentials that the
//! labels point at but the container lacks: `failures::credentials_that_are_missing_...`.)
//!
//! db-backup sees every labeled container on the host, including those of other tests and test
//! binaries running at the same time: every assertion on `check` output is filtered by the names
//! of this file's own containers.

use crate::common::*;

/// A plain container that only sleeps: enough for label checks, no database needed.
fn sleeper(slug: &str, labels: &[(String, String)]) -> Container {
    let mut spec = Spec::new(BASE_IMAGE, &unique(&format!("dbb-lbl-{slug}"))).entrypoint(&["sleep", "infinity"]);
    for (k, v) in labels {
        spec = spec.label(k, v);
    }
    Container::start(spec)
}

/// `(label, message)` of every `error: container '<name>': label '<label>': <message>` line.
fn problems_of(output: &str, container: &str) -> Vec<(String, String)> {
    let prefix = format!("error: container '{container}': label '");
    output
        .lines()
        .filter_map(|line| line.strip_prefix(&prefix))
        .filter_map(|rest| rest.split_once("': "))
        .map(|(label, message)| (label.to_string(), message.to_string()))
        .collect()
}

fn ok_line_of<'a>(output: &'a str, container: &str) -> Option<&'a str> {
    let prefix = format!("ok: container '{container}':");
    output.lines().find(|l| l.starts_with(&prefix))
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// One malformed label set and what `check` must say about it.
struct Case {
    slug: &'static str,
    labels: Vec<(String, String)>,
    /// The label the error must name.
    label: &'static str,
    /// Text identifying the problem.
    problem: &'static str,
    /// Any of these says what would be valid.
    valid: &'static [&'static str],
}

fn case(
    slug: &'static str,
    labels: &[(&str, &str)],
    label: &'static str,
    problem: &'static str,
    valid: &'static [&'static str],
) -> Case {
    Case { slug, labels: pairs(labels), label, problem, valid }
}

const ENGINES: &[&str] = &["postgres, mysql, mariadb or mongo"];
const SERVICE_RE: &[&str] = &["[A-Za-z0-9][A-Za-z0-9._-]{0,63}"];
const SCHEDULE_FORMS: &[&str] = &["expected 5 (minute hour day month weekday)", "0-59"];
const ENV_RE: &[&str] = &["expected [A-Za-z_][A-Za-z0-9_]*"];
const T: (&str, &str) = ("db-backup.type", "postgres");

fn malformed_cases() -> Vec<Case> {
    let long_service = "s".repeat(65);
    let long_value = "a".repeat(1025);
    vec![
        case("type-bad", &[("db-backup.type", "oracle")], "db-backup.type", "'oracle'", ENGINES),
        case("type-missing", &[("db-backup.schedule", "@daily")], "db-backup.type", "missing", ENGINES),
        case("type-empty", &[("db-backup.type", "")], "db-backup.type", "empty", ENGINES),
        case("type-blank", &[("db-backup.type", "   ")], "db-backup.type", "empty", ENGINES),
        case("sched-garbage", &[T, ("db-backup.schedule", "banana")], "db-backup.schedule", "'banana'", SCHEDULE_FORMS),
        case(
            "sched-61",
            &[T, ("db-backup.schedule", "61 * * * *")],
            "db-backup.schedule",
            "'61 * * * *'",
            SCHEDULE_FORMS,
        ),
        case("sched-3f", &[T, ("db-backup.schedule", "0 3 *")], "db-backup.schedule", "3 fields", SCHEDULE_FORMS),
        case("sched-empty", &[T, ("db-backup.schedule", "")], "db-backup.schedule", "empty", SCHEDULE_FORMS),
        case("svc-traversal", &[T, ("db-backup.service", "../x")], "db-backup.service", "'../x'", SERVICE_RE),
        case("svc-slash", &[T, ("db-backup.service", "a/b")], "db-backup.service", "'a/b'", SERVICE_RE),
        case("svc-dotdot", &[T, ("db-backup.service", "..")], "db-backup.service", "'..'", SERVICE_RE),
        case("svc-leading-dot", &[T, ("db-backup.service", ".hidden")], "db-backup.service", "'.hidden'", SERVICE_RE),
        case("svc-65", &[T, ("db-backup.service", &long_service)], "db-backup.service", "at most 64", SERVICE_RE),
        case("svc-empty", &[T, ("db-backup.service", "")], "db-backup.service", "empty", SERVICE_RE),
        case("svc-spaces", &[T, ("db-backup.service", "my db")], "db-backup.service", "'my db'", SERVICE_RE),
        case(
            "svc-control",
            &[T, ("db-backup.service", "a\u{1}b")],
            "db-backup.service",
            "control character",
            SERVICE_RE,
        ),
        case(
            "sched-control",
            &[T, ("db-backup.schedule", "@daily\u{7}")],
            "db-backup.schedule",
            "control character",
            SCHEDULE_FORMS,
        ),
        case(
            "swarm-default",
            &[T, ("com.docker.swarm.service.name", "stack/db")],
            "db-backup.service",
            "'stack/db'",
            &["set db-backup.service"],
        ),
        case(
            "unknown-key",
            &[T, ("db-backup.shedule", "@daily")],
            "db-backup.shedule",
            "unknown label",
            &["db-backup.schedule"],
        ),
        case(
            "too-long",
            &[T, ("db-backup.databases", &long_value)],
            "db-backup.databases",
            "1025 bytes",
            &["at most 1024"],
        ),
        case(
            "dbs-empty-elem",
            &[T, ("db-backup.databases", "app,,crm")],
            "db-backup.databases",
            "empty database name",
            &["comma-separated list"],
        ),
        case(
            "dbs-dup",
            &[T, ("db-backup.databases", "app,crm,app")],
            "db-backup.databases",
            "'app' is listed twice",
            &["expected", "once"],
        ),
        case("dbs-empty", &[T, ("db-backup.databases", "")], "db-backup.databases", "empty", &["comma-separated list"]),
        case("userenv-digit", &[T, ("db-backup.user-env", "1X")], "db-backup.user-env", "'1X'", ENV_RE),
        case("pwenv-dash", &[T, ("db-backup.password-env", "A-B")], "db-backup.password-env", "'A-B'", ENV_RE),
        case("userenv-subst", &[T, ("db-backup.user-env", "$(reboot)")], "db-backup.user-env", "'$(reboot)'", ENV_RE),
        case(
            "startup-maybe",
            &[T, ("db-backup.on-startup", "maybe")],
            "db-backup.on-startup",
            "'maybe' is not a boolean",
            &["expected true or false"],
        ),
    ]
    // Non-UTF-8 label values cannot be tested here: labels travel through the Docker API as JSON
    // strings, which are always valid UTF-8 (the engine would reject or replace such bytes before
    // db-backup ever sees them). The U+FFFD branch is covered by the unit tests in labels.rs.
}

#[test]
fn check_reports_each_malformed_label_naming_container_label_and_what_is_valid() {
    let cases = malformed_cases();
    assert!(cases.len() >= 20);
    let containers: Vec<Container> = cases.iter().map(|c| sleeper(c.slug, &c.labels)).collect();
    // Two otherwise valid containers claiming one service name.
    let dup_service = unique("lbl-dup");
    let dup_labels = pairs(&[T, ("db-backup.service", &dup_service)]);
    let dup_a = sleeper("dup-a", &dup_labels);
    let dup_b = sleeper("dup-b", &dup_labels);

    let run = Backups::new().run(&["check"]);
    let out = run.all();
    assert_eq!(run.code, 2, "check must exit 2 when labels are malformed:\n{out}");

    let mut wrong = Vec::new();
    for (case, container) in cases.iter().zip(&containers) {
        let problems = problems_of(&run.stdout, &container.name);
        if let Some(ok) = ok_line_of(&run.stdout, &container.name) {
            wrong.push(format!("{}: accepted: {ok}", case.slug));
            continue;
        }
        let on_label: Vec<&String> = problems.iter().filter(|(l, _)| l == case.label).map(|(_, m)| m).collect();
        let Some(message) = on_label.iter().find(|m| m.contains(case.problem)) else {
            wrong.push(format!(
                "{}: no error on label '{}' mentioning \"{}\" for container '{}'; got {problems:?}",
                case.slug, case.label, case.problem, container.name
            ));
            continue;
        };
        if !case.valid.iter().any(|v| message.contains(v)) {
            wrong.push(format!(
                "{}: error on '{}' does not say what is valid (expected one of {:?}): {message}",
                case.slug, case.label, case.valid
            ));
        }
    }
    for me in [&dup_a, &dup_b] {
        let problems = problems_of(&run.stdout, &me.name);
        let named_both = problems.iter().any(|(label, message)| {
            label == "db-backup.service"
                && message.contains("claimed by several containers")
                && message.contains(&dup_a.name)
                && message.contains(&dup_b.name)
        });
        if !named_both || ok_line_of(&run.stdout, &me.name).is_some() {
            wrong.push(format!(
                "duplicate service: {} must be refused naming both containers; got {problems:?}",
                me.name
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} problem(s) with `check`:\n  {}\n\nfull output:\n{out}",
        wrong.len(),
        wrong.join("\n  ")
    );
}

#[test]
fn check_reports_every_problem_of_one_container_at_once() {
    // An unknown key must not hide the other problems of the same container: fixing one label
    // at a time, re-running check after each, is what "every problem at once" prevents.
    let c = sleeper(
        "many",
        &pairs(&[
            ("db-backup.type", "oracle"),
            ("db-backup.shedule", "@daily"),
            ("db-backup.on-startup", "maybe"),
            ("db-backup.service", "a/b"),
        ]),
    );
    let run = Backups::new().run(&["check"]);
    assert_eq!(run.code, 2, "{}", run.all());
    let problems = problems_of(&run.stdout, &c.name);
    let labels: Vec<&str> = problems.iter().map(|(l, _)| l.as_str()).collect();
    for expected in ["db-backup.shedule", "db-backup.type", "db-backup.on-startup", "db-backup.service"] {
        assert!(
            labels.contains(&expected),
            "check reported only {labels:?} for container '{}'; missing {expected}:\n{}",
            c.name,
            run.all()
        );
    }
}

#[test]
fn one_bad_container_never_stops_the_backup_of_the_others() {
    let svc = unique("lblgood");
    let good = postgres(&svc, &["POSTGRES_PASSWORD=good-secret"], &[]);
    psql(&good, "postgres", "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here');");
    // Bad in several ways, claiming nothing the good one has.
    let bad = sleeper(
        "bad-neighbour",
        &pairs(&[
            ("db-backup.type", "oracle"),
            ("db-backup.service", &unique("lbl-other")),
            ("db-backup.schedule", "61 * * * *"),
        ]),
    );
    let unknown = sleeper("bad-unknown", &pairs(&[T, ("db-backup.retention", "7")]));

    let backups = Backups::new();
    let run = backups.run(&["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    let listing = assert_standard_tar_gz(&archives[0]);
    assert!(listing.iter().any(|l| l == "databases/postgres.sql"), "{listing:?}");

    let check = backups.run(&["check"]);
    assert_ne!(check.code, 0, "bad labels exist, check must fail:\n{}", check.all());
    let ok = ok_line_of(&check.stdout, &good.name)
        .unwrap_or_else(|| panic!("check does not list '{}' as ok:\n{}", good.name, check.all()));
    assert!(ok.contains(&format!("service {svc}")), "{ok}");
    for refused in [&bad, &unknown] {
        assert!(
            !problems_of(&check.stdout, &refused.name).is_empty(),
            "no error for {}:\n{}",
            refused.name,
            check.all()
        );
    }
    assert!(problems_of(&check.stdout, &good.name).is_empty(), "{}", check.all());
}

#[test]
fn duplicate_service_name_refuses_both_containers_until_one_is_gone() {
    let svc = unique("lbldup");
    let first = postgres(&svc, &["POSTGRES_PASSWORD=dup-secret"], &[]);
    let second = postgres(&svc, &["POSTGRES_PASSWORD=dup-secret"], &[]);
    let backups = Backups::new();

    let refused = backups.run(&["backup", &svc]);
    assert_eq!(refused.code, 2, "{}", refused.all());
    let out = refused.all();
    assert!(out.contains(&first.name) && out.contains(&second.name), "must name both containers:\n{out}");
    assert!(out.contains("claimed by several containers"), "{out}");
    assert!(backups.archives(&svc).is_empty(), "nothing may be written while the name is claimed twice");

    let check = backups.run(&["check"]);
    for c in [&first, &second] {
        assert!(ok_line_of(&check.stdout, &c.name).is_none(), "{}", check.all());
        let problems = problems_of(&check.stdout, &c.name);
        assert!(
            problems
                .iter()
                .any(|(l, m)| l == "db-backup.service" && m.contains(&first.name) && m.contains(&second.name)),
            "{problems:?}"
        );
    }

    drop(second);
    let run = backups.run(&["backup", &svc]).ok();
    let archives = backups.archives(&svc);
    assert_eq!(archives.len(), 1, "{}", run.all());
    let manifest =
        std::process::Command::new("tar").arg("-xzOf").arg(&archives[0]).arg("manifest.json").output().unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(manifest["container"]["name"], first.name.as_str());
}
