//! A proxy between the agent and the reference directory (plain HTTP on loopback, port
//! 0) that rewrites the directory's JSON answers to GET requests, so a test can make a
//! real directory's list responses misbehave the ways a faulty or hostile server's can (a
//! page short, a page repeated, a registry cut off) and show what the agent makes of it.
//!
//! Each request is read whole (head and `Content-Length` body), sent to the directory on
//! a connection of its own as HTTP/1.0 (so the answer is not chunked and ends with the
//! connection), and the answer is passed back whole, rewritten where the test's function
//! says so, with the connection then closed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;

/// What the test does to one answer: given the request's path (with its query) and the
/// answer's JSON body, change the body in place.
pub type Rewrite = dyn Fn(&str, &mut serde_json::Value) + Send + Sync;

pub struct Tamper {
    /// `http://127.0.0.1:PORT`: where the agent is pointed instead of the directory.
    pub url: String,
}

impl Tamper {
    pub fn start(upstream: &str, rewrite: Arc<Rewrite>) -> Tamper {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("the proxy speaks plain HTTP")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let (upstream, rewrite) = (upstream.clone(), rewrite.clone());
                std::thread::spawn(move || {
                    let _ = connection(client, &upstream, rewrite.as_ref());
                });
            }
        });
        Tamper {
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

/// Read a head (through the blank line) and its `Content-Length` body.
fn read_message(r: &mut impl BufRead) -> std::io::Result<Option<(Vec<String>, Vec<u8>)>> {
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        let line = line.trim_end().to_string();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
        head.push(line);
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body)?;
    Ok(Some((head, body)))
}

fn connection(client: TcpStream, upstream: &str, rewrite: &Rewrite) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut client = client;
    let Some((head, body)) = read_message(&mut reader)? else {
        return Ok(());
    };
    let mut first = head[0].split_whitespace();
    let method = first.next().unwrap_or_default().to_string();
    let path = first.next().unwrap_or_default().to_string();

    let mut server = TcpStream::connect(upstream)?;
    let mut req = format!("{method} {path} HTTP/1.0\r\n");
    for h in &head[1..] {
        let name = h.split(':').next().unwrap_or_default().trim();
        if !name.eq_ignore_ascii_case("connection") {
            req.push_str(h);
            req.push_str("\r\n");
        }
    }
    req.push_str("Connection: close\r\n\r\n");
    server.write_all(req.as_bytes())?;
    server.write_all(&body)?;
    let mut answer = Vec::new();
    server.read_to_end(&mut answer)?;

    let split = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(answer.len());
    let (ahead, abody) = answer.split_at(split);
    let ahead = String::from_utf8_lossy(ahead).to_string();
    let ok = ahead.starts_with("HTTP/1.0 200") || ahead.starts_with("HTTP/1.1 200");
    let json = serde_json::from_slice::<serde_json::Value>(abody).ok();
    let (status_and_headers, body) = match (method == "GET" && ok, json) {
        (true, Some(mut v)) => {
            rewrite(&path, &mut v);
            let body = serde_json::to_vec(&v).expect("serialise");
            let headers: Vec<&str> = ahead
                .split("\r\n")
                .filter(|l| {
                    let n = l.split(':').next().unwrap_or_default().trim();
                    !l.is_empty()
                        && !n.eq_ignore_ascii_case("content-length")
                        && !n.eq_ignore_ascii_case("connection")
                })
                .collect();
            (headers.join("\r\n"), body)
        }
        _ => {
            client.write_all(&answer)?;
            return client.shutdown(Shutdown::Both);
        }
    };
    client.write_all(
        format!(
            "{status_and_headers}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    )?;
    client.write_all(&body)?;
    client.shutdown(Shutdown::Both)
}
