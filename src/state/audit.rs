//! Audit trail: an append-only, hash-chained record of every operation the agent sent
//! (or settled as not sent) and its outcome, for an information-governance review.
//!
//! Each record holds what (kind), when, the run, the plan fingerprint, the sharing
//! agreement that permitted it, the rule that decided it (for removals, the reason), the
//! outcome, and the account's anchor, ODS code and target id — no other personal data
//! (no names, addresses, phones, DNs or error texts, which may quote them). Its hash is
//! SHA-256 over a canonical encoding of the previous record's hash (the first record
//! chains from [`GENESIS`]), its sequence number and its fields ([`record_hash`]), so an
//! edited, removed or reordered record breaks the chain at that record. The chain's head
//! (`seq:hash`) is written to each run's row when the run finishes, so a tail cut off
//! after a run ended is found against that run's head ([`History::verify_audit`]).
//!
//! Never does: update or delete a record (there is no code path for either); write a
//! record outside the transaction that settles its journal row.

use super::{History, StateError, StateStore};
use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;

/// The hash the first record chains from.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Domain tag at the start of every hashed encoding (a new encoding gets a new tag).
const ENCODING: &[u8] = b"tansync.audit/v1";

/// Outcomes recorded (`outcome`).
pub mod outcome {
    pub const APPLIED: &str = "applied";
    pub const FAILED: &str = "failed";
    /// Never sent: the run stopped first.
    pub const NOT_SENT: &str = "not_sent";
    /// A request may have landed (the run stopped while its fate was unknown); the next
    /// run settles it from the directory's state.
    pub const UNKNOWN: &str = "unknown";
}

/// One operation's settled outcome: the fields a record's hash covers, besides its
/// sequence number and the previous hash.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When the outcome was settled (RFC 3339).
    pub at: String,
    pub run: i64,
    /// The fingerprint of the plan the operation came from.
    pub fingerprint: String,
    /// The plan's `kind` (provision, update, remove, move, restore, join) or `write_back`.
    pub kind: String,
    pub external_id: String,
    pub ods_code: String,
    pub target_id: Option<String>,
    /// The sharing agreement reference(s) that permitted it (a move names the agreement
    /// of the organisation left, then of the one joined).
    pub agreement: Option<String>,
    /// The filter rule that decided it.
    pub rule: Option<String>,
    /// Why, for a removal (plan `reason`).
    pub reason: Option<String>,
    pub outcome: String,
}

/// A stored record, as `tansync audit export` prints it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub prev_hash: String,
    pub hash: String,
    #[serde(flatten)]
    pub entry: AuditEntry,
}

/// The chain's last record: its sequence number and hash (`0:GENESIS` when empty).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: String,
}

impl AuditHead {
    pub fn genesis() -> Self {
        Self {
            seq: 0,
            hash: GENESIS.to_string(),
        }
    }

    /// Parse the `seq:hash` form written to a run's row.
    pub fn parse(s: &str) -> Option<Self> {
        let (seq, hash) = s.split_once(':')?;
        let seq = seq.parse().ok().filter(|n: &i64| *n >= 0)?;
        Some(Self {
            seq,
            hash: hash.to_string(),
        })
    }
}

impl fmt::Display for AuditHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.seq, self.hash)
    }
}

