//! The consumer side of the service: routes each tick to its pair's shard (creating the shard on the
//! pair's first tick) and each factor to every shard.
//!
//! The router is the only place that sees subjects and headers; shards see payloads. Per-pair order is
//! kept because one router task forwards in arrival order into one queue per pair.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_nats::HeaderMap;
use bytes::Bytes;

use super::checkpointer::{Checkpointer, Focus, Job, Marker, PartError, Reply, WriterError};
use super::shard::{self, ShardContext, ShardHandle, ShardMsg, TickMsg};
use super::stats::Counters;
use crate::challenger::Contest;
use crate::checkpoint::AppliedSeqs;
use crate::checkpoint::{Reason, VersionMeta};
use crate::contract::{Unrouted, UnroutedReason};
use crate::engine::Engine;
use crate::engine::EngineConfig;
use crate::pipeline::{FactorBook, PairSet};
use crate::tick::{Factor, Pair, parse_factor};

pub use crate::nats::headers::REPLAY as REPLAY_HEADER;

/// What queries need of a pair: its snapshot and latency histogram.
pub type Registry = Arc<RwLock<HashMap<Pair, Arc<PairView>>>>;

/// A pair as the request-reply side sees it.
#[derive(Debug)]
pub struct PairView {
    /// Latest forecast and status.
    pub snapshot: Arc<shard::Snapshot>,
    /// Tick-to-forecast latency.
    pub latency: Arc<super::stats::Latency>,
}

/// Where a tick came from, beyond its subject and payload.
pub struct Delivery {
    /// Wall-clock or server-side arrival time (µs), before the replay rule is applied.
    pub arrival_us: Option<i64>,
    /// When this process received it.
    pub received: Instant,
    /// JetStream stream sequence.
    pub stream_seq: Option<u64>,
    /// JetStream acknowledgement, sent by the shard after processing.
    pub acker: Option<Box<async_nats::jetstream::message::Acker>>,
}

impl Delivery {
    /// A core-NATS delivery received now: the wall clock is its arrival, read only when `stamp` (the
    /// service stamps arrivals) since a clock read per tick is not free.
    pub fn core_now(stamp: bool) -> Delivery {
        Delivery {
            arrival_us: stamp.then(now_us),
            received: Instant::now(),
            stream_seq: None,
            acker: None,
        }
    }
}

/// Why a rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The checkpoint writer could not load the version or record the rollback (no such version, a
    /// damaged record, checkpoints not configured, the writer stopped).
    #[error(transparent)]
    Writer(#[from] WriterError),
    /// The stored version holds another pair's model: the store is inconsistent.
    #[error("version {version} holds {holds}, not {pair}")]
    WrongPair {
        /// The pair asked for.
        pair: Pair,
        /// The version asked for.
        version: u64,
        /// The pair the version holds.
        holds: Pair,
    },
    /// The pair's shard has stopped (the service is shutting down).
    #[error("{0}: shard stopped")]
    ShardStopped(Pair),
    /// The pair has no shard and `max_pairs` shards already run.
    #[error("{0}: cannot start a shard (max_pairs reached)")]
    MaxPairs(Pair),
    /// The cut that records the rollback committed without the pair's version.
    #[error("{0}: the rollback version was not written")]
    NotWritten(Pair),
}

/// Requests to the consumer loop that must be ordered with the ticks (they go through the shards' queues).
#[derive(Debug)]
pub enum Control {
    /// Checkpoint now: one pair (always written, with `reason`), or every pair (`pair: None`).
    Checkpoint {
        /// The pair, or all.
        pair: Option<Pair>,
        /// Why.
        reason: Reason,
        /// Note for the pair's version.
        note: Option<String>,
        /// Told the versions written once committed.
        reply: Option<Reply<Vec<VersionMeta>>>,
    },
    /// Replace a pair's engine with a stored version, and record that as a new version.
    Rollback {
        /// The pair.
        pair: Pair,
        /// The version to go back to.
        version: u64,
        /// Told the new version once committed.
        reply: tokio::sync::oneshot::Sender<Result<VersionMeta, RollbackError>>,
    },
}

