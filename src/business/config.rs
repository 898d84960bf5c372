//! The `[business]` table: segments, periods, where the masking key is, and the disparity alarm.

use serde::{Deserialize, Serialize};

use crate::horizon::Horizon;

/// Most segments configured (each is a label value of several metrics: cardinality stays bounded).
pub const MAX_SEGMENTS: usize = 16;

/// Most periods configured.
pub const MAX_PERIODS: usize = 4;

/// The `[business]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BusinessConfig {
    /// The segments an event's `segment` may name; any other value, or none, counts as `other`.
    pub segments: Vec<String>,
    /// Sliding windows of event time the figures are kept over (`1h`, `1d`, `30m`, `1w`, …).
    pub periods: Vec<String>,
    /// A file whose content is the masking key (surrounding whitespace trimmed). The environment variable
    /// `CAMBIO_MASK_KEY`, when set, takes precedence.
    pub mask_key_file: Option<std::path::PathBuf>,
    /// A segment's disparity statistic (a z score) above this raises an alarm.
    pub disparity_threshold: f64,
    /// After an alarm, the statistic must fall below this before another can be raised (hysteresis).
    pub disparity_clear: f64,
    /// Offers needed on each side (the segment, and the other segments pooled) before the statistic is
    /// computed.
    pub disparity_min_count: u64,
    /// Seconds an event's `ts` may be ahead of its arrival before it is refused as `future_ts` (a clock
    /// far ahead would otherwise push every window forward and empty it).
    pub max_future_secs: f64,
}

impl Default for BusinessConfig {
    fn default() -> Self {
        BusinessConfig {
            segments: vec!["retail".into(), "sme".into(), "corporate".into()],
            periods: vec!["1h".into(), "1d".into()],
            mask_key_file: None,
            disparity_threshold: 4.0,
            disparity_clear: 2.0,
            disparity_min_count: 30,
            max_future_secs: 300.0,
        }
    }
}

impl BusinessConfig {
    /// Checks the table.
    ///
    /// # Errors
    /// A message naming the setting that is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.segments.len() > MAX_SEGMENTS {
            return Err(format!("business.segments: at most {MAX_SEGMENTS} segments"));
        }
        for (i, s) in self.segments.iter().enumerate() {
            let ok = !s.is_empty()
                && s.len() <= 32
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
            if !ok {
                return Err(format!(
                    "business.segments: `{s}` must be 1 to 32 lowercase letters, digits, `_` or `-`"
                ));
            }
            if s == "other" || s == "all" {
                return Err(format!("business.segments: `{s}` is reserved"));
            }
            if self.segments[..i].contains(s) {
                return Err(format!("business.segments: `{s}` is listed twice"));
            }
        }
        self.period_spans()?;
        if !(self.disparity_threshold.is_finite() && self.disparity_threshold > 0.0) {
            return Err("business.disparity_threshold must be a positive number".into());
        }
        if !(self.disparity_clear.is_finite()
            && self.disparity_clear >= 0.0
            && self.disparity_clear < self.disparity_threshold)
        {
            return Err("business.disparity_clear must be at least 0 and below disparity_threshold".into());
        }
        if self.disparity_min_count == 0 {
            return Err("business.disparity_min_count must be at least 1".into());
        }
        if !(self.max_future_secs.is_finite() && self.max_future_secs >= 0.0) {
            return Err("business.max_future_secs must be a non-negative number".into());
        }
        Ok(())
    }

    /// The periods as (name, span in µs), in the configured order.
    ///
    /// # Errors
    /// A message when a period is not a time span of at least a minute, is listed twice, or there are
    /// none or too many.
    pub fn period_spans(&self) -> Result<Vec<(String, i64)>, String> {
        if self.periods.is_empty() || self.periods.len() > MAX_PERIODS {
            return Err(format!("business.periods: 1 to {MAX_PERIODS} periods"));
        }
        let mut out: Vec<(String, i64)> = Vec::new();
        for p in &self.periods {
            let span = match p.parse::<Horizon>() {
                Ok(h @ Horizon::Time { us }) if us >= 60_000_000 => (h.to_string(), us),
                _ => {
                    return Err(format!(
                        "business.periods: `{p}` must be a span of time of at least a minute, such as 1h or 1d"
                    ));
                }
            };
            if out.iter().any(|(_, us)| *us == span.1) {
                return Err(format!("business.periods: `{p}` is listed twice"));
            }
            out.push(span);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_mistakes_are_named() {
        let c = BusinessConfig::default();
        assert!(c.validate().is_ok());
        assert_eq!(
            c.period_spans().unwrap(),
            vec![("1h".to_string(), 3_600_000_000), ("1d".to_string(), 86_400_000_000)]
        );
        let bad = |f: &dyn Fn(&mut BusinessConfig)| {
            let mut c = BusinessConfig::default();
            f(&mut c);
            c.validate().unwrap_err()
        };
        assert!(bad(&|c| c.segments.push("other".into())).contains("reserved"));
        assert!(bad(&|c| c.segments.push("Retail Banking".into())).contains("lowercase"));
        assert!(bad(&|c| c.segments.push("sme".into())).contains("twice"));
        assert!(bad(&|c| c.periods = vec!["5step".into()]).contains("span of time"));
        assert!(bad(&|c| c.periods = vec!["10s".into()]).contains("at least a minute"));
        assert!(bad(&|c| c.periods = vec!["60m".into(), "1h".into()]).contains("twice"));
        assert!(bad(&|c| c.periods.clear()).contains("1 to"));
        assert!(bad(&|c| c.disparity_clear = 5.0).contains("disparity_clear"));
        assert!(bad(&|c| c.disparity_min_count = 0).contains("min_count"));
    }
}
