//! `cambio models`: the model registry in a redb checkpoint file, offline.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use cambio::checkpoint::lineage::os_user;
use cambio::checkpoint::{CheckpointStore, Requested, Retention, StoreError, cli};
use cambio::nats::serve::router::now_us;
use cambio::tick::Pair;

use super::{CliError, Out, parse_pair};

/// `cambio models`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Who runs a command that changes the registry: recorded in the audit log and the lineage of a version
/// it writes. Asserted, not verified: anyone who can write the file can write any name.
#[derive(clap::Args)]
struct Actor {
    /// Your name for the audit log (default: $USER, else $LOGNAME).
    #[arg(long)]
    actor: Option<String>,
}

impl Actor {
    fn name(&self) -> String {
        self.actor.clone().unwrap_or_else(os_user)
    }
}

/// The pair and version of a command, given as `PAIR [VERSION]` or `--pair P [--version N]`.
#[derive(clap::Args)]
struct Target {
    /// The pair (or --pair).
    #[arg(value_name = "PAIR")]
    pair_arg: Option<String>,
    /// The version (or --version).
    #[arg(value_name = "VERSION")]
    version_arg: Option<u64>,
    /// The pair.
    #[arg(long, conflicts_with = "pair_arg")]
    pair: Option<String>,
    /// The version.
    #[arg(long, conflicts_with = "version_arg")]
    version: Option<u64>,
}

impl Target {
    fn pair(&self) -> Result<Pair, CliError> {
        match self.pair.as_deref().or(self.pair_arg.as_deref()) {
            Some(p) => parse_pair(p),
            None => Err(CliError::Usage("give the pair: PAIR or --pair PAIR".into())),
        }
    }

    fn version(&self) -> Option<u64> {
        self.version.or(self.version_arg)
    }

