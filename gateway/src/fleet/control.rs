//! The fleet's control buckets in JetStream: the control KV bucket
//! (`tenants.*`, `plugins.*`, `paused.*`) and the plugins Object Store
//! (components named by sha256). Weir creates each when it is missing; a
//! PoP whose credentials may not create them uses what exists and says so.

use async_nats::jetstream::{self, kv, object_store};

use super::FleetError;
use crate::config::FleetConfig;

/// History kept per control key: what `weir plugin rollback --fleet` can go back to.
pub const CONTROL_HISTORY: i64 = 16;

/// The control KV bucket, created (history [`CONTROL_HISTORY`]) when missing.
pub async fn control_bucket(js: &jetstream::Context, f: &FleetConfig) -> Result<kv::Store, FleetError> {
    let bucket = &f.control_bucket;
    let found = match js.get_key_value(bucket.as_str()).await {
        Ok(kv) => return Ok(kv),
        Err(e) => e,
    };
    let config =
        kv::Config { bucket: bucket.clone(), description: "Weir fleet control".into(), history: CONTROL_HISTORY, ..Default::default() };
    match js.create_key_value(config).await {
        Ok(kv) => {
            tracing::info!(bucket = %bucket, history = CONTROL_HISTORY, "created the fleet control bucket");
            Ok(kv)
        }
        Err(e) => Err(FleetError::Bucket(missing(bucket, "fleet.control_bucket", "KV bucket", &found, &e))),
    }
}

/// The plugins Object Store bucket, created when missing.
pub async fn plugins_bucket(js: &jetstream::Context, f: &FleetConfig) -> Result<object_store::ObjectStore, FleetError> {
    let bucket = &f.plugins_bucket;
    let found = match js.get_object_store(bucket.as_str()).await {
        Ok(os) => return Ok(os),
        Err(e) => e,
    };
    let config = object_store::Config {
        bucket: bucket.clone(),
        description: Some("Weir plugin components, by sha256".into()),
        ..Default::default()
    };
    match js.create_object_store(config).await {
        Ok(os) => {
            tracing::info!(bucket = %bucket, "created the fleet plugins bucket");
            Ok(os)
        }
        Err(e) => Err(FleetError::Bucket(missing(bucket, "fleet.plugins_bucket", "Object Store bucket", &found, &e))),
    }
}

/// Why a bucket could not be had: neither opened nor created. A refusal to
/// create usually means this PoP's credentials are read-only, as they should be.
fn missing(bucket: &str, key: &str, kind: &str, get: &dyn std::fmt::Display, create: &dyn std::fmt::Display) -> String {
    format!(
        "the {kind} {bucket:?} ({key}) could not be opened ({get}) nor created ({create}); \
         create it with an account allowed to, or check that NATS is reachable and has JetStream"
    )
}
