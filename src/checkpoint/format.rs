//! The checkpoint format: a pair's state in a versioned binary envelope.
//!
//! ```text
//! offset  size  field
//!      0     8  magic  b"CAMBIOCK"
//!      8     2  format version, u16 little-endian (FORMAT_VERSION)
//!     10     8  payload length in bytes, u64 little-endian
//!     18     4  CRC-32 (IEEE) of bytes 8..18 and of the payload, u32 little-endian
//!     22     n  payload: the PairState in postcard
//! ```
//!
//! Every record carries its format version, so a file written by a newer cambio is refused with
//! [`FormatError::NewerVersion`] instead of being misread. The payload encoding is not self-describing:
//! any change to the serialized shape of the engine's state must bump [`FORMAT_VERSION`] (the golden
//! fixture test `golden_checkpoints_still_decode` fails when the shape changes without it). Fields added
//! to the state are read from older records as their defaults, by the rules in [`crate::evolve`].
//!
//! **Why postcard.** Measured on an engine after 100,000 ticks of the calm random walk's synthetic input
//! (horizons 1step, 10step, 1m), release build, best of 50 runs, on this 2-core shared machine
//! (measured best of 50 runs, 2026-11-26; now `cargo bench --bench checkpoint`):
//!
//! | payload     | bytes   | encode  | decode (restore) |
//! |-------------|---------|---------|------------------|
//! | serde_json  | 321,523 | 535 µs  | 1,310 µs         |
//! | postcard 1  | 130,898 | 142 µs  | 120 µs           |
//! | bincode 1.3 | 167,375 | 33 µs   | 51 µs            |
//!
//! JSON would take 131 ms to restore 100 such pairs, over a 100 ms budget; postcard is 2.5×
//! smaller than JSON and restores 11× faster. bincode 1 is faster still but 28% larger and no longer
//! maintained, while postcard's wire format is specified and stable since 1.0, which matters for files
//! kept for years. Both binary formats restore engines whose outputs are byte-identical to the original's
//! (the example checks it, and so does `tests/checkpoint.rs`).

use serde::{Deserialize, Serialize};

use crate::challenger::Contest;
use crate::checkpoint::applied::AppliedSeqs;
use crate::engine::Engine;

/// The first bytes of every checkpoint.
pub const MAGIC: [u8; 8] = *b"CAMBIOCK";

/// The format version this build writes, and the newest it reads.
///
/// - 1: the engine and the applied stream sequences.
/// - 2: also the champion/challenger contest (challenger engine, known-good copy, windows).
/// - 3: counters indexed by a growing list are written with their length, and the state may grow: fields
///   added since are read as their defaults from older records (see [`crate::evolve`]).
pub const FORMAT_VERSION: u16 = 3;

/// Bytes before the payload: magic, version, length, checksum.
pub const HEADER_LEN: usize = 8 + 2 + 8 + 4;

/// Everything a restore needs for one pair: its engine, and with JetStream the stream sequences it has
/// applied, so a restarted service neither skips nor re-applies a tick.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PairState {
    /// The pair's whole engine state (model, volatility, validators' windows, detectors, scores, pending
    /// forecasts).
    pub engine: Engine,
    /// The JetStream stream sequences applied to this engine (`None` when not served from JetStream).
    pub applied: Option<AppliedSeqs>,
    /// The champion/challenger contest and rollback guard, when the service runs one (format 2).
    pub contest: Option<Contest>,
}

/// Format 1's payload, still read: no contest.
#[derive(Deserialize)]
struct PairStateV1 {
    engine: Engine,
    applied: Option<AppliedSeqs>,
}

/// A [`PairState`] by reference: the same serialized shape, so a serving shard encodes its live engine
/// without cloning it.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct PairStateRef<'a> {
    /// The engine.
    pub engine: &'a Engine,
    /// The stream sequences applied.
    pub applied: Option<&'a AppliedSeqs>,
    /// The contest.
    pub contest: Option<&'a Contest>,
}

