//! The directory's operations — create, read, list, replace, patch, delete accounts and
//! read the registry — each one transaction that first lets the lifecycle catch up
//! with the clock (pending → active, leaver → deleted, deleted → purged), then applies
//! the NHS rules from `rules` to what the client asked.
//!
//! Every operation is on behalf of one authenticated client and never reads or touches
//! an account outside that client's organisations. HTTP lives in `http`, SQL in `store`.

use super::address;
use super::clock::{Clock, rfc3339};
use super::config::{Client, Config, Lifecycle};
use super::error::ApiError;
use super::filter::Filter;
use super::mutability;
use super::patch;
use super::rules::{self, Status, Step, Times, Transition};
use super::store::{self, Account};
use nhs_model::ids::OdsCode;
use nhs_model::scim::{
    ENTERPRISE_SCHEMA, Enterprise, Meta, MultiValue, NHS_SCHEMA, Name, Nhs, ORG_SCHEMA,
    OrganisationResource, PatchOperation, USER_SCHEMA, User,
};
use rusqlite::Connection;
use serde_json::Value;
use std::sync::Arc;
use time::OffsetDateTime;

/// The directory: configuration, storage and clock.
pub struct Directory {
    pub cfg: Arc<Config>,
    pub store: store::Store,
    pub clock: Arc<dyn Clock>,
    /// The URL the directory is reached at (`meta.location`).
    pub base_url: String,
}

/// What a list or search asks for (RFC 7644 §3.4.2).
#[derive(Debug, Default)]
pub struct ListQuery {
    pub filter: Option<Filter>,
    /// 1-based.
    pub start_index: usize,
    pub count: usize,
}

/// One page of a list.
#[derive(Debug)]
pub struct Page {
    pub total: usize,
    pub start_index: usize,
    pub resources: Vec<Value>,
}

/// The ETag of an account version (weak: the representation may vary in form).
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The account as a SCIM User.
pub fn resource(a: &Account, base_url: &str) -> User {
    let mut u = a.content.clone();
    u.schemas = vec![USER_SCHEMA.to_string()];
    if u.enterprise.is_some() {
        u.schemas.push(ENTERPRISE_SCHEMA.to_string());
    }
    u.schemas.push(NHS_SCHEMA.to_string());
    u.id = Some(a.id.clone());
    u.external_id = a.external_id.clone();
    u.user_name = a.user_name.clone();
    u.emails = vec![MultiValue {
        value: a.user_name.clone(),
        kind: Some("work".into()),
        primary: Some(true),
    }];
    u.active = Some(a.status.is_live());
    let nhs = u.nhs.get_or_insert_with(Nhs::default);
    nhs.ods_code = Some(a.ods_code.clone());
    nhs.status = Some(a.status.as_str().to_string());
    nhs.leaver_since = a.leaver_since.map(rfc3339);
    u.meta = Some(Meta {
        resource_type: Some("User".into()),
        created: Some(rfc3339(a.created)),
        last_modified: Some(rfc3339(a.modified)),
        location: Some(format!("{base_url}/Users/{}", a.id)),
        version: Some(etag(a.version)),
    });
    u
}

/// An account's resource as JSON (for filters, PATCH and the read-only check).
fn json_of(u: &User) -> Result<Value, ApiError> {
    serde_json::to_value(u).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise an account");
        ApiError::internal()
    })
}

/// A request body as a User (400 `invalidValue` when it does not fit the schema).
fn user_of(v: Value) -> Result<User, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::invalid_value(format!("invalid_value: {e}")))
}

fn text(v: &Option<String>) -> Option<String> {
    v.as_ref().filter(|s| !s.trim().is_empty()).cloned()
}

/// The client-writable part of a User, with empty values dropped.
fn content_of(u: &User) -> User {
    let name = u.name.as_ref().map(|n| Name {
        given_name: text(&n.given_name),
        family_name: text(&n.family_name),
        formatted: text(&n.formatted),
    });
    let ent = u.enterprise.as_ref().map(|e| Enterprise {
        employee_number: text(&e.employee_number),
        department: text(&e.department),
    });
    let nhs = u.nhs.as_ref().map(|n| Nhs {
        site: text(&n.site),
        managed_by: text(&n.managed_by),
        ..Nhs::default()
    });
    User {
        name: name.filter(|n| n != &Name::default()),
        display_name: text(&u.display_name),
        title: text(&u.title),
        phone_numbers: u
            .phone_numbers
            .iter()
            .filter(|p| !p.value.trim().is_empty())
            .cloned()
            .collect(),
        enterprise: ent.filter(|e| e != &Enterprise::default()),
        nhs: nhs.filter(|n| n != &Nhs::default()),
        ..User::default()
    }
}

