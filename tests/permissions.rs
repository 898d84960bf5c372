//! The permission matrix of `deploy/nats/` against a real nats-server started with that configuration
//! file, unchanged: certificates (a private authority and a server certificate for 127.0.0.1) and one NKey
//! per role are generated here and handed to the server through the environment, as a deployment does.
//! A real `cambio serve` connects as the `cambio` role over TLS in JetStream mode; then each role does
//! what it may (it works) and what it may not (the server answers with a permissions violation, and the
//! action has no effect). A client that does not speak TLS is refused.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use cambio::nats::LocalServer;
use futures_util::StreamExt;
use serde_json::json;

mod common;
use common::*;

const MASK_KEY: &str = "permissions-test-masking-key-0123456789";
const TICKS: usize = 50;

/// The shipped configuration.
fn deploy_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nats/nats-server.conf")
}

/// The roles of `deploy/nats/permissions.conf`, with the environment variable of each one's public key.
const ROLES: [(&str, &str); 6] = [
    ("feed", "NKEY_FEED"),
    ("sources", "NKEY_SOURCES"),
    ("credit", "NKEY_CREDIT"),
    ("operator", "NKEY_OPERATOR"),
    ("cambio", "NKEY_CAMBIO"),
    ("archive", "NKEY_ARCHIVE"),
];

/// A client of one role: its inbox prefix is the role's, and the server's error messages (permissions
/// violations) are collected.
struct RoleClient {
    client: async_nats::Client,
    errors: Arc<Mutex<Vec<String>>>,
}

impl RoleClient {
    async fn connect(url: &str, role: &str, seed: &str, ca: &Path) -> RoleClient {
        let errors = Arc::new(Mutex::new(Vec::new()));
        let sink = errors.clone();
        let client = async_nats::ConnectOptions::with_nkey(seed.to_string())
            .require_tls(true)
            .add_root_certificates(ca.to_path_buf())
            .custom_inbox_prefix(format!("_INBOX.{role}"))
            .name(role)
            .event_callback(move |event| {
                let sink = sink.clone();
                async move {
                    if let async_nats::Event::ServerError(e) = event {
                        sink.lock().unwrap().push(e.to_string().to_lowercase());
                    }
                }
            })
            .connect(url)
            .await
            .unwrap_or_else(|e| panic!("{role} connects over TLS: {e}"));
        RoleClient { client, errors }
    }

