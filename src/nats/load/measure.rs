//! The three measurements against a running target, and the readiness probe. The target is a black box
//! on NATS: ticks go to `<prefix>.ticks.<PAIR>`, answers come back on `<prefix>.pred.<PAIR>` carrying the
//! tick's `seq`, and queries go to `<prefix>.query.<PAIR>`.
//!
//! Pacing runs on its own OS thread with `std::thread::sleep` (tens of microseconds of slack) rather than
//! on the async timer (a millisecond wheel), so the schedule's error stays well below the latencies
//! measured.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_nats::{Client, Subject};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::runtime::Handle;

use super::report::{LatencySummary, ThroughputSummary, latency_histogram, record_us};
use super::schedule::Schedule;
use super::target::{Running, TargetError};
use super::ticks::{TickGen, seq_of};
use crate::nats::Subjects;
use crate::tick::Pair;

/// Why a measurement failed (not a slow target: that is a result).
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// Publishing, subscribing or flushing failed.
    #[error("nats: {0}")]
    Nats(String),
    /// The target did not become ready in time.
    #[error("{target} not ready within {secs} s: {what}; its log {log}:\n{tail}")]
    NotReady {
        /// Which.
        target: &'static str,
        /// The bound.
        secs: u64,
        /// What did not answer.
        what: &'static str,
        /// Its log.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// The target process failed.
    #[error(transparent)]
    Target(#[from] TargetError),
    /// A run too long to track (the send log is sized by the run).
    #[error("{0} messages in one run is more than the load tool tracks (at most 50,000,000)")]
    TooLong(u64),
}

fn nats(e: impl std::fmt::Display) -> MeasureError {
    MeasureError::Nats(e.to_string())
}

/// cambio's own tick-to-forecast percentiles from its micro service's STATS (`None` when it does not
/// answer within a second or the reply has no such figures).
pub async fn in_process_latency(bus: &Bus) -> Option<super::report::InProcess> {
    let subject = format!("$SRV.STATS.{}", crate::nats::serve::service::SERVICE_NAME);
    let reply = tokio::time::timeout(Duration::from_secs(1), bus.subscriber.request(subject, Bytes::new()))
        .await
        .ok()?
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    // Service-wide figures sit in the STATS reply's top-level `data`, not in an endpoint's.
    let t = v["data"]["tick_to_forecast"].as_object()?;
    Some(super::report::InProcess {
        p50_us: t.get("p50_us")?.as_u64()?,
        p99_us: t.get("p99_us")?.as_u64()?,
        p999_us: t.get("p999_us")?.as_u64()?,
    })
}

/// The clients and subjects of a load run. Ticks and queries go out on one connection and forecasts come
/// back on another, as they would from separate producer and consumer processes.
#[derive(Debug, Clone)]
pub struct Bus {
    /// Publishes ticks, sends requests.
    pub publisher: Client,
    /// Subscribes to forecasts.
    pub subscriber: Client,
    /// The contract's subjects.
    pub subjects: Subjects,
    /// The pair of the load (USDMXN).
    pub pair: Pair,
}

impl Bus {
    fn ticks(&self) -> Subject {
        Subject::from(self.subjects.ticks(self.pair))
    }
    fn pred(&self) -> String {
        self.subjects.pred(self.pair)
    }
}

/// Most messages tracked in one run (10 minutes at 80,000 a second).
const MAX_TRACKED: u64 = 50_000_000;

/// Publishes ticks until one of them is answered on the pred subject: then the target's subscription (or
/// consumer) and its publishing path are both live. A tick is re-sent every 250 ms, since ticks sent
/// before the target subscribed (or created its stream) are gone.
async fn until_answered(
    bus: &Bus,
    feed: &mut TickGen,
    running: &mut Running,
    burst: usize,
    bound: Duration,
) -> Result<(), MeasureError> {
    let mut preds = bus.subscriber.subscribe(bus.pred()).await.map_err(nats)?;
    bus.subscriber.flush().await.map_err(nats)?;
    let deadline = Instant::now() + bound;
    let subject = bus.ticks();
    let mut first = true;
    loop {
        running.check_alive()?;
        let n = if first { burst.max(1) } else { 1 };
        first = false;
        for _ in 0..n {
            let (_, payload) = feed.next_tick();
            bus.publisher.publish(subject.clone(), payload).await.map_err(nats)?;
        }
        bus.publisher.flush().await.map_err(nats)?;
        let want = feed.last_seq();
        let step = Instant::now() + Duration::from_millis(250);
        while let Ok(Some(msg)) = tokio::time::timeout_at(step.into(), preds.next()).await {
            if seq_of(&msg.payload).is_some_and(|s| s >= want) {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            return Err(not_ready(running, bound, "no forecast for a probe tick"));
        }
    }
}

fn not_ready(running: &Running, bound: Duration, what: &'static str) -> MeasureError {
    MeasureError::NotReady {
        target: running.target().name(),
        secs: bound.as_secs(),
        what,
        log: running.log().display().to_string(),
        tail: super::target::tail(running.log(), 20),
    }
}

/// Waits until the target's micro service answers `$SRV.PING.<name>` and a probe tick gets a forecast.
///
/// # Errors
/// [`MeasureError::NotReady`] after `bound`, or [`MeasureError::Target`] when the child exits.
pub async fn wait_ready(
    bus: &Bus,
    feed: &mut TickGen,
    running: &mut Running,
    bound: Duration,
) -> Result<(), MeasureError> {
    let deadline = Instant::now() + bound;
    let ping = format!("$SRV.PING.{}", running.target().service_name());
    loop {
        running.check_alive()?;
        let req = bus.publisher.request(ping.clone(), Bytes::new());
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(500), req).await {
            break;
        }
        if Instant::now() > deadline {
            return Err(not_ready(running, bound, "no reply to $SRV.PING"));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    until_answered(
        bus,
        feed,
        running,
        1,
        deadline.saturating_duration_since(Instant::now()),
    )
    .await
}

/// Feeds `n` ticks and waits for the last one's forecast, so a query has a forecast to return.
///
/// # Errors
/// As [`wait_ready`].
pub async fn prime(bus: &Bus, feed: &mut TickGen, running: &mut Running, n: usize) -> Result<(), MeasureError> {
    until_answered(bus, feed, running, n, Duration::from_secs(20)).await
}

/// Runs `send(state, i, scheduled)` for every message of `sched` from `0` to `total` on a dedicated
/// thread, each at (or as soon as possible after) its instant. Returns the largest lag behind the schedule
/// and the state.
async fn pace<S, F>(sched: Schedule, total: u64, state: S, mut send: F) -> Result<(Duration, S), MeasureError>
where
    S: Send + 'static,
    F: FnMut(&mut S, &Handle, u64, Instant) -> Result<(), MeasureError> + Send + 'static,
{
    let handle = Handle::current();
    tokio::task::spawn_blocking(move || {
        let mut state = state;
        let mut max_lag = Duration::ZERO;
        let mut i = 0;
        while i < total {
            let due = sched.due_at(Instant::now()).min(total);
            while i < due {
                let at = sched.at(i);
                max_lag = max_lag.max(Instant::now().saturating_duration_since(at));
                send(&mut state, &handle, i, at)?;
                i += 1;
            }
            if i < total {
                let wait = sched.at(i).saturating_duration_since(Instant::now());
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
            }
        }
        Ok((max_lag, state))
    })
    .await
    .map_err(|e| MeasureError::Nats(format!("pacing thread: {e}")))?
}

async fn wait_ack(ack: async_nats::jetstream::context::PublishAckFuture) -> Result<(), MeasureError> {
    ack.await.map(|_| ()).map_err(nats)
}

/// What a fixed-rate measurement runs.
#[derive(Debug, Clone, Copy)]
pub struct RatePlan {
    /// Messages a second.
    pub rate: u64,
    /// Length of the run, warm-up included.
    pub duration: Duration,
    /// The first part of the run that is not recorded.
    pub warmup: Duration,
    /// How long to wait for the last answers once sending ends.
    pub drain: Duration,
}

impl RatePlan {
    fn counts(&self) -> Result<(Schedule, u64, u64), MeasureError> {
        let sched = Schedule::new(Instant::now() + Duration::from_millis(20), self.rate);
        let total = sched.count_in(self.duration);
        if total > MAX_TRACKED {
            return Err(MeasureError::TooLong(total));
        }
        let warm = sched.count_in(self.warmup).min(total);
        Ok((sched, total, warm))
    }
}

/// Send instants of one run, indexed by message number; `0` = not sent yet, `u64::MAX` = answered.
struct SendLog {
    ns: Vec<AtomicU64>,
}

impl SendLog {
    fn new(n: u64) -> SendLog {
        SendLog {
            ns: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Tick-to-forecast latency: ticks at `plan.rate` (open loop), each forecast matched by `seq` to the
/// instant its tick was handed to the client.
///
/// # Errors
/// [`MeasureError::Nats`] when the connection fails.
pub async fn latency(bus: &Bus, feed: &mut TickGen, plan: RatePlan) -> Result<LatencySummary, MeasureError> {
    let (sched, total, warm) = plan.counts()?;
    let first_seq = feed.last_seq() + 1;
    let log = Arc::new(SendLog::new(total));
    let mut preds = bus.subscriber.subscribe(bus.pred()).await.map_err(nats)?;
    bus.subscriber.flush().await.map_err(nats)?;
    let (done_tx, mut done_rx) = tokio::sync::watch::channel::<Option<Instant>>(None);

    let recv_log = log.clone();
    let start = sched.start();
    let drain = plan.drain;
    let receiver = tokio::spawn(async move {
        let mut h = latency_histogram();
        let (mut matched, mut unmatched) = (0u64, 0u64);
        let expected = total - warm;
        loop {
            let deadline = match *done_rx.borrow() {
                Some(end) => end + drain,
                None => Instant::now() + Duration::from_millis(100),
            };
            tokio::select! {
                msg = preds.next() => {
                    let Some(msg) = msg else { break };
                    let now = Instant::now();
                    let slot = seq_of(&msg.payload)
                        .and_then(|s| s.checked_sub(first_seq))
                        .and_then(|i| Some((i, recv_log.ns.get(usize::try_from(i).ok()?)?)));
                    let Some((i, slot)) = slot else {
                        unmatched += 1;
                        continue;
                    };
                    let sent = slot.swap(u64::MAX, Ordering::AcqRel);
                    if sent == 0 || sent == u64::MAX {
                        // Not sent by this run's clock, or a second answer to the same tick.
                        unmatched += 1;
                        continue;
                    }
                    if i >= warm {
                        let sent_at = start + Duration::from_nanos(sent - 1);
                        record_us(&mut h, u64::try_from(now.saturating_duration_since(sent_at).as_micros()).unwrap_or(u64::MAX));
                        matched += 1;
                        if matched == expected {
                            break;
                        }
                    }
                }
                _ = tokio::time::sleep_until(deadline.into()) => {
                    if done_rx.borrow().is_some() && Instant::now() >= deadline {
                        break;
                    }
                }
                _ = done_rx.changed() => {}
            }
        }
        (h, unmatched)
    });

    let client = bus.publisher.clone();
    let subject = bus.ticks();
    let send_log = log.clone();
    let (max_lag, g) = pace(sched, total, feed.clone(), move |g, handle, i, _at| {
        let (_, payload) = g.next_tick();
        let slot = usize::try_from(i)
            .ok()
            .and_then(|i| send_log.ns.get(i))
            .ok_or(MeasureError::TooLong(i))?;
        // The send instant, as nanoseconds since the schedule's start plus one (0 means "not sent").
        let ns = u64::try_from(Instant::now().saturating_duration_since(start).as_nanos()).unwrap_or(u64::MAX - 1);
        slot.store(ns.saturating_add(1).min(u64::MAX - 1), Ordering::Release);
        handle.block_on(client.publish(subject.clone(), payload)).map_err(nats)
    })
    .await?;
    *feed = g;
    bus.publisher.flush().await.map_err(nats)?;
    let _ = done_tx.send(Some(Instant::now()));
    let (h, _unmatched) = receiver
        .await
        .map_err(|e| MeasureError::Nats(format!("receiver: {e}")))?;
    let mut s = LatencySummary::from_histogram(&h);
    s.sent = total - warm;
    s.lost = s.sent.saturating_sub(s.count);
    s.rate_per_sec = plan.rate;
    s.max_send_lag_us = u64::try_from(max_lag.as_micros()).unwrap_or(u64::MAX);
    Ok(s)
}

/// Query latency: requests to `<prefix>.query.<PAIR>` at `plan.rate`, open loop (each request is issued on
/// schedule whether or not earlier ones were answered), timed from its scheduled instant to its reply so
/// a stalled responder is charged for every request it delayed.
///
/// # Errors
/// [`MeasureError::Nats`] when the connection fails.
pub async fn query(bus: &Bus, plan: RatePlan, timeout: Duration) -> Result<LatencySummary, MeasureError> {
    let (sched, total, warm) = plan.counts()?;
    let subject = Subject::from(bus.subjects.query(bus.pair));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, Option<Duration>)>();
    let collector = tokio::spawn(async move {
        let mut h = latency_histogram();
        let mut failed = 0u64;
        while let Some((i, lat)) = rx.recv().await {
            if i < warm {
                continue;
            }
            match lat {
                Some(d) => record_us(&mut h, u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
                None => failed += 1,
            }
        }
        (h, failed)
    });
    let client = bus.publisher.clone();
    let (max_lag, ()) = pace(sched, total, (), move |(), handle, i, at| {
        let (client, subject, tx) = (client.clone(), subject.clone(), tx.clone());
        handle.spawn(async move {
            let reply = tokio::time::timeout(timeout, client.request(subject, Bytes::new())).await;
            let ok = match reply {
                Ok(Ok(msg)) => msg
                    .headers
                    .as_ref()
                    .is_none_or(|h| h.get(async_nats::service::NATS_SERVICE_ERROR).is_none()),
                _ => false,
            };
            let _ = tx.send((i, ok.then(|| Instant::now().saturating_duration_since(at))));
        });
        Ok(())
    })
    .await?;
    // Every request task holds a sender; the channel closes when the last one has its answer or timed out.
    let (h, failed) = collector
        .await
        .map_err(|e| MeasureError::Nats(format!("collector: {e}")))?;
    let mut s = LatencySummary::from_histogram(&h);
    s.sent = total - warm;
    s.lost = failed;
    s.rate_per_sec = plan.rate;
    s.max_send_lag_us = u64::try_from(max_lag.as_micros()).unwrap_or(u64::MAX);
    Ok(s)
}

/// Throughput: `n` ticks published as fast as the client takes them (made beforehand, so generating them
/// is not timed), counting distinct forecasts until all arrive or none came for `quiet`.
/// With `stream`, ticks are published with JetStream acks, at most `ack_window` unacknowledged, and the
/// ticks the stream stored are counted too.
///
/// # Errors
/// [`MeasureError::Nats`] when the connection fails.
pub async fn throughput(
    bus: &Bus,
    feed: &mut TickGen,
    n: u64,
    ack_window: Option<u64>,
    stream: Option<&str>,
    quiet: Duration,
) -> Result<ThroughputSummary, MeasureError> {
    let js = async_nats::jetstream::new(bus.publisher.clone());
    let last_seq = async |name: &str| -> Result<u64, MeasureError> {
        let mut s = js.get_stream(name).await.map_err(nats)?;
        Ok(s.info().await.map_err(nats)?.state.last_sequence)
    };
    let before = match stream {
        Some(name) => Some(last_seq(name).await?),
        None => None,
    };
    if n > MAX_TRACKED {
        return Err(MeasureError::TooLong(n));
    }
    let first_seq = feed.last_seq() + 1;
    let payloads: Vec<Bytes> = (0..n).map(|_| feed.next_tick().1).collect();
    let mut preds = bus.subscriber.subscribe(bus.pred()).await.map_err(nats)?;
    bus.subscriber.flush().await.map_err(nats)?;
    let (done_tx, done_rx) = tokio::sync::watch::channel(false);
    let receiver = tokio::spawn(async move {
        let mut seen = vec![0u64; usize::try_from(n.div_ceil(64)).unwrap_or(0)];
        let mut received = 0u64;
        let mut last = None;
        loop {
            match tokio::time::timeout(quiet, preds.next()).await {
                Ok(Some(msg)) => {
                    let Some(i) = seq_of(&msg.payload).and_then(|s| s.checked_sub(first_seq)) else {
                        continue;
                    };
                    let Some(word) = usize::try_from(i / 64).ok().and_then(|w| seen.get_mut(w)) else {
                        continue;
                    };
                    let bit = 1u64 << (i % 64);
                    if *word & bit == 0 {
                        *word |= bit;
                        received += 1;
                        last = Some(Instant::now());
                        if received == n {
                            break;
                        }
                    }
                }
                Ok(None) => break,
                Err(_) if *done_rx.borrow() => break,
                Err(_) => {}
            }
        }
        (received, last)
    });
    let subject = bus.ticks();
    let start = Instant::now();
    if stream.is_some() {
        // Into a stream, every tick is published with a JetStream ack, at most `window` unacknowledged: a
        // fire-and-forget core publish can be dropped by the server's ingest queue under load (measured:
        // up to 8% of 200,000), which would be counted against the consumer.
        let window = usize::try_from(ack_window.unwrap_or(1_000).max(1)).unwrap_or(1_000);
        let mut pending = std::collections::VecDeque::with_capacity(window);
        for p in payloads {
            if pending.len() >= window
                && let Some(ack) = pending.pop_front()
            {
                wait_ack(ack).await?;
            }
            pending.push_back(js.publish(subject.clone(), p).await.map_err(nats)?);
        }
        for ack in pending {
            wait_ack(ack).await?;
        }
    } else {
        for p in payloads {
            bus.publisher.publish(subject.clone(), p).await.map_err(nats)?;
        }
    }
    bus.publisher.flush().await.map_err(nats)?;
    let published = start.elapsed();
    let _ = done_tx.send(true);
    let (received, last) = receiver
        .await
        .map_err(|e| MeasureError::Nats(format!("receiver: {e}")))?;
    let stored = match (stream, before) {
        (Some(name), Some(b)) => Some(last_seq(name).await?.saturating_sub(b)),
        _ => None,
    };
    let elapsed = last.map_or(Duration::ZERO, |l| l.saturating_duration_since(start));
    let secs = elapsed.as_secs_f64();
    Ok(ThroughputSummary {
        sent: n,
        received,
        lost: n - received,
        stored,
        published_per_sec: n as f64 / published.as_secs_f64().max(1e-9),
        received_per_sec: if secs > 0.0 { received as f64 / secs } else { 0.0 },
        elapsed_secs: secs,
    })
}
