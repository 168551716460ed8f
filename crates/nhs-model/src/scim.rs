//! SCIM 2.0 (RFC 7643/7644) as tansync and the reference NHS Directory speak it: the
//! wire types both sides share, and the NHS extension schema.
//!
//! The NHS extension (`NHS_SCHEMA`) carries what core SCIM has no place for: the ODS
//! code, site, lifecycle status, leaver date and the managing agent.
//! Person fields map as: given_name → `name.givenName`, family_name → `name.familyName`,
//! display_name → `displayName`, job_title → `title`, telephone → `phoneNumbers[type
//! eq "work"]`, mobile → `phoneNumbers[type eq "mobile"]`, email (the NHSmail address,
//! allocated by the directory) → `userName` and `emails[type eq "work"]`, department and
//! employee_id → the enterprise extension's `department` and `employeeNumber`, site → the
//! NHS extension's `site`.

use crate::field::Field;
use crate::fieldmap::FieldMap;
use serde::{Deserialize, Serialize};

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
/// The NHS Directory extension to the User resource.
pub const NHS_SCHEMA: &str = "urn:tansync:params:scim:schemas:extension:nhs:2.0:User";
/// The organisation registry resource (reference directory only).
pub const ORG_SCHEMA: &str = "urn:tansync:params:scim:schemas:core:2.0:Organisation";
pub const LIST_RESPONSE: &str = "urn:ietf:params:scim:api:messages:2.0:ListResponse";
pub const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
pub const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";
/// The SCIM media type (RFC 7644 §3.1).
pub const MEDIA_TYPE: &str = "application/scim+json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Name {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formatted: Option<String>,
}

/// A multi-valued attribute entry (`emails`, `phoneNumbers`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiValue {
    pub value: String,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Enterprise {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub employee_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

/// The NHS extension's attributes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Nhs {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ods_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// pending | active | leaver | inactive | deleted (set by the directory).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// RFC 3339, set by the directory when the account is marked leaver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leaver_since: Option<String>,
    /// The `agent_id` of the agent managing the account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// A SCIM User with the enterprise and NHS extensions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    #[serde(default)]
    pub user_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(
        default,
        deserialize_with = "valued_entries",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub emails: Vec<MultiValue>,
    #[serde(
        default,
        deserialize_with = "valued_entries",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub phone_numbers: Vec<MultiValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    #[serde(
        default,
        rename = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User",
        skip_serializing_if = "Option::is_none"
    )]
    pub enterprise: Option<Enterprise>,
    #[serde(
        default,
        rename = "urn:tansync:params:scim:schemas:extension:nhs:2.0:User",
        skip_serializing_if = "Option::is_none"
    )]
    pub nhs: Option<Nhs>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub meta: Option<Meta>,
}

/// Where the typed model fields live: (multi-valued attribute, entry type).
const TELEPHONE: (&str, &str) = ("phoneNumbers", "work");
const MOBILE: (&str, &str) = ("phoneNumbers", "mobile");
const WORK_EMAIL: (&str, &str) = ("emails", "work");

/// A multi-valued attribute entry as any server may send it: RFC 7643 does not require
/// `value`, and a server that applies a PATCH `remove` of `phoneNumbers[…].value`
/// literally keeps a typed entry without one.
#[derive(Deserialize)]
struct LooseMultiValue {
    #[serde(default)]
    value: Option<String>,
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    primary: Option<bool>,
}

/// Read `emails` / `phoneNumbers`, dropping entries without a value: they carry nothing
/// the model could hold, and refusing them would make one such account fail a whole read.
fn valued_entries<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<MultiValue>, D::Error> {
    let loose: Option<Vec<LooseMultiValue>> = Option::deserialize(d)?;
    Ok(loose
        .unwrap_or_default()
        .into_iter()
        .filter_map(|m| {
            m.value.map(|value| MultiValue {
                value,
                kind: m.kind,
                primary: m.primary,
            })
        })
        .collect())
}

/// The first entry of a type that holds something (a blank entry another client left
/// must not hide a real one after it).
fn typed<'a>(list: &'a [MultiValue], kind: &str) -> Option<&'a str> {
    list.iter()
        .find(|m| m.kind.as_deref() == Some(kind) && !m.value.trim().is_empty())
        .map(|m| m.value.as_str())
}

