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

/// Seq of a forecast message.
fn seq_of(m: &async_nats::Message) -> u64 {
    serde_json::from_slice::<Value>(&m.payload).unwrap()["seq"]
        .as_u64()
        .unwrap()
}

/// Every message until `sub` delivers one whose payload is `marker` (bounded by `cap`), which is left
/// out. The marker is published by this client after whatever must precede it reached the server, so
/// the server delivers it after all of those: what comes back before it is everything, with no quiet
/// period to guess.
async fn collect_until_marker(
    client: &async_nats::Client,
    sub: &mut async_nats::Subscriber,
    subject: &str,
    cap: Duration,
) -> Vec<async_nats::Message> {
    let marker = Bytes::from(format!("marker-{}", rand_suffix()));
    client.publish(subject.to_string(), marker.clone()).await.unwrap();
    client.flush().await.unwrap();
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + cap;
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) if m.payload == marker => return got,
            Ok(Some(m)) => got.push(m),
            _ => panic!(
                "the marker on {subject} did not come back within {cap:?} ({} before it)",
                got.len()
            ),
        }
    }
}

/// Forecasts up to and including the one of tick `seq`, bounded by `cap`.
async fn collect_until_seq(
    sub: &mut async_nats::Subscriber,
    seq: u64,
    cap: Duration,
    serve: &Serve,
) -> Vec<async_nats::Message> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + cap;
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => {
                let done = seq_of(&m) == seq;
                got.push(m);
                if done {
                    return got;
                }
            }
            _ => panic!(
                "no forecast of tick {seq} within {cap:?} ({} others)\n{}",
                got.len(),
                serve.log()
            ),
        }
    }
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
    // Status: quality, drift, model identity and prequential metrics (the snapshot lags the engine by up
    // to 100 ms: polled until it has every tick, then it must show exactly those).
    let status = status_until(&client, "USDMXN", &serve, Duration::from_secs(30), "3,002 ticks", |s| {
        s["ticks"].as_u64() >= Some(3_002)
    })
    .await;
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
    assert_eq!(
        subjects,
        vec!["fx.business.stats.*", "fx.models.*", "fx.query.*", "fx.status.*"]
    );
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
    // Both clients reconnect on their own. Once the service answers, this client's subscriptions are back
    // (a reply reached it); then the first tick of the second half is sent until its forecast comes back,
    // which shows the service's tick subscription is back too (a copy it never received is simply sent
    // again; one that arrives after the forecast is quarantined as a duplicate and forecasts nothing).
    wait_ready(&client, &serve).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let first_after = loop {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(lines[100].clone()))
            .await
            .unwrap();
        client.flush().await.unwrap();
        if let Some(m) = collect(&mut preds, 1, Duration::from_millis(500)).await.pop() {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "no forecast after the restart:\n{}",
            serve.log()
        );
    };
    assert_eq!(seq_of(&first_after), 101);
    for l in &lines[101..] {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(l.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let after = collect(&mut preds, 99, Duration::from_secs(20)).await;
    assert_eq!(after.len(), 99, "forecasts resume after the restart");
    assert_eq!(
        after.iter().map(seq_of).collect::<Vec<_>>(),
        (102..=200).collect::<Vec<u64>>(),
        "every tick after the restart forecast once, in order"
    );
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

/// Waits until the `cambio` consumer has acknowledged stream sequence `last` with nothing pending or
/// awaiting acknowledgement: every tick was applied (the service acknowledges after processing), and no
/// redelivery is still to come. Returns the consumer's info.
async fn wait_acked(
    js: &async_nats::jetstream::Context,
    last: u64,
    serve: &Serve,
) -> async_nats::jetstream::consumer::Info {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut info = None;
    loop {
        if let Ok(stream) = js.get_stream("FX").await
            && let Ok(mut c) = stream
                .get_consumer::<async_nats::jetstream::consumer::pull::Config>("cambio")
                .await
            && let Ok(i) = c.info().await
        {
            let i = i.clone();
            if i.ack_floor.stream_sequence >= last && i.num_ack_pending == 0 && i.num_pending == 0 {
                return i;
            }
            info = Some(i);
        }
        assert!(
            Instant::now() < deadline,
            "stream sequence {last} never acknowledged; consumer: {info:?}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

    wait_ticks(&client, 3_000, &serve).await;
    // The positive marker before the negative check: the whole stream acknowledged, nothing pending, so no
    // redelivery is still to come. Then the live counters (not the status snapshot, which lags by up to
    // 100 ms) must show each tick applied exactly once.
    wait_acked(&js, 3_000, &serve).await;
    let (_, stats) = request_json(&client, "$SRV.STATS.cambio", "").await;
    let c = &stats["data"]["counters"];
    assert_eq!(c["ticks"], 3_000, "no tick lost, none applied twice: {c}");
    assert_eq!(c["forecasts"], 3_000, "{c}");
    let s = status_until(&client, "USDMXN", &serve, Duration::from_secs(30), "3,000 ticks", |s| {
        s["ticks"].as_u64() >= Some(3_000)
    })
    .await;
    assert_eq!(s["ticks"], 3_000, "no tick lost, none applied twice: {s}");
    assert_eq!(s["accepted"], 3_000, "{}", s["quarantined"]);
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
    // 20,000 ticks, and a 20,001st published only at the end as a marker.
    let lines = walk(20_001, 9);
    js_publish_all(&js, &lines[..20_000], 0).await;
    let mut serve = Serve::start(&server.url(), JETSTREAM, &dir);
    // Stopped the moment its 1,000th forecast is seen (a status poll lags by 100 ms or more, in which this
    // machine gets through thousands of ticks), so it stops mid-stream however fast the machine.
    let mut first = collect_until_seq(&mut preds, 1_000, Duration::from_secs(60), &serve).await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    assert!(serve.log().contains("shard drained"), "{}", serve.log());
    let stream = js.get_stream("FX").await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("cambio").await.unwrap();
    let acked = consumer.info().await.unwrap().ack_floor.stream_sequence;
    // Every acknowledged tick's forecast was published before exit. The service flushed and exited, so
    // what it published reached the server before a marker this client sends now.
    first.extend(collect_until_marker(&client, &mut preds, "fx.pred.USDMXN", Duration::from_secs(60)).await);
    assert!(first.len() < 20_000, "stopped mid-stream: {} forecasts", first.len());
    assert!(
        first.len() as u64 >= acked,
        "{} forecasts for {acked} acknowledged ticks",
        first.len()
    );
    eprintln!("stopped after {} of 20,000 ticks ({acked} acknowledged)", first.len());

    // A new instance takes over from the acknowledged floor: together they forecast every tick exactly once.
    // Once it has acknowledged the whole stream (nothing pending: no redelivery to come), a marker tick
    // goes in after it; its forecast comes after every other one the successor makes.
    let serve2 = Serve::start(&server.url(), JETSTREAM, &dir);
    wait_acked(&js, 20_000, &serve2).await;
    js_publish_all(&js, &lines[20_000..], 20_000).await;
    let mut rest = collect_until_seq(&mut preds, 20_001, Duration::from_secs(60), &serve2).await;
    rest.pop(); // the marker's
    let mut seqs: Vec<u64> = first.iter().chain(&rest).map(seq_of).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 20_000, "{}", serve2.log());
    assert_eq!(first.len() + rest.len(), 20_000, "no tick forecast twice");
    drop(serve2);
}

/// An instance killed while holding unacknowledged deliveries: its successor restarts the consumer after
/// the acknowledged floor, so it applies them in stream order instead of quarantining them as stale behind
/// newer ticks (which is what the server's redelivery after the ack wait led to). Without checkpoints
/// delivery is at least once, so some ticks may be forecast twice (the `Nats-Msg-Id` lets a de-duplicating
/// stream drop those); none may be missing or quarantined.
///
/// The kill lands mid-stream by construction: 20,000 ticks are in the stream and the first instance is
/// killed the moment its 1,000th forecast is seen (not after a status poll, which lags by 100 ms or more:
/// killed that way, the first instance here had forecast 6,000–9,300 ticks), and 5,000 more ticks are
/// published only after the kill; the test fails (rather than passing vacuously) if the first instance had
/// forecast the 20,000th tick or left no delivery pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successor_applies_ticks_left_unacknowledged_in_stream_order() {
    const BEFORE_KILL: usize = 20_000;
    const TOTAL: usize = 25_000;
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
    let lines = walk(TOTAL, 11);
    js_publish_all(&js, &lines[..BEFORE_KILL], 0).await;
    // One subscription for forecasts and quarantines, so they arrive in the order the service published
    // them. Every forecast of both instances is collected (the acknowledged floor read after the kill can
    // lag the acknowledgements the server is still processing, so it cannot say which ticks the first did).
    let mut out = client.subscribe("fx.*.USDMXN").await.unwrap();
    client.flush().await.unwrap();
    let is = |m: &async_nats::Message, kind: &str| m.subject.as_str() == format!("fx.{kind}.USDMXN");
    let mut serve = Serve::start(&server.url(), JETSTREAM, &dir);
    let mut first = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = match tokio::time::timeout_at(deadline, out.next()).await {
            Ok(Some(m)) => m,
            _ => panic!("no 1,000th forecast\n{}", serve.log()),
        };
        let enough = is(&m, "pred") && seq_of(&m) >= 1_000;
        first.push(m);
        if enough {
            break;
        }
    }
    // Killed, not stopped: whatever it had pulled stays delivered and unacknowledged.
    serve.child.kill().unwrap();
    serve.child.wait().unwrap();
    let stream = js.get_stream("FX").await.unwrap();
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("cambio").await.unwrap();
    let info = consumer.info().await.unwrap().clone();
    assert!(info.num_ack_pending > 0, "the kill left deliveries pending: {info:?}");
    // The rest of what the killed instance published (it cannot publish more; its last messages may still
    // be on their way through the server, so this reads until the subscription goes quiet).
    first.extend(collect_until_quiet(&mut out, usize::MAX, Duration::from_secs(2), Duration::from_secs(30)).await);
    let q: Vec<_> = first.iter().filter(|m| is(m, "quarantine")).collect();
    assert!(
        q.is_empty(),
        "quarantined: {:?}",
        String::from_utf8_lossy(&q[0].payload)
    );
    let first: Vec<u64> = first.iter().filter(|m| is(m, "pred")).map(seq_of).collect();
    let last_first = first.iter().copied().max().unwrap_or(0);
    assert!(
        last_first < BEFORE_KILL as u64,
        "the kill must land mid-stream, but the first instance forecast up to tick {last_first} of {BEFORE_KILL}"
    );
    eprintln!(
        "killed after forecasting up to tick {last_first}; {} deliveries pending",
        info.num_ack_pending
    );

    let serve2 = Serve::start(&server.url(), JETSTREAM, &dir);
    js_publish_all(&js, &lines[BEFORE_KILL..], BEFORE_KILL).await;
    // The successor has acknowledged the whole stream, with nothing pending (no redelivery to come); then
    // a malformed tick marks the end: its quarantine must be the only one, and what came before it is
    // everything the successor published.
    wait_acked(&js, TOTAL as u64, &serve2).await;
    let end = "not a tick: the end of the takeover test";
    js.publish("fx.ticks.USDMXN", Bytes::from(end))
        .await
        .unwrap()
        .await
        .unwrap();
    let mut rest = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let m = match tokio::time::timeout_at(deadline, out.next()).await {
            Ok(Some(m)) => m,
            _ => panic!("the end marker was never quarantined\n{}", serve2.log()),
        };
        if is(&m, "quarantine") {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["raw"], end, "quarantined: {v}");
            break;
        }
        if is(&m, "pred") {
            rest.push(seq_of(&m));
        }
    }
    assert!(
        rest.windows(2).all(|w| w[0] < w[1]),
        "the successor forecasts in stream order"
    );
    assert_eq!(rest.last(), Some(&(TOTAL as u64)), "{}", serve2.log());
    let mut seen: Vec<u64> = first.iter().chain(&rest).copied().collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), TOTAL, "every tick is forecast\n{}", serve2.log());
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
    // The factors are routed before the first tick is sent (factor and tick subscriptions are not ordered
    // with each other): the service's live counters show all three handled.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, stats) = request_json(&client, "$SRV.STATS.cambio", "").await;
        let c = &stats["data"]["counters"];
        if (c["factors"].as_u64(), c["bad_factors"].as_u64()) == (Some(2), Some(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "factors not handled: {c}\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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
    // Both pairs answer (their status snapshots lag by up to 100 ms: polled until complete, then exact).
    for pair in ["USDMXN", "EURUSD"] {
        let s = status_until(&client, pair, &serve, Duration::from_secs(30), "500 ticks", |s| {
            s["ticks"].as_u64() >= Some(500)
        })
        .await;
        assert_eq!(
            (s["ticks"].as_u64(), s["accepted"].as_u64()),
            (Some(500), Some(500)),
            "{pair}: {s}"
        );
    }
    drop(serve);
}

/// Issue 11: a factor whose `name` is not its subject's last token is refused with a reason and a
/// detail (it was applied silently: a message on `fx.factors.TIIE28` could set another factor), and every
/// tick quarantine says why, including a second 60 that is not a leap second (it was read as second 59).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_factor_is_named_as_its_subject_and_quarantines_say_why() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("factor-name");
    let serve = Serve::start(&server.url(), FAST_REPORTS, &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut unrouted = client.subscribe("fx.quarantine._unrouted").await.unwrap();
    let mut quarantine = client.subscribe("fx.quarantine.USDMXN").await.unwrap();
    client.flush().await.unwrap();
    for body in [
        r#"{"name":"CETES28","ts":"2024-03-01","value":11.0}"#,
        r#"{"name":"TIIE28","ts":"2024-03-01","value":11.5}"#,
    ] {
        client.publish("fx.factors.TIIE28", Bytes::from(body)).await.unwrap();
    }
    for body in [
        r#"{"pair":"USDMXN","ts":"2024-03-04T00:00:00Z","mid":17.1}"#,
        r#"{"pair":"USDMXN","ts":"2024-03-04T00:00:01Z","bid":17.2,"ask":17.1}"#,
        r#"{"pair":"USDMXN","ts":"2024-03-04T10:05:60Z","mid":17.1}"#,
    ] {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(body))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    let bad = collect(&mut unrouted, 1, Duration::from_secs(20)).await;
    assert_eq!(bad.len(), 1, "{}", serve.log());
    let v: Value = serde_json::from_slice(&bad[0].payload).unwrap();
    assert_eq!(v["reason"], "bad_factor", "{v}");
    assert_eq!(
        v["detail"], "factor name `CETES28` is not the subject's last token `TIIE28`",
        "{v}"
    );
    let got = collect(&mut quarantine, 2, Duration::from_secs(20)).await;
    let records: Vec<Value> = got
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    let said: Vec<(&str, &str)> = records
        .iter()
        .map(|r| (r["reason"].as_str().unwrap(), r["detail"].as_str().unwrap()))
        .collect();
    assert_eq!(
        said,
        [
            ("crossed_quote", "bid 17.2 is above ask 17.1"),
            (
                "malformed",
                "ts: timestamp `2024-03-04T10:05:60Z` has second 60, which only a leap second at 23:59:60 UTC has"
            ),
        ]
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (_, stats) = request_json(&client, "$SRV.STATS.cambio", "").await;
        let c = &stats["data"]["counters"];
        if (c["factors"].as_u64(), c["bad_factors"].as_u64()) == (Some(1), Some(1)) {
            break;
        }
        assert!(Instant::now() < deadline, "factors not counted: {c}\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
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

/// `confirm_forecasts`: a forecast counts as delivered only once the stream that keeps forecasts has
/// acknowledged it. Forecasts published while no stream listens on `fx.pred.>` are not acknowledged, so
/// the checkpoints after them fail and the forecasts stay queued; once the stream exists they are sent
/// again (with no new tick to prompt it), the failed checkpoint is taken again, and the stream holds every
/// forecast exactly once. (Plain publishing would have lost the first ones: nothing stored them.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confirmed_forecasts_reach_a_stream_created_after_them() {
    let dir = temp_dir("js-confirm");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let config = format!(
        "{JETSTREAM}confirm_forecasts = true\n[checkpoint]\npath = \"{}\"\nevery_secs = 0.3\n",
        dir.join("registry.redb").display()
    );
    let serve = Serve::start(&server.url(), &config, &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let js = async_nats::jetstream::new(client.clone());
    let lines = walk(300, 11);
    js_publish_all(&js, &lines[..200], 0).await;
    wait_ticks(&client, 200, &serve).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !serve.log().contains("forecasts not acknowledged by their stream") {
        assert!(Instant::now() < deadline, "no checkpoint refused:\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let pred = js
        .create_stream(async_nats::jetstream::stream::Config {
            name: "PRED".into(),
            subjects: vec!["fx.pred.>".into()],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    // No new tick: the forecasts are sent again anyway, and the failed checkpoint is taken again.
    let stored_until = |n: u64| {
        let pred = pred.clone();
        let serve = &serve;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let stored = pred.clone().info().await.unwrap().state.messages;
                if stored >= n {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "{stored} of {n} forecasts stored:\n{}",
                    serve.log()
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    stored_until(200).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while !serve.log().contains("checkpoint written pair=USDMXN") {
        assert!(
            Instant::now() < deadline,
            "the failed checkpoint was not taken again:\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    js_publish_all(&js, &lines[200..], 200).await;
    wait_ticks(&client, 300, &serve).await;
    stored_until(300).await;
    // Sent again until acknowledged, and de-duplicated by their ids: one per tick, the first ones included.
    tokio::time::sleep(Duration::from_millis(800)).await;
    let mut pred = pred;
    assert_eq!(pred.info().await.unwrap().state.messages, 300);
    let first = pred.get_raw_message(1).await.unwrap();
    let id = first.headers.get("Nats-Msg-Id").map(|v| v.as_str().to_string());
    assert_eq!(
        id.as_deref(),
        Some("USDMXN-1"),
        "the first tick's forecast is in the stream"
    );
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}
