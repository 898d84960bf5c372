//! Connectors (`cambio sources run`): scheduled fetches from public and internal sources, published on
//! the tick and factor subjects in the message contract, so `serve` learns from them like from any feed.
//!
//! The pure parts: [`config`] (the `sources.toml` format), [`schedule`] (`every` and `cron`), one file per
//! HTTP kind that builds its request and parses its documented response ([`banxico`], [`inegi`], [`fred`]),
//! and [`wire`] (observations as tick and factor JSON with their `Nats-Msg-Id`). The I/O edge: [`http`]
//! (GET with a timeout, retries with exponential backoff), [`watermark`] (the last published observation of
//! each series, in a JetStream key-value bucket), [`runner`] (schedules, publication with acknowledgement,
//! counts) and [`metrics`] (the counts for Prometheus).
//!
//! A connector is anything that implements [`Connector`]: given a series and the watermark, it returns the
//! observations after it. The runner does the rest (refuses future dates, publishes, advances the watermark
//! only once JetStream acknowledged), the same for every kind.

pub mod banxico;
pub mod config;
pub mod fred;
pub mod http;
pub mod inegi;
pub mod metrics;
pub mod postgres;
pub mod runner;
pub mod schedule;
pub mod watermark;
pub mod wire;

use std::future::Future;
use std::pin::Pin;

use crate::time::{US_PER_DAY, civil_from_days, days_from_civil};

pub use config::{Kind, SourceConfig, SourcesConfig, Target};
pub use runner::{RunOptions, SourceCounts, run};

/// One observation of one series, as a connector returns it: its time and its value, or `None` when the
/// source says it has none for that time (Banxico `N/E`, FRED `"."`): published as a missing value, so the
/// engine quarantines and counts it, never dropped and never invented.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// The source's id of the series (`SF43718`, `DFF`, an INEGI indicator number).
    pub series: String,
    /// The observation's time, microseconds since the epoch (UTC); a date is midnight UTC.
    pub ts_us: i64,
    /// The value; `None` when the source marks it not available.
    pub value: Option<f64>,
}

/// The future returned by [`Connector::fetch`].
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<Observation>, FetchError>> + Send + 'a>>;

/// A kind of source: fetches one series' observations after a watermark. Implementations do the I/O of
/// their kind (an HTTP GET, a SQL query) and nothing else: retries of transient failures are theirs (see
/// [`http::get_with_retries`]); scheduling, refusal of future dates, publication and the watermark are the
/// runner's, the same for every kind.
pub trait Connector: Send + Sync {
    /// The observations of `series` strictly after `after` (microseconds since the epoch; `None`: from the
    /// configured start), up to `today` (the date in the source's time zone), in any order.
    fn fetch<'a>(&'a self, series: &'a str, after: Option<i64>, today: Date) -> FetchFuture<'a>;

    /// How many retries the connector has made since it was built (for the counts); 0 when it does not
    /// retry.
    fn retries(&self) -> u64 {
        0
    }
}

/// A calendar date, as days since 1970-01-01: the unit of the daily and monthly sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date(pub i64);

impl Date {
    /// A date from its year, month and day (not validated: see [`Date::parse_ymd`]).
    pub fn from_ymd(y: i64, m: u32, d: u32) -> Date {
        Date(days_from_civil(y, m, d))
    }

    /// Parses `yyyy-mm-dd`, refusing impossible dates (`2024-02-30`).
    pub fn parse_ymd(s: &str) -> Option<Date> {
        let mut it = s.splitn(3, '-');
        let y: i64 = parse_digits(it.next()?, 4)?;
        let m: u32 = parse_digits(it.next()?, 2)?;
        let d: u32 = parse_digits(it.next()?, 2)?;
        Date::checked(y, m, d)
    }

    /// The date if `y-m-d` exists.
    pub fn checked(y: i64, m: u32, d: u32) -> Option<Date> {
        if !(1..=12).contains(&m) || d == 0 || d > 31 {
            return None;
        }
        let date = Date::from_ymd(y, m, d);
        (date.ymd() == (y, m, d)).then_some(date)
    }

    /// Year, month and day.
    pub fn ymd(self) -> (i64, u32, u32) {
        civil_from_days(self.0)
    }

    /// Midnight UTC of this date, microseconds since the epoch.
    pub fn midnight_us(self) -> i64 {
        self.0 * US_PER_DAY
    }

    /// The date of a time (UTC), microseconds since the epoch.
    pub fn of_us(us: i64) -> Date {
        Date(us.div_euclid(US_PER_DAY))
    }

