//! read → decide → plan. [`decide`] is pure over already-read state: the diff, the gate,
//! the write-back list and the fingerprint of the state the plan starts from.

use super::read::{Collected, Who, collect};
use super::{EngineError, Progress};
use crate::config::Config;
use crate::diff::{self, DiffInput};
use crate::gate::{self, GateInput};
use crate::ids::ExternalId;
use crate::model::{Field, RejectReason, Rejection};
use crate::plan::render::{Known, People};
use crate::plan::{Plan, SourceSummary, TargetSummary};
use crate::push::writeback;
use crate::source::Source;
use crate::target::{Target, TargetState};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// `Write` into a SHA-256 (for hashing serialised state without buffering it).
struct HashWriter(Sha256);

impl std::io::Write for HashWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Fingerprint of the source and target state a plan starts from: same inputs, same
/// fingerprint; any change to a person in scope, the scope itself, or the directory's
/// accounts or organisations changes it.
pub fn fingerprint(c: &Collected, t: &TargetState) -> String {
    let mut w = HashWriter(Sha256::new());
    let mut rejected: Vec<&Rejection> = c.rejected.iter().collect();
    rejected.sort_by(|a, b| (&a.dn, a.reason).cmp(&(&b.dn, b.reason)));
    let mut accounts: Vec<_> = t.accounts.iter().collect();
    accounts.sort_by(|a, b| a.target_id.cmp(&b.target_id));
    // Serialising owned plain data into a hasher cannot fail.
    let _ = serde_json::to_writer(&mut w, &(&c.persons, &c.out_of_scope, &rejected));
    let _ = serde_json::to_writer(&mut w, &(&t.organisations, &accounts));
    format!("sha256:{}", hex::encode(w.0.finalize()))
}

/// The result of planning, with the state it was made from (for `explain` and `apply`).
pub struct PlanRun {
    pub plan: Plan,
    pub collected: Collected,
    pub target: TargetState,
}

impl PlanRun {
    /// The display names and DNs of the people the plan mentions, for its human view:
    /// from the source where the person is in scope, else from their directory account.
    pub fn people(&self) -> People {
        let mut want: HashSet<&ExternalId> = HashSet::new();
        want.extend(self.plan.operations.iter().map(|p| p.op.external_id()));
        want.extend(self.plan.blocked.iter().map(|b| &b.external_id));
        let mut people = People::default();
        for a in &self.target.accounts {
            if let Some(x) = a.external_id.as_ref().filter(|x| want.contains(x)) {
                people.insert(
                    x.clone(),
                    Known {
                        display_name: a.attributes.get(&Field::DisplayName).map(String::from),
                        dn: None,
                    },
                );
            }
        }
        for x in want {
            if let Some(p) = self.collected.persons.get(x) {
                people.insert(
                    x.clone(),
                    Known {
                        display_name: p.get(Field::DisplayName).map(String::from),
                        dn: Some(p.dn.clone()),
                    },
                );
            }
        }
        for (dn, name) in &self.collected.rejected_names {
            people.insert_rejected(dn.clone(), name.clone());
        }
        people
    }
}

/// Plan from already-read state (pure: no I/O, no clock).
pub fn decide(
    cfg: &Config,
    collected: &Collected,
    target: &TargetState,
    source_kind: &str,
    target_kind: &str,
    now: OffsetDateTime,
) -> Result<Plan, EngineError> {
    decide_cycle(cfg, collected, target, source_kind, target_kind, now, None)
}

