//! What the directory says about itself (RFC 7643 §5–7, RFC 7644 §4): the attribute
//! definitions of the User resource with the enterprise and NHS extensions — the one
//! table that `/Schemas` publishes and that PATCH paths, filters and `attributes`
//! projections are resolved against — plus `/ServiceProviderConfig` and
//! `/ResourceTypes`.
//!
//! The table must say what the directory really does: an attribute marked readWrite
//! here is one a PATCH may change; readOnly ones (id, meta, userName, emails,
//! leaverSince) are set by the directory only, and a request that tries to set one is
//! refused (`mutability`).

use crate::scim::{ENTERPRISE_SCHEMA, NHS_SCHEMA, ORG_SCHEMA, USER_SCHEMA};
use serde_json::{Map, Value, json};

pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
pub const SPC_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutability {
    ReadOnly,
    ReadWrite,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Integer,
    DateTime,
    Complex,
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug)]
pub struct Attr {
    pub name: &'static str,
    pub ty: Type,
    pub multi: bool,
    pub required: bool,
    pub mutability: Mutability,
    pub server_unique: bool,
    pub canonical: &'static [&'static str],
    pub description: &'static str,
    pub sub: &'static [Attr],
}

const fn attr(name: &'static str, ty: Type, description: &'static str) -> Attr {
    Attr {
        name,
        ty,
        multi: false,
        required: false,
        mutability: Mutability::ReadWrite,
        server_unique: false,
        canonical: &[],
        description,
        sub: &[],
    }
}

/// A schema: its URN, name and attributes.
#[derive(Debug)]
pub struct SchemaDef {
    pub id: &'static str,
    pub name: &'static str,
    pub description: &'static str,
    pub attrs: &'static [Attr],
    /// True for extensions, whose attributes sit in an object keyed by the URN.
    pub extension: bool,
}

const EMAIL_SUB: [Attr; 3] = [
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("value", Type::String, "The NHSmail address.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        canonical: &["work"],
        ..attr("type", Type::String, "Always \"work\".")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("primary", Type::Boolean, "Always true.")
    },
];

const PHONE_SUB: [Attr; 3] = [
    attr(
        "value",
        Type::String,
        "The number; mobiles are UK numbers in E.164 form.",
    ),
    Attr {
        canonical: &["work", "mobile"],
        ..attr("type", Type::String, "\"work\" (telephone) or \"mobile\".")
    },
    attr(
        "primary",
        Type::Boolean,
        "Whether this is the primary number; at most one is.",
    ),
];

const NAME_SUB: [Attr; 3] = [
    Attr {
        required: true,
        ..attr(
            "givenName",
            Type::String,
            "Given name; mandatory, and the first half of the allocated address.",
        )
    },
    Attr {
        required: true,
        ..attr(
            "familyName",
            Type::String,
            "Family name; mandatory, and the second half of the allocated address.",
        )
    },
    attr(
        "formatted",
        Type::String,
        "The full name, formatted for display.",
    ),
];

const USER_ATTRS: [Attr; 7] = [
    Attr {
        required: true,
        mutability: Mutability::ReadOnly,
        server_unique: true,
        ..attr(
            "userName",
            Type::String,
            "The NHSmail address, allocated by the directory from the names \
             (given.family@nhs.net, lowercase, transliterated to ASCII, numbered on a \
             clash). A create may send one (RFC 7643 requires clients to), but the \
             address is allocated, and the answer says which; a replace must repeat \
             the current one. It stays the same when the account moves.",
        )
    },
    Attr {
        required: true,
        sub: &NAME_SUB,
        ..attr(
            "name",
            Type::Complex,
            "The person's name; givenName and familyName are mandatory.",
        )
    },
    attr(
        "displayName",
        Type::String,
        "Name shown in the address book.",
    ),
    attr("title", Type::String, "Job title."),
    Attr {
        multi: true,
        mutability: Mutability::ReadOnly,
        sub: &EMAIL_SUB,
        ..attr(
            "emails",
            Type::Complex,
            "The NHSmail address (type work, primary), as in userName.",
        )
    },
    Attr {
        multi: true,
        sub: &PHONE_SUB,
        ..attr(
            "phoneNumbers",
            Type::Complex,
            "Telephone (type work) and mobile (type mobile). A PATCH to \
             phoneNumbers[type eq \"X\"].value adds the entry when there is none.",
        )
    },
    Attr {
        required: true,
        ..attr(
            "active",
            Type::Boolean,
            "True unless the account is a leaver, inactive or deleted. Setting it \
             false marks a leaver (as NHS status leaver does); true restores one. \
             When a request also sends an NHS status, the status decides.",
        )
    },
];

