//! `log-flood` (hostile): calls `log` 100000 times with 10 KiB messages,
//! then accepts unchanged. The host must truncate messages and cap the
//! number of calls per trigger (dropping the excess, or trapping).
//!
//! Config (optional): `count` (default 100000) and `size` (bytes per
//! message, default 10240).

use weir_plugin_sdk::{Level, Plugin, Trigger, Verdict, config, export_plugin, log};

struct LogFlood;

fn config_usize(key: &str, default: usize) -> usize {
    config(key)
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

impl Plugin for LogFlood {
    fn handle(_trigger: Trigger) -> Verdict {
        let count = config_usize("count", 100_000);
        let size = config_usize("size", 10 * 1024);
        let message = "flood ".repeat(size / 6 + 1);
        let message = &message[..size];
        for _ in 0..count {
            log(Level::Info, message);
        }
        Verdict::accept_unchanged()
    }
}

export_plugin!(LogFlood);
