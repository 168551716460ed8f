//! Configuration, in two phases: raw TOML structs (unknown keys rejected) → one validated
//! [`Config`] with compiled rules, parsed agreements, resolved paths and secrets. Every
//! error names the file, the key and the problem. Secrets come from a file, an
//! environment variable or a systemd credential (`LoadCredential=`) only, and are held
//! as [`secrecy::SecretString`]. A value still reading `"FILL-IN: …"` (the packaged
//! configuration ships them) stops every command, naming each such key.

pub mod daemon;
mod placeholder;
mod portal;
mod raw;

use crate::filter::{self, RuleSet};
use crate::gate::{Agreements, GatePolicy, agreements};
use crate::ids::NormDn;
use crate::model::Field;
use crate::model::mapping::Mapping;
use crate::plan::MatchKey;
use crate::push::PushSettings;
use crate::push::writeback::WriteBackSettings;
pub use crate::source::ldap::kerberos::use_keytab_for_process;
use crate::source::ldap::{KerberosAuth, LdapAuth, LdapSource, NestedGroups};
use crate::source::ldif::{LdifLimits, LdifSource};
use crate::source::{AnchorKind, AnySource};
use crate::target::AnyTarget;
use crate::target::portal::{PortalSettings, PortalTarget};
use crate::target::scim::{ScimSettings, ScimTarget};
use crate::target::snapshot::SnapshotTarget;
pub use daemon::{DEFAULT_HEALTHY_WITHIN, DaemonSettings, LogFormat, LogSettings};
use raw::{RawConfig, RawLdap, RawSource, RawTarget};
use secrecy::SecretString;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// A configuration problem: file, key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {key}{sep}{problem}", sep = if key.is_empty() { "" } else { ": " })]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub problem: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Filter(#[from] filter::FilterError),
}

/// The validated configuration.
pub struct Config {
    pub file: PathBuf,
    pub agent_id: String,
    pub source: AnySource,
    pub mapping: Mapping,
    pub rules: RuleSet,
    pub filter_files: Vec<PathBuf>,
    /// The directory's state, read-only (planning holds nothing that can write).
    pub target: AnyTarget,
    /// How to reach the directory for writing (SCIM targets only; used by `apply`).
    pub scim: Option<ScimSettings>,
    /// The Portal's CSV files (`kind = "portal_report"` only): the report the target
    /// reads, the template batches follow, where they go.
    pub portal: Option<Arc<PortalSettings>>,
    pub agreements: Agreements,
    pub agreements_file: PathBuf,
    pub soft_match: Vec<MatchKey>,
    pub nhsmail_domain: String,
    pub restore_window_days: i64,
    pub policy: GatePolicy,
    pub allow_empty_source: bool,
    pub push: PushSettings,
    /// Where the journal and run history live (locked while a run writes).
    pub state_dir: PathBuf,
    /// `[safety] allow_insecure_secret_files` (for `check` to point out).
    pub allow_insecure_secret_files: bool,
    /// Writing the allocated NHSmail address back to an AD attribute (opt-in; LDAP
    /// sources only).
    pub write_back: Option<WriteBackSettings>,
    /// `[daemon]`: continuous mode, health, metrics and logging.
    pub daemon: daemon::DaemonSettings,
}

/// The largest `source.ldif_max_value_bytes` accepted: 1 GiB.
const MAX_LDIF_VALUE: usize = 1 << 30;

struct Ctx<'a> {
    file: &'a str,
    dir: &'a Path,
    /// `[safety] allow_insecure_secret_files`: read secret files that group or others
    /// may read too.
    allow_insecure_secret_files: bool,
    /// `$CREDENTIALS_DIRECTORY`: where systemd put the unit's `LoadCredential=` files.
    credentials_dir: Option<&'a Path>,
}

/// Where one secret comes from, as configured: `KEY_file`, `KEY_env` or
/// `KEY_credential` (exactly one). A new secret (a keytab, say) adds its three keys to
/// the raw section and goes through [`Ctx::secret`] like the others.
#[derive(Clone, Copy, Default)]
struct SecretKeys<'a> {
    file: Option<&'a str>,
    env: Option<&'a str>,
    credential: Option<&'a str>,
}