/// The hash of a record: SHA-256 over the encoding tag, then each value length-prefixed
/// (a null is one 0 byte; a value is a 1 byte, its length as 8 bytes big-endian, its
/// bytes), in this order: previous hash, seq, at, run, fingerprint, kind, external_id,
/// ods_code, target_id, agreement, rule, reason, outcome. Lowercase hex.
pub fn record_hash(prev_hash: &str, seq: i64, e: &AuditEntry) -> String {
    fn put(h: &mut Sha256, v: Option<&str>) {
        match v {
            None => h.update([0u8]),
            Some(s) => {
                h.update([1u8]);
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
        }
    }
    let mut h = Sha256::new();
    h.update(ENCODING);
    let seq = seq.to_string();
    let run = e.run.to_string();
    for v in [
        Some(prev_hash),
        Some(seq.as_str()),
        Some(e.at.as_str()),
        Some(run.as_str()),
        Some(e.fingerprint.as_str()),
        Some(e.kind.as_str()),
        Some(e.external_id.as_str()),
        Some(e.ods_code.as_str()),
        e.target_id.as_deref(),
        e.agreement.as_deref(),
        e.rule.as_deref(),
        e.reason.as_deref(),
        Some(e.outcome.as_str()),
    ] {
        put(&mut h, v);
    }
    hex::encode(h.finalize())
}

/// Create the audit table and the runs' head column (called by `StateStore::open`).
pub(super) fn migrate(conn: &Connection) -> Result<(), StateError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS audit (
             seq INTEGER PRIMARY KEY,
             prev_hash TEXT NOT NULL,
             hash TEXT NOT NULL,
             at TEXT NOT NULL,
             run INTEGER NOT NULL,
             fingerprint TEXT NOT NULL,
             kind TEXT NOT NULL,
             external_id TEXT NOT NULL,
             ods_code TEXT NOT NULL,
             target_id TEXT,
             agreement TEXT,
             rule TEXT,
             reason TEXT,
             outcome TEXT NOT NULL
         );",
    )?;
    let has_head: bool = conn
        .prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = 'audit_head'")?
        .exists([])?;
    if !has_head {
        conn.execute_batch("ALTER TABLE runs ADD COLUMN audit_head TEXT")?;
    }
    Ok(())
}

const COLUMNS: &str = "seq, prev_hash, hash, at, run, fingerprint, kind, external_id, ods_code,
     target_id, agreement, rule, reason, outcome";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        seq: r.get(0)?,
        prev_hash: r.get(1)?,
        hash: r.get(2)?,
        entry: AuditEntry {
            at: r.get(3)?,
            run: r.get(4)?,
            fingerprint: r.get(5)?,
            kind: r.get(6)?,
            external_id: r.get(7)?,
            ods_code: r.get(8)?,
            target_id: r.get(9)?,
            agreement: r.get(10)?,
            rule: r.get(11)?,
            reason: r.get(12)?,
            outcome: r.get(13)?,
        },
    })
}

fn head(conn: &Connection) -> Result<AuditHead, StateError> {
    Ok(conn
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| {
                Ok(AuditHead {
                    seq: r.get(0)?,
                    hash: r.get(1)?,
                })
            },
        )
        .optional()?
        .unwrap_or_else(AuditHead::genesis))
}

impl StateStore {
    /// Append a record to the chain; returns the new head.
    pub fn append_audit(&self, e: &AuditEntry) -> Result<AuditHead, StateError> {
        let prev = head(&self.conn)?;
        let seq = prev.seq + 1;
        let hash = record_hash(&prev.hash, seq, e);
        self.conn.execute(
            &format!(
                "INSERT INTO audit ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"
            ),
            params![
                seq,
                prev.hash,
                hash,
                e.at,
                e.run,
                e.fingerprint,
                e.kind,
                e.external_id,
                e.ods_code,
                e.target_id,
                e.agreement,
                e.rule,
                e.reason,
                e.outcome
            ],
        )?;
        Ok(AuditHead { seq, hash })
    }

    /// Write an operation's final journal state (`settle`) and its audit record in one
    /// transaction: both or neither.
    pub fn settle_audited(
        &self,
        settle: impl FnOnce(&StateStore) -> Result<(), StateError>,
        e: &AuditEntry,
    ) -> Result<(), StateError> {
        let tx = self.conn.unchecked_transaction()?;
        settle(self)?;
        self.append_audit(e)?;
        tx.commit()?;
        Ok(())
    }

    /// The audit record of an operation an interrupted earlier run left unfinished,
    /// settled now with `outcome` (what permitted and decided it was not kept: only the
    /// run's plan fingerprint).
    pub fn reconciled_entry(
        &self,
        u: &super::Unfinished,
        outcome: &str,
        target_id: Option<&str>,
    ) -> Result<AuditEntry, StateError> {
        let fingerprint: Option<String> = self
            .conn
            .query_row(
                "SELECT fingerprint FROM runs WHERE id = ?1",
                params![u.run],
                |r| r.get(0),
            )
            .optional()?;
        Ok(AuditEntry {
            at: super::now(),
            run: u.run,
            fingerprint: fingerprint.unwrap_or_default(),
            kind: u.kind.clone(),
            external_id: u.external_id.clone(),
            ods_code: u.ods_code.clone(),
            target_id: target_id.map(String::from).or_else(|| u.target_id.clone()),
            outcome: outcome.to_string(),
            ..AuditEntry::default()
        })
    }

