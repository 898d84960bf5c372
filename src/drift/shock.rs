//! [`ShockDetector`]: an alarm at once when the rate moves many standard deviations in a handful of
//! observations.
//!
//! The [`SignalMonitor`](super::SignalMonitor) detectors see returns standardized by the fast EWMA
//! volatility (λ = 0.94), which adapts inside a large move: after two or three big returns the EWMA has
//! grown and the standardized returns shrink before any CUSUM reaches its threshold. This detector
//! measures each move against a **slow, robust reference scale** instead, and does not let the move itself
//! change that scale:
//!
//! - the reference is the larger of the robust sigma (1.4826 · median absolute return) of the last
//!   `window` returns and of the last `short_window` of them, floored by half the mean-absolute sigma
//!   (1.2533 · mean |r|, for tick streams where most returns are zero and the median is 0). The short
//!   window follows a calm market's volatility bursts (GARCH clustering), which would otherwise look like
//!   shocks; the long one keeps the scale from collapsing in a quiet spell;
//! - a return enters the reference only once it is older than the `max_obs` returns under test, so a
//!   move is never judged against itself, and the returns of the move that raised an alarm never enter
//!   it (the scale is frozen against the shock; what follows it, a crisis's volatility, does enter);
//! - it alarms when the move over the last `m` observations (`m = 1..=max_obs`, a single return for
//!   `m = 1`) exceeds `k · √m` reference sigmas.
//!
//! # The threshold, in the stream's own time
//! One threshold cannot serve ticks and daily fixings at the same per-observation false-alarm rate: one
//! alarm per million calm ticks needs about 100 reference sigmas on the heavy-tailed tick returns of
//! `calm_random_walk` (Student-t(4), GARCH(1,1): at 60 the scenario's seed already raised one), while the
//! moves that matter in daily fixings (USD/MXN 6 October 2008, 9 November 2016) are 8–11 sigmas. Daily returns are sums of a day's ticks and much
//! less heavy-tailed, and an operator tolerates a higher rate per observation when observations are a
//! day apart. So `k` follows the stream's typical spacing `Δt` (the median of its last 64 spacings, so
//! weekends and outages do not move it): `k_fast` at `Δt ≤ fast_spacing_secs`, `k_slow` at
//! `Δt ≥ slow_spacing_secs`, geometric in between (`k ∝ Δt^-0.22` with the defaults; 24 at 10-minute bars).
//! A move that spans more than 8 typical spacings per observation (the first tick after a weekend on a
//! tick stream) has its threshold scaled by `√(span / typical)`, at most 30 times, since a return over a
//! closure is legitimately larger; a daily stream's weekends (3 days against 1) are not scaled.
//!
//! # Expected alarm rate under the null
//! Measured with the defaults (`cargo test --release --lib drift::shock::calibration -- --ignored
//! --nocapture` reprints them):
//! - calm 1-second ticks (Student-t(4) innovations, GARCH(1,1) α = 0.05, β = 0.94, as
//!   `calm_random_walk`): 0 alarms in 10 × 1,000,000 ticks, and none in that scenario;
//! - the same process on 10-minute bars (threshold 24): 10 alarms in 10 × 100,000 bars, about one per
//!   100,000 bars (two years of round-the-clock bars);
//! - the same process at daily spacing (threshold 8): 76 alarms in 10 × 10,000 observations, about one per
//!   1,300 (five years of business days). That process is a tick process, far heavier-tailed than daily
//!   fixings, which are sums of a day's ticks: on the real histories below the rate is lower;
//! - daily USD/MXN fixings, Banxico FIX 1991–2025 and ECB 2008–2026: 15 and 3 alarms, every one on a crisis
//!   move (1993–1995, 1997-10, 1998-08, 1999-01-13, 2008-10-06/07, 2016-11-09, 2020-03-09), none in the
//!   calm years between. The margins are small on purpose: the 2008 and 2020 moves score 8.2–9.1 against
//!   a threshold of 8.
//!
//! After an alarm further shock alarms are suppressed until both `refractory_obs` observations and
//! `refractory_secs` of tick time have passed, so one shock gives one alarm whatever the spacing: at
//! 10,000 ticks a second the minute rules, on daily fixings the 20 observations (about a month).
//!
//! The validator asks [`ShockDetector::confirms`] whether consecutive implausible ticks are a genuine move
//! to re-anchor on (see [`crate::quality::MoveJudge`], implemented by the engine).

