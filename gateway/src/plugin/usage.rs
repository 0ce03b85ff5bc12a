//! What one plugin call used: its CPU time (the measure its budget is
//! checked against) and the peak of its linear memory (as the Store's
//! limiter saw it grow). Measured on every call, at the cost of a few
//! atomic stores, so `weir plugin test` reports what ingest would see.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use wasmtime::{ResourceLimiter, StoreLimits};

/// What a call used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time of the call on the threads that polled it, instantiation included.
    pub cpu: Duration,
    /// Largest total size of the instance's linear memories, in bytes
    /// (what `plugin_memory_mb` caps; wasmtime's own bookkeeping is not in it).
    pub memory_peak_bytes: u64,
}

/// Written by the call (which may run on another thread, or be dropped at
/// its deadline), read by whoever started it.
#[derive(Debug, Default)]
pub(super) struct Meter {
    cpu_ns: AtomicU64,
    memory_bytes: AtomicU64,
    memory_peak_bytes: AtomicU64,
}

impl Meter {
    pub(super) fn set_cpu(&self, cpu: Duration) {
        self.cpu_ns.store(u64::try_from(cpu.as_nanos()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub(super) fn usage(&self) -> Usage {
        Usage {
            cpu: Duration::from_nanos(self.cpu_ns.load(Ordering::Relaxed)),
            memory_peak_bytes: self.memory_peak_bytes.load(Ordering::Relaxed),
        }
    }

    /// A memory grew from `current` to `desired` bytes (a new memory grows from 0).
    fn grew(&self, current: usize, desired: usize) {
        let added = desired.saturating_sub(current) as u64;
        let total = self.memory_bytes.fetch_add(added, Ordering::Relaxed) + added;
        self.memory_peak_bytes.fetch_max(total, Ordering::Relaxed);
    }
}

/// The Store's limiter: wasmtime's `StoreLimits` decides; this only watches
/// what it allowed.
pub struct Limits {
    inner: StoreLimits,
    meter: Arc<Meter>,
}

impl Limits {
    pub(super) fn new(inner: StoreLimits, meter: Arc<Meter>) -> Limits {
        Limits { inner, meter }
    }
}

impl ResourceLimiter for Limits {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        let allowed = self.inner.memory_growing(current, desired, maximum)?;
        if allowed {
            self.meter.grew(current, desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.memory_grow_failed(error)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        self.inner.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.inner.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.inner.instances()
    }

    fn tables(&self) -> usize {
        self.inner.tables()
    }

    fn memories(&self) -> usize {
        self.inner.memories()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::StoreLimitsBuilder;

    #[test]
    fn the_peak_is_the_sum_of_memories_and_refused_growth_is_not_counted() {
        let meter = Arc::new(Meter::default());
        let mut limits = Limits::new(StoreLimitsBuilder::new().memory_size(4 << 16).build(), meter.clone());
        assert!(limits.memory_growing(0, 2 << 16, None).expect("ok"));
        assert!(limits.memory_growing(0, 1 << 16, None).expect("ok"), "a second memory");
        assert!(limits.memory_growing(2 << 16, 3 << 16, None).expect("ok"));
        assert!(!limits.memory_growing(3 << 16, 5 << 16, None).expect("refused, not an error"));
        assert_eq!(meter.usage().memory_peak_bytes, 4 << 16);
        meter.set_cpu(Duration::from_micros(1500));
        assert_eq!(meter.usage().cpu, Duration::from_micros(1500));
    }
}
