//! Crash consistency with JetStream and redb checkpoints: a service killed with SIGKILL at 20 random
//! points and restarted each time ends with the same state as a run that was never interrupted.
//!
//! Both runs read the same stream (the same ticks, with the same server-side arrival times) through their
//! own durable consumer and checkpoint file. The killed run's forecasts go to a de-duplicating stream,
//! which must end with exactly one forecast per tick.

use std::path::Path;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use cambio::checkpoint::{CheckpointStore, Reason, Retention, format};
use cambio::nats::LocalServer;
use cambio::tick::Pair;

mod common;
use common::*;

/// Ticks in the stream (two pairs interleaved) besides a few factors.
const TICKS: usize = 100_000;
const KILLS: usize = 20;

fn config(durable: &str, db: &Path) -> String {
    format!(
        "[serve]\nmode = \"jetstream\"\nreport_interval_secs = 0.5\n\
         [serve.jetstream]\ndurable = \"{durable}\"\nack_wait_secs = 5\n\
         [checkpoint]\npath = \"{}\"\nevery_ticks = 7000\nevery_secs = 0.7\nkeep_last = 3\n",
        db.display()
    )
}

/// The stream's messages: USDMXN and EURUSD ticks interleaved 2:1, and a factor every 9,000 messages.
fn messages() -> Vec<(String, String)> {
    let usd = walk_of("USDMXN", 17.0, TICKS * 2 / 3, 11);
    let eur = walk_of("EURUSD", 1.08, TICKS - TICKS * 2 / 3, 12);
    let (mut u, mut e) = (usd.into_iter(), eur.into_iter());
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let next = if i % 3 == 2 {
            e.next().map(|t| ("EURUSD", t))
        } else {
            u.next().map(|t| ("USDMXN", t))
        };
        let next = next
            .or_else(|| u.next().map(|t| ("USDMXN", t)))
            .or_else(|| e.next().map(|t| ("EURUSD", t)));
        let Some((pair, t)) = next else { break };
        out.push((format!("fx.ticks.{pair}"), t));
        if i % 9_000 == 4_500 {
            let day = 4 + i / 9_000;
            let f = format!(
                r#"{{"name":"TIIE28","ts":"2024-03-{day:02}","value":{:.2},"source":"banxico"}}"#,
                11.0 + 0.01 * (i / 9_000) as f64
            );
            out.push(("fx.factors.TIIE28".into(), f));
        }
        i += 1;
    }
    out
}

async fn publish_all(js: &jetstream::Context, msgs: &[(String, String)]) {
    let deadline = Instant::now() + Duration::from_secs(180);
    for (n, chunk) in msgs.chunks(1_000).enumerate() {
        let mut acks = Vec::with_capacity(chunk.len());
        for (k, (subject, body)) in chunk.iter().enumerate() {
            let mut h = replay_header();
            h.insert("Nats-Msg-Id", format!("m-{}", n * 1_000 + k).as_str());
            let ack = js
                .publish_with_headers(subject.clone(), h, Bytes::from(body.clone()))
                .await
                .unwrap();
            acks.push(ack);
        }
        for a in acks {
            a.await.unwrap();
        }
        assert!(Instant::now() < deadline, "publishing too slow");
    }
}

/// Waits until both pairs report all their ticks.
async fn wait_all(client: &async_nats::Client, serve: &Serve, usd: u64, eur: u64) {
    for (pair, n) in [("USDMXN", usd), ("EURUSD", eur)] {
        status_until(
            client,
            pair,
            serve,
            Duration::from_secs(300),
            &format!("{n} ticks"),
            |v| v["ticks"].as_u64() == Some(n),
        )
        .await;
    }
}

/// A seeded xorshift for the kill points.
fn kill_points(seed: u64, n: usize, max: u64) -> Vec<u64> {
    let mut s = seed;
    let mut v: Vec<u64> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            1 + s % (max - 1)
        })
        .collect();
    v.sort_unstable();
    v
}

fn final_records(db: &Path) -> Vec<(Pair, Vec<u8>, u64)> {
    let store = CheckpointStore::open_existing(db, Retention::default()).unwrap();
    let mut out = Vec::new();
    for pair in store.pairs().unwrap() {
        let (meta, state) = store.latest_good(pair).unwrap().unwrap();
        // The shutdown writes a version only of a pair that changed since its last one.
        assert!(matches!(meta.reason, Reason::Shutdown | Reason::Periodic), "{meta:?}");
        out.push((pair, format::encode(&state).unwrap(), state.engine.ticks()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_20_points_gives_the_state_of_an_uninterrupted_run() {
    let dir = temp_dir("crash");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    js.get_or_create_stream(stream::Config {
        name: "FX".into(),
        subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .unwrap();
    let msgs = messages();
    let usd = msgs.iter().filter(|(s, _)| s.ends_with("USDMXN")).count() as u64;
    let eur = msgs.iter().filter(|(s, _)| s.ends_with("EURUSD")).count() as u64;
    assert_eq!(usd + eur, TICKS as u64);
    publish_all(&js, &msgs).await;

    // The uninterrupted run.
    let db_ref = dir.join("reference.redb");
    let mut serve = Serve::start(&server.url(), &config("reference", &db_ref), &dir);
    wait_ready(&client, &serve).await;
    wait_all(&client, &serve, usd, eur).await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    drop(serve);

    // The killed run, its forecasts captured by a de-duplicating stream.
    let pred = js
        .create_stream(stream::Config {
            name: "PRED".into(),
            subjects: vec!["fx.pred.>".into()],
            storage: stream::StorageType::Memory,
            duplicate_window: Duration::from_secs(900),
            ..Default::default()
        })
        .await
        .unwrap();
    let forecasts = |mut s: stream::Stream| async move { s.info().await.map(|i| i.state.messages).unwrap_or(0) };
    let db = dir.join("crash.redb");
    let cfg = config("crash", &db);
    let points = kill_points(0x5eed_cafe, KILLS, TICKS as u64);
    let mut serve = Serve::start(&server.url(), &cfg, &dir);
    let mut restarts = Vec::new();
    for &at in &points {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let n = forecasts(pred.clone()).await;
            if n >= at {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "stuck at {n} forecasts, before {at}:\n{}",
                serve.log()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        serve.child.kill().unwrap(); // SIGKILL
        serve.child.wait().unwrap();
        restarts.push(forecasts(pred.clone()).await);
        serve = Serve::start(&server.url(), &cfg, &dir);
    }
    wait_ready(&client, &serve).await;
    wait_all(&client, &serve, usd, eur).await;
    let log = serve.log();
    assert!(log.contains("restored checkpoint"), "{log}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    drop(serve);
    eprintln!("killed at forecasts {restarts:?}");

    // Exactly one forecast per tick (every tick of the walk is accepted).
    let n = forecasts(pred.clone()).await;
    assert_eq!(n, TICKS as u64, "forecasts in the de-duplicating stream");

    // The same final state, byte for byte.
    let reference = final_records(&db_ref);
    let crashed = final_records(&db);
    assert_eq!(reference.len(), 2);
    for ((p1, r1, t1), (p2, r2, t2)) in reference.iter().zip(&crashed) {
        assert_eq!(p1, p2);
        assert_eq!(
            (t1, t2),
            (&(if p1.as_str() == "USDMXN" { usd } else { eur }), t1),
            "no tick skipped or applied twice"
        );
        assert!(
            r1 == r2,
            "{p1}: final checkpoints differ ({} vs {} bytes)",
            r1.len(),
            r2.len()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
