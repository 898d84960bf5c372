//! The shared checkpoint store of cluster mode (object store `cambio_checkpoints`): what an owner writes
//! after each cut, and what a new owner reads when it takes a partition over.
//!
//! Two kinds of objects:
//! - **`<PAIR>`**: the pair's newest version, the same bytes as in the local registry, with that version's
//!   metadata (number, reason, lineage) in the object's metadata. The new owner adopts it under the same
//!   number, so the version a forecast names after a takeover is the one the previous owner wrote, and the
//!   numbering continues from it.
//! - **`partition.<p>`**: the partition's *index* ([`PartitionIndex`]): the stream position up to which
//!   every pair of the partition is in its `<PAIR>` object, the pairs, and the factors as the partition's
//!   consumer had them at that position. Written only after every version of the partition's pairs that a
//!   cut produced is in the store (a failed upload holds the index back until it is retried), so a new
//!   owner that reads the partition from just after the index's position misses no tick of any pair —
//!   including a pair whose own upload failed — and gives a pair first seen later exactly the factors the
//!   previous owner would have. The new owner reads the objects the index names and nothing else (no
//!   listing of the store, whose size grows with the pairs of every partition).

use std::collections::BTreeMap;
use std::collections::HashMap;

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{Cluster, ClusterError, partition_of};
use crate::checkpoint::VersionMeta;
use crate::tick::{Factor, Pair};

/// Key of a pair object's metadata that holds its version's metadata (JSON).
const VERSION_KEY: &str = "version";

/// A version to share: its metadata and record, and the generation of the partition's ownership that
/// produced it (a record of an ownership that has ended is never written: the partition may have moved on
/// under another owner since).
#[derive(Debug)]
pub struct SharedRecord {
    /// The version's metadata (its number is the local registry's).
    pub meta: VersionMeta,
    /// The record, byte for byte as stored locally.
    pub record: Vec<u8>,
    /// The ownership generation of the pair's partition when the cut was taken.
    pub generation: u64,
}

/// A partition as a cut saw it: what its index says once the cut's versions are shared.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionCut {
    /// The partition.
    pub partition: u32,
    /// Its ownership's generation.
    pub generation: u64,
    /// The highest stream sequence its consumer had routed.
    pub position: u64,
    /// Every pair of the partition served under this ownership (evicted ones included).
    pub pairs: Vec<Pair>,
    /// The factors the partition's consumer had seen, newest of each name.
    pub factors: Vec<Factor>,
}

/// A cut's records for the shared store, sent by the checkpoint writer after the local commit.
#[derive(Debug)]
pub struct SharedCut {
    /// The cut's number.
    pub id: u64,
    /// The versions it wrote (empty when the cut failed).
    pub records: Vec<SharedRecord>,
    /// The partitions held when it was taken (empty when the cut failed: no index may move past it).
    pub partitions: Vec<PartitionCut>,
}

/// The `partition.<p>` object (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionIndex {
    /// The partition.
    pub partition: u32,
    /// The partition count it was computed with.
    pub partitions: u32,
    /// Every tick of the partition at or below this stream sequence is in its pair's object.
    pub position: u64,
    /// The partition's pairs.
    pub pairs: Vec<String>,
    /// The factors at `position`.
    pub factors: Vec<Factor>,
}

/// A pair object as read back.
#[derive(Debug)]
pub struct SharedPair {
    /// The record.
    pub record: Vec<u8>,
    /// Its version's metadata, when the writer recorded it (and it reads).
    pub meta: Option<VersionMeta>,
}

/// What a new owner reads for a partition.
#[derive(Debug)]
pub struct Loaded {
    /// The index, when the partition has one (none: never indexed, e.g. written by an older cambio).
    pub index: Option<PartitionIndex>,
    /// Each pair and its object, or why it could not be read (`None`: the index names a pair with no
    /// object).
    pub pairs: Vec<(Pair, Result<Option<SharedPair>, String>)>,
}

