//! Helpers shared by the integration tests that run `cambio serve` against a real nats-server.
#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use bytes::Bytes;
use serde_json::Value;

pub mod cluster;
pub mod postgres;

/// A `cambio serve` child process, killed on drop; its log goes to a file printed when a test fails.
pub struct Serve {
    pub child: Child,
    pub log: PathBuf,
}

impl Serve {
    pub fn start(url: &str, config: &str, dir: &Path) -> Serve {
        Serve::start_with(url, config, dir, &[])
    }

    pub fn start_with(url: &str, config: &str, dir: &Path, extra: &[&str]) -> Serve {
        Serve::start_with_env(url, config, dir, extra, &[])
    }

    /// Like [`Serve::start_with`], with environment variables for the child (a masking key, …).
    pub fn start_with_env(url: &str, config: &str, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serve {
        let cfg = dir.join(format!("cambio-{}.toml", std::process::id()));
        std::fs::write(&cfg, config).unwrap();
        let log = dir.join(format!("serve-{}.log", rand_suffix()));
        let child = Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args(["serve", "--nats", url, "--config"])
            .arg(&cfg)
            .args(extra)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Serve { child, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(&mut self) -> i32 {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            assert!(
                Instant::now() < deadline,
                "serve did not exit after SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- serve log ---\n{}", self.log());
        }
    }
}

pub fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id() as u64);
    h.finish()
}

pub fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cambio-test-{name}-{}", rand_suffix()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Waits until the micro service answers PING (it registers after its subscriptions or consumer exist).
pub async fn wait_ready(client: &async_nats::Client, serve: &Serve) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ping = client.request("$SRV.PING.cambio", Bytes::new());
        if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_millis(500), ping).await {
            let v: Value = serde_json::from_slice(&m.payload).unwrap();
            assert_eq!(v["name"], "cambio");
            return;
        }
        assert!(Instant::now() < deadline, "serve not ready:\n{}", serve.log());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A seeded random walk of USD/MXN ticks (JSON lines of the contract), one per second from 2024-03-04.
pub fn walk(n: usize, seed: u64) -> Vec<String> {
    walk_of("USDMXN", 17.0, n, seed)
}

pub fn walk_of(pair: &str, start: f64, n: usize, seed: u64) -> Vec<String> {
    let mut s = seed;
    let mut next = || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    };
    let mut mid = start;
    (0..n)
        .map(|i| {
            mid *= 1.0 + 1e-4 * (next() - 0.5);
            let ts = cambio::time::format_ts(1_709_510_400_000_000 + i as i64 * 1_000_000);
            format!(
                r#"{{"pair":"{pair}","ts":"{ts}","bid":{:.5},"ask":{:.5},"source":"test","seq":{}}}"#,
                mid - 0.0005,
                mid + 0.0005,
                i + 1
            )
        })
        .collect()
}

pub fn replay_header() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Cambio-Replay", "1");
    h
}

/// A request and its reply message, within 10 s.
pub async fn request_message(client: &async_nats::Client, subject: &str, body: &str) -> async_nats::Message {
    tokio::time::timeout(
        Duration::from_secs(10),
        client.request(subject.to_string(), Bytes::from(body.to_string())),
    )
    .await
    .expect("reply in time")
    .expect("reply")
}

/// A request and its JSON reply; `true` when the reply is a service error (micro service error header).
pub async fn request(client: &async_nats::Client, subject: &str, body: &str) -> (bool, Value) {
    let m = request_message(client, subject, body).await;
    let is_err = m
        .headers
        .as_ref()
        .is_some_and(|h| h.get("Nats-Service-Error").is_some());
    (is_err, serde_json::from_slice(&m.payload).expect("json reply"))
}

