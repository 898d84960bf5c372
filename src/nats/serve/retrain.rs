//! Serve's periodic retraining (`[retrain]`): the batch path of `cambio retrain`, run in the background
//! every `every`, and its result put into the contest as the pair's challenger.
//!
//! Off the tick path: the work (reading the lake, calibrating, fitting, scoring) is CPU-bound and runs on
//! an OS thread of its own, one run at a time; the shards never wait for it. Each run, for each pair:
//! 1. [`crate::retrain::from_path`] on the data lake, the same function `cambio retrain` calls (the
//!    champion it compares with is the registry's latest version of the pair);
//! 2. the result stored as a version with reason `retrain` through the checkpoint writer, the one user of
//!    the registry file;
//! 3. a challenge with it through [`ServiceState::challenge_or_request`], the path of the
//!    `{"op":"challenge"}` request (under the four-eyes rule, a request waiting for approval);
//! 4. the verdict logged, published on `<prefix>.alert.<PAIR>` (`{"type":"retrain",…}`) and counted.
//!
//! A run that fails (no lake data yet, too few ticks, an unreadable file) is logged, alerted, recorded in
//! the audit log and tried again at the next period; it never stops serve.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::checkpointer::{Checkpointer, Job};
use super::outbox::{Outbox, Undelivered};
use super::service::{Challenged, ServiceState};
use super::stats::{Counters, RETRAIN_OUTCOMES};
use crate::checkpoint::{AuditEntry, AuditOp, Outcome};
use crate::contract::{RetrainScore, RetrainVerdict, to_json_vec};
use crate::engine::Engine;
use crate::nats::Subjects;
use crate::retrain::{self, Options, RetrainError};
use crate::tick::Pair;
use crate::time::format_ts;

/// The `[retrain]` table: periodic batch retraining inside serve. Off unless `every` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrainConfig {
    /// Time between the end of a run and the start of the next (`"1d"`, `"6h"`, `"30s"`); unset: off.
    pub every: Option<String>,
    /// Run once at start, then every `every` (default: the first run is `every` after start).
    pub at_start: bool,
    /// The data lake written by `cambio archive` (a folder); a scenario or a tick file also works.
    pub from: Option<PathBuf>,
    /// The pairs to retrain; empty: every pair serve runs at the time of the run.
    pub pairs: Vec<String>,
    /// Share of the ticks held out for scoring (`"20%"` or `0.2`).
    pub holdout: String,
    /// Who the runs act as, in the lineage and the audit log.
    pub actor: String,
    /// Fewest ticks in the training window.
    pub min_window: usize,
    /// Ticks simulated under the window's null to set the detectors' thresholds.
    pub null_ticks: u64,
    /// Most replays of the window in the settings search.
    pub max_evals: usize,
    /// Time bound of the settings search, seconds.
    pub search_secs: f64,
    /// Seed of the null's bootstrap (the same data and seed give the same version).
    pub seed: u64,
    /// Review labels exported by `cambio review list --json` (read at every run when set).
    pub labels: Option<PathBuf>,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        RetrainConfig {
            every: None,
            at_start: false,
            from: None,
            pairs: Vec::new(),
            holdout: "20%".into(),
            actor: "serve-retrain".into(),
            min_window: retrain::DEFAULT_MIN_WINDOW,
            null_ticks: retrain::DEFAULT_NULL_TICKS,
            max_evals: retrain::DEFAULT_MAX_EVALS,
            search_secs: retrain::DEFAULT_SEARCH_SECS,
            seed: 1,
            labels: None,
        }
    }
}

/// A checked `[retrain]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct RetrainPlan {
    /// Between runs.
    pub every: Duration,
    /// Run once at start.
    pub at_start: bool,
    /// The data.
    pub from: PathBuf,
    /// The pairs; empty: every pair served.
    pub pairs: Vec<Pair>,
    /// The hold-out share.
    pub holdout: f64,
    /// The actor.
    pub actor: String,
    /// The search bound.
    pub search: Duration,
    /// The rest of the options (the pair is set per run).
    pub min_window: usize,
    /// As [`RetrainConfig::null_ticks`].
    pub null_ticks: u64,
    /// As [`RetrainConfig::max_evals`].
    pub max_evals: usize,
    /// As [`RetrainConfig::seed`].
    pub seed: u64,
    /// As [`RetrainConfig::labels`].
    pub labels: Option<PathBuf>,
}

