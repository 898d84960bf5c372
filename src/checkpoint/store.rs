//! The model registry: checkpoint versions per pair in one redb file.
//!
//! Tables (keys are `(pair, version)` so a pair's versions are one ordered range):
//! - `checkpoints`: the record in the checkpoint format ([`super::format`]), checksum included;
//! - `versions`: its metadata as JSON ([`VersionMeta`]), readable without decoding the engine;
//! - `next_version`: per pair, the next version number, so numbers are never reused even after retention
//!   removed old ones;
//! - `info`: the layout version of this file;
//! - `cut`: the latest consistent cut of the running service ([`Cut`]): which version of each pair is
//!   current, which JetStream stream sequences those versions include, and the factors the service
//!   remembers for pairs it has not seen yet. A new table, so files without it still read (layout 1).
//! - `audit`, `approvals`, `challenges`: the append-only audit log, the requests waiting for approval and
//!   the versions marked to run as challengers ([`super::audit`]). Created when a file is opened, so files
//!   written before them open unchanged (layout 1), and an older cambio ignores them. A version's
//!   [`super::lineage::Lineage`] is a field of its metadata in `versions`, absent in older files.
//!
//! **Why a cut.** `cambio serve` checkpoints every pair at the same point of the tick stream: the
//! consumer puts a marker in every shard's queue after the same stream sequence, and the versions the
//! shards write for that marker are committed together with the cut in one transaction. A pair that did
//! not change since its last version keeps it (no duplicate versions for idle pairs), and the cut says
//! that version is current. On restart every pair resumes from the cut, so each tick of the stream is in
//! exactly one place: in the restored state, or still to be read. A rollback or an import makes the new
//! version the current one in the cut, so a restart continues the rolled-back model rather than
//! re-applying the stream to it.
//!
//! Every change is one redb write transaction (put and its retention, rollback, keep marks, import), so a
//! crash leaves either the old or the new state. redb's own page checksums catch a damaged file at open or
//! read; the record's CRC-32 catches a damaged checkpoint. Neither gives a silently wrong model: reading
//! a damaged version is an error, and [`CheckpointStore::latest_good`] skips it with a warning and falls
//! back to the newest older version that reads.

use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use std::collections::BTreeMap;

use super::audit::{Approval, AuditEntry, AuditOp, Outcome, Requested};
use super::format::{self, FormatError, PairState};
use super::lineage::{Dataset, Lineage, sha256_of};
use crate::checkpoint::applied::AppliedSeqs;
use crate::eval::HorizonSummary;
use crate::tick::{Factor, Pair};
use crate::time::format_ts;

const CHECKPOINTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("checkpoints");
const VERSIONS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("versions");
const NEXT_VERSION: TableDefinition<&str, u64> = TableDefinition::new("next_version");
const INFO: TableDefinition<&str, u64> = TableDefinition::new("info");
/// One row, key [`CUT_KEY`]: the latest consistent cut written by `cambio serve` ([`Cut`], JSON).
const CUTS: TableDefinition<&str, &[u8]> = TableDefinition::new("cut");
const CUT_KEY: &str = "latest";
/// The audit log: entry number → [`AuditEntry`] (JSON). Append-only.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Requests waiting for approval: id → [`Approval`] (JSON); removed once approved.
const APPROVALS: TableDefinition<u64, &[u8]> = TableDefinition::new("approvals");
/// Versions marked offline to run as their pair's challenger at the next `cambio serve` start.
const CHALLENGES: TableDefinition<&str, u64> = TableDefinition::new("challenges");
/// Key in `info` of the next approval id (ids are never reused).
const NEXT_APPROVAL: &str = "next_approval";
/// Key in `info` of the four-eyes rule (1 on), as the last `cambio serve` on the file was configured.
const REQUIRE_APPROVAL: &str = "require_approval";

/// The layout of the tables above; a file with a newer layout is refused.
pub const STORE_LAYOUT: u64 = 1;

/// Why a checkpoint version exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Every N ticks or T seconds while serving.
    Periodic,
    /// On graceful shutdown.
    Shutdown,
    /// Asked for by an operator.
    Manual,
    /// A challenger became the champion.
    Promotion,
    /// The model adapted after a drift alarm.
    DriftAdaptation,
    /// A copy of an older version made the latest (history is kept).
    Rollback,
    /// Read from an exported file.
    Import,
    /// The pair was idle and its shard stopped (`serve.idle_evict_secs`); it resumes from this version.
    Evicted,
    /// Built offline by `cambio retrain` (a training window, calibration and a hold-out score); it enters
    /// service only through `cambio models challenge` and the contest. Last, so older names keep their place.
    Retrain,
}

impl Reason {
    /// The name as written in metadata and tables.
    pub fn name(self) -> &'static str {
        match self {
            Reason::Periodic => "periodic",
            Reason::Shutdown => "shutdown",
            Reason::Manual => "manual",
            Reason::Promotion => "promotion",
            Reason::DriftAdaptation => "drift_adaptation",
            Reason::Rollback => "rollback",
            Reason::Import => "import",
            Reason::Evicted => "evicted",
            Reason::Retrain => "retrain",
        }
    }
}

/// How many versions are kept per pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// The newest versions kept per pair (at least 1); older ones go unless marked keep.
    pub keep_last: usize,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { keep_last: 10 }
    }
}

/// One version's metadata (`cambio models show` prints it as JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VersionMeta {
    /// The pair.
    pub pair: Pair,
    /// Monotonic per pair, from 1.
    pub version: u64,
    /// Wall-clock creation time given by the caller (µs since the epoch).
    pub created_us: i64,
    /// The same as RFC 3339, for people.
    pub created: String,
    /// Why it was written.
    pub reason: Reason,
    /// Ticks the engine had seen (accepted and quarantined): the position of the last applied tick.
    pub ticks: u64,
    /// Time of the last accepted tick (RFC 3339).
    pub last_tick_ts: Option<String>,
    /// The highest JetStream stream sequence below which every one was applied (with JetStream).
    pub stream_seq: Option<u64>,
    /// Prequential metrics per horizon at that moment.
    pub horizons: Vec<HorizonSummary>,
    /// Kept whatever the retention.
    pub keep: bool,
    /// Format version of the record.
    pub format_version: u16,
    /// Size of the record in bytes.
    pub bytes: u64,
    /// Free text: what a rollback or an import came from.
    pub note: Option<String>,
    /// Where it came from: data, window, code, configuration, parent, actor (see
    /// [`super::lineage`]). `None` for versions written before lineage was recorded.
    #[serde(default)]
    pub lineage: Option<Lineage>,
}

/// The latest consistent cut (see the module docs).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Cut {
    /// Wall-clock time of the commit (µs since the epoch).
    pub created_us: i64,
    /// The JetStream stream sequences every current version includes (`None` outside JetStream).
    pub applied: Option<AppliedSeqs>,
    /// The current version of each pair.
    pub heads: BTreeMap<String, u64>,
    /// The latest value of each factor, for pairs first seen after a restart.
    pub factors: Vec<Factor>,
}

/// A pair read back for a restart: its state, and the stream sequences already in it.
#[derive(Debug)]
pub struct RestoredPair {
    /// The version restored.
    pub meta: VersionMeta,
    /// Its state.
    pub state: PairState,
    /// The stream sequences in this state: the cut's when the version is the cut's current one, else the
    /// version's own (an older version, after the current one was found damaged: the ticks since are
    /// read again from the stream, which rebuilds the lost state exactly).
    pub applied: Option<AppliedSeqs>,
    /// Whether this is the cut's current version (false: a fallback).
    pub current: bool,
}

/// What a restart finds in the store.
#[derive(Debug, Default)]
pub struct Restore {
    /// Pairs restored.
    pub pairs: Vec<RestoredPair>,
    /// The latest cut, if the service ever committed one.
    pub cut: Option<Cut>,
    /// Pairs with versions of which none reads.
    pub unreadable: Vec<Pair>,
}

/// A checkpoint ready to be stored: the encoded record and the metadata taken from the state. Built where
/// the engine lives (encoding is CPU work); stored by whoever owns the file (disk work).
#[derive(Debug, Clone)]
pub struct NewCheckpoint {
    /// The record in the checkpoint format.
    pub record: Vec<u8>,
    /// The metadata; `version` and `keep` are set by the store.
    pub meta: VersionMeta,
}

impl NewCheckpoint {
    /// Encodes `state` and takes its metadata.
    ///
    /// # Errors
    /// [`FormatError::Encode`] if the state cannot be serialized.
    pub fn new(state: &PairState, reason: Reason, created_us: i64) -> Result<NewCheckpoint, FormatError> {
        Self::from_ref(
            format::PairStateRef {
                engine: &state.engine,
                applied: state.applied.as_ref(),
                contest: state.contest.as_ref(),
            },
            reason,
            created_us,
        )
    }

