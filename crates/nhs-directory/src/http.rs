//! The directory over HTTP: the SCIM endpoints (`/Users`, `/.search`, discovery,
//! `/Organisations`), the test-only admin endpoints (`/_admin/clock`,
//! `/_admin/requests`), and one gate in front of them all that injects configured
//! faults, authenticates the bearer token, applies the per-client rate limit and
//! writes the request log.
//!
//! The request log is for tests: it is kept only with the admin endpoints that read it
//! (`[admin]`), records only requests that carried a valid client token, clips the
//! client-chosen parts of an entry (method, path, query, error detail) to
//! [`LOG_FIELD_CHARS`],
//! and stops at `[admin] request_log_max_entries`: later requests are counted, not
//! logged (one warning in the server's log; `GET /_admin/requests` says how many in
//! `x-request-log-dropped`), until `DELETE /_admin/requests` empties it. Nobody without
//! a token can make it grow.
//!
//! Handlers only translate between HTTP and [`Directory`] operations. Tokens are
//! compared as SHA-256 digests and are never logged or echoed.

use super::clock::{OffsetClock, rfc3339, to_ms};
use super::config::{Client, Config, Faults, digest};
use super::error::ApiError;
use super::filter::Filter;
use super::net::ConnInfo;
use super::service::{Directory, ListQuery, etag, resource};
use super::store::{self, Account, LogEntry};
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use governor::clock::Clock as _;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use nhs_model::schema;
use nhs_model::scim::{LIST_RESPONSE, ListResponse, MEDIA_TYPE, PatchOperation, ScimError};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The SCIM error detail of a response, for the request log.
#[derive(Clone, Debug)]
struct ErrorDetail(String);

impl axum::response::IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = ScimError::new(self.status, self.scim_type, self.detail.clone());
        let mut resp = scim_json(status, &body);
        let headers = resp.headers_mut();
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == 401 {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"tansync-directory\""),
            );
        }
        resp.extensions_mut().insert(ErrorDetail(self.detail));
        resp
    }
}

fn scim_json<T: serde::Serialize + ?Sized>(status: StatusCode, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(header::CONTENT_TYPE, HeaderValue::from_static(MEDIA_TYPE))],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise a response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Longest path, query or detail a request log entry keeps, in characters.
pub const LOG_FIELD_CHARS: usize = 512;

/// The header of `GET /_admin/requests` counting requests not logged since the log
/// filled up.
pub const DROPPED_HEADER: &str = "x-request-log-dropped";

/// The request log's bound and fill.
struct RequestLog {
    max_entries: u64,
    entries: AtomicU64,
    dropped: AtomicU64,
}

impl RequestLog {
    /// Take a place in the log; false (and one more dropped) when it is full.
    fn reserve(&self) -> bool {
        let taken = self
            .entries
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < self.max_entries).then_some(n + 1)
            })
            .is_ok();
        if !taken && self.dropped.fetch_add(1, Ordering::SeqCst) == 0 {
            tracing::warn!(
                max_entries = self.max_entries,
                "the request log is full: further requests are not logged until DELETE /_admin/requests"
            );
        }
        taken
    }
}

/// `s` cut to [`LOG_FIELD_CHARS`] characters, marked when cut.
fn clip(s: String) -> String {
    match s.char_indices().nth(LOG_FIELD_CHARS) {
        None => s,
        Some((at, _)) => format!("{}… ({} characters in all)", &s[..at], s.chars().count()),
    }
}

/// Shared state of the HTTP layer.
pub struct App {
    pub dir: Directory,
    clients: Vec<Arc<Client>>,
    admin_digest: Option<[u8; 32]>,
    admin_clock: Option<Arc<OffsetClock>>,
    limiter: Option<(DefaultKeyedRateLimiter<String>, f64)>,
    faults: Faults,
    /// SplitMix64 state: faults are drawn from a seeded sequence, so a test run is
    /// reproducible.
    rng: Mutex<u64>,
    /// `None`: no request log.
    request_log: Option<RequestLog>,
}

