//! The admin API on its own listener: read triggers, status, health.
//!
//! Every `/v1/` route needs `Authorization: Bearer <admin.token>`; the token
//! is compared in constant time and never logged.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use http::{header, Method, Request, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;

use crate::config::Config;
use crate::http::{self as h, Resp};
use crate::id::TriggerId;
use crate::ingest::health;
use crate::plugin::{PluginHost, UploadError};
use crate::store::{Store, StoredTrigger};

pub struct Admin {
    store: Store,
    plugins: Arc<PluginHost>,
    forwarder: crate::forward::Forwarder,
    max_component_bytes: u64,
    token: Option<String>,
    max_body_bytes: u64,
}

impl Admin {
    pub fn new(config: &Config, store: Store, plugins: Arc<PluginHost>, forwarder: crate::forward::Forwarder) -> Arc<Admin> {
        Arc::new(Admin {
            store,
            plugins,
            forwarder,
            max_component_bytes: config.plugins.max_component_bytes, token: config.admin.token.clone(), max_body_bytes: config.server.max_body_bytes })
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        if let Some(resp) = health(&self.store, self.max_body_bytes, req.method(), &path) {
            return resp;
        }
        if !path.starts_with("/v1/") {
            return h::not_found(&format!("no route for {path}; the admin API lives under /v1/ (see docs/api.md)"));
        }
        if let Err(resp) = self.authorize(&req) {
            return resp;
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (req.method(), segments.as_slice()) {
            (&Method::GET, ["v1", "status"]) => self.status().await,
            (_, ["v1", "status"]) => h::method_not_allowed("GET", req.method(), &path),
            (&Method::GET, ["v1", "triggers", id]) => self.trigger(id).await,
            (_, ["v1", "triggers", _]) => h::method_not_allowed("GET", req.method(), &path),
            (&Method::PUT, ["v1", "tenants", tenant, "plugin"]) => {
                let tenant = tenant.to_string();
                self.upload_plugin(&tenant, req).await
            }
            (&Method::GET, ["v1", "tenants", tenant, "plugin"]) => self.list_plugins(tenant).await,
            (_, ["v1", "tenants", _, "plugin"]) => h::method_not_allowed("GET, PUT", req.method(), &path),
            (&Method::POST, ["v1", "tenants", tenant, "plugin", "rollback"]) => self.rollback_plugin(tenant).await,
            (&Method::POST, ["v1", "tenants", tenant, action @ ("pause" | "resume")]) => self.pause(tenant, *action == "pause").await,
            (_, ["v1", "tenants", _, "pause" | "resume"]) => h::method_not_allowed("POST", req.method(), &path),
            (_, ["v1", "tenants", _, "plugin", "rollback"]) => h::method_not_allowed("POST", req.method(), &path),
            _ => h::not_found(&format!("no admin route for {} {path} (see docs/api.md)", req.method())),
        }
    }

    fn authorize(&self, req: &Request<Incoming>) -> Result<(), Resp> {
        let Some(expected) = &self.token else {
            return Err(h::error(
                StatusCode::UNAUTHORIZED,
                "no_admin_token_configured",
                "this gateway has no admin token; set [admin] token in the config or WEIR_ADMIN_TOKEN, then restart",
            ));
        };
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match given {
            Some(t) if constant_time_eq(t.as_bytes(), expected.as_bytes()) => Ok(()),
            Some(_) => Err(unauthorized("the bearer token is not valid for this gateway")),
            None => Err(unauthorized("send `Authorization: Bearer <token>` with the operator token")),
        }
    }

    async fn status(&self) -> Resp {
        match self.store.stats().await {
            Ok(s) => {
                let now = now_ms();
                let forward = self.forwarder.status();
                h::json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "pending": s.pending,
                        "delivered": s.delivered,
                        "dead": s.dead,
                        "quarantined": s.quarantined,
                        "store_bytes": s.file_bytes,
                        "used_bytes": s.used_bytes,
                        "budget_bytes": s.budget_bytes,
                        "oldest_pending_age_ms": s.oldest_pending_ms.map(|ms| now.saturating_sub(ms)),
                        "shards": s.shards,
                        "writable_shards": s.writable_shards,
                        "ready": self.store.not_ready_reason(self.max_body_bytes).is_none(),
                        "backlog": s.pending,
                        "upstreams": forward.upstreams,
                        "paused_tenants": forward.paused_tenants,
                        "in_flight": forward.in_flight,
                        "retries_waiting": forward.retries_waiting,
                        "delivered_last_minute": forward.delivered_last_minute,
                        "delivery_rate_per_sec": forward.delivery_rate_per_sec,
                        "version": env!("CARGO_PKG_VERSION"),
                    }),
                )
            }
            Err(e) => h::unavailable("store_unavailable", &format!("store statistics could not be read: {e}"), 5),
        }
    }

    async fn trigger(&self, id: &str) -> Resp {
        let Ok(id) = id.parse::<TriggerId>() else {
            return h::not_found(&format!("no trigger {id:?}: trigger ids are 26 characters, as returned by ingest"));
        };
        match self.store.get(id).await {
            Ok(Some(t)) => h::json(StatusCode::OK, &TriggerView::from(&t)),
            Ok(None) => h::not_found(&format!("no trigger {id}: it was never stored, or was removed by retention or a purge")),
            Err(e) => h::unavailable("store_unavailable", &format!("the trigger could not be read: {e}"), 5),
        }
    }
}

