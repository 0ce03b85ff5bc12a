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
mod fleet_tenants;
pub mod human;
mod plugin_dev;
mod plugin_fleet;
pub mod progress;
mod status;
mod store;
mod table;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

pub use client::{AdminClient, CliError};
pub use fleet::{FleetReplay, NatsArgs, fleet_config, fleet_replay, fleet_replay_status, fleet_status};
pub use fleet_tenants::{FleetTenantFlags, fleet_pause, fleet_tenant_list, fleet_tenant_remove, fleet_tenant_set};
pub use plugin_dev::{PluginDevCommand, run as plugin_dev};
pub use plugin_fleet::{FleetTarget, plugin_rollback_fleet, plugin_upload_fleet};
pub use status::status;
pub use store::{store_check, store_repair};

use progress::{Progress, Total, Unit};

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

/// Filters for list, replay and purge, as flags.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct FilterFlags {
    /// Only this tenant's triggers
    #[arg(long)]
    pub tenant: Option<String>,
    /// pending, delivered, dead or quarantined
    #[arg(long)]
    pub state: Option<String>,
    /// Only triggers that came in through this source (the last segment of /ingest/{tenant}/{source})
    #[arg(long)]
    pub source: Option<String>,
    /// Arrived at or after: a duration ago (30m, 1h, 2d, 1h30m), RFC 3339 (2026-11-24T02:49:51Z) or Unix ms
    #[arg(long)]
    pub since: Option<String>,
    /// Arrived before: a duration ago (30m, 1h, 2d), RFC 3339 or Unix ms
    #[arg(long)]
    pub until: Option<String>,
}

impl FilterFlags {
    /// The filter as the admin API takes it; relative times are resolved against now.
    fn json(&self) -> Result<serde_json::Map<String, Value>, CliError> {
        let now = human::now_ms();
        let mut m = serde_json::Map::new();
        for (k, v) in [("tenant", &self.tenant), ("state", &self.state), ("source", &self.source)] {
            if let Some(v) = v {
                m.insert(k.into(), Value::String(v.clone()));
            }
        }
        for (k, v) in [("since", &self.since), ("until", &self.until)] {
            if let Some(v) = v {
                let at = human::time_arg(&format!("--{k}"), v, now).map_err(CliError::Usage)?;
                m.insert(k.into(), Value::String(at));
            }
        }
        Ok(m)
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

/// `weir status | head -1`: the reader went away. Rust ignores SIGPIPE, so
/// printing then fails with EPIPE and `println!` panics ("failed printing to
/// stdout: Broken pipe", exit 101). Whatever command printed it, the output
/// is no longer wanted: end quietly with 0, as `head` asked. Any other panic
/// keeps the default report.
pub fn exit_quietly_on_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(|m| m.starts_with("failed printing to std") && m.contains("Broken pipe")) {
            std::process::exit(0);
        }
        default(info);
    }));
}

/// Paging flags shared by the listing commands.
#[derive(Debug, Clone, clap::Args)]
pub struct Paging {
    /// At most this many per page
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Start after this cursor (the `next_cursor` a previous page printed)
    #[arg(long)]
    pub cursor: Option<String>,
    /// Follow every page to the end
    #[arg(long)]
    pub all: bool,
}

/// Reads `path?query` page after page (one page unless `paging.all`): the
/// items and the cursor of the page after the last one read.
async fn pages(
    c: &AdminClient,
    path: &str,
    query: Vec<(String, String)>,
    paging: &Paging,
) -> Result<(Vec<Value>, Option<String>), CliError> {
    let mut items = Vec::new();
    let mut cursor = paging.cursor.clone();
    loop {
        let mut q = query.clone();
        q.push(("limit".into(), paging.limit.to_string()));
        if let Some(c) = &cursor {
            q.push(("cursor".into(), c.clone()));
        }
        let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(q).finish();
        let page = c.get(&format!("{path}?{qs}")).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        cursor = page["next_cursor"].as_str().map(str::to_string);
        if !paging.all || cursor.is_none() {
            return Ok((items, cursor));
        }
    }
}

fn more_hint(cursor: Option<String>) {
    if let Some(c) = cursor {
        eprintln!("more: add --cursor {c} for the next page, or --all for every page");
    }
}

pub async fn list(g: &Global, filter: &FilterFlags, paging: &Paging, order: &str) -> Result<(), CliError> {
    let c = AdminClient::new(g)?;
    let mut query: Vec<(String, String)> = filter.json()?.into_iter().map(|(k, v)| (k, str_of(&v))).collect();
    query.push(("order".into(), order.to_string()));
    let (items, cursor) = pages(&c, "/v1/triggers", query, paging).await?;
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
                t["body_bytes"].as_u64().map(human::bytes).unwrap_or_else(|| "-".into()),
                str_of(&t["attempts"]),
                str_of(&t["note"]),
            ]
        })
        .collect();
    table::print(&["ID", "TENANT", "SOURCE", "STATE", "RECEIVED", "BODY", "ATTEMPTS", "NOTE"], &rows);
    more_hint(cursor);
    Ok(())
}

