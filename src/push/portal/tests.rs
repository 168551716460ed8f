use super::*;
use crate::ids::{OdsCode, RuleId, TargetId};
use crate::plan::{FieldChange, MatchKey};
use crate::state::portal::Row;

fn x(s: &str) -> ExternalId {
    ExternalId::parse(s).unwrap()
}
fn ods(s: &str) -> OdsCode {
    OdsCode::parse(s).unwrap()
}
fn tid(s: &str) -> TargetId {
    serde_json::from_value(serde_json::json!(s)).unwrap()
}
fn planned(op: Operation) -> PlannedOp {
    PlannedOp {
        op,
        stripped: vec![],
    }
}
fn provision(id: &str, given: &str) -> Operation {
    Operation::Provision {
        external_id: x(id),
        ods_code: ods("RXA"),
        rule: RuleId::parse("staff").unwrap(),
        attributes: [
            (Field::GivenName, given.to_string()),
            (Field::FamilyName, "Bloggs".to_string()),
        ]
        .into(),
    }
}
fn change(field: Field, new: Option<&str>) -> FieldChange {
    FieldChange {
        field,
        old: Some("old".into()),
        new: new.map(String::from),
    }
}
fn update(id: &str, changes: Vec<FieldChange>) -> Operation {
    Operation::Update {
        external_id: x(id),
        target_id: tid(&format!("{id}@nhs.net")),
        ods_code: ods("RXA"),
        changes,
        etag: None,
    }
}
fn account(id: &str, ods_code: &str, given: &str, status: Status) -> Account {
    Account {
        target_id: tid(&format!("{id}@nhs.net")),
        external_id: Some(x(id)),
        ods_code: ods(ods_code),
        status,
        managed_by: Some("agent".into()),
        email: Some(format!("{id}@nhs.net")),
        leaver_since: None,
        attributes: [
            (Field::GivenName, given.to_string()),
            (Field::FamilyName, "Bloggs".to_string()),
        ]
        .into(),
        etag: None,
    }
}
fn batch(rows: &[(&Export, &str)], exported_ns: i64) -> Batch {
    Batch {
        id: 7,
        run: 1,
        file: "batch-0007.csv".into(),
        sha256: String::new(),
        fingerprint: String::new(),
        exported_at: String::new(),
        exported_ns,
        report_sha: "sha256:planned-from".into(),
        report_ns: exported_ns - 10,
        settled_at: None,
        rows: rows
            .iter()
            .enumerate()
            .map(|(i, (e, state))| Row {
                batch: 7,
                line: u32::try_from(i + 1).unwrap(),
                kind: e.row.kind.clone(),
                external_id: e.row.external_id.clone(),
                ods_code: e.row.ods_code.clone(),
                target_id: e.row.target_id.clone(),
                expected: e.row.expected.clone(),
                state: state.to_string(),
                detail: None,
            })
            .collect(),
    }
}

