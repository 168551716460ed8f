//! The binary without servers: the quickstart, the plan contract, determinism, exit
//! codes, and configuration errors that name the file, the key and the problem.

mod common;
use common::*;
use std::path::Path;

fn quickstart() -> std::path::PathBuf {
    repo().join("examples/quickstart/tansync.toml")
}

#[test]
fn quickstart_plan_honours_the_contract() {
    let (run, plan) = plan_json(&quickstart());
    assert_eq!(run.code, 2, "changes present → exit 2");
    assert_eq!(plan["format"], "tansync.plan/v1");
    assert_eq!(plan["generated_at"], NOW);
    assert!(plan["fingerprint"].as_str().unwrap().starts_with("sha256:"));
    let s = &plan["summary"];
    for k in [
        "provision",
        "update",
        "remove",
        "move",
        "restore",
        "join",
        "unchanged",
        "blocked",
        "rejected",
    ] {
        assert!(s[k].is_u64(), "summary.{k}");
    }
    let counted: u64 = ["provision", "update", "remove", "move", "restore", "join"]
        .iter()
        .map(|k| s[k].as_u64().unwrap())
        .sum();
    assert_eq!(counted, plan["operations"].as_array().unwrap().len() as u64);
    let kinds: Vec<&str> = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    for k in ["provision", "update", "remove", "move", "restore", "join"] {
        assert!(kinds.contains(&k), "the quickstart shows a {k}");
    }
    let mv = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "move")
        .unwrap();
    assert_eq!(
        (mv["from_ods_code"].as_str(), mv["ods_code"].as_str()),
        (Some("RXA"), Some("RXA80"))
    );
    let upd = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "update")
        .unwrap();
    assert_eq!(upd["changes"][0]["field"], "job_title");
    assert_eq!(upd["changes"][0]["old"], "Cardiology Registrar");
    assert_eq!(upd["changes"][0]["new"], "Consultant Cardiologist");
}

#[test]
fn plans_are_byte_identical_and_out_file_matches() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("plan.json");
    let a = tansync(
        &quickstart(),
        &[
            "plan",
            "--format",
            "json",
            "--now",
            NOW,
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let b = tansync(&quickstart(), &["plan", "--format", "json", "--now", NOW]);
    assert_eq!(a.stdout, b.stdout);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), a.stdout);
    // The human view, when not a terminal, has no colour codes.
    let h = tansync(&quickstart(), &["plan", "--now", NOW]);
    assert_eq!(h.code, 2);
    assert!(
        h.stdout
            .contains("Summary: 4 provision, 1 update, 2 remove, 1 move, 1 restore, 1 join"),
        "{}",
        h.stdout
    );
    assert!(
        h.stdout
            .contains("job_title  \"Cardiology Registrar\" → \"Consultant Cardiologist\""),
        "{}",
        h.stdout
    );
    assert!(
        !h.stdout.contains('\u{1b}'),
        "no ANSI escapes when not a TTY"
    );
}

/// A self-contained config in `dir` around a one-person LDIF.
fn mini(dir: &Path, snapshot_persons: &str, extra: &str) -> std::path::PathBuf {
    std::fs::write(
        dir.join("src.ldif"),
        "dn: CN=Ann Lee,OU=Staff,DC=x\nobjectClass: user\nobjectGUID:: dqxArwESBUKD+6FwcQnotA==\ngivenName: Ann\nsn: Lee\n\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("rules.toml"),
        "[[rule]]\nid = \"staff\"\naction = \"include\"\nunder = [\"OU=Staff,DC=x\"]\nods = { constant = \"RXA\" }\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("snap.json"),
        format!(r#"{{"format":"tansync.snapshot/v1","organisations":[{{"ods_code":"RXA","kind":"trust","open":true}}],"persons":[{snapshot_persons}]}}"#),
    )
    .unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/ad-agreements.toml"),
        dir.join("agreements.toml"),
    )
    .unwrap();
    write_config(
        dir,
        &format!(
            "agent_id = \"a1\"\n{extra}\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[filters]\nfiles = [\"rules.toml\"]\n[target]\nkind = \"snapshot\"\npath = \"snap.json\"\n[agreements]\nfile = \"agreements.toml\"\n"
        ),
    )
}

#[test]
fn no_changes_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let acct = r#"{"target_id":"t1","external_id":"af40ac76-1201-4205-83fb-a1707109e8b4","ods_code":"RXA","status":"active","managed_by":"a1","attributes":{"given_name":"Ann","family_name":"LEE","display_name":"Ann Lee"}}"#;
    let cfg = mini(dir.path(), acct, "");
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("No changes"));
}

