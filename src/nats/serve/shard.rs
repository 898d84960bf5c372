//! One shard per pair: a task that owns the pair's [`Engine`], feeds it the pair's ticks in arrival order,
//! publishes what it outputs, and keeps the snapshot that queries read.
//!
//! The engine call is synchronous and pure; everything around it (parsing the subject's payload, stamping
//! arrival, publishing, acknowledging) is this file's job. Queries never reach the shard: they read the
//! [`Snapshot`], which the shard replaces after each tick (forecast) and at most every
//! [`STATUS_REFRESH`] (status), so a burst of queries cannot slow the tick path.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::{HeaderMap, Subject};
use bytes::Bytes;
use tokio::sync::mpsc;

use super::metrics::PairMetrics;
use super::stats::{Counters, Latency};
use crate::challenger::{Contest, Verdict};
use crate::contract::{DriftMessage, QualityMessage, StatusReply};
use crate::engine::{Engine, Output};
use crate::forecast::{DriftStatus, Forecast};
use crate::nats::Subjects;
use crate::pipeline::PairPipeline;
use crate::tick::{Factor, Pair};
use crate::time::format_ts;

/// Longest a status snapshot lags behind the engine, and shortest time between two refreshes.
pub const STATUS_REFRESH: Duration = Duration::from_millis(100);

/// Most queued messages taken per wake-up (fewer select and wake-up costs under load).
const BATCH: usize = 256;

/// A tick as the consumer hands it to a shard.
pub struct TickMsg {
    /// The payload, as received.
    pub payload: Bytes,
    /// Wall-clock arrival (µs since the epoch), or `None` for replayed historical ticks.
    pub arrival_us: Option<i64>,
    /// When the consumer received it (for tick-to-forecast latency).
    pub received: Instant,
    /// The JetStream stream sequence (names the forecast for de-duplication), when from JetStream.
    pub stream_seq: Option<u64>,
    /// Acknowledges the JetStream message once the engine has processed it.
    pub acker: Option<Box<async_nats::jetstream::message::Acker>>,
}

/// What a shard receives.
pub enum ShardMsg {
    /// A tick of this pair.
    Tick(TickMsg),
    /// A factor observation (every shard gets every factor).
    Factor(Arc<Factor>),
    /// A checkpoint cut: encode the engine as of every message before this one.
    Checkpoint(Arc<super::checkpointer::Marker>),
    /// Replace the engine (a rollback or a promotion decided outside); answered once done.
    Replace(Box<Engine>, tokio::sync::oneshot::Sender<()>),
    /// Run this stored version as the contest's challenger (an operator's `challenge`); answered with
    /// whether the contest took it.
    Challenge(
        Box<Engine>,
        u64,
        tokio::sync::oneshot::Sender<Result<(), crate::challenger::ContestError>>,
    ),
}

/// What queries read: the latest forecast and the latest status, replaced wholesale (never mutated in place),
/// so a reader holds the lock only to clone an `Arc`.
#[derive(Debug, Default)]
pub struct Snapshot {
    forecast: Mutex<Option<Arc<Forecast>>>,
    status: Mutex<Option<Arc<StatusReply>>>,
}

impl Snapshot {
    /// The latest forecast.
    pub fn forecast(&self) -> Option<Arc<Forecast>> {
        self.forecast.lock().ok().and_then(|g| g.clone())
    }

    /// The latest status.
    pub fn status(&self) -> Option<Arc<StatusReply>> {
        self.status.lock().ok().and_then(|g| g.clone())
    }

    fn set_forecast(&self, f: Option<Arc<Forecast>>) {
        if let Ok(mut g) = self.forecast.lock() {
            *g = f;
        }
    }

    fn set_status(&self, s: StatusReply) {
        if let Ok(mut g) = self.status.lock() {
            *g = Some(Arc::new(s));
        }
    }
}

/// The subjects a shard publishes on, built once.
struct Outlets {
    pred: Subject,
    quarantine: Subject,
    quality: Subject,
    drift: Subject,
    alert: Subject,
}

