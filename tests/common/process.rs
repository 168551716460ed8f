//! Child processes for the tests: killed by their PID when their guard drops, waited for
//! with a deadline that is only a safety net (a child still running then is a failure,
//! never a measurement), and their output read line by line in threads of their own, so
//! that a test acts the moment a line arrives instead of sleeping and looking.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};
use wait_timeout::ChildExt;

/// A child process that is killed (by its PID) and reaped when this drops.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Run `cmd` with stdout and stderr captured to files in `dir`, killing it if it is still
/// running after `limit` (a safety net). Returns (exit code, stdout, stderr); the code is
/// -1 when it was killed.
pub fn run_bounded(
    mut cmd: Command,
    dir: &Path,
    name: &str,
    limit: Duration,
) -> (i32, String, String) {
    let out_path = dir.join(format!("{name}.stdout"));
    let err_path = dir.join(format!("{name}.stderr"));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(File::create(&out_path).expect("create stdout file"))
        .stderr(File::create(&err_path).expect("create stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
    let mut guard = KillOnDrop(child);
    let code = match guard.0.wait_timeout(limit).expect("wait for child") {
        Some(status) => status.code().unwrap_or(-1),
        None => -1,
    };
    // Killed and reaped here if it is still running.
    drop(guard);
    let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
    (code, read(&out_path), read(&err_path))
}

/// Wait for `child` to exit, for at most `limit` (a safety net: past it the child is
/// killed and the test fails). Returns the exit code (-1 for a signal).
pub fn wait_bounded(child: &mut Child, limit: Duration) -> i32 {
    match child.wait_timeout(limit).expect("wait for child") {
        Some(status) => status.code().unwrap_or(-1),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child process was still running after {limit:?}");
        }
    }
}

/// The lines of a child's pipe, read by a thread of its own until the pipe closes. The
/// thread goes on reading whether or not anyone waits, so the child never blocks on a
/// full pipe; every line read is kept (see [`Lines::text`]).
pub struct Lines {
    rx: mpsc::Receiver<String>,
    seen: Vec<String>,
    closed: bool,
}

impl Lines {
    pub fn new(pipe: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        // Nobody listening any more is fine: keep draining the pipe.
                        let _ = tx.send(line.trim_end_matches(['\n', '\r']).to_string());
                    }
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            closed: false,
        }
    }

    /// Wait until `n` lines in all (counting those already read) satisfy `pred`, and
    /// return the `n`-th. `Err` (saying why) when the pipe closed first, or when `limit`
    /// passed: a safety net for a child that hangs, never what the test waits for.
    pub fn wait_for_nth(
        &mut self,
        n: usize,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let mut found = 0;
        for line in &self.seen {
            if pred(line) {
                found += 1;
                if found == n {
                    return Ok(line.clone());
                }
            }
        }
        let deadline = Instant::now() + limit;
        loop {
            if self.closed {
                return Err(format!(
                    "the pipe closed after {found} of {n} matching line(s)"
                ));
            }
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => {
                    let hit = pred(&line);
                    self.seen.push(line);
                    if hit {
                        found += 1;
                        if found == n {
                            return Ok(self.seen.last().cloned().unwrap_or_default());
                        }
                    }
                }
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!(
                        "{found} of {n} matching line(s) after {limit:?} (safety net)"
                    ));
                }
            }
        }
    }

    /// Wait for the first line (after those already read) that satisfies `pred`.
    pub fn wait_for(
        &mut self,
        limit: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, String> {
        let already = self.seen.iter().filter(|l| pred(l)).count();
        self.wait_for_nth(already + 1, limit, pred)
    }

    /// Read on until the pipe closes (at most `limit`, a safety net) and return every
    /// line read, one per line.
    pub fn finish(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        while !self.closed {
            match self
                .rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Disconnected) => self.closed = true,
                Err(RecvTimeoutError::Timeout) => break,
            }
        }
        self.text()
    }

    /// The lines read so far, one per line.
    pub fn text(&self) -> String {
        let mut s = self.seen.join("\n");
        if !s.is_empty() {
            s.push('\n');
        }
        s
    }
}