    /// Waits (at most 10 s) until the server has refused something mentioning `what` (e.g. a subject).
    async fn refused(&self, action: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            {
                let errors = self.errors.lock().unwrap();
                if errors
                    .iter()
                    .any(|e| e.contains("permissions violation") && e.contains(&what.to_lowercase()))
                {
                    return;
                }
                assert!(
                    Instant::now() < deadline,
                    "{action}: no permissions violation about {what}; errors seen: {errors:?}"
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn no_errors(&self, who: &str) {
        let errors = self.errors.lock().unwrap();
        assert!(errors.is_empty(), "{who} was refused something it may do: {errors:?}");
    }
}

/// `cambio archive` as the archive role, its log in `dir`.
struct Archive {
    child: std::process::Child,
    log: PathBuf,
}

impl Archive {
    fn start(url: &str, dir: &Path, seed: &str, ca: &Path) -> Archive {
        let config = dir.join("archive.toml");
        std::fs::write(&config, "[nats]\ntls = { required = true }\n").unwrap();
        let log = dir.join("archive.log");
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
            .args(["archive", "--nats", url, "--max-age", "200ms", "--config"])
            .arg(&config)
            .arg("--dir")
            .arg(dir.join("lake"))
            .env("RUST_LOG", "info")
            .env("CAMBIO_NATS_NKEY", seed)
            .env("CAMBIO_NATS_CA", ca)
            .env("CAMBIO_NATS_INBOX_PREFIX", "_INBOX.archive")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Archive { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until it consumes both streams (one "archiving" line each).
    fn wait_archiving(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.log().matches("archiving").count() < 2 {
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "archive exited:\n{}",
                self.log()
            );
            assert!(Instant::now() < deadline, "archive never consumed:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then the exit code (bounded wait).
    fn terminate(&mut self) -> Option<i32> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "archive did not exit:\n{}", self.log());
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Archive {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `dir` holds a Parquet file at any depth under a folder named `kind=<kind>`.
fn has_parquet(dir: &Path, kind: &str) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    entries.flatten().any(|e| {
        let p = e.path();
        if p.is_dir() {
            has_parquet(&p, kind)
        } else {
            p.extension().is_some_and(|x| x == "parquet")
                && p.components().any(|c| c.as_os_str() == format!("kind={kind}").as_str())
        }
    })
}

/// A stand-in for FRED on a loopback port: every request gets the same two daily observations.
async fn fred_stand_in() -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 65536 {
                    match sock.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let body =
                    r#"{"observations":[{"date":"2024-01-02","value":"5.33"},{"date":"2024-01-03","value":"5.33"}]}"#;
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
                let _ = sock.shutdown().await;
            });
        }
    });
    url
}

/// `cambio sources run --once` as the sources role: (exit code, stdout, stderr).
async fn sources_once(url: &str, config: &Path, seed: &str, ca: &Path) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["sources", "run", "--once", "--nats", url, "--config"])
        .arg(config)
        .env("FRED_KEY", "k3y")
        .env("CAMBIO_NATS_NKEY", seed)
        .env("CAMBIO_NATS_CA", ca)
        .env("CAMBIO_NATS_INBOX_PREFIX", "_INBOX.sources")
        .env("RUST_LOG", "info")
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("sources run ends")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `cambio review ARGS` as the operator role: (exit code, stdout, stderr).
async fn review_as_operator(
    url: &str,
    config: &Path,
    args: &[&str],
    seed: &str,
    ca: &Path,
) -> (Option<i32>, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cambio"))
        .arg("review")
        .args(args)
        .args(["--actor", "op", "--nats", url, "--config"])
        .arg(config)
        .env("CAMBIO_NATS_NKEY", seed)
        .env("CAMBIO_NATS_CA", ca)
        .env("CAMBIO_NATS_INBOX_PREFIX", "_INBOX.operator")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .output();
    let out = tokio::time::timeout(Duration::from_secs(60), out)
        .await
        .expect("review ends")
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// A request that must not be answered: the server drops the refused publication, so it times out.
async fn unanswered(c: &RoleClient, subject: &str, body: &str) {
    let req = c.client.request(subject.to_string(), Bytes::from(body.to_string()));
    match tokio::time::timeout(Duration::from_secs(2), req).await {
        Err(_) => {}
        Ok(Err(e)) => assert!(
            matches!(
                e.kind(),
                async_nats::RequestErrorKind::TimedOut | async_nats::RequestErrorKind::NoResponders
            ),
            "{subject}: {e}"
        ),
        Ok(Ok(m)) => panic!("{subject} was answered: {}", String::from_utf8_lossy(&m.payload)),
    }
}

/// A plain-text client (no TLS handshake) is refused: the server says TLS is required and never answers
/// its PING with a PONG.
fn plain_text_is_refused(port: u16) {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut info = [0u8; 4096];
    let n = s.read(&mut info).unwrap();
    let info = String::from_utf8_lossy(&info[..n]).to_string();
    assert!(info.starts_with("INFO "), "{info}");
    assert!(info.contains("\"tls_required\":true"), "{info}");
    let _ = s.write_all(b"CONNECT {\"verbose\":false,\"pedantic\":false}\r\nPING\r\n");
    let mut rest = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + Duration::from_secs(5);
    // Read until the server closes the connection (or resets it), bounded.
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => rest.extend_from_slice(&buf[..n]),
        }
    }
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.contains("PONG"), "a plain-text client was served: {rest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_role_does_what_it_may_and_nothing_else() {
    let dir = temp_dir("permissions");
    let (ca, cert, key) = certificates(&dir);
    let keys: Vec<(&str, &str, nkeys::KeyPair)> = ROLES
        .iter()
        .map(|&(role, var)| (role, var, nkeys::KeyPair::new_user()))
        .collect();
    let seed = |role: &str| {
        keys.iter()
            .find(|(r, _, _)| *r == role)
            .map(|(_, _, k)| k.seed().unwrap())
            .unwrap()
    };
    let store = dir.join("jetstream");
    let publics: Vec<(String, String)> = keys
        .iter()
        .map(|(_, var, k)| (var.to_string(), k.public_key()))
        .collect();
    let mut env: Vec<(&str, &str)> = vec![
        ("NATS_TLS_CERT", cert.to_str().unwrap()),
        ("NATS_TLS_KEY", key.to_str().unwrap()),
        ("NATS_TLS_CA", ca.to_str().unwrap()),
        ("NATS_STORE_DIR", store.to_str().unwrap()),
    ];
    env.extend(publics.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let server =
        LocalServer::start_with_env(false, None, &["--config", deploy_config().to_str().unwrap()], &env).unwrap();
    let url = server.url();

    // No TLS, no service.
    plain_text_is_refused(server.port());
    // An NKey the server does not know is refused.
    let stranger = async_nats::ConnectOptions::with_nkey(nkeys::KeyPair::new_user().seed().unwrap())
        .require_tls(true)
        .add_root_certificates(ca.clone())
        .connect(url.as_str())
        .await;
    assert!(stranger.is_err(), "an unknown NKey is refused");

    // cambio archive as the archive role: it creates the streams and consumes both.
    let mut archive = Archive::start(&url, &dir, &seed("archive"), &ca);
    archive.wait_archiving();

    // cambio serve as the cambio role: TLS, its NKey and inbox prefix from the environment.
    let config = format!(
        "[nats]\ntls = {{ required = true }}\n[serve]\nmode = \"jetstream\"\nreport_interval_secs = 0.2\n\
         [checkpoint]\npath = \"{}\"\n",
        dir.join("models.redb").display()
    );
    let cambio_seed = seed("cambio");
    let mut serve = Serve::start_with_env(
        &url,
        &config,
        &dir,
        &[],
        &[
            ("CAMBIO_NATS_NKEY", cambio_seed.as_str()),
            ("CAMBIO_NATS_CA", ca.to_str().unwrap()),
            ("CAMBIO_NATS_INBOX_PREFIX", "_INBOX.cambio"),
            ("CAMBIO_MASK_KEY", MASK_KEY),
        ],
    );
    let feed = RoleClient::connect(&url, "feed", &seed("feed"), &ca).await;
    let credit = RoleClient::connect(&url, "credit", &seed("credit"), &ca).await;
    let operator = RoleClient::connect(&url, "operator", &seed("operator"), &ca).await;
    // The operator may use service discovery: it is how the test knows cambio is up.
    wait_ready(&operator.client, &serve).await;

    // Forecasts reach the credit system; a feed cannot subscribe to them.
    let mut preds = credit.client.subscribe("fx.pred.USDMXN").await.unwrap();
    let mut stolen = feed.client.subscribe("fx.pred.>").await.unwrap();
    feed.client.flush().await.unwrap();
    credit.client.flush().await.unwrap();
    feed.refused("feed subscribes to forecasts", "\"fx.pred.>\"").await;

    // The feed publishes ticks into the stream (its inbox receives the stream's acknowledgements).
    let js = async_nats::jetstream::new(feed.client.clone());
    for line in walk(TICKS, 7) {
        let ack = js
            .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(line))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), ack)
            .await
            .expect("stream acknowledgement in time")
            .expect("stream acknowledgement");
    }
    let got = collect(&mut preds, TICKS, Duration::from_secs(60)).await;
    assert_eq!(got.len(), TICKS, "forecasts reach the credit system\n{}", serve.log());
    assert!(
        tokio::time::timeout(Duration::from_millis(500), stolen.next())
            .await
            .is_err(),
        "the feed's refused subscription receives nothing"
    );

    // The credit system asks for the latest forecast and the pair's status.
    let (err, q) = request(&credit.client, "fx.query.USDMXN", "").await;
    assert!(!err, "{q}");
    assert_eq!(q["seq"], TICKS as u64, "{q}");
    let (err, s) = request(&credit.client, "fx.status.USDMXN", "").await;
    assert!(!err, "{s}");
    assert_eq!(s["ticks"], TICKS as u64, "{s}");

    // It sends a business event, and sees it counted.
    let event = json!({"ts": "2024-03-04T10:00:00.000Z", "client": "C-1", "event": "offered", "rate": 17.0});
    credit
        .client
        .publish("fx.business.USDMXN", Bytes::from(event.to_string()))
        .await
        .unwrap();
    credit.client.flush().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (err, v) = request(&credit.client, "fx.business.stats.USDMXN", "").await;
        if !err && v["last_event_ts"] == "2024-03-04T10:00:00.000Z" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "business event not counted: {v}\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The operator lists the pair's models.
    let m = request_message(&operator.client, "fx.models.USDMXN", r#"{"op":"list"}"#).await;
    assert!(
        m.headers.as_ref().is_none_or(|h| h.get("Nats-Service-Error").is_none()),
        "the operator lists models: {}",
        String::from_utf8_lossy(&m.payload)
    );
    let (err, s) = request(&operator.client, "fx.status.USDMXN", "").await;
    assert!(!err, "{s}");
    credit.no_errors("credit");
    operator.no_errors("operator");

    // A credit system cannot publish ticks: refused, and no tick reaches cambio.
    let forged = walk(TICKS + 1, 7).pop().unwrap();
    credit
        .client
        .publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from(forged))
        .await
        .unwrap();
    credit.client.flush().await.unwrap();
    credit.refused("credit publishes a tick", "\"fx.ticks.USDMXN\"").await;
    // Nor roll back a model, nor use fx.models at all.
    unanswered(&credit, "fx.models.USDMXN", r#"{"op":"rollback","version":1}"#).await;
    credit
        .refused("credit rolls back a model", "\"fx.models.USDMXN\"")
        .await;
    // Nor read the raw feed, nor the replies meant for the operator.
    let _ticks = credit.client.subscribe("fx.ticks.>").await.unwrap();
    credit.client.flush().await.unwrap();
    credit.refused("credit subscribes to ticks", "\"fx.ticks.>\"").await;
    let _replies = credit.client.subscribe("_INBOX.operator.>").await.unwrap();
    credit.client.flush().await.unwrap();
    credit
        .refused("credit reads the operator's replies", "\"_INBOX.operator.>\"")
        .await;
    // A feed cannot query forecasts, nor use fx.models.
    unanswered(&feed, "fx.query.USDMXN", "").await;
    feed.refused("feed queries a forecast", "\"fx.query.USDMXN\"").await;
    unanswered(&feed, "fx.models.USDMXN", r#"{"op":"list"}"#).await;
    feed.refused("feed lists models", "\"fx.models.USDMXN\"").await;

    let (_, s) = request(&operator.client, "fx.status.USDMXN", "").await;
    assert_eq!(
        s["ticks"], TICKS as u64,
        "the credit system's tick did not reach cambio: {s}"
    );

    // The operator reviews a quarantined tick with `cambio review`: the archive's FX_OUT keeps it, the
    // label goes to the bucket cambio_review, and nothing is refused.
    let tls = dir.join("operator.toml");
    std::fs::write(&tls, "[nats]\ntls = { required = true }\n").unwrap();
    let op_seed = seed("operator");
    js.publish_with_headers("fx.ticks.USDMXN", replay_header(), Bytes::from("not json"))
        .await
        .unwrap()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let id = loop {
        let (code, stdout, stderr) = review_as_operator(&url, &tls, &["list", "--json"], &op_seed, &ca).await;
        assert_eq!(code, Some(0), "review list:\n{stdout}\n{stderr}");
        assert!(
            !stderr.to_lowercase().contains("permissions violation"),
            "review needs more than the operator's grants:\n{stderr}"
        );
        let list: serde_json::Value = serde_json::from_str(&stdout).unwrap();
        if let Some(first) = list.as_array().and_then(|l| l.first()) {
            assert_eq!(first["record"]["raw"], "not json", "{list}");
            break first["id"].as_u64().unwrap().to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no quarantined tick to review\n{}",
            serve.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for args in [
        vec!["show", id.as_str(), "--json"],
        vec!["label", id.as_str(), "bad", "--json"],
    ] {
        let (code, stdout, stderr) = review_as_operator(&url, &tls, &args, &op_seed, &ca).await;
        assert_eq!(code, Some(0), "review {args:?}:\n{stdout}\n{stderr}");
        assert!(
            !stderr.to_lowercase().contains("permissions violation"),
            "review needs more than the operator's grants:\n{stderr}"
        );
    }
    // A credit system may not read the labels.
    let credit_js = async_nats::jetstream::new(credit.client.clone());
    assert!(
        credit_js.get_key_value("cambio_review").await.is_err(),
        "credit reads the review labels"
    );

    // cambio itself was refused nothing, through start, serving and a graceful stop.
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let log = serve.log();
    assert!(
        !log.to_lowercase().contains("permissions violation"),
        "cambio needs more than its role grants:\n{log}"
    );
    drop(serve);

    // The same in cluster mode: partitioned stream, lease bucket, shared checkpoints, owner-only answers.
    let cluster_config = format!(
        "[nats]\ntls = {{ required = true }}\n[serve]\nmode = \"jetstream\"\nreport_interval_secs = 0.2\n\
         [checkpoint]\npath = \"{}\"\nevery_secs = 0.5\n\
         [cluster]\nenabled = true\npartitions = 2\ninstance = \"perm\"\n",
        dir.join("models-cluster.redb").display()
    );
    let mut serve = Serve::start_with_env(
        &url,
        &cluster_config,
        &dir,
        &[],
        &[
            ("CAMBIO_NATS_NKEY", cambio_seed.as_str()),
            ("CAMBIO_NATS_CA", ca.to_str().unwrap()),
            ("CAMBIO_NATS_INBOX_PREFIX", "_INBOX.cambio"),
            ("CAMBIO_MASK_KEY", MASK_KEY),
        ],
    );
    wait_ready(&operator.client, &serve).await;
    let mut preds = credit.client.subscribe("fx.pred.EURUSD").await.unwrap();
    credit.client.flush().await.unwrap();
    for line in walk_of("EURUSD", 1.08, TICKS, 8) {
        let ack = js
            .publish_with_headers("fx.ticks.EURUSD", replay_header(), Bytes::from(line))
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(10), ack)
            .await
            .expect("stream acknowledgement in time")
            .expect("stream acknowledgement");
    }
    let got = collect(&mut preds, TICKS, Duration::from_secs(60)).await;
    assert_eq!(
        got.len(),
        TICKS,
        "cluster mode: forecasts reach the credit system\n{}",
        serve.log()
    );
    let (err, status) = request(&credit.client, "fx.status.EURUSD", "").await;
    assert!(!err, "cluster mode: the owner answers {status}");
    assert_eq!(serve.terminate(), 0, "{}", serve.log());
    let log = serve.log();
    assert!(
        log.contains("cluster: partitions handed over") && log.contains("checkpoint written"),
        "{log}"
    );
    assert!(
        !log.to_lowercase().contains("permissions violation") && !log.contains("shared checkpoint not written"),
        "cambio in cluster mode needs more than its role grants:\n{log}"
    );
    // `cambio sources run` as the sources role publishes factors and keeps its watermark: the second run
    // reads it and publishes nothing new.
    let fred = fred_stand_in().await;
    let sources = dir.join("sources.toml");
    std::fs::write(
        &sources,
        format!(
            "[[source]]\nkind = \"fred\"\nname = \"dff\"\nseries = {{ DFF = \"factor:DFF\" }}\ntoken_env = \"FRED_KEY\"\n\
             start = \"2024-01-01\"\nevery = \"1h\"\nbase_url = \"{fred}\"\n"
        ),
    )
    .unwrap();
    let sources_seed = seed("sources");
    for (run, published) in [(1, "2"), (2, "0")] {
        let (code, stdout, stderr) = sources_once(&url, &sources, &sources_seed, &ca).await;
        let row: Vec<&str> = stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some("dff"))
            .map(|l| l.split_whitespace().collect())
            .unwrap_or_default();
        assert_eq!(code, Some(0), "sources run {run}:\n{stdout}\n{stderr}");
        assert_eq!(
            row.get(4).copied(),
            Some(published),
            "sources run {run}:\n{stdout}\n{stderr}"
        );
        assert!(
            !stderr.to_lowercase().contains("permissions violation"),
            "sources need more than their role grants:\n{stderr}"
        );
    }

    // Nor was the archive, which wrote the ticks and the forecasts to the lake.
    let lake = dir.join("lake");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !(has_parquet(&lake, "ticks") && has_parquet(&lake, "forecasts")) {
        assert!(
            Instant::now() < deadline,
            "the lake lacks ticks or forecasts:\n{}",
            archive.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(archive.terminate(), Some(0), "{}", archive.log());
    let log = archive.log();
    assert!(
        !log.to_lowercase().contains("permissions violation"),
        "the archive needs more than its role grants:\n{log}"
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
