//! LDAP/AD source (ldap3, async): verified TLS (LDAPS or StartTLS), simple or Kerberos
//! (GSSAPI, `kerberos.rs`) bind, paged
//! subtree searches, nested groups through AD's in-chain matching rule.
//!
//! Never does: a simple bind over cleartext unless the configuration explicitly allows
//! it; TLS without certificate verification; a partial read presented as complete.

use super::{
    AnchorKind, EntrySink, GroupIndex, ReadRequest, ReadSummary, SourceEntry, SourceError,
};
use crate::ids::{ExternalId, NormDn};
use ldap3::adapters::{EntriesOnly, PagedResults};
use ldap3::{Ldap, LdapConnAsync, LdapConnSettings, LdapResult, Scope, SearchEntry};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

mod delta;
pub mod kerberos;
mod wire;

pub use kerberos::KerberosAuth;

/// AD's LDAP_MATCHING_RULE_IN_CHAIN: matches through nested group membership.
pub const IN_CHAIN_RULE: &str = "1.2.840.113556.1.4.1941";

/// How nested group membership is resolved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NestedGroups {
    /// Ask the server with the in-chain matching rule (Active Directory, Samba).
    InChain,
    /// Read the groups and expand their `member` lists here (generic LDAP).
    Expand,
}

/// Connection and search settings, validated by the config stage.
#[derive(Clone, Debug)]
pub struct LdapSource {
    pub url: String,
    pub starttls: bool,
    pub ca_file: Option<PathBuf>,
    pub auth: LdapAuth,
    pub base_dns: Vec<String>,
    pub filter: String,
    pub group_filter: String,
    pub page_size: i32,
    pub connect_timeout: Duration,
    pub operation_timeout: Duration,
    pub allow_cleartext_bind: bool,
    pub anchor: AnchorKind,
    pub nested_groups: NestedGroups,
}

/// How the source binds.
#[derive(Clone, Debug)]
pub enum LdapAuth {
    /// A simple bind with a DN and password.
    Simple {
        bind_dn: String,
        bind_password: SecretString,
    },
    /// SASL GSSAPI with a keytab (TLS required).
    Kerberos(KerberosAuth),
}

/// What `tansync check` reports about the server.
#[derive(Debug, Default)]
pub struct ServerInfo {
    pub vendor: Option<String>,
    pub naming_contexts: Vec<String>,
    pub paged_results: bool,
    pub in_chain: bool,
    pub tls: &'static str,
    /// The server's clock (`currentTime`, AD and Samba), as published.
    pub current_time: Option<String>,
}

/// Text for the LDAP result codes an operator is likely to meet (RFC 4511 §4.1.9).
fn rc_text(rc: u32) -> &'static str {
    match rc {
        0 => "success",
        1 => "operationsError",
        2 => "protocolError",
        3 => "timeLimitExceeded",
        4 => "sizeLimitExceeded",
        7 => "authMethodNotSupported",
        8 => "strongerAuthRequired",
        10 => "referral",
        11 => "adminLimitExceeded",
        12 => "unavailableCriticalExtension",
        13 => "confidentialityRequired",
        32 => "noSuchObject",
        34 => "invalidDNSyntax",
        48 => "inappropriateAuthentication",
        49 => "invalidCredentials",
        50 => "insufficientAccessRights",
        51 => "busy",
        52 => "unavailable",
        53 => "unwillingToPerform",
        80 => "other",
        _ => "unknown result code",
    }
}

/// The text after a result code: the server's diagnostic message, if it sent one.
fn message_suffix(text: &str) -> String {
    if text.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", text.trim())
    }
}

/// Success, or the error for result `rc` of `context`.
fn check_rc(url: &str, context: &str, rc: u32, text: &str) -> Result<(), SourceError> {
    if rc == 0 {
        return Ok(());
    }
    Err(SourceError::LdapResult {
        url: url.to_string(),
        context: context.to_string(),
        code: rc,
        text: rc_text(rc),
        message: message_suffix(text),
    })
}