impl App {
    /// `logged`: the entries the request log already holds (a database file keeps them
    /// across restarts).
    pub fn new(
        cfg: Config,
        store: store::Store,
        clock: Arc<dyn super::clock::Clock>,
        admin_clock: Option<Arc<OffsetClock>>,
        base_url: String,
        logged: u64,
    ) -> App {
        let limiter = cfg.rate_limit.map(|r| {
            let period =
                Duration::from_secs_f64(1.0 / r.requests_per_second).max(Duration::from_nanos(1));
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(r.burst))
                .allow_burst(r.burst);
            (RateLimiter::keyed(quota), r.requests_per_second)
        });
        App {
            clients: cfg.clients.iter().cloned().map(Arc::new).collect(),
            admin_digest: cfg.admin_token_digest,
            admin_clock,
            limiter,
            faults: cfg.faults,
            rng: Mutex::new(cfg.faults.seed),
            request_log: cfg.request_log.map(|max_entries| RequestLog {
                max_entries,
                entries: AtomicU64::new(logged),
                dropped: AtomicU64::new(0),
            }),
            dir: Directory {
                cfg: Arc::new(cfg),
                store,
                clock,
                base_url,
            },
        }
    }

    fn client_for(&self, token: &str) -> Option<Arc<Client>> {
        let d = digest(token);
        self.clients
            .iter()
            .find(|c| same_digest(&c.token_digest, &d))
            .cloned()
    }

    /// A number in [0, 1) from the seeded sequence.
    fn roll(&self) -> f64 {
        let mut s = self.rng.lock().unwrap_or_else(|p| p.into_inner());
        *s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Write one entry of an authenticated request, if the log is kept and has room.
    async fn log(&self, entry: LogEntry) {
        if !self.request_log.as_ref().is_some_and(RequestLog::reserve) {
            return;
        }
        let entry = LogEntry {
            method: clip(entry.method),
            path: clip(entry.path),
            query: entry.query.map(clip),
            detail: entry.detail.map(clip),
            ..entry
        };
        let r = self
            .dir
            .store
            .run(move |conn| store::log_request(conn, &entry).map_err(ApiError::from))
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "cannot write the request log");
        }
    }
}

