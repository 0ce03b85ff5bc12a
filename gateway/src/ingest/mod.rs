//! Ingest: `POST /ingest/{tenant}/{source}` → durable commit → 202.
//!
//! The one rule this module exists to keep: a 2xx leaves only after the store
//! has committed the trigger with fsync durability. Every failure that is
//! Weir's own (store full, not writable, shutting down) is a 503 with
//! Retry-After, never a 4xx and never a 2xx.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use crate::config::{Config, OnPluginError, validate_label};
use crate::http::{self as h, BodyError, Resp};
use crate::plugin::{Busy, Decision, Input, Phase, PluginHost, Ran};
use crate::store::{NewTrigger, State, Store, StoreError, TriggerMeta};
use crate::telemetry::{Kind, SpanContext};
use crate::trigger;

/// Everything a request needs; shared by all connections of the listener.
pub struct Ingest {
    store: Store,
    tracer: crate::telemetry::Tracer,
    metrics: Arc<crate::telemetry::Metrics>,
    plugins: Arc<PluginHost>,
    tenants: Arc<crate::tenants::Tenants>,
    max_body_bytes: u64,
    request_timeout: Duration,
}

#[derive(Serialize)]
struct Accepted {
    /// `null` when the plugin dropped the trigger: nothing was stored.
    id: Option<String>,
    duplicate: bool,
    quarantined: bool,
    dropped: bool,
}

impl Ingest {
    pub fn new(
        config: &Config,
        store: Store,
        tenants: Arc<crate::tenants::Tenants>,
        plugins: Arc<PluginHost>,
        metrics: Arc<crate::telemetry::Metrics>,
        tracer: crate::telemetry::Tracer,
    ) -> Arc<Ingest> {
        Arc::new(Ingest {
            store,
            tracer,
            metrics,
            plugins,
            tenants,
            max_body_bytes: config.server.max_body_bytes,
            request_timeout: Duration::from_millis(config.server.request_timeout_ms),
        })
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        if let Some(resp) = health(&self.store, self.max_body_bytes, req.method(), &path) {
            return resp;
        }
        let Some((tenant, source)) = parse_ingest_path(&path) else {
            return h::not_found(&format!("no route for {path}; send triggers to POST /ingest/{{tenant}}/{{source}}"));
        };
        if req.method() != Method::POST {
            return h::method_not_allowed("POST", req.method(), &path);
        }
        let Some(tenant_config) = self.tenants.get(tenant) else {
            self.metrics.ingest("unknown", "unknown_tenant", std::time::Duration::ZERO);
            return h::error(
                StatusCode::NOT_FOUND,
                "unknown_tenant",
                &format!(
                    "tenant {tenant:?} is not configured on this gateway; check the URL, or add a [[tenants]] block with id = {tenant:?}"
                ),
            );
        };
        if let Err(m) = validate_label(source) {
            return h::error(StatusCode::BAD_REQUEST, "invalid_source", &format!("source label {m}"));
        }
        let tenant = tenant_config.id.clone();
        let source = source.to_string();
        let started = std::time::Instant::now();
        // Continue the sender's trace when it sent one.
        let parent = if self.tracer.is_on() {
            req.headers().get("traceparent").and_then(|v| v.to_str().ok()).and_then(crate::telemetry::trace::parse_traceparent)
        } else {
            None
        };
        let mut span = self.tracer.span("ingest", Kind::Server, parent.as_ref());
        let ctx = span.as_ref().map(|s| s.context());
        // The trigger's span is the current context: log lines carry its ids, bridged `tracing` spans join it.
        let resp = crate::telemetry::within(ctx.as_ref(), self.ingest(req, tenant.clone(), source.clone(), ctx.clone())).await;
        let outcome = resp.extensions().get::<Outcome>().map_or("error", |o| o.0);
        self.metrics.ingest(&tenant, outcome, started.elapsed());
        if let Some(s) = span.as_mut().filter(|s| s.is_recording()) {
            s.attr("http.request.method", "POST");
            s.attr("url.path", path.clone());
            s.attr("http.response.status_code", u64::from(resp.status().as_u16()));
            s.attr("weir.tenant", tenant.clone());
            s.attr("weir.source", source);
            s.attr("weir.outcome", outcome);
            if let Some(id) = resp.extensions().get::<TriggerIdTag>() {
                s.attr("weir.trigger_id", id.0.clone());
            }
            if resp.status().is_server_error() {
                s.error(outcome);
            }
        }
        self.tracer.end(span);
        resp
    }

