//! Continuous mode's state: the watermark the next delta cycle starts from (with the
//! server it belongs to and the mode that saved it), one row per cycle (for `status` and
//! the full-reconcile cadence, which therefore survives restarts), the removals the
//! mass-change guard is holding, and the operator's approval of a held set.
//!
//! The watermark is written only by a cycle whose operations all settled; a failed cycle
//! leaves the old one, so the next cycle repeats from it.

use super::{History, StateError, StateStore};
use rusqlite::{Connection, OptionalExtension, params};

pub(super) fn migrate(conn: &Connection) -> Result<(), StateError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS cycles (
             id INTEGER PRIMARY KEY,
             kind TEXT NOT NULL,
             mode TEXT NOT NULL,
             started_at TEXT NOT NULL,
             started_unix INTEGER NOT NULL,
             finished_at TEXT,
             result TEXT NOT NULL,
             run INTEGER,
             note TEXT,
             operations INTEGER NOT NULL DEFAULT 0,
             failed INTEGER NOT NULL DEFAULT 0,
             blocked INTEGER NOT NULL DEFAULT 0,
             held INTEGER NOT NULL DEFAULT 0,
             held_digest TEXT
         );
         CREATE TABLE IF NOT EXISTS watermark (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             watermark TEXT NOT NULL,
             server TEXT NOT NULL,
             mode TEXT NOT NULL,
             cycle INTEGER NOT NULL,
             saved_at TEXT NOT NULL
         );
         CREATE TABLE IF NOT EXISTS held_removals (
             id INTEGER PRIMARY KEY CHECK (id = 1),
             digest TEXT NOT NULL,
             count INTEGER NOT NULL,
             items TEXT NOT NULL,
             since TEXT NOT NULL,
             approved_at TEXT
         );",
    )?;
    Ok(())
}

/// One finished cycle, as recorded.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct CycleRecord {
    pub id: i64,
    /// `full` or `delta`.
    pub kind: String,
    /// `active` or `standby`.
    pub mode: String,
    pub started_at: String,
    pub started_unix: i64,
    pub finished_at: Option<String>,
    /// `ok`, `partial`, `failed`, `standby`, `interrupted`.
    pub result: String,
    /// The run record (`tansync history`) of an active cycle that pushed.
    pub run: Option<i64>,
    /// Why the cycle was full, or why it failed.
    pub note: Option<String>,
    pub operations: i64,
    pub failed: i64,
    pub blocked: i64,
    pub held: i64,
    pub held_digest: Option<String>,
}

/// The saved watermark.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SavedWatermark {
    /// The source's watermark as JSON.
    pub watermark: String,
    pub server: String,
    pub mode: String,
    pub cycle: i64,
    pub saved_at: String,
}

/// The removals the guard is holding.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HeldSet {
    pub digest: String,
    pub count: i64,
    /// JSON array of the held (anchor, target id, reason).
    pub items: String,
    pub since: String,
    /// When `tansync approve-removals` approved this very set.
    pub approved_at: Option<String>,
}

