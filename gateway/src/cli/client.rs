//! The admin API client the CLI uses, and its errors (each maps to an exit code).

use std::path::Path;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::Global;

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Usage(String),
    #[error("cannot reach the admin API at {url}: {reason}. Is weir running? Check --admin-url / WEIR_ADMIN_URL")]
    Unreachable { url: String, reason: String },
    #[error("{0}")]
    Failed(String),
    #[error("not found: {0}")]
    NotFound(String),
    #[error("not allowed: {0}. Set WEIR_ADMIN_TOKEN or --token-file to the operator token (or your tenant's)")]
    Unauthorized(String),
    #[error("refused: {0}")]
    Refused(String),
    /// The command worked, and what it found needs an operator (a fleet flag).
    #[error("attention: {0}")]
    Attention(String),
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Unreachable { .. } | CliError::Failed(_) => 1,
            CliError::Usage(_) => 2,
            CliError::NotFound(_) => 3,
            CliError::Unauthorized(_) => 4,
            CliError::Refused(_) => 5,
            CliError::Attention(_) => 6,
        }
    }
}

pub struct AdminClient {
    base: String,
    token: Option<String>,
    http: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl AdminClient {
    pub fn new(g: &Global) -> Result<AdminClient, CliError> {
        let base = g.admin_url.trim_end_matches('/').to_string();
        if !base.starts_with("http://") && !base.starts_with("https://") {
            return Err(CliError::Usage(format!("--admin-url {base:?} must start with http:// or https://")));
        }
        let tls = crate::tls::upstream::client_tls(g.ca_file.as_deref().map(|p| ("--ca-file", p)), None, "cli")
            .map_err(|e| CliError::Usage(e.to_string()))?;
        let connector = crate::tls::upstream::connector(tls, HttpConnector::new());
        Ok(AdminClient { base, token: g.token.clone(), http: Client::builder(TokioExecutor::new()).build(connector) })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, CliError> {
        let url = format!("{}{path}", self.base);
        let mut req = Request::builder().method(method).uri(&url).header("content-type", content_type);
        if let Some(t) = &self.token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let req = req.body(Full::new(body)).map_err(|e| CliError::Usage(format!("bad request for {url}: {e}")))?;
        self.http.request(req).await.map_err(|e| CliError::Unreachable {
            url: self.base.clone(),
            reason: crate::tls::upstream::describe(&e).unwrap_or_else(|| e.to_string()),
        })
    }

    async fn json(&self, method: Method, path: &str, content_type: &str, body: Bytes) -> Result<Value, CliError> {
        let resp = self.send(method, path, content_type, body).await?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| CliError::Failed(e.to_string()))?.to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
        if status.is_success() {
            return Ok(value);
        }
        let message = value["message"].as_str().map(str::to_string).unwrap_or_else(|| value.to_string());
        Err(match status {
            StatusCode::NOT_FOUND => CliError::NotFound(message),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Unauthorized(message),
            s if s.is_client_error() => CliError::Refused(message),
            s => CliError::Failed(format!("the gateway answered {s}: {message}")),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, CliError> {
        self.json(Method::GET, path, "application/json", Bytes::new()).await
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Result<Value, CliError> {
        let bytes = if body.is_null() { Bytes::new() } else { Bytes::from(body.to_string()) };
        self.json(Method::POST, path, "application/json", bytes).await
    }

    pub async fn put(&self, path: &str, body: Vec<u8>) -> Result<Value, CliError> {
        self.json(Method::PUT, path, "application/wasm", Bytes::from(body)).await
    }

    /// Streams a response body into `out`; `progress` sees the bytes so far.
    pub async fn download(&self, path: &str, out: &Path, mut progress: impl FnMut(u64)) -> Result<u64, CliError> {
        use std::io::Write;
        let resp = self.send(Method::GET, path, "application/json", Bytes::new()).await?;
        if !resp.status().is_success() {
            let status = resp.status();
            let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let msg = String::from_utf8_lossy(&bytes).into_owned();
            return Err(match status {
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => CliError::Unauthorized(msg),
                _ => CliError::Failed(format!("the gateway answered {status}: {msg}")),
            });
        }
        let mut file = std::fs::File::create(out).map_err(|e| CliError::Failed(format!("cannot create {}: {e}", out.display())))?;
        let mut body = resp.into_body();
        let mut n = 0u64;
        while let Some(frame) = body.frame().await {
            let frame =
                frame.map_err(|e| CliError::Failed(format!("the backup stream broke after {n} bytes: {e}; nothing was written")))?;
            if let Ok(data) = frame.into_data() {
                file.write_all(&data).map_err(|e| CliError::Failed(format!("cannot write {}: {e}", out.display())))?;
                n += data.len() as u64;
                progress(n);
            }
        }
        file.sync_all().map_err(|e| CliError::Failed(format!("cannot sync {}: {e}", out.display())))?;
        Ok(n)
    }
}
