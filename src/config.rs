//! The whole configuration file of `cambio` (`--config cambio.toml`): one table per layer that needs
//! settings. Only the binary's layer knows the whole file; each table's type lives in the layer that uses
//! it (`[engine]` in [`crate::engine`], `[nats]` and `[serve]` in [`crate::nats`], `[checkpoint]` in
//! [`crate::checkpoint`], `[challenger]` in [`crate::challenger`], `[business]` in [`crate::business`]).

use serde::{Deserialize, Serialize};

pub use crate::engine::config::{EngineConfig, ModelConfig, SignalDetectors};

/// The configuration file of `cambio` (`--config cambio.toml`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The engine settings shared by every pair.
    pub engine: EngineConfig,
    /// Where the NATS server is and how to authenticate (`cambio serve` and the tools).
    pub nats: crate::nats::NatsConfig,
    /// How `cambio serve` consumes and reports.
    pub serve: crate::nats::serve::ServeConfig,
    /// Where and how often `cambio serve` checkpoints its state.
    pub checkpoint: crate::checkpoint::CheckpointConfig,
    /// Rules for operators' changes to the model registry (`[registry]`).
    pub registry: crate::checkpoint::RegistryConfig,
    /// The shadow challenger and the rollback guard (`[challenger]`, `[challenger.engine]`).
    pub challenger: crate::challenger::ChallengerConfig,
    /// Business metrics of deal events: segments, periods, masking key, disparity alarm (`[business]`).
    pub business: crate::business::BusinessConfig,
    /// The Prometheus endpoint of `cambio serve` (`[metrics]`).
    pub metrics: crate::nats::serve::metrics::MetricsConfig,
    /// Periodic batch retraining inside `cambio serve` (`[retrain]`).
    pub retrain: crate::nats::serve::retrain::RetrainConfig,
    /// Several `cambio serve` instances sharing the pairs (`[cluster]`).
    pub cluster: crate::nats::serve::cluster::ClusterConfig,
}

impl From<Config> for crate::nats::serve::ServeSettings {
    fn from(c: Config) -> Self {
        crate::nats::serve::ServeSettings {
            engine: c.engine,
            nats: c.nats,
            serve: c.serve,
            checkpoint: c.checkpoint,
            registry: c.registry,
            challenger: c.challenger,
            business: c.business,
            metrics: c.metrics,
            retrain: c.retrain,
            cluster: c.cluster,
        }
    }
}

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The TOML is invalid or has unknown keys.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
        /// What is wrong.
        message: String,
    },
}

impl Config {
    /// Reads and validates a configuration file.
    ///
    /// # Errors
    /// [`ConfigError`] when it cannot be read, parsed or validated.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.into(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// [`Config::load`] on text already read: parse, then validate every table. Public so the fuzz targets
    /// (`tests/fuzz`) reach the loader without a file; `path` only names the file in errors.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the TOML does not parse or a table is refused.
    pub fn parse(text: &str, path: &std::path::Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.into(),
            message: e.to_string(),
        })?;
        cfg.engine
            .validate()
            .and_then(|()| cfg.serve.validate())
            .and_then(|()| cfg.checkpoint.validate())
            .and_then(|()| cfg.challenger.validate(&cfg.engine))
            .and_then(|()| cfg.business.validate())
            .and_then(|()| cfg.retrain.validate())
            .and_then(|()| cfg.cluster.validate())
            .map_err(|message| ConfigError::Invalid {
                path: path.into(),
                message,
            })?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default_and_typos_are_errors() {
        let c: Config = toml::from_str("").unwrap();
        assert_eq!(c, Config::default());
        assert!(c.engine.validate().is_ok());
        assert!(toml::from_str::<Config>("[engine]\nhorizonz = [\"1d\"]").is_err());
        let c: Config = toml::from_str("[engine]\nhorizons = [\"1step\", \"1h\"]").unwrap();
        assert_eq!(c.engine.horizons.len(), 2);
        let c: Config = toml::from_str("[engine]\nhorizons = [\"1h\", \"1h\"]").unwrap();
        assert!(c.engine.validate().is_err());
    }

    /// Every TOML example in the configuration manual parses as a whole configuration file and
    /// validates, so no example in the docs can rot.
    #[test]
    fn configuration_manual_examples_are_valid() {
        let manual = include_str!("../docs/configuration.md");
        let blocks: Vec<&str> = manual
            .split("```toml\n")
            .skip(1)
            .filter_map(|b| b.split("```").next())
            .collect();
        assert!(
            blocks.len() >= 5,
            "docs/configuration.md: {} TOML examples",
            blocks.len()
        );
        for b in blocks {
            let c: Config = toml::from_str(b).unwrap_or_else(|e| panic!("{e}\n{b}"));
            let valid = c
                .engine
                .validate()
                .and_then(|()| c.serve.validate())
                .and_then(|()| c.checkpoint.validate())
                .and_then(|()| c.challenger.validate(&c.engine))
                .and_then(|()| c.business.validate())
                .and_then(|()| c.retrain.validate());
            if let Err(e) = valid {
                panic!("{e}\n{b}");
            }
        }
    }
}
