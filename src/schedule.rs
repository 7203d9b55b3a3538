//! Cron schedules, validated once: standard 5-field crontab, 6 fields with seconds, `@daily`-style
//! nicknames. Evaluation in a time zone is the scheduler's job.

use std::fmt;
use std::str::FromStr;

use croner::Cron;

/// A parsed cron schedule that remembers how the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

impl Schedule {
    pub fn as_str(&self) -> &str {
        &self.expr
    }

    pub fn cron(&self) -> &Cron {
        &self.cron
    }
}

impl FromStr for Schedule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let expr = s.trim();
        if expr.is_empty() {
            return Err("empty schedule".into());
        }
        let fields = expr.split_whitespace().count();
        if !expr.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "'{expr}' has {fields} fields; expected 5 (minute hour day month weekday), \
                 6 (with seconds first) or a nickname such as @daily"
            ));
        }
        let cron = Cron::from_str(expr).map_err(|e| {
            format!(
                "'{expr}' is not a valid cron schedule ({e}); fields are minute 0-59, hour 0-23, \
                 day of month 1-31, month 1-12, day of week 0-7 (0 and 7 are Sunday), with seconds \
                 0-59 first when there are 6; or @hourly, @daily, @weekly, @monthly"
            )
        })?;
        Ok(Schedule { expr: expr.to_string(), cron })
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_crontab_seconds_and_nicknames() {
        for ok in ["0 3 * * *", "*/5 * * * * *", "@daily", "@hourly", "@weekly", "@monthly", "0 2 * * 1-5"] {
            assert!(ok.parse::<Schedule>().is_ok(), "{ok} should parse");
        }
    }

    #[test]
    fn rejects_garbage_with_the_expression_in_the_message() {
        for bad in ["", "every day", "61 * * * *", "* * *", "0 0 32 * *", "@sometimes"] {
            let err = bad.parse::<Schedule>().unwrap_err();
            assert!(err.contains(bad.trim()) || bad.trim().is_empty(), "{err}");
        }
    }
}
