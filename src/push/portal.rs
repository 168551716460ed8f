//! The Portal bridge's decisions (pure): which planned operations a bulk-upload CSV can
//! carry and which go to the Local Administrator's worklist, what each exported row
//! expects to see in the next Mailbox Report, and what the evidence — a results file or
//! a later report — says happened to each row and task.
//!
//! The rule it keeps: a row is exported again only when the evidence shows it was *not*
//! applied. A row the results file says succeeded is withheld until a report shows it; a
//! row whose evidence contradicts itself is `unsettled`, reported, and never exported on
//! a guess. Values are compared through digests (the journal keeps no values).
//!
//! Never does: I/O. The engine (`engine::portal`) reads the files and writes the journal.

use crate::ids::ExternalId;
use crate::model::Field;
use crate::plan::{Operation, PlannedOp, RemoveReason};
use crate::state::portal::{Batch, Expected, NewRow, Row, Task, row_state};
use crate::target::{Account, Status};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};

/// The digest a row keeps of a value it sets (enough to compare, nothing to read back).
pub fn digest(value: &str) -> String {
    hex::encode(&Sha256::digest(value.as_bytes())[..12])
}

/// What an account in a Mailbox Report shows, as digests by name (the names of
/// [`Expected`]).
pub fn observed(a: &Account) -> Expected {
    let mut m: Expected = Field::ALL
        .iter()
        .map(|f| (f.name().to_string(), a.attributes.get(f).map(digest)))
        .collect();
    m.insert("ods_code".into(), Some(digest(a.ods_code.as_str())));
    m.insert("status".into(), Some(digest(a.status.as_str())));
    m.insert(
        "local_id".into(),
        a.external_id.as_ref().map(|x| digest(x.as_str())),
    );
    m
}

/// The names whose value differs from what was expected (empty: as expected).
pub fn differences(expected: &Expected, seen: &Expected) -> Vec<String> {
    expected
        .iter()
        .filter(|(k, v)| seen.get(*k).unwrap_or(&None) != *v)
        .map(|(k, _)| k.clone())
        .collect()
}

/// One row for the next batch file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Export {
    pub row: NewRow,
    pub op: Operation,
    /// The account's NHSmail address (an update), `None` for a create.
    pub address: Option<String>,
    /// The values the row sets.
    pub values: BTreeMap<Field, String>,
}

/// One task for the worklist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Work {
    pub op: Operation,
    pub expected: Expected,
    /// What the Local Administrator is to do, and why.
    pub detail: String,
}

/// A planned operation the agent holds back: the evidence about its earlier exports is
/// not conclusive, or says it was already applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Withheld {
    pub op: Operation,
    pub batch: i64,
    /// The state of the journal's row that holds it back.
    pub state: String,
    pub why: String,
}

/// What the journal says about one anchor, over every batch.
#[derive(Clone, Debug, Default)]
struct Record<'a> {
    /// A row in `reported` or `unsettled`: the evidence is not conclusive yet.
    open: Option<&'a Row>,
    /// A create the evidence says happened (or may have).
    created: Option<&'a Row>,
    /// Rows the Portal's results file said failed, and the last one.
    refused: u32,
    last_refusal: Option<&'a Row>,
}

fn records(rows: &[Row]) -> BTreeMap<&str, Record<'_>> {
    let mut m: BTreeMap<&str, Record<'_>> = BTreeMap::new();
    for r in rows {
        let e = m.entry(r.external_id.as_str()).or_default();
        match r.state.as_str() {
            row_state::REPORTED | row_state::UNSETTLED => {
                e.open = Some(r);
                if r.kind == "provision" {
                    e.created = Some(r);
                }
            }
            row_state::CONFIRMED | row_state::DIFFERS | row_state::EXPORTED
                if r.kind == "provision" =>
            {
                e.created = Some(r)
            }
            row_state::FAILED
                if r.detail
                    .as_deref()
                    .is_some_and(|d| d.starts_with(RESULTS_SAID)) =>
            {
                e.refused += 1;
                e.last_refusal = Some(r);
            }
            _ => {}
        }
    }
    m
}

