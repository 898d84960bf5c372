//! The hold-out: the last part of the history, which neither the window's choice nor the calibration sees,
//! replayed through each candidate (warmed on the window), through the registry's champion and scored
//! for the random walk, with the engine's own prequential metrics (`crate::eval`) taken over the hold-out
//! only: the difference of the cumulative sums before and after it.

use serde::Serialize;

use crate::engine::{Engine, EngineConfig, Output};
use crate::eval::HorizonSummary;
use crate::tick::{Factor, Tick};

/// Feeds ticks to an engine with the factors merged in by time, as replay and serve do: every factor
/// observed at or before a tick's time reaches the engine before the tick.
#[derive(Debug, Default)]
pub struct Feeder {
    next_factor: usize,
    out: Vec<Output>,
}

impl Feeder {
    /// Feeds `ticks` (after any fed before with this feeder), with `factors` (sorted by time).
    pub fn feed(&mut self, engine: &mut Engine, ticks: &[Tick], factors: &[Factor]) {
        for t in ticks {
            while let Some(f) = factors.get(self.next_factor).filter(|f| f.ts_us <= t.ts_us) {
                engine.on_factor(f);
                self.next_factor += 1;
            }
            engine.on_tick(t, &mut self.out);
            self.out.clear();
        }
    }
}

/// One horizon's scores over the hold-out.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HorizonScores {
    /// The horizon (`1step`, `1d`, …).
    pub horizon: String,
    /// Forecasts scored in the hold-out.
    pub n: u64,
    /// RMSE (price units).
    pub rmse: f64,
    /// RMSE relative to the random walk's on the same points (below 1 beats it).
    pub rmse_ratio: f64,
    /// Share of outcomes inside the 80% interval.
    pub coverage80: f64,
    /// Share inside the 95% interval.
    pub coverage95: f64,
    /// Mean Winkler score of the 80% interval (price units; lower is better).
    pub winkler80: f64,
    /// Mean Winkler score of the 95% interval.
    pub winkler95: f64,
}

/// A sum over `n` items from its mean.
fn total(mean: f64, n: u64) -> f64 {
    mean * n as f64
}

/// The scores of the forecasts realised between two summaries of the same engine (`before` then
/// `after`), horizon by horizon.
pub fn since(before: &[HorizonSummary], after: &[HorizonSummary]) -> Vec<HorizonScores> {
    after
        .iter()
        .map(|a| {
            let zero = HorizonSummary {
                horizon: a.horizon.clone(),
                ..zero_summary()
            };
            let b = before.iter().find(|b| b.horizon == a.horizon).unwrap_or(&zero);
            let n = a.n.saturating_sub(b.n);
            let mean = |fa: f64, fb: f64| {
                if n == 0 {
                    0.0
                } else {
                    ((total(fa, a.n) - total(fb, b.n)) / n as f64).max(0.0)
                }
            };
            let sse = mean(a.rmse * a.rmse, b.rmse * b.rmse);
            let rw = mean(a.rw_rmse * a.rw_rmse, b.rw_rmse * b.rw_rmse);
            HorizonScores {
                horizon: a.horizon.clone(),
                n,
                rmse: sse.sqrt(),
                rmse_ratio: if rw > 0.0 { (sse / rw).sqrt() } else { 1.0 },
                coverage80: mean(a.coverage80, b.coverage80).min(1.0),
                coverage95: mean(a.coverage95, b.coverage95).min(1.0),
                winkler80: mean(a.winkler80, b.winkler80),
                winkler95: mean(a.winkler95, b.winkler95),
            }
        })
        .collect()
}

/// The random walk's scores over the same forecasts: its RMSE (ratio 1), and the RiskMetrics interval
/// around it (EWMA variance, Gaussian) that the engine scores beside its own.
pub fn random_walk(before: &[HorizonSummary], after: &[HorizonSummary]) -> Vec<HorizonScores> {
    after
        .iter()
        .map(|a| {
            let zero = zero_summary();
            let b = before.iter().find(|b| b.horizon == a.horizon).unwrap_or(&zero);
            let n = a.n.saturating_sub(b.n);
            let en = a.ewma_n.saturating_sub(b.ewma_n);
            let mean = |fa: f64, fb: f64, na: u64, nb: u64, k: u64| {
                if k == 0 {
                    0.0
                } else {
                    ((total(fa, na) - total(fb, nb)) / k as f64).max(0.0)
                }
            };
            let rw = mean(a.rw_rmse * a.rw_rmse, b.rw_rmse * b.rw_rmse, a.n, b.n, n);
            HorizonScores {
                horizon: a.horizon.clone(),
                n,
                rmse: rw.sqrt(),
                rmse_ratio: 1.0,
                coverage80: mean(a.ewma_coverage80, b.ewma_coverage80, a.ewma_n, b.ewma_n, en).min(1.0),
                coverage95: mean(a.ewma_coverage95, b.ewma_coverage95, a.ewma_n, b.ewma_n, en).min(1.0),
                winkler80: mean(a.ewma_winkler80, b.ewma_winkler80, a.ewma_n, b.ewma_n, en),
                winkler95: mean(a.ewma_winkler95, b.ewma_winkler95, a.ewma_n, b.ewma_n, en),
            }
        })
        .collect()
}

