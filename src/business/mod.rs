//! Business metrics: how many clients took the bank's rate, per pair, period and segment, with every
//! client pseudonymised before anything is counted.
//!
//! Credit systems publish deal events (`offered`, `accepted`, `rejected`) on `<prefix>.business.<PAIR>`.
//! [`Business::on_event`] reads one ([`event`]), replaces its client by a keyed pseudonym ([`mask`]),
//! and counts it in the pair's [`book::PairBook`]: sliding windows of event time ([`window`]) with offers,
//! acceptances, amounts, distinct clients ([`hll`]) and the quote's distance from the model, per
//! segment, and a disparity alarm per segment ([`disparity`]). A refused event is a value (a
//! quarantine record with its reason), never an error that stops anything.
//!
//! Pure and synchronous like the engine: no clock (time is the events' `ts`), no I/O; the caller hands in
//! the masking key, the pair's latest forecast as a [`QuoteRef`], and (optionally) the arrival time.

pub mod book;
pub mod config;
pub mod disparity;
pub mod event;
pub mod hll;
pub mod mask;
pub mod window;

use std::collections::BTreeMap;

pub use config::BusinessConfig;
pub use event::{EventError, EventKind, RefusalReason};
pub use mask::{MaskError, MaskKey, Pseudonym};

use self::book::PairBook;
use self::disparity::DisparityRule;
use self::event::{Refusal, parse_event};
use crate::contract::{BusinessDisparity, BusinessEvent, BusinessQuarantined, BusinessStatsReply};
use crate::forecast::Forecast;
use crate::horizon::Horizon;
use crate::tick::Pair;

/// The model's view of the pair when an offer is made: the mid, the one-step forecast, and the one-step
/// forecast's sigma (all in price units).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QuoteRef {
    /// The mid of the pair's last accepted tick.
    pub mid: f64,
    /// The one-step forecast's point.
    pub forecast: f64,
    /// The one-step forecast's standard deviation.
    pub sigma: f64,
}

/// z of the central 80% interval: `hi80 − lo80 = 2 × 1.2816 σ` for a normal forecast.
const Z80: f64 = 1.281_551_565_544_600_4;

impl QuoteRef {
    /// A reference from its three figures; `None` unless all are finite and sigma is positive.
    pub fn new(mid: f64, forecast: f64, sigma: f64) -> Option<QuoteRef> {
        (mid.is_finite() && forecast.is_finite() && sigma.is_finite() && sigma > 0.0).then_some(QuoteRef {
            mid,
            forecast,
            sigma,
        })
    }

    /// The reference a forecast gives: its mid, and the point and sigma of its one-step horizon (`1step`),
    /// or of its first horizon when `1step` is not configured. Sigma is the 80% interval's half-width over
    /// 1.2816 (the interval is the model's calibrated one, so sigma follows its coverage).
    pub fn from_forecast(f: &Forecast) -> Option<QuoteRef> {
        let h = f
            .horizons
            .iter()
            .find(|h| h.horizon == Horizon::Steps(1))
            .or_else(|| f.horizons.first())?;
        QuoteRef::new(f.mid, h.mean, (h.hi80 - h.lo80) / (2.0 * Z80))
    }
}

/// What an event produced besides its counts.
#[derive(Debug, Clone, PartialEq)]
pub enum BusinessOutput {
    /// The event was counted: its masked form, for `<prefix>.business.masked.<PAIR>` (the data lake).
    Accepted(BusinessEvent),
    /// The event was refused: the record to publish on `<prefix>.business.quarantine.<PAIR>`.
    Quarantined(BusinessQuarantined),
    /// A segment's disparity alarm, for `<prefix>.alert.<PAIR>`.
    Disparity(BusinessDisparity),
}

/// The configuration as the book uses it: segment names, periods in µs, the disparity rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Setup {
    /// The configured segments (`other` follows them).
    pub segments: Vec<String>,
    /// (name, span in µs) per period.
    pub periods: Vec<(String, i64)>,
    /// When a disparity raises and clears an alarm.
    pub rule: DisparityRule,
    /// Tolerance of event time ahead of arrival, µs.
    pub max_future_us: i64,
}

impl Setup {
    /// Segments counted: the configured ones and `other`.
    pub fn segment_count(&self) -> usize {
        self.segments.len() + 1
    }

    /// A segment index's name (`other` after the configured ones).
    pub fn segment_name(&self, s: usize) -> &str {
        self.segments.get(s).map_or("other", String::as_str)
    }

    /// The index an event's `segment` counts under.
    pub fn segment_of(&self, segment: Option<&str>) -> usize {
        segment
            .and_then(|s| self.segments.iter().position(|c| c == s))
            .unwrap_or(self.segments.len())
    }
}

/// Every pair's business figures and the refusal counters.
#[derive(Debug)]
pub struct Business {
    setup: Setup,
    key: Option<MaskKey>,
    books: BTreeMap<Pair, PairBook>,
    max_pairs: usize,
    refused: [u64; RefusalReason::ALL.len()],
}

