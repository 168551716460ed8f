//! The NHS Directory model: the person record tansync wants the directory to hold, and
//! the organisation registry entry it is checked against (`../shared/DESIGN.md`, "NHS
//! Directory model"). Mapping from a source entry lives in [`mapping`], the NHS rules for
//! values in [`validate`]. Nothing here does I/O.

mod gbphone;
pub mod mapping;
pub mod validate;

use crate::ids::{ExternalId, OdsCode, RuleId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A person attribute of the NHS Directory model. The serialised names are the contract's
/// snake_case field names (plan JSON `attributes` and `changes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    GivenName,
    FamilyName,
    DisplayName,
    JobTitle,
    Department,
    Site,
    Telephone,
    Mobile,
    Email,
    EmployeeId,
}

impl Field {
    pub const ALL: [Field; 10] = [
        Field::GivenName,
        Field::FamilyName,
        Field::DisplayName,
        Field::JobTitle,
        Field::Department,
        Field::Site,
        Field::Telephone,
        Field::Mobile,
        Field::Email,
        Field::EmployeeId,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Field::GivenName => "given_name",
            Field::FamilyName => "family_name",
            Field::DisplayName => "display_name",
            Field::JobTitle => "job_title",
            Field::Department => "department",
            Field::Site => "site",
            Field::Telephone => "telephone",
            Field::Mobile => "mobile",
            Field::Email => "email",
            Field::EmployeeId => "employee_id",
        }
    }

    pub fn parse(s: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The AD attribute read for this field unless the configuration says otherwise.
    pub fn default_source_attribute(self) -> &'static str {
        match self {
            Field::GivenName => "givenName",
            Field::FamilyName => "sn",
            Field::DisplayName => "displayName",
            Field::JobTitle => "title",
            Field::Department => "department",
            Field::Site => "physicalDeliveryOfficeName",
            Field::Telephone => "telephoneNumber",
            Field::Mobile => "mobile",
            Field::Email => "mail",
            Field::EmployeeId => "employeeID",
        }
    }

    /// Fields the agent keeps in step with the directory. `email` is excluded: the
    /// directory allocates the NHSmail address, so the source's `mail` is used only for
    /// eligibility and first-sync matching, never sent or compared.
    pub fn is_synchronised(self) -> bool {
        self != Field::Email
    }

    /// Longest value the directory accepts for the field (characters).
    pub fn max_len(self) -> usize {
        match self {
            Field::GivenName | Field::FamilyName | Field::Department | Field::EmployeeId => 64,
            Field::DisplayName | Field::Site => 256,
            Field::JobTitle => 128,
            Field::Telephone | Field::Mobile => 32,
            Field::Email => 254,
        }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

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

/// Kind of NHS Directory organisation (Access Policy v4, "Who can use NHSmail?").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgKind {
    Trust,
    Gp,
    CareProvider,
    ThirdParty,
    Hosted,
    Other,
}

/// An organisation in the NHS Directory's registry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Organisation {
    pub ods_code: OdsCode,
    #[serde(default)]
    pub name: String,
    pub kind: OrgKind,
    pub open: bool,
    /// Account cap; when absent the configured default applies (50, Access Policy v4).
    #[serde(default)]
    pub cap: Option<u32>,
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
