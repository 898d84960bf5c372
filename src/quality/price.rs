//! Value checks on one tick in isolation: presence, finiteness, sign, crossed quotes and spread width.
//! Pure functions of the tick and two thresholds, so they are trivially testable and cost a few compares.

use super::reason::QuarantineReason;
use crate::tick::Tick;

/// What the value checks learned about a tick that passed them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Prices {
    /// The mid the model will see.
    pub mid: f64,
    /// `(ask − bid) / mid` when both sides are quoted.
    pub spread_rel: Option<f64>,
    /// The spread is above the warn level.
    pub wide: bool,
}

/// Runs the value checks in order: missing, non-finite, non-positive, crossed, spread too wide.
///
/// # Errors
/// The first failing check's reason.
#[inline]
pub(crate) fn check_prices(
    t: &Tick,
    (min_price, max_price): (f64, f64),
    max_rel_spread: f64,
    warn_rel_spread: f64,
) -> Result<Prices, QuarantineReason> {
    use QuarantineReason::*;
    let two_sided = match (t.bid, t.ask, t.mid) {
        (Some(b), Some(a), _) => Some((b, a)),
        // Half a quote is not a price, even with a mid beside it.
        (Some(_), None, _) | (None, Some(_), _) => return Err(MissingValue),
        (None, None, Some(_)) => None,
        (None, None, None) => return Err(MissingValue),
    };
    let present = [t.bid, t.ask, t.mid];
    if present.iter().flatten().any(|p| !p.is_finite()) {
        return Err(NonFinitePrice);
    }
    if present.iter().flatten().any(|&p| p <= 0.0) {
        return Err(NonPositivePrice);
    }
    if present.iter().flatten().any(|&p| p < min_price || p > max_price) {
        return Err(PriceOutOfRange);
    }
    let Some((bid, ask)) = two_sided else {
        // Only the mid is present (a fixing); it was checked above.
        let mid = t.mid.ok_or(MissingValue)?;
        return Ok(Prices {
            mid,
            spread_rel: None,
            wide: false,
        });
    };
    if bid > ask {
        return Err(CrossedQuote);
    }
    let mid = 0.5 * bid + 0.5 * ask;
    let spread_rel = (ask - bid) / mid;
    if !spread_rel.is_finite() || spread_rel > max_rel_spread {
        return Err(SpreadTooWide);
    }
    Ok(Prices {
        mid,
        spread_rel: Some(spread_rel),
        wide: spread_rel > warn_rel_spread,
    })
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
            source: Source::default(),
            seq: None,
            arrival_us: None,
        }
    }

    #[test]
    fn each_reason_from_a_minimal_case() {
        use QuarantineReason::*;
        let check = |b, a, m| check_prices(&tick(b, a, m), (1e-6, 1e6), 0.01, 0.002);
        assert_eq!(check(None, None, None), Err(MissingValue));
        assert_eq!(check(Some(20.0), None, None), Err(MissingValue));
        assert_eq!(check(None, Some(20.0), Some(20.0)), Err(MissingValue));
        assert_eq!(check(Some(f64::NAN), Some(20.0), None), Err(NonFinitePrice));
        assert_eq!(check(None, None, Some(1e300)), Err(PriceOutOfRange));
        assert_eq!(check(Some(1e-300), Some(1e-299), None), Err(PriceOutOfRange));
        assert_eq!(check(Some(20.0), Some(f64::INFINITY), None), Err(NonFinitePrice));
        assert_eq!(check(None, None, Some(f64::NEG_INFINITY)), Err(NonFinitePrice));
        assert_eq!(check(Some(-1.0), Some(20.0), None), Err(NonPositivePrice));
        assert_eq!(check(None, None, Some(0.0)), Err(NonPositivePrice));
        assert_eq!(check(Some(20.1), Some(20.0), None), Err(CrossedQuote));
        assert_eq!(check(Some(20.0), Some(20.5), None), Err(SpreadTooWide));
        assert_eq!(check(Some(f64::MAX), Some(f64::MAX), None), Err(PriceOutOfRange));
        let wide_range = check_prices(
            &tick(Some(f64::MAX), Some(f64::MAX), None),
            (1e-6, f64::MAX),
            0.01,
            0.002,
        );
        assert_eq!(wide_range.map(|p| p.mid), Ok(f64::MAX), "no overflow in the mid");
        let ok = check(Some(20.0), Some(20.01), None).unwrap();
        assert!((ok.mid - 20.005).abs() < 1e-12 && !ok.wide);
        assert!(check(Some(20.0), Some(20.1), None).unwrap().wide);
        assert_eq!(check(None, None, Some(25.08)).unwrap().spread_rel, None);
        assert_eq!(check(Some(20.0), Some(20.0), None).unwrap().spread_rel, Some(0.0));
    }
}
