//! The reference directory as the NHSmail Portal's twin, through the real binary beside
//! a running `nhs-directory serve` on the same database file: `report` prints the
//! Mailbox Report of what was seeded, `ingest` creates and updates accounts that the
//! report and the SCIM API then show, writes the results file (the rows as uploaded
//! plus `Result`), refuses a second upload while one is processing (exit 3), and
//! `--stop-after` interrupts one (exit 4, no results).

mod common;
use common::directory::{Api, DirectoryProcess, pct};
use common::process::{KillOnDrop, Lines, wait_bounded};
use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

const AGENT: &str = "agent-token-northgate-7f3a";
/// A safety net for a child that hangs, never what a test waits for.
const LIMIT: Duration = Duration::from_secs(60);

const TEMPLATE: &str = "Local ID,ODS Code,Email Address,First Name,Last Name,Display Name,Job Title,Department,Site,Telephone,Mobile,Employee ID,Secondary Email";

fn snapshot() -> PathBuf {
    common::repo().join("examples/quickstart/nhs-directory-snapshot.json")
}

/// A directory seeded from the quickstart snapshot, its database a file in its folder.
fn start() -> DirectoryProcess {
    let config = format!(
        r#"listen = "127.0.0.1:0"
database = "directory.db"
seed = {seed}

# The seeded leaver stays a leaver however late the test runs (the uploads sweep the
# lifecycle with the system clock).
[lifecycle]
leaver_days = 36500

[[client]]
id = "tansync-northgate"
token_file = "agent.token"
organisations = ["RXA", "RXA80"]
"#,
        seed = common::q(snapshot())
    );
    DirectoryProcess::start(&config, &[("agent.token", AGENT)])
}

fn config(d: &DirectoryProcess) -> PathBuf {
    d.dir.path().join("directory.toml")
}

fn directory(args: &[&str], config: &Path) -> common::Run {
    Command::new(common::directory_bin())
        .args(args)
        .arg("--directory-config")
        .arg(config)
        .env_remove("NHS_DIRECTORY_LOG")
        .stdin(Stdio::null())
        .output()
        .expect("run nhs-directory")
        .into()
}

/// The report's rows as maps from heading to cell, failing the test unless it exits 0.
fn report(config: &Path) -> Vec<std::collections::BTreeMap<String, String>> {
    let run = directory(&["report"], config);
    assert_eq!(run.code, 0, "report failed: {}", run.stderr);
    let mut r = csv::Reader::from_reader(run.stdout.as_bytes());
    let headers = r.headers().expect("report header").clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>().join(","),
        "Email Address,Local ID,First Name,Last Name,Display Name,Job Title,Department,Site,\
         Telephone,Mobile,Employee ID,Secondary Email,ODS Code,Organisation,Status,Leaver Date"
    );
    r.records()
        .map(|rec| {
            let rec = rec.expect("report row");
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect()
        })
        .collect()
}

fn ingest_cmd(config: &Path, results: &Path, batch: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(common::directory_bin());
    c.arg("ingest")
        .arg("--directory-config")
        .arg(config)
        .arg("--results")
        .arg(results)
        .args(extra)
        .arg(batch)
        .env_remove("NHS_DIRECTORY_LOG");
    c
}

fn ingest(config: &Path, results: &Path, batch: &Path, extra: &[&str]) -> common::Run {
    ingest_cmd(config, results, batch, extra)
        .stdin(Stdio::null())
        .output()
        .expect("run nhs-directory ingest")
        .into()
}

#[test]
fn sample_template_prints_the_shipped_templates_header() {
    let out = Command::new(common::directory_bin())
        .arg("sample-template")
        .output()
        .expect("run nhs-directory sample-template");
    assert!(out.status.success());
    let example =
        std::fs::read_to_string(common::repo().join("examples/portal/bulk-upload-template.csv"))
            .expect("read the example template");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{TEMPLATE}\n")
    );
    assert_eq!(example.lines().next(), Some(TEMPLATE));
}

