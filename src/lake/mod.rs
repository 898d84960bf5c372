//! The data lake: every input and output of the model as Apache Parquet files, partitioned Hive-style,
//! `DIR/kind=<kind>/pair=<KEY>/date=<YYYY-MM-DD>/part-<STREAM>-<first seq>-<last seq>.parquet`.
//!
//! Synchronous and clock-free: the caller (`cambio archive`, `replay --archive`) hands in messages and the
//! time, and learns which stream sequences are durable after each roll, so it acknowledges only those.
//! A file is written under a temporary name, fsynced, renamed and its folder fsynced; its name is the
//! range of stream sequences it holds, so a message is never in two files: after a crash, the messages of
//! a file that became durable are known (see [`durable_seqs`]) and skipped when they are delivered again.
//! The schema is in `docs/lake.md`.

pub mod offline;
pub mod rows;

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use rows::{Columns, PLAIN_COLUMNS, Sizes, date_of};
pub use rows::{Fields, HorizonFields, Kind, Message, Route, SCHEMA_VERSION, route};

/// Why the lake could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LakeError {
    /// A file or folder of the lake could not be created, written, synced, renamed or read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// The Parquet writer or reader failed.
    #[error("{}: parquet: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The Parquet error.
        source: parquet::errors::ParquetError,
    },
    /// A batch did not match its schema (a defect of this module, not of the input).
    #[error("building a batch: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LakeError + '_ {
    move |source| LakeError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// When files roll.
#[derive(Debug, Clone, Copy)]
pub struct RollPolicy {
    /// A partition's file is written when it holds this many rows…
    pub max_rows: usize,
    /// …or about this many bytes of payload…
    pub max_bytes: usize,
    /// …or its first row is this old.
    pub max_age: Duration,
    /// Roll a partition's file as soon as a row of the same kind and key comes for another date. A replay
    /// reads in time order, so this keeps one day per pair in memory instead of every day seen.
    pub one_date_per_key: bool,
}

impl Default for RollPolicy {
    fn default() -> Self {
        RollPolicy {
            max_rows: 100_000,
            max_bytes: 64 << 20,
            max_age: Duration::from_secs(10),
            one_date_per_key: false,
        }
    }
}

/// A partition: kind, key (pair), date and stream, and its rows not yet in a file.
struct Partition {
    kind: Kind,
    key: String,
    date: String,
    stream: String,
    cols: Columns,
    seqs: Vec<u64>,
    since: Instant,
}

impl Partition {
    fn is(&self, kind: Kind, key: &str, date: &str, stream: &str) -> bool {
        self.kind == kind && self.key == key && self.date == date && self.stream == stream
    }
}

/// A file made durable: the stream and the sequences it holds (to acknowledge).
#[derive(Debug, Clone, PartialEq)]
pub struct Durable {
    /// The stream.
    pub stream: String,
    /// The sequences in the file.
    pub seqs: Vec<u64>,
    /// The file.
    pub path: PathBuf,
    /// The file's size in bytes.
    pub bytes: u64,
    /// Its kind.
    pub kind: Kind,
    /// Seconds it took to write, fsync and rename.
    pub seconds: f64,
}

/// Told, on the writing thread, of each file it made durable, in the order the files were handed over, or
/// of the error that stopped it (nothing after that).
pub type OnDurable = Box<dyn FnMut(Result<Durable, LakeError>) + Send>;

/// The lake writer.
pub struct Lake {
    dir: PathBuf,
    prefix: String,
    policy: RollPolicy,
    /// The open partitions: a few per pair and day, looked up by a scan from the last one used (a stream
    /// brings runs of one partition; a map keyed by owned strings would allocate a key per message).
    open: Vec<Partition>,
    last: usize,
    /// The sizes of the last file of a kind and key (the most recent [`SIZES_KEPT`]): a new partition of
    /// the same kind and key starts with room for as much, so its columns are not copied as they grow.
    sizes: Vec<(Kind, String, Sizes)>,
    props: WriterProperties,
    /// Files written by a thread of their own, or by the caller.
    background: Option<Background>,
    /// Messages whose subject the lake does not keep.
    pub ignored: u64,
}

/// A file to write.
struct Job {
    batch: arrow_array::RecordBatch,
    tmp: PathBuf,
    path: PathBuf,
    folder: PathBuf,
}

