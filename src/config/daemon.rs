//! `[daemon]`: continuous mode (`tansync run`) — its schedule, how often a full
//! reconcile runs, standby, the held-removals notification — what it serves (health and
//! metrics on `listen`), and how every command logs (`log_format`, `log_personal_data`).

use super::ConfigError;
use super::Ctx;
use super::raw::RawDaemon;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

/// `[daemon] healthy_within` when not set: an hour. Set it to about three times the
/// cycle interval, so one slow or failed cycle does not page anyone but a stopped loop
/// does.
pub const DEFAULT_HEALTHY_WITHIN: Duration = Duration::from_secs(3600);

/// The longest `healthy_within` accepted: a week.
const MAX_HEALTHY_WITHIN_SECS: u64 = 7 * 24 * 3600;

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
    /// Where `GET /healthz` and `GET /metrics` are served; none: not served.
    pub listen: Option<SocketAddr>,
    /// `/healthz` is 200 while the last cycle succeeded at most this long ago.
    pub healthy_within: Duration,
    pub log: LogSettings,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        Self {
            schedule: None,
            full_every: Duration::from_secs(24 * 3600),
            standby: false,
            notify_command: None,
            listen: None,
            healthy_within: DEFAULT_HEALTHY_WITHIN,
            log: LogSettings::default(),
        }
    }
}

/// How log lines are written (every command, not only `run`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LogSettings {
    pub format: LogFormat,
    /// Show names, addresses, phone numbers and DNs in log lines (default: redacted).
    pub personal_data: bool,
}

/// `[daemon] log_format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// Human text, one event a line.
    #[default]
    Text,
    /// JSON lines, one object an event.
    Json,
    /// Straight to the systemd journal (native protocol), each event's fields as journal
    /// fields (`KIND=full`, `RESULT=ok`, `OPERATIONS=3`, …), redacted as in text. Text is
    /// sent this way too when stderr is the journal (`JOURNAL_STREAM`).
    Journald,
}

impl LogFormat {
    fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
            "journald" => Some(LogFormat::Journald),
            _ => None,
        }
    }
}

impl LogSettings {
    /// The log settings of a configuration file, read before logging starts (and so
    /// before the configuration is validated, whose errors are then logged this way).
    /// Anything unreadable gives the defaults, which redact: the full load that follows
    /// reports what is wrong.
    pub fn peek(path: &Path) -> LogSettings {
        #[derive(Deserialize)]
        struct File {
            daemon: Option<Section>,
        }
        #[derive(Deserialize)]
        struct Section {
            log_format: Option<String>,
            log_personal_data: Option<bool>,
        }
        let Some(section) = std::fs::read_to_string(path)
            .ok()
            .and_then(|text| toml::from_str::<File>(&text).ok())
            .and_then(|f| f.daemon)
        else {
            return LogSettings::default();
        };
        LogSettings {
            format: section
                .log_format
                .as_deref()
                .and_then(LogFormat::parse)
                .unwrap_or_default(),
            personal_data: section.log_personal_data.unwrap_or(false),
        }
    }
}

/// The longest interval accepted: a week (a longer one is almost surely a typo for a
/// cron pattern or a unit mistake).
const MAX_INTERVAL: i64 = 7 * 24 * 3600;

pub(super) fn settings(cx: &Ctx<'_>, raw: RawDaemon) -> Result<DaemonSettings, ConfigError> {
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
    let listen = raw
        .listen
        .as_deref()
        .map(|l| {
            l.trim().parse::<SocketAddr>().map_err(|e| {
                cx.err(
                    "daemon.listen",
                    format!("{l:?} is not an address and port such as \"127.0.0.1:9464\": {e}"),
                )
            })
        })
        .transpose()?;
    let healthy_within = match raw.healthy_within {
        None => DEFAULT_HEALTHY_WITHIN,
        Some(s @ 1..=MAX_HEALTHY_WITHIN_SECS) => Duration::from_secs(s),
        Some(_) => {
            return Err(cx.err(
                "daemon.healthy_within",
                format!("must be 1 to {MAX_HEALTHY_WITHIN_SECS} (seconds)"),
            ));
        }
    };
    let format = LogFormat::parse(raw.log_format.trim()).ok_or_else(|| {
        cx.err(
            "daemon.log_format",
            format!(
                "{:?} is not \"text\", \"json\" or \"journald\"",
                raw.log_format
            ),
        )
    })?;
    Ok(DaemonSettings {
        schedule,
        full_every: Duration::from_secs(hours.unsigned_abs() * 3600),
        standby: raw.standby,
        notify_command,
        listen,
        healthy_within,
        log: LogSettings {
            format,
            personal_data: raw.log_personal_data,
        },
    })
}
