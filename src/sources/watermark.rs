//! The watermarks: for each `<kind>.<series>`, the time of the last observation published and acknowledged,
//! in a JetStream key-value bucket (history 1), so a restarted `cambio sources run` fetches from there:
//! nothing fetched twice, nothing skipped. Without JetStream there is nowhere to keep them: the runner
//! refuses to start rather than re-fetch everything at every run.

use async_nats::jetstream;
use bytes::Bytes;

use crate::time::{format_ts, parse_ts_us};

/// Why a watermark could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum WatermarkError {
    /// The bucket could not be opened or created (JetStream disabled on the server, no permission).
    #[error("opening the key-value bucket {bucket} (does the NATS server have JetStream enabled?): {message}")]
    Bucket {
        /// The bucket.
        bucket: String,
        /// The server's or client's error.
        message: String,
    },
    /// A key could not be read.
    #[error("reading watermark {key}: {message}")]
    Get {
        /// The key.
        key: String,
        /// The error.
        message: String,
    },
    /// A key could not be written.
    #[error("writing watermark {key}: {message}")]
    Put {
        /// The key.
        key: String,
        /// The error.
        message: String,
    },
    /// A stored value is not a time (written by something else).
    #[error("watermark {key}: `{value}` is not an RFC 3339 time; delete the key to backfill from start")]
    Corrupt {
        /// The key.
        key: String,
        /// The value, cut to 40 characters.
        value: String,
    },
}

/// The watermark bucket.
#[derive(Clone)]
pub struct Watermarks {
    store: jetstream::kv::Store,
}

/// The key of a series: `<kind>.<series>`.
pub fn key(kind: &str, series: &str) -> String {
    format!("{kind}.{series}")
}

impl Watermarks {
    /// Opens the bucket, creating it when it does not exist.
    ///
    /// # Errors
    /// [`WatermarkError::Bucket`].
    pub async fn open(js: &jetstream::Context, bucket: &str) -> Result<Watermarks, WatermarkError> {
        if let Ok(store) = js.get_key_value(bucket).await {
            return Ok(Watermarks { store });
        }
        let store = js
            .create_key_value(jetstream::kv::Config {
                bucket: bucket.to_string(),
                description: "cambio sources: the last published observation of each series".into(),
                history: 1,
                ..Default::default()
            })
            .await
            .map_err(|e| WatermarkError::Bucket {
                bucket: bucket.to_string(),
                message: e.to_string(),
            })?;
        Ok(Watermarks { store })
    }

    /// The bucket itself, for a kind whose watermark is not a time (the `postgres` kind's integer ids).
    pub fn store(&self) -> &jetstream::kv::Store {
        &self.store
    }

    /// The watermark of `key`, microseconds since the epoch; `None` before the first run.
    ///
    /// # Errors
    /// [`WatermarkError::Get`] or [`WatermarkError::Corrupt`].
    pub async fn get(&self, key: &str) -> Result<Option<i64>, WatermarkError> {
        let value = self.store.get(key).await.map_err(|e| WatermarkError::Get {
            key: key.to_string(),
            message: e.to_string(),
        })?;
        let Some(v) = value else { return Ok(None) };
        let text = String::from_utf8_lossy(&v);
        parse_ts_us(text.trim()).map(Some).map_err(|_| WatermarkError::Corrupt {
            key: key.to_string(),
            value: text.chars().take(40).collect(),
        })
    }

    /// Sets the watermark of `key`.
    ///
    /// # Errors
    /// [`WatermarkError::Put`].
    pub async fn put(&self, key: &str, ts_us: i64) -> Result<(), WatermarkError> {
        self.store
            .put(key, Bytes::from(format_ts(ts_us)))
            .await
            .map(|_| ())
            .map_err(|e| WatermarkError::Put {
                key: key.to_string(),
                message: e.to_string(),
            })
    }
}
