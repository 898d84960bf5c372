//! The `sources.toml` format: a list of `[[source]]` tables, each a kind of API, the series it fetches and
//! where each goes (`tick:PAIR` or `factor:NAME`), its token, start date, schedule and limits. Parsing is
//! pure: [`SourcesConfig::parse`] turns text into checked runtime values, or an error naming the source and
//! the field.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::Date;
use super::schedule::{Cron, Schedule};
use crate::tick::Pair;

/// The JetStream key-value bucket of the watermarks, unless the file names another.
pub const DEFAULT_BUCKET: &str = "cambio_sources";

/// Why a sources file is refused (exit status 2 of `cambio sources run`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this format (an unknown field, a wrong type).
    #[error("{0}")]
    Toml(String),
    /// A field of one source is invalid.
    #[error("source {source_name}: {message}")]
    Invalid {
        /// The source (its `name`, or `<kind>#<position>`).
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// The file has no `[[source]]`.
    #[error("no [[source]] in the file")]
    Empty,
}

/// The kinds of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Banxico SIE REST API.
    Banxico,
    /// INEGI indicators API (BIE/BISE).
    Inegi,
    /// FRED (St. Louis Fed) `series/observations`.
    Fred,
}

impl Kind {
    /// The kind as written in the file, in watermark keys and message ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Banxico => "banxico",
            Kind::Inegi => "inegi",
            Kind::Fred => "fred",
        }
    }

    /// The real API, used when the source sets no `base_url`.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Kind::Banxico => "https://www.banxico.org.mx/SieAPIRest/service/v1",
            Kind::Inegi => "https://www.inegi.org.mx/app/api/indicadores/desarrolladores/jsonxml",
            Kind::Fred => "https://api.stlouisfed.org/fred",
        }
    }

    /// The source's UTC offset in minutes, for "today" (a later date is refused) and cron schedules.
    /// Mexico City has kept UTC−6 all year since its daylight-saving time ended in October 2022; for FRED,
    /// New York's daylight-saving offset UTC−4, the later of its two, so a date that is already today
    /// there is never refused.
    pub fn utc_offset_minutes(self) -> i64 {
        match self {
            Kind::Banxico | Kind::Inegi => -6 * 60,
            Kind::Fred => -4 * 60,
        }
    }
}

/// Where a series is published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// As ticks of a pair (`fx.ticks.<PAIR>`), the value as the tick's `mid`.
    Tick(Pair),
    /// As a factor (`fx.factors.<NAME>`).
    Factor(String),
}

impl Target {
    /// Parses `tick:PAIR` or `factor:NAME`.
    pub fn parse(s: &str) -> Result<Target, String> {
        if let Some(p) = s.strip_prefix("tick:") {
            return Pair::parse(p)
                .map(Target::Tick)
                .ok_or_else(|| format!("`{s}`: the pair must be six uppercase letters, e.g. tick:USDMXN"));
        }
        if let Some(n) = s.strip_prefix("factor:") {
            let ok = !n.is_empty()
                && n.len() <= 32
                && n.bytes()
                    .all(|b| b.is_ascii_graphic() && !matches!(b, b'.' | b'*' | b'>'));
            return if ok {
                Ok(Target::Factor(n.to_string()))
            } else {
                Err(format!(
                    "`{s}`: a factor name is 1 to 32 printable characters with no `.`, `*` or `>`"
                ))
            };
        }
        Err(format!("`{s}`: expected tick:PAIR or factor:NAME"))
    }
}

/// One `[[source]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    kind: Kind,
    name: Option<String>,
    series: BTreeMap<String, String>,
    token_env: Option<String>,
    start: String,
    every: Option<String>,
    cron: Option<String>,
    base_url: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    backoff: Option<String>,
}

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    prefix: Option<String>,
    #[serde(default)]
    bucket: Option<String>,
    #[serde(default, rename = "source")]
    sources: Vec<RawSource>,
}

