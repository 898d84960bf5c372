//! Issue 12, point 6 (alarms): the daily USD/MXN histories in `../shared/data`, replayed with the default
//! engine configuration (only the pair and the data, no detector tuning), raise alarms within three
//! trading days of the shocks an operator must hear about: October 2008, 9 November 2016, March 2020.
//! The shock detector's threshold follows the stream's spacing, so the defaults fit daily fixings too.

use std::path::{Path, PathBuf};

use cambio::replay::{self, ReplayOptions, Scenario};

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
