//! The NATS connection, built once from `[fleet]`: credentials, TLS with
//! Weir's own provider, reconnection backing off with jitter.
//!
//! The gateway connects in the background (`retry_on_initial_connect`): it
//! starts, serves and reports ready whether or not NATS answers. The CLI
//! connects in the foreground and fails fast with a sentence.

use std::time::Duration;

use async_nats::{Client, ConnectOptions};
use rand::Rng;

use super::FleetError;
use crate::config::FleetConfig;

/// Shortest wait before a reconnection attempt.
const RECONNECT_FIRST: Duration = Duration::from_millis(100);

/// The options every Weir connection to NATS uses.
async fn options(f: &FleetConfig, name: String) -> Result<ConnectOptions, FleetError> {
    let mut o = ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_millis(f.connect_timeout_ms))
        .max_reconnects(None)
        .reconnect_delay_callback(reconnect_delay(Duration::from_millis(f.reconnect_max_ms)));
    if let Some(token) = &f.token {
        o = o.token(token.clone());
    }
    if let (Some(user), Some(password)) = (&f.user, &f.password) {
        o = o.user_and_password(user.clone(), password.clone());
    }
    if let Some(path) = &f.creds_file {
        o = o
            .credentials_file(path)
            .await
            .map_err(|e| FleetError::Credentials { key: "fleet.creds_file", reason: format!("cannot read {}: {e}", path.display()) })?;
    }
    if let Some(path) = &f.nkey_seed_file {
        let seed = std::fs::read_to_string(path)
            .map_err(|e| FleetError::Credentials { key: "fleet.nkey_seed_file", reason: format!("cannot read {}: {e}", path.display()) })?;
        o = o.nkey(seed.trim().to_string());
    }
    let wants_tls = f.ca_file.is_some() || f.nats_urls.iter().any(|u| u.starts_with("tls://"));
    if wants_tls {
        let tls = crate::tls::upstream::client_tls(f.ca_file.as_deref().map(|p| ("fleet.ca_file", p)), None, "fleet")
            .map_err(|e| FleetError::Credentials { key: "fleet.ca_file", reason: e.to_string() })?;
        o = o.require_tls(true).tls_client_config(tls);
    }
    Ok(o)
}

/// Full jitter between the first wait and `cap`, doubling per attempt: a
/// fleet of PoPs that lost the hub does not come back at it in step.
fn reconnect_delay(cap: Duration) -> impl Fn(usize) -> Duration + Send + Sync + 'static {
    move |attempts| {
        let exp = RECONNECT_FIRST.saturating_mul(1u32 << attempts.min(16) as u32).min(cap).max(RECONNECT_FIRST);
        let millis = exp.as_millis() as u64;
        Duration::from_millis(rand::rng().random_range(millis / 2..=millis))
    }
}

fn servers(f: &FleetConfig) -> Result<Vec<async_nats::ServerAddr>, FleetError> {
    f.nats_urls
        .iter()
        .map(|u| {
            u.parse::<async_nats::ServerAddr>()
                .map_err(|e| FleetError::Credentials { key: "fleet.nats_urls", reason: format!("{u:?}: {e}") })
        })
        .collect()
}

/// The gateway's connection: returns at once, connects (and reconnects) in
/// the background. Only a bad setting (an unreadable credentials file) fails.
pub async fn background(f: &FleetConfig) -> Result<Client, FleetError> {
    let o = options(f, format!("weir-{}", f.pop)).await?.retry_on_initial_connect();
    o.connect(servers(f)?).await.map_err(|e| FleetError::Connect(e.to_string()))
}

/// A CLI's connection: one try within the connect timeout, or an error
/// naming the servers and the cause.
pub async fn foreground(f: &FleetConfig, name: &str) -> Result<Client, FleetError> {
    let o = options(f, name.to_string()).await?;
    let urls = f.nats_urls.join(", ");
    o.connect(servers(f)?).await.map_err(|e| FleetError::Connect(format!("cannot reach NATS at {urls}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_to_the_cap_with_jitter() {
        let delay = reconnect_delay(Duration::from_secs(5));
        for attempts in 0..40 {
            let d = delay(attempts);
            assert!(d >= RECONNECT_FIRST / 2 && d <= Duration::from_secs(5), "{attempts}: {d:?}");
        }
        // Past the cap the delay stays in [cap/2, cap].
        assert!(delay(30) >= Duration::from_millis(2500));
    }
}
