//! The push stage against an in-memory directory ([`crate::testing::FakeWriter`]):
//! retries and backoff, `Retry-After`, look-ups after ambiguous failures, the systemic
//! stop, shutdown, and the journal. Time-dependent tests run on tokio's paused clock.

use super::*;
use crate::ids::{ExternalId, OdsCode, RuleId, TargetId};
use crate::model::Field;
use crate::plan::{FieldChange, RemoveReason};
use crate::scim::User;
use crate::state::{History, JournalEntry, op_state};
use crate::testing::{FakeWriter, Method, Reply, anchor};
use tokio::time::Instant;

#[test]
fn backoff_grows_is_capped_and_honours_retry_after() {
    let s = PushSettings::default();
    for attempt in 0..30 {
        assert!(delay(&s, attempt, None) <= s.backoff_max);
    }
    assert!(delay(&s, 0, None) <= s.backoff_base);
    assert!(delay(&s, 2, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
}

fn nz(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap()
}

/// Fast pacing and backoff, so nothing waits noticeably.
fn fast() -> PushSettings {
    PushSettings {
        rate_per_second: nz(1000),
        burst: nz(1000),
        org_rate_per_second: nz(1000),
        org_burst: nz(1000),
        concurrency: 4,
        max_attempts: 5,
        backoff_base: Duration::from_millis(1),
        backoff_max: Duration::from_millis(10),
        quarantine_after: 3,
        systemic_ratio: 0.8,
        systemic_window: 20,
    }
}

/// One at a time, in plan order (so a script of "the next calls" is deterministic).
fn serial() -> PushSettings {
    PushSettings {
        concurrency: 1,
        ..fast()
    }
}

fn rxa() -> OdsCode {
    OdsCode::parse("RXA").unwrap()
}

fn provision(n: u8) -> PlannedOp {
    PlannedOp {
        op: Operation::Provision {
            external_id: anchor(n),
            ods_code: rxa(),
            rule: RuleId::parse("staff").unwrap(),
            attributes: [
                (Field::GivenName, format!("Given{n}")),
                (Field::FamilyName, "Family".to_string()),
            ]
            .into(),
        },
        stripped: vec![],
    }
}

fn update(n: u8, target_id: &str) -> PlannedOp {
    PlannedOp {
        op: Operation::Update {
            external_id: anchor(n),
            target_id: TargetId::parse(target_id).unwrap(),
            ods_code: rxa(),
            changes: vec![FieldChange {
                field: Field::JobTitle,
                old: Some("Nurse".into()),
                new: Some("Senior Nurse".into()),
            }],
            etag: None,
        },
        stripped: vec![],
    }
}

fn remove(n: u8, target_id: &str) -> PlannedOp {
    PlannedOp {
        op: Operation::Remove {
            external_id: anchor(n),
            target_id: TargetId::parse(target_id).unwrap(),
            ods_code: rxa(),
            reason: RemoveReason::Disabled,
            etag: None,
        },
        stripped: vec![],
    }
}

/// An account this agent manages, for updates to act on.
fn managed(n: u8, target_id: &str) -> User {
    crate::testing::managed_user(n, target_id)
}

/// A state store in a temporary directory with one run begun.
struct Journal {
    dir: tempfile::TempDir,
    store: Arc<Mutex<StateStore>>,
    run: i64,
    audit: AuditContext,
}

impl Journal {
    fn new() -> Journal {
        let dir = tempfile::tempdir().unwrap();
        let store = StateStore::open(dir.path()).unwrap();
        let run = store.begin_run("sync", "sha256:test").unwrap();
        Journal {
            dir,
            store: Arc::new(Mutex::new(store)),
            run,
            // RXA's agreement; anchor 5 was put in scope by the rule `main`.
            audit: AuditContext {
                fingerprint: "sha256:test".into(),
                agreements: [(rxa(), "SA-RXA".to_string())].into(),
                rules: [(anchor(5), RuleId::parse("main").unwrap())].into(),
            },
        }
    }

    async fn push(
        &self,
        ops: Vec<PlannedOp>,
        writer: &FakeWriter,
        settings: PushSettings,
        shutdown: &CancellationToken,
    ) -> PushReport {
        push(
            ops,
            writer.clone(),
            self.store.clone(),
            PushContext {
                run: self.run,
                agent_id: "agent-1",
                nhsmail_domain: "nhs.net",
                settings,
                shutdown,
                progress: &NoProgress,
                audit: self.audit.clone(),
            },
        )
        .await
    }

    /// The run's journal rows, in the order they were recorded.
    fn rows(&self) -> Vec<JournalEntry> {
        History::open(self.dir.path())
            .unwrap()
            .journal(self.run)
            .unwrap()
    }

    /// The one row for `xid` (and there must be exactly one).
    fn row(&self, xid: &ExternalId) -> JournalEntry {
        let mut rows: Vec<JournalEntry> = self
            .rows()
            .into_iter()
            .filter(|r| r.external_id == xid.as_str())
            .collect();
        assert_eq!(rows.len(), 1, "journal rows for {xid}: {rows:?}");
        rows.remove(0)
    }

    fn counts(&self) -> Vec<(String, u32)> {
        journal(&self.store, |s| s.counts(self.run)).unwrap()
    }
}

fn counts(pairs: &[(&str, u32)]) -> Vec<(String, u32)> {
    pairs.iter().map(|(s, n)| (s.to_string(), *n)).collect()
}

fn applied(id: &str) -> Outcome {
    Outcome::Applied {
        target_id: Some(id.into()),
    }
}

fn http(status: u16) -> Reply {
    Reply::Status(status, None)
}

// ---------------------------------------------------------------------------------------
// Retries and backoff

/// A shutdown token cancelled `after` from now on tokio's clock (paused in these tests,
/// so "when" is exact and independent of the machine's speed).
fn shutdown_at(after: Duration) -> CancellationToken {
    let shutdown = CancellationToken::new();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        trigger.cancel();
    });
    shutdown
}

