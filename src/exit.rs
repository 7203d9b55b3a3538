//! The process exit codes, as one type: commands and the errors of runs say *which* outcome they
//! mean, and [`Exit::code`] is the only place that turns it into a number (`main.rs` exits with
//! it; `--json` documents print it). A leaf: it imports nothing from the crate.

use serde::{Serialize, Serializer};

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// 0: success.
    Ok,
    /// 1: the operation failed (`check`: a probe failed; `status`: a service's last run failed).
    Failed,
    /// 2: bad arguments or labels (an invalid service name, an unknown service or archive).
    Usage,
    /// 3 (`status`): the daemon is not running.
    DaemonDown,
    /// 75: the service is busy (another backup or restore holds it); try again later.
    Busy,
    /// 130 (`restore`): stopped by SIGTERM/SIGINT (128 + SIGINT, the shell's convention).
    Interrupted,
}

impl Exit {
    pub const fn code(self) -> i32 {
        match self {
            Exit::Ok => 0,
            Exit::Failed => 1,
            Exit::Usage => 2,
            Exit::DaemonDown => 3,
            Exit::Busy => 75,
            Exit::Interrupted => 130,
        }
    }

    /// The graver of two outcomes of one command over several services (the higher code).
    pub fn max(self, other: Exit) -> Exit {
        if other.code() > self.code() {
            other
        } else {
            self
        }
    }
}

/// Printed as its number, as the `exit_code` of `--json` documents always was.
impl Serialize for Exit {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_i32(self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes README documents; scripts depend on them.
    #[test]
    fn codes_are_the_documented_ones() {
        let all = [Exit::Ok, Exit::Failed, Exit::Usage, Exit::DaemonDown, Exit::Busy, Exit::Interrupted];
        assert_eq!(all.map(Exit::code), [0, 1, 2, 3, 75, 130]);
        assert_eq!(serde_json::to_string(&Exit::Busy).unwrap(), "75");
        assert_eq!(Exit::Failed.max(Exit::Busy), Exit::Busy);
        assert_eq!(Exit::Busy.max(Exit::Failed), Exit::Busy);
    }
}
