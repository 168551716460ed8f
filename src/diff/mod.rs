//! Diff stage (pure): desired state (people in scope) against the directory's actual
//! state → candidate operations. No I/O, no clock: `now` is passed in.
//!
//! Only accounts this agent manages (its `agent_id`, an anchor, an organisation it has an
//! agreement for) are ever candidates for update, remove or move (DESIGN.md, "Safety
//! rules"). Accounts in `pending` are never edited (`target_pending`).
//!
//! At directory scale the passes over accounts and people run on scoped threads over
//! consecutive chunks, their results put back in order, so the output never depends on
//! the thread count (`diff_on`; tested against the sequential diff in `tests.rs`).

use crate::ids::{ExternalId, OdsCode, TargetId};
use crate::model::validate::{email_domain, phone_comparable, same_comparable};
use crate::model::{Field, Person, Persons};
use crate::plan::{BlockReason, Blocked, FieldChange, MatchKey, Operation, RemoveReason};
use crate::target::{Account, Status, TargetState};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use time::{Duration, OffsetDateTime};

/// Everything the diff looks at.
pub struct DiffInput<'a> {
    /// People in scope, valid, keyed by anchor.
    pub persons: &'a Persons,
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
    // Runs once per person: a look-up per field (each O(1) in a `FieldMap`), no per-call
    // set or lowercased copies (see `same_comparable`).
    let mut out = Vec::new();
    for f in Field::ALL {
        if !f.is_synchronised() || p.withholds(f) {
            continue;
        }
        let (old, new) = (a.attributes.get(&f), p.attributes.get(&f));
        if old.is_none() && new.is_none() {
            continue;
        }
        let old = old.filter(|v| !is_blank(v));
        let same = match (old, new) {
            (Some(o), Some(n)) => same_value(f, o, n),
            (None, None) => true,
            _ => false,
        };
        if !same {
            out.push(FieldChange {
                field: f,
                old: old.map(String::from),
                new: new.map(String::from),
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
    let employee = lower(a.attributes.get(&Field::EmployeeId));
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
    let threads = if input.persons.len() < PARALLEL_FROM {
        1
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get().min(MAX_THREADS))
    };
    diff_on(input, threads)
}

/// Below this many people the diff runs on the calling thread: spawning costs more than
/// it saves.
const PARALLEL_FROM: usize = 20_000;
/// The diff is bound by memory latency (each person and account is a few cache misses),
/// so a thread per core pays; more than a few would only contend.
const MAX_THREADS: usize = 8;

/// An anchor with its hash computed once, so the index compares hashes before it reads
/// an anchor's text (each read is a cache miss at directory scale).
#[derive(Clone, Copy)]
struct Anchor<'a> {
    hash: u64,
    id: &'a str,
}

impl PartialEq for Anchor<'_> {
    fn eq(&self, o: &Self) -> bool {
        self.hash == o.hash && self.id == o.id
    }
}
impl Eq for Anchor<'_> {}
impl std::hash::Hash for Anchor<'_> {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        h.write_u64(self.hash);
    }
}

type Shard<'a> = HashMap<Anchor<'a>, usize, foldhash::fast::RandomState>;

/// Anchor → index of the (last) live account holding it, split into shards by hash so
/// that each shard is built by its own thread. Only looked up, never iterated, so hash
/// order cannot reach the plan. foldhash rather than SipHash (hashing was a quarter of
/// the diff's instructions); still seeded per process, and the keys come from our own
/// AD and the directory, not from strangers.
struct AnchorIndex<'a> {
    hasher: foldhash::fast::RandomState,
    shards: Vec<Shard<'a>>,
}

impl AnchorIndex<'_> {
    fn anchor<'x>(&self, x: &'x ExternalId) -> Anchor<'x> {
        Anchor {
            hash: self.hasher.hash_one(x.as_str()),
            id: x.as_str(),
        }
    }

    fn get(&self, x: &ExternalId) -> Option<usize> {
        let k = self.anchor(x);
        self.shards[shard_of(k.hash, self.shards.len())]
            .get(&k)
            .copied()
    }
}

fn shard_of(hash: u64, shards: usize) -> usize {
    // The top bits: the map's own bucket choice uses the low ones of its rehash.
    ((hash >> 32) as usize) % shards.max(1)
}