/// How a row's detail starts when the Portal's results file said it failed.
pub const RESULTS_SAID: &str = "the Portal's results file: ";

/// How the plan's operations divide.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Routed {
    /// For the next batch file (at most the batch size).
    pub export: Vec<Export>,
    /// Left for a later batch (the batch is full).
    pub later: usize,
    pub work: Vec<Work>,
    pub withheld: Vec<Withheld>,
}

fn reason_text(r: RemoveReason) -> &'static str {
    match r {
        RemoveReason::Disabled => "the account is disabled in Active Directory",
        RemoveReason::OutOfScope => "the filter rules no longer put the person in scope",
        RemoveReason::NotInSource => "the person is no longer in Active Directory",
    }
}

fn names(fields: &[Field]) -> String {
    fields
        .iter()
        .map(|f| f.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Divide the operations: creates and updates into the next batch, the rest to the
/// worklist. `rows` is the journal (every batch's rows, oldest first). Held back:
/// anything whose last evidence is not conclusive, and any create of a person the journal
/// knows a create of (a report that does not show it is stale or partial: a second create
/// would be a second mailbox — `portal release` after checking the Portal). A row the
/// Portal refused `refuse_after` times goes to the worklist instead of the next batch.
pub fn route(ops: &[PlannedOp], rows: &[Row], batch_size: usize, refuse_after: u32) -> Routed {
    let journal = records(rows);
    let mut out = Routed::default();
    for p in ops {
        let op = &p.op;
        let x = op.external_id().as_str();
        let work = |detail: String, expected: Expected| Work {
            op: op.clone(),
            expected,
            detail,
        };
        let ods = || Some(digest(op.ods_code().as_str()));
        match op {
            Operation::Provision { .. } | Operation::Update { .. } => {
                if let Operation::Update { changes, .. } = op {
                    let cleared: Vec<Field> = changes
                        .iter()
                        .filter(|c| c.new.is_none())
                        .map(|c| c.field)
                        .collect();
                    if !cleared.is_empty() {
                        let mut e: Expected = changes
                            .iter()
                            .map(|c| (c.field.name().to_string(), c.new.as_deref().map(digest)))
                            .collect();
                        e.insert("ods_code".into(), ods());
                        out.work.push(work(
                            format!(
                                "Edit the mailbox: clear {} (a CSV upload cannot clear a value){}",
                                names(&cleared),
                                set_also(changes)
                            ),
                            e,
                        ));
                        continue;
                    }
                }
                let rec = journal.get(x);
                let held = |r: &Row, why: String| Withheld {
                    op: op.clone(),
                    batch: r.batch,
                    state: r.state.clone(),
                    why,
                };
                if let Some(r) = rec.and_then(|r| r.open) {
                    out.withheld.push(held(
                        r,
                        format!(
                            "batch {} line {} is {}: awaiting a Mailbox Report that settles it",
                            r.batch, r.line, r.state
                        ),
                    ));
                    continue;
                }
                if matches!(op, Operation::Provision { .. })
                    && let Some(r) = rec.and_then(|r| r.created)
                {
                    out.withheld.push(held(
                        r,
                        format!(
                            "batch {} line {} created it ({}), but this Mailbox Report does not show                              its Local ID: is the report stale or partial? If the mailbox is really                              gone, `tansync portal release {x}`",
                            r.batch, r.line, r.state
                        ),
                    ));
                    continue;
                }
                if let Some(rec) = rec
                    && rec.refused >= refuse_after
                {
                    let why = rec
                        .last_refusal
                        .and_then(|r| r.detail.as_deref())
                        .unwrap_or("");
                    out.work.push(work(
                        format!(
                            "The Portal refused this {} {} times (last: {}): enter it by hand, or                              correct it in Active Directory (it is not exported again)",
                            op.kind().name(),
                            rec.refused,
                            why.strip_prefix(RESULTS_SAID).unwrap_or(why)
                        ),
                        export(op).row.expected,
                    ));
                    continue;
                }
                let e = export(op);
                if e.values.is_empty() && matches!(op, Operation::Update { .. }) {
                    // Nothing the template carries: nothing to upload.
                    continue;
                }
                if out.export.len() >= batch_size {
                    out.later += 1;
                    continue;
                }
                out.export.push(e);
            }
            Operation::Remove { reason, .. } => out.work.push(work(
                format!("Mark as a leaver in the Portal: {}", reason_text(*reason)),
                Expected::new(),
            )),
            Operation::Move {
                from_ods_code,
                ods_code,
                changes,
                ..
            } => {
                let mut e = change_digests(changes);
                e.insert("ods_code".into(), ods());
                out.work.push(work(
                    format!(
                        "Transfer the mailbox from {from_ods_code} to {ods_code} with the Portal's \
                         bulk transfer (a CSV upload cannot move an account between organisations){}",
                        set_also(changes)
                    ),
                    e,
                ))
            }
            Operation::Restore { changes, .. } => {
                let mut e = change_digests(changes);
                e.insert("status".into(), Some(digest(Status::Active.as_str())));
                out.work.push(work(
                    format!(
                        "Restore the leaver's mailbox (a returning member of staff){}",
                        set_also(changes)
                    ),
                    e,
                ))
            }
            Operation::Join {
                matched_on,
                changes,
                ..
            } => {
                let mut e = change_digests(changes);
                e.insert("local_id".into(), Some(digest(x)));
                out.work.push(work(
                    format!(
                        "Set the existing mailbox's Local ID to {x} (matched on {}){}",
                        crate::plan::render::code(matched_on),
                        set_also(changes)
                    ),
                    e,
                ))
            }
        }
    }
    out
}

fn change_digests(changes: &[crate::plan::FieldChange]) -> Expected {
    changes
        .iter()
        .map(|c| (c.field.name().to_string(), c.new.as_deref().map(digest)))
        .collect()
}

fn set_also(changes: &[crate::plan::FieldChange]) -> String {
    let set: Vec<Field> = changes
        .iter()
        .filter(|c| c.new.is_some())
        .map(|c| c.field)
        .collect();
    if set.is_empty() {
        String::new()
    } else {
        format!("; also set {}", names(&set))
    }
}

fn export(op: &Operation) -> Export {
    let (values, target_id): (BTreeMap<Field, String>, Option<String>) = match op {
        Operation::Provision { attributes, .. } => (
            attributes.iter().map(|(f, v)| (f, v.to_string())).collect(),
            None,
        ),
        Operation::Update {
            changes, target_id, ..
        } => (
            changes
                .iter()
                .filter_map(|c| c.new.clone().map(|v| (c.field, v)))
                .collect(),
            Some(target_id.to_string()),
        ),
        _ => (BTreeMap::new(), None),
    };
    let mut expected: Expected = values
        .iter()
        .map(|(f, v)| (f.name().to_string(), Some(digest(v))))
        .collect();
    expected.insert("ods_code".into(), Some(digest(op.ods_code().as_str())));
    Export {
        row: NewRow {
            kind: op.kind().name().to_string(),
            external_id: op.external_id().to_string(),
            ods_code: op.ods_code().to_string(),
            target_id: target_id.clone(),
            expected,
        },
        op: op.clone(),
        address: target_id,
        values,
    }
}

/// One row's new state and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settled {
    pub line: u32,
    pub state: &'static str,
    pub detail: Option<String>,
}

/// What a results file's row says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultLine {
    pub line: u64,
    pub local_id: ExternalId,
    pub outcome: Result<(), String>,
}

