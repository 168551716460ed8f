//! The NHS Directory over SCIM 2.0: a read-only [`ScimTarget`] for planning and a
//! [`ScimWriter`] for the push stage, both on one HTTP core (bearer token from a file or
//! the environment, verified TLS).
//!
//! Never does: write from a `ScimTarget` (it has no write methods — a dry run is
//! structural); send the token anywhere but the configured directory; log the token.

use super::{Account, Status, Target, TargetError, TargetState, Writer};
use crate::ids::{ExternalId, OdsCode, TargetId};
use crate::model::{OrgKind, Organisation};
use crate::scim::{self, ListResponse, OrganisationResource, PatchRequest, ScimError, User};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;

/// Where and how to reach the directory (validated by the config stage).
#[derive(Clone, Debug)]
pub struct ScimSettings {
    /// Base URL, without a trailing slash (e.g. `https://directory.example/scim/v2`).
    pub url: String,
    pub token: SecretString,
    pub ca_file: Option<PathBuf>,
    pub page_size: usize,
    pub timeout: Duration,
    /// Organisations to read (those the agreements cover).
    pub organisations: Vec<OdsCode>,
    /// A registry file to use when the server has no `/Organisations` resource.
    pub organisations_file: Option<PathBuf>,
}

/// A failed call, classified for the retry logic.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The server answered with an error status.
    #[error("{method} {path}: HTTP {status}{}", scim.as_ref().and_then(|e| e.detail.as_deref()).map(|d| format!(": {d}")).unwrap_or_default())]
    Status {
        method: &'static str,
        path: String,
        status: u16,
        retry_after: Option<Duration>,
        scim: Option<ScimError>,
    },
    /// The request may or may not have reached the server (timeout, reset, refused).
    #[error("{method} {path}: {}", crate::error_text::chain(source.as_ref()))]
    Transport {
        method: &'static str,
        path: String,
        /// The connection was never made, so the request cannot have been applied.
        connect: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Not sent, or its retry not waited for: a shutdown was requested.
    #[error("{method} {path}: stopped (shutdown requested)")]
    Cancelled { method: &'static str, path: String },
    #[error("{method} {path}: unexpected response: {problem}")]
    Decode {
        method: &'static str,
        path: String,
        problem: String,
    },
}

impl CallError {
    pub fn status(&self) -> Option<u16> {
        match self {
            CallError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Worth another try: throttled, a server-side failure, or a transport problem.
    pub fn retryable(&self) -> bool {
        match self {
            CallError::Status { status, .. } => *status == 429 || *status >= 500,
            CallError::Transport { .. } => true,
            CallError::Decode { .. } | CallError::Cancelled { .. } => false,
        }
    }

    /// The request may have been applied although no success was seen.
    pub fn ambiguous(&self) -> bool {
        match self {
            CallError::Transport { connect, .. } => !connect,
            CallError::Status { status, .. } => *status >= 500,
            CallError::Decode { .. } => true,
            CallError::Cancelled { .. } => false,
        }
    }

    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// The shared HTTP core. Private: only the reader and writer below expose calls.
#[derive(Clone)]
struct Http {
    base: String,
    token: SecretString,
    client: reqwest::Client,
}

impl Http {
    fn new(s: &ScimSettings) -> Result<Self, String> {
        // Always hand reqwest our rustls config: it is built without a default crypto
        // provider, so even a plain-http client (loopback tests) needs one.
        let b = reqwest::Client::builder()
            .timeout(s.timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("tansync/", env!("CARGO_PKG_VERSION")))
            .tls_backend_preconfigured(crate::tls::client_config(s.ca_file.as_deref())?);
        Ok(Self {
            base: s.url.trim_end_matches('/').to_string(),
            token: s.token.clone(),
            client: b.build().map_err(|e| e.to_string())?,
        })
    }

    /// A call whose answer must carry a body.
    async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
        if_match: Option<&str>,
    ) -> Result<(T, Option<String>), CallError> {
        match self.call_maybe_empty(method, path, body, if_match).await? {
            (Some(v), etag) => Ok((v, etag)),
            (None, _) => Err(CallError::Decode {
                method,
                path: path.to_string(),
                problem: "empty response body".into(),
            }),
        }
    }

    /// A call that may be answered without a body (`None`): a server may answer a PATCH
    /// with 204 No Content instead of the resource (RFC 7644 §3.5.2).
    async fn call_maybe_empty<T: DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        body: Option<&serde_json::Value>,
        if_match: Option<&str>,
    ) -> Result<(Option<T>, Option<String>), CallError> {
        let url = format!("{}{path}", self.base);
        let m = match method {
            "GET" => reqwest::Method::GET,
            "POST" => reqwest::Method::POST,
            "PATCH" => reqwest::Method::PATCH,
            "PUT" => reqwest::Method::PUT,
            _ => reqwest::Method::DELETE,
        };
        let mut req = self
            .client
            .request(m, &url)
            .bearer_auth(self.token.expose_secret())
            .header(reqwest::header::ACCEPT, scim::MEDIA_TYPE);
        if let Some(b) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, scim::MEDIA_TYPE)
                .body(b.to_string());
        }
        if let Some(e) = if_match {
            req = req.header(reqwest::header::IF_MATCH, e);
        }
        let path_s = path.to_string();
        let transport = |source: reqwest::Error| CallError::Transport {
            method,
            path: path_s.clone(),
            connect: source.is_connect(),
            source: Box::new(source),
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let etag = resp
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64);
        let bytes = resp.bytes().await.map_err(transport)?;
        if !(200..300).contains(&status) {
            return Err(CallError::Status {
                method,
                path: path_s,
                status,
                retry_after,
                scim: serde_json::from_slice(&bytes).ok(),
            });
        }
        if status == 204 || bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok((None, etag));
        }
        let v = serde_json::from_slice(&bytes).map_err(|e| CallError::Decode {
            method,
            path: path_s,
            problem: e.to_string(),
        })?;
        Ok((Some(v), etag))
    }
}

