//! The NATS micro protocol (ADR-32) as `cambio serve` speaks it, against a real nats-server: each endpoint
//! counts its own requests, errors and last error in `$SRV.STATS`; `$SRV.PING`, `$SRV.INFO` and
//! `$SRV.STATS` carry their type tags and agree on the instance; every error reply is a typed JSON body
//! `{"type":"error","code":..,"error":..}` with the `Nats-Service-Error` and `Nats-Service-Error-Code`
//! headers.

use std::time::Duration;

use cambio::nats::LocalServer;
use futures_util::StreamExt;
use serde_json::{Value, json};

mod common;
use common::*;

/// A checkpoint store, so that `models` has a good request (`list`) besides its malformed ones.
fn config(dir: &std::path::Path) -> String {
    format!("[checkpoint]\npath = \"{}\"\n", dir.join("models.redb").display())
}

/// Starts nats-server and `cambio serve`, feeds 50 USD/MXN ticks and waits for their forecasts on the
/// forecast subject, so that no request reaches an endpoint before the test's own.
async fn started(name: &str) -> (LocalServer, Serve, async_nats::Client) {
    let server = LocalServer::start(false, None).unwrap();
    let dir = temp_dir(name);
    let serve = Serve::start(&server.url(), &config(&dir), &dir);
    let client = async_nats::connect(server.url()).await.unwrap();
    wait_ready(&client, &serve).await;
    let mut preds = client.subscribe("fx.pred.USDMXN").await.unwrap();
    client.flush().await.unwrap();
    for l in walk(50, 11) {
        client
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), l.into())
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
    for i in 0..50 {
        let got = tokio::time::timeout(Duration::from_secs(30), preds.next()).await;
        assert!(
            matches!(got, Ok(Some(_))),
            "forecast {i} of 50 not published:\n{}",
            serve.log()
        );
    }
    (server, serve, client)
}

/// The reply's error code header (`None` for a success) and its JSON body.
async fn ask(client: &async_nats::Client, subject: &str, body: &str) -> (Option<String>, Value) {
    let m = request_message(client, subject, body).await;
    let code = m
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Service-Error-Code"))
        .map(|v| v.as_str().to_string());
    (code, serde_json::from_slice(&m.payload).expect("JSON reply"))
}

/// One endpoint's entry in a STATS reply, by name.
fn endpoint<'a>(stats: &'a Value, name: &str) -> &'a Value {
    stats["endpoints"]
        .as_array()
        .expect("endpoints array")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no endpoint {name} in {stats}"))
}

