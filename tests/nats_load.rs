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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_drain_floor_reads_every_message_of_the_stream_once() {
    let dir = std::env::temp_dir().join(format!("cambio-drain-floor-{}", std::process::id()));
    let server = LocalServer::start(true, Some(&dir.join("store"))).expect("nats-server");
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = async_nats::jetstream::new(client.clone());
    js.get_or_create_stream(async_nats::jetstream::stream::Config {
        name: "FX".into(),
        subjects: vec!["fx.ticks.>".into()],
        ..Default::default()
    })
    .await
    .unwrap();
    // More than two pulls of 1,024, and a last partial one.
    const N: usize = 2_500;
    for i in 0..N {
        js.publish("fx.ticks.USDMXN", Bytes::from(format!("{{\"i\":{i}}}")))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let drain = |durable: &str| {
        Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args(["floor", "--drain", "--nats", &server.url(), "--durable", durable])
            .output()
            .unwrap()
    };
    let out = drain("floor-drain");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with(&format!("drained {N} messages in ")), "{text}");
    // Everything was acknowledged up to the last message: the consumer has nothing left (the server
    // applies an acknowledgement shortly after receiving it: read until it shows, for at most 5 s).
    let stream = js.get_stream("FX").await.unwrap();
    let mut info = stream.consumer_info("floor-drain").await.unwrap();
    for _ in 0..50 {
        if info.ack_floor.stream_sequence == N as u64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        info = stream.consumer_info("floor-drain").await.unwrap();
    }
    assert_eq!(info.ack_floor.stream_sequence, N as u64);
    assert_eq!(info.num_ack_pending, 0);
    // A second durable reads it all again.
    let again = drain("floor-drain-2");
    assert!(String::from_utf8_lossy(&again.stdout).starts_with(&format!("drained {N} messages")));
    let _ = std::fs::remove_dir_all(&dir);
}
