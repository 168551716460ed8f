//! One cycle of continuous mode: read (full, or the delta since the saved watermark) →
//! plan → push (active) or report (standby), with the engine's functions; then the
//! watermark, the cycle record, the held removals and the observer.
//!
//! The watermark advances only when every operation settled (applied, or skipped as
//! quarantined) and no removals are held: a failed cycle, or one with removals waiting
//! for approval, repeats from the old watermark, so the next delta reads the same
//! changes again and the held set stays the same set until it is approved.

use super::cache::{self, Cache};
use super::observe::{CycleKind, CycleReport, CycleResult, Observer};
use super::schedule::{self, Next};
use crate::config::Config;
use crate::diff;
use crate::engine::apply::{RunStatus, push_plan, reconcile};
use crate::engine::plan::decide_cycle;
use crate::engine::read::collect_since;
use crate::engine::{EngineError, Silent};
use crate::ids::ExternalId;
use crate::plan::{BlockReason, Plan, PlannedOp};
use crate::push::Outcome;
use crate::push::writeback::WriteBackSettings;
use crate::source::Source;
use crate::source::delta::{Delta, Watermark};
use crate::source::ldap::LdapSource;
use crate::state::StateStore;
use crate::state::cycles::CycleCounts;
use crate::target::{Target, Writer};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// What one cycle did.
#[derive(Clone, Debug)]
pub struct CycleOutcome {
    pub report: CycleReport,
    /// The cycle's record id (`status`).
    pub cycle: i64,
    /// `apply`'s exit code for `run --once`: 0 everything settled (or standby), 1 not.
    pub exit: u8,
    /// The held removals appeared or changed in this cycle.
    pub held_changed: bool,
    /// Held removals (anchor, target id, reason), sorted.
    pub held: Vec<(String, String, String)>,
    /// Why the cycle was full, or why it failed.
    pub note: Option<String>,
}

/// Run `f` on the shared store.
fn locked<T>(store: &Mutex<StateStore>, f: impl FnOnce(&StateStore) -> T) -> T {
    f(&store.lock().unwrap_or_else(|p| p.into_inner()))
}

/// What a cycle needs besides the configuration.
pub struct CycleEnv<'a, S, T, F> {
    pub cfg: &'a Config,
    pub source: &'a S,
    pub target: &'a T,
    /// Builds the writer (active cycles only: a standby cycle never calls it).
    pub writer: F,
    pub write_back: Option<(&'a WriteBackSettings, &'a LdapSource)>,
    pub store: &'a Arc<Mutex<StateStore>>,
    pub standby: bool,
    pub observer: &'a Observer,
}

/// Run one cycle. Never returns an error: a failure is a `failed` cycle (recorded,
/// reported, the watermark left where it was).
pub async fn run_cycle<S: Source, T: Target, W: Writer, F: Fn() -> Result<W, EngineError>>(
    env: &CycleEnv<'_, S, T, F>,
    now: OffsetDateTime,
    cancel: &CancellationToken,
) -> CycleOutcome {
    let mode = if env.standby { "standby" } else { "active" };
    let started = Instant::now();
    let now_unix = now.unix_timestamp();
    let next = match locked(env.store, |s| {
        Ok::<_, crate::state::StateError>((s.watermark()?, s.last_full_ok()?))
    }) {
        Ok((saved, last_full)) => schedule::choose(
            saved.as_ref(),
            mode,
            last_full,
            now_unix,
            env.cfg.daemon.full_every,
        ),
        Err(e) => Next::Full(format!("cannot read the saved watermark: {e}")),
    };
    let (kind, note) = match &next {
        Next::Full(why) => (CycleKind::Full, Some(why.clone())),
        Next::Delta(_) => (CycleKind::Delta, None),
    };
    let cycle = match locked(env.store, |s| {
        s.begin_cycle(kind.label(), mode, now_unix, note.as_deref())
    }) {
        Ok(id) => id,
        Err(e) => return failed(env, kind, 0, started, format!("{e}")),
    };
    let mut read_time = Duration::ZERO;
    match attempt(env, next, now, cancel, &mut read_time).await {
        Ok(done) => finish(env, cycle, started, read_time, done),
        Err((kind, e)) => {
            let why = format!("{:#}", anyhow::Error::from(e));
            // Stopped by a shutdown is not a failure of the cycle: `status` says so.
            let result = if cancel.is_cancelled() {
                "interrupted"
            } else {
                "failed"
            };
            let _ = locked(env.store, |s| {
                s.finish_cycle(
                    cycle,
                    kind.label(),
                    result,
                    None,
                    Some(&why),
                    CycleCounts::default(),
                    None,
                )
            });
            let mut out = failed(env, kind, cycle, started, why);
            out.report.source_read = read_time;
            out
        }
    }
}

