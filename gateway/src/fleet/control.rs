//! The fleet's control buckets in JetStream: the control KV bucket
//! (`tenants.*`, `plugins.*`, `paused.*`) and the plugins Object Store
//! (components named by sha256). Weir creates each when it is missing; a
//! PoP whose credentials may not create them uses what exists and says so.
//!
//! [`Follower`] is how a PoP reads a part of the control bucket: an ordered
//! consumer from the revision after the last one it applied (or, when the
//! bucket no longer holds that history or was recreated, every key's current
//! value), handing over batches coalesced per key once the backlog is read.
//! Both watchers (`tenants`, `plugins`) use it.

use std::collections::BTreeMap;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::{Ordered, OrderedConfig};
use async_nats::jetstream::{self, kv, object_store};
use bytes::Bytes;
use futures_util::StreamExt;

use super::{Fleet, FleetError};
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

/// One change read from the control bucket.
#[derive(Debug, Clone)]
pub struct Change {
    pub key: String,
    pub revision: u64,
    /// `None`: deleted or purged.
    pub value: Option<Bytes>,
}

/// Changes read together, in revision order, the last per key.
#[derive(Debug, Default)]
pub struct Batch {
    pub changes: Vec<Change>,
    /// Set (to the bucket's last revision) when the batch is every key's
    /// current value, a full re-read: a key it does not name has no value.
    pub resync: Option<u64>,
}

/// Reads the control bucket's keys under one prefix as batches (module docs).
pub struct Follower {
    messages: Ordered,
    prefix: String,
    /// Nothing was pending when the consumer was made: the first batch is empty.
    caught_up: bool,
    resync: Option<u64>,
}

impl Follower {
    /// Starts after revision `last` (0: never applied anything), on the keys
    /// starting with `key_prefix` (e.g. `"plugins."`); `who` names the consumer.
    pub async fn open(fleet: &Fleet, key_prefix: &str, last: u64, who: &str) -> Result<Follower, FleetError> {
        let kv = control_bucket(&fleet.jetstream, &fleet.config).await?;
        let mut stream = kv.stream.clone();
        let read = |e: &dyn std::fmt::Display| FleetError::Connect(format!("reading the control bucket: {e}"));
        let state = stream.info().await.map_err(|e| read(&e))?.state.clone();
        // Resuming needs every revision after `last` still in the bucket (its
        // history is bounded) and the same bucket (a recreated one restarts at 1).
        let resync = last == 0 || state.last_sequence < last || state.first_sequence > last + 1;
        let deliver_policy =
            if resync { DeliverPolicy::LastPerSubject } else { DeliverPolicy::ByStartSequence { start_sequence: last + 1 } };
        let consumer = stream
            .create_consumer(OrderedConfig {
                deliver_subject: fleet.client.new_inbox(),
                description: Some(format!("weir {} {who} watcher", fleet.config.pop)),
                filter_subject: format!("{}{key_prefix}>", kv.prefix),
                deliver_policy,
                replay_policy: jetstream::consumer::ReplayPolicy::Instant,
                ..Default::default()
            })
            .await
            .map_err(|e| read(&e))?;
        let caught_up = consumer.cached_info().num_pending == 0;
        // Not `Store::watch*`: on this client version a watch with nothing
        // pending ends at once instead of waiting for the next change.
        let messages = consumer.messages().await.map_err(|e| read(&e))?;
        Ok(Follower { messages, prefix: kv.prefix.clone(), caught_up, resync: resync.then_some(state.last_sequence) })
    }

    /// The next batch: waits for changes, reads until the backlog is empty.
    /// An error ends the follower (the caller opens a new one).
    pub async fn next(&mut self) -> Result<Batch, String> {
        let mut changes: BTreeMap<String, Change> = BTreeMap::new();
        if std::mem::take(&mut self.caught_up) {
            return Ok(Batch { changes: Vec::new(), resync: self.resync.take() });
        }
        loop {
            let message = match self.messages.next().await {
                Some(Ok(m)) => m,
                Some(Err(e)) => return Err(format!("reading the control bucket: {e}")),
                None => return Err("the control bucket watch ended".into()),
            };
            let info = message.info().map_err(|e| format!("reading the control bucket: {e}"))?;
            let (revision, left) = (info.stream_sequence, info.pending);
            let key = message.subject.as_str().strip_prefix(self.prefix.as_str()).unwrap_or(message.subject.as_str()).to_string();
            let deleted =
                message.headers.as_ref().and_then(|h| h.get("KV-Operation")).is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
            let value = (!deleted).then(|| message.payload.clone());
            changes.insert(key.clone(), Change { key, revision, value });
            // Hand over once the backlog is read: several changes to a key
            // while this PoP was away apply only the last.
            if left == 0 {
                let mut changes: Vec<Change> = changes.into_values().collect();
                changes.sort_by_key(|c| c.revision);
                return Ok(Batch { changes, resync: self.resync.take() });
            }
        }
    }
}
