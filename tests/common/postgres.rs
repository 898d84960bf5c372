//! A real PostgreSQL server for the tests of the `postgres` source: a fresh cluster in a temporary folder
//! (`initdb`), one `postgres` process on a free loopback port with its socket in that folder, stopped and
//! removed when the handle is dropped.
//!
//! The binaries are Debian's (package `postgresql`, which `scripts/test.sh` installs): the newest
//! `/usr/lib/postgresql/<version>/bin`, else `initdb` and `postgres` on `PATH`; `$CAMBIO_PG_BIN` names
//! another folder. PostgreSQL refuses to run as root, and the tests often run as root (CI does): then
//! `initdb` and `postgres` run as the unprivileged user `nobody` (uid and gid 65534 on Debian) through
//! `setpriv` (util-linux, on every Debian), in a folder under `/tmp` handed to that user. As any other user
//! they run as that user. The cluster trusts every local connection (`--auth=trust`, user `postgres`): it
//! listens on 127.0.0.1 only and lives as long as the test.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long the server may take to accept connections after it starts (a loaded CI machine is slow).
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// The uid and gid the server runs as when the tests run as root: Debian's `nobody` / `nogroup`.
const UNPRIVILEGED_ID: u32 = 65534;

/// A running PostgreSQL server, stopped (and its folder removed) on drop.
pub struct Postgres {
    bin: PathBuf,
    /// The temporary folder: `data/` (the cluster), the socket, `postgres.log`.
    dir: PathBuf,
    port: u16,
    child: Option<Child>,
    as_root: bool,
}

impl Postgres {
    /// A fresh cluster, started and accepting connections.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let as_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
        // Under /tmp, not $TMPDIR: `nobody` must be able to reach it (a TMPDIR under /root would not be).
        let dir = PathBuf::from("/tmp").join(format!("cambio-pg-{}-{}", std::process::id(), super::free_port()));
        std::fs::create_dir_all(&dir).unwrap();
        if as_root {
            std::os::unix::fs::chown(&dir, Some(UNPRIVILEGED_ID), Some(UNPRIVILEGED_ID)).unwrap();
        }
        let mut pg = Postgres {
            bin,
            dir,
            port: super::free_port(),
            child: None,
            as_root,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(pg.dir.join("data"))
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
                "--locale=C",
            ])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        pg.resume();
        pg
    }

    /// The port it listens on, on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq-style connection string for the `postgres` database (what a source's `dsn` holds).
    pub fn dsn(&self) -> String {
        format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
            self.port
        )
    }

    /// The server's log so far (printed by the tests when they fail).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default()
    }

    /// Runs `sql` with `psql` (stops at the first error, which fails the test); its unaligned output.
    pub fn psql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
            ])
            .args(["-p", &self.port.to_string(), "-d", "postgres", "-c", sql])
            .current_dir(&self.dir)
            .output()
            .expect("run psql");
        assert!(
            out.status.success(),
            "psql failed on `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server (fast shutdown: open sessions are ended, the data is kept), waiting for it to exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, "INT");
            wait_or_kill(&mut child, Duration::from_secs(30));
        }
    }

    /// Starts the server again on the same data and port (after [`Postgres::stop`]), accepting connections.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "the server is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("postgres.log"))
            .unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-k")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            // A test cluster: durability across a machine crash does not matter, speed does.
            .args([
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start postgres");
        self.child = Some(child);
        self.wait_ready();
    }

    /// Polls `pg_isready` until the server accepts connections, for at most [`READY_TIMEOUT`].
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let ready = Command::new(self.bin.join("pg_isready"))
                .args([
                    "-q",
                    "-h",
                    "127.0.0.1",
                    "-U",
                    "postgres",
                    "-t",
                    "2",
                    "-p",
                    &self.port.to_string(),
                ])
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                panic!(
                    "postgres exited ({status}) before accepting connections:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "postgres did not accept connections within {} s:\n{}",
                READY_TIMEOUT.as_secs(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `program` from the binaries' folder, run as `nobody` when the tests run as root, in the temp folder.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut cmd = if self.as_root {
            let mut c = Command::new("setpriv");
            c.arg(format!("--reuid={UNPRIVILEGED_ID}"))
                .arg(format!("--regid={UNPRIVILEGED_ID}"))
                .arg("--clear-groups")
                .arg(path);
            c
        } else {
            Command::new(path)
        };
        cmd.current_dir(&self.dir);
        cmd
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- postgres log ---\n{}", self.log());
        }
        if let Some(mut child) = self.child.take() {
            // Immediate shutdown: the cluster is thrown away, so no checkpoint is worth waiting for.
            signal(&child, "QUIT");
            wait_or_kill(&mut child, Duration::from_secs(10));
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `SIG<name>` to the child (setpriv execs, so the child is the postmaster itself).
fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
}

/// Waits for the child to exit for at most `timeout`, then kills it.
fn wait_or_kill(child: &mut Child, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// The folder of the PostgreSQL binaries: `$CAMBIO_PG_BIN`, else Debian's newest
/// `/usr/lib/postgresql/<version>/bin`, else the folder of `initdb` on `PATH`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CAMBIO_PG_BIN") {
        return PathBuf::from(dir);
    }
    let debian = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| Some((e.file_name().to_str()?.parse::<u32>().ok()?, e.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .max_by_key(|(version, _)| *version);
    if let Some((_, bin)) = debian {
        return bin;
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .find(|d| Path::new(d).join("initdb").is_file())
        .expect("PostgreSQL's initdb: install Debian's postgresql package (scripts/test.sh does)")
}
