use super::*;
use crate::source::AnchorKind;

fn entry(dn: &str, attrs: &[(&str, &str)]) -> SourceEntry {
    let mut text: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in attrs {
        text.entry(k.to_string()).or_default().push(v.to_string());
    }
    SourceEntry::build(
        dn.into(),
        text,
        Vec::<(String, Vec<Vec<u8>>)>::new(),
        &AnchorKind::Text("entryUUID".into()),
    )
}

const RULES: &str = r#"
[[rule]]
id = "no-service"
action = "exclude"
dn_regex = ["(?i)^CN=svc-"]

[[rule]]
id = "eligible-contractors"
action = "include"
under = ["OU=Contractors,DC=x"]
member_of_nested = ["CN=Eligible,DC=x"]
ods = { constant = "rxa" }

[[rule]]
id = "staff"
action = "include"
under = ["OU=Staff,DC=x"]
enabled = true
attributes = [{ name = "company", regex = "^[A-Z0-9]+$" }, { name = "mail", present = true }]
ods = { attribute = "company" }
transforms = [{ field = "job_title", replace = { regex = "^Snr ", with = "Senior " } }]
"#;

#[test]
fn first_match_decides_and_default_excludes() {
    let rs = parse_rules("t.toml", RULES).unwrap();
    let g = GroupIndex::default();
    let svc = entry(
        "CN=svc-x,OU=Staff,DC=x",
        &[("company", "RXA"), ("mail", "a@b")],
    );
    assert_eq!(
        rs.decide(&svc, &g).rule_id().unwrap().as_str(),
        "no-service"
    );
    let staff = entry("CN=a,OU=Staff,DC=x", &[("company", "RXA"), ("mail", "a@b")]);
    let Decision::Include(r) = rs.decide(&staff, &g) else {
        panic!("expected include")
    };
    assert_eq!(r.ods_code(&staff).unwrap().as_str(), "RXA");
    let no_mail = entry("CN=a,OU=Staff,DC=x", &[("company", "RXA")]);
    assert!(matches!(rs.decide(&no_mail, &g), Decision::NoMatch));
    let disabled = entry(
        "CN=a,OU=Staff,DC=x",
        &[
            ("company", "RXA"),
            ("mail", "a@b"),
            ("userAccountControl", "514"),
        ],
    );
    assert!(matches!(rs.decide(&disabled, &g), Decision::NoMatch));
}

#[test]
fn nested_group_rule_and_explain_trace() {
    let rs = parse_rules("t.toml", RULES).unwrap();
    let mut g = GroupIndex::default();
    g.add_direct(
        NormDn::new("CN=Eligible,DC=x"),
        [NormDn::new("CN=Agency,DC=x")].into(),
    );
    g.add_direct(
        NormDn::new("CN=Agency,DC=x"),
        [NormDn::new("CN=n1,OU=Contractors,DC=x")].into(),
    );
    g.expand(&NormDn::new("CN=Eligible,DC=x"));
    let n1 = entry("CN=n1,OU=Contractors,DC=x", &[]);
    let n2 = entry("CN=n2,OU=Contractors,DC=x", &[]);
    assert_eq!(
        rs.decide(&n1, &g).rule_id().unwrap().as_str(),
        "eligible-contractors"
    );
    let (d, trace) = rs.explain(&n2, &g);
    assert!(matches!(d, Decision::NoMatch));
    assert_eq!(trace.len(), 3);
    assert_eq!(
        trace[1].conditions,
        vec![
            ("under \"OU=Contractors,DC=x\"".to_string(), true),
            ("nested member of \"CN=Eligible,DC=x\"".to_string(), false)
        ]
    );
}

#[test]
fn errors_name_file_rule_and_cause() {
    let e = parse_rules("f.toml", "[[rule]]\nid = \"a\"\naction = \"include\"\ndn_regex = [\"(\"]\nods = { constant = \"RXA\" }\n").unwrap_err();
    assert!(
        e.to_string()
            .starts_with("f.toml: rule \"a\" (#1): dn_regex: invalid regex"),
        "{e}"
    );
    let e = parse_rules(
        "f.toml",
        "[[rule]]\nid = \"b\"\naction = \"include\"\nsurname = \"x\"\n",
    )
    .unwrap_err();
    assert!(
        e.to_string()
            .contains("rule \"b\" (#1): unknown field `surname`"),
        "{e}"
    );
    let e = parse_rules("f.toml", "[[rule]]\nid = \"c\"\naction = \"include\"\n").unwrap_err();
    assert!(
        e.to_string().contains("must assign the ODS organisation"),
        "{e}"
    );
    let e = parse_rules(
        "f.toml",
        "[[rule]]\nid = \"d\"\naction = \"exclude\"\nattributes = [{ name = \"x\" }]\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("exactly one of regex"), "{e}");
    let e = parse_rules("f.toml", "rules = 1\n").unwrap_err();
    assert!(e.to_string().contains("unknown field `rules`"), "{e}");
}

#[test]
fn ods_from_attribute_with_capture_and_transforms() {
    let rs = parse_rules(
        "t.toml",
        r#"
[[rule]]
id = "sites"
action = "include"
ods = { attribute = "department", regex = "\\((?P<ods>[A-Z0-9]+)\\)$" }
transforms = [{ field = "family_name", case = "title" }]
"#,
    )
    .unwrap();
    let r = &rs.rules[0];
    let e = entry("CN=a", &[("department", "Pharmacy (RXA01)")]);
    assert_eq!(r.ods_code(&e).unwrap().as_str(), "RXA01");
    let e = entry("CN=a", &[("department", "Pharmacy")]);
    assert!(r.ods_code(&e).unwrap_err().contains("does not match"));
    assert_eq!(r.transforms[0].apply("o'brien-ngũgĩ"), "O'Brien-Ngũgĩ");
}
