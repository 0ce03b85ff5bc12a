//! `telemetry`: what traces cost ingest at saturation (issue 18). Three weirs
//! side by side, each with one passthrough tenant (ingest, plugin and commit
//! spans per trigger): telemetry off, traces at 100 % and at 1 %
//! (`telemetry.trace_sample_ratio`), exporting OTLP/HTTP to an in-process
//! sink that answers 200. Per round, closed loop, interleaved: bare, off,
//! 100 %, 1 %. The cost of a variant is 1 − its throughput over the off
//! weir's of the same round; and, less disturbed by other load on the
//! machine, its CPU time per trigger (utime + stime over the run, warm-up
//! included, divided by the triggers it stored) over the off weir's, at
//! saturation and then at one open-loop rate for all (half the slowest
//! variant's maximum), where batching and idle wake-ups are alike.
//!
//! `--before BIN` adds the same variants of a second binary (e.g. the
//! previous commit) to the same rounds, labelled `before:`. A binary without
//! `trace_sample_ratio` (before issue 18) refuses the 1 % config: that
//! variant is then skipped and a note says so.

use std::time::Duration;

use anyhow::Context;

use super::fleet_idle::cpu_ms;
use super::ingest::check_accepts;
use super::{Ctx, LoadMetrics, Plugins, ingest_target, measure};
use crate::load::Target;
use crate::report::{Metric, Report, Unit, median};
use crate::servers::{BareServer, Upstream};
use crate::weir::{Setup, TOKEN, Tenant, Weir, field};

/// (label, sample ratio; `None`: no endpoint at all).
const VARIANTS: &[(&str, Option<f64>)] = &[("telemetry off", None), ("traces 100 %", Some(1.0)), ("traces 1 %", Some(0.01))];

