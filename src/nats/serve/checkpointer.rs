//! The checkpoint writer: one thread that owns the redb store, so commits (and their fsync) never run on
//! the tick path or on the async executor.
//!
//! A checkpoint is a *cut* (see [`crate::checkpoint::store`]): the router sends [`Job::Cut`] saying how
//! many shards will answer, then puts a marker in every shard's queue; each shard encodes its engine when
//! the marker comes out of its queue (so every shard is cut after the same ticks) and sends
//! [`Job::Part`]. When every part of a cut has arrived the writer commits them in one transaction. Cuts
//! commit in order; a cut with a failed part is abandoned whole (the previous cut stays the restore point).
//!
//! Operators' requests (`fx.models.<PAIR>`: list, keep, load a version) are jobs too, so the store has a
//! single user and requests are answered between commits.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::cluster::{PartitionCut, SharedRecord};
use super::stats::Counters;
use crate::checkpoint::format::FormatError;
use crate::checkpoint::{AppliedSeqs, CheckpointStore, NewCheckpoint, PairState, StoreError, VersionMeta};
use crate::tick::{Factor, Pair};

/// A reply carrying a result, or why the writer could not give it, to the requester.
pub type Reply<T> = oneshot::Sender<Result<T, WriterError>>;

/// Why the checkpoint writer could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    /// Checkpoints are not configured (no `[checkpoint] path`), so there is no writer to ask.
    #[error("checkpoints are not configured ([checkpoint] path)")]
    NotConfigured,
    /// The writer thread has stopped (the service is shutting down).
    #[error("the checkpoint writer has stopped")]
    Stopped,
    /// The store refused: no such version, a damaged record, a failed write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A shard could not give its part of the cut, so the whole cut was abandoned.
    #[error("a shard could not encode its state: {0}")]
    Part(#[source] PartError),
}

/// Why a shard's part of a cut is missing.
#[derive(Debug, thiserror::Error)]
pub enum PartError {
    /// The shard's publications so far were not confirmed by the server, so the cut would record ticks
    /// whose forecasts may be lost.
    #[error("{pair}: publications not flushed: {message}")]
    NotFlushed {
        /// The shard's pair.
        pair: Pair,
        /// What the flush reported (for people; never inspected).
        message: String,
    },
    /// The pair's shard had stopped before the cut reached it.
    #[error("{0}: shard stopped")]
    ShardStopped(Pair),
    /// The engine's state could not be encoded.
    #[error("{pair}: {source}")]
    Encode {
        /// The shard's pair.
        pair: Pair,
        /// The encoder's error.
        source: FormatError,
    },
}

/// Work for the writer thread.
pub enum Job {
    /// A cut begins: `expected` parts will follow.
    Cut {
        /// Cut number, increasing.
        id: u64,
        /// Parts to wait for (one per shard).
        expected: usize,
        /// Stream sequences included in the cut.
        applied: Option<AppliedSeqs>,
        /// Factors the router remembers.
        factors: Vec<Factor>,
        /// Cluster mode: the partitions held, as the cut saw them (for the shared store's indexes).
        partitions: Vec<PartitionCut>,
        /// Told the new versions once committed.
        reply: Option<Reply<Vec<VersionMeta>>>,
    },
    /// One shard's part: a new version, `None` when the pair did not change since its last one, or the
    /// reason it could not be encoded.
    Part {
        /// The cut.
        id: u64,
        /// The pair's checkpoint (boxed: the metadata with its lineage is large, and jobs are moved
        /// through the queue).
        part: Result<Option<Box<NewCheckpoint>>, PartError>,
    },
    /// The versions of a pair.
    List {
        /// The pair.
        pair: Pair,
        /// Where to answer.
        reply: Reply<Vec<VersionMeta>>,
    },
    /// Marks a version to keep or not.
    Keep {
        /// The pair.
        pair: Pair,
        /// The version.
        version: u64,
        /// Keep it whatever the retention.
        keep: bool,
        /// Who asked (for the audit log).
        actor: String,
        /// Where to answer.
        reply: Reply<VersionMeta>,
    },
    /// Reads a version's state (for a rollback).
    Load {
        /// The pair.
        pair: Pair,
        /// The version.
        version: u64,
        /// Where to answer.
        reply: Reply<(VersionMeta, PairState)>,
    },
    /// Reads a pair's newest readable version it may resume from, if it has one (a pair coming back after
    /// eviction; retrained versions are not resumed from).
    LoadLatest {
        /// The pair.
        pair: Pair,
        /// Where to answer.
        reply: Reply<Option<(VersionMeta, PairState)>>,
    },
    /// Any other registry request, run on the store between commits: the audit log, approvals,
    /// challenge marks. The function sends its own answer.
    With(Box<dyn FnOnce(&CheckpointStore) + Send>),
    /// Finish: commit what is complete and end the thread.
    Stop,
}

