//! `ingest` and `ingest-hmac`: 1 KiB JSON POSTs, each answered 202 only after
//! Weir's fsync'd commit, against the bare server in the same run.
//!
//! Per run, interleaved: bare, then each Weir tenant, closed loop at the
//! configured connections. Then an open loop at half of the first tenant's
//! median maximum, bare and Weir again, with a fresh fsync probe per run (the
//! disk drifts between a fast and a slow regime, see MACHINE.md), reported
//! beside the p99 goal (issue 19: ≤ 5 ms, p99.9 reported) so a slow regime
//! shows.

use std::io::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use http::{Method, StatusCode};

use super::{BIG_BUDGET, Ctx, LoadMetrics, Plugins, SECRET, ingest_target, measure, ratio_text};
use crate::load::Target;
use crate::report::{Metric, Report, Unit, median};
use crate::servers::BareServer;
use crate::weir::{Setup, Tenant, Weir};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `ingest`: passthrough plugin (plus a tenant without plugin for context).
    Passthrough,
    /// `ingest-hmac`: hmac-verify, and json-transform.
    Hmac,
}

impl Flavor {
    fn name(self) -> &'static str {
        match self {
            Flavor::Passthrough => "ingest",
            Flavor::Hmac => "ingest-hmac",
        }
    }

    /// (label, tenant, goal as a fraction of bare); the first is the headline.
    fn variants(self, p: &Plugins) -> Vec<(&'static str, Tenant, Option<f64>)> {
        match self {
            Flavor::Passthrough => vec![
                ("weir passthrough", Tenant::with_plugin("pass", &p.path("passthrough")), Some(0.4)),
                ("weir no plugin", Tenant::plain("plain"), Some(0.5)),
            ],
            Flavor::Hmac => vec![
                ("weir hmac-verify", Tenant::with_plugin("hmac", &p.path("hmac_verify")).config("secret", SECRET), Some(0.35)),
                ("weir json-transform", Tenant::with_plugin("json", &p.path("json_transform")), None),
            ],
        }
    }
}

pub async fn run(ctx: &Ctx, flavor: Flavor) -> anyhow::Result<Report> {
    let plugins = Plugins::ensure()?;
    let variants = flavor.variants(&plugins);
    let work = ctx.workdir(flavor.name())?;
    let bare = BareServer::spawn()?;
    let mut setup = Setup::new(variants.iter().map(|(_, t, _)| t.clone()).collect());
    // Nothing is forwarded: a full run stores over 1 GiB, and a store at its
    // budget answers 503, which would be measured instead of ingest.
    setup.max_bytes = BIG_BUDGET;
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, ctx.start_timeout()).await?;
    let bare_target = ingest_target(bare.addr, "bare")?;
    let targets: Vec<Target> = variants.iter().map(|(_, t, _)| ingest_target(weir.ingest, &t.id)).collect::<Result<_, _>>()?;
    for t in &targets {
        check_accepts(t).await?;
    }
    let mut report = Report::new(
        flavor.name(),
        format!(
            "1 KiB JSON POST, {} keep-alive connections; closed loop: {:.1} s warm-up + {:.1} s measured per server, {} run(s), \
             interleaved bare → weir tenants; open loop at 50 % of {}'s median max. weir: {}",
            ctx.connections,
            ctx.warmup.as_secs_f64(),
            ctx.duration.as_secs_f64(),
            ctx.runs,
            variants[0].0,
            ctx.weir()?.display()
        ),
    );

    if let Some(n) = ctx.prefill.filter(|n| *n > 0) {
        eprintln!("  {}: storing {n} triggers before measuring", flavor.name());
        let t = targets.last().context("no weir tenant")?;
        let filled = super::fill(ctx, t, n, &mut report).await?;
        report.push(Metric::with_samples("prefill: triggers stored before the runs", Unit::Count, vec![n as f64]));
        report.push(Metric::with_samples("prefill: rate (closed loop, growing store)", Unit::PerSec, vec![filled.throughput()]));
    }

    let mut bare_m = LoadMetrics::new("bare hyper 202");
    let mut weir_m: Vec<LoadMetrics> = variants.iter().map(|(label, _, _)| LoadMetrics::new(label)).collect();
    for run in 0..ctx.runs {
        eprintln!("  {} run {}/{}: closed loop", flavor.name(), run + 1, ctx.runs);
        bare_m.add(&measure(&bare_target, &ctx.closed(), "bare (closed)", &mut report).await?);
        for ((label, ..), (m, t)) in variants.iter().zip(weir_m.iter_mut().zip(&targets)) {
            m.add(&measure(t, &ctx.closed(), &format!("{label} (closed)"), &mut report).await?);
        }
    }
    for m in &mut weir_m {
        m.ratio_to(&bare_m);
    }

    let rate = 0.5 * weir_m[0].throughput.median();
    let (open_metrics, fsync_p99) = open_loop(ctx, rate, &bare_target, &targets[0], variants[0].0, work.path(), &mut report).await?;
    let rss = weir.rss_mib()?;
    weir.stop().await?;

    goals(&mut report, &variants, &weir_m, &open_metrics, fsync_p99);
    bare_m.into_report(&mut report);
    for m in weir_m {
        m.into_report(&mut report);
    }
    for m in open_metrics {
        report.push(m);
    }
    report.push(Metric::with_samples("weir RSS after the runs", Unit::MiB, vec![rss]));
    Ok(report)
}

