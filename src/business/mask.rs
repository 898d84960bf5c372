//! Pseudonymisation of client identifiers: an HMAC-SHA256 of the identifier under a secret key. The same
//! client always gets the same pseudonym under one key (so distinct clients can be counted), the
//! identifier cannot be recovered from it without the key, and there is no default key: without one,
//! business events are refused rather than hashed with a key anybody could know.
//!
//! The key is never printed: [`MaskKey`]'s `Debug` says only that a key is set and its length.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Shortest key accepted, in bytes (128 bits).
pub const MIN_KEY_BYTES: usize = 16;

/// Bytes of the HMAC kept in a pseudonym (128 bits: collisions are negligible for any client count).
pub const PSEUDONYM_BYTES: usize = 16;

/// The environment variable holding the masking key (its bytes, as given).
pub const KEY_ENV: &str = "CAMBIO_MASK_KEY";

/// Why a masking key is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    /// The key is shorter than [`MIN_KEY_BYTES`] (after trimming surrounding whitespace).
    #[error(
        "the masking key has {len} bytes; at least {MIN_KEY_BYTES} are needed (for example the output of `openssl rand -hex 32`)"
    )]
    TooShort {
        /// The key's length in bytes.
        len: usize,
    },
}

/// The secret key client identifiers are pseudonymised with.
#[derive(Clone)]
pub struct MaskKey {
    /// The HMAC already keyed: cloned per identifier, so the key schedule runs once.
    keyed: Hmac<Sha256>,
    len: usize,
}

impl std::fmt::Debug for MaskKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MaskKey(set, {} bytes)", self.len)
    }
}

impl MaskKey {
    /// A key from its bytes. Surrounding whitespace (a file's final newline) is not part of the key.
    ///
    /// # Errors
    /// [`MaskError::TooShort`] below [`MIN_KEY_BYTES`].
    pub fn new(bytes: &[u8]) -> Result<MaskKey, MaskError> {
        let key = bytes.trim_ascii();
        if key.len() < MIN_KEY_BYTES {
            return Err(MaskError::TooShort { len: key.len() });
        }
        // HMAC takes keys of any length: this never fails.
        let keyed =
            <Hmac<Sha256> as KeyInit>::new_from_slice(key).map_err(|_| MaskError::TooShort { len: key.len() })?;
        Ok(MaskKey { keyed, len: key.len() })
    }

    /// The pseudonym of a client identifier.
    pub fn pseudonym(&self, client: &str) -> Pseudonym {
        let mut mac = self.keyed.clone();
        mac.update(client.as_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; PSEUDONYM_BYTES];
        for (o, b) in out.iter_mut().zip(full.iter()) {
            *o = *b;
        }
        Pseudonym(out)
    }
}

/// A client's pseudonym: the first [`PSEUDONYM_BYTES`] of the HMAC of its identifier; shown as hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pseudonym([u8; PSEUDONYM_BYTES]);

impl Pseudonym {
    /// Its first eight bytes as a number: uniform bits, what the distinct-client sketch is fed.
    pub fn hash64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

impl std::fmt::Display for Pseudonym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pseudonym({self})")
    }
}

impl serde::Serialize for Pseudonym {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_stable_and_never_shown() {
        let key = MaskKey::new(b"0123456789abcdef-secret\n").unwrap();
        let a = key.pseudonym("CLIENT-7731-SECRET");
        assert_eq!(a, key.pseudonym("CLIENT-7731-SECRET"));
        assert_ne!(a, key.pseudonym("CLIENT-7732-SECRET"));
        let other = MaskKey::new(b"another key of 16+ bytes").unwrap();
        assert_ne!(a, other.pseudonym("CLIENT-7731-SECRET"));
        let hex = a.to_string();
        assert_eq!(hex.len(), 2 * PSEUDONYM_BYTES);
        assert!(!hex.contains("7731"));
        // HMAC-SHA256("0123456789abcdef-secret", "CLIENT-7731-SECRET"): the trailing newline is not key.
        assert_eq!(
            key.pseudonym("x"),
            MaskKey::new(b"0123456789abcdef-secret").unwrap().pseudonym("x")
        );
        let shown = format!("{key:?}");
        assert!(!shown.contains("0123456789"), "{shown}");
    }

    #[test]
    fn short_keys_are_refused() {
        assert_eq!(MaskKey::new(b"short").unwrap_err(), MaskError::TooShort { len: 5 });
        assert_eq!(
            MaskKey::new(b"  15-bytes-key!  \n").unwrap_err(),
            MaskError::TooShort { len: 13 }
        );
        assert!(MaskKey::new(&[b'k'; 16]).is_ok());
    }

    /// RFC 4231 test case 1 (key 0x0b × 20, data "Hi There") pins the HMAC itself: a pseudonym is the
    /// first 16 bytes of its output.
    #[test]
    fn hmac_matches_rfc_4231() {
        let key = MaskKey::new(&[0x0b; 20]).unwrap();
        let p = key.pseudonym("Hi There");
        assert_eq!(p.to_string(), "b0344c61d8db38535ca8afceaf0bf12b");
    }
}