struct Pending {
    expected: usize,
    parts: Vec<NewCheckpoint>,
    received: usize,
    failed: Option<PartError>,
    applied: Option<AppliedSeqs>,
    factors: Vec<Factor>,
    partitions: Vec<PartitionCut>,
    reply: Option<Reply<Vec<VersionMeta>>>,
    started: Instant,
}

/// A handle on the writer thread (cheap to clone: every shard holds one).
#[derive(Clone)]
pub struct Checkpointer {
    tx: mpsc::Sender<Job>,
    progress: Arc<Progress>,
}

/// How far the writer got: the last cut done (committed or abandoned) and the last one committed.
#[derive(Debug, Default)]
struct Progress {
    done: AtomicU64,
    ok: AtomicU64,
}

impl std::fmt::Debug for Checkpointer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpointer")
            .field("committed", &self.committed())
            .field("last_failed", &self.last_failed())
            .finish()
    }
}

impl Checkpointer {
    /// Starts the writer thread; it ends when every handle is dropped, after finishing its queue.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start(
        store: CheckpointStore,
        counters: Arc<Counters>,
    ) -> std::io::Result<(Checkpointer, std::thread::JoinHandle<()>)> {
        Self::start_shared(store, counters, None)
    }

    /// [`Checkpointer::start`], and in cluster mode every committed cut's records (and an empty one for a
    /// failed cut, so waiters move on) also go to `shared`, for the shared checkpoint store.
    ///
    /// # Errors
    /// The thread could not be spawned.
    pub fn start_shared(
        store: CheckpointStore,
        counters: Arc<Counters>,
        shared: Option<Shared>,
    ) -> std::io::Result<(Checkpointer, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let c = progress.clone();
        let join = std::thread::Builder::new()
            .name("cambio-checkpoint".into())
            .spawn(move || writer(&store, &rx, &c, &counters, shared.as_ref()))?;
        Ok((Checkpointer { tx, progress }, join))
    }

    /// Queues a job; false when the writer has stopped.
    pub fn send(&self, job: Job) -> bool {
        self.tx.send(job).is_ok()
    }

    /// The last cut committed (or abandoned): cuts before it are done.
    pub fn committed(&self) -> u64 {
        self.progress.done.load(Ordering::Acquire)
    }

    /// Whether the last cut done was abandoned (a periodic checkpoint is then taken again even without new
    /// ticks: what the failed one should have written is still only in memory).
    pub fn last_failed(&self) -> bool {
        self.progress.ok.load(Ordering::Acquire) < self.committed()
    }

    /// Runs `f` on the store in the writer thread and waits for its result.
    ///
    /// # Errors
    /// The store's error, or [`WriterError::Stopped`].
    pub async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CheckpointStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, WriterError> {
        self.ask(|reply| {
            Job::With(Box::new(move |store| {
                let _ = reply.send(f(store).map_err(WriterError::Store));
            }))
        })
        .await
    }

    /// Asks the writer and waits for the answer.
    ///
    /// # Errors
    /// The writer's error, or [`WriterError::Stopped`].
    pub async fn ask<T>(&self, job: impl FnOnce(Reply<T>) -> Job) -> Result<T, WriterError> {
        let (tx, rx) = oneshot::channel();
        if !self.send(job(tx)) {
            return Err(WriterError::Stopped);
        }
        rx.await.map_err(|_| WriterError::Stopped)?
    }
}

