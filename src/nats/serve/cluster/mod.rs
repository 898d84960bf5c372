//! Cluster mode (`[cluster] enabled = true`): several `cambio serve` processes share the pairs of one
//! JetStream deployment, take over a dead instance's pairs, and hand theirs over on SIGTERM.
//!
//! - **Partitions.** The pair space is cut into `P` partitions: a stream `FX_PART` (`[cluster] stream`)
//!   sources the ticks stream and rewrites `fx.ticks.<PAIR>` into `fx.ticks.<p>.<PAIR>` with nats-server's
//!   own `{{partition(P,1)}}` transform, so each partition is one filter subject. A separate stream, not a
//!   transform on the ticks stream itself, because the archive, `cambio tail`, replay to NATS and the
//!   single-instance mode all read `fx.ticks.<PAIR>` there and must keep doing so. cambio computes the same
//!   FNV-1a hash ([`balance::partition_of`]) to know which pairs a partition holds (queries, restores).
//! - **Leases.** A partition is owned by the instance whose id is the value of `partition.<p>` in the
//!   key-value bucket `cambio_leases`, whose `max_age` is the lease TTL: claimed with an atomic create,
//!   renewed with an update at the revision held, lost (consumption stops at once) when a renewal fails.
//!   Instances write `instance.<id>` beside them as a heartbeat, so each knows how many share the work and
//!   aims at `ceil(P / N)` partitions ([`balance`]).
//! - **Shared checkpoints.** Every checkpoint version written to the local registry is also put in the
//!   object store `cambio_checkpoints`, named by the pair, with the same bytes and the version's metadata,
//!   followed by each partition's index ([`shared`]), after checking that the partition's lease is still
//!   held (an instance that lost it must not overwrite the new owner's objects).
//! - **Takeover.** Claiming a partition restores each pair its index names (adopting the version into the
//!   local registry under its number) and reads the partition from just after the index's position; ticks
//!   at or below a pair's own position are skipped. Each partition is read by an ordered consumer:
//!   JetStream delivers the partition in stream order with no gap (it recreates the consumer itself after
//!   a lost message or a server restart), which is what "skip at or below the pair's position" needs to be
//!   exact. Ticks are not acknowledged: exactly-once rests on the shared checkpoint, not on a consumer's
//!   acknowledgements, since the next owner resumes from that checkpoint whatever was acknowledged.
//!   Forecasts keep their `Nats-Msg-Id` (`<PAIR>-<sequence>`), so the ticks read again after a takeover
//!   publish duplicates that a de-duplicating stream drops.

pub mod balance;
pub mod consume;
pub mod shared;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use crate::tick::Pair;

pub use balance::{Step, View, partition_of};
pub use shared::{PartitionCut, SharedCut, SharedRecord, spawn_uploader};

/// The key-value bucket of the leases and heartbeats.
pub const LEASES_BUCKET: &str = "cambio_leases";

/// The object store of the shared checkpoints.
pub const CHECKPOINTS_BUCKET: &str = "cambio_checkpoints";

/// The `[cluster]` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Share the pairs with the other instances of the same configuration (needs `[serve] mode =
    /// "jetstream"` and a `[checkpoint] path`).
    pub enabled: bool,
    /// Partitions of the pair space (the unit of ownership). The same on every instance.
    pub partitions: u32,
    /// How long a lease lives without renewal: a dead instance's partitions are taken over after it.
    #[serde(with = "duration_text")]
    pub lease_ttl: Duration,
    /// This instance's id in the leases (default: host name and process id).
    pub instance: Option<String>,
    /// The partitioned stream, sourced from `[serve.jetstream] stream`.
    pub stream: String,
    /// Replicas of the partitioned stream and of the buckets (default: the cluster's size, at most 3).
    pub replicas: Option<usize>,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            enabled: false,
            partitions: 8,
            lease_ttl: Duration::from_secs(3),
            instance: None,
            stream: "FX_PART".into(),
            replicas: None,
        }
    }
}

