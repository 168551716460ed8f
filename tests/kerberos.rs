//! Kerberos (SASL GSSAPI) binds against the Samba AD DC's own KDC (started by
//! tests/harness with `server services = ... kdc`): the service account `svc-tansync`
//! binds with the keytab the harness exported, no password anywhere in the
//! configuration; a stale keytab, a keytab without the principal, a KDC that does not
//! answer and an unknown service host are each refused with their cause named.
//!
//! Needs the `kerberos` feature (the harness's default test command enables it).

mod common;
use common::*;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

enum Auth<'a> {
    Simple,
    Kerberos {
        keytab: &'a str,
        principal: &'a str,
        sasl_host: Option<String>,
    },
}

/// A plan configuration reading the fixture's staff and service accounts from Samba over
/// verified LDAPS, against the fixture's snapshot. Kerberos keytabs are copied into
/// `dir` (mode 0600) and named relative to the configuration file.
fn config(dir: &Path, auth: Auth) -> PathBuf {
    let base = env("TANSYNC_TEST_SAMBA_BASE");
    let auth = match auth {
        Auth::Simple => format!(
            "bind_dn = {}\nbind_password_file = {}",
            toml_str(&env("TANSYNC_TEST_SAMBA_BIND_DN")),
            toml_str(&env("TANSYNC_TEST_SAMBA_PASSWORD_FILE"))
        ),
        Auth::Kerberos {
            keytab,
            principal,
            sasl_host,
        } => {
            let bytes = std::fs::read(keytab).expect("read the harness's keytab");
            let copy = dir.join("svc.keytab");
            std::fs::write(&copy, bytes).expect("copy the keytab");
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o600))
                .expect("chmod the keytab");
            let host = sasl_host.map_or(String::new(), |h| format!("sasl_host = {}", toml_str(&h)));
            format!(
                "auth = \"kerberos\"\nkeytab = \"svc.keytab\"\nprincipal = {}\n{host}",
                toml_str(principal)
            )
        }
    };
    let text = format!(
        r#"agent_id = "tansync-test"

[source]
kind = "ldap"
url = {url}
ca_file = {ca}
{auth}
base_dns = [{staff}, {svc}]
page_size = 500

[filters]
files = [{filters}]

[target]
kind = "snapshot"
path = {snapshot}

[agreements]
file = {agreements}
"#,
        url = toml_str(&env("TANSYNC_TEST_SAMBA_LDAPS_URL")),
        ca = toml_str(&env("TANSYNC_TEST_CA")),
        staff = toml_str(&format!("OU=NHS Staff,{base}")),
        svc = toml_str(&format!("OU=Service Accounts,{base}")),
        filters = q(repo().join("tests/fixtures/ad-filters.toml")),
        snapshot = q(fixture("snapshot.json")),
        agreements = q(repo().join("tests/fixtures/ad-agreements.toml")),
    );
    write_config(dir, &text)
}

/// The service account's keytab and principal, named as the DC's FQDN.
fn service_account<'a>(keytab: &'a str, principal: &'a str) -> Auth<'a> {
    Auth::Kerberos {
        keytab,
        principal,
        sasl_host: Some(host()),
    }
}

fn host() -> String {
    env("TANSYNC_TEST_SAMBA_HOST")
}

/// Run tansync with `krb5_conf` as its Kerberos configuration and none of the caller's
/// own Kerberos settings.
fn tansync_krb(krb5_conf: &str, config: &Path, args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_tansync"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TANSYNC_CONFIG")
        .env_remove("KRB5CCNAME")
        .env_remove("KRB5_CLIENT_KTNAME")
        .env_remove("KRB5_KTNAME")
        .env("KRB5_CONFIG", krb5_conf)
        .output()
        .expect("run tansync")
        .into()
}

fn krb5_conf() -> String {
    env("TANSYNC_TEST_KRB5_CONFIG")
}

fn plan(krb5_conf: &str, config: &Path) -> (Run, Option<Value>) {
    let r = tansync_krb(
        krb5_conf,
        config,
        &["plan", "--format", "json", "--now", NOW],
    );
    let v = serde_json::from_str(&r.stdout).ok();
    (r, v)
}

