//! The monitoring shipped in `deploy/`, tested with the real tools: promtool validates the scrape
//! configuration and the alert rules and runs the rules' unit tests; every metric the Grafana dashboard and
//! the rules name exists in the `/metrics` of a real `cambio serve` fed a scenario over NATS; and a real
//! Prometheus server scraping that service reports what cambio itself published (forecast count, quality
//! score, tick latency quantile) and evaluates the shipped rules without error.
//!
//! promtool and prometheus come from Debian's `prometheus` package (`scripts/test.sh` installs it); when
//! they are missing these tests fail saying so, they never skip.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use cambio::nats::LocalServer;
use serde_json::Value;

mod common;
use common::*;

const SCRAPE_CONFIG: &str = "deploy/prometheus/prometheus.yml";
const ALERTS: &str = "deploy/prometheus/alerts.yml";
const ALERTS_TEST: &str = "deploy/prometheus/alerts_test.yml";
const DASHBOARD: &str = "deploy/grafana/cambio.json";

/// 4,822 daily USD/MXN fixings with drift alarms in 2008 and 2020: a few thousand real ticks.
const SCENARIO: &str = "scenarios/usdmxn_ecb_daily";
const PAIR: &str = "USDMXN";

/// A key for masking business clients (never a real one).
const MASK_KEY: &str = "monitoring-test-mask-key-0123456789";

/// Runs a Prometheus tool, failing clearly when it is not installed.
fn run_tool(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "cannot run `{tool}` ({e}): install Debian's prometheus package (`apt-get install prometheus`, which \
             scripts/test.sh does) so that promtool and prometheus are on PATH"
        )
    })
}

fn promtool(args: &[&str]) {
    let out = run_tool("promtool", args);
    assert!(
        out.status.success(),
        "promtool {}: {}\n{}{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn scrape_config_is_valid() {
    promtool(&["check", "config", SCRAPE_CONFIG]);
}

#[test]
fn alert_rules_are_valid() {
    promtool(&["check", "rules", ALERTS]);
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    promtool(&["test", "rules", ALERTS_TEST]);
}

/// The alert names defined in the rule file.
fn alert_names(rules: &str) -> BTreeSet<String> {
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert:"))
        .map(|n| n.trim().to_string())
        .collect()
}

/// Every alert has a unit test case where it fires and one where it must not.
#[test]
fn every_alert_has_a_firing_and_a_quiet_test_case() {
    let rules = std::fs::read_to_string(ALERTS).unwrap();
    let tests = std::fs::read_to_string(ALERTS_TEST).unwrap();
    let names = alert_names(&rules);
    assert!(names.len() >= 12, "alert rules: {names:?}");
    let lines: Vec<&str> = tests.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    let mut firing = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(name) = l.strip_prefix("alertname:") {
            let next = lines.get(i + 1).copied().unwrap_or_default();
            let set = if next == "exp_alerts: []" {
                &mut quiet
            } else {
                &mut firing
            };
            set.insert(name.trim().to_string());
        }
    }
    let never_fires: Vec<_> = names.difference(&firing).collect();
    let never_quiet: Vec<_> = names.difference(&quiet).collect();
    assert!(never_fires.is_empty(), "alerts no test makes fire: {never_fires:?}");
    assert!(
        never_quiet.is_empty(),
        "alerts with no case that must not fire: {never_quiet:?}"
    );
    let unknown: Vec<_> = firing.union(&quiet).filter(|n| !names.contains(*n)).collect();
    assert!(unknown.is_empty(), "tests of alerts that do not exist: {unknown:?}");
    // Each alert says how bad (severity) and what happened (summary and description).
    for block in rules.split("- alert:").skip(1) {
        for key in ["for:", "severity:", "summary:", "description:"] {
            assert!(block.contains(key), "an alert without {key}: {block}");
        }
    }
}