/// The checkpoint side of the router: when to cut, and where parts go.
#[derive(Debug)]
pub struct CheckpointPlan {
    /// The writer thread.
    pub writer: Checkpointer,
    /// Ticks between periodic cuts.
    pub every_ticks: u64,
    /// Ticks routed since the last cut.
    pub since: u64,
    /// The last cut number issued.
    pub last_id: u64,
}

/// Routes messages to shards.
pub struct Router {
    engine_cfg: EngineConfig,
    ctx: Arc<ShardContext>,
    registry: Registry,
    shards: PairSet<ShardHandle>,
    joins: Vec<tokio::task::JoinHandle<Engine>>,
    /// The latest factors, for shards started later (as replay gives them to new pairs).
    factors: FactorBook,
    queue: usize,
    stamp_arrival: bool,
    checkpoints: Option<CheckpointPlan>,
    /// JetStream: the stream sequences routed (applied once their shard processes them).
    applied: Option<AppliedSeqs>,
    /// JetStream after a restore: per pair, the sequences already in its restored state.
    skip: HashMap<Pair, AppliedSeqs>,
}

impl Router {
    /// A router with no shards yet.
    pub fn new(
        engine_cfg: EngineConfig,
        ctx: Arc<ShardContext>,
        registry: Registry,
        queue: usize,
        max_pairs: usize,
        stamp_arrival: bool,
    ) -> Router {
        Router {
            engine_cfg,
            ctx,
            registry,
            shards: PairSet::new(max_pairs),
            joins: Vec::new(),
            factors: FactorBook::default(),
            queue,
            stamp_arrival,
            checkpoints: None,
            applied: None,
            skip: HashMap::new(),
        }
    }

    /// Checkpoints through `plan`.
    pub fn set_checkpoints(&mut self, plan: CheckpointPlan) {
        self.checkpoints = Some(plan);
    }

    /// Tracks JetStream stream sequences from `applied` (the restored cut, or the consumer's ack floor).
    pub fn set_applied(&mut self, applied: AppliedSeqs) {
        self.applied = Some(applied);
    }

    /// The stream sequences routed so far.
    pub fn applied(&self) -> Option<&AppliedSeqs> {
        self.applied.as_ref()
    }

    /// Records a delivered stream sequence; false when it was already routed (a redelivery to skip).
    pub fn admit(&mut self, seq: u64) -> bool {
        self.applied.as_mut().is_none_or(|a| a.insert(seq))
    }

    /// Starts a restored pair's shard with its engine; with JetStream, `skip` holds the stream sequences
    /// already in that engine, which are acknowledged and skipped if the stream delivers them again.
    ///
    /// `contest` is the contest saved with the engine; `previous` an older stored version, the challenger
    /// when `[challenger]` asks for one without a variant configuration.
    pub fn restore(
        &mut self,
        engine: Engine,
        skip: Option<AppliedSeqs>,
        contest: Option<Contest>,
        previous: Option<(Engine, u64)>,
    ) -> bool {
        let pair = engine.pair();
        if let Some(s) = skip {
            self.skip.insert(pair, s);
        }
        let contest = self.contest_for(&engine, contest, previous);
        self.start_shard_with(engine, contest)
    }

    /// The contest a shard runs: the restored one (with this configuration's rules), or a new one with a
    /// variant challenger or a previous version; `None` when neither a challenger nor the rollback guard
    /// is configured.
    fn contest_for(
        &self,
        engine: &Engine,
        restored: Option<Contest>,
        previous: Option<(Engine, u64)>,
    ) -> Option<Contest> {
        let cfg = &self.ctx.challenger;
        if !(cfg.enabled || cfg.rollback) {
            return None;
        }
        let pair = engine.pair();
        if let Some(mut c) = restored {
            match c.reconfigure(cfg, engine) {
                Ok(()) => {
                    c.stamp_registry_versions();
                    return Some(c);
                }
                Err(e) => tracing::warn!(pair = %pair, error = %e, "restored contest not reusable; starting a new one"),
            }
        }
        if cfg.enabled && cfg.engine.is_none() && previous.is_none() {
            tracing::info!(pair = %pair, "no previous version to run as challenger (and no [challenger.engine])");
        }
        match crate::pipeline::new_contest(cfg, engine, previous) {
            Ok(c) => {
                if let Some(origin) = c.as_ref().and_then(Contest::challenger_origin) {
                    tracing::info!(pair = %pair, origin = %origin, "challenger runs in shadow");
                }
                c
            }
            Err(e) => {
                tracing::error!(pair = %pair, error = %e, "cannot run the contest");
                None
            }
        }
    }

