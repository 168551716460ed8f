//! SCIM PATCH (RFC 7644 §3.5.2) applied to a User's JSON: `add`, `replace`, `remove`,
//! with a path (`title`, `name.givenName`, `phoneNumbers[type eq "work"].value`,
//! `urn:…:nhs:2.0:User:odsCode`, a bare extension URN) or without one (a value object
//! whose keys are paths or extension URNs).
//!
//! Paths are resolved against the schema table: an unknown attribute is `invalidPath`,
//! a readOnly one (userName, emails, id, meta, leaverSince) or the removal of a
//! required one is `mutability`. A value path's filter is parsed like a search filter
//! (bounded in length and nesting, see `filter`) and refused as `invalidFilter`, as
//! RFC 7644 §3.12 lists it for "PATCH (Path Filter)"; a malformed path around it is
//! `invalidPath`. A value-path `add`/`replace` that matches no element
//! adds one built from the filter's `eq` terms, so `phoneNumbers[type eq "work"].value`
//! sets the telephone whether or not there was one.
//!
//! Pure: this only edits JSON. Whether the result is allowed (lifecycle, caps,
//! agreements) is decided afterwards by `rules`.

use super::error::ApiError;
use super::filter::{Filter, MAX_FILTER_LEN};
use nhs_model::schema::{Attr, Mutability, SchemaDef, Type, locate, split_urn, sub_attr};
use nhs_model::scim::PatchOperation;
use serde_json::{Map, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Add,
    Replace,
    Remove,
}

/// A parsed PATCH path.
#[derive(Debug)]
struct PatchPath {
    schema: Option<&'static SchemaDef>,
    attr: String,
    filter: Option<Filter>,
    sub: Option<String>,
}

impl PatchPath {
    fn parse(text: &str) -> Result<PatchPath, ApiError> {
        if text.len() > MAX_FILTER_LEN {
            return Err(ApiError::invalid_path(format!(
                "the path is {} bytes long; at most {MAX_FILTER_LEN} are accepted",
                text.len()
            )));
        }
        let (schema, rest) = split_urn(text.trim());
        let bad = || ApiError::invalid_path(format!("{text:?} is not an attribute path"));
        if let Some(open) = rest.find('[') {
            let attr = &rest[..open];
            let close = closing_bracket(rest, open).ok_or_else(bad)?;
            // The filter of a path is refused as a filter (RFC 7644 §3.12, invalidFilter:
            // "PATCH (Path Filter)"), with the same nesting bound as a search's.
            let filter = Filter::parse_in_value_path(&rest[open + 1..close]).map_err(|e| {
                ApiError::invalid_filter(format!("the filter of path {attr}[…]: {}", e.detail))
            })?;
            let after = &rest[close + 1..];
            let sub = match after {
                "" => None,
                s => Some(s.strip_prefix('.').ok_or_else(bad)?.to_string()),
            };
            return Ok(PatchPath {
                schema,
                attr: attr.to_string(),
                filter: Some(filter),
                sub,
            });
        }
        let (attr, sub) = match rest.split_once('.') {
            Some((a, s)) => (a, Some(s.to_string())),
            None => (rest, None),
        };
        Ok(PatchPath {
            schema,
            attr: attr.to_string(),
            filter: None,
            sub,
        })
    }
}

/// Index of the `]` closing the `[` at `open`, skipping quoted strings.
fn closing_bracket(s: &str, open: usize) -> Option<usize> {
    let mut in_str = false;
    let mut escaped = false;
    for (i, c) in s.char_indices().skip_while(|(i, _)| *i <= open) {
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            ']' => return Some(i),
            _ => {}
        }
    }
    None
}

/// Apply the operations in order to `doc` (a User as JSON).
pub fn apply(doc: &mut Value, ops: &[PatchOperation]) -> Result<(), ApiError> {
    if ops.is_empty() {
        return Err(ApiError::invalid_syntax(
            "a PATCH needs at least one operation",
        ));
    }
    for op in ops {
        apply_one(doc, op)?;
    }
    Ok(())
}