#[tokio::test]
async fn the_twin_reports_ingests_one_upload_at_a_time_and_writes_results() {
    let d = start();
    let cfg = config(&d);
    let work = tempfile::tempdir().expect("temp dir");

    // The report is the seeded snapshot: every account, by ODS code then address.
    let seeded: Value =
        serde_json::from_str(&std::fs::read_to_string(snapshot()).expect("read snapshot"))
            .expect("snapshot JSON");
    let mut want: Vec<(String, String, String, String)> = seeded["persons"]
        .as_array()
        .expect("persons")
        .iter()
        .map(|p| {
            let s = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (s("ods_code"), s("email"), s("external_id"), s("status"))
        })
        .collect();
    want.sort();
    let rows = report(&cfg);
    let got: Vec<(String, String, String, String)> = rows
        .iter()
        .map(|r| {
            (
                r["ODS Code"].clone(),
                r["Email Address"].clone(),
                r["Local ID"].clone(),
                r["Status"].to_lowercase(),
            )
        })
        .collect();
    assert_eq!(got, want);
    let sian = rows
        .iter()
        .find(|r| r["Email Address"] == "sian.evans@nhs.net")
        .expect("Siân's row");
    assert_eq!(
        (sian["Job Title"].as_str(), sian["Mobile"].as_str()),
        ("Staff Nurse", "'+447123456001")
    );
    assert_eq!(sian["Organisation"], "Northgate Healthcare NHS Trust");

    // One create, one update of Siân (blank cells unchanged), one duplicate.
    let batch = work.path().join("batch-0001.csv");
    let body = format!(
        "{TEMPLATE}\n\
         new-0001,RXA,,Aled,Jones,,Porter,,,,'+447700900001,,\n\
         40564344-C311-57DC-A577-6539C70D105F,RXA,sian.evans@nhs.net,,,,Charge Nurse,,,,,,\n\
         NEW-0001,RXA,,Other,Person,,,,,,,,\n"
    );
    std::fs::write(&batch, &body).expect("write batch");
    let results = work.path().join("batch-0001.results.csv");
    let run = ingest(&cfg, &results, &batch, &[]);
    assert_eq!(run.code, 0, "ingest failed: {}", run.stderr);
    let text = std::fs::read_to_string(&results).expect("results file");
    let mut lines = body.lines();
    let header = lines.next().expect("header");
    let mut want_results = format!("{header},Result\n");
    for (line, result) in lines.zip([
        "Success",
        "Success",
        "Failed: duplicate Local ID in this file: line 2",
    ]) {
        want_results.push_str(&format!("{line},{result}\n"));
    }
    assert_eq!(text, want_results);

    let after = report(&cfg);
    assert_eq!(after.len(), rows.len() + 1);
    let aled = after
        .iter()
        .find(|r| r["Local ID"] == "new-0001")
        .expect("the created row");
    assert_eq!(
        (
            aled["Email Address"].as_str(),
            aled["Job Title"].as_str(),
            aled["Mobile"].as_str(),
            aled["Status"].as_str()
        ),
        ("aled.jones@nhs.net", "Porter", "'+447700900001", "Active")
    );
    let sian_after = after
        .iter()
        .find(|r| r["Email Address"] == "sian.evans@nhs.net")
        .expect("Siân's row");
    assert_eq!(sian_after["Job Title"], "Charge Nurse");
    assert_eq!(sian_after["Department"], sian["Department"]);
    assert_eq!(sian_after["Mobile"], sian["Mobile"]);

    // The running directory serves what the upload created (the same database).
    let api = Api::new(&d.url, AGENT);
    let found = api
        .get(&format!(
            "/Users?filter={}",
            pct("externalId eq \"new-0001\"")
        ))
        .await;
    assert_eq!(found.status, 200, "{found:?}");
    assert_eq!(found.body["totalResults"], 1, "{found:?}");
    assert_eq!(found.body["Resources"][0]["userName"], "aled.jones@nhs.net");

    // One upload at a time: a second one while the first is held open is refused.
    let second_batch = work.path().join("batch-0002.csv");
    std::fs::write(
        &second_batch,
        format!("{TEMPLATE}\nnew-0002,RXA,,Bryn,Hughes,,,,,,,,\n"),
    )
    .expect("write batch");
    let held_results = work.path().join("held.results.csv");
    let mut first = KillOnDrop(
        ingest_cmd(&cfg, &held_results, &second_batch, &["--pause"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the held ingest"),
    );
    let mut stderr = Lines::new(first.0.stderr.take().expect("piped stderr"));
    let line = stderr
        .wait_for(LIMIT, |l| l.starts_with("upload "))
        .expect("the held upload's line");
    let id = line
        .strip_prefix("upload ")
        .and_then(|r| r.strip_suffix(" processing"))
        .expect("`upload N processing`");
    let refused_results = work.path().join("refused.results.csv");
    let refused = ingest(&cfg, &refused_results, &batch, &[]);
    assert_eq!(refused.code, 3, "{}", refused.stderr);
    assert!(
        refused
            .stderr
            .contains(&format!("another upload ({id}, batch-0002.csv, started "))
            && refused.stderr.contains(
                "is still being processed: submit one CSV at a time and wait for it to finish"
            ),
        "{}",
        refused.stderr
    );
    assert!(!refused_results.exists());
    assert_eq!(
        report(&cfg).len(),
        after.len(),
        "the refused upload changed nothing"
    );
    // Let the held one go on: it finishes with its results.
    {
        let mut stdin = first.0.stdin.take().expect("piped stdin");
        stdin.write_all(b"\n").expect("release the held upload");
    }
    assert_eq!(
        wait_bounded(&mut first.0, LIMIT),
        0,
        "{}",
        stderr.finish(LIMIT)
    );
    assert!(
        std::fs::read_to_string(&held_results)
            .expect("held results")
            .ends_with("new-0002,RXA,,Bryn,Hughes,,,,,,,,,Success\n")
    );

    // An interrupted upload: the rows before it count, no results, exit 4; the next
    // upload is not locked out.
    let third = work.path().join("batch-0003.csv");
    std::fs::write(
        &third,
        format!("{TEMPLATE}\nnew-0003,RXA,,Cai,Evans,,,,,,,,\nnew-0004,RXA,,Dai,Evans,,,,,,,,\n"),
    )
    .expect("write batch");
    let third_results = work.path().join("batch-0003.results.csv");
    let run = ingest(&cfg, &third_results, &third, &["--stop-after", "1"]);
    assert_eq!(run.code, 4, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("upload interrupted after 1 rows (simulated)"),
        "{}",
        run.stderr
    );
    assert!(!third_results.exists());
    let ids: Vec<String> = report(&cfg).iter().map(|r| r["Local ID"].clone()).collect();
    assert!(ids.contains(&"new-0003".to_string()) && !ids.contains(&"new-0004".to_string()));
    let run = ingest(&cfg, &third_results, &third, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);

    // A header that is not the template's: exit 1 naming the column, nothing done.
    let bad = work.path().join("bad.csv");
    std::fs::write(
        &bad,
        format!(
            "{}\nnew-0005,RXA,,Eve,Price,,,,,,,,\n",
            TEMPLATE.replace("Site", "Location")
        ),
    )
    .expect("write batch");
    let run = ingest(&cfg, &work.path().join("bad.results.csv"), &bad, &[]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("bad.csv: line 1, column 9: the heading is \"Location\""),
        "{}",
        run.stderr
    );
    assert!(!report(&cfg).iter().any(|r| r["Local ID"] == "new-0005"));
}
