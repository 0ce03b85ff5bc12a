//! Weir: an edge trigger gateway. Accepts webhooks, commits them durably,
//! forwards them upstream when it is healthy.
//!
//! [`run`] is the whole gateway: `main` and the tests call the same function,
//! with listeners they bound themselves (port 0 in tests).

// Handlers return `Result<_, Resp>` where the error is the HTTP answer
// itself; it is built once, on the cold path, so its size does not matter.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod cli;
pub mod config;
pub mod fleet;
pub mod forward;
pub mod http;
pub mod id;
pub mod ingest;
pub mod plugin;
mod priority;
pub mod shutdown;
pub mod store;
pub mod telemetry;
pub mod tenants;
pub mod tls;
pub mod trigger;

use std::time::Duration;

use tokio::net::TcpListener;

pub use config::Config;
pub use shutdown::{Shutdown, ShutdownTrigger};

/// The sockets the gateway serves, bound by the caller.
pub struct Listeners {
    pub ingest: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    /// Binds the addresses of `config.server`.
    pub async fn bind(config: &Config) -> Result<Listeners, RunError> {
        let bind = |addr: String| async move { TcpListener::bind(&addr).await.map_err(|e| RunError::Bind { addr, reason: e.to_string() }) };
        Ok(Listeners { ingest: bind(config.server.listen.clone()).await?, admin: bind(config.server.admin_listen.clone()).await? })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot listen on {addr}: {reason}; pick a free port in server.listen / server.admin_listen")]
    Bind { addr: String, reason: String },
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Plugin(#[from] plugin::PluginError),
    #[error(transparent)]
    Forward(#[from] forward::ForwardError),
    #[error(transparent)]
    Auth(#[from] admin::AuthError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error(transparent)]
    Fleet(#[from] fleet::FleetError),
}

/// Runs the gateway until `shutdown` fires, then drains, all within
/// `server.shutdown_grace_ms` of the signal: stop accepting, let in-flight
/// requests finish (each waits for its commit), let in-flight deliveries
/// record their outcome, wait for the background tasks (replay jobs stop
/// between two triggers, still resumable; the metrics push; certificate
/// watchers), export the spans of all of that, then stop the store writers
/// after their last commit.
pub async fn run(config: Config, listeners: Listeners, shutdown: Shutdown) -> Result<(), RunError> {
    run_in(config, listeners, shutdown, store::Files::default()).await
}

/// [`run`], with the store's shard files opened through `files` (in tests, a
/// disk that can lose power: `store::fault`).
pub(crate) async fn run_in(config: Config, listeners: Listeners, shutdown: Shutdown, files: store::Files) -> Result<(), RunError> {
    let metrics = std::sync::Arc::new(telemetry::Metrics::with_resource(
        config.telemetry.max_tenant_labels as usize,
        telemetry::trace::resource(&config.telemetry),
    ));
    let tracer = telemetry::Tracer::start(&config.telemetry, &metrics);
    let tasks = shutdown::Tasks::default();
    // Certificates first: a bad one stops startup before anything is opened.
    let [ingest_tls, admin_tls] = config
        .server
        .tls_listeners()
        .map(|(name, prefix, tls)| tls.map(|tls| tls::ServerTls::load(name, prefix, tls, metrics.clone())).transpose());
    let (ingest_tls, admin_tls) = (ingest_tls?, admin_tls?);
    let store = store::Store::open_checked(&config.store, metrics.clone(), files)?;
    let repo = std::sync::Arc::new(store::ControlFile::open(store.dir())?);
    let tenants = tenants::Tenants::from_config(&config);
    // The fleet connection comes up in the background; nothing below waits
    // for NATS. The fleet state this PoP last applied is served meanwhile.
    let fleet = match &config.fleet {
        Some(f) => {
            let restored = fleet::tenants::restore(&repo, &tenants)?;
            tracing::info!(pop = %f.pop, restored_tenants = restored, "joining the fleet in the background");
            Some(fleet::Fleet::start(f).await?)
        }
        None => None,
    };
    let plugins = plugin::PluginHost::start(&config, tenants.clone(), repo.clone()).await?;
    // Fleet plugins: what was persisted is active already (the host loaded it); following NATS starts in the background.
    let fleet_plugins = match &fleet {
        Some(f) => Some(
            fleet::plugins::FleetPlugins::start(
                f.clone(),
                plugins.clone(),
                repo.clone(),
                metrics.clone(),
                config.plugins.max_component_bytes,
                &tasks,
                shutdown.clone(),
            )
            .await?,
        ),
        None => None,
    };
    let repo_for_admin = repo.clone();
    let (forwarder, forward_task) = forward::Forwarder::start(
        &config,
        store.clone(),
        repo,
        tenants.clone(),
        metrics.clone(),
        tracer.clone(),
        shutdown.clone(),
        fleet.clone(),
    )
    .await?;
    let retention = tokio::spawn(store::retention::run(
        store.clone(),
        Duration::from_secs(config.store.retention_secs),
        Duration::from_secs(30),
        shutdown.clone(),
    ));
    if config.forward.upstreams.is_empty() && config.forward.routes.is_empty() {
        tracing::warn!(
            "no upstream configured (forward.upstreams is empty): every accepted trigger is held in the store, none is forwarded"
        );
    }
    if config.admin.token.is_none() {
        tracing::warn!("no admin token configured: the admin API answers 401 to everything; set [admin] token or WEIR_ADMIN_TOKEN");
    }
    if let Some(fleet) = &fleet {
        let sources = fleet::heartbeat::Sources {
            store: store.clone(),
            forwarder: forwarder.clone(),
            plugins: plugins.clone(),
            tenants: tenants.clone(),
            max_body_bytes: config.server.max_body_bytes,
        };
        fleet::heartbeat::spawn(fleet.clone(), sources, metrics.clone(), shutdown.clone(), &tasks);
    }
    let grace = Duration::from_millis(config.server.shutdown_grace_ms);
    let ingest = ingest::Ingest::new(&config, store.clone(), tenants.clone(), plugins.clone(), metrics.clone(), tracer.clone());
    let admin = admin::Admin::new(
        &config,
        store.clone(),
        tenants.clone(),
        plugins,
        forwarder.clone(),
        repo_for_admin.clone(),
        metrics.clone(),
        shutdown.clone(),
        tasks.clone(),
        fleet.clone(),
    )?;
    // Also the handle the tenant registry calls (`apply_pending`) and the heartbeat reads (`status`).
    if let Some(fp) = &fleet_plugins {
        admin.attach_fleet_plugins(fp.clone());
    }
    admin.resume_jobs().await;
    admin.start_history();
    if let Some(fleet) = &fleet {
        fleet::replay::spawn(fleet.clone(), admin.clone(), metrics.clone(), shutdown.clone(), &tasks);
        let sync = fleet::tenants::TenantSync {
            fleet: fleet.clone(),
            tenants: tenants.clone(),
            forwarder: forwarder.clone(),
            repo: repo_for_admin.clone(),
            metrics: metrics.clone(),
            rejections: fleet.rejections.clone(),
            fleet_plugins: fleet_plugins.clone(),
        };
        let shutdown = shutdown.clone();
        tasks.spawn("fleet tenant watcher", async move { sync.run(shutdown).await });
    }
    if let Some(endpoint) = &config.telemetry.otlp_endpoint {
        let every = Duration::from_secs(config.telemetry.otlp_metrics_interval_secs.max(1));
        match telemetry::export::Exporter::new(endpoint, &config.telemetry.otlp_protocol).and_then(|e| e.metrics()) {
            Ok(exporter) => admin.start_metrics_export(exporter, every),
            Err(e) => tracing::error!(error = %e, "cannot set up the OTLP metrics export; no metrics will be pushed"),
        }
    }
    tracing::info!(
        ingest_scheme = if ingest_tls.is_some() { "https" } else { "http" },
        admin_scheme = if admin_tls.is_some() { "https" } else { "http" },
        ingest_addr = %listeners.ingest.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        admin_addr = %listeners.admin.local_addr().map(|a| a.to_string()).unwrap_or_default(),
        store = %store.dir().display(),
        "weir listening"
    );
    // Everything started: now the certificates may be watched.
    for tls in ingest_tls.iter().chain(&admin_tls) {
        let watcher = tls.spawn_watcher(shutdown.clone());
        tasks.spawn("certificate watcher", async move {
            let _ = watcher.await;
        });
    }
    let serving = |name, tls| http::Serving {
        name,
        tls,
        max_connections: config.server.max_connections as usize,
        grace,
        header_timeout: Duration::from_millis(config.server.request_timeout_ms),
        metrics: metrics.clone(),
    };
    let (ingest_serving, admin_serving) = (serving("ingest", ingest_tls), serving("admin", admin_tls));
    let ingest_task = http::serve(listeners.ingest, ingest_serving, move |req| ingest.clone().handle(req), shutdown.clone());
    let admin_task = http::serve(listeners.admin, admin_serving, move |req| admin.clone().handle(req), shutdown.clone());
    let signalled = {
        let mut shutdown = shutdown.clone();
        async move {
            shutdown.wait().await;
            tokio::time::Instant::now()
        }
    };
    let (_, _, signalled_at) = tokio::join!(ingest_task, admin_task, signalled);
    let deadline = signalled_at + grace;
    // Listeners are drained; let in-flight deliveries record, then stop writing.
    let forwarding = async {
        let _ = tokio::join!(forward_task, retention);
    };
    if tokio::time::timeout_at(deadline, forwarding).await.is_err() {
        // Their triggers stay pending in the store: delivered again after the restart, same idempotency key.
        tracing::warn!("the grace period ended before in-flight deliveries recorded their outcome");
    }
    join_tasks(&tasks, deadline).await;
    // Every span of the drain has ended by now: export them, then stop the exporter.
    if !tracer.close(deadline).await {
        tracing::warn!("the grace period ended before the last spans were exported");
    }
    store.close().await;
    tracing::info!("weir stopped");
    Ok(())
}

/// Waits for the background tasks until `deadline`, and says which were left.
async fn join_tasks(tasks: &shutdown::Tasks, deadline: tokio::time::Instant) {
    match tokio::time::timeout_at(deadline, tasks.wait()).await {
        Ok(()) => tracing::info!("background tasks joined"),
        Err(_) => {
            let left: Vec<String> = tasks.live().iter().map(|(name, n)| format!("{n} {name}")).collect();
            tracing::warn!(left = %left.join(", "), "the grace period ended with background tasks still running; they stop with the process");
        }
    }
}
