//! Source stage: reads people from the organisation's directory (LDAP/AD or an LDIF
//! export) and hands them on one at a time as [`SourceEntry`] values.
//!
//! A read is complete or it is an error: any failure mid-stream (a lost connection, a
//! size or time limit, a malformed record) aborts with [`SourceError`] and the caller must
//! not produce a plan from what was seen so far (ARCHITECTURE.md, "Invariants").

pub mod delta;
pub mod ldap;
pub mod ldif;

use crate::ids::{ExternalId, NormDn, ObjectGuid};
use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use tokio_util::sync::CancellationToken;

/// AD `userAccountControl` bit meaning "account disabled" (ADS_UF_ACCOUNTDISABLE).
const UAC_ACCOUNTDISABLE: u32 = 0x2;

/// Why a read failed. Every variant means "no plan".
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("cannot open {path}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}, line {line}: {problem}")]
    Ldif {
        path: String,
        line: usize,
        problem: String,
    },
    #[error("LDAP {url}: {context}")]
    Ldap {
        url: String,
        context: String,
        #[source]
        source: Box<::ldap3::LdapError>,
    },
    /// The full read's own LDAP client: a network, TLS, timeout or protocol failure.
    #[error("LDAP {url}: {context}: {problem}")]
    LdapSession {
        url: String,
        context: String,
        problem: String,
    },
    #[error("LDAP {url}: {context}: server answered {code} ({text}){message}")]
    LdapResult {
        url: String,
        context: String,
        code: u32,
        text: &'static str,
        message: String,
    },
    /// A Kerberos (GSSAPI) bind or ticket that failed: `cause` says which way, `detail`
    /// is the GSSAPI/krb5 text.
    #[error("LDAP {url}: Kerberos as {principal} with keytab {keytab}: {cause} ({detail})")]
    Kerberos {
        url: String,
        principal: String,
        keytab: String,
        cause: &'static str,
        detail: String,
    },
    #[error("LDAP {url}: {reason}")]
    Refused { url: String, reason: String },
    #[error("TLS setup: {0}")]
    Tls(String),
    #[error("{0}")]
    Aborted(String),
    #[error("the read was stopped (shutdown requested)")]
    Cancelled,
}

impl SourceError {
    pub(crate) fn refused(url: &str, reason: impl Into<String>) -> Self {
        let reason = reason.into();
        SourceError::Refused {
            url: url.to_string(),
            reason,
        }
    }
}

/// How the anchor (external id) is read from an entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorKind {
    /// AD `objectGUID`: 16 binary bytes, printed in the AD string form.
    ObjectGuid,
    /// Any other single-valued, immutable text attribute (e.g. OpenLDAP `entryUUID`).
    Text(String),
}

impl AnchorKind {
    pub fn attribute(&self) -> &str {
        match self {
            AnchorKind::ObjectGuid => "objectGUID",
            AnchorKind::Text(a) => a,
        }
    }
}

/// One person entry as read from the source. Attribute names are lowercased (LDAP
/// attribute names are case-insensitive); values keep their case.
#[derive(Clone, Debug)]
pub struct SourceEntry {
    pub dn: String,
    pub norm_dn: NormDn,
    pub attrs: BTreeMap<String, Vec<String>>,
    /// The anchor, or why it could not be read.
    pub anchor: Result<ExternalId, String>,
    /// False when `userAccountControl` has the disabled bit. True when the entry has no
    /// `userAccountControl` (OpenLDAP), and also when it has one that cannot be read: such
    /// an entry carries the problem in `unreadable`, and mapping rejects it.
    pub enabled: bool,
    /// Attributes (lowercased names) whose values could not be read, with why, worded to
    /// follow the attribute's name: `is not valid UTF-8` (the values are not kept in
    /// `attrs`), or for `useraccountcontrol`, `"abc" is not a number`. Mapping turns these
    /// into rejections or warnings ([`crate::model::mapping`]); rules see the entry
    /// without the values.
    pub unreadable: BTreeMap<String, String>,
}

/// What an unreadable value of a text attribute says (after the attribute's name).
pub const NOT_UTF8: &str = "is not valid UTF-8";

