//! The engine stream alone: what bounds moving a dump's bytes out of its container, and whether
//! two dumps in flight or larger read buffers move that bound (issue 14). Run by bench/stream.sh,
//! which makes the container and its databases:
//!
//!     cargo bench --bench stream -- CONTAINER DB_A DB_B [--single DB] [--runs N]
//!
//! Every method dumps DB_A and DB_B (`pg_dump -U postgres`), one after the other ("1 at a
//! time") or both at once ("2 at once"), and throws the bytes away:
//!
//! - `own`: inside the container, `sh -c 'pg_dump … > /dev/null'` (the database's own speed);
//! - `cli`: `docker exec … pg_dump …` with its stdout on /dev/null (the Docker CLI's stream);
//! - `api N`: the Engine API through bollard, as db-backup reads a dump, with an N-byte read
//!   buffer (db-backup: 256 KiB);
//! - `api 256 KiB, stdbuf -oN`: the same, pg_dump's stdout buffered in N bytes by coreutils'
//!   `stdbuf`, so the exec pipe is written in N-byte writes instead of stdio's 4 KiB (what
//!   db-backup's dump scripts do where the container has a working `stdbuf`).
//!
//! Methods alternate round by round; each figure is the median of `--runs` rounds. CPU seconds
//! come from /proc: the whole machine, the Docker engine's processes (dockerd, containerd, the
//! shims), and this process with its children (the docker CLI). `--single DB` repeats the
//! one-database methods on DB (pgbench, whose dump the stream bounds even with compression).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecOptions, StartExecResults};
use bollard::Docker;
use futures_util::StreamExt;

const KIB: usize = 1024;

#[derive(Clone, Copy, Debug)]
enum Way {
    Own,
    Cli,
    Api { capacity: usize, stdbuf: Option<&'static str> },
}

impl Way {
    fn label(self) -> String {
        match self {
            Way::Own => "own (inside, > /dev/null)".into(),
            Way::Cli => "cli (docker exec > /dev/null)".into(),
            Way::Api { capacity, stdbuf: None } => format!("api, {} read buffer", size(capacity)),
            Way::Api { capacity, stdbuf: Some(n) } => format!("api, {} read buffer, stdbuf -o{n}", size(capacity)),
        }
    }
}

fn size(bytes: usize) -> String {
    if bytes >= KIB * KIB {
        format!("{} MiB", bytes / KIB / KIB)
    } else {
        format!("{} KiB", bytes / KIB)
    }
}

#[derive(Clone, Copy, Debug, Default)]
struct Sample {
    wall: f64,
    bytes: u64,
    frames: u64,
    machine: f64,
    engine: f64,
    own: f64,
}

/// One method on one set of databases, and what each round measured.
struct Case {
    label: String,
    way: Way,
    dbs: Vec<String>,
    together: bool,
    samples: Vec<Sample>,
}

struct Args {
    container: String,
    dbs: Vec<String>,
    single: Option<String>,
    runs: usize,
}

fn parse_args() -> Result<Args, String> {
    let mut positional = Vec::new();
    let mut single = None;
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--single" => single = Some(args.next().ok_or("--single needs a database name")?),
            "--runs" => {
                let value = args.next().ok_or("--runs needs a number")?;
                runs = value.parse().map_err(|_| format!("--runs: {value:?} is not a number"))?;
            }
            // cargo bench passes --bench to every bench target.
            "--bench" => {}
            _ => positional.push(arg),
        }
    }
    let [container, a, b] = <[String; 3]>::try_from(positional)
        .map_err(|_| "usage: cargo bench --bench stream -- CONTAINER DB_A DB_B [--single DB] [--runs N]")?;
    Ok(Args { container, dbs: vec![a, b], single, runs: runs.max(1) })
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a configuration value.
    (unsafe { libc::sysconf(libc::_SC_CLK_TCK) }) as f64
}

fn machine_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else { return 0.0 };
    let f: Vec<f64> = line.split_whitespace().skip(1).filter_map(|v| v.parse().ok()).collect();
    // user nice system (idle) (iowait) irq softirq steal
    let busy = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| f.get(i)).sum::<f64>();
    busy / clock_ticks()
}