    /// The chain's current head.
    pub fn audit_head(&self) -> Result<AuditHead, StateError> {
        head(&self.conn)
    }

    /// Write the chain's current head to the run's row (when the run finishes).
    pub fn record_audit_head(&self, run: i64) -> Result<AuditHead, StateError> {
        let h = head(&self.conn)?;
        self.conn.execute(
            "UPDATE runs SET audit_head = ?1 WHERE id = ?2",
            params![h.to_string(), run],
        )?;
        Ok(h)
    }
}

/// The first bad record `verify` found, and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditBreak {
    pub seq: i64,
    pub problem: String,
}

impl fmt::Display for AuditBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {}: {}", self.seq, self.problem)
    }
}

/// What `verify` found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AuditVerification {
    /// Records checked (up to the first bad one).
    pub records: u64,
    /// Runs whose recorded head was checked against the chain.
    pub run_heads: u64,
    /// The last good record.
    pub head: AuditHead,
    /// `None`: the chain is intact.
    pub broken: Option<AuditBreak>,
}

impl History {
    /// Walk the chain in sequence order, checking each record's sequence number, link
    /// and hash, and each finished run's recorded head; stop at the first bad record.
    pub fn verify_audit(&self) -> Result<AuditVerification, StateError> {
        if !self.has_audit()? {
            // A state directory last written before the audit trail existed.
            return Ok(AuditVerification {
                records: 0,
                run_heads: 0,
                head: AuditHead::genesis(),
                broken: None,
            });
        }
        // One head per run: few enough to hold. Keyed by seq, in run order.
        let mut heads: std::collections::BTreeMap<i64, Vec<(i64, String)>> = Default::default();
        let mut bad_heads: Vec<(i64, String)> = Vec::new();
        {
            let mut st = self.conn.prepare(
                "SELECT id, audit_head FROM runs WHERE audit_head IS NOT NULL ORDER BY id",
            )?;
            let rows = st.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?;
            for r in rows {
                let (run, text) = r?;
                match AuditHead::parse(&text) {
                    Some(h) => heads.entry(h.seq).or_default().push((run, h.hash)),
                    None => bad_heads.push((run, text)),
                }
            }
        }
        let run_heads =
            heads.values().map(|v| v.len() as u64).sum::<u64>() + bad_heads.len() as u64;
        let mut out = AuditVerification {
            records: 0,
            run_heads,
            head: AuditHead::genesis(),
            broken: None,
        };
        if let Some((run, text)) = bad_heads.first() {
            out.broken = Some(AuditBreak {
                seq: 0,
                problem: format!("run {run}'s recorded audit head {text:?} is not seq:hash"),
            });
            return Ok(out);
        }
        // Runs that finished before the first record hold the genesis head.
        if let Some(b) = check_heads(heads.remove(&0), &out.head) {
            out.broken = Some(b);
            return Ok(out);
        }
        let mut st = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let rec = row(r)?;
            if let Some(b) = self.check_record(&rec, &out.head)? {
                out.broken = Some(b);
                return Ok(out);
            }
            out.records += 1;
            out.head = AuditHead {
                seq: rec.seq,
                hash: rec.hash,
            };
            if let Some(b) = check_heads(heads.remove(&out.head.seq), &out.head) {
                out.broken = Some(b);
                return Ok(out);
            }
        }
        // Heads beyond the chain's end: its tail was cut off.
        if let Some((seq, runs)) = heads.into_iter().next()
            && let Some((run, hash)) = runs.first()
        {
            out.broken = Some(AuditBreak {
                seq: out.head.seq + 1,
                problem: format!(
                    "missing: run {run} finished with the chain's head at {seq}:{hash}, but the chain ends at record {} (records removed from the end: truncated)",
                    out.head.seq
                ),
            });
        }
        Ok(out)
    }

    /// Does the database have the audit table and the runs' head column yet?
    fn has_audit(&self) -> Result<bool, StateError> {
        Ok(self
            .conn
            .prepare("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit'")?
            .exists([])?
            && self
                .conn
                .prepare("SELECT 1 FROM pragma_table_info('runs') WHERE name = 'audit_head'")?
                .exists([])?)
    }

    /// One record against the last good one (`prev`).
    fn check_record(
        &self,
        rec: &AuditRecord,
        prev: &AuditHead,
    ) -> Result<Option<AuditBreak>, StateError> {
        let want = prev.seq + 1;
        let bad = |seq: i64, problem: String| Ok(Some(AuditBreak { seq, problem }));
        if rec.seq != want {
            let range = if rec.seq - 1 == want {
                format!("record {want} is")
            } else {
                format!("records {want} to {} are", rec.seq - 1)
            };
            return bad(
                want,
                format!(
                    "missing: the chain goes from record {} to record {} ({range} gone: removed)",
                    prev.seq, rec.seq
                ),
            );
        }
        if rec.prev_hash != prev.hash {
            // Does it chain from some other record? Then the records were reordered.
            let from: Option<i64> = self
                .conn
                .query_row(
                    "SELECT seq FROM audit WHERE hash = ?1 AND seq <> ?2 ORDER BY seq LIMIT 1",
                    params![rec.prev_hash, rec.seq],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(k) = from {
                return bad(
                    rec.seq,
                    format!(
                        "out of order: it chains from record {k}, not from record {} (records reordered)",
                        prev.seq
                    ),
                );
            }
            if rec.hash == record_hash(&rec.prev_hash, rec.seq, &rec.entry) && prev.seq > 0 {
                // Consistent in itself, but chained from a hash the record before it no
                // longer has: that one was edited and its hash recomputed.
                return bad(
                    prev.seq,
                    format!(
                        "edited and re-hashed: record {} chains from hash {}, but record {} now has hash {}",
                        rec.seq, rec.prev_hash, prev.seq, prev.hash
                    ),
                );
            }
            return bad(
                rec.seq,
                format!(
                    "its previous hash {} is not record {}'s hash {} (edited)",
                    rec.prev_hash, prev.seq, prev.hash
                ),
            );
        }
        if rec.hash != record_hash(&rec.prev_hash, rec.seq, &rec.entry) {
            return bad(
                rec.seq,
                "hash mismatch: its fields are not the ones it was written with (edited)".into(),
            );
        }
        Ok(None)
    }

    /// Every record in sequence order, to `each` (for `tansync audit export`); returns
    /// how many there were.
    pub fn audit_records<E: From<StateError>>(
        &self,
        mut each: impl FnMut(&AuditRecord) -> Result<(), E>,
    ) -> Result<u64, E> {
        if !self.has_audit()? {
            return Ok(0);
        }
        let mut st = self
            .conn
            .prepare(&format!("SELECT {COLUMNS} FROM audit ORDER BY seq"))
            .map_err(StateError::from)?;
        let mut rows = st.query([]).map_err(StateError::from)?;
        let mut n = 0;
        while let Some(r) = rows.next().map_err(StateError::from)? {
            each(&row(r).map_err(StateError::from)?)?;
            n += 1;
        }
        Ok(n)
    }
}

