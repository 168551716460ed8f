//! What continuous mode tells operators: the counters and gauges behind `GET /metrics`
//! and the last-cycle facts behind `GET /healthz` (names in README "Running
//! continuously"). The cycle loop reports into one shared [`Observer`]; the HTTP side
//! only reads it.

use crate::plan::{BlockReason, OpKind};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The `Content-Type` of [`Observer::render_metrics`].
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// `full` or `delta` (metric label `kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CycleKind {
    Full,
    Delta,
}

impl CycleKind {
    pub fn label(self) -> &'static str {
        match self {
            CycleKind::Full => "full",
            CycleKind::Delta => "delta",
        }
    }
}

/// How a cycle ended (metric label `result`): `ok` (everything settled), `partial`
/// (some operations failed or were quarantined), `failed` (no plan, or the run
/// stopped), `standby` (planned only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CycleResult {
    Ok,
    Partial,
    Failed,
    Standby,
}

impl CycleResult {
    pub fn label(self) -> &'static str {
        match self {
            CycleResult::Ok => "ok",
            CycleResult::Partial => "partial",
            CycleResult::Failed => "failed",
            CycleResult::Standby => "standby",
        }
    }
}

/// One finished cycle, as the loop reports it.
#[derive(Clone, Debug)]
pub struct CycleReport {
    pub kind: CycleKind,
    pub result: CycleResult,
    pub finished_at: SystemTime,
    pub duration: Duration,
    /// How long reading the source took.
    pub source_read: Duration,
    /// Why it failed (for `/healthz`), when it did.
    pub error: Option<String>,
    /// Operations by (kind, result): `provision`/`applied`, `remove`/`failed`, …
    pub operations: BTreeMap<(String, String), u64>,
    /// Blocked operations by reason code (the plan's `blocked[].reason`).
    pub blocked: BTreeMap<String, u64>,
    /// Objects quarantined after the cycle.
    pub quarantined: u64,
    /// Removals held by the mass-change guard, and the digest that approves them.
    pub held_removals: u64,
    pub held_digest: Option<String>,
    /// Time operations waited for the rate limiter.
    pub rate_limit_wait: Duration,
}

/// Shared between the cycle loop (writes) and the HTTP endpoints (read).
#[derive(Debug, Default)]
pub struct Observer {
    inner: Mutex<Seen>,
    metrics: Metrics,
}

#[derive(Debug, Default)]
struct Seen {
    cycles: BTreeMap<(CycleKind, CycleResult), u64>,
    operations: BTreeMap<(String, String), u64>,
    last: Option<CycleReport>,
    last_success: Option<SystemTime>,
    /// Every blocked reason a cycle has reported: a reason absent from the last cycle
    /// shows 0 rather than vanishing (or keeping a stale value).
    blocked_reasons: BTreeSet<String>,
}

impl Observer {
    /// Record a finished cycle.
    pub fn cycle(&self, report: CycleReport) {
        let mut s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        *s.cycles.entry((report.kind, report.result)).or_default() += 1;
        for (k, n) in &report.operations {
            *s.operations.entry(k.clone()).or_default() += n;
        }
        if matches!(report.result, CycleResult::Ok | CycleResult::Standby) {
            s.last_success = Some(report.finished_at);
        }
        if s.blocked_reasons.is_empty() {
            s.blocked_reasons
                .extend(BlockReason::ALL.iter().map(|r| r.code()));
        }
        s.blocked_reasons.extend(report.blocked.keys().cloned());
        // Under the same lock, so a scrape never sees half of two cycles' updates
        // interleaved from two reporters.
        self.metrics
            .record(&report, &s.blocked_reasons, s.last_success);
        s.last = Some(report);
    }

