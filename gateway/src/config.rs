//! Configuration: one TOML file, `WEIR_*` environment overrides, validation.
//!
//! Every key is documented in `docs/configuration.md`. Unknown keys are an
//! error (a typo must not silently fall back to a default), and `validate()`
//! names the offending key and the fix.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The example configuration shipped in `examples/weir.toml`; kept in the
/// binary so `weir check-config` tests and docs can refer to one source.
pub const ENV_PREFIX: &str = "WEIR_";

/// `WEIR_*` variables that belong to the CLI, not to the config file.
const CLI_ENV_VARS: &[&str] = &["WEIR_BUILD_COMMIT", "WEIR_ADMIN_URL", "WEIR_ADMIN_CA_FILE", "WEIR_LOG", "WEIR_LOG_FORMAT", "WEIR_CONFIG"];

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub forward: ForwardConfig,
    pub admin: AdminConfig,
    pub log: LogConfig,
    pub telemetry: TelemetryConfig,
    pub plugins: PluginsConfig,
    pub tenants: Vec<TenantConfig>,
    /// Joins this PoP to a fleet over NATS JetStream (`docs/fleet.md`); absent: a lone PoP.
    pub fleet: Option<FleetConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Ingest listener.
    pub listen: String,
    /// Admin listener (admin API, health, metrics).
    pub admin_listen: String,
    /// Largest request body ingest accepts; larger bodies get 413.
    pub max_body_bytes: u64,
    /// How long shutdown waits for in-flight requests before giving up on them.
    pub shutdown_grace_ms: u64,
    /// Requests slower than this to send their headers and body get 408.
    pub request_timeout_ms: u64,
    /// Open connections per listener at most; more wait in the accept backlog.
    pub max_connections: u32,
    /// HTTPS on the ingest listener (absent: plain HTTP).
    pub tls: Option<TlsConfig>,
    /// HTTPS on the admin listener (absent: plain HTTP).
    pub admin_tls: Option<TlsConfig>,
}

impl ServerConfig {
    /// Each listener's TLS settings: (listener name, config key, settings).
    pub fn tls_listeners(&self) -> [(&'static str, &'static str, Option<&TlsConfig>); 2] {
        [("ingest", "server.tls", self.tls.as_ref()), ("admin", "server.admin_tls", self.admin_tls.as_ref())]
    }
}

/// `[server.tls]` / `[server.admin_tls]`: a certificate for one listener.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Oldest TLS version accepted: "1.2" or "1.3".
    pub min_version: String,
    /// A client that has not completed its handshake by then is closed.
    pub handshake_timeout_ms: u64,
    /// How often the files are checked for a new certificate; 0: only on SIGHUP.
    pub watch_interval_ms: u64,
    /// `weir_tls_certificate_expiring` turns 1 this many days before expiry.
    pub expiry_warn_days: u32,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            min_version: "1.2".into(),
            handshake_timeout_ms: 10_000,
            watch_interval_ms: 5_000,
            expiry_warn_days: 14,
        }
    }
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: "127.0.0.1:8080".into(),
            admin_listen: "127.0.0.1:9090".into(),
            max_body_bytes: 1024 * 1024,
            shutdown_grace_ms: 10_000,
            request_timeout_ms: 30_000,
            max_connections: 4096,
            tls: None,
            admin_tls: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Directory holding the store files.
    pub path: PathBuf,
    /// Disk budget for live triggers; ingest answers 503 beyond it.
    pub max_bytes: u64,
    /// Number of redb files, each with its own writer thread and fsync.
    pub shards: u32,
    /// Most triggers one group commit holds.
    pub max_batch: u32,
    /// Most body bytes one group commit holds.
    pub max_batch_bytes: u64,
    /// Size of each shard's journal file: group commits are made durable by
    /// appending to it; when it is full, a checkpoint commits redb durably
    /// and it starts over.
    pub journal_bytes: u64,
    /// How long an `Idempotency-Key` is remembered, in seconds.
    pub idempotency_window_secs: u64,
    /// redb page cache per shard, in MiB (redb's own default is 1 GiB).
    pub cache_mb: u64,
    /// How long delivered triggers are kept for replay, in seconds.
    pub retention_secs: u64,
    /// Free space to keep on the store's filesystem: below it ingest answers
    /// 503 `disk_low` and `/readyz` is 503, before the disk is really full.
    pub min_free_bytes: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("weir-data"),
            max_bytes: 1024 * 1024 * 1024,
            shards: 1,
            max_batch: 512,
            max_batch_bytes: 8 * 1024 * 1024,
            journal_bytes: 1024 * 1024,
            idempotency_window_secs: 24 * 3600,
            cache_mb: 16,
            retention_secs: 24 * 3600,
            min_free_bytes: 256 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardConfig {
    /// Ordered upstream URLs, primary first. Empty: every trigger is held.
    pub upstreams: Vec<String>,
    /// Per-attempt timeout (connect, send, response headers and body).
    pub timeout_ms: u64,
    /// Requests in flight to one upstream at most. 64 by default: at 32, a
    /// drain on 2 cores was bound by the round trip (store read, request,
    /// state update) and fell behind half-rate ingest (BENCHMARKS.md, issue 19).
    pub max_in_flight: u32,
    /// Attempts before a trigger is dead.
    pub max_attempts: u32,
    /// Age (since arrival) after which a failing trigger is dead, in seconds.
    pub max_age_secs: u64,
    /// Backoff between attempts of one trigger: full jitter between 0 and
    /// min(cap, base * 2^attempt).
    pub backoff_base_ms: u64,
    pub backoff_cap_ms: u64,
    /// Consecutive failures that open an upstream's circuit breaker.
    pub failure_threshold: u32,
    /// While open, one probe per this interval and no other traffic.
    pub probe_interval_ms: u64,
    /// Retries may not exceed this fraction of recent first attempts...
    pub retry_budget_ratio: f64,
    /// ...plus this many per second.
    pub retry_budget_min_per_sec: u32,
    /// Extra CA certificates (PEM) trusted for https upstreams, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Client certificate chain (PEM) presented to upstreams that ask (mutual TLS).
    pub client_cert: Option<PathBuf>,
    /// Its private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Named routes: a trigger whose `route` (set by its plugin) names one is
    /// sent to that route's upstreams; any other trigger to `upstreams`.
    pub routes: Vec<RouteConfig>,
    /// Per upstream URL, stored headers never sent to it (lower-case names).
    pub deny_headers: std::collections::BTreeMap<String, Vec<String>>,
}

