//! Write-back (opt-in, `[write_back] attribute = "mail"`): the NHSmail address the
//! directory allocated is written to a configured attribute of the person's AD entry, so
//! that AD (and whatever reads it: GAL, HR feeds) knows the address.
//!
//! It is planned like any change: [`planned`] (pure) lists, in the plan's `write_back`,
//! every managed account in scope whose address differs from the AD value — from state,
//! so an interrupted run, or an address the directory changed, is caught up next time —
//! and `apply` writes exactly those (plus the addresses of accounts it has just
//! provisioned), each journalled before and after.
//!
//! Never does: write with the source's (read) credential — it binds with its own
//! `[write_back] bind_dn`; write to an entry outside the configured base DNs or not in
//! scope of the rules; write anything but the configured attribute; write an address of
//! an account this agent does not manage.

use crate::ids::{ExternalId, NormDn};
use crate::model::Persons;
use crate::plan::WriteBack;
use crate::source::SourceError;
use crate::source::ldap::LdapSource;
use crate::target::TargetState;
use secrecy::SecretString;
use std::collections::{BTreeMap, HashSet};

/// `[write_back]`, validated.
#[derive(Clone, Debug)]
pub struct WriteBackSettings {
    /// The AD attribute written (an attribute name, no options).
    pub attribute: String,
    /// The account that writes (needs write access to that attribute only).
    pub bind_dn: String,
    pub bind_password: SecretString,
    /// Only entries at or below one of these are written.
    pub base_dns: Vec<NormDn>,
}

impl WriteBackSettings {
    pub fn covers(&self, dn: &str) -> bool {
        let dn = NormDn::new(dn);
        self.base_dns.iter().any(|b| dn.is_within(b))
    }
}

/// What to write: managed accounts with an address whose person is in scope, under the
/// configured base DNs, and whose AD value differs (addresses compare
/// case-insensitively). `only`, when given, limits it to those anchors. Sorted by anchor.
pub fn planned(
    settings: &WriteBackSettings,
    persons: &Persons,
    current: &BTreeMap<ExternalId, Option<String>>,
    state: &TargetState,
    agent_id: &str,
    only: Option<&HashSet<ExternalId>>,
) -> Vec<WriteBack> {
    let mut out: Vec<WriteBack> = state
        .accounts
        .iter()
        .filter(|a| a.managed_by.as_deref() == Some(agent_id))
        .filter_map(|a| {
            let xid = a.external_id.as_ref()?;
            if only.is_some_and(|o| !o.contains(xid)) {
                return None;
            }
            let email = a.email.as_deref()?;
            let person = persons.get(xid)?;
            if !settings.covers(&person.dn) {
                return None;
            }
            let old = current.get(xid).cloned().flatten();
            let same = old
                .as_deref()
                .is_some_and(|o| o.trim().eq_ignore_ascii_case(email));
            (!same).then(|| WriteBack {
                external_id: xid.clone(),
                dn: person.dn.clone(),
                attribute: settings.attribute.clone(),
                old,
                new: email.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    // An anchor held by two accounts (never expected) would write twice: keep the first.
    let mut seen = HashSet::new();
    out.retain(|p| seen.insert(p.external_id.clone()));
    out
}

/// A connection for writing back: the source's server and TLS settings with the
/// write-back credential.
pub struct WriteBackConnection {
    source: LdapSource,
    ldap: ldap3::Ldap,
}

impl WriteBackConnection {
    /// Connect and bind as `[write_back] bind_dn`.
    pub async fn open(
        source: &LdapSource,
        settings: &WriteBackSettings,
    ) -> Result<Self, SourceError> {
        let source = source.with_credentials(&settings.bind_dn, settings.bind_password.clone());
        let ldap = source.connect().await?;
        Ok(Self { source, ldap })
    }

    /// Replace the attribute with the new address on one entry (checked against the
    /// settings once more, whatever the plan says).
    pub async fn write(
        &mut self,
        settings: &WriteBackSettings,
        w: &WriteBack,
    ) -> Result<(), SourceError> {
        if w.attribute != settings.attribute || !settings.covers(&w.dn) {
            return Err(SourceError::refused(
                &self.source.url,
                format!(
                    "write-back of {} to {}: only {} under the configured base DNs may be written",
                    w.attribute, w.dn, settings.attribute
                ),
            ));
        }
        self.source
            .replace_value(&mut self.ldap, &w.dn, &w.attribute, &w.new)
            .await
    }

    pub async fn close(mut self) {
        let _ = self.ldap.unbind().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OdsCode, RuleId, TargetId};
    use crate::model::Person;
    use crate::target::{Account, Status};

    fn xid(n: u8) -> ExternalId {
        ExternalId::parse(&format!("00000000-0000-0000-0000-0000000000{n:02}")).unwrap()
    }

    fn person(n: u8) -> Person {
        Person {
            external_id: xid(n),
            dn: format!("CN=P{n},OU=Staff,DC=x"),
            ods_code: OdsCode::parse("RXA").unwrap(),
            rule: RuleId::parse("staff").unwrap(),
            enabled: true,
            attributes: Default::default(),
            warnings: Vec::new(),
        }
    }

    fn account(n: u8, managed: &str, email: Option<&str>) -> Account {
        Account {
            target_id: TargetId::parse(&format!("t{n}")).unwrap(),
            external_id: Some(xid(n)),
            ods_code: OdsCode::parse("RXA").unwrap(),
            status: Status::Active,
            managed_by: Some(managed.into()),
            email: email.map(String::from),
            leaver_since: None,
            attributes: Default::default(),
            etag: None,
        }
    }

    fn settings(base: &str) -> WriteBackSettings {
        WriteBackSettings {
            attribute: "mail".into(),
            bind_dn: "CN=writer".into(),
            bind_password: SecretString::from("x"),
            base_dns: vec![NormDn::new(base)],
        }
    }

    #[test]
    fn only_managed_in_scope_accounts_with_a_different_value() {
        let persons: Persons = [1, 2, 3, 4].map(person).into_iter().collect();
        let current: BTreeMap<_, _> = [
            (xid(1), None),
            (xid(2), Some("A.Two@NHS.net".to_string())),
            (xid(3), Some("old@example.org".to_string())),
            (xid(4), None),
        ]
        .into();
        let state = TargetState {
            accounts: vec![
                account(1, "me", Some("a.one@nhs.net")),
                account(2, "me", Some("a.two@nhs.net")), // same, case aside
                account(3, "me", Some("a.three@nhs.net")),
                account(4, "someone-else", Some("a.four@nhs.net")),
                account(5, "me", Some("a.five@nhs.net")), // not in scope
            ],
            ..TargetState::default()
        };
        let got = planned(&settings("DC=x"), &persons, &current, &state, "me", None);
        let ids: Vec<_> = got.iter().map(|p| p.new.as_str()).collect();
        assert_eq!(ids, ["a.one@nhs.net", "a.three@nhs.net"]);
        assert_eq!(got[1].old.as_deref(), Some("old@example.org"));
        assert_eq!(got[0].dn, "CN=P1,OU=Staff,DC=x");
        assert_eq!(got[0].attribute, "mail");
        // Only the anchors asked for.
        let only: HashSet<_> = [xid(3)].into();
        let got = planned(
            &settings("DC=x"),
            &persons,
            &current,
            &state,
            "me",
            Some(&only),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].new, "a.three@nhs.net");
        // Entries outside the write-back base DNs are never written.
        assert!(
            planned(
                &settings("OU=Other,DC=x"),
                &persons,
                &current,
                &state,
                "me",
                None
            )
            .is_empty()
        );
    }
}