    /// [`NewCheckpoint::new`] from borrowed parts (a serving shard's live engine).
    ///
    /// # Errors
    /// As [`NewCheckpoint::new`].
    pub fn from_ref(
        state: format::PairStateRef<'_>,
        reason: Reason,
        created_us: i64,
    ) -> Result<NewCheckpoint, FormatError> {
        let record = format::encode_ref(state)?;
        let meta = meta_of(state, reason, created_us, record.len());
        Ok(NewCheckpoint { record, meta })
    }
}

fn meta_of(state: format::PairStateRef<'_>, reason: Reason, created_us: i64, bytes: usize) -> VersionMeta {
    let e = state.engine;
    VersionMeta {
        pair: e.pair(),
        version: 0,
        created_us,
        created: format_ts(created_us),
        reason,
        ticks: e.ticks(),
        last_tick_ts: e.last_ts_us().map(format_ts),
        stream_seq: state.applied.map(AppliedSeqs::floor),
        horizons: e.summary().horizons,
        keep: false,
        format_version: format::FORMAT_VERSION,
        bytes: bytes as u64,
        note: None,
        lineage: Some(Lineage::of_engine(e.config())),
    }
}

/// Why the store could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The redb file could not be opened: missing, not a redb file, truncated or damaged.
    #[error("cannot open checkpoint store {path}: {message}")]
    Open {
        /// The file.
        path: PathBuf,
        /// What redb said.
        message: String,
    },
    /// Another process (or another store in this one) holds the file open: redb locks it, so two writers
    /// never share it. Never a reason to move the file aside. Most often a running `cambio serve`, whose
    /// registry is reachable over NATS instead.
    #[error(
        "checkpoint store {} is in use by another process (a running `cambio serve` holds it open). While \
         serve runs, use its registry over NATS: request-reply on `fx.models.<PAIR>` (with your [serve] \
         prefix), e.g. `nats req fx.models.USDMXN '{{\"op\":\"list\"}}'`; or stop serve first",
        path.display()
    )]
    Locked {
        /// The file.
        path: PathBuf,
    },
    /// The file is damaged where redb found it: its integrity check failed and could not repair it, or
    /// redb stopped on a page it cannot interpret. Nothing was read as a model.
    #[error("checkpoint store {} is damaged: {message}", path.display())]
    Damaged {
        /// The file.
        path: PathBuf,
        /// What redb reported.
        message: String,
    },
    /// The file's tables were written by a newer cambio.
    #[error("checkpoint store layout {found} is newer than this build reads ({supported}); upgrade cambio")]
    NewerLayout {
        /// The layout in the file.
        found: u64,
        /// The newest this build reads.
        supported: u64,
    },
    /// A redb operation failed (including damage found while reading).
    #[error("checkpoint store: {0}")]
    Db(#[from] redb::Error),
    /// No such version of the pair.
    #[error("{pair} has no version {version}")]
    NotFound {
        /// The pair.
        pair: Pair,
        /// The version asked for.
        version: u64,
    },
    /// The pair has no readable version at all.
    #[error("{0} has no good checkpoint")]
    NoGoodVersion(Pair),
    /// No pending request has this id (never made, or already approved).
    #[error("no pending request {0} (list them with `cambio models approvals` or {{\"op\":\"approvals\"}})")]
    NoApproval(u64),
    /// The four-eyes rule: a request is approved by someone other than who made it.
    #[error("request {id} was made by {actor}: it must be approved by a different actor")]
    SameActor {
        /// The request.
        id: u64,
        /// Who made it, and tried to approve it.
        actor: String,
    },
    /// An audit entry or approval in the file could not be read or written as JSON.
    #[error("registry record {what}: {message}")]
    Record {
        /// Which record.
        what: String,
        /// What went wrong.
        message: String,
    },
    /// A stored or imported checkpoint is damaged or of an unreadable format.
    #[error("{what}: {source}")]
    Format {
        /// Which checkpoint (pair and version, or the file).
        what: String,
        /// Why it cannot be read.
        source: FormatError,
    },
    /// A version's metadata record cannot be read.
    #[error("{pair} version {version}: metadata unreadable: {message}")]
    Meta {
        /// The pair.
        pair: Pair,
        /// The version.
        version: u64,
        /// The JSON error.
        message: String,
    },
    /// An export or import file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The cut record cannot be read.
    #[error("the store's cut record is unreadable: {0}")]
    Cut(String),
    /// Retention must keep at least one version per pair.
    #[error("keep_last must be at least 1")]
    Retention,
}

impl StoreError {
    /// Whether the file itself is unreadable (not a redb file, truncated, damaged pages, an unreadable
    /// cut or metadata record), as opposed to locked, newer, missing a version, or an I/O failure of
    /// another file: what `cambio serve --fresh` moves aside.
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StoreError::Open { .. }
                | StoreError::Damaged { .. }
                | StoreError::Db(_)
                | StoreError::Cut(_)
                | StoreError::Meta { .. }
        )
    }
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    match e.into() {
        // Damage redb detected itself: the same error as a page it cannot interpret.
        redb::Error::Corrupted(message) => StoreError::Damaged {
            path: PathBuf::new(),
            message,
        },
        e => StoreError::Db(e),
    }
}

/// The redb file of checkpoint versions.
pub struct CheckpointStore {
    db: Handle,
    retention: Retention,
    path: PathBuf,
}

/// The open redb database, closed under the panic guard: closing a damaged file can stop on a page redb
/// cannot interpret, too.
struct Handle(Option<Database>);

impl std::ops::Deref for Handle {
    type Target = Database;

    fn deref(&self) -> &Database {
        // Some from construction until drop, which takes it.
        self.0
            .as_ref()
            .expect("the database is open until the store is dropped")
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(database) = self.0.take()
            && let Err(message) = quiet::catch(move || drop(database))
        {
            tracing::error!(error = %message, "checkpoint store: closing the damaged file failed");
        }
    }
}

/// redb answers most damage with an error, but a page it cannot interpret (a flipped type byte, a bad
/// length) can still stop it in `unreachable!()`. Every store operation runs under [`quiet::catch`], which
/// turns such a panic into [`StoreError::Damaged`], and the panic hook stays silent for it (the error
/// says what happened; a backtrace on a damaged file would only alarm).
mod quiet {
    use std::cell::Cell;
    use std::panic::{AssertUnwindSafe, catch_unwind};
    use std::sync::Once;

    thread_local! {
        static GUARDED: Cell<bool> = const { Cell::new(false) };
    }

    static HOOK: Once = Once::new();

    /// Runs `f`; a panic inside it becomes `Err(message)`, and is not printed by the panic hook.
    pub(super) fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
        HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if !GUARDED.with(Cell::get) {
                    previous(info);
                }
            }));
        });
        let outer = GUARDED.with(|g| g.replace(true));
        let result = catch_unwind(AssertUnwindSafe(f));
        GUARDED.with(|g| g.set(outer));
        result.map_err(|payload| {
            let text = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "an internal error".into());
            format!("the database library stopped on damaged data ({text})")
        })
    }
}

impl std::fmt::Debug for CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("path", &self.path)
            .field("retention", &self.retention)
            .finish()
    }
}

impl CheckpointStore {
    /// Opens the file, creating it (and its tables) if missing.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the file is not a readable redb file (truncated, damaged);
    /// [`StoreError::Locked`] when another process holds it; [`StoreError::NewerLayout`] when a newer
    /// cambio wrote it.
    pub fn open(path: &Path, retention: Retention) -> Result<CheckpointStore, StoreError> {
        Self::open_inner(path, retention, true)
    }

    /// Opens an existing file; a missing one is an error (the CLI must not create files by mistake).
    ///
    /// # Errors
    /// As [`CheckpointStore::open`], and [`StoreError::Open`] when the file does not exist.
    pub fn open_existing(path: &Path, retention: Retention) -> Result<CheckpointStore, StoreError> {
        Self::open_inner(path, retention, false)
    }

