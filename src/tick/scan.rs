//! A fast path for the common tick: a flat JSON object with the contract's fields, plain ASCII strings
//! and plain numbers. It reads the payload in one pass without building a generic value, and gives up
//! (returns `None`) on anything else: escapes, unknown or repeated keys, non-ASCII bytes, nested values,
//! numbers outside JSON's grammar, and any field its own parser would refuse. The caller then uses
//! serde_json, which decides with its exact rules, so the fast path changes speed, never results (tests
//! compare both on many payloads).
//!
//! It never validates UTF-8 or searches for the end of a string: each value is read by the parser of its
//! field (six uppercase letters, a timestamp, printable ASCII, digits), which accepts only ASCII and
//! stops at the closing quote. An accepted payload is therefore all ASCII, and every string in it is
//! exactly what serde_json would decode (no escapes, no control characters), so the two paths cannot
//! disagree even on which error comes first (a pair mismatch before a malformed field).

use super::{MAX_SOURCE_LEN, Pair, Source, Tick};
use crate::time::parse_ts_prefix;

/// A quoted key as the little-endian word of its first eight bytes, and the mask of the bytes that the
/// key (with both quotes) covers; keys are recognised by one masked compare instead of a string compare.
const fn key_word(quoted: &[u8]) -> (u64, u64) {
    let mut w = [0u8; 8];
    let mut i = 0;
    while i < quoted.len() {
        w[i] = quoted[i];
        i += 1;
    }
    let mask = if quoted.len() == 8 {
        u64::MAX
    } else {
        (1 << (8 * quoted.len())) - 1
    };
    (u64::from_le_bytes(w), mask)
}

const PAIR: (u64, u64) = key_word(b"\"pair\"");
const TS: (u64, u64) = key_word(b"\"ts\"");
const BID: (u64, u64) = key_word(b"\"bid\"");
const ASK: (u64, u64) = key_word(b"\"ask\"");
const MID: (u64, u64) = key_word(b"\"mid\"");
const SOURCE: (u64, u64) = key_word(b"\"source\"");
const SEQ: (u64, u64) = key_word(b"\"seq\"");

const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
const HIGH: u64 = 0x8080_8080_8080_8080;
const ONES: u64 = 0x0101_0101_0101_0101;

/// The high bit of each byte of `w` that is above `n` (`n < 0x80`; bytes of 0x80 and up count as above).
/// Adding `0x7f - n` to the low seven bits cannot carry into the next byte, so bytes do not interact.
const fn above(w: u64, n: u8) -> u64 {
    (((w & LOW) + ONES * (0x7f - n) as u64) | w) & HIGH
}

/// The high bit of each byte of `w` equal to `c` (exact: no carries between bytes).
const fn equal(w: u64, c: u8) -> u64 {
    let x = w ^ (ONES * c as u64);
    !(((x & LOW) + LOW) | x) & HIGH
}

/// Bytes read past the end of the payload are NUL, which no rule below accepts, so reading past the end
/// fails like any other unexpected byte and the code needs no separate length checks.
struct Cursor<'a> {
    b: &'a [u8],
    i: usize,
}