use serde::{Deserialize, Serialize};

use super::{Alarm, DriftError, Signal, check};

/// Scale of the median absolute value that estimates sigma for normal data.
const MAD_TO_SIGMA: f64 = 1.4826;

/// Scale of the mean absolute value that estimates sigma for normal data (√(π/2)).
const MEAN_ABS_TO_SIGMA: f64 = 1.2533;

/// Most observations a move may span (bounds the state).
pub const MAX_OBS: usize = 16;

/// Recent spacings behind the typical spacing (their median, so weekends and outages do not move it).
const GAP_WINDOW: usize = 64;

/// A move spanning more than this many typical spacings per observation (a market closure, an outage)
/// has its threshold scaled by `√(span / typical)`: a return over a weekend is legitimately larger.
const LONG_GAP: f64 = 8.0;

/// Cap of that time scaling (as the validator's jump band caps its own).
const MAX_TIME_SCALE: f64 = 30.0;

/// The long scale (a selection over `window` returns, the costly part) is recomputed at every this many
/// refits of the short one, the typical spacing at every this many `refit_every` updates: both move
/// slowly, and at every refit they cost about 100 ns a tick, a tenth of the pipeline's budget.
const SLOW_REFIT: u64 = 8;

/// The shock detector's settings (`[engine.drift.shock]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShockConfig {
    /// Run the detector and let it raise `shock` alarms (and confirm moves for the validator).
    pub enabled: bool,
    /// Returns behind the long reference scale. Default 500 (two years of daily fixings).
    pub window: usize,
    /// Returns behind the short reference scale, which follows volatility bursts. Default 32.
    pub short_window: usize,
    /// The short reference scale is recomputed every this many returns, the long one and the typical
    /// spacing every 8 times this. Default 16.
    pub refit_every: usize,
    /// Returns needed before any alarm. Default 50.
    pub min_history: usize,
    /// Longest move tested, in observations (1..=16). Default 4.
    pub max_obs: usize,
    /// Threshold in reference sigmas for streams spaced `fast_spacing_secs` or closer. Default 100.
    pub k_fast: f64,
    /// Threshold in reference sigmas for streams spaced `slow_spacing_secs` or wider. Default 8.
    pub k_slow: f64,
    /// Spacing at and below which `k_fast` applies. Default 1 s.
    pub fast_spacing_secs: f64,
    /// Spacing at and above which `k_slow` applies. Default 1 day.
    pub slow_spacing_secs: f64,
    /// Observations after an alarm before the next may fire (together with `refractory_secs`). Default 20.
    pub refractory_obs: u64,
    /// Tick time after an alarm before the next may fire (together with `refractory_obs`). Default 60 s.
    pub refractory_secs: f64,
    /// Floor of the reference sigma (log-return units). Default 1e-7.
    pub min_sigma: f64,
}

impl Default for ShockConfig {
    fn default() -> Self {
        ShockConfig {
            enabled: true,
            window: 500,
            short_window: 32,
            refit_every: 16,
            min_history: 50,
            max_obs: 4,
            k_fast: 100.0,
            k_slow: 8.0,
            fast_spacing_secs: 1.0,
            slow_spacing_secs: 86_400.0,
            refractory_obs: 20,
            refractory_secs: 60.0,
            min_sigma: 1e-7,
        }
    }
}

