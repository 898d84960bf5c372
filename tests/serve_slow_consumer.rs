//! Core mode under a burst larger than the subscription's buffer: the client drops ticks, and cambio
//! counts every one of them (STATS, the status reply, completeness), so received + dropped = published.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cambio::nats::LocalServer;
use serde_json::Value;

mod common;
use common::*;

/// Starts a core-mode serve with `config` on a server of its own and publishes a burst of 20,000 replayed
/// ticks (a seeded walk) as fast as the client takes them: the folder, server, client, serve and count.
async fn burst(
    name: &str,
    config: &str,
    seed: u64,
) -> (std::path::PathBuf, LocalServer, async_nats::Client, Serve, u64) {
    let dir = temp_dir(name);
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let serve = Serve::start(&server.url(), config, &dir);
    wait_ready(&client, &serve).await;
    let n = 20_000u64;
    for l in &walk(n as usize, seed) {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(l.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    (dir, server, client, serve, n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_over_the_subscription_capacity_is_counted_exactly() {
    // A small buffer and a one-slot shard queue: the consumer falls behind the burst at once.
    let config = "[serve]\nsubscription_capacity = 32\nshard_queue = 1\nreport_interval_secs = 0.2\n";
    let (dir, _server, client, serve, n) = burst("slow-consumer", config, 3).await;

    // Quiet again: every published tick was either processed or counted as dropped.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (ticks, dropped, stats) = loop {
        let m = request_message(&client, "$SRV.STATS.cambio", "").await;
        let stats: Value = serde_json::from_slice(&m.payload).unwrap();
        let c = &stats["data"]["counters"];
        let (ticks, dropped) = (c["ticks"].as_u64().unwrap(), c["ticks_dropped"].as_u64().unwrap_or(0));
        if ticks + dropped >= n {
            break (ticks, dropped, stats);
        }
        assert!(
            Instant::now() < deadline,
            "ticks {ticks} + dropped {dropped} < {n}: {stats}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("published {n}, processed {ticks}, dropped {dropped}");
    assert!(dropped > 0, "the burst overflowed the buffer: {stats}");
    assert_eq!(ticks + dropped, n, "exact count: {stats}");

    // The status reply carries the same count, and the drops count against completeness.
    let status = status_until(&client, "USDMXN", &serve, Duration::from_secs(10), "the drops", |v| {
        v["ticks_dropped"].as_u64() == Some(dropped) && v["ticks"].as_u64() == Some(ticks)
    })
    .await;
    let completeness = status["quality"]["dimensions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == "completeness")
        .unwrap()
        .clone();
    assert!(completeness["defects"].as_u64().unwrap() > 0, "{completeness}");
    assert!(completeness["score"].as_f64().unwrap() < 1.0, "{completeness}");
    let log = serve.log();
    assert!(log.contains("ticks dropped"), "{log}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A burst the buffer holds: nothing is dropped, so nothing is ever counted or logged as dropped, even while
/// the buffer is full of ticks waiting (a reading taken when the task has only run out of its scheduling
/// budget once counted the waiting ticks as dropped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_the_buffer_holds_counts_no_drop() {
    // The default shard queue: the tick loop reads many buffered ticks in a row, as in production.
    let config = "[serve]\nsubscription_capacity = 100000\nreport_interval_secs = 0.2\n";
    let (dir, _server, client, serve, n) = burst("no-drop", config, 5).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut readings = 0;
    loop {
        let m = request_message(&client, "$SRV.STATS.cambio", "").await;
        let stats: Value = serde_json::from_slice(&m.payload).unwrap();
        let c = &stats["data"]["counters"];
        let (ticks, dropped) = (c["ticks"].as_u64().unwrap(), c["ticks_dropped"].as_u64().unwrap_or(0));
        assert_eq!(dropped, 0, "nothing was dropped, after {ticks} ticks: {stats}");
        readings += 1;
        if ticks == n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ticks {ticks} < {n}: {stats}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("{readings} readings of STATS while the burst was processed");
    let log = serve.log();
    assert!(!log.contains("ticks dropped"), "{log}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}
