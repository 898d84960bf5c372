//! The forecast's JSON, written by hand.
//!
//! Serving writes one forecast per tick, and through serde it was the largest cost after the engine: a
//! `format!` for the timestamp, one `Display` per horizon label, an escape scan of every key. This writer
//! produces the same bytes as `serde_json::to_vec(&forecast)` (a test compares the two on many forecasts),
//! with the keys as constants and the numbers written by the same formatters serde_json uses (`zmij` for
//! floats, `itoa` for integers), so consumers see no difference.

use super::{DriftStatus, Forecast};
use crate::quality::Status;

impl Forecast {
    /// Appends the forecast's JSON to `out`: byte for byte what its `Serialize` implementation gives.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"type\":\"forecast\",\"pair\":\"");
        out.extend_from_slice(self.pair.as_str().as_bytes());
        out.extend_from_slice(b"\",\"ts\":\"");
        crate::time::write_ts(self.ts_us, out);
        out.extend_from_slice(b"\",\"seq\":");
        match self.seq {
            Some(seq) => out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes()),
            None => out.extend_from_slice(b"null"),
        }
        out.extend_from_slice(b",\"mid\":");
        write_f64(super::round_price(self.mid), out);
        out.extend_from_slice(b",\"horizons\":");
        out.push(b'[');
        for (i, h) in self.horizons.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(b"{\"horizon\":\"");
            h.horizon.write_label(out);
            out.extend_from_slice(b"\",\"mean\":");
            write_f64(super::round_price(h.mean), out);
            out.extend_from_slice(b",\"lo80\":");
            write_f64(super::round_price(h.lo80), out);
            out.extend_from_slice(b",\"hi80\":");
            write_f64(super::round_price(h.hi80), out);
            out.extend_from_slice(b",\"lo95\":");
            write_f64(super::round_price(h.lo95), out);
            out.extend_from_slice(b",\"hi95\":");
            write_f64(super::round_price(h.hi95), out);
            out.extend_from_slice(if h.warming_up {
                b",\"warming_up\":true}".as_slice()
            } else {
                b",\"warming_up\":false}"
            });
        }
        out.push(b']');
        out.extend_from_slice(b",\"model\":{\"name\":");
        write_str(&self.model.name, out);
        out.extend_from_slice(b",\"version\":");
        out.extend_from_slice(itoa::Buffer::new().format(self.model.version).as_bytes());
        out.extend_from_slice(b",\"config\":");
        write_str(&self.model.config, out);
        if let Some(kind) = self.model.kind {
            out.extend_from_slice(b",\"kind\":");
            write_str(kind.name(), out);
        }
        out.extend_from_slice(b"},\"quality\":\"");
        out.extend_from_slice(match self.quality {
            Status::Ok => b"ok".as_slice(),
            Status::Warn => b"warn",
            Status::Fail => b"fail",
        });
        out.extend_from_slice(b"\",\"flags\":[");
        for (i, name) in self.flags.names().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            out.extend_from_slice(name.as_bytes());
            out.push(b'"');
        }
        out.extend_from_slice(b"],\"drift\":\"");
        out.extend_from_slice(match self.drift {
            DriftStatus::Stable => b"stable".as_slice(),
            DriftStatus::Adapting => b"adapting",
        });
        out.extend_from_slice(if self.warming_up {
            b"\",\"warming_up\":true}".as_slice()
        } else {
            b"\",\"warming_up\":false}"
        });
    }

    /// The forecast's JSON in a buffer sized for it (one allocation).
    pub fn to_json_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(160 + 150 * self.horizons.len());
        self.write_json(&mut out);
        out
    }
}

/// A float as serde_json writes it: shortest round-trip digits, `null` when not finite.
fn write_f64(v: f64, out: &mut Vec<u8>) {
    if v.is_finite() {
        out.extend_from_slice(zmij::Buffer::new().format_finite(v).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

/// A JSON string. Model names and versions come from the configuration and are plain in practice; anything
/// that needs escaping goes through serde_json, so the escapes are its own.
fn write_str(s: &str, out: &mut Vec<u8>) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else if serde_json::to_writer(&mut *out, s).is_err() {
        // Writing into a Vec cannot fail; keep the JSON well formed regardless.
        out.extend_from_slice(b"\"\"");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::forecast::{HorizonForecast, ModelStamp};
    use crate::horizon::Horizon;
    use crate::quality::Flags;
    use crate::tick::Pair;

    fn next(x: &mut u64) -> u64 {
        *x ^= *x << 13;
        *x ^= *x >> 7;
        *x ^= *x << 17;
        *x
    }

    fn float(x: &mut u64) -> f64 {
        match next(x) % 8 {
            0 => f64::NAN,
            1 => f64::INFINITY,
            2 => -0.0,
            3 => f64::from_bits(next(x)),
            4 => 1e-300 * (next(x) % 1000) as f64,
            _ => 20.0 + (next(x) % 1_000_000) as f64 / 99_991.0,
        }
    }

    #[test]
    fn writes_the_same_bytes_as_serde() {
        let horizons = [
            Horizon::Steps(1),
            Horizon::Steps(20),
            "1m".parse().unwrap(),
            "90s".parse().unwrap(),
            "1h".parse().unwrap(),
            "1d".parse().unwrap(),
            "1w".parse().unwrap(),
        ];
        let models = [
            Arc::new(ModelStamp {
                name: "cambio".into(),
                version: 3,
                config: "0a1b2c3d".into(),
                kind: None,
            }),
            Arc::new(ModelStamp {
                name: "quote\"back\\slash\ttab".into(),
                version: u64::MAX,
                config: "ñ-é \u{1}".into(),
                kind: None,
            }),
            Arc::new(ModelStamp {
                name: "cambio-ets".into(),
                version: 4,
                config: "0a1b2c3d".into(),
                kind: Some(crate::model::ModelKind::Ets),
            }),
        ];
        let mut x = 0x2545_f491_4f6c_dd1d_u64;
        for i in 0..5_000 {
            let n = (next(&mut x) % 5) as usize;
            let f = Forecast {
                pair: Pair::parse(if i % 2 == 0 { "USDMXN" } else { "EURUSD" }).unwrap(),
                ts_us: (next(&mut x) % 4_000_000_000_000_000) as i64 - 1_000_000_000_000_000,
                seq: (i % 3 != 0).then(|| next(&mut x)),
                mid: float(&mut x),
                horizons: (0..n)
                    .map(|k| HorizonForecast {
                        horizon: horizons[(k + i) % horizons.len()],
                        mean: float(&mut x),
                        lo80: float(&mut x),
                        hi80: float(&mut x),
                        lo95: float(&mut x),
                        hi95: float(&mut x),
                        warming_up: next(&mut x).is_multiple_of(2),
                    })
                    .collect(),
                model: models[i % 2].clone(),
                quality: [Status::Ok, Status::Warn, Status::Fail][i % 3],
                flags: Flags::NAMED
                    .iter()
                    .filter(|_| next(&mut x).is_multiple_of(4))
                    .fold(Flags::EMPTY, |a, (f, _)| a | *f),
                drift: if i % 5 == 0 {
                    DriftStatus::Adapting
                } else {
                    DriftStatus::Stable
                },
                warming_up: i % 7 == 0,
            };
            let ours = f.to_json_vec();
            let serde = serde_json::to_vec(&f).unwrap();
            assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&serde));
        }
    }
}
