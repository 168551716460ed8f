//! `apply` and `sync`: apply a reviewed plan exactly (refusing it when the state it
//! started from has moved on or the configuration now decides differently), or plan and
//! apply in one.
//!
//! In order: settle what an interrupted earlier run left in flight; make a fresh plan;
//! refuse a stale or changed reviewed plan; add removals the mass-change guard held only
//! when approved for this plan; skip quarantined objects; record the run; push; write
//! back the allocated addresses; record how the run ended. Every write — to the
//! directory and to AD — is journalled before and after.

use super::plan::{PlanRun, plan_from};
use super::{EngineError, Progress};
use crate::config::Config;
use crate::ids::ExternalId;
use crate::model::Persons;
use crate::plan::{BlockReason, FORMAT, OpKind, Plan, PlannedOp, WriteBack};
use crate::push::writeback::{self, WriteBackConnection, WriteBackSettings};
use crate::push::{self, AuditContext, Outcome, PushContext, PushReport};
use crate::source::ldap::LdapSource;
use crate::source::{AnySource, Source};
use crate::state::audit::{self, AuditEntry};
use crate::state::{StateStore, op_state};
use crate::target::scim::ScimWriter;
use crate::target::{Target, Writer};
use std::collections::{BTreeSet, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Plans larger than this are refused before they are read whole.
const MAX_PLAN_BYTES: u64 = 512 * 1024 * 1024;

/// What to apply.
#[derive(Clone, Copy, Debug)]
pub struct ApplyRequest<'a> {
    /// The reviewed plan (`plan --out`); `None`: plan and apply in one (`sync`).
    pub plan_file: Option<&'a Path>,
    /// Also apply the removals the mass-change guard held, for the plan with this
    /// fingerprint only.
    pub approve_removals: Option<&'a str>,
    pub now: OffsetDateTime,
}

/// How a run ended (the run history's `status`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunStatus {
    /// Everything applied.
    Ok,
    /// Some operations or write-backs failed; the others were applied.
    Partial,
    /// Stopped because failures looked systemic.
    Stopped,
    /// Stopped by a shutdown request: in-flight work finished or journalled.
    Interrupted,
}

impl RunStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunStatus::Ok => "ok",
            RunStatus::Partial => "partial",
            RunStatus::Stopped => "stopped",
            RunStatus::Interrupted => "interrupted",
        }
    }
}

/// An object skipped after repeated failures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Quarantined {
    pub external_id: String,
    pub failures: u32,
    pub last_error: String,
}

/// One AD write-back and how it went.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WriteBackItem {
    pub write: WriteBack,
    /// Listed in the plan (`false`: the address of an account this run provisioned).
    pub planned: bool,
    /// `None`: not attempted (the run was stopped first).
    pub result: Option<Result<(), String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteBackReport {
    pub attribute: String,
    pub items: Vec<WriteBackItem>,
}

impl WriteBackReport {
    pub fn written(&self) -> usize {
        self.items
            .iter()
            .filter(|i| matches!(i.result, Some(Ok(()))))
            .count()
    }
    pub fn all_written(&self) -> bool {
        self.written() == self.items.len()
    }
}

/// What an apply did.
#[derive(Clone, Debug)]
pub struct ApplyReport {
    pub run: i64,
    pub fingerprint: String,
    pub status: RunStatus,
    /// Operations an interrupted earlier run left unfinished, settled first.
    pub reconciled: usize,
    /// Removals the mass-change guard held, and whether they were approved and added.
    pub mass_held: usize,
    pub mass_approved: bool,
    pub quarantined: Vec<Quarantined>,
    pub push: PushReport,
    pub write_back: Option<WriteBackReport>,
    /// The audit trail's head when the run finished (also kept with the run).
    pub audit_head: audit::AuditHead,
}

impl ApplyReport {
    /// Every operation and every write-back applied.
    pub fn succeeded(&self) -> bool {
        self.status == RunStatus::Ok && self.write_back.as_ref().is_none_or(|w| w.all_written())
    }
}