#[test]
fn empty_source_with_managed_accounts_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let acct = r#"{"target_id":"t1","external_id":"00000000-0000-0000-0000-000000000001","ods_code":"RXA","status":"active","managed_by":"a1"}"#;
    let cfg = mini(dir.path(), acct, "");
    std::fs::write(dir.path().join("src.ldif"), "# nothing exported\n").unwrap();
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("refusing to plan their removal"),
        "{}",
        r.stderr
    );
    // Explicitly allowed: the removal is planned.
    let cfg = mini(dir.path(), acct, "[safety]\nallow_empty_source = true");
    std::fs::write(dir.path().join("src.ldif"), "").unwrap();
    let (run, plan) = plan_json(&cfg);
    assert_eq!(run.code, 2);
    assert_eq!(plan["operations"][0]["reason"], "not_in_source");
}

#[test]
fn a_source_whose_every_entry_in_scope_is_rejected_is_refused_naming_the_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let acct = r#"{"target_id":"t1","external_id":"00000000-0000-0000-0000-000000000001","ods_code":"RXA","status":"active","managed_by":"a1"}"#;
    let cfg = mini(dir.path(), acct, "");
    // Ann is in scope, but without a family name.
    let ldif = std::fs::read_to_string(dir.path().join("src.ldif")).unwrap();
    std::fs::write(dir.path().join("src.ldif"), ldif.replace("sn: Lee\n", "")).unwrap();
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.is_empty(), "{}", r.stdout);
    assert!(
        r.stderr.contains(
            "every entry in scope was rejected (1 rejected: missing_mandatory: 1), so no one is left in scope while the directory holds 1 accounts this agent manages; refusing to plan their removal"
        ),
        "{}",
        r.stderr
    );
}

#[test]
fn a_cut_export_exits_1_naming_the_line_and_prints_no_plan() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = mini(dir.path(), "", "");
    let whole = std::fs::read_to_string(dir.path().join("src.ldif")).unwrap();
    assert_eq!(tansync(&cfg, &["plan"]).code, 2, "the whole export plans");
    let out = dir.path().join("plan.json");
    // Lines: 1 dn, 2 objectClass, 3 objectGUID, 4 givenName, 5 sn, 6 the empty line.
    for (cut, line, problem) in [
        (
            whole.len() - 1,
            5,
            "ends inside the record that starts on line 1",
        ),
        (whole.len() - 4, 5, "ends inside this line"),
        (whole.find("sn:").unwrap(), 4, "ends inside the record"),
        (whole.find("\n").unwrap() + 1, 1, "ends inside the record"),
    ] {
        std::fs::write(dir.path().join("src.ldif"), &whole[..cut]).unwrap();
        for format in ["human", "json"] {
            let r = tansync(
                &cfg,
                &["plan", "--format", format, "--out", out.to_str().unwrap()],
            );
            assert_eq!(r.code, 1, "cut at {cut}: {}", r.stdout);
            assert!(r.stdout.is_empty(), "cut at {cut}: {}", r.stdout);
            assert!(!out.exists(), "cut at {cut}: a plan file was written");
            assert!(
                r.stderr.contains(&format!("src.ldif, line {line}: "))
                    && r.stderr.contains(problem)
                    && r.stderr.contains("no plan was made"),
                "cut at {cut}: {}",
                r.stderr
            );
        }
    }
}

fn config_error(cfg_text_extra: &str, rules: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = mini(dir.path(), "", cfg_text_extra);
    if let Some(r) = rules {
        std::fs::write(dir.path().join("rules.toml"), r).unwrap();
    }
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(r.stdout.is_empty());
    r.stderr
}

#[test]
fn configuration_errors_name_file_key_and_problem() {
    let e = config_error("colour = \"blue\"", None);
    assert!(
        e.contains("tansync.toml") && e.contains("unknown field `colour`"),
        "{e}"
    );
    let e = config_error("[safety]\nmax_removal_percent = 140", None);
    assert!(
        e.contains("safety.max_removal_percent: must be between 0 and 100"),
        "{e}"
    );
    let e = config_error(
        "",
        Some(
            "[[rule]]\nid = \"bad\"\naction = \"include\"\ndn_regex = [\"([\"]\nods = { constant = \"RXA\" }\n",
        ),
    );
    assert!(
        e.contains("rules.toml: rule \"bad\" (#1): dn_regex: invalid regex"),
        "{e}"
    );
    let e = config_error(
        "",
        Some(
            "[[rule]]\nid = \"odd\"\naction = \"include\"\nmemberof = [\"x\"]\nods = { constant = \"RXA\" }\n",
        ),
    );
    assert!(
        e.contains("rule \"odd\" (#1): unknown field `memberof`"),
        "{e}"
    );
}

