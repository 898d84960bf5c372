//! Replays every scenario under `scenarios/` and asserts its expectations hold.
//!
//! One test per scenario (so they run in parallel and fail by name), plus a guard that every scenario
//! folder is listed here, so a new scenario cannot be skipped by forgetting it.

use std::path::{Path, PathBuf};

use cambio::replay::{self, ReplayOptions, Scenario};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn run(name: &str) {
    let scenario = Scenario::load(&scenarios_dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let report =
        replay::replay_scenario(&scenario, None, ReplayOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut failed = Vec::new();
    for o in &report.expectations {
        eprintln!(
            "{name}: {} {:?}: {}",
            if o.passed { "PASS" } else { "FAIL" },
            o.expect,
            o.detail
        );
        if !o.passed {
            failed.push(format!("{:?}: {}", o.expect, o.detail));
        }
    }
    eprintln!(
        "{name}: ticks {} accepted {} quarantined {:?} alarms {}",
        report.ticks, report.accepted, report.quarantined, report.alarms_total
    );
    for h in &report.horizons {
        eprintln!(
            "{name}: {} n={} rmse_ratio={:.4} cov80={:.3} cov95={:.3}",
            h.horizon, h.n, h.rmse_ratio, h.coverage80, h.coverage95
        );
    }
    for a in report.alarms.iter().take(20) {
        eprintln!(
            "{name}: alarm {} {:?} at {} stat {:.3}",
            a.detector, a.signal, a.ts, a.statistic
        );
    }
    assert!(
        !report.expectations.is_empty(),
        "{name}: a scenario must expect something"
    );
    assert!(failed.is_empty(), "{name}: failed expectations:\n{}", failed.join("\n"));
}

macro_rules! scenarios {
    ($($name:ident),* $(,)?) => {
        $(#[test] fn $name() { run(stringify!($name)); })*
        const LISTED: &[&str] = &[$(stringify!($name)),*];
    };
}

scenarios!(
    calm_random_walk,
    level_shift,
    vol_regime,
    fat_finger_spike,
    feed_outage,
    duplicate_flood,
    out_of_order_burst,
    crossed_quotes,
    missing_values,
    same_price_updates,
    missing_at_threshold,
    usdmxn_ecb_daily,
    usdmxn_banxico_fix,
    eurusd_ticks_201405,
    event_shock_10min,
    flash_crash,
);

#[test]
fn every_scenario_folder_is_replayed_by_this_suite() {
    let mut found: Vec<String> = std::fs::read_dir(scenarios_dir())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("scenario.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    found.sort();
    let mut listed: Vec<String> = LISTED.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(found, listed);
}
