//! The person attributes of the NHS Directory model, by their contract names.

use serde::{Deserialize, Serialize};
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
