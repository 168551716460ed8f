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
    let r = route(&ops, &[], 2, 3);
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
    let r0 = route(&ops, &[], 10, 3);
    let b = batch(
        &[
            (&r0.export[0], row_state::REPORTED),
            (&r0.export[1], row_state::UNSETTLED),
            (&r0.export[2], row_state::FAILED),
        ],
        0,
    );
    let r = route(&ops, &b.rows, 10, 3);
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
fn a_create_the_journal_knows_happened_is_never_exported_again() {
    // The report read does not show a and b (stale, or filtered to some organisations):
    // their creates were confirmed or differ, so a second create would be a second
    // mailbox. c's create failed and d's was released by the operator: exported.
    let ops = vec![
        planned(provision("a", "Jo")),
        planned(provision("b", "Al")),
        planned(provision("c", "Cy")),
        planned(provision("d", "Di")),
    ];
    let r0 = route(&ops, &[], 10, 3);
    let b = batch(
        &[
            (&r0.export[0], row_state::CONFIRMED),
            (&r0.export[1], row_state::DIFFERS),
            (&r0.export[2], row_state::FAILED),
            (&r0.export[3], row_state::RELEASED),
        ],
        0,
    );
    let r = route(&ops, &b.rows, 10, 3);
    let exported: Vec<&str> = r
        .export
        .iter()
        .map(|e| e.row.external_id.as_str())
        .collect();
    assert_eq!(exported, ["c", "d"]);
    assert_eq!(r.withheld.len(), 2);
    assert!(
        r.withheld[0].why.contains("stale or partial"),
        "{}",
        r.withheld[0].why
    );
    assert!(
        r.withheld[0].why.contains("portal release a"),
        "{}",
        r.withheld[0].why
    );
    // An update for a confirmed person is still exported (it makes no second mailbox).
    let upd = vec![planned(update(
        "a",
        vec![change(Field::JobTitle, Some("Nurse"))],
    ))];
    assert_eq!(route(&upd, &b.rows, 10, 3).export.len(), 1);
}

#[test]
fn a_row_the_portal_refused_again_and_again_goes_to_the_worklist() {
    let ops = vec![planned(provision("a", "Jo"))];
    let r0 = route(&ops, &[], 10, 3);
    let refused = |id: i64| {
        let mut b = batch(&[(&r0.export[0], row_state::FAILED)], 0);
        b.id = id;
        b.rows[0].batch = id;
        b.rows[0].detail = Some(format!("{RESULTS_SAID}Failed: mailbox exists"));
        b.rows.remove(0)
    };
    let twice = vec![refused(1), refused(2)];
    assert_eq!(route(&ops, &twice, 10, 3).export.len(), 1, "not yet");
    let thrice = vec![refused(1), refused(2), refused(3)];
    let r = route(&ops, &thrice, 10, 3);
    assert!(r.export.is_empty());
    assert_eq!(r.work.len(), 1);
    assert!(
        r.work[0].detail.contains("refused this provision 3 times"),
        "{}",
        r.work[0].detail
    );
    assert!(
        r.work[0].detail.contains("Failed: mailbox exists"),
        "{}",
        r.work[0].detail
    );
}

#[test]
fn a_results_file_settles_its_own_batch_only() {
    let r = route(
        &[planned(provision("a", "Jo")), planned(provision("b", "Al"))],
        &[],
        10,
        3,
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

    // Two batches with the same rows: only the one named, else refused.
    let mut older = batches[0].clone();
    older.id = 3;
    older.settled_at = Some("then".into());
    let mut newer = batches[0].clone();
    newer.id = 8;
    let both = vec![newer, older];
    let e = results_batch(&both, &lines, None).unwrap_err();
    assert!(e.to_string().contains("--batch"), "{e}");
    assert_eq!(results_batch(&both, &lines, Some(3)).unwrap().id, 3);
    assert!(matches!(
        results_batch(&both, &lines, Some(5)),
        Err(ResultsMismatch::NotThatBatch { named: 5, .. })
    ));
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
        &[],
        10,
        3,
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
    // Older than the batch file, or with the content of the report it was planned from
    // (whatever its time: a copy or a `touch` changes that): no evidence, and says why.
    let early = settle_from_report(&b, report("sha256:new", 99), &idx);
    assert!(early.settled.is_empty());
    assert!(
        early.note.as_deref().unwrap().contains("saved before"),
        "{early:?}"
    );
    let same = settle_from_report(&b, report("sha256:planned-from", 500), &idx);
    assert!(same.settled.is_empty());
    assert!(
        same.note.as_deref().unwrap().contains("same content"),
        "{same:?}"
    );
    // As new as the batch file (the file system's clock is coarse) counts.
    assert!(
        !settle_from_report(&b, report("sha256:new", 100), &idx)
            .settled
            .is_empty()
    );
    let s = settle_from_report(&b, report("sha256:new", 101), &idx).settled;
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

    // A report that shows none of the batch's new mailboxes: not uploaded yet, so no
    // create is marked failed (the one a results file reported is still contradicted).
    let none = settle_from_report(&b, report("sha256:new", 101), &BTreeMap::new());
    let got: Vec<(u32, &str)> = none.settled.iter().map(|s| (s.line, s.state)).collect();
    assert_eq!(got, [(4, row_state::UNSETTLED)]);
    assert!(
        none.note.as_deref().unwrap().contains("not uploaded yet"),
        "{none:?}"
    );
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
