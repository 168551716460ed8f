//! The NHS Directory's organisation registry entry.

use crate::ids::OdsCode;
use serde::{Deserialize, Serialize};

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
