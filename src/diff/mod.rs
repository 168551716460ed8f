//! Diff stage (pure): desired state (people in scope) against the directory's actual
//! state → candidate operations. No I/O, no clock: `now` is passed in.
//!
//! Only accounts this agent manages (its `agent_id`, an anchor, an organisation it has an
//! agreement for) are ever candidates for update, remove or move (DESIGN.md, "Safety
//! rules"). Accounts in `pending` are never edited (`target_pending`).

use crate::ids::{ExternalId, OdsCode, TargetId};
use crate::model::validate::{email_domain, phone_comparable, same_comparable};
use crate::model::{Field, Person};
use crate::plan::{BlockReason, Blocked, FieldChange, MatchKey, Operation, RemoveReason};
use crate::target::{Account, Status, TargetState};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use time::{Duration, OffsetDateTime};

/// Everything the diff looks at.
pub struct DiffInput<'a> {
    /// People in scope, valid, keyed by anchor.
    pub persons: &'a BTreeMap<ExternalId, Person>,
    /// Anchors present in the source but excluded by the filter rules.
    pub out_of_scope: &'a BTreeSet<ExternalId>,
    /// Anchors of source entries that were rejected: never removed on that account.
    pub rejected: &'a BTreeSet<ExternalId>,
    /// In-scope source entries whose anchor could not be read. Any of them could be the
    /// person behind any account missing from the source, so while there are some, no
    /// account is removed for `not_in_source` (held as `unverified_absence`).
    pub unanchored_in_scope: usize,
    pub target: &'a TargetState,
    pub agent_id: &'a str,
    /// Organisations this agent synchronises with.
    pub managed_orgs: &'a BTreeSet<OdsCode>,
    /// First-sync soft-match keys, in order of preference.
    pub soft_match: &'a [MatchKey],
    /// The NHSmail domain (an address there means "join, not provision").
    pub nhsmail_domain: &'a str,
    /// How long a leaver can be restored (30 days: Access Policy v4, "leavers and joiners").
    pub restore_window: Duration,
    pub now: OffsetDateTime,
    /// `Some` on a delta cycle: `persons`, `out_of_scope` and `rejected` hold only the
    /// entries that changed, so absence from them means nothing. Only evidence removes:
    /// a disabled person, an entry the rules now exclude (`out_of_scope`), or an anchor
    /// in this set of objects deleted from the source (`not_in_source`).
    pub delta_deleted: Option<&'a BTreeSet<ExternalId>>,
}

#[derive(Debug, Default)]
pub struct DiffOutput {
    pub operations: Vec<Operation>,
    pub blocked: Vec<Blocked>,
    pub unchanged: usize,
    /// Accounts this agent manages (for the mass-change guard's percentage).
    pub managed: usize,
}

/// Is this account one the agent may change?
pub fn is_managed(a: &Account, agent_id: &str, orgs: &BTreeSet<OdsCode>) -> bool {
    a.external_id.is_some()
        && a.managed_by.as_deref() == Some(agent_id)
        && orgs.contains(&a.ods_code)
}

/// Attribute changes that take the account to the person, compared as the directory
/// compares (see [`same_value`]). A field the person withholds (its source value was
/// invalid and dropped, with a warning) is left as the account holds it: neither
/// compared nor cleared.
pub fn field_changes(p: &Person, a: &Account) -> Vec<FieldChange> {
    // Both maps are sorted by field: walk them together (this runs once per person, so
    // no per-call set or lowercased copies; see `same_comparable`).
    let synced = |(f, _): &(&Field, &String)| f.is_synchronised() && !p.withholds(**f);
    let mut news = p.attributes.iter().filter(synced).peekable();
    let mut olds = a.attributes.iter().filter(synced).peekable();
    let mut out = Vec::new();
    loop {
        let (f, old, new) = match (olds.peek(), news.peek()) {
            (None, None) => break,
            (Some(&(fo, o)), Some(&(fnew, n))) => match fo.cmp(fnew) {
                Ordering::Less => {
                    olds.next();
                    (*fo, Some(o), None)
                }
                Ordering::Greater => {
                    news.next();
                    (*fnew, None, Some(n))
                }
                Ordering::Equal => {
                    olds.next();
                    news.next();
                    (*fo, Some(o), Some(n))
                }
            },
            (Some(&(fo, o)), None) => {
                olds.next();
                (*fo, Some(o), None)
            }
            (None, Some(&(fnew, n))) => {
                news.next();
                (*fnew, None, Some(n))
            }
        };
        let old = old.filter(|v| !is_blank(v));
        let same = match (old, new) {
            (Some(o), Some(n)) => same_value(f, o, n),
            (None, None) => true,
            _ => false,
        };
        if !same {
            out.push(FieldChange {
                field: f,
                old: old.cloned(),
                new: new.cloned(),
            });
        }
    }
    out
}