    /// The next day.
    pub fn succ(self) -> Date {
        Date(self.0 + 1)
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (y, m, d) = self.ymd();
        write!(f, "{y:04}-{m:02}-{d:02}")
    }
}

/// `s` as a number of exactly `len` ASCII digits.
pub(crate) fn parse_digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
        .then(|| s.parse().ok())
        .flatten()
}

/// Why a fetch failed. Each says which source and what to do; [`FetchError::is_transient`] says whether
/// a retry may help.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The token's environment variable is not set.
    #[error("source {source_name}: the environment variable {env} (its API token) is not set")]
    MissingToken {
        /// The source.
        source_name: String,
        /// The variable.
        env: String,
    },
    /// The API refused the token (HTTP 401 or 403): not retried.
    #[error("source {source_name}: the API refused the token (HTTP {status}); check the environment variable {env}")]
    Unauthorized {
        /// The source.
        source_name: String,
        /// The variable holding the token.
        env: String,
        /// 401 or 403.
        status: u16,
    },
    /// The API answered with an error status (429 and 5xx are retried first).
    #[error("source {source_name}: HTTP {status} from {url}")]
    Status {
        /// The source.
        source_name: String,
        /// The status.
        status: u16,
        /// The URL, without its token.
        url: String,
        /// Seconds the server asked to wait (`Retry-After`).
        retry_after_secs: Option<u64>,
    },
    /// The request could not be made or timed out (retried).
    #[error("source {source_name}: request to {url} failed: {message}")]
    Transport {
        /// The source.
        source_name: String,
        /// The URL, without its token.
        url: String,
        /// What failed.
        message: String,
    },
    /// The response body is not in the documented format (a truncated or invalid body): not retried.
    #[error("source {source_name}: invalid response body from {url}: {message}")]
    Body {
        /// The source.
        source_name: String,
        /// The URL, without its token.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// Any other failure of a connector (a database error, for the kinds that are not HTTP).
    #[error("source {source_name}: {message}")]
    Other {
        /// The source.
        source_name: String,
        /// What failed.
        message: String,
        /// Whether a retry may help.
        transient: bool,
    },
}

impl FetchError {
    /// Whether a retry may help: 429, 5xx, transport failures and timeouts.
    pub fn is_transient(&self) -> bool {
        match self {
            FetchError::Status { status, .. } => *status == 429 || *status >= 500,
            FetchError::Transport { .. } => true,
            FetchError::Other { transient, .. } => *transient,
            _ => false,
        }
    }

    /// The wait the server asked for, if any.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            FetchError::Status { retry_after_secs, .. } => *retry_after_secs,
            _ => None,
        }
    }

    /// A short name of the failure for counts and metrics labels.
    pub fn class(&self) -> &'static str {
        match self {
            FetchError::MissingToken { .. } => "missing_token",
            FetchError::Unauthorized { .. } => "unauthorized",
            FetchError::Status { status: 429, .. } => "rate_limited",
            FetchError::Status { .. } => "http_status",
            FetchError::Transport { .. } => "transport",
            FetchError::Body { .. } => "invalid_body",
            FetchError::Other { .. } => "other",
        }
    }
}

/// Parses a number as the sources write it: `20.1234`, `1,234.56` (thousands separators). `None` for text
/// that is not a number.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let cleaned: String = s.chars().filter(|&c| c != ',').collect();
    if cleaned.is_empty()
        || !cleaned
            .bytes()
            .all(|b| b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'+' || b == b'e' || b == b'E')
    {
        return None;
    }
    cleaned.parse::<f64>().ok().filter(|v| v.is_finite())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_and_print() {
        let d = Date::parse_ymd("2024-02-29").unwrap();
        assert_eq!(d.to_string(), "2024-02-29");
        assert_eq!(d.succ().to_string(), "2024-03-01");
        assert!(Date::parse_ymd("2023-02-29").is_none());
        assert!(Date::parse_ymd("2023-2-01").is_none());
        assert_eq!(Date::of_us(d.midnight_us() + 5), d);
    }

    #[test]
    fn numbers_with_thousands_separators() {
        assert_eq!(parse_number("1,234.56"), Some(1234.56));
        assert_eq!(parse_number(" 20.1234 "), Some(20.1234));
        assert_eq!(parse_number("N/E"), None);
        assert_eq!(parse_number("."), None);
        assert_eq!(parse_number(""), None);
    }
}
