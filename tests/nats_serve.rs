//! `cambio serve` against a real nats-server (started by each test on a free loopback port): forecasts for
//! every accepted tick, live output byte-identical to replay, request-reply and micro-service discovery,
//! hostile payloads quarantined, server restarts survived (core and JetStream), graceful shutdown.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use cambio::nats::LocalServer;
use futures_util::StreamExt;
use serde_json::Value;

mod common;
use common::*;

const FAST_REPORTS: &str = "[serve]\nreport_interval_secs = 0.2\n";

/// Collects messages from `sub` until `n` arrived or `timeout` passed.
async fn collect(sub: &mut async_nats::Subscriber, n: usize, timeout: Duration) -> Vec<async_nats::Message> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => got.push(m),
            _ => break,
        }
    }
    got
}

/// Up to `n` messages, until none came for `quiet` (bounded by `cap` in all): for reading what a stopped
/// service already published, however long a loaded machine takes to deliver it.
async fn collect_until_quiet(
    sub: &mut async_nats::Subscriber,
    n: usize,
    quiet: Duration,
    cap: Duration,
) -> Vec<async_nats::Message> {
    let mut got = Vec::new();
    let end = tokio::time::Instant::now() + cap;
    while got.len() < n && tokio::time::Instant::now() < end {
        match tokio::time::timeout(quiet, sub.next()).await {
            Ok(Some(m)) => got.push(m),
            _ => break,
        }
    }
    got
}

