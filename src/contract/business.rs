//! The business messages: the stats reply, quarantine records of refused deal events, and disparity
//! alarms. Plain data; `crate::business` fills them. No field ever holds a client identifier in clear:
//! clients appear only as counts, or as a keyed pseudonym.

use serde::Serialize;

use crate::tick::Pair;

/// An accepted deal event in its masked form, published on `<prefix>.business.masked.<PAIR>` so the data
/// lake keeps business events: the client is its pseudonym, the segment the one it was counted under.
/// The clear identifier, the raw segment and any other field of the event are not in it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "business_event")]
pub struct BusinessEvent {
    /// The pair the subject names.
    pub pair: Pair,
    /// The event's time (RFC 3339).
    pub ts: String,
    /// The client's pseudonym (hex of a keyed hash).
    pub client: String,
    /// `offered`, `accepted` or `rejected`.
    pub event: &'static str,
    /// The rate quoted.
    pub rate: f64,
    /// The deal's amount, when the event gave one.
    pub amount: Option<f64>,
    /// The segment it was counted under: one of `[business] segments`, or `other`.
    pub segment: String,
}

/// A refused deal event, published on `<prefix>.business.quarantine.<PAIR>`. Never the payload: its
/// length, the reason, and the client's pseudonym when the client field could be read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "business_quarantined")]
pub struct BusinessQuarantined {
    /// The pair the subject names.
    pub pair: Pair,
    /// Why (`malformed_json`, `missing_field`, `no_mask_key`, …).
    pub reason: &'static str,
    /// What was wrong (field names and positions, never values).
    pub detail: String,
    /// The payload's length in bytes.
    pub bytes: usize,
    /// The client's pseudonym (hex of a keyed hash), when it could be read.
    pub client: Option<String>,
}

/// A segment's uptake or quote distance drifted away from the other segments', published on
/// `<prefix>.alert.<PAIR>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "business_disparity")]
pub struct BusinessDisparity {
    /// The pair.
    pub pair: Pair,
    /// The event time it was raised at (RFC 3339).
    pub ts: String,
    /// The segment that drifted.
    pub segment: String,
    /// The period it was measured over.
    pub period: String,
    /// The statistic that crossed the threshold: the larger in size of `uptake_z` and `distance_z`.
    pub statistic: f64,
    /// Two-proportion z of the segment's uptake against the other segments'.
    pub uptake_z: Option<f64>,
    /// Welch z of the segment's mean quote distance from the forecast against the other segments'.
    pub distance_z: Option<f64>,
    /// The configured threshold.
    pub threshold: f64,
    /// The segment's offers in the period.
    pub offers: u64,
    /// The other segments' offers in the period.
    pub offers_others: u64,
}

/// The answer to `<prefix>.business.stats.<PAIR>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename = "business_stats")]
pub struct BusinessStatsReply {
    /// The pair.
    pub pair: Pair,
    /// The latest event's time (RFC 3339): the end of every period's window.
    pub last_event_ts: Option<String>,
    /// Events counted since start, per segment (configured ones, then `other`).
    pub events: Vec<SegmentEvents>,
    /// Figures per period.
    pub periods: Vec<PeriodStats>,
}

/// Events counted since start in one segment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentEvents {
    /// The segment.
    pub segment: String,
    /// Offers.
    pub offered: u64,
    /// Acceptances.
    pub accepted: u64,
    /// Rejections.
    pub rejected: u64,
    /// Disparity alarms raised for it (any period).
    pub disparity_alarms: u64,
}

/// One period's figures.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PeriodStats {
    /// The period (`1h`, `1d`, …).
    pub period: String,
    /// Start of the window (RFC 3339): events at or after it count.
    pub from: Option<String>,
    /// End of the window: the latest event's time.
    pub to: Option<String>,
    /// One entry per configured segment, then `other`, then `all`.
    pub segments: Vec<SegmentStats>,
}

/// A segment's figures over a period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentStats {
    /// The segment (`all` for every segment together).
    pub segment: String,
    /// Offers.
    pub offers: u64,
    /// Acceptances.
    pub acceptances: u64,
    /// Rejections.
    pub rejections: u64,
    /// Acceptances / offers (`null` without offers).
    pub uptake: Option<f64>,
    /// Sum of offered amounts (events with an amount).
    pub offered_amount: f64,
    /// Sum of accepted amounts.
    pub accepted_amount: f64,
    /// Accepted amount / offered amount (`null` without offered amount).
    pub amount_uptake: Option<f64>,
    /// Distinct clients (HyperLogLog estimate, about 1.6% standard error).
    pub distinct_clients: u64,
    /// How far offers were quoted from the model.
    pub quote_distance: QuoteDistance,
    /// Against the other segments (absent for `all`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disparity: Option<DisparityStat>,
}

/// The mean absolute distance of the offered rates from the model's mid and one-step forecast, in sigmas
/// of the one-step forecast.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct QuoteDistance {
    /// Offers with a forecast of the pair to compare with.
    pub offers_with_reference: u64,
    /// Offers made before the pair had a forecast: counted, not in the means.
    pub offers_without_reference: u64,
    /// Mean |rate − mid| / sigma.
    pub mid_sigmas: Option<f64>,
    /// Mean |rate − forecast| / sigma.
    pub forecast_sigmas: Option<f64>,
}

/// A segment against the other segments pooled, over a period.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DisparityStat {
    /// Two-proportion z of uptake (`null` below the minimum count on a side).
    pub uptake_z: Option<f64>,
    /// Welch z of the mean distance from the forecast (`null` below the minimum count on a side).
    pub distance_z: Option<f64>,
    /// The larger in size of the two: what the alarm compares with the threshold.
    pub statistic: Option<f64>,
    /// An alarm is standing (raised, and the statistic has not yet fallen below `disparity_clear`).
    pub alarm: bool,
}
