//! One pair's metrics, owned by its shard: atomics it bumps on the tick path (no lock, nothing shared with
//! other pairs; the shard is the only writer), the rare alarm counts, and the rolling accuracy it
//! refreshes with its status snapshot.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::rolling::{RollingAccuracy, WindowAccuracy};
use crate::tick::QuarantineReason;

/// One alarm series: the signal and the detector that fired, and how many times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmCount {
    /// The signal's name (`input`, `prediction`, `residual`).
    pub signal: &'static str,
    /// The detector's name (`level_cusum`, `shock`, …).
    pub detector: &'static str,
    /// Alarms raised.
    pub alarms: u64,
}

/// The counters of one pair since its shard started.
#[derive(Debug)]
pub struct PairMetrics {
    /// When the service started: arrival times are kept as offsets from it.
    started: Instant,
    /// Tick messages handed to the engine.
    pub received: AtomicU64,
    /// Ticks the engine accepted (each gives a forecast).
    pub accepted: AtomicU64,
    /// Forecasts handed to the client.
    pub forecasts: AtomicU64,
    quarantined: [AtomicU64; QuarantineReason::ALL.len()],
    /// Model adaptations.
    pub adaptations: AtomicU64,
    /// Challengers promoted.
    pub promotions: AtomicU64,
    /// Automatic rollbacks.
    pub rollbacks: AtomicU64,
    /// µs after `started` at which the last tick was received, plus one (0: none yet).
    last_received_us: AtomicU64,
    alarms: Mutex<Vec<AlarmCount>>,
    accuracy: Mutex<RollingAccuracy>,
}

impl PairMetrics {
    /// Zeroed counters; accuracy over `accuracy_window_secs` of tick time.
    pub fn new(started: Instant, accuracy_window_secs: f64) -> PairMetrics {
        PairMetrics {
            started,
            received: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            forecasts: AtomicU64::new(0),
            quarantined: std::array::from_fn(|_| AtomicU64::new(0)),
            adaptations: AtomicU64::new(0),
            promotions: AtomicU64::new(0),
            rollbacks: AtomicU64::new(0),
            last_received_us: AtomicU64::new(0),
            alarms: Mutex::new(Vec::new()),
            accuracy: Mutex::new(RollingAccuracy::new(accuracy_window_secs)),
        }
    }

    /// Adds one to a counter. Only the pair's shard writes its counters, so a plain load and store is
    /// enough (no locked read-modify-write on the tick path); readers see each value whole.
    pub fn inc(c: &AtomicU64) {
        c.store(c.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// A tick received at `at`.
    pub fn on_received(&self, at: Instant) {
        Self::inc(&self.received);
        let us = u64::try_from(at.saturating_duration_since(self.started).as_micros()).unwrap_or(u64::MAX - 1);
        self.last_received_us.store(us + 1, Ordering::Relaxed);
    }

    /// A tick quarantined for `reason`.
    pub fn on_quarantined(&self, reason: QuarantineReason) {
        if let Some(c) = self.quarantined.get(reason.index()) {
            Self::inc(c);
        }
    }

    /// An alarm of `detector` on `signal`.
    pub fn on_alarm(&self, signal: &'static str, detector: &'static str) {
        if let Ok(mut a) = self.alarms.lock() {
            match a.iter_mut().find(|c| c.signal == signal && c.detector == detector) {
                Some(c) => c.alarms += 1,
                None => a.push(AlarmCount {
                    signal,
                    detector,
                    alarms: 1,
                }),
            }
        }
    }

    /// Refreshes the rolling accuracy from the engine's running sums at tick time `now_us`.
    pub fn update_accuracy(
        &self,
        now_us: i64,
        sums: impl Iterator<Item = (crate::horizon::Horizon, crate::eval::AccuracySums)>,
    ) {
        if let Ok(mut a) = self.accuracy.lock() {
            a.update(now_us, sums);
        }
    }

    /// Tick time between two snapshots of the rolling accuracy (see [`RollingAccuracy::step_us`]).
    pub fn accuracy_step_us(&self) -> i64 {
        self.accuracy.lock().map(|a| a.step_us()).unwrap_or(i64::MAX)
    }

    /// Quarantines per reason that occurred.
    pub fn quarantined(&self) -> Vec<(QuarantineReason, u64)> {
        QuarantineReason::ALL
            .iter()
            .map(|r| (*r, self.quarantined[r.index()].load(Ordering::Relaxed)))
            .filter(|(_, n)| *n > 0)
            .collect()
    }

    /// Alarm counts per signal and detector.
    pub fn alarms(&self) -> Vec<AlarmCount> {
        self.alarms.lock().map(|a| a.clone()).unwrap_or_default()
    }

    /// Accuracy over the window, per horizon.
    pub fn accuracy(&self) -> Vec<WindowAccuracy> {
        self.accuracy.lock().map(|a| a.figures()).unwrap_or_default()
    }

    /// When the last tick was received, as an offset from the service's start; `None` before the first.
    pub fn last_received(&self) -> Option<std::time::Duration> {
        match self.last_received_us.load(Ordering::Relaxed) {
            0 => None,
            n => Some(std::time::Duration::from_micros(n - 1)),
        }
    }

    /// A counter's value.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
