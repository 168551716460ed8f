//! The Portal bridge's journal: the bulk-upload batches written (`portal_batches`), each
//! row of each batch and what the evidence says happened to it (`portal_rows`), and the
//! worklist of what a CSV upload cannot do (`portal_tasks`).
//!
//! A batch is in flight from its export until none of its rows is still `exported`;
//! only then may the next one be written (one upload at a time). Rows hold the anchor,
//! kind, organisation, address and a digest of each value the row sets — never the
//! values themselves.
//!
//! Never does: write a batch's rows without its file, or the file without its rows
//! (both in one transaction, the file renamed into place before the commit and removed
//! if the commit fails).

use super::audit::AuditEntry;
use super::{StateError, StateStore, now};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;

/// What the evidence says about a row (`portal_rows.state`).
pub mod row_state {
    /// In a batch file; no evidence yet.
    pub const EXPORTED: &str = "exported";
    /// The results file says it succeeded; the next Mailbox Report is to confirm it.
    pub const REPORTED: &str = "reported";
    /// A Mailbox Report shows the Local ID with the values the row set.
    pub const CONFIRMED: &str = "confirmed";
    /// A Mailbox Report shows the Local ID, with other values than the row set (the
    /// account exists; the next plan corrects the values).
    pub const DIFFERS: &str = "differs";
    /// The evidence shows it was not applied (results file, or absent from a report
    /// taken after the export): a later plan may export it again.
    pub const FAILED: &str = "failed";
    /// The evidence contradicts itself; never exported again until a report settles it.
    pub const UNSETTLED: &str = "unsettled";
    /// The operator checked the Portal and found no such mailbox (`portal release`): a
    /// later plan may create it again.
    pub const RELEASED: &str = "released";
}

/// Worklist task states (`portal_tasks.state`).
pub mod task_state {
    pub const OPEN: &str = "open";
    /// A Mailbox Report shows it done.
    pub const CONFIRMED: &str = "confirmed";
    /// The latest plan no longer asks for it (and no report showed it done).
    pub const WITHDRAWN: &str = "withdrawn";
}

pub(super) fn migrate(conn: &Connection) -> Result<(), StateError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS portal_batches (
             id INTEGER PRIMARY KEY,
             run INTEGER NOT NULL,
             file TEXT NOT NULL,
             sha256 TEXT NOT NULL,
             fingerprint TEXT NOT NULL,
             exported_at TEXT NOT NULL,
             exported_ns INTEGER NOT NULL,
             report_sha TEXT NOT NULL,
             report_ns INTEGER NOT NULL,
             settled_at TEXT
         );
         CREATE TABLE IF NOT EXISTS portal_rows (
             batch INTEGER NOT NULL REFERENCES portal_batches(id),
             line INTEGER NOT NULL,
             kind TEXT NOT NULL,
             external_id TEXT NOT NULL,
             ods_code TEXT NOT NULL,
             target_id TEXT,
             expected TEXT NOT NULL,
             state TEXT NOT NULL,
             detail TEXT,
             updated_at TEXT NOT NULL,
             PRIMARY KEY (batch, line)
         );
         CREATE INDEX IF NOT EXISTS portal_rows_anchor ON portal_rows(external_id);
         CREATE TABLE IF NOT EXISTS portal_results (
             sha256 TEXT NOT NULL,
             batch INTEGER NOT NULL,
             file TEXT NOT NULL,
             fed_at TEXT NOT NULL,
             PRIMARY KEY (sha256, batch)
         );
         CREATE TABLE IF NOT EXISTS portal_tasks (
             id INTEGER PRIMARY KEY,
             run INTEGER NOT NULL,
             fingerprint TEXT NOT NULL,
             kind TEXT NOT NULL,
             external_id TEXT NOT NULL,
             ods_code TEXT NOT NULL,
             target_id TEXT NOT NULL,
             expected TEXT NOT NULL,
             detail TEXT NOT NULL,
             state TEXT NOT NULL,
             listed_at TEXT NOT NULL,
             settled_at TEXT
         );",
    )?;
    Ok(())
}

/// The digests of the values a row or task sets, by name (`None`: the value is to be
/// absent). Names are model field names plus `ods_code`, `status` and `local_id`.
pub type Expected = BTreeMap<String, Option<String>>;

/// A row to export.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewRow {
    pub kind: String,
    pub external_id: String,
    pub ods_code: String,
    pub target_id: Option<String>,
    pub expected: Expected,
}

/// A stored row.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Row {
    pub batch: i64,
    /// Its data row in the batch file (1 = the row after the header).
    pub line: u32,
    pub kind: String,
    pub external_id: String,
    pub ods_code: String,
    pub target_id: Option<String>,
    #[serde(skip)]
    pub expected: Expected,
    pub state: String,
    pub detail: Option<String>,
}

