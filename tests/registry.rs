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
    // Its lineage: the version restored is the parent, and the ticks the replaced model saw since are not
    // its data.
    let lineage = &rolled["lineage"];
    assert_eq!(
        (lineage["parent"].as_u64(), lineage["actor"].as_str()),
        (Some(1), Some("unknown")),
        "{rolled}"
    );
    assert_eq!(lineage["dataset"]["ticks"], 0, "{rolled}");

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

/// A copy of the registry fixture written by cambio before lineage, the audit log and approvals existed.
fn pre_lineage_copy(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/registry/pre_lineage.redb");
    let db = dir.join("old.redb");
    std::fs::copy(src, &db).unwrap();
    db
}

fn ok(args: &[&str]) -> String {
    let out = cambio(args);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{args:?}: {stdout}\n{stderr}");
    stdout
}

#[test]
fn a_registry_written_before_lineage_opens_lists_and_records_lineage_from_now_on() {
    let dir = temp_dir("registry-old");
    let db = pre_lineage_copy(&dir);
    let db_s = db.to_str().unwrap();
    let list = ok(&["models", "list", "--db", db_s]);
    assert!(list.contains("import") && list.contains("rollback"), "{list}");
    let json: Value = serde_json::from_str(&ok(&["models", "list", "--db", db_s, "--json"])).unwrap();
    let versions = json.as_array().unwrap();
    assert_eq!(versions.len(), 2, "{json}");
    assert!(versions.iter().all(|v| v["lineage"].is_null()), "{json}");
    let show = ok(&["models", "show", "USDMXN", "1", "--db", db_s]);
    assert!(show.starts_with("USDMXN version 1\n"), "{show}");
    for line in [
        "actor         unknown",
        "code          unknown",
        "configuration unknown",
    ] {
        assert!(show.contains(line), "{line}: {show}");
    }
    assert!(!show.contains("Some("), "no Debug formatting: {show}");
    let diff = ok(&["models", "diff", "USDMXN", "1", "2", "--db", db_s]);
    assert!(diff.contains("reason: import -> rollback"), "{diff}");
    assert_eq!(
        ok(&["models", "audit", "--db", db_s]),
        "seq  at  actor  op  pair  from  to  outcome  detail\n(no entries)\n"
    );

    // New operations on the old file record lineage and audit entries.
    ok(&["models", "rollback", "USDMXN", "2", "--db", db_s, "--actor", "carol"]);
    let show = ok(&["models", "show", "USDMXN", "3", "--db", db_s]);
    for line in ["actor         carol", "parent        2", "reason        rollback"] {
        assert!(show.contains(line), "{line}: {show}");
    }
    let audit: Value = serde_json::from_str(&ok(&["models", "audit", "--db", db_s, "--json"])).unwrap();
    assert_eq!(audit[0]["op"], "rollback", "{audit}");
    assert_eq!(audit[0]["actor"], "carol", "{audit}");
    assert_eq!(
        (audit[0]["from_version"].as_u64(), audit[0]["to_version"].as_u64()),
        (Some(2), Some(3))
    );
    // An import records the file's hash, the build's code version and the engine configuration.
    let ckpt = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/checkpoint/v3_usdmxn_2000.ckpt");
    ok(&[
        "models",
        "import",
        "--db",
        db_s,
        ckpt.to_str().unwrap(),
        "--actor",
        "dave",
    ]);
    let v4: Value = serde_json::from_str(&ok(&["models", "show", "--db", db_s, "USDMXN", "4", "--json"])).unwrap();
    let l = &v4["lineage"];
    assert_eq!(l["actor"], "dave", "{v4}");
    assert!(l["parent"].is_null(), "an import has no parent: {v4}");
    assert_eq!(l["dataset"]["kind"], "file", "{v4}");
    assert!(l["dataset"]["hash"].as_str().unwrap().starts_with("sha256:"), "{v4}");
    assert_eq!(l["code"]["crate_version"], env!("CARGO_PKG_VERSION"), "{v4}");
    assert!(l["config"].is_object() && l["config_hash"].is_string(), "{v4}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn offline_four_eyes_a_rollback_waits_for_another_actor() {
    let dir = temp_dir("registry-4eyes");
    let db = pre_lineage_copy(&dir);
    let db_s = db.to_str().unwrap();
    // The rule as the last `cambio serve` on the file recorded it.
    CheckpointStore::open_existing(&db, Retention::default())
        .unwrap()
        .set_require_approval(true)
        .unwrap();
    let out = ok(&["models", "rollback", "USDMXN", "1", "--db", db_s, "--actor", "alice"]);
    assert!(out.contains("request 1") && out.contains("waits for approval"), "{out}");
    assert_eq!(versions(&db).len(), 2, "nothing rolled back yet");
    let pending = ok(&["models", "approvals", "--db", db_s]);
    assert!(
        pending.contains("request 1: USDMXN rollback to version 1, asked by alice"),
        "{pending}"
    );
    let refused = cambio(&["models", "approve", "1", "--db", db_s, "--actor", "alice"]);
    let (_, err) = text(&refused);
    assert_eq!(refused.status.code(), Some(2), "{err}");
    assert!(err.contains("must be approved by a different actor"), "{err}");
    let out = ok(&["models", "approve", "1", "--db", db_s, "--actor", "bob"]);
    assert!(out.contains("request 1 approved: USDMXN version 3"), "{out}");
    assert_eq!(ok(&["models", "approvals", "--db", db_s]), "(no pending request)\n");
    // A challenge needs approval too; approved, the version is marked for the next serve start.
    let out = ok(&["models", "challenge", "USDMXN", "1", "--db", db_s, "--actor", "alice"]);
    assert!(
        out.contains("request 2: USDMXN challenge with version 1 waits"),
        "{out}"
    );
    let store = CheckpointStore::open_existing(&db, Retention::default()).unwrap();
    assert!(store.challenges().unwrap().is_empty(), "not before the approval");
    drop(store);
    let out = ok(&["models", "approve", "2", "--db", db_s, "--actor", "bob"]);
    assert!(out.contains("runs as the challenger from the next"), "{out}");
    let store = CheckpointStore::open_existing(&db, Retention::default()).unwrap();
    assert_eq!(store.challenges().unwrap().values().copied().collect::<Vec<_>>(), [1]);
    drop(store);
    let audit: Value = serde_json::from_str(&ok(&["models", "audit", "--db", db_s, "--json"])).unwrap();
    let ops = audit_ops(&audit);
    assert_eq!(
        ops,
        [
            "request alice pending",
            "approve alice refused",
            "rollback alice ok",
            "approve bob ok",
            "request alice pending",
            "challenge alice pending",
            "approve bob ok"
        ],
        "{audit}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

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
                r#"{{"pair":"USDMXN","ts":"{ts}","bid":{},"ask":{},"source":"test","seq":{}}}"#,
                mid - 0.0005,
                mid + 0.0005,
                i + 1
            )
        })
        .collect()
}

