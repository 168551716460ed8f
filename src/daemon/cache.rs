//! The local copy of the directory's state a delta cycle plans against, so that it
//! reads only the changed people's accounts (by `externalId`) instead of every account.
//!
//! Kept in the state directory as `directory-cache.json`, in the target snapshot
//! format. Written whole by every full cycle (the state it read), and after every cycle
//! the accounts of the anchors it touched (its operations, and the changed people a
//! delta looked up) are read again from the directory and replaced in it, so it stays
//! consistent with what was applied. Missing, unreadable, or not refreshed after a
//! cycle (a failed lookup): removed, and the next cycle is full. Not written while the
//! directory refuses an organisation's accounts (the snapshot format cannot say so):
//! every cycle is then full.
//!
//! What it cannot see: changes other agents or administrators make in the directory
//! between full cycles, to accounts of people who did not change in AD. The
//! organisation registry and per-organisation account counts (caps) come from it, so
//! they are as old as the last full cycle; the directory enforces its caps itself.

use crate::ids::ExternalId;
use crate::target::snapshot::SnapshotTarget;
use crate::target::{Account, TargetState};
use nhs_model::snapshot::{FORMAT, Snapshot};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn path(dir: &Path) -> PathBuf {
    dir.join("directory-cache.json")
}

/// The cached state, if there is a usable one.
pub fn load(dir: &Path) -> Option<TargetState> {
    let p = path(dir);
    let text = std::fs::read_to_string(&p).ok()?;
    match SnapshotTarget::parse(&p.display().to_string(), &text) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "the directory cache cannot be read; the next cycle is full");
            None
        }
    }
}

/// Replace the cache with `state` (or remove it, when it cannot hold it).
pub fn save(dir: &Path, state: &TargetState) {
    if !state.refused.is_empty() {
        forget(dir);
        return;
    }
    let snap = Snapshot {
        format: FORMAT.to_string(),
        taken_at: Some(crate::timefmt::now_rfc3339()),
        organisations: state.organisations.values().cloned().collect(),
        persons: state.accounts.clone(),
    };
    let tmp = dir.join("directory-cache.json.tmp");
    let written =
        std::fs::write(&tmp, snap.to_json()).and_then(|()| std::fs::rename(&tmp, path(dir)));
    if let Err(e) = written {
        tracing::warn!(error = %e, "cannot write the directory cache; the next cycle is full");
        forget(dir);
    }
}

/// Remove the cache: the next cycle is full.
pub fn forget(dir: &Path) {
    let _ = std::fs::remove_file(path(dir));
}

/// Replace the accounts holding `anchors` with `fresh` (what the directory holds for
/// them now).
pub fn merge(state: &mut TargetState, anchors: &BTreeSet<ExternalId>, fresh: Vec<Account>) {
    let ids: BTreeSet<_> = fresh.iter().map(|a| a.target_id.clone()).collect();
    state.accounts.retain(|a| {
        !ids.contains(&a.target_id) && a.external_id.as_ref().is_none_or(|x| !anchors.contains(x))
    });
    state.accounts.extend(fresh);
    state.accounts.sort_by(|a, b| a.target_id.cmp(&b.target_id));
}
