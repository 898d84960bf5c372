//! Status hysteresis: a dimension's status enters Warn or Fail as soon as its score crosses the threshold,
//! and leaves only after the score has recovered by a margin and held it for a dwell counted in ticks and
//! in tick time (see [`StatusHysteresis`]). Without it a score hovering at a threshold changes status on
//! every other tick.

use serde::{Deserialize, Serialize};

use super::config::StatusHysteresis;
use super::scores::Status;

/// Per dimension, when the score first stood recovered while the shown status is still worse:
/// `(tick count, tick time)`. `Default` is "nothing pending".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StatusGate {
    recovering: [Option<(u64, i64)>; 6],
}

impl StatusGate {
    /// True when no status is recovering (the caller may skip the step while the raw statuses equal the
    /// shown ones).
    pub(crate) fn is_idle(&self) -> bool {
        self.recovering.iter().all(Option::is_none)
    }

    /// Moves the shown statuses towards the raw ones. `raw` are the statuses under the configured
    /// thresholds; `recovered` (worked out only when needed) those under thresholds tightened by the
    /// margin. `tick` counts ticks received and `now_us` is tick time. Returns true when a shown status
    /// changed.
    pub(crate) fn step(
        &mut self,
        shown: &mut [Status; 6],
        raw: [Status; 6],
        recovered: impl FnOnce() -> [Status; 6],
        cfg: &StatusHysteresis,
        tick: u64,
        now_us: i64,
    ) -> bool {
        let mut changed = false;
        let mut recovered_cache = None;
        let mut recovered = Some(recovered);
        for i in 0..shown.len() {
            let (Some(s), Some(&r), Some(pending)) = (shown.get_mut(i), raw.get(i), self.recovering.get_mut(i)) else {
                continue;
            };
            if r >= *s {
                // Worse (entered at once) or unchanged: nothing pending.
                if r > *s {
                    *s = r;
                    changed = true;
                }
                *pending = None;
                continue;
            }
            let better = *recovered_cache.get_or_insert_with(|| recovered.take().map_or(raw, |f| f()));
            let target = better.get(i).copied().unwrap_or(r).max(r);
            if target >= *s {
                *pending = None;
                continue;
            }
            let (t0, u0) = *pending.get_or_insert((tick, now_us));
            if tick.saturating_sub(t0) >= cfg.dwell_ticks && now_us.saturating_sub(u0) >= cfg.dwell_us {
                *s = target;
                *pending = None;
                changed = true;
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Status::*;

    #[test]
    fn enters_at_once_and_leaves_after_the_dwell_in_ticks_and_time() {
        let cfg = StatusHysteresis {
            recovery_margin: 0.5,
            dwell_ticks: 10,
            dwell_us: 100,
        };
        let mut g = StatusGate::default();
        let mut shown = [Ok; 6];
        let fail = [Fail, Ok, Ok, Ok, Ok, Ok];
        assert!(g.step(&mut shown, fail, || unreachable!(), &cfg, 0, 0));
        assert_eq!(shown[0], Fail);
        // Raw Ok but not recovered by the margin: stays Fail.
        assert!(!g.step(&mut shown, [Ok; 6], || fail, &cfg, 1, 1));
        // Recovered: the dwell starts; both counts must pass.
        assert!(!g.step(&mut shown, [Ok; 6], || [Ok; 6], &cfg, 2, 2));
        assert!(!g.step(&mut shown, [Ok; 6], || [Ok; 6], &cfg, 12, 50));
        assert!(!g.step(&mut shown, [Ok; 6], || [Ok; 6], &cfg, 5_000, 101));
        assert!(g.step(&mut shown, [Ok; 6], || [Ok; 6], &cfg, 5_001, 102));
        assert_eq!(shown, [Ok; 6]);
        // With the gate off the shown status follows the raw one.
        let mut shown = [Warn; 6];
        assert!(g.step(&mut shown, [Ok; 6], || [Ok; 6], &StatusHysteresis::OFF, 0, 0));
        assert_eq!(shown, [Ok; 6]);
    }
}
