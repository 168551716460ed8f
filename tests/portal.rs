//! The NHSmail Portal bridge end to end, on real servers: the Samba AD DC (started by
//! tests/harness) → `tansync` (the built binary, `[target] kind = "portal_report"`) →
//! bulk-upload batch files → the reference directory playing the Portal
//! (`nhs-directory ingest`, one upload at a time, a results file) → its Mailbox Report
//! (`nhs-directory report`) dropped in the agent's report folder → `tansync` again.
//!
//! Each test works in an OU of its own with a directory of its own.

mod common;
use common::ad::{self, User};
use common::dirsvc::{DirectoryService, OTHER_ORG, Org};
use common::process::{Lines, wait_bounded};
use common::*;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const AGENT: &str = "tansync-portal-e2e";
/// A safety net against a hang, never what a test waits for.
const SAFETY_NET: Duration = Duration::from_secs(120);

struct World {
    tmp: tempfile::TempDir,
    ou: String,
    dir: DirectoryService,
    config: PathBuf,
    reports: usize,
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

impl World {
    /// People of `OU=Main` belong to RXA, of `OU=Other` to RXB; batches of `batch_size`.
    fn new(name: &str, batch_size: usize) -> World {
        let tmp = tempfile::tempdir().expect("tempdir");
        let ou = ad::fresh_ou(name);
        for sub in ["Main", "Other"] {
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
                ods: OTHER_ORG,
                kind: "gp",
                open: true,
                cap: 50,
            },
        ];
        let dir = DirectoryService::start(AGENT, &["RXA", "RXB"], &registry, "");
        let mut filters = String::new();
        for (sub, ods) in [("Main", "RXA"), ("Other", "RXB")] {
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
        for ods in ["RXA", "RXB"] {
            agreements.push_str(&format!(
                "[[sharing]]\nods_code = \"{ods}\"\nreference = \"SA-{ods}\"\nvalid_from = 2026-01-01\nvalid_until = 2099-12-31\noperations = [\"provision\", \"update\", \"remove\", \"move\", \"restore\", \"join\"]\nattributes = [\"given_name\", \"family_name\", \"display_name\", \"job_title\", \"department\", \"site\", \"telephone\", \"mobile\", \"employee_id\"]\n\n"
            ));
        }
        std::fs::write(tmp.path().join("agreements.toml"), agreements).expect("agreements");
        std::fs::create_dir(tmp.path().join("reports")).expect("reports folder");
        let template = repo().join("examples/portal/bulk-upload-template.csv");
        let text = format!(
            r#"agent_id = "{AGENT}"

{source}
[filters]
files = ["filters.toml"]

[target]
kind = "portal_report"
drop_dir = "reports"
out_dir = "out"
template = {template}
batch_size = {batch_size}
[[target.organisations]]
ods_code = "RXA"
name = "Test organisation RXA"
kind = "trust"
open = true
cap = 50
[[target.organisations]]
ods_code = "RXB"
name = "Test organisation RXB"
kind = "trust"
open = true
cap = 50

[agreements]
file = "agreements.toml"

[state]
dir = "state"
"#,
            source = samba_source(&ou),
            template = q(&template),
        );
        let config = write_config(tmp.path(), &text);
        let mut w = World {
            tmp,
            ou,
            dir,
            config,
            reports: 0,
        };
        w.drop_report();
        w
    }

    fn sub(&self, name: &str) -> String {
        format!("OU={name},{}", self.ou)
    }

    fn out(&self, name: &str) -> PathBuf {
        self.tmp.path().join("out").join(name)
    }

    fn run(&self, args: &[&str]) -> Run {
        tansync(&self.config, args)
    }

    fn sync(&self) -> Run {
        let r = self.run(&["sync"]);
        assert_eq!(r.code, 0, "sync: {}\n{}", r.stdout, r.stderr);
        r
    }

