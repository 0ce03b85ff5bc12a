//! `footprint`: resident memory (VmRSS) of an idle Weir, and of one with
//! many tenants each configured with its own copy of the passthrough plugin,
//! with the startup times that go with it; then the same with many tenants
//! each running a *distinct* JavaScript (QuickJS) or Python (CPython)
//! component, as a thousand customers' plugins would be (each copy carries
//! its own custom section, so each is its own content, compiled and mapped
//! on its own).
//!
//! Identical plugin content is not shared across tenants: each tenant's file
//! is registered, compiled and deserialized on its own (see
//! `gateway/src/plugin/upload.rs`, `add`), so the first start compiles once
//! per tenant and a restart deserializes once per tenant. Both are measured.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
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
    let rust = vec![plugins.path("passthrough"); tenants];
    let worst = many(ctx, "plugin tenants", &rust, settle, &mut report).await?;
    goal(&mut report, "RSS with 1,000 plugin tenants ≤ 512 MiB", idle_rss, worst.rss, tenants, 512.0);

    let languages = Plugins::languages()?;
    let work = ctx.workdir("footprint-distinct")?;
    let js = distinct(&languages.path("js-passthrough"), if ctx.quick { 5 } else { 1000 }, &work.path().join("js"))?;
    let worst = many(ctx, "distinct JavaScript tenants", &js, settle, &mut report).await?;
    goal(&mut report, "RSS with 1,000 distinct JavaScript tenants ≤ 2 GiB", idle_rss, worst.rss, js.len(), 2048.0);
    let restart = format!("{:.2} s with {}", worst.restart, js.len());
    let met = (js.len() >= 1000).then_some(worst.restart <= 5.0);
    report.goal("restart with 1,000 JavaScript tenants (artifacts cached) ready ≤ 5 s", restart, met);
    // Not in quick mode (CI): a debug weir compiles CPython in ~30 s.
    if !ctx.quick {
        let py = distinct(&languages.path("py-passthrough"), 20, &work.path().join("py"))?;
        let worst = many(ctx, "distinct Python tenants", &py, settle, &mut report).await?;
        let per = (worst.rss - idle_rss) / py.len() as f64;
        report.note(format!("Python: {per:.1} MiB per distinct tenant after one trigger each ({} tenants measured)", py.len()));
    }
    Ok(report)
}

/// `n` copies of `component` in `dir`, each made distinct by a custom
/// section of its own (what distinct customers' plugins are to Weir: another
/// sha256, another compile, another artifact).
fn distinct(component: &Path, n: usize, dir: &Path) -> anyhow::Result<Vec<std::path::PathBuf>> {
    let bytes = std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    (0..n)
        .map(|i| {
            let path = dir.join(format!("t{i:04}.wasm"));
            let mut copy = bytes.clone();
            let nonce = i.to_string();
            let section = wasm_encoder::CustomSection { name: "weir-bench-tenant".into(), data: nonce.as_bytes().into() };
            wasm_encoder::Section::append_to(&section, &mut copy);
            std::fs::write(&path, copy).with_context(|| format!("writing {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

/// The goal on the worst RSS with `n` tenants, extrapolated to 1,000 when
/// fewer were measured (quick mode).
fn goal(report: &mut Report, text: &str, idle: f64, worst: f64, n: usize, limit_mib: f64) {
    if n >= 1000 {
        report.goal(text, format!("{worst:.1} MiB"), Some(worst <= limit_mib));
    } else {
        let per = (worst - idle) / n as f64;
        report.goal(
            format!("{text} (quick: {n} tenants, extrapolated)"),
            format!("{worst:.1} MiB with {n}; ≈ {:.0} MiB at 1,000 ({per:.2} MiB per tenant)", idle + per * 1000.0),
            None,
        );
    }
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

/// The worst RSS of a run with many tenants, and its restart time.
struct Many {
    rss: f64,
    restart: f64,
}

/// Tenant `tNNNN` runs `components[NNNN]`: a first start (compiles), one
/// trigger each, a restart (cached artifacts).
async fn many(ctx: &Ctx, what: &str, components: &[std::path::PathBuf], settle: Duration, report: &mut Report) -> anyhow::Result<Many> {
    let n = components.len();
    let work = ctx.workdir("footprint-many")?;
    let setup = Setup::new(components.iter().enumerate().map(|(i, c)| Tenant::with_plugin(&format!("t{i:04}"), c)).collect());
    let timeout = Duration::from_secs(3600);
    eprintln!("  starting weir with {n} {what} (first start compiles each)");
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, timeout).await?;
    let first_start = weir.spawned_at.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_started = weir.rss_mib()?;
    one_trigger_each(&weir, n).await?;
    let rss_used = weir.rss_mib()?;
    weir.stop().await?;
    let repo_mib = file_mib(&work.path().join("data/plugins.redb"));

    eprintln!("  restarting weir with {n} {what} (cached artifacts)");
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, timeout).await?;
    let restart = weir.spawned_at.elapsed().as_secs_f64();
    tokio::time::sleep(settle).await;
    let rss_restarted = weir.rss_mib()?;
    one_trigger_each(&weir, n).await?;
    let rss_restarted_used = weir.rss_mib()?;
    weir.stop().await?;

    let label = |s: &str| format!("{n} {what}: {s}");
    report.push(Metric::with_samples(label("first start to /healthz (compiles)"), Unit::Seconds, vec![first_start]));
    report.push(Metric::with_samples(label("RSS after first start"), Unit::MiB, vec![rss_started]));
    report.push(Metric::with_samples(label("RSS after one trigger each"), Unit::MiB, vec![rss_used]));
    report.push(Metric::with_samples(label("restart to /healthz (cached artifacts)"), Unit::Seconds, vec![restart]));
    report.push(Metric::with_samples(label("RSS after restart"), Unit::MiB, vec![rss_restarted]));
    report.push(Metric::with_samples(label("RSS after restart and one trigger each"), Unit::MiB, vec![rss_restarted_used]));
    report.push(Metric::with_samples(label("plugins.redb size"), Unit::MiB, vec![repo_mib]));
    Ok(Many { rss: rss_used.max(rss_restarted_used), restart })
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
