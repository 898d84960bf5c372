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

/// Most forecasts a shard keeps waiting for their acknowledgement; past it the oldest are waited for
/// before the next is published (back-pressure on the shard, not unbounded memory).
const MAX_UNACKED: usize = 4_096;

/// How long a full queue waits for the oldest acknowledgements before publishing anyway.
const FULL_WAIT: Duration = Duration::from_secs(2);

type AckFuture = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// An acknowledgement to come, in a mutex only so the shard stays `Sync` (it is reached through
/// `get_mut`, never locked).
type PendingAck = std::sync::Mutex<AckFuture>;

/// One forecast not yet acknowledged.
struct Unacked {
    /// The acknowledgement to come; `None` when the publication or its acknowledgement failed (it is
    /// published again at the next [`Confirmed::settle`]).
    ack: Option<PendingAck>,
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

    async fn send(&self, subject: &Subject, headers: &HeaderMap, body: &Bytes) -> Option<PendingAck> {
        self.js
            .publish_with_headers(subject.clone(), headers.clone(), body.clone())
            .await
            .ok()
            .map(|f| std::sync::Mutex::new(f.into_future()))
    }

    /// Publishes one forecast; its acknowledgement is awaited later ([`Confirmed::settle`]).
    pub async fn publish(&mut self, subject: Subject, headers: HeaderMap, body: Bytes) {
        if self.unacked.len() >= MAX_UNACKED
            && let Err(e) = self.settle_some(MAX_UNACKED / 2, FULL_WAIT).await
        {
            tracing::warn!(error = %e, waiting = self.unacked.len(), "forecasts not acknowledged by their stream");
        }
        let ack = self.send(&subject, &headers, &body).await;
        self.unacked.push_back(Unacked {
            ack,
            subject,
            headers,
            body,
        });
    }

    /// Waits until every forecast published so far is acknowledged, for at most `bound`, publishing again
    /// (same `Nats-Msg-Id`) those whose publication or acknowledgement failed. What is not acknowledged
    /// then stays queued: an acknowledgement still to come is kept, a failed one is published again at the
    /// next call.
    ///
    /// # Errors
    /// Why the oldest forecast is not acknowledged (for the log and the failed checkpoint).
    pub async fn settle(&mut self, bound: Duration) -> Result<(), String> {
        self.settle_some(self.unacked.len(), bound).await
    }

    async fn settle_some(&mut self, n: usize, bound: Duration) -> Result<(), String> {
        let deadline = Instant::now() + bound;
        let mut done = 0;
        let mut last_error = None;
        while done < n {
            let Some(front) = self.unacked.front() else {
                return Ok(());
            };
            if front.ack.is_none() {
                let (subject, headers, body) = (front.subject.clone(), front.headers.clone(), front.body.clone());
                let ack = self.send(&subject, &headers, &body).await;
                if let Some(front) = self.unacked.front_mut() {
                    front.ack = ack;
                }
            }
            let Some(ack) = self
                .unacked
                .front_mut()
                .and_then(|f| f.ack.as_mut())
                .map(|m| m.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner))
            else {
                return Err(last_error.unwrap_or_else(|| "not published".into()));
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, ack).await {
                Ok(Ok(_)) => {
                    self.unacked.pop_front();
                    done += 1;
                }
                Ok(Err(e)) => {
                    if let Some(f) = self.unacked.front_mut() {
                        f.ack = None;
                    }
                    if Instant::now() >= deadline {
                        return Err(e.to_string());
                    }
                    last_error = Some(e.to_string());
                    // A short pause before sending it again (the stream may be electing a leader).
                    let pause = Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now()));
                    tokio::time::sleep(pause).await;
                }
                Err(_) => return Err("no acknowledgement yet".into()),
            }
        }
        Ok(())
    }
}