/// Shared by every shard.
pub struct ShardContext {
    /// The client publications go through.
    pub client: async_nats::Client,
    /// Subject names.
    pub subjects: Subjects,
    /// Service counters.
    pub counters: Arc<Counters>,
    /// Seconds between quality/drift publications.
    pub report_interval: Duration,
    /// Longest raw payload kept in a quarantine record.
    pub max_raw_bytes: usize,
    /// Where a shard asks for a checkpoint of its own (after a drift adaptation); `None` without
    /// checkpoints.
    pub control: Option<mpsc::Sender<super::router::Control>>,
    /// The champion/challenger and rollback guard settings.
    pub challenger: crate::challenger::ChallengerConfig,
    /// Every publication and acknowledgement goes through it (bounded at shutdown, counted).
    pub outbox: Arc<super::outbox::Outbox>,
    /// Where each shard gets its pair's metrics.
    pub telemetry: Arc<super::metrics::Telemetry>,
    /// Forecasts are published with JetStream's acknowledgement through this context
    /// (`[serve.jetstream] confirm_forecasts`).
    pub confirm: Option<async_nats::jetstream::Context>,
}

/// A running shard's handles.
pub struct ShardHandle {
    /// Where to send its ticks and factors; dropping every sender ends the shard after its queue drains.
    pub tx: mpsc::Sender<ShardMsg>,
    /// What its queries read.
    pub snapshot: Arc<Snapshot>,
    /// Its tick-to-forecast latencies.
    pub latency: Arc<Latency>,
    /// Its counters and rolling accuracy.
    pub metrics: Arc<PairMetrics>,
    /// When the router last handed it a tick (for idle eviction).
    pub last_routed: std::time::Instant,
}

/// Starts the shard task of `engine`'s pair; returns its handles and its join handle (which resolves once the
/// queue is closed and drained and its last publications are handed to the client). `changed` says the
/// engine differs from its pair's current version in the registry (the next checkpoint writes it).
pub fn spawn(
    engine: Engine,
    contest: Option<Contest>,
    ctx: Arc<ShardContext>,
    queue: usize,
    factors: &[Arc<Factor>],
    changed: bool,
) -> (ShardHandle, tokio::task::JoinHandle<Engine>) {
    let (tx, rx) = mpsc::channel(queue);
    let snapshot = Arc::new(Snapshot::default());
    let latency = Arc::new(Latency::default());
    let metrics = ctx.telemetry.pair();
    let mut shard = Shard::new(
        PairPipeline::new(engine, contest),
        ctx,
        snapshot.clone(),
        latency.clone(),
        metrics.clone(),
    );
    shard.changed = changed;
    shard.confirmed = shard.ctx.confirm.clone().map(super::confirm::Confirmed::new);
    for f in factors {
        shard.pipeline.on_factor(f);
        shard.changed = true;
    }
    let join = tokio::spawn(shard.run(rx));
    let handle = ShardHandle {
        tx,
        snapshot,
        latency,
        metrics,
        last_routed: std::time::Instant::now(),
    };
    (handle, join)
}

struct Shard {
    /// The pair's engine and contest: everything that decides what is published.
    pipeline: PairPipeline,
    pair: Pair,
    ctx: Arc<ShardContext>,
    outlets: Outlets,
    snapshot: Arc<Snapshot>,
    latency: Arc<Latency>,
    metrics: Arc<PairMetrics>,
    out: Vec<Output>,
    /// Forecasts published with confirmation and their acknowledgements to come.
    confirmed: Option<super::confirm::Confirmed>,
    /// The last forecast's time (µs); formatted only when a report needs it, not per tick.
    last_ts_us: Option<i64>,
    drift: DriftStatus,
    /// Ticks processed since the last quality/drift publication.
    dirty_report: bool,
    /// Ticks processed since the status snapshot was refreshed.
    dirty_status: bool,
    /// This tick raised an alarm or an adaptation: publish drift statistics after its outputs.
    drift_changed: bool,
    status_at: Instant,
    /// The engine changed since its last checkpoint version.
    changed: bool,
    /// Tick time (µs) at which the rolling accuracy takes its next snapshot: it advances with tick time,
    /// not only with the status refreshes, so a replay at full speed still fills its window.
    accuracy_due_us: i64,
    /// Tick time between two snapshots.
    accuracy_step_us: i64,
    /// The latest event (an adaptation, a promotion, a rollback by the guard) since the last version: the
    /// reason of the next one. Events that come before their checkpoint is cut share one version.
    event: Option<crate::checkpoint::Reason>,
    /// The stream segment applied since the last version (its lineage's dataset and window).
    segment: crate::checkpoint::Segment,
    /// The registry version the live model descends from when an event replaced it (a promoted
    /// registry challenger): the next version's parent.
    event_parent: Option<u64>,
}

