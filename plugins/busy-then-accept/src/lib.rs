//! `busy-then-accept` (well-behaved but slow): computes for `rounds` rounds
//! (tenant config, default 1,000,000), then accepts the trigger unchanged.
//! Longer than the host's inline budget, well within a normal tenant budget.

use core::hint::black_box;

use weir_plugin_sdk::{Plugin, Trigger, Verdict, config_or, export_plugin};

struct BusyThenAccept;

impl Plugin for BusyThenAccept {
    fn handle(trigger: Trigger) -> Verdict {
        let rounds: u64 = config_or("rounds", "1000000").parse().unwrap_or(1_000_000);
        let mut n = black_box(trigger.received_at_ms);
        for _ in 0..rounds {
            n = black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        black_box(n);
        Verdict::accept_unchanged()
    }
}

export_plugin!(BusyThenAccept);
