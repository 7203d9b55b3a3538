//! Throughput of the row counters (src/rowcount/) against the rate a backup reads a dump.
//!
//!     cargo bench --bench rowcount                     # synthetic dumps, 256 MB each
//!     DBB_BENCH_DUMP=dump.sql DBB_BENCH_ENGINE=postgres cargo bench --bench rowcount
//!     DBB_BENCH_TSV=1 …   one line `bytes<TAB>cpu_seconds<TAB>rows` instead (bench/drill.sh)
//!
//! The synthetic dumps have the shape of bench/'s "realistic" set (id, md5 hex, free text with
//! quotes, a timestamp, a small JSON document per row): PostgreSQL COPY text, MariaDB extended
//! INSERTs of about 1 MB, and a mongodump archive. Each is fed in 32 KiB chunks, like the engine's
//! exec frames; the best of 5 runs, in CPU time of the counting thread, is reported with what it
//! costs a 1 GB backup.

use std::time::Duration;

use db_backup::rowcount::counter_for;
use db_backup::vocab::{EngineKind, EntryRole};

const SIZE: usize = 256 * 1024 * 1024;
const CHUNK: usize = 32 * 1024;
const RUNS: usize = 5;
/// From README's Performance section (1 GB realistic PostgreSQL set): the exec stream alone
/// takes 9.48 s, a level-6 backup 15.04 s and about 29 core-seconds on the 2 cores.
const STREAM_SECS_PER_GB: f64 = 9.48;
const BACKUP_SECS_PER_GB: f64 = 15.04;
const BACKUP_CORE_SECS_PER_GB: f64 = 29.0;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const WORDS: [&str; 16] = [
    "lorem",
    "brisk",
    "it's",
    "quay",
    "(paren)",
    "comma,",
    "semi;",
    "tr\u{e8}s",
    "ch\u{e2}teau",
    "o'clock",
    "data",
    "blue",
    "\u{65e5}\u{672c}",
    "x",
    "thirty",
    "event",
];

fn text(rng: &mut Rng) -> String {
    let n = 8 + rng.below(30);
    (0..n).map(|_| WORDS[rng.below(WORDS.len() as u64) as usize]).collect::<Vec<_>>().join(" ")
}

fn postgres_dump() -> Vec<u8> {
    let mut rng = Rng(0x2026_1125);
    let mut out =
        b"--\n-- PostgreSQL database dump\n--\n\nCOPY public.events (id, md5, body, at, doc) FROM stdin;\n".to_vec();
    let mut id = 0u64;
    while out.len() < SIZE {
        id += 1;
        let line = format!(
            "{id}\t{:032x}\t{}\t2026-11-25 03:{:02}:{:02}.{:06}+00\t{{\"source\": \"web\", \"n\": {}}}\n",
            rng.next() as u128 * 31,
            text(&mut rng).replace('\\', "\\\\"),
            rng.below(60),
            rng.below(60),
            rng.below(1_000_000),
            rng.below(1000)
        );
        out.extend_from_slice(line.as_bytes());
    }
    out.extend_from_slice(b"\\.\n\n--\n-- PostgreSQL database dump complete\n--\n");
    out
}

fn mysql_dump() -> Vec<u8> {
    let mut rng = Rng(0x2026_1126);
    let mut out = b"-- MariaDB dump 10.19\nCREATE TABLE `events` (`id` int) ENGINE=InnoDB;\n".to_vec();
    let mut id = 0u64;
    while out.len() < SIZE {
        let mut stmt = String::from("INSERT INTO `events` VALUES ");
        while stmt.len() < 1024 * 1024 {
            id += 1;
            let body = text(&mut rng).replace('\\', "\\\\").replace('\'', "\\'");
            stmt.push_str(&format!(
                "({id},'{:032x}','{body}','2026-11-25 03:{:02}:{:02}.{:06}','{{\\\"source\\\": \\\"web\\\", \\\"n\\\": {}}}'),",
                rng.next() as u128 * 31,
                rng.below(60),
                rng.below(60),
                rng.below(1_000_000),
                rng.below(1000)
            ));
        }
        stmt.pop();
        stmt.push_str(";\n");
        out.extend_from_slice(stmt.as_bytes());
    }
    out.extend_from_slice(b"-- Dump completed on 2026-11-25  3:00:00\n");
    out
}

