//! The consumer side of the service: routes each tick to its pair's shard (creating the shard on the
//! pair's first tick) and each factor to every shard.
//!
//! The router is the only place that sees subjects and headers; shards see payloads. Per-pair order is
//! kept because one router task forwards in arrival order into one queue per pair.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::json;

use super::shard::{self, ShardContext, ShardHandle, ShardMsg, TickMsg};
use super::stats::Counters;
use crate::config::EngineConfig;
use crate::engine::Engine;
use crate::tick::{Factor, Pair, parse_factor};

/// Header set by `cambio replay --nats`: the tick is historical, so it is not stamped with a wall-clock
/// arrival time (its timestamp would look hours or years late).
pub const REPLAY_HEADER: &str = "Cambio-Replay";

/// Most distinct factors remembered for shards created later (names come from the network: bounded).
const MAX_FACTORS: usize = 64;

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
    /// A core-NATS delivery received now: the wall clock is its arrival.
    pub fn core_now() -> Delivery {
        Delivery {
            arrival_us: Some(now_us()),
            received: Instant::now(),
            stream_seq: None,
            acker: None,
        }
    }
}

/// Routes messages to shards.
pub struct Router {
    engine_cfg: EngineConfig,
    ctx: Arc<ShardContext>,
    registry: Registry,
    shards: HashMap<Pair, ShardHandle>,
    joins: Vec<tokio::task::JoinHandle<Engine>>,
    factors: BTreeMap<String, Arc<Factor>>,
    queue: usize,
    max_pairs: usize,
    stamp_arrival: bool,
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
            shards: HashMap::new(),
            joins: Vec::new(),
            factors: BTreeMap::new(),
            queue,
            max_pairs,
            stamp_arrival,
        }
    }

    /// Routes one message from a tick subject.
    pub async fn on_tick(&mut self, subject: &str, headers: Option<&HeaderMap>, payload: Bytes, d: Delivery) {
        let token = self.ctx.subjects.token("ticks", subject);
        let Some(pair) = token.and_then(Pair::parse) else {
            Counters::inc(&self.ctx.counters.bad_subjects);
            self.quarantine_unrouted(subject, "bad_subject", &payload).await;
            ack(d.acker).await;
            return;
        };
        if !self.shards.contains_key(&pair) && !self.start_shard(pair) {
            Counters::inc(&self.ctx.counters.pairs_refused);
            self.quarantine_unrouted(subject, "too_many_pairs", &payload).await;
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
    }

    /// Routes one factor message to every shard (and remembers it for shards started later).
    pub async fn on_factor(&mut self, subject: &str, payload: &[u8]) {
        let counters = self.ctx.counters.clone();
        match parse_factor(payload) {
            Ok(f) => {
                Counters::inc(&counters.factors);
                let f = Arc::new(f);
                if self.factors.len() < MAX_FACTORS || self.factors.contains_key(&f.name) {
                    self.factors.insert(f.name.clone(), f.clone());
                }
                for shard in self.shards.values() {
                    let _ = shard.tx.send(ShardMsg::Factor(f.clone())).await;
                }
            }
            Err(e) => {
                Counters::inc(&counters.bad_factors);
                tracing::warn!(subject, error = %e, "factor refused");
                let reason = format!("bad_factor: {e}");
                self.quarantine_unrouted(subject, &reason, payload).await;
            }
        }
    }

    fn start_shard(&mut self, pair: Pair) -> bool {
        if self.shards.len() >= self.max_pairs {
            return false;
        }
        let engine = match Engine::new(pair, &self.engine_cfg) {
            Ok(e) => e,
            Err(e) => {
                // The configuration was validated at start; this would be a broken invariant.
                tracing::error!(pair = %pair, error = %e, "cannot build engine");
                return false;
            }
        };
        let factors: Vec<_> = self.factors.values().cloned().collect();
        let (handle, join) = shard::spawn(engine, self.ctx.clone(), self.queue, &factors);
        if let Ok(mut reg) = self.registry.write() {
            reg.insert(
                pair,
                Arc::new(PairView {
                    snapshot: handle.snapshot.clone(),
                    latency: handle.latency.clone(),
                }),
            );
        }
        tracing::info!(pair = %pair, "new pair: shard started");
        self.shards.insert(pair, handle);
        self.joins.push(join);
        true
    }

    /// Messages that cannot reach any pair's engine still leave a record on `<prefix>.quarantine._unrouted`.
    async fn quarantine_unrouted(&self, subject: &str, reason: &str, payload: &[u8]) {
        let record = json!({
            "type": "quarantined",
            "subject": subject,
            "reason": reason,
            "raw": shard::raw_text(payload, self.ctx.max_raw_bytes),
        });
        let out = format!("{}.quarantine._unrouted", self.ctx.subjects.prefix());
        let body = Bytes::from(serde_json::to_vec(&record).unwrap_or_default());
        if self.ctx.client.publish(out, body).await.is_err() {
            Counters::inc(&self.ctx.counters.publish_errors);
        }
    }

    /// Closes every shard's queue and waits until each has drained it; returns the final engines.
    pub async fn close(self) -> Vec<Engine> {
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
