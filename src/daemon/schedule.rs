//! Which kind of cycle comes next (pure: the clock is passed in).
//!
//! Full when there is no watermark to start from, when the saved one was saved in the
//! other mode (a standby's watermark says nothing of what an active node applied, and
//! the other way round), when it cannot be read, or when a full reconcile is due
//! (`full_every` since the start of the last full cycle that settled everything —
//! recorded in the state directory, so a restart keeps the cadence). Otherwise delta.

use crate::source::delta::Watermark;
use crate::state::cycles::SavedWatermark;
use std::time::Duration;

/// The next cycle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Next {
    /// Why a full cycle.
    Full(String),
    /// Delta from this watermark.
    Delta(Watermark),
}

pub fn choose(
    saved: Option<&SavedWatermark>,
    mode: &str,
    last_full_ok: Option<i64>,
    now_unix: i64,
    full_every: Duration,
) -> Next {
    let Some(saved) = saved else {
        return Next::Full("no watermark to start a delta from".into());
    };
    if saved.mode != mode {
        return Next::Full(format!(
            "the watermark was saved in {} mode and this cycle is {mode}",
            saved.mode
        ));
    }
    let every = i64::try_from(full_every.as_secs()).unwrap_or(i64::MAX);
    match last_full_ok {
        None => return Next::Full("no full cycle has completed yet".into()),
        Some(t) if now_unix.saturating_sub(t) >= every => {
            return Next::Full(format!(
                "a full reconcile is due (the last began {}s ago; full_every_hours = {})",
                now_unix.saturating_sub(t),
                every / 3600
            ));
        }
        Some(_) => {}
    }
    match serde_json::from_str::<Watermark>(&saved.watermark) {
        Ok(w) => Next::Delta(w),
        Err(e) => Next::Full(format!("the saved watermark cannot be read: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(mode: &str) -> SavedWatermark {
        SavedWatermark {
            watermark: r#"{"kind":"ad_usn","server":"CN=DC1","position":"42"}"#.into(),
            server: "CN=DC1".into(),
            mode: mode.into(),
            cycle: 1,
            saved_at: "2026-12-01T00:00:00Z".into(),
        }
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    #[test]
    fn full_first_then_delta_then_full_when_due() {
        assert!(matches!(
            choose(None, "active", None, 1000, DAY),
            Next::Full(_)
        ));
        let s = saved("active");
        let Next::Delta(w) = choose(Some(&s), "active", Some(1000), 1000 + 3600, DAY) else {
            panic!("delta expected")
        };
        assert_eq!(w.position, "42");
        // Exactly full_every after the last full cycle began: full.
        let Next::Full(why) = choose(Some(&s), "active", Some(1000), 1000 + 86_400, DAY) else {
            panic!("full expected")
        };
        assert!(why.contains("due"), "{why}");
        // Just before: still delta.
        assert!(matches!(
            choose(Some(&s), "active", Some(1000), 1000 + 86_399, DAY),
            Next::Delta(_)
        ));
    }

    #[test]
    fn a_watermark_from_the_other_mode_or_unreadable_means_full() {
        let s = saved("standby");
        let Next::Full(why) = choose(Some(&s), "active", Some(1000), 1001, DAY) else {
            panic!("full expected")
        };
        assert!(why.contains("standby"), "{why}");
        let mut bad = saved("active");
        bad.watermark = "{".into();
        assert!(
            matches!(choose(Some(&bad), "active", Some(1000), 1001, DAY), Next::Full(w) if w.contains("cannot be read"))
        );
        assert!(matches!(
            choose(Some(&saved("active")), "active", None, 1001, DAY),
            Next::Full(_)
        ));
    }
}
