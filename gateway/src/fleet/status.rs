//! What `weir fleet status` concludes from the heartbeats bucket: one row
//! per PoP and the flags an operator must look at. Pure (the entries and
//! the time come in), so every rule is tested without NATS.
//!
//! The flags: a PoP is **stale** when its last heartbeat is older than
//! [`STALE_FACTOR`] × the interval it advertises, **stopped** when its last
//! beat said it was shutting down; **upstream_open** names a PoP with an
//! open breaker; **plugin_skew** names a tenant whose active component
//! (sha256, or none) differs between the live PoPs that know it;
//! **plugin_rejected** a PoP that refused a tenant's fleet plugin,
//! **control_rejected** one that refused another control value,
//! **plugin_unloaded** one that could not load a tenant's plugin; **not_ready** a PoP whose `/readyz` is 503;
//! **invalid_heartbeat** an entry that is not a valid heartbeat for its key;
//! **no_heartbeats** an empty bucket.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::heartbeat::{Heartbeat, PluginBeat};
use crate::cli::human::duration_ms;

/// A heartbeat older than this many intervals means the PoP is not writing.
pub const STALE_FACTOR: u64 = 3;
/// The version of the `--json` shape.
pub const FORMAT: u32 = 1;

/// One entry of the heartbeats bucket as read.
pub struct Entry {
    pub key: String,
    /// When NATS stored it (the server's clock, not the PoP's).
    pub stored_at_ms: u64,
    pub value: Vec<u8>,
}

/// The `--json` output of `weir fleet status` (docs/fleet.md).
#[derive(Debug, Serialize)]
pub struct FleetStatus {
    pub format: u32,
    pub now_ms: u64,
    pub pops: Vec<PopStatus>,
    pub invalid: Vec<Invalid>,
    pub skew: Vec<Skew>,
    pub flags: Vec<Flag>,
}

#[derive(Debug, Serialize)]
pub struct PopStatus {
    pub pop: String,
    /// Since NATS stored its last heartbeat.
    pub age_ms: u64,
    pub stale_after_ms: u64,
    /// `ok`, `stale` or `stopped`.
    pub state: &'static str,
    pub open_upstreams: Vec<String>,
    pub heartbeat: Heartbeat,
}

#[derive(Debug, Serialize)]
pub struct Invalid {
    pub key: String,
    pub age_ms: u64,
    pub error: String,
}

