//! `tansync status` and `tansync approve-removals`: what continuous mode has done and
//! is holding, read from the state directory without its lock (beside a running
//! `tansync run`).

use crate::config::Config;
use crate::source::delta::Watermark;
use crate::state::cycles::{CycleRecord, HeldSet, approve_held_unlocked};
use crate::state::{History, StateError};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Clone, Debug, Serialize)]
pub struct Status {
    /// `active` or `standby`, as configured (`run --standby` overrides it per process).
    pub mode: &'static str,
    /// The latest cycles, newest first.
    pub cycles: Vec<CycleRecord>,
    /// The latest cycle of each kind and result (`full/ok`, `delta/failed`, …).
    pub last: BTreeMap<String, CycleRecord>,
    pub watermark: Option<WatermarkStatus>,
    pub held_removals: Option<HeldStatus>,
    /// Objects skipped after repeated failures (anchor, failures).
    pub quarantined: Vec<(String, u32)>,
    /// With the Portal target: batches in flight and settled, rows awaiting evidence,
    /// the open worklist.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub portal: Option<crate::engine::portal::PortalStatus>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WatermarkStatus {
    pub kind: String,
    /// The server (DC) the watermark belongs to.
    pub server: String,
    pub invocation_id: Option<String>,
    pub position: String,
    /// The mode of the cycle that saved it, which cycle, and when.
    pub mode: String,
    pub cycle: i64,
    pub saved_at: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct HeldStatus {
    pub digest: String,
    pub count: i64,
    pub since: String,
    pub approved_at: Option<String>,
    pub removals: serde_json::Value,
}

impl From<HeldSet> for HeldStatus {
    fn from(h: HeldSet) -> Self {
        Self {
            removals: serde_json::from_str(&h.items).unwrap_or(serde_json::Value::Null),
            digest: h.digest,
            count: h.count,
            since: h.since,
            approved_at: h.approved_at,
        }
    }
}

pub fn status(cfg: &Config, limit: usize) -> Result<Status, StateError> {
    let h = History::open(&cfg.state_dir)?;
    let cycles = h.cycles(limit.max(1))?;
    let mut last = BTreeMap::new();
    for c in h.cycles(1000)? {
        last.entry(format!("{}/{}", c.kind, c.result)).or_insert(c);
    }
    let watermark = h.watermark()?.map(|s| {
        let w: Option<Watermark> = serde_json::from_str(&s.watermark).ok();
        WatermarkStatus {
            kind: w.as_ref().map(|w| w.kind.clone()).unwrap_or_default(),
            server: s.server,
            invocation_id: w.as_ref().and_then(|w| w.invocation_id.clone()),
            position: w.map(|w| w.position).unwrap_or_default(),
            mode: s.mode,
            cycle: s.cycle,
            saved_at: s.saved_at,
        }
    });
    Ok(Status {
        mode: if cfg.daemon.standby {
            "standby"
        } else {
            "active"
        },
        cycles,
        last,
        watermark,
        held_removals: h.held()?.map(HeldStatus::from),
        quarantined: h.quarantined(cfg.push.quarantine_after)?,
        portal: match cfg.portal {
            Some(_) => Some(crate::engine::portal::status_from(
                &h,
                &crate::engine::portal::inbox(cfg),
            )?),
            None => None,
        },
    })
}

/// Approve the held removals whose digest `status` shows. `Err` text: why not.
pub fn approve_removals(
    cfg: &Config,
    digest: &str,
) -> Result<Result<HeldStatus, String>, StateError> {
    Ok(approve_held_unlocked(&cfg.state_dir, digest.trim())?.map(HeldStatus::from))
}
