//! The `postgres` source against a real PostgreSQL server (tests/common/postgres.rs) and a real nats-server
//! with JetStream: backfill, nothing new on a second run, increments, NULL as a missing value, a restart
//! from the KV watermark, a crash between publication and the watermark, the server down, a bad query,
//! LISTEN/NOTIFY.

mod common;

use std::time::{Duration, Instant};

use async_nats::jetstream::{self, kv, stream};
use cambio::nats::LocalServer;
use cambio::sources::postgres::{Backoff, PostgresConfig, PostgresError, PostgresSource, RunReport, Sink};
use common::postgres::Postgres;
use serde_json::Value;

/// JetStream with the `FX` stream (ticks and factors, de-duplicating by `Nats-Msg-Id`) and a watermark
/// bucket, on a fresh local server.
struct Bus {
    _server: LocalServer,
    js: jetstream::Context,
    kv: kv::Store,
}

impl Bus {
    async fn start() -> Bus {
        let server = LocalServer::start(true, None).expect("nats-server (see tests/common/mod.rs for PATH)");
        let client = async_nats::connect(server.url()).await.unwrap();
        let js = jetstream::new(client);
        js.get_or_create_stream(stream::Config {
            name: "FX".into(),
            subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
            duplicate_window: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .unwrap();
        let kv = js
            .create_key_value(kv::Config {
                bucket: "cambio_sources".into(),
                history: 1,
                ..Default::default()
            })
            .await
            .unwrap();
        Bus {
            _server: server,
            js,
            kv,
        }
    }

    fn sink<'a>(&'a self, key: &'a str) -> Sink<'a> {
        Sink {
            js: &self.js,
            kv: &self.kv,
            key,
            prefix: "fx",
        }
    }

    /// Every message in the stream: subject, `Nats-Msg-Id`, payload.
    async fn messages(&self) -> Vec<(String, String, Value)> {
        let mut s = self.js.get_stream("FX").await.unwrap();
        let n = s.info().await.unwrap().state.last_sequence;
        let mut out = Vec::new();
        for seq in 1..=n {
            let m = s.get_raw_message(seq).await.unwrap();
            let id = m.headers.get("Nats-Msg-Id").map(|v| v.to_string()).unwrap_or_default();
            out.push((m.subject.to_string(), id, serde_json::from_slice(&m.payload).unwrap()));
        }
        out
    }
}

fn rates_config(pg: &Postgres, limit: usize) -> PostgresConfig {
    PostgresConfig {
        dsn: Some(pg.dsn()),
        query: format!("SELECT ts, value FROM rates WHERE ts > $1 ORDER BY ts LIMIT {limit}"),
        watermark: "ts".into(),
        target: "tick:USDMXN".into(),
        mid: Some("value".into()),
        ..Default::default()
    }
}

/// `n` daily USD/MXN fixings from 2024-01-01 (values 17.0001, 17.0002, …), the `null_at`-th one NULL.
fn insert_rates(pg: &Postgres, from_day: usize, n: usize, null_at: Option<usize>) {
    let rows: Vec<String> = (from_day..from_day + n)
        .map(|d| {
            let v = if Some(d) == null_at {
                "NULL".to_string()
            } else {
                format!("{:.4}", 17.0 + d as f64 * 1e-4)
            };
            format!("(TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL '{d} days', {v})")
        })
        .collect();
    pg.psql(&format!("INSERT INTO rates (ts, value) VALUES {}", rows.join(",")));
}

async fn run(src: &mut PostgresSource, bus: &Bus, key: &str) -> RunReport {
    src.run_once(&bus.sink(key), Backoff::default()).await.expect("run")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_then_nothing_new_then_increments_with_nulls_as_missing() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE rates (ts timestamptz PRIMARY KEY, value numeric(12,4))");
    insert_rates(&pg, 0, 25, Some(7));
    let bus = Bus::start().await;
    let mut src = PostgresSource::new("rates_db", rates_config(&pg, 10)).unwrap();

    // Backfill: three pages of at most 10 rows, every row published, the NULL one as a missing mid.
    let r = run(&mut src, &bus, "rates_db").await;
    assert_eq!((r.published, r.duplicates, r.missing), (25, 0, 1), "{r:?}");
    assert_eq!(r.watermark.as_deref(), Some("2024-01-25T00:00:00.000Z"));
    let msgs = bus.messages().await;
    assert_eq!(msgs.len(), 25);
    let (subject, id, first) = &msgs[0];
    assert_eq!(subject, "fx.ticks.USDMXN");
    assert_eq!(id, "postgres-rates_db-2024-01-01T00:00:00.000Z");
    assert_eq!(first["pair"], "USDMXN");
    assert_eq!(first["ts"], "2024-01-01T00:00:00.000Z");
    assert_eq!(first["mid"], 17.0);
    assert_eq!(msgs[3].2["mid"], 17.0003, "numeric read exactly");
    assert!(
        msgs[7].2["mid"].is_null(),
        "NULL published as a missing value: {}",
        msgs[7].2
    );
    assert!(msgs[7].2.as_object().unwrap().contains_key("mid"));
    // Every message is a tick the engine reads (the NULL one as missing_value, which it quarantines).
    for (_, _, m) in &msgs {
        let ts = m["ts"].as_str().unwrap();
        cambio::time::parse_ts_us(ts).unwrap();
    }

    // A second run: nothing new, nothing re-published.
    let r = run(&mut src, &bus, "rates_db").await;
    assert_eq!((r.published, r.duplicates), (0, 0), "{r:?}");
    assert_eq!(bus.messages().await.len(), 25);

    // Rows inserted after: only they go out.
    insert_rates(&pg, 25, 3, None);
    let r = run(&mut src, &bus, "rates_db").await;
    assert_eq!((r.published, r.duplicates), (3, 0), "{r:?}");
    let msgs = bus.messages().await;
    assert_eq!(msgs.len(), 28);
    assert_eq!(msgs[27].2["ts"], "2024-01-28T00:00:00.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_from_the_kv_watermark_and_a_lost_watermark_duplicates_nothing() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE rates (ts timestamptz PRIMARY KEY, value double precision)");
    insert_rates(&pg, 0, 12, None);
    let bus = Bus::start().await;
    let r = run(
        &mut PostgresSource::new("rates_db", rates_config(&pg, 5)).unwrap(),
        &bus,
        "rates_db",
    )
    .await;
    assert_eq!(r.published, 12);

    // A new process (a fresh source) reads the watermark from the bucket: only the new rows.
    insert_rates(&pg, 12, 4, None);
    let mut restarted = PostgresSource::new("rates_db", rates_config(&pg, 5)).unwrap();
    let r = run(&mut restarted, &bus, "rates_db").await;
    assert_eq!((r.published, r.duplicates), (4, 0), "{r:?}");

    // A crash after publishing but before the watermark was stored: the bucket holds an older watermark.
    // The rows are read again, and the stream drops them as duplicates by their Nats-Msg-Id.
    bus.kv.put("rates_db", "2024-01-10T00:00:00.000Z".into()).await.unwrap();
    let r = run(&mut restarted, &bus, "rates_db").await;
    assert_eq!((r.published, r.duplicates), (0, 6), "{r:?}");
    assert_eq!(bus.messages().await.len(), 16);
    assert_eq!(
        bus.kv.get("rates_db").await.unwrap().as_deref(),
        Some(&b"2024-01-16T00:00:00.000Z"[..])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_down_fails_the_run_after_retries_and_the_next_run_catches_up() {
    let mut pg = Postgres::start();
    pg.psql("CREATE TABLE rates (ts timestamptz PRIMARY KEY, value numeric)");
    insert_rates(&pg, 0, 3, None);
    let bus = Bus::start().await;
    let mut src = PostgresSource::new("rates_db", rates_config(&pg, 100)).unwrap();
    assert_eq!(run(&mut src, &bus, "rates_db").await.published, 3);

    pg.stop();
    let backoff = Backoff {
        attempts: 3,
        first: Duration::from_millis(50),
    };
    let started = Instant::now();
    let err = src.run_once(&bus.sink("rates_db"), backoff).await.unwrap_err();
    assert!(matches!(err, PostgresError::Connect(_)), "{err}");
    assert!(err.is_transient());
    assert!(err.to_string().starts_with("connection to PostgreSQL failed"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30), "bounded retries");

    pg.resume();
    insert_rates(&pg, 3, 2, None);
    let r = run(&mut src, &bus, "rates_db").await;
    assert_eq!((r.published, r.duplicates), (2, 0), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_query_fails_at_once_with_the_servers_message() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE rates (ts timestamptz PRIMARY KEY, value numeric)");
    let bus = Bus::start().await;
    let slow = Backoff {
        attempts: 5,
        first: Duration::from_secs(10),
    };

    let mut cfg = rates_config(&pg, 10);
    cfg.query = "SELECT ts, value FROM rate WHERE ts > $1 ORDER BY ts".into();
    let started = Instant::now();
    let err = PostgresSource::new("q", cfg)
        .unwrap()
        .run_once(&bus.sink("q"), slow)
        .await
        .unwrap_err();
    assert!(matches!(err, PostgresError::Query(_)), "{err}");
    assert!(err.to_string().contains("relation \"rate\" does not exist"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "not retried");

    let mut cfg = rates_config(&pg, 10);
    cfg.query = "SELECT ts, value FROM rates ORDER BY ts".into();
    let err = PostgresSource::new("q", cfg)
        .unwrap()
        .run_once(&bus.sink("q"), slow)
        .await
        .unwrap_err();
    assert!(matches!(err, PostgresError::Params { count: 0 }), "{err}");

    let mut cfg = rates_config(&pg, 10);
    cfg.mid = Some("mid".into());
    let err = PostgresSource::new("q", cfg)
        .unwrap()
        .run_once(&bus.sink("q"), slow)
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "column `mid` (mid) is not in the query's result (it has: ts, value)"
    );

    // A query slower than the timeout: a connection failure (retried), with the limit in the message.
    let mut cfg = rates_config(&pg, 10);
    cfg.query = "SELECT ts, value FROM rates, pg_sleep(3) WHERE ts > $1 ORDER BY ts".into();
    let once = Backoff {
        attempts: 1,
        first: Duration::from_millis(1),
    };
    let mut src = PostgresSource::new("q", cfg)
        .unwrap()
        .with_timeout(Duration::from_millis(500));
    let started = Instant::now();
    let err = src.run_once(&bus.sink("q"), once).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "connection to PostgreSQL failed: the query took longer than the timeout, 500 ms"
    );
    assert!(started.elapsed() < Duration::from_secs(3), "{:?}", started.elapsed());

    insert_rates(&pg, 0, 3, None);
    let mut cfg = rates_config(&pg, 10);
    cfg.query = "SELECT ts, value FROM rates WHERE ts > $1 ORDER BY ts DESC".into();
    let err = PostgresSource::new("q", cfg)
        .unwrap()
        .run_once(&bus.sink("q"), slow)
        .await
        .unwrap_err();
    assert!(matches!(err, PostgresError::Unordered { .. }), "{err}");
    assert!(
        bus.kv.get("q").await.unwrap().is_none(),
        "no watermark stored past unordered rows"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn factors_by_integer_id_with_names_from_a_column() {
    let pg = Postgres::start();
    pg.psql(
        "CREATE TABLE factors (id bigserial PRIMARY KEY, day date NOT NULL, name text NOT NULL, value real);
         INSERT INTO factors (day, name, value) VALUES
           ('2024-01-02', 'TIIE28', 11.5), ('2024-01-02', 'FEDFUNDS', 5.33), ('2024-01-03', 'TIIE28', NULL)",
    );
    let bus = Bus::start().await;
    let cfg = PostgresConfig {
        dsn: Some(pg.dsn()),
        query: "SELECT id, day, name, value FROM factors WHERE id > $1 ORDER BY id".into(),
        watermark: "id".into(),
        time: Some("day".into()),
        target: "factor:{name}".into(),
        ..Default::default()
    };
    let mut src = PostgresSource::new("rates_db", cfg).unwrap();
    let r = run(&mut src, &bus, "factors").await;
    assert_eq!(
        (r.published, r.missing, r.watermark.as_deref()),
        (3, 1, Some("3")),
        "{r:?}"
    );
    let msgs = bus.messages().await;
    assert_eq!(msgs[0].0, "fx.factors.TIIE28");
    assert_eq!(msgs[0].1, "postgres-rates_db-TIIE28-1");
    assert_eq!(msgs[1].0, "fx.factors.FEDFUNDS");
    assert_eq!(msgs[1].2["value"], 5.329999923706055, "a real is widened, not rounded");
    assert_eq!(msgs[2].2["ts"], "2024-01-03T00:00:00.000Z");
    assert!(msgs[2].2["value"].is_null());
    assert_eq!(run(&mut src, &bus, "factors").await.published, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notify_on_the_listen_channel_wakes_the_source() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE rates (ts timestamptz PRIMARY KEY, value numeric)");
    let bus = Bus::start().await;
    let mut cfg = rates_config(&pg, 10);
    cfg.listen = Some("rates_changed".into());
    let mut src = PostgresSource::new("rates_db", cfg).unwrap();
    assert_eq!(run(&mut src, &bus, "rates_db").await.published, 0);

    // Not notified yet.
    assert!(
        tokio::time::timeout(Duration::from_millis(200), src.notified())
            .await
            .is_err()
    );
    insert_rates(&pg, 0, 2, None);
    pg.psql("NOTIFY rates_changed");
    tokio::time::timeout(Duration::from_secs(10), src.notified())
        .await
        .expect("woken by NOTIFY");
    assert_eq!(run(&mut src, &bus, "rates_db").await.published, 2);
}

/// A sources file with a live postgres source (`rates_db`, pages of 4) and, with `down_port`, one whose
/// server is not running (`down_db`, one quick retry).
fn sources_toml(pg: &Postgres, down_port: Option<u16>, listen: bool) -> String {
    let mut s = format!(
        r#"
[[source]]
kind = "postgres"
name = "rates_db"
every = "1h"
dsn = "{dsn}"
query = "SELECT ts, value FROM rates WHERE ts > $1 ORDER BY ts LIMIT 4"
watermark = "ts"
target = "tick:USDMXN"
mid = "value"
{listen}
"#,
        dsn = pg.dsn(),
        listen = if listen { "listen = \"rates_changed\"" } else { "" }
    );
    if let Some(port) = down_port {
        s.push_str(&format!(
            r#"
[[source]]
kind = "postgres"
name = "down_db"
every = "1h"
dsn = "host=127.0.0.1 port={port} user=postgres dbname=postgres connect_timeout=2"
query = "SELECT ts, value FROM rates WHERE ts > $1 ORDER BY ts"
watermark = "ts"
target = "tick:USDMXN"
mid = "value"
retries = 1
backoff = "50ms"
"#
        ));
    }
    s
}

/// `cambio sources run --once`: its exit code and standard output.
async fn sources_once(config: &std::path::Path, url: &str) -> (i32, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["sources", "run", "--once", "--nats", url, "--config"])
        .arg(config)
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code().unwrap_or(-1),
        format!("{text}\n--- stderr ---\n{err}"),
    )
}

/// Messages in the `FX` stream now.
async fn stream_count(js: &jetstream::Context) -> u64 {
    js.get_stream("FX").await.unwrap().info().await.unwrap().state.messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_run_once_publishes_backfill_then_nothing_then_new_rows_and_a_down_server_fails_alone() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE rates (ts timestamptz PRIMARY KEY, value numeric)");
    insert_rates(&pg, 0, 10, Some(2));
    let bus = Bus::start().await;
    let url = bus._server.url();
    let dir = common::temp_dir("sources-postgres");
    let config = dir.join("sources.toml");
    std::fs::write(&config, sources_toml(&pg, Some(common::free_port()), false)).unwrap();

    // Backfill; the source whose server is down fails, clearly, and does not stop the other.
    let (code, out) = sources_once(&config, &url).await;
    assert_eq!(code, 1, "a failed source exits 1:\n{out}");
    assert!(out.contains("down_db: connection to PostgreSQL failed"), "{out}");
    let row = out.lines().find(|l| l.starts_with("rates_db")).unwrap_or_default();
    assert!(
        row.split_whitespace().collect::<Vec<_>>()[..6] == ["rates_db", "postgres", "ok", "10", "10", "1"],
        "{out}"
    );
    assert_eq!(stream_count(&bus.js).await, 10);
    assert!(bus.messages().await[2].2["mid"].is_null(), "NULL as a missing value");

    // A second run (a new process: the watermark comes from the bucket) publishes nothing new.
    std::fs::write(&config, sources_toml(&pg, None, false)).unwrap();
    let (code, out) = sources_once(&config, &url).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(stream_count(&bus.js).await, 10);

    // Rows inserted after are published by the next run, and only they.
    insert_rates(&pg, 10, 3, None);
    let (code, out) = sources_once(&config, &url).await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(stream_count(&bus.js).await, 13);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sources_run_polls_at_once_on_notify_without_waiting_for_the_schedule() {
    let pg = Postgres::start();
    pg.psql("CREATE TABLE rates (ts timestamptz PRIMARY KEY, value numeric)");
    insert_rates(&pg, 0, 2, None);
    let bus = Bus::start().await;
    let dir = common::temp_dir("sources-postgres-listen");
    let config = dir.join("sources.toml");
    std::fs::write(&config, sources_toml(&pg, None, true)).unwrap();
    let log = dir.join("sources.log");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["sources", "run", "--nats", &bus._server.url(), "--config"])
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let wait_for = |n: u64| {
        let js = bus.js.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while stream_count(&js).await < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            stream_count(&js).await
        }
    };
    let first = wait_for(2).await;
    // The first run is done and the next is an hour away: only a NOTIFY can bring the new rows now.
    insert_rates(&pg, 2, 3, None);
    pg.psql("NOTIFY rates_changed");
    let after = wait_for(5).await;
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!((first, after), (2, 5), "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
