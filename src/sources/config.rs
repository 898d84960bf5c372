//! The `sources.toml` format: a list of `[[source]]` tables, each a kind of API, the series it fetches and
//! where each goes (`tick:PAIR` or `factor:NAME`), its token, start date, schedule and limits. Parsing is
//! pure: [`SourcesConfig::parse`] turns text into checked runtime values, or an error naming the source and
//! the field.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::Date;
use super::postgres::PostgresConfig;
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
    /// An internal PostgreSQL database ([`super::postgres`]).
    Postgres,
}

impl Kind {
    /// The kind as written in the file, in watermark keys and message ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Banxico => "banxico",
            Kind::Inegi => "inegi",
            Kind::Fred => "fred",
            Kind::Postgres => "postgres",
        }
    }

    /// The real API, used when the source sets no `base_url`.
    pub fn default_base_url(self) -> &'static str {
        match self {
            Kind::Banxico => "https://www.banxico.org.mx/SieAPIRest/service/v1",
            Kind::Inegi => "https://www.inegi.org.mx/app/api/indicadores/desarrolladores/jsonxml",
            Kind::Fred => "https://api.stlouisfed.org/fred",
            Kind::Postgres => "",
        }
    }

    /// The source's UTC offset in minutes, for "today" (a later date is refused) and cron schedules.
    /// Mexico City has kept UTC−6 all year since its daylight-saving time ended in October 2022; for FRED,
    /// New York's daylight-saving offset UTC−4, the later of its two, so a date that is already today
    /// there is never refused.
    pub fn utc_offset_minutes(self) -> i64 {
        match self {
            // An internal database: its cron schedules in Mexico City time, like the public sources'.
            Kind::Banxico | Kind::Inegi | Kind::Postgres => -6 * 60,
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
    #[serde(default)]
    series: BTreeMap<String, String>,
    token_env: Option<String>,
    #[serde(default)]
    start: String,
    every: Option<String>,
    cron: Option<String>,
    base_url: Option<String>,
    timeout: Option<String>,
    retries: Option<u32>,
    backoff: Option<String>,
    // The `postgres` kind's own keys (refused on the other kinds); inline, not a flattened struct, because
    // serde's `flatten` would switch `deny_unknown_fields` off.
    dsn: Option<String>,
    dsn_env: Option<String>,
    query: Option<String>,
    watermark: Option<String>,
    time: Option<String>,
    target: Option<String>,
    mid: Option<String>,
    bid: Option<String>,
    ask: Option<String>,
    value: Option<String>,
    listen: Option<String>,
}

impl RawSource {
    fn has_postgres_keys(&self) -> bool {
        [
            &self.dsn,
            &self.dsn_env,
            &self.query,
            &self.watermark,
            &self.time,
            &self.target,
            &self.mid,
            &self.bid,
            &self.ask,
            &self.value,
            &self.listen,
        ]
        .iter()
        .any(|v| v.is_some())
    }
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
    /// A `postgres` source's query, columns and connection (`None` for the other kinds).
    pub postgres: Option<PostgresConfig>,
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
    if r.kind == Kind::Postgres {
        return check_postgres(r, name);
    }
    if r.has_postgres_keys() {
        return Err("`dsn`, `query`, `watermark`, `target` and the column keys are for postgres sources".into());
    }
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
    if r.start.is_empty() {
        return Err("`start` (the first date of the backfill, yyyy-mm-dd) is required".into());
    }
    let start = Date::parse_ymd(&r.start).ok_or_else(|| format!("start `{}`: expected a date yyyy-mm-dd", r.start))?;
    let schedule = schedule(&r)?;
    if r.kind != Kind::Inegi && r.token_env.is_none() {
        // INEGI's token is optional in this format only because some mirrors do not ask for one; Banxico
        // and FRED always do.
        return Err("`token_env` (the environment variable holding the API token) is required".into());
    }
    let (timeout, retries, backoff) = limits(&r)?;
    let base_url = r
        .base_url
        .unwrap_or_else(|| r.kind.default_base_url().to_string())
        .trim_end_matches('/')
        .to_string();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(format!("base_url `{base_url}`: expected an http:// or https:// URL"));
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
        postgres: None,
    })
}

