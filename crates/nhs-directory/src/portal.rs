//! The NHSmail Portal's CSV side, played by the reference directory so that the agent's
//! Portal bridge can be tested against something that keeps the directory's rules:
//! - `report`: the Mailbox Report CSV of every account in the database (all
//!   organisations), [`REPORT_HEADINGS`] in order, rows by ODS code then address, as
//!   stored (it only reads: a due lifecycle step shows once the running directory or an
//!   upload has swept);
//! - `sample_template`: the bulk-upload sample file's header line ([`TEMPLATE_HEADINGS`]);
//! - `ingest`: one bulk-upload CSV, one at a time (an upload lock in the database's
//!   `uploads` table), each row a create or an update under the same rules a SCIM create
//!   or PATCH gets (`service::create_account`, `service::update`), the results written as
//!   the uploaded file with a `Result` column added. An upload that ends (done, failed
//!   or interrupted) releases the lock; a process killed mid-upload leaves its row
//!   `processing`, as a stuck Portal upload would, and later uploads are refused until
//!   that row is changed in the database.
//!
//! Row semantics: a row whose Local ID belongs to an account of the same ODS code
//! updates it (a blank cell leaves that value unchanged); a Local ID no account holds
//! creates one (external id = the Local ID, status as a SCIM create's, no managing
//! agent). A row is refused, and changes nothing, when its Local ID is empty or given
//! twice in the file, when the Local ID belongs to another organisation's account (CSV
//! cannot transfer accounts), when it gives an Email Address on a create (the directory
//! allocates it) or another address than the account's on an update, or when a rule
//! refuses it. `Secondary Email` is accepted and not kept, as `emails` on a SCIM create:
//! the directory holds one address per account, the NHSmail one.
//!
//! Every cell written goes through [`neutralise`], every cell read through [`restore`].
//! It never clears a value (a blank cell means unchanged), never moves an account to
//! another organisation, never processes a file whose header differs from the template
//! or while another upload is processing, and never writes a partial results file.

use super::clock::{Clock, SystemClock, rfc3339};
use super::config::{Config, Database};
use super::error::ApiError;
use super::rules;
use super::service;
use super::store::{self, Account, UploadState};
use anyhow::Context;
use nhs_model::ids::OdsCode;
use nhs_model::portal::{
    REPORT_HEADINGS, RESULT_HEADING, TEMPLATE_HEADINGS, heading_field, neutralise, restore,
};
use nhs_model::scim::{Nhs, User};
use nhs_model::{Field, Status};
use rusqlite::{Connection, TransactionBehavior};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// Exit code of `ingest` when another upload is still processing.
pub const EXIT_BUSY: u8 = 3;
/// Exit code of `ingest --stop-after N` (a simulated interruption).
pub const EXIT_INTERRUPTED: u8 = 4;

/// The Field each person-attribute heading carries (report and template share them).
/// Why an upload did not run to its results.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file, the configuration or the database is wrong (exit 1); when the file is
    /// at fault, nothing was processed.
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
    /// Another upload holds the lock (exit 3); nothing was processed.
    #[error(
        "another upload ({id}, {file}, started {started}) is still being processed: submit \
         one CSV at a time and wait for it to finish"
    )]
    Busy {
        id: i64,
        file: String,
        started: String,
    },
    /// `--stop-after N` (exit 4): N rows were processed, no results were written.
    #[error("upload interrupted after {0} rows (simulated)")]
    Interrupted(usize),
}

impl IngestError {
    pub fn exit_code(&self) -> u8 {
        match self {
            IngestError::Failed(_) => 1,
            IngestError::Busy { .. } => EXIT_BUSY,
            IngestError::Interrupted(_) => EXIT_INTERRUPTED,
        }
    }
}

/// The template's header line (`nhs-directory sample-template`), with its newline.
pub fn sample_template() -> String {
    format!("{}\n", TEMPLATE_HEADINGS.join(","))
}

/// A status as the Portal names it (`Active`).
fn status_name(s: Status) -> &'static str {
    match s {
        Status::Pending => "Pending",
        Status::Active => "Active",
        Status::Leaver => "Leaver",
        Status::Inactive => "Inactive",
        Status::Deleted => "Deleted",
    }
}

