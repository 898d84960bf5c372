//! `cambio models`: the model registry in a redb checkpoint file, offline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cambio::checkpoint::{CheckpointStore, Retention, StoreError, cli};
use cambio::nats::serve::router::now_us;

use super::{CliError, Out, parse_pair};

/// `cambio models`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(clap::Subcommand)]
enum Command {
    /// A table of versions: pair, version, created, reason, ticks, last tick, first horizon's n and RMSE
    /// ratio, keep mark.
    List {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// Only this pair.
        #[arg(long)]
        pair: Option<String>,
    },
    /// One version's metadata as JSON (the newest without --version).
    Show {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        #[arg(long)]
        pair: String,
        /// The version.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Make an older version the latest again: it is copied as a new version (reason rollback), so the
    /// history stays. A running service picks it up on its next start.
    Rollback {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        #[arg(long)]
        pair: String,
        /// The version to go back to.
        #[arg(long)]
        version: u64,
        /// Versions kept per pair (retention applies to the new version).
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
    },
    /// Mark a version to keep whatever the retention (or, with --off, remove the mark).
    Keep {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        #[arg(long)]
        pair: String,
        /// The version.
        #[arg(long)]
        version: u64,
        /// Remove the mark instead.
        #[arg(long)]
        off: bool,
        /// Versions kept per pair (applied when a mark is removed).
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
    },
    /// Write one version (the newest without --version) to a standalone checkpoint file.
    Export {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        #[arg(long)]
        pair: String,
        /// The version.
        #[arg(long)]
        version: Option<u64>,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Store a checkpoint file as a new version of its pair (reason import); creates the redb file if
    /// missing.
    Import {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The checkpoint file.
        file: PathBuf,
        /// Versions kept per pair.
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
    },
}

fn open(db: &Path, keep_last: usize) -> Result<CheckpointStore, StoreError> {
    CheckpointStore::open_existing(db, Retention { keep_last })
}

/// Runs one registry command and prints its result.
///
/// # Errors
/// [`CliError`] when the file, pair or version is wrong, or standard output cannot be written.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let default_keep = Retention::default().keep_last;
    let mut out = Out::stdout();
    match args.command {
        Command::List { db, pair } => {
            let pair = pair.as_deref().map(parse_pair).transpose()?;
            write!(out, "{}", cli::list(&open(&db, default_keep)?, pair)?)?;
        }
        Command::Show { db, pair, version } => {
            write!(
                out,
                "{}",
                cli::show(&open(&db, default_keep)?, parse_pair(&pair)?, version)?
            )?;
        }
        Command::Rollback {
            db,
            pair,
            version,
            keep_last,
        } => {
            let m = open(&db, keep_last)?.rollback(parse_pair(&pair)?, version, now_us())?;
            writeln!(
                out,
                "{} version {} is now the latest: a copy of version {version}",
                m.pair, m.version
            )?;
        }
        Command::Keep {
            db,
            pair,
            version,
            off,
            keep_last,
        } => {
            let m = open(&db, keep_last)?.mark_keep(parse_pair(&pair)?, version, !off)?;
            if m.keep {
                writeln!(out, "{} version {}: kept whatever the retention", m.pair, m.version)?;
            } else {
                writeln!(
                    out,
                    "{} version {}: no keep mark (retention applies)",
                    m.pair, m.version
                )?;
            }
        }
        Command::Export {
            db,
            pair,
            version,
            out: file,
        } => {
            let store = open(&db, default_keep)?;
            let meta = cli::resolve(&store, parse_pair(&pair)?, version)?;
            store.export(meta.pair, meta.version, &file)?;
            writeln!(
                out,
                "exported {} version {} to {}",
                meta.pair,
                meta.version,
                file.display()
            )?;
        }
        Command::Import { db, file, keep_last } => {
            let store = CheckpointStore::open(&db, Retention { keep_last })?;
            let m = store.import(&file, now_us())?;
            writeln!(out, "imported {} as {} version {}", file.display(), m.pair, m.version)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
