//! The integration tests against real containers, in one test binary (one link of the crate
//! instead of one per file): each module is a theme, and a test's name is `module::test`, e.g.
//! `cargo test --test integration failures::` runs the failure paths.
//!
//! `tests/image.rs` (the db-backup image and the compose example) is a binary of its own: its
//! daemons are unscoped and would see the containers of the tests here.

#[path = "../common/mod.rs"]
mod common;

mod alerting;
mod daemon;
mod drill;
mod failures;
mod faults;
mod labels;
mod mariadb;
mod mongo;
mod offsite;
mod offsite_age;
mod parallel_restore;
mod postgres;
mod retention;
mod trust_daemon;
mod trust_engines;
mod trust_restore;
mod trust_store;
mod verify_follow;
mod zstd;