/// A config with an LDAP source (at a port nothing listens on) and empty rule, snapshot
/// and agreement files beside it in `dir`; the `[source]` section comes last, open for
/// more keys.
fn ldap_base(dir: &Path) -> &'static str {
    for f in ["r.toml", "s.json", "a.toml"] {
        std::fs::write(dir.join(f), "").unwrap();
    }
    "agent_id = \"a1\"\n[filters]\nfiles = [\"r.toml\"]\n[target]\nkind = \"snapshot\"\npath = \"s.json\"\n[agreements]\nfile = \"a.toml\"\n[source]\nkind = \"ldap\"\nurl = \"ldaps://127.0.0.1:1\"\nbind_dn = \"CN=x\"\nbase_dns = [\"DC=x\"]\n"
}

#[test]
fn ldap_secrets_are_never_inline_and_never_printed() {
    let dir = tempfile::tempdir().unwrap();
    let base = ldap_base(dir.path());
    let cfg = write_config(dir.path(), &format!("{base}bind_password = \"hunter2\"\n"));
    let r = tansync(&cfg, &["check"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("unknown field `bind_password`"),
        "{}",
        r.stderr
    );
    assert!(
        !r.stderr.contains("hunter2"),
        "the secret must not be echoed"
    );
    let cfg = write_config(
        dir.path(),
        &format!("{base}bind_password_env = \"TANSYNC_TEST_UNSET_VAR\"\n"),
    );
    let r = tansync(&cfg, &["check"]);
    assert!(
        r.stderr.contains(
            "source.bind_password_env: environment variable TANSYNC_TEST_UNSET_VAR is not set"
        ),
        "{}",
        r.stderr
    );
    let cfg = write_config(dir.path(), base);
    let r = tansync(&cfg, &["check"]);
    assert!(
        r.stderr
            .contains("source.bind_password: a secret is needed"),
        "{}",
        r.stderr
    );
}

#[test]
fn shipped_filter_rule_sets_and_example_config_are_valid() {
    for entry in std::fs::read_dir(repo().join("filters")).unwrap() {
        let p = entry.unwrap().path();
        tansync::filter::load_files(&[&p]).unwrap_or_else(|e| panic!("{e}"));
    }
    // The documented AD example: everything but the site-specific files checks out.
    let r = tansync(&repo().join("examples/tansync.toml"), &["check"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("source.ca_file: /etc/tansync/ad-ca.pem does not exist"),
        "{}",
        r.stderr
    );
}

#[test]
fn explain_in_the_quickstart() {
    let r = tansync(&quickstart(), &["explain", "f.jones", "--now", NOW]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("→ included by rule westfield-community"),
        "{}",
        r.stdout
    );
    // The contract's codes, not Rust's names for them.
    assert!(
        r.stdout.contains(
            "dropped mobile invalid_mobile: mobile \"+1 415 555 0100\" is not a UK number"
        ),
        "{}",
        r.stdout
    );
    assert!(
        r.stdout.contains("rule westfield-community (include,"),
        "{}",
        r.stdout
    );
    assert!(!r.stdout.contains("InvalidMobile") && !r.stdout.contains("Include"));
    let r = tansync(&quickstart(), &["explain", "nobody.here"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("no source entry matches \"nobody.here\""),
        "{}",
        r.stderr
    );
}

#[test]
fn a_saved_plan_reads_back_identically() {
    let (run, _) = plan_json(&quickstart());
    let plan: tansync::plan::Plan = serde_json::from_str(&run.stdout).expect("plan parses");
    assert_eq!(
        plan.to_json(),
        run.stdout,
        "apply reads exactly what plan wrote"
    );
}

#[test]
fn apply_needs_a_scim_target() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quickstart_with(dir.path(), "");
    let r = tansync(&cfg, &["apply"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("applying needs a SCIM target"),
        "{}",
        r.stderr
    );
}

#[test]
fn blocked_and_rejected_lines_name_the_person() {
    let h = tansync(&quickstart(), &["plan", "--now", NOW]);
    assert_eq!(h.code, 2, "{}", h.stderr);
    let line = |needle: &str| {
        h.stdout
            .lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}: {}", h.stdout))
            .to_string()
    };
    let blocked = line("ebb0342b-d756-568c-bd93-4274eddfe5fb");
    assert!(
        blocked.contains(
            "Colin Green (CN=Colin Green,OU=Northgate General,OU=Staff,DC=northgate,DC=example)"
        ),
        "{blocked}"
    );
    let rejected = line("eb9777e9-55f3-5e5e-924f-d8a1958df2de");
    assert!(
        rejected.starts_with("  Priya (CN=Priya,OU=Northgate General,"),
        "{rejected}"
    );
    let warnings = &h.stdout[h.stdout.find("Warnings:").expect("a warnings section")..];
    assert!(
        warnings.lines().nth(1).is_some_and(|l| l
            .starts_with("  Ffion Jones (CN=Ffion Jones,OU=Westfield Community,")
            && l.ends_with("85f2914d-03c3-5535-b31d-20b9e6a00fc1")),
        "{warnings}"
    );
    // A removal names the person from the directory side when the source has them.
    assert!(line("nhsd-7f3a13").contains("Olumide Okafor (CN=Olumide Okafor,"));
    // The plan JSON is unchanged by it: no names beside the contract's fields.
    let (_, plan) = plan_json(&quickstart());
    let b = &plan["blocked"][0];
    let mut keys: Vec<&str> = b.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "detail",
            "external_id",
            "kind",
            "ods_code",
            "operation",
            "reason"
        ]
    );
}