/// Exponential backoff with full jitter, and at least the server's `Retry-After` when it
/// gave one. Shared by reads here and by the push executor's retries.
pub fn backoff(
    base: Duration,
    max: Duration,
    attempt: u32,
    retry_after: Option<Duration>,
) -> Duration {
    let exp = base.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
    let jittered = exp.min(max).mul_f64(fastrand::f64());
    match retry_after {
        Some(ra) => ra.max(jittered),
        None => jittered,
    }
}

/// Tries of one read before the run gives up on it.
const READ_ATTEMPTS: u32 = 8;
const READ_BACKOFF_BASE: Duration = Duration::from_millis(200);
const READ_BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A server asking for a longer pause than this is treated as down, not busy.
const READ_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

impl Http {
    /// A GET, retried on throttling, server errors and transport failures: reads are
    /// idempotent, and one lost page must not cost the whole plan. A read that still
    /// fails is an error (an incomplete state is never planned from).
    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        cancel: &CancellationToken,
    ) -> Result<(T, Option<String>), CallError> {
        let mut attempt = 0;
        let cancelled = || CallError::Cancelled {
            method: "GET",
            path: path.to_string(),
        };
        loop {
            let call = tokio::select! {
                r = self.call("GET", path, None, None) => r,
                () = cancel.cancelled() => return Err(cancelled()),
            };
            match call {
                Err(e)
                    if e.retryable()
                        && attempt + 1 < READ_ATTEMPTS
                        && e.retry_after().is_none_or(|ra| ra <= READ_MAX_RETRY_AFTER) =>
                {
                    let wait = backoff(
                        READ_BACKOFF_BASE,
                        READ_BACKOFF_MAX,
                        attempt,
                        e.retry_after(),
                    );
                    tracing::debug!(error = %e, ?wait, "directory read failed; retrying");
                    tokio::select! {
                        () = tokio::time::sleep(wait) => {}
                        () = cancel.cancelled() => return Err(cancelled()),
                    }
                    attempt += 1;
                }
                r => return r,
            }
        }
    }
}

fn filter_query(attr: &str, value: &str) -> String {
    let f = format!(
        "{attr} eq \"{}\"",
        value.replace('\\', "\\\\").replace('"', "\\\"")
    );
    url_escape(&f)
}

/// Percent-encode a query value (RFC 3986 unreserved characters kept).
fn url_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Read calls only.
#[derive(Clone)]
struct Reader(Http);