    /// What `GET /healthz` answers at `now`: `ok` (200) while the last cycle succeeded
    /// and finished within `healthy_within`; `degraded` (still 200) when it did but
    /// removals are held for approval, or some of its operations failed or were
    /// quarantined (`partial`); `failing` (503) when no cycle has finished yet, the last
    /// one failed, or it finished longer than `healthy_within` ago (the loop is stuck or
    /// stopped). The reason is scrubbed of DNs, addresses and phone numbers: monitoring
    /// systems keep it.
    pub fn health(&self, now: SystemTime, healthy_within: Duration) -> Health {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let last_success = s.last_success.map(rfc3339);
        let Some(last) = &s.last else {
            return Health {
                status: HealthStatus::Failing,
                reason: "no cycle has finished yet".into(),
                last_success,
                last_cycle: None,
                held_removals: 0,
                held_digest: None,
                quarantined: 0,
            };
        };
        let age = now.duration_since(last.finished_at).unwrap_or_default();
        let kind = last.kind.label();
        let (status, reason) = if age > healthy_within {
            (
                HealthStatus::Failing,
                format!(
                    "no cycle has finished for {}s (healthy_within is {}s): the cycle loop is stuck or stopped",
                    age.as_secs(),
                    healthy_within.as_secs()
                ),
            )
        } else if last.result == CycleResult::Failed {
            let why = last.error.as_deref().unwrap_or("no reason given");
            (
                HealthStatus::Failing,
                format!(
                    "the last {kind} cycle failed: {}",
                    nhs_model::redact::scrub(why)
                ),
            )
        } else if last.held_removals > 0 {
            (
                HealthStatus::Degraded,
                format!(
                    "{} removals are held by the mass-change guard; approve them with `tansync approve-removals {}`",
                    last.held_removals,
                    last.held_digest.as_deref().unwrap_or("DIGEST")
                ),
            )
        } else if last.result == CycleResult::Partial {
            (
                HealthStatus::Degraded,
                format!(
                    "the last {kind} cycle finished with operations that failed or were quarantined"
                ),
            )
        } else {
            let what = if last.result == CycleResult::Standby {
                "planned (standby: nothing written)"
            } else {
                "succeeded"
            };
            (
                HealthStatus::Ok,
                format!("the last {kind} cycle {what} {}s ago", age.as_secs()),
            )
        };
        Health {
            status,
            reason,
            last_success,
            last_cycle: Some(LastCycle {
                kind: kind.into(),
                result: last.result.label().into(),
                finished_at: rfc3339(last.finished_at),
            }),
            held_removals: last.held_removals,
            held_digest: last.held_digest.clone(),
            quarantined: last.quarantined,
        }
    }

    /// The Prometheus exposition for `GET /metrics` (OpenMetrics text, which Prometheus
    /// scrapes natively; serve it as [`METRICS_CONTENT_TYPE`]).
    pub fn render_metrics(&self) -> String {
        let _s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        // Writing to a String cannot fail; an encoder error would be a bug in a metric
        // type, and an empty scrape says so louder than a partial one.
        if prometheus_client::encoding::text::encode(&mut out, &self.metrics.registry).is_err() {
            out.clear();
        }
        out
    }

    /// Cycles so far by kind and result.
    pub fn cycles(&self) -> BTreeMap<(CycleKind, CycleResult), u64> {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .cycles
            .clone()
    }

    /// The last cycle reported, and when a cycle last succeeded.
    pub fn last(&self) -> (Option<CycleReport>, Option<SystemTime>) {
        let s = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (s.last.clone(), s.last_success)
    }
}

/// `status` of `GET /healthz`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    Ok,
    Degraded,
    Failing,
}

/// The body of `GET /healthz` (JSON).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Health {
    pub status: HealthStatus,
    pub reason: String,
    /// When a cycle last succeeded (RFC 3339), if one has.
    pub last_success: Option<String>,
    pub last_cycle: Option<LastCycle>,
    pub held_removals: u64,
    pub held_digest: Option<String>,
    pub quarantined: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastCycle {
    pub kind: String,
    pub result: String,
    pub finished_at: String,
}

impl Health {
    /// 200 while `ok` or `degraded`, 503 when `failing`.
    pub fn http_status(&self) -> u16 {
        match self.status {
            HealthStatus::Ok | HealthStatus::Degraded => 200,
            HealthStatus::Failing => 503,
        }
    }
}

fn rfc3339(t: SystemTime) -> String {
    crate::timefmt::rfc3339(time::OffsetDateTime::from(t))
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindResult {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Reason {
    reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

/// Cycle durations: 0.1 s doubling to about 55 minutes (16 buckets), which spans a delta
/// cycle of a few changes to a full reconcile of 100k people.
fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.1, 2.0, 16))
}