fn failed<S, T, F>(
    env: &CycleEnv<'_, S, T, F>,
    kind: CycleKind,
    cycle: i64,
    started: Instant,
    why: String,
) -> CycleOutcome {
    tracing::error!(kind = kind.label(), error = %why, "cycle failed; the watermark is unchanged");
    let report = CycleReport {
        kind,
        result: CycleResult::Failed,
        finished_at: SystemTime::now(),
        duration: started.elapsed(),
        source_read: Duration::ZERO,
        error: Some(why.clone()),
        operations: BTreeMap::new(),
        blocked: BTreeMap::new(),
        quarantined: 0,
        held_removals: 0,
        held_digest: None,
        rate_limit_wait: Duration::ZERO,
    };
    env.observer.cycle(report.clone());
    CycleOutcome {
        report,
        cycle,
        exit: 1,
        held_changed: false,
        held: Vec::new(),
        note: Some(why),
    }
}

/// What a cycle that got as far as a plan did.
struct Done {
    kind: CycleKind,
    note: Option<String>,
    plan: Plan,
    /// The watermark to save if everything settled (`None`: the source has no deltas).
    next: Option<Watermark>,
    /// `None`: standby (nothing pushed).
    pushed: Option<crate::engine::apply::Pushed>,
    held: Vec<(String, String, String)>,
    held_digest: Option<String>,
    held_released: bool,
}

