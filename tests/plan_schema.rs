//! The plan JSON Schema (`docs/tansync.plan.schema.json`) against real plans: the golden
//! plans, the quickstart's plan from the built binary, and a hand-written plan with every
//! operation kind and optional field; and proof that it refuses what is not a plan.
//! (Every plan the other integration tests make is checked too, in `common::plan_json`.)

mod common;
use common::plan_schema::{assert_valid_plan, plan_errors, schema};
use serde_json::{Value, json};
use std::process::Command;

#[test]
fn golden_plans_are_valid() {
    let dir = common::repo().join("tests/golden");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/golden") {
        let path = entry.expect("entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("read golden plan");
        let plan: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let errors = plan_errors(&plan);
        assert!(
            errors.is_empty(),
            "{} does not match the schema:\n  {}",
            path.display(),
            errors.join("\n  ")
        );
        checked += 1;
    }
    assert!(checked > 0, "no golden plans in {}", dir.display());
}

#[test]
fn quickstart_plan_is_valid() {
    let out = Command::new(env!("CARGO_BIN_EXE_tansync"))
        .current_dir(common::repo())
        .args([
            "--config",
            "examples/quickstart/tansync.toml",
            "plan",
            "--format",
            "json",
            "--now",
            common::NOW,
        ])
        .env_remove("TANSYNC_CONFIG")
        .output()
        .expect("run tansync");
    let run = common::Run::from(out);
    assert_eq!(run.code, 2, "changes present → exit 2: {}", run.stderr);
    let plan: Value = serde_json::from_str(&run.stdout).expect("plan JSON");
    assert_valid_plan(&plan);
}

const XID: &str = "af40ac76-1201-4205-83fb-a1707109e8b4";

/// A plan using every operation kind and every optional field.
fn full_plan() -> Value {
    let change = |f: &str, old: Value, new: Value| json!({"field": f, "old": old, "new": new});
    let xid = |n: u32| format!("00000000-0000-0000-0000-{n:012}");
    json!({
        "format": "tansync.plan/v1",
        "generated_at": "2026-11-22T10:00:00Z",
        "fingerprint": format!("sha256:{}", "0123456789abcdef".repeat(4)),
        "source": {"kind": "ldap", "read": 12, "in_scope": 10, "rejected": 2},
        "target": {"kind": "scim", "read": 9},
        "summary": {"provision": 1, "update": 1, "remove": 1, "move": 1, "restore": 1,
                    "join": 1, "unchanged": 4, "blocked": 2, "rejected": 2},
        "operations": [
            {"kind": "provision", "external_id": XID, "ods_code": "RXA", "rule": "staff-ou",
             "attributes": {"given_name": "Siân", "family_name": "Evans",
                            "display_name": "Siân Evans", "mobile": "+447123456789"},
             "stripped": ["job_title", "telephone"]},
            {"kind": "update", "external_id": xid(2), "target_id": "nhsd-2", "ods_code": "RXA",
             "changes": [change("job_title", json!("Nurse"), json!("Senior Nurse")),
                         change("telephone", json!("+441134960000"), Value::Null)],
             "etag": "W/\"3\""},
            {"kind": "remove", "external_id": xid(3), "target_id": "nhsd-3", "ods_code": "RXA",
             "reason": "not_in_source", "etag": "W/\"1\""},
            {"kind": "move", "external_id": xid(4), "target_id": "nhsd-4",
             "from_ods_code": "RXA", "ods_code": "RYY",
             "changes": [change("site", Value::Null, json!("Westfield"))]},
            {"kind": "restore", "external_id": xid(5), "target_id": "nhsd-5", "ods_code": "RXA",
             "changes": [change("department", json!("A&E"), json!("Maternity"))],
             "etag": "W/\"7\""},
            {"kind": "join", "external_id": xid(6), "target_id": "nhsd-6", "ods_code": "RXA",
             "matched_on": "email",
             "changes": [change("employee_id", Value::Null, json!("E1006"))]}
        ],
        "blocked": [
            {"kind": "provision", "external_id": xid(7), "ods_code": "RXA",
             "reason": "account_cap", "detail": "RXA holds 50 of 50 accounts",
             "operation": {"kind": "provision", "external_id": xid(7), "ods_code": "RXA",
                           "rule": "staff-ou",
                           "attributes": {"given_name": "Ann", "family_name": "Lee"}}},
            {"kind": "remove", "external_id": xid(8), "ods_code": "RXA",
             "reason": "unverified_absence",
             "detail": "1 entry in scope has no readable anchor",
             "operation": {"kind": "remove", "external_id": xid(8), "target_id": "nhsd-8",
                           "ods_code": "RXA", "reason": "not_in_source"}}
        ],
        "rejected": [
            {"dn": "CN=no.surname,OU=Staff,DC=example", "external_id": xid(9),
             "reason": "missing_mandatory", "detail": "family_name is empty"},
            {"dn": "CN=no.guid,OU=Staff,DC=example",
             "reason": "missing_mandatory", "detail": "anchor: objectGUID is missing"}
        ],
        "warnings": [
            {"external_id": xid(10), "dn": "CN=Ann Lee,OU=Staff,DC=example",
             "field": "telephone", "reason": "invalid_value",
             "detail": "telephone \"ext 4411\" is not a telephone number; not sent"}
        ],
        "write_back": [
            {"external_id": xid(11), "dn": "CN=Bo Ng,OU=Staff,DC=example",
             "attribute": "mail", "old": null, "new": "bo.ng@nhs.net"},
            {"external_id": xid(12), "dn": "CN=Cy Oak,OU=Staff,DC=example",
             "attribute": "mail", "old": "cy@old.example", "new": "cy.oak@nhs.net"}
        ]
    })
}

