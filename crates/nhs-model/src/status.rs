//! Account status in the NHS Directory lifecycle.

use serde::{Deserialize, Serialize};

/// Account status in the NHS Directory lifecycle (DESIGN.md, "Status lifecycle").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// New mailbox; not to be edited until active.
    Pending,
    Active,
    /// Marked as leaver; kept 30 days for a joiner, then deleted.
    Leaver,
    /// Inactive for 30 days (set by the directory, not the agent).
    Inactive,
    Deleted,
}

impl Status {
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Active,
        Status::Leaver,
        Status::Inactive,
        Status::Deleted,
    ];

    /// The name on the wire (the NHS extension's `status`) and in snapshots.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Active => "active",
            Status::Leaver => "leaver",
            Status::Inactive => "inactive",
            Status::Deleted => "deleted",
        }
    }

    /// Parse a status name, ignoring case and surrounding space.
    pub fn parse(s: &str) -> Option<Status> {
        let s = s.trim();
        Status::ALL
            .into_iter()
            .find(|st| st.as_str().eq_ignore_ascii_case(s))
    }

    /// The core SCIM `active` attribute: the account is live (not a leaver, inactive or
    /// deleted).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Pending | Status::Active)
    }

    /// Does the account count towards its organisation's cap? Everything but deleted:
    /// a leaver still holds its mailbox.
    pub fn counts_towards_cap(self) -> bool {
        self != Status::Deleted
    }
}
