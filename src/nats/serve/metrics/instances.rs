//! Counts the cambio instances on the bus: every instance answers the micro protocol's
//! `$SRV.PING.cambio` with its own id, so the distinct ids answering within a short wait are the instances
//! an operator (or an alert) can expect to be serving.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;

use super::Telemetry;

/// How long answers to one ping are collected.
const WAIT: Duration = Duration::from_millis(500);

/// Most answers read per ping (a bound on the loop, far above any real deployment).
const MAX_ANSWERS: usize = 10_000;

/// Pings every `every` until the returned task is aborted, storing the count in `telemetry.instances`.
pub fn spawn(client: async_nats::Client, telemetry: Arc<Telemetry>, every: Duration) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            // Counted once this instance answers pings itself (its micro service is up).
            if !telemetry.consuming() {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if let Some(n) = count(&client).await {
                telemetry.instances.store(n, Ordering::Relaxed);
            }
            tokio::time::sleep(every).await;
        }
    })
}

/// The distinct instance ids answering one ping; `None` when the ping could not be sent.
pub async fn count(client: &async_nats::Client) -> Option<u64> {
    let inbox = client.new_inbox();
    let mut answers = client.subscribe(inbox.clone()).await.ok()?;
    let subject = format!("$SRV.PING.{}", crate::nats::serve::service::SERVICE_NAME);
    client
        .publish_with_reply(subject, inbox, Default::default())
        .await
        .ok()?;
    let mut ids = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while ids.len() < MAX_ANSWERS {
        match tokio::time::timeout_at(deadline, answers.next()).await {
            Ok(Some(m)) => {
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&m.payload)
                    && let Some(id) = v.get("id").and_then(|i| i.as_str())
                {
                    ids.insert(id.to_string());
                }
            }
            Ok(None) | Err(_) => break,
        }
    }
    let _ = answers.unsubscribe().await;
    Some(ids.len() as u64)
}
