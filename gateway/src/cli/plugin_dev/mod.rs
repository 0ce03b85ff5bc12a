//! The plugin author's loop, with no gateway and no Weir repository:
//! `weir plugin new` (a project that builds with its language's toolchain
//! and this binary only), `weir plugin build`, `weir plugin test` (a plugin
//! on sample requests under the gateway's own host and limits) and
//! `weir plugin check` (an upload's checks and compile, before the upload).
//! docs/plugins.md describes the loop; docs/cli.md the commands.

/// A line of output into a `String`: output is written at once with
/// [`emit`], so a closed pipe (`| head`) ends it quietly instead of a
/// `println!` panic.
macro_rules! out {
    ($out:expr) => {{
        $out.push('\n');
    }};
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

mod case;
mod check;
mod diff;
mod host;
mod lang;
mod logs;
mod trial;

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::json;

pub use case::{Phase, Verdict};
pub(crate) use host::LocalHost;

use super::CliError;
use crate::config::Config;
use crate::tenants::TenantSettings;

/// `weir plugin new|build|check|test`.
#[derive(Debug, clap::Subcommand)]
pub enum PluginDevCommand {
    /// Make a plugin project that builds with its language's toolchain and this weir binary only.
    New {
        /// The plugin's (package's) name: letters, digits, '-' and '_'
        name: String,
        /// rust, js, ts or python
        #[arg(long, default_value = "rust")]
        lang: String,
        /// Where to make it [default: ./NAME]; must not exist or be empty
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Build the plugin project in --dir (default: here) with its toolchain; prints the component's path.
    Build {
        /// The plugin project's directory [default: the current one]
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Extra arguments for the toolchain, after `--` (e.g. -- --locked)
        #[arg(last = true)]
        args: Vec<String>,
    },
    /// The checks an upload makes and a real compile, with the limits it would run under (exit 5 when refused).
    Check {
        /// The component (.wasm)
        file: PathBuf,
        /// Gateway config whose [plugins] limits (and the tenant's settings) apply [default: built-in defaults]
        #[arg(long, short, env = "WEIR_CONFIG")]
        config: Option<PathBuf>,
        /// Whose limits to show (a [[tenants]] id of --config)
        #[arg(long, default_value = "test")]
        tenant: String,
        /// Print JSON for scripts
        #[arg(long)]
        json: bool,
    },
    /// Run a plugin on sample requests under the gateway's own host and limits (exit 1 when a case fails).
    Test(TestArgs),
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The component (.wasm)
    pub file: PathBuf,
    /// A raw HTTP request file (NAME.http, with its settings and expectation in NAME.toml if there), or a directory of them
    #[arg(long, conflicts_with = "body")]
    pub request: Option<PathBuf>,
    /// The request body: TEXT, @FILE (byte for byte) or @- (stdin)
    #[arg(long, short = 'd')]
    pub body: Option<String>,
    /// A request header, 'Name: value' (repeat); added to a request file's
    #[arg(long = "header", short = 'H', value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// The tenant the trigger is for [default: the request file's path, else "test"]
    #[arg(long)]
    pub tenant: Option<String>,
    /// The source label [default: the request file's path, else "test"]
    #[arg(long)]
    pub source: Option<String>,
    /// A plugin config value, KEY=VALUE (repeat): what config(key) returns, over the tenant's [tenants.config]
    #[arg(long = "config", value_name = "KEY=VALUE")]
    pub config: Vec<String>,
    /// ingest or replay (the trigger's phase)
    #[arg(long, value_enum)]
    pub phase: Option<Phase>,
    /// The trigger's arrival time, ms since the Unix epoch [default: now]
    #[arg(long)]
    pub received_at_ms: Option<u64>,
    /// What every case must come to: accept, reject, drop or fault (a mismatch exits 1)
    #[arg(long, value_enum)]
    pub expect: Option<Verdict>,
    /// Gateway config whose limits (and the tenant's settings and config) apply [default: built-in defaults]
    #[arg(long, env = "WEIR_CONFIG")]
    pub weir_config: Option<PathBuf>,
    /// Print JSON for scripts
    #[arg(long)]
    pub json: bool,
}

/// Runs a `weir plugin new|build|check|test` command; its exit code.
pub fn run(command: PluginDevCommand) -> ExitCode {
    let result = match command {
        PluginDevCommand::New { name, lang, dir } => new(&name, &lang, dir),
        PluginDevCommand::Build { dir, args } => build(dir, &args),
        PluginDevCommand::Check { file, config, tenant, json } => {
            load_config(config.as_ref()).and_then(|c| block_on(check::run(&file, &c, &tenant, json)))
        }
        PluginDevCommand::Test(args) => return test(&args),
    };
    exit(result)
}

/// Writes to stdout, ignoring a reader that went away.
fn emit(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush());
}

fn json_text(v: &serde_json::Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn exit(result: Result<(), CliError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::Failed(format!("cannot start the async runtime: {e}")))?;
    rt.block_on(f)
}

fn load_config(path: Option<&PathBuf>) -> Result<Config, CliError> {
    match path {
        Some(p) => Config::load(Some(p)).map_err(|e| CliError::Usage(e.to_string())),
        None => Ok(Config::default()),
    }
}

fn new(name: &str, lang: &str, dir: Option<PathBuf>) -> Result<(), CliError> {
    let language = lang::by_name(lang).map_err(CliError::Usage)?;
    let dir = dir.unwrap_or_else(|| PathBuf::from(name));
    let files = lang::new_project(language, name, &dir).map_err(CliError::Usage)?;
    let mut out = String::new();
    out!(out, "made {} ({} plugin, {} files):", dir.display(), language.name, files.len());
    for f in files.iter().filter(|f| !language.carried.iter().any(|d| f.starts_with(d))) {
        out!(out, "  {}", f.display());
    }
    for d in language.carried {
        out!(out, "  {d}/ (written by this weir: the plugin SDK; do not edit)");
    }
    out!(out, "next: cd {} && weir plugin build   (or: {})", dir.display(), language.build_command);
    emit(&out);
    Ok(())
}

/// Prints each component's path on stdout (one per line: scripts take
/// them as they are); the rest goes to stderr.
fn build(dir: Option<PathBuf>, extra: &[String]) -> Result<(), CliError> {
    let dir = dir.unwrap_or_else(|| PathBuf::from("."));
    let (language, components) = lang::build(&dir, extra).map_err(CliError::Failed)?;
    for c in &components {
        let bytes = std::fs::read(c).map_err(|e| CliError::Failed(format!("cannot read {}: {e}", c.display())))?;
        // The cheapest upload check: a core module (another target) is no plugin.
        crate::plugin::check_header(&bytes, u64::MAX).map_err(|e| CliError::Failed(format!("{}: {e}", c.display())))?;
        eprintln!("built a {} byte {} component; next: weir plugin test {} --request cases/", bytes.len(), language.name, c.display());
        emit(&format!("{}\n", c.display()));
    }
    Ok(())
}

fn test(args: &TestArgs) -> ExitCode {
    let captured = logs::Captured::install();
    let result = load_config(args.weir_config.as_ref()).and_then(|c| block_on(trial::run(args, &c, &captured)));
    let outcomes = match result {
        Ok(o) => o,
        Err(e) => return exit(Err(e)),
    };
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    let mut out = String::new();
    if args.json {
        out = json_text(&json!({ "cases": outcomes, "passed": outcomes.len() - failed, "failed": failed }));
    } else {
        for o in &outcomes {
            trial::render(o, &mut out);
        }
        out!(out, "{} case(s): {} passed, {failed} failed", outcomes.len(), outcomes.len() - failed);
    }
    emit(&out);
    if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

/// The limits a tenant's plugin runs under on a gateway with `config`.
pub struct Limits {
    tenant: String,
    /// The tenant is declared in the config (else: the defaults).
    declared: bool,
    settings: TenantSettings,
    concurrency: u32,
    max_output_bytes: u64,
    max_log_calls: u32,
    max_log_bytes: u32,
}

impl Limits {
    pub fn of(config: &Config, tenant: &str) -> Limits {
        let declared = config.tenants.iter().find(|t| t.id == tenant);
        let settings = declared.map_or_else(TenantSettings::default, |t| TenantSettings {
            plugin_timeout_ms: t.plugin_timeout_ms,
            plugin_memory_mb: t.plugin_memory_mb,
            on_plugin_error: t.on_plugin_error,
            config: t.config.clone(),
        });
        Limits {
            tenant: tenant.to_string(),
            declared: declared.is_some(),
            settings,
            concurrency: config.plugins.concurrency,
            max_output_bytes: config.server.max_body_bytes,
            max_log_calls: config.plugins.max_log_calls,
            max_log_bytes: config.plugins.max_log_bytes,
        }
    }

    fn per_tenant(&self) -> u32 {
        (self.concurrency / 2).max(1)
    }

    fn wall_cap_ms(&self) -> u64 {
        self.settings.plugin_timeout_ms * u64::from(crate::plugin::WALL_FACTOR)
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "tenant": self.tenant,
            "tenant_declared": self.declared,
            "plugin_timeout_ms": self.settings.plugin_timeout_ms,
            "wall_clock_cap_ms": self.wall_cap_ms(),
            "plugin_memory_mb": self.settings.plugin_memory_mb,
            "on_plugin_error": self.settings.on_plugin_error,
            "instances_per_tenant": self.per_tenant(),
            "instances": self.concurrency,
            "max_output_bytes": self.max_output_bytes,
            "max_header_changes": crate::plugin::MAX_HEADER_CHANGES,
            "max_log_calls": self.max_log_calls,
            "max_log_bytes": self.max_log_bytes,
        })
    }

    fn render(&self, indent: &str, out: &mut String) {
        let whose = if self.declared { "its [[tenants]] settings" } else { "the defaults: not a [[tenants]] id of the config" };
        let s = &self.settings;
        out!(out, "{indent}limits     tenant {} ({whose}):", self.tenant);
        let more = format!("{indent}           ");
        out!(
            out,
            "{more}plugin_timeout_ms {} (CPU time per trigger, instantiation included; wall-clock cap {} ms)",
            s.plugin_timeout_ms,
            self.wall_cap_ms()
        );
        out!(out, "{more}plugin_memory_mb {} (linear memory per instance)", s.plugin_memory_mb);
        let on_error = match s.on_plugin_error {
            crate::config::OnPluginError::Quarantine => "quarantine (a fault stores the trigger as quarantined)",
            crate::config::OnPluginError::Reject => "reject (a fault answers 503; nothing is stored)",
        };
        out!(out, "{more}on_plugin_error {on_error}");
        out!(out, "{more}instances: {} at once for this tenant, {} for all (plugins.concurrency)", self.per_tenant(), self.concurrency);
        out!(
            out,
            "{more}output: a new body plus header changes up to {} bytes (server.max_body_bytes), at most {} header changes",
            self.max_output_bytes,
            crate::plugin::MAX_HEADER_CHANGES
        );
        out!(
            out,
            "{more}logs: {} calls per trigger (plugins.max_log_calls), {} bytes each (plugins.max_log_bytes)",
            self.max_log_calls,
            self.max_log_bytes
        );
    }
}