impl Ctx<'_> {
    fn err(&self, key: &str, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_string(),
            key: key.to_string(),
            problem: problem.into(),
        }
    }

    /// Resolve a path relative to the config file's directory.
    fn path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    fn existing(&self, key: &str, p: &str) -> Result<PathBuf, ConfigError> {
        let path = self.path(p);
        if !path.is_file() {
            return Err(self.err(
                key,
                format!("{} does not exist or is not a file", path.display()),
            ));
        }
        Ok(path)
    }

    fn secret(&self, key: &str, from: SecretKeys<'_>) -> Result<SecretString, ConfigError> {
        let (value, shown, key) = match (from.file, from.env, from.credential) {
            (Some(f), None, None) => {
                let key = format!("{key}_file");
                let path = self.path(f);
                let text = read_secret_file(&path, self.allow_insecure_secret_files)
                    .map_err(|problem| self.err(&key, problem))?;
                (text, path.display().to_string(), key)
            }
            (None, Some(var), None) => {
                return match std::env::var(var) {
                    Ok(v) if !v.is_empty() => Ok(SecretString::from(v)),
                    _ => Err(self.err(
                        &format!("{key}_env"),
                        format!("environment variable {var} is not set or empty"),
                    )),
                };
            }
            (None, None, Some(name)) => {
                let key = format!("{key}_credential");
                let path = self.credential(&key, name)?;
                // The credentials directory is the unit's own (systemd makes it readable
                // by the service's user only), so the file's mode is not checked.
                let text =
                    read_secret_file(&path, true).map_err(|problem| self.err(&key, problem))?;
                (text, path.display().to_string(), key)
            }
            (None, None, None) => {
                return Err(self.err(
                    key,
                    format!(
                        "a secret is needed: set {key}_file (a file readable only by tansync), \
                         {key}_env or {key}_credential (a systemd LoadCredential= name); \
                         inline secrets are not accepted"
                    ),
                ));
            }
            _ => {
                return Err(self.err(
                    key,
                    format!("give one of {key}_file, {key}_env or {key}_credential, not more"),
                ));
            }
        };
        let v = value.trim_end_matches(['\r', '\n']);
        if v.is_empty() {
            return Err(self.err(&key, format!("{shown} is empty")));
        }
        Ok(SecretString::from(v.to_string()))
    }

    /// The file of systemd credential `name`: `$CREDENTIALS_DIRECTORY/name`.
    fn credential(&self, key: &str, name: &str) -> Result<PathBuf, ConfigError> {
        // systemd's credential names: a file name, no path.
        if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
            return Err(self.err(
                key,
                format!("{name:?} is not a credential name (a LoadCredential= name, no '/')"),
            ));
        }
        let Some(dir) = self.credentials_dir else {
            return Err(self.err(
                key,
                format!(
                    "credential {name:?} needs $CREDENTIALS_DIRECTORY, which is not set: \
                     run tansync from a systemd unit with LoadCredential={name}:FILE \
                     (or use systemd-run -p LoadCredential=…), or use a _file key instead"
                ),
            ));
        };
        let path = dir.join(name);
        if !path.is_file() {
            return Err(self.err(
                key,
                format!(
                    "credential {name:?} is not in $CREDENTIALS_DIRECTORY ({}): \
                     add LoadCredential={name}:FILE to the unit",
                    dir.display()
                ),
            ));
        }
        Ok(path)
    }
}

/// The most a secret file may hold: a password or a token, not a file read by mistake.
const MAX_SECRET_BYTES: u64 = 64 * 1024;