async fn models_req(client: &async_nats::Client, body: &str) -> (bool, Value) {
    request(client, "fx.models.USDMXN", body).await
}

/// The first message on `sub` whose `type` is `kind`, within 60 s.
async fn next_of(sub: &mut async_nats::Subscriber, serve: &Serve, kind: &str) -> Value {
    use futures_util::StreamExt;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => {
                let v: Value = serde_json::from_slice(&m.payload).unwrap();
                if v["type"] == kind {
                    return v;
                }
            }
            _ => panic!("no `{kind}` within 60 s\n{}", serve.log()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenged_version_is_promoted_by_the_contest_and_audited() {
    let dir = temp_dir("registry-challenge");
    let db = dir.join("m.redb");
    let db_s = db.to_str().unwrap();
    let lines = bounce(7_000);
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let base = format!(
        "[serve]\nreport_interval_secs = 0.5\n[checkpoint]\npath = \"{}\"\nevery_ticks = 1000\nkeep_last = 100\n",
        db.display()
    );

    // 1. A champion that cannot learn (its signal weight's prior holds it on the random walk), with
    //    registry challengers on and a low bar for promotion; it sees the first 100 ticks.
    let champion_cfg = format!(
        "{base}[engine]\nhorizons = [\"1step\", \"10step\"]\nmodel.version = \"rw\"\n\
         model.weight_prior = 1e12\n[challenger]\nenabled = true\nrollback = true\nwindow = 500\nmargin = 0.02\n"
    );
    let mut serve = Serve::start(&server.url(), &champion_cfg, &dir);
    wait_ready(&client, &serve).await;
    publish(&client, "USDMXN", &lines[..100]).await;
    wait_ticks(&client, &serve, "USDMXN", 100).await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let champion = versions(&db).last().unwrap().1;
    let show = ok(&["models", "show", "USDMXN", &champion.to_string(), "--db", db_s]);
    for line in [
        "actor         serve",
        "dataset       stream, 100 ticks, fnv1a64:",
        "code          cambio ",
    ] {
        assert!(show.contains(line), "{line}: {show}");
    }

    // 2. A model that learns the bounce, trained elsewhere on the first 3,000 ticks, imported; then the
    //    champion is made the live model again (the import would otherwise be restored as the live one).
    let mut learner = cambio::engine::Engine::new(
        cambio::tick::Pair::parse("USDMXN").unwrap(),
        &toml::from_str::<cambio::config::Config>("[engine]\nhorizons = [\"1step\", \"10step\"]\n")
            .unwrap()
            .engine,
    )
    .unwrap();
    let mut out = Vec::new();
    for l in &lines[..3_000] {
        learner.on_tick(&cambio::tick::parse_tick(l.as_bytes(), None).unwrap(), &mut out);
        out.clear();
    }
    let file = dir.join("learner.ckpt");
    let state = cambio::checkpoint::PairState {
        engine: learner,
        applied: None,
        contest: None,
    };
    std::fs::write(&file, cambio::checkpoint::format::encode(&state).unwrap()).unwrap();
    ok(&[
        "models",
        "import",
        file.to_str().unwrap(),
        "--db",
        db_s,
        "--actor",
        "ops",
    ]);
    let learner = versions(&db).last().unwrap().1;
    let learner_s = learner.to_string();
    ok(&[
        "models",
        "rollback",
        "USDMXN",
        &champion.to_string(),
        "--db",
        db_s,
        "--actor",
        "ops",
    ]);

    let mut serve = Serve::start(&server.url(), &champion_cfg, &dir);
    wait_ready(&client, &serve).await;
    let mut alerts = client.subscribe("fx.alert.USDMXN").await.unwrap();
    client.flush().await.unwrap();
    publish(&client, "USDMXN", &lines[3_000..3_100]).await;
    wait_ticks(&client, &serve, "USDMXN", 200).await;
    let status = request(&client, "fx.status.USDMXN", "").await.1;
    assert!(status["contest"]["challenger"].is_null(), "no challenger yet: {status}");

    // Refused for a version that does not exist, then accepted: the learner is the live challenger.
    let (is_err, reply) = models_req(&client, r#"{"op":"challenge","version":999,"actor":"alice"}"#).await;
    assert!(is_err && reply["code"] == 404, "{reply}");
    let (is_err, reply) = models_req(
        &client,
        &format!(r#"{{"op":"challenge","version":{learner},"actor":"alice"}}"#),
    )
    .await;
    assert!(!is_err, "{reply}\n{}", serve.log());
    assert_eq!(
        (reply["type"].as_str(), reply["version"].as_u64()),
        (Some("model_version"), Some(learner))
    );
    status_until(
        &client,
        "USDMXN",
        &serve,
        Duration::from_secs(10),
        "the challenger",
        |s| s["contest"]["challenger"]["origin"]["version"] == learner,
    )
    .await;

    // 3. The contest decides: the learner wins a window and is promoted.
    publish(&client, "USDMXN", &lines[3_100..]).await;
    let promotion = next_of(&mut alerts, &serve, "promotion").await;
    assert_eq!(promotion["promoted"]["version"], learner, "{promotion}");
    assert_eq!(promotion["demoted"], "live", "{promotion}");
    // The promotion is recorded as a version whose parent is the challenged version, created by serve.
    let deadline = Instant::now() + Duration::from_secs(30);
    let promoted = loop {
        let list = models_req(&client, r#"{"op":"list"}"#).await.1;
        if let Some(v) = list["versions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["reason"] == "promotion")
        {
            break v.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no promotion version: {list}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(promoted["lineage"]["parent"], learner, "{promoted}");
    assert_eq!(promoted["lineage"]["actor"], "serve", "{promoted}");
    let (_, shown) = models_req(
        &client,
        &format!(r#"{{"op":"show","version":{}}}"#, promoted["version"]),
    )
    .await;
    assert_eq!(shown["type"], "model_version");
    assert_eq!(shown["lineage"], promoted["lineage"], "{shown}");
    let audit = models_req(&client, r#"{"op":"audit"}"#).await.1;
    assert_eq!(audit["type"], "audit", "{audit}");
    let ops = audit_ops;
    let live = ops(&audit["entries"]);
    assert_eq!(
        live,
        [
            "import ops ok",
            "rollback ops ok",
            "challenge alice refused",
            "challenge alice ok",
            "promotion serve ok"
        ],
        "{audit}"
    );
    assert_eq!(serve.terminate(), 0, "{}", serve.log());

    // 4. The audit log survives the restart, and the offline challenge mark is taken by the next start.
    let offline: Value = serde_json::from_str(&ok(&["models", "audit", "--db", db_s, "--json"])).unwrap();
    assert_eq!(ops(&offline), live, "{offline}");
    ok(&[
        "models",
        "challenge",
        "USDMXN",
        &learner_s,
        "--db",
        db_s,
        "--actor",
        "carol",
    ]);
    let mut serve = Serve::start(&server.url(), &champion_cfg, &dir);
    wait_ready(&client, &serve).await;
    status_until(
        &client,
        "USDMXN",
        &serve,
        Duration::from_secs(10),
        "the challenger",
        |s| s["contest"]["challenger"]["origin"]["version"] == learner,
    )
    .await;
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let after: Value = serde_json::from_str(&ok(&["models", "audit", "--db", db_s, "--json"])).unwrap();
    let after = ops(&after);
    assert_eq!(
        after[live.len()..],
        ["challenge carol pending", "challenge serve ok"],
        "{after:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_eyes_over_nats_a_rollback_waits_for_another_actor_across_a_restart() {
    let dir = temp_dir("registry-4eyes-nats");
    let db = dir.join("models.redb");
    let cfg = format!("{}[registry]\nrequire_approval = true\n", config(&db));
    let server = LocalServer::start(false, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let mut serve = Serve::start(&server.url(), &cfg, &dir);
    wait_ready(&client, &serve).await;
    let usd = walk_of("USDMXN", 17.0, 1_000, 3);
    publish(&client, "USDMXN", &usd).await;
    wait_ticks(&client, &serve, "USDMXN", 1_000).await;
    let (is_err, first) = models_req(&client, r#"{"op":"checkpoint","actor":"alice"}"#).await;
    assert!(!is_err, "{first}");
    let (is_err, reply) = models_req(&client, r#"{"op":"rollback","version":1}"#).await;
    assert!(
        is_err && reply["code"] == 400 && reply["error"].as_str().unwrap().contains("actor"),
        "{reply}"
    );
    let (is_err, reply) = models_req(&client, r#"{"op":"rollback","version":1,"actor":"alice"}"#).await;
    assert!(!is_err, "{reply}");
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_u64()),
        (Some("approval_request"), Some(1)),
        "{reply}"
    );
    assert_eq!(reply["requested_by"], "alice");
    let (is_err, reply) = models_req(&client, r#"{"op":"approve","id":1,"actor":"alice"}"#).await;
    assert!(is_err && reply["code"] == 403, "{reply}");
    assert!(reply["error"].as_str().unwrap().contains("different actor"), "{reply}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());

    // The request survives a restart; bob approves it (named by the Cambio-Actor header).
    let mut serve = Serve::start(&server.url(), &cfg, &dir);
    wait_ready(&client, &serve).await;
    let pending = models_req(&client, r#"{"op":"approvals"}"#).await.1;
    assert_eq!(pending["type"], "approvals");
    assert_eq!(pending["pending"][0]["id"], 1, "{pending}");
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Cambio-Actor", "bob");
    let m = tokio::time::timeout(
        Duration::from_secs(10),
        client.request_with_headers("fx.models.USDMXN", headers, Bytes::from(r#"{"op":"approve","id":1}"#)),
    )
    .await
    .unwrap()
    .unwrap();
    let reply: Value = serde_json::from_slice(&m.payload).unwrap();
    assert_eq!(
        (reply["type"].as_str(), reply["reason"].as_str()),
        (Some("model_version"), Some("rollback")),
        "{reply}"
    );
    assert!(reply["note"].as_str().unwrap().contains("approved by bob"), "{reply}");
    assert_eq!(reply["lineage"]["parent"], 1, "{reply}");
    let status = request(&client, "fx.status.USDMXN", "").await.1;
    assert_eq!(status["model"]["version"], 1, "the live model is version 1: {status}");
    let audit = models_req(&client, r#"{"op":"audit"}"#).await.1;
    let ops = audit_ops(&audit["entries"]);
    assert_eq!(
        ops,
        [
            "checkpoint alice ok",
            "request alice pending",
            "approve alice refused",
            "rollback alice ok",
            "approve bob ok"
        ],
        "{audit}"
    );
    // A challenge is a request too; approved while challengers are off, it is refused with the reason
    // and stays pending.
    let newest = models_req(&client, r#"{"op":"list"}"#).await.1["versions"]
        .as_array()
        .and_then(|v| v.last().map(|m| m["version"].clone()))
        .unwrap();
    let (_, reply) = models_req(
        &client,
        &format!(r#"{{"op":"challenge","version":{newest},"actor":"alice"}}"#),
    )
    .await;
    assert_eq!(
        (reply["type"].as_str(), reply["id"].as_u64()),
        (Some("approval_request"), Some(2)),
        "{reply}"
    );
    let (is_err, reply) = models_req(&client, r#"{"op":"approve","id":2,"actor":"bob"}"#).await;
    assert!(is_err && reply["code"] == 409, "{reply}");
    assert!(
        reply["error"].as_str().unwrap().contains("[challenger] enabled = true"),
        "{reply}"
    );
    let pending = models_req(&client, r#"{"op":"approvals"}"#).await.1;
    assert_eq!(pending["pending"][0]["id"], 2, "{pending}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let _ = std::fs::remove_dir_all(&dir);
}
