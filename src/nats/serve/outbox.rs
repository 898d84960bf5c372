//! What the service hands to NATS, and what it could not deliver.
//!
//! Every publication (forecasts, quarantines, reports) and every JetStream acknowledgement goes through the
//! [`Outbox`]. Normally that is the client's own call, polled once: no lock, two relaxed atomics. While the
//! server is unreachable the client reconnects, stops reading its command buffer, and a publication then
//! waits for room in it forever; so once the shutdown's `drain_timeout` has passed the outbox *gives up*:
//! waiting publications and acknowledgements are dropped and counted, and the shutdown ends (with the
//! shutdown checkpoint, which needs only the disk).
//!
//! What was handed to the client is not yet delivered: it is delivered once the server has confirmed
//! reading everything before it (a round trip, [`Outbox::confirm`]). The shutdown reports what was given
//! up plus what was handed over after the last confirmation: the outputs and acknowledgements that may
//! not have reached the server.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::Notify;

/// A one-way flag that tasks can wait for (set once, never cleared).
#[derive(Debug, Default)]
pub struct Flag {
    set: AtomicBool,
    notify: Notify,
}

impl Flag {
    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.set.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }

    /// Whether it is set.
    pub fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// Completes once the flag is set.
    pub async fn wait(&self) {
        let notified = self.notify.notified();
        tokio::pin!(notified);
        // Registered before the check, so a `set` between the check and the await is not missed.
        notified.as_mut().enable();
        if self.is_set() {
            return;
        }
        notified.await;
    }
}

/// What became of one kind of message (outputs, or acknowledgements).
#[derive(Debug, Default)]
struct Ledger {
    /// Handed to the client.
    handed: AtomicU64,
    /// Of those, the count the server confirmed reading (a lower bound: a message is counted once a round
    /// trip that started after it completed).
    confirmed: AtomicU64,
    /// Given up after the drain timeout, never handed to the client.
    given_up: AtomicU64,
}

impl Ledger {
    fn not_delivered(&self) -> u64 {
        let handed = self.handed.load(Ordering::Acquire);
        let confirmed = self.confirmed.load(Ordering::Acquire).min(handed);
        self.given_up.load(Ordering::Acquire) + handed - confirmed
    }
}

/// Why a publication or an acknowledgement did not go out.
#[derive(Debug, thiserror::Error)]
pub enum Undelivered<E> {
    /// The shutdown's drain timeout passed while it waited for the client (the server is unreachable).
    #[error("given up after the drain timeout (NATS unreachable)")]
    GivenUp,
    /// The client refused it.
    #[error("{0}")]
    Failed(E),
}

/// Outputs and acknowledgements that may not have reached the server, when the service stops.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct NotDelivered {
    /// Publications (forecasts, quarantines, reports) given up or not confirmed by the server.
    pub outputs: u64,
    /// JetStream acknowledgements given up or not confirmed (those ticks are redelivered to the next run).
    pub acks: u64,
}

/// The service's hand-over to NATS: see the module documentation.
#[derive(Debug, Default)]
pub struct Outbox {
    given_up: Flag,
    outputs: Ledger,
    acks: Ledger,
}

impl Outbox {
    /// Publishes through `send` (a client's publish call), unless the outbox has given up.
    ///
    /// # Errors
    /// [`Undelivered::GivenUp`] after [`Outbox::give_up`]; the client's error otherwise.
    pub async fn publish<E>(&self, send: impl Future<Output = Result<(), E>>) -> Result<(), Undelivered<E>> {
        Self::settle(&self.outputs, self.bounded(send).await)
    }

    /// Acknowledges through `ack` (a JetStream acknowledgement), unless the outbox has given up.
    ///
    /// # Errors
    /// As [`Outbox::publish`].
    pub async fn ack<E>(&self, ack: impl Future<Output = Result<(), E>>) -> Result<(), Undelivered<E>> {
        Self::settle(&self.acks, self.bounded(ack).await)
    }

