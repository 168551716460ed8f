//! The local copy of the directory's state a delta cycle plans against, so that it
//! reads only the changed people's accounts (by `externalId`) instead of every account,
//! and costs what the change costs, not what the directory holds.
//!
//! Kept in the state directory as `directory-cache.db` (SQLite, one row per account, its
//! body in the snapshot format's JSON). Written whole by every full cycle (the state it
//! read); after every cycle the accounts of the anchors it touched (its operations, and
//! the changed people a delta looked up) are read again from the directory and replace
//! theirs in it, so it stays consistent with what was applied. A delta cycle plans
//! against a [`Cache::partial`] state: the changed people's accounts, the unanchored
//! accounts a soft match of theirs could join, the organisation registry, and a
//! [`Census`] of every account for the guards that count (caps, the mass-removal
//! percentage). Missing, of another format, unreadable, or not refreshed after a cycle
//! (a failed lookup): removed, and the next cycle is full. Not written while the
//! directory refuses an organisation's accounts (the cache cannot say so): every cycle
//! is then full.
//!
//! What it cannot see: changes other agents or administrators make in the directory
//! between full cycles, to accounts of people who did not change in AD. The
//! organisation registry and per-organisation account counts (caps) come from it, so
//! they are as old as the last full cycle for the organisations nobody changed in; the
//! directory enforces its caps itself.
//!
//! Why SQLite rather than the snapshot JSON the cache used to be: at 100,000 accounts,
//! loading and rewriting the 51 MB document took 0.5 s of a 0.93 s delta cycle (perf,
//! `DELTA_PERF=1 bash bench/delta.sh`); a delta now reads and writes only its rows.

use crate::diff;
use crate::ids::{ExternalId, OdsCode};
use crate::plan::MatchKey;
use crate::target::{Account, Census, TargetState};
use nhs_model::org::Organisation;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The cache's layout; another value (an older agent's) is not read.
const FORMAT: &str = "tansync.directory-cache/v1";