    /// Remembers factors restored from a cut, for pairs started later.
    pub fn restore_factors(&mut self, factors: Vec<Factor>) {
        for f in factors {
            self.factors.record(Arc::new(f));
        }
    }

    fn skipped(&self, pair: Pair, seq: Option<u64>) -> bool {
        seq.is_some_and(|s| self.skip.get(&pair).is_some_and(|a| a.contains(s)))
    }

    /// Routes one message from a tick subject.
    pub async fn on_tick(&mut self, subject: &str, headers: Option<&HeaderMap>, payload: Bytes, d: Delivery) {
        let token = self.ctx.subjects.token("ticks", subject);
        let Some(pair) = token.and_then(Pair::parse) else {
            Counters::inc(&self.ctx.counters.bad_subjects);
            self.quarantine_unrouted(subject, UnroutedReason::BadSubject, None, &payload)
                .await;
            ack(d.acker).await;
            return;
        };
        if !self.shards.contains(&pair) && !self.start_shard(pair) {
            Counters::inc(&self.ctx.counters.pairs_refused);
            self.quarantine_unrouted(subject, UnroutedReason::TooManyPairs, None, &payload)
                .await;
            ack(d.acker).await;
            return;
        }
        if self.skipped(pair, d.stream_seq) {
            Counters::inc(&self.ctx.counters.redeliveries_skipped);
            ack(d.acker).await;
            return;
        }
        let replayed = headers.is_some_and(|h| h.get(REPLAY_HEADER).is_some());
        let arrival_us = if self.stamp_arrival && !replayed {
            d.arrival_us
        } else {
            None
        };
        let msg = ShardMsg::Tick(TickMsg {
            payload,
            arrival_us,
            received: d.received,
            stream_seq: d.stream_seq,
            acker: d.acker,
        });
        if let Some(shard) = self.shards.get(&pair)
            && shard.tx.send(msg).await.is_err()
        {
            tracing::error!(pair = %pair, "shard stopped; tick not applied (it stays unacknowledged)");
        }
        if let Some(plan) = &mut self.checkpoints {
            plan.since += 1;
            if plan.since >= plan.every_ticks {
                self.cut(Reason::Periodic, false, None, None).await;
            }
        }
    }

    /// Routes one factor message to every shard (and remembers it for shards started later). A factor
    /// whose `name` is not its subject's last token is refused: the subject is what permissions and
    /// streams are set on, so a message on `fx.factors.TIIE28` must not change another factor.
    pub async fn on_factor(&mut self, subject: &str, payload: &[u8], seq: Option<u64>) {
        let counters = self.ctx.counters.clone();
        let token = self.ctx.subjects.token("factors", subject);
        let factor = parse_factor(payload).map_err(|e| e.to_string()).and_then(|f| {
            if token == Some(f.name.as_str()) {
                Ok(f)
            } else {
                Err(format!(
                    "factor name `{}` is not the subject's last token `{}`",
                    f.name,
                    crate::tick::detail::Shown(token.unwrap_or(subject))
                ))
            }
        });
        match factor {
            Ok(f) => {
                Counters::inc(&counters.factors);
                let f = Arc::new(f);
                self.factors.record(f.clone());
                for (pair, shard) in self.shards.iter() {
                    if !self.skipped(*pair, seq) {
                        let _ = shard.tx.send(ShardMsg::Factor(f.clone())).await;
                    }
                }
            }
            Err(detail) => {
                Counters::inc(&counters.bad_factors);
                tracing::warn!(subject, error = %detail, "factor refused");
                self.quarantine_unrouted(subject, UnroutedReason::BadFactor, Some(detail), payload)
                    .await;
            }
        }
    }

