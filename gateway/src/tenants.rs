//! The tenant directory: which tenants this gateway serves and with which
//! settings. The one owner of that set: ingest, the admin API, the plugin
//! host and the forwarder all read it here, so a tenant the fleet adds
//! (`fleet/tenants.rs`) is served everywhere at once.
//!
//! Tenants come from two places: the config file's `[[tenants]]` (local:
//! fixed for the process's life, and they win over a fleet entry of the same
//! id) and the fleet's control bucket (added, changed and removed at run
//! time). Readers take a snapshot (`Arc`) and never hold a lock across an
//! await.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{Semaphore, watch};

use crate::config::{Config, MAX_PLUGIN_MEMORY_MB, OnPluginError, TenantConfig, validate_label};

/// Where a tenant was declared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Local,
    Fleet,
}

/// What the fleet may set for a tenant: its plugin settings. Tokens, plugin
/// files and everything secret stay local.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TenantSettings {
    pub plugin_timeout_ms: u64,
    pub plugin_memory_mb: u64,
    pub on_plugin_error: OnPluginError,
    pub config: BTreeMap<String, String>,
}

impl Default for TenantSettings {
    fn default() -> Self {
        let d = TenantConfig::default();
        TenantSettings {
            plugin_timeout_ms: d.plugin_timeout_ms,
            plugin_memory_mb: d.plugin_memory_mb,
            on_plugin_error: d.on_plugin_error,
            config: BTreeMap::new(),
        }
    }
}

/// Largest plugin `config` map the fleet may hand a tenant (keys and values together).
pub const MAX_FLEET_CONFIG_BYTES: usize = 64 * 1024;

impl TenantSettings {
    /// The bounds `[[tenants]]` has, plus a size cap on `config` (it comes from
    /// the network): the problem in a sentence, or Ok.
    pub fn validate(&self, pool_memory_mb: u64) -> Result<(), String> {
        if !(1..=60_000).contains(&self.plugin_timeout_ms) {
            return Err(format!("plugin_timeout_ms must be between 1 and 60000; got {}", self.plugin_timeout_ms));
        }
        if !(1..=MAX_PLUGIN_MEMORY_MB).contains(&self.plugin_memory_mb) {
            return Err(format!("plugin_memory_mb must be between 1 and {MAX_PLUGIN_MEMORY_MB}; got {}", self.plugin_memory_mb));
        }
        if self.plugin_memory_mb > pool_memory_mb {
            return Err(format!(
                "plugin_memory_mb {} is more than this PoP's plugin pool gives an instance ({pool_memory_mb} MiB, the largest of its \
                 local tenants' plugin_memory_mb or plugins.fleet_memory_mb)",
                self.plugin_memory_mb
            ));
        }
        let size: usize = self.config.iter().map(|(k, v)| k.len() + v.len()).sum();
        if size > MAX_FLEET_CONFIG_BYTES {
            return Err(format!("config holds {size} bytes; at most {MAX_FLEET_CONFIG_BYTES} are accepted"));
        }
        Ok(())
    }
}

/// One tenant as the gateway runs it.
#[derive(Debug)]
pub struct Tenant {
    pub id: String,
    pub origin: Origin,
    pub plugin_timeout: Duration,
    pub plugin_memory_bytes: u64,
    pub on_plugin_error: OnPluginError,
    /// Strings handed to the plugin through the `config` import.
    pub plugin_config: Arc<BTreeMap<String, String>>,
    /// At most half the plugin pool per tenant, so the others always have
    /// room. Kept across settings changes: a change never frees extra slots.
    pub plugin_slots: Arc<Semaphore>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TenantError {
    #[error("tenant id {0}")]
    InvalidId(String),
    #[error("tenant {tenant:?}: {reason}")]
    InvalidSettings { tenant: String, reason: String },
    #[error("tenant {0:?} is declared in this PoP's config file, which wins over the fleet's entry")]
    Local(String),
}

/// What a fleet change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    Added,
    Changed,
    Unchanged,
    Removed,
    Absent,
}

type Map = HashMap<String, Arc<Tenant>>;

pub struct Tenants {
    current: RwLock<Arc<Map>>,
    /// Bumped on every change, for those who react to new tenants.
    changes: watch::Sender<u64>,
    per_tenant_slots: usize,
    pool_memory_mb: u64,
}

