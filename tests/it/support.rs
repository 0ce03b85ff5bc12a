//! Test support: start the gateway (in-process through `weir::run`, or the
//! real `weir` binary as a child process) on port 0, and a small HTTP client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

pub const TOKEN: &str = "test-operator-token";

/// A config for tests: both listeners on port 0, the store in `dir`.
pub fn config_toml(dir: &Path, extra: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_body_bytes = 65536
shutdown_grace_ms = 10000

[store]
path = "{}"

[admin]
token = "{TOKEN}"

[[tenants]]
id = "acme"

[[tenants]]
id = "globex"
{extra}
"#,
        dir.display()
    )
}

/// Writes `config_toml` (store under `dir/data`, then `extra`) to
/// `dir/weir.toml` for a `WeirProcess`; returns its path.
pub fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let file = dir.join("weir.toml");
    std::fs::write(&file, config_toml(&dir.join("data"), extra)).expect("write weir.toml");
    file
}

/// A gateway running inside the test process.
pub struct Gateway {
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    /// A client that trusts the gateway's certificates (when it has any).
    pub client: Client,
    ingest_scheme: &'static str,
    admin_scheme: &'static str,
    /// Keeps the store directory alive as long as the gateway.
    _dir: tempfile::TempDir,
    trigger: Option<weir::ShutdownTrigger>,
    task: Option<tokio::task::JoinHandle<Result<(), weir::RunError>>>,
}

impl Gateway {
    pub async fn start() -> Gateway {
        Gateway::start_with("", |_| {}).await
    }

    /// `extra` is appended to the TOML; `tweak` edits the parsed config.
    pub async fn start_with(extra: &str, tweak: impl FnOnce(&mut weir::Config)) -> Gateway {
        Gateway::start_in(tempfile::tempdir().expect("tempdir"), extra, tweak).await
    }

    /// Starts on an existing store directory (a restart).
    pub async fn start_in(dir: tempfile::TempDir, extra: &str, tweak: impl FnOnce(&mut weir::Config)) -> Gateway {
        Gateway::start_with_client(dir, extra, tweak, Client::new()).await
    }

    /// Starts with `client` for the readiness check and the tests (one that
    /// trusts the test CA when the listeners speak TLS).
    pub async fn start_with_client(dir: tempfile::TempDir, extra: &str, tweak: impl FnOnce(&mut weir::Config), client: Client) -> Gateway {
        let mut config = weir::Config::from_toml(&config_toml(dir.path(), extra)).expect("test config is valid");
        // In process, the running executable is this test binary: plugins
        // compile in the real weir binary instead.
        config.plugins.compiler.get_or_insert_with(weir_bin);
        tweak(&mut config);
        let ingest = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (ingest_addr, admin_addr) = (ingest.local_addr().expect("addr"), admin.local_addr().expect("addr"));
        let (trigger, shutdown) = weir::shutdown::channel();
        let ingest_scheme = if config.server.tls.is_some() { "https" } else { "http" };
        let admin_scheme = if config.server.admin_tls.is_some() { "https" } else { "http" };
        let task = tokio::spawn(weir::run(config, weir::Listeners { ingest, admin }, shutdown));
        let gw = Gateway {
            ingest: ingest_addr,
            admin: admin_addr,
            client,
            ingest_scheme,
            admin_scheme,
            _dir: dir,
            trigger: Some(trigger),
            task: Some(task),
        };
        // Plugins compile before the listeners serve; one answered request
        // (it waits in the accept backlog until then) means the gateway is up.
        let up = gw.client.get(&gw.ingest_url("/healthz"), None).await;
        assert_eq!(up.status, StatusCode::OK);
        gw
    }

    pub fn ingest_url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.ingest_scheme, self.ingest)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}://{}{path}", self.admin_scheme, self.admin)
    }

    /// Requests shutdown, waits for `run` to return, and hands back the
    /// store directory (for a restart).
    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(t) = self.trigger.take() {
            t.trigger();
        }
        if let Some(task) = self.task.take() {
            task.await.expect("run task").expect("run returned an error");
        }
        self._dir
    }
}

/// What a request got back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
}

#[derive(Clone)]
pub struct Client {
    inner: HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Default for Client {
    fn default() -> Self {
        Client::new()
    }
}

impl Client {
    pub fn new() -> Client {
        Client::with_tls(crate::pki::client_config(None, None))
    }

    /// A client for https:// URLs with this rustls configuration (its ALPN is set here).
    pub fn with_tls(tls: rustls::ClientConfig) -> Client {
        let connector = weir::tls::upstream::connector(tls, HttpConnector::new());
        Client { inner: HyperClient::builder(TokioExecutor::new()).build(connector) }
    }

    pub async fn send(&self, method: Method, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Result<Reply, String> {
        let mut req = Request::builder().method(method).uri(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).map_err(|e| e.to_string())?;
        let resp = self.inner.request(req).await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status, headers, body })
    }