/// The committed versions of a cut paired with their records and their partition's ownership generation.
fn shared_records(
    metas: &[VersionMeta],
    mut records: BTreeMap<Pair, Vec<u8>>,
    partitions: &[PartitionCut],
) -> Vec<SharedRecord> {
    metas
        .iter()
        .filter_map(|m| {
            let record = records.remove(&m.pair)?;
            let generation = partitions
                .iter()
                .find(|c| c.pairs.contains(&m.pair))
                .map(|c| c.generation)?;
            Some(SharedRecord {
                meta: m.clone(),
                record,
                generation,
            })
        })
        .collect()
}

/// Where cluster mode's shared checkpoint uploader takes the committed cuts.
pub type Shared = tokio::sync::mpsc::UnboundedSender<super::cluster::SharedCut>;

fn writer(
    store: &CheckpointStore,
    rx: &mpsc::Receiver<Job>,
    progress: &Progress,
    counters: &Counters,
    shared: Option<&Shared>,
) {
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut carry = Carry::new();
    while let Ok(job) = rx.recv() {
        match job {
            Job::Cut {
                id,
                expected,
                applied,
                factors,
                partitions,
                reply,
            } => {
                pending.insert(
                    id,
                    Pending {
                        expected,
                        parts: Vec::new(),
                        received: 0,
                        failed: None,
                        applied,
                        factors,
                        partitions,
                        reply,
                        started: Instant::now(),
                    },
                );
            }
            Job::Part { id, part } => match pending.get_mut(&id) {
                Some(p) => {
                    p.received += 1;
                    match part {
                        Ok(Some(c)) => p.parts.push(*c),
                        Ok(None) => {}
                        Err(e) => p.failed = Some(e),
                    }
                }
                None => tracing::error!(cut = id, "checkpoint part for an unknown cut; ignored"),
            },
            Job::List { pair, reply } => {
                let _ = reply.send(store.list(Some(pair)).map_err(WriterError::Store));
            }
            Job::Keep {
                pair,
                version,
                keep,
                actor,
                reply,
            } => {
                let r = store.mark_keep(pair, version, keep, &actor, super::router::now_us());
                let _ = reply.send(r.map_err(WriterError::Store));
            }
            Job::With(f) => f(store),
            Job::Stop => {
                commit_ready(store, &mut pending, &mut carry, progress, counters, shared);
                break;
            }
            Job::LoadLatest { pair, reply } => {
                let _ = reply.send(store.latest_restorable(pair).map_err(WriterError::Store));
            }
            Job::Load { pair, version, reply } => {
                let r = store
                    .get(pair, version)
                    .and_then(|s| Ok((store.meta(pair, version)?, s)))
                    .map_err(WriterError::Store);
                let _ = reply.send(r);
            }
        }
        commit_ready(store, &mut pending, &mut carry, progress, counters, shared);
    }
    if !pending.is_empty() {
        tracing::warn!(cuts = pending.len(), "checkpoint cuts left incomplete at shutdown");
    }
}

/// Parts of failed cuts not yet committed, by pair (see [`commit`]).
type Carry = BTreeMap<Pair, NewCheckpoint>;

/// Commits complete cuts, oldest first.
fn commit_ready(
    store: &CheckpointStore,
    pending: &mut BTreeMap<u64, Pending>,
    carry: &mut Carry,
    progress: &Progress,
    counters: &Counters,
    shared: Option<&Shared>,
) {
    while let Some(entry) = pending.first_entry() {
        if entry.get().received < entry.get().expected {
            break;
        }
        let (id, p) = entry.remove_entry();
        if commit(store, id, p, carry, counters, shared) {
            progress.ok.store(id, Ordering::Release);
        }
        progress.done.store(id, Ordering::Release);
    }
}

