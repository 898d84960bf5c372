//! Serve's periodic retraining (`[retrain]`) end to end: a data lake written by `cambio replay --archive`,
//! `cambio serve` against a real nats-server retraining from it in the background, the version it writes
//! put into the contest through the challenge path, and the contest promoting it; under the four-eyes rule
//! an approval request instead; a run without usable data alerted as failed and tried again.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cambio::nats::LocalServer;
use futures_util::StreamExt;
use serde_json::Value;

mod common;
use common::*;

const PAIR: &str = "USDMXN";

/// Ticks one second apart with a bounce a learning model picks up (AR(1) increments, φ = −0.4), as the
/// contest tests use.
fn bounce(n: u64) -> Vec<String> {
    let t0 = cambio::time::parse_ts_us("2024-01-01T00:00:00Z").unwrap();
    cambio::replay::synth::structured_mids(3, n, -0.4, &[])
        .into_iter()
        .zip(0..)
        .map(|(mid, i)| {
            let ts = cambio::time::format_ts(t0 + i as i64 * 1_000_000);
            format!(
                r#"{{"pair":"{PAIR}","ts":"{ts}","bid":{},"ask":{},"source":"test","seq":{}}}"#,
                mid - 0.0005,
                mid + 0.0005,
                i + 1
            )
        })
        .collect()
}

