//! The plugin host: each tenant's WebAssembly component, run on every one of
//! its triggers before the store sees them.
//!
//! Untrusted code, so: one pooled `Engine` with epoch interruption; a **fresh
//! Store and instance per trigger** from a cached `InstancePre` (nothing
//! carries over between triggers or tenants); memory capped per Store; a CPU
//! budget and a wall-clock deadline per call, blocking host calls included
//! (calls are async and cancelled with their Store); a global and a
//! per-tenant concurrency limit, held by the call that owns the Store, so one
//! tenant's plugin cannot take every instance. A plugin failure is reported
//! as a [`Failure`]; what to do with the trigger is ingest's call.
//!
//! The host never touches redb directly: versions and artifacts go through
//! [`crate::store::ControlFile`].

mod bindings;
mod compile;
mod engine;
mod examine;
mod input;
mod lane;
mod run;
mod upload;
mod usage;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::Semaphore;
use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::config::{Config, OnPluginError, PluginsConfig};
use crate::store::{ControlFile, PluginVersion, StoreError};
use crate::tenants::{Tenant, Tenants};

pub use bindings::SUPPORTED as SUPPORTED_WIT;
pub use compile::{CompileArgs, SUBCOMMAND as COMPILE_SUBCOMMAND, child_main as compile_child};
pub use examine::Examined;
pub use input::{Input, Phase};
pub use run::{Decision, Failure, FailureKind, MAX_HEADER_CHANGE_BYTES, MAX_HEADER_CHANGES, Transform, WALL_FACTOR};
pub use upload::{FLEET_SOURCE, UploadError, check_header, sha256_hex};
pub use usage::Usage;

use bindings::{HostState, Pre};

#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Engine(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A compiled, linked plugin version, ready to instantiate per trigger.
pub struct Loaded {
    pub version: u32,
    pub sha256: String,
    pre: Pre,
}

/// What the active plugin slot of a tenant holds.
#[derive(Clone)]
enum Slot {
    Ready(Arc<Loaded>),
    /// The configured plugin could not be loaded: every trigger is a plugin
    /// failure (quarantined or refused), never forwarded unchecked.
    Broken {
        version: Option<u32>,
        reason: Arc<str>,
    },
}

/// No plugin instance came free within the call's own deadline: not the
/// tenant's fault (its own calls are capped below the pool), so the trigger
/// is refused with 503 + Retry-After, never quarantined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The result of running a tenant's plugin on one trigger.
pub struct Ran {
    pub version: Option<u32>,
    pub result: Result<Decision, Failure>,
    pub on_error: OnPluginError,
    pub elapsed: Duration,
    /// The call overran its first millisecond of CPU and finished on the slow lane.
    pub slow_lane: bool,
    /// What the call used (zero when no call ran).
    pub usage: Usage,
}

pub struct PluginHost {
    engine: Engine,
    linker: Linker<HostState>,
    repo: Arc<ControlFile>,
    compat: u64,
    limits: PluginsConfig,
    /// A plugin's new body may be no larger than an ingested one.
    max_output_bytes: usize,
    /// Who this gateway serves and each tenant's plugin settings (one owner: `crate::tenants`).
    tenants: Arc<Tenants>,
    active: RwLock<HashMap<String, Slot>>,
    slots: Arc<Semaphore>,
    /// Where calls that overran their first millisecond of CPU finish.
    slow_lane: lane::SlowLane,
    /// Compiles in child processes, with limits and per-tenant fairness.
    compiler: compile::Compiler,
    _ticker: engine::Ticker,
}