const SCHEMA: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE organisations (ods_code TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE accounts (
    target_id  TEXT PRIMARY KEY,
    anchor     TEXT,
    anchored   INTEGER NOT NULL,
    ods_code   TEXT NOT NULL,
    live       INTEGER NOT NULL,
    managed_by TEXT,
    -- Set for the accounts a soft match may join (diff::is_join_candidate): the values
    -- it compares (diff::account_match_values).
    join_employee_id TEXT,
    join_email       TEXT,
    body       TEXT NOT NULL
);
CREATE INDEX accounts_by_anchor ON accounts (anchor);
CREATE INDEX accounts_by_join_employee_id ON accounts (join_employee_id)
    WHERE join_employee_id IS NOT NULL;
CREATE INDEX accounts_by_join_email ON accounts (join_email) WHERE join_email IS NOT NULL;
CREATE INDEX accounts_census ON accounts (ods_code, live, anchored, managed_by);
";

fn path(dir: &Path) -> PathBuf {
    dir.join("directory-cache.db")
}

/// The snapshot-format file earlier versions kept; removed with the cache.
fn legacy_path(dir: &Path) -> PathBuf {
    dir.join("directory-cache.json")
}

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("directory cache: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("directory cache: an account or organisation cannot be read: {0}")]
    Body(#[from] serde_json::Error),
    #[error("directory cache: {0}")]
    Io(#[from] std::io::Error),
    #[error("directory cache: a stored ODS code is not valid: {0}")]
    Ods(String),
}

/// An open, usable cache.
pub struct Cache {
    conn: Connection,
}

impl Cache {
    /// The cache, if there is a usable one (of this format).
    pub fn open(dir: &Path) -> Option<Cache> {
        let p = path(dir);
        if !p.exists() {
            return None;
        }
        let opened =
            Connection::open_with_flags(&p, OpenFlags::SQLITE_OPEN_READ_WRITE).and_then(|conn| {
                let format: Option<String> = conn
                    .query_row("SELECT value FROM meta WHERE key = 'format'", [], |r| {
                        r.get(0)
                    })
                    .optional()?;
                Ok((conn, format))
            });
        match opened {
            Ok((conn, Some(f))) if f == FORMAT => Some(Cache { conn }),
            Ok((_, other)) => {
                tracing::info!(format = ?other, "the directory cache is of another format; the next cycle is full");
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "the directory cache cannot be read; the next cycle is full");
                None
            }
        }
    }

    /// Replace the accounts holding `anchors` (and any account `fresh` holds, by id)
    /// with `fresh`: what the directory holds for those anchors now. One transaction.
    pub fn replace(
        &mut self,
        anchors: &BTreeSet<ExternalId>,
        fresh: &[Account],
    ) -> Result<(), CacheError> {
        let tx = self.conn.transaction()?;
        {
            let mut by_anchor = tx.prepare_cached("DELETE FROM accounts WHERE anchor = ?1")?;
            for x in anchors {
                by_anchor.execute([x.as_str()])?;
            }
            let mut by_id = tx.prepare_cached("DELETE FROM accounts WHERE target_id = ?1")?;
            for a in fresh {
                by_id.execute([a.target_id.as_str()])?;
            }
            insert_accounts(&tx, fresh)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The state a delta cycle plans against: the accounts holding `anchors`, the
    /// accounts a soft match may join that match one of `join` (key and value, as
    /// [`diff::person_match_value`] gives them for the changed people), the organisation
    /// registry, and the census of every account (see [`Census`]).
    pub fn partial(
        &self,
        anchors: &BTreeSet<ExternalId>,
        join: &BTreeSet<(MatchKey, String)>,
        agent_id: &str,
    ) -> Result<TargetState, CacheError> {
        let mut bodies: BTreeMap<String, String> = BTreeMap::new();
        let mut collect = |sql: &str, value: &str| -> Result<(), CacheError> {
            let mut stmt = self.conn.prepare_cached(sql)?;
            let mut rows = stmt.query([value])?;
            while let Some(r) = rows.next()? {
                bodies.insert(r.get(0)?, r.get(1)?);
            }
            Ok(())
        };
        for x in anchors {
            collect(
                "SELECT target_id, body FROM accounts WHERE anchor = ?1",
                x.as_str(),
            )?;
        }
        for (key, v) in join {
            let sql = match key {
                MatchKey::EmployeeId => {
                    "SELECT target_id, body FROM accounts WHERE join_employee_id = ?1"
                }
                MatchKey::Email => "SELECT target_id, body FROM accounts WHERE join_email = ?1",
            };
            collect(sql, v)?;
        }
        let mut accounts = Vec::with_capacity(bodies.len());
        for body in bodies.values() {
            accounts.push(serde_json::from_str::<Account>(body)?);
        }
        let mut organisations = BTreeMap::new();
        let mut orgs = self
            .conn
            .prepare_cached("SELECT body FROM organisations ORDER BY ods_code")?;
        let mut rows = orgs.query([])?;
        while let Some(r) = rows.next()? {
            let o: Organisation = serde_json::from_str(&r.get::<_, String>(0)?)?;
            organisations.insert(o.ods_code.clone(), o);
        }
        Ok(TargetState {
            organisations,
            accounts,
            refused: BTreeMap::new(),
            census: Some(self.census(agent_id)?),
        })
    }

    /// Counts over every cached account, through the census index (no account bodies
    /// are read).
    fn census(&self, agent_id: &str) -> Result<Census, CacheError> {
        // Grouped by the census index's columns, in its order: an index scan, no sort.
        let mut stmt = self.conn.prepare_cached(
            "SELECT ods_code, live, anchored, managed_by, COUNT(*) FROM accounts
             GROUP BY ods_code, live, anchored, managed_by",
        )?;
        let mut census = Census::default();
        let mut rows = stmt.query([])?;
        while let Some(r) = rows.next()? {
            let ods = ods_of(r.get::<_, String>(0)?)?;
            let (live, anchored, by, n): (bool, bool, Option<String>, u32) =
                (r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?);
            if live {
                *census.held.entry(ods.clone()).or_default() += n;
            }
            if anchored && by.as_deref() == Some(agent_id) {
                *census.managed.entry(ods).or_default() += n;
            }
        }
        Ok(census)
    }
}

fn ods_of(s: String) -> Result<OdsCode, CacheError> {
    OdsCode::parse(&s).map_err(|e| CacheError::Ods(e.to_string()))
}

fn insert_accounts(conn: &Connection, accounts: &[Account]) -> Result<(), CacheError> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO accounts (target_id, anchor, anchored, ods_code, live, managed_by,
                               join_employee_id, join_email, body)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    for a in accounts {
        let (mut employee_id, mut email) = (None, None);
        if diff::is_join_candidate(a) {
            for (key, v) in diff::account_match_values(a) {
                match key {
                    MatchKey::EmployeeId => employee_id = Some(v),
                    MatchKey::Email => email = Some(v),
                }
            }
        }
        stmt.execute(params![
            a.target_id.as_str(),
            a.external_id.as_ref().map(ExternalId::as_str),
            a.external_id.is_some(),
            a.ods_code.as_str(),
            a.status != crate::target::Status::Deleted,
            a.managed_by,
            employee_id,
            email,
            serde_json::to_string(a)?,
        ])?;
    }
    Ok(())
}

/// Replace the cache with `state` (or remove it, when it cannot hold it). Written to a
/// new file and renamed over the old one: a reader sees the old cache or the new.
pub fn save(dir: &Path, state: &TargetState) {
    if !state.refused.is_empty() || state.census.is_some() {
        // A refused organisation's accounts are unknown; a partial state is not all.
        forget(dir);
        return;
    }
    if let Err(e) = write(dir, state) {
        tracing::warn!(error = %e, "cannot write the directory cache; the next cycle is full");
        forget(dir);
    }
}

fn write(dir: &Path, state: &TargetState) -> Result<(), CacheError> {
    let tmp = dir.join("directory-cache.db.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut conn = Connection::open(&tmp)?;
    // It holds names and addresses: the agent's own, like the journal.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
    let tx = conn.transaction()?;
    tx.execute_batch(SCHEMA)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('format', ?1), ('taken_at', ?2)",
        params![FORMAT, crate::timefmt::now_rfc3339()],
    )?;
    {
        let mut stmt = tx.prepare("INSERT INTO organisations (ods_code, body) VALUES (?1, ?2)")?;
        for o in state.organisations.values() {
            stmt.execute(params![o.ods_code.as_str(), serde_json::to_string(o)?])?;
        }
    }
    insert_accounts(&tx, &state.accounts)?;
    tx.commit()?;
    drop(conn);
    // Durable before it replaces the old cache.
    std::fs::File::open(&tmp)?.sync_all()?;
    std::fs::rename(&tmp, path(dir))?;
    let _ = std::fs::remove_file(legacy_path(dir));
    Ok(())
}

/// Remove the cache: the next cycle is full.
pub fn forget(dir: &Path) {
    let _ = std::fs::remove_file(path(dir));
    let _ = std::fs::remove_file(legacy_path(dir));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::TargetId;
    use crate::target::Status;
    use nhs_model::org::OrgKind;

    const AGENT: &str = "agent-1";

    fn xid(n: u32) -> ExternalId {
        ExternalId::parse(&format!("00000000-0000-0000-0000-{n:012}")).unwrap()
    }

    fn account(n: u32, ods: &str, anchored: bool, status: Status, by: Option<&str>) -> Account {
        Account {
            target_id: TargetId::parse(&format!("t{n:03}")).unwrap(),
            external_id: anchored.then(|| xid(n)),
            ods_code: OdsCode::parse(ods).unwrap(),
            status,
            managed_by: by.map(String::from),
            email: Some(format!("p{n}@nhs.net")),
            leaver_since: None,
            attributes: [(crate::model::Field::GivenName, format!("Given {n}"))].into(),
            etag: Some(format!("W/\"{n}\"")),
        }
    }

    fn state() -> TargetState {
        let org = |c: &str| Organisation {
            ods_code: OdsCode::parse(c).unwrap(),
            name: format!("Org {c}"),
            kind: OrgKind::Trust,
            open: true,
            cap: Some(10),
        };
        TargetState {
            organisations: [("RXA", org("RXA")), ("RXB", org("RXB"))]
                .into_iter()
                .map(|(c, o)| (OdsCode::parse(c).unwrap(), o))
                .collect(),
            accounts: vec![
                account(1, "RXA", true, Status::Active, Some(AGENT)),
                account(2, "RXA", true, Status::Leaver, Some(AGENT)),
                account(3, "RXA", true, Status::Deleted, Some(AGENT)),
                account(4, "RXA", true, Status::Active, Some("another-agent")),
                account(5, "RXB", false, Status::Active, None),
                account(6, "RXB", false, Status::Deleted, None),
                account(7, "RXB", true, Status::Active, Some(AGENT)),
            ],
            refused: BTreeMap::new(),
            census: None,
        }
    }

    fn anchors(ns: &[u32]) -> BTreeSet<ExternalId> {
        ns.iter().copied().map(xid).collect()
    }

    fn ids(s: &TargetState) -> Vec<&str> {
        s.accounts.iter().map(|a| a.target_id.as_str()).collect()
    }

    #[test]
    fn a_partial_state_holds_the_asked_and_unanchored_accounts_and_counts_them_all() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &state());
        let cache = Cache::open(dir.path()).unwrap();
        // Unanchored 5 (p5@nhs.net) and 6 (deleted) could be joined by e-mail; only 5
        // is a candidate. Nothing has employee id "p6@nhs.net".
        let join = [
            (MatchKey::Email, "p5@nhs.net".to_string()),
            (MatchKey::Email, "p6@nhs.net".to_string()),
            (MatchKey::EmployeeId, "p6@nhs.net".to_string()),
        ]
        .into();
        let p = cache.partial(&anchors(&[2, 7, 99]), &join, AGENT).unwrap();
        // 2 and 7 as asked (99 has no account), and 5.
        assert_eq!(ids(&p), vec!["t002", "t005", "t007"]);
        let alone = cache
            .partial(&anchors(&[2]), &BTreeSet::new(), AGENT)
            .unwrap();
        assert_eq!(ids(&alone), vec!["t002"]);
        assert_eq!(p.accounts[0], state().accounts[1], "bodies round-trip");
        assert_eq!(p.organisations, state().organisations);
        let c = p.census.unwrap();
        let n =
            |m: &BTreeMap<OdsCode, u32>, ods: &str| m.get(&OdsCode::parse(ods).unwrap()).copied();
        // Held: every status but deleted.
        assert_eq!((n(&c.held, "RXA"), n(&c.held, "RXB")), (Some(3), Some(2)));
        // Managed: anchored and this agent's, any status.
        assert_eq!(
            (n(&c.managed, "RXA"), n(&c.managed, "RXB")),
            (Some(3), Some(1))
        );
        let mut st = state();
        st.census = Some(c);
        // A partial state is never written as the whole.
        save(dir.path(), &st);
        assert!(Cache::open(dir.path()).is_none());
    }

    #[test]
    fn replace_swaps_the_accounts_of_the_anchors_and_of_the_ids_it_is_given() {
        let dir = tempfile::tempdir().unwrap();
        save(dir.path(), &state());
        let mut cache = Cache::open(dir.path()).unwrap();
        // 1 changed; 2 is gone from the directory; unanchored 5 was joined by anchor 8.
        let mut one = account(1, "RXA", true, Status::Active, Some(AGENT));
        one.attributes
            .insert(crate::model::Field::JobTitle, "Nurse".into());
        let mut joined = account(5, "RXB", true, Status::Active, Some(AGENT));
        joined.external_id = Some(xid(8));
        cache
            .replace(&anchors(&[1, 2, 8]), &[one.clone(), joined.clone()])
            .unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let unjoined = [(MatchKey::Email, "p5@nhs.net".to_string())].into();
        let p = cache
            .partial(&anchors(&[1, 2, 8]), &unjoined, AGENT)
            .unwrap();
        // 5 is found by its new anchor; anchored now, no longer a join candidate.
        assert_eq!(p.accounts, vec![one, joined.clone()]);
        let p = cache.partial(&BTreeSet::new(), &unjoined, AGENT).unwrap();
        assert!(p.accounts.is_empty(), "{:?}", p.accounts);
        let c = p.census.unwrap();
        let rxa = OdsCode::parse("RXA").unwrap();
        let rxb = OdsCode::parse("RXB").unwrap();
        assert_eq!((c.held[&rxa], c.held[&rxb]), (2, 2));
        assert_eq!((c.managed[&rxa], c.managed[&rxb]), (2, 2));
    }

    #[test]
    fn no_file_another_format_or_a_refused_organisation_is_no_cache() {
        let dir = tempfile::tempdir().unwrap();
        assert!(Cache::open(dir.path()).is_none());
        save(dir.path(), &state());
        let conn = Connection::open(path(dir.path())).unwrap();
        conn.execute("UPDATE meta SET value = 'x/0' WHERE key = 'format'", [])
            .unwrap();
        drop(conn);
        assert!(Cache::open(dir.path()).is_none());
        std::fs::write(path(dir.path()), "not a database").unwrap();
        assert!(Cache::open(dir.path()).is_none());
        let mut st = state();
        st.refused
            .insert(OdsCode::parse("RXB").unwrap(), "HTTP 403".into());
        save(dir.path(), &st);
        assert!(!path(dir.path()).exists());
    }
}
