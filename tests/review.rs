//! `cambio review`: a real nats-server with JetStream (file store), a real `cambio serve` in JetStream mode
//! and the `cambio review` binary.
//!
//! Ticks with a spike that reverts, a duplicate, a malformed payload and a real move the validator refuses:
//! `review list --json` shows them with reasons and raw payloads or prices, `show` gives the accepted
//! prices around one, `label` stores the label with its actor (a relabel keeps the previous one), the piped
//! interactive mode labels in order, bad ids and labels are clear errors (exit 2), the labels survive a
//! restart of the NATS server and are read back by the typed API, and `cambio archive` started later
//! widens the stream review created without dropping its bounds.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use bytes::Bytes;
use cambio::nats::LocalServer;
use cambio::nats::review::ReviewOptions;
use cambio::review::Label;
use serde_json::Value;

mod common;
use common::*;

const SERVE: &str = "[serve]\nmode = \"jetstream\"\nreport_interval_secs = 60\n";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `cambio review ARGS --nats URL`, with `stdin` piped in and `USER` set to `user`.
fn review(url: &str, args: &[&str], stdin: &str, user: &str) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .arg("review")
        .args(args)
        .args(["--nats", url])
        .env("USER", user)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let r = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    r
}

fn json(r: &Run) -> Value {
    assert_eq!(r.code, 0, "stdout: {}\nstderr: {}", r.stdout, r.stderr);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("{e}: {}", r.stdout))
}

/// The walk's tick `i` with its prices multiplied by `k`.
fn scaled(ticks: &[String], i: usize, k: f64) -> String {
    let mut v: Value = serde_json::from_str(&ticks[i]).unwrap();
    for side in ["bid", "ask"] {
        let p = v[side].as_f64().unwrap() * k;
        v[side] = serde_json::json!((p * 1e5).round() / 1e5);
    }
    v.to_string()
}

