//! Plan stage: the data types every stage after `diff` passes along, and the plan
//! document (`tansync.plan/v1`, documented field by field in `docs/plan-format.md`, with a
//! JSON Schema beside it) in JSON and in a human view ([`render`]).

pub mod render;

use crate::ids::{ExternalId, OdsCode, RuleId, TargetId};
pub use crate::model::Warning;
use crate::model::{Field, FieldMap, Rejection};
use serde::{Deserialize, Serialize};
use std::fmt;

pub const FORMAT: &str = "tansync.plan/v1";

/// One attribute's change, old → new (`None` = absent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldChange {
    pub field: Field,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// Why an account is to be marked leaver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemoveReason {
    /// Disabled in the source.
    Disabled,
    /// Still in the source but no longer included by the filter rules.
    OutOfScope,
    /// No longer in the source at all.
    NotInSource,
}

/// How a first-sync join found the existing account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MatchKey {
    EmployeeId,
    Email,
}

impl MatchKey {
    /// The person's field it compares.
    pub fn field(self) -> Field {
        match self {
            MatchKey::EmployeeId => Field::EmployeeId,
            MatchKey::Email => Field::Email,
        }
    }
}

/// The kinds of operation (plan `kind`).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    Provision,
    Update,
    Remove,
    Move,
    Restore,
    Join,
}

impl OpKind {
    pub const ALL: [OpKind; 6] = [
        OpKind::Provision,
        OpKind::Update,
        OpKind::Remove,
        OpKind::Move,
        OpKind::Restore,
        OpKind::Join,
    ];
    pub fn name(self) -> &'static str {
        match self {
            OpKind::Provision => "provision",
            OpKind::Update => "update",
            OpKind::Remove => "remove",
            OpKind::Move => "move",
            OpKind::Restore => "restore",
            OpKind::Join => "join",
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A change to the NHS Directory. Serialises to the plan contract's operation objects.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Operation {
    Provision {
        external_id: ExternalId,
        ods_code: OdsCode,
        rule: RuleId,
        attributes: FieldMap,
    },
    Update {
        external_id: ExternalId,
        target_id: TargetId,
        ods_code: OdsCode,
        changes: Vec<FieldChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        etag: Option<String>,
    },
    Remove {
        external_id: ExternalId,
        target_id: TargetId,
        ods_code: OdsCode,
        reason: RemoveReason,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        etag: Option<String>,
    },
    Move {
        external_id: ExternalId,
        target_id: TargetId,
        from_ods_code: OdsCode,
        ods_code: OdsCode,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<FieldChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        etag: Option<String>,
    },
    Restore {
        external_id: ExternalId,
        target_id: TargetId,
        ods_code: OdsCode,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<FieldChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        etag: Option<String>,
    },
    Join {
        external_id: ExternalId,
        target_id: TargetId,
        ods_code: OdsCode,
        matched_on: MatchKey,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        changes: Vec<FieldChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        etag: Option<String>,
    },
}

impl Operation {
    pub fn kind(&self) -> OpKind {
        match self {
            Operation::Provision { .. } => OpKind::Provision,
            Operation::Update { .. } => OpKind::Update,
            Operation::Remove { .. } => OpKind::Remove,
            Operation::Move { .. } => OpKind::Move,
            Operation::Restore { .. } => OpKind::Restore,
            Operation::Join { .. } => OpKind::Join,
        }
    }

    pub fn external_id(&self) -> &ExternalId {
        match self {
            Operation::Provision { external_id, .. }
            | Operation::Update { external_id, .. }
            | Operation::Remove { external_id, .. }
            | Operation::Move { external_id, .. }
            | Operation::Restore { external_id, .. }
            | Operation::Join { external_id, .. } => external_id,
        }
    }

    /// The organisation the operation ends in.
    pub fn ods_code(&self) -> &OdsCode {
        match self {
            Operation::Provision { ods_code, .. }
            | Operation::Update { ods_code, .. }
            | Operation::Remove { ods_code, .. }
            | Operation::Move { ods_code, .. }
            | Operation::Restore { ods_code, .. }
            | Operation::Join { ods_code, .. } => ods_code,
        }
    }

    /// Every organisation the operation touches (a move touches two).
    pub fn organisations(&self) -> Vec<&OdsCode> {
        match self {
            Operation::Move {
                from_ods_code,
                ods_code,
                ..
            } => vec![from_ods_code, ods_code],
            other => vec![other.ods_code()],
        }
    }

    /// Does the operation add an account to its organisation's count?
    pub fn creates_account(&self) -> bool {
        matches!(
            self,
            Operation::Provision { .. } | Operation::Move { .. } | Operation::Restore { .. }
        )
    }

    /// Attribute changes carried (for stripping by the gate).
    pub fn changes_mut(&mut self) -> Option<&mut Vec<FieldChange>> {
        match self {
            Operation::Update { changes, .. }
            | Operation::Move { changes, .. }
            | Operation::Restore { changes, .. }
            | Operation::Join { changes, .. } => Some(changes),
            _ => None,
        }
    }

