//! Against a real OpenLDAP slapd on loopback (generic LDAP): entryUUID anchors,
//! client-side group expansion, paging, values that are not UTF-8, and the rule that a
//! read is complete or an error (server size limit, a connection cut mid-stream, a
//! stalled server).

mod common;
use common::process::run_bounded;
use common::*;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Command;
use std::sync::mpsc;
use std::time::Duration;

/// What a configuration reads: under `base`, entries matching `filter`; the one rule
/// includes those `under` with ODS code `ods` (TOML); `mapping` is the `[mapping]` table.
struct Scope<'a> {
    base: String,
    filter: &'a str,
    under: String,
    ods: &'a str,
    mapping: &'a str,
}

impl Scope<'_> {
    /// The fixture's people: inetOrgPerson entries, ODS code from `o`.
    fn people() -> Scope<'static> {
        let base = env("TANSYNC_TEST_SLAPD_BASE");
        Scope {
            under: format!("ou=people,{base}"),
            base,
            filter: "(objectClass=inetOrgPerson)",
            ods: "{ attribute = \"o\" }",
            mapping: "employee_id = \"employeeNumber\"",
        }
    }
}

fn config(
    dir: &tempfile::TempDir,
    url: &str,
    bind_dn: &str,
    pw_file: &str,
    extra: &str,
) -> PathBuf {
    config_for(dir, url, bind_dn, pw_file, extra, &Scope::people())
}

fn config_for(
    dir: &tempfile::TempDir,
    url: &str,
    bind_dn: &str,
    pw_file: &str,
    extra: &str,
    scope: &Scope,
) -> PathBuf {
    let snapshot = dir.path().join("snapshot.json");
    std::fs::write(
        &snapshot,
        r#"{"format": "tansync.snapshot/v1", "organisations": [
  {"ods_code": "RXA", "name": "A", "kind": "trust", "open": true, "cap": 5000},
  {"ods_code": "RXB", "name": "B", "kind": "trust", "open": true, "cap": 5000}], "persons": []}"#,
    )
    .unwrap();
    let rules = dir.path().join("rules.toml");
    std::fs::write(
        &rules,
        format!(
            "[[rule]]\nid = \"people\"\naction = \"include\"\nunder = [{}]\nods = {}\n",
            toml_str(&scope.under),
            scope.ods
        ),
    )
    .unwrap();
    let text = format!(
        r#"agent_id = "tansync-test"

[source]
kind = "ldap"
url = {url}
ca_file = {ca}
bind_dn = {bind}
bind_password_file = {pw}
base_dns = [{base}]
filter = {filter}
anchor = "entryUUID"
nested_groups = "expand"
page_size = 200
{extra}

[mapping]
{mapping}

[filters]
files = [{rules}]

[target]
kind = "snapshot"
path = {snapshot}

[agreements]
file = {agreements}
"#,
        url = toml_str(url),
        ca = toml_str(&env("TANSYNC_TEST_CA")),
        bind = toml_str(bind_dn),
        pw = toml_str(pw_file),
        base = toml_str(&scope.base),
        filter = toml_str(scope.filter),
        mapping = scope.mapping,
        rules = q(rules),
        snapshot = q(snapshot),
        agreements = q(repo().join("tests/fixtures/ad-agreements.toml")),
    );
    write_config(dir.path(), &text)
}

fn admin(dir: &tempfile::TempDir, url: &str, extra: &str) -> PathBuf {
    config(
        dir,
        url,
        &env("TANSYNC_TEST_SLAPD_BIND_DN"),
        &env("TANSYNC_TEST_SLAPD_PASSWORD_FILE"),
        extra,
    )
}