/// One source, checked.
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// Its name in logs, counts and metrics: `name`, or `<kind>#<position>` (from 1).
    pub name: String,
    /// The kind.
    pub kind: Kind,
    /// Each series id and where it is published, in id order.
    pub series: Vec<(String, Target)>,
    /// The environment variable that holds the API token.
    pub token_env: Option<String>,
    /// The first date of the backfill.
    pub start: Date,
    /// When it runs.
    pub schedule: Schedule,
    /// The API's base URL (no trailing slash).
    pub base_url: String,
    /// The limit of one request, connection to last byte (`timeout`, default 30 s).
    pub timeout: Duration,
    /// How many times a transient failure is retried (`retries`, default 3).
    pub retries: u32,
    /// The first wait before a retry, doubled at each (`backoff`, default 1 s; at most 60 s).
    pub backoff: Duration,
}

/// A whole sources file, checked.
#[derive(Debug, Clone)]
pub struct SourcesConfig {
    /// The subject prefix (`prefix`, default `fx`).
    pub prefix: String,
    /// The key-value bucket of the watermarks (`bucket`, default [`DEFAULT_BUCKET`]).
    pub bucket: String,
    /// The sources, in file order.
    pub sources: Vec<SourceConfig>,
}

impl SourcesConfig {
    /// Reads and checks a file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, or the source and field at fault.
    pub fn load(path: &Path) -> Result<SourcesConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        SourcesConfig::parse(&text)
    }

    /// Parses and checks the text of a file.
    ///
    /// # Errors
    /// [`ConfigError`] naming the source and field at fault.
    pub fn parse(text: &str) -> Result<SourcesConfig, ConfigError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| ConfigError::Toml(e.to_string()))?;
        if raw.sources.is_empty() {
            return Err(ConfigError::Empty);
        }
        let mut sources = Vec::with_capacity(raw.sources.len());
        for (i, r) in raw.sources.into_iter().enumerate() {
            let name = r
                .name
                .clone()
                .unwrap_or_else(|| format!("{}#{}", r.kind.as_str(), i + 1));
            let invalid = |message: String| ConfigError::Invalid {
                source_name: name.clone(),
                message,
            };
            sources.push(check(r, &name).map_err(invalid)?);
        }
        let mut names: Vec<&str> = sources.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(ConfigError::Invalid {
                source_name: w[0].to_string(),
                message: "two sources have this name".into(),
            });
        }
        let bucket = raw.bucket.unwrap_or_else(|| DEFAULT_BUCKET.to_string());
        if bucket.is_empty()
            || !bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(ConfigError::Toml(format!(
                "bucket `{bucket}`: letters, digits, `_` and `-` only"
            )));
        }
        Ok(SourcesConfig {
            prefix: raw.prefix.unwrap_or_else(|| "fx".to_string()),
            bucket,
            sources,
        })
    }
}

