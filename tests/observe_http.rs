//! The operators' endpoint over real TCP: `serve` on port 0 answers `GET /healthz` (200
//! or 503 with a JSON reason) and `GET /metrics` (Prometheus text, parsed back), 404 for
//! other paths, 405 for other methods, refuses an oversized request head, and stops on
//! the cancellation token.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tansync::daemon::http::{Listener, MAX_HEAD_BYTES};
use tansync::daemon::observe::{CycleKind, CycleReport, CycleResult, Observer};
use tokio_util::sync::CancellationToken;

fn client() -> reqwest::Client {
    // reqwest is built without a default crypto provider: it needs a rustls
    // configuration even for plain http.
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("rustls protocol versions")
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .tls_backend_preconfigured(tls)
        .build()
        .expect("HTTP client")
}

fn report(result: CycleResult, held: u64) -> CycleReport {
    let mut operations = BTreeMap::new();
    operations.insert(("provision".to_string(), "applied".to_string()), 4);
    let mut blocked = BTreeMap::new();
    blocked.insert("account_cap".to_string(), 2);
    CycleReport {
        kind: CycleKind::Delta,
        result,
        finished_at: SystemTime::now(),
        duration: Duration::from_millis(800),
        source_read: Duration::from_millis(120),
        error: (result == CycleResult::Failed).then(|| "the directory answered 503".into()),
        operations,
        blocked,
        quarantined: 1,
        held_removals: held,
        held_digest: (held > 0).then(|| "sha256:feed".into()),
        rate_limit_wait: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn healthz_and_metrics_over_tcp() {
    let observer = Arc::new(Observer::default());
    let cancel = CancellationToken::new();
    let listener = Listener::bind("127.0.0.1:0".parse().unwrap())
        .await
        .expect("bind");
    let addr = listener.local_addr();
    assert_ne!(addr.port(), 0);
    let server =
        tokio::spawn(listener.serve(observer.clone(), Duration::from_secs(3600), cancel.clone()));
    let http = client();
    let base = format!("http://{addr}");
    let health = || async {
        let r = http.get(format!("{base}/healthz")).send().await.unwrap();
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "application/json"
        );
        let code = r.status().as_u16();
        (code, r.json::<serde_json::Value>().await.unwrap())
    };

    // No cycle yet: failing.
    let (code, body) = health().await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["status"], "failing");
    assert_eq!(body["reason"], "no cycle has finished yet");
    assert_eq!(body["last_cycle"], serde_json::Value::Null);

    observer.cycle(report(CycleResult::Ok, 0));
    let (code, body) = health().await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["status"], "ok");
    assert_eq!(body["last_cycle"]["kind"], "delta");
    assert_eq!(body["last_cycle"]["result"], "ok");
    assert!(body["last_success"].is_string(), "{body}");

    observer.cycle(report(CycleResult::Ok, 60));
    let (code, body) = health().await;
    assert_eq!((code, &body["status"]), (200, &"degraded".into()), "{body}");
    assert_eq!(body["held_removals"], 60);
    assert_eq!(body["held_digest"], "sha256:feed");

    observer.cycle(report(CycleResult::Failed, 0));
    let (code, body) = health().await;
    assert_eq!((code, &body["status"]), (503, &"failing".into()), "{body}");
    assert_eq!(
        body["reason"],
        "the last delta cycle failed: the directory answered 503"
    );

    // Metrics: parsed back with a Prometheus text parser.
    let r = http.get(format!("{base}/metrics")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        r.headers()
    );
    let text = r.text().await.unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let value = |metric: &str, labels: &[(&str, &str)]| -> f64 {
        let s = scrape
            .samples
            .iter()
            .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .unwrap_or_else(|| panic!("no {metric}{labels:?} in {text}"));
        match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            ref other => panic!("{metric}: {other:?}"),
        }
    };
    assert_eq!(
        value(
            "tansync_cycles_total",
            &[("kind", "delta"), ("result", "ok")]
        ),
        2.0
    );
    assert_eq!(
        value(
            "tansync_cycles_total",
            &[("kind", "delta"), ("result", "failed")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "tansync_operations_total",
            &[("kind", "provision"), ("result", "applied")]
        ),
        12.0
    );
    assert_eq!(value("tansync_blocked", &[("reason", "account_cap")]), 2.0);
    assert_eq!(value("tansync_quarantined", &[]), 1.0);
    assert_eq!(value("tansync_held_removals", &[]), 0.0);
    assert!(value("tansync_last_success_timestamp_seconds", &[]) > 1.7e9);
    assert_eq!(value("tansync_source_read_seconds", &[]), 0.12);
    assert!((value("tansync_rate_limit_wait_seconds_total", &[]) - 0.9).abs() < 1e-9);
    assert_eq!(
        value("tansync_cycle_duration_seconds_count", &[("kind", "delta")]),
        3.0
    );

    // Nothing else is served.
    let r = http.get(format!("{base}/")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http
        .get(format!("{base}/metrics/../etc/passwd"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    let r = http.post(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 405);
    assert_eq!(r.headers()["allow"], "GET");

    // An oversized request head is refused, not buffered.
    let big = addr;
    let answer = tokio::task::spawn_blocking(move || {
        let mut s = std::net::TcpStream::connect(big).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let head = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
            "a".repeat(4 * MAX_HEAD_BYTES)
        );
        // The server may close before it has read everything: a write error is fine.
        let _ = s.write_all(head.as_bytes());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    })
    .await
    .unwrap();
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
        "{answer}"
    );

    // Stops on the token, and the port is released.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops when cancelled")
        .unwrap();
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "nothing listens on {addr} after the stop"
    );
}

#[tokio::test]
async fn serve_names_the_address_it_cannot_bind() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let e = tansync::daemon::http::serve(
        addr,
        Arc::new(Observer::default()),
        Duration::from_secs(60),
        CancellationToken::new(),
    )
    .await
    .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains(&format!("[daemon] listen = \"{addr}\": cannot listen")),
        "{m}"
    );
}
