//! Why a tick was quarantined. A rejected tick is a value that is counted and published, never an error
//! that ends a loop.

use serde::{Deserialize, Serialize};

/// The reason a tick never reached the model. Each variant maps to one DAMA dimension
/// ([`QuarantineReason::dimension`]) so quarantines feed the quality scores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QuarantineReason {
    /// Not JSON, not an object, a field of the wrong type, or an unknown pair/timestamp format.
    Malformed,
    /// No price at all (neither `bid`+`ask` nor `mid`), or only one side of the quote.
    MissingValue,
    /// A price that is NaN or infinite.
    NonFinitePrice,
    /// A price that is zero or negative.
    NonPositivePrice,
    /// A price outside the configured absolute range (`min_price`..`max_price`): no exchange rate is
    /// 1e300, and such a value would overflow every computation downstream.
    PriceOutOfRange,
    /// `bid > ask`.
    CrossedQuote,
    /// The relative spread is wider than the configured maximum.
    SpreadTooWide,
    /// The log-return from the last accepted mid lies outside the rolling median ± k·MAD band.
    ImplausibleJump,
    /// The tick is older than the allowed lag behind the pair's watermark or its arrival time.
    StaleTimestamp,
    /// The tick is dated ahead of its arrival time (or of the watermark) by more than allowed.
    FutureTimestamp,
    /// The tick's time is earlier than the last accepted tick of the pair.
    OutOfOrder,
    /// The same source already sent this sequence number.
    DuplicateSeq,
    /// The same content (source, time and prices) was already accepted.
    DuplicateContent,
    /// The tick's `pair` does not match the subject (or the pair being replayed).
    PairMismatch,
}

/// The DAMA data-quality dimensions scored per pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    /// Values present, no sequence gaps, ticks expected vs received.
    Completeness,
    /// Values well-formed and in their domains.
    Validity,
    /// Values plausible (no implausible jumps).
    Accuracy,
    /// Bid/ask coherent, sources agree.
    Consistency,
    /// Arrival lag, staleness, stale factors.
    Timeliness,
    /// No duplicates.
    Uniqueness,
}

impl Dimension {
    /// All dimensions in a fixed order (used for arrays indexed by dimension).
    pub const ALL: [Dimension; 6] = [
        Dimension::Completeness,
        Dimension::Validity,
        Dimension::Accuracy,
        Dimension::Consistency,
        Dimension::Timeliness,
        Dimension::Uniqueness,
    ];

    /// Position in [`Dimension::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Completeness => "completeness",
            Dimension::Validity => "validity",
            Dimension::Accuracy => "accuracy",
            Dimension::Consistency => "consistency",
            Dimension::Timeliness => "timeliness",
            Dimension::Uniqueness => "uniqueness",
        }
    }
}

impl QuarantineReason {
    /// All reasons, in a fixed order (used for counters indexed by reason).
    pub const ALL: [QuarantineReason; 14] = [
        QuarantineReason::Malformed,
        QuarantineReason::MissingValue,
        QuarantineReason::NonFinitePrice,
        QuarantineReason::NonPositivePrice,
        QuarantineReason::PriceOutOfRange,
        QuarantineReason::CrossedQuote,
        QuarantineReason::SpreadTooWide,
        QuarantineReason::ImplausibleJump,
        QuarantineReason::StaleTimestamp,
        QuarantineReason::FutureTimestamp,
        QuarantineReason::OutOfOrder,
        QuarantineReason::DuplicateSeq,
        QuarantineReason::DuplicateContent,
        QuarantineReason::PairMismatch,
    ];

    /// Position in [`QuarantineReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }

    /// The snake_case name used in reports and quarantine messages.
    pub fn name(self) -> &'static str {
        match self {
            QuarantineReason::Malformed => "malformed",
            QuarantineReason::MissingValue => "missing_value",
            QuarantineReason::NonFinitePrice => "non_finite_price",
            QuarantineReason::NonPositivePrice => "non_positive_price",
            QuarantineReason::PriceOutOfRange => "price_out_of_range",
            QuarantineReason::CrossedQuote => "crossed_quote",
            QuarantineReason::SpreadTooWide => "spread_too_wide",
            QuarantineReason::ImplausibleJump => "implausible_jump",
            QuarantineReason::StaleTimestamp => "stale_timestamp",
            QuarantineReason::FutureTimestamp => "future_timestamp",
            QuarantineReason::OutOfOrder => "out_of_order",
            QuarantineReason::DuplicateSeq => "duplicate_seq",
            QuarantineReason::DuplicateContent => "duplicate_content",
            QuarantineReason::PairMismatch => "pair_mismatch",
        }
    }

    /// The DAMA dimension a quarantine of this kind counts against.
    pub fn dimension(self) -> Dimension {
        use QuarantineReason::*;
        match self {
            Malformed | NonFinitePrice | NonPositivePrice | PriceOutOfRange | PairMismatch => Dimension::Validity,
            MissingValue => Dimension::Completeness,
            CrossedQuote | SpreadTooWide => Dimension::Consistency,
            ImplausibleJump => Dimension::Accuracy,
            StaleTimestamp | FutureTimestamp | OutOfOrder => Dimension::Timeliness,
            DuplicateSeq | DuplicateContent => Dimension::Uniqueness,
        }
    }
}