/// The `userAccountControl` value, if it has one: a single 32-bit integer (AD writes it
/// signed, so negative values are its high bit). Anything else is an error, worded to
/// follow the attribute's name.
fn account_control(values: &[String]) -> Result<Option<u32>, String> {
    match values {
        [] => Ok(None),
        [one] => one
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|v| (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(v))
            // In range, so the low 32 bits are the value (two's complement if negative).
            .map(|v| Some(v as u32))
            .ok_or_else(|| format!("{one:?} is not a number")),
        many => Err(format!(
            "has {} values ({}); one is expected",
            many.len(),
            many.iter()
                .map(|v| format!("{v:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

impl SourceEntry {
    /// First value of an attribute (name matched case-insensitively).
    pub fn first(&self, attr: &str) -> Option<&str> {
        self.values(attr).first().map(String::as_str)
    }

    /// All values of an attribute (name matched case-insensitively).
    pub fn values(&self, attr: &str) -> &[String] {
        // Called for every mapped field and rule of every entry: lowercase short names
        // on the stack rather than allocating a key per lookup.
        let mut buf = [0u8; 64];
        let key = match buf.get_mut(..attr.len()) {
            Some(b) => {
                b.copy_from_slice(attr.as_bytes());
                b.make_ascii_lowercase();
                std::str::from_utf8(b).ok()
            }
            None => None,
        };
        let found = match key {
            Some(k) => self.attrs.get(k),
            None => self.attrs.get(&attr.to_ascii_lowercase()),
        };
        found.map(Vec::as_slice).unwrap_or(&[])
    }

    /// Build an entry from raw attribute values, as both sources deliver them: text
    /// values, and binary values that are not valid UTF-8 (ldap3 sorts each value into
    /// `attrs` or `bin_attrs` by whether it decodes, so an objectGUID can be in either).
    pub fn build(
        dn: String,
        text: impl IntoIterator<Item = (String, Vec<String>)>,
        binary: impl IntoIterator<Item = (String, Vec<Vec<u8>>)>,
        anchor: &AnchorKind,
    ) -> SourceEntry {
        let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
        // The names are owned: lowercase them in place rather than copying each.
        for (mut k, v) in text {
            k.make_ascii_lowercase();
            match attrs.entry(k) {
                Entry::Vacant(e) => {
                    e.insert(v);
                }
                Entry::Occupied(mut e) => e.get_mut().extend(v),
            }
        }
        let mut bin: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        for (mut k, v) in binary {
            k.make_ascii_lowercase();
            bin.entry(k).or_default().extend(v);
        }
        let anchor_attr = anchor.attribute().to_ascii_lowercase();
        let anchor = match anchor {
            AnchorKind::ObjectGuid => {
                let raw: Vec<&[u8]> = bin
                    .get(&anchor_attr)
                    .into_iter()
                    .flatten()
                    .map(Vec::as_slice)
                    .chain(
                        attrs
                            .get(&anchor_attr)
                            .into_iter()
                            .flatten()
                            .map(|s| s.as_bytes()),
                    )
                    .collect();
                match raw.as_slice() {
                    [one] => ObjectGuid::from_bytes(one)
                        .map(ExternalId::from)
                        .map_err(|e| e.to_string()),
                    [] => Err("objectGUID is missing".to_string()),
                    _ => Err("objectGUID has more than one value".to_string()),
                }
            }
            AnchorKind::Text(_) => match attrs.get(&anchor_attr).map(Vec::as_slice) {
                Some([one]) => ExternalId::parse(one).map_err(|e| e.to_string()),
                Some([_, _, ..]) => Err(format!("{} has more than one value", anchor.attribute())),
                _ => Err(format!("{} is missing", anchor.attribute())),
            },
        };
        // The anchor is not kept as an attribute: it is carried typed in `anchor`.
        attrs.remove(&anchor_attr);
        // Any other binary value is a text value that is not UTF-8: mapping must say so,
        // not see an empty field.
        let mut unreadable: BTreeMap<String, String> = bin
            .into_keys()
            .filter(|k| *k != anchor_attr)
            .map(|k| (k, NOT_UTF8.to_string()))
            .collect();
        let uac = account_control(
            attrs
                .get("useraccountcontrol")
                .map(Vec::as_slice)
                .unwrap_or(&[]),
        );
        let enabled = match uac {
            Ok(uac) => uac.is_none_or(|uac| uac & UAC_ACCOUNTDISABLE == 0),
            Err(why) => {
                unreadable.insert("useraccountcontrol".to_string(), why);
                true
            }
        };
        SourceEntry {
            norm_dn: NormDn::new(&dn),
            dn,
            attrs,
            anchor,
            enabled,
            unreadable,
        }
    }
}

/// Group membership as the filter stage needs it.
///
/// Direct membership comes from the entry's own `memberOf` or from a group's `member`
/// list; nested membership from the server's in-chain matching rule (AD) or from expanding
/// group `member` lists client-side (LDIF, generic LDAP).
#[derive(Clone, Debug, Default)]
pub struct GroupIndex {
    /// Group → its direct members (only filled where groups were read client-side).
    direct: BTreeMap<NormDn, BTreeSet<NormDn>>,
    /// Group → every member, transitively (for groups a filter asks about nested).
    nested: BTreeMap<NormDn, BTreeSet<NormDn>>,
}

impl GroupIndex {
    pub fn add_direct(&mut self, group: NormDn, members: BTreeSet<NormDn>) {
        self.direct.entry(group).or_default().extend(members);
    }

    pub fn set_nested(&mut self, group: NormDn, members: BTreeSet<NormDn>) {
        self.nested.insert(group, members);
    }

    /// Expand `group` through the direct member lists (cycle-safe).
    pub fn expand(&mut self, group: &NormDn) {
        let mut seen: BTreeSet<NormDn> = BTreeSet::new();
        let mut todo = vec![group.clone()];
        let mut all = BTreeSet::new();
        while let Some(g) = todo.pop() {
            if !seen.insert(g.clone()) {
                continue;
            }
            for m in self.direct.get(&g).into_iter().flatten() {
                all.insert(m.clone());
                if self.direct.contains_key(m) {
                    todo.push(m.clone());
                }
            }
        }
        self.nested.insert(group.clone(), all);
    }

    /// Is the entry a member of `group`, directly or (if `nested`) through other groups?
    pub fn is_member(&self, entry: &SourceEntry, group: &NormDn, nested: bool) -> bool {
        let direct = entry
            .values("memberOf")
            .iter()
            .any(|g| NormDn::new(g) == *group)
            || self
                .direct
                .get(group)
                .is_some_and(|m| m.contains(&entry.norm_dn));
        direct
            || (nested
                && self
                    .nested
                    .get(group)
                    .is_some_and(|m| m.contains(&entry.norm_dn)))
    }
}

/// What the later stages need the source to read.
#[derive(Clone, Debug, Default)]
pub struct ReadRequest {
    /// Attributes to fetch (besides the anchor and the ones every read needs).
    pub attributes: BTreeSet<String>,
    /// Groups whose nested membership a filter rule asks about.
    pub nested_groups: BTreeSet<String>,
    /// True if any rule looks at group membership at all.
    pub uses_groups: bool,
}

/// Receives the read, in order: the group index once, then every person entry.
pub trait EntrySink {
    fn groups(&mut self, index: GroupIndex);
    /// Returning an error aborts the read.
    fn entry(&mut self, entry: SourceEntry) -> Result<(), SourceError>;
}

/// What a completed read reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadSummary {
    pub read: usize,
}

/// Read access to the people: a directory or an export of one.
///
/// `read` is complete or an error, and stops with [`SourceError::Cancelled`] soon after
/// `cancel` fires (between entries, and while waiting on the network).
pub trait Source {
    /// `ldap`, `ldif`, … (plan JSON `source.kind`).
    fn kind(&self) -> &'static str;
    fn read(
        &self,
        req: &ReadRequest,
        sink: &mut dyn EntrySink,
        cancel: &CancellationToken,
    ) -> impl Future<Output = Result<ReadSummary, SourceError>>;

    /// Where the source stands now, taken *before* a full read so that changes made
    /// during it are picked up by the next delta. `None`: this source has no deltas
    /// (every cycle is full).
    fn watermark(
        &self,
        _cancel: &CancellationToken,
    ) -> impl Future<Output = Result<Option<delta::Watermark>, SourceError>> {
        async { Ok(None) }
    }

    /// The entries changed since `since` (to `sink`, like [`Source::read`]) and the
    /// objects deleted since, or [`delta::Delta::Full`] when `since` cannot be used.
    /// Complete or an error, like a full read.
    fn read_delta(
        &self,
        _req: &ReadRequest,
        _since: &delta::Watermark,
        _sink: &mut dyn EntrySink,
        _cancel: &CancellationToken,
    ) -> impl Future<Output = Result<delta::Delta, SourceError>> {
        async {
            Ok(delta::Delta::Full {
                why: format!("a {} source has no delta reads", self.kind()),
            })
        }
    }
}

/// The configured source.
pub enum AnySource {
    Ldap(ldap::LdapSource),
    Ldif(ldif::LdifSource),
}

impl Source for AnySource {
    fn kind(&self) -> &'static str {
        match self {
            AnySource::Ldap(_) => "ldap",
            AnySource::Ldif(_) => "ldif",
        }
    }

    async fn read(
        &self,
        req: &ReadRequest,
        sink: &mut dyn EntrySink,
        cancel: &CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        match self {
            AnySource::Ldap(s) => s.read(req, sink, cancel).await,
            AnySource::Ldif(s) => s.read(req, sink, cancel),
        }
    }

    async fn watermark(
        &self,
        cancel: &CancellationToken,
    ) -> Result<Option<delta::Watermark>, SourceError> {
        match self {
            AnySource::Ldap(s) => s.watermark(cancel).await,
            // An export is one moment: every cycle reads all of it.
            AnySource::Ldif(_) => Ok(None),
        }
    }

    async fn read_delta(
        &self,
        req: &ReadRequest,
        since: &delta::Watermark,
        sink: &mut dyn EntrySink,
        cancel: &CancellationToken,
    ) -> Result<delta::Delta, SourceError> {
        match self {
            AnySource::Ldap(s) => s.read_delta(req, since, sink, cancel).await,
            AnySource::Ldif(_) => Ok(delta::Delta::Full {
                why: "an LDIF export has no delta reads".to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(dn: &str, member_of: &[&str]) -> SourceEntry {
        SourceEntry::build(
            dn.into(),
            [(
                "memberOf".to_string(),
                member_of.iter().map(|s| s.to_string()).collect(),
            )],
            [("objectGUID".to_string(), vec![vec![7u8; 16]])],
            &AnchorKind::ObjectGuid,
        )
    }

    #[test]
    fn anchor_read_from_binary_or_text_values() {
        let e = entry("CN=a,DC=x", &[]);
        assert_eq!(
            e.anchor.unwrap().as_str(),
            "07070707-0707-0707-0707-070707070707"
        );
        // A GUID whose bytes happen to be valid UTF-8 arrives as text.
        let e = SourceEntry::build(
            "CN=a,DC=x".into(),
            [(
                "OBJECTGUID".to_string(),
                vec!["ABCDEFGHIJKLMNOP".to_string()],
            )],
            Vec::<(String, Vec<Vec<u8>>)>::new(),
            &AnchorKind::ObjectGuid,
        );
        assert_eq!(
            e.anchor.unwrap().as_str(),
            "44434241-4645-4847-494a-4b4c4d4e4f50"
        );
        let e = SourceEntry::build(
            "CN=a,DC=x".into(),
            Vec::<(String, Vec<String>)>::new(),
            Vec::<(String, Vec<Vec<u8>>)>::new(),
            &AnchorKind::ObjectGuid,
        );
        assert_eq!(e.anchor.unwrap_err(), "objectGUID is missing");
    }

    #[test]
    fn disabled_bit() {
        let mk = |uac: &str| {
            SourceEntry::build(
                "CN=a".into(),
                [("userAccountControl".to_string(), vec![uac.to_string()])],
                Vec::<(String, Vec<Vec<u8>>)>::new(),
                &AnchorKind::Text("entryUUID".into()),
            )
            .enabled
        };
        assert!(mk("512"));
        assert!(!mk("514"));
        assert!(!mk("546"));
        assert!(!mk(" 66050 "));
        // AD's signed form of a value with the high bit set.
        assert!(!mk("-2147483646"));
    }

    #[test]
    fn an_unreadable_account_control_is_carried_not_read_as_enabled() {
        let mk = |uac: &[&str]| {
            let e = SourceEntry::build(
                "CN=a".into(),
                [(
                    "userAccountControl".to_string(),
                    uac.iter().map(|s| s.to_string()).collect(),
                )],
                Vec::<(String, Vec<Vec<u8>>)>::new(),
                &AnchorKind::Text("entryUUID".into()),
            );
            e.unreadable.get("useraccountcontrol").cloned()
        };
        for (uac, want) in [
            (&["abc"][..], Some(r#""abc" is not a number"#)),
            (&[""], Some(r#""" is not a number"#)),
            (&["0x2"], Some(r#""0x2" is not a number"#)),
            (&["512.0"], Some(r#""512.0" is not a number"#)),
            (&["99999999999"], Some(r#""99999999999" is not a number"#)),
            (
                &["512", "514"],
                Some(r#"has 2 values ("512", "514"); one is expected"#),
            ),
            (&["512"], None),
            (&[], None),
        ] {
            assert_eq!(mk(uac).as_deref(), want, "{uac:?}");
        }
        // Not UTF-8 at all: the binary value is named as such.
        let e = SourceEntry::build(
            "CN=a".into(),
            Vec::<(String, Vec<String>)>::new(),
            [("userAccountControl".to_string(), vec![vec![0xff, 0x35]])],
            &AnchorKind::Text("entryUUID".into()),
        );
        assert_eq!(
            e.unreadable.get("useraccountcontrol").map(String::as_str),
            Some(NOT_UTF8)
        );
    }

    #[test]
    fn values_that_are_not_utf8_are_named_not_dropped_silently() {
        // As ldap3 delivers them (the whole attribute in `bin_attrs`) and as the LDIF
        // reader does (each value sorted by whether it decodes).
        let e = SourceEntry::build(
            "CN=a".into(),
            [("sn".to_string(), vec!["Evans".to_string()])],
            [
                ("givenName".to_string(), vec![b"Si\xe2n".to_vec()]),
                ("objectGUID".to_string(), vec![vec![7u8; 16]]),
            ],
            &AnchorKind::ObjectGuid,
        );
        assert!(e.anchor.is_ok());
        assert_eq!(
            e.unreadable.keys().map(String::as_str).collect::<Vec<_>>(),
            ["givenname"]
        );
        assert_eq!(e.first("givenName"), None);
        assert_eq!(e.first("sn"), Some("Evans"));
    }

    struct Nothing;
    impl EntrySink for Nothing {
        fn groups(&mut self, _: GroupIndex) {}
        fn entry(&mut self, _: SourceEntry) -> Result<(), SourceError> {
            panic!("a source without deltas read an entry")
        }
    }

    #[tokio::test]
    async fn an_ldif_export_has_no_deltas_every_cycle_is_full() {
        let src = AnySource::Ldif(ldif::LdifSource {
            path: "/nonexistent/export.ldif".into(),
            anchor: AnchorKind::ObjectGuid,
            person_classes: vec!["user".into()],
            exclude_classes: vec![],
            limits: ldif::LdifLimits::default(),
        });
        let cancel = CancellationToken::new();
        assert_eq!(src.watermark(&cancel).await.unwrap(), None);
        let since = delta::Watermark {
            kind: "ad_usn".into(),
            server: "CN=NTDS Settings,CN=DC1".into(),
            invocation_id: None,
            position: "1".into(),
        };
        let got = src
            .read_delta(&ReadRequest::default(), &since, &mut Nothing, &cancel)
            .await
            .unwrap();
        assert!(matches!(got, delta::Delta::Full { why } if why.contains("LDIF")));
    }

    #[test]
    fn nested_membership_expands_cycles_safely() {
        let outer = NormDn::new("CN=Outer,DC=x");
        let inner = NormDn::new("CN=Inner,DC=x");
        let mut idx = GroupIndex::default();
        idx.add_direct(outer.clone(), [inner.clone()].into());
        idx.add_direct(
            inner.clone(),
            [NormDn::new("CN=u1,DC=x"), outer.clone()].into(),
        );
        idx.expand(&outer);
        let u1 = entry("CN=U1, DC=x", &[]);
        assert!(idx.is_member(&u1, &outer, true));
        assert!(!idx.is_member(&u1, &outer, false));
        assert!(idx.is_member(&u1, &inner, false));
        let u2 = entry("CN=u2,DC=x", &["CN=outer,DC=X"]);
        assert!(idx.is_member(&u2, &outer, false));
    }
}