impl Cursor<'_> {
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(0)
    }

    fn cur(&self) -> u8 {
        self.at(self.i)
    }

    /// Skips whitespace; the first byte is checked inline because compact JSON has none.
    fn ws(&mut self) {
        if self.cur() <= b' ' {
            while matches!(self.cur(), b' ' | b'\t' | b'\n' | b'\r') {
                self.i += 1;
            }
        }
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.cur() == c {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    /// The eight bytes from the cursor as a little-endian word (`None` near the end of the payload).
    fn word(&self) -> Option<u64> {
        Some(u64::from_le_bytes(*self.b.get(self.i..)?.first_chunk::<8>()?))
    }

    /// Skips a key of `len` bytes already recognised, the colon and any whitespace around it.
    fn colon_after(&mut self, len: usize) -> Option<()> {
        self.i += len;
        self.eat(b':')?;
        self.ws();
        Some(())
    }

    fn null(&mut self) -> Option<()> {
        if self.b.get(self.i..)?.starts_with(b"null") {
            self.i += 4;
            Some(())
        } else {
            None
        }
    }

    /// Six uppercase ASCII letters in quotes (what [`Pair::parse`] accepts), checked as one word.
    fn pair(&mut self) -> Option<Pair> {
        const QUOTES: u64 = u64::from_le_bytes(*b"\"\0\0\0\0\0\0\"");
        const ENDS: u64 = 0xff00_0000_0000_00ff;
        const LETTERS: u64 = 0x0080_8080_8080_8000;
        let w = self.word()?;
        if (w & ENDS) != QUOTES || above(w, b'A' - 1) & LETTERS != LETTERS || above(w, b'Z') & LETTERS != 0 {
            return None;
        }
        let mut a = [0u8; 6];
        a.copy_from_slice(&w.to_le_bytes()[1..7]);
        self.i += 8;
        Some(Pair(a))
    }

    /// A timestamp in quotes, read by the timestamp parser itself: it stops at the first byte outside its
    /// grammar, which must be the closing quote. Any escape, control or non-ASCII byte stops it earlier.
    fn ts(&mut self) -> Option<i64> {
        if self.cur() != b'"' {
            return None;
        }
        let (us, n) = parse_ts_prefix(self.b.get(self.i + 1..)?).ok()?;
        if self.at(self.i + 1 + n) != b'"' {
            return None;
        }
        self.i += n + 2;
        Some(us)
    }

    /// A source id in quotes: 1 to [`MAX_SOURCE_LEN`] printable ASCII bytes other than `\` (what
    /// [`Source::new`] accepts, written without escapes).
    fn source(&mut self) -> Option<Source> {
        if self.cur() != b'"' {
            return None;
        }
        let start = self.i + 1;
        let mut bytes = [0u8; MAX_SOURCE_LEN];
        // Common case: a short id and its closing quote within one word.
        if let Some(w) = self
            .b
            .get(start..)
            .and_then(|r| r.first_chunk::<8>())
            .map(|w| u64::from_le_bytes(*w))
        {
            let quotes = equal(w, b'"');
            if quotes != 0 {
                let n = quotes.trailing_zeros() as usize / 8;
                let before = (1u64 << (8 * n)) - 1;
                let bad = (!above(w, b' ') & HIGH) | above(w, b'~') | equal(w, b'\\');
                if n == 0 || bad & before != 0 {
                    return None;
                }
                bytes[..8].copy_from_slice(&(w & before).to_le_bytes());
                self.i = start + n + 1;
                return Some(Source { len: n as u8, bytes });
            }
        }
        let mut n = 0;
        loop {
            let c = self.at(start + n);
            if c == b'"' {
                break;
            }
            if n == MAX_SOURCE_LEN || !c.is_ascii_graphic() || c == b'\\' {
                return None;
            }
            bytes[n] = c;
            n += 1;
        }
        if n == 0 {
            return None;
        }
        self.i = start + n + 1;
        Some(Source { len: n as u8, bytes })
    }

    /// A number or `null`; integers and floats alike become `f64` (as serde_json does for an `f64` field).
    // Inlined at its three call sites: the call and the `Option<Option<f64>>` passed through memory cost
    // about ten instructions a price.
    #[inline(always)]
    fn price(&mut self) -> Option<Option<f64>> {
        if self.cur() == b'n' {
            self.null()?;
            return Some(None);
        }
        let (v, n) = number(self.b.get(self.i..)?)?;
        self.i += n;
        Some(Some(v))
    }

    /// A non-negative integer that fits in `u64`, or `null`. Anything after the digits (`.`, `e`) fails
    /// the caller's check for `,` or `}`, so `1.0` and `1e3` go to serde_json.
    fn seq(&mut self) -> Option<Option<u64>> {
        match self.cur() {
            b'n' => {
                self.null()?;
                return Some(None);
            }
            b'0' => {
                self.i += 1;
                return Some(Some(0));
            }
            b'1'..=b'9' => {}
            _ => return None,
        }
        let mut v: u64 = 0;
        loop {
            let d = self.cur().wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(d))?;
            self.i += 1;
        }
        Some(Some(v))
    }
}

