//! State store (SQLite): run history and the operation journal. Every operation is
//! recorded before it is sent and its outcome after, so a run interrupted at any point
//! (kill -9 included) can be reconciled on the next start. One writer at a time: the
//! state directory is locked for the life of the store.
//!
//! Never does: hold personal data beyond what an operation needs to be re-checked
//! (anchor, kind, organisation, target id); keep a lock after the process ends (the OS
//! drops the file lock with the process).

pub mod audit;
pub mod cycles;
pub mod portal;

use rusqlite::{Connection, OptionalExtension, params};
use std::fs::File;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {problem}")]
    Dir { path: String, problem: String },
    #[error(
        "state directory {0} is locked by another tansync process (one writer at a time); wait for it to finish"
    )]
    Locked(String),
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// Journal states of an operation.
pub mod op_state {
    /// Recorded, not yet sent.
    pub const PENDING: &str = "pending";
    /// A request is (or was, if we crashed) on the wire: its effect is unknown.
    pub const SENDING: &str = "sending";
    pub const DONE: &str = "done";
    pub const FAILED: &str = "failed";
    /// Never sent: the run stopped first.
    pub const NOT_SENT: &str = "not_sent";
    /// Settled by the next run: re-derived from the directory's state.
    pub const RECONCILED: &str = "reconciled";
}

/// An operation left unfinished by an earlier run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unfinished {
    pub id: i64,
    pub run: i64,
    pub kind: String,
    pub external_id: String,
    pub ods_code: String,
    pub target_id: Option<String>,
    pub state: String,
}

pub struct StateStore {
    conn: Connection,
    dir: PathBuf,
    _lock: File,
}

fn now() -> String {
    crate::timefmt::now_rfc3339()
}

