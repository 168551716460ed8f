//! Continuous mode (`tansync run`): cycles on a schedule — a full cycle first (while there
//! is no watermark), then delta cycles, and a full reconcile at least every
//! `full_every_hours` — each one the engine's plan and apply, with the source's watermark saved only after the cycle's operations
//! have all settled. What operators see of it (health, metrics) is in [`observe`]; what
//! systemd is told (readiness, status, watchdog), in [`notify`].
//!
//! It must never treat absence from a delta read as a removal, never advance a watermark
//! past a cycle that failed, and never run twice on one state directory.

pub mod cache;
pub mod cycle;
pub mod http;
pub mod notify;
pub mod observe;
pub mod portal;
pub mod schedule;
pub mod status;

use crate::config::Config;
use crate::engine::EngineError;
use crate::source::AnySource;
use crate::state::StateStore;
use crate::target::scim::ScimWriter;
use cycle::{CycleEnv, CycleOutcome, run_cycle};
use observe::Observer;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;

/// Why `tansync run` could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(
        "{file}: daemon: give daemon.interval_seconds or daemon.cron for `tansync run` (or use `tansync run --once`)"
    )]
    NoSchedule { file: String },
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Serve(#[from] http::ServeError),
}

/// How `tansync run` was asked to run.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunOptions {
    pub once: bool,
    /// `--standby` (or `[daemon] standby = true`).
    pub standby: bool,
}

/// Open the state directory for continuous mode: its lock is held for the daemon's
/// life, so a second `tansync run` (or an `apply`) on it refuses to start.
pub fn open_store(cfg: &Config) -> Result<Arc<Mutex<StateStore>>, DaemonError> {
    let store = StateStore::open(&cfg.state_dir)?;
    store.close_abandoned_cycles()?;
    Ok(Arc::new(Mutex::new(store)))
}

/// One cycle with the configured source, target and directory.
pub async fn cycle_once(
    cfg: &Config,
    store: &Arc<Mutex<StateStore>>,
    standby: bool,
    observer: &Observer,
    now: OffsetDateTime,
    cancel: &CancellationToken,
) -> CycleOutcome {
    if let Some((settings, target)) = crate::engine::portal::configured(cfg) {
        let out = portal::cycle(cfg, settings, target, store, standby, observer, now, cancel).await;
        if out.held_changed {
            notify(cfg, &out).await;
        }
        return out;
    }
    let write_back = match (&cfg.write_back, &cfg.source) {
        (Some(w), AnySource::Ldap(l)) if !standby => Some((w, l)),
        _ => None,
    };
    let env = CycleEnv {
        cfg,
        source: &cfg.source,
        target: &cfg.target,
        writer: || match &cfg.scim {
            Some(s) => ScimWriter::new(s).map_err(EngineError::Client),
            None => Err(EngineError::NotWritable),
        },
        write_back,
        store,
        standby,
        observer,
    };
    let out = run_cycle(&env, now, cancel).await;
    if out.held_changed {
        notify(cfg, &out).await;
    }
    out
}

/// `tansync run [--once]`: cycles until `shutdown`, reloading the configuration on
/// SIGHUP (kept as it was, with an error logged, when the new one is not valid).
/// Returns the exit code: `--once`, `apply`'s codes; otherwise 0 once stopped.
pub async fn run(
    config_path: &Path,
    cfg: Config,
    opts: RunOptions,
    observer: &Arc<Observer>,
    shutdown: &CancellationToken,
) -> Result<u8, DaemonError> {
    // Build the phone-number metadata (every region's patterns compiled) on the other
    // core while the state store opens and the first read connects: a delta cycle's read
    // is too short to hide it (it was a third of the CPU of a 0.28 s delta, perf).
    std::thread::spawn(crate::model::validate::load_phone_metadata);
    let mut cfg = cfg;
    if !opts.once && cfg.daemon.schedule.is_none() {
        return Err(DaemonError::NoSchedule {
            file: cfg.file.display().to_string(),
        });
    }
    let store = open_store(&cfg)?;
    let standby = |c: &Config| opts.standby || c.daemon.standby;
    let mut watchdog = notify::Watchdog::from_env();
    if opts.once {
        notify::ready("running one cycle");
        let out = watchdog
            .guard(cycle_once(
                &cfg,
                &store,
                standby(&cfg),
                observer,
                OffsetDateTime::now_utc(),
                shutdown,
            ))
            .await;
        notify::status(&notify::cycle_status(&out.report));
        if let Some(e) = &out.report.error {
            eprintln!(
                "tansync: the cycle failed: {}",
                nhs_model::escape::Escaped(e)
            );
        }
        return Ok(out.exit);
    }
    // Health and metrics, for as long as the loop runs (bound before the first cycle, so
    // a wrong address is an error at start, not a silent absence).
    if let Some(listen) = cfg.daemon.listen {
        let listener = http::Listener::bind(listen).await?;
        tracing::info!(listen = %listener.local_addr(), "serving /healthz and /metrics");
        tokio::spawn(listener.serve(
            observer.clone(),
            cfg.daemon.healthy_within,
            shutdown.clone(),
        ));
    }
    // Before READY=1, so a SIGHUP sent once systemd reports the unit started is heard.
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    if hup.is_none() {
        tracing::warn!("cannot listen for SIGHUP: the configuration will not be reloaded");
    }
    // State lock held, configuration loaded, listener bound: ready.
    notify::ready("started; the first cycle is running");
    // STOPPING=1 as soon as the stop begins, not once the cycle in flight has finished.
    let stopping = tokio::spawn({
        let shutdown = shutdown.clone();
        async move {
            shutdown.cancelled().await;
            notify::stopping();
        }
    });
    tracing::info!(
        mode = if standby(&cfg) { "standby" } else { "active" },
        state_dir = %cfg.state_dir.display(),
        "tansync run started"
    );
    loop {
        let started = OffsetDateTime::now_utc();
        let out = watchdog
            .guard(cycle_once(
                &cfg,
                &store,
                standby(&cfg),
                observer,
                started,
                shutdown,
            ))
            .await;
        notify::status(&notify::cycle_status(&out.report));
        if shutdown.is_cancelled() {
            break;
        }
        let Some(schedule) = cfg.daemon.schedule.clone() else {
            break;
        };
        let now = OffsetDateTime::now_utc().unix_timestamp();
        let at = schedule
            .next_after(started.unix_timestamp(), now)
            .unwrap_or(now + 60);
        let wait = Duration::from_secs(u64::try_from(at - now).unwrap_or(0));
        tracing::info!(
            next_in_seconds = wait.as_secs(),
            "waiting for the next cycle"
        );
        let sleep = tokio::time::sleep(wait);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = &mut sleep => break,
                () = watchdog.tick() => {}
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    notify::reloading();
                    cfg = reload(config_path, cfg);
                    notify::ready("waiting for the next cycle (configuration reload done: see the log)");
                }
            }
        }
        if shutdown.is_cancelled() {
            break;
        }
    }
    if shutdown.is_cancelled() {
        // Sent before the process exits, however soon after the signal that is.
        let _ = stopping.await;
    } else {
        stopping.abort();
    }
    tracing::info!("tansync run stopped");
    Ok(0)
}