/// The Mailbox Report of `accounts`: [`REPORT_HEADINGS`], one row per account ordered by
/// ODS code then address, every cell neutralised.
pub fn render_report(cfg: &Config, accounts: &[Account]) -> Result<Vec<u8>, csv::Error> {
    let mut sorted: Vec<&Account> = accounts.iter().collect();
    sorted.sort_by(|a, b| (&a.ods_code, &a.user_name).cmp(&(&b.ods_code, &b.user_name)));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(REPORT_HEADINGS)?;
    for a in sorted {
        let fields = a.content.fields();
        let organisation = OdsCode::parse(&a.ods_code)
            .ok()
            .and_then(|o| cfg.organisation(&o).map(|e| e.name.clone()))
            .unwrap_or_default();
        let row: Vec<String> = REPORT_HEADINGS
            .iter()
            .map(|h| match *h {
                "Email Address" => a.user_name.clone(),
                "Local ID" => a.external_id.clone().unwrap_or_default(),
                "ODS Code" => a.ods_code.clone(),
                "Organisation" => organisation.clone(),
                "Status" => status_name(a.status).to_string(),
                "Leaver Date" => a.leaver_since.map(rfc3339).unwrap_or_default(),
                other => heading_field(other)
                    .and_then(|f| fields.get(&f).map(String::from))
                    .unwrap_or_default(),
            })
            .collect();
        w.write_record(row.iter().map(|c| neutralise(c)).map(|c| c.into_owned()))?;
    }
    w.into_inner().map_err(|e| csv::Error::from(e.into_error()))
}

/// The database file the configuration names; `:memory:` or a missing file is an error
/// (the running directory makes the file when it first starts).
fn database_file(config: &Path, cfg: &Config, command: &str) -> anyhow::Result<PathBuf> {
    match &cfg.database {
        Database::Memory => anyhow::bail!(
            "{}: database is \":memory:\": its state lives only inside the running \
             directory; {command} needs a database file",
            config.display()
        ),
        Database::File(p) if !p.is_file() => anyhow::bail!(
            "{}: there is no database at {} (the directory makes it when it first starts)",
            config.display(),
            p.display()
        ),
        Database::File(p) => Ok(p.clone()),
    }
}

/// `nhs-directory report`: the Mailbox Report of the configured database. It only
/// reads, and may run beside the directory.
pub fn report(config: &Path) -> anyhow::Result<Vec<u8>> {
    let cfg = Config::load(config)?;
    let path = database_file(config, &cfg, "report")?;
    let conn = store::open_read_only(&path)?;
    let accounts = store::all(&conn)?;
    render_report(&cfg, &accounts)
        .with_context(|| format!("{}: writing the report", path.display()))
}

/// One data row of a batch file, as read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchRow {
    /// The row's line in the file (1 is the header).
    pub line: u64,
    /// The cells exactly as read (neutralised or not), one per template heading.
    pub cells: Vec<String>,
}

/// A bulk-upload file whose header is the template's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    pub path: PathBuf,
    pub rows: Vec<BatchRow>,
}

/// Read a batch file: UTF-8 (a BOM is dropped), RFC 4180, the header exactly
/// [`TEMPLATE_HEADINGS`]. An error names the file, the line and, for the header, the
/// first column that differs.
pub fn read_batch(path: &Path, bytes: &[u8]) -> anyhow::Result<Batch> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let place = path.display();
    let mut r = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let header = r
        .headers()
        .with_context(|| format!("{place}: line 1: cannot read the header"))?
        .clone();
    let got: Vec<&str> = header.iter().collect();
    let n = got.len().max(TEMPLATE_HEADINGS.len());
    for i in 0..n {
        let problem = match (got.get(i), TEMPLATE_HEADINGS.get(i)) {
            (Some(g), Some(w)) if g == w => continue,
            (Some(g), Some(w)) => {
                format!("the heading is {g:?} where the Portal's template has {w:?}")
            }
            (None, Some(w)) => format!("the template's heading {w:?} is missing"),
            (Some(g), None) => format!("the heading {g:?} is not in the Portal's template"),
            (None, None) => continue,
        };
        anyhow::bail!(
            "{place}: line 1, column {}: {problem} (a batch's header must be the template's \
             headings, in its order: {})",
            i + 1,
            TEMPLATE_HEADINGS.join(",")
        );
    }
    let mut rows = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            let line = e.position().map(|p| p.line()).unwrap_or(0);
            anyhow::anyhow!("{place}: line {line}: {e}")
        })?;
        let line = rec.position().map(|p| p.line()).unwrap_or(0);
        rows.push(BatchRow {
            line,
            cells: rec.iter().map(String::from).collect(),
        });
    }
    Ok(Batch {
        path: path.to_path_buf(),
        rows,
    })
}