/// What an AD or directory value could do to a terminal: an ANSI colour, a carriage
/// return, a bell, a right-to-left override and NEL (a C1 control).
const HOSTILE: &str = "\u{1b}[31m\r\u{7}\u{202e}\u{85}";

/// Fails if `text` holds any control, bidi or other format character raw (newlines
/// between lines aside), or none of the hostile value in its escaped form.
fn assert_escaped(what: &str, text: &str) {
    for c in text.chars() {
        assert!(
            c == '\n' || !nhs_model::escape::is_unsafe(c),
            "{what} printed {c:?} raw: {text:?}"
        );
    }
    assert!(
        text.contains(r"\u{1b}[31m\r\u{7}\u{202e}\u{85}"),
        "{what} does not show the value escaped: {text}"
    );
}

/// An LDIF export and a directory snapshot whose names, DNs and ids carry [`HOSTILE`]:
/// Ann (hostile DN; her account's display name and id in the directory are hostile too),
/// Bob (hostile given name: rejected), Cat (hostile DN, a gov.uk mailbox: blocked) and an
/// account with a hostile name that is gone from the source (removed).
fn hostile(dir: &Path) -> std::path::PathBuf {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let ldif = format!(
        "dn:: {}\nobjectClass: user\nobjectGUID:: dqxArwESBUKD+6FwcQnotA==\nsAMAccountName: ann\ngivenName: Ann\nsn: Lee\ndisplayName: Ann Lee\n\n\
         dn:: {}\nobjectClass: user\nobjectGUID:: AAAAAAAAAAAAAAAAAAAAAg==\nsAMAccountName: bob\ngivenName:: {}\nsn: Ray\n\n\
         dn:: {}\nobjectClass: user\nobjectGUID:: AAAAAAAAAAAAAAAAAAAAAw==\nsAMAccountName: cat\ngivenName: Cat\nsn: Ng\nmail: cat@leeds.gov.uk\n\n",
        b64(&format!("CN=Ann {HOSTILE}Lee,OU=Staff,DC=x")),
        b64(&format!("CN=Bob {HOSTILE}Ray,OU=Staff,DC=x")),
        b64(&format!("Bob{HOSTILE}")),
        b64(&format!("CN=Cat {HOSTILE}Ng,OU=Staff,DC=x")),
    );
    std::fs::write(dir.join("src.ldif"), ldif).unwrap();
    std::fs::write(
        dir.join("rules.toml"),
        "[[rule]]\nid = \"staff\"\naction = \"include\"\nunder = [\"OU=Staff,DC=x\"]\nods = { constant = \"RXA\" }\n",
    )
    .unwrap();
    let snapshot = serde_json::json!({
        "format": "tansync.snapshot/v1",
        "organisations": [{"ods_code": "RXA", "kind": "trust", "open": true}],
        "persons": [
            {"target_id": format!("t{HOSTILE}1"), "external_id": "af40ac76-1201-4205-83fb-a1707109e8b4",
             "ods_code": "RXA", "status": "active", "managed_by": "a1",
             "attributes": {"given_name": "Ann", "family_name": "Lee",
                            "display_name": format!("Ann {HOSTILE}Lee")}},
            {"target_id": "t9", "external_id": "00000000-0000-0000-0000-000000000009",
             "ods_code": "RXA", "status": "active", "managed_by": "a1",
             "attributes": {"given_name": "Dan", "family_name": "Old",
                            "display_name": format!("Dan {HOSTILE}Old")}}
        ]
    });
    std::fs::write(dir.join("snap.json"), snapshot.to_string()).unwrap();
    std::fs::copy(
        repo().join("tests/fixtures/ad-agreements.toml"),
        dir.join("agreements.toml"),
    )
    .unwrap();
    write_config(
        dir,
        "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[filters]\nfiles = [\"rules.toml\"]\n[target]\nkind = \"snapshot\"\npath = \"snap.json\"\n[agreements]\nfile = \"agreements.toml\"\n[state]\ndir = \"state\"\n",
    )
}

