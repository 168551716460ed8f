//! The engine: whole runs as library calls that return typed reports — what every front
//! end (the command line today, the daemon next) calls, parses nothing and prints nothing.
//!
//! - [`read`]: read the source through the filter and model stages ([`read::collect`]).
//! - [`plan`]: read → decide → plan ([`plan::plan`]); [`plan::decide`] is the pure part
//!   (diff, gate, write-back, fingerprint) over already-read state.
//! - [`apply`]: reconcile interrupted runs, make a fresh plan, refuse a stale or changed
//!   reviewed plan, approvals, quarantine, run records, push, write-back.
//! - [`explain`] and [`check`]: the same stage calls as a plan, reported for one person or
//!   for the deployment.
//!
//! One cancellation token (the caller's shutdown) reaches the source read, the target
//! read and its retry waits, and the push. Planning holds no write-capable client: only
//! [`apply`] makes a [`crate::target::Writer`].

pub mod apply;
pub mod audit;
pub mod check;
pub mod deploy_check;
pub mod explain;
pub mod history;
pub mod plan;
pub mod portal;
pub mod read;

pub use crate::push::{Outcome, PushProgress};
use crate::source::SourceError;
use crate::state::StateError;
use crate::target::TargetError;

/// Why a run did not happen or did not finish.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("reading the source failed, so no plan was made")]
    Source(#[from] SourceError),
    #[error("reading the NHS Directory state failed, so no plan was made")]
    Target(#[from] TargetError),
    /// Nothing in scope: no entries, or none the rules include.
    #[error(
        "the source returned no one in scope ({read} entries read, none of them included by the rules) while the directory holds {managed} accounts this agent manages; refusing to plan their removal (set safety.allow_empty_source = true if this is really intended)"
    )]
    EmptySource { managed: usize, read: usize },
    /// Entries were in scope, but every one was rejected (`reasons`: each reason code
    /// with its count, e.g. `missing_mandatory: 3, invalid_mobile: 1`).
    #[error(
        "every entry in scope was rejected ({rejected} rejected: {reasons}), so no one is left in scope while the directory holds {managed} accounts this agent manages; refusing to plan their removal (`tansync explain` shows why an entry was rejected; set safety.allow_empty_source = true if this is really intended)"
    )]
    AllRejected {
        managed: usize,
        rejected: usize,
        reasons: String,
    },
    #[error(transparent)]
    State(#[from] StateError),
    #[error(
        "applying needs a SCIM target: set [target] kind = \"scim\" (a snapshot can only be planned from)"
    )]
    NotWritable,
    #[error("SCIM client: {0}")]
    Client(String),
    #[error("cannot read the plan {path}: {problem}")]
    PlanFile { path: String, problem: String },
    #[error(
        "the plan {path} is stale: the source or the directory has changed since it was made ({then} then, {now} now); make and review a new plan"
    )]
    StalePlan {
        path: String,
        then: String,
        now: String,
    },
    #[error(
        "the plan {path} no longer matches what the configuration decides (rules, agreements or limits changed); make and review a new plan"
    )]
    ChangedPlan { path: String },
    #[error(
        "--approve-removals names plan {named}, but this plan is {plan}: approvals hold for one plan only"
    )]
    ApprovalMismatch { named: String, plan: String },
    #[error("cannot reconcile the interrupted create of {external_id}: {problem}")]
    Reconcile {
        external_id: String,
        problem: String,
    },
    #[error("cannot connect and bind to the source")]
    Probe(#[source] SourceError),
    #[error("the results file cannot be used, so no batch was settled")]
    Results(#[source] TargetError),
    /// A Portal bridge file (a batch, the manifest, the worklist, a results file).
    #[error("{path}: {problem}")]
    Portal { path: String, problem: String },
}

/// How a front end hears about a long run as it goes (a spinner, a bar). Every method
/// has a silent default; [`Silent`] shows nothing.
pub trait Progress: PushProgress {
    /// Entries read so far (called every few hundred).
    fn reading(&self, _entries: usize) {}
    /// The read is complete.
    fn read_done(&self) {}
}

/// No progress shown.
pub struct Silent;
impl PushProgress for Silent {}
impl Progress for Silent {}

#[cfg(test)]
mod source_tests;
#[cfg(test)]
mod tests;
