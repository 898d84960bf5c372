//! The subcommands of the `cambio` binary, one module each, and what they share: the error type and exit
//! statuses, standard output for people, the async runtime, the shutdown signal, the NATS options, JSON
//! files and aligned tables.
//!
//! Each module owns its clap `Args` and a `run(args) -> Result<ExitCode, CliError>`; the library does the
//! work, the module turns arguments into options and results into text.

pub mod archive;
pub mod demo;
pub mod floor;
pub mod load;
pub mod models;
pub mod record;
pub mod replay;
pub mod retrain;
pub mod review;
pub mod serve;
pub mod sources;
pub mod tail;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cambio::config::{Config, ConfigError};
use cambio::nats::NatsConfig;
use cambio::quality::Status;
use cambio::tick::Pair;

/// Why a subcommand could not do its job: printed as `error: …`, exit status 2. (A failed scenario
/// expectation or load target is not an error: the command reports it and exits 1.)
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A command line whose arguments do not fit together (said how).
    #[error("{0}")]
    Usage(String),
    /// A `--pair` value that is not a currency pair.
    #[error("--pair {0}: six uppercase letters, e.g. USDMXN")]
    Pair(String),
    /// A subject prefix that would subscribe to the wrong subjects.
    #[error("{0}")]
    Prefix(String),
    /// The input of `replay --nats` does not exist.
    #[error("{}: no such file or folder", .0.display())]
    NoInput(PathBuf),
    /// The configuration file could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A scenario could not be read or is invalid.
    #[error(transparent)]
    Scenario(#[from] cambio::replay::scenario::ScenarioError),
    /// The scenario built into the binary for `demo` is invalid (a defect of the build, not of the input).
    #[error("the demo's embedded scenario: {0}")]
    DemoScenario(String),
    /// A tick file could not be opened or read.
    #[error(transparent)]
    Source(#[from] cambio::replay::source::SourceError),
    /// A replay could not run.
    #[error(transparent)]
    Replay(#[from] cambio::replay::ReplayError),
    /// The NATS connection could not be made (or its options are inconsistent).
    #[error(transparent)]
    Nats(#[from] cambio::nats::NatsError),
    /// `replay --nats` could not publish.
    #[error(transparent)]
    Publish(#[from] cambio::nats::publish::PublishError),
    /// `record` could not record.
    #[error(transparent)]
    Record(#[from] cambio::nats::record::RecordError),
    /// `tail` could not subscribe or write.
    #[error(transparent)]
    Tail(#[from] cambio::nats::tail::TailError),
    /// The floor could not run.
    #[error(transparent)]
    Floor(#[from] cambio::nats::floor::FloorError),
    /// A load run could not be made.
    #[error(transparent)]
    Load(#[from] cambio::nats::load::LoadError),
    /// The service could not start, or failed.
    #[error(transparent)]
    Serve(#[from] cambio::nats::serve::ServeError),
    /// `archive` could not archive.
    #[error(transparent)]
    Archive(#[from] cambio::nats::archive::ArchiveError),
    /// `review` could not read or label a quarantined tick.
    #[error(transparent)]
    Review(#[from] cambio::nats::review::ReviewError),
    /// `review label` was given something other than `good` or `bad`.
    #[error(transparent)]
    Label(#[from] cambio::review::ReviewError),
    /// `replay --archive` could not write the lake.
    #[error(transparent)]
    Lake(#[from] cambio::lake::LakeError),
    /// The model registry (a redb checkpoint file) refused an operation.
    #[error(transparent)]
    Store(#[from] cambio::checkpoint::StoreError),
    /// A sources file is invalid.
    #[error(transparent)]
    SourcesConfig(#[from] cambio::sources::config::ConfigError),
    /// The connectors could not start.
    #[error(transparent)]
    Sources(#[from] cambio::sources::runner::RunError),
    /// The metrics endpoint could not listen.
    #[error(transparent)]
    Metrics(#[from] cambio::nats::metrics_http::MetricsError),
    /// The async runtime could not be started.
    #[error("starting the async runtime: {0}")]
    Runtime(io::Error),
    /// The path of this program is needed (`load` runs its targets as child processes) and is unknown.
    #[error("finding this program's path: {0}")]
    CurrentExe(io::Error),
    /// A file asked for on the command line could not be created or written.
    #[error("{}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: io::Error,
    },
    /// A report could not be encoded as JSON.
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Standard output could not be written (a closed pipe is not an error: see [`Out`]). The only
    /// `io::Error` that `?` converts: every other one is mapped to its own variant, naming what failed.
    #[error("writing to standard output: {0}")]
    Output(#[from] io::Error),
}

/// Exit status 0 when every expectation or target held, 1 otherwise.
pub fn passed_or_1(passed: bool) -> ExitCode {
    if passed { ExitCode::SUCCESS } else { ExitCode::from(1) }
}

/// Exit status 2: the command could not do its job.
pub const ERROR_EXIT: u8 = 2;

/// Standard output for people, locked once, ending quietly on a closed pipe.
pub type Out = QuietPipe<io::StdoutLock<'static>>;

impl Out {
    /// Locks standard output.
    pub fn stdout() -> Out {
        QuietPipe::new(io::stdout().lock())
    }
}

/// A writer whose reader may go away (`cambio demo | head -1`, `--out /dev/stdout | head -1`, a named
/// pipe). A closed pipe is the reader saying it has seen enough: that write and every later one succeed
/// without writing, so the command ends quietly with its usual exit status (`println!` would panic). Any
/// other failure (`> /dev/full`) is returned, and the command fails with [`CliError::Output`].
pub struct QuietPipe<W: Write> {
    inner: W,
    closed: bool,
}

impl<W: Write> QuietPipe<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> QuietPipe<W> {
        QuietPipe { inner, closed: false }
    }

    fn quiet<T>(&mut self, result: io::Result<T>, closed: T) -> io::Result<T> {
        match result {
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                self.closed = true;
                Ok(closed)
            }
            other => other,
        }
    }
}

impl<W: Write> Write for QuietPipe<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.closed {
            return Ok(buf.len());
        }
        let result = self.inner.write(buf);
        self.quiet(result, buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        let result = self.inner.flush();
        self.quiet(result, ())
    }
}

/// The async runtime of the NATS tools: two workers, so the client's connection task runs beside ours.
///
/// # Errors
/// [`CliError::Runtime`] when the runtime cannot be built.
pub fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(CliError::Runtime)
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: how `serve`, `floor` and `archive` are stopped. The handlers
/// are installed when this is called, not when the future is first polled, so a signal that comes while
/// the caller is still connecting is not lost (nor fatal: without a handler, SIGTERM kills the process).
/// Call it inside the runtime, before any set-up that may take time.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let handlers = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).ok(),
            signal(SignalKind::interrupt()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        match handlers {
            (Some(mut term), Some(mut int)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            (Some(mut term), None) => {
                let _ = term.recv().await;
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutdown signal received");
    }
}

/// Completes on Ctrl-C (never, when the handler cannot be installed): how the tools are stopped.
pub async fn ctrl_c() {
    if tokio::signal::ctrl_c().await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// A `--pair` value.
///
/// # Errors
/// [`CliError::Pair`] when it is not six uppercase letters.
pub fn parse_pair(p: &str) -> Result<Pair, CliError> {
    Pair::parse(p).ok_or_else(|| CliError::Pair(p.into()))
}

/// Subjects under a `--prefix`.
///
/// # Errors
/// [`CliError::Prefix`] when the prefix is not a valid subject prefix.
pub fn subjects(prefix: &str) -> Result<cambio::nats::Subjects, CliError> {
    cambio::nats::Subjects::new(prefix).map_err(CliError::Prefix)
}

/// Writes `value` as pretty JSON with a final newline.
///
/// # Errors
/// [`CliError::Json`] or [`CliError::File`].
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<(), CliError> {
    let mut json = serde_json::to_string_pretty(value)?;
    json.push('\n');
    std::fs::write(path, json).map_err(|source| CliError::File {
        path: path.into(),
        source,
    })
}

/// `CAMBIO_NATS_*` variables over the file's [nats] table, then `--nats` over both.
pub fn with_overrides(cfg: NatsConfig, url: Option<String>) -> NatsConfig {
    let mut cfg = cfg.with_env();
    if let Some(u) = url {
        cfg.url = Some(u);
    }
    cfg
}

/// The connection options: the config file's [nats] table, then CAMBIO_NATS_* variables, then `--nats`.
///
/// # Errors
/// [`CliError::Config`] when the file cannot be loaded.
pub fn nats_config(url: Option<String>, config: Option<&Path>) -> Result<NatsConfig, CliError> {
    let file = match config {
        Some(c) => Config::load(c)?.nats,
        None => NatsConfig::default(),
    };
    Ok(with_overrides(file, url))
}

/// A quality status as people (and the wire) spell it.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ok => "ok",
        Status::Warn => "warn",
        Status::Fail => "fail",
    }
}

/// The date part (`YYYY-MM-DD`) of an RFC 3339 time; the whole text when it is shorter.
pub fn day(ts: &str) -> &str {
    ts.get(..10).unwrap_or(ts)
}

/// How a column of [`write_table`] lines up.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Align {
    /// Text: flush left.
    Left,
    /// Numbers: flush right.
    Right,
}

/// Writes `header` and `rows` as columns two spaces apart, each as wide as its widest cell (lines end
/// without trailing spaces). `align` gives each column's alignment; missing entries are left-aligned.
///
/// # Errors
/// The writer's.
pub fn write_table(out: &mut impl Write, header: &[&str], align: &[Align], rows: &[Vec<String>]) -> io::Result<()> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            let w = cell.chars().count();
            match widths.get_mut(i) {
                Some(width) => *width = (*width).max(w),
                None => widths.push(w),
            }
        }
    }
    let header: Vec<String> = header.iter().map(|h| (*h).to_string()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            let pad = widths[i].saturating_sub(cell.chars().count());
            if align.get(i) == Some(&Align::Right) {
                line.extend(std::iter::repeat_n(' ', pad));
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_on_the_widest_cell() {
        let mut out = Vec::new();
        let rows = vec![
            vec!["1step".to_string(), "12".into(), "0.5".into()],
            vec!["throughput stored".to_string(), "3".into(), "n/a".into()],
        ];
        write_table(
            &mut out,
            &["horizon", "n", "ratio"],
            &[Align::Left, Align::Right],
            &rows,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "horizon             n  ratio\n\
             1step              12  0.5\n\
             throughput stored   3  n/a\n"
        );
    }

    #[test]
    fn dates_of_times() {
        assert_eq!(day("2020-03-09T00:00:00.000Z"), "2020-03-09");
        assert_eq!(day("?"), "?");
    }
}
