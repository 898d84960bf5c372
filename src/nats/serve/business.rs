//! Business events on NATS: the subscription to `<prefix>.business.*`, the masking key's loading, the
//! masked-event, quarantine and alarm publications, the stats the micro service answers, and the Prometheus collector.
//!
//! What runs where: business events are read by a task of their own, on the service's main connection
//! (ticks in core mode have their own), and counted in the one [`Business`] every pair's book lives in,
//! behind a mutex that only this task, the stats endpoint and a metrics scrape take. Nothing of it runs on
//! a shard: the only contact with the tick path is reading the pair's latest forecast, an `Arc` clone under
//! the snapshot's lock, exactly as a query does.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::outbox::{Outbox, Undelivered};
use super::router::Registry;
use super::stats::Counters;
use crate::business::mask::KEY_ENV;
use crate::business::{Business, BusinessConfig, BusinessOutput, MaskError, MaskKey, QuoteRef};
use crate::contract::{BusinessStatsReply, to_json_vec};
use crate::nats::Subjects;
use crate::tick::Pair;

/// Shortest time between two log lines about events refused for want of a key.
const NO_KEY_LOG_EVERY: Duration = Duration::from_secs(60);

/// Why the masking key could not be loaded (serve does not start), or a stats request cannot be answered.
#[derive(Debug, thiserror::Error)]
pub enum BusinessError {
    /// `CAMBIO_MASK_KEY` is set but refused.
    #[error("{KEY_ENV}: {0}")]
    Env(#[source] MaskError),
    /// `[business] mask_key_file` cannot be read.
    #[error("business.mask_key_file {}: {source}", path.display())]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The read's error.
        source: std::io::Error,
    },
    /// `[business] mask_key_file` holds a refused key.
    #[error("business.mask_key_file {}: {source}", path.display())]
    File {
        /// The file.
        path: std::path::PathBuf,
        /// Why the key is refused.
        source: MaskError,
    },
    /// No masking key: no event is counted.
    #[error(
        "no masking key configured: business events are refused; set {KEY_ENV} or [business] mask_key_file (at least 16 bytes)"
    )]
    NoMaskKey,
    /// No event of the pair was counted.
    #[error("unknown pair {0}: no business event counted for it")]
    UnknownPair(Pair),
    /// The state's lock is poisoned (a panic while holding it).
    #[error("business figures unavailable")]
    Unavailable,
}

impl BusinessError {
    /// The HTTP-like status code of a stats request that failed with it.
    pub fn code(&self) -> u16 {
        match self {
            BusinessError::NoMaskKey => 503,
            BusinessError::UnknownPair(_) => 404,
            BusinessError::Env(_)
            | BusinessError::Read { .. }
            | BusinessError::File { .. }
            | BusinessError::Unavailable => 500,
        }
    }
}

/// The masking key: `CAMBIO_MASK_KEY` when set (and not empty), else the content of
/// `[business] mask_key_file`, else none (business events are then refused).
///
/// # Errors
/// [`BusinessError`] when the variable or the file holds a key shorter than 16 bytes, or the file cannot be
/// read. The key itself is never in the message.
pub fn load_key(cfg: &BusinessConfig) -> Result<Option<MaskKey>, BusinessError> {
    if let Some(v) = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty()) {
        return MaskKey::new(v.as_encoded_bytes()).map(Some).map_err(BusinessError::Env);
    }
    let Some(path) = &cfg.mask_key_file else {
        return Ok(None);
    };
    let bytes = std::fs::read(path).map_err(|source| BusinessError::Read {
        path: path.clone(),
        source,
    })?;
    MaskKey::new(&bytes).map(Some).map_err(|source| BusinessError::File {
        path: path.clone(),
        source,
    })
}

/// The business state of the service: every pair's book, behind one mutex (see the module's note).
#[derive(Debug)]
pub struct BusinessDesk {
    business: Mutex<Business>,
    has_key: bool,
    last_no_key_log: Mutex<Option<Instant>>,
}

impl BusinessDesk {
    /// The desk around `business`.
    pub fn new(business: Business) -> BusinessDesk {
        BusinessDesk {
            has_key: business.has_key(),
            business: Mutex::new(business),
            last_no_key_log: Mutex::new(None),
        }
    }

    /// A pair's figures.
    ///
    /// # Errors
    /// [`BusinessError`] without a key, for a pair with no event, or when the state is unavailable.
    pub fn stats(&self, pair: Pair) -> Result<BusinessStatsReply, BusinessError> {
        if !self.has_key {
            return Err(BusinessError::NoMaskKey);
        }
        let b = self.business.lock().map_err(|_| BusinessError::Unavailable)?;
        b.stats(pair).ok_or(BusinessError::UnknownPair(pair))
    }