    fn open_inner(path: &Path, retention: Retention, create: bool) -> Result<CheckpointStore, StoreError> {
        if retention.keep_last == 0 {
            return Err(StoreError::Retention);
        }
        let open_err = |message: String| StoreError::Open {
            path: path.into(),
            message,
        };
        let exists = path.exists();
        if !create && !exists {
            return Err(open_err("no such file".into()));
        }
        if create && std::fs::metadata(path).is_ok_and(|m| m.len() == 0) {
            // Not silent: an empty file where a registry was expected means its content was lost.
            tracing::warn!(path = %path.display(), "checkpoint file is empty (0 bytes): starting a new registry in it");
        }
        let opened = quiet::catch(|| {
            if create {
                Database::create(path)
            } else {
                Database::open(path)
            }
        })
        .map_err(|message| StoreError::Damaged {
            path: path.into(),
            message,
        })?;
        let mut database = opened.map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen | redb::DatabaseError::LockProtocolMismatch => {
                StoreError::Locked { path: path.into() }
            }
            e => open_err(e.to_string()),
        })?;
        // redb reads pages without checking them; its integrity check verifies every page's checksum
        // (repairing from the previous commit when it can), so damage is found here, as an error,
        // rather than later as a wrong value or a stop inside redb.
        let checked = quiet::catch(|| database.check_integrity());
        let store = CheckpointStore {
            db: Handle(Some(database)),
            retention,
            path: path.into(),
        };
        match checked {
            Ok(Ok(true)) => {}
            Ok(Ok(false)) => tracing::warn!(path = %path.display(),
                "checkpoint file was damaged and redb repaired it (the newest commit may be lost: the previous cut is the restore point)"),
            Ok(Err(e)) => return Err(store.damaged(e.to_string())),
            Err(message) => return Err(store.damaged(message)),
        }
        store.guard(|| store.init()).map_err(|e| match e {
            StoreError::Db(e) => open_err(e.to_string()),
            e => e,
        })?;
        Ok(store)
    }

    fn damaged(&self, message: String) -> StoreError {
        StoreError::Damaged {
            path: self.path.clone(),
            message,
        }
    }

    /// Runs one store operation under the panic guard (see [`quiet`]), and names the file in damage
    /// errors.
    fn guard<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        match quiet::catch(f) {
            Ok(Err(StoreError::Damaged { path, message })) if path.as_os_str().is_empty() => Err(self.damaged(message)),
            Ok(r) => r,
            Err(message) => Err(self.damaged(message)),
        }
    }

    /// Creates the tables and checks the layout version.
    fn init(&self) -> Result<(), StoreError> {
        let tx = self.db.begin_write().map_err(db)?;
        {
            let mut info = tx.open_table(INFO).map_err(db)?;
            let found = info.get("layout").map_err(db)?.map(|v| v.value());
            match found {
                Some(found) if found > STORE_LAYOUT => {
                    return Err(StoreError::NewerLayout {
                        found,
                        supported: STORE_LAYOUT,
                    });
                }
                Some(_) => {}
                None => {
                    info.insert("layout", STORE_LAYOUT).map_err(db)?;
                }
            }
            tx.open_table(CHECKPOINTS).map_err(db)?;
            tx.open_table(VERSIONS).map_err(db)?;
            tx.open_table(NEXT_VERSION).map_err(db)?;
            tx.open_table(CUTS).map_err(db)?;
            tx.open_table(AUDIT).map_err(db)?;
            tx.open_table(APPROVALS).map_err(db)?;
            tx.open_table(CHALLENGES).map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(())
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a new version of `ckpt`'s pair and applies retention, in one transaction; the version becomes
    /// the pair's current one in the cut.
    ///
    /// # Errors
    /// [`StoreError::Db`] when the write fails.
    pub fn put(&self, ckpt: NewCheckpoint) -> Result<VersionMeta, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(db)?;
            // Read in its own statement: the table handle must be gone before `write_cut` opens the table
            // again (redb refuses a table opened twice in one transaction).
            let cut = read_cut(&tx.open_table(CUTS).map_err(db)?)?;
            let head = head_of(&tx, cut.as_ref(), ckpt.meta.pair)?;
            let meta = self.put_in(&tx, ckpt, head)?;
            // A retrained version is a candidate, not the pair's state: the cut keeps naming the live one.
            if let Some(mut cut) = cut.filter(|_| meta.reason != Reason::Retrain) {
                cut.heads.insert(meta.pair.to_string(), meta.version);
                write_cut(&tx, &cut)?;
            }
            tx.commit().map_err(db)?;
            Ok(meta)
        })
    }

    /// Commits a cut: the new versions of the pairs that changed, and the cut naming every pair's current
    /// version, in one transaction (a crash leaves the previous cut or this one, never a mix).
    ///
    /// # Errors
    /// [`StoreError::Db`] when the write fails.
    pub fn put_cut(
        &self,
        parts: Vec<NewCheckpoint>,
        applied: Option<AppliedSeqs>,
        factors: Vec<Factor>,
        created_us: i64,
    ) -> Result<Vec<VersionMeta>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(db)?;
            let mut cut = read_cut(&tx.open_table(CUTS).map_err(db)?)?.unwrap_or_default();
            let mut metas = Vec::with_capacity(parts.len());
            for part in parts {
                let pair = part.meta.pair;
                let head = head_of(&tx, Some(&cut), pair)?;
                if let Some(head) = same_as_head(&tx, head, &part)? {
                    // The same state as the pair's current version: the cut keeps naming that one.
                    tracing::debug!(pair = %pair, version = head, "checkpoint unchanged; no new version");
                    cut.heads.insert(pair.to_string(), head);
                    continue;
                }
                let meta = self.put_in(&tx, part, head)?;
                cut.heads.insert(meta.pair.to_string(), meta.version);
                metas.push(meta);
            }
            cut.created_us = created_us;
            cut.applied = applied;
            cut.factors = factors;
            write_cut(&tx, &cut)?;
            tx.commit().map_err(db)?;
            Ok(metas)
        })
    }

    /// The latest cut, if any.
    ///
    /// # Errors
    /// [`StoreError::Db`], or [`StoreError::Cut`] when it cannot be read.
    pub fn cut(&self) -> Result<Option<Cut>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(db)?;
            read_cut(&tx.open_table(CUTS).map_err(db)?)
        })
    }

    /// Everything a restarting service needs: each pair's newest readable version (damaged ones skipped
    /// with a warning) and the stream sequences in it.
    ///
    /// # Errors
    /// [`StoreError::Db`] when the file cannot be read, [`StoreError::Cut`] when the cut is damaged.
    pub fn restore(&self) -> Result<Restore, StoreError> {
        self.guard(|| {
            let cut = self.cut()?;
            let mut out = Restore {
                cut: cut.clone(),
                ..Restore::default()
            };
            for pair in self.pairs()? {
                match self.latest_restorable(pair) {
                    Ok(Some((meta, state))) => {
                        let current = cut
                            .as_ref()
                            .is_some_and(|c| c.heads.get(pair.as_str()) == Some(&meta.version));
                        let applied = match (&cut, current) {
                            (Some(c), true) => c.applied.clone(),
                            _ => state.applied.clone(),
                        };
                        out.pairs.push(RestoredPair {
                            meta,
                            state,
                            applied,
                            current,
                        });
                    }
                    Ok(None) => {}
                    Err(StoreError::NoGoodVersion(p)) => out.unreadable.push(p),
                    Err(e) => return Err(e),
                }
            }
            Ok(out)
        })
    }

    /// Stores one version in `tx`. `head` is the pair's current version before it: the lineage's parent
    /// when the caller did not name one (an import has none), and the audit entry's "from".
    fn put_in(
        &self,
        tx: &redb::WriteTransaction,
        ckpt: NewCheckpoint,
        head: Option<u64>,
    ) -> Result<VersionMeta, StoreError> {
        let NewCheckpoint { record, mut meta } = ckpt;
        let pair = meta.pair;
        if let Some(l) = &mut meta.lineage
            && l.parent.is_none()
            && meta.reason != Reason::Import
        {
            l.parent = head;
        }
        {
            let mut next = tx.open_table(NEXT_VERSION).map_err(db)?;
            let version = next.get(pair.as_str()).map_err(db)?.map_or(1, |v| v.value());
            next.insert(pair.as_str(), version + 1).map_err(db)?;
            meta.version = version;
            meta.keep = false;
            write_version(tx, &mut meta, &record)?;
            self.apply_retention(tx, pair)?;
        }
        let op = match meta.reason {
            Reason::Manual => Some(AuditOp::Checkpoint),
            Reason::Rollback => Some(AuditOp::Rollback),
            Reason::Promotion => Some(AuditOp::Promotion),
            Reason::Import => Some(AuditOp::Import),
            Reason::Retrain => Some(AuditOp::Retrain),
            Reason::Periodic | Reason::Shutdown | Reason::DriftAdaptation | Reason::Evicted => None,
        };
        if let Some(op) = op {
            let actor = meta
                .lineage
                .as_ref()
                .and_then(|l| l.actor.as_deref())
                .unwrap_or("unknown");
            let entry = AuditEntry::new(meta.created_us, actor, op, pair)
                .versions(head, Some(meta.version))
                .outcome(Outcome::Ok, meta.note.clone());
            append_audit(tx, entry)?;
        }
        tracing::debug!(pair = %pair, version = meta.version, reason = meta.reason.name(), bytes = meta.bytes, "checkpoint stored");
        Ok(meta)
    }

    /// Encodes `state` and stores it as a new version (see [`CheckpointStore::put`]).
    ///
    /// # Errors
    /// [`StoreError::Format`] if it cannot be encoded; [`StoreError::Db`] when the write fails.
    pub fn put_state(&self, state: &PairState, reason: Reason, created_us: i64) -> Result<VersionMeta, StoreError> {
        self.guard(|| {
            let ckpt = NewCheckpoint::new(state, reason, created_us).map_err(|source| StoreError::Format {
                what: format!("{}", state.engine.pair()),
                source,
            })?;
            self.put(ckpt)
        })
    }

    /// Deletes the pair's versions beyond the newest `keep_last` that are not marked keep.
    fn apply_retention(&self, tx: &redb::WriteTransaction, pair: Pair) -> Result<(), StoreError> {
        let mut versions = tx.open_table(VERSIONS).map_err(db)?;
        let mut doomed = Vec::new();
        {
            let all: Vec<(u64, bool)> = versions
                .range((pair.as_str(), 0)..=(pair.as_str(), u64::MAX))
                .map_err(db)?
                .map(|r| {
                    let (k, v) = r.map_err(db)?;
                    let version = k.value().1;
                    // A version whose metadata cannot be read is not known to be kept: retention may drop it.
                    let keep = serde_json::from_slice::<VersionMeta>(v.value()).is_ok_and(|m| m.keep);
                    Ok((version, keep))
                })
                .collect::<Result<_, StoreError>>()?;
            let newest_first = all.iter().rev();
            for (i, &(version, keep)) in newest_first.enumerate() {
                if i >= self.retention.keep_last && !keep {
                    doomed.push(version);
                }
            }
        }
        if doomed.is_empty() {
            return Ok(());
        }
        let mut records = tx.open_table(CHECKPOINTS).map_err(db)?;
        for v in doomed {
            versions.remove((pair.as_str(), v)).map_err(db)?;
            records.remove((pair.as_str(), v)).map_err(db)?;
        }
        Ok(())
    }

    /// Every pair with at least one version, in order.
    ///
    /// # Errors
    /// [`StoreError::Db`] when the file cannot be read.
    pub fn pairs(&self) -> Result<Vec<Pair>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(db)?;
            let next = tx.open_table(NEXT_VERSION).map_err(db)?;
            let mut pairs = Vec::new();
            for r in next.iter().map_err(db)? {
                let (k, _) = r.map_err(db)?;
                if let Some(p) = Pair::parse(k.value()) {
                    pairs.push(p);
                }
            }
            Ok(pairs)
        })
    }

    /// The metadata of every version, of one pair or of all, oldest first per pair.
    ///
    /// # Errors
    /// [`StoreError::Db`] when the file cannot be read; [`StoreError::Meta`] for an unreadable record.
    pub fn list(&self, pair: Option<Pair>) -> Result<Vec<VersionMeta>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(db)?;
            let versions = tx.open_table(VERSIONS).map_err(db)?;
            let rows = match pair {
                Some(p) => versions.range((p.as_str(), 0)..=(p.as_str(), u64::MAX)),
                None => versions.range::<(&str, u64)>(..),
            }
            .map_err(db)?;
            let mut out = Vec::new();
            for r in rows {
                let (k, v) = r.map_err(db)?;
                let (p, version) = k.value();
                out.push(parse_meta(p, version, v.value())?);
            }
            Ok(out)
        })
    }

    /// One version's metadata.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is no such version.
    pub fn meta(&self, pair: Pair, version: u64) -> Result<VersionMeta, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(db)?;
            let versions = tx.open_table(VERSIONS).map_err(db)?;
            let v = versions
                .get((pair.as_str(), version))
                .map_err(db)?
                .ok_or(StoreError::NotFound { pair, version })?;
            parse_meta(pair.as_str(), version, v.value())
        })
    }

    /// One version's record, checked (magic, version, checksum) but not decoded.
    fn record(&self, pair: Pair, version: u64) -> Result<Vec<u8>, StoreError> {
        let tx = self.db.begin_read().map_err(db)?;
        let records = tx.open_table(CHECKPOINTS).map_err(db)?;
        let bytes = records
            .get((pair.as_str(), version))
            .map_err(db)?
            .ok_or(StoreError::NotFound { pair, version })?
            .value()
            .to_vec();
        format::open(&bytes).map_err(|source| StoreError::Format {
            what: format!("{pair} version {version}"),
            source,
        })?;
        Ok(bytes)
    }

    /// One version's state.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or [`StoreError::Format`] when the record is damaged.
    pub fn get(&self, pair: Pair, version: u64) -> Result<PairState, StoreError> {
        self.guard(|| {
            let bytes = self.record(pair, version)?;
            format::decode(&bytes).map_err(|source| StoreError::Format {
                what: format!("{pair} version {version}"),
                source,
            })
        })
    }

    /// The newest version of `pair` that reads (checksum and payload), skipping damaged ones with a
    /// warning; `None` when the pair has no version at all.
    ///
    /// # Errors
    /// [`StoreError::NoGoodVersion`] when versions exist but none reads (the caller decides whether to
    /// start fresh); [`StoreError::Db`] when the file cannot be read.
    pub fn latest_good(&self, pair: Pair) -> Result<Option<(VersionMeta, PairState)>, StoreError> {
        self.newest_readable(pair, |_| true)
    }

    /// The newest readable version of `pair` a service may resume from: as [`CheckpointStore::latest_good`],
    /// skipping versions with reason `retrain`. A retrained version reaches service only through the
    /// contest (a challenge), never by being restored as the live model; a pair with retrained versions
    /// only starts fresh.
    ///
    /// # Errors
    /// As [`CheckpointStore::latest_good`].
    pub fn latest_restorable(&self, pair: Pair) -> Result<Option<(VersionMeta, PairState)>, StoreError> {
        self.newest_readable(pair, |m| m.reason != Reason::Retrain)
    }

    /// The newest version of `pair` that `wanted` accepts and that reads, skipping damaged ones with a
    /// warning; `None` when no version is wanted.
    fn newest_readable(
        &self,
        pair: Pair,
        wanted: impl Fn(&VersionMeta) -> bool,
    ) -> Result<Option<(VersionMeta, PairState)>, StoreError> {
        self.guard(|| {
            let metas: Vec<VersionMeta> = self.list(Some(pair))?.into_iter().filter(|m| wanted(m)).collect();
            if metas.is_empty() {
                return Ok(None);
            }
            for meta in metas.into_iter().rev() {
                match self.get(pair, meta.version) {
                    Ok(state) => return Ok(Some((meta, state))),
                    Err(e @ (StoreError::Format { .. } | StoreError::NotFound { .. })) => {
                        tracing::warn!(pair = %pair, version = meta.version, error = %e, "checkpoint unreadable; trying an older version");
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(StoreError::NoGoodVersion(pair))
        })
    }

    /// Marks a version to keep (or not) whatever the retention.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when there is no such version.
    pub fn mark_keep(
        &self,
        pair: Pair,
        version: u64,
        keep: bool,
        actor: &str,
        at_us: i64,
    ) -> Result<VersionMeta, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(db)?;
            let meta = {
                let mut versions = tx.open_table(VERSIONS).map_err(db)?;
                let mut meta = match versions.get((pair.as_str(), version)).map_err(db)? {
                    Some(v) => parse_meta(pair.as_str(), version, v.value())?,
                    None => return Err(StoreError::NotFound { pair, version }),
                };
                meta.keep = keep;
                let json = serde_json::to_vec(&meta).map_err(|e| StoreError::Meta {
                    pair,
                    version,
                    message: e.to_string(),
                })?;
                versions.insert((pair.as_str(), version), json.as_slice()).map_err(db)?;
                meta
            };
            if !keep {
                self.apply_retention(&tx, pair)?;
            }
            let detail = if keep {
                "kept whatever the retention"
            } else {
                "keep mark removed"
            };
            let entry = AuditEntry::new(at_us, actor, AuditOp::Keep, pair)
                .versions(Some(version), None)
                .outcome(Outcome::Ok, Some(detail.into()));
            append_audit(&tx, entry)?;
            tx.commit().map_err(db)?;
            Ok(meta)
        })
    }

    /// Makes an older version the latest again by copying it as a new version with reason `rollback`;
    /// the versions in between stay in the history (subject to retention).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], or [`StoreError::Format`] when that version is damaged (a rollback never
    /// installs an unreadable model).
    pub fn rollback(
        &self,
        pair: Pair,
        version: u64,
        created_us: i64,
        actor: &str,
        note: Option<String>,
    ) -> Result<VersionMeta, StoreError> {
        self.guard(|| {
            let source = self.meta(pair, version)?;
            let record = self.record(pair, version)?;
            // The copy's lineage is the source's (same data, code, configuration), with the version it came
            // from as parent and this rollback's actor.
            let mut lineage = source.lineage.clone().unwrap_or_default();
            lineage.parent = Some(version);
            lineage.actor = Some(actor.to_string());
            let meta = VersionMeta {
                created_us,
                created: format_ts(created_us),
                reason: Reason::Rollback,
                keep: false,
                note: Some(note.unwrap_or_else(|| format!("rollback to version {version}"))),
                lineage: Some(lineage),
                ..source
            };
            let new = self.put(NewCheckpoint { record, meta })?;
            tracing::info!(pair = %pair, from = version, version = new.version, "rolled back");
            Ok(new)
        })
    }

    /// Writes one version to a standalone file in the checkpoint format (what [`CheckpointStore::import`]
    /// and `format::decode` read).
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Format`] for a damaged version, [`StoreError::Io`].
    pub fn export(&self, pair: Pair, version: u64, path: &Path) -> Result<VersionMeta, StoreError> {
        self.guard(|| {
            let meta = self.meta(pair, version)?;
            let record = self.record(pair, version)?;
            std::fs::write(path, &record).map_err(|source| StoreError::Io {
                path: path.into(),
                source,
            })?;
            Ok(meta)
        })
    }

    /// Reads a checkpoint file (as [`CheckpointStore::export`] writes it) and stores it as a new version of
    /// its pair with reason `import`; its metadata is taken from the state.
    ///
    /// # Errors
    /// [`StoreError::Io`], [`StoreError::Format`] when the file is not a readable checkpoint.
    pub fn import(&self, path: &Path, created_us: i64, actor: &str) -> Result<VersionMeta, StoreError> {
        self.guard(|| {
            let record = std::fs::read(path).map_err(|source| StoreError::Io {
                path: path.into(),
                source,
            })?;
            let state = format::decode(&record).map_err(|source| StoreError::Format {
                what: path.display().to_string(),
                source,
            })?;
            let parts = format::PairStateRef {
                engine: &state.engine,
                applied: state.applied.as_ref(),
                contest: state.contest.as_ref(),
            };
            let mut meta = meta_of(parts, Reason::Import, created_us, record.len());
            meta.note = Some(format!("imported from {}", path.display()));
            if let Some(l) = &mut meta.lineage {
                l.actor = Some(actor.to_string());
                l.dataset = Some(Dataset {
                    kind: "file".into(),
                    ticks: state.engine.ticks(),
                    hash: Some(sha256_of(&record)),
                    source: Some(path.display().to_string()),
                    ..Dataset::default()
                });
            }
            self.put(NewCheckpoint { record, meta })
        })
    }

    /// Takes in a version another instance wrote (cluster mode's shared store), under its own number: the
    /// record and metadata as they are, the pair's next number moved past it, and the cut naming it as the
    /// pair's current version, so this instance's next version of the pair continues the numbering and
    /// descends from it. Returns false when the version was already here with the same record.
    ///
    /// A version under that number with another record is one this instance wrote and never shared (its
    /// upload failed before the other instance took the pair over): it is replaced, since the shared one
    /// is the version the cluster's forecasts name.
    ///
    /// # Errors
    /// [`StoreError::Db`], [`StoreError::Meta`] when the metadata cannot be written.
    pub fn adopt(&self, meta: &VersionMeta, record: &[u8]) -> Result<bool, StoreError> {
        self.guard(|| {
            let (pair, version) = (meta.pair, meta.version);
            let tx = self.db.begin_write().map_err(db)?;
            let here = {
                let records = tx.open_table(CHECKPOINTS).map_err(db)?;
                let existing = records.get((pair.as_str(), version)).map_err(db)?;
                existing.map(|r| r.value() == record)
            };
            if here != Some(true) {
                if here == Some(false) {
                    tracing::warn!(pair = %pair, version,
                        "a local version never shared is replaced by the shared version of the same number");
                }
                write_version(&tx, &mut meta.clone(), record)?;
            }
            {
                let mut next = tx.open_table(NEXT_VERSION).map_err(db)?;
                let n = next.get(pair.as_str()).map_err(db)?.map_or(1, |v| v.value());
                if n <= version {
                    next.insert(pair.as_str(), version + 1).map_err(db)?;
                }
            }
            let mut cut = read_cut(&tx.open_table(CUTS).map_err(db)?)?.unwrap_or_default();
            cut.heads.insert(pair.to_string(), version);
            write_cut(&tx, &cut)?;
            tx.commit().map_err(db)?;
            Ok(here != Some(true))
        })
    }
}

/// The audit log, approvals and challenge marks (see [`super::audit`]).
impl CheckpointStore {
    /// Whether the four-eyes rule holds for this file: set by `cambio serve` from `[registry]
    /// require_approval` when it opens the file, and honoured by `cambio models` offline, so a rule the
    /// service runs under cannot be bypassed by stopping it.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn require_approval(&self) -> Result<bool, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(db)?;
            let info = tx.open_table(INFO).map_err(db)?;
            Ok(info.get(REQUIRE_APPROVAL).map_err(db)?.is_some_and(|v| v.value() == 1))
        })
    }

    /// Records the four-eyes rule (see [`CheckpointStore::require_approval`]).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn set_require_approval(&self, on: bool) -> Result<(), StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(db)?;
            tx.open_table(INFO)
                .map_err(db)?
                .insert(REQUIRE_APPROVAL, u64::from(on))
                .map_err(db)?;
            tx.commit().map_err(db)?;
            Ok(())
        })
    }

    /// Appends an entry to the audit log (for operations the store does not perform itself: a live
    /// challenge, a refused request). Returns it with its number.
    ///
    /// # Errors
    /// [`StoreError::Db`] when the write fails.
    pub fn append_audit(&self, entry: AuditEntry) -> Result<AuditEntry, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(db)?;
            let entry = append_audit(&tx, entry)?;
            tx.commit().map_err(db)?;
            Ok(entry)
        })
    }

    /// The audit log, oldest first, of one pair or of all.
    ///
    /// # Errors
    /// [`StoreError::Db`], or [`StoreError::Record`] for an entry that does not read.
    pub fn audit(&self, pair: Option<Pair>) -> Result<Vec<AuditEntry>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(db)?;
            let table = tx.open_table(AUDIT).map_err(db)?;
            let mut out = Vec::new();
            for r in table.iter().map_err(db)? {
                let (k, v) = r.map_err(db)?;
                let entry: AuditEntry = serde_json::from_slice(v.value()).map_err(|e| StoreError::Record {
                    what: format!("audit entry {}", k.value()),
                    message: e.to_string(),
                })?;
                if pair.is_none_or(|p| p == entry.pair) {
                    out.push(entry);
                }
            }
            Ok(out)
        })
    }

    /// Records a request that needs a second person's approval (the four-eyes rule), with an audit entry
    /// (outcome `pending`). The version it names must exist.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] for a missing version; [`StoreError::Db`].
    pub fn request_approval(
        &self,
        pair: Pair,
        requested: Requested,
        actor: &str,
        at_us: i64,
    ) -> Result<Approval, StoreError> {
        self.guard(|| {
            let version = requested.version();
            self.meta(pair, version)?;
            let tx = self.db.begin_write().map_err(db)?;
            let approval = {
                let mut info = tx.open_table(INFO).map_err(db)?;
                let id = info.get(NEXT_APPROVAL).map_err(db)?.map_or(1, |v| v.value());
                info.insert(NEXT_APPROVAL, id + 1).map_err(db)?;
                Approval {
                    id,
                    pair,
                    requested,
                    requested_by: actor.to_string(),
                    requested_at: format_ts(at_us),
                }
            };
            let json = serde_json::to_vec(&approval).map_err(|e| StoreError::Record {
                what: format!("request {}", approval.id),
                message: e.to_string(),
            })?;
            tx.open_table(APPROVALS)
                .map_err(db)?
                .insert(approval.id, json.as_slice())
                .map_err(db)?;
            let entry = AuditEntry::new(at_us, actor, AuditOp::Request, pair)
                .versions(None, Some(version))
                .outcome(
                    Outcome::Pending,
                    Some(format!(
                        "request {}: {}, waiting for approval",
                        approval.id,
                        requested.describe()
                    )),
                );
            append_audit(&tx, entry)?;
            tx.commit().map_err(db)?;
            Ok(approval)
        })
    }

    /// The requests waiting for approval, oldest first.
    ///
    /// # Errors
    /// [`StoreError::Db`], or [`StoreError::Record`] for a request that does not read.
    pub fn approvals(&self) -> Result<Vec<Approval>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(db)?;
            let table = tx.open_table(APPROVALS).map_err(db)?;
            let mut out = Vec::new();
            for r in table.iter().map_err(db)? {
                let (k, v) = r.map_err(db)?;
                out.push(serde_json::from_slice(v.value()).map_err(|e| StoreError::Record {
                    what: format!("request {}", k.value()),
                    message: e.to_string(),
                })?);
            }
            Ok(out)
        })
    }

    /// Checks that `actor` may approve request `id`: it is pending and was made by someone else. A refusal
    /// is recorded in the audit log (outcome `refused`). The request stays pending until
    /// [`CheckpointStore::complete_approval`], which the caller runs once the operation is done, so a
    /// failed operation leaves it to be approved again.
    ///
    /// # Errors
    /// [`StoreError::NoApproval`], [`StoreError::SameActor`], [`StoreError::Db`].
    pub fn check_approval(&self, id: u64, actor: &str, at_us: i64) -> Result<Approval, StoreError> {
        self.guard(|| {
            let approval = self
                .approvals()?
                .into_iter()
                .find(|a| a.id == id)
                .ok_or(StoreError::NoApproval(id))?;
            if approval.requested_by == actor {
                let refusal = StoreError::SameActor {
                    id,
                    actor: actor.to_string(),
                };
                let entry = AuditEntry::new(at_us, actor, AuditOp::Approve, approval.pair)
                    .versions(None, Some(approval.requested.version()))
                    .outcome(Outcome::Refused, Some(refusal.to_string()));
                self.append_audit(entry)?;
                return Err(refusal);
            }
            Ok(approval)
        })
    }

    /// Removes approved request `id` and records the approval (by `actor`, leading to version `to`).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn complete_approval(
        &self,
        approval: &Approval,
        actor: &str,
        at_us: i64,
        to: Option<u64>,
    ) -> Result<(), StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(db)?;
            tx.open_table(APPROVALS).map_err(db)?.remove(approval.id).map_err(db)?;
            let entry = AuditEntry::new(at_us, actor, AuditOp::Approve, approval.pair)
                .versions(Some(approval.requested.version()), to)
                .outcome(
                    Outcome::Ok,
                    Some(format!(
                        "request {} by {}: {}",
                        approval.id,
                        approval.requested_by,
                        approval.requested.describe()
                    )),
                );
            append_audit(&tx, entry)?;
            tx.commit().map_err(db)?;
            Ok(())
        })
    }

    /// Marks `version` to run as its pair's challenger when `cambio serve` next starts (the offline
    /// `cambio models challenge`), with an audit entry. The version must read.
    ///
    /// # Errors
    /// [`StoreError::NotFound`], [`StoreError::Format`] for a damaged version, [`StoreError::Db`].
    pub fn mark_challenge(&self, pair: Pair, version: u64, actor: &str, at_us: i64) -> Result<(), StoreError> {
        self.guard(|| {
            self.record(pair, version)?;
            let tx = self.db.begin_write().map_err(db)?;
            tx.open_table(CHALLENGES)
                .map_err(db)?
                .insert(pair.as_str(), version)
                .map_err(db)?;
            let entry = AuditEntry::new(at_us, actor, AuditOp::Challenge, pair)
                .versions(Some(version), None)
                .outcome(
                    Outcome::Pending,
                    Some("runs as the challenger from the next `cambio serve` start".into()),
                );
            append_audit(&tx, entry)?;
            tx.commit().map_err(db)?;
            Ok(())
        })
    }

    /// The versions marked to run as challengers, per pair.
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn challenges(&self) -> Result<BTreeMap<Pair, u64>, StoreError> {
        self.guard(|| {
            let tx = self.db.begin_read().map_err(db)?;
            let table = tx.open_table(CHALLENGES).map_err(db)?;
            let mut out = BTreeMap::new();
            for r in table.iter().map_err(db)? {
                let (k, v) = r.map_err(db)?;
                if let Some(p) = Pair::parse(k.value()) {
                    out.insert(p, v.value());
                }
            }
            Ok(out)
        })
    }

    /// Removes a pair's challenge mark once the service runs it, with an audit entry (actor `actor`,
    /// `outcome`: ok when it runs, refused with the reason when it could not).
    ///
    /// # Errors
    /// [`StoreError::Db`].
    pub fn clear_challenge(&self, pair: Pair, entry: AuditEntry) -> Result<(), StoreError> {
        self.guard(|| {
            let tx = self.db.begin_write().map_err(db)?;
            tx.open_table(CHALLENGES)
                .map_err(db)?
                .remove(pair.as_str())
                .map_err(db)?;
            append_audit(&tx, entry)?;
            tx.commit().map_err(db)?;
            Ok(())
        })
    }
}

