//! The fleet tests' `nats-server` (the `weir-natsd` crate, shared with
//! `weir-bench`), panicking where a test cannot go on, plus a client.

use std::ops::{Deref, DerefMut};

pub struct NatsServer(weir_natsd::NatsServer);

impl NatsServer {
    /// Starts a server with JetStream on a free loopback port.
    pub fn start() -> NatsServer {
        NatsServer::start_with_config(None)
    }

    /// Starts with `config` (nats-server's config syntax) added.
    pub fn start_with_config(config: Option<&str>) -> NatsServer {
        NatsServer(weir_natsd::NatsServer::start(config).unwrap_or_else(|e| panic!("{e}")))
    }

    /// Starts again on the same port and store directory (after `down`).
    pub fn up(&mut self) {
        self.0.up().unwrap_or_else(|e| panic!("{e}"));
    }

    /// A client for the test itself.
    pub async fn client(&self) -> async_nats::Client {
        async_nats::connect(self.url()).await.expect("connect to the test nats-server")
    }
}

impl Deref for NatsServer {
    type Target = weir_natsd::NatsServer;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for NatsServer {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

pub fn nats_server_bin() -> std::path::PathBuf {
    weir_natsd::binary().unwrap_or_else(|e| panic!("{e}"))
}
