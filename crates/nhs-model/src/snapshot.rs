//! The directory snapshot format, `tansync.snapshot/v1`: the NHS Directory's state as
//! one JSON document — its organisation registry and its accounts, with their ids,
//! anchors (none: an unanchored account), status, leaver dates and attributes. The
//! agent plans from one (`[target] kind = "snapshot"`); the reference directory starts
//! from one (`seed`) and writes its state as one (`nhs-directory export`). Both parse
//! it here, so there is one definition of the format:
//!
//! ```json
//! {"format": "tansync.snapshot/v1", "taken_at": "2026-11-22T09:00:00Z",
//!  "organisations": [{"ods_code": "RXA", "name": "…", "kind": "trust", "open": true, "cap": 50}],
//!  "persons": [{"target_id": "…", "external_id": "…", "ods_code": "RXA", "status": "active",
//!               "managed_by": "tansync-rxa", "email": "a.b@nhs.net",
//!               "leaver_since": "2026-11-12T09:00:00Z", "attributes": {"given_name": "…"},
//!               "etag": "W/\"3\""}]}
//! ```

use crate::fieldmap::FieldMap;
use crate::ids::{ExternalId, OdsCode, TargetId};
use crate::org::Organisation;
use crate::status::Status;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use time::OffsetDateTime;

/// The `format` of a snapshot document.
pub const FORMAT: &str = "tansync.snapshot/v1";

/// One account as the directory holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    pub target_id: TargetId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
    pub ods_code: OdsCode,
    pub status: Status,
    /// The agent that manages the account (its `agent_id`), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// The NHSmail address allocated by the directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// When the account was marked leaver (RFC 3339).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub leaver_since: Option<OffsetDateTime>,
    #[serde(default)]
    pub attributes: FieldMap,
    /// Version tag for optimistic concurrency (SCIM ETag), where the target has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// A snapshot document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    pub format: String,
    /// When the state was read (free text; not interpreted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taken_at: Option<String>,
    pub organisations: Vec<Organisation>,
    #[serde(default)]
    pub persons: Vec<Account>,
}

/// Why a text is not a snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("format is {0:?}; expected {FORMAT:?}")]
    Format(String),
    #[error("organisation {0} is listed twice")]
    DuplicateOrganisation(OdsCode),
    #[error("target_id {0} is listed twice")]
    DuplicateTarget(TargetId),
    #[error("external_id {0} belongs to two accounts")]
    DuplicateAnchor(ExternalId),
}

impl Snapshot {
    /// Parse a snapshot and check what makes it one: the format, and no organisation,
    /// target id or anchor (compared ignoring case) listed twice.
    pub fn parse(text: &str) -> Result<Snapshot, SnapshotError> {
        serde_json::from_str::<Snapshot>(text)?.checked()
    }

    /// [`Snapshot::parse`] straight from a reader (buffer it), without holding the
    /// document's text beside what is parsed from it: a large directory's snapshot is
    /// tens of megabytes.
    pub fn from_reader(r: impl std::io::Read) -> Result<Snapshot, SnapshotError> {
        let mut s = serde_json::from_reader::<_, Snapshot>(r)?.checked()?;
        s.persons.shrink_to_fit();
        Ok(s)
    }

    fn checked(self) -> Result<Snapshot, SnapshotError> {
        let s = self;
        if s.format != FORMAT {
            return Err(SnapshotError::Format(s.format));
        }
        let mut codes = BTreeSet::new();
        for o in &s.organisations {
            if !codes.insert(&o.ods_code) {
                return Err(SnapshotError::DuplicateOrganisation(o.ods_code.clone()));
            }
        }
        let mut ids = BTreeSet::new();
        let mut anchors = BTreeSet::new();
        for a in &s.persons {
            if !ids.insert(&a.target_id) {
                return Err(SnapshotError::DuplicateTarget(a.target_id.clone()));
            }
            if let Some(x) = &a.external_id
                && !anchors.insert(x)
            {
                return Err(SnapshotError::DuplicateAnchor(x.clone()));
            }
        }
        Ok(s)
    }

    /// The document as written: pretty JSON with a final newline. The caller decides
    /// the order of organisations and persons.
    pub fn to_json(&self) -> String {
        // Plain data with string keys: serialising it cannot fail.
        let mut out = serde_json::to_string_pretty(self).unwrap_or_default();
        out.push('\n');
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(persons: &str) -> String {
        format!(
            r#"{{"format":"tansync.snapshot/v1","organisations":[{{"ods_code":"RXA","kind":"trust","open":true}}],"persons":[{persons}]}}"#
        )
    }

    #[test]
    fn snapshots_round_trip_and_refuse_duplicates() {
        let acc = r#"{"target_id":"t1","external_id":"AF40","ods_code":"rxa","status":"leaver","leaver_since":"2026-11-12T09:00:00Z","attributes":{"given_name":"Siân"},"etag":"W/\"3\""}"#;
        let s = Snapshot::parse(&doc(acc)).unwrap();
        assert_eq!(s.persons[0].ods_code.as_str(), "RXA");
        assert_eq!(s.persons[0].external_id.as_ref().unwrap().as_str(), "af40");
        assert_eq!(Snapshot::parse(&s.to_json()).unwrap(), s);

        let twice = |a: &str, b: &str| {
            Snapshot::parse(&doc(&format!("{a},{b}")))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(twice(acc, acc), "target_id t1 is listed twice");
        let other = acc.replace("\"t1\"", "\"t2\"").replace("AF40", "af40");
        assert_eq!(
            twice(acc, &other),
            "external_id af40 belongs to two accounts"
        );
        let e = Snapshot::parse(&doc(
            r#"{"target_id":"t1","ods_code":"RXA","status":"gone"}"#,
        ))
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("unknown variant `gone`"), "{e}");
        let e = Snapshot::parse(r#"{"format":"v0","organisations":[]}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "format is \"v0\"; expected \"tansync.snapshot/v1\""
        );
        let orgs = r#"{"format":"tansync.snapshot/v1","organisations":[{"ods_code":"RXA","kind":"trust","open":true},{"ods_code":"rxa","kind":"gp","open":true}]}"#;
        assert_eq!(
            Snapshot::parse(orgs).unwrap_err().to_string(),
            "organisation RXA is listed twice"
        );
    }

    /// Read from a reader, a snapshot is what `parse` makes of its text, with the same
    /// checks and errors (also for a document cut short).
    #[test]
    fn from_reader_parses_and_checks_as_parse_does() {
        let acc = r#"{"target_id":"t1","external_id":"AF40","ods_code":"rxa","status":"active","attributes":{"given_name":"Siân"}}"#;
        let other = acc.replace("\"t1\"", "\"t2\"").replace("AF40", "BF40");
        let text = doc(&format!("{acc},{other}"));
        let s = Snapshot::from_reader(text.as_bytes()).unwrap();
        assert_eq!(s, Snapshot::parse(&text).unwrap());
        assert_eq!(s.persons.len(), 2);
        let twice = doc(&format!("{acc},{acc}"));
        assert_eq!(
            Snapshot::from_reader(twice.as_bytes())
                .unwrap_err()
                .to_string(),
            "target_id t1 is listed twice"
        );
        let cut = &text[..text.len() - 3];
        let e = Snapshot::from_reader(cut.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(e.contains("EOF"), "{e}");
    }
}
