//! Shared helpers for the integration tests: the servers' coordinates (exported by
//! `tests/harness/start-servers.sh`), config writing, and running the binary.
#![allow(dead_code)]

pub mod directory;
pub mod gate;
pub mod plan_schema;
pub mod process;
pub mod source;
pub mod tamper;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub const NOW: &str = "2026-11-22T10:00:00Z";

/// A harness variable. Missing means the servers were not started: fail, never skip.
pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: these tests need the real servers; run them with \
             `bash tests/harness/run-all.sh` (or start-servers.sh and source env.sh)"
        )
    })
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env("TANSYNC_TEST_FIXTURE_DIR")).join(name)
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// The reference directory's binary, `nhs-directory`: another package of this workspace,
/// so cargo builds it beside `tansync` (`cargo build --workspace`, which the test command
/// runs first) but gives the tests no `CARGO_BIN_EXE_` for it. `NHS_DIRECTORY_BIN`
/// overrides the location. Missing is a failure, never a skip.
pub fn directory_bin() -> PathBuf {
    if let Ok(p) = std::env::var("NHS_DIRECTORY_BIN") {
        return PathBuf::from(p);
    }
    let p = Path::new(env!("CARGO_BIN_EXE_tansync")).with_file_name("nhs-directory");
    assert!(
        p.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`; \
         `bash tests/harness/run-all.sh` does)",
        p.display()
    );
    p
}

/// Run the tansync binary with a config file and arguments.
pub fn tansync(config: &Path, args: &[&str]) -> Run {
    Command::new(env!("CARGO_BIN_EXE_tansync"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("TANSYNC_CONFIG")
        .output()
        .expect("run tansync")
        .into()
}

/// Start `tansync run` on `config` (its log filter `log`, or the default), with its
/// stderr read line by line.
pub fn start_run(config: &Path, log: Option<&str>) -> (process::KillOnDrop, process::Lines) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tansync"));
    cmd.arg("--config")
        .arg(config)
        .arg("run")
        .env_remove("TANSYNC_CONFIG")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    match log {
        Some(filter) => cmd.env("TANSYNC_LOG", filter),
        None => cmd.env_remove("TANSYNC_LOG"),
    };
    let mut child = process::KillOnDrop(cmd.spawn().expect("start run"));
    let lines = process::Lines::new(child.0.stderr.take().expect("stderr"));
    (child, lines)
}

pub fn plan_json(config: &Path) -> (Run, serde_json::Value) {
    let r = tansync(config, &["plan", "--format", "json", "--now", NOW]);
    assert!(
        r.code == 0 || r.code == 2,
        "plan failed ({}): {}",
        r.code,
        r.stderr
    );
    let v = serde_json::from_str(&r.stdout).expect("plan JSON");
    plan_schema::assert_valid_plan(&v);
    (r, v)
}

/// Write a config file into `dir` and return its path.
pub fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("tansync.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

/// Write a secret (a token or password file) readable by its owner only: tansync refuses
/// secret files that group or others may read.
pub fn write_secret(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .expect("create secret file");
    // `mode` applies only when the file is created: an existing one is narrowed too.
    use std::os::unix::fs::PermissionsExt;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .expect("chmod secret file");
    f.write_all(text.as_bytes()).expect("write secret file");
}

/// A TOML string literal for a path.
pub fn q(p: impl AsRef<Path>) -> String {
    toml_str(&p.as_ref().display().to_string())
}

pub fn toml_str(s: &str) -> String {
    format!("{:?}", s)
}

pub mod ad;
pub mod dirsvc;

/// The `[source]` section reading the Samba AD DC under `base` over verified LDAPS.
pub fn samba_source(base: &str) -> String {
    format!(
        r#"[source]
kind = "ldap"
url = {url}
ca_file = {ca}
bind_dn = {bind}
bind_password_file = {pw}
base_dns = [{base}]
"#,
        url = toml_str(&env("TANSYNC_TEST_SAMBA_LDAPS_URL")),
        ca = toml_str(&env("TANSYNC_TEST_CA")),
        bind = toml_str(&env("TANSYNC_TEST_SAMBA_BIND_DN")),
        pw = toml_str(&env("TANSYNC_TEST_SAMBA_PASSWORD_FILE")),
        base = toml_str(base),
    )
}

/// An agent configuration reading the Samba AD DC under `base` over verified LDAPS and
/// writing to the reference directory at `target` with `token_file`; `filters.toml` and
/// `agreements.toml` beside it, state in `state/`, and `rest` (further sections) after.
pub fn samba_agent_config(
    agent: &str,
    base: &str,
    target: &str,
    token_file: &Path,
    rest: &str,
) -> String {
    format!(
        r#"agent_id = "{agent}"

{source}
[filters]
files = ["filters.toml"]

[target]
kind = "scim"
url = {target}
token_file = {token}

[agreements]
file = "agreements.toml"

[state]
dir = "state"

{rest}"#,
        source = samba_source(base),
        target = toml_str(target),
        token = q(token_file),
    )
}
