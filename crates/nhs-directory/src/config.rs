//! Configuration of the reference directory, in two phases: the raw TOML as written
//! (`deny_unknown_fields`), then a validated [`Config`] with token files read (and kept
//! only as SHA-256 digests), the TLS key loaded, ODS codes parsed and the organisation
//! registry resolved with its caps. Errors name the file, the key and what is wrong.
//!
//! Never put a token's value in an error or a log line. Relative paths are relative to
//! the configuration file's folder.

use nhs_model::ids::OdsCode;
use nhs_model::snapshot::Snapshot;
use nhs_model::{OrgKind, Organisation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Default account cap: "A maximum of 50 accounts can be provided to support secure
/// email" (seeds/000_25ad0de7e95731c4.txt, Access Policy v4, "Who can use NHSmail?").
pub const DEFAULT_CAP: u32 = 50;
/// Hosted organisations: "A small (1 - 20) number of email accounts can be hosted by a
/// commissioning body" (seeds/000_25ad0de7e95731c4.txt, "Who can use NHSmail?").
pub const HOSTED_MAX_CAP: u32 = 20;
/// Care providers: "The default account allowance is up to 10 named user accounts and 1
/// shared mailbox per site" (seeds/003_4c4cf53838ee439f.txt, "How many user accounts am
/// I allowed?"); one site is assumed unless the registry gives a cap.
pub const CARE_PROVIDER_CAP: u32 = 10;
/// Leavers are kept 30 days for a joiner, then deleted: "their NHSmail account can be
/// marked as a 'joiner' within 30 days to avoid the account being deleted"
/// (seeds/000_25ad0de7e95731c4.txt, "No longer eligible for NHSmail?"); "After 30 days,
/// accounts marked as 'leavers' will be permanently deleted" (seeds/003, "What do I do if
/// I am moving to another social care provider").
pub const DEFAULT_LEAVER_DAYS: u32 = 30;
/// "Accounts that move to deleted state will then have 30 days to be restored"
/// (seeds/003_4c4cf53838ee439f.txt, account lifecycle list).
pub const DEFAULT_DELETED_DAYS: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("directory config {file}: {source}")]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("directory config {file}: {source}")]
    Parse {
        file: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("directory config {file}: {key}: {problem}")]
    Invalid {
        file: PathBuf,
        key: String,
        problem: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    database: String,
    #[serde(default)]
    mail_domain: Option<String>,
    #[serde(default)]
    default_organisation: Option<String>,
    #[serde(default)]
    organisations_file: Option<PathBuf>,
    #[serde(default)]
    tls: Option<RawTls>,
    #[serde(default, rename = "client")]
    clients: Vec<RawClient>,
    #[serde(default, rename = "organisation")]
    organisations: Vec<Organisation>,
    #[serde(default)]
    lifecycle: RawLifecycle,
    #[serde(default)]
    paging: RawPaging,
    #[serde(default)]
    rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    faults: Option<RawFaults>,
    #[serde(default)]
    admin: Option<RawAdmin>,
    #[serde(default)]
    seed: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOrganisations {
    #[serde(default, rename = "organisation")]
    organisations: Vec<Organisation>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    cert_file: PathBuf,
    key_file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    id: String,
    token_file: PathBuf,
    #[serde(default)]
    organisations: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    #[serde(default)]
    pending_seconds: Option<u64>,
    #[serde(default)]
    leaver_days: Option<u32>,
    #[serde(default)]
    deleted_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaging {
    #[serde(default)]
    default_count: Option<usize>,
    #[serde(default)]
    max_count: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimit {
    requests_per_second: f64,
    #[serde(default)]
    burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFaults {
    #[serde(default)]
    error_rate: f64,
    #[serde(default)]
    latency_ms: u64,
    #[serde(default)]
    drop_rate: f64,
    #[serde(default)]
    lost_response_rate: f64,
    #[serde(default)]
    stall_rate: f64,
    #[serde(default)]
    stall_ms: u64,
    #[serde(default)]
    seed: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    token_file: PathBuf,
    #[serde(default)]
    request_log_max_entries: Option<u64>,
}

/// Entries the request log holds by default before it stops (see [`Config::request_log`]).
pub const DEFAULT_REQUEST_LOG_ENTRIES: u64 = 100_000;

/// The snapshot the directory starts from (`seed = "SNAPSHOT.json"`): its organisations
/// are part of the registry on every start, its accounts are stored when the database
/// is new (see `seed`).
#[derive(Clone, Debug)]
pub struct Seed {
    pub path: PathBuf,
    pub snapshot: Snapshot,
}

/// Where the accounts live.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    /// `database = ":memory:"`: gone when the process ends (tests).
    Memory,
    File(PathBuf),
}

/// A client of the directory (an agent), with the organisations it may act for.
#[derive(Clone, Debug)]
pub struct Client {
    pub id: String,
    /// SHA-256 of the bearer token; the token itself is not kept.
    pub token_digest: [u8; 32],
    /// The server-side copy of the sharing agreements: the ODS codes this client may
    /// touch.
    pub organisations: BTreeSet<OdsCode>,
}

/// An organisation of the registry, with its resolved cap.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrgEntry {
    pub ods_code: OdsCode,
    pub name: String,
    pub kind: OrgKind,
    pub open: bool,
    pub cap: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lifecycle {
    pub pending: Duration,
    pub leaver: Duration,
    pub deleted: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Paging {
    pub default_count: usize,
    pub max_count: usize,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RateLimit {
    pub requests_per_second: f64,
    pub burst: NonZeroU32,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Faults {
    pub error_rate: f64,
    pub latency: Duration,
    pub drop_rate: f64,
    /// Share of requests carried out and then answered by a dropped connection: the
    /// client cannot tell whether its write landed.
    pub lost_response_rate: f64,
    /// Share of requests carried out and then answered only after `stall` (longer than
    /// a client's timeout: it gives up without knowing the outcome).
    pub stall_rate: f64,
    pub stall: Duration,
    pub seed: u64,
}

impl Faults {
    pub fn any(&self) -> bool {
        self.error_rate > 0.0
            || self.drop_rate > 0.0
            || self.lost_response_rate > 0.0
            || self.stall_rate > 0.0
            || !self.latency.is_zero()
    }
}

/// The validated configuration.
#[derive(Clone)]
pub struct Config {
    pub file: PathBuf,
    pub listen: SocketAddr,
    pub database: Database,
    pub mail_domain: String,
    pub default_organisation: Option<OdsCode>,
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub clients: Vec<Client>,
    pub registry: BTreeMap<OdsCode, OrgEntry>,
    pub lifecycle: Lifecycle,
    pub paging: Paging,
    pub rate_limit: Option<RateLimit>,
    pub faults: Faults,
    /// SHA-256 of the admin token; `None`: no admin endpoints.
    pub admin_token_digest: Option<[u8; 32]>,
    /// The request log (`GET /_admin/requests`): kept only with the admin endpoints that
    /// read it, and only up to this many entries (`[admin] request_log_max_entries`,
    /// default [`DEFAULT_REQUEST_LOG_ENTRIES`]; 0 turns it off). `None`: no log.
    pub request_log: Option<u64>,
    pub seed: Option<Seed>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("file", &self.file)
            .field("listen", &self.listen)
            .field("database", &self.database)
            .field("tls", &self.tls.is_some())
            .field("clients", &self.clients.len())
            .field("registry", &self.registry.len())
            .finish_non_exhaustive()
    }
}

/// SHA-256 of a secret, for comparing presented tokens without keeping them.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

impl Config {
    /// Read and validate the configuration file.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_path_buf(),
            source,
        })?;
        Self::parse(file, &text)
    }

    /// Validate `text` as the contents of `file` (which locates relative paths).
    pub fn parse(file: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            file: file.to_path_buf(),
            source: Box::new(e),
        })?;
        Builder {
            file,
            dir: file.parent().unwrap_or(Path::new(".")),
        }
        .build(raw)
    }

    /// The organisation of the registry, if any.
    pub fn organisation(&self, ods: &OdsCode) -> Option<&OrgEntry> {
        self.registry.get(ods)
    }
}

