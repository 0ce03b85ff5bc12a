//! The operator CLI: `weir status`, `weir triggers ...`, `weir replay`, ...
//! It talks to the admin API over HTTP. Tokens come from `WEIR_ADMIN_TOKEN`
//! or `--token-file`, never from the command line (argv is visible to every
//! user of the machine).
//!
//! Exit codes (scripts can rely on them): 0 success; 1 the gateway could not
//! be reached or failed; 2 bad usage or input; 3 not found; 4 unauthorised
//! or forbidden; 5 refused (a 4xx such as a bad upload or nothing to roll back);
//! 6 done, but the fleet needs attention (`weir fleet status`, `weir replay --fleet`).

mod client;
mod fleet;
mod plugin_dev;
mod plugin_fleet;
mod store;
mod table;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub use client::{AdminClient, CliError};
pub use fleet::{FleetReplay, NatsArgs, fleet_config, fleet_replay, fleet_replay_status, fleet_status};
pub use plugin_dev::{PluginDevCommand, run as plugin_dev};
pub use plugin_fleet::{FleetTarget, plugin_rollback_fleet, plugin_upload_fleet};
pub use store::{store_check, store_repair};

/// The admin API's URL for a config: its admin listener, `https://` when
/// that listener has TLS.
pub fn admin_url(server: &crate::config::ServerConfig) -> String {
    let scheme = if server.admin_tls.is_some() { "https" } else { "http" };
    format!("{scheme}://{}", server.admin_listen)
}

/// Options every admin command shares.
pub struct Global {
    pub admin_url: String,
    pub token: Option<String>,
    pub json: bool,
    /// Extra CA certificates (PEM) trusted for an https admin URL.
    pub ca_file: Option<std::path::PathBuf>,
}

/// Filters for list and replay, as flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterFlags {
    #[arg(long)]
    pub tenant: Option<String>,
    /// pending, delivered, dead or quarantined
    #[arg(long)]
    pub state: Option<String>,
    #[arg(long)]
    pub source: Option<String>,
    /// Arrived at or after: Unix ms or RFC 3339 (2026-11-24T02:49:51Z)
    #[arg(long)]
    pub since: Option<String>,
    /// Arrived before: Unix ms or RFC 3339
    #[arg(long)]
    pub until: Option<String>,
}

