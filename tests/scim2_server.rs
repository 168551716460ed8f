//! Against an independent SCIM 2.0 server: `scim2-server` (PyPI), in memory on loopback,
//! serving the RFC 7643 schemas plus the NHS extension exactly as this project defines
//! it (`directory::schema`). The agent must work with it as with the reference
//! directory: read the accounts page by page, provision (POST), update (PATCH with
//! If-Match), mark leavers — and a plan right after each apply must find nothing to do.
//! Everything is checked through scim2-server's own HTTP API, never through the agent.
//!
//! The executable comes from `TANSYNC_TEST_SCIM2_SERVER` (set by tests/harness)
//! (`pip install scim2-server`). Missing, the test fails: it never skips. It is run
//! through `tests/harness/scim2_server_port0.py` with the virtualenv's python, on a port
//! the OS picks (`--port 0`), and the test waits for the `listening on URL` line that
//! names it.

mod common;
use common::process::{KillOnDrop, Lines};
use common::*;
use nhs_model::schema;
use serde_json::{Value, json};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tansync::scim::{ENTERPRISE_SCHEMA, NHS_SCHEMA};

const TOKEN: &str = "scim2-server-test-token";
const AGENT: &str = "tansync-scim2";

/// The pinned scim2-server the harness installs (tests/harness/install-deps.sh).
fn scim2_server_exe() -> PathBuf {
    let p = PathBuf::from(env("TANSYNC_TEST_SCIM2_SERVER"));
    assert!(
        p.is_file(),
        "TANSYNC_TEST_SCIM2_SERVER={} does not exist; run bash tests/harness/install-deps.sh",
        p.display()
    );
    p
}

/// The launcher that runs scim2-server on port 0 and prints `listening on URL`.
fn launcher() -> PathBuf {
    repo().join("tests/harness/scim2_server_port0.py")
}

/// The python of the virtualenv that holds scim2-server (beside its executable).
fn venv_python() -> PathBuf {
    let p = scim2_server_exe().with_file_name("python");
    assert!(
        p.exists(),
        "{} does not exist: TANSYNC_TEST_SCIM2_SERVER should be the harness's virtualenv",
        p.display()
    );
    p
}

/// How long scim2-server may take to print `listening on URL` (a safety net).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// A running scim2-server; dropping it kills the process (by its PID) and reaps it.
struct Server {
    /// Declared first: the process goes before its stdout reader does.
    _process: KillOnDrop,
    /// Read on to the end, so the server never blocks on a full pipe.
    stdout: Lines,
    port: u16,
    log: PathBuf,
}

impl Server {
    /// Start with the given extra arguments on a port the OS picks; return once its
    /// socket listens (it says so on stdout).
    fn start(dir: &Path, name: &str, args: &[&std::ffi::OsStr]) -> Server {
        let python = venv_python();
        let log = dir.join(format!("{name}.log"));
        let mut child = Command::new(&python)
            .arg(launcher())
            .args(["--hostname", "127.0.0.1", "--port", "0"])
            .args(["--bearer-token", TOKEN])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("server log"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", python.display()));
        let stdout = Lines::new(child.stdout.take().expect("piped stdout"));
        let mut s = Server {
            _process: KillOnDrop(child),
            stdout,
            port: 0,
            log,
        };
        let line = s
            .stdout
            .wait_for(START_TIMEOUT, |l| l.starts_with("listening on "))
            .unwrap_or_else(|e| panic!("scim2-server did not start ({e}):\n{}", s.log_text()));
        s.port = line
            .strip_prefix("listening on http://127.0.0.1:")
            .and_then(|rest| rest.strip_suffix("/v2"))
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("unexpected line from the launcher: {line:?}"));
        assert_ne!(s.port, 0, "{line}");
        let (status, body) = s.get("/ServiceProviderConfig");
        assert_eq!(status, 200, "{body}\n{}", s.log_text());
        s
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}/v2", self.port)
    }

    /// What the server printed: stdout so far, then its log (stderr).
    fn log_text(&self) -> String {
        format!(
            "{}{}",
            self.stdout.text(),
            std::fs::read_to_string(&self.log).unwrap_or_default()
        )
    }

    /// GET a path under `/v2`: (status, JSON body). Plain HTTP/1.0, as the server speaks.
    fn get(&self, path: &str) -> (u16, Value) {
        let Ok(mut conn) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return (0, Value::Null);
        };
        conn.set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            conn,
            "GET /v2{path} HTTP/1.0\r\nHost: 127.0.0.1:{}\r\nAuthorization: Bearer {TOKEN}\r\n\
             Accept: application/scim+json\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut raw = Vec::new();
        if conn.read_to_end(&mut raw).is_err() {
            return (0, Value::Null);
        }
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, serde_json::from_str(body).unwrap_or(Value::Null))
    }

    /// The one user with this externalId, as the server holds it.
    fn user(&self, external_id: &str) -> Value {
        let filter = format!("externalId eq \"{external_id}\"");
        let (status, list) = self.get(&format!("/Users?filter={}", escape(&filter)));
        assert_eq!(status, 200, "filter by externalId: {list}");
        assert_eq!(list["totalResults"], 1, "{external_id}: {list}");
        list["Resources"][0].clone()
    }
}

