//! `reject-teapot`: rejects every trigger with `418 I'm a teapot`.

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

struct Teapot;

impl Plugin for Teapot {
    fn handle(_trigger: Trigger) -> Verdict {
        Verdict::reject(418, "I'm a teapot")
    }
}

export_plugin!(Teapot);
