//! `outage`: steady open-loop ingest while the upstream goes away for a while
//! (listener closed, open connections dropped: connections are refused) and
//! comes back.
//!
//! Reported: the share of ingests answered 202 (must be all of them), the
//! upstream connection attempts Weir made during the outage (the difference
//! of `upstreams[0].attempts` in `/v1/status`: a down upstream cannot count
//! them itself), the backlog at recovery, and the time until the backlog is
//! gone: the bulk (pending back to its pre-outage level) and completely
//! (also no retry waiting in backoff).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::{Ctx, Plugins, forwarding_setup, ingest_target};
use crate::load::{self, Pace, Plan};
use crate::report::{Metric, Report, Unit};
use crate::servers::Upstream;
use crate::weir::{Weir, field};

struct Phases {
    rate: f64,
    before: Duration,
    outage: Duration,
    cap: Duration,
}

struct Figures {
    ok_percent: f64,
    answered: u64,
    p99: f64,
    attempts: u64,
    failures: u64,
    backlog: u64,
    bulk_secs: Option<f64>,
    full_secs: Option<f64>,
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let ph = if ctx.quick {
        Phases { rate: 200.0, before: Duration::from_secs(1), outage: Duration::from_secs(3), cap: Duration::from_secs(15) }
    } else {
        Phases { rate: 1000.0, before: Duration::from_secs(10), outage: Duration::from_secs(60), cap: Duration::from_secs(300) }
    };
    let plugins = Plugins::ensure()?;
    let mut report = Report::new(
        "outage",
        format!(
            "open loop {:.0} req/s (1 KiB JSON, passthrough plugin, {} connections): {} s with the upstream up, {} s down \
             (refusing connections), then up again until the backlog is gone (at most {} s); {} run(s)",
            ph.rate,
            ctx.connections,
            ph.before.as_secs(),
            ph.outage.as_secs(),
            ph.cap.as_secs(),
            ctx.runs
        ),
    );
    let mut all = Vec::new();
    for run in 0..ctx.runs {
        eprintln!("  outage run {}/{}", run + 1, ctx.runs);
        all.push(one_run(ctx, &plugins, &ph, &mut report).await?);
    }
    summarize(&mut report, &all, &ph);
    Ok(report)
}

async fn one_run(ctx: &Ctx, plugins: &Plugins, ph: &Phases, report: &mut Report) -> anyhow::Result<Figures> {
    let work = ctx.workdir("outage")?;
    let upstream = Upstream::reserve()?;
    upstream.start().await?;
    let setup = forwarding_setup(plugins, upstream.url());
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, ctx.start_timeout()).await?;
    let target = ingest_target(weir.ingest, "pass")?;
    let stop = Arc::new(AtomicBool::new(false));
    let plan = Plan {
        pace: Pace::Open(ph.rate),
        connections: ctx.connections,
        warmup: Duration::ZERO,
        duration: None,
        max_ok: None,
        stop: Some(stop.clone()),
    };
    let (t, p) = (target.clone(), plan);
    let load = tokio::spawn(async move { load::run(&t, &p).await });

    let result = phases(&weir, &upstream, ph).await;
    stop.store(true, Ordering::Relaxed);
    let outcome = load.await??;
    let mut f = result?;
    weir.stop().await?;
    if let Some(fail) = outcome.failures() {
        report.note(format!("answers besides {} × 202: {fail}", outcome.ok));
    }
    f.ok_percent = outcome.ok_percent();
    f.answered = outcome.total();
    f.p99 = outcome.quantile_ms(0.99);
    Ok(f)
}

/// Up, down, up again; watches `/v1/status` throughout.
async fn phases(weir: &Weir, upstream: &Upstream, ph: &Phases) -> anyhow::Result<Figures> {
    let before_max = max_pending_for(weir, ph.before).await?;
    let s0 = weir.status().await?;
    upstream.stop();
    max_pending_for(weir, ph.outage).await?;
    let s1 = weir.status().await?;
    upstream.start().await?;
    let up = Instant::now();
    let threshold = (2 * before_max).max(50);
    let (mut bulk, mut full) = (None, None);
    while full.is_none() && up.elapsed() < ph.cap {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let s = weir.status().await?;
        let pending = field(&s, "/pending")?;
        if bulk.is_none() && pending <= threshold {
            bulk = Some(up.elapsed().as_secs_f64());
        }
        if bulk.is_some() && field(&s, "/retries_waiting")? == 0 {
            full = Some(up.elapsed().as_secs_f64());
        }
    }
    Ok(Figures {
        ok_percent: 0.0,
        answered: 0,
        p99: 0.0,
        attempts: field(&s1, "/upstreams/0/attempts")? - field(&s0, "/upstreams/0/attempts")?,
        failures: field(&s1, "/upstreams/0/failures")? - field(&s0, "/upstreams/0/failures")?,
        backlog: field(&s1, "/pending")?,
        bulk_secs: bulk,
        full_secs: full,
    })
}

/// Polls `/v1/status` for `d`; the highest `pending` seen.
async fn max_pending_for(weir: &Weir, d: Duration) -> anyhow::Result<u64> {
    let end = Instant::now() + d;
    let mut max = 0;
    while Instant::now() < end {
        max = max.max(field(&weir.status().await?, "/pending")?);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(max)
}

fn summarize(report: &mut Report, all: &[Figures], ph: &Phases) {
    let col = |f: fn(&Figures) -> f64| all.iter().map(f).collect::<Vec<f64>>();
    let ok = col(|f| f.ok_percent);
    report.push(Metric::with_samples("ingests answered 202", Unit::Percent, ok.clone()));
    report.push(Metric::with_samples("ingests sent", Unit::Count, col(|f| f.answered as f64)));
    report.push(Metric::with_samples("ingest p99 over the whole run", Unit::Millis, col(|f| f.p99)));
    report.push(Metric::with_samples(
        format!("upstream attempts during the {} s outage", ph.outage.as_secs()),
        Unit::Count,
        col(|f| f.attempts as f64),
    ));
    report.push(Metric::with_samples("failed attempts during the outage", Unit::Count, col(|f| f.failures as f64)));
    report.push(Metric::with_samples("backlog when the upstream came back", Unit::Count, col(|f| f.backlog as f64)));
    report.push(Metric::with_samples(
        "drain after recovery: bulk (pending back to normal)",
        Unit::Seconds,
        col(|f| f.bulk_secs.unwrap_or(f64::NAN)),
    ));
    report.push(Metric::with_samples(
        "drain after recovery: complete (no retry waiting)",
        Unit::Seconds,
        col(|f| f.full_secs.unwrap_or(f64::NAN)),
    ));
    for (i, f) in all.iter().enumerate() {
        if f.full_secs.is_none() {
            report.note(format!("run {}: backlog not completely drained within {} s of recovery", i + 1, ph.cap.as_secs()));
        }
    }
    let worst = ok.iter().copied().fold(100.0, f64::min);
    report.goal("100 % of ingests answered 202 through the outage", format!("{worst:.3} % (worst run)"), Some(worst >= 100.0));
}