fn odscode(a: &Account) -> Result<OdsCode, ApiError> {
    OdsCode::parse(&a.ods_code).map_err(|e| {
        tracing::error!(account = %a.id, error = %e, "stored ODS code is not valid");
        ApiError::internal()
    })
}

/// Which stored accounts a list must look at: every account a filter can match is
/// among them (the filter still decides, except for `WholeOrganisation`).
enum Candidates {
    /// The filter requires `externalId eq X`: the one account holding that anchor (a
    /// look-up by anchor in a directory of 100,000 accounts was 0.65 s by a scan).
    Anchor(String),
    /// The filter is exactly `odsCode eq X`: every account of X, and only those.
    WholeOrganisation(OdsCode),
    /// The filter requires `odsCode eq X` among other terms.
    Organisation(OdsCode),
    Every,
}

impl Candidates {
    fn of(filter: Option<&Filter>, ods: Option<OdsCode>) -> Candidates {
        let Some(f) = filter else {
            return Candidates::Every;
        };
        let anchor = f
            .required_equalities()
            .into_iter()
            .find(|(path, _)| path.is(None, "externalId"))
            .and_then(|(_, v)| v.as_str().map(|x| x.trim().to_lowercase()));
        match (anchor, ods) {
            (Some(key), _) => Candidates::Anchor(key),
            (None, Some(ods)) if matches!(f, Filter::Compare(..)) => {
                Candidates::WholeOrganisation(ods)
            }
            (None, Some(ods)) => Candidates::Organisation(ods),
            (None, None) => Candidates::Every,
        }
    }
}

/// Let the lifecycle catch up with `now`.
pub(crate) fn sweep(
    conn: &Connection,
    now: OffsetDateTime,
    life: &Lifecycle,
) -> Result<(), ApiError> {
    for mut a in store::lifecycle_candidates(conn)? {
        let mut changed = false;
        let mut purged = false;
        loop {
            let times = Times {
                created: a.created,
                leaver_since: a.leaver_since,
                deleted_since: a.deleted_since,
            };
            match rules::due_step(a.status, &times, now, life) {
                None => break,
                Some(Step::Activate(at)) => {
                    a.status = Status::Active;
                    a.modified = at;
                    changed = true;
                }
                Some(Step::Delete(at)) => {
                    a.status = Status::Deleted;
                    a.deleted_since = Some(at);
                    a.modified = at;
                    changed = true;
                }
                Some(Step::Purge) => {
                    store::delete(conn, &a.id)?;
                    purged = true;
                    break;
                }
            }
        }
        if changed && !purged {
            a.version += 1;
            store::update(conn, &a)?;
        }
    }
    Ok(())
}

/// The client's sharing agreement, as [`update`] asks it.
fn agreement_of(client: &Client) -> impl Fn(&OdsCode) -> Result<(), ApiError> + '_ {
    |ods| rules::agreement(&client.id, &client.organisations, ods)
}

/// The account, if it exists and the client may see it.
fn load(conn: &Connection, client: &Client, id: &str) -> Result<Account, ApiError> {
    let a = store::get(conn, id)?.ok_or_else(|| ApiError::not_found(format!("no account {id}")))?;
    rules::agreement(&client.id, &client.organisations, &odscode(&a)?)?;
    Ok(a)
}

/// The account a write names: visible to the client, and `If-Match` (if sent) current.
fn load_current(
    conn: &Connection,
    client: &Client,
    id: &str,
    if_match: Option<&str>,
) -> Result<Account, ApiError> {
    let a = load(conn, client, id)?;
    precondition(&a, if_match)?;
    Ok(a)
}

/// As [`load_current`], and editable: a pending account is not edited until active.
fn load_editable(
    conn: &Connection,
    client: &Client,
    id: &str,
    if_match: Option<&str>,
) -> Result<Account, ApiError> {
    let a = load_current(conn, client, id, if_match)?;
    if a.status == Status::Pending {
        return Err(rules::target_pending(&a.id));
    }
    Ok(a)
}

/// `If-Match` (RFC 7644 §3.14): the request applies only to the version it names.
fn precondition(a: &Account, if_match: Option<&str>) -> Result<(), ApiError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let current = etag(a.version);
    let strip = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let ok = header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || strip(t) == strip(&current));
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            412,
            None,
            format!("precondition_failed: the account is at version {current}, not {header}"),
        ))
    }
}

