//! `cambio serve` at its edges: a shutdown after its NATS server has gone (bounded, the shutdown checkpoint
//! still written, a non-zero exit that counts what was not delivered), a second signal during that drain,
//! and the death of the `nats-server` child that serve started itself.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cambio::checkpoint::{CheckpointStore, Reason, Retention};
use cambio::nats::LocalServer;

mod common;
use common::*;

async fn publish(client: &async_nats::Client, lines: &[String]) {
    for l in lines {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(l.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

/// Sends `signal` (`TERM`, `INT`) to the process.
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status();
}

/// Waits at most `bound` for the child to exit; its exit code and how long it took.
fn wait_exit(serve: &mut Serve, bound: Duration) -> (i32, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = serve.child.try_wait().unwrap() {
            return (status.code().unwrap_or(-1), start.elapsed());
        }
        assert!(
            start.elapsed() < bound,
            "serve still running {bound:?} after the signal:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Serve with checkpoints fed `n` ticks, then its NATS server killed.
async fn serve_then_lose_nats(
    name: &str,
    n: usize,
    jetstream: bool,
) -> (Serve, std::path::PathBuf, std::path::PathBuf) {
    let dir = temp_dir(name);
    let mut server = LocalServer::start(jetstream, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let db = dir.join("models.redb");
    let mode = if jetstream { "jetstream" } else { "core" };
    // No periodic checkpoint during the test: the only version is the shutdown one.
    let config = format!(
        "[serve]\nmode = \"{mode}\"\nreport_interval_secs = 0.2\n[checkpoint]\npath = \"{}\"\nevery_ticks = 1000000\nevery_secs = 3600\n",
        db.display()
    );
    let serve = Serve::start(&server.url(), &config, &dir);
    wait_ready(&client, &serve).await;
    publish(&client, &walk(n, 11)).await;
    status_until(&client, "USDMXN", &serve, Duration::from_secs(60), "every tick", |v| {
        v["ticks"].as_u64() == Some(n as u64)
    })
    .await;
    drop(client);
    // The server has confirmed reading the forecasts by now (the service asks every 250 ms).
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    server.stop();
    // Let the service see the disconnect (and publish into a dead connection once, with its reports).
    tokio::time::sleep(Duration::from_millis(500)).await;
    (serve, db, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_nats_is_gone_is_bounded_and_still_checkpoints() {
    sigterm_after_nats_is_gone(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_after_nats_is_gone_is_bounded_and_still_checkpoints_in_jetstream_mode() {
    sigterm_after_nats_is_gone(true).await;
}

async fn sigterm_after_nats_is_gone(jetstream: bool) {
    let (mut serve, db, dir) = serve_then_lose_nats("shutdown-gone", 300, jetstream).await;
    signal(serve.child.id(), "TERM");
    // drain_timeout defaults to 10 s; the checkpoint is on the local disk.
    let (code, took) = wait_exit(&mut serve, Duration::from_secs(25));
    let log = serve.log();
    assert_ne!(code, 0, "an incomplete drain exits non-zero:\n{log}");
    assert!(took < Duration::from_secs(20), "took {took:?}:\n{log}");
    let line = log
        .lines()
        .find(|l| l.contains("not delivered"))
        .unwrap_or_else(|| panic!("no line counting what was not delivered:\n{log}"));
    assert!(
        line.contains("outputs_not_delivered=") && line.contains("acks_not_delivered="),
        "{line}"
    );
    eprintln!("exit {code} after {took:?}: {line}");
    // Only what was published after the server died (closing reports, if any), not the 300 forecasts before.
    let outputs: u64 = line
        .split("outputs_not_delivered=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!(outputs < 300, "{line}");
    drop(serve);
    let store = CheckpointStore::open(&db, Retention::default()).unwrap();
    let versions = store.list(cambio::tick::Pair::parse("USDMXN")).unwrap();
    let last = versions.last().unwrap_or_else(|| panic!("no version written:\n{log}"));
    assert_eq!((last.reason, last.ticks), (Reason::Shutdown, 300), "{versions:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once_during_the_drain() {
    let (mut serve, _db, dir) = serve_then_lose_nats("shutdown-twice", 50, false).await;
    signal(serve.child.id(), "TERM");
    // The drain is waiting for the server (up to 10 s): a second signal ends it now.
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(serve.child.try_wait().unwrap().is_none(), "{}", serve.log());
    signal(serve.child.id(), "INT");
    let (code, took) = wait_exit(&mut serve, Duration::from_secs(5));
    let log = serve.log();
    assert_ne!(code, 0, "{log}");
    assert!(took < Duration::from_secs(2), "took {took:?}:\n{log}");
    eprintln!("second signal: exit {code} after {took:?}");
    assert!(log.contains("second signal"), "{log}");
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The pids of the children of `pid` (over all its threads).
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
        }
    }
    out
}

/// The state letter of a process (`Z` for a zombie), or `None` when it is gone.
fn proc_state(pid: u32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

/// `cambio serve` with no server configured (it starts its own), and the URL it logs.
async fn serve_with_local_server(name: &str) -> (Serve, String, std::path::PathBuf) {
    let dir = temp_dir(name);
    let log = dir.join("serve.log");
    let child = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["serve"])
        .env("RUST_LOG", "info")
        .env_remove("CAMBIO_NATS_URL")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let serve = Serve { child, log };
    let deadline = Instant::now() + Duration::from_secs(30);
    let url = loop {
        let text = serve.log();
        if let Some(i) = text.find("url=nats://127.0.0.1:") {
            let rest = &text[i + 4..];
            break rest[..rest.find(char::is_whitespace).unwrap_or(rest.len())].to_string();
        }
        assert!(Instant::now() < deadline, "no url logged:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let client = async_nats::connect(&url).await.unwrap();
    wait_ready(&client, &serve).await;
    (serve, url, dir)
}

/// Kills the nats-server child of `serve` and waits until a new one runs and the old one is reaped (no
/// zombie left behind); `None` when serve exited instead.
fn kill_child_and_wait_for_the_next(serve: &mut Serve) -> Option<u32> {
    let pid = serve.child.id();
    let first = children(pid);
    assert_eq!(first.len(), 1, "one nats-server child: {first:?}");
    let old = first[0];
    let restarted = |serve: &Serve| serve.log().matches("child was restarted").count();
    let before = restarted(serve);
    signal(old, "KILL");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // Once serve says it restarted the child: a start it retries (the port not yet free) may show a
        // short-lived child first.
        let now = children(pid);
        if restarted(serve) > before && now.len() == 1 && now[0] != old && proc_state(old).is_none() {
            return Some(now[0]);
        }
        if serve.child.try_wait().unwrap().is_some() {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "child not restarted or not reaped: children {now:?}, old {old} state {:?}\n{}",
            proc_state(old),
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_local_nats_server_child_is_restarted_on_its_port_when_it_dies() {
    let (mut serve, url, dir) = serve_with_local_server("local-child").await;
    assert!(
        kill_child_and_wait_for_the_next(&mut serve).is_some(),
        "serve exited:\n{}",
        serve.log()
    );
    // Clients connect again on the same port (once the new child listens) and get forecasts.
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = loop {
        match async_nats::connect(&url).await {
            Ok(c) => break c,
            Err(e) => assert!(Instant::now() < deadline, "cannot connect again: {e}\n{}", serve.log()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    wait_ready(&client, &serve).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    loop {
        // Ticks published before the service has re-subscribed are not seen (core NATS): publish until they are.
        publish(&client, &walk(sent + 20, 5)[sent..]).await;
        sent += 20;
        let m = tokio::time::timeout(
            Duration::from_millis(500),
            client.request("fx.query.USDMXN", Bytes::new()),
        )
        .await;
        if let Ok(Ok(m)) = m
            && m.headers.as_ref().is_none_or(|h| h.get("Nats-Service-Error").is_none())
        {
            let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["pair"], "USDMXN", "{v}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no forecast after the restart:\n{}",
            serve.log()
        );
    }
    assert!(serve.log().contains("nats-server child exited"), "{}", serve.log());
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_nats_server_that_keeps_dying_ends_serve_with_an_error() {
    let (mut serve, _url, dir) = serve_with_local_server("local-child-dies").await;
    let mut restarts = 0;
    while kill_child_and_wait_for_the_next(&mut serve).is_some() {
        restarts += 1;
        assert!(restarts <= 5, "restarted more than 5 times:\n{}", serve.log());
    }
    assert_eq!(restarts, 5, "{}", serve.log());
    let (code, _) = wait_exit(&mut serve, Duration::from_secs(30));
    let log = serve.log();
    assert_eq!(code, 2, "{log}");
    assert!(log.contains("error: local nats-server: "), "{log}");
    assert!(children(serve.child.id()).is_empty());
    drop(serve);
    let _ = std::fs::remove_dir_all(&dir);
}