/// Settle what an interrupted earlier run left in flight. A create whose fate is unknown
/// is looked up by anchor; everything else is re-derived by the fresh plan from the
/// directory's actual state, so nothing is lost and nothing sent twice.
pub async fn reconcile<W: Writer>(store: &StateStore, writer: &W) -> Result<usize, EngineError> {
    store.close_abandoned_runs(None)?;
    let left = store.unfinished()?;
    for u in &left {
        if u.kind == OpKind::Provision.name() && u.state == op_state::SENDING {
            let xid = ExternalId::parse(&u.external_id).map_err(|e| EngineError::Reconcile {
                external_id: u.external_id.clone(),
                problem: e.to_string(),
            })?;
            match writer.find_by_external_id(&xid).await {
                Ok(Some(found)) => {
                    let id = found.id.as_deref();
                    let e = store.reconciled_entry(u, audit::outcome::APPLIED, id)?;
                    store.settle_audited(|s| s.done(u.id, id), &e)?
                }
                Ok(None) => {
                    let e = store.reconciled_entry(u, audit::outcome::NOT_SENT, None)?;
                    store.settle_audited(
                        |s| {
                            s.set_state(
                                u.id,
                                op_state::NOT_SENT,
                                Some("reconciled: not in the directory"),
                            )
                        },
                        &e,
                    )?
                }
                Err(e) => {
                    return Err(EngineError::Reconcile {
                        external_id: u.external_id.clone(),
                        problem: e.to_string(),
                    });
                }
            }
        } else {
            // Whether a request on the wire landed is not known; the fresh plan sends
            // again whatever did not.
            let outcome = if u.state == op_state::SENDING {
                audit::outcome::UNKNOWN
            } else {
                audit::outcome::NOT_SENT
            };
            let e = store.reconciled_entry(u, outcome, None)?;
            store.settle_audited(
                |s| {
                    s.set_state(
                        u.id,
                        op_state::RECONCILED,
                        Some("interrupted; re-planned from the directory's state"),
                    )
                },
                &e,
            )?;
        }
    }
    Ok(left.len())
}

/// Read a reviewed plan file, refusing one that is not a tansync plan or is too large.
/// The size is checked before the file is read, and the read itself stops past the cap
/// (the file could be growing); anything but a regular file (a FIFO, a device) is
/// refused before it is opened, as opening one could wait for ever.
pub(super) fn read_plan(path: &Path) -> Result<Plan, EngineError> {
    use std::io::Read;
    let err = |problem: String| EngineError::PlanFile {
        path: path.display().to_string(),
        problem,
    };
    let too_large = |len: u64| {
        err(format!(
            "it is {len} bytes or more, more than the {MAX_PLAN_BYTES} a plan may be"
        ))
    };
    let regular = |m: &std::fs::Metadata| {
        if m.is_file() {
            Ok(())
        } else {
            Err(err("it is not a regular file".into()))
        }
    };
    regular(&std::fs::metadata(path).map_err(|e| err(e.to_string()))?)?;
    let f = std::fs::File::open(path).map_err(|e| err(e.to_string()))?;
    let meta = f.metadata().map_err(|e| err(e.to_string()))?;
    regular(&meta)?;
    if meta.len() > MAX_PLAN_BYTES {
        return Err(too_large(meta.len()));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_PLAN_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| err(e.to_string()))?;
    if bytes.len() as u64 > MAX_PLAN_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    let saved: Plan = serde_json::from_slice(&bytes)
        .map_err(|e| err(format!("it is not a tansync plan: {e}")))?;
    if saved.format != FORMAT {
        return Err(err(format!("format {:?} is not {FORMAT}", saved.format)));
    }
    Ok(saved)
}

/// The plan to apply: the fresh one, or the reviewed one (`saved`, read from `path`) if
/// it still holds.
pub(super) fn chosen_plan(fresh: Plan, saved: Option<(&Path, Plan)>) -> Result<Plan, EngineError> {
    let Some((path, saved)) = saved else {
        return Ok(fresh);
    };
    if saved.fingerprint != fresh.fingerprint {
        return Err(EngineError::StalePlan {
            path: path.display().to_string(),
            then: saved.fingerprint,
            now: fresh.fingerprint,
        });
    }
    if saved.operations != fresh.operations
        || saved.blocked != fresh.blocked
        || saved.write_back != fresh.write_back
    {
        return Err(EngineError::ChangedPlan {
            path: path.display().to_string(),
        });
    }
    Ok(saved)
}

