//! Cluster mode on a real 3-node nats-server cluster: three `cambio serve` instances share 20 pairs in 8
//! partitions while ticks stream in; one instance is killed with SIGKILL (its partitions are taken over
//! within 5 s), one nats-server node is killed and started again, another instance stalls past its lease
//! (SIGSTOP) and resumes, the killed instance comes back, and all instances are restarted one by one with
//! SIGTERM. Policy rates (factors) are published early; once every partition has changed owner, one
//! more tick of each pair and two pairs never seen before follow. At the end the de-duplicating forecast
//! stream holds exactly one forecast per tick, every forecast served after a takeover names a registry
//! version its owner can show, and every pair's shared checkpoint holds the same state, byte for byte, as
//! a single uninterrupted instance that read the same ticks and factors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use cambio::checkpoint::{CheckpointStore, PairState, Retention, format};
use cambio::nats::serve::cluster::{CHECKPOINTS_BUCKET, LEASES_BUCKET, partition_of};
use futures_util::StreamExt;

mod common;
use common::cluster::NatsCluster;
use common::*;

const PAIRS: [&str; 20] = [
    "USDMXN", "EURUSD", "GBPUSD", "USDJPY", "USDCAD", "AUDUSD", "NZDUSD", "USDCHF", "EURMXN", "GBPMXN", "USDBRL",
    "USDCLP", "USDCOP", "USDPEN", "EURGBP", "EURJPY", "USDSEK", "USDNOK", "USDZAR", "USDTRY",
];
const TICKS_PER_PAIR: usize = 1_200;
const PARTITIONS: u32 = 8;
/// Pairs whose first tick comes after every partition has changed owner.
const LATE_PAIRS: [&str; 2] = ["USDHKD", "USDSGD"];
const LATE_TICKS: usize = 150;
/// The engine joins these factors (the carry feature): a pair's state depends on the factors it was given.
const FACTORS: &str = "[engine.model]\ndomestic_rate = \"TIIE28\"\nforeign_rate = \"FED_FUNDS\"\n";

fn cluster_config(id: &str, db: &Path) -> String {
    format!(
        "[serve]\nmode = \"jetstream\"\nreport_interval_secs = 1\n\
         [checkpoint]\npath = \"{}\"\nevery_ticks = 1000000\nevery_secs = 1\nkeep_last = 3\n\
         [cluster]\nenabled = true\npartitions = {PARTITIONS}\nlease_ttl = \"3s\"\ninstance = \"{id}\"\n{FACTORS}",
        db.display()
    )
}

fn reference_config(db: &Path) -> String {
    format!(
        "[serve]\nmode = \"jetstream\"\nreport_interval_secs = 1\n\
         [serve.jetstream]\ndurable = \"reference\"\n\
         [checkpoint]\npath = \"{}\"\nevery_ticks = 1000000\nevery_secs = 1\nkeep_last = 3\n{FACTORS}",
        db.display()
    )
}