    fn start_shard(&mut self, pair: Pair) -> bool {
        if self.shards.is_full() {
            return false;
        }
        match Engine::new(pair, &self.engine_cfg) {
            Ok(e) => {
                tracing::info!(pair = %pair, "new pair: shard started");
                let contest = self.contest_for(&e, None, None);
                self.start_shard_with(e, contest)
            }
            Err(e) => {
                // The configuration was validated at start; this would be a broken invariant.
                tracing::error!(pair = %pair, error = %e, "cannot build engine");
                false
            }
        }
    }

    fn start_shard_with(&mut self, engine: Engine, contest: Option<Contest>) -> bool {
        let pair = engine.pair();
        if self.shards.contains(&pair) || self.shards.is_full() {
            return false;
        }
        // A restored engine already holds the factors it had seen.
        let factors: Vec<_> = if engine.ticks() == 0 {
            self.factors.latest().cloned().collect()
        } else {
            Vec::new()
        };
        let (handle, join) = shard::spawn(engine, contest, self.ctx.clone(), self.queue, &factors);
        if let Ok(mut reg) = self.registry.write() {
            reg.insert(
                pair,
                Arc::new(PairView {
                    snapshot: handle.snapshot.clone(),
                    latency: handle.latency.clone(),
                }),
            );
        }
        self.joins.push(join);
        // Checked above: the pair is new and the set has room.
        self.shards.insert(pair, handle).is_ok()
    }

    /// Messages that cannot reach any pair's engine still leave a record on `<prefix>.quarantine._unrouted`.
    async fn quarantine_unrouted(&self, subject: &str, reason: UnroutedReason, detail: Option<String>, payload: &[u8]) {
        let record = Unrouted {
            subject: subject.to_string(),
            reason,
            detail,
            raw: crate::pipeline::raw_text(payload, self.ctx.max_raw_bytes),
        };
        let out = format!("{}.quarantine._unrouted", self.ctx.subjects.prefix());
        let body = Bytes::from(crate::contract::to_json_vec(&record));
        if self.ctx.client.publish(out, body).await.is_err() {
            Counters::inc(&self.ctx.counters.publish_errors);
        }
    }

    /// Starts a checkpoint cut: every shard encodes its engine after the messages already in its queue.
    /// Periodic cuts are skipped while two are still being written (the disk is behind; the next one
    /// will include everything).
    pub async fn cut(
        &mut self,
        reason: Reason,
        force_all: bool,
        focus: Option<Focus>,
        reply: Option<Reply<Vec<VersionMeta>>>,
    ) {
        let Some(plan) = &mut self.checkpoints else {
            if let Some(r) = reply {
                let _ = r.send(Err(WriterError::NotConfigured));
            }
            return;
        };
        plan.since = 0;
        // Only a plain periodic cut may be skipped: one that records an event or answers a request never is.
        let plain = reason == Reason::Periodic && focus.is_none() && reply.is_none();
        if plain && plan.last_id > plan.writer.committed() + 1 {
            tracing::debug!("periodic checkpoint skipped: the writer is behind");
            return;
        }
        plan.last_id += 1;
        let id = plan.last_id;
        let job = Job::Cut {
            id,
            expected: self.shards.len(),
            applied: self.applied.clone(),
            factors: self.factors.to_vec(),
            reply,
        };
        if !plan.writer.send(job) {
            tracing::error!("checkpoint writer stopped; no checkpoint");
            return;
        }
        let marker = Arc::new(Marker {
            id,
            reason,
            force_all,
            focus,
            applied: self.applied.clone(),
            writer: plan.writer.clone(),
        });
        for (&pair, shard) in self.shards.iter() {
            if shard.tx.send(ShardMsg::Checkpoint(marker.clone())).await.is_err() {
                // The shard is gone: answer for it so the cut is not left waiting (and fails: its state
                // is not in it).
                let _ = plan.writer.send(Job::Part {
                    id,
                    part: Err(PartError::ShardStopped(pair)),
                });
            }
        }
    }

