//! The NHSmail Portal bridge (`[target] kind = "portal_report"`): `apply`/`sync` and each
//! continuous cycle read the newest Mailbox Report, settle the batches already exported
//! from it, plan, and — when no batch is in flight — write the next bulk-upload batch,
//! the worklist of what CSV cannot do and the manifest. `tansync portal results FILE`
//! settles a batch from the Portal's returned results file.
//!
//! The same plan, gate, journal and audit trail as the SCIM path: every exported row is
//! journalled `exported` (with its audit record) in the transaction that puts its file
//! in place; every settlement is journalled and audited.
//!
//! Never does: write a second batch while one is in flight (the Portal's "one upload at
//! a time"); export a row again unless the evidence says it was not applied (see
//! `push::portal`); send anything anywhere — the Local Administrator uploads the files.

use super::apply::{chosen_ops, chosen_plan, read_plan};
use super::plan::{PlanRun, plan_from};
use super::{EngineError, Progress};
use crate::config::Config;
use crate::engine::apply::{ApplyRequest, Chosen};
use crate::ids::ExternalId;
use crate::model::{Field, FieldMap, Persons};
use crate::plan::Operation;
use crate::push::portal::{
    self as decide, Export, ResultLine, Settled, Withheld, Work, by_local_id,
};
use crate::source::Source;
use crate::state::StateStore;
use crate::state::audit::AuditEntry;
use crate::state::portal::{Batch, NewTask, RowChange, TaskChange, task_state};
/// The journal's row and task types and row states, as the front ends show them.
pub use crate::state::portal::{Row, Task, row_state};
use crate::target::portal::{PortalSettings, PortalTarget, UploadRow};
use crate::target::{Account, Target, TargetError, TargetState};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// The manifest's `format`.
pub const MANIFEST_FORMAT: &str = "tansync.portal-manifest/v1";

/// A batch as reports show it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct BatchSummary {
    pub batch: i64,
    pub file: String,
    pub sha256: String,
    pub fingerprint: String,
    pub exported_at: String,
    pub settled_at: Option<String>,
    pub rows: usize,
    /// Rows by state (exported, reported, confirmed, differs, failed, unsettled).
    pub states: BTreeMap<String, usize>,
}

impl From<&Batch> for BatchSummary {
    fn from(b: &Batch) -> Self {
        BatchSummary {
            batch: b.id,
            file: b.file.clone(),
            sha256: b.sha256.clone(),
            fingerprint: b.fingerprint.clone(),
            exported_at: b.exported_at.clone(),
            settled_at: b.settled_at.clone(),
            rows: b.rows.len(),
            states: b
                .counts()
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect(),
        }
    }
}

/// What one Portal apply (or cycle) did.
#[derive(Clone, Debug)]
pub struct PortalReport {
    pub run: i64,
    pub fingerprint: String,
    /// The Mailbox Report read.
    pub report: PathBuf,
    pub report_accounts: usize,
    /// Rows this run settled from the report: (batch, line, anchor, new state, why).
    pub settled: Vec<(i64, u32, String, &'static str, Option<String>)>,
    /// The batch still in flight: nothing new was exported.
    pub in_flight: Option<BatchSummary>,
    /// The batch this run wrote.
    pub exported: Option<BatchSummary>,
    /// Creates and updates left for later batches.
    pub later: usize,
    /// Operations held back until the evidence about their last export is conclusive.
    pub withheld: Vec<Withheld>,
    /// Every row now unsettled, in every batch.
    pub unsettled: Vec<Row>,
    /// Rows of the batch in flight whose person an older batch's evidence now says may
    /// already have been created: that batch must not be uploaded.
    pub conflicts: Vec<Conflict>,
    /// Why the report settled nothing about a batch waiting for evidence.
    pub notes: Vec<String>,
    /// Worklist: open tasks after this run, and what changed.
    pub worklist_open: usize,
    pub worklist_new: usize,
    pub worklist_confirmed: usize,
    pub worklist_withdrawn: usize,
    pub worklist_files: (PathBuf, PathBuf),
    pub manifest: PathBuf,
    pub mass_held: usize,
    pub mass_approved: bool,
    /// The removals the mass-change guard holds (anchor, target id, reason) and their
    /// digest (continuous mode's `approve-removals`).
    pub held: Vec<(String, String, String)>,
    pub held_digest: Option<String>,
    /// The plan's operations and its blocked ones' reason codes.
    pub operations: usize,
    pub blocked: Vec<String>,
}

/// A target holding a state already read (the report, read once per run).
struct AlreadyRead<'a>(&'a TargetState);

impl Target for AlreadyRead<'_> {
    fn kind(&self) -> &'static str {
        "portal_report"
    }
    async fn read_state(&self, _cancel: &CancellationToken) -> Result<TargetState, TargetError> {
        Ok(self.0.clone())
    }
}

fn portal_err(path: &Path, problem: impl Into<String>) -> EngineError {
    EngineError::Portal {
        path: path.display().to_string(),
        problem: problem.into(),
    }
}