#[tokio::test]
async fn a_create_refused_503_twice_is_applied_once_on_the_third_attempt() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(Method::Create, 2, http(503));
    let r = j
        .push(vec![provision(1)], &w, fast(), &CancellationToken::new())
        .await;
    assert_eq!(r.items[0].outcome, applied("fake-1"));
    assert_eq!(w.count(Method::Create), 3);
    // A 5xx may have been applied: the anchor is looked up before each re-send.
    assert_eq!(w.count(Method::Find), 2);
    assert_eq!(w.users().len(), 1);
    let row = j.row(&anchor(1));
    assert_eq!((row.state.as_str(), row.attempts), (op_state::DONE, 3));
    assert_eq!(row.target_id.as_deref(), Some("fake-1"));
    assert_eq!(r.stopped, None);
    assert!(!r.interrupted);
}

#[tokio::test]
async fn a_400_is_not_retried() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(Method::Create, 1, http(400));
    let r = j
        .push(vec![provision(1)], &w, fast(), &CancellationToken::new())
        .await;
    let Outcome::Failed { error } = &r.items[0].outcome else {
        panic!("failed: {:?}", r.items[0].outcome)
    };
    assert!(error.contains("HTTP 400"), "{error}");
    assert_eq!(w.count(Method::Create), 1);
    assert_eq!(w.count(Method::Find), 0, "a 400 is not ambiguous");
    assert!(w.users().is_empty());
    let row = j.row(&anchor(1));
    assert_eq!((row.state.as_str(), row.attempts), (op_state::FAILED, 1));
    // A final failure counts towards the object's quarantine.
    assert_eq!(
        journal(&j.store, |s| s.failures(anchor(1).as_str())).unwrap(),
        1
    );
}

#[tokio::test]
async fn max_attempts_is_honoured() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.always_fail(&anchor(1), http(503));
    let settings = PushSettings {
        max_attempts: 3,
        ..fast()
    };
    let r = j
        .push(vec![provision(1)], &w, settings, &CancellationToken::new())
        .await;
    assert!(matches!(r.items[0].outcome, Outcome::Failed { .. }));
    assert_eq!(w.count(Method::Create), 3);
    let row = j.row(&anchor(1));
    assert_eq!((row.state.as_str(), row.attempts), (op_state::FAILED, 3));
    assert!(row.error.unwrap().contains("HTTP 503"));
}

// ---------------------------------------------------------------------------------------
// Ambiguous failures