#[test]
fn a_keytab_bind_plans_the_same_people_as_a_simple_bind() {
    let simple_dir = tempfile::tempdir().expect("tempdir");
    let krb_dir = tempfile::tempdir().expect("tempdir");
    let (keytab, principal) = (
        env("TANSYNC_TEST_KEYTAB"),
        env("TANSYNC_TEST_KRB5_PRINCIPAL"),
    );
    let krb_cfg = config(krb_dir.path(), service_account(&keytab, &principal));
    let text = std::fs::read_to_string(&krb_cfg).expect("config");
    assert!(
        !text.contains("bind_dn") && !text.contains("password"),
        "no password in a Kerberos configuration:\n{text}"
    );

    let (run, krb) = plan(&krb5_conf(), &krb_cfg);
    assert_eq!(run.code, 2, "a plan with changes: {}", run.stderr);
    let krb = krb.expect("plan JSON");
    plan_schema::assert_valid_plan(&krb);
    let (run, simple) = plan(&krb5_conf(), &config(simple_dir.path(), Auth::Simple));
    assert_eq!(run.code, 2, "{}", run.stderr);
    let simple = simple.expect("plan JSON");

    // Every user of the fixture under the two OUs (as tests/samba.rs reads them).
    assert_eq!(krb["source"]["read"], 1235, "{}", krb["source"]);
    assert_eq!(krb["source"], simple["source"]);
    assert_eq!(krb["summary"], simple["summary"]);
    assert_eq!(krb["operations"], simple["operations"]);
}

#[test]
fn check_reports_the_ticket_and_the_kerberos_bind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keytab, principal) = (
        env("TANSYNC_TEST_KEYTAB"),
        env("TANSYNC_TEST_KRB5_PRINCIPAL"),
    );
    // The URL names the DC by IP address, so sasl_host gives its FQDN.
    let cfg = config(dir.path(), service_account(&keytab, &principal));
    let run = tansync_krb(&krb5_conf(), &cfg, &["check"]);
    let want = format!(
        "✓ kerberos: ticket for ldap/{} as {principal} from the KDC (keytab {})",
        host(),
        dir.path().join("svc.keytab").display()
    );
    assert!(
        run.stdout.contains(&want),
        "{want}\n{}\n{}",
        run.stdout,
        run.stderr
    );
    let bound = format!(
        "bound as {principal} (Kerberos, ldap/{}) over ldaps",
        host()
    );
    assert!(
        run.stdout.contains(&bound),
        "{bound}\n{}\n{}",
        run.stdout,
        run.stderr
    );
    assert!(
        run.stdout.contains("✓ source read: 1235 entries"),
        "{}",
        run.stdout
    );
}

/// The keytab exported before the account's password was set again: old key, old key
/// version. The KDC refuses it; plan and check say so, naming principal and keytab.
#[test]
fn a_stale_keytab_is_refused_as_a_wrong_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keytab, principal) = (
        env("TANSYNC_TEST_STALE_KEYTAB"),
        env("TANSYNC_TEST_KRB5_PRINCIPAL"),
    );
    let cfg = config(dir.path(), service_account(&keytab, &principal));
    let shown = dir.path().join("svc.keytab").display().to_string();

    let (run, _) = plan(&krb5_conf(), &cfg);
    eprintln!("plan, stale keytab: {}", run.stderr);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let want = format!(
        "Kerberos as {principal} with keytab {shown}: the keytab's key for the principal is wrong"
    );
    assert!(run.stderr.contains(&want), "{want}\n{}", run.stderr);

    let run = tansync_krb(&krb5_conf(), &cfg, &["check"]);
    eprintln!("check, stale keytab: {}", run.stdout);
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("✗ kerberos: no ticket: "),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains(&want), "{}", run.stdout);
    assert!(!run.stdout.contains("✓ source: "), "{}", run.stdout);
}

/// Another account's keytab: the configured principal is not in it, and tansync does
/// not bind as the keytab's own principal instead.
#[test]
fn a_principal_not_in_the_keytab_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keytab, principal) = (
        env("TANSYNC_TEST_OTHER_KEYTAB"),
        env("TANSYNC_TEST_KRB5_PRINCIPAL"),
    );
    let cfg = config(dir.path(), service_account(&keytab, &principal));
    let (run, _) = plan(&krb5_conf(), &cfg);
    eprintln!("plan, principal not in keytab: {}", run.stderr);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let want = format!(
        "Kerberos as {principal} with keytab {}: the keytab does not hold this principal",
        dir.path().join("svc.keytab").display()
    );
    assert!(run.stderr.contains(&want), "{want}\n{}", run.stderr);

    // The same keytab with its own principal binds: the refusal above was the principal.
    let other = env("TANSYNC_TEST_KRB5_OTHER_PRINCIPAL");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = config(dir.path(), service_account(&keytab, &other));
    let (run, v) = plan(&krb5_conf(), &cfg);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(v.expect("plan JSON")["source"]["read"], 1235);
}