fn index_name(p: u32) -> String {
    format!("partition.{p}")
}

fn shared(pair: &str, e: &dyn std::fmt::Display) -> ClusterError {
    ClusterError::Shared {
        pair: pair.to_string(),
        message: e.to_string(),
    }
}

impl Cluster {
    /// Whether this instance may still write for partition `p` under ownership `generation`: it holds it in
    /// that ownership, and the lease bucket still names it (the fencing check before a shared write).
    async fn may_write(&self, p: u32, generation: u64) -> bool {
        self.ownership.generation(p) == Some(generation) && self.still_owner(p).await
    }

    /// Writes a pair's version to the shared store, if its partition's lease is still held in the ownership
    /// that produced it. Returns false when fenced off.
    ///
    /// # Errors
    /// [`ClusterError::Shared`] when the write fails.
    pub async fn put_shared(&self, r: &SharedRecord) -> Result<bool, ClusterError> {
        let pair = r.meta.pair;
        let p = partition_of(pair.as_str(), self.cfg.partitions);
        if !self.may_write(p, r.generation).await {
            return Ok(false);
        }
        let meta = serde_json::to_string(&r.meta).map_err(|e| shared(pair.as_str(), &e))?;
        let object = async_nats::jetstream::object_store::ObjectMetadata {
            name: pair.to_string(),
            metadata: HashMap::from([(VERSION_KEY.to_string(), meta)]),
            ..Default::default()
        };
        let mut reader = r.record.as_slice();
        self.objects
            .put(object, &mut reader)
            .await
            .map(|_| true)
            .map_err(|e| shared(pair.as_str(), &e))
    }

    /// Writes partition `c.partition`'s index, if still held in that ownership. False when fenced off.
    ///
    /// # Errors
    /// [`ClusterError::Shared`] when the write fails.
    pub async fn put_index(&self, c: &PartitionCut) -> Result<bool, ClusterError> {
        let name = index_name(c.partition);
        if !self.may_write(c.partition, c.generation).await {
            return Ok(false);
        }
        let index = PartitionIndex {
            partition: c.partition,
            partitions: self.cfg.partitions,
            position: c.position,
            pairs: c.pairs.iter().map(Pair::to_string).collect(),
            factors: c.factors.clone(),
        };
        let json = serde_json::to_vec(&index).map_err(|e| shared(&name, &e))?;
        let mut reader = json.as_slice();
        self.objects
            .put(name.as_str(), &mut reader)
            .await
            .map(|_| true)
            .map_err(|e| shared(&name, &e))
    }

    /// Reads what a new owner of partition `p` needs: its index and the objects it names; without an
    /// index, every pair object of the partition (the store is listed).
    ///
    /// # Errors
    /// [`ClusterError::Shared`] when the store cannot be reached, or the index is unreadable.
    pub async fn load_partition(&self, p: u32) -> Result<Loaded, ClusterError> {
        let name = index_name(p);
        let index = match self.read_object(&name).await? {
            Some((bytes, _)) => {
                let index: PartitionIndex = serde_json::from_slice(&bytes).map_err(|e| shared(&name, &e))?;
                if index.partition != p || index.partitions != self.cfg.partitions {
                    return Err(shared(
                        &name,
                        &format!(
                            "written for partition {} of {}, read as {p} of {}",
                            index.partition, index.partitions, self.cfg.partitions
                        ),
                    ));
                }
                Some(index)
            }
            None => None,
        };
        let names: Vec<Pair> = match &index {
            Some(i) => i.pairs.iter().filter_map(|s| Pair::parse(s)).collect(),
            None => self.listed_pairs(p).await?,
        };
        let mut pairs = Vec::with_capacity(names.len());
        for pair in names {
            let read = match self.read_object(pair.as_str()).await {
                Ok(Some((record, metadata))) => {
                    let meta = metadata
                        .get(VERSION_KEY)
                        .and_then(|m| serde_json::from_str::<VersionMeta>(m).ok())
                        .filter(|m| m.pair == pair);
                    Ok(Some(SharedPair { record, meta }))
                }
                Ok(None) => Ok(None),
                Err(e) => Err(e.to_string()),
            };
            pairs.push((pair, read));
        }
        Ok(Loaded { index, pairs })
    }