/// The configuration at `path` if it is valid (and keeps the state directory, whose
/// lock this process holds), else `old`, with an error logged.
fn reload(path: &Path, old: Config) -> Config {
    match Config::load(path) {
        Ok(new) if new.state_dir != old.state_dir => {
            tracing::error!(
                file = %path.display(),
                "configuration not reloaded: state.dir cannot change while tansync run is running; keeping the old configuration"
            );
            old
        }
        Ok(new) if new.keytab() != old.keytab() => {
            // MIT krb5 reads the keytab's name from the environment, set once at start
            // while the process had one thread (`cli::main`).
            tracing::error!(
                file = %path.display(),
                "configuration not reloaded: source.auth or source.keytab changed, which needs a restart of tansync (the keytab is chosen at start); keeping the old configuration"
            );
            old
        }
        Ok(new) => {
            tracing::info!(file = %path.display(), "configuration reloaded");
            new
        }
        Err(e) => {
            tracing::error!(
                file = %path.display(),
                error = %e,
                "configuration not reloaded: it is not valid; keeping the old configuration"
            );
            old
        }
    }
}

/// How long `notify_command` may take.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(30);

/// Run `[daemon] notify_command` with a JSON summary of the held removals on stdin:
/// bounded in time; a failure is logged and never stops the loop.
async fn notify(cfg: &Config, out: &CycleOutcome) {
    let Some(cmd) = &cfg.daemon.notify_command else {
        return;
    };
    let summary = serde_json::json!({
        "event": if out.held.is_empty() { "held_removals_cleared" } else { "held_removals" },
        "agent_id": cfg.agent_id,
        "held": out.held.len(),
        "digest": out.report.held_digest,
        "approve_with": out.report.held_digest.as_ref().map(|d| format!("tansync approve-removals {d}")),
        "removals": out.held.iter().map(|(x, t, r)| serde_json::json!({"external_id": x, "target_id": t, "reason": r})).collect::<Vec<_>>(),
    });
    let run = async {
        use tokio::io::AsyncWriteExt;
        let mut child = tokio::process::Command::new(&cmd[0])
            .args(&cmd[1..])
            // tansync's own Kerberos settings (its keytab) are not the command's.
            .env_remove(crate::source::ldap::kerberos::CLIENT_KEYTAB_VAR)
            .env_remove(crate::source::ldap::kerberos::CCACHE_VAR)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(summary.to_string().as_bytes()).await?;
        }
        child.wait().await
    };
    match tokio::time::timeout(NOTIFY_TIMEOUT, run).await {
        Ok(Ok(st)) if st.success() => tracing::info!("notify_command ran"),
        Ok(Ok(st)) => tracing::error!(program = %cmd[0], status = %st, "notify_command failed"),
        Ok(Err(e)) => {
            tracing::error!(program = %cmd[0], error = %e, "notify_command could not run")
        }
        Err(_) => {
            tracing::error!(program = %cmd[0], "notify_command took longer than 30s and was stopped")
        }
    }
}

#[cfg(test)]
mod tests;
