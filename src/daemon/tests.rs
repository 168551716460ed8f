//! Cycles over in-memory fakes: full then delta, a failed cycle keeps the watermark,
//! held removals and their approval, standby writes nothing.

use super::cycle::{CycleEnv, CycleOutcome, run_cycle};
use super::observe::{CycleKind, CycleResult, Observer};
use crate::config::Config;
use crate::engine::EngineError;
use crate::source::SourceEntry;
use crate::state::StateStore;
use crate::testing::{
    FakeSource, FakeTarget, FakeWriter, Method, Reply, anchor, organisation, person, watermark,
};
use std::sync::{Arc, Mutex};
use time::macros::datetime;
use tokio_util::sync::CancellationToken;

fn config(dir: &tempfile::TempDir, safety: &str) -> Config {
    crate::testing::config(
        dir,
        &format!(
            "[safety]\nmax_removals = 1\npercent_applies_from = 1000\n{safety}[push]\nrate_per_second = 1000\nbackoff_base_ms = 1\nbackoff_max_secs = 1\nmax_attempts = 1\nquarantine_after = 5\n[daemon]\nfull_every_hours = 24\n"
        ),
    )
}

struct World {
    _dir: tempfile::TempDir,
    cfg: Config,
    store: Arc<Mutex<StateStore>>,
    writer: FakeWriter,
    observer: Observer,
}

impl World {
    fn new() -> Self {
        Self::with_safety("")
    }

    /// With more `[safety]` keys.
    fn with_safety(safety: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(&dir, safety);
        let store = Arc::new(Mutex::new(StateStore::open(&cfg.state_dir).unwrap()));
        World {
            _dir: dir,
            cfg,
            store,
            writer: FakeWriter::new(),
            observer: Observer::default(),
        }
    }

    async fn cycle(&self, source: &FakeSource, standby: bool, hour: u8) -> CycleOutcome {
        self.cycle_reads(source, standby, hour).await.0
    }

    /// A cycle, and how many full reads of the directory it made.
    async fn cycle_reads(
        &self,
        source: &FakeSource,
        standby: bool,
        hour: u8,
    ) -> (CycleOutcome, usize) {
        self.cycle_with(source, standby, hour, &CancellationToken::new())
            .await
    }

    async fn cycle_with(
        &self,
        source: &FakeSource,
        standby: bool,
        hour: u8,
        cancel: &CancellationToken,
    ) -> (CycleOutcome, usize) {
        let target = FakeTarget::over([organisation("RXA")], &self.writer);
        let reads = target.full_reads.clone();
        let w = self.writer.clone();
        let env = CycleEnv {
            cfg: &self.cfg,
            source,
            target: &target,
            writer: move || Ok::<_, EngineError>(w.clone()),
            write_back: None,
            store: &self.store,
            standby,
            observer: &self.observer,
        };
        let now = datetime!(2026-06-01 00:00 UTC) + time::Duration::hours(i64::from(hour));
        let out = run_cycle(&env, now, cancel).await;
        (out, reads.load(std::sync::atomic::Ordering::Relaxed))
    }

    fn position(&self) -> Option<String> {
        let s = self.store.lock().unwrap();
        s.watermark().unwrap().map(|w| {
            serde_json::from_str::<crate::source::delta::Watermark>(&w.watermark)
                .unwrap()
                .position
        })
    }
}

fn people(ns: &[u8]) -> Vec<SourceEntry> {
    ns.iter()
        .map(|n| person(*n, &format!("Given{n}"), "Family"))
        .collect()
}

