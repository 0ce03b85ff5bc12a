//! A real `nats-server` with JetStream for the fleet tests: its own free
//! loopback port and its own store directory, stopped (SIGKILL) and started
//! again on the same port and directory to play an outage.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The Debian package installs it in /usr/sbin, which a non-root PATH may lack.
pub fn nats_server_bin() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/sbin", "/usr/local/bin"]) {
        let p = Path::new(dir).join("nats-server");
        if p.is_file() {
            return p;
        }
    }
    panic!("nats-server is not installed; .ci/run installs it (apt-get install nats-server)");
}

pub struct NatsServer {
    pub port: u16,
    dir: tempfile::TempDir,
    /// Extra configuration (accounts, permissions), written to a file.
    config: Option<String>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port.
    pub fn start() -> NatsServer {
        NatsServer::start_with_config(None)
    }

    /// Starts with `config` (nats-server's config syntax) added to the
    /// generated `listen` and `jetstream` settings.
    pub fn start_with_config(config: Option<&str>) -> NatsServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let mut s = NatsServer { port, dir: tempfile::tempdir().expect("tempdir"), config: config.map(str::to_string), child: None };
        s.up();
        s
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts (again) on the same port and store directory and waits for
    /// the server's "ready" line.
    pub fn up(&mut self) {
        assert!(self.child.is_none(), "nats-server is already running");
        let store = self.dir.path().join("jetstream");
        let conf = self.dir.path().join("nats.conf");
        let text = format!(
            "listen: \"127.0.0.1:{}\"\njetstream {{\n  store_dir: \"{}\"\n}}\n{}\n",
            self.port,
            store.display(),
            self.config.as_deref().unwrap_or("")
        );
        std::fs::write(&conf, text).expect("write nats.conf");
        let mut child = Command::new(nats_server_bin())
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn nats-server");
        let stderr = child.stderr.take().expect("stderr");
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
        match rx.recv_timeout(Duration::from_secs(30)) {
            Ok(Ok(())) => self.child = Some(child),
            Ok(Err(log)) => panic!("nats-server exited before it was ready:\n{log}"),
            Err(_) => {
                let _ = child.kill();
                panic!("nats-server was not ready within 30 s");
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

    /// A client for the test itself.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connect to the test nats-server")
    }

    /// The `[fleet]` section pointing a gateway at this server.
    pub fn fleet_toml(&self, pop: &str) -> String {
        format!("[fleet]\nnats_urls = [\"{}\"]\npop = \"{pop}\"\n", self.url())
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.down();
    }
}
