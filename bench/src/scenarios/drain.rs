//! `drain`: a backlog of N triggers built while the upstream is down (nothing
//! listens on its port), then the fast loopback upstream comes up while ingest
//! goes on at 50 % of the measured maximum.
//!
//! Reported: the fill rate (closed loop: the ingest maximum with a growing
//! store), the forwarder's delivery rate and the net backlog reduction during
//! the drain (from `/v1/status`), the time to the first delivery (breaker
//! probe) and to an empty backlog, and ingest latency at 50 % load during the
//! drain against the same load before it (upstream still down).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Ctx, Plugins, fill, forwarding_setup, ingest_target, measure, ratio_text};
use crate::load::{self, Pace, Plan};
use crate::report::{Metric, Report, Unit, median};
use crate::servers::Upstream;
use crate::weir::{Weir, field};

/// What one run measured.
struct Figures {
    fill_rate: f64,
    unloaded_p50: f64,
    unloaded_p99: f64,
    during_p50: f64,
    during_p99: f64,
    during_rate: f64,
    watch: Watch,
}

/// The drain as `/v1/status` saw it.
struct Watch {
    secs: f64,
    drained: bool,
    delivered: u64,
    net: i64,
    first_delivery_secs: Option<f64>,
    upstream_requests: u64,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let n = ctx.triggers.unwrap_or(if ctx.quick { 5_000 } else { 1_000_000 });
    let runs = if ctx.runs_explicit || n < 100_000 { ctx.runs } else { 1 };
    let cap = Duration::from_secs(if ctx.quick { 8 } else { 180 });
    let plugins = Plugins::ensure()?;
    let mut report = Report::new(
        "drain",
        format!(
            "backlog of {n} triggers (1 KiB JSON, passthrough plugin) filled closed-loop at {} connections with the upstream down; \
             then the in-process upstream (200) comes up while ingest runs open-loop at 50 % of the fill rate \
             ({:.1} s measured before the drain, upstream still down, vs during the drain); drain watched for at most {} s; {runs} run(s)",
            ctx.connections,
            ctx.duration.as_secs_f64(),
            cap.as_secs()
        ),
    );
    if runs < ctx.runs {
        report.note(format!("one run only: a {n}-trigger fill is long (pass --runs to repeat)"));
    }
    let mut all = Vec::new();
    for run in 0..runs {
        eprintln!("  drain run {}/{runs}: filling {n}", run + 1);
        all.push(one_run(ctx, &plugins, n, cap, &mut report).await?);
    }
    summarize(&mut report, &all);
    Ok(report)
}

async fn one_run(ctx: &Ctx, plugins: &Plugins, n: u64, cap: Duration, report: &mut Report) -> anyhow::Result<Figures> {
    let work = ctx.workdir("drain")?;
    let upstream = Upstream::reserve()?;
    let setup = forwarding_setup(plugins, upstream.url());
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, ctx.start_timeout()).await?;
    let target = ingest_target(weir.ingest, "pass")?;
    let filled = fill(ctx, &target, n, report).await?;
    let rate = 0.5 * filled.throughput();
    eprintln!("  filled at {:.0}/s; unloaded p99 at {rate:.0}/s", filled.throughput());
    let unloaded = measure(&target, &ctx.open(rate), "ingest before the drain (open)", report).await?;

    eprintln!("  upstream up: draining");
    let stop = Arc::new(AtomicBool::new(false));
    let plan = Plan {
        pace: Pace::Open(rate),
        connections: ctx.connections,
        warmup: Duration::ZERO,
        duration: None,
        max_ok: None,
        stop: Some(stop.clone()),
    };
    let (t, p) = (target.clone(), plan);
    let load = tokio::spawn(async move { load::run(&t, &p).await });
    let watched = watch(&weir, &upstream, rate, cap).await;
    stop.store(true, Ordering::Relaxed);
    let during = load.await??;
    let watch = watched?;
    if let Some(f) = during.failures() {
        report.note(format!("ingest during the drain: besides {} × 202: {f}", during.ok));
    }
    weir.stop().await?;
    Ok(Figures {
        fill_rate: filled.throughput(),
        unloaded_p50: unloaded.quantile_ms(0.5),
        unloaded_p99: unloaded.quantile_ms(0.99),
        during_p50: during.quantile_ms(0.5),
        during_p99: during.quantile_ms(0.99),
        during_rate: during.throughput(),
        watch,
    })
}

