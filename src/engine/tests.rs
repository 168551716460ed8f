//! Whole applies over in-memory fakes ([`crate::testing`]): quarantine across runs, and
//! the reconciliation of what an interrupted run left in flight.

use super::Silent;
use super::apply::{ApplyReport, ApplyRequest, Quarantined, RunStatus, apply_with, reconcile};
use crate::config::Config;
use crate::engine::EngineError;
use crate::push::Outcome;
use crate::scim::User;
use crate::source::SourceEntry;
use crate::state::{History, StateStore, op_state};
use crate::testing::{
    FakeSource, FakeTarget, FakeWriter, Method, Reply, anchor, organisation, person,
};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

/// A configuration in a temporary directory (see [`crate::testing::config`]): fast
/// pacing, two tries per operation and quarantine after two failed runs.
fn config(dir: &tempfile::TempDir) -> Config {
    crate::testing::config(
        dir,
        "[state]\ndir = \"state\"\n\n[push]\nrate_per_second = 1000\nbackoff_base_ms = 1\nbackoff_max_secs = 1\nmax_attempts = 2\nquarantine_after = 2\n",
    )
}

/// The directory as the writer now holds it.
fn target(w: &FakeWriter) -> FakeTarget {
    FakeTarget::new([organisation("RXA")], w.accounts())
}

/// `sync` (plan and apply in one) of `people` against what the writer holds.
async fn sync(cfg: &Config, people: &[SourceEntry], w: &FakeWriter) -> ApplyReport {
    let source = FakeSource::new(people.to_vec());
    apply_with(
        cfg,
        &source,
        &target(w),
        w.clone(),
        None,
        ApplyRequest {
            plan_file: None,
            approve_removals: None,
            now: datetime!(2026-06-01 09:00 UTC),
        },
        &Silent,
        &CancellationToken::new(),
    )
    .await
    .unwrap()
}

/// The external ids the push reported on, in plan order.
fn pushed(r: &ApplyReport) -> Vec<String> {
    r.push.items.iter().map(|i| i.external_id.clone()).collect()
}

fn ids(ns: &[u8]) -> Vec<String> {
    ns.iter().map(|n| anchor(*n).to_string()).collect()
}

#[tokio::test(start_paused = true)]
async fn an_object_failing_run_after_run_is_quarantined_and_the_rest_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let (a, b, c) = (
        person(1, "Alice", "Able"),
        person(2, "Bob", "Baker"),
        person(3, "Cara", "Cole"),
    );
    let alice = anchor(1);
    let w = FakeWriter::new();
    w.always_fail(&alice, Reply::Status(400, None));

    // Run 1: Alice fails, Bob is provisioned.
    let r1 = sync(&cfg, &[a.clone(), b.clone()], &w).await;
    assert_eq!(pushed(&r1), ids(&[1, 2]));
    assert_eq!((r1.push.applied(), r1.push.failed()), (1, 1));
    assert_eq!(r1.status, RunStatus::Partial);
    assert!(r1.quarantined.is_empty());

    // Run 2: Alice fails again; Bob is in the directory and unchanged.
    let r2 = sync(&cfg, &[a.clone(), b.clone()], &w).await;
    assert_eq!(pushed(&r2), ids(&[1]));
    assert_eq!(r2.push.failed(), 1);
    assert!(
        r2.quarantined.is_empty(),
        "not yet: two failed runs is the limit"
    );
    assert_eq!(w.count_for(Method::Create, alice.as_str()), 2);

    // Run 3: Alice is quarantined (reported, not sent); Cara, new, goes on.
    let before = w.calls().len();
    let r3 = sync(&cfg, &[a.clone(), b.clone(), c.clone()], &w).await;
    let [
        Quarantined {
            external_id,
            failures,
            last_error,
        },
    ] = &r3.quarantined[..]
    else {
        panic!("one quarantined: {:?}", r3.quarantined)
    };
    assert_eq!((external_id.as_str(), *failures), (alice.as_str(), 2));
    assert!(last_error.contains("HTTP 400"), "{last_error}");
    assert_eq!(pushed(&r3), ids(&[3]));
    assert_eq!(r3.push.items[0].outcome, applied_as(&w, 3));
    assert!(
        w.calls()[before..].iter().all(|c| c.key != alice.as_str()),
        "no call for a quarantined object reaches the directory"
    );
    assert_eq!(r3.status, RunStatus::Ok);
    let h = History::open(&cfg.state_dir).unwrap();
    assert!(
        h.journal(r3.run)
            .unwrap()
            .iter()
            .all(|j| j.external_id != alice.as_str())
    );

    // Lifting the quarantine: Alice is tried again (and, healed, provisioned).
    {
        let store = StateStore::open(&cfg.state_dir).unwrap();
        assert!(store.clear_failures(alice.as_str()).unwrap());
        assert!(store.quarantined(1).unwrap().is_empty());
    }
    w.heal(&alice);
    let r4 = sync(&cfg, &[a, b, c], &w).await;
    assert!(r4.quarantined.is_empty());
    assert_eq!(pushed(&r4), ids(&[1]));
    assert_eq!(r4.push.applied(), 1);
    assert_eq!(r4.status, RunStatus::Ok);
    assert_eq!(w.count_for(Method::Create, alice.as_str()), 3);
    assert_eq!(w.users().len(), 3);
}

