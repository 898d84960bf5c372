//! `cambio archive`: a real nats-server with JetStream, a real `cambio serve` in JetStream mode and the
//! archive as child processes; the Parquet files are read back with pyarrow (another implementation).
//!
//! - every kind's rows equal what was published; a business event accepted by serve is archived in its
//!   masked form, and the client's clear identifier is nowhere in the lake (neither in the files' bytes nor
//!   in any value read back), its pseudonym is; `cambio replay --archive` on the same ticks writes the same
//!   forecast rows;
//! - `--metrics` serves the archive's Prometheus metrics, and `--stream-max-age`/`--stream-max-bytes` set
//!   the streams' limits (kept when a later run does not ask for any);
//! - SIGKILL: the archive killed with `kill -9` several times while ticks flow ends with exactly one row
//!   per stream message (none lost, none twice) and no temporary file.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use cambio::nats::LocalServer;
use serde_json::Value;

mod common;
use common::*;

const SERVE: &str = "[serve]\nmode = \"jetstream\"\nreport_interval_secs = 60\n";
const CLEAR_ID: &str = "CLEAR-CLIENT-4242-ZQX";
const KEY: &str = "archive-test-masking-key-0123456789";

/// Reads a kind's rows with pyarrow: a JSON list of objects sorted by (stream, stream_seq); binary
/// columns as text, timestamps as their ISO text, lists of structs as arrays of objects.
const READ: &str = r#"
import sys, json, glob, pyarrow.parquet as pq
rows = []
for f in sorted(glob.glob(sys.argv[1] + '/kind=' + sys.argv[2] + '/**/*.parquet', recursive=True)):
    t = pq.read_table(f)
    meta = pq.ParquetFile(f).metadata.metadata or {}
    assert meta.get(b'schema_version') == b'3', (f, meta)
    for r in t.to_pylist():
        for k, v in list(r.items()):
            if isinstance(v, bytes):
                r[k] = v.decode('utf-8', 'replace')
            elif v is not None and not isinstance(v, (str, int, float, bool, list)):
                r[k] = str(v)
        r['_file'] = f
        rows.append(r)
rows.sort(key=lambda r: (r['stream'], r['stream_seq']))
print(json.dumps(rows))
"#;

fn read_kind(lake: &Path, kind: &str) -> Vec<Value> {
    let out = Command::new("python3")
        .args(["-c", READ])
        .arg(lake)
        .arg(kind)
        .output()
        .expect("python3 (scripts/test.sh installs pyarrow)");
    assert!(
        out.status.success(),
        "reading {kind} with pyarrow: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    match serde_json::from_slice(&out.stdout).unwrap() {
        Value::Array(v) => v,
        other => panic!("{other}"),
    }
}

/// A forecast message rebuilt from its row's columns (docs/lake.md, schema version 3).
fn forecast_from_row(row: &Value) -> Value {
    let mut model = serde_json::json!({
        "name": row["model"],
        "version": row["model_version"],
        "config": row["config_hash"],
    });
    if !row["model_kind"].is_null() {
        model["kind"] = row["model_kind"].clone();
    }
    serde_json::json!({
        "type": "forecast",
        "pair": row["pair"],
        "ts": row["ts"],
        "seq": row["tick_seq"],
        "mid": row["mid"],
        "horizons": row["horizons"],
        "model": model,
        "quality": row["quality"],
        "flags": row["flags"],
        "drift": row["drift"],
        "warming_up": row["warming_up"],
    })
}

/// A `cambio archive` child, killed on drop.
struct Archive {
    child: Child,
    log: PathBuf,
}

impl Archive {
    fn start(url: &str, lake: &Path, dir: &Path, n: usize) -> Archive {
        Archive::start_with(url, lake, dir, n, &[])
    }

