//! `cambio review`: list, show and label the quarantined ticks kept in JetStream (see `docs/review.md`).
//! With no subcommand, walks the unlabelled ones one by one, reading answers from standard input.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cambio::nats::review::{Review, ReviewOptions};
use cambio::review::{Filter, Label, QuarantinedTick, Reviewed};

use super::{Align, CliError, Out, nats_config, runtime, subjects, write_table};

/// `cambio review`.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    #[command(flatten)]
    common: Common,
}

/// Options every review subcommand takes.
#[derive(clap::Args)]
struct Common {
    /// NATS server URL (overrides the config's [nats] url and CAMBIO_NATS_URL).
    #[arg(long, value_name = "URL", global = true)]
    nats: Option<String>,
    /// Configuration file (its [nats] table).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The subject prefix.
    #[arg(long, default_value = "fx", global = true)]
    prefix: String,
    /// The stream created over `<prefix>.quarantine.>` when no stream captures it (the archive's output
    /// stream, which it then adopts).
    #[arg(long, default_value = "FX_OUT", global = true)]
    stream: String,
    /// The input stream the surrounding prices are read from, as `[serve.jetstream] stream`.
    #[arg(long, default_value = "FX", global = true)]
    input_stream: String,
    /// The key-value bucket of the labels.
    #[arg(long, default_value = "cambio_review", global = true)]
    bucket: String,
    /// How long a stream created here keeps a quarantined tick (`30d`, `12h`).
    #[arg(long, default_value = "30d", value_parser = humantime::parse_duration, global = true)]
    max_age: Duration,
    /// How many MiB a stream created here keeps (the oldest records go first).
    #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u64).range(1..), global = true)]
    max_mib: u64,
    /// Who labels: defaults to the operating-system user ($USER, then $LOGNAME).
    #[arg(long, global = true)]
    actor: Option<String>,
    /// Accepted prices shown before and after a quarantined one.
    #[arg(long, default_value_t = 5, global = true)]
    around: usize,
    /// JSON for scripts instead of text.
    #[arg(long, global = true)]
    json: bool,
}

#[derive(clap::Subcommand)]
enum Sub {
    /// List the quarantined ticks: id (the stream sequence), time, pair, reason, price and label.
    List {
        /// Only this pair (or `_unrouted`).
        #[arg(long)]
        pair: Option<String>,
        /// Only this reason (`implausible_jump`, `malformed`, …).
        #[arg(long)]
        reason: Option<String>,
        /// Only those not labelled yet.
        #[arg(long)]
        unlabelled: bool,
    },
    /// Show one quarantined tick with the accepted prices around it.
    Show {
        /// The id `list` shows.
        id: u64,
    },
    /// Label a quarantined tick: `bad` (correctly refused) or `good` (a real price that was refused).
    Label {
        /// The id `list` shows.
        id: u64,
        /// `good` or `bad`.
        label: String,
        /// A note kept with the label.
        #[arg(long)]
        note: Option<String>,
    },
}

