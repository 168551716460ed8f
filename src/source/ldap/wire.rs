//! The full read's own LDAP client: connect (LDAPS, StartTLS or an allowed cleartext
//! connection), simple bind, paged subtree searches, unbind. Kerberos binds stay on
//! ldap3, whose SASL layer wraps every message.
//!
//! Why not ldap3 for this: ldap3 decodes every response into an owned BER tag tree (a
//! vector per node, a copy of every value), then `SearchEntry` builds a `HashMap` per
//! entry, then the source copies that into its own map. A perf profile of the 100k-user
//! LDAPS plan put ldap3's connection task at 23 % of the plan's CPU and
//! `SearchEntry::construct` at another 11 % (BENCHMARKS.md). ldap3 hands out no raw
//! message bytes, so the reader cannot be swapped underneath it. Here each message is
//! framed in the socket buffer and decoded by `ldap-parser` (a maintained zero-copy
//! decoder) borrowing from that buffer; only the values the source keeps are copied, once.
//! Requests are few and small: they are encoded with ldap3's own BER writer.
//!
//! The semantics follow the ldap3 path it replaces (`LdapSource::paged_search`): every
//! page's result code must be success (ldap3 only looked at the last page's), search
//! references are skipped, an attribute with any value that is not UTF-8 is binary as a
//! whole, and anything the client cannot decode ends the read as an error. Unit tests
//! below compare its decoding with ldap3's on random entries and feed it mutated and
//! random bytes; `tests/ldap_reader.rs` compares whole reads of Samba and OpenLDAP.

use super::{LdapSource, RawEntry};
use crate::source::SourceError;
use bytes::BytesMut;
use decode::{Message, Op, Outcome};
use ldap3::asn1::{
    ASNTag, Boolean, Enumerated, Integer, Null, OctetString, Sequence, Tag, TagClass, write,
};
use secrecy::{ExposeSecret, SecretString};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;

mod decode;

/// The StartTLS extended operation (RFC 4511 §4.14).
const START_TLS: &str = "1.3.6.1.4.1.1466.20037";
/// The largest message accepted. A user entry is a few kilobytes; a group entry with its
/// `member` list can reach megabytes. Past this a length is taken as a broken or hostile
/// stream, not a reason to allocate.
const MAX_MESSAGE: usize = 256 << 20;
/// How much the receive buffer grows by per read.
const READ_CHUNK: usize = 64 << 10;

type Io = Either<TcpStream, TlsStream<TcpStream>>;

/// One bound connection.
pub(super) struct Conn {
    io: Io,
    /// Received bytes; `buf[start..]` is not consumed yet.
    buf: Vec<u8>,
    start: usize,
    last_id: i32,
    url: String,
    timeout: Duration,
}

/// What one received message turned out to be, owned (the message itself borrows the
/// receive buffer).
enum Reply {
    Entry(RawEntry),
    Reference,
    /// A search's end: its cookie for the next page (empty: the last page).
    Done(Vec<u8>),
}

impl Conn {
    fn error(&self, context: &str, problem: impl Into<String>) -> SourceError {
        session_error(&self.url, context, problem)
    }