#[test]
fn generic_ldap_plan_with_entry_uuid_anchor() {
    let dir = tempfile::tempdir().unwrap();
    let (run, plan) = plan_json(&admin(&dir, &env("TANSYNC_TEST_SLAPD_LDAPS_URL"), ""));
    assert_eq!(run.code, 2);
    assert_eq!(plan["source"]["read"], 1101);
    assert_eq!(plan["summary"]["provision"], 1101);
    let ops = plan["operations"].as_array().unwrap();
    // entryUUID is a text anchor, lowercased.
    for o in ops {
        let x = o["external_id"].as_str().unwrap();
        assert_eq!(x.len(), 36, "{x}");
        assert_eq!(x, x.to_lowercase());
    }
    let y = ops
        .iter()
        .find(|o| o["attributes"]["family_name"] == "Ñúñez")
        .expect("Unicode entry");
    assert_eq!(y["attributes"]["given_name"], "Ývonne");
    assert_eq!(y["ods_code"], "RXA");
    // RXB's agreement shares no mobile; none here anyway, but employee ids were mapped.
    assert!(
        ops.iter()
            .any(|o| o["attributes"]["employee_id"] == "P00001")
    );
}

#[test]
fn a_server_size_limit_is_an_error_not_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &dir,
        &env("TANSYNC_TEST_SLAPD_LDAPS_URL"),
        &env("TANSYNC_TEST_SLAPD_LIMITED_BIND_DN"),
        &env("TANSYNC_TEST_SLAPD_LIMITED_PASSWORD_FILE"),
        "",
    );
    let out = dir.path().join("plan.json");
    let r = tansync(
        &cfg,
        &["plan", "--format", "json", "--out", out.to_str().unwrap()],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("sizeLimitExceeded"), "{}", r.stderr);
    assert!(r.stderr.contains("no plan was made"), "{}", r.stderr);
    assert!(r.stdout.is_empty());
    assert!(!out.exists(), "no plan file may be written");
}

/// A TCP proxy to slapd (on a port the OS picks) that forwards `limit` bytes from the
/// server, then cuts the connection (`release` is `None`) or stalls: keeps it open and
/// sends nothing more until `release` is signalled (or its sender dropped), which a test
/// does only once the client has exited — so the client's own timeout is the only way
/// its run can end.
fn proxy(limit: usize, release: Option<mpsc::Receiver<()>>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream_url = env("TANSYNC_TEST_SLAPD_LDAPS_URL");
    let upstream = upstream_url.trim_start_matches("ldaps://").to_string();
    std::thread::spawn(move || {
        // One client connection is all a plan makes.
        let Ok((client, _)) = listener.accept() else {
            return;
        };
        let server = TcpStream::connect(&upstream).unwrap();
        let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = c_read.read(&mut buf) {
                if n == 0 || s_write.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        });
        let (mut s_read, mut c_write) = (server, client);
        let mut sent = 0usize;
        let mut buf = [0u8; 8192];
        while let Ok(n) = s_read.read(&mut buf) {
            if n == 0 {
                break;
            }
            let n = n.min(limit - sent);
            if c_write.write_all(&buf[..n]).is_err() {
                break;
            }
            sent += n;
            if sent >= limit {
                break;
            }
        }
        if let Some(release) = release {
            // Hold the connection open, silent, until the test says the client is gone.
            let _ = release.recv();
        }
        let _ = c_write.shutdown(Shutdown::Both);
        let _ = s_read.shutdown(Shutdown::Both);
    });
    format!("ldaps://127.0.0.1:{port}")
}

