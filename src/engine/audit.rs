//! The audit trail (`state::audit`), read beside a running apply without the writer's
//! lock: verify the hash chain, export it for an information-governance review.

use crate::config::Config;
use crate::state::{History, StateError};

pub use crate::state::audit::{AuditBreak, AuditHead, AuditRecord, AuditVerification};

/// Check every record and every finished run's recorded head; the first bad record, if
/// any, is in `broken`.
pub fn verify(cfg: &Config) -> Result<AuditVerification, StateError> {
    History::open(&cfg.state_dir)?.verify_audit()
}

/// Every record in sequence order, to `each`; returns how many.
pub fn export<E: From<StateError>>(
    cfg: &Config,
    each: impl FnMut(&AuditRecord) -> Result<(), E>,
) -> Result<u64, E> {
    History::open(&cfg.state_dir)?.audit_records(each)
}
