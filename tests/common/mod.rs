//! Shared harness for the integration tests, one file per concern:
//! - [`docker`]: real containers through the Docker API (bollard), always labeled `dbb-test` and
//!   removed afterwards (containers of earlier runs whose process is gone are removed when the
//!   first container of a process starts), `docker exec` helpers, polling, the argv sampler;
//! - [`databases`]: the test images and ready, labeled PostgreSQL, MariaDB and MongoDB containers
//!   with their clients;
//! - [`proxy`]: a Docker-socket proxy whose connections a test can drop or cut for good;
//! - [`runner`]: the real `db-backup` binary (one-shot, in the background, or as the daemon) and
//!   `status --json`;
//! - [`archives`]: hand-made archives (well-formed, with whatever SQL a test needs);
//! - [`assertions`]: what a run must leave behind (byte-identical roots, no `.partial`, no secret).
//!
//! The images come from `scripts/build-images.sh`; a missing image fails the test with that
//! instruction (no silent skip).
#![allow(dead_code, unused_imports)]

pub mod archives;
pub mod assertions;
pub mod databases;
pub mod docker;
pub mod proxy;
pub mod runner;

pub use archives::*;
pub use assertions::*;
pub use databases::*;
pub use docker::*;
pub use proxy::*;
pub use runner::*;