/// The writing thread: files in through a channel of [`QUEUED_FILES`] slots, each told to `on_durable`
/// when written, the first error out when it is joined (or told to `on_durable`).
struct Background {
    tx: Option<std::sync::mpsc::SyncSender<(Job, Durable)>>,
    handle: Option<std::thread::JoinHandle<WriterExit>>,
    /// Files handed over and not yet written.
    in_flight: Arc<AtomicUsize>,
}

/// What the writing thread ends with: its `on_durable` (to start it again) and its first error.
type WriterExit = (Option<OnDurable>, Result<(), LakeError>);

/// Writes `job` durably: temporary name, fsync, rename, folder fsync. Fills in `durable`'s size and time.
fn write_job(job: &Job, durable: &mut Durable, props: WriterProperties) -> Result<(), LakeError> {
    let started = Instant::now();
    let bytes = write_file(&job.tmp, &job.batch, props)?;
    fs::rename(&job.tmp, &job.path).map_err(io_err(&job.path))?;
    sync_dir(&job.folder)?;
    tracing::debug!(file = %job.path.display(), rows = job.batch.num_rows(), bytes, "lake file written");
    durable.bytes = bytes;
    durable.seconds = started.elapsed().as_secs_f64();
    Ok(())
}

/// How rows are written: one row group per file at the default roll size, Snappy (every Parquet reader
/// has it; LZ4 measured no faster here, see docs/lake.md), dictionaries only on the few-valued text
/// columns.
fn writer_properties() -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_key_value_metadata(Some(vec![KeyValue::new(
            "schema_version".to_string(),
            SCHEMA_VERSION.to_string(),
        )]));
    for c in PLAIN_COLUMNS {
        let path = || ColumnPath::new(c.split('.').map(String::from).collect());
        b = b
            .set_column_dictionary_enabled(path(), false)
            .set_column_statistics_enabled(path(), EnabledStatistics::None);
    }
    b.build()
}

/// Files that may wait for the writing thread while it writes one: memory stays bounded (each at most a
/// roll's rows), and the partitions a replay rolls together when a day ends (forecasts, alerts,
/// quarantined ticks) are handed over without waiting for the file before them.
const QUEUED_FILES: usize = 4;

/// Partitions (kind and key) whose last file's sizes are kept.
const SIZES_KEPT: usize = 64;

/// Rows per row group: a file of the default roll size (100,000 rows) is one group.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