    /// A periodic checkpoint, if ticks arrived since the last one.
    pub async fn periodic_cut(&mut self) {
        if self.checkpoints.as_ref().is_some_and(|p| p.since > 0) {
            self.cut(Reason::Periodic, false, None, None).await;
        }
    }

    /// Handles a control request.
    pub async fn on_control(&mut self, c: Control) {
        match c {
            Control::Checkpoint {
                pair,
                reason,
                note,
                reply,
            } => {
                let focus = pair.map(|pair| Focus { pair, reason, note });
                self.cut(reason, focus.is_none(), focus, reply).await;
            }
            Control::Rollback { pair, version, reply } => {
                let r = self.rollback(pair, version).await;
                let _ = reply.send(r);
            }
        }
    }

    async fn rollback(&mut self, pair: Pair, version: u64) -> Result<VersionMeta, RollbackError> {
        let writer = match &self.checkpoints {
            Some(p) => p.writer.clone(),
            None => return Err(WriterError::NotConfigured.into()),
        };
        let (_, state) = writer.ask(|reply| Job::Load { pair, version, reply }).await?;
        if state.engine.pair() != pair {
            return Err(RollbackError::WrongPair {
                pair,
                version,
                holds: state.engine.pair(),
            });
        }
        let mut engine = Box::new(state.engine);
        engine.set_registry_version(version);
        match self.shards.get(&pair) {
            Some(shard) => {
                let (tx, rx) = tokio::sync::oneshot::channel();
                shard
                    .tx
                    .send(ShardMsg::Replace(engine, tx))
                    .await
                    .map_err(|_| RollbackError::ShardStopped(pair))?;
                rx.await.map_err(|_| RollbackError::ShardStopped(pair))?;
            }
            None => {
                let contest = self.contest_for(&engine, None, None);
                if !self.start_shard_with(*engine, contest) {
                    return Err(RollbackError::MaxPairs(pair));
                }
            }
        }
        tracing::warn!(pair = %pair, version, "model rolled back");
        let focus = Focus {
            pair,
            reason: Reason::Rollback,
            note: Some(format!("rollback to version {version}")),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.cut(Reason::Periodic, false, Some(focus), Some(tx)).await;
        let written = rx.await.map_err(|_| WriterError::Stopped)??;
        written
            .into_iter()
            .find(|m| m.pair == pair)
            .ok_or(RollbackError::NotWritten(pair))
    }

    /// Writes a final checkpoint (reason `shutdown`, every pair, so each pair's newest version holds the
    /// final stream position) and waits for it, if checkpoints are configured.
    pub async fn final_checkpoint(&mut self) {
        if self.checkpoints.is_none() {
            return;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.cut(Reason::Shutdown, true, None, Some(tx)).await;
        match tokio::time::timeout(std::time::Duration::from_secs(30), rx).await {
            Ok(Ok(Ok(metas))) => tracing::info!(versions = metas.len(), "shutdown checkpoint written"),
            Ok(Ok(Err(e))) => tracing::error!(error = %e, "shutdown checkpoint failed"),
            _ => tracing::error!("shutdown checkpoint did not complete within 30 s"),
        }
    }

    /// Closes every shard's queue and waits until each has drained it; returns the final engines.
    pub async fn close(mut self) -> Vec<Engine> {
        self.final_checkpoint().await;
        self.checkpoints = None;
        drop(self.shards);
        let mut engines = Vec::new();
        for j in self.joins {
            match j.await {
                Ok(e) => engines.push(e),
                Err(e) => tracing::error!(error = %e, "shard task failed"),
            }
        }
        engines
    }
}

async fn ack(acker: Option<Box<async_nats::jetstream::message::Acker>>) {
    if let Some(a) = acker
        && let Err(e) = a.ack().await
    {
        tracing::warn!(error = %e, "jetstream ack failed");
    }
}

/// Wall-clock now in µs since the epoch: the edge's arrival stamp (the core never reads a clock).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