/// `[fleet]`: this PoP's place in a fleet run over NATS JetStream.
/// Credentials: at most one of `token`, `user`/`password`, `creds_file`, `nkey_seed_file`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// NATS servers to connect to (`nats://host:port`, or `tls://host:port`).
    pub nats_urls: Vec<String>,
    /// This PoP's unique name in the fleet (its heartbeat key, the `weir-pop` header).
    pub pop: String,
    pub token: Option<String>,
    pub user: Option<String>,
    pub password: Option<String>,
    /// A `.creds` file (JWT and nkey seed), as `nsc` writes it.
    pub creds_file: Option<PathBuf>,
    /// A file holding an nkey seed (`SU...`).
    pub nkey_seed_file: Option<PathBuf>,
    /// CA certificates (PEM) the NATS servers' certificates chain to; setting it requires TLS.
    pub ca_file: Option<PathBuf>,
    /// How long one connection attempt may take.
    pub connect_timeout_ms: u64,
    /// Longest wait between two reconnection attempts (they back off with jitter up to it).
    pub reconnect_max_ms: u64,
    /// How often this PoP writes its heartbeat.
    pub heartbeat_interval_ms: u64,
    /// KV bucket: tenants, their plugin versions and settings, fleet-wide pauses.
    pub control_bucket: String,
    /// Object Store bucket: plugin components, keyed by sha256.
    pub plugins_bucket: String,
    /// KV bucket: one heartbeat per PoP, expiring after `heartbeat_ttl_secs`.
    pub heartbeats_bucket: String,
    pub heartbeat_ttl_secs: u64,
    /// Subject prefix of fleet commands (`<prefix>.replay`, ...).
    pub command_subject: String,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            nats_urls: vec!["nats://127.0.0.1:4222".into()],
            pop: String::new(),
            token: None,
            user: None,
            password: None,
            creds_file: None,
            nkey_seed_file: None,
            ca_file: None,
            connect_timeout_ms: 2_000,
            reconnect_max_ms: 5_000,
            heartbeat_interval_ms: 2_000,
            control_bucket: "weir_control".into(),
            plugins_bucket: "weir_plugins".into(),
            heartbeats_bucket: "weir_heartbeats".into(),
            heartbeat_ttl_secs: 60,
            command_subject: "weir.fleet".into(),
        }
    }
}

/// The prefix of an upstream that publishes to JetStream instead of POSTing.
pub const JETSTREAM_SCHEME: &str = "jetstream:";
/// Placeholders a `jetstream:` subject template may use.
pub const SUBJECT_PLACEHOLDERS: &[&str] = &["{tenant}", "{source}", "{pop}", "{route}"];

impl ForwardConfig {
    /// Every upstream named anywhere (default list and routes), with repeats.
    pub fn all_upstreams(&self) -> impl Iterator<Item = &String> {
        self.upstreams.iter().chain(self.routes.iter().flat_map(|r| r.upstreams.iter()))
    }
}

/// One `[[forward.routes]]` table.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RouteConfig {
    /// The name a plugin gives as the trigger's route.
    pub name: String,
    /// Ordered upstream URLs, primary first (failover as for `forward.upstreams`).
    pub upstreams: Vec<String>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        ForwardConfig {
            upstreams: Vec::new(),
            timeout_ms: 10_000,
            max_in_flight: 64,
            max_attempts: 20,
            max_age_secs: 24 * 3600,
            backoff_base_ms: 500,
            backoff_cap_ms: 300_000,
            failure_threshold: 5,
            probe_interval_ms: 1000,
            retry_budget_ratio: 0.2,
            retry_budget_min_per_sec: 1,
            ca_file: None,
            client_cert: None,
            client_key: None,
            routes: Vec::new(),
            deny_headers: std::collections::BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Operator bearer token for the admin API (or `WEIR_ADMIN_TOKEN`).
    pub token: Option<String>,
    /// A token that may only scrape `/metrics` (Prometheus `authorization`
    /// bearer), or `WEIR_ADMIN_METRICS_TOKEN`; the operator token scrapes too.
    pub metrics_token: Option<String>,
    /// Pace of `GET /v1/backup`, so a backup does not starve ingest of CPU and disk.
    pub backup_max_mb_per_sec: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { token: None, metrics_token: None, backup_max_mb_per_sec: 40 }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// `auto` (human on a terminal, JSON otherwise), `human` or `json`.
    pub format: String,
    /// A `tracing` filter such as `info` or `weir=debug,info`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig { format: "auto".into(), level: "info".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// Distinct `tenant` label values in metrics; the rest count as `other`.
    pub max_tenant_labels: u32,
    /// OTLP collector base URL (e.g. `http://127.0.0.1:4318`, or `:4317` for gRPC); unset: no traces, no push.
    pub otlp_endpoint: Option<String>,
    /// `http` (OTLP/HTTP, protobuf) or `grpc`.
    pub otlp_protocol: OtlpProtocol,
    /// Share of new traces recorded, 0.0 to 1.0, by trace id; a trigger that
    /// arrives with a `traceparent` follows its sampled flag.
    pub trace_sample_ratio: f64,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// Extra resource attributes, e.g. `{ "weir.pop" = "ams1", "cloud.region" = "eu-west-1" }`.
    pub resource: BTreeMap<String, String>,
    /// How often metrics are pushed over OTLP (when `otlp_endpoint` is set).
    pub otlp_metrics_interval_secs: u64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            max_tenant_labels: 100,
            otlp_endpoint: None,
            otlp_protocol: OtlpProtocol::Http,
            trace_sample_ratio: 1.0,
            service_name: "weir".into(),
            resource: BTreeMap::new(),
            otlp_metrics_interval_secs: 10,
        }
    }
}

/// How OTLP is sent: `telemetry.otlp_protocol`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OtlpProtocol {
    /// OTLP/HTTP with protobuf bodies (`/v1/traces`, `/v1/metrics` under the endpoint).
    Http,
    /// OTLP/gRPC (HTTP/2; TLS for an https:// endpoint).
    Grpc,
}

/// Limits shared by every tenant's plugin.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct PluginsConfig {
    /// Plugin instances running at once across all tenants (sizes the pool).
    pub concurrency: u32,
    /// Largest component accepted by upload or from a `plugin` file.
    pub max_component_bytes: u64,
    /// Most functions a component's core modules may define together; a
    /// cheap check before compiling (compile time and memory grow with it).
    pub max_functions: u32,
    /// How long compiling one component may take (wall clock); the compiler
    /// process is killed then. Also its CPU time, per core.
    pub compile_timeout_ms: u64,
    /// Memory one compile may allocate, on top of the compiler's fixed setup.
    pub compile_memory_mb: u64,
    /// Compiles at once across all tenants (each tenant has at most one).
    pub compile_concurrency: u32,
    /// The `weir` executable that compiles plugins in a child process
    /// (`<compiler> compile-plugin`); unset: the running executable.
    pub compiler: Option<PathBuf>,
    /// Log calls a plugin may make per trigger; the rest are dropped and counted.
    pub max_log_calls: u32,
    /// Longest log message kept; longer ones are truncated.
    pub max_log_bytes: u32,
    /// Memory a plugin instance may grow to for tenants the fleet declares
    /// (the pool reserves the larger of this and every local tenant's
    /// `plugin_memory_mb`); a fleet tenant asking for more is refused.
    pub fleet_memory_mb: u64,
}

