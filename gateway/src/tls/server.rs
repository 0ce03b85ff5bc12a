//! TLS on a listener: the handshake (with a deadline and a clear answer to
//! plain HTTP), and the certificate, reloaded on SIGHUP and when its files
//! change without dropping established connections.

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::ServerConfig;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::{TlsError, certificates, private_key, provider, read, versions};
use crate::config::TlsConfig;
use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;

/// TLS 1.2 sessions remembered for resumption (a few hundred bytes each).
const SESSION_CACHE: usize = 4096;

/// The first byte of a TLS record carrying a handshake message.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// The certificate rustls hands to each new handshake; swapped by a reload.
#[derive(Debug)]
struct Resolver {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }
}

/// Why a connection never reached HTTP.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no TLS handshake within {0:?}")]
    Timeout(Duration),
    #[error("plain HTTP sent to a TLS listener; answered 400")]
    PlainHttp,
    #[error("not a TLS client hello")]
    NotTls,
    #[error("closed before the handshake")]
    Closed,
    #[error("handshake failed: {0}")]
    Failed(std::io::Error),
}

impl HandshakeError {
    /// The `reason` label of `weir_tls_handshake_failures_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            HandshakeError::Timeout(_) => "timeout",
            HandshakeError::PlainHttp => "plain_http",
            HandshakeError::NotTls => "not_tls",
            HandshakeError::Closed => "closed",
            HandshakeError::Failed(_) => "error",
        }
    }
}

/// A loaded certificate and key.
pub(super) struct Loaded {
    key: Arc<CertifiedKey>,
    not_after: Option<i64>,
}

/// The two files as read at one moment (or why they could not be), and a
/// hash of exactly that: what is parsed is what was compared.
struct Files {
    cert: Result<Vec<u8>, TlsError>,
    key: Result<Vec<u8>, TlsError>,
    fingerprint: [u8; 32],
}

impl Files {
    fn read(prefix: &str, tls: &TlsConfig) -> Files {
        let cert = read(&format!("{prefix}.cert"), &tls.cert);
        let key = read(&format!("{prefix}.key"), &tls.key);
        let mut h = Sha256::new();
        for part in [&cert, &key] {
            match part {
                Ok(bytes) => h.update(bytes),
                Err(e) => h.update(e.to_string().as_bytes()),
            }
            h.update([0xff]);
        }
        Files { cert, key, fingerprint: h.finalize().into() }
    }
}

/// Reads and checks the certificate chain and key `tls` names.
pub(super) fn load_key(prefix: &str, tls: &TlsConfig) -> Result<Loaded, TlsError> {
    parse(prefix, tls, Files::read(prefix, tls))
}

fn parse(prefix: &str, tls: &TlsConfig, files: Files) -> Result<Loaded, TlsError> {
    let (cert_key, key_key) = (format!("{prefix}.cert"), format!("{prefix}.key"));
    let cert_pem = files.cert?;
    let key_pem = files.key?;
    let chain = certificates(&cert_key, &tls.cert, &cert_pem)?;
    let not_after = super::der::not_after(&chain[0]);
    let key = private_key(&key_key, &tls.key, &key_pem)?;
    let certified = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::Invalid {
        key: key_key.clone(),
        reason: format!("{} does not go with the certificate in {}: {e}", tls.key.display(), tls.cert.display()),
    })?;
    Ok(Loaded { key: Arc::new(certified), not_after })
}

/// TLS for one listener.
pub struct ServerTls {
    listener: &'static str,
    prefix: &'static str,
    config: TlsConfig,
    resolver: Arc<Resolver>,
    acceptor: TlsAcceptor,
    metrics: Arc<Metrics>,
    watch: Mutex<Watch>,
}

/// What the watcher knows of the files.
struct Watch {
    /// The content last acted on, served or reported broken: a broken file
    /// is reported once, and looked at again when it changes.
    seen: [u8; 32],
    /// Content that failed once and is not reported yet: a rotation writes
    /// two files, and a poll between the writes sees a mismatched pair.
    suspect: Option<[u8; 32]>,
}