impl Reader {
    async fn users_where(
        &self,
        attr: &str,
        value: &str,
        page: usize,
        cancel: &CancellationToken,
    ) -> Result<Vec<User>, CallError> {
        let base = format!("/Users?filter={}", filter_query(attr, value));
        self.list_all(&base, page, |u: &User| u.id.clone(), cancel)
            .await
    }

    /// Every page of a SCIM list (RFC 7644 §3.4.2.4), whole or an error: the read is a
    /// claim about who the directory holds, and a removal or a duplicate provision can
    /// follow from it, so a list that does not add up is not read as a state. The first
    /// page sets the server's page size (it may serve fewer than asked); after it, every
    /// page holds exactly that many, or what remains of `totalResults`; `totalResults`
    /// and the echoed `startIndex` stay as asked; no resource appears twice; the pages
    /// add up to `totalResults` exactly.
    async fn list_all<T: DeserializeOwned>(
        &self,
        base: &str,
        page: usize,
        key: impl Fn(&T) -> Option<String>,
        cancel: &CancellationToken,
    ) -> Result<Vec<T>, CallError> {
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut out = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut total = None;
        let mut page_size = None;
        loop {
            let start = out.len() + 1;
            let path = format!("{base}{sep}startIndex={start}&count={page}");
            let (list, _): (ListResponse<T>, _) = self.0.get(&path, cancel).await?;
            let bad = |problem: String| CallError::Decode {
                method: "GET",
                path: path.clone(),
                problem: format!("incomplete list: {problem}"),
            };
            let n = list.resources.len();
            let expected = *total.get_or_insert(list.total_results);
            if list.total_results != expected {
                return Err(bad(format!(
                    "totalResults changed from {expected} to {} between pages (the \
                     directory changed during the read)",
                    list.total_results
                )));
            }
            if list.start_index.is_some_and(|s| s != start) {
                return Err(bad(format!(
                    "asked for startIndex {start}, the page says {}",
                    list.start_index.unwrap_or_default()
                )));
            }
            let remaining = expected.saturating_sub(out.len());
            if n > remaining {
                return Err(bad(format!(
                    "the page holds {n} resources but only {remaining} of totalResults \
                     {expected} remain"
                )));
            }
            let full = *page_size.get_or_insert(n);
            if n < remaining.min(full) || (n == 0 && remaining > 0) {
                return Err(bad(format!(
                    "a short page ({n} resources) at startIndex {start}, with {remaining} of \
                     totalResults {expected} still to read"
                )));
            }
            for r in &list.resources {
                match key(r) {
                    Some(k) if !seen.insert(k.clone()) => {
                        return Err(bad(format!("resource {k} appears twice")));
                    }
                    Some(_) => {}
                    None => return Err(bad("a resource has no id".to_string())),
                }
            }
            out.extend(list.resources);
            if out.len() == expected {
                return Ok(out);
            }
        }
    }

    /// Look-ups for the push stage run to the end: they settle an operation already sent
    /// (a shutdown lets in-flight work finish).
    async fn find_by_external_id(&self, xid: &ExternalId) -> Result<Option<User>, CallError> {
        let mut found = self
            .users_where("externalId", xid.as_str(), 10, &CancellationToken::new())
            .await?;
        Ok(if found.len() == 1 { found.pop() } else { None })
    }

    async fn get(&self, id: &TargetId) -> Result<(User, Option<String>), CallError> {
        self.0
            .get(
                &format!("/Users/{}", url_escape(id.as_str())),
                &CancellationToken::new(),
            )
            .await
    }
}

/// The directory state over SCIM, read-only.
pub struct ScimTarget {
    reader: Reader,
    settings: ScimSettings,
}

impl std::fmt::Debug for ScimTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScimTarget")
            .field("url", &self.settings.url)
            .finish()
    }
}