    /// Counts a message and returns what to publish.
    fn on_message(&self, subject_pair: Option<Pair>, payload: &[u8], quote: Option<QuoteRef>) -> Vec<BusinessOutput> {
        let mut out = Vec::new();
        let Ok(mut b) = self.business.lock() else {
            return out;
        };
        match subject_pair {
            None => b.refuse_bad_subject(),
            Some(pair) => b.on_event(pair, payload, Some(super::router::now_us()), quote, &mut out),
        }
        out
    }

    /// Whether the no-key warning is due (at most one per [`NO_KEY_LOG_EVERY`]).
    fn no_key_log_due(&self) -> bool {
        let Ok(mut last) = self.last_no_key_log.lock() else {
            return false;
        };
        let due = last.is_none_or(|t| t.elapsed() >= NO_KEY_LOG_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }
}

/// What the business task needs.
pub struct BusinessTask {
    /// The client it subscribes and publishes with.
    pub client: async_nats::Client,
    /// Subject names.
    pub subjects: Subjects,
    /// The state.
    pub desk: Arc<BusinessDesk>,
    /// The pairs' snapshots (latest forecasts).
    pub registry: Registry,
    /// Publications go through it.
    pub outbox: Arc<Outbox>,
    /// Service counters (publish errors).
    pub counters: Arc<Counters>,
}

/// Subscribes to `<prefix>.business.*` and starts the task that counts business events; it runs until
/// aborted.
///
/// # Errors
/// The subscription's error.
pub async fn start(t: BusinessTask) -> Result<tokio::task::JoinHandle<()>, (String, async_nats::SubscribeError)> {
    let subject = t.subjects.all_business();
    let mut sub = t
        .client
        .subscribe(subject.clone())
        .await
        .map_err(|e| (subject.clone(), e))?;
    if t.desk.has_key {
        tracing::info!(subject = %subject, "business events: counting, clients pseudonymised");
    } else {
        tracing::warn!(subject = %subject,
            "business events: no masking key configured, every event will be refused; set CAMBIO_MASK_KEY or [business] mask_key_file (at least 16 bytes)");
    }
    Ok(tokio::spawn(async move {
        while let Some(m) = sub.next().await {
            let pair = t.subjects.token("business", &m.subject).and_then(Pair::parse);
            if pair.is_none() {
                // The subject is not logged: its last token came from the publisher and may be anything.
                tracing::debug!(
                    bytes = m.payload.len(),
                    "business event on a subject that names no pair"
                );
            }
            let quote = pair.and_then(|p| {
                let view = t.registry.read().ok()?.get(&p).cloned()?;
                QuoteRef::from_forecast(&*view.snapshot.forecast()?)
            });
            for o in t.desk.on_message(pair, &m.payload, quote) {
                let (subject, body) = match o {
                    BusinessOutput::Accepted(e) => (t.subjects.business_masked(e.pair), to_json_vec(&e)),
                    BusinessOutput::Quarantined(q) => {
                        if q.reason == "no_mask_key" {
                            if t.desk.no_key_log_due() {
                                tracing::warn!(pair = %q.pair,
                                    "business events refused: no masking key configured; set CAMBIO_MASK_KEY or [business] mask_key_file (at least 16 bytes) and restart");
                            }
                        } else {
                            tracing::debug!(pair = %q.pair, reason = q.reason, detail = %q.detail, bytes = q.bytes,
                                "business event quarantined");
                        }
                        (t.subjects.business_quarantine(q.pair), to_json_vec(&q))
                    }
                    BusinessOutput::Disparity(d) => {
                        tracing::warn!(pair = %d.pair, segment = %d.segment, period = %d.period, statistic = d.statistic,
                            threshold = d.threshold, "business disparity alarm");
                        (t.subjects.alert(d.pair), to_json_vec(&d))
                    }
                };
                let sent = t.outbox.publish(t.client.publish(subject, Bytes::from(body))).await;
                if let Err(Undelivered::Failed(_)) = sent {
                    Counters::inc(&t.counters.publish_errors);
                }
            }
        }
    }))
}

/// The business figures as Prometheus metrics, encoded at scrape time from the books (the catalogue's
/// "Business" table in `docs/metrics.md`).
#[derive(Debug)]
pub struct BusinessMetrics(Arc<BusinessDesk>);

/// Registers the business metrics in `registry`.
pub fn register(registry: &mut prometheus_client::registry::Registry, desk: Arc<BusinessDesk>) {
    registry.register_collector(Box::new(BusinessMetrics(desk)));
}

type Labels<'a, const N: usize> = [(&'static str, &'a str); N];

/// Encodes one family of `f64` gauges.
fn gauges<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels<'_, N>, f64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, v) in samples {
        m.encode_family(labels)?.encode_gauge(v)?;
    }
    Ok(())
}