#[tokio::test]
async fn a_create_whose_answer_is_lost_is_looked_up_and_not_sent_again() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(Method::Create, 1, Reply::LostResponse);
    let r = j
        .push(vec![provision(1)], &w, fast(), &CancellationToken::new())
        .await;
    assert_eq!(r.items[0].outcome, applied("fake-1"));
    let calls: Vec<Method> = w.calls().iter().map(|c| c.method).collect();
    assert_eq!(calls, [Method::Create, Method::Find], "no second POST");
    assert_eq!(w.users().len(), 1, "exactly one account");
    let row = j.row(&anchor(1));
    assert_eq!((row.state.as_str(), row.attempts), (op_state::DONE, 1));
    assert_eq!(row.target_id.as_deref(), Some("fake-1"));
}

#[tokio::test]
async fn a_create_lost_on_the_way_is_looked_up_then_sent_again() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(Method::Create, 1, Reply::LostRequest);
    let r = j
        .push(vec![provision(1)], &w, fast(), &CancellationToken::new())
        .await;
    assert_eq!(r.items[0].outcome, applied("fake-1"));
    let calls: Vec<Method> = w.calls().iter().map(|c| c.method).collect();
    assert_eq!(calls, [Method::Create, Method::Find, Method::Create]);
    assert_eq!(w.users().len(), 1);
    assert_eq!(j.row(&anchor(1)).attempts, 2);
}

#[tokio::test]
async fn a_connect_error_is_retried_without_a_look_up() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(Method::Create, 1, Reply::ConnectFailed);
    let r = j
        .push(vec![provision(1)], &w, fast(), &CancellationToken::new())
        .await;
    assert_eq!(r.items[0].outcome, applied("fake-1"));
    let calls: Vec<Method> = w.calls().iter().map(|c| c.method).collect();
    assert_eq!(
        calls,
        [Method::Create, Method::Create],
        "never connected: no look-up"
    );
    assert_eq!(w.users().len(), 1);
    let row = j.row(&anchor(1));
    assert_eq!((row.state.as_str(), row.attempts), (op_state::DONE, 2));
}

#[tokio::test]
async fn a_duplicate_refusal_after_a_lost_answer_counts_as_applied() {
    // The answer is lost, the look-up fails too, so the create is sent again; the
    // directory refuses it as a duplicate (409), and a second look-up finds the account.
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(Method::Create, 1, Reply::LostResponse);
    w.fail_next(Method::Find, 1, http(503));
    let r = j
        .push(vec![provision(1)], &w, fast(), &CancellationToken::new())
        .await;
    assert_eq!(r.items[0].outcome, applied("fake-1"));
    let calls: Vec<Method> = w.calls().iter().map(|c| c.method).collect();
    assert_eq!(
        calls,
        [Method::Create, Method::Find, Method::Create, Method::Find]
    );
    assert_eq!(w.users().len(), 1);
    let row = j.row(&anchor(1));
    assert_eq!((row.state.as_str(), row.attempts), (op_state::DONE, 2));
}

// ---------------------------------------------------------------------------------------
// Retry-After

#[tokio::test(start_paused = true)]
async fn retry_after_is_waited_for_before_the_next_attempt() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(
        Method::Create,
        1,
        Reply::Status(429, Some(Duration::from_secs(2))),
    );
    let r = j
        .push(vec![provision(1)], &w, fast(), &CancellationToken::new())
        .await;
    assert_eq!(r.items[0].outcome, applied("fake-1"));
    let creates: Vec<Instant> = w
        .calls()
        .iter()
        .filter(|c| c.method == Method::Create)
        .map(|c| c.at)
        .collect();
    assert_eq!(creates.len(), 2);
    assert_eq!(
        w.count(Method::Find),
        0,
        "a 429 was not applied: no look-up"
    );
    let waited = creates[1] - creates[0];
    assert!(waited >= Duration::from_secs(2), "waited {waited:?}");
    // Not the backoff on top: Retry-After replaces it (the backoff here is at most 10 ms).
    assert!(
        waited < Duration::from_secs(2) + Duration::from_millis(50),
        "waited {waited:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Systemic stop

#[tokio::test]
async fn the_push_stops_when_every_operation_fails() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(Method::Create, 30, http(400));
    let settings = PushSettings {
        systemic_window: 10,
        systemic_ratio: 0.8,
        ..serial()
    };
    let ops: Vec<PlannedOp> = (1..=30).map(provision).collect();
    let r = j.push(ops, &w, settings, &CancellationToken::new()).await;
    let why = r.stopped.clone().expect("a systemic stop");
    assert!(why.contains("10 of the last 10"), "{why}");
    assert!(!r.interrupted);
    // One at a time: the stop comes right after the window filled with failures.
    assert_eq!((r.failed(), r.not_sent(), r.applied()), (10, 20, 0));
    assert!(
        r.items[..10]
            .iter()
            .all(|i| matches!(i.outcome, Outcome::Failed { .. }))
    );
    assert!(r.items[10..].iter().all(|i| i.outcome == Outcome::NotSent));
    assert_eq!(w.count(Method::Create), 10, "nothing sent after the stop");
    assert_eq!(j.counts(), counts(&[("failed", 10), ("not_sent", 20)]));
    let rows = j.rows();
    assert!(rows[10..].iter().all(|r| r.attempts == 0));
}

