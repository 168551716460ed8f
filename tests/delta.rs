//! Delta reads against the real servers (started by tests/harness): the Samba AD DC
//! (`uSNChanged` pinned to one DC, deleted objects through Show Deleted) and OpenLDAP
//! (`entryCSN`). Each test reads only an OU of its own, so other suites changing the
//! shared servers at the same time cannot move its assertions; and what it adds to
//! slapd (pilotPerson entries) is not what the fixture-wide reads of other suites count.

mod common;
use common::ad::{self, User};
use common::env;
use common::source::{Collect, samba, slapd};
use std::collections::BTreeMap;
use tansync::ids::ExternalId;
use tansync::source::delta::{Delta, Watermark};
use tansync::source::ldap::LdapSource;
use tansync::source::{AnchorKind, ReadRequest};
use tokio_util::sync::CancellationToken;

fn req() -> ReadRequest {
    ReadRequest {
        attributes: ["title", "description", "cn"].map(String::from).into(),
        ..ReadRequest::default()
    }
}

async fn full(src: &LdapSource) -> Collect {
    let mut sink = Collect::default();
    src.read(&req(), &mut sink, &CancellationToken::new())
        .await
        .expect("full read");
    sink
}

async fn watermark(src: &LdapSource) -> Watermark {
    src.watermark(&CancellationToken::new())
        .await
        .expect("watermark")
        .expect("this server has deltas")
}

/// A delta read that must find changes: the entries, the anchors gone, the next mark.
async fn changes(src: &LdapSource, since: &Watermark) -> (Collect, Vec<ExternalId>, Watermark) {
    let mut sink = Collect::default();
    match src
        .read_delta(&req(), since, &mut sink, &CancellationToken::new())
        .await
        .expect("delta read")
    {
        Delta::Changes { deleted, next } => (sink, deleted, next),
        Delta::Full { why } => panic!("a full read was asked for: {why}"),
    }
}

/// Anchor by lowercased CN, from a full read.
fn anchors(read: &Collect) -> BTreeMap<String, ExternalId> {
    read.0
        .iter()
        .map(|e| {
            (
                e.first("cn").expect("cn").to_lowercase(),
                e.anchor.clone().expect("anchor"),
            )
        })
        .collect()
}

/// The anchors in `deleted` that are this test's (other suites change the servers too).
fn ours(ids: &BTreeMap<String, ExternalId>, deleted: &[ExternalId]) -> Vec<ExternalId> {
    deleted
        .iter()
        .filter(|d| ids.values().any(|a| a == *d))
        .cloned()
        .collect()
}

fn user<'a>(cn: &'a str) -> User<'a> {
    User {
        cn,
        given: "Delta",
        family: cn,
        title: "Nurse",
        enabled: true,
    }
}

#[tokio::test]
async fn samba_watermark_names_the_dc_its_database_and_usn() {
    let w = watermark(&samba(&env("TANSYNC_TEST_SAMBA_BASE"))).await;
    assert_eq!(w.kind, "ad_usn");
    assert!(
        w.server.to_lowercase().starts_with("cn=ntds settings,"),
        "{w:?}"
    );
    let inv = w.invocation_id.as_deref().expect("invocationId");
    assert_eq!(inv.len(), 36, "{inv}");
    assert!(w.position.parse::<u64>().expect("a USN") > 0);
}

