//! What a Portal CSV column means, by name, and which heading the Mailbox Report uses for
//! each: the defaults are [`nhs_model::portal::REPORT_HEADINGS`], overridden per column
//! by `[target.report_columns]` (name → heading, `""` = the report has no such column).
//!
//! Never does: guess a column by position. Columns are found by heading only (compared
//! ignoring surrounding space and ASCII case), so a report's column order and extra
//! columns do not matter, and a missing or doubled heading is an error naming it.

use crate::model::Field;
use std::collections::BTreeMap;

/// A column's meaning (report and upload share it).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Column {
    /// The ExternalSyncID (`Account.external_id`): the anchor updates match on.
    LocalId,
    /// The NHSmail address the directory allocated (`Account.email`, `target_id`).
    NhsmailAddress,
    OdsCode,
    /// The organisation's name (informational; never read).
    OrganisationName,
    Status,
    LeaverDate,
    Field(Field),
    /// A template column always left blank (`[target.upload_columns] "Heading" = ""`).
    Blank,
}

/// Columns a report must have: without them an account cannot be told apart or placed.
pub const MANDATORY_REPORT: [Column; 4] = [
    Column::NhsmailAddress,
    Column::LocalId,
    Column::OdsCode,
    Column::Status,
];

impl Column {
    /// Every named column (not [`Column::Blank`]), in the report's default order.
    pub fn all() -> impl Iterator<Item = Column> {
        nhs_model::portal::REPORT_HEADINGS
            .iter()
            .filter_map(|h| Column::by_default_heading(h))
    }