/// Encodes one family of counters (`name` without `_total`: the encoder adds it).
fn counters<const N: usize>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels<'_, N>, u64)],
) -> Result<(), std::fmt::Error> {
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (labels, v) in samples {
        m.encode_family(labels)?
            .encode_counter::<NoLabelSet, u64, f64>(v, None)?;
    }
    Ok(())
}

impl Collector for BusinessMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let (refused, stats): (Vec<_>, Vec<_>) = match self.0.business.lock() {
            Ok(b) => (b.refused().collect(), b.pairs().filter_map(|p| b.stats(p)).collect()),
            Err(_) => return Ok(()),
        };
        let pairs: Vec<String> = stats.iter().map(|s| s.pair.to_string()).collect();
        let mut events = Vec::new();
        let mut alarms = Vec::new();
        for (s, pair) in stats.iter().zip(&pairs) {
            for e in &s.events {
                for (kind, n) in [
                    ("offered", e.offered),
                    ("accepted", e.accepted),
                    ("rejected", e.rejected),
                ] {
                    events.push((
                        [
                            ("pair", pair.as_str()),
                            ("segment", e.segment.as_str()),
                            ("event", kind),
                        ],
                        n,
                    ));
                }
                alarms.push((
                    [("pair", pair.as_str()), ("segment", e.segment.as_str())],
                    e.disparity_alarms,
                ));
            }
        }
        counters(
            &mut encoder,
            "cambio_business_events",
            "Business events counted, by segment and event",
            &events,
        )?;
        let refused: Vec<_> = refused.iter().map(|(r, n)| ([("reason", r.name())], *n)).collect();
        counters(
            &mut encoder,
            "cambio_business_events_quarantined",
            "Business events refused (malformed, no masking key, ...), by reason",
            &refused,
        )?;
        counters(
            &mut encoder,
            "cambio_business_disparity_alarms",
            "Disparity alarms raised, by segment",
            &alarms,
        )?;
        let mut offers = Vec::new();
        let mut acceptances = Vec::new();
        let mut uptake = Vec::new();
        let mut amount_uptake = Vec::new();
        let mut clients = Vec::new();
        let mut distance = Vec::new();
        let mut disparity = Vec::new();
        for (s, pair) in stats.iter().zip(&pairs) {
            for p in &s.periods {
                for g in &p.segments {
                    let l = [
                        ("pair", pair.as_str()),
                        ("segment", g.segment.as_str()),
                        ("period", p.period.as_str()),
                    ];
                    offers.push((l, g.offers as f64));
                    acceptances.push((l, g.acceptances as f64));
                    clients.push((l, g.distinct_clients as f64));
                    if let Some(u) = g.uptake {
                        uptake.push((l, u));
                    }
                    if let Some(u) = g.amount_uptake {
                        amount_uptake.push((l, u));
                    }
                    for (reference, v) in [
                        ("mid", g.quote_distance.mid_sigmas),
                        ("forecast", g.quote_distance.forecast_sigmas),
                    ] {
                        if let Some(v) = v {
                            let [a, b, c] = l;
                            distance.push(([a, b, c, ("reference", reference)], v));
                        }
                    }
                    if let Some(z) = g.disparity.and_then(|d| d.statistic) {
                        disparity.push((l, z));
                    }
                }
            }
        }
        gauges(
            &mut encoder,
            "cambio_business_offers",
            "Offers in the last period",
            &offers,
        )?;
        gauges(
            &mut encoder,
            "cambio_business_acceptances",
            "Acceptances in the last period",
            &acceptances,
        )?;
        gauges(
            &mut encoder,
            "cambio_business_uptake_ratio",
            "Acceptances / offers in the last period",
            &uptake,
        )?;
        gauges(
            &mut encoder,
            "cambio_business_amount_uptake_ratio",
            "Accepted amount / offered amount in the last period",
            &amount_uptake,
        )?;
        gauges(
            &mut encoder,
            "cambio_business_distinct_clients",
            "Distinct clients in the last period (HyperLogLog estimate)",
            &clients,
        )?;
        gauges(
            &mut encoder,
            "cambio_business_quote_distance_sigmas",
            "Mean distance of the quoted rate from the model's mid or one-step forecast, in sigmas",
            &distance,
        )?;
        gauges(
            &mut encoder,
            "cambio_business_disparity",
            "The segment's disparity statistic against the other segments (a z score)",
            &disparity,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: &str = "2024-03-04T10:00:00Z";

    fn desk(key: bool) -> Arc<BusinessDesk> {
        let key = key.then(|| MaskKey::new(b"metrics test key of 16+ bytes").unwrap());
        Arc::new(BusinessDesk::new(
            Business::new(&BusinessConfig::default(), key, 8).unwrap(),
        ))
    }

    fn scrape(desk: &Arc<BusinessDesk>) -> String {
        let mut registry = prometheus_client::registry::Registry::default();
        register(&mut registry, desk.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn metrics_have_the_catalogue_names_and_values() {
        let d = desk(true);
        let pair = Pair::parse("USDMXN");
        let q = QuoteRef::new(17.0, 17.0, 0.01);
        for body in [
            format!(
                r#"{{"ts":"{T0}","client":"CLIENT-7731-SECRET","event":"offered","rate":17.02,"amount":100,"segment":"retail"}}"#
            ),
            format!(
                r#"{{"ts":"{T0}","client":"CLIENT-7731-SECRET","event":"accepted","rate":17.02,"amount":100,"segment":"retail"}}"#
            ),
            format!(r#"{{"ts":"{T0}","client":"CLIENT-2","event":"offered","rate":17.0,"amount":300}}"#),
        ] {
            // A counted event comes back only in its masked form (published for the data lake).
            let out = d.on_message(pair, body.as_bytes(), q);
            assert!(
                matches!(&out[..], [BusinessOutput::Accepted(e)] if !e.client.contains("CLIENT")),
                "{out:?}"
            );
        }
        d.on_message(pair, b"{oops", q);
        d.on_message(None, b"{}", q);
        let text = scrape(&d);
        for line in [
            r#"cambio_business_events_total{pair="USDMXN",segment="retail",event="offered"} 1"#,
            r#"cambio_business_events_total{pair="USDMXN",segment="other",event="offered"} 1"#,
            r#"cambio_business_events_quarantined_total{reason="malformed_json"} 1"#,
            r#"cambio_business_events_quarantined_total{reason="bad_subject"} 1"#,
            r#"cambio_business_events_quarantined_total{reason="no_mask_key"} 0"#,
            r#"cambio_business_offers{pair="USDMXN",segment="all",period="1h"} 2.0"#,
            r#"cambio_business_acceptances{pair="USDMXN",segment="retail",period="1d"} 1.0"#,
            r#"cambio_business_uptake_ratio{pair="USDMXN",segment="all",period="1h"} 0.5"#,
            r#"cambio_business_amount_uptake_ratio{pair="USDMXN",segment="all",period="1h"} 0.25"#,
            r#"cambio_business_distinct_clients{pair="USDMXN",segment="all",period="1d"} 2.0"#,
            r#"cambio_business_quote_distance_sigmas{pair="USDMXN",segment="other",period="1h",reference="mid"} 0.0"#,
            r#"cambio_business_disparity_alarms_total{pair="USDMXN",segment="sme"} 0"#,
            "# TYPE cambio_business_disparity gauge",
        ] {
            assert!(text.contains(line), "missing {line}\n{text}");
        }
        let retail_distance = text
            .lines()
            .find(|l| l.starts_with(r#"cambio_business_quote_distance_sigmas{pair="USDMXN",segment="retail",period="1h",reference="forecast"}"#))
            .unwrap();
        let v: f64 = retail_distance.rsplit(' ').next().unwrap().parse().unwrap();
        assert!((v - 2.0).abs() < 1e-9, "{retail_distance}");
        assert!(!text.contains("7731"));
    }

    #[test]
    fn without_a_key_stats_are_refused_and_refusals_counted() {
        let d = desk(false);
        let pair = Pair::parse("USDMXN").unwrap();
        let out = d.on_message(Some(pair), br#"{"client":"CLIENT-7731-SECRET"}"#, None);
        assert!(
            matches!(&out[..], [BusinessOutput::Quarantined(q)] if q.reason == "no_mask_key" && q.client.is_none())
        );
        assert!(matches!(d.stats(pair), Err(BusinessError::NoMaskKey)));
        assert!(scrape(&d).contains(r#"cambio_business_events_quarantined_total{reason="no_mask_key"} 1"#));
        assert!(matches!(desk(true).stats(pair), Err(BusinessError::UnknownPair(p)) if p == pair));
    }
}