fn check_anchor(
    conn: &Connection,
    external_id: Option<&str>,
    own_id: Option<&str>,
) -> Result<(), ApiError> {
    if let Some(e) = external_id {
        let key = rules::anchor_key(e)?;
        if let Some(owner) = store::anchor_owner(conn, &key)?
            && Some(owner.as_str()) != own_id
        {
            return Err(rules::duplicate_anchor());
        }
    }
    Ok(())
}

impl Directory {
    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    /// Create an account (POST /Users) from the body as sent: read-only attributes are
    /// refused (`mutability`), the NHS status (or `active`) chooses between a new account
    /// and a leaver ([`rules::create_status`]).
    pub async fn create(&self, client: Arc<Client>, raw: Value) -> Result<Account, ApiError> {
        mutability::check_create(&raw)?;
        let body = user_of(raw)?;
        let cfg = self.cfg.clone();
        let now = self.now();
        self.store
            .run(move |conn| {
                sweep(conn, now, &cfg.lifecycle)?;
                let asked = body
                    .nhs
                    .as_ref()
                    .and_then(|n| n.ods_code.as_deref())
                    .filter(|s| !s.trim().is_empty());
                let ods = match asked {
                    Some(s) => rules::parse_ods(s)?,
                    None => cfg.default_organisation.clone().ok_or_else(|| {
                        ApiError::invalid_value(format!(
                            "missing_mandatory: {NHS_SCHEMA}:odsCode is required"
                        ))
                    })?,
                };
                rules::agreement(&client.id, &client.organisations, &ods)?;
                create_account(conn, now, &cfg, &ods, &body)
            })
            .await
    }

    /// One account (GET /Users/{id}).
    pub async fn get(&self, client: Arc<Client>, id: String) -> Result<Account, ApiError> {
        let cfg = self.cfg.clone();
        let now = self.now();
        self.store
            .run(move |conn| {
                sweep(conn, now, &cfg.lifecycle)?;
                load(conn, &client, &id)
            })
            .await
    }

    /// A page of the client's accounts that match the filter, oldest first.
    pub async fn list(&self, client: Arc<Client>, q: ListQuery) -> Result<Page, ApiError> {
        // A filter naming an organisation touches it: the agreement must cover it.
        let mut ods_required = None;
        if let Some(f) = &q.filter {
            for (path, value) in f.required_equalities() {
                if path.is(Some(NHS_SCHEMA), "odsCode")
                    && let Some(s) = value.as_str()
                    && let Ok(ods) = OdsCode::parse(s)
                {
                    rules::agreement(&client.id, &client.organisations, &ods)?;
                    // Narrow by it only when the filter compares exactly this code
                    // (the filter's `eq` ignores case, nothing else).
                    if s.eq_ignore_ascii_case(ods.as_str()) {
                        ods_required = Some(ods);
                    }
                }
            }
        }
        let candidates = Candidates::of(q.filter.as_ref(), ods_required);
        let cfg = self.cfg.clone();
        let now = self.now();
        let base = self.base_url.clone();
        self.store
            .run(move |conn| {
                sweep(conn, now, &cfg.lifecycle)?;
                let start = q.start_index.max(1);
                if let Candidates::WholeOrganisation(ods) = &candidates {
                    // The filter is `odsCode eq X` alone: every account of X matches, so
                    // the page is read from the database by its position. A full read of
                    // a 100,000-account organisation page by page rendered every account
                    // for every page (quadratic); this renders one page.
                    let total = store::count_by_ods(conn, ods.as_str())?;
                    let page = store::page_by_ods(conn, ods.as_str(), start - 1, q.count)?;
                    let resources = page
                        .iter()
                        .map(|a| json_of(&resource(a, &base)))
                        .collect::<Result<_, _>>()?;
                    return Ok(Page {
                        total,
                        start_index: start,
                        resources,
                    });
                }
                let rows = match &candidates {
                    Candidates::Anchor(key) => store::by_anchor_key(conn, key)?,
                    Candidates::Organisation(ods) => store::by_ods(conn, ods.as_str())?,
                    _ => store::all(conn)?,
                };
                let mut matched = Vec::new();
                for a in rows {
                    if !client.organisations.contains(&odscode(&a)?) {
                        continue;
                    }
                    let v = json_of(&resource(&a, &base))?;
                    if q.filter.as_ref().is_none_or(|f| f.matches(&v)) {
                        matched.push(v);
                    }
                }
                let total = matched.len();
                let resources = matched.into_iter().skip(start - 1).take(q.count).collect();
                Ok(Page {
                    total,
                    start_index: start,
                    resources,
                })
            })
            .await
    }

