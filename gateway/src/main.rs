//! The `weir` binary: argument parsing, signals, and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use weir::cli::{self, CliError, FilterFlags, Global, NatsArgs};
use weir::{Config, Listeners, shutdown};

#[derive(Parser)]
#[command(name = "weir", version, about = "Weir: a durable edge trigger gateway")]
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
        /// With --fleet: show the progress of fleet replay jobs (POP:JOB, as a fleet replay printed them); starts nothing
        #[arg(long, requires = "fleet", num_args = 1.., value_delimiter = ',')]
        status: Vec<String>,
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
    /// Hold a tenant's triggers (still accepted and stored, not forwarded).
    Pause {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Release a paused tenant's triggers.
    Resume {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Upload, list or roll back a tenant's plugin.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Stream a consistent snapshot of the store to a file.
    Backup {
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Rebuild a store from a backup into an empty data directory (offline).
    Restore {
        #[arg(long)]
        from: PathBuf,
        #[arg(long)]
        data_dir: PathBuf,
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
enum TriggersCommand {
    List {
        #[command(flatten)]
        filter: FilterFlags,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// asc (oldest first) or desc (newest first)
        #[arg(long, default_value = "desc")]
        order: String,
        /// Follow every page
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        admin: AdminArgs,
    },
    Show {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

#[derive(Subcommand)]
enum PluginCommand {
    Upload {
        #[arg(long)]
        tenant: String,
        file: PathBuf,
        /// For every PoP of the fleet: checked and test-compiled here, then put
        /// into NATS (the [fleet] of --config, or --nats); no admin API involved
        #[arg(long)]
        fleet: bool,
        /// NATS server URL for --fleet (replaces the servers of --config's [fleet])
        #[arg(long, requires = "fleet")]
        nats: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    List {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    Rollback {
        #[arg(long)]
        tenant: String,
        /// Roll back the fleet's plugin (a KV update every PoP follows)
        #[arg(long)]
        fleet: bool,
        /// NATS server URL for --fleet (replaces the servers of --config's [fleet])
        #[arg(long, requires = "fleet")]
        nats: Option<String>,
        /// With --fleet: the component (sha256) to go back to; default: the previous one
        #[arg(long, requires = "fleet")]
        to: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// new, build, check, test: the plugin author's loop (no gateway needed).
    #[command(flatten)]
    Dev(cli::PluginDevCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
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
fn fleet_target(a: &AdminArgs, nats: Option<String>) -> cli::FleetTarget {
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
            Command::Triggers { command: TriggersCommand::List { filter, limit, order, all, admin } } => {
                cli::list(&global(&admin)?, &filter, limit, &order, all).await
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
            Command::Replay { filter, ids, dry_run, rerun_plugin, background, max_per_sec, admin, .. } => {
                cli::replay(&global(&admin)?, &filter, &ids, dry_run, rerun_plugin, background, max_per_sec).await
            }
            Command::Fleet { command: FleetCommand::Status { nats, config, json } } => {
                cli::fleet_status(&cli::fleet_config(&nats, config.as_deref())?, json).await
            }
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
            Command::Backup { out, admin } => cli::backup(&global(&admin)?, &out).await,
            Command::Restore { from, data_dir } => {
                // No budget or reserve while restoring: the snapshot decides what is in it, and
                // a restore that runs out of disk fails whole (nothing is left at data_dir).
                let config =
                    weir::config::StoreConfig { path: data_dir.clone(), max_bytes: u64::MAX, min_free_bytes: 0, ..Default::default() };
                let summary = weir::store::snapshot::restore(&from, &config).await.map_err(|e| match e {
                    weir::store::RestoreError::NotEmpty { .. } | weir::store::RestoreError::NotABackup { .. } => {
                        CliError::Usage(e.to_string())
                    }
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
