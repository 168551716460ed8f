//! Read-only attributes in a create (POST) or a replace (PUT): the directory never
//! ignores one silently. A read-only attribute (RFC 7643 §2.2 `readOnly`, as the schema
//! table `nhs_model::schema` marks it: id, meta, emails, the NHS extension's
//! leaverSince, …) that a client sends with a value is refused with `400 mutability`
//! naming it (RFC 7644 §3.12) — on a create always, on a replace unless it is the value
//! the account already has, so that a client may PUT back what it read.
//!
//! One exception, on create: `userName`. RFC 7643 §4.1.1 makes it required of every
//! client, so generic clients and the agent send one; the directory allocates the
//! address from the names instead (`address`) and answers with it. On a replace it must
//! be the current address, as for every other read-only attribute.
//!
//! PATCH paths are checked in `patch`. Pure: this only reads JSON.

use super::error::ApiError;
use super::filter::get_ci;
use nhs_model::schema::{Attr, Located, Mutability, Type, locate, split_urn, sub_attr};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A read-only attribute a request carries a value for.
struct Sent<'a> {
    /// Its SCIM path, for the error (`meta`, `urn:…:nhs:2.0:User:leaverSince`).
    path: String,
    loc: Located,
    value: &'a Value,
}

/// Is a value given (not null, blank or empty)?
fn given(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => a.iter().any(given),
        Value::Object(o) => o.values().any(given),
        _ => true,
    }
}

/// The read-only attributes `body` gives values for, in the body's order. Keys that
/// name no attribute of the schema are not read-only and not listed.
fn read_only_sent(body: &Value) -> Vec<Sent<'_>> {
    let mut out = Vec::new();
    let Some(obj) = body.as_object() else {
        return out;
    };
    let mut consider = |loc: Located, path: String, v| {
        if loc.attr.mutability == Mutability::ReadOnly && given(v) {
            out.push(Sent {
                path,
                loc,
                value: v,
            });
        }
    };
    for (key, v) in obj {
        if key == "schemas" {
            continue;
        }
        let (schema, rest) = split_urn(key);
        match schema {
            Some(s) if s.extension && rest.is_empty() => {
                for (k, v) in v.as_object().into_iter().flatten() {
                    if let Some(loc) = locate(Some(s), k).filter(|_| k != "schemas") {
                        consider(loc, format!("{}:{}", s.id, loc.attr.name), v);
                    }
                }
            }
            _ => {
                // At the top level only core and common attributes live (an extension
                // attribute there is no attribute at all and is not read).
                if let Some(loc) = locate(schema, rest).filter(|l| l.container().is_none()) {
                    consider(loc, loc.attr.name.to_string(), v);
                }
            }
        }
    }
    out
}

fn refused(path: &str, why: &str) -> ApiError {
    ApiError::mutability(format!(
        "{path} is read-only: the directory sets it (see /Schemas); {why}"
    ))
}

/// Refuse a create that gives a read-only attribute (but `userName`, see the module doc).
pub fn check_create(body: &Value) -> Result<(), ApiError> {
    for s in read_only_sent(body) {
        if s.loc.container().is_none() && s.loc.attr.name == "userName" {
            continue;
        }
        return Err(refused(&s.path, "leave it out of a create"));
    }
    Ok(())
}

/// Refuse a replace that gives a read-only attribute a value other than the one in
/// `current` (the account as the directory answers it).
pub fn check_replace(body: &Value, current: &Value) -> Result<(), ApiError> {
    for s in read_only_sent(body) {
        let container = match s.loc.container() {
            None => Some(current),
            Some(c) => get_ci(current, c),
        };
        let now = container.and_then(|c| get_ci(c, s.loc.attr.name));
        if !agrees(s.loc.attr, s.value, now) {
            return Err(refused(
                &s.path,
                "a replace may only repeat its current value",
            ));
        }
    }
    Ok(())
}