/// A stored batch.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Batch {
    pub id: i64,
    pub run: i64,
    /// The file's name in the output folder.
    pub file: String,
    pub sha256: String,
    pub fingerprint: String,
    pub exported_at: String,
    /// The batch file's modification time (ns since the epoch): a report counts as
    /// evidence for the batch only when its own file is no older (the same clock).
    #[serde(skip)]
    pub exported_ns: i64,
    /// The report the batch was planned from (its digest and modification time), which
    /// is never evidence about it.
    pub report_sha: String,
    #[serde(skip)]
    pub report_ns: i64,
    pub settled_at: Option<String>,
    pub rows: Vec<Row>,
}

impl Batch {
    /// Rows by state.
    pub fn counts(&self) -> BTreeMap<&str, usize> {
        let mut m = BTreeMap::new();
        for r in &self.rows {
            *m.entry(r.state.as_str()).or_insert(0) += 1;
        }
        m
    }
}

/// A worklist task.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Task {
    pub id: i64,
    pub run: i64,
    pub fingerprint: String,
    pub kind: String,
    pub external_id: String,
    pub ods_code: String,
    pub target_id: String,
    #[serde(skip)]
    pub expected: Expected,
    pub detail: String,
    pub state: String,
    pub listed_at: String,
    pub settled_at: Option<String>,
}

/// A new state for a row, and the audit record that says so.
#[derive(Clone, Debug)]
pub struct RowChange {
    pub batch: i64,
    pub line: u32,
    pub state: &'static str,
    pub detail: Option<String>,
    pub audit: AuditEntry,
}

/// A new state for a task, with its audit record.
#[derive(Clone, Debug)]
pub struct TaskChange {
    pub id: i64,
    pub state: &'static str,
    pub audit: AuditEntry,
}

/// A task to list, with its audit record.
#[derive(Clone, Debug)]
pub struct NewTask {
    pub kind: String,
    pub external_id: String,
    pub ods_code: String,
    pub target_id: String,
    pub expected: Expected,
    pub detail: String,
    pub audit: AuditEntry,
}

fn expected_json(e: &Expected) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| "{}".into())
}

fn parse_expected(s: &str) -> Expected {
    serde_json::from_str(s).unwrap_or_default()
}