fn apply_one(doc: &mut Value, op: &PatchOperation) -> Result<(), ApiError> {
    let kind = match op.op.to_ascii_lowercase().as_str() {
        "add" => Kind::Add,
        "replace" => Kind::Replace,
        "remove" => Kind::Remove,
        other => {
            return Err(ApiError::invalid_syntax(format!(
                "unknown PATCH op {other:?} (add, replace or remove)"
            )));
        }
    };
    let path = op.path.as_deref().map(str::trim).filter(|p| !p.is_empty());
    match path {
        None => {
            if kind == Kind::Remove {
                return Err(ApiError::no_target("remove needs a path"));
            }
            let Some(Value::Object(map)) = &op.value else {
                return Err(ApiError::invalid_syntax(
                    "an add or replace without a path needs an object value",
                ));
            };
            for (k, v) in map {
                if k == "schemas" {
                    continue;
                }
                apply_path_text(doc, kind, k, Some(v))?;
            }
            Ok(())
        }
        Some(p) => apply_path_text(doc, kind, p, op.value.as_ref()),
    }
}

fn apply_path_text(
    doc: &mut Value,
    kind: Kind,
    text: &str,
    value: Option<&Value>,
) -> Result<(), ApiError> {
    let (schema, rest) = split_urn(text);
    if let (Some(s), "") = (schema, rest) {
        // The schema URN itself: its attributes are the value's keys.
        if kind == Kind::Remove {
            if let Some(req) = s.attrs.iter().find(|a| a.required) {
                return Err(ApiError::mutability(format!(
                    "{}:{} is required and cannot be removed",
                    s.id, req.name
                )));
            }
            if let Some(o) = doc.as_object_mut() {
                o.remove(s.id);
            }
            return Ok(());
        }
        let Some(Value::Object(map)) = value else {
            return Err(ApiError::invalid_value(format!(
                "the value for {} must be an object",
                s.id
            )));
        };
        // Clients that model the extension as a resource of its own (scim2-models
        // does) send its `schemas` along: it names the URN the path already gives, and
        // is no attribute to set.
        for (k, v) in map.iter().filter(|(k, _)| k.as_str() != "schemas") {
            apply_at(
                doc,
                kind,
                &PatchPath {
                    schema: Some(s),
                    attr: k.clone(),
                    filter: None,
                    sub: None,
                },
                Some(v),
            )?;
        }
        return Ok(());
    }
    apply_at(doc, kind, &PatchPath::parse(text)?, value)
}

fn read_only(name: &str) -> ApiError {
    ApiError::mutability(format!(
        "{name} is read-only: the directory sets it (see /Schemas)"
    ))
}

