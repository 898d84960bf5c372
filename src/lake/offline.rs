//! The lake written offline, from a replay's outputs (`cambio replay INPUT --archive DIR`).
//!
//! Each output is turned into the message `serve` would publish for it (the same subject, the same JSON),
//! and that message into its row, so the rows equal the live archive's except for three columns: `stream`
//! is `replay`, `stream_seq` is the message's position among the replay's archived messages (from 1), and
//! `arrival` is null. Files roll by size and when a pair's rows move to another date (never by age), so
//! the same input gives the same files; they are written by a thread of their own while the replay goes on.
//!
//! A forecast's row is taken from the forecast itself, without writing its JSON: the live archive leaves
//! `payload` null on a forecast's row (its columns hold every field), and its columns hold the values the
//! live archive reads from the JSON serve publishes (a test compares the two).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use super::{Fields, HorizonFields, Lake, LakeError, Message, RollPolicy, route};
use crate::engine::Output;
use crate::forecast::{DriftStatus, Forecast};
use crate::horizon::Horizon;
use crate::quality::Status;

/// The stream name of rows written offline.
pub const OFFLINE_STREAM: &str = "replay";

/// A lake fed with a replay's outputs.
pub struct OfflineLake {
    lake: Lake,
    prefix: String,
    seq: u64,
    buf: Vec<u8>,
    subject: String,
    /// The horizons' labels, spelled once (a replay's horizons are few and fixed).
    labels: Vec<(Horizon, String)>,
    started: Instant,
}

impl OfflineLake {
    /// A lake in `dir`, with subjects under `prefix` (as the live service names them).
    ///
    /// # Errors
    /// [`LakeError::Io`] when `dir` cannot be created.
    pub fn new(dir: &std::path::Path, prefix: &str) -> Result<OfflineLake, LakeError> {
        let policy = RollPolicy {
            max_age: Duration::MAX,
            one_date_per_key: true,
            ..RollPolicy::default()
        };
        let mut lake = Lake::new(dir, prefix, policy)?;
        lake.write_in_background(None)?;
        Ok(OfflineLake {
            lake,
            prefix: prefix.to_string(),
            seq: 0,
            buf: Vec::with_capacity(1024),
            subject: String::with_capacity(32),
            labels: Vec::new(),
            started: Instant::now(),
        })
    }

    /// Archives `o` as serve publishes it (quality changes are not archived, as live).
    ///
    /// # Errors
    /// [`LakeError`] when a rolled file cannot be written.
    pub fn push(&mut self, o: &Output) -> Result<(), LakeError> {
        let (kind, pair) = match o {
            Output::Forecast(f) => ("pred", f.pair),
            Output::Quarantined(q) => ("quarantine", q.pair),
            Output::Alarm(a) => ("alert", a.pair),
            Output::Adapted(a) => ("alert", a.pair),
            Output::QualityChanged(_) => return Ok(()),
        };
        self.buf.clear();
        match o {
            // The row needs only the time's text; the rest is typed.
            Output::Forecast(f) => crate::time::write_ts(f.ts_us, &mut self.buf),
            other => crate::contract::write_output(other, &mut self.buf),
        }
        self.subject.clear();
        self.subject.push_str(&self.prefix);
        self.subject.push('.');
        self.subject.push_str(kind);
        self.subject.push('.');
        self.subject.push_str(pair.as_str());
        self.seq += 1;
        match o {
            Output::Forecast(f) => {
                for h in &f.horizons {
                    if !self.labels.iter().any(|(l, _)| *l == h.horizon) {
                        self.labels.push((h.horizon, h.horizon.to_string()));
                    }
                }
                let m = Message {
                    stream: OFFLINE_STREAM,
                    seq: self.seq,
                    arrival_us: None,
                    subject: &self.subject,
                    payload: &[],
                };
                let ts = std::str::from_utf8(&self.buf).ok();
                let fields = forecast_fields(f, ts, &self.labels);
                if let Some(r) = route(&self.prefix, &self.subject) {
                    self.lake.push_row(&m, &r, &fields, self.started)?;
                }
            }
            _ => {
                let m = Message {
                    stream: OFFLINE_STREAM,
                    seq: self.seq,
                    arrival_us: None,
                    subject: &self.subject,
                    payload: &self.buf,
                };
                self.lake.push(&m, self.started)?;
            }
        }
        Ok(())
    }