impl ShockConfig {
    /// Checks the ranges serde cannot express.
    ///
    /// # Errors
    /// [`DriftError::InvalidParameter`] naming the first bad field.
    pub fn validate(&self) -> Result<(), DriftError> {
        check(
            (2..=100_000).contains(&self.window),
            "shock.window",
            "must be in 2..=100000",
        )?;
        check(
            (2..=self.window).contains(&self.short_window),
            "shock.short_window",
            "must be in 2..=window",
        )?;
        check(self.refit_every >= 1, "shock.refit_every", "must be at least 1")?;
        check(
            (2..=self.window).contains(&self.min_history),
            "shock.min_history",
            "must be in 2..=window",
        )?;
        check(
            (1..=MAX_OBS).contains(&self.max_obs),
            "shock.max_obs",
            "must be in 1..=16",
        )?;
        check(
            self.k_fast.is_finite() && self.k_slow.is_finite() && self.k_slow > 0.0 && self.k_fast >= self.k_slow,
            "shock.k_fast",
            "k_slow must be positive and k_fast at least k_slow",
        )?;
        check(
            self.fast_spacing_secs > 0.0 && self.slow_spacing_secs > self.fast_spacing_secs,
            "shock.slow_spacing_secs",
            "0 < fast_spacing_secs < slow_spacing_secs",
        )?;
        check(
            self.refractory_secs.is_finite() && self.refractory_secs >= 0.0,
            "shock.refractory_secs",
            "must be finite and non-negative",
        )?;
        check(
            self.min_sigma.is_finite() && self.min_sigma > 0.0,
            "shock.min_sigma",
            "must be positive",
        )
    }

    /// The threshold in reference sigmas for a stream spaced `spacing_secs` apart on average.
    pub fn threshold(&self, spacing_secs: f64) -> f64 {
        if spacing_secs.is_nan() || spacing_secs <= self.fast_spacing_secs {
            return self.k_fast;
        }
        if spacing_secs >= self.slow_spacing_secs {
            return self.k_slow;
        }
        let f = (spacing_secs / self.fast_spacing_secs).ln() / (self.slow_spacing_secs / self.fast_spacing_secs).ln();
        (self.k_fast.ln() + f * (self.k_slow.ln() - self.k_fast.ln())).exp()
    }
}

/// A shock being lived through: the reference is frozen and alarms are suppressed until it ends.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct Active {
    /// Tick time of the alarm (µs).
    ts_us: i64,
    /// Observations since the alarm.
    obs: u64,
    /// Direction of the move: +1 up, -1 down.
    direction: f64,
}

/// The shock detector's state (see the module documentation). Bounded: `window + max_obs` returns and
/// [`GAP_WINDOW`] spacings.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShockDetector {
    cfg: ShockConfig,
    /// The reference returns, a ring of at most `window`.
    reference: Vec<f64>,
    head: usize,
    /// The returns under test, oldest first (at most `max_obs`), and the spacing (s) each spans.
    recent: Vec<f64>,
    recent_gaps: Vec<f64>,
    since_refit: usize,
    /// Refits of the short scale so far.
    refits: u64,
    /// The long part of the reference: the larger of the long robust sigma and half the mean-absolute
    /// one (0 before the first fit).
    long_sigma: f64,
    sigma: f64,
    /// Recent spacings (s), a ring of at most [`GAP_WINDOW`], and its head.
    gaps: Vec<f64>,
    gap_head: usize,
    /// The median of `gaps` at the last refit (0 before any): the stream's typical spacing.
    typical_gap_secs: f64,
    last_ts_us: Option<i64>,
    active: Option<Active>,
    updates: u64,
    alarms: u64,
    /// Working space for the refits; its contents never matter between calls.
    #[serde(skip)]
    scratch: Vec<f64>,
}

impl PartialEq for ShockDetector {
    /// Equality of the state that matters (the scratch buffer is excluded).
    fn eq(&self, o: &Self) -> bool {
        self.cfg == o.cfg
            && self.reference == o.reference
            && self.head == o.head
            && self.recent == o.recent
            && self.recent_gaps == o.recent_gaps
            && self.since_refit == o.since_refit
            && self.refits == o.refits
            && self.long_sigma.to_bits() == o.long_sigma.to_bits()
            && self.sigma.to_bits() == o.sigma.to_bits()
            && self.gaps == o.gaps
            && self.gap_head == o.gap_head
            && self.typical_gap_secs.to_bits() == o.typical_gap_secs.to_bits()
            && self.last_ts_us == o.last_ts_us
            && self.active == o.active
            && self.updates == o.updates
            && self.alarms == o.alarms
    }
}

