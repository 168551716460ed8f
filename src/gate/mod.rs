//! Gate stage (pure): decides which candidate operations may be sent. Fail closed:
//! no valid partnering agreement, no valid sharing agreement permitting the operation, a
//! closed or unknown organisation, an account cap reached, an ineligible person, or a
//! removal count over the mass-change threshold → the operation is blocked with a reason.
//! Attributes outside the organisation's sharing agreement are stripped and listed.
//!
//! Policy sources: Access Policy v4 (`000_…`, "Who can use NHSmail?": 50-account limit;
//! users with another publicly funded mailbox are not eligible); AUP §2.10 (`002_…`);
//! Policy and Guidance (`001_…`, address book synchronisation agreements).

pub mod agreements;

pub use agreements::Agreements;

use crate::ids::OdsCode;
use crate::model::validate::{domain_within, email_domain};
use crate::model::{Field, Person, Persons};
use crate::plan::{BlockReason, Blocked, OpKind, Operation, PlannedOp};
use crate::target::{Status, TargetState};
use std::collections::{BTreeMap, BTreeSet};
use time::OffsetDateTime;

/// Tunable limits, from the configuration's `[safety]` and `[eligibility]`.
#[derive(Clone, Debug, PartialEq)]
pub struct GatePolicy {
    /// Cap for an organisation whose registry entry names none (Access Policy v4: 50).
    pub default_cap: u32,
    /// Domains of other publicly funded mailboxes (AUP §2.10): such people are ineligible.
    pub ineligible_domains: Vec<String>,
    /// Removals above this number are all blocked.
    pub max_removals: usize,
    /// Removals above this percentage of managed accounts are all blocked…
    pub max_removal_percent: f64,
    /// …once the agent manages at least this many accounts (a percentage of a handful
    /// would block every single leaver).
    pub percent_applies_from: usize,
}

impl Default for GatePolicy {
    fn default() -> Self {
        Self {
            default_cap: 50,
            ineligible_domains: default_ineligible_domains(),
            max_removals: 50,
            max_removal_percent: 10.0,
            percent_applies_from: 100,
        }
    }
}

/// Publicly funded mail domains whose holders may not also hold NHSmail (AUP §2.10 names
/// `nhs.uk` and `gov.uk`; the rest are public-sector domains of the secure email standard).
pub fn default_ineligible_domains() -> Vec<String> {
    [
        "nhs.uk",
        "gov.uk",
        "gov.scot",
        "gov.wales",
        "police.uk",
        "mod.uk",
        "parliament.uk",
        "hscni.net",
    ]
    .map(String::from)
    .to_vec()
}

pub struct GateInput<'a> {
    pub candidates: Vec<Operation>,
    pub persons: &'a Persons,
    pub target: &'a TargetState,
    pub agreements: &'a Agreements,
    pub policy: &'a GatePolicy,
    /// Accounts the agent manages (for the percentage guard).
    pub managed: usize,
    pub now: OffsetDateTime,
}

#[derive(Debug, Default)]
pub struct GateOutput {
    pub operations: Vec<PlannedOp>,
    pub blocked: Vec<Blocked>,
    /// Updates whose every change was stripped: nothing left to send.
    pub unchanged: usize,
}

fn ineligible(p: Option<&Person>, policy: &GatePolicy) -> Option<String> {
    let addr = p?.get(Field::Email)?;
    let domain = email_domain(addr)?;
    policy
        .ineligible_domains
        .iter()
        .find(|d| domain_within(domain, d))
        .map(|d| {
            format!("already has a publicly funded mailbox ({addr}, under {d}); not eligible for NHSmail (AUP §2.10)")
        })
}