/// Polls `<prefix>.status.<pair>` until `done` holds on a (non-error) reply, for at most `timeout`; fails
/// with the last reply and the service's log. A reply that is late or an error counts as not done.
pub async fn status_until(
    client: &async_nats::Client,
    pair: &str,
    serve: &Serve,
    timeout: Duration,
    what: &str,
    done: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let req = client.request(format!("fx.status.{pair}"), Bytes::new());
        let last = match tokio::time::timeout(Duration::from_millis(500), req).await {
            Ok(Ok(m)) if m.headers.as_ref().is_none_or(|h| h.get("Nats-Service-Error").is_none()) => {
                serde_json::from_slice::<Value>(&m.payload).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        };
        if done(&last) {
            return last;
        }
        assert!(
            Instant::now() < deadline,
            "{pair} status never showed {what}; last: {last}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Collects messages from `sub` until `n` arrived or `timeout` passed.
pub async fn collect(sub: &mut async_nats::Subscriber, n: usize, timeout: Duration) -> Vec<async_nats::Message> {
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while got.len() < n {
        match tokio::time::timeout_at(deadline, futures_util::StreamExt::next(sub)).await {
            Ok(Some(m)) => got.push(m),
            _ => break,
        }
    }
    got
}

/// A loopback port free right now (bound, then released: the caller binds it again at once).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `url`: the status and the body; `None` when nothing answers within 5 s.
pub async fn http_get(url: &str) -> Option<(u16, String)> {
    let client = cambio::sources::http::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = client.get(url).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.text().await.ok()?))
}

/// The value of the sample `name{labels}` (labels in any order, all of them given) in a Prometheus text
/// exposition; `None` when absent.
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (series, value) = l.rsplit_once(' ')?;
        let (n, rest) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.strip_suffix('}')?),
            None => (series, ""),
        };
        if n != name {
            return None;
        }
        let mut got: Vec<(&str, &str)> = if rest.is_empty() {
            Vec::new()
        } else {
            rest.split("\",")
                .map(|kv| {
                    let (k, v) = kv.split_once("=\"").unwrap();
                    (k, v.trim_end_matches('"'))
                })
                .collect()
        };
        let mut want = labels.to_vec();
        got.sort();
        want.sort();
        (got == want).then(|| value.parse().ok()).flatten()
    })
}

/// Polls `url` (a /metrics endpoint) until `done` holds on its body, for at most `timeout`.
pub async fn metrics_until(url: &str, timeout: Duration, what: &str, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let last = http_get(url).await.map(|(_, b)| b).unwrap_or_default();
        if done(&last) {
            return last;
        }
        assert!(Instant::now() < deadline, "metrics never showed {what}; last:\n{last}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Publishes `lines` on `fx.ticks.<pair>` as replayed ticks (never stamped with arrival), then flushes.
pub async fn publish_replayed(client: &async_nats::Client, pair: &str, lines: &[String]) {
    let subject = format!("fx.ticks.{pair}");
    for l in lines {
        client
            .publish_with_headers(subject.clone(), replay_header(), Bytes::from(l.clone()))
            .await
            .unwrap();
    }
    client.flush().await.unwrap();
}

/// Fails unless `promtool check metrics` (Prometheus's own linter) accepts the exposition `text`. promtool
/// comes with Debian's prometheus package, which scripts/test.sh installs.
pub fn promtool_check_metrics(text: &str) {
    use std::io::Write;
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package; scripts/test.sh installs it)");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A private authority and a server certificate for 127.0.0.1 signed by it: (ca, cert, key) PEM files.
pub fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, rcgen::KeyPair::generate().unwrap()).unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    let (ca_pem, cert_pem, key_pem) = (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server-key.pem"));
    std::fs::write(&ca_pem, ca.pem()).unwrap();
    std::fs::write(&cert_pem, leaf.pem()).unwrap();
    std::fs::write(&key_pem, leaf_key.serialize_pem()).unwrap();
    (ca_pem, cert_pem, key_pem)
}

/// Each audit entry as `"<op> <actor> <outcome>"`.
pub fn audit_ops(entries: &Value) -> Vec<String> {
    entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["op"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            )
        })
        .collect()
}
