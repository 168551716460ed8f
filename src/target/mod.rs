//! Target stage (read side): the NHS Directory's actual state — its organisation registry
//! and the accounts in it — behind the [`Target`] trait.
//!
//! The trait is read-only on purpose: planning code holds a `Target`, never a writer, so a
//! dry run cannot write (`../shared/DESIGN.md`, "Pipeline"). The first implementation reads
//! a JSON snapshot ([`snapshot`]); a live SCIM implementation plugs in behind the same trait.

pub mod scim;
pub mod snapshot;

pub use nhs_model::Status;

use crate::ids::{ExternalId, OdsCode, TargetId};
use crate::model::{Field, Organisation};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::future::Future;
use time::OffsetDateTime;

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
    pub attributes: BTreeMap<Field, String>,
    /// Version tag for optimistic concurrency (SCIM ETag), where the target has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
}

/// The directory's state a plan starts from.
#[derive(Clone, Debug, Default)]
pub struct TargetState {
    pub organisations: BTreeMap<OdsCode, Organisation>,
    pub accounts: Vec<Account>,
    /// Organisations whose accounts the directory refused to show this agent (HTTP 403:
    /// it holds no agreement for them), with its answer. Their accounts are unknown, so
    /// the gate blocks every operation touching them — fail closed for that organisation
    /// while the others go on.
    pub refused: BTreeMap<OdsCode, String>,
}

#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("cannot read {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {problem}")]
    Invalid { path: String, problem: String },
}

/// Read access to the NHS Directory.
pub trait Target {
    /// `snapshot`, `scim`, … (plan JSON `target.kind`).
    fn kind(&self) -> &'static str;
    /// Read the organisations and accounts. Complete or an error.
    fn read_state(&self) -> impl Future<Output = Result<TargetState, TargetError>> + Send;
}

/// The configured target (read side).
pub enum AnyTarget {
    Snapshot(snapshot::SnapshotTarget),
    Scim(Box<scim::ScimTarget>),
}

impl AnyTarget {
    /// Where the state is read from, for messages.
    pub fn location(&self) -> String {
        match self {
            AnyTarget::Snapshot(s) => s.path.display().to_string(),
            AnyTarget::Scim(s) => s.url().to_string(),
        }
    }
}

impl Target for AnyTarget {
    fn kind(&self) -> &'static str {
        match self {
            AnyTarget::Snapshot(s) => s.kind(),
            AnyTarget::Scim(s) => s.kind(),
        }
    }

    async fn read_state(&self) -> Result<TargetState, TargetError> {
        match self {
            AnyTarget::Snapshot(s) => s.read_state().await,
            AnyTarget::Scim(s) => s.read_state().await,
        }
    }
}
