//! db-backup: label-driven backups of the databases running in Docker containers.
//!
//! # Layout
//! - `main.rs` is thin: parse the command line, read [`config::Settings`], call `cmd::*`.
//! - [`cli`] declares the commands; [`cmd`] holds one file per command.
//! - [`labels`] turns raw container labels into a validated [`labels::BackupSpec`] (pure);
//!   [`schedule`] validates cron expressions; [`config`] reads the environment once.
//! - [`discovery`] finds labeled containers; [`docker`] runs commands in them (exec streams,
//!   exit codes) through bollard.
//! - [`engine`] describes, per database engine, what to run and how to judge the result; engines
//!   never run anything themselves.
//! - [`job`] is one backup run, step by step; [`restore`] is one restore, step by step;
//!   [`verify`] proves an archive whole.
//! - [`archive`] writes and reads the streaming `.tar.gz` (tar layout, writer, reader) on top of
//!   [`gzip`], the codec below it: member framing, the encoder port, and the compressor and
//!   decompressor that work on every core (`gzip` imports nothing from the crate);
//!   [`manifest`] describes an archive's content; [`store`] lays archives out on disk; [`lock`]
//!   keeps runs of one service apart.
//! - [`nofollow`] opens everything below the backup root without following links; [`help`] holds
//!   the CLI's reference text (environment variables, labels).

pub mod archive;
pub mod cli;
pub mod cmd;
pub mod config;
pub mod daemon;
pub mod discovery;
pub mod docker;
pub mod drill;
pub mod engine;
pub mod gzip;
pub mod help;
pub mod job;
pub mod labels;
pub mod lock;
pub mod logging;
pub mod manifest;
pub mod nofollow;
pub mod prune;
pub mod restore;
pub mod retention;
pub mod rowcount;
pub mod schedule;
pub mod scheduler;
pub mod shutdown;
pub mod status;
pub mod store;
pub mod verify;
