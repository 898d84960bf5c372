//! Business events against a real nats-server and the real `cambio serve` binary: exact figures in the stats
//! reply (per segment, `other` and `all`, distinct clients, quote distance against a forecast made by
//! publishing ticks first), refused events quarantined with their reasons while serve keeps running, no
//! masking key refused with a clear error, and the masking search: a recognisable client identifier sent in
//! every way it can be sent appears in none of serve's outputs (stdout, stderr, every message on the bus,
//! every reply, /metrics, every file written).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cambio::nats::LocalServer;
use futures_util::StreamExt;
use serde_json::{Value, json};

mod common;
use common::*;

const KEY: &str = "business-test-masking-key-0123456789";
const EVENT_TS: i64 = 1_709_546_400_000_000; // 2024-03-04T10:00:00Z
const MIN_US: i64 = 60_000_000;

/// A `cambio serve` child with its own environment; stdout and stderr in files of `dir`.
struct Child2 {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Child2 {
    fn start(url: &str, config: &str, dir: &Path, env: &[(&str, &str)], extra: &[&str], log: &str) -> Child2 {
        let cfg = dir.join("cambio.toml");
        std::fs::write(&cfg, config).unwrap();
        let (stdout, stderr) = (dir.join("serve.stdout"), dir.join("serve.stderr"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cambio"));
        cmd.args(["serve", "--nats", url, "--config"])
            .arg(&cfg)
            .args(extra)
            .env_remove("CAMBIO_MASK_KEY")
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        Child2 {
            child: cmd.spawn().unwrap(),
            stdout,
            stderr,
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// SIGTERM, then the exit code (bounded wait).
    fn terminate(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait(Duration::from_secs(30))
    }

    fn wait(&mut self, bound: Duration) -> i32 {
        let deadline = Instant::now() + bound;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "serve did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Child2 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- serve log ---\n{}", self.log());
        }
    }
}

async fn wait_ready(client: &async_nats::Client, serve: &Child2) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ping = client.request("$SRV.PING.cambio", Bytes::new());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), ping).await {
            return;
        }
        assert!(Instant::now() < deadline, "serve not ready:\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event(minute: i64, client: &str, kind: &str, rate: f64, amount: Option<f64>, segment: Option<&str>) -> String {
    let mut v = json!({"ts": cambio::time::format_ts(EVENT_TS + minute * MIN_US), "client": client, "event": kind, "rate": rate});
    if let Some(a) = amount {
        v["amount"] = a.into();
    }
    if let Some(s) = segment {
        v["segment"] = s.into();
    }
    v.to_string()
}

/// Publishes 300 ticks of USDMXN and waits until the query answers the forecast of the last one.
async fn forecast_ready(client: &async_nats::Client, serve: &Child2) -> Value {
    for line in walk(300, 11) {
        // Historical ticks: marked as replayed, so serve does not stamp (and judge) their arrival.
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(line))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (err, v) = request(client, "fx.query.USDMXN", "").await;
        if !err && v["seq"] == 300 {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "no forecast of tick 300: {v}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the stats until `done` holds (bounded).
async fn stats_until(client: &async_nats::Client, serve: &Child2, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (err, v) = request(client, "fx.business.stats.USDMXN", "").await;
        if !err && done(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "stats never complete: {v}\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn segment<'a>(period: &'a Value, name: &str) -> &'a Value {
    period["segments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["segment"] == name)
        .unwrap_or_else(|| panic!("no segment {name} in {period}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn figures_over_nats_are_exact_and_bad_events_are_quarantined() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("business-figures");
    let key_file = dir.join("mask.key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let config = format!("[business]\nmask_key_file = \"{}\"\n", key_file.display());
    let serve = Child2::start(&server.url(), &config, &dir, &[], &[], "info");
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut quarantine = client.subscribe("fx.business.quarantine.USDMXN").await.unwrap();

    // A forecast first: the quote distances are measured against it.
    let f = forecast_ready(&client, &serve).await;
    let mid = f["mid"].as_f64().unwrap();
    let h = &f["horizons"][0];
    assert_eq!(h["horizon"], "1step");
    let mean = h["mean"].as_f64().unwrap();
    let sigma = (h["hi80"].as_f64().unwrap() - h["lo80"].as_f64().unwrap()) / (2.0 * 1.281_551_565_544_600_4);
    let r = |k: f64| mid + k * sigma;

    let events = [
        event(0, "CLIENT-A", "offered", r(2.0), Some(1000.0), Some("retail")),
        event(1, "CLIENT-A", "accepted", r(2.0), Some(1000.0), Some("retail")),
        event(2, "CLIENT-B", "offered", r(-1.0), Some(3000.0), Some("retail")),
        event(3, "CLIENT-B", "accepted", r(-1.0), Some(3000.0), Some("retail")),
        event(4, "CLIENT-C", "offered", r(0.0), None, Some("retail")),
        event(5, "CLIENT-D", "offered", r(3.0), Some(500.0), Some("sme")),
        event(6, "CLIENT-D", "rejected", r(3.0), Some(500.0), Some("sme")),
        event(7, "CLIENT-E", "offered", r(1.0), Some(100.0), Some("vip")),
        event(8, "CLIENT-F", "offered", r(1.0), Some(100.0), None),
        event(9, "CLIENT-F", "accepted", r(1.0), Some(100.0), None),
    ];
    let bad = [
        ("{oops".to_string(), "malformed_json"),
        (
            json!({"ts": "2024-03-04T10:00:00Z", "event": "offered", "rate": 17}).to_string(),
            "missing_field",
        ),
        (
            json!({"ts": "2024-03-04T10:00:00Z", "client": "CLIENT-X", "event": "offered", "rate": -1}).to_string(),
            "bad_rate",
        ),
        (
            json!({"ts": "2024-03-04T10:00:00Z", "client": "CLIENT-X", "event": "quoted", "rate": 17}).to_string(),
            "unknown_event",
        ),
        (
            json!({"ts": "4 March", "client": "CLIENT-X", "event": "offered", "rate": 17}).to_string(),
            "bad_ts",
        ),
    ];
    for e in &events {
        client
            .publish("fx.business.USDMXN", Bytes::from(e.clone()))
            .await
            .unwrap();
    }
    for (b, _) in &bad {
        client
            .publish("fx.business.USDMXN", Bytes::from(b.clone()))
            .await
            .unwrap();
    }
    client
        .publish("fx.business.usdmxn", Bytes::from(events[0].clone()))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let records = collect(&mut quarantine, bad.len(), Duration::from_secs(30)).await;
    assert_eq!(records.len(), bad.len(), "{}", serve.log());
    for (m, (payload, reason)) in records.iter().zip(&bad) {
        let v: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["type"], "business_quarantined", "{v}");
        assert_eq!(v["reason"], *reason, "{v}");
        assert_eq!(v["bytes"], payload.len(), "{v}");
        assert_eq!(v["client"].is_string(), payload.contains("CLIENT-X"), "{v}");
        assert!(!String::from_utf8_lossy(&m.payload).contains("CLIENT-X"), "{v}");
    }

    let s = stats_until(&client, &serve, |v| v["periods"][0]["segments"][4]["offers"] == 6).await;
    assert_eq!(s["type"], "business_stats");
    assert_eq!(s["last_event_ts"], "2024-03-04T10:09:00.000Z");
    for p in s["periods"].as_array().unwrap() {
        let retail = segment(p, "retail");
        assert_eq!(
            (retail["offers"].as_u64(), retail["acceptances"].as_u64()),
            (Some(3), Some(2)),
            "{p}"
        );
        assert_eq!(retail["uptake"].as_f64().unwrap(), 2.0 / 3.0);
        assert_eq!(retail["amount_uptake"], 1.0);
        assert_eq!(retail["distinct_clients"], 3);
        let d = &retail["quote_distance"];
        assert_eq!(d["offers_with_reference"], 3);
        assert_eq!(d["offers_without_reference"], 0);
        // |2| + |−1| + |0| sigmas from the mid: mean 1.
        let close = |a: f64, b: f64| (a - b).abs() < 1e-4;
        assert!(close(d["mid_sigmas"].as_f64().unwrap(), 1.0), "{d}");
        let to_forecast = [2.0, -1.0, 0.0]
            .iter()
            .map(|k| (r(*k) - mean).abs() / sigma)
            .sum::<f64>()
            / 3.0;
        assert!(
            close(d["forecast_sigmas"].as_f64().unwrap(), to_forecast),
            "{d} {to_forecast}"
        );
        let sme = segment(p, "sme");
        assert_eq!((sme["offers"].as_u64(), sme["rejections"].as_u64()), (Some(1), Some(1)));
        assert_eq!(sme["uptake"], 0.0);
        assert!(close(sme["quote_distance"]["mid_sigmas"].as_f64().unwrap(), 3.0));
        let other = segment(p, "other");
        assert_eq!(
            (other["offers"].as_u64(), other["acceptances"].as_u64()),
            (Some(2), Some(1))
        );
        assert_eq!(other["distinct_clients"], 2);
        let all = segment(p, "all");
        assert_eq!(
            (
                all["offers"].as_u64(),
                all["acceptances"].as_u64(),
                all["rejections"].as_u64()
            ),
            (Some(6), Some(3), Some(1))
        );
        assert_eq!(all["uptake"], 0.5);
        assert_eq!(all["amount_uptake"].as_f64().unwrap(), 4100.0 / 4700.0);
        assert_eq!(all["distinct_clients"], 6);
        assert_eq!(segment(p, "corporate")["offers"], 0);
    }
    // Unknown pair: an error reply, and serve keeps answering.
    let (err, v) = request(&client, "fx.business.stats.EURJPY", "").await;
    assert!(err, "{v}");
    assert_eq!(v["code"], 404, "{v}");
    let (err, _) = request(&client, "fx.status.USDMXN", "").await;
    assert!(!err);
    let (_, st) = request(&client, "$SRV.STATS.cambio", "").await;
    let business = st["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "business_stats")
        .unwrap()
        .clone();
    assert!(business["num_requests"].as_u64().unwrap() >= 2, "{business}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_key_events_are_refused_with_a_clear_error() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("business-nokey");
    let serve = Child2::start(&server.url(), "", &dir, &[], &[], "info");
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut quarantine = client.subscribe("fx.business.quarantine.USDMXN").await.unwrap();
    let e = event(0, "CLIENT-7731-SECRET", "offered", 17.0, None, None);
    client.publish("fx.business.USDMXN", Bytes::from(e)).await.unwrap();
    client.flush().await.unwrap();
    let got = collect(&mut quarantine, 1, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1, "{}", serve.log());
    let v: Value = serde_json::from_slice(&got[0].payload).unwrap();
    assert_eq!(v["reason"], "no_mask_key", "{v}");
    assert_eq!(v["client"], Value::Null, "{v}");
    assert!(v["detail"].as_str().unwrap().contains("CAMBIO_MASK_KEY"), "{v}");
    let (err, v) = request(&client, "fx.business.stats.USDMXN", "").await;
    assert!(err);
    assert_eq!(v["code"], 503, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("no masking key configured"),
        "{v}"
    );
    let log = serve.log();
    assert!(log.contains("no masking key configured"), "{log}");
    assert!(!log.contains("7731"), "{log}");
    drop(serve);

    // A key too short stops serve at start, with the reason and without the key.
    let mut short = Child2::start(
        &server.url(),
        "",
        &dir,
        &[("CAMBIO_MASK_KEY", "tiny-key-x")],
        &[],
        "info",
    );
    assert_eq!(short.wait(Duration::from_secs(30)), 2);
    let log = short.log();
    assert!(
        log.contains("CAMBIO_MASK_KEY: the masking key has 10 bytes; at least 16"),
        "{log}"
    );
    assert!(!log.contains("tiny-key-x"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Where `needle` occurs in `haystack` (any case).
fn hits(haystack: &[u8], needle: &str) -> usize {
    let hay = haystack.to_ascii_lowercase();
    let needle = needle.to_ascii_lowercase();
    hay.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count()
}

fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files_under(&p, out);
        } else {
            out.push(p);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn masking_search_finds_no_client_identifier_in_any_output() {
    const IDS: [&str; 3] = ["CLIENT-7731-SECRET", "ACME-TREASURY-0042", "jane.doe@example.com"];
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("business-masking");
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{port}");
    let client = async_nats::connect(server.url()).await.unwrap();
    // Everything on the bus, from before serve starts.
    let mut everything = client.subscribe(">").await.unwrap();
    client.flush().await.unwrap();
    let checkpoint = dir.join("state.redb");
    let mut serve = Child2::start(
        &server.url(),
        "[business]\ndisparity_min_count = 2\n",
        &dir,
        &[("CAMBIO_MASK_KEY", KEY)],
        &["--checkpoint", checkpoint.to_str().unwrap(), "--metrics", &metrics_addr],
        "debug",
    );
    wait_ready(&client, &serve).await;
    forecast_ready(&client, &serve).await;

    // Every way an identifier can arrive: valid events of every kind and segment, and refused ones with the
    // identifier in each field and in the subject.
    let mut sent: Vec<(String, String)> = Vec::new();
    for (i, id) in IDS.iter().enumerate() {
        let m = i as i64;
        for (kind, seg) in [
            ("offered", Some("retail")),
            ("accepted", Some("sme")),
            ("rejected", None),
            ("offered", Some(*id)),
        ] {
            sent.push(("fx.business.USDMXN".into(), event(m, id, kind, 17.0, Some(100.0), seg)));
        }
        for bad in [
            format!("{{oops {id}"),
            json!({"client": id, "ts": id, "event": "offered", "rate": 17}).to_string(),
            json!({"client": id, "ts": "2024-03-04T10:00:00Z", "event": id, "rate": 17}).to_string(),
            json!({"client": id, "ts": "2024-03-04T10:00:00Z", "event": "offered", "rate": id}).to_string(),
            json!({"client": id, "ts": "2024-03-04T10:00:00Z", "event": "offered", "rate": 17, "currency": id}).to_string(),
            json!({"client": id, "ts": "2024-03-04T10:00:00Z", "event": "offered", "rate": 17, "amount": id}).to_string(),
            json!({"client": [id], "ts": "2024-03-04T10:00:00Z", "event": "offered", "rate": 17}).to_string(),
            json!({"client": id, "ts": "2024-03-04T10:00:00Z", "event": "offered", "rate": 17, "segment": {"name": id}}).to_string(),
            format!("{}{}", id, " ".repeat(5000)),
        ] {
            sent.push(("fx.business.USDMXN".into(), bad));
        }
        sent.push((
            format!("fx.business.{}", id.replace(['.', '@'], "-")),
            event(m, id, "offered", 17.0, None, None),
        ));
    }
    for (subject, payload) in &sent {
        client
            .publish(subject.clone(), Bytes::from(payload.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    // Counted: 3 ids × 4 valid events.
    let stats = stats_until(&client, &serve, |v| {
        v["events"].as_array().is_some_and(|e| {
            e.iter()
                .map(|s| {
                    s["offered"].as_u64().unwrap_or(0)
                        + s["accepted"].as_u64().unwrap_or(0)
                        + s["rejected"].as_u64().unwrap_or(0)
                })
                .sum::<u64>()
                == 12
        })
    })
    .await;

    // Every reply serve gives.
    let mut replies: Vec<Vec<u8>> = vec![serde_json::to_vec(&stats).unwrap()];
    for (subject, body) in [
        ("fx.business.stats.USDMXN", ""),
        ("fx.business.stats.EURJPY", ""),
        ("fx.status.USDMXN", ""),
        ("fx.query.USDMXN", ""),
        ("fx.models.USDMXN", ""),
        ("$SRV.INFO.cambio", ""),
        ("$SRV.STATS.cambio", ""),
        ("$SRV.PING.cambio", ""),
    ] {
        let m = request_message(&client, subject, body).await;
        replies.push(m.payload.to_vec());
        replies.push(format!("{:?}", m.headers).into_bytes());
    }
    let metrics = metrics_until(
        &format!("http://{metrics_addr}/metrics"),
        Duration::from_secs(30),
        "business metrics",
        |t| t.contains("cambio_business_events_quarantined_total{reason=\"bad_subject\"} 3"),
    )
    .await;
    assert!(
        metrics.contains("cambio_business_offers{pair=\"USDMXN\",segment=\"all\",period=\"1h\"} 6"),
        "{metrics}"
    );
    // The business series pass Prometheus's linter.
    common::promtool_check_metrics(&metrics);
    replies.push(metrics.into_bytes());

    // Everything published on the bus but what this test sent, read until the bus is quiet. The `>`
    // subscription then ends before serve stops: it would answer serve's shutdown round trip (a request to
    // an inbox nobody else listens on) by never replying.
    let mut bus: Vec<Vec<u8>> = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(1500), everything.next()).await {
        let mine = sent
            .iter()
            .any(|(s, p)| m.subject.as_str() == s && m.payload.as_ref() == p.as_bytes());
        if !mine {
            let mut record = m.subject.as_bytes().to_vec();
            record.extend_from_slice(format!("{:?}", m.headers).as_bytes());
            record.extend_from_slice(&m.payload);
            bus.push(record);
        }
        assert!(bus.len() < 1_000_000, "the bus never went quiet");
    }
    everything.unsubscribe().await.unwrap();
    client.flush().await.unwrap();
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    assert!(
        bus.iter().any(|b| hits(b, "business_quarantined") > 0),
        "the search saw serve's quarantine records"
    );
    assert!(
        bus.iter().any(|b| b.starts_with(b"fx.pred.USDMXN")),
        "the search saw serve's forecasts"
    );
    let mut files = Vec::new();
    files_under(&dir, &mut files);
    assert!(files.contains(&checkpoint) && files.contains(&serve.stderr) && files.contains(&serve.stdout));
    let log = std::fs::read(&serve.stderr).unwrap();
    assert!(
        hits(&log, "DEBUG") > 0 && hits(&log, "business event quarantined") > 0,
        "debug logs were on"
    );

    // The search can fail: it finds every identifier in what was sent.
    for id in IDS {
        let in_sent: usize = sent
            .iter()
            .map(|(s, p)| hits(s.as_bytes(), id) + hits(p.as_bytes(), id))
            .sum();
        assert!(in_sent > 0, "{id} not in what was sent: the search would be blind");
    }
    let mut found = Vec::new();
    for id in IDS.iter().chain([&KEY]) {
        for f in &files {
            let n = hits(&std::fs::read(f).unwrap(), id);
            if n > 0 {
                found.push(format!("{id}: {n} in {}", f.display()));
            }
        }
        for (what, set) in [("bus", &bus), ("replies", &replies)] {
            let n: usize = set.iter().map(|b| hits(b, id)).sum();
            if n > 0 {
                found.push(format!("{id}: {n} in {what}"));
            }
        }
    }
    assert!(found.is_empty(), "identifiers in clear: {found:?}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_segment_apart_raises_a_disparity_alarm_on_the_alert_subject() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("business-disparity");
    let config = "[business]\nsegments = [\"retail\", \"sme\"]\nperiods = [\"1h\"]\ndisparity_min_count = 10\n";
    let serve = Child2::start(&server.url(), config, &dir, &[("CAMBIO_MASK_KEY", KEY)], &[], "info");
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut alerts = client.subscribe("fx.alert.USDMXN").await.unwrap();
    client.flush().await.unwrap();
    // retail takes every rate, sme none: far apart after ten offers each.
    for i in 0..20 {
        let (seg, takes) = if i % 2 == 0 { ("retail", true) } else { ("sme", false) };
        let client_id = format!("C-{i}");
        let mut events = vec![event(i, &client_id, "offered", 17.0, None, Some(seg))];
        events.push(event(
            i,
            &client_id,
            if takes { "accepted" } else { "rejected" },
            17.0,
            None,
            Some(seg),
        ));
        for e in events {
            client.publish("fx.business.USDMXN", Bytes::from(e)).await.unwrap();
        }
    }
    client.flush().await.unwrap();
    let got = collect(&mut alerts, 2, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 2, "{}", serve.log());
    let mut segments: Vec<String> = got
        .iter()
        .map(|m| {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["type"], "business_disparity", "{v}");
            assert_eq!(v["period"], "1h", "{v}");
            assert!(v["statistic"].as_f64().unwrap().abs() > 4.0, "{v}");
            assert_eq!(
                (v["offers"].as_u64(), v["offers_others"].as_u64()),
                (Some(10), Some(10)),
                "{v}"
            );
            v["segment"].as_str().unwrap().to_string()
        })
        .collect();
    segments.sort();
    // With two segments, each is the other's pool: both cross together, once each.
    assert_eq!(segments, ["retail", "sme"]);
    let s = stats_until(&client, &serve, |v| v["events"][0]["disparity_alarms"] == 1).await;
    assert_eq!(s["periods"][0]["segments"][0]["disparity"]["alarm"], true, "{s}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}
