//! The Mailbox Report CSV → the accounts of the organisations this agent manages.
//!
//! Whole or an error, as a SCIM read is: the report is the claim about who the directory
//! holds, and removals and provisions follow from it. Every row is checked (address,
//! Local ID, ODS code, status, leaver date; addresses and Local IDs unique across the
//! file); rows of organisations not managed here are then skipped and counted; a managed
//! row's organisation must be in the registry. Values are normalised as the SCIM target
//! normalises a user's (`nhs_model::scim::User::fields`): a blank cell is an absent
//! attribute, anything else is kept as written (the diff compares as the directory
//! does); the address is lowercased.
//!
//! Never does: read a column by position; keep part of a report that failed a check;
//! read a cell without [`nhs_model::portal::restore`].

use super::columns::Column;
use super::{CsvFile, PortalSettings};
use crate::ids::{ExternalId, OdsCode, TargetId};
use crate::model::{Field, FieldMap, Organisation};
use crate::target::{Account, Status, TargetError};
use nhs_model::portal::restore;
use std::collections::{BTreeMap, HashMap};
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

/// A report's managed accounts (sorted by target id) and the number of rows skipped
/// because their organisation is not managed here.
#[derive(Debug)]
pub struct ReportRows {
    pub accounts: Vec<Account>,
    pub other_organisations: usize,
}

/// `RFC 3339`, or `YYYY-MM-DD` (midnight UTC).
fn leaver_date(s: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(s, &Rfc3339).ok().or_else(|| {
        Date::parse(s, format_description!("[year]-[month]-[day]"))
            .ok()
            .map(|d| d.midnight().assume_utc())
    })
}

