//! A local `nats-server` with JetStream (file storage) for the fleet
//! scenarios: a free loopback port, its own store directory, killed on drop.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::servers::free_port;

/// The Debian package installs it in /usr/sbin, which a non-root PATH may lack.
fn binary() -> anyhow::Result<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    for dir in path.split(':').chain(["/usr/sbin", "/usr/local/bin"]) {
        let p = Path::new(dir).join("nats-server");
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("nats-server is not installed (apt-get install nats-server; .ci/run installs it)")
}

pub struct NatsServer {
    pub addr: SocketAddr,
    child: Child,
    /// Holds the store directory as long as the server runs.
    _dir: tempfile::TempDir,
}

impl NatsServer {
    /// Starts a server and waits for its "ready" line.
    pub fn start() -> anyhow::Result<NatsServer> {
        let addr = free_port()?;
        let dir = tempfile::Builder::new().prefix("weir-bench-nats-").tempdir().context("creating the NATS store directory")?;
        let conf = dir.path().join("nats.conf");
        let store = dir.path().join("jetstream");
        std::fs::write(&conf, format!("listen: \"{addr}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n", store.display()))
            .context("writing nats.conf")?;
        let bin = binary()?;
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let stderr = child.stderr.take().context("nats-server's stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = Vec::new();
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
        let server = NatsServer { addr, child, _dir: dir };
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => Ok(server),
            Ok(Err(log)) => bail!("nats-server exited before it was ready:\n{log}"),
            Err(_) => bail!("nats-server was not ready within 30 s"),
        }
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
