//! The scenarios of issue 7 and what they share: the run settings
//! ([`Ctx`]), the 1 KiB JSON body, its GitHub signature, the example plugins,
//! and paired (interleaved) bare/Weir measurements.

mod drain;
mod drain_jetstream;
mod fleet_idle;
mod fleet_plugins;
mod footprint;
mod hostile;
mod ingest;
mod ingest_tls;
mod outage;
mod plugin;
mod restart;
mod telemetry;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::load::{self, Outcome, Pace, Plan, Target};
use crate::machine::CpuMark;
use crate::report::{Metric, Report, Unit};
use crate::weir::{Setup, Tenant, workspace_root};

/// Every scenario, in the order `all` runs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    Ingest,
    IngestHmac,
    IngestTls,
    Plugin,
    Drain,
    DrainJetstream,
    Footprint,
    Restart,
    Outage,
    Hostile,
    FleetIdle,
    FleetPlugin,
    Telemetry,
    All,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::IngestHmac => "ingest-hmac",
            Scenario::IngestTls => "ingest-tls",
            Scenario::Plugin => "plugin",
            Scenario::Drain => "drain",
            Scenario::DrainJetstream => "drain-jetstream",
            Scenario::Footprint => "footprint",
            Scenario::Restart => "restart",
            Scenario::Outage => "outage",
            Scenario::Hostile => "hostile",
            Scenario::FleetIdle => "fleet-idle",
            Scenario::FleetPlugin => "fleet-plugin",
            Scenario::Telemetry => "telemetry",
            Scenario::All => "all",
        }
    }

    /// The scenarios this one stands for.
    pub fn expand(self) -> Vec<Scenario> {
        match self {
            Scenario::All => vec![
                Scenario::Ingest,
                Scenario::IngestHmac,
                Scenario::IngestTls,
                Scenario::Plugin,
                Scenario::Drain,
                Scenario::DrainJetstream,
                Scenario::Footprint,
                Scenario::Restart,
                Scenario::Outage,
                Scenario::Hostile,
                Scenario::FleetIdle,
                Scenario::FleetPlugin,
                Scenario::Telemetry,
            ],
            s => vec![s],
        }
    }

    /// Every scenario does: even `plugin`, in process, compiles its plugins
    /// in a `weir compile-plugin` child.
    fn needs_weir(self) -> bool {
        true
    }
}

/// Settings shared by every scenario of one invocation.
pub struct Ctx {
    pub quick: bool,
    pub runs: usize,
    /// `--runs` was given: scenarios that would do one run of a long fill do this many.
    pub runs_explicit: bool,
    pub connections: usize,
    pub warmup: Duration,
    /// Measurement window of one closed- or open-loop run.
    pub duration: Duration,
    /// Backlog size for `drain` and `restart` (overrides the mode's default).
    pub triggers: Option<u64>,
    /// `--prefill`: triggers `ingest` stores before it measures.
    pub prefill: Option<u64>,
    /// The `weir` binary.
    pub weir: Option<PathBuf>,
    /// `--before`: a second binary the `telemetry` scenario measures in the same rounds.
    pub before: Option<PathBuf>,
}

impl Ctx {
    pub fn weir(&self) -> anyhow::Result<&Path> {
        self.weir.as_deref().context("no weir binary resolved")
    }

    /// A closed-loop plan at the configured connections and durations.
    pub fn closed(&self) -> Plan {
        Plan::closed(self.connections, self.warmup, self.duration)
    }

    pub fn open(&self, rate: f64) -> Plan {
        Plan::open(rate, self.connections, self.warmup, self.duration)
    }

    /// A scratch directory for one scenario (config, log, data), removed on drop.
    pub fn workdir(&self, scenario: &str) -> anyhow::Result<tempfile::TempDir> {
        tempfile::Builder::new().prefix(&format!("weir-bench-{scenario}-")).tempdir().context("creating a temp directory")
    }

    /// Timeout for weir's start: a debug build compiling plugins is slow.
    pub fn start_timeout(&self) -> Duration {
        Duration::from_secs(if self.quick { 120 } else { 300 })
    }
}

/// Which scenarios need a weir binary.
pub fn need_weir(list: &[Scenario]) -> bool {
    list.iter().any(|s| s.needs_weir())
}

