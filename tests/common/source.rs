//! Sources the library tests read directly (not through the binary): the Samba DC and
//! OpenLDAP as the harness starts them, and a sink that keeps what a read delivers.

use super::env;
use secrecy::SecretString;
use std::time::Duration;
use tansync::source::ldap::{LdapAuth, LdapSource, NestedGroups};
use tansync::source::{AnchorKind, EntrySink, GroupIndex, SourceEntry, SourceError};

#[derive(Default)]
pub struct Collect(pub Vec<SourceEntry>, pub Option<GroupIndex>);

impl EntrySink for Collect {
    fn groups(&mut self, index: GroupIndex) {
        self.1 = Some(index);
    }
    fn entry(&mut self, entry: SourceEntry) -> Result<(), SourceError> {
        self.0.push(entry);
        Ok(())
    }
}

impl Collect {
    pub fn dns(&self) -> Vec<String> {
        let mut dns: Vec<String> = self.0.iter().map(|e| e.dn.to_lowercase()).collect();
        dns.sort();
        dns
    }
}

pub fn password(file: &str) -> SecretString {
    let text = std::fs::read_to_string(file).expect("read the password file");
    SecretString::from(text.trim_end_matches(['\r', '\n']).to_string())
}

/// The Samba DC as the administrator the harness provisions (who may use Show Deleted),
/// reading users under `base` only.
pub fn samba(base: &str) -> LdapSource {
    LdapSource {
        url: env("TANSYNC_TEST_SAMBA_LDAPS_URL"),
        starttls: false,
        ca_file: Some(env("TANSYNC_TEST_CA").into()),
        auth: LdapAuth::Simple {
            bind_dn: env("TANSYNC_TEST_SAMBA_BIND_DN"),
            bind_password: password(&env("TANSYNC_TEST_SAMBA_PASSWORD_FILE")),
        },
        base_dns: vec![base.to_string()],
        filter: "(objectClass=user)".to_string(),
        group_filter: "(objectClass=group)".to_string(),
        page_size: 200,
        connect_timeout: Duration::from_secs(10),
        operation_timeout: Duration::from_secs(60),
        allow_cleartext_bind: false,
        anchor: AnchorKind::ObjectGuid,
        nested_groups: NestedGroups::InChain,
    }
}

pub fn slapd(base: &str) -> LdapSource {
    LdapSource {
        url: env("TANSYNC_TEST_SLAPD_LDAPS_URL"),
        auth: LdapAuth::Simple {
            bind_dn: env("TANSYNC_TEST_SLAPD_BIND_DN"),
            bind_password: password(&env("TANSYNC_TEST_SLAPD_PASSWORD_FILE")),
        },
        filter: "(objectClass=pilotPerson)".to_string(),
        anchor: AnchorKind::Text("entryUUID".to_string()),
        nested_groups: NestedGroups::Expand,
        ..samba(base)
    }
}