/// What an upload is asked to do besides its rows.
#[derive(Clone, Debug, Default)]
pub struct IngestOptions {
    /// Stop (interrupted, no results) after this many rows.
    pub stop_after: Option<usize>,
}

/// `nhs-directory ingest`: read the batch, check its header, then [`ingest`] it into the
/// configured database with the system clock. `on_lock` runs once the upload holds the
/// lock, before any row (the binary's `--pause`).
pub fn run_ingest(
    config: &Path,
    batch_file: &Path,
    results: &Path,
    options: &IngestOptions,
    on_lock: &mut dyn FnMut(i64) -> anyhow::Result<()>,
) -> Result<(), IngestError> {
    let cfg = Config::load(config).map_err(anyhow::Error::from)?;
    let path = database_file(config, &cfg, "ingest")?;
    let bytes = std::fs::read(batch_file)
        .with_context(|| format!("cannot read the batch file {}", batch_file.display()))?;
    let batch = read_batch(batch_file, &bytes)?;
    let mut conn = store::open_file(&path)
        .with_context(|| format!("cannot open the directory database {}", path.display()))?;
    ingest(
        &cfg,
        &mut conn,
        &SystemClock,
        &batch,
        results,
        options,
        on_lock,
    )
}

/// Process `batch` under the upload lock and write its results to `results` (see the
/// module doc). Each row is one transaction: a refused row changes nothing.
pub fn ingest(
    cfg: &Config,
    conn: &mut Connection,
    clock: &dyn Clock,
    batch: &Batch,
    results: &Path,
    options: &IngestOptions,
    on_lock: &mut dyn FnMut(i64) -> anyhow::Result<()>,
) -> Result<(), IngestError> {
    let id = take_lock(conn, &batch.path, clock.now())?;
    let outcome = process(cfg, conn, clock, batch, results, options, on_lock, id);
    let state = match outcome {
        Ok(()) => UploadState::Done,
        Err(_) => UploadState::Interrupted,
    };
    // The lock is released whatever happened; a failure to release it is reported only
    // when the upload itself went well (its own error says more).
    let released = store::end_upload(conn, id, state, &rfc3339(clock.now()))
        .with_context(|| format!("cannot record the end of upload {id}"));
    outcome?;
    released?;
    Ok(())
}

/// Record a new upload as processing, unless one already is; its id.
fn take_lock(conn: &mut Connection, file: &Path, now: OffsetDateTime) -> Result<i64, IngestError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .context("cannot lock the uploads table")?;
    if let Some(u) = store::processing_upload(&tx).context("cannot read the uploads table")? {
        return Err(IngestError::Busy {
            id: u.id,
            file: u.file_name,
            started: u.started_at,
        });
    }
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.display().to_string());
    let id = store::begin_upload(&tx, &name, &rfc3339(now)).context("cannot record the upload")?;
    tx.commit().context("cannot record the upload")?;
    Ok(id)
}

#[allow(clippy::too_many_arguments)]
fn process(
    cfg: &Config,
    conn: &mut Connection,
    clock: &dyn Clock,
    batch: &Batch,
    results: &Path,
    options: &IngestOptions,
    on_lock: &mut dyn FnMut(i64) -> anyhow::Result<()>,
    id: i64,
) -> Result<(), IngestError> {
    on_lock(id)?;
    {
        let tx = conn.transaction().context("cannot start a transaction")?;
        service::sweep(&tx, clock.now(), &cfg.lifecycle)
            .map_err(|e| anyhow::anyhow!("the lifecycle sweep failed: {e}"))?;
        tx.commit().context("cannot commit the lifecycle sweep")?;
    }
    // The first line each Local ID appears on (anchors compare ignoring case).
    let mut first_line: BTreeMap<String, u64> = BTreeMap::new();
    let mut outcomes: Vec<Result<(), String>> = Vec::new();
    for (done, row) in batch.rows.iter().enumerate() {
        if options.stop_after == Some(done) {
            return Err(IngestError::Interrupted(done));
        }
        let upload = UploadRow::of(row);
        let outcome = match upload.local_id_key() {
            Err(e) => Err(e),
            Ok(key) => match first_line.get(&key) {
                Some(k) => Err(format!("duplicate Local ID in this file: line {k}")),
                None => {
                    first_line.insert(key, row.line);
                    apply_in_transaction(conn, cfg, clock.now(), &upload)?
                }
            },
        };
        outcomes.push(outcome);
    }
    if let Some(n) = options.stop_after {
        return Err(IngestError::Interrupted(n.min(batch.rows.len())));
    }
    write_results(batch, &outcomes, results)?;
    Ok(())
}

