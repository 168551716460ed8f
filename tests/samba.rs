//! Against a real Samba AD DC on loopback (started by tests/harness): paging past 1,000,
//! objectGUID handling, disabled users, nested groups, OU scoping, Unicode, rejections,
//! eligibility, join, verified LDAPS/StartTLS, refusals, and the golden plan.

mod common;
use common::*;
use serde_json::Value;
use std::path::PathBuf;

struct Opts<'a> {
    url: String,
    starttls: bool,
    ca: String,
    password_file: String,
    extra: &'a str,
}

impl Default for Opts<'_> {
    fn default() -> Self {
        Opts {
            url: env("TANSYNC_TEST_SAMBA_LDAPS_URL"),
            starttls: false,
            ca: env("TANSYNC_TEST_CA"),
            password_file: env("TANSYNC_TEST_SAMBA_PASSWORD_FILE"),
            extra: "",
        }
    }
}

fn config(dir: &tempfile::TempDir, o: Opts) -> PathBuf {
    let base = env("TANSYNC_TEST_SAMBA_BASE");
    let text = format!(
        r#"agent_id = "tansync-test"

[source]
kind = "ldap"
url = {url}
starttls = {starttls}
ca_file = {ca}
bind_dn = {bind}
bind_password_file = {pw}
base_dns = [{staff}, {svc}]
page_size = 500
{extra}

[filters]
files = [{filters}]

[target]
kind = "snapshot"
path = {snapshot}

[agreements]
file = {agreements}
"#,
        url = toml_str(&o.url),
        starttls = o.starttls,
        ca = toml_str(&o.ca),
        bind = toml_str(&env("TANSYNC_TEST_SAMBA_BIND_DN")),
        pw = toml_str(&o.password_file),
        staff = toml_str(&format!("OU=NHS Staff,{base}")),
        svc = toml_str(&format!("OU=Service Accounts,{base}")),
        extra = o.extra,
        filters = q(repo().join("tests/fixtures/ad-filters.toml")),
        snapshot = q(fixture("snapshot.json")),
        agreements = q(repo().join("tests/fixtures/ad-agreements.toml")),
    );
    write_config(dir.path(), &text)
}

fn find<'a>(list: &'a Value, xid: &str) -> Vec<&'a Value> {
    list.as_array()
        .unwrap()
        .iter()
        .filter(|v| v["external_id"] == xid)
        .collect()
}

#[test]
fn plan_from_samba_matches_every_fixture_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let (run, plan) = plan_json(&config(&dir, Opts::default()));
    assert_eq!(run.code, 2, "changes are expected: {}", run.stderr);
    assert_eq!(plan["format"], "tansync.plan/v1");
    assert_eq!(plan["source"]["kind"], "ldap");
    // 1,248 person entries in one search with 500-entry pages: paging had to work.
    let read = plan["source"]["read"].as_u64().unwrap();
    assert_eq!(read, 1235, "every user of the fixture is read exactly once");
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let ops = &plan["operations"];
    let blocked = &plan["blocked"];
    let rejected = &plan["rejected"];
    for (name, e) in expected.as_object().unwrap() {
        let xid = e["external_id"].as_str().unwrap();
        let (o, b, r) = (find(ops, xid), find(blocked, xid), find(rejected, xid));
        if let Some(kind) = e.get("op") {
            assert_eq!(
                o.len(),
                1,
                "{name}: one operation expected, plan has {o:?} / blocked {b:?} / rejected {r:?}"
            );
            let op = o[0];
            assert_eq!(&op["kind"], kind, "{name}");
            for (k, plan_key) in [
                ("ods_code", "ods_code"),
                ("from", "from_ods_code"),
                ("reason", "reason"),
                ("rule", "rule"),
            ] {
                if let Some(v) = e.get(k) {
                    assert_eq!(&op[plan_key], v, "{name}: {plan_key}");
                }
            }
            for k in ["given_name", "family_name"] {
                if let Some(v) = e.get(k) {
                    assert_eq!(&op["attributes"][k], v, "{name}: Unicode kept intact");
                }
            }
            if let Some(fields) = e.get("fields") {
                let got: Vec<&Value> = op["changes"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| &c["field"])
                    .collect();
                let want: Vec<&Value> = fields.as_array().unwrap().iter().collect();
                assert_eq!(got, want, "{name}: changed fields (no false changes)");
            }
            if let Some(w) = e.get("warning") {
                let ws = find(&plan["warnings"], xid);
                assert_eq!(ws.len(), 1, "{name}: one warning expected: {ws:?}");
                assert_eq!(ws[0]["field"], w["field"], "{name}");
                assert_eq!(ws[0]["reason"], w["reason"], "{name}");
                let field = w["field"].as_str().unwrap();
                assert!(
                    op["attributes"].get(field).is_none(),
                    "{name}: the dropped {field} must not be sent"
                );
            }
            if let Some(s) = e.get("stripped") {
                assert_eq!(&op["stripped"], s, "{name}");
                assert!(
                    op["attributes"].get("mobile").is_none(),
                    "{name}: mobile must not be sent"
                );
            }
        } else if let Some(reason) = e.get("blocked") {
            assert_eq!(b.len(), 1, "{name}: blocked expected; ops {o:?}");
            assert_eq!(&b[0]["reason"], reason, "{name}");
            assert!(o.is_empty(), "{name}");
        } else if let Some(reason) = e.get("rejected") {
            assert_eq!(r.len(), 1, "{name}: rejected expected; ops {o:?}");
            assert_eq!(&r[0]["reason"], reason, "{name}");
            assert!(
                r[0]["dn"].as_str().unwrap().contains(name.as_str()),
                "{name}: the DN names the entry"
            );
        } else if e.get("excluded").is_some() || e.get("none").is_some() {
            assert!(
                o.is_empty() && b.is_empty() && r.is_empty(),
                "{name}: nothing expected, got {o:?} {b:?} {r:?}"
            );
        } else if name == "care-cap" {
            let ods = e["ods_code"].as_str().unwrap();
            let prov = ops
                .as_array()
                .unwrap()
                .iter()
                .filter(|o| o["kind"] == "provision" && o["ods_code"] == ods)
                .count();
            let capped = blocked
                .as_array()
                .unwrap()
                .iter()
                .filter(|b| b["reason"] == "account_cap" && b["ods_code"] == ods)
                .count();
            assert_eq!(
                (prov as u64, capped as u64),
                (
                    e["provision"].as_u64().unwrap(),
                    e["blocked_account_cap"].as_u64().unwrap()
                )
            );
        } else {
            panic!("{name}: unknown expectation {e}");
        }
    }
}

