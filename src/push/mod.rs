//! Push stage: sends a plan's operations to the directory — rate-limited (a global and a
//! per-organisation pace with a burst, see `pace`), with bounded concurrency so latency does not cap
//! throughput, retries with exponential backoff and jitter on 429/5xx/transport errors
//! (honouring `Retry-After`), every operation journalled before it is sent and after.
//!
//! A shutdown (the run's cancellation token) stops it taking new work: operations not yet
//! sent are journalled `not_sent`, requests on the wire are let finish and journalled, and
//! a retry is not waited for (an attempt whose effect is unknown stays `sending`, which
//! the next run reconciles).
//!
//! Never does: send a blocked operation (it only receives planned ones); re-send a create
//! whose fate is unknown without first looking the anchor up (creates are idempotent);
//! keep going when failures look systemic; send an operation it could not journal; settle
//! an operation without its audit record (`state::audit`, written in the same
//! transaction as the final journal state).

mod pace;
pub mod portal;
pub mod request;
pub mod writeback;

use crate::ids::{ExternalId, OdsCode, RuleId};
use crate::plan::{OpKind, Operation, PlannedOp};
use crate::state::StateStore;
use crate::state::audit::{AuditEntry, outcome as audited};
use crate::target::Writer;
use crate::target::scim::CallError;
use pace::Pacer;
use request::Request;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Executor settings (the configuration's `[push]`).
#[derive(Clone, Debug, PartialEq)]
pub struct PushSettings {
    /// Requests per second to the directory, all organisations together.
    pub rate_per_second: NonZeroU32,
    pub burst: NonZeroU32,
    /// Requests per second for any one organisation.
    pub org_rate_per_second: NonZeroU32,
    pub org_burst: NonZeroU32,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Tries per operation before it counts as failed.
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Runs an object may fail in a row before it is quarantined (skipped and reported).
    pub quarantine_after: u32,
    /// Stop the run when this share of the last `systemic_window` operations failed.
    pub systemic_ratio: f64,
    pub systemic_window: usize,
}

impl Default for PushSettings {
    fn default() -> Self {
        let nz = |n| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        Self {
            rate_per_second: nz(10),
            burst: nz(10),
            org_rate_per_second: nz(10),
            org_burst: nz(10),
            concurrency: 8,
            max_attempts: 5,
            backoff_base: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
            quarantine_after: 3,
            systemic_ratio: 0.8,
            systemic_window: 20,
        }
    }
}

/// What happened to one operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied {
        target_id: Option<String>,
    },
    Failed {
        error: String,
    },
    /// Not sent: the run was stopped before it.
    NotSent,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpReport {
    pub kind: OpKind,
    pub external_id: String,
    pub ods_code: String,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Default)]
pub struct PushReport {
    pub items: Vec<OpReport>,
    /// Set when the run stopped because failures looked systemic.
    pub stopped: Option<String>,
    /// Set when a shutdown was requested during the push.
    pub interrupted: bool,
    /// Time operations spent waiting for the rate limiters (summed over operations).
    pub rate_limit_wait: Duration,
}

impl PushReport {
    pub fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.items.iter().filter(|i| f(&i.outcome)).count()
    }
    pub fn applied(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Applied { .. }))
    }
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed { .. }))
    }
    pub fn not_sent(&self) -> usize {
        self.count(|o| matches!(o, Outcome::NotSent))
    }
}

/// What the audit trail records about each operation besides its outcome: the plan it
/// came from, the sharing agreements that permitted it and the rules that decided it.
#[derive(Clone, Debug, Default)]
pub struct AuditContext {
    pub fingerprint: String,
    /// Sharing agreement reference by organisation.
    pub agreements: BTreeMap<OdsCode, String>,
    /// The filter rule that put each person in scope (provisions carry their own).
    pub rules: HashMap<ExternalId, RuleId>,
}

