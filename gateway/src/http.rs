//! HTTP plumbing shared by the ingest and admin listeners: the accept loop
//! with graceful draining, JSON responses, the error body, bounded body reads.
//!
//! Only this module, `ingest` and `admin` know hyper's server types.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited, combinators::BoxBody};
use hyper::body::{Body, Incoming};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use serde::Serialize;
use tokio::net::TcpListener;

use crate::shutdown::Shutdown;
use crate::telemetry::Metrics;
use crate::tls::ServerTls;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub type ResponseBody = BoxBody<Bytes, std::io::Error>;
pub type Resp = Response<ResponseBody>;

pub fn full(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed()
}

/// A JSON response. Serialising our own plain structs cannot fail; if it
/// ever did, the client still gets a well-formed error body.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Resp {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| br#"{"error":"internal","message":"response could not be encoded"}"#.to_vec());
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
}

/// The error body every endpoint uses: `{"error": code, "message": what went wrong and what to do}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Resp {
    json(status, &ErrorBody { error: code, message })
}

/// A 503 that tells the client when to come back.
pub fn unavailable(code: &str, message: &str, retry_after_secs: u64) -> Resp {
    let mut resp = error(StatusCode::SERVICE_UNAVAILABLE, code, message);
    resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    resp
}

pub fn method_not_allowed(allow: &str, method: &http::Method, path: &str) -> Resp {
    let mut resp = error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", &format!("{method} is not allowed on {path}; use {allow}"));
    if let Ok(v) = HeaderValue::from_str(allow) {
        resp.headers_mut().insert(header::ALLOW, v);
    }
    resp
}

pub fn not_found(what: &str) -> Resp {
    error(StatusCode::NOT_FOUND, "not_found", what)
}

/// Why a request body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("body is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("body was not received within {0:?}")]
    Timeout(Duration),
    #[error("body could not be read: {0}")]
    Read(String),
}

/// Reads a body of at most `limit` bytes. Stops reading as soon as the limit
/// is passed (a declared Content-Length over the limit is refused unread).
pub async fn read_body(req: Request<Incoming>, limit: u64, timeout: Duration) -> Result<Bytes, BodyError> {
    if req.body().size_hint().lower() > limit {
        return Err(BodyError::TooLarge { limit });
    }
    let limited = Limited::new(req.into_body(), limit as usize);
    match tokio::time::timeout(timeout, limited.collect()).await {
        Err(_) => Err(BodyError::Timeout(timeout)),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(BodyError::TooLarge { limit }),
        Ok(Err(e)) => Err(BodyError::Read(e.to_string())),
    }
}

/// How one listener serves.
pub struct Serving {
    pub name: &'static str,
    pub tls: Option<Arc<ServerTls>>,
    /// Open connections at most; beyond it new ones wait in the kernel's
    /// accept backlog until one closes.
    pub max_connections: usize,
    /// How long shutdown waits for in-flight requests.
    pub grace: Duration,
    /// An HTTP/1 connection must send a request head within this (also
    /// while idle between requests), else it is closed.
    pub header_timeout: Duration,
    pub metrics: Arc<Metrics>,
}

