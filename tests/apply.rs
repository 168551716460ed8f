//! End to end, on real servers: the Samba AD DC (started by tests/harness) → `tansync`
//! (the built binary) → the reference NHS Directory (started here, one per test).
//! Each test works in an OU of its own, so the tests run side by side and leave the
//! fixture the other suites read untouched.

mod common;
use common::ad::{self, User};
use common::dirsvc::{DirectoryService, OTHER_ORG, Org, nhs};
use common::gate::Gate;
use common::process::{Lines, wait_bounded};
use common::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::Duration;

const AGENT: &str = "tansync-e2e";

/// How long a test waits for an event (a line, the gate closing, a process ending) before
/// it fails: a safety net against a hang, never what a test waits for.
const SAFETY_NET: Duration = Duration::from_secs(120);

/// The agent's log filter for a run a test acts on mid-way: its default, plus one
/// `operation finished` line per finished operation (`tansync::push` at debug).
const LOG_FINISHED: &str = "warn,ldap3=error,tansync::source::ldap=error,tansync::push=debug";

fn finished(line: &str) -> bool {
    line.contains("operation finished")
}

/// One test's world: an OU in AD with sub-OUs per organisation, a directory, a config.
struct World {
    _tmp: tempfile::TempDir,
    ou: String,
    dir: DirectoryService,
    config: PathBuf,
}

/// Sub-OUs and the ODS code their people belong to. RXN has no sharing agreement.
const OUS: [(&str, &str); 4] = [
    ("Main", "RXA"),
    ("Other", "RXB"),
    ("Small", "RXS"),
    ("NoAgreement", "RXN"),
];

impl World {
    /// `directory_extra` and `push` are TOML appended to the directory's and the agent's
    /// configuration.
    fn new(name: &str, directory_extra: &str, push: &str) -> World {
        World::build(name, &["RXA", "RXB", "RXS"], directory_extra, push)
    }

    /// As `new`, with the organisations the directory itself lets the agent act for
    /// (its server-side copy of the sharing agreements).
    fn build(name: &str, server_orgs: &[&str], directory_extra: &str, push: &str) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ou = ad::fresh_ou(name);
        for (sub, _) in OUS {
            ad::add_ou(&format!("OU={sub},{ou}"));
        }
        let registry = [
            Org {
                ods: "RXA",
                kind: "trust",
                open: true,
                cap: 50,
            },
            Org {
                ods: "RXB",
                kind: "trust",
                open: true,
                cap: 50,
            },
            Org {
                ods: "RXS",
                kind: "care_provider",
                open: true,
                cap: 2,
            },
            Org {
                ods: "RXN",
                kind: "gp",
                open: true,
                cap: 50,
            },
        ];
        let dir = DirectoryService::start(AGENT, server_orgs, &registry, directory_extra);

        let mut filters = String::new();
        for (sub, ods) in OUS {
            filters.push_str(&format!(
                "[[rule]]\nid = \"{}\"\naction = \"include\"\nunder = [{}]\nods = {{ constant = \"{ods}\" }}\n\n",
                sub.to_lowercase(),
                toml_str(&format!("OU={sub},{ou}"))
            ));
        }
        std::fs::write(tmp.path().join("filters.toml"), filters).expect("filters");
        let mut agreements = String::from(
            "[partnering]\nreference = \"PA-E2E\"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\n\n",
        );
        for ods in ["RXA", "RXB", "RXS"] {
            agreements.push_str(&format!(
                "[[sharing]]\nods_code = \"{ods}\"\nreference = \"SA-{ods}\"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\noperations = [\"provision\", \"update\", \"remove\", \"move\", \"restore\", \"join\"]\nattributes = [\"given_name\", \"family_name\", \"display_name\", \"job_title\", \"department\", \"site\", \"telephone\", \"mobile\", \"employee_id\"]\n\n"
            ));
        }
        std::fs::write(tmp.path().join("agreements.toml"), agreements).expect("agreements");