/// A request, its reply's headers (the service error code is there) and its JSON body.
async fn request_json(client: &async_nats::Client, subject: &str, body: &str) -> (Option<HeaderMap>, Value) {
    let m = request_message(client, subject, body).await;
    let v = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
    (m.headers, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_forecasts_equal_replay_and_queries_answer() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("live");
    let serve = Serve::start(&server.url(), FAST_REPORTS, &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    let mut quarantine = client.subscribe("fx.quarantine.USDMXN").await.unwrap();
    let mut quality = client.subscribe("fx.quality.USDMXN").await.unwrap();

    // 3,000 ticks with a duplicate and a malformed line in the middle.
    let mut lines = walk(3_000, 7);
    lines.insert(1_000, lines[999].clone());
    lines.insert(2_000, "{\"pair\":\"USDMXN\",\"ts\":".to_string());
    for l in &lines {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(l.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    // The same lines replayed in-process: the forecasts, serialised the same way, must match byte for byte.
    let file = dir.join("ticks.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let expected = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let sink = expected.clone();
    let opts = cambio::replay::ReplayOptions {
        pair: cambio::tick::Pair::parse("USDMXN"),
        observer: Some(Box::new(move |o: &cambio::engine::Output| {
            if let cambio::engine::Output::Forecast(f) = o {
                sink.lock().unwrap().push(serde_json::to_vec(f).unwrap());
            }
        })),
        ..Default::default()
    };
    let report = cambio::replay::replay_file(&file, &Default::default(), opts).unwrap();
    let expected = expected.lock().unwrap().clone();
    assert_eq!(expected.len() as u64, report.accepted);
    assert_eq!(expected.len(), 3_000, "every accepted tick has a forecast");

    let got = collect(&mut preds, expected.len(), Duration::from_secs(60)).await;
    assert_eq!(got.len(), expected.len(), "a forecast for each accepted tick");
    for (i, (m, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(&m.payload[..], &e[..], "forecast {i} differs from replay");
    }
    let id = got[10].headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).unwrap();
    assert_eq!(id.as_str(), "USDMXN-11", "Nats-Msg-Id: pair and position");

    let q = collect(&mut quarantine, 2, Duration::from_secs(10)).await;
    let reasons: Vec<Value> = q
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap()["reason"].clone())
        .collect();
    assert_eq!(reasons, vec!["duplicate_seq", "malformed"]);
    let periodic = collect(&mut quality, 1, Duration::from_secs(10)).await;
    assert_eq!(periodic.len(), 1, "quality is published at the interval");

    // Request-reply: the latest forecast, selected horizons, errors with codes.
    let (h, latest) = request_json(&client, "fx.query.USDMXN", "").await;
    assert!(h.is_none_or(|h| h.get("Nats-Service-Error").is_none()));
    let last: Value = serde_json::from_slice(expected.last().unwrap()).unwrap();
    assert_eq!(latest, last, "query returns the latest forecast");
    let (_, one) = request_json(&client, "fx.query.USDMXN", r#"{"horizons":["1h"]}"#).await;
    assert_eq!(one["horizons"].as_array().unwrap().len(), 1);
    assert_eq!(one["horizons"][0]["horizon"], "1h");
    for (subject, body, code) in [
        ("fx.query.USDMXN", r#"{"horizons":["7m"]}"#, "400"),
        ("fx.query.USDMXN", r#"{"horizons":["fortnight"]}"#, "400"),
        ("fx.query.USDMXN", "not json", "400"),
        ("fx.query.EURJPY", "", "404"),
        ("fx.query.usdmxn", "", "400"),
        ("fx.status.GBPUSD", "", "404"),
    ] {
        let (h, v) = request_json(&client, subject, body).await;
        let h = h.expect("error headers");
        assert_eq!(
            h.get("Nats-Service-Error-Code").unwrap().as_str(),
            code,
            "{subject} {body}"
        );
        assert!(h.get("Nats-Service-Error").is_some());
        assert_eq!(v["type"], "error", "JSON error body: {v}");
        assert_eq!(v["code"].to_string(), code, "JSON error body: {v}");
    }
    // Status: quality, drift, model identity and prequential metrics (fresh once the queue is empty).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, status) = request_json(&client, "fx.status.USDMXN", "").await;
    assert_eq!(status["ticks"], 3_002);
    assert_eq!(status["accepted"], 3_000);
    // The model in service: its name, no registry version (no checkpoints here), its configuration's hash.
    assert_eq!(status["model"]["name"], cambio::config::ModelConfig::default().name);
    assert_eq!(status["model"]["version"], 0);
    let hash = status["model"]["config"].as_str().unwrap_or_default();
    assert!(
        hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
        "{status}"
    );
    assert!(status["quality"]["overall"].is_string(), "{status}");
    assert!(status["drift"].is_array());
    assert!(status["horizons"][0]["rmse"].is_number());
    assert_eq!(status["drift_status"], "stable");

    // Discovery: PING, INFO and STATS of the micro service, with latency percentiles.
    let (_, info) = request_json(&client, "$SRV.INFO.cambio", "").await;
    let subjects: Vec<&str> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["subject"].as_str().unwrap())
        .collect();
    let mut subjects = subjects;
    subjects.sort_unstable(); // the INFO reply lists endpoints in no fixed order
    assert_eq!(subjects, vec!["fx.models.*", "fx.query.*", "fx.status.*"]);
    let (_, stats) = request_json(&client, "$SRV.STATS.cambio", "").await;
    let data = &stats["data"];
    assert_eq!(data["counters"]["forecasts"], 3_000);
    assert!(data["tick_to_forecast"]["count"].as_u64().unwrap() >= 3_002);
    assert!(data["tick_to_forecast"]["p99_us"].as_u64().unwrap() > 0);
    let query = stats["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "query")
        .unwrap();
    assert!(query["data"]["latency"]["count"].as_u64().unwrap() >= 2);
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_payloads_are_quarantined_with_reasons_and_serving_goes_on() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("hostile");
    let serve = Serve::start(&server.url(), FAST_REPORTS, &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut quarantine = client.subscribe("fx.quarantine.>").await.unwrap();
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();

    let ok = walk(2, 1);
    let huge = format!("{{\"pair\":\"USDMXN\",\"pad\":\"{}\"}}", "x".repeat(200_000));
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("fx.ticks.USDMXN", ok[0].clone().into_bytes(), ""),
        ("fx.ticks.USDMXN", b"not json at all".to_vec(), "malformed"),
        ("fx.ticks.USDMXN", vec![0xff, 0x00, 0xfe, 0x7f, 0x80], "malformed"),
        ("fx.ticks.USDMXN", huge.into_bytes(), "malformed"),
        (
            "fx.ticks.USDMXN",
            br#"{"pair":"USDMXN","ts":"2024-03-04T00:00:05Z","mid":NaN}"#.to_vec(),
            "non_finite_price",
        ),
        (
            "fx.ticks.USDMXN",
            br#"{"pair":"USDMXN","ts":"2024-03-04T00:00:06Z","mid":"seventeen"}"#.to_vec(),
            "malformed",
        ),
        (
            "fx.ticks.USDMXN",
            br#"{"pair":"USDMXN","ts":12,"mid":17.0}"#.to_vec(),
            "malformed",
        ),
        (
            "fx.ticks.USDMXN",
            br#"{"pair":"EURUSD","ts":"2024-03-04T00:00:07Z","mid":1.08}"#.to_vec(),
            "pair_mismatch",
        ),
        (
            "fx.ticks.USDMXN",
            br#"{"pair":"USDMXN","ts":"2024-03-04T00:00:08Z"}"#.to_vec(),
            "missing_value",
        ),
        (
            "fx.ticks.USDMXN",
            br#"{"pair":"USDMXN","ts":"2024-03-04T00:00:09Z","bid":17.2,"ask":17.1}"#.to_vec(),
            "crossed_quote",
        ),
        (
            "fx.ticks.USDMXN",
            br#"{"pair":"USDMXN","ts":"2024-03-04T00:00:10Z","mid":-3}"#.to_vec(),
            "non_positive_price",
        ),
        ("fx.ticks.USDMXN", b"[1,2,3]".to_vec(), "malformed"),
        ("fx.ticks.USDMXN", Vec::new(), "malformed"),
        ("fx.ticks.usdmxn", ok[1].clone().into_bytes(), "bad_subject"),
        ("fx.ticks.USDMXN.extra", ok[1].clone().into_bytes(), "bad_subject"),
        ("fx.ticks.USDMXN", ok[1].clone().into_bytes(), ""),
    ];
    for (subject, payload, _) in &cases {
        client
            .publish_with_headers(subject.to_string(), replay_header(), Bytes::from(payload.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let expected: Vec<&str> = cases.iter().map(|c| c.2).filter(|r| !r.is_empty()).collect();
    let got = collect(&mut quarantine, expected.len(), Duration::from_secs(20)).await;
    // The pair's own quarantines come in tick order; unroutable messages go to `_unrouted`, in their order.
    let (pair, unrouted): (Vec<_>, Vec<_>) = got.iter().partition(|m| m.subject.as_str() == "fx.quarantine.USDMXN");
    let records: Vec<Value> = pair
        .iter()
        .chain(&unrouted)
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    let reasons: Vec<&str> = records.iter().map(|r| r["reason"].as_str().unwrap()).collect();
    assert_eq!(reasons, expected);
    // The raw payload is kept (cut for the 200 kB one, with its length), and unroutable ones name their subject.
    assert_eq!(records[0]["raw"], "not json at all");
    let note = format!("[truncated: {} bytes in all]", cases[3].1.len());
    assert!(
        records[2]["raw"].as_str().unwrap().ends_with(&note),
        "{}",
        &records[2]["raw"].as_str().unwrap()[16_000..]
    );
    assert_eq!(unrouted.len(), 2);
    assert_eq!(unrouted[0].subject.as_str(), "fx.quarantine._unrouted");
    assert_eq!(records[12]["subject"], "fx.ticks.usdmxn");
    // Both good ticks were forecast: the engine kept serving.
    let f = collect(&mut preds, 2, Duration::from_secs(10)).await;
    assert_eq!(f.len(), 2);
    let (_, stats) = request_json(&client, "$SRV.STATS.cambio", "").await;
    let c = &stats["data"]["counters"];
    assert_eq!(c["quarantined"], 12);
    assert_eq!(c["bad_subjects"], 2);
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn core_mode_resumes_after_a_server_restart() {
    let mut server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("restart");
    let serve = Serve::start(&server.url(), FAST_REPORTS, &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let lines = walk(200, 3);
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    for l in &lines[..100] {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(l.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    assert_eq!(collect(&mut preds, 100, Duration::from_secs(20)).await.len(), 100);

    server.restart().unwrap();
    // Both clients reconnect on their own; wait until the service answers again, then go on.
    wait_ready(&client, &serve).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    for l in &lines[100..] {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(l.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let after = collect(&mut preds, 100, Duration::from_secs(20)).await;
    assert_eq!(after.len(), 100, "forecasts resume after the restart");
    let last: Value = serde_json::from_slice(&after[99].payload).unwrap();
    assert_eq!(last["seq"], 200);
    assert!(serve.log().contains("disconnected"), "the restart was seen and logged");
    drop(serve);
}

const JETSTREAM: &str =
    "[serve]\nmode = \"jetstream\"\nreport_interval_secs = 0.2\n[serve.jetstream]\nack_wait_secs = 2\n";

/// Publishes `lines` into the stream with de-duplication ids, retrying each until the stream acknowledges
/// it (so a server restart in the middle loses nothing on the publishing side).
async fn js_publish_all(js: &async_nats::jetstream::Context, lines: &[String], from: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut todo: Vec<usize> = (0..lines.len()).collect();
    while !todo.is_empty() {
        assert!(Instant::now() < deadline, "stream did not accept {} ticks", todo.len());
        let mut failed = Vec::new();
        for chunk in todo.chunks(500) {
            let mut acks = Vec::new();
            for &i in chunk {
                let mut headers = replay_header();
                headers.insert("Nats-Msg-Id", format!("tick-{}", from + i).as_str());
                let sent = js
                    .publish_with_headers("fx.ticks.USDMXN", headers, Bytes::from(lines[i].clone()))
                    .await;
                acks.push((i, sent));
            }
            for (i, sent) in acks {
                let ok = match sent {
                    Ok(ack) => matches!(tokio::time::timeout(Duration::from_secs(5), ack).await, Ok(Ok(_))),
                    Err(_) => false,
                };
                if !ok {
                    failed.push(i);
                }
            }
        }
        if !failed.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        todo = failed;
    }
}

async fn status(client: &async_nats::Client) -> Option<Value> {
    let req = client.request("fx.status.USDMXN", Bytes::new());
    let m = tokio::time::timeout(Duration::from_millis(500), req).await.ok()?.ok()?;
    if m.headers
        .as_ref()
        .is_some_and(|h| h.get("Nats-Service-Error").is_some())
    {
        return None;
    }
    serde_json::from_slice(&m.payload).ok()
}

/// Waits until the service's status reports `ticks` ticks seen.
async fn wait_ticks(client: &async_nats::Client, ticks: u64, serve: &Serve) -> Value {
    status_until(
        client,
        "USDMXN",
        serve,
        Duration::from_secs(90),
        &format!("{ticks} ticks"),
        |s| s["ticks"].as_u64() >= Some(ticks),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jetstream_survives_a_server_restart_without_losing_or_repeating_a_tick() {
    let dir = temp_dir("js-restart");
    let mut server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let serve = Serve::start(&server.url(), JETSTREAM, &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let js = async_nats::jetstream::new(client.clone());
    let lines = walk(3_000, 5);

    js_publish_all(&js, &lines[..1_500], 0).await;
    // Kill the server while the service may still be consuming, bring it back on the same store.
    server.restart().unwrap();
    wait_ready(&client, &serve).await;
    js_publish_all(&js, &lines[1_500..], 1_500).await;

    let s = wait_ticks(&client, 3_000, &serve).await;
    tokio::time::sleep(Duration::from_millis(2_500)).await; // longer than ack_wait: any redelivery has come
    let s2 = status(&client).await.unwrap_or(s);
    assert_eq!(s2["ticks"], 3_000, "no tick lost, none applied twice: {s2}");
    assert_eq!(s2["accepted"], 3_000, "{}", s2["quarantined"]);
    let stream = js.get_stream("FX").await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("cambio").await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(info.num_pending, 0);
    assert_eq!(info.num_ack_pending, 0, "every tick acknowledged");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_exits_zero_and_loses_nothing_acknowledged() {
    let dir = temp_dir("js-drain");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    // The stream is filled first, so the service is stopped with most ticks still to do.
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "FX".into(),
        subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let lines = walk(20_000, 9);
    js_publish_all(&js, &lines, 0).await;
    let mut serve = Serve::start(&server.url(), JETSTREAM, &dir);
    wait_ready(&client, &serve).await;
    wait_ticks(&client, 1_000, &serve).await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    assert!(serve.log().contains("shard drained"), "{}", serve.log());
    let stream = js.get_stream("FX").await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("cambio").await.unwrap();
    let acked = consumer.info().await.unwrap().ack_floor.stream_sequence;
    // Every acknowledged tick's forecast was published before exit.
    // The service has exited: what it published is at the server; read until the subscription goes quiet.
    let first = collect_until_quiet(&mut preds, 20_000, Duration::from_secs(3), Duration::from_secs(60)).await;
    assert!(
        first.len() as u64 >= acked,
        "{} forecasts for {acked} acknowledged ticks",
        first.len()
    );
    eprintln!("stopped after {} of 20,000 ticks ({acked} acknowledged)", first.len());

    // A new instance takes over from the acknowledged floor: together they forecast every tick exactly once.
    let serve2 = Serve::start(&server.url(), JETSTREAM, &dir);
    let rest = collect_until_quiet(&mut preds, 20_000, Duration::from_secs(10), Duration::from_secs(90)).await;
    let mut seqs: Vec<u64> = first
        .iter()
        .chain(&rest)
        .map(|m| {
            serde_json::from_slice::<Value>(&m.payload).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 20_000, "{}", serve2.log());
    assert_eq!(first.len() + rest.len(), 20_000, "no tick forecast twice");
    drop(serve2);
}

/// An instance killed while holding unacknowledged deliveries: its successor restarts the consumer after
/// the acknowledged floor, so it applies them in stream order instead of quarantining them as stale behind
/// newer ticks (which is what the server's redelivery after the ack wait led to). Without checkpoints delivery is at least once, so some ticks may be forecast twice (the
/// `Nats-Msg-Id` lets a de-duplicating stream drop those); none may be missing or quarantined.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_applies_ticks_left_unacknowledged_in_stream_order() {
    let dir = temp_dir("js-takeover");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "FX".into(),
        subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    let lines = walk(20_000, 11);
    js_publish_all(&js, &lines, 0).await;
    // Every forecast of both instances is collected (the acknowledged floor read after the kill can lag
    // the acknowledgements the server is still processing, so it cannot say which ticks the first one did).
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    let mut quarantine = client.subscribe("fx.quarantine.USDMXN").await.unwrap();
    client.flush().await.unwrap();
    let mut serve = Serve::start(&server.url(), JETSTREAM, &dir);
    wait_ready(&client, &serve).await;
    wait_ticks(&client, 1_000, &serve).await;
    // Killed, not stopped: whatever it had pulled stays delivered and unacknowledged.
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    let stream = js.get_stream("FX").await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("cambio").await.unwrap();
    let info = consumer.info().await.unwrap().clone();
    if info.ack_floor.stream_sequence >= 20_000 {
        eprintln!("the first instance finished before it was killed; nothing left to take over");
        return;
    }
    assert!(info.num_ack_pending > 0, "the kill left deliveries pending: {info:?}");
    let seq_of = |m: &async_nats::Message| {
        serde_json::from_slice::<Value>(&m.payload).unwrap()["seq"]
            .as_u64()
            .unwrap()
    };
    let first = collect_until_quiet(&mut preds, 20_000, Duration::from_secs(1), Duration::from_secs(30)).await;

    let serve2 = Serve::start(&server.url(), JETSTREAM, &dir);
    let rest = collect_until_quiet(&mut preds, 40_000, Duration::from_secs(10), Duration::from_secs(90)).await;
    let q = collect(&mut quarantine, 1, Duration::from_millis(500)).await;
    assert!(
        q.is_empty(),
        "quarantined: {:?}",
        String::from_utf8_lossy(&q[0].payload)
    );
    let rest: Vec<u64> = rest.iter().map(seq_of).collect();
    assert!(
        rest.windows(2).all(|w| w[0] < w[1]),
        "the successor forecasts in stream order"
    );
    let mut seen: Vec<u64> = first.iter().map(seq_of).chain(rest.iter().copied()).collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 20_000, "every tick is forecast\n{}", serve2.log());
    assert!(
        serve2
            .log()
            .contains("reading the stream again from the acknowledged floor"),
        "{}",
        serve2.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pairs_are_sharded_in_order_and_factors_reach_every_pair() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("pairs");
    let serve = Serve::start(&server.url(), FAST_REPORTS, &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut preds = client.subscribe("fx.pred.*").await.unwrap();
    let mut unrouted = client.subscribe("fx.quarantine._unrouted").await.unwrap();
    for (subject, body) in [
        (
            "fx.factors.TIIE28",
            r#"{"name":"TIIE28","ts":"2024-03-01","value":11.5,"source":"banxico"}"#,
        ),
        (
            "fx.factors.FED_FUNDS",
            r#"{"name":"FED_FUNDS","ts":"2024-03-01","value":5.33,"source":"fred"}"#,
        ),
        (
            "fx.factors.TIIE28",
            r#"{"name":"TIIE28","ts":"yesterday","value":11.5}"#,
        ),
    ] {
        client.publish(subject, Bytes::from(body)).await.unwrap();
    }
    client.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mx = walk(500, 11);
    let eu = walk_of("EURUSD", 1.08, 500, 12);
    for (a, b) in mx.iter().zip(&eu) {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(a.clone()))
            .await
            .unwrap();
        client
            .publish_with_headers("fx.ticks.EURUSD", replay_header(), Bytes::from(b.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let got = collect(&mut preds, 1_000, Duration::from_secs(30)).await;
    assert_eq!(got.len(), 1_000);
    for pair in ["USDMXN", "EURUSD"] {
        let seqs: Vec<u64> = got
            .iter()
            .filter(|m| m.subject.as_str() == format!("fx.pred.{pair}"))
            .map(|m| {
                serde_json::from_slice::<Value>(&m.payload).unwrap()["seq"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(seqs, (1..=500).collect::<Vec<u64>>(), "{pair}: per-pair order kept");
    }
    let bad = collect(&mut unrouted, 1, Duration::from_secs(5)).await;
    let v: Value = serde_json::from_slice(&bad[0].payload).unwrap();
    assert!(v["reason"].as_str().unwrap().starts_with("bad_factor"), "{v}");
    let (_, stats) = request_json(&client, "$SRV.STATS.cambio", "").await;
    let c = &stats["data"]["counters"];
    assert_eq!((c["factors"].as_u64(), c["bad_factors"].as_u64()), (Some(2), Some(1)));
    // Both pairs answer; the factors joined their models (the rate differential feature is live).
    tokio::time::sleep(Duration::from_millis(300)).await;
    for pair in ["USDMXN", "EURUSD"] {
        let (_, s) = request_json(&client, &format!("fx.status.{pair}"), "").await;
        assert_eq!(s["accepted"], 500, "{pair}: {s}");
    }
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rehearsed_scenario_gives_the_same_outputs_live_as_in_process() {
    let scenario_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/level_shift");
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("rehearsal");
    let serve = Serve::start_with(&server.url(), "", &dir, &["--scenario", scenario_dir.to_str().unwrap()]);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut alerts = client.subscribe("fx.alert.USDMXN").await.unwrap();
    let mut drift = client.subscribe("fx.drift.USDMXN").await.unwrap();
    let mut quarantine = client.subscribe("fx.quarantine.USDMXN").await.unwrap();
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    client.flush().await.unwrap();

    // In process: the outputs the live service must reproduce byte for byte.
    let scenario = cambio::replay::Scenario::load(&scenario_dir).unwrap();
    let sink = std::sync::Arc::new(std::sync::Mutex::new((
        Vec::<Vec<u8>>::new(),
        Vec::<Vec<u8>>::new(),
        0usize,
    )));
    let s2 = sink.clone();
    let opts = cambio::replay::ReplayOptions {
        observer: Some(Box::new(move |o: &cambio::engine::Output| {
            let mut g = s2.lock().unwrap();
            match o {
                cambio::engine::Output::Alarm(_) | cambio::engine::Output::Adapted(_) => {
                    g.0.push(serde_json::to_vec(o).unwrap())
                }
                cambio::engine::Output::Quarantined(_) => g.1.push(serde_json::to_vec(o).unwrap()),
                cambio::engine::Output::Forecast(_) => g.2 += 1,
                _ => {}
            }
        })),
        ..Default::default()
    };
    let report = cambio::replay::replay_scenario(&scenario, None, opts).unwrap();
    assert!(report.passed, "the scenario's own expectations");
    let (want_alerts, want_quarantines, forecasts) = sink.lock().unwrap().clone();
    assert!(!want_alerts.is_empty() && !want_quarantines.is_empty());

    let status = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args([
            "replay",
            scenario_dir.to_str().unwrap(),
            "--nats",
            &server.url(),
            "--max",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let got = collect(&mut preds, forecasts, Duration::from_secs(60)).await;
    assert_eq!(got.len(), forecasts);
    let live_alerts = collect(&mut alerts, want_alerts.len(), Duration::from_secs(10)).await;
    let live_alerts: Vec<Vec<u8>> = live_alerts.iter().map(|m| m.payload.to_vec()).collect();
    assert_eq!(live_alerts, want_alerts, "alarms and adaptations, byte for byte");
    let live_q = collect(&mut quarantine, want_quarantines.len(), Duration::from_secs(10)).await;
    let live_q: Vec<Vec<u8>> = live_q.iter().map(|m| m.payload.to_vec()).collect();
    assert_eq!(live_q, want_quarantines, "quarantine records, byte for byte");
    // The drift statistics published after the first alarm carry that tick's time.
    let first_alarm: Value = serde_json::from_slice(&want_alerts[0]).unwrap();
    let d = collect(&mut drift, 64, Duration::from_secs(2)).await;
    let d: Value = d
        .iter()
        .map(|m| serde_json::from_slice::<Value>(&m.payload).unwrap())
        .find(|d| d["alarms_total"].as_u64() >= Some(1))
        .expect("drift statistics after the alarm");
    assert_eq!(d["ts"], first_alarm["ts"], "{d}");
    assert_eq!(d["type"], "drift");
    drop(serve);
}