struct Builder<'a> {
    file: &'a Path,
    dir: &'a Path,
}

impl Builder<'_> {
    fn err(&self, key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_path_buf(),
            key: key.into(),
            problem: problem.into(),
        }
    }

    fn path(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.dir.join(p)
        }
    }

    /// A secret from a file: trimmed of surrounding whitespace, never empty.
    fn secret(&self, key: &str, p: &Path) -> Result<String, ConfigError> {
        let path = self.path(p);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| self.err(key, format!("cannot read {}: {e}", path.display())))?;
        let token = text.trim();
        if token.is_empty() {
            return Err(self.err(key, format!("{} is empty", path.display())));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.err(
                key,
                format!(
                    "{} must hold one token (no spaces or line breaks inside)",
                    path.display()
                ),
            ));
        }
        Ok(token.to_string())
    }

    fn ods(&self, key: &str, s: &str) -> Result<OdsCode, ConfigError> {
        OdsCode::parse(s).map_err(|e| self.err(key, e.to_string()))
    }

    fn build(&self, raw: RawConfig) -> Result<Config, ConfigError> {
        let listen: SocketAddr = raw.listen.parse().map_err(|e| {
            self.err(
                "listen",
                format!("{:?} is not an address:port ({e})", raw.listen),
            )
        })?;
        let database = match raw.database.trim() {
            "" => return Err(self.err("database", "is empty")),
            ":memory:" => Database::Memory,
            p => Database::File(self.path(Path::new(p))),
        };
        let mail_domain = raw
            .mail_domain
            .clone()
            .unwrap_or_else(|| "nhs.net".to_string())
            .trim()
            .to_ascii_lowercase();
        let domain_ok = !mail_domain.is_empty()
            && mail_domain.contains('.')
            && mail_domain
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        if !domain_ok {
            return Err(self.err("mail_domain", format!("{mail_domain:?} is not a domain")));
        }

        let seed = match &raw.seed {
            None => None,
            Some(p) => {
                let path = self.path(p);
                let text = std::fs::read_to_string(&path).map_err(|e| {
                    self.err("seed", format!("cannot read {}: {e}", path.display()))
                })?;
                let snapshot = Snapshot::parse(&text)
                    .map_err(|e| self.err("seed", format!("{}: {e}", path.display())))?;
                Some(Seed { path, snapshot })
            }
        };
        let registry = self.registry(&raw, seed.as_ref())?;
        let default_organisation = match &raw.default_organisation {
            None => None,
            Some(s) => {
                let ods = self.ods("default_organisation", s)?;
                if !registry.contains_key(&ods) {
                    return Err(self.err(
                        "default_organisation",
                        format!("{ods} is not in the organisation registry"),
                    ));
                }
                Some(ods)
            }
        };

        let tls = match &raw.tls {
            None => None,
            Some(t) => Some(Arc::new(self.tls(t)?)),
        };

        let mut clients = Vec::new();
        let mut seen_ids = BTreeSet::new();
        let mut seen_tokens = BTreeSet::new();
        for (i, c) in raw.clients.iter().enumerate() {
            let key = format!("client[{i}]");
            let id = c.id.trim();
            let id_ok = !id.is_empty()
                && id.len() <= 64
                && id
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '-' | '_' | '.'));
            if !id_ok {
                return Err(self.err(
                    format!("{key}.id"),
                    "must be 1-64 of letters, digits, '-', '_', '.'",
                ));
            }
            if !seen_ids.insert(id.to_string()) {
                return Err(self.err(format!("{key}.id"), format!("{id:?} appears twice")));
            }
            let token = self.secret(&format!("{key}.token_file"), &c.token_file)?;
            let token_digest = digest(&token);
            if !seen_tokens.insert(token_digest) {
                return Err(self.err(
                    format!("{key}.token_file"),
                    "holds the same token as another client",
                ));
            }
            let mut organisations = BTreeSet::new();
            for (j, o) in c.organisations.iter().enumerate() {
                organisations.insert(self.ods(&format!("{key}.organisations[{j}]"), o)?);
            }
            clients.push(Client {
                id: id.to_string(),
                token_digest,
                organisations,
            });
        }
        if clients.is_empty() {
            return Err(self.err("client", "at least one [[client]] is needed"));
        }

        let lifecycle = Lifecycle {
            pending: Duration::from_secs(raw.lifecycle.pending_seconds.unwrap_or(0)),
            leaver: days(raw.lifecycle.leaver_days.unwrap_or(DEFAULT_LEAVER_DAYS)),
            deleted: days(raw.lifecycle.deleted_days.unwrap_or(DEFAULT_DELETED_DAYS)),
        };

        let paging = Paging {
            default_count: raw.paging.default_count.unwrap_or(100),
            max_count: raw.paging.max_count.unwrap_or(1000),
        };
        if paging.max_count == 0 {
            return Err(self.err("paging.max_count", "must be at least 1"));
        }
        if paging.default_count > paging.max_count {
            return Err(self.err(
                "paging.default_count",
                format!("must not exceed paging.max_count ({})", paging.max_count),
            ));
        }

        let rate_limit = match raw.rate_limit {
            None => None,
            Some(r) => {
                if !(r.requests_per_second.is_finite() && r.requests_per_second > 0.0) {
                    return Err(
                        self.err("rate_limit.requests_per_second", "must be a number above 0")
                    );
                }
                let burst = NonZeroU32::new(r.burst.unwrap_or(1))
                    .ok_or_else(|| self.err("rate_limit.burst", "must be at least 1"))?;
                Some(RateLimit {
                    requests_per_second: r.requests_per_second,
                    burst,
                })
            }
        };

        let faults = match raw.faults {
            None => Faults {
                error_rate: 0.0,
                latency: Duration::ZERO,
                drop_rate: 0.0,
                lost_response_rate: 0.0,
                stall_rate: 0.0,
                stall: Duration::ZERO,
                seed: 1,
            },
            Some(f) => {
                for (k, v) in [
                    ("faults.error_rate", f.error_rate),
                    ("faults.drop_rate", f.drop_rate),
                    ("faults.lost_response_rate", f.lost_response_rate),
                    ("faults.stall_rate", f.stall_rate),
                ] {
                    if !(0.0..=1.0).contains(&v) {
                        return Err(self.err(k, "must be between 0 and 1"));
                    }
                }
                if f.stall_rate > 0.0 && f.stall_ms == 0 {
                    return Err(self.err(
                        "faults.stall_ms",
                        "must be set (milliseconds) with faults.stall_rate",
                    ));
                }
                Faults {
                    error_rate: f.error_rate,
                    latency: Duration::from_millis(f.latency_ms),
                    drop_rate: f.drop_rate,
                    lost_response_rate: f.lost_response_rate,
                    stall_rate: f.stall_rate,
                    stall: Duration::from_millis(f.stall_ms),
                    seed: f.seed.unwrap_or(1),
                }
            }
        };

        let request_log = raw
            .admin
            .as_ref()
            .map(|a| {
                a.request_log_max_entries
                    .unwrap_or(DEFAULT_REQUEST_LOG_ENTRIES)
            })
            .filter(|n| *n > 0);
        let admin_token_digest = match &raw.admin {
            None => None,
            Some(a) => {
                let d = digest(&self.secret("admin.token_file", &a.token_file)?);
                if seen_tokens.contains(&d) {
                    return Err(self.err(
                        "admin.token_file",
                        "holds the same token as a client; use a separate admin token",
                    ));
                }
                Some(d)
            }
        };

        Ok(Config {
            file: self.file.to_path_buf(),
            listen,
            database,
            mail_domain,
            default_organisation,
            tls,
            clients,
            registry,
            lifecycle,
            paging,
            rate_limit,
            faults,
            admin_token_digest,
            request_log,
            seed,
        })
    }

    /// The registry: the configuration's organisations, then the seed snapshot's. An
    /// organisation both list must be the same in both (its cap resolved first).
    fn registry(
        &self,
        raw: &RawConfig,
        seed: Option<&Seed>,
    ) -> Result<BTreeMap<OdsCode, OrgEntry>, ConfigError> {
        let mut all: Vec<(String, Organisation)> = raw
            .organisations
            .iter()
            .enumerate()
            .map(|(i, o)| (format!("organisation[{i}]"), o.clone()))
            .collect();
        if let Some(p) = &raw.organisations_file {
            let path = self.path(p);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                self.err(
                    "organisations_file",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            let extra: RawOrganisations = toml::from_str(&text)
                .map_err(|e| self.err("organisations_file", format!("{}: {e}", path.display())))?;
            all.extend(extra.organisations.into_iter().enumerate().map(|(i, o)| {
                (
                    format!("organisations_file {}: organisation[{i}]", path.display()),
                    o,
                )
            }));
        }
        let mut registry = BTreeMap::new();
        for (key, o) in all {
            let entry = self.org_entry(&key, &o)?;
            if registry.insert(o.ods_code.clone(), entry).is_some() {
                return Err(self.err(
                    format!("{key}.ods_code"),
                    format!("{} appears twice in the registry", o.ods_code),
                ));
            }
        }
        if let Some(seed) = seed {
            for (i, o) in seed.snapshot.organisations.iter().enumerate() {
                let key = format!("seed {}: organisations[{i}]", seed.path.display());
                let entry = self.org_entry(&key, o)?;
                match registry.get(&o.ods_code) {
                    None => {
                        registry.insert(o.ods_code.clone(), entry);
                    }
                    Some(configured) if configured == &entry => {}
                    Some(configured) => {
                        return Err(self.err(
                            key,
                            format!(
                                "{} is not the configuration's [[organisation]] {}: {}",
                                o.ods_code,
                                o.ods_code,
                                differences(configured, &entry)
                            ),
                        ));
                    }
                }
            }
        }
        Ok(registry)
    }

    /// An organisation with its cap resolved (Access Policy defaults by kind).
    fn org_entry(&self, key: &str, o: &Organisation) -> Result<OrgEntry, ConfigError> {
        let cap = match (o.kind, o.cap) {
            (OrgKind::Hosted, Some(c)) if c == 0 || c > HOSTED_MAX_CAP => {
                return Err(self.err(
                    format!("{key}.cap"),
                    format!(
                        "a hosted organisation holds 1 to {HOSTED_MAX_CAP} accounts (Access Policy v4)"
                    ),
                ));
            }
            (_, Some(c)) => c,
            (OrgKind::Hosted, None) => HOSTED_MAX_CAP,
            (OrgKind::CareProvider, None) => CARE_PROVIDER_CAP,
            (_, None) => DEFAULT_CAP,
        };
        Ok(OrgEntry {
            ods_code: o.ods_code.clone(),
            name: o.name.clone(),
            kind: o.kind,
            open: o.open,
            cap,
        })
    }

    fn tls(&self, t: &RawTls) -> Result<rustls::ServerConfig, ConfigError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let cert_path = self.path(&t.cert_file);
        let key_path = self.path(&t.key_file);
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&cert_path)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| self.err("tls.cert_file", format!("{}: {e}", cert_path.display())))?;
        if certs.is_empty() {
            return Err(self.err(
                "tls.cert_file",
                format!("{} holds no PEM certificate", cert_path.display()),
            ));
        }
        let key = PrivateKeyDer::from_pem_file(&key_path)
            .map_err(|e| self.err("tls.key_file", format!("{}: {e}", key_path.display())))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| self.err("tls", e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| self.err("tls", format!("certificate and key do not fit: {e}")))?;
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(cfg)
    }
}

