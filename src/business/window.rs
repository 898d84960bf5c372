//! A sliding window of event time built from a fixed number of sub-buckets, so its memory is bounded
//! whatever the event rate: a period of `span` is [`SUB_BUCKETS`] buckets of `span / SUB_BUCKETS` each,
//! kept in a ring. The window ends at the bucket of the latest event and covers the [`SUB_BUCKETS`]
//! buckets up to it (between 29/30 and all of the period, depending on where in its bucket the latest
//! event falls). An event older than the window is not counted in it (it still counts since start).
//!
//! Each bucket keeps, per segment, counts and sums (cheap to add up on every event, for the disparity
//! statistic) and a distinct-client sketch allocated on the bucket's first event of that segment (merged
//! only when figures are read).

use super::hll::HyperLogLog;

/// Sub-buckets per period: the window slides by a thirtieth of the period (2 minutes for `1h`).
pub const SUB_BUCKETS: i64 = 30;

/// Counts and sums of one segment over one bucket (or a whole window, once added up).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    /// Offers.
    pub offers: u64,
    /// Acceptances.
    pub acceptances: u64,
    /// Rejections.
    pub rejections: u64,
    /// Sum of offered amounts.
    pub offered_amount: f64,
    /// Sum of accepted amounts.
    pub accepted_amount: f64,
    /// Offers compared with a forecast.
    pub with_reference: u64,
    /// Offers made while the pair had no forecast.
    pub without_reference: u64,
    /// Sum of |rate − mid| / sigma over offers with a reference.
    pub mid_sum: f64,
    /// Sum of |rate − forecast| / sigma.
    pub forecast_sum: f64,
    /// Sum of its squares (for the disparity's variance).
    pub forecast_sumsq: f64,
}

impl Counts {
    /// Adds `o` into `self`.
    pub fn add(&mut self, o: &Counts) {
        self.offers += o.offers;
        self.acceptances += o.acceptances;
        self.rejections += o.rejections;
        self.offered_amount += o.offered_amount;
        self.accepted_amount += o.accepted_amount;
        self.with_reference += o.with_reference;
        self.without_reference += o.without_reference;
        self.mid_sum += o.mid_sum;
        self.forecast_sum += o.forecast_sum;
        self.forecast_sumsq += o.forecast_sumsq;
    }
}

/// One segment in one bucket.
#[derive(Debug, Clone, Default)]
struct Cell {
    counts: Counts,
    clients: Option<Box<HyperLogLog>>,
}

/// One sub-bucket: its number (event time / width) and a cell per segment.
#[derive(Debug, Clone)]
struct Bucket {
    index: i64,
    cells: Vec<Cell>,
}

/// A sliding window of one period over every segment.
#[derive(Debug, Clone)]
pub struct Window {
    width_us: i64,
    buckets: Vec<Bucket>,
    /// The latest event's bucket number.
    newest: Option<i64>,
}

impl Window {
    /// A window of `span_us` (positive) for `segments` segments.
    pub fn new(span_us: i64, segments: usize) -> Window {
        let width_us = (span_us.max(SUB_BUCKETS) + SUB_BUCKETS - 1) / SUB_BUCKETS;
        let buckets = (0..SUB_BUCKETS)
            .map(|_| Bucket {
                index: i64::MIN,
                cells: vec![Cell::default(); segments],
            })
            .collect();
        Window {
            width_us,
            buckets,
            newest: None,
        }
    }

    fn live(&self, index: i64) -> bool {
        self.newest
            .is_some_and(|n| index > n.saturating_sub(SUB_BUCKETS) && index <= n)
    }