#[tokio::test]
async fn first_full_then_delta_and_a_failed_cycle_keeps_the_watermark() {
    let w = World::new();
    let mut src = FakeSource::new(people(&[1, 2, 3]));
    src.watermark = Some(watermark("dc1", 10));
    let out = w.cycle(&src, false, 0).await;
    assert_eq!(
        (out.report.kind, out.report.result, out.exit),
        (CycleKind::Full, CycleResult::Ok, 0)
    );
    assert_eq!(w.writer.count(Method::Create), 3);
    assert_eq!(w.position().as_deref(), Some("10"));

    // One change; the delta hands over only person 1. Absent 2 and 3 are not removed.
    src.changed = vec![person(1, "Renamed", "Family")];
    src.watermark = Some(watermark("dc1", 20));
    let (out, full_reads) = w.cycle_reads(&src, false, 1).await;
    // The directory side of a delta: the cache and the changed person's account only.
    assert_eq!(full_reads, 0);
    assert_eq!(
        (out.report.kind, out.report.result),
        (CycleKind::Delta, CycleResult::Ok)
    );
    assert_eq!(
        out.report
            .operations
            .get(&("update".into(), "applied".into())),
        Some(&1)
    );
    assert_eq!(w.writer.count(Method::Patch), 1);
    assert_eq!(w.writer.users().len(), 3);
    assert_eq!(w.position().as_deref(), Some("20"));

    // The directory fails the next change: the cycle is partial, the watermark stays.
    src.changed = vec![person(2, "Again", "Family")];
    src.watermark = Some(watermark("dc1", 30));
    w.writer.always_fail(&anchor(2), Reply::Status(500, None));
    let out = w.cycle(&src, false, 2).await;
    assert_eq!(
        (out.report.kind, out.report.result, out.exit),
        (CycleKind::Delta, CycleResult::Partial, 1)
    );
    assert_eq!(w.position().as_deref(), Some("20"));
    // Healed, the next delta repeats from 20 and advances.
    w.writer.heal(&anchor(2));
    let out = w.cycle(&src, false, 3).await;
    assert_eq!(
        (out.report.kind, out.report.result),
        (CycleKind::Delta, CycleResult::Ok)
    );
    assert_eq!(
        out.report
            .operations
            .get(&("update".into(), "applied".into())),
        Some(&1)
    );
    assert_eq!(w.position().as_deref(), Some("30"));

    // Another DC: the source says full; so does full_every_hours passing.
    src.watermark = Some(watermark("dc2", 5));
    let out = w.cycle(&src, false, 4).await;
    assert_eq!(out.report.kind, CycleKind::Full);
    assert!(out.note.unwrap().contains("another server"));
    let out = w.cycle(&src, false, 4 + 25).await;
    assert_eq!(out.report.kind, CycleKind::Full);
    assert!(out.note.unwrap().contains("full reconcile is due"));
}

#[tokio::test]
async fn held_removals_wait_for_an_approval_of_that_very_set() {
    let w = World::new();
    let src = FakeSource::new(people(&[1, 2, 3, 4]));
    assert_eq!(w.cycle(&src, false, 0).await.report.result, CycleResult::Ok);
    // 2, 3 and 4 leave (3 removals > max_removals = 1); 5 joins and is provisioned.
    let src = FakeSource::new(people(&[1, 5]));
    let out = w.cycle(&src, false, 1).await;
    assert!(out.held_changed);
    assert_eq!(out.report.held_removals, 3);
    let digest = out.report.held_digest.clone().unwrap();
    assert_eq!(w.writer.count(Method::Create), 5);
    assert_eq!(w.writer.count(Method::Patch), 0);
    // The same set next cycle: same digest, nothing new to notify.
    let again = w.cycle(&src, false, 2).await;
    assert_eq!(again.report.held_digest.as_deref(), Some(digest.as_str()));
    assert!(!again.held_changed);

    // An approval of another digest is refused; of this one, it releases exactly the set.
    {
        let s = w.store.lock().unwrap();
        assert!(s.approve_held("sha256:other").unwrap().is_err());
        s.approve_held(&digest).unwrap().unwrap();
    }
    let out = w.cycle(&src, false, 3).await;
    assert_eq!(out.report.result, CycleResult::Ok);
    assert_eq!(out.report.held_removals, 0);
    assert_eq!(
        out.report
            .operations
            .get(&("remove".into(), "applied".into())),
        Some(&3)
    );
    assert!(w.store.lock().unwrap().held().unwrap().is_none());
    // The set cleared: that is news too (notified as `held_removals_cleared`).
    assert!(out.held_changed && out.held.is_empty());

    // A changed set voids an approval.
    {
        let s = w.store.lock().unwrap();
        s.set_held(Some(("sha256:a", 2, "[]"))).unwrap();
        s.approve_held("sha256:a").unwrap().unwrap();
    }
    let src = FakeSource::new(people(&[6]));
    let out = w.cycle(&src, false, 4).await;
    // (The fake directory does not apply PATCHes: all five are still active.) Removing
    // them is held, with a new digest, not the approved one.
    assert_eq!(out.report.held_removals, 5);
    assert_ne!(out.report.held_digest.as_deref(), Some("sha256:a"));
    assert!(
        w.store
            .lock()
            .unwrap()
            .held()
            .unwrap()
            .unwrap()
            .approved_at
            .is_none()
    );
}

