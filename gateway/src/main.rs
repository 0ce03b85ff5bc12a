//! The `weir` binary: argument parsing, signals, and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use weir::cli::{self, CliError, FilterFlags, Global, NatsArgs, Paging};
use weir::{Config, Listeners, shutdown};

/// `weir --version`: the release and the commit it was built from (`build.rs`).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("GATEWAY_BUILD_COMMIT"), ")");

#[derive(Parser)]
#[command(name = "weir", version = VERSION, about = "Weir: a durable edge trigger gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct AdminArgs {
    /// Admin API base URL [default: the config's admin listener, else http://127.0.0.1:9090]
    #[arg(long, env = "WEIR_ADMIN_URL", global = true)]
    admin_url: Option<String>,
    /// Config file to take the admin listener from (when --admin-url is not given)
    #[arg(long, short, env = "WEIR_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// File holding the bearer token (otherwise WEIR_ADMIN_TOKEN); never pass tokens as arguments
    #[arg(long, global = true)]
    token_file: Option<PathBuf>,
    /// Print JSON for scripts instead of tables
    #[arg(long, global = true)]
    json: bool,
    /// Extra CA certificates (PEM) to trust for an https:// admin URL, besides the system's
    #[arg(long, env = "WEIR_ADMIN_CA_FILE", global = true)]
    ca_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (embedded defaults when --config is not given).
    Serve {
        /// TOML config file; WEIR_* environment variables override its keys.
        #[arg(long, short, env = "WEIR_CONFIG")]
        config: Option<PathBuf>,
        /// Log format: auto (human on a terminal, JSON otherwise), human or json.
        #[arg(long, env = "WEIR_LOG_FORMAT")]
        log_format: Option<String>,
    },
    /// Validate a config file (with WEIR_* overrides) and exit: 0 when valid.
    CheckConfig {
        /// TOML config file.
        file: PathBuf,
    },
    /// Counts, store size, upstream states.
    Status {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List or show triggers.
    Triggers {
        #[command(subcommand)]
        command: TriggersCommand,
    },
    /// Move matching triggers back to pending (delivered again, same id and idempotency key).
    Replay {
        #[command(flatten)]
        filter: FilterFlags,
        /// Only these trigger ids (comma-separated)
        #[arg(long, value_delimiter = ',')]
        ids: Vec<String>,
        /// Count what would be replayed; change nothing
        #[arg(long)]
        dry_run: bool,
        /// Run the tenant's current plugin again on the raw body (always done for quarantined triggers)
        #[arg(long)]
        rerun_plugin: bool,
        /// Run as a background job even when small
        #[arg(long)]
        background: bool,
        /// At most this many triggers per second (a large replay at the upstream's pace)
        #[arg(long)]
        max_per_sec: Option<u32>,
        /// Replay on every PoP of the fleet, over NATS (the [fleet] section of --config, or --nats URL): each replays locally
        #[arg(long)]
        fleet: bool,
        /// Show replay jobs instead of starting one: JOB (as `weir replay` printed it), or POP:JOB with --fleet
        #[arg(long, num_args = 1.., value_delimiter = ',')]
        status: Vec<String>,
        /// With --status JOB: follow the jobs to their end (a progress bar on a terminal)
        #[arg(long, requires = "status", conflicts_with = "fleet")]
        follow: bool,
        /// With --fleet: how long to wait for the PoPs' answers, in milliseconds
        #[arg(long, default_value_t = 10_000)]
        fleet_timeout_ms: u64,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The fleet, over NATS (not a PoP's admin API).
    Fleet {
        #[command(subcommand)]
        command: FleetCommand,
    },
    /// Delete matching triggers for good (counts only, unless --yes).
    Purge {
        #[command(flatten)]
        filter: FilterFlags,
        /// Only these trigger ids (comma-separated)
        #[arg(long, value_delimiter = ',')]
        ids: Vec<String>,
        /// Count what would be purged; delete nothing (the default without --yes)
        #[arg(long)]
        dry_run: bool,
        /// Really delete what matches (take a backup first)
        #[arg(long, conflicts_with = "dry_run")]
        yes: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The audit log of operator actions, newest first.
    Audit {
        /// Only this tenant's entries
        #[arg(long)]
        tenant: Option<String>,
        #[command(flatten)]
        paging: Paging,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The tenants this gateway serves.
    Tenants {
        #[command(subcommand)]
        command: TenantsCommand,
    },
    /// Hold a tenant's triggers (still accepted and stored, not forwarded).
    Pause {
        /// The tenant to hold
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Release a paused tenant's triggers.
    Resume {
        /// The tenant to release
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Upload, list, roll back or activate a tenant's plugin.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Stream a consistent snapshot of the store to a file.
    Backup {
        /// The backup file (written to FILE.partial, renamed when complete)
        #[arg(long)]
        out: PathBuf,
        /// Replace --out when it already exists
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Rebuild a store from a backup into an empty data directory (offline).
    Restore {
        /// The backup file (`weir backup --out`)
        #[arg(long)]
        from: PathBuf,
        /// The new store directory: empty or absent
        #[arg(long)]
        data_dir: PathBuf,
    },
    /// Ask /healthz (or /readyz) on the admin listener; exit 0 when it answers 200 (container health checks).
    Health {
        /// Ask /readyz (the store takes writes) instead of /healthz (the process runs)
        #[arg(long)]
        ready: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Print a shell completion script: `source <(weir completions bash)`.
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Check or repair the store files (offline: stop the gateway first).
    Store {
        #[command(subcommand)]
        command: StoreCommand,
    },
    /// Internal: the gateway runs this to compile a plugin in a limited child
    /// process (component on stdin, artifact on stdout).
    #[command(name = weir::plugin::COMPILE_SUBCOMMAND, hide = true)]
    CompilePlugin(weir::plugin::CompileArgs),
}

#[derive(Args, Clone)]
struct FleetArgs {
    #[command(flatten)]
    nats: NatsArgs,
    /// Config file whose [fleet] section to connect with (when --nats is not given)
    #[arg(long, short, env = "WEIR_CONFIG")]
    config: Option<PathBuf>,
    /// Print JSON for scripts
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum FleetCommand {
    /// One row per PoP from its heartbeat, and flags: stale PoPs, plugin-version skew, open upstreams (exit 6 when flagged).
    Status {
        #[command(flatten)]
        nats: NatsArgs,
        /// Config file whose [fleet] section to connect with (when --nats is not given)
        #[arg(long, short, env = "WEIR_CONFIG")]
        config: Option<PathBuf>,
        /// Print JSON for scripts (docs/fleet.md)
        #[arg(long)]
        json: bool,
    },
    /// Declare, change, remove or list the tenants every PoP serves (the control bucket's tenants.<id>).
    Tenant {
        #[command(subcommand)]
        command: FleetTenantCommand,
    },
    /// Pause a tenant's forwarding on every PoP (its triggers are still accepted and kept).
    Pause {
        /// The tenant to pause everywhere
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Resume a tenant's forwarding on every PoP.
    Resume {
        /// The tenant to resume everywhere
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

#[derive(Subcommand)]
enum FleetTenantCommand {
    /// Declare a tenant for the whole fleet, or replace its settings (checked here first).
    Set {
        /// The tenant id (1-64 of [A-Za-z0-9._-])
        tenant: String,
        #[command(flatten)]
        settings: cli::FleetTenantFlags,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// Remove a fleet tenant: new triggers get 404 on every PoP; what was accepted is still forwarded.
    Remove {
        /// The fleet tenant to remove
        tenant: String,
        #[command(flatten)]
        fleet: FleetArgs,
    },
    /// The fleet's tenants, their settings and fleet-wide pauses.
    List {
        #[command(flatten)]
        fleet: FleetArgs,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Verify every store file (checksums, records with bodies, indexes, counters); exit 1 when any is damaged.
    Check {
        #[command(flatten)]
        dir: StoreDir,
    },
    /// Rebuild each damaged store file from what can be read of it; the damaged file is moved aside.
    Repair {
        #[command(flatten)]
        dir: StoreDir,
    },
}

/// Which store: the config's `store.path`, or a directory.
#[derive(Args)]
#[group(required = true, multiple = false)]
struct StoreDir {
    /// Config file whose store.path to use (WEIR_* overrides apply)
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// The store directory itself
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

impl StoreDir {
    fn resolve(&self) -> Result<PathBuf, CliError> {
        match (&self.data_dir, &self.config) {
            (Some(dir), _) => Ok(dir.clone()),
            (None, Some(file)) => Ok(Config::load(Some(file)).map_err(|e| CliError::Usage(e.to_string()))?.store.path),
            (None, None) => Err(CliError::Usage("give --config FILE or --data-dir DIR".into())),
        }
    }
}

#[derive(Subcommand)]
enum TenantsCommand {
    /// Every tenant served (configured and from the fleet), paused ones marked.
    List {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum TriggersCommand {
    /// List triggers, newest first (filters, paging).
    List {
        #[command(flatten)]
        filter: FilterFlags,
        #[command(flatten)]
        paging: Paging,
        /// asc (oldest first) or desc (newest first)
        #[arg(long, default_value = "desc")]
        order: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// One trigger: fields, stored headers, bodies, attempts, note.
    Show {
        /// The trigger's id (26 characters, as listed)
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Upload a component (.wasm) and activate it.
    Upload {
        /// The tenant whose plugin it is
        #[arg(long)]
        tenant: String,
        /// The component file (built for wasm32-wasip2)
        file: PathBuf,
        /// For every PoP of the fleet: checked and test-compiled here, then put
        /// into NATS (the [fleet] of --config, or --nats); no admin API involved
        #[arg(long)]
        fleet: bool,
        #[command(flatten)]
        nats: NatsArgs,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The tenant's stored versions (* = active), with their whole sha256.
    List {
        /// The tenant whose versions to list
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Re-activate the version before the active one.
    Rollback {
        /// The tenant to roll back
        #[arg(long)]
        tenant: String,
        /// Roll back the fleet's plugin (a KV update every PoP follows)
        #[arg(long)]
        fleet: bool,
        #[command(flatten)]
        nats: NatsArgs,
        /// With --fleet: the component (sha256) to go back to; default: the previous one
        #[arg(long, requires = "fleet")]
        to: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Activate any stored version (`plugin list`): roll forward again after a rollback.
    Activate {
        /// The tenant whose version to activate
        #[arg(long)]
        tenant: String,
        /// The version number, as `weir plugin list` shows it
        version: u32,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// new, build, check, test: the plugin author's loop (no gateway needed).
    #[command(flatten)]
    Dev(cli::PluginDevCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Not for serve: a gateway whose log reader went away keeps serving.
    if !matches!(cli.command, Command::Serve { .. }) {
        cli::exit_quietly_on_closed_pipe();
    }
    match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            // Generated whole, then printed: a closed pipe ends it as quietly as any command.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "weir", &mut script);
            print!("{}", String::from_utf8_lossy(&script));
            ExitCode::SUCCESS
        }
        Command::CheckConfig { file } => match Config::load(Some(&file)).map_err(|e| e.to_string()).and_then(|c| {
            // The certificate files too: a config that names unusable ones would not start.
            weir::tls::check(&c).map_err(|e| e.to_string())?;
            Ok(c)
        }) {
            Ok(c) => {
                println!(
                    "{}: valid ({} tenant(s), {} upstream(s), store in {})",
                    file.display(),
                    c.tenants.len(),
                    c.forward.upstreams.len(),
                    c.store.path.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
        Command::CompilePlugin(args) => weir::plugin::compile_child(&args),
        Command::Plugin { command: PluginCommand::Dev(command) } => cli::plugin_dev(command),
        Command::Store { command } => {
            let result = match command {
                StoreCommand::Check { dir } => dir.resolve().and_then(|d| cli::store_check(&d)),
                StoreCommand::Repair { dir } => dir.resolve().and_then(|d| cli::store_repair(&d)),
            };
            match result {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(e.exit_code())
                }
            }
        }
        Command::Serve { config, log_format } => match serve(config, log_format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
        other => match admin_command(other) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e @ CliError::Attention(_)) => {
                eprintln!("{e}");
                ExitCode::from(e.exit_code())
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(e.exit_code())
            }
        },
    }
}

fn global(a: &AdminArgs) -> Result<Global, CliError> {
    let admin_url = match &a.admin_url {
        Some(u) => u.clone(),
        None => match &a.config {
            Some(path) => {
                let c = Config::load(Some(path)).map_err(|e| CliError::Usage(e.to_string()))?;
                cli::admin_url(&c.server)
            }
            None => "http://127.0.0.1:9090".into(),
        },
    };
    let token = match &a.token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| CliError::Usage(format!("cannot read --token-file {}: {e}", path.display())))?
                .trim()
                .to_string(),
        ),
        None => std::env::var("WEIR_ADMIN_TOKEN").ok(),
    };
    Ok(Global { admin_url, token, json: a.json, ca_file: a.ca_file.clone() })
}

/// Where a `--fleet` command finds NATS.
fn fleet_target(a: &AdminArgs, nats: NatsArgs) -> cli::FleetTarget {
    cli::FleetTarget { config: a.config.clone(), nats, json: a.json }
}

fn admin_command(command: Command) -> Result<(), CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(async move {
        match command {
            Command::Status { admin } => cli::status(&global(&admin)?).await,
            Command::Triggers { command: TriggersCommand::List { filter, paging, order, admin } } => {
                cli::list(&global(&admin)?, &filter, &paging, &order).await
            }
            Command::Triggers { command: TriggersCommand::Show { id, admin } } => cli::show(&global(&admin)?, &id).await,
            Command::Replay {
                fleet: true, filter, ids, dry_run, rerun_plugin, max_per_sec, status, fleet_timeout_ms, nats, admin, ..
            } => {
                let f = cli::fleet_config(&nats, admin.config.as_deref())?;
                let timeout = Duration::from_millis(fleet_timeout_ms.max(1));
                if !status.is_empty() {
                    return cli::fleet_replay_status(&f, &status, timeout, admin.json).await;
                }
                let r = cli::FleetReplay { filter: &filter, ids: &ids, dry_run, rerun_plugin, max_per_sec, timeout, json: admin.json };
                cli::fleet_replay(&f, &r).await
            }
            Command::Replay { status, follow, admin, .. } if !status.is_empty() => {
                cli::replay_status(&global(&admin)?, &status, follow).await
            }
            Command::Replay { filter, ids, dry_run, rerun_plugin, background, max_per_sec, admin, .. } => {
                cli::replay(&global(&admin)?, &filter, &ids, dry_run, rerun_plugin, background, max_per_sec).await
            }
            Command::Fleet { command: FleetCommand::Status { nats, config, json } } => {
                cli::fleet_status(&cli::fleet_config(&nats, config.as_deref())?, json).await
            }
            Command::Fleet { command: FleetCommand::Tenant { command } } => match command {
                FleetTenantCommand::Set { tenant, settings, fleet } => {
                    cli::fleet_tenant_set(&cli::fleet_config(&fleet.nats, fleet.config.as_deref())?, &tenant, &settings, fleet.json).await
                }
                FleetTenantCommand::Remove { tenant, fleet } => {
                    cli::fleet_tenant_remove(&cli::fleet_config(&fleet.nats, fleet.config.as_deref())?, &tenant, fleet.json).await
                }
                FleetTenantCommand::List { fleet } => {
                    cli::fleet_tenant_list(&cli::fleet_config(&fleet.nats, fleet.config.as_deref())?, fleet.json).await
                }
            },
            Command::Fleet { command: FleetCommand::Pause { tenant, fleet } } => {
                cli::fleet_pause(&cli::fleet_config(&fleet.nats, fleet.config.as_deref())?, &tenant, true, fleet.json).await
            }
            Command::Fleet { command: FleetCommand::Resume { tenant, fleet } } => {
                cli::fleet_pause(&cli::fleet_config(&fleet.nats, fleet.config.as_deref())?, &tenant, false, fleet.json).await
            }
            Command::Purge { filter, ids, dry_run, yes, admin } => cli::purge(&global(&admin)?, &filter, &ids, dry_run, yes).await,
            Command::Audit { tenant, paging, admin } => cli::audit(&global(&admin)?, tenant.as_deref(), &paging).await,
            Command::Tenants { command: TenantsCommand::List { admin } } => cli::tenants(&global(&admin)?).await,
            Command::Health { ready, admin } => cli::health(&global(&admin)?, ready).await,
            Command::Pause { tenant, admin } => cli::pause(&global(&admin)?, &tenant, true).await,
            Command::Resume { tenant, admin } => cli::pause(&global(&admin)?, &tenant, false).await,
            Command::Plugin { command: PluginCommand::Upload { tenant, file, fleet: true, nats, admin } } => {
                cli::plugin_upload_fleet(&fleet_target(&admin, nats), &tenant, &file).await
            }
            Command::Plugin { command: PluginCommand::Upload { tenant, file, admin, .. } } => {
                cli::plugin_upload(&global(&admin)?, &tenant, &file).await
            }
            Command::Plugin { command: PluginCommand::List { tenant, admin } } => cli::plugin_list(&global(&admin)?, &tenant).await,
            Command::Plugin { command: PluginCommand::Rollback { tenant, fleet: true, nats, to, admin } } => {
                cli::plugin_rollback_fleet(&fleet_target(&admin, nats), &tenant, to.as_deref()).await
            }
            Command::Plugin { command: PluginCommand::Rollback { tenant, admin, .. } } => {
                cli::plugin_rollback(&global(&admin)?, &tenant).await
            }
            Command::Plugin { command: PluginCommand::Activate { tenant, version, admin } } => {
                cli::plugin_activate(&global(&admin)?, &tenant, version).await
            }
            Command::Backup { out, force, admin } => cli::backup(&global(&admin)?, &out, force).await,
            Command::Restore { from, data_dir } => {
                // No budget or reserve while restoring: the snapshot decides what is in it, and
                // a restore that runs out of disk fails whole (nothing is left at data_dir).
                let config =
                    weir::config::StoreConfig { path: data_dir.clone(), max_bytes: u64::MAX, min_free_bytes: 0, ..Default::default() };
                let summary = weir::store::snapshot::restore(&from, &config).await.map_err(|e| match e {
                    // Bad input, exit 2 (docs/cli.md): a damaged or cut file is no backup either.
                    weir::store::RestoreError::NotEmpty { .. }
                    | weir::store::RestoreError::NotABackup { .. }
                    | weir::store::RestoreError::Damaged { .. }
                    | weir::store::RestoreError::Read { .. } => CliError::Usage(e.to_string()),
                    other => CliError::Failed(other.to_string()),
                })?;
                println!(
                    "restored {} trigger(s) and {} plugin version(s) into {}; start weir with store.path = {:?}",
                    summary.triggers,
                    summary.plugin_versions,
                    data_dir.display(),
                    data_dir.display()
                );
                Ok(())
            }
            Command::Serve { .. }
            | Command::CheckConfig { .. }
            | Command::CompilePlugin(_)
            | Command::Store { .. }
            | Command::Completions { .. }
            | Command::Plugin { command: PluginCommand::Dev(_) } => Err(CliError::Usage("not an admin command".into())),
        }
    })
}

fn serve(config_path: Option<PathBuf>, log_format: Option<String>) -> anyhow::Result<()> {
    // Until the runtime's handler is in place (after the config is read and
    // the ports are bound), a hangup is ignored rather than fatal.
    // SAFETY: setting a signal's disposition to SIG_IGN runs no handler code.
    unsafe { libc::signal(libc::SIGHUP, libc::SIG_IGN) };
    let config = Config::load(config_path.as_deref())?;
    let format = log_format.unwrap_or_else(|| config.log.format.clone());
    weir::telemetry::init_logging(&format, &config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        let (trigger, shutdown) = shutdown::channel();
        // Both signal streams exist before the first signal is handled, so a
        // second signal sent right after the first is never missed.
        let mut signals = Signals::new();
        hangup_is_not_fatal(config.server.tls_listeners().iter().any(|(_, _, tls)| tls.is_some()));
        tokio::spawn(async move {
            signals.next().await;
            tracing::info!("shutdown requested: draining (send the signal again to exit at once)");
            trigger.trigger();
            signals.next().await;
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
        weir::run(config, listeners, shutdown).await?;
        Ok(())
    })
}

/// SIGHUP's default action ends the process. TLS listeners reload their
/// certificates on it (each has its own stream); this one keeps a gateway
/// without TLS alive and says what a hangup does.
fn hangup_is_not_fatal(tls: bool) {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::hangup()) {
        Ok(mut hangup) => {
            tokio::spawn(async move {
                while hangup.recv().await.is_some() {
                    if tls {
                        tracing::info!("SIGHUP: TLS certificates are reloaded; other configuration changes need a restart");
                    } else {
                        tracing::info!("SIGHUP: no TLS certificates to reload; configuration changes need a restart");
                    }
                }
            });
        }
        Err(e) => tracing::warn!(error = %e, "cannot handle SIGHUP; it would stop the process"),
    }
}

/// SIGTERM and SIGINT (Ctrl-C), registered once.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        Signals { term: signal(SignalKind::terminate()).ok(), int: signal(SignalKind::interrupt()).ok() }
    }

    async fn next(&mut self) {
        match (&mut self.term, &mut self.int) {
            (Some(term), Some(int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                // Without signal handlers, Ctrl-C is still caught portably.
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

#[cfg(test)]
#[path = "main_tests.rs"]
mod tests;