/// `Applied` with the id the writer gave the account of person `n`.
fn applied_as(w: &FakeWriter, n: u8) -> Outcome {
    let id = w
        .users()
        .into_iter()
        .find(|u| u.external_id.as_deref() == Some(anchor(n).as_str()))
        .and_then(|u| u.id);
    Outcome::Applied { target_id: id }
}

/// An account the directory holds for person `n`, managed by this agent.
fn account(n: u8, given: &str, family: &str, id: &str) -> User {
    let mut u = User {
        user_name: format!("{}.{}@nhs.net", given.to_lowercase(), family.to_lowercase()),
        active: Some(true),
        ..crate::testing::managed_user(n, id)
    };
    u.set_field(crate::model::Field::GivenName, Some(given.into()));
    u.set_field(crate::model::Field::FamilyName, Some(family.into()));
    u.set_field(
        crate::model::Field::DisplayName,
        Some(format!("{given} {family}")),
    );
    u
}

/// A store with an abandoned run: creates of persons 1 and 2 left `sending`, an update
/// of person 3 left `pending`.
fn interrupted_run(dir: &std::path::Path) -> (i64, [i64; 3]) {
    let store = StateStore::open(dir).unwrap();
    let run = store.begin_run("sync", "sha256:earlier").unwrap();
    let p1 = store
        .record(run, "provision", anchor(1).as_str(), "RXA", None)
        .unwrap();
    store.sending(p1).unwrap();
    let p2 = store
        .record(run, "provision", anchor(2).as_str(), "RXA", None)
        .unwrap();
    store.sending(p2).unwrap();
    let u3 = store
        .record(run, "update", anchor(3).as_str(), "RXA", Some("t-3"))
        .unwrap();
    (run, [p1, p2, u3])
}