/// Does a value sent for `attr` say what `current` holds? Sub-attributes left out
/// agree; of a multi-valued attribute, every element sent must be one it holds.
fn agrees(attr: &'static Attr, sent: &Value, current: Option<&Value>) -> bool {
    if !given(sent) {
        return true;
    }
    let Some(current) = current else {
        return false;
    };
    if attr.multi {
        let held: Vec<&Value> = match current {
            Value::Array(a) => a.iter().collect(),
            v => vec![v],
        };
        let elements: Vec<&Value> = match sent {
            Value::Array(a) => a.iter().filter(|e| given(e)).collect(),
            v => vec![v],
        };
        return elements
            .iter()
            .all(|e| held.iter().any(|h| agrees_one(attr, e, h)));
    }
    agrees_one(attr, sent, current)
}

fn agrees_one(attr: &'static Attr, sent: &Value, current: &Value) -> bool {
    if attr.ty != Type::Complex {
        return same_simple(attr, sent, current);
    }
    let Value::Object(given_subs) = sent else {
        return false;
    };
    given_subs.iter().all(|(k, v)| match sub_attr(attr, k) {
        Some(sd) => !given(v) || get_ci(current, sd.name).is_some_and(|c| agrees(sd, v, Some(c))),
        None => false,
    })
}