/// `every` or `cron`, checked.
fn schedule(r: &RawSource) -> Result<Schedule, String> {
    Ok(match (&r.every, &r.cron) {
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
    })
}

/// `timeout` (default 30 s), `retries` (default 3) and `backoff` (default 1 s), checked.
fn limits(r: &RawSource) -> Result<(Duration, u32, Duration), String> {
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
    Ok((timeout, retries, backoff))
}

/// A `postgres` source: its own keys instead of `series`, `token_env` and `base_url`; a `name` is required,
/// because its watermark key and message ids carry it (a position would change when the file is edited).
fn check_postgres(r: RawSource, name: &str) -> Result<SourceConfig, String> {
    if r.name.is_none()
        || name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err("a postgres source needs a `name` of letters, digits, `_` and `-` (its watermark key and message ids carry it)".into());
    }
    if !r.series.is_empty() || r.token_env.is_some() || r.base_url.is_some() {
        return Err("a postgres source takes `query` and `target`, not `series`, `token_env` or `base_url`".into());
    }
    let schedule = schedule(&r)?;
    let (timeout, retries, backoff) = limits(&r)?;
    let p = r;
    let required = |v: Option<String>, key: &str| v.ok_or_else(|| format!("a postgres source needs `{key}`"));
    let pg = PostgresConfig {
        dsn: p.dsn,
        dsn_env: p.dsn_env,
        query: required(p.query, "query")?,
        watermark: required(p.watermark, "watermark")?,
        time: p.time,
        target: required(p.target, "target")?,
        mid: p.mid,
        bid: p.bid,
        ask: p.ask,
        value: p.value,
        start: (!p.start.is_empty()).then_some(p.start),
        listen: p.listen,
    };
    // The checks that need no connection: the target, the value columns, one DSN, `start`'s shape.
    super::postgres::check(&pg).map_err(|e| e.to_string())?;
    Ok(SourceConfig {
        name: name.to_string(),
        kind: Kind::Postgres,
        series: Vec::new(),
        token_env: None,
        // Unused: a postgres source starts from its own `start` (a time or an id), or from every row.
        start: Date(0),
        schedule,
        base_url: String::new(),
        timeout,
        retries,
        backoff,
        postgres: Some(pg),
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

    const POSTGRES: &str = r#"
[[source]]
kind = "postgres"
name = "rates_db"
every = "5m"
dsn_env = "RATES_DSN"
query = "SELECT ts, value FROM rates WHERE ts > $1 ORDER BY ts LIMIT 10000"
watermark = "ts"
target = "tick:USDMXN"
mid = "value"
listen = "rates_changed"
"#;

    #[test]
    fn a_postgres_source_parses_with_its_own_keys() {
        let c = SourcesConfig::parse(POSTGRES).unwrap();
        let s = &c.sources[0];
        assert_eq!(
            (s.kind, s.name.as_str(), s.series.len()),
            (Kind::Postgres, "rates_db", 0)
        );
        let pg = s.postgres.as_ref().unwrap();
        assert_eq!(
            (pg.watermark.as_str(), pg.mid.as_deref(), pg.start.as_deref()),
            ("ts", Some("value"), None)
        );
        let e = SourcesConfig::parse(&POSTGRES.replace("name = \"rates_db\"\n", "")).unwrap_err();
        assert!(e.to_string().contains("needs a `name`"), "{e}");
        let e = SourcesConfig::parse(&POSTGRES.replace("watermark = \"ts\"\n", "")).unwrap_err();
        assert!(e.to_string().ends_with("a postgres source needs `watermark`"), "{e}");
        let e = SourcesConfig::parse(&POSTGRES.replace("mid = ", "value = ")).unwrap_err();
        assert!(e.to_string().contains("a tick target takes `mid`"), "{e}");
        let e = SourcesConfig::parse(&POSTGRES.replace("listen", "lisen")).unwrap_err();
        assert!(e.to_string().contains("unknown field"), "{e}");
        let e = SourcesConfig::parse(&format!("{GOOD}\nquery = \"SELECT 1\"")).unwrap_err();
        assert!(e.to_string().contains("are for postgres sources"), "{e}");
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
