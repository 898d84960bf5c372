//! The `detail` of a tick the quality checks quarantined: the reason in words with the tick's own values
//! (which price, which time) and the setting it broke, so a person reading the record need not work out
//! why. Written only for a quarantined tick, never on the accepted path.

use crate::quality::{QualityConfig, QuarantineReason};
use crate::tick::Tick;
use crate::time::format_ts;

/// Why `tick` was quarantined for `reason`, given the pair's quality settings and its watermark (the
/// latest accepted tick's time) when the check ran.
pub(super) fn explain(reason: QuarantineReason, tick: &Tick, cfg: &QualityConfig, watermark_us: Option<i64>) -> String {
    use QuarantineReason::*;
    let prices = [("bid", tick.bid), ("ask", tick.ask), ("mid", tick.mid)];
    let first = |bad: &dyn Fn(f64) -> bool| {
        prices
            .iter()
            .find_map(|&(name, p)| p.filter(|&v| bad(v)).map(|v| (name, v)))
    };
    let ts = format_ts(tick.ts_us);
    let latest = || watermark_us.map_or_else(|| "none".to_string(), format_ts);
    let arrival = || tick.arrival_us.map_or_else(|| "not recorded".to_string(), format_ts);
    match reason {
        MissingValue => match (tick.bid, tick.ask) {
            (Some(_), None) => "only the bid is quoted: ask is missing".into(),
            (None, Some(_)) => "only the ask is quoted: bid is missing".into(),
            _ => "no price: neither bid and ask nor mid".into(),
        },
        NonFinitePrice => match first(&|v: f64| !v.is_finite()) {
            Some((name, v)) => format!("{name} is {v}, not a finite number"),
            None => "a price is not a finite number".into(),
        },
        NonPositivePrice => match first(&|v: f64| v <= 0.0) {
            Some((name, v)) => format!("{name} {v} is not above zero"),
            None => "a price is not above zero".into(),
        },
        PriceOutOfRange => {
            let (min, max) = (cfg.min_price, cfg.max_price);
            match first(&|v: f64| v < min || v > max) {
                Some((name, v)) => format!("{name} {v} is outside min_price..max_price ({min}..{max})"),
                None => format!("a price is outside min_price..max_price ({min}..{max})"),
            }
        }
        CrossedQuote => match (tick.bid, tick.ask) {
            (Some(b), Some(a)) => format!("bid {b} is above ask {a}"),
            _ => "bid is above ask".into(),
        },
        SpreadTooWide => match (tick.bid, tick.ask) {
            (Some(b), Some(a)) => {
                let rel = (a - b) / (0.5 * b + 0.5 * a);
                format!(
                    "relative spread {rel:.6} (bid {b}, ask {a}) is over max_rel_spread {}",
                    cfg.max_rel_spread
                )
            }
            _ => format!("relative spread is over max_rel_spread {}", cfg.max_rel_spread),
        },
        ImplausibleJump => match tick.mid_price() {
            Some(m) => format!("mid {m} is outside the band of plausible moves from the recent mids"),
            None => "the price is outside the band of plausible moves from the recent mids".into(),
        },
        StaleTimestamp => format!(
            "ts {ts} is too old: its arrival is {} (max_arrival_lag) or the latest accepted tick is {} \
             (max_stale)",
            arrival(),
            latest()
        ),
        FutureTimestamp => format!(
            "ts {ts} is too far ahead of its arrival {} (max_future_skew) or of the latest accepted tick {} \
             (max_forward_gap)",
            arrival(),
            latest()
        ),
        OutOfOrder => format!("ts {ts} is earlier than the latest accepted tick {}", latest()),
        DuplicateSeq => match tick.seq {
            Some(seq) => format!("source {} already sent seq {seq}", tick.source),
            None => format!("source {} already sent this seq", tick.source),
        },
        DuplicateContent => format!(
            "source {} already sent a tick with this time and these prices",
            tick.source
        ),
        Malformed => "the tick could not be read".into(),
        PairMismatch => format!("pair {} is not the pair of this stream", tick.pair),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{Pair, Source};

    fn tick(bid: Option<f64>, ask: Option<f64>, mid: Option<f64>) -> Tick {
        Tick {
            pair: Pair::parse("USDMXN").unwrap(),
            ts_us: 0,
            bid,
            ask,
            mid,
            source: Source::new("oanda").unwrap(),
            seq: Some(7),
            arrival_us: None,
        }
    }

    #[test]
    fn details_name_the_field_and_value() {
        use QuarantineReason::*;
        let cfg = QualityConfig::default();
        let say = |r, t: &Tick| explain(r, t, &cfg, Some(1_000_000));
        assert_eq!(
            say(CrossedQuote, &tick(Some(17.2), Some(17.1), None)),
            "bid 17.2 is above ask 17.1"
        );
        assert_eq!(
            say(NonFinitePrice, &tick(Some(1.0), Some(f64::INFINITY), None)),
            "ask is inf, not a finite number"
        );
        assert_eq!(
            say(NonPositivePrice, &tick(None, None, Some(-3.0))),
            "mid -3 is not above zero"
        );
        assert_eq!(
            say(MissingValue, &tick(Some(1.0), None, None)),
            "only the bid is quoted: ask is missing"
        );
        assert_eq!(
            say(DuplicateSeq, &tick(None, None, Some(1.0))),
            "source oanda already sent seq 7"
        );
        assert!(say(OutOfOrder, &tick(None, None, Some(1.0))).contains("1970-01-01T00:00:01.000Z"));
        for r in QuarantineReason::ALL {
            assert!(!say(r, &tick(None, None, None)).is_empty());
        }
    }
}