#[test]
fn a_connection_cut_mid_read_is_an_error_not_a_plan() {
    let dir = tempfile::tempdir().unwrap();
    // Enough bytes for TLS, bind and a couple of pages, then the line goes dead.
    let cfg = admin(&dir, &proxy(60_000, None), "");
    let r = tansync(&cfg, &["plan", "--format", "json"]);
    assert_eq!(r.code, 1, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    assert!(r.stdout.is_empty(), "no plan: {}", r.stdout);
    assert!(
        r.stderr
            .contains("reading the source failed, so no plan was made"),
        "{}",
        r.stderr
    );
    eprintln!("cut: {}", r.stderr);
}

#[test]
fn a_stalled_server_times_out_as_an_error() {
    let dir = tempfile::tempdir().unwrap();
    // The proxy holds the connection, silent, until `release` goes: only after the run
    // has ended. So the run can end only through the client's own 2 s timeout; the
    // bound on the run (killed after 120 s, code -1) is a safety net against a hang.
    let (release, held) = mpsc::channel();
    let cfg = admin(
        &dir,
        &proxy(60_000, Some(held)),
        "operation_timeout_secs = 2",
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tansync"));
    cmd.arg("--config")
        .arg(&cfg)
        .args(["plan", "--format", "json"])
        .env_remove("TANSYNC_CONFIG");
    let (code, stdout, stderr) = run_bounded(cmd, dir.path(), "plan", Duration::from_secs(120));
    drop(release);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.to_lowercase().contains("timeout") || stderr.contains("timed out"),
        "{stderr}"
    );
    eprintln!("stall: {stderr}");
}

#[test]
fn starttls_and_cleartext_on_generic_ldap() {
    let dir = tempfile::tempdir().unwrap();
    let url = env("TANSYNC_TEST_SLAPD_LDAP_URL");
    let r = tansync(&admin(&dir, &url, ""), &["plan"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("refusing a simple bind over cleartext"),
        "{}",
        r.stderr
    );
    let (_, plan) = plan_json(&admin(&dir, &url, "starttls = true"));
    assert_eq!(plan["source"]["read"], 1101);
}

/// Add entries to slapd as its administrator (ldapmodify over verified LDAPS).
fn slapd_add(text: &str) {
    ad::modify(
        &env("TANSYNC_TEST_SLAPD_LDAPS_URL"),
        &env("TANSYNC_TEST_SLAPD_BIND_DN"),
        &env("TANSYNC_TEST_SLAPD_PASSWORD_FILE"),
        text,
        true,
    );
}

/// A value that is not UTF-8, as a real server returns it (ldap3 hands the attribute over
/// as binary): the plan names it — a rejection when the field is mandatory, a warning
/// when it is optional — instead of reading the field as empty. The entry is a
/// pilotPerson in an OU of its own, so the other tests' inetOrgPerson reads never see it.
#[test]
fn a_value_that_is_not_utf8_is_named_in_the_plan() {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let ou = format!("ou=utf8-{nanos},{}", env("TANSYNC_TEST_SLAPD_BASE"));
    // audio (Audio syntax, a blob; extensibleObject allows it here) holds any bytes:
    // here "Si\xe2n \xff".
    slapd_add(&format!(
        "dn: {ou}\nobjectClass: organizationalUnit\nou: utf8-{nanos}\n\n\
         dn: cn=Sian,{ou}\nobjectClass: pilotPerson\nobjectClass: extensibleObject\n\
         cn: Sian\nsn: Evans\naudio:: U2nibiD/\n"
    ));
    let plan_with = |mapping: &str| {
        let dir = tempfile::tempdir().unwrap();
        let scope = Scope {
            base: ou.clone(),
            filter: "(objectClass=pilotPerson)",
            under: ou.clone(),
            ods: "{ constant = \"RXA\" }",
            mapping,
        };
        let cfg = config_for(
            &dir,
            &env("TANSYNC_TEST_SLAPD_LDAPS_URL"),
            &env("TANSYNC_TEST_SLAPD_BIND_DN"),
            &env("TANSYNC_TEST_SLAPD_PASSWORD_FILE"),
            "",
            &scope,
        );
        plan_json(&cfg).1
    };
    // Optional (job title): provisioned without it, with a warning naming the attribute.
    let plan = plan_with("given_name = \"cn\"\njob_title = \"audio\"");
    assert_eq!(plan["source"]["read"], 1, "{plan}");
    assert_eq!(plan["summary"]["provision"], 1, "{plan}");
    let w = &plan["warnings"][0];
    assert_eq!(
        (&w["field"], &w["reason"]),
        (
            &serde_json::json!("job_title"),
            &serde_json::json!("invalid_value")
        ),
        "{plan}"
    );
    assert!(
        w["detail"]
            .as_str()
            .unwrap()
            .starts_with("audio is not valid UTF-8"),
        "{w}"
    );
    assert!(
        plan["operations"][0]["attributes"]
            .get("job_title")
            .is_none()
    );
    // Mandatory (given name): rejected, saying why, not "given_name is empty".
    let plan = plan_with("given_name = \"audio\"");
    assert_eq!(plan["summary"]["provision"], 0, "{plan}");
    let r = &plan["rejected"][0];
    assert_eq!(r["reason"], "invalid_value", "{plan}");
    assert!(
        r["detail"]
            .as_str()
            .unwrap()
            .starts_with("audio is not valid UTF-8"),
        "{r}"
    );
}
