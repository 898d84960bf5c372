//! Plain-data results of a load run, the floor-vs-cambio comparison against the targets it checks, and the
//! printed table. No I/O here except formatting, so it is tested without a server.

use std::fmt::Write as _;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency the histograms hold (60 s); larger values are clamped, not dropped.
pub const MAX_LATENCY_US: u64 = 60_000_000;

/// A latency histogram in microseconds with 3 significant digits.
pub fn latency_histogram() -> Histogram<u64> {
    // The bounds are constants that hdrhistogram accepts; a failure here is a broken invariant.
    Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")
}

/// Records `us` (at least 1, at most [`MAX_LATENCY_US`]).
pub fn record_us(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, MAX_LATENCY_US));
}

/// Percentiles of one latency measurement (tick to forecast, or request to reply), in microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Messages sent (after the warm-up).
    pub sent: u64,
    /// Replies recorded (after the warm-up).
    pub count: u64,
    /// Sent after the warm-up and never answered (or, for queries, failed or timed out).
    pub lost: u64,
    /// Offered rate, messages a second.
    pub rate_per_sec: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
    /// Mean.
    pub mean_us: f64,
    /// Largest delay of a send behind its schedule (the load generator's own lag).
    pub max_send_lag_us: u64,
    /// The target's CPU time (user + system) per message sent over the whole measurement, warm-up and
    /// drain included, in microseconds; `None` where `/proc` cannot tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us_per_msg: Option<f64>,
    /// cambio only: its own tick-to-forecast latency (consumer receipt to outputs handed to the client,
    /// from its STATS), which separates the time spent in cambio from the time spent in NATS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_process: Option<InProcess>,
}

/// Percentiles of cambio's in-process tick latency, from `$SRV.STATS.cambio`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct InProcess {
    /// Median, µs.
    pub p50_us: u64,
    /// 99th percentile, µs.
    pub p99_us: u64,
    /// 99.9th percentile, µs.
    pub p999_us: u64,
}

impl LatencySummary {
    /// Percentiles of `h`, with the counts filled in by the caller.
    pub fn from_histogram(h: &Histogram<u64>) -> LatencySummary {
        let q = |p: f64| if h.is_empty() { 0 } else { h.value_at_quantile(p) };
        LatencySummary {
            count: h.len(),
            p50_us: q(0.50),
            p90_us: q(0.90),
            p99_us: q(0.99),
            p999_us: q(0.999),
            max_us: if h.is_empty() { 0 } else { h.max() },
            mean_us: if h.is_empty() { 0.0 } else { h.mean() },
            ..Default::default()
        }
    }
}

/// Forecasts received as fast as they come.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThroughputSummary {
    /// Ticks published.
    pub sent: u64,
    /// Distinct forecasts received.
    pub received: u64,
    /// `sent - received`.
    pub lost: u64,
    /// JetStream only: messages the stream stored during the run (`sent - stored` were dropped on ingest,
    /// before any consumer saw them; the rest of `lost` was lost after the stream).
    pub stored: Option<u64>,
    /// Ticks a second the publisher managed.
    pub published_per_sec: f64,
    /// Forecasts a second at the subscriber, from the first publish to the last forecast.
    pub received_per_sec: f64,
    /// Seconds from the first publish to the last forecast.
    pub elapsed_secs: f64,
}

/// Everything measured on one target.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TargetResult {
    /// `floor` or `cambio`.
    pub target: String,
    /// Tick-to-forecast latency at a fixed rate.
    pub latency: Option<LatencySummary>,
    /// Query request-reply latency at a fixed rate.
    pub query: Option<LatencySummary>,
    /// Forecasts per second with the publisher flat out.
    pub throughput: Option<ThroughputSummary>,
}

/// One row of the comparison: cambio against the floor on one figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// What is compared, e.g. `latency p99 (us)`.
    pub measurement: String,
    /// The floor's figure.
    pub floor: f64,
    /// cambio's figure.
    pub cambio: f64,
    /// cambio / floor.
    pub ratio: f64,
    /// The target as text (`<= 1.25x`, `>= 0.8x`, `lost = 0`, or `-` for information only).
    pub target: String,
    /// Whether the target holds (true for information-only rows).
    pub pass: bool,
    /// How `pass` follows from the figures (kept so a median over rounds can be judged again).
    #[serde(skip)]
    pub rule: Rule,
}