impl AuditContext {
    /// The audit record of an operation settled with `outcome` (an `audit::outcome`).
    pub fn entry(
        &self,
        run: i64,
        op: &Operation,
        outcome: &str,
        target_id: Option<&str>,
    ) -> AuditEntry {
        let agreements: Vec<&str> = op
            .organisations()
            .into_iter()
            .filter_map(|o| self.agreements.get(o).map(String::as_str))
            .collect();
        let rule = match op {
            Operation::Provision { rule, .. } => Some(rule),
            _ => self.rules.get(op.external_id()),
        };
        let reason = match op {
            Operation::Remove { reason, .. } => Some(crate::plan::render::code(reason)),
            _ => None,
        };
        let target = match op {
            Operation::Provision { .. } => None,
            Operation::Update { target_id, .. }
            | Operation::Remove { target_id, .. }
            | Operation::Move { target_id, .. }
            | Operation::Restore { target_id, .. }
            | Operation::Join { target_id, .. } => Some(target_id.to_string()),
        };
        AuditEntry {
            at: crate::timefmt::now_rfc3339(),
            run,
            fingerprint: self.fingerprint.clone(),
            kind: op.kind().name().to_string(),
            external_id: op.external_id().to_string(),
            ods_code: op.ods_code().to_string(),
            target_id: target_id.map(String::from).or(target),
            agreement: (!agreements.is_empty()).then(|| agreements.join(", ")),
            rule: rule.map(|r| r.to_string()),
            reason,
            outcome: outcome.to_string(),
        }
    }
}

/// Called as operations finish (a progress bar, say).
pub trait PushProgress: Send + Sync {
    fn started(&self, _total: usize) {}
    fn finished_one(&self) {}
    fn done(&self) {}
}

/// No progress shown.
pub struct NoProgress;
impl PushProgress for NoProgress {}

struct Shared<W> {
    writer: W,
    store: Arc<Mutex<StateStore>>,
    global: Pacer,
    per_org: Pacer,
    settings: PushSettings,
    agent_id: String,
    nhsmail_domain: String,
    recent: Mutex<VecDeque<bool>>,
    /// Cancelled by a systemic stop, or (as its parent) by a shutdown.
    stop: CancellationToken,
    shutdown: CancellationToken,
    stopped_why: Mutex<Option<String>>,
    run: i64,
    audit: AuditContext,
    /// Time spent waiting for a pacing slot, summed over operations.
    waited: Mutex<Duration>,
}

fn journal<T>(store: &Arc<Mutex<StateStore>>, f: impl FnOnce(&StateStore) -> T) -> T {
    // A poisoned lock only means another task panicked mid-write; the store is still usable.
    let guard = store.lock().unwrap_or_else(|p| p.into_inner());
    f(&guard)
}

fn delay(s: &PushSettings, attempt: u32, retry_after: Option<Duration>) -> Duration {
    crate::target::scim::backoff(s.backoff_base, s.backoff_max, attempt, retry_after)
}

impl<W: Writer> Shared<W> {
    async fn wait_turn(&self, ods: &str) {
        let t = tokio::time::Instant::now();
        self.global.ready("").await;
        self.per_org.ready(ods).await;
        *self.waited.lock().unwrap_or_else(|p| p.into_inner()) += t.elapsed();
    }

    fn note(&self, ok: bool) {
        let mut r = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        r.push_back(ok);
        while r.len() > self.settings.systemic_window {
            r.pop_front();
        }
        let failures = r.iter().filter(|ok| !**ok).count();
        if r.len() >= self.settings.systemic_window.min(10)
            && failures as f64 >= self.settings.systemic_ratio * r.len() as f64
            && !self.stop.is_cancelled()
        {
            *self.stopped_why.lock().unwrap_or_else(|p| p.into_inner()) = Some(format!(
                "{failures} of the last {} operations failed: stopping (failures look systemic)",
                r.len()
            ));
            self.stop.cancel();
        }
    }

    /// The journal cannot be written: nothing more may be sent (an unjournalled operation
    /// could not be reconciled after a crash), so the whole run stops.
    fn journal_failed(&self, e: crate::state::StateError) -> Outcome {
        let error = format!("cannot journal the operation: {e}");
        let mut why = self.stopped_why.lock().unwrap_or_else(|p| p.into_inner());
        if why.is_none() {
            *why = Some(format!("{error}: stopping"));
        }
        self.stop.cancel();
        Outcome::Failed { error }
    }

    /// Record what became of an operation already journalled, with its audit record
    /// (one transaction: both or neither). If that cannot be written the outcome stands
    /// (the operation's row still says `sending`, which the next run reconciles as it
    /// would after a crash) but the run stops: nothing more is sent while the journal or
    /// the audit trail is failing.
    fn settle(
        &self,
        op: &Operation,
        outcome: &str,
        target_id: Option<&str>,
        f: impl FnOnce(&StateStore) -> Result<(), crate::state::StateError>,
    ) {
        let entry = self.audit.entry(self.run, op, outcome, target_id);
        if let Err(e) = journal(&self.store, |s| s.settle_audited(f, &entry)) {
            let _ = self.journal_failed(e);
        }
    }

