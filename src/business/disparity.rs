//! The disparity signal: whether one segment's uptake, or how far its quotes sit from the model's
//! forecast, drifts away from the other segments' pooled over a period (the bias-by-segment watch).
//!
//! Two statistics per segment and period, each computed only with at least `min_count` offers (offers
//! with a forecast, for the distance) on both sides:
//! - uptake: the two-proportion z test, `(p₁ − p₂) / sqrt(p̂ (1 − p̂) (1/n₁ + 1/n₂))` with the pooled `p̂`;
//! - distance: Welch's z, `(m₁ − m₂) / sqrt(s₁²/n₁ + s₂²/n₂)` on the absolute distances from the forecast in
//!   sigmas.
//!
//! The segment's statistic is the larger in size of the two. An alarm is raised when it exceeds the
//! threshold; it stands until the statistic falls below the (lower) clear level (hysteresis), and the same
//! segment and period cannot raise again within one period of event time after an alarm (refractory: a new
//! alarm needs a window of fresh events), so a statistic hovering at the threshold does not flap.

use super::window::Counts;

/// Largest size a statistic is reported with (a side with no variance would otherwise give infinity).
pub const MAX_Z: f64 = 1e6;

/// When a statistic raises and clears an alarm.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DisparityRule {
    /// Raise above this.
    pub threshold: f64,
    /// Clear below this.
    pub clear: f64,
    /// Offers needed on each side.
    pub min_count: u64,
}

/// The two-proportion z of `seg`'s uptake against `others'`; `None` below `min_count` offers on a side.
pub fn uptake_z(seg: &Counts, others: &Counts, min_count: u64) -> Option<f64> {
    let (n1, n2) = (seg.offers, others.offers);
    if n1 < min_count || n2 < min_count || n1 == 0 || n2 == 0 {
        return None;
    }
    // Acceptances of offers made before the window can exceed its offers: a proportion stays within 0..1.
    let (x1, x2) = (seg.acceptances.min(n1), others.acceptances.min(n2));
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let (p1, p2) = (x1 as f64 / n1f, x2 as f64 / n2f);
    let pooled = (x1 + x2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    Some(ratio(p1 - p2, se))
}

/// Welch's z of `seg`'s mean distance from the forecast against `others'`; `None` below `min_count` offers
/// with a reference on a side.
pub fn distance_z(seg: &Counts, others: &Counts, min_count: u64) -> Option<f64> {
    let (n1, n2) = (seg.with_reference, others.with_reference);
    if n1 < min_count.max(2) || n2 < min_count.max(2) {
        return None;
    }
    let moments = |c: &Counts| {
        let n = c.with_reference as f64;
        let mean = c.forecast_sum / n;
        let var = ((c.forecast_sumsq - n * mean * mean) / (n - 1.0)).max(0.0);
        (mean, var, n)
    };
    let (m1, v1, n1) = moments(seg);
    let (m2, v2, n2) = moments(others);
    Some(ratio(m1 - m2, (v1 / n1 + v2 / n2).sqrt()))
}

/// `diff / se`, 0 when both are 0, and kept within ±[`MAX_Z`].
fn ratio(diff: f64, se: f64) -> f64 {
    if !diff.is_finite() || !se.is_finite() {
        return 0.0;
    }
    if se <= 0.0 {
        return if diff == 0.0 { 0.0 } else { MAX_Z.copysign(diff) };
    }
    (diff / se).clamp(-MAX_Z, MAX_Z)
}

/// The larger in size of two optional statistics.
pub fn statistic(uptake: Option<f64>, distance: Option<f64>) -> Option<f64> {
    match (uptake, distance) {
        (Some(u), Some(d)) => Some(if d.abs() > u.abs() { d } else { u }),
        (u, d) => u.or(d),
    }
}

/// One segment and period's alarm: standing or not, and when it was last raised.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct AlarmState {
    standing: bool,
    last_raised_us: Option<i64>,
}

impl AlarmState {
    /// Whether an alarm stands.
    pub fn standing(&self) -> bool {
        self.standing
    }