/// The agreement/organisation checks for one operation.
fn check_agreements(op: &Operation, input: &GateInput<'_>) -> Result<(), (BlockReason, String)> {
    let today = input.now.date();
    match &input.agreements.partnering {
        None => {
            return Err((
                BlockReason::NoPartneringAgreement,
                "no partnering agreement is configured".into(),
            ));
        }
        Some(p) if !p.validity.covers(today) => {
            return Err((
                BlockReason::AgreementExpired,
                format!(
                    "partnering agreement {} is valid {} to {}",
                    p.reference, p.validity.from, p.validity.until
                ),
            ));
        }
        Some(_) => {}
    }
    for ods in op.organisations() {
        if let Some(answer) = input.target.refused.get(ods) {
            return Err((
                BlockReason::NoSharingAgreement,
                format!("the NHS Directory refused access to {ods}'s accounts ({answer})"),
            ));
        }
        match input.target.organisations.get(ods) {
            None => {
                return Err((
                    BlockReason::UnknownOrganisation,
                    format!("{ods} is not in the NHS Directory's organisation registry"),
                ));
            }
            Some(o) if !o.open => {
                return Err((
                    BlockReason::OrganisationClosed,
                    format!("{ods} ({}) is closed", o.name),
                ));
            }
            Some(_) => {}
        }
        let Some(s) = input.agreements.sharing.get(ods) else {
            return Err((
                BlockReason::NoSharingAgreement,
                format!("no sharing agreement with {ods}"),
            ));
        };
        if !s.validity.covers(today) {
            return Err((
                BlockReason::AgreementExpired,
                format!(
                    "sharing agreement {} with {ods} is valid {} to {}",
                    s.reference, s.validity.from, s.validity.until
                ),
            ));
        }
        if !s.operations.contains(&op.kind()) {
            return Err((
                BlockReason::OperationNotPermitted,
                format!(
                    "sharing agreement {} with {ods} does not permit {}",
                    s.reference,
                    op.kind()
                ),
            ));
        }
    }
    Ok(())
}

/// Remove the attributes the destination organisation's agreement does not permit.
/// Refuses (with why) a provision whose agreement lacks a mandatory attribute.
fn strip(op: &mut Operation, input: &GateInput<'_>) -> Result<Vec<Field>, String> {
    let Some(s) = input.agreements.sharing.get(op.ods_code()) else {
        return Ok(vec![]);
    };
    let allowed = &s.attributes;
    let mut stripped = BTreeSet::new();
    if let Operation::Provision { attributes, .. } = op {
        if let Some(f) = [Field::GivenName, Field::FamilyName]
            .into_iter()
            .find(|f| !allowed.contains(f))
        {
            return Err(format!(
                "sharing agreement {} does not permit {f}, which provisioning needs",
                s.reference
            ));
        }
        attributes.retain(|f, _| {
            let ok = allowed.contains(&f);
            if !ok {
                stripped.insert(f);
            }
            ok
        });
    }
    if let Some(changes) = op.changes_mut() {
        changes.retain(|c| {
            let ok = allowed.contains(&c.field);
            if !ok {
                stripped.insert(c.field);
            }
            ok
        });
    }
    Ok(stripped.into_iter().collect())
}

/// Count a create against its organisation's cap, or say why the cap is full.
fn cap_left(
    p: &PlannedOp,
    input: &GateInput<'_>,
    holds: &BTreeMap<&OdsCode, u32>,
    used: &mut BTreeMap<OdsCode, u32>,
) -> Result<(), String> {
    let ods = p.op.ods_code().clone();
    let cap = input
        .target
        .organisations
        .get(&ods)
        .and_then(|o| o.cap)
        .unwrap_or(input.policy.default_cap);
    let held = holds.get(&ods).copied().unwrap_or(0);
    let n = used.entry(ods.clone()).or_default();
    if held + *n >= cap {
        return Err(format!(
            "{ods} holds {held} of {cap} accounts and {n} earlier creates in this plan fill the rest"
        ));
    }
    *n += 1;
    Ok(())
}