impl ClusterConfig {
    /// Checks the table.
    ///
    /// # Errors
    /// A message for people naming the setting.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=4096).contains(&self.partitions) {
            return Err(format!("cluster.partitions = {}: between 1 and 4096", self.partitions));
        }
        if self.lease_ttl < Duration::from_millis(600) {
            return Err("cluster.lease_ttl: at least 600ms".into());
        }
        if let Some(id) = &self.instance
            && (id.is_empty() || !id.chars().all(key_char))
        {
            return Err(format!("cluster.instance `{id}`: letters, digits, `-` and `_` only"));
        }
        if let Some(r) = self.replicas
            && !(1..=5).contains(&r)
        {
            return Err(format!("cluster.replicas = {r}: between 1 and 5"));
        }
        if self.stream.is_empty() || !self.stream.chars().all(key_char) {
            return Err(format!(
                "cluster.stream `{}`: letters, digits, `-` and `_` only",
                self.stream
            ));
        }
        Ok(())
    }

    /// This instance's id: the configured one, else `<host>-<pid>` (characters a key cannot hold become `_`).
    pub fn instance_id(&self) -> String {
        if let Some(id) = &self.instance {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "cambio".into());
        let host: String = host.trim().chars().map(|c| if key_char(c) { c } else { '_' }).collect();
        format!("{host}-{}", std::process::id())
    }
}

fn key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_'
}

/// `"3s"`, `"500ms"` in the file; a [`Duration`] in memory.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text)
            .map_err(|e| serde::de::Error::custom(format!("`{text}`: {e} (e.g. \"3s\", \"500ms\")")))
    }
}

/// Why cluster mode could not start or do its work.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The partitioned stream, the lease bucket or the checkpoint store could not be created or read.
    #[error("cluster: {what}: {message}")]
    Setup {
        /// Which of them.
        what: String,
        /// The server's or client's error.
        message: String,
    },
    /// The partitioned stream exists with another partition count (or none): refused, since pairs would
    /// be read from partitions this instance does not compute.
    #[error(
        "cluster: stream {stream} partitions ticks as `{found}`, this configuration as `{expected}`: give \
         [cluster] partitions the value the other instances use (changing it: docs/scaling.md)"
    )]
    PartitionsDiffer {
        /// The stream.
        stream: String,
        /// The transform this configuration needs.
        expected: String,
        /// The stream's transform.
        found: String,
    },
    /// This instance's heartbeat key could not be written or deleted.
    #[error("cluster: heartbeat of instance {instance}: {message}")]
    Heartbeat {
        /// This instance's id.
        instance: String,
        /// The error.
        message: String,
    },
    /// A lease operation failed (the partition is then treated as not held).
    #[error("cluster: lease of partition {partition}: {message}")]
    Lease {
        /// The partition.
        partition: u32,
        /// The error.
        message: String,
    },
    /// A shared checkpoint could not be read or written.
    #[error("cluster: shared checkpoint of {pair}: {message}")]
    Shared {
        /// The object's name.
        pair: String,
        /// The error.
        message: String,
    },
}

fn setup(what: &str, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Setup {
        what: what.into(),
        message: e.to_string(),
    }
}

/// The partitions this instance holds, each with the generation of its ownership, shared with the
/// request-reply side (only the owner answers) and the shared-store uploader (only the ownership that
/// produced a version may write it).
#[derive(Debug, Clone)]
pub struct Ownership {
    partitions: u32,
    held: Arc<RwLock<BTreeMap<u32, u64>>>,
}

impl Ownership {
    /// No partition held yet.
    pub fn new(partitions: u32) -> Ownership {
        Ownership {
            partitions,
            held: Arc::default(),
        }
    }

    /// Whether this instance owns `pair`'s partition.
    pub fn owns(&self, pair: Pair) -> bool {
        self.holds(partition_of(pair.as_str(), self.partitions))
    }

    /// Whether this instance holds partition `p`.
    pub fn holds(&self, p: u32) -> bool {
        self.generation(p).is_some()
    }

    /// The generation of this instance's ownership of `p`, if it holds it.
    pub fn generation(&self, p: u32) -> Option<u64> {
        self.held.read().ok().and_then(|h| h.get(&p).copied())
    }

    /// Records that `p` is held in ownership `generation` (`None`: not held).
    fn set(&self, p: u32, generation: Option<u64>) {
        if let Ok(mut h) = self.held.write() {
            match generation {
                Some(g) => h.insert(p, g),
                None => h.remove(&p),
            };
        }
    }