/// Compare two digests without an early exit.
fn same_digest(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

/// The router with every endpoint behind the gate.
pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/Users", get(list_users).post(create_user))
        .route("/Users/.search", post(search_users))
        .route("/.search", post(search_users))
        .route(
            "/Users/{id}",
            get(get_user)
                .put(replace_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route("/ServiceProviderConfig", get(service_provider_config))
        .route("/Schemas", get(schemas))
        .route("/Schemas/{id}", get(schema_by_id))
        .route("/ResourceTypes", get(resource_types))
        .route("/ResourceTypes/{id}", get(resource_type_by_id))
        .route("/Organisations", get(organisations))
        .route("/Organisations/{ods}", get(organisation))
        .route("/_admin/clock", post(admin_clock))
        .route(
            "/_admin/requests",
            get(admin_requests).delete(admin_clear_requests),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(app.clone(), gate))
        .with_state(app)
}

async fn gate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    if path == "/_admin" || path.starts_with("/_admin/") {
        return admin_gate(&app, req, next).await;
    }
    let method = req.method().to_string();
    let query = req.uri().query().map(String::from);
    let entry = |client: &str, status: u16, detail: Option<String>| LogEntry {
        at_ms: to_ms(app.dir.clock.now()),
        client: client.to_string(),
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        status,
        detail,
    };
    let client = bearer(req.headers()).and_then(|t| app.client_for(t));
    let who = client.as_ref().map(|c| c.id.clone());
    // Only requests with a valid client token are logged.
    let log_as =
        |status: u16, detail: String| who.as_ref().map(|who| entry(who, status, Some(detail)));

    let mut lose_response = false;
    let mut stall = false;
    if app.faults.any() {
        let drop_roll = app.roll();
        let error_roll = app.roll();
        lose_response = app.roll() < app.faults.lost_response_rate;
        stall = app.roll() < app.faults.stall_rate;
        if !app.faults.latency.is_zero() {
            tokio::time::sleep(app.faults.latency).await;
        }
        if drop_roll < app.faults.drop_rate {
            if let Some(ConnectInfo(conn)) =
                req.extensions().get::<ConnectInfo<ConnInfo>>().cloned()
            {
                conn.drop_connection();
            }
            if let Some(e) = log_as(0, "fault_injected: connection dropped".into()) {
                app.log(e).await;
            }
            return ApiError::new(503, None, "fault_injected: connection dropped").into_response();
        }
        if error_roll < app.faults.error_rate {
            let err = ApiError::new(
                503,
                None,
                "fault_injected: the directory is unavailable (configured test fault)",
            );
            if let Some(e) = log_as(503, err.detail.clone()) {
                app.log(e).await;
            }
            return err.into_response();
        }
    }

    let Some(client) = client else {
        return ApiError::new(401, None, "unauthorized: a valid bearer token is required")
            .into_response();
    };

    if let Some((limiter, rps)) = &app.limiter
        && let Err(not_until) = limiter.check_key(&client.id)
    {
        let wait = not_until.wait_time_from(limiter.clock().now());
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        let mut err = ApiError::new(
            429,
            None,
            format!(
                "rate_limited: client {} is over {rps} requests per second; retry after {secs} s",
                client.id
            ),
        );
        err.retry_after = Some(secs);
        app.log(entry(&client.id, 429, Some(err.detail.clone())))
            .await;
        return err.into_response();
    }

    let logged = entry(&client.id, 0, None);
    let conn = req.extensions().get::<ConnectInfo<ConnInfo>>().cloned();
    req.extensions_mut().insert(client);
    let resp = next.run(req).await;
    let mut detail = resp.extensions().get::<ErrorDetail>().map(|d| d.0.clone());
    if lose_response && let Some(ConnectInfo(conn)) = conn {
        // Done, but the client never hears so: the status logged is what was done.
        conn.drop_connection();
        detail = Some("fault_injected: response lost after the request was carried out".into());
    } else if stall {
        detail = Some(format!(
            "fault_injected: answer held {} ms after the request was carried out",
            app.faults.stall.as_millis()
        ));
    }
    app.log(LogEntry {
        status: resp.status().as_u16(),
        detail,
        ..logged
    })
    .await;
    if stall {
        // Logged first, so the log shows it done at the time it was done.
        tokio::time::sleep(app.faults.stall).await;
    }
    resp
}

async fn admin_gate(app: &App, req: Request, next: Next) -> Response {
    let Some(want) = app.admin_digest else {
        return ApiError::not_found("no admin endpoints (no [admin] in the configuration)")
            .into_response();
    };
    let ok = bearer(req.headers()).is_some_and(|t| same_digest(&digest(t), &want));
    if !ok {
        return ApiError::new(401, None, "unauthorized: the admin token is required")
            .into_response();
    }
    next.run(req).await
}

/// Query parameters, looked up ignoring case.
type Params = Query<Vec<(String, String)>>;

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

fn parse_body<T: DeserializeOwned>(headers: &HeaderMap, body: &[u8]) -> Result<T, ApiError> {
    if let Some(ct) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        let mime = ct
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !(mime == "application/json" || mime.ends_with("+json")) {
            return Err(ApiError::new(
                415,
                Some("invalidSyntax"),
                format!("content type {mime:?} is not {MEDIA_TYPE} or application/json"),
            ));
        }
    }
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            ApiError::invalid_value(format!("invalid_value: {e}"))
        } else {
            ApiError::invalid_syntax(format!("the body is not JSON: {e}"))
        }
    })
}

fn if_match(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::IF_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(String::from)
}

/// One account as a response: projected as asked, with its ETag (and Location when
/// created).
fn user_response(
    app: &App,
    status: StatusCode,
    a: &Account,
    params: &[(String, String)],
) -> Response {
    let u = resource(a, &app.dir.base_url);
    let v = match serde_json::to_value(&u) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "cannot serialise an account");
            return ApiError::internal().into_response();
        }
    };
    let v = schema::project(
        &v,
        param(params, "attributes"),
        param(params, "excludedAttributes"),
    );
    let mut resp = scim_json(status, &v);
    if let Ok(tag) = HeaderValue::from_str(&etag(a.version)) {
        resp.headers_mut().insert(header::ETAG, tag);
    }
    if status == StatusCode::CREATED
        && let Some(Ok(loc)) = u
            .meta
            .and_then(|m| m.location)
            .map(|l| HeaderValue::from_str(&l))
    {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

async fn create_user(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user: Value = parse_body(&headers, &body)?;
    let a = app.dir.create(client, user).await?;
    Ok(user_response(&app, StatusCode::CREATED, &a, &params))
}

async fn get_user(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let a = app.dir.get(client, id).await?;
    let current = etag(a.version);
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|h| h.split(',').any(|t| t.trim() == current || t.trim() == "*"));
    if unchanged {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(tag) = HeaderValue::from_str(&current) {
            resp.headers_mut().insert(header::ETAG, tag);
        }
        return Ok(resp);
    }
    Ok(user_response(&app, StatusCode::OK, &a, &params))
}

