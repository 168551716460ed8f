//! The plan JSON Schema (`docs/tansync.plan.schema.json`), compiled once per test binary.

use serde_json::Value;
use std::sync::OnceLock;

/// The schema file, parsed.
pub fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("docs")
            .join("tansync.plan.schema.json");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
    })
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        jsonschema::draft202012::new(schema())
            .unwrap_or_else(|e| panic!("docs/tansync.plan.schema.json is not a valid schema: {e}"))
    })
}

/// Every way `v` breaks the schema, one line each (`instance path: message`); empty
/// when it is a valid `tansync.plan/v1` plan.
pub fn plan_errors(v: &Value) -> Vec<String> {
    validator()
        .iter_errors(v)
        .map(|e| {
            let at = e.instance_path().to_string();
            let at = if at.is_empty() { "/".to_string() } else { at };
            format!("{at}: {e}")
        })
        .collect()
}

/// Panic, listing the validation errors, unless `v` is a valid `tansync.plan/v1` plan.
pub fn assert_valid_plan(v: &Value) {
    let errors = plan_errors(v);
    assert!(
        errors.is_empty(),
        "the plan does not match docs/tansync.plan.schema.json ({} error(s)):\n  {}",
        errors.len(),
        errors.join("\n  ")
    );
}
