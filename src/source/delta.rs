//! Delta reads: what changed in the source since a high-water mark, for the cycles of
//! continuous mode between full reconciles.
//!
//! A watermark belongs to one server: an AD domain controller's update sequence numbers
//! mean nothing on another DC, nor on the same DC after a restore (its invocationId
//! changes), so a watermark from anywhere else — or one the server has gone back past —
//! is never used: the read says a full cycle is needed instead ([`Delta::Full`]).
//!
//! A delta read hands the changed entries to the sink exactly as a full read does, so
//! filtering and mapping are the same; what it cannot show by an entry (a deleted object)
//! it reports by anchor. Absence from a delta read means nothing: only evidence removes.

use crate::ids::ExternalId;
use serde::{Deserialize, Serialize};

/// Where a source stood when it was read: the position a later delta read starts from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// How `position` is to be read: `ad_usn` (AD `uSNChanged` on one domain
    /// controller) or `ldap_csn` (an OpenLDAP change sequence number / timestamp).
    pub kind: String,
    /// The server the position belongs to: the DC's `dsServiceName` (its NTDS Settings
    /// DN), or the LDAP server's identity.
    pub server: String,
    /// The DC's `invocationId` (it changes when the DC's database is restored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// The high-water mark itself (`highestCommittedUSN` in decimal, a CSN, …).
    pub position: String,
}

/// What a delta read found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delta {
    /// The entries changed since the watermark went to the sink; `deleted` are the
    /// anchors of objects that left the read's scope since — deleted (where the source
    /// can see deletions at all), moved out of every base DN, or changed so that the
    /// filter no longer matches — sorted; `next` is where the following delta starts.
    Changes {
        deleted: Vec<ExternalId>,
        next: Watermark,
    },
    /// The watermark cannot be used (another server, a restored DC, a position that went
    /// backwards, a source without deltas): run a full cycle. `why` says which.
    Full { why: String },
}
