use super::*;

/// A directory with the files a config refers to.
fn dir_with_files() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("src.ldif"), "").unwrap();
    std::fs::write(
        d.path().join("r.toml"),
        "[[rule]]\nid = \"all\"\naction = \"include\"\nods = { constant = \"RXA\" }\n",
    )
    .unwrap();
    std::fs::write(d.path().join("s.json"), "{}").unwrap();
    std::fs::write(d.path().join("a.toml"), "").unwrap();
    secret(&d.path().join("pw"), "s3cret\n", 0o600);
    d
}

/// Write a secret file with this mode.
fn secret(path: &Path, text: &str, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

const TAIL: &str = "[filters]\nfiles = [\"r.toml\"]\n[target]\nkind = \"snapshot\"\npath = \"s.json\"\n[agreements]\nfile = \"a.toml\"\n";

fn load(d: &tempfile::TempDir, head: &str) -> Result<Config, LoadError> {
    Config::from_str(&format!("{head}\n{TAIL}"), "t.toml", d.path())
}

/// A simple bind's password.
fn password(l: &LdapSource) -> &str {
    use secrecy::ExposeSecret;
    match &l.auth {
        LdapAuth::Simple { bind_password, .. } => bind_password.expose_secret(),
        LdapAuth::Kerberos(k) => panic!("a simple bind expected, not {k:?}"),
    }
}

fn err(d: &tempfile::TempDir, head: &str) -> String {
    match load(d, head) {
        Ok(_) => panic!("expected an error for {head}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn ldif_defaults_and_relative_paths() {
    let d = dir_with_files();
    let c = load(
        &d,
        "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"",
    )
    .unwrap();
    let AnySource::Ldif(l) = &c.source else {
        panic!("ldif")
    };
    assert_eq!(l.path, d.path().join("src.ldif"));
    assert_eq!(l.anchor, AnchorKind::ObjectGuid);
    assert_eq!(c.policy.default_cap, 50);
    assert_eq!(c.soft_match, vec![MatchKey::EmployeeId, MatchKey::Email]);
    assert_eq!(c.mapping.fields[&Field::Site], "physicalDeliveryOfficeName");
    assert_eq!(l.limits.max_value_bytes, 4 << 20);
}

#[test]
fn ldif_max_value_bytes_is_validated() {
    let d = dir_with_files();
    let head = |v: &str| {
        format!(
            "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\nldif_max_value_bytes = {v}"
        )
    };
    let c = load(&d, &head("65536")).unwrap();
    let AnySource::Ldif(l) = &c.source else {
        panic!("ldif")
    };
    assert_eq!(l.limits.max_value_bytes, 65536);
    for bad in ["0", "1023", "1073741825", "-1"] {
        assert_eq!(
            err(&d, &head(bad)),
            "t.toml: source.ldif_max_value_bytes: must be 1024 to 1073741824 (bytes)",
            "{bad}"
        );
    }
}

#[test]
fn ldap_settings_are_validated() {
    let d = dir_with_files();
    let ldap = |extra: &str| {
        format!(
            "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nurl = \"ldaps://dc:636\"\nbind_dn = \"CN=x\"\nbind_password_file = \"pw\"\nbase_dns = [\"DC=x\"]\n{extra}"
        )
    };
    let c = load(&d, &ldap("")).unwrap();
    let AnySource::Ldap(l) = &c.source else {
        panic!("ldap")
    };
    assert_eq!(l.page_size, 500);
    assert_eq!(password(l), "s3cret");
    // The secret is not in the Debug output either.
    assert!(!format!("{l:?}").contains("s3cret"));
    assert!(
        err(&d, &ldap("page_size = 5000")).contains("t.toml: source.page_size: must be 1 to 1000")
    );
    assert!(err(&d, &ldap("starttls = true")).contains("source.starttls"));
    assert!(err(&d, &ldap("nested_groups = \"deep\"")).contains("source.nested_groups"));
    assert!(err(&d, &ldap("filter = \"objectClass=user\"")).contains("source.filter"));
    assert!(err(&d, &ldap("ca_file = \"missing.pem\"")).contains("source.ca_file"));
    assert!(err(&d, &ldap("operation_timeout_secs = 0")).contains("at least 1 second"));
}

#[test]
fn top_level_problems_are_named() {
    let d = dir_with_files();
    assert!(
        err(
            &d,
            "agent_id = \"has space\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\""
        )
        .contains("agent_id")
    );
    assert!(
        err(
            &d,
            "agent_id = \"a\"\n[source]\nkind = \"ldif\"\npath = \"nope.ldif\""
        )
        .contains("source.path")
    );
    assert!(err(&d, "agent_id = \"a\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[mapping]\nnickname = \"x\"").contains("mapping.nickname: unknown field"));
    assert!(
        err(
            &d,
            "agent_id = \"a\"\n[source]\nkind = \"ftp\"\npath = \"src.ldif\""
        )
        .contains("unknown variant `ftp`")
    );
}

#[test]
fn write_back_is_checked() {
    let d = dir_with_files();
    let ldap = |wb: &str| {
        format!(
            "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nurl = \"ldaps://dc:636\"\nbind_dn = \"CN=x\"\nbind_password_file = \"pw\"\nbase_dns = [\"DC=x\"]\n[write_back]\n{wb}"
        )
    };
    let wb = "attribute = \"mail\"\nbind_dn = \"CN=writer\"\nbind_password_file = \"pw\"";
    let c = load(&d, &ldap(wb)).unwrap();
    let w = c.write_back.as_ref().unwrap();
    assert_eq!(w.attribute, "mail");
    assert_eq!(w.bind_dn, "CN=writer");
    assert_eq!(w.base_dns, [NormDn::new("DC=x")]);
    assert!(
        err(&d, &ldap("attribute = \"mail\""))
            .contains("write_back.bind_dn: give the DN of an account allowed to write")
    );
    assert!(
        err(&d, &ldap(&format!("{wb}\nbase_dns = []")))
            .contains("write_back.base_dns: give at least one base DN")
    );
    // The source reads it, to compare before writing.
    assert!(c.read_request().attributes.contains("mail"));
    assert!(
        err(&d, &ldap("attribute = \"mail;binary\""))
            .contains("write_back.attribute: \"mail;binary\" is not an LDAP attribute name")
    );
    assert!(err(&d, &ldap(&format!("{wb}\nwhen = 1"))).contains("unknown field"));
    let ldif = "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[write_back]\nattribute = \"mail\"";
    assert!(err(&d, ldif).contains("write_back: needs an LDAP source"));
    assert!(
        load(
            &d,
            "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\""
        )
        .unwrap()
        .write_back
        .is_none()
    );
}

/// A config with a SCIM target at `url` (token in `tok`, mode 0600).
fn scim(d: &tempfile::TempDir, url: &str, extra: &str) -> Result<Config, LoadError> {
    secret(&d.path().join("tok"), "t0ken\n", 0o600);
    let text = format!(
        "agent_id = \"a1\"\n{extra}\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[filters]\nfiles = [\"r.toml\"]\n[target]\nkind = \"scim\"\nurl = {url:?}\ntoken_file = \"tok\"\n[agreements]\nfile = \"a.toml\"\n"
    );
    Config::from_str(&text, "t.toml", d.path())
}

#[test]
fn target_urls_are_parsed_not_prefix_matched() {
    let ok = [
        (
            "https://directory.nhs.example/scim/v2",
            "https://directory.nhs.example/scim/v2",
        ),
        (
            "HTTPS://Directory.NHS.example/",
            "https://directory.nhs.example",
        ),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:8080/scim/", "http://localhost:8080/scim"),
        ("HTTP://LOCALHOST", "http://localhost"),
        ("http://[::1]:80", "http://[::1]"),
        ("http://[::1]:8443/v2", "http://[::1]:8443/v2"),
    ];
    let d = dir_with_files();
    for (url, want) in ok {
        let c = scim(&d, url, "").unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(c.scim.as_ref().unwrap().url, want, "{url}");
    }
    let refused = [
        // The bearer token would go to 10.9.9.9, in clear.
        ("http://127.0.0.1@10.9.9.9:8080", "user name or password"),
        ("http://user:pw@127.0.0.1:8080", "user name or password"),
        (
            "https://user:pw@directory.nhs.example",
            "user name or password",
        ),
        (
            "https://token@directory.nhs.example",
            "user name or password",
        ),
        ("http://localhost.evil.com", "only to a loopback address"),
        ("http://127.0.0.1.nip.io", "only to a loopback address"),
        ("http://localhost.", "only to a loopback address"),
        ("http://10.0.0.1:8080", "only to a loopback address"),
        ("HTTP://10.0.0.1", "only to a loopback address"),
        // The URL parser reads these as 127.0.0.1; only the plain forms are accepted.
        ("http://0x7f000001", "only to a loopback address"),
        ("http://2130706433", "only to a loopback address"),
        ("http://127.1", "only to a loopback address"),
        ("http://127.000.000.001", "only to a loopback address"),
        ("http://%31%32%37.0.0.1", "only to a loopback address"),
        ("http://127.0.0.2", "only to a loopback address"),
        ("http://[::ffff:127.0.0.1]", "only to a loopback address"),
        ("http://127.0.0.1\\@10.9.9.9", "only to a loopback address"),
        ("ftp://directory.nhs.example", "must be https://"),
        ("directory.nhs.example", "is not a URL"),
        ("https://directory.nhs.example/scim?x=1", "?query"),
        ("https://directory.nhs.example/#top", "#fragment"),
    ];
    for (url, why) in refused {
        let e = match scim(&d, url, "") {
            Ok(_) => panic!("{url} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(e.starts_with("t.toml: target.url: "), "{url}: {e}");
        assert!(e.contains(why), "{url}: {e}");
        assert!(!e.contains("t0ken"), "{e}");
    }
}

#[test]
fn ldap_urls_hold_no_credentials() {
    let d = dir_with_files();
    let ldap = |url: &str| {
        format!(
            "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nurl = {url:?}\nbind_dn = \"CN=x\"\nbind_password_file = \"pw\"\nbase_dns = [\"DC=x\"]\n"
        )
    };
    assert!(load(&d, &ldap("ldaps://dc.example:636")).is_ok());
    assert!(load(&d, &ldap("LDAP://dc.example")).is_ok());
    let e = err(&d, &ldap("ldaps://admin:hunter2@dc.example"));
    assert!(
        e.contains("source.url: must not hold a user name or password"),
        "{e}"
    );
    assert!(!e.contains("hunter2"), "{e}");
    assert!(err(&d, &ldap("ldaps://")).contains("source.url"));
    assert!(err(&d, &ldap("https://dc.example")).contains("must start with ldaps://"));
}

#[test]
fn secret_files_others_may_read_are_refused() {
    let d = dir_with_files();
    let ldap = |extra: &str| {
        format!(
            "agent_id = \"a1\"\n{extra}\n[source]\nkind = \"ldap\"\nurl = \"ldaps://dc:636\"\nbind_dn = \"CN=x\"\nbind_password_file = \"pw\"\nbase_dns = [\"DC=x\"]\n"
        )
    };
    let pw = d.path().join("pw");
    for mode in [0o644, 0o640, 0o604, 0o660, 0o666] {
        secret(&pw, "s3cret\n", mode);
        let e = err(&d, &ldap(""));
        let want = format!(
            "t.toml: source.bind_password_file: {} has mode {mode:04o}: group or others may read this secret; make it readable by tansync's user only (chmod 600 {})",
            pw.display(),
            pw.display()
        );
        assert!(e.starts_with(&want), "{mode:o}: {e}");
        assert!(e.contains("allow_insecure_secret_files"), "{e}");
        assert!(!e.contains("s3cret"));
        // The operator who knows why may allow it.
        let c = load(&d, &ldap("[safety]\nallow_insecure_secret_files = true")).unwrap();
        let AnySource::Ldap(l) = &c.source else {
            panic!("ldap")
        };
        assert_eq!(password(l), "s3cret");
    }
    for mode in [0o600, 0o400] {
        secret(&pw, "s3cret\n", mode);
        assert!(load(&d, &ldap("")).is_ok(), "{mode:o}");
    }
    // The token file and the write-back password file are held to the same rule.
    secret(&d.path().join("tok"), "t0ken\n", 0o644);
    let text = "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[filters]\nfiles = [\"r.toml\"]\n[target]\nkind = \"scim\"\nurl = \"https://d.example\"\ntoken_file = \"tok\"\n[agreements]\nfile = \"a.toml\"\n";
    let e = match Config::from_str(text, "t.toml", d.path()) {
        Ok(_) => panic!("a 0644 token file was accepted"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("target.token_file: ") && e.contains("has mode 0644"),
        "{e}"
    );
    secret(&pw, "s3cret\n", 0o600);
    secret(&d.path().join("wpw"), "w\n", 0o644);
    let wb = format!(
        "{}[write_back]\nattribute = \"mail\"\nbind_dn = \"CN=w\"\nbind_password_file = \"wpw\"\n",
        ldap("")
    );
    assert!(err(&d, &wb).contains("write_back.bind_password_file: "));
    // Not a regular file.
    std::fs::create_dir(d.path().join("pwdir")).unwrap();
    let e = err(&d, &ldap("").replace("\"pw\"", "\"pwdir\""));
    assert!(e.contains("is not a regular file"), "{e}");
}

#[test]
fn toml_errors_name_line_and_column_but_never_echo_the_line() {
    let d = dir_with_files();
    // A syntax error on a line holding something secret-looking.
    let e = err(
        &d,
        "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nbind_password = \"hunter2\n",
    );
    assert!(
        e.starts_with("t.toml: line 4, column 25: invalid basic string"),
        "{e}"
    );
    assert!(!e.contains("hunter2") && !e.contains('\n'), "{e}");
    // An unknown key (an inline secret is one): named, the line not shown.
    let e = err(
        &d,
        "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\ntoken = \"hunter2\"",
    );
    assert!(e.contains("unknown field `token`"), "{e}");
    assert!(e.contains("line 2, column 1"), "{e}");
    assert!(!e.contains("hunter2") && !e.contains('\n'), "{e}");
}

const LDIF_HEAD: &str = "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n";

#[test]
fn daemon_observability_defaults() {
    let d = dir_with_files();
    let c = load(&d, LDIF_HEAD).unwrap();
    assert_eq!(c.daemon.listen, None);
    assert_eq!(c.daemon.healthy_within, DEFAULT_HEALTHY_WITHIN);
    assert_eq!(
        c.daemon.log,
        LogSettings {
            format: LogFormat::Text,
            personal_data: false,
        }
    );
    let c = load(
        &d,
        &format!("{LDIF_HEAD}[daemon]\nlisten = \"127.0.0.1:9464\"\nhealthy_within = 900\nlog_format = \"json\"\nlog_personal_data = true\n"),
    )
    .unwrap();
    assert_eq!(c.daemon.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.daemon.healthy_within, std::time::Duration::from_secs(900));
    assert_eq!(
        c.daemon.log,
        LogSettings {
            format: LogFormat::Json,
            personal_data: true
        }
    );
}

#[test]
fn daemon_observability_keys_are_validated() {
    let d = dir_with_files();
    let e = |section: &str| err(&d, &format!("{LDIF_HEAD}[daemon]\n{section}\n"));
    let m = e("log_format = \"xml\"");
    assert!(
        m.contains("t.toml: daemon.log_format: \"xml\" is not \"text\", \"json\" or \"journald\""),
        "{m}"
    );
    let m = e("listen = \"localhost\"");
    assert!(
        m.contains("t.toml: daemon.listen: \"localhost\" is not an address and port"),
        "{m}"
    );
    let m = e("healthy_within = 0");
    assert!(
        m.contains("t.toml: daemon.healthy_within: must be 1 to 604800 (seconds)"),
        "{m}"
    );
    let m = e("log_personal_data = \"yes\"");
    assert!(
        m.contains("line 6") && m.contains("expected a boolean"),
        "{m}"
    );
}

#[test]
fn log_settings_are_peeked_before_validation_and_default_to_redacting() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("t.toml");
    assert_eq!(
        LogSettings::peek(&p),
        LogSettings::default(),
        "missing file"
    );
    std::fs::write(&p, "agent_id = \"a\"\n[daemon]\nlog_format = \"json\"\nlog_personal_data = true\ninterval_seconds = 60\n").unwrap();
    assert_eq!(
        LogSettings::peek(&p),
        LogSettings {
            format: LogFormat::Json,
            personal_data: true
        },
        "other keys (and an otherwise invalid config) do not matter"
    );
    std::fs::write(
        &p,
        "[daemon]\nlog_format = \"json\"\nlog_personal_data = \"yes\"\n",
    )
    .unwrap();
    assert_eq!(
        LogSettings::peek(&p),
        LogSettings::default(),
        "a bad value: defaults"
    );
    std::fs::write(&p, "[daemon\n").unwrap();
    assert_eq!(
        LogSettings::peek(&p),
        LogSettings::default(),
        "bad TOML: defaults"
    );
}

#[test]
fn the_example_daemon_section_is_valid() {
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/tansync.toml"),
    )
    .unwrap();
    let section = &example[example.find("\n[daemon]\n").unwrap()..];
    let d = dir_with_files();
    let c = load(&d, &format!("{LDIF_HEAD}{section}")).unwrap();
    assert_eq!(c.daemon.listen, Some("127.0.0.1:9464".parse().unwrap()));
    assert_eq!(c.daemon.log, LogSettings::default());
}

#[test]
fn daemon_section_is_validated_and_names_its_keys() {
    let d = dir_with_files();
    let head = |daemon: &str| {
        format!(
            "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[daemon]\n{daemon}"
        )
    };
    let c = load(&d, &head("")).unwrap();
    assert!(c.daemon.schedule.is_none());
    assert_eq!(c.daemon.full_every.as_secs(), 24 * 3600);
    assert!(!c.daemon.standby && c.daemon.notify_command.is_none());

    let c = load(
        &d,
        &head("interval_seconds = 120\nfull_every_hours = 6\nstandby = true\nnotify_command = [\"/bin/cat\"]"),
    )
    .unwrap();
    assert!(matches!(c.daemon.schedule, Some(daemon::Schedule::Every(d)) if d.as_secs() == 120));
    assert_eq!(c.daemon.full_every.as_secs(), 6 * 3600);
    assert!(c.daemon.standby);
    assert_eq!(c.daemon.notify_command, Some(vec!["/bin/cat".to_string()]));

    let c = load(&d, &head("cron = \"*/5 * * * *\"")).unwrap();
    let Some(s @ daemon::Schedule::Cron(..)) = &c.daemon.schedule else {
        panic!("cron")
    };
    // 2026-01-01T00:01:00Z → the next five-minute mark.
    assert_eq!(s.next_after(0, 1_767_225_660), Some(1_767_225_900));

    for (text, key) in [
        (
            "interval_seconds = 60\ncron = \"* * * * *\"",
            "daemon.interval_seconds",
        ),
        ("interval_seconds = 0", "daemon.interval_seconds"),
        ("cron = \"not a cron\"", "daemon.cron"),
        ("full_every_hours = 0", "daemon.full_every_hours"),
        ("notify_command = []", "daemon.notify_command"),
    ] {
        let e = err(&d, &head(text));
        assert!(e.contains(key), "{text}: {e}");
    }
    assert!(err(&d, &head("interval = 5")).contains("interval"));
}

#[test]
fn placeholders_are_refused_naming_each_key_and_what_to_fill_in() {
    let d = dir_with_files();
    let text = format!(
        "agent_id = \"FILL-IN: a name for this agent\"\n[source]\nkind = \"ldap\"\nurl = \"FILL-IN: the domain controller's ldaps:// URL\"\nbind_dn = \"CN=x\"\nbind_password_file = \"pw\"\nbase_dns = [\"DC=x\", \"FILL-IN: the subtrees to read\"]\n{TAIL}"
    );
    let e = match Config::from_str(&text, "t.toml", d.path()) {
        Ok(_) => panic!("placeholders accepted"),
        Err(e) => e.to_string(),
    };
    assert_eq!(
        e,
        "t.toml: this configuration is not filled in yet; replace each FILL-IN value (3 left): \
         agent_id: a name for this agent; \
         source.base_dns: the subtrees to read; \
         source.url: the domain controller's ldaps:// URL"
    );
    // Once filled in, the same file loads.
    let filled = text
        .replace("FILL-IN: a name for this agent", "a1")
        .replace(
            "FILL-IN: the domain controller's ldaps:// URL",
            "ldaps://dc:636",
        )
        .replace(", \"FILL-IN: the subtrees to read\"", "");
    assert!(Config::from_str(&filled, "t.toml", d.path()).is_ok());
}

/// An LDAP source over a SCIM target, the secrets' keys given by `secrets`.
fn with_secrets(
    d: &tempfile::TempDir,
    source: &str,
    token: &str,
    creds: Option<&Path>,
) -> Result<Config, LoadError> {
    let text = format!(
        "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nurl = \"ldaps://dc:636\"\nbind_dn = \"CN=x\"\nbase_dns = [\"DC=x\"]\n{source}\n[filters]\nfiles = [\"r.toml\"]\n[target]\nkind = \"scim\"\nurl = \"https://directory.example\"\n{token}\n[agreements]\nfile = \"a.toml\"\n[write_back]\nattribute = \"mail\"\nbind_dn = \"CN=w\"\nbind_password_credential = \"writeback-password\"\n"
    );
    Config::from_str_with(&text, "t.toml", d.path(), creds)
}

#[test]
fn secrets_come_from_systemd_credentials() {
    use secrecy::ExposeSecret;
    let d = dir_with_files();
    let creds = tempfile::tempdir().unwrap();
    // systemd's credential files are 0400, but their directory is the unit's own: the
    // mode is not what keeps them private, so it is not checked.
    secret(&creds.path().join("bind-password"), "b1nd\n", 0o440);
    secret(&creds.path().join("directory-token"), "t0k", 0o400);
    secret(&creds.path().join("writeback-password"), "wr1te\n", 0o400);
    let c = with_secrets(
        &d,
        "bind_password_credential = \"bind-password\"",
        "token_credential = \"directory-token\"",
        Some(creds.path()),
    )
    .unwrap();
    let AnySource::Ldap(l) = &c.source else {
        panic!("ldap")
    };
    assert_eq!(password(l), "b1nd");
    assert_eq!(c.scim.as_ref().unwrap().token.expose_secret(), "t0k");
    assert_eq!(
        c.write_back.as_ref().unwrap().bind_password.expose_secret(),
        "wr1te"
    );
}

#[test]
fn credential_errors_name_the_key() {
    let d = dir_with_files();
    let creds = tempfile::tempdir().unwrap();
    secret(&creds.path().join("directory-token"), "t0k", 0o400);
    secret(&creds.path().join("writeback-password"), "w", 0o400);
    secret(&creds.path().join("empty"), "\n", 0o400);
    let e = |source: &str, token: &str, dir: Option<&Path>| match with_secrets(
        &d, source, token, dir,
    ) {
        Ok(_) => panic!("accepted: {source} {token}"),
        Err(e) => e.to_string(),
    };
    let tok = "token_credential = \"directory-token\"";
    // No $CREDENTIALS_DIRECTORY at all.
    let got = e("bind_password_credential = \"bind-password\"", tok, None);
    assert!(
        got.starts_with(
            "t.toml: source.bind_password_credential: credential \"bind-password\" needs $CREDENTIALS_DIRECTORY, which is not set"
        ),
        "{got}"
    );
    assert!(got.contains("LoadCredential=bind-password:FILE"), "{got}");
    // The directory, without that credential.
    let got = e(
        "bind_password_credential = \"bind-password\"",
        tok,
        Some(creds.path()),
    );
    assert!(
        got.starts_with(&format!(
            "t.toml: source.bind_password_credential: credential \"bind-password\" is not in $CREDENTIALS_DIRECTORY ({})",
            creds.path().display()
        )),
        "{got}"
    );
    // Empty, a path instead of a name, or two sources at once.
    let got = e(
        "bind_password_credential = \"empty\"",
        tok,
        Some(creds.path()),
    );
    assert_eq!(
        got,
        format!(
            "t.toml: source.bind_password_credential: {} is empty",
            creds.path().join("empty").display()
        )
    );
    let got = e(
        "bind_password_credential = \"../pw\"",
        tok,
        Some(creds.path()),
    );
    assert!(
        got.starts_with(
            "t.toml: source.bind_password_credential: \"../pw\" is not a credential name"
        ),
        "{got}"
    );
    let got = e(
        "bind_password_file = \"pw\"\nbind_password_credential = \"empty\"",
        tok,
        Some(creds.path()),
    );
    assert_eq!(
        got,
        "t.toml: source.bind_password: give one of source.bind_password_file, source.bind_password_env or source.bind_password_credential, not more"
    );
    // The token and the write-back password go the same way.
    let got = e(
        "bind_password_file = \"pw\"",
        "token_credential = \"nope\"",
        Some(creds.path()),
    );
    assert!(
        got.starts_with("t.toml: target.token_credential: credential \"nope\" is not in"),
        "{got}"
    );
    std::fs::remove_file(creds.path().join("writeback-password")).unwrap();
    let got = e("bind_password_file = \"pw\"", tok, Some(creds.path()));
    assert!(
        got.starts_with("t.toml: write_back.bind_password_credential: credential \"writeback-password\" is not in"),
        "{got}"
    );
}

#[test]
fn log_format_journald_is_accepted() {
    let d = dir_with_files();
    let c = load(
        &d,
        "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[daemon]\nlog_format = \"journald\"",
    )
    .unwrap();
    assert_eq!(c.daemon.log.format, LogFormat::Journald);
}

/// `[source]` for Samba by IP address with Kerberos, plus `extra`.
fn kerberos(url: &str, extra: &str) -> String {
    format!(
        "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nurl = {url:?}\nauth = \"kerberos\"\nbase_dns = [\"DC=x\"]\n{extra}"
    )
}

#[cfg(not(feature = "kerberos"))]
#[test]
fn kerberos_in_a_build_without_it_is_refused() {
    let d = dir_with_files();
    let e = err(
        &d,
        &kerberos(
            "ldaps://dc1.example:636",
            "keytab = \"kt\"\nprincipal = \"svc@EX\"",
        ),
    );
    assert!(
        e.starts_with("t.toml: source.auth: this tansync was built without Kerberos support"),
        "{e}"
    );
}

#[cfg(feature = "kerberos")]
#[test]
fn kerberos_settings_are_validated() {
    let d = dir_with_files();
    let kt = d.path().join("svc.keytab");
    secret(&kt, "\u{5}\u{2}", 0o600);
    let ok = "keytab = \"svc.keytab\"\nprincipal = \"svc-tansync@NORTHGATE.EXAMPLE\"";
    let auth = |url: &str, extra: &str| {
        let c = load(&d, &kerberos(url, extra)).unwrap();
        let AnySource::Ldap(l) = c.source else {
            panic!("ldap")
        };
        let LdapAuth::Kerberos(k) = l.auth else {
            panic!("kerberos")
        };
        k
    };
    // The service host defaults to the URL's; the keytab is relative to the config.
    let k = auth("ldaps://dc1.northgate.example", ok);
    assert_eq!(
        k,
        KerberosAuth {
            principal: "svc-tansync@NORTHGATE.EXAMPLE".into(),
            keytab: kt.clone(),
            sasl_host: "dc1.northgate.example".into(),
        }
    );
    assert_eq!(k.service(), "ldap/dc1.northgate.example");
    let k = auth(
        "ldap://10.0.0.5",
        &format!("{ok}\nstarttls = true\nsasl_host = \"dc1.northgate.example\""),
    );
    assert_eq!(k.sasl_host, "dc1.northgate.example");

    let cases: &[(&str, String, &str)] = &[
        // An IP address is no host of a service principal.
        (
            "ldaps://10.0.0.5",
            ok.to_string(),
            "t.toml: source.sasl_host: source.url names the DC by an IP address",
        ),
        (
            "ldaps://[::1]:636",
            ok.to_string(),
            "t.toml: source.sasl_host: source.url names the DC by an IP address",
        ),
        (
            "ldaps://10.0.0.5",
            format!("{ok}\nsasl_host = \"10.0.0.5\""),
            "t.toml: source.sasl_host: \"10.0.0.5\" is not a host name",
        ),
        // No TLS, no Kerberos; allow_cleartext_bind does not change that.
        (
            "ldap://dc1.example",
            format!("{ok}\nallow_cleartext_bind = true"),
            "t.toml: source.auth: Kerberos needs TLS",
        ),
        (
            "ldaps://dc1.example",
            format!("{ok}\nbind_dn = \"CN=x\""),
            "t.toml: source.bind_dn: not with source.auth = \"kerberos\"",
        ),
        (
            "ldaps://dc1.example",
            format!("{ok}\nbind_password_file = \"pw\""),
            "t.toml: source.bind_password_file: not with source.auth = \"kerberos\"",
        ),
        (
            "ldaps://dc1.example",
            format!("{ok}\nbind_password_env = \"PW\""),
            "t.toml: source.bind_password_env: not with source.auth = \"kerberos\"",
        ),
        (
            "ldaps://dc1.example",
            "principal = \"svc@EX\"".to_string(),
            "t.toml: source.keytab: give the keytab file",
        ),
        (
            "ldaps://dc1.example",
            "keytab = \"missing.keytab\"\nprincipal = \"svc@EX\"".to_string(),
            "t.toml: source.keytab: cannot read ",
        ),
        (
            "ldaps://dc1.example",
            "keytab = \"svc.keytab\"".to_string(),
            "t.toml: source.principal: give the service account's principal",
        ),
        (
            "ldaps://dc1.example",
            "keytab = \"svc.keytab\"\nprincipal = \"svc-tansync\"".to_string(),
            "t.toml: source.principal: \"svc-tansync\" is not a principal with its realm",
        ),
        (
            "ldaps://dc1.example",
            "keytab = \"svc.keytab\"\nprincipal = \"svc@\"".to_string(),
            "t.toml: source.principal: \"svc@\" is not a principal with its realm",
        ),
    ];
    for (url, extra, want) in cases {
        let e = err(&d, &kerberos(url, extra));
        assert!(e.starts_with(want), "{url} {extra}: {e}");
    }

    // The keytab is a secret: the mode rule of every secret file holds.
    secret(&kt, "\u{5}\u{2}", 0o640);
    let e = err(&d, &kerberos("ldaps://dc1.example", ok));
    assert!(
        e.starts_with(&format!(
            "t.toml: source.keytab: {} has mode 0640: group or others may read this secret",
            kt.display()
        )),
        "{e}"
    );
    secret(&kt, "\u{5}\u{2}", 0o400);
    assert!(load(&d, &kerberos("ldaps://dc1.example", ok)).is_ok());
}

#[test]
fn auth_keys_belong_to_their_mode() {
    let d = dir_with_files();
    let simple = |extra: &str| {
        format!(
            "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nurl = \"ldaps://dc:636\"\nbind_dn = \"CN=x\"\nbind_password_file = \"pw\"\nbase_dns = [\"DC=x\"]\n{extra}"
        )
    };
    let c = load(&d, &simple("auth = \"simple\"")).unwrap();
    let AnySource::Ldap(l) = &c.source else {
        panic!("ldap")
    };
    assert_eq!(password(l), "s3cret");
    assert!(c.keytab().is_none());
    for key in ["keytab", "principal", "sasl_host"] {
        let e = err(&d, &simple(&format!("{key} = \"x\"")));
        assert_eq!(
            e,
            format!("t.toml: source.{key}: only with source.auth = \"kerberos\""),
        );
    }
    assert_eq!(
        err(&d, &simple("auth = \"ntlm\"")),
        "t.toml: source.auth: \"ntlm\" is not simple or kerberos"
    );
    let e = err(
        &d,
        "agent_id = \"a1\"\n[source]\nkind = \"ldap\"\nurl = \"ldaps://dc:636\"\nbind_password_file = \"pw\"\nbase_dns = [\"DC=x\"]\n",
    );
    assert!(
        e.starts_with("t.toml: source.bind_dn: give the DN to bind as"),
        "{e}"
    );
}

#[test]
fn the_keytab_is_peeked_as_the_load_resolves_it() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("tansync.toml");
    std::fs::write(
        &cfg,
        "[source]\nauth = \"kerberos\"\nkeytab = \"k/svc.keytab\"\n",
    )
    .unwrap();
    assert_eq!(peek_keytab(&cfg), Some(d.path().join("k/svc.keytab")));
    std::fs::write(
        &cfg,
        "[source]\nauth = \"kerberos\"\nkeytab = \"/etc/svc.keytab\"\n",
    )
    .unwrap();
    assert_eq!(peek_keytab(&cfg), Some(PathBuf::from("/etc/svc.keytab")));
    std::fs::write(&cfg, "[source]\nkeytab = \"svc.keytab\"\n").unwrap();
    assert_eq!(peek_keytab(&cfg), None, "only with auth = kerberos");
    assert_eq!(peek_keytab(&d.path().join("missing.toml")), None);
}

#[cfg(feature = "kerberos")]
#[test]
fn a_keytab_can_be_a_systemd_credential() {
    let d = dir_with_files();
    let creds = tempfile::tempdir().unwrap();
    // systemd's credential files are 0400 in the unit's own directory: no mode check.
    secret(&creds.path().join("tansync-keytab"), "\u{5}\u{2}", 0o440);
    let text = |extra: &str| {
        format!(
            "{}\n{TAIL}",
            kerberos(
                "ldaps://dc1.northgate.example",
                &format!("principal = \"svc-tansync@NORTHGATE.EXAMPLE\"\n{extra}")
            )
        )
    };
    let c = Config::from_str_with(
        &text("keytab_credential = \"tansync-keytab\""),
        "t.toml",
        d.path(),
        Some(creds.path()),
    )
    .unwrap();
    assert_eq!(
        c.keytab(),
        Some(creds.path().join("tansync-keytab").as_path())
    );
    let e = |extra: &str, dir: Option<&Path>| match Config::from_str_with(
        &text(extra),
        "t.toml",
        d.path(),
        dir,
    ) {
        Ok(_) => panic!("accepted: {extra}"),
        Err(e) => e.to_string(),
    };
    let both = e(
        "keytab = \"k\"\nkeytab_credential = \"tansync-keytab\"",
        Some(creds.path()),
    );
    assert!(
        both.contains(
            "source.keytab_credential: give source.keytab or source.keytab_credential, not both"
        ),
        "{both}"
    );
    let unset = e("keytab_credential = \"tansync-keytab\"", None);
    assert!(
        unset.contains("source.keytab_credential") && unset.contains("$CREDENTIALS_DIRECTORY"),
        "{unset}"
    );
    let missing = e("keytab_credential = \"other\"", Some(creds.path()));
    assert!(
        missing.contains("add LoadCredential=other:FILE"),
        "{missing}"
    );
}

/// A portal_report configuration in `d` (with a template file), `target` keys appended
/// to `[target]` and `after` after it.
fn portal(d: &tempfile::TempDir, target: &str) -> Result<Config, LoadError> {
    std::fs::write(
        d.path().join("template.csv"),
        format!("{}\r\n", nhs_model::portal::TEMPLATE_HEADINGS.join(",")),
    )
    .unwrap();
    Config::from_str(
        &format!(
            "agent_id = \"a1\"\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n[filters]\nfiles = [\"r.toml\"]\n[agreements]\nfile = \"a.toml\"\n[target]\nkind = \"portal_report\"\n{target}\n"
        ),
        "t.toml",
        d.path(),
    )
}

const PORTAL: &str = "report = \"report.csv\"\ntemplate = \"template.csv\"\nout_dir = \"out\"\norganisations_file = \"s.json\"";

#[test]
fn portal_report_target_defaults() {
    let d = dir_with_files();
    let c = portal(&d, PORTAL).unwrap();
    let p = c.portal.as_ref().unwrap();
    assert!(c.scim.is_none(), "nothing to write over SCIM");
    let AnyTarget::Portal(t) = &c.target else {
        panic!("portal target")
    };
    assert!(Arc::ptr_eq(&t.settings, p));
    assert_eq!(crate::target::Target::kind(&c.target), "portal_report");
    assert_eq!(
        c.target.location(),
        d.path().join("report.csv").display().to_string()
    );
    use crate::target::portal::{Column, OrganisationSource, ReportLocation};
    assert_eq!(p.report, ReportLocation::File(d.path().join("report.csv")));
    assert_eq!(
        p.organisations,
        OrganisationSource::File(d.path().join("s.json"))
    );
    assert_eq!(p.out_dir, d.path().join("out"));
    assert_eq!(p.batch_size, 100);
    assert_eq!(p.results_column, "Result");
    assert_eq!(
        p.success_values,
        ["Success", "Succeeded", "Created", "Updated"]
    );
    assert_eq!(p.agent_id, "a1");
    assert_eq!(p.template.path, d.path().join("template.csv"));
    assert_eq!(p.template.columns[0], Column::LocalId);
    assert_eq!(
        p.report_columns.heading(Column::Field(Field::JobTitle)),
        Some("Job Title")
    );
}

#[test]
fn portal_report_target_keys() {
    let d = dir_with_files();
    std::fs::create_dir(d.path().join("drop")).unwrap();
    let c = portal(
        &d,
        "drop_dir = \"drop\"\ntemplate = \"template.csv\"\nout_dir = \"out\"\nbatch_size = 250\nresults_column = \"Outcome\"\nsuccess_values = [\"OK\"]\n\
         [target.report_columns]\njob_title = \"Role\"\nleaver_date = \"\"\n\
         [target.upload_columns]\n\"Secondary Email\" = \"\"\n\
         [[target.organisations]]\nods_code = \"RXA\"\nname = \"N\"\nkind = \"trust\"\nopen = true\n",
    )
    .unwrap();
    use crate::target::portal::{Column, OrganisationSource, ReportLocation};
    let p = c.portal.as_ref().unwrap();
    assert_eq!(p.report, ReportLocation::DropDir(d.path().join("drop")));
    let OrganisationSource::Inline(orgs) = &p.organisations else {
        panic!("inline organisations")
    };
    assert_eq!(orgs[0].ods_code.as_str(), "RXA");
    assert_eq!((p.batch_size, p.results_column.as_str()), (250, "Outcome"));
    assert_eq!(p.success_values, ["OK"]);
    assert_eq!(
        p.report_columns.heading(Column::Field(Field::JobTitle)),
        Some("Role")
    );
    assert_eq!(p.report_columns.heading(Column::LeaverDate), None);
    assert_eq!(p.template.columns[12], Column::Blank);
}

#[test]
fn portal_report_errors_name_the_key() {
    let d = dir_with_files();
    std::fs::write(d.path().join("odd.csv"), "Local ID,ODS Code,Pager\n").unwrap();
    std::fs::write(
        d.path().join("few.csv"),
        "Local ID,ODS Code,First Name,Last Name\n",
    )
    .unwrap();
    std::fs::create_dir(d.path().join("drops")).unwrap();
    let without = |key: &str| {
        PORTAL
            .lines()
            .filter(|l| !l.starts_with(key))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (
            without("report"),
            "target.report",
            "say where the Mailbox Report is",
        ),
        (
            format!("{PORTAL}\ndrop_dir = \"out\""),
            "target.drop_dir",
            "not both",
        ),
        (
            format!("{}\ndrop_dir = \"nowhere\"", without("report")),
            "target.drop_dir",
            "does not exist",
        ),
        (
            without("organisations_file"),
            "target.organisations_file",
            "registry",
        ),
        (
            format!(
                "{PORTAL}\n[[target.organisations]]\nods_code = \"RXA\"\nkind = \"trust\"\nopen = true"
            ),
            "target.organisations",
            "not both",
        ),
        (
            without("template"),
            "target.template",
            "Portal's sample file",
        ),
        (
            format!("{}\ntemplate = \"odd.csv\"", without("template")),
            "target.template",
            "\"Pager\"",
        ),
        (
            format!("{PORTAL}\n[target.upload_columns]\n\"Fax\" = \"\""),
            "target.template",
            "\"Fax\", which is not a heading",
        ),
        (without("out_dir"), "target.out_dir", "give the folder"),
        (
            "drop_dir = \"drops\"\ntemplate = \"template.csv\"\nout_dir = \"drops/out\"\norganisations_file = \"s.json\"".to_string(),
            "target.out_dir",
            "inside target.drop_dir",
        ),
        (
            format!("{}\ntemplate = \"few.csv\"", without("template")),
            "target.upload_columns",
            "[mapping] produces",
        ),
        (
            format!("{}\nout_dir = \"no/such/out\"", without("out_dir")),
            "target.out_dir",
            "its parent must exist",
        ),
        (
            format!("{PORTAL}\nbatch_size = 0"),
            "target.batch_size",
            "1 to 10000",
        ),
        (
            format!("{PORTAL}\nbatch_size = 10001"),
            "target.batch_size",
            "1 to 10000",
        ),
        (
            format!("{PORTAL}\nresults_column = \"local id\""),
            "target.results_column",
            "already a heading",
        ),
        (
            format!("{PORTAL}\nsuccess_values = []"),
            "target.success_values",
            "at least one",
        ),
        (
            format!("{PORTAL}\n[target.report_columns]\njobtitle = \"Role\""),
            "target.report_columns.jobtitle",
            "unknown column name",
        ),
        (
            format!("{PORTAL}\n[target.report_columns]\nstatus = \"\""),
            "target.report_columns.status",
            "mandatory",
        ),
        (
            format!("{PORTAL}\n[target.report_columns]\njob_title = \"\""),
            "target.report_columns.job_title",
            "[mapping] produces job_title",
        ),
    ];
    for (target, key, problem) in cases {
        let e = match portal(&d, &target) {
            Ok(_) => panic!("expected an error for {target}"),
            Err(e) => e.to_string(),
        };
        assert!(
            e.starts_with(&format!("t.toml: {key}: ")) && e.contains(problem),
            "{e}\n  wanted {key}: …{problem}…"
        );
    }
    // Email is never compared, so the report need not show it.
    assert!(
        portal(
            &d,
            &format!("{PORTAL}\n[target.report_columns]\nemail = \"\"")
        )
        .is_ok()
    );
}
