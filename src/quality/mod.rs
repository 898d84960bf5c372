//! Incremental data quality: each tick is checked as it arrives and accepted, accepted with flags, or
//! quarantined with a reason; windowed DAMA dimension scores and streaming field profiles per pair.
//!
//! Map (one check per file; everything is pure, synchronous, bounded and allocation-free per tick):
//! - [`config`]: [`QualityConfig`], every threshold with its default.
//! - [`validator`]: [`Validator`], the per-pair state machine running the checks in order, and [`Verdict`].
//! - `price`: missing, non-finite, non-positive, crossed, too-wide spread.
//! - `duplicates`: the bounded recent-content set; `sources`: per-source sequence numbers and agreement.
//! - `jump`: the rolling median ± k·MAD band of log-returns with re-anchoring on level shifts.
//! - [`timeliness`]: business time for expected ticks, factor ages; `cadence`: the stream's learned
//!   hourly profile, so a silence in session counts missing ticks and a market closure does not.
//! - [`scores`]: windowed dimension scores, [`Status`], [`QualityReport`]; `hysteresis`: a status enters
//!   Warn or Fail at its threshold and leaves only after recovering by a margin for a dwell.
//! - [`profile`] and [`sketch`]: per-field streaming statistics and the DDSketch quantile sketch.
//! - [`flags`]: [`Flags`] on accepted ticks; [`reason`]: [`QuarantineReason`] and [`Dimension`], which live
//!   in [`crate::tick`] (the parser quarantines too, and the tick layer sits below this one).

mod cadence;
pub mod config;
mod duplicates;
pub mod flags;
mod hysteresis;
mod jump;
mod price;
pub mod profile;
pub mod scores;
pub mod sketch;
mod sources;
pub mod timeliness;
pub mod validator;

pub use crate::tick::reason::{self, Dimension, QuarantineReason};
pub use config::{CadenceConfig, QualityConfig, QualityConfigError, StatusHysteresis, Threshold, Thresholds};
pub use flags::Flags;
pub use jump::{MoveJudge, NoJudge};
pub use profile::{FieldProfile, FieldSummary, Profile, ProfileReport};
pub use scores::{DimensionScore, FlagCount, QualityReport, ReasonCount, Status};
pub use sketch::{DdSketch, SketchError};
pub use validator::{Validator, Verdict};
