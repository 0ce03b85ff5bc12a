//! `weir-bench`: Weir's benchmark harness.
//!
//! ```sh
//! cargo run --release -p weir-bench -- <scenario> [--quick] [--runs N] [--json FILE] [--weir PATH]
//! ```
//!
//! It starts the real `weir` binary on a fresh data directory, drives it
//! with its own load generator, and measures a bare hyper server on the same
//! machine in the same run, so every throughput figure also comes as a ratio
//! to that baseline. Goals are reported, never asserted: the exit status is
//! non-zero only when the harness itself failed. See BENCHMARKS.md.

mod client;
mod load;
mod machine;
mod report;
mod scenarios;
mod servers;
mod tls;
mod weir;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use report::Report;
use scenarios::{Ctx, Scenario};

#[derive(Parser)]
#[command(name = "weir-bench", about = "Benchmark Weir against a bare hyper server, same machine, same run")]
struct Cli {
    /// What to measure (`all` runs every scenario in order).
    #[arg(value_enum)]
    scenario: Scenario,
    /// One short run per figure (about 1 s), small backlogs: keeps the harness working in CI.
    #[arg(long)]
    quick: bool,
    /// Runs per figure (default 3; 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Where to write the JSON results (default target/weir-bench/<scenario>.json).
    #[arg(long)]
    json: Option<PathBuf>,
    /// The weir binary (default: `weir` next to this executable, built if missing).
    #[arg(long)]
    weir: Option<PathBuf>,
    /// `telemetry` only: a second weir binary (e.g. built from the previous commit) measured in the same rounds.
    #[arg(long)]
    before: Option<PathBuf>,
    /// Keep-alive connections (virtual users) of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Measured seconds per closed- or open-loop run (default 5; 1 with --quick).
    #[arg(long)]
    duration: Option<f64>,
    /// Backlog size for `drain` and `restart` (default 1,000,000; 5,000 with --quick), and for
    /// each transport of `drain-jetstream` (default 100,000; 2,000 with --quick).
    #[arg(long)]
    triggers: Option<u64>,
    /// `ingest`, `ingest-hmac`: store this many triggers (held: nothing is forwarded) before measuring,
    /// to see whether a large store erodes the figures (issue 19 asks for 0 and 10,000,000).
    #[arg(long, value_name = "N")]
    prefill: Option<u64>,
    /// A `[store]` setting every weir of the run gets, e.g. `--store journal_bytes=16777216` (repeatable).
    #[arg(long = "store", value_name = "KEY=VALUE")]
    store: Vec<String>,
    /// A `[forward]` setting every weir of the run gets, e.g. `--forward max_in_flight=64` (repeatable).
    #[arg(long = "forward", value_name = "KEY=VALUE")]
    forward: Vec<String>,
}

fn main() -> ExitCode {
    if std::env::args().nth(1).as_deref() == Some(servers::BARE_ARG) {
        return servers::bare_main();
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("weir-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the scenarios; `Ok(false)` when one of them failed (the others still ran).
fn run(cli: Cli) -> anyhow::Result<bool> {
    let list = cli.scenario.expand();
    let ctx = context(&cli, scenarios::need_weir(&list))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let mut reports: Vec<Report> = Vec::new();
    let mut ok = true;
    for s in list {
        eprintln!("weir-bench: {}{}", s.name(), if ctx.quick { " (quick)" } else { "" });
        match rt.block_on(scenarios::run(s, &ctx)) {
            Ok(r) => {
                println!("{}", r.render());
                reports.push(r);
            }
            Err(e) => {
                eprintln!("weir-bench: {} failed: {e:#}", s.name());
                ok = false;
            }
        }
    }
    let path = match cli.json {
        Some(p) => p,
        None => default_json(cli.scenario)?,
    };
    report::write_json(&path, header(&ctx), &reports)?;
    eprintln!("weir-bench: results written to {}", path.display());
    Ok(ok)
}

fn context(cli: &Cli, need_weir: bool) -> anyhow::Result<Ctx> {
    weir::set_overrides(&cli.store, &cli.forward).map_err(anyhow::Error::msg)?;
    let (warmup, duration) = if cli.quick { (0.3, 1.0) } else { (1.0, 5.0) };
    let duration = cli.duration.unwrap_or(duration);
    anyhow::ensure!(duration > 0.0 && duration.is_finite(), "--duration must be a positive number of seconds");
    anyhow::ensure!(cli.connections > 0, "--connections must be at least 1");
    let runs = cli.runs.unwrap_or(if cli.quick { 1 } else { 3 });
    anyhow::ensure!(runs > 0, "--runs must be at least 1");
    Ok(Ctx {
        quick: cli.quick,
        runs,
        runs_explicit: cli.runs.is_some(),
        connections: cli.connections,
        warmup: Duration::from_secs_f64(warmup),
        duration: Duration::from_secs_f64(duration),
        triggers: cli.triggers,
        prefill: cli.prefill,
        before: cli.before.clone(),
        weir: if need_weir { Some(weir::locate(cli.weir.clone())?) } else { None },
    })
}

/// `target/weir-bench/<scenario>.json`, next to the harness's own build.
fn default_json(s: Scenario) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the harness executable")?;
    let target = exe.parent().and_then(|p| p.parent()).context("the harness is not inside a target directory")?;
    Ok(target.join("weir-bench").join(format!("{}.json", s.name())))
}

/// What the figures were measured on and with.
fn header(ctx: &Ctx) -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())));
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(weir::workspace_root())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    let dirty = git(&["status", "--porcelain", "--", "gateway"]).map(|s| !s.is_empty());
    let unix = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    serde_json::json!({
        "harness": "weir-bench",
        "unix_time": unix,
        "git_commit": git(&["rev-parse", "--short", "HEAD"]),
        "gateway_sources_modified": dirty,
        "quick": ctx.quick,
        "runs": ctx.runs,
        "connections": ctx.connections,
        "warmup_secs": ctx.warmup.as_secs_f64(),
        "duration_secs": ctx.duration.as_secs_f64(),
        "weir": ctx.weir.as_ref().map(|p| p.display().to_string()),
        "weir_built_unix_time": ctx.weir.as_ref().and_then(|p| std::fs::metadata(p).ok()?.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| d.as_secs()),
        "harness_profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "machine": {
            "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            "cpu_model": cpu,
            "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_string()),
        },
    })
}