impl Default for ShockDetector {
    /// A fresh detector with the default configuration (what a checkpoint written before it existed
    /// restores to: the engine's configuration then holds the default too).
    fn default() -> Self {
        ShockDetector::new(&ShockConfig::default())
    }
}

impl ShockDetector {
    /// A detector with no history. Call [`ShockConfig::validate`] first; out-of-range values are clamped.
    pub fn new(cfg: &ShockConfig) -> ShockDetector {
        let mut cfg = cfg.clone();
        cfg.window = cfg.window.max(2);
        cfg.max_obs = cfg.max_obs.clamp(1, MAX_OBS);
        cfg.refit_every = cfg.refit_every.max(1);
        ShockDetector {
            reference: Vec::with_capacity(cfg.window.min(100_000)),
            head: 0,
            recent: Vec::with_capacity(cfg.max_obs),
            recent_gaps: Vec::with_capacity(cfg.max_obs),
            since_refit: 0,
            refits: 0,
            long_sigma: 0.0,
            sigma: 0.0,
            gaps: Vec::with_capacity(GAP_WINDOW),
            gap_head: 0,
            typical_gap_secs: 0.0,
            last_ts_us: None,
            active: None,
            updates: 0,
            alarms: 0,
            scratch: Vec::new(),
            cfg,
        }
    }

    /// The reference sigma in force (0 before the first fit).
    pub fn sigma(&self) -> f64 {
        self.sigma
    }

    /// The stream's typical spacing in seconds (the median of recent spacings; 0 before any).
    pub fn typical_gap_secs(&self) -> f64 {
        self.typical_gap_secs
    }

    /// The threshold in force, in reference sigmas, at the stream's typical spacing.
    pub fn threshold(&self) -> f64 {
        self.cfg.threshold(self.typical_gap_secs)
    }

    /// Alarms raised so far.
    pub fn alarms(&self) -> u64 {
        self.alarms
    }

    /// Whether a shock is in progress (an alarm within its refractory period).
    pub fn in_shock(&self) -> bool {
        self.active.is_some()
    }

    fn warm(&self) -> bool {
        self.cfg.enabled && self.reference.len() >= self.cfg.min_history && self.sigma > 0.0
    }

    /// Feeds the log-return `r` of an accepted tick at `ts_us` (from the previous accepted tick); pushes a
    /// `shock` alarm of the input signal into `out` when the move is one. Non-finite returns are ignored.
    pub fn update(&mut self, ts_us: i64, r: f64, out: &mut Vec<Alarm>) {
        if !self.cfg.enabled || !r.is_finite() {
            return;
        }
        self.updates += 1;
        let gap_secs = self
            .last_ts_us
            .map_or(0.0, |last| ts_us.saturating_sub(last).max(0) as f64 / 1e6);
        if self.last_ts_us.is_some() {
            if self.gaps.len() < GAP_WINDOW {
                self.gaps.push(gap_secs);
            } else if let Some(slot) = self.gaps.get_mut(self.gap_head) {
                *slot = gap_secs;
                self.gap_head = (self.gap_head + 1) % GAP_WINDOW;
            }
        }
        self.last_ts_us = Some(ts_us);
        if self.updates.is_multiple_of(SLOW_REFIT * self.cfg.refit_every as u64) || self.gaps.len() == 1 {
            let mut scratch = std::mem::take(&mut self.scratch);
            scratch.clear();
            scratch.extend_from_slice(&self.gaps);
            self.typical_gap_secs = median(&mut scratch);
            self.scratch = scratch;
        }
        if let Some(a) = &mut self.active {
            a.obs += 1;
            let elapsed_secs = ts_us.saturating_sub(a.ts_us) as f64 / 1e6;
            if a.obs >= self.cfg.refractory_obs && elapsed_secs >= self.cfg.refractory_secs {
                self.active = None;
            }
        }
        if self.recent.len() >= self.cfg.max_obs {
            let old = self.recent.remove(0);
            self.recent_gaps.remove(0);
            // The returns of the move that raised the alarm never enter the reference: they leave the
            // window under test during the first `max_obs` observations after it. Later ones do, so a
            // lasting rise of volatility (a crisis) becomes the new normal instead of alarming again
            // every refractory period.
            if self.active.is_none_or(|a| a.obs > self.cfg.max_obs as u64) {
                self.learn(old);
            }
        }
        self.recent.push(r);
        self.recent_gaps.push(gap_secs);
        if !self.warm() || self.active.is_some() {
            return;
        }
        let k = self.threshold();
        let (z, sum) = self.statistic();
        if z > k {
            self.alarms += 1;
            self.active = Some(Active {
                ts_us,
                obs: 0,
                direction: sum.signum(),
            });
            out.push(Alarm {
                detector: "shock",
                signal: Signal::Input,
                ts_us,
                statistic: z,
                threshold: k,
            });
        }
    }