/// The target a comparison row is held to.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Rule {
    /// Information only: always passes.
    #[default]
    Info,
    /// The ratio must be at most this.
    AtMost(f64),
    /// The ratio must be at least this.
    AtLeast(f64),
    /// Neither target may lose anything.
    NoneLost,
}

impl Rule {
    fn holds(self, c: &Comparison) -> bool {
        match self {
            Rule::Info => true,
            Rule::AtMost(m) => c.ratio <= m,
            Rule::AtLeast(m) => c.ratio >= m,
            Rule::NoneLost => c.floor == 0.0 && c.cambio == 0.0,
        }
    }
}

/// The median of `xs` (the mean of the middle two for an even count); NaN when empty or when the middle
/// is NaN (a ratio against a zero floor).
fn median(mut xs: Vec<f64>) -> f64 {
    if xs.is_empty() {
        return f64::NAN;
    }
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        0.5 * (xs[n / 2 - 1] + xs[n / 2])
    }
}

/// Combines the comparisons of several rounds (each a floor run and a cambio run back to back) into one
/// row per measurement: the median floor figure, the median cambio figure, and the median of the rounds'
/// ratios, judged against the target. A paired median is what this shared, noisy machine supports: one
/// round can be off by 2x when another process wakes up. A no-loss target must hold in every round.
pub fn median_of_rounds(rounds: &[Vec<Comparison>]) -> Vec<Comparison> {
    let Some(first) = rounds.first() else {
        return Vec::new();
    };
    first
        .iter()
        .map(|template| {
            let same: Vec<&Comparison> = rounds
                .iter()
                .filter_map(|r| r.iter().find(|c| c.measurement == template.measurement))
                .collect();
            let mut row = Comparison {
                measurement: template.measurement.clone(),
                floor: median(same.iter().map(|c| c.floor).collect()),
                cambio: median(same.iter().map(|c| c.cambio).collect()),
                ratio: median(same.iter().map(|c| c.ratio).collect()),
                target: template.target.clone(),
                pass: true,
                rule: template.rule,
            };
            row.pass = match row.rule {
                Rule::NoneLost => same.iter().all(|c| c.pass),
                r => r.holds(&row),
            };
            row
        })
        .collect()
}

/// Highest cambio/floor latency ratio a load run accepts.
pub const MAX_LATENCY_RATIO: f64 = 1.25;
/// Lowest cambio/floor throughput ratio a load run accepts.
pub const MIN_THROUGHPUT_RATIO: f64 = 0.8;

fn ratio(cambio: f64, floor: f64) -> f64 {
    if floor > 0.0 { cambio / floor } else { f64::NAN }
}

fn at_most(measurement: &str, floor: u64, cambio: u64, max: Option<f64>) -> Comparison {
    let r = ratio(cambio as f64, floor as f64);
    Comparison {
        measurement: measurement.into(),
        floor: floor as f64,
        cambio: cambio as f64,
        ratio: r,
        target: max.map_or("-".into(), |m| format!("<= {m}x")),
        pass: max.is_none_or(|m| r <= m),
        rule: max.map_or(Rule::Info, Rule::AtMost),
    }
}

