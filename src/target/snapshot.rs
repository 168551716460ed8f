//! A JSON snapshot of the NHS Directory (`tansync.snapshot/v1`), documented in README.md:
//!
//! ```json
//! {"format": "tansync.snapshot/v1", "taken_at": "2026-11-22T09:00:00Z",
//!  "organisations": [{"ods_code": "RXA", "name": "…", "kind": "trust", "open": true, "cap": 50}],
//!  "persons": [{"target_id": "…", "external_id": "…", "ods_code": "RXA", "status": "active",
//!               "managed_by": "tansync-rxa", "email": "a.b@nhs.net",
//!               "leaver_since": "2026-11-12T09:00:00Z", "attributes": {"given_name": "…"}}]}
//! ```

use super::{Account, Target, TargetError, TargetState};
use crate::model::Organisation;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

pub const FORMAT: &str = "tansync.snapshot/v1";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSnapshot {
    format: String,
    #[serde(default)]
    #[allow(dead_code)]
    taken_at: Option<String>,
    organisations: Vec<Organisation>,
    #[serde(default)]
    persons: Vec<Account>,
}

/// Reads the directory state from a snapshot file.
#[derive(Clone, Debug)]
pub struct SnapshotTarget {
    pub path: PathBuf,
}

impl SnapshotTarget {
    pub fn parse(path: &str, text: &str) -> Result<TargetState, TargetError> {
        let invalid = |problem: String| TargetError::Invalid {
            path: path.to_string(),
            problem,
        };
        let raw: RawSnapshot = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if raw.format != FORMAT {
            return Err(invalid(format!(
                "format is {:?}; expected {FORMAT:?}",
                raw.format
            )));
        }
        let mut organisations = BTreeMap::new();
        for o in raw.organisations {
            let code = o.ods_code.clone();
            if organisations.insert(code.clone(), o).is_some() {
                return Err(invalid(format!("organisation {code} is listed twice")));
            }
        }
        let mut ids = BTreeSet::new();
        let mut anchors = BTreeSet::new();
        for a in &raw.persons {
            if !ids.insert(a.target_id.clone()) {
                return Err(invalid(format!(
                    "target_id {} is listed twice",
                    a.target_id
                )));
            }
            if let Some(x) = &a.external_id
                && !anchors.insert(x.clone())
            {
                return Err(invalid(format!("external_id {x} belongs to two accounts")));
            }
        }
        Ok(TargetState {
            organisations,
            accounts: raw.persons,
            refused: BTreeMap::new(),
        })
    }
}

impl Target for SnapshotTarget {
    fn kind(&self) -> &'static str {
        "snapshot"
    }

    async fn read_state(
        &self,
        _cancel: &tokio_util::sync::CancellationToken,
    ) -> Result<TargetState, TargetError> {
        let path = self.path.display().to_string();
        let text = tokio::fs::read_to_string(&self.path)
            .await
            .map_err(|source| TargetError::Io {
                path: path.clone(),
                source,
            })?;
        Self::parse(&path, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicates_and_wrong_format() {
        let org = r#"{"ods_code":"RXA","kind":"trust","open":true}"#;
        let p = |persons: &str| {
            SnapshotTarget::parse(
                "s.json",
                &format!(
                    r#"{{"format":"tansync.snapshot/v1","organisations":[{org}],"persons":[{persons}]}}"#
                ),
            )
        };
        let acc = r#"{"target_id":"t1","external_id":"x","ods_code":"RXA","status":"active"}"#;
        assert!(p(acc).is_ok());
        assert!(
            p(&format!("{acc},{acc}"))
                .unwrap_err()
                .to_string()
                .contains("listed twice")
        );
        let bad = r#"{"target_id":"t1","ods_code":"RXA","status":"gone"}"#;
        assert!(
            p(bad)
                .unwrap_err()
                .to_string()
                .starts_with("s.json: unknown variant `gone`")
        );
        assert!(SnapshotTarget::parse("s.json", r#"{"format":"v0","organisations":[]}"#).is_err());
    }
}
