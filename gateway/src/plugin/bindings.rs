//! The `bindgen!` of each supported plugin world (one per WIT package
//! version), the host side of their imports, and [`Pre`]: a linked component
//! of either version, called with the newest version's types.

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::Instrument as _;
use wasmtime::Store;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

// `weir:plugin@0.2.0` (`wit/plugin.wit`), the newest: its types are the host's.
// Exports are async so a call can yield at epoch ticks and be cancelled (with
// its Store) while it waits in a WASI host call.
wasmtime::component::bindgen!({
    path: "../wit",
    world: "trigger-plugin",
    exports: { default: async },
});

/// `weir:plugin@0.1.0` (`wit/0.1.0/plugin.wit`): still accepted; its trigger
/// has no `phase`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "../wit/0.1.0",
        world: "trigger-plugin",
        exports: { default: async },
    });
}

pub use self::weir::plugin::host::Level;
pub use self::weir::plugin::types::{Accepted, Header, Phase, Rejected};

/// The WIT package versions Weir accepts, newest first (docs/plugins.md).
pub const SUPPORTED: &str = "weir:plugin@0.2.0, weir:plugin@0.1.0";

/// A component linked for one of the supported versions.
pub enum Pre {
    V0_2(TriggerPluginPre<HostState>),
    V0_1(v0_1::TriggerPluginPre<HostState>),
}

impl Pre {
    /// Tries the newest version first: a component matches exactly one.
    pub fn new(pre: wasmtime::component::InstancePre<HostState>) -> Result<Pre, String> {
        let newest = match TriggerPluginPre::new(pre.clone()) {
            Ok(p) => return Ok(Pre::V0_2(p)),
            Err(e) => e,
        };
        match v0_1::TriggerPluginPre::new(pre) {
            Ok(p) => Ok(Pre::V0_1(p)),
            Err(_) => Err(format!("supported versions: {SUPPORTED}; as 0.2.0: {newest:#}")),
        }
    }

    /// The WIT package version this component targets.
    pub fn version(&self) -> &'static str {
        match self {
            Pre::V0_2(_) => "weir:plugin@0.2.0",
            Pre::V0_1(_) => "weir:plugin@0.1.0",
        }
    }

    /// Instantiates (start functions run here, under the Store's deadline)
    /// and calls `handle`. The two steps are `tracing` spans, so with traces
    /// on they show in the trigger's trace under its plugin span (bridged).
    pub async fn call(&self, store: &mut Store<HostState>, trigger: &Trigger) -> wasmtime::Result<Verdict> {
        let instantiate = || tracing::debug_span!("plugin.instantiate", weir.tenant = %trigger.tenant);
        let handle = || tracing::debug_span!("plugin.handle", weir.tenant = %trigger.tenant);
        match self {
            Pre::V0_2(pre) => {
                let instance = pre.instantiate_async(&mut *store).instrument(instantiate()).await?;
                instance.call_handle(store, trigger).instrument(handle()).await
            }
            Pre::V0_1(pre) => {
                let old = v0_1::weir::plugin::types::Trigger {
                    tenant: trigger.tenant.clone(),
                    source: trigger.source.clone(),
                    method: trigger.method.clone(),
                    path: trigger.path.clone(),
                    query: trigger.query.clone(),
                    headers: trigger
                        .headers
                        .iter()
                        .map(|h| v0_1::weir::plugin::types::Header { name: h.name.clone(), value: h.value.clone() })
                        .collect(),
                    body: trigger.body.clone(),
                    received_at_ms: trigger.received_at_ms,
                };
                let instance = pre.instantiate_async(&mut *store).instrument(instantiate()).await?;
                let verdict = instance.call_handle(store, &old).instrument(handle()).await?;
                Ok(from_v0_1(verdict))
            }
        }
    }
}

fn from_v0_1(v: v0_1::Verdict) -> Verdict {
    use v0_1::weir::plugin::types as old;
    let header = |h: old::Header| Header { name: h.name, value: h.value };
    match v {
        old::Verdict::Accept(a) => Verdict::Accept(Accepted {
            body: a.body,
            set_headers: a.set_headers.into_iter().map(header).collect(),
            remove_headers: a.remove_headers,
            idempotency_key: a.idempotency_key,
            route: a.route,
        }),
        old::Verdict::Reject(r) => Verdict::Reject(Rejected { status: r.status, reason: r.reason }),
        old::Verdict::Drop => Verdict::Drop,
    }
}

/// Per-trigger state of one plugin instance: dropped with its Store.
pub struct HostState {
    pub tenant: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
    /// The Store's limits, watched for the call's memory peak (`usage.rs`).
    pub limits: super::usage::Limits,
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub log_calls: u32,
    pub max_log_calls: u32,
    pub max_log_bytes: usize,
    pub logs_dropped: u32,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl self::weir::plugin::types::Host for HostState {}
impl v0_1::weir::plugin::types::Host for HostState {}

impl self::weir::plugin::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_calls >= self.max_log_calls {
            self.logs_dropped += 1;
            return;
        }
        self.log_calls += 1;
        let message = crate::trigger::truncate(&message, self.max_log_bytes);
        let tenant = &*self.tenant;
        // Plugin output is the tenant's, never Weir's: it is logged under its
        // own target so operators can filter or silence it.
        match level {
            Level::Trace => tracing::trace!(target: "weir::plugin_log", tenant, "{message}"),
            Level::Debug => tracing::debug!(target: "weir::plugin_log", tenant, "{message}"),
            Level::Info => tracing::info!(target: "weir::plugin_log", tenant, "{message}"),
            Level::Warn => tracing::warn!(target: "weir::plugin_log", tenant, "{message}"),
            Level::Error => tracing::warn!(target: "weir::plugin_log", tenant, plugin_level = "error", "{message}"),
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }
}

/// The 0.1.0 host interface is the same two functions.
impl v0_1::weir::plugin::host::Host for HostState {
    fn log(&mut self, level: v0_1::weir::plugin::host::Level, message: String) {
        use v0_1::weir::plugin::host::Level as Old;
        let level = match level {
            Old::Trace => Level::Trace,
            Old::Debug => Level::Debug,
            Old::Info => Level::Info,
            Old::Warn => Level::Warn,
            Old::Error => Level::Error,
        };
        self::weir::plugin::host::Host::log(self, level, message);
    }

    fn config(&mut self, key: String) -> Option<String> {
        self::weir::plugin::host::Host::config(self, key)
    }
}

/// Links both versions' host interfaces (a component imports at most one).
pub fn add_to_linker(linker: &mut wasmtime::component::Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::HasSelf;
    TriggerPlugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)?;
    v0_1::TriggerPlugin::add_to_linker::<HostState, HasSelf<HostState>>(linker, |s| s)
}