/// [`full_plan`] with `edit` applied must be refused, with an error at `at` (a JSON
/// pointer prefix; `"/: "` for the top level itself).
fn assert_refused(what: &str, edit: impl FnOnce(&mut Value), at: &str) {
    assert_refused_naming(what, edit, at, "");
}

/// As [`assert_refused`], and the error names `needle`.
fn assert_refused_naming(what: &str, edit: impl FnOnce(&mut Value), at: &str, needle: &str) {
    let mut plan = full_plan();
    edit(&mut plan);
    let errors = plan_errors(&plan);
    assert!(!errors.is_empty(), "{what}: the schema accepted it");
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with(at) && e.contains(needle)),
        "{what}: expected an error at {at} naming {needle:?}, got:\n  {}",
        errors.join("\n  ")
    );
}

#[test]
fn a_plan_with_every_kind_and_optional_field_is_valid() {
    assert_valid_plan(&full_plan());
    // Empty lists are fine, and so is a plan with nothing to do.
    let mut plan = full_plan();
    for k in [
        "operations",
        "blocked",
        "rejected",
        "warnings",
        "write_back",
    ] {
        plan[k] = json!([]);
    }
    assert_valid_plan(&plan);
}

#[test]
fn unknown_operation_kind_is_refused() {
    assert_refused(
        "operation kind rename",
        |p| p["operations"][0]["kind"] = json!("rename"),
        "/operations/0",
    );
    assert_refused(
        "blocked kind rename",
        |p| p["blocked"][0]["operation"]["kind"] = json!("rename"),
        "/blocked/0",
    );
}

#[test]
fn unknown_blocked_reason_is_refused() {
    assert_refused(
        "blocked reason",
        |p| p["blocked"][0]["reason"] = json!("because"),
        "/blocked/0/reason",
    );
    assert_refused(
        "rejected reason",
        |p| p["rejected"][0]["reason"] = json!("because"),
        "/rejected/0/reason",
    );
    assert_refused(
        "remove reason",
        |p| p["operations"][2]["reason"] = json!("because"),
        "/operations/2",
    );
    assert_refused(
        "warning reason",
        |p| p["warnings"][0]["reason"] = json!("because"),
        "/warnings/0/reason",
    );
    assert_refused(
        "warning field",
        |p| p["warnings"][0]["field"] = json!("nickname"),
        "/warnings/0/field",
    );
}

#[test]
fn missing_fingerprint_is_refused() {
    assert_refused_naming(
        "no fingerprint",
        |p| {
            p.as_object_mut().unwrap().remove("fingerprint");
        },
        "/: ",
        "fingerprint",
    );
    assert_refused(
        "fingerprint not sha256",
        |p| p["fingerprint"] = json!("md5:0123"),
        "/fingerprint",
    );
    for k in ["warnings", "write_back"] {
        assert_refused_naming(
            k,
            |p| {
                p.as_object_mut().unwrap().remove(k);
            },
            "/: ",
            k,
        );
    }
}