pub async fn show(g: &Global, id: &str) -> Result<(), CliError> {
    let t = AdminClient::new(g)?.get(&format!("/v1/triggers/{id}")).await?;
    if g.json {
        print_json(&t);
    } else {
        print!("{}", render_trigger(&t));
    }
    Ok(())
}

/// One trigger for people: its fields, its stored headers, its bodies and its attempts.
fn render_trigger(t: &Value) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for key in ["id", "tenant", "source", "state", "received_at", "idempotency_key", "plugin_version", "route", "note"] {
        let _ = writeln!(out, "{key:<16} {}", str_of(&t[key]));
    }
    let headers = t["headers"].as_array().cloned().unwrap_or_default();
    let _ = writeln!(out, "{:<16} {}", "headers", headers.len());
    for h in &headers {
        let _ = writeln!(out, "  {}: {}", str_of(&h[0]), str_of(&h[1]));
    }
    let body = |out: &mut String, label: &str, b: &Value| {
        let _ = writeln!(
            out,
            "{label:<16} {} ({})",
            b["bytes"].as_u64().map(human::bytes).unwrap_or_else(|| "-".into()),
            str_of(&b["encoding"])
        );
        let _ = writeln!(out, "{}", str_of(&b["data"]));
    };
    body(&mut out, "body", &t["body"]);
    if !t["transformed_body"].is_null() {
        body(&mut out, "transformed", &t["transformed_body"]);
    }
    let rows: Vec<Vec<String>> = t["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            vec![
                str_of(&a["at"]),
                str_of(&a["upstream"]),
                str_of(&a["outcome"]),
                str_of(&a["status"]),
                a["duration_ms"].as_u64().map(human::duration_ms).unwrap_or_else(|| "-".into()),
                str_of(&a["detail"]),
            ]
        })
        .collect();
    if !rows.is_empty() {
        let rows: Vec<(Vec<String>, Vec<String>)> = rows.into_iter().map(|r| (r, Vec::new())).collect();
        out.push_str(&table::render(&["ATTEMPT AT", "UPSTREAM", "OUTCOME", "STATUS", "TOOK", "DETAIL"], &rows));
    }
    out
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
    let mut body = filter.json()?;
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
    if !g.json {
        eprintln!(
            "replay job {job} started ({} matched); it goes on if this command stops: weir replay --status {job} --follow",
            str_of(&r["matched"])
        );
    }
    follow_job(&c, g, job).await
}

