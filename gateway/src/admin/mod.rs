//! The admin API on its own listener: triggers (read, list, replay, delete,
//! purge), plugins, pause/resume, status, audit, backup.
//!
//! Every `/v1/` route needs a bearer token ([`auth`]); what a route allows is
//! in one table ([`routes::ROUTES`]). A tenant token sees only its tenant:
//! another tenant's data answers 404, exactly like data that does not exist.

mod audit;
pub mod auth;
mod backup;
pub mod console;
mod fleet_plugins;
mod fleet_pops;
pub mod history;
mod plugins;
mod replay;
pub mod routes;
mod triggers;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{Request, StatusCode};
use hyper::body::Incoming;

use crate::config::Config;
use crate::forward::Forwarder;
use crate::http::{self as h, Resp};
use crate::ingest::health;
use crate::plugin::PluginHost;
use crate::shutdown::{Shutdown, Tasks};
use crate::store::{ControlFile, Store};

pub use auth::{AuthError, Scope, constant_time_eq};
pub use triggers::{FilterArgs, TriggerView};

use routes::{Access, Miss, Name};

pub struct Admin {
    store: Store,
    metrics: Arc<crate::telemetry::Metrics>,
    plugins: Arc<PluginHost>,
    forwarder: Forwarder,
    repo: Arc<ControlFile>,
    auth: auth::Auth,
    jobs: replay::Jobs,
    shutdown: Shutdown,
    /// Replay jobs and the metrics push run here, so shutdown waits for them.
    tasks: Tasks,
    tenants: Arc<crate::tenants::Tenants>,
    /// This PoP's fleet connection, when it has `[fleet]` (status only).
    fleet: Option<crate::fleet::Fleet>,
    max_component_bytes: u64,
    max_body_bytes: u64,
    backup_bytes_per_sec: u64,
    /// Set once at startup on a PoP with `[fleet]`.
    fleet_plugins: std::sync::OnceLock<Arc<crate::fleet::plugins::FleetPlugins>>,
    /// The last hour of totals (`GET /v1/history`), sampled by [`Admin::start_history`].
    history: Arc<history::History>,
}