impl User {
    /// The model fields this user carries (email excluded: see the module doc).
    pub fn fields(&self) -> FieldMap {
        let mut out = Vec::new();
        let mut put = |f: Field, v: Option<&str>| {
            if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
                out.push((f, v.to_string()));
            }
        };
        let name = self.name.clone().unwrap_or_default();
        put(Field::GivenName, name.given_name.as_deref());
        put(Field::FamilyName, name.family_name.as_deref());
        put(Field::DisplayName, self.display_name.as_deref());
        put(Field::JobTitle, self.title.as_deref());
        put(Field::Telephone, typed(&self.phone_numbers, "work"));
        put(Field::Mobile, typed(&self.phone_numbers, "mobile"));
        let ent = self.enterprise.clone().unwrap_or_default();
        put(Field::Department, ent.department.as_deref());
        put(Field::EmployeeId, ent.employee_number.as_deref());
        put(
            Field::Site,
            self.nhs.as_ref().and_then(|n| n.site.as_deref()),
        );
        out.into_iter().collect()
    }

    /// Set one model field (None clears it).
    pub fn set_field(&mut self, f: Field, v: Option<String>) {
        let set_typed = |list: &mut Vec<MultiValue>, kind: &str, v: Option<String>| {
            list.retain(|m| m.kind.as_deref() != Some(kind));
            if let Some(v) = v {
                list.push(MultiValue {
                    value: v,
                    kind: Some(kind.to_string()),
                    primary: None,
                });
            }
        };
        match f {
            Field::GivenName => self.name.get_or_insert_with(Name::default).given_name = v,
            Field::FamilyName => self.name.get_or_insert_with(Name::default).family_name = v,
            Field::DisplayName => self.display_name = v,
            Field::JobTitle => self.title = v,
            Field::Telephone => set_typed(&mut self.phone_numbers, "work", v),
            Field::Mobile => set_typed(&mut self.phone_numbers, "mobile", v),
            Field::Department => {
                self.enterprise
                    .get_or_insert_with(Enterprise::default)
                    .department = v
            }
            Field::EmployeeId => {
                self.enterprise
                    .get_or_insert_with(Enterprise::default)
                    .employee_number = v
            }
            Field::Site => self.nhs.get_or_insert_with(Nhs::default).site = v,
            Field::Email => set_typed(&mut self.emails, "work", v),
        }
    }

    /// The SCIM attribute path of a model field's value, for PATCH (RFC 7644 §3.5.2).
    /// For a field in a typed entry (see [`User::typed_entry`]) it reaches an existing
    /// entry only.
    pub fn path(f: Field) -> String {
        let value_of =
            |(attr, kind): (&str, &str)| format!("{}.value", Self::entry_path(attr, kind));
        match f {
            Field::GivenName => "name.givenName".into(),
            Field::FamilyName => "name.familyName".into(),
            Field::DisplayName => "displayName".into(),
            Field::JobTitle => "title".into(),
            Field::Telephone => value_of(TELEPHONE),
            Field::Mobile => value_of(MOBILE),
            Field::Email => value_of(WORK_EMAIL),
            Field::Department => format!("{ENTERPRISE_SCHEMA}:department"),
            Field::EmployeeId => format!("{ENTERPRISE_SCHEMA}:employeeNumber"),
            Field::Site => format!("{NHS_SCHEMA}:site"),
        }
    }

    /// For a field held in a typed entry of a multi-valued attribute, that attribute and
    /// type (telephone → `phoneNumbers` of type `work`). PATCH must treat these apart
    /// (RFC 7644 §3.5.2.3): a `replace` through a value filter that matches no entry is
    /// `noTarget` on a conforming server, and removing only `.value` leaves an empty
    /// typed entry behind.
    pub fn typed_entry(f: Field) -> Option<(&'static str, &'static str)> {
        match f {
            Field::Telephone => Some(TELEPHONE),
            Field::Mobile => Some(MOBILE),
            Field::Email => Some(WORK_EMAIL),
            _ => None,
        }
    }

    /// The value path selecting the entries of one type (`phoneNumbers[type eq "work"]`).
    pub fn entry_path(attr: &str, kind: &str) -> String {
        format!("{attr}[type eq \"{kind}\"]")
    }

    /// The primary (work) email: the NHSmail address.
    pub fn email(&self) -> Option<&str> {
        typed(&self.emails, "work").or_else(|| self.emails.first().map(|m| m.value.as_str()))
    }
}

