//! The one place times become text and text becomes times: RFC 3339, whole seconds, UTC
//! as written (plans, the journal, reports).

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// `2026-11-22T10:00:00Z`: RFC 3339 without fractional seconds.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// The current time, as [`rfc3339`] writes it.
pub fn now_rfc3339() -> String {
    rfc3339(OffsetDateTime::now_utc())
}

/// The current time in RFC 3339 with milliseconds (`2026-11-22T10:00:00.250Z`): for
/// log lines, where events a second apart must still sort.
pub fn now_rfc3339_millis() -> String {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.millisecond() as u32 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parse an RFC 3339 time; the error says what was given.
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("{s:?} is not an RFC 3339 time: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_whole_seconds() {
        let t = parse_rfc3339("2026-11-22T10:00:00.75Z").unwrap();
        assert_eq!(rfc3339(t), "2026-11-22T10:00:00Z");
        assert!(
            parse_rfc3339("yesterday")
                .unwrap_err()
                .contains("\"yesterday\"")
        );
    }
}
