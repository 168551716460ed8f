//! `tansync run` under systemd's notify protocol, without systemd: the test binds the
//! `NOTIFY_SOCKET` datagram socket itself, starts the built binary on the quickstart's
//! LDIF export and snapshot (standby: nothing is written), and reads what arrives —
//! READY=1 with a status, a STATUS= line per cycle, WATCHDOG=1 pings, RELOADING=1 then
//! READY=1 around SIGHUP, STOPPING=1 on SIGTERM — each step waiting on the socket for
//! the message it needs (never a sleep); the socket's read timeout is only a safety net.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A safety net against a hang, never what the test waits for.
const SAFETY_NET: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A configuration on the quickstart's files, state in `dir`, a cycle an hour.
fn config(dir: &Path) -> PathBuf {
    let q = repo().join("examples/quickstart");
    let text = format!(
        "agent_id = \"tansync-northgate\"\n\
         [source]\nkind = \"ldif\"\npath = {:?}\n\
         [filters]\nfiles = [{:?}]\n\
         [target]\nkind = \"snapshot\"\npath = {:?}\n\
         [agreements]\nfile = {:?}\n\
         [state]\ndir = {:?}\n\
         [daemon]\ninterval_seconds = 3600\n",
        q.join("northgate-export.ldif"),
        repo().join("filters/single-trust.toml"),
        q.join("nhs-directory-snapshot.json"),
        q.join("agreements.toml"),
        dir.join("state"),
    );
    let p = dir.join("tansync.toml");
    std::fs::write(&p, text).expect("write config");
    p
}

struct Notifications {
    sock: UnixDatagram,
    seen: Vec<String>,
}

impl Notifications {
    fn bind(path: &Path) -> Notifications {
        let sock = UnixDatagram::bind(path).expect("bind the notify socket");
        sock.set_read_timeout(Some(SAFETY_NET)).expect("timeout");
        Notifications {
            sock,
            seen: Vec::new(),
        }
    }

    /// The next datagram that has this line (`KEY=value` or a `KEY=` prefix).
    fn wait_for(&mut self, line: &str) -> String {
        let mut buf = vec![0u8; 4096];
        loop {
            let n = match self.sock.recv(&mut buf) {
                Ok(n) => n,
                Err(e) => panic!(
                    "no {line:?} within {SAFETY_NET:?} ({e}); seen: {:#?}",
                    self.seen
                ),
            };
            let msg = String::from_utf8(buf[..n].to_vec()).expect("UTF-8 notification");
            self.seen.push(msg.clone());
            if msg.lines().any(|l| l.starts_with(line)) {
                return msg;
            }
        }
    }
}

fn signal(child: &Child, sig: &str) {
    let st = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(st.success(), "kill {sig}");
}

fn start(dir: &Path, socket: &Path, args: &[&str]) -> Child {
    // WATCHDOG_PID must be the daemon's own pid: the shell's, kept by exec.
    Command::new("sh")
        .arg("-c")
        .arg("WATCHDOG_PID=$$ exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_tansync"))
        .arg("--config")
        .arg(config(dir))
        .args(args)
        .env_remove("TANSYNC_CONFIG")
        .env("NOTIFY_SOCKET", socket)
        .env("WATCHDOG_USEC", "200000")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tansync run")
}

#[test]
fn run_notifies_ready_status_watchdog_reload_and_stopping() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("notify.sock");
    let mut n = Notifications::bind(&socket);
    let child = start(tmp.path(), &socket, &["run", "--standby"]);

    let ready = n.wait_for("READY=1");
    assert!(ready.contains("STATUS=started"), "{ready}");
    // The first cycle (full, standby) reports itself.
    let status = n.wait_for("STATUS=last cycle: ");
    assert!(
        status.contains("STATUS=last cycle: full standby,"),
        "{status}"
    );
    // Pings go on while it waits for the next cycle.
    n.wait_for("WATCHDOG=1");
    n.wait_for("WATCHDOG=1");

    signal(&child, "-HUP");
    let reloading = n.wait_for("RELOADING=1");
    assert!(reloading.contains("MONOTONIC_USEC="), "{reloading}");
    n.wait_for("READY=1");

    signal(&child, "-TERM");
    n.wait_for("STOPPING=1");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing arrives out of order: READY before any ping, RELOADING before the second
    // READY, STOPPING last of those.
    let pos = |l: &str| n.seen.iter().position(|m| m.contains(l)).expect(l);
    assert!(pos("READY=1") < pos("WATCHDOG=1"), "{:#?}", n.seen);
    let stop = pos("STOPPING=1");
    assert!(pos("RELOADING=1") < stop, "{:#?}", n.seen);
}

#[test]
fn run_once_notifies_ready_then_the_cycle_status() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let socket = tmp.path().join("notify.sock");
    let mut n = Notifications::bind(&socket);
    let child = start(tmp.path(), &socket, &["run", "--once", "--standby"]);
    let ready = n.wait_for("READY=1");
    assert!(ready.contains("STATUS=running one cycle"), "{ready}");
    let status = n.wait_for("STATUS=last cycle: ");
    assert!(status.contains("full standby, "), "{status}");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn without_notify_socket_run_once_still_works() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_tansync"))
        .arg("--config")
        .arg(config(tmp.path()))
        .args(["run", "--once", "--standby"])
        .env_remove("TANSYNC_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