#[test]
fn creates_and_updates_are_exported_up_to_the_batch_size_and_the_rest_is_worklist() {
    let ops = vec![
        planned(provision("a", "Jo")),
        planned(update("b", vec![change(Field::JobTitle, Some("Nurse"))])),
        planned(update("c", vec![change(Field::Mobile, None)])),
        planned(Operation::Remove {
            external_id: x("d"),
            target_id: tid("d@nhs.net"),
            ods_code: ods("RXA"),
            reason: RemoveReason::Disabled,
            etag: None,
        }),
        planned(Operation::Move {
            external_id: x("e"),
            target_id: tid("e@nhs.net"),
            from_ods_code: ods("RXA"),
            ods_code: ods("RYY"),
            changes: vec![],
            etag: None,
        }),
        planned(Operation::Join {
            external_id: x("f"),
            target_id: tid("f@nhs.net"),
            ods_code: ods("RXA"),
            matched_on: MatchKey::EmployeeId,
            changes: vec![],
            etag: None,
        }),
        planned(provision("g", "Al")),
    ];
    let r = route(&ops, &BTreeMap::new(), 2);
    let exported: Vec<&str> = r
        .export
        .iter()
        .map(|e| e.row.external_id.as_str())
        .collect();
    assert_eq!(exported, ["a", "b"]);
    assert_eq!(r.later, 1, "g waits for the next batch");
    assert_eq!(r.export[0].address, None);
    assert_eq!(r.export[1].address.as_deref(), Some("b@nhs.net"));
    assert_eq!(
        r.export[1].values,
        [(Field::JobTitle, "Nurse".to_string())].into()
    );
    let work: Vec<(&str, &str)> = r
        .work
        .iter()
        .map(|w| (w.op.kind().name(), w.op.external_id().as_str()))
        .collect();
    assert_eq!(
        work,
        [
            ("update", "c"),
            ("remove", "d"),
            ("move", "e"),
            ("join", "f")
        ]
    );
    assert!(
        r.work[0].detail.contains("cannot clear"),
        "{}",
        r.work[0].detail
    );
    assert!(
        r.work[2].detail.contains("RXA to RYY"),
        "{}",
        r.work[2].detail
    );
}

#[test]
fn a_row_awaiting_confirmation_or_unsettled_is_withheld_a_failed_one_is_not() {
    let ops = vec![
        planned(provision("a", "Jo")),
        planned(provision("b", "Al")),
        planned(provision("c", "Cy")),
    ];
    let r0 = route(&ops, &BTreeMap::new(), 10);
    let b = batch(
        &[
            (&r0.export[0], row_state::REPORTED),
            (&r0.export[1], row_state::UNSETTLED),
            (&r0.export[2], row_state::FAILED),
        ],
        0,
    );
    let latest: BTreeMap<String, Row> = b
        .rows
        .iter()
        .map(|r| (r.external_id.clone(), r.clone()))
        .collect();
    let r = route(&ops, &latest, 10);
    let exported: Vec<&str> = r
        .export
        .iter()
        .map(|e| e.row.external_id.as_str())
        .collect();
    assert_eq!(exported, ["c"]);
    let held: Vec<(&str, &str)> = r
        .withheld
        .iter()
        .map(|w| (w.op.external_id().as_str(), w.state.as_str()))
        .collect();
    assert_eq!(held, [("a", "reported"), ("b", "unsettled")]);
}

#[test]
fn a_results_file_settles_its_own_batch_only() {
    let r = route(
        &[planned(provision("a", "Jo")), planned(provision("b", "Al"))],
        &BTreeMap::new(),
        10,
    );
    let b = batch(
        &[
            (&r.export[0], row_state::EXPORTED),
            (&r.export[1], row_state::EXPORTED),
        ],
        0,
    );
    let lines = vec![
        ResultLine {
            line: 2,
            local_id: x("a"),
            outcome: Ok(()),
        },
        ResultLine {
            line: 3,
            local_id: x("b"),
            outcome: Err("Failed: surname too long".into()),
        },
    ];
    let batches = vec![b];
    let found = results_batch(&batches, &lines, None).unwrap();
    let s = settle_from_results(found, &lines);
    assert_eq!(s.len(), 2);
    assert_eq!((s[0].line, s[0].state), (1, row_state::REPORTED));
    assert_eq!((s[1].line, s[1].state), (2, row_state::FAILED));
    assert!(s[1].detail.as_deref().unwrap().contains("surname too long"));

    let other = vec![ResultLine {
        line: 2,
        local_id: x("zz"),
        outcome: Ok(()),
    }];
    let e = results_batch(&batches, &other, None).unwrap_err();
    assert!(e.to_string().contains("line 2: Local ID zz"), "{e}");
    let reordered = vec![lines[1].clone(), lines[0].clone()];
    assert!(results_batch(&batches, &reordered, None).is_err());
    assert_eq!(
        results_batch(&batches, &[], None),
        Err(ResultsMismatch::Empty)
    );

    // Two batches with the same rows: the one in flight, the one named, or refused.
    let mut older = batches[0].clone();
    older.id = 3;
    older.settled_at = Some("then".into());
    let mut newer = batches[0].clone();
    newer.id = 8;
    let both = vec![newer.clone(), older.clone()];
    assert_eq!(results_batch(&both, &lines, None).unwrap().id, 8);
    assert_eq!(results_batch(&both, &lines, Some(3)).unwrap().id, 3);
    assert!(matches!(
        results_batch(&both, &lines, Some(5)),
        Err(ResultsMismatch::NotThatBatch { named: 5, .. })
    ));
    newer.settled_at = Some("now".into());
    let settled = vec![newer, older];
    let e = results_batch(&settled, &lines, None).unwrap_err();
    assert!(e.to_string().contains("--batch"), "{e}");
}

