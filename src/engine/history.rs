//! The run history and journal, read beside a running apply, and lifting a quarantine.

use super::EngineError;
use crate::config::Config;
use crate::state::{History, StateStore};

pub use crate::state::{JournalEntry, RunSummary};

/// The newest `limit` runs.
pub fn runs(cfg: &Config, limit: usize) -> Result<Vec<RunSummary>, EngineError> {
    Ok(History::open(&cfg.state_dir)?.runs(limit)?)
}

/// One run's journalled operations.
pub fn journal(cfg: &Config, run: i64) -> Result<Vec<JournalEntry>, EngineError> {
    Ok(History::open(&cfg.state_dir)?.journal(run)?)
}

/// Let the next apply try an object again. True if it was quarantined (had failures).
pub fn clear_quarantine(cfg: &Config, external_id: &str) -> Result<bool, EngineError> {
    Ok(StateStore::open(&cfg.state_dir)?.clear_failures(external_id)?)
}