#[test]
fn a_kdc_that_does_not_answer_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on port 1 of the loopback: the connection is refused at once.
    let conf = dir.path().join("krb5.conf");
    std::fs::write(
        &conf,
        "[libdefaults]\n    dns_lookup_kdc = false\n    rdns = false\n    \
         dns_canonicalize_hostname = false\n    udp_preference_limit = 1\n\
         [realms]\n    TANSYNC.TEST = {\n        kdc = 127.0.0.1:1\n    }\n",
    )
    .expect("krb5.conf");
    let (keytab, principal) = (
        env("TANSYNC_TEST_KEYTAB"),
        env("TANSYNC_TEST_KRB5_PRINCIPAL"),
    );
    let cfg = config(dir.path(), service_account(&keytab, &principal));
    let (run, _) = plan(&conf.display().to_string(), &cfg);
    eprintln!("plan, no KDC: {}", run.stderr);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!("Kerberos as {principal}"))
            && run.stderr.contains("no KDC answered for the realm"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unknown_service_host_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keytab, principal) = (
        env("TANSYNC_TEST_KEYTAB"),
        env("TANSYNC_TEST_KRB5_PRINCIPAL"),
    );
    let cfg = config(
        dir.path(),
        Auth::Kerberos {
            keytab: &keytab,
            principal: &principal,
            sasl_host: Some("nosuchdc.tansync.test".into()),
        },
    );
    let (run, _) = plan(&krb5_conf(), &cfg);
    eprintln!("plan, unknown service host: {}", run.stderr);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("the KDC knows no ldap/ service principal for this host"),
        "{}",
        run.stderr
    );
}

#[test]
fn a_keytab_bind_over_starttls_reads_the_fixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keytab, principal) = (
        env("TANSYNC_TEST_KEYTAB"),
        env("TANSYNC_TEST_KRB5_PRINCIPAL"),
    );
    let cfg = config(dir.path(), service_account(&keytab, &principal));
    let ldaps = format!("url = {}", toml_str(&env("TANSYNC_TEST_SAMBA_LDAPS_URL")));
    let text = std::fs::read_to_string(&cfg).expect("config");
    assert!(text.contains(&ldaps), "{text}");
    let starttls = format!(
        "url = {}\nstarttls = true",
        toml_str(&env("TANSYNC_TEST_SAMBA_LDAP_URL"))
    );
    std::fs::write(&cfg, text.replace(&ldaps, &starttls)).expect("config");
    let (run, v) = plan(&krb5_conf(), &cfg);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(v.expect("plan JSON")["source"]["read"], 1235);
    let run = tansync_krb(&krb5_conf(), &cfg, &["check"]);
    assert!(
        run.stdout.contains(&format!(
            "bound as {principal} (Kerberos, ldap/{}) over starttls",
            host()
        )),
        "{}\n{}",
        run.stdout,
        run.stderr
    );
}

/// Continuous mode reads through the same bind: one standby cycle (plans, writes
/// nothing) with the keytab, then its status.
#[test]
fn a_daemon_cycle_binds_with_the_keytab() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (keytab, principal) = (
        env("TANSYNC_TEST_KEYTAB"),
        env("TANSYNC_TEST_KRB5_PRINCIPAL"),
    );
    let cfg = config(dir.path(), service_account(&keytab, &principal));
    let run = tansync_krb(&krb5_conf(), &cfg, &["run", "--once", "--standby"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let status = tansync_krb(&krb5_conf(), &cfg, &["status", "--format", "json"]);
    assert_eq!(status.code, 0, "{}", status.stderr);
    let v: Value = serde_json::from_str(&status.stdout).expect("status JSON");
    let cycle = &v["cycles"][0];
    assert_eq!(
        (&cycle["kind"], &cycle["result"]),
        (&Value::from("full"), &Value::from("standby")),
        "{v:#}"
    );
    // The DC's watermark, read through the Kerberos bind.
    assert_eq!(v["watermark"]["kind"], "ad_usn", "{v:#}");
    // The cycle decided what a plan decides.
    let (run, plan) = plan(&krb5_conf(), &cfg);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let plan = plan.expect("plan JSON");
    let len = |k: &str| plan[k].as_array().map_or(0, Vec::len);
    assert_eq!(cycle["operations"], len("operations"), "{v:#}");
    assert_eq!(cycle["blocked"], len("blocked"), "{v:#}");
}