impl RetrainConfig {
    /// Checks the table; `None` when retraining is off (no `every`).
    ///
    /// # Errors
    /// A message naming the bad value.
    pub fn plan(&self) -> Result<Option<RetrainPlan>, String> {
        let Some(every) = &self.every else {
            return Ok(None);
        };
        let every = humantime::parse_duration(every)
            .map_err(|e| format!("retrain.every `{every}`: {e} (e.g. \"1d\", \"6h\")"))?;
        if every < Duration::from_secs(1) {
            return Err("retrain.every: at least 1s".into());
        }
        let from = self
            .from
            .clone()
            .ok_or("retrain.from: the data lake folder to retrain from (written by cambio archive)")?;
        let pairs = self
            .pairs
            .iter()
            .map(|p| Pair::parse(p).ok_or_else(|| format!("retrain.pairs: `{p}` is not a pair (e.g. USDMXN)")))
            .collect::<Result<Vec<_>, _>>()?;
        let holdout = retrain::parse_share(&self.holdout).map_err(|e| format!("retrain.holdout: {e}"))?;
        if self.actor.trim().is_empty() {
            return Err("retrain.actor: a name".into());
        }
        if !(self.search_secs.is_finite() && self.search_secs > 0.0) {
            return Err(format!(
                "retrain.search_secs {}: a positive number of seconds",
                self.search_secs
            ));
        }
        if self.null_ticks == 0 || self.max_evals == 0 {
            return Err("retrain.null_ticks and retrain.max_evals must be positive".into());
        }
        Ok(Some(RetrainPlan {
            every,
            at_start: self.at_start,
            from,
            pairs,
            holdout,
            actor: self.actor.trim().to_string(),
            search: Duration::from_secs_f64(self.search_secs),
            min_window: self.min_window,
            null_ticks: self.null_ticks,
            max_evals: self.max_evals,
            seed: self.seed,
            labels: self.labels.clone(),
        }))
    }

    /// Checks the table.
    ///
    /// # Errors
    /// As [`RetrainConfig::plan`].
    pub fn validate(&self) -> Result<(), String> {
        self.plan().map(|_| ())
    }
}

/// What the retraining task needs from serve.
pub struct RetrainTask {
    /// The checked table.
    pub plan: RetrainPlan,
    /// The micro service's state: the challenge path, the registry writer, the running pairs.
    pub state: Arc<ServiceState>,
    /// The client alerts are published on.
    pub client: async_nats::Client,
    /// Subject names.
    pub subjects: Subjects,
    /// Publications, bounded at shutdown.
    pub outbox: Arc<Outbox>,
    /// Where runs are counted.
    pub counters: Arc<Counters>,
}

/// Starts the periodic retraining; the task runs until aborted (at shutdown).
pub fn spawn(task: RetrainTask) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let plan = &task.plan;
        tracing::info!(every_secs = plan.every.as_secs_f64(), at_start = plan.at_start,
            from = %plan.from.display(), actor = %plan.actor, "periodic retraining on");
        if !plan.at_start {
            tokio::time::sleep(plan.every).await;
        }
        loop {
            task.run_once().await;
            tokio::time::sleep(plan.every).await;
        }
    })
}

impl RetrainTask {
    /// One run: every pair in turn.
    async fn run_once(&self) {
        let running: Vec<Pair> = match self.state.registry.read() {
            Ok(reg) => {
                let mut v: Vec<Pair> = reg.keys().copied().collect();
                v.sort_by(|a, b| a.as_str().cmp(b.as_str()));
                v
            }
            Err(_) => Vec::new(),
        };
        let pairs: Vec<Pair> = if self.plan.pairs.is_empty() {
            running.clone()
        } else {
            self.plan.pairs.clone()
        };
        for pair in pairs {
            // A challenger runs in a pair's shard: a pair not served now is retrained when it is.
            if !running.contains(&pair) {
                tracing::info!(pair = %pair, "retrain: the pair is not served now; skipped until it is");
                continue;
            }
            let started = Instant::now();
            let verdict = self.one(pair, started).await;
            self.report(&verdict, started.elapsed());
        }
    }