#[tokio::test]
async fn reconcile_settles_creates_left_sending_by_looking_the_anchor_up() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = interrupted_run(dir.path());
    let w = FakeWriter::new();
    // Person 1's create landed before the run died; person 2's never did.
    w.seed(account(1, "Alice", "Able", "t-1"));
    let store = StateStore::open(dir.path()).unwrap();
    assert_eq!(reconcile(&store, &w).await.unwrap(), 3);
    assert!(store.unfinished().unwrap().is_empty());
    drop(store);

    let h = History::open(dir.path()).unwrap();
    let rows = h.journal(run).unwrap();
    let states: Vec<(&str, Option<&str>)> = rows
        .iter()
        .map(|r| (r.state.as_str(), r.target_id.as_deref()))
        .collect();
    assert_eq!(
        states,
        [
            (op_state::DONE, Some("t-1")),
            (op_state::NOT_SENT, None),
            (op_state::RECONCILED, Some("t-3")),
        ]
    );
    assert_eq!(
        rows[1].error.as_deref(),
        Some("reconciled: not in the directory")
    );
    assert_eq!(h.runs(10).unwrap()[0].status, "interrupted");
    // Each settled one is audited under the run that sent it, with its plan's fingerprint.
    let mut audited = Vec::new();
    h.audit_records(|r| {
        audited.push((
            r.entry.external_id.clone(),
            r.entry.outcome.clone(),
            r.entry.target_id.clone(),
            r.entry.run,
            r.entry.fingerprint.clone(),
        ));
        Ok::<_, crate::state::StateError>(())
    })
    .unwrap();
    let want = |n: u8, outcome: &str, target: Option<&str>| {
        (
            anchor(n).to_string(),
            outcome.to_string(),
            target.map(String::from),
            run,
            "sha256:earlier".to_string(),
        )
    };
    assert_eq!(
        audited,
        [
            want(1, "applied", Some("t-1")),
            want(2, "not_sent", None),
            want(3, "not_sent", Some("t-3")),
        ]
    );
    assert_eq!(h.verify_audit().unwrap().broken, None);
    // Only the creates are looked up; nothing is written.
    let calls: Vec<(Method, String)> = w.calls().into_iter().map(|c| (c.method, c.key)).collect();
    assert_eq!(
        calls,
        [
            (Method::Find, anchor(1).to_string()),
            (Method::Find, anchor(2).to_string()),
        ]
    );
}

#[tokio::test]
async fn reconcile_stops_when_the_anchor_cannot_be_looked_up() {
    let dir = tempfile::tempdir().unwrap();
    let (_, [p1, ..]) = interrupted_run(dir.path());
    let w = FakeWriter::new();
    w.fail_next(Method::Find, 1, Reply::Status(503, None));
    let store = StateStore::open(dir.path()).unwrap();
    let err = reconcile(&store, &w).await.unwrap_err();
    assert!(
        matches!(&err, EngineError::Reconcile { external_id, .. } if *external_id == anchor(1).to_string()),
        "{err:?}"
    );
    // Its fate still unknown, the create stays in flight for the next try.
    let left = store.unfinished().unwrap();
    assert_eq!(left[0].id, p1);
    assert_eq!(left[0].state, op_state::SENDING);
}

#[tokio::test(start_paused = true)]
async fn an_apply_after_an_interrupted_run_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let (earlier, _) = interrupted_run(&cfg.state_dir);
    let w = FakeWriter::new();
    w.seed(account(1, "Alice", "Able", "t-1"));
    let people = [person(1, "Alice", "Able"), person(2, "Bob", "Baker")];
    let r = sync(&cfg, &people, &w).await;
    assert_eq!(r.reconciled, 3);
    // Alice's create had landed: only Bob's is (re-)sent, once.
    assert_eq!(pushed(&r), ids(&[2]));
    assert_eq!(w.count(Method::Create), 1);
    assert_eq!(w.count_for(Method::Create, anchor(2).as_str()), 1);
    assert_eq!(r.status, RunStatus::Ok);
    let h = History::open(&cfg.state_dir).unwrap();
    let states: Vec<String> = h
        .journal(earlier)
        .unwrap()
        .into_iter()
        .map(|j| j.state)
        .collect();
    assert_eq!(states, ["done", "not_sent", "reconciled"]);
    assert_eq!(h.journal(r.run).unwrap()[0].external_id, anchor(2).as_str());
}

/// A person entry in LDIF: objectGUID `[n; 16]` (base64 `guid`), then `attrs`.
fn ldif_person(cn: &str, guid: &str, attrs: &str) -> String {
    format!(
        "dn: CN={cn},OU=Staff,DC=example\nobjectClass: top\nobjectClass: person\n\
         objectClass: organizationalPerson\nobjectClass: user\nobjectGUID:: {guid}\n{attrs}\n\n"
    )
}