/// Starts the upstream and polls `/v1/status` until the backlog is down to
/// what steady ingest keeps pending, or `cap` passes.
async fn watch(weir: &Weir, upstream: &Upstream, rate: f64, cap: Duration) -> anyhow::Result<Watch> {
    let before = weir.status().await?;
    let (pending0, delivered0) = (field(&before, "/pending")?, field(&before, "/delivered")?);
    let requests0 = upstream.requests();
    upstream.start().await?;
    let t0 = Instant::now();
    // Steady ingest keeps about rate × (commit + delivery time) pending.
    let threshold = (rate * 0.05).max(200.0) as u64;
    let mut first = None;
    let (mut pending, mut delivered);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = weir.status().await?;
        pending = field(&s, "/pending")?;
        delivered = field(&s, "/delivered")?;
        if first.is_none() && delivered > delivered0 {
            first = Some(t0.elapsed().as_secs_f64());
        }
        if pending <= threshold || t0.elapsed() >= cap {
            break;
        }
    }
    Ok(Watch {
        secs: t0.elapsed().as_secs_f64(),
        drained: pending <= threshold,
        delivered: delivered - delivered0,
        net: pending0 as i64 - pending as i64,
        first_delivery_secs: first,
        upstream_requests: upstream.requests() - requests0,
    })
}

fn summarize(report: &mut Report, all: &[Figures]) {
    let col = |f: fn(&Figures) -> f64| all.iter().map(f).collect::<Vec<f64>>();
    let fill = col(|f| f.fill_rate);
    let drain = col(|f| f.watch.delivered as f64 / f.watch.secs);
    let drain_m = Metric::with_samples("drain: deliveries per second (whole window)", Unit::PerSec, drain.clone());
    report.push(Metric::with_samples("fill: ingest max (closed loop, growing store)", Unit::PerSec, fill.clone()));
    report.push(drain_m);
    report.push(Metric::with_samples("drain: net backlog reduction per second", Unit::PerSec, col(|f| f.watch.net as f64 / f.watch.secs)));
    report.push(Metric::with_samples("drain: window (to drained or cap)", Unit::Seconds, col(|f| f.watch.secs)));
    report.push(Metric::with_samples(
        "drain: time to first delivery",
        Unit::Seconds,
        col(|f| f.watch.first_delivery_secs.unwrap_or(f64::NAN)),
    ));
    report.push(Metric::with_samples("drain: upstream requests seen", Unit::Count, col(|f| f.watch.upstream_requests as f64)));
    report.push(Metric::with_samples("ingest at 50 %, before drain: p50", Unit::Millis, col(|f| f.unloaded_p50)));
    report.push(Metric::with_samples("ingest at 50 %, before drain: p99", Unit::Millis, col(|f| f.unloaded_p99)));
    report.push(Metric::with_samples("ingest at 50 %, during drain: achieved", Unit::PerSec, col(|f| f.during_rate)));
    report.push(Metric::with_samples("ingest at 50 %, during drain: p50", Unit::Millis, col(|f| f.during_p50)));
    report.push(Metric::with_samples("ingest at 50 %, during drain: p99", Unit::Millis, col(|f| f.during_p99)));
    for (i, f) in all.iter().enumerate() {
        if !f.watch.drained {
            report.note(format!(
                "run {}: the backlog was not drained within the {:.0} s window; rates are over that window",
                i + 1,
                f.watch.secs
            ));
        }
    }
    let ratio = median(&drain) / median(&fill).max(1e-9);
    report.goal("drain rate ≥ 0.5 × ingest max", ratio_text(ratio).replace("bare", "ingest max"), Some(ratio >= 0.5));
    let net = median(&col(|f| f.watch.net as f64 / f.watch.secs));
    report.goal("the backlog shrinks while ingest runs at 50 %", format!("{net:+.0}/s"), Some(net > 0.0));
    let (during, unloaded) = (median(&col(|f| f.during_p99)), median(&col(|f| f.unloaded_p99)));
    report.goal(
        "ingest p99 during the drain ≤ 3 × unloaded",
        format!("{during:.2} ms vs {unloaded:.2} ms ({:.1} ×)", during / unloaded.max(1e-9)),
        Some(during <= 3.0 * unloaded),
    );
}
