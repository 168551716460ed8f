//! A continuous-mode cycle on the Portal target: read the newest Mailbox Report in the
//! drop folder, settle, plan and — when no batch is in flight — write the next batch and
//! the worklist (`engine::portal::apply_portal`, mode `run`). Every Portal cycle is full:
//! the report is the directory's whole state, and the round trip through a person's
//! upload dwarfs what an AD delta would save. No watermark is kept.
//!
//! Held removals work as in a SCIM cycle: the set is recorded (status, metrics,
//! notification) and `approve-removals DIGEST` releases it onto the worklist.

use super::cycle::CycleOutcome;
use super::observe::{CycleKind, CycleReport, CycleResult, Observer};
use crate::config::Config;
use crate::engine::apply::ApplyRequest;
use crate::engine::{Silent, portal};
use crate::state::StateStore;
use crate::state::cycles::CycleCounts;
use crate::target::portal::{PortalSettings, PortalTarget};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// One Portal cycle. Never returns an error: a failure is a `failed` cycle.
// The store is held across the cycle's awaits: no other task uses it meanwhile.
#[allow(clippy::await_holding_lock)]
#[allow(clippy::too_many_arguments)]
pub async fn cycle(
    cfg: &Config,
    settings: &PortalSettings,
    target: &PortalTarget,
    store: &Arc<Mutex<StateStore>>,
    standby: bool,
    observer: &Observer,
    now: OffsetDateTime,
    cancel: &CancellationToken,
) -> CycleOutcome {
    let started = Instant::now();
    let mode = if standby { "standby" } else { "active" };
    let s = store.lock().unwrap_or_else(|p| p.into_inner());
    let held_before = s.held().ok().flatten();
    let cycle = s
        .begin_cycle("full", mode, now.unix_timestamp(), Some("portal report"))
        .unwrap_or(0);
    let req = ApplyRequest {
        plan_file: None,
        approve_removals: None,
        now,
    };
    let approved = held_before
        .as_ref()
        .filter(|h| h.approved_at.is_some())
        .map(|h| h.digest.clone());
    let result = if standby {
        crate::engine::plan::plan_from(cfg, &cfg.source, target, now, None, &Silent, cancel)
            .await
            .map(|p| (None, p.plan.operations.len(), p.plan.blocked.len()))
    } else {
        portal::apply_portal(
            cfg,
            settings,
            target,
            &cfg.source,
            &s,
            "run",
            req,
            approved.as_deref(),
            &Silent,
            cancel,
        )
        .await
        .map(|r| {
            let (ops, blocked) = (r.operations, r.blocked.len());
            (Some(r), ops, blocked)
        })
    };
    let mut operations: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut blocked: BTreeMap<String, u64> = BTreeMap::new();
    let (result, error, exit, held, held_changed, note) = match result {
        Ok((report, n_ops, n_blocked)) => {
            let mut held = Vec::new();
            let mut held_changed = false;
            let mut note = None;
            if let Some(r) = &report {
                if let Some(b) = &r.exported {
                    *operations
                        .entry(("export".into(), "exported".into()))
                        .or_default() += b.rows as u64;
                }
                for code in &r.blocked {
                    *blocked.entry(code.clone()).or_default() += 1;
                }
                let released = r.mass_approved;
                let set = match (&r.held_digest, released) {
                    (Some(d), false) => {
                        held = r.held.clone();
                        let items = serde_json::to_string(&r.held).unwrap_or_default();
                        Some((d.clone(), r.held.len() as i64, items))
                    }
                    _ => None,
                };
                held_changed = s
                    .set_held(set.as_ref().map(|(d, n, i)| (d.as_str(), *n, i.as_str())))
                    .unwrap_or(false);
                note = r
                    .in_flight
                    .as_ref()
                    .map(|b| format!("batch {} in flight", b.batch));
            }
            let counts = CycleCounts {
                operations: n_ops as i64,
                failed: 0,
                blocked: n_blocked as i64,
                held: held.len() as i64,
            };
            let (res, name) = if standby {
                (CycleResult::Standby, "standby")
            } else {
                (CycleResult::Ok, "ok")
            };
            let _ = s.finish_cycle(
                cycle,
                "full",
                name,
                report.as_ref().map(|r| r.run),
                note.as_deref(),
                counts,
                report
                    .as_ref()
                    .and_then(|r| r.held_digest.as_deref())
                    .filter(|_| !held.is_empty()),
            );
            (res, None, 0, held, held_changed, note)
        }
        Err(e) => {
            let why = format!("{:#}", anyhow::Error::from(e));
            tracing::error!(error = %why, "portal cycle failed");
            let _ = s.finish_cycle(
                cycle,
                "full",
                "failed",
                None,
                Some(&why),
                CycleCounts::default(),
                None,
            );
            (
                CycleResult::Failed,
                Some(why.clone()),
                1,
                Vec::new(),
                false,
                Some(why),
            )
        }
    };
    drop(s);
    let report = CycleReport {
        kind: CycleKind::Full,
        result,
        finished_at: SystemTime::now(),
        duration: started.elapsed(),
        source_read: Duration::ZERO,
        error,
        operations,
        blocked,
        quarantined: 0,
        held_removals: held.len() as u64,
        held_digest: None,
        rate_limit_wait: Duration::ZERO,
    };
    observer.cycle(report.clone());
    tracing::info!(
        kind = "full",
        mode,
        result = result.label(),
        "portal cycle finished"
    );
    CycleOutcome {
        report,
        cycle,
        exit,
        held_changed,
        held,
        note,
    }
}