/// Read a secret file, refusing one that group or others may read (as ssh refuses such
/// a private key) unless `allow_insecure`, or one that is not a regular file. The mode is
/// checked on the file opened, so it is the file read.
fn read_secret_file(path: &Path, allow_insecure: bool) -> Result<String, String> {
    use std::io::Read;
    let shown = path.display();
    let f = open_secret_file(path, allow_insecure)?;
    let mut text = String::new();
    f.take(MAX_SECRET_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if text.len() as u64 > MAX_SECRET_BYTES {
        return Err(format!(
            "{shown} is larger than {MAX_SECRET_BYTES} bytes: not a password or token"
        ));
    }
    Ok(text)
}

/// Open a secret file (a password, a token, a keytab) after the checks of
/// [`read_secret_file`]: a regular file that only its owner may read, unless
/// `allow_insecure`.
fn open_secret_file(path: &Path, allow_insecure: bool) -> Result<std::fs::File, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let meta = f
        .metadata()
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 && !allow_insecure {
        return Err(format!(
            "{shown} has mode {mode:04o}: group or others may read this secret; \
             make it readable by tansync's user only (chmod 600 {shown}), \
             or set [safety] allow_insecure_secret_files = true"
        ));
    }
    Ok(f)
}

/// The directory's base URL, parsed: `https` to any host, or plain `http` only to a
/// loopback address written as `127.0.0.1`, `[::1]` or `localhost` (the bearer token
/// goes in every request, so it must never cross a network in clear); never a user name
/// or password in the URL (the token is sent on its own), nor a query or fragment.
fn target_url(raw: &str) -> Result<url::Url, String> {
    let raw = raw.trim();
    let u = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(
            "must not hold a user name or password (user:pass@host): the bearer token is \
             sent on its own, from target.token_file or target.token_env"
                .into(),
        );
    }
    if u.query().is_some() || u.fragment().is_some() {
        return Err("must not have a ?query or #fragment: give the SCIM base URL".into());
    }
    match u.scheme() {
        "https" => Ok(u),
        "http" => {
            // The host as written: the URL parser reads `127.1` or `0x7f000001` as
            // 127.0.0.1 too, but only the plain forms are accepted, so what the reader
            // of the configuration sees is where the token goes.
            let written = host_as_written(raw);
            let loopback = matches!(
                u.host(),
                Some(url::Host::Ipv4(a)) if a == std::net::Ipv4Addr::LOCALHOST
            ) || matches!(
                u.host(),
                Some(url::Host::Ipv6(a)) if a == std::net::Ipv6Addr::LOCALHOST
            ) || matches!(u.host(), Some(url::Host::Domain(d)) if d == "localhost");
            let plain = u
                .host_str()
                .is_some_and(|h| written.is_some_and(|w| w.eq_ignore_ascii_case(h)));
            if loopback && plain {
                Ok(u)
            } else {
                Err(format!(
                    "plain http:// is allowed only to a loopback address written as \
                     127.0.0.1, [::1] or localhost (not {}); use https:// for any other host",
                    written.unwrap_or("")
                ))
            }
        }
        other => Err(format!("must be https:// (not {other}://)")),
    }
}

/// An LDAP URL names a server and nothing else: the bind DN and password are configured
/// on their own (a password in the URL would be an inline secret).
fn ldap_url(raw: &str) -> Result<(), String> {
    let u = url::Url::parse(raw).map_err(|e| format!("{raw:?} is not a URL: {e}"))?;
    if !u.username().is_empty() || u.password().is_some() {
        return Err(
            "must not hold a user name or password (user:pass@host): set source.bind_dn \
             and source.bind_password_file or source.bind_password_env"
                .into(),
        );
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(format!("{raw:?} names no server"));
    }
    Ok(())
}