/// The metrics behind `GET /metrics`, registered once. Names as README "Health, metrics
/// and logs" lists them (`prometheus-client` appends `_total` to counters).
#[derive(Debug)]
struct Metrics {
    registry: Registry,
    cycles: Family<KindResult, Counter>,
    operations: Family<KindResult, Counter>,
    blocked: Family<Reason, Gauge>,
    quarantined: Gauge,
    held_removals: Gauge,
    last_success: FloatGauge,
    source_read: FloatGauge,
    rate_limit_wait: Counter<f64, AtomicU64>,
    cycle_duration: Family<Kind, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            cycles: Family::default(),
            operations: Family::default(),
            blocked: Family::default(),
            quarantined: Gauge::default(),
            held_removals: Gauge::default(),
            last_success: FloatGauge::default(),
            source_read: FloatGauge::default(),
            rate_limit_wait: Counter::default(),
            cycle_duration: Family::new_with_constructor(duration_histogram),
        };
        // Every kind and result from the start, so `rate()` and alerts on `failed` work
        // before the first failure.
        for kind in [CycleKind::Full, CycleKind::Delta] {
            for result in [
                CycleResult::Ok,
                CycleResult::Partial,
                CycleResult::Failed,
                CycleResult::Standby,
            ] {
                m.cycles.get_or_create_owned(&KindResult {
                    kind: kind.label().into(),
                    result: result.label().into(),
                });
            }
            m.cycle_duration.get_or_create_owned(&Kind {
                kind: kind.label().into(),
            });
        }
        for op in OpKind::ALL {
            for result in ["applied", "failed"] {
                m.operations.get_or_create_owned(&KindResult {
                    kind: op.name().into(),
                    result: result.into(),
                });
            }
        }
        for reason in BlockReason::ALL {
            m.blocked.get_or_create_owned(&Reason {
                reason: reason.code(),
            });
        }
        let mut m = m;
        let r = &mut m.registry;
        r.register(
            "tansync_cycles",
            "Cycles finished, by kind (full, delta) and result (ok, partial, failed, standby)",
            m.cycles.clone(),
        );
        r.register(
            "tansync_operations",
            "Directory operations, by kind (provision, update, ...) and result",
            m.operations.clone(),
        );
        r.register(
            "tansync_blocked",
            "Operations the last cycle blocked, by reason code (the plan's blocked[].reason)",
            m.blocked.clone(),
        );
        r.register(
            "tansync_quarantined",
            "Objects in quarantine after the last cycle",
            m.quarantined.clone(),
        );
        r.register(
            "tansync_held_removals",
            "Removals the mass-change guard holds for approval (tansync approve-removals)",
            m.held_removals.clone(),
        );
        r.register(
            "tansync_last_success_timestamp_seconds",
            "When a cycle last succeeded (Unix time; 0: none yet)",
            m.last_success.clone(),
        );
        r.register(
            "tansync_source_read_seconds",
            "How long the last cycle took to read the source",
            m.source_read.clone(),
        );
        r.register(
            "tansync_rate_limit_wait_seconds",
            "Time operations waited for the directory rate limiter",
            m.rate_limit_wait.clone(),
        );
        r.register(
            "tansync_cycle_duration_seconds",
            "Cycle durations, by kind",
            m.cycle_duration.clone(),
        );
        m
    }
}