/// Why a results file cannot be applied to any batch.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResultsMismatch {
    #[error("it has no rows")]
    Empty,
    #[error(
        "it matches batches {batches} (the same rows): name the batch it returns with --batch N"
    )]
    Ambiguous { batches: String },
    #[error("its rows are not batch {named}'s (batches with exactly its rows: {matching})")]
    NotThatBatch { named: i64, matching: String },
    #[error("no batch holds exactly its rows (line {line}: Local ID {local_id} {why})")]
    NoBatch {
        line: u64,
        local_id: String,
        why: &'static str,
    },
}

/// The batch a results file belongs to: the one whose rows are exactly the file's, in
/// order (the Portal returns the uploaded file with a result column added). Batches can
/// hold the same rows (a failed row exported again on its own): then only the batch
/// `named` (`portal results --batch N`) is taken — the file is refused as ambiguous
/// rather than settled against a guess.
pub fn results_batch<'a>(
    batches: &'a [Batch],
    results: &[ResultLine],
    named: Option<i64>,
) -> Result<&'a Batch, ResultsMismatch> {
    if results.is_empty() {
        return Err(ResultsMismatch::Empty);
    }
    let theirs: Vec<&str> = results.iter().map(|r| r.local_id.as_str()).collect();
    let candidates: Vec<&Batch> = batches
        .iter()
        .filter(|b| {
            b.rows.len() == theirs.len()
                && b.rows.iter().zip(&theirs).all(|(r, x)| r.external_id == *x)
        })
        .collect();
    let ids = || {
        candidates
            .iter()
            .map(|b| b.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(n) = named {
        return match candidates.iter().find(|b| b.id == n) {
            Some(b) => Ok(b),
            None => Err(ResultsMismatch::NotThatBatch {
                named: n,
                matching: if candidates.is_empty() {
                    "none".into()
                } else {
                    ids()
                },
            }),
        };
    }
    match candidates.as_slice() {
        [one] => return Ok(one),
        [] => {}
        _ => return Err(ResultsMismatch::Ambiguous { batches: ids() }),
    }
    // Say which line no batch explains, against the newest batch.
    let newest: BTreeSet<&str> = batches
        .first()
        .map(|b| b.rows.iter().map(|r| r.external_id.as_str()).collect())
        .unwrap_or_default();
    let (line, local_id, why) = results
        .iter()
        .find(|r| !newest.contains(r.local_id.as_str()))
        .map(|r| (r.line, r.local_id.to_string(), "is in no batch like it"))
        .unwrap_or_else(|| {
            let r = &results[0];
            (
                r.line,
                r.local_id.to_string(),
                "is in the newest batch, but the rows are not the same or not in the same order",
            )
        });
    Err(ResultsMismatch::NoBatch {
        line,
        local_id,
        why,
    })
}

/// What a results file says about its batch's rows. Report evidence (`confirmed`,
/// `differs`) is not overridden.
pub fn settle_from_results(batch: &Batch, results: &[ResultLine]) -> Vec<Settled> {
    let mut out = Vec::new();
    for (row, res) in batch.rows.iter().zip(results) {
        let next = match (&res.outcome, row.state.as_str()) {
            (Ok(()), row_state::EXPORTED) => Some((row_state::REPORTED, None)),
            (Err(why), row_state::EXPORTED) => {
                Some((row_state::FAILED, Some(format!("{RESULTS_SAID}{why}"))))
            }
            (Ok(()), row_state::FAILED) => Some((
                row_state::UNSETTLED,
                Some(format!(
                    "the results file says it succeeded, but {}",
                    row.detail
                        .as_deref()
                        .unwrap_or("earlier evidence said it failed")
                )),
            )),
            (Err(why), row_state::REPORTED) => Some((
                row_state::UNSETTLED,
                Some(format!(
                    "one results file said it succeeded, another that it failed ({why})"
                )),
            )),
            _ => None,
        };
        if let Some((state, detail)) = next {
            out.push(Settled {
                line: row.line,
                state,
                detail,
            });
        }
    }
    out
}

/// A Mailbox Report's accounts by Local ID.
pub fn by_local_id(accounts: &[Account]) -> BTreeMap<&str, &Account> {
    accounts
        .iter()
        .filter_map(|a| a.external_id.as_ref().map(|x| (x.as_str(), a)))
        .collect()
}

/// Which Mailbox Report a settlement reads: its digest, its file's modification time
/// (ns) and a name for messages.
#[derive(Clone, Copy, Debug)]
pub struct ReportId<'a> {
    pub sha256: &'a str,
    pub modified_ns: i64,
    pub name: &'a str,
}