    /// Writes every partition still held; returns the rows archived in all.
    ///
    /// # Errors
    /// [`LakeError`] when a file cannot be written.
    pub fn finish(mut self) -> Result<u64, LakeError> {
        self.lake.finish(self.started)?;
        Ok(self.seq)
    }
}

/// The columns of a forecast's row, as [`Fields::decode_forecast`] reads them from the forecast's JSON:
/// numbers as the JSON rounds them, text as it spells it (`ts` as written, a horizon's label from
/// `labels`).
fn forecast_fields<'a>(f: &'a Forecast, ts: Option<&'a str>, labels: &'a [(Horizon, String)]) -> Fields<'a> {
    // A price as the JSON writes it: rounded, null when not finite.
    let price = |v: f64| {
        let r = crate::forecast::round_price(v);
        r.is_finite().then_some(r)
    };
    let horizons = f
        .horizons
        .iter()
        .map(|h| HorizonFields {
            horizon: labels
                .iter()
                .find(|(l, _)| *l == h.horizon)
                .map(|(_, s)| Cow::Borrowed(s.as_str())),
            mean: price(h.mean),
            lo80: price(h.lo80),
            hi80: price(h.hi80),
            lo95: price(h.lo95),
            hi95: price(h.hi95),
            warming_up: Some(h.warming_up),
        })
        .collect();
    Fields {
        kind: Some(Cow::Borrowed("forecast")),
        pair: Some(Cow::Borrowed(f.pair.as_str())),
        ts: ts.map(Cow::Borrowed),
        seq: f.seq,
        mid: price(f.mid),
        model_name: Some(Cow::Borrowed(f.model.name.as_str())),
        model_config: Some(Cow::Borrowed(f.model.config.as_str())),
        model_version: Some(f.model.version),
        model_kind: f.model.kind.map(|k| Cow::Borrowed(k.name())),
        quality: Some(Cow::Borrowed(match f.quality {
            Status::Ok => "ok",
            Status::Warn => "warn",
            Status::Fail => "fail",
        })),
        warming_up: Some(f.warming_up),
        horizons: Some(horizons),
        flags: Some(f.flags.names().map(Cow::Borrowed).collect()),
        drift: Some(Cow::Borrowed(match f.drift {
            DriftStatus::Stable => "stable",
            DriftStatus::Adapting => "adapting",
        })),
        restated: true,
        ..Fields::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::replay::Item;
    use crate::replay::synth::{SynthSpec, SynthTicks};
    use crate::tick::Pair;

    #[test]
    fn a_forecast_row_from_the_forecast_equals_the_row_read_from_its_json() {
        let pair = Pair::parse("USDMXN").unwrap();
        let spec: SynthSpec = toml::from_str("seed = 5\nticks = 400\ninterval_ms = 1000\nvol = 1e-4").unwrap();
        let cfg = crate::engine::EngineConfig {
            horizons: ["1step", "10step", "1m"].iter().map(|h| h.parse().unwrap()).collect(),
            ..crate::engine::EngineConfig::default()
        };
        let mut engine = crate::engine::Engine::new(pair, &cfg).unwrap();
        let mut out = Vec::new();
        let mut n = 0;
        for item in SynthTicks::new(spec, pair).unwrap() {
            let Item::Tick(t) = item else { continue };
            engine.on_tick(&t, &mut out);
            for o in out.drain(..) {
                let Output::Forecast(f) = o else { continue };
                let json = f.to_json_vec();
                let labels: Vec<(Horizon, String)> =
                    f.horizons.iter().map(|h| (h.horizon, h.horizon.to_string())).collect();
                let mut ts = Vec::new();
                crate::time::write_ts(f.ts_us, &mut ts);
                let typed = forecast_fields(&f, std::str::from_utf8(&ts).ok(), &labels);
                let read = Fields::decode_forecast(&json);
                let cols = |x: &Fields<'_>| {
                    format!(
                        "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                        x.kind,
                        x.pair,
                        x.ts,
                        x.seq,
                        x.mid.map(f64::to_bits),
                        x.model_name,
                        x.model_config,
                        x.model_version,
                        x.model_kind,
                        x.quality,
                        x.warming_up,
                        x.horizons,
                        x.flags,
                        x.drift,
                        x.restated
                    )
                };
                assert_eq!(cols(&typed), cols(&read));
                n += 1;
            }
        }
        assert!(n > 300, "{n}");
    }
}