impl PluginHost {
    /// Builds the engine (failing clearly if the pool's address space cannot
    /// be reserved), then loads every tenant's active plugin.
    pub async fn start(config: &Config, tenants: Arc<Tenants>, repo: Arc<ControlFile>) -> Result<Arc<PluginHost>, PluginError> {
        let max_memory = crate::tenants::pool_memory_mb(config) * 1024 * 1024;
        let engine = engine::build(config.plugins.concurrency, max_memory)?;
        let ticker = engine::Ticker::start(&engine)?;
        let mut linker = Linker::new(&engine);
        // Async WASI: its blocking calls (poll, sleeps, stream flushes) are
        // futures the call's deadline can cancel, never a nested `block_on`.
        wasmtime_wasi::p2::add_to_linker_async(&mut linker).map_err(|e| PluginError::Engine(e.to_string()))?;
        bindings::add_to_linker(&mut linker).map_err(|e| PluginError::Engine(e.to_string()))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut h);
        let host = Arc::new(PluginHost {
            compat: h.finish(),
            engine,
            linker,
            repo,
            limits: config.plugins.clone(),
            max_output_bytes: config.server.max_body_bytes as usize,
            tenants,
            active: RwLock::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(config.plugins.concurrency as usize)),
            slow_lane: lane::SlowLane::start()?,
            compiler: compile::Compiler::new(&config.plugins, config.plugins.concurrency, max_memory),
            _ticker: ticker,
        });
        host.load_all(config).await?;
        Ok(host)
    }

    /// Registers configured plugin files and loads each tenant's active version.
    async fn load_all(self: &Arc<Self>, config: &Config) -> Result<(), PluginError> {
        for t in &config.tenants {
            if let Some(path) = &t.plugin
                && let Err(e) = self.register_file(&t.id, path).await
            {
                tracing::error!(tenant = %t.id, file = %path.display(), error = %e,
                        "tenant plugin could not be loaded; its triggers are quarantined until it is fixed");
                self.set_slot(&t.id, Slot::Broken { version: None, reason: format!("plugin file {}: {e}", path.display()).into() });
                continue;
            }
            let repo = self.repo.clone();
            let id = t.id.clone();
            let active = blocking(move || repo.active(&id)).await?;
            if let Some(version) = active
                && let Err(e) = self.activate_version(&t.id, version).await
            {
                tracing::error!(tenant = %t.id, version, error = %e,
                        "stored plugin version could not be loaded; its triggers are quarantined until it is fixed");
                self.set_slot(&t.id, Slot::Broken { version: Some(version), reason: e.to_string().into() });
            }
        }
        Ok(())
    }

    fn set_slot(&self, tenant: &str, slot: Slot) {
        self.active.write().unwrap_or_else(|e| e.into_inner()).insert(tenant.to_string(), slot);
    }

    /// True when the tenant has a plugin (working or broken) to run.
    pub fn has_plugin(&self, tenant: &str) -> bool {
        self.active.read().unwrap_or_else(|e| e.into_inner()).contains_key(tenant)
    }

    /// Runs the tenant's active plugin on one trigger; `None` when it has none.
    ///
    /// The call starts in the caller's task; past its first millisecond of
    /// CPU it moves to the low-priority slow lane (`lane.rs`). Its Store and
    /// its two slot permits live in one future wherever it runs: a sender that
    /// hangs up drops all three at once.
    pub async fn run(&self, input: Input) -> Option<Result<Ran, Busy>> {
        let slot = self.active.read().unwrap_or_else(|e| e.into_inner()).get(&input.tenant).cloned()?;
        let tenant = self.tenants.get(&input.tenant)?;
        let started = std::time::Instant::now();
        let loaded = match slot {
            Slot::Ready(l) => l,
            Slot::Broken { version, reason } => {
                return Some(Ok(Ran {
                    version,
                    result: Err(Failure { kind: FailureKind::Unavailable, detail: reason.to_string() }),
                    on_error: tenant.on_plugin_error,
                    elapsed: started.elapsed(),
                    slow_lane: false,
                    usage: Usage::default(),
                }));
            }
        };
        // The tenant's own permit first: a tenant at its cap waits without
        // holding a global permit another tenant could use. Both are awaited
        // within the call's own deadline.
        let wait = tenant.plugin_timeout * run::WALL_FACTOR;
        let permits = tokio::time::timeout(wait, async {
            let own = tenant.plugin_slots.clone().acquire_owned().await.ok()?;
            let global = self.slots.clone().acquire_owned().await.ok()?;
            Some((own, global))
        });
        let Ok(Some(permits)) = permits.await else { return Some(Err(Busy)) };
        let job = self.job(&tenant, loaded.clone());
        let (overran, meter) = (job.overran.clone(), job.meter.clone());
        let trigger = input.into_trigger();
        let (name, budget) = (trigger.tenant.clone(), tenant.plugin_timeout);
        let call = async move {
            // Declared before the call, so the call (and its Store) is
            // dropped before the permits.
            let _permits = permits;
            job.run(&trigger, budget).await
        };
        // On the slow lane the call is polled by another task: it takes the
        // caller's trace context along (the plugin span: its log lines carry it).
        let call = crate::telemetry::within(None, call);
        let result = match lane::drive(&self.slow_lane, &overran, call).await {
            Ok(Ok(r)) => r,
            Ok(Err(run::NoInstance)) => {
                tracing::warn!(tenant = %name, "no plugin instance free although a slot was; trigger refused with 503");
                return Some(Err(Busy));
            }
            Err(e) => Err(Failure { kind: FailureKind::Trap, detail: format!("plugin task failed: {e}") }),
        };
        let slow_lane = overran.load(std::sync::atomic::Ordering::Relaxed);
        Some(Ok(Ran {
            version: Some(loaded.version),
            result,
            on_error: tenant.on_plugin_error,
            elapsed: started.elapsed(),
            slow_lane,
            usage: meter.usage(),
        }))
    }

    /// Runs the tenant's plugin without the concurrency limits: what one
    /// fresh instance plus call costs (for benchmarks).
    pub async fn run_inline(&self, input: Input) -> Option<Result<Decision, Failure>> {
        let slot = self.active.read().unwrap_or_else(|e| e.into_inner()).get(&input.tenant).cloned()?;
        let tenant = self.tenants.get(&input.tenant)?;
        let Slot::Ready(loaded) = slot else { return None };
        self.job(&tenant, loaded).run(&input.into_trigger(), tenant.plugin_timeout).await.ok()
    }

    fn job(&self, tenant: &Tenant, loaded: Arc<Loaded>) -> run::Job {
        run::Job {
            engine: self.engine.clone(),
            loaded,
            memory_bytes: tenant.plugin_memory_bytes,
            config: tenant.plugin_config.clone(),
            max_log_calls: self.limits.max_log_calls,
            max_log_bytes: self.limits.max_log_bytes as usize,
            max_output_bytes: self.max_output_bytes,
            overran: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            meter: Arc::default(),
        }
    }

    /// Loads a stored version (its artifact, or recompiling) and makes it active in memory.
    async fn activate_version(self: &Arc<Self>, tenant: &str, version: u32) -> Result<Arc<Loaded>, UploadError> {
        let repo = self.repo.clone();
        let t = tenant.to_string();
        let versions = blocking(move || repo.versions(&t)).await?;
        let v = versions
            .into_iter()
            .find(|v| v.version == version)
            .ok_or_else(|| UploadError::NotFound(format!("tenant {tenant} has no plugin version {version}")))?;
        let loaded = Arc::new(self.load_stored(tenant, &v).await?);
        self.set_slot(tenant, Slot::Ready(loaded.clone()));
        Ok(loaded)
    }

    /// Links a stored version, from Weir's own artifact when it deserializes,
    /// otherwise recompiling from the component (never trusting a bad artifact).
    async fn load_stored(self: &Arc<Self>, tenant: &str, v: &PluginVersion) -> Result<Loaded, UploadError> {
        if let Some(component) = self.file_backed(&v.sha256, None).await? {
            return self.link(component, v.version, &v.sha256);
        }
        let (repo, sha) = (self.repo.clone(), v.sha256.clone());
        let component = blocking(move || repo.component(&sha))
            .await?
            .ok_or_else(|| UploadError::NotFound(format!("component {} is missing from the plugin store", v.sha256)))?;
        let artifact = Arc::new(self.compile(tenant, &component).await?);
        let (repo, sha, compat, art) = (self.repo.clone(), v.sha256.clone(), self.compat, artifact.clone());
        blocking(move || repo.put_artifact(&sha, compat, &art)).await?;
        if let Some(component) = self.file_backed(&v.sha256, Some(artifact.clone())).await? {
            return self.link(component, v.version, &v.sha256);
        }
        // SAFETY: `artifact` was just produced by Weir's own compiler process
        // (this binary, or plugins.compiler) with this engine's configuration.
        let component =
            unsafe { Component::deserialize(&self.engine, artifact.as_slice()) }.map_err(|e| UploadError::Compile(format!("{e:#}")))?;
        self.link(component, v.version, &v.sha256)
    }

    /// The stored artifact of `sha256` for this engine, mapped from its file
    /// (`ControlFile::artifact_file`): compiled code is file-backed, so a
    /// thousand tenants' plugins cost the pages their triggers run, not a
    /// private copy of every artifact. `None` when there is no artifact, or
    /// the engine refuses it (logged; the caller recompiles). `known`: the
    /// artifact's bytes when the caller holds them (no read of the table).
    pub(super) async fn file_backed(self: &Arc<Self>, sha256: &str, known: Option<Arc<Vec<u8>>>) -> Result<Option<Component>, UploadError> {
        let (repo, sha, compat) = (self.repo.clone(), sha256.to_string(), self.compat);
        let Some(file) = blocking(move || repo.artifact_file(&sha, compat, known.as_deref().map(Vec::as_slice))).await? else {
            return Ok(None);
        };
        // SAFETY: the file is written only by `artifact_file`, from an
        // artifact this engine's precompile_component produced, whole
        // (synced, then renamed) and where tenants cannot write.
        match unsafe { Component::deserialize_file(&self.engine, &file) } {
            Ok(component) => Ok(Some(component)),
            Err(e) => {
                tracing::warn!(sha256, file = %file.display(), error = %e, "precompiled plugin artifact unusable; recompiling");
                self.repo.drop_artifact_file(&file);
                Ok(None)
            }
        }
    }

    fn link(&self, component: Component, version: u32, sha256: &str) -> Result<Loaded, UploadError> {
        let pre = self.linker.instantiate_pre(&component).map_err(|e| UploadError::Imports(format!("{e:#}")))?;
        let pre = Pre::new(pre).map_err(UploadError::WrongWorld)?;
        Ok(Loaded { version, sha256: sha256.to_string(), pre })
    }

    pub fn repo(&self) -> &Arc<ControlFile> {
        &self.repo
    }

    pub fn knows_tenant(&self, tenant: &str) -> bool {
        self.tenants.contains(tenant)
    }

    /// The tenants that have a plugin and what it is, for the fleet heartbeat.
    pub fn active_plugins(&self) -> std::collections::BTreeMap<String, ActivePlugin> {
        let active = self.active.read().unwrap_or_else(|e| e.into_inner());
        active
            .iter()
            .map(|(t, slot)| {
                let plugin = match slot {
                    Slot::Ready(l) => ActivePlugin { version: Some(l.version), sha256: Some(l.sha256.clone()), loaded: true },
                    Slot::Broken { version, .. } => ActivePlugin { version: *version, sha256: None, loaded: false },
                };
                (t.clone(), plugin)
            })
            .collect()
    }

    /// The version currently active in memory for `tenant`, if any.
    pub fn active_version(&self, tenant: &str) -> Option<u32> {
        match self.active.read().unwrap_or_else(|e| e.into_inner()).get(tenant)? {
            Slot::Ready(l) => Some(l.version),
            Slot::Broken { version, .. } => *version,
        }
    }
}

pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Io(format!("plugin store task failed: {e}")))?
}

/// A tenant's active plugin, for reports: `loaded` is false when it could
/// not be loaded (its triggers are plugin failures; no sha256 then).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePlugin {
    pub version: Option<u32>,
    pub sha256: Option<String>,
    pub loaded: bool,
}
