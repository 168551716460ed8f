//! What `tansync run` tells systemd (`Type=notify`, `sd_notify(3)` over the `sd-notify`
//! crate): `READY=1` once the state lock is held, the configuration loaded and the
//! listener bound; a `STATUS=` line per cycle; `RELOADING=1` … `READY=1` around a
//! SIGHUP reload; `STOPPING=1` on SIGTERM/SIGINT; and `WATCHDOG=1` at half the unit's
//! `WatchdogSec=` from the cycle loop's own task (see [`Watchdog`]), so a loop that is
//! stuck stops pinging and systemd restarts it.
//!
//! Everything here is a no-op without `NOTIFY_SOCKET` (or `WATCHDOG_USEC`), and a
//! message that cannot be sent is logged, never an error: systemd's bookkeeping must not
//! stop provisioning.

use super::observe::CycleReport;
use sd_notify::NotifyState;
use std::time::Duration;

/// Send `states` to the service manager, if there is one.
fn send(states: &[NotifyState<'_>]) {
    // `false`: keep NOTIFY_SOCKET, the loop notifies for as long as it runs.
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify the service manager (NOTIFY_SOCKET)");
    }
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` (with `MONOTONIC_USEC`, which `Type=notify-reload` asks for) before the
/// configuration is read again; [`ready`] after.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`: a graceful stop has begun (requests in flight finish first).
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: finishing the requests in flight"),
    ]);
}

/// A `STATUS=` line.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// The status line a finished cycle leaves: kind, result and counts.
pub fn cycle_status(r: &CycleReport) -> String {
    let ops: u64 = r.operations.values().sum();
    let blocked: u64 = r.blocked.values().sum();
    let mut s = format!(
        "last cycle: {} {}, {ops} operation(s), {blocked} blocked, {} quarantined, {} held removal(s)",
        r.kind.label(),
        r.result.label(),
        r.quarantined,
        r.held_removals,
    );
    if r.error.is_some() {
        s.push_str("; it failed (see the log)");
    }
    s
}

/// The watchdog: `WATCHDOG=1` every half `WATCHDOG_USEC`, sent by the cycle loop itself
/// ([`Watchdog::guard`] around a cycle, [`Watchdog::tick`] in the wait between cycles),
/// never by a task of its own that would go on pinging for a loop that is stuck.
pub struct Watchdog {
    interval: Option<tokio::time::Interval>,
}

impl Watchdog {
    /// From `WATCHDOG_USEC` (and `WATCHDOG_PID`, which must be this process); off when
    /// they are not set.
    pub fn from_env() -> Watchdog {
        let mut usec = 0;
        let interval = sd_notify::watchdog_enabled(false, &mut usec)
            .then(|| Duration::from_micros(usec / 2))
            .filter(|d| !d.is_zero())
            .map(|d| {
                let mut i = tokio::time::interval(d);
                i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                i
            });
        if let Some(i) = &interval {
            tracing::info!(
                every_ms = u64::try_from(i.period().as_millis()).unwrap_or(u64::MAX),
                "systemd watchdog on"
            );
        }
        Watchdog { interval }
    }

    /// Wait for the next ping's time and send it; never returns when the watchdog is off.
    pub async fn tick(&mut self) {
        match &mut self.interval {
            Some(i) => {
                i.tick().await;
                send(&[NotifyState::Watchdog]);
            }
            None => std::future::pending().await,
        }
    }

    /// Run `work`, pinging while it runs.
    pub async fn guard<T>(&mut self, work: impl std::future::Future<Output = T>) -> T {
        tokio::pin!(work);
        loop {
            tokio::select! {
                out = &mut work => return out,
                () = self.tick() => {}
            }
        }
    }
}