    /// The largest `|sum of the last m returns| / (√m · sigma · time scale)` over `m = 1..=recent`, and
    /// that sum. The time scale is 1 unless the `m` returns span more than [`LONG_GAP`] typical spacings
    /// each (a market closure): then `√(span / (m · typical))`, at most [`MAX_TIME_SCALE`].
    fn statistic(&self) -> (f64, f64) {
        let mut best = (0.0, 0.0);
        let (mut sum, mut span) = (0.0, 0.0);
        for (i, (r, g)) in self.recent.iter().zip(&self.recent_gaps).rev().enumerate() {
            sum += r;
            span += g;
            let m = (i + 1) as f64;
            let ratio = if self.typical_gap_secs > 0.0 {
                span / (m * self.typical_gap_secs)
            } else {
                1.0
            };
            let time_scale = if ratio > LONG_GAP {
                ratio.sqrt().min(MAX_TIME_SCALE)
            } else {
                1.0
            };
            let z = sum.abs() / (m.sqrt() * self.sigma * time_scale);
            if z > best.0 {
                best = (z, sum);
            }
        }
        best
    }

    /// Whether a move of `total` (log-return from the last accepted mid) over `observations` consecutive
    /// implausible ticks, the last of which moved by `last_step`, is a genuine shock to re-anchor on: in
    /// the first `refractory_obs` accepted observations after a shock alarm, any move in the shock's
    /// direction (the market is still moving); otherwise a move of at least two observations that
    /// exceeds the alarm threshold and whose last step continues it by at least half the threshold (a
    /// market moving through levels, not bad prints repeating one wrong level). A lone print is never
    /// confirmed on its own: it may be a fat finger.
    pub fn confirms(&self, total: f64, last_step: f64, observations: usize) -> bool {
        if !self.warm() || !total.is_finite() || !last_step.is_finite() || total == 0.0 {
            return false;
        }
        if let Some(a) = &self.active
            && a.obs < self.cfg.refractory_obs
        {
            return total.signum() == a.direction;
        }
        if observations < 2 {
            return false;
        }
        let k = self.threshold();
        let z = total.abs() / ((observations as f64).sqrt() * self.sigma);
        z > k && last_step.signum() == total.signum() && last_step.abs() >= 0.5 * k * self.sigma
    }

    fn learn(&mut self, r: f64) {
        if self.reference.len() < self.cfg.window {
            self.reference.push(r);
        } else if let Some(slot) = self.reference.get_mut(self.head) {
            *slot = r;
            self.head = (self.head + 1) % self.cfg.window;
        }
        self.since_refit += 1;
        if self.since_refit >= self.cfg.refit_every || self.sigma == 0.0 {
            self.refit();
        }
    }

