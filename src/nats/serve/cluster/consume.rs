//! Cluster mode's consumer loop: the leases kept, partitions taken over and released, and the messages
//! of the partitions held routed to their shards. Runs in place of the single durable consumer's loop.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use super::{Cluster, PartitionMessage, Step};
use crate::checkpoint::{AppliedSeqs, Reason};
use crate::nats::Subjects;
use crate::nats::serve::router::{Delivery, Router};
use crate::nats::serve::{AbortOnDrop, Loops};

/// Longest wait for a checkpoint (local commit, then shared write) before a release gives up on it.
const CHECKPOINT_WAIT: Duration = Duration::from_secs(15);

/// A partition held: the lease's revision, the ownership's generation and the consumer's task.
struct Held {
    revision: u64,
    generation: u64,
    _task: AbortOnDrop,
}

/// What the loop holds besides the router.
pub(in crate::nats::serve) struct Partitions<'a> {
    cluster: &'a Cluster,
    subjects: &'a Subjects,
    held: BTreeMap<u32, Held>,
    generation: u64,
    tx: tokio::sync::mpsc::Sender<PartitionMessage>,
    uploaded: tokio::sync::watch::Receiver<u64>,
    /// Last warning about a tick in a partition that the hash does not give it (once per run).
    warned_hash: bool,
}