/// The actor's name: `--actor`, else the operating-system user ($USER, then $LOGNAME), else `unknown`.
pub fn actor(given: Option<String>) -> String {
    given
        .filter(|a| !a.trim().is_empty())
        .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
        .or_else(|| std::env::var("LOGNAME").ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".into())
}

/// The wall clock (µs): the time a label is given is an I/O fact, read here at the edge.
fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Runs a review subcommand.
///
/// # Errors
/// [`CliError`] when the connection fails, JetStream refuses, or an id or label is wrong.
pub fn run(args: Args) -> Result<ExitCode, CliError> {
    let c = args.common;
    let opts = ReviewOptions {
        subjects: subjects(&c.prefix)?,
        stream: c.stream.clone(),
        input_stream: c.input_stream.clone(),
        bucket: c.bucket.clone(),
        max_age: c.max_age,
        max_bytes: i64::try_from(c.max_mib.saturating_mul(1 << 20)).unwrap_or(i64::MAX),
        ..ReviewOptions::default()
    };
    let cfg = nats_config(c.nats.clone(), c.config.as_deref())?;
    let actor = actor(c.actor.clone());
    runtime()?.block_on(async {
        let (client, _events) = cambio::nats::connect(&cfg, "cambio-review").await?;
        let review = Review::open(&client, &opts).await?;
        let mut out = Out::stdout();
        match args.command {
            Some(Sub::List {
                pair,
                reason,
                unlabelled,
            }) => {
                let filter = Filter {
                    pair,
                    reason,
                    unlabelled,
                };
                let list = review.list(&filter).await?;
                if c.json {
                    serde_json::to_writer_pretty(&mut out, &list)?;
                    writeln!(out)?;
                } else {
                    write_list(&mut out, &list)?;
                }
            }
            Some(Sub::Show { id }) => {
                let tick = review.get(id).await?;
                let label = review.label_of(&tick).await?;
                let (before, after) = review.surrounding(&tick, c.around).await?;
                if c.json {
                    let v = serde_json::json!({
                        "tick": Reviewed { tick, label },
                        "before": before,
                        "after": after,
                    });
                    serde_json::to_writer_pretty(&mut out, &v)?;
                    writeln!(out)?;
                } else {
                    write_show(&mut out, &Reviewed { tick, label }, &before, &after)?;
                }
            }
            Some(Sub::Label { id, label, note }) => {
                let label = Label::parse(&label)?;
                let rec = review.label(id, label, note, &actor, now_us()).await?;
                if c.json {
                    serde_json::to_writer(&mut out, &rec)?;
                    writeln!(out)?;
                } else {
                    writeln!(
                        out,
                        "{} {} labelled {} by {} at {}",
                        rec.pair, rec.id, rec.label, rec.actor, rec.labelled_at
                    )?;
                }
            }
            None => interactive(&review, &actor, c.around, &mut out).await?,
        }
        out.flush()?;
        Ok::<_, CliError>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn price(p: Option<f64>) -> String {
    p.map_or_else(|| "-".into(), |p| format!("{p}"))
}

/// Text from a feed, made safe for a terminal: control characters (an escape sequence in a malformed
/// payload could rewrite the operator's screen) are shown as `?`.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

fn time_of(t: &QuarantinedTick) -> &str {
    t.record.ts.as_deref().unwrap_or(&t.published)
}

fn write_list(out: &mut Out, list: &[Reviewed]) -> Result<(), CliError> {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|r| {
            vec![
                r.tick.id.to_string(),
                printable(time_of(&r.tick)),
                r.tick.pair.clone(),
                r.tick.record.reason.clone(),
                price(r.tick.price),
                r.label
                    .as_ref()
                    .map_or_else(|| "-".into(), |l| format!("{} ({})", l.label, l.actor)),
            ]
        })
        .collect();
    write_table(
        out,
        &["id", "time", "pair", "reason", "price", "label"],
        &[
            Align::Right,
            Align::Left,
            Align::Left,
            Align::Left,
            Align::Right,
            Align::Left,
        ],
        &rows,
    )?;
    writeln!(out, "{} quarantined ticks", list.len())?;
    Ok(())
}

fn write_show(
    out: &mut Out,
    r: &Reviewed,
    before: &[cambio::review::Neighbour],
    after: &[cambio::review::Neighbour],
) -> Result<(), CliError> {
    let t = &r.tick;
    writeln!(out, "id {}  {}  {}", t.id, printable(&t.pair), printable(time_of(t)))?;
    writeln!(out, "reason   {}", t.record.reason)?;
    if let Some(d) = &t.record.detail {
        writeln!(out, "detail   {}", printable(d))?;
    }
    if let Some(s) = &t.record.source {
        writeln!(out, "source   {}", printable(s))?;
    }
    writeln!(out, "price    {}", price(t.price))?;
    if let Some(raw) = &t.record.raw {
        writeln!(out, "raw      {}", printable(raw))?;
    }
    match &r.label {
        Some(l) => writeln!(out, "label    {} by {} at {}", l.label, l.actor, l.labelled_at)?,
        None => writeln!(out, "label    none")?,
    }
    if before.is_empty() && after.is_empty() {
        writeln!(out, "no accepted prices around it in the input stream")?;
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = before
        .iter()
        .map(|n| vec![n.ts.clone(), format!("{}", n.price), String::new()])
        .collect();
    rows.push(vec![time_of(t).to_string(), price(t.price), "<- quarantined".into()]);
    rows.extend(
        after
            .iter()
            .map(|n| vec![n.ts.clone(), format!("{}", n.price), String::new()]),
    );
    write_table(
        out,
        &["time", "price", ""],
        &[Align::Left, Align::Right, Align::Left],
        &rows,
    )?;
    Ok(())
}

/// Walks the unlabelled ticks, asking `[g]ood/[b]ad/[s]kip/[q]uit` for each; ends at `q` or at the end of
/// standard input.
async fn interactive(review: &Review, actor: &str, around: usize, out: &mut Out) -> Result<(), CliError> {
    let todo = review
        .list(&Filter {
            unlabelled: true,
            ..Filter::default()
        })
        .await?;
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let (mut labelled, mut skipped) = (0usize, 0usize);
    'ticks: for r in &todo {
        let (before, after) = review.surrounding(&r.tick, around).await?;
        write_show(out, r, &before, &after)?;
        loop {
            write!(out, "[g]ood/[b]ad/[s]kip/[q]uit? ")?;
            out.flush()?;
            let Some(line) = lines.next() else { break 'ticks };
            let line = line.map_err(CliError::Output)?;
            let label = match line.trim().to_ascii_lowercase().as_str() {
                "g" | "good" => Label::Good,
                "b" | "bad" => Label::Bad,
                "s" | "skip" => {
                    skipped += 1;
                    writeln!(out)?;
                    continue 'ticks;
                }
                "q" | "quit" => break 'ticks,
                _ => continue,
            };
            let rec = review.label(r.tick.id, label, None, actor, now_us()).await?;
            writeln!(out, "{} {} labelled {} by {}\n", rec.pair, rec.id, rec.label, rec.actor)?;
            labelled += 1;
            continue 'ticks;
        }
    }
    writeln!(
        out,
        "labelled {labelled}, skipped {skipped}, {} unlabelled at start",
        todo.len()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_text_cannot_drive_the_terminal() {
        assert_eq!(printable("a\u{1b}[2Jb\n"), "a?[2Jb?");
        assert_eq!(actor(Some("alice".into())), "alice");
    }
}
