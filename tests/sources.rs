//! `cambio sources run` against stand-ins of the Banxico SIE, INEGI and FRED APIs: a local HTTP server
//! started by each test, answering in the documented formats with the real series in ../shared/data
//! (Banxico FIX, INEGI INPC, FRED DFF, read in place), and a real JetStream-enabled nats-server.

mod common;

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use cambio::nats::LocalServer;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const DATA: &str = "../shared/data";

/// A date `yyyy-mm-dd` as days since the epoch, and back.
fn days(s: &str) -> i64 {
    cambio::sources::Date::parse_ymd(s).unwrap().0
}

fn date(d: i64) -> String {
    cambio::sources::Date(d).to_string()
}

/// One row of a series: its date and its value as the source writes it (`None`: not available).
#[derive(Clone, Debug)]
struct Row {
    day: i64,
    value: Option<String>,
}

/// A scripted answer that replaces the next normal one on a path prefix.
#[derive(Clone, Debug)]
enum Scripted {
    Status(u16, Option<u64>),
    Truncated,
}

#[derive(Default)]
struct State {
    /// Rows per series id.
    series: HashMap<String, Vec<Row>>,
    /// Scripted answers by series id, taken before the normal answer.
    script: HashMap<String, VecDeque<Scripted>>,
    /// Requests seen per series id.
    requests: HashMap<String, u32>,
}

/// The stand-in: one server for the three APIs under /banxico, /inegi and /fred.
#[derive(Clone)]
struct StandIn {
    state: Arc<Mutex<State>>,
    url: String,
}

const TOKEN: &str = "good-token";

impl StandIn {
    async fn start() -> StandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state: Arc<Mutex<State>> = Arc::default();
        let s = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    return;
                };
                let s = s.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf).to_string();
                    let (status, extra, body) = answer(&s, &head);
                    let reason = match status {
                        200 => "OK",
                        401 => "Unauthorized",
                        429 => "Too Many Requests",
                        _ => "Error",
                    };
                    let resp = format!(
                        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n{extra}\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                    let _ = sock.shutdown().await;
                });
            }
        });
        StandIn { state, url }
    }

    fn set(&self, id: &str, rows: Vec<Row>) {
        self.state.lock().unwrap().series.insert(id.into(), rows);
    }

    fn script(&self, id: &str, answers: &[Scripted]) {
        self.state
            .lock()
            .unwrap()
            .script
            .insert(id.into(), answers.iter().cloned().collect());
    }

    fn requests(&self, id: &str) -> u32 {
        self.state.lock().unwrap().requests.get(id).copied().unwrap_or(0)
    }
}

fn query(q: &str, name: &str) -> Option<String> {
    q.split('&')
        .find_map(|kv| kv.strip_prefix(&format!("{name}=")).map(str::to_string))
}