/// The host part of `scheme://[userinfo@]host[:port]/…` as written.
fn host_as_written(raw: &str) -> Option<&str> {
    let rest = &raw[raw.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host_port.starts_with('[') {
        return host_port.find(']').map(|i| &host_port[..=i]);
    }
    Some(host_port.split_once(':').map_or(host_port, |(h, _)| h))
}

/// The keytab a configuration's `[source] auth = "kerberos"` names, resolved as
/// [`Config::load`] resolves it, read before the configuration is validated: `main`
/// points MIT krb5 at it while the process still has one thread. Anything unreadable
/// gives `None`; the full load that follows reports what is wrong.
pub fn peek_keytab(path: &Path) -> Option<PathBuf> {
    #[derive(serde::Deserialize)]
    struct File {
        source: Option<Section>,
    }
    #[derive(serde::Deserialize)]
    struct Section {
        auth: Option<String>,
        keytab: Option<String>,
        keytab_credential: Option<String>,
    }
    let text = std::fs::read_to_string(path).ok()?;
    let source = toml::from_str::<File>(&text).ok()?.source?;
    if source.auth.as_deref() != Some("kerberos") {
        return None;
    }
    let credentials = std::env::var_os("CREDENTIALS_DIRECTORY").map(PathBuf::from);
    let cx = Ctx {
        file: "",
        dir: path.parent().unwrap_or(Path::new(".")),
        allow_insecure_secret_files: false,
        credentials_dir: credentials.as_deref(),
    };
    match (source.keytab, source.keytab_credential) {
        (Some(k), None) => Some(cx.path(&k)),
        (None, Some(name)) => cx.credential("source.keytab_credential", &name).ok(),
        _ => None,
    }
}

impl Config {
    /// The Kerberos keytab the source binds with, if it does.
    pub fn keytab(&self) -> Option<&Path> {
        match &self.source {
            AnySource::Ldap(LdapSource {
                auth: LdapAuth::Kerberos(k),
                ..
            }) => Some(&k.keytab),
            _ => None,
        }
    }

    /// Read and validate a configuration file.
    pub fn load(path: &Path) -> Result<Config, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            key: String::new(),
            problem: format!("cannot read: {e}"),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Self::from_str(&text, &file, dir)
    }

    /// Validate configuration text; relative paths resolve against `dir`, credentials
    /// against `$CREDENTIALS_DIRECTORY`.
    pub fn from_str(text: &str, file: &str, dir: &Path) -> Result<Config, LoadError> {
        let creds = std::env::var_os("CREDENTIALS_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from);
        Self::from_str_with(text, file, dir, creds.as_deref())
    }

    /// [`Config::from_str`] with the credentials directory given.
    pub fn from_str_with(
        text: &str,
        file: &str,
        dir: &Path,
        credentials_dir: Option<&Path>,
    ) -> Result<Config, LoadError> {
        let value: toml::Table = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            key: String::new(),
            problem: crate::toml_error::describe(text, &e),
        })?;
        placeholder::refuse(&value, file)?;
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError {
            file: file.to_string(),
            key: String::new(),
            problem: crate::toml_error::describe(text, &e),
        })?;
        let cx = Ctx {
            file,
            dir,
            allow_insecure_secret_files: raw.safety.allow_insecure_secret_files,
            credentials_dir,
        };

        let agent_id = raw.agent_id.trim().to_string();
        if agent_id.is_empty()
            || !agent_id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(cx
                .err("agent_id", "must be letters, digits, '-', '_' or '.' (it marks the accounts this agent manages)")
                .into());
        }

        let mut mapping = Mapping::default();
        for (k, v) in raw.mapping {
            let f = Field::parse(&k).ok_or_else(|| {
                cx.err(
                    &format!("mapping.{k}"),
                    format!(
                        "unknown field; expected one of {}",
                        Field::ALL.map(|f| f.name()).join(", ")
                    ),
                )
            })?;
            if v.trim().is_empty() {
                return Err(cx
                    .err(&format!("mapping.{k}"), "attribute name is empty")
                    .into());
            }
            mapping.fields.insert(f, v);
        }

        let source = match raw.source {
            RawSource::Ldif(l) => {
                let anchor = anchor_kind(&l.anchor);
                // At least a DN's worth; at most 1 GiB, so a line's length always fits.
                let max_value_bytes = match usize::try_from(l.ldif_max_value_bytes) {
                    Ok(n @ 1024..=MAX_LDIF_VALUE) => n,
                    _ => {
                        return Err(cx
                            .err(
                                "source.ldif_max_value_bytes",
                                format!("must be 1024 to {MAX_LDIF_VALUE} (bytes)"),
                            )
                            .into());
                    }
                };
                AnySource::Ldif(LdifSource {
                    limits: LdifLimits { max_value_bytes },
                    path: cx.existing("source.path", &l.path)?,
                    anchor,
                    person_classes: l
                        .person_classes
                        .iter()
                        .map(|c| c.to_ascii_lowercase())
                        .collect(),
                    exclude_classes: l
                        .exclude_classes
                        .iter()
                        .map(|c| c.to_ascii_lowercase())
                        .collect(),
                })
            }
            RawSource::Ldap(l) => {
                let url = l.url.trim().to_string();
                let lower = url.to_ascii_lowercase();
                if !(lower.starts_with("ldaps://") || lower.starts_with("ldap://")) {
                    return Err(cx
                        .err("source.url", "must start with ldaps:// or ldap://")
                        .into());
                }
                ldap_url(&url).map_err(|p| cx.err("source.url", p))?;
                if lower.starts_with("ldaps://") && l.starttls {
                    return Err(cx
                        .err(
                            "source.starttls",
                            "StartTLS is for ldap:// URLs; ldaps:// is already TLS",
                        )
                        .into());
                }
                if !(1..=1000).contains(&l.page_size) {
                    return Err(cx
                        .err(
                            "source.page_size",
                            "must be 1 to 1000 (Active Directory's MaxPageSize is 1000)",
                        )
                        .into());
                }
                if l.base_dns.is_empty() || l.base_dns.iter().any(|b| b.trim().is_empty()) {
                    return Err(cx
                        .err("source.base_dns", "give at least one base DN, none empty")
                        .into());
                }
                let filter = l.filter.trim().to_string();
                if !(filter.starts_with('(') && filter.ends_with(')')) {
                    return Err(cx
                        .err(
                            "source.filter",
                            "an LDAP filter must be in parentheses, e.g. (objectClass=user)",
                        )
                        .into());
                }
                for (k, v) in [
                    ("source.connect_timeout_secs", l.connect_timeout_secs),
                    ("source.operation_timeout_secs", l.operation_timeout_secs),
                ] {
                    if v == 0 {
                        return Err(cx.err(k, "must be at least 1 second").into());
                    }
                }
                let nested_groups = match l.nested_groups.as_str() {
                    "in_chain" => NestedGroups::InChain,
                    "expand" => NestedGroups::Expand,
                    other => {
                        return Err(cx
                            .err(
                                "source.nested_groups",
                                format!("{other:?} is not in_chain or expand"),
                            )
                            .into());
                    }
                };
                // The CA file first, then the credential, as the keys are written.
                let ca_file = l
                    .ca_file
                    .as_deref()
                    .map(|p| cx.existing("source.ca_file", p))
                    .transpose()?;
                let auth = ldap_auth(&cx, &l, &url)?;
                AnySource::Ldap(LdapSource {
                    ca_file,
                    auth,
                    url,
                    starttls: l.starttls,
                    base_dns: l.base_dns,
                    filter,
                    group_filter: l.group_filter,
                    page_size: l.page_size,
                    connect_timeout: Duration::from_secs(l.connect_timeout_secs),
                    operation_timeout: Duration::from_secs(l.operation_timeout_secs),
                    allow_cleartext_bind: l.allow_cleartext_bind,
                    anchor: anchor_kind(&l.anchor),
                    nested_groups,
                })
            }
        };

        if raw.filters.files.is_empty() {
            return Err(cx
                .err(
                    "filters.files",
                    "name at least one rule file (without rules nothing is in scope)",
                )
                .into());
        }
        let filter_files = raw
            .filters
            .files
            .iter()
            .map(|f| cx.existing("filters.files", f))
            .collect::<Result<Vec<_>, _>>()?;
        let rules = filter::load_files(&filter_files)?;

        let agreements_file = cx.existing("agreements.file", &raw.agreements.file)?;
        let atext = std::fs::read_to_string(&agreements_file)
            .map_err(|e| cx.err("agreements.file", format!("cannot read: {e}")))?;
        let agreements = agreements::parse(&atext).map_err(|p| ConfigError {
            file: agreements_file.display().to_string(),
            key: String::new(),
            problem: p,
        })?;

        let (target, scim, portal) = match raw.target {
            RawTarget::Snapshot(t) => (
                AnyTarget::Snapshot(SnapshotTarget {
                    path: cx.existing("target.path", &t.path)?,
                }),
                None,
                None,
            ),
            RawTarget::PortalReport(t) => {
                let settings = Arc::new(portal::settings(
                    &cx,
                    t,
                    &agent_id,
                    agreements.sharing.keys().cloned().collect(),
                    &mapping,
                )?);
                (
                    AnyTarget::Portal(PortalTarget {
                        settings: settings.clone(),
                    }),
                    None,
                    Some(settings),
                )
            }
            RawTarget::Scim(t) => {
                let url = target_url(&t.url)
                    .map_err(|p| cx.err("target.url", p))?
                    .as_str()
                    .trim_end_matches('/')
                    .to_string();
                if !(1..=1000).contains(&t.page_size) {
                    return Err(cx.err("target.page_size", "must be 1 to 1000").into());
                }
                if t.timeout_secs == 0 {
                    return Err(cx
                        .err("target.timeout_secs", "must be at least 1 second")
                        .into());
                }
                let settings = ScimSettings {
                    token: cx.secret(
                        "target.token",
                        SecretKeys {
                            file: t.token_file.as_deref(),
                            env: t.token_env.as_deref(),
                            credential: t.token_credential.as_deref(),
                        },
                    )?,
                    ca_file: t
                        .ca_file
                        .as_deref()
                        .map(|p| cx.existing("target.ca_file", p))
                        .transpose()?,
                    organisations_file: t
                        .organisations_file
                        .as_deref()
                        .map(|p| cx.existing("target.organisations_file", p))
                        .transpose()?,
                    page_size: t.page_size,
                    timeout: Duration::from_secs(t.timeout_secs),
                    organisations: agreements.sharing.keys().cloned().collect(),
                    url,
                };
                let reader = ScimTarget::new(settings.clone())
                    .map_err(|e| cx.err("target", format!("cannot set up the SCIM client: {e}")))?;
                (AnyTarget::Scim(Box::new(reader)), Some(settings), None)
            }
        };

        let s = raw.safety;
        if !(0.0..=100.0).contains(&s.max_removal_percent) {
            return Err(cx
                .err("safety.max_removal_percent", "must be between 0 and 100")
                .into());
        }
        if s.restore_window_days < 1 {
            return Err(cx
                .err("safety.restore_window_days", "must be at least 1")
                .into());
        }
        if s.default_account_cap == 0 {
            return Err(cx
                .err("safety.default_account_cap", "must be at least 1")
                .into());
        }
        let e = raw.eligibility;
        if e.nhsmail_domain.trim().is_empty() || !e.nhsmail_domain.contains('.') {
            return Err(cx
                .err(
                    "eligibility.nhsmail_domain",
                    "must be a domain such as nhs.net",
                )
                .into());
        }
        let p = raw.push;
        let nz =
            |key: &str, v: u32| NonZeroU32::new(v).ok_or_else(|| cx.err(key, "must be at least 1"));
        let rate = nz("push.rate_per_second", p.rate_per_second)?;
        let push = PushSettings {
            rate_per_second: rate,
            burst: nz("push.burst", p.burst.unwrap_or(p.rate_per_second))?,
            org_rate_per_second: nz(
                "push.org_rate_per_second",
                p.org_rate_per_second.unwrap_or(p.rate_per_second),
            )?,
            org_burst: nz(
                "push.org_burst",
                p.org_burst
                    .or(p.burst)
                    .unwrap_or(p.org_rate_per_second.unwrap_or(p.rate_per_second)),
            )?,
            concurrency: match p.concurrency {
                1..=256 => p.concurrency,
                _ => return Err(cx.err("push.concurrency", "must be 1 to 256").into()),
            },
            max_attempts: nz("push.max_attempts", p.max_attempts)?.get(),
            backoff_base: Duration::from_millis(p.backoff_base_ms.max(1)),
            backoff_max: Duration::from_secs(p.backoff_max_secs.max(1)),
            quarantine_after: nz("push.quarantine_after", p.quarantine_after)?.get(),
            ..PushSettings::default()
        };
        let write_back = match raw.write_back {
            None => None,
            Some(w) => {
                let attr = w.attribute.trim().to_string();
                // An LDAP attribute description (RFC 4512 `descr`), no options.
                let valid = attr.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                    && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                if !valid {
                    return Err(cx
                        .err(
                            "write_back.attribute",
                            format!("{attr:?} is not an LDAP attribute name"),
                        )
                        .into());
                }
                let AnySource::Ldap(ldap) = &source else {
                    return Err(cx
                        .err(
                            "write_back",
                            "needs an LDAP source (an LDIF export cannot be written to)",
                        )
                        .into());
                };
                let bind_dn = match w.bind_dn.as_deref().map(str::trim) {
                    Some(d) if !d.is_empty() => d.to_string(),
                    _ => {
                        return Err(cx
                            .err(
                                "write_back.bind_dn",
                                "give the DN of an account allowed to write this attribute \
                                 (write-back has its own credential so the source's bind can \
                                 stay read-only)",
                            )
                            .into());
                    }
                };
                let bind_password = cx.secret(
                    "write_back.bind_password",
                    SecretKeys {
                        file: w.bind_password_file.as_deref(),
                        env: w.bind_password_env.as_deref(),
                        credential: w.bind_password_credential.as_deref(),
                    },
                )?;
                let base_dns: Vec<String> = match w.base_dns {
                    None => ldap.base_dns.clone(),
                    Some(b) if b.is_empty() || b.iter().any(|d| d.trim().is_empty()) => {
                        return Err(cx
                            .err(
                                "write_back.base_dns",
                                "give at least one base DN, none empty",
                            )
                            .into());
                    }
                    Some(b) => b,
                };
                Some(WriteBackSettings {
                    attribute: attr,
                    bind_dn,
                    bind_password,
                    base_dns: base_dns.iter().map(|d| NormDn::new(d)).collect(),
                })
            }
        };
        let daemon = daemon::settings(&cx, raw.daemon)?;
        Ok(Config {
            daemon,
            write_back,
            push,
            state_dir: cx.path(&raw.state.dir),
            allow_insecure_secret_files: cx.allow_insecure_secret_files,
            file: PathBuf::from(file),
            agent_id,
            source,
            mapping,
            rules,
            filter_files,
            target,
            scim,
            portal,
            agreements,
            agreements_file,
            soft_match: raw.matching.soft_match,
            nhsmail_domain: e.nhsmail_domain.trim().to_ascii_lowercase(),
            restore_window_days: s.restore_window_days,
            policy: GatePolicy {
                default_cap: s.default_account_cap,
                ineligible_domains: e.ineligible_domains,
                max_removals: s.max_removals,
                max_removal_percent: s.max_removal_percent,
                percent_applies_from: s.percent_applies_from,
            },
            allow_empty_source: s.allow_empty_source,
        })
    }
}

