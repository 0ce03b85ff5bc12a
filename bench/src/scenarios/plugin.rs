//! `plugin`: what one trigger's plugin call costs, in process, through the
//! gateway library: a fresh Store + instance + `handle` call per trigger
//! (`PluginHost::run_inline`, an async call awaited in one task), with the
//! 1 KiB JSON body and a valid GitHub signature. No HTTP, no store.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use weir::config::TenantConfig;
use weir::plugin::{Decision, Input, Phase, PluginHost};

use super::{Ctx, Plugins, SECRET, body_1k, github_signature};
use crate::report::{Metric, Report, Unit};

/// (tenant id, plugin file stem, label).
const PLUGINS: [(&str, &str, &str); 3] =
    [("pass", "passthrough", "passthrough"), ("hmac", "hmac_verify", "hmac-verify"), ("json", "json_transform", "json-transform")];

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let plugins = Plugins::ensure()?;
    let dir = ctx.workdir("plugin")?;
    let mut config = weir::Config::default();
    config.store.path = dir.path().to_path_buf();
    // This process is weir-bench: plugins compile in the weir binary.
    config.plugins.compiler = Some(ctx.weir()?.to_path_buf());
    for (id, file, _) in PLUGINS {
        config.tenants.push(TenantConfig {
            id: id.into(),
            plugin: Some(plugins.path(file)),
            config: [("secret".to_string(), SECRET.to_string())].into(),
            ..TenantConfig::default()
        });
    }
    let repo = Arc::new(weir::store::ControlFile::open(dir.path()).context("opening the plugin repository")?);
    let host = PluginHost::start(&config, weir::tenants::Tenants::from_config(&config), repo).await.context("starting the plugin host")?;
    let iterations = if ctx.quick { 500 } else { 20_000 };
    let mut report = Report::new(
        "plugin",
        format!(
            "in process, one thread: fresh instance + handle() per trigger, {}-byte JSON body, {iterations} timed calls \
             after {} warm-up calls, {} run(s); harness built {}",
            body_1k().len(),
            iterations / 10,
            ctx.runs,
            if cfg!(debug_assertions) { "DEBUG (figures meaningless)" } else { "release" }
        ),
    );
    let mut p50s = Vec::new();
    for (tenant, _, label) in PLUGINS {
        let mut p50 = Metric::new(format!("{label}: p50"), Unit::Micros);
        let mut p99 = Metric::new(format!("{label}: p99"), Unit::Micros);
        let mut mean = Metric::new(format!("{label}: mean"), Unit::Micros);
        for _ in 0..ctx.runs {
            let (a, b, c) = time_calls(host.clone(), tenant, iterations).await?;
            p50.samples.push(a);
            p99.samples.push(b);
            mean.samples.push(c);
        }
        p50s.push(p50.median());
        report.push(p50);
        report.push(p99);
        report.push(mean);
    }
    let pass = p50s[0];
    report.goal("passthrough ≤ 10 µs (p50)", format!("{pass:.1} µs"), Some(pass <= 10.0));
    let both = p50s[1] + p50s[2];
    report.goal(
        "HMAC + JSON ≤ 30 µs (p50 of hmac-verify + p50 of json-transform: two plugins, no single one does both)",
        format!("{both:.1} µs"),
        Some(both <= 30.0),
    );
    report.note(format!("median of per-run p50s: {}", p50s.iter().map(|v| format!("{v:.1}")).collect::<Vec<_>>().join(" / ")));
    Ok(report)
}

/// Times `iterations` calls, one after the other: (p50, p99, mean) in µs.
async fn time_calls(host: Arc<PluginHost>, tenant: &'static str, iterations: usize) -> anyhow::Result<(f64, f64, f64)> {
    {
        let input = input(tenant)?;
        let mut hist = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).context("histogram")?;
        for i in 0..iterations + iterations / 10 {
            let t = Instant::now();
            let r = host.run_inline(input.clone()).await.with_context(|| format!("tenant {tenant} has no ready plugin"))?;
            let ns = t.elapsed().as_nanos() as u64;
            match r {
                Ok(Decision::Accept(_)) => {}
                other => bail!("{tenant}: expected accept, got {other:?}"),
            }
            if i >= iterations / 10 {
                hist.saturating_record(ns.max(1));
            }
        }
        let us = |ns: u64| ns as f64 / 1000.0;
        Ok((us(hist.value_at_quantile(0.5)), us(hist.value_at_quantile(0.99)), hist.mean() / 1000.0))
    }
}

fn input(tenant: &str) -> anyhow::Result<Input> {
    let body = body_1k();
    Ok(Input {
        tenant: tenant.into(),
        source: "bench".into(),
        headers: vec![("content-type".into(), "application/json".into()), ("x-hub-signature-256".into(), github_signature(SECRET, &body)?)],
        body,
        received_at_ms: 1_700_000_000_000,
        phase: Phase::Ingest,
    })
}