impl Default for PluginsConfig {
    fn default() -> Self {
        PluginsConfig {
            concurrency: 32,
            max_component_bytes: 32 * 1024 * 1024,
            max_functions: 50_000,
            compile_timeout_ms: 60_000,
            compile_memory_mb: 512,
            compile_concurrency: 2,
            fleet_memory_mb: 32,
            compiler: None,
            max_log_calls: 64,
            max_log_bytes: 1024,
        }
    }
}

/// What to do when a tenant's plugin fails (trap, deadline, memory, bad output).
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnPluginError {
    /// Store the raw trigger as `quarantined` and answer 202 (nothing is lost).
    #[default]
    Quarantine,
    /// Store nothing and answer 503 with Retry-After (the sender retries).
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TenantConfig {
    pub id: String,
    /// Path to the tenant's plugin component (`.wasm`), if any.
    pub plugin: Option<PathBuf>,
    /// Time budget of one plugin call, instantiation included: CPU time of the
    /// call, with a wall-clock cap of four times the budget.
    pub plugin_timeout_ms: u64,
    /// Linear memory a plugin instance may grow to.
    pub plugin_memory_mb: u64,
    pub on_plugin_error: OnPluginError,
    /// Strings handed to the plugin through the `config` import (secrets live here).
    pub config: BTreeMap<String, String>,
    /// This tenant's own admin token (sees only its own triggers), given
    /// inline, as a file to read, or as an environment variable to read.
    pub token: Option<String>,
    pub token_file: Option<PathBuf>,
    pub token_env: Option<String>,
}

impl Default for TenantConfig {
    fn default() -> Self {
        TenantConfig {
            id: String::new(),
            plugin: None,
            plugin_timeout_ms: 50,
            plugin_memory_mb: 32,
            on_plugin_error: OnPluginError::Quarantine,
            config: BTreeMap::new(),
            token: None,
            token_file: None,
            token_env: None,
        }
    }
}

/// A configuration problem, always naming where it is and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}. Check the path, or run `weir serve` without --config for the embedded defaults")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl Config {
    /// Reads a file, applies `WEIR_*` overrides from the process environment, validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read { path: p.to_path_buf(), source })?;
                Config::from_toml_with_env(&text, &p.display().to_string(), &env)
            }
            None => Config::from_toml_with_env("", "embedded defaults", &env),
        }
    }

    /// Parses TOML text (no environment), validates.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_with_env(text, "config", &[])
    }

    pub fn from_toml_with_env(text: &str, origin: &str, env: &[(String, String)]) -> Result<Config, ConfigError> {
        // Parse the file alone first so errors carry its line numbers.
        let _: Config = toml::from_str(text).map_err(|e| parse_error(origin, text, &e))?;
        let file: toml::Table = toml::from_str(text).map_err(|e| parse_error(origin, text, &e))?;
        let mut doc = file.clone();
        let applied = apply_env(&mut doc, env)?;
        let config = Config::deserialize(toml::Value::Table(doc)).map_err(|e| {
            let message = e.message().trim().to_string();
            match culprit(&file, env, &applied) {
                Some(var) => ConfigError::Env { var, message },
                None => ConfigError::Parse { origin: format!("{origin} with overrides from {}", applied.join(", ")), message },
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value and names the key and the fix for the first problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid { key: key.into(), message };
        parse_addr(&self.server.listen).map_err(|m| invalid("server.listen", m))?;
        parse_addr(&self.server.admin_listen).map_err(|m| invalid("server.admin_listen", m))?;
        if self.server.listen == self.server.admin_listen && !self.server.listen.ends_with(":0") {
            return Err(invalid(
                "server.admin_listen",
                format!("is the same address as server.listen ({}); give the admin API its own port", self.server.listen),
            ));
        }
        if !(1..=MAX_BODY_LIMIT).contains(&self.server.max_body_bytes) {
            return Err(invalid(
                "server.max_body_bytes",
                format!("must be between 1 and {MAX_BODY_LIMIT} (64 MiB); got {}", self.server.max_body_bytes),
            ));
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            return Err(invalid("server.max_connections", format!("must be between 1 and 1000000; got {}", self.server.max_connections)));
        }
        if self.server.request_timeout_ms == 0 {
            return Err(invalid("server.request_timeout_ms", "must be at least 1".into()));
        }
        for (_, prefix, tls) in self.server.tls_listeners() {
            if let Some(tls) = tls {
                validate_tls(prefix, tls)?;
            }
        }
        if self.forward.client_cert.is_some() != self.forward.client_key.is_some() {
            return Err(invalid(
                if self.forward.client_cert.is_some() { "forward.client_key" } else { "forward.client_cert" },
                "forward.client_cert and forward.client_key go together; set both for mutual TLS, or neither".into(),
            ));
        }
        if self.store.path.as_os_str().is_empty() {
            return Err(invalid("store.path", "must name a directory, e.g. \"weir-data\"".into()));
        }
        if self.store.max_bytes < MIN_STORE_BYTES {
            return Err(invalid("store.max_bytes", format!("must be at least {MIN_STORE_BYTES} (1 MiB); got {}", self.store.max_bytes)));
        }
        if !(1..=64).contains(&self.store.shards) {
            return Err(invalid("store.shards", format!("must be between 1 and 64; got {}", self.store.shards)));
        }
        if !(1..=65_536).contains(&self.store.max_batch) {
            return Err(invalid("store.max_batch", format!("must be between 1 and 65536; got {}", self.store.max_batch)));
        }
        if self.store.max_batch_bytes < self.server.max_body_bytes {
            return Err(invalid(
                "store.max_batch_bytes",
                format!(
                    "must be at least server.max_body_bytes ({}) so one largest trigger fits a batch; got {}",
                    self.server.max_body_bytes, self.store.max_batch_bytes
                ),
            ));
        }
        if self.store.idempotency_window_secs == 0 {
            return Err(invalid("store.idempotency_window_secs", "must be at least 1".into()));
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.store.journal_bytes) {
            return Err(invalid(
                "store.journal_bytes",
                format!("must be between 65536 (64 KiB) and 1073741824 (1 GiB); got {}", self.store.journal_bytes),
            ));
        }
        if !(1..=4096).contains(&self.store.cache_mb) {
            return Err(invalid("store.cache_mb", format!("must be between 1 and 4096; got {}", self.store.cache_mb)));
        }
        for (i, url) in self.forward.upstreams.iter().enumerate() {
            validate_upstream(url).map_err(|m| invalid(&format!("forward.upstreams[{i}]"), m))?;
        }
        validate_routes(&self.forward)?;
        if let Some(fleet) = &self.fleet {
            validate_fleet(fleet)?;
        } else if let Some(url) = self.forward.all_upstreams().find(|u| u.starts_with(JETSTREAM_SCHEME)) {
            return Err(invalid(
                "fleet",
                format!(
                    "upstream {url:?} publishes to JetStream, which needs a [fleet] section (nats_urls, pop); add one or use an http(s) URL"
                ),
            ));
        }
        let f = &self.forward;
        let positive = [
            ("forward.timeout_ms", f.timeout_ms),
            ("forward.max_in_flight", u64::from(f.max_in_flight)),
            ("forward.max_attempts", u64::from(f.max_attempts)),
            ("forward.max_age_secs", f.max_age_secs),
            ("forward.backoff_base_ms", f.backoff_base_ms),
            ("forward.failure_threshold", u64::from(f.failure_threshold)),
            ("forward.probe_interval_ms", f.probe_interval_ms),
            ("store.retention_secs", self.store.retention_secs),
        ];
        for (key, v) in positive {
            if v == 0 {
                return Err(invalid(key, "must be at least 1".into()));
            }
        }
        if f.backoff_cap_ms < f.backoff_base_ms {
            return Err(invalid(
                "forward.backoff_cap_ms",
                format!("must be at least forward.backoff_base_ms ({}); got {}", f.backoff_base_ms, f.backoff_cap_ms),
            ));
        }
        if f.probe_interval_ms > 86_400_000 {
            return Err(invalid("forward.probe_interval_ms", "must be at most 86400000 (a day)".into()));
        }
        if !(0.0..=1.0).contains(&f.retry_budget_ratio) || f.retry_budget_ratio.is_nan() {
            return Err(invalid("forward.retry_budget_ratio", format!("must be between 0 and 1; got {}", f.retry_budget_ratio)));
        }
        if self.admin.backup_max_mb_per_sec == 0 {
            return Err(invalid("admin.backup_max_mb_per_sec", "must be at least 1".into()));
        }
        if let Some(token) = &self.admin.token
            && token.trim().is_empty()
        {
            return Err(invalid("admin.token", "is empty; set a long random secret or remove the key".into()));
        }
        if let Some(token) = &self.admin.metrics_token
            && token.trim().is_empty()
        {
            return Err(invalid("admin.metrics_token", "is empty; set a long random secret or remove the key".into()));
        }
        if !matches!(self.log.format.as_str(), "auto" | "human" | "json") {
            return Err(invalid("log.format", format!("must be \"auto\", \"human\" or \"json\"; got {:?}", self.log.format)));
        }
        if let Some(url) = &self.telemetry.otlp_endpoint {
            let uri: http::Uri = url.parse().map_err(|_| invalid("telemetry.otlp_endpoint", format!("{url:?} is not a URL")))?;
            if !matches!(uri.scheme_str(), Some("http") | Some("https")) {
                return Err(invalid("telemetry.otlp_endpoint", format!("{url:?} must be http://host:port or https://host:port")));
            }
        }
        let ratio = self.telemetry.trace_sample_ratio;
        if !(0.0..=1.0).contains(&ratio) {
            return Err(invalid(
                "telemetry.trace_sample_ratio",
                format!("must be between 0.0 (no new trace) and 1.0 (every trace); got {ratio}"),
            ));
        }
        let p = &self.plugins;
        if !(1..=1024).contains(&p.concurrency) {
            return Err(invalid("plugins.concurrency", format!("must be between 1 and 1024; got {}", p.concurrency)));
        }
        if !(1024..=256 * 1024 * 1024).contains(&p.max_component_bytes) {
            return Err(invalid(
                "plugins.max_component_bytes",
                format!("must be between 1024 and 268435456 (256 MiB); got {}", p.max_component_bytes),
            ));
        }
        if !(100..=3_600_000).contains(&p.compile_timeout_ms) {
            return Err(invalid(
                "plugins.compile_timeout_ms",
                format!("must be between 100 and 3600000 (one hour); got {}", p.compile_timeout_ms),
            ));
        }
        if !(1..=1_000_000).contains(&p.max_functions) {
            return Err(invalid("plugins.max_functions", format!("must be between 1 and 1000000; got {}", p.max_functions)));
        }
        if !(16..=65_536).contains(&p.compile_memory_mb) {
            return Err(invalid(
                "plugins.compile_memory_mb",
                format!("must be between 16 and 65536; got {} (the default 512 compiles large plugins)", p.compile_memory_mb),
            ));
        }
        if !(1..=64).contains(&p.compile_concurrency) {
            return Err(invalid("plugins.compile_concurrency", format!("must be between 1 and 64; got {}", p.compile_concurrency)));
        }
        if !(1..=MAX_PLUGIN_MEMORY_MB).contains(&p.fleet_memory_mb) {
            return Err(invalid(
                "plugins.fleet_memory_mb",
                format!("must be between 1 and {MAX_PLUGIN_MEMORY_MB}; got {}", p.fleet_memory_mb),
            ));
        }
        if p.max_log_bytes < 16 {
            return Err(invalid("plugins.max_log_bytes", "must be at least 16".into()));
        }
        let mut seen = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            let key = format!("tenants[{i}].id");
            validate_label(&t.id).map_err(|m| invalid(&key, m))?;
            if !seen.insert(t.id.as_str()) {
                return Err(invalid(&key, format!("tenant {:?} is listed twice; remove one block", t.id)));
            }
            if !(1..=60_000).contains(&t.plugin_timeout_ms) {
                return Err(invalid(
                    &format!("tenants[{i}].plugin_timeout_ms"),
                    format!("must be between 1 and 60000; got {} (the default 50 suits most plugins)", t.plugin_timeout_ms),
                ));
            }
            if !(1..=MAX_PLUGIN_MEMORY_MB).contains(&t.plugin_memory_mb) {
                return Err(invalid(
                    &format!("tenants[{i}].plugin_memory_mb"),
                    format!("must be between 1 and {MAX_PLUGIN_MEMORY_MB}; got {}", t.plugin_memory_mb),
                ));
            }
            let sources = [t.token.is_some(), t.token_file.is_some(), t.token_env.is_some()];
            if sources.iter().filter(|s| **s).count() > 1 {
                return Err(invalid(&format!("tenants[{i}].token"), "give at most one of token, token_file and token_env".into()));
            }
            if let Some(path) = &t.plugin
                && path.as_os_str().is_empty()
            {
                return Err(invalid(&format!("tenants[{i}].plugin"), "is empty; name a .wasm component file or remove the key".into()));
            }
        }
        Ok(())
    }

    pub fn tenant(&self, id: &str) -> Option<&TenantConfig> {
        self.tenants.iter().find(|t| t.id == id)
    }
}

pub const MAX_BODY_LIMIT: u64 = 64 * 1024 * 1024;
pub const MAX_PLUGIN_MEMORY_MB: u64 = 1024;
const MIN_STORE_BYTES: u64 = 1024 * 1024;

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    s.parse().map_err(|_| format!("{s:?} is not a socket address; write it as \"IP:PORT\", e.g. \"127.0.0.1:8080\""))
}