impl FilterFlags {
    fn json(&self) -> serde_json::Map<String, Value> {
        let mut m = serde_json::Map::new();
        for (k, v) in
            [("tenant", &self.tenant), ("state", &self.state), ("source", &self.source), ("since", &self.since), ("until", &self.until)]
        {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
        m
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn str_of(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub async fn status(g: &Global) -> Result<(), CliError> {
    let s = AdminClient::new(g)?.get("/v1/status").await?;
    if g.json {
        print_json(&s);
        return Ok(());
    }
    println!(
        "pending {}  delivered {}  dead {}  quarantined {}  oldest pending {} ms  store {} / {} bytes  ready {}",
        str_of(&s["pending"]),
        str_of(&s["delivered"]),
        str_of(&s["dead"]),
        str_of(&s["quarantined"]),
        str_of(&s["oldest_pending_age_ms"]),
        str_of(&s["used_bytes"]),
        str_of(&s["budget_bytes"]),
        str_of(&s["ready"]),
    );
    let rows: Vec<Vec<String>> = s["upstreams"]
        .as_array()
        .map(|ups| {
            ups.iter()
                .map(|u| {
                    vec![
                        str_of(&u["url"]),
                        str_of(&u["state"]),
                        str_of(&u["in_flight"]),
                        str_of(&u["delivered"]),
                        str_of(&u["failures"]),
                        str_of(&u["last_error"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table::print(&["UPSTREAM", "STATE", "IN FLIGHT", "DELIVERED", "FAILURES", "LAST ERROR"], &rows);
    Ok(())
}

pub async fn list(g: &Global, filter: &FilterFlags, limit: usize, order: &str, all: bool) -> Result<(), CliError> {
    let c = AdminClient::new(g)?;
    let mut query: Vec<(String, String)> = filter.json().into_iter().map(|(k, v)| (k, str_of(&v))).collect();
    query.push(("limit".into(), limit.to_string()));
    query.push(("order".into(), order.to_string()));
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = query.clone();
        if let Some(c) = &cursor {
            q.push(("cursor".into(), c.clone()));
        }
        let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(q).finish();
        let page = c.get(&format!("/v1/triggers?{qs}")).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if !all || cursor.is_none() {
            break;
        }
    }
    if g.json {
        print_json(&serde_json::json!({"items": items, "next_cursor": cursor}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|t| {
            vec![
                str_of(&t["id"]),
                str_of(&t["tenant"]),
                str_of(&t["source"]),
                str_of(&t["state"]),
                str_of(&t["received_at"]),
                str_of(&t["attempts"]),
                str_of(&t["note"]),
            ]
        })
        .collect();
    table::print(&["ID", "TENANT", "SOURCE", "STATE", "RECEIVED", "ATTEMPTS", "NOTE"], &rows);
    if let Some(c) = cursor {
        eprintln!("more: --all, or the next page after cursor {c}");
    }
    Ok(())
}

pub async fn show(g: &Global, id: &str) -> Result<(), CliError> {
    let t = AdminClient::new(g)?.get(&format!("/v1/triggers/{id}")).await?;
    if g.json {
        print_json(&t);
        return Ok(());
    }
    for key in ["id", "tenant", "source", "state", "received_at", "idempotency_key", "plugin_version", "route", "note"] {
        println!("{key:<16} {}", str_of(&t[key]));
    }
    println!("{:<16} {} bytes ({})", "body", str_of(&t["body"]["bytes"]), str_of(&t["body"]["encoding"]));
    println!("{}", str_of(&t["body"]["data"]));
    if !t["transformed_body"].is_null() {
        println!("{:<16} {} bytes", "transformed", str_of(&t["transformed_body"]["bytes"]));
        println!("{}", str_of(&t["transformed_body"]["data"]));
    }
    let rows: Vec<Vec<String>> = t["attempts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| {
                    vec![
                        str_of(&a["at"]),
                        str_of(&a["upstream"]),
                        str_of(&a["outcome"]),
                        str_of(&a["status"]),
                        str_of(&a["duration_ms"]),
                        str_of(&a["detail"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    if !rows.is_empty() {
        table::print(&["ATTEMPT AT", "UPSTREAM", "OUTCOME", "STATUS", "MS", "DETAIL"], &rows);
    }
    Ok(())
}

pub async fn replay(
    g: &Global,
    filter: &FilterFlags,
    ids: &[String],
    dry_run: bool,
    rerun_plugin: bool,
    background: bool,
    max_per_sec: Option<u32>,
) -> Result<(), CliError> {
    let c = AdminClient::new(g)?;
    let mut body = filter.json();
    if !ids.is_empty() {
        body.insert("ids".into(), Value::from(ids.to_vec()));
    }
    for (k, v) in [("dry_run", dry_run), ("rerun_plugin", rerun_plugin), ("background", background)] {
        if v {
            body.insert(k.into(), Value::Bool(true));
        }
    }
    if let Some(n) = max_per_sec {
        body.insert("max_per_sec".into(), Value::from(n));
    }
    let r = c.post_json("/v1/replay", &Value::Object(body)).await?;
    let Some(job) = r["job"].as_u64() else {
        if g.json {
            print_json(&r);
        } else {
            println!("matched {}  replayed {}{}", str_of(&r["matched"]), str_of(&r["replayed"]), if dry_run { "  (dry run)" } else { "" });
        }
        return Ok(());
    };
    // A background job: follow it to the end, with a progress line on a terminal.
    let tty = std::io::stderr().is_terminal() && !g.json;
    loop {
        let j = c.get(&format!("/v1/replays/{job}")).await?;
        if tty {
            let count = |k: &str| j[k].as_u64().unwrap_or(0);
            let (done, total) = (count("replayed") + count("not_pending") + count("skipped"), count("matched"));
            eprint!("\r{} {done}/{total} ", bar(done, total));
            let _ = std::io::stderr().flush();
        }
        match j["state"].as_str() {
            Some("running") => tokio::time::sleep(Duration::from_millis(250)).await,
            Some("done") => {
                if tty {
                    eprintln!();
                }
                if g.json {
                    print_json(&j);
                } else {
                    println!(
                        "job {job}: matched {}  replayed {}  skipped {}",
                        str_of(&j["matched"]),
                        str_of(&j["replayed"]),
                        str_of(&j["skipped"])
                    );
                }
                return Ok(());
            }
            _ => return Err(CliError::Failed(format!("replay job {job} failed: {}", str_of(&j["error"])))),
        }
    }
}

fn bar(done: u64, total: u64) -> String {
    let width = 30;
    let filled = (done.min(total) * width as u64).checked_div(total).map_or(width, |f| f as usize);
    format!("[{}{}]", "#".repeat(filled), ".".repeat(width - filled))
}

pub async fn pause(g: &Global, tenant: &str, on: bool) -> Result<(), CliError> {
    let r = AdminClient::new(g)?.post_json(&format!("/v1/tenants/{tenant}/{}", if on { "pause" } else { "resume" }), &Value::Null).await?;
    if g.json {
        print_json(&r);
    } else {
        println!("{tenant}: {}", if on { "paused (triggers are held)" } else { "resumed" });
    }
    Ok(())
}

pub async fn plugin_upload(g: &Global, tenant: &str, file: &PathBuf) -> Result<(), CliError> {
    let bytes = std::fs::read(file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let r = AdminClient::new(g)?.put(&format!("/v1/tenants/{tenant}/plugin"), bytes).await?;
    if g.json {
        print_json(&r);
    } else {
        println!("{tenant}: version {} active (sha256 {})", str_of(&r["version"]), str_of(&r["sha256"]));
    }
    Ok(())
}

pub async fn plugin_list(g: &Global, tenant: &str) -> Result<(), CliError> {
    let r = AdminClient::new(g)?.get(&format!("/v1/tenants/{tenant}/plugin")).await?;
    if g.json {
        print_json(&r);
        return Ok(());
    }
    let rows: Vec<Vec<String>> = r["versions"]
        .as_array()
        .map(|v| {
            v.iter()
                .map(|v| {
                    vec![
                        str_of(&v["version"]),
                        if v["active"] == true { "*".into() } else { String::new() },
                        str_of(&v["source"]),
                        str_of(&v["size"]),
                        str_of(&v["uploaded_at"]),
                        str_of(&v["sha256"]),
                    ]
                })
                .collect()
        })
        .unwrap_or_default();
    table::print(&["VERSION", "ACTIVE", "SOURCE", "SIZE", "UPLOADED", "SHA256"], &rows);
    Ok(())
}

pub async fn plugin_rollback(g: &Global, tenant: &str) -> Result<(), CliError> {
    let r = AdminClient::new(g)?.post_json(&format!("/v1/tenants/{tenant}/plugin/rollback"), &Value::Null).await?;
    if g.json {
        print_json(&r);
    } else {
        println!("{tenant}: version {} active", str_of(&r["active"]));
    }
    Ok(())
}

pub async fn backup(g: &Global, out: &PathBuf) -> Result<(), CliError> {
    let tty = std::io::stderr().is_terminal() && !g.json;
    let tmp = out.with_extension("partial");
    let downloaded = AdminClient::new(g)?
        .download("/v1/backup", &tmp, |n| {
            if tty {
                eprint!("\r{n} bytes ");
                let _ = std::io::stderr().flush();
            }
        })
        .await;
    let bytes = match downloaded {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    // Only a complete stream becomes the backup file.
    std::fs::rename(&tmp, out).map_err(|e| CliError::Failed(format!("cannot write {}: {e}", out.display())))?;
    if tty {
        eprintln!();
    }
    if g.json {
        print_json(&serde_json::json!({"out": out, "bytes": bytes}));
    } else {
        println!("backup written to {} ({bytes} bytes)", out.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::config::{ServerConfig, TlsConfig};

    #[test]
    fn the_admin_url_follows_the_admin_listener_and_its_tls() {
        let mut server = ServerConfig { admin_listen: "10.0.0.5:9443".into(), ..ServerConfig::default() };
        assert_eq!(super::admin_url(&server), "http://10.0.0.5:9443");
        server.admin_tls = Some(TlsConfig::default());
        assert_eq!(super::admin_url(&server), "https://10.0.0.5:9443");
        server.tls = Some(TlsConfig::default());
        server.admin_tls = None;
        assert_eq!(super::admin_url(&server), "http://10.0.0.5:9443", "ingest TLS says nothing about admin");
    }
}
