//! In-memory fakes of the pipeline's edges, for unit tests of the push and the engine
//! without servers: [`FakeSource`] (a list of entries), [`FakeTarget`] (a fixed directory
//! state) and [`FakeWriter`] (an account store with scripted failures and a call log).
//!
//! A [`FakeWriter`] is a handle: clones share one store, script and log, so a test keeps
//! one after moving another into `push` or `apply_with`.

use crate::ids::{ExternalId, ObjectGuid, OdsCode, TargetId};
use crate::model::{OrgKind, Organisation};
use crate::scim::{PatchRequest, User};
use crate::source::{
    AnchorKind, EntrySink, GroupIndex, ReadRequest, ReadSummary, Source, SourceEntry, SourceError,
};
use crate::target::scim::{CallError, account_from_user};
use crate::target::{Account, Target, TargetError, TargetState, Writer};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

// ---------------------------------------------------------------------------------------
// Source

/// A source that hands over a fixed list of entries (and a group index, if given).
#[derive(Clone, Debug, Default)]
pub struct FakeSource {
    pub entries: Vec<SourceEntry>,
    pub groups: Option<GroupIndex>,
    /// With deltas: where the source stands now (`None`: no deltas, every cycle full).
    pub watermark: Option<crate::source::delta::Watermark>,
    /// What a delta read from a watermark of the same server hands over: the changed
    /// entries and the deleted anchors.
    pub changed: Vec<SourceEntry>,
    pub deleted: Vec<ExternalId>,
}

impl FakeSource {
    pub fn new(entries: Vec<SourceEntry>) -> Self {
        Self {
            entries,
            ..Self::default()
        }
    }
}

/// A watermark of server `server` at `position`.
pub fn watermark(server: &str, position: u64) -> crate::source::delta::Watermark {
    crate::source::delta::Watermark {
        kind: "fake".into(),
        server: server.into(),
        invocation_id: None,
        position: position.to_string(),
    }
}

impl Source for FakeSource {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn read(
        &self,
        _req: &ReadRequest,
        sink: &mut dyn EntrySink,
        cancel: &CancellationToken,
    ) -> Result<ReadSummary, SourceError> {
        sink.groups(self.groups.clone().unwrap_or_default());
        for e in &self.entries {
            if cancel.is_cancelled() {
                return Err(SourceError::Cancelled);
            }
            sink.entry(e.clone())?;
        }
        Ok(ReadSummary {
            read: self.entries.len(),
        })
    }

    async fn watermark(
        &self,
        _cancel: &CancellationToken,
    ) -> Result<Option<crate::source::delta::Watermark>, SourceError> {
        Ok(self.watermark.clone())
    }

    async fn read_delta(
        &self,
        _req: &ReadRequest,
        since: &crate::source::delta::Watermark,
        sink: &mut dyn EntrySink,
        _cancel: &CancellationToken,
    ) -> Result<crate::source::delta::Delta, SourceError> {
        use crate::source::delta::Delta;
        let Some(now) = &self.watermark else {
            return Ok(Delta::Full {
                why: "no deltas".into(),
            });
        };
        if now.server != since.server {
            return Ok(Delta::Full {
                why: format!("another server: {} then, {} now", since.server, now.server),
            });
        }
        sink.groups(self.groups.clone().unwrap_or_default());
        for e in &self.changed {
            sink.entry(e.clone())?;
        }
        Ok(Delta::Changes {
            deleted: self.deleted.clone(),
            next: now.clone(),
        })
    }
}

/// The anchor of [`person`]`(n, ..)`: the objectGUID with every byte `n`.
pub fn anchor(n: u8) -> ExternalId {
    match ObjectGuid::from_bytes(&[n; 16]) {
        Ok(g) => g.into(),
        Err(e) => panic!("objectGUID of {n}: {e}"),
    }
}

/// The directory's account `target_id` for person `n`: in RXA, active, managed by
/// `agent-1`, with an address and nothing else.
pub fn managed_user(n: u8, target_id: &str) -> User {
    User {
        id: Some(target_id.into()),
        external_id: Some(anchor(n).to_string()),
        user_name: format!("given{n}.family@nhs.net"),
        nhs: Some(crate::scim::Nhs {
            ods_code: Some("RXA".into()),
            managed_by: Some("agent-1".into()),
            status: Some("active".into()),
            ..crate::scim::Nhs::default()
        }),
        ..User::default()
    }
}

