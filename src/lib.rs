//! db-backup: label-driven backups of the databases running in Docker containers.
//!
//! # Layout
//!
//! Layers, top to bottom: a module imports only from rows below its own, never upwards, and
//! there are no import circles.
//!
//! ```text
//!  main.rs ─► cli ─► help        parse the command line, read the settings, exit with the code
//!  cmd/*                         one file per command; prints, returns an Exit
//!  daemon                        the scheduler loop: discovery, one task per service
//!  drill ─► restore              a restore drill into a throwaway container
//!  restore ─► backup             runs, step by step (a restore's safety backup is a backup)
//!  offsite                       the remote copy of a service's archives: catch up, fetch
//!  verify · discovery · config   prove archives · find specs · read the environment
//!  docker                        exec streams
//!  labels                        raw labels into a validated BackupSpec
//!  engine                        what to run in a container, and how to judge it
//!  status · prune                status file and run journal · retention applied to a service
//!  sealed                        age-encrypted archives: opened for reading, the encrypted output
//!  remote                        the S3 bucket: our objects, uploads, downloads, remote retention
//!  store                         everything on disk under the backup root
//!  manifest · retention          an archive's manifest · keep policies (pure)
//!  rowcount                      rows per table counted as a dump streams past (pure)
//!  archive                       the streaming .tar.gz / .tar.zst format
//!  gzip · zstd                   the codecs
//!  blocks · ordered              what both codecs' parallel compressors · decompressors share
//!  vocab · exit · output · schedule · shutdown · nofollow · logging · terminal · crypto   leaves
//! ```
//!
//! Commands:
//! - `main.rs` is thin: parse the command line, read [`config::Settings`], call `cmd::*`, and
//!   turn the returned [`exit::Exit`] into the process exit code (the only place that does).
//! - [`cli`] declares the commands and parses service arguments into [`vocab::ServiceName`];
//!   [`help`] holds the reference text (environment variables, labels). [`cmd`] holds one file
//!   per command: `backup`, `restore`, `list`, `check`, `prune`, `verify`, `run`, `status`.
//! - [`daemon`] (`run`) watches Docker events, reconciles one task per labeled container, bounds
//!   concurrent backups and writes the status file; it asks [`schedule`] when to run.
//!
//! Runs:
//! - [`backup`] is one backup: plan → dump each entry (a follower reads the file back from disk
//!   behind the writer) → manifest → the follower's verdict → publish → retention. [`restore`] is
//!   one restore: target, archive, checks, lock, safety backup, replay, report; a database entry
//!   replays through several sessions (`restore/parallel.rs`, `DB_BACKUP_RESTORE_JOBS`): serial and
//!   data phases, each ended before the next, fed by the engine's splitter, the data sessions'
//!   batches held to a byte budget. [`verify`] proves an
//!   archive whole and replayable.
//!
//! - [`drill`] is one restore drill: a throwaway container from the service's image (always
//!   removed), `restore --into` it, every table's rows counted (`count(*)`; MongoDB: a mongodump
//!   of the restored database through the backup's own counter) against the counts [`rowcount`]
//!   recorded in the manifest at backup time; the daemon runs drills on `db-backup.drill` and
//!   reports their results to [`alerting`].
//!
//! Around the runs:
//! - [`discovery`] finds labeled containers and refuses duplicate services; [`config`] reads the
//!   environment once; [`labels`] turns raw labels into a validated [`labels::BackupSpec`] (pure).
//! - [`docker`] runs commands in containers (exec streams, exit codes, stall timeout) through
//!   bollard. [`engine`] describes, per database engine, what to run and how to judge the result,
//!   and rewrites roles/users for a restore; engines are built from (kind, credentials) and never
//!   run anything themselves. `engine/split.rs` is how a dump is cut for a parallel replay: serial
//!   bytes, batches of rows, the setup of new sessions; `psql_guard/split.rs` cuts where the psql
//!   guard says psql is between statements or rows, `mysql/split.rs` where the client's own
//!   statement splitting is.
//!
//! Offsite and trust:
//! - [`remote`] is the bucket (`[<prefix>/]<host>/<service>/<archive>`): configuration from the
//!   environment, streamed multipart uploads checked afterwards, a journal so no unfinished upload
//!   stays, `.partial` downloads, listing and retention of our names only. [`offsite`] joins it to
//!   the store: upload what the remote lacks after a backup or on `sync`, fetch for a restore.
//! - [`crypto`] signs manifests (ed25519, OpenSSH's SSHSIG) and encrypts with age (keys from the
//!   environment, streams). [`sealed`] applies it to archives: with recipients set, a backup
//!   writes `<stamp>.tar.gz.age` through the age encryptor and a hashing writer (the ciphertext's
//!   sha256 is compared with the follower's read of the file as it is written), and every reader of an archive (verify,
//!   restore, drills, remote fetch) opens it through [`sealed::open`], which decrypts with the
//!   identity or refuses, before anything is touched, without it.
//!
//! The disk:
//! - [`store`] owns everything under the backup root: [`store::Store::service`] gives a
//!   [`store::ServiceDir`] (archives, the lock, `.verify.json` records, the stale-partial sweep)
//!   and [`store::Partial`], the file an archive is written to until it is published; the status
//!   file path comes from the store too. [`nofollow`] opens everything below the root without
//!   following links. [`status`] is the daemon's status file and the manual-run journal;
//!   [`prune`] applies a [`retention`] policy (pure planning) to one service directory.
//!
//! Formats:
//! - [`archive`] writes and reads the streaming `.tar.gz` (tar layout, writer, reader) on top of
//!   [`gzip`], the codec below it: member framing, the encoder port, and the compressor (ISA-L
//!   for levels 1–3, libdeflate 4–5, zlib-rs 6–9) and decompressor that work on every core.
//!   [`zstd`] is the other codec (`.tar.zst`, chosen by
//!   `DB_BACKUP_COMPRESSION` or the `compression` label): the same tar layout in independent
//!   zstd frames, cut apart by their block headers to decompress in parallel (a one-thread reader,
//!   such as the follower or a restore, decompresses in order instead); a reader picks the
//!   codec from the first bytes, and [`sealed::open`] refuses bytes that contradict the name.
//!   Written into a stream that cannot seek (encryption), entries wait in memory for their header
//!   and long ones become parts the reader joins. The writer reports what becomes final, and a
//!   follower reads and checks it from disk behind it.
//!   [`manifest`] describes an archive's content.
//!
//! Leaves (import nothing from the crate, or only other leaves):
//! - [`blocks`] is the parallel block compressor both codecs' encoders run: fixed-length blocks
//!   compressed on every core, written in order, at most `threads + 1` blocks in flight.
//! - [`ordered`] is what the two codecs' parallel decompressors share: the offset-counting
//!   input, the pieces in input order and the reader that joins them, the thread count.
//! - [`vocab`] holds the shared value types (`EngineKind`, `ServiceName`, `EnvName`,
//!   `ArchiveKind`, `EntryRole`); [`exit`] the exit codes; [`output`] how sizes, durations and
//!   times are shown; [`schedule`] cron schedules, `TZ`, the next run and the wait for it;
//!   [`shutdown`] the signal that every loop selects on; [`logging`] the tracing setup;
//!   [`terminal`] the line a manual run redraws in place, erased before any other output;
//!   [`tls`] the rustls provider and bundled roots that the S3 client and notifications share.
//!
//! Alerting:
//! - [`alerting`] is what the daemon reports services and runs to; it drives [`notify`]
//!   (notification URLs, events and storm control, delivery, health pings), [`metrics`],
//!   [`history`] (recent runs, alert memory) and [`stale`]; [`http`] serves `/metrics`, `/healthz`
//!   and the status page; [`health`] judges the daemon for `healthcheck`; [`progress`] draws the
//!   terminal progress line of a manual `backup` and of `restore` (its safety backup and replay;
//!   it reads only [`store`] and the leaves, so runs may use it).

pub mod alerting;
pub mod archive;
pub mod backup;
pub mod blocks;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod crypto;
pub mod daemon;
pub mod discovery;
pub mod docker;
pub mod drill;
pub mod engine;
pub mod exit;
pub mod gzip;
pub mod health;
pub mod help;
pub mod history;
pub mod http;
pub mod labels;
pub mod logging;
pub mod manifest;
pub mod metrics;
pub mod nofollow;
pub mod notify;
pub mod offsite;
pub mod ordered;
pub mod output;
pub mod progress;
pub mod prune;
pub mod remote;
pub mod restore;
pub mod retention;
pub mod rowcount;
pub mod schedule;
pub mod sealed;
pub mod shutdown;
pub mod stale;
pub mod status;
pub mod store;
pub mod terminal;
pub mod tls;
pub mod verify;
pub mod vocab;
pub mod zstd;
