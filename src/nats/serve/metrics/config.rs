//! The `[metrics]` table: where the Prometheus endpoint listens and how its figures are computed.

use serde::{Deserialize, Serialize};

/// The `[metrics]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `HOST:PORT` of the HTTP endpoint (`/metrics`, `/healthz`, `/readyz`); none = no endpoint (the
    /// figures are still kept, for STATS).
    pub listen: Option<String>,
    /// Forecast accuracy is reported over this much tick time (seconds): recent accuracy, which the
    /// cumulative figures of `fx.status` dilute in the whole history.
    pub accuracy_window_secs: f64,
    /// Seconds between two counts of the cambio instances answering on the bus (`cambio_instances`).
    pub instances_every_secs: f64,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: None,
            accuracy_window_secs: 3600.0,
            instances_every_secs: 15.0,
        }
    }
}

impl MetricsConfig {
    /// Checks the values.
    ///
    /// # Errors
    /// A message for people when a value is out of range or the address is empty.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(l) = &self.listen
            && l.trim().is_empty()
        {
            return Err("metrics.listen must be HOST:PORT, e.g. 127.0.0.1:9464".into());
        }
        if !(self.accuracy_window_secs.is_finite() && self.accuracy_window_secs > 0.0) {
            return Err(format!(
                "metrics.accuracy_window_secs must be a positive number of seconds, not {}",
                self.accuracy_window_secs
            ));
        }
        if !(self.instances_every_secs.is_finite() && self.instances_every_secs >= 0.5) {
            return Err(format!(
                "metrics.instances_every_secs must be at least 0.5 seconds, not {}",
                self.instances_every_secs
            ));
        }
        Ok(())
    }
}