/// Does the directory's value `old` equal the person's `new`, as the directory compares?
/// Text case-insensitively with whitespace collapsed; telephone and mobile numbers in
/// E.164 on both sides, so `07700 900123` held by the directory equals the source's
/// `+447700900123`. A directory value that is not a number is compared as text.
fn same_value(f: Field, old: &str, new: &str) -> bool {
    if same_comparable(old, new) {
        return true;
    }
    match f {
        // Only reached when the texts differ, so at most once per changed number.
        Field::Telephone | Field::Mobile => match phone_comparable(old) {
            Some(o) => o == new || phone_comparable(new).is_some_and(|n| n == o),
            None => false,
        },
        _ => false,
    }
}

/// A value of only whitespace (which the directory treats as absent). Decides on the first
/// byte for the usual value, instead of trimming it.
fn is_blank(v: &str) -> bool {
    match v.as_bytes().first() {
        None => true,
        Some(b) if b.is_ascii_graphic() => false,
        Some(_) => v.trim().is_empty(),
    }
}

/// An account a first-sync soft match may join: no anchor, not deleted.
pub fn is_join_candidate(a: &Account) -> bool {
    a.external_id.is_none() && a.status != Status::Deleted
}

/// The values an account is soft-matched by, per key (compared as [`person_match_value`]).
pub fn account_match_values(a: &Account) -> impl Iterator<Item = (MatchKey, String)> {
    let employee = lower(a.attributes.get(&Field::EmployeeId).map(String::as_str));
    let email = lower(a.email.as_deref());
    [(MatchKey::EmployeeId, employee), (MatchKey::Email, email)]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v?)))
}

/// The value a person is soft-matched by on `key`.
pub fn person_match_value(p: &Person, key: MatchKey) -> Option<String> {
    lower(p.get(key.field()))
}

fn lower(v: Option<&str>) -> Option<String> {
    v.map(|s| s.trim().to_lowercase()).filter(|s| !s.is_empty())
}

