//! What each metric is: the collector prometheus-client calls on every scrape. It reads the pairs' status
//! snapshots and counters, the service's counters and connection events, the endpoints' and shards'
//! latency histograms and `/proc`; it never waits on a shard.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeCounterValue, NoLabelSet};
use prometheus_client::metrics::MetricType;

use super::Telemetry;
use super::pair::PairMetrics;
use crate::forecast::DriftStatus;
use crate::nats::connect::ConnectionEvents;
use crate::nats::serve::router::{PairView, Registry};
use crate::nats::serve::stats::{Counters, Latency};
use crate::quality::Status;
use crate::tick::Pair;

/// A series' labels: bounded names and values (pairs, horizons, detectors, reasons…), never free text.
pub type Labels<'a> = Vec<(&'static str, Cow<'a, str>)>;

/// Upper bounds (seconds) of the latency histograms' buckets: 10 µs to 10 s, about three per decade.
pub const LATENCY_BUCKETS: [f64; 19] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
    0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Everything the scrape reads.
pub struct ServeCollector {
    /// Service-wide figures.
    pub telemetry: Arc<Telemetry>,
    /// The pairs served.
    pub pairs: Registry,
    /// Service counters.
    pub counters: Arc<Counters>,
    /// The connection's events.
    pub events: Arc<ConnectionEvents>,
    /// The client (its connection state).
    pub client: async_nats::Client,
    /// Checkpoints are configured: without them there is no checkpoint series at all.
    pub checkpoints: bool,
}

impl fmt::Debug for ServeCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServeCollector").finish_non_exhaustive()
    }
}

