//! The reference NHS Directory service: a SCIM 2.0 server (RFC 7643/7644) over SQLite
//! that enforces the NHS Directory rules — organisation registry and account caps,
//! NHSmail address allocation, the account lifecycle, server-side sharing agreements —
//! with rate limits, fault injection and an injectable clock for tests. It is what
//! tests, demos and staging run the agent against (`nhs-directory serve
//! --directory-config FILE`; see `examples/directory/`). It can start from a target
//! snapshot (`seed`) and write its state as one (`nhs-directory export`), and play the
//! NHSmail Portal's CSV side (`report`, `ingest`; see `portal`). It is a separate crate and
//! binary so the production agent contains no directory server, fault injection or
//! admin clock.
//!
//! Layout: `config` (two-phase TOML), `rules`, `address` and `text` (the NHS rules and
//! what a stored value may hold, pure),
//! `filter`, `patch` and `mutability` (SCIM, pure; the schema table is
//! `nhs_model::schema`), `store` (SQLite), `service` (the
//! operations), `http` (endpoints and the auth/rate/fault gate), `net` (TCP/TLS),
//! `seed` (snapshot in and out), `portal` (the NHSmail Portal's CSV twin: `nhs-directory
//! report`, `sample-template`, `ingest`).
//!
//! It must never log or answer with a bearer token, never let a client read or change an
//! account outside the organisations its agreement lists, and never print anything to
//! stdout but the one `listening on URL` line while serving.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod address;
pub mod clock;
pub mod config;
pub mod error;
pub mod filter;
pub mod http;
pub mod mutability;
pub mod net;
pub mod patch;
pub mod portal;
pub mod rules;
pub mod seed;
pub mod service;
pub mod store;
pub mod text;

use anyhow::Context;
use clock::{Clock, OffsetClock, SystemClock};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long open connections may take to finish after a shutdown signal.
const DRAIN: Duration = Duration::from_secs(10);

/// Run the service with the given configuration file until SIGINT or SIGTERM.
pub async fn serve(config: &Path) -> anyhow::Result<()> {
    let cfg = config::Config::load(config)?;
    let store = store::Store::open(&cfg.database)
        .with_context(|| format!("cannot open the directory database {:?}", cfg.database))?;
    // The test clock only exists with the admin endpoints that move it.
    let admin_clock = cfg.admin_token_digest.map(|_| Arc::new(OffsetClock::new()));
    let clock: Arc<dyn Clock> = match &admin_clock {
        Some(c) => c.clone(),
        None => Arc::new(SystemClock),
    };
    seed::seed(&cfg, &store, clock.now())
        .await
        .with_context(|| format!("directory config {}", config.display()))?;
    let incoming = net::bind(cfg.listen, cfg.tls.clone())
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let local = axum::serve::Listener::local_addr(&incoming)?;
    let url = format!(
        "{}://{local}",
        if cfg.tls.is_some() { "https" } else { "http" }
    );
    let logged = store
        .run(|conn| store::request_count(conn).map_err(Into::into))
        .await?;
    let app = Arc::new(http::App::new(
        cfg,
        store,
        clock,
        admin_clock,
        url.clone(),
        logged,
    ));
    let router = http::router(app);

    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on {url}")?;
        out.flush()?;
    }

    let stop = CancellationToken::new();
    let server = axum::serve(
        incoming,
        router.into_make_service_with_connect_info::<net::ConnInfo>(),
    )
    .with_graceful_shutdown(stop.clone().cancelled_owned());
    let mut server = std::pin::pin!(server.into_future());
    tokio::select! {
        r = &mut server => r?,
        () = shutdown_signal() => {
            tracing::info!("stopping: finishing open requests");
            stop.cancel();
            match tokio::time::timeout(DRAIN, server).await {
                Ok(r) => r?,
                Err(_) => tracing::warn!("connections still open after {DRAIN:?}; stopping anyway"),
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the directory");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