/// Reads a flat tick object, or `None` when the payload needs the general parser. The tick's pair is not
/// yet compared with the expected one.
// Inlined into its one caller so the `Tick` is built in the caller's result, not built and then copied
// (measured: about 80 instructions a tick).
#[inline(always)]
pub(crate) fn scan(payload: &[u8]) -> Option<Tick> {
    let mut c = Cursor { b: payload, i: 0 };
    c.eat(b'{')?;
    let mut pair = None;
    let mut ts_us = None;
    let (mut bid, mut ask, mut mid, mut source, mut seq) = (None, None, None, None, None);
    let mut seen = 0u8;
    c.ws();
    if c.cur() != b'}' {
        loop {
            // A key is recognised by its first letter and one masked compare of the word (every key of a
            // tick is followed by at least `:0}`, so a payload too short for the word is not a tick).
            c.ws();
            let w = c.word()?;
            let is = |(word, mask): (u64, u64)| w & mask == word;
            let bit = match (w >> 8) as u8 {
                b'p' if is(PAIR) => {
                    c.colon_after(6)?;
                    pair = Some(c.pair()?);
                    1
                }
                b't' if is(TS) => {
                    c.colon_after(4)?;
                    ts_us = Some(c.ts()?);
                    2
                }
                b'b' if is(BID) => {
                    c.colon_after(5)?;
                    bid = c.price()?;
                    4
                }
                b'a' if is(ASK) => {
                    c.colon_after(5)?;
                    ask = c.price()?;
                    8
                }
                b'm' if is(MID) => {
                    c.colon_after(5)?;
                    mid = c.price()?;
                    16
                }
                b's' if is(SOURCE) => {
                    c.colon_after(8)?;
                    source = Some(c.source()?);
                    32
                }
                b's' if is(SEQ) => {
                    c.colon_after(5)?;
                    seq = c.seq()?;
                    64
                }
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            c.ws();
            match c.cur() {
                b',' => c.i += 1,
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.eat(b'}')?;
    c.ws();
    if c.i != payload.len() {
        return None;
    }
    // Both required fields present.
    Some(Tick {
        pair: pair?,
        ts_us: ts_us?,
        bid,
        ask,
        mid,
        source: source.unwrap_or(Source::UNKNOWN),
        seq,
        arrival_us: None,
    })
}

/// Powers of ten exactly representable as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Largest integer below which every integer is exactly an `f64`.
const MAX_EXACT: u64 = 1 << 53;

/// Reads a JSON number (`-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) at the start of `b`; returns its
/// value and length, or `None` when the text is not in that grammar or the value overflows to infinity
/// (serde_json refuses those; let it say so).
///
/// Plain decimals with at most 19 digits, a mantissa of at most 2^53 and at most 22 fraction digits take
/// Clinger's fast path: an exact integer divided by an exact power of ten is correctly rounded by IEEE
/// division, so the result equals the standard parser's. Everything else goes to the standard parser.
fn number(b: &[u8]) -> Option<(f64, usize)> {
    let neg = b.first() == Some(&b'-');
    let mut i = usize::from(neg);
    let digits_start = i;
    let mut mantissa: u64 = 0;
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while let Some(&c) = b.get(i) {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    break;
                }
                mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
                i += 1;
            }
        }
        _ => return None,
    }
    let mut frac_digits = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while let Some(&c) = b.get(i) {
            let d = c.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            i += 1;
        }
        frac_digits = i - start;
        if frac_digits == 0 {
            return None;
        }
    }
    let mut exponent = false;
    if let Some(b'e' | b'E') = b.get(i) {
        exponent = true;
        i += 1;
        if let Some(b'+' | b'-') = b.get(i) {
            i += 1;
        }
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
    }
    // Digits read into the mantissa (the point is not one); 19 decimal digits cannot overflow a u64.
    let n_digits = i - digits_start - usize::from(frac_digits > 0);
    let v = if !exponent && n_digits <= 19 && mantissa <= MAX_EXACT && frac_digits < POW10.len() {
        let v = mantissa as f64 / POW10[frac_digits];
        if neg { -v } else { v }
    } else {
        // The text is ASCII (checked byte by byte above), so this cannot fail.
        let v: f64 = std::str::from_utf8(&b[..i]).ok()?.parse().ok()?;
        if !v.is_finite() {
            return None;
        }
        v
    };
    Some((v, i))
}

#[cfg(test)]
mod tests {
    use super::number;

    /// The number at the start of `t` (followed by a delimiter, as in a payload), as bits.
    fn read(t: &str) -> Option<u64> {
        let padded = format!("{t},");
        let (v, n) = number(padded.as_bytes())?;
        assert_eq!(n, t.len(), "{t}");
        Some(v.to_bits())
    }

    #[test]
    fn fast_decimals_equal_the_standard_parser() {
        let mut x: u64 = 42;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let int = x % 100_000;
            let frac = (x >> 20) % 1_000_000;
            let width = ((x >> 45) % 7) as usize;
            let t = if width == 0 {
                format!("{int}")
            } else {
                format!("{int}.{frac:0width$}")
            };
            let t = if x & 1 == 1 { format!("-{t}") } else { t };
            assert_eq!(read(&t), t.parse::<f64>().ok().map(f64::to_bits), "{t}");
        }
        // Mantissas around 2^53 and at 19 and 20 digits, where the fast path hands over.
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let m = (1u64 << 53) - 5000 + x % 10_000;
            let digits = m.to_string();
            let point = (x >> 32) as usize % digits.len();
            let t = if point == 0 {
                digits.clone()
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            };
            assert_eq!(read(&t), t.parse::<f64>().ok().map(f64::to_bits), "{t}");
            let t = format!("{}{}", x % 9 + 1, &digits[..(x >> 40) as usize % digits.len()]);
            assert_eq!(read(&t), t.parse::<f64>().ok().map(f64::to_bits), "{t}");
        }
        for t in [
            "0",
            "-0",
            "0.0",
            "-0.0",
            "1e5",
            "1.5E-3",
            "1E+2",
            "2e0",
            "123456789012345678",
            "1234567890123456789",
            "12345678901234567890",
            "99999999999999999999999",
            "18446744073709551615",
            "18446744073709551616",
            "0.1234567890123456789",
            "0.0000000000000000000001",
            "0.00000000000000000000001",
            "-0.000001",
            "9007199254740993",
            "9007199254740993.0",
            "1.7976931348623157e308",
            "4.9e-324",
            "1e-400",
        ] {
            assert_eq!(read(t), t.parse::<f64>().ok().map(f64::to_bits), "{t}");
        }
    }

    #[test]
    fn numbers_outside_json_grammar_or_range_are_refused() {
        for t in ["", "-", "+1", ".5", "1.", "1e", "1e+", "-.5", "1e400", "-1e400", "x"] {
            assert_eq!(number(format!("{t},").as_bytes()), None, "{t}");
        }
        // A leading zero ends the number; the caller then finds a digit where `,` or `}` must be.
        assert_eq!(number(b"01,").map(|(_, n)| n), Some(1));
    }
}
