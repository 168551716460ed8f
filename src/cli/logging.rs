//! How every command logs: `tracing` events to stderr as human text or JSON lines
//! (`[daemon] log_format`), the level from `TANSYNC_LOG` (an `EnvFilter`, default
//! `warn`). Personal data is redacted here, at the formatting layer, unless
//! `[daemon] log_personal_data = true`: a field named for personal data (`dn`, `email`,
//! `display_name`, … — `nhs_model::redact::is_personal_field`) is replaced whole, and
//! every other value is scrubbed of DNs, addresses and phone numbers. Text lines are also
//! escaped like any other value that reaches a terminal.
//!
//! Under systemd, `log_format = "journald"` (or text whose stderr is the journal,
//! `JOURNAL_STREAM`) sends each event to the journal itself ([`Journald`], over
//! libsystemd's native protocol): its fields become journal fields (`KIND=delta`,
//! `RESULT=ok`, `OPERATIONS=3`), redacted and escaped like JSON lines.
//!
//! The JSON lines are written by [`JsonLines`], not tracing-subscriber's JSON formatter:
//! that one serialises event fields itself, past any field formatter, so it could not
//! redact them. Their string values are escaped as text lines are (serde's JSON would
//! pass bidi overrides and C1 controls raw).

use crate::config::{LogFormat, LogSettings};
use nhs_model::escape::Escaped;
use nhs_model::redact::{REDACTED, is_personal_field, scrub};
use std::fmt;
use std::path::Path;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The default filter: warnings; ldap3 logs connection errors that tansync reports
/// itself.
pub(super) const DEFAULT_FILTER: &str = "warn,ldap3=error,tansync::source::ldap=error";

/// The default filter of continuous mode, which also says what each cycle did.
pub(super) const DAEMON_FILTER: &str =
    "warn,ldap3=error,tansync::source::ldap=error,tansync::daemon=info";

/// Install the process's subscriber (once, before anything logs), with `default_filter`
/// unless `TANSYNC_LOG` says otherwise.
pub(super) fn init(settings: LogSettings, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TANSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let journald = match settings.format {
        LogFormat::Journald => true,
        LogFormat::Text => libsystemd::logging::connected_to_journal(),
        LogFormat::Json => false,
    };
    if journald {
        if Path::new(JOURNAL_SOCKET).exists() {
            use tracing_subscriber::layer::SubscriberExt;
            use tracing_subscriber::util::SubscriberInitExt;
            tracing_subscriber::registry()
                .with(filter)
                .with(Journald {
                    personal_data: settings.personal_data,
                })
                .init();
            return;
        }
        if settings.format == LogFormat::Journald {
            eprintln!(
                "tansync: log_format = \"journald\" but there is no journal ({JOURNAL_SOCKET}); logging text to stderr"
            );
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .fmt_fields(escaped_fields(settings.personal_data))
        .with_env_filter(filter);
    match settings.format {
        LogFormat::Text | LogFormat::Journald => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => builder
            .with_ansi(false)
            .event_format(JsonLines {
                personal_data: settings.personal_data,
            })
            .init(),
    }
}

/// A field's value as it may be logged: redacted by name, else scrubbed.
fn shown<'a>(name: &str, value: &'a str, personal_data: bool) -> std::borrow::Cow<'a, str> {
    if personal_data {
        value.into()
    } else if is_personal_field(name) {
        REDACTED.into()
    } else {
        scrub(value)
    }
}

/// How text log fields are written: redacted (unless `personal_data`), escaped like any
/// other value that reaches the terminal (they carry the directory's answers),
/// space-separated, the message bare.
pub(super) fn escaped_fields(personal_data: bool) -> impl for<'w> FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(move |w, field, value| {
        let v = format!("{value:?}");
        let v = shown(field.name(), &v, personal_data);
        if field.name() == "message" {
            write!(w, "{}", Escaped(&v))
        } else {
            write!(w, "{field}={}", Escaped(&v))
        }
    })
    .delimited(" ")
}