fn zero_summary() -> HorizonSummary {
    crate::eval::HorizonScore::default().summary("")
}

/// A model offered by the batch path: a name and the configuration its engine runs. The list of
/// candidates is built in [`super::candidates`]; each is warmed on the window, scored on the hold-out,
/// and the best is written.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// Its name in reports (`calibrated`, `configured`, …).
    pub name: String,
    /// What it is, for a person.
    pub description: String,
    /// The engine configuration.
    pub config: EngineConfig,
}

/// A candidate after the hold-out: its engine (warmed on the window and the hold-out, ready to serve)
/// and its scores.
#[derive(Debug, Clone)]
pub struct Scored {
    /// The candidate.
    pub candidate: Candidate,
    /// Its engine after the window and the hold-out.
    pub engine: Engine,
    /// Its hold-out scores per horizon.
    pub scores: Vec<HorizonScores>,
    /// The random walk's on the same forecasts (of this candidate's horizons).
    pub random_walk: Vec<HorizonScores>,
}

impl Scored {
    /// Whether `self` did better on the hold-out than `other`: a lower first-horizon RMSE ratio, ties
    /// broken by the 95% Winkler score. Nothing scored is worst.
    pub fn better_than(&self, other: &Scored) -> bool {
        let key = |s: &Scored| {
            s.scores
                .first()
                .filter(|h| h.n > 0)
                .map(|h| (h.rmse_ratio, h.winkler95))
        };
        match (key(self), key(other)) {
            (Some(a), Some(b)) => {
                if (a.0 - b.0).abs() <= 1e-12 {
                    a.1 < b.1
                } else {
                    a.0 < b.0
                }
            }
            (Some(_), None) => true,
            _ => false,
        }
    }
}

/// Scores an engine (warmed already) on the hold-out: returns its scores and the random walk's.
pub fn score(engine: &mut Engine, holdout: &[Tick], factors: &[Factor]) -> (Vec<HorizonScores>, Vec<HorizonScores>) {
    let before = engine.summary().horizons;
    // The factors up to the engine's last tick reached it already; the later ones come with the hold-out.
    let seen = engine.last_ts_us().unwrap_or(i64::MIN);
    let start = factors.partition_point(|f| f.ts_us <= seen);
    let mut feeder = Feeder::default();
    feeder.feed(engine, holdout, &factors[start..]);
    let after = engine.summary().horizons;
    (since(&before, &after), random_walk(&before, &after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::{HorizonScore, Realised};

    #[test]
    fn scores_since_are_the_scores_of_the_later_forecasts_only() {
        let mut s = HorizonScore::default();
        let r = |actual: f64| Realised {
            origin_mid: 10.0,
            mean: 10.0,
            lo80: 9.0,
            hi80: 11.0,
            lo95: 8.0,
            hi95: 12.0,
            actual,
            ewma: [9.0, 11.0, 8.0, 12.0],
        };
        for _ in 0..10 {
            s.record(&r(10.5));
        }
        let before = vec![s.summary("1step")];
        let mut only_later = HorizonScore::default();
        for a in [13.0, 9.5, 10.0] {
            s.record(&r(a));
            only_later.record(&r(a));
        }
        let got = since(&before, &[s.summary("1step")]);
        let want = only_later.summary("1step");
        assert_eq!(got[0].n, 3);
        assert!((got[0].rmse - want.rmse).abs() < 1e-12);
        assert!((got[0].coverage80 - want.coverage80).abs() < 1e-12);
        assert!((got[0].winkler95 - want.winkler95).abs() < 1e-12);
        let rw = random_walk(&before, &[s.summary("1step")]);
        assert_eq!(rw[0].rmse_ratio, 1.0);
        assert!((rw[0].rmse - want.rw_rmse).abs() < 1e-12);
        assert!((rw[0].coverage95 - want.ewma_coverage95).abs() < 1e-12);
    }
}
