//! The NHSmail Portal as a target, through its CSV files (read side, template and
//! results): the **Mailbox Report** export is the directory's state, batches follow the
//! operator's **bulk-upload template**, and the Portal's **results file** says how each
//! row went.
//!
//! - [`columns`]: what a column means and the report's heading for each.
//! - [`report`]: a report → accounts (whole or an error).
//! - [`upload`]: the template, and batch files rendered from it.
//! - [`results`]: a returned results file → one outcome per row.
//!
//! Never does: talk to the Portal (a person downloads the report and uploads batches);
//! write anything from [`PortalTarget`] (it reads the report only — a dry run is
//! structural); read a cell without `restore` or write one without `neutralise`
//! ([`nhs_model::portal`]).

pub mod columns;
pub mod report;
pub mod results;
pub mod upload;

pub use columns::{Column, ReportColumns};
pub use results::{ResultRow, read_results};
pub use upload::{UploadRow, UploadTemplate};

use super::{Target, TargetError, TargetState};
use crate::ids::OdsCode;
use crate::model::Organisation;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// A CSV text with an optional UTF-8 byte-order mark.
fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Line numbers of records by their byte offset, counted as the file is read (the csv
/// crate's own line count lags by one after a CRLF record end).
struct Lines<'a> {
    text: &'a [u8],
    at: usize,
    line: u64,
}

impl<'a> Lines<'a> {
    /// For the text the csv reader was given.
    fn new(text: &'a str) -> Self {
        Self {
            text: text.as_bytes(),
            at: 0,
            line: 1,
        }
    }

    /// The line a record starting at `pos` begins on (offsets only grow as records are
    /// read; line ends before its first cell are skipped, as the reader skips them).
    fn of(&mut self, pos: Option<&csv::Position>) -> u64 {
        let mut to = pos.map_or(self.at, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
        while matches!(self.text.get(to), Some(b'\r' | b'\n')) {
            to += 1;
        }
        let to = to.min(self.text.len()).max(self.at);
        self.line += self.text[self.at..to]
            .iter()
            .filter(|b| **b == b'\n')
            .count() as u64;
        self.at = to;
        self.line
    }
}

/// A Portal CSV file read row by row (the report and results readers share it): the
/// header first, then each row with the line it starts on, every row as wide as the
/// header. Errors name the file and line (`FILE:LINE`).
struct CsvFile<'a> {
    shown: &'a str,
    lines: Lines<'a>,
    records: csv::StringRecordsIntoIter<&'a [u8]>,
    width: usize,
}

impl<'a> CsvFile<'a> {
    /// The file and its header row; `empty` says what an empty file should have started
    /// with.
    fn open(
        shown: &'a str,
        text: &'a str,
        empty: &str,
    ) -> Result<(Self, csv::StringRecord), TargetError> {
        let text = strip_bom(text);
        let mut records = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(text.as_bytes())
            .into_records();
        let header = match records.next() {
            Some(Ok(h)) => h,
            Some(Err(e)) => return Err(Self::invalid(shown, 1, format!("not CSV: {e}"))),
            None => {
                return Err(TargetError::Invalid {
                    path: shown.to_string(),
                    problem: format!("is empty: {empty}"),
                });
            }
        };
        let file = Self {
            shown,
            lines: Lines::new(text),
            records,
            width: header.len(),
        };
        Ok((file, header))
    }

    fn invalid(shown: &str, line: u64, problem: String) -> TargetError {
        TargetError::Invalid {
            path: format!("{shown}:{line}"),
            problem,
        }
    }

    /// The next row and its line.
    fn next_row(&mut self) -> Result<Option<(u64, csv::StringRecord)>, TargetError> {
        let rec = match self.records.next() {
            None => return Ok(None),
            Some(Ok(r)) => r,
            Some(Err(e)) => {
                let line = self.lines.of(e.position());
                return Err(Self::invalid(self.shown, line, format!("not CSV: {e}")));
            }
        };
        let line = self.lines.of(rec.position());
        if rec.len() != self.width {
            return Err(Self::invalid(
                self.shown,
                line,
                format!("{} cells where the header has {}", rec.len(), self.width),
            ));
        }
        Ok(Some((line, rec)))
    }
}

/// Where the Mailbox Report is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportLocation {
    File(PathBuf),
    /// A folder the exports are saved into: the newest `*.csv` by modification time.
    DropDir(PathBuf),
}

impl ReportLocation {
    pub fn path(&self) -> &Path {
        match self {
            ReportLocation::File(p) | ReportLocation::DropDir(p) => p,
        }
    }
}

/// Where the organisation registry comes from (the report has names only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OrganisationSource {
    /// A JSON list, as the SCIM target's `organisations_file`.
    File(PathBuf),
    Inline(Vec<Organisation>),
}

impl OrganisationSource {
    /// For messages.
    pub fn describe(&self) -> String {
        match self {
            OrganisationSource::File(p) => p.display().to_string(),
            OrganisationSource::Inline(_) => "[[target.organisations]]".into(),
        }
    }

