//! `passthrough`: accepts every trigger exactly as received.
//!
//! The smallest useful plugin, and the baseline for measuring plugin
//! overhead: the verdict carries no body (`body: none`), so nothing is
//! copied back out of the instance.

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

struct Passthrough;

impl Plugin for Passthrough {
    fn handle(_trigger: Trigger) -> Verdict {
        Verdict::accept_unchanged()
    }
}

export_plugin!(Passthrough);
