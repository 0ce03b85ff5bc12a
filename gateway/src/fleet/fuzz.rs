//! Fuzzing what a PoP reads from NATS: tenant settings and pauses, heartbeats,
//! replay commands and replies, plugin pointers. Everything there is
//! untrusted: it never panics the PoP, and a bad value is refused with a
//! reason. Values are arbitrary bytes, or valid JSON with one field replaced
//! by any JSON value.
//!
//! `PROPTEST_CASES` raises the case count for a longer run (docs/operations.md).

use proptest::prelude::*;
use serde_json::{Value, json};

use super::heartbeat::{Heartbeat, HeartbeatError};
use super::plugins::value;
use super::replay::{PopReply, ReplayRequest, StatusRequest};
use super::tenants::{Pause, parse};
use crate::admin::Scope;
use crate::config::Config;
use crate::tenants::{TenantSettings, Tenants};

/// Any JSON value, a few levels deep.
fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        any::<String>().prop_map(Value::from),
        "[a-z0-9._-]{0,12}".prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,10}", inner, 0..4).prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every path to a value inside `v` (object keys and array indexes).
fn paths(v: &Value, prefix: Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let mut p = prefix.clone();
                p.push(Value::from(k.clone()));
                paths(x, p, out);
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                let mut p = prefix.clone();
                p.push(Value::from(i));
                paths(x, p, out);
            }
        }
        _ => {}
    }
    out.push(prefix);
}

fn at<'a>(v: &'a mut Value, path: &[Value]) -> &'a mut Value {
    path.iter().fold(v, |v, k| match k {
        Value::String(k) => &mut v[k.as_str()],
        _ => &mut v[k.as_u64().unwrap_or(0) as usize],
    })
}

/// Bytes a NATS value might hold: arbitrary ones, or `valid` with one value
/// (or a new field) replaced by any JSON.
fn mutated(valid: Value) -> impl Strategy<Value = Vec<u8>> {
    let mut all = Vec::new();
    paths(&valid, Vec::new(), &mut all);
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..120),
        4 => (prop::sample::select(all), any_json(), proptest::option::of("[a-z_]{1,10}")).prop_map(move |(path, new, field)| {
            let mut v = valid.clone();
            let slot = at(&mut v, &path);
            match (field, slot.as_object_mut()) {
                (Some(f), Some(m)) => {
                    m.insert(f, new);
                }
                _ => *slot = new,
            }
            serde_json::to_vec(&v).expect("JSON values serialise")
        }),
    ]
}

fn tenants() -> std::sync::Arc<Tenants> {
    Tenants::from_config(&Config::from_toml("[[tenants]]\nid = \"local\"\n").expect("config"))
}

fn tenant_settings() -> Value {
    json!({"plugin_timeout_ms": 50, "plugin_memory_mb": 8, "on_plugin_error": "reject", "config": {"secret": "s"}})
}

proptest! {
    #![proptest_config(crate::config::fuzz::fuzz_config(512))]

    /// `tenants.<id>`: applied only when the id and every setting are valid.
    #[test]
    fn fleet_fuzz_tenant_values(id in prop_oneof!["[a-z0-9._-]{1,10}", any::<String>(), Just("local".to_string())], value in mutated(tenant_settings())) {
        let tenants = tenants();
        let result = parse::<TenantSettings>(&value).and_then(|s| tenants.upsert_fleet(&id, &s).map_err(|e| e.to_string()));
        match result {
            Ok(_) => prop_assert!(tenants.contains(&id)),
            Err(reason) => {
                prop_assert!(!reason.is_empty());
                prop_assert!(id != "local" || tenants.get("local").is_some(), "a local tenant survives");
            }
        }
    }

    /// `paused.<id>`: a boolean under `paused`, nothing else.
    #[test]
    fn fleet_fuzz_pause_values(value in mutated(json!({"paused": true}))) {
        if let Err(reason) = parse::<Pause>(&value) {
            prop_assert!(!reason.is_empty());
        }
    }

    /// Heartbeats: everything shown or compared later is checked.
    #[test]
    fn fleet_fuzz_heartbeats(value in mutated(serde_json::to_value(super::heartbeat::tests::sample("fra1")).expect("json"))) {
        match Heartbeat::parse("fra1", &value) {
            Ok(hb) => prop_assert_eq!(hb.pop, "fra1"),
            Err(e) => {
                prop_assert!(!e.to_string().is_empty());
                prop_assert!(!matches!(&e, HeartbeatError::Json(m) | HeartbeatError::Invalid(m) if m.is_empty()));
            }
        }
    }

    /// Replay commands: a parsed one's filter is accepted or refused with a 400.
    #[test]
    fn fleet_fuzz_replay_commands(value in mutated(json!({"format": 1, "request_id": "r1-abc", "replay": {"tenant": "acme", "state": "dead", "since": "2026-11-24T02:49:51Z", "until": 5, "ids": ["x"], "dry_run": true, "max_per_sec": 3}}))) {
        match ReplayRequest::parse(&value) {
            Ok(r) => {
                prop_assert!(crate::config::validate_nats_name(&r.request_id).is_ok());
                if let Err(resp) = r.replay.to_filter(&Scope::Operator) {
                    prop_assert_eq!(resp.status(), http::StatusCode::BAD_REQUEST);
                }
            }
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    #[test]
    fn fleet_fuzz_status_commands_and_replies(
        status in mutated(json!({"format": 1, "request_id": "r1", "jobs": {"fra1": 12}})),
        reply in mutated(json!({"format": 1, "request_id": "r1", "pop": "fra1", "state": "done", "job": 3, "matched": 1, "replayed": 1, "not_pending": 0, "skipped": 0, "error": null})),
    ) {
        if let Err(reason) = StatusRequest::parse(&status) {
            prop_assert!(!reason.is_empty());
        }
        match PopReply::parse(&reply, "r1") {
            Ok(r) => prop_assert!(crate::config::validate_nats_name(&r.pop).is_ok() && super::replay::STATES.contains(&r.state.as_str())),
            Err(reason) => prop_assert!(!reason.is_empty()),
        }
    }

    /// Plugin pointers and the keys they sit under.
    #[test]
    fn fleet_fuzz_plugin_pointers(
        key in prop_oneof!["plugins\\.[a-z0-9._-]{0,70}", any::<String>()],
        pointer in mutated(json!({"sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", "size": 10, "uploaded_at_ms": 1, "by": "cli:ops"})),
    ) {
        match value::tenant_of(&key) {
            Ok(t) => prop_assert!(crate::config::validate_label(t).is_ok()),
            Err(e) => prop_assert!(!e.to_string().is_empty() && e.reason() == "invalid_key"),
        }
        match value::parse(&pointer, 1 << 20) {
            Ok(p) => prop_assert!(value::check_sha256(&p.sha256).is_ok() && p.size > 0 && p.size <= 1 << 20),
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
    }
}