const ENTERPRISE_ATTRS: [Attr; 2] = [
    attr("employeeNumber", Type::String, "Employee id."),
    attr("department", Type::String, "Department."),
];

/// Status values a client may write; the directory itself sets pending, inactive and
/// deleted.
pub const WRITABLE_STATUSES: [&str; 2] = ["active", "leaver"];

const NHS_ATTRS: [Attr; 5] = [
    Attr {
        required: true,
        ..attr(
            "odsCode",
            Type::String,
            "ODS code of the organisation holding the account (uppercase). Must be \
             open in the registry, within its account cap, and covered by the \
             calling client's sharing agreement. Changing it moves the account \
             (an active account, or a leaver together with status active: a joiner). \
             The canonical values are the open organisations the caller may act for.",
        )
    },
    attr("site", Type::String, "Site or office."),
    Attr {
        required: true,
        canonical: &WRITABLE_STATUSES,
        ..attr(
            "status",
            Type::String,
            "Lifecycle status: pending (new mailbox, not editable until active), \
             active, leaver (kept 30 days for a joiner, then deleted), inactive, \
             deleted (restorable for 30 days, then purged). Clients may write \
             leaver (on an active account) and active (restoring a leaver or a \
             deleted account; with a new odsCode, a joiner). On create, active (or \
             none) makes a new account, which starts pending, and leaver a leaver.",
        )
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr(
            "leaverSince",
            Type::DateTime,
            "When the account was marked leaver (set by the directory).",
        )
    },
    attr(
        "managedBy",
        Type::String,
        "agent_id of the agent managing the account; free text to the directory.",
    ),
];