/// Map a SCIM user to the account model; `None` (with why) when it lacks what the model
/// needs (e.g. no ODS code: not an NHS Directory person).
pub fn account_from_user(u: &User) -> Result<Account, String> {
    let id = u.id.as_deref().ok_or("no id")?;
    let nhs = u.nhs.clone().unwrap_or_default();
    let ods = nhs.ods_code.as_deref().ok_or("no ODS code")?;
    let status = match nhs.status.as_deref() {
        Some(s) => Status::parse(s).ok_or_else(|| format!("unknown status {s:?}"))?,
        None if u.active == Some(false) => Status::Inactive,
        None => Status::Active,
    };
    Ok(Account {
        target_id: TargetId::parse(id).map_err(|e| e.to_string())?,
        external_id: u
            .external_id
            .as_deref()
            .map(ExternalId::parse)
            .transpose()
            .map_err(|e| e.to_string())?,
        ods_code: OdsCode::parse(ods).map_err(|e| e.to_string())?,
        status,
        managed_by: nhs.managed_by,
        email: u
            .email()
            .map(str::to_lowercase)
            .or_else(|| Some(u.user_name.to_lowercase()).filter(|n| n.contains('@'))),
        leaver_since: nhs
            .leaver_since
            .as_deref()
            .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
        attributes: u.fields(),
        etag: u.meta.as_ref().and_then(|m| m.version.clone()),
    })
}

fn org_kind(k: &str) -> OrgKind {
    match k {
        "trust" => OrgKind::Trust,
        "gp" => OrgKind::Gp,
        "care_provider" => OrgKind::CareProvider,
        "third_party" => OrgKind::ThirdParty,
        "hosted" => OrgKind::Hosted,
        _ => OrgKind::Other,
    }
}

impl ScimTarget {
    pub fn new(settings: ScimSettings) -> Result<Self, String> {
        Ok(Self {
            reader: Reader(Http::new(&settings)?),
            settings,
        })
    }

    pub fn url(&self) -> &str {
        &self.settings.url
    }

    fn cancelled(&self) -> TargetError {
        TargetError::Cancelled {
            path: self.settings.url.clone(),
        }
    }

    fn invalid(&self, problem: String) -> TargetError {
        TargetError::Invalid {
            path: self.settings.url.clone(),
            problem,
        }
    }

    async fn organisations(
        &self,
        cancel: &CancellationToken,
    ) -> Result<BTreeMap<OdsCode, Organisation>, TargetError> {
        if let Some(f) = &self.settings.organisations_file {
            let path = f.display().to_string();
            let text = tokio::fs::read_to_string(f)
                .await
                .map_err(|source| TargetError::Io {
                    path: path.clone(),
                    source,
                })?;
            return super::organisations_from_json(&path, &text);
        }
        let list: Vec<OrganisationResource> = self
            .reader
            .list_all(
                "/Organisations",
                self.settings.page_size,
                |o: &OrganisationResource| Some(o.ods_code.to_ascii_uppercase()),
                cancel,
            )
            .await
            .map_err(|e| {
                if matches!(e, CallError::Cancelled { .. }) {
                    return self.cancelled();
                }
                // /Organisations is the NHS Directory's own resource; any other SCIM
                // server lacks it, and the registry must then come from a file.
                let hint = if e.status() == Some(404) {
                    " (this server has no /Organisations resource: set \
                     target.organisations_file to a registry file)"
                } else {
                    ""
                };
                self.invalid(format!("cannot read the organisation registry: {e}{hint}"))
            })?;
        list.into_iter()
            .map(|o| {
                let code = OdsCode::parse(&o.ods_code).map_err(|e| self.invalid(e.to_string()))?;
                Ok((
                    code.clone(),
                    Organisation {
                        ods_code: code,
                        name: o.name,
                        kind: org_kind(&o.kind),
                        open: o.open,
                        cap: o.cap,
                    },
                ))
            })
            .collect()
    }
}