/// user + system seconds of every dockerd, containerd and containerd-shim process.
fn engine_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    let mut ticks = 0.0;
    for entry in dir.flatten() {
        let path = entry.path();
        let comm = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !matches!(comm.trim(), "dockerd" | "containerd" | "containerd-shim") {
            continue;
        }
        let stat = std::fs::read_to_string(path.join("stat")).unwrap_or_default();
        let Some((_, after)) = stat.rsplit_once(") ") else { continue };
        let fields: Vec<&str> = after.split_whitespace().collect();
        // After the command name: utime and stime are the 12th and 13th fields.
        ticks += [11, 12].iter().filter_map(|&i| fields.get(i)?.parse::<f64>().ok()).sum::<f64>();
    }
    ticks / clock_ticks()
}

/// user + system seconds of this process and its waited-for children.
fn own_cpu() -> f64 {
    let secs = |who| {
        // SAFETY: getrusage writes into the zeroed struct it is given.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut usage) };
        let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
        t(usage.ru_utime) + t(usage.ru_stime)
    };
    secs(libc::RUSAGE_SELF) + secs(libc::RUSAGE_CHILDREN)
}

fn dump_argv(db: &str, way: Way) -> Vec<String> {
    let quoted = format!("'{}'", db.replace('\'', r"'\''"));
    match way {
        Way::Own => vec!["sh".into(), "-c".into(), format!("pg_dump -U postgres {quoted} > /dev/null")],
        Way::Api { stdbuf: Some(n), .. } => {
            vec!["stdbuf".into(), format!("-o{n}"), "pg_dump".into(), "-U".into(), "postgres".into(), db.into()]
        }
        Way::Cli | Way::Api { .. } => vec!["pg_dump".into(), "-U".into(), "postgres".into(), db.into()],
    }
}

/// One dump through the Docker CLI; (bytes, frames) are not seen and reported as 0.
fn dump_cli(container: &str, argv: &[String]) -> Result<(u64, u64), String> {
    let status = Command::new("docker")
        .arg("exec")
        .arg(container)
        .args(argv)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("docker exec: {e}"))?;
    if !status.success() {
        return Err(format!("docker exec {container} {argv:?}: {status}"));
    }
    Ok((0, 0))
}

/// One dump through the Engine API, as db-backup's `run_streaming_out` reads it.
async fn dump_api(docker: &Docker, container: &str, argv: Vec<String>, capacity: usize) -> Result<(u64, u64), String> {
    let options = CreateExecOptions {
        cmd: Some(argv),
        attach_stdout: Some(true),
        attach_stderr: Some(true),
        tty: Some(false),
        ..Default::default()
    };
    let exec = docker.create_exec(container, options).await.map_err(|e| e.to_string())?;
    let start = StartExecOptions { detach: false, tty: false, output_capacity: Some(capacity) };
    let started = docker.start_exec(&exec.id, Some(start)).await.map_err(|e| e.to_string())?;
    let StartExecResults::Attached { mut output, .. } = started else { return Err("exec detached".into()) };
    let (mut bytes, mut frames) = (0u64, 0u64);
    while let Some(frame) = output.next().await {
        if let bollard::container::LogOutput::StdOut { message } = frame.map_err(|e| e.to_string())? {
            bytes += message.len() as u64;
            frames += 1;
        }
    }
    let inspect = docker.inspect_exec(&exec.id).await.map_err(|e| e.to_string())?;
    match inspect.exit_code {
        Some(0) => Ok((bytes, frames)),
        code => Err(format!("dump in {container} ended with {code:?}")),
    }
}

async fn dump(docker: &Docker, container: &str, db: &str, way: Way) -> Result<(u64, u64), String> {
    let argv = dump_argv(db, way);
    match way {
        Way::Own | Way::Cli => {
            let container = container.to_owned();
            tokio::task::spawn_blocking(move || dump_cli(&container, &argv)).await.map_err(|e| e.to_string())?
        }
        Way::Api { capacity, .. } => dump_api(docker, container, argv, capacity).await,
    }
}

