//! The one input opener of `replay` and `replay --nats`: a path (scenario folder, `scenario.toml`, CSV or
//! JSON-lines file) resolved into its pair, its factor observations and where its ticks come from, so the
//! in-process replay and the publisher read exactly the same things.

use std::path::{Path, PathBuf};

use super::scenario::Scenario;
use super::source::{CsvTicks, DEFAULT_MAX_LINE_BYTES, JsonlTicks};
use super::synth::{SynthSpec, SynthTicks};
use super::{InputKind, Item, ReplayError, input_kind, scenario_factors};
use crate::tick::{Factor, Pair};

/// Where an input's ticks come from.
#[derive(Debug, Clone)]
pub enum TickData {
    /// A scenario's seeded synthetic stream.
    Synthetic(SynthSpec),
    /// A JSON-lines file of the message contract.
    Jsonl(PathBuf),
    /// A CSV file.
    Csv(PathBuf),
}

/// An opened input.
#[derive(Debug, Clone)]
pub struct Input {
    /// What it is called in reports: the scenario's name, or the file's path.
    pub name: String,
    /// The pair: a scenario's own, else the one asked for (`--pair`), else whatever the file names.
    pub pair: Option<Pair>,
    /// Factor observations, shifted by their publication lags and sorted by time (scenarios only).
    pub factors: Vec<Factor>,
    /// The ticks.
    pub data: TickData,
    /// The scenario, when the input is one (its configuration and expectations).
    pub scenario: Option<Scenario>,
    /// Longest line read from a file; longer lines are skipped as `oversized` (`--max-line-bytes`).
    pub max_line_bytes: usize,
}

impl Input {
    /// Opens `path`; `pair` is `--pair` (a scenario's own pair wins).
    ///
    /// # Errors
    /// [`ReplayError`] when the path is missing, the scenario or a factor file cannot be read, or the
    /// scenario's pair is invalid.
    pub fn open(path: &Path, pair: Option<Pair>) -> Result<Input, ReplayError> {
        if !path.exists() {
            return Err(ReplayError::Missing(path.to_path_buf()));
        }
        match input_kind(path) {
            InputKind::Scenario => Input::of_scenario(Scenario::load(path)?),
            InputKind::Jsonl => Ok(Input::file(path, pair, TickData::Jsonl(path.to_path_buf()))),
            InputKind::Csv => Ok(Input::file(path, pair, TickData::Csv(path.to_path_buf()))),
        }
    }

    /// The input of a loaded scenario.
    ///
    /// # Errors
    /// [`ReplayError`] when its pair is invalid or a factor file cannot be read.
    pub fn of_scenario(scenario: Scenario) -> Result<Input, ReplayError> {
        let pair = Pair::parse(&scenario.pair).ok_or_else(|| {
            ReplayError::Config(format!(
                "scenario pair `{}` is not six uppercase letters",
                scenario.pair
            ))
        })?;
        let factors = scenario_factors(&scenario)?;
        let data = match &scenario.synthetic {
            Some(spec) => TickData::Synthetic(spec.clone()),
            None => {
                let data: PathBuf = scenario.data.as_ref().map(|d| scenario.dir.join(d)).unwrap_or_default();
                match input_kind(&data) {
                    InputKind::Jsonl => TickData::Jsonl(data),
                    _ => TickData::Csv(data),
                }
            }
        };
        Ok(Input {
            name: scenario.name.clone(),
            pair: Some(pair),
            factors,
            data,
            scenario: Some(scenario),
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        })
    }

    fn file(path: &Path, pair: Option<Pair>, data: TickData) -> Input {
        Input {
            name: path.display().to_string(),
            pair,
            factors: Vec::new(),
            data,
            scenario: None,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
        }
    }

    /// The ticks as items, parsed (quarantines included), in file order.
    ///
    /// # Errors
    /// [`ReplayError`] when the file cannot be opened or the synthetic spec is invalid.
    pub fn items(&self) -> Result<Box<dyn Iterator<Item = Item>>, ReplayError> {
        Ok(match &self.data {
            TickData::Synthetic(spec) => {
                let pair = self
                    .pair
                    .ok_or_else(|| ReplayError::Config("a synthetic stream needs a pair".into()))?;
                Box::new(SynthTicks::new(spec.clone(), pair).map_err(ReplayError::Synthetic)?)
            }
            TickData::Jsonl(p) => Box::new(JsonlTicks::open_capped(p, self.pair, self.max_line_bytes)?),
            TickData::Csv(p) => Box::new(CsvTicks::open_capped(p, self.pair, self.max_line_bytes)?),
        })
    }
}