fn bson_doc(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, value) in fields {
        body.push(0x02);
        body.extend_from_slice(name.as_bytes());
        body.push(0);
        body.extend_from_slice(&((value.len() + 1) as i32).to_le_bytes());
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    let mut out = ((body.len() + 5) as i32).to_le_bytes().to_vec();
    out.extend_from_slice(&body);
    out.push(0);
    out
}

fn mongo_archive() -> Vec<u8> {
    let mut rng = Rng(0x2026_1127);
    let mut out = vec![0x6d, 0xe2, 0x99, 0x81];
    out.extend(bson_doc(&[("version", "0.1")]));
    out.extend(bson_doc(&[("db", "app"), ("collection", "events"), ("metadata", "{}"), ("type", "")]));
    out.extend_from_slice(&[0xff; 4]);
    while out.len() < SIZE {
        out.extend(bson_doc(&[("db", "app"), ("collection", "events")]));
        for _ in 0..1000 {
            let md5 = format!("{:032x}", rng.next() as u128 * 31);
            out.extend(bson_doc(&[("md5", &md5), ("body", &text(&mut rng))]));
        }
        out.extend_from_slice(&[0xff; 4]);
    }
    out
}

type MakeDump = fn() -> Vec<u8>;

/// This thread's time on a CPU (the scheduler's own count, in ns): the machine is shared, and
/// wall time would also count other processes' turns.
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    Duration::from_nanos(stat.split_whitespace().next().and_then(|n| n.parse().ok()).unwrap_or(0))
}

fn best_of(engine: EngineKind, role: &EntryRole, dump: &[u8]) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut rows = 0;
    for _ in 0..RUNS {
        let started = thread_cpu();
        let mut counter = counter_for(engine, role).expect("a counter for this entry");
        for chunk in dump.chunks(CHUNK) {
            counter.feed(chunk);
        }
        let counts = counter.finish().unwrap_or_else(|e| panic!("the {engine} dump did not count: {e}"));
        best = best.min(thread_cpu() - started);
        rows = counts.values().sum();
    }
    (best, rows)
}

fn report(name: &str, bytes: usize, (elapsed, rows): (Duration, u64)) {
    let gb_per_s = bytes as f64 / elapsed.as_secs_f64() / 1e9;
    let core_secs_per_gb = 1.0 / gb_per_s;
    println!(
        "{name:<9} {:>6.0} MB {rows:>10} rows  {gb_per_s:>5.2} GB/s  {:>5.1}x the exec stream  {:>5.1}x a backup  \
         {:.2} core-s per GB = {:.1} % of a 1 GB backup's CPU",
        bytes as f64 / 1e6,
        gb_per_s * STREAM_SECS_PER_GB,
        gb_per_s * BACKUP_SECS_PER_GB,
        core_secs_per_gb,
        100.0 * core_secs_per_gb / BACKUP_CORE_SECS_PER_GB,
    );
}

fn main() {
    let db = EntryRole::Database { database: "app".into() };
    if let Ok(path) = std::env::var("DBB_BENCH_DUMP") {
        let engine: EngineKind =
            std::env::var("DBB_BENCH_ENGINE").unwrap_or_else(|_| "postgres".into()).parse().expect("DBB_BENCH_ENGINE");
        let dump = std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
        let measured = best_of(engine, &db, &dump);
        if std::env::var_os("DBB_BENCH_TSV").is_some() {
            // For bench/drill.sh: bytes, CPU seconds of the best run, rows counted.
            println!("{}\t{:.6}\t{}", dump.len(), measured.0.as_secs_f64(), measured.1);
        } else {
            report(&engine.to_string(), dump.len(), measured);
        }
        return;
    }
    let cases: [(&str, EngineKind, MakeDump); 3] = [
        ("postgres", EngineKind::Postgres, postgres_dump),
        ("mariadb", EngineKind::Mysql, mysql_dump),
        ("mongo", EngineKind::Mongo, mongo_archive),
    ];
    for (name, engine, make) in cases {
        let dump = make();
        report(name, dump.len(), best_of(engine, &db, &dump));
    }
}
