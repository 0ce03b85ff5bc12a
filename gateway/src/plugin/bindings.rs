//! The one `bindgen!` of the plugin world, and the host side of its imports.

use std::collections::BTreeMap;
use std::sync::Arc;

use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

wasmtime::component::bindgen!({
    path: "../wit",
    world: "trigger-plugin",
});

pub use self::weir::plugin::host::Level;
pub use self::weir::plugin::types::Header;

/// Per-trigger state of one plugin instance: dropped with its Store.
pub struct HostState {
    pub tenant: Arc<str>,
    pub config: Arc<BTreeMap<String, String>>,
    pub limits: StoreLimits,
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

impl self::weir::plugin::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        if self.log_calls >= self.max_log_calls {
            self.logs_dropped += 1;
            return;
        }
        self.log_calls += 1;
        let message = truncate(&message, self.max_log_bytes);
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

/// Cuts `s` to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
