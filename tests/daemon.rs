//! Continuous mode end to end, on real servers: the Samba AD DC (started by
//! tests/harness) → `tansync run` (the built binary) → the reference NHS Directory
//! (started here, one per test). Each test works in an OU of its own.
//!
//! Until the LDAP delta reads land, every cycle against Samba is full (the source says
//! it has no deltas); the tests hold either way and read the cycle kind from
//! `tansync status --format json`.

mod common;
use common::ad::{self, User};
use common::dirsvc::{DirectoryService, Org, nhs};
use common::process::wait_bounded;
use common::*;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

const AGENT: &str = "tansync-daemon";

/// A safety net against a hang, never what a test waits for.
const SAFETY_NET: Duration = Duration::from_secs(120);

struct World {
    _tmp: tempfile::TempDir,
    ou: String,
    dir: DirectoryService,
    config: PathBuf,
}

impl World {
    /// `extra`: TOML appended to the agent's configuration (after `[daemon]`'s keys
    /// when it starts with none of its own section).
    fn new(name: &str, safety: &str, daemon: &str) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ou = ad::fresh_ou(name);
        ad::add_ou(&format!("OU=Main,{ou}"));
        let registry = [Org {
            ods: "RXA",
            kind: "trust",
            open: true,
            cap: 50,
        }];
        let dir = DirectoryService::start(AGENT, &["RXA"], &registry, "");
        std::fs::write(
            tmp.path().join("filters.toml"),
            format!(
                "[[rule]]\nid = \"main\"\naction = \"include\"\nunder = [{}]\nods = {{ constant = \"RXA\" }}\n",
                toml_str(&format!("OU=Main,{ou}"))
            ),
        )
        .expect("filters");
        std::fs::write(
            tmp.path().join("agreements.toml"),
            "[partnering]\nreference = \"PA-E2E\"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\n\n[[sharing]]\nods_code = \"RXA\"\nreference = \"SA-RXA\"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\noperations = [\"provision\", \"update\", \"remove\", \"move\", \"restore\", \"join\"]\nattributes = [\"given_name\", \"family_name\", \"display_name\", \"job_title\", \"department\", \"site\", \"telephone\", \"mobile\", \"employee_id\"]\n",
        )
        .expect("agreements");
        let text = samba_agent_config(
            AGENT,
            &ou,
            &dir.url,
            &dir.token_file,
            &format!("[safety]\n{safety}\n\n[push]\nrate_per_second = 50\n\n[daemon]\n{daemon}\n"),
        );
        let config = write_config(tmp.path(), &text);
        World {
            _tmp: tmp,
            ou,
            dir,
            config,
        }
    }

    fn main(&self) -> String {
        format!("OU=Main,{}", self.ou)
    }

    fn dn(&self, cn: &str) -> String {
        format!("CN={cn},{}", self.main())
    }

    fn run(&self, args: &[&str]) -> Run {
        tansync(&self.config, args)
    }

    /// `tansync run --once` (plus `args`), which must exit `code`.
    fn once(&self, args: &[&str], code: i32) -> Run {
        let mut a = vec!["run", "--once"];
        a.extend_from_slice(args);
        let r = self.run(&a);
        assert_eq!(
            r.code,
            code,
            "run --once {args:?}:\n{}\n{}\ndirectory: {}",
            r.stdout,
            r.stderr,
            self.dir.stderr()
        );
        r
    }

    fn status(&self) -> Value {
        let r = self.run(&["status", "--format", "json"]);
        assert_eq!(r.code, 0, "status: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("status JSON")
    }

    /// The directory's accounts by employee id.
    fn accounts(&self) -> std::collections::BTreeMap<String, Value> {
        self.dir
            .users()
            .into_iter()
            .map(|u| {
                let emp = u[tansync::scim::ENTERPRISE_SCHEMA]["employeeNumber"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string();
                (emp, u)
            })
            .collect()
    }

    fn edit_config(&self, f: impl FnOnce(String) -> String) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        std::fs::write(&self.config, f(text)).expect("write config");
    }
}