/// The dashboard is Grafana JSON with the `$pair` and `$horizon` variables and a Prometheus datasource
/// input; every panel has a title, a unit and queries on that datasource.
#[test]
fn dashboard_is_grafana_json_with_titles_and_units() {
    let text = std::fs::read_to_string(DASHBOARD).unwrap();
    let d: Value = serde_json::from_str(&text).expect("cambio.json is JSON");
    assert!(d["schemaVersion"].as_u64().unwrap() >= 36, "schemaVersion");
    assert_eq!(d["__inputs"][0]["name"], "DS_PROMETHEUS");
    assert_eq!(d["__inputs"][0]["pluginId"], "prometheus");
    let vars: BTreeMap<&str, &Value> = d["templating"]["list"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["name"].as_str().unwrap(), v))
        .collect();
    assert_eq!(
        vars["pair"]["definition"],
        "label_values(cambio_ticks_received_total, pair)"
    );
    assert!(vars["horizon"]["definition"].as_str().unwrap().contains("horizon"));
    let mut ids = BTreeSet::new();
    let mut queries = 0;
    let mut rows = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap_or_default();
        assert!(!title.is_empty(), "a panel without a title: {p}");
        assert!(ids.insert(p["id"].as_u64().unwrap()), "panel id repeated: {title}");
        let g = &p["gridPos"];
        assert!(
            g["x"].as_u64().unwrap() + g["w"].as_u64().unwrap() <= 24,
            "{title} is wider than the grid"
        );
        if p["type"] == "row" {
            rows.push(title.to_string());
            continue;
        }
        let unit = p["fieldConfig"]["defaults"]["unit"].as_str().unwrap_or_default();
        assert!(!unit.is_empty(), "panel {title} has no unit");
        assert_eq!(p["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {title}");
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {title} has no query");
        for t in targets {
            assert!(
                !t["expr"].as_str().unwrap_or_default().is_empty(),
                "panel {title}: empty query"
            );
            assert_eq!(t["datasource"]["uid"], "${DS_PROMETHEUS}", "panel {title}");
            queries += 1;
        }
    }
    assert!(queries >= 40, "{queries} queries");
    for theme in [
        "Price",
        "Quality",
        "Drift",
        "Accuracy",
        "Latency",
        "Business",
        "Infrastructure",
    ] {
        assert!(rows.iter().any(|r| r.contains(theme)), "no row for {theme}: {rows:?}");
    }
}

/// Every `cambio_…` identifier in a text (a metric name in a query, or one an annotation points to).
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let is_name = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_';
    let mut names = BTreeSet::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("cambio_") {
        let start = i + at;
        let mut end = start + "cambio_".len();
        while end < bytes.len() && is_name(bytes[end]) {
            end += 1;
        }
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        if boundary && end > start + "cambio_".len() {
            names.insert(text[start..end].to_string());
        }
        i = end;
    }
    names
}

/// A `/metrics` exposition: the names of its samples, and each family's type.
struct Exposition {
    samples: BTreeSet<String>,
    types: BTreeMap<String, String>,
}

impl Exposition {
    fn parse(text: &str) -> Exposition {
        let mut samples = BTreeSet::new();
        let mut types = BTreeMap::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut parts = rest.split_whitespace();
                if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                    types.insert(name.to_string(), kind.to_string());
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap_or(line.len());
                samples.insert(line[..end].to_string());
            }
        }
        Exposition { samples, types }
    }

    /// Whether a name used in a query has samples: a counter's `_total`, a gauge, an info metric's
    /// `_info`, or a histogram's `_bucket`/`_sum`/`_count` series (of a family typed histogram).
    fn has(&self, name: &str) -> bool {
        if !self.samples.contains(name) {
            return false;
        }
        for suffix in ["_bucket", "_sum", "_count"] {
            if let Some(family) = name.strip_suffix(suffix)
                && let Some(kind) = self.types.get(family)
            {
                return kind == "histogram" || (kind == "summary" && suffix != "_bucket");
            }
        }
        true
    }
}

