//! A round trip to the server after subscribing, so a tool can say "listening" only once the server really
//! routes the subscribed subjects to it.
//!
//! `Client::flush` only writes the client's buffer to the socket; it does not wait for the server to have
//! processed the `SUB`. The server handles one connection's commands in order, so when a message this
//! client publishes to its own fresh inbox comes back, every earlier subscription is in place.

use std::time::Duration;

use futures_util::StreamExt;

/// How long the round trip may take before the server is considered unresponsive.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the round trip failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    /// The probe subscription could not be made.
    #[error("nats subscribe: {0}")]
    Subscribe(#[from] async_nats::SubscribeError),
    /// The probe could not be published.
    #[error("nats publish: {0}")]
    Publish(#[from] async_nats::PublishError),
    /// The probe did not come back in time.
    #[error("the NATS server did not answer within {} s", .0.as_secs_f64())]
    Timeout(Duration),
}

/// Returns once the server has processed every command this client sent before the call.
///
/// # Errors
/// [`ReadyError`] when the probe cannot be sent or does not come back within ten seconds.
pub async fn subscriptions_ready(client: &async_nats::Client) -> Result<(), ReadyError> {
    let inbox = client.new_inbox();
    let mut probe = client.subscribe(inbox.clone()).await?;
    client.publish(inbox, bytes::Bytes::new()).await?;
    let back = tokio::time::timeout(READY_TIMEOUT, probe.next()).await;
    // Best effort: the probe is dropped (and unsubscribed) either way.
    let _ = probe.unsubscribe().await;
    match back {
        Ok(Some(_)) => Ok(()),
        _ => Err(ReadyError::Timeout(READY_TIMEOUT)),
    }
}
