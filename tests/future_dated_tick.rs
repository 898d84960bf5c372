//! One tick dated a day ahead (a wrong offset) in a historical stream is refused as `future_timestamp`,
//! and the good ticks after it are accepted: the tick is refused, not the stream after it. Replay of the
//! real OANDA EUR/USD ticks, and `cambio serve` fed the same kind of stream with `Cambio-Replay`.

mod common;

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use cambio::nats::LocalServer;
use common::{Serve, replay_header, temp_dir, wait_ready, walk};
use futures_util::StreamExt;
use serde_json::Value;

const DAY_US: i64 = 86_400_000_000;

/// The first `n` rows of the real EUR/USD ticks (May 2014), with row `wrong` dated one day later.
fn eurusd_with_a_wrong_date(n: usize, wrong: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/ticks/oanda_eurusd_ticks_201405.csv");
    let text = std::fs::read_to_string(&path).expect("../shared/data/ticks (see its README)");
    let mut lines = text.lines();
    let mut out = format!("{}\n", lines.next().unwrap());
    for (i, line) in lines.take(n).enumerate() {
        if i == wrong {
            let (ts, rest) = line.split_once(',').unwrap();
            let shifted = cambio::time::parse_ts_us(ts).unwrap() + DAY_US;
            out.push_str(&format!("{},{rest}\n", cambio::time::format_ts(shifted)));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[test]
fn replay_refuses_the_tick_a_day_ahead_and_keeps_the_stream_after_it() {
    let dir = temp_dir("future-replay");
    let csv = dir.join("eurusd.csv");
    std::fs::write(&csv, eurusd_with_a_wrong_date(2_000, 1_000)).unwrap();
    let report = dir.join("r.json");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["replay", csv.to_str().unwrap(), "--pair", "EURUSD", "--report"])
        .arg(&report)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let q = &r["quarantined"];
    assert_eq!(q["future_timestamp"], 1, "{q}");
    assert!(q["stale_timestamp"].is_null() || q["stale_timestamp"] == 0, "{q}");
    // Everything else in this stretch of the real feed is accepted (its own few duplicates aside).
    let accepted = r["accepted"].as_u64().unwrap();
    assert!(accepted >= 1_990, "accepted {accepted}: {q}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_refuses_the_tick_a_day_ahead_and_keeps_the_stream_after_it() {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir("future-serve");
    let serve = Serve::start(&server.url(), "", &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut quarantine = client.subscribe("fx.quarantine.USDMXN").await.unwrap();
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    client.flush().await.unwrap();

    let mut ticks = walk(400, 5);
    let mut wrong: Value = serde_json::from_str(&ticks[300]).unwrap();
    let ts = cambio::time::parse_ts_us(wrong["ts"].as_str().unwrap()).unwrap() + DAY_US;
    wrong["ts"] = Value::from(cambio::time::format_ts(ts));
    ticks[300] = wrong.to_string();
    for t in &ticks {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(t.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();

    // 399 forecasts (one per good tick) and exactly one quarantine.
    let mut forecasts = 0;
    while forecasts < 399 {
        match tokio::time::timeout(Duration::from_secs(20), preds.next()).await {
            Ok(Some(_)) => forecasts += 1,
            _ => panic!("only {forecasts} forecasts of 399:\n{}", serve.log()),
        }
    }
    let q = tokio::time::timeout(Duration::from_secs(5), quarantine.next())
        .await
        .expect("a quarantine")
        .unwrap();
    let q: Value = serde_json::from_slice(&q.payload).unwrap();
    assert_eq!(q["reason"], "future_timestamp", "{q}");
    assert!(
        tokio::time::timeout(Duration::from_millis(500), quarantine.next())
            .await
            .is_err(),
        "a second quarantine"
    );
}
