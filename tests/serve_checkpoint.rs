//! `cambio serve` with a checkpoint file: restore on start, the model registry over request-reply
//! (`fx.models.<PAIR>`), and what happens with a damaged file.

use std::time::{Duration, Instant};

use bytes::Bytes;
use cambio::nats::LocalServer;
use serde_json::Value;

mod common;
use common::*;

async fn publish(client: &async_nats::Client, lines: &[String]) {
    for chunk in lines.chunks(500) {
        for l in chunk {
            client
                .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(l.clone()))
                .await
                .unwrap();
        }
        client.flush().await.unwrap();
    }
}

async fn wait_ticks(client: &async_nats::Client, serve: &Serve, n: u64) -> Value {
    status_until(
        client,
        "USDMXN",
        serve,
        Duration::from_secs(60),
        &format!("{n} ticks"),
        |v| v["ticks"].as_u64() == Some(n),
    )
    .await
}

fn versions(list: &Value) -> Vec<(u64, String)> {
    list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["version"].as_u64().unwrap(),
                v["reason"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_restores_and_the_registry_answers_over_nats() {
    let dir = temp_dir("serve-ckpt");
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = dir.join("models.redb");
    let config = format!(
        "[serve]\nreport_interval_secs = 0.5\n[checkpoint]\npath = \"{}\"\nevery_ticks = 1000\nkeep_last = 4\n",
        db.display()
    );
    let lines = walk_of("USDMXN", 17.0, 3_000, 7);

    let mut serve = Serve::start(&server.url(), &config, &dir);
    wait_ready(&client, &serve).await;
    publish(&client, &lines[..2_500]).await;
    wait_ticks(&client, &serve, 2_500).await;
    let (_, list) = request(&client, "fx.models.USDMXN", "").await;
    let periodic = versions(&list);
    assert!(
        periodic.iter().filter(|(_, r)| r == "periodic").count() >= 2,
        "a version every 1000 ticks: {list}"
    );
    // A manual checkpoint, then keep the first version whatever the retention.
    let (err, manual) = request(&client, "fx.models.USDMXN", r#"{"op":"checkpoint"}"#).await;
    assert!(!err, "{manual}");
    assert_eq!(
        (manual["reason"].as_str(), manual["ticks"].as_u64()),
        (Some("manual"), Some(2_500))
    );
    let first = periodic[0].0;
    let (err, kept) = request(
        &client,
        "fx.models.USDMXN",
        &format!(r#"{{"op":"keep","version":{first}}}"#),
    )
    .await;
    assert!(!err && kept["keep"] == true, "{kept}");
    let (err, shown) = request(
        &client,
        "fx.models.USDMXN",
        &format!(r#"{{"op":"show","version":{first}}}"#),
    )
    .await;
    assert!(!err && shown["version"] == first, "{shown}");
    // Bad requests get a JSON error with a code.
    let (err, e) = request(&client, "fx.models.USDMXN", r#"{"op":"rollback","version":999}"#).await;
    assert!(err && e["code"] == 404, "{e}");
    let (err, e) = request(&client, "fx.models.USDMXN", r#"{"op":"explode"}"#).await;
    assert!(err && e["code"] == 400, "{e}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let log = serve.log();
    assert!(log.contains("shutdown checkpoint written"), "{log}");
    drop(serve);

    // Restart: the newest version comes back before any new tick (the manual one: no tick came after it, so
    // the shutdown wrote no copy of it).
    let mut serve = Serve::start(&server.url(), &config, &dir);
    wait_ready(&client, &serve).await;
    let status = wait_ticks(&client, &serve, 2_500).await;
    assert!(
        status["horizons"][0]["n"].as_u64().unwrap() > 2_000,
        "metrics restored: {status}"
    );
    let log = serve.log();
    assert!(
        log.contains("restored checkpoint") && log.contains("reason=\"manual\""),
        "{log}"
    );
    publish(&client, &lines[2_500..]).await;
    wait_ticks(&client, &serve, 3_000).await;

    // Roll the live model back to the kept version: the service continues from its state, at the same point
    // of the stream.
    let (_, kept_meta) = request(
        &client,
        "fx.models.USDMXN",
        &format!(r#"{{"op":"show","version":{first}}}"#),
    )
    .await;
    let kept_ticks = kept_meta["ticks"].as_u64().unwrap();
    let (err, rolled) = request(
        &client,
        "fx.models.USDMXN",
        &format!(r#"{{"op":"rollback","version":{first}}}"#),
    )
    .await;
    assert!(!err, "{rolled}");
    assert_eq!(rolled["reason"], "rollback");
    assert_eq!(rolled["note"], format!("rollback to version {first}"));
    assert!(kept_ticks < 3_000);
    assert_eq!(rolled["ticks"].as_u64(), Some(3_000), "the position does not go back");
    wait_ticks(&client, &serve, 3_000).await;
    let (_, list) = request(&client, "fx.models.USDMXN", r#"{"op":"list"}"#).await;
    let all = versions(&list);
    assert!(all.len() <= 4 + 1, "retention: the last 4 plus the kept one: {all:?}");
    assert!(
        all.iter().any(|(v, _)| *v == first),
        "the kept version survives retention"
    );
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    drop(serve);

    // Offline, the CLI reads the same registry.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["models", "list", "--db"])
        .arg(&db)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("rollback"), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_file_stops_the_start_unless_fresh_is_asked_for() {
    let dir = temp_dir("serve-damaged");
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = dir.join("models.redb");
    std::fs::write(&db, b"this is not a redb file, just damage").unwrap();
    let config = format!("[checkpoint]\npath = \"{}\"\n", db.display());

    let mut serve = Serve::start(&server.url(), &config, &dir);
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(s) = serve.child.try_wait().unwrap() {
            break s.code();
        }
        assert!(Instant::now() < deadline, "serve did not refuse:\n{}", serve.log());
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_ne!(code, Some(0));
    let log = serve.log();
    assert!(
        log.contains("cannot open checkpoint store") && log.contains("--fresh"),
        "a clear error naming the fallback: {log}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        b"this is not a redb file, just damage",
        "nothing changed"
    );
    drop(serve);

    // Asked to start fresh: the damaged file is moved aside, not deleted.
    let serve = Serve::start_with(&server.url(), &config, &dir, &["--fresh"]);
    wait_ready(&client, &serve).await;
    assert!(serve.log().contains("moved aside"), "{}", serve.log());
    let aside: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("models.redb.damaged-"))
        .collect();
    assert_eq!(aside.len(), 1);
    drop(serve);

    // Without a checkpoint file the registry endpoint says so.
    let serve = Serve::start(&server.url(), "", &dir);
    wait_ready(&client, &serve).await;
    let (err, e) = request(&client, "fx.models.USDMXN", "").await;
    assert!(err && e["code"] == 503, "{e}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `[checkpoint] restore = false` starts every pair fresh, including a pair whose first tick arrives after
/// the start (it used to resume from its newest stored version, as an evicted pair does).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_false_starts_a_stored_pair_fresh() {
    let dir = temp_dir("serve-norestore");
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = dir.join("models.redb");
    let config = |restore: bool| {
        format!(
            "[serve]\nreport_interval_secs = 0.5\n[checkpoint]\npath = \"{}\"\nrestore = {restore}\n",
            db.display()
        )
    };
    let lines = walk_of("USDMXN", 17.0, 600, 11);
    let mut serve = Serve::start(&server.url(), &config(true), &dir);
    wait_ready(&client, &serve).await;
    publish(&client, &lines[..500]).await;
    wait_ticks(&client, &serve, 500).await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    drop(serve);

    let mut serve = Serve::start(&server.url(), &config(false), &dir);
    wait_ready(&client, &serve).await;
    publish(&client, &lines[500..501]).await;
    let status = status_until(
        &client,
        "USDMXN",
        &serve,
        Duration::from_secs(60),
        "the first tick after the start",
        |v| v["ticks"].as_u64().is_some_and(|n| n > 0),
    )
    .await;
    assert_eq!(status["ticks"].as_u64(), Some(1), "fresh, not resumed: {status}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}
