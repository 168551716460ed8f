//! The reference NHS Directory as a real process for integration tests: started from the
//! built binary on a free loopback port, read back over its own HTTP API (SCIM and the
//! admin endpoints), and killed by its PID when the test ends (also on panic).

use serde_json::Value;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// An organisation of the directory's registry: (ODS code, kind, open, cap).
pub struct Org<'a> {
    pub ods: &'a str,
    pub kind: &'a str,
    pub open: bool,
    pub cap: u32,
}

pub struct DirectoryService {
    child: Child,
    pub url: String,
    /// The agent's bearer token file (client `client_id`).
    pub token_file: PathBuf,
    token: String,
    admin_token: String,
    stderr_file: PathBuf,
}

fn new_token() -> String {
    // Unique per call: time and a counter, hex. Tests only; the directory keeps a digest.
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
    /// Start a directory in `dir` for client `client_id`, which may act for
    /// `client_orgs`; `extra` is appended to the configuration (rate_limit, faults …).
    pub fn start(
        dir: &Path,
        client_id: &str,
        client_orgs: &[&str],
        registry: &[Org],
        extra: &str,
    ) -> DirectoryService {
        let token = new_token();
        let admin_token = new_token();
        let token_file = dir.join("agent.token");
        std::fs::write(&token_file, &token).expect("write token");
        std::fs::write(dir.join("admin.token"), &admin_token).expect("write admin token");
        let mut cfg = format!(
            "listen = \"127.0.0.1:0\"\ndatabase = \"directory.sqlite\"\n\n[admin]\ntoken_file = \"admin.token\"\n\n[[client]]\nid = {client_id:?}\ntoken_file = \"agent.token\"\norganisations = {client_orgs:?}\n"
        );
        for o in registry {
            cfg.push_str(&format!(
                "\n[[organisation]]\nods_code = {:?}\nname = \"Test organisation {}\"\nkind = {:?}\nopen = {}\ncap = {}\n",
                o.ods, o.ods, o.kind, o.open, o.cap
            ));
        }
        cfg.push('\n');
        cfg.push_str(extra);
        let cfg_file = dir.join("directory.toml");
        std::fs::write(&cfg_file, cfg).expect("write directory config");
        let stderr_file = dir.join("directory.stderr");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tansync"))
            .args(["directory", "serve", "--directory-config"])
            .arg(&cfg_file)
            .env_remove("TANSYNC_CONFIG")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr_file).expect("stderr file"))
            .spawn()
            .expect("start the reference directory");
        // The one stdout line says where it listens; EOF means it died.
        let mut line = String::new();
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        reader
            .read_line(&mut line)
            .expect("read the directory's stdout");
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            let _ = child.wait();
            let mut err = String::new();
            let _ = std::fs::File::open(&stderr_file).and_then(|mut f| f.read_to_string(&mut err));
            panic!("the directory did not start: stdout {line:?}, stderr {err}");
        };
        DirectoryService {
            url: url.to_string(),
            child,
            token_file,
            token,
            admin_token,
            stderr_file,
        }
    }

    fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let client = reqwest::Client::builder()
                .tls_backend_preconfigured(tansync::tls::client_config(None).expect("tls"))
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client");
            let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let mut req = client.request(m, &url).bearer_auth(token);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let resp = req.send().await.expect("request to the directory");
            let status = resp.status().as_u16();
            let bytes = resp.bytes().await.expect("body");
            let v = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap_or(Value::Null)
            };
            (status, v)
        })
    }

    /// GET with the agent's token; panics unless 200.
    pub fn get(&self, path: &str) -> Value {
        let (s, v) = self.call("GET", path, &self.token, None);
        assert_eq!(s, 200, "GET {path}: {v}");
        v
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
        let (s, v) = self.call("GET", "/_admin/requests", &self.admin_token, None);
        assert_eq!(s, 200, "request log: {v}");
        v.as_array().cloned().unwrap_or_default()
    }

    /// Move the directory's clock forward.
    pub fn advance_clock(&self, seconds: u64) {
        let (s, v) = self.call(
            "POST",
            "/_admin/clock",
            &self.admin_token,
            Some(serde_json::json!({ "advance_seconds": seconds })),
        );
        assert_eq!(s, 200, "advance clock: {v}");
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_file).unwrap_or_default()
    }
}

impl Drop for DirectoryService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The NHS extension of a SCIM user, and fields of it.
pub fn nhs(u: &Value) -> &Value {
    &u[tansync::scim::NHS_SCHEMA]
}