    /// An object's bytes and metadata; `None` when there is no such object.
    async fn read_object(&self, name: &str) -> Result<Option<(Vec<u8>, HashMap<String, String>)>, ClusterError> {
        use async_nats::jetstream::object_store::GetErrorKind;
        let mut object = match self.objects.get(name).await {
            Ok(o) => o,
            Err(e) if e.kind() == GetErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(shared(name, &e)),
        };
        let metadata = object.info().metadata.clone();
        let mut bytes = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut object, &mut bytes)
            .await
            .map_err(|e| shared(name, &e))?;
        Ok(Some((bytes, metadata)))
    }

    /// The pairs of partition `p` with an object, from a listing of the whole store (a partition without
    /// an index only).
    async fn listed_pairs(&self, p: u32) -> Result<Vec<Pair>, ClusterError> {
        let mut list = self.objects.list().await.map_err(|e| shared("(list)", &e))?;
        let mut names = Vec::new();
        while let Some(info) = list.next().await {
            let info = info.map_err(|e| shared("(list)", &e))?;
            if info.deleted {
                continue;
            }
            if let Some(pair) = Pair::parse(&info.name)
                && partition_of(pair.as_str(), self.cfg.partitions) == p
            {
                names.push(pair);
            }
        }
        Ok(names)
    }
}

/// Puts every cut's versions in the shared store, in order, then each partition's index once all of its
/// versions are there, and publishes the last cut done on `done` (a release waits for its cut there before
/// deleting the lease). A version that could not be written is tried again with the next cut (unless a
/// newer version of its pair replaced it, or its ownership ended); its partition's index waits for it.
pub fn spawn_uploader(
    cluster: Cluster,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<SharedCut>,
    done: tokio::sync::watch::Sender<u64>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let count = cluster.cfg.partitions;
        let mut pending: BTreeMap<Pair, SharedRecord> = BTreeMap::new();
        let mut indexed: HashMap<u32, PartitionCut> = HashMap::new();
        while let Some(cut) = rx.recv().await {
            for r in cut.records {
                pending.insert(r.meta.pair, r);
            }
            let pairs: Vec<Pair> = pending.keys().copied().collect();
            for pair in pairs {
                let Some(r) = pending.get(&pair) else { continue };
                match cluster.put_shared(r).await {
                    Ok(true) => {
                        tracing::debug!(pair = %pair, version = r.meta.version, bytes = r.record.len(), "shared checkpoint written");
                        pending.remove(&pair);
                    }
                    Ok(false) => {
                        tracing::warn!(pair = %pair,
                            "shared checkpoint not written: this instance no longer holds the pair's partition");
                        pending.remove(&pair);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "shared checkpoint not written; tried again with the next checkpoint")
                    }
                }
            }
            for c in cut.partitions {
                if pending
                    .keys()
                    .any(|pair| partition_of(pair.as_str(), count) == c.partition)
                {
                    tracing::warn!(
                        partition = c.partition,
                        "partition index not advanced: a version of one of its pairs is not shared yet"
                    );
                    continue;
                }
                if indexed.get(&c.partition) == Some(&c) {
                    continue;
                }
                match cluster.put_index(&c).await {
                    Ok(true) => {
                        tracing::debug!(
                            partition = c.partition,
                            position = c.position,
                            "partition index written"
                        );
                        indexed.insert(c.partition, c);
                    }
                    Ok(false) => {
                        indexed.remove(&c.partition);
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "partition index not written; written with the next checkpoint")
                    }
                }
            }
            done.send_replace(cut.id);
        }
    })
}