    fn required_version(&self) -> Result<u64, CliError> {
        self.version()
            .ok_or_else(|| CliError::Usage("give the version: PAIR VERSION or --version N".into()))
    }
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
        /// Every version's metadata (with its lineage) as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One version with its lineage (the newest without a version): `show USDMXN 7`.
    Show {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        #[command(flatten)]
        target: Target,
        /// The metadata as JSON.
        #[arg(long)]
        json: bool,
    },
    /// What changed between two versions: configuration keys, window, data, scores, parent, reason, actor.
    Diff {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The pair.
        pair: String,
        /// The older version.
        a: u64,
        /// The newer version.
        b: u64,
    },
    /// Make an older version the latest again: it is copied as a new version (reason rollback), so the
    /// history stays. A running service picks it up on its next start. Under the four-eyes rule (the file
    /// was last served with `[registry] require_approval = true`) this only records a request.
    Rollback {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Versions kept per pair (retention applies to the new version).
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
        #[command(flatten)]
        actor: Actor,
    },
    /// Mark a version to keep whatever the retention (or, with --off, remove the mark).
    Keep {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        #[command(flatten)]
        target: Target,
        /// Remove the mark instead.
        #[arg(long)]
        off: bool,
        /// Versions kept per pair (applied when a mark is removed).
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
        #[command(flatten)]
        actor: Actor,
    },
    /// Run a version as the pair's challenger from the next `cambio serve` start (the live service takes
    /// `{"op":"challenge","version":N}` on fx.models.<PAIR>). Under the four-eyes rule this only records a
    /// request.
    Challenge {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        actor: Actor,
    },
    /// The registry's audit log: who did what, when, from which version to which.
    Audit {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// Only this pair.
        #[arg(long)]
        pair: Option<String>,
        /// As a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// The requests waiting for approval (four-eyes rule).
    Approvals {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// As a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Approve a pending request (by someone other than who made it) and carry it out.
    Approve {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        /// The request's id (see `cambio models approvals`).
        id: u64,
        /// Versions kept per pair.
        #[arg(long, default_value_t = 10)]
        keep_last: usize,
        #[command(flatten)]
        actor: Actor,
    },
    /// Write one version (the newest without --version) to a standalone checkpoint file.
    Export {
        /// The redb file.
        #[arg(long)]
        db: PathBuf,
        #[command(flatten)]
        target: Target,
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
        #[command(flatten)]
        actor: Actor,
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
        Command::List { db, pair, json } => {
            let pair = pair.as_deref().map(parse_pair).transpose()?;
            let store = open(&db, default_keep)?;
            let text = if json {
                cli::list_json(&store, pair)?
            } else {
                cli::list(&store, pair)?
            };
            write!(out, "{text}")?;
        }
        Command::Show { db, target, json } => {
            let store = open(&db, default_keep)?;
            let (pair, version) = (target.pair()?, target.version());
            let text = if json {
                cli::show_json(&store, pair, version)?
            } else {
                cli::show(&store, pair, version)?
            };
            write!(out, "{text}")?;
        }
        Command::Diff { db, pair, a, b } => {
            write!(
                out,
                "{}",
                cli::diff(&open(&db, default_keep)?, parse_pair(&pair)?, a, b)?
            )?;
        }
        Command::Rollback {
            db,
            target,
            keep_last,
            actor,
        } => {
            let (pair, version) = (target.pair()?, target.required_version()?);
            let store = open(&db, keep_last)?;
            if store.require_approval()? {
                let a = store.request_approval(pair, Requested::Rollback { version }, &actor.name(), now_us())?;
                writeln!(
                    out,
                    "request {}: {pair} rollback to version {version} waits for approval by another actor \
                     (cambio models approve {} --actor NAME)",
                    a.id, a.id
                )?;
            } else {
                let m = store.rollback(pair, version, now_us(), &actor.name(), None)?;
                writeln!(
                    out,
                    "{} version {} is now the latest: a copy of version {version}",
                    m.pair, m.version
                )?;
            }
        }
        Command::Keep {
            db,
            target,
            off,
            keep_last,
            actor,
        } => {
            let (pair, version) = (target.pair()?, target.required_version()?);
            let m = open(&db, keep_last)?.mark_keep(pair, version, !off, &actor.name(), now_us())?;
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
        Command::Challenge { db, target, actor } => {
            let (pair, version) = (target.pair()?, target.required_version()?);
            let store = open(&db, default_keep)?;
            if store.require_approval()? {
                let a = store.request_approval(pair, Requested::Challenge { version }, &actor.name(), now_us())?;
                writeln!(
                    out,
                    "request {}: {pair} challenge with version {version} waits for approval by another actor \
                     (cambio models approve {} --actor NAME)",
                    a.id, a.id
                )?;
            } else {
                store.mark_challenge(pair, version, &actor.name(), now_us())?;
                writeln!(
                    out,
                    "{pair} version {version} runs as the challenger from the next `cambio serve` start"
                )?;
            }
        }
        Command::Audit { db, pair, json } => {
            let pair = pair.as_deref().map(parse_pair).transpose()?;
            write!(out, "{}", cli::audit(&open(&db, default_keep)?, pair, json)?)?;
        }
        Command::Approvals { db, json } => {
            write!(out, "{}", cli::approvals(&open(&db, default_keep)?, json)?)?;
        }
        Command::Approve {
            db,
            id,
            keep_last,
            actor,
        } => {
            let store = open(&db, keep_last)?;
            let name = actor.name();
            let approval = store.check_approval(id, &name, now_us())?;
            match approval.requested {
                Requested::Rollback { version } => {
                    let note = format!(
                        "rollback to version {version}, requested by {} and approved by {name} (request {id})",
                        approval.requested_by
                    );
                    let m = store.rollback(approval.pair, version, now_us(), &approval.requested_by, Some(note))?;
                    store.complete_approval(&approval, &name, now_us(), Some(m.version))?;
                    writeln!(
                        out,
                        "request {id} approved: {} version {} is now the latest, a copy of version {version}",
                        m.pair, m.version
                    )?;
                }
                Requested::Challenge { version } => {
                    store.mark_challenge(approval.pair, version, &approval.requested_by, now_us())?;
                    store.complete_approval(&approval, &name, now_us(), None)?;
                    writeln!(
                        out,
                        "request {id} approved: {} version {version} runs as the challenger from the next \
                         `cambio serve` start",
                        approval.pair
                    )?;
                }
            }
        }
        Command::Export { db, target, out: file } => {
            let store = open(&db, default_keep)?;
            let meta = cli::resolve(&store, target.pair()?, target.version())?;
            store.export(meta.pair, meta.version, &file)?;
            writeln!(
                out,
                "exported {} version {} to {}",
                meta.pair,
                meta.version,
                file.display()
            )?;
        }
        Command::Import {
            db,
            file,
            keep_last,
            actor,
        } => {
            let store = CheckpointStore::open(&db, Retention { keep_last })?;
            let m = store.import(&file, now_us(), &actor.name())?;
            writeln!(out, "imported {} as {} version {}", file.display(), m.pair, m.version)?;
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
