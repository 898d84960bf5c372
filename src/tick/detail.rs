//! The words of a quarantine's `detail`: which field was wrong, its value and what was expected. The JSON
//! and CSV readers share them, so the same bad value reads the same whichever format it came in.
//!
//! Values are echoed cut to [`SHOWN_CHARS`] characters, with control characters replaced: a detail is for
//! a person reading a log line or a record, and the full text is already in the record's `raw`.

use std::fmt;

use super::{MAX_SOURCE_LEN, Pair};
use crate::time::TimeError;

/// Most characters of a bad value repeated in a detail.
pub const SHOWN_CHARS: usize = 40;

/// A value as shown in a detail: cut to [`SHOWN_CHARS`] characters (`…` says so), control characters as
/// U+FFFD.
pub struct Shown<'a>(pub &'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for c in chars.by_ref().take(SHOWN_CHARS) {
            fmt::Write::write_char(f, if c.is_control() { '\u{fffd}' } else { c })?;
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

/// A pair that is not six upper-case letters.
pub fn bad_pair(text: &str) -> String {
    format!("pair `{}` is not six upper-case letters", Shown(text))
}

/// A tick for another pair than the subject's (or the replayed one).
pub fn pair_mismatch(got: Pair, expected: Pair) -> String {
    format!("pair {got} where {expected} was expected")
}

/// A timestamp field that cannot be read (`ts`, `arrival`, a CSV time column).
pub fn bad_time(field: &str, e: &TimeError) -> String {
    format!("{field}: {e}")
}

/// A source id that is not 1 to [`MAX_SOURCE_LEN`] printable ASCII characters.
pub fn bad_source(text: &str) -> String {
    format!(
        "source `{}` is not 1 to {MAX_SOURCE_LEN} printable ASCII characters",
        Shown(text)
    )
}

/// A price that is not a number (nor a placeholder for a missing one).
pub fn bad_price(field: &str, text: &str) -> String {
    format!("{field} `{}` is not a number", Shown(text))
}

/// A sequence number that is not a non-negative integer.
pub fn bad_seq(text: &str) -> String {
    format!("seq `{}` is not an integer from 0 to 2^64-1", Shown(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_cut_and_control_characters_replaced() {
        assert_eq!(Shown("abc").to_string(), "abc");
        assert_eq!(Shown("a\u{0}b\nc").to_string(), "a\u{fffd}b\u{fffd}c");
        let long = "x".repeat(100);
        assert_eq!(Shown(&long).to_string(), format!("{}…", "x".repeat(SHOWN_CHARS)));
        assert_eq!(Shown(&"é".repeat(SHOWN_CHARS)).to_string(), "é".repeat(SHOWN_CHARS));
    }
}