/// A list response (RFC 7644 §3.4.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "T: Deserialize<'de>"))]
pub struct ListResponse<T> {
    pub schemas: Vec<String>,
    pub total_results: usize,
    #[serde(default)]
    pub start_index: Option<usize>,
    #[serde(default)]
    pub items_per_page: Option<usize>,
    #[serde(default, rename = "Resources")]
    pub resources: Vec<T>,
}

/// One PATCH operation (RFC 7644 §3.5.2).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchOperation {
    pub op: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PatchRequest {
    pub schemas: Vec<String>,
    #[serde(rename = "Operations")]
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    pub fn new(operations: Vec<PatchOperation>) -> Self {
        Self {
            schemas: vec![PATCH_OP.to_string()],
            operations,
        }
    }
}

/// A SCIM error body (RFC 7644 §3.12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScimError {
    pub schemas: Vec<String>,
    /// The HTTP status, as a string (RFC 7644 §3.12).
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scim_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ScimError {
    pub fn new(status: u16, scim_type: Option<&str>, detail: impl Into<String>) -> Self {
        Self {
            schemas: vec![ERROR.to_string()],
            status: status.to_string(),
            scim_type: scim_type.map(String::from),
            detail: Some(detail.into()),
        }
    }
}

/// An organisation in the reference directory's registry (`/Organisations`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OrganisationResource {
    #[serde(default)]
    pub schemas: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub ods_code: String,
    #[serde(default)]
    pub name: String,
    pub kind: String,
    pub open: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cap: Option<u32>,
    /// Accounts held that count towards the cap (all but deleted); the reference
    /// directory gives it only for organisations the caller has an agreement for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accounts: Option<u32>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_round_trips_model_fields() {
        let mut u = User::default();
        for (f, v) in [
            (Field::GivenName, "Siân"),
            (Field::FamilyName, "Evans"),
            (Field::Mobile, "+447123456789"),
            (Field::Department, "Cardiology"),
            (Field::Site, "Northgate"),
        ] {
            u.set_field(f, Some(v.into()));
        }
        let json = serde_json::to_value(&u).unwrap();
        assert_eq!(json["name"]["givenName"], "Siân");
        assert_eq!(json[ENTERPRISE_SCHEMA]["department"], "Cardiology");
        assert_eq!(json[NHS_SCHEMA]["site"], "Northgate");
        assert_eq!(json["phoneNumbers"][0]["type"], "mobile");
        let back: User = serde_json::from_value(json).unwrap();
        assert_eq!(back.fields().len(), 5);
        u.set_field(Field::Mobile, None);
        assert!(u.phone_numbers.is_empty());
    }

    #[test]
    fn entries_without_a_value_are_dropped_on_read() {
        // As a server leaves them after a PATCH remove of `phoneNumbers[…].value`.
        let u: User = serde_json::from_value(serde_json::json!({
            "userName": "a@nhs.net",
            "phoneNumbers": [
                {"type": "work"},
                {"type": "mobile", "value": null},
                {"type": "work", "value": "+441134960101"},
            ],
            "emails": null,
        }))
        .unwrap();
        assert_eq!(u.phone_numbers.len(), 1);
        assert_eq!(&u.fields()[&Field::Telephone], "+441134960101");
        assert!(u.emails.is_empty());
    }

    #[test]
    fn typed_field_paths() {
        assert_eq!(
            User::path(Field::Telephone),
            "phoneNumbers[type eq \"work\"].value"
        );
        assert_eq!(
            User::typed_entry(Field::Mobile),
            Some(("phoneNumbers", "mobile"))
        );
        assert_eq!(User::typed_entry(Field::JobTitle), None);
        assert_eq!(
            User::entry_path("emails", "work"),
            "emails[type eq \"work\"]"
        );
    }
}
