//! The `weir` process under test: locating (and when missing, building) the
//! binary, writing its config, starting it on a data directory, waiting until
//! it answers, reading its memory and `/v1/status`, stopping it with SIGTERM.
//!
//! Every start gets fresh loopback ports; the data directory is whatever the
//! scenario hands over (fresh, or the previous run's for restarts).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use http::StatusCode;

use crate::client;
use crate::servers::free_port;

/// The admin token every harness config sets.
pub const TOKEN: &str = "weir-bench-admin-token";

/// The workspace root (for `plugins/` and cargo builds).
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The `weir` binary to run: `explicit`, else `weir` next to this executable,
/// built with the same profile when it is missing.
pub fn locate(explicit: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    if let Some(path) = explicit {
        if !path.is_file() {
            bail!("--weir {}: no such file; build it with `cargo build --release -p weir-gateway --bin weir`", path.display());
        }
        return Ok(path);
    }
    let exe = std::env::current_exe().context("locating the harness executable")?;
    let dir = exe.parent().context("the harness executable has no directory")?;
    let path = dir.join("weir");
    if !path.is_file() {
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut args = vec!["build"];
        if release {
            args.push("--release");
        }
        args.extend(["-p", "weir-gateway", "--bin", "weir"]);
        eprintln!("weir-bench: {} is missing; building it first: cargo {}", path.display(), args.join(" "));
        cargo(&args)?;
        if !path.is_file() {
            bail!("`cargo {}` succeeded but {} is still missing; pass --weir PATH", args.join(" "), path.display());
        }
    }
    warn_if_stale(&path);
    Ok(path)
}

/// Runs cargo in the workspace root, passing its output through.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(workspace_root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// Says so when the binary is older than the gateway's sources.
fn warn_if_stale(bin: &Path) {
    let Ok(built) = std::fs::metadata(bin).and_then(|m| m.modified()) else {
        return;
    };
    let newest = newest_mtime(&workspace_root().join("gateway/src"));
    if newest.is_some_and(|n| n > built) {
        eprintln!("weir-bench: warning: {} is older than gateway/src; rebuild it to measure the current code", bin.display());
    }
}

fn newest_mtime(dir: &Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let t = if path.is_dir() { newest_mtime(&path) } else { entry.metadata().and_then(|m| m.modified()).ok() };
        newest = newest.max(t);
    }
    newest
}

/// One `[[tenants]]` block.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub plugin: Option<PathBuf>,
    pub config: Vec<(String, String)>,
    /// Other `[[tenants]]` keys, as (key, TOML value), e.g. `plugin_timeout_ms`.
    pub settings: Vec<(String, String)>,
}

impl Tenant {
    pub fn plain(id: &str) -> Tenant {
        Tenant { id: id.to_string(), plugin: None, config: Vec::new(), settings: Vec::new() }
    }

    pub fn with_plugin(id: &str, plugin: &Path) -> Tenant {
        Tenant { plugin: Some(plugin.to_path_buf()), ..Tenant::plain(id) }
    }

    /// Sets a `[[tenants]]` key to a TOML value written as is.
    pub fn setting(mut self, key: &str, toml_value: &str) -> Tenant {
        self.settings.push((key.to_string(), toml_value.to_string()));
        self
    }

    pub fn config(mut self, key: &str, value: &str) -> Tenant {
        self.config.push((key.to_string(), value.to_string()));
        self
    }
}

/// `[server.tls]`: HTTPS on the ingest listener.
#[derive(Debug, Clone)]
pub struct IngestTls {
    /// PEM certificate chain.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// A client that trusts `cert`, for the health polls.
    pub client: Arc<rustls::ClientConfig>,
}

/// What a harness config varies; everything else is Weir's default.
#[derive(Debug, Clone)]
pub struct Setup {
    pub tenants: Vec<Tenant>,
    pub upstreams: Vec<String>,
    /// `store.max_bytes`: large enough for the biggest backlog a scenario builds.
    pub max_bytes: u64,
    /// HTTPS on ingest (`None`: plain HTTP).
    pub tls: Option<IngestTls>,
    /// More TOML appended as is (e.g. a `[fleet]` section).
    pub extra: String,
}

impl Setup {
    pub fn new(tenants: Vec<Tenant>) -> Setup {
        Setup { tenants, upstreams: Vec::new(), max_bytes: 1 << 30, tls: None, extra: String::new() }
    }