    /// `nhs-directory ARGS --directory-config …`.
    fn twin(&self, args: &[&str]) -> Run {
        Command::new(directory_bin())
            .args(args)
            .arg("--directory-config")
            .arg(self.dir.config_path())
            .env_remove("NHS_DIRECTORY_LOG")
            .stdin(Stdio::null())
            .output()
            .expect("run nhs-directory")
            .into()
    }

    /// Export the Mailbox Report into the agent's report folder (the newest file wins).
    fn drop_report(&mut self) -> PathBuf {
        let r = self.twin(&["report"]);
        assert_eq!(r.code, 0, "report: {}", r.stderr);
        self.reports += 1;
        let p = self
            .tmp
            .path()
            .join("reports")
            .join(format!("mailbox-report-{:02}.csv", self.reports));
        std::fs::write(&p, r.stdout).expect("write report");
        p
    }

    /// Upload a batch to the twin; the results file, or `None` when it was interrupted.
    fn ingest(&self, batch: &str, stop_after: Option<usize>) -> Option<PathBuf> {
        let results = self.tmp.path().join(format!("results-{batch}"));
        let n;
        let mut args = vec!["ingest", "--results", results.to_str().expect("path")];
        if let Some(k) = stop_after {
            n = k.to_string();
            args.extend(["--stop-after", n.as_str()]);
        }
        let file = self.out(batch);
        args.push(file.to_str().expect("path"));
        let r = self.twin(&args);
        match stop_after {
            None => {
                assert_eq!(r.code, 0, "ingest {batch}: {}", r.stderr);
                Some(results)
            }
            Some(_) => {
                assert_eq!(r.code, 4, "interrupted ingest {batch}: {}", r.stderr);
                assert!(
                    !results.exists(),
                    "an interrupted upload returns no results"
                );
                None
            }
        }
    }

    /// Every account in the twin's database (its snapshot export).
    fn accounts(&self) -> Vec<Value> {
        let r = self.twin(&["export"]);
        assert_eq!(r.code, 0, "export: {}", r.stderr);
        let v: Value = serde_json::from_str(&r.stdout).expect("snapshot");
        v["persons"].as_array().cloned().unwrap_or_default()
    }

