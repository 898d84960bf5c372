//! Forecast accuracy over a sliding window of tick time, per horizon, from snapshots of the engine's
//! running sums: the engine keeps no history for it, and the window keeps a bounded ring of snapshots
//! (one per [`STEPS`]th of the window), so memory does not grow with the stream.

use std::collections::VecDeque;

use crate::eval::AccuracySums;
use crate::horizon::Horizon;

/// Snapshots per window: the window reported covers between `window` and `window * (1 + 1/STEPS)` of
/// tick time.
pub const STEPS: i64 = 30;

/// One horizon's ring of snapshots and its latest window figures.
#[derive(Debug, Clone)]
struct Track {
    horizon: Horizon,
    label: String,
    ring: VecDeque<(i64, AccuracySums)>,
    window: AccuracySums,
}

/// Rolling accuracy of every horizon of one pair.
#[derive(Debug, Clone)]
pub struct RollingAccuracy {
    window_us: i64,
    step_us: i64,
    tracks: Vec<Track>,
}

/// One horizon's figures over the window.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowAccuracy {
    /// The horizon as configured (`1step`, `1h`).
    pub horizon: String,
    /// The window's sums.
    pub sums: AccuracySums,
}

impl RollingAccuracy {
    /// An empty window of `window_secs` seconds of tick time.
    pub fn new(window_secs: f64) -> RollingAccuracy {
        let window_us = (window_secs * 1e6).clamp(1.0, 1e18) as i64;
        RollingAccuracy {
            window_us,
            step_us: (window_us / STEPS).max(1),
            tracks: Vec::new(),
        }
    }

    /// Takes the engine's running sums at tick time `now_us`. A horizon whose count went back (the engine
    /// was replaced by a rollback or a promotion) starts its window again. The first call gives the origin:
    /// with `i64::MIN` for an engine that has seen no tick, its window holds everything until it is longer
    /// than the window; a restored engine's history before the first call is never in the window.
    pub fn update(&mut self, now_us: i64, sums: impl Iterator<Item = (Horizon, AccuracySums)>) {
        let mut seen: Vec<Horizon> = Vec::with_capacity(self.tracks.len());
        for (horizon, s) in sums {
            seen.push(horizon);
            let track = match self.tracks.iter_mut().position(|t| t.horizon == horizon) {
                Some(i) => &mut self.tracks[i],
                None => {
                    self.tracks.push(Track {
                        horizon,
                        label: horizon.to_string(),
                        ring: VecDeque::new(),
                        window: AccuracySums::default(),
                    });
                    let last = self.tracks.len() - 1;
                    &mut self.tracks[last]
                }
            };
            let restarted = track.ring.back().is_some_and(|(ts, b)| s.n < b.n || now_us < *ts);
            if restarted {
                track.ring.clear();
            }
            if track
                .ring
                .back()
                .is_none_or(|(ts, _)| now_us.saturating_sub(*ts) >= self.step_us)
            {
                track.ring.push_back((now_us, s));
            }
            let start = now_us.saturating_sub(self.window_us);
            while track.ring.len() >= 2 && track.ring[1].0 <= start {
                track.ring.pop_front();
            }
            track.window = track
                .ring
                .front()
                .and_then(|(_, first)| s.since(first))
                .unwrap_or_default();
        }
        if seen.len() < self.tracks.len() {
            // The engine's horizons changed (a promoted challenger with another configuration).
            self.tracks.retain(|t| seen.contains(&t.horizon));
        }
    }

    /// Tick time between two snapshots (a caller takes one whenever this much tick time has passed, so a
    /// fast replay or a backlog caught up at full speed still has a window of tick time).
    pub fn step_us(&self) -> i64 {
        self.step_us
    }

    /// Each horizon's figures over the window.
    pub fn figures(&self) -> Vec<WindowAccuracy> {
        self.tracks
            .iter()
            .map(|t| WindowAccuracy {
                horizon: t.label.clone(),
                sums: t.window,
            })
            .collect()
    }

    /// Snapshots kept (for the memory bound's test).
    pub fn kept(&self) -> usize {
        self.tracks.iter().map(|t| t.ring.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sums(n: u64, sq: f64, rw: f64, c95: u64) -> AccuracySums {
        AccuracySums {
            n,
            sum_sq_err: sq,
            rw_sum_sq_err: rw,
            covered80: c95,
            covered95: c95,
            sum_winkler95: n as f64,
        }
    }

    #[test]
    fn the_window_forgets_what_is_older_than_it() {
        let h: Horizon = "1step".parse().unwrap();
        let mut r = RollingAccuracy::new(100.0);
        // One scored forecast per second; the first 1000 have twice the random walk's squared error,
        // the rest the same as it.
        let mut total = AccuracySums::default();
        for sec in 0..2000i64 {
            let bad = sec < 1000;
            total.n += 1;
            total.sum_sq_err += if bad { 2.0 } else { 1.0 };
            total.rw_sum_sq_err += 1.0;
            total.covered95 += u64::from(!bad);
            r.update(sec * 1_000_000, std::iter::once((h, total)));
        }
        let f = &r.figures()[0];
        assert_eq!(f.horizon, "1step");
        assert!((100..=104).contains(&f.sums.n), "{}", f.sums.n);
        assert!((f.sums.rmse_ratio() - 1.0).abs() < 1e-9);
        assert!((f.sums.coverage95() - 1.0).abs() < 1e-9);
        assert!(r.kept() <= STEPS as usize + 2, "{}", r.kept());
    }

    #[test]
    fn a_replaced_engine_starts_the_window_again() {
        let h: Horizon = "1step".parse().unwrap();
        let mut r = RollingAccuracy::new(100.0);
        r.update(0, std::iter::once((h, sums(10, 10.0, 10.0, 10))));
        r.update(10_000_000, std::iter::once((h, sums(20, 40.0, 20.0, 10))));
        assert_eq!(r.figures()[0].sums.n, 10);
        // A rollback: fewer forecasts scored than before.
        r.update(20_000_000, std::iter::once((h, sums(5, 5.0, 5.0, 5))));
        assert_eq!(r.figures()[0].sums.n, 0);
        r.update(30_000_000, std::iter::once((h, sums(8, 8.0, 8.0, 8))));
        assert_eq!(r.figures()[0].sums.n, 3);
    }

    #[test]
    fn a_fresh_engine_counts_from_its_first_forecast() {
        let h: Horizon = "1step".parse().unwrap();
        let mut r = RollingAccuracy::new(100.0);
        r.update(i64::MIN, std::iter::once((h, AccuracySums::default())));
        r.update(5_000_000, std::iter::once((h, sums(7, 7.0, 7.0, 7))));
        assert_eq!(r.figures()[0].sums.n, 7);
        r.update(50_000_000, std::iter::once((h, sums(9, 9.0, 9.0, 9))));
        assert_eq!(r.figures()[0].sums.n, 9);
    }
}
