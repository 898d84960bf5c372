//! Connecting to NATS: the server URL and the auth options (token, user/password, nkey seed, credentials
//! file, TLS), read from the `[nats]` table of the configuration and overridden by the environment, so
//! secrets need not live in a file.
//!
//! Connection events (disconnects, reconnects, slow consumers, server errors) are counted in
//! [`ConnectionEvents`] and logged, never dropped silently.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// TLS settings of the connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Refuse to connect without TLS.
    #[serde(default)]
    pub required: bool,
    /// PEM file of the certificate authorities to trust (besides the system's).
    pub ca: Option<PathBuf>,
    /// PEM client certificate, for mutual TLS (with `key`).
    pub cert: Option<PathBuf>,
    /// PEM client key, for mutual TLS (with `cert`).
    pub key: Option<PathBuf>,
}

/// The `[nats]` table: where the server is and how to authenticate.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URL(s), comma-separated (`nats://host:4222`). Absent: `cambio serve` starts a local
    /// `nats-server` child on a free loopback port.
    pub url: Option<String>,
    /// Token authentication.
    pub token: Option<String>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password (with `user`).
    pub password: Option<String>,
    /// NKey seed (`SU…`).
    pub nkey: Option<String>,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsConfig,
    /// The connection's name as the server shows it.
    pub name: Option<String>,
    /// Prefix of the reply subjects this client creates (`_INBOX` when absent). A server that grants each
    /// role subscribe rights on its own prefix only (`_INBOX.cambio.>`, see `deploy/nats/`) keeps one role
    /// from reading the replies meant for another.
    pub inbox_prefix: Option<String>,
}

/// Environment variables that override the configuration file, so secrets can stay out of it.
pub const ENV_VARS: [&str; 10] = [
    "CAMBIO_NATS_URL",
    "CAMBIO_NATS_TOKEN",
    "CAMBIO_NATS_USER",
    "CAMBIO_NATS_PASSWORD",
    "CAMBIO_NATS_NKEY",
    "CAMBIO_NATS_CREDS",
    "CAMBIO_NATS_CA",
    "CAMBIO_NATS_CERT",
    "CAMBIO_NATS_KEY",
    "CAMBIO_NATS_INBOX_PREFIX",
];

impl NatsConfig {
    /// This configuration with the `CAMBIO_NATS_*` environment variables applied on top.
    pub fn with_env(mut self) -> NatsConfig {
        self.apply(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        self
    }

    /// Applies overrides looked up by `get` (the environment in production, a map in tests).
    pub fn apply(&mut self, get: impl Fn(&str) -> Option<String>) {
        if let Some(v) = get("CAMBIO_NATS_URL") {
            self.url = Some(v);
        }
        if let Some(v) = get("CAMBIO_NATS_TOKEN") {
            self.token = Some(v);
        }
        if let Some(v) = get("CAMBIO_NATS_USER") {
            self.user = Some(v);
        }
        if let Some(v) = get("CAMBIO_NATS_PASSWORD") {
            self.password = Some(v);
        }
        if let Some(v) = get("CAMBIO_NATS_NKEY") {
            self.nkey = Some(v);
        }
        if let Some(v) = get("CAMBIO_NATS_CREDS") {
            self.credentials = Some(v.into());
        }
        if let Some(v) = get("CAMBIO_NATS_CA") {
            self.tls.ca = Some(v.into());
        }
        if let Some(v) = get("CAMBIO_NATS_CERT") {
            self.tls.cert = Some(v.into());
        }
        if let Some(v) = get("CAMBIO_NATS_KEY") {
            self.tls.key = Some(v.into());
        }
        if let Some(v) = get("CAMBIO_NATS_INBOX_PREFIX") {
            self.inbox_prefix = Some(v);
        }
    }

    /// Checks that the options make sense together.
    ///
    /// # Errors
    /// [`NatsError::Config`] naming the conflict.
    pub fn validate(&self) -> Result<(), NatsError> {
        let methods = [
            self.token.is_some(),
            self.user.is_some() || self.password.is_some(),
            self.nkey.is_some(),
            self.credentials.is_some(),
        ];
        if methods.iter().filter(|&&m| m).count() > 1 {
            return Err(NatsError::Config(
                "choose one of token, user/password, nkey or credentials".into(),
            ));
        }
        if self.user.is_some() != self.password.is_some() {
            return Err(NatsError::Config("user and password go together".into()));
        }
        if self.tls.cert.is_some() != self.tls.key.is_some() {
            return Err(NatsError::Config("tls.cert and tls.key go together".into()));
        }
        if let Some(p) = &self.inbox_prefix
            && crate::nats::Subjects::new(p).is_err()
        {
            return Err(NatsError::Config(format!(
                "inbox_prefix `{p}`: dot-separated tokens without wildcards or spaces"
            )));
        }
        Ok(())
    }
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The options contradict each other.
    #[error("nats configuration: {0}")]
    Config(String),
    /// No URL was given where one is needed.
    #[error("no NATS server configured: give --nats URL, [nats] url or CAMBIO_NATS_URL")]
    NoUrl,
    /// A credentials or certificate file could not be read.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The server refused or could not be reached.
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        /// The URL tried.
        url: String,
        /// The client's error.
        source: async_nats::ConnectError,
    },
    /// The local nats-server could not be started.
    #[error("local nats-server: {0}")]
    LocalServer(String),
}