fn row_audit(b: &Batch, r: &Row, run: i64, outcome: &str, why: Option<&str>) -> AuditEntry {
    AuditEntry {
        at: crate::timefmt::now_rfc3339(),
        run,
        fingerprint: b.fingerprint.clone(),
        kind: r.kind.clone(),
        external_id: r.external_id.clone(),
        ods_code: r.ods_code.clone(),
        target_id: r.target_id.clone(),
        reason: why.map(String::from),
        outcome: outcome.to_string(),
        ..AuditEntry::default()
    }
}

fn row_changes(b: &Batch, settled: &[Settled], run: i64) -> Vec<RowChange> {
    settled
        .iter()
        .filter_map(|s| {
            let r = b.rows.iter().find(|r| r.line == s.line)?;
            Some(RowChange {
                batch: b.id,
                line: s.line,
                state: s.state,
                detail: s.detail.clone(),
                audit: row_audit(b, r, run, s.state, s.detail.as_deref()),
            })
        })
        .collect()
}

/// A file time in nanoseconds since the epoch (the journal's unit).
fn mtime_ns(t: OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos()).unwrap_or(i64::MAX)
}

/// `tansync apply` / `sync` (`mode`), or a continuous cycle (`run`), on the Portal target.
///
/// `held_approved`: in continuous mode, the digest of the held removals that
/// `approve-removals` released (they are listed when it is this plan's held set).
#[allow(clippy::too_many_arguments)]
pub async fn apply_portal<S: Source>(
    cfg: &Config,
    portal: &PortalSettings,
    target: &PortalTarget,
    source: &S,
    store: &StateStore,
    mode: &str,
    req: ApplyRequest<'_>,
    held_approved: Option<&str>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<PortalReport, EngineError> {
    let saved = match req.plan_file {
        Some(path) => Some((path, read_plan(path)?)),
        None => None,
    };
    store.close_abandoned_runs(None)?;
    // Results files queued while a `tansync run` held the state directory.
    let mut notes = drain_inbox(cfg, portal, store);
    let report = target.read_report()?;
    // A report older than one already planned from would show mailboxes created since as
    // missing: refused, rather than trusted.
    let before = store.portal_batches()?;
    if let Some(b) = before
        .iter()
        .max_by_key(|b| b.report_ns)
        .filter(|b| mtime_ns(report.modified) < b.report_ns)
    {
        return Err(portal_err(
            &report.path,
            format!(
                "this Mailbox Report was saved before the one batch {} was planned from: an \
                 older report would show the mailboxes created since as missing; export a \
                 fresh one",
                b.id
            ),
        ));
    }
    let PlanRun {
        plan: fresh,
        collected,
        target: _,
    } = plan_from(
        cfg,
        source,
        &AlreadyRead(&report.state),
        req.now,
        None,
        progress,
        cancel,
    )
    .await?;
    let plan = chosen_plan(fresh, saved)?;
    let (held, held_digest) = plan.held_removals();
    let approve = match held_approved {
        Some(d) if held_digest.as_deref() == Some(d) => Some(plan.fingerprint.as_str()),
        Some(_) => None,
        None => req.approve_removals,
    };
    let Chosen {
        ops,
        mass_held,
        mass_approved,
    } = chosen_ops(&plan, approve)?;
    let run = store.begin_run(mode, &plan.fingerprint)?;

    // 1. Settle from the report: rows of every batch still open to evidence, then the
    //    worklist's open tasks.
    let report_ns = mtime_ns(report.modified);
    let report_name = format!(
        "the Mailbox Report {}",
        report
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    let report_id = decide::ReportId {
        sha256: &report.sha256,
        modified_ns: report_ns,
        name: &report_name,
    };
    let index = by_local_id(&report.state.accounts);
    let mut changes = Vec::new();
    for b in &before {
        let r = decide::settle_from_report(b, report_id, &index);
        changes.extend(row_changes(b, &r.settled, run));
        notes.extend(r.note);
    }
    let by_address: BTreeMap<String, &Account> = report
        .state
        .accounts
        .iter()
        .map(|a| (a.target_id.as_str().to_lowercase(), a))
        .collect();
    let rows_now = journal_rows(&before, &changes);
    let routed = decide::route(
        &ops,
        &rows_now,
        portal.batch_size,
        cfg.push.quarantine_after,
    );
    let open = store.portal_tasks(Some(task_state::OPEN))?;
    let (task_changes, new_tasks) = worklist_changes(
        &open,
        &routed.work,
        &by_address,
        &plan.fingerprint,
        run,
        cfg,
    );
    store.portal_settle(
        &changes,
        &task_changes,
        &new_tasks,
        run,
        &plan.fingerprint,
        None,
    )?;
    let settled = changes
        .iter()
        .map(|c| {
            (
                c.batch,
                c.line,
                c.audit.external_id.clone(),
                c.state,
                c.detail.clone(),
            )
        })
        .collect();

    // 2. Export the next batch unless one is still in flight.
    let out = &portal.out_dir;
    std::fs::create_dir_all(out).map_err(|e| portal_err(out, format!("cannot create: {e}")))?;
    let in_flight = store.portal_in_flight()?;
    let (exported, later, withheld) = match &in_flight {
        Some(_) => (None, 0, Vec::new()),
        None if routed.export.is_empty() => (None, routed.later, routed.withheld.clone()),
        None => (
            Some(export_batch(
                store,
                portal,
                run,
                &plan.fingerprint,
                (&report.sha256, report_ns),
                &routed.export,
                &collected.persons,
            )?),
            routed.later,
            routed.withheld.clone(),
        ),
    };

    // 3. The worklist and the manifest, as they stand now.
    let tasks = store.portal_tasks(Some(task_state::OPEN))?;
    let worklist_files = write_worklist(out, &tasks, &collected.persons, &by_address)?;
    let batches = store.portal_batches()?;
    let conflicts = conflicts(&batches);
    let manifest = write_manifest(out, &batches, &tasks, &conflicts)?;
    let unsettled = unsettled_rows(&batches);
    store.finish_run(run, "ok")?;
    let head = store.record_audit_head(run)?;
    tracing::info!(run, audit_seq = head.seq, audit_hash = %head.hash, "audit trail head");
    Ok(PortalReport {
        run,
        fingerprint: plan.fingerprint.clone(),
        report: report.path.clone(),
        report_accounts: report.state.accounts.len(),
        settled,
        in_flight: in_flight.as_ref().map(BatchSummary::from),
        exported: exported.as_ref().map(BatchSummary::from),
        later,
        withheld,
        unsettled,
        conflicts,
        notes,
        worklist_open: tasks.len(),
        worklist_new: new_tasks.len(),
        worklist_confirmed: task_changes
            .iter()
            .filter(|c| c.state == task_state::CONFIRMED)
            .count(),
        worklist_withdrawn: task_changes
            .iter()
            .filter(|c| c.state == task_state::WITHDRAWN)
            .count(),
        worklist_files,
        manifest,
        mass_held,
        mass_approved,
        held,
        held_digest,
        operations: plan.operations.len(),
        blocked: plan.blocked.iter().map(|b| b.reason.code()).collect(),
    })
}

/// `tansync apply` / `sync` on the Portal target: [`apply_portal`] with the configured
/// source, holding the state directory for the run.
pub async fn apply(
    cfg: &Config,
    portal: &PortalSettings,
    target: &PortalTarget,
    req: ApplyRequest<'_>,
    progress: &dyn Progress,
    cancel: &CancellationToken,
) -> Result<PortalReport, EngineError> {
    let store = StateStore::open(&cfg.state_dir)?;
    let mode = if req.plan_file.is_some() {
        "apply"
    } else {
        "sync"
    };
    apply_portal(
        cfg,
        portal,
        target,
        &cfg.source,
        &store,
        mode,
        req,
        None,
        progress,
        cancel,
    )
    .await
}

/// Every batch's rows, oldest first, with this run's changes applied (what routing sees).
fn journal_rows(batches: &[Batch], changes: &[RowChange]) -> Vec<Row> {
    let mut rows: Vec<Row> = batches.iter().rev().flat_map(|b| b.rows.clone()).collect();
    for c in changes {
        if let Some(r) = rows
            .iter_mut()
            .find(|r| r.batch == c.batch && r.line == c.line)
        {
            r.state = c.state.to_string();
            r.detail = c.detail.clone();
        }
    }
    rows
}

/// Unsettled rows of every batch (batches newest first, as the journal lists them).
fn unsettled_rows(batches: &[Batch]) -> Vec<Row> {
    batches
        .iter()
        .flat_map(|b| b.rows.iter())
        .filter(|r| r.state == row_state::UNSETTLED)
        .cloned()
        .collect()
}

/// A row of the batch in flight whose person an older batch may already have created.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Conflict {
    pub external_id: String,
    pub batch: i64,
    pub line: u32,
    /// The older row that may have created the mailbox, and its state.
    pub older_batch: i64,
    pub older_line: u32,
    pub older_state: String,
}

/// Rows of the in-flight batch that would create a mailbox an older batch's evidence
/// says may exist (its row `reported` or `unsettled`): uploading the batch could make a
/// second mailbox.
fn conflicts(batches: &[Batch]) -> Vec<Conflict> {
    let Some(flying) = batches.iter().find(|b| b.settled_at.is_none()) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in flying
        .rows
        .iter()
        .filter(|r| r.kind == "provision" && r.state == row_state::EXPORTED)
    {
        let older = batches
            .iter()
            .filter(|b| b.id < flying.id)
            .flat_map(|b| b.rows.iter())
            .find(|o| {
                o.external_id == r.external_id
                    && o.kind == "provision"
                    && (o.state == row_state::REPORTED || o.state == row_state::UNSETTLED)
            });
        if let Some(o) = older {
            out.push(Conflict {
                external_id: r.external_id.clone(),
                batch: flying.id,
                line: r.line,
                older_batch: o.batch,
                older_line: o.line,
                older_state: o.state.clone(),
            });
        }
    }
    out
}

/// A task's audit record; `what` is its (kind, anchor, ODS code, address).
fn task_audit(
    run: i64,
    fingerprint: &str,
    what: (&str, &str, &str, &str),
    outcome: &str,
    agreement: Option<String>,
) -> AuditEntry {
    let (kind, external_id, ods_code, target_id) = what;
    AuditEntry {
        at: crate::timefmt::now_rfc3339(),
        run,
        fingerprint: fingerprint.to_string(),
        kind: kind.to_string(),
        external_id: external_id.to_string(),
        ods_code: ods_code.to_string(),
        target_id: Some(target_id.to_string()),
        agreement,
        outcome: outcome.to_string(),
        ..AuditEntry::default()
    }
}

/// Open tasks the report shows done (confirmed) or the plan no longer asks for
/// (withdrawn), and the plan's tasks not yet open (listed).
fn worklist_changes(
    open: &[Task],
    work: &[Work],
    by_address: &BTreeMap<String, &Account>,
    fingerprint: &str,
    run: i64,
    cfg: &Config,
) -> (Vec<TaskChange>, Vec<NewTask>) {
    // An open task stays only while the plan asks for exactly the same thing (the same
    // instruction and the same expected result): a person moved on again gets a new task.
    let wanted: BTreeSet<(&str, &str, &str, &crate::state::portal::Expected)> = work
        .iter()
        .map(|w| {
            (
                w.op.kind().name(),
                w.op.external_id().as_str(),
                w.detail.as_str(),
                &w.expected,
            )
        })
        .collect();
    let mut still: BTreeSet<(&str, &str)> = BTreeSet::new();
    let mut changes = Vec::new();
    for t in open {
        let key = (
            t.kind.as_str(),
            t.external_id.as_str(),
            t.detail.as_str(),
            &t.expected,
        );
        let state = if decide::task_done(t, by_address) {
            task_state::CONFIRMED
        } else if !wanted.contains(&key) {
            task_state::WITHDRAWN
        } else {
            still.insert((t.kind.as_str(), t.external_id.as_str()));
            continue;
        };
        changes.push(TaskChange {
            id: t.id,
            state,
            audit: task_audit(
                run,
                &t.fingerprint,
                (&t.kind, &t.external_id, &t.ods_code, &t.target_id),
                state,
                None,
            ),
        });
    }
    let new = work
        .iter()
        .filter(|w| !still.contains(&(w.op.kind().name(), w.op.external_id().as_str())))
        .map(|w| {
            let target_id = target_of(&w.op);
            let agreement = cfg
                .agreements
                .sharing
                .get(w.op.ods_code())
                .map(|s| s.reference.clone());
            NewTask {
                kind: w.op.kind().name().to_string(),
                external_id: w.op.external_id().to_string(),
                ods_code: w.op.ods_code().to_string(),
                target_id: target_id.clone(),
                expected: w.expected.clone(),
                detail: w.detail.clone(),
                audit: task_audit(
                    run,
                    fingerprint,
                    (
                        w.op.kind().name(),
                        w.op.external_id().as_str(),
                        w.op.ods_code().as_str(),
                        &target_id,
                    ),
                    "listed",
                    agreement,
                ),
            }
        })
        .collect();
    (changes, new)
}

fn target_of(op: &Operation) -> String {
    match op {
        Operation::Provision { .. } => String::new(),
        Operation::Update { target_id, .. }
        | Operation::Remove { target_id, .. }
        | Operation::Move { target_id, .. }
        | Operation::Restore { target_id, .. }
        | Operation::Join { target_id, .. } => target_id.to_string(),
    }
}

/// Write `bytes` to `dir/name` through a temporary file in the same folder (readable by
/// the agent's user only: the files hold names and addresses), replacing an older file.
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, EngineError> {
    let path = dir.join(name);
    let err = |e: std::io::Error| portal_err(&path, format!("cannot write: {e}"));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(err)?;
    tmp.write_all(bytes).map_err(err)?;
    tmp.as_file().sync_all().map_err(err)?;
    tmp.persist(&path).map_err(|e| err(e.error))?;
    // The rename itself survives a power loss only once the folder is on disk.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(err)?;
    Ok(path)
}

/// Write the next batch file and journal its rows, in one transaction.
fn export_batch(
    store: &StateStore,
    portal: &PortalSettings,
    run: i64,
    fingerprint: &str,
    report: (&str, i64),
    export: &[Export],
    persons: &Persons,
) -> Result<Batch, EngineError> {
    let rows: Vec<UploadRow> = export
        .iter()
        .map(|e| UploadRow {
            local_id: e.op.external_id().clone(),
            ods_code: e.op.ods_code().clone(),
            nhsmail_address: e.address.clone(),
            values: e.values.clone(),
        })
        .collect();
    let bytes = portal.template.render(&rows);
    let sha = format!("sha256:{}", hex::encode(Sha256::digest(&bytes)));
    let number = store.portal_batches()?.first().map_or(1, |b| b.id + 1);
    let name = format!("batch-{number:04}.csv");
    let path = portal.out_dir.join(&name);
    if path.exists() {
        return Err(portal_err(
            &path,
            "already exists, but the journal has no such batch: a run stopped between \
             writing it and recording it, or the state directory is not this folder's. Do not \
             upload it; if it was uploaded, let the upload finish and save the next Mailbox \
             Report first (it shows what was created). Then move the file away: tansync never \
             overwrites a batch file",
        ));
    }
    let audits: Vec<AuditEntry> = export
        .iter()
        .map(|e| AuditEntry {
            at: crate::timefmt::now_rfc3339(),
            run,
            fingerprint: fingerprint.to_string(),
            kind: e.row.kind.clone(),
            external_id: e.row.external_id.clone(),
            ods_code: e.row.ods_code.clone(),
            target_id: e.row.target_id.clone(),
            rule: persons.get(e.op.external_id()).map(|p| p.rule.to_string()),
            outcome: row_state::EXPORTED.to_string(),
            ..AuditEntry::default()
        })
        .collect();
    let new_rows: Vec<_> = export.iter().map(|e| e.row.clone()).collect();
    let dir = portal.out_dir.clone();
    let id = store.portal_export(
        number,
        run,
        &name,
        &sha,
        fingerprint,
        report,
        &new_rows,
        &audits,
        || {
            let path = write_file(&dir, &name, &bytes)?;
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .map_err(|e| portal_err(&path, format!("cannot read its time: {e}")))?;
            Ok::<_, EngineError>(mtime_ns(modified.into()))
        },
        || {
            let _ = std::fs::remove_file(&path);
        },
    )??;
    store
        .portal_batches()?
        .into_iter()
        .find(|b| b.id == id)
        .ok_or_else(|| {
            portal_err(
                &portal.out_dir,
                "the batch just written is not in the journal",
            )
        })
}

fn who(x: &str, persons: &Persons, account: Option<&&Account>) -> String {
    let from = |attrs: &FieldMap| {
        attrs
            .get(&Field::DisplayName)
            .map(String::from)
            .or_else(|| {
                let g = attrs.get(&Field::GivenName)?;
                let f = attrs.get(&Field::FamilyName)?;
                Some(format!("{g} {f}"))
            })
    };
    ExternalId::parse(x)
        .ok()
        .and_then(|x| persons.get(&x))
        .and_then(|p| from(&p.attributes))
        .or_else(|| account.and_then(|a| from(&a.attributes)))
        .unwrap_or_default()
}

/// `worklist.csv` and `worklist.md`: the open tasks, for the Local Administrator.
fn write_worklist(
    out: &Path,
    tasks: &[Task],
    persons: &Persons,
    by_address: &BTreeMap<String, &Account>,
) -> Result<(PathBuf, PathBuf), EngineError> {
    const HEAD: [&str; 8] = [
        "Task",
        "Name",
        "Email Address",
        "Local ID",
        "ODS Code",
        "What to do",
        "Plan fingerprint",
        "Listed at",
    ];
    let rows: Vec<[String; 8]> = tasks
        .iter()
        .map(|t| {
            [
                t.kind.clone(),
                who(
                    &t.external_id,
                    persons,
                    by_address.get(&t.target_id.to_lowercase()),
                ),
                t.target_id.clone(),
                t.external_id.clone(),
                t.ods_code.clone(),
                t.detail.clone(),
                t.fingerprint.clone(),
                t.listed_at.clone(),
            ]
        })
        .collect();
    let bytes = crate::target::portal::upload::neutralised_csv(
        std::iter::once(HEAD.to_vec())
            .chain(rows.iter().map(|r| r.iter().map(String::as_str).collect())),
    );
    let csv_path = write_file(out, "worklist.csv", &bytes)?;

    let mut md = String::from("# tansync worklist for the Local Administrator\n\n");
    if rows.is_empty() {
        md.push_str("Nothing to do by hand.\n");
    } else {
        md.push_str(
            "What a bulk-upload CSV cannot do. Do each in the NHSmail Portal; the next Mailbox \
             Report confirms it (`tansync portal status`).\n\n",
        );
        md.push_str(&format!(
            "| {} |\n|{}\n",
            HEAD.join(" | "),
            "---|".repeat(HEAD.len())
        ));
        for r in &rows {
            let cells: Vec<String> = r.iter().map(|c| md_cell(c)).collect();
            md.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    }
    let md_path = write_file(out, "worklist.md", md.as_bytes())?;
    Ok((csv_path, md_path))
}

/// A value in a Markdown table cell: no line breaks, pipes escaped, no HTML.
fn md_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '|' => out.push_str("\\|"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '`' | '*' | '_' | '[' | ']' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

#[derive(serde::Serialize)]
struct Manifest<'a> {
    format: &'static str,
    written_at: String,
    /// The batch to upload now, if one is in flight.
    in_flight: Option<i64>,
    /// The batch in flight must not be uploaded: an older batch may already have created
    /// some of its mailboxes (`conflicts`).
    do_not_upload: Option<i64>,
    conflicts: &'a [Conflict],
    batches: Vec<BatchSummary>,
    worklist_open: usize,
    worklist: [&'a str; 2],
}

fn write_manifest(
    out: &Path,
    batches: &[Batch],
    tasks: &[Task],
    conflicts: &[Conflict],
) -> Result<PathBuf, EngineError> {
    let m = Manifest {
        format: MANIFEST_FORMAT,
        written_at: crate::timefmt::now_rfc3339(),
        in_flight: batches
            .iter()
            .find(|b| b.settled_at.is_none())
            .map(|b| b.id),
        do_not_upload: conflicts.first().map(|c| c.batch),
        conflicts,
        batches: batches.iter().rev().map(BatchSummary::from).collect(),
        worklist_open: tasks.len(),
        worklist: ["worklist.csv", "worklist.md"],
    };
    let mut json = serde_json::to_string_pretty(&m)
        .map_err(|e| portal_err(&out.join("manifest.json"), e.to_string()))?;
    json.push('\n');
    write_file(out, "manifest.json", json.as_bytes())
}

/// What `tansync portal results` did.
#[derive(Clone, Debug)]
pub struct ResultsReport {
    pub batch: BatchSummary,
    /// (line in the results file, anchor, new state, why).
    pub changed: Vec<(u64, String, &'static str, Option<String>)>,
    /// Rows whose state the file did not change (already settled by a report).
    pub unchanged: usize,
}

/// What `tansync portal results` did: settled a batch, or — while a `tansync run` holds
/// the state directory — queued the file for its next cycle.
#[derive(Clone, Debug)]
pub enum ResultsOutcome {
    Settled(ResultsReport),
    Queued(PathBuf),
}

/// The folder in the state directory where results files wait for a running daemon.
pub fn inbox(cfg: &Config) -> PathBuf {
    cfg.state_dir.join("portal-inbox")
}

/// `tansync portal results FILE [--batch N]`: settle the batch the file returns (see
/// `push::portal::results_batch`). The same file (by digest) is applied to a batch once.
/// While a `tansync run` holds the state directory, the file is checked and queued in
/// [`inbox`]; the daemon settles it at the start of its next cycle.
pub fn results(
    cfg: &Config,
    portal: &PortalSettings,
    file: &Path,
    named: Option<i64>,
) -> Result<ResultsOutcome, EngineError> {
    // Checked before anything else, also before it is queued.
    let text =
        std::fs::read_to_string(file).map_err(|e| portal_err(file, format!("cannot read: {e}")))?;
    let lines = result_lines(file, &text, portal)?;
    match StateStore::open(&cfg.state_dir) {
        Err(crate::state::StateError::Locked(_)) => {
            queue(cfg, file, &text, named).map(ResultsOutcome::Queued)
        }
        store => Ok(ResultsOutcome::Settled(results_with(
            &store?, file, &text, lines, named,
        )?)),
    }
}

/// A results file's rows (`text`: its contents, read once).
fn result_lines(
    file: &Path,
    text: &str,
    portal: &PortalSettings,
) -> Result<Vec<ResultLine>, EngineError> {
    Ok(
        crate::target::portal::results::parse_results(&file.display().to_string(), text, portal)
            .map_err(EngineError::Results)?
            .into_iter()
            .map(|r| ResultLine {
                line: r.line,
                local_id: r.local_id,
                outcome: r.outcome,
            })
            .collect(),
    )
}

/// Copy a results file into the inbox as `<time>-b<batch or 0>-<name>`.
fn queue(
    cfg: &Config,
    file: &Path,
    text: &str,
    named: Option<i64>,
) -> Result<PathBuf, EngineError> {
    let dir = inbox(cfg);
    std::fs::create_dir_all(&dir).map_err(|e| portal_err(&dir, format!("cannot create: {e}")))?;
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "results.csv".into());
    let stamp = mtime_ns(OffsetDateTime::now_utc());
    write_file(
        &dir,
        &format!("{stamp:020}-b{}-{name}", named.unwrap_or(0)),
        text.as_bytes(),
    )
}

/// Settle every queued results file, oldest first (continuous mode, each cycle). A file
/// that settles is removed; one that cannot be used moves to `failed/` with the reason
/// logged — never retried blindly.
pub fn drain_inbox(cfg: &Config, portal: &PortalSettings, store: &StateStore) -> Vec<String> {
    let dir = inbox(cfg);
    let mut said = Vec::new();
    // Named `<time>-b<batch>-<name>`: in name order is oldest first.
    for name in file_names(&dir) {
        let f = dir.join(&name);
        let named = name
            .split('-')
            .nth(1)
            .and_then(|b| b.strip_prefix('b'))
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n > 0);
        let settled = std::fs::read_to_string(&f)
            .map_err(|e| portal_err(&f, format!("cannot read: {e}")))
            .and_then(|text| {
                let lines = result_lines(&f, &text, portal)?;
                results_with(store, &f, &text, lines, named)
            });
        match settled {
            Ok(r) => {
                tracing::info!(file = %name, batch = r.batch.batch, "queued results file settled its batch");
                said.push(format!("{name}: settled batch {}", r.batch.batch));
                let _ = std::fs::remove_file(&f);
            }
            Err(e) => {
                let why = format!("{:#}", anyhow::Error::from(e));
                tracing::error!(file = %name, error = %why, "queued results file not used; moved to failed/");
                said.push(format!("{name}: not used: {why}"));
                let failed = dir.join("failed");
                let _ = std::fs::create_dir_all(&failed);
                let _ = std::fs::rename(&f, failed.join(&name));
            }
        }
    }
    said
}

/// [`results`] on an open store, for a file already read (`text`) and parsed (`lines`).
fn results_with(
    store: &StateStore,
    file: &Path,
    text: &str,
    lines: Vec<ResultLine>,
    named: Option<i64>,
) -> Result<ResultsReport, EngineError> {
    let sha = format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())));
    let batches = store.portal_batches()?;
    let batch = decide::results_batch(&batches, &lines, named)
        .map_err(|e| portal_err(file, format!("not a results file of any batch: {e}")))?
        .clone();
    if let Some((name, at)) = store.portal_results_fed(&sha, batch.id)? {
        return Err(portal_err(
            file,
            format!(
                "this results file ({name}) already settled batch {} at {at}; a file is applied once per batch",
                batch.id
            ),
        ));
    }
    let settled = decide::settle_from_results(&batch, &lines);
    let run = store.begin_run("portal_results", &batch.fingerprint)?;
    let changes = row_changes(&batch, &settled, run);
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    store.portal_settle(
        &changes,
        &[],
        &[],
        run,
        &batch.fingerprint,
        Some((&sha, batch.id, &name)),
    )?;
    store.finish_run(run, "ok")?;
    store.record_audit_head(run)?;
    let now = store
        .portal_batches()?
        .into_iter()
        .find(|b| b.id == batch.id)
        .unwrap_or(batch);
    let changed = settled
        .iter()
        .filter_map(|s| {
            let i = usize::try_from(s.line).ok()?.checked_sub(1)?;
            let l = lines.get(i)?;
            Some((l.line, l.local_id.to_string(), s.state, s.detail.clone()))
        })
        .collect::<Vec<_>>();
    Ok(ResultsReport {
        unchanged: now.rows.len() - changed.len(),
        batch: BatchSummary::from(&now),
        changed,
    })
}

