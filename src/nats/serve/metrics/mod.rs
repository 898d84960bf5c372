//! Prometheus metrics of the running service, and the health probes an orchestrator asks.
//!
//! Nothing here is on the tick path but [`PairMetrics`]'s atomics, which each shard owns for its pair. The
//! rest is read when Prometheus scrapes: quality, drift, accuracy and the model in service from each pair's
//! status snapshot (which queries already read), latencies from the same hdrhistograms STATS reports, the
//! process from `/proc`. The registry and the exposition format are prometheus-client's; [`collect`] only
//! says what each metric is.

pub mod collect;
pub mod config;
pub mod instances;
pub mod pair;
pub mod process;
pub mod rolling;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use config::MetricsConfig;
pub use pair::PairMetrics;

use super::micro::Endpoint;

/// Service-wide figures the metrics read that no other part keeps.
#[derive(Debug)]
pub struct Telemetry {
    /// When the service started (monotonic), the origin of arrival offsets.
    pub started: Instant,
    /// The same moment as Unix seconds.
    pub started_unix: f64,
    /// Accuracy window of each pair, seconds of tick time.
    pub accuracy_window_secs: f64,
    /// State restored, subscriptions made and the micro service answering: consuming.
    consuming: AtomicBool,
    /// The shutdown began.
    stopping: AtomicBool,
    /// cambio instances that answered the last `$SRV.PING.cambio` (0 before the first count).
    pub instances: AtomicU64,
    /// The micro service's endpoints, for request counts and latencies.
    endpoints: Mutex<Vec<Arc<Endpoint>>>,
}

impl Telemetry {
    /// Figures of a service starting now.
    pub fn new(accuracy_window_secs: f64) -> Telemetry {
        Telemetry {
            started: Instant::now(),
            started_unix: super::router::now_us() as f64 / 1e6,
            accuracy_window_secs,
            consuming: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            instances: AtomicU64::new(0),
            endpoints: Mutex::new(Vec::new()),
        }
    }

    /// Fresh counters for a pair whose shard starts.
    pub fn pair(&self) -> Arc<PairMetrics> {
        Arc::new(PairMetrics::new(self.started, self.accuracy_window_secs))
    }

    /// The service consumes ticks (state restored, subscriptions and endpoints up).
    pub fn set_consuming(&self) {
        self.consuming.store(true, Ordering::Release);
    }

    /// The shutdown began: not ready any more.
    pub fn set_stopping(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Consuming and not stopping (the NATS connection is checked by the caller).
    pub fn consuming(&self) -> bool {
        self.consuming.load(Ordering::Acquire) && !self.stopping.load(Ordering::Acquire)
    }

    /// The endpoints whose requests are reported.
    pub fn set_endpoints(&self, endpoints: Vec<Arc<Endpoint>>) {
        if let Ok(mut e) = self.endpoints.lock() {
            *e = endpoints;
        }
    }

    /// The endpoints.
    pub fn endpoints(&self) -> Vec<Arc<Endpoint>> {
        self.endpoints.lock().map(|e| e.clone()).unwrap_or_default()
    }
}
