//! The measured process: the floor or cambio, run as a child of this same binary so both are built with
//! the same profile and connect with the same client options. Started, probed until it answers, then
//! stopped with SIGTERM (and killed if it does not exit in time).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::process::{Child, Command};

/// Which process is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `cambio floor`: bare NATS forwarding and echo.
    Floor,
    /// `cambio serve`: the service.
    Cambio,
}

impl Target {
    /// `floor` or `cambio`.
    pub fn name(self) -> &'static str {
        match self {
            Target::Floor => "floor",
            Target::Cambio => "cambio",
        }
    }

    /// The NATS micro service name it registers (what `$SRV.PING.<name>` reaches).
    pub fn service_name(self) -> &'static str {
        match self {
            Target::Floor => super::super::floor::SERVICE_NAME,
            Target::Cambio => "cambio",
        }
    }
}

/// Why a target could not be run.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The child could not be started.
    #[error("cannot start {target}: {source}")]
    Spawn {
        /// Which.
        target: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// A file next to the child (its log, its config) could not be written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The child exited before it was asked to.
    #[error("{target} exited early ({status}); its log {log}:\n{tail}")]
    Exited {
        /// Which.
        target: &'static str,
        /// Its exit status.
        status: String,
        /// Its log file.
        log: String,
        /// The end of the log.
        tail: String,
    },
}

/// How to start a target.
#[derive(Debug, Clone)]
pub struct Launch {
    /// The binary (`std::env::current_exe()`).
    pub exe: PathBuf,
    /// NATS URL for the child.
    pub url: String,
    /// Folder for logs and generated configuration.
    pub scratch: PathBuf,
    /// cambio's configuration file (`serve --config`), if any.
    pub cambio_config: Option<PathBuf>,
    /// The floor's JetStream setup (`--jetstream --stream S --durable D`), if any.
    pub floor_jetstream: Option<super::super::floor::JetStreamSetup>,
}

/// A running target.
#[derive(Debug)]
pub struct Running {
    target: Target,
    child: Child,
    log: PathBuf,
}

/// The last `n` lines of a log file (empty when it cannot be read).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Running {
    /// Starts `target` with its stderr and stdout in a log file under the scratch folder.
    ///
    /// # Errors
    /// [`TargetError`] when the log cannot be created or the child not started.
    pub fn start(target: Target, launch: &Launch, run: usize) -> Result<Running, TargetError> {
        let log = launch.scratch.join(format!("{}-{run}.log", target.name()));
        let file = |p: &Path| {
            std::fs::File::create(p).map_err(|source| TargetError::File {
                path: p.to_path_buf(),
                source,
            })
        };
        let out = file(&log)?;
        let err = out.try_clone().map_err(|source| TargetError::File {
            path: log.clone(),
            source,
        })?;
        let mut cmd = Command::new(&launch.exe);
        match target {
            Target::Floor => {
                cmd.args(["floor", "--nats", &launch.url]);
                if let Some(js) = &launch.floor_jetstream {
                    cmd.args(["--jetstream", "--stream", &js.stream, "--durable", &js.durable]);
                }
            }
            Target::Cambio => {
                cmd.args(["serve", "--nats", &launch.url]);
                if let Some(c) = &launch.cambio_config {
                    cmd.arg("--config").arg(c);
                }
            }
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true);
        let child = cmd.spawn().map_err(|source| TargetError::Spawn {
            target: target.name(),
            source,
        })?;
        Ok(Running { target, child, log })
    }

    /// Which target this is.
    /// The child's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub fn target(&self) -> Target {
        self.target
    }

    /// Its log file.
    pub fn log(&self) -> &Path {
        &self.log
    }

    /// `Err` when the child has already exited.
    ///
    /// # Errors
    /// [`TargetError::Exited`] with the end of its log.
    pub fn check_alive(&mut self) -> Result<(), TargetError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.exited(status.to_string())),
            Err(e) => Err(self.exited(e.to_string())),
        }
    }

    fn exited(&self, status: String) -> TargetError {
        TargetError::Exited {
            target: self.target.name(),
            status,
            log: self.log.display().to_string(),
            tail: tail(&self.log, 20),
        }
    }

    /// Stops the child: SIGTERM (through `kill`, to stay free of `unsafe`), then SIGKILL after `grace`.
    /// Returns whether it exited on SIGTERM.
    pub async fn stop(mut self, grace: Duration) -> bool {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await;
            if let Ok(Ok(_)) = tokio::time::timeout(grace, self.child.wait()).await {
                return true;
            }
        }
        let _ = self.child.kill().await;
        false
    }
}
