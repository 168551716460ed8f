//! Write-back (opt-in, `[write_back] attribute = "mail"`): after an apply, the NHSmail
//! address the directory allocated is written to a configured attribute of the person's
//! AD entry, so that AD (and whatever reads it: GAL, HR feeds) knows the address.
//!
//! It works from state, not from what this run happened to create: every managed
//! account in scope whose address differs from the AD value is written, so a run that
//! was interrupted, or an address the directory changed, is caught up next time.
//!
//! Never does: write to an entry that is not in scope of the rules, write anything but
//! the configured attribute, or write an address of an account this agent does not
//! manage.

use crate::ids::ExternalId;
use crate::model::Person;
use crate::source::SourceError;
use crate::source::ldap::LdapSource;
use crate::target::TargetState;
use std::collections::{BTreeMap, HashSet};

/// One attribute value to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pending {
    pub external_id: ExternalId,
    pub dn: String,
    pub old: Option<String>,
    pub email: String,
}

/// What has to be written: managed accounts with an address whose person is in scope
/// and whose AD value differs (addresses compare case-insensitively). Sorted by anchor.
pub fn pending(
    persons: &BTreeMap<ExternalId, Person>,
    current: &BTreeMap<ExternalId, Option<String>>,
    state: &TargetState,
    agent_id: &str,
) -> Vec<Pending> {
    let mut out: Vec<Pending> = state
        .accounts
        .iter()
        .filter(|a| a.managed_by.as_deref() == Some(agent_id))
        .filter_map(|a| {
            let xid = a.external_id.as_ref()?;
            let email = a.email.as_deref()?;
            let person = persons.get(xid)?;
            let old = current.get(xid).cloned().flatten();
            let same = old
                .as_deref()
                .is_some_and(|o| o.trim().eq_ignore_ascii_case(email));
            (!same).then(|| Pending {
                external_id: xid.clone(),
                dn: person.dn.clone(),
                old,
                email: email.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.external_id.cmp(&b.external_id));
    // An anchor held by two accounts (never expected) would write twice: keep the first.
    let mut seen = HashSet::new();
    out.retain(|p| seen.insert(p.external_id.clone()));
    out
}

/// The result of writing: per entry, `Ok` or the error.
pub struct Written {
    pub results: Vec<(Pending, Result<(), SourceError>)>,
}

impl Written {
    pub fn ok(&self) -> usize {
        self.results.iter().filter(|(_, r)| r.is_ok()).count()
    }
}

/// Replace `attribute` with the address on each entry, over one bound connection.
/// A failure on one entry (access denied, entry gone) is reported and the rest go on;
/// failing to connect or bind is an error for all.
pub async fn write(
    source: &LdapSource,
    attribute: &str,
    items: Vec<Pending>,
) -> Result<Written, SourceError> {
    if items.is_empty() {
        return Ok(Written { results: vec![] });
    }
    let mut ldap = source.connect().await?;
    let mut results = Vec::with_capacity(items.len());
    for p in items {
        let r = source
            .replace_value(&mut ldap, &p.dn, attribute, &p.email)
            .await;
        results.push((p, r));
    }
    let _ = ldap.unbind().await;
    Ok(Written { results })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{OdsCode, RuleId, TargetId};
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
            attributes: BTreeMap::new(),
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
            attributes: BTreeMap::new(),
            etag: None,
        }
    }

    #[test]
    fn only_managed_in_scope_accounts_with_a_different_value() {
        let persons: BTreeMap<_, _> = [1, 2, 3, 4].map(|n| (xid(n), person(n))).into();
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
        let got = pending(&persons, &current, &state, "me");
        let ids: Vec<_> = got.iter().map(|p| p.email.as_str()).collect();
        assert_eq!(ids, ["a.one@nhs.net", "a.three@nhs.net"]);
        assert_eq!(got[1].old.as_deref(), Some("old@example.org"));
        assert_eq!(got[0].dn, "CN=P1,OU=Staff,DC=x");
    }
}