    fn start_with(url: &str, lake: &Path, dir: &Path, n: usize, extra: &[&str]) -> Archive {
        let log = dir.join(format!("archive-{n}.log"));
        let child = Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args([
                "archive",
                "--nats",
                url,
                "--max-age",
                "200ms",
                "--max-rows",
                "500",
                "--dir",
            ])
            .arg(lake)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Archive { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits until this process consumes both streams (its "archiving" log lines): a SIGTERM before its
    /// handler is installed would kill it like SIGKILL, which the crash test already covers.
    fn wait_archiving(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches("archiving").count() < 2 {
            assert!(
                Instant::now() < deadline,
                "archive never started consuming:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn terminate(&mut self) {
        self.wait_archiving();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                assert_eq!(status.code(), Some(0), "{}", self.log());
                return;
            }
            assert!(Instant::now() < deadline, "archive did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- archive log ---\n{}", self.log());
        }
    }
}

/// Waits until the archive's consumers exist on both streams (it is ready to archive).
async fn wait_consumers(js: &jetstream::Context, archive: &Archive) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut ok = true;
        for s in ["FX", "FX_OUT"] {
            ok &= match js.get_stream(s).await {
                Ok(st) => st.consumer_info("cambio-archive").await.is_ok(),
                Err(_) => false,
            };
        }
        if ok {
            return;
        }
        assert!(Instant::now() < deadline, "archive not ready:\n{}", archive.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the archive's consumers have nothing pending or unacknowledged (every message is in a
/// durable file).
async fn wait_drained(js: &jetstream::Context, archive: &Archive) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut done = true;
        for s in ["FX", "FX_OUT"] {
            let st = js.get_stream(s).await.unwrap();
            let c = st.consumer_info("cambio-archive").await.unwrap();
            done &= c.num_pending == 0 && c.num_ack_pending == 0;
        }
        if done {
            return;
        }
        assert!(Instant::now() < deadline, "archive never caught up:\n{}", archive.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn publish_js(js: &jetstream::Context, msgs: &[(String, String)], id_from: usize) {
    for (n, chunk) in msgs.chunks(500).enumerate() {
        let mut acks = Vec::with_capacity(chunk.len());
        for (k, (subject, body)) in chunk.iter().enumerate() {
            let mut h = replay_header();
            h.insert("Nats-Msg-Id", format!("m-{}", id_from + n * 500 + k).as_str());
            acks.push(
                js.publish_with_headers(subject.clone(), h, Bytes::from(body.clone()))
                    .await
                    .unwrap(),
            );
        }
        for a in acks {
            a.await.unwrap();
        }
    }
}

fn files_with(dir: &Path, pred: &dyn Fn(&str) -> bool, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            files_with(&e.path(), pred, out);
        } else if pred(&e.file_name().to_string_lossy()) {
            out.push(e.path());
        }
    }
}

fn payloads(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .map(|r| r["payload"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_is_read_back_as_published_masked_and_as_replay_writes_it() {
    let dir = temp_dir("archive");
    let lake = dir.join("lake");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let url = server.url().to_string();
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut archive = Archive::start(&url, &lake, &dir, 0);
    wait_consumers(&js, &archive).await;
    let serve = Serve::start_with_env(&url, SERVE, &dir, &[], &[("CAMBIO_MASK_KEY", KEY)]);
    wait_ready(&client, &serve).await;
    let mut preds = client.subscribe("fx.pred.>").await.unwrap();
    let mut quars = client.subscribe("fx.quarantine.>").await.unwrap();
    let mut bizq = client.subscribe("fx.business.quarantine.>").await.unwrap();
    let mut bizm = client.subscribe("fx.business.masked.>").await.unwrap();

    let ticks = walk(300, 7);
    let mut msgs: Vec<(String, String)> = ticks
        .iter()
        .map(|t| ("fx.ticks.USDMXN".to_string(), t.clone()))
        .collect();
    msgs.insert(100, ("fx.ticks.USDMXN".into(), "not json at all".into()));
    msgs.insert(
        200,
        (
            "fx.ticks.USDMXN".into(),
            r#"{"pair":"USDMXN","ts":"2024-03-04T00:03:20Z","bid":-1,"ask":17}"#.into(),
        ),
    );
    msgs.push((
        "fx.factors.TIIE28".into(),
        r#"{"name":"TIIE28","ts":"2024-03-04","value":11.25,"source":"banxico"}"#.into(),
    ));
    publish_js(&js, &msgs, 0).await;
    // A business event refused (bad rate): serve publishes its quarantine record with the pseudonym only.
    let event = format!(
        r#"{{"ts":"2024-03-04T10:00:00Z","client":"{CLEAR_ID}","event":"offered","rate":-5,"amount":1000,"currency":"USD","segment":"sme"}}"#
    );
    client.publish("fx.business.USDMXN", Bytes::from(event)).await.unwrap();
    // And one accepted: serve publishes it in its masked form, which the archive keeps.
    let accepted = format!(
        r#"{{"ts":"2024-03-04T10:01:00Z","client":"{CLEAR_ID}","event":"accepted","rate":17.05,"amount":2500,"currency":"USD","segment":"sme"}}"#
    );
    client
        .publish("fx.business.USDMXN", Bytes::from(accepted))
        .await
        .unwrap();
    client.flush().await.unwrap();

    let preds = collect(&mut preds, 300, Duration::from_secs(60)).await;
    let quars = collect(&mut quars, 2, Duration::from_secs(30)).await;
    let bizq = collect(&mut bizq, 1, Duration::from_secs(30)).await;
    let bizm = collect(&mut bizm, 1, Duration::from_secs(30)).await;
    assert_eq!(
        (preds.len(), quars.len(), bizq.len(), bizm.len()),
        (300, 2, 1, 1),
        "{}",
        serve.log()
    );
    wait_drained(&js, &archive).await;
    archive.terminate();

    // Ticks as received: every published tick, in stream order, byte for byte.
    let rows = read_kind(&lake, "ticks");
    let received: Vec<&Value> = rows.iter().filter(|r| r["status"] == "received").collect();
    let want: Vec<&str> = msgs
        .iter()
        .filter(|(s, _)| s.starts_with("fx.ticks"))
        .map(|(_, b)| b.as_str())
        .collect();
    let got: Vec<&str> = received.iter().map(|r| r["payload"].as_str().unwrap()).collect();
    assert_eq!(got, want);
    assert_eq!(received[0]["pair"], "USDMXN");
    assert_eq!(received[0]["tick_seq"], 1);
    assert!(received[0]["bid"].as_f64().unwrap() > 16.0);
    assert!(
        received[0]["_file"]
            .as_str()
            .unwrap()
            .contains("/kind=ticks/pair=USDMXN/date=2024-03-04/part-FX-")
    );
    // Quarantined: the two bad ticks, with their reasons and the unreadable one's raw payload.
    let q: Vec<&Value> = rows.iter().filter(|r| r["status"] == "quarantined").collect();
    let want_q: Vec<String> = quars
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    assert_eq!(
        q.iter()
            .map(|r| r["payload"].as_str().unwrap().to_string())
            .collect::<Vec<_>>(),
        want_q
    );
    assert_eq!(q[0]["raw"], "not json at all");
    assert!(q.iter().all(|r| r["reason"].is_string()), "{q:?}");
    // Factors.
    let f = read_kind(&lake, "factors");
    assert_eq!(payloads(&f), vec![msgs.last().unwrap().1.clone()]);
    assert_eq!(f[0]["value"], 11.25);
    assert_eq!(f[0]["key"], "TIIE28");
    // Forecasts, with the model that made them.
    let live = read_kind(&lake, "forecasts");
    let want_p: Vec<String> = preds
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect();
    // Every forecast is restated by its row's columns, so the row keeps no payload: the message is
    // rebuilt from the columns, every field equal to the one published.
    assert_eq!(live.len(), want_p.len());
    for (row, p) in live.iter().zip(&want_p) {
        assert!(row["payload"].is_null(), "{row}");
        let published: Value = serde_json::from_str(p).unwrap();
        assert!(published["horizons"].as_array().is_some_and(|a| !a.is_empty()), "{p}");
        assert_eq!(forecast_from_row(row), published, "{p}");
    }
    assert!(live[0]["arrival"].is_string());
    // Business: the accepted event in its masked form and the refused one's record, both with the
    // pseudonym; the clear identifier nowhere in the lake.
    let b = read_kind(&lake, "business");
    let mut want_b = vec![
        String::from_utf8_lossy(&bizm[0].payload).into_owned(),
        String::from_utf8_lossy(&bizq[0].payload).into_owned(),
    ];
    let mut got_b = payloads(&b);
    want_b.sort();
    got_b.sort();
    assert_eq!(got_b, want_b);
    let masked = b
        .iter()
        .find(|r| r["type"] == "business_event")
        .expect("the accepted event");
    let refused = b.iter().find(|r| r["type"] == "business_quarantined").unwrap();
    let pseudonym = masked["client"].as_str().unwrap();
    assert_eq!(pseudonym.len(), 32, "{pseudonym}");
    assert!(pseudonym.bytes().all(|c| c.is_ascii_hexdigit()), "{pseudonym}");
    assert_eq!(refused["client"], pseudonym);
    assert_eq!(masked["pair"], "USDMXN");
    assert_eq!(masked["ts"], "2024-03-04T10:01:00.000Z");
    assert_eq!(masked["event"], "accepted");
    assert_eq!(masked["rate"], 17.05);
    assert_eq!(masked["amount"], 2500.0);
    assert_eq!(masked["segment"], "sme");
    assert!(
        masked["_file"]
            .as_str()
            .unwrap()
            .contains("/kind=business/pair=USDMXN/date=2024-03-04/part-FX_OUT-")
    );
    let mut all = Vec::new();
    files_with(&lake, &|_| true, &mut all);
    assert!(all.len() >= 5);
    for file in &all {
        let bytes = std::fs::read(file).unwrap();
        assert!(
            !bytes.windows(CLEAR_ID.len()).any(|w| w == CLEAR_ID.as_bytes()),
            "{} holds the clear client id",
            file.display()
        );
    }
    // The files are compressed, so their bytes alone prove little: every value of every kind, read back,
    // holds the pseudonym where the client was and never the identifier.
    let mut text = String::new();
    for kind in ["ticks", "factors", "forecasts", "alerts", "business"] {
        text.push_str(&serde_json::to_string(&read_kind(&lake, kind)).unwrap());
    }
    assert!(!text.contains(CLEAR_ID));
    assert!(text.matches(pseudonym).count() >= 4, "in the columns and the payloads");

    // The same ticks replayed offline: the same forecast rows, apart from stream, sequence and arrival.
    let input = dir.join("ticks.jsonl");
    let lines: Vec<&str> = msgs
        .iter()
        .filter(|(s, _)| s.starts_with("fx.ticks"))
        .map(|(_, b)| b.as_str())
        .collect();
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let cfg = dir.join("replay.toml");
    std::fs::write(&cfg, SERVE).unwrap();
    let offline = dir.join("offline");
    let out = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["replay", "--pair", "USDMXN", "--no-timing", "--config"])
        .arg(&cfg)
        .arg("--archive")
        .arg(&offline)
        .arg(&input)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let strip = |rows: Vec<Value>| -> Vec<Value> {
        rows.into_iter()
            .map(|mut r| {
                let o = r.as_object_mut().unwrap();
                for k in ["stream", "stream_seq", "arrival", "_file"] {
                    o.remove(k);
                }
                r
            })
            .collect()
    };
    let replayed = read_kind(&offline, "forecasts");
    assert_eq!(replayed.len(), 300);
    assert_eq!(replayed[0]["stream"], "replay");
    assert!(replayed[0]["arrival"].is_null());
    assert_eq!(strip(replayed), strip(live));
    let rq = read_kind(&offline, "ticks");
    assert_eq!(payloads(&rq).len(), 2, "the two quarantined ticks");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_a_stream_flows_loses_nothing_and_writes_nothing_twice() {
    const TICKS: usize = 20_000;
    const KILLS: usize = 6;
    let dir = temp_dir("archive-kill");
    let lake = dir.join("lake");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let url = server.url().to_string();
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut archive = Archive::start(&url, &lake, &dir, 0);
    wait_consumers(&js, &archive).await;
    let serve = Serve::start(&url, SERVE, &dir);
    wait_ready(&client, &serve).await;

    let msgs: Vec<(String, String)> = walk(TICKS, 3)
        .into_iter()
        .map(|t| ("fx.ticks.USDMXN".to_string(), t))
        .collect();
    let publisher = {
        let js = js.clone();
        tokio::spawn(async move {
            for (i, chunk) in msgs.chunks(1_000).enumerate() {
                publish_js(&js, chunk, i * 1_000).await;
                tokio::time::sleep(Duration::from_millis(60)).await;
            }
        })
    };
    for k in 1..=KILLS {
        tokio::time::sleep(Duration::from_millis(150 + 70 * k as u64)).await;
        archive.kill9();
        archive = Archive::start(&url, &lake, &dir, k);
    }
    tokio::time::timeout(Duration::from_secs(120), publisher)
        .await
        .unwrap()
        .unwrap();
    status_until(&client, "USDMXN", &serve, Duration::from_secs(120), "every tick", |v| {
        v["ticks"].as_u64() == Some(TICKS as u64)
    })
    .await;
    wait_consumers(&js, &archive).await;
    wait_drained(&js, &archive).await;
    archive.terminate();

    let mut temps = Vec::new();
    files_with(&lake, &|n| n.ends_with(".tmp"), &mut temps);
    assert!(temps.is_empty(), "{temps:?}");
    let fx = js
        .get_stream("FX")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .messages;
    let out = js
        .get_stream("FX_OUT")
        .await
        .unwrap()
        .get_info()
        .await
        .unwrap()
        .state
        .messages;
    assert_eq!(fx, TICKS as u64);
    let mut seen: BTreeSet<(String, u64)> = BTreeSet::new();
    let mut rows_in = 0u64;
    let mut rows_out = 0u64;
    for kind in ["ticks", "forecasts", "alerts", "factors", "business"] {
        for r in read_kind(&lake, kind) {
            let key = (
                r["stream"].as_str().unwrap().to_string(),
                r["stream_seq"].as_u64().unwrap(),
            );
            assert!(seen.insert(key.clone()), "{key:?} twice");
            if key.0 == "FX" {
                rows_in += 1;
            } else {
                rows_out += 1;
            }
        }
    }
    assert_eq!(
        (rows_in, rows_out),
        (fx, out),
        "rows read back against the streams' messages"
    );
    assert!(out >= TICKS as u64, "a forecast per tick at least: {out}");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_served_and_stream_limits_are_set_when_asked() {
    const TICKS: usize = 500;
    let dir = temp_dir("archive-metrics");
    let lake = dir.join("lake");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let url = server.url().to_string();
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut archive = Archive::start_with(
        &url,
        &lake,
        &dir,
        0,
        &[
            "--metrics",
            &addr,
            "--stream-max-age",
            "30days",
            "--stream-max-bytes",
            "1GiB",
        ],
    );
    wait_consumers(&js, &archive).await;
    for s in ["FX", "FX_OUT"] {
        let cfg = js.get_stream(s).await.unwrap().get_info().await.unwrap().config;
        assert_eq!(cfg.max_age, Duration::from_secs(30 * 86_400), "{s}");
        assert_eq!(cfg.max_bytes, 1 << 30, "{s}");
        if s == "FX_OUT" {
            assert!(
                cfg.subjects.contains(&"fx.business.masked.>".to_string()),
                "{:?}",
                cfg.subjects
            );
        }
    }
    let msgs: Vec<(String, String)> = walk(TICKS, 11)
        .into_iter()
        .map(|t| ("fx.ticks.USDMXN".to_string(), t))
        .collect();
    publish_js(&js, &msgs, 0).await;
    wait_drained(&js, &archive).await;
    let url_m = format!("http://{addr}/metrics");
    let text = metrics_until(&url_m, Duration::from_secs(30), "every tick written and no lag", |t| {
        metric(t, "cambio_archive_rows_total", &[("kind", "ticks")]) == Some(TICKS as f64)
            && metric(t, "cambio_archive_lag_messages", &[("stream", "FX")]) == Some(0.0)
            && metric(t, "cambio_archive_pending_messages", &[("stream", "FX")]) == Some(0.0)
    })
    .await;
    assert!(metric(&text, "cambio_archive_files_total", &[("kind", "ticks")]).unwrap() >= 1.0);
    assert!(metric(&text, "cambio_archive_bytes_total", &[("kind", "ticks")]).unwrap() > 1000.0);
    assert!(metric(&text, "cambio_archive_flush_duration_seconds_count", &[]).unwrap() >= 1.0);
    assert_eq!(
        metric(&text, "cambio_archive_errors_total", &[("class", "write")]),
        Some(0.0)
    );
    assert_eq!(metric(&text, "cambio_archive_redelivered_total", &[]), Some(0.0));
    promtool_check_metrics(&text);
    archive.terminate();

    // A later run that asks for no limit keeps the ones set, and says what it wrote on its way out.
    let mut again = Archive::start(&url, &lake, &dir, 1);
    wait_consumers(&js, &again).await;
    again.terminate();
    for s in ["FX", "FX_OUT"] {
        let cfg = js.get_stream(s).await.unwrap().get_info().await.unwrap().config;
        assert_eq!(
            (cfg.max_age, cfg.max_bytes),
            (Duration::from_secs(30 * 86_400), 1 << 30),
            "{s}"
        );
    }
    let rows = read_kind(&lake, "ticks");
    assert_eq!(rows.len(), TICKS);
}

/// An archive of an earlier version left a consumer that is acknowledged message by message: it is
/// replaced by one acknowledged up to a durable floor (one acknowledgement for all the messages before
/// it), and every message is archived once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_acknowledged_message_by_message_is_replaced_and_every_message_archived_once() {
    use jetstream::consumer::AckPolicy;
    const TICKS: usize = 3_000;
    let dir = temp_dir("archive-ack-all");
    let lake = dir.join("lake");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let url = server.url().to_string();
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let stream = js
        .get_or_create_stream(jetstream::stream::Config {
            name: "FX".into(),
            subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
            storage: jetstream::stream::StorageType::File,
            ..Default::default()
        })
        .await
        .unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("cambio-archive".into()),
            ack_policy: AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();
    let msgs: Vec<(String, String)> = walk(2 * TICKS, 21)
        .into_iter()
        .map(|t| ("fx.ticks.USDMXN".to_string(), t))
        .collect();
    publish_js(&js, &msgs[..TICKS], 0).await;
    let mut archive = Archive::start(&url, &lake, &dir, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut all = true;
        for s in ["FX", "FX_OUT"] {
            all &= match js.get_stream(s).await {
                Ok(st) => st
                    .consumer_info("cambio-archive")
                    .await
                    .is_ok_and(|c| c.config.ack_policy == AckPolicy::All),
                Err(_) => false,
            };
        }
        if all {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the consumers never acknowledged up to a floor:\n{}",
            archive.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_drained(&js, &archive).await;
    // More while it runs.
    publish_js(&js, &msgs[TICKS..], TICKS).await;
    wait_drained(&js, &archive).await;
    archive.terminate();
    let seqs: Vec<u64> = read_kind(&lake, "ticks")
        .iter()
        .map(|r| r["stream_seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=2 * TICKS as u64).collect::<Vec<_>>());
}
