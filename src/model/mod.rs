//! The NHS Directory model: the person record tansync wants the directory to hold (the
//! field and organisation types are shared with the reference directory, in `nhs-model`).
//! Mapping from a source entry lives in [`mapping`], the NHS rules for values in
//! [`validate`]. Nothing here does I/O.

mod gbphone;
pub mod mapping;
pub mod validate;

pub use nhs_model::{Field, OrgKind, Organisation};

use crate::ids::{ExternalId, OdsCode, RuleId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A person as the NHS Directory should hold them, after filtering, mapping and
/// validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Person {
    pub external_id: ExternalId,
    pub dn: String,
    pub ods_code: OdsCode,
    pub rule: RuleId,
    /// False when the account is disabled in the source (a leaver).
    pub enabled: bool,
    pub attributes: BTreeMap<Field, String>,
}

impl Person {
    pub fn get(&self, f: Field) -> Option<&str> {
        self.attributes.get(&f).map(String::as_str)
    }

    /// The attributes the directory is asked to hold (see [`Field::is_synchronised`]).
    pub fn synchronised(&self) -> BTreeMap<Field, String> {
        self.attributes
            .iter()
            .filter(|(f, _)| f.is_synchronised())
            .map(|(f, v)| (*f, v.clone()))
            .collect()
    }
}

/// Why a source entry was rejected (plan `rejected[].reason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    MissingMandatory,
    InvalidValue,
    InvalidMobile,
    DuplicateAnchor,
}

/// A source entry that could not become a [`Person`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rejection {
    pub dn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<ExternalId>,
    pub reason: RejectReason,
    pub detail: String,
}