async fn measure(docker: &Docker, container: &str, dbs: &[String], way: Way, together: bool) -> Result<Sample, String> {
    let before = (machine_cpu(), engine_cpu(), own_cpu());
    let started = Instant::now();
    let results = if together {
        futures_util::future::join_all(dbs.iter().map(|db| dump(docker, container, db, way))).await
    } else {
        let mut results = Vec::new();
        for db in dbs {
            results.push(dump(docker, container, db, way).await);
        }
        results
    };
    let wall = started.elapsed().as_secs_f64();
    let mut sample = Sample {
        wall,
        machine: machine_cpu() - before.0,
        engine: engine_cpu() - before.1,
        own: own_cpu() - before.2,
        ..Sample::default()
    };
    for result in results {
        let (bytes, frames) = result?;
        sample.bytes += bytes;
        sample.frames += frames;
    }
    Ok(sample)
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn report(title: &str, rows: &[Case], dump_bytes: u64) {
    println!("\n## {title}\n");
    println!("| method | wall s | MB/s | busy cores | machine CPU s | engine CPU s | bench CPU s | mean frame |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for Case { label, samples, .. } in rows {
        let m = |f: fn(&Sample) -> f64| median(samples.iter().map(f).collect());
        let wall = m(|s| s.wall);
        let frames = m(|s| s.frames as f64);
        let frame = if frames > 0.0 { size((m(|s| s.bytes as f64) / frames) as usize) } else { "—".into() };
        println!(
            "| {label} | {wall:.2} | {:.0} | {:.2} | {:.1} | {:.1} | {:.1} | {frame} |",
            dump_bytes as f64 / 1e6 / wall,
            m(|s| s.machine) / wall,
            m(|s| s.machine),
            m(|s| s.engine),
            m(|s| s.own),
        );
    }
}

fn ways() -> Vec<Way> {
    vec![
        Way::Own,
        Way::Cli,
        Way::Api { capacity: 32 * KIB, stdbuf: None },
        Way::Api { capacity: 256 * KIB, stdbuf: None },
        Way::Api { capacity: 1024 * KIB, stdbuf: None },
        Way::Api { capacity: 256 * KIB, stdbuf: Some("64K") },
        Way::Api { capacity: 256 * KIB, stdbuf: Some("1M") },
    ]
}

async fn run(args: Args) -> Result<(), String> {
    let docker = Docker::connect_with_defaults().map_err(|e| e.to_string())?;
    // The dump's size, once, through the API (and a warm-up of the server's caches).
    let mut dump_bytes = 0;
    for db in &args.dbs {
        dump_bytes += dump_api(&docker, &args.container, dump_argv(db, Way::Cli), 256 * KIB).await?.0;
    }
    let single_bytes = match &args.single {
        Some(db) => dump_api(&docker, &args.container, dump_argv(db, Way::Cli), 256 * KIB).await?.0,
        None => 0,
    };
    // Every measured case in the order the rounds run them: per way, both databases one after the
    // other and at once, then the single database alone.
    let mut cases: Vec<Case> = Vec::new();
    for way in ways() {
        for together in [false, true] {
            let label = format!("{}, {}", way.label(), if together { "2 at once" } else { "1 at a time" });
            cases.push(Case { label, way, dbs: args.dbs.clone(), together, samples: Vec::new() });
        }
        if let Some(db) = &args.single {
            cases.push(Case { label: way.label(), way, dbs: vec![db.clone()], together: false, samples: Vec::new() });
        }
    }
    for round in 1..=args.runs {
        eprintln!("round {round} of {}", args.runs);
        for case in &mut cases {
            case.samples.push(measure(&docker, &args.container, &case.dbs, case.way, case.together).await?);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let (two, one): (Vec<Case>, Vec<Case>) = cases.into_iter().partition(|case| case.dbs.len() == 2);
    let mb = |b: u64| b as f64 / 1e6;
    report(&format!("{} and {}: {:.0} MB of dump in all", args.dbs[0], args.dbs[1], mb(dump_bytes)), &two, dump_bytes);
    if let Some(db) = &args.single {
        report(&format!("{db} alone: {:.0} MB of dump", mb(single_bytes)), &one, single_bytes);
    }
    Ok(())
}

fn main() {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    if let Err(e) = runtime.block_on(run(args)) {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}
