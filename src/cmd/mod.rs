//! One file per subcommand; each returns the process exit code.

pub mod backup;
pub mod check;
pub mod drill;
pub mod list;
pub mod prune;
pub mod restore;
pub mod run;
pub mod status;
pub mod verify;

/// Exit codes: 0 success; 1 the operation failed (for `check`: a probe failed; for `status`: a
/// service's last run failed); 2 bad arguments or labels; 3 (`status`) the daemon is not running;
/// 75 busy (try again).
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_DAEMON_DOWN: i32 = 3;
pub const EXIT_BUSY: i32 = 75;