    fn settle<E>(ledger: &Ledger, r: Option<Result<(), E>>) -> Result<(), Undelivered<E>> {
        match r {
            Some(Ok(())) => {
                ledger.handed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Some(Err(e)) => Err(Undelivered::Failed(e)),
            None => {
                ledger.given_up.fetch_add(1, Ordering::Relaxed);
                Err(Undelivered::GivenUp)
            }
        }
    }

    /// Runs `f` until it completes or the outbox gives up (`None`). The first poll is made outside any
    /// `select`, so a call that completes at once (the usual case) costs nothing more.
    pub async fn bounded<T>(&self, f: impl Future<Output = T>) -> Option<T> {
        if self.given_up.is_set() {
            return None;
        }
        let mut f = std::pin::pin!(f);
        if let Some(r) = f.as_mut().now_or_never() {
            return Some(r);
        }
        tokio::select! {
            biased;
            r = f => Some(r),
            () = self.given_up.wait() => None,
        }
    }

    /// Makes sure the server has read everything handed to `client` so far (see
    /// [`crate::nats::round_trip`]), within `bound` and until the outbox gives up.
    ///
    /// # Errors
    /// A message when the round trip failed, took longer than `bound`, or was given up.
    pub async fn confirm(&self, client: &async_nats::Client, bound: Duration) -> Result<(), String> {
        // Read before the round trip: everything counted here was queued in the client before it.
        let outputs = self.outputs.handed.load(Ordering::Acquire);
        let acks = self.acks.handed.load(Ordering::Acquire);
        match self.bounded(crate::nats::round_trip(client, bound)).await {
            None => Err("given up after the drain timeout (NATS unreachable)".into()),
            Some(Err(e)) => Err(e),
            Some(Ok(())) => {
                self.outputs.confirmed.fetch_max(outputs, Ordering::AcqRel);
                self.acks.confirmed.fetch_max(acks, Ordering::AcqRel);
                Ok(())
            }
        }
    }

    /// Gives up on NATS: every publication and acknowledgement waiting for the client, and every later
    /// one, is dropped and counted. Called when the shutdown's drain timeout passes.
    pub fn give_up(&self) {
        self.given_up.set();
    }

    /// Publications and acknowledgements handed to the client so far (the drain's progress).
    pub fn handed(&self) -> u64 {
        self.outputs.handed.load(Ordering::Relaxed) + self.acks.handed.load(Ordering::Relaxed)
    }

    /// Whether the outbox has given up.
    pub fn has_given_up(&self) -> bool {
        self.given_up.is_set()
    }

    /// What may not have reached the server: given up, or handed over after the last confirmation.
    pub fn not_delivered(&self) -> NotDelivered {
        NotDelivered {
            outputs: self.outputs.not_delivered(),
            acks: self.acks.not_delivered(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_waiting_call_is_given_up_and_counted() {
        let outbox = std::sync::Arc::new(Outbox::default());
        assert!(outbox.publish(async { Ok::<(), ()>(()) }).await.is_ok());
        let o = outbox.clone();
        let stuck = tokio::spawn(async move { o.publish(std::future::pending::<Result<(), ()>>()).await });
        tokio::task::yield_now().await;
        outbox.give_up();
        assert!(matches!(stuck.await.unwrap(), Err(Undelivered::GivenUp)));
        assert!(matches!(
            outbox.ack(async { Ok::<(), ()>(()) }).await,
            Err(Undelivered::GivenUp)
        ));
        // One handed over and never confirmed, one given up; one acknowledgement given up.
        assert_eq!(outbox.not_delivered(), NotDelivered { outputs: 2, acks: 1 });
    }

    #[tokio::test]
    async fn a_flag_set_before_the_wait_is_seen() {
        let f = Flag::default();
        f.set();
        f.wait().await;
        assert!(f.is_set());
    }
}