impl Admin {
    fn unknown_tenant(tenant: &str) -> Resp {
        h::error(StatusCode::NOT_FOUND, "unknown_tenant", &format!("tenant {tenant:?} is not configured on this gateway"))
    }

    async fn upload_plugin(&self, tenant: &str, req: Request<Incoming>) -> Resp {
        if !self.plugins.knows_tenant(tenant) {
            return Self::unknown_tenant(tenant);
        }
        let timeout = std::time::Duration::from_secs(60);
        let bytes = match h::read_body(req, self.max_component_bytes, timeout).await {
            Ok(b) => b,
            Err(h::BodyError::TooLarge { limit }) => {
                return upload_error(&UploadError::TooLarge { size: limit + 1, limit });
            }
            Err(e) => return h::error(StatusCode::BAD_REQUEST, "body_unreadable", &format!("{e}; retry the upload")),
        };
        match self.plugins.upload(tenant, bytes.to_vec()).await {
            Ok((version, sha256)) => {
                h::json(StatusCode::CREATED, &serde_json::json!({"tenant": tenant, "version": version, "sha256": sha256}))
            }
            Err(e) => {
                tracing::info!(tenant, error = %e, "plugin upload refused; the previous version stays active");
                upload_error(&e)
            }
        }
    }

    async fn list_plugins(&self, tenant: &str) -> Resp {
        if !self.plugins.knows_tenant(tenant) {
            return Self::unknown_tenant(tenant);
        }
        match self.plugins.versions(tenant).await {
            Ok((versions, active)) => h::json(
                StatusCode::OK,
                &serde_json::json!({
                    "tenant": tenant,
                    "active": active,
                    "versions": versions.iter().map(|v| serde_json::json!({
                        "version": v.version,
                        "sha256": v.sha256,
                        "size": v.size,
                        "source": v.source,
                        "uploaded_at": h::rfc3339(v.uploaded_at_ms),
                        "active": Some(v.version) == active,
                    })).collect::<Vec<_>>(),
                }),
            ),
            Err(e) => upload_error(&e),
        }
    }

    async fn pause(&self, tenant: &str, pause: bool) -> Resp {
        let result = if pause { self.forwarder.pause(tenant).await } else { self.forwarder.resume(tenant).await };
        match result {
            Ok(()) => h::json(StatusCode::OK, &serde_json::json!({"tenant": tenant, "paused": pause})),
            Err(crate::forward::ForwardError::UnknownTenant(_)) => Self::unknown_tenant(tenant),
            Err(e) => h::unavailable("forwarder_unavailable", &format!("{e}; retry"), 5),
        }
    }

