//! One file per subcommand; each returns how it ended ([`crate::exit::Exit`]).

pub mod backup;
pub mod check;
pub mod drill;
pub mod healthcheck;
pub mod list;
pub mod prune;
pub mod remote;
pub mod restore;
pub mod run;
pub mod status;
pub mod verify;