/// Parse a report's text (`shown` names the file in errors, as `FILE:LINE`).
pub fn parse_report(
    shown: &str,
    text: &str,
    settings: &PortalSettings,
    registry: &BTreeMap<OdsCode, Organisation>,
) -> Result<ReportRows, TargetError> {
    let invalid = |at: String, problem: String| TargetError::Invalid { path: at, problem };
    let (mut file, header) =
        CsvFile::open(shown, text, "a Mailbox Report starts with its header row")?;
    let header: Vec<&str> = header.iter().collect();
    let at = settings
        .report_columns
        .locate(&header)
        .map_err(|p| invalid(format!("{shown}:1"), p))?;
    let heading = |c: Column| settings.report_columns.heading(c).unwrap_or_default();

    let mut by_address: HashMap<String, u64> = HashMap::new();
    let mut by_local_id: HashMap<ExternalId, u64> = HashMap::new();
    let mut accounts = Vec::new();
    let mut other_organisations = 0;
    while let Some((line, rec)) = file.next_row()? {
        let here = || format!("{shown}:{line}");
        let bad =
            |c: Column, problem: String| invalid(here(), format!("{:?}: {problem}", heading(c)));
        let cell = |c: Column| {
            at.get(&c)
                .and_then(|i| rec.get(*i))
                .map(restore)
                .unwrap_or_default()
        };

        let address = cell(Column::NhsmailAddress).trim();
        if address.is_empty() {
            return Err(bad(Column::NhsmailAddress, "is empty".into()));
        }
        let address = crate::model::validate::email(address)
            .map_err(|(_, why)| bad(Column::NhsmailAddress, why))?;
        if let Some(first) = by_address.insert(address.clone(), line) {
            return Err(bad(
                Column::NhsmailAddress,
                format!("{address:?} is also on line {first}: each address is one mailbox"),
            ));
        }
        let local = cell(Column::LocalId).trim();
        let external_id = if local.is_empty() {
            None
        } else {
            let x = ExternalId::parse(local).map_err(|e| bad(Column::LocalId, e.to_string()))?;
            if let Some(first) = by_local_id.insert(x.clone(), line) {
                return Err(bad(
                    Column::LocalId,
                    format!(
                        "{local:?} is also the Local ID on line {first} (compared ignoring \
                         case): a Local ID anchors one account"
                    ),
                ));
            }
            Some(x)
        };
        let ods_code = OdsCode::parse(cell(Column::OdsCode))
            .map_err(|e| bad(Column::OdsCode, e.to_string()))?;
        let status_text = cell(Column::Status);
        let status = Status::parse(status_text).ok_or_else(|| {
            bad(
                Column::Status,
                format!(
                    "unknown status {status_text:?}; expected one of Pending, Active, Leaver, \
                     Inactive, Deleted"
                ),
            )
        })?;
        let leaver = cell(Column::LeaverDate).trim();
        let leaver_since = if leaver.is_empty() {
            None
        } else {
            Some(leaver_date(leaver).ok_or_else(|| {
                bad(
                    Column::LeaverDate,
                    format!("{leaver:?} is not a date (YYYY-MM-DD or RFC 3339)"),
                )
            })?)
        };
        if !settings.managed.contains(&ods_code) {
            other_organisations += 1;
            continue;
        }
        if !registry.contains_key(&ods_code) {
            return Err(bad(
                Column::OdsCode,
                format!(
                    "organisation {ods_code} is not in the organisation registry ({}): add it \
                     there",
                    settings.organisations.describe()
                ),
            ));
        }
        let attributes: FieldMap = Field::ALL
            .into_iter()
            .filter_map(|f| {
                let v = cell(Column::Field(f));
                (!v.trim().is_empty()).then(|| (f, v.to_string()))
            })
            .collect();
        accounts.push(Account {
            target_id: TargetId::parse(&address)
                .map_err(|e| bad(Column::NhsmailAddress, e.to_string()))?,
            managed_by: external_id.as_ref().map(|_| settings.agent_id.clone()),
            external_id,
            ods_code,
            status,
            email: Some(address),
            leaver_since,
            attributes,
            etag: None,
        });
    }
    accounts.sort_by(|a, b| a.target_id.cmp(&b.target_id));
    Ok(ReportRows {
        accounts,
        other_organisations,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::target::portal::tests::{registry, settings};
    use nhs_model::portal::REPORT_HEADINGS;

    fn parse(rows: &[&str]) -> Result<ReportRows, TargetError> {
        let text = format!("{}\r\n{}", REPORT_HEADINGS.join(","), rows.join("\r\n"));
        parse_report("report.csv", &text, &settings(), &registry())
    }

    fn err(rows: &[&str]) -> String {
        parse(rows).unwrap_err().to_string()
    }

    // Email Address,Local ID,First Name,Last Name,Display Name,Job Title,Department,Site,
    // Telephone,Mobile,Employee ID,Secondary Email,ODS Code,Organisation,Status,Leaver Date
    const JO: &str = "Jo.Bloggs@NHS.net,AF40AC76-1201-4205-83fb-a1707109e8b4,Jo,Bloggs,Jo Bloggs,Nurse,,  ,,'+447700900123,NG1,,rxa,Northgate,active,";
    const AL: &str = "al.smith@nhs.net,,Al,Smith,,,,,,,,,RXA,Northgate,LEAVER,2026-11-01";
    const OTHER: &str = "x.y@nhs.net,other-1,X,Y,,,,,,,,,RYY,Elsewhere,Active,";

    #[test]
    fn rows_become_accounts_normalised_as_scim_users_are() {
        let r = parse(&[JO, AL, OTHER]).unwrap();
        assert_eq!(r.other_organisations, 1);
        assert_eq!(r.accounts.len(), 2);
        let al = &r.accounts[0];
        assert_eq!(al.target_id.as_str(), "al.smith@nhs.net");
        assert_eq!(al.external_id, None);
        assert_eq!(al.managed_by, None, "unanchored: not managed");
        assert_eq!(al.status, Status::Leaver);
        assert_eq!(
            al.leaver_since,
            Some(time::macros::datetime!(2026-11-01 00:00 UTC))
        );
        let jo = &r.accounts[1];
        assert_eq!(jo.target_id.as_str(), "jo.bloggs@nhs.net");
        assert_eq!(jo.email.as_deref(), Some("jo.bloggs@nhs.net"));
        assert_eq!(
            jo.external_id.as_ref().map(ExternalId::as_str),
            Some("af40ac76-1201-4205-83fb-a1707109e8b4")
        );
        assert_eq!(jo.managed_by.as_deref(), Some("tansync-test"));
        assert_eq!(jo.ods_code.as_str(), "RXA");
        assert_eq!(jo.status, Status::Active);
        assert_eq!(jo.leaver_since, None);
        assert_eq!(jo.etag, None);
        let want: BTreeMap<Field, String> = [
            (Field::GivenName, "Jo"),
            (Field::FamilyName, "Bloggs"),
            (Field::DisplayName, "Jo Bloggs"),
            (Field::JobTitle, "Nurse"),
            (Field::Mobile, "+447700900123"),
            (Field::EmployeeId, "NG1"),
        ]
        .into_iter()
        .map(|(f, v)| (f, v.to_string()))
        .collect();
        assert_eq!(
            jo.attributes,
            want.into_iter().collect(),
            "blank = absent; the mobile is restored"
        );
    }

    #[test]
    fn columns_are_found_by_heading_in_any_order_with_extras() {
        let text = "Status,ODS Code,Local ID,Email Address,Pager,Last Name,First Name,Display Name,Job Title,Department,Site,Telephone,Mobile,Employee ID,Secondary Email,Organisation,Leaver Date\n\
                    Active,RXA,x-1,a@nhs.net,123,Smith,Al,,,,,,,,,,\n";
        let r = parse_report("report.csv", text, &settings(), &registry()).unwrap();
        assert_eq!(&r.accounts[0].attributes[&Field::FamilyName], "Smith");
        assert!(!r.accounts[0].attributes.values().any(|v| v == "123"));
    }

    #[test]
    fn a_bad_row_is_an_error_naming_file_line_and_problem() {
        let cases: &[(&[&str], &str)] = &[
            (
                &[JO, &JO.replace("rxa", "RXA")],
                "report.csv:3: \"Email Address\": \"jo.bloggs@nhs.net\" is also on line 2",
            ),
            (
                &[JO, &JO.replace("Jo.Bloggs@", "jo.b2@")],
                "report.csv:3: \"Local ID\": \"AF40AC76-1201-4205-83fb-a1707109e8b4\" is also the Local ID on line 2",
            ),
            (
                &[&AL.replace("LEAVER", "gone")],
                "report.csv:2: \"Status\": unknown status \"gone\"",
            ),
            (&[&AL.replace("RXA", "R-1")], "report.csv:2: \"ODS Code\": "),
            (
                &[&AL.replace("2026-11-01", "01/11/2026")],
                "report.csv:2: \"Leaver Date\": \"01/11/2026\" is not a date",
            ),
            (
                &[&AL.replace("al.smith@nhs.net", "")],
                "report.csv:2: \"Email Address\": is empty",
            ),
            (
                &[&AL.replace("al.smith@nhs.net", "al smith")],
                "report.csv:2: \"Email Address\": email",
            ),
            (
                &[&AL.replace("RXA", "RXB")],
                "report.csv:2: \"ODS Code\": organisation RXB is not in the organisation registry",
            ),
            (
                &["a@nhs.net,,x"],
                "report.csv:2: 3 cells where the header has 16",
            ),
        ];
        for (rows, want) in cases {
            let e = err(rows);
            assert!(e.starts_with(want), "{e}\n  wanted {want}");
        }
        // A row of another organisation is checked too before it is skipped.
        assert!(err(&[&OTHER.replace("Active", "?")]).contains("unknown status"));
    }

    #[test]
    fn a_header_without_a_mandatory_or_mapped_column_is_refused() {
        for missing in [
            "Email Address",
            "Local ID",
            "ODS Code",
            "Status",
            "Job Title",
        ] {
            let header: Vec<&str> = REPORT_HEADINGS
                .iter()
                .copied()
                .filter(|h| *h != missing)
                .collect();
            let e = parse_report(
                "report.csv",
                &format!("{}\n", header.join(",")),
                &settings(),
                &registry(),
            )
            .unwrap_err()
            .to_string();
            assert!(
                e.starts_with(&format!("report.csv:1: no column {missing:?}")),
                "{e}"
            );
        }
        let e = parse_report("report.csv", "", &settings(), &registry())
            .unwrap_err()
            .to_string();
        assert!(e.contains("is empty"), "{e}");
    }
}
