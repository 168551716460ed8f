//! A JSON snapshot of the NHS Directory (`tansync.snapshot/v1`), documented in README.md
//! and defined in [`nhs_model::snapshot`] (the reference directory seeds from and
//! exports the same format):
//!
//! ```json
//! {"format": "tansync.snapshot/v1", "taken_at": "2026-11-22T09:00:00Z",
//!  "organisations": [{"ods_code": "RXA", "name": "…", "kind": "trust", "open": true, "cap": 50}],
//!  "persons": [{"target_id": "…", "external_id": "…", "ods_code": "RXA", "status": "active",
//!               "managed_by": "tansync-rxa", "email": "a.b@nhs.net",
//!               "leaver_since": "2026-11-12T09:00:00Z", "attributes": {"given_name": "…"}}]}
//! ```

use super::{Target, TargetError, TargetState};
use nhs_model::snapshot::Snapshot;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use nhs_model::snapshot::FORMAT;

/// Reads the directory state from a snapshot file.
#[derive(Clone, Debug)]
pub struct SnapshotTarget {
    pub path: PathBuf,
}

impl SnapshotTarget {
    /// The state from a snapshot's text (tests; `read_state` parses as it reads).
    #[cfg(test)]
    pub fn parse(path: &str, text: &str) -> Result<TargetState, TargetError> {
        Snapshot::parse(text)
            .map(Self::state)
            .map_err(invalid(path))
    }

    /// Open and parse the file. Parsed as it is read: the text of a large snapshot (15 MB
    /// at 51,000 accounts) is not held beside the accounts parsed from it, nor left as a
    /// hole in the heap under them (peak RSS of bench/ldap-plan.sh's plan: 198 -> 180
    /// MB). A read error is reported as the parse error it causes, with the file's path.
    fn load(file: &Path) -> Result<TargetState, TargetError> {
        let path = file.display().to_string();
        let f = std::fs::File::open(file).map_err(|source| TargetError::Io {
            path: path.clone(),
            source,
        })?;
        Snapshot::from_reader(std::io::BufReader::with_capacity(1 << 16, f))
            .map(Self::state)
            .map_err(invalid(&path))
    }

    fn state(raw: Snapshot) -> TargetState {
        let organisations = raw
            .organisations
            .into_iter()
            .map(|o| (o.ods_code.clone(), o))
            .collect();
        TargetState {
            organisations,
            accounts: raw.persons,
            refused: BTreeMap::new(),
            census: None,
        }
    }
}

fn invalid(path: &str) -> impl FnOnce(nhs_model::snapshot::SnapshotError) -> TargetError + '_ {
    move |e| TargetError::Invalid {
        path: path.to_string(),
        problem: e.to_string(),
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
        // Blocking file reads and parsing, off the async workers.
        let file = self.path.clone();
        tokio::task::spawn_blocking(move || Self::load(&file))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
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
