//! Fleet plugin routes (operator only, on a PoP with `[fleet]`): this PoP's
//! fleet plugin status; upload a tenant's plugin for every PoP (checked and
//! test-compiled here first, so nothing that fails reaches NATS); roll it
//! back to an earlier component.

use std::sync::Arc;

use http::{Request, StatusCode};
use hyper::body::Incoming;

use super::{Admin, Scope};
use crate::fleet::plugins::{FleetPlugins, PublishError, publish_rollback, publish_upload};
use crate::http::{self as h, Resp};
use crate::plugin::UploadError;

#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RollbackBody {
    /// The component to go back to; default: the previous one in the key's history.
    to: Option<String>,
}

impl Admin {
    fn fleet(&self) -> Result<&Arc<FleetPlugins>, Resp> {
        self.fleet_plugins.get().ok_or_else(|| {
            h::error(StatusCode::CONFLICT, "no_fleet", "this gateway has no [fleet] section; fleet routes need one (see docs/fleet.md)")
        })
    }

    pub(super) fn fleet_plugins_status(&self) -> Resp {
        match self.fleet() {
            Ok(fp) => h::json(StatusCode::OK, &fp.status()),
            Err(resp) => resp,
        }
    }

    pub(super) async fn upload_fleet_plugin(&self, scope: &Scope, tenant: &str, req: Request<Incoming>) -> Resp {
        let fp = match self.fleet() {
            Ok(fp) => fp.clone(),
            Err(resp) => return resp,
        };
        if let Err(m) = crate::config::validate_label(tenant) {
            return h::error(StatusCode::BAD_REQUEST, "invalid_tenant", &format!("tenant id {m}"));
        }
        let bytes = match h::read_body(req, self.max_component_bytes, std::time::Duration::from_secs(60)).await {
            Ok(b) => b,
            Err(h::BodyError::TooLarge { limit }) => return refused(&UploadError::TooLarge { size: limit + 1, limit }),
            Err(e) => return h::error(StatusCode::BAD_REQUEST, "body_unreadable", &format!("{e}; retry the upload")),
        };
        // Every upload check and a real compile here, before NATS sees anything.
        if let Err(e) = fp.host().check(tenant, &bytes).await {
            tracing::info!(tenant, error = %e, "fleet plugin upload refused before it reached NATS");
            return refused(&e);
        }
        let by = format!("admin:{}:{}", fp.fleet().config.pop, scope.actor());
        match publish_upload(&fp.fleet().jetstream, &fp.fleet().config, tenant, &bytes, &by).await {
            Ok(p) => {
                self.audit(scope, "fleet.plugin.upload", Some(tenant), serde_json::to_value(&p).unwrap_or_default(), None).await;
                h::json(StatusCode::CREATED, &p)
            }
            Err(e) => publish_error(&e),
        }
    }

    pub(super) async fn rollback_fleet_plugin(&self, scope: &Scope, tenant: &str, req: Request<Incoming>) -> Resp {
        let fp = match self.fleet() {
            Ok(fp) => fp.clone(),
            Err(resp) => return resp,
        };
        let body: RollbackBody = match super::json_body(req).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        let by = format!("admin:{}:{}", fp.fleet().config.pop, scope.actor());
        match publish_rollback(&fp.fleet().jetstream, &fp.fleet().config, tenant, body.to.as_deref(), &by).await {
            Ok(p) => {
                self.audit(scope, "fleet.plugin.rollback", Some(tenant), serde_json::to_value(&p).unwrap_or_default(), None).await;
                h::json(StatusCode::OK, &p)
            }
            Err(e) => publish_error(&e),
        }
    }
}

fn refused(e: &UploadError) -> Resp {
    let (status, code) = e.status_and_code();
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::TOO_MANY_REQUESTS {
        return h::unavailable(code, &e.to_string(), 5);
    }
    h::error(status, code, &format!("{e}; nothing was sent to the fleet"))
}

fn publish_error(e: &PublishError) -> Resp {
    let (status, code) = e.status_and_code();
    if status == 503 {
        return h::unavailable(code, &format!("{e}; retry when NATS is reachable"), 5);
    }
    h::error(StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), code, &e.to_string())
}
