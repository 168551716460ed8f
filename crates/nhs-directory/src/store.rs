//! SQLite storage of the reference directory: accounts (indexed columns for what the
//! rules look up — id, anchor, address, organisation, status, lifecycle times, version —
//! plus the client-writable content as JSON), the request log and the Portal twin's
//! bulk uploads (`uploads`: one `processing` at a time, see `portal`).
//!
//! One connection behind a mutex, used from blocking threads: every operation runs as
//! one closure in one transaction, so checks and writes cannot interleave. This module
//! decides nothing: the rules live in `rules`, the operations in `service`.

use super::clock::{from_ms, to_ms};
use super::config::Database;
use super::error::ApiError;
use super::rules::Status;
use nhs_model::scim::User;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use std::sync::{Arc, Mutex};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("stored account content: {0}")]
    Json(#[from] serde_json::Error),
    #[error("stored account {id}: {problem}")]
    Corrupt { id: String, problem: String },
    #[error("database task: {0}")]
    Task(String),
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "directory storage failed");
        ApiError::internal()
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::from(e).into()
    }
}

/// One account as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub seq: i64,
    pub id: String,
    /// The anchor as the client sent it (trimmed).
    pub external_id: Option<String>,
    /// The allocated NHSmail address.
    pub user_name: String,
    pub ods_code: String,
    pub status: Status,
    pub created: OffsetDateTime,
    pub modified: OffsetDateTime,
    pub leaver_since: Option<OffsetDateTime>,
    pub deleted_since: Option<OffsetDateTime>,
    pub version: u64,
    /// Client-writable content only: names, title, phones, enterprise attributes, NHS
    /// site and managedBy. Everything else comes from the columns.
    pub content: User,
}

/// One line of the request log (`GET /_admin/requests`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LogEntry {
    pub at_ms: i64,
    /// The client id (only requests with a valid client token are logged).
    pub client: String,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The HTTP status answered; 0 when the connection was dropped (fault injection).
    pub status: u16,
    /// The SCIM error detail, when the answer was an error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    id               TEXT NOT NULL UNIQUE,
    external_id      TEXT,
    anchor_key       TEXT UNIQUE,
    user_name        TEXT NOT NULL UNIQUE,
    ods_code         TEXT NOT NULL,
    status           TEXT NOT NULL,
    created_ms       INTEGER NOT NULL,
    modified_ms      INTEGER NOT NULL,
    leaver_since_ms  INTEGER,
    deleted_since_ms INTEGER,
    version          INTEGER NOT NULL,
    content          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS accounts_by_org ON accounts (ods_code, status);
CREATE INDEX IF NOT EXISTS accounts_by_status ON accounts (status);
CREATE INDEX IF NOT EXISTS accounts_by_org_seq ON accounts (ods_code, seq);
CREATE TABLE IF NOT EXISTS requests (
    seq     INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms   INTEGER NOT NULL,
    client  TEXT NOT NULL,
    method  TEXT NOT NULL,
    path    TEXT NOT NULL,
    query   TEXT,
    status  INTEGER NOT NULL,
    detail  TEXT
);
CREATE TABLE IF NOT EXISTS uploads (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    file_name   TEXT NOT NULL,
    started_at  TEXT NOT NULL,
    finished_at TEXT,
    state       TEXT NOT NULL CHECK (state IN ('processing', 'done', 'interrupted'))
);
";

const COLUMNS: &str = "seq, id, external_id, user_name, ods_code, status, created_ms, \
                       modified_ms, leaver_since_ms, deleted_since_ms, version, content";

