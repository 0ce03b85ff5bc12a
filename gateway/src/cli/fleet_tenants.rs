//! `weir fleet tenant set|remove|list` and `weir fleet pause|resume`: the
//! control bucket's `tenants.<id>` and `paused.<id>` keys, written over NATS
//! (never through a PoP). A value is checked here with the rules every PoP
//! applies (`tenants::TenantSettings`), so a typo never reaches the fleet.

use std::collections::BTreeMap;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{CliError, print_json, table};
use crate::config::{FleetConfig, MAX_PLUGIN_MEMORY_MB, OnPluginError, validate_label};
use crate::tenants::TenantSettings;

/// A tenant's fleet settings as flags (unset: the `[[tenants]]` default).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct FleetTenantFlags {
    /// CPU-time budget of one plugin call, in ms (default 50)
    #[arg(long)]
    pub plugin_timeout_ms: Option<u64>,
    /// Linear memory a plugin instance may grow to, in MiB (default 32; at most each PoP's plugins.fleet_memory_mb)
    #[arg(long)]
    pub plugin_memory_mb: Option<u64>,
    /// What a plugin failure does: quarantine (default) or reject (503, nothing stored)
    #[arg(long, value_parser = ["quarantine", "reject"])]
    pub on_plugin_error: Option<String>,
    /// A string the plugin reads with config(key), as KEY=VALUE; repeat for more
    #[arg(long = "plugin-config", value_name = "KEY=VALUE")]
    pub plugin_config: Vec<String>,
}

impl FleetTenantFlags {
    fn settings(&self) -> Result<TenantSettings, CliError> {
        let mut s = TenantSettings::default();
        if let Some(v) = self.plugin_timeout_ms {
            s.plugin_timeout_ms = v;
        }
        if let Some(v) = self.plugin_memory_mb {
            s.plugin_memory_mb = v;
        }
        if let Some(v) = &self.on_plugin_error {
            s.on_plugin_error = if v == "reject" { OnPluginError::Reject } else { OnPluginError::Quarantine };
        }
        for kv in &self.plugin_config {
            let (k, v) = kv.split_once('=').ok_or_else(|| CliError::Usage(format!("--plugin-config {kv:?}: write KEY=VALUE")))?;
            s.config.insert(k.to_string(), v.to_string());
        }
        // Each PoP also holds it to its own pool (plugins.fleet_memory_mb); here, the absolute bounds.
        s.validate(MAX_PLUGIN_MEMORY_MB).map_err(CliError::Usage)?;
        Ok(s)
    }
}

const TENANTS: &str = "tenants.";
const PAUSED: &str = "paused.";

async fn bucket(f: &FleetConfig) -> Result<async_nats::jetstream::kv::Store, CliError> {
    let js = async_nats::jetstream::new(super::fleet::connect(f, "weir-cli").await?);
    crate::fleet::control::control_bucket(&js, f).await.map_err(|e| CliError::Failed(e.to_string()))
}

fn tenant_id(tenant: &str) -> Result<(), CliError> {
    validate_label(tenant).map_err(|m| CliError::Usage(format!("tenant id {m}")))
}

fn failed(what: &str) -> impl Fn(&dyn std::fmt::Display) -> CliError + '_ {
    move |e| CliError::Failed(format!("{what}: {e}"))
}

pub async fn fleet_tenant_set(f: &FleetConfig, tenant: &str, flags: &FleetTenantFlags, json: bool) -> Result<(), CliError> {
    tenant_id(tenant)?;
    let settings = flags.settings()?;
    let value = serde_json::to_vec(&settings).map_err(|e| failed("encoding the settings")(&e))?;
    let revision =
        bucket(f).await?.put(format!("{TENANTS}{tenant}"), value.into()).await.map_err(|e| failed("writing the control bucket")(&e))?;
    report(json, json!({"tenant": tenant, "settings": settings, "revision": revision}), || {
        format!("{tenant}: declared for the fleet (control revision {revision}); every PoP serves it when it sees the change")
    });
    Ok(())
}

pub async fn fleet_tenant_remove(f: &FleetConfig, tenant: &str, json: bool) -> Result<(), CliError> {
    tenant_id(tenant)?;
    let kv = bucket(f).await?;
    let key = format!("{TENANTS}{tenant}");
    if kv.get(&key).await.map_err(|e| failed("reading the control bucket")(&e))?.is_none() {
        return Err(CliError::NotFound(format!("tenant {tenant:?} is not a fleet tenant (`weir fleet tenant list`)")));
    }
    kv.delete(&key).await.map_err(|e| failed("writing the control bucket")(&e))?;
    report(json, json!({"tenant": tenant, "removed": true}), || {
        format!("{tenant}: removed from the fleet; new triggers get 404, what every PoP accepted is still forwarded")
    });
    Ok(())
}

pub async fn fleet_pause(f: &FleetConfig, tenant: &str, pause: bool, json: bool) -> Result<(), CliError> {
    tenant_id(tenant)?;
    let kv = bucket(f).await?;
    let key = format!("{PAUSED}{tenant}");
    let at_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    let value = json!({"paused": pause, "at_ms": at_ms, "by": super::plugin_fleet::by()});
    let revision = kv.put(&key, value.to_string().into()).await.map_err(|e| failed("writing the control bucket")(&e))?;
    report(json, json!({"tenant": tenant, "paused": pause, "revision": revision}), || {
        format!("{tenant}: forwarding {} on every PoP (control revision {revision})", if pause { "paused" } else { "resumed" })
    });
    Ok(())
}

pub async fn fleet_tenant_list(f: &FleetConfig, json: bool) -> Result<(), CliError> {
    let kv = bucket(f).await?;
    let mut keys = kv.keys().await.map_err(|e| failed("listing the control bucket")(&e))?;
    let mut tenants: BTreeMap<String, (Option<Value>, bool)> = BTreeMap::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| failed("listing the control bucket")(&e))?;
        let Some(value) = kv.get(&key).await.map_err(|e| failed("reading the control bucket")(&e))? else { continue };
        // What is in the bucket is shown as it is, even when no PoP would apply it.
        let parsed: Value = serde_json::from_slice(&value).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&value).into()));
        if let Some(t) = key.strip_prefix(TENANTS) {
            tenants.entry(t.to_string()).or_default().0 = Some(parsed);
        } else if let Some(t) = key.strip_prefix(PAUSED) {
            tenants.entry(t.to_string()).or_default().1 = parsed["paused"] == true;
        }
    }
    if json {
        let list: Vec<Value> =
            tenants.iter().map(|(t, (s, paused))| json!({"tenant": t, "declared": s.is_some(), "settings": s, "paused": paused})).collect();
        print_json(&Value::Array(list));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|(t, (s, paused))| {
            let settings = s.as_ref().map_or_else(|| "(not declared: pause only)".to_string(), Value::to_string);
            vec![t.clone(), if *paused { "paused".into() } else { "-".into() }, settings]
        })
        .collect();
    table::print(&["TENANT", "PAUSED", "SETTINGS"], &rows);
    Ok(())
}

fn report(json: bool, value: Value, text: impl FnOnce() -> String) {
    if json { print_json(&value) } else { println!("{}", text()) }
}