#[tokio::test]
async fn a_few_failures_among_successes_do_not_stop_the_push() {
    let j = Journal::new();
    let w = FakeWriter::new();
    for n in [3, 7, 12] {
        w.always_fail(&anchor(n), http(400));
    }
    let settings = PushSettings {
        systemic_window: 10,
        ..fast()
    };
    let ops: Vec<PlannedOp> = (1..=20).map(provision).collect();
    let r = j.push(ops, &w, settings, &CancellationToken::new()).await;
    assert_eq!(r.stopped, None);
    assert_eq!((r.applied(), r.failed(), r.not_sent()), (17, 3, 0));
    assert_eq!(j.counts(), counts(&[("done", 17), ("failed", 3)]));
}

// ---------------------------------------------------------------------------------------
// Shutdown

#[tokio::test]
async fn a_shutdown_before_the_push_sends_nothing() {
    let j = Journal::new();
    let w = FakeWriter::new();
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    let ops: Vec<PlannedOp> = (1..=5).map(provision).collect();
    let r = j.push(ops, &w, fast(), &shutdown).await;
    assert!(r.interrupted);
    assert_eq!(r.stopped, None);
    assert_eq!(r.not_sent(), 5);
    assert!(w.calls().is_empty());
    assert_eq!(j.counts(), counts(&[("not_sent", 5)]));
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_the_push_lets_the_request_on_the_wire_finish() {
    // One at a time, 100 ms a request: the third is on the wire when the shutdown comes
    // at 250 ms. It finishes and is journalled; the other three are not sent.
    let j = Journal::new();
    let w = FakeWriter::new();
    w.latency(Duration::from_millis(100));
    let shutdown = shutdown_at(Duration::from_millis(250));
    let ops: Vec<PlannedOp> = (1..=6).map(provision).collect();
    let r = j.push(ops, &w, serial(), &shutdown).await;
    assert!(r.interrupted);
    assert_eq!(r.stopped, None);
    let outcomes: Vec<bool> = r
        .items
        .iter()
        .map(|i| matches!(i.outcome, Outcome::Applied { .. }))
        .collect();
    assert_eq!(outcomes, [true, true, true, false, false, false]);
    assert!(r.items[3..].iter().all(|i| i.outcome == Outcome::NotSent));
    assert_eq!(w.count(Method::Create), 3);
    assert_eq!(w.users().len(), 3);
    assert_eq!(j.counts(), counts(&[("done", 3), ("not_sent", 3)]));
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_during_a_retry_wait_does_not_retry() {
    // A 429 took no effect: the operation is journalled not sent.
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(
        Method::Create,
        1,
        Reply::Status(429, Some(Duration::from_secs(10))),
    );
    let shutdown = shutdown_at(Duration::from_secs(1));
    let start = Instant::now();
    let r = j.push(vec![provision(1)], &w, fast(), &shutdown).await;
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "the wait was cut short"
    );
    assert!(r.interrupted);
    assert_eq!(r.items[0].outcome, Outcome::NotSent);
    assert_eq!(w.count(Method::Create), 1);
    let row = j.row(&anchor(1));
    assert_eq!((row.state.as_str(), row.attempts), (op_state::NOT_SENT, 1));
    assert_eq!(row.error.as_deref(), Some("shutdown before the retry"));
}

#[tokio::test(start_paused = true)]
async fn a_shutdown_after_an_ambiguous_failure_leaves_it_for_reconcile() {
    // A 503 may have been applied: the row stays `sending` for the next run to settle.
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next(
        Method::Create,
        1,
        Reply::Status(503, Some(Duration::from_secs(10))),
    );
    let shutdown = shutdown_at(Duration::from_secs(1));
    let r = j.push(vec![provision(1)], &w, fast(), &shutdown).await;
    assert_eq!(r.items[0].outcome, Outcome::NotSent);
    let row = j.row(&anchor(1));
    assert_eq!((row.state.as_str(), row.attempts), (op_state::SENDING, 1));
    let left = journal(&j.store, |s| s.unfinished()).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].external_id, anchor(1).as_str());
}