    /// Retrains `pair`, stores the version and challenges with it.
    async fn one(&self, pair: Pair, started: Instant) -> RetrainVerdict {
        let plan = &self.plan;
        let mut verdict = RetrainVerdict {
            pair,
            ts: String::new(),
            outcome: "failed",
            version: None,
            actor: plan.actor.clone(),
            chosen: None,
            ticks: None,
            holdout: Vec::new(),
            approval_id: None,
            detail: String::new(),
            seconds: 0.0,
        };
        let Some(writer) = self.state.writer.clone() else {
            verdict.detail = "checkpoints are not configured ([checkpoint] path): no registry to write to".into();
            return verdict;
        };
        let retrained = match self.compute(pair, writer.clone()).await {
            Ok(r) => r,
            Err(why) => {
                verdict.detail = why;
                self.audit_failure(&writer, pair, &verdict.detail).await;
                return verdict;
            }
        };
        let mut retrained = retrained;
        let rep = &retrained.report;
        verdict.chosen = Some(rep.chosen.clone());
        verdict.ticks = Some(rep.source.used.ticks);
        if let Some(c) = rep.candidates.iter().find(|c| c.name == rep.chosen) {
            verdict.holdout = c
                .scores
                .iter()
                .map(|h| RetrainScore {
                    horizon: h.horizon.clone(),
                    n: h.n,
                    rmse_ratio: h.rmse_ratio,
                    coverage95: h.coverage95,
                    winkler95: h.winkler95,
                })
                .collect();
        }
        let ckpt = match retrain::checkpoint(&retrained, &plan.actor, super::router::now_us()) {
            Ok(c) => c,
            Err(e) => {
                verdict.detail = e.to_string();
                self.audit_failure(&writer, pair, &verdict.detail).await;
                return verdict;
            }
        };
        let meta = match writer.run(move |store| store.put(ckpt)).await {
            Ok(m) => m,
            Err(e) => {
                verdict.detail = format!("storing the version: {e}");
                return verdict;
            }
        };
        retrained.report.version = Some(meta.version);
        verdict.version = Some(meta.version);
        tracing::info!(pair = %pair, version = meta.version, chosen = %retrained.report.chosen,
            ticks = retrained.report.source.used.ticks, secs = started.elapsed().as_secs_f64(),
            "retrain: version stored; challenging with it");
        match self.state.challenge_or_request(pair, meta.version, &plan.actor).await {
            Ok(Challenged::Running(_)) => {
                verdict.outcome = "challenged";
                verdict.detail = format!(
                    "version {} runs as the live challenger; the contest decides",
                    meta.version
                );
            }
            Ok(Challenged::AwaitingApproval(req)) => {
                verdict.outcome = "awaiting_approval";
                verdict.approval_id = Some(req.id);
                verdict.detail = format!(
                    "challenge with version {} waits for approval by another actor (request {})",
                    meta.version, req.id
                );
            }
            Err(e) => {
                verdict.outcome = "refused";
                verdict.detail = format!("version {} stored; the challenge was refused: {e}", meta.version);
            }
        }
        verdict
    }