impl ServerTls {
    /// Loads the certificate; an error here stops startup.
    pub fn load(
        listener: &'static str,
        prefix: &'static str,
        config: &TlsConfig,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<ServerTls>, TlsError> {
        let files = Files::read(prefix, config);
        let seen = files.fingerprint;
        let loaded = parse(prefix, config, files)?;
        let versions = versions(&config.min_version).ok_or_else(|| TlsError::Invalid {
            key: format!("{prefix}.min_version"),
            reason: format!("must be \"1.2\" or \"1.3\"; got {:?}", config.min_version),
        })?;
        let resolver = Arc::new(Resolver { current: RwLock::new(loaded.key.clone()) });
        let mut server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(versions)
            .map_err(|e| TlsError::Invalid { key: format!("{prefix}.min_version"), reason: e.to_string() })?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        // Senders that reconnect per webhook resume instead of paying a full
        // handshake: stateless tickets (keys rotated by rustls every 6 h) for
        // TLS 1.3, and a bounded session cache for TLS 1.2.
        server.ticketer = rustls::crypto::ring::Ticketer::new()
            .map_err(|e| TlsError::Invalid { key: prefix.into(), reason: format!("cannot set up session tickets: {e}") })?;
        server.session_storage = rustls::server::ServerSessionMemoryCache::new(SESSION_CACHE);
        metrics.tls_certificate(listener, loaded.not_after, config.expiry_warn_days);
        warn_if_no_expiry(listener, &loaded);
        Ok(Arc::new(ServerTls {
            listener,
            prefix,
            config: config.clone(),
            resolver,
            acceptor: TlsAcceptor::from(Arc::new(server)),
            metrics,
            watch: Mutex::new(Watch { seen, suspect: None }),
        }))
    }

    /// Re-reads the files. Swaps the certificate for new connections when
    /// they changed and are good; keeps the old one (and says why) when not.
    /// A poll reports broken files only when they are the same on the next
    /// poll (a rotation in progress is not an error); `forced` (SIGHUP)
    /// reports at once, and retries files already found broken.
    pub fn reload(&self, forced: bool) -> Result<bool, TlsError> {
        let files = Files::read(self.prefix, &self.config);
        let fingerprint = files.fingerprint;
        let mut watch = self.watch.lock().unwrap_or_else(|e| e.into_inner());
        if watch.seen == fingerprint && !forced {
            return Ok(false);
        }
        match parse(self.prefix, &self.config, files) {
            Ok(loaded) => {
                *watch = Watch { seen: fingerprint, suspect: None };
                warn_if_no_expiry(self.listener, &loaded);
                *self.resolver.current.write().unwrap_or_else(|e| e.into_inner()) = loaded.key;
                self.metrics.tls_certificate(self.listener, loaded.not_after, self.config.expiry_warn_days);
                self.metrics.tls_reload(self.listener, "ok");
                tracing::info!(listener = self.listener, cert = %self.config.cert.display(), "TLS certificate reloaded");
                Ok(true)
            }
            Err(_) if !forced && watch.suspect != Some(fingerprint) => {
                watch.suspect = Some(fingerprint);
                Ok(false)
            }
            Err(e) => {
                *watch = Watch { seen: fingerprint, suspect: None };
                self.metrics.tls_reload(self.listener, "error");
                tracing::error!(listener = self.listener, error = %e, "TLS certificate reload failed; still serving the previous certificate");
                Err(e)
            }
        }
    }

    /// Polls the files every `watch_interval_ms` (0: never) and reloads on
    /// SIGHUP, until shutdown; the caller awaits the returned task.
    pub fn spawn_watcher(self: &Arc<Self>, mut shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let tls = self.clone();
        let every = Duration::from_millis(self.config.watch_interval_ms);
        let mut tick = (!every.is_zero()).then(|| tokio::time::interval_at(tokio::time::Instant::now() + every, every));
        let mut hangup = signal(SignalKind::hangup()).ok();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = next_tick(&mut tick) => {
                        let _ = tls.reload(false);
                    }
                    _ = next_signal(&mut hangup) => {
                        tracing::info!(listener = tls.listener, "SIGHUP: reloading the TLS certificate");
                        let _ = tls.reload(true);
                    }
                    _ = shutdown.wait() => break,
                }
            }
        })
    }

    /// Completes the TLS handshake within the deadline. A client that sent
    /// plain HTTP gets a 400 saying to use https:// before the close.
    pub async fn accept(&self, stream: TcpStream) -> Result<TlsStream<TcpStream>, HandshakeError> {
        let deadline = Duration::from_millis(self.config.handshake_timeout_ms);
        // Each failure is counted inside its arm, while the connection is
        // still open: whoever sees it close also sees the count.
        let failed = match tokio::time::timeout(deadline, self.handshake(stream)).await {
            Ok(Ok(Opened::Tls(stream))) => return Ok(*stream),
            Ok(Ok(Opened::PlainHttp(stream))) => {
                self.metrics.tls_handshake_failure(self.listener, HandshakeError::PlainHttp.reason());
                refuse_plain_http(stream).await;
                return Err(HandshakeError::PlainHttp);
            }
            Ok(Err(e)) => {
                self.metrics.tls_handshake_failure(self.listener, e.reason());
                e
            }
            Err(_) => {
                let e = HandshakeError::Timeout(deadline);
                self.metrics.tls_handshake_failure(self.listener, e.reason());
                e
            }
        };
        Err(failed)
    }

    async fn handshake(&self, stream: TcpStream) -> Result<Opened, HandshakeError> {
        let mut first = [0u8; 1];
        let n = stream.peek(&mut first).await.map_err(HandshakeError::Failed)?;
        if n == 0 {
            return Err(HandshakeError::Closed);
        }
        if first[0] != TLS_HANDSHAKE_RECORD {
            if first[0].is_ascii_uppercase() {
                return Ok(Opened::PlainHttp(stream));
            }
            return Err(HandshakeError::NotTls);
        }
        self.acceptor.accept(stream).await.map(|s| Opened::Tls(Box::new(s))).map_err(HandshakeError::Failed)
    }
}