    /// Takes the statistic at event time `ts_us`; true when an alarm is raised now. No statistic (too few
    /// offers) changes nothing.
    pub fn update(&mut self, stat: Option<f64>, ts_us: i64, rule: &DisparityRule, refractory_us: i64) -> bool {
        let Some(z) = stat.map(f64::abs) else {
            return false;
        };
        if self.standing {
            if z < rule.clear {
                self.standing = false;
            }
            return false;
        }
        let rested = self
            .last_raised_us
            .is_none_or(|t| ts_us.saturating_sub(t) >= refractory_us);
        if z > rule.threshold && rested {
            self.standing = true;
            self.last_raised_us = Some(ts_us);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(offers: u64, acceptances: u64) -> Counts {
        Counts {
            offers,
            acceptances,
            ..Counts::default()
        }
    }

    #[test]
    fn uptake_z_matches_the_textbook() {
        // 60/100 against 40/100: pooled 0.5, se = sqrt(0.25 * 0.02) = 0.0707…, z = 0.2 / se = 2.828…
        let z = uptake_z(&side(100, 60), &side(100, 40), 30).unwrap();
        assert!((z - 2.0 * 2f64.sqrt()).abs() < 1e-12, "{z}");
        assert_eq!(uptake_z(&side(29, 20), &side(100, 40), 30), None);
        assert_eq!(uptake_z(&side(50, 50), &side(50, 50), 30), Some(0.0));
        // Acceptances above offers count as every offer taken: 1 against 0, pooled 0.5, se 0.1.
        assert_eq!(uptake_z(&side(50, 90), &side(50, 0), 30), Some(10.0));
        assert_eq!(ratio(0.5, 0.0), MAX_Z);
        assert_eq!(ratio(f64::NAN, 1.0), 0.0);
    }

    #[test]
    fn distance_z_is_welch() {
        let mut a = Counts::default();
        let mut b = Counts::default();
        for (i, c) in [&mut a, &mut b].into_iter().enumerate() {
            for k in 0..40 {
                let d = if i == 0 { 2.0 } else { 1.0 } + if k % 2 == 0 { 0.5 } else { -0.5 };
                c.with_reference += 1;
                c.forecast_sum += d;
                c.forecast_sumsq += d * d;
            }
        }
        // Means 2 and 1, each variance 0.25 * 40/39: z = 1 / sqrt(2 * 0.2564/40) ≈ 8.83.
        let z = distance_z(&a, &b, 30).unwrap();
        let expected = 1.0 / (2.0 * 0.25 * 40.0 / 39.0 / 40.0f64).sqrt();
        assert!((z - expected).abs() < 1e-9, "{z} {expected}");
        assert_eq!(statistic(Some(1.0), Some(-3.0)), Some(-3.0));
        assert_eq!(statistic(None, Some(2.0)), Some(2.0));
        assert_eq!(statistic(None, None), None);
    }

    #[test]
    fn hysteresis_and_refractory_stop_flapping() {
        let rule = DisparityRule {
            threshold: 4.0,
            clear: 2.0,
            min_count: 30,
        };
        let mut s = AlarmState::default();
        let period = 100;
        assert!(!s.update(Some(3.9), 0, &rule, period));
        assert!(s.update(Some(4.1), 1, &rule, period));
        // Hovering around the threshold: no new alarm while it stands.
        for (t, z) in [(2, 3.9), (3, 4.2), (4, 3.0), (5, 4.5)] {
            assert!(!s.update(Some(z), t, &rule, period));
            assert!(s.standing());
        }
        assert!(!s.update(None, 6, &rule, period));
        assert!(s.standing());
        assert!(!s.update(Some(1.0), 7, &rule, period));
        assert!(!s.standing());
        // Cleared, but within the refractory period: no alarm yet, and one once it has passed.
        assert!(!s.update(Some(-5.0), 50, &rule, period));
        assert!(s.update(Some(-5.0), 101, &rule, period));
    }
}