fn escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The schema and resource-type files for scim2-server: its own RFC 7643 defaults (asked
/// of a throwaway instance, so they match the installed version) plus the NHS extension
/// as `/Schemas` of the reference directory publishes it, attached to User as there.
fn schema_files(dir: &Path) -> (PathBuf, PathBuf) {
    let (mut schemas, mut types) = {
        let plain = Server::start(dir, "defaults", &[]);
        let (s1, schemas) = plain.get("/Schemas");
        let (s2, types) = plain.get("/ResourceTypes");
        assert!(s1 == 200 && s2 == 200, "discovery: {schemas} {types}");
        (schemas["Resources"].clone(), types["Resources"].clone())
    };
    let codes = ["RXA".to_string(), "RXA80".to_string()];
    schemas
        .as_array_mut()
        .expect("schema list")
        .push(schema::schema_json(&schema::NHS, "http://unused", &codes));
    let ours = schema::user_resource_type("http://unused");
    let nhs_ext = ours["schemaExtensions"]
        .as_array()
        .and_then(|l| l.iter().find(|e| e["schema"] == NHS_SCHEMA))
        .expect("the reference User resource type carries the NHS extension")
        .clone();
    let user = types
        .as_array_mut()
        .and_then(|l| l.iter_mut().find(|t| t["id"] == "User"))
        .expect("a User resource type");
    user["schemaExtensions"]
        .as_array_mut()
        .expect("schemaExtensions")
        .push(nhs_ext);
    let (s, t) = (dir.join("schemas.json"), dir.join("resource-types.json"));
    std::fs::write(&s, serde_json::to_vec_pretty(&schemas).unwrap()).unwrap();
    std::fs::write(&t, serde_json::to_vec_pretty(&types).unwrap()).unwrap();
    (s, t)
}

// Four people: Siân and Aisha at Northgate General (RXA), Rhys and Ffion at Westfield
// (RXA80, whose agreement shares no mobile numbers).
const SIAN: &str = "13121110-1514-1716-1819-1a1b1c1d1e1f";
const AISHA: &str = "23222120-2524-2726-2829-2a2b2c2d2e2f";
const RHYS: &str = "33323130-3534-3736-3839-3a3b3c3d3e3f";
const FFION: &str = "43424140-4544-4746-4849-4a4b4c4d4e4f";

fn person(cn: &str, ou: &str, guid_b64: &str, attrs: &str) -> String {
    format!(
        "dn: CN={cn},OU={ou},OU=Staff,DC=northgate,DC=example\nobjectClass: top\n\
         objectClass: person\nobjectClass: organizationalPerson\nobjectClass: user\n\
         objectGUID:: {guid_b64}\n{attrs}\n\n"
    )
}

/// The export; `second` is the next day's: Siân promoted, Aisha's telephone gone and a
/// mobile added, Rhys disabled, Ffion deleted from AD.
fn ldif(second: bool) -> String {
    let general = "Northgate General";
    let wf = "Westfield Community";
    let mut out = String::from("version: 1\n\n");
    out += &person(
        "Sian Evans",
        general,
        "EBESExQVFhcYGRobHB0eHw==",
        &format!(
            "givenName:: U2nDom4=\nsn: Evans\ndisplayName:: U2nDom4gRXZhbnM=\ntitle: {}\n\
             department: Emergency Department\nphysicalDeliveryOfficeName: Northgate General\n\
             mobile: 07123 456001\ntelephoneNumber: 0113 496 0101\nemployeeID: NG1001\n\
             userAccountControl: 512",
            if second {
                "Ward Manager"
            } else {
                "Staff Nurse"
            }
        ),
    );
    out += &person(
        "Aisha Patel",
        general,
        "ICEiIyQlJicoKSorLC0uLw==",
        &format!(
            "givenName: Aisha\nsn: Patel\ndisplayName: Aisha Patel\ntitle: Pharmacist\n\
             department: Pharmacy\nphysicalDeliveryOfficeName: Northgate General\n{}\
             employeeID: NG1004\nuserAccountControl: 512",
            if second {
                "mobile: 07123 456004\n"
            } else {
                "telephoneNumber: 0113 496 0104\n"
            }
        ),
    );
    out += &person(
        "Rhys Hughes",
        wf,
        "MDEyMzQ1Njc4OTo7PD0+Pw==",
        &format!(
            "givenName: Rhys\nsn: Hughes\ndisplayName: Rhys Hughes\ntitle: District Nurse\n\
             department: Community Nursing\nmobile: 07123 456006\nemployeeID: NG2001\n\
             userAccountControl: {}",
            if second { 514 } else { 512 }
        ),
    );
    if !second {
        out += &person(
            "Ffion Jones",
            wf,
            "QEFCQ0RFRkdISUpLTE1OTw==",
            "givenName: Ffion\nsn: Jones\ndisplayName: Ffion Jones\ntitle: Physiotherapist\n\
             department: Therapies\ntelephoneNumber: 0113 496 0201\nemployeeID: NG2002\n\
             userAccountControl: 512",
        );
    }
    out
}

fn agent_config(dir: &Path, server: &Server) -> PathBuf {
    let token = dir.join("token");
    write_secret(&token, &format!("{TOKEN}\n"));
    // scim2-server has no /Organisations: the registry comes from a file.
    let orgs = dir.join("organisations.json");
    std::fs::write(
        &orgs,
        json!([
            {"ods_code": "RXA", "name": "Northgate Healthcare NHS Trust", "kind": "trust",
             "open": true, "cap": 50},
            {"ods_code": "RXA80", "name": "Northgate Community Services (Westfield)",
             "kind": "trust", "open": true, "cap": 50},
        ])
        .to_string(),
    )
    .unwrap();
    let quickstart = repo().join("examples/quickstart");
    write_config(
        dir,
        &format!(
            r#"agent_id = "{AGENT}"

[source]
kind = "ldif"
path = {ldif}

[filters]
files = [{filters}]

[target]
kind = "scim"
url = "{url}"
token_file = {token}
organisations_file = {orgs}
# One account a page: the read must follow startIndex through every page.
page_size = 1

[agreements]
file = {agreements}

[state]
dir = {state}
"#,
            ldif = q(dir.join("export.ldif")),
            filters = q(repo().join("filters/single-trust.toml")),
            url = server.base(),
            token = q(&token),
            orgs = q(&orgs),
            agreements = q(quickstart.join("agreements.toml")),
            state = q(dir.join("state")),
        ),
    )
}

/// Plan to a file, apply exactly that plan, and return the plan.
fn plan_and_apply(cfg: &Path, dir: &Path, server: &Server) -> Value {
    let (run, plan) = plan_json(cfg);
    assert_eq!(run.code, 2, "changes expected: {}", run.stdout);
    let file = dir.join("plan.json");
    std::fs::write(&file, &run.stdout).unwrap();
    let applied = tansync(
        cfg,
        &["apply", "--plan", file.to_str().unwrap(), "--now", NOW],
    );
    assert_eq!(
        applied.code,
        0,
        "apply failed:\n{}\n{}\nscim2-server log:\n{}",
        applied.stdout,
        applied.stderr,
        server.log_text()
    );
    plan
}

fn assert_no_changes(cfg: &Path) {
    let (run, plan) = plan_json(cfg);
    assert_eq!(
        (run.code, &plan["operations"]),
        (0, &json!([])),
        "a plan right after apply must find nothing to do: {plan:#}"
    );
    assert_eq!(plan["blocked"], json!([]), "{plan:#}");
}

fn ops_by_kind(plan: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["kind"].as_str().unwrap().to_string(),
                o["external_id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn phones(u: &Value) -> Value {
    u["phoneNumbers"].clone()
}

#[test]
fn provision_update_and_remove_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (schemas, types) = schema_files(dir.path());
    let server = Server::start(
        dir.path(),
        "scim2-server",
        &[
            "--schema".as_ref(),
            schemas.as_os_str(),
            "--resource-type".as_ref(),
            types.as_os_str(),
        ],
    );
    let (status, rt) = server.get("/ResourceTypes/User");
    assert_eq!(status, 200);
    assert!(
        rt["schemaExtensions"].to_string().contains(NHS_SCHEMA),
        "User carries the NHS extension: {rt}"
    );
    std::fs::write(dir.path().join("export.ldif"), ldif(false)).unwrap();
    let cfg = agent_config(dir.path(), &server);

    // Day one: four provisions.
    let plan = plan_and_apply(&cfg, dir.path(), &server);
    assert_eq!(plan["target"]["kind"], "scim");
    assert_eq!(plan["target"]["read"], 0);
    assert_eq!(
        ops_by_kind(&plan),
        [SIAN, AISHA, RHYS, FFION]
            .map(|x| ("provision".to_string(), x.to_string()))
            .into_iter()
            .collect::<Vec<_>>()
    );
    let sian = server.user(SIAN);
    assert_eq!(sian["userName"], "sian.evans@nhs.net");
    assert_eq!(
        sian["name"],
        json!({"givenName": "Siân", "familyName": "Evans"})
    );
    assert_eq!(sian["displayName"], "Siân Evans");
    assert_eq!(sian["title"], "Staff Nurse");
    assert_eq!(sian["active"], true);
    let mut p = phones(&sian).as_array().cloned().unwrap_or_default();
    p.sort_by(|a, b| a["type"].as_str().cmp(&b["type"].as_str()));
    assert_eq!(
        Value::Array(p),
        json!([{"type": "mobile", "value": "+447123456001"},
               {"type": "work", "value": "+441134960101"}])
    );
    assert_eq!(
        sian[ENTERPRISE_SCHEMA],
        json!({"department": "Emergency Department", "employeeNumber": "NG1001"})
    );
    assert_eq!(
        sian[NHS_SCHEMA],
        json!({"odsCode": "RXA", "site": "Northgate General", "status": "active",
               "managedBy": AGENT})
    );
    let rhys = server.user(RHYS);
    assert_eq!(rhys[NHS_SCHEMA]["odsCode"], "RXA80");
    assert_eq!(rhys[NHS_SCHEMA]["site"], "Westfield Clinic");
    // The RXA80 agreement shares no mobile numbers.
    assert_eq!(phones(&rhys), Value::Null, "{rhys}");
    assert_eq!(
        phones(&server.user(AISHA)),
        json!([{"type": "work", "value": "+441134960104"}])
    );
    assert_no_changes(&cfg);

    // Day two: an update of a title, a telephone swapped for a mobile, two leavers.
    std::fs::write(dir.path().join("export.ldif"), ldif(true)).unwrap();
    let plan = plan_and_apply(&cfg, dir.path(), &server);
    assert_eq!(plan["target"]["read"], 4, "all four read across pages");
    let mut want = vec![
        ("remove".to_string(), FFION.to_string()),
        ("remove".to_string(), RHYS.to_string()),
        ("update".to_string(), AISHA.to_string()),
        ("update".to_string(), SIAN.to_string()),
    ];
    want.sort();
    assert_eq!(ops_by_kind(&plan), want);
    for op in plan["operations"].as_array().unwrap() {
        // Every write names the version it was planned from (If-Match).
        assert!(
            op["etag"].as_str().is_some_and(|e| !e.is_empty()),
            "no etag: {op}"
        );
    }
    let sian = server.user(SIAN);
    assert_eq!(sian["title"], "Ward Manager");
    assert_eq!(sian[NHS_SCHEMA]["status"], "active");
    assert_eq!(
        phones(&server.user(AISHA)),
        json!([{"type": "mobile", "value": "+447123456004"}]),
        "the telephone entry is gone whole and the mobile added"
    );
    for leaver in [RHYS, FFION] {
        let u = server.user(leaver);
        assert_eq!(u[NHS_SCHEMA]["status"], "leaver", "{u}");
        assert_eq!(u["active"], false, "{u}");
        assert_eq!(u[NHS_SCHEMA]["managedBy"], AGENT);
    }
    assert_no_changes(&cfg);
}