/// An enabled AD person entry with objectGUID `[n; 16]`, a given and a family name.
pub fn person(n: u8, given: &str, family: &str) -> SourceEntry {
    SourceEntry::build(
        format!("CN={given} {family},OU=Staff,DC=example"),
        [
            ("givenName".to_string(), vec![given.to_string()]),
            ("sn".to_string(), vec![family.to_string()]),
            ("userAccountControl".to_string(), vec!["512".to_string()]),
        ],
        [("objectGUID".to_string(), vec![vec![n; 16]])],
        &AnchorKind::ObjectGuid,
    )
}

// ---------------------------------------------------------------------------------------
// Target

/// A directory whose state is whatever the test put in it.
#[derive(Clone, Debug, Default)]
pub struct FakeTarget {
    pub state: TargetState,
    /// How many full reads (`read_state`) it served.
    pub full_reads: Arc<std::sync::atomic::AtomicUsize>,
    /// When set, the accounts are this writer's at the time of each read (what a real
    /// directory answers after a push), not `state.accounts`.
    pub live: Option<FakeWriter>,
}

impl FakeTarget {
    pub fn new(
        organisations: impl IntoIterator<Item = Organisation>,
        accounts: Vec<Account>,
    ) -> Self {
        Self {
            state: TargetState {
                organisations: organisations
                    .into_iter()
                    .map(|o| (o.ods_code.clone(), o))
                    .collect(),
                accounts,
                refused: BTreeMap::new(),
                census: None,
            },
            full_reads: Arc::default(),
            live: None,
        }
    }

    /// A directory whose accounts are `writer`'s, read at each call.
    pub fn over(
        organisations: impl IntoIterator<Item = Organisation>,
        writer: &FakeWriter,
    ) -> Self {
        Self {
            live: Some(writer.clone()),
            ..Self::new(organisations, Vec::new())
        }
    }

    fn accounts(&self) -> Vec<Account> {
        match &self.live {
            Some(w) => w.accounts(),
            None => self.state.accounts.clone(),
        }
    }
}

impl Target for FakeTarget {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn read_state(&self, cancel: &CancellationToken) -> Result<TargetState, TargetError> {
        if cancel.is_cancelled() {
            return Err(TargetError::Cancelled {
                path: "fake".into(),
            });
        }
        self.full_reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(TargetState {
            accounts: self.accounts(),
            ..self.state.clone()
        })
    }

    async fn accounts_with(
        &self,
        anchors: &std::collections::BTreeSet<ExternalId>,
        _cancel: &CancellationToken,
    ) -> Result<Vec<Account>, TargetError> {
        Ok(self
            .accounts()
            .into_iter()
            .filter(|a| a.external_id.as_ref().is_some_and(|x| anchors.contains(x)))
            .collect())
    }
}

/// An open trust with the default account cap.
pub fn organisation(ods: &str) -> Organisation {
    Organisation {
        ods_code: OdsCode::parse(ods).unwrap_or_else(|e| panic!("ODS code {ods}: {e}")),
        name: format!("Trust {ods}"),
        kind: OrgKind::Trust,
        open: true,
        cap: None,
    }
}

// ---------------------------------------------------------------------------------------
// Writer

/// The writer's calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Method {
    Create,
    Patch,
    Find,
    Get,
}

/// One call the writer received: what, for whom (the external id of a create or a
/// look-up, the target id of a patch or a get), and when (tokio's clock, so a test with
/// paused time measures waits exactly).
#[derive(Clone, Debug)]
pub struct Call {
    pub method: Method,
    pub key: String,
    pub at: Instant,
}

/// A scripted answer instead of the normal one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// An HTTP error status (with `Retry-After`, if given); nothing applied.
    Status(u16, Option<Duration>),
    /// The connection was never made (`connect: true`); nothing applied.
    ConnectFailed,
    /// Lost on the way there (`connect: false`): nothing applied, but the caller cannot
    /// tell.
    LostRequest,
    /// Applied, but the answer was lost on the way back (`connect: false`).
    LostResponse,
}

#[derive(Default)]
struct Inner {
    /// Target id → account. Patches are logged, not applied.
    users: BTreeMap<String, User>,
    next_id: u32,
    /// Answers for the next calls of a method (for one key, or any), consumed in order.
    script: Vec<(Method, Option<String>, Reply)>,
    /// External id → the answer to every create or patch for it (after the script).
    always: HashMap<String, Reply>,
    latency: Duration,
    calls: Vec<Call>,
}

impl Inner {
    fn by_external_id(&self, xid: &str) -> Option<&User> {
        self.users
            .values()
            .find(|u| u.external_id.as_deref() == Some(xid))
    }
}

