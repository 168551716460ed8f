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
    std::fs::write(d.path().join("pw"), "s3cret\n").unwrap();
    d
}

const TAIL: &str = "[filters]\nfiles = [\"r.toml\"]\n[target]\nkind = \"snapshot\"\npath = \"s.json\"\n[agreements]\nfile = \"a.toml\"\n";

fn load(d: &tempfile::TempDir, head: &str) -> Result<Config, LoadError> {
    Config::from_str(&format!("{head}\n{TAIL}"), "t.toml", d.path())
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
    use secrecy::ExposeSecret;
    assert_eq!(l.bind_password.expose_secret(), "s3cret");
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