/// From an LDIF export to the plan: values that are not UTF-8 or not a number are named
/// in rejections; invalid optional values become warnings, in a fixed order, and leave
/// the directory's value alone; a rejected duplicate leaves no warnings behind.
#[tokio::test]
async fn invalid_values_reach_the_plan_as_rejections_and_warnings() {
    use crate::model::{Field, RejectReason};
    use crate::target::scim::account_from_user;
    use crate::testing::managed_user;
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let mut ldif = String::from("version: 1\n\n");
    // givenName "Si\xe2n": not UTF-8.
    ldif += &ldif_person(
        "Sian Evans",
        "AQEBAQEBAQEBAQEBAQEBAQ==",
        "givenName:: U2nibg==\nsn: Evans\nuserAccountControl: 512",
    );
    // An account holding a mobile; the source's is malformed now.
    ldif += &ldif_person(
        "Ann Lee",
        "AgICAgICAgICAgICAgICAg==",
        "givenName: Ann\nsn: Lee\nmobile: 07700\nuserAccountControl: 512",
    );
    // New: a department ending in a zero-width space, a telephone that is no number.
    ldif += &ldif_person(
        "Bo Ng",
        "AwMDAwMDAwMDAwMDAwMDAw==",
        "givenName: Bo\nsn: Ng\ndepartment:: UGhhcm1hY3nigIs=\ntelephoneNumber: ext 4411\n\
         userAccountControl: 512",
    );
    ldif += &ldif_person(
        "Cy Oak",
        "BAQEBAQEBAQEBAQEBAQEBA==",
        "givenName: Cy\nsn: Oak\nuserAccountControl: abc",
    );
    // Two entries, one anchor: both rejected, and the first one's warning goes too.
    ldif += &ldif_person(
        "Dee One",
        "BQUFBQUFBQUFBQUFBQUFBQ==",
        "givenName: Dee\nsn: One\nmobile: 0770\nuserAccountControl: 512",
    );
    ldif += &ldif_person(
        "Dee Two",
        "BQUFBQUFBQUFBQUFBQUFBQ==",
        "givenName: Dee\nsn: Two\nuserAccountControl: 512",
    );
    let crate::source::AnySource::Ldif(src) = &cfg.source else {
        panic!("the test configuration reads LDIF")
    };
    std::fs::write(&src.path, ldif).unwrap();
    let mut user = managed_user(2, "t2");
    user.name = Some(crate::scim::Name {
        given_name: Some("Ann".into()),
        family_name: Some("Lee".into()),
        ..Default::default()
    });
    user.display_name = Some("Ann Lee".into());
    user.phone_numbers = vec![crate::scim::MultiValue {
        value: "+447700900123".into(),
        kind: Some("mobile".into()),
        primary: None,
    }];
    let account = account_from_user(&user).unwrap();
    assert_eq!(
        account.attributes.get(&Field::Mobile),
        Some("+447700900123")
    );
    let target = FakeTarget::new([organisation("RXA")], vec![account]);
    let run = super::plan::plan_from(
        &cfg,
        &cfg.source,
        &target,
        datetime!(2026-06-01 09:00 UTC),
        None,
        &Silent,
        &CancellationToken::new(),
    )
    .await
    .unwrap();
    let people = run.people();
    let plan = run.plan;
    let rejected: Vec<(&str, RejectReason, &str)> = plan
        .rejected
        .iter()
        .map(|r| (r.dn.as_str(), r.reason, r.detail.as_str()))
        .collect();
    assert_eq!(rejected.len(), 4, "{rejected:#?}");
    assert_eq!(rejected[0].0, "CN=Cy Oak,OU=Staff,DC=example");
    assert_eq!(
        (rejected[0].1, rejected[0].2),
        (
            RejectReason::InvalidValue,
            r#"userAccountControl "abc" is not a number"#
        )
    );
    assert!(
        rejected[1..3]
            .iter()
            .all(|r| r.1 == RejectReason::DuplicateAnchor)
    );
    assert_eq!(rejected[3].0, "CN=Sian Evans,OU=Staff,DC=example");
    assert_eq!(rejected[3].1, RejectReason::InvalidValue);
    assert!(
        rejected[3].2.starts_with("givenName is not valid UTF-8"),
        "{}",
        rejected[3].2
    );

    let warnings: Vec<(&str, Field, RejectReason)> = plan
        .warnings
        .iter()
        .map(|w| (w.dn.as_str(), w.field, w.reason))
        .collect();
    assert_eq!(
        warnings,
        [
            (
                "CN=Ann Lee,OU=Staff,DC=example",
                Field::Mobile,
                RejectReason::InvalidMobile
            ),
            (
                "CN=Bo Ng,OU=Staff,DC=example",
                Field::Department,
                RejectReason::InvalidValue
            ),
            (
                "CN=Bo Ng,OU=Staff,DC=example",
                Field::Telephone,
                RejectReason::InvalidValue
            ),
        ]
    );
    let anchors: Vec<_> = plan
        .warnings
        .iter()
        .map(|w| w.external_id.clone())
        .collect();
    assert_eq!(anchors, [anchor(2), anchor(3), anchor(3)]);
    // Ann's account keeps its mobile (no update), Bo is provisioned without the two.
    let kinds: Vec<String> = plan
        .operations
        .iter()
        .map(|p| format!("{}:{}", p.op.kind(), p.op.external_id()))
        .collect();
    assert_eq!(kinds, [format!("provision:{}", anchor(3))]);
    let crate::plan::Operation::Provision { attributes, .. } = &plan.operations[0].op else {
        panic!()
    };
    assert!(!attributes.contains_key(&Field::Department));
    assert!(!attributes.contains_key(&Field::Telephone));
    assert_eq!(plan.summary.unchanged, 1);
    // The human view lists them.
    let human = crate::plan::render::human(&plan, &people);
    assert!(human.contains("Warnings"), "{human}");
    assert!(
        human.contains(&format!(
            "(CN=Bo Ng,OU=Staff,DC=example)  {}\n      telephone invalid_value: telephone \"ext 4411\"",
            anchor(3)
        )),
        "{human}"
    );
    // The JSON carries them as the contract says.
    let json: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    assert_eq!(
        json["warnings"][0],
        serde_json::json!({
            "external_id": anchor(2).to_string(),
            "dn": "CN=Ann Lee,OU=Staff,DC=example",
            "field": "mobile",
            "reason": "invalid_mobile",
            "detail": "mobile \"07700\" is not a valid phone number; not sent, and the directory's value is left as it is"
        })
    );
}

