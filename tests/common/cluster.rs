//! A 3-node nats-server cluster on loopback ports (routes, JetStream with a store per node), for the
//! cluster tests. Nodes can be killed (SIGKILL) and started again on the same ports and store.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One node: its ports, store and process.
pub struct Node {
    pub name: String,
    pub port: u16,
    pub cluster_port: u16,
    pub store: PathBuf,
    child: Option<Child>,
}

/// The cluster; every node is killed on drop.
pub struct NatsCluster {
    pub nodes: Vec<Node>,
    routes: String,
    dir: PathBuf,
}

impl NatsCluster {
    /// Starts `n` nodes in `dir` and waits until JetStream has a meta leader.
    pub async fn start(n: usize, dir: &Path) -> NatsCluster {
        let nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                name: format!("n{i}"),
                port: super::free_port(),
                cluster_port: super::free_port(),
                store: dir.join(format!("n{i}")),
                child: None,
            })
            .collect();
        let routes = nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.cluster_port))
            .collect::<Vec<_>>()
            .join(",");
        let mut c = NatsCluster {
            nodes,
            routes,
            dir: dir.to_path_buf(),
        };
        for i in 0..n {
            c.spawn(i);
        }
        c.wait_ready().await;
        c
    }

    fn spawn(&mut self, i: usize) {
        let routes = self.routes.clone();
        let node = &mut self.nodes[i];
        std::fs::create_dir_all(&node.store).unwrap();
        let log = std::fs::File::create(self.dir.join(format!("{}.log", node.name))).unwrap();
        let child = Command::new(cambio::nats::local_server::server_binary())
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &node.port.to_string(),
                "-n",
                &node.name,
                "-js",
                "-sd",
            ])
            .arg(&node.store)
            .args([
                "--cluster_name",
                "cambio-test",
                "--cluster",
                &format!("nats://127.0.0.1:{}", node.cluster_port),
                "--routes",
                &routes,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nats-server on PATH");
        node.child = Some(child);
    }

    /// The client URL of node `i`.
    pub fn url(&self, i: usize) -> String {
        format!("nats://127.0.0.1:{}", self.nodes[i].port)
    }

    /// SIGKILL node `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` again (same ports, same store) and waits until the cluster answers JetStream
    /// requests through it.
    pub async fn restart(&mut self, i: usize) {
        self.spawn(i);
        self.wait_node(i).await;
    }

    /// Waits until each of `streams` has a leader and every replica is current, asking through node `i`
    /// (a node that just restarted answers "no responders" to publications into a stream whose replica it
    /// has not caught up yet). Returns how long that took.
    pub async fn wait_streams_current(&self, i: usize, streams: &[&str]) -> Duration {
        let started = Instant::now();
        let deadline = started + Duration::from_secs(60);
        let client = async_nats::connect(self.url(i)).await.unwrap();
        let js = async_nats::jetstream::new(client);
        for name in streams {
            loop {
                let mut last = String::new();
                if let Ok(mut s) = js.get_stream(*name).await
                    && let Ok(info) = s.info().await
                {
                    match &info.cluster {
                        Some(c) if c.leader.is_some() && c.replicas.iter().all(|r| r.current) => break,
                        c => last = format!("{c:?}"),
                    }
                }
                assert!(
                    Instant::now() < deadline,
                    "stream {name} not current after 60 s: {last}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        started.elapsed()
    }

    /// Waits until every node accepts clients and JetStream has a meta leader.
    pub async fn wait_ready(&self) {
        for i in 0..self.nodes.len() {
            self.wait_node(i).await;
        }
    }

    async fn wait_node(&self, i: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(Ok(client)) = tokio::time::timeout(Duration::from_secs(2), async_nats::connect(self.url(i))).await
            {
                let info = client.request("$JS.API.INFO", Bytes::new());
                if let Ok(Ok(m)) = tokio::time::timeout(Duration::from_secs(2), info).await {
                    let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap_or_default();
                    if v.get("error").is_none() && v.get("memory").is_some() {
                        return;
                    }
                }
            }
            assert!(
                Instant::now() < deadline,
                "nats node {i} not ready (JetStream meta leader)"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}