#[test]
fn malformed_external_id_is_refused() {
    for bad in [
        XID.to_uppercase(),
        format!("{{{XID}}}"),
        XID.replace('-', ""),
        XID[..23].to_string(),
        "x1".to_string(),
    ] {
        assert_refused(
            &format!("operation external_id {bad}"),
            |p| p["operations"][0]["external_id"] = json!(bad),
            "/operations/0/external_id",
        );
        assert_refused(
            &format!("rejected external_id {bad}"),
            |p| p["rejected"][0]["external_id"] = json!(bad),
            "/rejected/0/external_id",
        );
    }
}

#[test]
fn other_shapes_that_are_not_a_plan_are_refused() {
    assert_refused_naming(
        "unknown top-level field",
        |p| p["extra"] = json!(1),
        "/: ",
        "extra",
    );
    assert_refused(
        "unknown operation field",
        |p| p["operations"][2]["changes"] = json!([]),
        "/operations/2",
    );
    assert_refused(
        "blocked kind differs from its operation's",
        |p| p["blocked"][0]["kind"] = json!("update"),
        "/blocked/0",
    );
    assert_refused(
        "stripped inside a blocked operation",
        |p| p["blocked"][0]["operation"]["stripped"] = json!(["site"]),
        "/blocked/0/operation",
    );
    assert_refused(
        "stripped on a remove",
        |p| p["operations"][2]["stripped"] = json!(["site"]),
        "/operations/2",
    );
    assert_refused(
        "unknown field name",
        |p| p["operations"][1]["changes"][0]["field"] = json!("jobTitle"),
        "/operations/1",
    );
    assert_refused(
        "provision without family_name",
        |p| {
            p["operations"][0]["attributes"]
                .as_object_mut()
                .unwrap()
                .remove("family_name");
        },
        "/operations/0",
    );
    assert_refused(
        "write_back new is null",
        |p| p["write_back"][0]["new"] = Value::Null,
        "/write_back/0/new",
    );
    assert_refused(
        "lowercase ODS code",
        |p| p["operations"][0]["ods_code"] = json!("rxa"),
        "/operations/0",
    );
}

/// The schema's code lists and the Rust enums say the same.
#[test]
fn schema_codes_match_the_rust_enums() {
    use tansync::model::{Field, RejectReason};
    use tansync::plan::{BlockReason, MatchKey, OpKind, RemoveReason};

    let defs = &schema()["$defs"];
    let codes = |v: &Value| -> Vec<String> {
        v["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("no enum in {v}"))
            .iter()
            .map(|c| c.as_str().expect("string code").to_string())
            .collect()
    };
    let names = |v: Vec<Value>| -> Vec<String> {
        v.into_iter()
            .map(|c| c.as_str().expect("string").to_string())
            .collect()
    };
    let rust_fields = names(Field::ALL.iter().map(|f| json!(f)).collect());
    assert_eq!(codes(&defs["field"]), rust_fields, "field names");
    let rust_kinds = names(OpKind::ALL.iter().map(|k| json!(k)).collect());
    assert_eq!(codes(&defs["opKind"]), rust_kinds, "operation kinds");

    // Every code the schema allows is one the Rust types read and write back unchanged.
    fn round_trips<T: serde::Serialize + serde::de::DeserializeOwned>(what: &str, code: &str) {
        let v: T = serde_json::from_value(json!(code))
            .unwrap_or_else(|e| panic!("{what} {code:?} is not in the Rust enum: {e}"));
        assert_eq!(json!(v), json!(code), "{what} {code:?}");
    }
    for c in codes(&defs["blockReason"]) {
        round_trips::<BlockReason>("blocked reason", &c);
    }
    for c in codes(&defs["rejected"]["properties"]["reason"]) {
        round_trips::<RejectReason>("rejected reason", &c);
    }
    for c in codes(&defs["warningReason"]) {
        round_trips::<RejectReason>("warning reason", &c);
    }
    for c in codes(&defs["remove"]["properties"]["reason"]) {
        round_trips::<RemoveReason>("remove reason", &c);
    }
    for c in codes(&defs["join"]["properties"]["matched_on"]) {
        round_trips::<MatchKey>("matched_on", &c);
    }
}
