//! The connection options against real nats-servers that demand them: token, user/password, NKey, TLS;
//! `cambio serve` reading its secret from the environment, and a clear error (exit 2) when it is wrong.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use cambio::nats::{LocalServer, NatsConfig, NatsError, connect};
use futures_util::StreamExt;

mod common;

/// A test's folder of keys and configuration files, removed when the test ends (passed or failed).
struct TempDir(std::path::PathBuf);

impl std::ops::Deref for TempDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir(name: &str) -> TempDir {
    let d = std::env::temp_dir().join(format!("cambio-auth-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    TempDir(d)
}

/// A publish-subscribe round trip through the connection.
async fn round_trip(client: &async_nats::Client) {
    let mut sub = client.subscribe("auth.check").await.unwrap();
    client.publish("auth.check", Bytes::from_static(b"hi")).await.unwrap();
    client.flush().await.unwrap();
    let m = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&m.payload[..], b"hi");
}

fn cfg(url: String) -> NatsConfig {
    NatsConfig {
        url: Some(url),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_and_user_password() {
    let server = LocalServer::start_with_args(false, None, &["--auth", "s3cret"]).unwrap();
    let mut c = cfg(server.url());
    c.token = Some("s3cret".into());
    let (client, _) = connect(&c, "test").await.unwrap();
    round_trip(&client).await;
    c.token = Some("wrong".into());
    let err = connect(&c, "test").await.unwrap_err();
    assert!(matches!(err, NatsError::Connect { .. }), "{err}");

    let server = LocalServer::start_with_args(false, None, &["--user", "credit", "--pass", "p4ss"]).unwrap();
    let mut c = cfg(server.url());
    c.user = Some("credit".into());
    c.password = Some("p4ss".into());
    let (client, _) = connect(&c, "test").await.unwrap();
    round_trip(&client).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nkey() {
    let dir = temp_dir("nkey");
    let user = nkeys::KeyPair::new_user();
    let conf = dir.join("nkey.conf");
    std::fs::write(
        &conf,
        format!(
            "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}\n",
            user.public_key()
        ),
    )
    .unwrap();
    let server = LocalServer::start_with_args(false, None, &["--config", conf.to_str().unwrap()]).unwrap();
    let mut c = cfg(server.url());
    c.nkey = Some(user.seed().unwrap());
    let (client, _) = connect(&c, "test").await.unwrap();
    round_trip(&client).await;
    c.nkey = Some(nkeys::KeyPair::new_user().seed().unwrap());
    assert!(connect(&c, "test").await.is_err(), "an unknown key is refused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_a_private_authority() {
    let dir = temp_dir("tls");
    let (ca_pem, cert_pem, key_pem) = common::certificates(&dir);
    let server = LocalServer::start_with_args(
        false,
        None,
        &[
            "--tls",
            "--tlscert",
            cert_pem.to_str().unwrap(),
            "--tlskey",
            key_pem.to_str().unwrap(),
        ],
    )
    .unwrap();
    let mut c = cfg(server.url());
    c.tls.required = true;
    c.tls.ca = Some(ca_pem.clone());
    let (client, _) = connect(&c, "test").await.unwrap();
    round_trip(&client).await;
    c.tls.ca = None;
    assert!(
        connect(&c, "test").await.is_err(),
        "an untrusted server certificate is refused"
    );
}

#[test]
fn serve_takes_its_token_from_the_environment_and_explains_a_refusal() {
    let server = LocalServer::start_with_args(false, None, &["--auth", "s3cret"]).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["serve", "--nats", &server.url()])
        .env("CAMBIO_NATS_TOKEN", "wrong")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot connect to NATS at"), "{stderr}");

    let mut child = Command::new(env!("CARGO_BIN_EXE_cambio"))
        .args(["serve", "--nats", &server.url()])
        .env("CAMBIO_NATS_TOKEN", "s3cret")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let ready = rt.block_on(async {
        let client = async_nats::ConnectOptions::with_token("s3cret".into())
            .connect(server.url())
            .await
            .unwrap();
        for _ in 0..200 {
            let ping = client.request("$SRV.PING.cambio", Bytes::new());
            if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_millis(200), ping).await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    });
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = child.wait().unwrap();
    assert!(ready, "serve with the right token answers PING");
    assert_eq!(status.code(), Some(0));
}

/// Unpadded base64url, as JWTs use.
fn b64url(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// A NATS JWT (v2) with `claims`, signed by `issuer`.
fn jwt(issuer: &nkeys::KeyPair, subject: &str, name: &str, nats: serde_json::Value) -> String {
    let header = b64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let claims = serde_json::json!({
        "jti": format!("{name}{}", std::process::id()),
        "iat": 1_700_000_000,
        "iss": issuer.public_key(),
        "sub": subject,
        "name": name,
        "nats": nats,
    });
    let body = format!("{header}.{}", b64url(claims.to_string().as_bytes()));
    let sig = issuer.sign(body.as_bytes()).unwrap();
    format!("{body}.{}", b64url(&sig))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_file_in_operator_mode() {
    let dir = temp_dir("creds");
    let operator = nkeys::KeyPair::new_operator();
    let account = nkeys::KeyPair::new_account();
    let user = nkeys::KeyPair::new_user();
    let op_jwt = jwt(
        &operator,
        &operator.public_key(),
        "op",
        serde_json::json!({"type": "operator", "version": 2}),
    );
    let limits = serde_json::json!({"subs": -1, "data": -1, "payload": -1, "imports": -1, "exports": -1,
        "wildcards": true, "conn": -1, "leaf": -1});
    let acc_jwt = jwt(
        &operator,
        &account.public_key(),
        "acc",
        serde_json::json!({
        "limits": limits, "default_permissions": {"pub": {}, "sub": {}}, "type": "account", "version": 2}),
    );
    let user_jwt = jwt(
        &account,
        &user.public_key(),
        "cambio",
        serde_json::json!({
        "pub": {}, "sub": {}, "subs": -1, "data": -1, "payload": -1, "type": "user", "version": 2}),
    );
    let conf = dir.join("operator.conf");
    std::fs::write(
        &conf,
        format!(
            "operator: \"{op_jwt}\"\nresolver: MEMORY\nresolver_preload: {{ {}: \"{acc_jwt}\" }}\n",
            account.public_key()
        ),
    )
    .unwrap();
    let creds = dir.join("cambio.creds");
    std::fs::write(
        &creds,
        format!(
            "-----BEGIN NATS USER JWT-----\n{user_jwt}\n------END NATS USER JWT------\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n",
            user.seed().unwrap()
        ),
    )
    .unwrap();
    let server = LocalServer::start_with_args(false, None, &["--config", conf.to_str().unwrap()]).unwrap();
    let mut c = cfg(server.url());
    c.credentials = Some(creds);
    let (client, _) = connect(&c, "test").await.unwrap();
    round_trip(&client).await;
    c.credentials = Some(dir.join("missing.creds"));
    assert!(matches!(connect(&c, "test").await, Err(NatsError::File { .. })));
    c.credentials = None;
    assert!(connect(&c, "test").await.is_err(), "no credentials, no entry");
}