#[tokio::test]
async fn standby_plans_and_writes_nothing() {
    let w = World::new();
    let mut src = FakeSource::new(people(&[1, 2]));
    src.watermark = Some(watermark("dc1", 1));
    let out = w.cycle(&src, true, 0).await;
    assert_eq!((out.report.result, out.exit), (CycleResult::Standby, 0));
    assert_eq!(
        out.report
            .operations
            .get(&("provision".into(), "planned".into())),
        Some(&2)
    );
    assert!(w.writer.calls().is_empty());
    // A standby watermark is not an active one: the first active cycle is full.
    let out = w.cycle(&src, false, 1).await;
    assert_eq!(
        (out.report.kind, out.report.result),
        (CycleKind::Full, CycleResult::Ok)
    );
    assert_eq!(w.writer.count(Method::Create), 2);
}

#[tokio::test]
async fn without_a_directory_cache_a_delta_becomes_full() {
    let w = World::new();
    let mut src = FakeSource::new(people(&[1]));
    src.watermark = Some(watermark("dc1", 1));
    w.cycle(&src, false, 0).await;
    super::cache::forget(&w.cfg.state_dir);
    let (out, full_reads) = w.cycle_reads(&src, false, 1).await;
    assert_eq!(out.report.kind, CycleKind::Full);
    assert!(out.note.unwrap().contains("directory cache"));
    assert_eq!(full_reads, 1);
}

#[tokio::test]
async fn a_cycle_stopped_by_a_shutdown_is_recorded_interrupted_not_failed() {
    let w = World::new();
    let src = FakeSource::new(people(&[1, 2]));
    let stop = CancellationToken::new();
    stop.cancel();
    let (out, _) = w.cycle_with(&src, false, 0, &stop).await;
    assert_eq!(out.report.result, CycleResult::Failed);
    let cycles = crate::state::History::open(&w.cfg.state_dir)
        .unwrap()
        .cycles(1)
        .unwrap();
    assert_eq!(cycles[0].result, "interrupted", "{cycles:?}");
    // Nothing was sent, and no watermark saved.
    assert!(w.writer.calls().is_empty());
    assert_eq!(w.position(), None);
}