fn apply_at(
    doc: &mut Value,
    kind: Kind,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ApiError> {
    let loc = locate(path.schema, &path.attr)
        .ok_or_else(|| ApiError::invalid_path(format!("unknown attribute {:?}", path.attr)))?;
    let attr = loc.attr;
    if attr.mutability == Mutability::ReadOnly {
        return Err(read_only(attr.name));
    }
    let sub_def = match &path.sub {
        None => None,
        Some(s) => Some(sub_attr(attr, s).ok_or_else(|| {
            ApiError::invalid_path(format!("{} has no sub-attribute {s:?}", attr.name))
        })?),
    };
    if let Some(sd) = sub_def
        && sd.mutability == Mutability::ReadOnly
    {
        return Err(read_only(&format!("{}.{}", attr.name, sd.name)));
    }
    // A null value unassigns (RFC 7643 §2.5).
    let value = value.filter(|v| !v.is_null());
    let kind = if kind != Kind::Remove && value.is_none() {
        if path.filter.is_none() && path.sub.is_none() && matches!(kind, Kind::Add) {
            return Err(ApiError::invalid_value(format!(
                "add to {} needs a value",
                attr.name
            )));
        }
        Kind::Remove
    } else {
        kind
    };

    let Some(root) = doc.as_object_mut() else {
        return Err(ApiError::internal());
    };
    let container = match loc.container() {
        None => root,
        Some(c) => {
            let entry = root
                .entry(c.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            match entry.as_object_mut() {
                Some(m) => m,
                None => return Err(ApiError::internal()),
            }
        }
    };

    match (attr.multi, &path.filter, sub_def) {
        (false, Some(_), _) => Err(ApiError::invalid_path(format!(
            "{} is single-valued: no filter",
            attr.name
        ))),
        (false, None, None) => single(container, attr, kind, value),
        (false, None, Some(sd)) => complex_sub(container, attr, sd, kind, value),
        (true, None, None) => multi_whole(container, attr, kind, value),
        (true, None, Some(sd)) => {
            if kind != Kind::Remove {
                return Err(ApiError::invalid_path(format!(
                    "{}.{}: say which entry, e.g. {}[type eq \"work\"].{}",
                    attr.name, sd.name, attr.name, sd.name
                )));
            }
            if let Some(Value::Array(items)) = container.get_mut(attr.name) {
                for i in items.iter_mut().filter_map(Value::as_object_mut) {
                    i.remove(sd.name);
                }
            }
            tidy_list(container, attr.name);
            Ok(())
        }
        (true, Some(f), sd) => multi_filtered(container, attr, f, sd, kind, value),
    }?;
    // An extension left empty is dropped.
    if let Some(c) = loc.container()
        && let Some(root) = doc.as_object_mut()
        && root
            .get(c)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        root.remove(c);
    }
    Ok(())
}

/// A simple value of the attribute's type; booleans also as "true"/"false" (some
/// clients send strings).
fn coerce(attr: &Attr, v: &Value) -> Result<Value, ApiError> {
    match (attr.ty, v) {
        (Type::Boolean, Value::Bool(_)) => Ok(v.clone()),
        (Type::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Ok(Value::Bool(true))
        }
        (Type::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Ok(Value::Bool(false))
        }
        (Type::String | Type::DateTime, Value::String(_)) => Ok(v.clone()),
        (Type::Integer, Value::Number(_)) => Ok(v.clone()),
        _ => Err(ApiError::invalid_value(format!(
            "{} takes a {} value",
            attr.name,
            match attr.ty {
                Type::Boolean => "boolean",
                Type::Integer => "integer",
                Type::Complex => "complex (object)",
                _ => "string",
            }
        ))),
    }
}

fn required(attr: &Attr) -> ApiError {
    ApiError::mutability(format!("{} is required and cannot be removed", attr.name))
}

/// The value an add or replace brings; for a remove (or no value) the attribute is
/// removed — unless it is required — and there is nothing more to do (`None`).
fn value_or_remove<'v>(
    container: &mut Map<String, Value>,
    attr: &Attr,
    kind: Kind,
    value: Option<&'v Value>,
) -> Result<Option<&'v Value>, ApiError> {
    match (kind, value) {
        (Kind::Remove, _) | (_, None) => {
            if attr.required {
                return Err(required(attr));
            }
            container.remove(attr.name);
            Ok(None)
        }
        (_, Some(v)) => Ok(Some(v)),
    }
}

fn single(
    container: &mut Map<String, Value>,
    attr: &'static Attr,
    kind: Kind,
    value: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(value) = value_or_remove(container, attr, kind, value)? else {
        return Ok(());
    };
    if attr.ty != Type::Complex {
        container.insert(attr.name.to_string(), coerce(attr, value)?);
        return Ok(());
    }
    // A complex attribute: the given sub-attributes replace theirs, others stay.
    let Value::Object(given) = value else {
        return Err(ApiError::invalid_value(format!(
            "{} takes an object value",
            attr.name
        )));
    };
    for (k, v) in given {
        let sd = sub_attr(attr, k).ok_or_else(|| {
            ApiError::invalid_path(format!("{} has no sub-attribute {k:?}", attr.name))
        })?;
        let v = Some(v).filter(|v| !v.is_null());
        complex_sub(
            container,
            attr,
            sd,
            if v.is_some() { kind } else { Kind::Remove },
            v,
        )?;
    }
    Ok(())
}

