//! The consumer side of the service: routes each tick to its pair's shard (creating the shard on the
//! pair's first tick) and each factor to every shard.
//!
//! The router is the only place that sees subjects and headers; shards see payloads. Per-pair order is
//! kept because one router task forwards in arrival order into one queue per pair.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;

use super::checkpointer::{Checkpointer, Focus, Job, Marker, PartError, Reply, WriterError};
use super::cluster::PartitionCut;
use super::shard::{self, ShardContext, ShardHandle, ShardMsg, TickMsg};
use super::stats::Counters;
use crate::challenger::Contest;
use crate::checkpoint::{AppliedSeqs, PairState};
use crate::checkpoint::{Reason, VersionMeta};
use crate::contract::{Unrouted, UnroutedReason};
use crate::engine::Engine;
use crate::engine::EngineConfig;
use crate::pipeline::{FactorBook, PairSet};
use crate::tick::{Factor, Pair, parse_factor, parse_tick_detailed};

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
    /// Its counters and rolling accuracy, for the metrics.
    pub metrics: Arc<super::metrics::PairMetrics>,
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
    /// Challengers are off (`[challenger] enabled = false`, or a `[challenger.engine]` variant holds the
    /// place), or the pair has no running shard, so no contest can run a challenge.
    #[error("{pair}: cannot run a challenger: {why}")]
    NoContest {
        /// The pair.
        pair: Pair,
        /// Why.
        why: String,
    },
    /// The contest refused the version (another pair, a missing deciding horizon).
    #[error(transparent)]
    Contest(#[from] crate::challenger::ContestError),
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
        /// The operator who asked (`None`: the service itself).
        actor: Option<String>,
        /// Told the versions written once committed.
        reply: Option<Reply<Vec<VersionMeta>>>,
    },
    /// Replace a pair's engine with a stored version, and record that as a new version.
    Rollback {
        /// The pair.
        pair: Pair,
        /// The version to go back to.
        version: u64,
        /// The operator who asked.
        actor: String,
        /// The new version's note (default: "rollback to version N").
        note: Option<String>,
        /// Told the new version once committed.
        reply: tokio::sync::oneshot::Sender<Result<VersionMeta, RollbackError>>,
    },
    /// Run a stored version as the pair's challenger in the running contest.
    Challenge {
        /// The pair.
        pair: Pair,
        /// The version.
        version: u64,
        /// Told the version's metadata once the contest runs it.
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
    /// Whether a pair not served since start resumes from its newest stored version (`[checkpoint]
    /// restore`). A pair evicted during this run always resumes from its eviction's version.
    pub resume_unseen: bool,
}

/// Routes messages to shards.
pub struct Router {
    engine_cfg: EngineConfig,
    ctx: Arc<ShardContext>,
    registry: Registry,
    shards: PairSet<ShardHandle>,
    joins: BTreeMap<Pair, tokio::task::JoinHandle<Engine>>,
    /// Refusals of new pairs (`max_pairs` reached), logged at most once per [`LOG_EVERY`].
    refusals: LogLimiter,
    /// Junk on the subjects of pairs with no shard, logged at most once per [`LOG_EVERY`].
    not_started: LogLimiter,
    /// The latest factors, for shards started later (as replay gives them to new pairs).
    factors: FactorBook,
    queue: usize,
    stamp_arrival: bool,
    checkpoints: Option<CheckpointPlan>,
    /// JetStream: the stream sequences routed (applied once their shard processes them).
    applied: Option<AppliedSeqs>,
    /// JetStream after a restore: per pair, the sequences already in its restored state.
    skip: HashMap<Pair, AppliedSeqs>,
    /// Pairs evicted during this run and not back yet: they resume from their eviction's version even when
    /// `[checkpoint] restore = false` started the others fresh.
    evicted: HashSet<Pair>,
    /// Cluster mode: the partitions held and how far each one's consumer has been routed.
    partitions: Option<Partitions>,
}

/// Cluster mode's partitions held. Each is read in stream order (an ordered consumer), so every tick of the
/// partition at or below its position has been routed to its pair.
#[derive(Debug, Default)]
struct Partitions {
    count: u32,
    held: HashMap<u32, HeldPartition>,
}