    /// Recomputes the reference sigma from the ring (see the module documentation).
    fn refit(&mut self) {
        self.since_refit = 0;
        let n = self.reference.len();
        if n < self.cfg.min_history {
            return;
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        if self.refits.is_multiple_of(SLOW_REFIT) || self.long_sigma == 0.0 {
            scratch.clear();
            scratch.extend(self.reference.iter().map(|r| r.abs()));
            let mean_abs = scratch.iter().sum::<f64>() / n as f64;
            let long = median(&mut scratch);
            self.long_sigma = (MAD_TO_SIGMA * long).max(0.5 * MEAN_ABS_TO_SIGMA * mean_abs);
        }
        self.refits += 1;
        // The newest `short_window` returns: those written just before `head` (or the tail while filling).
        scratch.clear();
        let s = self.cfg.short_window.min(n);
        scratch.extend((1..=s).filter_map(|i| {
            let idx = if n < self.cfg.window {
                n - i
            } else {
                (self.head + n - i) % n
            };
            self.reference.get(idx).map(|r| r.abs())
        }));
        let short = median(&mut scratch);
        self.scratch = scratch;
        let sigma = (MAD_TO_SIGMA * short).max(self.long_sigma).max(self.cfg.min_sigma);
        if sigma.is_finite() {
            self.sigma = sigma;
        }
    }
}

/// The median of `xs` (upper median), reordering it; 0 when empty.
fn median(xs: &mut [f64]) -> f64 {
    if xs.is_empty() {
        return 0.0;
    }
    let mid = xs.len() / 2;
    let (_, m, _) = xs.select_nth_unstable_by(mid, f64::total_cmp);
    *m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drift::testutil::SplitMix;

    /// A calm 1-second tick stream as `calm_random_walk` makes it: Student-t(4), GARCH(1,1) α 0.05 β 0.94.
    pub(super) fn calm_returns(seed: u64, n: usize, vol: f64) -> Vec<f64> {
        let mut rng = SplitMix::new(seed);
        let base = vol * vol;
        let mut var = base;
        (0..n)
            .map(|_| {
                let r = var.sqrt() * rng.student_t_unit(4);
                var = base * 0.01 + 0.05 * r * r + 0.94 * var;
                r
            })
            .collect()
    }

    fn run(d: &mut ShockDetector, rs: &[f64], spacing: f64, t0: usize) -> Vec<Alarm> {
        let mut out = Vec::new();
        for (i, &r) in rs.iter().enumerate() {
            d.update(((t0 + i) as f64 * spacing * 1e6) as i64, r, &mut out);
        }
        out
    }

    #[test]
    fn the_threshold_follows_the_spacing() {
        let c = ShockConfig::default();
        assert_eq!(c.threshold(0.0), 100.0);
        assert_eq!(c.threshold(0.001), 100.0);
        assert_eq!(c.threshold(86_400.0 * 3.0), 8.0);
        let ten_min = c.threshold(600.0);
        assert!((ten_min - 24.1).abs() < 0.2, "{ten_min}");
        assert!(c.validate().is_ok());
        assert!(
            ShockConfig {
                k_fast: 5.0,
                ..c.clone()
            }
            .validate()
            .is_err()
        );
        assert!(ShockConfig { max_obs: 0, ..c }.validate().is_err());
    }

    #[test]
    fn a_ten_percent_move_on_ten_minute_bars_alarms_within_two_bars() {
        let spacing = 600.0;
        let mut d = ShockDetector::default();
        let calm = calm_returns(7, 500, 5e-4);
        assert!(run(&mut d, &calm, spacing, 0).is_empty());
        let step = 1.1f64.ln() / 12.0;
        let alarms = run(&mut d, &[step; 12], spacing, 500);
        assert_eq!(alarms.len(), 1, "{alarms:?}");
        assert!(alarms[0].ts_us <= (501.0 * spacing * 1e6) as i64, "{alarms:?}");
        assert_eq!(alarms[0].detector, "shock");
        // The scale was frozen: the move did not widen it.
        assert!(d.in_shock());
    }

    #[test]
    fn one_shock_gives_one_alarm_until_both_refractory_limits_pass() {
        // 10,000 ticks a second: 20 observations are 2 ms, the minute rules (moves of 1,000 sigmas).
        let spacing = 1e-4;
        let mut d = ShockDetector::default();
        let calm = calm_returns(3, 2_000, 1e-5);
        run(&mut d, &calm, spacing, 0);
        let mut moves = vec![0.01; 3];
        moves.extend(calm_returns(4, 1_000, 1e-5));
        moves.extend([0.01; 3]);
        let alarms = run(&mut d, &moves, spacing, 2_000);
        assert_eq!(alarms.len(), 1, "{alarms:?}");
    }

    #[test]
    fn a_lone_print_is_not_confirmed_and_a_continuing_move_is() {
        let mut d = ShockDetector::default();
        run(&mut d, &calm_returns(5, 600, 5e-4), 600.0, 0);
        let s = d.sigma();
        assert!(s > 0.0);
        // One print 40 sigmas away: maybe a fat finger.
        assert!(!d.confirms(40.0 * s, 40.0 * s, 1));
        // Two prints at the same wrong level: the second does not continue the move.
        assert!(!d.confirms(40.0 * s, 0.5 * s, 2));
        // A market moving through levels.
        assert!(d.confirms(60.0 * s, 30.0 * s, 2));
        assert!(!d.confirms(60.0 * s, -30.0 * s, 2));
    }

    #[test]
    fn a_shock_vouches_for_moves_in_its_direction_only_for_a_while() {
        let mut d = ShockDetector::default();
        run(&mut d, &calm_returns(5, 600, 5e-4), 600.0, 0);
        let s = d.sigma();
        assert_eq!(run(&mut d, &[0.02, 0.02], 600.0, 600).len(), 1);
        assert!(d.confirms(30.0 * s, 30.0 * s, 1));
        assert!(!d.confirms(-30.0 * s, -30.0 * s, 1));
        run(&mut d, &calm_returns(6, 20, 5e-4), 600.0, 602);
        assert!(!d.confirms(30.0 * s, 30.0 * s, 1));
    }

    #[test]
    fn checkpoint_round_trip_gives_identical_outputs() {
        let rs = calm_returns(11, 3_000, 1e-4);
        let mut d = ShockDetector::default();
        run(&mut d, &rs[..1_234], 1.0, 0);
        let mut back: ShockDetector =
            serde_json::from_str(&serde_json::to_string(&d).unwrap_or_default()).unwrap_or_else(|e| panic!("{e}"));
        let mut tail = rs[1_234..].to_vec();
        tail[500] = 0.05;
        let a = run(&mut d, &tail, 1.0, 1_234);
        let b = run(&mut back, &tail, 1.0, 1_234);
        assert_eq!(a, b);
        assert_eq!(a.len(), 1);
        assert_eq!(d, back);
    }

    /// The null budget: calm 1-second ticks as `calm_random_walk` makes them, 1,000,000 per seed, raise at
    /// most one shock alarm each (about 0.1 s per million in the test profile).
    #[test]
    fn calm_ticks_stay_within_one_alarm_per_million() {
        for seed in [20_261_126, 1] {
            let mut d = ShockDetector::default();
            let alarms = run(&mut d, &calm_returns(seed, 1_000_000, 1e-4), 1.0, 0);
            println!("seed {seed}: {} shock alarms {alarms:?}", alarms.len());
            assert!(alarms.len() <= 1, "seed {seed}: {alarms:?}");
        }
    }
}

#[cfg(test)]
mod calibration {
    //! The null alarm rate on more seeds, and on 10-minute bars:
    //! `cargo test --release --lib drift::shock::calibration -- --ignored --nocapture`
    use super::tests::calm_returns;
    use super::*;

    #[test]
    #[ignore]
    fn null_rates() {
        for (spacing, n, seeds) in [(1.0, 1_000_000, 10u64), (600.0, 100_000, 10), (86_400.0, 10_000, 10)] {
            let mut total = 0;
            for seed in 0..seeds {
                let mut d = ShockDetector::default();
                let mut out = Vec::new();
                for (i, r) in calm_returns(seed, n, 1e-4).into_iter().enumerate() {
                    d.update((i as f64 * spacing * 1e6) as i64, r, &mut out);
                }
                total += out.len();
            }
            println!(
                "spacing {spacing} s: {total} alarms in {seeds} x {n} calm observations (threshold {:.1})",
                ShockConfig::default().threshold(spacing)
            );
        }
    }
}