/// An instance's own folder (config file, registry, log).
fn instance_dir(dir: &Path, id: &str) -> PathBuf {
    let d = dir.join(id);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn start_instance(cluster: &NatsCluster, node: usize, dir: &Path, id: &str) -> Serve {
    let d = instance_dir(dir, id);
    Serve::start(&cluster.url(node), &cluster_config(id, &d.join("registry.redb")), &d)
}

/// [`start_instance`] with forecasts published with the forecast stream's acknowledgement, which is what
/// keeps every forecast in it while a node dies and restarts.
fn start_confirmed(cluster: &NatsCluster, node: usize, dir: &Path, id: &str) -> Serve {
    let d = instance_dir(dir, id);
    let cfg = cluster_config(id, &d.join("registry.redb")) + "[serve.jetstream]\nconfirm_forecasts = true\n";
    Serve::start(&cluster.url(node), &cfg, &d)
}

/// A subject and its body.
type Msg = (String, String);

/// The messages in publication order, in two phases. The first: `TICKS_PER_PAIR` ticks of each pair,
/// interleaved, with the policy rates published at 10% and again (changed) at 30% of it. The second,
/// published once every partition has changed owner: one more tick of each pair, and `LATE_TICKS` of
/// each late pair, which its owner must start with the factors the partition had.
fn phases() -> (Vec<Msg>, Vec<Msg>) {
    let mut first = ticks_of(TICKS_PER_PAIR + 1);
    let mut second = first.split_off(PAIRS.len() * TICKS_PER_PAIR);
    let factor = |name: &str, ts: &str, value: f64| {
        (
            format!("fx.factors.{name}"),
            format!(r#"{{"name":"{name}","ts":"{ts}","value":{value},"source":"test"}}"#),
        )
    };
    let n = first.len();
    first.insert(n * 3 / 10, factor("TIIE28", "2024-03-04", 11.0));
    first.insert(n * 3 / 10, factor("FED_FUNDS", "2024-03-04", 5.25));
    first.insert(n / 10, factor("TIIE28", "2024-03-03", 11.25));
    first.insert(n / 10, factor("FED_FUNDS", "2024-03-03", 5.5));
    let late: Vec<Vec<String>> = LATE_PAIRS
        .iter()
        .enumerate()
        .map(|(i, p)| walk_of(p, 7.8 + i as f64, LATE_TICKS, 900 + i as u64))
        .collect();
    for k in 0..LATE_TICKS {
        for (p, w) in LATE_PAIRS.iter().zip(&late) {
            second.push((format!("fx.ticks.{p}"), w[k].clone()));
        }
    }
    (first, second)
}

/// Ticks (so forecasts) of `pair` over both phases.
fn ticks_of_pair(pair: &str) -> u64 {
    if LATE_PAIRS.contains(&pair) {
        LATE_TICKS as u64
    } else {
        TICKS_PER_PAIR as u64 + 1
    }
}

/// `n` ticks of each pair, interleaved.
fn ticks_of(n: usize) -> Vec<(String, String)> {
    let walks: Vec<Vec<String>> = PAIRS
        .iter()
        .enumerate()
        .map(|(i, p)| walk_of(p, 1.0 + i as f64, n, 100 + i as u64))
        .collect();
    let mut out = Vec::with_capacity(PAIRS.len() * n);
    let mut walks: Vec<_> = walks.into_iter().map(Vec::into_iter).collect();
    for _ in 0..n {
        for (p, w) in PAIRS.iter().zip(walks.iter_mut()) {
            if let Some(t) = w.next() {
                out.push((format!("fx.ticks.{p}"), t));
            }
        }
    }
    out
}

/// Publishes `msgs` at about `per_sec`, each with a `Nats-Msg-Id` so a retry after a lost
/// acknowledgement (a node killed) is stored once. Counts what was stored in `done`.
async fn publish_paced(
    js: jetstream::Context,
    phase: &'static str,
    msgs: Vec<(String, String)>,
    per_sec: usize,
    done: Arc<AtomicUsize>,
) {
    let batch = (per_sec / 10).max(1);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for (n, chunk) in msgs.chunks(batch).enumerate() {
        tick.tick().await;
        for (k, (subject, body)) in chunk.iter().enumerate() {
            let id = format!("{phase}-{}", n * batch + k);
            let mut tries = 0;
            loop {
                let mut h = replay_header();
                h.insert("Nats-Msg-Id", id.as_str());
                let sent = js
                    .publish_with_headers(subject.clone(), h, Bytes::from(body.clone()))
                    .await;
                let acked = match sent {
                    Ok(ack) => tokio::time::timeout(Duration::from_secs(5), ack)
                        .await
                        .is_ok_and(|a| a.is_ok()),
                    Err(_) => false,
                };
                if acked {
                    break;
                }
                tries += 1;
                assert!(tries < 60, "tick {id} not stored after 60 tries");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Creates a stream, retrying for up to 30 s (a cluster that just elected its meta leader may time out the
/// first requests while it places the replicas).
async fn create_stream(js: &jetstream::Context, cfg: stream::Config) -> stream::Stream {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match js.get_or_create_stream(cfg.clone()).await {
            Ok(s) => return s,
            Err(e) => assert!(Instant::now() < deadline, "stream {}: {e}", cfg.name),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A subscription to every forecast, on a connection of its own to node 1.
async fn clients_sub(nats: &NatsCluster) -> async_nats::Subscriber {
    let c = async_nats::ConnectOptions::new()
        .subscription_capacity(1 << 20)
        .connect(nats.url(1))
        .await
        .unwrap();
    let sub = c.subscribe("fx.pred.>").await.unwrap();
    c.flush().await.unwrap();
    sub
}

/// The lease owners: partition → instance id (direct gets of the known keys: no consumer is created).
async fn owners(js: &jetstream::Context) -> BTreeMap<u32, String> {
    let mut out = BTreeMap::new();
    let Ok(kv) = js.get_key_value(LEASES_BUCKET).await else {
        return out;
    };
    for p in 0..PARTITIONS {
        if let Ok(Some(v)) = kv.get(format!("partition.{p}")).await {
            out.insert(p, String::from_utf8_lossy(&v).into_owned());
        }
    }
    out
}

/// Waits until every partition is owned and each of `ids` holds at least `min` of them.
async fn wait_balanced(js: &jetstream::Context, ids: &[&str], min: usize, timeout: Duration) -> BTreeMap<u32, String> {
    let deadline = Instant::now() + timeout;
    loop {
        let o = owners(js).await;
        let counts: Vec<usize> = ids.iter().map(|id| o.values().filter(|v| v == id).count()).collect();
        if o.len() == PARTITIONS as usize && counts.iter().all(|c| *c >= min) {
            return o;
        }
        assert!(Instant::now() < deadline, "partitions not balanced over {ids:?}: {o:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The pair's state with what differs between a cluster and a single instance left out: the stream
/// position (another stream's sequences) is not part of the engine's state.
fn comparable(state: &PairState) -> Vec<u8> {
    format::encode(&PairState {
        engine: state.engine.clone(),
        applied: None,
        contest: state.contest.clone(),
    })
    .unwrap()
}

/// A pair's checkpoint as the shared store holds it.
async fn shared_state(objects: &async_nats::jetstream::object_store::ObjectStore, pair: &str) -> PairState {
    let mut o = objects.get(pair).await.unwrap();
    let mut bytes = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut o, &mut bytes).await.unwrap();
    format::decode(&bytes).unwrap()
}

/// Waits until `serve` reports `ticks` ticks for every one of `pairs`.
async fn all_at(client: &async_nats::Client, serve: &Serve, pairs: &[&str], ticks: impl Fn(&str) -> u64) {
    for p in pairs {
        let n = ticks(p);
        status_until(client, p, serve, Duration::from_secs(120), &format!("{n} ticks"), |v| {
            v["ticks"].as_u64() == Some(n)
        })
        .await;
    }
}

async fn forecasts_by_pair(pred: &mut stream::Stream) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let Ok(mut info) = pred.info_with_subjects("fx.pred.>").await else {
        return out;
    };
    while let Some(Ok((subject, n))) = info.next().await {
        out.insert(subject.trim_start_matches("fx.pred.").to_string(), n as u64);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_take_over_and_hand_over_on_a_three_node_cluster() {
    let dir = temp_dir("cluster");
    let mut nats = NatsCluster::start(3, &dir).await;
    let client = async_nats::connect(nats.url(0)).await.unwrap();
    let js = jetstream::new(client.clone());
    create_stream(
        &js,
        stream::Config {
            name: "FX".into(),
            subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
            storage: stream::StorageType::File,
            num_replicas: 3,
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        },
    )
    .await;
    let mut pred = create_stream(
        &js,
        stream::Config {
            name: "PRED".into(),
            subjects: vec!["fx.pred.>".into()],
            storage: stream::StorageType::File,
            num_replicas: 3,
            duplicate_window: Duration::from_secs(900),
            ..Default::default()
        },
    )
    .await;

    let ids = ["c0", "c1", "c2"];
    let mut serves: Vec<Serve> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| start_confirmed(&nats, i, &dir, id))
        .collect();
    let owned = wait_balanced(&js, &ids, 2, Duration::from_secs(60)).await;
    eprintln!("leases at start: {owned:?}");

    // Discovery lists every instance.
    let reply = client.new_inbox();
    let mut inbox = client.subscribe(reply.clone()).await.unwrap();
    client
        .publish_with_reply("$SRV.PING.cambio", reply, Bytes::new())
        .await
        .unwrap();
    let pongs = collect(&mut inbox, 3, Duration::from_secs(3)).await;
    let instances: BTreeSet<String> = pongs
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["id"].to_string())
        .collect();
    assert_eq!(instances.len(), 3, "$SRV.PING.cambio answered by {instances:?}");

    // Every forecast id seen on a plain subscription, per pair: when the stream lacks forecasts, this
    // tells whether cambio did not publish them or the stream did not store them.
    let seen: Arc<std::sync::Mutex<BTreeMap<String, BTreeSet<String>>>> = Arc::default();
    let watcher = {
        let seen = seen.clone();
        let mut sub = clients_sub(&nats).await;
        tokio::spawn(async move {
            while let Some(m) = sub.next().await {
                let id = m
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Msg-Id"))
                    .map(|v| v.as_str().to_string())
                    .unwrap_or_default();
                let pair = m.subject.trim_start_matches("fx.pred.").to_string();
                seen.lock().unwrap().entry(pair).or_default().insert(id);
            }
        })
    };
    let (msgs, later) = phases();
    let total = msgs.len();
    let published = Arc::new(AtomicUsize::new(0));
    let publisher = tokio::spawn(publish_paced(js.clone(), "first", msgs, 600, published.clone()));
    let wait_published = |n: usize| {
        let published = published.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(120);
            while published.load(Ordering::Relaxed) < n {
                assert!(Instant::now() < deadline, "publisher stuck");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };

    // Queries reach the owner from a client of any node: every pair answers, through every node.
    wait_published(total / 8).await;
    let clients = [
        client.clone(),
        async_nats::connect(nats.url(1)).await.unwrap(),
        async_nats::connect(nats.url(2)).await.unwrap(),
    ];
    for (i, p) in PAIRS.iter().enumerate() {
        let c = &clients[i % 3];
        let (err, v) = request(c, &format!("fx.status.{p}"), "").await;
        assert!(
            !err && v["ticks"].as_u64().unwrap_or(0) > 0,
            "{p} through node {}: {v}",
            i % 3
        );
    }

    // SIGKILL c0: its pairs' forecasts come back from another instance within 5 s.
    wait_published(total / 5).await;
    let held: BTreeSet<u32> = owners(&js)
        .await
        .into_iter()
        .filter(|(_, o)| o == "c0")
        .map(|(p, _)| p)
        .collect();
    let victims: Vec<&str> = PAIRS
        .iter()
        .copied()
        .filter(|p| held.contains(&partition_of(p, PARTITIONS)))
        .collect();
    assert!(!victims.is_empty(), "c0 holds {held:?}");
    let mut subs = Vec::new();
    for p in &victims {
        subs.push(client.subscribe(format!("fx.pred.{p}")).await.unwrap());
    }
    let mut merged = futures_util::stream::select_all(subs);
    serves[0].child.kill().unwrap();
    let killed = Instant::now();
    serves[0].child.wait().unwrap();
    // Forecasts already in flight when the process died are not a takeover.
    let takeover = loop {
        match tokio::time::timeout(Duration::from_secs(15), merged.next()).await {
            Ok(Some(_)) if killed.elapsed() < Duration::from_millis(100) => continue,
            Ok(Some(_)) => break killed.elapsed(),
            _ => panic!("no forecast of {victims:?} within 15 s of the kill"),
        }
    };
    drop(merged);
    eprintln!(
        "takeover: {} ms ({} pairs of partitions {held:?})",
        takeover.as_millis(),
        victims.len()
    );
    assert!(takeover <= Duration::from_secs(5), "takeover took {takeover:?}");
    wait_balanced(&js, &["c1", "c2"], 4, Duration::from_secs(20)).await;

    // A nats-server node dies and comes back.
    wait_published(total * 2 / 5).await;
    nats.kill(2);
    tokio::time::sleep(Duration::from_secs(3)).await;
    nats.restart(2).await;
    // The rest of the test assumes a healthy cluster again: the restarted node has caught up every stream
    // cambio writes (until then it refuses publications into them, so checkpoints fail there and take
    // overs resume from older ones: slower, still exact).
    let streams = ["FX", "FX_PART", "PRED", "KV_cambio_leases", "OBJ_cambio_checkpoints"];
    let healed = nats.wait_streams_current(2, &streams).await;
    eprintln!("node 2 back: every stream current after {} ms", healed.as_millis());

    // c1 stalls longer than the lease TTL (SIGSTOP: a long pause, a network cut): c2 takes its partitions;
    // resumed, c1 finds its leases gone, stops reading them at once, and gets a share back.
    let signal = |sig: &str, s: &Serve| {
        let ok = std::process::Command::new("kill")
            .args([sig, &s.child.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    };
    signal("-STOP", &serves[1]);
    wait_balanced(&js, &["c2"], PARTITIONS as usize, Duration::from_secs(15)).await;
    signal("-CONT", &serves[1]);
    wait_balanced(&js, &["c1", "c2"], 4, Duration::from_secs(20)).await;
    let log = serves[1].log();
    assert!(
        log.contains("cluster: lease lost"),
        "c1 did not notice it lost its leases:\n{log}"
    );

    // The killed instance comes back and gets its share again.
    serves[0] = start_confirmed(&nats, 0, &dir, "c0");
    wait_balanced(&js, &ids, 2, Duration::from_secs(30)).await;

    // Rolling restart: each instance in turn stopped with SIGTERM (handover) and started again; the
    // longest silence of any pair's forecasts is measured meanwhile.
    let mut all = client.subscribe("fx.pred.>").await.unwrap();
    let (stop_gaps, mut gaps_stopped) = tokio::sync::oneshot::channel::<()>();
    let gaps = tokio::spawn(async move {
        let mut last: BTreeMap<String, Instant> = BTreeMap::new();
        let mut worst = (Duration::ZERO, String::new());
        loop {
            tokio::select! {
                _ = &mut gaps_stopped => break,
                m = all.next() => {
                    let Some(m) = m else { break };
                    let now = Instant::now();
                    if let Some(t) = last.insert(m.subject.to_string(), now)
                        && now - t > worst.0
                    {
                        worst = (now - t, m.subject.to_string());
                    }
                }
            }
        }
        worst
    });
    let rolling = Instant::now();
    for (i, id) in ids.iter().enumerate() {
        let stopping = Instant::now();
        assert_eq!(serves[i].terminate(), 0, "{}", serves[i].log());
        let log = serves[i].log();
        assert!(
            log.contains("cluster: partitions handed over"),
            "{id} did not hand over:\n{log}"
        );
        let others: Vec<&str> = ids.iter().copied().filter(|o| o != id).collect();
        let o = wait_balanced(&js, &others, 2, Duration::from_secs(10)).await;
        eprintln!(
            "{id} stopped: partitions owned by the others after {} ms: {o:?}",
            stopping.elapsed().as_millis()
        );
        serves[i] = start_confirmed(&nats, i, &dir, id);
        let o = wait_balanced(&js, &ids, 2, Duration::from_secs(30)).await;
        eprintln!(
            "{id} back: its share after {} ms: {o:?}",
            stopping.elapsed().as_millis()
        );
    }
    eprintln!("rolling restart: {} ms", rolling.elapsed().as_millis());

    tokio::time::timeout(Duration::from_secs(180), publisher)
        .await
        .unwrap()
        .unwrap();
    let _ = stop_gaps.send(());
    let (worst_gap, worst_subject) = gaps.await.unwrap();
    eprintln!(
        "longest silence of a pair's forecasts during the rolling restart and after: {} ms",
        worst_gap.as_millis()
    );
    assert!(
        worst_gap <= Duration::from_secs(1),
        "{worst_subject} stopped for {worst_gap:?} during the rolling restart"
    );

    // Every partition has changed owner: the second phase.
    publish_paced(js.clone(), "second", later, 600, Arc::default()).await;

    // Exactly one forecast per tick.
    let all_pairs: Vec<&str> = PAIRS.iter().chain(LATE_PAIRS.iter()).copied().collect();
    let forecasts: u64 = all_pairs.iter().map(|p| ticks_of_pair(p)).sum();
    let deadline = Instant::now() + Duration::from_secs(120);
    let counts = loop {
        let c = forecasts_by_pair(&mut pred).await;
        if c.values().sum::<u64>() >= forecasts || Instant::now() > deadline {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    watcher.abort();
    let received: BTreeMap<String, usize> = seen.lock().unwrap().iter().map(|(p, s)| (p.clone(), s.len())).collect();
    for p in &all_pairs {
        assert_eq!(
            counts.get(*p).copied(),
            Some(ticks_of_pair(p)),
            "{p} forecasts stored: {counts:?}; distinct forecast ids a subscriber received: {received:?}"
        );
    }
    let stored = pred.info().await.unwrap().state.messages;
    assert_eq!(stored, forecasts, "forecasts in the de-duplicating stream");

    // The last forecast of each pair came from an owner that took its partition over: it names the
    // version restored, numbered as the previous owner wrote it, and the owner's registry continues the
    // numbering from it (the named version itself may be gone by retention: keep_last = 3).
    for p in PAIRS {
        let last = pred
            .get_last_raw_message_by_subject(&format!("fx.pred.{p}"))
            .await
            .unwrap();
        let f: serde_json::Value = serde_json::from_slice(&last.payload).unwrap();
        let version = f["model"]["version"].as_u64().unwrap_or(0);
        assert!(
            version >= 1,
            "{p}: the forecast after the takeovers names no version: {f}"
        );
        let (err, v) = request(&client, &format!("fx.models.{p}"), r#"{"op":"list"}"#).await;
        let listed: Vec<u64> = v["versions"]
            .as_array()
            .map(|a| a.iter().filter_map(|m| m["version"].as_u64()).collect())
            .unwrap_or_default();
        assert!(
            !err && !listed.is_empty() && (listed.contains(&version) || listed.iter().all(|&n| n > version)),
            "{p}: forecasts name version {version}, its owner lists {listed:?}: {v}"
        );
    }

    // Every instance hands its partitions over; the last one writes them all.
    for s in &mut serves {
        assert_eq!(s.terminate(), 0, "{}", s.log());
    }
    let objects = js.get_object_store(CHECKPOINTS_BUCKET).await.unwrap();
    let mut shared = BTreeMap::new();
    for p in &all_pairs {
        let state = shared_state(&objects, p).await;
        assert_eq!(
            state.engine.ticks(),
            ticks_of_pair(p),
            "{p}: ticks in its shared checkpoint"
        );
        shared.insert(p.to_string(), comparable(&state));
    }

    // The single uninterrupted instance on the same ticks.
    let rdir = instance_dir(&dir, "reference");
    let rdb = rdir.join("registry.redb");
    let mut reference = Serve::start(&nats.url(1), &reference_config(&rdb), &rdir);
    all_at(&client, &reference, &all_pairs, ticks_of_pair).await;
    assert_eq!(reference.terminate(), 0, "{}", reference.log());
    let store = CheckpointStore::open_existing(&rdb, Retention::default()).unwrap();
    for p in &all_pairs {
        let pair = cambio::tick::Pair::parse(p).unwrap();
        let (_, state) = store.latest_good(pair).unwrap().unwrap();
        assert!(
            comparable(&state) == shared[*p],
            "{p}: the cluster's final state differs from the single instance's"
        );
    }
    drop(serves);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The lighter check: on a 3-node cluster with 3 instances, a status request for any pair, sent through
/// any node, gets exactly one answer (the owner's; the other instances stay silent), and
/// `$SRV.PING.cambio` lists three instances.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_reaches_the_owner_from_any_node() {
    let dir = temp_dir("cluster-query");
    let nats = NatsCluster::start(3, &dir).await;
    let client = async_nats::connect(nats.url(0)).await.unwrap();
    let js = jetstream::new(client.clone());
    create_stream(
        &js,
        stream::Config {
            name: "FX".into(),
            subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
            storage: stream::StorageType::File,
            num_replicas: 3,
            ..Default::default()
        },
    )
    .await;
    let ids = ["q0", "q1", "q2"];
    let serves: Vec<Serve> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| start_instance(&nats, i, &dir, id))
        .collect();
    wait_balanced(&js, &ids, 2, Duration::from_secs(60)).await;
    for (subject, body) in ticks_of(3) {
        let ack = js
            .publish_with_headers(subject, replay_header(), Bytes::from(body))
            .await
            .unwrap();
        ack.await.unwrap();
    }
    let clients = [
        client.clone(),
        async_nats::connect(nats.url(1)).await.unwrap(),
        async_nats::connect(nats.url(2)).await.unwrap(),
    ];
    for p in PAIRS {
        for (node, c) in clients.iter().enumerate() {
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let inbox = c.new_inbox();
                let mut replies = c.subscribe(inbox.clone()).await.unwrap();
                c.publish_with_reply(format!("fx.status.{p}"), inbox, Bytes::new())
                    .await
                    .unwrap();
                let got = collect(&mut replies, 3, Duration::from_millis(250)).await;
                let answered: Vec<serde_json::Value> = got
                    .iter()
                    .filter(|m| m.headers.as_ref().is_none_or(|h| h.get("Nats-Service-Error").is_none()))
                    .map(|m| serde_json::from_slice(&m.payload).unwrap())
                    .collect();
                assert!(got.len() <= 1, "{p} through node {node}: {} replies", got.len());
                if answered.len() == 1 && answered[0]["ticks"].as_u64() == Some(3) {
                    break;
                }
                assert!(Instant::now() < deadline, "{p} through node {node}: {answered:?}");
            }
        }
    }
    let reply = client.new_inbox();
    let mut inbox = client.subscribe(reply.clone()).await.unwrap();
    client
        .publish_with_reply("$SRV.PING.cambio", reply, Bytes::new())
        .await
        .unwrap();
    let pongs = collect(&mut inbox, 4, Duration::from_secs(2)).await;
    let instances: BTreeSet<String> = pongs
        .iter()
        .map(|m| serde_json::from_slice::<serde_json::Value>(&m.payload).unwrap()["id"].to_string())
        .collect();
    assert_eq!(
        (pongs.len(), instances.len()),
        (3, 3),
        "$SRV.PING.cambio: {instances:?}"
    );
    drop(serves);
    drop(nats);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A shared store that lost objects still gives an exact takeover: a pair whose checkpoint is missing
/// though its partition's index names it starts fresh and its partition is read from the start (the other
/// pairs skip what they hold); a partition whose index is missing is restored from a listing of the store.
/// The final states equal a single uninterrupted instance's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_takeover_recovers_from_a_lost_checkpoint_and_a_lost_index() {
    let dir = temp_dir("cluster-lost");
    let server = cambio::nats::LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let start = |id: &str| {
        let d = instance_dir(&dir, id);
        Serve::start(&server.url(), &cluster_config(id, &d.join("registry.redb")), &d)
    };
    let publish = |msgs: Vec<(String, String)>| {
        let js = js.clone();
        async move {
            for (subject, body) in msgs {
                let ack = js
                    .publish_with_headers(subject, replay_header(), Bytes::from(body))
                    .await
                    .unwrap();
                ack.await.unwrap();
            }
        }
    };
    let mut msgs = ticks_of(150);
    let later = msgs.split_off(PAIRS.len() * 100);
    // Policy rates set and then changed before the checkpoint: the pair started again from the stream's
    // start must get each at its place, not the latest.
    for (at, tiie, fed) in [(PAIRS.len() * 70, 11.0, 5.25), (PAIRS.len() * 30, 11.25, 5.5)] {
        let day = if at > PAIRS.len() * 50 {
            "2024-03-04"
        } else {
            "2024-03-03"
        };
        for (name, value) in [("TIIE28", tiie), ("FED_FUNDS", fed)] {
            msgs.insert(
                at,
                (
                    format!("fx.factors.{name}"),
                    format!(r#"{{"name":"{name}","ts":"{day}","value":{value},"source":"test"}}"#),
                ),
            );
        }
    }

    let mut a = start("a");
    wait_balanced(&js, &["a"], PARTITIONS as usize, Duration::from_secs(30)).await;
    publish(msgs).await;
    all_at(&client, &a, &PAIRS, |_| 100).await;
    assert_eq!(a.terminate(), 0, "{}", a.log());

    // USDMXN's checkpoint is lost; so is the index of a partition that does not hold it.
    let objects = js.get_object_store(CHECKPOINTS_BUCKET).await.unwrap();
    let lost = "USDMXN";
    let lost_partition = partition_of(lost, PARTITIONS);
    let unindexed = (0..PARTITIONS).find(|p| *p != lost_partition).unwrap();
    objects.delete(lost).await.unwrap();
    objects.delete(format!("partition.{unindexed}")).await.unwrap();

    publish(later).await;
    let mut b = start("b");
    all_at(&client, &b, &PAIRS, |_| 150).await;
    let log = b.log();
    assert!(
        log.lines().any(
            |l| l.contains("pair not restored; it starts fresh and the partition is read from its start")
                && l.contains("pair=USDMXN")
                && l.contains("no shared checkpoint")
        ),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.contains("partition taken over")
            && l.contains(&format!("partition={unindexed} "))
            && l.contains("indexed=false")),
        "{log}"
    );
    assert_eq!(b.terminate(), 0, "{}", b.log());
    let mut shared = BTreeMap::new();
    for p in PAIRS {
        shared.insert(p, comparable(&shared_state(&objects, p).await));
    }

    let rdir = instance_dir(&dir, "reference");
    let rdb = rdir.join("registry.redb");
    let mut reference = Serve::start(&server.url(), &reference_config(&rdb), &rdir);
    all_at(&client, &reference, &PAIRS, |_| 150).await;
    assert_eq!(reference.terminate(), 0, "{}", reference.log());
    let store = CheckpointStore::open_existing(&rdb, Retention::default()).unwrap();
    for p in PAIRS {
        let (_, state) = store
            .latest_good(cambio::tick::Pair::parse(p).unwrap())
            .unwrap()
            .unwrap();
        assert!(
            comparable(&state) == shared[p],
            "{p}: the state after the takeover differs from the single instance's"
        );
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An instance configured with another partition count than the partitioned stream's refuses to start,
/// and says why; the one matching it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_partition_count_is_refused() {
    let dir = temp_dir("cluster-partitions");
    let server = cambio::nats::LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let d = instance_dir(&dir, "a");
    let first = Serve::start(&server.url(), &cluster_config("a", &d.join("registry.redb")), &d);
    wait_balanced(&js, &["a"], PARTITIONS as usize, Duration::from_secs(30)).await;
    let d = instance_dir(&dir, "b");
    let other = cluster_config("b", &d.join("registry.redb")).replace("partitions = 8", "partitions = 4");
    let mut second = Serve::start(&server.url(), &other, &d);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = second.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "started with another partition count:\n{}",
            second.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(!status.success());
    let log = second.log();
    assert!(
        log.contains("partition(8,1)") && log.contains("partition(4,1)"),
        "{log}"
    );
    drop(first);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Throughput of 1 and 2 instances in cluster mode on one nats-server (not run by default: a
/// measurement, reported in docs/scaling.md). 200,000 ticks of 20 pairs wait in the partitioned stream;
/// then the instances start, and the rate at which a de-duplicating stream fills from 5% to 100% of the
/// forecasts is measured (leaving out the start and the first claims).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --test cluster -- --ignored --nocapture"]
async fn throughput_of_one_and_two_instances() {
    for k in [1usize, 2, 1, 2] {
        measure_throughput(k, false).await;
    }
}

/// The same measurement with one instance, forecasts published plainly and with the stream's
/// acknowledgement (`confirm_forecasts`), alternated (reported in docs/deployment.md).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: cargo test --test cluster -- --ignored --nocapture"]
async fn throughput_with_confirmed_forecasts() {
    for confirm in [false, true, false, true] {
        measure_throughput(1, confirm).await;
    }
}

/// Forecasts per second of `k` instances over 200,000 waiting ticks (see the tests above).
async fn measure_throughput(k: usize, confirm: bool) -> f64 {
    const N: usize = 10_000;
    let msgs = ticks_of(N);
    let total = N * PAIRS.len();
    let dir = temp_dir(&format!("cluster-load-{k}"));
    let server = cambio::nats::LocalServer::start(true, Some(&dir.join("store"))).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    js.create_stream(stream::Config {
        name: "FX".into(),
        subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
        storage: stream::StorageType::File,
        ..Default::default()
    })
    .await
    .unwrap();
    let pred = js
        .create_stream(stream::Config {
            name: "PRED".into(),
            subjects: vec!["fx.pred.>".into()],
            storage: stream::StorageType::Memory,
            duplicate_window: Duration::from_secs(900),
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<String> = (0..k).map(|i| format!("l{i}")).collect();
    let start_all = || -> Vec<Serve> {
        ids.iter()
            .map(|id| {
                let d = instance_dir(&dir, id);
                let mut cfg = cluster_config(id, &d.join("registry.redb"));
                if confirm {
                    cfg.push_str("[serve.jetstream]\nconfirm_forecasts = true\n");
                }
                Serve::start(&server.url(), &cfg, &d)
            })
            .collect()
    };
    // A first start creates the partitioned stream and the buckets; then the ticks are stored while
    // no instance runs.
    let mut serves = start_all();
    wait_balanced(&js, &[ids[0].as_str()], 1, Duration::from_secs(30)).await;
    for s in &mut serves {
        assert_eq!(s.terminate(), 0, "{}", s.log());
    }
    drop(serves);
    let mut acks = Vec::new();
    for (subject, body) in &msgs {
        let ack = js
            .publish_with_headers(subject.clone(), replay_header(), Bytes::from(body.clone()))
            .await
            .unwrap();
        acks.push(ack);
        if acks.len() >= 2_000 {
            for a in acks.drain(..) {
                a.await.unwrap();
            }
        }
    }
    for a in acks.drain(..) {
        a.await.unwrap();
    }
    let mut part = js.get_stream("FX_PART").await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while part.info().await.unwrap().state.messages < total as u64 {
        assert!(Instant::now() < deadline, "FX_PART not filled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let serves = start_all();
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut from: Option<Instant> = None;
    loop {
        let n = pred.clone().info().await.unwrap().state.messages;
        if from.is_none() && n >= total as u64 / 20 {
            from = Some(Instant::now());
        }
        if n >= total as u64 {
            break;
        }
        assert!(Instant::now() < deadline, "{n} of {total} forecasts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let from = from.unwrap_or(started);
    let rate = (total - total / 20) as f64 / from.elapsed().as_secs_f64();
    eprintln!(
        "{k} instance(s), forecasts {}: {total} forecasts {} ms after the start; from 5% to 100%: {rate:.0} forecasts/s",
        if confirm { "confirmed" } else { "plain" },
        started.elapsed().as_millis()
    );
    drop(serves);
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    rate
}
