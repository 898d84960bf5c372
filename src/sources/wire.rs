//! Observations as messages of the contract (docs/contract.md): a tick with only a `mid` (a fixing has no
//! bid and ask), or a factor; a missing value is written as `null`, which the service quarantines
//! (`missing_value` for a tick, `bad_factor` for a factor) and counts. Each message has its de-duplication
//! id, `<kind>-<series>-<date>`, so a re-fetch never duplicates into a JetStream stream.

use serde::Serialize;

use super::config::Target;
use super::{Date, Observation};
use crate::nats::Subjects;
use crate::time::{US_PER_DAY, format_ts};

/// One message ready to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The subject (`<prefix>.ticks.<PAIR>` or `<prefix>.factors.<NAME>`).
    pub subject: String,
    /// The `Nats-Msg-Id` header.
    pub msg_id: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
}

#[derive(Serialize)]
struct WireTick<'a> {
    pair: &'a str,
    ts: String,
    mid: Option<f64>,
    source: &'a str,
}

#[derive(Serialize)]
struct WireFactor<'a> {
    name: &'a str,
    ts: String,
    value: Option<f64>,
    source: &'a str,
}

/// The time part of a message id: the date for an observation at midnight UTC, else the RFC 3339 time.
pub fn id_time(ts_us: i64) -> String {
    if ts_us.rem_euclid(US_PER_DAY) == 0 {
        Date::of_us(ts_us).to_string()
    } else {
        format_ts(ts_us)
    }
}

/// The message of one observation. `kind` is the source's kind (`banxico`): the tick's or factor's
/// `source` and the first part of the message id.
pub fn message(kind: &str, obs: &Observation, target: &Target, subjects: &Subjects) -> Message {
    let ts = format_ts(obs.ts_us);
    let (subject, payload) = match target {
        Target::Tick(pair) => (
            subjects.ticks(*pair),
            serde_json::to_vec(&WireTick {
                pair: pair.as_str(),
                ts,
                mid: obs.value,
                source: kind,
            }),
        ),
        Target::Factor(name) => (
            subjects.factor(name),
            serde_json::to_vec(&WireFactor {
                name,
                ts,
                value: obs.value,
                source: kind,
            }),
        ),
    };
    Message {
        subject,
        msg_id: format!("{kind}-{}-{}", obs.series, id_time(obs.ts_us)),
        // Cannot fail: string keys and finite numbers (the parsers never return a non-finite value).
        payload: payload.unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Pair, parse_factor, parse_tick};

    #[test]
    fn a_fixing_is_a_mid_only_tick_and_missing_is_null() {
        let subjects = Subjects::new("fx").unwrap();
        let pair = Pair::parse("USDMXN").unwrap();
        let obs = Observation {
            series: "SF43718".into(),
            ts_us: Date::parse_ymd("2024-01-02").unwrap().midnight_us(),
            value: Some(16.9666),
        };
        let m = message("banxico", &obs, &Target::Tick(pair), &subjects);
        assert_eq!(m.subject, "fx.ticks.USDMXN");
        assert_eq!(m.msg_id, "banxico-SF43718-2024-01-02");
        let tick = parse_tick(&m.payload, Some(pair)).unwrap();
        assert_eq!((tick.mid, tick.bid, tick.ts_us), (Some(16.9666), None, obs.ts_us));
        let missing = Observation { value: None, ..obs };
        let m = message("banxico", &missing, &Target::Tick(pair), &subjects);
        // Read as a tick with no price at all, which the validator quarantines as `missing_value`.
        let t = parse_tick(&m.payload, Some(pair)).unwrap();
        assert_eq!((t.mid, t.bid, t.ask), (None, None, None));
        assert!(String::from_utf8(m.payload).unwrap().contains(r#""mid":null"#));
    }

    #[test]
    fn a_factor_message() {
        let subjects = Subjects::new("fx").unwrap();
        let obs = Observation {
            series: "DFF".into(),
            ts_us: Date::parse_ymd("2023-12-29").unwrap().midnight_us(),
            value: Some(5.33),
        };
        let m = message("fred", &obs, &Target::Factor("DFF".into()), &subjects);
        assert_eq!(m.subject, "fx.factors.DFF");
        assert_eq!(m.msg_id, "fred-DFF-2023-12-29");
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        assert_eq!(v["value"], 5.33);
        assert_eq!(v["name"], "DFF");
        assert_eq!(parse_factor(&m.payload).unwrap().value, 5.33);
        let missing = Observation {
            value: None,
            ..obs.clone()
        };
        let m = message("fred", &missing, &Target::Factor("DFF".into()), &subjects);
        assert!(
            parse_factor(&m.payload).is_err(),
            "a missing factor value is refused (bad_factor)"
        );
        assert_eq!(id_time(obs.ts_us + 1_000), "2023-12-29T00:00:00.001Z");
    }
}