/// Runs one scenario and times it.
pub async fn run(s: Scenario, ctx: &Ctx) -> anyhow::Result<Report> {
    let started = Instant::now();
    let cpu = CpuMark::now();
    let mut report = match s {
        Scenario::Ingest => ingest::run(ctx, ingest::Flavor::Passthrough).await,
        Scenario::IngestHmac => ingest::run(ctx, ingest::Flavor::Hmac).await,
        Scenario::IngestTls => ingest_tls::run(ctx).await,
        Scenario::Plugin => plugin::run(ctx).await,
        Scenario::Drain => drain::run(ctx).await,
        Scenario::DrainJetstream => drain_jetstream::run(ctx).await,
        Scenario::Footprint => footprint::run(ctx).await,
        Scenario::Restart => restart::run(ctx).await,
        Scenario::Outage => outage::run(ctx).await,
        Scenario::Hostile => hostile::run(ctx).await,
        Scenario::FleetIdle => fleet_idle::run(ctx).await,
        Scenario::FleetPlugin => fleet_plugins::run(ctx).await,
        Scenario::Telemetry => telemetry::run(ctx).await,
        Scenario::All => bail!("`all` is expanded before running"),
    }
    .with_context(|| format!("scenario {}", s.name()))?;
    report.elapsed_secs = started.elapsed().as_secs_f64();
    report.foreign_cpu_percent = cpu.zip(CpuMark::now()).map(|(a, b)| a.foreign_percent(&b));
    if let Some(p) = report.foreign_cpu_percent.filter(|p| *p > 15.0) {
        report.note(format!(
            "other processes used {p:.0} % of the machine's CPU during this scenario: its figures are perturbed (ratios less so)"
        ));
    }
    Ok(report)
}

/// The shared secret of the HMAC tenants.
pub const SECRET: &str = "weir-bench-webhook-secret";

/// A 1024-byte JSON object, the body of every ingest.
pub fn body_1k() -> Bytes {
    let mut s = String::from("{\"event\":\"push\",\"items\":[");
    while s.len() < 1024 - 40 {
        s.push_str("{\"k\":\"value\",\"n\":12345},");
    }
    s.push_str("{}],\"pad\":\"");
    while s.len() < 1024 - 2 {
        s.push('x');
    }
    s.push_str("\"}");
    Bytes::from(s)
}

/// `sha256=<hex HMAC-SHA256 of body>` for `X-Hub-Signature-256`.
pub fn github_signature(secret: &str, body: &[u8]) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).context("HMAC key")?;
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("sha256={hex}"))
}

/// A signed 1 KiB ingest to `/ingest/{tenant}/bench`.
pub fn ingest_target(addr: std::net::SocketAddr, tenant: &str) -> anyhow::Result<Target> {
    let body = body_1k();
    let sig = github_signature(SECRET, &body)?;
    Target::post(addr, &format!("/ingest/{tenant}/bench"), body, &[("x-hub-signature-256", sig)])
}

/// The example plugins, built if missing.
pub struct Plugins {
    dir: PathBuf,
}

impl Plugins {
    pub fn ensure() -> anyhow::Result<Plugins> {
        let root = workspace_root();
        let dir = root.join("plugins/target/wasm32-wasip2/release");
        let names = ["passthrough", "hmac_verify", "json_transform"];
        if names.iter().any(|n| !dir.join(format!("{n}.wasm")).is_file()) {
            let args = ["build", "--release", "--target", "wasm32-wasip2", "--manifest-path", "plugins/Cargo.toml"];
            eprintln!("weir-bench: example plugins missing in {}; building them: cargo {}", dir.display(), args.join(" "));
            crate::weir::cargo(&args)?;
        }
        for n in names {
            if !dir.join(format!("{n}.wasm")).is_file() {
                bail!("{n}.wasm is still missing in {} after building the plugins", dir.display());
            }
        }
        Ok(Plugins { dir })
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// The JavaScript/TypeScript and Python examples (`js-passthrough`,
    /// `py-hmac-verify`, ...), built by their own build scripts into
    /// `plugins/target/languages` with the toolchains `scripts/deps.sh`
    /// installs; built again when one is missing.
    pub fn languages() -> anyhow::Result<Plugins> {
        let root = workspace_root();
        let dir = root.join("plugins/target/languages");
        let names = ["js-passthrough", "js-hmac-verify", "js-json-transform", "py-passthrough", "py-hmac-verify", "py-json-transform"];
        if names.iter().any(|n| !dir.join(format!("{n}.wasm")).is_file()) {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            eprintln!("weir-bench: building the JavaScript and Python example plugins into {}", dir.display());
            let python = root.join("plugins/python/.venv/bin/python");
            for (program, script) in [(PathBuf::from("node"), "plugins/js/build.mjs"), (python, "plugins/python/build.py")] {
                let status = std::process::Command::new(&program)
                    .arg(root.join(script))
                    .arg(&dir)
                    .status()
                    .with_context(|| format!("running {} (install the toolchains first: ./scripts/deps.sh)", program.display()))?;
                if !status.success() {
                    bail!("{script} failed ({status}); ./scripts/deps.sh installs what it needs");
                }
            }
        }
        Ok(Plugins { dir })
    }
}

/// Throughput, p50 and p99 metrics of one server across runs.
pub struct LoadMetrics {
    pub throughput: Metric,
    pub p50: Metric,
    pub p99: Metric,
    pub p999: Metric,
}

impl LoadMetrics {
    pub fn new(label: &str) -> LoadMetrics {
        LoadMetrics {
            throughput: Metric::new(format!("{label}: throughput"), Unit::PerSec),
            p50: Metric::new(format!("{label}: p50"), Unit::Millis),
            p99: Metric::new(format!("{label}: p99"), Unit::Millis),
            p999: Metric::new(format!("{label}: p99.9"), Unit::Millis),
        }
    }