/// A data lake holding `lines`, written by `cambio replay --archive`.
fn lake_of(dir: &Path, lines: &[String]) -> PathBuf {
    let file = dir.join("history.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n").unwrap();
    let lake = dir.join("lake");
    let o = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args([
            "replay",
            file.to_str().unwrap(),
            "--archive",
            lake.to_str().unwrap(),
            "--no-timing",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    lake
}

/// The registry and the champion: a model that cannot learn (its signal weight's prior holds it on the
/// random walk), registry challengers on, a low bar for promotion.
fn base(db: &Path, extra: &str) -> String {
    format!(
        "[serve]\nreport_interval_secs = 0.5\n[checkpoint]\npath = \"{}\"\nevery_ticks = 1000\nkeep_last = 100\n\
         [engine]\nhorizons = [\"1step\", \"10step\"]\nmodel.version = \"rw\"\nmodel.weight_prior = 1e12\n\
         [challenger]\nenabled = true\nrollback = true\nwindow = 500\nmargin = 0.02\n{extra}",
        db.display()
    )
}

/// `[retrain]` from `lake`, once at start (then hourly), with a search small enough for a test.
fn retrain_table(from: &Path, every: &str) -> String {
    format!(
        "[retrain]\nevery = \"{every}\"\nat_start = true\nfrom = \"{}\"\nholdout = \"20%\"\nmin_window = 300\n\
         null_ticks = 50000\nmax_evals = 20\nsearch_secs = 20\n",
        from.display()
    )
}

/// The first message on `sub` whose `type` is `kind`, within `secs`.
async fn next_of(sub: &mut async_nats::Subscriber, serve: &Serve, kind: &str, secs: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => {
                let v: Value = serde_json::from_slice(&m.payload).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
            _ => panic!("no `{kind}` within {secs} s\n{}", serve.log()),
        }
    }
}

async fn models_req(client: &async_nats::Client, body: &str) -> (bool, Value) {
    request(client, &format!("fx.models.{PAIR}"), body).await
}

/// A first session of the champion alone on the first 100 ticks, so the next start restores the pair
/// (its shard runs from the start, and retraining at start has a pair to challenge).
async fn champion_session(server: &LocalServer, client: &async_nats::Client, dir: &Path, cfg: &str, lines: &[String]) {
    let mut serve = Serve::start(&server.url(), cfg, dir);
    wait_ready(client, &serve).await;
    publish_replayed(client, PAIR, &lines[..100]).await;
    status_until(client, PAIR, &serve, Duration::from_secs(60), "100 ticks", |s| {
        s["ticks"] == 100
    })
    .await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_retrains_challenges_and_the_contest_promotes_the_retrained_version() {
    let dir = temp_dir("retrain-serve");
    let db = dir.join("m.redb");
    let lines = bounce(7_000);
    let lake = lake_of(&dir, &lines[..3_000]);
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    champion_session(&server, &client, &dir, &base(&db, ""), &lines).await;

    // Retraining at start: a version with reason `retrain`, made the live challenger, alerted.
    let mut alerts = client.subscribe(format!("fx.alert.{PAIR}")).await.unwrap();
    client.flush().await.unwrap();
    let mut serve = Serve::start(&server.url(), &base(&db, &retrain_table(&lake, "1h")), &dir);
    wait_ready(&client, &serve).await;
    let alert = next_of(&mut alerts, &serve, "retrain", 120).await;
    assert_eq!(alert["pair"], PAIR, "{alert}");
    assert_eq!(alert["outcome"], "challenged", "{alert}");
    assert_eq!(alert["actor"], "serve-retrain", "{alert}");
    assert!((1..=3_000).contains(&alert["ticks"].as_u64().unwrap()), "{alert}");
    let version = alert["version"].as_u64().expect("version");
    let holdout = alert["holdout"].as_array().expect("holdout");
    assert_eq!(holdout.len(), 2, "{alert}");
    assert!(holdout.iter().all(|h| h["n"].as_u64().unwrap() > 0), "{alert}");
    status_until(
        &client,
        PAIR,
        &serve,
        Duration::from_secs(10),
        "the retrained challenger",
        |s| s["contest"]["challenger"]["origin"]["version"] == version,
    )
    .await;
    let list = models_req(&client, r#"{"op":"list"}"#).await.1;
    let v = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["version"] == version)
        .cloned()
        .expect("the retrained version is listed");
    assert_eq!(v["reason"], "retrain", "{v}");
    assert_eq!(v["lineage"]["actor"], "serve-retrain", "{v}");
    assert_eq!(v["lineage"]["dataset"]["kind"], "retrain:archive", "{v}");

    // The contest decides: the retrained model learns the bounce, the champion cannot; promoted.
    publish_replayed(&client, PAIR, &lines[3_000..]).await;
    let promotion = next_of(&mut alerts, &serve, "promotion", 90).await;
    assert_eq!(promotion["promoted"]["version"], version, "{promotion}");
    assert_eq!(promotion["promoted_model"]["version"], version, "{promotion}");
    assert_eq!(promotion["demoted"], "live", "{promotion}");
    // The promotion's version is written after the alert: the audit log is read until it is there.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audit = models_req(&client, r#"{"op":"audit"}"#).await.1;
        let ops = audit_ops(&audit["entries"]);
        let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
        if ops.ends_with(&[
            "retrain serve-retrain ok",
            "challenge serve-retrain ok",
            "promotion serve ok",
        ]) {
            break;
        }
        assert!(Instant::now() < deadline, "{ops:?}\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(serve.log().contains("retrain run"), "{}", serve.log());
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_four_eyes_a_retrain_files_an_approval_request() {
    let dir = temp_dir("retrain-serve-4eyes");
    let db = dir.join("m.redb");
    let lines = bounce(3_000);
    let lake = lake_of(&dir, &lines);
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let four_eyes = "[registry]\nrequire_approval = true\n";
    champion_session(&server, &client, &dir, &base(&db, four_eyes), &lines).await;

    let mut alerts = client.subscribe(format!("fx.alert.{PAIR}")).await.unwrap();
    client.flush().await.unwrap();
    let cfg = base(&db, &format!("{four_eyes}{}", retrain_table(&lake, "1h")));
    let mut serve = Serve::start(&server.url(), &cfg, &dir);
    wait_ready(&client, &serve).await;
    let alert = next_of(&mut alerts, &serve, "retrain", 120).await;
    assert_eq!(alert["outcome"], "awaiting_approval", "{alert}");
    let version = alert["version"].as_u64().expect("version");
    let id = alert["approval_id"].as_u64().expect("approval id");
    let pending = models_req(&client, r#"{"op":"approvals"}"#).await.1;
    let req = pending["pending"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .cloned()
        .expect("the request is pending");
    assert_eq!(req["requested"]["op"], "challenge", "{req}");
    assert_eq!(req["requested"]["version"], version, "{req}");
    assert_eq!(req["requested_by"], "serve-retrain", "{req}");
    let status = request(&client, &format!("fx.status.{PAIR}"), "").await.1;
    assert!(
        status["contest"]["challenger"]["origin"]["version"] != version,
        "not a challenger before approval: {status}"
    );
    // Another actor approves: the retrained version runs as the challenger.
    let (is_err, reply) = models_req(&client, &format!(r#"{{"op":"approve","id":{id},"actor":"bob"}}"#)).await;
    assert!(!is_err, "{reply}\n{}", serve.log());
    status_until(
        &client,
        PAIR,
        &serve,
        Duration::from_secs(10),
        "the approved challenger",
        |s| s["contest"]["challenger"]["origin"]["version"] == version,
    )
    .await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_without_data_is_alerted_as_failed_and_tried_again() {
    let dir = temp_dir("retrain-serve-fail");
    let db = dir.join("m.redb");
    let lines = bounce(200);
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    champion_session(&server, &client, &dir, &base(&db, ""), &lines).await;

    let mut alerts = client.subscribe(format!("fx.alert.{PAIR}")).await.unwrap();
    client.flush().await.unwrap();
    let missing = dir.join("no-lake-yet");
    let addr = format!("127.0.0.1:{}", free_port());
    let cfg = base(&db, &retrain_table(&missing, "1s"));
    let mut serve = Serve::start_with(&server.url(), &cfg, &dir, &["--metrics", &addr]);
    wait_ready(&client, &serve).await;
    for _ in 0..2 {
        let alert = next_of(&mut alerts, &serve, "retrain", 60).await;
        assert_eq!(alert["outcome"], "failed", "{alert}");
        assert!(alert["version"].is_null(), "{alert}");
        assert!(alert["detail"].as_str().unwrap().contains("no-lake-yet"), "{alert}");
    }
    // Serve goes on: ticks are still served, and the failures are in the audit log.
    publish_replayed(&client, PAIR, &lines[100..]).await;
    status_until(&client, PAIR, &serve, Duration::from_secs(60), "200 ticks", |s| {
        s["ticks"] == 200
    })
    .await;
    // Counted by outcome, with the last run's duration.
    let text = metrics_until(
        &format!("http://{addr}/metrics"),
        Duration::from_secs(30),
        "two failed runs",
        |t| metric(t, "cambio_retrain_runs_total", &[("outcome", "failed")]).is_some_and(|n| n >= 2.0),
    )
    .await;
    assert_eq!(
        metric(&text, "cambio_retrain_runs_total", &[("outcome", "challenged")]),
        Some(0.0),
        "{text}"
    );
    assert!(
        metric(&text, "cambio_retrain_last_duration_seconds", &[]).is_some_and(|s| s > 0.0),
        "{text}"
    );
    let audit = models_req(&client, r#"{"op":"audit"}"#).await.1;
    let failed = audit_ops(&audit["entries"])
        .iter()
        .filter(|o| *o == "retrain serve-retrain refused")
        .count();
    assert!(failed >= 2, "{audit}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// `cambio retrain` (offline) into the registry serve uses.
fn retrain_offline(db: &Path, lake: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args([
            "retrain",
            "--from",
            lake.to_str().unwrap(),
            "--pair",
            PAIR,
            "--db",
            db.to_str().unwrap(),
        ])
        .args([
            "--min-window",
            "300",
            "--null-ticks",
            "50000",
            "--max-evals",
            "4",
            "--actor",
            "alice",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
}

/// A retrained version is a candidate: a restart resumes the live model, never the retrained one, and a
/// pair whose only version is retrained starts fresh with it as the challenger once it is challenged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retrained_version_is_never_restored_as_the_live_model() {
    let dir = temp_dir("retrain-serve-restore");
    let lines = bounce(3_200);
    let lake = lake_of(&dir, &lines[..3_000]);
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();

    // The champion's version 1, then a retrained version 2: serve resumes version 1.
    let db = dir.join("m.redb");
    champion_session(&server, &client, &dir, &base(&db, ""), &lines).await;
    retrain_offline(&db, &lake);
    let mut serve = Serve::start(&server.url(), &base(&db, ""), &dir);
    wait_ready(&client, &serve).await;
    let status = request(&client, &format!("fx.status.{PAIR}"), "").await.1;
    assert_eq!(status["model"]["version"], 1, "{status}\n{}", serve.log());
    assert_eq!(status["ticks"], 100, "{status}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());

    // Only a retrained version, challenged offline: the pair starts fresh, the version is its challenger.
    let db = dir.join("fresh.redb");
    retrain_offline(&db, &lake);
    let o = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args([
            "models",
            "challenge",
            "--db",
            db.to_str().unwrap(),
            PAIR,
            "1",
            "--actor",
            "alice",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let mut serve = Serve::start(&server.url(), &base(&db, ""), &dir);
    wait_ready(&client, &serve).await;
    publish_replayed(&client, PAIR, &lines[3_000..3_100]).await;
    let status = status_until(&client, PAIR, &serve, Duration::from_secs(60), "the challenger", |s| {
        s["ticks"] == 100 && s["contest"]["challenger"]["origin"]["version"] == 1
    })
    .await;
    assert_ne!(status["model"]["version"], 1, "{status}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}
