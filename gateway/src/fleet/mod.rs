//! The fleet: many PoPs run as one system over NATS JetStream
//! (`docs/fleet.md`). Nothing here is needed to accept a trigger: a PoP that
//! cannot reach NATS keeps serving, and `/healthz` and `/readyz` never look
//! at it.
//!
//! `connect` builds the one connection (credentials, TLS, reconnection with
//! jitter). The forwarder publishes triggers on it (`jetstream:` upstreams).
//! `control` opens (or creates) the control buckets; `plugins` makes the
//! fleet's plugin versions this PoP's, and publishes new ones.

pub mod connect;
pub mod control;
pub mod plugins;

use async_nats::jetstream;

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
}

impl Fleet {
    /// Connects in the background: returns at once whether or not NATS is up.
    pub async fn start(config: &FleetConfig) -> Result<Fleet, FleetError> {
        let client = connect::background(config).await?;
        let jetstream = jetstream::new(client.clone());
        Ok(Fleet { config: config.clone(), client, jetstream })
    }

    /// Whether the connection is up right now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }
}