fn unix_seconds(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Metrics {
    fn record(
        &self,
        report: &CycleReport,
        blocked_reasons: &BTreeSet<String>,
        last_success: Option<SystemTime>,
    ) {
        let kind = report.kind.label().to_string();
        self.cycles
            .get_or_create(&KindResult {
                kind: kind.clone(),
                result: report.result.label().into(),
            })
            .inc();
        for ((op, result), n) in &report.operations {
            self.operations
                .get_or_create(&KindResult {
                    kind: op.clone(),
                    result: result.clone(),
                })
                .inc_by(*n);
        }
        for reason in blocked_reasons {
            let n = report.blocked.get(reason).copied().unwrap_or(0);
            self.blocked
                .get_or_create(&Reason {
                    reason: reason.clone(),
                })
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.quarantined
            .set(i64::try_from(report.quarantined).unwrap_or(i64::MAX));
        self.held_removals
            .set(i64::try_from(report.held_removals).unwrap_or(i64::MAX));
        if let Some(t) = last_success {
            self.last_success.set(unix_seconds(t));
        }
        self.source_read.set(report.source_read.as_secs_f64());
        self.rate_limit_wait
            .inc_by(report.rate_limit_wait.as_secs_f64());
        self.cycle_duration
            .get_or_create(&Kind { kind })
            .observe(report.duration.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_parse::{Scrape, Value};

    const T0: u64 = 1_795_000_000;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn report(kind: CycleKind, result: CycleResult, finished: u64) -> CycleReport {
        CycleReport {
            kind,
            result,
            finished_at: at(finished),
            duration: Duration::from_millis(1500),
            source_read: Duration::from_millis(250),
            error: None,
            operations: BTreeMap::new(),
            blocked: BTreeMap::new(),
            quarantined: 0,
            held_removals: 0,
            held_digest: None,
            rate_limit_wait: Duration::ZERO,
        }
    }

    fn parse(text: &str) -> Scrape {
        Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).unwrap()
    }

    /// The value of the one sample `metric{labels}`.
    fn value(s: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
        let found: Vec<f64> = s
            .samples
            .iter()
            .filter(|x| {
                x.metric == metric && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v))
            })
            .map(|x| match x.value {
                Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .collect();
        assert_eq!(found.len(), 1, "{metric}{labels:?}: {found:?}");
        found[0]
    }

    #[test]
    fn metrics_have_every_documented_name_with_help_and_type() {
        let o = Observer::default();
        let text = o.render_metrics();
        for (family, kind) in [
            ("tansync_cycles", "counter"),
            ("tansync_operations", "counter"),
            ("tansync_blocked", "gauge"),
            ("tansync_quarantined", "gauge"),
            ("tansync_held_removals", "gauge"),
            ("tansync_last_success_timestamp_seconds", "gauge"),
            ("tansync_source_read_seconds", "gauge"),
            ("tansync_rate_limit_wait_seconds", "counter"),
            ("tansync_cycle_duration_seconds", "histogram"),
        ] {
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family}: {text}"
            );
            assert!(
                text.contains(&format!("# TYPE {family} {kind}\n")),
                "{family}: {text}"
            );
        }
        assert!(text.ends_with("# EOF\n"), "{text}");
        // Every kind and result counted from the start, at zero.
        let s = parse(&text);
        for kind in ["full", "delta"] {
            for result in ["ok", "partial", "failed", "standby"] {
                assert_eq!(
                    value(
                        &s,
                        "tansync_cycles_total",
                        &[("kind", kind), ("result", result)]
                    ),
                    0.0
                );
            }
        }
        assert_eq!(
            value(&s, "tansync_last_success_timestamp_seconds", &[]),
            0.0
        );
    }

    #[test]
    fn cycles_are_counted_and_gauges_show_the_last_cycle() {
        let o = Observer::default();
        let mut a = report(CycleKind::Full, CycleResult::Ok, T0);
        a.operations
            .insert(("provision".into(), "applied".into()), 3);
        a.operations.insert(("remove".into(), "failed".into()), 1);
        a.blocked.insert("account_cap".into(), 2);
        a.blocked.insert("mass_change_threshold".into(), 7);
        a.quarantined = 1;
        a.held_removals = 7;
        a.rate_limit_wait = Duration::from_millis(500);
        o.cycle(a);
        let mut b = report(CycleKind::Delta, CycleResult::Failed, T0 + 60);
        b.operations
            .insert(("provision".into(), "applied".into()), 2);
        b.blocked.insert("account_cap".into(), 1);
        b.source_read = Duration::from_millis(50);
        b.duration = Duration::from_secs(30);
        b.rate_limit_wait = Duration::from_millis(250);
        o.cycle(b);
        let s = parse(&o.render_metrics());
        let c = |k, r| value(&s, "tansync_cycles_total", &[("kind", k), ("result", r)]);
        assert_eq!(
            (c("full", "ok"), c("delta", "failed"), c("delta", "ok")),
            (1.0, 1.0, 0.0)
        );
        let op = |k, r| {
            value(
                &s,
                "tansync_operations_total",
                &[("kind", k), ("result", r)],
            )
        };
        assert_eq!(
            (op("provision", "applied"), op("remove", "failed")),
            (5.0, 1.0)
        );
        // Gauges: the last cycle's; a reason it no longer reports reads 0.
        assert_eq!(
            value(&s, "tansync_blocked", &[("reason", "account_cap")]),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "tansync_blocked",
                &[("reason", "mass_change_threshold")]
            ),
            0.0
        );
        assert_eq!(value(&s, "tansync_quarantined", &[]), 0.0);
        assert_eq!(value(&s, "tansync_held_removals", &[]), 0.0);
        assert_eq!(value(&s, "tansync_source_read_seconds", &[]), 0.05);
        // The failed cycle did not move the last success.
        assert_eq!(
            value(&s, "tansync_last_success_timestamp_seconds", &[]),
            T0 as f64
        );
        assert_eq!(
            value(&s, "tansync_rate_limit_wait_seconds_total", &[]),
            0.75
        );
        let hist = s
            .samples
            .iter()
            .find(|x| {
                x.metric == "tansync_cycle_duration_seconds"
                    && x.labels.get("kind") == Some("delta")
            })
            .unwrap();
        let Value::Histogram(buckets) = &hist.value else {
            panic!("not a histogram: {hist:?}")
        };
        let le = |b: f64| buckets.iter().find(|h| h.less_than == b).map(|h| h.count);
        assert_eq!((le(25.6), le(51.2)), (Some(0.0), Some(1.0)), "{buckets:?}");
        assert_eq!(
            value(
                &s,
                "tansync_cycle_duration_seconds_count",
                &[("kind", "full")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &s,
                "tansync_cycle_duration_seconds_sum",
                &[("kind", "delta")]
            ),
            30.0
        );
    }

    #[test]
    fn label_values_are_escaped() {
        let o = Observer::default();
        let mut a = report(CycleKind::Full, CycleResult::Ok, T0);
        a.blocked.insert("odd\"reason\\with\nnewline".into(), 1);
        o.cycle(a);
        let text = o.render_metrics();
        assert!(
            text.contains(r#"tansync_blocked{reason="odd\"reason\\with\nnewline"} 1"#),
            "{text}"
        );
    }

    const HOUR: Duration = Duration::from_secs(3600);

    #[test]
    fn health_states() {
        let o = Observer::default();
        let h = o.health(at(T0), HOUR);
        assert_eq!((h.status, h.http_status()), (HealthStatus::Failing, 503));
        assert_eq!(h.reason, "no cycle has finished yet");
        assert_eq!(h.last_cycle, None);

        o.cycle(report(CycleKind::Full, CycleResult::Ok, T0));
        let h = o.health(at(T0 + 120), HOUR);
        assert_eq!(
            (h.status, h.http_status()),
            (HealthStatus::Ok, 200),
            "{h:?}"
        );
        assert_eq!(h.reason, "the last full cycle succeeded 120s ago");
        assert_eq!(
            h.last_cycle,
            Some(LastCycle {
                kind: "full".into(),
                result: "ok".into(),
                finished_at: "2026-11-18T11:06:40Z".into(),
            })
        );
        assert_eq!(h.last_success.as_deref(), Some("2026-11-18T11:06:40Z"));
        // Too long without a cycle: the loop is stuck.
        let h = o.health(at(T0 + 3601), HOUR);
        assert_eq!((h.status, h.http_status()), (HealthStatus::Failing, 503));
        assert!(
            h.reason.contains("no cycle has finished for 3601s"),
            "{}",
            h.reason
        );

        // Held removals: still 200, degraded, with the digest to approve.
        let mut held = report(CycleKind::Delta, CycleResult::Ok, T0 + 300);
        held.held_removals = 12;
        held.held_digest = Some("sha256:abc".into());
        o.cycle(held);
        let h = o.health(at(T0 + 310), HOUR);
        assert_eq!((h.status, h.http_status()), (HealthStatus::Degraded, 200));
        assert!(h.reason.contains("12 removals are held"), "{}", h.reason);
        assert!(
            h.reason.contains("tansync approve-removals sha256:abc"),
            "{}",
            h.reason
        );
        assert_eq!(
            (h.held_removals, h.held_digest.as_deref()),
            (12, Some("sha256:abc"))
        );

        o.cycle(report(CycleKind::Delta, CycleResult::Partial, T0 + 400));
        let h = o.health(at(T0 + 410), HOUR);
        assert_eq!((h.status, h.http_status()), (HealthStatus::Degraded, 200));

        // A failed cycle: 503, the reason scrubbed of personal data.
        let mut failed = report(CycleKind::Delta, CycleResult::Failed, T0 + 500);
        failed.error = Some("CN=Ann Lee,OU=Staff,DC=x: mail ann.lee@x.example refused".into());
        o.cycle(failed);
        let h = o.health(at(T0 + 510), HOUR);
        assert_eq!((h.status, h.http_status()), (HealthStatus::Failing, 503));
        assert_eq!(
            h.reason,
            "the last delta cycle failed: [redacted]: mail [redacted] refused"
        );
        assert_eq!(h.last_success.as_deref(), Some("2026-11-18T11:11:40Z"));

        // Standby counts as success.
        o.cycle(report(CycleKind::Full, CycleResult::Standby, T0 + 600));
        let h = o.health(at(T0 + 600), HOUR);
        assert_eq!(h.status, HealthStatus::Ok);
        assert!(h.reason.contains("standby"), "{}", h.reason);
        let body = serde_json::to_value(&h).unwrap();
        assert_eq!(body["status"], "ok");
        assert_eq!(body["last_cycle"]["result"], "standby");
    }
}