/// The database, shared by the request handlers.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl Store {
    pub fn open(db: &Database) -> Result<Store, StoreError> {
        let conn = match db {
            Database::Memory => {
                let c = Connection::open_in_memory()?;
                c.busy_timeout(std::time::Duration::from_secs(5))?;
                create_tables(&c)?;
                c
            }
            Database::File(p) => open_file(p)?,
        };
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` in one transaction on a blocking thread; commit if it succeeds.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
    {
        let conn = self.conn.clone();
        let joined = tokio::task::spawn_blocking(move || {
            // A panic elsewhere cannot leave a half-done transaction behind (it would
            // have rolled back on drop), so a poisoned lock is safe to take over.
            let mut guard = conn.lock().unwrap_or_else(|p| p.into_inner());
            let tx = guard.transaction().map_err(ApiError::from)?;
            let out = f(&tx)?;
            tx.commit().map_err(ApiError::from)?;
            Ok(out)
        })
        .await;
        match joined {
            Ok(r) => r,
            Err(e) => Err(StoreError::Task(e.to_string()).into()),
        }
    }
}

/// A read-write connection to a database file (made if missing), with its tables: the
/// running directory's, and `nhs-directory ingest`'s beside it.
pub fn open_file(path: &std::path::Path) -> Result<Connection, StoreError> {
    let c = Connection::open(path)?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "NORMAL")?;
    c.busy_timeout(std::time::Duration::from_secs(5))?;
    create_tables(&c)?;
    Ok(c)
}

/// Create the tables (and indexes) where they are missing.
pub fn create_tables(conn: &Connection) -> Result<(), StoreError> {
    Ok(conn.execute_batch(SCHEMA)?)
}

/// A connection that only reads an existing database file (`nhs-directory export`,
/// also beside a running directory).
pub fn open_read_only(path: &std::path::Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// Has this database never held an account? (A database whose accounts were all
/// deleted has held some: SQLite's AUTOINCREMENT keeps the highest number it gave.)
pub fn never_held_accounts(conn: &Connection) -> Result<bool, StoreError> {
    let given: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'accounts'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let held: i64 = conn.query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
    Ok(given.is_none() && held == 0)
}

fn status_of(id: &str, s: &str) -> Result<Status, StoreError> {
    Status::parse(s).ok_or_else(|| StoreError::Corrupt {
        id: id.to_string(),
        problem: format!("unknown status {s:?}"),
    })
}

fn account(row: &Row<'_>) -> Result<Account, StoreError> {
    let id: String = row.get(1)?;
    let status: String = row.get(5)?;
    let content: String = row.get(11)?;
    let version: i64 = row.get(10)?;
    Ok(Account {
        seq: row.get(0)?,
        status: status_of(&id, &status)?,
        external_id: row.get(2)?,
        user_name: row.get(3)?,
        ods_code: row.get(4)?,
        created: from_ms(row.get(6)?),
        modified: from_ms(row.get(7)?),
        leaver_since: row.get::<_, Option<i64>>(8)?.map(from_ms),
        deleted_since: row.get::<_, Option<i64>>(9)?.map(from_ms),
        version: u64::try_from(version).unwrap_or(0),
        content: serde_json::from_str(&content)?,
        id,
    })
}

fn accounts(
    conn: &Connection,
    sql: &str,
    args: &[&dyn rusqlite::ToSql],
) -> Result<Vec<Account>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = stmt.query(args)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(account(row)?);
    }
    Ok(out)
}

pub fn get(conn: &Connection, id: &str) -> Result<Option<Account>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE id = ?1");
    Ok(accounts(conn, &sql, &[&id])?.into_iter().next())
}

/// Every account, oldest first (the stable order of list responses).
pub fn all(conn: &Connection) -> Result<Vec<Account>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM accounts ORDER BY seq");
    accounts(conn, &sql, &[])
}

/// The account (if any) whose anchor key is `key` (`externalId`, trimmed and
/// lowercased): every account a filter `externalId eq X` can match is among these, so a
/// look-up by anchor need not scan every account.
pub fn by_anchor_key(conn: &Connection, key: &str) -> Result<Vec<Account>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE anchor_key = ?1 ORDER BY seq");
    accounts(conn, &sql, &[&key])
}

/// The accounts of organisation `ods` (its canonical code), oldest first: every account
/// a filter requiring `odsCode eq X` can match is among these.
pub fn by_ods(conn: &Connection, ods: &str) -> Result<Vec<Account>, StoreError> {
    let sql = format!("SELECT {COLUMNS} FROM accounts WHERE ods_code = ?1 ORDER BY seq");
    accounts(conn, &sql, &[&ods])
}

/// How many accounts organisation `ods` holds, whatever their status.
pub fn count_by_ods(conn: &Connection, ods: &str) -> Result<usize, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM accounts WHERE ods_code = ?1",
        [ods],
        |r| r.get(0),
    )?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// One page of `by_ods`: `count` accounts from the `skip`-th (0-based).
pub fn page_by_ods(
    conn: &Connection,
    ods: &str,
    skip: usize,
    count: usize,
) -> Result<Vec<Account>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM accounts WHERE ods_code = ?1 ORDER BY seq LIMIT ?2 OFFSET ?3"
    );
    let limit = i64::try_from(count).unwrap_or(i64::MAX);
    let offset = i64::try_from(skip).unwrap_or(i64::MAX);
    accounts(conn, &sql, &[&ods, &limit, &offset])
}

/// Accounts whose lifecycle may move on by itself.
pub fn lifecycle_candidates(conn: &Connection) -> Result<Vec<Account>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM accounts WHERE status IN ('pending', 'leaver', 'deleted') ORDER BY seq"
    );
    accounts(conn, &sql, &[])
}

/// Accounts of `ods` that count towards its cap, leaving out `except` (an account
/// being moved or restored).
pub fn held(conn: &Connection, ods: &str, except: Option<&str>) -> Result<u32, StoreError> {
    let n: i64 = conn.query_row(
        "SELECT COUNT(*) FROM accounts WHERE ods_code = ?1 AND status <> 'deleted' AND id <> ?2",
        params![ods, except.unwrap_or("")],
        |r| r.get(0),
    )?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

pub fn user_name_taken(conn: &Connection, user_name: &str) -> Result<bool, StoreError> {
    Ok(conn
        .query_row(
            "SELECT 1 FROM accounts WHERE user_name = ?1",
            params![user_name.to_lowercase()],
            |_| Ok(()),
        )
        .optional()?
        .is_some())
}

/// The id of the account holding this anchor key, if any.
pub fn anchor_owner(conn: &Connection, key: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id FROM accounts WHERE anchor_key = ?1",
            params![key],
            |r| r.get(0),
        )
        .optional()?)
}

/// A fresh id: 128 random bits from SQLite, in the 8-4-4-4-12 form.
pub fn new_id(conn: &Connection) -> Result<String, StoreError> {
    let hex: String = conn.query_row("SELECT lower(hex(randomblob(16)))", [], |r| r.get(0))?;
    let g = |a: usize, b: usize| hex.get(a..b).unwrap_or("");
    Ok(format!(
        "{}-{}-{}-{}-{}",
        g(0, 8),
        g(8, 12),
        g(12, 16),
        g(16, 20),
        g(20, 32)
    ))
}

fn anchor_key_of(a: &Account) -> Option<String> {
    a.external_id.as_deref().map(|e| e.trim().to_lowercase())
}

pub fn insert(conn: &Connection, a: &Account) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO accounts (id, external_id, anchor_key, user_name, ods_code, status, \
         created_ms, modified_ms, leaver_since_ms, deleted_since_ms, version, content) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        params![
            a.id,
            a.external_id,
            anchor_key_of(a),
            a.user_name.to_lowercase(),
            a.ods_code,
            a.status.as_str(),
            to_ms(a.created),
            to_ms(a.modified),
            a.leaver_since.map(to_ms),
            a.deleted_since.map(to_ms),
            i64::try_from(a.version).unwrap_or(i64::MAX),
            serde_json::to_string(&a.content)?,
        ],
    )?;
    Ok(conn.last_insert_rowid())
}

pub fn update(conn: &Connection, a: &Account) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE accounts SET external_id = ?2, anchor_key = ?3, user_name = ?4, ods_code = ?5, \
         status = ?6, modified_ms = ?7, leaver_since_ms = ?8, deleted_since_ms = ?9, \
         version = ?10, content = ?11 WHERE id = ?1",
        params![
            a.id,
            a.external_id,
            anchor_key_of(a),
            a.user_name.to_lowercase(),
            a.ods_code,
            a.status.as_str(),
            to_ms(a.modified),
            a.leaver_since.map(to_ms),
            a.deleted_since.map(to_ms),
            i64::try_from(a.version).unwrap_or(i64::MAX),
            serde_json::to_string(&a.content)?,
        ],
    )?;
    Ok(())
}

pub fn delete(conn: &Connection, id: &str) -> Result<bool, StoreError> {
    Ok(conn.execute("DELETE FROM accounts WHERE id = ?1", params![id])? > 0)
}

/// Where a bulk upload is (the `uploads` table's `state`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UploadState {
    Processing,
    Done,
    Interrupted,
}

impl UploadState {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadState::Processing => "processing",
            UploadState::Done => "done",
            UploadState::Interrupted => "interrupted",
        }
    }
}

/// One bulk upload as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upload {
    pub id: i64,
    pub file_name: String,
    /// RFC 3339.
    pub started_at: String,
}

/// The upload still being processed, if any (the oldest, should there be several).
pub fn processing_upload(conn: &Connection) -> Result<Option<Upload>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT id, file_name, started_at FROM uploads WHERE state = 'processing' \
             ORDER BY id LIMIT 1",
            [],
            |r| {
                Ok(Upload {
                    id: r.get(0)?,
                    file_name: r.get(1)?,
                    started_at: r.get(2)?,
                })
            },
        )
        .optional()?)
}

/// Record a new upload as processing; its id.
pub fn begin_upload(
    conn: &Connection,
    file_name: &str,
    started_at: &str,
) -> Result<i64, StoreError> {
    conn.execute(
        "INSERT INTO uploads (file_name, started_at, state) VALUES (?1, ?2, 'processing')",
        params![file_name, started_at],
    )?;
    Ok(conn.last_insert_rowid())
}

/// Record that an upload finished (done or interrupted).
pub fn end_upload(
    conn: &Connection,
    id: i64,
    state: UploadState,
    finished_at: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "UPDATE uploads SET state = ?2, finished_at = ?3 WHERE id = ?1",
        params![id, state.as_str(), finished_at],
    )?;
    Ok(())
}

pub fn log_request(conn: &Connection, e: &LogEntry) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO requests (at_ms, client, method, path, query, status, detail) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            e.at_ms, e.client, e.method, e.path, e.query, e.status, e.detail
        ],
    )?;
    Ok(())
}

pub fn requests(conn: &Connection) -> Result<Vec<LogEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(
        "SELECT at_ms, client, method, path, query, status, detail FROM requests ORDER BY seq",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(LogEntry {
            at_ms: r.get(0)?,
            client: r.get(1)?,
            method: r.get(2)?,
            path: r.get(3)?,
            query: r.get(4)?,
            status: r.get(5)?,
            detail: r.get(6)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// How many entries the request log holds.
pub fn request_count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM requests", [], |r| r.get(0))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

pub fn clear_requests(conn: &Connection) -> Result<usize, StoreError> {
    Ok(conn.execute("DELETE FROM requests", [])?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhs_model::Field;

    fn sample(conn: &Connection, ext: &str, name: &str) -> Account {
        let mut content = User::default();
        content.set_field(Field::GivenName, Some("Siân".into()));
        let t = from_ms(1_700_000_000_000);
        Account {
            seq: 0,
            id: new_id(conn).unwrap(),
            external_id: Some(ext.into()),
            user_name: name.into(),
            ods_code: "RXA".into(),
            status: Status::Active,
            created: t,
            modified: t,
            leaver_since: None,
            deleted_since: None,
            version: 1,
            content,
        }
    }

    #[test]
    fn accounts_round_trip_and_count() {
        let conn = Connection::open_in_memory().unwrap();
        create_tables(&conn).unwrap();
        let mut a = sample(&conn, "ABC", "sian.evans@nhs.net");
        a.seq = insert(&conn, &a).unwrap();
        assert_eq!(get(&conn, &a.id).unwrap().as_ref(), Some(&a));
        assert_eq!(a.id.len(), 36);
        assert!(user_name_taken(&conn, "SIAN.EVANS@nhs.net").unwrap());
        assert_eq!(anchor_owner(&conn, "abc").unwrap(), Some(a.id.clone()));
        // The anchor is unique ignoring case.
        let b = sample(&conn, "abc", "other@nhs.net");
        assert!(insert(&conn, &b).is_err());
        assert_eq!(held(&conn, "RXA", None).unwrap(), 1);
        assert_eq!(held(&conn, "RXA", Some(&a.id)).unwrap(), 0);
        a.status = Status::Deleted;
        a.version = 2;
        update(&conn, &a).unwrap();
        assert_eq!(held(&conn, "RXA", None).unwrap(), 0);
        assert_eq!(lifecycle_candidates(&conn).unwrap().len(), 1);
        assert!(delete(&conn, &a.id).unwrap());
        assert!(all(&conn).unwrap().is_empty());
        // Empty now, but it has held an account.
        assert!(!never_held_accounts(&conn).unwrap());
        let fresh = Connection::open_in_memory().unwrap();
        create_tables(&fresh).unwrap();
        assert!(never_held_accounts(&fresh).unwrap());
    }

    #[test]
    fn request_log_keeps_order() {
        let conn = Connection::open_in_memory().unwrap();
        create_tables(&conn).unwrap();
        for (i, status) in [201u16, 403].into_iter().enumerate() {
            log_request(
                &conn,
                &LogEntry {
                    at_ms: i64::try_from(i).unwrap(),
                    client: "agent-a".into(),
                    method: "POST".into(),
                    path: "/Users".into(),
                    query: None,
                    status,
                    detail: None,
                },
            )
            .unwrap();
        }
        let log = requests(&conn).unwrap();
        assert_eq!(log.iter().map(|e| e.status).collect::<Vec<_>>(), [201, 403]);
        assert_eq!(request_count(&conn).unwrap(), 2);
        assert_eq!(clear_requests(&conn).unwrap(), 2);
        assert_eq!(request_count(&conn).unwrap(), 0);
    }
}
