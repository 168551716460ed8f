//! Plan operations → SCIM requests (pure). See `crate::scim` for the field mapping.

use crate::model::{Field, validate};
use crate::plan::{FieldChange, Operation};
use crate::scim::{self, Nhs, PatchOperation, PatchRequest, User};
use serde_json::{Value, json};

/// What to send for one operation.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    Create(Box<User>),
    Patch {
        target_id: crate::ids::TargetId,
        etag: Option<String>,
        patch: PatchRequest,
    },
}

/// The address to ask for (`given.family@nhs.net`, ASCII-folded). The directory allocates
/// the real one and may number it on a clash.
pub fn requested_user_name(given: &str, family: &str, domain: &str) -> String {
    let fold = |s: &str| -> String {
        s.chars()
            .filter_map(|c| {
                let base = fold_char(c);
                base.is_ascii_alphanumeric()
                    .then(|| base.to_ascii_lowercase())
                    .or((base == '-').then_some('-'))
            })
            .collect()
    };
    format!("{}.{}@{domain}", fold(given), fold(family))
}

/// Latin letters with diacritics to their base letter (enough for names in the NHS
/// Directory; anything else is dropped from the requested address only).
fn fold_char(c: char) -> char {
    const MAP: [(&str, char); 12] = [
        ("àáâãäåāăą", 'a'),
        ("çćĉċč", 'c'),
        ("èéêëēĕėęě", 'e'),
        ("ìíîïĩīĭįı", 'i'),
        ("ñńņňŉ", 'n'),
        ("òóôõöøōŏő", 'o'),
        ("ùúûüũūŭůűų", 'u'),
        ("ýÿŷ", 'y'),
        ("ŵ", 'w'),
        ("śŝşš", 's'),
        ("źżž", 'z'),
        ("ďđ", 'd'),
    ];
    let lower: Vec<char> = c.to_lowercase().collect();
    let l = lower.first().copied().unwrap_or(c);
    MAP.iter()
        .find(|(set, _)| set.contains(l))
        .map(|(_, b)| *b)
        .unwrap_or(l)
}

fn nhs_path(attr: &str) -> String {
    format!("{}:{attr}", scim::NHS_SCHEMA)
}

/// One field change as a PATCH operation any conforming server applies the same way.
/// A field in a typed entry (telephone, mobile) is added as a whole entry when it had no
/// value — a `replace` through `phoneNumbers[type eq "work"]` matching nothing is
/// `noTarget` (RFC 7644 §3.5.2.3) — and removed as a whole entry, so no value-less
/// typed entry is left behind.
fn change_op(c: &FieldChange) -> PatchOperation {
    match (User::typed_entry(c.field), &c.old, &c.new) {
        (Some((attr, kind)), None, Some(v)) => PatchOperation {
            op: "add".into(),
            path: Some(attr.into()),
            value: Some(json!([{"type": kind, "value": v}])),
        },
        (Some((attr, kind)), _, None) => PatchOperation {
            op: "remove".into(),
            path: Some(User::entry_path(attr, kind)),
            value: None,
        },
        (_, _, Some(v)) => replace(User::path(c.field), Value::String(v.clone())),
        (None, _, None) => PatchOperation {
            op: "remove".into(),
            path: Some(User::path(c.field)),
            value: None,
        },
    }
}

fn change_ops(changes: &[FieldChange]) -> Vec<PatchOperation> {
    changes
        .iter()
        .filter(|c| c.field.is_synchronised())
        .map(change_op)
        .collect()
}

fn replace(path: String, value: Value) -> PatchOperation {
    PatchOperation {
        op: "replace".into(),
        path: Some(path),
        value: Some(value),
    }
}

/// The core `active` flag, sent alongside every NHS status change: the NHS Directory
/// reads the status first and agrees with it, and a server that knows nothing of the
/// NHS lifecycle still disables a leaver's account (or enables a restored one) by the
/// one flag every SCIM server understands.
fn set_active(active: bool) -> PatchOperation {
    replace("active".into(), json!(active))
}