/// The pair's current version (the cut's head, else its newest) when its record is byte for byte the
/// part's: the same engine, contest and stream sequences.
fn same_as_head(
    tx: &redb::WriteTransaction,
    head: Option<u64>,
    part: &NewCheckpoint,
) -> Result<Option<u64>, StoreError> {
    let pair = part.meta.pair.as_str();
    let Some(head) = head else {
        return Ok(None);
    };
    let records = tx.open_table(CHECKPOINTS).map_err(db)?;
    let same = records
        .get((pair, head))
        .map_err(db)?
        .is_some_and(|r| r.value() == part.record.as_slice());
    Ok(same.then_some(head))
}

/// The pair's current version: the cut's head, else its newest version.
fn head_of(tx: &redb::WriteTransaction, cut: Option<&Cut>, pair: Pair) -> Result<Option<u64>, StoreError> {
    if let Some(&v) = cut.and_then(|c| c.heads.get(pair.as_str())) {
        return Ok(Some(v));
    }
    let versions = tx.open_table(VERSIONS).map_err(db)?;
    let mut range = versions
        .range((pair.as_str(), 0)..=(pair.as_str(), u64::MAX))
        .map_err(db)?;
    match range.next_back() {
        Some(r) => Ok(Some(r.map_err(db)?.0.value().1)),
        None => Ok(None),
    }
}