#[test]
fn values_from_ad_and_the_directory_never_reach_the_terminal_raw() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile(dir.path());

    let r = tansync(&cfg, &["plan", "--now", NOW]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert_escaped("plan", &r.stdout);
    assert!(r.stdout.contains(r"account t\u{1b}[31m"), "{}", r.stdout);
    for who in ["Ann", "Bob", "Cat", "Dan"] {
        assert!(r.stdout.contains(who), "{who} is named: {}", r.stdout);
    }
    // The JSON plan is the contract, unchanged: it carries the values exactly.
    let (_, plan) = plan_json(&cfg);
    let rejected = &plan["rejected"][0];
    assert_eq!(
        rejected["dn"].as_str(),
        Some(format!("CN=Bob {HOSTILE}Ray,OU=Staff,DC=x").as_str())
    );

    for who in ["ann", "bob", "cat"] {
        let r = tansync(&cfg, &["explain", who, "--now", NOW]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert_escaped(&format!("explain {who}"), &r.stdout);
    }

    let r = tansync(&cfg, &["check"]);
    assert!(r.stdout.contains("source read: 3 entries"), "{}", r.stdout);
    for c in r.stdout.chars().chain(r.stderr.chars()) {
        assert!(
            c == '\n' || !nhs_model::escape::is_unsafe(c),
            "check: {c:?}"
        );
    }

    // The run history shows what the directory answered, as journalled.
    {
        let store = tansync::state::StateStore::open(&dir.path().join("state")).unwrap();
        let run = store.begin_run("apply", "sha256:00").unwrap();
        let id = store
            .record(
                run,
                "update",
                "af40ac76-1201-4205-83fb-a1707109e8b4",
                "RXA",
                Some(&format!("t{HOSTILE}1")),
            )
            .unwrap();
        store.sending(id).unwrap();
        store
            .failed(id, &format!("HTTP 400: displayName {HOSTILE} refused"))
            .unwrap();
        store.finish_run(run, "partial").unwrap();
    }
    let r = tansync(&cfg, &["history", "--run", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_escaped("history --run", &r.stdout);
    let r = tansync(&cfg, &["history"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("run    1"), "{}", r.stdout);
}

#[test]
fn errors_quoting_a_directory_value_are_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = hostile(dir.path());
    let snapshot = std::fs::read_to_string(dir.path().join("snap.json")).unwrap();
    // serde's error names the unknown status as it was written.
    let bad = snapshot.replace(
        "\"status\":\"active\"",
        &format!(
            "\"status\":{}",
            serde_json::to_string(&format!("act{HOSTILE}ive")).unwrap()
        ),
    );
    assert_ne!(bad, snapshot);
    std::fs::write(dir.path().join("snap.json"), bad).unwrap();
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("unknown variant"), "{}", r.stderr);
    assert_escaped("the error", &r.stderr);
}

/// `cfg` (from [`mini`]) with a SCIM target at `url` instead of the snapshot, as
/// `scim.toml` beside it, with the token `t0ken-not-to-send` (mode 0600).
fn with_scim_target(cfg: &Path, url: &str) -> std::path::PathBuf {
    let dir = cfg.parent().unwrap();
    write_secret(&dir.join("agent.token"), "t0ken-not-to-send\n");
    let text = std::fs::read_to_string(cfg).unwrap().replace(
        "[target]\nkind = \"snapshot\"\npath = \"snap.json\"\n",
        &format!("[target]\nkind = \"scim\"\nurl = {url:?}\ntoken_file = \"agent.token\"\n"),
    );
    assert!(text.contains("kind = \"scim\""));
    let p = dir.join("scim.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// Nothing connected to `listener` (non-blocking): a connection the agent had made would
/// wait in its backlog, whether or not the agent still holds it.
fn assert_no_connection(listener: &std::net::TcpListener, what: &str) {
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("{what}: the agent connected: {other:?}"),
    }
}

#[test]
fn a_token_url_that_is_not_https_or_plain_loopback_is_refused_before_any_request() {
    // A listener of the test's own: had the agent connected (the old prefix check read
    // `http://127.0.0.1@localhost:PORT` as loopback-to-127.0.0.1 and sent the token to
    // whatever `localhost:PORT` is), the connection would wait in its backlog.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = mini(dir.path(), "", "");
    for url in [
        format!("http://127.0.0.1@localhost:{port}"),
        format!("http://user:pass@127.0.0.1:{port}"),
        format!("http://127.1:{port}"),
        format!("http://0x7f000001:{port}"),
    ] {
        let cfg2 = with_scim_target(&cfg, &url);
        for cmd in [&["plan"][..], &["check"], &["apply"]] {
            let r = tansync(&cfg2, cmd);
            assert_eq!(r.code, 1, "{url} {cmd:?}: {}", r.stdout);
            assert!(
                r.stderr.contains("scim.toml: target.url: "),
                "{url}: {}",
                r.stderr
            );
            assert!(!r.stderr.contains("t0ken-not-to-send"));
            assert_no_connection(&listener, &format!("{url} {cmd:?}"));
        }
    }
}

#[test]
fn secret_files_group_or_others_may_read_are_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "{}bind_password_file = \"bind.pw\"\n",
        ldap_base(dir.path())
    );
    let pw = dir.path().join("bind.pw");
    std::fs::write(&pw, "hunter2\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let cfg = write_config(dir.path(), &base);
    let r = tansync(&cfg, &["check"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(&format!(
            "source.bind_password_file: {} has mode 0644: group or others may read this secret; make it readable by tansync's user only (chmod 600 {})",
            pw.display(),
            pw.display()
        )) && r.stderr.contains("allow_insecure_secret_files = true"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("hunter2"));
    // 0600 passes (and the run goes on to connect, to a port nothing listens on).
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let r = tansync(&cfg, &["check"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("✗ cannot connect and bind to the source"),
        "{}",
        r.stdout
    );
}

#[test]
fn a_toml_syntax_error_never_echoes_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = write_config(
        dir.path(),
        "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nbind_password = \"hunter2\n",
    );
    let r = tansync(&cfg, &["plan"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains("tansync.toml: line 4, column 25: invalid basic string"),
        "{}",
        r.stderr
    );
    assert!(!r.stderr.contains("hunter2"), "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
}

#[test]
fn a_plan_file_over_the_cap_or_not_a_file_is_refused_before_it_is_read() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = tempfile::tempdir().unwrap();
    let cfg = with_scim_target(
        &mini(dir.path(), "", ""),
        &format!("http://127.0.0.1:{port}"),
    );
    // A sparse file one byte over the cap: refused on its size, not read.
    let big = dir.path().join("big.json");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(512 * 1024 * 1024 + 1)
        .unwrap();
    let r = tansync(&cfg, &["apply", "--plan", big.to_str().unwrap()]);
    assert_eq!(r.code, 1, "{}", r.stdout);
    assert!(
        r.stderr.contains(&format!(
            "cannot read the plan {}: it is 536870913 bytes or more, more than the 536870912 a plan may be",
            big.display()
        )),
        "{}",
        r.stderr
    );
    assert_no_connection(&listener, "a plan over the cap");
    // A FIFO is not opened (opening it would wait for a writer for ever); the bound is
    // only a safety net for the test.
    let fifo = dir.path().join("plan.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tansync"));
    cmd.arg("--config")
        .arg(&cfg)
        .args(["apply", "--plan"])
        .arg(&fifo);
    let (code, _, stderr) = common::process::run_bounded(
        cmd,
        dir.path(),
        "apply-fifo",
        std::time::Duration::from_secs(120),
    );
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("it is not a regular file"), "{stderr}");
    assert_no_connection(&listener, "a FIFO plan");
    // A file that is not a plan: named as such, nothing sent either.
    let junk = dir.path().join("junk.json");
    std::fs::write(&junk, "{\"format\": 1}").unwrap();
    let r = tansync(&cfg, &["apply", "--plan", junk.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains("it is not a tansync plan"),
        "{}",
        r.stderr
    );
    assert_no_connection(&listener, "a file that is not a plan");
}

#[test]
fn apply_and_sync_document_now() {
    for cmd in ["apply", "sync"] {
        let r = tansync(Path::new("unused.toml"), &[cmd, "--help"]);
        assert_eq!(r.code, 0, "{}", r.stderr);
        assert!(r.stdout.contains("--now <NOW>"), "{cmd}: {}", r.stdout);
        assert!(r.stdout.contains("RFC 3339"), "{cmd}: {}", r.stdout);
    }
    let r = tansync(Path::new("unused.toml"), &["apply", "--help"]);
    assert!(
        r.stdout
            .contains("A plan made with `plan --now` needs the same --now here"),
        "{}",
        r.stdout
    );
}

/// The quickstart's configuration in `dir`, with absolute paths and `extra` appended.
fn quickstart_with(dir: &Path, extra: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(quickstart())
        .unwrap()
        .replace(
            "\"northgate-export.ldif\"",
            &q(repo().join("examples/quickstart/northgate-export.ldif")),
        )
        .replace(
            "\"../../filters/single-trust.toml\"",
            &q(repo().join("filters/single-trust.toml")),
        )
        .replace(
            "\"nhs-directory-snapshot.json\"",
            &q(repo().join("examples/quickstart/nhs-directory-snapshot.json")),
        )
        .replace(
            "\"agreements.toml\"",
            &q(repo().join("examples/quickstart/agreements.toml")),
        );
    write_config(dir, &format!("{text}\n{extra}\n"))
}

/// Every DN, name, e-mail address and phone number of the quickstart export, as written
/// there and (phones) as the digits of their E.164 form.
fn quickstart_personal_data() -> Vec<String> {
    use base64::Engine;
    let ldif =
        std::fs::read_to_string(repo().join("examples/quickstart/northgate-export.ldif")).unwrap();
    let mut out = Vec::new();
    for line in ldif.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        if !matches!(
            key,
            "dn" | "givenName" | "sn" | "displayName" | "mail" | "mobile" | "telephoneNumber"
        ) {
            continue;
        }
        let value = match value.strip_prefix(':') {
            Some(b64) => String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .unwrap(),
            )
            .unwrap(),
            None => value.trim().to_string(),
        };
        match key {
            "dn" if value.to_ascii_lowercase().starts_with("cn=") => out.push(value),
            "givenName" | "sn" | "displayName" | "mail" => out.push(value),
            "mobile" | "telephoneNumber" => {
                let digits: String = value.chars().filter(char::is_ascii_digit).collect();
                out.push(value);
                // 07123 456001 → 7123456001, which +447123456001 contains.
                out.push(digits.trim_start_matches('0').to_string());
            }
            _ => {}
        }
    }
    assert!(out.len() > 40, "{out:?}");
    out
}

fn plan_logging(cfg: &Path) -> Run {
    std::process::Command::new(env!("CARGO_BIN_EXE_tansync"))
        .arg("--config")
        .arg(cfg)
        .args(["plan", "--format", "json", "--now", NOW])
        .env_remove("TANSYNC_CONFIG")
        .env("TANSYNC_LOG", "debug")
        .output()
        .expect("run tansync")
        .into()
}

#[test]
fn json_logs_redact_personal_data_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = quickstart_with(dir.path(), "[daemon]\nlog_format = \"json\"\n");
    let r = plan_logging(&cfg);
    assert_eq!(r.code, 2, "{}", r.stderr);
    let lines: Vec<serde_json::Value> = r
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    // One line per person in scope at least, each with a level and its fields.
    let in_scope: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "in scope")
        .collect();
    assert!(in_scope.len() >= 10, "{}", r.stderr);
    for l in &lines {
        assert!(l["level"].is_string() && l["timestamp"].is_string(), "{l}");
    }
    assert_eq!(in_scope[0]["level"], "DEBUG");
    assert_eq!(in_scope[0]["fields"]["dn"], "[redacted]");
    assert_eq!(in_scope[0]["fields"]["display_name"], "[redacted]");
    assert!(in_scope[0]["fields"]["external_id"].is_string());
    assert!(
        lines
            .iter()
            .any(|l| l["fields"]["message"] == "optional field dropped"),
        "the quickstart drops a bad mobile: {}",
        r.stderr
    );
    for secret in quickstart_personal_data() {
        assert!(
            !r.stderr.contains(&secret),
            "{secret:?} is in the log:\n{}",
            r.stderr
        );
    }
}

