//! The `weir` binary: argument parsing, signals, and nothing else.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use weir::{shutdown, Config, Listeners};

#[derive(Parser)]
#[command(name = "weir", version, about = "Weir: a durable edge trigger gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => match Config::load(Some(&file)) {
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
        Command::Serve { config, log_format } => match serve(config, log_format) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn serve(config_path: Option<PathBuf>, log_format: Option<String>) -> anyhow::Result<()> {
    let config = Config::load(config_path.as_deref())?;
    let format = log_format.unwrap_or_else(|| config.log.format.clone());
    weir::telemetry::init_logging(&format, &config.log.level);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(async {
        let listeners = Listeners::bind(&config).await?;
        let (trigger, shutdown) = shutdown::channel();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutdown requested: draining (send the signal again to exit at once)");
            trigger.trigger();
            wait_for_signal().await;
            tracing::warn!("second signal: exiting without draining");
            std::process::exit(130);
        });
        weir::run(config, listeners, shutdown).await?;
        Ok(())
    })
}

/// SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => {
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
