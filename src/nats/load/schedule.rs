//! The open-loop schedule: message `i` is due at `start + i / rate`, computed from `i` every time rather
//! than by sleeping a fixed gap, so timer slack and slow sends never accumulate into a lower rate.
//!
//! When the sender falls behind it sends everything already due at once and the lag shows up in the
//! measured latency (for queries, measured from the scheduled instant) instead of silently lowering the
//! offered load: the coordinated-omission trap.

use std::time::{Duration, Instant};

/// Due instants of a constant-rate stream of messages.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    rate_per_sec: u64,
}

const NANOS_PER_SEC: u128 = 1_000_000_000;

impl Schedule {
    /// `rate_per_sec` messages a second from `start` (a rate of 0 is taken as 1).
    pub fn new(start: Instant, rate_per_sec: u64) -> Schedule {
        Schedule {
            start,
            rate_per_sec: rate_per_sec.max(1),
        }
    }

    /// The first message's instant.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The offset of message `i` from the start: `i / rate` rounded up to the nanosecond, computed from `i`
    /// so no rounding accumulates (rounded up, so a message is never due before its exact instant).
    pub fn offset(&self, i: u64) -> Duration {
        let ns = (u128::from(i) * NANOS_PER_SEC).div_ceil(u128::from(self.rate_per_sec));
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// When message `i` is due.
    pub fn at(&self, i: u64) -> Instant {
        self.start + self.offset(i)
    }

    /// How many messages are due by `elapsed` after the start: every `i` with `offset(i) <= elapsed`.
    pub fn due_by(&self, elapsed: Duration) -> u64 {
        let n = elapsed.as_nanos() * u128::from(self.rate_per_sec) / NANOS_PER_SEC + 1;
        u64::try_from(n).unwrap_or(u64::MAX)
    }

    /// How many messages are due by `now`.
    pub fn due_at(&self, now: Instant) -> u64 {
        self.due_by(now.saturating_duration_since(self.start))
    }

    /// Messages in a run of `duration` (the count whose offset is strictly before `duration`).
    pub fn count_in(&self, duration: Duration) -> u64 {
        let n = (duration.as_nanos() * u128::from(self.rate_per_sec)).div_ceil(NANOS_PER_SEC);
        u64::try_from(n).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_exact_and_do_not_drift() {
        let t0 = Instant::now();
        let s = Schedule::new(t0, 3);
        assert_eq!(s.offset(0), Duration::ZERO);
        assert_eq!(s.offset(1), Duration::from_nanos(333_333_334));
        assert_eq!(s.offset(3), Duration::from_secs(1), "no accumulated rounding");
        let s = Schedule::new(t0, 10_000);
        assert_eq!(s.offset(10_000 * 3_600), Duration::from_secs(3_600));
        assert_eq!(s.at(5), t0 + Duration::from_micros(500));
    }

    #[test]
    fn due_counts_agree_with_instants() {
        let t0 = Instant::now();
        for rate in [1, 3, 7, 1_000, 9_999, 10_000, 123_457] {
            let s = Schedule::new(t0, rate);
            for i in [0u64, 1, 2, 17, 1_000, 99_999] {
                let off = s.offset(i);
                assert_eq!(
                    s.due_by(off),
                    i + 1,
                    "rate {rate}, message {i} is due at its own instant"
                );
                if off > Duration::ZERO {
                    assert_eq!(s.due_by(off - Duration::from_nanos(1)), i, "rate {rate}, not before");
                }
            }
        }
        assert_eq!(Schedule::new(t0, 0).due_by(Duration::from_secs(2)), 3, "rate 0 is 1/s");
    }

    #[test]
    fn a_run_holds_rate_times_duration_messages() {
        let s = Schedule::new(Instant::now(), 10_000);
        assert_eq!(s.count_in(Duration::from_secs(10)), 100_000);
        assert_eq!(s.count_in(Duration::from_millis(1)), 10);
        let s = Schedule::new(Instant::now(), 3);
        assert_eq!(s.count_in(Duration::from_secs(1)), 3);
        assert_eq!(s.count_in(Duration::from_millis(1_001)), 4);
    }
}
