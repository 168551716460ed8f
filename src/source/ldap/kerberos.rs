//! Kerberos (SASL GSSAPI) bind with a client keytab, so the service account needs no
//! stored password. Built only with the `kerberos` feature (MIT krb5 through ldap3's
//! `gssapi`); without it the configuration refuses `source.auth = "kerberos"`.
//!
//! MIT krb5 reads the client keytab from `KRB5_CLIENT_KTNAME` and keeps tickets in
//! `KRB5CCNAME`; tansync sets both once, in `main` before any other thread exists
//! ([`use_keytab_for_process`]), to the configured keytab and a private in-memory
//! credential cache, so it never reads or writes the user's own tickets. The initial
//! ticket is then acquired (and, when it expires, acquired again) from the keytab by
//! the library itself, for the configured principal only: the credential is asked for
//! by name, so a keytab that does not hold the principal is refused.
//!
//! Never does: a GSSAPI bind without TLS (ldap3 has no SASL protection layer, so the
//! LDAP traffic would be in clear); use a keytab other than the one the process was
//! started with (a changed `source.keytab` needs a restart).

use std::path::{Path, PathBuf};

/// The environment variable MIT krb5 reads the client keytab's name from.
pub const CLIENT_KEYTAB_VAR: &str = "KRB5_CLIENT_KTNAME";
/// The environment variable naming the credential cache.
pub const CCACHE_VAR: &str = "KRB5CCNAME";
/// tansync's own tickets: in this process's memory, never in a file another process
/// (or a later tansync) could read.
pub const CCACHE: &str = "MEMORY:tansync";

/// `[source] auth = "kerberos"`, validated by the config stage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KerberosAuth {
    /// The service account, with its realm: `svc-tansync@NORTHGATE.EXAMPLE`.
    pub principal: String,
    /// The client keytab holding the principal's keys (mode 0600/0400).
    pub keytab: PathBuf,
    /// The DC's host name in its `ldap/HOST` service principal.
    pub sasl_host: String,
}

impl KerberosAuth {
    /// The service principal the ticket is asked for.
    pub fn service(&self) -> String {
        format!("ldap/{}", self.sasl_host)
    }
}

/// Point MIT krb5 at `keytab` and at tansync's private credential cache.
///
/// # Safety
///
/// Sets environment variables: no other thread may exist (call it in `main` before
/// the async runtime starts).
pub unsafe fn use_keytab_for_process(keytab: &Path) {
    // SAFETY: the caller guarantees this process has one thread.
    unsafe {
        std::env::set_var(CLIENT_KEYTAB_VAR, format!("FILE:{}", keytab.display()));
        std::env::set_var(CCACHE_VAR, CCACHE);
    }
}

/// The keytab this process was set up with, if any.
pub fn process_keytab() -> Option<PathBuf> {
    let v = std::env::var_os(CLIENT_KEYTAB_VAR)?;
    let s = v.to_str()?;
    Some(PathBuf::from(s.strip_prefix("FILE:").unwrap_or(s)))
}

/// What went wrong, in the words an operator acts on, from the GSSAPI/krb5 message.
pub fn classify(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    let has = |s: &str| m.contains(s);
    if has("preauthentication failed")
        || has("password incorrect")
        || has("decrypt integrity check failed")
        || has("integrity check on decrypted field failed")
        || has("specified version of key is not available")
        || has("key version number for principal in key table is incorrect")
    {
        "the keytab's key for the principal is wrong (the account's password or key \
         version changed since the keytab was exported): export the keytab again"
    } else if has("key table entry not found")
        || has("no key table entry found")
        || has("no kerberos credentials available")
        || has("can't find client principal")
        || has("key table file") && has("not found")
    {
        "the keytab does not hold this principal (or cannot be read): check the principal \
         and the keytab (klist -k)"
    } else if has("client") && has("not found in kerberos database") {
        "the KDC does not know this principal: check source.principal and its realm"
    } else if has("server") && has("not found in kerberos database") {
        "the KDC knows no ldap/ service principal for this host: set source.sasl_host to \
         the DC's host name as its service principal names it"
    } else if has("cannot contact any kdc")
        || has("cannot find kdc")
        || has("cannot resolve network address for kdc")
        || has("connection refused")
    {
        "no KDC answered for the realm: check krb5.conf (KRB5_CONFIG) and that the KDC \
         (port 88) can be reached"
    } else if has("clock skew") {
        "this host's clock differs too much from the KDC's: fix the time (NTP)"
    } else if has("expired") {
        "the ticket or the account's password has expired"
    } else if has("revoked") || has("locked out") || has("client's credentials have been revoked") {
        "the KDC refuses the account (disabled or locked out)"
    } else {
        "the Kerberos exchange failed"
    }
}

#[cfg(feature = "kerberos")]
mod bind {
    use super::{KerberosAuth, classify, process_keytab};
    use crate::source::SourceError;
    use cross_krb5::{ClientCtx, Cred, InitiateFlags, K5Cred};

    fn error(url: &str, k: &KerberosAuth, detail: String) -> SourceError {
        SourceError::Kerberos {
            url: url.to_string(),
            principal: k.principal.clone(),
            keytab: k.keytab.display().to_string(),
            cause: classify(&detail),
            detail,
        }
    }