#[test]
fn logs_show_personal_data_only_when_opted_in() {
    let dir = tempfile::tempdir().unwrap();
    // Text lines, opted in: the same events now carry the DNs, names and numbers.
    let cfg = quickstart_with(dir.path(), "[daemon]\nlog_personal_data = true\n");
    let r = plan_logging(&cfg);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains(" DEBUG "), "{}", r.stderr);
    for shown in [
        "CN=Siân Evans,OU=Northgate General,OU=Staff,DC=northgate,DC=example",
        "Siân Evans",
        "s.evans@northgate.example",
        "+447123456001",
    ] {
        assert!(r.stderr.contains(shown), "{shown:?} not in:\n{}", r.stderr);
    }
    // Text lines, default: none of it.
    let cfg = quickstart_with(dir.path(), "");
    let r = plan_logging(&cfg);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("in scope"), "{}", r.stderr);
    assert!(r.stderr.contains("dn=[redacted]"), "{}", r.stderr);
    for secret in quickstart_personal_data() {
        assert!(
            !r.stderr.contains(&secret),
            "{secret:?} is in the log:\n{}",
            r.stderr
        );
    }
}

fn portal_example() -> std::path::PathBuf {
    repo().join("examples/portal/tansync.toml")
}

/// The portal example's configuration in `dir`, reading `report` (and `ldif`, when
/// given, instead of the quickstart's export), batches into `dir`.
fn portal_with(dir: &Path, report: &Path, ldif: Option<&Path>) -> std::path::PathBuf {
    let example = repo().join("examples/portal");
    let mut text = std::fs::read_to_string(portal_example())
        .unwrap()
        .replace("\"../", &format!("\"{}/../", example.display()))
        .replace("\"mailbox-report.csv\"", &q(report))
        .replace(
            "\"organisations.json\"",
            &q(example.join("organisations.json")),
        )
        .replace(
            "\"bulk-upload-template.csv\"",
            &q(example.join("bulk-upload-template.csv")),
        )
        .replace("\"batches\"", &q(dir.join("batches")));
    if let Some(l) = ldif {
        let from = format!("{}/../quickstart/northgate-export.ldif", example.display());
        text = text.replace(&q(&from), &q(l));
    }
    write_config(dir, &text)
}

