//! The reference directory set up for the end-to-end tests: one agent client with its
//! organisations, a registry, the admin endpoints, and blocking accessors for what the
//! tests read back (accounts, the request log) — on top of [`super::directory`].
//!
//! The tests read accounts back as a client of their own (`READER_CLIENT`, acting for the
//! agent's organisations), so their reads never spend the agent's share of a directory
//! rate limit, nor the agent theirs.

use super::directory::{Api, DirectoryProcess};
use serde_json::Value;
use std::path::PathBuf;

pub const OTHER_CLIENT: &str = "another-agent";
pub const OTHER_TOKEN: &str = "another-agent-token";
/// The organisation only the other client acts for (it must be in the registry).
pub const OTHER_ORG: &str = "RXN";
/// The client the tests read back as: the agent's organisations, its own rate limit.
pub const READER_CLIENT: &str = "test-reader";

/// How long the tests wait for one answer to a read before trying again: reads are
/// idempotent, and an injected stall holds an answer for longer than any test runs.
const READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// An organisation of the directory's registry.
pub struct Org<'a> {
    pub ods: &'a str,
    pub kind: &'a str,
    pub open: bool,
    pub cap: u32,
}

pub struct DirectoryService {
    process: DirectoryProcess,
    pub url: String,
    /// The agent's bearer token file.
    pub token_file: PathBuf,
    reader: Api,
    admin: Api,
    other: Api,
    rt: tokio::runtime::Runtime,
}

/// A token unique to this process and call (tests only; the directory keeps a digest).
fn new_token() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "t{nanos:x}{:x}{:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