// ---------------------------------------------------------------------------------------
// Journal bookkeeping

#[tokio::test]
async fn every_operation_has_one_journal_row_with_its_final_state() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.seed(managed(5, "t-5"));
    w.always_fail(&anchor(2), http(400));
    w.fail_next_for(Method::Create, anchor(3).as_str(), 1, http(503));
    w.fail_next_for(Method::Create, anchor(4).as_str(), 1, Reply::LostResponse);
    let ops = vec![
        provision(1),
        provision(2),
        provision(3),
        provision(4),
        update(5, "t-5"),
        // No such account: 404, not retried.
        remove(6, "t-missing"),
    ];
    let r = j.push(ops, &w, fast(), &CancellationToken::new()).await;
    let rows = j.rows();
    assert_eq!(rows.len(), 6, "{rows:?}");
    let want = [
        (1, "provision", op_state::DONE, 1),
        (2, "provision", op_state::FAILED, 1),
        (3, "provision", op_state::DONE, 2),
        (4, "provision", op_state::DONE, 1),
        (5, "update", op_state::DONE, 1),
        (6, "remove", op_state::FAILED, 1),
    ];
    for (n, kind, state, attempts) in want {
        let row = j.row(&anchor(n));
        assert_eq!(
            (row.kind.as_str(), row.state.as_str(), row.attempts),
            (kind, state, attempts),
            "{n}: {row:?}"
        );
        assert_eq!(row.ods_code, "RXA");
    }
    assert_eq!(j.row(&anchor(5)).target_id.as_deref(), Some("t-5"));
    assert!(j.row(&anchor(6)).error.unwrap().contains("HTTP 404"));
    assert_eq!(j.counts(), counts(&[("done", 4), ("failed", 2)]));
    // The report agrees with the journal, in plan order.
    assert_eq!((r.applied(), r.failed(), r.not_sent()), (4, 2, 0));
    let xids: Vec<String> = r.items.iter().map(|i| i.external_id.clone()).collect();
    let want_xids: Vec<String> = (1..=6).map(|n| anchor(n).to_string()).collect();
    assert_eq!(xids, want_xids);
    assert!(journal(&j.store, |s| s.unfinished()).unwrap().is_empty());
    // Three accounts created (the fourth creation was refused), one already there.
    assert_eq!(w.users().len(), 4);
    assert_eq!(w.count_for(Method::Patch, "t-5"), 1);
}

// ---------------------------------------------------------------------------------------
// Regression tests for two bugs these fakes found: a request waiting for its pacing slot
// was sent after a stop, and a systemic stop cut a Retry-After wait short and re-sent.

#[tokio::test(start_paused = true)]
async fn a_shutdown_while_waiting_for_a_pacing_slot_sends_nothing_more() {
    // One request a second: the first goes at once, the other three wait for their
    // slots (at 1, 2 and 3 s) when the shutdown comes at 0.5 s. None of them is on the
    // wire, so none should be sent.
    let j = Journal::new();
    let w = FakeWriter::new();
    let settings = PushSettings {
        rate_per_second: nz(1),
        burst: nz(1),
        org_rate_per_second: nz(1),
        org_burst: nz(1),
        concurrency: 4,
        ..fast()
    };
    let shutdown = shutdown_at(Duration::from_millis(500));
    let ops: Vec<PlannedOp> = (1..=4).map(provision).collect();
    let r = j.push(ops, &w, settings, &shutdown).await;
    assert!(r.interrupted);
    assert_eq!(
        w.count(Method::Create),
        1,
        "sent after the shutdown: {:?}",
        w.calls()
    );
    assert_eq!((r.applied(), r.not_sent()), (1, 3));
    assert_eq!(j.counts(), counts(&[("done", 1), ("not_sent", 3)]));
}