pub fn diff(input: &DiffInput<'_>) -> DiffOutput {
    let mut out = DiffOutput::default();
    let accounts = &input.target.accounts;
    // Anchor → index of the (last) live account holding it. Only looked up, never
    // iterated, so a HashMap cannot reach the plan's order; at directory scale it is
    // several times faster than a BTreeMap of string keys. foldhash (already in the tree
    // through hashbrown) rather than SipHash: hashing was a quarter of the diff's
    // instructions; it is still seeded per process, and the keys come from our own AD
    // and the directory, not from strangers.
    let mut by_anchor: HashMap<&ExternalId, usize, foldhash::fast::RandomState> =
        HashMap::with_capacity_and_hasher(accounts.len(), Default::default());
    // Whether the agent manages each account, decided once in this pass over the
    // accounts: both later passes need it, and at directory scale each test is a cache
    // miss (the account's `managed_by` text).
    let mut managed = Vec::with_capacity(accounts.len());
    for (i, a) in accounts.iter().enumerate() {
        managed.push(is_managed(a, input.agent_id, input.managed_orgs));
        if a.status != Status::Deleted
            && let Some(x) = &a.external_id
        {
            by_anchor.insert(x, i);
        }
    }
    // Accounts whose anchor a person in scope holds (set while walking the persons, so
    // the removal pass needs no lookup in `persons` for them).
    let mut in_source = vec![false; accounts.len()];
    // Unanchored accounts are the candidates for first-sync soft-match.
    let mut by_key: BTreeMap<(MatchKey, String), Vec<&Account>> = BTreeMap::new();
    for a in input
        .target
        .accounts
        .iter()
        .filter(|a| is_join_candidate(a))
    {
        for (key, v) in account_match_values(a) {
            by_key.entry((key, v)).or_default().push(a);
        }
    }
    let mut joined: BTreeSet<&TargetId> = BTreeSet::new();

    for (xid, p) in input.persons {
        match by_anchor.get(xid) {
            Some(&i) => {
                in_source[i] = true;
                let a = &accounts[i];
                let managed = managed[i];
                match existing(p, a, input) {
                    Outcome::Unchanged => out.unchanged += 1,
                    Outcome::Planned(op) if managed => out.operations.push(op),
                    Outcome::Planned(op) => out.blocked.push(Blocked::new(
                        op,
                        BlockReason::NotManaged,
                        format!(
                            "account {} is managed by {}",
                            a.target_id,
                            a.managed_by.as_deref().unwrap_or("no agent")
                        ),
                    )),
                    Outcome::Held(b) => out.blocked.push(b),
                }
            }
            None if !p.enabled => {} // Disabled and never provisioned: nothing to do.
            None => match soft_match(p, input, &by_key, &mut joined) {
                Outcome::Planned(op) => out.operations.push(op),
                Outcome::Held(b) => out.blocked.push(b),
                Outcome::Unchanged => out.unchanged += 1,
            },
        }
    }

    for (i, a) in accounts.iter().enumerate() {
        if !managed[i] {
            continue;
        }
        out.managed += 1;
        let Some(xid) = &a.external_id else { continue };
        // A person holds this anchor if they matched this account, or (when two accounts
        // share an anchor) the one `by_anchor` kept. Deleted accounts are in neither, and
        // whatever the answer they get no operation below.
        let in_persons = in_source[i] || by_anchor.get(xid).is_some_and(|&j| in_source[j]);
        if in_persons || input.rejected.contains(xid) {
            continue;
        }
        let reason = if input.out_of_scope.contains(xid) {
            RemoveReason::OutOfScope
        } else if input.delta_deleted.is_none_or(|d| d.contains(xid)) {
            RemoveReason::NotInSource
        } else {
            // A delta read that did not mention this person: nothing is known of them.
            continue;
        };
        let op = Operation::Remove {
            external_id: xid.clone(),
            target_id: a.target_id.clone(),
            ods_code: a.ods_code.clone(),
            reason,
            etag: a.etag.clone(),
        };
        match a.status {
            Status::Active | Status::Inactive
                if reason == RemoveReason::NotInSource && input.unanchored_in_scope > 0 =>
            {
                out.blocked.push(Blocked::new(
                    op,
                    BlockReason::UnverifiedAbsence,
                    format!(
                        "not in the source, but {} in-scope source entr{} had no readable anchor: any of them could be this person",
                        input.unanchored_in_scope,
                        if input.unanchored_in_scope == 1 { "y" } else { "ies" }
                    ),
                ));
            }
            Status::Active | Status::Inactive => out.operations.push(op),
            Status::Pending => out.blocked.push(pending(op, a)),
            Status::Leaver | Status::Deleted => {}
        }
    }
    if let Some(c) = &input.target.census {
        // The state holds some of the accounts (a delta cycle's): the guard's
        // percentage is of every account the agent manages.
        out.managed = c
            .managed
            .iter()
            .filter(|(ods, _)| input.managed_orgs.contains(*ods))
            .map(|(_, n)| *n as usize)
            .sum();
    }
    out
}

fn pending(op: Operation, a: &Account) -> Blocked {
    Blocked::new(
        op,
        BlockReason::TargetPending,
        format!(
            "account {} is pending (new mailbox); it is not edited until active",
            a.target_id
        ),
    )
}

/// What the diff decides for one person.
enum Outcome {
    Unchanged,
    Planned(Operation),
    Held(Blocked),
}

impl From<Option<Operation>> for Outcome {
    fn from(op: Option<Operation>) -> Self {
        op.map_or(Outcome::Unchanged, Outcome::Planned)
    }
}

