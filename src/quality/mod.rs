//! Incremental data quality: each tick is checked as it arrives and accepted, accepted with flags, or
//! quarantined with a reason; windowed DAMA dimension scores and streaming field profiles per pair.
//!
//! Map (one check per file; everything is pure, synchronous, bounded and allocation-free per tick):
//! - [`config`]: [`QualityConfig`], every threshold with its default.
//! - [`validator`]: [`Validator`], the per-pair state machine running the checks in order, and [`Verdict`].
//! - `price`: missing, non-finite, non-positive, crossed, too-wide spread.
//! - `duplicates`: the bounded recent-content set; `sources`: per-source sequence numbers and agreement.
//! - `jump`: the rolling median ± k·MAD band of log-returns with re-anchoring on level shifts.
//! - [`timeliness`]: business time for expected ticks, factor ages.
//! - [`scores`]: windowed dimension scores, [`Status`], [`QualityReport`].
//! - [`profile`] and [`sketch`]: per-field streaming statistics and the DDSketch quantile sketch.
//! - [`flags`]: [`Flags`] on accepted ticks; [`reason`]: [`QuarantineReason`] and [`Dimension`], which live
//!   in [`crate::tick`] (the parser quarantines too, and the tick layer sits below this one).

pub mod config;
mod duplicates;
pub mod flags;
mod jump;
mod price;
pub mod profile;
pub mod scores;
pub mod sketch;
mod sources;
pub mod timeliness;
pub mod validator;

pub use crate::tick::reason::{self, Dimension, QuarantineReason};
pub use config::{QualityConfig, QualityConfigError, Threshold, Thresholds};
pub use flags::Flags;
pub use jump::{MoveJudge, NoJudge};
pub use profile::{FieldProfile, FieldSummary, Profile, ProfileReport};
pub use scores::{DimensionScore, FlagCount, QualityReport, ReasonCount, Status};
pub use sketch::{DdSketch, SketchError};
pub use validator::{Validator, Verdict};