const META_SUB: [Attr; 5] = [
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("resourceType", Type::String, "User.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("created", Type::DateTime, "When the account was created.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("lastModified", Type::DateTime, "When it last changed.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("location", Type::String, "Its URL.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("version", Type::String, "Its ETag.")
    },
];

/// Attributes common to all resources (RFC 7643 §3.1); not listed in `/Schemas`.
const COMMON_ATTRS: [Attr; 3] = [
    Attr {
        mutability: Mutability::ReadOnly,
        server_unique: true,
        ..attr("id", Type::String, "The directory's id.")
    },
    attr(
        "externalId",
        Type::String,
        "The anchor (AD objectGUID); unique in the directory, compared ignoring case.",
    ),
    Attr {
        mutability: Mutability::ReadOnly,
        sub: &META_SUB,
        ..attr("meta", Type::Complex, "Resource metadata.")
    },
];

const ORG_ATTRS: [Attr; 6] = [
    Attr {
        required: true,
        mutability: Mutability::ReadOnly,
        server_unique: true,
        ..attr("odsCode", Type::String, "ODS code.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("name", Type::String, "Name.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        canonical: &[
            "trust",
            "gp",
            "care_provider",
            "third_party",
            "hosted",
            "other",
        ],
        ..attr("kind", Type::String, "Kind of organisation.")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr(
            "open",
            Type::Boolean,
            "Whether accounts may be created in or moved to it.",
        )
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr("cap", Type::Integer, "Account cap (Access Policy).")
    },
    Attr {
        mutability: Mutability::ReadOnly,
        ..attr(
            "accounts",
            Type::Integer,
            "Accounts held that count towards the cap (all but deleted); given only \
             for organisations the caller may act for.",
        )
    },
];

pub static USER: SchemaDef = SchemaDef {
    id: USER_SCHEMA,
    name: "User",
    description: "An NHS Directory account (NHSmail).",
    attrs: &USER_ATTRS,
    extension: false,
};
pub static ENTERPRISE: SchemaDef = SchemaDef {
    id: ENTERPRISE_SCHEMA,
    name: "EnterpriseUser",
    description: "Enterprise User extension (RFC 7643 §4.3).",
    attrs: &ENTERPRISE_ATTRS,
    extension: true,
};
pub static NHS: SchemaDef = SchemaDef {
    id: NHS_SCHEMA,
    name: "NhsUser",
    description: "NHS Directory extension: organisation, site, lifecycle status and the \
                  managing agent.",
    attrs: &NHS_ATTRS,
    extension: true,
};
pub static COMMON: SchemaDef = SchemaDef {
    id: "",
    name: "common",
    description: "",
    attrs: &COMMON_ATTRS,
    extension: false,
};
pub static ORGANISATION: SchemaDef = SchemaDef {
    id: ORG_SCHEMA,
    name: "Organisation",
    description: "An organisation of the NHS Directory registry (read-only, at \
                  /Organisations).",
    attrs: &ORG_ATTRS,
    extension: false,
};

/// The User schemas, core first.
pub static USER_SCHEMAS: [&SchemaDef; 3] = [&USER, &ENTERPRISE, &NHS];

/// Split a leading schema URN off an attribute path (`urn:…:User:name.givenName` →
/// core, `name.givenName`). The rest is empty when the path is the URN itself.
pub fn split_urn(path: &str) -> (Option<&'static SchemaDef>, &str) {
    let lower = path.to_ascii_lowercase();
    // The longest URN first: the core User URN is a prefix of none of the others, but
    // be exact anyway.
    let mut best: Option<&'static SchemaDef> = None;
    for s in USER_SCHEMAS {
        let id = s.id.to_ascii_lowercase();
        let fits = lower == id || lower.starts_with(&format!("{id}:"));
        if fits && best.is_none_or(|b| b.id.len() < s.id.len()) {
            best = Some(s);
        }
    }
    match best {
        None => (None, path),
        Some(s) => {
            let rest = path.get(s.id.len()..).unwrap_or("");
            (Some(s), rest.strip_prefix(':').unwrap_or(rest))
        }
    }
}

/// Where an attribute lives: its definition, and the extension object holding it
/// (`None`: the resource's top level).
#[derive(Clone, Copy, Debug)]
pub struct Located {
    pub schema: &'static SchemaDef,
    pub attr: &'static Attr,
}

impl Located {
    /// The JSON key of the extension object holding the attribute, if any.
    pub fn container(&self) -> Option<&'static str> {
        self.schema.extension.then_some(self.schema.id)
    }
}

fn find(schema: &'static SchemaDef, name: &str) -> Option<Located> {
    schema
        .attrs
        .iter()
        .find(|a| a.name.eq_ignore_ascii_case(name))
        .map(|attr| Located { schema, attr })
}

/// Resolve a top-level attribute name under an optional schema URN. Without a URN, the
/// core and common attributes come first, then an extension attribute whose name is
/// unique among the extensions.
pub fn locate(urn: Option<&'static SchemaDef>, name: &str) -> Option<Located> {
    match urn {
        Some(s) if s.extension => find(s, name),
        Some(_) => find(&USER, name).or_else(|| find(&COMMON, name)),
        None => find(&USER, name)
            .or_else(|| find(&COMMON, name))
            .or_else(|| {
                let hits: Vec<Located> = USER_SCHEMAS
                    .iter()
                    .filter(|s| s.extension)
                    .filter_map(|s| find(s, name))
                    .collect();
                match hits.as_slice() {
                    [one] => Some(*one),
                    _ => None,
                }
            }),
    }
}

/// A sub-attribute definition.
pub fn sub_attr(attr: &'static Attr, name: &str) -> Option<&'static Attr> {
    attr.sub.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

fn type_name(t: Type) -> &'static str {
    match t {
        Type::String => "string",
        Type::Boolean => "boolean",
        Type::Integer => "integer",
        Type::DateTime => "dateTime",
        Type::Complex => "complex",
    }
}

fn attr_json(a: &Attr, canonical_override: Option<&[String]>) -> Value {
    let mut m = Map::new();
    m.insert("name".into(), json!(a.name));
    m.insert("type".into(), json!(type_name(a.ty)));
    m.insert("multiValued".into(), json!(a.multi));
    m.insert("description".into(), json!(a.description));
    m.insert("required".into(), json!(a.required));
    if a.ty == Type::String {
        m.insert("caseExact".into(), json!(false));
    }
    m.insert(
        "mutability".into(),
        json!(match a.mutability {
            Mutability::ReadOnly => "readOnly",
            Mutability::ReadWrite => "readWrite",
        }),
    );
    m.insert("returned".into(), json!("default"));
    m.insert(
        "uniqueness".into(),
        json!(if a.server_unique { "server" } else { "none" }),
    );
    match canonical_override {
        Some(values) => {
            m.insert("canonicalValues".into(), json!(values));
        }
        None if !a.canonical.is_empty() => {
            m.insert("canonicalValues".into(), json!(a.canonical));
        }
        None => {}
    }
    if !a.sub.is_empty() {
        let subs: Vec<Value> = a.sub.iter().map(|s| attr_json(s, None)).collect();
        m.insert("subAttributes".into(), Value::Array(subs));
    }
    Value::Object(m)
}

/// A schema as `/Schemas` answers it. `ods_codes`: canonical values for the NHS
/// extension's odsCode.
pub fn schema_json(s: &SchemaDef, base_url: &str, ods_codes: &[String]) -> Value {
    let attrs: Vec<Value> = s
        .attrs
        .iter()
        .map(|a| {
            let over = (s.id == NHS_SCHEMA && a.name == "odsCode").then_some(ods_codes);
            attr_json(a, over)
        })
        .collect();
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "attributes": attrs,
        "meta": {"resourceType": "Schema", "location": format!("{base_url}/Schemas/{}", s.id)},
    })
}