    /// The partitions held now.
    pub fn held(&self) -> BTreeSet<u32> {
        self.held
            .read()
            .map(|h| h.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Number of partitions.
    pub fn partitions(&self) -> u32 {
        self.partitions
    }
}

/// The cluster's JetStream resources, opened once at start.
#[derive(Clone)]
pub struct Cluster {
    /// This instance's id.
    pub me: String,
    /// The settings.
    pub cfg: ClusterConfig,
    js: jetstream::Context,
    leases: kv::Store,
    /// The stream under the lease bucket (its subject list names the instances).
    leases_stream: jetstream::stream::Stream,
    objects: object_store::ObjectStore,
    /// What this instance holds.
    pub ownership: Ownership,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster").field("me", &self.me).finish()
    }
}

/// The replicas to ask for: the configured number, else the number of servers the one we are connected
/// to advertises (a single server advertises none), at most 3.
fn replicas(client: &async_nats::Client, cfg: &ClusterConfig) -> usize {
    cfg.replicas
        .unwrap_or_else(|| client.server_info().connect_urls.len().clamp(1, 3))
}

impl Cluster {
    /// Opens (creating when missing) the partitioned stream, the lease bucket and the checkpoint store.
    ///
    /// # Errors
    /// [`ClusterError::Setup`] when one of them cannot be created or read.
    pub async fn open(
        client: &async_nats::Client,
        cfg: &ClusterConfig,
        source_stream: &str,
        prefix: &str,
    ) -> Result<Cluster, ClusterError> {
        let js = jetstream::new(client.clone());
        let r = replicas(client, cfg);
        let p = cfg.partitions;
        let destination = format!("{prefix}.ticks.{{{{partition({p},1)}}}}.{{{{wildcard(1)}}}}");
        if let Ok(existing) = js.get_stream(&cfg.stream).await {
            // Another partition count would put pairs where this instance does not look for them.
            let found: Vec<String> = existing
                .cached_info()
                .config
                .sources
                .iter()
                .flatten()
                .flat_map(|s| s.subject_transforms.iter())
                .filter(|t| t.source == format!("{prefix}.ticks.*"))
                .map(|t| t.destination.clone())
                .collect();
            if found.first() != Some(&destination) {
                return Err(ClusterError::PartitionsDiffer {
                    stream: cfg.stream.clone(),
                    expected: destination,
                    found: found
                        .first()
                        .cloned()
                        .unwrap_or_else(|| "no partition transform".into()),
                });
            }
        } else {
            let transform = |r| jetstream::stream::Config {
                name: cfg.stream.clone(),
                storage: jetstream::stream::StorageType::File,
                num_replicas: r,
                sources: Some(vec![jetstream::stream::Source {
                    name: source_stream.to_string(),
                    subject_transforms: vec![
                        jetstream::stream::SubjectTransform {
                            source: format!("{prefix}.ticks.*"),
                            destination: destination.clone(),
                        },
                        jetstream::stream::SubjectTransform {
                            source: format!("{prefix}.factors.>"),
                            destination: format!("{prefix}.factors.>"),
                        },
                    ],
                    ..Default::default()
                }]),
                ..Default::default()
            };
            if let Err(e) = create_either(r, |r| js.create_stream(transform(r))).await
                && js.get_stream(&cfg.stream).await.is_err()
            {
                return Err(setup(&format!("stream {}", cfg.stream), e));
            }
        }
        let leases = match js.get_key_value(LEASES_BUCKET).await {
            Ok(s) => s,
            Err(_) => {
                let config = |r| kv::Config {
                    bucket: LEASES_BUCKET.into(),
                    history: 1,
                    max_age: cfg.lease_ttl,
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: r,
                    ..Default::default()
                };
                match create_either(r, |r| js.create_key_value(config(r))).await {
                    Ok(s) => s,
                    Err(e) => js
                        .get_key_value(LEASES_BUCKET)
                        .await
                        .map_err(|_| setup(&format!("key-value bucket {LEASES_BUCKET}"), e))?,
                }
            }
        };
        let objects = match js.get_object_store(CHECKPOINTS_BUCKET).await {
            Ok(s) => s,
            Err(_) => {
                let config = |r| object_store::Config {
                    bucket: CHECKPOINTS_BUCKET.into(),
                    storage: jetstream::stream::StorageType::File,
                    num_replicas: r,
                    ..Default::default()
                };
                match create_either(r, |r| js.create_object_store(config(r))).await {
                    Ok(s) => s,
                    Err(e) => js
                        .get_object_store(CHECKPOINTS_BUCKET)
                        .await
                        .map_err(|_| setup(&format!("object store {CHECKPOINTS_BUCKET}"), e))?,
                }
            }
        };
        let leases_stream = js
            .get_stream(format!("KV_{LEASES_BUCKET}"))
            .await
            .map_err(|e| setup(&format!("key-value bucket {LEASES_BUCKET}"), e))?;
        let me = cfg.instance_id();
        tracing::info!(instance = %me, partitions = p, replicas = r, stream = %cfg.stream,
            lease_ttl_ms = u64::try_from(cfg.lease_ttl.as_millis()).unwrap_or(u64::MAX), "cluster mode");
        Ok(Cluster {
            me,
            cfg: cfg.clone(),
            js,
            leases,
            leases_stream,
            objects,
            ownership: Ownership::new(p),
        })
    }

