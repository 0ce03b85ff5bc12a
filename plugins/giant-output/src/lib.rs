//! `giant-output` (hostile): accepts with a 64 MiB body, far above any
//! sensible output cap. The host must refuse the output (plugin fault)
//! rather than store it.
//!
//! Config (optional): `bytes`, the body size in bytes (default 67108864).
//! Note that with the default `plugin_memory_mb = 32` a 64 MiB body cannot
//! even be allocated, so the plugin then traps on allocation failure; set
//! `bytes` below the memory limit (or raise the limit) to exercise the
//! output cap itself.

use weir_plugin_sdk::{Plugin, Trigger, Verdict, config, export_plugin, fault};

const DEFAULT_BYTES: usize = 64 << 20;

struct GiantOutput;

impl Plugin for GiantOutput {
    fn handle(_trigger: Trigger) -> Verdict {
        let bytes = match config("bytes") {
            None => DEFAULT_BYTES,
            Some(v) => v
                .trim()
                .parse()
                .unwrap_or_else(|_| fault("giant-output: config `bytes` is not a number")),
        };
        Verdict::accept_with_body(vec![b'x'; bytes])
    }
}

export_plugin!(GiantOutput);