impl Shard {
    fn new(
        pipeline: PairPipeline,
        ctx: Arc<ShardContext>,
        snapshot: Arc<Snapshot>,
        latency: Arc<Latency>,
        metrics: Arc<PairMetrics>,
    ) -> Shard {
        let pair = pipeline.pair();
        let last_ts_us = pipeline.engine().last_ts_us();
        // The accuracy window's origin: what the engine had scored before this shard (a restored history
        // is not recent accuracy).
        metrics.update_accuracy(last_ts_us.unwrap_or(i64::MIN), pipeline.engine().accuracy_sums());
        let accuracy_step_us = metrics.accuracy_step_us();
        let s = &ctx.subjects;
        let outlets = Outlets {
            pred: s.pred(pair).into(),
            quarantine: s.quarantine(pair).into(),
            quality: s.quality(pair).into(),
            drift: s.drift(pair).into(),
            alert: s.alert(pair).into(),
        };
        Shard {
            pipeline,
            pair,
            ctx,
            outlets,
            snapshot,
            latency,
            metrics,
            out: Vec::with_capacity(8),
            confirmed: None,
            last_ts_us,
            drift: DriftStatus::Stable,
            dirty_report: false,
            dirty_status: true,
            drift_changed: false,
            status_at: Instant::now(),
            changed: false,
            accuracy_due_us: last_ts_us.map_or(i64::MIN, |t| t.saturating_add(accuracy_step_us)),
            accuracy_step_us,
            event: None,
            segment: crate::checkpoint::Segment::default(),
            event_parent: None,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<ShardMsg>) -> Engine {
        let mut reports = tokio::time::interval(self.ctx.report_interval);
        reports.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        reports.tick().await; // the first tick is immediate
        self.refresh_status();
        // One timer, re-armed only when the status becomes dirty (a timer per tick would cost a timer-wheel
        // registration per tick).
        let status_timer = tokio::time::sleep(STATUS_REFRESH);
        tokio::pin!(status_timer);
        let mut timer_armed = false;
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                n = rx.recv_many(&mut batch, BATCH) => {
                    if n == 0 {
                        break;
                    }
                    for msg in batch.drain(..) {
                        match msg {
                            ShardMsg::Tick(t) => self.on_tick(t).await,
                            ShardMsg::Factor(f) => {
                                self.pipeline.on_factor(&f);
                                self.changed = true;
                            }
                            ShardMsg::Checkpoint(m) => {
                                // The outputs of the ticks in this checkpoint must be at the server before
                                // it commits: after a crash those ticks are not applied (nor published) again.
                                let flushed = match self.settle_forecasts().await {
                                    Ok(()) => self.ctx.outbox.confirm(&self.ctx.client, Duration::from_secs(10)).await,
                                    Err(e) => Err(e),
                                };
                                let state = (self.pipeline.engine(), self.pipeline.contest());
                                let lineage = super::checkpointer::ShardLineage {
                                    segment: &self.segment,
                                    parent: self.event_parent,
                                };
                                if m.answer(state, self.changed, self.event, flushed, lineage) {
                                    self.changed = false;
                                    self.event = None;
                                    self.event_parent = None;
                                    self.segment = crate::checkpoint::Segment::default();
                                }
                            }
                            ShardMsg::Replace(engine, done) => {
                                self.pipeline.replace(*engine);
                                // The stored model saw none of the ticks applied since the last version: its
                                // next version's data starts here (its parent is the version restored).
                                self.segment = crate::checkpoint::Segment::default();
                                self.event_parent = None;
                                self.last_ts_us = self.pipeline.engine().last_ts_us();
                                self.refresh_forecast();
                                self.changed = true;
                                self.dirty_report = true;
                                self.refresh_status();
                                let _ = done.send(());
                            }
                            ShardMsg::Challenge(engine, version, done) => {
                                let r = self.pipeline.challenge(*engine, version);
                                if r.is_ok() {
                                    tracing::warn!(pair = %self.pair, version, "registry version runs as the challenger");
                                    self.changed = true;
                                    self.dirty_status = true;
                                }
                                let _ = done.send(r);
                            }
                        }
                    }
                }
                _ = reports.tick() => {
                    self.publish_reports().await;
                    // Forecasts refused while their stream could not answer are sent again even when no
                    // checkpoint comes (no new tick).
                    if self.confirmed.as_ref().is_some_and(|c| c.unacked() > 0) {
                        let _ = self.settle_forecasts().await;
                    }
                }
                // Quiet after the last tick: bring the status up to date.
                () = &mut status_timer, if timer_armed => timer_armed = false,
            }
            if self.dirty_status {
                if self.status_at.elapsed() >= STATUS_REFRESH {
                    self.refresh_status();
                } else if !timer_armed {
                    status_timer.as_mut().reset((self.status_at + STATUS_REFRESH).into());
                    timer_armed = true;
                }
            }
        }
        self.refresh_status();
        if self.dirty_report {
            self.publish_reports().await;
        }
        if let Err(e) = self.settle_forecasts().await {
            // The next owner (or the next start) reads these ticks again from the last checkpoint and
            // publishes their forecasts under the same ids.
            tracing::warn!(pair = %self.pair, error = %e, "shard stopped with forecasts not acknowledged by their stream");
        }
        // In-process tick latency (received by the consumer → outputs handed to the client), which tells a
        // slow engine apart from a slow network or server when end-to-end latency is high.
        let l = self.latency.report();
        tracing::info!(pair = %self.pair, ticks = self.pipeline.engine().ticks(), latency_p50_us = l.p50_us,
            latency_p99_us = l.p99_us, latency_max_us = l.max_us, "shard drained");
        self.pipeline.into_engine()
    }

    async fn on_tick(&mut self, t: TickMsg) {
        crate::nats::serve::stats::Counters::inc(&self.ctx.counters.ticks);
        self.metrics.on_received(t.received);
        // The forecast's de-duplication id: the stream sequence with JetStream, else the tick's position in the
        // pair's stream (both deterministic for the same input).
        let position = t.stream_seq.unwrap_or(self.pipeline.engine().ticks() + 1);
        self.out.clear();
        let accepted_before = self.pipeline.engine().accepted();
        let verdict = self
            .pipeline
            .on_payload(&t.payload, t.arrival_us, self.ctx.max_raw_bytes, &mut self.out);
        let engine = self.pipeline.engine();
        let accepted_ts = (engine.accepted() != accepted_before)
            .then(|| engine.last_ts_us())
            .flatten();
        self.segment.on_tick(t.stream_seq, accepted_ts, &t.payload);
        let mut out = std::mem::take(&mut self.out);
        for o in out.drain(..) {
            self.publish(o, position).await;
        }
        self.out = out;
        if let Some(v) = verdict {
            self.on_verdict(&v).await;
        }
        if let Some(ts) = self.last_ts_us
            && ts >= self.accuracy_due_us
        {
            self.metrics.update_accuracy(ts, self.pipeline.engine().accuracy_sums());
            self.accuracy_due_us = ts.saturating_add(self.accuracy_step_us);
        }
        if self.drift_changed {
            // A drift status change: publish the statistics now (after this tick's forecast, so they carry
            // its time and state), not at the next interval.
            self.drift_changed = false;
            let drift = self.drift_report();
            self.send(self.outlets.drift.clone(), to_bytes(&drift)).await;
        }
        self.latency
            .record_us(u64::try_from(t.received.elapsed().as_micros()).unwrap_or(u64::MAX));
        if let Some(acker) = t.acker
            && let Err(super::outbox::Undelivered::Failed(e)) = self.ctx.outbox.ack(acker.ack()).await
        {
            tracing::warn!(pair = %self.pair, error = %e, "jetstream ack failed; the tick will be redelivered and skipped");
        }
        self.dirty_report = true;
        self.dirty_status = true;
        self.changed = true;
    }

    async fn publish(&mut self, o: Output, position: u64) {
        let counters = &self.ctx.counters;
        match o {
            Output::Forecast(f) => {
                Counters::inc(&counters.forecasts);
                PairMetrics::inc(&self.metrics.accepted);
                PairMetrics::inc(&self.metrics.forecasts);
                self.last_ts_us = Some(f.ts_us);
                self.drift = f.drift;
                let f = Arc::new(f);
                let body = Bytes::from(f.to_json_vec());
                let mut id = itoa::Buffer::new();
                let mut msg_id = [0u8; 6 + 1 + 20];
                msg_id[..6].copy_from_slice(self.pair.as_str().as_bytes());
                msg_id[6] = b'-';
                let digits = id.format(position).as_bytes();
                msg_id[7..7 + digits.len()].copy_from_slice(digits);
                let mut headers = HeaderMap::new();
                // ASCII by construction (six letters, a dash, digits).
                headers.insert(
                    crate::nats::headers::MSG_ID,
                    std::str::from_utf8(&msg_id[..7 + digits.len()]).unwrap_or("?"),
                );
                match &mut self.confirmed {
                    Some(c) => {
                        // Through the outbox too, so a shutdown that gave up on NATS does not wait for it.
                        let subject = self.outlets.pred.clone();
                        let sent = self
                            .ctx
                            .outbox
                            .publish(async {
                                c.publish(subject, headers, body).await;
                                Ok::<(), async_nats::PublishError>(())
                            })
                            .await;
                        self.on_sent(sent);
                    }
                    None => self.send_with_headers(self.outlets.pred.clone(), headers, body).await,
                }
                self.snapshot.set_forecast(Some(f));
            }
            o @ Output::Quarantined(_) => {
                Counters::inc(&counters.quarantined);
                if let Output::Quarantined(q) = &o {
                    self.metrics.on_quarantined(q.reason);
                }
                self.send(self.outlets.quarantine.clone(), to_bytes(&o)).await;
            }
            o @ Output::QualityChanged(_) => {
                if let Output::QualityChanged(q) = &o {
                    tracing::info!(pair = %self.pair, overall = q.report.overall.name(), ts = q.ts.as_deref(), "quality status changed");
                }
                self.send(self.outlets.quality.clone(), to_bytes(&o)).await;
            }
            o @ (Output::Alarm(_) | Output::Adapted(_)) => {
                match &o {
                    Output::Alarm(a) => {
                        self.metrics.on_alarm(a.alarm.signal.name(), a.alarm.detector);
                        tracing::warn!(
                            pair = %self.pair,
                            detector = %a.alarm.detector,
                            signal = a.alarm.signal.name(),
                            statistic = a.alarm.statistic,
                            ts = %a.ts,
                            "drift alarm"
                        );
                    }
                    Output::Adapted(a) => {
                        PairMetrics::inc(&self.metrics.adaptations);
                        tracing::warn!(
                            pair = %self.pair,
                            trigger = %a.trigger,
                            forgetting = a.forgetting,
                            ticks = a.ticks,
                            "model adapting"
                        );
                        self.request_checkpoint(crate::checkpoint::Reason::DriftAdaptation);
                    }
                    _ => {}
                }
                self.send(self.outlets.alert.clone(), to_bytes(&o)).await;
                self.drift_changed = true;
            }
        }
    }

    /// A promotion or an automatic rollback: an alert, a log line, and a recorded version.
    async fn on_verdict(&mut self, v: &Verdict) {
        let reason = match v {
            Verdict::Promote(p) => {
                PairMetrics::inc(&self.metrics.promotions);
                // A promoted registry version is the parent of the next version; another origin (the
                // variant, the demoted live model) descends from the pair's current version.
                self.event_parent = match p.promoted {
                    crate::challenger::ModelOrigin::Version(v) => Some(v),
                    _ => None,
                };
                tracing::warn!(pair = %self.pair, horizon = %p.horizon, champion_rmse = p.champion_rmse,
                    challenger_rmse = p.challenger_rmse, "challenger promoted");
                crate::checkpoint::Reason::Promotion
            }
            Verdict::Rollback(r) => {
                PairMetrics::inc(&self.metrics.rollbacks);
                self.event_parent = None;
                tracing::warn!(pair = %self.pair, horizon = %r.horizon, baseline = r.baseline, after = r.after,
                    threshold = r.threshold, "errors degraded after a drift adaptation: model rolled back");
                crate::checkpoint::Reason::Rollback
            }
        };
        self.send(self.outlets.alert.clone(), to_bytes(v)).await;
        self.dirty_status = true;
        self.request_checkpoint(reason);
    }

    /// Asks the router for a checkpoint of this pair (it comes after the ticks already queued). Never
    /// waits: if the control queue is full the next periodic checkpoint records the state.
    fn request_checkpoint(&mut self, reason: crate::checkpoint::Reason) {
        self.event = Some(reason);
        if let Some(control) = &self.ctx.control {
            let c = super::router::Control::Checkpoint {
                pair: Some(self.pair),
                reason,
                note: None,
                actor: None,
                reply: None,
            };
            if control.try_send(c).is_err() {
                tracing::debug!(pair = %self.pair, "checkpoint request dropped (control queue full)");
            }
        }
    }

    /// Publishes through the outbox. A publication given up at shutdown is counted there (and reported
    /// once, in the shutdown's summary line), not logged one by one.
    async fn send(&self, subject: Subject, body: Bytes) {
        let sent = self.ctx.outbox.publish(self.ctx.client.publish(subject, body)).await;
        self.on_sent(sent);
    }

    /// Waits for the stream's acknowledgement of every forecast published so far, when forecasts are
    /// confirmed (a checkpoint covers a tick only once its forecast is stored).
    async fn settle_forecasts(&mut self) -> Result<(), String> {
        match &mut self.confirmed {
            // Short: acknowledgements take milliseconds, and while the stream cannot answer the shard must
            // keep serving (the checkpoint fails, and the next one tries again).
            Some(c) => c.settle(Duration::from_millis(500)).await.map_err(|e| {
                Counters::inc(&self.ctx.counters.publish_errors);
                format!("{} forecasts not acknowledged by their stream: {e}", c.unacked())
            }),
            None => Ok(()),
        }
    }

    async fn send_with_headers(&self, subject: Subject, headers: HeaderMap, body: Bytes) {
        let sent = self
            .ctx
            .outbox
            .publish(self.ctx.client.publish_with_headers(subject, headers, body))
            .await;
        self.on_sent(sent);
    }

    fn on_sent(&self, sent: Result<(), super::outbox::Undelivered<async_nats::PublishError>>) {
        if let Err(super::outbox::Undelivered::Failed(e)) = sent {
            Counters::inc(&self.ctx.counters.publish_errors);
            tracing::warn!(pair = %self.pair, error = %e, "publish failed");
        }
    }

    fn drift_report(&self) -> DriftMessage {
        let s = self.pipeline.engine().summary();
        DriftMessage {
            pair: self.pair,
            ts: self.last_ts_us.map(format_ts),
            status: self.drift,
            alarms_total: s.alarms_total,
            adaptations: s.adaptations,
            signals: s.drift,
        }
    }

    /// The periodic quality and drift publications (only when ticks arrived since the last ones).
    async fn publish_reports(&mut self) {
        if !self.dirty_report {
            return;
        }
        self.dirty_report = false;
        let s = self.pipeline.engine().summary();
        let quality = QualityMessage {
            pair: self.pair,
            ts: self.last_ts_us.map(format_ts),
            report: s.quality,
            worst: s.quality_worst,
        };
        self.send(self.outlets.quality.clone(), to_bytes(&quality)).await;
        let drift = self.drift_report();
        self.send(self.outlets.drift.clone(), to_bytes(&drift)).await;
    }

    /// After a rollback, queries answer the restored model's forecast from the last accepted tick at once,
    /// not the replaced model's until the next tick (and nothing when no tick was accepted yet).
    fn refresh_forecast(&self) {
        let engine = self.pipeline.engine();
        let restored = self
            .snapshot
            .forecast()
            .filter(|f| engine.last_ts_us() == Some(f.ts_us))
            .and_then(|f| engine.forecast_at(f.ts_us, f.seq, f.mid, f.flags));
        self.snapshot.set_forecast(restored.map(Arc::new));
    }

    fn refresh_status(&mut self) {
        let engine = self.pipeline.engine();
        if let Some(ts) = self.last_ts_us {
            self.metrics.update_accuracy(ts, engine.accuracy_sums());
        }
        let status = StatusReply {
            summary: engine.summary(),
            model: engine.model_stamp(),
            drift_status: self.drift,
            last_ts: self.last_ts_us.map(format_ts),
            contest: self.pipeline.contest().map(|c| c.status(engine)),
            ticks_dropped: self
                .ctx
                .counters
                .ticks_dropped
                .load(std::sync::atomic::Ordering::Relaxed),
        };
        self.snapshot.set_status(status);
        self.dirty_status = false;
        self.status_at = Instant::now();
    }
}

/// A contract message's JSON bytes.
fn to_bytes<T: serde::Serialize>(v: &T) -> Bytes {
    Bytes::from(crate::contract::to_json_vec(v))
}