    /// After an ambiguous failure: does the directory already hold the result?
    async fn landed(&self, op: &Operation) -> Option<String> {
        match op {
            Operation::Provision { external_id, .. } => {
                match self.writer.find_by_external_id(external_id).await {
                    Ok(Some(u)) => Some(u.id.unwrap_or_default()),
                    _ => None,
                }
            }
            Operation::Update { target_id, .. }
            | Operation::Remove { target_id, .. }
            | Operation::Move { target_id, .. }
            | Operation::Restore { target_id, .. }
            | Operation::Join { target_id, .. } => match self.writer.get(target_id).await {
                Ok((u, _)) if request::holds(op, &u) => Some(target_id.to_string()),
                _ => None,
            },
        }
    }

    async fn send(&self, req: &Request) -> Result<Option<String>, CallError> {
        match req {
            Request::Create(u) => self.writer.create(u).await,
            Request::Patch {
                target_id,
                etag,
                patch,
            } => self
                .writer
                .patch(target_id, etag.as_deref(), patch)
                .await
                .map(|()| Some(target_id.to_string())),
        }
    }

    async fn run_one(&self, p: &PlannedOp) -> Outcome {
        let op = &p.op;
        let ods = op.ods_code().to_string();
        let target = match op {
            Operation::Provision { .. } => None,
            Operation::Update { target_id, .. }
            | Operation::Remove { target_id, .. }
            | Operation::Move { target_id, .. }
            | Operation::Restore { target_id, .. }
            | Operation::Join { target_id, .. } => Some(target_id.to_string()),
        };
        let jid = match journal(&self.store, |s| {
            s.record(
                self.run,
                op.kind().name(),
                op.external_id().as_str(),
                &ods,
                target.as_deref(),
            )
        }) {
            Ok(id) => id,
            Err(e) => return self.journal_failed(e),
        };
        let req = request::build(op, &self.agent_id, &self.nhsmail_domain);
        let mut uncertain = false;
        let mut attempt = 0u32;
        loop {
            // Waiting for a pacing slot ends with a stop too; either way, nothing is sent
            // for the first time once the run has stopped.
            tokio::select! {
                () = self.wait_turn(&ods) => {}
                () = self.stop.cancelled() => {}
            }
            if self.stop.is_cancelled() && attempt == 0 {
                self.settle(op, audited::NOT_SENT, None, |s| {
                    s.set_state(jid, crate::state::op_state::NOT_SENT, None)
                });
                return Outcome::NotSent;
            }
            if uncertain && let Some(id) = self.landed(op).await {
                self.settle(op, audited::APPLIED, Some(&id), |s| s.done(jid, Some(&id)));
                return Outcome::Applied {
                    target_id: Some(id),
                };
            }
            if let Err(e) = journal(&self.store, |s| s.sending(jid)) {
                return self.journal_failed(e);
            }
            attempt += 1;
            match self.send(&req).await {
                Ok(id) => {
                    self.settle(op, audited::APPLIED, id.as_deref(), |s| {
                        s.done(jid, id.as_deref())
                    });
                    return Outcome::Applied { target_id: id };
                }
                Err(e) => {
                    // A create refused as a duplicate, or a write refused as stale, after
                    // an attempt that may have landed: check before calling it failed.
                    if uncertain && matches!(e.status(), Some(409 | 412)) {
                        self.wait_turn(&ods).await;
                        if let Some(id) = self.landed(op).await {
                            self.settle(op, audited::APPLIED, Some(&id), |s| {
                                s.done(jid, Some(&id))
                            });
                            return Outcome::Applied {
                                target_id: Some(id),
                            };
                        }
                    }
                    uncertain |= e.ambiguous();
                    if e.retryable()
                        && attempt < self.settings.max_attempts
                        && !self.stop.is_cancelled()
                    {
                        tracing::debug!(attempt, error = %e, "retrying");
                        let wait = delay(&self.settings, attempt - 1, e.retry_after());
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = self.stop.cancelled() => {}
                        }
                        if self.stop.is_cancelled() {
                            // Stopped (shutdown or systemic) during the wait: not retried.
                            // An attempt that may have landed stays `sending` for the next
                            // run to reconcile; otherwise nothing took effect.
                            if uncertain {
                                self.settle(op, audited::UNKNOWN, None, |_| Ok(()));
                            } else {
                                let why = if self.shutdown.is_cancelled() {
                                    "shutdown before the retry"
                                } else {
                                    "the run stopped before the retry"
                                };
                                self.settle(op, audited::NOT_SENT, None, |s| {
                                    s.set_state(jid, crate::state::op_state::NOT_SENT, Some(why))
                                });
                            }
                            return Outcome::NotSent;
                        }
                        continue;
                    }
                    let error = e.to_string();
                    self.settle(op, audited::FAILED, None, |s| s.failed(jid, &error));
                    return Outcome::Failed { error };
                }
            }
        }
    }
}