/// Runs `f` over `items` split into at most `threads` consecutive chunks, each on its own
/// scoped thread (the first on the caller's), and returns the results in chunk order, so
/// concatenating them gives the sequential answer whatever the thread count. `f` gets
/// each chunk's offset into `items`. A thread that cannot be spawned runs its chunk on
/// the caller's thread instead.
fn in_chunks<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(usize, &[T]) -> R + Sync,
) -> Vec<R> {
    let size = items.len().div_ceil(threads.max(1)).max(1);
    if threads <= 1 || items.len() <= size {
        return vec![f(0, items)];
    }
    let f = &f;
    std::thread::scope(|s| {
        let mut chunks = items.chunks(size).enumerate();
        let first = chunks.next();
        let handles: Vec<_> = chunks
            .map(|(k, c)| {
                let spawned = std::thread::Builder::new()
                    .name("tansync-diff".into())
                    .spawn_scoped(s, move || f(k * size, c));
                (k, c, spawned)
            })
            .collect();
        let mut out = Vec::with_capacity(handles.len() + 1);
        if let Some((_, c)) = first {
            out.push(f(0, c));
        }
        for (k, c, h) in handles {
            out.push(match h {
                Ok(h) => h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)),
                Err(_) => f(k * size, c),
            });
        }
        out
    })
}

/// What one person in scope with an anchored account, or one account, leads to
/// (besides `unchanged`).
enum Decided {
    Op(Operation),
    Block(Blocked),
}

impl Decided {
    fn record(self, out: &mut DiffOutput) {
        match self {
            Decided::Op(op) => out.operations.push(op),
            Decided::Block(b) => out.blocked.push(b),
        }
    }
}

/// One chunk of people with accounts, decided.
#[derive(Default)]
struct ChunkDecisions {
    /// Person index (in `persons` order) and what it leads to.
    decided: Vec<(usize, Decided)>,
    /// Enabled people with no anchored account, for the (sequential) soft match.
    unmatched: Vec<usize>,
    unchanged: usize,
}