/// An in-memory directory behind the [`Writer`] calls. Normal answers: a create stores
/// the account under a new id (`fake-1`, …) and returns it, or is refused 409 when an
/// account already holds the anchor; a patch of a known id succeeds (and is only logged);
/// a look-up finds the account holding the anchor; a get returns it, or 404.
#[derive(Clone, Default)]
pub struct FakeWriter(Arc<Mutex<Inner>>);

impl std::fmt::Debug for FakeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FakeWriter")
    }
}

impl FakeWriter {
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Answer the next `n` calls of `method` with `reply`.
    pub fn fail_next(&self, method: Method, n: usize, reply: Reply) -> &Self {
        let mut i = self.inner();
        i.script
            .extend(std::iter::repeat_n((method, None, reply), n));
        self
    }

    /// Answer the next `n` calls of `method` for `key` (the external id of a create or a
    /// look-up, the target id of a patch or a get) with `reply`.
    pub fn fail_next_for(&self, method: Method, key: &str, n: usize, reply: Reply) -> &Self {
        let mut i = self.inner();
        i.script.extend(std::iter::repeat_n(
            (method, Some(key.to_string()), reply),
            n,
        ));
        self
    }

    /// Answer every create or patch for `xid` with `reply` (once the script is used up).
    pub fn always_fail(&self, xid: &ExternalId, reply: Reply) -> &Self {
        self.inner().always.insert(xid.to_string(), reply);
        self
    }

    /// Stop failing `xid`.
    pub fn heal(&self, xid: &ExternalId) -> &Self {
        self.inner().always.remove(xid.as_str());
        self
    }

    /// Take this long over every call (on tokio's clock).
    pub fn latency(&self, d: Duration) -> &Self {
        self.inner().latency = d;
        self
    }

    /// Put an account in the directory; its id (given, or allocated).
    pub fn seed(&self, mut user: User) -> String {
        let mut i = self.inner();
        let id = user.id.clone().unwrap_or_else(|| {
            i.next_id += 1;
            format!("fake-{}", i.next_id)
        });
        user.id = Some(id.clone());
        i.users.insert(id.clone(), user);
        id
    }

    /// Every call received, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.inner().calls.clone()
    }

    /// How many calls of `method` were received.
    pub fn count(&self, method: Method) -> usize {
        self.inner()
            .calls
            .iter()
            .filter(|c| c.method == method)
            .count()
    }

    /// How many calls of `method` were received for `key`.
    pub fn count_for(&self, method: Method, key: &str) -> usize {
        self.inner()
            .calls
            .iter()
            .filter(|c| c.method == method && c.key == key)
            .count()
    }

    /// The accounts held, by target id.
    pub fn users(&self) -> Vec<User> {
        self.inner().users.values().cloned().collect()
    }

    /// The accounts held, as a target reads them.
    pub fn accounts(&self) -> Vec<Account> {
        self.users()
            .iter()
            .map(|u| account_from_user(u).unwrap_or_else(|e| panic!("account {:?}: {e}", u.id)))
            .collect()
    }

    /// Log the call and take the latency.
    async fn arrive(&self, method: Method, key: &str) {
        let latency = {
            let mut i = self.inner();
            i.calls.push(Call {
                method,
                key: key.to_string(),
                at: Instant::now(),
            });
            i.latency
        };
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
    }

    /// The scripted answer if there is one, else `normal` (which refuses with an HTTP
    /// status). `key`: as in the call log; `xid`: whose create or patch.
    #[allow(clippy::result_large_err)] // the `Writer` calls' own error type
    fn answer<T>(
        &self,
        (method, key): (Method, &str),
        (verb, path): (&'static str, String),
        xid: Option<&str>,
        normal: impl FnOnce(&mut Inner) -> Result<T, u16>,
    ) -> Result<T, CallError> {
        let mut i = self.inner();
        let scripted = i
            .script
            .iter()
            .position(|(m, k, _)| *m == method && k.as_deref().is_none_or(|k| k == key))
            .map(|at| i.script.remove(at).2);
        let reply = scripted.or_else(|| xid.and_then(|x| i.always.get(x).cloned()));
        let transport = |connect: bool, what: &str| CallError::Transport {
            method: verb,
            path: path.clone(),
            connect,
            source: Box::new(std::io::Error::other(what.to_string())),
        };
        match reply {
            None => normal(&mut i).map_err(|status| status_error(verb, &path, status, None)),
            Some(Reply::Status(status, retry_after)) => {
                Err(status_error(verb, &path, status, retry_after))
            }
            Some(Reply::ConnectFailed) => Err(transport(true, "connection refused")),
            Some(Reply::LostRequest) => Err(transport(false, "timed out sending the request")),
            Some(Reply::LostResponse) => {
                let _ = normal(&mut i);
                Err(transport(false, "connection reset reading the response"))
            }
        }
    }
}

