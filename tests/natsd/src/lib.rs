//! A real `nats-server` with JetStream, for the fleet tests (`tests/it`) and
//! the fleet benchmarks (`weir-bench`): its own free loopback port and its
//! own store directory, stopped (SIGKILL) and started again on the same port
//! and directory to play an outage. The Debian package's binary is used
//! (`.ci/run` and `scripts/deps.sh` install it).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a server may take to say it is ready.
const READY_WITHIN: Duration = Duration::from_secs(30);

#[derive(Debug, thiserror::Error)]
pub enum NatsdError {
    #[error("nats-server is not installed (apt-get install nats-server; .ci/run and scripts/deps.sh install it)")]
    NotInstalled,
    #[error("{what}: {source}")]
    Io { what: &'static str, source: std::io::Error },
    #[error("nats-server exited before it was ready:\n{0}")]
    Exited(String),
    #[error("nats-server was not ready within {READY_WITHIN:?}")]
    NotReady,
    #[error("nats-server is already running")]
    Running,
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> NatsdError {
    move |source| NatsdError::Io { what, source }
}

/// The `nats-server` binary: on `PATH`, or where the Debian package puts it
/// (/usr/sbin, which a non-root `PATH` may lack).
pub fn binary() -> Result<PathBuf, NatsdError> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/local/bin"])
        .map(|dir| Path::new(dir).join("nats-server"))
        .find(|p| p.is_file())
        .ok_or(NatsdError::NotInstalled)
}

pub struct NatsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra configuration (accounts, permissions, limits), appended to the
    /// generated `listen` and `jetstream` settings.
    config: Option<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port, with `config`
    /// (nats-server's config syntax) added, and waits until it is ready.
    pub fn start(config: Option<&str>) -> Result<NatsServer, NatsdError> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map_err(io("finding a free port"))?.port();
        let dir = tempfile::Builder::new().prefix("weir-nats-").tempdir().map_err(io("creating the store directory"))?;
        let mut s = NatsServer { port, dir, config: config.map(str::to_string), child: None };
        s.up()?;
        Ok(s)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and store directory and waits for
    /// the server's "ready" line.
    pub fn up(&mut self) -> Result<(), NatsdError> {
        if self.child.is_some() {
            return Err(NatsdError::Running);
        }
        let conf = self.dir.path().join("nats.conf");
        let text = format!(
            "listen: \"127.0.0.1:{}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n{}\n",
            self.port,
            self.dir.path().join("jetstream").display(),
            self.config.as_deref().unwrap_or("")
        );
        std::fs::write(&conf, text).map_err(io("writing nats.conf"))?;
        let mut child = Command::new(binary()?)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io("starting nats-server"))?;
        let ready = match child.stderr.take() {
            Some(stderr) => wait_ready(stderr),
            None => Err(NatsdError::NotReady),
        };
        match ready {
            Ok(()) => {
                self.child = Some(child);
                Ok(())
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                Err(e)
            }
        }
    }

    /// Kills the server (SIGKILL): an outage. Its store directory stays.
    pub fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The `[fleet]` section pointing a gateway at this server.
    pub fn fleet_toml(&self, pop: &str) -> String {
        format!("[fleet]\nnats_urls = [\"{}\"]\npop = \"{pop}\"\n", self.url())
    }
}

/// Reads the server's log until its "ready" line (then keeps draining it, so
/// the server never blocks on a full pipe); its lines if it exits first.
fn wait_ready(stderr: std::process::ChildStderr) -> Result<(), NatsdError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut tx = Some(tx);
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("Server is ready")
                && let Some(tx) = tx.take()
            {
                let _ = tx.send(Ok(()));
            }
            seen.push(line);
        }
        if let Some(tx) = tx.take() {
            let _ = tx.send(Err(seen.join("\n")));
        }
    });
    match rx.recv_timeout(READY_WITHIN) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(log)) => Err(NatsdError::Exited(log)),
        Err(_) => Err(NatsdError::NotReady),
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.down();
    }
}
