//! The full read's own LDAP client against ldap3, on the real servers (started by
//! tests/harness): the same configuration read once through each must deliver the same
//! entries, in the same order, with the same attributes, anchors and group index. Small
//! pages make every read cross many page boundaries.
//!
//! Each read is of a subtree no other suite changes while it runs: an OU of its own on
//! the Samba DC, the fixture's `ou=people` on slapd.

mod common;
use common::ad::{self, User};
use common::env;
use common::source::{Collect, samba, slapd};
use std::collections::BTreeSet;
use tansync::ids::NormDn;
use tansync::source::ReadRequest;
use tansync::source::ldap::LdapSource;
use tokio_util::sync::CancellationToken;

/// Read `src` through both clients; the entries and the group index as text.
async fn both(src: &LdapSource, req: &ReadRequest) -> (Collect, Collect) {
    let cancel = CancellationToken::new();
    let mut own = Collect::default();
    let own_summary = src.read(req, &mut own, &cancel).await.expect("own client");
    let mut ldap3 = Collect::default();
    let ldap3_summary = src
        .read_with_ldap3(req, &mut ldap3, &cancel)
        .await
        .expect("ldap3");
    assert_eq!(own_summary, ldap3_summary);
    (own, ldap3)
}

fn assert_same(own: &Collect, ldap3: &Collect) {
    assert_eq!(own.0.len(), ldap3.0.len(), "entries read");
    for (a, b) in own.0.iter().zip(&ldap3.0) {
        assert_eq!(format!("{a:?}"), format!("{b:?}"), "entry {}", b.dn);
    }
    assert_eq!(
        format!("{:?}", own.1),
        format!("{:?}", ldap3.1),
        "group index"
    );
}

fn user<'a>(cn: &'a str, given: &'a str, family: &'a str, enabled: bool) -> User<'a> {
    User {
        cn,
        given,
        family,
        title: "Ward Sister",
        enabled,
    }
}

#[tokio::test]
async fn samba_reads_the_same_through_both_clients() {
    let ou = ad::fresh_ou("reader");
    let names: Vec<(String, String, String)> = (0..23)
        .map(|i| {
            // The CN is short ASCII: the employee id the helper derives from it must be (AD
            // allows 16 characters).
            let (cn, g, f) = [
                ("Sian D", "Siân", "Ó Dálaigh"),
                ("Zoe A", "Zoë", "Åström"),
                ("Ann Ash", "Ann", "Ash"),
            ][i % 3];
            (format!("{cn} {i:02}"), g.to_string(), f.to_string())
        })
        .collect();
    let users: Vec<User> = names
        .iter()
        .enumerate()
        .map(|(i, (cn, g, f))| user(cn, g, f, i % 5 != 0))
        .collect();
    ad::add_users(&ou, &users);
    // Nested membership: the first user is in "Inner", which is in "Outer".
    let first = format!("CN={},{ou}", names[0].0);
    let inner = format!("CN=Inner,{ou}");
    let outer = format!("CN=Outer,{ou}");
    ad::ldif(
        &format!(
            "dn: {inner}\nobjectClass: group\nsAMAccountName: inner-{n}\nmember: {first}\n\n\
             dn: {outer}\nobjectClass: group\nsAMAccountName: outer-{n}\nmember: {inner}\n",
            n = ou.len() ^ std::process::id() as usize,
        ),
        true,
    );
    let src = LdapSource {
        page_size: 7,
        ..samba(&ou)
    };
    let req = ReadRequest {
        // objectSid is binary; memberOf is multi-valued; whenCreated changes never.
        attributes: [
            "cn",
            "givenName",
            "sn",
            "title",
            "objectSid",
            "memberOf",
            "whenCreated",
        ]
        .map(String::from)
        .into(),
        nested_groups: BTreeSet::from([outer.clone()]),
        uses_groups: true,
    };
    let (own, ldap3) = both(&src, &req).await;
    // 23 users and the two groups (the filter is objectClass=user, which groups are not).
    assert_eq!(own.0.len(), 23, "{:?}", own.dns());
    assert!(own.0.iter().all(|e| e.anchor.is_ok()), "objectGUID anchors");
    assert!(
        own.0.iter().any(|e| !e.enabled),
        "disabled users read as such"
    );
    let groups = own.1.as_ref().expect("the group index");
    let member = own
        .0
        .iter()
        .find(|e| e.norm_dn == NormDn::new(&first))
        .expect("the nested member");
    assert!(groups.is_member(member, &NormDn::new(&outer), true));
    assert!(!member.values("objectSid").is_empty() || member.unreadable.contains_key("objectsid"));
    assert_same(&own, &ldap3);
}

#[tokio::test]
async fn openldap_reads_the_same_through_both_clients() {
    let base = format!("ou=people,{}", env("TANSYNC_TEST_SLAPD_BASE"));
    let src = LdapSource {
        page_size: 97,
        filter: "(objectClass=inetOrgPerson)".to_string(),
        group_filter: "(objectClass=groupOfNames)".to_string(),
        ..slapd(&base)
    };
    let req = ReadRequest {
        attributes: [
            "cn",
            "givenName",
            "sn",
            "title",
            "employeeNumber",
            "o",
            "uid",
        ]
        .map(String::from)
        .into(),
        nested_groups: BTreeSet::from([format!("cn=none,{base}")]),
        uses_groups: true,
    };
    let (own, ldap3) = both(&src, &req).await;
    assert_eq!(own.0.len(), 1101, "the fixture's people");
    assert!(own.0.iter().any(|e| e.first("givenName") == Some("Ývonne")));
    assert_same(&own, &ldap3);
}