/// Commits cut `id`, or abandons it whole when a part failed.
///
/// The parts of an abandoned cut are carried into the next one: a shard answers a cut with "unchanged"
/// when nothing happened since its last answer, and that answer is gone with the failed cut, so without
/// the carry the next cut would name the pair's older version as current beside stream positions past
/// the ticks only the lost part held. A pair that answers the next cut with a new part drops its carry.
fn commit(
    store: &CheckpointStore,
    id: u64,
    mut p: Pending,
    carry: &mut Carry,
    counters: &Counters,
    shared: Option<&Shared>,
) -> bool {
    let result = match p.failed.take() {
        Some(e) => {
            for part in std::mem::take(&mut p.parts) {
                carry.insert(part.meta.pair, part);
            }
            Err(WriterError::Part(e))
        }
        None => {
            for part in &p.parts {
                carry.remove(&part.meta.pair);
            }
            p.parts.extend(std::mem::take(carry).into_values());
            Ok(())
        }
    };
    let records: BTreeMap<Pair, Vec<u8>> = match (shared, &result) {
        (Some(_), Ok(())) => p.parts.iter().map(|c| (c.meta.pair, c.record.clone())).collect(),
        _ => BTreeMap::new(),
    };
    let result = result.and_then(|()| {
        let parts = p.parts.clone();
        store
            .put_cut(p.parts, p.applied, p.factors, super::router::now_us())
            .map_err(|e| {
                for part in parts {
                    carry.entry(part.meta.pair).or_insert(part);
                }
                WriterError::Store(e)
            })
    });
    if let Some(tx) = shared {
        // Only what the local registry committed is shared: the new versions, with their numbers (a part
        // equal to its pair's current version wrote none; that version was shared when it was written).
        let cut = match &result {
            Ok(metas) => super::cluster::SharedCut {
                id,
                records: shared_records(metas, records, &p.partitions),
                partitions: p.partitions,
            },
            Err(_) => super::cluster::SharedCut {
                id,
                records: Vec::new(),
                partitions: Vec::new(),
            },
        };
        let _ = tx.send(cut);
    }
    match &result {
        Ok(metas) => {
            Counters::inc(&counters.checkpoints);
            let took = p.started.elapsed();
            counters
                .checkpoint_duration
                .record_us(u64::try_from(took.as_micros()).unwrap_or(u64::MAX));
            let now_ms = u64::try_from(super::router::now_us() / 1000).unwrap_or(0);
            counters.checkpoint_last_ok_ms.store(now_ms, Ordering::Relaxed);
            let ms = took.as_secs_f64() * 1e3;
            for m in metas {
                tracing::info!(pair = %m.pair, version = m.version, reason = m.reason.name(), ticks = m.ticks,
                    stream_seq = m.stream_seq, bytes = m.bytes, "checkpoint written");
            }
            tracing::debug!(cut = id, versions = metas.len(), ms, "checkpoint cut committed");
        }
        Err(e) => {
            Counters::inc(&counters.checkpoint_errors);
            tracing::error!(cut = id, error = %e, "checkpoint failed; the previous one stays the restore point");
        }
    }
    let ok = result.is_ok();
    if let Some(reply) = p.reply {
        let _ = reply.send(result);
    }
    ok
}

/// A pair a cut is about, with its own reason (a rollback, a drift adaptation, a manual request).
#[derive(Debug, Clone)]
pub struct Focus {
    /// The pair.
    pub pair: Pair,
    /// Its version's reason.
    pub reason: crate::checkpoint::Reason,
    /// Its version's note.
    pub note: Option<String>,
    /// Who asked for it (an operator's name), recorded as the version's actor; `None`: the service.
    pub actor: Option<String>,
    /// The version its state descends from, when not the pair's current one (a rollback's source).
    pub parent: Option<u64>,
}

/// What a shard knows of its state's lineage: the stream segment applied since its last version, and the
/// version its live model descends from when an event replaced it (a promoted registry challenger).
#[derive(Debug, Clone, Copy)]
pub struct ShardLineage<'a> {
    /// Ticks applied since the last version.
    pub segment: &'a crate::checkpoint::Segment,
    /// The parent, when not the pair's current version.
    pub parent: Option<u64>,
}