impl ServeCollector {
    /// Connected to NATS, state restored, consuming, not stopping: what `/readyz` answers.
    pub fn ready(&self) -> bool {
        self.connected() && self.telemetry.consuming()
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn pairs(&self) -> Vec<(Pair, Arc<PairView>)> {
        let mut v: Vec<_> = match self.pairs.read() {
            Ok(reg) => reg.iter().map(|(p, v)| (*p, v.clone())).collect(),
            Err(_) => Vec::new(),
        };
        v.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        v
    }
}

/// Writes one metric family with its series.
struct Family<'e, 'w> {
    enc: &'e mut DescriptorEncoder<'w>,
}

impl Family<'_, '_> {
    fn gauges(&mut self, name: &str, help: &str, series: &[(Labels<'_>, f64)]) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for (l, v) in series {
            m.encode_family(l)?.encode_gauge(v)?;
        }
        Ok(())
    }

    fn gauge(&mut self, name: &str, help: &str, v: f64) -> fmt::Result {
        self.gauges(name, help, &[(Vec::new(), v)])
    }

    /// `name` without `_total`, which the encoder appends.
    fn counters<V: EncodeCounterValue>(&mut self, name: &str, help: &str, series: &[(Labels<'_>, V)]) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (l, v) in series {
            m.encode_family(l)?.encode_counter::<NoLabelSet, V, u64>(v, None)?;
        }
        Ok(())
    }

    fn counter(&mut self, name: &str, help: &str, v: u64) -> fmt::Result {
        self.counters::<u64>(name, help, &[(Vec::new(), v)])
    }

    /// `name` without `_info`, which the encoder appends.
    fn infos(&mut self, name: &str, help: &str, series: &[Labels<'_>]) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Info)?;
        for l in series {
            m.encode_info(l)?;
        }
        Ok(())
    }

    /// Latency histograms in seconds, from hdrhistograms in microseconds (the same data STATS reports).
    fn latencies(&mut self, name: &str, help: &str, series: &[(Labels<'_>, &Latency)]) -> fmt::Result {
        let mut m = self.enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
        for (l, lat) in series {
            let (sum, count, buckets) = buckets(lat);
            m.encode_family(l)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }
}

/// A latency histogram as Prometheus buckets: (sum in seconds, count, per-bucket counts ending with +Inf).
pub fn buckets(lat: &Latency) -> (f64, u64, Vec<(f64, u64)>) {
    let mut h = crate::nats::serve::stats::empty();
    lat.merge_into(&mut h);
    let count = h.len();
    let mut out = Vec::with_capacity(LATENCY_BUCKETS.len() + 1);
    let mut below = 0u64;
    for ub in LATENCY_BUCKETS {
        // Values are µs; a value is in the bucket when it is at most the bound.
        let cum = h.count_between(0, (ub * 1e6).round() as u64);
        out.push((ub, cum.saturating_sub(below)));
        below = below.max(cum);
    }
    out.push((f64::INFINITY, count.saturating_sub(below)));
    let sum = if count == 0 { 0.0 } else { h.mean() * count as f64 / 1e6 };
    (sum, count, out)
}

fn l1<'a>(k: &'static str, v: impl Into<Cow<'a, str>>) -> Labels<'a> {
    vec![(k, v.into())]
}

fn pair_l(p: &Pair) -> Labels<'static> {
    l1("pair", p.as_str().to_string())
}

fn with<'a>(mut l: Labels<'a>, k: &'static str, v: impl Into<Cow<'a, str>>) -> Labels<'a> {
    l.push((k, v.into()));
    l
}

fn status_value(s: Status) -> f64 {
    match s {
        Status::Ok => 0.0,
        Status::Warn => 1.0,
        Status::Fail => 2.0,
    }
}

impl Collector for ServeCollector {
    fn encode(&self, mut enc: DescriptorEncoder<'_>) -> fmt::Result {
        let pairs = self.pairs();
        let mut f = Family { enc: &mut enc };
        self.encode_ticks(&mut f, &pairs)?;
        self.encode_timings(&mut f, &pairs)?;
        encode_quality_drift(&mut f, &pairs)?;
        encode_accuracy_forecasts(&mut f, &pairs, self.telemetry.started_unix)?;
        encode_model(&mut f, &pairs)?;
        if self.checkpoints {
            self.encode_checkpoints(&mut f)?;
        }
        self.encode_nats(&mut f)?;
        self.encode_process(&mut f)
    }
}

fn per_pair(pairs: &[(Pair, Arc<PairView>)], get: impl Fn(&PairMetrics) -> u64) -> Vec<(Labels<'static>, u64)> {
    pairs.iter().map(|(p, v)| (pair_l(p), get(&v.metrics))).collect()
}

impl ServeCollector {
    fn encode_ticks(&self, f: &mut Family<'_, '_>, pairs: &[(Pair, Arc<PairView>)]) -> fmt::Result {
        let c = &self.counters;
        let g = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        f.counters(
            "cambio_ticks_received",
            "Tick messages handed to the pair's engine.",
            &per_pair(pairs, |m| PairMetrics::get(&m.received)),
        )?;
        f.counters(
            "cambio_ticks_accepted",
            "Ticks the engine accepted (each gives a forecast).",
            &per_pair(pairs, |m| PairMetrics::get(&m.accepted)),
        )?;
        let mut q = Vec::new();
        for (p, v) in pairs {
            for (reason, n) in v.metrics.quarantined() {
                q.push((with(pair_l(p), "reason", reason.name()), n));
            }
        }
        f.counters("cambio_ticks_quarantined", "Ticks quarantined, by reason.", &q)?;
        f.counters(
            "cambio_ticks_unrouted",
            "Messages on a tick subject that reached no engine: bad_subject, not_a_tick (no shard started for junk), pairs_limit (max_pairs reached).",
            &[
                (l1("reason", "bad_subject"), g(&c.bad_subjects)),
                (l1("reason", "not_a_tick"), g(&c.pairs_not_started)),
                (l1("reason", "pairs_limit"), g(&c.pairs_refused)),
            ],
        )?;
        f.counters(
            "cambio_forecasts_published",
            "Forecasts handed to the client for fx.pred.<PAIR>.",
            &per_pair(pairs, |m| PairMetrics::get(&m.forecasts)),
        )?;
        f.counter("cambio_factor_updates", "Factor messages applied.", g(&c.factors))?;
        f.counter(
            "cambio_factor_updates_refused",
            "Factor messages refused as malformed.",
            g(&c.bad_factors),
        )?;
        f.counter(
            "cambio_publish_errors",
            "Publications the client refused.",
            g(&c.publish_errors),
        )?;
        f.counter(
            "cambio_redeliveries_skipped",
            "JetStream redeliveries of ticks already applied.",
            g(&c.redeliveries_skipped),
        )?;
        f.gauge("cambio_pairs", "Pairs with a running engine.", pairs.len() as f64)?;
        f.counter("cambio_pairs_evicted", "Idle pairs stopped.", g(&c.pairs_evicted))
    }

    fn encode_timings(&self, f: &mut Family<'_, '_>, pairs: &[(Pair, Arc<PairView>)]) -> fmt::Result {
        let ticks: Vec<_> = pairs.iter().map(|(p, v)| (pair_l(p), &*v.latency)).collect();
        f.latencies(
            "cambio_tick_latency_seconds",
            "Tick received by the consumer to its outputs handed to the client.",
            &ticks,
        )?;
        let endpoints = self.telemetry.endpoints();
        let lat: Vec<_> = endpoints
            .iter()
            .map(|e| (l1("endpoint", e.name().to_string()), e.latency()))
            .collect();
        f.latencies(
            "cambio_query_latency_seconds",
            "Request received to reply handed to the client, per micro service endpoint.",
            &lat,
        )?;
        let counts: Vec<_> = endpoints.iter().map(|e| (e.name(), e.counts())).collect();
        f.counters(
            "cambio_requests",
            "Requests answered, per endpoint.",
            &counts
                .iter()
                .map(|(n, c)| (l1("endpoint", n.to_string()), c.0))
                .collect::<Vec<_>>(),
        )?;
        f.counters(
            "cambio_request_errors",
            "Requests answered with an error, per endpoint.",
            &counts
                .iter()
                .map(|(n, c)| (l1("endpoint", n.to_string()), c.1))
                .collect::<Vec<_>>(),
        )
    }

    fn encode_checkpoints(&self, f: &mut Family<'_, '_>) -> fmt::Result {
        let c = &self.counters;
        f.counter(
            "cambio_checkpoints",
            "Checkpoint cuts committed.",
            c.checkpoints.load(Ordering::Relaxed),
        )?;
        f.counter(
            "cambio_checkpoint_failures",
            "Checkpoint cuts that failed.",
            c.checkpoint_errors.load(Ordering::Relaxed),
        )?;
        f.latencies(
            "cambio_checkpoint_duration_seconds",
            "Checkpoint cut requested to committed.",
            &[(Vec::new(), &c.checkpoint_duration)],
        )?;
        let runs: Vec<_> = crate::nats::serve::stats::RETRAIN_OUTCOMES
            .iter()
            .zip(&c.retrain_runs)
            .map(|(o, n)| (l1("outcome", (*o).to_string()), n.load(Ordering::Relaxed)))
            .collect();
        f.counters(
            "cambio_retrain_runs",
            "Periodic retraining runs ([retrain]), per pair, by outcome.",
            &runs,
        )?;
        let retrain_ms = c.retrain_last_ms.load(Ordering::Relaxed);
        if retrain_ms > 0 {
            f.gauge(
                "cambio_retrain_last_duration_seconds",
                "Duration of the last periodic retraining run.",
                retrain_ms as f64 / 1e3,
            )?;
        }
        let last_ms = c.checkpoint_last_ok_ms.load(Ordering::Relaxed);
        if last_ms > 0 {
            f.gauge(
                "cambio_checkpoint_last_success_timestamp_seconds",
                "Unix time of the last committed checkpoint cut.",
                last_ms as f64 / 1e3,
            )?;
        }
        let now = crate::nats::serve::router::now_us() as f64 / 1e6;
        let since = if last_ms > 0 {
            last_ms as f64 / 1e3
        } else {
            self.telemetry.started_unix
        };
        f.gauge(
            "cambio_checkpoint_age_seconds",
            "Seconds since the last committed checkpoint cut (since start before the first).",
            (now - since).max(0.0),
        )
    }

    fn encode_nats(&self, f: &mut Family<'_, '_>) -> fmt::Result {
        let e = self.events.snapshot();
        f.gauge(
            "cambio_nats_connected",
            "1 while connected to the NATS server.",
            if self.connected() { 1.0 } else { 0.0 },
        )?;
        f.counter(
            "cambio_nats_reconnects",
            "Connections to the NATS server lost (each followed by reconnection attempts).",
            e.disconnected,
        )?;
        f.counter(
            "cambio_nats_slow_consumer_events",
            "Slow-consumer events reported by the client.",
            e.slow_consumer,
        )?;
        f.counter(
            "cambio_nats_messages_dropped",
            "Tick messages dropped for cambio because its subscription buffer was full (core mode).",
            self.counters.ticks_dropped.load(Ordering::Relaxed),
        )?;
        f.gauge(
            "cambio_instances",
            "cambio instances answering $SRV.PING.cambio on the bus, this one included.",
            self.telemetry.instances.load(Ordering::Relaxed) as f64,
        )?;
        f.gauge(
            "cambio_ready",
            "1 when /readyz answers 200.",
            if self.ready() { 1.0 } else { 0.0 },
        )
    }

    fn encode_process(&self, f: &mut Family<'_, '_>) -> fmt::Result {
        if let Some(p) = super::process::read() {
            f.counters(
                "cambio_process_cpu_seconds",
                "User and system CPU time, seconds.",
                &[(Vec::new(), p.cpu_seconds)],
            )?;
            f.gauge(
                "cambio_process_resident_memory_bytes",
                "Resident set size, bytes.",
                p.resident_bytes as f64,
            )?;
            f.gauge("cambio_process_open_fds", "Open file descriptors.", p.open_fds as f64)?;
            f.gauge("cambio_process_threads", "OS threads.", p.threads as f64)?;
        }
        f.gauge(
            "cambio_process_start_time_seconds",
            "Unix time the process started.",
            self.telemetry.started_unix,
        )?;
        f.infos(
            "cambio_build",
            "The cambio build.",
            &[l1("version", env!("CARGO_PKG_VERSION"))],
        )
    }
}

fn encode_quality_drift(f: &mut Family<'_, '_>, pairs: &[(Pair, Arc<PairView>)]) -> fmt::Result {
    let statuses: Vec<_> = pairs
        .iter()
        .filter_map(|(p, v)| v.snapshot.status().map(|s| (*p, s)))
        .collect();
    let mut score = Vec::new();
    let mut dim_status = Vec::new();
    let mut overall = Vec::new();
    let mut stat = Vec::new();
    let mut thr = Vec::new();
    let mut adapting = Vec::new();
    for (p, s) in &statuses {
        let q = &s.summary.quality;
        overall.push((pair_l(p), status_value(q.overall)));
        for d in &q.dimensions {
            let l = with(pair_l(p), "dimension", d.dimension.name());
            score.push((l.clone(), d.score));
            dim_status.push((l, status_value(d.status)));
        }
        for sig in &s.summary.drift {
            for d in &sig.detectors {
                let l = with(with(pair_l(p), "signal", sig.signal.name()), "detector", d.name);
                stat.push((l.clone(), d.statistic));
                thr.push((l, d.threshold));
            }
        }
        adapting.push((
            pair_l(p),
            if s.drift_status == DriftStatus::Adapting {
                1.0
            } else {
                0.0
            },
        ));
    }
    f.gauges(
        "cambio_quality_score",
        "The quality dimension's score over the quality window, 0 to 1.",
        &score,
    )?;
    f.gauges(
        "cambio_quality_status",
        "Overall quality status: 0 ok, 1 warn, 2 fail.",
        &overall,
    )?;
    f.gauges(
        "cambio_quality_dimension_status",
        "A quality dimension's status: 0 ok, 1 warn, 2 fail.",
        &dim_status,
    )?;
    f.gauges("cambio_drift_statistic", "The drift detector's statistic now.", &stat)?;
    f.gauges("cambio_drift_threshold", "The drift detector's alarm threshold.", &thr)?;
    // Every detector that can alarm has its series from the start (at 0), so `increase()` sees its first
    // alarm: the engine's drift detectors (from the status) and the shock detector on the input.
    let mut alarms = Vec::new();
    for (p, v) in pairs {
        let mut series: Vec<(&str, &str, u64)> = vec![("input", "shock", 0)];
        if let Some((_, s)) = statuses.iter().find(|(q, _)| q == p) {
            for sig in &s.summary.drift {
                for d in sig.detectors.iter().filter(|d| d.alarming) {
                    series.push((sig.signal.name(), d.name, 0));
                }
            }
        }
        for a in v.metrics.alarms() {
            match series.iter_mut().find(|(s, d, _)| *s == a.signal && *d == a.detector) {
                Some(e) => e.2 = a.alarms,
                None => series.push((a.signal, a.detector, a.alarms)),
            }
        }
        for (signal, detector, n) in series {
            alarms.push((with(with(pair_l(p), "signal", signal), "detector", detector), n));
        }
    }
    f.counters("cambio_drift_alarms", "Drift alarms raised.", &alarms)?;
    f.counters(
        "cambio_drift_adaptations",
        "Model adaptations after an alarm.",
        &per_pair(pairs, |m| PairMetrics::get(&m.adaptations)),
    )?;
    f.gauges("cambio_drift_adapting", "1 while the model adapts, else 0.", &adapting)
}

fn encode_accuracy_forecasts(
    f: &mut Family<'_, '_>,
    pairs: &[(Pair, Arc<PairView>)],
    started_unix: f64,
) -> fmt::Result {
    let mut scored = Vec::new();
    let mut ratio = Vec::new();
    let mut coverage = Vec::new();
    let mut winkler = Vec::new();
    for (p, v) in pairs {
        for a in v.metrics.accuracy() {
            let l = with(pair_l(p), "horizon", a.horizon);
            scored.push((l.clone(), a.sums.n as f64));
            if a.sums.n == 0 {
                continue;
            }
            ratio.push((l.clone(), a.sums.rmse_ratio()));
            coverage.push((with(l.clone(), "interval", "80"), a.sums.coverage80()));
            coverage.push((with(l.clone(), "interval", "95"), a.sums.coverage95()));
            winkler.push((l, a.sums.winkler95()));
        }
    }
    f.gauges(
        "cambio_forecast_scored",
        "Forecasts scored in the accuracy window.",
        &scored,
    )?;
    f.gauges(
        "cambio_forecast_rmse_ratio",
        "RMSE over the random walk's RMSE on the same forecasts, in the accuracy window (below 1 beats the random walk).",
        &ratio,
    )?;
    f.gauges(
        "cambio_forecast_coverage_ratio",
        "Share of outcomes inside the 80% or 95% interval, in the accuracy window.",
        &coverage,
    )?;
    f.gauges(
        "cambio_forecast_winkler95",
        "Mean Winkler score of the 95% interval in the accuracy window (price units).",
        &winkler,
    )?;
    let mut mid = Vec::new();
    let mut mean = Vec::new();
    let mut lower = Vec::new();
    let mut upper = Vec::new();
    let mut last_ts = Vec::new();
    let mut last_rx = Vec::new();
    for (p, v) in pairs {
        if let Some(fc) = v.snapshot.forecast() {
            mid.push((pair_l(p), fc.mid));
            last_ts.push((pair_l(p), fc.ts_us as f64 / 1e6));
            for h in &fc.horizons {
                let l = with(pair_l(p), "horizon", h.horizon.to_string());
                mean.push((l.clone(), h.mean));
                lower.push((with(l.clone(), "interval", "80"), h.lo80));
                lower.push((with(l.clone(), "interval", "95"), h.lo95));
                upper.push((with(l.clone(), "interval", "80"), h.hi80));
                upper.push((with(l, "interval", "95"), h.hi95));
            }
        }
        if let Some(at) = v.metrics.last_received() {
            last_rx.push((pair_l(p), started_unix + at.as_secs_f64()));
        }
    }
    f.gauges("cambio_mid_price", "The mid of the last accepted tick.", &mid)?;
    f.gauges("cambio_forecast_mean", "The latest forecast's point value.", &mean)?;
    f.gauges(
        "cambio_forecast_lower",
        "The latest forecast's interval lower bound.",
        &lower,
    )?;
    f.gauges(
        "cambio_forecast_upper",
        "The latest forecast's interval upper bound.",
        &upper,
    )?;
    f.gauges(
        "cambio_last_tick_timestamp_seconds",
        "The last accepted tick's own timestamp (tick time), Unix seconds.",
        &last_ts,
    )?;
    f.gauges(
        "cambio_last_tick_received_timestamp_seconds",
        "Unix time (wall clock) the last tick of the pair was received.",
        &last_rx,
    )
}

fn encode_model(f: &mut Family<'_, '_>, pairs: &[(Pair, Arc<PairView>)]) -> fmt::Result {
    let mut info = Vec::new();
    let mut challenger = Vec::new();
    for (p, v) in pairs {
        let Some(s) = v.snapshot.status() else { continue };
        let m = &s.model;
        let mut l = pair_l(p);
        l.push(("name", m.name.clone().into()));
        l.push(("version", m.version.to_string().into()));
        l.push(("config", m.config.clone().into()));
        info.push(l);
        if let Some(c) = &s.contest
            && let (Some(ch), Some(champ)) = (&c.challenger, c.champion_window_rmse)
            && let Some(rmse) = ch.window_rmse
            && champ > 0.0
        {
            challenger.push((pair_l(p), rmse / champ));
        }
    }
    f.infos(
        "cambio_model",
        "The model in service: registry version and configuration hash.",
        &info,
    )?;
    f.gauges(
        "cambio_challenger_rmse_ratio",
        "The challenger's RMSE over the champion's in the current contest window.",
        &challenger,
    )?;
    f.counters(
        "cambio_promotions",
        "Challengers promoted.",
        &per_pair(pairs, |m| PairMetrics::get(&m.promotions)),
    )?;
    f.counters(
        "cambio_rollbacks",
        "Automatic rollbacks by the guard.",
        &per_pair(pairs, |m| PairMetrics::get(&m.rollbacks)),
    )
}
