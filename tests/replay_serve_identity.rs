//! Replay and serve are one pipeline: with the champion/challenger contest and the rollback guard on, a
//! scenario replayed in process (`cambio replay --out`) gives, line for line and byte for byte, what a live
//! `cambio serve --scenario` publishes when the same scenario is fed to it over NATS (`cambio replay
//! --nats`): forecasts, quarantines, quality changes, alarms, adaptations, promotions and rollbacks.
//!
//! The periodic `quality` and `drift` publications are timed by the wall clock, not by ticks, so they are
//! the only messages left out of the comparison.

use std::process::Command;
use std::time::{Duration, Instant};

use cambio::nats::LocalServer;
use cambio::replay::synth::structured_mids;
use futures_util::StreamExt;
use serde_json::Value;

mod common;
use common::*;

const PAIR: &str = "USDMXN";

/// The champion cannot learn (its signal weight's prior holds it on the random walk); the challenger is the
/// default model, which learns the bounce of this stream and is promoted after a window. The guard runs
/// too, with a short window, so the known-good copy is taken and compared live as in the replay.
const ENGINE: &str = r#"horizons = ["1step", "10step"]
model.version = "rw"
model.weight_prior = 1e12
"#;

const CONTEST: &str = r#"
[challenger]
enabled = true
rollback = true
rollback_window = 200
window = 1000
margin = 0.02

[challenger.engine]
horizons = ["1step", "10step"]
"#;

/// A stream with a bounce a model can learn, 4,000 ticks one second apart, with a few payloads that must
/// be quarantined (malformed JSON, a crossed quote, a missing price).
fn ticks() -> Vec<String> {
    let t0 = cambio::time::parse_ts_us("2024-01-01T00:00:00Z").expect("ts");
    let mut lines: Vec<String> = structured_mids(3, 4_000, -0.4, &[])
        .into_iter()
        .zip(0i64..)
        .map(|(mid, i)| {
            let ts = cambio::time::format_ts(t0 + i * 1_000_000);
            format!(
                r#"{{"pair":"{PAIR}","ts":"{ts}","bid":{},"ask":{},"source":"test","seq":{}}}"#,
                mid - 0.0005,
                mid + 0.0005,
                i + 1
            )
        })
        .collect();
    lines[500] =
        r#"{"pair":"USDMXN","ts":"2024-01-01T00:08:20Z","bid":18.2,"ask":18.1,"source":"test","seq":501}"#.into();
    lines[900] = r#"{"pair":"USDMXN","ts":"2024-01-01T00:15:00Z","source":"test","seq":901}"#.into();
    lines[1200] = r#"{"pair":"USDMXN","ts":"#.into();
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_with_the_contest_reproduces_what_serve_publishes() {
    let dir = temp_dir("identity");
    std::fs::write(dir.join("ticks.jsonl"), ticks().join("\n") + "\n").expect("ticks");
    std::fs::write(
        dir.join("scenario.toml"),
        format!("name = \"identity\"\npair = \"{PAIR}\"\ndata = \"ticks.jsonl\"\n\n[config]\n{ENGINE}"),
    )
    .expect("scenario");
    let config = format!("[engine]\n{ENGINE}\n{CONTEST}");
    let config_path = dir.join("contest.toml");
    std::fs::write(&config_path, &config).expect("config");

    // In process.
    let replayed = dir.join("replay.jsonl");
    let status = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .arg("replay")
        .arg(&dir)
        .arg("--config")
        .arg(&config_path)
        .arg("--out")
        .arg(&replayed)
        .arg("--no-timing")
        .output()
        .expect("run replay");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    let expected: Vec<String> = std::fs::read_to_string(&replayed)
        .expect("replay output")
        .lines()
        .map(str::to_owned)
        .collect();
    let count = |ty: &str| {
        expected
            .iter()
            .filter(|l| l.contains(&format!("{{\"type\":\"{ty}\"")))
            .count()
    };
    assert!(
        count("promotion") >= 1,
        "the stream must give a promotion in the replay"
    );
    assert_eq!(count("quarantined"), 3, "the three bad payloads are quarantined");
    assert!(count("forecast") > 3_900);

    // Live.
    let server = LocalServer::start(false, None).expect("nats-server");
    let dir_arg = dir.to_string_lossy().into_owned();
    let serve = Serve::start_with(&server.url(), &config, &dir, &["--scenario", &dir_arg]);
    let client = async_nats::connect(server.url()).await.expect("connect");
    wait_ready(&client, &serve).await;
    let mut sub = client.subscribe(format!("fx.*.{PAIR}")).await.expect("subscribe");
    client.flush().await.expect("flush");
    let publish = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .arg("replay")
        .arg(&dir)
        .args(["--nats", &server.url()])
        .output()
        .expect("run replay --nats");
    assert!(publish.status.success(), "{}", String::from_utf8_lossy(&publish.stderr));

    let mut live: Vec<String> = Vec::with_capacity(expected.len());
    let deadline = Instant::now() + Duration::from_secs(60);
    while live.len() < expected.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(Some(msg)) = tokio::time::timeout(left, sub.next()).await else {
            panic!(
                "only {} of {} outputs published within 60 s:\n{}",
                live.len(),
                expected.len(),
                serve.log()
            );
        };
        if msg.subject.starts_with("fx.ticks.") {
            continue;
        }
        let v: Value = serde_json::from_slice(&msg.payload).expect("every publication is JSON");
        if v["type"] == "quality" || v["type"] == "drift" {
            continue;
        }
        live.push(String::from_utf8(msg.payload.to_vec()).expect("UTF-8"));
    }
    for (i, (l, e)) in live.iter().zip(&expected).enumerate() {
        assert_eq!(l, e, "output {i} differs between serve (left) and replay (right)");
    }
}