    pub async fn put(&self, url: &str, token: &str, body: impl Into<Bytes>) -> Reply {
        let auth = format!("Bearer {token}");
        self.send(Method::PUT, url, &[("authorization", auth.as_str())], body).await.expect("request")
    }

    pub async fn post(&self, url: &str, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
        self.send(Method::POST, url, headers, body).await.expect("request")
    }

    pub async fn get(&self, url: &str, token: Option<&str>) -> Reply {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
        self.send(Method::GET, url, &headers, Bytes::new()).await.expect("request")
    }
}

/// The real `weir` binary as a child process.
pub struct WeirProcess {
    pub child: Child,
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    pub log: Arc<Mutex<Vec<String>>>,
    lines: std::sync::mpsc::Receiver<String>,
}

pub fn weir_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_weir"))
}

impl WeirProcess {
    /// Starts `weir serve --config FILE` and waits for its "listening" log line.
    pub fn start(config_file: &Path) -> WeirProcess {
        WeirProcess::start_with_env(config_file, &[])
    }

    /// Starts with extra environment variables.
    pub fn start_with_env(config_file: &Path, env: &[(&str, &str)]) -> WeirProcess {
        WeirProcess::start_wrapped(&[], config_file, env)
    }

    /// Starts `weir serve` under another program: `wrapper` is its command
    /// line before weir's (`strace -f -o FILE`); `child` is then that program.
    pub fn start_wrapped(wrapper: &[&std::ffi::OsStr], config_file: &Path, env: &[(&str, &str)]) -> WeirProcess {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(weir_bin());
                c
            }
            None => Command::new(weir_bin()),
        };
        let mut child = command
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .args(["serve", "--config"])
            .arg(config_file)
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn weir");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let (line_tx, lines) = std::sync::mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line)
                    && v["message"] == "weir listening"
                {
                    let addr = |k: &str| v[k].as_str().and_then(|s| s.parse::<SocketAddr>().ok());
                    if let (Some(i), Some(a), Some(tx)) = (addr("ingest_addr"), addr("admin_addr"), tx.take()) {
                        let _ = tx.send((i, a));
                    }
                }
                let _ = line_tx.send(line.clone());
                sink.lock().expect("log lock").push(line);
            }
        });
        let (ingest, admin) = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addrs) => addrs,
            Err(_) => {
                let _ = child.kill();
                panic!("weir did not start; its log:\n{}", log.lock().expect("log").join("\n"));
            }
        };
        WeirProcess { child, ingest, admin, log, lines }
    }

    /// Waits for a log line containing `needle` (an event, not a sleep).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return,
                Ok(_) => continue,
                Err(_) => panic!("no log line with {needle:?} within {timeout:?}; log:\n{}", self.log_text()),
            }
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            // Polling a child's exit status: there is no portable exit event to await.
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety implications.
        let rc = unsafe { libc::kill(self.child.id() as i32, sig) };
        assert_eq!(rc, 0, "kill failed");
    }

    pub fn sigkill(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        self.log.lock().expect("log").join("\n")
    }
}

impl Drop for WeirProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How the test upstream answers.
#[derive(Debug, Clone)]
pub enum Mode {
    /// 200 to everything.
    Ok,
    /// This status to everything, with `retry-after` seconds when given.
    Status(u16, Option<u64>),
    /// Answer 200 after this long.
    Slow(Duration),
}

/// One request the upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: std::time::Instant,
    pub version: http::Version,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }
}

#[derive(Default)]
struct UpstreamState {
    mode: Mutex<Option<Mode>>,
    /// Statuses to answer first, in order, before `mode` applies.
    script: Mutex<std::collections::VecDeque<u16>>,
    received: Mutex<Vec<Received>>,
    changed: tokio::sync::Notify,
    /// Connections accepted (for TLS: handshakes completed).
    connections: std::sync::atomic::AtomicUsize,
}

/// A loopback upstream whose behaviour a test can switch, including going
/// down (connections refused) and coming back on the same port.
pub struct Upstream {
    pub addr: SocketAddr,
    state: Arc<UpstreamState>,
    server: Option<tokio::task::JoinHandle<()>>,
    /// Set: serves HTTPS (HTTP/2 or HTTP/1.1 by ALPN) with this configuration.
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl Upstream {
    pub async fn start(mode: Mode) -> Upstream {
        Upstream::start_with(mode, None).await
    }

    /// An HTTPS upstream.
    pub async fn start_tls(mode: Mode, tls: rustls::ServerConfig) -> Upstream {
        Upstream::start_with(mode, Some(Arc::new(tls))).await
    }

    async fn start_with(mode: Mode, tls: Option<Arc<rustls::ServerConfig>>) -> Upstream {
        let state = Arc::new(UpstreamState::default());
        *state.mode.lock().expect("mode") = Some(mode);
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = socket.local_addr().expect("addr");
        let listener = socket.listen(1024).expect("listen");
        let mut up = Upstream { addr, state, server: None, tls };
        up.serve(listener);
        up
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}/triggers", self.addr)
    }