/// The people in scope are gathered in read order and built into their map when the
/// read is done: a duplicated anchor still drops every entry that claims it (the first
/// one too, even after others were read, and a third claim as well), and everyone else
/// is in the map exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collect_drops_every_claimant_of_a_shared_anchor_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir);
    let mut people: Vec<SourceEntry> = (1..=40u8)
        .rev()
        .map(|n| person(n, "Given", &format!("Family{n}")))
        .collect();
    people.insert(10, person(7, "Dup", "Second"));
    people.push(person(7, "Dup", "Third"));
    people.push(person(41, "Late", "Comer"));
    let source = FakeSource::new(people);
    let c = super::read::collect(&cfg, &source, None, &Silent, &CancellationToken::new())
        .await
        .unwrap();
    assert_eq!(c.read, 43);
    let want: Vec<_> = (1..=41u8).filter(|n| *n != 7).map(anchor).collect();
    assert_eq!(c.persons.anchors().cloned().collect::<Vec<_>>(), want);
    let dup: Vec<&str> = c
        .rejected
        .iter()
        .filter(|r| r.reason == crate::model::RejectReason::DuplicateAnchor)
        .map(|r| r.dn.as_str())
        .collect();
    assert_eq!(
        dup,
        [
            "CN=Dup Second,OU=Staff,DC=example",
            "CN=Given Family7,OU=Staff,DC=example",
            "CN=Dup Third,OU=Staff,DC=example",
        ]
    );
}