    /// Sort key: kind, organisation, external id (plan order is deterministic).
    pub fn sort_key(&self) -> (OpKind, &OdsCode, &ExternalId) {
        (self.kind(), self.ods_code(), self.external_id())
    }
}

/// An operation that passed the gate, with the attributes the gate withheld.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedOp {
    #[serde(flatten)]
    pub op: Operation,
    /// Attributes not sent because no agreement permits them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stripped: Vec<Field>,
}

/// Why an operation was not planned (plan `blocked[].reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BlockReason {
    NoPartneringAgreement,
    NoSharingAgreement,
    AgreementExpired,
    OperationNotPermitted,
    AccountCap,
    IneligibleEmailDomain,
    OrganisationClosed,
    UnknownOrganisation,
    MassChangeThreshold,
    TargetPending,
    /// The person already has an NHSmail address that matches no account we can see.
    ExistingNhsmailAccount,
    /// First-sync soft-match found more than one candidate account.
    AmbiguousMatch,
    /// The account exists but another agent (or nobody) manages it.
    NotManaged,
    /// A leaver whose 30-day window has passed cannot be restored by the agent.
    RestoreWindowPassed,
    /// A removal for `not_in_source` held because the read had in-scope entries whose
    /// anchor could not be read (any of them could be that person).
    UnverifiedAbsence,
}

impl BlockReason {
    /// Every reason, in declaration order (metrics show each one, at 0 until it occurs).
    pub const ALL: [BlockReason; 15] = [
        BlockReason::NoPartneringAgreement,
        BlockReason::NoSharingAgreement,
        BlockReason::AgreementExpired,
        BlockReason::OperationNotPermitted,
        BlockReason::AccountCap,
        BlockReason::IneligibleEmailDomain,
        BlockReason::OrganisationClosed,
        BlockReason::UnknownOrganisation,
        BlockReason::MassChangeThreshold,
        BlockReason::TargetPending,
        BlockReason::ExistingNhsmailAccount,
        BlockReason::AmbiguousMatch,
        BlockReason::NotManaged,
        BlockReason::RestoreWindowPassed,
        BlockReason::UnverifiedAbsence,
    ];

    /// The plan's code for it (`account_cap`, …).
    pub fn code(self) -> String {
        render::code(&self)
    }
}

/// An operation the gate (or diff) held back, with why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blocked {
    pub kind: OpKind,
    pub external_id: ExternalId,
    pub ods_code: OdsCode,
    pub reason: BlockReason,
    pub detail: String,
    /// The operation itself, so a reviewed approval (e.g. of a mass removal) can apply it.
    pub operation: Operation,
}