/// One entry of a search as both clients deliver it: text attributes, and attributes
/// with a value that is not UTF-8 (binary as a whole).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct RawEntry {
    pub dn: String,
    pub text: Vec<(String, Vec<String>)>,
    pub binary: Vec<(String, Vec<Vec<u8>>)>,
}

impl From<SearchEntry> for RawEntry {
    fn from(e: SearchEntry) -> Self {
        RawEntry {
            dn: e.dn,
            text: e.attrs.into_iter().collect(),
            binary: e.bin_attrs.into_iter().collect(),
        }
    }
}

/// The connection a read searches over: ldap3's (Kerberos binds, delta reads) or the
/// full read's own client ([`wire`], simple binds).
enum Session<'a> {
    Ldap3(&'a mut Ldap),
    Wire(&'a mut wire::Conn),
}

impl LdapSource {
    fn is_cleartext(&self) -> bool {
        self.url.to_ascii_lowercase().starts_with("ldap://") && !self.starttls
    }

    fn tls_mode(&self) -> &'static str {
        if self.url.to_ascii_lowercase().starts_with("ldaps://") {
            "ldaps"
        } else if self.starttls {
            "starttls"
        } else {
            "none"
        }
    }

    fn ldap_err(&self, context: &str) -> impl FnOnce(ldap3::LdapError) -> SourceError + '_ {
        let context = context.to_string();
        move |source| SourceError::Ldap {
            url: self.url.clone(),
            context,
            source: Box::new(source),
        }
    }

    fn check_result(&self, context: &str, res: LdapResult) -> Result<(), SourceError> {
        check_rc(&self.url, context, res.rc, &res.text)
    }

    fn tls_config(&self) -> Result<Option<Arc<rustls::ClientConfig>>, SourceError> {
        match &self.ca_file {
            // Without a CA file ldap3 verifies against the system's trust store itself.
            None => Ok(None),
            Some(ca) => crate::tls::client_config(Some(ca))
                .map(|c| Some(Arc::new(c)))
                .map_err(SourceError::Tls),
        }
    }

    /// The same server and settings, bound as another account (write-back's own
    /// credential).
    pub fn with_credentials(&self, bind_dn: &str, bind_password: SecretString) -> LdapSource {
        LdapSource {
            auth: LdapAuth::Simple {
                bind_dn: bind_dn.to_string(),
                bind_password,
            },
            ..self.clone()
        }
    }

    /// Who the source binds as, for messages: the bind DN or the Kerberos principal.
    pub fn identity(&self) -> String {
        match &self.auth {
            LdapAuth::Simple { bind_dn, .. } => bind_dn.clone(),
            LdapAuth::Kerberos(k) => format!("{} (Kerberos, {})", k.principal, k.service()),
        }
    }

    /// With Kerberos: acquire a ticket for the DC's `ldap/` service from the KDC, without
    /// connecting to LDAP (`tansync check`'s own line). `None` for a simple bind.
    pub fn kerberos_ticket(&self) -> Option<Result<&KerberosAuth, SourceError>> {
        match &self.auth {
            LdapAuth::Simple { .. } => None,
            LdapAuth::Kerberos(k) => Some(kerberos::ticket(&self.url, k).map(|()| k)),
        }
    }

    /// Refuses a cleartext simple bind unless allowed, and a Kerberos bind without TLS
    /// always.
    fn refuse_cleartext(&self) -> Result<(), SourceError> {
        if self.is_cleartext() && matches!(self.auth, LdapAuth::Kerberos(_)) {
            return Err(SourceError::refused(
                &self.url,
                "refusing a Kerberos bind over cleartext LDAP: use ldaps:// or starttls = true",
            ));
        }
        if self.is_cleartext() && !self.allow_cleartext_bind {
            return Err(SourceError::refused(
                &self.url,
                "refusing a simple bind over cleartext LDAP: use ldaps:// or starttls = true \
                 (or set allow_cleartext_bind = true, which sends the password in clear)",
            ));
        }
        Ok(())
    }

    /// Connect and bind with ldap3 (see [`LdapSource::refuse_cleartext`]).
    pub async fn connect(&self) -> Result<Ldap, SourceError> {
        self.refuse_cleartext()?;
        let mut settings = LdapConnSettings::new()
            .set_conn_timeout(self.connect_timeout)
            .set_starttls(self.starttls);
        if let Some(cfg) = self.tls_config()? {
            settings = settings.set_config(cfg);
        }
        let (conn, mut ldap) = LdapConnAsync::with_settings(settings, &self.url)
            .await
            .map_err(self.ldap_err("connect"))?;
        ldap3::drive!(conn);
        let res = match &self.auth {
            LdapAuth::Simple {
                bind_dn,
                bind_password,
            } => ldap
                .with_timeout(self.operation_timeout)
                .simple_bind(bind_dn, bind_password.expose_secret())
                .await
                .map_err(self.ldap_err("bind"))?,
            LdapAuth::Kerberos(k) => {
                kerberos::bind(&self.url, ldap.with_timeout(self.operation_timeout), k).await?
            }
        };
        self.check_result(&format!("bind as {}", self.identity()), res)?;
        Ok(ldap)
    }

    /// [`LdapSource::connect`], given up when `cancel` fires.
    async fn connect_or_cancel(&self, cancel: &CancellationToken) -> Result<Ldap, SourceError> {
        tokio::select! {
            l = self.connect() => l,
            () = cancel.cancelled() => Err(SourceError::Cancelled),
        }
    }

    /// Replace one attribute of one entry (write-back; never used while planning).
    pub async fn replace_value(
        &self,
        ldap: &mut Ldap,
        dn: &str,
        attribute: &str,
        value: &str,
    ) -> Result<(), SourceError> {
        use std::collections::HashSet;
        let context = format!("write {attribute} of {dn}");
        let res = ldap
            .with_timeout(self.operation_timeout)
            .modify(
                dn,
                vec![ldap3::Mod::Replace(attribute, HashSet::from([value]))],
            )
            .await
            .map_err(self.ldap_err(&context))?;
        self.check_result(&context, res)
    }

    /// Run one paged subtree search, calling `each` for every entry. Complete or error.
    async fn paged_search(
        &self,
        ldap: &mut Ldap,
        base: &str,
        filter: &str,
        attrs: &[String],
        cancel: &CancellationToken,
        mut each: impl FnMut(SearchEntry) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let context = format!("search under {base}");
        let adapters: Vec<Box<dyn ldap3::adapters::Adapter<_, _>>> = vec![
            Box::new(EntriesOnly::new()),
            Box::new(PagedResults::new(self.page_size)),
        ];
        let started = ldap
            .with_timeout(self.operation_timeout)
            .streaming_search_with(adapters, base, Scope::Subtree, filter, attrs.to_vec());
        let mut stream = tokio::select! {
            s = started => s.map_err(self.ldap_err(&context))?,
            () = cancel.cancelled() => return Err(SourceError::Cancelled),
        };
        loop {
            let next = tokio::select! {
                n = stream.next() => n,
                // Dropping the stream and then the connection ends the search.
                () = cancel.cancelled() => return Err(SourceError::Cancelled),
            };
            match next {
                Ok(Some(re)) => {
                    // ldap3 panics on an entry it cannot decode; a malformed response
                    // must end the read as an error like any other.
                    let entry = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        SearchEntry::construct(re)
                    }))
                    .map_err(|_| {
                        SourceError::Aborted(format!(
                            "LDAP {}: {context}: the server sent an entry that cannot be decoded",
                            self.url
                        ))
                    })?;
                    each(entry)?
                }
                Ok(None) => break,
                Err(e) => {
                    let _ = stream.finish().await;
                    return Err(self.ldap_err(&context)(e));
                }
            }
        }
        let res = stream.finish().await;
        self.check_result(&context, res)
    }

    /// One paged subtree search over `session`, every entry to `each`. Complete or error.
    async fn search(
        &self,
        session: &mut Session<'_>,
        base: &str,
        filter: &str,
        attrs: &[String],
        cancel: &CancellationToken,
        mut each: impl FnMut(RawEntry) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        match session {
            Session::Ldap3(ldap) => {
                self.paged_search(ldap, base, filter, attrs, cancel, |e| each(e.into()))
                    .await
            }
            Session::Wire(conn) => {
                conn.paged_search(base, filter, attrs, self.page_size, cancel, &mut each)
                    .await
            }
        }
    }

    async fn resolve_groups(
        &self,
        session: &mut Session<'_>,
        req: &ReadRequest,
        cancel: &CancellationToken,
    ) -> Result<GroupIndex, SourceError> {
        let mut idx = GroupIndex::default();
        if req.nested_groups.is_empty() {
            return Ok(idx);
        }
        match self.nested_groups {
            NestedGroups::InChain => {
                for g in &req.nested_groups {
                    let filter = format!(
                        "(&{}(memberOf:{IN_CHAIN_RULE}:={}))",
                        self.filter,
                        ldap3::ldap_escape(g.as_str())
                    );
                    let mut members = BTreeSet::new();
                    for base in &self.base_dns {
                        self.search(session, base, &filter, &["1.1".to_string()], cancel, |e| {
                            members.insert(NormDn::new(&e.dn));
                            Ok(())
                        })
                        .await?;
                    }
                    idx.set_nested(NormDn::new(g), members);
                }
            }
            NestedGroups::Expand => {
                let attrs = vec!["member".to_string(), "uniqueMember".to_string()];
                let mut groups = Vec::new();
                for base in &self.base_dns {
                    self.search(session, base, &self.group_filter, &attrs, cancel, |e| {
                        let members = e
                            .text
                            .iter()
                            .filter(|(k, _)| {
                                k.eq_ignore_ascii_case("member")
                                    || k.eq_ignore_ascii_case("uniqueMember")
                            })
                            .flat_map(|(_, v)| v.iter().map(|m| NormDn::new(m)))
                            .collect();
                        groups.push((NormDn::new(&e.dn), members));
                        Ok(())
                    })
                    .await?;
                }
                for (g, m) in groups {
                    idx.add_direct(g, m);
                }
                for g in &req.nested_groups {
                    idx.expand(&NormDn::new(g));
                }
            }
        }
        Ok(idx)
    }

    /// Attributes every read fetches, whatever the mapping asks for.
    fn attributes(&self, req: &ReadRequest) -> Vec<String> {
        let mut attrs: BTreeSet<String> = req.attributes.clone();
        for a in [
            self.anchor.attribute(),
            "userAccountControl",
            "memberOf",
            "uSNChanged",
            "whenChanged",
            "objectClass",
        ] {
            attrs.insert(a.to_string());
        }
        attrs.into_iter().collect()
    }

    /// A full read. With a simple bind it runs on the source's own client ([`wire`]);
    /// a Kerberos bind needs ldap3's SASL layer.
    pub async fn read(
        &self,
        req: &ReadRequest,
        sink: &mut dyn EntrySink,
        cancel: &CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        match &self.auth {
            LdapAuth::Simple {
                bind_dn,
                bind_password,
            } => {
                self.refuse_cleartext()?;
                let mut conn = wire::Conn::open(self, bind_dn, bind_password, cancel).await?;
                let summary = self
                    .read_all(&mut Session::Wire(&mut conn), req, sink, cancel)
                    .await?;
                conn.unbind().await;
                Ok(summary)
            }
            LdapAuth::Kerberos(_) => self.read_with_ldap3(req, sink, cancel).await,
        }
    }

    /// A full read through ldap3, whatever the bind: the Kerberos path, and the oracle
    /// the differential tests compare the source's own client with.
    #[doc(hidden)]
    pub async fn read_with_ldap3(
        &self,
        req: &ReadRequest,
        sink: &mut dyn EntrySink,
        cancel: &CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        let mut ldap = self.connect_or_cancel(cancel).await?;
        let summary = self
            .read_all(&mut Session::Ldap3(&mut ldap), req, sink, cancel)
            .await?;
        let _ = ldap.unbind().await;
        Ok(summary)
    }

    /// Everything the configured filter matches, over either client.
    async fn read_all(
        &self,
        session: &mut Session<'_>,
        req: &ReadRequest,
        sink: &mut dyn EntrySink,
        cancel: &CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        self.read_entries(session, req, &self.filter, sink, None, cancel)
            .await
    }

    /// The group index, then every entry under the base DNs matching `filter`, to the
    /// sink: a full read (`filter` is the configured one) or a delta's changed entries.
    /// `anchors` collects the anchors read, when the caller needs them.
    async fn read_entries(
        &self,
        session: &mut Session<'_>,
        req: &ReadRequest,
        filter: &str,
        sink: &mut dyn EntrySink,
        mut anchors: Option<&mut BTreeSet<ExternalId>>,
        cancel: &CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        let groups = self.resolve_groups(session, req, cancel).await?;
        sink.groups(groups);
        let attrs = self.attributes(req);
        let mut summary = ReadSummary::default();
        let mut seen_dns: BTreeSet<NormDn> = BTreeSet::new();
        for base in &self.base_dns {
            self.search(session, base, filter, &attrs, cancel, |e| {
                let entry = SourceEntry::build(e.dn, e.text, e.binary, &self.anchor);
                // Overlapping base DNs must not read a person twice.
                if self.base_dns.len() > 1 && !seen_dns.insert(entry.norm_dn.clone()) {
                    return Ok(());
                }
                if let (Some(set), Ok(a)) = (anchors.as_deref_mut(), &entry.anchor) {
                    set.insert(a.clone());
                }
                summary.read += 1;
                sink.entry(entry)
            })
            .await?;
        }
        Ok(summary)
    }

    /// Connect, bind and describe the server (for `tansync check`).
    pub async fn probe(&self) -> Result<ServerInfo, SourceError> {
        let mut ldap = self.connect().await?;
        let (entries, res) = ldap
            .with_timeout(self.operation_timeout)
            .search(
                "",
                Scope::Base,
                "(objectClass=*)",
                vec![
                    "namingContexts",
                    "supportedControl",
                    "vendorName",
                    "vendorVersion",
                    "supportedCapabilities",
                    "dsServiceName",
                    "currentTime",
                ],
            )
            .await
            .map_err(self.ldap_err("read the root DSE"))?
            .non_error()
            .map_err(self.ldap_err("read the root DSE"))?;
        let _ = res;
        let mut info = ServerInfo {
            tls: self.tls_mode(),
            ..ServerInfo::default()
        };
        if let Some(e) = entries.into_iter().next() {
            let e = SearchEntry::construct(e);
            let get = |k: &str| e.attrs.get(k).cloned().unwrap_or_default();
            info.naming_contexts = get("namingContexts");
            info.current_time = get("currentTime").into_iter().next();
            let controls = get("supportedControl");
            info.paged_results = controls.iter().any(|c| c == "1.2.840.113556.1.4.319");
            // AD (and Samba) advertise the AD capability OID; the in-chain rule comes with it.
            info.in_chain = get("supportedCapabilities")
                .iter()
                .any(|c| c == "1.2.840.113556.1.4.800");
            info.vendor = match (get("vendorName").first(), get("vendorVersion").first()) {
                (Some(n), Some(v)) => Some(format!("{n} {v}")),
                (Some(n), None) => Some(n.clone()),
                _ if info.in_chain => Some("Active Directory compatible".into()),
                _ => None,
            };
        }
        let _ = ldap.unbind().await;
        Ok(info)
    }
}