    async fn ingest(&self, req: Request<Incoming>, tenant: String, source: String, trace: Option<SpanContext>) -> Resp {
        // Weir's clock, which ages it later: a step of the system clock cannot expire it (store/clock.rs).
        let received = crate::store::clock::now();
        let idempotency_key = match idempotency_key(req.headers()) {
            Ok(k) => k,
            Err(resp) => return tag(resp, "bad_request"),
        };
        let mut headers = trigger::stored_headers(req.headers());
        if let Some(ctx) = &trace {
            // The stored context is this ingest span, so forward attempts
            // hours later join the same trace.
            headers.retain(|(n, _)| n != "traceparent");
            headers.push(("traceparent".into(), crate::telemetry::trace::traceparent(ctx)));
        }
        let body = match h::read_body(req, self.max_body_bytes, self.request_timeout).await {
            Ok(b) => b,
            Err(e) => return body_error(e),
        };
        let Ok(body_len) = u32::try_from(body.len()) else {
            return tag(h::error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large", "the body is larger than 4 GiB"), "too_large");
        };
        let received_at_ms = received.duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let mut meta = TriggerMeta {
            state: State::Pending,
            received_at_ms,
            tenant: tenant.clone(),
            source,
            idempotency_key,
            headers,
            body_len,
            has_transformed: false,
            plugin_version: 0,
            route: None,
            note: None,
            attempts: Vec::new(),
        };
        let mut transformed = None;
        if self.plugins.has_plugin(&tenant) {
            // What the plugin sees is what is stored: the same at replay.
            let input = Input::of(&meta, body.clone(), Phase::Ingest);
            let mut pspan = self.tracer.span("plugin", Kind::Internal, trace.as_ref());
            let ran = crate::telemetry::within(pspan.as_ref().map(|s| s.context()).as_ref(), self.plugins.run(input)).await;
            if let (Some(s), Some(Ok(r))) = (pspan.as_mut().filter(|s| s.is_recording()), ran.as_ref()) {
                s.attr("weir.plugin.version", u64::from(r.version.unwrap_or(0)));
                if let Err(f) = &r.result {
                    s.error(f.to_string());
                }
            }
            self.tracer.end(pspan);
            if let Some(Err(Busy)) = ran {
                return tag(
                    h::unavailable("plugin_busy", "every plugin instance is in use; nothing was stored; retry in a moment", 1),
                    "plugin_busy",
                );
            }
            if let Some(Ok(ran)) = ran {
                let kind = match &ran.result {
                    Ok(Decision::Reject { .. }) => Some("reject"),
                    Ok(_) => None,
                    Err(f) => Some(f.kind.as_str()),
                };
                self.metrics.plugin(&tenant, ran.elapsed, kind, ran.slow_lane);
                match apply_plugin(&mut meta, ran) {
                    Verdict::Store(t) => transformed = t.map(bytes::Bytes::from),
                    Verdict::Answer(resp) => return resp,
                }
            }
        }
        let trigger = NewTrigger { id: self.store.next_id(received), meta, body, transformed };
        let mut cspan = self.tracer.span("store.commit", Kind::Internal, trace.as_ref());
        let inserted = self.store.insert(trigger).await;
        if let Some(s) = cspan.as_mut().filter(|s| s.is_recording()) {
            match &inserted {
                Ok(done) => s.attr("weir.commit.batch_size", u64::from(done.batch)),
                Err(e) => s.error(e.to_string()),
            }
        }
        self.tracer.end(cspan);
        match inserted {
            Ok(done) => {
                tracing::debug!(trigger_id = %done.id, tenant = %tenant, duplicate = done.duplicate, "trigger accepted");
                let outcome = match (done.duplicate, done.state) {
                    (true, _) => "duplicate",
                    (false, State::Quarantined) => "quarantined",
                    _ => "accepted",
                };
                let resp = tag(
                    h::json(
                        StatusCode::ACCEPTED,
                        &Accepted {
                            id: Some(done.id.to_string()),
                            duplicate: done.duplicate,
                            quarantined: done.state == State::Quarantined,
                            dropped: false,
                        },
                    ),
                    outcome,
                );
                let mut resp = resp;
                resp.extensions_mut().insert(TriggerIdTag(done.id.to_string()));
                resp
            }
            Err(e) => store_error(&tenant, e),
        }
    }
}

enum Verdict {
    /// Store the trigger (with the plugin's body, if it changed it).
    Store(Option<Vec<u8>>),
    /// Answer now; store nothing.
    Answer(Resp),
}

/// Applies the plugin's verdict to the record, or decides the answer.
fn apply_plugin(meta: &mut TriggerMeta, ran: Ran) -> Verdict {
    meta.plugin_version = ran.version.unwrap_or(0);
    match ran.result {
        Ok(Decision::Accept(t)) => Verdict::Store(trigger::apply_transform(meta, t)),
        Ok(Decision::Reject { status, reason }) => {
            tracing::debug!(tenant = %meta.tenant, status, "plugin rejected the trigger");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            Verdict::Answer(tag(h::error(status, "rejected", &reason), "rejected"))
        }
        Ok(Decision::Drop) => Verdict::Answer(tag(
            h::json(StatusCode::ACCEPTED, &Accepted { id: None, duplicate: false, quarantined: false, dropped: true }),
            "dropped",
        )),
        Err(failure) => {
            tracing::warn!(tenant = %meta.tenant, plugin_version = meta.plugin_version, kind = failure.kind.as_str(),
                detail = %failure.detail, "plugin failed");
            match ran.on_error {
                OnPluginError::Quarantine => {
                    trigger::quarantine(meta, &failure);
                    Verdict::Store(None)
                }
                OnPluginError::Reject => Verdict::Answer(tag(
                    h::unavailable(
                        "plugin_failed",
                        &format!("this tenant's plugin failed ({}); nothing was stored; retry later", failure.kind.as_str()),
                        5,
                    ),
                    "plugin_failed",
                )),
            }
        }
    }
}

/// The id of the stored trigger, for the ingest span.
#[derive(Clone)]
struct TriggerIdTag(String);

/// The outcome label of an ingest response, for metrics.
#[derive(Clone, Copy)]
struct Outcome(&'static str);

fn tag(mut resp: Resp, outcome: &'static str) -> Resp {
    resp.extensions_mut().insert(Outcome(outcome));
    resp
}

fn body_error(e: BodyError) -> Resp {
    let outcome = match &e {
        BodyError::TooLarge { .. } => "too_large",
        BodyError::Timeout(_) => "timeout",
        BodyError::Read(_) => "bad_request",
    };
    tag(body_error_resp(e), outcome)
}

fn body_error_resp(e: BodyError) -> Resp {
    match e {
        BodyError::TooLarge { limit } => h::error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            &format!("the body is larger than this gateway's limit of {limit} bytes (server.max_body_bytes); send a smaller payload"),
        ),
        BodyError::Timeout(t) => {
            h::error(StatusCode::REQUEST_TIMEOUT, "body_timeout", &format!("the body did not arrive within {} ms; retry", t.as_millis()))
        }
        BodyError::Read(e) => h::error(StatusCode::BAD_REQUEST, "body_unreadable", &format!("the body could not be read ({e}); retry")),
    }
}

/// `/healthz` and `/readyz`, served on both listeners. Neither looks at the upstream.
pub fn health(store: &Store, headroom: u64, method: &Method, path: &str) -> Option<Resp> {
    match path {
        "/healthz" | "/readyz" if method != Method::GET && method != Method::HEAD => Some(h::method_not_allowed("GET", method, path)),
        "/healthz" => Some(h::json(StatusCode::OK, &serde_json::json!({"status": "ok"}))),
        "/readyz" => Some(match store.not_ready_reason(headroom) {
            None => h::json(StatusCode::OK, &serde_json::json!({"status": "ready"})),
            Some(reason) => h::unavailable("not_ready", &reason, 5),
        }),
        _ => None,
    }
}

fn store_error(tenant: &str, e: StoreError) -> Resp {
    let outcome = match &e {
        StoreError::Full { .. } => "store_full",
        StoreError::DiskLow { .. } => "disk_low",
        StoreError::ShuttingDown => "shutting_down",
        StoreError::Invalid(_) => "bad_request",
        _ => "store_unavailable",
    };
    tag(store_error_resp(tenant, e), outcome)
}

fn store_error_resp(tenant: &str, e: StoreError) -> Resp {
    match e {
        StoreError::Full { .. } => {
            tracing::warn!(tenant = %tenant, error = %e, "ingest refused: store over budget");
            h::unavailable("store_full", "this gateway's buffer is full; nothing was stored; retry later", 30)
        }
        StoreError::DiskLow { .. } => {
            tracing::warn!(tenant = %tenant, error = %e, "ingest refused: disk below its free-space reserve");
            h::unavailable("disk_low", "this gateway's disk is nearly full; nothing was stored; retry later", 30)
        }
        StoreError::ShuttingDown => {
            h::unavailable("shutting_down", "this gateway is shutting down; nothing was stored; retry (another instance or in a moment)", 5)
        }
        StoreError::Invalid(m) => h::error(StatusCode::BAD_REQUEST, "invalid_trigger", &format!("{m}; nothing was stored")),
        other => {
            tracing::error!(tenant = %tenant, error = %other, "ingest failed: store fault");
            h::unavailable("store_unavailable", "this gateway cannot store triggers right now; nothing was stored; retry later", 5)
        }
    }
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, Resp> {
    trigger::idempotency_key_of(headers).map_err(|why| {
        h::error(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            &format!("the Idempotency-Key header {why}; send 1 to {} visible ASCII characters", trigger::IDEMPOTENCY_KEY_MAX),
        )
    })
}

/// `/ingest/{tenant}/{source}` → (tenant, source); nothing else matches.
fn parse_ingest_path(path: &str) -> Option<(&str, &str)> {
    let rest = path.strip_prefix("/ingest/")?;
    let (tenant, source) = rest.split_once('/')?;
    if tenant.is_empty() || source.is_empty() || source.contains('/') {
        return None;
    }
    Some((tenant, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ingest_paths() {
        assert_eq!(parse_ingest_path("/ingest/acme/github"), Some(("acme", "github")));
        assert_eq!(parse_ingest_path("/ingest/acme/"), None);
        assert_eq!(parse_ingest_path("/ingest/acme"), None);
        assert_eq!(parse_ingest_path("/ingest//x"), None);
        assert_eq!(parse_ingest_path("/ingest/a/b/c"), None);
        assert_eq!(parse_ingest_path("/other/a/b"), None);
    }
}