/// Serves HTTP/1.1 (and, over TLS, HTTP/2 when the client picks `h2` in
/// ALPN) on `listener` until shutdown, then stops accepting and gives
/// in-flight requests up to `grace` to finish.
pub async fn serve<F, Fut>(listener: TcpListener, serving: Serving, handler: F, mut shutdown: Shutdown)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Resp> + Send + 'static,
{
    let Serving { name, tls, max_connections, grace, header_timeout, metrics } = serving;
    let slots = Arc::new(Semaphore::new(max_connections));
    let open = Arc::new(AtomicUsize::new(0));
    metrics.track_connections(name, open.clone(), max_connections);
    // At the cap: warn at most once a minute (a PoP flapping at its limit
    // must not flood the log).
    let mut last_warning: Option<tokio::time::Instant> = None;
    let graceful = GracefulShutdown::new();
    // The protocol is chosen, never guessed from the first bytes (that read
    // would have no deadline): HTTP/1.1 in the clear, ALPN's choice over TLS.
    let mut http1 = http1::Builder::new();
    http1.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .max_concurrent_streams(256)
        // Pings find dead peers; an unanswered one closes the connection.
        .keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(20));
    loop {
        // A slot first: at the cap, stop accepting (the kernel queues new
        // connections) rather than accept and drop them.
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                    last_warning = Some(tokio::time::Instant::now());
                    tracing::warn!(
                        listener = name,
                        max_connections,
                        "connection limit reached; new connections wait until one closes (server.max_connections)"
                    );
                }
                tokio::select! {
                    slot = slots.clone().acquire_owned() => match slot {
                        Ok(slot) => slot,
                        Err(_) => break,
                    },
                    _ = shutdown.wait() => break,
                }
            }
        };
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off a moment
                        // rather than spin; the listener itself is still fine.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let handler = handler.clone();
                let asked = Arc::new(AtomicBool::new(false));
                let asked_in_svc = asked.clone();
                let svc = service_fn(move |req| {
                    asked_in_svc.store(true, Ordering::Relaxed);
                    let fut = handler(req);
                    async move { Ok::<_, Infallible>(fut.await) }
                });
                // The watcher is taken before the handshake; a connection still
                // in its handshake when shutdown comes is dropped, not waited for.
                let watcher = graceful.watcher();
                let (http1, http2) = (http1.clone(), http2.clone());
                let tls = tls.clone();
                let mut closing = shutdown.clone();
                let counted = Open::new(slot, open.clone());
                tokio::spawn(async move {
                    // Held until the connection ends, however it ends.
                    let _counted = counted;
                    let result = match tls {
                        None => watcher.watch(http1.serve_connection(TokioIo::new(stream), svc)).await,
                        Some(tls) => {
                            let handshake = tokio::select! {
                                r = tls.accept(stream) => r,
                                _ = closing.wait() => return,
                            };
                            match handshake {
                                Ok(stream) if stream.get_ref().1.alpn_protocol() == Some(b"h2") => {
                                    let conn = watcher.watch(http2.serve_connection(TokioIo::new(stream), svc));
                                    match first_request_within(conn, header_timeout, &asked).await {
                                        Some(result) => result,
                                        None => return,
                                    }
                                }
                                Ok(stream) => watcher.watch(http1.serve_connection(TokioIo::new(stream), svc)).await,
                                Err(e) => {
                                    tracing::debug!(listener = name, %peer, error = %e, "TLS connection refused");
                                    return;
                                }
                            }
                        }
                    };
                    if let Err(e) = result {
                        tracing::debug!(listener = name, %peer, error = %e, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.wait() => break,
        }
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => tracing::debug!(listener = name, "all connections drained"),
        _ = tokio::time::sleep(grace) => tracing::warn!(listener = name, grace_ms = grace.as_millis() as u64,
            "shutdown grace period over with requests still in flight; abandoning them (none was acknowledged)"),
    }
}

/// Drives an HTTP/2 connection, closing it if no request arrived within
/// `timeout` (HTTP/1 has hyper's header-read timeout for that; HTTP/2 has
/// none, and its pings keep even a client that never asks anything alive).
async fn first_request_within<F: Future>(conn: F, timeout: Duration, asked: &AtomicBool) -> Option<F::Output> {
    tokio::pin!(conn);
    if let Ok(done) = tokio::time::timeout(timeout, &mut conn).await {
        return Some(done);
    }
    if !asked.load(Ordering::Relaxed) {
        return None;
    }
    Some(conn.await)
}

/// An accepted connection's slot: counted open until the connection ends.
struct Open {
    _slot: OwnedSemaphorePermit,
    count: Arc<AtomicUsize>,
}

impl Open {
    fn new(slot: OwnedSemaphorePermit, count: Arc<AtomicUsize>) -> Open {
        count.fetch_add(1, Ordering::Relaxed);
        Open { _slot: slot, count }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Formats Unix milliseconds as RFC 3339 UTC (`2026-11-24T02:49:51.123Z`),
/// always with milliseconds so the API's times have one shape.
pub fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let (month, ms) = (u8::from(t.month()), t.millisecond());
    format!("{:04}-{month:02}-{:02}T{:02}:{:02}:{:02}.{ms:03}Z", t.year(), t.day(), t.hour(), t.minute(), t.second())
}

/// RFC 3339 (`2026-11-24T02:49:51.123Z`, or with an offset) to Unix ms;
/// `None` before 1970 or for anything else. The one parser of the API's
/// times, also used by the CLI to check `--since`/`--until` before sending.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(1_795_488_591_123), "2026-11-24T02:49:51.123Z");
        assert_eq!(rfc3339(1_795_478_400_000), "2026-11-24T00:00:00.000Z");
    }
}
