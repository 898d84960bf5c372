//! The model registry on files written by `cambio serve` itself: every `cambio models` command, damaged
//! pages, a file held by a running service, restarts that change nothing, and a live rollback.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cambio::checkpoint::{CheckpointStore, Retention};
use cambio::nats::LocalServer;
use serde_json::Value;

mod common;
use common::*;

fn config(db: &Path) -> String {
    format!(
        "[serve]\nreport_interval_secs = 0.5\n[checkpoint]\npath = \"{}\"\nevery_ticks = 400\nkeep_last = 3\n",
        db.display()
    )
}

async fn publish(client: &async_nats::Client, pair: &str, lines: &[String]) {
    for l in lines {
        client
            .publish_with_headers(format!("fx.ticks.{pair}"), replay_header(), Bytes::from(l.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

async fn wait_ticks(client: &async_nats::Client, serve: &Serve, pair: &str, n: u64) -> Value {
    status_until(
        client,
        pair,
        serve,
        Duration::from_secs(60),
        &format!("{n} ticks"),
        |v| v["ticks"].as_u64() == Some(n),
    )
    .await
}

/// A registry written by serve: two pairs, several cuts (retention at work), then SIGTERM.
async fn serve_written_file(server: &LocalServer, client: &async_nats::Client, dir: &Path) -> PathBuf {
    let db = dir.join("models.redb");
    let mut serve = Serve::start(&server.url(), &config(&db), dir);
    wait_ready(client, &serve).await;
    let usd = walk_of("USDMXN", 17.0, 2_000, 3);
    let eur = walk_of("EURUSD", 1.08, 2_000, 4);
    for k in 0..4 {
        let part = k * 500..(k + 1) * 500;
        publish(client, "USDMXN", &usd[part.clone()]).await;
        publish(client, "EURUSD", &eur[part]).await;
        wait_ticks(client, &serve, "USDMXN", (k as u64 + 1) * 500).await;
        wait_ticks(client, &serve, "EURUSD", (k as u64 + 1) * 500).await;
    }
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    db
}

fn cambio(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cambio")).args(args).output().unwrap()
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn versions(db: &Path) -> Vec<(String, u64, String)> {
    let store = CheckpointStore::open_existing(db, Retention::default()).unwrap();
    store
        .list(None)
        .unwrap()
        .into_iter()
        .map(|m| (m.pair.to_string(), m.version, m.reason.name().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_models_command_works_on_a_file_written_by_serve() {
    let dir = temp_dir("registry-cli");
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = serve_written_file(&server, &client, &dir).await;
    let db_s = db.to_str().unwrap();
    let exported = dir.join("usdmxn.ckpt");
    let exported_s = exported.to_str().unwrap();
    let before = versions(&db);
    let oldest_usd = before.iter().find(|(p, ..)| p == "USDMXN").unwrap().1.to_string();

    for args in [
        vec!["models", "list", "--db", db_s],
        vec!["models", "list", "--db", db_s, "--pair", "EURUSD"],
        vec!["models", "show", "--db", db_s, "--pair", "USDMXN"],
        vec![
            "models",
            "show",
            "--db",
            db_s,
            "--pair",
            "USDMXN",
            "--version",
            &oldest_usd,
        ],
        vec![
            "models",
            "keep",
            "--db",
            db_s,
            "--pair",
            "USDMXN",
            "--version",
            &oldest_usd,
        ],
        vec![
            "models",
            "keep",
            "--db",
            db_s,
            "--pair",
            "USDMXN",
            "--version",
            &oldest_usd,
            "--off",
        ],
        vec![
            "models", "export", "--db", db_s, "--pair", "USDMXN", "--out", exported_s,
        ],
        vec![
            "models",
            "rollback",
            "--db",
            db_s,
            "--pair",
            "USDMXN",
            "--version",
            &oldest_usd,
        ],
        vec!["models", "import", "--db", db_s, exported_s],
    ] {
        let out = cambio(&args);
        let (stdout, stderr) = text(&out);
        assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    }
    let after = versions(&db);
    let reasons: Vec<&str> = after.iter().map(|(_, _, r)| r.as_str()).collect();
    assert!(
        reasons.contains(&"rollback") && reasons.contains(&"import"),
        "{after:?}"
    );
    // The cut follows the offline changes: the import (the newest USDMXN version) is current.
    let store = CheckpointStore::open_existing(&db, Retention::default()).unwrap();
    let newest = after.iter().filter(|(p, ..)| p == "USDMXN").map(|v| v.1).max();
    assert_eq!(store.cut().unwrap().unwrap().heads.get("USDMXN").copied(), newest);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Flips 64 bytes at `offset` in a copy of `db`.
fn damaged_copy(db: &Path, offset: usize, to: &Path) {
    let mut bytes = std::fs::read(db).unwrap();
    let end = (offset + 64).min(bytes.len());
    for b in &mut bytes[offset..end] {
        *b ^= 0xff;
    }
    std::fs::write(to, bytes).unwrap();
}

/// Every store operation a command or a restart does, on one damaged copy; returns whether the file
/// opened. An error is fine (and must be a damage error at open); a panic is not.
fn exercise(path: &Path) -> bool {
    let store = match CheckpointStore::open(path, Retention { keep_last: 3 }) {
        Ok(s) => s,
        Err(e) => {
            assert!(e.is_damage(), "{}: not a damage error: {e}", path.display());
            return false;
        }
    };
    let _ = store.restore();
    let _ = store.cut();
    for pair in store.pairs().unwrap_or_default() {
        for m in store.list(Some(pair)).unwrap_or_default() {
            let _ = store.get(pair, m.version);
            let _ = store.meta(pair, m.version);
        }
        let _ = store.latest_good(pair);
        if let Ok(Some((meta, _))) = store.latest_good(pair) {
            let _ = store.mark_keep(pair, meta.version, true, "test", 1);
            let _ = store.rollback(pair, meta.version, 1, "test", None);
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_pages_give_a_clear_error_never_a_panic() {
    let dir = temp_dir("registry-damage");
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = serve_written_file(&server, &client, &dir).await;
    let len = std::fs::metadata(&db).unwrap().len() as usize;
    let copy = dir.join("damaged.redb");

    // The library, at every 4 KiB page.
    let (mut opened, mut refused) = (0, 0);
    for offset in (4096..len).step_by(4096) {
        damaged_copy(&db, offset, &copy);
        let r = std::panic::catch_unwind(|| exercise(&copy));
        match r {
            Ok(true) => opened += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("offset {offset}: a panic escaped the store"),
        }
    }
    eprintln!(
        "{} pages of {len} bytes: {opened} opened, {refused} refused as damaged",
        len / 4096
    );
    assert!(refused > 0, "flipping the first pages must be found");

    // The binary: `cambio models list`, and `cambio serve` with and without --fresh.
    for offset in [4096, 8192, 16384, 32768, (len / 4096 - 1) * 4096] {
        damaged_copy(&db, offset, &copy);
        let out = cambio(&["models", "list", "--db", copy.to_str().unwrap()]);
        let (stdout, stderr) = text(&out);
        let code = out.status.code();
        assert!(
            !stderr.contains("panicked")
                && (code == Some(0) || (code == Some(2) && stderr.contains("checkpoint store"))),
            "offset {offset}: {code:?}\n{stdout}\n{stderr}"
        );
    }
    let probe = dir.join("probe.redb");
    for offset in [4096, 8192, 16384, 32768] {
        // Whether the library refuses this damage (on another copy: opening may repair it in place).
        damaged_copy(&db, offset, &probe);
        if exercise(&probe) {
            continue;
        }
        damaged_copy(&db, offset, &copy);
        let cfg = format!("[checkpoint]\npath = \"{}\"\n", copy.display());
        let mut serve = Serve::start(&server.url(), &cfg, &dir);
        let deadline = Instant::now() + Duration::from_secs(30);
        let code = loop {
            if let Some(s) = serve.child.try_wait().unwrap() {
                break s.code();
            }
            assert!(Instant::now() < deadline, "serve did not refuse:\n{}", serve.log());
            std::thread::sleep(Duration::from_millis(20));
        };
        let log = serve.log();
        assert!(
            code == Some(2) && !log.contains("panicked") && log.contains("--fresh"),
            "offset {offset}: {code:?}\n{log}"
        );
        drop(serve);
        let mut serve = Serve::start_with(&server.url(), &cfg, &dir, &["--fresh"]);
        wait_ready(&client, &serve).await;
        assert_eq!(serve.terminate(), 0, "{}", serve.log());
        let log = serve.log();
        assert!(
            !log.contains("panicked") && log.contains("moved aside"),
            "offset {offset}: {log}"
        );
        let _ = std::fs::remove_file(&copy);
    }

    // An empty file: a warning, then a new registry.
    std::fs::write(&copy, b"").unwrap();
    let cfg = format!("[checkpoint]\npath = \"{}\"\n", copy.display());
    let mut serve = Serve::start(&server.url(), &cfg, &dir);
    wait_ready(&client, &serve).await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    assert!(serve.log().contains("0 bytes"), "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_while_serve_runs_says_the_file_is_in_use() {
    let dir = temp_dir("registry-locked");
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = dir.join("models.redb");
    let mut serve = Serve::start(&server.url(), &config(&db), &dir);
    wait_ready(&client, &serve).await;
    let out = cambio(&["models", "list", "--db", db.to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("in use by another process")
            && stderr.contains("cambio serve")
            && stderr.contains("fx.models.<PAIR>"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("Database already open"),
        "no raw redb message: {stderr}"
    );
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restarts_without_new_ticks_write_no_version() {
    let dir = temp_dir("registry-restarts");
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = dir.join("models.redb");
    let mut serve = Serve::start(&server.url(), &config(&db), &dir);
    wait_ready(&client, &serve).await;
    publish(&client, "USDMXN", &walk(250, 5)).await;
    wait_ticks(&client, &serve, "USDMXN", 250).await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    drop(serve);
    let first = versions(&db);
    assert_eq!(first.len(), 1, "{first:?}");
    for _ in 0..3 {
        let mut serve = Serve::start(&server.url(), &config(&db), &dir);
        wait_ready(&client, &serve).await;
        wait_ticks(&client, &serve, "USDMXN", 250).await;
        assert_eq!(serve.terminate(), 0, "{}", serve.log());
    }
    assert_eq!(versions(&db), first, "restarts with no new tick add no version");
    let _ = std::fs::remove_dir_all(&dir);
}

fn quarantined(status: &Value) -> u64 {
    status["quarantined"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_rollback_answers_at_once_and_keeps_the_stream_time() {
    let dir = temp_dir("registry-rollback");
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = dir.join("models.redb");
    let cfg = format!(
        "[serve]\nreport_interval_secs = 0.5\n[checkpoint]\npath = \"{}\"\nevery_ticks = 1000\n",
        db.display()
    );
    let lines = walk(1_700, 9);
    let mut serve = Serve::start(&server.url(), &cfg, &dir);
    wait_ready(&client, &serve).await;
    publish(&client, "USDMXN", &lines[..1_000]).await;
    wait_ticks(&client, &serve, "USDMXN", 1_000).await;
    publish(&client, "USDMXN", &lines[1_000..1_500]).await;
    let before = wait_ticks(&client, &serve, "USDMXN", 1_500).await;
    let (_, list) = request(&client, "fx.models.USDMXN", "").await;
    let v1 = &list["versions"][0];
    assert_eq!(v1["ticks"], 1_000, "{list}");
    let (err, live) = request(&client, "fx.query.USDMXN", "").await;
    assert!(!err, "{live}");

    let (err, rolled) = request(&client, "fx.models.USDMXN", r#"{"op":"rollback","version":1}"#).await;
    assert!(!err, "{rolled}");
    assert_eq!(rolled["ticks"], 1_500, "the stream position does not go back: {rolled}");

    // The query answers the restored model at once, from the last tick seen.
    let (err, now) = request(&client, "fx.query.USDMXN", "").await;
    assert!(!err, "{now}");
    assert_eq!(now["model"]["version"], 1, "the restored model answers: {now}");
    assert_eq!(
        (&now["ts"], &now["mid"], &now["seq"]),
        (&live["ts"], &live["mid"], &live["seq"])
    );
    assert_ne!(now["horizons"], live["horizons"], "another model's forecast");
    let status = wait_ticks(&client, &serve, "USDMXN", 1_500).await;
    assert_eq!(status["quality"], before["quality"], "quality scores continue");
    assert_eq!(status["model"]["version"], 1, "{status}");

    // Ticks seen before the rollback are not new to the restored model.
    let accepted = status["accepted"].as_u64().unwrap();
    publish(&client, "USDMXN", &lines[1_200..1_300]).await;
    let status = wait_ticks(&client, &serve, "USDMXN", 1_600).await;
    assert_eq!(status["accepted"].as_u64(), Some(accepted), "{status}");
    assert_eq!(quarantined(&status), quarantined(&before) + 100, "{status}");
    // New ones are.
    publish(&client, "USDMXN", &lines[1_500..1_700]).await;
    let status = wait_ticks(&client, &serve, "USDMXN", 1_800).await;
    assert_eq!(status["accepted"].as_u64(), Some(accepted + 200), "{status}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}
