//! `burn-then-sleep` (hostile): computes for `rounds` rounds (tenant config,
//! default 0), then sleeps `sleep_ms` (default 5000) with `thread::sleep`,
//! which is a WASI monotonic-clock subscription and a poll: a host call that
//! blocks. The host must bound it by the call's deadline (`deadline` fault).

use core::hint::black_box;
use std::time::Duration;

use weir_plugin_sdk::{Plugin, Trigger, Verdict, config_or, export_plugin};

struct BurnThenSleep;

impl Plugin for BurnThenSleep {
    fn handle(trigger: Trigger) -> Verdict {
        let rounds: u64 = config_or("rounds", "0").parse().unwrap_or(0);
        let sleep_ms: u64 = config_or("sleep_ms", "5000").parse().unwrap_or(5000);
        let mut n = black_box(trigger.received_at_ms);
        for _ in 0..rounds {
            n = black_box(n.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        black_box(n);
        std::thread::sleep(Duration::from_millis(sleep_ms));
        Verdict::accept_unchanged()
    }
}

export_plugin!(BurnThenSleep);