fn check(r: RawSource, name: &str) -> Result<SourceConfig, String> {
    let _ = name;
    if r.series.is_empty() {
        return Err("`series` is empty".into());
    }
    let mut series = Vec::with_capacity(r.series.len());
    for (id, target) in &r.series {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
            return Err(format!("series id `{id}`: letters, digits, `_` and `-` only"));
        }
        series.push((
            id.clone(),
            Target::parse(target).map_err(|e| format!("series {id}: {e}"))?,
        ));
    }
    let start = Date::parse_ymd(&r.start).ok_or_else(|| format!("start `{}`: expected a date yyyy-mm-dd", r.start))?;
    let schedule = match (&r.every, &r.cron) {
        (Some(_), Some(_)) => return Err("set `every` or `cron`, not both".into()),
        (None, None) => return Err("set `every` (e.g. \"1h\") or `cron` (e.g. \"0 13 * * 1-5\")".into()),
        (Some(e), None) => {
            let d = duration(e, "every")?;
            if d < Duration::from_secs(1) {
                return Err(format!("every `{e}`: at least 1s"));
            }
            Schedule::Every(d)
        }
        (None, Some(c)) => Schedule::Cron(Cron::parse(c).map_err(|e| format!("cron `{c}`: {e}"))?),
    };
    if r.kind != Kind::Inegi && r.token_env.is_none() {
        // INEGI's token is optional in this format only because some mirrors do not ask for one; Banxico
        // and FRED always do.
        return Err("`token_env` (the environment variable holding the API token) is required".into());
    }
    let base_url = r
        .base_url
        .unwrap_or_else(|| r.kind.default_base_url().to_string())
        .trim_end_matches('/')
        .to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(format!("base_url `{base_url}`: expected an http:// or https:// URL"));
    }
    let timeout = match &r.timeout {
        Some(t) => duration(t, "timeout")?,
        None => Duration::from_secs(30),
    };
    if timeout.is_zero() {
        return Err("timeout: more than 0".into());
    }
    let backoff = match &r.backoff {
        Some(b) => duration(b, "backoff")?,
        None => Duration::from_secs(1),
    };
    if backoff > Duration::from_secs(60) {
        return Err("backoff: at most 60s".into());
    }
    let retries = r.retries.unwrap_or(3);
    if retries > 20 {
        return Err("retries: at most 20".into());
    }
    Ok(SourceConfig {
        name: name.to_string(),
        kind: r.kind,
        series,
        token_env: r.token_env,
        start,
        schedule,
        base_url,
        timeout,
        retries,
        backoff,
    })
}

fn duration(s: &str, field: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{field} `{s}`: {e} (e.g. \"30s\", \"1h\")"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[source]]
kind = "banxico"
series = { SF43718 = "tick:USDMXN", SF61745 = "factor:banxico_target" }
token_env = "BANXICO_TOKEN"
start = "1991-11-12"
every = "1h"

[[source]]
kind = "fred"
name = "fed"
series = { DFF = "factor:DFF" }
token_env = "FRED_KEY"
start = "2020-01-01"
cron = "0 13 * * 1-5"
base_url = "http://127.0.0.1:9/"
timeout = "5s"
retries = 1
backoff = "10ms"
"#;

    #[test]
    fn the_issue_example_parses() {
        let c = SourcesConfig::parse(GOOD).unwrap();
        assert_eq!(c.bucket, DEFAULT_BUCKET);
        assert_eq!(c.sources.len(), 2);
        let b = &c.sources[0];
        assert_eq!(b.name, "banxico#1");
        assert_eq!(
            b.series[0],
            ("SF43718".to_string(), Target::Tick(Pair::parse("USDMXN").unwrap()))
        );
        assert_eq!(b.series[1].1, Target::Factor("banxico_target".into()));
        assert_eq!(b.base_url, Kind::Banxico.default_base_url());
        assert_eq!(b.schedule, Schedule::Every(Duration::from_secs(3600)));
        let f = &c.sources[1];
        assert_eq!(f.name, "fed");
        assert_eq!(f.base_url, "http://127.0.0.1:9");
        assert_eq!((f.retries, f.backoff), (1, Duration::from_millis(10)));
    }

    #[test]
    fn bad_fields_name_the_source() {
        let e = SourcesConfig::parse(&GOOD.replace("tick:USDMXN", "tick:usdmxn")).unwrap_err();
        assert!(e.to_string().starts_with("source banxico#1: series SF43718"), "{e}");
        let e = SourcesConfig::parse(&GOOD.replace("every = \"1h\"", "")).unwrap_err();
        assert!(e.to_string().contains("set `every`"), "{e}");
        let e = SourcesConfig::parse(&GOOD.replace("1991-11-12", "1991-13-12")).unwrap_err();
        assert!(e.to_string().contains("start `1991-13-12`"), "{e}");
        let e = SourcesConfig::parse(&GOOD.replace("kind = \"fred\"", "kind = \"ftp\"")).unwrap_err();
        assert!(matches!(e, ConfigError::Toml(_)), "{e}");
        let e = SourcesConfig::parse(&GOOD.replace("retries = 1", "retry = 1")).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        assert!(matches!(SourcesConfig::parse("").unwrap_err(), ConfigError::Empty));
    }
}
