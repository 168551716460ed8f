//! What the renderers write, byte for byte: values from AD and the directory arrive
//! escaped, codes in the contract's spelling.

use super::*;
use crate::engine::apply::{Quarantined, WriteBackItem, WriteBackReport};
use crate::engine::check::Finding;
use crate::ids::ExternalId;
use crate::plan::{OpKind, WriteBack};
use crate::push::{OpReport, PushReport};

/// Every hostile thing a value can carry: an ANSI colour, a carriage return, a bell, a
/// right-to-left override, NEL (C1) and a line break.
const EVIL: &str = "x\u{1b}[31m\r\u{7}\u{202e}\u{85}\ny";

/// The text written, checked to hold nothing unsafe but the renderer's own newlines.
fn clean(bytes: &[u8]) -> String {
    let s = String::from_utf8(bytes.to_vec()).expect("UTF-8");
    for c in s.chars() {
        assert!(
            c == '\n' || !nhs_model::escape::is_unsafe(c),
            "raw {c:?} in {s:?}"
        );
    }
    assert!(!s.contains("x\u{1b}") && !s.contains("\ny"), "{s:?}");
    s
}

#[test]
fn the_apply_report_escapes_what_the_directory_and_ad_sent() {
    let xid = ExternalId::parse("af40ac76-1201-4205-83fb-a1707109e8b4").unwrap();
    let report = ApplyReport {
        run: 7,
        fingerprint: "sha256:00".into(),
        audit_head: crate::engine::audit::AuditHead {
            seq: 3,
            hash: "ab".repeat(32),
        },
        status: RunStatus::Partial,
        reconciled: 0,
        mass_held: 0,
        mass_approved: false,
        quarantined: vec![Quarantined {
            external_id: EVIL.into(),
            failures: 3,
            last_error: format!("HTTP 409: {EVIL}"),
        }],
        push: PushReport {
            items: vec![OpReport {
                kind: OpKind::Provision,
                external_id: xid.to_string(),
                ods_code: "RXA".into(),
                outcome: Outcome::Failed {
                    error: format!("HTTP 400: invalid value {EVIL}"),
                },
            }],
            stopped: Some(format!("stopping: {EVIL}")),
            interrupted: false,
            rate_limit_wait: std::time::Duration::ZERO,
        },
        write_back: Some(WriteBackReport {
            attribute: "mail".into(),
            items: vec![
                WriteBackItem {
                    write: WriteBack {
                        external_id: xid.clone(),
                        dn: format!("CN={EVIL},DC=x"),
                        attribute: "mail".into(),
                        old: Some(EVIL.into()),
                        new: format!("{EVIL}@nhs.net"),
                    },
                    planned: true,
                    result: Some(Ok(())),
                },
                WriteBackItem {
                    write: WriteBack {
                        external_id: xid,
                        dn: "CN=b,DC=x".into(),
                        attribute: "mail".into(),
                        old: None,
                        new: "b@nhs.net".into(),
                    },
                    planned: false,
                    result: Some(Err(format!("LDAP: {EVIL}"))),
                },
            ],
        }),
    };
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = apply(&report, &mut out, &mut err).unwrap();
    assert_eq!(code, 1);
    let out = clean(&out);
    let err = clean(&err);
    assert!(
        out.contains(r"HTTP 400: invalid value x\u{1b}[31m\r\u{7}\u{202e}\u{85}\ny"),
        "{out}"
    );
    assert!(out.contains(r"CN=x\u{1b}[31m"), "{out}");
    assert!(out.contains(r"LDAP: x\u{1b}"), "{out}");
    assert!(err.contains(r"HTTP 409: x\u{1b}"), "{err}");
    let head = format!("audit: head 3:{}", "ab".repeat(32));
    assert!(out.contains(&head), "{out}");
}

#[test]
fn check_findings_and_the_journal_are_escaped() {
    let r = CheckReport {
        findings: vec![
            Finding {
                mark: Mark::Ok,
                label: "target".into(),
                text: EVIL.into(),
            },
            Finding {
                mark: Mark::Problem,
                label: String::new(),
                text: format!("the directory refuses RXA's accounts: {EVIL}"),
            },
            Finding {
                mark: Mark::Detail,
                label: String::new(),
                text: EVIL.into(),
            },
        ],
    };
    let mut out = Vec::new();
    assert_eq!(check(&r, &mut out).unwrap(), 1);
    let out = clean(&out);
    assert!(out.contains(r"accounts: x\u{1b}[31m\r"), "{out}");

    let ops = [JournalEntry {
        kind: "update".into(),
        external_id: EVIL.into(),
        ods_code: "RXA".into(),
        target_id: Some(EVIL.into()),
        state: "failed".into(),
        attempts: 2,
        error: Some(format!("HTTP 400: {EVIL}")),
        updated_at: "2026-11-22T10:00:00Z".into(),
    }];
    let mut out = Vec::new();
    journal(1, &ops, false, &mut out).unwrap();
    let out = clean(&out);
    assert!(out.contains(r"HTTP 400: x\u{1b}[31m"), "{out}");
}

#[test]
fn audit_verify_exits_1_naming_the_record_and_escapes_what_the_database_holds() {
    use crate::engine::audit::{AuditBreak, AuditHead, AuditVerification};
    let head = AuditHead {
        seq: 4,
        hash: format!("ab{EVIL}"),
    };
    let intact = AuditVerification {
        records: 4,
        run_heads: 2,
        head: head.clone(),
        broken: None,
    };
    let mut out = Vec::new();
    assert_eq!(audit_verify(&intact, false, &mut out).unwrap(), 0);
    let text = clean(&out);
    assert!(
        text.starts_with("audit trail intact: 4 record(s) checked, 2 run head(s); head 4:ab"),
        "{text}"
    );
    let broken = AuditVerification {
        broken: Some(AuditBreak {
            seq: 5,
            problem: format!("its previous hash {EVIL} is not record 4's hash (edited)"),
        }),
        ..intact
    };
    let mut out = Vec::new();
    assert_eq!(audit_verify(&broken, false, &mut out).unwrap(), 1);
    let text = clean(&out);
    assert!(
        text.starts_with("audit trail broken at record 5: its previous hash x"),
        "{text}"
    );
    let mut out = Vec::new();
    assert_eq!(audit_verify(&broken, true, &mut out).unwrap(), 1);
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["broken"]["seq"], 5);
    assert_eq!(v["head"]["seq"], 4);
}