#[tokio::test]
async fn samba_delta_returns_changed_and_disabled_users_and_reports_deleted_and_moved_ones() {
    let ou = ad::fresh_ou("delta");
    let away = ad::fresh_ou("delta-away");
    ad::add_users(
        &ou,
        &[
            user("Dee Alpha"),
            user("Dee Beta"),
            user("Dee Gamma"),
            user("Dee Delta"),
        ],
    );
    let src = samba(&ou);
    let ids = anchors(&full(&src).await);
    assert_eq!(ids.len(), 4);
    let dn = |cn: &str| format!("CN={cn},{ou}");
    let only_mine = |deleted: &[ExternalId]| ours(&ids, deleted);

    // Nothing of ours changed since the watermark: an empty delta.
    let w0 = watermark(&src).await;
    let (read, deleted, w0b) = changes(&src, &w0).await;
    assert!(read.0.is_empty(), "{:?}", read.dns());
    assert!(only_mine(&deleted).is_empty());

    // A changed user: exactly that one, with the new value.
    ad::replace(&dn("Dee Alpha"), "title", "Matron");
    let (read, deleted, w1) = changes(&src, &w0b).await;
    assert_eq!(read.dns(), [dn("Dee Alpha").to_lowercase()]);
    assert_eq!(read.0[0].first("title"), Some("Matron"));
    assert!(read.0[0].enabled);
    assert!(only_mine(&deleted).is_empty(), "{deleted:?}");

    // A disabled user: exactly that one, disabled.
    ad::set_enabled(&dn("Dee Beta"), false);
    let (read, deleted, w2) = changes(&src, &w1).await;
    assert_eq!(read.dns(), [dn("Dee Beta").to_lowercase()]);
    assert!(!read.0[0].enabled);
    assert!(only_mine(&deleted).is_empty(), "{deleted:?}");

    // A deleted user: its objectGUID, through Show Deleted.
    ad::ldif(
        &format!("dn: {}\nchangetype: delete\n", dn("Dee Gamma")),
        false,
    );
    let (read, deleted, w3) = changes(&src, &w2).await;
    assert!(read.0.is_empty(), "{:?}", read.dns());
    assert_eq!(only_mine(&deleted), [ids["dee gamma"].clone()]);

    // A user moved out of the base DN: evidence by anchor too.
    ad::move_to(&dn("Dee Delta"), &away);
    let (read, deleted, w4) = changes(&src, &w3).await;
    assert!(read.0.is_empty(), "{:?}", read.dns());
    assert_eq!(only_mine(&deleted), [ids["dee delta"].clone()]);

    // Each delta's next mark is where the following one starts: nothing is read twice.
    let (read, deleted, _) = changes(&src, &w4).await;
    assert!(read.0.is_empty(), "{:?}", read.dns());
    assert!(only_mine(&deleted).is_empty(), "{deleted:?}");
    for w in [&w1, &w2, &w3, &w4] {
        assert_eq!(w.server, w0.server);
        assert_eq!(w.invocation_id, w0.invocation_id);
    }
}

#[tokio::test]
async fn samba_a_watermark_from_another_dc_a_restored_database_or_the_future_forces_a_full_read() {
    let ou = ad::fresh_ou("delta-full");
    ad::add_users(&ou, &[user("Dee Epsilon")]);
    let src = samba(&ou);
    let now = watermark(&src).await;
    let usn: u64 = now.position.parse().expect("USN");
    let other_dc = Watermark {
        server: now
            .server
            .replacen("CN=NTDS Settings,", "CN=NTDS Settings,CN=DC2,", 1),
        ..now.clone()
    };
    let restored = Watermark {
        invocation_id: Some("00000000-0000-0000-0000-000000000001".to_string()),
        ..now.clone()
    };
    let ahead = Watermark {
        position: (usn + 1_000_000_000).to_string(),
        ..now.clone()
    };
    let csn = Watermark {
        kind: "ldap_csn".to_string(),
        ..now.clone()
    };
    for (since, want) in [
        (other_dc, "belongs to domain controller"),
        (restored, "invocationId changed"),
        (ahead, "highestCommittedUSN went back"),
        (csn, "of kind \"ldap_csn\""),
    ] {
        let mut sink = Collect::default();
        let got = src
            .read_delta(&req(), &since, &mut sink, &CancellationToken::new())
            .await
            .expect("delta read");
        match got {
            Delta::Full { why } => assert!(why.contains(want), "{want}: {why}"),
            other => panic!("{want}: a delta was read: {other:?}"),
        }
        assert!(sink.0.is_empty(), "{want}: entries were read");
    }
}

/// A fresh OU in slapd with people in it: pilotPerson entries, which the other suites'
/// reads of the whole fixture (inetOrgPerson) never see.
fn slapd_ou(name: &str, cns: &[&str]) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let rdn = format!("{name}-{}-{nanos:x}", std::process::id());
    let ou = format!("ou={rdn},{}", env("TANSYNC_TEST_SLAPD_BASE"));
    let mut text = format!("dn: {ou}\nobjectClass: organizationalUnit\nou: {rdn}\n\n");
    for cn in cns {
        text.push_str(&format!(
            "dn: cn={cn},{ou}\nobjectClass: pilotPerson\ncn: {cn}\nsn: {cn}\ndescription: Nurse\n\n"
        ));
    }
    slapd_ldif(&text, true);
    ou
}

