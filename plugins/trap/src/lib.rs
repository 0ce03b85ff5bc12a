//! `trap` (hostile): executes the `unreachable` instruction on every call.

use weir_plugin_sdk::{Plugin, Trigger, Verdict, export_plugin};

struct Trap;

impl Plugin for Trap {
    fn handle(_trigger: Trigger) -> Verdict {
        #[cfg(target_arch = "wasm32")]
        core::arch::wasm32::unreachable();
        #[cfg(not(target_arch = "wasm32"))]
        panic!("trap plugin called");
    }
}

export_plugin!(Trap);
