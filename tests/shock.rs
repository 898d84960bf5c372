//! The shock detector (issue 12, points 1 and 6):
//! - a move of many reference sigmas raises a `shock` alarm within two observations of its start, at one
//!   tick a second, on 10-minute bars and on daily fixings alike;
//! - served, that alarm is published on `fx.alert.<PAIR>`, byte for byte as the replay makes it (a real
//!   nats-server on a free loopback port);
//! - the daily USD/MXN histories, replayed with the default engine configuration (only the pair and the
//!   data, no detector tuning), raise alarms within three trading days of October 2008, 9 November 2016
//!   and March 2020.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use cambio::drift::ShockConfig;
use cambio::engine::Output;
use cambio::nats::LocalServer;
use cambio::replay::{self, ReplayOptions, Scenario};

mod common;
use common::*;

/// A calm Gaussian stream spaced `interval_ms` apart with one-step volatility `vol`, then 12 steps of
/// `k(spacing)` reference sigmas each from observation 500: a shock whatever the spacing. Returns whether
/// a `shock` alarm fell on observation 500 or 501, and the alarms.
fn ramp_alarm(interval_ms: u64, vol: f64) -> (bool, Vec<String>) {
    let k = ShockConfig::default().threshold(interval_ms as f64 / 1e3);
    let start_us: i64 = 1_704_067_200_000_000; // 2024-01-01T00:00:00Z
    let at = |i: i64| start_us + i * interval_ms as i64 * 1000;
    let fmt = cambio::time::format_ts;
    let text = format!(
        "name = \"ramp\"\npair = \"USDMXN\"\n[synthetic]\nseed = 7\nticks = 540\ninterval_ms = {interval_ms}\n\
         vol = {vol}\nstudent_t_df = 0\ngarch = false\n\
         events = [{{ kind = \"ramp\", at = 500, len = 12, size = {} }}]\n\
         [[expect]]\nkind = \"alarm_between\"\nfrom = \"{}\"\nto = \"{}\"\ndetector = \"shock\"\n",
        12.0 * k * vol,
        fmt(at(500)),
        fmt(at(501)),
    );
    let scenario = Scenario::parse(&text, PathBuf::new()).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let report = replay::replay_scenario(&scenario, None, ReplayOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let alarms = report
        .alarms
        .iter()
        .map(|a| format!("{} {}", a.ts, a.detector))
        .collect();
    (report.passed, alarms)
}

#[test]
fn a_shock_alarms_within_two_observations_whatever_the_spacing() {
    for (interval_ms, vol) in [(1_000, 1e-4), (600_000, 5e-4), (86_400_000, 6e-3)] {
        let (passed, alarms) = ramp_alarm(interval_ms, vol);
        assert!(
            passed,
            "spacing {interval_ms} ms: no shock alarm on observation 500 or 501: {alarms:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_served_shock_alarm_is_published_on_the_alert_subject() {
    let scenario_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/event_shock_10min");
    let server = LocalServer::start(false, None).unwrap_or_else(|e| panic!("{e}"));
    let dir = temp_dir("shock");
    let serve = Serve::start_with(
        &server.url(),
        "",
        &dir,
        &["--scenario", &scenario_dir.display().to_string()],
    );
    let client = async_nats::connect(server.url())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    wait_ready(&client, &serve).await;
    let mut alerts = client
        .subscribe("fx.alert.USDMXN")
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    client.flush().await.unwrap_or_else(|e| panic!("{e}"));

    // In process: the alerts the live service must publish.
    let scenario = Scenario::load(&scenario_dir).unwrap_or_else(|e| panic!("{e}"));
    let sink = std::sync::Arc::new(std::sync::Mutex::new(Vec::<Vec<u8>>::new()));
    let s2 = sink.clone();
    let opts = ReplayOptions {
        observer: Some(Box::new(move |o: &Output| {
            if let Output::Alarm(_) | Output::Adapted(_) = o
                && let Ok(mut g) = s2.lock()
            {
                g.push(serde_json::to_vec(o).unwrap_or_default());
            }
        })),
        ..Default::default()
    };
    let report = replay::replay_scenario(&scenario, None, opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(report.passed, "the scenario's own expectations");
    let want = sink.lock().map(|g| g.clone()).unwrap_or_default();
    let shock = want
        .iter()
        .position(|a| serde_json::from_slice::<serde_json::Value>(a).is_ok_and(|v| v["detector"] == "shock"))
        .expect("a shock alarm in process");

    let status = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args([
            "replay",
            &scenario_dir.display().to_string(),
            "--nats",
            &server.url(),
            "--max",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(status.success());
    let live: Vec<Vec<u8>> = collect(&mut alerts, want.len(), Duration::from_secs(30))
        .await
        .iter()
        .map(|m| m.payload.to_vec())
        .collect();
    assert_eq!(live, want, "alerts, byte for byte");
    let v: serde_json::Value = serde_json::from_slice(&live[shock]).unwrap_or_default();
    assert_eq!(
        (v["type"].as_str(), v["detector"].as_str(), v["signal"].as_str()),
        (Some("alarm"), Some("shock"), Some("input"))
    );
    assert_eq!(v["pair"], "USDMXN");
    drop(serve);
}

fn shared_data(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data").join(rel)
}

/// The alarm times (RFC 3339) of a default-configured replay of `data`.
fn default_alarms(data: &Path) -> Vec<String> {
    assert!(data.is_file(), "{} is missing", data.display());
    let text = format!(
        "name = \"defaults\"\npair = \"USDMXN\"\ndata = {:?}\n",
        data.display().to_string()
    );
    let scenario = Scenario::parse(&text, PathBuf::new()).unwrap_or_else(|e| panic!("{e}"));
    let report = replay::replay_scenario(&scenario, None, ReplayOptions::default()).unwrap_or_else(|e| panic!("{e}"));
    let alarms: Vec<String> = report
        .alarms
        .iter()
        .map(|a| format!("{} {}", a.ts, a.detector))
        .collect();
    eprintln!("{}: {} alarms: {alarms:?}", data.display(), alarms.len());
    alarms
}

/// Whether some alarm falls on a date in `[from, to]` (dates as `YYYY-MM-DD`).
fn alarm_between(alarms: &[String], from: &str, to: &str) -> bool {
    alarms.iter().any(|a| {
        let day = a.get(..10).unwrap_or("");
        day >= from && day <= to
    })
}

fn assert_crises(alarms: &[String]) {
    // The October 2008 moves (6-10 and 21-24 October), three trading days either side.
    assert!(
        alarm_between(alarms, "2008-10-01", "2008-10-29"),
        "October 2008: {alarms:?}"
    );
    // 9 November 2016, the US election, within three trading days.
    assert!(
        alarm_between(alarms, "2016-11-04", "2016-11-14"),
        "November 2016: {alarms:?}"
    );
    // March 2020, COVID, within three trading days of the month.
    assert!(
        alarm_between(alarms, "2020-02-26", "2020-04-03"),
        "March 2020: {alarms:?}"
    );
}

#[test]
fn banxico_fix_with_defaults_alarms_on_2008_2016_and_2020() {
    assert_crises(&default_alarms(&shared_data("usdmxn/banxico_fix_SF43718_daily.csv")));
}

#[test]
fn ecb_daily_with_defaults_alarms_on_2008_2016_and_2020() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/usdmxn_ecb_daily/ticks.csv");
    assert_crises(&default_alarms(&data));
}