impl Tenants {
    /// The config file's tenants. `per_tenant_slots` is each tenant's share of
    /// the plugin pool; `pool_memory_mb` what one instance may grow to.
    pub fn from_config(config: &Config) -> Arc<Tenants> {
        let per_tenant_slots = (config.plugins.concurrency as usize / 2).max(1);
        let map = config.tenants.iter().map(|t| (t.id.clone(), Arc::new(local(t, per_tenant_slots)))).collect();
        Arc::new(Tenants {
            current: RwLock::new(Arc::new(map)),
            changes: watch::channel(0).0,
            per_tenant_slots,
            pool_memory_mb: pool_memory_mb(config),
        })
    }

    pub fn get(&self, id: &str) -> Option<Arc<Tenant>> {
        self.snapshot().get(id).cloned()
    }

    pub fn contains(&self, id: &str) -> bool {
        self.snapshot().contains_key(id)
    }

    /// Every tenant id, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.snapshot().keys().cloned().collect();
        ids.sort();
        ids
    }

    pub fn snapshot(&self) -> Arc<Map> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Changes whenever the set or a tenant's settings change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Adds or changes a fleet tenant. A local tenant of the same id is left
    /// as it is (`TenantError::Local`); bad settings change nothing.
    pub fn upsert_fleet(&self, id: &str, settings: &TenantSettings) -> Result<Applied, TenantError> {
        validate_label(id).map_err(TenantError::InvalidId)?;
        settings.validate(self.pool_memory_mb).map_err(|reason| TenantError::InvalidSettings { tenant: id.to_string(), reason })?;
        self.update(|map| {
            let old = map.get(id);
            if let Some(old) = old {
                if old.origin == Origin::Local {
                    return Err(TenantError::Local(id.to_string()));
                }
                if same_settings(old, settings) {
                    return Ok(Applied::Unchanged);
                }
            }
            let slots = old.map_or_else(|| Arc::new(Semaphore::new(self.per_tenant_slots)), |o| o.plugin_slots.clone());
            let applied = if old.is_some() { Applied::Changed } else { Applied::Added };
            map.insert(id.to_string(), Arc::new(fleet(id, settings, slots)));
            Ok(applied)
        })
    }

    /// Removes a fleet tenant (a local one stays). Its stored triggers stay
    /// and are still forwarded; new ones are refused as for any unknown tenant.
    pub fn remove_fleet(&self, id: &str) -> Result<Applied, TenantError> {
        self.update(|map| match map.get(id).map(|t| t.origin) {
            None => Ok(Applied::Absent),
            Some(Origin::Local) => Err(TenantError::Local(id.to_string())),
            Some(Origin::Fleet) => {
                map.remove(id);
                Ok(Applied::Removed)
            }
        })
    }

    /// Copy-on-write: readers keep the snapshot they hold.
    fn update(&self, f: impl FnOnce(&mut Map) -> Result<Applied, TenantError>) -> Result<Applied, TenantError> {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        let mut map = (**guard).clone();
        let applied = f(&mut map)?;
        if !matches!(applied, Applied::Unchanged | Applied::Absent) {
            *guard = Arc::new(map);
            drop(guard);
            self.changes.send_modify(|v| *v += 1);
        }
        Ok(applied)
    }
}

/// The memory a plugin instance of the pool may grow to: the largest local
/// tenant's, or `plugins.fleet_memory_mb` when the fleet asks for more.
pub fn pool_memory_mb(config: &Config) -> u64 {
    let local = config.tenants.iter().map(|t| t.plugin_memory_mb).max().unwrap_or(TenantConfig::default().plugin_memory_mb);
    local.max(config.plugins.fleet_memory_mb)
}

fn local(t: &TenantConfig, per_tenant_slots: usize) -> Tenant {
    Tenant {
        id: t.id.clone(),
        origin: Origin::Local,
        plugin_timeout: Duration::from_millis(t.plugin_timeout_ms),
        plugin_memory_bytes: t.plugin_memory_mb * 1024 * 1024,
        on_plugin_error: t.on_plugin_error,
        plugin_config: Arc::new(t.config.clone()),
        plugin_slots: Arc::new(Semaphore::new(per_tenant_slots)),
    }
}

