//! The places of `serve.max_pairs` belong to real pairs: junk on many pair subjects starts no shard, a
//! refused pair is counted and logged once per period, and idle pairs are evicted (checkpointed first)
//! and resume from that checkpoint when their ticks come back. Against a real nats-server.

mod common;

use std::time::Duration;

use bytes::Bytes;
use cambio::nats::LocalServer;
use common::{Serve, replay_header, request_message, temp_dir, wait_ready, walk, walk_of};
use futures_util::StreamExt;
use serde_json::Value;

async fn request_json(client: &async_nats::Client, subject: &str) -> Value {
    let m = request_message(client, subject, "").await;
    serde_json::from_slice(&m.payload).unwrap_or(Value::Null)
}

async fn counters(client: &async_nats::Client) -> Value {
    request_json(client, "$SRV.STATS.cambio").await["data"]["counters"].clone()
}

async fn publish(client: &async_nats::Client, subject: &str, payload: &str) {
    client
        .publish_with_headers(subject.to_string(), replay_header(), Bytes::from(payload.to_string()))
        .await
        .unwrap();
}

async fn next_within(sub: &mut async_nats::Subscriber, secs: u64, serve: &Serve) -> async_nats::Message {
    match tokio::time::timeout(Duration::from_secs(secs), sub.next()).await {
        Ok(Some(m)) => m,
        _ => panic!("nothing on {} within {secs} s:\n{}", "a subscription", serve.log()),
    }
}

/// Polls the service counters until `key` reaches `n` (bounded: 15 s).
async fn wait_counter(client: &async_nats::Client, key: &str, n: u64, serve: &Serve) {
    for _ in 0..150 {
        if counters(client).await[key].as_u64().unwrap_or(0) >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{key} never reached {n}:\n{}", serve.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_on_many_pair_subjects_starts_no_shard_and_refusals_are_counted_and_logged() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("pair-limits");
    let serve = Serve::start(&server.url(), "[serve]\nmax_pairs = 4\n", &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut unrouted = client.subscribe("fx.quarantine._unrouted").await.unwrap();
    let mut preds = client.subscribe("fx.pred.*").await.unwrap();
    client.flush().await.unwrap();

    // Ten junk payloads on ten six-letter subjects: more than max_pairs.
    let junk = [
        "AAABBB", "CCCDDD", "EEEFFF", "GGGHHH", "IIIJJJ", "KKKLLL", "MMMNNN", "OOOPPP", "QQQRRR", "SSSTTT",
    ];
    for p in junk {
        publish(&client, &format!("fx.ticks.{p}"), "junk, not a tick").await;
    }
    client.flush().await.unwrap();
    for _ in junk {
        let m = next_within(&mut unrouted, 10, &serve).await;
        let r: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(r["reason"], "invalid_tick", "{r}");
        assert!(r["detail"].as_str().unwrap().starts_with("malformed: "), "{r}");
    }
    // A real pair still gets its shard and its forecasts.
    publish(&client, "fx.ticks.USDMXN", &walk(1, 1)[0]).await;
    let f = next_within(&mut preds, 10, &serve).await;
    assert_eq!(f.subject.as_str(), "fx.pred.USDMXN");
    let c = counters(&client).await;
    assert_eq!(c["pairs_not_started"], 10, "{c}");
    assert_eq!(c["pairs_refused"], 0, "{c}");

    // Four real pairs fill the places; the fifth and sixth are refused, counted, and logged once.
    for (pair, start) in [("EURUSD", 1.08), ("GBPUSD", 1.27), ("USDJPY", 150.0)] {
        publish(&client, &format!("fx.ticks.{pair}"), &walk_of(pair, start, 1, 2)[0]).await;
        next_within(&mut preds, 10, &serve).await;
    }
    publish(&client, "fx.ticks.USDCAD", &walk_of("USDCAD", 1.35, 1, 3)[0]).await;
    publish(&client, "fx.ticks.USDCHF", &walk_of("USDCHF", 0.9, 1, 3)[0]).await;
    client.flush().await.unwrap();
    for _ in 0..2 {
        let m = next_within(&mut unrouted, 10, &serve).await;
        let r: Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(r["reason"], "too_many_pairs", "{r}");
    }
    let c = counters(&client).await;
    assert_eq!(c["pairs_refused"], 2, "{c}");
    let log = serve.log();
    assert_eq!(log.matches("new pair refused").count(), 1, "{log}");
    assert!(log.contains("refused_not_logged"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_pairs_are_evicted_checkpointed_and_resumed() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("pair-evict");
    let db = dir.join("cambio.redb");
    let config = format!(
        "[serve]\nmax_pairs = 1\nidle_evict_secs = 0.5\n[checkpoint]\npath = \"{}\"\n",
        db.display()
    );
    let serve = Serve::start(&server.url(), &config, &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut preds = client.subscribe("fx.pred.*").await.unwrap();
    client.flush().await.unwrap();

    let usdmxn = walk(100, 7);
    for t in &usdmxn[..50] {
        publish(&client, "fx.ticks.USDMXN", t).await;
    }
    for _ in 0..50 {
        next_within(&mut preds, 10, &serve).await;
    }
    // Idle: evicted, which frees the only place for another pair.
    wait_counter(&client, "pairs_evicted", 1, &serve).await;
    publish(&client, "fx.ticks.EURUSD", &walk_of("EURUSD", 1.08, 1, 2)[0]).await;
    let f = next_within(&mut preds, 10, &serve).await;
    assert_eq!(f.subject.as_str(), "fx.pred.EURUSD");
    wait_counter(&client, "pairs_evicted", 2, &serve).await;

    // USD/MXN comes back: its shard resumes from the checkpoint written at its eviction.
    for t in &usdmxn[50..] {
        publish(&client, "fx.ticks.USDMXN", t).await;
    }
    for _ in 50..100 {
        let f = next_within(&mut preds, 10, &serve).await;
        assert_eq!(f.subject.as_str(), "fx.pred.USDMXN");
    }
    // The status snapshot refreshes a moment after the last tick.
    let mut status = Value::Null;
    for _ in 0..100 {
        status = request_json(&client, "fx.status.USDMXN").await;
        if status["ticks"] == 100 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status["ticks"], 100, "{status}");
    assert_eq!(status["accepted"], 100, "{status}");
    assert!(status["model"]["version"].as_u64().unwrap() >= 1, "{status}");
    let log = serve.log();
    assert!(log.contains("idle pair evicted"), "{log}");
    assert!(log.contains("resumed from its newest checkpoint"), "{log}");
    assert_eq!(counters(&client).await["pairs_refused"], 0);
}
