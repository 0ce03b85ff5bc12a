//! A component for a world other than `weir:plugin/trigger-plugin`, used to
//! test that Weir's upload validation refuses it.

wit_bindgen::generate!({
    path: "wit",
    world: "not-a-plugin",
});

struct NotAPlugin;

impl Guest for NotAPlugin {
    fn run() -> u32 {
        42
    }
}

export!(NotAPlugin);
