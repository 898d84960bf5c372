//! The floor and the load tool against a real nats-server on a free port. Small and bounded; no timing is
//! asserted (the machine is shared and noisy): only that nothing is lost and the report has its fields.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cambio::nats::LocalServer;
use cambio::nats::floor::QUERY_REPLY;
use cambio::nats::load::ticks::{TickGen, seq_of};
use cambio::tick::Pair;
use futures_util::StreamExt;

/// Kills the floor child even when an assertion fails.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_floor_forwards_every_tick_unchanged_and_answers_queries() {
    let server = LocalServer::start(false, None).expect("nats-server");
    let floor = Child(
        Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args(["floor", "--nats", &server.url()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the floor"),
    );
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    client.flush().await.unwrap();
    let pair = Pair::parse("USDMXN").unwrap();
    let mut feed = TickGen::new(pair, 3);

    // Ready when a probe tick comes back (bounded).
    let deadline = Instant::now() + Duration::from_secs(20);
    'ready: loop {
        assert!(Instant::now() < deadline, "the floor never forwarded a probe tick");
        let (seq, payload) = feed.next_tick();
        client.publish("fx.ticks.USDMXN", payload).await.unwrap();
        client.flush().await.unwrap();
        while let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(200), preds.next()).await {
            if seq_of(&m.payload) == Some(seq) {
                break 'ready;
            }
        }
    }

    // 2,000 ticks over about a second; every one must come back, byte for byte.
    let n = 2_000u64;
    let mut sent = Vec::new();
    for k in 0..n {
        let (_, payload) = feed.next_tick();
        client.publish("fx.ticks.USDMXN", payload.clone()).await.unwrap();
        sent.push(payload);
        if k % 100 == 99 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    client.flush().await.unwrap();
    let first = seq_of(&sent[0]).unwrap();
    let mut got = vec![false; n as usize];
    let mut received = 0;
    while received < n {
        let m = tokio::time::timeout(Duration::from_secs(10), preds.next())
            .await
            .expect("no forecast within 10 s: ticks lost")
            .expect("subscription open");
        let Some(i) = seq_of(&m.payload).and_then(|s| s.checked_sub(first)) else {
            continue;
        };
        let i = i as usize;
        assert_eq!(m.payload, sent[i], "forwarded unchanged");
        assert!(!got[i], "tick {i} forwarded twice");
        got[i] = true;
        received += 1;
    }

    let reply = client
        .request("fx.query.USDMXN", Bytes::new())
        .await
        .expect("query reply");
    assert_eq!(&reply.payload[..], QUERY_REPLY);
    let pong = client
        .request("$SRV.PING.floor", Bytes::new())
        .await
        .expect("micro service ping");
    assert!(String::from_utf8_lossy(&pong.payload).contains("\"floor\""));
    drop(floor);
}

#[test]
fn load_against_the_floor_writes_a_report() {
    let report = std::env::temp_dir().join(format!("cambio-load-test-{}.json", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args([
            "load",
            "--target",
            "floor",
            "--mode",
            "latency",
            "--duration",
            "2s",
            "--rate",
            "1000",
        ])
        .arg("--report")
        .arg(&report)
        .output()
        .expect("run cambio load");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("latency p99 (us)"), "{stdout}");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let _ = std::fs::remove_file(&report);
    let lat = &json["floor"]["latency"];
    for field in [
        "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "count", "lost", "sent",
    ] {
        assert!(lat[field].is_u64(), "{field} in {json}");
    }
    assert_eq!(lat["sent"].as_u64(), Some(1_000), "2 s at 1,000/s minus 1 s of warm-up");
    // Nothing is lost on loopback at 1,000/s: every timed tick came back once (`count` excludes warm-up).
    assert_eq!(lat["lost"].as_u64(), Some(0), "ticks lost: {json}");
    assert_eq!(lat["count"].as_u64(), Some(1_000), "every timed tick answered: {json}");
    assert!(json["cambio"].is_null());
    assert_eq!(json["rate"].as_u64(), Some(1_000));
    assert!(json["comparisons"].as_array().unwrap().is_empty());
    assert_eq!(json["passed"], true);
}