/// [`decide`] for a full read (`delta_deleted: None`) or a delta read: `collected`
/// holds only what changed, `delta_deleted` the anchors deleted from the source since
/// (see [`DiffInput::delta_deleted`]); an empty delta is no reason to refuse.
pub fn decide_cycle(
    cfg: &Config,
    collected: &Collected,
    target: &TargetState,
    source_kind: &str,
    target_kind: &str,
    now: OffsetDateTime,
    delta_deleted: Option<&BTreeSet<ExternalId>>,
) -> Result<Plan, EngineError> {
    // The fingerprint (serialising every person and account into SHA-256) does not depend
    // on the diff: hash on a second core meanwhile. Same bytes hashed, same value.
    std::thread::scope(|scope| {
        let fp = scope.spawn(|| fingerprint(collected, target));
        decide_with(
            cfg,
            collected,
            target,
            source_kind,
            target_kind,
            now,
            delta_deleted,
            || fp.join().unwrap_or_else(|_| fingerprint(collected, target)),
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn decide_with(
    cfg: &Config,
    collected: &Collected,
    target: &TargetState,
    source_kind: &str,
    target_kind: &str,
    now: OffsetDateTime,
    delta_deleted: Option<&BTreeSet<ExternalId>>,
    fingerprint: impl FnOnce() -> String,
) -> Result<Plan, EngineError> {
    let managed_orgs = cfg.agreements.sharing.keys().cloned().collect();
    let rejected_ids: BTreeSet<ExternalId> = collected
        .rejected
        .iter()
        .filter_map(|r| r.external_id.clone())
        .collect();
    let d = diff::diff(&DiffInput {
        persons: &collected.persons,
        out_of_scope: &collected.out_of_scope,
        rejected: &rejected_ids,
        unanchored_in_scope: collected
            .rejected
            .iter()
            .filter(|r| r.external_id.is_none())
            .count(),
        target,
        agent_id: &cfg.agent_id,
        managed_orgs: &managed_orgs,
        soft_match: &cfg.soft_match,
        nhsmail_domain: &cfg.nhsmail_domain,
        restore_window: time::Duration::days(cfg.restore_window_days),
        now,
        delta_deleted,
    });
    if delta_deleted.is_none()
        && collected.persons.is_empty()
        && d.managed > 0
        && !cfg.allow_empty_source
    {
        return Err(empty_source(collected, d.managed));
    }
    let g = gate::gate(GateInput {
        candidates: d.operations,
        persons: &collected.persons,
        target,
        agreements: &cfg.agreements,
        policy: &cfg.policy,
        managed: d.managed,
        now,
    });
    let mut blocked = d.blocked;
    blocked.extend(g.blocked);
    let write_back = match &cfg.write_back {
        Some(w) => writeback::planned(
            w,
            &collected.persons,
            &collected.write_back,
            target,
            &cfg.agent_id,
            None,
        ),
        None => Vec::new(),
    };
    Ok(Plan::new(
        crate::timefmt::rfc3339(now),
        fingerprint(),
        SourceSummary {
            kind: source_kind.to_string(),
            read: collected.read,
            in_scope: collected.persons.len(),
            rejected: collected.rejected.len(),
        },
        TargetSummary {
            kind: target_kind.to_string(),
            read: target.accounts.len(),
        },
        g.operations,
        blocked,
        collected.rejected.clone(),
        collected
            .persons
            .iter()
            .flat_map(|p| p.warnings.iter().cloned())
            .collect(),
        write_back,
        d.unchanged + g.unchanged,
    ))
}

/// Why a read with no one left in scope is refused: nothing was in scope, or everything
/// in scope was rejected (reason codes counted; no entry's values, which are personal
/// data, are repeated here).
fn empty_source(collected: &Collected, managed: usize) -> EngineError {
    if collected.rejected.is_empty() {
        return EngineError::EmptySource {
            managed,
            read: collected.read,
        };
    }
    let mut counts: BTreeMap<RejectReason, usize> = BTreeMap::new();
    for r in &collected.rejected {
        *counts.entry(r.reason).or_default() += 1;
    }
    let reasons = counts
        .iter()
        .map(|(reason, n)| format!("{}: {n}", super::read::code(reason)))
        .collect::<Vec<_>>()
        .join(", ");
    EngineError::AllRejected {
        managed,
        rejected: collected.rejected.len(),
        reasons,
    }
}

/// Read `source` and `target`, then plan. `who`: capture those entries for `explain`.
pub async fn plan_from<S: Source, T: Target>(
    cfg: &Config,
    source: &S,
    target: &T,
    now: OffsetDateTime,
    who: Option<&Who>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<PlanRun, EngineError> {
    let started = std::time::Instant::now();
    let collected = collect(cfg, source, who, progress, cancel).await?;
    let read_ms = started.elapsed().as_millis() as u64;
    let state = target.read_state(cancel).await?;
    let target_ms = started.elapsed().as_millis() as u64 - read_ms;
    let plan = decide(cfg, &collected, &state, source.kind(), target.kind(), now)?;
    // Where a plan's time goes (`TANSYNC_LOG=tansync::engine::plan=debug`; BENCHMARKS.md).
    tracing::debug!(
        source_read_ms = read_ms,
        target_read_ms = target_ms,
        decide_ms = started.elapsed().as_millis() as u64 - read_ms - target_ms,
        "planned"
    );
    Ok(PlanRun {
        plan,
        collected,
        target: state,
    })
}

/// `tansync plan`: the configured source and target.
pub async fn plan(
    cfg: &Config,
    now: OffsetDateTime,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<PlanRun, EngineError> {
    plan_from(cfg, &cfg.source, &cfg.target, now, None, progress, cancel).await
}