#[test]
fn metric_names_are_read_with_their_suffixes() {
    let text = "# TYPE cambio_tick_latency_seconds histogram\n\
                cambio_tick_latency_seconds_bucket{pair=\"USDMXN\",le=\"0.001\"} 3\n\
                cambio_tick_latency_seconds_sum{pair=\"USDMXN\"} 0.001\n\
                cambio_tick_latency_seconds_count{pair=\"USDMXN\"} 3\n\
                # TYPE cambio_forecasts_published counter\n\
                cambio_forecasts_published_total{pair=\"USDMXN\"} 3\n\
                # TYPE cambio_pairs gauge\n\
                cambio_pairs 1\n# TYPE cambio_checkpoints counter\n# EOF\n";
    let e = Exposition::parse(text);
    for name in [
        "cambio_tick_latency_seconds_bucket",
        "cambio_tick_latency_seconds_count",
        "cambio_forecasts_published_total",
        "cambio_pairs",
    ] {
        assert!(e.has(name), "{name}");
    }
    for name in [
        "cambio_tick_latency_seconds",
        "cambio_forecasts_published",
        "cambio_checkpoints_total",
        "cambio_pairs_bucket",
    ] {
        assert!(!e.has(name), "{name}");
    }
    let used = metric_names_in(
        "histogram_quantile(0.99, sum by (le) (rate(cambio_tick_latency_seconds_bucket{pair=~\"$pair\"}[5m]))) \
         / xcambio_no + cambio_pairs",
    );
    assert_eq!(
        used.into_iter().collect::<Vec<_>>(),
        vec!["cambio_pairs", "cambio_tick_latency_seconds_bucket"]
    );
}

/// A child process killed (and reaped) on drop; its log is printed when a test fails.
struct Guard {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- {} log ---\n{}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// A `cambio serve` with its metrics endpoint, against a nats-server started for the test.
struct Stack {
    // Dropped in this order: the service first, then its server.
    serve: Serve,
    client: async_nats::Client,
    http: reqwest::Client,
    metrics: String,
    dir: PathBuf,
    _server: LocalServer,
}

/// The serve configuration: fast reports, checkpoints and a challenger so that every metric of the
/// catalogue has series, and an accuracy window long enough for daily fixings.
const SERVE_CONFIG: &str = r#"
[serve]
report_interval_secs = 0.2

[metrics]
accuracy_window_secs = 31536000
instances_every_secs = 1

[checkpoint]
every_secs = 0.2

[challenger]
enabled = true
window = 500
rollback = true

[challenger.engine]
horizons = ["1step", "5step", "1w"]

[challenger.engine.model]
name = "cambio-fast"
forgetting = 0.995
"#;

impl Stack {
    async fn start(name: &str) -> Stack {
        let dir = temp_dir(name);
        let server = LocalServer::start(false, None).expect("nats-server (see tests/common/mod.rs)");
        let metrics = format!("127.0.0.1:{}", free_port());
        let checkpoint = dir.join("cambio.redb");
        let serve = Serve::start_with_env(
            &server.url(),
            SERVE_CONFIG,
            &dir,
            &[
                "--scenario",
                SCENARIO,
                "--metrics",
                &metrics,
                "--checkpoint",
                checkpoint.to_str().unwrap(),
            ],
            &[("CAMBIO_MASK_KEY", MASK_KEY)],
        );
        let client = async_nats::connect(server.url()).await.unwrap();
        wait_ready(&client, &serve).await;
        let stack = Stack {
            serve,
            client,
            http: cambio::sources::http::client(),
            metrics,
            dir,
            _server: server,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while stack.get("/healthz").await.map(|(code, _)| code) != Some(200) {
            assert!(
                Instant::now() < deadline,
                "no /healthz on {}:\n{}",
                stack.metrics,
                stack.serve.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stack
    }

    /// GET on the metrics endpoint: status and body, or None when it does not answer.
    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let r = self
            .http
            .get(format!("http://{}{path}", self.metrics))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().await.ok()?))
    }

