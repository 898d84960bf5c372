//! `cambio serve --metrics`: the Prometheus endpoint and the health probes, against a real nats-server and
//! the real binary. The figures are checked against what the service itself published and answered.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use cambio::nats::LocalServer;
use common::{Serve, collect, free_port, http_get, metric, metrics_until, request, temp_dir, wait_ready, walk};
use serde_json::Value;

const CONFIG: &str = "[serve]\nreport_interval_secs = 0.2\n[metrics]\ninstances_every_secs = 0.5\n";

/// Label names the catalogue allows (docs/metrics.md): bounded sets, never a client, a tick or free text.
const LABELS: [&str; 16] = [
    "pair",
    "horizon",
    "detector",
    "signal",
    "reason",
    "dimension",
    "endpoint",
    "interval",
    "segment",
    "period",
    "event",
    "reference",
    "le",
    "name",
    "version",
    "config",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_agree_with_what_serve_published() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("metrics");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let serve = Serve::start_with(&server.url(), CONFIG, &dir, &["--metrics", &addr]);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let url = format!("http://{addr}/metrics");
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    let mut quarantine = client.subscribe("fx.quarantine.USDMXN").await.unwrap();

    // 2,000 ticks one second apart, with a duplicate, a malformed line and a crossed quote.
    let mut lines = walk(2_000, 11);
    lines.insert(500, lines[499].clone());
    lines.insert(1_000, "{\"pair\":\"USDMXN\",\"ts\":".to_string());
    lines.insert(
        1_500,
        r#"{"pair":"USDMXN","ts":"2024-03-04T00:30:00Z","bid":17.2,"ask":17.1,"source":"test"}"#.to_string(),
    );
    common::publish_replayed(&client, "USDMXN", &lines).await;
    let forecasts = collect(&mut preds, 2_000, Duration::from_secs(60)).await;
    let quarantined = collect(&mut quarantine, 3, Duration::from_secs(20)).await;
    assert_eq!(forecasts.len() + quarantined.len(), lines.len(), "{}", serve.log());
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    for q in &quarantined {
        let v: Value = serde_json::from_slice(&q.payload).unwrap();
        *reasons.entry(v["reason"].as_str().unwrap().to_string()).or_default() += 1;
    }

    // Queries, counted per endpoint.
    for _ in 0..5 {
        let (err, _) = request(&client, "fx.query.USDMXN", "").await;
        assert!(!err);
    }
    let (err, _) = request(&client, "fx.query.EURJPY", "").await;
    assert!(err, "an unknown pair is an error reply");

    let pair = [("pair", "USDMXN")];
    let n = forecasts.len() as f64;
    let text = metrics_until(&url, Duration::from_secs(20), "every tick and query counted", |t| {
        metric(t, "cambio_forecasts_published_total", &pair) == Some(n)
            && metric(t, "cambio_requests_total", &[("endpoint", "query")]) == Some(6.0)
    })
    .await;
    let status = common::status_until(&client, "USDMXN", &serve, Duration::from_secs(10), "every tick", |v| {
        v["ticks"].as_u64() == Some(lines.len() as u64)
    })
    .await;
    // The status snapshot is refreshed at most every 100 ms: read the metrics again after the status showed
    // every tick, so both describe the same engine state.
    let text = if metric(
        &text,
        "cambio_quality_score",
        &[("pair", "USDMXN"), ("dimension", "validity")],
    )
    .is_none()
    {
        metrics_until(&url, Duration::from_secs(10), "quality", |t| {
            metric(
                t,
                "cambio_quality_score",
                &[("pair", "USDMXN"), ("dimension", "validity")],
            )
            .is_some()
        })
        .await
    } else {
        http_get(&url).await.unwrap().1
    };

    // Ticks in, forecasts and quarantines out, as published.
    assert_eq!(
        metric(&text, "cambio_ticks_received_total", &pair),
        Some(lines.len() as f64)
    );
    assert_eq!(metric(&text, "cambio_ticks_accepted_total", &pair), Some(n));
    for (reason, count) in &reasons {
        assert_eq!(
            metric(
                &text,
                "cambio_ticks_quarantined_total",
                &[("pair", "USDMXN"), ("reason", reason)]
            ),
            Some(*count as f64),
            "{reason}"
        );
    }
    assert_eq!(
        metric(&text, "cambio_tick_latency_seconds_count", &pair),
        Some(lines.len() as f64)
    );
    assert_eq!(
        metric(&text, "cambio_request_errors_total", &[("endpoint", "query")]),
        Some(1.0)
    );
    assert_eq!(
        metric(&text, "cambio_query_latency_seconds_count", &[("endpoint", "query")]),
        Some(6.0)
    );

    // Quality, drift and accuracy equal the status reply's (one engine state, two views of it).
    for d in status["quality"]["dimensions"].as_array().unwrap() {
        let name = d["name"].as_str().unwrap();
        assert_eq!(
            metric(
                &text,
                "cambio_quality_score",
                &[("pair", "USDMXN"), ("dimension", name)]
            ),
            d["score"].as_f64(),
            "{name}"
        );
    }
    let overall = match status["quality"]["overall"].as_str().unwrap() {
        "ok" => 0.0,
        "warn" => 1.0,
        _ => 2.0,
    };
    assert_eq!(metric(&text, "cambio_quality_status", &pair), Some(overall));
    for sig in status["drift"].as_array().unwrap() {
        for d in sig["detectors"].as_array().unwrap() {
            let labels = [
                ("pair", "USDMXN"),
                ("signal", sig["signal"].as_str().unwrap()),
                ("detector", d["name"].as_str().unwrap()),
            ];
            assert_eq!(
                metric(&text, "cambio_drift_statistic", &labels),
                d["statistic"].as_f64()
            );
            assert_eq!(
                metric(&text, "cambio_drift_threshold", &labels),
                d["threshold"].as_f64()
            );
        }
    }
    // The accuracy window (1 h of tick time by default) is longer than this 2,000 s stream: it holds every
    // forecast scored, so it equals the status reply's cumulative figures.
    for h in status["horizons"].as_array().unwrap() {
        let horizon = h["horizon"].as_str().unwrap();
        let labels = [("pair", "USDMXN"), ("horizon", horizon)];
        assert_eq!(
            metric(&text, "cambio_forecast_scored", &labels),
            h["n"].as_f64(),
            "{horizon}"
        );
        if h["n"].as_u64().unwrap() == 0 {
            assert_eq!(metric(&text, "cambio_forecast_rmse_ratio", &labels), None);
            continue;
        }
        let close = |name: &str, extra: Option<(&str, &str)>, want: f64| {
            let mut l = labels.to_vec();
            l.extend(extra);
            let got = metric(&text, name, &l).unwrap_or(f64::NAN);
            assert!(
                (got - want).abs() <= 1e-9 * want.abs().max(1.0),
                "{name} {horizon}: {got} vs {want}"
            );
        };
        close("cambio_forecast_rmse_ratio", None, h["rmse_ratio"].as_f64().unwrap());
        close(
            "cambio_forecast_coverage_ratio",
            Some(("interval", "95")),
            h["coverage95"].as_f64().unwrap(),
        );
        close(
            "cambio_forecast_coverage_ratio",
            Some(("interval", "80")),
            h["coverage80"].as_f64().unwrap(),
        );
        close("cambio_forecast_winkler95", None, h["winkler95"].as_f64().unwrap());
    }
    // The model in service and the latest forecast.
    let model = &status["model"];
    let info = [
        ("pair", "USDMXN"),
        ("name", model["name"].as_str().unwrap()),
        ("version", &model["version"].to_string()),
        ("config", model["config"].as_str().unwrap()),
    ];
    assert_eq!(metric(&text, "cambio_model_info", &info), Some(1.0));
    let last: Value = serde_json::from_slice(&forecasts.last().unwrap().payload).unwrap();
    let mid = metric(&text, "cambio_mid_price", &pair).unwrap();
    assert!(
        (mid - last["mid"].as_f64().unwrap()).abs() < 1e-9,
        "{mid} vs {}",
        last["mid"]
    );

    // The service itself.
    assert_eq!(metric(&text, "cambio_pairs", &[]), Some(1.0));
    assert_eq!(metric(&text, "cambio_nats_connected", &[]), Some(1.0));
    assert_eq!(metric(&text, "cambio_ready", &[]), Some(1.0));
    assert!(metric(&text, "cambio_process_resident_memory_bytes", &[]).unwrap() > 1e6);
    assert!(metric(&text, "cambio_process_threads", &[]).unwrap() >= 2.0);
    assert_eq!(
        metric(&text, "cambio_build_info", &[("version", env!("CARGO_PKG_VERSION"))]),
        Some(1.0)
    );

    // Bounded cardinality: every label is one of the catalogue's, and no tick's content is a label value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((_, rest)) = line.split_once('{') else {
            continue;
        };
        let labels = rest.rsplit_once('}').unwrap().0;
        for kv in labels.split("\",") {
            let (k, v) = kv.split_once("=\"").unwrap();
            assert!(LABELS.contains(&k), "label {k} in {line}");
            assert!(!v.contains("2024-03-04"), "a tick's time as a label value: {line}");
        }
    }
    // The exposition passes Prometheus's own linter.
    common::promtool_check_metrics(&text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_readiness_follow_the_connection() {
    let mut server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("readyz");
    let addr = format!("127.0.0.1:{}", free_port());
    let serve = Serve::start_with(&server.url(), CONFIG, &dir, &["--metrics", &addr]);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    assert_eq!(http_get(&format!("http://{addr}/healthz")).await.unwrap().0, 200);
    assert_eq!(http_get(&format!("http://{addr}/readyz")).await.unwrap().0, 200);
    assert_eq!(http_get(&format!("http://{addr}/nothing")).await.unwrap().0, 404);
    // OpenMetrics to a client that asks for it.
    let open = cambio::sources::http::client()
        .get(format!("http://{addr}/metrics"))
        .header("Accept", "application/openmetrics-text; version=1.0.0")
        .send()
        .await
        .unwrap();
    assert!(
        open.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    assert!(open.text().await.unwrap().ends_with("# EOF\n"));

    // NATS gone: alive, not ready.
    server.stop();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (code, _) = http_get(&format!("http://{addr}/readyz")).await.unwrap();
        if code == 503 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "readyz still 200 without NATS\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(http_get(&format!("http://{addr}/healthz")).await.unwrap().0, 200);
    let text = http_get(&format!("http://{addr}/metrics")).await.unwrap().1;
    assert_eq!(metric(&text, "cambio_nats_connected", &[]), Some(0.0));
    assert_eq!(metric(&text, "cambio_ready", &[]), Some(0.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_on_the_bus_are_counted() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("instances");
    let a = format!("127.0.0.1:{}", free_port());
    let b = format!("127.0.0.1:{}", free_port());
    let sa = Serve::start_with(&server.url(), CONFIG, &dir, &["--metrics", &a]);
    let sb = Serve::start_with(&server.url(), CONFIG, &dir, &["--metrics", &b]);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &sa).await;
    wait_ready(&client, &sb).await;
    for addr in [&a, &b] {
        metrics_until(
            &format!("http://{addr}/metrics"),
            Duration::from_secs(20),
            "two instances",
            |t| metric(t, "cambio_instances", &[]) == Some(2.0),
        )
        .await;
    }
    drop(sb);
    metrics_until(
        &format!("http://{a}/metrics"),
        Duration::from_secs(20),
        "one instance",
        |t| metric(t, "cambio_instances", &[]) == Some(1.0),
    )
    .await;
}

#[test]
fn a_metrics_address_in_use_stops_serve_at_start() {
    let server = LocalServer::start(false, None).unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["serve", "--nats", &server.url(), "--metrics", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("metrics endpoint: cannot listen on {addr}")) && stderr.contains("in use"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_accuracy_window_slides_on_tick_time_however_fast_ticks_come() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("window");
    let addr = format!("127.0.0.1:{}", free_port());
    let config = "[serve]\nreport_interval_secs = 0.2\n[metrics]\naccuracy_window_secs = 100\n";
    let serve = Serve::start_with(&server.url(), config, &dir, &["--metrics", &addr]);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    // 2,000 ticks one second apart, published as fast as the client goes (a replay or a backlog).
    let lines = walk(2_000, 5);
    common::publish_replayed(&client, "USDMXN", &lines).await;
    assert_eq!(collect(&mut preds, 2_000, Duration::from_secs(60)).await.len(), 2_000);
    // A window of 100 s of tick time with a snapshot every 100/30 s: the 1-step forecasts scored in it are
    // 100 to 104, whatever the wall-clock pace.
    let labels = [("pair", "USDMXN"), ("horizon", "1step")];
    let text = metrics_until(
        &format!("http://{addr}/metrics"),
        Duration::from_secs(10),
        "the window",
        |t| {
            metric(t, "cambio_ticks_received_total", &[("pair", "USDMXN")]) == Some(2_000.0)
                && metric(t, "cambio_forecast_scored", &labels).is_some()
        },
    )
    .await;
    let scored = metric(&text, "cambio_forecast_scored", &labels).unwrap();
    assert!((100.0..=104.0).contains(&scored), "{scored}\n{text}");
}