/// Every schema `/Schemas` lists.
pub fn all_schemas() -> [&'static SchemaDef; 4] {
    [&USER, &ENTERPRISE, &NHS, &ORGANISATION]
}

/// The User resource type.
pub fn user_resource_type(base_url: &str) -> Value {
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "NHS Directory accounts (NHSmail).",
        "schema": USER_SCHEMA,
        "schemaExtensions": [
            {"schema": ENTERPRISE_SCHEMA, "required": false},
            {"schema": NHS_SCHEMA, "required": true},
        ],
        "meta": {"resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/User")},
    })
}

/// `/ServiceProviderConfig`.
pub fn service_provider_config(base_url: &str, max_results: usize) -> Value {
    json!({
        "schemas": [SPC_SCHEMA],
        "documentationUri": format!("{base_url}/Schemas"),
        "patch": {"supported": true},
        "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": max_results},
        "changePassword": {"supported": false},
        "sort": {"supported": false},
        "etag": {"supported": true},
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A static bearer token per client, from the directory's configuration.",
            "primary": true,
        }],
        "meta": {"resourceType": "ServiceProviderConfig", "location": format!("{base_url}/ServiceProviderConfig")},
    })
}

/// Keep or drop attributes of a resource as `attributes` / `excludedAttributes` ask
/// (RFC 7644 §3.4.2.5). `id` and `schemas` are always returned.
pub fn project(resource: &Value, attributes: Option<&str>, excluded: Option<&str>) -> Value {
    let Value::Object(src) = resource else {
        return resource.clone();
    };
    let list = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(String::from)
            .collect()
    };
    if let Some(wanted) = attributes.map(list).filter(|l| !l.is_empty()) {
        let mut out = Map::new();
        for key in ["schemas", "id"] {
            if let Some(v) = src.get(key) {
                out.insert(key.into(), v.clone());
            }
        }
        for p in wanted {
            copy_path(src, &mut out, &p);
        }
        return Value::Object(out);
    }
    let mut out = src.clone();
    if let Some(drop) = excluded.map(list) {
        for p in drop {
            remove_path(&mut out, &p);
        }
    }
    Value::Object(out)
}

/// The JSON keys a projection path names: (extension key, attribute, sub-attribute),
/// in the resource's own spelling.
fn projection_keys(path: &str) -> Option<(Option<&'static str>, &'static str, Option<String>)> {
    let (urn, rest) = split_urn(path);
    if rest.is_empty() {
        return None;
    }
    let (name, sub) = match rest.split_once('.') {
        Some((n, s)) => (n, Some(s)),
        None => (rest, None),
    };
    let loc = locate(urn, name)?;
    let sub = match sub {
        None => None,
        Some(s) => Some(sub_attr(loc.attr, s)?.name.to_string()),
    };
    Some((loc.container(), loc.attr.name, sub))
}