/// Tenant ids and source labels: what may appear in a URL path segment and a metric label.
pub fn validate_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{s:?} must be 1 to 64 characters long"));
    }
    if !s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.')) {
        return Err(format!("{s:?} may only contain ASCII letters, digits, '-', '_' and '.'"));
    }
    Ok(())
}

fn validate_tls(prefix: &str, tls: &TlsConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid { key: format!("{prefix}.{key}"), message };
    if tls.cert.as_os_str().is_empty() {
        return Err(invalid("cert", "must name the PEM certificate chain file, e.g. \"/etc/weir/tls/cert.pem\"".into()));
    }
    if tls.key.as_os_str().is_empty() {
        return Err(invalid("key", "must name the PEM private key file, e.g. \"/etc/weir/tls/key.pem\"".into()));
    }
    if crate::tls::versions(&tls.min_version).is_none() {
        return Err(invalid(
            "min_version",
            format!("must be \"1.2\" or \"1.3\" (older versions are not offered); got {:?}", tls.min_version),
        ));
    }
    if !(1..=300_000).contains(&tls.handshake_timeout_ms) {
        return Err(invalid("handshake_timeout_ms", format!("must be between 1 and 300000; got {}", tls.handshake_timeout_ms)));
    }
    Ok(())
}

/// Route names unique and valid, every route with an upstream, and every
/// deny list naming a configured upstream and valid header names.
fn validate_routes(f: &ForwardConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid { key: key.into(), message };
    let mut names = std::collections::BTreeSet::new();
    for (i, r) in f.routes.iter().enumerate() {
        let key = |k: &str| format!("forward.routes[{i}].{k}");
        validate_label(&r.name).map_err(|m| invalid(&key("name"), m))?;
        if !names.insert(r.name.as_str()) {
            return Err(invalid(&key("name"), format!("route {:?} is defined twice; give each route one table", r.name)));
        }
        if r.upstreams.is_empty() {
            return Err(invalid(&key("upstreams"), "is empty; list at least one upstream URL, primary first".into()));
        }
        for (j, url) in r.upstreams.iter().enumerate() {
            validate_upstream(url).map_err(|m| invalid(&format!("forward.routes[{i}].upstreams[{j}]"), m))?;
        }
    }
    for (url, names) in &f.deny_headers {
        let key = format!("forward.deny_headers.{url:?}");
        if !f.upstreams.contains(url) && !f.routes.iter().any(|r| r.upstreams.contains(url)) {
            return Err(invalid(&key, "names no upstream; use a URL from forward.upstreams or a route's upstreams".into()));
        }
        for n in names {
            if n.is_empty() || n.bytes().any(|b| b.is_ascii_uppercase()) || http::HeaderName::from_bytes(n.as_bytes()).is_err() {
                return Err(invalid(&key, format!("{n:?} is not a lower-case header name")));
            }
        }
    }
    Ok(())
}