    pub fn add(&mut self, o: &Outcome) {
        self.throughput.samples.push(o.throughput());
        self.p50.samples.push(o.quantile_ms(0.50));
        self.p99.samples.push(o.quantile_ms(0.99));
        self.p999.samples.push(o.quantile_ms(0.999));
    }

    /// Sets per-run ratios of throughput to the paired bare runs.
    pub fn ratio_to(&mut self, bare: &LoadMetrics) {
        let r = self.throughput.samples.iter().zip(&bare.throughput.samples).map(|(w, b)| w / b.max(1e-9)).collect();
        self.throughput.ratio = Some(r);
    }

    pub fn into_report(self, report: &mut Report) {
        report.push(self.throughput);
        report.push(self.p50);
        report.push(self.p99);
        report.push(self.p999);
    }
}

/// Runs a plan and notes any answer that was not the expected one.
pub async fn measure(target: &Target, plan: &Plan, what: &str, report: &mut Report) -> anyhow::Result<Outcome> {
    let o = load::run(target, plan).await.with_context(|| format!("load on {what}"))?;
    if let Some(f) = o.failures() {
        report.note(format!("{what}: besides {} × {}: {f}", o.ok, target.expect.as_u16()));
    }
    Ok(o)
}

/// `store.max_bytes` for scenarios that build large backlogs. Only a limit:
/// the disk holds what is written (about 1.5 KiB per 1 KiB trigger).
pub const BIG_BUDGET: u64 = 64 << 30;

/// Ingests `n` triggers closed-loop, as fast as Weir takes them (no warm-up).
pub async fn fill(ctx: &Ctx, target: &Target, n: u64, report: &mut Report) -> anyhow::Result<Outcome> {
    let plan =
        Plan { pace: Pace::Closed, connections: ctx.connections, warmup: Duration::ZERO, duration: None, max_ok: Some(n), stop: None };
    measure(target, &plan, "fill", report).await
}

/// Formats a ratio for goals.
pub fn ratio_text(r: f64) -> String {
    format!("{r:.2} × bare")
}

/// One passthrough tenant ("pass") forwarding to `upstream`, with room for
/// everything the run ingests.
pub fn forwarding_setup(plugins: &Plugins, upstream: String) -> Setup {
    let mut setup = Setup::new(vec![Tenant::with_plugin("pass", &plugins.path("passthrough"))]);
    setup.upstreams.push(upstream);
    setup.max_bytes = BIG_BUDGET;
    setup
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_one_kib_of_json() {
        let b = body_1k();
        assert_eq!(b.len(), 1024);
        let v: serde_json::Value = serde_json::from_slice(&b).expect("valid JSON");
        assert!(v.is_object());
    }

    #[test]
    fn signature_matches_a_known_vector() {
        // RFC 4231-style check against a value computed with openssl.
        let sig = github_signature("key", b"The quick brown fox jumps over the lazy dog").expect("sig");
        assert_eq!(sig, "sha256=f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    }
}