    /// Counts an event of `segment` at `ts_us`: `update` changes the segment's counts, `client` goes into its
    /// sketch. Returns false (nothing counted) for an event older than the window.
    pub fn record(&mut self, ts_us: i64, segment: usize, client: u64, update: impl FnOnce(&mut Counts)) -> bool {
        let index = ts_us.div_euclid(self.width_us);
        match self.newest {
            Some(n) if index <= n.saturating_sub(SUB_BUCKETS) => return false,
            Some(n) if index <= n => {}
            _ => self.newest = Some(index),
        }
        let slot = usize::try_from(index.rem_euclid(SUB_BUCKETS)).unwrap_or(0);
        let Some(bucket) = self.buckets.get_mut(slot) else {
            return false;
        };
        if bucket.index != index {
            // A bucket from an earlier turn of the ring: its events have left the window.
            bucket.index = index;
            for c in &mut bucket.cells {
                *c = Cell::default();
            }
        }
        let Some(cell) = bucket.cells.get_mut(segment) else {
            return false;
        };
        update(&mut cell.counts);
        cell.clients.get_or_insert_with(Box::default).insert_hash(client);
        true
    }

    /// Each segment's counts over the window.
    pub fn counts(&self) -> Vec<Counts> {
        let segments = self.buckets.first().map_or(0, |b| b.cells.len());
        let mut out = vec![Counts::default(); segments];
        for b in self.buckets.iter().filter(|b| self.live(b.index)) {
            for (o, c) in out.iter_mut().zip(&b.cells) {
                o.add(&c.counts);
            }
        }
        out
    }

    /// The distinct clients of `segment` (every segment with `None`) over the window.
    pub fn clients(&self, segment: Option<usize>) -> HyperLogLog {
        let mut h = HyperLogLog::default();
        for b in self.buckets.iter().filter(|b| self.live(b.index)) {
            for (i, c) in b.cells.iter().enumerate() {
                if segment.is_none_or(|s| s == i)
                    && let Some(sketch) = &c.clients
                {
                    // Every sketch here has the default precision.
                    let _ = h.merge(sketch);
                }
            }
        }
        h
    }

    /// The window's start (µs): events at or after it are in it; `None` before the first event.
    pub fn from_us(&self) -> Option<i64> {
        self.newest
            .map(|n| n.saturating_sub(SUB_BUCKETS - 1).saturating_mul(self.width_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000_000;

    fn offer(c: &mut Counts) {
        c.offers += 1;
    }

    /// A uniform 64-bit hash standing for client `i`'s pseudonym (splitmix64).
    fn h(i: i64) -> u64 {
        let mut z = (i as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    #[test]
    fn slides_with_event_time_and_forgets_old_buckets() {
        // One hour in 2-minute buckets.
        let mut w = Window::new(60 * MIN, 2);
        for m in 0..60 {
            assert!(w.record(m * MIN, 0, h(m), offer));
        }
        assert_eq!(w.counts()[0].offers, 60);
        assert_eq!(w.from_us(), Some(0));
        // 30 minutes later: the first 30 minutes (15 buckets) have left the window.
        assert!(w.record(89 * MIN, 1, h(1000), offer));
        let c = w.counts();
        assert_eq!(c[0].offers, 30);
        assert_eq!(c[1].offers, 1);
        assert_eq!(w.from_us(), Some(30 * MIN));
        // A late event inside the window counts; one older than it does not.
        assert!(w.record(31 * MIN, 1, h(1001), offer));
        assert!(!w.record(29 * MIN, 1, h(1002), offer));
        assert_eq!(w.counts()[1].offers, 2);
        // Distinct clients: 30 in segment 0 (minutes 30..59), 2 in segment 1.
        let all = w.clients(None).estimate().round();
        assert_eq!(all, 32.0);
        assert_eq!(w.clients(Some(1)).estimate().round(), 2.0);
        // A jump of more than the period empties the window but the latest event.
        assert!(w.record(1000 * MIN, 0, 7, offer));
        assert_eq!(w.counts()[0].offers, 1);
        assert_eq!(w.counts()[1].offers, 0);
    }

    #[test]
    fn negative_times_and_tiny_spans_do_not_break_it() {
        let mut w = Window::new(1, 1);
        assert!(w.record(-5, 0, 1, offer));
        assert!(w.record(i64::MAX, 0, 2, offer));
        assert!(!w.record(i64::MIN, 0, 3, offer));
        assert_eq!(w.counts()[0].offers, 1);
    }
}