/// [`diff`] on `threads` threads. The output does not depend on `threads`: every
/// parallel pass works on consecutive chunks and its results are put back in order, and
/// the soft match (which depends on the joins before it) runs on one thread.
fn diff_on(input: &DiffInput<'_>, threads: usize) -> DiffOutput {
    let mut out = DiffOutput::default();
    let accounts = &input.target.accounts;
    let hasher = foldhash::fast::RandomState::default();

    // Pass 1 over the accounts: whether the agent manages each (both later passes need
    // it, and at directory scale each test is a cache miss: the account's `managed_by`
    // text) and the hash of each live account's anchor.
    let firsts = in_chunks(accounts, threads, |_, chunk| {
        chunk
            .iter()
            .map(|a| {
                let live = a
                    .external_id
                    .as_ref()
                    .filter(|_| a.status != Status::Deleted);
                let hash = live.map(|x| hasher.hash_one(x.as_str()));
                (is_managed(a, input.agent_id, input.managed_orgs), hash)
            })
            .collect::<Vec<_>>()
    });
    let firsts: Vec<(bool, Option<u64>)> = firsts.into_iter().flatten().collect();
    let shards = threads.max(1);
    let built = in_chunks(&(0..shards).collect::<Vec<_>>(), shards, |_, mine| {
        mine.iter()
            .map(|&s| {
                let mut m: Shard<'_> = HashMap::with_capacity_and_hasher(
                    accounts.len() / shards + 1,
                    Default::default(),
                );
                for (i, (a, &(_, hash))) in accounts.iter().zip(&firsts).enumerate() {
                    if let (Some(hash), Some(x)) = (hash, &a.external_id)
                        && shard_of(hash, shards) == s
                    {
                        // A later account with the same anchor replaces the index.
                        m.insert(
                            Anchor {
                                hash,
                                id: x.as_str(),
                            },
                            i,
                        );
                    }
                }
                m
            })
            .collect::<Vec<_>>()
    });
    let index = AnchorIndex {
        hasher,
        shards: built.into_iter().flatten().collect(),
    };
    let managed: Vec<bool> = firsts.iter().map(|(m, _)| *m).collect();
    drop(firsts);

    // Pass over the people: those with an anchored account are decided in parallel
    // (each on its own); accounts whose anchor a person holds are marked, so the removal
    // pass needs no lookup in `persons` for them.
    let in_source: Vec<AtomicBool> = accounts.iter().map(|_| AtomicBool::new(false)).collect();
    let persons = input.persons.as_slice();
    let chunks = in_chunks(persons, threads, |offset, chunk| {
        let mut d = ChunkDecisions::default();
        for (k, p) in chunk.iter().enumerate() {
            let Some(i) = index.get(&p.external_id) else {
                if p.enabled {
                    d.unmatched.push(offset + k);
                } // Disabled and never provisioned: nothing to do.
                continue;
            };
            in_source[i].store(true, AtomicOrdering::Relaxed);
            let a = &accounts[i];
            let decided = match existing(p, a, input) {
                Outcome::Unchanged => {
                    d.unchanged += 1;
                    continue;
                }
                Outcome::Planned(op) if managed[i] => Decided::Op(op),
                Outcome::Planned(op) => Decided::Block(Blocked::new(
                    op,
                    BlockReason::NotManaged,
                    format!(
                        "account {} is managed by {}",
                        a.target_id,
                        a.managed_by.as_deref().unwrap_or("no agent")
                    ),
                )),
                Outcome::Held(b) => Decided::Block(b),
            };
            d.decided.push((offset + k, decided));
        }
        d
    });
    let in_source: Vec<bool> = in_source.into_iter().map(AtomicBool::into_inner).collect();

    // Removals, in account order (consecutive chunks, put back in order). Found before
    // the people's operations are put together (they come after them in the output), so
    // that the account index is freed first and the output vector is allocated once, at
    // its final length: at 100,000 people these were the plan's peak RSS.
    let removals = in_chunks(accounts, threads, |offset, chunk| {
        let mut managed_here = 0;
        let mut found = Vec::new();
        for (k, a) in chunk.iter().enumerate() {
            let i = offset + k;
            if !managed[i] {
                continue;
            }
            managed_here += 1;
            if let Some(d) = removal(input, a, in_source[i], &index, &in_source) {
                found.push(d);
            }
        }
        (managed_here, found)
    });
    drop(index);
    drop(in_source);
    drop(managed);

    // Unanchored accounts are the candidates for first-sync soft-match.
    let mut by_key: BTreeMap<(MatchKey, String), Vec<&Account>> = BTreeMap::new();
    for a in accounts.iter().filter(|a| is_join_candidate(a)) {
        for (key, v) in account_match_values(a) {
            by_key.entry((key, v)).or_default().push(a);
        }
    }
    let mut joined: BTreeSet<&TargetId> = BTreeSet::new();
    // Everything in person order: the decided people and the soft-matched ones merged.
    let mut soft =
        |k: usize, out: &mut DiffOutput| match soft_match(&persons[k], input, &by_key, &mut joined)
        {
            Outcome::Planned(op) => out.operations.push(op),
            Outcome::Held(b) => out.blocked.push(b),
            Outcome::Unchanged => out.unchanged += 1,
        };
    // At most one operation for each person decided or left unmatched, and each removal.
    let at_most = chunks
        .iter()
        .map(|c| c.decided.len() + c.unmatched.len())
        .chain(removals.iter().map(|(_, found)| found.len()))
        .sum();
    out.operations.reserve_exact(at_most);
    for c in chunks {
        out.unchanged += c.unchanged;
        // Chunks are consecutive runs of people, so each one's people merge on their own.
        let mut unmatched = c.unmatched.into_iter().peekable();
        for (k, d) in c.decided {
            while let Some(u) = unmatched.next_if(|&u| u < k) {
                soft(u, &mut out);
            }
            d.record(&mut out);
        }
        for u in unmatched {
            soft(u, &mut out);
        }
    }
    for (m, found) in removals {
        out.managed += m;
        for d in found {
            d.record(&mut out);
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

/// The removal (or held removal) a managed account leads to, if any.
fn removal(
    input: &DiffInput<'_>,
    a: &Account,
    matched: bool,
    index: &AnchorIndex<'_>,
    in_source: &[bool],
) -> Option<Decided> {
    let xid = a.external_id.as_ref()?;
    // A person holds this anchor if they matched this account, or (when two accounts
    // share an anchor) the one the index kept. Deleted accounts are in neither, and
    // whatever the answer they get no operation below.
    let in_persons = matched || index.get(xid).is_some_and(|j| in_source[j]);
    if in_persons || input.rejected.contains(xid) {
        return None;
    }
    let reason = if input.out_of_scope.contains(xid) {
        RemoveReason::OutOfScope
    } else if input.delta_deleted.is_none_or(|d| d.contains(xid)) {
        RemoveReason::NotInSource
    } else {
        // A delta read that did not mention this person: nothing is known of them.
        return None;
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
            Some(Decided::Block(Blocked::new(
                op,
                BlockReason::UnverifiedAbsence,
                format!(
                    "not in the source, but {} in-scope source entr{} had no readable anchor: any of them could be this person",
                    input.unanchored_in_scope,
                    if input.unanchored_in_scope == 1 {
                        "y"
                    } else {
                        "ies"
                    }
                ),
            )))
        }
        Status::Active | Status::Inactive => Some(Decided::Op(op)),
        Status::Pending => Some(Decided::Block(pending(op, a))),
        Status::Leaver | Status::Deleted => None,
    }
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