/// One JSON object a line: `timestamp` (RFC 3339, UTC, milliseconds), `level`,
/// `target`, `fields` (the message and the event's fields, redacted as in text) and,
/// inside spans, `spans` (their names, outermost first).
pub(super) struct JsonLines {
    pub personal_data: bool,
}

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        let mut fields = JsonFields {
            map: serde_json::Map::new(),
            personal_data: self.personal_data,
        };
        event.record(&mut fields);
        let mut line = serde_json::Map::new();
        line.insert(
            "timestamp".into(),
            crate::timefmt::now_rfc3339_millis().into(),
        );
        line.insert("level".into(), meta.level().as_str().into());
        line.insert("target".into(), meta.target().into());
        line.insert("fields".into(), fields.map.into());
        if let Some(scope) = ctx.event_scope() {
            let names: Vec<serde_json::Value> =
                scope.from_root().map(|s| s.name().into()).collect();
            if !names.is_empty() {
                line.insert("spans".into(), names.into());
            }
        }
        let text = serde_json::to_string(&line).map_err(|_| fmt::Error)?;
        writeln!(w, "{text}")
    }
}

/// Where journald listens for native-protocol messages (libsystemd sends there).
const JOURNAL_SOCKET: &str = "/run/systemd/journal/socket";

/// Events straight to the journal, their fields as journal fields, redacted.
pub(super) struct Journald {
    pub personal_data: bool,
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for Journald {
    fn on_event(&self, event: &Event<'_>, _ctx: tracing_subscriber::layer::Context<'_, S>) {
        use libsystemd::logging::{Priority, journal_send};
        let meta = event.metadata();
        let priority = match *meta.level() {
            tracing::Level::ERROR => Priority::Error,
            tracing::Level::WARN => Priority::Warning,
            tracing::Level::INFO => Priority::Info,
            _ => Priority::Debug,
        };
        let (message, fields) = journal_fields(event, self.personal_data);
        // Nowhere else to report a journal that went away.
        let _ = journal_send(priority, &message, fields.iter().map(|(k, v)| (k, v)));
    }
}

/// An event as the journal gets it: the message, and its other fields named as journal
/// fields (upper case, `[A-Z0-9_]`, not starting with a digit or `_`), with
/// `SYSLOG_IDENTIFIER`, `TARGET` and where the event was logged. Values are redacted and
/// escaped as in JSON lines.
pub(super) fn journal_fields(
    event: &Event<'_>,
    personal_data: bool,
) -> (String, Vec<(String, String)>) {
    let meta = event.metadata();
    let mut f = JsonFields {
        map: serde_json::Map::new(),
        personal_data,
    };
    event.record(&mut f);
    let text = |v: serde_json::Value| match v {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    let message = f.map.remove("message").map(text).unwrap_or_default();
    let mut fields = vec![
        ("SYSLOG_IDENTIFIER".to_string(), "tansync".to_string()),
        ("TARGET".to_string(), meta.target().to_string()),
    ];
    if let Some(file) = meta.file() {
        fields.push(("CODE_FILE".into(), file.into()));
    }
    if let Some(line) = meta.line() {
        fields.push(("CODE_LINE".into(), line.to_string()));
    }
    for (k, v) in f.map {
        let mut name: String = k
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' => c.to_ascii_uppercase(),
                _ => '_',
            })
            .collect();
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            name.insert_str(0, "F_");
        }
        name.truncate(64);
        fields.push((name, text(v)));
    }
    (message, fields)
}

struct JsonFields {
    map: serde_json::Map<String, serde_json::Value>,
    personal_data: bool,
}

impl JsonFields {
    /// Escaped as in text lines too: serde escapes C0 controls but would pass bidi
    /// overrides and C1 controls raw to whoever tails the log.
    fn text(&mut self, field: &Field, value: &str) {
        let v = shown(field.name(), value, self.personal_data);
        self.map
            .insert(field.name().into(), Escaped(&v).to_string().into());
    }