/// Apply one row in its own transaction: committed when the row is accepted, rolled
/// back when refused. `Err` only when the database itself fails.
fn apply_in_transaction(
    conn: &mut Connection,
    cfg: &Config,
    now: OffsetDateTime,
    row: &UploadRow<'_>,
) -> anyhow::Result<Result<(), String>> {
    let tx = conn.transaction().context("cannot start a transaction")?;
    match apply(&tx, cfg, now, row) {
        Ok(()) => {
            tx.commit()
                .with_context(|| format!("line {}: cannot commit the row", row.line))?;
            Ok(Ok(()))
        }
        // Dropping the transaction rolls it back.
        Err(e) => Ok(Err(e)),
    }
}

/// One row's cells, restored.
struct UploadRow<'a> {
    line: u64,
    local_id: &'a str,
    ods_code: &'a str,
    address: &'a str,
    /// Non-blank person attributes.
    values: BTreeMap<Field, String>,
}

impl<'a> UploadRow<'a> {
    fn of(row: &'a BatchRow) -> UploadRow<'a> {
        let mut r = UploadRow {
            line: row.line,
            local_id: "",
            ods_code: "",
            address: "",
            values: BTreeMap::new(),
        };
        for (heading, cell) in TEMPLATE_HEADINGS.iter().zip(&row.cells) {
            let v = restore(cell);
            match *heading {
                "Local ID" => r.local_id = v.trim(),
                "ODS Code" => r.ods_code = v.trim(),
                "Email Address" => r.address = v.trim(),
                other => {
                    if let Some(f) = heading_field(other)
                        && !v.trim().is_empty()
                    {
                        r.values.insert(f, v.to_string());
                    }
                }
            }
        }
        r
    }

    /// The Local ID's uniqueness key, or why the row has none.
    fn local_id_key(&self) -> Result<String, String> {
        if self.local_id.is_empty() {
            return Err("Local ID is empty: every row needs one".into());
        }
        rules::anchor_key(self.local_id).map_err(|e| e.detail)
    }
}

/// The refusal of a row whose Local ID belongs to another organisation's account.
const NO_TRANSFER: &str =
    "CSV uploads cannot transfer accounts between organisations: use the Portal's bulk transfer";

/// Create or update the account a row names, under the directory's rules.
fn apply(
    conn: &Connection,
    cfg: &Config,
    now: OffsetDateTime,
    row: &UploadRow<'_>,
) -> Result<(), String> {
    let detail = |e: ApiError| e.detail;
    let key = row.local_id_key()?;
    if row.ods_code.is_empty() {
        return Err("missing_mandatory: ODS Code is required".into());
    }
    let ods = rules::parse_ods(row.ods_code).map_err(detail)?;
    let current = match store::anchor_owner(conn, &key).map_err(|e| detail(e.into()))? {
        Some(id) => store::get(conn, &id).map_err(|e| detail(e.into()))?,
        None => None,
    };
    match current {
        Some(a) => {
            if a.ods_code != ods.as_str() {
                return Err(NO_TRANSFER.into());
            }
            if !row.address.is_empty() && !row.address.eq_ignore_ascii_case(&a.user_name) {
                return Err(format!(
                    "Email Address {} is not the address of the account with this Local ID",
                    row.address
                ));
            }
            let mut desired = a.content.clone();
            desired.external_id = a.external_id.clone();
            for (f, v) in &row.values {
                desired.set_field(*f, Some(v.clone()));
            }
            let refuse = |_: &OdsCode| Err(ApiError::invalid_value(NO_TRANSFER));
            service::update(conn, now, cfg, &refuse, a, desired).map_err(detail)?;
        }
        None => {
            if !row.address.is_empty() {
                return Err(format!(
                    "Email Address {} is given on a create: leave it blank, the directory \
                     allocates the address",
                    row.address
                ));
            }
            let mut body = User {
                external_id: Some(row.local_id.to_string()),
                nhs: Some(Nhs {
                    ods_code: Some(ods.to_string()),
                    ..Nhs::default()
                }),
                ..User::default()
            };
            for (f, v) in &row.values {
                body.set_field(*f, Some(v.clone()));
            }
            service::create_account(conn, now, cfg, &ods, &body).map_err(detail)?;
        }
    }
    Ok(())
}

/// The results: the batch's header and rows as read, each with its `Result` cell,
/// written to a temporary file beside `out` and renamed over it.
fn write_results(batch: &Batch, outcomes: &[Result<(), String>], out: &Path) -> anyhow::Result<()> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let mut header: Vec<&str> = TEMPLATE_HEADINGS.to_vec();
    header.push(RESULT_HEADING);
    w.write_record(&header)?;
    for (row, outcome) in batch.rows.iter().zip(outcomes) {
        let result = match outcome {
            Ok(()) => "Success".to_string(),
            Err(reason) => format!("Failed: {reason}"),
        };
        let mut cells: Vec<String> = row.cells.clone();
        cells.push(neutralise(&result).into_owned());
        w.write_record(&cells)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| anyhow::anyhow!("cannot render the results: {}", e.error()))?;
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
    tmp.write_all(&bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("cannot write the results for {}", out.display()))?;
    tmp.persist(out)
        .with_context(|| format!("cannot write the results to {}", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    struct Fixed(OffsetDateTime);
    impl Clock for Fixed {
        fn now(&self) -> OffsetDateTime {
            self.0
        }
    }
    const CLOCK: Fixed = Fixed(datetime!(2026-11-22 10:00 UTC));

    /// A directory with RXA (cap 3) and RXA80 (cap 1) in a database file of its own.
    struct Setup {
        dir: tempfile::TempDir,
        cfg: Config,
        conn: Connection,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.token"), "tok").unwrap();
        let file = dir.path().join("d.toml");
        std::fs::write(
            &file,
            "listen = \"127.0.0.1:0\"\ndatabase = \"d.db\"\n\
             [[client]]\nid = \"a\"\ntoken_file = \"a.token\"\norganisations = [\"RXA\"]\n\
             [[organisation]]\nods_code = \"RXA\"\nname = \"Northgate Trust\"\nkind = \"trust\"\nopen = true\ncap = 3\n\
             [[organisation]]\nods_code = \"RXA80\"\nname = \"Northgate Practice\"\nkind = \"gp\"\nopen = true\ncap = 1\n",
        )
        .unwrap();
        let cfg = Config::load(&file).unwrap();
        let conn = store::open_file(&dir.path().join("d.db")).unwrap();
        Setup { dir, cfg, conn }
    }

    /// A batch file's text: the template's header, then `rows` (cells by heading).
    fn batch_text(rows: &[&[(&str, &str)]]) -> String {
        let mut s = sample_template();
        for row in rows {
            let cells: Vec<&str> = TEMPLATE_HEADINGS
                .iter()
                .map(|h| row.iter().find(|(k, _)| k == h).map_or("", |(_, v)| *v))
                .collect();
            s.push_str(&cells.join(","));
            s.push('\n');
        }
        s
    }

    impl Setup {
        fn results(&self) -> PathBuf {
            self.dir.path().join("results.csv")
        }

        /// Ingest `rows`; the Result cells.
        fn ingest_with(
            &mut self,
            rows: &[&[(&str, &str)]],
            options: &IngestOptions,
            on_lock: &mut dyn FnMut(i64) -> anyhow::Result<()>,
        ) -> Result<Vec<String>, IngestError> {
            let path = self.dir.path().join("batch.csv");
            let batch = read_batch(&path, batch_text(rows).as_bytes()).unwrap();
            let out = self.results();
            ingest(
                &self.cfg,
                &mut self.conn,
                &CLOCK,
                &batch,
                &out,
                options,
                on_lock,
            )?;
            let mut r = csv::Reader::from_path(&out).unwrap();
            let last = TEMPLATE_HEADINGS.len();
            assert_eq!(&r.headers().unwrap()[last], RESULT_HEADING);
            Ok(r.records()
                .map(|rec| rec.unwrap()[last].to_string())
                .collect())
        }

        fn ingest(&mut self, rows: &[&[(&str, &str)]]) -> Vec<String> {
            self.ingest_with(rows, &IngestOptions::default(), &mut |_| Ok(()))
                .unwrap()
        }

        fn accounts(&self) -> Vec<Account> {
            store::all(&self.conn).unwrap()
        }

        fn by_local_id(&self, local_id: &str) -> Account {
            let id = store::anchor_owner(&self.conn, &local_id.to_lowercase())
                .unwrap()
                .unwrap();
            store::get(&self.conn, &id).unwrap().unwrap()
        }

        fn upload_states(&self) -> Vec<String> {
            let mut stmt = self
                .conn
                .prepare("SELECT state FROM uploads ORDER BY id")
                .unwrap();
            stmt.query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect()
        }
    }

    const ANN: &[(&str, &str)] = &[
        ("Local ID", "AF40AC76-1201"),
        ("ODS Code", "RXA"),
        ("First Name", "Ann"),
        ("Last Name", "Lee"),
        ("Job Title", "Nurse"),
        ("Mobile", "'+447700900123"),
    ];

    #[test]
    fn a_new_local_id_creates_an_account_as_a_scim_create_would() {
        let mut s = setup();
        assert_eq!(s.ingest(&[ANN]), ["Success"]);
        let a = s.by_local_id("af40ac76-1201");
        assert_eq!(a.external_id.as_deref(), Some("AF40AC76-1201"));
        assert_eq!(a.user_name, "ann.lee@nhs.net");
        assert_eq!(a.ods_code, "RXA");
        // pending_seconds defaults to 0: a new account is active at once.
        assert_eq!(a.status, Status::Active);
        assert_eq!(a.created, CLOCK.0);
        let f = a.content.fields();
        assert_eq!(&f[&Field::JobTitle], "Nurse");
        // The neutraliser's apostrophe is gone.
        assert_eq!(&f[&Field::Mobile], "+447700900123");
        assert_eq!(
            a.content.nhs.as_ref().and_then(|n| n.managed_by.clone()),
            None
        );
        assert_eq!(s.upload_states(), ["done"]);
    }

    #[test]
    fn an_update_changes_what_is_given_and_a_blank_cell_leaves_the_value() {
        let mut s = setup();
        s.ingest(&[ANN]);
        let before = s.by_local_id("af40ac76-1201");
        let update: &[(&str, &str)] = &[
            ("Local ID", "af40ac76-1201"),
            ("ODS Code", "rxa"),
            ("Email Address", "Ann.Lee@nhs.net"),
            ("Job Title", "Ward Sister"),
        ];
        assert_eq!(s.ingest(&[update]), ["Success"]);
        let after = s.by_local_id("af40ac76-1201");
        let f = after.content.fields();
        assert_eq!(&f[&Field::JobTitle], "Ward Sister");
        assert_eq!(&f[&Field::GivenName], "Ann");
        assert_eq!(&f[&Field::Mobile], "+447700900123");
        assert_eq!(after.external_id, before.external_id);
        assert_eq!((after.version, s.accounts().len()), (before.version + 1, 1));
    }

    #[test]
    fn a_local_id_twice_in_one_file_is_refused_on_its_second_line() {
        let mut s = setup();
        let again: &[(&str, &str)] = &[
            ("Local ID", " af40ac76-1201 "),
            ("ODS Code", "RXA"),
            ("First Name", "Other"),
            ("Last Name", "Person"),
        ];
        assert_eq!(
            s.ingest(&[ANN, again]),
            ["Success", "Failed: duplicate Local ID in this file: line 2"]
        );
        assert_eq!(s.accounts().len(), 1);
        assert_eq!(
            &s.by_local_id("af40ac76-1201").content.fields()[&Field::GivenName],
            "Ann"
        );
    }

    #[test]
    fn another_organisations_local_id_is_refused_and_the_account_stays() {
        let mut s = setup();
        s.ingest(&[ANN]);
        let before = s.by_local_id("af40ac76-1201");
        let moved: &[(&str, &str)] = &[
            ("Local ID", "AF40AC76-1201"),
            ("ODS Code", "RXA80"),
            ("Job Title", "GP"),
        ];
        assert_eq!(
            s.ingest(&[moved]),
            [
                "Failed: CSV uploads cannot transfer accounts between organisations: use the \
              Portal's bulk transfer"
            ]
        );
        assert_eq!(s.by_local_id("af40ac76-1201"), before);
    }

    #[test]
    fn an_address_is_refused_on_a_create_and_must_be_the_accounts_on_an_update() {
        let mut s = setup();
        let mut with_address = ANN.to_vec();
        with_address.push(("Email Address", "ann.lee@nhs.net"));
        let r = s.ingest(&[&with_address]);
        assert!(
            r[0].starts_with("Failed: Email Address ann.lee@nhs.net is given on a create"),
            "{r:?}"
        );
        assert!(s.accounts().is_empty());
        s.ingest(&[ANN]);
        let before = s.by_local_id("af40ac76-1201");
        let wrong: &[(&str, &str)] = &[
            ("Local ID", "AF40AC76-1201"),
            ("ODS Code", "RXA"),
            ("Email Address", "someone.else@nhs.net"),
            ("Job Title", "GP"),
        ];
        assert_eq!(
            s.ingest(&[wrong]),
            [
                "Failed: Email Address someone.else@nhs.net is not the address of the account \
              with this Local ID"
            ]
        );
        assert_eq!(s.by_local_id("af40ac76-1201"), before);
    }

    #[test]
    fn a_row_a_rule_refuses_changes_nothing_and_the_next_row_goes_on() {
        let mut s = setup();
        let empty: &[(&str, &str)] = &[
            ("ODS Code", "RXA"),
            ("First Name", "No"),
            ("Last Name", "Id"),
        ];
        let first: &[(&str, &str)] = &[
            ("Local ID", "p1"),
            ("ODS Code", "RXA80"),
            ("First Name", "Cy"),
            ("Last Name", "Ng"),
        ];
        // RXA80's cap is 1.
        let over_cap: &[(&str, &str)] = &[
            ("Local ID", "p2"),
            ("ODS Code", "RXA80"),
            ("First Name", "Di"),
            ("Last Name", "Ng"),
        ];
        let closed_unknown: &[(&str, &str)] = &[
            ("Local ID", "p3"),
            ("ODS Code", "ZZZ99"),
            ("First Name", "Ed"),
            ("Last Name", "Ng"),
        ];
        let long = "x".repeat(200);
        let too_long: &[(&str, &str)] = &[
            ("Local ID", "p1"),
            ("ODS Code", "RXA80"),
            ("Job Title", &long),
        ];
        let r = s.ingest(&[empty, first, over_cap, closed_unknown, ANN]);
        assert_eq!(r[0], "Failed: Local ID is empty: every row needs one");
        assert_eq!(r[1], "Success");
        assert!(
            r[2].starts_with("Failed: account_cap: RXA80 holds 1 of 1"),
            "{r:?}"
        );
        assert!(
            r[3].starts_with("Failed: unknown_organisation: ZZZ99"),
            "{r:?}"
        );
        assert_eq!(r[4], "Success");
        assert_eq!(s.accounts().len(), 2);
        let before = s.by_local_id("p1");
        let r = s.ingest(&[too_long]);
        assert_eq!(
            r,
            ["Failed: invalid_value: job_title is longer than 128 characters"]
        );
        assert_eq!(s.by_local_id("p1"), before);
    }

    #[test]
    fn stop_after_processes_that_many_rows_writes_no_results_and_releases_the_lock() {
        let mut s = setup();
        let bo: &[(&str, &str)] = &[
            ("Local ID", "p2"),
            ("ODS Code", "RXA"),
            ("First Name", "Bo"),
            ("Last Name", "Ray"),
        ];
        let e = s
            .ingest_with(
                &[ANN, bo],
                &IngestOptions {
                    stop_after: Some(1),
                },
                &mut |_| Ok(()),
            )
            .unwrap_err();
        assert_eq!(e.to_string(), "upload interrupted after 1 rows (simulated)");
        assert_eq!(e.exit_code(), EXIT_INTERRUPTED);
        assert!(!s.results().exists());
        assert_eq!(s.accounts().len(), 1);
        assert_eq!(s.upload_states(), ["interrupted"]);
        // The interrupted upload holds no lock: the next one runs.
        assert_eq!(s.ingest(&[ANN, bo]), ["Success", "Success"]);
    }

    #[test]
    fn a_second_upload_while_one_processes_is_refused_and_processes_nothing() {
        let mut s = setup();
        let dir = s.dir.path().to_path_buf();
        let cfg = s.cfg.clone();
        let mut second = None;
        s.ingest_with(&[ANN], &IngestOptions::default(), &mut |id| {
            let mut conn = store::open_file(&dir.join("d.db"))?;
            let batch = read_batch(&dir.join("other.csv"), batch_text(&[ANN]).as_bytes())?;
            second = Some((
                id,
                ingest(
                    &cfg,
                    &mut conn,
                    &CLOCK,
                    &batch,
                    &dir.join("other-results.csv"),
                    &IngestOptions::default(),
                    &mut |_| Ok(()),
                ),
                store::all(&conn)?.len(),
            ));
            Ok(())
        })
        .unwrap();
        let (id, refused, accounts) = second.unwrap();
        let e = refused.unwrap_err();
        assert_eq!(e.exit_code(), EXIT_BUSY);
        assert_eq!(
            e.to_string(),
            format!(
                "another upload ({id}, batch.csv, started 2026-11-22T10:00:00Z) is still being \
                 processed: submit one CSV at a time and wait for it to finish"
            )
        );
        assert_eq!(accounts, 0);
        assert!(!dir.join("other-results.csv").exists());
        assert_eq!(s.upload_states(), ["done"]);
    }

    #[test]
    fn a_header_that_is_not_the_templates_names_the_first_differing_column() {
        let p = Path::new("in/batch.csv");
        let swapped = "Local ID,ODS Code,First Name,Email Address,Last Name,Display Name,Job \
                       Title,Department,Site,Telephone,Mobile,Employee ID,Secondary Email\n";
        let e = read_batch(p, swapped.as_bytes()).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "in/batch.csv: line 1, column 3: the heading is \"First Name\" where the \
                 Portal's template has \"Email Address\""
            ),
            "{e}"
        );
        let short = "Local ID,ODS Code\n";
        let e = read_batch(p, short.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("column 3: the template's heading \"Email Address\" is missing"),
            "{e}"
        );
        let extra = format!("{},Result\n", TEMPLATE_HEADINGS.join(","));
        let e = read_batch(p, extra.as_bytes()).unwrap_err().to_string();
        assert!(
            e.contains("column 14: the heading \"Result\" is not in"),
            "{e}"
        );
        // A BOM is not part of the first heading; a short row names its line.
        let bom = format!("\u{feff}{}x,RXA\n", sample_template());
        let e = read_batch(p, bom.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("in/batch.csv: line 2: "), "{e}");
        // Nothing was processed: `run_ingest` reads the file before it takes the lock.
        let s = setup();
        let batch = s.dir.path().join("bad.csv");
        std::fs::write(&batch, swapped).unwrap();
        let e = run_ingest(
            &s.dir.path().join("d.toml"),
            &batch,
            &s.results(),
            &IngestOptions::default(),
            &mut |_| Ok(()),
        )
        .unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("bad.csv: line 1, column 3"), "{e}");
        assert!(s.upload_states().is_empty());
    }

    #[test]
    fn the_results_are_the_rows_as_read_with_a_result_cell() {
        let mut s = setup();
        let quoted: &[(&str, &str)] = &[
            ("Local ID", "q1"),
            ("ODS Code", "RXA"),
            ("First Name", "\"Mary, Ann\""),
            ("Last Name", "O'Neill"),
            ("Telephone", "'=1+1"),
        ];
        s.ingest(&[quoted]);
        let text = std::fs::read_to_string(s.results()).unwrap();
        assert_eq!(
            text,
            format!(
                "{},Result\nq1,RXA,,\"Mary, Ann\",O'Neill,,,,,'=1+1,,,,Success\n",
                TEMPLATE_HEADINGS.join(",")
            )
        );
        let a = s.by_local_id("q1");
        assert_eq!(&a.content.fields()[&Field::Telephone], "=1+1");
    }

    #[test]
    fn the_report_lists_every_account_by_ods_code_then_address_neutralised() {
        let mut s = setup();
        let zed: &[(&str, &str)] = &[
            ("Local ID", "z1"),
            ("ODS Code", "RXA"),
            ("First Name", "Zed"),
            ("Last Name", "Young"),
            ("Department", "-Cardiology"),
        ];
        let gp: &[(&str, &str)] = &[
            ("Local ID", "g1"),
            ("ODS Code", "RXA80"),
            ("First Name", "Al"),
            ("Last Name", "Bell"),
        ];
        s.ingest(&[gp, zed, ANN]);
        let report = String::from_utf8(render_report(&s.cfg, &s.accounts()).unwrap()).unwrap();
        let lines: Vec<&str> = report.lines().collect();
        assert_eq!(lines[0], REPORT_HEADINGS.join(","));
        assert_eq!(
            lines[1..],
            [
                "ann.lee@nhs.net,AF40AC76-1201,Ann,Lee,,Nurse,,,,'+447700900123,,,RXA,Northgate Trust,Active,",
                "zed.young@nhs.net,z1,Zed,Young,,,'-Cardiology,,,,,,RXA,Northgate Trust,Active,",
                "al.bell@nhs.net,g1,Al,Bell,,,,,,,,,RXA80,Northgate Practice,Active,",
            ]
        );
    }

    #[test]
    fn sample_template_is_the_shipped_example_templates_header() {
        let example = include_str!("../../../examples/portal/bulk-upload-template.csv");
        assert_eq!(
            sample_template().trim_end(),
            example.lines().next().unwrap().trim_end()
        );
    }
}