/// The answer to one request: status, extra header lines, body.
fn answer(state: &Mutex<State>, head: &str) -> (u16, String, Vec<u8>) {
    let line = head.lines().next().unwrap_or_default();
    let target = line.split(' ').nth(1).unwrap_or_default().to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
    };
    let (path, q) = target.split_once('?').unwrap_or((&target, ""));
    let parts: Vec<&str> = path.split('/').collect();
    // (api, series id, token, from, to)
    let (api, id, token, from, to) = match parts.get(1).copied() {
        Some("banxico") => {
            // /banxico/series/<id>/datos/<from>/<to>
            (
                "banxico",
                parts.get(3).unwrap_or(&"").to_string(),
                header("Bmx-Token"),
                parts.get(5).map(|d| days(d)),
                parts.get(6).map(|d| days(d)),
            )
        }
        Some("inegi") => {
            // /inegi/INDICATOR/<id>/es/0700/false/BIE/2.0/<token>
            (
                "inegi",
                parts.get(3).unwrap_or(&"").to_string(),
                parts.get(9).map(|t| t.to_string()),
                None,
                None,
            )
        }
        Some("fred") => (
            "fred",
            query(q, "series_id").unwrap_or_default(),
            query(q, "api_key"),
            query(q, "observation_start").map(|d| days(&d)),
            query(q, "observation_end").map(|d| days(&d)),
        ),
        _ => return (404, String::new(), b"{}".to_vec()),
    };
    let mut st = state.lock().unwrap();
    *st.requests.entry(id.clone()).or_default() += 1;
    if token.as_deref() != Some(TOKEN) {
        return (401, String::new(), br#"{"error":"bad token"}"#.to_vec());
    }
    let scripted = st.script.get_mut(&id).and_then(VecDeque::pop_front);
    if let Some(Scripted::Status(s, retry_after)) = scripted {
        let extra = retry_after.map(|r| format!("Retry-After: {r}\r\n")).unwrap_or_default();
        return (s, extra, br#"{"error":"scripted"}"#.to_vec());
    }
    let rows: Vec<Row> = st
        .series
        .get(&id)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| from.is_none_or(|f| r.day >= f) && to.is_none_or(|t| r.day <= t))
        .collect();
    let body = match api {
        "banxico" => {
            let datos: Vec<Value> = rows
                .iter()
                .map(|r| {
                    let (y, m, d) = cambio::sources::Date(r.day).ymd();
                    serde_json::json!({"fecha": format!("{d:02}/{m:02}/{y:04}"), "dato": r.value.clone().unwrap_or("N/E".into())})
                })
                .collect();
            serde_json::json!({"bmx":{"series":[{"idSerie": id, "titulo": "stand-in", "datos": datos}]}})
        }
        "inegi" => {
            // INEGI lists the newest first.
            let obs: Vec<Value> = rows
                .iter()
                .rev()
                .map(|r| {
                    let (y, m, _) = cambio::sources::Date(r.day).ymd();
                    serde_json::json!({"TIME_PERIOD": format!("{y:04}/{m:02}"), "OBS_VALUE": r.value, "OBS_EXCEPTION": null,
                        "OBS_STATUS": "3", "OBS_SOURCE": "", "OBS_NOTE": "", "COBER_GEO": "00"})
                })
                .collect();
            serde_json::json!({"Header":{"Name":"Indicadores","Email":"","Phone":""},
                "Series":[{"INDICADOR": id, "FREQ": "8", "TOPIC": "", "UNIT": "", "UNIT_MULT": "", "NOTE": "", "SOURCE": "", "LASTUPDATE": "", "STATUS": "", "OBSERVATIONS": obs}]})
        }
        _ => {
            let obs: Vec<Value> = rows
                .iter()
                .map(|r| serde_json::json!({"realtime_start": "2026-11-27", "realtime_end": "2026-11-27", "date": date(r.day), "value": r.value.clone().unwrap_or(".".into())}))
                .collect();
            serde_json::json!({"realtime_start":"2026-11-27","realtime_end":"2026-11-27","units":"lin","count": obs.len(), "observations": obs})
        }
    };
    let mut body = serde_json::to_vec(&body).unwrap();
    if let Some(Scripted::Truncated) = scripted {
        body.truncate(body.len() / 2);
    }
    (200, String::new(), body)
}

/// Rows of a CSV file in ../shared/data from `start`: `date_col` holds `yyyy-mm-dd`, `value_col` the value.
fn csv_rows(file: &str, date_col: usize, value_col: usize, start: &str) -> Vec<Row> {
    let text = std::fs::read_to_string(Path::new(DATA).join(file)).unwrap();
    let start_day = days(start);
    let rows: Vec<Row> = text
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            let day = days(cells.get(date_col)?.trim());
            let v = cells.get(value_col)?.trim();
            (day >= start_day).then(|| Row {
                day,
                value: (!v.is_empty() && v != ".").then(|| v.to_string()),
            })
        })
        .collect();
    // A selection past the end of the file would make every "published them all" check compare 0 with 0.
    assert!(!rows.is_empty(), "{file} has no rows from {start}");
    rows
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run_once(config: &Path, nats: &str) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["sources", "run", "--once", "--nats", nats, "--config"])
        .arg(config)
        .env("BANXICO_TOKEN", TOKEN)
        .env("FRED_KEY", TOKEN)
        .env("INEGI_TOKEN", TOKEN)
        .env("BAD_TOKEN", "wrong")
        .env("RUST_LOG", "info")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(120), out)
        .await
        .expect("sources run ends")
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