    /// The batch path on an OS thread of its own; the answer comes back through a channel, so the async
    /// executor never runs it. At shutdown the thread is left to finish or be ended with the process.
    async fn compute(&self, pair: Pair, writer: Checkpointer) -> Result<retrain::Retrained, String> {
        let plan = self.plan.clone();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name("cambio-retrain".into())
            .spawn(move || {
                let opts = Options {
                    pair,
                    until_us: None,
                    holdout: plan.holdout,
                    min_window: plan.min_window,
                    null_ticks: plan.null_ticks,
                    max_evals: plan.max_evals,
                    seed: plan.seed,
                    labels: plan.labels.clone(),
                };
                let champion = || latest(&writer, pair);
                let search_started = std::cell::OnceCell::new();
                let out_of_time = || search_started.get_or_init(Instant::now).elapsed() >= plan.search;
                let _ = tx.send(retrain::from_path(&plan.from, &opts, champion, &out_of_time));
            });
        if let Err(e) = spawned {
            return Err(format!("cannot start the retraining thread: {e}"));
        }
        match rx.await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("the retraining thread ended without an answer".into()),
        }
    }

    /// A failed run in the audit log (best effort: the log line and the alert say it anyway).
    async fn audit_failure(&self, writer: &Checkpointer, pair: Pair, detail: &str) {
        let entry = AuditEntry::new(super::router::now_us(), &self.plan.actor, AuditOp::Retrain, pair)
            .outcome(Outcome::Refused, Some(format!("retrain failed: {detail}")));
        if let Err(e) = writer.run(move |store| store.append_audit(entry)).await {
            tracing::error!(pair = %pair, error = %e, "retrain: cannot record the failure in the audit log");
        }
    }

    /// Logs, counts and publishes a run's verdict.
    fn report(&self, verdict: &RetrainVerdict, took: Duration) {
        let mut verdict = verdict.clone();
        verdict.ts = format_ts(super::router::now_us());
        verdict.seconds = took.as_secs_f64();
        let ratio = verdict.holdout.first().map_or(f64::NAN, |h| h.rmse_ratio);
        let version = verdict.version.unwrap_or(0);
        match verdict.outcome {
            "failed" | "refused" => tracing::warn!(pair = %verdict.pair, outcome = verdict.outcome, version,
                detail = %verdict.detail, secs = verdict.seconds, "retrain run"),
            _ => tracing::info!(pair = %verdict.pair, outcome = verdict.outcome, version,
                chosen = verdict.chosen.as_deref().unwrap_or(""), holdout_rmse_ratio = ratio,
                detail = %verdict.detail, secs = verdict.seconds, "retrain run"),
        }
        if let Some(i) = RETRAIN_OUTCOMES.iter().position(|o| *o == verdict.outcome) {
            Counters::inc(&self.counters.retrain_runs[i]);
        }
        let ms = u64::try_from(took.as_millis()).unwrap_or(u64::MAX).max(1);
        self.counters.retrain_last_ms.store(ms, Ordering::Relaxed);
        let subject = self.subjects.alert(verdict.pair);
        let body = Bytes::from(to_json_vec(&verdict));
        let (client, outbox, counters) = (self.client.clone(), self.outbox.clone(), self.counters.clone());
        tokio::spawn(async move {
            if let Err(Undelivered::Failed(_)) = outbox.publish(client.publish(subject, body)).await {
                Counters::inc(&counters.publish_errors);
            }
        });
    }
}

/// The registry's latest readable version of `pair` (the champion a retraining is compared with), read
/// through the writer thread from the retraining thread.
fn latest(writer: &Checkpointer, pair: Pair) -> Result<Option<(u64, Engine)>, RetrainError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    if !writer.send(Job::LoadLatest { pair, reply: tx }) {
        return Err(RetrainError::Input("the checkpoint writer has stopped".into()));
    }
    match rx.blocking_recv() {
        Ok(Ok(found)) => Ok(found.map(|(meta, state)| (meta.version, state.engine))),
        Ok(Err(e)) => Err(RetrainError::Input(format!("reading the registry: {e}"))),
        Err(_) => Err(RetrainError::Input("the checkpoint writer has stopped".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_checked_when_on() {
        assert_eq!(RetrainConfig::default().plan(), Ok(None));
        let on: RetrainConfig = toml::from_str("every = \"1d\"\nfrom = \"lake\"\n").unwrap();
        let plan = on.plan().unwrap().unwrap();
        assert_eq!(plan.every, Duration::from_secs(86_400));
        assert_eq!((plan.actor.as_str(), plan.holdout), ("serve-retrain", 0.2));
        assert!(plan.pairs.is_empty() && !plan.at_start);
        for bad in [
            "every = \"1d\"\n",
            "every = \"0s\"\nfrom = \"lake\"\n",
            "every = \"soon\"\nfrom = \"lake\"\n",
            "every = \"1d\"\nfrom = \"lake\"\npairs = [\"usd\"]\n",
            "every = \"1d\"\nfrom = \"lake\"\nholdout = \"100%\"\n",
        ] {
            let c: RetrainConfig = toml::from_str(bad).unwrap();
            assert!(c.plan().is_err(), "{bad}");
        }
        assert!(toml::from_str::<RetrainConfig>("cron = \"0 2 * * *\"\n").is_err());
    }
}
