//! A fast path for the common tick: a flat JSON object with the contract's fields, plain ASCII strings
//! and plain numbers. It reads the payload in one pass without building a generic value, and gives up
//! (returns `None`) on anything else: escapes, unknown or repeated keys, non-ASCII bytes, nested values,
//! numbers outside JSON's grammar. The caller then uses serde_json, which decides with its exact rules,
//! so the fast path changes speed, never results (a test compares both on many payloads).

/// The fields of a tick as written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(crate) struct Fields<'a> {
    pub pair: &'a str,
    pub ts: &'a str,
    pub bid: Option<f64>,
    pub ask: Option<f64>,
    pub mid: Option<f64>,
    pub source: Option<&'a str>,
    pub seq: Option<u64>,
}

struct Cursor<'a> {
    /// The payload, already known to be UTF-8, so ASCII-delimited slices of it need no re-validation.
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> Cursor<'a> {
    fn ws(&mut self) {
        let rest = self.b.get(self.i..).unwrap_or_default();
        self.i += rest
            .iter()
            .position(|&c| !matches!(c, b' ' | b'\t' | b'\n' | b'\r'))
            .unwrap_or(rest.len());
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        self.ws();
        if self.b.get(self.i) == Some(&c) {
            self.i += 1;
            Some(())
        } else {
            None
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    /// A string without escapes.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.i;
        let rest = self.b.get(start..)?;
        // The closing quote, or an escape (which ends the fast path). Control and non-ASCII characters
        // need no check here: every string field is validated by its own parser (pair, timestamp,
        // source id), which rejects them exactly as the general path does.
        let end = memchr::memchr2(b'"', b'\\', rest)?;
        if rest[end] != b'"' {
            return None;
        }
        self.i = start + end;
        let s = self.s.get(start..self.i)?;
        self.i += 1;
        Some(s)
    }

    /// The bytes of a number in JSON's grammar: `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`.
    fn number_text(&mut self) -> Option<&'a str> {
        self.ws();
        let start = self.i;
        let digits = |cur: &mut Self| {
            let s = cur.i;
            while cur.b.get(cur.i).is_some_and(u8::is_ascii_digit) {
                cur.i += 1;
            }
            cur.i - s
        };
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                digits(self);
            }
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            if digits(self) == 0 {
                return None;
            }
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if digits(self) == 0 {
                return None;
            }
        }
        self.s.get(start..self.i)
    }

    fn null(&mut self) -> Option<()> {
        self.ws();
        if self.b[self.i..].starts_with(b"null") {
            self.i += 4;
            Some(())
        } else {
            None
        }
    }

    /// A number or `null`; integers and floats alike become `f64` (as serde_json does for an `f64` field).
    fn price(&mut self) -> Option<Option<f64>> {
        if self.peek()? == b'n' {
            self.null()?;
            return Some(None);
        }
        let v = parse_decimal(self.number_text()?)?;
        // serde_json refuses numbers that overflow to infinity; let it say so.
        v.is_finite().then_some(Some(v))
    }

    /// A non-negative integer that fits in `u64`, or `null`.
    fn seq(&mut self) -> Option<Option<u64>> {
        if self.peek()? == b'n' {
            self.null()?;
            return Some(None);
        }
        let t = self.number_text()?;
        if !t.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        Some(Some(t.parse().ok()?))
    }
}

/// Reads a flat tick object, or `None` when the payload needs the general parser.
pub(crate) fn scan(payload: &[u8]) -> Option<Fields<'_>> {
    let s = std::str::from_utf8(payload).ok()?;
    let mut c = Cursor { s, b: payload, i: 0 };
    c.eat(b'{')?;
    let mut f = Fields::default();
    let mut seen = 0u8;
    if c.peek()? != b'}' {
        loop {
            let key = c.string()?;
            c.eat(b':')?;
            let bit = match key {
                "pair" => {
                    f.pair = c.string()?;
                    1
                }
                "ts" => {
                    f.ts = c.string()?;
                    2
                }
                "bid" => {
                    f.bid = c.price()?;
                    4
                }
                "ask" => {
                    f.ask = c.price()?;
                    8
                }
                "mid" => {
                    f.mid = c.price()?;
                    16
                }
                "source" => {
                    f.source = Some(c.string()?);
                    32
                }
                "seq" => {
                    f.seq = c.seq()?;
                    64
                }
                _ => return None,
            };
            if seen & bit != 0 {
                return None;
            }
            seen |= bit;
            match c.peek()? {
                b',' => c.i += 1,
                b'}' => break,
                _ => return None,
            }
        }
    }
    c.eat(b'}')?;
    c.ws();
    // Both required fields present, nothing after the object.
    (seen & 3 == 3 && c.i == payload.len()).then_some(f)
}

/// Powers of ten exactly representable as `f64`.
const POW10: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20,
    1e21, 1e22,
];

/// Parses a JSON number already checked against the grammar. Plain decimals with at most 15 significant
/// digits and 22 fraction digits take Clinger's fast path (an exact integer divided by an exact power of
/// ten is correctly rounded by IEEE division, so the result equals the standard parser's); everything
/// else goes to the standard parser.
fn parse_decimal(t: &str) -> Option<f64> {
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let mut mantissa: u64 = 0;
    let mut digits = 0u32;
    let mut frac_digits: Option<u32> = None;
    for c in body.bytes() {
        match c {
            b'0'..=b'9' => {
                mantissa = mantissa * 10 + u64::from(c - b'0');
                if mantissa != 0 {
                    digits += 1;
                }
                if let Some(f) = frac_digits.as_mut() {
                    *f += 1;
                }
                if digits > 15 {
                    return t.parse().ok();
                }
            }
            b'.' => frac_digits = Some(0),
            _ => return t.parse().ok(),
        }
    }
    let k = frac_digits.unwrap_or(0) as usize;
    let v = match POW10.get(k) {
        Some(p) => mantissa as f64 / p,
        None => return t.parse().ok(),
    };
    Some(if neg { -v } else { v })
}

#[cfg(test)]
mod tests {
    use super::parse_decimal;

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
            assert_eq!(
                parse_decimal(&t).map(f64::to_bits),
                t.parse::<f64>().ok().map(f64::to_bits),
                "{t}"
            );
        }
        for t in [
            "0",
            "-0",
            "0.0",
            "1e5",
            "1.5E-3",
            "123456789012345678",
            "0.1234567890123456789",
            "-0.000001",
        ] {
            assert_eq!(
                parse_decimal(t).map(f64::to_bits),
                t.parse::<f64>().ok().map(f64::to_bits),
                "{t}"
            );
        }
    }
}