    /// The registry.
    pub fn read(&self) -> Result<BTreeMap<OdsCode, Organisation>, TargetError> {
        match self {
            OrganisationSource::File(p) => {
                let path = p.display().to_string();
                let text = std::fs::read_to_string(p).map_err(|source| TargetError::Io {
                    path: path.clone(),
                    source,
                })?;
                super::organisations_from_json(&path, &text)
            }
            OrganisationSource::Inline(list) => Ok(list
                .iter()
                .map(|o| (o.ods_code.clone(), o.clone()))
                .collect()),
        }
    }
}

/// The Portal target's configuration (validated by the config stage).
#[derive(Clone, Debug)]
pub struct PortalSettings {
    pub report: ReportLocation,
    pub organisations: OrganisationSource,
    /// Organisations this agent manages (the sharing agreements' ODS codes): only their
    /// rows are read.
    pub managed: BTreeSet<OdsCode>,
    pub agent_id: String,
    /// The report's heading for each column (defaults + `[target.report_columns]`).
    pub report_columns: ReportColumns,
    /// Read and checked when the config loads.
    pub template: UploadTemplate,
    /// Batch files, manifest, worklists (created on first export).
    pub out_dir: PathBuf,
    /// Rows per batch file, 1..=10000 (default 100).
    pub batch_size: usize,
    /// The heading the Portal appends to a returned batch (default `Result`).
    pub results_column: String,
    /// Result cells meaning success, compared ignoring case.
    pub success_values: Vec<String>,
}

/// The default `success_values`.
pub fn default_success_values() -> Vec<String> {
    ["Success", "Succeeded", "Created", "Updated"]
        .map(String::from)
        .to_vec()
}

/// Rows per batch file unless configured.
pub const DEFAULT_BATCH_SIZE: usize = 100;

/// One Mailbox Report as read.
#[derive(Clone, Debug)]
pub struct Report {
    pub path: PathBuf,
    /// The file's modification time.
    pub modified: OffsetDateTime,
    /// `sha256:<hex>` of the file's bytes.
    pub sha256: String,
    pub state: TargetState,
    /// Rows skipped: their organisation is not managed here.
    pub other_organisations: usize,
}

/// The directory state from the Portal's Mailbox Report, read-only.
#[derive(Clone, Debug)]
pub struct PortalTarget {
    pub settings: Arc<PortalSettings>,
}

/// The newest `*.csv` (by modification time, then name) in a drop folder; hidden files
/// (a spreadsheet's lock file, say) are not candidates.
fn newest_csv(dir: &Path) -> Result<PathBuf, TargetError> {
    let shown = dir.display().to_string();
    let io = |source| TargetError::Io {
        path: shown.clone(),
        source,
    };
    let mut best: Option<(std::time::SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let csv = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
        if !csv || name.starts_with('.') {
            continue;
        }
        let meta = entry.metadata().map_err(io)?;
        if !meta.is_file() {
            continue;
        }
        let mtime = meta.modified().map_err(io)?;
        if best.as_ref().is_none_or(|(t, p)| (mtime, &path) > (*t, p)) {
            best = Some((mtime, path));
        }
    }
    best.map(|(_, p)| p).ok_or_else(|| TargetError::Invalid {
        path: shown.clone(),
        problem: "the drop folder holds no *.csv file: save the Portal's Mailbox Report \
                  export there"
            .into(),
    })
}

impl PortalTarget {
    /// The report file a read would use now (the newest in a drop folder).
    pub fn report_path(&self) -> Result<PathBuf, TargetError> {
        match &self.settings.report {
            ReportLocation::File(p) => Ok(p.clone()),
            ReportLocation::DropDir(d) => newest_csv(d),
        }
    }

    /// Read the Mailbox Report: whole or an error.
    pub fn read_report(&self) -> Result<Report, TargetError> {
        let path = self.report_path()?;
        let shown = path.display().to_string();
        let io = |source| TargetError::Io {
            path: shown.clone(),
            source,
        };
        let bytes = std::fs::read(&path).map_err(io)?;
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(io)?;
        let text = std::str::from_utf8(&bytes).map_err(|e| TargetError::Invalid {
            path: shown.clone(),
            problem: format!(
                "not UTF-8 (at byte {}): export the report as UTF-8 CSV",
                e.valid_up_to()
            ),
        })?;
        let registry = self.settings.organisations.read()?;
        let rows = report::parse_report(&shown, text, &self.settings, &registry)?;
        Ok(Report {
            sha256: format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
            modified: OffsetDateTime::from(modified),
            path,
            state: TargetState {
                organisations: registry,
                accounts: rows.accounts,
                refused: BTreeMap::new(),
                census: None,
            },
            other_organisations: rows.other_organisations,
        })
    }
}