    async fn scrape(&self) -> String {
        let (code, body) = self.get("/metrics").await.expect("/metrics answers");
        assert_eq!(code, 200, "{body}");
        body
    }

    /// Publishes the scenario's ticks with `cambio replay --nats` (the operators' tool), as fast as
    /// possible or at `speed` (`40000000x`), and waits until the service has taken all of them; the status
    /// reply then.
    async fn feed_scenario(&self, speed: Option<&str>) -> Value {
        let url = self.nats_url();
        let mut args = vec!["replay", SCENARIO, "--nats", url.as_str()];
        if let Some(speed) = speed {
            args.extend(["--speed", speed]);
        }
        let out = Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "cambio replay --nats: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let ticks = scenario_ticks();
        status_until(
            &self.client,
            PAIR,
            &self.serve,
            Duration::from_secs(120),
            "every tick",
            |s| s["ticks"].as_u64() == Some(ticks),
        )
        .await
    }

    fn nats_url(&self) -> String {
        self._server.url()
    }

    async fn stats(&self) -> Value {
        request(&self.client, "$SRV.STATS.cambio", "").await.1
    }
}

/// Ticks in the scenario's data file (one a line after the header).
fn scenario_ticks() -> u64 {
    let text = std::fs::read_to_string(Path::new(SCENARIO).join("ticks.csv")).unwrap();
    text.lines().skip(1).filter(|l| !l.trim().is_empty()).count() as u64
}

/// Business deal events for the pair: 50 clients offered a rate in each segment (one outside the
/// configured list, so counted as `other`), of whom most accept, except in `sme`, where few do: enough for
/// every business figure, including a disparity alarm.
fn business_events() -> Vec<String> {
    let mut events = Vec::new();
    let mut second = 0;
    for segment in ["retail", "sme", "corporate", "private_bank"] {
        let accepting = if segment == "sme" { 5 } else { 40 };
        for k in 0..50 {
            let client = format!("C-{segment}-{k}");
            let outcome = if k < accepting { "accepted" } else { "rejected" };
            for event in ["offered", outcome] {
                second += 1;
                events.push(format!(
                    r#"{{"ts":"2026-03-02T10:{:02}:{:02}Z","client":"{client}","event":"{event}","rate":18.{:04},"amount":{},"currency":"USD","segment":"{segment}"}}"#,
                    second / 60,
                    second % 60,
                    9000 + k,
                    10_000 + 100 * k
                ));
            }
        }
    }
    events
}

/// The `cambio_…` names the dashboard and the alert rules use, each with the file that uses it first;
/// the business ones or the others.
fn used_metric_names(business: bool) -> BTreeMap<String, &'static str> {
    let mut used = BTreeMap::new();
    for file in [DASHBOARD, ALERTS] {
        for name in metric_names_in(&std::fs::read_to_string(file).unwrap()) {
            if name.starts_with("cambio_business_") == business {
                used.entry(name).or_insert(file);
            }
        }
    }
    used
}

/// Waits (bounded: counters and checkpoints settle within a few report intervals) until every name in
/// `used` has samples in the stack's `/metrics`; fails listing those that never appear.
async fn assert_exported(stack: &Stack, used: &BTreeMap<String, &'static str>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let body = stack.scrape().await;
        let exposition = Exposition::parse(&body);
        let missing: Vec<String> = used
            .iter()
            .filter(|(name, _)| !exposition.has(name))
            .map(|(name, file)| format!("{name} ({file})"))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "metrics used by the dashboard or the rules but absent from /metrics:\n  {}\n--- /metrics ---\n{body}",
            missing.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every metric the dashboard and the alert rules name (besides the business ones) has samples in a real
/// `/metrics` of `cambio serve` that has served a scenario, answered queries, quarantined a tick, run a
/// challenger and checkpointed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_and_rules_use_only_metrics_cambio_exports() {
    let used = used_metric_names(false);
    assert!(used.len() >= 50, "names used: {used:?}");
    let stack = Stack::start("monitoring-names").await;
    // Paced (18 years in about 15 s): the rolling accuracy window is refreshed with the pair's status, a
    // few times a second, so a feed at full speed would leave it a single refresh and no window.
    stack.feed_scenario(Some("40000000x")).await;
    let c = &stack.client;
    // A quarantined tick, a message on a subject that names no pair, and a request to every endpoint, one
    // of them an error.
    c.publish(format!("fx.ticks.{PAIR}"), Bytes::from_static(b"not a tick"))
        .await
        .unwrap();
    c.publish("fx.ticks.NOT-A-PAIR", Bytes::from_static(b"{}"))
        .await
        .unwrap();
    c.flush().await.unwrap();
    for subject in ["fx.query", "fx.status", "fx.models"] {
        request_message(c, &format!("{subject}.{PAIR}"), "").await;
    }
    let (is_err, _) = request(c, "fx.query.EURJPY", "").await;
    assert!(is_err, "a query for a pair never served is an error");
    assert_exported(&stack, &used).await;
    let _ = std::fs::remove_dir_all(&stack.dir);
}

