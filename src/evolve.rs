//! How checkpointed state grows without breaking the checkpoints already on disk.
//!
//! Checkpoints are postcard, a positional format: a record holds field values in declaration order,
//! with no names. A field added to the engine's state would make every older record misread. Instead of
//! keeping a frozen copy of every state type per format version, a field added in format `N` is marked
//!
//! ```ignore
//! #[serde(default, deserialize_with = "crate::evolve::since_v3")]
//! new_field: T,            // T: Default, meaning "not started yet"
//! ```
//!
//! While a record of an older format is being decoded ([`decoding`] sets the version for the duration of
//! the call), such a field reads nothing and takes its default; in a record of format `N` or newer it
//! reads its value as usual. Text formats (the TOML configuration, JSON) never set a version, so they see
//! every field. Arrays sized by a list that grows (quarantine reasons, flags, dimensions) are written
//! with their length from format 3 on ([`counts`]), and read from older records at the length they had.
//!
//! Rules for a change to the state's shape: only add fields (never change or reorder existing ones),
//! mark each with the `since_vN` of the format that adds it, give it a default the engine can run from,
//! and bump the checkpoint's `FORMAT_VERSION`. The golden fixtures of every older format must keep
//! decoding (`tests/checkpoint.rs`).

use std::cell::Cell;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

thread_local! {
    /// The format version of the record being decoded on this thread; `u16::MAX` outside a decode
    /// (every field present).
    static DECODING: Cell<u16> = const { Cell::new(u16::MAX) };
}

/// Runs `f` (a synchronous decode) with the record's format `version` in effect on this thread, and
/// restores the previous value afterwards, even if `f` panics.
pub fn decoding<R>(version: u16, f: impl FnOnce() -> R) -> R {
    struct Restore(u16);
    impl Drop for Restore {
        fn drop(&mut self) {
            DECODING.with(|d| d.set(self.0));
        }
    }
    let _restore = Restore(DECODING.with(|d| d.replace(version)));
    f()
}

/// The format version of the record being decoded (`u16::MAX` when none is).
pub fn version() -> u16 {
    DECODING.with(Cell::get)
}

/// Reads a field added in format `since`: its default in an older record (nothing is read).
fn since<'de, D, T>(since: u16, d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    if version() < since {
        Ok(T::default())
    } else {
        T::deserialize(d)
    }
}

/// A field added in checkpoint format 3 (see the module's documentation).
///
/// # Errors
/// The deserializer's, in a record of format 3 or newer.
pub fn since_v3<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    since(3, d)
}

/// Counters indexed by a list that may grow (`[u64; N]`): written with their length; read from a record
/// older than format 3 at the length `OLD` they had then, and from a newer one at any length (missing
/// entries are zero, so a build that added an entry reads the records of the build before it).
pub mod counts {
    use super::*;

    /// Writes the array as a length-prefixed sequence.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer, T: Serialize, const N: usize>(a: &[T; N], s: S) -> Result<S::Ok, S::Error> {
        a.as_slice().serialize(s)
    }

    /// Reads an array written by [`serialize`], or a fixed `[T; OLD]` from a record older than format 3.
    ///
    /// # Errors
    /// The deserializer's; more entries than `N` (a record from a newer build).
    pub fn deserialize<'de, D, T, const OLD: usize, const N: usize>(d: D) -> Result<[T; N], D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de> + Default + Copy,
    {
        use serde::de::Error;
        let mut out = [T::default(); N];
        let read: Vec<T> = if version() < 3 {
            struct Fixed<T, const OLD: usize>(std::marker::PhantomData<T>);
            impl<'de, T: Deserialize<'de>, const OLD: usize> serde::de::Visitor<'de> for Fixed<T, OLD> {
                type Value = Vec<T>;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    write!(f, "an array of {OLD} entries")
                }
                fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
                    let mut v = Vec::with_capacity(OLD);
                    for i in 0..OLD {
                        v.push(seq.next_element()?.ok_or_else(|| A::Error::invalid_length(i, &self))?);
                    }
                    Ok(v)
                }
            }
            d.deserialize_tuple(OLD, Fixed::<T, OLD>(std::marker::PhantomData))?
        } else {
            Vec::deserialize(d)?
        };
        if read.len() > N {
            return Err(D::Error::invalid_length(
                read.len(),
                &"no more entries than this build knows",
            ));
        }
        out[..read.len()].copy_from_slice(&read);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Old {
        a: u32,
        c: [u64; 2],
        b: String,
    }

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct New {
        a: u32,
        #[serde(with = "counts_2")]
        c: [u64; 3],
        #[serde(default, deserialize_with = "since_v3")]
        added: Option<f64>,
        b: String,
    }

    mod counts_2 {
        pub use super::counts::serialize;
        pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<[u64; 3], D::Error> {
            super::counts::deserialize::<D, u64, 2, 3>(d)
        }
    }

    #[test]
    fn an_older_record_reads_with_defaults_and_old_lengths() {
        let old = postcard::to_stdvec(&Old {
            a: 7,
            c: [1, 2],
            b: "x".into(),
        })
        .unwrap();
        let back: New = decoding(2, || postcard::from_bytes(&old)).unwrap();
        assert_eq!(
            back,
            New {
                a: 7,
                c: [1, 2, 0],
                added: None,
                b: "x".into()
            }
        );
        // Without the version the same bytes are misread or refused, which is why decode sets it.
        assert!(postcard::from_bytes::<New>(&old).map(|n| n != back).unwrap_or(true));
    }

    #[test]
    fn a_current_record_round_trips_and_the_version_is_restored() {
        let new = New {
            a: 1,
            c: [4, 5, 6],
            added: Some(0.5),
            b: "y".into(),
        };
        let bytes = postcard::to_stdvec(&new).unwrap();
        assert_eq!(decoding(3, || postcard::from_bytes::<New>(&bytes)).unwrap(), new);
        assert_eq!(version(), u16::MAX);
        // Text formats see every field, whatever was decoded before.
        let json = serde_json::to_string(&new).unwrap();
        assert_eq!(serde_json::from_str::<New>(&json).unwrap(), new);
    }
}