#[test]
fn a_later_report_confirms_fails_or_leaves_unsettled_and_an_earlier_one_says_nothing() {
    let r = route(
        &[
            planned(provision("a", "Jo")),
            planned(provision("b", "Al")),
            planned(provision("c", "Cy")),
            planned(provision("d", "Di")),
        ],
        &BTreeMap::new(),
        10,
    );
    let b = batch(
        &[
            (&r.export[0], row_state::EXPORTED),
            (&r.export[1], row_state::EXPORTED),
            (&r.export[2], row_state::EXPORTED),
            (&r.export[3], row_state::REPORTED),
        ],
        100,
    );
    let accounts = [
        account("a", "RXA", "Jo", Status::Active),
        account("b", "RXA", "Albert", Status::Active),
    ];
    let idx = by_local_id(&accounts);
    let report = |sha256, modified_ns| ReportId {
        sha256,
        modified_ns,
        name: "report.csv",
    };
    // Older than the batch file, or the very report it was planned from: no evidence.
    assert!(settle_from_report(&b, report("sha256:new", 99), &idx).is_empty());
    assert!(settle_from_report(&b, report("sha256:planned-from", 90), &idx).is_empty());
    // As new as the batch file (the file system's clock is coarse) counts.
    assert!(!settle_from_report(&b, report("sha256:new", 100), &idx).is_empty());
    let s = settle_from_report(&b, report("sha256:new", 101), &idx);
    let got: Vec<(u32, &str)> = s.iter().map(|s| (s.line, s.state)).collect();
    assert_eq!(
        got,
        [
            (1, row_state::CONFIRMED),
            (2, row_state::DIFFERS),
            (3, row_state::FAILED),
            (4, row_state::UNSETTLED)
        ]
    );
    assert!(s[1].detail.as_deref().unwrap().contains("given_name"));
    assert!(s[2].detail.as_deref().unwrap().contains("not created"));
}

#[test]
fn worklist_tasks_are_done_when_the_report_shows_them() {
    let task = |kind: &str, expected: Expected| Task {
        id: 1,
        run: 1,
        fingerprint: String::new(),
        kind: kind.into(),
        external_id: "a".into(),
        ods_code: "RYY".into(),
        target_id: "A@nhs.net".into(),
        expected,
        detail: String::new(),
        state: "open".into(),
        listed_at: String::new(),
        settled_at: None,
    };
    let moved = [("ods_code".to_string(), Some(digest("RYY")))].into();
    let live = account("a", "RXA", "Jo", Status::Active);
    let gone = account("a", "RYY", "Jo", Status::Leaver);
    fn idx(a: &Account) -> BTreeMap<String, &Account> {
        [("a@nhs.net".to_string(), a)].into_iter().collect()
    }
    assert!(!task_done(&task("move", moved), &idx(&live)));
    let moved = [("ods_code".to_string(), Some(digest("RYY")))].into();
    assert!(task_done(&task("move", moved), &idx(&gone)));
    assert!(!task_done(&task("remove", Expected::new()), &idx(&live)));
    assert!(task_done(&task("remove", Expected::new()), &idx(&gone)));
    assert!(task_done(
        &task("remove", Expected::new()),
        &BTreeMap::new()
    ));
}