    fn serve(&mut self, listener: TcpListener) {
        let state = self.state.clone();
        let tls = self.tls.clone().map(tokio_rustls::TlsAcceptor::from);
        self.server = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let state = state.clone();
                let tls = tls.clone();
                conns.spawn(async move {
                    let state_for_count = state.clone();
                    let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                        let state = state.clone();
                        async move { Ok::<_, std::convert::Infallible>(answer(&state, req).await) }
                    });
                    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            state_for_count.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                        }
                        Some(tls) => {
                            // A refused handshake (wrong CA, no client certificate) just ends the connection.
                            if let Ok(stream) = tls.accept(stream).await {
                                state_for_count.connections.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                let _ = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
            // Dropping `conns` aborts every open connection with the server.
        }));
    }

    /// Stops listening and cuts every connection: new attempts are refused.
    pub async fn down(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
            let _ = s.await;
        }
    }

    /// Listens again on the same port.
    pub fn up(&mut self) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind(self.addr).expect("rebind the same port");
        let listener = socket.listen(1024).expect("listen");
        self.serve(listener);
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("mode") = Some(mode);
    }

    /// Statuses to answer next, in order, before the mode applies again.
    pub fn script(&self, statuses: &[u16]) {
        self.state.script.lock().expect("script").extend(statuses.iter().copied());
    }

    /// Connections accepted so far (TLS: with a completed handshake).
    pub fn connections(&self) -> usize {
        self.state.connections.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().expect("received").clone()
    }

    /// Waits until `pred` holds over what was received (re-checked on every request).
    pub async fn wait_until(&self, timeout: Duration, pred: impl Fn(&[Received]) -> bool) {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.state.changed.notified();
            if pred(&self.received()) {
                return;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!("upstream condition not met within {timeout:?}; received {}", self.received().len());
            }
        }
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

async fn answer(state: &UpstreamState, req: Request<hyper::body::Incoming>) -> http::Response<Full<Bytes>> {
    let headers = req.headers().clone();
    let version = req.version();
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let scripted = state.script.lock().expect("script").pop_front();
    let mode = state.mode.lock().expect("mode").clone().unwrap_or(Mode::Ok);
    let (status, retry_after) = match (scripted, mode) {
        (Some(s), _) => (s, None),
        (None, Mode::Ok) => (200, None),
        (None, Mode::Status(s, ra)) => (s, ra),
        (None, Mode::Slow(d)) => {
            tokio::time::sleep(d).await;
            (200, None)
        }
    };
    state.received.lock().expect("received").push(Received { at: std::time::Instant::now(), version, headers, body });
    state.changed.notify_waiters();
    let mut resp = http::Response::new(Full::new(Bytes::from(format!("upstream says {status}"))));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Some(s) = retry_after {
        resp.headers_mut().insert("retry-after", s.into());
    }
    resp
}

/// Polls `check` (an admin query) until it returns `Some`, at most `timeout`.
/// For state the gateway records after an event the test cannot observe directly.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "condition not met within {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One example plugin in one SDK language. Each runs under the gateway's
/// default limits (a Python component, CPython and all, is ~19 MB: under
/// the default `plugins.max_component_bytes`) but Python's CPU budget: this
/// debug build starts CPython in 15 to 25 ms of CPU (2 ms in release), too
/// close to the default 50 ms for tests that assert no fault.
pub struct Lang {
    /// `rust`, `js`, `ts` or `py`: a prefix for tenant ids.
    pub name: &'static str,
    pub component: &'static str,
    /// `plugin_timeout_ms` when the default is too tight for this build.
    pub plugin_timeout_ms: Option<u64>,
}

impl Lang {
    const fn of(name: &'static str, component: &'static str) -> Lang {
        Lang { name, component, plugin_timeout_ms: None }
    }

    const fn python(component: &'static str) -> Lang {
        Lang { name: "py", component, plugin_timeout_ms: Some(1_000) }
    }

    pub const RUST_HMAC_VERIFY: Lang = Lang::of("rust", weir_test_plugins::HMAC_VERIFY);
    pub const JS_HMAC_VERIFY: Lang = Lang::of("js", weir_test_plugins::JS_HMAC_VERIFY);
    pub const PY_HMAC_VERIFY: Lang = Lang::python(weir_test_plugins::PY_HMAC_VERIFY);
    pub const RUST_JSON_TRANSFORM: Lang = Lang::of("rust", weir_test_plugins::JSON_TRANSFORM);
    pub const JS_JSON_TRANSFORM: Lang = Lang::of("js", weir_test_plugins::JS_JSON_TRANSFORM);
    pub const TS_JSON_TRANSFORM: Lang = Lang::of("ts", weir_test_plugins::TS_JSON_TRANSFORM);
    pub const PY_JSON_TRANSFORM: Lang = Lang::python(weir_test_plugins::PY_JSON_TRANSFORM);

    /// `tenant` with this language's CPU budget.
    pub fn tenant(&self, mut tenant: weir::config::TenantConfig) -> weir::config::TenantConfig {
        if let Some(ms) = self.plugin_timeout_ms {
            tenant.plugin_timeout_ms = ms;
        }
        tenant
    }
}
