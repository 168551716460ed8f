//! A gate between the agent and the reference directory (plain HTTP/1.1 over TCP on
//! loopback, port 0): it lets a fixed number of creates (`POST /Users`) through and then
//! closes, holding every later request of any kind unsent, so that a test can act at an
//! exact point of a run — kill the agent, stop the directory — instead of racing it.
//! What has reached the directory when the test acts is decided by the gate, not by how
//! fast the machine is, and the test learns that the gate has closed from the gate itself
//! (an event), never by sleeping.
//!
//! Optionally the directory's answer to the last create let through is withheld from the
//! agent: the create is carried out, and the agent cannot know it.
//!
//! The gate reads each request whole (head and `Content-Length` body) before it decides;
//! answers are passed on as they come. What it holds it never sends on: dropping the gate
//! discards it. A connection the directory ends, or that cannot reach it (the directory is
//! down), the gate ends too.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub struct State {
    /// Creates let through so far.
    pub creates: usize,
    /// Closed: every request from now on is held.
    pub closed: bool,
    /// Requests held so far (never sent on).
    pub held: usize,
    /// The directory answered the last create let through and the answer was withheld.
    pub withheld: bool,
    /// The gate was dropped: held requests are discarded.
    shut: bool,
    /// A request the gate cannot frame (it fails the test when waited on).
    pub error: Option<String>,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
    limit: usize,
    withhold_last: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

pub struct Gate {
    /// `http://127.0.0.1:PORT`: where the agent is pointed instead of the directory.
    pub url: String,
    shared: Arc<Shared>,
}

impl Gate {
    /// A gate in front of `upstream` (`http://HOST:PORT`) that lets `limit` creates
    /// through, then closes. With `withhold_last`, the answer to create number `limit` is
    /// kept from the agent, and the gate closes as that create is sent on.
    pub fn start(upstream: &str, limit: usize, withhold_last: bool) -> Gate {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("the gate speaks plain HTTP")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let port = listener.local_addr().expect("gate address").port();
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            limit,
            withhold_last,
        });
        let sh = shared.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if sh.lock().shut {
                    return;
                }
                let sh = sh.clone();
                let upstream = upstream.clone();
                std::thread::spawn(move || connection(client, &upstream, sh));
            }
        });
        Gate {
            url: format!("http://127.0.0.1:{port}"),
            shared,
        }
    }

    /// Wait until `what` holds of the gate's state, and return a copy of what it says.
    /// `limit` is a safety net: past it (or on a request the gate cannot frame) the
    /// test fails.
    pub fn wait(&self, limit: Duration, what: impl Fn(&State) -> bool) -> Snapshot {
        let deadline = Instant::now() + limit;
        let mut st = self.shared.lock();
        loop {
            if let Some(e) = &st.error {
                panic!("the gate: {e}");
            }
            if what(&st) {
                return Snapshot {
                    creates: st.creates,
                    held: st.held,
                    withheld: st.withheld,
                };
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "the gate did not get there within {limit:?} (safety net): {st:?}"
            );
            st = self
                .shared
                .changed
                .wait_timeout(st, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.shared.lock().shut = true;
        self.shared.changed.notify_all();
    }
}

/// What the gate had done when a wait ended.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    pub creates: usize,
    pub held: usize,
    pub withheld: bool,
}

/// One request, whole: its head (through the blank line) and body.
struct Request {
    bytes: Vec<u8>,
    create: bool,
}

/// Read one HTTP/1.1 request. `Ok(None)` at a clean end of the connection.
fn read_request(r: &mut impl BufRead) -> Result<Option<Request>, String> {
    let mut bytes = Vec::new();
    let mut first = String::new();
    let mut length = 0usize;
    loop {
        let mut line = Vec::new();
        match r.read_until(b'\n', &mut line) {
            Ok(0) if bytes.is_empty() => return Ok(None),
            Ok(0) => return Err("the connection ended inside a request head".into()),
            Ok(_) => {}
            Err(_) if bytes.is_empty() => return Ok(None),
            Err(e) => return Err(format!("reading a request head: {e}")),
        }
        bytes.extend_from_slice(&line);
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if first.is_empty() {
            first = text;
            continue;
        }
        if text.is_empty() {
            break;
        }
        if let Some((name, value)) = text.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            if name == "content-length" {
                length = value
                    .parse()
                    .map_err(|_| format!("bad Content-Length in {first:?}"))?;
            } else if name == "transfer-encoding" {
                return Err(format!(
                    "{first:?}: a chunked request body is not supported"
                ));
            }
        }
    }
    let start = bytes.len();
    bytes.resize(start + length, 0);
    r.read_exact(&mut bytes[start..])
        .map_err(|e| format!("{first:?}: reading the body: {e}"))?;
    let mut parts = first.split_whitespace();
    let method = parts.next().unwrap_or_default();
    let path = parts.next().unwrap_or_default();
    let path = path.split('?').next().unwrap_or_default();
    Ok(Some(Request {
        create: method == "POST" && path == "/Users",
        bytes,
    }))
}

fn connection(client: TcpStream, upstream: &str, sh: Arc<Shared>) {
    let Ok(server) = TcpStream::connect(upstream) else {
        // The directory is down: so is the gate, for this connection.
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let withhold = Arc::new(AtomicBool::new(false));

    // Answers, as they come, except the one withheld.
    {
        let (mut from, mut to) = (
            server.try_clone().expect("clone upstream"),
            client.try_clone().expect("clone client"),
        );
        let (sh, withhold) = (sh.clone(), withhold.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                let n = match from.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if withhold.load(Ordering::SeqCst) {
                    // Carried out; the agent never hears so. Read on, pass nothing.
                    let mut st = sh.lock();
                    if !st.withheld {
                        st.withheld = true;
                        sh.changed.notify_all();
                    }
                    continue;
                }
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            if !withhold.load(Ordering::SeqCst) {
                let _ = to.shutdown(Shutdown::Both);
            }
        });
    }

    // Requests, each whole, passed on or held.
    let mut reader = BufReader::new(client.try_clone().expect("clone client"));
    let mut to = server;
    loop {
        let req = match read_request(&mut reader) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) => {
                sh.lock().error = Some(e);
                sh.changed.notify_all();
                break;
            }
        };
        {
            let mut st = sh.lock();
            if !st.closed && req.create {
                if st.creates < sh.limit {
                    st.creates += 1;
                    if st.creates == sh.limit && sh.withhold_last {
                        withhold.store(true, Ordering::SeqCst);
                        st.closed = true;
                    }
                    sh.changed.notify_all();
                } else {
                    st.closed = true;
                }
            }
            if st.closed && !withhold.load(Ordering::SeqCst) {
                // Held until the gate is dropped, then discarded: never sent on.
                st.held += 1;
                sh.changed.notify_all();
                while !st.shut {
                    st = sh.changed.wait(st).unwrap_or_else(|p| p.into_inner());
                }
                break;
            }
        }
        if to.write_all(&req.bytes).is_err() {
            break;
        }
        if withhold.load(Ordering::SeqCst) {
            // Nothing more on this connection: the agent waits for an answer it will not get.
            break;
        }
    }
    if !withhold.load(Ordering::SeqCst) {
        let _ = to.shutdown(Shutdown::Write);
    }
    let _ = client;
}