/// `[source] auth` and the keys that go with it: a simple bind's DN and password, or
/// Kerberos's keytab, principal and service host (TLS required).
fn ldap_auth(cx: &Ctx, l: &RawLdap, url: &str) -> Result<LdapAuth, ConfigError> {
    let kerberos_keys = [
        ("source.keytab", l.keytab.is_some()),
        ("source.keytab_credential", l.keytab_credential.is_some()),
        ("source.principal", l.principal.is_some()),
        ("source.sasl_host", l.sasl_host.is_some()),
    ];
    match l.auth.as_str() {
        "simple" => {
            if let Some((key, _)) = kerberos_keys.iter().find(|(_, set)| *set) {
                return Err(cx.err(key, "only with source.auth = \"kerberos\""));
            }
            let bind_dn = match l.bind_dn.as_deref().map(str::trim) {
                Some(d) if !d.is_empty() => d.to_string(),
                _ => {
                    return Err(cx.err(
                        "source.bind_dn",
                        "give the DN to bind as (or set source.auth = \"kerberos\" and a keytab)",
                    ));
                }
            };
            Ok(LdapAuth::Simple {
                bind_dn,
                bind_password: cx.secret(
                    "source.bind_password",
                    SecretKeys {
                        file: l.bind_password_file.as_deref(),
                        env: l.bind_password_env.as_deref(),
                        credential: l.bind_password_credential.as_deref(),
                    },
                )?,
            })
        }
        "kerberos" => {
            if !cfg!(feature = "kerberos") {
                return Err(cx.err(
                    "source.auth",
                    "this tansync was built without Kerberos support (build it with \
                     --features kerberos, which needs MIT krb5: libkrb5-dev, clang)",
                ));
            }
            for (key, set) in [
                ("source.bind_dn", l.bind_dn.is_some()),
                ("source.bind_password_file", l.bind_password_file.is_some()),
                ("source.bind_password_env", l.bind_password_env.is_some()),
                (
                    "source.bind_password_credential",
                    l.bind_password_credential.is_some(),
                ),
            ] {
                if set {
                    return Err(cx.err(
                        key,
                        "not with source.auth = \"kerberos\" (the keytab is the credential)",
                    ));
                }
            }
            if url.to_ascii_lowercase().starts_with("ldap://") && !l.starttls {
                return Err(cx.err(
                    "source.auth",
                    "Kerberos needs TLS: use an ldaps:// URL or starttls = true (the \
                     GSSAPI bind has no protection layer here, so the directory's answers \
                     would cross the network in clear)",
                ));
            }
            let keytab = match (l.keytab.as_deref(), l.keytab_credential.as_deref()) {
                (Some(_), Some(_)) => {
                    return Err(cx.err(
                        "source.keytab_credential",
                        "give source.keytab or source.keytab_credential, not both",
                    ));
                }
                // systemd's credentials directory is the service's own: no mode check.
                (None, Some(name)) => cx.credential("source.keytab_credential", name)?,
                (Some(k), None) if !k.trim().is_empty() => {
                    let path = cx.path(k);
                    open_secret_file(&path, cx.allow_insecure_secret_files)
                        .map_err(|p| cx.err("source.keytab", p))?;
                    path
                }
                _ => {
                    return Err(cx.err(
                        "source.keytab",
                        "give the keytab file holding source.principal's keys (or \
                         source.keytab_credential, a LoadCredential= name)",
                    ));
                }
            };
            let principal = match l.principal.as_deref().map(str::trim) {
                Some(p) if valid_principal(p) => p.to_string(),
                Some(p) => {
                    return Err(cx.err(
                        "source.principal",
                        format!("{p:?} is not a principal with its realm, such as svc-tansync@NORTHGATE.EXAMPLE"),
                    ));
                }
                None => {
                    return Err(cx.err(
                        "source.principal",
                        "give the service account's principal with its realm, such as \
                         svc-tansync@NORTHGATE.EXAMPLE",
                    ));
                }
            };
            let sasl_host = match l.sasl_host.as_deref().map(str::trim) {
                Some(h) if valid_host_name(h) => h.to_string(),
                Some(h) => {
                    return Err(cx.err(
                        "source.sasl_host",
                        format!("{h:?} is not a host name (the DC's name in its ldap/ service principal)"),
                    ));
                }
                None => match url::Url::parse(url)
                    .ok()
                    .and_then(|u| u.host().map(|h| h.to_owned()))
                {
                    Some(url::Host::Domain(d)) if valid_host_name(&d) => d,
                    _ => {
                        return Err(cx.err(
                            "source.sasl_host",
                            "source.url names the DC by an IP address: give the DC's host \
                             name for its ldap/HOST service principal, such as dc1.northgate.example",
                        ));
                    }
                },
            };
            Ok(LdapAuth::Kerberos(KerberosAuth {
                principal,
                keytab,
                sasl_host,
            }))
        }
        other => Err(cx.err(
            "source.auth",
            format!("{other:?} is not simple or kerberos"),
        )),
    }
}

/// `name@REALM`: a non-empty name, one `@`, a non-empty realm, no spaces.
fn valid_principal(p: &str) -> bool {
    matches!(p.split_once('@'), Some((n, r)) if !n.is_empty() && !r.is_empty() && !r.contains('@'))
        && !p.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// A DNS host name (not an IP address: a service principal names a host).
fn valid_host_name(h: &str) -> bool {
    h.parse::<std::net::IpAddr>().is_err()
        && !h.is_empty()
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
        })
        && h.chars().any(|c| c.is_ascii_alphabetic())
}

fn anchor_kind(attr: &str) -> AnchorKind {
    if attr.eq_ignore_ascii_case("objectGUID") {
        AnchorKind::ObjectGuid
    } else {
        AnchorKind::Text(attr.to_string())
    }
}

#[cfg(test)]
mod tests;