pub fn gate(mut input: GateInput<'_>) -> GateOutput {
    let mut out = GateOutput::default();
    let candidates = std::mem::take(&mut input.candidates);
    let mut passed: Vec<PlannedOp> = Vec::with_capacity(candidates.len());
    for op in candidates {
        if op.kind() == OpKind::Provision
            && let Some(why) = ineligible(input.persons.get(op.external_id()), input.policy)
        {
            out.blocked
                .push(Blocked::new(op, BlockReason::IneligibleEmailDomain, why));
            continue;
        }
        if let Err((reason, detail)) = check_agreements(&op, &input) {
            out.blocked.push(Blocked::new(op, reason, detail));
            continue;
        }
        let mut op = op;
        match strip(&mut op, &input) {
            Ok(_) if matches!(&op, Operation::Update { changes, .. } if changes.is_empty()) => {
                out.unchanged += 1;
            }
            Ok(stripped) => passed.push(PlannedOp { op, stripped }),
            Err(detail) => {
                out.blocked
                    .push(Blocked::new(op, BlockReason::OperationNotPermitted, detail))
            }
        }
    }

    // Account caps. Creates are kept in a documented, stable order: restores first
    // (returning staff), then moves (joiners), then provisions; within each, by anchor.
    // The anchor never changes, so the same people stay kept from run to run.
    let mut holds: BTreeMap<&OdsCode, u32> = BTreeMap::new();
    match &input.target.census {
        // The state holds some of the accounts (a delta cycle's): count them all.
        Some(c) => holds.extend(c.held.iter().map(|(ods, n)| (ods, *n))),
        None => {
            for a in &input.target.accounts {
                if a.status != Status::Deleted {
                    *holds.entry(&a.ods_code).or_default() += 1;
                }
            }
        }
    }
    let rank = |k: OpKind| match k {
        OpKind::Restore => 0,
        OpKind::Move => 1,
        _ => 2,
    };
    // In place (see `sort_in_place_by`): this runs while the whole plan is held.
    crate::plan::sort_in_place_by(&mut passed, |a, b| {
        (rank(a.op.kind()), a.op.external_id()).cmp(&(rank(b.op.kind()), b.op.external_id()))
    });
    let mut used: BTreeMap<OdsCode, u32> = BTreeMap::new();
    // Those over the cap leave `passed` in order (extract_if visits each element once, in
    // order), with their details, so no second vector of the kept ones is built.
    let mut over_cap: Vec<String> = Vec::new();
    let blocked_by_cap: Vec<PlannedOp> = passed
        .extract_if(.., |p| {
            // A restore brings back an account the org still holds (a leaver counts
            // until deleted), so it does not add to the count.
            if !p.op.creates_account() || p.op.kind() == OpKind::Restore {
                return false;
            }
            match cap_left(p, &input, &holds, &mut used) {
                Ok(()) => false,
                Err(detail) => {
                    over_cap.push(detail);
                    true
                }
            }
        })
        .collect();
    for (p, detail) in blocked_by_cap.into_iter().zip(over_cap) {
        out.blocked
            .push(Blocked::new(p.op, BlockReason::AccountCap, detail));
    }
    let mut kept = passed;

    // Mass-change guard: all removals or none.

    let removals = kept
        .iter()
        .filter(|p| p.op.kind() == OpKind::Remove)
        .count();
    let pol = input.policy;
    let over_abs = removals > pol.max_removals;
    let over_pct = input.managed >= pol.percent_applies_from
        && (removals as f64) * 100.0 > pol.max_removal_percent * input.managed as f64;
    if over_abs || over_pct {
        let detail = format!(
            "{removals} removals exceed the guard (more than {} in all, or more than {}% of {} managed accounts); approve this plan to apply them",
            pol.max_removals, pol.max_removal_percent, input.managed
        );
        let (removes, rest): (Vec<_>, Vec<_>) = kept
            .into_iter()
            .partition(|p| p.op.kind() == OpKind::Remove);
        kept = rest;
        out.blocked.extend(
            removes
                .into_iter()
                .map(|p| Blocked::new(p.op, BlockReason::MassChangeThreshold, detail.clone())),
        );
    }
    out.operations = kept;
    out
}

#[cfg(test)]
mod tests;