impl<'a> Partitions<'a> {
    /// The loop's side of the cluster: nothing held yet.
    pub(in crate::nats::serve) fn new(
        cluster: &'a Cluster,
        subjects: &'a Subjects,
        tx: tokio::sync::mpsc::Sender<PartitionMessage>,
        uploaded: tokio::sync::watch::Receiver<u64>,
    ) -> Partitions<'a> {
        Partitions {
            cluster,
            subjects,
            held: BTreeMap::new(),
            generation: 0,
            tx,
            uploaded,
            warned_hash: false,
        }
    }

    /// One round of the leases: heartbeat, renew what is held (dropping what cannot be renewed), read the
    /// bucket, adopt leases still in this instance's name, claim and release as the balance says.
    async fn maintain(&mut self, router: &mut Router) {
        let step = self.step();
        if let Ok(Err(e)) = tokio::time::timeout(step, self.cluster.heartbeat()).await {
            tracing::warn!(error = %e, "cluster: heartbeat not written");
        }
        self.renew_held(router).await;
        let (view, revisions) = match tokio::time::timeout(step, self.cluster.view()).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cluster: cannot read the leases");
                return;
            }
            Err(_) => {
                tracing::warn!("cluster: reading the leases timed out");
                return;
            }
        };
        // Leases in this instance's name that it does not hold (a renewal failed while the server was
        // away, or a restart with the same id): taken again at the revision read, and restored as any
        // takeover.
        let adopt: Vec<(u32, u64)> = view
            .owners
            .iter()
            .filter(|(p, o)| o.as_str() == self.cluster.me && !self.held.contains_key(p))
            .filter_map(|(p, _)| revisions.get(p).map(|r| (*p, *r)))
            .collect();
        for (p, r) in adopt {
            if let Ok(Ok(r)) = tokio::time::timeout(step, self.cluster.renew(p, r)).await {
                self.take_over(router, p, r).await;
            }
        }
        for s in super::balance::plan(&self.cluster.me, &view) {
            match s {
                Step::Claim(p) => {
                    if let Ok(Ok(r)) = tokio::time::timeout(step, self.cluster.claim(p)).await {
                        self.take_over(router, p, r).await;
                    }
                }
                Step::Release(p) if self.held.contains_key(&p) => {
                    tracing::info!(
                        partition = p,
                        "cluster: releasing a partition above this instance's share"
                    );
                    // The other leases are not renewed meanwhile: wait for the checkpoint well inside
                    // their TTL (without it the next owner resumes from the previous one).
                    let wait = self.cluster.cfg.lease_ttl / 2;
                    self.release(router, &[p], wait).await;
                }
                Step::Release(_) => {}
            }
        }
    }

    /// How long one lease operation may take.
    fn step(&self) -> Duration {
        (self.cluster.cfg.lease_ttl / 3).max(Duration::from_millis(200))
    }

    /// Renews every lease held, dropping the partitions whose renewal fails.
    async fn renew_held(&mut self, router: &mut Router) {
        let step = self.step();
        let partitions: Vec<u32> = self.held.keys().copied().collect();
        for p in partitions {
            let Some(revision) = self.held.get(&p).map(|h| h.revision) else {
                continue;
            };
            match tokio::time::timeout(step, self.cluster.renew(p, revision)).await {
                Ok(Ok(r)) => {
                    if let Some(h) = self.held.get_mut(&p) {
                        h.revision = r;
                    }
                }
                Ok(Err(e)) => {
                    tracing::warn!(partition = p, error = %e, "cluster: lease lost; stopped consuming the partition");
                    self.drop_partition(router, p);
                }
                Err(_) => {
                    tracing::warn!(
                        partition = p,
                        "cluster: lease renewal timed out; stopped consuming the partition"
                    );
                    self.drop_partition(router, p);
                }
            }
        }
    }

    /// Takes over partition `p` (its lease won at `revision`): restores each of its pairs from the shared
    /// store and reads the partition from just after its index's position (see [`super::shared`]).
    async fn take_over(&mut self, router: &mut Router, p: u32, revision: u64) {
        let started = Instant::now();
        self.generation += 1;
        let generation = self.generation;
        self.cluster.ownership.set(p, Some(generation));
        // The leases (this one and those held) are renewed while the store is read: on a slow cluster the
        // read may outlast the TTL.
        let cluster = self.cluster;
        let load = tokio::time::timeout(CHECKPOINT_WAIT, cluster.load_partition(p));
        tokio::pin!(load);
        let every = round(&cluster.cfg);
        let mut renewals = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut revision = revision;
        let loaded = loop {
            tokio::select! {
                r = &mut load => break r,
                _ = renewals.tick() => {
                    self.renew_held(router).await;
                    match tokio::time::timeout(self.step(), cluster.renew(p, revision)).await {
                        Ok(Ok(r)) => revision = r,
                        _ => {
                            tracing::warn!(partition = p, "cluster: lease lost while reading its checkpoints");
                            self.cluster.ownership.set(p, None);
                            return;
                        }
                    }
                }
            }
        };
        let loaded = match loaded {
            Ok(Ok(l)) => l,
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "timed out".into(),
                };
                // Without its checkpoints the partition cannot resume where it was: let it go.
                tracing::error!(partition = p, error = %why, "cluster: cannot read the shared checkpoints; lease released");
                self.cluster.ownership.set(p, None);
                let _ = self.cluster.release(p, revision).await;
                return;
            }
        };
        let indexed = loaded.index.as_ref().map(|i| i.position);
        let (index_pairs, factors) = loaded
            .index
            .map(|i| {
                (
                    i.pairs.iter().filter_map(|s| crate::tick::Pair::parse(s)).collect(),
                    i.factors,
                )
            })
            .unwrap_or_default();
        router.open_partition(p, generation, index_pairs, factors);
        // With an index every pair holds the partition's ticks up to its position; without one (never
        // indexed) each pair's own position counts and the partition is read from the lowest.
        let mut position = indexed;
        let mut from_start = false;
        let mut pairs = 0usize;
        for (pair, read) in loaded.pairs {
            let restorable = read
                .and_then(|s| {
                    s.ok_or_else(|| "the partition index names it, but it has no shared checkpoint".to_string())
                })
                .and_then(|s| match crate::checkpoint::format::decode(&s.record) {
                    Ok(state) if state.engine.pair() == pair => Ok((state, s)),
                    Ok(state) => Err(format!("its shared checkpoint holds {}", state.engine.pair())),
                    Err(e) => Err(format!("unreadable shared checkpoint: {e}")),
                });
            let (state, shared) = match restorable {
                Ok(r) => r,
                Err(why) => {
                    tracing::error!(pair = %pair, partition = p, error = %why,
                        "cluster: pair not restored; it starts fresh and the partition is read from its start");
                    from_start = true;
                    continue;
                }
            };
            let own = state.applied.as_ref().map_or(0, AppliedSeqs::floor);
            let floor = own.max(indexed.unwrap_or(0));
            if indexed.is_none() {
                position = Some(position.map_or(own, |f: u64| f.min(own)));
            }
            if router.restore_shared(state, shared.meta, shared.record, floor).await {
                pairs += 1;
            } else {
                tracing::error!(pair = %pair, "cluster: restored pair not started (max_pairs, or already served)");
            }
        }
        // A pair the index names but that could not be restored starts fresh and is read from the start of
        // the partition (the others skip what they hold): slower, but no tick of it is lost.
        let position = if from_start {
            router.forget_partition_factors(p);
            0
        } else {
            position.unwrap_or(0)
        };
        router.advance_partition(p, position);
        let task = super::spawn_partition(
            self.cluster.js().clone(),
            self.cluster.cfg.stream.clone(),
            self.subjects.prefix().to_string(),
            p,
            generation,
            position + 1,
            self.tx.clone(),
        );
        self.held.insert(
            p,
            Held {
                revision,
                generation,
                _task: AbortOnDrop(task),
            },
        );
        tracing::info!(
            partition = p,
            pairs,
            resume_from = position + 1,
            indexed = indexed.is_some(),
            ms = started.elapsed().as_secs_f64() * 1e3,
            "cluster: partition taken over"
        );
    }

    /// Stops reading partition `p` at once (its lease is gone).
    fn drop_partition(&mut self, router: &mut Router, p: u32) {
        self.cluster.ownership.set(p, None);
        self.held.remove(&p);
        router.drop_partition(p);
    }

    /// Hands partitions over: a checkpoint of every pair written locally and to the shared store, then
    /// the leases deleted, so another instance takes them at its next round from that checkpoint.
    async fn release(&mut self, router: &mut Router, partitions: &[u32], wait: Duration) {
        let deadline = tokio::time::Instant::now() + wait;
        let (tx, rx) = tokio::sync::oneshot::channel();
        router.cut(Reason::Periodic, None, Some(tx)).await;
        let id = router.last_cut();
        let committed = matches!(tokio::time::timeout_at(deadline, rx).await, Ok(Ok(Ok(_))));
        let mut uploaded = self.uploaded.clone();
        let shared = committed
            && matches!(
                tokio::time::timeout_at(deadline, uploaded.wait_for(|&u| u >= id)).await,
                Ok(Ok(_))
            );
        if !shared {
            tracing::error!(
                cut = id,
                "cluster: the handover checkpoint was not written; the next owner resumes from the previous one"
            );
        }
        for &p in partitions {
            if let Some(h) = self.held.get(&p)
                && let Err(e) = self.cluster.release(p, h.revision).await
            {
                tracing::warn!(partition = p, error = %e, "cluster: lease not deleted; it expires after the lease TTL");
            }
            self.drop_partition(router, p);
        }
        tracing::info!(partitions = partitions.len(), "cluster: partitions handed over");
    }

    /// Routes one message of a partition held (of the current ownership; older ones are dropped).
    async fn route(&mut self, router: &mut Router, pm: PartitionMessage) {
        if self
            .held
            .get(&pm.partition)
            .is_none_or(|h| h.generation != pm.generation)
        {
            return;
        }
        let received = Instant::now();
        let (seq, published_us) = match pm.message.info() {
            Ok(i) => (
                i.stream_sequence,
                Some(i64::try_from(i.published.unix_timestamp_nanos() / 1000).unwrap_or(0)),
            ),
            Err(_) => return,
        };
        router.advance_partition(pm.partition, seq);
        let (msg, _no_ack) = pm.message.split();
        if self.subjects.token("factors", &msg.subject).is_some() {
            router
                .on_factor_in(&msg.subject, &msg.payload, Some(seq), Some(pm.partition))
                .await;
            return;
        }
        // `<prefix>.ticks.<p>.<PAIR>` back to `<prefix>.ticks.<PAIR>`: the pair is the last token.
        let pair = msg.subject.rsplit('.').next().unwrap_or_default();
        let subject = format!("{}.ticks.{pair}", self.subjects.prefix());
        if !self.warned_hash && super::partition_of(pair, self.cluster.cfg.partitions) != pm.partition {
            self.warned_hash = true;
            tracing::error!(
                pair,
                partition = pm.partition,
                "cluster: the stream put this pair in another partition than cambio computes; queries may not reach its owner"
            );
        }
        let d = Delivery {
            arrival_us: published_us,
            received,
            stream_seq: Some(seq),
            acker: None,
        };
        router.on_tick(&subject, msg.headers.as_ref(), msg.payload, d).await;
    }
}