const PORTAL_HEADER: &str = "Email Address,Local ID,ODS Code,Status,First Name,Last Name,Display Name,Job Title,Department,Site,Telephone,Mobile,Employee ID,Secondary Email,Leaver Date\n";

/// The portal example reads the same accounts from its Mailbox Report as the quickstart
/// from its snapshot, so it plans the same operations; only the directory's ids differ
/// (a report's account is known by its address).
#[test]
fn the_portal_example_plans_from_its_mailbox_report() {
    let (run, plan) = plan_json(&portal_example());
    assert_eq!(run.code, 2, "changes present → exit 2: {}", run.stderr);
    assert_eq!(plan["target"]["kind"], "portal_report");
    assert_eq!(plan["target"]["read"], 8, "the RYY row is skipped");
    let (_, quick) = plan_json(&quickstart());
    assert_eq!(plan["summary"], quick["summary"]);
    let without_ids = |p: &serde_json::Value| {
        let mut ops = p["operations"].as_array().unwrap().clone();
        for op in &mut ops {
            op.as_object_mut().unwrap().remove("target_id");
        }
        ops
    };
    assert_eq!(without_ids(&plan), without_ids(&quick));
    let update = plan["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "update")
        .unwrap();
    assert_eq!(update["target_id"], "zoe.bronte@nhs.net");
}

#[test]
fn a_portal_plan_exits_0_without_changes_and_1_on_a_bad_report() {
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.csv");
    let ldif = dir.path().join("empty.ldif");
    std::fs::write(&ldif, "").unwrap();
    // An account no one manages, and nobody in the source: nothing to do.
    std::fs::write(
        &report,
        format!("{PORTAL_HEADER}jane.kelly@nhs.net,,RXA,Active,Jane,Kelly,,,,,,,,,\n"),
    )
    .unwrap();
    let (run, plan) = plan_json(&portal_with(dir.path(), &report, Some(&ldif)));
    assert_eq!(run.code, 0, "no changes → exit 0: {}", run.stdout);
    assert_eq!(plan["target"]["read"], 1);

    // A report that fails a check is an error naming the file and line, never a plan.
    std::fs::write(
        &report,
        format!("{PORTAL_HEADER}a@nhs.net,x-1,RXA,Active,,,,,,,,,,,\nb@nhs.net,X-1,RXA,Active,,,,,,,,,,,\n"),
    )
    .unwrap();
    let r = tansync(
        &portal_with(dir.path(), &report, None),
        &["plan", "--now", NOW],
    );
    assert_eq!(r.code, 1);
    assert!(r.stdout.is_empty(), "no plan: {}", r.stdout);
    assert!(
        r.stderr.contains("report.csv:3:") && r.stderr.contains("also the Local ID on line 2"),
        "{}",
        r.stderr
    );
}

#[test]
fn check_names_the_portal_report_and_template() {
    let r = tansync(&portal_example(), &["check"]);
    let line = |out: &str, label: &str| {
        out.lines()
            .find(|l| l.contains(&format!(" {label}: ")))
            .unwrap_or_else(|| panic!("no {label} line in:\n{out}"))
            .to_string()
    };
    let report = line(&r.stdout, "mailbox report");
    assert!(
        report.starts_with('✓')
            && report.contains("mailbox-report.csv")
            && report.contains("9 rows, 8 of the organisations managed here, 1 of others"),
        "{report}"
    );
    let template = line(&r.stdout, "upload template");
    assert!(
        template.starts_with('✓')
            && template.contains("bulk-upload-template.csv")
            && template.contains("13 columns"),
        "{template}"
    );
    let target = line(&r.stdout, "target");
    assert!(
        target.contains("portal_report") && target.contains("3 organisations, 8 accounts"),
        "{target}"
    );

    // A missing report is a ✗ line naming it.
    let dir = tempfile::tempdir().unwrap();
    let cfg = portal_with(dir.path(), &dir.path().join("gone.csv"), None);
    let r = tansync(&cfg, &["check"]);
    let report = line(&r.stdout, "mailbox report");
    assert!(
        report.starts_with('✗') && report.contains("gone.csv"),
        "{report}"
    );
    assert_ne!(r.code, 0, "a problem: {}", r.stdout);
}