impl StateStore {
    /// Open (creating if needed) the store in `dir` and take its lock.
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let d = dir.display().to_string();
        std::fs::create_dir_all(dir).map_err(|e| StateError::Dir {
            path: d.clone(),
            problem: e.to_string(),
        })?;
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join("lock"))
            .map_err(|e| StateError::Dir {
                path: d.clone(),
                problem: format!("cannot open the lock file: {e}"),
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Err(StateError::Locked(d)),
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(StateError::Dir {
                    path: d,
                    problem: format!("cannot lock: {e}"),
                });
            }
        }
        let conn = Connection::open(dir.join("tansync.db"))?;
        // WAL with NORMAL sync survives a killed process; only power loss can lose the
        // last commits, and the next plan re-reads the directory anyway.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS runs (
                 id INTEGER PRIMARY KEY,
                 started_at TEXT NOT NULL,
                 finished_at TEXT,
                 mode TEXT NOT NULL,
                 fingerprint TEXT NOT NULL,
                 status TEXT NOT NULL
             );
             CREATE TABLE IF NOT EXISTS journal (
                 id INTEGER PRIMARY KEY,
                 run INTEGER NOT NULL REFERENCES runs(id),
                 kind TEXT NOT NULL,
                 external_id TEXT NOT NULL,
                 ods_code TEXT NOT NULL,
                 target_id TEXT,
                 state TEXT NOT NULL,
                 attempts INTEGER NOT NULL DEFAULT 0,
                 error TEXT,
                 updated_at TEXT NOT NULL
             );
             CREATE INDEX IF NOT EXISTS journal_state ON journal(state);
             CREATE TABLE IF NOT EXISTS objects (
                 external_id TEXT PRIMARY KEY,
                 failures INTEGER NOT NULL DEFAULT 0,
                 last_error TEXT
             );",
        )?;
        audit::migrate(&conn)?;
        cycles::migrate(&conn)?;
        portal::migrate(&conn)?;
        Ok(Self {
            conn,
            dir: dir.to_path_buf(),
            _lock: lock,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn begin_run(&self, mode: &str, fingerprint: &str) -> Result<i64, StateError> {
        self.conn.execute(
            "INSERT INTO runs (started_at, mode, fingerprint, status) VALUES (?1, ?2, ?3, 'running')",
            params![now(), mode, fingerprint],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    pub fn finish_run(&self, run: i64, status: &str) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE runs SET finished_at = ?1, status = ?2 WHERE id = ?3",
            params![now(), status, run],
        )?;
        Ok(())
    }

    /// Record an operation before anything is sent for it.
    pub fn record(
        &self,
        run: i64,
        kind: &str,
        external_id: &str,
        ods_code: &str,
        target_id: Option<&str>,
    ) -> Result<i64, StateError> {
        self.conn.execute(
            "INSERT INTO journal (run, kind, external_id, ods_code, target_id, state, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?6)",
            params![run, kind, external_id, ods_code, target_id, now()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Just before a request goes on the wire.
    pub fn sending(&self, id: i64) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE journal SET state = 'sending', attempts = attempts + 1, updated_at = ?1 WHERE id = ?2",
            params![now(), id],
        )?;
        Ok(())
    }

    pub fn done(&self, id: i64, target_id: Option<&str>) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE journal SET state = 'done', target_id = COALESCE(?1, target_id), error = NULL, updated_at = ?2 WHERE id = ?3",
            params![target_id, now(), id],
        )?;
        self.conn.execute(
            "DELETE FROM objects WHERE external_id = (SELECT external_id FROM journal WHERE id = ?1)",
            params![id],
        )?;
        Ok(())
    }

    /// A final failure; counts towards the object's quarantine.
    pub fn failed(&self, id: i64, error: &str) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE journal SET state = 'failed', error = ?1, updated_at = ?2 WHERE id = ?3",
            params![error, now(), id],
        )?;
        self.conn.execute(
            "INSERT INTO objects (external_id, failures, last_error)
             SELECT external_id, 1, ?1 FROM journal WHERE id = ?2
             ON CONFLICT(external_id) DO UPDATE SET failures = failures + 1, last_error = ?1",
            params![error, id],
        )?;
        Ok(())
    }

    pub fn set_state(&self, id: i64, state: &str, note: Option<&str>) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE journal SET state = ?1, error = COALESCE(?2, error), updated_at = ?3 WHERE id = ?4",
            params![state, note, now(), id],
        )?;
        Ok(())
    }

    /// Operations earlier runs left pending or in flight (e.g. after kill -9).
    pub fn unfinished(&self) -> Result<Vec<Unfinished>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT id, run, kind, external_id, state, ods_code, target_id FROM journal
             WHERE state IN ('pending', 'sending') ORDER BY id",
        )?;
        let rows = st.query_map([], |r| {
            Ok(Unfinished {
                id: r.get(0)?,
                run: r.get(1)?,
                kind: r.get(2)?,
                external_id: r.get(3)?,
                state: r.get(4)?,
                ods_code: r.get(5)?,
                target_id: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Runs that never finished (the process died).
    pub fn close_abandoned_runs(&self, except: Option<i64>) -> Result<usize, StateError> {
        Ok(self.conn.execute(
            "UPDATE runs SET status = 'interrupted', finished_at = ?1
             WHERE status = 'running' AND id IS NOT ?2",
            params![now(), except],
        )?)
    }

    /// How many runs in a row this object has failed.
    pub fn failures(&self, external_id: &str) -> Result<u32, StateError> {
        Ok(self
            .conn
            .query_row(
                "SELECT failures FROM objects WHERE external_id = ?1",
                params![external_id],
                |r| r.get::<_, u32>(0),
            )
            .optional()?
            .unwrap_or(0))
    }

    /// Objects held back after repeated failures, with their last error.
    pub fn quarantined(&self, threshold: u32) -> Result<Vec<(String, u32, String)>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT external_id, failures, COALESCE(last_error, '') FROM objects
             WHERE failures >= ?1 ORDER BY external_id",
        )?;
        let rows = st.query_map(params![threshold], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Forget an object's failures (lifting its quarantine). True if it had any.
    pub fn clear_failures(&self, external_id: &str) -> Result<bool, StateError> {
        Ok(self.conn.execute(
            "DELETE FROM objects WHERE external_id = ?1",
            params![external_id],
        )? > 0)
    }

    /// Count journal rows by state for a run (for reports and tests).
    pub fn counts(&self, run: i64) -> Result<Vec<(String, u32)>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT state, COUNT(*) FROM journal WHERE run = ?1 GROUP BY state ORDER BY state",
        )?;
        let rows = st.query_map(params![run], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

/// One run, as `tansync history` shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RunSummary {
    pub id: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub mode: String,
    pub fingerprint: String,
    pub status: String,
    /// Journal rows by state (done, failed, not_sent, …).
    pub operations: std::collections::BTreeMap<String, u32>,
}

/// One journalled operation.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct JournalEntry {
    pub kind: String,
    pub external_id: String,
    pub ods_code: String,
    pub target_id: Option<String>,
    pub state: String,
    pub attempts: u32,
    pub error: Option<String>,
    pub updated_at: String,
}

/// The run history and journal, read-only and without the writer's lock, so it can be
/// looked at while a run is going on (SQLite's WAL lets a reader in beside the writer).
pub struct History {
    conn: Connection,
}

impl History {
    pub fn open(dir: &Path) -> Result<Self, StateError> {
        let db = dir.join("tansync.db");
        if !db.is_file() {
            return Err(StateError::Dir {
                path: dir.display().to_string(),
                problem: "no run history yet (nothing has been applied from here)".into(),
            });
        }
        let conn = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
        Ok(Self { conn })
    }

    /// The latest `limit` runs, newest first.
    pub fn runs(&self, limit: usize) -> Result<Vec<RunSummary>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT id, started_at, finished_at, mode, fingerprint, status FROM runs
             ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(RunSummary {
                id: r.get(0)?,
                started_at: r.get(1)?,
                finished_at: r.get(2)?,
                mode: r.get(3)?,
                fingerprint: r.get(4)?,
                status: r.get(5)?,
                operations: Default::default(),
            })
        })?;
        let mut runs: Vec<RunSummary> = rows.collect::<Result<_, _>>()?;
        let mut st = self
            .conn
            .prepare("SELECT state, COUNT(*) FROM journal WHERE run = ?1 GROUP BY state")?;
        for run in &mut runs {
            let counts = st.query_map(params![run.id], |r| Ok((r.get(0)?, r.get(1)?)))?;
            run.operations = counts.collect::<Result<_, _>>()?;
        }
        Ok(runs)
    }

    /// The operations of one run, in the order they were recorded.
    pub fn journal(&self, run: i64) -> Result<Vec<JournalEntry>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT kind, external_id, ods_code, target_id, state, attempts, error, updated_at
             FROM journal WHERE run = ?1 ORDER BY id",
        )?;
        let rows = st.query_map(params![run], |r| {
            Ok(JournalEntry {
                kind: r.get(0)?,
                external_id: r.get(1)?,
                ods_code: r.get(2)?,
                target_id: r.get(3)?,
                state: r.get(4)?,
                attempts: r.get(5)?,
                error: r.get(6)?,
                updated_at: r.get(7)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_lifecycle_lock_and_quarantine() {
        let d = tempfile::tempdir().unwrap();
        let s = StateStore::open(d.path()).unwrap();
        assert!(matches!(
            StateStore::open(d.path()),
            Err(StateError::Locked(_))
        ));
        let run = s.begin_run("apply", "sha256:x").unwrap();
        let a = s.record(run, "provision", "x1", "RXA", None).unwrap();
        let b = s.record(run, "update", "x2", "RXA", Some("t2")).unwrap();
        s.sending(a).unwrap();
        assert_eq!(s.unfinished().unwrap().len(), 2);
        s.done(a, Some("t1")).unwrap();
        s.failed(b, "HTTP 500").unwrap();
        assert!(s.unfinished().unwrap().is_empty());
        assert_eq!(s.failures("x2").unwrap(), 1);
        assert_eq!(s.quarantined(1).unwrap()[0].0, "x2");
        assert_eq!(
            s.counts(run).unwrap(),
            vec![("done".into(), 1), ("failed".into(), 1)]
        );
        drop(s);
        // The lock goes with the store.
        let s = StateStore::open(d.path()).unwrap();
        assert_eq!(s.close_abandoned_runs(None).unwrap(), 1);

        // The history reads beside the writer, without its lock.
        let h = History::open(d.path()).unwrap();
        let runs = h.runs(10).unwrap();
        assert_eq!(runs.len(), 1);
        assert_eq!(runs[0].status, "interrupted");
        assert_eq!(runs[0].operations.get("failed"), Some(&1));
        let j = h.journal(run).unwrap();
        assert_eq!(j.len(), 2);
        assert_eq!((j[0].state.as_str(), j[0].attempts), ("done", 1));
        assert_eq!(j[1].error.as_deref(), Some("HTTP 500"));
        let empty = tempfile::tempdir().unwrap();
        assert!(
            History::open(empty.path())
                .err()
                .unwrap()
                .to_string()
                .contains("no run history yet")
        );
    }
}