/// One weir under test: its label, the process, the ingest target, and which "off" it is compared with.
struct Variant {
    label: String,
    weir: Weir,
    target: Target,
    off: String,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let plugins = Plugins::ensure()?;
    let bare = BareServer::spawn()?;
    let sink = Upstream::reserve()?;
    sink.start().await?;
    let mut report = Report::new(
        "telemetry",
        format!(
            "1 KiB JSON POST to a passthrough tenant, {} keep-alive connections, closed loop: {:.1} s warm-up + {:.1} s measured, \
             {} round(s) interleaved bare → off → 100 % → 1 %; OTLP/HTTP to an in-process sink answering 200. weir: {}",
            ctx.connections,
            ctx.warmup.as_secs_f64(),
            ctx.duration.as_secs_f64(),
            ctx.runs,
            ctx.weir()?.display()
        ),
    );
    let mut weirs: Vec<Variant> = Vec::new();
    let mut dirs = Vec::new();
    let mut bins = vec![("", ctx.weir()?.to_path_buf())];
    if let Some(b) = &ctx.before {
        bins.push(("before: ", b.clone()));
    }
    for (prefix, bin) in &bins {
        for (label, ratio) in VARIANTS {
            let label = format!("{prefix}{label}");
            let work = ctx.workdir("telemetry")?;
            let mut setup = Setup::new(vec![Tenant::with_plugin("pass", &plugins.path("passthrough"))]);
            setup.max_bytes = super::BIG_BUDGET;
            if let Some(r) = ratio {
                setup.extra = format!("[telemetry]\notlp_endpoint = \"http://{}\"\n", sink.addr);
                // Written only when it is not the default, so a binary from before the key still runs 100 %.
                if *r < 1.0 {
                    setup.extra.push_str(&format!("trace_sample_ratio = {r}\n"));
                }
            }
            match Weir::start(bin, work.path(), &setup, ctx.start_timeout()).await {
                Ok(weir) => {
                    let target = ingest_target(weir.ingest, "pass")?;
                    check_accepts(&target).await?;
                    weirs.push(Variant { label, weir, target, off: format!("{prefix}telemetry off") });
                }
                Err(e) => report.note(format!("{label}: this weir does not start with that config, skipped: {:#}", e)),
            }
            dirs.push(work);
        }
    }
    if let Some(b) = &ctx.before {
        report.note(format!("before: {}", b.display()));
    }
    let bare_target = super::ingest_target(bare.addr, "bare")?;
    let mut bare_m = LoadMetrics::new("bare hyper 202");
    let mut m: Vec<LoadMetrics> = weirs.iter().map(|v| LoadMetrics::new(&v.label)).collect();
    let mut cpu: Vec<Metric> = weirs.iter().map(|v| Metric::new(format!("{}: CPU per trigger", v.label), Unit::Micros)).collect();
    for round in 0..ctx.runs {
        eprintln!("  telemetry round {}/{}", round + 1, ctx.runs);
        bare_m.add(&measure(&bare_target, &ctx.closed(), "bare (closed)", &mut report).await?);
        for ((v, lm), c) in weirs.iter().zip(m.iter_mut()).zip(cpu.iter_mut()) {
            let (outcome, per_trigger) = cpu_per_trigger(v, &ctx.closed(), &format!("{} (closed)", v.label), &mut report).await?;
            lm.add(&outcome);
            c.samples.push(per_trigger);
        }
    }
    // CPU per trigger moves with throughput (commit batching, idle
    // wake-ups): at one rate for all, open loop, below the slowest
    // variant's maximum, it compares the telemetry alone.
    let slowest = m.iter().map(|lm| median(&lm.throughput.samples)).fold(f64::INFINITY, f64::min);
    let rate = (slowest / 2.0).max(100.0).round();
    let mut open_cpu: Vec<Metric> =
        weirs.iter().map(|v| Metric::new(format!("{}: CPU per trigger at {rate:.0}/s, open loop", v.label), Unit::Micros)).collect();
    for round in 0..ctx.runs {
        eprintln!("  telemetry open loop {}/{} at {rate:.0}/s", round + 1, ctx.runs);
        for (v, c) in weirs.iter().zip(open_cpu.iter_mut()) {
            c.samples.push(cpu_per_trigger(v, &ctx.open(rate), &format!("{} (open)", v.label), &mut report).await?.1);
        }
    }
    for lm in &mut m {
        lm.ratio_to(&bare_m);
    }
    costs(&mut report, &weirs, &m, &cpu, &open_cpu);
    for v in &mut weirs {
        spans(&mut report, &v.label, &v.weir).await;
        v.weir.stop().await?;
    }
    report.push(Metric::with_samples("OTLP requests the sink answered", Unit::Count, vec![sink.requests() as f64]));
    // In process: the calls ingest makes, with their export, and nothing else.
    let n = if ctx.quick { 5_000 } else { 50_000 };
    for (label, us) in per_trigger(sink.addr, n).await {
        report.push(Metric::with_samples(format!("in process, {label}: telemetry CPU per trigger (this build)"), Unit::Micros, vec![us]));
    }
    bare_m.into_report(&mut report);
    for ((lm, c), o) in m.into_iter().zip(cpu).zip(open_cpu) {
        lm.into_report(&mut report);
        report.push(c);
        report.push(o);
    }
    Ok(report)
}

/// One load run against `v`: its outcome, and the weir's CPU time (user +
/// system, warm-up included) per trigger it stored meanwhile, in µs.
async fn cpu_per_trigger(
    v: &Variant,
    plan: &crate::load::Plan,
    what: &str,
    report: &mut Report,
) -> anyhow::Result<(crate::load::Outcome, f64)> {
    let pid = v.weir.pid().context("weir is not running")?;
    let (cpu0, stored0) = (cpu_ms(pid)?, field(&v.weir.status().await?, "/pending")?);
    let outcome = measure(&v.target, plan, what, report).await?;
    let (cpu1, stored1) = (cpu_ms(pid)?, field(&v.weir.status().await?, "/pending")?);
    Ok((outcome, 1000.0 * (cpu1 - cpu0) / (stored1.saturating_sub(stored0)).max(1) as f64))
}