async fn replace_user(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let user: Value = parse_body(&headers, &body)?;
    let a = app
        .dir
        .replace(client, id, if_match(&headers), user)
        .await?;
    Ok(user_response(&app, StatusCode::OK, &a, &params))
}

#[derive(Deserialize)]
struct PatchBody {
    #[serde(default)]
    #[allow(dead_code)]
    schemas: Vec<String>,
    #[serde(rename = "Operations", alias = "operations")]
    operations: Vec<PatchOperation>,
}

async fn patch_user(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(id): Path<String>,
    Query(params): Params,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let patch: PatchBody = parse_body(&headers, &body)?;
    let a = app
        .dir
        .patch(client, id, if_match(&headers), patch.operations)
        .await?;
    Ok(user_response(&app, StatusCode::OK, &a, &params))
}

async fn delete_user(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    app.dir.delete(client, id, if_match(&headers)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What a list or search asked for, before parsing.
#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct SearchRequest {
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    start_index: Option<i64>,
    #[serde(default)]
    count: Option<i64>,
    #[serde(default)]
    attributes: Vec<String>,
    #[serde(default)]
    excluded_attributes: Vec<String>,
}

async fn list(app: &App, client: Arc<Client>, s: SearchRequest) -> Result<Response, ApiError> {
    let paging = app.dir.cfg.paging;
    let count = match s.count {
        None => paging.default_count,
        Some(n) => usize::try_from(n.max(0)).unwrap_or(0).min(paging.max_count),
    };
    let query = ListQuery {
        filter: s
            .filter
            .as_deref()
            .filter(|f| !f.trim().is_empty())
            .map(Filter::parse)
            .transpose()?,
        start_index: usize::try_from(s.start_index.unwrap_or(1).max(1)).unwrap_or(1),
        count,
    };
    let page = app.dir.list(client, query).await?;
    let attrs = (!s.attributes.is_empty()).then(|| s.attributes.join(","));
    let excluded = (!s.excluded_attributes.is_empty()).then(|| s.excluded_attributes.join(","));
    let resources: Vec<Value> = page
        .resources
        .iter()
        .map(|r| schema::project(r, attrs.as_deref(), excluded.as_deref()))
        .collect();
    let body = ListResponse {
        schemas: vec![LIST_RESPONSE.to_string()],
        total_results: page.total,
        start_index: Some(page.start_index),
        items_per_page: Some(resources.len()),
        resources,
    };
    Ok(scim_json(StatusCode::OK, &body))
}

fn number(params: &[(String, String)], name: &str) -> Result<Option<i64>, ApiError> {
    param(params, name)
        .map(|v| {
            v.trim()
                .parse::<i64>()
                .map_err(|_| ApiError::invalid_value(format!("{name} must be an integer")))
        })
        .transpose()
}

fn list_of(v: Option<&str>) -> Vec<String> {
    v.map(|s| {
        s.split(',')
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .collect()
    })
    .unwrap_or_default()
}

async fn list_users(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    let s = SearchRequest {
        filter: param(&params, "filter").map(String::from),
        start_index: number(&params, "startIndex")?,
        count: number(&params, "count")?,
        attributes: list_of(param(&params, "attributes")),
        excluded_attributes: list_of(param(&params, "excludedAttributes")),
    };
    list(&app, client, s).await
}

async fn search_users(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let s: SearchRequest = if body.is_empty() {
        SearchRequest::default()
    } else {
        parse_body(&headers, &body)?
    };
    list(&app, client, s).await
}

fn list_response(resources: Vec<Value>) -> Response {
    let body = ListResponse {
        schemas: vec![LIST_RESPONSE.to_string()],
        total_results: resources.len(),
        start_index: Some(1),
        items_per_page: Some(resources.len()),
        resources,
    };
    scim_json(StatusCode::OK, &body)
}

async fn service_provider_config(State(app): State<Arc<App>>) -> Response {
    scim_json(
        StatusCode::OK,
        &schema::service_provider_config(&app.dir.base_url, app.dir.cfg.paging.max_count),
    )
}

fn schema_docs(app: &App, client: &Client) -> Vec<Value> {
    let codes = app.dir.open_organisations_of(client);
    schema::all_schemas()
        .iter()
        .map(|s| schema::schema_json(s, &app.dir.base_url, &codes))
        .collect()
}

async fn schemas(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
) -> Response {
    list_response(schema_docs(&app, &client))
}

async fn schema_by_id(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    schema_docs(&app, &client)
        .into_iter()
        .find(|s| {
            s["id"]
                .as_str()
                .is_some_and(|i| i.eq_ignore_ascii_case(&id))
        })
        .map(|s| scim_json(StatusCode::OK, &s))
        .ok_or_else(|| ApiError::not_found(format!("no schema {id}")))
}

async fn resource_types(State(app): State<Arc<App>>) -> Response {
    list_response(vec![schema::user_resource_type(&app.dir.base_url)])
}

async fn resource_type_by_id(
    State(app): State<Arc<App>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    if id.eq_ignore_ascii_case("User") {
        Ok(scim_json(
            StatusCode::OK,
            &schema::user_resource_type(&app.dir.base_url),
        ))
    } else {
        Err(ApiError::not_found(format!("no resource type {id}")))
    }
}

async fn organisations(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
) -> Result<Response, ApiError> {
    let orgs = app.dir.organisations(client).await?;
    let values = orgs
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            tracing::error!(error = %e, "cannot serialise an organisation");
            ApiError::internal()
        })?;
    Ok(list_response(values))
}