/// The marker a cut puts in every shard's queue.
#[derive(Debug)]
pub struct Marker {
    /// The cut.
    pub id: u64,
    /// Reason of the versions written (besides the focus pair's).
    pub reason: crate::checkpoint::Reason,
    /// The pair this cut is about (its version, when it changed, carries the focus's reason and note).
    pub focus: Option<Focus>,
    /// Stream sequences routed before the marker.
    pub applied: Option<AppliedSeqs>,
    /// Where the part goes.
    pub writer: Checkpointer,
}

impl Marker {
    /// Encodes the shard's `engine` and `contest` for this cut if it `changed` since its last version and
    /// sends the part; returns whether a version was written (the shard is then clean). A pair that did
    /// not change gets no new version whatever the cut's reason (a shutdown, a second drift adaptation
    /// with no tick in between): the cut names its last version as current, so the registry holds no
    /// copies of one state. The version's reason is the operator's rollback when this cut records one,
    /// else the shard's latest `event` since its last version, else the cut's. `flushed` says whether the
    /// shard's publications so far reached the server; if not, the cut fails.
    pub fn answer(
        &self,
        (engine, contest): (&crate::engine::Engine, Option<&crate::challenger::Contest>),
        changed: bool,
        event: Option<crate::checkpoint::Reason>,
        flushed: Result<(), String>,
        lineage: ShardLineage<'_>,
    ) -> bool {
        let pair = engine.pair();
        let focus = self.focus.as_ref().filter(|f| f.pair == pair);
        // An operator's rollback carries a note (the version it came from); events of the shard do not.
        let (reason, note, by) = match (focus, event) {
            (Some(f), _) if f.note.is_some() => (f.reason, f.note.clone(), Some(f)),
            (_, Some(event)) => (event, None, None),
            // The shard's own request for an event an earlier cut already recorded (a periodic cut came
            // first): the event has its version, this one is the cut's.
            (Some(f), None) if f.actor.is_none() && f.note.is_none() => (self.reason, None, None),
            (Some(f), None) => (f.reason, f.note.clone(), Some(f)),
            (None, None) => (self.reason, None, None),
        };
        let actor = by.and_then(|f| f.actor.clone()).unwrap_or_else(|| "serve".into());
        let parent = by.and_then(|f| f.parent).or(lineage.parent);
        let shutdown = self.reason == crate::checkpoint::Reason::Shutdown;
        let part = if let Err(message) = flushed.as_ref().map_err(Clone::clone)
            && !shutdown
        {
            Err(PartError::NotFlushed { pair, message })
        } else if changed {
            if let Err(message) = &flushed {
                // The state is what the engine learned; losing it would lose more than the outputs NATS did
                // not confirm (counted in the shutdown's summary line).
                tracing::warn!(pair = %pair, error = %message,
                    "shutdown checkpoint written although NATS did not confirm the outputs before it");
            }
            let state = crate::checkpoint::format::PairStateRef {
                engine,
                applied: self.applied.as_ref(),
                contest,
            };
            NewCheckpoint::from_ref(state, reason, super::router::now_us())
                .map(|mut c| {
                    c.meta.note = note;
                    if let Some(l) = &mut c.meta.lineage {
                        let (dataset, window) = lineage.segment.describe();
                        l.actor = Some(actor);
                        l.parent = parent;
                        l.dataset = Some(dataset);
                        l.window = window;
                    }
                    Some(Box::new(c))
                })
                .map_err(|source| PartError::Encode { pair, source })
        } else {
            Ok(None)
        };
        let wrote = matches!(part, Ok(Some(_)));
        if !self.writer.send(Job::Part { id: self.id, part }) {
            tracing::error!(pair = %pair, "checkpoint writer stopped; part dropped");
            return false;
        }
        wrote
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{Reason, Retention};
    use crate::engine::{Engine, EngineConfig};

    #[test]
    fn an_unchanged_pair_gets_no_version_whatever_the_cut_is_about() {
        let path = std::env::temp_dir().join(format!("cambio-marker-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = CheckpointStore::open(&path, Retention::default()).unwrap();
        let (writer, join) = Checkpointer::start(store, Arc::new(Counters::default())).unwrap();
        let pair = Pair::parse("USDMXN").unwrap();
        let engine = Engine::new(pair, &EngineConfig::default()).unwrap();
        let marker = |id, reason| Marker {
            id,
            reason,
            focus: Some(Focus {
                pair,
                reason,
                note: None,
                actor: None,
                parent: None,
            }),
            applied: None,
            writer: writer.clone(),
        };
        let segment = crate::checkpoint::Segment::default();
        let lin = ShardLineage {
            segment: &segment,
            parent: None,
        };
        // A burst of drift adaptations with no tick in between, then a shutdown: one version, the first.
        let adapted = Some(Reason::DriftAdaptation);
        assert!(marker(1, Reason::DriftAdaptation).answer((&engine, None), true, adapted, Ok(()), lin));
        assert!(!marker(2, Reason::DriftAdaptation).answer((&engine, None), false, None, Ok(()), lin));
        assert!(!marker(3, Reason::DriftAdaptation).answer((&engine, None), false, None, Ok(()), lin));
        assert!(!marker(4, Reason::Shutdown).answer((&engine, None), false, None, Ok(()), lin));
        writer.send(Job::Stop);
        drop(writer);
        join.join().unwrap();
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_part_of_a_failed_cut_is_committed_with_the_next_one() {
        let path = std::env::temp_dir().join(format!("cambio-carry-{}.redb", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let store = CheckpointStore::open(&path, Retention::default()).unwrap();
        let (writer, join) = Checkpointer::start(store, Arc::new(Counters::default())).unwrap();
        let (a, b) = (Pair::parse("USDMXN").unwrap(), Pair::parse("EURUSD").unwrap());
        let part = |pair, ticks| {
            let mut engine = Engine::new(pair, &EngineConfig::default()).unwrap();
            let mut out = Vec::new();
            for t in crate::testkit::synth_ticks(pair, ticks) {
                engine.on_tick(&t, &mut out);
            }
            let state = crate::checkpoint::format::PairStateRef {
                engine: &engine,
                applied: None,
                contest: None,
            };
            Box::new(NewCheckpoint::from_ref(state, Reason::Periodic, 1).unwrap())
        };
        let cut = |id, parts: Vec<Result<Option<Box<NewCheckpoint>>, PartError>>| {
            let (tx, rx) = oneshot::channel();
            writer.send(Job::Cut {
                id,
                expected: parts.len(),
                applied: None,
                factors: Vec::new(),
                partitions: Vec::new(),
                reply: Some(tx),
            });
            for part in parts {
                writer.send(Job::Part { id, part });
            }
            rx.blocking_recv().unwrap()
        };
        // Cut 1: USDMXN's part is good, EURUSD's shard had stopped: the cut is abandoned.
        assert!(cut(1, vec![Ok(Some(part(a, 50))), Err(PartError::ShardStopped(b))]).is_err());
        // Cut 2: USDMXN saw no tick since its answer to cut 1 ("unchanged"): its part of cut 1 is the one.
        let written = cut(2, vec![Ok(None), Ok(Some(part(b, 40)))]).unwrap();
        let pairs: Vec<Pair> = written.iter().map(|m| m.pair).collect();
        assert_eq!(pairs.len(), 2, "{pairs:?}");
        assert!(pairs.contains(&a) && pairs.contains(&b));
        // Cut 3: nothing carried any more.
        assert!(cut(3, vec![Ok(None), Ok(None)]).unwrap().is_empty());
        writer.send(Job::Stop);
        drop(writer);
        join.join().unwrap();
        let store = CheckpointStore::open_existing(&path, Retention::default()).unwrap();
        let heads = store.cut().unwrap().unwrap().heads;
        assert_eq!(heads.get("USDMXN"), Some(&1), "{heads:?}");
        let _ = std::fs::remove_file(&path);
    }
}