fn copy_path(src: &Map<String, Value>, out: &mut Map<String, Value>, path: &str) {
    let (urn, rest) = split_urn(path);
    if let (Some(s), "") = (urn, rest) {
        if s.extension
            && let Some(v) = src.get(s.id)
        {
            out.insert(s.id.to_string(), v.clone());
        }
        return;
    }
    let Some((container, name, sub)) = projection_keys(path) else {
        return;
    };
    let (from, to) = match container {
        None => (Some(src), out),
        Some(c) => {
            let from = src.get(c).and_then(Value::as_object);
            let to = out
                .entry(c.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(to) = to else { return };
            (from, to)
        }
    };
    let Some(v) = from.and_then(|f| f.get(name)) else {
        return;
    };
    match (sub, v) {
        (None, v) => {
            to.insert(name.to_string(), v.clone());
        }
        (Some(sub), Value::Object(o)) => {
            if let Some(sv) = o.get(&sub) {
                let entry = to
                    .entry(name.to_string())
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(e) = entry {
                    e.insert(sub, sv.clone());
                }
            }
        }
        (Some(sub), Value::Array(items)) => {
            let picked: Vec<Value> = items
                .iter()
                .filter_map(|i| i.get(&sub).map(|sv| json!({ sub.clone(): sv })))
                .collect();
            to.insert(name.to_string(), Value::Array(picked));
        }
        _ => {}
    }
}

fn remove_path(out: &mut Map<String, Value>, path: &str) {
    let (urn, rest) = split_urn(path);
    if let (Some(s), "") = (urn, rest) {
        if s.extension {
            out.remove(s.id);
        }
        return;
    }
    let Some((container, name, sub)) = projection_keys(path) else {
        return;
    };
    if container.is_none() && matches!(name, "id") {
        return;
    }
    let target = match container {
        None => Some(out),
        Some(c) => out.get_mut(c).and_then(Value::as_object_mut),
    };
    let Some(target) = target else { return };
    match sub {
        None => {
            target.remove(name);
        }
        Some(sub) => match target.get_mut(name) {
            Some(Value::Object(o)) => {
                o.remove(&sub);
            }
            Some(Value::Array(items)) => {
                for i in items.iter_mut().filter_map(Value::as_object_mut) {
                    i.remove(&sub);
                }
            }
            _ => {}
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urns_split_off_paths() {
        let path = format!("{NHS_SCHEMA}:odsCode");
        let (s, rest) = split_urn(&path);
        assert_eq!(s.map(|s| s.id), Some(NHS_SCHEMA));
        assert_eq!(rest, "odsCode");
        let path = format!("{}:name.givenName", USER_SCHEMA.to_uppercase());
        let (s, rest) = split_urn(&path);
        assert_eq!(s.map(|s| s.id), Some(USER_SCHEMA));
        assert_eq!(rest, "name.givenName");
        let (s, rest) = split_urn(ENTERPRISE_SCHEMA);
        assert_eq!(s.map(|s| s.id), Some(ENTERPRISE_SCHEMA));
        assert_eq!(rest, "");
        let (s, rest) = split_urn("userName");
        assert!(s.is_none());
        assert_eq!(rest, "userName");
    }

    #[test]
    fn attributes_resolve_with_and_without_urn() {
        assert_eq!(
            locate(None, "USERNAME").map(|l| l.attr.name),
            Some("userName")
        );
        assert_eq!(
            locate(None, "externalId").map(|l| l.attr.name),
            Some("externalId")
        );
        let ods = locate(None, "odsCode").map(|l| l.container());
        assert_eq!(ods, Some(Some(NHS_SCHEMA)));
        assert!(locate(Some(&ENTERPRISE), "odsCode").is_none());
        assert!(locate(None, "nonsense").is_none());
    }

    #[test]
    fn projection_keeps_and_drops() {
        let u = json!({
            "schemas": [USER_SCHEMA], "id": "x", "userName": "a@nhs.net",
            "name": {"givenName": "A", "familyName": "B"}, "title": "T",
            "emails": [{"value": "a@nhs.net", "type": "work"}],
            NHS_SCHEMA: {"odsCode": "RXA", "status": "active"},
        });
        let p = project(&u, Some("name.givenName,emails.value"), None);
        assert_eq!(
            p,
            json!({"schemas": [USER_SCHEMA], "id": "x", "name": {"givenName": "A"},
                   "emails": [{"value": "a@nhs.net"}]})
        );
        let p = project(&u, Some(&format!("{NHS_SCHEMA}:odsCode")), None);
        assert_eq!(p[NHS_SCHEMA], json!({"odsCode": "RXA"}));
        let p = project(
            &u,
            None,
            Some("title,id,urn:tansync:params:scim:schemas:extension:nhs:2.0:User:status"),
        );
        assert!(p.get("title").is_none() && p.get("id").is_some());
        assert_eq!(p[NHS_SCHEMA], json!({"odsCode": "RXA"}));
    }

    #[test]
    fn published_schema_marks_directory_owned_attributes() {
        let s = schema_json(&USER, "http://x", &[]);
        let user_name = &s["attributes"][0];
        assert_eq!(user_name["name"], "userName");
        assert_eq!(user_name["mutability"], "readOnly");
        let n = schema_json(&NHS, "http://x", &["RXA".to_string()]);
        assert_eq!(n["attributes"][0]["canonicalValues"], json!(["RXA"]));
        assert_eq!(
            n["attributes"][2]["canonicalValues"],
            json!(["active", "leaver"])
        );
    }
}