#[test]
fn golden_plan_for_the_fixture() {
    let dir = tempfile::tempdir().unwrap();
    let (run, _) = plan_json(&config(&dir, Opts::default()));
    let golden = repo().join("tests/golden/samba-plan.json");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &run.stdout).unwrap();
    }
    let want = std::fs::read_to_string(&golden)
        .expect("tests/golden/samba-plan.json (UPDATE_GOLDEN=1 writes it)");
    assert!(
        run.stdout == want,
        "plan differs from {}; review the difference and rerun with UPDATE_GOLDEN=1 if it is intended",
        golden.display()
    );
}

#[test]
fn starttls_reads_exactly_what_ldaps_reads() {
    let dir = tempfile::tempdir().unwrap();
    let (_, ldaps) = plan_json(&config(&dir, Opts::default()));
    let dir2 = tempfile::tempdir().unwrap();
    let (_, starttls) = plan_json(&config(
        &dir2,
        Opts {
            url: env("TANSYNC_TEST_SAMBA_LDAP_URL"),
            starttls: true,
            ..Opts::default()
        },
    ));
    assert_eq!(ldaps["fingerprint"], starttls["fingerprint"]);
    assert_eq!(ldaps["summary"], starttls["summary"]);
}

#[test]
fn a_wrong_ca_is_refused_and_no_plan_is_made() {
    for (url, starttls) in [
        (env("TANSYNC_TEST_SAMBA_LDAPS_URL"), false),
        (env("TANSYNC_TEST_SAMBA_LDAP_URL"), true),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = config(
            &dir,
            Opts {
                url,
                starttls,
                ca: env("TANSYNC_TEST_WRONG_CA"),
                ..Opts::default()
            },
        );
        let r = tansync(&cfg, &["plan", "--format", "json"]);
        assert_eq!(r.code, 1, "{}", r.stderr);
        assert!(r.stdout.is_empty(), "no plan on stdout: {}", r.stdout);
        assert!(
            r.stderr.contains("UnknownIssuer") || r.stderr.contains("certificate"),
            "{}",
            r.stderr
        );
    }
}

#[test]
fn cleartext_simple_bind_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir,
        Opts {
            url: env("TANSYNC_TEST_SAMBA_LDAP_URL"),
            ..Opts::default()
        },
    );
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("refusing a simple bind over cleartext LDAP"),
        "{}",
        r.stderr
    );
    // Even when the operator allows it, Samba itself refuses the cleartext bind.
    let cfg = config(
        &dir,
        Opts {
            url: env("TANSYNC_TEST_SAMBA_LDAP_URL"),
            extra: "allow_cleartext_bind = true",
            ..Opts::default()
        },
    );
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("strongerAuthRequired"), "{}", r.stderr);
}

#[test]
fn wrong_password_is_a_clear_error_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    write_secret(&pw, "Not-The-Password-42\n");
    let cfg = config(
        &dir,
        Opts {
            password_file: pw.display().to_string(),
            ..Opts::default()
        },
    );
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("invalidCredentials"), "{}", r.stderr);
    assert!(!r.stderr.contains("Not-The-Password-42") && !r.stdout.contains("Not-The-Password-42"));
}

#[test]
fn explain_shows_nested_group_rule_and_plan() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(&dir, Opts::default());
    let r = tansync(&cfg, &["explain", "agency.nurse1", "--now", NOW]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("✓ nested member of \"CN=NHSmail Eligible,OU=Groups,DC=tansync,DC=test\""),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("→ included by rule eligible-contractors"),
        "{}",
        r.stdout
    );
    assert!(r.stdout.contains("\"kind\": \"provision\""), "{}", r.stdout);
    // By DN, for a user the rules exclude.
    let r = tansync(
        &cfg,
        &[
            "explain",
            "CN=contractor.plain,OU=Contractors,OU=NHS Staff,DC=tansync,DC=test",
            "--now",
            NOW,
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("→ excluded by rule contractors"),
        "{}",
        r.stdout
    );
    // By objectGUID, for a rejected entry: the reason is shown.
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap();
    let guid = expected["bad.mobile"]["external_id"]
        .as_str()
        .unwrap()
        .to_uppercase();
    let r = tansync(&cfg, &["explain", &guid, "--now", NOW]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("invalid_mobile") && r.stdout.contains("is not a UK number"),
        "{}",
        r.stdout
    );
}

#[test]
fn check_reports_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let r = tansync(&config(&dir, Opts::default()), &["check"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("paged results: yes"), "{}", r.stdout);
    assert!(r.stdout.contains("in-chain matching: yes"), "{}", r.stdout);
    assert!(r.stdout.contains("1235 entries"), "{}", r.stdout);
}
