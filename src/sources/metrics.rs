//! Prometheus metrics of `cambio sources run --metrics ADDR`: the counts of every source, read from the
//! runner's shared counts on each scrape (nothing is computed on the fetch path), served on `/metrics`
//! (the classic text format, or OpenMetrics to a client that asks for it) with `/healthz`.

use std::borrow::Cow;
use std::fmt;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use super::runner::{SharedCounts, SourceCounts};

/// The collector over the runner's counts.
struct SourcesCollector {
    counts: SharedCounts,
}

impl fmt::Debug for SourcesCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourcesCollector").finish_non_exhaustive()
    }
}

type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// A counter: its name (without `_total`), help, and how to read it from a source's counts.
type CounterDef = (&'static str, &'static str, fn(&SourceCounts) -> u64);

fn labels(c: &SourceCounts) -> Labels<'_> {
    vec![
        ("source", Cow::Borrowed(c.name.as_str())),
        ("kind", Cow::Borrowed(c.kind.as_str())),
    ]
}

impl Collector for SourcesCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let counters: [CounterDef; 7] = [
            ("cambio_source_runs", "Runs of the source started.", |c| c.runs),
            (
                "cambio_source_fetched",
                "Observations fetched after the watermark.",
                |c| c.fetched,
            ),
            ("cambio_source_published", "Messages published and acknowledged.", |c| {
                c.published
            }),
            (
                "cambio_source_missing",
                "Published messages that carry a missing value.",
                |c| c.missing,
            ),
            (
                "cambio_source_refused_future",
                "Observations dated after today, refused.",
                |c| c.refused_future,
            ),
            (
                "cambio_source_duplicates",
                "Publications JetStream reported as duplicates.",
                |c| c.duplicates,
            ),
            ("cambio_source_retries", "Retries of transient HTTP failures.", |c| {
                c.retries
            }),
        ];
        for (name, help, get) in counters {
            let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
            for c in &counts {
                m.encode_family(&labels(c))?
                    .encode_counter::<NoLabelSet, u64, u64>(&get(c), None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "cambio_source_errors",
            "Failures of the source, by class.",
            None,
            MetricType::Counter,
        )?;
        for c in &counts {
            for (class, v) in &c.errors {
                let mut l = labels(c);
                l.push(("class", Cow::Borrowed(class.as_str())));
                m.encode_family(&l)?.encode_counter::<NoLabelSet, u64, u64>(v, None)?;
            }
        }
        let mut m = enc.encode_descriptor(
            "cambio_source_up",
            "1 when the source's last run succeeded for every series, else 0.",
            None,
            MetricType::Gauge,
        )?;
        for c in &counts {
            m.encode_family(&labels(c))?.encode_gauge(&i64::from(!c.failed))?;
        }
        Ok(())
    }
}

/// Serves the metrics of `counts` on `listener` (`/metrics`, `/healthz`) until the returned task is aborted.
pub fn spawn(listener: TcpListener, counts: SharedCounts) -> tokio::task::JoinHandle<()> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(SourcesCollector { counts }));
    crate::nats::metrics_http::spawn(listener, crate::nats::metrics_http::Endpoint::new(registry))
}
