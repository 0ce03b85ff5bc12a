//! `set-route`: a test plugin for what reaches the upstream.
//!
//! * The route is the value of the request header `x-route`, when present
//!   (no route otherwise),
//! * it sets the header `x-routed-by: set-route`,
//! * and removes the headers `x-route` and `x-remove-me`.
//!
//! The body passes through unchanged.

use weir_plugin_sdk::{Accepted, Plugin, Trigger, Verdict, export_plugin};

struct SetRoute;

impl Plugin for SetRoute {
    fn handle(trigger: Trigger) -> Verdict {
        let mut accepted =
            Accepted::unchanged().set_header("x-routed-by", "set-route").remove_header("x-route").remove_header("x-remove-me");
        if let Some(route) = trigger.header("x-route") {
            accepted = accepted.with_route(route);
        }
        accepted.into()
    }
}

export_plugin!(SetRoute);