    fn number(&mut self, field: &Field, value: serde_json::Value) {
        if !self.personal_data && is_personal_field(field.name()) {
            self.map.insert(field.name().into(), REDACTED.into());
        } else {
            self.map.insert(field.name().into(), value);
        }
    }
}

impl Visit for JsonFields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, &value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.number(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.number(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.number(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.number(field, value.into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn capture(format: LogFormat, personal_data: bool, log: impl FnOnce()) -> String {
        let sink = Sink::default();
        let out = sink.clone();
        let b = tracing_subscriber::fmt()
            .with_writer(move || out.clone())
            .with_ansi(false)
            .fmt_fields(escaped_fields(personal_data));
        match format {
            LogFormat::Text | LogFormat::Journald => {
                tracing::subscriber::with_default(b.finish(), log)
            }
            LogFormat::Json => tracing::subscriber::with_default(
                b.event_format(JsonLines { personal_data }).finish(),
                log,
            ),
        }
        sink.text()
    }

    const DN: &str = "CN=Siân Evans,OU=Northgate General,OU=Staff,DC=northgate,DC=example";

    fn personal_event() {
        tracing::warn!(
            dn = DN,
            display_name = "Siân Evans",
            email = %"s.evans@northgate.example",
            mobile = "+447123456001",
            external_id = "af40ac76-1201-4205-83fb-a1707109e8b4",
            attempt = 2u64,
            error = %format!("the directory refused {DN}: s.evans@northgate.example is taken"),
            "entry refused"
        );
    }

    #[test]
    fn log_fields_and_messages_are_escaped() {
        let evil = "CN=x\u{1b}[31m\r\u{7}\u{202e}\u{85}\ny";
        let text = capture(LogFormat::Text, true, || {
            tracing::warn!(ods = "RXA", error = %evil, "refused {evil}");
        });
        let line = text.trim_end_matches('\n');
        assert!(
            line.chars().all(|c| !nhs_model::escape::is_unsafe(c)),
            "{line:?}"
        );
        let shown = r"CN=x\u{1b}[31m\r\u{7}\u{202e}\u{85}\ny";
        assert!(line.contains(&format!("refused {shown} ")), "{line}");
        assert!(line.contains(&format!("error={shown}")), "{line}");
        assert!(line.contains("ods=\"RXA\""), "{line}");
    }

    #[test]
    fn text_lines_redact_personal_data_by_default() {
        let line = capture(LogFormat::Text, false, personal_event);
        for secret in [
            "Siân",
            "Evans",
            "s.evans",
            "7123456001",
            "Northgate General",
        ] {
            assert!(!line.contains(secret), "{secret} in {line}");
        }
        assert!(line.contains("dn=[redacted]"), "{line}");
        assert!(line.contains("display_name=[redacted]"), "{line}");
        assert!(
            line.contains("error=the directory refused [redacted]: [redacted] is taken"),
            "{line}"
        );
        assert!(
            line.contains("external_id=\"af40ac76-1201-4205-83fb-a1707109e8b4\""),
            "{line}"
        );
    }

    #[test]
    fn text_lines_show_personal_data_when_opted_in() {
        let line = capture(LogFormat::Text, true, personal_event);
        for shown in [
            "Siân Evans",
            "s.evans@northgate.example",
            "+447123456001",
            DN,
        ] {
            assert!(line.contains(shown), "{shown} not in {line}");
        }
    }

    #[test]
    fn json_lines_are_json_and_redacted() {
        let text = capture(LogFormat::Json, false, || {
            let span = tracing::info_span!("cycle");
            let _g = span.enter();
            personal_event();
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], module_path!());
        assert_eq!(v["spans"], serde_json::json!(["cycle"]));
        crate::timefmt::parse_rfc3339(v["timestamp"].as_str().unwrap()).unwrap();
        let f = &v["fields"];
        assert_eq!(f["message"], "entry refused");
        for k in ["dn", "display_name", "email", "mobile"] {
            assert_eq!(f[k], REDACTED, "{k}: {v}");
        }
        assert_eq!(f["attempt"], 2);
        assert_eq!(f["external_id"], "af40ac76-1201-4205-83fb-a1707109e8b4");
        assert_eq!(
            f["error"],
            "the directory refused [redacted]: [redacted] is taken"
        );
        for secret in ["Siân", "Evans", "s.evans", "7123456001"] {
            assert!(!lines[0].contains(secret), "{secret} in {text}");
        }
    }

    /// What the journal layer would send for `log`'s one event.
    fn journal(personal_data: bool, log: impl FnOnce()) -> (String, Vec<(String, String)>) {
        type Seen = Arc<Mutex<Option<(String, Vec<(String, String)>)>>>;
        struct Grab(Seen, bool);
        impl<S: Subscriber> tracing_subscriber::Layer<S> for Grab {
            fn on_event(&self, e: &Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
                *self.0.lock().unwrap() = Some(journal_fields(e, self.1));
            }
        }
        use tracing_subscriber::layer::SubscriberExt;
        let seen = Seen::default();
        tracing::subscriber::with_default(
            tracing_subscriber::registry().with(Grab(seen.clone(), personal_data)),
            log,
        );
        seen.lock().unwrap().take().unwrap()
    }

    #[test]
    fn journal_fields_are_named_for_the_journal_and_redacted() {
        let (msg, fields) = journal(false, || {
            personal_event();
            tracing::info!(
                kind = "delta",
                result = "ok",
                operations = 3u64,
                "cycle finished"
            );
        });
        assert_eq!(msg, "cycle finished");
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        assert_eq!(get("KIND"), Some("delta"));
        assert_eq!(get("RESULT"), Some("ok"));
        assert_eq!(get("OPERATIONS"), Some("3"));
        assert_eq!(get("SYSLOG_IDENTIFIER"), Some("tansync"));
        assert_eq!(get("TARGET"), Some(module_path!()));
        let (msg, fields) = journal(false, personal_event);
        assert_eq!(msg, "entry refused");
        let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        for k in ["DN", "DISPLAY_NAME", "EMAIL", "MOBILE"] {
            assert_eq!(get(k).as_deref(), Some(REDACTED), "{k}");
        }
        assert_eq!(
            get("ERROR").as_deref(),
            Some("the directory refused [redacted]: [redacted] is taken")
        );
        let all = format!("{fields:?}");
        for secret in ["Siân", "Evans", "s.evans", "7123456001"] {
            assert!(!all.contains(secret), "{secret} in {all}");
        }
        // Opted in, shown; and escaped either way.
        let (_, fields) = journal(true, || {
            tracing::warn!(dn = DN, error = %"x\u{202e}y", "refused");
        });
        assert!(fields.contains(&("DN".into(), DN.into())), "{fields:?}");
        assert!(
            fields.contains(&("ERROR".into(), r"x\u{202e}y".into())),
            "{fields:?}"
        );
    }

    #[test]
    fn json_lines_are_escaped() {
        let evil = "x\u{1b}[31m\u{202e}\u{85}y";
        let text = capture(LogFormat::Json, true, || {
            tracing::warn!(error = %evil, "refused {evil}");
        });
        assert!(
            text.chars()
                .all(|c| c == '\n' || !nhs_model::escape::is_unsafe(c)),
            "{text:?}"
        );
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        let shown = r"x\u{1b}[31m\u{202e}\u{85}y";
        assert_eq!(v["fields"]["error"], shown);
        assert_eq!(v["fields"]["message"], format!("refused {shown}"));
    }

    #[test]
    fn json_lines_show_personal_data_when_opted_in() {
        let text = capture(LogFormat::Json, true, personal_event);
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
        assert_eq!(v["fields"]["dn"], DN);
        assert_eq!(v["fields"]["email"], "s.evans@northgate.example");
        assert_eq!(v["fields"]["mobile"], "+447123456001");
    }
}