// The store's lock is held across the reconcile's lookups: no other task uses the store
// until the push starts.
#[allow(clippy::await_holding_lock)]
async fn attempt<S: Source, T: Target, W: Writer, F: Fn() -> Result<W, EngineError>>(
    env: &CycleEnv<'_, S, T, F>,
    next: Next,
    now: OffsetDateTime,
    cancel: &CancellationToken,
    read_time: &mut Duration,
) -> Result<Done, (CycleKind, EngineError)> {
    let cfg = env.cfg;
    let writer = if env.standby {
        None
    } else {
        let w = (env.writer)().map_err(|e| (CycleKind::Full, e))?;
        // Settle what an interrupted earlier cycle left in flight before planning. No
        // other task holds the store now.
        let store = env.store.lock().unwrap_or_else(|p| p.into_inner());
        reconcile(&store, &w)
            .await
            .map_err(|e| (CycleKind::Full, e))?;
        drop(store);
        Some(w)
    };
    let t = Instant::now();
    let dir = cfg.state_dir.clone();
    let mut cached = match &next {
        Next::Delta(_) => Cache::open(&dir),
        Next::Full(_) => None,
    };
    let next = match next {
        Next::Delta(_) if cached.is_none() => {
            Next::Full("no usable directory cache to plan a delta against".into())
        }
        n => n,
    };
    let (kind, mut note, collected, next_wm, deleted) = match next {
        Next::Delta(since) => {
            let (collected, delta) =
                collect_since(cfg, env.source, Some(&since), None, &Silent, cancel)
                    .await
                    .map_err(|e| (CycleKind::Delta, e.into()))?;
            match delta {
                Some(Delta::Changes { deleted, next }) => (
                    CycleKind::Delta,
                    None,
                    collected,
                    Some(next),
                    Some(deleted.into_iter().collect::<BTreeSet<ExternalId>>()),
                ),
                other => {
                    let why = match other {
                        Some(Delta::Full { why }) => why,
                        _ => "the source gave no delta".to_string(),
                    };
                    tracing::info!(reason = %why, "the watermark cannot be used; running a full cycle");
                    drop(collected);
                    let (c, w) = full_read(env, cancel).await?;
                    (CycleKind::Full, Some(why), c, w, None)
                }
            }
        }
        Next::Full(why) => {
            let (c, w) = full_read(env, cancel).await?;
            (CycleKind::Full, Some(why), c, w, None)
        }
    };
    *read_time = t.elapsed();
    let err = |e: EngineError| (kind, e);
    // The directory side: a full read, or for a delta the cache with the changed
    // people's accounts read again (see [`cache`]).
    if kind == CycleKind::Full {
        cached = None;
    }
    let state = match cached.as_mut() {
        Some(c) => delta_state(env, c, &collected, deleted.as_ref(), cancel)
            .await
            .map_err(|e| err(e.into()))?,
        None => None,
    };
    let state = match state {
        Some(s) => s,
        None => {
            if cached.take().is_some() {
                cache::forget(&dir);
            }
            env.target
                .read_state(cancel)
                .await
                .map_err(|e| err(e.into()))?
        }
    };
    let plan = decide_cycle(
        cfg,
        &collected,
        &state,
        env.source.kind(),
        env.target.kind(),
        now,
        deleted.as_ref(),
    )
    .map_err(err)?;
    let (held, held_digest) = plan.held_removals();
    let approved = match &held_digest {
        Some(d) => locked(env.store, |s| s.held())
            .map_err(|e| err(e.into()))?
            .is_some_and(|h| h.digest == *d && h.approved_at.is_some()),
        None => false,
    };
    let mut held_released = false;
    let pushed = match writer {
        None => None,
        Some(w) => {
            let mut ops = plan.operations.clone();
            if approved {
                held_released = true;
                ops.extend(
                    plan.blocked
                        .iter()
                        .filter(|b| b.reason == BlockReason::MassChangeThreshold)
                        .map(|b| PlannedOp {
                            op: b.operation.clone(),
                            stripped: vec![],
                        }),
                );
            }
            Some(
                push_plan(
                    env.store,
                    cfg,
                    env.target,
                    w,
                    env.write_back,
                    "run",
                    &plan,
                    &collected,
                    ops,
                    &Silent,
                    cancel,
                )
                .await
                .map_err(err)?,
            )
        }
    };
    // Keep the cache consistent with what was applied: read the touched accounts again.
    let touched: BTreeSet<ExternalId> = pushed
        .iter()
        .flat_map(|p| p.push.items.iter())
        .filter_map(|i| ExternalId::parse(&i.external_id).ok())
        .collect();
    let fresh = if touched.is_empty() {
        Ok(Vec::new())
    } else {
        env.target.accounts_with(&touched, cancel).await
    };
    match fresh {
        Ok(fresh) => {
            if cached.is_none() {
                // A full state: it becomes the cache.
                cache::save(&dir, &state);
                cached = Cache::open(&dir);
            }
            drop(state);
            // No cache (not kept while an organisation is refused, or not written): the
            // next cycle is full anyway.
            if let Some(Err(e)) = cached.as_mut().map(|c| c.replace(&touched, &fresh)) {
                tracing::warn!(error = %e, "cannot refresh the directory cache; the next cycle is full");
                drop(cached);
                cache::forget(&dir);
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot refresh the directory cache; the next cycle is full");
            drop(cached);
            cache::forget(&dir);
        }
    }
    if held_digest.is_some() && !held_released && note.is_none() {
        note = Some("removals are held".into());
    }
    Ok(Done {
        kind,
        note,
        plan,
        next: next_wm,
        pushed,
        held,
        held_digest,
        held_released,
    })
}

/// The directory's state for a delta: the changed people's accounts read again and
/// written into the cache, then the cache's partial state (see [`cache`]). `None` when
/// the cache cannot be used (logged): the caller reads the directory in full.
async fn delta_state<S: Source, T: Target, F>(
    env: &CycleEnv<'_, S, T, F>,
    cache: &mut Cache,
    collected: &crate::engine::read::Collected,
    deleted: Option<&BTreeSet<ExternalId>>,
    cancel: &CancellationToken,
) -> Result<Option<crate::target::TargetState>, crate::target::TargetError> {
    let mut anchors: BTreeSet<ExternalId> = collected.persons.anchors().cloned().collect();
    anchors.extend(collected.out_of_scope.iter().cloned());
    anchors.extend(
        collected
            .rejected
            .iter()
            .filter_map(|r| r.external_id.clone()),
    );
    anchors.extend(deleted.into_iter().flatten().cloned());
    let fresh = env.target.accounts_with(&anchors, cancel).await?;
    let join: BTreeSet<_> = collected
        .persons
        .iter()
        .flat_map(|p| {
            env.cfg
                .soft_match
                .iter()
                .filter_map(|k| Some((*k, diff::person_match_value(p, *k)?)))
        })
        .collect();
    match cache
        .replace(&anchors, &fresh)
        .and_then(|()| cache.partial(&anchors, &join, &env.cfg.agent_id))
    {
        Ok(state) => Ok(Some(state)),
        Err(e) => {
            tracing::warn!(error = %e, "the directory cache cannot be used; reading the directory in full");
            Ok(None)
        }
    }
}

/// The full read, with the source's watermark taken before it (changes made during the
/// read are then picked up by the next delta).
async fn full_read<S: Source, T: Target, F>(
    env: &CycleEnv<'_, S, T, F>,
    cancel: &CancellationToken,
) -> Result<(crate::engine::read::Collected, Option<Watermark>), (CycleKind, EngineError)> {
    let err = |e: crate::source::SourceError| (CycleKind::Full, EngineError::Source(e));
    let wm = env.source.watermark(cancel).await.map_err(err)?;
    let (c, _) = collect_since(env.cfg, env.source, None, None, &Silent, cancel)
        .await
        .map_err(err)?;
    Ok((c, wm))
}

/// Record, save the watermark if everything settled, report.
fn finish<S, T, F>(
    env: &CycleEnv<'_, S, T, F>,
    cycle: i64,
    started: Instant,
    read_time: Duration,
    d: Done,
) -> CycleOutcome {
    let mode = if env.standby { "standby" } else { "active" };
    let mut operations: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut failed_ops = 0i64;
    let (result, name, exit) = match &d.pushed {
        None => {
            for p in &d.plan.operations {
                *operations
                    .entry((p.op.kind().name().to_string(), "planned".to_string()))
                    .or_default() += 1;
            }
            (CycleResult::Standby, "standby", 0)
        }
        Some(p) => {
            for i in &p.push.items {
                let r = match i.outcome {
                    Outcome::Applied { .. } => "applied",
                    Outcome::Failed { .. } => "failed",
                    Outcome::NotSent => "not_sent",
                };
                *operations
                    .entry((i.kind.name().to_string(), r.to_string()))
                    .or_default() += 1;
            }
            failed_ops = p.push.failed() as i64;
            let all =
                p.status == RunStatus::Ok && p.write_back.as_ref().is_none_or(|w| w.all_written());
            if all {
                (CycleResult::Ok, "ok", 0)
            } else {
                (CycleResult::Partial, p.status.name(), 1)
            }
        }
    };
    let mut blocked: BTreeMap<String, u64> = BTreeMap::new();
    for b in &d.plan.blocked {
        *blocked.entry(b.reason.code()).or_default() += 1;
    }
    let still_held = d.held_digest.is_some() && !d.held_released;
    let settled = matches!(result, CycleResult::Ok | CycleResult::Standby) && !still_held;
    let mut held_changed = false;
    let mut note = d.note.clone();
    let saved = locked(env.store, |s| -> Result<(), crate::state::StateError> {
        held_changed = match (&d.held_digest, d.held_released) {
            (Some(digest), false) => {
                let items = serde_json::to_string(&d.held).unwrap_or_default();
                s.set_held(Some((digest, d.held.len() as i64, &items)))?
            }
            _ => s.set_held(None)?,
        };
        if settled {
            match &d.next {
                Some(w) => s.save_watermark(
                    &serde_json::to_string(w).unwrap_or_default(),
                    &w.server,
                    mode,
                    cycle,
                )?,
                None => s.clear_watermark()?,
            }
        }
        s.finish_cycle(
            cycle,
            d.kind.label(),
            name,
            d.pushed.as_ref().map(|p| p.run),
            note.as_deref(),
            CycleCounts {
                operations: d.plan.operations.len() as i64,
                failed: failed_ops,
                blocked: d.plan.blocked.len() as i64,
                held: if still_held { d.held.len() as i64 } else { 0 },
            },
            d.held_digest.as_deref().filter(|_| still_held),
        )
    });
    let (result, exit) = match saved {
        Ok(()) => (result, exit),
        Err(e) => {
            let why = format!("cannot record the cycle in the state directory: {e}");
            tracing::error!(error = %why, "cycle not recorded");
            note = Some(why);
            (CycleResult::Failed, 1)
        }
    };
    let report = CycleReport {
        kind: d.kind,
        result,
        finished_at: SystemTime::now(),
        duration: started.elapsed(),
        source_read: read_time,
        error: if result == CycleResult::Failed {
            note.clone()
        } else {
            None
        },
        operations,
        blocked,
        quarantined: d.pushed.as_ref().map_or(0, |p| p.quarantined.len() as u64),
        held_removals: if still_held { d.held.len() as u64 } else { 0 },
        held_digest: d.held_digest.clone().filter(|_| still_held),
        rate_limit_wait: d
            .pushed
            .as_ref()
            .map_or(Duration::ZERO, |p| p.push.rate_limit_wait),
    };
    env.observer.cycle(report.clone());
    tracing::info!(
        kind = d.kind.label(),
        mode,
        result = result.label(),
        operations = d.plan.operations.len(),
        blocked = d.plan.blocked.len(),
        held = report.held_removals,
        watermark_saved = settled,
        "cycle finished"
    );
    CycleOutcome {
        report,
        cycle,
        exit,
        held_changed,
        held: if still_held { d.held } else { Vec::new() },
        note,
    }
}