/// The comparison rows for what both targets measured. With `jetstream`, throughput must lose nothing.
pub fn compare(floor: &TargetResult, cambio: &TargetResult, jetstream: bool) -> Vec<Comparison> {
    let mut rows = Vec::new();
    if let (Some(f), Some(c)) = (&floor.latency, &cambio.latency) {
        rows.push(at_most("latency p50 (us)", f.p50_us, c.p50_us, Some(MAX_LATENCY_RATIO)));
        rows.push(at_most("latency p90 (us)", f.p90_us, c.p90_us, None));
        rows.push(at_most("latency p99 (us)", f.p99_us, c.p99_us, Some(MAX_LATENCY_RATIO)));
        rows.push(at_most("latency p99.9 (us)", f.p999_us, c.p999_us, None));
        rows.push(at_most("latency max (us)", f.max_us, c.max_us, None));
        rows.push(at_most("latency lost", f.lost, c.lost, None));
        if let Some(ip) = c.in_process {
            // Information: the part of cambio's latency spent inside cambio (the floor has none to report).
            for (name, v) in [
                ("  in cambio p50 (us)", ip.p50_us),
                ("  in cambio p99 (us)", ip.p99_us),
                ("  in cambio p99.9 (us)", ip.p999_us),
            ] {
                rows.push(Comparison {
                    measurement: name.into(),
                    floor: f64::NAN,
                    cambio: v as f64,
                    ratio: f64::NAN,
                    target: "-".into(),
                    pass: true,
                    rule: Rule::Info,
                });
            }
        }
    }
    if let (Some(f), Some(c)) = (&floor.query, &cambio.query) {
        rows.push(at_most("query p50 (us)", f.p50_us, c.p50_us, None));
        rows.push(at_most("query p99 (us)", f.p99_us, c.p99_us, Some(MAX_LATENCY_RATIO)));
        rows.push(at_most("query max (us)", f.max_us, c.max_us, None));
        rows.push(at_most("query lost", f.lost, c.lost, None));
    }
    if let (Some(f), Some(c)) = (&floor.throughput, &cambio.throughput) {
        let r = ratio(c.received_per_sec, f.received_per_sec);
        rows.push(Comparison {
            measurement: "throughput (forecasts/s)".into(),
            floor: f.received_per_sec,
            cambio: c.received_per_sec,
            ratio: r,
            target: format!(">= {MIN_THROUGHPUT_RATIO}x"),
            pass: r >= MIN_THROUGHPUT_RATIO,
            rule: Rule::AtLeast(MIN_THROUGHPUT_RATIO),
        });
        rows.push(Comparison {
            measurement: "throughput lost".into(),
            floor: f.lost as f64,
            cambio: c.lost as f64,
            ratio: ratio(c.lost as f64, f.lost as f64),
            target: if jetstream { "lost = 0".into() } else { "-".into() },
            pass: !jetstream || (f.lost == 0 && c.lost == 0),
            rule: if jetstream { Rule::NoneLost } else { Rule::Info },
        });
        if let (Some(fs), Some(cs)) = (f.stored, c.stored) {
            rows.push(at_most("throughput stored in stream", fs, cs, None));
        }
    }
    rows
}

/// The rows of one target alone (when only one was measured): figure and value.
fn single_rows(r: &TargetResult) -> Vec<(String, f64)> {
    let mut rows = Vec::new();
    if let Some(l) = &r.latency {
        rows.push(("latency p50 (us)".to_string(), l.p50_us as f64));
        rows.push(("latency p90 (us)".into(), l.p90_us as f64));
        rows.push(("latency p99 (us)".into(), l.p99_us as f64));
        rows.push(("latency p99.9 (us)".into(), l.p999_us as f64));
        rows.push(("latency max (us)".into(), l.max_us as f64));
        rows.push(("latency count".into(), l.count as f64));
        rows.push(("latency lost".into(), l.lost as f64));
        if let Some(ip) = l.in_process {
            rows.push(("  in cambio p50 (us)".into(), ip.p50_us as f64));
            rows.push(("  in cambio p99 (us)".into(), ip.p99_us as f64));
            rows.push(("  in cambio p99.9 (us)".into(), ip.p999_us as f64));
        }
    }
    if let Some(q) = &r.query {
        rows.push(("query p50 (us)".into(), q.p50_us as f64));
        rows.push(("query p99 (us)".into(), q.p99_us as f64));
        rows.push(("query max (us)".into(), q.max_us as f64));
        rows.push(("query count".into(), q.count as f64));
        rows.push(("query lost".into(), q.lost as f64));
    }
    if let Some(t) = &r.throughput {
        rows.push(("throughput (forecasts/s)".into(), t.received_per_sec));
        rows.push(("throughput lost".into(), t.lost as f64));
        if let Some(stored) = t.stored {
            rows.push(("throughput stored in stream".into(), stored as f64));
        }
    }
    rows
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "-".into()
    } else if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else {
        format!("{x:.1}")
    }
}