#[tokio::test]
async fn a_delta_caps_by_every_account_and_joins_an_unanchored_one() {
    // A cap of 4 accounts per organisation.
    let w = World::with_safety("default_account_cap = 4\n");
    // An account someone made by hand, before the agent: no anchor, not managed.
    w.writer.seed(crate::scim::User {
        user_name: "sam.jones@nhs.net".into(),
        emails: vec![crate::scim::MultiValue {
            value: "sam.jones@nhs.net".into(),
            kind: Some("work".into()),
            primary: Some(true),
        }],
        nhs: Some(crate::scim::Nhs {
            ods_code: Some("RXA".into()),
            status: Some("active".into()),
            ..crate::scim::Nhs::default()
        }),
        ..crate::scim::User::default()
    });
    let mut src = FakeSource::new(people(&[1, 2]));
    src.watermark = Some(watermark("dc1", 10));
    assert_eq!(w.cycle(&src, false, 0).await.report.kind, CycleKind::Full);
    assert_eq!(w.writer.count(Method::Create), 2);

    // Two joiners: the delta's state holds none of the three accounts RXA has (two of
    // them the agent's), but the cap counts them all: only one, the lower anchor, fits.
    src.changed = people(&[3, 4]);
    src.watermark = Some(watermark("dc1", 20));
    let (out, full_reads) = w.cycle_reads(&src, false, 1).await;
    assert_eq!((out.report.kind, full_reads), (CycleKind::Delta, 0));
    assert_eq!(w.writer.count(Method::Create), 3);
    assert_eq!(
        out.report.blocked.get("account_cap"),
        Some(&1),
        "{:?}",
        out.report
    );

    // Sam, whose address is that unanchored account's, joins it on a delta.
    let sam = SourceEntry::build(
        "CN=Sam Jones,OU=Staff,DC=example".into(),
        [
            ("givenName".to_string(), vec!["Sam".to_string()]),
            ("sn".to_string(), vec!["Jones".to_string()]),
            ("mail".to_string(), vec!["Sam.Jones@nhs.net".to_string()]),
            ("userAccountControl".to_string(), vec!["512".to_string()]),
        ],
        [("objectGUID".to_string(), vec![vec![5; 16]])],
        &crate::source::AnchorKind::ObjectGuid,
    );
    src.changed = vec![sam];
    src.watermark = Some(watermark("dc1", 30));
    let out = w.cycle(&src, false, 2).await;
    assert_eq!(out.report.kind, CycleKind::Delta);
    assert_eq!(
        out.report
            .operations
            .get(&("join".into(), "applied".into())),
        Some(&1),
        "{:?}",
        out.report
    );
    assert_eq!(w.writer.count(Method::Create), 3);
}

/// SIGHUP's reload: a changed `source.auth` or `source.keytab` needs a restart (MIT
/// krb5 reads the keytab's name from the environment set at start), so the old
/// configuration is kept; any other change is taken.
#[cfg(feature = "kerberos")]
#[test]
fn a_reload_that_changes_the_keytab_keeps_the_old_configuration() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    crate::testing::config(&dir, "");
    let d = dir.path();
    for f in ["a.keytab", "b.keytab", "pw"] {
        std::fs::write(d.join(f), "x").unwrap();
        std::fs::set_permissions(d.join(f), std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let path = d.join("tansync.toml");
    let write = |auth: &str, page_size: u32| {
        std::fs::write(
            &path,
            format!(
                "agent_id = \"agent-1\"\n[source]\nkind = \"ldap\"\nurl = \"ldaps://dc1.example\"\n{auth}\nbase_dns = [\"DC=x\"]\npage_size = {page_size}\n[filters]\nfiles = [\"rules.toml\"]\n[target]\nkind = \"snapshot\"\npath = \"snapshot.json\"\n[agreements]\nfile = \"agreements.toml\"\n"
            ),
        )
        .unwrap();
    };
    let simple = "bind_dn = \"CN=x\"\nbind_password_file = \"pw\"";
    let krb = |kt: &str| format!("auth = \"kerberos\"\nkeytab = \"{kt}\"\nprincipal = \"svc@EX\"");
    let page_size = |c: &Config| match &c.source {
        crate::source::AnySource::Ldap(l) => l.page_size,
        _ => panic!("ldap"),
    };

    write(simple, 100);
    let cfg = Config::load(&path).unwrap();
    write(&krb("a.keytab"), 200);
    let cfg = super::reload(&path, cfg);
    assert_eq!(
        (cfg.keytab(), page_size(&cfg)),
        (None, 100),
        "simple to kerberos"
    );

    write(&krb("a.keytab"), 100);
    let cfg = Config::load(&path).unwrap();
    write(&krb("b.keytab"), 200);
    let cfg = super::reload(&path, cfg);
    assert_eq!(
        cfg.keytab(),
        Some(d.join("a.keytab").as_path()),
        "another keytab"
    );
    assert_eq!(page_size(&cfg), 100);
    write(simple, 200);
    let cfg = super::reload(&path, cfg);
    assert_eq!(page_size(&cfg), 100, "kerberos to simple");

    write(&krb("a.keytab"), 300);
    let cfg = super::reload(&path, cfg);
    assert_eq!(page_size(&cfg), 300, "the same keytab: reloaded");
    assert_eq!(cfg.keytab(), Some(d.join("a.keytab").as_path()));
}