/// Build the request for an operation. `agent_id` marks the accounts this agent manages.
pub fn build(op: &Operation, agent_id: &str, nhsmail_domain: &str) -> Request {
    match op {
        Operation::Provision {
            external_id,
            ods_code,
            attributes,
            ..
        } => {
            let mut u = User {
                schemas: vec![
                    scim::USER_SCHEMA.into(),
                    scim::ENTERPRISE_SCHEMA.into(),
                    scim::NHS_SCHEMA.into(),
                ],
                external_id: Some(external_id.to_string()),
                user_name: requested_user_name(
                    attributes.get(&Field::GivenName).unwrap_or(""),
                    attributes.get(&Field::FamilyName).unwrap_or(""),
                    nhsmail_domain,
                ),
                active: Some(true),
                nhs: Some(Nhs {
                    ods_code: Some(ods_code.to_string()),
                    managed_by: Some(agent_id.to_string()),
                    // The extension schema marks status required, so a server that
                    // enforces it (any conforming one) refuses a create without it. The
                    // NHS Directory ignores it on create and starts the account pending.
                    status: Some("active".into()),
                    ..Nhs::default()
                }),
                ..User::default()
            };
            for (f, v) in attributes {
                if f.is_synchronised() {
                    u.set_field(f, Some(v.to_string()));
                }
            }
            Request::Create(Box::new(u))
        }
        Operation::Update {
            target_id,
            changes,
            etag,
            ..
        } => Request::Patch {
            target_id: target_id.clone(),
            etag: etag.clone(),
            patch: PatchRequest::new(change_ops(changes)),
        },
        Operation::Remove {
            target_id, etag, ..
        } => Request::Patch {
            target_id: target_id.clone(),
            etag: etag.clone(),
            patch: PatchRequest::new(vec![
                replace(nhs_path("status"), json!("leaver")),
                set_active(false),
            ]),
        },
        Operation::Move {
            target_id,
            ods_code,
            changes,
            etag,
            ..
        } => {
            let mut ops = vec![
                replace(nhs_path("odsCode"), json!(ods_code.as_str())),
                replace(nhs_path("status"), json!("active")),
                set_active(true),
            ];
            ops.extend(change_ops(changes));
            Request::Patch {
                target_id: target_id.clone(),
                etag: etag.clone(),
                patch: PatchRequest::new(ops),
            }
        }
        Operation::Restore {
            target_id,
            changes,
            etag,
            ..
        } => {
            let mut ops = vec![
                replace(nhs_path("status"), json!("active")),
                set_active(true),
            ];
            ops.extend(change_ops(changes));
            Request::Patch {
                target_id: target_id.clone(),
                etag: etag.clone(),
                patch: PatchRequest::new(ops),
            }
        }
        Operation::Join {
            external_id,
            target_id,
            changes,
            etag,
            ..
        } => {
            let mut ops = vec![
                replace("externalId".into(), json!(external_id.as_str())),
                replace(nhs_path("managedBy"), json!(agent_id)),
            ];
            ops.extend(change_ops(changes));
            Request::Patch {
                target_id: target_id.clone(),
                etag: etag.clone(),
                patch: PatchRequest::new(ops),
            }
        }
    }
}