    /// The JetStream context.
    pub fn js(&self) -> &jetstream::Context {
        &self.js
    }

    /// Writes this instance's heartbeat key.
    ///
    /// # Errors
    /// [`ClusterError::Heartbeat`] when the put fails.
    pub async fn heartbeat(&self) -> Result<(), ClusterError> {
        self.leases
            .put(format!("instance.{}", self.me), Bytes::from(self.me.clone()))
            .await
            .map(|_| ())
            .map_err(|e| self.heartbeat_error(e))
    }

    fn heartbeat_error(&self, e: impl std::fmt::Display) -> ClusterError {
        ClusterError::Heartbeat {
            instance: self.me.clone(),
            message: e.to_string(),
        }
    }

    /// Deletes this instance's heartbeat key (a shutdown): the others count one instance less at once, so
    /// their share grows and they claim the partitions this one releases at their next round, instead of
    /// after the heartbeat's TTL.
    ///
    /// # Errors
    /// [`ClusterError::Heartbeat`] when the delete fails.
    pub async fn leave(&self) -> Result<(), ClusterError> {
        self.leases
            .delete(format!("instance.{}", self.me))
            .await
            .map_err(|e| self.heartbeat_error(e))
    }

    /// Reads the bucket: the owner and revision of each leased partition, and the live instances.
    ///
    /// # Errors
    /// [`ClusterError::Setup`] when the keys cannot be listed.
    ///
    /// No consumer is created: the heartbeat keys come from the bucket stream's subject list (one API
    /// request), the partition keys are known, and each is read with a direct get. (Listing keys through
    /// a consumer every round made the meta layer of a 3-node cluster fall behind: hundreds of ephemeral
    /// consumers a minute.)
    pub async fn view(&self) -> Result<(View, BTreeMap<u32, u64>), ClusterError> {
        let prefix = format!("$KV.{LEASES_BUCKET}.");
        let mut subjects = self
            .leases_stream
            .info_with_subjects(format!("{prefix}instance.>"))
            .await
            .map_err(|e| setup("lease keys", e))?;
        let mut view = View {
            partitions: self.cfg.partitions,
            ..View::default()
        };
        let mut revisions = BTreeMap::new();
        let mut names: Vec<String> = (0..self.cfg.partitions).map(|p| format!("partition.{p}")).collect();
        while let Some(subject) = subjects.next().await {
            let (subject, _) = subject.map_err(|e| setup("lease keys", e))?;
            if let Some(k) = subject.strip_prefix(&prefix) {
                names.push(k.to_string());
            }
        }
        for k in names {
            let Ok(Some(entry)) = self.leases.entry(k.clone()).await else {
                continue;
            };
            if entry.operation != kv::Operation::Put {
                continue;
            }
            let value = String::from_utf8_lossy(&entry.value).into_owned();
            if let Some(id) = k.strip_prefix("instance.") {
                view.instances.insert(id.to_string());
            } else if let Some(p) = k.strip_prefix("partition.").and_then(|p| p.parse::<u32>().ok())
                && p < self.cfg.partitions
            {
                view.owners.insert(p, value);
                revisions.insert(p, entry.revision);
            }
        }
        Ok((view, revisions))
    }