#[tokio::test(start_paused = true)]
async fn a_systemic_stop_does_not_cut_a_retry_after_wait_short() {
    // Person 1 is throttled (429, Retry-After 10 s) while the others all fail and the
    // push stops as systemic. Whatever it then does with person 1, it must not send it
    // again before the directory's Retry-After has passed.
    let j = Journal::new();
    let w = FakeWriter::new();
    w.fail_next_for(
        Method::Create,
        anchor(1).as_str(),
        1,
        Reply::Status(429, Some(Duration::from_secs(10))),
    );
    for n in 2..=20 {
        w.always_fail(&anchor(n), http(400));
    }
    let settings = PushSettings {
        concurrency: 2,
        systemic_window: 10,
        ..fast()
    };
    let ops: Vec<PlannedOp> = (1..=20).map(provision).collect();
    let r = j.push(ops, &w, settings, &CancellationToken::new()).await;
    assert!(r.stopped.is_some(), "a systemic stop");
    let first: Vec<Instant> = w
        .calls()
        .iter()
        .filter(|c| c.method == Method::Create && c.key == anchor(1).as_str())
        .map(|c| c.at)
        .collect();
    if let [t0, t1, ..] = first[..] {
        assert!(
            t1 - t0 >= Duration::from_secs(10),
            "re-sent {:?} after a 429 asking for 10 s",
            t1 - t0
        );
    }
}

// ---------------------------------------------------------------------------------------
// A journal that cannot be written

impl Journal {
    /// Make the journal refuse writes from now on, as a full disk or a failing volume
    /// would: a trigger on the store's own table, through a second connection.
    fn break_journal(&self, trigger: &str) {
        let c = rusqlite::Connection::open(self.dir.path().join("tansync.db")).unwrap();
        c.execute_batch(trigger).unwrap();
    }
}

/// Push five provisions, one at a time, with the journal broken by `trigger`.
async fn push_with_broken_journal(trigger: &str) -> (Journal, FakeWriter, PushReport) {
    let j = Journal::new();
    let w = FakeWriter::new();
    j.break_journal(trigger);
    let settings = PushSettings {
        concurrency: 1,
        ..fast()
    };
    let ops = (1..=5).map(provision).collect();
    let r = j.push(ops, &w, settings, &CancellationToken::new()).await;
    (j, w, r)
}