fn status_error(
    method: &'static str,
    path: &str,
    status: u16,
    retry_after: Option<Duration>,
) -> CallError {
    CallError::Status {
        method,
        path: path.to_string(),
        status,
        retry_after,
        scim: None,
    }
}

impl Writer for FakeWriter {
    async fn create(&self, user: &User) -> Result<Option<String>, CallError> {
        let xid = user.external_id.clone().unwrap_or_default();
        self.arrive(Method::Create, &xid).await;
        let call = ("POST", "/Users".to_string());
        self.answer((Method::Create, &xid), call, Some(&xid), |i| {
            if i.by_external_id(&xid).is_some() {
                return Err(409);
            }
            i.next_id += 1;
            let id = format!("fake-{}", i.next_id);
            let mut u = user.clone();
            u.id = Some(id.clone());
            i.users.insert(id.clone(), u);
            Ok(Some(id))
        })
    }

    async fn patch(
        &self,
        id: &TargetId,
        _if_match: Option<&str>,
        _req: &PatchRequest,
    ) -> Result<(), CallError> {
        self.arrive(Method::Patch, id.as_str()).await;
        let xid = self
            .inner()
            .users
            .get(id.as_str())
            .and_then(|u| u.external_id.clone());
        let call = ("PATCH", format!("/Users/{id}"));
        self.answer((Method::Patch, id.as_str()), call, xid.as_deref(), |i| {
            i.users.get(id.as_str()).map(|_| ()).ok_or(404)
        })
    }

    async fn find_by_external_id(&self, xid: &ExternalId) -> Result<Option<User>, CallError> {
        self.arrive(Method::Find, xid.as_str()).await;
        let call = ("GET", format!("/Users?filter=externalId eq \"{xid}\""));
        self.answer((Method::Find, xid.as_str()), call, None, |i| {
            Ok(i.by_external_id(xid.as_str()).cloned())
        })
    }

    async fn get(&self, id: &TargetId) -> Result<(User, Option<String>), CallError> {
        self.arrive(Method::Get, id.as_str()).await;
        let call = ("GET", format!("/Users/{id}"));
        self.answer((Method::Get, id.as_str()), call, None, |i| {
            i.users
                .get(id.as_str())
                .map(|u| (u.clone(), None))
                .ok_or(404)
        })
    }
}

/// A configuration in a temporary directory for tests over the fakes: every person in
/// RXA, a partnering and a sharing agreement for it, an LDIF source and a snapshot
/// target that the tests never read (they pass fakes), and `extra` (TOML sections:
/// `[push]`, `[safety]`, `[daemon]` …) appended.
pub fn config(dir: &tempfile::TempDir, extra: &str) -> crate::config::Config {
    const RULES: &str =
        "[[rule]]\nid = \"staff\"\naction = \"include\"\nods = { constant = \"RXA\" }\n";
    const AGREEMENTS: &str = r#"[partnering]
reference = "PA-TEST"
valid_from = 2026-01-01
valid_until = 2099-12-31

[[sharing]]
ods_code = "RXA"
reference = "SA-RXA"
valid_from = 2026-01-01
valid_until = 2099-12-31
operations = ["provision", "update", "remove", "move", "restore", "join"]
attributes = ["given_name", "family_name", "display_name", "job_title", "department", "site", "telephone", "mobile", "employee_id"]
"#;
    let d = dir.path();
    std::fs::write(d.join("src.ldif"), "").unwrap();
    std::fs::write(d.join("snapshot.json"), "{}").unwrap();
    std::fs::write(d.join("rules.toml"), RULES).unwrap();
    std::fs::write(d.join("agreements.toml"), AGREEMENTS).unwrap();
    let text = format!(
        "agent_id = \"agent-1\"\n\n[source]\nkind = \"ldif\"\npath = \"src.ldif\"\n\n[filters]\nfiles = [\"rules.toml\"]\n\n[target]\nkind = \"snapshot\"\npath = \"snapshot.json\"\n\n[agreements]\nfile = \"agreements.toml\"\n\n{extra}"
    );
    std::fs::write(d.join("tansync.toml"), text).unwrap();
    crate::config::Config::load(&d.join("tansync.toml")).unwrap()
}