impl Admin {
    // Every shared owner the admin API reads from, handed over once at startup.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        store: Store,
        tenants: Arc<crate::tenants::Tenants>,
        plugins: Arc<PluginHost>,
        forwarder: Forwarder,
        repo: Arc<ControlFile>,
        metrics: Arc<crate::telemetry::Metrics>,
        shutdown: Shutdown,
        tasks: Tasks,
        fleet: Option<crate::fleet::Fleet>,
    ) -> Result<Arc<Admin>, AuthError> {
        let admin = Arc::new(Admin {
            store,
            metrics,
            plugins,
            forwarder,
            jobs: replay::Jobs::default(),
            repo,
            auth: auth::Auth::from_config(config)?,
            shutdown,
            tasks,
            tenants,
            fleet,
            max_component_bytes: config.plugins.max_component_bytes,
            max_body_bytes: config.server.max_body_bytes,
            backup_bytes_per_sec: config.admin.backup_max_mb_per_sec * 1024 * 1024,
            fleet_plugins: std::sync::OnceLock::new(),
            history: Arc::new(history::History::new(history::EVERY, history::CAPACITY)),
        });
        Ok(admin)
    }

    /// Serves the fleet plugin routes from this PoP's fleet plugins (a PoP with `[fleet]`).
    pub fn attach_fleet_plugins(&self, fp: Arc<crate::fleet::plugins::FleetPlugins>) {
        let _ = self.fleet_plugins.set(fp);
    }

    /// Resumes replay jobs a crash interrupted.
    pub async fn resume_jobs(self: &Arc<Self>) {
        replay::resume_all(self.clone()).await;
    }

    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Resp {
        let path = req.uri().path().to_string();
        if let Some(resp) = health(&self.store, self.max_body_bytes, req.method(), &path) {
            return resp;
        }
        if path == "/metrics" {
            // Metrics name every tenant, and tenants reach this listener with
            // their own tokens: scraping needs the operator or metrics token.
            if let Err(resp) = self.auth.check_metrics(req.headers().get(http::header::AUTHORIZATION)) {
                return resp;
            }
            return self.metrics_page(req.method()).await;
        }
        let (route, params) = match routes::find(req.method().as_str(), &path) {
            Ok(found) => found,
            Err(Miss::Method(allow)) => return h::method_not_allowed(&allow, req.method(), &path),
            Err(Miss::NotFound) => {
                return h::not_found(&format!("no admin route for {} {path} (see docs/api.md)", req.method()));
            }
        };
        if route.access == Access::Public {
            let asset = if route.name == Name::ConsoleAsset { params.first().copied().unwrap_or("") } else { "" };
            return console::serve(req.method(), asset);
        }
        let scope = match self.auth.check(req.headers().get(http::header::AUTHORIZATION)) {
            Ok(s) => s,
            Err(resp) => return resp,
        };
        if route.access == Access::Operator && scope != Scope::Operator {
            return h::error(StatusCode::FORBIDDEN, "operator_only", "this route needs the operator token, not a tenant token");
        }
        let params: Vec<String> = params.into_iter().map(str::to_string).collect();
        let p = |i: usize| params.get(i).map(String::as_str).unwrap_or("");
        match route.name {
            Name::Status => self.status().await,
            Name::ListTriggers => self.list(&scope, req.uri().query().unwrap_or("")).await,
            Name::GetTrigger => self.trigger(&scope, p(0)).await,
            Name::DeleteTrigger => self.delete(&scope, p(0)).await,
            Name::Purge => self.purge(&scope, req).await,
            Name::Replay => self.replay(&scope, req).await,
            Name::ReplayJob => self.replay_job(&scope, p(0)),
            Name::Audit => self.audit_log(&scope, req.uri().query().unwrap_or("")).await,
            Name::Backup => self.backup().await,
            Name::UploadPlugin => self.upload_plugin(&scope, p(0), req).await,
            Name::ListPlugins => self.list_plugins(&scope, p(0)).await,
            Name::RollbackPlugin => self.rollback_plugin(&scope, p(0)).await,
            Name::ActivatePlugin => self.activate_plugin(&scope, p(0), req).await,
            Name::Pause => self.pause(&scope, p(0), true).await,
            Name::Resume => self.pause(&scope, p(0), false).await,
            Name::FleetPlugins => self.fleet_plugins_status(),
            Name::FleetPops => self.fleet_pops().await,
            Name::UploadFleetPlugin => self.upload_fleet_plugin(&scope, p(0), req).await,
            Name::RollbackFleetPlugin => self.rollback_fleet_plugin(&scope, p(0), req).await,
            Name::WhoAmI => self.whoami(&scope),
            Name::History => self.history_page(),
            // Answered above, before the token check.
            Name::Console | Name::ConsoleAsset => console::serve(req.method(), ""),
        }
    }

    /// A tenant the scope may see and the gateway knows, or the 404 to answer.
    fn tenant_in_scope(&self, scope: &Scope, tenant: &str) -> Result<(), Resp> {
        if scope.sees(tenant) && self.tenants.contains(tenant) { Ok(()) } else { Err(unknown_tenant(tenant)) }
    }

    async fn status(&self) -> Resp {
        match self.store.stats().await {
            Ok(s) => {
                // Weir's clock, which stamped received_at_ms: ages agree with the forwarder's.
                let now = crate::store::clock::now_ms();
                let forward = self.forwarder.status();
                h::json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "pending": s.pending,
                        "backlog": s.pending,
                        "delivered": s.delivered,
                        "dead": s.dead,
                        "quarantined": s.quarantined,
                        "store_bytes": s.file_bytes,
                        "used_bytes": s.used_bytes,
                        "budget_bytes": s.budget_bytes,
                        "free_bytes": self.store.free_bytes(),
                        "min_free_bytes": self.store.min_free_bytes(),
                        "oldest_pending_age_ms": s.oldest_pending_ms.map(|ms| now.saturating_sub(ms)),
                        "shards": s.shards,
                        "writable_shards": s.writable_shards,
                        "ready": self.store.not_ready_reason(self.max_body_bytes).is_none(),
                        "upstreams": forward.upstreams,
                        "routes": forward.routes,
                        "outcomes_unrecorded": forward.outcomes_unrecorded,
                        "paused_tenants": forward.paused_tenants,
                        "pending_by_tenant": self.store.pending_by_tenant(),
                        "plugins_by_tenant": self.metrics.plugin_counts(),
                        "in_flight": forward.in_flight,
                        "retries_waiting": forward.retries_waiting,
                        "delivered_last_minute": forward.delivered_last_minute,
                        "delivery_rate_per_sec": forward.delivery_rate_per_sec,
                        "replays_running": self.jobs.running(),
                        "tenants": self.tenants.ids(),
                        "fleet": self.fleet.as_ref().map(|f| f.status()),
                        "version": env!("CARGO_PKG_VERSION"),
                    }),
                )
            }
            Err(e) => h::unavailable("store_unavailable", &format!("store statistics could not be read: {e}"), 5),
        }
    }

    /// Who the token is; for a tenant token also its own backlog and pause, since `/v1/status` is the operator's.
    fn whoami(&self, scope: &Scope) -> Resp {
        match scope.tenant() {
            None => h::json(StatusCode::OK, &serde_json::json!({"scope": "operator"})),
            Some(t) => {
                let paused = self.forwarder.status().paused_tenants.iter().any(|p| p == t);
                let pending = self.store.pending_by_tenant().get(t).copied().unwrap_or(0);
                h::json(StatusCode::OK, &serde_json::json!({"scope": "tenant", "tenant": t, "paused": paused, "pending": pending}))
            }
        }
    }

    /// The values read from their owners at scrape (or OTLP export) time.
    async fn gauges(&self) -> crate::telemetry::Gauges {
        let stats = self.store.stats().await.unwrap_or_default();
        // Weir's clock, which stamped received_at_ms: ages agree with the forwarder's.
        let now = crate::store::clock::now_ms();
        let forward = self.forwarder.status();
        crate::telemetry::Gauges {
            pending_by_tenant: self.store.pending_by_tenant(),
            by_state: vec![
                ("pending", stats.pending),
                ("delivered", stats.delivered),
                ("dead", stats.dead),
                ("quarantined", stats.quarantined),
            ],
            oldest_pending_age_secs: stats.oldest_pending_ms.map_or(0.0, |ms| now.saturating_sub(ms) as f64 / 1000.0),
            store_bytes: stats.file_bytes,
            used_bytes: self.store.used_bytes(),
            budget_bytes: self.store.budget(),
            free_bytes: self.store.free_bytes(),
            min_free_bytes: self.store.min_free_bytes(),
            ready: self.store.not_ready_reason(self.max_body_bytes).is_none(),
            replays_running: self.jobs.running(),
            upstreams: forward.upstreams.iter().map(|u| (u.url.clone(), u.state)).collect(),
        }
    }

    /// Pushes the metrics to the OTLP collector every `every` until shutdown.
    pub fn start_metrics_export(self: &Arc<Self>, exporter: opentelemetry_otlp::MetricExporter, every: std::time::Duration) {
        let admin = self.clone();
        self.tasks.spawn("OTLP metrics push", async move {
            let mut shutdown = admin.shutdown.clone();
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tokio::time::sleep(every) => {}
                }
                crate::telemetry::export::push_metrics(&exporter, &admin.metrics, admin.gauges().await).await;
            }
        });
    }

    async fn metrics_page(&self, method: &http::Method) -> Resp {
        if method != http::Method::GET {
            return h::method_not_allowed("GET", method, "/metrics");
        }
        let gauges = self.gauges().await;
        let mut resp = http::Response::new(h::full(self.metrics.render(gauges)));
        resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("text/plain; version=0.0.4"));
        resp
    }

    async fn pause(&self, scope: &Scope, tenant: &str, pause: bool) -> Resp {
        if let Err(resp) = self.tenant_in_scope(scope, tenant) {
            return resp;
        }
        let result = if pause { self.forwarder.pause(tenant).await } else { self.forwarder.resume(tenant).await };
        match result {
            Ok(()) => {
                self.audit(scope, if pause { "tenant.pause" } else { "tenant.resume" }, Some(tenant), serde_json::json!({}), None).await;
                h::json(StatusCode::OK, &serde_json::json!({"tenant": tenant, "paused": pause}))
            }
            Err(crate::forward::ForwardError::UnknownTenant(_)) => unknown_tenant(tenant),
            Err(e) => h::unavailable("forwarder_unavailable", &format!("{e}; retry"), 5),
        }
    }
}

pub(crate) fn unknown_tenant(tenant: &str) -> Resp {
    h::error(StatusCode::NOT_FOUND, "unknown_tenant", &format!("tenant {tenant:?} is not configured on this gateway"))
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Reads a small JSON request body into `T`, or the 400 to answer.
pub(crate) async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Resp> {
    let bytes = h::read_body(req, 1024 * 1024, std::time::Duration::from_secs(30))
        .await
        .map_err(|e| h::error(StatusCode::BAD_REQUEST, "body_unreadable", &format!("{e}")))?;
    let bytes = if bytes.is_empty() { bytes::Bytes::from_static(b"{}") } else { bytes };
    serde_json::from_slice(&bytes).map_err(|e| {
        h::error(StatusCode::BAD_REQUEST, "invalid_json", &format!("the request body is not valid here: {e}; see docs/api.md"))
    })
}