/// Writes a version's record and its metadata (with the record's size) under `meta`'s pair and number.
fn write_version(tx: &redb::WriteTransaction, meta: &mut VersionMeta, record: &[u8]) -> Result<(), StoreError> {
    let (pair, version) = (meta.pair, meta.version);
    meta.bytes = record.len() as u64;
    let json = serde_json::to_vec(&*meta).map_err(|e| StoreError::Meta {
        pair,
        version,
        message: e.to_string(),
    })?;
    tx.open_table(CHECKPOINTS)
        .map_err(db)?
        .insert((pair.as_str(), version), record)
        .map_err(db)?;
    tx.open_table(VERSIONS)
        .map_err(db)?
        .insert((pair.as_str(), version), json.as_slice())
        .map_err(db)?;
    Ok(())
}

/// Appends an entry to the audit log in `tx`, numbering it after the last one.
fn append_audit(tx: &redb::WriteTransaction, mut entry: AuditEntry) -> Result<AuditEntry, StoreError> {
    let mut table = tx.open_table(AUDIT).map_err(db)?;
    let last = table.last().map_err(db)?.map(|(k, _)| k.value());
    entry.seq = last.map_or(1, |l| l + 1);
    let json = serde_json::to_vec(&entry).map_err(|e| StoreError::Record {
        what: format!("audit entry {}", entry.seq),
        message: e.to_string(),
    })?;
    table.insert(entry.seq, json.as_slice()).map_err(db)?;
    Ok(entry)
}