impl StateStore {
    /// Record the start of a cycle; its id.
    pub fn begin_cycle(
        &self,
        kind: &str,
        mode: &str,
        started_unix: i64,
        note: Option<&str>,
    ) -> Result<i64, StateError> {
        self.conn.execute(
            "INSERT INTO cycles (kind, mode, started_at, started_unix, result, note)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5)",
            params![kind, mode, super::now(), started_unix, note],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Record how a cycle ended, and what kind it turned out to be (a delta the source
    /// could not serve ran as a full cycle).
    #[allow(clippy::too_many_arguments)]
    pub fn finish_cycle(
        &self,
        id: i64,
        kind: &str,
        result: &str,
        run: Option<i64>,
        note: Option<&str>,
        counts: CycleCounts,
        held_digest: Option<&str>,
    ) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE cycles SET finished_at = ?1, result = ?2, run = ?3, note = COALESCE(?4, note),
                 operations = ?5, failed = ?6, blocked = ?7, held = ?8, held_digest = ?9,
                 kind = ?11
             WHERE id = ?10",
            params![
                super::now(),
                result,
                run,
                note,
                counts.operations,
                counts.failed,
                counts.blocked,
                counts.held,
                held_digest,
                id,
                kind
            ],
        )?;
        Ok(())
    }

    /// Cycles a killed process left `running`.
    pub fn close_abandoned_cycles(&self) -> Result<usize, StateError> {
        Ok(self.conn.execute(
            "UPDATE cycles SET result = 'interrupted', finished_at = ?1 WHERE result = 'running'",
            params![super::now()],
        )?)
    }

    /// When (Unix seconds) the last full cycle that settled everything started.
    pub fn last_full_ok(&self) -> Result<Option<i64>, StateError> {
        Ok(self.conn.query_row(
            "SELECT MAX(started_unix) FROM cycles WHERE kind = 'full' AND result IN ('ok', 'standby')",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )?)
    }

    pub fn save_watermark(
        &self,
        watermark_json: &str,
        server: &str,
        mode: &str,
        cycle: i64,
    ) -> Result<(), StateError> {
        self.conn.execute(
            "INSERT INTO watermark (id, watermark, server, mode, cycle, saved_at)
             VALUES (1, ?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(id) DO UPDATE SET watermark = ?1, server = ?2, mode = ?3, cycle = ?4, saved_at = ?5",
            params![watermark_json, server, mode, cycle, super::now()],
        )?;
        Ok(())
    }

    pub fn clear_watermark(&self) -> Result<(), StateError> {
        self.conn.execute("DELETE FROM watermark", [])?;
        Ok(())
    }

    pub fn watermark(&self) -> Result<Option<SavedWatermark>, StateError> {
        read_watermark(&self.conn)
    }

    /// Replace the held set (keeping its approval only if the digest is unchanged), or
    /// clear it (`None`). True when the set appeared, changed or was cleared.
    pub fn set_held(&self, held: Option<(&str, i64, &str)>) -> Result<bool, StateError> {
        let old = read_held(&self.conn)?;
        match held {
            // Cleared (released, or nothing to hold any more) is news too.
            None => Ok(self.conn.execute("DELETE FROM held_removals", [])? > 0),
            Some((digest, _, _)) if old.as_ref().is_some_and(|o| o.digest == digest) => Ok(false),
            Some((digest, count, items)) => {
                self.conn.execute(
                    "INSERT INTO held_removals (id, digest, count, items, since, approved_at)
                     VALUES (1, ?1, ?2, ?3, ?4, NULL)
                     ON CONFLICT(id) DO UPDATE SET digest = ?1, count = ?2, items = ?3, since = ?4, approved_at = NULL",
                    params![digest, count, items, super::now()],
                )?;
                Ok(true)
            }
        }
    }

    pub fn held(&self) -> Result<Option<HeldSet>, StateError> {
        read_held(&self.conn)
    }

    /// Approve the held set whose digest is `digest`. `Err` text: why not (no set held,
    /// or another set is held now).
    pub fn approve_held(&self, digest: &str) -> Result<Result<HeldSet, String>, StateError> {
        let Some(h) = read_held(&self.conn)? else {
            return Ok(Err("no removals are held".into()));
        };
        if h.digest != digest {
            return Ok(Err(format!(
                "the removals held now have digest {} (not {digest}): the held set changed; check `tansync status` and approve the set it shows",
                h.digest
            )));
        }
        self.conn.execute(
            "UPDATE held_removals SET approved_at = ?1 WHERE id = 1",
            params![super::now()],
        )?;
        Ok(read_held(&self.conn)?.ok_or_else(|| "no removals are held".into()))
    }
}

/// A cycle's counts.
#[derive(Clone, Copy, Debug, Default)]
pub struct CycleCounts {
    pub operations: i64,
    pub failed: i64,
    pub blocked: i64,
    pub held: i64,
}

/// Approve the held set with this digest without the state directory's lock (a running
/// `tansync run` holds it; SQLite orders the two writers). `Err` text: why not.
pub fn approve_held_unlocked(
    dir: &std::path::Path,
    digest: &str,
) -> Result<Result<HeldSet, String>, StateError> {
    let db = dir.join("tansync.db");
    if !db.is_file() {
        return Ok(Err(format!(
            "no state in {} yet: nothing is held",
            dir.display()
        )));
    }
    let conn = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    let Some(h) = read_held(&conn)? else {
        return Ok(Err("no removals are held".into()));
    };
    if h.digest != digest {
        return Ok(Err(format!(
            "the removals held now have digest {} (not {digest}): the held set changed, so that approval would be void; check `tansync status` and approve the set it shows",
            h.digest
        )));
    }
    conn.execute(
        "UPDATE held_removals SET approved_at = ?1 WHERE id = 1 AND digest = ?2",
        params![super::now(), digest],
    )?;
    Ok(read_held(&conn)?.ok_or_else(|| "no removals are held".into()))
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

fn read_watermark(conn: &Connection) -> Result<Option<SavedWatermark>, StateError> {
    if !has_table(conn, "watermark")? {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT watermark, server, mode, cycle, saved_at FROM watermark WHERE id = 1",
            [],
            |r| {
                Ok(SavedWatermark {
                    watermark: r.get(0)?,
                    server: r.get(1)?,
                    mode: r.get(2)?,
                    cycle: r.get(3)?,
                    saved_at: r.get(4)?,
                })
            },
        )
        .optional()?)
}

fn read_held(conn: &Connection) -> Result<Option<HeldSet>, StateError> {
    if !has_table(conn, "held_removals")? {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT digest, count, items, since, approved_at FROM held_removals WHERE id = 1",
            [],
            |r| {
                Ok(HeldSet {
                    digest: r.get(0)?,
                    count: r.get(1)?,
                    items: r.get(2)?,
                    since: r.get(3)?,
                    approved_at: r.get(4)?,
                })
            },
        )
        .optional()?)
}

impl History {
    /// The latest `limit` cycles, newest first.
    pub fn cycles(&self, limit: usize) -> Result<Vec<CycleRecord>, StateError> {
        if !has_table(&self.conn, "cycles")? {
            return Ok(Vec::new());
        }
        let mut st = self.conn.prepare(
            "SELECT id, kind, mode, started_at, started_unix, finished_at, result, run, note,
                    operations, failed, blocked, held, held_digest
             FROM cycles ORDER BY id DESC LIMIT ?1",
        )?;
        let rows = st.query_map(params![i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
            Ok(CycleRecord {
                id: r.get(0)?,
                kind: r.get(1)?,
                mode: r.get(2)?,
                started_at: r.get(3)?,
                started_unix: r.get(4)?,
                finished_at: r.get(5)?,
                result: r.get(6)?,
                run: r.get(7)?,
                note: r.get(8)?,
                operations: r.get(9)?,
                failed: r.get(10)?,
                blocked: r.get(11)?,
                held: r.get(12)?,
                held_digest: r.get(13)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn watermark(&self) -> Result<Option<SavedWatermark>, StateError> {
        read_watermark(&self.conn)
    }

    pub fn held(&self) -> Result<Option<HeldSet>, StateError> {
        read_held(&self.conn)
    }

    /// Objects held back after `threshold` failures.
    pub fn quarantined(&self, threshold: u32) -> Result<Vec<(String, u32)>, StateError> {
        let mut st = self.conn.prepare(
            "SELECT external_id, failures FROM objects WHERE failures >= ?1 ORDER BY external_id",
        )?;
        let rows = st.query_map(params![threshold], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_cycles_and_held_sets_persist() {
        let d = tempfile::tempdir().unwrap();
        let s = StateStore::open(d.path()).unwrap();
        assert_eq!(s.watermark().unwrap(), None);
        assert_eq!(s.last_full_ok().unwrap(), None);
        let c = s
            .begin_cycle("full", "active", 100, Some("first cycle"))
            .unwrap();
        s.finish_cycle(c, "full", "ok", Some(1), None, CycleCounts::default(), None)
            .unwrap();
        let f = s.begin_cycle("full", "active", 200, None).unwrap();
        s.finish_cycle(
            f,
            "full",
            "failed",
            None,
            Some("down"),
            CycleCounts::default(),
            None,
        )
        .unwrap();
        assert_eq!(s.last_full_ok().unwrap(), Some(100));
        s.save_watermark("{}", "dc1", "active", c).unwrap();
        s.save_watermark("{\"p\":2}", "dc1", "active", c).unwrap();
        assert_eq!(s.watermark().unwrap().unwrap().watermark, "{\"p\":2}");

        assert!(s.set_held(Some(("sha256:a", 3, "[]"))).unwrap());
        assert!(!s.set_held(Some(("sha256:a", 3, "[]"))).unwrap());
        assert!(s.approve_held("sha256:b").unwrap().is_err());
        assert!(
            s.approve_held("sha256:a")
                .unwrap()
                .unwrap()
                .approved_at
                .is_some()
        );
        // Same set: the approval stands; a changed set voids it.
        s.set_held(Some(("sha256:a", 3, "[]"))).unwrap();
        assert!(s.held().unwrap().unwrap().approved_at.is_some());
        assert!(s.set_held(Some(("sha256:c", 4, "[]"))).unwrap());
        assert!(s.held().unwrap().unwrap().approved_at.is_none());
        drop(s);

        let h = History::open(d.path()).unwrap();
        let cycles = h.cycles(10).unwrap();
        assert_eq!(cycles.len(), 2);
        assert_eq!(
            (cycles[0].result.as_str(), cycles[1].kind.as_str()),
            ("failed", "full")
        );
        assert_eq!(h.watermark().unwrap().unwrap().server, "dc1");
        assert_eq!(h.held().unwrap().unwrap().digest, "sha256:c");
    }
}