/// The operations an apply sends: the plan's, and the removals the mass-change guard
/// held when `approve` names this plan.
pub(super) struct Chosen {
    pub ops: Vec<PlannedOp>,
    pub mass_held: usize,
    pub mass_approved: bool,
}

pub(super) fn chosen_ops(plan: &Plan, approve: Option<&str>) -> Result<Chosen, EngineError> {
    let mut ops: Vec<PlannedOp> = plan.operations.clone();
    let mass: Vec<PlannedOp> = plan
        .blocked
        .iter()
        .filter(|b| b.reason == BlockReason::MassChangeThreshold)
        .map(|b| PlannedOp {
            op: b.operation.clone(),
            stripped: vec![],
        })
        .collect();
    let mass_held = mass.len();
    let mass_approved = match approve {
        Some(fp) if fp == plan.fingerprint => {
            ops.extend(mass);
            true
        }
        Some(fp) => {
            return Err(EngineError::ApprovalMismatch {
                named: fp.to_string(),
                plan: plan.fingerprint.clone(),
            });
        }
        None => false,
    };
    Ok(Chosen {
        ops,
        mass_held,
        mass_approved,
    })
}

/// `tansync apply` / `tansync sync` with the configured source, target and directory.
pub async fn apply(
    cfg: &Config,
    req: ApplyRequest<'_>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<ApplyReport, EngineError> {
    let Some(settings) = &cfg.scim else {
        return Err(EngineError::NotWritable);
    };
    let writer = ScimWriter::new(settings).map_err(EngineError::Client)?;
    let write_back = match (&cfg.write_back, &cfg.source) {
        (Some(w), AnySource::Ldap(l)) => Some((w, l)),
        _ => None,
    };
    apply_with(
        cfg,
        &cfg.source,
        &cfg.target,
        writer,
        write_back,
        req,
        progress,
        cancel,
    )
    .await
}

/// [`apply`] over any source, target and writer (tests use in-memory fakes).
#[allow(clippy::too_many_arguments)]
pub async fn apply_with<S: Source, T: Target, W: Writer>(
    cfg: &Config,
    source: &S,
    target: &T,
    writer: W,
    write_back: Option<(&WriteBackSettings, &LdapSource)>,
    req: ApplyRequest<'_>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<ApplyReport, EngineError> {
    // A plan file that is not a plan is refused before anything is read or settled.
    let saved = match req.plan_file {
        Some(path) => Some((path, read_plan(path)?)),
        None => None,
    };
    let store = StateStore::open(&cfg.state_dir)?;
    let reconciled = reconcile(&store, &writer).await?;
    let PlanRun {
        plan: fresh,
        collected,
        target: _,
    } = plan_from(cfg, source, target, req.now, None, progress, cancel).await?;
    let plan = chosen_plan(fresh, saved)?;

    let Chosen {
        ops,
        mass_held,
        mass_approved,
    } = chosen_ops(&plan, req.approve_removals)?;

    let store = Arc::new(Mutex::new(store));
    let mode = if req.plan_file.is_some() {
        "apply"
    } else {
        "sync"
    };
    let pushed = push_plan(
        &store, cfg, target, writer, write_back, mode, &plan, &collected, ops, progress, cancel,
    )
    .await?;
    Ok(ApplyReport {
        run: pushed.run,
        fingerprint: plan.fingerprint,
        status: pushed.status,
        reconciled,
        mass_held,
        mass_approved,
        quarantined: pushed.quarantined,
        push: pushed.push,
        write_back: pushed.write_back,
        audit_head: pushed.audit_head,
    })
}

/// What [`push_plan`] did.
#[derive(Clone, Debug)]
pub struct Pushed {
    pub run: i64,
    pub status: RunStatus,
    pub quarantined: Vec<Quarantined>,
    pub push: PushReport,
    pub write_back: Option<WriteBackReport>,
    /// The audit trail's head after this run.
    pub audit_head: audit::AuditHead,
}

