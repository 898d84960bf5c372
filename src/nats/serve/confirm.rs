//! Forecasts published with JetStream's acknowledgement (`[serve.jetstream] confirm_forecasts = true`).
//!
//! A plain publication is delivered once the server it went to has read it; whether the stream that keeps
//! forecasts stored it is not known. A node that dies with it still unrouted, or a replica that restarted
//! and does not forward yet, loses it silently, and a checkpoint taken after it says the tick is done, so
//! nobody publishes it again. With confirmation each forecast is published as a JetStream message: the
//! stream's acknowledgement comes back asynchronously (the tick path does not wait for it), and a
//! checkpoint covers a shard's ticks only once every forecast before it is acknowledged. A forecast whose
//! acknowledgement fails is published again, with the same `Nats-Msg-Id` (the stream keeps one), until it
//! is acknowledged: none is lost, none is stored twice.

use std::collections::VecDeque;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::Subject;
use async_nats::jetstream::{self, context::PublishError, publish::PublishAck};
use bytes::Bytes;

/// Forecasts a shard keeps waiting for their acknowledgement before it slows down: past it each new one
/// first waits (up to [`FULL_WAIT`]) for the older ones, so while the stream cannot take forecasts the
/// shard publishes about one every two seconds and ticks wait in their own stream, not forecasts in
/// memory.
pub const MAX_UNACKED: usize = 4_096;

/// How long a full queue waits for the oldest acknowledgements before publishing anyway.
const FULL_WAIT: Duration = Duration::from_secs(2);

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// An acknowledgement to come, in a mutex only so the shard stays `Sync` (it is reached through
/// `get_mut`, never locked).
type PendingAck = std::sync::Mutex<AckFuture>;

/// Where one forecast stands.
enum Ack {
    /// Published; its acknowledgement to come.
    Pending(PendingAck),
    /// The publication or its acknowledgement failed: to be published again.
    Failed(String),
    /// Acknowledged (removed once every older one is).
    Done,
}

/// One forecast not yet acknowledged.
struct Unacked {
    ack: Ack,
    subject: Subject,
    headers: HeaderMap,
    body: Bytes,
}

/// A shard's forecasts published with confirmation, in order.
pub struct Confirmed {
    js: jetstream::Context,
    unacked: VecDeque<Unacked>,
}

impl Confirmed {
    /// Publishes through `js`.
    pub fn new(js: jetstream::Context) -> Confirmed {
        Confirmed {
            js,
            unacked: VecDeque::new(),
        }
    }

    /// Forecasts waiting for their acknowledgement.
    pub fn unacked(&self) -> usize {
        self.unacked.len()
    }

    async fn send(js: &jetstream::Context, subject: &Subject, headers: &HeaderMap, body: &Bytes) -> Ack {
        match js
            .publish_with_headers(subject.clone(), headers.clone(), body.clone())
            .await
        {
            Ok(f) => Ack::Pending(std::sync::Mutex::new(f.into_future())),
            Err(e) => Ack::Failed(e.to_string()),
        }
    }

    /// Publishes one forecast; its acknowledgement is awaited later ([`Confirmed::settle`]).
    pub async fn publish(&mut self, subject: Subject, headers: HeaderMap, body: Bytes) {
        if self.unacked.len() >= MAX_UNACKED
            && let Err(e) = self.settle(FULL_WAIT).await
        {
            tracing::warn!(error = %e, waiting = self.unacked.len(), "forecasts not acknowledged by their stream");
        }
        let ack = Self::send(&self.js, &subject, &headers, &body).await;
        self.unacked.push_back(Unacked {
            ack,
            subject,
            headers,
            body,
        });
    }

    /// Waits until every forecast published so far is acknowledged, for at most `bound`, publishing again
    /// (same `Nats-Msg-Id`, all of them before waiting) those whose publication or acknowledgement failed.
    /// What is not acknowledged then stays queued: an acknowledgement still to come is kept, a failed one
    /// is published again at the next call.
    ///
    /// # Errors
    /// Why a forecast is not acknowledged (for the log and the failed checkpoint).
    pub async fn settle(&mut self, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        loop {
            for u in &mut self.unacked {
                if matches!(u.ack, Ack::Failed(_)) {
                    u.ack = Self::send(&self.js, &u.subject, &u.headers, &u.body).await;
                }
            }
            let mut failed = None;
            for u in &mut self.unacked {
                let pending = match &mut u.ack {
                    Ack::Pending(pending) => pending,
                    Ack::Failed(e) => {
                        failed.get_or_insert_with(|| e.clone());
                        continue;
                    }
                    Ack::Done => continue,
                };
                let ack = pending.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner);
                let left = deadline.saturating_duration_since(Instant::now());
                match tokio::time::timeout(left, ack).await {
                    Ok(Ok(_)) => u.ack = Ack::Done,
                    Ok(Err(e)) => {
                        failed.get_or_insert_with(|| e.to_string());
                        u.ack = Ack::Failed(e.to_string());
                    }
                    Err(_) => {
                        failed = Some("no acknowledgement yet".into());
                        break;
                    }
                }
            }
            while self.unacked.front().is_some_and(|u| matches!(u.ack, Ack::Done)) {
                self.unacked.pop_front();
            }
            let Some(e) = failed else {
                return Ok(());
            };
            if Instant::now() >= deadline {
                return Err(e);
            }
            // A short pause before sending them again (the stream may be electing a leader).
            tokio::time::sleep(Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now()))).await;
        }
    }
}