/// The period of the lease rounds: a tenth of the TTL (renewals well inside it, and a partition released,
/// or a dead instance's once expired, claimed within a tenth of it).
fn round(cfg: &super::ClusterConfig) -> Duration {
    (cfg.lease_ttl / 10).max(Duration::from_millis(60))
}

/// Runs cluster mode until shutdown, then hands every partition held over.
pub(in crate::nats::serve) async fn consume(
    mut parts: Partitions<'_>,
    mut rx: tokio::sync::mpsc::Receiver<PartitionMessage>,
    router: &mut Router,
    loops: Loops<'_>,
    shutdown: impl Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut leases = tokio::time::interval(round(&parts.cluster.cfg));
    leases.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(c) = loops.control.recv() => router.on_control(c).await,
            _ = leases.tick() => parts.maintain(router).await,
            _ = loops.cuts.tick() => router.periodic_cut().await,
            _ = loops.sweep.timer.tick() => loops.sweep.run(router).await,
            Some(pm) = rx.recv() => parts.route(router, pm).await,
        }
    }
    if let Err(e) = parts.cluster.leave().await {
        tracing::warn!(error = %e, "cluster: heartbeat not deleted; the others see this instance leave after the lease TTL");
    }
    let held: Vec<u32> = parts.held.keys().copied().collect();
    if !held.is_empty() {
        tracing::info!(partitions = held.len(), "shutting down: handing the partitions over");
        parts.release(router, &held, CHECKPOINT_WAIT).await;
    }
}
