//! Heartbeats: every `heartbeat_interval_ms` this PoP writes its state to the
//! heartbeats KV bucket under its own key (`pop`), and `weir fleet status`
//! reads them all back. [`Heartbeat`] is the one definition of that record:
//! the writer here serialises it, the reader (`fleet/status.rs`) parses and
//! validates it as untrusted input.
//!
//! The writer never stands in anybody's way: it runs in its own task, skips
//! (and counts) a beat when NATS is down or slow instead of queueing it, and
//! stops at shutdown after one last best-effort beat that says so.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use serde::{Deserialize, Serialize};

use super::Fleet;
use crate::forward::Forwarder;
use crate::plugin::PluginHost;
use crate::shutdown::{Shutdown, Tasks};
use crate::store::Store;

/// The version of the heartbeat record; readers refuse others.
pub const FORMAT: u32 = 1;
/// Most rejected control values one heartbeat lists (the PoP keeps at most 64).
pub const MAX_REJECTED: usize = 256;
/// A heartbeat larger than this is refused by readers (NATS' default max payload is 1 MiB).
pub const MAX_BYTES: usize = 512 * 1024;
/// Longest text a reader accepts in one field (an error message, an upstream URL).
pub const MAX_TEXT: usize = 2048;

/// What one PoP says about itself. Field names are the JSON the bucket holds
/// (documented in docs/fleet.md); new fields are added with `serde(default)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub format: u32,
    pub pop: String,
    /// Weir's version (`CARGO_PKG_VERSION`).
    pub version: String,
    pub started_at_ms: u64,
    pub uptime_ms: u64,
    /// When the PoP built this beat (its own clock).
    pub sent_at_ms: u64,
    /// The PoP's `heartbeat_interval_ms`: a reader calls it stale after 3 × this.
    pub interval_ms: u64,
    /// The last beat of a graceful shutdown.
    #[serde(default)]
    pub stopping: bool,
    /// What `/readyz` would answer (store writable, budget, free-space reserve).
    pub ready: bool,
    /// Pending triggers.
    pub backlog: u64,
    pub oldest_pending_age_ms: Option<u64>,
    pub delivered_last_minute: u64,
    pub delivery_rate_per_sec: f64,
    pub upstreams: Vec<UpstreamBeat>,
    pub paused_tenants: Vec<String>,
    /// Every tenant this PoP knows and its active plugin (`null`: none).
    pub plugins: BTreeMap<String, Option<PluginBeat>>,
    /// True when `plugins` was left out to keep the beat under [`MAX_BYTES`].
    #[serde(default)]
    pub plugins_omitted: bool,
    /// Control values this PoP refused (a bad tenant entry, a fleet plugin it
    /// would not activate, ...): it keeps what it had.
    #[serde(default)]
    pub rejected: Vec<RejectedBeat>,
    pub disk: DiskBeat,
    /// Beats not written since this PoP started (NATS down or slow).
    pub heartbeats_skipped: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpstreamBeat {
    pub url: String,
    /// `healthy`, `degraded` or `open`.
    pub state: String,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginBeat {
    /// The PoP's local version number (they differ between PoPs; compare `sha256`).
    pub version: Option<u32>,
    /// The component's sha256; `null` when it could not be loaded.
    pub sha256: Option<String>,
    /// False when the plugin could not be loaded (its triggers are plugin failures).
    pub loaded: bool,
}

/// A control value a PoP refused (`fleet::Rejection`, as the heartbeat carries it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedBeat {
    /// The control bucket's key, e.g. `plugins.acme` or `tenants.acme`.
    pub key: String,
    pub revision: u64,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiskBeat {
    /// Bytes of live triggers (what `store.max_bytes` counts).
    pub used_bytes: u64,
    pub budget_bytes: u64,
    /// Size of the store files.
    pub store_bytes: u64,
    /// Free bytes on the store's filesystem, and the reserve below which ingest refuses.
    pub free_bytes: u64,
    pub min_free_bytes: u64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum HeartbeatError {
    #[error("{0} bytes, more than the {MAX_BYTES} a heartbeat may have")]
    TooLarge(usize),
    #[error("not a heartbeat: {0}")]
    Json(String),
    #[error("heartbeat format {0}, this weir reads format {FORMAT}; upgrade weir")]
    Format(u32),
    #[error("{0}")]
    Invalid(String),
}

impl Heartbeat {
    /// Parses and checks a heartbeat read from the bucket under `key`: it
    /// is untrusted, so everything shown or compared later is checked here.
    pub fn parse(key: &str, bytes: &[u8]) -> Result<Heartbeat, HeartbeatError> {
        if bytes.len() > MAX_BYTES {
            return Err(HeartbeatError::TooLarge(bytes.len()));
        }
        let hb: Heartbeat = serde_json::from_slice(bytes).map_err(|e| HeartbeatError::Json(e.to_string()))?;
        if hb.format != FORMAT {
            return Err(HeartbeatError::Format(hb.format));
        }
        hb.validate(key).map_err(HeartbeatError::Invalid)?;
        Ok(hb)
    }

    fn validate(&self, key: &str) -> Result<(), String> {
        crate::config::validate_nats_name(&self.pop).map_err(|e| format!("pop {:?}: {e}", self.pop))?;
        if self.pop != key {
            return Err(format!("written under key {key:?} but names pop {:?}", self.pop));
        }
        if !(100..=600_000).contains(&self.interval_ms) {
            return Err(format!("interval_ms {} is outside 100..=600000", self.interval_ms));
        }
        if !self.delivery_rate_per_sec.is_finite() || self.delivery_rate_per_sec < 0.0 {
            return Err(format!("delivery_rate_per_sec {} is not a rate", self.delivery_rate_per_sec));
        }
        let short = |what: &str, s: &str| if s.len() > MAX_TEXT { Err(format!("{what} is longer than {MAX_TEXT} bytes")) } else { Ok(()) };
        short("version", &self.version)?;
        for u in &self.upstreams {
            short("an upstream url", &u.url)?;
            short("an upstream state", &u.state)?;
            short("an upstream error", u.last_error.as_deref().unwrap_or(""))?;
        }
        for t in self.paused_tenants.iter().chain(self.plugins.keys()) {
            short("a tenant id", t)?;
        }
        for p in self.plugins.values().flatten() {
            if let Some(sha) = &p.sha256
                && !is_sha256(sha)
            {
                return Err(format!("plugin sha256 {sha:?} is not 64 lower-case hex digits"));
            }
        }
        if self.rejected.len() > MAX_REJECTED {
            return Err(format!("more than {MAX_REJECTED} rejected control values"));
        }
        for r in &self.rejected {
            short("a rejected key", &r.key)?;
            short("a rejection reason", &r.reason)?;
        }
        Ok(())
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The owners a heartbeat reads from.
pub struct Sources {
    pub store: Store,
    pub forwarder: Forwarder,
    pub plugins: Arc<PluginHost>,
    /// Who this PoP serves right now.
    pub tenants: Arc<crate::tenants::Tenants>,
    pub max_body_bytes: u64,
}

/// Starts the heartbeat writer as a background task shutdown waits for.
pub fn spawn(fleet: Fleet, sources: Sources, metrics: Arc<crate::telemetry::Metrics>, shutdown: Shutdown, tasks: &Tasks) {
    tasks.spawn("fleet heartbeat", run(fleet, sources, metrics, shutdown));
}

async fn run(fleet: Fleet, sources: Sources, metrics: Arc<crate::telemetry::Metrics>, mut shutdown: Shutdown) {
    let every = Duration::from_millis(fleet.config.heartbeat_interval_ms);
    // One beat may take at most this long; a slow NATS costs skipped beats, never a queue of them.
    let limit = every.clamp(Duration::from_secs(1), Duration::from_secs(10));
    let started_at_ms = crate::admin::now_ms();
    let mut writer = Writer { fleet, bucket: None, failing: None };
    let mut skipped = 0u64;
    // The first beat one interval in: the connection is usually up by then.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tick.tick() => {}
        }
        let beat = gather(&writer.fleet, &sources, started_at_ms, skipped, false).await;
        match writer.put(&beat, limit).await {
            Ok(()) => metrics.fleet_heartbeat("sent"),
            Err(()) => {
                skipped += 1;
                metrics.fleet_heartbeat("skipped");
            }
        }
    }
    // The last beat says the PoP stopped on purpose; a crash leaves the
    // previous one to go stale. Best effort, within a short bound.
    let beat = gather(&writer.fleet, &sources, started_at_ms, skipped, true).await;
    let _ = writer.put(&beat, Duration::from_millis(500)).await;
}

/// Builds this PoP's heartbeat from the owners of each figure.
async fn gather(fleet: &Fleet, s: &Sources, started_at_ms: u64, skipped: u64, stopping: bool) -> Heartbeat {
    let now = crate::admin::now_ms();
    // A store that cannot be read shows as zeros (and `ready: false`), never as no heartbeat.
    let stats = s.store.stats().await.unwrap_or_default();
    let forward = s.forwarder.status();
    Heartbeat {
        format: FORMAT,
        pop: fleet.config.pop.clone(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        started_at_ms,
        uptime_ms: now.saturating_sub(started_at_ms),
        sent_at_ms: now,
        interval_ms: fleet.config.heartbeat_interval_ms,
        stopping,
        ready: s.store.not_ready_reason(s.max_body_bytes).is_none(),
        backlog: stats.pending,
        oldest_pending_age_ms: stats.oldest_pending_ms.map(|ms| now.saturating_sub(ms)),
        delivered_last_minute: forward.delivered_last_minute,
        delivery_rate_per_sec: forward.delivery_rate_per_sec,
        upstreams: forward
            .upstreams
            .iter()
            .map(|u| UpstreamBeat { url: clip(&u.url), state: u.state.to_string(), last_error: u.last_error.as_deref().map(clip) })
            .collect(),
        paused_tenants: forward.paused_tenants,
        plugins: plugins_by_tenant(s),
        plugins_omitted: false,
        rejected: fleet
            .rejections
            .list()
            .into_iter()
            .take(MAX_REJECTED)
            .map(|r| RejectedBeat { key: clip(&r.key), revision: r.revision, reason: clip(&r.reason) })
            .collect(),
        disk: DiskBeat {
            used_bytes: stats.used_bytes,
            budget_bytes: s.store.budget(),
            store_bytes: stats.file_bytes,
            free_bytes: s.store.free_bytes(),
            min_free_bytes: s.store.min_free_bytes(),
        },
        heartbeats_skipped: skipped,
    }
}

/// Every tenant served, with its active plugin or `None`.
fn plugins_by_tenant(s: &Sources) -> BTreeMap<String, Option<PluginBeat>> {
    let mut active = s.plugins.active_plugins();
    s.tenants
        .ids()
        .into_iter()
        .map(|t| {
            let plugin = active.remove(&t).map(|p| PluginBeat { version: p.version, sha256: p.sha256, loaded: p.loaded });
            (t, plugin)
        })
        .collect()
}

/// Keeps a text field within what readers accept.
fn clip(s: &str) -> String {
    if s.len() <= MAX_TEXT {
        return s.to_string();
    }
    let mut end = MAX_TEXT - 3;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The heartbeat's JSON, within [`MAX_BYTES`]: a PoP with very many tenants
/// leaves its per-tenant plugins out rather than writing nothing.
pub fn encode(hb: &Heartbeat) -> Vec<u8> {
    let bytes = serde_json::to_vec(hb).unwrap_or_default();
    if bytes.len() <= MAX_BYTES {
        return bytes;
    }
    let slim = Heartbeat { plugins: BTreeMap::new(), plugins_omitted: true, ..hb.clone() };
    serde_json::to_vec(&slim).unwrap_or_default()
}

/// Writes beats to the bucket, opening (or creating) it on first use.
struct Writer {
    fleet: Fleet,
    bucket: Option<kv::Store>,
    /// The reason beats are being skipped, logged once when it starts.
    failing: Option<String>,
}

impl Writer {
    /// One beat, within `limit`; `Err` when it was skipped (already logged).
    async fn put(&mut self, hb: &Heartbeat, limit: Duration) -> Result<(), ()> {
        let result = if self.fleet.connected() {
            match tokio::time::timeout(limit, self.try_put(hb)).await {
                Ok(r) => r,
                Err(_) => Err(format!("NATS did not acknowledge within {} ms", limit.as_millis())),
            }
        } else {
            Err("not connected to NATS".to_string())
        };
        match result {
            Ok(()) => {
                if self.failing.take().is_some() {
                    tracing::info!(bucket = %self.fleet.config.heartbeats_bucket, "fleet heartbeats are written again");
                }
                Ok(())
            }
            Err(reason) => {
                if self.failing.is_none() {
                    tracing::warn!(bucket = %self.fleet.config.heartbeats_bucket, reason = %reason,
                        "fleet heartbeat skipped; skipping until NATS takes them again (the gateway is unaffected)");
                }
                self.failing = Some(reason);
                Err(())
            }
        }
    }

    async fn try_put(&mut self, hb: &Heartbeat) -> Result<(), String> {
        let bucket = match &self.bucket {
            Some(b) => b,
            None => self.bucket.insert(open_bucket(&self.fleet.jetstream, &self.fleet.config).await?),
        };
        bucket.put(&hb.pop, encode(hb).into()).await.map(|_| ()).map_err(|e| format!("put: {e}"))
    }
}

/// The heartbeats bucket, created (TTL = `heartbeat_ttl_secs`, history 1)
/// when it does not exist. A PoP whose credentials may not create it waits
/// for an operator to (docs/fleet.md, Permissions).
pub async fn open_bucket(js: &jetstream::Context, f: &crate::config::FleetConfig) -> Result<kv::Store, String> {
    let name = &f.heartbeats_bucket;
    match js.get_key_value(name.as_str()).await {
        Ok(kv) => Ok(kv),
        Err(e) if stream_missing(&e) => js
            .create_key_value(kv::Config {
                bucket: name.clone(),
                description: "Weir PoP heartbeats (key = pop)".into(),
                history: 1,
                max_age: Duration::from_secs(f.heartbeat_ttl_secs),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("cannot create the heartbeats bucket {name:?}: {e}")),
        Err(e) => Err(format!("cannot open the heartbeats bucket {name:?}: {e}")),
    }
}

/// True when opening a bucket failed because its stream does not exist.
pub fn stream_missing(e: &jetstream::context::KeyValueError) -> bool {
    use async_nats::jetstream::ErrorCode;
    use async_nats::jetstream::context::{GetStreamError, GetStreamErrorKind};
    std::error::Error::source(e)
        .and_then(|s| s.downcast_ref::<GetStreamError>())
        .is_some_and(|g| matches!(g.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == ErrorCode::STREAM_NOT_FOUND))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(pop: &str) -> Heartbeat {
        Heartbeat {
            format: FORMAT,
            pop: pop.into(),
            version: "0.1.0".into(),
            started_at_ms: 1_000,
            uptime_ms: 5_000,
            sent_at_ms: 6_000,
            interval_ms: 2_000,
            stopping: false,
            ready: true,
            backlog: 3,
            oldest_pending_age_ms: Some(1_200),
            delivered_last_minute: 60,
            delivery_rate_per_sec: 1.0,
            upstreams: vec![UpstreamBeat { url: "http://up/".into(), state: "healthy".into(), last_error: None }],
            paused_tenants: vec![],
            plugins: BTreeMap::from([("acme".to_string(), None)]),
            plugins_omitted: false,
            rejected: Vec::new(),
            disk: DiskBeat { used_bytes: 10, budget_bytes: 100, store_bytes: 20, free_bytes: 1000, min_free_bytes: 10 },
            heartbeats_skipped: 0,
        }
    }

    #[test]
    fn a_heartbeat_round_trips_and_is_checked_against_its_key() {
        let hb = sample("fra1");
        let bytes = encode(&hb);
        assert_eq!(Heartbeat::parse("fra1", &bytes), Ok(hb));
        assert!(matches!(Heartbeat::parse("ams1", &bytes), Err(HeartbeatError::Invalid(m)) if m.contains("ams1")));
    }

    #[test]
    fn untrusted_heartbeats_are_refused_with_a_reason() {
        let bad = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = serde_json::to_value(sample("fra1")).expect("json");
            f(&mut v);
            Heartbeat::parse("fra1", &serde_json::to_vec(&v).expect("bytes")).expect_err("refused")
        };
        assert_eq!(bad(&|v| v["format"] = 2.into()), HeartbeatError::Format(2));
        assert!(matches!(bad(&|v| v["interval_ms"] = 0.into()), HeartbeatError::Invalid(_)));
        assert!(matches!(bad(&|v| v["pop"] = "fra 1".into()), HeartbeatError::Invalid(_)));
        assert!(matches!(bad(&|v| v["backlog"] = (-1).into()), HeartbeatError::Json(_)));
        assert!(matches!(
            bad(&|v| v["plugins"]["acme"] = serde_json::json!({"version":1,"sha256":"XYZ","loaded":true})),
            HeartbeatError::Invalid(_)
        ));
        assert!(matches!(bad(&|v| v["version"] = "x".repeat(MAX_TEXT + 1).into()), HeartbeatError::Invalid(_)));
        assert!(matches!(Heartbeat::parse("fra1", b"not json"), Err(HeartbeatError::Json(_))));
        assert!(matches!(Heartbeat::parse("fra1", &vec![b' '; MAX_BYTES + 1]), Err(HeartbeatError::TooLarge(_))));
    }

    #[test]
    fn a_heartbeat_too_large_for_the_bucket_leaves_its_plugins_out() {
        let mut hb = sample("fra1");
        for i in 0..20_000 {
            hb.plugins.insert(format!("tenant-{i:06}"), Some(PluginBeat { version: Some(1), sha256: Some("a".repeat(64)), loaded: true }));
        }
        let bytes = encode(&hb);
        assert!(bytes.len() <= MAX_BYTES);
        let back = Heartbeat::parse("fra1", &bytes).expect("valid");
        assert!(back.plugins_omitted && back.plugins.is_empty());
    }

    #[test]
    fn long_texts_are_clipped_on_a_char_boundary() {
        let s = "é".repeat(MAX_TEXT);
        let c = clip(&s);
        assert!(c.len() <= MAX_TEXT && c.ends_with("..."));
    }
}