    fn toml(&self, ingest: SocketAddr, admin: SocketAddr, data: &Path) -> String {
        let q = |s: &str| serde_json::Value::String(s.to_string()).to_string();
        let mut t = String::new();
        let _ = writeln!(t, "[server]\nlisten = {}\nadmin_listen = {}\n", q(&ingest.to_string()), q(&admin.to_string()));
        if let Some(tls) = &self.tls {
            // A table of its own, after the `[server]` keys.
            let _ =
                writeln!(t, "[server.tls]\ncert = {}\nkey = {}\n", q(&tls.cert.display().to_string()), q(&tls.key.display().to_string()));
        }
        let _ = writeln!(t, "[store]\npath = {}\nmax_bytes = {}", q(&data.display().to_string()), self.max_bytes);
        // `--store KEY=VALUE`, `--forward KEY=VALUE`: settings to compare in one run's conditions.
        for line in &overrides().store {
            let _ = writeln!(t, "{line}");
        }
        t.push('\n');
        let ups: Vec<String> = self.upstreams.iter().map(|u| q(u)).collect();
        let _ = writeln!(t, "[forward]\nupstreams = [{}]", ups.join(", "));
        for line in &overrides().forward {
            let _ = writeln!(t, "{line}");
        }
        t.push('\n');
        let _ = writeln!(t, "[admin]\ntoken = {}\n", q(TOKEN));
        let _ = writeln!(t, "[log]\nlevel = \"warn\"\nformat = \"json\"\n");
        for tenant in &self.tenants {
            let _ = writeln!(t, "[[tenants]]\nid = {}", q(&tenant.id));
            if let Some(p) = &tenant.plugin {
                let _ = writeln!(t, "plugin = {}", q(&p.display().to_string()));
            }
            for (k, v) in &tenant.settings {
                let _ = writeln!(t, "{k} = {v}");
            }
            if !tenant.config.is_empty() {
                let _ = writeln!(t, "[tenants.config]");
                for (k, v) in &tenant.config {
                    let _ = writeln!(t, "{k} = {}", q(v));
                }
            }
            t.push('\n');
        }
        t.push_str(&self.extra);
        t
    }
}

/// A running `weir serve`; killed on drop if not stopped.
pub struct Weir {
    child: Option<Child>,
    pub ingest: SocketAddr,
    pub admin: SocketAddr,
    /// Set when ingest speaks HTTPS: the client for its health polls.
    pub ingest_tls: Option<Arc<rustls::ClientConfig>>,
    pub spawned_at: Instant,
    log: PathBuf,
}

