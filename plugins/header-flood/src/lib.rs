//! `header-flood` (hostile): accepts with `count` (tenant config, default
//! 10,000) distinct set-headers. Over the host's header-change limit, so a
//! `malformed_output` fault, never stored.

use weir_plugin_sdk::{Accepted, Plugin, Trigger, Verdict, config_or, export_plugin};

struct HeaderFlood;

impl Plugin for HeaderFlood {
    fn handle(_trigger: Trigger) -> Verdict {
        let count: usize = config_or("count", "10000").parse().unwrap_or(10_000);
        let mut accepted = Accepted::unchanged();
        for i in 0..count {
            accepted = accepted.set_header(format!("x-flood-{i}"), "0123456789abcdef0123456789abcdef");
        }
        accepted.into()
    }
}

export_plugin!(HeaderFlood);
