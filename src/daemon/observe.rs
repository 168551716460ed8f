//! What continuous mode tells operators: the counters and gauges behind `GET /metrics`
//! and the last-cycle facts behind `GET /healthz` (names in README "Running
//! continuously"). The cycle loop reports into one shared [`Observer`]; the HTTP side
//! only reads it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

/// `full` or `delta` (metric label `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CycleKind {
    Full,
    Delta,
}

impl CycleKind {
    pub fn label(self) -> &'static str {
        match self {
            CycleKind::Full => "full",
            CycleKind::Delta => "delta",
        }
    }
}

/// How a cycle ended (metric label `result`): `ok` (everything settled), `partial`
/// (some operations failed or were quarantined), `failed` (no plan, or the run
/// stopped), `standby` (planned only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CycleResult {
    Ok,
    Partial,
    Failed,
    Standby,
}

impl CycleResult {
    pub fn label(self) -> &'static str {
        match self {
            CycleResult::Ok => "ok",
            CycleResult::Partial => "partial",
            CycleResult::Failed => "failed",
            CycleResult::Standby => "standby",
        }
    }
}

/// One finished cycle, as the loop reports it.
#[derive(Clone, Debug)]
pub struct CycleReport {
    pub kind: CycleKind,
    pub result: CycleResult,
    pub finished_at: SystemTime,
    pub duration: Duration,
    /// How long reading the source took.
    pub source_read: Duration,
    /// Why it failed (for `/healthz`), when it did.
    pub error: Option<String>,
    /// Operations by (kind, result): `provision`/`applied`, `remove`/`failed`, …
    pub operations: BTreeMap<(String, String), u64>,
    /// Blocked operations by reason code (the plan's `blocked[].reason`).
    pub blocked: BTreeMap<String, u64>,
    /// Objects quarantined after the cycle.
    pub quarantined: u64,
    /// Removals held by the mass-change guard, and the digest that approves them.
    pub held_removals: u64,
    pub held_digest: Option<String>,
    /// Time operations waited for the rate limiter.
    pub rate_limit_wait: Duration,
}

/// Shared between the cycle loop (writes) and the HTTP endpoints (read).
#[derive(Debug, Default)]
pub struct Observer {
    inner: Mutex<Seen>,
}

#[derive(Debug, Default)]
struct Seen {
    cycles: BTreeMap<(CycleKind, CycleResult), u64>,
    operations: BTreeMap<(String, String), u64>,
    last: Option<CycleReport>,
    last_success: Option<SystemTime>,
}

impl Observer {
    /// Record a finished cycle.
    pub fn cycle(&self, report: CycleReport) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *s.cycles.entry((report.kind, report.result)).or_default() += 1;
        for (k, n) in &report.operations {
            *s.operations.entry(k.clone()).or_default() += n;
        }
        if matches!(report.result, CycleResult::Ok | CycleResult::Standby) {
            s.last_success = Some(report.finished_at);
        }
        s.last = Some(report);
    }

    /// Cycles so far by kind and result.
    pub fn cycles(&self) -> BTreeMap<(CycleKind, CycleResult), u64> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cycles
            .clone()
    }

    /// The last cycle reported, and when a cycle last succeeded.
    pub fn last(&self) -> (Option<CycleReport>, Option<SystemTime>) {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (s.last.clone(), s.last_success)
    }
}
