//! `legacy-v0-1` (test): a component built against the frozen
//! `weir:plugin@0.1.0` contract (`wit/0.1.0/plugin.wit`), which Weir still
//! supports. Accepts, setting `x-contract: 0.1.0`.

wit_bindgen::generate!({
    path: "../../wit/0.1.0",
    world: "trigger-plugin",
});

use weir::plugin::types::{Accepted, Header};

struct Legacy;

impl Guest for Legacy {
    fn handle(_trigger: Trigger) -> Verdict {
        Verdict::Accept(Accepted {
            body: None,
            set_headers: vec![Header { name: "x-contract".into(), value: "0.1.0".into() }],
            remove_headers: Vec::new(),
            idempotency_key: None,
            route: None,
        })
    }
}

export!(Legacy);
