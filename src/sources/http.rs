//! HTTP GET for the connectors: one shared client (rustls with the ring provider), a timeout per request,
//! and retries of transient failures (429, 5xx, timeouts, refused connections) with exponential backoff,
//! honouring `Retry-After`. A refused token (401/403) and an error status such as 404 are not retried.

use std::time::Duration;

use super::FetchError;

/// The longest wait a `Retry-After` may impose; a larger value is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Installs the ring crypto provider as the process default (once; later calls do nothing). reqwest is
/// built without a provider of its own (the default one needs cmake to build), so this must run before
/// any client is built: [`builder`] does it.
pub fn install_crypto() {
    // Err means a provider is already installed: fine.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A reqwest client builder with the crypto provider installed.
pub fn builder() -> reqwest::ClientBuilder {
    install_crypto();
    reqwest::Client::builder()
}

/// A reqwest client with default settings (for tests and tools that GET a local endpoint).
///
/// # Panics
/// When the TLS configuration cannot be built: a defect of the build, not of any input.
pub fn client() -> reqwest::Client {
    #[allow(clippy::expect_used)]
    builder().build().expect("the default HTTP client builds")
}

/// One GET to make.
#[derive(Debug, Clone)]
pub struct Request {
    /// The URL, with its token when the API takes it in the query.
    pub url: String,
    /// The URL as logged and shown in errors: the token replaced by `***`.
    pub shown_url: String,
    /// Extra headers (Banxico's `Bmx-Token`).
    pub headers: Vec<(&'static str, String)>,
}

/// How a source's requests are made.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The source's name, for errors and logs.
    pub source_name: String,
    /// The environment variable of the token, named when the token is refused.
    pub token_env: String,
    /// The limit of one attempt.
    pub timeout: Duration,
    /// Retries after the first attempt.
    pub retries: u32,
    /// The first backoff; doubled at each retry, at most 60 s.
    pub backoff: Duration,
}

/// The wait before retry `n` (0-based): `backoff · 2ⁿ`, at most 60 s, or what the server asked.
pub fn retry_wait(backoff: Duration, n: u32, retry_after_secs: Option<u64>) -> Duration {
    match retry_after_secs {
        Some(s) => Duration::from_secs(s).min(MAX_RETRY_AFTER),
        None => backoff.saturating_mul(1u32 << n.min(16)).min(Duration::from_secs(60)),
    }
}

/// GETs `req`, retrying transient failures. Returns the body and how many retries it took.
///
/// # Errors
/// The last [`FetchError`] when every attempt failed, or the first one that is not transient.
pub async fn get_with_retries(
    client: &reqwest::Client,
    req: &Request,
    policy: &Policy,
) -> Result<(Vec<u8>, u32), (FetchError, u32)> {
    let mut n = 0;
    loop {
        match get_once(client, req, policy).await {
            Ok(body) => return Ok((body, n)),
            Err(e) if e.is_transient() && n < policy.retries => {
                let wait = retry_wait(policy.backoff, n, e.retry_after_secs());
                tracing::warn!(
                    source = %policy.source_name,
                    error = %e,
                    retry = n + 1,
                    wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
                    "fetch failed; retrying"
                );
                tokio::time::sleep(wait).await;
                n += 1;
            }
            Err(e) => return Err((e, n)),
        }
    }
}

async fn get_once(client: &reqwest::Client, req: &Request, policy: &Policy) -> Result<Vec<u8>, FetchError> {
    let transport = |e: reqwest::Error| FetchError::Transport {
        source_name: policy.source_name.clone(),
        url: req.shown_url.clone(),
        message: if e.is_timeout() {
            format!(
                "no complete answer within {}",
                humantime::format_duration(policy.timeout)
            )
        } else {
            error_chain(&e)
        },
    };
    let mut builder = client.get(&req.url).timeout(policy.timeout);
    for (k, v) in &req.headers {
        builder = builder.header(*k, v);
    }
    let resp = builder.send().await.map_err(transport)?;
    let status = resp.status().as_u16();
    if status == 401 || status == 403 {
        return Err(FetchError::Unauthorized {
            source_name: policy.source_name.clone(),
            env: policy.token_env.clone(),
            status,
        });
    }
    if !(200..300).contains(&status) {
        let retry_after_secs = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        return Err(FetchError::Status {
            source_name: policy.source_name.clone(),
            status,
            url: req.shown_url.clone(),
            retry_after_secs,
        });
    }
    let body = resp.bytes().await.map_err(transport)?;
    Ok(body.to_vec())
}

/// An error and its causes, `a: b: c`, without Debug formatting.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cause = c.source();
    }
    s
}