async fn organisation(
    State(app): State<Arc<App>>,
    Extension(client): Extension<Arc<Client>>,
    Path(ods): Path<String>,
) -> Result<Response, ApiError> {
    let orgs = app.dir.organisations(client).await?;
    orgs.iter()
        .find(|o| o.ods_code.eq_ignore_ascii_case(ods.trim()))
        .map(|o| scim_json(StatusCode::OK, o))
        .ok_or_else(|| ApiError::not_found(format!("no organisation {ods} in the registry")))
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(405, None, "method not allowed on this endpoint")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_seconds: u64,
}

async fn admin_clock(
    State(app): State<Arc<App>>,
    Json(body): Json<Advance>,
) -> Result<Response, ApiError> {
    let Some(clock) = &app.admin_clock else {
        return Err(ApiError::not_found("the clock cannot be moved"));
    };
    clock.advance(body.advance_seconds);
    let now = app.dir.clock.now();
    Ok(Json(json!({
        "now": rfc3339(now),
        "offset_seconds": clock.offset_ms() / 1000,
    }))
    .into_response())
}

fn request_log(app: &App) -> Result<&RequestLog, ApiError> {
    app.request_log
        .as_ref()
        .ok_or_else(|| ApiError::not_found("no request log ([admin] request_log_max_entries = 0)"))
}

async fn admin_requests(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let dropped = request_log(&app)?.dropped.load(Ordering::SeqCst);
    let log = app
        .dir
        .store
        .run(|conn| store::requests(conn).map_err(ApiError::from))
        .await?;
    let mut resp = Json(log).into_response();
    resp.headers_mut()
        .insert(DROPPED_HEADER, HeaderValue::from(dropped));
    Ok(resp)
}

async fn admin_clear_requests(State(app): State<Arc<App>>) -> Result<Response, ApiError> {
    let log = request_log(&app)?;
    app.dir
        .store
        .run(|conn| store::clear_requests(conn).map_err(ApiError::from))
        .await?;
    log.entries.store(0, Ordering::SeqCst);
    log.dropped.store(0, Ordering::SeqCst);
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_fields_are_clipped_on_a_character_boundary() {
        assert_eq!(clip("short".into()), "short");
        let long = "é".repeat(LOG_FIELD_CHARS + 10);
        let c = clip(long);
        assert!(c.starts_with(&"é".repeat(LOG_FIELD_CHARS)), "{c}");
        assert!(c.ends_with(&format!("… ({} characters in all)", LOG_FIELD_CHARS + 10)));
    }

    #[test]
    fn a_full_log_counts_what_it_drops() {
        let log = RequestLog {
            max_entries: 2,
            entries: AtomicU64::new(1),
            dropped: AtomicU64::new(0),
        };
        assert!(log.reserve());
        assert!(!log.reserve());
        assert!(!log.reserve());
        assert_eq!(log.entries.load(Ordering::SeqCst), 2);
        assert_eq!(log.dropped.load(Ordering::SeqCst), 2);
    }
}
