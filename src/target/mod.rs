//! Target stage (read side): the NHS Directory's actual state — its organisation registry
//! and the accounts in it — behind the [`Target`] trait.
//!
//! The trait is read-only on purpose: planning code holds a `Target`, never a [`Writer`],
//! so a dry run cannot write. Implementations: a JSON snapshot ([`snapshot`]), a live
//! SCIM 2.0 service ([`scim`]) and the NHSmail Portal's Mailbox Report CSV ([`portal`]). The write side, [`Writer`], sends one operation's request
//! and is held only by the push stage.

pub mod portal;
pub mod scim;
pub mod snapshot;

pub use nhs_model::Status;

use crate::ids::{ExternalId, OdsCode, TargetId};
use crate::model::Organisation;
use std::collections::BTreeMap;
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// One account as the directory holds it (the snapshot format's record, shared with the
/// reference directory).
pub use nhs_model::snapshot::Account;

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
    /// Set when `accounts` holds only some of the directory's accounts (a delta cycle
    /// plans against the changed people's and the unanchored ones, from the cache): the
    /// counts over all of them that the guards need. `None`: `accounts` is all of them.
    pub census: Option<Census>,
}

/// Counts over every account of the directory, for a state that holds only some.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Census {
    /// Accounts per organisation that count towards its cap (every status but deleted).
    pub held: BTreeMap<OdsCode, u32>,
    /// Anchored accounts per organisation managed by this agent (`managedBy`), of any
    /// status: the accounts the diff counts as managed where the agent manages the
    /// organisation (the mass-removal guard's percentage).
    pub managed: BTreeMap<OdsCode, u32>,
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
    #[error("reading {path} was stopped (shutdown requested)")]
    Cancelled { path: String },
}

/// An organisation registry file: a JSON list of organisations (the snapshot's
/// `organisations` entries), as `organisations_file` of the SCIM and Portal targets.
/// `path` names the file in errors.
pub fn organisations_from_json(
    path: &str,
    text: &str,
) -> Result<BTreeMap<OdsCode, Organisation>, TargetError> {
    let list: Vec<Organisation> = serde_json::from_str(text).map_err(|e| TargetError::Invalid {
        path: path.to_string(),
        problem: e.to_string(),
    })?;
    Ok(list.into_iter().map(|o| (o.ods_code.clone(), o)).collect())
}

/// Read access to the NHS Directory.
pub trait Target {
    /// `snapshot`, `scim`, … (plan JSON `target.kind`).
    fn kind(&self) -> &'static str;
    /// Read the organisations and accounts. Complete or an error; stops (with
    /// [`TargetError::Cancelled`]) when `cancel` fires, also during a retry's wait.
    fn read_state(
        &self,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<TargetState, TargetError>> + Send;

    /// The accounts holding these anchors (a delta cycle's directory side: the changed
    /// people only, not every account), from the organisations a full read covers.
    /// Default: a full read, filtered.
    fn accounts_with(
        &self,
        anchors: &std::collections::BTreeSet<ExternalId>,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<Vec<Account>, TargetError>> {
        async move {
            let state = self.read_state(cancel).await?;
            Ok(state
                .accounts
                .into_iter()
                .filter(|a| a.external_id.as_ref().is_some_and(|x| anchors.contains(x)))
                .collect())
        }
    }
}

/// Write access to the NHS Directory: the calls the push stage makes for one operation.
/// Only `apply` ever holds one (see [`scim::ScimWriter`]; tests use in-memory fakes).
pub trait Writer: Send + Sync + 'static {
    /// Create an account; the directory's id for it when it says.
    fn create(
        &self,
        user: &crate::scim::User,
    ) -> impl Future<Output = Result<Option<String>, scim::CallError>> + Send;
    /// Apply a PATCH, conditional on `if_match` when given.
    fn patch(
        &self,
        id: &TargetId,
        if_match: Option<&str>,
        req: &crate::scim::PatchRequest,
    ) -> impl Future<Output = Result<(), scim::CallError>> + Send;
    /// The account holding this anchor, if exactly one does.
    fn find_by_external_id(
        &self,
        xid: &ExternalId,
    ) -> impl Future<Output = Result<Option<crate::scim::User>, scim::CallError>> + Send;
    /// One account with its version tag.
    fn get(
        &self,
        id: &TargetId,
    ) -> impl Future<Output = Result<(crate::scim::User, Option<String>), scim::CallError>> + Send;
}

/// The configured target (read side).
pub enum AnyTarget {
    Snapshot(snapshot::SnapshotTarget),
    Scim(Box<scim::ScimTarget>),
    Portal(portal::PortalTarget),
}

impl AnyTarget {
    /// Where the state is read from, for messages.
    pub fn location(&self) -> String {
        match self {
            AnyTarget::Snapshot(s) => s.path.display().to_string(),
            AnyTarget::Scim(s) => s.url().to_string(),
            AnyTarget::Portal(p) => p.settings.report.path().display().to_string(),
        }
    }
}

impl Target for AnyTarget {
    fn kind(&self) -> &'static str {
        match self {
            AnyTarget::Snapshot(s) => s.kind(),
            AnyTarget::Scim(s) => s.kind(),
            AnyTarget::Portal(p) => p.kind(),
        }
    }

    async fn read_state(&self, cancel: &CancellationToken) -> Result<TargetState, TargetError> {
        match self {
            AnyTarget::Snapshot(s) => s.read_state(cancel).await,
            AnyTarget::Scim(s) => s.read_state(cancel).await,
            AnyTarget::Portal(p) => p.read_state(cancel).await,
        }
    }

    async fn accounts_with(
        &self,
        anchors: &std::collections::BTreeSet<ExternalId>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Account>, TargetError> {
        match self {
            AnyTarget::Snapshot(s) => s.accounts_with(anchors, cancel).await,
            AnyTarget::Scim(s) => s.accounts_with(anchors, cancel).await,
            AnyTarget::Portal(p) => p.accounts_with(anchors, cancel).await,
        }
    }
}