/// The summary's row of a source: its cells.
fn summary_row(run: &Run, name: &str) -> Vec<String> {
    run.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no summary row for {name}:\n{}\n{}", run.stdout, run.stderr))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

/// `published` of a source in the summary (columns: source kind status fetched published …).
fn published(run: &Run, name: &str) -> u64 {
    summary_row(run, name)[4].parse().unwrap()
}

fn write_config(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("sources.toml");
    std::fs::write(&p, text).unwrap();
    p
}

/// The stream capturing the ticks and factors, with a de-duplication window of an hour.
async fn fx_stream(js: &jetstream::Context) -> jetstream::stream::Stream {
    js.create_stream(jetstream::stream::Config {
        name: "FX".into(),
        subjects: vec!["fx.ticks.>".into(), "fx.factors.>".into()],
        duplicate_window: Duration::from_secs(3600),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Every message of the stream: subject, Nats-Msg-Id, JSON payload.
async fn stream_messages(stream: &mut jetstream::stream::Stream) -> Vec<(String, String, Value)> {
    let n = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for seq in 1..=n {
        let m = stream.get_raw_message(seq).await.unwrap();
        let id = m
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_string())
            .unwrap_or_default();
        out.push((m.subject.to_string(), id, serde_json::from_slice(&m.payload).unwrap()));
    }
    out
}

async fn stream_count(stream: &mut jetstream::stream::Stream) -> u64 {
    stream.info().await.unwrap().state.messages
}

fn as_f64(v: &Value) -> Option<f64> {
    v.as_f64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_then_nothing_new_then_only_the_new_rows_and_no_duplicates_after_a_wipe() {
    let server = LocalServer::start(true, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut stream = fx_stream(&js).await;
    let api = StandIn::start().await;
    let dir = common::temp_dir("sources-backfill");

    // The real series from the start dates below.
    let mut fix = csv_rows("usdmxn/banxico_fix_SF43718_daily.csv", 0, 1, "2024-01-01");
    let mut dff = csv_rows("covariates/DFF_daily.csv", 0, 1, "2022-01-01");
    let mut inpc = csv_rows("covariates/inegi_inpc_monthly.csv", 2, 3, "2020-01-01");
    assert!(
        fix.len() > 400 && dff.len() > 300 && inpc.len() > 60,
        "the data files are there"
    );
    // A value the source marks not available, one of each kind.
    fix[10].value = None;
    dff[20].value = None;
    inpc[3].value = None;
    // The last five rows of each come later.
    let later = |rows: &mut Vec<Row>| rows.split_off(rows.len() - 5);
    let (fix_later, dff_later, inpc_later) = (later(&mut fix), later(&mut dff), later(&mut inpc));
    api.set("SF43718", fix.clone());
    api.set("DFF", dff.clone());
    api.set("628194", inpc.clone());

    let cfg = write_config(
        &dir,
        &format!(
            r#"
[[source]]
kind = "banxico"
name = "fix"
series = {{ SF43718 = "tick:USDMXN" }}
token_env = "BANXICO_TOKEN"
start = "2024-01-01"
every = "1h"
base_url = "{u}/banxico"

[[source]]
kind = "fred"
name = "dff"
series = {{ DFF = "factor:DFF" }}
token_env = "FRED_KEY"
start = "2022-01-01"
cron = "0 13 * * 1-5"
base_url = "{u}/fred"

[[source]]
kind = "inegi"
name = "inpc"
series = {{ 628194 = "factor:INPC" }}
token_env = "INEGI_TOKEN"
start = "2020-01-01"
every = "1d"
base_url = "{u}/inegi"
"#,
            u = api.url
        ),
    );

    // 1. Backfill: every row from start, in order, values equal to the file's, missing ones as null.
    let run = run_once(&cfg, &server.url()).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let msgs = stream_messages(&mut stream).await;
    assert_eq!(msgs.len(), fix.len() + dff.len() + inpc.len());
    let ticks: Vec<&(String, String, Value)> = msgs.iter().filter(|m| m.0 == "fx.ticks.USDMXN").collect();
    assert_eq!(ticks.len(), fix.len());
    for (m, r) in ticks.iter().zip(&fix) {
        assert_eq!(m.1, format!("banxico-SF43718-{}", date(r.day)), "Nats-Msg-Id");
        assert_eq!(m.2["pair"], "USDMXN");
        assert_eq!(&m.2["ts"].as_str().unwrap()[..10], date(r.day));
        assert_eq!(as_f64(&m.2["mid"]), r.value.as_ref().map(|v| v.parse::<f64>().unwrap()));
        assert!(m.2.get("bid").is_none(), "a fixing is a mid-only tick");
    }
    assert!(ticks[10].2["mid"].is_null(), "N/E is published as a missing value");
    let factors = |name: &str| -> Vec<Value> {
        msgs.iter()
            .filter(|m| m.0 == format!("fx.factors.{name}"))
            .map(|m| m.2.clone())
            .collect()
    };
    let dff_msgs = factors("DFF");
    assert_eq!(dff_msgs.len(), dff.len());
    for (m, r) in dff_msgs.iter().zip(&dff) {
        assert_eq!(&m["ts"].as_str().unwrap()[..10], date(r.day));
        assert_eq!(as_f64(&m["value"]), r.value.as_ref().map(|v| v.parse::<f64>().unwrap()));
    }
    assert!(dff_msgs[20]["value"].is_null(), "`.` is published as a missing value");
    let inpc_msgs = factors("INPC");
    assert_eq!(inpc_msgs.len(), inpc.len());
    for (m, r) in inpc_msgs.iter().zip(&inpc) {
        assert_eq!(
            &m["ts"].as_str().unwrap()[..10],
            date(r.day),
            "in date order although INEGI lists newest first"
        );
        assert_eq!(as_f64(&m["value"]), r.value.as_ref().map(|v| v.parse::<f64>().unwrap()));
    }
    assert!(
        msgs.iter()
            .any(|m| m.1 == format!("inegi-628194-{}", date(inpc[0].day)))
    );
    assert_eq!(summary_row(&run, "fix")[5], "1", "one missing value counted");

    // 2. A second run publishes nothing new.
    let before = stream_count(&mut stream).await;
    let run = run_once(&cfg, &server.url()).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    for name in ["fix", "dff", "inpc"] {
        assert_eq!(published(&run, name), 0, "{}", run.stdout);
    }
    assert_eq!(stream_count(&mut stream).await, before);

    // 3. New rows appear (and, in INEGI's answer, which has no date range, the month after today's): only
    // the new ones are published, the future one is refused with a log line.
    let (y, m, _) = cambio::sources::runner::today(0).ymd();
    let future_day = if m == 12 {
        days(&format!("{:04}-01-01", y + 1))
    } else {
        days(&format!("{y:04}-{:02}-01", m + 1))
    };
    let mut fix_now = fix.clone();
    fix_now.extend(fix_later.iter().cloned());
    api.set("SF43718", fix_now);
    let mut dff_now = dff.clone();
    dff_now.extend(dff_later.iter().cloned());
    api.set("DFF", dff_now);
    let mut inpc_now = inpc.clone();
    inpc_now.extend(inpc_later.iter().cloned());
    inpc_now.push(Row {
        day: future_day,
        value: Some("150.5".into()),
    });
    api.set("628194", inpc_now);
    let run = run_once(&cfg, &server.url()).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(
        (published(&run, "fix"), published(&run, "dff"), published(&run, "inpc")),
        (5, 5, 5),
        "{}",
        run.stdout
    );
    assert_eq!(
        summary_row(&run, "inpc")[6],
        "1",
        "the future date counted: {}",
        run.stdout
    );
    assert!(run.stderr.contains("dated after today refused"), "{}", run.stderr);
    let msgs = stream_messages(&mut stream).await;
    assert_eq!(msgs.len() as u64, before + 15);
    let new_ids: Vec<&str> = msgs[before as usize..].iter().map(|m| m.1.as_str()).collect();
    for r in &fix_later {
        assert!(new_ids.contains(&format!("banxico-SF43718-{}", date(r.day)).as_str()));
    }
    assert!(!msgs.iter().any(|m| m.1 == format!("inegi-628194-{}", date(future_day))));

    // 4. The watermarks are lost: everything is fetched and published again, and the stream's duplicate
    // window drops every copy.
    let total = stream_count(&mut stream).await;
    js.delete_key_value("cambio_sources").await.unwrap();
    let run = run_once(&cfg, &server.url()).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(published(&run, "fix") as usize, fix.len() + 5);
    assert_eq!(
        summary_row(&run, "fix")[7],
        (fix.len() + 5).to_string(),
        "all duplicates: {}",
        run.stdout
    );
    assert_eq!(stream_count(&mut stream).await, total, "no duplicate in the stream");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_or_reported_and_do_not_stop_other_sources() {
    let server = LocalServer::start(true, None).unwrap();
    let client = async_nats::connect(server.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let mut stream = fx_stream(&js).await;
    let api = StandIn::start().await;
    let dir = common::temp_dir("sources-failures");

    let fix = csv_rows("usdmxn/banxico_fix_SF43718_daily.csv", 0, 1, "2025-06-01");
    let dff = csv_rows("covariates/DFF_daily.csv", 0, 1, "2022-12-01");
    let inpc = csv_rows("covariates/inegi_inpc_monthly.csv", 2, 3, "2024-01-01");
    api.set("SF43718", fix.clone());
    api.set("SF60653", fix.clone());
    api.set("DFF", dff.clone());
    api.set("628194", inpc.clone());
    // FRED: rate limited once (Retry-After: 1), then it answers. INEGI: 500 twice, then it answers.
    // Banxico SF60653: a body cut in half.
    api.script("DFF", &[Scripted::Status(429, Some(1))]);
    api.script("628194", &[Scripted::Status(500, None), Scripted::Status(500, None)]);
    api.script("SF60653", &[Scripted::Truncated]);
    let cfg = write_config(
        &dir,
        &format!(
            r#"
[[source]]
kind = "banxico"
name = "badtoken"
series = {{ SF43718 = "tick:USDMXN" }}
token_env = "BAD_TOKEN"
start = "2025-06-01"
every = "1h"
base_url = "{u}/banxico"
backoff = "10ms"

[[source]]
kind = "banxico"
name = "truncated"
series = {{ SF60653 = "factor:FIX2" }}
token_env = "BANXICO_TOKEN"
start = "2025-06-01"
every = "1h"
base_url = "{u}/banxico"
backoff = "10ms"

[[source]]
kind = "fred"
name = "dff"
series = {{ DFF = "factor:DFF" }}
token_env = "FRED_KEY"
start = "2022-12-01"
every = "1h"
base_url = "{u}/fred"
backoff = "10ms"

[[source]]
kind = "inegi"
name = "inpc"
series = {{ 628194 = "factor:INPC" }}
token_env = "INEGI_TOKEN"
start = "2024-01-01"
every = "1h"
base_url = "{u}/inegi"
backoff = "10ms"
"#,
            u = api.url
        ),
    );
    let run = run_once(&cfg, &server.url()).await;
    assert_eq!(run.code, 1, "a source failed: {}\n{}", run.stdout, run.stderr);
    // 401: a clear error naming the source and the variable, not retried.
    assert_eq!(api.requests("SF43718"), 1, "a refused token is not retried");
    assert!(
        run.stdout.contains(
            "badtoken: source badtoken: the API refused the token (HTTP 401); check the environment variable BAD_TOKEN"
        ),
        "{}",
        run.stdout
    );
    assert_eq!(summary_row(&run, "badtoken")[2], "failed");
    assert_eq!(summary_row(&run, "badtoken")[9], "unauthorized=1");
    // Truncated body: a clear error, nothing published.
    assert_eq!(summary_row(&run, "truncated")[9], "invalid_body=1", "{}", run.stdout);
    assert!(run.stdout.contains("invalid response body"), "{}", run.stdout);
    // 429 then success; 500 twice then success: retried, everything published.
    assert_eq!(api.requests("DFF"), 2);
    assert_eq!(api.requests("628194"), 3);
    assert_eq!(summary_row(&run, "dff")[2], "ok");
    assert_eq!(summary_row(&run, "dff")[8], "1", "one retry");
    assert_eq!(summary_row(&run, "inpc")[8], "2", "two retries");
    assert_eq!(published(&run, "dff") as usize, dff.len());
    assert_eq!(published(&run, "inpc") as usize, inpc.len());
    assert_eq!(stream_count(&mut stream).await as usize, dff.len() + inpc.len());
    // The failed sources' watermarks did not move: fixed, they backfill everything.
    api.set("SF43718", fix.clone());
    let fixed = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("BAD_TOKEN", "BANXICO_TOKEN");
    std::fs::write(&cfg, fixed).unwrap();
    let run = run_once(&cfg, &server.url()).await;
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert_eq!(published(&run, "badtoken") as usize, fix.len());
    assert_eq!(published(&run, "truncated") as usize, fix.len());
    assert_eq!(published(&run, "dff"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_config_exits_2_and_names_the_source() {
    let dir = common::temp_dir("sources-config");
    let cfg = write_config(
        &dir,
        "[[source]]\nkind = \"banxico\"\nseries = { SF43718 = \"tick:usd\" }\ntoken_env = \"T\"\nstart = \"2024-01-01\"\nevery = \"1h\"\n",
    );
    let run = run_once(&cfg, "nats://127.0.0.1:1").await;
    assert_eq!(run.code, 2);
    assert!(
        run.stderr.contains("source banxico#1: series SF43718"),
        "{}",
        run.stderr
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_schedule_with_metrics_until_sigterm() {
    let server = LocalServer::start(true, None).unwrap();
    let api = StandIn::start().await;
    let dir = common::temp_dir("sources-metrics");
    let dff = csv_rows("covariates/DFF_daily.csv", 0, 1, "2022-12-01");
    api.set("DFF", dff.clone());
    api.script("DFF", &[Scripted::Status(503, None)]);
    let cfg = write_config(
        &dir,
        &format!(
            "[[source]]\nkind = \"fred\"\nname = \"dff\"\nseries = {{ DFF = \"factor:DFF\" }}\ntoken_env = \"FRED_KEY\"\n\
             start = \"2022-12-01\"\nevery = \"1h\"\nbase_url = \"{}/fred\"\nbackoff = \"10ms\"\n",
            api.url
        ),
    );
    let addr = format!("127.0.0.1:{}", common::free_port());
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args([
            "sources",
            "run",
            "--nats",
            &server.url(),
            "--metrics",
            &addr,
            "--config",
        ])
        .arg(&cfg)
        .env("FRED_KEY", TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://{addr}/metrics");
    let labels = [("source", "dff"), ("kind", "fred")];
    // The run's counters move as it goes and `up` is set when it ends: wait for the end of the first run.
    let text = common::metrics_until(&url, Duration::from_secs(30), "the backfill published", |t| {
        common::metric(t, "cambio_source_published_total", &labels) == Some(dff.len() as f64)
            && common::metric(t, "cambio_source_runs_total", &labels) == Some(1.0)
            && common::metric(t, "cambio_source_up", &labels) == Some(1.0)
    })
    .await;
    assert_eq!(common::metric(&text, "cambio_source_retries_total", &labels), Some(1.0));
    assert_eq!(common::metric(&text, "cambio_source_up", &labels), Some(1.0));
    assert_eq!(common::metric(&text, "cambio_source_runs_total", &labels), Some(1.0));
    common::promtool_check_metrics(&text);
    // Still running on its schedule; SIGTERM stops it with status 0.
    let pid = child.id().unwrap();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits on SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