fn validate_upstream(url: &str) -> Result<(), String> {
    if let Some(template) = url.strip_prefix(JETSTREAM_SCHEME) {
        return validate_subject_template(template).map_err(|m| format!("{url:?}: {m}"));
    }
    let uri: http::Uri = url.parse().map_err(|_| format!("{url:?} is not a URL; write e.g. \"http://10.0.0.5:9000/triggers\""))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => return Err(format!("{url:?} must start with http://, https:// or jetstream:")),
    }
    if uri.host().is_none() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// A NATS subject template: dot-separated tokens of letters, digits, `-`, `_`,
/// or placeholders; no wildcards (Weir publishes to one subject per trigger).
pub fn validate_subject_template(template: &str) -> Result<(), String> {
    if template.is_empty() {
        return Err("names no subject; write e.g. \"jetstream:weir.triggers.{tenant}.{source}\"".into());
    }
    for token in template.split('.') {
        let mut rest = token.to_string();
        for p in SUBJECT_PLACEHOLDERS {
            rest = rest.replace(p, "x");
        }
        if rest.is_empty() || !rest.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_')) {
            return Err(format!(
                "subject token {token:?} is not allowed: use letters, digits, '-', '_' and the placeholders {}, separated by '.'",
                SUBJECT_PLACEHOLDERS.join(" ")
            ));
        }
    }
    Ok(())
}

/// Names usable as a JetStream bucket, a KV key part or a subject token.
pub fn validate_nats_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 64 {
        return Err(format!("{s:?} must be 1 to 64 characters long"));
    }
    if !s.bytes().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_')) {
        return Err(format!("{s:?} may only contain ASCII letters, digits, '-' and '_'"));
    }
    Ok(())
}