fn complex_sub(
    container: &mut Map<String, Value>,
    attr: &'static Attr,
    sd: &'static Attr,
    kind: Kind,
    value: Option<&Value>,
) -> Result<(), ApiError> {
    if sd.mutability == Mutability::ReadOnly {
        return Err(read_only(&format!("{}.{}", attr.name, sd.name)));
    }
    match (kind, value) {
        (Kind::Remove, _) | (_, None) => {
            if sd.required {
                return Err(required(sd));
            }
            if let Some(Value::Object(o)) = container.get_mut(attr.name) {
                o.remove(sd.name);
                if o.is_empty() {
                    container.remove(attr.name);
                }
            }
            Ok(())
        }
        (_, Some(v)) => {
            let v = coerce(sd, v)?;
            let entry = container
                .entry(attr.name.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Some(o) = entry.as_object_mut() {
                o.insert(sd.name.to_string(), v);
            }
            Ok(())
        }
    }
}

/// Elements of a multi-valued complex attribute from a value (an array or one object),
/// with known sub-attributes in their own spelling; others are dropped.
fn elements(attr: &'static Attr, value: &Value) -> Result<Vec<Map<String, Value>>, ApiError> {
    let items: Vec<&Value> = match value {
        Value::Array(a) => a.iter().collect(),
        v @ Value::Object(_) => vec![v],
        _ => {
            return Err(ApiError::invalid_value(format!(
                "{} takes a list of objects",
                attr.name
            )));
        }
    };
    let mut out = Vec::new();
    for item in items {
        let Value::Object(o) = item else {
            return Err(ApiError::invalid_value(format!(
                "each {} entry is an object",
                attr.name
            )));
        };
        out.push(element(attr, o)?);
    }
    Ok(out)
}

fn element(attr: &'static Attr, o: &Map<String, Value>) -> Result<Map<String, Value>, ApiError> {
    let mut e = Map::new();
    for (k, v) in o {
        if v.is_null() {
            continue;
        }
        if let Some(sd) = sub_attr(attr, k) {
            e.insert(sd.name.to_string(), coerce(sd, v)?);
        }
    }
    Ok(e)
}

/// At most one primary: when several claim it, the last one keeps it.
fn fix_primary(items: &mut [Value]) {
    let last = items
        .iter()
        .rposition(|i| i.get("primary") == Some(&Value::Bool(true)));
    if let Some(last) = last {
        for (n, i) in items.iter_mut().enumerate() {
            if n != last
                && let Some(o) = i.as_object_mut()
                && o.get("primary") == Some(&Value::Bool(true))
            {
                o.insert("primary".into(), Value::Bool(false));
            }
        }
    }
}

/// Drop entries left without a value, and the attribute when no entry is left.
fn tidy_list(container: &mut Map<String, Value>, name: &str) {
    if let Some(Value::Array(items)) = container.get_mut(name) {
        items.retain(|i| i.get("value").is_some_and(|v| !v.is_null()));
        fix_primary(items);
        if items.is_empty() {
            container.remove(name);
        }
    }
}

fn multi_whole(
    container: &mut Map<String, Value>,
    attr: &'static Attr,
    kind: Kind,
    value: Option<&Value>,
) -> Result<(), ApiError> {
    let Some(value) = value_or_remove(container, attr, kind, value)? else {
        return Ok(());
    };
    let new = elements(attr, value)?;
    let list = container
        .entry(attr.name.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if kind == Kind::Replace || !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    if let Value::Array(items) = list {
        for e in new {
            let e = Value::Object(e);
            if !items.contains(&e) {
                items.push(e);
            }
        }
    }
    tidy_list(container, attr.name);
    Ok(())
}

fn multi_filtered(
    container: &mut Map<String, Value>,
    attr: &'static Attr,
    filter: &Filter,
    sub: Option<&'static Attr>,
    kind: Kind,
    value: Option<&Value>,
) -> Result<(), ApiError> {
    // What a new entry gets from the filter: its `sub eq "x"` terms.
    let mut seed = Map::new();
    for (p, v) in filter.required_equalities() {
        if p.extension.is_none()
            && p.sub.is_none()
            && let Some(sd) = sub_attr(attr, &p.attr)
        {
            seed.insert(sd.name.to_string(), v.clone());
        }
    }
    let list = container
        .entry(attr.name.to_string())
        .or_insert_with(|| Value::Array(Vec::new()));
    if !list.is_array() {
        *list = Value::Array(Vec::new());
    }
    let Value::Array(items) = list else {
        return Err(ApiError::internal());
    };
    let matched: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, i)| filter.matches(i))
        .map(|(n, _)| n)
        .collect();
    match (kind, sub, value) {
        (Kind::Remove, None, _) | (_, None, None) => {
            for n in matched.into_iter().rev() {
                items.remove(n);
            }
        }
        (Kind::Remove, Some(sd), _) | (_, Some(sd), None) => {
            for n in matched {
                if let Some(o) = items[n].as_object_mut() {
                    o.remove(sd.name);
                }
            }
        }
        (_, Some(sd), Some(v)) => {
            let v = coerce(sd, v)?;
            if matched.is_empty() {
                let mut e = seed;
                e.insert(sd.name.to_string(), v);
                items.push(Value::Object(e));
            } else {
                for n in matched {
                    if let Some(o) = items[n].as_object_mut() {
                        o.insert(sd.name.to_string(), v.clone());
                    }
                }
            }
        }
        (_, None, Some(v)) => {
            let Value::Object(given) = v else {
                return Err(ApiError::invalid_value(format!(
                    "the value for a {} entry is an object",
                    attr.name
                )));
            };
            let given = element(attr, given)?;
            if matched.is_empty() {
                let mut e = seed;
                e.extend(given);
                items.push(Value::Object(e));
            } else {
                for n in matched {
                    let mut e = if kind == Kind::Replace {
                        seed.clone()
                    } else {
                        items[n].as_object().cloned().unwrap_or_default()
                    };
                    e.extend(given.clone());
                    items[n] = Value::Object(e);
                }
            }
        }
    }
    tidy_list(container, attr.name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nhs_model::Field;
    use nhs_model::scim::{ENTERPRISE_SCHEMA, NHS_SCHEMA, User};
    use serde_json::json;

    fn op(op: &str, path: Option<&str>, value: Option<Value>) -> PatchOperation {
        PatchOperation {
            op: op.into(),
            path: path.map(String::from),
            value,
        }
    }

    fn base() -> Value {
        json!({
            "userName": "sian.evans@nhs.net",
            "name": {"givenName": "Siân", "familyName": "Evans"},
            "title": "Nurse",
            "phoneNumbers": [{"value": "01632 960001", "type": "work"}],
            "active": true,
            NHS_SCHEMA: {"odsCode": "RXA", "status": "active"},
        })
    }

    #[test]
    fn every_model_field_path_can_be_set_and_cleared() {
        for f in Field::ALL.into_iter().filter(|f| f.is_synchronised()) {
            let path = User::path(f);
            let mut doc = base();
            apply(&mut doc, &[op("replace", Some(&path), Some(json!("X1")))])
                .unwrap_or_else(|e| panic!("{path}: {e}"));
            let u: User = serde_json::from_value(doc.clone()).unwrap();
            assert_eq!(u.fields().get(&f), Some("X1"), "{path}");
            if matches!(f, Field::GivenName | Field::FamilyName) {
                let e = apply(&mut doc, &[op("remove", Some(&path), None)]).unwrap_err();
                assert_eq!(e.scim_type, Some("mutability"), "{path}");
                continue;
            }
            apply(&mut doc, &[op("remove", Some(&path), None)]).unwrap();
            let u: User = serde_json::from_value(doc).unwrap();
            assert!(!u.fields().contains_key(&f), "{path}");
        }
    }

    #[test]
    fn value_path_adds_a_missing_entry_and_keeps_others() {
        let mut doc = base();
        apply(
            &mut doc,
            &[op(
                "add",
                Some("phoneNumbers[type eq \"mobile\"].value"),
                Some(json!("+447700900123")),
            )],
        )
        .unwrap();
        assert_eq!(
            doc["phoneNumbers"],
            json!([{"value": "01632 960001", "type": "work"},
                   {"type": "mobile", "value": "+447700900123"}])
        );
        apply(
            &mut doc,
            &[op("remove", Some("phoneNumbers[type eq \"work\"]"), None)],
        )
        .unwrap();
        assert_eq!(doc["phoneNumbers"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn no_path_form_sets_core_and_extension_attributes() {
        let mut doc = base();
        apply(
            &mut doc,
            &[op(
                "Replace",
                None,
                Some(json!({
                    "active": "False",
                    "name": {"familyName": "Evans-Jones"},
                    NHS_SCHEMA: {"status": "leaver", "managedBy": "agent-1"},
                    ENTERPRISE_SCHEMA: {"department": "Cardiology"},
                })),
            )],
        )
        .unwrap();
        assert_eq!(doc["active"], json!(false));
        assert_eq!(
            doc["name"],
            json!({"givenName": "Siân", "familyName": "Evans-Jones"})
        );
        assert_eq!(doc[NHS_SCHEMA]["status"], "leaver");
        assert_eq!(doc[NHS_SCHEMA]["odsCode"], "RXA");
        assert_eq!(doc[ENTERPRISE_SCHEMA]["department"], "Cardiology");
    }

    #[test]
    fn refusals_carry_scim_types() {
        for (o, want) in [
            (
                op("replace", Some("userName"), Some(json!("x@nhs.net"))),
                "mutability",
            ),
            (
                op(
                    "replace",
                    Some("emails[type eq \"work\"].value"),
                    Some(json!("x")),
                ),
                "mutability",
            ),
            (
                op("remove", Some(&format!("{NHS_SCHEMA}:odsCode")), None),
                "mutability",
            ),
            (
                op(
                    "replace",
                    Some(&format!("{NHS_SCHEMA}:leaverSince")),
                    Some(json!("x")),
                ),
                "mutability",
            ),
            (
                op("replace", Some("nickName"), Some(json!("x"))),
                "invalidPath",
            ),
            (
                op("replace", Some("title[type eq \"x\"]"), Some(json!("x"))),
                "invalidPath",
            ),
            (op("remove", None, None), "noTarget"),
            (op("move", Some("title"), None), "invalidSyntax"),
            (
                op("replace", Some("active"), Some(json!("maybe"))),
                "invalidValue",
            ),
            (
                op("replace", Some("phoneNumbers.value"), Some(json!("1"))),
                "invalidPath",
            ),
            (op("replace", Some("id"), Some(json!("x"))), "mutability"),
            (
                op("replace", Some("meta.lastModified"), Some(json!("x"))),
                "mutability",
            ),
            (
                op("add", None, Some(json!({"meta": {"version": "W/\"9\""}}))),
                "mutability",
            ),
            (
                op(
                    "replace",
                    Some(NHS_SCHEMA),
                    Some(json!({"leaverSince": "2026-01-01T00:00:00Z"})),
                ),
                "mutability",
            ),
            (
                op("remove", Some("phoneNumbers[value[type pr]]"), None),
                "invalidFilter",
            ),
            (
                op("remove", Some("phoneNumbers[type eq \"work\""), None),
                "invalidPath",
            ),
        ] {
            let mut doc = base();
            let e = apply(&mut doc, std::slice::from_ref(&o)).unwrap_err();
            assert_eq!(e.scim_type, Some(want), "{o:?}: {e}");
        }
    }

    #[test]
    fn path_filters_are_bounded_like_search_filters() {
        let deep = |n: usize| {
            format!(
                "phoneNumbers[{}type eq \"work\"{}].value",
                "(".repeat(n),
                ")".repeat(n)
            )
        };
        // The brackets are one level: 63 parentheses more fit, 64 do not.
        let mut doc = base();
        apply(
            &mut doc,
            &[op("replace", Some(&deep(63)), Some(json!("1")))],
        )
        .unwrap();
        assert_eq!(doc["phoneNumbers"][0]["value"], "1");
        for n in [64, 2_000] {
            let e = apply(
                &mut base(),
                &[op("replace", Some(&deep(n)), Some(json!("1")))],
            )
            .unwrap_err();
            assert_eq!(e.scim_type, Some("invalidFilter"), "{n}: {e}");
            assert!(e.detail.contains("nests deeper than 64"), "{e}");
        }
        let e = apply(
            &mut base(),
            &[op("replace", Some(&deep(100_000)), Some(json!("1")))],
        )
        .unwrap_err();
        assert_eq!(e.scim_type, Some("invalidPath"), "{e}");
        assert!(e.detail.contains("at most 16384"), "{e}");
        let nested = format!("{}type pr{}", "phoneNumbers[".repeat(500), "]".repeat(500));
        let e = apply(&mut base(), &[op("remove", Some(&nested), None)]).unwrap_err();
        assert_eq!(e.scim_type, Some("invalidFilter"), "{e}");
    }

    #[test]
    fn extension_urn_path_ignores_the_values_schemas() {
        let mut doc = base();
        apply(
            &mut doc,
            &[op(
                "replace",
                Some(ENTERPRISE_SCHEMA),
                Some(json!({"schemas": [ENTERPRISE_SCHEMA], "department": "Cardiology"})),
            )],
        )
        .unwrap();
        assert_eq!(doc[ENTERPRISE_SCHEMA], json!({"department": "Cardiology"}));
        apply(
            &mut doc,
            &[op(
                "add",
                Some(NHS_SCHEMA),
                Some(json!({"schemas": [NHS_SCHEMA], "site": "Northgate"})),
            )],
        )
        .unwrap();
        assert_eq!(doc[NHS_SCHEMA]["site"], "Northgate");
        assert_eq!(doc[NHS_SCHEMA]["odsCode"], "RXA");
    }

    #[test]
    fn add_appends_and_replace_sets_lists() {
        let mut doc = base();
        let mobile = json!([{"value": "+447700900123", "type": "mobile", "primary": true}]);
        apply(
            &mut doc,
            &[op("add", Some("phoneNumbers"), Some(mobile.clone()))],
        )
        .unwrap();
        assert_eq!(doc["phoneNumbers"].as_array().map(Vec::len), Some(2));
        // Adding the same entry again changes nothing.
        apply(
            &mut doc,
            &[op("add", Some("phoneNumbers"), Some(mobile.clone()))],
        )
        .unwrap();
        assert_eq!(doc["phoneNumbers"].as_array().map(Vec::len), Some(2));
        apply(
            &mut doc,
            &[op("replace", Some("phoneNumbers"), Some(mobile.clone()))],
        )
        .unwrap();
        assert_eq!(doc["phoneNumbers"], mobile);
        apply(&mut doc, &[op("remove", Some("phoneNumbers"), None)]).unwrap();
        assert!(doc.get("phoneNumbers").is_none());
    }
}
