//! Values left to fill in. The packaged `/etc/tansync/tansync.toml` holds values such as
//! `url = "FILL-IN: the domain controller's ldaps:// URL"`: until each is replaced,
//! every command refuses the file, naming each key still holding one and what belongs
//! there, so a configuration never works by accident with an example's values.

use super::ConfigError;

/// What a value still to be filled in starts with; the rest says what to put there.
pub const PLACEHOLDER: &str = "FILL-IN";

/// Refuse a configuration while any value (at any depth, arrays included) starts with
/// [`PLACEHOLDER`], naming every such key (sorted, so the message is stable).
pub(super) fn refuse(table: &toml::Table, file: &str) -> Result<(), ConfigError> {
    let mut found = Vec::new();
    walk(table, "", &mut found);
    if found.is_empty() {
        return Ok(());
    }
    let list: Vec<String> = found
        .iter()
        .map(|(key, hint)| format!("{key}: {hint}"))
        .collect();
    Err(ConfigError {
        file: file.to_string(),
        key: String::new(),
        problem: format!(
            // One line: error chains are escaped whole for the terminal, a line feed
            // included.
            "this configuration is not filled in yet; replace each {PLACEHOLDER} value \
             ({} left): {}",
            found.len(),
            list.join("; ")
        ),
    })
}

fn walk(table: &toml::Table, prefix: &str, found: &mut Vec<(String, String)>) {
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        value(v, &key, found);
    }
}

fn value(v: &toml::Value, key: &str, found: &mut Vec<(String, String)>) {
    match v {
        toml::Value::String(s) => {
            if let Some(rest) = s.trim_start().strip_prefix(PLACEHOLDER) {
                let hint = rest.trim_start_matches([':', ' ', '-']).trim();
                let hint = if hint.is_empty() {
                    "a value (see the comment above it)"
                } else {
                    hint
                };
                found.push((key.to_string(), hint.to_string()));
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                value(item, key, found);
            }
        }
        toml::Value::Table(t) => walk(t, key, found),
        _ => {}
    }
}
