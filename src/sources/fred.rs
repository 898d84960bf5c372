//! FRED: `GET <base>/series/observations?series_id=<id>&api_key=<key>&file_type=json&observation_start=<from>&observation_end=<to>`
//! answers `{"observations":[{"date":"2024-01-02","value":"5.33"},…]}` (with `realtime_start`/`realtime_end`
//! beside), `"."` for a missing value.

use serde::Deserialize;

use super::http::Request;
use super::{Date, Observation, parse_number};

/// The request for `series` from `from` to `to`, both included.
pub fn request(base_url: &str, series: &str, from: Date, to: Date, key: &str) -> Request {
    let make = |k: &str| {
        format!(
            "{base_url}/series/observations?series_id={series}&api_key={k}&file_type=json&observation_start={from}&observation_end={to}"
        )
    };
    Request {
        url: make(key),
        shown_url: make("***"),
        headers: Vec::new(),
    }
}

#[derive(Deserialize)]
struct Body {
    observations: Vec<Obs>,
}

#[derive(Deserialize)]
struct Obs {
    date: String,
    value: Option<String>,
}

/// Parses an answer into the observations of `series`.
///
/// # Errors
/// A sentence when the body is not this format.
pub fn parse(series: &str, body: &[u8]) -> Result<Vec<Observation>, String> {
    let body: Body = serde_json::from_slice(body).map_err(|e| format!("not FRED observations JSON: {e}"))?;
    body.observations
        .into_iter()
        .map(|o| {
            let date = Date::parse_ymd(&o.date).ok_or_else(|| format!("date `{}`: expected yyyy-mm-dd", o.date))?;
            Ok(Observation {
                series: series.to_string(),
                ts_us: date.midnight_us(),
                value: o.value.as_deref().and_then(parse_number),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_answer() {
        let body = br#"{"realtime_start":"2024-01-05","count":2,"observations":[
            {"realtime_start":"2024-01-05","realtime_end":"2024-01-05","date":"2024-01-02","value":"5.33"},
            {"realtime_start":"2024-01-05","realtime_end":"2024-01-05","date":"2024-01-03","value":"."}]}"#;
        let obs = parse("DFF", body).unwrap();
        assert_eq!((obs[0].value, obs[1].value), (Some(5.33), None));
        assert!(parse("DFF", b"{\"observations\":[{\"date\":\"2024-01-0").is_err());
    }

    #[test]
    fn the_key_is_not_shown() {
        let d = Date::parse_ymd("2024-01-02").unwrap();
        let r = request("http://h", "DFF", d, d, "k3y");
        assert!(
            r.url
                .contains("api_key=k3y&file_type=json&observation_start=2024-01-02")
        );
        assert!(r.shown_url.contains("api_key=***"));
    }
}