impl Lake {
    /// A writer into `dir` (created when missing) for subjects under `prefix`.
    ///
    /// # Errors
    /// [`LakeError::Io`] when `dir` cannot be created.
    pub fn new(dir: &Path, prefix: &str, policy: RollPolicy) -> Result<Lake, LakeError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(Lake {
            dir: dir.to_path_buf(),
            prefix: prefix.to_string(),
            policy,
            open: Vec::new(),
            last: 0,
            sizes: Vec::new(),
            props: writer_properties(),
            background: None,
            ignored: 0,
        })
    }

    /// Writes files on a thread of their own from now on: a roll hands its rows over and returns at once
    /// (no [`Durable`] returned), so encoding, compressing and fsyncing overlap with whatever feeds the
    /// lake. Each file written is told to `on_durable` (the live archive acknowledges its messages then);
    /// without it, files are durable once [`Lake::finish`] returned (`replay --archive`).
    ///
    /// # Errors
    /// [`LakeError::Io`] when the thread cannot be started.
    pub fn write_in_background(&mut self, on_durable: Option<OnDurable>) -> Result<(), LakeError> {
        if self.background.is_some() {
            return Ok(());
        }
        let (tx, rx) = std::sync::mpsc::sync_channel::<(Job, Durable)>(QUEUED_FILES);
        let props = self.props.clone();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let count = Arc::clone(&in_flight);
        let handle = std::thread::Builder::new()
            .name("lake-writer".into())
            .spawn(move || {
                let mut on_durable = on_durable;
                for (job, mut durable) in rx {
                    let written = write_job(&job, &mut durable, props.clone());
                    count.fetch_sub(1, Ordering::AcqRel);
                    match (written, on_durable.as_mut()) {
                        (Ok(()), Some(tell)) => tell(Ok(durable)),
                        (Ok(()), None) => {}
                        (Err(e), Some(tell)) => {
                            tell(Err(e));
                            return (on_durable, Ok(()));
                        }
                        (Err(e), None) => return (on_durable, Err(e)),
                    }
                }
                (on_durable, Ok(()))
            })
            .map_err(io_err(&self.dir))?;
        self.background = Some(Background {
            tx: Some(tx),
            handle: Some(handle),
            in_flight,
        });
        Ok(())
    }

    /// Files handed to the writing thread and not yet written.
    pub fn in_flight(&self) -> usize {
        self.background
            .as_ref()
            .map_or(0, |bg| bg.in_flight.load(Ordering::Acquire))
    }

    /// Writes every partition held and waits for the files being written; returns what became durable
    /// (with a writing thread, what it was handed is told to its `on_durable` instead).
    ///
    /// # Errors
    /// [`LakeError`] when a file cannot be written.
    pub fn finish(&mut self, now: Instant) -> Result<Vec<Durable>, LakeError> {
        let done = self.roll_due(now, true)?;
        self.join_background()?;
        Ok(done)
    }

    /// Writes every partition held and waits until the writing thread has written every file handed to
    /// it (each told to its `on_durable`); the thread goes on afterwards.
    ///
    /// # Errors
    /// [`LakeError`] when a file cannot be written or the thread cannot be started again.
    pub fn flush_and_wait(&mut self, now: Instant) -> Result<Vec<Durable>, LakeError> {
        let done = self.roll_due(now, true)?;
        if self.background.is_some() {
            let on_durable = self.join_background()?;
            self.write_in_background(on_durable)?;
        }
        Ok(done)
    }

    /// Stops the writing thread: its first error, or its `on_durable` back.
    fn join_background(&mut self) -> Result<Option<OnDurable>, LakeError> {
        let Some(mut bg) = self.background.take() else {
            return Ok(None);
        };
        drop(bg.tx.take());
        match bg.handle.take().map(std::thread::JoinHandle::join) {
            Some(Ok((on_durable, r))) => r.map(|()| on_durable),
            Some(Err(_)) => Err(LakeError::Io {
                path: self.dir.clone(),
                source: io::Error::other("the lake's writing thread panicked"),
            }),
            None => Ok(None),
        }
    }

    /// Rows held in memory, not yet in a file.
    pub fn pending_rows(&self) -> usize {
        self.open.iter().map(|o| o.cols.rows()).sum()
    }

    /// Adds `m`; returns false when its subject is not kept (the caller acknowledges it at once).
    /// Rolls the partition's file when it reaches the size limits, returning what became durable.
    ///
    /// # Errors
    /// [`LakeError`] when a rolled file cannot be written.
    pub fn push(&mut self, m: &Message<'_>, now: Instant) -> Result<(bool, Option<Durable>), LakeError> {
        let Some(r) = route(&self.prefix, m.subject) else {
            self.ignored += 1;
            return Ok((false, None));
        };
        let fields = Fields::decode_kind(r.kind, m.payload);
        Ok((true, self.push_row(m, &r, &fields, now)?))
    }

    /// Adds the row of `m`, routed as `r`, with the fields `fields` (read from its payload, or known
    /// already, as a replay knows its outputs). Rolls the partition's file when it reaches the size
    /// limits, returning what became durable.
    ///
    /// # Errors
    /// [`LakeError`] when a rolled file cannot be written.
    pub fn push_row(
        &mut self,
        m: &Message<'_>,
        r: &Route<'_>,
        fields: &Fields<'_>,
        now: Instant,
    ) -> Result<Option<Durable>, LakeError> {
        let mut done = None;
        let date = date_of(fields.ts.as_deref());
        let found = self.find(r.kind, &r.key, date, m.stream);
        if found.is_none() && self.policy.one_date_per_key {
            let mut k = 0;
            while k < self.open.len() {
                let p = &self.open[k];
                if p.kind == r.kind && p.key == r.key && p.stream == m.stream {
                    done = self.roll(k)?;
                } else {
                    k += 1;
                }
            }
        }
        let i = found.unwrap_or_else(|| {
            self.open.push(Partition {
                kind: r.kind,
                key: r.key.to_string(),
                date: date.to_string(),
                stream: m.stream.to_string(),
                cols: match self.sizes.iter().find(|(k, key, _)| *k == r.kind && *key == r.key) {
                    Some((_, _, sizes)) => Columns::with_sizes(r.kind, sizes),
                    None => Columns::new(r.kind),
                },
                seqs: Vec::new(),
                since: now,
            });
            self.open.len() - 1
        });
        self.last = i;
        let open = &mut self.open[i];
        open.cols.push(m, r, fields);
        open.seqs.push(m.seq);
        if open.cols.rows() >= self.policy.max_rows || open.cols.bytes() >= self.policy.max_bytes {
            return self.roll(i);
        }
        Ok(done)
    }

    fn find(&self, kind: Kind, key: &str, date: &str, stream: &str) -> Option<usize> {
        let n = self.open.len();
        (0..n)
            .map(|k| (self.last + k) % n)
            .find(|&i| self.open[i].is(kind, key, date, stream))
    }

    /// Rolls every partition whose first row is older than the policy's age (every one with `all`).
    ///
    /// # Errors
    /// [`LakeError`] when a file cannot be written.
    pub fn roll_due(&mut self, now: Instant, all: bool) -> Result<Vec<Durable>, LakeError> {
        let mut done = Vec::new();
        let mut i = 0;
        while i < self.open.len() {
            if all || now.saturating_duration_since(self.open[i].since) >= self.policy.max_age {
                done.extend(self.roll(i)?);
            } else {
                i += 1;
            }
        }
        Ok(done)
    }

    /// Writes a partition's rows to their file, durably, or hands them to the writing thread (`None`).
    fn roll(&mut self, i: usize) -> Result<Option<Durable>, LakeError> {
        let mut open = self.open.swap_remove(i);
        self.last = 0;
        let folder = self
            .dir
            .join(format!("kind={}", open.kind.name()))
            .join(format!("pair={}", open.key))
            .join(format!("date={}", open.date));
        fs::create_dir_all(&folder).map_err(io_err(&folder))?;
        let first = open.seqs.iter().min().copied().unwrap_or(0);
        let last = open.seqs.iter().max().copied().unwrap_or(0);
        let name = format!("part-{}-{first}-{last}.parquet", open.stream);
        let path = folder.join(&name);
        let tmp = folder.join(format!(".{name}.tmp"));
        let sizes = open.cols.sizes();
        self.sizes.retain(|(k, key, _)| !(*k == open.kind && *key == open.key));
        if self.sizes.len() >= SIZES_KEPT {
            self.sizes.remove(0);
        }
        self.sizes.push((open.kind, open.key.clone(), sizes));
        let job = Job {
            batch: open.cols.finish()?,
            tmp,
            path: path.clone(),
            folder,
        };
        let mut durable = Durable {
            stream: open.stream,
            seqs: open.seqs,
            path,
            bytes: 0,
            kind: open.kind,
            seconds: 0.0,
        };
        let Some(bg) = &mut self.background else {
            write_job(&job, &mut durable, self.props.clone())?;
            return Ok(Some(durable));
        };
        bg.in_flight.fetch_add(1, Ordering::AcqRel);
        let path = durable.path.clone();
        let sent = bg.tx.as_ref().is_some_and(|tx| tx.send((job, durable)).is_ok());
        if !sent {
            // The thread stopped: its error says why.
            self.join_background()?;
            return Err(LakeError::Io {
                path,
                source: io::Error::other("the lake's writing thread stopped"),
            });
        }
        Ok(None)
    }
}

