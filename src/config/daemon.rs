//! `[daemon]`: what continuous mode serves (health and metrics on `listen`) and how every
//! command logs (`log_format`, `log_personal_data`). The schedule keys live here too.

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

/// The validated `[daemon]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonSettings {
    /// Where `GET /healthz` and `GET /metrics` are served; none: not served.
    pub listen: Option<SocketAddr>,
    /// `/healthz` is 200 while the last cycle succeeded at most this long ago.
    pub healthy_within: Duration,
    pub log: LogSettings,
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
}

impl LogFormat {
    fn parse(s: &str) -> Option<LogFormat> {
        match s {
            "text" => Some(LogFormat::Text),
            "json" => Some(LogFormat::Json),
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

pub(super) fn settings(cx: &Ctx<'_>, raw: RawDaemon) -> Result<DaemonSettings, ConfigError> {
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
            format!("{:?} is not \"text\" or \"json\"", raw.log_format),
        )
    })?;
    Ok(DaemonSettings {
        listen,
        healthy_within,
        log: LogSettings {
            format,
            personal_data: raw.log_personal_data,
        },
    })
}
