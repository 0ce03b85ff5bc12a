//! `footprint`: resident memory (VmRSS) of an idle Weir, and of one with
//! many tenants each configured with its own copy of the passthrough plugin,
//! with the startup times that go with it.
//!
//! Identical plugin content is not shared across tenants: each tenant's file
//! is registered, compiled and deserialized on its own (see
//! `gateway/src/plugin/upload.rs`, `add`), so the first start compiles once
//! per tenant and a restart deserializes once per tenant. Both are measured.

use std::path::Path;
use std::time::Duration;

use anyhow::bail;
use http::{Method, StatusCode};

use super::{Ctx, Plugins, ingest_target};
use crate::client::Conn;
use crate::report::{Metric, Report, Unit};
use crate::servers::BareServer;
use crate::weir::{Setup, Tenant, Weir, rss_mib};

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let plugins = Plugins::ensure()?;
    let tenants = if ctx.quick { 20 } else { 1000 };
    let settle = Duration::from_millis(if ctx.quick { 300 } else { 1000 });
    let mut report = Report::new(
        "footprint",
        format!(
            "VmRSS from /proc/PID/status, {:.1} s after /healthz answered; idle: one tenant without plugin, {} run(s); \
             many: {tenants} tenants, each `plugin = passthrough.wasm`, first start (compiles) then a restart on the same data dir",
            settle.as_secs_f64(),
            ctx.runs
        ),
    );
    let idle_rss = idle(ctx, settle, &mut report).await?;
    many(ctx, &plugins, tenants, settle, idle_rss, &mut report).await?;
    Ok(report)
}

/// Idle RSS over the runs; returns its median.
async fn idle(ctx: &Ctx, settle: Duration, report: &mut Report) -> anyhow::Result<f64> {
    let mut rss = Metric::new("idle weir: RSS", Unit::MiB);
    let mut start = Metric::new("idle weir: start to /healthz", Unit::Seconds);
    for _ in 0..ctx.runs {
        let work = ctx.workdir("footprint")?;
        let mut weir = Weir::start(ctx.weir()?, work.path(), &Setup::new(vec![Tenant::plain("acme")]), ctx.start_timeout()).await?;
        start.samples.push(weir.spawned_at.elapsed().as_secs_f64());
        tokio::time::sleep(settle).await;
        rss.samples.push(weir.rss_mib()?);
        weir.stop().await?;
    }
    let bare = BareServer::spawn()?;
    tokio::time::sleep(settle).await;
    let bare_rss = rss_mib(bare.pid())?;
    let idle = rss.median();
    report.goal("idle RSS ≤ 30 MiB", format!("{idle:.1} MiB"), Some(idle <= 30.0));
    report.push(rss);
    report.push(start);
    report.push(Metric::with_samples("bare hyper server: RSS (reference)", Unit::MiB, vec![bare_rss]));
    Ok(idle)
}

async fn many(ctx: &Ctx, plugins: &Plugins, n: usize, settle: Duration, idle: f64, report: &mut Report) -> anyhow::Result<()> {
    let work = ctx.workdir("footprint-many")?;
    let setup = Setup::new((0..n).map(|i| Tenant::with_plugin(&format!("t{i:04}"), &plugins.path("passthrough"))).collect());
    let timeout = Duration::from_secs(3600);
    eprintln!("  starting weir with {n} plugin tenants (first start compiles each)");
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, timeout).await?;
    let first_start = weir.spawned_at.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_started = weir.rss_mib()?;
    one_trigger_each(&weir, n).await?;
    let rss_used = weir.rss_mib()?;
    weir.stop().await?;
    let repo_mib = file_mib(&work.path().join("data/plugins.redb"));

    eprintln!("  restarting weir with {n} plugin tenants (artifacts from plugins.redb)");
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, timeout).await?;
    let restart = weir.spawned_at.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_restarted = weir.rss_mib()?;
    weir.stop().await?;

    let label = |s: &str| format!("{n} plugin tenants: {s}");
    report.push(Metric::with_samples(label("first start to /healthz (compiles)"), Unit::Seconds, vec![first_start]));
    report.push(Metric::with_samples(label("RSS after first start"), Unit::MiB, vec![rss_started]));
    report.push(Metric::with_samples(label("RSS after one trigger each"), Unit::MiB, vec![rss_used]));
    report.push(Metric::with_samples(label("restart to /healthz (cached artifacts)"), Unit::Seconds, vec![restart]));
    report.push(Metric::with_samples(label("RSS after restart"), Unit::MiB, vec![rss_restarted]));
    report.push(Metric::with_samples(label("plugins.redb size"), Unit::MiB, vec![repo_mib]));
    let worst = rss_used.max(rss_restarted);
    if n >= 1000 {
        report.goal("RSS with 1,000 plugin tenants ≤ 512 MiB", format!("{worst:.1} MiB"), Some(worst <= 512.0));
    } else {
        let per = (worst - idle) / n as f64;
        report.goal(
            format!("RSS with 1,000 plugin tenants ≤ 512 MiB (quick: {n} tenants, extrapolated)"),
            format!("{worst:.1} MiB with {n}; ≈ {:.0} MiB at 1,000 ({per:.2} MiB per tenant)", idle + per * 1000.0),
            None,
        );
    }
    Ok(())
}

/// One ingest per tenant, so every tenant's plugin has run once.
async fn one_trigger_each(weir: &Weir, n: usize) -> anyhow::Result<()> {
    let mut conn = Conn::open(weir.ingest).await?;
    for i in 0..n {
        let t = ingest_target(weir.ingest, &format!("t{i:04}"))?;
        let (status, body) = conn.send(Method::POST, &t.path, &t.headers, t.body.clone()).await?;
        if status != StatusCode::ACCEPTED {
            bail!("POST {} answered {status}: {}", t.path, String::from_utf8_lossy(&body));
        }
    }
    Ok(())
}

fn file_mib(path: &Path) -> f64 {
    std::fs::metadata(path).map(|m| m.len() as f64 / (1024.0 * 1024.0)).unwrap_or(f64::NAN)
}