impl DirectoryService {
    /// Start a directory for client `client_id`, which may act for `client_orgs`;
    /// `extra` is appended to the configuration (rate_limit, faults …). A second client,
    /// `OTHER_CLIENT` with token `OTHER_TOKEN`, may act for `OTHER_ORG`: another agent
    /// sharing the directory.
    pub fn start(
        client_id: &str,
        client_orgs: &[&str],
        registry: &[Org],
        extra: &str,
    ) -> DirectoryService {
        let token = new_token();
        let reader_token = new_token();
        let admin_token = new_token();
        let mut cfg = format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"directory.sqlite\"\n\n[admin]\ntoken_file = \"admin.token\"\n\n[[client]]\nid = {client_id:?}\ntoken_file = \"agent.token\"\norganisations = {client_orgs:?}\n"
        );
        for o in registry {
            cfg.push_str(&format!(
                "\n[[organisation]]\nods_code = {:?}\nname = \"Test organisation {}\"\nkind = {:?}\nopen = {}\ncap = {}\n",
                o.ods, o.ods, o.kind, o.open, o.cap
            ));
        }
        cfg.push_str(&format!(
            "\n[[client]]\nid = \"{OTHER_CLIENT}\"\ntoken_file = \"other.token\"\norganisations = [\"{OTHER_ORG}\"]\n"
        ));
        cfg.push_str(&format!(
            "\n[[client]]\nid = \"{READER_CLIENT}\"\ntoken_file = \"reader.token\"\norganisations = {client_orgs:?}\n"
        ));
        cfg.push('\n');
        cfg.push_str(extra);
        let process = DirectoryProcess::start(
            &cfg,
            &[
                ("agent.token", &token),
                ("reader.token", &reader_token),
                ("admin.token", &admin_token),
                ("other.token", OTHER_TOKEN),
            ],
        );
        DirectoryService {
            url: process.url.clone(),
            token_file: process.dir.path().join("agent.token"),
            // A read the directory holds unanswered (an injected stall) is given up on
            // and tried again, like a dropped one.
            reader: Api::with_timeout(&process.url, &reader_token, READ_TIMEOUT),
            admin: Api::new(&process.url, &admin_token),
            other: Api::new(&process.url, OTHER_TOKEN),
            process,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime"),
        }
    }

    /// GET as the test reader; panics unless 200. Tests with injected faults read back
    /// through the same faulty front door the agent uses: a dropped connection, an
    /// injected 503 or a read held past [`READ_TIMEOUT`] is retried at once (each request
    /// draws its faults anew), a bounded number of times. A 429 is a failure, not a
    /// reason to wait: the reader has a rate limit of its own, spent only by reads that
    /// get through the faults (the directory answers injected faults before it counts a
    /// request), a page or two at a time.
    pub fn get(&self, path: &str) -> Value {
        let mut last = String::new();
        for _ in 0..50 {
            match self
                .rt
                .block_on(self.reader.try_call("GET", path, None, &[]))
            {
                Ok(a) if a.status == 200 => return a.body,
                Ok(a) if a.status == 503 => last = a.body.to_string(),
                Ok(a) => panic!("GET {path}: HTTP {}: {}", a.status, a.body),
                Err(e) => last = e,
            }
        }
        panic!("GET {path}: no answer after 50 tries; last: {last}");
    }

    /// Every account the agent can see, all pages.
    pub fn users(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut start = 1;
        loop {
            let page = self.get(&format!("/Users?startIndex={start}&count=100"));
            let items = page["Resources"].as_array().cloned().unwrap_or_default();
            let total = page["totalResults"].as_u64().unwrap_or(0) as usize;
            let n = items.len();
            out.extend(items);
            if n == 0 || out.len() >= total {
                return out;
            }
            start += n;
        }
    }

    /// The directory's request log (oldest first).
    pub fn requests(&self) -> Vec<Value> {
        let a = self.rt.block_on(self.admin.get("/_admin/requests"));
        assert_eq!(a.status, 200, "request log: {}", a.body);
        a.body.as_array().cloned().unwrap_or_default()
    }

    /// Move the directory's clock forward.
    pub fn advance_clock(&self, seconds: u64) {
        let a = self.rt.block_on(self.admin.post(
            "/_admin/clock",
            &serde_json::json!({ "advance_seconds": seconds }),
        ));
        assert_eq!(a.status, 200, "advance clock: {}", a.body);
    }

    /// Mark the account anchored on `external_id` a leaver, as a Local Administrator
    /// would in the Portal (here through SCIM, as the test reader).
    pub fn mark_leaver(&self, external_id: &str) {
        let found = self.get(&format!(
            "/Users?filter={}",
            url_escape(&format!("externalId eq \"{external_id}\""))
        ));
        let id = found["Resources"][0]["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no account anchored on {external_id}: {found}"))
            .to_string();
        let schema = tansync::scim::NHS_SCHEMA;
        let body = serde_json::json!({
            "schemas": [tansync::scim::PATCH_OP],
            "Operations": [
                {"op": "replace", "path": format!("{schema}:status"), "value": "leaver"},
                {"op": "replace", "path": "active", "value": false}
            ]
        });
        let a =
            self.rt.block_on(
                self.reader
                    .call("PATCH", &format!("/Users/{id}"), Some(&body), &[]),
            );
        assert!(
            a.status == 200 || a.status == 204,
            "PATCH leaver: HTTP {}: {}",
            a.status,
            a.body
        );
    }

    /// The directory's configuration file (for `nhs-directory report|ingest|export`).
    pub fn config_path(&self) -> PathBuf {
        self.process.dir.path().join("directory.toml")
    }

    pub fn stderr(&self) -> String {
        self.process.log()
    }

    /// POST as the other client; returns the status and body.
    pub fn post_as_other(&self, path: &str, body: &Value) -> (u16, Value) {
        let a = self.rt.block_on(self.other.post(path, body));
        (a.status, a.body)
    }

    /// Stop the directory now, as an outage would.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// The NHS extension of a SCIM user.
pub fn nhs(u: &Value) -> &Value {
    &u[tansync::scim::NHS_SCHEMA]
}

/// Percent-encode a query value.
fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