/// The connector of the HTTP kinds (Banxico, INEGI, FRED): builds the kind's request from the watermark,
/// GETs it with retries, parses the documented answer.
pub struct HttpConnector {
    cfg: super::SourceConfig,
    client: reqwest::Client,
    token: String,
    policy: Policy,
    retries: std::sync::atomic::AtomicU64,
}

impl HttpConnector {
    /// The connector of one source; reads its token from the environment.
    ///
    /// # Errors
    /// [`FetchError::MissingToken`] when the token's variable is not set, [`FetchError::Other`] when the
    /// HTTP client cannot be built.
    pub fn new(cfg: &super::SourceConfig) -> Result<HttpConnector, FetchError> {
        let token_env = cfg.token_env.clone().unwrap_or_default();
        let token = match &cfg.token_env {
            Some(env) => std::env::var(env).map_err(|_| FetchError::MissingToken {
                source_name: cfg.name.clone(),
                env: env.clone(),
            })?,
            None => String::new(),
        };
        let client = builder()
            .connect_timeout(cfg.timeout)
            .user_agent(concat!("cambio/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| FetchError::Other {
                source_name: cfg.name.clone(),
                message: format!("building the HTTP client: {}", error_chain(&e)),
                transient: false,
            })?;
        Ok(HttpConnector {
            policy: Policy {
                source_name: cfg.name.clone(),
                token_env,
                timeout: cfg.timeout,
                retries: cfg.retries,
                backoff: cfg.backoff,
            },
            cfg: cfg.clone(),
            client,
            token,
            retries: std::sync::atomic::AtomicU64::new(0),
        })
    }

    async fn fetch_series(
        &self,
        series: &str,
        after: Option<i64>,
        today: super::Date,
    ) -> Result<Vec<super::Observation>, FetchError> {
        use super::config::Kind;
        // From the watermark's date (an API's range is in whole days; the runner drops what is not after
        // the watermark), or the start.
        let from = after.map_or(self.cfg.start, super::Date::of_us).max(self.cfg.start);
        let base = &self.cfg.base_url;
        let req = match self.cfg.kind {
            Kind::Banxico => super::banxico::request(base, series, from, today, &self.token),
            Kind::Inegi => super::inegi::request(base, series, &self.token),
            Kind::Fred => super::fred::request(base, series, from, today, &self.token),
            Kind::Postgres => return Err(not_http(&self.cfg.name)),
        };
        let (body, retried) = match get_with_retries(&self.client, &req, &self.policy).await {
            Ok(ok) => ok,
            Err((e, retried)) => {
                self.retries
                    .fetch_add(u64::from(retried), std::sync::atomic::Ordering::Relaxed);
                return Err(e);
            }
        };
        self.retries
            .fetch_add(u64::from(retried), std::sync::atomic::Ordering::Relaxed);
        let parsed = match self.cfg.kind {
            Kind::Banxico => super::banxico::parse(series, &body),
            Kind::Inegi => super::inegi::parse(series, &body),
            Kind::Fred => super::fred::parse(series, &body),
            Kind::Postgres => return Err(not_http(&self.cfg.name)),
        };
        parsed.map_err(|message| FetchError::Body {
            source_name: self.cfg.name.clone(),
            url: req.shown_url.clone(),
            message,
        })
    }
}

impl super::Connector for HttpConnector {
    fn fetch<'a>(&'a self, series: &'a str, after: Option<i64>, today: super::Date) -> super::FetchFuture<'a> {
        Box::pin(self.fetch_series(series, after, today))
    }

    fn retries(&self) -> u64 {
        self.retries.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// A `postgres` source reaching the HTTP connector: the runner runs that kind itself, so this is a bug.
fn not_http(source: &str) -> FetchError {
    FetchError::Other {
        source_name: source.to_string(),
        message: "a postgres source is not fetched over HTTP".into(),
        transient: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_a_minute_and_retry_after_wins() {
        let b = Duration::from_millis(500);
        assert_eq!(retry_wait(b, 0, None), Duration::from_millis(500));
        assert_eq!(retry_wait(b, 2, None), Duration::from_secs(2));
        assert_eq!(retry_wait(b, 30, None), Duration::from_secs(60));
        assert_eq!(retry_wait(b, 0, Some(7)), Duration::from_secs(7));
        assert_eq!(retry_wait(b, 0, Some(100_000)), MAX_RETRY_AFTER);
    }
}