/// Push the chosen operations of `plan` (read from `collected` and `target`): skip
/// quarantined objects, record the run (`mode`: `apply`, `sync`, `run`), push, write
/// back, and record how the run ended. Shared by `apply`/`sync` and continuous mode.
#[allow(clippy::too_many_arguments)]
pub async fn push_plan<T: Target, W: Writer>(
    store: &Arc<Mutex<StateStore>>,
    cfg: &Config,
    target: &T,
    writer: W,
    write_back: Option<(&WriteBackSettings, &LdapSource)>,
    mode: &str,
    plan: &Plan,
    collected: &super::read::Collected,
    mut ops: Vec<PlannedOp>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<Pushed, EngineError> {
    let quarantined: Vec<Quarantined> =
        locked(store, |s| s.quarantined(cfg.push.quarantine_after))?
            .into_iter()
            .map(|(external_id, failures, last_error)| Quarantined {
                external_id,
                failures,
                last_error,
            })
            .collect();
    let skip: BTreeSet<&str> = quarantined.iter().map(|q| q.external_id.as_str()).collect();
    ops.retain(|p| !skip.contains(p.op.external_id().as_str()));

    let run = locked(store, |s| s.begin_run(mode, &plan.fingerprint))?;
    let audit = audit_context(cfg, &plan.fingerprint, &ops, &collected.persons);
    let report = push::push(
        ops,
        writer,
        store.clone(),
        PushContext {
            run,
            agent_id: &cfg.agent_id,
            nhsmail_domain: &cfg.nhsmail_domain,
            settings: cfg.push.clone(),
            shutdown: cancel,
            progress,
            audit,
        },
    )
    .await;

    let write_back = match write_back {
        None => None,
        Some((settings, ldap)) => Some(
            write_back_after_push(
                cfg, store, run, settings, ldap, plan, collected, &report, target, cancel,
            )
            .await?,
        ),
    };

    let status = if report.interrupted || cancel.is_cancelled() {
        RunStatus::Interrupted
    } else if report.stopped.is_some() {
        RunStatus::Stopped
    } else if report.failed() > 0 || write_back.as_ref().is_some_and(|w| !w.all_written()) {
        RunStatus::Partial
    } else {
        RunStatus::Ok
    };
    locked(store, |s| s.finish_run(run, status.name()))?;
    // The chain's head, kept with the run and logged: a tail cut off later is found
    // against it (`tansync audit verify`).
    let head = locked(store, |s| s.record_audit_head(run))?;
    tracing::info!(run, audit_seq = head.seq, audit_hash = %head.hash, "audit trail head");
    Ok(Pushed {
        run,
        status,
        quarantined,
        push: report,
        write_back,
        audit_head: head,
    })
}

/// What the audit trail records about the operations besides their outcome: the plan's
/// fingerprint, the sharing agreement of each organisation and the rule that put each
/// person in scope.
fn audit_context(
    cfg: &Config,
    fingerprint: &str,
    ops: &[PlannedOp],
    persons: &Persons,
) -> AuditContext {
    AuditContext {
        fingerprint: fingerprint.to_string(),
        agreements: cfg
            .agreements
            .sharing
            .iter()
            .map(|(ods, s)| (ods.clone(), s.reference.clone()))
            .collect(),
        rules: ops
            .iter()
            .filter_map(|p| {
                let x = p.op.external_id();
                persons
                    .get(x)
                    .map(|person| (x.clone(), person.rule.clone()))
            })
            .collect(),
    }
}

/// Run `f` on the store (shared with the push's tasks; a poisoned lock only means another
/// task panicked mid-write, and the store is still usable).
fn locked<T>(store: &Mutex<StateStore>, f: impl FnOnce(&StateStore) -> T) -> T {
    f(&store.lock().unwrap_or_else(|p| p.into_inner()))
}

/// Write back the plan's list, then the addresses of accounts this run provisioned (read
/// from the directory once the push is done), each journalled. A shutdown stops it: what
/// was not written is journalled `not_sent` and shows in the next plan.
#[allow(clippy::too_many_arguments)]
async fn write_back_after_push<T: Target>(
    cfg: &Config,
    store: &Mutex<StateStore>,
    run: i64,
    settings: &WriteBackSettings,
    ldap: &LdapSource,
    plan: &Plan,
    collected: &super::read::Collected,
    report: &PushReport,
    target: &T,
    cancel: &CancellationToken,
) -> Result<WriteBackReport, EngineError> {
    let mut items: Vec<WriteBackItem> = plan
        .write_back
        .iter()
        .map(|w| WriteBackItem {
            write: w.clone(),
            planned: true,
            result: None,
        })
        .collect();
    let provisioned: HashSet<ExternalId> = report
        .items
        .iter()
        .filter(|i| i.kind == OpKind::Provision && matches!(i.outcome, Outcome::Applied { .. }))
        .filter_map(|i| ExternalId::parse(&i.external_id).ok())
        .collect();
    if !provisioned.is_empty() && !cancel.is_cancelled() {
        let state = target.read_state(cancel).await?;
        let listed: HashSet<&ExternalId> = items.iter().map(|i| &i.write.external_id).collect();
        let new: Vec<WriteBack> = writeback::planned(
            settings,
            &collected.persons,
            &collected.write_back,
            &state,
            &cfg.agent_id,
            Some(&provisioned),
        )
        .into_iter()
        .filter(|w| !listed.contains(&w.external_id))
        .collect();
        items.extend(new.into_iter().map(|write| WriteBackItem {
            write,
            planned: false,
            result: None,
        }));
    }
    let mut out = WriteBackReport {
        attribute: settings.attribute.clone(),
        items: Vec::with_capacity(items.len()),
    };
    if items.is_empty() {
        return Ok(out);
    }
    let ods = |x: &ExternalId| {
        collected
            .persons
            .get(x)
            .map(|p| p.ods_code.to_string())
            .unwrap_or_default()
    };
    // Audited like the directory's operations: anchor, organisation, rule, outcome (no
    // DN, no address).
    let audited = |w: &WriteBack, outcome: &str| AuditEntry {
        at: crate::timefmt::now_rfc3339(),
        run,
        fingerprint: plan.fingerprint.clone(),
        kind: "write_back".into(),
        external_id: w.external_id.to_string(),
        ods_code: ods(&w.external_id),
        rule: collected
            .persons
            .get(&w.external_id)
            .map(|p| p.rule.to_string()),
        outcome: outcome.into(),
        ..AuditEntry::default()
    };
    let jids: Vec<i64> = items
        .iter()
        .map(|i| {
            locked(store, |s| {
                s.record(
                    run,
                    "write_back",
                    i.write.external_id.as_str(),
                    &ods(&i.write.external_id),
                    None,
                )
            })
        })
        .collect::<Result<_, _>>()?;
    let mut conn = if cancel.is_cancelled() {
        None
    } else {
        match WriteBackConnection::open(ldap, settings).await {
            Ok(c) => Some(c),
            Err(e) => {
                // Not connected, so nothing was written: each entry reports why.
                let why = format!("cannot connect to AD as {}: {e}", settings.bind_dn);
                for (mut item, jid) in items.into_iter().zip(jids) {
                    let e = audited(&item.write, audit::outcome::FAILED);
                    locked(store, |s| {
                        s.settle_audited(|s| s.set_state(jid, op_state::FAILED, Some(&why)), &e)
                    })?;
                    item.result = Some(Err(why.clone()));
                    out.items.push(item);
                }
                return Ok(out);
            }
        }
    };
    for (mut item, jid) in items.into_iter().zip(jids) {
        let Some(c) = conn.as_mut().filter(|_| !cancel.is_cancelled()) else {
            let e = audited(&item.write, audit::outcome::NOT_SENT);
            locked(store, |s| {
                s.settle_audited(
                    |s| s.set_state(jid, op_state::NOT_SENT, Some("shutdown before the write")),
                    &e,
                )
            })?;
            out.items.push(item);
            continue;
        };
        locked(store, |s| s.sending(jid))?;
        let (state, result) = match c.write(settings, &item.write).await {
            Ok(()) => (op_state::DONE, Ok(())),
            Err(e) => (op_state::FAILED, Err(e.to_string())),
        };
        let e = audited(
            &item.write,
            if result.is_ok() {
                audit::outcome::APPLIED
            } else {
                audit::outcome::FAILED
            },
        );
        locked(store, |s| {
            s.settle_audited(
                |s| s.set_state(jid, state, result.as_ref().err().map(String::as_str)),
                &e,
            )
        })?;
        item.result = Some(result);
        out.items.push(item);
    }
    if let Some(c) = conn {
        c.close().await;
    }
    Ok(out)
}
