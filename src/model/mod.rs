//! The NHS Directory model: the person record tansync wants the directory to hold (the
//! field and organisation types are shared with the reference directory, in `nhs-model`).
//! Mapping from a source entry lives in [`mapping`], the NHS rules for values in
//! [`validate`]. Nothing here does I/O.

mod gbphone;
pub mod mapping;
mod persons;
pub mod validate;

#[cfg(test)]
mod tests;

pub use nhs_model::{Field, FieldMap, OrgKind, Organisation};
pub use persons::Persons;

use crate::ids::{ExternalId, OdsCode, RuleId};
use serde::{Deserialize, Serialize};

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
    pub attributes: FieldMap,
    /// Optional fields whose source value was invalid and so was dropped (plan
    /// `warnings`). The directory's value of such a field is left as it is: the source
    /// said nothing usable about it, which is not the same as saying it is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
}

impl Person {
    pub fn get(&self, f: Field) -> Option<&str> {
        self.attributes.get(&f)
    }

    /// Was `f` dropped as invalid (so the directory's value is neither compared nor
    /// cleared)?
    pub fn withholds(&self, f: Field) -> bool {
        self.warnings.iter().any(|w| w.field == f)
    }

    /// The attributes the directory is asked to hold (see [`Field::is_synchronised`]).
    pub fn synchronised(&self) -> FieldMap {
        let mut a = self.attributes.clone();
        a.retain(|f, _| f.is_synchronised());
        a
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

/// An optional field dropped from an otherwise valid person (plan `warnings[]`): the
/// person is still provisioned or updated, without it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Warning {
    pub external_id: ExternalId,
    pub dn: String,
    pub field: Field,
    /// The rule the value broke (`invalid_value`, `invalid_mobile`).
    pub reason: RejectReason,
    pub detail: String,
}
