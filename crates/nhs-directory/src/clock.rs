//! The directory's clock, injectable so that tests can move a leaver past its 30 days
//! without waiting: the system clock, or a test clock that runs with the system clock
//! plus an offset that only ever grows (`POST /_admin/clock`).
//!
//! Times are kept to whole milliseconds, which is what the store keeps. A clock never
//! goes backwards through this interface.

use std::sync::atomic::{AtomicI64, Ordering};
use time::OffsetDateTime;

pub trait Clock: Send + Sync {
    fn now(&self) -> OffsetDateTime;
}

/// Wall-clock time, truncated to milliseconds.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        truncate_ms(OffsetDateTime::now_utc())
    }
}

/// The system clock moved forward by an offset that tests advance.
#[derive(Debug, Default)]
pub struct OffsetClock {
    offset_ms: AtomicI64,
}

impl OffsetClock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Move the clock forward by `seconds` (negative values are refused by the caller).
    pub fn advance(&self, seconds: u64) {
        let ms = i64::try_from(seconds.saturating_mul(1000)).unwrap_or(i64::MAX);
        // fetch_update cannot fail with a closure that always returns Some.
        let _ = self
            .offset_ms
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |o| {
                Some(o.saturating_add(ms))
            });
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::SeqCst)
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> OffsetDateTime {
        SystemClock.now() + time::Duration::milliseconds(self.offset_ms())
    }
}

/// Milliseconds since the Unix epoch.
pub fn to_ms(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch (clamped to what `time` can hold).
pub fn from_ms(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

fn truncate_ms(t: OffsetDateTime) -> OffsetDateTime {
    from_ms(to_ms(t))
}

/// RFC 3339 text (`meta.created`, `leaverSince`).
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.unix_timestamp().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_clock_only_moves_forward_by_whole_steps() {
        let c = OffsetClock::new();
        let before = c.now();
        c.advance(86_400);
        let after = c.now();
        assert!(after - before >= time::Duration::days(1));
        assert!(after - before < time::Duration::days(1) + time::Duration::seconds(5));
        assert_eq!(c.offset_ms(), 86_400_000);
        assert_eq!(to_ms(from_ms(1_700_000_000_123)), 1_700_000_000_123);
        assert_eq!(rfc3339(from_ms(0)), "1970-01-01T00:00:00Z");
    }
}