/// Why bytes could not be read as a checkpoint. A checkpoint is refused, never misread.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The bytes do not start with the checkpoint magic: not a cambio checkpoint.
    #[error("not a cambio checkpoint (bad magic bytes)")]
    BadMagic,
    /// Written by a newer cambio, in a format this build does not know.
    #[error("checkpoint format version {found} is newer than this build reads (up to {supported}); upgrade cambio")]
    NewerVersion {
        /// The version in the record.
        found: u16,
        /// The newest version this build reads.
        supported: u16,
    },
    /// A version that never existed (0, or one this build no longer reads).
    #[error("unknown checkpoint format version {0}")]
    UnknownVersion(u16),
    /// Fewer bytes than the header, or than the payload length it declares: the record was cut.
    #[error("truncated checkpoint: {have} bytes, {need} needed")]
    Truncated {
        /// Bytes present.
        have: usize,
        /// Bytes the header says there should be.
        need: usize,
    },
    /// More bytes than the header declares: two records glued together, or garbage appended.
    #[error("checkpoint has {extra} bytes after its payload")]
    TrailingBytes {
        /// Bytes past the declared end.
        extra: usize,
    },
    /// The checksum does not match: the bytes were damaged on disk or in transit.
    #[error("checkpoint checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): damaged")]
    Checksum {
        /// The CRC-32 in the header.
        stored: u32,
        /// The CRC-32 of the bytes.
        computed: u32,
    },
    /// The checksum matched but the payload does not decode as this version's state (a bug, or a shape
    /// change without a version bump).
    #[error("checkpoint payload does not decode: {0}")]
    Payload(String),
    /// The payload decodes, but the engine in it is not one its own configuration builds (a checkpoint
    /// written wrong or tampered with: the checksum only catches damage). Refused rather than served.
    #[error("checkpoint payload is inconsistent: {0}")]
    Inconsistent(String),
    /// The state could not be encoded.
    #[error("cannot encode checkpoint: {0}")]
    Encode(String),
}

fn checksum(header: &[u8], payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(header);
    h.update(payload);
    h.finalize()
}

/// Wraps an already-encoded payload in the envelope.
pub fn seal(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    let crc = checksum(&out[8..18], payload);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Checks the envelope (magic, version, length, checksum) and returns the payload and its version.
///
/// # Errors
/// [`FormatError`] for a bad magic, an unknown or newer version, a short buffer, trailing bytes or a
/// checksum mismatch.
pub fn open(bytes: &[u8]) -> Result<(u16, &[u8]), FormatError> {
    if bytes.len() < MAGIC.len() {
        // Too short even for the magic: only call it truncated if what is there is the magic's start.
        return Err(if MAGIC.starts_with(bytes) {
            FormatError::Truncated {
                have: bytes.len(),
                need: HEADER_LEN,
            }
        } else {
            FormatError::BadMagic
        });
    }
    if bytes[..8] != MAGIC {
        return Err(FormatError::BadMagic);
    }
    // The version comes before the rest of the header, since a newer format may lay the rest out
    // differently: a newer record is reported as newer, not as truncated or damaged.
    if let [_, _, _, _, _, _, _, _, lo, hi, ..] = *bytes {
        let version = u16::from_le_bytes([lo, hi]);
        if version > FORMAT_VERSION {
            return Err(FormatError::NewerVersion {
                found: version,
                supported: FORMAT_VERSION,
            });
        }
        if version == 0 {
            return Err(FormatError::UnknownVersion(version));
        }
    }
    if bytes.len() < HEADER_LEN {
        return Err(FormatError::Truncated {
            have: bytes.len(),
            need: HEADER_LEN,
        });
    }
    let version = u16::from_le_bytes([bytes[8], bytes[9]]);
    let mut len = [0u8; 8];
    len.copy_from_slice(&bytes[10..18]);
    let len = u64::from_le_bytes(len);
    let need = usize::try_from(len)
        .ok()
        .and_then(|l| l.checked_add(HEADER_LEN))
        .unwrap_or(usize::MAX);
    if bytes.len() < need {
        return Err(FormatError::Truncated {
            have: bytes.len(),
            need,
        });
    }
    if bytes.len() > need {
        return Err(FormatError::TrailingBytes {
            extra: bytes.len() - need,
        });
    }
    let stored = u32::from_le_bytes([bytes[18], bytes[19], bytes[20], bytes[21]]);
    let payload = &bytes[HEADER_LEN..];
    let computed = checksum(&bytes[8..18], payload);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }
    Ok((version, payload))
}

/// A pair's state as a checkpoint record.
///
/// # Errors
/// [`FormatError::Encode`] if the state cannot be serialized (not expected: it is plain data).
pub fn encode(state: &PairState) -> Result<Vec<u8>, FormatError> {
    encode_ref(PairStateRef {
        engine: &state.engine,
        applied: state.applied.as_ref(),
        contest: state.contest.as_ref(),
    })
}

