//! The harness's own servers.
//!
//! * [`BareServer`]: the baseline. A bare hyper HTTP/1.1 server that reads the
//!   body and answers 202 with a small JSON body, doing no other work. It runs
//!   as a child process (this same executable, `__serve-bare`) with its own
//!   multi-threaded runtime, exactly like `weir`, so both pay the same
//!   process and scheduling costs and compete with the load generator alike.
//! * [`Upstream`]: the fast loopback upstream for forwarding scenarios, in
//!   process. It answers 200 to everything, counts what it sees, and can be
//!   stopped (listener closed, every open connection dropped, so connections
//!   are refused) and started again on the same port.

use std::convert::Infallible;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::AbortHandle;

/// The hidden first argument that turns this executable into the bare server.
pub const BARE_ARG: &str = "__serve-bare";

const BARE_BODY: &[u8] = br#"{"id":"01KAT5ZQ4H5M2D3X9V7C8B6N1P","duplicate":false,"quarantined":false}"#;

/// Entry point of the child process: bind a free loopback port, print it,
/// serve until stdin closes (the harness exited or dropped us).
pub fn bare_main() -> ExitCode {
    match serve_bare_forever() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bare server: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve_bare_forever() -> anyhow::Result<()> {
    std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(|| {
            let mut sink = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut sink);
            std::process::exit(0);
        })
        .context("starting the stdin watcher")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.context("binding the bare server")?;
        println!("{}", listener.local_addr().context("local address")?);
        loop {
            let (stream, _) = listener.accept().await.context("accepting")?;
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut resp = hyper::Response::new(Full::new(Bytes::from_static(BARE_BODY)));
                    *resp.status_mut() = hyper::StatusCode::ACCEPTED;
                    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
                    Ok::<_, Infallible>(resp)
                });
                let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    })
}

/// The baseline server, a child process; killed on drop.
pub struct BareServer {
    child: Child,
    pub addr: SocketAddr,
}

impl BareServer {
    pub fn spawn() -> anyhow::Result<BareServer> {
        let exe = std::env::current_exe().context("locating the harness executable")?;
        let mut child = Command::new(&exe)
            .arg(BARE_ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("starting the bare server ({} {BARE_ARG})", exe.display()))?;
        let stdout = child.stdout.take().context("bare server stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).context("reading the bare server's address")?;
        let addr = match line.trim().parse() {
            Ok(a) => a,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the bare server did not report its address (got {line:?})");
            }
        };
        Ok(BareServer { child, addr })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The in-process upstream: 200 to every request.
pub struct Upstream {
    pub addr: SocketAddr,
    /// Requests answered since creation.
    pub requests: Arc<AtomicU64>,
    /// Connections accepted since creation.
    pub connections: Arc<AtomicU64>,
    running: Mutex<Option<Running>>,
}

struct Running {
    accept: AbortHandle,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Upstream {
    /// Picks a free loopback port without listening on it yet: until
    /// [`Upstream::start`], connections to it are refused.
    pub fn reserve() -> anyhow::Result<Upstream> {
        Ok(Upstream { addr: free_port()?, requests: Arc::default(), connections: Arc::default(), running: Mutex::new(None) })
    }

    pub fn url(&self) -> String {
        format!("http://{}/triggers", self.addr)
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Starts listening (again) on the reserved port.
    pub async fn start(&self) -> anyhow::Result<()> {
        self.stop();
        let listener = TcpListener::bind(self.addr).await.with_context(|| format!("binding the upstream on {}", self.addr))?;
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let accept = tokio::spawn(accept_loop(listener, conns.clone(), self.requests.clone(), self.connections.clone()));
        *self.running.lock().unwrap_or_else(|e| e.into_inner()) = Some(Running { accept: accept.abort_handle(), conns });
        Ok(())
    }

    /// Closes the listener and every open connection: the upstream is down.
    pub fn stop(&self) {
        if let Some(r) = self.running.lock().unwrap_or_else(|e| e.into_inner()).take() {
            r.accept.abort();
            for c in r.conns.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
                c.abort();
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn accept_loop(listener: TcpListener, conns: Arc<Mutex<Vec<AbortHandle>>>, requests: Arc<AtomicU64>, accepted: Arc<AtomicU64>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(_) => {
                // Out of descriptors or the like: back off rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        accepted.fetch_add(1, Ordering::Relaxed);
        let requests = requests.clone();
        let task = tokio::spawn(async move {
            let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                let requests = requests.clone();
                async move {
                    let _ = req.into_body().collect().await;
                    requests.fetch_add(1, Ordering::Relaxed);
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"{\"ok\":true}"))))
                }
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
        let mut list = conns.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|h| !h.is_finished());
        list.push(task.abort_handle());
    }
}

/// A loopback port nothing listens on right now.
pub fn free_port() -> anyhow::Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    l.local_addr().context("reading the free port")
}