/// Does the account now hold what the operation wanted? Used after an ambiguous failure
/// (the request may have landed) instead of blindly re-sending.
pub fn holds(op: &Operation, u: &User) -> bool {
    let fields = u.fields();
    let nhs = u.nhs.clone().unwrap_or_default();
    let same = |f: Field, want: &Option<String>| {
        let have = fields.get(&f).map(validate::comparable);
        have == want.as_deref().map(validate::comparable)
    };
    let changes_hold = |cs: &[FieldChange]| cs.iter().all(|c| same(c.field, &c.new));
    match op {
        Operation::Provision { external_id, .. } => {
            u.external_id.as_deref() == Some(external_id.as_str())
        }
        Operation::Update { changes, .. } => changes_hold(changes),
        Operation::Remove { .. } => matches!(nhs.status.as_deref(), Some("leaver" | "deleted")),
        Operation::Move {
            ods_code, changes, ..
        } => {
            nhs.ods_code.as_deref() == Some(ods_code.as_str())
                && nhs.status.as_deref() != Some("leaver")
                && changes_hold(changes)
        }
        Operation::Restore { changes, .. } => {
            nhs.status.as_deref() != Some("leaver") && changes_hold(changes)
        }
        Operation::Join {
            external_id,
            changes,
            ..
        } => u.external_id.as_deref() == Some(external_id.as_str()) && changes_hold(changes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ExternalId, OdsCode, RuleId, TargetId};

    #[test]
    fn provision_and_move_requests() {
        assert_eq!(
            requested_user_name("Siân", "O'Brien-Ngũgĩ", "nhs.net"),
            "sian.obrien-ngugi@nhs.net"
        );
        let op = Operation::Provision {
            external_id: ExternalId::parse("x1").unwrap(),
            ods_code: OdsCode::parse("RXA").unwrap(),
            rule: RuleId::parse("r").unwrap(),
            attributes: [
                (Field::GivenName, "Zoë".to_string()),
                (Field::FamilyName, "Brontë".to_string()),
                (Field::Department, "Cardiology".to_string()),
            ]
            .into(),
        };
        let Request::Create(u) = build(&op, "agent-1", "nhs.net") else {
            panic!("create")
        };
        assert_eq!(u.user_name, "zoe.bronte@nhs.net");
        assert_eq!(
            u.nhs.as_ref().unwrap().managed_by.as_deref(),
            Some("agent-1")
        );
        assert_eq!(&u.fields()[&Field::GivenName], "Zoë");
        // Status goes on the create too: the extension schema marks it required.
        let v = serde_json::to_value(&u).unwrap();
        assert_eq!(v[scim::NHS_SCHEMA]["status"], "active");
        assert_eq!(v["active"], true);
        assert!(holds(&op, &u));
        let mv = Operation::Move {
            external_id: ExternalId::parse("x1").unwrap(),
            target_id: TargetId::parse("t1").unwrap(),
            from_ods_code: OdsCode::parse("RXA").unwrap(),
            ods_code: OdsCode::parse("RXB").unwrap(),
            changes: vec![FieldChange {
                field: Field::JobTitle,
                old: Some("a".into()),
                new: None,
            }],
            etag: Some("W/\"3\"".into()),
        };
        let Request::Patch { patch, etag, .. } = build(&mv, "agent-1", "nhs.net") else {
            panic!("patch")
        };
        assert_eq!(etag.as_deref(), Some("W/\"3\""));
        let v = serde_json::to_value(&patch).unwrap();
        assert_eq!(
            v["Operations"][0]["path"],
            format!("{}:odsCode", scim::NHS_SCHEMA)
        );
        assert_eq!(v["Operations"][2]["path"], "active");
        assert_eq!(v["Operations"][2]["value"], true);
        assert_eq!(v["Operations"][3]["op"], "remove");
        assert_eq!(v["Operations"][3]["path"], "title");
    }

    fn patch_json(op: &Operation) -> Value {
        let Request::Patch { patch, .. } = build(op, "agent-1", "nhs.net") else {
            panic!("patch")
        };
        serde_json::to_value(&patch).unwrap()["Operations"].clone()
    }

    fn update(changes: Vec<FieldChange>) -> Operation {
        Operation::Update {
            external_id: ExternalId::parse("x1").unwrap(),
            target_id: TargetId::parse("t1").unwrap(),
            ods_code: OdsCode::parse("RXA").unwrap(),
            changes,
            etag: None,
        }
    }

    fn change(field: Field, old: Option<&str>, new: Option<&str>) -> FieldChange {
        FieldChange {
            field,
            old: old.map(String::from),
            new: new.map(String::from),
        }
    }

    #[test]
    fn typed_entries_are_added_replaced_and_removed_whole() {
        let ops = patch_json(&update(vec![
            change(Field::Telephone, None, Some("+441134960101")),
            change(Field::Mobile, Some("+447123456001"), Some("+447123456002")),
            change(Field::Telephone, Some("+441134960101"), None),
            change(Field::JobTitle, Some("Nurse"), Some("Senior Nurse")),
            change(Field::Department, Some("Maternity"), None),
        ]));
        let want = json!([
            // No entry of the type yet: a filtered replace would be noTarget.
            {"op": "add", "path": "phoneNumbers",
             "value": [{"type": "work", "value": "+441134960101"}]},
            {"op": "replace", "path": "phoneNumbers[type eq \"mobile\"].value",
             "value": "+447123456002"},
            // The whole entry, not just its value.
            {"op": "remove", "path": "phoneNumbers[type eq \"work\"]"},
            {"op": "replace", "path": "title", "value": "Senior Nurse"},
            {"op": "remove", "path": format!("{}:department", scim::ENTERPRISE_SCHEMA)},
        ]);
        assert_eq!(ops, want);
    }

    #[test]
    fn status_changes_carry_the_core_active_flag() {
        let remove = Operation::Remove {
            external_id: ExternalId::parse("x1").unwrap(),
            target_id: TargetId::parse("t1").unwrap(),
            ods_code: OdsCode::parse("RXA").unwrap(),
            reason: crate::plan::RemoveReason::Disabled,
            etag: None,
        };
        let ops = patch_json(&remove);
        assert_eq!(ops[0]["path"], nhs_path("status"));
        assert_eq!(ops[0]["value"], "leaver");
        assert_eq!(
            ops[1],
            json!({"op": "replace", "path": "active", "value": false})
        );
        let restore = Operation::Restore {
            external_id: ExternalId::parse("x1").unwrap(),
            target_id: TargetId::parse("t1").unwrap(),
            ods_code: OdsCode::parse("RXA").unwrap(),
            changes: vec![],
            etag: None,
        };
        let ops = patch_json(&restore);
        assert_eq!(
            ops[1],
            json!({"op": "replace", "path": "active", "value": true})
        );
    }
}
