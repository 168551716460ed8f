//! The operators' HTTP endpoint on `[daemon] listen`: `GET /healthz` and `GET /metrics`,
//! nothing else (404 for any other path, 405 for any other method). It only reads the
//! shared [`Observer`]; it never writes, never serves files and never runs for longer
//! than the daemon: it stops on the shared cancellation token.
//!
//! Bounded: HTTP/1.1 over hyper (already in the binary through reqwest), one request per
//! connection, request heads at most [`MAX_HEAD_BYTES`] read within
//! [`HEAD_TIMEOUT`], each connection closed after [`CONNECTION_TIMEOUT`], at most
//! [`MAX_CONNECTIONS`] at once (more are closed unanswered).

use super::observe::{METRICS_CONTENT_TYPE, Observer};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// hyper's smallest read buffer: a request head longer than this is refused (431).
pub const MAX_HEAD_BYTES: usize = 8192;
/// A client has this long to send its request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed after this long, answered or not.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("[daemon] listen = \"{addr}\": cannot listen: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("[daemon] listen: cannot read the bound address: {0}")]
    LocalAddr(#[source] std::io::Error),
}

/// A listening socket, not yet serving: [`Listener::local_addr`] tells the port bound
/// (for `listen = "127.0.0.1:0"`).
#[derive(Debug)]
pub struct Listener {
    listener: TcpListener,
    addr: SocketAddr,
}

impl Listener {
    pub async fn bind(listen: SocketAddr) -> Result<Listener, ServeError> {
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(ServeError::LocalAddr)?;
        Ok(Listener { listener, addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serve until `cancel`; connections still open then are closed.
    pub async fn serve(
        self,
        observer: Arc<Observer>,
        healthy_within: Duration,
        cancel: CancellationToken,
    ) {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            let accepted = tokio::select! {
                () = cancel.cancelled() => break,
                a = self.listener.accept() => a,
            };
            let stream = match accepted {
                Ok((stream, _peer)) => stream,
                Err(e) => {
                    // Out of file descriptors and the like: say so, back off a little
                    // rather than spin, and keep serving.
                    tracing::warn!(listen = %self.addr, error = %e, "cannot accept a connection");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                drop(stream);
                continue;
            };
            let observer = observer.clone();
            conns.spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let resp = respond(&observer, healthy_within, &req, SystemTime::now());
                    async move { Ok::<_, Infallible>(resp) }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEAD_TIMEOUT)
                    .max_buf_size(MAX_HEAD_BYTES)
                    .keep_alive(false)
                    .serve_connection(TokioIo::new(stream), service);
                // A client that times out or hangs up mid-request is its own problem.
                let _ = tokio::time::timeout(CONNECTION_TIMEOUT, conn).await;
                drop(slot);
            });
        }
        conns.shutdown().await;
    }
}

/// Listen on `listen` and serve `/healthz` and `/metrics` until `cancel`. To learn the
/// port bound for port 0, use [`Listener::bind`] and [`Listener::local_addr`] first.
pub async fn serve(
    listen: SocketAddr,
    observer: Arc<Observer>,
    healthy_within: Duration,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    Listener::bind(listen)
        .await?
        .serve(observer, healthy_within, cancel)
        .await;
    Ok(())
}

fn respond<B>(
    observer: &Observer,
    healthy_within: Duration,
    req: &Request<B>,
    now: SystemTime,
) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    if !matches!(path, "/healthz" | "/metrics") {
        return plain(
            StatusCode::NOT_FOUND,
            "not found: GET /healthz or /metrics\n",
        );
    }
    if req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    let (status, content_type, body) = if path == "/healthz" {
        let h = observer.health(now, healthy_within);
        let status =
            StatusCode::from_u16(h.http_status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let body = serde_json::to_string(&h).unwrap_or_else(|_| {
            r#"{"status":"failing","reason":"cannot encode the health report"}"#.into()
        });
        (status, "application/json", body + "\n")
    } else {
        (
            StatusCode::OK,
            METRICS_CONTENT_TYPE,
            observer.render_metrics(),
        )
    };
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}