/// How two entries for one organisation differ.
fn differences(configured: &OrgEntry, seeded: &OrgEntry) -> String {
    let mut out = Vec::new();
    if configured.name != seeded.name {
        out.push(format!(
            "name {:?} in the configuration, {:?} in the snapshot",
            configured.name, seeded.name
        ));
    }
    if configured.kind != seeded.kind {
        out.push(format!(
            "kind {:?} in the configuration, {:?} in the snapshot",
            configured.kind, seeded.kind
        ));
    }
    if configured.open != seeded.open {
        out.push(format!(
            "open {} in the configuration, {} in the snapshot",
            configured.open, seeded.open
        ));
    }
    if configured.cap != seeded.cap {
        out.push(format!(
            "cap {} in the configuration, {} in the snapshot",
            configured.cap, seeded.cap
        ));
    }
    out.join("; ")
}

fn days(n: u32) -> Duration {
    Duration::from_secs(u64::from(n) * 86_400)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn minimal_config_gets_policy_defaults() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.token", "secret-a\n");
        let file = write(
            dir.path(),
            "d.toml",
            r#"
listen = "127.0.0.1:0"
database = ":memory:"
[[client]]
id = "agent-a"
token_file = "a.token"
organisations = ["rxa"]
[[organisation]]
ods_code = "RXA"
kind = "trust"
open = true
[[organisation]]
ods_code = "H01"
kind = "hosted"
open = true
[[organisation]]
ods_code = "CP1"
kind = "care_provider"
open = true
"#,
        );
        let cfg = Config::load(&file).unwrap();
        let rxa = OdsCode::parse("RXA").unwrap();
        assert_eq!(cfg.registry[&rxa].cap, 50);
        assert_eq!(cfg.registry[&OdsCode::parse("H01").unwrap()].cap, 20);
        assert_eq!(cfg.registry[&OdsCode::parse("CP1").unwrap()].cap, 10);
        assert!(cfg.clients[0].organisations.contains(&rxa));
        assert_eq!(cfg.clients[0].token_digest, digest("secret-a"));
        assert_eq!(cfg.lifecycle.leaver, Duration::from_secs(30 * 86_400));
        assert_eq!(cfg.database, Database::Memory);
        assert!(!cfg.faults.any());
        assert!(cfg.rate_limit.is_none() && cfg.admin_token_digest.is_none());
        // No admin endpoints, no request log.
        assert_eq!(cfg.request_log, None);
    }

    #[test]
    fn the_request_log_comes_with_the_admin_endpoints_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a.token", "secret-a");
        write(dir.path(), "admin.token", "secret-admin");
        let load = |admin: &str| {
            let file = write(
                dir.path(),
                "d.toml",
                &format!(
                    "listen = \"127.0.0.1:0\"\ndatabase = \":memory:\"\n{admin}\n[[client]]\nid = \"a\"\ntoken_file = \"a.token\"\n"
                ),
            );
            Config::load(&file).unwrap().request_log
        };
        assert_eq!(load(""), None);
        assert_eq!(
            load("[admin]\ntoken_file = \"admin.token\""),
            Some(DEFAULT_REQUEST_LOG_ENTRIES)
        );
        assert_eq!(
            load("[admin]\ntoken_file = \"admin.token\"\nrequest_log_max_entries = 5"),
            Some(5)
        );
        assert_eq!(
            load("[admin]\ntoken_file = \"admin.token\"\nrequest_log_max_entries = 0"),
            None
        );
    }

    #[test]
    fn errors_name_file_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "d.toml",
            "listen = \"127.0.0.1:0\"\ndatabase = \":memory:\"\n[[client]]\nid = \"a\"\ntoken_file = \"missing.token\"\n",
        );
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(
            e.contains("d.toml") && e.contains("client[0].token_file"),
            "{e}"
        );

        let file = write(
            dir.path(),
            "u.toml",
            "listen = \"127.0.0.1:0\"\ndatabase = \":memory:\"\nbogus = 1\n",
        );
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.contains("u.toml") && e.contains("bogus"), "{e}");

        write(dir.path(), "t", "tok");
        let file = write(
            dir.path(),
            "h.toml",
            "listen = \"127.0.0.1:0\"\ndatabase = \":memory:\"\n[[client]]\nid = \"a\"\ntoken_file = \"t\"\n[[organisation]]\nods_code = \"H01\"\nkind = \"hosted\"\nopen = true\ncap = 25\n",
        );
        let e = Config::load(&file).unwrap_err().to_string();
        assert!(e.contains("organisation[0].cap"), "{e}");
    }
}