/// What the push needs besides the operations.
pub struct PushContext<'a> {
    pub run: i64,
    pub agent_id: &'a str,
    pub nhsmail_domain: &'a str,
    pub settings: PushSettings,
    /// The run's shutdown: when cancelled, nothing new is sent.
    pub shutdown: &'a CancellationToken,
    pub progress: &'a dyn PushProgress,
    /// What each operation's audit record says besides its outcome.
    pub audit: AuditContext,
}

/// Send `ops` (in plan order, up to `concurrency` at a time). Returns when every
/// operation has an outcome or the run was stopped.
pub async fn push<W: Writer>(
    ops: Vec<PlannedOp>,
    writer: W,
    store: Arc<Mutex<StateStore>>,
    cx: PushContext<'_>,
) -> PushReport {
    let settings = cx.settings;
    let shared = Arc::new(Shared {
        writer,
        store,
        global: Pacer::new(settings.rate_per_second, settings.burst),
        per_org: Pacer::new(settings.org_rate_per_second, settings.org_burst),
        agent_id: cx.agent_id.to_string(),
        nhsmail_domain: cx.nhsmail_domain.to_string(),
        recent: Mutex::new(VecDeque::new()),
        stop: cx.shutdown.child_token(),
        shutdown: cx.shutdown.clone(),
        stopped_why: Mutex::new(None),
        run: cx.run,
        settings,
        audit: cx.audit,
        waited: Mutex::new(Duration::ZERO),
    });
    let progress = cx.progress;
    progress.started(ops.len());
    let sem = Arc::new(tokio::sync::Semaphore::new(
        shared.settings.concurrency.max(1),
    ));
    let mut set = tokio::task::JoinSet::new();
    let total = ops.len();
    for (i, p) in ops.into_iter().enumerate() {
        // After a stop every remaining operation is still journalled (as not sent).
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        let sh = shared.clone();
        set.spawn(async move {
            let outcome = sh.run_one(&p).await;
            // One line per finished operation (`TANSYNC_LOG=tansync::push=debug`): what
            // tests wait on to act mid-run, and what an operator tails.
            tracing::debug!(
                kind = %p.op.kind(),
                external_id = %p.op.external_id(),
                outcome = ?outcome,
                "operation finished"
            );
            match &outcome {
                Outcome::Applied { .. } => sh.note(true),
                Outcome::Failed { .. } => sh.note(false),
                Outcome::NotSent => {}
            }
            drop(permit);
            (
                i,
                OpReport {
                    kind: p.op.kind(),
                    external_id: p.op.external_id().to_string(),
                    ods_code: p.op.ods_code().to_string(),
                    outcome,
                },
            )
        });
    }
    let mut items: Vec<(usize, OpReport)> = Vec::with_capacity(total);
    while let Some(res) = set.join_next().await {
        match res {
            Ok(r) => {
                progress.finished_one();
                items.push(r);
            }
            Err(e) => tracing::error!(error = %e, "an apply task ended abnormally"),
        }
    }
    progress.done();
    items.sort_by_key(|(i, _)| *i);
    let stopped = shared
        .stopped_why
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let rate_limit_wait = *shared.waited.lock().unwrap_or_else(|p| p.into_inner());
    PushReport {
        items: items.into_iter().map(|(_, r)| r).collect(),
        stopped,
        interrupted: cx.shutdown.is_cancelled(),
        rate_limit_wait,
    }
}

#[cfg(test)]
mod tests;