/// The operation (if any) for a person whose account already exists.
fn existing(p: &Person, a: &Account, input: &DiffInput<'_>) -> Outcome {
    let changes = if p.enabled {
        field_changes(p, a)
    } else {
        Vec::new()
    };
    let moved = a.ods_code != p.ods_code;
    if p.enabled
        && !moved
        && changes.is_empty()
        && matches!(
            a.status,
            Status::Active | Status::Inactive | Status::Pending
        )
    {
        // The common case at scale: nothing to do, so nothing to copy.
        return Outcome::Unchanged;
    }
    let xid = p.external_id.clone();
    let target_id = a.target_id.clone();
    let etag = a.etag.clone();
    if !p.enabled {
        return match a.status {
            Status::Active | Status::Inactive => Outcome::Planned(Operation::Remove {
                external_id: xid,
                target_id,
                ods_code: a.ods_code.clone(),
                reason: RemoveReason::Disabled,
                etag,
            }),
            Status::Pending => Outcome::Held(pending(
                Operation::Remove {
                    external_id: xid,
                    target_id,
                    ods_code: a.ods_code.clone(),
                    reason: RemoveReason::Disabled,
                    etag,
                },
                a,
            )),
            Status::Leaver | Status::Deleted => Outcome::Unchanged,
        };
    }
    match a.status {
        Status::Leaver => {
            let op = if moved {
                Operation::Move {
                    external_id: xid,
                    target_id,
                    from_ods_code: a.ods_code.clone(),
                    ods_code: p.ods_code.clone(),
                    changes,
                    etag,
                }
            } else {
                Operation::Restore {
                    external_id: xid,
                    target_id,
                    ods_code: p.ods_code.clone(),
                    changes,
                    etag,
                }
            };
            match a.leaver_since {
                Some(since) if input.now - since > input.restore_window => {
                    Outcome::Held(Blocked::new(
                        op,
                        BlockReason::RestoreWindowPassed,
                        format!(
                            "leaver since {} ({} days; the window is {} days): the directory deletes it",
                            since.date(),
                            (input.now - since).whole_days(),
                            input.restore_window.whole_days()
                        ),
                    ))
                }
                _ => Outcome::Planned(op),
            }
        }
        Status::Deleted => Outcome::Unchanged, // Filtered out before; kept for exhaustiveness.
        Status::Active | Status::Inactive | Status::Pending => {
            let op = if moved {
                Some(Operation::Move {
                    external_id: xid,
                    target_id,
                    from_ods_code: a.ods_code.clone(),
                    ods_code: p.ods_code.clone(),
                    changes,
                    etag,
                })
            } else if !changes.is_empty() {
                Some(Operation::Update {
                    external_id: xid,
                    target_id,
                    ods_code: p.ods_code.clone(),
                    changes,
                    etag,
                })
            } else {
                None
            };
            match (op, a.status) {
                (Some(op), Status::Pending) => Outcome::Held(pending(op, a)),
                (op, _) => op.into(),
            }
        }
    }
}

/// A person with no anchored account: join an existing one, or provision.
fn soft_match<'a>(
    p: &Person,
    input: &DiffInput<'_>,
    by_key: &BTreeMap<(MatchKey, String), Vec<&'a Account>>,
    joined: &mut BTreeSet<&'a TargetId>,
) -> Outcome {
    let provision = Operation::Provision {
        external_id: p.external_id.clone(),
        ods_code: p.ods_code.clone(),
        rule: p.rule.clone(),
        attributes: p.synchronised(),
    };
    for key in input.soft_match {
        let field = key.field();
        let Some(v) = person_match_value(p, *key) else {
            continue;
        };
        let found: Vec<&&Account> = by_key
            .get(&(*key, v.clone()))
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        match found.as_slice() {
            [] => continue,
            [a] if !joined.contains(&a.target_id) => {
                joined.insert(&a.target_id);
                let acct: &Account = a;
                return Outcome::Planned(Operation::Join {
                    external_id: p.external_id.clone(),
                    target_id: acct.target_id.clone(),
                    ods_code: p.ods_code.clone(),
                    matched_on: *key,
                    changes: field_changes(p, acct),
                    etag: acct.etag.clone(),
                });
            }
            many => {
                return Outcome::Held(Blocked::new(
                    provision,
                    BlockReason::AmbiguousMatch,
                    format!(
                        "{field} {v:?} matches {} accounts without an anchor (or one already joined): resolve by hand",
                        many.len()
                    ),
                ));
            }
        }
    }
    let nhsmail = p
        .get(Field::Email)
        .and_then(email_domain)
        .is_some_and(|d| d.eq_ignore_ascii_case(input.nhsmail_domain));
    if nhsmail {
        return Outcome::Held(Blocked::new(
            provision,
            BlockReason::ExistingNhsmailAccount,
            format!(
                "already has an NHSmail address ({}) that matches no account in a managed organisation; one account per person (AUP §2.9)",
                p.get(Field::Email).unwrap_or_default()
            ),
        ));
    }
    Outcome::Planned(provision)
}

#[cfg(test)]
mod tests;
