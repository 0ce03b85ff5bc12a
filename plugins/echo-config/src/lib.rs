//! `echo-config`: a test plugin that shows what the host passes in.
//!
//! * The trigger body is a comma-separated list of config keys (whitespace
//!   trimmed); the plugin accepts with a JSON object body mapping each key
//!   to its config value, or `null` when unset: body `secret,region` gives
//!   `{"region":null,"secret":"..."}` (keys sorted). An empty body gives
//!   `{}`; a body that is not UTF-8 is rejected with 400.
//! * It sets the header `x-weir-plugin: echo-config`,
//! * uses the request header `x-test-key`, when present, as the
//!   idempotency key (otherwise leaves the key alone),
//! * and sets the route `echo`.

use serde_json::{Map, Value};
use weir_plugin_sdk::{Accepted, Plugin, Trigger, Verdict, config, export_plugin, split_list};

struct EchoConfig;

impl Plugin for EchoConfig {
    fn handle(trigger: Trigger) -> Verdict {
        let Some(keys) = trigger.body_str() else {
            return Verdict::reject(400, "body must be a UTF-8 list of config keys");
        };
        let mut echoed = Map::new();
        for key in split_list(keys) {
            let value = config(key).map_or(Value::Null, Value::String);
            echoed.insert(key.to_owned(), value);
        }
        let body = serde_json::to_vec(&echoed).expect("a JSON map always serialises");

        let mut accepted = Accepted::unchanged()
            .with_body(body)
            .set_header("x-weir-plugin", "echo-config")
            .with_route("echo");
        if let Some(key) = trigger.header("x-test-key") {
            accepted = accepted.with_idempotency_key(key);
        }
        accepted.into()
    }
}

export_plugin!(EchoConfig);
