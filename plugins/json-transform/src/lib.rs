//! `json-transform`: normalises JSON object bodies.
//!
//! * A body that is not a JSON object (invalid JSON, or an array, string,
//!   number...) is rejected with 400.
//! * The top-level fields named in config key `drop` (comma-separated,
//!   whitespace around names trimmed; optional) are removed.
//! * `"_weir": {"tenant": <tenant>, "source": <source>}` is added
//!   (replacing any `_weir` the sender put there).
//! * The stored trigger gets `content-type: application/json`.
//!
//! The output is compact JSON with object keys in sorted order.

use serde_json::{Map, Value};
use weir_plugin_sdk::{Accepted, Plugin, Trigger, Verdict, config, export_plugin, split_list};

struct JsonTransform;

impl Plugin for JsonTransform {
    fn handle(trigger: Trigger) -> Verdict {
        let mut object: Map<String, Value> = match serde_json::from_slice(&trigger.body) {
            Ok(Value::Object(object)) => object,
            Ok(_) => return Verdict::reject(400, "body must be a JSON object"),
            Err(e) => return Verdict::reject(400, format!("body is not valid JSON: {e}")),
        };

        if let Some(drop) = config("drop") {
            for field in split_list(&drop) {
                object.remove(field);
            }
        }

        let mut weir = Map::new();
        weir.insert("tenant".into(), Value::String(trigger.tenant));
        weir.insert("source".into(), Value::String(trigger.source));
        object.insert("_weir".into(), Value::Object(weir));

        let body = serde_json::to_vec(&object).expect("a JSON map always serialises");
        Accepted::unchanged()
            .with_body(body)
            .set_header("content-type", "application/json")
            .into()
    }
}

export_plugin!(JsonTransform);