/// Writes `batch` to `path` and fsyncs it; returns the file's size.
fn write_file(path: &Path, batch: &arrow_array::RecordBatch, props: WriterProperties) -> Result<u64, LakeError> {
    let pq = |source| LakeError::Parquet {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::create(path).map_err(io_err(path))?;
    let mut w = ArrowWriter::try_new(&mut file, batch.schema(), Some(props)).map_err(pq)?;
    w.write(batch).map_err(pq)?;
    w.close().map_err(pq)?;
    file.sync_all().map_err(io_err(path))?;
    Ok(file.metadata().map_err(io_err(path))?.len())
}

/// Fsyncs a folder, so a rename in it survives a crash.
fn sync_dir(dir: &Path) -> Result<(), LakeError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Every `.parquet` file under `dir`, with the stream and range its name gives.
fn part_files(dir: &Path, out: &mut Vec<(PathBuf, String, u64, u64)>, temps: &mut Vec<PathBuf>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            part_files(&path, out, temps)?;
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(".part-") && name.ends_with(".tmp") {
            temps.push(path);
        } else if let Some(stem) = name.strip_prefix("part-").and_then(|n| n.strip_suffix(".parquet")) {
            let mut it = stem.rsplitn(3, '-');
            if let (Some(last), Some(first), Some(stream)) = (it.next(), it.next(), it.next())
                && let (Ok(first), Ok(last)) = (first.parse(), last.parse())
            {
                out.push((path, stream.to_string(), first, last));
            }
        }
    }
    Ok(())
}

