//! `telemetry`: what traces cost ingest at saturation (issue 18). Three weirs
//! side by side, each with one passthrough tenant (ingest, plugin and commit
//! spans per trigger): telemetry off, traces at 100 % and at 1 %
//! (`telemetry.trace_sample_ratio`), exporting OTLP/HTTP to an in-process
//! sink that answers 200. Per round, closed loop, interleaved: bare, off,
//! 100 %, 1 %. The cost of a variant is 1 − its throughput over the off
//! weir's of the same round.
//!
//! A binary without `trace_sample_ratio` (before issue 18) refuses the 1 %
//! config: that variant is then skipped and a note says so.

use std::time::Duration;

use anyhow::Context;

use super::ingest::check_accepts;
use super::{Ctx, LoadMetrics, Plugins, ingest_target, measure};
use crate::load::Target;
use crate::report::{Metric, Report, Unit, median};
use crate::servers::{BareServer, Upstream};
use crate::weir::{Setup, TOKEN, Tenant, Weir};

/// (label, sample ratio; `None`: no endpoint at all).
const VARIANTS: &[(&str, Option<f64>)] = &[("telemetry off", None), ("traces 100 %", Some(1.0)), ("traces 1 %", Some(0.01))];

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
    let mut weirs = Vec::new();
    let mut dirs = Vec::new();
    for (label, ratio) in VARIANTS {
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
        match Weir::start(ctx.weir()?, work.path(), &setup, ctx.start_timeout()).await {
            Ok(w) => {
                let target = ingest_target(w.ingest, "pass")?;
                check_accepts(&target).await?;
                weirs.push((*label, w, target));
            }
            Err(e) => report.note(format!("{label}: this weir does not start with that config, skipped: {e:#}")),
        }
        dirs.push(work);
    }
    let bare_target = super::ingest_target(bare.addr, "bare")?;
    let mut bare_m = LoadMetrics::new("bare hyper 202");
    let mut m: Vec<LoadMetrics> = weirs.iter().map(|(label, ..)| LoadMetrics::new(label)).collect();
    for round in 0..ctx.runs {
        eprintln!("  telemetry round {}/{}", round + 1, ctx.runs);
        bare_m.add(&measure(&bare_target, &ctx.closed(), "bare (closed)", &mut report).await?);
        for ((label, _, target), lm) in weirs.iter().zip(m.iter_mut()) {
            lm.add(&measure(target, &ctx.closed(), &format!("{label} (closed)"), &mut report).await?);
        }
    }
    for lm in &mut m {
        lm.ratio_to(&bare_m);
    }
    costs(&mut report, &weirs, &m);
    for (label, w, _) in &mut weirs {
        spans(&mut report, label, w).await;
        w.stop().await?;
    }
    report.push(Metric::with_samples("OTLP requests the sink answered", Unit::Count, vec![sink.requests() as f64]));
    bare_m.into_report(&mut report);
    for lm in m {
        lm.into_report(&mut report);
    }
    Ok(report)
}

/// Per variant: 1 − throughput / the off weir's throughput of the same round (median over rounds).
fn costs(report: &mut Report, weirs: &[(&str, Weir, Target)], m: &[LoadMetrics]) {
    let Some(off) = weirs.iter().position(|(l, ..)| *l == "telemetry off") else { return };
    for (i, (label, ..)) in weirs.iter().enumerate().filter(|(i, _)| *i != off) {
        let per_round: Vec<f64> =
            m[i].throughput.samples.iter().zip(&m[off].throughput.samples).map(|(v, o)| 100.0 * (1.0 - v / o.max(1e-9))).collect();
        let cost = median(&per_round);
        let goal = match *label {
            "traces 1 %" => Some(("≤ 5 %", cost <= 5.0)),
            _ => None,
        };
        report.goal(
            format!("{label}: throughput cost against telemetry off{}", goal.map_or(String::new(), |(g, _)| format!(" {g}"))),
            format!("{cost:.1} % (rounds: {})", per_round.iter().map(|c| format!("{c:.1}")).collect::<Vec<_>>().join(", ")),
            goal.map(|(_, met)| met),
        );
        report.push(Metric::with_samples(format!("{label}: cost against off"), Unit::Percent, per_round));
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