/// Open loop at `rate`: per run an fsync probe, bare, then weir. Returns
/// the metrics and the per-run fsync p99s (ms).
async fn open_loop(
    ctx: &Ctx,
    rate: f64,
    bare: &Target,
    weir: &Target,
    label: &str,
    dir: &Path,
    report: &mut Report,
) -> anyhow::Result<(Vec<Metric>, Vec<f64>)> {
    let mut bare_m = LoadMetrics::new(&format!("bare, open loop {rate:.0}/s"));
    let mut weir_m = LoadMetrics::new(&format!("{label}, open loop {rate:.0}/s"));
    for m in [&mut bare_m, &mut weir_m] {
        m.throughput.name = m.throughput.name.replace("throughput", "achieved rate");
    }
    let mut fsync_p50 = Metric::new("fsync (fdatasync 1 KiB) p50", Unit::Millis);
    let mut fsync_p99 = Metric::new("fsync (fdatasync 1 KiB) p99", Unit::Millis);
    let probes = if ctx.quick { 50 } else { 300 };
    for run in 0..ctx.runs {
        eprintln!("  open loop run {}/{} at {rate:.0}/s", run + 1, ctx.runs);
        let (p50, p99) = fsync_probe(dir, probes).await?;
        fsync_p50.samples.push(p50);
        fsync_p99.samples.push(p99);
        bare_m.add(&measure(bare, &ctx.open(rate), "bare (open)", report).await?);
        weir_m.add(&measure(weir, &ctx.open(rate), &format!("{label} (open)"), report).await?);
    }
    let p99s = fsync_p99.samples.clone();
    // Throughput in an open loop is the offered rate; keep it to show it was met.
    let mut out = vec![fsync_p50, fsync_p99];
    for m in [bare_m, weir_m] {
        out.extend([m.throughput, m.p50, m.p99, m.p999]);
    }
    Ok((out, p99s))
}

fn goals(report: &mut Report, variants: &[(&str, Tenant, Option<f64>)], weir: &[LoadMetrics], open: &[Metric], fsync_p99: Vec<f64>) {
    for ((label, _, goal), m) in variants.iter().zip(weir) {
        if let (Some(g), Some(r)) = (goal, m.throughput.ratio_median()) {
            report.goal(format!("{label} max throughput ≥ {g} × bare"), ratio_text(r), Some(r >= *g));
        }
    }
    // Weir's open-loop p99 comes last of the p99s (issue 19: ≤ 5 ms; p99.9 is reported beside it).
    let Some(weir_p99) = open.iter().rfind(|m| m.name.ends_with(": p99")) else { return };
    let p99 = weir_p99.median();
    report.goal(
        format!("{} ≤ 5 ms (fsync p99 in the same minutes: {:.2} ms)", weir_p99.name, median(&fsync_p99)),
        format!("{p99:.2} ms"),
        Some(p99 <= 5.0),
    );
}

/// One request; anything but 202 means the setup is wrong, so stop early.
pub(in crate::scenarios) async fn check_accepts(t: &Target) -> anyhow::Result<()> {
    let mut conn = t.connect().await?;
    let (status, body) = conn.send(Method::POST, &t.path, &t.headers, t.body.clone()).await?;
    if status != StatusCode::ACCEPTED {
        bail!("POST {} answered {status}, not 202: {}", t.path, String::from_utf8_lossy(&body));
    }
    if body.windows(18).any(|w| w == b"\"quarantined\":true") {
        bail!("POST {} was quarantined (the plugin failed): {}", t.path, String::from_utf8_lossy(&body));
    }
    Ok(())
}

/// fdatasync latency of 1 KiB overwrites in `dir` (same file system as the
/// store): (p50, p99) in ms.
pub async fn fsync_probe(dir: &Path, n: usize) -> anyhow::Result<(f64, f64)> {
    let path = dir.join("fsync-probe");
    tokio::task::spawn_blocking(move || -> anyhow::Result<(f64, f64)> {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        let block = [0x5au8; 1024];
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).context("histogram")?;
        for _ in 0..n {
            use std::io::Seek as _;
            f.seek(std::io::SeekFrom::Start(0)).context("seek")?;
            f.write_all(&block).context("write")?;
            let t = Instant::now();
            f.sync_data().context("fdatasync")?;
            hist.saturating_record(t.elapsed().as_micros().max(1) as u64);
        }
        let _ = std::fs::remove_file(&path);
        Ok((hist.value_at_quantile(0.5) as f64 / 1000.0, hist.value_at_quantile(0.99) as f64 / 1000.0))
    })
    .await
    .context("fsync probe task")?
}