/// Removes the temporary files a crash left behind (a file not yet renamed holds nothing acknowledged).
/// Returns how many.
///
/// # Errors
/// [`LakeError::Io`] when the lake cannot be listed or a file removed.
pub fn remove_temp_files(dir: &Path) -> Result<usize, LakeError> {
    let (mut files, mut temps) = (Vec::new(), Vec::new());
    part_files(dir, &mut files, &mut temps).map_err(io_err(dir))?;
    for t in &temps {
        fs::remove_file(t).map_err(io_err(t))?;
    }
    Ok(temps.len())
}

/// The sequences of `stream` above `floor` already in a file of the lake: a message delivered again after a
/// crash (its file was durable, its acknowledgement lost) is skipped, not written twice. Only files whose
/// name's range ends above `floor` are read.
///
/// # Errors
/// [`LakeError`] when the lake cannot be listed or a file read.
pub fn durable_seqs(dir: &Path, stream: &str, floor: u64) -> Result<HashSet<u64>, LakeError> {
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let (mut files, mut temps) = (Vec::new(), Vec::new());
    part_files(dir, &mut files, &mut temps).map_err(io_err(dir))?;
    let mut seqs = HashSet::new();
    for (path, s, _first, last) in files {
        if s != stream || last <= floor {
            continue;
        }
        let pq = |source| LakeError::Parquet {
            path: path.clone(),
            source,
        };
        let file = File::open(&path).map_err(io_err(&path))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(pq)?;
        let mask = parquet::arrow::ProjectionMask::columns(builder.parquet_schema(), ["stream_seq"]);
        for batch in builder.with_projection(mask).build().map_err(pq)? {
            let batch = batch?;
            if let Some(col) = batch.column(0).as_any().downcast_ref::<arrow_array::UInt64Array>() {
                seqs.extend(col.values().iter().copied().filter(|&s| s > floor));
            }
        }
    }
    Ok(seqs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg<'a>(seq: u64, subject: &'a str, payload: &'a [u8]) -> Message<'a> {
        Message {
            stream: "FX",
            seq,
            arrival_us: None,
            subject,
            payload,
        }
    }

    #[test]
    fn files_are_named_by_their_sequence_range_and_read_back() {
        let dir = std::env::temp_dir().join(format!("cambio-lake-unit-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut lake = Lake::new(&dir, "fx", RollPolicy::default()).unwrap();
        let now = Instant::now();
        let t = br#"{"pair":"USDMXN","ts":"2024-01-02T10:00:00Z","bid":17.0,"ask":17.1}"#;
        assert!(lake.push(&msg(3, "fx.ticks.USDMXN", t), now).unwrap().0);
        assert!(lake.push(&msg(7, "fx.ticks.USDMXN", t), now).unwrap().0);
        assert!(!lake.push(&msg(8, "fx.quality.USDMXN", b"{}"), now).unwrap().0);
        assert!(lake.push(&msg(9, "fx.ticks.../../x", b"not json"), now).unwrap().0);
        let done = lake.roll_due(now, true).unwrap();
        assert_eq!(done.len(), 2);
        let p = dir.join("kind=ticks/pair=USDMXN/date=2024-01-02/part-FX-3-7.parquet");
        assert!(p.exists(), "{}", p.display());
        assert!(
            dir.join("kind=ticks/pair=______x/date=unknown/part-FX-9-9.parquet")
                .exists()
        );
        assert_eq!(durable_seqs(&dir, "FX", 3).unwrap(), HashSet::from([7, 9]));
        assert_eq!(durable_seqs(&dir, "OTHER", 0).unwrap(), HashSet::new());
        fs::write(dir.join("kind=ticks/.part-FX-1-2.parquet.tmp"), b"x").unwrap();
        assert_eq!(remove_temp_files(&dir).unwrap(), 1);
        let _ = fs::remove_dir_all(&dir);
    }
}
