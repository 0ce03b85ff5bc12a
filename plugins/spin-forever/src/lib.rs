//! `spin-forever` (hostile): never returns. The host must interrupt it at the
//! deadline (`plugin_timeout_ms`).

use core::hint::black_box;

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

struct SpinForever;

impl Plugin for SpinForever {
    fn handle(trigger: Trigger) -> Verdict {
        // `black_box` keeps the optimiser from proving anything about the
        // counter, so the loop survives as a real loop.
        let mut n = black_box(trigger.received_at_ms);
        loop {
            n = black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
    }
}

export_plugin!(SpinForever);