impl Target for PortalTarget {
    fn kind(&self) -> &'static str {
        "portal_report"
    }

    async fn read_state(&self, _cancel: &CancellationToken) -> Result<TargetState, TargetError> {
        Ok(self.read_report()?.state)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::model::OrgKind;
    use nhs_model::portal::{REPORT_HEADINGS, TEMPLATE_HEADINGS};

    pub(crate) fn registry() -> BTreeMap<OdsCode, Organisation> {
        ["RXA", "RYY"]
            .into_iter()
            .map(|c| {
                let ods = OdsCode::parse(c).unwrap();
                (
                    ods.clone(),
                    Organisation {
                        ods_code: ods,
                        name: String::new(),
                        kind: OrgKind::Trust,
                        open: true,
                        cap: None,
                    },
                )
            })
            .collect()
    }

    /// Settings managing RXA and RXB (RXB is not in [`registry`]), with the sample template.
    pub(crate) fn settings() -> PortalSettings {
        let template = UploadTemplate::parse(
            Path::new("template.csv"),
            &TEMPLATE_HEADINGS.join(","),
            &BTreeMap::new(),
        )
        .unwrap();
        PortalSettings {
            report: ReportLocation::File("report.csv".into()),
            organisations: OrganisationSource::Inline(registry().into_values().collect()),
            managed: ["RXA", "RXB"]
                .into_iter()
                .map(|c| OdsCode::parse(c).unwrap())
                .collect(),
            agent_id: "tansync-test".into(),
            report_columns: ReportColumns::default(),
            template,
            out_dir: "out".into(),
            batch_size: DEFAULT_BATCH_SIZE,
            results_column: "Result".into(),
            success_values: default_success_values(),
        }
    }

    fn target(report: ReportLocation) -> PortalTarget {
        PortalTarget {
            settings: Arc::new(PortalSettings {
                report,
                ..settings()
            }),
        }
    }

    fn set_mtime(path: &Path, secs: u64) {
        let f = std::fs::File::options().write(true).open(path).unwrap();
        f.set_modified(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
            .unwrap();
    }

    #[test]
    fn a_report_file_is_read_with_its_time_and_hash() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.csv");
        let text = format!(
            "\u{feff}{}\na@nhs.net,x-1,A,B,,,,,,,,,RXA,,Active,\nb@nhs.net,x-2,A,B,,,,,,,,,RYY,,Active,\n",
            REPORT_HEADINGS.join(",")
        );
        std::fs::write(&path, &text).unwrap();
        set_mtime(&path, 1_800_000_000);
        let r = target(ReportLocation::File(path.clone()))
            .read_report()
            .unwrap();
        assert_eq!(r.path, path);
        assert_eq!(r.modified.unix_timestamp(), 1_800_000_000);
        assert_eq!(
            r.sha256,
            format!("sha256:{}", hex::encode(Sha256::digest(text.as_bytes())))
        );
        assert_eq!(r.state.accounts.len(), 1);
        assert_eq!(r.other_organisations, 1);
        assert_eq!(r.state.organisations.len(), 2);
    }

    #[test]
    fn a_drop_folder_gives_its_newest_csv_and_an_empty_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let t = target(ReportLocation::DropDir(dir.path().to_path_buf()));
        let e = t.read_report().unwrap_err().to_string();
        assert!(e.contains("holds no *.csv file"), "{e}");
        let header = REPORT_HEADINGS.join(",");
        for (name, secs, rows) in [
            ("old.csv", 100, "a@nhs.net,x-1,A,B,,,,,,,,,RXA,,Active,\n"),
            (
                "new.CSV",
                300,
                "a@nhs.net,x-1,A,B,,,,,,,,,RXA,,Active,\nb@nhs.net,x-2,A,B,,,,,,,,,RXA,,Active,\n",
            ),
            ("newer.txt", 900, ""),
            (".~lock.csv", 900, ""),
        ] {
            let p = dir.path().join(name);
            std::fs::write(&p, format!("{header}\n{rows}")).unwrap();
            set_mtime(&p, secs);
        }
        let r = t.read_report().unwrap();
        assert_eq!(r.path, dir.path().join("new.CSV"));
        assert_eq!(r.state.accounts.len(), 2);
    }

    #[test]
    fn the_registry_file_is_read_as_the_scim_targets_is() {
        let dir = tempfile::tempdir().unwrap();
        let orgs = dir.path().join("orgs.json");
        std::fs::write(
            &orgs,
            r#"[{"ods_code":"rxa","name":"N","kind":"trust","open":true}]"#,
        )
        .unwrap();
        let reg = OrganisationSource::File(orgs.clone()).read().unwrap();
        assert!(reg.contains_key(&OdsCode::parse("RXA").unwrap()));
        std::fs::write(&orgs, r#"[{"ods_code":"RXA"}]"#).unwrap();
        let e = OrganisationSource::File(orgs)
            .read()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("orgs.json") && e.contains("missing field"),
            "{e}"
        );
    }
}