/// Read a batch's rows.
fn rows_of(conn: &Connection, batch: i64) -> Result<Vec<Row>, StateError> {
    let mut st = conn.prepare(
        "SELECT batch, line, kind, external_id, ods_code, target_id, expected, state, detail
         FROM portal_rows WHERE batch = ?1 ORDER BY line",
    )?;
    let rows = st.query_map(params![batch], |r| {
        Ok(Row {
            batch: r.get(0)?,
            line: r.get(1)?,
            kind: r.get(2)?,
            external_id: r.get(3)?,
            ods_code: r.get(4)?,
            target_id: r.get(5)?,
            expected: parse_expected(&r.get::<_, String>(6)?),
            state: r.get(7)?,
            detail: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Batches, newest first (`limit`: how many; all with `None`).
pub(super) fn batches(conn: &Connection, limit: Option<usize>) -> Result<Vec<Batch>, StateError> {
    let limit = limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
    let mut st = conn.prepare(
        "SELECT id, run, file, sha256, fingerprint, exported_at, exported_ns, report_sha,
                report_ns, settled_at
         FROM portal_batches ORDER BY id DESC LIMIT ?1",
    )?;
    let heads = st
        .query_map(params![limit], |r| {
            Ok(Batch {
                id: r.get(0)?,
                run: r.get(1)?,
                file: r.get(2)?,
                sha256: r.get(3)?,
                fingerprint: r.get(4)?,
                exported_at: r.get(5)?,
                exported_ns: r.get(6)?,
                report_sha: r.get(7)?,
                report_ns: r.get(8)?,
                settled_at: r.get(9)?,
                rows: Vec::new(),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    heads
        .into_iter()
        .map(|mut b| {
            b.rows = rows_of(conn, b.id)?;
            Ok(b)
        })
        .collect()
}

pub(super) fn tasks(conn: &Connection, state: Option<&str>) -> Result<Vec<Task>, StateError> {
    let mut st = conn.prepare(
        "SELECT id, run, fingerprint, kind, external_id, ods_code, target_id, expected, detail,
                state, listed_at, settled_at
         FROM portal_tasks WHERE ?1 IS NULL OR state = ?1 ORDER BY id",
    )?;
    let rows = st.query_map(params![state], |r| {
        Ok(Task {
            id: r.get(0)?,
            run: r.get(1)?,
            fingerprint: r.get(2)?,
            kind: r.get(3)?,
            external_id: r.get(4)?,
            ods_code: r.get(5)?,
            target_id: r.get(6)?,
            expected: parse_expected(&r.get::<_, String>(7)?),
            detail: r.get(8)?,
            state: r.get(9)?,
            listed_at: r.get(10)?,
            settled_at: r.get(11)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

impl StateStore {
    /// Every batch, newest first.
    pub fn portal_batches(&self) -> Result<Vec<Batch>, StateError> {
        batches(&self.conn, None)
    }

    /// The batch in flight (a row still `exported`), if any.
    pub fn portal_in_flight(&self) -> Result<Option<Batch>, StateError> {
        let id: Option<i64> = self
            .conn
            .query_row(
                "SELECT id FROM portal_batches WHERE settled_at IS NULL ORDER BY id LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match id {
            None => None,
            Some(id) => batches(&self.conn, None)?.into_iter().find(|b| b.id == id),
        })
    }

    /// Record batch `id` and its rows as `exported`, with their audit records, around
    /// `write`, which puts the file in place and returns its modification time (ns):
    /// the rows are committed only if it succeeded, and if the commit fails `undo`
    /// removes the file again. `report` is the report planned from (digest, mtime ns).
    #[allow(clippy::too_many_arguments)]
    pub fn portal_export<E>(
        &self,
        id: i64,
        run: i64,
        file: &str,
        sha256: &str,
        fingerprint: &str,
        report: (&str, i64),
        rows: &[NewRow],
        audits: &[AuditEntry],
        write: impl FnOnce() -> Result<i64, E>,
        undo: impl FnOnce(),
    ) -> Result<Result<i64, E>, StateError> {
        let tx = self.conn.unchecked_transaction()?;
        self.conn.execute(
            "INSERT INTO portal_batches (id, run, file, sha256, fingerprint, exported_at,
                                         exported_ns, report_sha, report_ns)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 0, ?7, ?8)",
            params![
                id,
                run,
                file,
                sha256,
                fingerprint,
                now(),
                report.0,
                report.1
            ],
        )?;
        for (i, r) in rows.iter().enumerate() {
            self.conn.execute(
                "INSERT INTO portal_rows (batch, line, kind, external_id, ods_code, target_id,
                                          expected, state, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'exported', ?8)",
                params![
                    id,
                    i64::try_from(i + 1).unwrap_or(i64::MAX),
                    r.kind,
                    r.external_id,
                    r.ods_code,
                    r.target_id,
                    expected_json(&r.expected),
                    now()
                ],
            )?;
        }
        for a in audits {
            self.append_audit(a)?;
        }
        let mtime = match write() {
            Ok(t) => t,
            // Dropping the transaction rolls it back.
            Err(e) => return Ok(Err(e)),
        };
        let done = self
            .conn
            .execute(
                "UPDATE portal_batches SET exported_ns = ?1 WHERE id = ?2",
                params![mtime, id],
            )
            .and_then(|_| tx.commit());
        if let Err(e) = done {
            undo();
            return Err(e.into());
        }
        Ok(Ok(id))
    }

    /// Settle rows and tasks from evidence, list new tasks, with their audit records, in
    /// one transaction; a batch none of whose rows is still `exported` is settled.
    /// `fed`: the results file this settles from (digest, batch, file name), recorded so
    /// that the same file is never applied twice.
    #[allow(clippy::too_many_arguments)]
    pub fn portal_settle(
        &self,
        rows: &[RowChange],
        tasks: &[TaskChange],
        new_tasks: &[NewTask],
        run: i64,
        fingerprint: &str,
        fed: Option<(&str, i64, &str)>,
    ) -> Result<(), StateError> {
        let tx = self.conn.unchecked_transaction()?;
        let at = now();
        if let Some((sha, batch, file)) = fed {
            self.conn.execute(
                "INSERT INTO portal_results (sha256, batch, file, fed_at) VALUES (?1, ?2, ?3, ?4)",
                params![sha, batch, file, at],
            )?;
        }
        for c in rows {
            self.conn.execute(
                "UPDATE portal_rows SET state = ?1, detail = ?2, updated_at = ?3
                 WHERE batch = ?4 AND line = ?5",
                params![c.state, c.detail, at, c.batch, c.line],
            )?;
            self.append_audit(&c.audit)?;
        }
        self.conn.execute(
            "UPDATE portal_batches SET settled_at = ?1
             WHERE settled_at IS NULL AND NOT EXISTS (
                 SELECT 1 FROM portal_rows r WHERE r.batch = portal_batches.id AND r.state = 'exported')",
            params![at],
        )?;
        for c in tasks {
            self.conn.execute(
                "UPDATE portal_tasks SET state = ?1, settled_at = ?2 WHERE id = ?3",
                params![c.state, at, c.id],
            )?;
            self.append_audit(&c.audit)?;
        }
        for t in new_tasks {
            self.conn.execute(
                "INSERT INTO portal_tasks (run, fingerprint, kind, external_id, ods_code, target_id,
                                           expected, detail, state, listed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'open', ?9)",
                params![
                    run,
                    fingerprint,
                    t.kind,
                    t.external_id,
                    t.ods_code,
                    t.target_id,
                    expected_json(&t.expected),
                    t.detail,
                    at
                ],
            )?;
            self.append_audit(&t.audit)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// When a results file with this digest already settled `batch`, and its name then.
    pub fn portal_results_fed(
        &self,
        sha256: &str,
        batch: i64,
    ) -> Result<Option<(String, String)>, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT file, fed_at FROM portal_results WHERE sha256 = ?1 AND batch = ?2",
                params![sha256, batch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    /// Worklist tasks (`state`: only those in it).
    pub fn portal_tasks(&self, state: Option<&str>) -> Result<Vec<Task>, StateError> {
        tasks(&self.conn, state)
    }
}

impl super::History {
    /// Every batch, newest first (for `status`, beside a running daemon).
    pub fn portal_batches(&self) -> Result<Vec<Batch>, StateError> {
        if !has_table(&self.conn, "portal_batches")? {
            return Ok(Vec::new());
        }
        batches(&self.conn, None)
    }

    /// Open worklist tasks.
    pub fn portal_open_tasks(&self) -> Result<Vec<Task>, StateError> {
        if !has_table(&self.conn, "portal_tasks")? {
            return Ok(Vec::new());
        }
        tasks(&self.conn, Some(task_state::OPEN))
    }
}

fn has_table(conn: &Connection, name: &str) -> Result<bool, StateError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
            params![name],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(x: &str) -> NewRow {
        NewRow {
            kind: "provision".into(),
            external_id: x.into(),
            ods_code: "RXA".into(),
            target_id: None,
            expected: [("given_name".to_string(), Some("ab12".to_string()))].into(),
        }
    }

    fn audit(x: &str, outcome: &str) -> AuditEntry {
        AuditEntry {
            at: now(),
            kind: "provision".into(),
            external_id: x.into(),
            ods_code: "RXA".into(),
            outcome: outcome.into(),
            ..AuditEntry::default()
        }
    }

    #[test]
    fn a_batch_is_in_flight_until_no_row_is_exported_and_a_failed_write_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = StateStore::open(dir.path()).unwrap();
        let run = s.begin_run("apply", "sha256:f").unwrap();
        // The file could not be written: nothing recorded.
        let r = s
            .portal_export(
                1,
                run,
                "batch-0001.csv",
                "sha256:x",
                "sha256:f",
                ("sha256:r", 1),
                &[row("a")],
                &[audit("a", "exported")],
                || Err("disk full"),
                || {},
            )
            .unwrap();
        assert_eq!(r, Err("disk full"));
        assert!(s.portal_batches().unwrap().is_empty());
        assert_eq!(s.audit_head().unwrap().seq, 0);

        let b = s
            .portal_export(
                1,
                run,
                "batch-0001.csv",
                "sha256:x",
                "sha256:f",
                ("sha256:r", 1),
                &[row("a"), row("b")],
                &[audit("a", "exported"), audit("b", "exported")],
                || Ok::<_, ()>(5),
                || {},
            )
            .unwrap()
            .unwrap();
        let f = s.portal_in_flight().unwrap().unwrap();
        assert_eq!((f.id, f.rows.len(), f.exported_ns), (b, 2, 5));
        assert_eq!(f.rows[1].line, 2);
        assert_eq!(f.rows[0].expected, row("a").expected);

        let change = |line, state| RowChange {
            batch: b,
            line,
            state,
            detail: None,
            audit: audit("a", state),
        };
        s.portal_settle(
            &[change(1, row_state::CONFIRMED)],
            &[],
            &[],
            run,
            "sha256:f",
            Some(("sha256:results", b, "results.csv")),
        )
        .unwrap();
        assert!(s.portal_results_fed("sha256:results", b).unwrap().is_some());
        assert!(
            s.portal_results_fed("sha256:results", b + 1)
                .unwrap()
                .is_none()
        );
        assert!(s.portal_results_fed("sha256:other", b).unwrap().is_none());
        assert!(
            s.portal_in_flight().unwrap().is_some(),
            "row 2 is still exported"
        );
        s.portal_settle(
            &[change(2, row_state::FAILED)],
            &[],
            &[],
            run,
            "sha256:f",
            None,
        )
        .unwrap();
        assert!(s.portal_in_flight().unwrap().is_none());
        let batches = s.portal_batches().unwrap();
        assert_eq!(batches[0].rows[1].state, row_state::FAILED);
        assert_eq!(s.audit_head().unwrap().seq, 4);
        let v = crate::state::History::open(dir.path())
            .unwrap()
            .verify_audit()
            .unwrap();
        assert!(v.broken.is_none());
    }
}
