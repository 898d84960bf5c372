//! The core-mode tick subscription, counting every tick the client drops.
//!
//! In core mode the client puts each message of a subscription into a bounded buffer
//! (`[serve] subscription_capacity`); when the buffer is full (the service is behind a burst) the client
//! drops the message and reports a slow-consumer event, and those events are themselves dropped when they
//! come faster than they are read. The exact count comes from elsewhere: ticks arrive on a connection of
//! their own with this one subscription, so every message that connection received was either yielded
//! here, is still in the buffer, or was dropped. When the buffer is found empty (the stream is pending),
//! `received − yielded` is the number dropped. (The client counts a message just before buffering it, so a
//! reading taken in that instant is one too high; the next reading, taken after that message is yielded,
//! corrects it. A drop needs a full buffer, so after the last drop the buffer is emptied and read once more.)
//! A pending stream is not always an empty buffer: tokio's cooperative scheduling makes a channel answer
//! "pending" when the task has used its budget, whatever the buffer holds. Such a reading would count the
//! buffered ticks as dropped (a few hundred under load), so readings are taken only with budget left; and a
//! count is logged only once two readings in a row agree it grew, so the one-too-high instant is never
//! logged.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures_util::Stream;

use super::stats::Counters;

/// Shortest time between two log lines about dropped ticks.
const LOG_EVERY: Duration = Duration::from_secs(1);

/// The tick subscription with its drop count (into [`Counters::ticks_dropped`]).
pub struct CountedTicks {
    inner: async_nats::Subscriber,
    /// The tick connection's statistics (`in_messages`: every message it received).
    stats: Arc<async_nats::Statistics>,
    /// Messages this stream has yielded.
    yielded: u64,
    counters: Arc<Counters>,
    /// The previous reading (`received − yielded` with the buffer empty).
    last_reading: u64,
    /// The count last logged, and when.
    logged: u64,
    logged_at: Option<Instant>,
}

impl CountedTicks {
    /// Wraps `inner`, the only subscription of `client`'s connection.
    pub fn new(client: &async_nats::Client, inner: async_nats::Subscriber, counters: Arc<Counters>) -> CountedTicks {
        CountedTicks {
            inner,
            stats: client.statistics(),
            yielded: 0,
            last_reading: 0,
            counters,
            logged: 0,
            logged_at: None,
        }
    }

    /// Unsubscribes; messages already received are still yielded, then the stream ends.
    ///
    /// # Errors
    /// The client's error (its connection is closed).
    pub async fn drain(&mut self) -> Result<(), async_nats::UnsubscribeError> {
        self.inner.drain().await
    }

    /// Records the count seen with the buffer empty, and logs it (at most once a second). Returns whether
    /// the reading is above the count it confirms: the stream then asks to be polled once more, so a
    /// second reading confirms it even when no tick follows.
    fn observe(&mut self, received: u64) -> bool {
        let reading = received.saturating_sub(self.yielded);
        // Drops only grow: the smaller of two readings in a row is never above the count at the later one
        // by more than the one-too-high instant of the earlier, and is exact once the stream is quiet.
        let dropped = reading.min(self.last_reading);
        self.last_reading = reading;
        self.counters.ticks_dropped.store(dropped, Ordering::Relaxed);
        if dropped > self.logged && self.logged_at.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            tracing::warn!(
                dropped_total = dropped,
                dropped_new = dropped - self.logged,
                "ticks dropped by the NATS client: the subscription buffer was full (raise [serve] subscription_capacity, or use JetStream for no loss)"
            );
            self.logged = dropped;
            self.logged_at = Some(Instant::now());
        }
        reading > dropped
    }
}

impl Stream for CountedTicks {
    type Item = async_nats::Message;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        // Read before looking at the buffer: a message counted here and buffered is seen by the poll.
        let received = self.stats.in_messages.load(Ordering::Acquire);
        let r = Pin::new(&mut self.inner).poll_next(cx);
        match &r {
            Poll::Ready(Some(_)) => self.yielded += 1,
            // With the task's budget used up, "pending" says nothing about the buffer (see the module doc).
            Poll::Pending if tokio::task::coop::has_budget_remaining() => {
                if self.observe(received) {
                    cx.waker().wake_by_ref();
                }
            }
            Poll::Pending => {}
            Poll::Ready(None) => {}
        }
        r
    }
}