/// One partition held: how far its consumer has routed, and what a cut records of it for the next owner.
#[derive(Debug, Default)]
struct HeldPartition {
    generation: u64,
    position: u64,
    /// Every pair of the partition served (or restored) under this ownership, evicted ones included.
    pairs: BTreeSet<Pair>,
    /// The factors as this partition's consumer has seen them: a pair first seen in the partition gets
    /// these, so its model is the same whichever instance reads the partition and however far the other
    /// partitions' consumers are.
    factors: FactorBook,
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
            joins: BTreeMap::new(),
            refusals: LogLimiter::default(),
            not_started: LogLimiter::default(),
            factors: FactorBook::default(),
            queue,
            stamp_arrival,
            checkpoints: None,
            applied: None,
            skip: HashMap::new(),
            evicted: HashSet::new(),
            partitions: None,
        }
    }

    /// Cluster mode: pairs are cut into `count` partitions, each checkpointed with its own stream position.
    pub fn set_partitions(&mut self, count: u32) {
        self.partitions = Some(Partitions {
            count,
            held: HashMap::new(),
        });
    }

    /// Cluster mode: partition `p` is now held (ownership `generation`), with the pairs and factors its
    /// index recorded; [`Router::advance_partition`] then sets where its consumer starts from.
    pub fn open_partition(&mut self, p: u32, generation: u64, pairs: Vec<Pair>, factors: Vec<Factor>) {
        if let Some(parts) = &mut self.partitions {
            let mut book = FactorBook::default();
            for f in factors {
                book.record(Arc::new(f));
            }
            let held = HeldPartition {
                generation,
                position: 0,
                pairs: pairs.into_iter().collect(),
                factors: book,
            };
            parts.held.insert(p, held);
        }
    }

    /// Cluster mode: partition `p` is read again from its start, so its factors are rebuilt from its own
    /// messages (the index's, as of a later position, would give a pair first seen early factors that came
    /// after its first tick).
    pub fn forget_partition_factors(&mut self, p: u32) {
        if let Some(held) = self.partitions.as_mut().and_then(|parts| parts.held.get_mut(&p)) {
            held.factors = FactorBook::default();
        }
    }

    /// Cluster mode: partition `p`'s consumer routed the message at `seq`.
    pub fn advance_partition(&mut self, p: u32, seq: u64) {
        if let Some(held) = self.partitions.as_mut().and_then(|parts| parts.held.get_mut(&p)) {
            held.position = held.position.max(seq);
        }
    }

    /// Cluster mode: partition `p` is no longer held. Its pairs' shards are closed: they finish what is
    /// already in their queues (a checkpoint marker in there is answered, so the cut completes; what they
    /// publish carries the same `Nats-Msg-Id` the new owner will use), and the shared store refuses their
    /// checkpoints since the partition is no longer held.
    pub fn drop_partition(&mut self, p: u32) {
        let Some(parts) = &mut self.partitions else {
            return;
        };
        parts.held.remove(&p);
        let count = parts.count;
        let pairs: Vec<Pair> = self
            .shards
            .iter()
            .map(|(pair, _)| *pair)
            .filter(|pair| super::cluster::partition_of(pair.as_str(), count) == p)
            .collect();
        for pair in pairs {
            self.shards.remove(&pair);
            self.skip.remove(&pair);
            self.evicted.remove(&pair);
            if let Ok(mut reg) = self.registry.write() {
                reg.remove(&pair);
            }
            if let Some(join) = self.joins.remove(&pair) {
                tokio::spawn(async move {
                    let _ = join.await;
                });
            }
        }
        self.evicted
            .retain(|pair| super::cluster::partition_of(pair.as_str(), count) != p);
    }

    /// Cluster mode: the partition `pair` belongs to, if this router holds it.
    fn held_of(&self, pair: Pair) -> Option<&HeldPartition> {
        let parts = self.partitions.as_ref()?;
        parts
            .held
            .get(&super::cluster::partition_of(pair.as_str(), parts.count))
    }

    /// The factors a pair starting now is given: in cluster mode its partition's, else the router's.
    fn factors_for(&self, pair: Pair) -> Vec<Arc<Factor>> {
        match (&self.partitions, self.held_of(pair)) {
            (Some(_), Some(held)) => held.factors.latest().cloned().collect(),
            (Some(_), None) => Vec::new(),
            (None, _) => self.factors.latest().cloned().collect(),
        }
    }

    /// Cluster mode: the partitions held as a cut sees them now.
    fn partition_cuts(&self) -> Vec<PartitionCut> {
        let Some(parts) = &self.partitions else {
            return Vec::new();
        };
        let mut cuts: Vec<PartitionCut> = parts
            .held
            .iter()
            .map(|(&partition, h)| PartitionCut {
                partition,
                generation: h.generation,
                position: h.position,
                pairs: h.pairs.iter().copied().collect(),
                factors: h.factors.to_vec(),
            })
            .collect();
        cuts.sort_by_key(|c| c.partition);
        cuts
    }

    /// The number of the last checkpoint cut started.
    pub fn last_cut(&self) -> u64 {
        self.checkpoints.as_ref().map_or(0, |p| p.last_id)
    }

    /// Cluster mode: the stream position a pair's checkpoint covers: its partition's position, or the one
    /// its restored state already covers if that is further.
    fn pair_position(&self, pair: Pair) -> Option<AppliedSeqs> {
        self.partitions.as_ref()?;
        let routed = self.held_of(pair).map_or(0, |h| h.position);
        let restored = self.skip.get(&pair).map_or(0, AppliedSeqs::floor);
        Some(AppliedSeqs::with_floor(routed.max(restored)))
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
        self.start_shard_with(engine, contest, false)
    }

    /// Cluster mode: starts a pair taken over from the shared store, its ticks up to `floor` in `state`.
    /// The version is adopted into the local registry under its number (`meta`, when the previous owner
    /// recorded it), so forecasts name it and the next version continues from it; with a registry
    /// challenger configured and no contest in the checkpoint, the newest older version this instance's
    /// registry holds runs as the challenger, as at a restart.
    pub async fn restore_shared(
        &mut self,
        state: PairState,
        meta: Option<VersionMeta>,
        record: Vec<u8>,
        floor: u64,
    ) -> bool {
        let pair = state.engine.pair();
        let mut engine = state.engine;
        let cfg = &self.ctx.challenger;
        let want_previous = cfg.enabled && cfg.engine.is_none() && state.contest.is_none();
        let mut previous = None;
        if let (Some(meta), Some(plan)) = (meta, self.checkpoints.as_ref()) {
            let version = meta.version;
            engine.set_registry_version(version);
            let adopted = plan
                .writer
                .run(move |store| {
                    store.adopt(&meta, &record)?;
                    if !want_previous {
                        return Ok(None);
                    }
                    let older = store.list(Some(pair))?.into_iter().rev().find(|v| v.version < version);
                    Ok(older.and_then(|v| store.get(pair, v.version).ok().map(|s| (s.engine, v.version))))
                })
                .await;
            match adopted {
                Ok(p) => previous = p,
                Err(e) => tracing::error!(pair = %pair, version, error = %e,
                    "cluster: the shared version could not be added to the local registry; forecasts still name it"),
            }
        }
        self.restore(engine, Some(AppliedSeqs::with_floor(floor)), state.contest, previous)
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
            self.ack(d.acker).await;
            return;
        };
        if !self.shards.contains(&pair) {
            // A shard starts only with a valid tick: junk on many subjects must not take real pairs' places.
            if let Err(e) = parse_tick_detailed(&payload, Some(pair)) {
                Counters::inc(&self.ctx.counters.pairs_not_started);
                if let Some(suppressed) = self.not_started.allow(d.received) {
                    tracing::warn!(
                        subject,
                        reason = e.reason.name(),
                        similar_not_logged = suppressed,
                        "message for a pair with no shard is not a valid tick: no shard started, quarantined on _unrouted"
                    );
                }
                self.quarantine_unrouted(
                    subject,
                    UnroutedReason::InvalidTick,
                    Some(format!("{}: {}", e.reason.name(), e.detail)),
                    &payload,
                )
                .await;
                self.ack(d.acker).await;
                return;
            }
            if !self.start_pair(pair).await {
                Counters::inc(&self.ctx.counters.pairs_refused);
                if let Some(suppressed) = self.refusals.allow(d.received) {
                    tracing::warn!(pair = %pair, max_pairs = self.shards.max(), refused_not_logged = suppressed,
                        "new pair refused: serve.max_pairs pairs are served (idle ones are evicted after serve.idle_evict_secs)");
                }
                self.quarantine_unrouted(subject, UnroutedReason::TooManyPairs, None, &payload)
                    .await;
                self.ack(d.acker).await;
                return;
            }
        }
        if self.skipped(pair, d.stream_seq) {
            Counters::inc(&self.ctx.counters.redeliveries_skipped);
            self.ack(d.acker).await;
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
        if let Some(shard) = self.shards.get_mut(&pair) {
            shard.last_routed = d.received;
            if shard.tx.send(msg).await.is_err() {
                tracing::error!(pair = %pair, "shard stopped; tick not applied (it stays unacknowledged)");
            }
        }
        if let Some(plan) = &mut self.checkpoints {
            plan.since += 1;
            if plan.since >= plan.every_ticks {
                self.cut(Reason::Periodic, None, None).await;
            }
        }
    }

    /// Routes one factor message to every shard (and remembers it for shards started later). A factor
    /// whose `name` is not its subject's last token is refused: the subject is what permissions and
    /// streams are set on, so a message on `fx.factors.TIIE28` must not change another factor.
    pub async fn on_factor(&mut self, subject: &str, payload: &[u8], seq: Option<u64>) {
        self.on_factor_in(subject, payload, seq, None).await;
    }

    /// [`Router::on_factor`] for the pairs of one partition only (cluster mode: each partition's consumer
    /// delivers every factor, in order with that partition's ticks).
    pub async fn on_factor_in(&mut self, subject: &str, payload: &[u8], seq: Option<u64>, partition: Option<u32>) {
        let count = self.partitions.as_ref().map_or(1, |p| p.count);
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
                if let Some(held) = self
                    .partitions
                    .as_mut()
                    .zip(partition)
                    .and_then(|(parts, p)| parts.held.get_mut(&p))
                {
                    held.factors.record(f.clone());
                }
                for (pair, shard) in self.shards.iter() {
                    let elsewhere = partition.is_some_and(|p| super::cluster::partition_of(pair.as_str(), count) != p);
                    if !elsewhere && !self.skipped(*pair, seq) {
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

    /// Starts a shard for a pair seen for the first time since start or since its eviction: from its newest
    /// stored version when checkpoints are on and it has one (for a pair not evicted in this run, only with
    /// `[checkpoint] restore`), else fresh. False when `max_pairs` is reached.
    async fn start_pair(&mut self, pair: Pair) -> bool {
        if self.shards.is_full() {
            return false;
        }
        let evicted = self.evicted.remove(&pair);
        let Some(plan) = self.checkpoints.as_ref() else {
            return self.start_shard(pair);
        };
        if !plan.resume_unseen && !evicted {
            // `restore = false`: fresh, as at start; the stored versions stay in the registry.
            return self.start_shard(pair);
        }
        let writer = plan.writer.clone();
        match writer.ask(|reply| Job::LoadLatest { pair, reply }).await {
            Ok(Some((meta, state))) if state.engine.pair() == pair => {
                let mut engine = state.engine;
                engine.set_registry_version(meta.version);
                tracing::info!(pair = %pair, version = meta.version, reason = meta.reason.name(), ticks = meta.ticks,
                    "pair back: shard resumed from its newest checkpoint");
                let contest = self.contest_for(&engine, state.contest, None);
                if !self.start_shard_with(engine, contest, false) {
                    return false;
                }
                // Factors published while the pair was away.
                if let Some(shard) = self.shards.get(&pair) {
                    for f in self.factors_for(pair) {
                        let _ = shard.tx.send(ShardMsg::Factor(f)).await;
                    }
                }
                true
            }
            Ok(_) => {
                // No version to resume from (none, or retrained ones only): fresh, with the version marked
                // offline (`cambio models challenge`) as its challenger when there is one.
                let cfg = &self.ctx.challenger;
                let registry_challenger = cfg.enabled && cfg.engine.is_none();
                let marked = writer
                    .ask(|reply| {
                        Job::With(Box::new(move |store| {
                            let marks = store.challenges().unwrap_or_default();
                            let _ = reply.send(Ok(super::marked_challenger(store, &marks, pair, registry_challenger)));
                        }))
                    })
                    .await
                    .ok()
                    .flatten();
                self.start_shard_from(pair, marked)
            }
            Err(e) => {
                tracing::error!(pair = %pair, error = %e, "cannot read the pair's checkpoints: it starts fresh");
                self.start_shard(pair)
            }
        }
    }

    /// Stops the shards of pairs that received no tick for `idle`, freeing their places under `max_pairs`.
    /// With checkpoints each is checkpointed first (reason `evicted`), and resumes from that version when its
    /// ticks come back; without, it starts fresh then.
    pub async fn evict_idle(&mut self, now: Instant, idle: Duration) {
        let idle_pairs: Vec<Pair> = self
            .shards
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_routed) >= idle)
            .map(|(p, _)| *p)
            .collect();
        for pair in idle_pairs {
            if self.checkpoints.is_some() {
                let focus = Focus {
                    pair,
                    reason: Reason::Evicted,
                    note: Some(format!("idle for {} s", idle.as_secs_f64())),
                    actor: None,
                    parent: None,
                };
                // The marker goes into the shard's queue before it is closed: its state is written first.
                self.cut(Reason::Periodic, Some(focus), None).await;
            }
            self.shards.remove(&pair);
            if self.checkpoints.is_some() {
                self.evicted.insert(pair);
            }
            if let Ok(mut reg) = self.registry.write() {
                reg.remove(&pair);
            }
            if let Some(join) = self.joins.remove(&pair) {
                // The engine is dropped once the shard has drained its queue.
                tokio::spawn(async move {
                    let _ = join.await;
                });
            }
            Counters::inc(&self.ctx.counters.pairs_evicted);
            tracing::info!(pair = %pair, idle_secs = idle.as_secs_f64(), checkpointed = self.checkpoints.is_some(),
                "idle pair evicted: shard stopped");
        }
    }

    fn start_shard(&mut self, pair: Pair) -> bool {
        self.start_shard_from(pair, None)
    }

    /// [`Router::start_shard`], with `previous` (a registry version and its number) as the challenger.
    fn start_shard_from(&mut self, pair: Pair, previous: Option<(Engine, u64)>) -> bool {
        if self.shards.is_full() {
            return false;
        }
        match Engine::new(pair, &self.engine_cfg) {
            Ok(e) => {
                tracing::info!(pair = %pair, "new pair: shard started");
                let contest = self.contest_for(&e, None, previous);
                self.start_shard_with(e, contest, false)
            }
            Err(e) => {
                // The configuration was validated at start; this would be a broken invariant.
                tracing::error!(pair = %pair, error = %e, "cannot build engine");
                false
            }
        }
    }

    /// Starts `engine`'s shard; `changed` when the engine differs from its pair's current version in the
    /// registry (a rollback of a pair not live here), so the next cut records it.
    fn start_shard_with(&mut self, engine: Engine, contest: Option<Contest>, changed: bool) -> bool {
        let pair = engine.pair();
        if self.shards.contains(&pair) || self.shards.is_full() {
            return false;
        }
        // A restored engine already holds the factors it had seen.
        let factors: Vec<_> = if engine.ticks() == 0 {
            self.factors_for(pair)
        } else {
            Vec::new()
        };
        if let Some(parts) = &mut self.partitions
            && let Some(held) = parts
                .held
                .get_mut(&super::cluster::partition_of(pair.as_str(), parts.count))
        {
            held.pairs.insert(pair);
        }
        let (handle, join) = shard::spawn(engine, contest, self.ctx.clone(), self.queue, &factors, changed);
        if let Ok(mut reg) = self.registry.write() {
            reg.insert(
                pair,
                Arc::new(PairView {
                    snapshot: handle.snapshot.clone(),
                    latency: handle.latency.clone(),
                    metrics: handle.metrics.clone(),
                }),
            );
        }
        self.joins.insert(pair, join);
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
        let sent = self.ctx.outbox.publish(self.ctx.client.publish(out, body)).await;
        if let Err(super::outbox::Undelivered::Failed(_)) = sent {
            Counters::inc(&self.ctx.counters.publish_errors);
        }
    }

    /// Acknowledges a JetStream delivery the router settles itself (through the outbox).
    async fn ack(&self, acker: Option<Box<async_nats::jetstream::message::Acker>>) {
        if let Some(a) = acker
            && let Err(super::outbox::Undelivered::Failed(e)) = self.ctx.outbox.ack(a.ack()).await
        {
            tracing::warn!(error = %e, "jetstream ack failed");
        }
    }

    /// The outbox everything published goes through.
    pub fn outbox(&self) -> &super::outbox::Outbox {
        &self.ctx.outbox
    }

    /// Starts a checkpoint cut: every shard encodes its engine after the messages already in its queue.
    /// Periodic cuts are skipped while two are still being written (the disk is behind; the next one
    /// will include everything).
    pub async fn cut(&mut self, reason: Reason, focus: Option<Focus>, reply: Option<Reply<Vec<VersionMeta>>>) {
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
        let partitions = self.partition_cuts();
        let Some(plan) = &mut self.checkpoints else {
            return;
        };
        plan.last_id += 1;
        let id = plan.last_id;
        let job = Job::Cut {
            id,
            expected: self.shards.len(),
            applied: self.applied.clone(),
            factors: self.factors.to_vec(),
            partitions,
            reply,
        };
        if !plan.writer.send(job) {
            tracing::error!("checkpoint writer stopped; no checkpoint");
            return;
        }
        let marker = Arc::new(Marker {
            id,
            reason,
            focus,
            applied: self.applied.clone(),
            writer: plan.writer.clone(),
        });
        let plan_writer = plan.writer.clone();
        for (&pair, shard) in self.shards.iter() {
            // Cluster mode: each pair's checkpoint carries its own stream position.
            let marker = match self.pair_position(pair) {
                Some(applied) => Arc::new(Marker {
                    id,
                    reason: marker.reason,
                    focus: marker.focus.clone(),
                    applied: Some(applied),
                    writer: plan_writer.clone(),
                }),
                None => marker.clone(),
            };
            if shard.tx.send(ShardMsg::Checkpoint(marker)).await.is_err() {
                // The shard is gone: answer for it so the cut is not left waiting (and fails: its state
                // is not in it).
                let _ = plan_writer.send(Job::Part {
                    id,
                    part: Err(PartError::ShardStopped(pair)),
                });
            }
        }
    }

    /// A periodic checkpoint, if ticks arrived since the last one or the last one failed.
    pub async fn periodic_cut(&mut self) {
        if self
            .checkpoints
            .as_ref()
            .is_some_and(|p| p.since > 0 || p.writer.last_failed())
        {
            self.cut(Reason::Periodic, None, None).await;
        }
    }

    /// Handles a control request.
    pub async fn on_control(&mut self, c: Control) {
        match c {
            Control::Checkpoint {
                pair,
                reason,
                note,
                actor,
                reply,
            } => {
                let focus = pair.map(|pair| Focus {
                    pair,
                    reason,
                    note,
                    actor,
                    parent: None,
                });
                // The reason is the focus pair's: the other pairs' versions in the same cut are periodic
                // (a promotion of one pair is not a promotion of the others, in the registry and its audit).
                let cut_reason = if focus.is_some() { Reason::Periodic } else { reason };
                self.cut(cut_reason, focus, reply).await;
            }
            Control::Rollback {
                pair,
                version,
                actor,
                note,
                reply,
            } => {
                let r = self.rollback(pair, version, actor, note).await;
                let _ = reply.send(r);
            }
            Control::Challenge { pair, version, reply } => {
                let r = self.challenge(pair, version).await;
                let _ = reply.send(r);
            }
        }
    }

    /// Loads `version` of `pair` and hands it to the pair's shard as the contest's challenger.
    async fn challenge(&mut self, pair: Pair, version: u64) -> Result<VersionMeta, RollbackError> {
        let cfg = &self.ctx.challenger;
        if !cfg.enabled || cfg.engine.is_some() {
            let why = if cfg.engine.is_some() {
                "a [challenger.engine] variant is configured as the challenger"
            } else {
                "set [challenger] enabled = true"
            };
            return Err(RollbackError::NoContest { pair, why: why.into() });
        }
        let writer = match &self.checkpoints {
            Some(p) => p.writer.clone(),
            None => return Err(WriterError::NotConfigured.into()),
        };
        let (meta, state) = writer.ask(|reply| Job::Load { pair, version, reply }).await?;
        if state.engine.pair() != pair {
            return Err(RollbackError::WrongPair {
                pair,
                version,
                holds: state.engine.pair(),
            });
        }
        let Some(shard) = self.shards.get(&pair) else {
            return Err(RollbackError::NoContest {
                pair,
                why: "no tick of the pair received yet".into(),
            });
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        shard
            .tx
            .send(ShardMsg::Challenge(Box::new(state.engine), version, tx))
            .await
            .map_err(|_| RollbackError::ShardStopped(pair))?;
        rx.await.map_err(|_| RollbackError::ShardStopped(pair))??;
        Ok(meta)
    }

    async fn rollback(
        &mut self,
        pair: Pair,
        version: u64,
        actor: String,
        note: Option<String>,
    ) -> Result<VersionMeta, RollbackError> {
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
                if !self.start_shard_with(*engine, contest, true) {
                    return Err(RollbackError::MaxPairs(pair));
                }
            }
        }
        tracing::warn!(pair = %pair, version, "model rolled back");
        let focus = Focus {
            pair,
            reason: Reason::Rollback,
            note: Some(note.unwrap_or_else(|| format!("rollback to version {version}"))),
            actor: Some(actor),
            parent: Some(version),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.cut(Reason::Periodic, Some(focus), Some(tx)).await;
        let written = rx.await.map_err(|_| WriterError::Stopped)??;
        if let Some(m) = written.into_iter().find(|m| m.pair == pair) {
            return Ok(m);
        }
        // The state equals the pair's current version (a rollback to the model already live, at the
        // same point of the stream): no copy is written, and that version is the answer.
        writer
            .ask(|reply| Job::List { pair, reply })
            .await?
            .pop()
            .ok_or(RollbackError::NotWritten(pair))
    }

    /// Writes a final checkpoint (reason `shutdown`: a version of every pair that changed since its last
    /// one, and the cut with the final stream position) and waits for it, if checkpoints are configured.
    pub async fn final_checkpoint(&mut self) {
        if self.checkpoints.is_none() {
            return;
        }
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.cut(Reason::Shutdown, None, Some(tx)).await;
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
        for j in self.joins.into_values() {
            match j.await {
                Ok(e) => engines.push(e),
                Err(e) => tracing::error!(error = %e, "shard task failed"),
            }
        }
        engines
    }
}

/// Wall-clock now in µs since the epoch: the edge's arrival stamp (the core never reads a clock).
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Least time between two log lines of one kind of refusal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// Rate limit for a log line that a flood of messages could repeat: at most one per [`LOG_EVERY`], each
/// saying how many were not logged since the last.
#[derive(Debug, Default)]
struct LogLimiter {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimiter {
    /// `Some(suppressed)` when a line may be logged now, `None` (and one more suppressed) otherwise.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.saturating_duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_once_per_period_with_the_count_not_logged() {
        let mut l = LogLimiter::default();
        let t0 = Instant::now();
        assert_eq!(l.allow(t0), Some(0));
        for i in 1..=100 {
            assert_eq!(l.allow(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(l.allow(t0 + LOG_EVERY), Some(100));
        assert_eq!(l.allow(t0 + LOG_EVERY + Duration::from_secs(1)), None);
    }
}