impl Business {
    /// An empty set of books. Without a key every event is refused (`no_mask_key`).
    ///
    /// # Errors
    /// The configuration's validation message.
    pub fn new(cfg: &BusinessConfig, key: Option<MaskKey>, max_pairs: usize) -> Result<Business, String> {
        cfg.validate()?;
        let setup = Setup {
            segments: cfg.segments.clone(),
            periods: cfg.period_spans()?,
            rule: DisparityRule {
                threshold: cfg.disparity_threshold,
                clear: cfg.disparity_clear,
                min_count: cfg.disparity_min_count,
            },
            max_future_us: (cfg.max_future_secs * 1e6) as i64,
        };
        Ok(Business {
            setup,
            key,
            books: BTreeMap::new(),
            max_pairs,
            refused: [0; RefusalReason::ALL.len()],
        })
    }

    /// Whether a masking key is set (events can be counted).
    pub fn has_key(&self) -> bool {
        self.key.is_some()
    }

    /// The configuration in use.
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// Reads, masks and counts one event of `pair`. `received_us` (wall-clock arrival, when known) refuses
    /// events dated too far ahead of it; `quote` is the pair's model now, `None` before its first forecast.
    /// Refusals and alarms go to `out`.
    pub fn on_event(
        &mut self,
        pair: Pair,
        payload: &[u8],
        received_us: Option<i64>,
        quote: Option<QuoteRef>,
        out: &mut Vec<BusinessOutput>,
    ) {
        let bytes = payload.len();
        let Some(key) = &self.key else {
            return self.refuse(
                pair,
                Refusal {
                    error: EventError::NoMaskKey,
                    bytes,
                    client: None,
                },
                out,
            );
        };
        let event = match parse_event(payload, key) {
            Ok(e) => e,
            Err(r) => return self.refuse(pair, r, out),
        };
        if let Some(arrival) = received_us {
            let ahead = event.ts_us.saturating_sub(arrival);
            if ahead > self.setup.max_future_us {
                let error = EventError::FutureTs {
                    ahead_secs: ahead / 1_000_000,
                    tolerance_secs: self.setup.max_future_us / 1_000_000,
                };
                return self.refuse(
                    pair,
                    Refusal {
                        error,
                        bytes,
                        client: Some(event.client),
                    },
                    out,
                );
            }
        }
        if !self.books.contains_key(&pair) && self.books.len() >= self.max_pairs {
            let error = EventError::TooManyPairs(self.max_pairs);
            return self.refuse(
                pair,
                Refusal {
                    error,
                    bytes,
                    client: Some(event.client),
                },
                out,
            );
        }
        let segment = self.setup.segment_of(event.segment.as_deref());
        out.push(BusinessOutput::Accepted(BusinessEvent {
            pair,
            ts: crate::time::format_ts(event.ts_us),
            client: event.client.to_string(),
            event: event.kind.name(),
            rate: event.rate,
            amount: event.amount,
            segment: self.setup.segment_name(segment).to_string(),
        }));
        let setup = &self.setup;
        let book = self.books.entry(pair).or_insert_with(|| PairBook::new(setup));
        let mut alarms = Vec::new();
        book.record(pair, &event, segment, quote, setup, &mut alarms);
        out.extend(alarms.into_iter().map(BusinessOutput::Disparity));
    }

    /// Counts a message that named no pair (its subject's last token is not one).
    pub fn refuse_bad_subject(&mut self) {
        self.count(RefusalReason::BadSubject);
    }

    fn count(&mut self, reason: RefusalReason) {
        if let Some(c) = self.refused.get_mut(reason.index()) {
            *c += 1;
        }
    }

    fn refuse(&mut self, pair: Pair, r: Refusal, out: &mut Vec<BusinessOutput>) {
        let reason = r.error.reason();
        self.count(reason);
        out.push(BusinessOutput::Quarantined(BusinessQuarantined {
            pair,
            reason: reason.name(),
            detail: r.error.to_string(),
            bytes: r.bytes,
            client: r.client.map(|p| p.to_string()),
        }));
    }

    /// Events refused since start, per reason (every reason, zeros included).
    pub fn refused(&self) -> impl Iterator<Item = (RefusalReason, u64)> + '_ {
        RefusalReason::ALL.into_iter().zip(self.refused.iter().copied())
    }

    /// The pairs with figures.
    pub fn pairs(&self) -> impl Iterator<Item = Pair> + '_ {
        self.books.keys().copied()
    }

    /// A pair's figures; `None` when no event of it was counted.
    pub fn stats(&self, pair: Pair) -> Option<BusinessStatsReply> {
        self.books.get(&pair).map(|b| b.stats(pair, &self.setup))
    }
}

#[cfg(test)]
mod tests;