    /// Connect, secure the connection as configured and bind as `bind_dn`. The caller
    /// has already refused a cleartext bind that is not allowed.
    pub(super) async fn open(
        src: &LdapSource,
        bind_dn: &str,
        password: &SecretString,
        cancel: &CancellationToken,
    ) -> Result<Conn, SourceError> {
        let context = "connect";
        let err = |p: String| session_error(&src.url, context, p);
        let url = url::Url::parse(&src.url).map_err(|e| err(format!("not a URL: {e}")))?;
        let ldaps = match url.scheme().to_ascii_lowercase().as_str() {
            "ldaps" => true,
            "ldap" => false,
            other => return Err(err(format!("{other}:// is not ldap:// or ldaps://"))),
        };
        let (host, name) = match url.host() {
            Some(url::Host::Domain(d)) => (
                d.to_string(),
                rustls::pki_types::ServerName::try_from(d.to_string())
                    .map_err(|e| err(format!("{d} is not a host name: {e}")))?,
            ),
            Some(url::Host::Ipv4(ip)) => (ip.to_string(), std::net::IpAddr::V4(ip).into()),
            Some(url::Host::Ipv6(ip)) => (ip.to_string(), std::net::IpAddr::V6(ip).into()),
            None => return Err(err("the URL names no host".into())),
        };
        let port = url.port().unwrap_or(if ldaps { 636 } else { 389 });
        let tls = if ldaps || src.starttls {
            let cfg =
                crate::tls::client_config(src.ca_file.as_deref()).map_err(SourceError::Tls)?;
            Some(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
        } else {
            None
        };
        let limit = src.connect_timeout;
        let url_text = src.url.as_str();
        let secured = async {
            let tcp = bounded(
                url_text,
                context,
                limit,
                cancel,
                TcpStream::connect((host.as_str(), port)),
            )
            .await?
            .map_err(|e| err(e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let mut conn = Conn {
                io: Either::Left(tcp),
                buf: Vec::new(),
                start: 0,
                last_id: 0,
                url: src.url.clone(),
                timeout: src.operation_timeout,
            };
            let Some(tls) = tls else { return Ok(conn) };
            if src.starttls && !ldaps {
                conn.start_tls(cancel).await?;
            }
            let Either::Left(tcp) = conn.io else {
                unreachable!("TLS is set up once")
            };
            let stream = bounded(url_text, context, limit, cancel, tls.connect(name, tcp))
                .await?
                .map_err(|e| err(format!("TLS: {e}")))?;
            conn.io = Either::Right(stream);
            Ok(conn)
        };
        let mut conn = secured.await?;
        conn.bind(bind_dn, password, cancel).await?;
        Ok(conn)
    }

    /// StartTLS on the cleartext connection: the server must agree, and must not have
    /// sent anything past its answer (which would be read as if it came over TLS).
    async fn start_tls(&mut self, cancel: &CancellationToken) -> Result<(), SourceError> {
        let context = "StartTLS";
        let op = Tag::Sequence(Sequence {
            id: 23,
            class: TagClass::Application,
            inner: vec![Tag::OctetString(OctetString {
                id: 0,
                class: TagClass::Context,
                inner: START_TLS.as_bytes().to_vec(),
            })],
        });
        let id = self.send(op, Vec::new(), context, cancel).await?;
        let (rc, text) = self
            .reply(id, context, cancel, |msg| match msg.op {
                Op::Extended(r) => Ok(result_of(&r)),
                other => Err(unexpected(&other)),
            })
            .await?;
        if self.start != self.buf.len() {
            return Err(self.error(context, "the server sent data past its StartTLS answer"));
        }
        self.buf.clear();
        self.start = 0;
        super::check_rc(&self.url, context, rc, &text)
    }

    async fn bind(
        &mut self,
        bind_dn: &str,
        password: &SecretString,
        cancel: &CancellationToken,
    ) -> Result<(), SourceError> {
        let context = format!("bind as {bind_dn}");
        let op = Tag::Sequence(Sequence {
            id: 0,
            class: TagClass::Application,
            inner: vec![
                Tag::Integer(Integer {
                    inner: 3,
                    ..Default::default()
                }),
                Tag::OctetString(OctetString {
                    inner: bind_dn.as_bytes().to_vec(),
                    ..Default::default()
                }),
                Tag::OctetString(OctetString {
                    id: 0,
                    class: TagClass::Context,
                    inner: password.expose_secret().as_bytes().to_vec(),
                }),
            ],
        });
        let id = self.send(op, Vec::new(), &context, cancel).await?;
        let (rc, text) = self
            .reply(id, &context, cancel, |msg| match msg.op {
                Op::Bind(r) => Ok(result_of(&r)),
                other => Err(unexpected(&other)),
            })
            .await?;
        super::check_rc(&self.url, &context, rc, &text)
    }

    /// One paged subtree search under `base`, every entry to `each`, in the order sent.
    /// Complete or an error: each page must end in success.
    pub(super) async fn paged_search(
        &mut self,
        base: &str,
        filter: &str,
        attrs: &[String],
        page_size: i32,
        cancel: &CancellationToken,
        each: &mut dyn FnMut(RawEntry) -> Result<(), SourceError>,
    ) -> Result<(), SourceError> {
        let context = format!("search under {base}");
        let filter_tag = ldap3::parse_filter(filter)
            .map_err(|()| self.error(&context, format!("the filter {filter} cannot be parsed")))?;
        let mut cookie: Vec<u8> = Vec::new();
        loop {
            let op = search_request(base, filter_tag.clone(), attrs);
            let control = paged_control(page_size, &cookie);
            let id = self.send(op, vec![control], &context, cancel).await?;
            cookie = loop {
                let reply = self
                    .reply(id, &context, cancel, |msg| match msg.op {
                        Op::Entry { dn, attributes } => {
                            decode::entry(dn, attributes).map(|e| Ok(Reply::Entry(e)))
                        }
                        Op::Reference => Ok(Ok(Reply::Reference)),
                        Op::Done(r) => Ok(match result_of(&r) {
                            (0, _) => {
                                Ok(Reply::Done(msg.paged_cookie.unwrap_or_default().to_vec()))
                            }
                            (rc, text) => Err((rc, text)),
                        }),
                        // Intermediate responses (RFC 4511 §4.13) belong to extensions
                        // this client never asks for.
                        other => Err(unexpected(&other)),
                    })
                    .await?;
                match reply {
                    Ok(Reply::Entry(e)) => each(e)?,
                    // ldap3's `EntriesOnly` dropped references too: the scope is the
                    // base DNs on this server.
                    Ok(Reply::Reference) => {}
                    Ok(Reply::Done(next)) => break next,
                    Err((rc, text)) => return super::check_rc(&self.url, &context, rc, &text),
                }
            };
            if cookie.is_empty() {
                return Ok(());
            }
        }
    }

    /// End the session (best effort: the read is already complete).
    pub(super) async fn unbind(mut self) {
        self.last_id += 1;
        let msg = message(
            self.last_id,
            Tag::Null(Null {
                id: 2,
                class: TagClass::Application,
                inner: (),
            }),
            Vec::new(),
        );
        if let Ok(msg) = msg {
            let _ = tokio::time::timeout(self.timeout, async {
                let _ = self.io.write_all(&msg).await;
                let _ = self.io.shutdown().await;
            })
            .await;
        }
    }

    /// Send one request, returning its message id.
    async fn send(
        &mut self,
        op: Tag,
        controls: Vec<Tag>,
        context: &str,
        cancel: &CancellationToken,
    ) -> Result<i32, SourceError> {
        self.last_id += 1;
        let msg = message(self.last_id, op, controls).map_err(|e| self.error(context, e))?;
        let io = &mut self.io;
        bounded(&self.url, context, self.timeout, cancel, async {
            io.write_all(&msg).await?;
            io.flush().await
        })
        .await?
        .map_err(|e| session_error(&self.url, context, e.to_string()))?;
        Ok(self.last_id)
    }

    /// Wait for the next whole message, check it answers request `id`, and hand it to
    /// `decide`, which returns what the caller keeps of it.
    async fn reply<T>(
        &mut self,
        id: i32,
        context: &str,
        cancel: &CancellationToken,
        decide: impl FnOnce(Message<'_>) -> Result<T, String>,
    ) -> Result<T, SourceError> {
        let len = self.next_frame(context, cancel).await?;
        let frame = &self.buf[self.start..self.start + len];
        let decided = match decode::message(frame) {
            Ok(msg) if msg.id == 0 => {
                // An unsolicited notification: the server is ending the session (RFC
                // 4511 §4.4.1).
                let why = match &msg.op {
                    Op::Extended(r) | Op::Done(r) | Op::Bind(r) => Some(result_of(r)),
                    _ => None,
                };
                Err(match why {
                    Some((rc, text)) => format!(
                        "the server ended the session: {rc} ({}){}",
                        super::rc_text(rc),
                        super::message_suffix(&text)
                    ),
                    None => "the server ended the session".to_string(),
                })
            }
            Ok(msg) if i64::from(msg.id) != i64::from(id) => Err(format!(
                "the server answered request {} while request {id} was in progress",
                msg.id
            )),
            Ok(msg) => decide(msg),
            Err(e) => Err(format!(
                "the server sent a message that cannot be decoded: {e}"
            )),
        };
        self.start += len;
        decided.map_err(|p| self.error(context, p))
    }

    /// Read until `buf[start..]` begins with a whole message; its length.
    async fn next_frame(
        &mut self,
        context: &str,
        cancel: &CancellationToken,
    ) -> Result<usize, SourceError> {
        loop {
            if let Some(len) =
                frame_len(&self.buf[self.start..]).map_err(|p| self.error(context, p))?
            {
                return Ok(len);
            }
            // Move the unconsumed tail (less than a message) to the front, then read on.
            if self.start > 0 {
                self.buf.drain(..self.start);
                self.start = 0;
            }
            self.buf.reserve(READ_CHUNK);
            let (io, buf) = (&mut self.io, &mut self.buf);
            let n = bounded(&self.url, context, self.timeout, cancel, io.read_buf(buf))
                .await?
                .map_err(|e| session_error(&self.url, context, e.to_string()))?;
            if n == 0 {
                return Err(self.error(
                    context,
                    "the server closed the connection before answering in full",
                ));
            }
        }
    }
}

fn session_error(url: &str, context: &str, problem: impl Into<String>) -> SourceError {
    SourceError::LdapSession {
        url: url.to_string(),
        context: context.to_string(),
        problem: problem.into(),
    }
}

/// `fut`, unless `limit` passes first (an error naming the limit) or `cancel` fires.
async fn bounded<T>(
    url: &str,
    context: &str,
    limit: Duration,
    cancel: &CancellationToken,
    fut: impl Future<Output = T>,
) -> Result<T, SourceError> {
    tokio::select! {
        r = tokio::time::timeout(limit, fut) => r.map_err(|_| session_error(
            url,
            context,
            format!("timed out: no answer within {} s", limit.as_secs_f64()),
        )),
        () = cancel.cancelled() => Err(SourceError::Cancelled),
    }
}

/// The length of the whole message at the start of `b`, `None` while it is incomplete.
/// An LDAP message is a BER SEQUENCE with a definite length (RFC 4511 §5.1).
fn frame_len(b: &[u8]) -> Result<Option<usize>, String> {
    let (Some(&tag), Some(&first)) = (b.first(), b.get(1)) else {
        return Ok(None);
    };
    if tag != 0x30 {
        return Err(format!(
            "the server sent something that is not an LDAP message (tag 0x{tag:02x})"
        ));
    }
    let (header, body) = match first {
        0..=0x7f => (2, usize::from(first)),
        0x80 => return Err("the server sent a message of indefinite length".into()),
        _ => {
            let n = usize::from(first & 0x7f);
            if n > 4 {
                return Err(format!("the server sent a {n}-byte message length"));
            }
            let Some(digits) = b.get(2..2 + n) else {
                return Ok(None);
            };
            (
                2 + n,
                digits
                    .iter()
                    .fold(0usize, |v, d| (v << 8) | usize::from(*d)),
            )
        }
    };
    let total = header + body;
    if total > MAX_MESSAGE {
        return Err(format!(
            "the server sent a message of {total} bytes (more than {MAX_MESSAGE})"
        ));
    }
    Ok((b.len() >= total).then_some(total))
}

/// Decode one whole message as a search answer (for the unit tests and the fuzzing
/// test: the same steps `paged_search` takes on each message).
#[cfg(test)]
fn decode_search_reply(frame: &[u8]) -> Result<Option<RawEntry>, String> {
    let msg = decode::message(frame)?;
    match msg.op {
        Op::Entry { dn, attributes } => decode::entry(dn, attributes).map(Some),
        Op::Done(r) => {
            result_of(&r);
            Ok(None)
        }
        other => Err(unexpected(&other)),
    }
}

fn unexpected(op: &Op<'_>) -> String {
    let what = match op {
        Op::Bind(_) => "bind response".to_string(),
        Op::Entry { .. } => "search entry".to_string(),
        Op::Done(_) => "search result".to_string(),
        Op::Reference => "search reference".to_string(),
        Op::Extended(_) => "extended response".to_string(),
        Op::Other(tag) => format!("operation (application tag {tag})"),
    };
    format!("the server answered with an unexpected {what}")
}

/// The code and text of a result.
fn result_of(r: &Outcome<'_>) -> (u32, String) {
    (r.code, r.text())
}

fn search_request(base: &str, filter: Tag, attrs: &[String]) -> Tag {
    Tag::Sequence(Sequence {
        id: 3,
        class: TagClass::Application,
        inner: vec![
            Tag::OctetString(OctetString {
                inner: base.as_bytes().to_vec(),
                ..Default::default()
            }),
            // wholeSubtree, neverDerefAliases, no size or time limit, types and values.
            Tag::Enumerated(Enumerated {
                inner: 2,
                ..Default::default()
            }),
            Tag::Enumerated(Enumerated {
                inner: 0,
                ..Default::default()
            }),
            Tag::Integer(Integer {
                inner: 0,
                ..Default::default()
            }),
            Tag::Integer(Integer {
                inner: 0,
                ..Default::default()
            }),
            Tag::Boolean(Boolean {
                inner: false,
                ..Default::default()
            }),
            filter,
            Tag::Sequence(Sequence {
                inner: attrs
                    .iter()
                    .map(|a| {
                        Tag::OctetString(OctetString {
                            inner: a.as_bytes().to_vec(),
                            ..Default::default()
                        })
                    })
                    .collect(),
                ..Default::default()
            }),
        ],
    })
}

/// The paged results control asking for `size` entries from `cookie` on. Not critical,
/// as ldap3 sent it: a server without paging answers in one go, or with a size limit,
/// which is an error.
fn paged_control(size: i32, cookie: &[u8]) -> Tag {
    let value = Tag::Sequence(Sequence {
        inner: vec![
            Tag::Integer(Integer {
                inner: i64::from(size),
                ..Default::default()
            }),
            Tag::OctetString(OctetString {
                inner: cookie.to_vec(),
                ..Default::default()
            }),
        ],
        ..Default::default()
    });
    let mut encoded = BytesMut::new();
    // Writing into memory cannot fail.
    let _ = write::encode_into(&mut encoded, value.into_structure());
    Tag::Sequence(Sequence {
        inner: vec![
            Tag::OctetString(OctetString {
                inner: decode::PAGED_RESULTS.to_vec(),
                ..Default::default()
            }),
            Tag::OctetString(OctetString {
                inner: encoded.to_vec(),
                ..Default::default()
            }),
        ],
        ..Default::default()
    })
}

/// An LDAPMessage: id, operation, and the controls (if any) as `[0]`.
fn message(id: i32, op: Tag, controls: Vec<Tag>) -> Result<BytesMut, String> {
    let mut inner = vec![
        Tag::Integer(Integer {
            inner: i64::from(id),
            ..Default::default()
        }),
        op,
    ];
    if !controls.is_empty() {
        inner.push(Tag::Sequence(Sequence {
            id: 0,
            class: TagClass::Context,
            inner: controls,
        }));
    }
    let mut out = BytesMut::new();
    write::encode_into(
        &mut out,
        Tag::Sequence(Sequence {
            inner,
            ..Default::default()
        })
        .into_structure(),
    )
    .map_err(|e| format!("cannot encode the request: {e}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests;
