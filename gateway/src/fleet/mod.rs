//! The fleet: many PoPs run as one system over NATS JetStream
//! (`docs/fleet.md`). Nothing here is needed to accept a trigger: a PoP that
//! cannot reach NATS keeps serving, and `/healthz` and `/readyz` never look
//! at it.
//!
//! `connect` builds the one connection (credentials, TLS, reconnection with
//! jitter). The forwarder publishes triggers on it (`jetstream:` upstreams).
//! `tenants` applies fleet-wide tenants and pauses from the control bucket;
//! `control` opens (or creates) the control buckets; `plugins` makes the
//! fleet's plugin versions this PoP's, and publishes new ones.
//! `heartbeat` writes this PoP's state to the heartbeats bucket and defines
//! the record `status` reads back for `weir fleet status`; `replay` answers
//! fleet replay commands by running the local replay.

pub mod connect;
pub mod control;
#[cfg(test)]
mod fuzz;
pub mod heartbeat;
pub mod plugins;
pub mod replay;
pub mod status;
pub mod tenants;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream;
use rand::Rng;
use serde::Serialize;

use crate::config::FleetConfig;

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("config key `{key}`: {reason}")]
    Credentials { key: &'static str, reason: String },
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Bucket(String),
}

/// This PoP's connection to the fleet: one NATS client (it multiplexes
/// everything) and its JetStream context. Cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    pub config: FleetConfig,
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    /// Control values this PoP refused, for `/v1/status` and the heartbeat.
    pub rejections: Rejections,
}

impl Fleet {
    /// Connects in the background: returns at once whether or not NATS is up.
    pub async fn start(config: &FleetConfig) -> Result<Fleet, FleetError> {
        let client = connect::background(config).await?;
        let jetstream = jetstream::new(client.clone());
        Ok(Fleet { config: config.clone(), client, jetstream, rejections: Rejections::default() })
    }

    /// Whether the connection is up right now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// What `/v1/status` shows of the fleet.
    pub fn status(&self) -> FleetStatus {
        FleetStatus { pop: self.config.pop.clone(), connected: self.connected(), rejected: self.rejections.list() }
    }
}

/// Between `d / 2` and `d`: retries of many PoPs do not line up.
pub(crate) fn jitter(d: Duration) -> Duration {
    let ms = d.as_millis().max(2) as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// The `fleet` object of `/v1/status`.
#[derive(Debug, Clone, Serialize)]
pub struct FleetStatus {
    pub pop: String,
    /// Whether the NATS connection is up now (ingest never depends on it).
    pub connected: bool,
    /// Control values refused (bad JSON, invalid settings, unknown tenant...), newest state per key.
    pub rejected: Vec<Rejection>,
}

/// A control value this PoP refused, as `/v1/status` and the heartbeat show it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rejection {
    pub key: String,
    pub revision: u64,
    pub reason: String,
}

/// The control values currently refused, by key; a later value of the same
/// key that applies clears its entry. Bounded: the oldest entries go first.
#[derive(Clone, Default)]
pub struct Rejections(Arc<Mutex<BTreeMap<String, Rejection>>>);

/// Most refused keys listed at once.
const MAX_REJECTIONS: usize = 64;

impl Rejections {
    pub fn reject(&self, key: &str, revision: u64, reason: String) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key.to_string(), Rejection { key: key.to_string(), revision, reason });
        while map.len() > MAX_REJECTIONS {
            let oldest = map.values().min_by_key(|r| r.revision).map(|r| r.key.clone());
            match oldest {
                Some(k) => map.remove(&k),
                None => break,
            };
        }
    }

    pub fn clear(&self, key: &str) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    pub fn list(&self) -> Vec<Rejection> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }
}