        let text = samba_agent_config(
            AGENT,
            &ou,
            &dir.url,
            &dir.token_file,
            &format!("[push]\n{push}\n"),
        );
        let config = write_config(tmp.path(), &text);
        World {
            _tmp: tmp,
            ou,
            dir,
            config,
        }
    }

    /// Add a line to the agent's `[target]` section.
    fn target_option(&self, line: &str) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let token_line = format!("token_file = {}", q(&self.dir.token_file));
        assert!(text.contains(&token_line));
        let text = text.replace(&token_line, &format!("{token_line}\n{line}"));
        std::fs::write(&self.config, text).expect("write config");
    }

    /// Point the agent at `url` instead of the directory (a [`Gate`] in front of it), or
    /// back at the directory.
    fn point_target_at(&self, url: &str) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        let target = text.find("[target]").expect("[target] section");
        let (head, tail) = text.split_at(target);
        let line = tail
            .lines()
            .find(|l| l.starts_with("url = "))
            .expect("target url")
            .to_string();
        let tail = tail.replacen(&line, &format!("url = {}", toml_str(url)), 1);
        std::fs::write(&self.config, format!("{head}{tail}")).expect("write config");
    }

    /// Start `tansync sync` with its stdout and stderr piped, logging a line per
    /// finished operation (see [`LOG_FINISHED`]).
    fn spawn_sync(&self) -> Child {
        std::process::Command::new(env!("CARGO_BIN_EXE_tansync"))
            .arg("--config")
            .arg(&self.config)
            .arg("sync")
            .env_remove("TANSYNC_CONFIG")
            .env("TANSYNC_LOG", LOG_FINISHED)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start sync")
    }

    fn sub(&self, sub: &str) -> String {
        format!("OU={sub},{}", self.ou)
    }

    fn dn(&self, sub: &str, cn: &str) -> String {
        format!("CN={cn},{}", self.sub(sub))
    }

    fn run(&self, args: &[&str]) -> Run {
        tansync(&self.config, args)
    }

    /// `tansync sync`, which must succeed.
    fn sync(&self) -> Run {
        let r = self.run(&["sync"]);
        assert_eq!(
            r.code,
            0,
            "sync failed:\n{}\n{}\ndirectory: {}",
            r.stdout,
            r.stderr,
            self.dir.stderr()
        );
        r
    }

    /// The plan as JSON (exit 0 or 2).
    fn plan(&self) -> Value {
        let r = self.run(&["plan", "--format", "json"]);
        assert!(r.code == 0 || r.code == 2, "plan: {}", r.stderr);
        let v = serde_json::from_str(&r.stdout).expect("plan JSON");
        plan_schema::assert_valid_plan(&v);
        v
    }

    /// The directory's accounts by userName (given.family style, from the fixture's
    /// sAMAccountName via employee id).
    fn accounts(&self) -> BTreeMap<String, Value> {
        let mut out = BTreeMap::new();
        for u in self.dir.users() {
            let emp = u[tansync::scim::ENTERPRISE_SCHEMA]["employeeNumber"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(
                out.insert(emp.clone(), u).is_none(),
                "two accounts for {emp}"
            );
        }
        out
    }

    fn posts(&self) -> Vec<Value> {
        self.dir
            .requests()
            .into_iter()
            .filter(|r| r["method"] == "POST" && r["path"] == "/Users")
            .collect()
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

fn count(plan: &Value, kind: &str) -> u64 {
    plan["summary"][kind].as_u64().unwrap_or(u64::MAX)
}

#[test]
fn provision_update_leaver_move_restore_round_trip() {
    let w = World::new("e2e-life", "", "rate_per_second = 50\nburst = 10");
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Ann Ash", "Ann", "Ash", "Staff Nurse"),
            user("Ben Birch", "Ben", "Birch", "Porter"),
            user("Cai Cedar", "Cai", "Cedar", "Pharmacist"),
            user("Siân Ash", "Siân", "Ash", "Midwife"),
        ],
    );
    ad::add_users(
        &w.sub("Other"),
        &[user("Dee Dogwood", "Dee", "Dogwood", "Physiotherapist")],
    );

    // First sync provisions everyone, with addresses allocated by the directory.
    let p = w.plan();
    assert_eq!(count(&p, "provision"), 5, "{p:#}");
    let r = w.sync();
    assert!(r.stdout.contains("5 applied, 0 failed"), "{}", r.stdout);
    let acc = w.accounts();
    assert_eq!(acc.len(), 5);
    assert_eq!(nhs(&acc["E-ann.ash"])["odsCode"], "RXA");
    assert_eq!(nhs(&acc["E-dee.dogwood"])["odsCode"], "RXB");
    assert_eq!(nhs(&acc["E-ann.ash"])["managedBy"], AGENT);
    assert_eq!(acc["E-siân.ash"]["name"]["givenName"], "Siân");
    let mail = |u: &Value| u["emails"][0]["value"].as_str().unwrap_or("").to_string();
    assert_eq!(mail(&acc["E-ann.ash"]), "ann.ash@nhs.net");
    assert_eq!(mail(&acc["E-siân.ash"]), "sian.ash@nhs.net");
    for u in acc.values() {
        assert_eq!(u["externalId"].as_str().map(str::len), Some(36), "{u}");
    }

    // Second sync: nothing to do, nothing sent but reads.
    let before = w.dir.requests().len();
    let p = w.plan();
    assert_eq!(p["operations"].as_array().map(Vec::len), Some(0), "{p:#}");
    let r = w.run(&["plan"]);
    assert_eq!(r.code, 0, "no changes → exit 0: {}", r.stdout);
    w.sync();
    let writes = w.dir.requests()[before..]
        .iter()
        .filter(|r| r["method"] != "GET")
        .count();
    assert_eq!(writes, 0, "a no-op sync must not write");

    // An attribute change in AD → update of that field only.
    ad::replace(&w.dn("Main", "Ann Ash"), "title", "Senior Staff Nurse");
    let p = w.plan();
    assert_eq!(count(&p, "update"), 1, "{p:#}");
    let op = &p["operations"][0];
    assert_eq!(op["changes"][0]["field"], "job_title");
    assert_eq!(op["changes"][0]["old"], "Staff Nurse");
    assert_eq!(op["changes"][0]["new"], "Senior Staff Nurse");
    w.sync();
    assert_eq!(w.accounts()["E-ann.ash"]["title"], "Senior Staff Nurse");

    // Disabled in AD → leaver.
    ad::set_enabled(&w.dn("Main", "Ben Birch"), false);
    let p = w.plan();
    assert_eq!(count(&p, "remove"), 1, "{p:#}");
    assert_eq!(p["operations"][0]["reason"], "disabled");
    w.sync();
    let ben = &w.accounts()["E-ben.birch"];
    assert_eq!(nhs(ben)["status"], "leaver", "{ben}");
    assert!(nhs(ben)["leaverSince"].is_string(), "{ben}");

    // Moved to the OU of another organisation → move (joiner), same account.
    let cai_id = w.accounts()["E-cai.cedar"]["id"].clone();
    ad::move_to(&w.dn("Main", "Cai Cedar"), &w.sub("Other"));
    let p = w.plan();
    assert_eq!(count(&p, "move"), 1, "{p:#}");
    assert_eq!(p["operations"][0]["from_ods_code"], "RXA");
    assert_eq!(p["operations"][0]["ods_code"], "RXB");
    w.sync();
    let cai = &w.accounts()["E-cai.cedar"];
    assert_eq!(nhs(cai)["odsCode"], "RXB");
    assert_eq!(cai["id"], cai_id, "a move keeps the account");

    // Re-enabled within the window → restore.
    ad::set_enabled(&w.dn("Main", "Ben Birch"), true);
    let p = w.plan();
    assert_eq!(count(&p, "restore"), 1, "{p:#}");
    w.sync();
    assert_eq!(nhs(&w.accounts()["E-ben.birch"])["status"], "active");

    // And the steady state again.
    let p = w.plan();
    assert_eq!(p["operations"].as_array().map(Vec::len), Some(0), "{p:#}");
    assert_eq!(w.accounts().len(), 5);
}

#[test]
fn a_reviewed_plan_is_applied_exactly_and_a_stale_one_refused() {
    let w = World::new("e2e-plan", "", "rate_per_second = 50");
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Eve Elm", "Eve", "Elm", "Ward Clerk"),
            user("Fay Fir", "Fay", "Fir", "Registrar"),
        ],
    );
    let plan_file = w.config.with_file_name("plan.json");
    let pf = plan_file.to_str().expect("path");
    let r = w.run(&["plan", "--format", "json", "--out", pf]);
    assert_eq!(r.code, 2, "{}", r.stderr);

    // The source moves on after review: the plan is refused and nothing is sent.
    ad::add_users(&w.sub("Main"), &[user("Gus Gum", "Gus", "Gum", "Porter")]);
    let r = w.run(&["apply", "--plan", pf]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("stale"), "{}", r.stderr);
    assert!(w.posts().is_empty(), "a refused plan sends nothing");

    // A fresh plan, reviewed and applied as it is.
    let r = w.run(&["plan", "--format", "json", "--out", pf]);
    assert_eq!(r.code, 2);
    let r = w.run(&["apply", "--plan", pf]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("3 applied"), "{}", r.stdout);
    assert_eq!(w.accounts().len(), 3);
    // Applying the same plan again is refused: the directory has moved on.
    let r = w.run(&["apply", "--plan", pf]);
    assert_eq!(r.code, 1);
    assert_eq!(w.posts().len(), 3);
}