/// Follows a background replay job to its end: a bar on a terminal, then one result line.
async fn follow_job(c: &AdminClient, g: &Global, job: u64) -> Result<(), CliError> {
    let mut bar = Progress::on_stderr(g.json, &format!("replay job {job}"), Unit::Triggers, Total::Unknown);
    loop {
        let j = c.get(&format!("/v1/replays/{job}")).await?;
        bar.set_total(Total::Exact(count(&j["matched"])));
        match j["state"].as_str() {
            Some("running") => {
                bar.update(job_done(&j));
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Some("done") => {
                bar.finish(job_done(&j));
                print_job(g, job, &j);
                return Ok(());
            }
            _ => return Err(CliError::Failed(format!("replay job {job} failed: {}", str_of(&j["error"])))),
        }
    }
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// The triggers a job has handled (replayed, or found moved or gone).
fn job_done(j: &Value) -> u64 {
    count(&j["replayed"]) + count(&j["not_pending"]) + count(&j["skipped"])
}

fn print_job(g: &Global, job: u64, j: &Value) {
    if g.json {
        print_json(j);
    } else {
        println!(
            "job {job}: {}  matched {}  replayed {}  not pending {}  skipped {}",
            str_of(&j["state"]),
            str_of(&j["matched"]),
            str_of(&j["replayed"]),
            str_of(&j["not_pending"]),
            str_of(&j["skipped"])
        );
    }
}

/// `weir replay --status JOB...`: one look at each job, or `follow` them to the end.
pub async fn replay_status(g: &Global, jobs: &[String], follow: bool) -> Result<(), CliError> {
    let c = AdminClient::new(g)?;
    for job in jobs {
        let id: u64 = job
            .trim()
            .parse()
            .map_err(|_| CliError::Usage(format!("--status {job:?}: a replay job is a number (as `weir replay` printed it)")))?;
        if follow {
            follow_job(&c, g, id).await?;
        } else {
            let j = c.get(&format!("/v1/replays/{id}")).await?;
            print_job(g, id, &j);
        }
    }
    Ok(())
}

/// `weir purge`: deletes what the filter matches, for good. Without `--yes`
/// it only counts (a dry run) and says how to go on.
pub async fn purge(g: &Global, filter: &FilterFlags, ids: &[String], dry_run: bool, yes: bool) -> Result<(), CliError> {
    let c = AdminClient::new(g)?;
    let mut body = filter.json()?;
    if !ids.is_empty() {
        body.insert("ids".into(), Value::from(ids.to_vec()));
    }
    body.insert("dry_run".into(), Value::Bool(dry_run || !yes));
    let r = c.post_json("/v1/purge", &Value::Object(body)).await?;
    if g.json {
        print_json(&r);
    } else if dry_run || !yes {
        println!("matched {}  purged 0  (dry run)", str_of(&r["matched"]));
        if !dry_run {
            eprintln!("nothing deleted: add --yes to delete these {} trigger(s) for good (take a backup first)", str_of(&r["matched"]));
        }
    } else {
        println!("matched {}  purged {}", str_of(&r["matched"]), str_of(&r["purged"]));
    }
    Ok(())
}

/// `weir audit`: operator actions, newest first.
pub async fn audit(g: &Global, tenant: Option<&str>, paging: &Paging) -> Result<(), CliError> {
    let c = AdminClient::new(g)?;
    let query: Vec<(String, String)> = tenant.map(|t| vec![("tenant".to_string(), t.to_string())]).unwrap_or_default();
    let (items, cursor) = pages(&c, "/v1/audit", query, paging).await?;
    if g.json {
        print_json(&serde_json::json!({"items": items, "next_cursor": cursor}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|e| {
            let detail = if e["detail"].is_null() { String::new() } else { e["detail"].to_string() };
            vec![str_of(&e["at"]), str_of(&e["actor"]), str_of(&e["action"]), str_of(&e["tenant"]), str_of(&e["count"]), detail]
        })
        .collect();
    table::print(&["AT", "ACTOR", "ACTION", "TENANT", "COUNT", "DETAIL"], &rows);
    more_hint(cursor);
    Ok(())
}

/// `weir tenants list`: every tenant this gateway serves, and which are paused.
pub async fn tenants(g: &Global) -> Result<(), CliError> {
    let s = AdminClient::new(g)?.get("/v1/status").await?;
    let names = |v: &Value| -> Vec<String> { v.as_array().map(|a| a.iter().map(str_of).collect()).unwrap_or_default() };
    let paused = names(&s["paused_tenants"]);
    let mut tenants = names(&s["tenants"]);
    tenants.extend(paused.iter().filter(|p| !tenants.contains(p)).cloned().collect::<Vec<_>>());
    if g.json {
        print_json(&serde_json::json!({"tenants": tenants, "paused_tenants": paused}));
        return Ok(());
    }
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| vec![t.clone(), if paused.contains(t) { "paused (held, not forwarded)".into() } else { "forwarding".into() }])
        .collect();
    table::print(&["TENANT", "DELIVERY"], &rows);
    Ok(())
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
                        v["size"].as_u64().map(human::bytes).unwrap_or_else(|| "-".into()),
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

/// `weir plugin activate --tenant T VERSION`: any stored version, later ones too (roll forward).
pub async fn plugin_activate(g: &Global, tenant: &str, version: u32) -> Result<(), CliError> {
    let body = serde_json::json!({"version": version});
    let r = AdminClient::new(g)?.post_json(&format!("/v1/tenants/{tenant}/plugin/activate"), &body).await?;
    if g.json {
        print_json(&r);
    } else {
        println!("{tenant}: version {} active", str_of(&r["active"]));
    }
    Ok(())
}

/// Where a backup is written until it is complete: `FILE.partial`, beside it.
pub fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.as_os_str().to_owned();
    name.push(".partial");
    PathBuf::from(name)
}

pub async fn backup(g: &Global, out: &Path, force: bool) -> Result<(), CliError> {
    if !force && std::fs::symlink_metadata(out).is_ok() {
        return Err(CliError::Usage(format!("{} already exists; choose another --out, or add --force to replace it", out.display())));
    }
    let c = AdminClient::new(g)?;
    // The snapshot's size is known only at its end; what the budget counts
    // (every stored trigger) is close, so the bar fills towards that.
    let estimate = match c.get("/v1/status").await {
        Ok(s) => s["used_bytes"].as_u64().map_or(Total::Unknown, Total::About),
        Err(_) => Total::Unknown,
    };
    let mut bar = Progress::on_stderr(g.json, "backup", Unit::Bytes, estimate);
    let tmp = partial_path(out);
    let downloaded = c
        .download("/v1/backup", &tmp, |n| {
            bar.update(n);
        })
        .await;
    let bytes = match downloaded {
        Ok(n) => n,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    bar.finish(bytes);
    // Only a complete stream becomes the backup file.
    std::fs::rename(&tmp, out).map_err(|e| CliError::Failed(format!("cannot write {}: {e}", out.display())))?;
    if g.json {
        print_json(&serde_json::json!({"out": out, "bytes": bytes}));
    } else {
        println!("backup written to {} ({})", out.display(), human::bytes(bytes));
    }
    Ok(())
}

/// `weir health`: asks `/healthz` (or `/readyz`), needing no token, for
/// container health checks and scripts: exit 0 when it answers 200.
pub async fn health(g: &Global, ready: bool) -> Result<(), CliError> {
    let path = if ready { "/readyz" } else { "/healthz" };
    let r = AdminClient::new(g)?.get(path).await?;
    if g.json {
        print_json(&r);
    } else {
        println!("{}", str_of(&r["status"]));
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