    async fn rollback_plugin(&self, tenant: &str) -> Resp {
        if !self.plugins.knows_tenant(tenant) {
            return Self::unknown_tenant(tenant);
        }
        match self.plugins.rollback(tenant).await {
            Ok(version) => h::json(StatusCode::OK, &serde_json::json!({"tenant": tenant, "active": version})),
            Err(e) => upload_error(&e),
        }
    }
}

fn upload_error(e: &UploadError) -> Resp {
    let (status, code) = e.status_and_code();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return h::unavailable(code, &e.to_string(), 5);
    }
    h::error(status, code, &format!("{e}; the previously active version (if any) is still active"))
}

fn unauthorized(message: &str) -> Resp {
    let mut resp = h::error(StatusCode::UNAUTHORIZED, "unauthorized", message);
    resp.headers_mut().insert(header::WWW_AUTHENTICATE, http::HeaderValue::from_static("Bearer"));
    resp
}

/// Compares without an early exit, so timing does not reveal a matching prefix.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u8 | u8::from(a.len() != b.len());
    for (i, x) in a.iter().enumerate() {
        let y = b.get(i % b.len().max(1)).copied().unwrap_or(0);
        diff |= x ^ y;
    }
    diff == 0
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The JSON shape of one trigger (docs/api.md).
#[derive(Serialize)]
pub struct TriggerView {
    id: String,
    tenant: String,
    source: String,
    state: &'static str,
    received_at: String,
    received_at_ms: u64,
    idempotency_key: Option<String>,
    headers: Vec<(String, String)>,
    body: BodyView,
    transformed_body: Option<BodyView>,
    plugin_version: Option<u32>,
    route: Option<String>,
    note: Option<String>,
    attempts: Vec<AttemptView>,
}

/// A body as UTF-8 text when it is text, else base64.
#[derive(Serialize)]
pub struct BodyView {
    encoding: &'static str,
    data: String,
    bytes: usize,
}

impl BodyView {
    fn new(bytes: &[u8]) -> BodyView {
        match std::str::from_utf8(bytes) {
            Ok(s) => BodyView { encoding: "utf8", data: s.to_string(), bytes: bytes.len() },
            Err(_) => BodyView {
                encoding: "base64",
                data: base64::engine::general_purpose::STANDARD.encode(bytes),
                bytes: bytes.len(),
            },
        }
    }
}

#[derive(Serialize)]
struct AttemptView {
    at: String,
    at_ms: u64,
    upstream: u16,
    outcome: &'static str,
    status: Option<u16>,
    duration_ms: u32,
    detail: String,
}

impl From<&StoredTrigger> for TriggerView {
    fn from(t: &StoredTrigger) -> TriggerView {
        let m = &t.meta;
        TriggerView {
            id: t.id.to_string(),
            tenant: m.tenant.clone(),
            source: m.source.clone(),
            state: m.state.as_str(),
            received_at: h::rfc3339(m.received_at_ms),
            received_at_ms: m.received_at_ms,
            idempotency_key: m.idempotency_key.clone(),
            headers: m.headers.clone(),
            body: BodyView::new(&t.body),
            transformed_body: t.transformed.as_deref().map(BodyView::new),
            plugin_version: Some(m.plugin_version).filter(|v| *v != 0),
            route: m.route.clone(),
            note: m.note.clone(),
            attempts: m
                .attempts
                .iter()
                .map(|a| AttemptView {
                    at: h::rfc3339(a.at_ms),
                    at_ms: a.at_ms,
                    upstream: a.upstream,
                    outcome: a.outcome.as_str(),
                    status: a.status,
                    duration_ms: a.duration_ms,
                    detail: a.detail.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_matches_only_equal_inputs() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(!constant_time_eq(b"x", b""));
        assert!(constant_time_eq(b"", b""));
    }
}