/// `tansync portal status`: the batches, the rows awaiting evidence and the open tasks.
#[derive(Clone, Debug, serde::Serialize)]
pub struct PortalStatus {
    pub batches: Vec<BatchSummary>,
    pub in_flight: Option<i64>,
    pub unsettled: Vec<Row>,
    pub awaiting_report: usize,
    /// The batch in flight must not be uploaded (see [`Conflict`]).
    pub conflicts: Vec<Conflict>,
    pub worklist: Vec<Task>,
    /// Results files queued for the running daemon's next cycle, and those it could not
    /// use (in `portal-inbox/failed/`, the reason in its log).
    pub queued: Vec<String>,
    pub queued_failed: Vec<String>,
}

pub fn status(cfg: &Config) -> Result<PortalStatus, EngineError> {
    let h = crate::state::History::open(&cfg.state_dir)?;
    Ok(status_from(&h, &inbox(cfg))?)
}

fn file_names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .filter(|e| e.path().is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// [`status`] from an open history (continuous mode's `status` includes it).
pub fn status_from(
    h: &crate::state::History,
    inbox: &Path,
) -> Result<PortalStatus, crate::state::StateError> {
    let batches = h.portal_batches()?;
    Ok(PortalStatus {
        queued: file_names(inbox),
        queued_failed: file_names(&inbox.join("failed")),
        in_flight: batches
            .iter()
            .find(|b| b.settled_at.is_none())
            .map(|b| b.id),
        unsettled: unsettled_rows(&batches),
        awaiting_report: batches
            .iter()
            .flat_map(|b| b.rows.iter())
            .filter(|r| r.state == row_state::REPORTED)
            .count(),
        conflicts: conflicts(&batches),
        batches: batches.iter().map(BatchSummary::from).collect(),
        worklist: h.portal_open_tasks()?,
    })
}

/// The Portal settings and target of a configuration with `[target] kind =
/// "portal_report"`.
pub fn configured(cfg: &Config) -> Option<(&PortalSettings, &PortalTarget)> {
    match (&cfg.portal, &cfg.target) {
        (Some(p), crate::target::AnyTarget::Portal(t)) => Some((p, t)),
        _ => None,
    }
}

/// The state directory for a Portal command run by hand. A running `tansync run` holds
/// it for its whole life: say how to go on rather than "wait".
fn open_store(cfg: &Config) -> Result<StateStore, EngineError> {
    match StateStore::open(&cfg.state_dir) {
        Err(crate::state::StateError::Locked(dir)) => Err(EngineError::Portal {
            path: dir,
            problem: "a running `tansync run` (or another tansync) holds this state directory: \
                      stop it first (e.g. `systemctl stop tansync`), then run this command \
                      (results files need not wait: `tansync portal results` queues them for \
                      the next cycle)"
                .into(),
        }),
        other => Ok(other?),
    }
}

/// Mark rows settled by the operator's word (`release`, `discard`), audited.
fn settle_by_hand(
    store: &StateStore,
    rows: &[Row],
    state: &'static str,
    outcome: &str,
    why: &str,
) -> Result<(), EngineError> {
    let batches = store.portal_batches()?;
    let run = store.begin_run(&format!("portal_{outcome}"), "")?;
    let changes: Vec<RowChange> = rows
        .iter()
        .filter_map(|r| {
            let b = batches.iter().find(|b| b.id == r.batch)?;
            Some(RowChange {
                batch: r.batch,
                line: r.line,
                state,
                detail: Some(why.into()),
                audit: row_audit(b, r, run, outcome, Some(why)),
            })
        })
        .collect();
    store.portal_settle(&changes, &[], &[], run, "", None)?;
    store.finish_run(run, "ok")?;
    store.record_audit_head(run)?;
    Ok(())
}

/// `tansync portal release LOCAL_ID…`: the operator's word, after checking the Portal,
/// that these people's mailboxes do not exist although the journal says they may (rows
/// `reported`, `unsettled`, `confirmed` or `differs`, in any batch): those rows become
/// `released`, so the next plan may create the mailbox again. Every anchor must have one.
pub fn release(cfg: &Config, anchors: &[String]) -> Result<Vec<Row>, EngineError> {
    let store = open_store(cfg)?;
    let releasable = [
        row_state::REPORTED,
        row_state::UNSETTLED,
        row_state::CONFIRMED,
        row_state::DIFFERS,
    ];
    let all: Vec<Row> = store
        .portal_batches()?
        .into_iter()
        .flat_map(|b| b.rows)
        .collect();
    let mut rows = Vec::new();
    for a in anchors {
        let x = ExternalId::parse(a).map_err(|e| EngineError::Portal {
            path: "portal release".into(),
            problem: e.to_string(),
        })?;
        let mine: Vec<&Row> = all.iter().filter(|r| r.external_id == x.as_str()).collect();
        if mine.is_empty() {
            return Err(EngineError::Portal {
                path: "portal release".into(),
                problem: format!("Local ID {x} is in no exported batch"),
            });
        }
        let found: Vec<Row> = mine
            .iter()
            .filter(|r| releasable.contains(&r.state.as_str()))
            .map(|r| (*r).clone())
            .collect();
        if found.is_empty() {
            return Err(EngineError::Portal {
                path: "portal release".into(),
                problem: format!(
                    "Local ID {x}: no row of it is reported, unsettled, confirmed or differs (its rows: {}); nothing to release",
                    mine.iter()
                        .map(|r| format!("batch {} line {} {}", r.batch, r.line, r.state))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        rows.extend(found);
    }
    settle_by_hand(
        &store,
        &rows,
        row_state::RELEASED,
        "released",
        "released by the operator: the Portal shows no such mailbox",
    )?;
    Ok(rows)
}

/// `tansync portal discard BATCH`: the operator's word that the batch in flight was not
/// uploaded and never will be (a lost file, a wrong template): its rows still `exported`
/// become `failed`, the batch settles, and the next apply exports afresh.
pub fn discard(cfg: &Config, batch: i64) -> Result<Vec<Row>, EngineError> {
    let store = open_store(cfg)?;
    let Some(b) = store.portal_batches()?.into_iter().find(|b| b.id == batch) else {
        return Err(EngineError::Portal {
            path: "portal discard".into(),
            problem: format!("there is no batch {batch}"),
        });
    };
    if b.settled_at.is_some() {
        return Err(EngineError::Portal {
            path: "portal discard".into(),
            problem: format!(
                "batch {batch} is settled already ({}): only the batch in flight can be discarded",
                b.settled_at.unwrap_or_default()
            ),
        });
    }
    let rows: Vec<Row> = b
        .rows
        .iter()
        .filter(|r| r.state == row_state::EXPORTED)
        .cloned()
        .collect();
    settle_by_hand(
        &store,
        &rows,
        row_state::FAILED,
        "discarded",
        "discarded by the operator: the batch was not uploaded",
    )?;
    Ok(rows)
}