fn fleet(id: &str, s: &TenantSettings, slots: Arc<Semaphore>) -> Tenant {
    Tenant {
        id: id.to_string(),
        origin: Origin::Fleet,
        plugin_timeout: Duration::from_millis(s.plugin_timeout_ms),
        plugin_memory_bytes: s.plugin_memory_mb * 1024 * 1024,
        on_plugin_error: s.on_plugin_error,
        plugin_config: Arc::new(s.config.clone()),
        plugin_slots: slots,
    }
}

fn same_settings(t: &Tenant, s: &TenantSettings) -> bool {
    t.plugin_timeout == Duration::from_millis(s.plugin_timeout_ms)
        && t.plugin_memory_bytes == s.plugin_memory_mb * 1024 * 1024
        && t.on_plugin_error == s.on_plugin_error
        && *t.plugin_config == s.config
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenants() -> Arc<Tenants> {
        let config = Config { tenants: vec![TenantConfig { id: "acme".into(), ..TenantConfig::default() }], ..Config::default() };
        Tenants::from_config(&config)
    }

    #[test]
    fn the_fleet_adds_changes_and_removes_its_tenants_and_readers_keep_their_snapshot() {
        let t = tenants();
        let mut changes = t.subscribe();
        let before = t.snapshot();
        assert_eq!(t.upsert_fleet("globex", &TenantSettings::default()), Ok(Applied::Added));
        assert!(changes.has_changed().expect("sender alive"));
        changes.mark_unchanged();
        assert!(!before.contains_key("globex"), "a snapshot taken before is not changed under its reader");
        assert_eq!(t.ids(), vec!["acme", "globex"]);
        assert_eq!(t.upsert_fleet("globex", &TenantSettings::default()), Ok(Applied::Unchanged));
        assert!(!changes.has_changed().expect("sender alive"), "no change, no wake-up");
        let slots = t.get("globex").expect("globex").plugin_slots.clone();
        let more = TenantSettings { plugin_timeout_ms: 200, ..TenantSettings::default() };
        assert_eq!(t.upsert_fleet("globex", &more), Ok(Applied::Changed));
        let g = t.get("globex").expect("globex");
        assert_eq!(g.plugin_timeout, Duration::from_millis(200));
        assert!(Arc::ptr_eq(&slots, &g.plugin_slots), "a settings change keeps the tenant's plugin slots");
        assert_eq!(t.remove_fleet("globex"), Ok(Applied::Removed));
        assert_eq!(t.remove_fleet("globex"), Ok(Applied::Absent));
        assert!(!t.contains("globex"));
    }

    #[test]
    fn a_local_tenant_wins_and_bad_fleet_values_change_nothing() {
        let t = tenants();
        assert_eq!(t.upsert_fleet("acme", &TenantSettings::default()), Err(TenantError::Local("acme".into())));
        assert_eq!(t.remove_fleet("acme"), Err(TenantError::Local("acme".into())));
        assert_eq!(t.get("acme").expect("acme").origin, Origin::Local);
        for bad in [
            TenantSettings { plugin_timeout_ms: 0, ..TenantSettings::default() },
            TenantSettings { plugin_memory_mb: 4096, ..TenantSettings::default() },
            TenantSettings { plugin_memory_mb: 64, ..TenantSettings::default() },
            TenantSettings { config: [("k".to_string(), "v".repeat(MAX_FLEET_CONFIG_BYTES))].into(), ..TenantSettings::default() },
        ] {
            assert!(matches!(t.upsert_fleet("globex", &bad), Err(TenantError::InvalidSettings { .. })), "{bad:?}");
        }
        assert!(matches!(t.upsert_fleet("a b", &TenantSettings::default()), Err(TenantError::InvalidId(_))));
        assert_eq!(t.ids(), vec!["acme"]);
    }

    #[test]
    fn fleet_settings_refuse_unknown_keys() {
        let err = serde_json::from_str::<TenantSettings>(r#"{"plugin_timeout_ms": 10, "token": "x"}"#).expect_err("unknown key");
        assert!(err.to_string().contains("token"), "{err}");
        let s: TenantSettings = serde_json::from_str(r#"{"config": {"secret": "s"}}"#).expect("defaults fill the rest");
        assert_eq!(s.plugin_timeout_ms, 50);
    }
}