    fn plan(&self) -> Value {
        plan_json(&self.config).1
    }
}

/// A CSV file's data rows as maps from heading to cell.
fn rows(path: &Path) -> Vec<BTreeMap<String, String>> {
    let mut r = csv::Reader::from_path(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let head = r.headers().expect("header").clone();
    r.records()
        .map(|rec| {
            let rec = rec.expect("row");
            head.iter()
                .zip(rec.iter())
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

fn local_ids(path: &Path) -> BTreeSet<String> {
    rows(path)
        .into_iter()
        .map(|r| r["Local ID"].clone())
        .collect()
}

fn provisions(plan: &Value) -> BTreeSet<String> {
    plan["operations"]
        .as_array()
        .expect("operations")
        .iter()
        .filter(|o| o["kind"] == "provision")
        .map(|o| o["external_id"].as_str().expect("anchor").to_string())
        .collect()
}

/// Anchors of the accounts in the twin, with how many accounts each has.
fn anchored(accounts: &[Value]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for a in accounts {
        if let Some(x) = a["external_id"].as_str() {
            *m.entry(x.to_string()).or_insert(0) += 1;
        }
    }
    m
}

/// Seven people, three per batch: every one lands exactly once across the batches, an
/// upload interrupted half way settles from the next report (the rows it created are
/// confirmed, the others exported again — no duplicate, no row lost), the agent writes
/// no second batch while one is in flight, and the twin refuses a second upload while
/// one is being processed. Values a spreadsheet would run as formulas are neutralised in
/// the batch file and arrive intact.
#[test]
fn provisions_land_exactly_once_across_batches_and_an_interrupted_upload_settles_from_the_report() {
    let mut w = World::new("portal-once", 3);
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Ann Ash", "Ann", "Ash", "Nurse"),
            user("Ben Birch", "Ben", "Birch", "=HYPERLINK(\"http://x\")"),
            user("Cat Cedar", "Cat", "Cedar", "-Ward clerk"),
            user("Dan Dogwood", "Dan", "Dogwood", "@Porter"),
            user("Eve Elm", "Eve", "Elm", "+Matron"),
            user("Fay Fir", "Fay", "Fir", "Midwife"),
            user("Gus Gum", "Gus", "Gum", "Pharmacist"),
        ],
    );
    let all = provisions(&w.plan());
    assert_eq!(all.len(), 7);

    // Batch 1: three rows, the formula-like values neutralised.
    let r = w.sync();
    assert!(r.stdout.contains("wrote batch 1"), "{}", r.stdout);
    let b1 = local_ids(&w.out("batch-0001.csv"));
    assert_eq!(b1.len(), 3);
    let text = std::fs::read_to_string(w.out("batch-0001.csv")).expect("batch 1");
    assert!(!text.contains(",=") && !text.contains(",\"=") && !text.contains(",@"));
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(w.out("manifest.json")).expect("manifest"))
            .expect("manifest JSON");
    assert_eq!(manifest["in_flight"], 1, "{manifest}");

    // While batch 1 is in flight, no second batch, however often the agent runs — also
    // when the report it was planned from is saved again (a copy: a newer time, the same
    // content), which says nothing about the upload.
    let r = w.sync();
    assert!(r.stdout.contains("nothing new exported"), "{}", r.stdout);
    let first_report = w.tmp.path().join("reports").join("mailbox-report-01.csv");
    let copy = w
        .tmp
        .path()
        .join("reports")
        .join("mailbox-report-01-copy.csv");
    std::fs::copy(&first_report, &copy).expect("copy the report");
    let r = w.sync();
    assert!(r.stdout.contains("same content"), "{}", r.stdout);
    assert!(r.stdout.contains("nothing new exported"), "{}", r.stdout);
    assert!(!w.out("batch-0002.csv").exists());

    // The twin holds one upload at a time: a second one while batch 1 is processing is
    // refused, and changes nothing.
    let results1 = w.tmp.path().join("results-1.csv");
    let mut first = Command::new(directory_bin())
        .args(["ingest", "--pause", "--results"])
        .arg(&results1)
        .arg("--directory-config")
        .arg(w.dir.config_path())
        .arg(w.out("batch-0001.csv"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the first upload");
    let mut lines = Lines::new(first.stderr.take().expect("stderr"));
    lines
        .wait_for_nth(1, SAFETY_NET, |l| l.contains("processing"))
        .expect("the first upload holds the lock");
    let second = w.twin(&[
        "ingest",
        "--results",
        w.tmp.path().join("results-x.csv").to_str().expect("path"),
        w.out("batch-0001.csv").to_str().expect("path"),
    ]);
    assert_eq!(second.code, 3, "{}", second.stderr);
    assert!(
        second.stderr.contains("one CSV at a time"),
        "{}",
        second.stderr
    );
    assert!(
        w.accounts().is_empty(),
        "the refused upload created nothing"
    );
    first
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"\n")
        .expect("release the first upload");
    assert_eq!(wait_bounded(&mut first, SAFETY_NET), 0);

    // The results file settles batch 1 (all succeeded, awaiting a report); the next batch
    // holds none of them even though the report the agent reads is still the old one.
    let r = w.run(&["portal", "results", results1.to_str().expect("path")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("3 succeeded"), "{}", r.stdout);
    let r = w.sync();
    assert!(r.stdout.contains("wrote batch 2"), "{}", r.stdout);
    assert!(r.stdout.contains("3 operation(s) withheld"), "{}", r.stdout);
    let b2 = local_ids(&w.out("batch-0002.csv"));
    assert_eq!(b2.len(), 3);
    assert!(b1.is_disjoint(&b2));

    // Batch 2 is interrupted after one row: no results file. The next report settles it.
    assert!(w.ingest("batch-0002.csv", Some(1)).is_none());
    w.drop_report();
    let r = w.sync();
    assert!(
        r.stdout
            .contains("settled from the report: batch 1: 3 confirmed"),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout
            .contains("settled from the report: batch 2: 1 confirmed, 2 failed"),
        "{}",
        r.stdout
    );
    let b3 = local_ids(&w.out("batch-0003.csv"));
    let created_of_b2: BTreeSet<String> = anchored(&w.accounts())
        .keys()
        .filter(|x| b2.contains(*x))
        .cloned()
        .collect();
    assert_eq!(created_of_b2.len(), 1);
    let never: BTreeSet<String> = all
        .iter()
        .filter(|x| !b1.contains(*x) && !b2.contains(*x))
        .cloned()
        .collect();
    let want: BTreeSet<String> = b2
        .difference(&created_of_b2)
        .cloned()
        .chain(never)
        .collect();
    assert_eq!(
        b3, want,
        "batch 3 is exactly the interrupted rows not created plus the one never exported"
    );

    // Batch 3 goes through; the next report confirms it and there is nothing left to do.
    let results3 = w.ingest("batch-0003.csv", None).expect("results");
    let r = w.run(&["portal", "results", results3.to_str().expect("path")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    w.drop_report();
    let r = w.sync();
    assert!(
        r.stdout.contains("no creates or updates to export"),
        "{}",
        r.stdout
    );
    assert!(!w.out("batch-0004.csv").exists());
    let accounts = w.accounts();
    let counts = anchored(&accounts);
    assert_eq!(
        counts.keys().cloned().collect::<BTreeSet<_>>(),
        all,
        "every person has an account"
    );
    assert!(
        counts.values().all(|n| *n == 1),
        "no one has two accounts: {counts:?}"
    );
    assert_eq!(accounts.len(), 7);

    // The formula-like titles arrived as they are in AD, and the plan against the last
    // report has nothing to change (no false differences from the neutraliser).
    let titles: BTreeSet<&str> = accounts
        .iter()
        .filter_map(|a| a["attributes"]["job_title"].as_str())
        .collect();
    for t in [
        "=HYPERLINK(\"http://x\")",
        "-Ward clerk",
        "@Porter",
        "+Matron",
    ] {
        assert!(titles.contains(t), "{t} in {titles:?}");
    }
    let (run, _) = plan_json(&w.config);
    assert_eq!(run.code, 0, "no changes left: {}", run.stdout);

    // A stale or partial report (here: the very first, empty one, saved again as the
    // newest) does not make the agent create anyone a second time.
    let stale = w.tmp.path().join("reports").join("mailbox-report-99.csv");
    std::fs::copy(&first_report, &stale).expect("stale report");
    let r = w.run(&["sync"]);
    assert_eq!(r.code, 1, "a person must look: {}", r.stdout);
    assert!(r.stdout.contains("7 operation(s) withheld"), "{}", r.stdout);
    assert!(r.stdout.contains("stale or partial"), "{}", r.stdout);
    assert!(!w.out("batch-0004.csv").exists());
    std::fs::remove_file(&stale).expect("remove the stale report");

    let st = w.run(&["portal", "status", "--format", "json"]);
    assert_eq!(st.code, 0, "{}", st.stderr);
    let st: Value = serde_json::from_str(&st.stdout).expect("status JSON");
    assert_eq!(st["in_flight"], Value::Null);
    assert_eq!(st["batches"].as_array().expect("batches").len(), 3);
    let audit = w.run(&["audit", "verify"]);
    assert_eq!(audit.code, 0, "{}", audit.stdout);
}

/// The Portal refuses one row of a batch (its Local ID belongs to an account of another
/// organisation: CSV cannot transfer); the results file settles the batch, and the next
/// batch holds exactly the failed row — the rows that succeeded are not exported again
/// although the report the agent reads does not show them yet.
#[test]
fn a_results_file_with_failed_rows_re_exports_exactly_those() {
    let w = World::new("portal-failed", 10);
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Hal Hazel", "Hal", "Hazel", "Nurse"),
            user("Ivy Ivory", "Ivy", "Ivory", "Nurse"),
            user("Jon Juniper", "Jon", "Juniper", "Nurse"),
        ],
    );
    let all = provisions(&w.plan());
    let taken = all.iter().next().expect("one anchor").clone();
    let (status, body) = w.dir.post_as_other(
        "/Users",
        &serde_json::json!({
            "schemas": [tansync::scim::USER_SCHEMA, tansync::scim::NHS_SCHEMA],
            "externalId": taken,
            "userName": "held.elsewhere",
            "name": {"givenName": "Held", "familyName": "Elsewhere"},
            tansync::scim::NHS_SCHEMA: {"odsCode": OTHER_ORG}
        }),
    );
    assert_eq!(status, 201, "{body}");

    w.sync();
    assert_eq!(local_ids(&w.out("batch-0001.csv")), all);
    let results = w.ingest("batch-0001.csv", None).expect("results");
    let failed: Vec<BTreeMap<String, String>> = rows(&results)
        .into_iter()
        .filter(|r| r["Result"] != "Success")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failed[0]["Local ID"], taken);

    let r = w.run(&["portal", "results", results.to_str().expect("path")]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("2 succeeded"), "{}", r.stdout);
    assert!(r.stdout.contains("1 failed"), "{}", r.stdout);
    assert!(r.stdout.contains("cannot transfer"), "{}", r.stdout);
    let again = w.run(&["portal", "results", results.to_str().expect("path")]);
    assert_eq!(again.code, 1, "{}", again.stdout);
    assert!(
        again.stderr.contains("already settled batch 1"),
        "a results file is applied once: {}",
        again.stderr
    );

    let r = w.sync();
    assert!(r.stdout.contains("wrote batch 2"), "{}", r.stdout);
    assert_eq!(
        local_ids(&w.out("batch-0002.csv")),
        BTreeSet::from([taken.clone()]),
        "exactly the failed row"
    );
    // Batch 2 will never be uploaded (say, the file was lost): discarded, it settles as
    // not applied and the next apply exports its row afresh.
    let r = w.run(&["portal", "discard", "2"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = w.sync();
    assert!(r.stdout.contains("wrote batch 3"), "{}", r.stdout);
    assert_eq!(
        local_ids(&w.out("batch-0003.csv")),
        BTreeSet::from([taken.clone()])
    );
    let r = w.run(&["portal", "discard", "1"]);
    assert_eq!(
        r.code, 1,
        "a settled batch cannot be discarded: {}",
        r.stdout
    );

    // A results file of no batch is refused, naming the line.
    let stray = w.tmp.path().join("stray.csv");
    std::fs::write(
        &stray,
        format!(
            "{},Result\r\nnot-a-batch-row,RXA{}\r\n",
            nhs_model::portal::TEMPLATE_HEADINGS.join(","),
            ",".repeat(nhs_model::portal::TEMPLATE_HEADINGS.len() - 2) + ",Success"
        ),
    )
    .expect("stray results");
    let r = w.run(&["portal", "results", stray.to_str().expect("path")]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
}

/// Leavers and moves are not CSV work: after everyone is provisioned, a disabled user and
/// one moved to another organisation's OU are exactly the worklist (CSV and Markdown),
/// with the plan's fingerprint; a report showing the leaver done confirms that task.
#[test]
fn the_worklist_lists_exactly_the_leavers_and_moves_of_the_plan() {
    let mut w = World::new("portal-work", 10);
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Kit Kale", "Kit", "Kale", "Nurse"),
            user("Lou Lime", "Lou", "Lime", "Nurse"),
            user("Max Mint", "Max", "Mint", "Nurse"),
        ],
    );
    w.sync();
    let results = w.ingest("batch-0001.csv", None).expect("results");
    assert_eq!(
        w.run(&["portal", "results", results.to_str().expect("path")])
            .code,
        0
    );
    w.drop_report();
    w.sync();

    ad::set_enabled(&format!("CN=Kit Kale,{}", w.sub("Main")), false);
    ad::move_to(&format!("CN=Lou Lime,{}", w.sub("Main")), &w.sub("Other"));
    let plan = w.plan();
    let mut want: BTreeSet<(String, String)> = BTreeSet::new();
    for o in plan["operations"].as_array().expect("operations") {
        want.insert((
            o["kind"].as_str().expect("kind").to_string(),
            o["external_id"].as_str().expect("anchor").to_string(),
        ));
    }
    let kinds: BTreeSet<&str> = want.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["move", "remove"]), "{plan}");
    assert_eq!(want.len(), 2);

    let r = w.sync();
    assert!(
        r.stdout.contains("worklist: 2 open task(s) (2 new"),
        "{}",
        r.stdout
    );
    let listed: BTreeSet<(String, String)> = rows(&w.out("worklist.csv"))
        .into_iter()
        .map(|r| (r["Task"].clone(), r["Local ID"].clone()))
        .collect();
    assert_eq!(listed, want);
    let fp = plan["fingerprint"].as_str().expect("fingerprint");
    let md = std::fs::read_to_string(w.out("worklist.md")).expect("worklist.md");
    assert!(md.contains("Kit Kale") && md.contains("Lou Lime"), "{md}");
    assert!(md.contains(fp), "{md}");
    assert!(md.contains("RXA to RXB"), "{md}");

    // The Local Administrator marks Kit a leaver in the Portal (here: the directory's own
    // SCIM, acting for the organisation); the next report confirms the task.
    let kit = want
        .iter()
        .find(|(k, _)| k == "remove")
        .expect("remove")
        .1
        .clone();
    w.dir.mark_leaver(&kit);
    w.drop_report();
    let r = w.sync();
    assert!(r.stdout.contains("1 confirmed done"), "{}", r.stdout);
    let listed: BTreeSet<String> = rows(&w.out("worklist.csv"))
        .into_iter()
        .map(|r| r["Local ID"].clone())
        .collect();
    assert!(!listed.contains(&kit), "{listed:?}");
    assert_eq!(listed.len(), 1);
}

/// A report with a duplicated Local ID, or without a mandatory column, is an error that
/// names the problem: no plan, nothing exported.
#[test]
fn a_report_with_a_duplicated_local_id_or_a_wrong_header_is_an_error() {
    let mut w = World::new("portal-bad", 10);
    ad::add_users(
        &w.sub("Main"),
        &[user("Ned Nettle", "Ned", "Nettle", "Nurse")],
    );
    w.sync();
    let results = w.ingest("batch-0001.csv", None).expect("results");
    assert_eq!(
        w.run(&["portal", "results", results.to_str().expect("path")])
            .code,
        0
    );
    let good = w.drop_report();
    let text = std::fs::read_to_string(&good).expect("report");
    let mut lines: Vec<&str> = text.lines().collect();
    // The same Local ID on another mailbox.
    let row = lines[1].replacen("@", ".second@", 1);
    lines.push(&row);
    let dup = w.tmp.path().join("reports").join("mailbox-report-dup.csv");
    std::fs::write(&dup, lines.join("\r\n")).expect("dup report");
    let r = w.run(&["plan"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("Local ID"), "{}", r.stderr);
    assert!(
        r.stderr.contains("mailbox-report-dup.csv:3:") && r.stderr.contains("line 2"),
        "{}",
        r.stderr
    );

    let wrong = w
        .tmp
        .path()
        .join("reports")
        .join("mailbox-report-wrong.csv");
    std::fs::write(&wrong, text.replacen("ODS Code", "ODS", 1)).expect("wrong report");
    let r = w.run(&["sync"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stderr.contains("ODS Code"), "{}", r.stderr);
    assert!(!w.out("batch-0002.csv").exists());
}

/// Continuous mode on the Portal target: each `run --once` cycle reads the newest report
/// in the drop folder, settles, and exports the next batch only when none is in flight;
/// `status` shows the batches.
#[test]
fn continuous_mode_settles_from_the_newest_report_and_exports_one_batch_at_a_time() {
    let mut w = World::new("portal-run", 2);
    let text = std::fs::read_to_string(&w.config).expect("config");
    std::fs::write(
        &w.config,
        format!("{text}\n[daemon]\ninterval_seconds = 3600\n"),
    )
    .expect("config");
    ad::add_users(
        &w.sub("Main"),
        &[
            user("Oda Oak", "Oda", "Oak", "Nurse"),
            user("Pip Pine", "Pip", "Pine", "Nurse"),
            user("Quin Quince", "Quin", "Quince", "Nurse"),
        ],
    );
    let once = |w: &World| {
        let r = w.run(&["run", "--once"]);
        assert_eq!(r.code, 0, "run --once: {}\n{}", r.stdout, r.stderr);
    };
    let status = |w: &World| -> Value {
        let r = w.run(&["status", "--format", "json"]);
        assert_eq!(r.code, 0, "status: {}", r.stderr);
        serde_json::from_str(&r.stdout).expect("status JSON")
    };
    once(&w);
    assert_eq!(local_ids(&w.out("batch-0001.csv")).len(), 2);
    once(&w);
    assert!(
        !w.out("batch-0002.csv").exists(),
        "one batch in flight at a time"
    );
    assert_eq!(status(&w)["portal"]["in_flight"], 1);
    let human = w.run(&["status"]);
    assert!(
        human
            .stdout
            .contains("portal: batch in flight: 1; 0 settled"),
        "{}",
        human.stdout
    );

    w.ingest("batch-0001.csv", None).expect("results");
    w.drop_report();
    once(&w);
    assert_eq!(local_ids(&w.out("batch-0002.csv")).len(), 1);
    let st = status(&w);
    assert_eq!(st["portal"]["in_flight"], 2, "{st}");
    let b1 = &st["portal"]["batches"][1];
    assert_eq!(b1["batch"], 1);
    assert_eq!(b1["states"]["confirmed"], 2, "{st}");

    // While `tansync run` holds the state directory, a results file is queued, and the
    // daemon's next cycle (here: the next `run --once`) settles its batch from it.
    let results2 = w.ingest("batch-0002.csv", None).expect("results");
    let (mut daemon, mut log) = start_run(&w.config, None);
    log.wait_for(SAFETY_NET, |l| l.contains("cycle finished"))
        .unwrap_or_else(|e| panic!("{e}\n{}", log.text()));
    let r = w.run(&["portal", "results", results2.to_str().expect("path")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("queued"), "{}", r.stdout);
    let st = w.run(&["portal", "status"]);
    assert!(
        st.stdout.contains("results file queued for the next cycle"),
        "{}",
        st.stdout
    );
    let stop = Command::new("kill")
        .args(["-TERM", &daemon.0.id().to_string()])
        .status()
        .expect("kill");
    assert!(stop.success());
    assert_eq!(wait_bounded(&mut daemon.0, SAFETY_NET), 0);
    once(&w);
    let st = status(&w);
    assert_eq!(st["portal"]["in_flight"], Value::Null, "{st}");
    assert_eq!(st["portal"]["queued"], serde_json::json!([]), "{st}");
    assert_eq!(st["portal"]["batches"][0]["states"]["reported"], 1, "{st}");

    w.drop_report();
    once(&w);
    let st = status(&w);
    assert_eq!(st["portal"]["batches"][0]["states"]["confirmed"], 1, "{st}");
    assert!(!w.out("batch-0003.csv").exists());
    assert_eq!(w.accounts().len(), 3);
}