/// Runs that recorded the head at this record's seq must have recorded this hash.
fn check_heads(runs: Option<Vec<(i64, String)>>, at: &AuditHead) -> Option<AuditBreak> {
    let (run, hash) = runs?.into_iter().find(|(_, h)| *h != at.hash)?;
    Some(AuditBreak {
        seq: at.seq,
        problem: format!(
            "not in the chain: run {run} finished with the chain's head at {}:{hash}, but record {} has hash {} (the chain was rewritten up to here)",
            at.seq, at.seq, at.hash
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(run: i64, n: u8) -> AuditEntry {
        AuditEntry {
            at: format!("2026-12-01T10:00:{n:02}Z"),
            run,
            fingerprint: "sha256:plan".into(),
            kind: "provision".into(),
            external_id: format!("00000000-0000-0000-0000-0000000000{n:02}"),
            ods_code: "RXA".into(),
            target_id: Some(format!("t{n}")),
            agreement: Some("SA-RXA".into()),
            rule: Some("staff".into()),
            reason: None,
            outcome: outcome::APPLIED.into(),
        }
    }

    /// A store with one finished run of `n` records (its head recorded), and a second
    /// run of `more` records still going.
    fn chain(n: u8, more: u8) -> (tempfile::TempDir, StateStore) {
        let d = tempfile::tempdir().unwrap();
        let s = StateStore::open(d.path()).unwrap();
        let run = s.begin_run("sync", "sha256:plan").unwrap();
        for i in 1..=n {
            s.append_audit(&entry(run, i)).unwrap();
        }
        s.finish_run(run, "ok").unwrap();
        s.record_audit_head(run).unwrap();
        let run = s.begin_run("sync", "sha256:plan").unwrap();
        for i in 1..=more {
            s.append_audit(&entry(run, n + i)).unwrap();
        }
        (d, s)
    }

    fn verify(d: &tempfile::TempDir) -> AuditVerification {
        History::open(d.path()).unwrap().verify_audit().unwrap()
    }

    fn broken(d: &tempfile::TempDir) -> AuditBreak {
        let v = verify(d);
        v.broken
            .clone()
            .unwrap_or_else(|| panic!("not detected: {v:?}"))
    }

    fn sql(s: &StateStore, q: &str) {
        s.conn.execute_batch(q).unwrap();
    }

    #[test]
    fn an_intact_chain_verifies_and_links_from_genesis() {
        let (d, s) = chain(3, 2);
        let v = verify(&d);
        assert_eq!(v.broken, None);
        assert_eq!((v.records, v.run_heads), (5, 1));
        assert_eq!(v.head, s.audit_head().unwrap());
        let mut recs = Vec::new();
        let n = History::open(d.path())
            .unwrap()
            .audit_records(|r| {
                recs.push(r.clone());
                Ok::<_, StateError>(())
            })
            .unwrap();
        assert_eq!(n, 5);
        assert_eq!(recs[0].prev_hash, GENESIS);
        assert_eq!(recs[0].seq, 1);
        for w in recs.windows(2) {
            assert_eq!(w[1].prev_hash, w[0].hash);
            assert_eq!(w[1].seq, w[0].seq + 1);
        }
        assert_eq!(recs[2].hash, record_hash(&recs[1].hash, 3, &entry(1, 3)));
        // The hash covers every field, absent and empty told apart.
        let base = entry(1, 1);
        let h = record_hash(GENESIS, 1, &base);
        let mut e = base.clone();
        e.reason = Some(String::new());
        assert_ne!(record_hash(GENESIS, 1, &e), h);
        let mut e = base.clone();
        e.outcome = outcome::FAILED.into();
        assert_ne!(record_hash(GENESIS, 1, &e), h);
        assert_ne!(record_hash(GENESIS, 2, &base), h);
        // The run's head is the chain's head when it finished.
        let head: String = s
            .conn
            .query_row("SELECT audit_head FROM runs WHERE id = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(AuditHead::parse(&head).unwrap().seq, 3);
    }

    #[test]
    fn an_empty_chain_verifies() {
        let d = tempfile::tempdir().unwrap();
        let s = StateStore::open(d.path()).unwrap();
        let run = s.begin_run("sync", "sha256:x").unwrap();
        assert_eq!(s.record_audit_head(run).unwrap(), AuditHead::genesis());
        let v = verify(&d);
        assert_eq!((v.records, v.run_heads, v.broken), (0, 1, None));
        // Opening again keeps the table and the column (the migration is idempotent).
        drop(s);
        StateStore::open(d.path()).unwrap();
    }

    #[test]
    fn an_edited_field_is_named() {
        let (d, s) = chain(3, 2);
        sql(&s, "UPDATE audit SET outcome = 'failed' WHERE seq = 2");
        let b = broken(&d);
        assert_eq!(b.seq, 2, "{b}");
        assert!(b.problem.contains("hash mismatch"), "{b}");
        assert!(b.problem.contains("edited"), "{b}");
    }

    #[test]
    fn an_edited_and_rehashed_record_is_named() {
        let (d, s) = chain(3, 2);
        let e = AuditEntry {
            outcome: "failed".into(),
            ..entry(1, 2)
        };
        let prev: String = s
            .conn
            .query_row("SELECT hash FROM audit WHERE seq = 1", [], |r| r.get(0))
            .unwrap();
        let h = record_hash(&prev, 2, &e);
        sql(
            &s,
            &format!("UPDATE audit SET outcome = 'failed', hash = '{h}' WHERE seq = 2"),
        );
        let b = broken(&d);
        assert_eq!(b.seq, 2, "{b}");
        assert!(b.problem.contains("re-hashed"), "{b}");
    }

    #[test]
    fn a_removed_middle_record_is_named() {
        let (d, s) = chain(3, 2);
        sql(&s, "DELETE FROM audit WHERE seq = 3");
        let b = broken(&d);
        assert_eq!(b.seq, 3, "{b}");
        assert!(b.problem.contains("missing"), "{b}");
        assert!(b.problem.contains("removed"), "{b}");
        // The first record too.
        let (d, s) = chain(3, 0);
        sql(&s, "DELETE FROM audit WHERE seq = 1");
        assert_eq!(broken(&d).seq, 1);
    }

    #[test]
    fn swapped_records_are_named() {
        let (d, s) = chain(3, 2);
        sql(
            &s,
            "UPDATE audit SET seq = -1 WHERE seq = 2;
             UPDATE audit SET seq = 2 WHERE seq = 3;
             UPDATE audit SET seq = 3 WHERE seq = -1;",
        );
        let b = broken(&d);
        assert_eq!(b.seq, 2, "{b}");
        assert!(b.problem.contains("out of order"), "{b}");
        assert!(b.problem.contains("reordered"), "{b}");
    }

    #[test]
    fn a_cut_tail_is_found_against_a_runs_head() {
        let (d, s) = chain(4, 0);
        // Consistent in itself, but run 1 finished at record 4.
        sql(&s, "DELETE FROM audit WHERE seq >= 3");
        let b = broken(&d);
        assert_eq!(b.seq, 3, "{b}");
        assert!(b.problem.contains("truncated"), "{b}");
        assert!(b.problem.contains("run 1"), "{b}");
        // All of it.
        sql(&s, "DELETE FROM audit");
        assert_eq!(broken(&d).seq, 1);
        // A tail cut and rewritten past the head: the head is not in the chain.
        let (d, s) = chain(2, 0);
        sql(&s, "DELETE FROM audit WHERE seq = 2");
        s.append_audit(&AuditEntry {
            outcome: "failed".into(),
            ..entry(1, 2)
        })
        .unwrap();
        let b = broken(&d);
        assert_eq!(b.seq, 2, "{b}");
        assert!(b.problem.contains("not in the chain"), "{b}");
    }

    #[test]
    fn a_settled_journal_row_and_its_record_go_together() {
        let d = tempfile::tempdir().unwrap();
        let s = StateStore::open(d.path()).unwrap();
        let run = s.begin_run("sync", "sha256:x").unwrap();
        let j = s.record(run, "provision", "x1", "RXA", None).unwrap();
        // The record cannot be written (a trigger stands in for a full disk):
        // the journal state is not written either.
        sql(
            &s,
            "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
        );
        let err = s
            .settle_audited(|s| s.done(j, Some("t1")), &entry(run, 1))
            .unwrap_err();
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(s.counts(run).unwrap(), vec![("pending".into(), 1)]);
        sql(&s, "DROP TRIGGER no_audit");
        s.settle_audited(|s| s.done(j, Some("t1")), &entry(run, 1))
            .unwrap();
        assert_eq!(s.counts(run).unwrap(), vec![("done".into(), 1)]);
        assert_eq!(s.audit_head().unwrap().seq, 1);
    }
}
