//! The reference NHS Directory as a real process: `nhs-directory serve` (the workspace's
//! other binary, see [`super::directory_bin`]), with its configuration and token files in
//! a temp folder, on a port the OS picks (`listen = "127.0.0.1:0"`; the process reports it
//! in its `listening on URL` line), and a small HTTP client for it.
//!
//! Every process started here is killed by its own PID when its guard drops, whether the
//! test passed or panicked.

use super::process::KillOnDrop;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{ChildStdout, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How long the directory may take to print `listening on URL`.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running directory.
pub struct DirectoryProcess {
    /// Declared first: the process goes before its folder does.
    process: KillOnDrop,
    /// Kept open: the directory's stdout stays a live pipe for as long as it runs.
    _stdout: Option<BufReader<ChildStdout>>,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl DirectoryProcess {
    /// Write `files` (name, contents: tokens and the like, so readable by the owner only)
    /// and `config` (as `directory.toml`) into a fresh temp folder, start the directory
    /// and wait for its `listening on URL` line.
    pub fn start(config: &str, files: &[(&str, &str)]) -> DirectoryProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        for (name, text) in files {
            super::write_secret(&dir.path().join(name), text);
        }
        let cfg = dir.path().join("directory.toml");
        std::fs::write(&cfg, config).expect("write directory config");
        let log = dir.path().join("directory.log");
        let mut child = Command::new(super::directory_bin())
            .args(["serve", "--directory-config"])
            .arg(&cfg)
            .env_remove("NHS_DIRECTORY_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(File::create(&log).expect("create log file"))
            .spawn()
            .expect("start nhs-directory serve");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut d = DirectoryProcess {
            process: KillOnDrop(child),
            _stdout: None,
            url: String::new(),
            dir,
        };

        // Read the one line in a thread, so a directory that hangs cannot hang the test.
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let r = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send((r, reader));
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((Ok(line), reader)) => match line.trim().strip_prefix("listening on ") {
                Some(url) => {
                    d.url = url.to_string();
                    d._stdout = Some(reader);
                }
                None => panic!(
                    "the directory did not start (first stdout line {line:?}); its log:\n{}",
                    d.log()
                ),
            },
            Ok((Err(e), _)) => panic!("reading the directory's stdout: {e}; its log:\n{}", d.log()),
            Err(_) => panic!(
                "the directory printed no `listening on` line within {START_TIMEOUT:?}; its log:\n{}",
                d.log()
            ),
        }
        d
    }

    /// Stop the directory now (SIGKILL to its PID), as a crash or an outage would.
    pub fn kill(&mut self) {
        let _ = self.process.0.kill();
        let _ = self.process.0.wait();
    }

    /// The directory's stderr so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("directory.log")).unwrap_or_default()
    }
}

/// An answer: status, headers and the body as JSON (`Null` when empty).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: serde_json::Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// A client of the directory with one bearer token.
#[derive(Clone)]
pub struct Api {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Api {
    pub fn new(base: &str, token: &str) -> Api {
        Api::with_timeout(base, token, Duration::from_secs(30))
    }

    /// As [`Api::new`], giving up on a request after `timeout` (then `try_call` is `Err`).
    pub fn with_timeout(base: &str, token: &str, timeout: Duration) -> Api {
        // reqwest is built without a default crypto provider, so it needs a rustls
        // configuration even for plain http. Over https the harness's test CA is the
        // only root. No proxy: the directory is on loopback.
        let tls = if base.starts_with("https://") {
            let ca = super::env("TANSYNC_TEST_CA");
            tansync::tls::client_config(Some(Path::new(&ca))).expect("TLS client config")
        } else {
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .expect("rustls protocol versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth()
        };
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(timeout)
            .tls_backend_preconfigured(tls)
            .build()
            .expect("HTTP client");
        Api {
            http,
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    /// One request. `headers`: extra headers (If-Match, …). Panics when no answer came.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        self.try_call(method, path, body, headers)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// One request; `Err` when the connection failed (e.g. a fault the test injected).
    pub async fn try_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
        headers: &[(&str, &str)],
    ) -> Result<Answer, String> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("HTTP method");
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/scim+json")
                .body(serde_json::to_vec(b).expect("JSON body"));
        }
        let (status, headers, bytes) = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(b) => (status, headers, b),
                    Err(e) => return Err(format!("{method} {path}: {e}")),
                }
            }
            Err(e) => return Err(format!("{method} {path}: {e}")),
        };
        let body = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: the body is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    pub async fn get(&self, path: &str) -> Answer {
        self.call("GET", path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &serde_json::Value) -> Answer {
        self.call("POST", path, Some(body), &[]).await
    }
}

/// Percent-encode a query value.
pub fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
