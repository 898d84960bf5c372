//! INEGI indicators API (BIE/BISE): `GET <base>/INDICATOR/<id>/es/0700/false/BIE/2.0/<token>?type=json`
//! returns the whole national series:
//! `{"Header":{…},"Series":[{"INDICADOR":"628194","FREQ":"8","OBSERVATIONS":[{"TIME_PERIOD":"2024/01","OBS_VALUE":"134.5",…}]}]}`.
//! `TIME_PERIOD` is `yyyy/mm` for monthly series (the observation's date is the month's first day),
//! `yyyy/mm/dd` for daily ones and `yyyy` for annual ones; an `OBS_VALUE` that is null or empty is missing.
//! The API has no date range: the runner keeps only what is after the watermark.

use serde::Deserialize;

use super::http::Request;
use super::{Date, Observation, parse_digits, parse_number};

/// The request for `series` (the whole series).
pub fn request(base_url: &str, series: &str, token: &str) -> Request {
    let path = format!("{base_url}/INDICATOR/{series}/es/0700/false/BIE/2.0/");
    Request {
        url: format!("{path}{token}?type=json"),
        shown_url: format!("{path}***?type=json"),
        headers: vec![("Accept", "application/json".into())],
    }
}

#[derive(Deserialize)]
struct Body {
    #[serde(rename = "Series")]
    series: Vec<Series>,
}

#[derive(Deserialize)]
struct Series {
    #[serde(rename = "INDICADOR")]
    indicador: String,
    #[serde(rename = "OBSERVATIONS", default)]
    observations: Vec<Obs>,
}

#[derive(Deserialize)]
struct Obs {
    #[serde(rename = "TIME_PERIOD")]
    time_period: String,
    #[serde(rename = "OBS_VALUE")]
    obs_value: Option<String>,
}

/// Parses an answer into the observations of `series`.
///
/// # Errors
/// A sentence when the body is not this format.
pub fn parse(series: &str, body: &[u8]) -> Result<Vec<Observation>, String> {
    let body: Body = serde_json::from_slice(body).map_err(|e| format!("not INEGI indicators JSON: {e}"))?;
    let mut out = Vec::new();
    for s in body.series.into_iter().filter(|s| s.indicador == series) {
        for o in s.observations {
            let date = parse_period(&o.time_period)
                .ok_or_else(|| format!("TIME_PERIOD `{}`: expected yyyy, yyyy/mm or yyyy/mm/dd", o.time_period))?;
            out.push(Observation {
                series: series.to_string(),
                ts_us: date.midnight_us(),
                value: o.obs_value.as_deref().and_then(parse_number),
            });
        }
    }
    Ok(out)
}

/// `yyyy`, `yyyy/mm` or `yyyy/mm/dd`, as the first day of the period.
pub fn parse_period(s: &str) -> Option<Date> {
    let mut it = s.splitn(3, '/');
    let y: i64 = parse_digits(it.next()?, 4)?;
    let m: u32 = match it.next() {
        Some(m) => parse_digits(m, 2)?,
        None => 1,
    };
    let d: u32 = match it.next() {
        Some(d) => parse_digits(d, 2)?,
        None => 1,
    };
    Date::checked(y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_answer() {
        let body = br#"{"Header":{"Name":"Indicadores","Email":"","Phone":""},"Series":[{"INDICADOR":"628194","FREQ":"8",
            "TOPIC":"","UNIT":"","UNIT_MULT":"","NOTE":"","SOURCE":"","LASTUPDATE":"",
            "OBSERVATIONS":[{"TIME_PERIOD":"2024/01","OBS_VALUE":"134.5","OBS_EXCEPTION":null,"OBS_STATUS":"3","OBS_SOURCE":"","OBS_NOTE":"","COBER_GEO":"00"},
                            {"TIME_PERIOD":"2024/02","OBS_VALUE":null}]}]}"#;
        let obs = parse("628194", body).unwrap();
        assert_eq!(obs[0].ts_us, Date::parse_ymd("2024-01-01").unwrap().midnight_us());
        assert_eq!((obs[0].value, obs[1].value), (Some(134.5), None));
        assert_eq!(parse_period("2024"), Date::parse_ymd("2024-01-01"));
        assert_eq!(parse_period("2024/13"), None);
    }

    #[test]
    fn the_token_is_not_shown() {
        let r = request("http://h", "628194", "secret");
        assert_eq!(
            r.url,
            "http://h/INDICATOR/628194/es/0700/false/BIE/2.0/secret?type=json"
        );
        assert!(!r.shown_url.contains("secret"));
    }
}
