//! `[daemon]`: continuous mode (`tansync run`) — its schedule, how often a full
//! reconcile runs, standby, and the held-removals notification.

use super::ConfigError;
use super::Ctx;
use super::raw::RawDaemon;
use std::time::Duration;

/// When cycles start.
#[derive(Clone, Debug)]
pub enum Schedule {
    /// A cycle starts this long after the previous one started (or finished, if it took
    /// longer).
    Every(Duration),
    /// A cron pattern (UTC), as written, and parsed.
    Cron(String, Box<croner::Cron>),
}

impl Schedule {
    /// When the next cycle after `after` (Unix seconds) starts, given the last one
    /// started at `last_start`.
    pub fn next_after(&self, last_start: i64, after: i64) -> Option<i64> {
        match self {
            Schedule::Every(d) => {
                let step = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
                Some(last_start.saturating_add(step).max(after))
            }
            Schedule::Cron(_, c) => {
                let t = chrono::DateTime::from_timestamp(after, 0)?;
                c.find_next_occurrence(&t, false)
                    .ok()
                    .map(|n| n.timestamp())
            }
        }
    }
}

/// The validated `[daemon]` section.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    /// `None`: neither `interval_seconds` nor `cron` is set (`run --once` only).
    pub schedule: Option<Schedule>,
    /// A full reconcile at least this often (`full_every_hours`, default 24).
    pub full_every: Duration,
    /// Plan every cycle, write nothing.
    pub standby: bool,
    /// Program and arguments run (no shell) with a JSON summary on stdin when the held
    /// removals appear or change.
    pub notify_command: Option<Vec<String>>,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            schedule: None,
            full_every: Duration::from_secs(24 * 3600),
            standby: false,
            notify_command: None,
        }
    }
}

/// The longest interval accepted: a week (a longer one is almost surely a typo for a
/// cron pattern or a unit mistake).
const MAX_INTERVAL: i64 = 7 * 24 * 3600;

pub(super) fn validate(cx: &Ctx<'_>, raw: RawDaemon) -> Result<DaemonSettings, ConfigError> {
    let schedule = match (raw.interval_seconds, raw.cron) {
        (Some(_), Some(_)) => {
            return Err(cx.err(
                "daemon.interval_seconds",
                "give daemon.interval_seconds or daemon.cron, not both",
            ));
        }
        (Some(n), None) if !(1..=MAX_INTERVAL).contains(&n) => {
            return Err(cx.err(
                "daemon.interval_seconds",
                format!("{n} is not between 1 and {MAX_INTERVAL} (a week)"),
            ));
        }
        (Some(n), None) => Some(Schedule::Every(Duration::from_secs(n.unsigned_abs()))),
        (None, Some(p)) => {
            let c = croner::parser::CronParser::new()
                .parse(p.trim())
                .map_err(|e| cx.err("daemon.cron", format!("{p:?} is not a cron pattern: {e}")))?;
            Some(Schedule::Cron(p, Box::new(c)))
        }
        (None, None) => None,
    };
    let hours = raw.full_every_hours.unwrap_or(24);
    if !(1..=24 * 366).contains(&hours) {
        return Err(cx.err(
            "daemon.full_every_hours",
            format!("{hours} is not between 1 and 8784 (a year)"),
        ));
    }
    let notify_command = match raw.notify_command {
        Some(c) if c.is_empty() || c[0].trim().is_empty() => {
            return Err(cx.err(
                "daemon.notify_command",
                "give the program and its arguments, e.g. [\"/usr/local/bin/notify\", \"--to\", \"ops\"]",
            ));
        }
        other => other,
    };
    Ok(DaemonSettings {
        schedule,
        full_every: Duration::from_secs(hours.unsigned_abs() * 3600),
        standby: raw.standby,
        notify_command,
    })
}
