//! A stored model put back in place of the live one (an operator's rollback): the model comes back, the
//! stream's time does not.
//!
//! An [`Engine`] holds two kinds of state. The *model* (the filters, the regressions, the volatility, the
//! drift detectors, the evaluation and its pending forecasts) is what a rollback restores. The *stream*
//! (the validator's watermark and quality windows, what it has quarantined, the latest factors, the last
//! accepted price and time, and the position in the pair's stream) describes ticks that have been seen:
//! going back to an older copy of it would accept ticks already seen as new, restart the quality scores,
//! measure the first return across the whole gap, and reuse forecasts' de-duplication ids.

use std::sync::Arc;

use nalgebra::SVector;

use super::Engine;
use crate::forecast::{DriftStatus, Forecast};
use crate::quality::Flags;

impl Engine {
    /// Takes over the stream state of `live`, the engine this one replaces (see the module docs): the
    /// validator (watermark, quality windows, profile), the worst quality statuses and quarantine counts,
    /// the latest factors, the last accepted price and time, and the stream position. The model itself
    /// stays this engine's.
    pub fn take_stream_from(&mut self, live: Engine) {
        self.validator = live.validator;
        self.quality_worst = live.quality_worst;
        self.quarantined = live.quarantined;
        self.factors = live.factors;
        self.rate_differential = live.rate_differential;
        if live.last_ts_us.is_some() {
            self.last_ts_us = live.last_ts_us;
            self.last_log_mid = live.last_log_mid;
        }
        self.adopt_position(live.ticks);
    }

    /// The forecast this model makes from the last accepted tick, as `on_tick` would have published it
    /// for that tick (`ts_us`, `seq`, `mid` and `flags` are that tick's), without registering it for
    /// scoring. After a rollback it is what a query answers until the next tick. `None` before any
    /// accepted tick.
    pub fn forecast_at(&self, ts_us: i64, seq: Option<u64>, mid: f64, flags: Flags) -> Option<Forecast> {
        self.last_ts_us?;
        let y = mid.ln();
        let gap = (self.kalman.level() - y) / self.step_sigma();
        let xv = SVector::from(self.features.vector(gap, self.rate_differential));
        let (var_obs, ivar) = (self.vol.var_per_obs(), self.ivol.var_per_obs());
        let horizons: Vec<_> = self
            .horizons
            .iter()
            .map(|h| {
                let (sigma, isigma) = self.horizon_sigmas(h.horizon, var_obs, ivar);
                let (_, _, f) = h.predict(&xv, sigma, isigma, mid);
                h.entry(&f)
            })
            .collect();
        Some(Forecast {
            pair: self.pair,
            ts_us,
            seq,
            mid,
            warming_up: horizons.iter().any(|h| h.warming_up),
            horizons,
            model: Arc::new(self.model_stamp()),
            quality: self.validator.overall_status(),
            flags,
            drift: if self.adapting_until.is_some() {
                DriftStatus::Adapting
            } else {
                DriftStatus::Stable
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{Engine, EngineConfig, Output};
    use crate::tick::Pair;

    fn run(engine: &mut Engine, ticks: &[crate::tick::Tick]) -> Vec<Output> {
        let mut out = Vec::new();
        for t in ticks {
            engine.on_tick(t, &mut out);
        }
        out
    }

    #[test]
    fn a_restored_model_keeps_the_live_stream_time() {
        let pair = Pair::parse("USDMXN").unwrap();
        let ticks = crate::testkit::synth_ticks(pair, 600);
        let mut old = Engine::new(pair, &EngineConfig::default()).unwrap();
        run(&mut old, &ticks[..200]);
        let mut live = old.clone();
        let out = run(&mut live, &ticks[200..]);
        let Some(Output::Forecast(last)) = out.iter().rev().find(|o| matches!(o, Output::Forecast(_))) else {
            panic!("no forecast");
        };
        let (watermark, quality) = (live.validator.watermark_us(), live.summary().quality);
        let mut restored = old.clone();
        restored.take_stream_from(live.clone());
        assert_eq!(
            restored.validator.watermark_us(),
            watermark,
            "the watermark does not go back"
        );
        assert_eq!(restored.summary().quality, quality, "the quality scores continue");
        assert_eq!(restored.ticks(), 600, "the stream position does not go back");
        assert_eq!(restored.accepted(), old.accepted(), "the model's own count");
        // A tick already seen is not new to the restored model.
        let mut out = Vec::new();
        restored.on_tick(&ticks[400], &mut out);
        assert!(
            out.iter().any(|o| matches!(o, Output::Quarantined(_))),
            "a tick seen before the rollback is refused"
        );
        // Its forecast now is the old model's, at the live price and time.
        let f = restored
            .forecast_at(last.ts_us, last.seq, last.mid, last.flags)
            .unwrap();
        assert_eq!((f.ts_us, f.mid), (last.ts_us, last.mid));
        assert_eq!(f.horizons.len(), old.horizons.len());
    }

    #[test]
    fn forecast_at_repeats_the_forecast_of_the_last_tick() {
        let pair = Pair::parse("USDMXN").unwrap();
        let ticks = crate::testkit::synth_ticks(pair, 300);
        let mut e = Engine::new(pair, &EngineConfig::default()).unwrap();
        let out = run(&mut e, &ticks);
        let Some(Output::Forecast(published)) = out.iter().rev().find(|o| matches!(o, Output::Forecast(_))) else {
            panic!("no forecast");
        };
        let again = e
            .forecast_at(published.ts_us, published.seq, published.mid, published.flags)
            .unwrap();
        assert_eq!(
            serde_json::to_string(&again).unwrap(),
            serde_json::to_string(published).unwrap()
        );
    }
}