const UNKNOWN_PAIR: &str = "unknown pair EURJPY: no tick received for it";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_count_requests_and_errors_per_endpoint() {
    let (_server, serve, client) = started("micro-stats").await;

    // query: 5 requests, 2 errors, the last error a 404 followed by a success.
    let (code, _) = ask(&client, "fx.query.USDMXN", "").await;
    assert_eq!(code, None);
    let (code, _) = ask(&client, "fx.query.USDMXN", r#"{"horizons":["7m"]}"#).await;
    assert_eq!(code.as_deref(), Some("400"));
    let (code, _) = ask(&client, "fx.query.USDMXN", r#"{"horizons":["1h"]}"#).await;
    assert_eq!(code, None);
    let (code, _) = ask(&client, "fx.query.EURJPY", "").await;
    assert_eq!(code.as_deref(), Some("404"));
    let (code, _) = ask(&client, "fx.query.USDMXN", "").await;
    assert_eq!(code, None);
    // status: 2 requests, no error.
    for _ in 0..2 {
        let (code, _) = ask(&client, "fx.status.USDMXN", "").await;
        assert_eq!(code, None);
    }
    // models: 3 requests, 1 error (a malformed request), then a good listing.
    let (code, _) = ask(&client, "fx.models.USDMXN", r#"{"op":"list"}"#).await;
    assert_eq!(code, None);
    let (code, _) = ask(&client, "fx.models.USDMXN", r#"{"op":"delete","version":1}"#).await;
    assert_eq!(code.as_deref(), Some("400"));
    let (code, _) = ask(&client, "fx.models.USDMXN", "").await;
    assert_eq!(code, None);

    let (_, stats) = ask(&client, "$SRV.STATS.cambio", "").await;
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response", "{stats}");
    let counts = |name: &str| {
        let e = endpoint(&stats, name);
        (e["num_requests"].clone(), e["num_errors"].clone())
    };
    assert_eq!(counts("query"), (json!(5), json!(2)), "{stats}");
    assert_eq!(counts("status"), (json!(2), json!(0)), "{stats}");
    assert_eq!(counts("models"), (json!(3), json!(1)), "{stats}");
    assert_eq!(
        endpoint(&stats, "query")["last_error"],
        format!("404:{UNKNOWN_PAIR}"),
        "{stats}"
    );
    assert_eq!(endpoint(&stats, "status")["last_error"], "", "{stats}");
    let models_error = endpoint(&stats, "models")["last_error"].as_str().unwrap().to_string();
    assert!(models_error.starts_with("400:malformed request: "), "{models_error}");

    for name in ["query", "status", "models"] {
        let e = endpoint(&stats, name);
        assert_eq!(e["subject"], format!("fx.{name}.*"), "{e}");
        assert_eq!(e["queue_group"], "q", "{e}");
        let n = e["num_requests"].as_u64().unwrap();
        let total_ns = e["processing_time"].as_u64().expect("processing_time in ns");
        assert!(total_ns > 0, "{e}");
        assert_eq!(e["average_processing_time"].as_u64(), Some(total_ns / n), "{e}");
        // The endpoint's own latency percentiles, not a copy of the service's figures.
        assert_eq!(e["data"]["latency"]["count"].as_u64(), Some(n), "{e}");
        assert!(
            e["data"].get("counters").is_none(),
            "service-wide figures copied into {name}: {e}"
        );
    }
    assert_ne!(endpoint(&stats, "query"), endpoint(&stats, "status"));
    assert_ne!(endpoint(&stats, "query"), endpoint(&stats, "models"));

    // The service-wide figures are reported once, beside the endpoints.
    let data = &stats["data"];
    assert_eq!(data["counters"]["ticks"], 50, "{stats}");
    assert_eq!(data["counters"]["forecasts"], 50, "{stats}");
    assert_eq!(data["counters"]["request_errors"], 3, "{stats}");
    assert!(data["tick_to_forecast"]["count"].as_u64().unwrap() >= 50, "{stats}");
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_replies_are_typed_json_with_the_micro_headers() {
    let (_server, serve, client) = started("micro-errors").await;
    let cases = [
        ("fx.query.EURJPY", "", 404, Some(UNKNOWN_PAIR)),
        ("fx.query.USDMXN", r#"{"horizons":["fortnight"]}"#, 400, None),
        (
            "fx.query.usdmxn",
            "",
            400,
            Some("`usdmxn` is not a pair (six uppercase letters)"),
        ),
        (
            "fx.status.GBPUSD",
            "",
            404,
            Some("unknown pair GBPUSD: no tick received for it"),
        ),
        ("fx.models.USDMXN", "[1]", 400, None),
        (
            "fx.models.USDMXN",
            r#"{"op":"show","version":99}"#,
            404,
            Some("USDMXN has no version 99"),
        ),
        ("fx.models.USDMXN", r#"{"op":"rollback","version":99}"#, 404, None),
    ];
    for (subject, body, code, message) in cases {
        let m = request_message(&client, subject, body).await;
        let h = m.headers.as_ref().expect("error headers");
        let v: Value = serde_json::from_slice(&m.payload).expect("JSON error body");
        assert_eq!(v["type"], "error", "{subject} {body}: {v}");
        assert_eq!(v["code"], code, "{subject} {body}: {v}");
        let text = v["error"]
            .as_str()
            .unwrap_or_else(|| panic!("error message string: {v}"));
        if let Some(message) = message {
            assert_eq!(text, message, "{subject} {body}");
        }
        assert_eq!(v.as_object().unwrap().len(), 3, "{v}");
        let header = |name: &str| h.get(name).map(|v| v.as_str().to_string());
        assert_eq!(
            header("Nats-Service-Error-Code"),
            Some(code.to_string()),
            "{subject} {body}"
        );
        assert_eq!(header("Nats-Service-Error").as_deref(), Some(text), "{subject} {body}");
    }
    drop(serve);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_info_and_stats_describe_one_instance() {
    let (_server, serve, client) = started("micro-discovery").await;
    let (_, ping) = ask(&client, "$SRV.PING.cambio", "").await;
    let (_, info) = ask(&client, "$SRV.INFO.cambio", "").await;
    let (_, stats) = ask(&client, "$SRV.STATS.cambio", "").await;
    assert_eq!(ping["type"], "io.nats.micro.v1.ping_response", "{ping}");
    assert_eq!(info["type"], "io.nats.micro.v1.info_response", "{info}");
    assert_eq!(stats["type"], "io.nats.micro.v1.stats_response", "{stats}");
    let id = ping["id"].as_str().expect("id");
    assert!(!id.is_empty());
    for v in [&ping, &info, &stats] {
        assert_eq!(v["name"], "cambio", "{v}");
        assert_eq!(v["id"], id, "{v}");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    }
    // The instance answers on its own subjects too ($SRV.<VERB>.<name>.<id>, and $SRV.<VERB>).
    let (_, by_id) = ask(&client, &format!("$SRV.PING.cambio.{id}"), "").await;
    assert_eq!(by_id["id"], id);
    let (_, all) = ask(&client, "$SRV.INFO", "").await;
    assert_eq!(all["id"], id);

    assert!(!info["description"].as_str().unwrap().is_empty(), "{info}");
    let mut endpoints: Vec<(String, String, String)> = info["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap_or_else(|| panic!("{k} in {e}")).to_string();
            (s("name"), s("subject"), s("queue_group"))
        })
        .collect();
    endpoints.sort();
    let q = |n: &str| (n.to_string(), format!("fx.{n}.*"), "q".to_string());
    let business = (
        "business_stats".to_string(),
        "fx.business.stats.*".to_string(),
        "q".to_string(),
    );
    assert_eq!(endpoints, vec![business, q("models"), q("query"), q("status")]);

    let started = stats["started"].as_str().expect("started");
    assert!(cambio::time::parse_ts_us(started).is_ok(), "RFC 3339: {started}");
    for e in stats["endpoints"].as_array().unwrap() {
        assert_eq!(e["num_requests"], 0, "{e}");
        assert_eq!(e["num_errors"], 0, "{e}");
        assert_eq!(e["last_error"], "", "{e}");
        assert_eq!(e["processing_time"], 0, "{e}");
        assert_eq!(e["average_processing_time"], 0, "{e}");
    }
    drop(serve);
}