impl Target for ScimTarget {
    fn kind(&self) -> &'static str {
        "scim"
    }

    async fn read_state(&self, cancel: &CancellationToken) -> Result<TargetState, TargetError> {
        let organisations = self.organisations(cancel).await?;
        let mut accounts = Vec::new();
        let mut refused = BTreeMap::new();
        for ods in &self.settings.organisations {
            let read = self
                .reader
                .users_where(
                    &format!("{}:odsCode", scim::NHS_SCHEMA),
                    ods.as_str(),
                    self.settings.page_size,
                    cancel,
                )
                .await;
            let users = match read {
                Ok(users) => users,
                // A definite "not for you" (no server-side agreement): not an incomplete
                // read but a known state. Any other failure still ends the run.
                Err(e) if e.status() == Some(403) => {
                    tracing::warn!(%ods, error = %e, "the directory refused this organisation's accounts");
                    refused.insert(ods.clone(), e.to_string());
                    continue;
                }
                Err(CallError::Cancelled { .. }) => return Err(self.cancelled()),
                Err(e) => {
                    return Err(self.invalid(format!("cannot read the accounts of {ods}: {e}")));
                }
            };
            for u in &users {
                match account_from_user(u) {
                    Ok(a) => accounts.push(a),
                    Err(why) => {
                        return Err(self.invalid(format!(
                            "user {} cannot be read as an NHS Directory account: {why}",
                            u.id.as_deref().unwrap_or("?")
                        )));
                    }
                }
            }
        }
        accounts.sort_by(|a, b| a.target_id.cmp(&b.target_id));
        accounts.dedup_by(|a, b| a.target_id == b.target_id);
        Ok(TargetState {
            organisations,
            accounts,
            refused,
            census: None,
        })
    }

    /// One `externalId eq` lookup per anchor; accounts outside the configured
    /// organisations are left out, as a full read leaves them out.
    async fn accounts_with(
        &self,
        anchors: &std::collections::BTreeSet<ExternalId>,
        cancel: &CancellationToken,
    ) -> Result<Vec<Account>, TargetError> {
        let mut out = Vec::new();
        for x in anchors {
            let users = match self
                .reader
                .users_where("externalId", x.as_str(), self.settings.page_size, cancel)
                .await
            {
                Ok(u) => u,
                Err(CallError::Cancelled { .. }) => return Err(self.cancelled()),
                Err(e) => {
                    return Err(self.invalid(format!("cannot look up the account of {x}: {e}")));
                }
            };
            for u in &users {
                let a = account_from_user(u).map_err(|why| {
                    self.invalid(format!(
                        "user {} cannot be read as an NHS Directory account: {why}",
                        u.id.as_deref().unwrap_or("?")
                    ))
                })?;
                if self.settings.organisations.contains(&a.ods_code) {
                    out.push(a);
                }
            }
        }
        out.sort_by(|a, b| a.target_id.cmp(&b.target_id));
        out.dedup_by(|a, b| a.target_id == b.target_id);
        Ok(out)
    }
}

/// Write access to the directory, for the push stage only.
#[derive(Clone)]
pub struct ScimWriter {
    http: Http,
}

impl ScimWriter {
    pub fn new(settings: &ScimSettings) -> Result<Self, String> {
        Ok(Self {
            http: Http::new(settings)?,
        })
    }
}

impl Writer for ScimWriter {
    async fn create(&self, user: &User) -> Result<Option<String>, CallError> {
        let body = serde_json::to_value(user).map_err(|e| CallError::Decode {
            method: "POST",
            path: "/Users".into(),
            problem: e.to_string(),
        })?;
        let (created, _): (User, _) = self.http.call("POST", "/Users", Some(&body), None).await?;
        Ok(created.id)
    }

    /// A server may answer 204 No Content instead of the patched user; either is success.
    async fn patch(
        &self,
        id: &TargetId,
        if_match: Option<&str>,
        req: &PatchRequest,
    ) -> Result<(), CallError> {
        let path = format!("/Users/{}", url_escape(id.as_str()));
        let body = serde_json::to_value(req).map_err(|e| CallError::Decode {
            method: "PATCH",
            path: path.clone(),
            problem: e.to_string(),
        })?;
        let _: (Option<User>, _) = self
            .http
            .call_maybe_empty("PATCH", &path, Some(&body), if_match)
            .await?;
        Ok(())
    }

    /// Look an account up by anchor (before re-sending a create whose fate is unknown).
    async fn find_by_external_id(&self, xid: &ExternalId) -> Result<Option<User>, CallError> {
        Reader(self.http.clone()).find_by_external_id(xid).await
    }

    async fn get(&self, id: &TargetId) -> Result<(User, Option<String>), CallError> {
        Reader(self.http.clone()).get(id).await
    }
}
