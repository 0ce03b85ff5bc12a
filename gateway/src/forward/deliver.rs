//! The HTTP transport: build the upstream request from a stored trigger
//! (`message.rs` says what it carries), send it with a deadline, and
//! classify what came back.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::attempt::{AttemptResult, Class};
use super::message;
use super::retry_after::parse_retry_after_bytes;
use crate::store::StoredTrigger;

/// One pooled client for every upstream: `http://` in the clear, `https://`
/// over rustls, HTTP/2 when the upstream offers it in ALPN.
pub type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Longest `Retry-After` honoured; a hostile upstream cannot park us for days.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// How much of an error response is kept on the trigger.
const SNIPPET_BYTES: usize = 256;

pub fn client(tls: rustls::ClientConfig, timeout: Duration, max_idle_per_host: usize) -> HttpClient {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(timeout));
    http.set_nodelay(true);
    let connector = crate::tls::upstream::connector(tls, http);
    Client::builder(TokioExecutor::new())
        .timer(TokioTimer::new())
        .pool_timer(TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(max_idle_per_host)
        .build(connector)
}

/// The request every attempt of a trigger sends: the headers that travel
/// (`message::forwarded_headers`), then Weir's own headers over them; the
/// same body and the same `idempotency-key` on every attempt and replay.
pub fn request(url: &Uri, t: &StoredTrigger, deny: &[String]) -> Request<Full<Bytes>> {
    let mut req = Request::new(Full::new(Bytes::from(message::body(t))));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = url.clone();
    let headers = req.headers_mut();
    for (name, value) in message::forwarded_headers(t, deny) {
        // A value stored lossily (not UTF-8) or a name that no longer
        // parses is left out rather than failing the attempt.
        if let (Ok(n), Ok(v)) = (http::HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(n, v);
        }
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    }
    let key = message::idempotency_key(t);
    for (name, value) in message::weir_headers(t).iter().map(|(n, v)| (*n, v.as_str())).chain([("idempotency-key", key.as_str())]) {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    }
    headers.insert(header::USER_AGENT, HeaderValue::from_static(concat!("weir/", env!("CARGO_PKG_VERSION"))));
    req
}

/// Sends one attempt; never returns an error, only a classified result.
pub async fn attempt(client: &HttpClient, req: Request<Full<Bytes>>, timeout: Duration) -> AttemptResult {
    let started = Instant::now();
    let result = tokio::time::timeout(timeout, async {
        let resp = client.request(req).await.map_err(|e| describe_client_error(&e))?;
        let status = resp.status();
        let retry_after =
            resp.headers().get(header::RETRY_AFTER).and_then(|v| parse_retry_after_bytes(v.as_bytes(), SystemTime::now(), MAX_RETRY_AFTER));
        // Read (a bounded part of) the body so the connection can be reused
        // and an error response leaves a snippet for the operator.
        let body = Limited::new(resp.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        Ok::<_, String>((status, retry_after, body))
    })
    .await;
    let elapsed = started.elapsed();
    match result {
        Err(_) => AttemptResult {
            class: Class::Retry,
            status: None,
            retry_after: None,
            elapsed,
            detail: format!("timed out after {} ms", timeout.as_millis()),
        },
        Ok(Err(detail)) => AttemptResult { class: Class::Retry, status: None, retry_after: None, elapsed, detail },
        Ok(Ok((status, retry_after, body))) => {
            let class = classify(status);
            let detail = if class == Class::Delivered { String::new() } else { snippet(&body) };
            AttemptResult { class, status: Some(status.as_u16()), retry_after, elapsed, detail }
        }
    }
}

pub fn classify(status: StatusCode) -> Class {
    match status.as_u16() {
        200..=299 => Class::Delivered,
        408 | 429 | 500..=599 => Class::Retry,
        _ => Class::Permanent,
    }
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(SNIPPET_BYTES)]);
    text.chars().filter(|c| !c.is_control() || *c == ' ').collect()
}

fn describe_client_error(e: &hyper_util::client::legacy::Error) -> String {
    if let Some(tls) = crate::tls::upstream::describe(e) {
        return tls;
    }
    let text = crate::tls::upstream::chain_text(e);
    if e.is_connect() { format!("connect failed: {text}") } else { text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_classified_as_the_contract_says() {
        for (s, c) in [
            (200, Class::Delivered),
            (204, Class::Delivered),
            (408, Class::Retry),
            (429, Class::Retry),
            (500, Class::Retry),
            (503, Class::Retry),
            (400, Class::Permanent),
            (404, Class::Permanent),
            (409, Class::Permanent),
            (301, Class::Permanent),
        ] {
            assert_eq!(classify(StatusCode::from_u16(s).expect("status")), c, "{s}");
        }
    }
}
