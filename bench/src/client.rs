//! HTTP client plumbing: one keep-alive connection ([`Conn`]) for the load
//! generator, and one-off requests for the control plane (health polls,
//! `/v1/status`, single ingests).
//!
//! A connection is plain HTTP/1.1, or HTTPS when given a rustls client
//! configuration: HTTP/2 when the server picks `h2` by ALPN, else HTTP/1.1.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// One keep-alive connection: one request in flight at a time (on HTTP/2,
/// one stream at a time).
pub struct Conn {
    sender: Sender,
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    /// With the `https://host:port` prefix of request URIs (HTTP/2 sends
    /// `:scheme` and `:authority`).
    H2(http2::SendRequest<Full<Bytes>>, String),
}

impl Conn {
    /// A plain HTTP/1.1 connection.
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        Conn::open_with(addr, None).await
    }

    /// Plain HTTP/1.1 without `tls`; with it, a TLS handshake (server name:
    /// the IP address) and then HTTP/2 if the server chose `h2`, else HTTP/1.1.
    pub async fn open_with(addr: SocketAddr, tls: Option<&Arc<ClientConfig>>) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let Some(tls) = tls else {
            return h1(stream).await;
        };
        let name = ServerName::IpAddress(addr.ip().into());
        let stream = TlsConnector::from(tls.clone()).connect(name, stream).await.with_context(|| format!("TLS handshake with {addr}"))?;
        if stream.get_ref().1.alpn_protocol() != Some(b"h2") {
            return h1(stream).await;
        }
        let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.context("HTTP/2 handshake")?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender: Sender::H2(sender, format!("https://{addr}")) })
    }

    /// The connection speaks HTTP/2.
    pub fn is_h2(&self) -> bool {
        matches!(self.sender, Sender::H2(..))
    }

    /// Sends one request and reads the whole response body.
    pub async fn send(&mut self, method: Method, path: &str, headers: &HeaderMap, body: Bytes) -> anyhow::Result<(StatusCode, Bytes)> {
        // HTTP/2 requests carry the origin (scheme and authority) in the URI.
        let uri = match &self.sender {
            Sender::H1(_) => path.to_string(),
            Sender::H2(_, origin) => format!("{origin}{path}"),
        };
        let mut req = Request::builder().method(method).uri(uri).body(Full::new(body)).context("building the request")?;
        *req.headers_mut() = headers.clone();
        let resp = match &mut self.sender {
            Sender::H1(sender) => {
                sender.ready().await.context("connection closed")?;
                sender.send_request(req).await
            }
            Sender::H2(sender, _) => {
                sender.ready().await.context("connection closed")?;
                sender.send_request(req).await
            }
        }
        .context("sending the request")?;
        let status = resp.status();
        let body = resp.into_body().collect().await.context("reading the response body")?.to_bytes();
        Ok((status, body))
    }
}

/// HTTP/1.1 over `io`; its connection task ends when the sender is dropped
/// or the peer closes.
async fn h1<T>(io: T) -> anyhow::Result<Conn>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::handshake(TokioIo::new(io)).await.context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(Conn { sender: Sender::H1(sender) })
}

/// Headers every request of the harness carries.
pub fn base_headers(addr: SocketAddr) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = addr.to_string().parse() {
        h.insert(http::header::HOST, v);
    }
    h
}

/// A one-off GET on a fresh connection, bounded in time.
pub async fn get(addr: SocketAddr, path: &str, token: Option<&str>, timeout: Duration) -> anyhow::Result<(StatusCode, Bytes)> {
    get_with(addr, None, path, token, timeout).await
}

/// [`get`], over TLS when `tls` is set.
pub async fn get_with(
    addr: SocketAddr,
    tls: Option<&Arc<ClientConfig>>,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut headers = base_headers(addr);
    if let Some(t) = token {
        headers.insert(http::header::AUTHORIZATION, format!("Bearer {t}").parse().context("token header")?);
    }
    let fut = async {
        let mut conn = Conn::open_with(addr, tls).await?;
        conn.send(Method::GET, path, &headers, Bytes::new()).await
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => bail!("GET {scheme}://{addr}{path} took longer than {timeout:?}"),
    }
}

/// GET returning parsed JSON; any status but 200 is an error.
pub async fn get_json(addr: SocketAddr, path: &str, token: Option<&str>) -> anyhow::Result<serde_json::Value> {
    let (status, body) = get(addr, path, token, Duration::from_secs(10)).await?;
    if status != StatusCode::OK {
        bail!("GET {path} answered {status}: {}", String::from_utf8_lossy(&body));
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: the answer is not JSON"))
}