    /// The configuration name: `local_id`, `nhsmail_address`, …, the field names; `""`
    /// for [`Column::Blank`].
    pub fn name(self) -> &'static str {
        match self {
            Column::LocalId => "local_id",
            Column::NhsmailAddress => "nhsmail_address",
            Column::OdsCode => "ods_code",
            Column::OrganisationName => "organisation_name",
            Column::Status => "status",
            Column::LeaverDate => "leaver_date",
            Column::Field(f) => f.name(),
            Column::Blank => "",
        }
    }

    /// A column by its configuration name (not `""`).
    pub fn parse(name: &str) -> Option<Column> {
        Column::all().find(|c| c.name() == name.trim())
    }

    /// The heading the reference directory (and the Portal's defaults) give it.
    pub fn default_heading(self) -> Option<&'static str> {
        Some(match self {
            Column::LocalId => "Local ID",
            Column::NhsmailAddress => "Email Address",
            Column::OdsCode => "ODS Code",
            Column::OrganisationName => "Organisation",
            Column::Status => "Status",
            Column::LeaverDate => "Leaver Date",
            Column::Field(f) => nhs_model::portal::field_heading(f),
            Column::Blank => return None,
        })
    }

    /// The column a default heading stands for (compared as [`same_heading`]).
    pub fn by_default_heading(heading: &str) -> Option<Column> {
        let fixed = [
            Column::LocalId,
            Column::NhsmailAddress,
            Column::OdsCode,
            Column::OrganisationName,
            Column::Status,
            Column::LeaverDate,
        ];
        fixed
            .into_iter()
            .chain(Field::ALL.into_iter().map(Column::Field))
            .find(|c| {
                c.default_heading()
                    .is_some_and(|d| same_heading(d, heading))
            })
    }

    /// A list of every configuration name, for error messages.
    pub fn names() -> String {
        Column::all()
            .map(Column::name)
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Headings compare ignoring surrounding space and ASCII case (a spreadsheet round trip
/// may change either).
pub fn same_heading(a: &str, b: &str) -> bool {
    a.trim().eq_ignore_ascii_case(b.trim())
}

/// A column mapping problem: the configuration name (or heading) and what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{problem}")]
pub struct ColumnError {
    /// The `[target.report_columns]` name the problem is about.
    pub name: String,
    pub problem: String,
}

/// The Mailbox Report's heading for each column it is read by.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportColumns {
    headings: BTreeMap<Column, String>,
}

impl Default for ReportColumns {
    fn default() -> Self {
        Self {
            headings: Column::all()
                .filter_map(|c| Some((c, c.default_heading()?.to_string())))
                .collect(),
        }
    }
}

impl ReportColumns {
    /// The defaults with `[target.report_columns]` applied: name → heading, `""` = the
    /// report has no such column (refused for the mandatory ones).
    pub fn new(overrides: &BTreeMap<String, String>) -> Result<Self, ColumnError> {
        let mut out = Self::default();
        for (name, heading) in overrides {
            let err = |problem: String| ColumnError {
                name: name.clone(),
                problem,
            };
            let c = Column::parse(name).ok_or_else(|| {
                err(format!(
                    "unknown column name; expected one of {}",
                    Column::names()
                ))
            })?;
            if heading.trim().is_empty() {
                if MANDATORY_REPORT.contains(&c) {
                    return Err(err(format!(
                        "the report must have a {name} column (it is mandatory); give its heading"
                    )));
                }
                out.headings.remove(&c);
            } else {
                out.headings.insert(c, heading.trim().to_string());
            }
        }
        let mut seen: BTreeMap<String, Column> = BTreeMap::new();
        for (c, h) in &out.headings {
            if let Some(other) = seen.insert(h.to_ascii_lowercase(), *c) {
                return Err(ColumnError {
                    name: c.name().to_string(),
                    problem: format!(
                        "heading {h:?} is also the heading of {}: each column needs its own",
                        other.name()
                    ),
                });
            }
        }
        Ok(out)
    }

    /// The heading a column is read from, if the report has it.
    pub fn heading(&self, c: Column) -> Option<&str> {
        self.headings.get(&c).map(String::as_str)
    }

    /// Every column read, with its heading.
    pub fn iter(&self) -> impl Iterator<Item = (Column, &str)> {
        self.headings.iter().map(|(c, h)| (*c, h.as_str()))
    }

    /// Where each configured column is in a header row: every configured heading must be
    /// there exactly once (the error names the heading and its configuration name).
    /// The organisation's name is never read, so it is never required.
    pub fn locate(&self, header: &[&str]) -> Result<BTreeMap<Column, usize>, String> {
        let mut at = BTreeMap::new();
        for (c, h) in self.iter().filter(|(c, _)| *c != Column::OrganisationName) {
            let mut found = header
                .iter()
                .enumerate()
                .filter(|(_, cell)| same_heading(cell, h));
            match (found.next(), found.next()) {
                (Some((i, _)), None) => {
                    at.insert(c, i);
                }
                (None, _) => {
                    return Err(format!(
                        "no column {h:?} ({}{}) in the header",
                        c.name(),
                        if c.default_heading() == Some(h) {
                            ""
                        } else {
                            ", from [target.report_columns]"
                        }
                    ));
                }
                (Some((i, _)), Some((j, _))) => {
                    return Err(format!(
                        "column {h:?} ({}) appears twice in the header (columns {} and {})",
                        c.name(),
                        i + 1,
                        j + 1
                    ));
                }
            }
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhs_model::portal::REPORT_HEADINGS;

    fn overrides(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_the_report_headings() {
        let cols = ReportColumns::default();
        let mut headings: Vec<&str> = cols.iter().map(|(_, h)| h).collect();
        headings.sort_unstable();
        let mut want = REPORT_HEADINGS.to_vec();
        want.sort_unstable();
        assert_eq!(headings, want);
        assert_eq!(cols.heading(Column::LocalId), Some("Local ID"));
        assert_eq!(
            cols.heading(Column::Field(Field::Email)),
            Some("Secondary Email")
        );
        let at = cols.locate(&REPORT_HEADINGS).unwrap();
        assert_eq!(at[&Column::NhsmailAddress], 0);
        assert_eq!(at[&Column::LeaverDate], 15);
        assert!(!at.contains_key(&Column::OrganisationName), "never read");
        let without: Vec<&str> = REPORT_HEADINGS
            .iter()
            .copied()
            .filter(|h| *h != "Organisation")
            .collect();
        assert!(cols.locate(&without).is_ok(), "never required");
        // Every name parses back to its column.
        for c in Column::all() {
            assert_eq!(Column::parse(c.name()), Some(c));
        }
        assert_eq!(Column::all().count(), 16);
    }

    #[test]
    fn an_override_renames_or_drops_a_column() {
        let cols = ReportColumns::new(&overrides(&[
            ("job_title", "Role"),
            ("leaver_date", ""),
            ("organisation_name", ""),
        ]))
        .unwrap();
        assert_eq!(cols.heading(Column::Field(Field::JobTitle)), Some("Role"));
        assert_eq!(cols.heading(Column::LeaverDate), None);
        let header = [
            " email address ",
            "LOCAL ID",
            "ODS Code",
            "Status",
            "Role",
            "First Name",
            "Last Name",
            "Display Name",
            "Department",
            "Site",
            "Telephone",
            "Mobile",
            "Employee ID",
            "Secondary Email",
            "Extra",
        ];
        let at = cols.locate(&header).unwrap();
        assert_eq!(at[&Column::Field(Field::JobTitle)], 4);
        assert_eq!(at[&Column::NhsmailAddress], 0);
        assert!(!at.contains_key(&Column::LeaverDate));
    }

    #[test]
    fn an_unknown_name_or_a_dropped_mandatory_column_is_refused() {
        let e = ReportColumns::new(&overrides(&[("jobtitle", "Role")])).unwrap_err();
        assert_eq!(e.name, "jobtitle");
        assert!(e.problem.contains("unknown column name"), "{e}");
        assert!(e.problem.contains("job_title"), "{e}");
        let e = ReportColumns::new(&overrides(&[("local_id", " ")])).unwrap_err();
        assert!(e.problem.contains("mandatory"), "{e}");
        let e = ReportColumns::new(&overrides(&[("site", "Department")])).unwrap_err();
        assert!(e.problem.contains("also the heading"), "{e}");
    }

    #[test]
    fn a_missing_or_doubled_mapped_column_names_the_heading() {
        let cols = ReportColumns::new(&overrides(&[("job_title", "Role")])).unwrap();
        let e = cols.locate(&REPORT_HEADINGS).unwrap_err();
        assert!(
            e.contains("\"Role\"") && e.contains("job_title") && e.contains("report_columns"),
            "{e}"
        );
        let mut doubled = REPORT_HEADINGS.to_vec();
        doubled.push("status");
        let e = ReportColumns::default().locate(&doubled).unwrap_err();
        assert!(e.contains("\"Status\"") && e.contains("twice"), "{e}");
    }
}