/// A tenant whose active plugin differs between live PoPs.
#[derive(Debug, Serialize)]
pub struct Skew {
    pub tenant: String,
    /// Each live PoP that knows the tenant, and its plugin there (`null`: none).
    pub pops: BTreeMap<String, Option<PluginBeat>>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Flag {
    /// `stale`, `stopped`, `upstream_open`, `plugin_skew`, `plugin_rejected`,
    /// `control_rejected`, `plugin_unloaded`, `not_ready`, `invalid_heartbeat` or `no_heartbeats`.
    pub kind: &'static str,
    pub pop: Option<String>,
    pub tenant: Option<String>,
    pub message: String,
}

impl FleetStatus {
    pub fn flagged(&self) -> bool {
        !self.flags.is_empty()
    }
}

/// Most heartbeats read: more keys than this in the bucket is not a fleet of PoPs.
pub const MAX_ENTRIES: usize = 10_000;

/// Reads every heartbeat in the bucket (an empty list when the bucket does
/// not exist yet: no PoP has written one).
pub async fn read(js: &async_nats::jetstream::Context, bucket: &str) -> Result<Vec<Entry>, String> {
    use futures_util::StreamExt;
    let kv = match js.get_key_value(bucket).await {
        Ok(kv) => kv,
        Err(e) if super::heartbeat::stream_missing(&e) => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot open the heartbeats bucket {bucket:?}: {e}")),
    };
    let mut keys = kv.keys().await.map_err(|e| format!("cannot list the heartbeats bucket {bucket:?}: {e}"))?;
    let mut names = Vec::new();
    while let Some(key) = keys.next().await {
        names.push(key.map_err(|e| format!("cannot list the heartbeats bucket {bucket:?}: {e}"))?);
        if names.len() > MAX_ENTRIES {
            return Err(format!("the heartbeats bucket {bucket:?} holds more than {MAX_ENTRIES} keys; is it really Weir's?"));
        }
    }
    let mut entries = Vec::with_capacity(names.len());
    for key in names {
        let entry = kv.entry(key.as_str()).await.map_err(|e| format!("cannot read heartbeat {key:?}: {e}"))?;
        // Deleted or expired between the listing and the read: that PoP is gone.
        let Some(entry) = entry.filter(|e| e.operation == async_nats::jetstream::kv::Operation::Put) else { continue };
        let stored_at_ms = u64::try_from(entry.created.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        entries.push(Entry { key, stored_at_ms, value: entry.value.to_vec() });
    }
    Ok(entries)
}

/// The fleet as its heartbeats show it now: `weir fleet status` and
/// `GET /v1/fleet/pops` both read it here.
pub async fn current(js: &async_nats::jetstream::Context, bucket: &str) -> Result<FleetStatus, String> {
    let entries = read(js, bucket).await?;
    Ok(assess(entries, crate::admin::now_ms()))
}

/// Reads the bucket's entries at `now_ms` into rows and flags.
pub fn assess(entries: Vec<Entry>, now_ms: u64) -> FleetStatus {
    let mut pops = Vec::new();
    let mut invalid = Vec::new();
    let mut flags = Vec::new();
    for e in entries {
        let age_ms = now_ms.saturating_sub(e.stored_at_ms);
        match Heartbeat::parse(&e.key, &e.value) {
            Ok(hb) => pops.push(pop_status(hb, age_ms)),
            Err(err) => {
                flags.push(Flag { kind: "invalid_heartbeat", pop: None, tenant: None, message: format!("key {:?}: {err}", e.key) });
                invalid.push(Invalid { key: e.key, age_ms, error: err.to_string() });
            }
        }
    }
    pops.sort_by(|a, b| a.pop.cmp(&b.pop));
    if pops.is_empty() && invalid.is_empty() {
        flags.push(Flag {
            kind: "no_heartbeats",
            pop: None,
            tenant: None,
            message: "no PoP has written a heartbeat (none running, or none reaches NATS)".into(),
        });
    }
    for p in &pops {
        flags.extend(pop_flags(p));
    }
    let skew = skew(&pops);
    for s in &skew {
        let versions: Vec<String> = s.pops.iter().map(|(pop, p)| format!("{pop}: {}", plugin_text(p.as_ref()))).collect();
        flags.push(Flag {
            kind: "plugin_skew",
            pop: None,
            tenant: Some(s.tenant.clone()),
            message: format!("tenant {} runs different plugins: {}", s.tenant, versions.join(", ")),
        });
    }
    FleetStatus { format: FORMAT, now_ms, pops, invalid, skew, flags }
}

fn pop_status(hb: Heartbeat, age_ms: u64) -> PopStatus {
    let stale_after_ms = hb.interval_ms.saturating_mul(STALE_FACTOR);
    let state = if hb.stopping {
        "stopped"
    } else if age_ms > stale_after_ms {
        "stale"
    } else {
        "ok"
    };
    let open_upstreams = hb.upstreams.iter().filter(|u| u.state == "open").map(|u| u.url.clone()).collect();
    PopStatus { pop: hb.pop.clone(), age_ms, stale_after_ms, state, open_upstreams, heartbeat: hb }
}

fn pop_flags(p: &PopStatus) -> Vec<Flag> {
    let flag = |kind, tenant: Option<&String>, message: String| Flag { kind, pop: Some(p.pop.clone()), tenant: tenant.cloned(), message };
    let mut out = Vec::new();
    match p.state {
        "stale" => out.push(flag(
            "stale",
            None,
            format!(
                "{}: last heartbeat {} ago (it beats every {}; stale after {})",
                p.pop,
                duration_ms(p.age_ms),
                duration_ms(p.heartbeat.interval_ms),
                duration_ms(p.stale_after_ms)
            ),
        )),
        "stopped" => out.push(flag("stopped", None, format!("{}: shut down {} ago", p.pop, duration_ms(p.age_ms)))),
        _ => {}
    }
    if p.state != "ok" {
        // What a PoP that is not running said last is history, not a current problem.
        return out;
    }
    if !p.open_upstreams.is_empty() {
        out.push(flag("upstream_open", None, format!("{}: upstream open: {}", p.pop, p.open_upstreams.join(", "))));
    }
    if !p.heartbeat.ready {
        out.push(flag("not_ready", None, format!("{}: not ready (store not writable, over budget or low on disk)", p.pop)));
    }
    for r in &p.heartbeat.rejected {
        // `plugins.<tenant>` is a fleet plugin; `tenants.<tenant>`, `paused.<tenant>` the rest of the control bucket.
        let (kind, tenant) = match r.key.split_once('.') {
            Some(("plugins", t)) => ("plugin_rejected", Some(t.to_string())),
            Some((_, t)) => ("control_rejected", Some(t.to_string())),
            None => ("control_rejected", None),
        };
        out.push(flag(kind, tenant.as_ref(), format!("{}: refused {} (revision {}): {}", p.pop, r.key, r.revision, r.reason)));
    }
    for (tenant, plugin) in &p.heartbeat.plugins {
        if let Some(pl) = plugin
            && !pl.loaded
        {
            out.push(flag("plugin_unloaded", Some(tenant), format!("{}: tenant {tenant}'s plugin could not be loaded", p.pop)));
        }
    }
    out
}

/// Tenants whose plugin differs between the live PoPs that know them.
fn skew(pops: &[PopStatus]) -> Vec<Skew> {
    let mut by_tenant: BTreeMap<&str, BTreeMap<String, Option<PluginBeat>>> = BTreeMap::new();
    for p in pops.iter().filter(|p| p.state == "ok" && !p.heartbeat.plugins_omitted) {
        for (tenant, plugin) in &p.heartbeat.plugins {
            by_tenant.entry(tenant).or_default().insert(p.pop.clone(), plugin.clone());
        }
    }
    by_tenant
        .into_iter()
        .filter(|(_, pops)| {
            // Compared by content: local version numbers differ between PoPs.
            let distinct: BTreeSet<Option<&str>> =
                pops.values().map(|p| p.as_ref().map(|p| p.sha256.as_deref().unwrap_or("unloaded"))).collect();
            distinct.len() > 1
        })
        .map(|(tenant, pops)| Skew { tenant: tenant.to_string(), pops })
        .collect()
}

/// `v3 (1a2b3c4d)`, `v2 (not loaded)` or `none`.
pub fn plugin_text(p: Option<&PluginBeat>) -> String {
    match p {
        None => "none".into(),
        Some(p) => {
            let v = p.version.map_or("v?".to_string(), |v| format!("v{v}"));
            match &p.sha256 {
                Some(sha) => format!("{v} ({})", short_sha(sha)),
                None => format!("{v} (not loaded)"),
            }
        }
    }
}

fn short_sha(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::heartbeat::{RejectedBeat, UpstreamBeat, encode};

    fn sample(pop: &str) -> Heartbeat {
        crate::fleet::heartbeat::tests::sample(pop)
    }

    fn entry(hb: &Heartbeat, stored_at_ms: u64) -> Entry {
        Entry { key: hb.pop.clone(), stored_at_ms, value: encode(hb) }
    }

    fn kinds(s: &FleetStatus) -> Vec<(&'static str, Option<&str>, Option<&str>)> {
        s.flags.iter().map(|f| (f.kind, f.pop.as_deref(), f.tenant.as_deref())).collect()
    }

    fn plugin(sha: char, version: u32) -> Option<PluginBeat> {
        Some(PluginBeat { version: Some(version), sha256: Some(sha.to_string().repeat(64)), loaded: true })
    }

    #[test]
    fn a_healthy_fleet_raises_no_flag() {
        let s = assess(vec![entry(&sample("fra1"), 10_000), entry(&sample("ams1"), 9_000)], 10_500);
        assert_eq!(
            s.pops.iter().map(|p| (p.pop.as_str(), p.state, p.age_ms)).collect::<Vec<_>>(),
            [("ams1", "ok", 1_500), ("fra1", "ok", 500)]
        );
        assert!(!s.flagged(), "{:?}", s.flags);
    }

    #[test]
    fn a_pop_is_stale_past_three_of_its_own_intervals() {
        let mut slow = sample("slow");
        slow.interval_ms = 10_000;
        let entries = || vec![entry(&sample("fra1"), 0), entry(&slow, 0)];
        // fra1 beats every 2 s: 6 s is still fine, 6.001 s is stale; slow's 10 s interval gives it 30 s.
        assert!(!assess(entries(), 6_000).flagged());
        let s = assess(entries(), 6_001);
        assert_eq!(kinds(&s), [("stale", Some("fra1"), None)]);
        assert!(s.flags[0].message.contains("6.0 s ago"), "{}", s.flags[0].message);
        assert_eq!(kinds(&assess(entries(), 30_001)), [("stale", Some("fra1"), None), ("stale", Some("slow"), None)]);
    }

    #[test]
    fn a_pop_that_said_goodbye_is_stopped_not_stale_and_its_last_words_raise_nothing_else() {
        let mut hb = sample("fra1");
        hb.stopping = true;
        hb.ready = false;
        hb.upstreams[0].state = "open".into();
        let s = assess(vec![entry(&hb, 0)], 60_000);
        assert_eq!(kinds(&s), [("stopped", Some("fra1"), None)]);
    }

    #[test]
    fn open_upstreams_and_unready_pops_are_flagged() {
        let mut hb = sample("fra1");
        hb.upstreams.push(UpstreamBeat {
            url: "jetstream:weir.triggers.{tenant}".into(),
            state: "open".into(),
            last_error: Some("no stream".into()),
        });
        hb.ready = false;
        let s = assess(vec![entry(&hb, 0), entry(&sample("ams1"), 0)], 0);
        assert_eq!(kinds(&s), [("upstream_open", Some("fra1"), None), ("not_ready", Some("fra1"), None)]);
        assert_eq!(s.pops[1].open_upstreams, ["jetstream:weir.triggers.{tenant}"]);
    }

    #[test]
    fn plugin_skew_compares_content_among_live_pops_that_know_the_tenant() {
        let with = |pop: &str, p: Option<PluginBeat>| {
            let mut hb = sample(pop);
            hb.plugins = BTreeMap::from([("acme".to_string(), p)]);
            hb
        };
        // Same component under different local version numbers: no skew.
        let same = assess(vec![entry(&with("a", plugin('a', 1)), 0), entry(&with("b", plugin('a', 7)), 0)], 0);
        assert!(same.skew.is_empty() && !same.flagged(), "{:?}", same.flags);
        // One PoP on another component, one without any: skew, naming each.
        let s = assess(vec![entry(&with("a", plugin('a', 1)), 0), entry(&with("b", plugin('b', 2)), 0), entry(&with("c", None), 0)], 0);
        assert_eq!(kinds(&s), [("plugin_skew", None, Some("acme"))]);
        assert_eq!(s.skew[0].pops.len(), 3);
        assert!(s.flags[0].message.contains("b: v2 (bbbbbbbbbbbb)") && s.flags[0].message.contains("c: none"), "{}", s.flags[0].message);
        // A PoP that does not know the tenant at all is not skew.
        let mut other = sample("d");
        other.plugins.clear();
        assert!(assess(vec![entry(&with("a", plugin('a', 1)), 0), entry(&other, 0)], 0).skew.is_empty());
        // A stale PoP's last word does not count.
        let s = assess(vec![entry(&with("a", plugin('a', 1)), 10_000), entry(&with("b", plugin('b', 1)), 0)], 10_000);
        assert_eq!(kinds(&s), [("stale", Some("b"), None)]);
    }

    #[test]
    fn rejected_and_unloaded_plugins_are_flagged_per_pop_and_tenant() {
        let mut hb = sample("fra1");
        hb.rejected.push(RejectedBeat { key: "plugins.acme".into(), revision: 7, reason: "sha256 mismatch".into() });
        hb.rejected.push(RejectedBeat { key: "tenants.globex".into(), revision: 8, reason: "plugin_memory_mb too large".into() });
        hb.plugins.insert("globex".into(), Some(PluginBeat { version: Some(2), sha256: None, loaded: false }));
        let s = assess(vec![entry(&hb, 0)], 0);
        assert_eq!(
            kinds(&s),
            [
                ("plugin_rejected", Some("fra1"), Some("acme")),
                ("control_rejected", Some("fra1"), Some("globex")),
                ("plugin_unloaded", Some("fra1"), Some("globex"))
            ]
        );
        assert!(s.flags[0].message.contains("plugins.acme (revision 7): sha256 mismatch"), "{}", s.flags[0].message);
    }

    #[test]
    fn an_invalid_entry_is_listed_and_flagged_and_an_empty_bucket_is_flagged() {
        let forged = Entry { key: "ams1".into(), stored_at_ms: 0, value: encode(&sample("fra1")) };
        let s = assess(vec![forged, Entry { key: "x".into(), stored_at_ms: 0, value: b"{".to_vec() }], 0);
        assert_eq!(s.invalid.len(), 2);
        assert!(s.pops.is_empty());
        assert_eq!(kinds(&s), [("invalid_heartbeat", None, None), ("invalid_heartbeat", None, None)]);
        assert_eq!(kinds(&assess(vec![], 0)), [("no_heartbeats", None, None)]);
    }
}