/// What the first bytes of a connection turned out to be.
enum Opened {
    // Boxed: a TLS stream is ~1 KiB next to a bare TcpStream.
    Tls(Box<TlsStream<TcpStream>>),
    PlainHttp(TcpStream),
}

/// How long a plain-HTTP client may take to read its 400, and how much more
/// of its request is read and discarded meanwhile.
const REFUSAL_TIME: Duration = Duration::from_secs(1);
const REFUSAL_DRAIN: usize = 64 * 1024;

/// Answers a plain-HTTP request on a TLS port with a 400 that says what to
/// do, the way nginx's 497 does, rather than a bare reset.
async fn refuse_plain_http(stream: TcpStream) {
    let _ = tokio::time::timeout(REFUSAL_TIME, answer_plain_http(stream)).await;
}

async fn answer_plain_http(mut stream: TcpStream) {
    let mut buf = [0u8; 4096];
    let _ = stream.read(&mut buf).await;
    let body = r#"{"error":"tls_required","message":"this port speaks HTTPS only; send the request again with an https:// URL"}"#;
    let head = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
    let _ = stream.shutdown().await;
    // Read what the client still sends until it closes: closing with unread
    // data would reset the connection and could destroy the answer in
    // flight. Bounded in bytes here and in time by the caller.
    let mut drained = 0;
    while drained < REFUSAL_DRAIN {
        match stream.read(&mut buf).await {
            Ok(n) if n > 0 => drained += n,
            _ => break,
        }
    }
}

fn warn_if_no_expiry(listener: &str, loaded: &Loaded) {
    if loaded.not_after.is_none() {
        tracing::warn!(listener, "cannot read the certificate's expiry date; weir_tls_certificate_* is not reported for this listener");
    }
}

async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(t) => {
            t.tick().await;
        }
        None => std::future::pending().await,
    }
}

async fn next_signal(s: &mut Option<tokio::signal::unix::Signal>) {
    let delivered = match s {
        Some(s) => s.recv().await.is_some(),
        None => false,
    };
    if !delivered {
        std::future::pending::<()>().await;
    }
}
