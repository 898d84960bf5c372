//! Banxico SIE REST API: `GET <base>/series/<id>/datos/<from>/<to>` (dates `yyyy-mm-dd` in the path), the
//! token in the `Bmx-Token` header. The answer:
//! `{"bmx":{"series":[{"idSerie":"SF43718","titulo":"…","datos":[{"fecha":"02/01/2024","dato":"16.9666"}]}]}}`,
//! dates `dd/mm/yyyy`, values as text with thousands separators (`1,234.56`), `N/E` when not available.
//! A range with no data has no `datos`. (`…/datos/oportuno`, the latest value only, is not used: a range
//! from the watermark never skips a day that a missed run would have returned.)

use serde::Deserialize;

use super::http::Request;
use super::{Date, Observation, parse_digits, parse_number};

/// The request for `series` from `from` to `to`, both included.
pub fn request(base_url: &str, series: &str, from: Date, to: Date, token: &str) -> Request {
    let url = format!("{base_url}/series/{series}/datos/{from}/{to}");
    Request {
        shown_url: url.clone(),
        url,
        headers: vec![("Bmx-Token", token.to_string()), ("Accept", "application/json".into())],
    }
}

#[derive(Deserialize)]
struct Body {
    bmx: Bmx,
}

#[derive(Deserialize)]
struct Bmx {
    series: Vec<Series>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Series {
    id_serie: String,
    #[serde(default)]
    datos: Vec<Dato>,
}

#[derive(Deserialize)]
struct Dato {
    fecha: String,
    dato: Option<String>,
}

/// Parses an answer into the observations of `series` (other series in the answer are ignored). A `dato`
/// that is `N/E`, empty or not a number is a missing value.
///
/// # Errors
/// A sentence when the body is not this format (truncated, not JSON, a bad date).
pub fn parse(series: &str, body: &[u8]) -> Result<Vec<Observation>, String> {
    let body: Body = serde_json::from_slice(body).map_err(|e| format!("not Banxico SIE JSON: {e}"))?;
    let mut out = Vec::new();
    for s in body.bmx.series.into_iter().filter(|s| s.id_serie == series) {
        for d in s.datos {
            let date = parse_fecha(&d.fecha).ok_or_else(|| format!("fecha `{}`: expected dd/mm/yyyy", d.fecha))?;
            out.push(Observation {
                series: series.to_string(),
                ts_us: date.midnight_us(),
                value: d.dato.as_deref().and_then(parse_number),
            });
        }
    }
    Ok(out)
}

/// `dd/mm/yyyy`.
pub fn parse_fecha(s: &str) -> Option<Date> {
    let mut it = s.splitn(3, '/');
    let d: u32 = parse_digits(it.next()?, 2)?;
    let m: u32 = parse_digits(it.next()?, 2)?;
    let y: i64 = parse_digits(it.next()?, 4)?;
    Date::checked(y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_answer() {
        let body = br#"{"bmx":{"series":[{"idSerie":"SF43718","titulo":"Tipo de cambio FIX","datos":[
            {"fecha":"02/01/2024","dato":"16.9666"},{"fecha":"03/01/2024","dato":"N/E"},
            {"fecha":"04/01/2024","dato":"1,016.5"}]}]}}"#;
        let obs = parse("SF43718", body).unwrap();
        assert_eq!(obs.len(), 3);
        assert_eq!(obs[0].ts_us, Date::parse_ymd("2024-01-02").unwrap().midnight_us());
        assert_eq!(obs[0].value, Some(16.9666));
        assert_eq!(obs[1].value, None);
        assert_eq!(obs[2].value, Some(1016.5));
        assert!(
            parse("SF43718", br#"{"bmx":{"series":[{"idSerie":"SF43718","titulo":"x"}]}}"#)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn truncated_and_bad_dates_are_errors() {
        assert!(
            parse(
                "SF43718",
                br#"{"bmx":{"series":[{"idSerie":"SF43718","datos":[{"fecha":"02/01/20"#
            )
            .unwrap_err()
            .starts_with("not Banxico SIE JSON")
        );
        let e = parse(
            "X",
            br#"{"bmx":{"series":[{"idSerie":"X","datos":[{"fecha":"2024-01-02","dato":"1"}]}]}}"#,
        )
        .unwrap_err();
        assert!(e.contains("dd/mm/yyyy"), "{e}");
    }

    #[test]
    fn the_request_path_and_header() {
        let r = request(
            "http://h/v1",
            "SF43718",
            Date::parse_ymd("2024-01-02").unwrap(),
            Date::parse_ymd("2024-02-01").unwrap(),
            "t",
        );
        assert_eq!(r.url, "http://h/v1/series/SF43718/datos/2024-01-02/2024-02-01");
        assert_eq!(r.headers[0], ("Bmx-Token", "t".to_string()));
    }
}