/// Per variant: 1 − throughput / its off weir's throughput of the same round
/// (median over rounds), and its CPU per trigger over the off weir's, at
/// saturation and at one open-loop rate.
fn costs(report: &mut Report, weirs: &[Variant], m: &[LoadMetrics], cpu: &[Metric], open_cpu: &[Metric]) {
    for (i, v) in weirs.iter().enumerate() {
        let Some(off) = weirs.iter().position(|o| o.label == v.off).filter(|off| *off != i) else { continue };
        let per_round: Vec<f64> =
            m[i].throughput.samples.iter().zip(&m[off].throughput.samples).map(|(x, o)| 100.0 * (1.0 - x / o.max(1e-9))).collect();
        let cost = median(&per_round);
        let goal = (v.label == "traces 1 %").then_some(cost <= 5.0);
        report.goal(
            format!("{}: throughput cost against {}{}", v.label, v.off, if goal.is_some() { " ≤ 5 %" } else { "" }),
            format!("{cost:.1} % (rounds: {})", per_round.iter().map(|c| format!("{c:.1}")).collect::<Vec<_>>().join(", ")),
            goal,
        );
        report.push(Metric::with_samples(format!("{}: cost against off", v.label), Unit::Percent, per_round));
        for (what, cpu) in [("CPU per trigger", cpu), ("CPU per trigger in the open loop", open_cpu)] {
            let rounds: Vec<f64> = cpu[i].samples.iter().zip(&cpu[off].samples).map(|(x, o)| 100.0 * (x / o.max(1e-9) - 1.0)).collect();
            report.goal(
                format!("{}: {what} against {}", v.label, v.off),
                format!("{:+.1} % (rounds: {})", median(&rounds), rounds.iter().map(|c| format!("{c:+.1}")).collect::<Vec<_>>().join(", ")),
                None,
            );
        }
    }
}

/// The weir's own span counters, from `/metrics`.
async fn spans(report: &mut Report, label: &str, w: &Weir) {
    let page = crate::client::get(w.admin, "/metrics", Some(TOKEN), Duration::from_secs(10)).await.context("GET /metrics");
    let Ok((_, body)) = page else { return };
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok());
    if let (Some(e), Some(d)) = (value("weir_trace_spans_exported_total "), value("weir_trace_spans_dropped_total ")) {
        report.note(format!("{label}: {e:.0} spans exported, {d:.0} dropped"));
    }
}

/// What the telemetry calls of one trigger cost in this process, away from
/// any I/O or load: the ingest, plugin and commit metrics, and the ingest,
/// plugin and store.commit spans with their attributes and the stored
/// `traceparent`, as ingest makes them; per tracer state (off, 100 %, 1 %),
/// exporting to `sink`. µs per trigger of process CPU: the export task and
/// the sink receiving the exports included (nothing else runs meanwhile).
pub async fn per_trigger(sink: std::net::SocketAddr, n: u32) -> Vec<(&'static str, f64)> {
    use weir::telemetry::{Kind, Metrics, Tracer};
    let metrics = Metrics::new(100);
    let mut out = Vec::new();
    for (label, ratio) in VARIANTS {
        let mut config = weir::config::TelemetryConfig::default();
        if let Some(r) = ratio {
            config.otlp_endpoint = Some(format!("http://{sink}"));
            config.trace_sample_ratio = *r;
        }
        let tracer = Tracer::start(&config, &metrics);
        let started = process_cpu();
        for _ in 0..n {
            let mut span = tracer.span("ingest", Kind::Server, None);
            let ctx = span.as_ref().map(|s| s.context());
            let _stored = ctx.as_ref().map(weir::telemetry::trace::traceparent);
            let mut p = tracer.span("plugin", Kind::Internal, ctx.as_ref());
            if let Some(s) = p.as_mut().filter(|s| s.is_recording()) {
                s.attr("weir.plugin.version", 1u64);
            }
            tracer.end(p);
            metrics.plugin("pass", Duration::from_micros(300), None, false);
            let mut c = tracer.span("store.commit", Kind::Internal, ctx.as_ref());
            if let Some(s) = c.as_mut().filter(|s| s.is_recording()) {
                s.attr("weir.commit.batch_size", 8u64);
            }
            tracer.end(c);
            metrics.commit(8, Duration::from_micros(900));
            metrics.ingest("pass", "accepted", Duration::from_millis(2));
            if let Some(s) = span.as_mut().filter(|s| s.is_recording()) {
                s.attr("http.request.method", "POST");
                s.attr("url.path", "/ingest/pass/bench".to_string());
                s.attr("http.response.status_code", 202u64);
                s.attr("weir.tenant", "pass".to_string());
                s.attr("weir.source", "bench".to_string());
                s.attr("weir.outcome", "accepted");
                s.attr("weir.trigger_id", "01KAT5ZQ4H5M2D3X9V7C8B6N1P".to_string());
            }
            tracer.end(span);
            // Let the export task drain the queue as it would between requests.
            tokio::task::yield_now().await;
        }
        out.push((*label, (process_cpu() - started) * 1e6 / f64::from(n)));
        tracer.close(tokio::time::Instant::now() + Duration::from_secs(10)).await;
    }
    out
}

/// CPU seconds this process has used.
fn process_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_PROCESS_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
