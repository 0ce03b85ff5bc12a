//! `memory-hog` (hostile): allocates and touches 1 MiB chunks, keeping them
//! all, until allocation fails (the allocator then aborts: a trap). The host
//! must cap linear memory at `plugin_memory_mb`.

use core::hint::black_box;

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

const CHUNK: usize = 1 << 20;

struct MemoryHog;

impl Plugin for MemoryHog {
    fn handle(_trigger: Trigger) -> Verdict {
        let mut hoard: Vec<Vec<u8>> = Vec::new();
        loop {
            // A non-zero fill writes every page (fresh memory is already
            // zero, so a zeroed allocation might never touch it).
            let chunk = black_box(vec![0xa5u8; CHUNK]);
            hoard.push(chunk);
            black_box(&mut hoard);
        }
    }
}

export_plugin!(MemoryHog);