/// Every business metric the dashboard and the rules name has samples once `cambio serve` has taken deal
/// events (one malformed) for a pair it forecasts and answered a business stats request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn business_panels_use_only_metrics_cambio_exports() {
    let used = used_metric_names(true);
    assert!(used.len() >= 10, "names used: {used:?}");
    let stack = Stack::start("monitoring-business").await;
    stack.feed_scenario(None).await;
    let c = &stack.client;
    for e in business_events() {
        c.publish(format!("fx.business.{PAIR}"), Bytes::from(e)).await.unwrap();
    }
    c.publish(format!("fx.business.{PAIR}"), Bytes::from_static(b"{\"event\":"))
        .await
        .unwrap();
    c.flush().await.unwrap();
    request_message(c, &format!("fx.business.stats.{PAIR}"), "").await;
    assert_exported(&stack, &used).await;
    let _ = std::fs::remove_dir_all(&stack.dir);
}

/// Percent-encoding of a query-string value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A `prometheus` server on a free loopback port, scraping one target every second with the shipped
/// alert rules loaded.
struct Prometheus {
    base: String,
    http: reqwest::Client,
    _guard: Guard,
}

impl Prometheus {
    fn start(dir: &Path, target: &str) -> Prometheus {
        let rules = std::fs::canonicalize(ALERTS).unwrap();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
                 scrape_configs:\n  - job_name: cambio\n    scrape_interval: 1s\n    scrape_timeout: 1s\n    \
                 static_configs:\n      - targets: [\"{target}\"]\n",
                rules.display()
            ),
        )
        .unwrap();
        let port = free_port();
        let log = dir.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", dir.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run `prometheus` ({e}): install Debian's prometheus package (`apt-get install \
                     prometheus`, which scripts/test.sh does)"
                )
            });
        Prometheus {
            base: format!("http://127.0.0.1:{port}"),
            http: cambio::sources::http::client(),
            _guard: Guard {
                child,
                name: "prometheus",
                log,
            },
        }
    }

    async fn get(&self, path: &str) -> Option<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .timeout(Duration::from_secs(10))
            .send()
            .await
            .ok()?;
        serde_json::from_str(&r.text().await.ok()?).ok()
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .http
                .get(format!("{}/-/ready", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return;
            }
            assert!(Instant::now() < deadline, "prometheus not ready at {}", self.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// An instant query's result vector.
    async fn query(&self, promql: &str) -> Vec<Value> {
        let v = self
            .get(&format!("/api/v1/query?query={}", urlencode(promql)))
            .await
            .unwrap_or_else(|| panic!("no answer from prometheus to {promql}"));
        assert_eq!(v["status"], "success", "{promql}: {v}");
        v["data"]["result"].as_array().cloned().unwrap_or_default()
    }

    /// The single value of an instant query.
    async fn value(&self, promql: &str) -> f64 {
        let r = self.query(promql).await;
        assert_eq!(r.len(), 1, "{promql}: {r:?}");
        sample(&r[0])
    }

    /// Waits (bounded) until `promql` returns a value for which `done` holds.
    async fn until(&self, promql: &str, what: &str, timeout: Duration, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + timeout;
        loop {
            let r = self.query(promql).await;
            if let Some(v) = r.first().map(sample)
                && done(v)
            {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus never showed {what} ({promql}: {r:?})"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// The value of an instant-vector sample (`"value": [ts, "v"]`).
fn sample(r: &Value) -> f64 {
    r["value"][1].as_str().unwrap().parse().unwrap()
}

fn now_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// A real Prometheus scrapes a `cambio serve` fed a scenario over NATS: its forecast count equals the
/// forecasts cambio published on `fx.pred.<PAIR>`, its quality scores equal the status reply's, its tick
/// latency p99 lies in the histogram bucket of STATS' p99, and the shipped rules evaluate on the real
/// series (the scenario's drift alarms fire `CambioDriftAlarm`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_serve_and_agrees_with_what_it_published() {
    let stack = Stack::start("monitoring-prometheus").await;
    let prometheus = Prometheus::start(&stack.dir, &stack.metrics);
    prometheus.wait_ready().await;
    prometheus
        .until("up{job=\"cambio\"}", "cambio up", Duration::from_secs(60), |v| v == 1.0)
        .await;

    let mut forecasts = stack.client.subscribe(format!("fx.pred.{PAIR}")).await.unwrap();
    stack.client.flush().await.unwrap();
    let status = stack.feed_scenario(None).await;
    let stats = stack.stats().await;
    let published = stats["data"]["counters"]["forecasts"].as_u64().unwrap();
    let received = collect(&mut forecasts, published as usize, Duration::from_secs(60)).await;
    assert_eq!(received.len() as u64, published, "forecasts received on fx.pred.{PAIR}");
    assert!(published > 1_000, "{published} forecasts");

    // Everything is processed: wait for a scrape that happened after this point.
    let processed = now_secs() + 0.5;
    prometheus
        .until(
            "timestamp(up{job=\"cambio\"})",
            "a scrape after the last tick",
            Duration::from_secs(60),
            |t| t > processed,
        )
        .await;

    let count = prometheus
        .value(&format!(
            "cambio_forecasts_published_total{{job=\"cambio\",pair=\"{PAIR}\"}}"
        ))
        .await;
    assert_eq!(count, received.len() as f64, "forecast count in prometheus");
    let ticks = prometheus
        .value(&format!("cambio_ticks_received_total{{pair=\"{PAIR}\"}}"))
        .await;
    assert_eq!(ticks, scenario_ticks() as f64, "ticks received in prometheus");

    // Quality: every dimension's score equals the status reply's.
    let dimensions = status["quality"]["dimensions"].as_array().unwrap();
    assert!(!dimensions.is_empty());
    for d in dimensions {
        let name = d["name"].as_str().unwrap();
        let expected = d["score"].as_f64().unwrap();
        let got = prometheus
            .value(&format!("cambio_quality_score{{pair=\"{PAIR}\",dimension=\"{name}\"}}"))
            .await;
        assert!(
            (got - expected).abs() <= 1e-12,
            "quality {name}: prometheus {got}, status {expected}"
        );
    }

    // Latency: Prometheus' p99 over every tick lies in the bucket that holds STATS' p99 (the histogram's
    // resolution), and both count the same ticks.
    let latency = &stats["data"]["tick_to_forecast"];
    let stats_p99 = latency["p99_us"].as_f64().unwrap() / 1e6;
    let bucket = format!("cambio_tick_latency_seconds_bucket{{pair=\"{PAIR}\"}}");
    let mut bounds: Vec<f64> = prometheus
        .query(&bucket)
        .await
        .iter()
        .map(|r| r["metric"]["le"].as_str().unwrap().parse::<f64>().unwrap())
        .collect();
    bounds.sort_by(f64::total_cmp);
    assert!(bounds.len() > 4, "latency buckets: {bounds:?}");
    let count = prometheus
        .value(&format!("cambio_tick_latency_seconds_count{{pair=\"{PAIR}\"}}"))
        .await;
    assert_eq!(
        count,
        latency["count"].as_f64().unwrap(),
        "ticks timed: prometheus and STATS"
    );
    let p99 = prometheus
        .value(&format!("histogram_quantile(0.99, sum by (le) ({bucket}))"))
        .await;
    // STATS keeps 3 significant digits: its p99 may sit a hair over a bound.
    let lower = bounds
        .iter()
        .rev()
        .find(|&&b| b < stats_p99 * 0.999)
        .copied()
        .unwrap_or(0.0);
    let upper = bounds
        .iter()
        .find(|&&b| b >= stats_p99 * 1.001)
        .copied()
        .unwrap_or(f64::INFINITY);
    assert!(
        lower <= p99 && p99 <= upper,
        "prometheus p99 {p99} s outside [{lower}, {upper}], the bucket of STATS' p99 {stats_p99} s"
    );

    // The shipped rules evaluate on the real series without error, and the scenario's alarms fire one.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = prometheus.get("/api/v1/rules").await.expect("rules");
        let rules: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        assert!(rules.len() >= 12, "rules loaded: {v}");
        let bad: Vec<String> = rules
            .iter()
            .filter(|r| r["health"] == "err")
            .map(|r| format!("{}: {}", r["name"], r["lastError"]))
            .collect();
        assert!(bad.is_empty(), "rules failing on the real series: {bad:?}");
        if rules.iter().all(|r| r["health"] == "ok") {
            break;
        }
        assert!(Instant::now() < deadline, "rules never all evaluated: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Every query of the dashboard is PromQL this Prometheus runs, and the panels of the pair's price,
    // quality, drift and latency show data (rates need two samples of the pair's series).
    prometheus
        .until(
            &format!("count_over_time(cambio_ticks_received_total{{pair=\"{PAIR}\"}}[5m])"),
            "two samples of the pair",
            Duration::from_secs(30),
            |n| n >= 2.0,
        )
        .await;
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(DASHBOARD).unwrap()).unwrap();
    let mut empty = BTreeSet::new();
    let mut shown = BTreeSet::new();
    for p in dashboard["panels"].as_array().unwrap() {
        let title = p["title"].as_str().unwrap();
        for t in p["targets"].as_array().into_iter().flatten() {
            let expr = t["expr"]
                .as_str()
                .unwrap()
                .replace("$pair", PAIR)
                .replace("$horizon", ".*")
                .replace("$period", ".*");
            if prometheus.query(&expr).await.is_empty() {
                empty.insert(title);
            } else {
                shown.insert(title);
            }
        }
    }
    for title in [
        "Mid price and forecast bands ($horizon)",
        "Forecasts published per second",
        "Quality score by dimension",
        "Drift statistic and threshold",
        "Tick latency p50 / p99",
        "Resident memory",
        "Instances",
    ] {
        assert!(shown.contains(title), "panel {title} shows nothing; empty: {empty:?}");
    }

    assert!(
        status["alarms_total"].as_u64().unwrap() > 0,
        "the scenario raises drift alarms"
    );
    prometheus
        .until(
            &format!("ALERTS{{alertname=\"CambioDriftAlarm\",alertstate=\"firing\",pair=\"{PAIR}\"}}"),
            "CambioDriftAlarm firing",
            Duration::from_secs(30),
            |v| v == 1.0,
        )
        .await;
    for quiet in [
        "CambioNotReady",
        "CambioNatsDisconnected",
        "CambioInstanceDown",
        "CambioQualityFail",
    ] {
        let firing = prometheus.query(&format!("ALERTS{{alertname=\"{quiet}\"}}")).await;
        assert!(firing.is_empty(), "{quiet} on a healthy service: {firing:?}");
    }
    drop(prometheus);
    let _ = std::fs::remove_dir_all(&stack.dir);
}