fn user<'a>(cn: &'a str, given: &'a str, family: &'a str, title: &'a str) -> User<'a> {
    User {
        cn,
        given,
        family,
        title,
        enabled: true,
    }
}

fn latest(status: &Value) -> &Value {
    &status["cycles"][0]
}

#[test]
fn run_once_provisions_then_the_next_cycle_applies_a_change() {
    let w = World::new("d-once", "", "");
    ad::add_users(
        &w.main(),
        &[
            user("Ann Ash", "Ann", "Ash", "Staff Nurse"),
            user("Ben Birch", "Ben", "Birch", "Porter"),
        ],
    );
    w.once(&[], 0);
    let st = w.status();
    assert_eq!(latest(&st)["kind"], "full", "{st:#}");
    assert_eq!(latest(&st)["result"], "ok", "{st:#}");
    assert_eq!(st["mode"], "active");
    let acc = w.accounts();
    assert_eq!(acc.len(), 2, "{acc:#?}");

    // The full cycle saved the DC's watermark: its USN, pinned to that DC.
    assert_eq!(st["watermark"]["kind"], "ad_usn", "{st:#}");
    assert!(
        st["watermark"]["server"]
            .as_str()
            .is_some_and(|s| s.starts_with("CN=NTDS Settings,")),
        "{st:#}"
    );

    // A change in AD is applied by the next cycle, a delta.
    ad::replace(&w.dn("Ann Ash"), "title", "Ward Sister");
    w.once(&[], 0);
    let st = w.status();
    assert_eq!(latest(&st)["kind"], "delta", "{st:#}");
    assert_eq!(latest(&st)["result"], "ok", "{st:#}");
    assert_eq!(latest(&st)["operations"], 1, "{st:#}");
    assert_eq!(st["cycles"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        w.accounts()["E-ann.ash"]["title"],
        "Ward Sister",
        "{:#?}",
        w.accounts()
    );
    // The latest full cycle that settled is the first.
    assert_eq!(st["last"]["full/ok"]["id"], st["cycles"][1]["id"], "{st:#}");

    // A disabled user becomes a leaver within one delta cycle…
    ad::set_enabled(&w.dn("Ben Birch"), false);
    w.once(&[], 0);
    let st = w.status();
    assert_eq!(latest(&st)["kind"], "delta", "{st:#}");
    assert_eq!(
        nhs(&w.accounts()["E-ben.birch"])["status"],
        "leaver",
        "{:#?}",
        w.accounts()
    );
    // …and so does a deleted one (its tombstone, through the Show Deleted control).
    ad::ldif(
        &format!("dn: {}\nchangetype: delete\n", w.dn("Ann Ash")),
        false,
    );
    w.once(&[], 0);
    let st = w.status();
    assert_eq!(latest(&st)["kind"], "delta", "{st:#}");
    assert_eq!(latest(&st)["operations"], 1, "{st:#}");
    assert_eq!(
        nhs(&w.accounts()["E-ann.ash"])["status"],
        "leaver",
        "{:#?}",
        w.accounts()
    );

    // A watermark from another DC is never used: the next cycle is full, and says why.
    let db = w._tmp.path().join("state/tansync.db");
    let c = rusqlite::Connection::open(&db).expect("open the state database");
    let saved: String = c
        .query_row("SELECT watermark FROM watermark", [], |r| r.get(0))
        .expect("a saved watermark");
    let mut other: Value = serde_json::from_str(&saved).expect("watermark JSON");
    other["server"] = Value::from("CN=NTDS Settings,CN=OTHER-DC,CN=Servers,CN=Elsewhere");
    c.execute(
        "UPDATE watermark SET watermark = ?1",
        [serde_json::to_string(&other).expect("JSON")],
    )
    .expect("move the watermark to another DC");
    let now: String = c
        .query_row("SELECT watermark FROM watermark", [], |r| r.get(0))
        .expect("the watermark");
    assert!(now.contains("OTHER-DC"), "{now}");
    drop(c);
    let r = w.once(&[], 0);
    let st = w.status();
    assert_eq!(latest(&st)["kind"], "full", "{st:#}\n{}", r.stderr);
    assert!(
        latest(&st)["note"]
            .as_str()
            .is_some_and(|n| n.contains("OTHER-DC") || n.contains("another")),
        "{st:#}"
    );
    assert_ne!(st["watermark"]["server"], other["server"], "{st:#}");
}

#[test]
fn a_failed_cycle_does_not_advance_the_watermark() {
    let w = World::new("d-fail", "", "");
    ad::add_users(&w.main(), &[user("Cy Cole", "Cy", "Cole", "Porter")]);
    w.once(&[], 0);
    let before = w.status();
    assert_eq!(latest(&before)["result"], "ok");

    // The directory is unreachable: a port nothing listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    ad::replace(&w.dn("Cy Cole"), "title", "Driver");
    let url = w.dir.url.clone();
    w.edit_config(|t| t.replace(&toml_str(&url), &toml_str(&format!("http://{closed}"))));
    let r = w.once(&[], 1);
    assert!(r.stderr.contains("cycle failed"), "{}", r.stderr);
    let after = w.status();
    assert_eq!(latest(&after)["result"], "failed", "{after:#}");
    assert!(
        latest(&after)["note"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    );
    // The watermark is the one the good cycle saved, not advanced by the failed one.
    assert!(before["watermark"]["position"].is_string(), "{before:#}");
    assert_eq!(after["watermark"], before["watermark"], "{after:#}");

    // Back up: the change is applied by the next cycle.
    w.edit_config(|t| t.replace(&toml_str(&format!("http://{closed}")), &toml_str(&url)));
    w.once(&[], 0);
    assert_eq!(w.accounts()["E-cy.cole"]["title"], "Driver");
}

#[test]
fn one_instance_per_state_dir_sighup_keeps_a_valid_config_and_sigterm_exits_zero() {
    let w = World::new(
        "d-single",
        "",
        "interval_seconds = 3600\nlisten = \"127.0.0.1:0\"",
    );
    ad::add_users(&w.main(), &[user("Dan Dale", "Dan", "Dale", "Porter")]);
    let (mut child, mut log) = start_run(&w.config, None);
    let line = log
        .wait_for(SAFETY_NET, |l| l.contains("cycle finished"))
        .unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    assert!(line.contains("result=\"ok\""), "{line}");

    // Health and metrics are served while it runs (on the port the OS chose).
    // (Logged before the first cycle started, so already read.)
    let text = log.text();
    let serving = text
        .lines()
        .find(|l| l.contains("serving /healthz and /metrics"))
        .unwrap_or_else(|| panic!("no serving line:\n{text}"));
    let addr = serving
        .split("listen=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .expect("the bound address")
        .to_string();
    let health = http_get(&addr, "/healthz");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert!(health.contains("\"status\":\"ok\""), "{health}");
    let metrics = http_get(&addr, "/metrics");
    assert!(
        metrics.contains("tansync_cycles_total{kind=\"full\",result=\"ok\"} 1"),
        "{metrics}"
    );

    // A second instance on the same state directory refuses to start.
    let second = w.run(&["run", "--once"]);
    assert_eq!(second.code, 1, "{}", second.stderr);
    assert!(
        second.stderr.contains("locked by another tansync process"),
        "{}",
        second.stderr
    );

    // SIGHUP with a broken configuration: logged, the old one kept.
    let good = std::fs::read_to_string(&w.config).expect("config");
    std::fs::write(&w.config, format!("{good}\nnot valid toml = = =\n")).expect("break");
    let pid = child.0.id().to_string();
    let signal = |sig: &str| {
        let s = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
        assert!(s.success());
    };
    signal("-HUP");
    log.wait_for(SAFETY_NET, |l| l.contains("configuration not reloaded"))
        .unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    std::fs::write(&w.config, &good).expect("restore");
    signal("-HUP");
    log.wait_for(SAFETY_NET, |l| l.contains("configuration reloaded"))
        .unwrap_or_else(|e| panic!("{e}\n{}", log.text()));

    signal("-TERM");
    let code = wait_bounded(&mut child.0, SAFETY_NET);
    assert_eq!(code, 0, "{}", log.finish(SAFETY_NET));

    // The journal is consistent: no run left running, nothing pending or in flight.
    let h = w.run(&["history", "--format", "json"]);
    assert_eq!(h.code, 0, "{}", h.stderr);
    let runs: Value = serde_json::from_str(&h.stdout).expect("history JSON");
    for r in runs.as_array().expect("runs") {
        assert_ne!(r["status"], "running", "{runs:#}");
        let ops = &r["operations"];
        assert!(
            ops.get("pending").is_none() && ops.get("sending").is_none(),
            "{runs:#}"
        );
    }
    assert_eq!(w.accounts().len(), 1);
}

#[test]
fn standby_writes_nothing() {
    let w = World::new("d-standby", "", "");
    ad::add_users(&w.main(), &[user("Eve Elm", "Eve", "Elm", "Porter")]);
    w.once(&["--standby"], 0);
    let reqs = w.dir.requests();
    assert!(!reqs.is_empty());
    for r in &reqs {
        assert_eq!(r["method"], "GET", "standby wrote: {r:#}");
    }
    assert!(w.accounts().is_empty());
    let st = w.status();
    assert_eq!(latest(&st)["result"], "standby", "{st:#}");
    assert_eq!(latest(&st)["mode"], "standby", "{st:#}");
    assert_eq!(latest(&st)["operations"], 1, "{st:#}");
}

#[test]
fn a_mass_removal_is_held_the_rest_flows_and_an_approval_releases_that_set() {
    // The notification hook writes what it is given to a file.
    let hook = tempfile::tempdir().expect("tempdir");
    let got = hook.path().join("notified.json");
    let w = World::new(
        "d-held",
        "max_removals = 1\npercent_applies_from = 1000",
        &format!(
            "notify_command = [\"/bin/sh\", \"-c\", {}]",
            toml_str(&format!("cat > '{}'", got.display()))
        ),
    );
    ad::add_users(
        &w.main(),
        &[
            user("Fay Fir", "Fay", "Fir", "Porter"),
            user("Gus Gum", "Gus", "Gum", "Porter"),
            user("Hal Hazel", "Hal", "Hazel", "Porter"),
            user("Ida Ivy", "Ida", "Ivy", "Porter"),
        ],
    );
    w.once(&[], 0);
    assert_eq!(w.accounts().len(), 4);

    for cn in ["Gus Gum", "Hal Hazel", "Ida Ivy"] {
        ad::set_enabled(&w.dn(cn), false);
    }
    ad::add_users(&w.main(), &[user("Jo Juniper", "Jo", "Juniper", "Porter")]);
    ad::replace(&w.dn("Fay Fir"), "title", "Driver");
    w.once(&[], 0);
    let acc = w.accounts();
    // Everything else flowed: the joiner is provisioned, the change applied.
    assert_eq!(acc.len(), 5, "{acc:#?}");
    assert_eq!(acc["E-fay.fir"]["title"], "Driver");
    for emp in ["E-gus.gum", "E-hal.hazel", "E-ida.ivy"] {
        assert_eq!(
            nhs(&acc[emp])["status"],
            "active",
            "{emp} removed while held"
        );
    }
    let st = w.status();
    let held = &st["held_removals"];
    assert_eq!(held["count"], 3, "{st:#}");
    let digest = held["digest"].as_str().expect("digest").to_string();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(latest(&st)["held"], 3);
    let note: Value = serde_json::from_str(&std::fs::read_to_string(&got).expect("notified"))
        .expect("notification JSON");
    assert_eq!(note["event"], "held_removals", "{note:#}");
    assert_eq!(note["digest"], digest.as_str(), "{note:#}");
    assert_eq!(note["held"], 3);
    assert_eq!(note["removals"].as_array().map(Vec::len), Some(3));

    // A wrong digest is refused; the shown one approves.
    let r = w.run(&["approve-removals", "sha256:0000"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains(&digest), "{}", r.stderr);
    let r = w.run(&["approve-removals", &digest]);
    assert_eq!(r.code, 0, "{}", r.stderr);

    w.once(&[], 0);
    let acc = w.accounts();
    for emp in ["E-gus.gum", "E-hal.hazel", "E-ida.ivy"] {
        assert_eq!(nhs(&acc[emp])["status"], "leaver", "{emp}: {acc:#?}");
    }
    for emp in ["E-fay.fir", "E-jo.juniper"] {
        assert_eq!(nhs(&acc[emp])["status"], "active", "{emp}");
    }
    let st = w.status();
    assert!(st["held_removals"].is_null(), "{st:#}");
    assert_eq!(latest(&st)["result"], "ok");
    // The hook hears that the set cleared.
    let note: Value = serde_json::from_str(&std::fs::read_to_string(&got).expect("notified"))
        .expect("notification JSON");
    assert_eq!(note["event"], "held_removals_cleared", "{note:#}");
    assert_eq!(note["held"], 0, "{note:#}");
}

/// One plain HTTP GET to `addr` (`127.0.0.1:PORT`), the whole answer as text.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("connect to the health endpoint");
    c.set_read_timeout(Some(SAFETY_NET)).expect("timeout");
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut out = String::new();
    c.read_to_string(&mut out).expect("read the answer");
    out
}

/// SIGTERM in the middle of a cycle's push: nothing new is sent, what was in flight
/// finishes and is journalled, the daemon exits 0; the next cycle sends the rest, and
/// nothing is created twice.
#[test]
fn sigterm_during_a_cycle_leaves_a_consistent_journal_and_the_next_cycle_finishes() {
    let w = World::new("d-term", "", "interval_seconds = 3600");
    // Slow enough that the signal lands mid-push (5 a second, one at a time).
    w.edit_config(|t| t.replace("rate_per_second = 50", "rate_per_second = 5\nburst = 1"));
    let names: Vec<(String, String)> = (0..20)
        .map(|i| (format!("Term{i:02}"), format!("Person{i:02}")))
        .collect();
    let users: Vec<User> = names
        .iter()
        .map(|(g, f)| User {
            cn: g,
            given: g,
            family: f,
            title: "Porter",
            enabled: true,
        })
        .collect();
    ad::add_users(&w.main(), &users);
    let (mut child, mut log) = start_run(
        &w.config,
        Some("warn,tansync::daemon=info,tansync::push=debug"),
    );
    // Act on an event, not a clock: a line per finished operation.
    log.wait_for_nth(3, SAFETY_NET, |l| l.contains("operation finished"))
        .unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    let s = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(s.success());
    let code = wait_bounded(&mut child.0, SAFETY_NET);
    let text = log.finish(SAFETY_NET);
    assert_eq!(code, 0, "{text}");

    // Nothing in flight is left: every journalled operation is done or was never sent.
    let h = w.run(&["history", "--format", "json"]);
    let runs: Value = serde_json::from_str(&h.stdout).expect("history JSON");
    let id = runs[0]["id"].as_i64().expect("run id").to_string();
    let r = w.run(&["history", "--run", &id, "--format", "json"]);
    let journal: Value = serde_json::from_str(&r.stdout).expect("journal JSON");
    let states: Vec<&str> = journal
        .as_array()
        .expect("entries")
        .iter()
        .map(|o| o["state"].as_str().unwrap_or(""))
        .collect();
    assert!(
        states.iter().all(|s| matches!(*s, "done" | "not_sent")),
        "{journal:#}"
    );
    let done = states.iter().filter(|s| **s == "done").count();
    assert!((3..20).contains(&done), "{done} done: {journal:#}");
    assert_eq!(w.accounts().len(), done, "applied = journalled done");

    // The next cycle sends the rest, once each.
    w.once(&[], 0);
    assert_eq!(w.accounts().len(), 20);
    let created = w
        .dir
        .requests()
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/Users" && r["status"] == 201)
        .count();
    assert_eq!(created, 20, "nothing created twice");
    // Personal data stays out of the daemon's log (redaction is on by default).
    for (g, f) in &names {
        assert!(
            !text.contains(g.as_str()) && !text.contains(f.as_str()),
            "{text}"
        );
    }
    assert!(!text.contains(&w.ou), "{text}");
}