#[test]
fn over_cap_and_no_agreement_are_blocked_and_never_sent() {
    let w = World::new("e2e-gate", "", "rate_per_second = 50");
    ad::add_users(
        &w.sub("Small"),
        &[
            user("Hal Hazel", "Hal", "Hazel", "Carer"),
            user("Ida Ivy", "Ida", "Ivy", "Carer"),
            user("Jon Juniper", "Jon", "Juniper", "Carer"),
        ],
    );
    ad::add_users(
        &w.sub("NoAgreement"),
        &[
            user("Kim Kauri", "Kim", "Kauri", "GP"),
            user("Lee Larch", "Lee", "Larch", "GP"),
        ],
    );
    let p = w.plan();
    assert_eq!(count(&p, "provision"), 2, "{p:#}");
    let reasons: Vec<(String, String)> = p["blocked"]
        .as_array()
        .expect("blocked")
        .iter()
        .map(|b| {
            (
                b["ods_code"].as_str().unwrap_or("").to_string(),
                b["reason"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    assert_eq!(
        reasons.iter().filter(|r| r.1 == "account_cap").count(),
        1,
        "{reasons:?}"
    );
    assert_eq!(
        reasons
            .iter()
            .filter(|r| r.0 == "RXN" && r.1 == "no_sharing_agreement")
            .count(),
        2,
        "{reasons:?}"
    );

    w.sync();
    // The directory saw exactly the two permitted creates, all for RXS.
    let posts = w.posts();
    assert_eq!(posts.len(), 2, "{posts:?}");
    assert!(posts.iter().all(|r| r["status"] == 201), "{posts:?}");
    let acc = w.accounts();
    assert_eq!(acc.len(), 2);
    assert!(acc.values().all(|u| nhs(u)["odsCode"] == "RXS"));
    // A second run still sends nothing for them.
    w.sync();
    assert_eq!(w.posts().len(), 2);
}

/// Check the pace of `entries` (the directory's request log, oldest first) against a
/// token bucket of `rate` per second and `burst`, from the directory's own clock (`at_ms`,
/// when each request reached it): at most `burst + rate × (T + spread)` in any T seconds.
/// `spread` allows for requests that left evenly but arrived bunched, delayed unevenly on
/// the way. Upper bounds only: a slow machine spaces requests out, it cannot fail this.
fn assert_paced(entries: &[Value], rate: f64, burst: f64, spread: f64) {
    let times: Vec<i64> = entries
        .iter()
        .map(|r| r["at_ms"].as_i64().expect("at_ms"))
        .collect();
    for (i, first) in times.iter().enumerate() {
        for (j, last) in times.iter().enumerate().skip(i + 1) {
            let n = (j - i + 1) as f64;
            let secs = (last - first) as f64 / 1000.0;
            assert!(
                n <= burst + rate * (secs + spread),
                "{n} requests reached the directory within {secs:.3} s (its clock) with \
                 the agent's limit at {rate}/s, burst {burst}: at most {} allowed; \
                 arrival times (ms): {times:?}",
                burst + rate * (secs + spread)
            );
        }
    }
}

fn many(prefix: &str, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("{prefix} P{i:03}"), format!("P{i:03}")))
        .collect()
}

fn add_many(w: &World, sub: &str, names: &[(String, String)]) {
    let users: Vec<User> = names
        .iter()
        .map(|(cn, fam)| User {
            cn,
            given: cn.split(' ').next().unwrap_or("X"),
            family: fam,
            title: "Healthcare Assistant",
            enabled: true,
        })
        .collect();
    ad::add_users(&w.sub(sub), &users);
}

#[test]
fn the_push_rate_limit_is_honoured() {
    let w = World::new(
        "e2e-rate",
        "",
        "rate_per_second = 10\nburst = 1\nconcurrency = 4",
    );
    let names = many("Rate", 30);
    add_many(&w, "Main", &names);
    w.sync();
    let posts = w.posts();
    assert_eq!(posts.len(), 30);
    // 10 per second with a burst of one: a token bucket lets at most burst + rate × T
    // requests leave in any T seconds — 11 in a second, all 30 over no less than 2.9 s —
    // with half a second allowed for uneven delays on the way to the directory. The
    // times are the directory's own record of when each create reached it; four at a
    // time unpaced would break this many times over.
    assert_paced(&posts, 10.0, 1.0, 0.5);
}

#[test]
fn rate_limits_and_faults_still_apply_every_operation_exactly_once() {
    // The directory answers 429 above 20/s (burst 5), fails 20% of requests with 503
    // and drops 10% of connections; the agent pushes faster than it accepts.
    let w = World::new(
        "e2e-faults",
        "[rate_limit]\nrequests_per_second = 20\nburst = 5\n\n[faults]\nerror_rate = 0.2\ndrop_rate = 0.1\nseed = 7\n",
        "rate_per_second = 100\nburst = 20\nconcurrency = 8\nmax_attempts = 12\nbackoff_base_ms = 20\nbackoff_max_secs = 2",
    );
    let names = many("Fault", 40);
    add_many(&w, "Main", &names);
    w.sync();
    let log = w.dir.requests();
    let statuses = |s: u64| log.iter().filter(|r| r["status"] == s).count();
    assert!(statuses(429) > 0, "the test must provoke 429s");
    assert!(statuses(503) > 0, "the test must provoke 503s");
    assert!(statuses(0) > 0, "the test must drop connections");
    let created: Vec<&Value> = log
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/Users" && r["status"] == 201)
        .collect();
    assert_eq!(created.len(), 40, "exactly one successful create each");
    assert_eq!(statuses(409), 0, "no create was sent twice");
    assert_eq!(w.accounts().len(), 40);
    let p = w.plan();
    assert_eq!(p["operations"].as_array().map(Vec::len), Some(0), "{p:#}");
}

#[test]
fn kill_9_during_apply_then_rerun_loses_and_duplicates_nothing() {
    // A gate in front of the directory lets six creates through and then holds every
    // request: the sixth is carried out but its answer withheld. The agent is killed once
    // it has finished the five answered ones (its `operation finished` lines), so the
    // directory then holds exactly five accounts the agent knows of and one it cannot,
    // and the agent has another create in flight that never arrives.
    const LET_THROUGH: usize = 6;
    let w = World::new("e2e-kill", "", "rate_per_second = 20\nconcurrency = 2");
    let names = many("Kill", 30);
    add_many(&w, "Main", &names);
    let gate = Gate::start(&w.dir.url, LET_THROUGH, true);
    w.point_target_at(&gate.url);
    let mut child = w.spawn_sync();
    let stdout = Lines::new(child.stdout.take().expect("piped stdout"));
    let mut stderr = Lines::new(child.stderr.take().expect("piped stderr"));
    gate.wait(SAFETY_NET, |g| g.withheld);
    if let Err(e) = stderr.wait_for_nth(LET_THROUGH - 1, SAFETY_NET, finished) {
        panic!(
            "{e}\nstdout:\n{}\nstderr:\n{}",
            stdout.text(),
            stderr.text()
        );
    }
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "sync ended before it could be killed:\n{}",
        stderr.text()
    );
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // What the gate holds is discarded, never sent on; the rerun talks to the directory.
    drop(gate);
    w.point_target_at(&w.dir.url);
    assert_eq!(
        w.accounts().len(),
        LET_THROUGH,
        "five answered creates and the one whose answer was withheld"
    );

    let r = w.sync();
    assert!(
        r.stderr.contains("reconciled"),
        "the rerun settles the interrupted run: {}",
        r.stderr
    );
    let acc = w.accounts();
    assert_eq!(acc.len(), 30, "nothing lost");
    let created = w.posts().iter().filter(|r| r["status"] == 201).count();
    assert_eq!(created, 30, "nothing created twice");
    let log = w.dir.requests();
    assert!(
        log.iter().all(|r| r["status"] != 409),
        "no duplicate create sent"
    );
    // The history shows the killed run as interrupted, and the rerun.
    let r = w.run(&["history", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let runs: Value = serde_json::from_str(&r.stdout).expect("history JSON");
    assert_eq!(runs[0]["status"], "ok", "{runs:#}");
    assert_eq!(runs[1]["status"], "interrupted", "{runs:#}");
    let p = w.plan();
    assert_eq!(p["operations"].as_array().map(Vec::len), Some(0), "{p:#}");
    // The audit trail is whole, and holds each create applied exactly once: the killed
    // run's answered ones, the one whose answer was withheld (settled by the rerun's
    // look-up), the rerun's.
    let r = w.run(&["audit", "verify"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = w.run(&["audit", "export"]);
    let applied: Vec<String> = r
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line"))
        .filter(|v| v["kind"] == "provision" && v["outcome"] == "applied")
        .map(|v| v["external_id"].as_str().unwrap_or("").to_string())
        .collect();
    let distinct: std::collections::BTreeSet<&String> = applied.iter().collect();
    assert_eq!((applied.len(), distinct.len()), (30, 30), "{}", r.stdout);
}

#[test]
fn write_back_puts_the_allocated_address_into_ad() {
    let pw_file = env("TANSYNC_TEST_SAMBA_PASSWORD_FILE");
    let write_back = format!(
        "rate_per_second = 50\n\n[write_back]\nattribute = \"mail\"\nbind_dn = {}\nbind_password_file = {}",
        toml_str(&env("TANSYNC_TEST_SAMBA_BIND_DN")),
        toml_str(&pw_file)
    );
    let w = World::new("e2e-wb", "", &write_back);
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Mo Maple", "Mo", "Maple", "Nurse"),
            user("Zoë Maple", "Zoë", "Maple", "Nurse"),
        ],
    );
    let r = w.sync();
    assert!(
        r.stdout
            .contains("2 of 2 address(es) written to AD attribute mail"),
        "{}",
        r.stdout
    );
    let acc = w.accounts();
    for (cn, emp) in [("Mo Maple", "E-mo.maple"), ("Zoë Maple", "E-zoë.maple")] {
        let allocated = acc[emp]["emails"][0]["value"].as_str().expect("address");
        assert_eq!(ad::values(&w.dn("Main", cn), "mail"), [allocated], "{cn}");
    }
    // The next run finds AD and the directory agreeing: no changes, nothing to write.
    let p = w.plan();
    assert_eq!(p["operations"].as_array().map(Vec::len), Some(0), "{p:#}");
    let r = w.sync();
    assert!(
        r.stdout.contains("0 of 0 address(es) written"),
        "{}",
        r.stdout
    );
    // An address changed in AD by hand is put right: planned (the plan's write_back
    // list, with the old and new value), then written by apply and journalled.
    let mo = acc["E-mo.maple"]["emails"][0]["value"]
        .as_str()
        .expect("address");
    ad::replace(&w.dn("Main", "Mo Maple"), "mail", "mo@example.org");
    let p = w.plan();
    let wb = p["write_back"].as_array().expect("write_back list");
    assert_eq!(wb.len(), 1, "{p:#}");
    assert_eq!(wb[0]["dn"], w.dn("Main", "Mo Maple"), "{p:#}");
    assert_eq!(wb[0]["attribute"], "mail");
    assert_eq!(wb[0]["old"], "mo@example.org");
    assert_eq!(wb[0]["new"], mo);
    let r = w.sync();
    assert!(
        r.stdout.contains("1 of 1 address(es) written"),
        "{}",
        r.stdout
    );
    assert_eq!(ad::values(&w.dn("Main", "Mo Maple"), "mail"), [mo]);
    let r = w.run(&["history", "--format", "json"]);
    let runs: Value = serde_json::from_str(&r.stdout).expect("history JSON");
    let last = runs[0]["id"].as_i64().expect("run id").to_string();
    let r = w.run(&["history", "--run", &last, "--format", "json"]);
    let journal: Value = serde_json::from_str(&r.stdout).expect("journal JSON");
    let writes: Vec<&Value> = journal
        .as_array()
        .expect("entries")
        .iter()
        .filter(|o| o["kind"] == "write_back")
        .collect();
    assert_eq!(writes.len(), 1, "{journal:#}");
    assert_eq!(writes[0]["state"], "done", "{journal:#}");

    // Write-back binds with its own credential: a wrong write password fails the
    // write-back (and the run's exit code) and names that account, while the read
    // bind (the source's credential) still works.
    let wrong = w.config.with_file_name("wrong-write.pw");
    write_secret(&wrong, "not-the-password");
    let text = std::fs::read_to_string(&w.config).expect("config");
    let (head, tail) = text.split_at(text.find("[write_back]").expect("write_back section"));
    std::fs::write(
        &w.config,
        format!(
            "{head}{}",
            tail.replace(&toml_str(&pw_file), &toml_str(&wrong.display().to_string()))
        ),
    )
    .expect("config");
    ad::replace(&w.dn("Main", "Mo Maple"), "mail", "mo@example.org");
    let r = w.run(&["sync"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("0 of 1 address(es) written")
            && r.stdout.contains(&format!(
                "cannot connect to AD as {}",
                env("TANSYNC_TEST_SAMBA_BIND_DN")
            )),
        "{}",
        r.stdout
    );
}

#[test]
fn lost_responses_never_duplicate_a_create_or_lose_an_update() {
    // A quarter of the requests are carried out and then answered by a dropped
    // connection, a tenth carried out and then not answered until long after the whole
    // test (the hold outlasts it), so only the agent's own 1 s timeout ends them: the
    // agent cannot tell whether its write landed, so it must look before resending.
    let w = World::new(
        "e2e-lost",
        "[faults]\nlost_response_rate = 0.25\nstall_rate = 0.1\nstall_ms = 3600000\nseed = 11\n",
        "rate_per_second = 100\nconcurrency = 4\nmax_attempts = 12\nbackoff_base_ms = 20\nbackoff_max_secs = 1",
    );
    w.target_option("timeout_secs = 1");
    let names = many("Lost", 24);
    add_many(&w, "Main", &names);
    w.sync();
    let log = w.dir.requests();
    let lost = |r: &&Value| {
        r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("response lost"))
    };
    let created: Vec<&Value> = log
        .iter()
        .filter(|r| r["method"] == "POST" && r["path"] == "/Users" && r["status"] == 201)
        .collect();
    assert!(
        created.iter().any(lost),
        "the test must lose some create responses"
    );
    let stalled = |r: &&Value| {
        r["detail"]
            .as_str()
            .is_some_and(|d| d.contains("answer held"))
    };
    assert!(
        created.iter().any(stalled),
        "the test must time out on some creates"
    );
    assert_eq!(created.len(), 24, "each create carried out once");
    assert!(
        log.iter().all(|r| r["status"] != 409),
        "no create resent blindly"
    );
    assert_eq!(w.accounts().len(), 24);

    // Updates whose answers are lost: applied once each, the plan then settles.
    for (cn, _) in names.iter().take(12) {
        ad::replace(&w.dn("Main", cn), "title", "Senior Healthcare Assistant");
    }
    let before = w.dir.requests().len();
    w.sync();
    let patches: Vec<Value> = w.dir.requests()[before..]
        .iter()
        .filter(|r| r["method"] == "PATCH")
        .cloned()
        .collect();
    assert!(
        patches.iter().any(|r| lost(&r)),
        "the test must lose some update responses"
    );
    let acc = w.accounts();
    let senior = acc
        .values()
        .filter(|u| u["title"] == "Senior Healthcare Assistant")
        .count();
    assert_eq!(senior, 12);
    let p = w.plan();
    assert_eq!(p["operations"].as_array().map(Vec::len), Some(0), "{p:#}");
}

#[test]
fn an_object_failing_run_after_run_is_quarantined_and_the_rest_go_on() {
    // Another agent already holds an account anchored on Oli's objectGUID, in an
    // organisation this agent cannot see: the directory refuses Oli's create (one person,
    // one account) run after run, while Nia goes through.
    let w = World::new(
        "e2e-quar",
        "",
        "rate_per_second = 50\nquarantine_after = 2\nmax_attempts = 2\nbackoff_base_ms = 10",
    );
    ad::add_users(
        &w.sub("Main"),
        &[user("Nia Nutmeg", "Nia", "Nutmeg", "Nurse")],
    );
    ad::add_users(&w.sub("Other"), &[user("Oli Oak", "Oli", "Oak", "Nurse")]);
    let p = w.plan();
    let oli = p["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .find(|o| o["ods_code"] == "RXB")
        .expect("Oli's provision")["external_id"]
        .as_str()
        .expect("anchor")
        .to_string();
    let (status, body) = w.dir.post_as_other(
        "/Users",
        &serde_json::json!({
            "schemas": [tansync::scim::USER_SCHEMA, tansync::scim::NHS_SCHEMA],
            "externalId": oli,
            "userName": "oli.oak",
            "name": {"givenName": "Oli", "familyName": "Oak"},
            tansync::scim::NHS_SCHEMA: {"odsCode": OTHER_ORG}
        }),
    );
    assert_eq!(status, 201, "{body}");

    for run in 1..=2 {
        let r = w.run(&["sync"]);
        assert_eq!(r.code, 1, "run {run}: a failure is exit 1: {}", r.stdout);
        assert!(
            r.stdout.contains(&format!("failed provision RXB {oli}")),
            "{}",
            r.stdout
        );
        assert!(r.stdout.contains("HTTP 409"), "{}", r.stdout);
    }
    assert_eq!(w.accounts().len(), 1, "the others went on");
    let posts = w.posts().len();

    // Third run: quarantined, reported, not sent.
    let r = w.run(&["sync"]);
    assert!(
        r.stderr
            .contains(&format!("{oli}: quarantined after 2 failed runs")),
        "{}",
        r.stderr
    );
    assert_eq!(w.posts().len(), posts, "a quarantined object is not sent");

    // Cleared (say, after the other account was dealt with): tried again.
    let r = w.run(&["quarantine", "clear", &oli]);
    assert_eq!(r.code, 0, "{}", r.stdout);
    let r = w.run(&["sync"]);
    assert_eq!(r.code, 1);
    assert!(w.posts().len() > posts, "tried again after clearing");
}

#[test]
fn a_run_stops_when_failures_look_systemic() {
    // The directory goes down once the creates have begun: every later request fails,
    // and the agent stops instead of failing all 40 one by one. A gate in front of it
    // lets the first create through and holds the second, so the directory is stopped
    // at that exact point of the run, however fast the machine is.
    let mut w = World::new(
        "e2e-sys",
        "",
        "rate_per_second = 50\nconcurrency = 1\nmax_attempts = 1",
    );
    let names = many("Sys", 40);
    add_many(&w, "Main", &names);
    let gate = Gate::start(&w.dir.url, 1, false);
    w.point_target_at(&gate.url);
    let mut child = w.spawn_sync();
    let mut stdout = Lines::new(child.stdout.take().expect("piped stdout"));
    let mut stderr = Lines::new(child.stderr.take().expect("piped stderr"));
    gate.wait(SAFETY_NET, |g| g.held > 0);
    if let Err(e) = stderr.wait_for_nth(1, SAFETY_NET, finished) {
        panic!(
            "{e}\nstdout:\n{}\nstderr:\n{}",
            stdout.text(),
            stderr.text()
        );
    }
    // The first create is done and recorded, the second waits at the gate: now the
    // directory goes down (the gate ends its connections and cannot open new ones).
    w.dir.kill();
    let code = wait_bounded(&mut child, SAFETY_NET);
    let r = Run {
        code,
        stdout: stdout.finish(SAFETY_NET),
        stderr: stderr.finish(SAFETY_NET),
    };
    drop(gate);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("stopping (failures look systemic)"),
        "{}",
        r.stdout
    );
    let counts: Vec<usize> = r
        .stdout
        .lines()
        .find(|l| l.starts_with("apply:"))
        .expect("summary line")
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .take(3)
        .collect();
    let (applied, failed, not_sent) = (counts[0], counts[1], counts[2]);
    assert_eq!(applied + failed + not_sent, 40, "{}", r.stdout);
    assert_eq!(applied, 1, "the one create before the outage: {}", r.stdout);
    assert!(failed >= 8, "{}", r.stdout);
    assert!(not_sent > 0, "the rest was held back: {}", r.stdout);
}

#[test]
fn an_organisation_the_directory_refuses_is_blocked_and_the_rest_go_on() {
    // The agent's agreements file lists RXB, but the directory holds no agreement for it
    // (it has expired there first): RXB fails closed, RXA goes on.
    let w = World::build("e2e-refused", &["RXA", "RXS"], "", "rate_per_second = 50");
    ad::add_users(&w.sub("Main"), &[user("Pam Pine", "Pam", "Pine", "Nurse")]);
    ad::add_users(
        &w.sub("Other"),
        &[user("Quin Quince", "Quin", "Quince", "Nurse")],
    );
    let p = w.plan();
    assert_eq!(count(&p, "provision"), 1, "{p:#}");
    let b = &p["blocked"][0];
    assert_eq!(b["ods_code"], "RXB", "{p:#}");
    assert_eq!(b["reason"], "no_sharing_agreement");
    assert!(
        b["detail"]
            .as_str()
            .is_some_and(|d| d.contains("refused access to RXB")),
        "{b}"
    );
    w.sync();
    let posts = w.posts();
    assert_eq!(posts.len(), 1, "nothing sent for RXB: {posts:?}");
    assert_eq!(w.accounts().len(), 1);
}

#[test]
fn the_directory_over_verified_tls_and_a_wrong_ca_refused() {
    let pki = std::path::PathBuf::from(env("TANSYNC_TEST_WORKDIR")).join("pki");
    let tls = format!(
        "[tls]\ncert_file = {}\nkey_file = {}\n",
        q(pki.join("server-chain.pem")),
        q(pki.join("server.key"))
    );
    let w = World::new("e2e-tls", &tls, "rate_per_second = 50");
    assert!(w.dir.url.starts_with("https://127.0.0.1:"), "{}", w.dir.url);
    ad::add_users(
        &w.sub("Main"),
        &[user("Ray Rowan", "Ray", "Rowan", "Nurse")],
    );

    // With the wrong CA the directory's certificate is not trusted: no plan.
    let text = std::fs::read_to_string(&w.config).expect("config");
    w.target_option(&format!("ca_file = {}", q(env("TANSYNC_TEST_WRONG_CA"))));
    let r = w.run(&["plan"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains("certificate") || r.stderr.contains("UnknownIssuer"),
        "{}",
        r.stderr
    );

    // With the right CA: planned, applied, read back.
    std::fs::write(&w.config, text).expect("write");
    w.target_option(&format!("ca_file = {}", q(env("TANSYNC_TEST_CA"))));
    w.sync();
    assert_eq!(w.accounts().len(), 1);
    assert!(
        w.dir
            .requests()
            .iter()
            .filter(|r| r["method"] == "POST")
            .all(|r| r["status"] == 201)
    );
}

#[test]
fn held_mass_removals_are_applied_only_with_approval_of_that_plan() {
    let w = World::new(
        "e2e-mass",
        "",
        "rate_per_second = 50\n\n[safety]\nmax_removals = 2",
    );
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Sam Sage", "Sam", "Sage", "Nurse"),
            user("Tia Teak", "Tia", "Teak", "Nurse"),
            user("Uma Umber", "Uma", "Umber", "Nurse"),
            user("Vic Vine", "Vic", "Vine", "Nurse"),
        ],
    );
    w.sync();
    for cn in ["Sam Sage", "Tia Teak", "Uma Umber"] {
        ad::set_enabled(&w.dn("Main", cn), false);
    }
    let plan_file = w.config.with_file_name("plan.json");
    let pf = plan_file.to_str().expect("path");
    let r = w.run(&["plan", "--format", "json", "--out", pf]);
    let p: Value = serde_json::from_str(&r.stdout).expect("plan");
    plan_schema::assert_valid_plan(&p);
    let held: Vec<&Value> = p["blocked"]
        .as_array()
        .expect("blocked")
        .iter()
        .filter(|b| b["reason"] == "mass_change_threshold")
        .collect();
    assert_eq!(held.len(), 3, "{p:#}");
    let fp = p["fingerprint"].as_str().expect("fingerprint").to_string();
    let leavers = |w: &World| {
        w.accounts()
            .values()
            .filter(|u| nhs(u)["status"] == "leaver")
            .count()
    };

    // Not approved: nothing removed, and the operator is told how to approve.
    let r = w.run(&["apply", "--plan", pf]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains(&format!("--approve-removals {fp}")),
        "{}",
        r.stderr
    );
    assert_eq!(leavers(&w), 0);

    // An approval names one plan: another fingerprint is refused, nothing sent.
    let r = w.run(&["apply", "--plan", pf, "--approve-removals", "sha256:0000"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("approvals hold for one plan only"),
        "{}",
        r.stderr
    );
    assert_eq!(leavers(&w), 0);

    // Approved for this plan: exactly the three held removals are applied.
    let r = w.run(&["apply", "--plan", pf, "--approve-removals", &fp]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(leavers(&w), 3);
    let p = w.plan();
    assert_eq!(p["operations"].as_array().map(Vec::len), Some(0), "{p:#}");
}

#[test]
fn check_reports_the_directory_and_what_it_refuses() {
    let w = World::build("e2e-check", &["RXA", "RXS"], "", "rate_per_second = 50");
    let r = w.run(&["check"]);
    assert_eq!(
        r.code, 1,
        "a refused organisation is a problem: {}",
        r.stdout
    );
    assert!(r.stdout.contains("scim"), "{}", r.stdout);
    assert!(
        r.stdout
            .contains("the directory refuses RXB's accounts although a sharing agreement lists it"),
        "{}",
        r.stdout
    );
    let w = World::new("e2e-check2", "", "rate_per_second = 50");
    let r = w.run(&["check"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // The deployment lines: the state directory, the secrets, the clock against the DC
    // (Samba's currentTime), the CA file and the DC's own certificate (the test PKI's,
    // valid for a year).
    for line in [
        "✓ state directory: ",
        "✓ secrets: every secret file is a regular file readable by its owner only",
        "✓ clock: ",
        "✓ source CA file: ",
        "✓ source server certificate: 127.0.0.1:636: valid until ",
    ] {
        assert!(r.stdout.contains(line), "{line:?} missing:\n{}", r.stdout);
    }
    assert!(
        r.stdout
            .contains("the domain controller (Kerberos allows 300 s)"),
        "{}",
        r.stdout
    );

    // A CA bundle holding a certificate that expires in 10 days (beside the real CA, so
    // the DC still verifies): a problem that names it and says when.
    let soon = w._tmp.path().join("soon");
    let ok = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "10",
            "-subj",
            "/CN=Expiring Test CA",
            "-keyout",
        ])
        .arg(soon.with_extension("key"))
        .arg("-out")
        .arg(soon.with_extension("pem"))
        .output()
        .expect("run openssl");
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let bundle = w._tmp.path().join("bundle.pem");
    let mut pem = std::fs::read_to_string(env("TANSYNC_TEST_CA")).expect("CA");
    pem.push_str(&std::fs::read_to_string(soon.with_extension("pem")).expect("pem"));
    std::fs::write(&bundle, pem).expect("bundle");
    let text = std::fs::read_to_string(&w.config).expect("config");
    let ca_line = format!("ca_file = {}", toml_str(&env("TANSYNC_TEST_CA")));
    assert!(text.contains(&ca_line), "{text}");
    std::fs::write(
        &w.config,
        text.replacen(&ca_line, &format!("ca_file = {}", q(&bundle)), 1),
    )
    .expect("config");
    let r = w.run(&["check"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stdout.contains("✗ source CA file: ")
            && r.stdout.contains("CN=Expiring Test CA expires on ")
            && r.stdout.contains("renew it before then"),
        "{}",
        r.stdout
    );
    // The rest still ran: the source was read and the directory checked.
    assert!(r.stdout.contains("✓ source read: "), "{}", r.stdout);
    assert!(r.stdout.contains("✓ target: scim "), "{}", r.stdout);
}

#[test]
fn pending_accounts_are_left_alone_until_the_directory_activates_them() {
    let w = World::new(
        "e2e-pending",
        "[lifecycle]\npending_seconds = 3600\n",
        "rate_per_second = 50",
    );
    ad::add_users(
        &w.sub("Main"),
        &[user("Wyn Willow", "Wyn", "Willow", "Nurse")],
    );
    w.sync();
    let acc = w.accounts();
    assert_eq!(nhs(&acc["E-wyn.willow"])["status"], "pending");

    // Edited in AD while the mailbox is still being set up: held, not sent.
    ad::replace(&w.dn("Main", "Wyn Willow"), "title", "Charge Nurse");
    let p = w.plan();
    assert_eq!(p["operations"].as_array().map(Vec::len), Some(0), "{p:#}");
    assert_eq!(p["blocked"][0]["reason"], "target_pending", "{p:#}");
    let before = w.dir.requests().len();
    w.sync();
    assert!(
        w.dir.requests()[before..]
            .iter()
            .all(|r| r["method"] == "GET"),
        "nothing written to a pending account"
    );

    // An hour later (the directory's clock) it is active, and the update goes through.
    w.dir.advance_clock(3601);
    let p = w.plan();
    assert_eq!(count(&p, "update"), 1, "{p:#}");
    w.sync();
    let wyn = &w.accounts()["E-wyn.willow"];
    assert_eq!(nhs(wyn)["status"], "active");
    assert_eq!(wyn["title"], "Charge Nurse");
}

#[test]
fn sigterm_mid_apply_finishes_in_flight_work_and_records_the_run_interrupted() {
    let w = World::new(
        "e2e-term",
        "[faults]\nlatency_ms = 150\n",
        "rate_per_second = 20\nconcurrency = 2",
    );
    let names = many("Term", 30);
    add_many(&w, "Main", &names);
    let mut child = w.spawn_sync();
    let mut stdout = Lines::new(child.stdout.take().expect("piped stdout"));
    let mut stderr = Lines::new(child.stderr.take().expect("piped stderr"));
    // Act on an event, not a clock: the agent logs a line per finished operation.
    if let Err(e) = stderr.wait_for_nth(3, SAFETY_NET, finished) {
        panic!("{e}\nstderr:\n{}", stderr.text());
    }
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("send SIGTERM");
    assert!(killed.success());
    let code = wait_bounded(&mut child, SAFETY_NET);
    let stdout = stdout.finish(SAFETY_NET);
    let stderr = stderr.finish(SAFETY_NET);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("interrupted:"), "{stdout}");
    assert!(stderr.contains("stopping: nothing new is sent"), "{stderr}");

    // The run is recorded as interrupted, and nothing it journalled is left in flight
    // except what the next run reconciles: every entry is done or was never sent.
    let r = w.run(&["history", "--format", "json"]);
    let runs: Value = serde_json::from_str(&r.stdout).expect("history JSON");
    assert_eq!(runs[0]["status"], "interrupted", "{runs:#}");
    let id = runs[0]["id"].as_i64().expect("run id").to_string();
    let r = w.run(&["history", "--run", &id, "--format", "json"]);
    let journal: Value = serde_json::from_str(&r.stdout).expect("journal JSON");
    let states: Vec<&str> = journal
        .as_array()
        .expect("entries")
        .iter()
        .map(|o| o["state"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(states.len(), 30, "every operation journalled: {journal:#}");
    assert!(
        states.iter().all(|s| matches!(*s, "done" | "not_sent")),
        "{journal:#}"
    );
    let done = states.iter().filter(|s| **s == "done").count();
    assert!((3..30).contains(&done), "{done} done: {journal:#}");
    assert_eq!(w.accounts().len(), done, "applied = journalled done");

    // The next run sends the rest, once each.
    w.sync();
    assert_eq!(w.accounts().len(), 30);
    let created = w.posts().iter().filter(|r| r["status"] == 201).count();
    assert_eq!(created, 30, "nothing created twice");
}

/// The agent's `[source]` anchor, set to a text attribute.
fn anchor_on(w: &World, attr: &str) {
    let text = std::fs::read_to_string(&w.config).expect("config");
    let text = text.replacen("[source]\n", &format!("[source]\nanchor = {attr:?}\n"), 1);
    std::fs::write(&w.config, text).expect("write config");
}

/// Removals are made only on proof of absence: while an in-scope entry's anchor cannot
/// be read, a person missing from the read might be that entry, so no account is marked
/// leaver `not_in_source`; the hold lifts as soon as the anchor reads again.
#[test]
fn an_unreadable_anchor_in_scope_holds_every_not_in_source_removal() {
    let w = World::new("e2e-anchor", "", "");
    // A text anchor, so an administrator's tool can break it: carLicense is
    // multi-valued in AD's schema, so a second value makes it unreadable.
    anchor_on(&w, "carLicense");
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Ann Ash", "Ann", "Ash", "Staff Nurse"),
            user("Ben Birch", "Ben", "Birch", "Porter"),
            user("Cai Cedar", "Cai", "Cedar", "Pharmacist"),
        ],
    );
    let anchors = [
        ("Ann Ash", "0a0a0a0a-0000-4000-8000-00000000000a"),
        ("Ben Birch", "0b0b0b0b-0000-4000-8000-00000000000b"),
        ("Cai Cedar", "0c0c0c0c-0000-4000-8000-00000000000c"),
    ];
    for (cn, a) in anchors {
        ad::replace(&w.dn("Main", cn), "carLicense", a);
    }
    // Keyed by anchor: with employeeID as the anchor, no employee id is sent.
    let by_anchor = || -> BTreeMap<String, Value> {
        w.dir
            .users()
            .into_iter()
            .map(|u| (u["externalId"].as_str().unwrap_or_default().to_string(), u))
            .collect()
    };
    w.sync();
    assert_eq!(by_anchor().len(), 3);

    // Ann leaves AD; Ben's anchor cannot be read (it gained a second value).
    ad::ldif(
        &format!("dn: {}\nchangetype: delete\n", w.dn("Main", "Ann Ash")),
        false,
    );
    let ben = w.dn("Main", "Ben Birch");
    ad::ldif(
        &format!(
            "dn: {ben}\nchangetype: modify\nadd: carLicense\ncarLicense: 0b0b0b0b-0000-4000-8000-0000000000bb\n-\n"
        ),
        false,
    );
    let p = w.plan();
    assert_eq!(count(&p, "remove"), 0, "nobody is a leaver: {p:#}");
    let rejected = p["rejected"].as_array().expect("rejected");
    assert_eq!(rejected.len(), 1, "{p:#}");
    assert_eq!(rejected[0]["dn"], ben.as_str());
    let held: Vec<&Value> = p["blocked"]
        .as_array()
        .expect("blocked")
        .iter()
        .filter(|b| b["reason"] == "unverified_absence")
        .collect();
    let mut held_ids: Vec<&str> = held
        .iter()
        .filter_map(|b| b["external_id"].as_str())
        .collect();
    held_ids.sort_unstable();
    assert_eq!(held_ids, [anchors[0].1, anchors[1].1], "{p:#}");
    assert!(held.iter().all(|b| b["kind"] == "remove"), "{p:#}");
    w.sync();
    let acc = by_anchor();
    assert_eq!(acc.len(), 3);
    assert!(
        acc.values().all(|u| nhs(u)["status"] == "active"),
        "a held removal is not applied: {acc:#?}"
    );

    // Ben's anchor reads again: Ann's absence is now proven, and she is the one leaver.
    ad::replace(&ben, "carLicense", anchors[1].1);
    let p = w.plan();
    assert_eq!(count(&p, "remove"), 1, "{p:#}");
    let op = p["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .find(|o| o["kind"] == "remove")
        .expect("the removal");
    assert_eq!(op["external_id"], anchors[0].1);
    assert_eq!(op["reason"], "not_in_source");
    assert!(
        p["blocked"]
            .as_array()
            .is_some_and(|b| b.iter().all(|x| x["reason"] != "unverified_absence")),
        "{p:#}"
    );
}

/// A list from the directory that does not add up is an error, never a state: a page
/// short, a page repeated, an empty page before the end, a registry cut off — each would
/// otherwise read as people absent (leavers) or as people to provision again.
#[test]
fn a_directory_list_that_does_not_add_up_is_an_error_never_a_plan() {
    use common::tamper::{Rewrite, Tamper};
    use std::sync::Arc;
    let w = World::new("e2e-pages", "", "");
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Ann Ash", "Ann", "Ash", "Staff Nurse"),
            user("Ben Birch", "Ben", "Birch", "Porter"),
            user("Cai Cedar", "Cai", "Cedar", "Pharmacist"),
            user("Dee Dogwood", "Dee", "Dogwood", "Physiotherapist"),
            user("Eve Elm", "Eve", "Elm", "Midwife"),
        ],
    );
    w.sync();
    w.target_option("page_size = 2");
    let clean = w.plan();
    assert_eq!(
        clean["operations"].as_array().map(Vec::len),
        Some(0),
        "{clean:#}"
    );

    let users_page = |path: &str, start: u32| {
        path.starts_with("/Users?") && path.contains(&format!("startIndex={start}&"))
    };
    let cases: Vec<(&str, Arc<Rewrite>)> = vec![
        ("untouched", Arc::new(|_: &str, _: &mut Value| {})),
        (
            "a page one short",
            Arc::new(move |p: &str, v: &mut Value| {
                if users_page(p, 3) {
                    v["Resources"].as_array_mut().expect("page").pop();
                }
            }),
        ),
        (
            "an empty page before the end",
            Arc::new(move |p: &str, v: &mut Value| {
                if users_page(p, 3) {
                    v["Resources"] = Value::Array(Vec::new());
                }
            }),
        ),
        (
            "a page repeating the ids of the one before",
            Arc::new({
                let first = std::sync::Mutex::new(Value::Null);
                move |p: &str, v: &mut Value| {
                    let mut first = first.lock().unwrap_or_else(|e| e.into_inner());
                    if users_page(p, 1) {
                        *first = v["Resources"].clone();
                    } else if users_page(p, 3) {
                        v["Resources"] = first.clone();
                    }
                }
            }),
        ),
        (
            "totalResults changing between pages",
            Arc::new(move |p: &str, v: &mut Value| {
                if users_page(p, 3) {
                    v["totalResults"] = Value::from(4);
                }
            }),
        ),
        (
            "a registry cut off",
            Arc::new(|p: &str, v: &mut Value| {
                if p.starts_with("/Organisations") {
                    v["Resources"].as_array_mut().expect("registry").pop();
                }
            }),
        ),
    ];
    for (what, rewrite) in cases {
        let proxy = Tamper::start(&w.dir.url, rewrite);
        w.point_target_at(&proxy.url);
        let r = w.run(&["plan", "--format", "json"]);
        if what == "untouched" {
            assert_eq!(r.code, 0, "{what}: {}", r.stderr);
            let p: Value = serde_json::from_str(&r.stdout).expect("plan JSON");
            assert_eq!(p["operations"], clean["operations"], "{what}");
            assert_eq!(p["blocked"], clean["blocked"], "{what}");
            continue;
        }
        assert_eq!(r.code, 1, "{what}: a plan was made: {}", r.stdout);
        assert!(r.stdout.trim().is_empty(), "{what}: {}", r.stdout);
        assert!(r.stderr.contains("incomplete list"), "{what}: {}", r.stderr);
    }
}

/// Run `q` on the agent's state database (the run is over: nothing else has it open).
fn state_sql(w: &World, q: &str) {
    let db = w.config.with_file_name("state").join("tansync.db");
    let c = rusqlite::Connection::open(&db).expect("open the state database");
    c.execute_batch(q).expect("tamper with the audit trail");
}

#[test]
fn the_audit_trail_of_a_real_sync_verifies_holds_no_personal_data_and_shows_tampering() {
    let write_back = format!(
        "rate_per_second = 50\n\n[write_back]\nattribute = \"mail\"\nbind_dn = {}\nbind_password_file = {}",
        toml_str(&env("TANSYNC_TEST_SAMBA_BIND_DN")),
        toml_str(&env("TANSYNC_TEST_SAMBA_PASSWORD_FILE"))
    );
    let w = World::new("e2e-audit", "", &write_back);
    let people = [
        (
            "Main",
            user("Quinn Quince", "Quinn", "Quince", "Ward Sister"),
        ),
        ("Main", user("Rhea Rowan", "Rhea", "Rowan", "Porter")),
        ("Other", user("Sol Spruce", "Sol", "Spruce", "Radiographer")),
    ];
    for (sub, u) in &people {
        ad::add_users(&w.sub(sub), std::slice::from_ref(u));
    }
    let quinn = w.dn("Main", "Quinn Quince");
    ad::replace(&quinn, "telephoneNumber", "0113 496 0371");
    ad::replace(&quinn, "mobile", "07700 900462");
    ad::replace(&quinn, "physicalDeliveryOfficeName", "Tamarind Ward");

    // A sync: three provisions and three write-backs, the chain's head logged.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_tansync"))
        .arg("--config")
        .arg(&w.config)
        .arg("sync")
        .env_remove("TANSYNC_CONFIG")
        .env("TANSYNC_LOG", "warn,tansync::engine=info")
        .output()
        .expect("run sync");
    let r = Run::from(out);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stderr.contains("audit trail head") && r.stderr.contains("audit_seq=6"),
        "{}",
        r.stderr
    );
    assert!(r.stdout.contains("audit: head 6:"), "{}", r.stdout);
    // A leaver: one removal, for its reason.
    ad::set_enabled(&w.dn("Main", "Rhea Rowan"), false);
    w.sync();

    let r = w.run(&["audit", "verify"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("audit trail intact: 7 record(s) checked, 2 run head(s)"),
        "{}",
        r.stdout
    );
    let r = w.run(&["audit", "export"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let export = r.stdout;
    let records: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    // One line per operation, chained, each with what permitted and decided it.
    let accounts = w.accounts();
    let anchor = |emp: &str| accounts[emp]["externalId"].clone();
    let got: Vec<(Value, &str, &str, &str, &str, Value)> = records
        .iter()
        .map(|r| {
            (
                r["external_id"].clone(),
                r["kind"].as_str().unwrap_or(""),
                r["outcome"].as_str().unwrap_or(""),
                r["ods_code"].as_str().unwrap_or(""),
                r["rule"].as_str().unwrap_or(""),
                r["agreement"].clone(),
            )
        })
        .collect();
    let mut provisions: Vec<_> = got.iter().filter(|g| g.1 == "provision").collect();
    provisions.sort_by_key(|g| g.0.to_string());
    let mut want = vec![
        (anchor("E-quinn.quince"), "RXA", "main", "SA-RXA"),
        (anchor("E-rhea.rowan"), "RXA", "main", "SA-RXA"),
        (anchor("E-sol.spruce"), "RXB", "other", "SA-RXB"),
    ];
    want.sort_by_key(|w| w.0.to_string());
    assert_eq!(provisions.len(), 3, "{export}");
    for (g, w) in provisions.iter().zip(&want) {
        assert_eq!(
            (&g.0, g.2, g.3, g.4),
            (&w.0, "applied", w.1, w.2),
            "{export}"
        );
        assert_eq!(g.5, w.3, "{export}");
    }
    assert_eq!(
        got.iter()
            .filter(|g| g.1 == "write_back" && g.2 == "applied")
            .count(),
        3,
        "{export}"
    );
    let removal = &records[6];
    assert_eq!(
        (&removal["kind"], &removal["reason"], &removal["outcome"]),
        (&"remove".into(), &"disabled".into(), &"applied".into()),
        "{export}"
    );
    assert_eq!(removal["external_id"], anchor("E-rhea.rowan"));
    assert_eq!(records[0]["prev_hash"], "0".repeat(64));
    for (n, pair) in records.windows(2).enumerate() {
        assert_eq!(pair[1]["prev_hash"], pair[0]["hash"], "record {}", n + 2);
        assert_eq!(pair[1]["seq"], n as u64 + 2);
    }
    assert_ne!(records[0]["fingerprint"], records[6]["fingerprint"]);
    // No personal data beyond the anchor and the ODS code.
    let lower = export.to_lowercase();
    let mut personal: Vec<String> = vec![
        "0113 496 0371".into(),
        "+441134960371".into(),
        "07700 900462".into(),
        "+447700900462".into(),
        "tamarind".into(),
        w.ou.clone(),
        "ou=".into(),
        "cn=".into(),
        "@".into(),
    ];
    for (sub, u) in &people {
        personal.extend(
            [u.cn, u.given, u.family, u.title]
                .map(String::from)
                .into_iter()
                .chain([w.dn(sub, u.cn)]),
        );
    }
    for a in accounts.values() {
        personal.push(a["emails"][0]["value"].as_str().unwrap_or("x").to_string());
        personal.push(a["userName"].as_str().unwrap_or("x").to_string());
    }
    for p in &personal {
        assert!(
            !lower.contains(&p.to_lowercase()),
            "{p:?} in the export:\n{export}"
        );
    }

    let verify = || {
        let r = w.run(&["audit", "verify"]);
        (r.code, r.stdout)
    };
    // Edited: named, and intact again once put back.
    let outcome2 = records[1]["outcome"].as_str().expect("outcome").to_string();
    state_sql(&w, "UPDATE audit SET outcome = 'failed' WHERE seq = 2");
    let (code, out) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("broken at record 2: hash mismatch") && out.contains("(edited)"),
        "{out}"
    );
    state_sql(
        &w,
        &format!("UPDATE audit SET outcome = '{outcome2}' WHERE seq = 2"),
    );
    assert_eq!(verify().0, 0);
    // Reordered.
    let swap = "UPDATE audit SET seq = -1 WHERE seq = 3;
                UPDATE audit SET seq = 3 WHERE seq = 4;
                UPDATE audit SET seq = 4 WHERE seq = -1;";
    state_sql(&w, swap);
    let (code, out) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("broken at record 3: out of order") && out.contains("reordered"),
        "{out}"
    );
    state_sql(&w, swap);
    assert_eq!(verify().0, 0);
    // Removed from the middle.
    state_sql(&w, "DELETE FROM audit WHERE seq = 5");
    let (code, out) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("broken at record 5: missing") && out.contains("removed"),
        "{out}"
    );
    // Cut off at the end: consistent in itself, but the runs recorded their heads.
    state_sql(&w, "DELETE FROM audit WHERE seq >= 5");
    let (code, out) = verify();
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("broken at record 5: missing: run 1") && out.contains("truncated"),
        "{out}"
    );
}
