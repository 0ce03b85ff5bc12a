//! The one wasmtime `Engine`: pooling allocator sized to the plugin
//! concurrency Weir allows, epoch interruption driven by one OS thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::PluginError;

/// Wasm stack for a plugin call.
pub const MAX_WASM_STACK: usize = 512 * 1024;
/// Calls are async: the guest runs on a fiber stack of this size from the
/// pool, which holds the wasm stack plus the host frames (WASI, the epoch
/// callback) called from it. Overflowing it would abort the process, so it is
/// well above `MAX_WASM_STACK` (wasmtime refuses a config where it is not).
const ASYNC_STACK: usize = MAX_WASM_STACK + 1024 * 1024;
/// Core instances a component may contain (Rust wasip2 components have a few).
const CORE_INSTANCES_PER_COMPONENT: u32 = 16;
const MEMORIES_PER_COMPONENT: u32 = 2;
const TABLES_PER_COMPONENT: u32 = 4;
const TICK: Duration = Duration::from_millis(1);

pub fn build(concurrency: u32, max_memory_bytes: u64) -> Result<Engine, PluginError> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(concurrency)
        .total_core_instances(concurrency * CORE_INSTANCES_PER_COMPONENT)
        .total_memories(concurrency * MEMORIES_PER_COMPONENT)
        .total_tables(concurrency * TABLES_PER_COMPONENT)
        .total_stacks(concurrency)
        .max_core_instances_per_component(CORE_INSTANCES_PER_COMPONENT)
        .max_memories_per_component(MEMORIES_PER_COMPONENT)
        .max_tables_per_component(TABLES_PER_COMPONENT)
        .max_memory_size(max_memory_bytes as usize)
        // Fresh instance per trigger: most of its cost is page faults, so keep
        // the first pages of a slot resident and reset them instead.
        .linear_memory_keep_resident(2 * 1024 * 1024)
        .table_keep_resident(2 * 1024 * 1024)
        .pagemap_scan(Enabled::Auto)
        .max_unused_warm_slots(concurrency.min(16));
    let mut config = Config::new();
    config
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .epoch_interruption(true)
        .max_wasm_stack(MAX_WASM_STACK)
        .async_stack_size(ASYNC_STACK)
        .concurrency_support(false);
    Engine::new(&config).map_err(|e| {
        PluginError::Engine(format!(
            "cannot set up the plugin engine for {concurrency} concurrent instances of up to {} MiB each ({e}); \
         the pool reserves address space up front: lower plugins.concurrency or the tenants' plugin_memory_mb, \
         or raise the process's virtual memory limit (ulimit -v)",
            max_memory_bytes / (1024 * 1024)
        ))
    })
}

/// The epoch ticker: one OS thread per Engine (more would make deadlines fire early).
pub struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    pub fn start(engine: &Engine) -> Result<Ticker, PluginError> {
        let weak = engine.weak();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(engine) => engine.increment_epoch(),
                        None => break,
                    }
                }
            })
            .map_err(|e| PluginError::Engine(format!("cannot start the epoch thread: {e}")))?;
        Ok(Ticker { stop, thread: Some(thread) })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
