//! The `[checkpoint]` table: where `cambio serve` keeps its durable state and how often it writes it.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::Retention;

/// The `[checkpoint]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// The redb file; no file, no checkpoints (the service starts fresh every time).
    pub path: Option<PathBuf>,
    /// A checkpoint after this many ticks (all pairs together) since the last one.
    pub every_ticks: u64,
    /// And at least this often while ticks arrive, seconds.
    pub every_secs: f64,
    /// Versions kept per pair besides those marked keep.
    pub keep_last: usize,
    /// Restore the newest good version of each pair on start.
    pub restore: bool,
    /// When the file cannot be opened at all (truncated, not a redb file), move it aside and start fresh
    /// instead of refusing to start. Off by default: starting fresh silently would lose what the models
    /// learned, so it must be asked for (also `cambio serve --fresh`).
    pub fresh_if_unreadable: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            path: None,
            every_ticks: 100_000,
            every_secs: 60.0,
            keep_last: Retention::default().keep_last,
            restore: true,
            fresh_if_unreadable: false,
        }
    }
}

/// The `[registry]` table: rules for operators' changes to the model registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RegistryConfig {
    /// The four-eyes rule: a manual rollback is recorded as a request and happens only when a different
    /// actor approves it. The service records the rule in the registry file, so `cambio models` honours
    /// it offline too.
    pub require_approval: bool,
}

impl CheckpointConfig {
    /// Checks ranges.
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.every_ticks == 0 {
            return Err("checkpoint.every_ticks must be positive".into());
        }
        if !(self.every_secs.is_finite() && self.every_secs >= 0.01) {
            return Err(format!("checkpoint.every_secs {}: at least 0.01", self.every_secs));
        }
        if self.keep_last == 0 {
            return Err("checkpoint.keep_last must be at least 1".into());
        }
        Ok(())
    }

    /// The retention policy.
    pub fn retention(&self) -> Retention {
        Retention {
            keep_last: self.keep_last,
        }
    }
}
