//! `drop-all`: drops every trigger (the sender gets 202, nothing is stored).

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

struct DropAll;

impl Plugin for DropAll {
    fn handle(_trigger: Trigger) -> Verdict {
        Verdict::drop()
    }
}

export_plugin!(DropAll);
