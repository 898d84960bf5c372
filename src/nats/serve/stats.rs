//! Counters and latency histograms of the running service, reported through the micro service's STATS.
//!
//! Latencies go into hdrhistograms (bounded memory, fixed relative precision); each shard and each
//! endpoint records into its own histogram, so the tick path only takes an uncontended lock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::contract::{Percentiles, ServiceCounters};
use hdrhistogram::Histogram;

/// A latency histogram in microseconds (1 µs to 60 s, 3 significant digits).
#[derive(Debug)]
pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Mutex::new(empty()))
    }
}

impl Latency {
    /// Records one latency (clamped into the histogram's range).
    pub fn record_us(&self, us: u64) {
        if let Ok(mut h) = self.0.lock() {
            h.saturating_record(us.max(1));
        }
    }

    /// Adds this histogram's counts into `into`.
    pub fn merge_into(&self, into: &mut Histogram<u64>) {
        if let Ok(h) = self.0.lock() {
            let _ = into.add(&*h);
        }
    }

    /// Its percentiles.
    pub fn report(&self) -> Percentiles {
        let mut h = empty();
        self.merge_into(&mut h);
        percentiles(&h)
    }
}

/// An empty histogram with the same bounds as [`Latency`].
pub fn empty() -> Histogram<u64> {
    // Bounds and precision are constants that hdrhistogram accepts; failure would be a broken invariant.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The histogram's percentiles.
pub fn percentiles(h: &Histogram<u64>) -> Percentiles {
    Percentiles {
        count: h.len(),
        p50_us: h.value_at_quantile(0.50),
        p90_us: h.value_at_quantile(0.90),
        p99_us: h.value_at_quantile(0.99),
        p999_us: h.value_at_quantile(0.999),
        max_us: h.max(),
    }
}

/// Service-wide counters.
#[derive(Debug, Default)]
pub struct Counters {
    /// Tick messages received.
    pub ticks: AtomicU64,
    /// Forecasts published.
    pub forecasts: AtomicU64,
    /// Ticks quarantined (any reason, including unparseable payloads).
    pub quarantined: AtomicU64,
    /// Messages on a tick subject whose last token is not a pair.
    pub bad_subjects: AtomicU64,
    /// Factor messages applied.
    pub factors: AtomicU64,
    /// Factor messages refused (malformed).
    pub bad_factors: AtomicU64,
    /// Publications that failed (the client's buffer was closed).
    pub publish_errors: AtomicU64,
    /// JetStream redeliveries skipped because the tick was already applied.
    pub redeliveries_skipped: AtomicU64,
    /// Requests answered with an error.
    pub request_errors: AtomicU64,
    /// Pairs refused because `max_pairs` was reached.
    pub pairs_refused: AtomicU64,
    /// Messages on the subject of a pair with no shard that were not a valid tick: no shard was started
    /// for them (they are quarantined on `<prefix>.quarantine._unrouted`).
    pub pairs_not_started: AtomicU64,
    /// Idle pairs whose shard was stopped (`serve.idle_evict_secs`).
    pub pairs_evicted: AtomicU64,
    /// Checkpoint cuts committed to the store.
    pub checkpoints: AtomicU64,
    /// Checkpoint cuts that failed (encoding or the store).
    pub checkpoint_errors: AtomicU64,
    /// Core mode: ticks the NATS client dropped because the subscription buffer was full (exact; set,
    /// not added to, by [`super::ticks::CountedTicks`]).
    pub ticks_dropped: AtomicU64,
    /// Checkpoint cut requested → committed (µs), for the metrics' histogram.
    pub checkpoint_duration: Latency,
    /// Unix time (ms) of the last committed cut; 0 before the first.
    pub checkpoint_last_ok_ms: AtomicU64,
    /// Periodic retraining runs (`[retrain]`), per pair, by outcome, in the order of
    /// [`RETRAIN_OUTCOMES`].
    pub retrain_runs: [AtomicU64; 4],
    /// Duration of the last retraining run (ms); 0 before the first.
    pub retrain_last_ms: AtomicU64,
}

/// The outcomes of a periodic retraining run, as counted in [`Counters::retrain_runs`] and named in the
/// `retrain` alert.
pub const RETRAIN_OUTCOMES: [&str; 4] = ["challenged", "awaiting_approval", "refused", "failed"];

impl Counters {
    /// Adds one to a counter.
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The counters now.
    pub fn report(&self) -> ServiceCounters {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ServiceCounters {
            ticks: g(&self.ticks),
            forecasts: g(&self.forecasts),
            quarantined: g(&self.quarantined),
            bad_subjects: g(&self.bad_subjects),
            factors: g(&self.factors),
            bad_factors: g(&self.bad_factors),
            publish_errors: g(&self.publish_errors),
            redeliveries_skipped: g(&self.redeliveries_skipped),
            request_errors: g(&self.request_errors),
            pairs_refused: g(&self.pairs_refused),
            pairs_not_started: g(&self.pairs_not_started),
            pairs_evicted: g(&self.pairs_evicted),
            checkpoints: g(&self.checkpoints),
            checkpoint_errors: g(&self.checkpoint_errors),
            ticks_dropped: g(&self.ticks_dropped),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_recorded_latencies() {
        let l = Latency::default();
        for us in 1..=1000 {
            l.record_us(us);
        }
        l.record_us(u64::MAX); // clamped, not a panic
        let r = l.report();
        assert_eq!(r.count, 1001);
        assert!((495..=505).contains(&r.p50_us), "{}", r.p50_us);
        assert!(r.max_us >= 59_000_000);
    }
}