#[tokio::test]
async fn a_journal_that_cannot_record_an_operation_stops_the_run_before_it_is_sent() {
    let (j, w, r) = push_with_broken_journal(
        "CREATE TRIGGER full BEFORE INSERT ON journal WHEN (SELECT count(*) FROM journal) >= 2
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .await;
    // Two were journalled and sent; the third could not be journalled, so neither it
    // nor anything after it went out.
    assert_eq!(w.count(Method::Create), 2, "{:?}", w.calls());
    assert_eq!(r.applied(), 2);
    let why = r.stopped.expect("the run stopped");
    assert!(why.contains("cannot journal"), "{why}");
    assert_eq!(j.rows().len(), 2);
}

#[tokio::test]
async fn a_journal_that_cannot_record_an_outcome_stops_the_run() {
    let (j, w, r) = push_with_broken_journal(
        "CREATE TRIGGER full BEFORE UPDATE OF state ON journal WHEN NEW.state = 'done'
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    )
    .await;
    // The first went out and landed, but that could not be recorded: nothing more is
    // sent, and its row still says `sending` for the next run to reconcile.
    assert_eq!(w.count(Method::Create), 1, "{:?}", w.calls());
    assert_eq!(r.applied(), 1);
    let why = r.stopped.expect("the run stopped");
    assert!(why.contains("cannot journal"), "{why}");
    assert_eq!(j.row(&anchor(1)).state, op_state::SENDING);
    assert!(
        j.rows()
            .iter()
            .skip(1)
            .all(|r| r.state != op_state::SENDING),
        "{:?}",
        j.rows()
    );
}

// ---------------------------------------------------------------------------------------
// The audit trail

impl Journal {
    /// The audit records, oldest first.
    fn audit(&self) -> Vec<crate::state::audit::AuditRecord> {
        let mut out = Vec::new();
        History::open(self.dir.path())
            .unwrap()
            .audit_records(|r| {
                out.push(r.clone());
                Ok::<_, crate::state::StateError>(())
            })
            .unwrap();
        out
    }
}

#[tokio::test]
async fn every_settled_operation_has_an_audit_record_with_its_agreement_and_rule() {
    let j = Journal::new();
    let w = FakeWriter::new();
    w.seed(managed(5, "t-5"));
    w.always_fail(&anchor(2), http(400));
    let ops = vec![
        provision(1),
        provision(2),
        update(5, "t-5"),
        remove(6, "t-missing"),
    ];
    let r = j.push(ops, &w, serial(), &CancellationToken::new()).await;
    assert_eq!((r.applied(), r.failed()), (2, 2));
    let recs = j.audit();
    assert_eq!(recs.len(), 4, "{recs:#?}");
    let got: Vec<_> = recs
        .iter()
        .map(|r| {
            let e = &r.entry;
            (
                e.external_id.clone(),
                e.kind.as_str(),
                e.outcome.as_str(),
                e.rule.as_deref(),
                e.reason.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                anchor(1).to_string(),
                "provision",
                "applied",
                Some("staff"),
                None
            ),
            (
                anchor(2).to_string(),
                "provision",
                "failed",
                Some("staff"),
                None
            ),
            (
                anchor(5).to_string(),
                "update",
                "applied",
                Some("main"),
                None
            ),
            (
                anchor(6).to_string(),
                "remove",
                "failed",
                None,
                Some("disabled")
            ),
        ]
    );
    for r in &recs {
        assert_eq!(r.entry.agreement.as_deref(), Some("SA-RXA"), "{r:?}");
        assert_eq!(r.entry.fingerprint, "sha256:test");
        assert_eq!((r.entry.run, r.entry.ods_code.as_str()), (j.run, "RXA"));
    }
    // The new account's id, the updated one's, none for a create that failed.
    let created = w
        .users()
        .into_iter()
        .find(|u| u.external_id.as_deref() == Some(anchor(1).as_str()))
        .and_then(|u| u.id);
    assert!(created.is_some());
    assert_eq!(recs[0].entry.target_id, created);
    assert_eq!(recs[1].entry.target_id, None);
    assert_eq!(recs[2].entry.target_id.as_deref(), Some("t-5"));
    let v = History::open(j.dir.path()).unwrap().verify_audit().unwrap();
    assert_eq!((v.records, v.broken), (4, None));
}

#[tokio::test]
async fn operations_never_sent_are_audited_not_sent() {
    let j = Journal::new();
    let w = FakeWriter::new();
    let shutdown = CancellationToken::new();
    shutdown.cancel();
    j.push(vec![provision(1), provision(2)], &w, fast(), &shutdown)
        .await;
    let outcomes: Vec<_> = j.audit().into_iter().map(|r| r.entry.outcome).collect();
    assert_eq!(outcomes, ["not_sent", "not_sent"]);
}

#[tokio::test]
async fn an_audit_trail_that_cannot_be_written_stops_the_run() {
    let j = Journal::new();
    let w = FakeWriter::new();
    j.break_journal(
        "CREATE TRIGGER full BEFORE INSERT ON audit
         BEGIN SELECT RAISE(ABORT, 'database or disk is full'); END;",
    );
    let ops = (1..=5).map(provision).collect();
    let r = j.push(ops, &w, serial(), &CancellationToken::new()).await;
    // The first went out, but neither its outcome nor its record could be written (one
    // transaction): nothing more is sent, and its row says `sending` for the next run.
    assert_eq!(w.count(Method::Create), 1, "{:?}", w.calls());
    let why = r.stopped.expect("the run stopped");
    assert!(why.contains("database or disk is full"), "{why}");
    assert_eq!(j.row(&anchor(1)).state, op_state::SENDING);
    assert!(j.audit().is_empty());
}

#[tokio::test(start_paused = true)]
async fn the_time_spent_waiting_for_the_rate_limiter_is_reported() {
    let j = Journal::new();
    let w = FakeWriter::new();
    // One a second, no burst beyond one, one at a time: the 2nd and the 3rd each wait
    // about a second for their slot.
    let settings = PushSettings {
        rate_per_second: nz(1),
        burst: nz(1),
        concurrency: 1,
        ..fast()
    };
    let ops = (1..=3).map(provision).collect();
    let r = j.push(ops, &w, settings, &CancellationToken::new()).await;
    assert_eq!(r.applied(), 3);
    assert!(
        r.rate_limit_wait >= Duration::from_millis(1900)
            && r.rate_limit_wait <= Duration::from_millis(2100),
        "{:?}",
        r.rate_limit_wait
    );
    // Unpaced, nothing is waited for.
    let j = Journal::new();
    let ops = (4..=6).map(provision).collect();
    let r = j.push(ops, &w, fast(), &CancellationToken::new()).await;
    assert_eq!(r.rate_limit_wait, Duration::ZERO);
}