    /// Replace an account (PUT /Users/{id}) with the body as sent. Read-only attributes
    /// may only repeat their current values (`mutability`); odsCode, status and active
    /// keep their values when absent.
    pub async fn replace(
        &self,
        client: Arc<Client>,
        id: String,
        if_match: Option<String>,
        raw: Value,
    ) -> Result<Account, ApiError> {
        let cfg = self.cfg.clone();
        let now = self.now();
        let base = self.base_url.clone();
        self.store
            .run(move |conn| {
                sweep(conn, now, &cfg.lifecycle)?;
                let a = load_editable(conn, &client, &id, if_match.as_deref())?;
                mutability::check_replace(&raw, &json_of(&resource(&a, &base))?)?;
                let mut body = user_of(raw)?;
                let nhs = body.nhs.get_or_insert_with(Nhs::default);
                if text(&nhs.ods_code).is_none() {
                    nhs.ods_code = Some(a.ods_code.clone());
                }
                if text(&nhs.status).is_none() {
                    nhs.status = Some(a.status.as_str().to_string());
                }
                if body.active.is_none() {
                    body.active = Some(a.status.is_live());
                }
                update(conn, now, &cfg, &agreement_of(&client), a, body)
            })
            .await
    }

    /// Patch an account (PATCH /Users/{id}).
    pub async fn patch(
        &self,
        client: Arc<Client>,
        id: String,
        if_match: Option<String>,
        ops: Vec<PatchOperation>,
    ) -> Result<Account, ApiError> {
        let cfg = self.cfg.clone();
        let now = self.now();
        let base = self.base_url.clone();
        self.store
            .run(move |conn| {
                sweep(conn, now, &cfg.lifecycle)?;
                let a = load_editable(conn, &client, &id, if_match.as_deref())?;
                let mut doc = json_of(&resource(&a, &base))?;
                patch::apply(&mut doc, &ops)?;
                let desired = user_of(doc)?;
                update(conn, now, &cfg, &agreement_of(&client), a, desired)
            })
            .await
    }

    /// Delete an account at once (DELETE /Users/{id}): it is purged, not marked
    /// deleted. Agents mark leavers with status leaver instead.
    pub async fn delete(
        &self,
        client: Arc<Client>,
        id: String,
        if_match: Option<String>,
    ) -> Result<(), ApiError> {
        let cfg = self.cfg.clone();
        let now = self.now();
        self.store
            .run(move |conn| {
                sweep(conn, now, &cfg.lifecycle)?;
                let a = load_current(conn, &client, &id, if_match.as_deref())?;
                store::delete(conn, &a.id)?;
                Ok(())
            })
            .await
    }

    /// The organisation registry, with account counts for the client's organisations.
    pub async fn organisations(
        &self,
        client: Arc<Client>,
    ) -> Result<Vec<OrganisationResource>, ApiError> {
        let cfg = self.cfg.clone();
        let now = self.now();
        self.store
            .run(move |conn| {
                sweep(conn, now, &cfg.lifecycle)?;
                let mut out = Vec::new();
                for (ods, org) in &cfg.registry {
                    let accounts = if client.organisations.contains(ods) {
                        Some(store::held(conn, ods.as_str(), None)?)
                    } else {
                        None
                    };
                    out.push(OrganisationResource {
                        schemas: vec![ORG_SCHEMA.to_string()],
                        id: Some(ods.to_string()),
                        ods_code: ods.to_string(),
                        name: org.name.clone(),
                        kind: serde_json::to_value(org.kind)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        open: org.open,
                        cap: Some(org.cap),
                        accounts,
                    });
                }
                Ok(out)
            })
            .await
    }

    /// The open organisations the client may create accounts in (canonical values of
    /// odsCode in `/Schemas`).
    pub fn open_organisations_of(&self, client: &Client) -> Vec<String> {
        client
            .organisations
            .iter()
            .filter(|o| self.cfg.organisation(o).is_some_and(|e| e.open))
            .map(|o| o.to_string())
            .collect()
    }
}