    /// The credential for `k.principal` from the process's keytab, refused when the
    /// process was set up with another keytab (the configuration changed since start).
    pub(crate) fn credential(url: &str, k: &KerberosAuth) -> Result<Cred, SourceError> {
        match process_keytab() {
            Some(p) if p == k.keytab => {}
            other => {
                return Err(SourceError::Kerberos {
                    url: url.to_string(),
                    principal: k.principal.clone(),
                    keytab: k.keytab.display().to_string(),
                    cause: "this process was not started with this keytab",
                    detail: format!(
                        "it reads {}; a changed source.keytab needs a restart of tansync",
                        other.map_or("no keytab".into(), |p| p.display().to_string())
                    ),
                });
            }
        }
        Cred::client_acquire(InitiateFlags::empty(), Some(&k.principal))
            .map_err(|e| error(url, k, format!("acquire credentials: {e:#}")))
    }

    /// Acquire a ticket for `ldap/HOST` (the KDC is asked; no LDAP traffic): what
    /// `tansync check` reports on its own line.
    pub(crate) fn ticket(url: &str, k: &KerberosAuth) -> Result<(), SourceError> {
        let cred = credential(url, k)?;
        ClientCtx::new_with_cred(cred, &k.service(), None)
            .map(|_| ())
            .map_err(|e| error(url, k, format!("ticket for {}: {e:#}", k.service())))
    }

    /// A GSSAPI bind on `ldap`, which must already be under TLS.
    pub(crate) async fn bind(
        url: &str,
        ldap: &mut ldap3::Ldap,
        k: &KerberosAuth,
    ) -> Result<ldap3::LdapResult, SourceError> {
        let cred = credential(url, k)?;
        // The GSSAPI calls block while the KDC answers (krb5.conf's timeouts bound
        // them); ldap3 makes them inside its async bind.
        let res = ldap
            .sasl_gssapi_cred_bind(cred, &k.sasl_host)
            .await
            .map_err(|e| match e {
                ldap3::LdapError::GssapiOperationError(m) => {
                    error(url, k, format!("GSSAPI bind as {}: {m}", k.principal))
                }
                other => SourceError::Ldap {
                    url: url.to_string(),
                    context: format!("GSSAPI bind as {}", k.principal),
                    source: Box::new(other),
                },
            })?;
        if res.rc == STRONGER_AUTH_REQUIRED {
            return Err(SourceError::Kerberos {
                url: url.to_string(),
                principal: k.principal.clone(),
                keytab: k.keytab.display().to_string(),
                cause: "the DC wants a SASL signing or sealing layer on top of TLS, which \
                        tansync does not offer (its Kerberos bind relies on TLS): on a Samba \
                        DC before 4.20 set `ldap server require strong auth = \
                        allow_sasl_over_tls`",
                detail: format!(
                    "server answered 8 (strongerAuthRequired): {}",
                    res.text.trim()
                ),
            });
        }
        Ok(res)
    }

    /// LDAP's strongerAuthRequired (RFC 4511 §4.1.9).
    const STRONGER_AUTH_REQUIRED: u32 = 8;
}

#[cfg(feature = "kerberos")]
pub(crate) use bind::{bind, ticket};

#[cfg(not(feature = "kerberos"))]
fn unsupported(url: &str, k: &KerberosAuth) -> crate::source::SourceError {
    crate::source::SourceError::Kerberos {
        url: url.to_string(),
        principal: k.principal.clone(),
        keytab: k.keytab.display().to_string(),
        cause: "this tansync was built without Kerberos support",
        detail: "build it with --features kerberos".into(),
    }
}

#[cfg(not(feature = "kerberos"))]
pub(crate) fn ticket(url: &str, k: &KerberosAuth) -> Result<(), crate::source::SourceError> {
    Err(unsupported(url, k))
}

#[cfg(not(feature = "kerberos"))]
pub(crate) async fn bind(
    url: &str,
    _ldap: &mut ldap3::Ldap,
    k: &KerberosAuth,
) -> Result<ldap3::LdapResult, crate::source::SourceError> {
    Err(unsupported(url, k))
}

#[cfg(test)]
mod tests {
    use super::classify;

    #[test]
    fn krb5_messages_name_the_cause() {
        for (msg, starts) in [
            (
                "Preauthentication failed",
                "the keytab's key for the principal is wrong",
            ),
            (
                "Key table entry not found",
                "the keytab does not hold this principal",
            ),
            (
                "(Can't find client principal svc@T.TEST in cache collection)",
                "the keytab does not hold this principal",
            ),
            (
                "Cannot contact any KDC for realm 'TANSYNC.TEST'",
                "no KDC answered",
            ),
            (
                "Client 'x@TANSYNC.TEST' not found in Kerberos database",
                "the KDC does not know this principal",
            ),
            (
                "Server 'ldap/dc@TANSYNC.TEST' not found in Kerberos database",
                "the KDC knows no ldap/ service principal",
            ),
            ("Clock skew too great", "this host's clock"),
            (
                "Ticket expired",
                "the ticket or the account's password has expired",
            ),
            ("something new", "the Kerberos exchange failed"),
        ] {
            assert!(
                classify(msg).starts_with(starts),
                "{msg}: {}",
                classify(msg)
            );
        }
    }
}