/// The printed table: measurement, floor, cambio, ratio, target, pass/fail; each column as wide as its
/// widest cell (numbers flush right).
pub fn table(floor: Option<&TargetResult>, cambio: Option<&TargetResult>, comparisons: &[Comparison]) -> String {
    let mut rows: Vec<[String; 6]> = Vec::new();
    match (floor, cambio) {
        (Some(_), Some(_)) => {
            for c in comparisons {
                let ratio = if c.ratio.is_finite() {
                    format!("{:.2}", c.ratio)
                } else {
                    "-".into()
                };
                let pass = if c.target == "-" {
                    ""
                } else if c.pass {
                    "pass"
                } else {
                    "FAIL"
                };
                rows.push([
                    c.measurement.clone(),
                    num(c.floor),
                    num(c.cambio),
                    ratio,
                    c.target.clone(),
                    pass.into(),
                ]);
            }
        }
        (Some(r), None) | (None, Some(r)) => {
            let is_floor = floor.is_some();
            for (m, v) in single_rows(r) {
                let (f, c) = if is_floor {
                    (num(v), "-".into())
                } else {
                    ("-".into(), num(v))
                };
                rows.push([m, f, c, "-".into(), "-".into(), String::new()]);
            }
        }
        (None, None) => {}
    }
    let header = ["measurement", "floor", "cambio", "ratio", "target", "pass"].map(String::from);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut s = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let pad = " ".repeat(widths[i].saturating_sub(cell.chars().count()));
            if i > 0 {
                line.push_str("  ");
            }
            // The measurement flush left, the figures, target and verdict flush right.
            if i == 0 {
                line.push_str(cell);
                line.push_str(&pad);
            } else {
                line.push_str(&pad);
                line.push_str(cell);
            }
        }
        let _ = writeln!(s, "{}", line.trim_end());
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_histogram() {
        let mut h = latency_histogram();
        for us in 1..=1_000u64 {
            record_us(&mut h, us);
        }
        let s = LatencySummary::from_histogram(&h);
        assert_eq!(s.count, 1_000);
        assert_eq!(s.p50_us, 500);
        assert_eq!(s.p90_us, 900);
        assert_eq!(s.p99_us, 990);
        assert_eq!(s.p999_us, 999);
        assert_eq!(s.max_us, 1_000);
        assert!((s.mean_us - 500.5).abs() < 0.5);
        record_us(&mut h, 0);
        record_us(&mut h, u64::MAX);
        assert_eq!(h.len(), 1_002, "out-of-range values are clamped, not dropped");
        assert!(h.max() >= MAX_LATENCY_US);
        let empty = LatencySummary::from_histogram(&latency_histogram());
        assert_eq!((empty.count, empty.p99_us, empty.max_us), (0, 0, 0));
    }

    fn lat(p50: u64, p99: u64) -> LatencySummary {
        LatencySummary {
            p50_us: p50,
            p99_us: p99,
            ..Default::default()
        }
    }

    #[test]
    fn comparisons_apply_the_targets() {
        let floor = TargetResult {
            target: "floor".into(),
            latency: Some(lat(100, 400)),
            query: Some(lat(100, 200)),
            throughput: Some(ThroughputSummary {
                received_per_sec: 100_000.0,
                ..Default::default()
            }),
        };
        let cambio = TargetResult {
            target: "cambio".into(),
            latency: Some(lat(125, 600)),
            query: Some(lat(110, 240)),
            throughput: Some(ThroughputSummary {
                received_per_sec: 79_000.0,
                lost: 3,
                ..Default::default()
            }),
        };
        let rows = compare(&floor, &cambio, false);
        let get = |m: &str| rows.iter().find(|r| r.measurement == m).unwrap();
        assert!(get("latency p50 (us)").pass, "1.25x exactly passes");
        assert!(!get("latency p99 (us)").pass, "1.5x fails");
        assert!((get("latency p99 (us)").ratio - 1.5).abs() < 1e-12);
        assert!(get("query p99 (us)").pass);
        assert!(!get("throughput (forecasts/s)").pass, "0.79x fails");
        assert!(get("throughput lost").pass, "losses are information without JetStream");
        assert!(
            !compare(&floor, &cambio, true)
                .iter()
                .find(|r| r.measurement == "throughput lost")
                .unwrap()
                .pass
        );
        assert!(get("latency max (us)").pass, "information rows always pass");

        let t = table(Some(&floor), Some(&cambio), &rows);
        assert!(
            t.contains("latency p99 (us)") && t.contains("FAIL") && t.contains("1.50"),
            "{t}"
        );
        let t = table(Some(&floor), None, &[]);
        assert!(t.contains("throughput (forecasts/s)") && t.contains("100000"), "{t}");
        let stored = compare(
            &TargetResult {
                throughput: Some(ThroughputSummary {
                    stored: Some(10),
                    ..Default::default()
                }),
                ..floor.clone()
            },
            &TargetResult {
                throughput: Some(ThroughputSummary {
                    stored: Some(10),
                    ..Default::default()
                }),
                ..cambio.clone()
            },
            true,
        );
        let t = table(Some(&floor), Some(&cambio), &stored);
        assert!(t.contains("throughput stored in stream"), "{t}");
        assert!(!t.contains("NaN"), "{t}");
        // The floor column ends at the same place on every line, past the longest measurement.
        let header = t.lines().next().unwrap();
        let end = header.find("floor").unwrap() + "floor".len();
        assert!(end > "throughput stored in stream".len(), "{t}");
        for line in t.lines() {
            let b = line.as_bytes();
            assert!(b[end - 1] != b' ' && b[end] == b' ', "{t}");
        }
    }

    #[test]
    fn rounds_combine_by_paired_median() {
        let round = |f50: u64, c50: u64, ft: f64, ct: f64, lost: u64| {
            let floor = TargetResult {
                target: "floor".into(),
                latency: Some(lat(f50, 400)),
                throughput: Some(ThroughputSummary {
                    received_per_sec: ft,
                    ..Default::default()
                }),
                ..Default::default()
            };
            let cambio = TargetResult {
                target: "cambio".into(),
                latency: Some(lat(c50, 400)),
                throughput: Some(ThroughputSummary {
                    received_per_sec: ct,
                    lost,
                    ..Default::default()
                }),
                ..Default::default()
            };
            compare(&floor, &cambio, true)
        };
        // Ratios 1.1, 2.0 (a noisy round), 1.2: the median 1.2 passes; throughput ratios 0.9, 0.5, 0.85.
        let rounds = vec![
            round(100, 110, 100.0, 90.0, 0),
            round(100, 200, 100.0, 50.0, 0),
            round(100, 120, 100.0, 85.0, 1),
        ];
        let rows = median_of_rounds(&rounds);
        let get = |m: &str| rows.iter().find(|r| r.measurement == m).unwrap();
        let p50 = get("latency p50 (us)");
        assert!((p50.ratio - 1.2).abs() < 1e-12 && p50.pass);
        assert_eq!((p50.floor, p50.cambio), (100.0, 120.0));
        let t = get("throughput (forecasts/s)");
        assert!((t.ratio - 0.85).abs() < 1e-12 && t.pass);
        assert!(!get("throughput lost").pass, "one round lost a tick");
        // (Compared as text: information rows with a zero floor have a NaN ratio.)
        assert_eq!(
            format!("{:?}", median_of_rounds(&rounds[..1])),
            format!("{:?}", rounds[0]),
            "one round is itself"
        );
        assert!(median_of_rounds(&[]).is_empty());
        assert_eq!(median(vec![1.0, 3.0]), 2.0);
    }

    #[test]
    fn zero_floor_gives_no_ratio() {
        let r = at_most("x", 0, 5, Some(1.25));
        assert!(r.ratio.is_nan());
        assert!(!r.pass);
        assert_eq!(num(f64::NAN), "-");
    }
}