fn same_simple(attr: &Attr, sent: &Value, current: &Value) -> bool {
    match (attr.ty, sent, current) {
        (Type::DateTime, Value::String(a), Value::String(b)) => {
            match (
                OffsetDateTime::parse(a, &Rfc3339),
                OffsetDateTime::parse(b, &Rfc3339),
            ) {
                (Ok(a), Ok(b)) => a == b,
                _ => a == b,
            }
        }
        (_, Value::String(a), Value::String(b)) => {
            // An ETag may come back weak or strong (`W/"3"`, `"3"`).
            let strip = |s: &str| s.trim().trim_start_matches("W/").to_lowercase();
            if attr.name == "version" {
                strip(a) == strip(b)
            } else {
                a.trim().to_lowercase() == b.trim().to_lowercase()
            }
        }
        (_, a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhs_model::scim::{ENTERPRISE_SCHEMA, NHS_SCHEMA, USER_SCHEMA};
    use serde_json::json;

    fn current() -> Value {
        json!({
            "schemas": [USER_SCHEMA, NHS_SCHEMA],
            "id": "a1b2",
            "userName": "sian.evans@nhs.net",
            "name": {"givenName": "Siân", "familyName": "Evans"},
            "emails": [{"value": "sian.evans@nhs.net", "type": "work", "primary": true}],
            "active": false,
            NHS_SCHEMA: {"odsCode": "RXA", "status": "leaver",
                         "leaverSince": "2026-11-12T09:00:00Z"},
            "meta": {"resourceType": "User", "created": "2026-01-01T00:00:00Z",
                     "lastModified": "2026-11-12T09:00:00Z",
                     "location": "http://x/Users/a1b2", "version": "W/\"3\""},
        })
    }

    fn create() -> Value {
        json!({
            "schemas": [USER_SCHEMA, NHS_SCHEMA],
            "userName": "chosen.by.client@example.org",
            "name": {"givenName": "Siân", "familyName": "Evans"},
            "active": true,
            NHS_SCHEMA: {"odsCode": "RXA", "status": "active", "managedBy": "agent"},
            ENTERPRISE_SCHEMA: {"department": "Cardiology"},
        })
    }

    #[test]
    fn a_create_may_not_give_read_only_attributes_but_user_name() {
        assert!(check_create(&create()).is_ok());
        // Blank or empty values give nothing.
        let mut body = create();
        body["id"] = json!("");
        body["emails"] = json!([]);
        body["meta"] = json!(null);
        assert!(check_create(&body).is_ok());
        for (key, value, path) in [
            ("id", json!("x1"), "id".to_string()),
            ("meta", json!({"version": "W/\"1\""}), "meta".to_string()),
            (
                "emails",
                json!([{"value": "me@nhs.net"}]),
                "emails".to_string(),
            ),
            (
                "urn:ietf:params:scim:schemas:core:2.0:User:emails",
                json!([{"value": "me@nhs.net"}]),
                "emails".to_string(),
            ),
        ] {
            let mut body = create();
            body[key] = value;
            let e = check_create(&body).unwrap_err();
            assert_eq!((e.status, e.scim_type), (400, Some("mutability")), "{key}");
            assert!(e.detail.starts_with(&format!("{path} is read-only")), "{e}");
        }
        let mut body = create();
        body[NHS_SCHEMA]["leaverSince"] = json!("2026-11-12T09:00:00Z");
        body[NHS_SCHEMA]["status"] = json!("leaver");
        let e = check_create(&body).unwrap_err();
        assert_eq!(e.scim_type, Some("mutability"));
        assert!(
            e.detail
                .starts_with(&format!("{NHS_SCHEMA}:leaverSince is read-only")),
            "{e}"
        );
    }

    #[test]
    fn a_replace_may_repeat_read_only_values_but_not_change_them() {
        let now = current();
        // Sending the account back as read is fine, also in other spellings.
        assert!(check_replace(&now, &now).is_ok());
        let mut same = now.clone();
        same["userName"] = json!("SIAN.EVANS@nhs.net");
        same["meta"] = json!({"version": "\"3\"", "lastModified": "2026-11-12T10:00:00+01:00"});
        same["emails"] = json!({"value": "sian.evans@nhs.net"});
        assert!(check_replace(&same, &now).is_ok());
        for (edit, path) in [
            (json!({"id": "other"}), "id".to_string()),
            (json!({"userName": "me@nhs.net"}), "userName".to_string()),
            (
                json!({"emails": [{"value": "sian.evans@nhs.net"}, {"value": "me@nhs.net"}]}),
                "emails".to_string(),
            ),
            (
                json!({"emails": [{"value": "sian.evans@nhs.net", "primary": false}]}),
                "emails".to_string(),
            ),
            (json!({"meta": {"version": "W/\"2\""}}), "meta".to_string()),
            (
                json!({"meta": {"created": "2025-01-01T00:00:00Z"}}),
                "meta".to_string(),
            ),
            (
                json!({NHS_SCHEMA: {"odsCode": "RXA", "leaverSince": "2026-11-13T09:00:00Z"}}),
                format!("{NHS_SCHEMA}:leaverSince"),
            ),
        ] {
            let mut body = now.clone();
            for (k, v) in edit.as_object().unwrap() {
                body[k] = v.clone();
            }
            let e = check_replace(&body, &now).unwrap_err();
            assert_eq!(e.scim_type, Some("mutability"), "{edit}");
            assert!(e.detail.starts_with(&format!("{path} is read-only")), "{e}");
        }
        // A leaverSince on an account that has none is a change, too.
        let mut active = now.clone();
        active[NHS_SCHEMA] = json!({"odsCode": "RXA", "status": "active"});
        assert!(check_replace(&now, &active).is_err());
    }

    #[test]
    fn read_only_attributes_have_no_writable_parts_and_writable_ones_no_read_only_parts() {
        // `check_*` judge read-only attributes whole; a writable attribute with a
        // read-only sub-attribute would need a finer check.
        for s in nhs_model::schema::USER_SCHEMAS
            .iter()
            .copied()
            .chain([&nhs_model::schema::COMMON])
        {
            for a in s.attrs {
                if a.mutability == Mutability::ReadWrite {
                    assert!(
                        a.sub
                            .iter()
                            .all(|sd| sd.mutability == Mutability::ReadWrite),
                        "{}.{}",
                        s.name,
                        a.name
                    );
                }
            }
        }
    }
}