impl Blocked {
    pub fn new(op: Operation, reason: BlockReason, detail: impl Into<String>) -> Self {
        Self {
            kind: op.kind(),
            external_id: op.external_id().clone(),
            ods_code: op.ods_code().clone(),
            reason,
            detail: detail.into(),
            operation: op,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSummary {
    pub kind: String,
    pub read: usize,
    pub in_scope: usize,
    pub rejected: usize,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSummary {
    pub kind: String,
    pub read: usize,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub provision: usize,
    pub update: usize,
    pub remove: usize,
    #[serde(rename = "move")]
    pub move_: usize,
    pub restore: usize,
    pub join: usize,
    pub unchanged: usize,
    pub blocked: usize,
    pub rejected: usize,
}

impl Summary {
    pub fn count(&self, k: OpKind) -> usize {
        match k {
            OpKind::Provision => self.provision,
            OpKind::Update => self.update,
            OpKind::Remove => self.remove,
            OpKind::Move => self.move_,
            OpKind::Restore => self.restore,
            OpKind::Join => self.join,
        }
    }
}

/// One AD write the apply will make (plan `write_back`): the address the directory
/// allocated, into the configured attribute of the person's entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WriteBack {
    pub external_id: ExternalId,
    pub dn: String,
    pub attribute: String,
    pub old: Option<String>,
    pub new: String,
}

/// The plan document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub format: String,
    pub generated_at: String,
    pub fingerprint: String,
    pub source: SourceSummary,
    pub target: TargetSummary,
    pub summary: Summary,
    pub operations: Vec<PlannedOp>,
    pub blocked: Vec<Blocked>,
    pub rejected: Vec<Rejection>,
    pub warnings: Vec<Warning>,
    pub write_back: Vec<WriteBack>,
}

/// A stable sort that moves the elements in place.
///
/// `sort_by` on a large `Vec<PlannedOp>` allocates scratch space of up to 8 MB of
/// elements, at the moment the whole source, target and plan are held, i.e. at the
/// run's peak memory. Sorting indices (stably, so ties keep their order exactly as
/// `sort_by` would) and then applying the permutation by swaps needs only the indices.
pub(crate) fn sort_in_place_by<T>(v: &mut [T], cmp: impl Fn(&T, &T) -> std::cmp::Ordering) {
    let mut order: Vec<usize> = (0..v.len()).collect();
    order.sort_by(|&a, &b| cmp(&v[a], &v[b]));
    // order[i] is the index of the element that belongs at i; follow each cycle once,
    // marking positions done by pointing them at themselves.
    for i in 0..order.len() {
        let mut cur = i;
        loop {
            let next = order[cur];
            order[cur] = cur;
            if next == i {
                break;
            }
            v.swap(cur, next);
            cur = next;
        }
    }
}

impl Plan {
    /// The removals the mass-change guard holds: sorted (anchor, target id, reason), and
    /// their digest (SHA-256 over those lines) — what continuous mode's
    /// `approve-removals` names.
    pub fn held_removals(&self) -> (Vec<(String, String, String)>, Option<String>) {
        use sha2::{Digest, Sha256};
        let mut held: Vec<(String, String, String)> = self
            .blocked
            .iter()
            .filter(|b| b.reason == BlockReason::MassChangeThreshold)
            .filter_map(|b| match &b.operation {
                Operation::Remove {
                    external_id,
                    target_id,
                    reason,
                    ..
                } => Some((
                    external_id.to_string(),
                    target_id.to_string(),
                    render::code(reason),
                )),
                _ => None,
            })
            .collect();
        held.sort();
        held.dedup();
        if held.is_empty() {
            return (held, None);
        }
        let mut h = Sha256::new();
        for (x, t, r) in &held {
            h.update(format!("{x}\t{t}\t{r}\n"));
        }
        (held, Some(format!("sha256:{}", hex::encode(h.finalize()))))
    }

    /// Assemble a plan, putting everything in its deterministic order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        generated_at: String,
        fingerprint: String,
        source: SourceSummary,
        target: TargetSummary,
        mut operations: Vec<PlannedOp>,
        mut blocked: Vec<Blocked>,
        mut rejected: Vec<Rejection>,
        mut warnings: Vec<Warning>,
        mut write_back: Vec<WriteBack>,
        unchanged: usize,
    ) -> Plan {
        sort_in_place_by(&mut operations, |a, b| {
            a.op.sort_key().cmp(&b.op.sort_key())
        });
        blocked.sort_by(|a, b| {
            (a.kind, &a.ods_code, &a.external_id, a.reason).cmp(&(
                b.kind,
                &b.ods_code,
                &b.external_id,
                b.reason,
            ))
        });
        rejected.sort_by(|a, b| (&a.dn, a.reason).cmp(&(&b.dn, b.reason)));
        warnings.sort_by(|a, b| {
            (&a.dn, a.field, &a.external_id).cmp(&(&b.dn, b.field, &b.external_id))
        });
        write_back.sort_by(|a, b| a.external_id.cmp(&b.external_id));
        let mut summary = Summary {
            unchanged,
            blocked: blocked.len(),
            rejected: rejected.len(),
            ..Summary::default()
        };
        for p in &operations {
            match p.op.kind() {
                OpKind::Provision => summary.provision += 1,
                OpKind::Update => summary.update += 1,
                OpKind::Remove => summary.remove += 1,
                OpKind::Move => summary.move_ += 1,
                OpKind::Restore => summary.restore += 1,
                OpKind::Join => summary.join += 1,
            }
        }
        Plan {
            format: FORMAT.to_string(),
            generated_at,
            fingerprint,
            source,
            target,
            summary,
            operations,
            blocked,
            rejected,
            warnings,
            write_back,
        }
    }

    /// Anything to write: an operation for the directory or a write-back to AD.
    pub fn has_changes(&self) -> bool {
        !self.operations.is_empty() || !self.write_back.is_empty()
    }

    /// Write the JSON plan (pretty, with a final newline) without building it in memory.
    pub fn write_json(&self, w: impl std::io::Write) -> std::io::Result<()> {
        use std::io::Write;
        let mut w = std::io::BufWriter::with_capacity(1 << 16, w);
        serde_json::to_writer_pretty(&mut w, self)?;
        w.write_all(b"\n")?;
        w.flush()
    }

    pub fn to_json(&self) -> String {
        // Serialising plain owned data to a String cannot fail.
        let mut s = serde_json::to_string_pretty(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod sort_tests {
    use super::sort_in_place_by;

    #[test]
    fn in_place_sort_matches_stable_sort() {
        // (key, original position): ties must keep their original order.
        let mut seed = 7u64;
        for n in [0usize, 1, 2, 3, 10, 257, 1000] {
            let v: Vec<(u64, usize)> = (0..n)
                .map(|i| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    ((seed >> 33) % 17, i)
                })
                .collect();
            let mut want = v.clone();
            want.sort_by_key(|a| a.0);
            let mut got = v;
            sort_in_place_by(&mut got, |a, b| a.0.cmp(&b.0));
            assert_eq!(got, want, "n = {n}");
        }
    }
}
