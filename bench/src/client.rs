//! HTTP/1.1 client plumbing: one keep-alive connection ([`Conn`]) for the load
//! generator, and one-off requests for the control plane (health polls,
//! `/v1/status`, single ingests).

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// One keep-alive HTTP/1.1 connection: one request in flight at a time.
pub struct Conn {
    sender: SendRequest<Full<Bytes>>,
}

impl Conn {
    pub async fn open(addr: SocketAddr) -> anyhow::Result<Conn> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("setting TCP_NODELAY")?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP/1.1 handshake")?;
        // The connection task ends when the sender is dropped or the peer closes.
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Conn { sender })
    }

    /// Sends one request and reads the whole response body.
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> anyhow::Result<(StatusCode, Bytes)> {
        self.sender.ready().await.context("connection closed")?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .body(Full::new(body))
            .context("building the request")?;
        *req.headers_mut() = headers.clone();
        let resp = self
            .sender
            .send_request(req)
            .await
            .context("sending the request")?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .context("reading the response body")?
            .to_bytes();
        Ok((status, body))
    }
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
pub async fn get(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let mut headers = base_headers(addr);
    if let Some(t) = token {
        headers.insert(
            http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().context("token header")?,
        );
    }
    let fut = async {
        let mut conn = Conn::open(addr).await?;
        conn.send(Method::GET, path, &headers, Bytes::new()).await
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => bail!("GET http://{addr}{path} took longer than {timeout:?}"),
    }
}

/// GET returning parsed JSON; any status but 200 is an error.
pub async fn get_json(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<serde_json::Value> {
    let (status, body) = get(addr, path, token, Duration::from_secs(10)).await?;
    if status != StatusCode::OK {
        bail!(
            "GET {path} answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    serde_json::from_slice(&body).with_context(|| format!("GET {path}: the answer is not JSON"))
}