/// Why a report is not evidence about a batch, or `None` when it is: its file must be no
/// older than the batch file (both times from the file system's clock), and its content
/// must differ from the report the batch was planned from (the same content, whatever
/// its time, says nothing about an upload).
pub fn not_evidence(batch: &Batch, report: ReportId<'_>) -> Option<String> {
    if report.sha256 == batch.report_sha {
        return Some(format!(
            "{} has the same content as the report batch {} was planned from",
            report.name, batch.id
        ));
    }
    if report.modified_ns < batch.exported_ns {
        return Some(format!(
            "{} was saved before batch {}'s file was written (compare their modification times)",
            report.name, batch.id
        ));
    }
    None
}

/// What a Mailbox Report says about a batch's rows still open to evidence.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FromReport {
    pub settled: Vec<Settled>,
    /// Why the report settled nothing although rows wait for evidence.
    pub note: Option<String>,
}

/// What a Mailbox Report says about the batch's rows still open to evidence: nothing,
/// from a report that is [not evidence](not_evidence) about it. A report that shows none
/// of the batch's new mailboxes is taken as "not uploaded yet", not as "none created":
/// its creates stay in flight (feed the results file, or `portal discard` a batch that
/// will never be uploaded).
pub fn settle_from_report(
    batch: &Batch,
    report: ReportId<'_>,
    accounts: &BTreeMap<&str, &Account>,
) -> FromReport {
    let open = [
        row_state::EXPORTED,
        row_state::REPORTED,
        row_state::UNSETTLED,
    ];
    let waiting = batch
        .rows
        .iter()
        .filter(|r| open.contains(&r.state.as_str()))
        .count();
    if waiting == 0 {
        return FromReport::default();
    }
    if let Some(why) = not_evidence(batch, report) {
        return FromReport {
            settled: Vec::new(),
            note: Some(format!("not evidence about batch {}: {why}", batch.id)),
        };
    }
    let report_name = report.name;
    let creates_seen = batch
        .rows
        .iter()
        .any(|r| r.kind == "provision" && accounts.contains_key(r.external_id.as_str()));
    let creates_exported = batch
        .rows
        .iter()
        .any(|r| r.kind == "provision" && r.state == row_state::EXPORTED);
    let mut out = FromReport::default();
    if creates_exported && !creates_seen {
        out.note = Some(format!(
            "{report_name} shows none of batch {}'s new mailboxes: not uploaded yet? Upload it \
             and feed its results file, or `tansync portal discard {}` if it will never be uploaded",
            batch.id, batch.id
        ));
    }
    for row in &batch.rows {
        if !open.contains(&row.state.as_str()) {
            continue;
        }
        let next = match accounts.get(row.external_id.as_str()) {
            Some(a) => {
                let diff = differences(&row.expected, &observed(a));
                if diff.is_empty() {
                    Some((row_state::CONFIRMED, None))
                } else {
                    Some((
                        row_state::DIFFERS,
                        Some(format!(
                            "{report_name} shows the Local ID with other values for {}",
                            diff.join(", ")
                        )),
                    ))
                }
            }
            None => match row.state.as_str() {
                row_state::EXPORTED if row.kind == "provision" && !creates_seen => None,
                row_state::EXPORTED => Some((
                    row_state::FAILED,
                    Some(format!(
                        "not in {report_name}, which shows others of its batch: not {}",
                        if row.kind == "provision" {
                            "created"
                        } else {
                            "applied"
                        }
                    )),
                )),
                row_state::REPORTED => Some((
                    row_state::UNSETTLED,
                    Some(format!(
                        "the results file says it succeeded, but {report_name} does not show its Local ID"
                    )),
                )),
                _ => None,
            },
        };
        if let Some((state, detail)) = next
            && (state != row.state || detail != row.detail)
        {
            out.settled.push(Settled {
                line: row.line,
                state,
                detail,
            });
        }
    }
    out
}

/// Whether a Mailbox Report shows a worklist task done.
pub fn task_done(t: &Task, by_address: &BTreeMap<String, &Account>) -> bool {
    let account = by_address.get(&t.target_id.to_lowercase());
    match t.kind.as_str() {
        "remove" => account.is_none_or(|a| !a.status.is_live()),
        _ => account.is_some_and(|a| differences(&t.expected, &observed(a)).is_empty()),
    }
}

#[cfg(test)]
mod tests;