impl Weir {
    /// Writes `work/weir.toml` (data in `work/data`) and starts weir on it,
    /// without waiting. Its log goes to `work/weir.log`.
    pub fn spawn(bin: &Path, work: &Path, setup: &Setup) -> anyhow::Result<Weir> {
        let (ingest, admin) = (free_port()?, free_port()?);
        let config = work.join("weir.toml");
        std::fs::write(&config, setup.toml(ingest, admin, &work.join("data"))).with_context(|| format!("writing {}", config.display()))?;
        let log = work.join("weir.log");
        let out = std::fs::OpenOptions::new().create(true).append(true).open(&log).with_context(|| format!("opening {}", log.display()))?;
        let err = out.try_clone().context("duplicating the log handle")?;
        let mut cmd = Command::new(bin);
        cmd.arg("serve").arg("--config").arg(&config).stdin(Stdio::null()).stdout(out).stderr(err);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("WEIR_") {
                cmd.env_remove(&k);
            }
        }
        cmd.env_remove("RUST_LOG");
        let spawned_at = Instant::now();
        let child = cmd.spawn().with_context(|| format!("starting {}", bin.display()))?;
        Ok(Weir { child: Some(child), ingest, admin, ingest_tls: setup.tls.as_ref().map(|t| t.client.clone()), spawned_at, log })
    }

    /// Spawns and waits for `/healthz` (up to `timeout`).
    pub async fn start(bin: &Path, work: &Path, setup: &Setup, timeout: Duration) -> anyhow::Result<Weir> {
        let mut w = Weir::spawn(bin, work, setup)?;
        w.wait_for("/healthz", timeout).await?;
        Ok(w)
    }

    /// Polls `path` on the ingest listener (over HTTPS when it has TLS) until
    /// it answers 200; returns the time since the process was spawned.
    pub async fn wait_for(&mut self, path: &str, timeout: Duration) -> anyhow::Result<Duration> {
        let deadline = self.spawned_at + timeout;
        loop {
            if let Ok((StatusCode::OK, _)) =
                client::get_with(self.ingest, self.ingest_tls.as_ref(), path, None, Duration::from_secs(2)).await
            {
                return Ok(self.spawned_at.elapsed());
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                bail!("weir exited ({status}) before {path} answered 200; its log ends with:\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("weir's {path} did not answer 200 within {timeout:?}; its log ends with:\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Resident memory now, in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        rss_mib(self.pid().context("weir is not running")?)
    }

    /// `GET /v1/status` with the admin token.
    pub async fn status(&self) -> anyhow::Result<serde_json::Value> {
        client::get_json(self.admin, "/v1/status", Some(TOKEN)).await
    }

    /// SIGTERM, then waits for the exit (SIGKILL after a minute). Returns how
    /// long the shutdown took.
    pub async fn stop(&mut self) -> anyhow::Result<Duration> {
        let Some(mut child) = self.child.take() else {
            return Ok(Duration::ZERO);
        };
        let pid = i32::try_from(child.id()).context("pid out of range")?;
        let asked = Instant::now();
        // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            bail!("sending SIGTERM to weir: {}", std::io::Error::last_os_error());
        }
        loop {
            if let Some(status) = child.try_wait().context("waiting for weir")? {
                if !status.success() {
                    bail!("weir exited with {status} after SIGTERM; its log ends with:\n{}", self.log_tail());
                }
                return Ok(asked.elapsed());
            }
            if asked.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("weir did not exit within 60 s of SIGTERM; killed it");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// The last lines of weir's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

impl Drop for Weir {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// VmRSS of a process, in MiB.
pub fn rss_mib(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no VmRSS line in {path}"))?;
    Ok(kb / 1024.0)
}

/// A `u64` field of `/v1/status`, with a clear error when it is missing.
pub fn field(status: &serde_json::Value, pointer: &str) -> anyhow::Result<u64> {
    status.pointer(pointer).and_then(serde_json::Value::as_u64).with_context(|| format!("/v1/status has no number at {pointer}: {status}"))
}

/// Lines every weir this run starts gets in `[store]` and `[forward]`
/// (`weir-bench --store KEY=VALUE`, `--forward KEY=VALUE`).
#[derive(Debug)]
struct Overrides {
    store: Vec<String>,
    forward: Vec<String>,
}

static OVERRIDES: std::sync::OnceLock<Overrides> = std::sync::OnceLock::new();

/// Sets the `[store]` and `[forward]` overrides once, from the command line.
pub fn set_overrides(store: &[String], forward: &[String]) -> Result<(), String> {
    let lines = |flag: &str, example: &str, pairs: &[String]| -> Result<Vec<String>, String> {
        pairs
            .iter()
            .map(|pair| {
                let (key, value) = pair.split_once('=').ok_or_else(|| format!("--{flag} {pair}: expected KEY=VALUE, e.g. {example}"))?;
                Ok(format!("{} = {}", key.trim(), value.trim()))
            })
            .collect()
    };
    let overrides =
        Overrides { store: lines("store", "journal_bytes=4194304", store)?, forward: lines("forward", "max_in_flight=64", forward)? };
    OVERRIDES.set(overrides).map_err(|_| "overrides set twice".to_string())
}

fn overrides() -> &'static Overrides {
    static NONE: Overrides = Overrides { store: Vec::new(), forward: Vec::new() };
    OVERRIDES.get().unwrap_or(&NONE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_names_tenants_plugins_and_upstreams() {
        let mut setup = Setup::new(vec![Tenant::with_plugin("a", Path::new("/p/x.wasm")).config("secret", "s\"q")]);
        setup.upstreams.push("http://127.0.0.1:1/t".into());
        let text = setup.toml("127.0.0.1:1".parse().expect("addr"), "127.0.0.1:2".parse().expect("addr"), Path::new("/d"));
        assert!(text.contains("plugin = \"/p/x.wasm\""), "{text}");
        assert!(text.contains("secret = \"s\\\"q\""), "{text}");
        assert!(text.contains("upstreams = [\"http://127.0.0.1:1/t\"]"), "{text}");
        assert!(text.contains("level = \"warn\""), "{text}");
    }

    #[test]
    fn tls_goes_in_its_own_table_weir_accepts() {
        let client = rustls::ClientConfig::builder_with_provider(weir::tls::provider())
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let mut setup = Setup::new(vec![Tenant::plain("a")]);
        setup.tls =
            Some(IngestTls { cert: PathBuf::from("/pki/server.crt"), key: PathBuf::from("/pki/server.key"), client: Arc::new(client) });
        let text = setup.toml("127.0.0.1:1".parse().expect("addr"), "127.0.0.1:2".parse().expect("addr"), Path::new("/d"));
        let config = weir::Config::from_toml(&text).expect("weir parses the config");
        let tls = config.server.tls.expect("[server.tls]");
        assert_eq!(tls.cert, Path::new("/pki/server.crt"));
        assert_eq!(tls.key, Path::new("/pki/server.key"));
        assert_eq!(config.server.listen, "127.0.0.1:1");
        assert_eq!(config.server.admin_listen, "127.0.0.1:2");
        assert!(config.server.admin_tls.is_none());
    }
}
