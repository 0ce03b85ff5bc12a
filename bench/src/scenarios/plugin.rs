//! `plugin`: what one trigger's plugin call costs, in process, through the
//! gateway library: a fresh Store + instance + `handle` call per trigger
//! (`PluginHost::run_inline`, an async call awaited in one task), with the
//! 1 KiB JSON body and a valid GitHub signature. No HTTP, no store. The
//! same three examples in each SDK language (Rust, JavaScript on QuickJS,
//! Python on CPython), and per language the component's size and its
//! compile time at upload (`weir plugin check`, the upload's compile).

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use hdrhistogram::Histogram;
use weir::config::TenantConfig;
use weir::plugin::{Decision, Input, Phase, PluginHost};

use super::{Ctx, Plugins, SECRET, body_1k, github_signature};
use crate::report::{Metric, Report, Unit};

/// One example plugin of one language.
struct Example {
    tenant: &'static str,
    lang: Lang,
    /// The component's file stem.
    file: &'static str,
    label: &'static str,
}

#[derive(Clone, Copy, PartialEq)]
enum Lang {
    Rust,
    Js,
    Python,
}

impl Lang {
    fn name(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Js => "JavaScript",
            Lang::Python => "Python",
        }
    }
}

/// Per language: passthrough, hmac-verify, json-transform (in that order).
const EXAMPLES: [Example; 9] = [
    Example { tenant: "pass", lang: Lang::Rust, file: "passthrough", label: "passthrough" },
    Example { tenant: "hmac", lang: Lang::Rust, file: "hmac_verify", label: "hmac-verify" },
    Example { tenant: "json", lang: Lang::Rust, file: "json_transform", label: "json-transform" },
    Example { tenant: "js-pass", lang: Lang::Js, file: "js-passthrough", label: "js passthrough" },
    Example { tenant: "js-hmac", lang: Lang::Js, file: "js-hmac-verify", label: "js hmac-verify" },
    Example { tenant: "js-json", lang: Lang::Js, file: "js-json-transform", label: "js json-transform" },
    Example { tenant: "py-pass", lang: Lang::Python, file: "py-passthrough", label: "py passthrough" },
    Example { tenant: "py-hmac", lang: Lang::Python, file: "py-hmac-verify", label: "py hmac-verify" },
    Example { tenant: "py-json", lang: Lang::Python, file: "py-json-transform", label: "py json-transform" },
];

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let (rust, languages) = (Plugins::ensure()?, Plugins::languages()?);
    let path = |e: &Example| if e.lang == Lang::Rust { rust.path(e.file) } else { languages.path(e.file) };
    let dir = ctx.workdir("plugin")?;
    let mut config = weir::Config::default();
    config.store.path = dir.path().to_path_buf();
    // This process is weir-bench: plugins compile in the weir binary.
    config.plugins.compiler = Some(ctx.weir()?.to_path_buf());
    // Quick mode (CI, a debug weir compiling CPython in ~30 s a copy) keeps
    // one Python example: enough to keep the path working.
    let examples: Vec<&Example> = EXAMPLES.iter().filter(|e| !ctx.quick || e.lang != Lang::Python || e.label == "py passthrough").collect();
    for e in &examples {
        config.tenants.push(TenantConfig {
            id: e.tenant.into(),
            plugin: Some(path(e)),
            config: [("secret".to_string(), SECRET.to_string())].into(),
            // This measures cost, not the limit: a debug weir starts CPython
            // in ~25 ms, too close to the default 50 ms budget to finish a run.
            plugin_timeout_ms: if e.lang == Lang::Python { 1_000 } else { TenantConfig::default().plugin_timeout_ms },
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
             (Python: a tenth) after a tenth as many warm-up calls, {} run(s); sizes and compile times from `weir plugin check`; harness built {}",
            body_1k().len(),
            ctx.runs,
            if cfg!(debug_assertions) { "DEBUG (figures meaningless)" } else { "release" }
        ),
    );
    let mut p50s: Vec<(&str, f64)> = Vec::new();
    for e in &examples {
        let n = if e.lang == Lang::Python { (iterations / 10).max(50) } else { iterations };
        let mut p50 = Metric::new(format!("{}: p50", e.label), Unit::Micros);
        let mut p99 = Metric::new(format!("{}: p99", e.label), Unit::Micros);
        let mut mean = Metric::new(format!("{}: mean", e.label), Unit::Micros);
        for _ in 0..ctx.runs {
            let (a, b, c) = time_calls(host.clone(), e.tenant, n).await?;
            p50.samples.push(a);
            p99.samples.push(b);
            mean.samples.push(c);
        }
        p50s.push((e.label, p50.median()));
        report.push(p50);
        report.push(p99);
        report.push(mean);
    }
    for e in examples.iter().filter(|e| e.label.ends_with("hmac-verify")) {
        let (size, compile_ms, native) = check(ctx, &path(e))?;
        report.push(Metric::with_samples(format!("{} component: size", e.lang.name()), Unit::MiB, vec![size / MIB]));
        report.push(Metric::with_samples(format!("{} component: compile at upload", e.lang.name()), Unit::Millis, vec![compile_ms]));
        report.push(Metric::with_samples(format!("{} component: native code", e.lang.name()), Unit::MiB, vec![native / MIB]));
    }
    let p50 = |label: &str| p50s.iter().find(|(l, _)| *l == label).map(|(_, v)| *v);
    let goal = |report: &mut Report, text: &str, value: Option<f64>, limit_us: f64| match value {
        Some(v) => report.goal(text, format!("{v:.1} µs"), Some(v <= limit_us)),
        None => report.goal(text, "not measured (quick)".to_string(), None),
    };
    goal(&mut report, "passthrough ≤ 10 µs (p50)", p50("passthrough"), 10.0);
    let both = |prefix: &str| Some(p50(&format!("{prefix}hmac-verify"))? + p50(&format!("{prefix}json-transform"))?);
    goal(
        &mut report,
        "HMAC + JSON ≤ 30 µs (p50 of hmac-verify + p50 of json-transform: two plugins, no single one does both)",
        both(""),
        30.0,
    );
    goal(&mut report, "JavaScript HMAC + JSON ≤ 250 µs (the same sum, JavaScript examples)", both("js "), 250.0);
    let python = ["py passthrough", "py hmac-verify", "py json-transform"].map(p50);
    let worst = python.iter().all(Option::is_some).then(|| python.iter().flatten().fold(0.0, |a: f64, b| a.max(*b)));
    goal(&mut report, "Python ≤ 2 ms per trigger (p50 of each example; the worst)", worst, 2000.0);
    report.note(format!("median of per-run p50s: {}", p50s.iter().map(|(_, v)| format!("{v:.1}")).collect::<Vec<_>>().join(" / ")));
    Ok(report)
}

const MIB: f64 = 1024.0 * 1024.0;

/// `weir plugin check --json` on a component under the default limits:
/// (size in bytes, compile ms, native code bytes), the upload's own figures.
fn check(ctx: &Ctx, component: &std::path::Path) -> anyhow::Result<(f64, f64, f64)> {
    let out = std::process::Command::new(ctx.weir()?)
        .args(["plugin", "check", "--json"])
        .arg(component)
        .env_remove("WEIR_CONFIG")
        .output()
        .context("running weir plugin check")?;
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("weir plugin check {}: {}", component.display(), String::from_utf8_lossy(&out.stderr)))?;
    let num = |k: &str| v[k].as_f64().with_context(|| format!("weir plugin check --json has no {k}: {v}"));
    Ok((num("size")?, num("compile_ms")?, num("artifact_bytes")?))
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
                other => bail!("{tenant}: call {i}: expected accept, got {other:?}"),
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