fn validate_fleet(f: &FleetConfig) -> Result<(), ConfigError> {
    let invalid = |key: &str, message: String| ConfigError::Invalid { key: format!("fleet.{key}"), message };
    if f.nats_urls.is_empty() {
        return Err(invalid("nats_urls", "is empty; list at least one server, e.g. [\"nats://127.0.0.1:4222\"]".into()));
    }
    for (i, url) in f.nats_urls.iter().enumerate() {
        let ok = ["nats://", "tls://"].iter().any(|s| url.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
        if !ok {
            return Err(invalid(&format!("nats_urls[{i}]"), format!("{url:?} must be nats://host:port or tls://host:port")));
        }
    }
    if f.pop.is_empty() {
        return Err(invalid("pop", "is empty; give this PoP its unique name in the fleet, e.g. \"fra1\"".into()));
    }
    validate_nats_name(&f.pop).map_err(|m| invalid("pop", m))?;
    let methods = [f.token.is_some(), f.user.is_some() || f.password.is_some(), f.creds_file.is_some(), f.nkey_seed_file.is_some()];
    if methods.iter().filter(|m| **m).count() > 1 {
        return Err(invalid("token", "give at most one of token, user/password, creds_file and nkey_seed_file".into()));
    }
    if f.user.is_some() != f.password.is_some() {
        return Err(invalid(if f.user.is_some() { "password" } else { "user" }, "user and password go together".into()));
    }
    for (key, v) in [("connect_timeout_ms", f.connect_timeout_ms), ("reconnect_max_ms", f.reconnect_max_ms)] {
        if !(1..=600_000).contains(&v) {
            return Err(invalid(key, format!("must be between 1 and 600000; got {v}")));
        }
    }
    if !(100..=600_000).contains(&f.heartbeat_interval_ms) {
        return Err(invalid("heartbeat_interval_ms", format!("must be between 100 and 600000; got {}", f.heartbeat_interval_ms)));
    }
    if f.heartbeat_ttl_secs.saturating_mul(1000) < 2 * f.heartbeat_interval_ms {
        return Err(invalid(
            "heartbeat_ttl_secs",
            format!(
                "must cover at least two heartbeats (fleet.heartbeat_interval_ms = {}); got {}",
                f.heartbeat_interval_ms, f.heartbeat_ttl_secs
            ),
        ));
    }
    for (key, v) in
        [("control_bucket", &f.control_bucket), ("plugins_bucket", &f.plugins_bucket), ("heartbeats_bucket", &f.heartbeats_bucket)]
    {
        validate_nats_name(v).map_err(|m| invalid(key, m))?;
    }
    if f.command_subject.is_empty() || f.command_subject.split('.').any(|t| validate_nats_name(t).is_err()) {
        return Err(invalid(
            "command_subject",
            format!("{:?} must be dot-separated tokens of letters, digits, '-' and '_'", f.command_subject),
        ));
    }
    Ok(())
}

fn parse_error(origin: &str, text: &str, e: &dyn ParseErrorExt) -> ConfigError {
    let message = match e.byte_span() {
        Some(start) => {
            let line = text[..start.min(text.len())].matches('\n').count() + 1;
            format!("line {line}: {}", e.plain_message())
        }
        None => e.plain_message(),
    };
    ConfigError::Parse { origin: origin.to_string(), message }
}

trait ParseErrorExt {
    fn byte_span(&self) -> Option<usize>;
    fn plain_message(&self) -> String;
}

impl ParseErrorExt for toml::de::Error {
    fn byte_span(&self) -> Option<usize> {
        self.span().map(|s| s.start)
    }
    fn plain_message(&self) -> String {
        self.message().trim().to_string()
    }
}

/// Applies `WEIR_SECTION_KEY=value` overrides. The variable name is matched
/// against the schema (the keys of the default config plus what the file
/// holds), so keys that themselves contain `_` work: `WEIR_SERVER_MAX_BODY_BYTES`.
/// Arrays of tables take an index: `WEIR_TENANTS_0_ID`.
fn apply_env(doc: &mut toml::Table, env: &[(String, String)]) -> Result<Vec<String>, ConfigError> {
    // Optional keys are absent from a serialised default; fill them in so
    // they are known to the schema too.
    let mut example = Config::default();
    example.admin.token = Some(String::new());
    example.admin.metrics_token = Some(String::new());
    example.telemetry.otlp_endpoint = Some(String::new());
    example.server.tls = Some(TlsConfig::default());
    example.server.admin_tls = Some(TlsConfig::default());
    example.forward.ca_file = Some(PathBuf::new());
    example.forward.client_cert = Some(PathBuf::new());
    example.forward.client_key = Some(PathBuf::new());
    example.plugins.compiler = Some(PathBuf::new());
    example.forward.routes.push(RouteConfig::default());
    example.fleet = Some(FleetConfig {
        token: Some(String::new()),
        user: Some(String::new()),
        password: Some(String::new()),
        creds_file: Some(PathBuf::new()),
        nkey_seed_file: Some(PathBuf::new()),
        ca_file: Some(PathBuf::new()),
        ..FleetConfig::default()
    });
    example.tenants.push(TenantConfig {
        plugin: Some(PathBuf::new()),
        token: Some(String::new()),
        token_file: Some(PathBuf::new()),
        token_env: Some(String::new()),
        ..TenantConfig::default()
    });
    let schema = match toml::Value::try_from(example) {
        Ok(toml::Value::Table(t)) => t,
        _ => toml::Table::new(),
    };
    let mut vars: Vec<&(String, String)> =
        env.iter().filter(|(k, _)| k.starts_with(ENV_PREFIX) && !CLI_ENV_VARS.contains(&k.as_str())).collect();
    vars.sort();
    let mut applied = Vec::new();
    for (var, value) in vars {
        let rest = var[ENV_PREFIX.len()..].to_ascii_lowercase();
        let env_err = |message: String| ConfigError::Env { var: var.clone(), message };
        set_path(doc, Some(&schema), &rest, value).map_err(env_err)?;
        applied.push(var.clone());
    }
    Ok(applied)
}

/// The first override (in the order they apply) whose value the config
/// cannot take: with several set, the error names that one variable rather
/// than all of them (seen while writing the config fuzz test). `None` when no single
/// one fails on its own.
fn culprit(file: &toml::Table, env: &[(String, String)], applied: &[String]) -> Option<String> {
    (0..applied.len()).find_map(|i| {
        let upto: Vec<(String, String)> = env.iter().filter(|(k, _)| applied[..=i].contains(k)).cloned().collect();
        let mut doc = file.clone();
        apply_env(&mut doc, &upto).ok()?;
        Config::deserialize(toml::Value::Table(doc)).is_err().then(|| applied[i].clone())
    })
}

fn set_path(table: &mut toml::Table, schema: Option<&toml::Table>, rest: &str, value: &str) -> Result<(), String> {
    // An empty schema table is a free-form map (`[tenants.config]`): any key goes.
    if schema.is_some_and(|s| s.is_empty()) && !rest.is_empty() {
        table.insert(rest.to_string(), toml::Value::String(value.to_string()));
        return Ok(());
    }
    let mut keys: Vec<String> = table.keys().cloned().collect();
    if let Some(s) = schema {
        keys.extend(s.keys().cloned());
    }
    // Longest key first, so `max_body_bytes` wins over a hypothetical `max`.
    keys.sort_by_key(|k| std::cmp::Reverse(k.len()));
    keys.dedup();
    for key in keys {
        let sub_schema = schema.and_then(|s| s.get(&key));
        if rest == key {
            let kind = table.get(&key).or(sub_schema);
            table.insert(key.clone(), env_value(value, kind));
            return Ok(());
        }
        let Some(tail) = rest.strip_prefix(&format!("{key}_")) else { continue };
        match (table.get_mut(&key), sub_schema) {
            (Some(toml::Value::Table(inner)), s) => {
                return set_path(inner, s.and_then(|v| v.as_table()), tail, value);
            }
            (None, Some(toml::Value::Table(s))) => {
                let mut inner = toml::Table::new();
                set_path(&mut inner, Some(s), tail, value)?;
                table.insert(key.clone(), toml::Value::Table(inner));
                return Ok(());
            }
            (Some(toml::Value::Array(items)), s) => {
                let (idx, tail) = tail.split_once('_').unwrap_or((tail, ""));
                let Ok(i) = idx.parse::<usize>() else { continue };
                let item_schema = s.and_then(|v| v.as_array()).and_then(|a| a.first()).and_then(|v| v.as_table());
                let Some(toml::Value::Table(inner)) = items.get_mut(i) else {
                    return Err(format!("`{key}` has no entry {i} to override; add it to the config file first"));
                };
                return set_path(inner, item_schema, tail, value);
            }
            _ => continue,
        }
    }
    Err("does not name a config key; write WEIR_<SECTION>_<KEY> for a key of docs/configuration.md (e.g. WEIR_SERVER_LISTEN), and unset it otherwise".to_string())
}

/// Interprets an environment value by the type the key has.
fn env_value(value: &str, kind: Option<&toml::Value>) -> toml::Value {
    match kind {
        Some(toml::Value::Integer(_)) => value.trim().parse().map(toml::Value::Integer).unwrap_or_else(|_| value.into()),
        Some(toml::Value::Boolean(_)) => value.trim().parse().map(toml::Value::Boolean).unwrap_or_else(|_| value.into()),
        Some(toml::Value::Array(_)) => {
            if value.trim_start().starts_with('[') {
                toml::from_str::<BTreeMap<String, toml::Value>>(&format!("v = {value}"))
                    .ok()
                    .and_then(|mut m| m.remove("v"))
                    .unwrap_or_else(|| value.into())
            } else {
                toml::Value::Array(value.split(',').map(str::trim).filter(|s| !s.is_empty()).map(toml::Value::from).collect())
            }
        }
        _ => toml::Value::String(value.to_string()),
    }
}

#[cfg(test)]
pub(crate) mod fuzz;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_valid_and_match_the_contract() {
        let c = Config::from_toml("").expect("defaults validate");
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.admin_listen, "127.0.0.1:9090");
        assert_eq!(c.store.path, PathBuf::from("weir-data"));
        assert!(c.forward.upstreams.is_empty());
    }

    #[test]
    fn the_example_config_is_valid() {
        let text = include_str!("../../examples/weir.toml");
        let c = Config::from_toml(text).expect("example validates");
        assert!(!c.tenants.is_empty());
    }

    /// Every TOML example in the docs must be a valid config.
    #[test]
    fn the_documented_examples_are_valid() {
        for (name, doc) in
            [("configuration.md", include_str!("../../docs/configuration.md")), ("tls.md", include_str!("../../docs/tls.md"))]
        {
            let blocks: Vec<&str> = doc.split("```toml").skip(1).filter_map(|b| b.split("```").next()).collect();
            assert!(!blocks.is_empty());
            for b in blocks {
                Config::from_toml(b).unwrap_or_else(|e| panic!("docs/{name} example is invalid: {e}\n{b}"));
            }
        }
    }

    /// The reference block of docs/configuration.md shows the scalar keys
    /// of `[store]` and `[forward]` at their defaults (paths, upstreams,
    /// routes and certificates are examples), so a changed default cannot
    /// leave the docs behind.
    #[test]
    fn the_documented_store_and_forward_values_are_the_defaults() {
        let doc = include_str!("../../docs/configuration.md");
        let block = doc.split("```toml").nth(1).and_then(|b| b.split("```").next()).expect("the reference block");
        let c = Config::from_toml(block).expect("valid");
        // Optional keys shown with example values are not defaults.
        let defaults = ForwardConfig::default();
        let forward = ForwardConfig {
            upstreams: defaults.upstreams.clone(),
            ca_file: None,
            client_cert: None,
            client_key: None,
            routes: defaults.routes.clone(),
            deny_headers: defaults.deny_headers.clone(),
            ..c.forward.clone()
        };
        assert_eq!(forward, defaults);
        let mut store = c.store.clone();
        store.path = StoreConfig::default().path;
        assert_eq!(store, StoreConfig::default());
    }

    #[test]
    fn unknown_key_names_the_line_and_key() {
        let err = Config::from_toml("[server]\nlisten = \"127.0.0.1:1\"\nlissten = 3\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("lissten"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_key() {
        let cases = [
            ("[server]\nlisten = \"nope\"", "server.listen"),
            ("[server]\nmax_body_bytes = 0", "server.max_body_bytes"),
            ("[store]\nmax_bytes = 10", "store.max_bytes"),
            ("[store]\nshards = 0", "store.shards"),
            ("[forward]\nupstreams = [\"ftp://x\"]", "forward.upstreams[0]"),
            ("[[tenants]]\nid = \"a b\"", "tenants[0].id"),
            ("[[tenants]]\nid = \"a\"\n[[tenants]]\nid = \"a\"", "tenants[1].id"),
            ("[admin]\ntoken = \" \"", "admin.token"),
            ("[log]\nformat = \"xml\"", "log.format"),
            ("[plugins]\nmax_functions = 0", "plugins.max_functions"),
            ("[plugins]\ncompile_memory_mb = 1", "plugins.compile_memory_mb"),
            ("[plugins]\ncompile_concurrency = 0", "plugins.compile_concurrency"),
            ("[plugins]\nfleet_memory_mb = 0", "plugins.fleet_memory_mb"),
            ("[telemetry]\ntrace_sample_ratio = 1.5", "telemetry.trace_sample_ratio"),
            ("[plugins]\ncompile_timeout_ms = 10", "plugins.compile_timeout_ms"),
            ("[[forward.routes]]\nname = \"a b\"\nupstreams = [\"http://x/\"]", "forward.routes[0].name"),
            ("[[forward.routes]]\nname = \"push\"", "forward.routes[0].upstreams"),
            ("[[forward.routes]]\nname = \"push\"\nupstreams = [\"ftp://x\"]", "forward.routes[0].upstreams[0]"),
            (
                "[[forward.routes]]\nname = \"p\"\nupstreams = [\"http://x/\"]\n[[forward.routes]]\nname = \"p\"\nupstreams = [\"http://y/\"]",
                "forward.routes[1].name",
            ),
            ("[forward.deny_headers]\n\"http://nowhere/\" = [\"x-a\"]", "forward.deny_headers.\"http://nowhere/\""),
            (
                "[forward]\nupstreams = [\"http://x/\"]\n[forward.deny_headers]\n\"http://x/\" = [\"X-Upper\"]",
                "forward.deny_headers.\"http://x/\"",
            ),
            ("[forward]\nupstreams = [\"jetstream:weir.{tenant}\"]", "fleet"),
            ("[fleet]\npop = \"fra1\"\n[forward]\nupstreams = [\"jetstream:weir.*\"]", "forward.upstreams[0]"),
            ("[fleet]\npop = \"fra1\"\n[forward]\nupstreams = [\"jetstream:\"]", "forward.upstreams[0]"),
            ("[fleet]\npop = \"fra1\"\n[forward]\nupstreams = [\"jetstream:a..b\"]", "forward.upstreams[0]"),
            ("[fleet]\nnats_urls = []\npop = \"p\"", "fleet.nats_urls"),
            ("[fleet]\nnats_urls = [\"http://x\"]\npop = \"p\"", "fleet.nats_urls[0]"),
            ("[fleet]", "fleet.pop"),
            ("[fleet]\npop = \"fra 1\"", "fleet.pop"),
            ("[fleet]\npop = \"p\"\ntoken = \"t\"\ncreds_file = \"c\"", "fleet.token"),
            ("[fleet]\npop = \"p\"\nuser = \"u\"", "fleet.password"),
            ("[fleet]\npop = \"p\"\nheartbeat_ttl_secs = 1", "fleet.heartbeat_ttl_secs"),
            ("[fleet]\npop = \"p\"\ncontrol_bucket = \"a.b\"", "fleet.control_bucket"),
            ("[fleet]\npop = \"p\"\ncommand_subject = \"a.>\"", "fleet.command_subject"),
        ];
        for (text, key) in cases {
            let err = Config::from_toml(text).unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{text:?} gave {err}");
        }
    }

    #[test]
    fn fleet_section_parses_with_defaults_and_env_overrides() {
        let text = "[fleet]\npop = \"fra1\"\n[forward]\nupstreams = [\"jetstream:weir.triggers.{tenant}.{source}\", \"http://a/\"]\n";
        let c = Config::from_toml_with_env(text, "t", &env(&[("WEIR_FLEET_NATS_URLS", "nats://10.0.0.1:4222, nats://10.0.0.2:4222")]))
            .expect("valid");
        let f = c.fleet.expect("fleet");
        assert_eq!(f.pop, "fra1");
        assert_eq!(f.nats_urls, vec!["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"]);
        assert_eq!(f.control_bucket, "weir_control");
        assert!(Config::from_toml("").expect("defaults").fleet.is_none());
    }

    #[test]
    fn routes_and_deny_lists_parse_and_a_route_takes_env_overrides() {
        let text = "[forward]\nupstreams = [\"http://a/\"]\n[forward.deny_headers]\n\"http://a/\" = [\"x-secret\"]\n\
                    [[forward.routes]]\nname = \"push\"\nupstreams = [\"http://b/\"]\n";
        let c = Config::from_toml_with_env(text, "t", &env(&[("WEIR_FORWARD_ROUTES_0_UPSTREAMS", "http://c/, http://a/")])).expect("valid");
        assert_eq!(c.forward.routes, vec![RouteConfig { name: "push".into(), upstreams: vec!["http://c/".into(), "http://a/".into()] }]);
        assert_eq!(c.forward.deny_headers["http://a/"], vec!["x-secret".to_string()]);
    }

    #[test]
    fn env_overrides_every_kind_of_key() {
        let text = "[[tenants]]\nid = \"acme\"\n";
        let c = Config::from_toml_with_env(
            text,
            "t",
            &env(&[
                ("WEIR_SERVER_LISTEN", "127.0.0.1:1234"),
                ("WEIR_SERVER_MAX_BODY_BYTES", "2048"),
                ("WEIR_STORE_PATH", "/tmp/x"),
                ("WEIR_FORWARD_UPSTREAMS", "http://a:1/t, http://b:2/t"),
                ("WEIR_ADMIN_TOKEN", "s3cret-token"),
                ("WEIR_TENANTS_0_ID", "globex"),
                ("WEIR_TENANTS_0_PLUGIN_TIMEOUT_MS", "75"),
                ("WEIR_TENANTS_0_CONFIG_SECRET", "hmac-key"),
                ("WEIR_ADMIN_URL", "http://ignored-by-config"),
                ("WEIR_ADMIN_CA_FILE", "/ignored/by/config.pem"),
                ("WEIR_SERVER_TLS_CERT", "/etc/weir/ingest.crt"),
                ("WEIR_SERVER_TLS_KEY", "/etc/weir/ingest.key"),
                ("WEIR_SERVER_ADMIN_TLS_CERT", "/etc/weir/admin.crt"),
                ("WEIR_SERVER_ADMIN_TLS_KEY", "/etc/weir/admin.key"),
                ("WEIR_SERVER_MAX_CONNECTIONS", "100"),
                ("WEIR_FORWARD_CA_FILE", "/etc/weir/ca.pem"),
                ("PATH", "/bin"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.server.listen, "127.0.0.1:1234");
        assert_eq!(c.server.max_body_bytes, 2048);
        assert_eq!(c.store.path, PathBuf::from("/tmp/x"));
        assert_eq!(c.forward.upstreams, vec!["http://a:1/t", "http://b:2/t"]);
        assert_eq!(c.admin.token.as_deref(), Some("s3cret-token"));
        assert_eq!(c.tenants[0].id, "globex");
        assert_eq!(c.tenants[0].plugin_timeout_ms, 75);
        assert_eq!(c.tenants[0].config.get("secret").map(String::as_str), Some("hmac-key"));
        let tls = c.server.tls.as_ref().expect("[server.tls] made by the environment");
        assert_eq!((tls.cert.as_path(), tls.key.as_path()), (Path::new("/etc/weir/ingest.crt"), Path::new("/etc/weir/ingest.key")));
        assert_eq!(tls.handshake_timeout_ms, TlsConfig::default().handshake_timeout_ms);
        assert_eq!(c.server.admin_tls.as_ref().map(|t| t.cert.as_path()), Some(Path::new("/etc/weir/admin.crt")));
        assert_eq!(c.server.max_connections, 100);
        assert_eq!(c.forward.ca_file.as_deref(), Some(Path::new("/etc/weir/ca.pem")));
    }

    #[test]
    fn the_metrics_token_and_the_free_space_reserve_come_from_the_environment_too() {
        let env = env(&[("WEIR_ADMIN_METRICS_TOKEN", "scrape-secret"), ("WEIR_STORE_MIN_FREE_BYTES", "1048576")]);
        let c = Config::from_toml_with_env("[[tenants]]\nid = \"acme\"\n", "t", &env).expect("valid");
        assert_eq!(c.admin.metrics_token.as_deref(), Some("scrape-secret"));
        assert_eq!(c.store.min_free_bytes, 1_048_576);
        assert_eq!(Config::default().store.min_free_bytes, 256 * 1024 * 1024);
        let empty = Config::from_toml_with_env("[admin]\nmetrics_token = \" \"\n[[tenants]]\nid = \"acme\"\n", "t", &[]);
        assert!(empty.is_err_and(|e| e.to_string().contains("admin.metrics_token")));
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = Config::from_toml_with_env("", "t", &env(&[("WEIR_SERVER_LISTN", "x")])).unwrap_err().to_string();
        assert!(err.contains("WEIR_SERVER_LISTN"), "{err}");
        let err = Config::from_toml_with_env("", "t", &env(&[("WEIR_SERVER_MAX_BODY_BYTES", "lots")])).unwrap_err().to_string();
        assert!(err.contains("WEIR_SERVER_MAX_BODY_BYTES") && err.contains("lots"), "{err}");
    }

    /// With several overrides set, the error named them all ("with
    /// overrides from A, B, C"): it names the one the config cannot take.
    #[test]
    fn of_several_overrides_the_error_names_the_bad_one() {
        let vars = env(&[("WEIR_ADMIN_TOKEN", "t0ken-long-enough"), ("WEIR_SERVER_MAX_BODY_BYTES", "lots"), ("WEIR_STORE_PATH", "/tmp/x")]);
        match Config::from_toml_with_env("", "t", &vars) {
            Err(ConfigError::Env { var, message }) => {
                assert_eq!(var, "WEIR_SERVER_MAX_BODY_BYTES");
                assert!(message.contains("lots"), "{message}");
            }
            other => panic!("expected the variable named, got {other:?}"),
        }
    }
}
