//! Plugin routes: upload (validate, compile, store, activate), list, rollback,
//! activate a stored version (roll forward again after a rollback).

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::{Admin, Scope};
use crate::http::{self as h, Resp};
use crate::plugin::UploadError;

impl Admin {
    pub(super) async fn upload_plugin(&self, scope: &Scope, tenant: &str, req: Request<Incoming>) -> Resp {
        if let Err(resp) = self.tenant_in_scope(scope, tenant) {
            return resp;
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
                let detail = serde_json::json!({"version": version, "sha256": sha256, "size": bytes.len()});
                self.audit(scope, "plugin.upload", Some(tenant), detail, None).await;
                h::json(StatusCode::CREATED, &serde_json::json!({"tenant": tenant, "version": version, "sha256": sha256}))
            }
            Err(e) => {
                tracing::info!(tenant, error = %e, "plugin upload refused; the previous version stays active");
                upload_error(&e)
            }
        }
    }

    pub(super) async fn list_plugins(&self, scope: &Scope, tenant: &str) -> Resp {
        if let Err(resp) = self.tenant_in_scope(scope, tenant) {
            return resp;
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

    pub(super) async fn rollback_plugin(&self, scope: &Scope, tenant: &str) -> Resp {
        if let Err(resp) = self.tenant_in_scope(scope, tenant) {
            return resp;
        }
        match self.plugins.rollback(tenant).await {
            Ok(version) => {
                self.audit(scope, "plugin.rollback", Some(tenant), serde_json::json!({"active": version}), None).await;
                h::json(StatusCode::OK, &serde_json::json!({"tenant": tenant, "active": version}))
            }
            Err(e) => upload_error(&e),
        }
    }
}

/// `POST /v1/tenants/{tenant}/plugin/activate`'s body.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ActivateBody {
    version: u32,
}

impl Admin {
    pub(super) async fn activate_plugin(&self, scope: &Scope, tenant: &str, req: Request<Incoming>) -> Resp {
        if let Err(resp) = self.tenant_in_scope(scope, tenant) {
            return resp;
        }
        let body: ActivateBody = match super::json_body(req).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        match self.plugins.activate(tenant, body.version).await {
            Ok(previous) => {
                let detail = serde_json::json!({"active": body.version, "previous": previous});
                self.audit(scope, "plugin.activate", Some(tenant), detail, None).await;
                h::json(StatusCode::OK, &serde_json::json!({"tenant": tenant, "active": body.version, "previous": previous}))
            }
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
    let mut resp = h::error(status, code, &format!("{e}; the previously active version (if any) is still active"));
    if status == StatusCode::TOO_MANY_REQUESTS {
        // The tenant's own compile is running: come back once it has been answered.
        resp.headers_mut().insert(http::header::RETRY_AFTER, http::HeaderValue::from(5u64));
    }
    resp
}