/// [`encode`] from borrowed parts.
///
/// # Errors
/// As [`encode`].
pub fn encode_ref(state: PairStateRef<'_>) -> Result<Vec<u8>, FormatError> {
    let payload = postcard::to_stdvec(&state).map_err(|e| FormatError::Encode(e.to_string()))?;
    Ok(seal(&payload))
}

/// Reads a checkpoint record back into a pair's state.
///
/// # Errors
/// Every [`FormatError`] of [`open`], and [`FormatError::Payload`] when the payload does not decode.
pub fn decode(bytes: &[u8]) -> Result<PairState, FormatError> {
    let state = decode_payload(bytes)?;
    state.engine.check_restored().map_err(FormatError::Inconsistent)?;
    Ok(state)
}

fn decode_payload(bytes: &[u8]) -> Result<PairState, FormatError> {
    let (version, payload) = open(bytes)?;
    crate::evolve::decoding(version, || match version {
        1 => postcard::from_bytes::<PairStateV1>(payload)
            .map(|v1| PairState {
                engine: v1.engine,
                applied: v1.applied,
                contest: None,
            })
            .map_err(|e| FormatError::Payload(e.to_string())),
        2 | 3 => postcard::from_bytes(payload).map_err(|e| FormatError::Payload(e.to_string())),
        v => Err(FormatError::UnknownVersion(v)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;
    use crate::tick::Pair;

    fn state(ticks: usize) -> PairState {
        let pair = Pair::parse("USDMXN").unwrap();
        let mut engine = Engine::new(pair, &EngineConfig::default()).unwrap();
        let mut out = Vec::new();
        for t in crate::testkit::synth_ticks(pair, ticks) {
            engine.on_tick(&t, &mut out);
        }
        let mut applied = AppliedSeqs::with_floor(41);
        applied.insert(43);
        PairState {
            engine,
            applied: Some(applied),
            contest: None,
        }
    }

    fn json(s: &PairState) -> String {
        serde_json::to_string(&s.engine).unwrap() + &serde_json::to_string(&s.applied).unwrap()
    }

    #[test]
    fn round_trips_exactly() {
        let s = state(500);
        let bytes = encode(&s).unwrap();
        assert_eq!(&bytes[..8], b"CAMBIOCK");
        let back = decode(&bytes).unwrap();
        assert_eq!(json(&back), json(&s));
    }

    #[test]
    fn bad_magic_is_refused() {
        let mut bytes = encode(&state(10)).unwrap();
        bytes[0] = b'X';
        assert!(matches!(decode(&bytes), Err(FormatError::BadMagic)));
        assert!(matches!(decode(b"{\"json\":1}"), Err(FormatError::BadMagic)));
        assert!(matches!(decode(b""), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn newer_and_unknown_versions_are_refused() {
        let mut bytes = encode(&state(10)).unwrap();
        bytes[8..10].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        let e = decode(&bytes).unwrap_err();
        assert!(matches!(e, FormatError::NewerVersion { found: 4, supported: 3 }), "{e}");
        assert!(e.to_string().contains("newer"), "{e}");
        bytes[8..10].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(decode(&bytes), Err(FormatError::UnknownVersion(0))));
    }

    #[test]
    fn truncation_and_trailing_bytes_are_refused() {
        let bytes = encode(&state(10)).unwrap();
        for cut in [4, HEADER_LEN - 1, HEADER_LEN, bytes.len() - 1] {
            let e = decode(&bytes[..cut]).unwrap_err();
            assert!(matches!(e, FormatError::Truncated { .. }), "cut at {cut}: {e}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(decode(&longer), Err(FormatError::TrailingBytes { extra: 1 })));
        // A length field claiming more than memory can hold is a truncation, not an allocation.
        let mut huge = bytes;
        huge[10..18].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(decode(&huge), Err(FormatError::Truncated { .. })));
    }

    #[test]
    fn any_flipped_bit_fails_the_checksum() {
        let bytes = encode(&state(200)).unwrap();
        for pos in [HEADER_LEN, HEADER_LEN + 100, bytes.len() / 2, bytes.len() - 1, 18] {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x04;
            assert!(
                matches!(decode(&bad), Err(FormatError::Checksum { .. })),
                "flip at {pos}"
            );
        }
    }

    #[test]
    fn a_valid_envelope_around_garbage_is_a_payload_error() {
        let e = decode(&seal(b"\xff\xff\xff")).unwrap_err();
        assert!(matches!(e, FormatError::Payload(_)), "{e}");
    }
}