/// Counters of connection events, shared with the service's stats.
#[derive(Debug, Default)]
pub struct ConnectionEvents {
    /// Times the connection was (re-)established.
    pub connected: AtomicU64,
    /// Times it was lost.
    pub disconnected: AtomicU64,
    /// Slow-consumer events: the client dropped messages because a subscription's buffer was full.
    pub slow_consumer: AtomicU64,
    /// Errors reported by the server or the client.
    pub errors: AtomicU64,
    /// When a slow-consumer event was last logged (ms since the epoch): they are logged at most once a
    /// second, since the client reports one per dropped message.
    slow_consumer_logged_ms: AtomicU64,
}

impl ConnectionEvents {
    /// The counters now (for the service's stats).
    pub fn snapshot(&self) -> crate::contract::ConnectionCounters {
        crate::contract::ConnectionCounters {
            connected: self.connected.load(Ordering::Relaxed),
            disconnected: self.disconnected.load(Ordering::Relaxed),
            slow_consumer: self.slow_consumer.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Connects with `cfg` (its URL must be set), retrying forever on later disconnects. Returns the client and
/// the counters its event callback updates.
///
/// # Errors
/// [`NatsError`] when the options are inconsistent, a file cannot be read, or the first connection fails.
pub async fn connect(
    cfg: &NatsConfig,
    default_name: &str,
) -> Result<(async_nats::Client, Arc<ConnectionEvents>), NatsError> {
    // Bursts of ticks must not overflow the subscription buffer (the client's default is 2,048 messages).
    connect_with_capacity(cfg, default_name, 1 << 16).await
}

/// Like [`connect`], with `subscription_capacity` messages buffered per subscription (past it, the client
/// drops messages for a slow subscriber).
///
/// # Errors
/// As [`connect`].
pub async fn connect_with_capacity(
    cfg: &NatsConfig,
    default_name: &str,
    subscription_capacity: usize,
) -> Result<(async_nats::Client, Arc<ConnectionEvents>), NatsError> {
    cfg.validate()?;
    let url = cfg.url.clone().ok_or(NatsError::NoUrl)?;
    let mut opts = async_nats::ConnectOptions::new();
    if let Some(t) = &cfg.token {
        opts = opts.token(t.clone());
    }
    if let (Some(u), Some(p)) = (&cfg.user, &cfg.password) {
        opts = opts.user_and_password(u.clone(), p.clone());
    }
    if let Some(seed) = &cfg.nkey {
        opts = opts.nkey(seed.clone());
    }
    if let Some(path) = &cfg.credentials {
        opts = opts.credentials_file(path).await.map_err(|source| NatsError::File {
            path: path.clone(),
            source,
        })?;
    }
    if cfg.tls.required {
        opts = opts.require_tls(true);
    }
    if let Some(ca) = &cfg.tls.ca {
        opts = opts.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&cfg.tls.cert, &cfg.tls.key) {
        opts = opts.add_client_certificate(cert.clone(), key.clone());
    }
    if let Some(prefix) = &cfg.inbox_prefix {
        opts = opts.custom_inbox_prefix(prefix);
    }
    let events = Arc::new(ConnectionEvents::default());
    let ev = events.clone();
    opts = opts
        .name(cfg.name.clone().unwrap_or_else(|| default_name.to_string()))
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| Duration::from_millis((100 * attempts as u64).min(2_000)))
        .subscription_capacity(subscription_capacity.max(1))
        .client_capacity(1 << 14)
        .event_callback(move |event| {
            let ev = ev.clone();
            async move {
                use async_nats::Event;
                match &event {
                    Event::Connected => {
                        ev.connected.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("nats: connected");
                    }
                    Event::Disconnected => {
                        ev.disconnected.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("nats: disconnected; reconnecting");
                    }
                    Event::SlowConsumer(sid) => {
                        // The client reports every dropped message: count each, log at most once a second.
                        let n = ev.slow_consumer.fetch_add(1, Ordering::Relaxed) + 1;
                        let now_ms = std::time::SystemTime::now()
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0, |d| d.as_millis() as u64);
                        let last = ev.slow_consumer_logged_ms.load(Ordering::Relaxed);
                        if now_ms >= last + 1_000
                            && ev
                                .slow_consumer_logged_ms
                                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                                .is_ok()
                        {
                            tracing::warn!(subscription = sid, total = n, "nats: slow consumer, messages dropped");
                        }
                    }
                    Event::ServerError(e) => {
                        ev.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("nats: server error: {e}");
                    }
                    Event::ClientError(e) => {
                        ev.errors.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!("nats: client error: {e}");
                    }
                    other => tracing::info!("nats: {other}"),
                }
            }
        });
    let client = opts.connect(url.as_str()).await.map_err(|source| NatsError::Connect {
        url: url.clone(),
        source,
    })?;
    // The first Connected event can race the callback's registration; count the first connection here.
    if events.connected.load(Ordering::Relaxed) == 0 {
        events.connected.store(1, Ordering::Relaxed);
    }
    Ok((client, events))
}

/// Makes sure the server has read everything this client wrote so far. `Client::flush` only hands the
/// write buffer to the socket; a request the server itself answers proves more: here a request to a fresh
/// inbox that nobody serves, which the server answers with a "no responders" status after reading all that
/// came before it on this connection. Needed before exiting (a socket closed with unread deliveries in it
/// is reset, and the kernel drops what was still unsent: seen as lost forecasts and acknowledgements in
/// the graceful-shutdown test) and before a checkpoint commits.
///
/// # Errors
/// A message when the round trip failed or took longer than `bound`.
pub async fn round_trip(client: &async_nats::Client, bound: std::time::Duration) -> Result<(), String> {
    client.flush().await.map_err(|e| e.to_string())?;
    match tokio::time::timeout(bound, client.request(client.new_inbox(), bytes::Bytes::new())).await {
        Err(_) => Err(format!("no answer from the server within {} s", bound.as_secs_f64())),
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn environment_overrides_and_conflicts() {
        let mut c = NatsConfig {
            url: Some("nats://a:1".into()),
            ..Default::default()
        };
        c.apply(|k| match k {
            "CAMBIO_NATS_URL" => Some("nats://b:2".into()),
            "CAMBIO_NATS_TOKEN" => Some("s3cret".into()),
            _ => None,
        });
        assert_eq!(c.url.as_deref(), Some("nats://b:2"));
        assert_eq!(c.token.as_deref(), Some("s3cret"));
        assert!(c.validate().is_ok());
        c.user = Some("u".into());
        assert!(matches!(c.validate(), Err(NatsError::Config(_))));
        c.token = None;
        assert!(
            matches!(c.validate(), Err(NatsError::Config(_))),
            "user without password"
        );
        c.password = Some("p".into());
        assert!(c.validate().is_ok());
        c.tls.cert = Some("c.pem".into());
        assert!(c.validate().is_err(), "cert without key");
        c.tls.cert = None;
        c.apply(|k| (k == "CAMBIO_NATS_INBOX_PREFIX").then(|| "_INBOX.cambio".into()));
        assert_eq!(c.inbox_prefix.as_deref(), Some("_INBOX.cambio"));
        assert!(c.validate().is_ok());
        c.inbox_prefix = Some("_INBOX.>".into());
        assert!(c.validate().is_err(), "a wildcard in the inbox prefix");
    }

    #[test]
    fn unknown_keys_are_refused() {
        assert!(toml::from_str::<NatsConfig>("url = \"nats://x\"\ntokn = \"t\"").is_err());
    }
}