fn mid(t: &str) -> f64 {
    let v: Value = serde_json::from_str(t).unwrap();
    0.5 * (v["bid"].as_f64().unwrap() + v["ask"].as_f64().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quarantined_ticks_are_listed_shown_labelled_and_labels_survive_a_restart() {
    let dir = temp_dir("review");
    let mut server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let url = server.url().to_string();

    // Before serve publishes anything: no stream captures the quarantine subjects, so review creates a
    // bounded one (the archive's output stream's name), and lists nothing.
    let empty = json(&review(
        &url,
        &["list", "--json", "--max-age", "7d", "--max-mib", "64"],
        "",
        "ops",
    ));
    assert_eq!(empty, serde_json::json!([]));
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut out = js.get_stream("FX_OUT").await.unwrap();
    let cfg = out.info().await.unwrap().config.clone();
    assert_eq!(cfg.subjects, vec!["fx.quarantine.>".to_string()]);
    assert_eq!(cfg.max_age, Duration::from_secs(7 * 86_400));
    assert_eq!(cfg.max_bytes, 64 << 20);

    let mut serve = Serve::start(&url, SERVE, &dir);
    wait_ready(&client, &serve).await;
    let ticks = walk(300, 11);
    let spike = scaled(&ticks, 150, 1.05);
    let genuine = scaled(&ticks, 250, 1.01);
    let mut msgs: Vec<String> = Vec::new();
    for (i, t) in ticks.iter().enumerate() {
        match i {
            100 => {
                msgs.push("not json at all".into());
                msgs.push(t.clone());
            }
            150 => msgs.push(spike.clone()),
            200 => {
                msgs.push(t.clone());
                msgs.push(t.clone()); // the same tick again: a duplicate sequence number
            }
            250 => msgs.push(genuine.clone()),
            _ => msgs.push(t.clone()),
        }
    }
    let mut acks = Vec::new();
    for m in &msgs {
        acks.push(
            js.publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(m.clone()))
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }

    // Listed with reasons, raw payloads and prices, oldest first.
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let l = json(&review(&url, &["list", "--json"], "", "ops"));
        if l.as_array().unwrap().len() >= 4 || Instant::now() > deadline {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let list = list.as_array().unwrap().clone();
    let reasons: Vec<&str> = list.iter().map(|r| r["record"]["reason"].as_str().unwrap()).collect();
    assert_eq!(
        reasons,
        vec!["malformed", "implausible_jump", "duplicate_seq", "implausible_jump"],
        "{list:?}\n{}",
        serve.log()
    );
    let (malformed, spiked, dup, real) = (&list[0], &list[1], &list[2], &list[3]);
    assert_eq!(malformed["record"]["raw"], "not json at all");
    assert_eq!(malformed["pair"], "USDMXN");
    assert!(malformed["price"].is_null());
    assert!(
        (spiked["price"].as_f64().unwrap() - mid(&spike)).abs() < 1e-9,
        "{spiked}"
    );
    assert!(spiked["record"]["bid"].is_number() && spiked["record"]["ask"].is_number());
    assert_eq!(spiked["record"]["seq"], 151);
    assert_eq!(dup["record"]["seq"], 201);
    assert!((real["price"].as_f64().unwrap() - mid(&genuine)).abs() < 1e-9);
    assert!(list.iter().all(|r| r["label"].is_null()));
    let id = |r: &Value| r["id"].as_u64().unwrap().to_string();
    // Filters.
    let jumps = json(&review(
        &url,
        &["list", "--json", "--reason", "implausible_jump"],
        "",
        "ops",
    ));
    assert_eq!(jumps.as_array().unwrap().len(), 2);
    let other = json(&review(&url, &["list", "--json", "--pair", "EURUSD"], "", "ops"));
    assert_eq!(other, serde_json::json!([]));
    let text = review(&url, &["list"], "", "ops");
    assert!(
        text.stdout.contains("implausible_jump") && text.stdout.contains("4 quarantined ticks"),
        "{}",
        text.stdout
    );

    // Show: the five accepted prices before and after the spike, from the input stream.
    let shown = json(&review(&url, &["show", &id(spiked), "--json"], "", "ops"));
    let before = shown["before"].as_array().unwrap();
    let after = shown["after"].as_array().unwrap();
    assert_eq!(before.len(), 5, "{shown}");
    assert_eq!(after.len(), 5, "{shown}");
    let want_before: Vec<f64> = (145..150).map(|i| mid(&ticks[i])).collect();
    let want_after: Vec<f64> = (151..156).map(|i| mid(&ticks[i])).collect();
    let got = |v: &[Value]| v.iter().map(|n| n["price"].as_f64().unwrap()).collect::<Vec<_>>();
    let close = |a: &[f64], b: &[f64]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9);
    assert!(close(&got(before), &want_before), "{shown}");
    assert!(close(&got(after), &want_after), "{shown}");
    let text = review(&url, &["show", &id(spiked)], "", "ops");
    assert!(
        text.stdout.contains("<- quarantined") && text.stdout.contains("implausible_jump"),
        "{}",
        text.stdout
    );
    // The duplicate's neighbours leave out the duplicate itself but keep the accepted original.
    let shown = json(&review(&url, &["show", &id(dup), "--json"], "", "ops"));
    assert_eq!(shown["before"].as_array().unwrap().len(), 5, "{shown}");

    // Label: with --actor, then relabelled; without --actor the OS user.
    let l1 = json(&review(
        &url,
        &["label", &id(spiked), "good", "--actor", "alice", "--json"],
        "",
        "ops",
    ));
    let l2 = json(&review(
        &url,
        &[
            "label",
            &id(spiked),
            "bad",
            "--actor",
            "alice",
            "--note",
            "fat finger",
            "--json",
        ],
        "",
        "ops",
    ));
    assert_eq!(l1["label"], "good");
    assert_eq!(l2["type"], "review_label");
    assert_eq!(l2["label"], "bad");
    assert_eq!(l2["actor"], "alice");
    assert_eq!(l2["note"], "fat finger");
    assert_eq!(l2["reason"], "implausible_jump");
    let l3 = json(&review(&url, &["label", &id(real), "good", "--json"], "", "bob"));
    assert_eq!(l3["actor"], "bob");
    assert!(l3["labelled_at"].as_str().unwrap().ends_with('Z'));
    // The relabel kept the previous label.
    let kv = js.get_key_value("cambio_review").await.unwrap();
    let key = format!("USDMXN.{}", id(spiked));
    let mut history = kv.history(&key).await.unwrap();
    let mut n = 0;
    while let Some(e) = futures_util::StreamExt::next(&mut history).await {
        e.unwrap();
        n += 1;
    }
    assert_eq!(n, 2, "both labels of {key} are kept");

    // Bad ids and labels: clear errors, exit 2.
    let r = review(&url, &["show", "999999"], "", "ops");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no quarantined tick has id 999999"), "{}", r.stderr);
    let r = review(&url, &["label", "999999", "bad"], "", "ops");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("no quarantined tick has id 999999"), "{}", r.stderr);
    let r = review(&url, &["show", "abc"], "", "ops");
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = review(&url, &["label", &id(dup), "maybe"], "", "ops");
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("good or bad"), "{}", r.stderr);

    // Interactive, piped: the unlabelled ones in order (malformed, then duplicate). An unknown answer asks
    // again; `b` labels the first, `s` skips the second.
    let r = review(&url, &[], "x\nb\ns\n", "carol");
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("labelled 1, skipped 1, 2 unlabelled at start"),
        "{}",
        r.stdout
    );
    assert_eq!(
        r.stdout.matches("[g]ood/[b]ad/[s]kip/[q]uit? ").count(),
        3,
        "{}",
        r.stdout
    );
    let left = json(&review(&url, &["list", "--json", "--unlabelled"], "", "ops"));
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["id"], dup["id"]);
    // `q` ends at once.
    let r = review(&url, &[], "q\n", "carol");
    assert!(
        r.stdout.contains("labelled 0, skipped 0, 1 unlabelled at start"),
        "{}",
        r.stdout
    );

    // The labels survive a restart of the server (file store) and are read back by the typed API.
    assert_eq!(serve.terminate(), 0);
    drop(client);
    server.restart().unwrap();
    let client = async_nats::connect(&server.url()).await.unwrap();
    let labelled = cambio::nats::review::labelled(&client, &ReviewOptions::default())
        .await
        .unwrap();
    let got: Vec<(String, Label, String)> = labelled
        .iter()
        .map(|l| (l.tick.record.reason.clone(), l.label.label, l.label.actor.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("malformed".to_string(), Label::Bad, "carol".to_string()),
            ("implausible_jump".to_string(), Label::Bad, "alice".to_string()),
            ("implausible_jump".to_string(), Label::Good, "bob".to_string()),
        ]
    );
    assert_eq!(labelled[0].tick.record.raw.as_deref(), Some("not json at all"));
    assert_eq!(labelled[1].label.note.as_deref(), Some("fat finger"));

    // `cambio archive` started later adds its subjects to the stream review created, keeping its bounds.
    let mut archive = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["archive", "--nats", &server.url(), "--dir"])
        .arg(dir.join("lake"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let js = jetstream::new(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    let cfg = loop {
        let cfg = js
            .get_stream("FX_OUT")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .config
            .clone();
        if cfg.subjects.len() > 1 || Instant::now() > deadline {
            break cfg;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = archive.kill();
    let _ = archive.wait();
    assert!(cfg.subjects.contains(&"fx.pred.>".to_string()), "{:?}", cfg.subjects);
    assert_eq!(
        cfg.max_age,
        Duration::from_secs(7 * 86_400),
        "the archive kept review's bounds"
    );
    assert_eq!(cfg.max_bytes, 64 << 20);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The operator's path from review to retraining: jumps refused by the validator are labelled with
/// `cambio review label` (two real moves `good`, two fat fingers `bad`, a crossed quote `bad`), exported
/// with `cambio review list --json`, and `cambio retrain --labels` reports the validator's precision with
/// the exact counts and writes a version whose jump band accepts the good jumps and still refuses the bad
/// ones. Without labels the validator's configuration is unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labels_exported_from_review_tune_the_jump_band_in_retrain() {
    let dir = temp_dir("review-retrain");
    let server = LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let url = server.url().to_string();
    let client = async_nats::connect(&url).await.unwrap();
    let js = jetstream::new(client.clone());
    let _ = json(&review(&url, &["list", "--json"], "", "ops"));
    let mut serve = Serve::start(&url, SERVE, &dir);
    wait_ready(&client, &serve).await;

    // A walk (moves of at most 0.005%) with 0.5% moves that revert (real, labelled good), 3% fat fingers
    // (labelled bad) and a crossed quote (labelled bad).
    let ticks = walk(600, 5);
    let good_at = [150usize, 350];
    let bad_at = [250usize, 450];
    let crossed_at = 520usize;
    let msgs: Vec<String> = ticks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            if good_at.contains(&i) {
                scaled(&ticks, i, 1.005)
            } else if bad_at.contains(&i) {
                scaled(&ticks, i, 1.03)
            } else if i == crossed_at {
                let mut v: Value = serde_json::from_str(t).unwrap();
                let (b, a) = (v["bid"].clone(), v["ask"].clone());
                v["bid"] = a;
                v["ask"] = b;
                v.to_string()
            } else {
                t.clone()
            }
        })
        .collect();
    let mut acks = Vec::new();
    for m in &msgs {
        acks.push(
            js.publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(m.clone()))
                .await
                .unwrap(),
        );
    }
    for a in acks {
        a.await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let list = loop {
        let l = json(&review(&url, &["list", "--json", "--pair", "USDMXN"], "", "ops"));
        if l.as_array().unwrap().len() >= 5 || Instant::now() > deadline {
            break l.as_array().unwrap().clone();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let seqs: Vec<(u64, &str)> = list
        .iter()
        .map(|r| {
            (
                r["record"]["seq"].as_u64().unwrap(),
                r["record"]["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seqs,
        [
            (151, "implausible_jump"),
            (251, "implausible_jump"),
            (351, "implausible_jump"),
            (451, "implausible_jump"),
            (521, "crossed_quote")
        ],
        "{list:?}\n{}",
        serve.log()
    );
    for r in &list {
        let seq = r["record"]["seq"].as_u64().unwrap() as usize - 1;
        let label = if good_at.contains(&seq) { "good" } else { "bad" };
        let id = r["id"].as_u64().unwrap().to_string();
        let _ = json(&review(
            &url,
            &["label", &id, label, "--actor", "alice", "--json"],
            "",
            "ops",
        ));
    }
    let export = review(&url, &["list", "--json", "--pair", "USDMXN"], "", "ops");
    let labels = dir.join("labels.json");
    std::fs::write(&labels, &export.stdout).unwrap();
    assert_eq!(serve.terminate(), 0, "{}", serve.log());

    // The same ticks as a file, retrained with and without the labels.
    let file = dir.join("ticks.jsonl");
    std::fs::write(&file, msgs.join("\n") + "\n").unwrap();
    let retrain = |db: &str, extra: &[&str]| -> Value {
        let out = Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args([
                "retrain",
                "--from",
                file.to_str().unwrap(),
                "--pair",
                "USDMXN",
                "--json",
            ])
            .args(["--db", dir.join(db).to_str().unwrap()])
            .args(["--min-window", "100", "--null-ticks", "20000", "--max-evals", "4"])
            .args(extra)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&stdout).unwrap()
    };
    let jump_k = |db: &str| -> f64 {
        let out = Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args([
                "models",
                "show",
                "USDMXN",
                "--json",
                "--db",
                dir.join(db).to_str().unwrap(),
            ])
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        v["lineage"]["config"]["quality"]["jump_k"].as_f64().unwrap_or(f64::NAN)
    };
    let r = retrain("labelled.redb", &["--labels", labels.to_str().unwrap()]);
    let v = &r["validator"];
    assert_eq!(
        (v["labelled"].as_u64(), v["bad"].as_u64(), v["good"].as_u64()),
        (Some(5), Some(3), Some(2)),
        "{v:#}"
    );
    assert_eq!(v["precision"].as_f64(), Some(0.6), "{v:#}");
    assert!(v["recall"].is_null(), "{v:#}");
    assert_eq!(
        v["by_reason"],
        serde_json::json!([
            {"reason": "crossed_quote", "bad": 1, "good": 0, "precision": 1.0},
            {"reason": "implausible_jump", "bad": 2, "good": 2, "precision": 0.5}
        ]),
        "{v:#}"
    );
    let j = &v["jump"];
    assert_eq!(j["setting"], "quality.jump_k");
    assert_eq!(j["before"].as_f64(), Some(10.0), "{j:#}");
    assert_eq!(
        (
            j["found_good"].as_u64(),
            j["found_bad"].as_u64(),
            j["not_found"].as_u64()
        ),
        (Some(2), Some(2), Some(0)),
        "{j:#}"
    );
    assert_eq!(
        (j["good_accepted"].as_u64(), j["bad_refused"].as_u64()),
        (Some(2), Some(2)),
        "{j:#}"
    );
    // A 0.5% move is 19.95 sigmas of the band's floor (`jump_min_sigma`): 20 is the smallest band tried
    // that accepts it; a 3% one stays far outside.
    let tuned = j["value"].as_f64().unwrap();
    assert_eq!(tuned, 20.0, "{j:#}");
    assert_eq!(
        jump_k("labelled.redb"),
        tuned,
        "the version's configuration carries the tuned band"
    );
    // Without labels: no validator report, the band as configured.
    let r = retrain("plain.redb", &[]);
    assert!(r["validator"].is_null(), "{r:#}");
    assert_eq!(jump_k("plain.redb"), 10.0);
    let _ = std::fs::remove_dir_all(&dir);
}