fn slapd_ldif(text: &str, add: bool) {
    ad::modify(
        &env("TANSYNC_TEST_SLAPD_LDAPS_URL"),
        &env("TANSYNC_TEST_SLAPD_BIND_DN"),
        &env("TANSYNC_TEST_SLAPD_PASSWORD_FILE"),
        text,
        add,
    );
}

#[tokio::test]
async fn openldap_delta_returns_the_modified_entry_and_reports_a_moved_one() {
    let ou = slapd_ou("delta", &["Oa", "Ob", "Oc"]);
    let away = slapd_ou("delta-away", &[]);
    let src = slapd(&ou);
    let ids = anchors(&full(&src).await);
    assert_eq!(ids.len(), 3);
    let only_mine = |deleted: &[ExternalId]| ours(&ids, deleted);

    let w0 = watermark(&src).await;
    assert_eq!(w0.kind, "ldap_csn");
    assert_eq!(w0.server, src.url);

    slapd_ldif(
        &format!(
            "dn: cn=Ob,{ou}\nchangetype: modify\nreplace: description\ndescription: Matron\n-\n"
        ),
        false,
    );
    let (read, deleted, w1) = changes(&src, &w0).await;
    assert_eq!(read.dns(), [format!("cn=ob,{ou}").to_lowercase()]);
    assert_eq!(read.0[0].first("description"), Some("Matron"));
    assert!(only_mine(&deleted).is_empty(), "{deleted:?}");
    assert!(w1.position > w0.position, "{w0:?} {w1:?}");

    slapd_ldif(
        &format!(
            "dn: cn=Oc,{ou}\nchangetype: modrdn\nnewrdn: cn=Oc\ndeleteoldrdn: 1\nnewsuperior: {away}\n"
        ),
        false,
    );
    let (read, deleted, w2) = changes(&src, &w1).await;
    assert!(read.0.is_empty(), "{:?}", read.dns());
    assert_eq!(only_mine(&deleted), [ids["oc"].clone()]);

    let (read, _, _) = changes(&src, &w2).await;
    assert!(read.0.is_empty(), "{:?}", read.dns());

    // A watermark from another server is not used.
    let other = Watermark {
        server: "ldaps://elsewhere.example:636".to_string(),
        ..w2
    };
    let mut sink = Collect::default();
    match src
        .read_delta(&req(), &other, &mut sink, &CancellationToken::new())
        .await
        .expect("delta read")
    {
        Delta::Full { why } => assert!(why.contains("belongs to"), "{why}"),
        d => panic!("a delta was read: {d:?}"),
    }
}

#[tokio::test]
async fn samba_a_text_anchor_changed_outside_the_scope_is_not_evidence_while_someone_in_scope_holds_it()
 {
    let ou = ad::fresh_ou("delta-text");
    let other = ad::fresh_ou("delta-text-other");
    // The same CN in both OUs: the same employeeID (an administrator's second account).
    ad::add_users(&ou, &[user("Dee Zeta"), user("Dee Eta")]);
    ad::add_users(&other, &[user("Dee Zeta")]);
    let src = LdapSource {
        anchor: AnchorKind::Text("employeeID".to_string()),
        ..samba(&ou)
    };
    let w0 = watermark(&src).await;
    ad::replace(&format!("CN=Dee Zeta,{other}"), "title", "Admin");
    ad::move_to(&format!("CN=Dee Eta,{ou}"), &other);
    let (read, deleted, _) = changes(&src, &w0).await;
    assert!(read.0.is_empty(), "{:?}", read.dns());
    let zeta = ExternalId::parse("E-dee.zeta").expect("id");
    let eta = ExternalId::parse("E-dee.eta").expect("id");
    assert!(!deleted.contains(&zeta), "{deleted:?}");
    // Moved out, and no one in scope holds its anchor: evidence.
    assert!(deleted.contains(&eta), "{deleted:?}");
}