    /// Claims a free partition; its revision when won.
    ///
    /// # Errors
    /// [`ClusterError::Lease`] when another instance has it, or the bucket cannot be reached.
    pub async fn claim(&self, p: u32) -> Result<u64, ClusterError> {
        self.leases
            .create(format!("partition.{p}"), Bytes::from(self.me.clone()))
            .await
            .map_err(|e| lease(p, e))
    }

    /// Renews (or adopts, at the revision read) a lease; the new revision.
    ///
    /// # Errors
    /// [`ClusterError::Lease`] when the revision is no longer current (someone else has it, or it expired).
    pub async fn renew(&self, p: u32, revision: u64) -> Result<u64, ClusterError> {
        self.leases
            .update(format!("partition.{p}"), Bytes::from(self.me.clone()), revision)
            .await
            .map_err(|e| lease(p, e))
    }

    /// Releases a lease held at `revision`.
    ///
    /// # Errors
    /// [`ClusterError::Lease`] when the delete is refused.
    pub async fn release(&self, p: u32, revision: u64) -> Result<(), ClusterError> {
        self.leases
            .delete_expect_revision(format!("partition.{p}"), Some(revision))
            .await
            .map_err(|e| lease(p, e))
    }

    /// Whether the bucket still names this instance as `p`'s owner (the fencing check before a shared write).
    pub async fn still_owner(&self, p: u32) -> bool {
        match self.leases.entry(format!("partition.{p}")).await {
            Ok(Some(e)) => e.operation == kv::Operation::Put && e.value.as_ref() == self.me.as_bytes(),
            _ => false,
        }
    }
}

fn lease(partition: u32, e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Lease {
        partition,
        message: e.to_string(),
    }
}

/// Creates with `r` replicas, and with one when the server refuses more (not in a cluster, or too few
/// servers up).
async fn create_either<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    r: usize,
    create: impl Fn(usize) -> F,
) -> Result<T, E> {
    match create(r).await {
        Ok(v) => Ok(v),
        Err(e) if r > 1 => {
            tracing::warn!(replicas = r, error = %e, "cluster: could not create with replicas; trying one");
            create(1).await
        }
        Err(e) => Err(e),
    }
}

/// A message of one partition's consumer, tagged with the partition and the generation of its ownership
/// (messages of an ownership that ended are dropped).
pub struct PartitionMessage {
    /// The partition.
    pub partition: u32,
    /// Its ownership's generation.
    pub generation: u64,
    /// The message.
    pub message: jetstream::Message,
}

/// Reads partition `p` of the partitioned stream from `start` with an ordered consumer and forwards every
/// message to `tx`, until the task is aborted (the partition released or lost) or `tx` closes. A consumer
/// that fails for good is created again after the last sequence forwarded.
pub fn spawn_partition(
    js: jetstream::Context,
    stream: String,
    prefix: String,
    p: u32,
    generation: u64,
    start: u64,
    tx: tokio::sync::mpsc::Sender<PartitionMessage>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut next = start.max(1);
        let mut backoff = Duration::from_millis(100);
        loop {
            let consumer = async {
                let s = js.get_stream(&stream).await.map_err(|e| e.to_string())?;
                s.create_consumer(jetstream::consumer::pull::OrderedConfig {
                    filter_subjects: vec![format!("{prefix}.ticks.{p}.*"), format!("{prefix}.factors.>")],
                    deliver_policy: jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: next },
                    ..Default::default()
                })
                .await
                .map_err(|e| e.to_string())?
                .messages()
                .await
                .map_err(|e| e.to_string())
            };
            match consumer.await {
                Ok(mut messages) => {
                    backoff = Duration::from_millis(100);
                    while let Some(m) = messages.next().await {
                        match m {
                            Ok(message) => {
                                if let Ok(info) = message.info() {
                                    next = info.stream_sequence + 1;
                                }
                                let m = PartitionMessage {
                                    partition: p,
                                    generation,
                                    message,
                                };
                                if tx.send(m).await.is_err() {
                                    return;
                                }
                            }
                            Err(e) => {
                                tracing::warn!(partition = p, error = %e, "partition consumer failed; creating it again");
                                break;
                            }
                        }
                    }
                }
                Err(e) => tracing::warn!(partition = p, error = %e, "cannot read the partition; retrying"),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    })
}