/// Create an account in `ods` from a User as a client sent it (the caller has checked
/// that the client may act for `ods`): the status it starts in, the text and content
/// rules, one account per anchor, the organisation's registry entry and cap, then the
/// NHSmail address. The SCIM create and the Portal's bulk upload both come here.
pub(crate) fn create_account(
    conn: &Connection,
    now: OffsetDateTime,
    cfg: &Config,
    ods: &OdsCode,
    body: &User,
) -> Result<Account, ApiError> {
    let asked_status = body
        .nhs
        .as_ref()
        .and_then(|n| text(&n.status))
        .map(|s| rules::parse_status(&s))
        .transpose()?;
    let status = rules::create_status(asked_status, body.active, &cfg.lifecycle)?;
    rules::check_texts(body)?;
    let content = content_of(body);
    rules::check_content(&content)?;
    let external_id = text(&body.external_id).map(|e| e.trim().to_string());
    check_anchor(conn, external_id.as_deref(), None)?;
    let held = store::held(conn, ods.as_str(), None)?;
    rules::admit(ods, cfg.organisation(ods), held)?;

    let name = content.name.clone().unwrap_or_default();
    let mut lookup_error = None;
    let user_name = address::allocate(
        name.given_name.as_deref().unwrap_or(""),
        name.family_name.as_deref().unwrap_or(""),
        &cfg.mail_domain,
        |candidate| match store::user_name_taken(conn, candidate) {
            Ok(taken) => taken,
            Err(e) => {
                lookup_error = Some(e);
                false
            }
        },
    );
    if let Some(e) = lookup_error {
        return Err(e.into());
    }
    let mut a = Account {
        seq: 0,
        id: store::new_id(conn)?,
        external_id,
        user_name,
        ods_code: ods.to_string(),
        status,
        created: now,
        modified: now,
        leaver_since: (status == Status::Leaver).then_some(now),
        deleted_since: None,
        version: 1,
        content,
    };
    a.seq = store::insert(conn, &a)?;
    Ok(a)
}

/// Apply a desired User to an account under the rules; store and return the result.
/// `may_act_for` says whether the change may take the account to another organisation
/// (the SCIM client's sharing agreement). The SCIM PUT and PATCH and the Portal's bulk
/// upload all come here.
pub(crate) fn update(
    conn: &Connection,
    now: OffsetDateTime,
    cfg: &Config,
    may_act_for: &dyn Fn(&OdsCode) -> Result<(), ApiError>,
    a: Account,
    desired: User,
) -> Result<Account, ApiError> {
    let nhs = desired.nhs.clone().unwrap_or_default();
    let asked_status = match text(&nhs.status) {
        Some(s) => rules::parse_status(&s)?,
        None => a.status,
    };
    // A change of NHS status wins; otherwise a change of the core `active` flag stands
    // for leaver (false) or restore (true).
    let target = if asked_status != a.status {
        asked_status
    } else {
        match desired.active {
            Some(act) if act != a.status.is_live() => {
                if act {
                    Status::Active
                } else {
                    Status::Leaver
                }
            }
            _ => a.status,
        }
    };
    let target_ods = match text(&nhs.ods_code) {
        Some(s) => rules::parse_ods(&s)?,
        None => odscode(&a)?,
    };
    let org_changes = target_ods.as_str() != a.ods_code;
    let step = rules::transition(a.status, target, org_changes)?;
    if org_changes {
        may_act_for(&target_ods)?;
    }
    if step.admits() {
        let held = store::held(conn, target_ods.as_str(), Some(&a.id))?;
        rules::admit(&target_ods, cfg.organisation(&target_ods), held)?;
    }
    rules::check_texts(&desired)?;
    let content = content_of(&desired);
    rules::check_content(&content)?;
    let external_id = text(&desired.external_id).map(|e| e.trim().to_string());
    if external_id != a.external_id {
        check_anchor(conn, external_id.as_deref(), Some(&a.id))?;
    }

    let mut n = a.clone();
    n.content = content;
    n.external_id = external_id;
    n.ods_code = target_ods.to_string();
    match step {
        Transition::Stay => {}
        Transition::Leave => {
            n.status = Status::Leaver;
            n.leaver_since = Some(now);
            n.deleted_since = None;
        }
        Transition::Restore | Transition::Join | Transition::Move => {
            n.status = Status::Active;
            n.leaver_since = None;
            n.deleted_since = None;
        }
    }
    if n != a {
        n.version = a.version + 1;
        n.modified = now;
        store::update(conn, &n)?;
    }
    Ok(n)
}