fn read_cut(table: &impl ReadableTable<&'static str, &'static [u8]>) -> Result<Option<Cut>, StoreError> {
    match table.get(CUT_KEY).map_err(db)? {
        Some(v) => serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Cut(e.to_string())),
        None => Ok(None),
    }
}

fn write_cut(tx: &redb::WriteTransaction, cut: &Cut) -> Result<(), StoreError> {
    let json = serde_json::to_vec(cut).map_err(|e| StoreError::Cut(e.to_string()))?;
    tx.open_table(CUTS)
        .map_err(db)?
        .insert(CUT_KEY, json.as_slice())
        .map_err(db)?;
    Ok(())
}

fn parse_meta(pair: &str, version: u64, bytes: &[u8]) -> Result<VersionMeta, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Meta {
        pair: Pair::parse(pair).unwrap_or_else(|| Pair::parse("XXXXXX").expect("a valid pair literal")),
        version,
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use crate::engine::EngineConfig;

    fn usdmxn() -> Pair {
        Pair::parse("USDMXN").unwrap()
    }

    fn state(pair: Pair, ticks: usize) -> PairState {
        let mut engine = Engine::new(pair, &EngineConfig::default()).unwrap();
        let mut out = Vec::new();
        for t in crate::testkit::synth_ticks(pair, ticks) {
            engine.on_tick(&t, &mut out);
        }
        PairState {
            engine,
            applied: None,
            contest: None,
        }
    }

    fn tmp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("cambio-store-{}-{name}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        dir
    }

    #[test]
    fn a_file_held_open_is_locked_not_damaged() {
        let path = tmp("locked");
        let _held = CheckpointStore::open(&path, Retention::default()).unwrap();
        let second = CheckpointStore::open(&path, Retention::default());
        assert!(matches!(second, Err(StoreError::Locked { .. })), "{second:?}");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_cut_writes_no_copy_of_the_current_version() {
        let path = tmp("nocopy");
        let store = CheckpointStore::open(&path, Retention::default()).unwrap();
        let s = state(usdmxn(), 100);
        let part = |s: &PairState, at| NewCheckpoint::new(s, Reason::DriftAdaptation, at).unwrap();
        for at in 0..3 {
            store.put_cut(vec![part(&s, at)], None, Vec::new(), at).unwrap();
        }
        assert_eq!(
            store.list(Some(usdmxn())).unwrap().len(),
            1,
            "three identical states, one version"
        );
        let later = state(usdmxn(), 150);
        let written = store.put_cut(vec![part(&later, 4)], None, Vec::new(), 4).unwrap();
        assert_eq!(written.len(), 1, "a changed state is written");
        assert_eq!(store.cut().unwrap().unwrap().heads.get("USDMXN"), Some(&2));
        // An identical state after an older one is written again: only the current version counts.
        assert!(store.put_cut(vec![part(&s, 5)], None, Vec::new(), 5).unwrap().len() == 1);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn an_adopted_version_keeps_its_number_and_the_numbering_continues_after_it() {
        // Instance A wrote versions 1..=7 and shared 7; instance B, which had written 1 and 2 of its own
        // while it held the pair before, takes 7 over.
        let (a, b) = (tmp("adopt-a"), tmp("adopt-b"));
        let a = CheckpointStore::open(&a, Retention::default()).unwrap();
        let b_store = CheckpointStore::open(&b, Retention::default()).unwrap();
        for (i, t) in (1..=7).zip((10..).step_by(10)) {
            let s = state(usdmxn(), t);
            a.put_cut(
                vec![NewCheckpoint::new(&s, Reason::Periodic, i).unwrap()],
                None,
                Vec::new(),
                i,
            )
            .unwrap();
        }
        for t in [5_i64, 6] {
            let s = state(usdmxn(), t as usize);
            b_store
                .put_cut(
                    vec![NewCheckpoint::new(&s, Reason::Periodic, t).unwrap()],
                    None,
                    Vec::new(),
                    t,
                )
                .unwrap();
        }
        let meta = a.meta(usdmxn(), 7).unwrap();
        let record = a.record(usdmxn(), 7).unwrap();
        assert!(b_store.adopt(&meta, &record).unwrap(), "written the first time");
        assert!(
            !b_store.adopt(&meta, &record).unwrap(),
            "the same version again changes nothing"
        );
        assert_eq!(b_store.meta(usdmxn(), 7).unwrap(), meta);
        assert_eq!(b_store.cut().unwrap().unwrap().heads.get("USDMXN"), Some(&7));
        let next = state(usdmxn(), 200);
        let written = b_store
            .put_cut(
                vec![NewCheckpoint::new(&next, Reason::Periodic, 9).unwrap()],
                None,
                Vec::new(),
                9,
            )
            .unwrap();
        assert_eq!(written[0].version, 8, "numbered after the adopted version");
        assert_eq!(
            written[0].lineage.as_ref().and_then(|l| l.parent),
            Some(7),
            "and descends from it"
        );
        // A version this instance wrote under a number the shared one has is replaced by the shared one.
        let other = state(usdmxn(), 300);
        let mut m2 = meta.clone();
        m2.version = 2;
        let r2 = NewCheckpoint::new(&other, Reason::Periodic, 10).unwrap().record;
        assert!(b_store.adopt(&m2, &r2).unwrap());
        assert_eq!(b_store.record(usdmxn(), 2).unwrap(), r2);
        let _ = std::fs::remove_file(tmp("adopt-a"));
        let _ = std::fs::remove_file(tmp("adopt-b"));
    }

    #[test]
    fn a_put_on_a_file_with_a_cut_updates_the_cut() {
        // Files written by serve have a cut; rollback and import must still work on them.
        let path = tmp("putcut");
        let store = CheckpointStore::open(&path, Retention::default()).unwrap();
        let s = state(usdmxn(), 100);
        store
            .put_cut(
                vec![NewCheckpoint::new(&s, Reason::Periodic, 1).unwrap()],
                None,
                Vec::new(),
                1,
            )
            .unwrap();
        let m = store.rollback(usdmxn(), 1, 2, "t", None).unwrap();
        assert_eq!(store.cut().unwrap().unwrap().heads.get("USDMXN"), Some(&m.version));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn versions_are_monotonic_and_retention_keeps_last_k_plus_marked() {
        let path = tmp("retention");
        let store = CheckpointStore::open(&path, Retention { keep_last: 3 }).unwrap();
        let s = state(usdmxn(), 50);
        for i in 0..3 {
            store.put_state(&s, Reason::Periodic, i).unwrap();
        }
        store.mark_keep(usdmxn(), 1, true, "t", 1).unwrap();
        for i in 3..8 {
            let m = store.put_state(&s, Reason::Periodic, i).unwrap();
            assert_eq!(m.version, i as u64 + 1);
        }
        let versions: Vec<u64> = store.list(Some(usdmxn())).unwrap().iter().map(|m| m.version).collect();
        assert_eq!(versions, [1, 6, 7, 8], "the newest 3 and the kept one");
        store.mark_keep(usdmxn(), 1, false, "t", 2).unwrap();
        let versions: Vec<u64> = store.list(Some(usdmxn())).unwrap().iter().map(|m| m.version).collect();
        assert_eq!(versions, [6, 7, 8], "unmarking lets retention drop it");
        // Numbers are not reused after deletions.
        assert_eq!(store.put_state(&s, Reason::Manual, 9).unwrap().version, 9);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn the_file_does_not_grow_without_bound() {
        let path = tmp("growth");
        let store = CheckpointStore::open(&path, Retention { keep_last: 2 }).unwrap();
        let s = state(usdmxn(), 300);
        for i in 0..20 {
            store.put_state(&s, Reason::Periodic, i).unwrap();
        }
        let after_20 = std::fs::metadata(&path).unwrap().len();
        for i in 20..120 {
            store.put_state(&s, Reason::Periodic, i).unwrap();
        }
        let after_120 = std::fs::metadata(&path).unwrap().len();
        assert!(after_120 <= after_20 * 2, "{after_20} -> {after_120} bytes");
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn rollback_creates_a_new_version_and_keeps_history() {
        let path = tmp("rollback");
        let store = CheckpointStore::open(&path, Retention::default()).unwrap();
        let early = state(usdmxn(), 100);
        let late = state(usdmxn(), 400);
        store.put_state(&early, Reason::Periodic, 1_000).unwrap();
        store.put_state(&late, Reason::Periodic, 2_000).unwrap();
        let m = store.rollback(usdmxn(), 1, 3_000, "t", None).unwrap();
        assert_eq!((m.version, m.reason, m.ticks), (3, Reason::Rollback, 100));
        assert_eq!(m.note.as_deref(), Some("rollback to version 1"));
        assert_eq!(store.list(Some(usdmxn())).unwrap().len(), 3, "history preserved");
        let (meta, restored) = store.latest_good(usdmxn()).unwrap().unwrap();
        assert_eq!(meta.version, 3);
        assert_eq!(
            serde_json::to_string(&restored.engine).unwrap(),
            serde_json::to_string(&early.engine).unwrap()
        );
        assert!(matches!(
            store.rollback(usdmxn(), 99, 4_000, "t", None),
            Err(StoreError::NotFound { version: 99, .. })
        ));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn latest_good_skips_a_damaged_version() {
        let path = tmp("damaged");
        let store = CheckpointStore::open(&path, Retention::default()).unwrap();
        store.put_state(&state(usdmxn(), 100), Reason::Periodic, 1).unwrap();
        store.put_state(&state(usdmxn(), 200), Reason::Periodic, 2).unwrap();
        // Damage version 2's record in place (as a bad disk would).
        {
            let tx = store.db.begin_write().unwrap();
            {
                let mut t = tx.open_table(CHECKPOINTS).unwrap();
                let mut bytes = t.get(("USDMXN", 2)).unwrap().unwrap().value().to_vec();
                let mid = bytes.len() / 2;
                bytes[mid] ^= 0xff;
                t.insert(("USDMXN", 2), bytes.as_slice()).unwrap();
            }
            tx.commit().unwrap();
        }
        assert!(matches!(
            store.get(usdmxn(), 2),
            Err(StoreError::Format {
                source: FormatError::Checksum { .. },
                ..
            })
        ));
        let (meta, s) = store.latest_good(usdmxn()).unwrap().unwrap();
        assert_eq!((meta.version, s.engine.ticks()), (1, 100));
        assert!(
            store.rollback(usdmxn(), 2, 3, "t", None).is_err(),
            "never roll back to a damaged model"
        );
        let eurusd = Pair::parse("EURUSD").unwrap();
        assert!(store.latest_good(eurusd).unwrap().is_none());
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn export_then_import_is_a_new_version_with_the_same_state() {
        let path = tmp("export");
        let file = tmp("export.ckpt");
        let store = CheckpointStore::open(&path, Retention::default()).unwrap();
        let s = state(usdmxn(), 150);
        store.put_state(&s, Reason::Shutdown, 1).unwrap();
        store.export(usdmxn(), 1, &file).unwrap();
        let back = format::decode(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(back.engine.ticks(), 150);
        let m = store.import(&file, 2, "t").unwrap();
        assert_eq!((m.version, m.reason, m.ticks), (2, Reason::Import, 150));
        std::fs::write(&file, b"not a checkpoint").unwrap();
        assert!(matches!(
            store.import(&file, 3, "t"),
            Err(StoreError::Format {
                source: FormatError::BadMagic,
                ..
            })
        ));
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(&file);
    }

    #[test]
    fn lineage_and_audit_survive_a_reopen() {
        let path = tmp("lineage");
        {
            let store = CheckpointStore::open(&path, Retention::default()).unwrap();
            let s = state(usdmxn(), 100);
            let mut first = NewCheckpoint::new(&s, Reason::Periodic, 1_000).unwrap();
            let mut seg = super::super::Segment::default();
            seg.on_tick(Some(7), Some(1_700_000_000_000_000), b"{}");
            if let Some(l) = &mut first.meta.lineage {
                l.actor = Some("serve".into());
                l.dataset = Some(seg.describe().0);
            }
            store.put(first).unwrap();
            let mut manual = NewCheckpoint::new(&state(usdmxn(), 150), Reason::Manual, 2_000).unwrap();
            if let Some(l) = &mut manual.meta.lineage {
                l.actor = Some("alice".into());
            }
            store.put(manual).unwrap();
            store.rollback(usdmxn(), 1, 3_000, "bob", None).unwrap();
            store.mark_keep(usdmxn(), 1, true, "carol", 4_000).unwrap();
        }
        let store = CheckpointStore::open_existing(&path, Retention::default()).unwrap();
        let v: Vec<VersionMeta> = store.list(Some(usdmxn())).unwrap();
        let l1 = v[0].lineage.clone().unwrap();
        assert_eq!(
            (l1.actor.as_deref(), l1.parent),
            (Some("serve"), None),
            "the first version has no parent"
        );
        assert_eq!(l1.dataset.unwrap().first_seq, Some(7));
        assert_eq!(l1.code.unwrap().crate_version, env!("CARGO_PKG_VERSION"));
        assert_eq!(
            l1.config_hash.as_deref(),
            Some(crate::engine::config_hash(&EngineConfig::default()).as_str())
        );
        let l2 = v[1].lineage.clone().unwrap();
        assert_eq!(
            (l2.actor.as_deref(), l2.parent),
            (Some("alice"), Some(1)),
            "parent: the previous version"
        );
        let l3 = v[2].lineage.clone().unwrap();
        assert_eq!(
            (l3.actor.as_deref(), l3.parent),
            (Some("bob"), Some(1)),
            "parent: the version rolled back to"
        );
        let entries = store.audit(None).unwrap();
        let audit: Vec<String> = entries
            .iter()
            .map(|e| {
                let v = |x: Option<u64>| x.map_or_else(|| "-".to_string(), |v| v.to_string());
                format!(
                    "{} {} {} {} {}",
                    e.seq,
                    e.op.name(),
                    e.actor,
                    v(e.from_version),
                    v(e.to_version)
                )
            })
            .collect();
        assert_eq!(
            audit,
            ["1 checkpoint alice 1 2", "2 rollback bob 2 3", "3 keep carol 1 -"],
            "periodic versions are not registry operations; the others are, in order"
        );
        // Appending after a reopen continues the numbering.
        let e = store
            .append_audit(AuditEntry::new(5_000, "dave", AuditOp::Challenge, usdmxn()))
            .unwrap();
        assert_eq!(e.seq, 4);
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn four_eyes_requests_survive_a_reopen_and_need_another_actor() {
        let path = tmp("approval");
        {
            let store = CheckpointStore::open(&path, Retention::default()).unwrap();
            store.put_state(&state(usdmxn(), 100), Reason::Periodic, 1).unwrap();
            store.put_state(&state(usdmxn(), 200), Reason::Periodic, 2).unwrap();
            assert!(!store.require_approval().unwrap());
            store.set_require_approval(true).unwrap();
            let a = store
                .request_approval(usdmxn(), Requested::Rollback { version: 1 }, "alice", 3)
                .unwrap();
            assert_eq!(a.id, 1);
            assert!(matches!(
                store.request_approval(usdmxn(), Requested::Rollback { version: 9 }, "alice", 3),
                Err(StoreError::NotFound { version: 9, .. })
            ));
        }
        let store = CheckpointStore::open_existing(&path, Retention::default()).unwrap();
        assert!(store.require_approval().unwrap());
        let pending = store.approvals().unwrap();
        assert_eq!(pending.len(), 1, "the request survives a reopen");
        assert_eq!(pending[0].requested_by, "alice");
        let refused = store.check_approval(1, "alice", 4).unwrap_err();
        assert!(matches!(refused, StoreError::SameActor { id: 1, .. }), "{refused}");
        assert!(refused.to_string().contains("different actor"), "{refused}");
        assert!(matches!(
            store.check_approval(2, "bob", 4),
            Err(StoreError::NoApproval(2))
        ));
        let a = store.check_approval(1, "bob", 5).unwrap();
        let m = store.rollback(usdmxn(), 1, 6, &a.requested_by, None).unwrap();
        store.complete_approval(&a, "bob", 7, Some(m.version)).unwrap();
        assert!(store.approvals().unwrap().is_empty());
        let ops: Vec<(String, String, String)> = store
            .audit(Some(usdmxn()))
            .unwrap()
            .into_iter()
            .map(|e| (e.op.name().into(), e.actor, e.outcome.name().into()))
            .collect();
        let want = [
            ("request", "alice", "pending"),
            ("approve", "alice", "refused"),
            ("rollback", "alice", "ok"),
            ("approve", "bob", "ok"),
        ];
        assert_eq!(ops, want.map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string())));
        let _ = std::fs::remove_file(&path);
    }

    #[test]
    fn a_challenge_mark_is_kept_until_cleared() {
        let path = tmp("challenge");
        let store = CheckpointStore::open(&path, Retention::default()).unwrap();
        store.put_state(&state(usdmxn(), 100), Reason::Periodic, 1).unwrap();
        assert!(matches!(
            store.mark_challenge(usdmxn(), 5, "alice", 2),
            Err(StoreError::NotFound { version: 5, .. })
        ));
        store.mark_challenge(usdmxn(), 1, "alice", 2).unwrap();
        drop(store);
        let store = CheckpointStore::open_existing(&path, Retention::default()).unwrap();
        assert_eq!(store.challenges().unwrap().get(&usdmxn()), Some(&1));
        store
            .clear_challenge(usdmxn(), AuditEntry::new(3, "serve", AuditOp::Challenge, usdmxn()))
            .unwrap();
        assert!(store.challenges().unwrap().is_empty());
        assert_eq!(store.audit(None).unwrap().len(), 2);
        let _ = std::fs::remove_file(&path);
    }
}
