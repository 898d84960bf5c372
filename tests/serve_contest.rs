//! The champion/challenger contest and the rollback guard end to end: `cambio serve` against a real
//! nats-server, ticks published as a feed would, verdicts observed only through NATS (alerts, status,
//! the model registry) and across a restart from the checkpoint file.
//!
//! Each stream has structure a model can learn (see `walk`), and each test first runs the same ticks
//! through the library in-process, exactly as a shard does, so the service's verdict can be compared
//! with the one the pure contest reaches (time comes from the ticks, so they must agree).

use std::time::{Duration, Instant};

use bytes::Bytes;
use cambio::challenger::{Contest, ModelOrigin};
use cambio::config::Config;
use cambio::engine::Engine;
use cambio::nats::LocalServer;
use cambio::replay::synth::structured_mids;
use cambio::tick::{Pair, parse_tick};
use futures_util::StreamExt;
use serde_json::Value;

mod common;
use common::*;

const PAIR: &str = "USDMXN";

fn pair() -> Pair {
    Pair::parse(PAIR).expect("pair")
}

/// Ticks one second apart from 2024-01-01 as JSON lines of the message contract, the mids of
/// `structured_mids` (the generator the unit tests of `cambio::challenger` use); bid and ask are the
/// mid ± 0.0005, printed exactly.
fn walk(seed: u64, n: u64, phi: f64, drifts: &[(u64, f64)]) -> Vec<String> {
    let t0 = cambio::time::parse_ts_us("2024-01-01T00:00:00Z").expect("ts");
    structured_mids(seed, n, phi, drifts)
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

/// Trends of ±0.5 sigmas per tick switching every 4,000 ticks from tick 2,000 (the unit tests' `trends`).
/// The default model's first adaptation comes after the second switch (tick 7,520, ADWIN on the
/// residuals), and with the guard's default window the rollback 500 forecasts later.
fn trends(n: u64) -> Vec<String> {
    let switches: Vec<(u64, f64)> = (0..n / 4_000 + 1)
        .map(|k| (2_000 + 4_000 * k, if k % 2 == 0 { 0.5 } else { -0.5 }))
        .collect();
    walk(3, n, 0.0, &switches)
}

/// What a shard does with `lines` under `config`, in-process: the champion, then the contest with its
/// outputs, and the guard's known-good copy at every `4 × rollback_window` accepted ticks. Returns each
/// verdict as published, with the index of the tick that produced it.
fn expected_verdicts(config: &str, lines: &[String]) -> Vec<(usize, Value)> {
    let cfg: Config = toml::from_str(config).expect("config");
    let mut champion = Engine::new(pair(), &cfg.engine).expect("engine");
    let challenger = cfg
        .challenger
        .engine
        .as_ref()
        .filter(|_| cfg.challenger.enabled)
        .map(|c| (Engine::new(pair(), c).expect("variant"), ModelOrigin::Variant));
    let mut contest = Contest::new(&cfg.challenger, &champion, challenger).expect("contest");
    let (mut out, mut verdicts) = (Vec::new(), Vec::new());
    for (i, line) in lines.iter().enumerate() {
        let tick = parse_tick(line.as_bytes(), Some(pair())).expect("a valid tick");
        out.clear();
        let accepted_before = champion.accepted();
        champion.on_tick(&tick, &mut out);
        if let Some(v) = contest.on_tick(&mut champion, &out, &tick) {
            verdicts.push((i, serde_json::to_value(&v).expect("json")));
        }
        if contest.fallback_due(accepted_before, champion.accepted()) {
            contest.set_fallback(&champion);
        }
    }
    verdicts
}

/// Publishes `lines` as a historical feed (header `Cambio-Replay`, so ticks are not stamped with their
/// arrival), flushing every 1,000 so the service's subscription never holds more than that backlog from us.
async fn publish(client: &async_nats::Client, lines: &[String]) {
    let subject = format!("fx.ticks.{PAIR}");
    for chunk in lines.chunks(1_000) {
        for l in chunk {
            client
                .publish_with_headers(subject.clone(), replay_header(), Bytes::from(l.clone()))
                .await
                .expect("publish");
        }
        tokio::time::timeout(Duration::from_secs(10), client.flush())
            .await
            .expect("flush in time")
            .expect("flush");
    }
}

/// The status shows the variant as the live model after one promotion, with the old champion in shadow.
fn assert_promoted(status: &Value, variant: &Value, champion: &Value) {
    assert!(same_model(&status["model"], variant), "{status}");
    let contest = &status["contest"];
    assert_eq!(
        (contest["champion"].as_str(), contest["promotions"].as_u64()),
        (Some("variant"), Some(1)),
        "{status}"
    );
    assert!(same_model(&contest["challenger"]["model"], champion), "{status}");
}

/// The same model definition (name and configuration hash), whatever registry version it was loaded from.
fn same_model(a: &Value, b: &Value) -> bool {
    a["name"] == b["name"] && a["config"] == b["config"] && a["config"].is_string()
}

/// Polls the model registry until a version with `reason` is listed (bounded); returns the listing.
async fn version_with(client: &async_nats::Client, serve: &Serve, reason: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let list = request(client, &format!("fx.models.{PAIR}"), r#"{"op":"list"}"#)
            .await
            .1;
        let versions = list["versions"].as_array().cloned().unwrap_or_default();
        if versions.iter().any(|v| v["reason"] == reason) {
            assert_eq!(list["pair"], PAIR);
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "no `{reason}` version in the registry; last: {list}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The first alert of type `kind` (drift alarms and adaptations share the subject), within `timeout`.
async fn alert_of(sub: &mut async_nats::Subscriber, serve: &Serve, kind: &str, timeout: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut seen = Vec::new();
    loop {
        match tokio::time::timeout_at(deadline, sub.next()).await {
            Ok(Some(m)) => {
                let v: Value = serde_json::from_slice(&m.payload).expect("json alert");
                if v["type"] == kind {
                    return v;
                }
                seen.push(v["type"].to_string());
            }
            _ => panic!("no `{kind}` alert within {timeout:?} (saw {seen:?})\n{}", serve.log()),
        }
    }
}

fn config(dir: &std::path::Path, rest: &str) -> String {
    format!(
        "[serve]\nreport_interval_secs = 0.5\n\n[checkpoint]\npath = {:?}\nkeep_last = 100\n\n{rest}",
        dir.join("m.redb")
    )
}

/// The champion cannot learn (its signal weight's prior holds it on the random walk); the variant is the
/// default model, which learns the bounce.
const CONTEST: &str = r#"
[engine]
horizons = ["1step", "10step"]
model.version = "rw"
model.weight_prior = 1e12

[challenger]
enabled = true
rollback = true
window = 1000
margin = 0.02

[challenger.engine]
horizons = ["1step", "10step"]
"#;

/// Starts a nats-server and `cambio serve` with `cfg`, subscribes to the pair's alerts, then publishes
/// `lines` as a feed.
async fn serve_and_feed(
    cfg: &str,
    dir: &std::path::Path,
    lines: &[String],
) -> (LocalServer, Serve, async_nats::Client, async_nats::Subscriber) {
    let server = LocalServer::start(false, None).expect("nats-server");
    let serve = Serve::start(&server.url(), cfg, dir);
    let client = async_nats::connect(server.url()).await.expect("connect");
    wait_ready(&client, &serve).await;
    let alerts = client.subscribe(format!("fx.alert.{PAIR}")).await.expect("subscribe");
    client.flush().await.expect("flush");
    publish(&client, lines).await;
    (server, serve, client, alerts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_better_challenger_is_promoted_recorded_and_survives_a_restart() {
    let started = Instant::now();
    let lines = walk(3, 4_000, -0.4, &[]);
    let dir = temp_dir("contest");
    let cfg = config(&dir, CONTEST);
    let expected = expected_verdicts(&cfg, &lines);
    assert!(
        expected.len() == 1 && expected[0].1["type"] == "promotion",
        "the stream must give exactly one promotion: {expected:?}"
    );
    let (at, verdict) = expected[0].clone();
    // Models are named by name, registry version (none here: both were built from configuration) and the
    // hash of their configuration.
    let parsed: Config = toml::from_str(&cfg).expect("config");
    let stamp = |c: &cambio::engine::EngineConfig| {
        serde_json::to_value(Engine::new(pair(), c).expect("engine").model_stamp()).expect("json")
    };
    let variant = stamp(parsed.challenger.engine.as_ref().expect("variant"));
    let champion = stamp(&parsed.engine);
    assert_ne!(variant["config"], champion["config"]);
    assert_eq!(verdict["promoted_model"], variant);

    let (server, mut serve, client, mut alerts) = serve_and_feed(&cfg, &dir, &lines).await;

    // The alert is the pure contest's verdict, field for field.
    let alert = alert_of(&mut alerts, &serve, "promotion", Duration::from_secs(30)).await;
    assert_eq!(alert, verdict, "live verdict differs from the in-process one");
    assert_eq!(
        (alert["promoted"].as_str(), alert["demoted"].as_str()),
        (Some("variant"), Some("live"))
    );
    assert_eq!(alert["demoted_model"], champion);
    let (old, new) = (alert["champion_rmse"].as_f64(), alert["challenger_rmse"].as_f64());
    assert!(new.expect("rmse") <= 0.98 * old.expect("rmse"), "{alert}");

    // Every tick processed: the live model is the variant, the old champion runs in shadow.
    let n = lines.len() as u64;
    let status = status_until(&client, PAIR, &serve, Duration::from_secs(30), "every tick", |s| {
        s["ticks"] == n
    })
    .await;
    assert_promoted(&status, &variant, &champion);
    let contest = &status["contest"];
    assert_eq!(contest["challenger"]["origin"], "live", "{status}");
    assert_eq!(contest["rollbacks"], 0, "{status}");

    // The promotion is a version of the registry, taken at or after the deciding tick.
    let list = version_with(&client, &serve, "promotion").await;
    let versions = list["versions"].as_array().expect("versions");
    let promoted = versions.iter().find(|v| v["reason"] == "promotion").expect("promotion");
    let ticks = promoted["ticks"].as_u64().expect("ticks");
    assert!((at as u64 + 1..=n).contains(&ticks), "{promoted}");
    assert!(promoted["version"].as_u64().is_some_and(|v| v >= 1), "{promoted}");
    assert_eq!(
        versions.iter().filter(|v| v["reason"] == "promotion").count(),
        1,
        "{list}"
    );
    assert!(serve.log().contains("challenger promoted"), "{}", serve.log());

    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    drop(alerts);

    // Restarted on the same file: the restored live model is still the variant, from the first status on.
    let mut serve = Serve::start(&server.url(), &cfg, &dir);
    wait_ready(&client, &serve).await;
    let status = request(&client, &format!("fx.status.{PAIR}"), "").await.1;
    // It says which registry version it was loaded from: the newest, written at shutdown.
    assert!(same_model(&status["model"], &variant), "{status}\n{}", serve.log());
    let newest = request(&client, &format!("fx.models.{PAIR}"), r#"{"op":"list"}"#)
        .await
        .1["versions"]
        .as_array()
        .and_then(|v| v.last().map(|m| m["version"].clone()));
    assert_eq!(Some(status["model"]["version"].clone()), newest, "{status}");
    assert_eq!(status["ticks"], n, "{status}");
    assert_promoted(&status, &variant, &champion);
    let log = serve.log();
    assert!(log.contains("restored checkpoint"), "{log}");
    let list = request(&client, &format!("fx.models.{PAIR}"), r#"{"op":"list"}"#)
        .await
        .1;
    let versions = list["versions"].as_array().expect("versions");
    // The newest version holds every tick: written at shutdown, or the promotion itself when no tick came
    // after it (an unchanged pair gets no new version).
    let newest = versions.last().expect("a version");
    assert_eq!(newest["ticks"], n, "{list}");
    assert!(
        newest["reason"] == "shutdown" || newest["reason"] == "promotion",
        "{list}"
    );
    assert!(versions.iter().any(|v| v["reason"] == "promotion"), "{list}");

    // And it is the variant that forecasts the next ticks.
    let mut preds = client.subscribe(format!("fx.pred.{PAIR}")).await.expect("subscribe");
    client.flush().await.expect("flush");
    let more = walk(3, n + 5, -0.4, &[]);
    publish(&client, &more[lines.len()..]).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    for _ in 0..5 {
        let m = tokio::time::timeout_at(deadline, preds.next())
            .await
            .expect("a forecast in time")
            .expect("forecast");
        let f: Value = serde_json::from_slice(&m.payload).expect("json forecast");
        // Every forecast names the model that made it, with the registry version it was restored from.
        assert!(same_model(&f["model"], &variant), "{f}");
        assert_eq!(f["model"]["version"], status["model"]["version"], "{f}");
    }
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    eprintln!("promotion end to end: {:.1} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}

/// One model, the guard on with a threshold it cannot meet after an adaptation (any ratio above half the
/// baseline counts as degraded), on a stream whose trend switches make the model adapt.
const GUARD: &str = r#"
[engine]
horizons = ["1step"]

[challenger]
rollback = true
rollback_threshold = 0.5
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guard_rolls_back_after_an_adaptation_and_records_it() {
    let started = Instant::now();
    let lines = trends(8_500);
    let dir = temp_dir("guard");
    let cfg = config(&dir, GUARD);
    let expected = expected_verdicts(&cfg, &lines);
    assert!(
        !expected.is_empty() && expected[0].1["type"] == "rollback",
        "the stream must give a rollback first: {expected:?}"
    );
    let (at, verdict) = expected[0].clone();

    let (_server, mut serve, client, mut alerts) = serve_and_feed(&cfg, &dir, &lines).await;

    let alert = alert_of(&mut alerts, &serve, "rollback", Duration::from_secs(30)).await;
    assert_eq!(alert, verdict, "live verdict differs from the in-process one");
    let (baseline, after) = (alert["baseline"].as_f64(), alert["after"].as_f64());
    assert!(after.expect("after") > 0.5 * baseline.expect("baseline"), "{alert}");
    assert!(alert["trigger"].as_str().is_some_and(|t| !t.is_empty()), "{alert}");
    let lost = alert["ticks_lost"].as_u64().expect("ticks_lost");
    assert!(lost > 0, "{alert}");

    let list = version_with(&client, &serve, "rollback").await;
    let versions = list["versions"].as_array().expect("versions");
    // The adaptation that was rolled back asked for its own version first; when no tick came between the
    // two events before that version was cut, both are in one state, and one version records it, with
    // the latest event as its reason.
    let first = |reason: &str| versions.iter().position(|v| v["reason"] == reason);
    let (adapted, rolled) = (first("drift_adaptation"), first("rollback"));
    assert!(rolled.is_some() && adapted.is_none_or(|a| Some(a) < rolled), "{list}");
    let rolled_back = &versions[rolled.expect("rollback")];
    let ticks = rolled_back["ticks"].as_u64().expect("ticks");
    assert!((at as u64 + 1..=lines.len() as u64).contains(&ticks), "{rolled_back}");
    assert!(serve.log().contains("model rolled back"), "{}", serve.log());

    let n = lines.len() as u64;
    let status = status_until(&client, PAIR, &serve, Duration::from_secs(30), "every tick", |s| {
        s["ticks"] == n
    })
    .await;
    let rollbacks = expected.iter().filter(|(_, v)| v["type"] == "rollback").count() as u64;
    assert_eq!(status["contest"]["rollbacks"], rollbacks, "{status}");
    assert_eq!(status["contest"]["enabled"], false, "{status}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    eprintln!("rollback end to end: {:.1} s", started.elapsed().as_secs_f64());
    let _ = std::fs::remove_dir_all(&dir);
}
