//! `restart`: time from process start to `/readyz` 200 with N triggers
//! buffered. The backlog is filled through ingest with no upstream
//! configured (everything is held), then Weir is stopped with SIGTERM and
//! started again on the same data directory, several times.

use std::path::Path;

use anyhow::bail;

use super::{BIG_BUDGET, Ctx, fill, ingest_target};
use crate::report::{Metric, Report, Unit};
use crate::weir::{Setup, Tenant, Weir, field};

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let n = ctx.triggers.unwrap_or(if ctx.quick { 5_000 } else { 1_000_000 });
    let mut report = Report::new(
        "restart",
        format!(
            "{n} pending triggers (1 KiB JSON, tenant without plugin, no upstream), filled closed-loop at {} connections; \
             then {} × (SIGTERM, wait for exit, start on the same data dir, poll /readyz every 2 ms)",
            ctx.connections, ctx.runs
        ),
    );
    let work = ctx.workdir("restart")?;
    let mut setup = Setup::new(vec![Tenant::plain("acme")]);
    setup.max_bytes = BIG_BUDGET;
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, ctx.start_timeout()).await?;
    eprintln!("  filling {n}");
    let filled = fill(ctx, &ingest_target(weir.ingest, "acme")?, n, &mut report).await?;
    let pending = field(&weir.status().await?, "/pending")?;
    let mut ready = Metric::new("start to /readyz 200", Unit::Seconds);
    let mut shutdown = Metric::new("SIGTERM to exit", Unit::Seconds);
    let mut rss = Metric::new("RSS after restart", Unit::MiB);
    for run in 0..ctx.runs {
        eprintln!("  restart {}/{}", run + 1, ctx.runs);
        shutdown.samples.push(weir.stop().await?.as_secs_f64());
        weir = Weir::spawn(ctx.weir()?, work.path(), &setup)?;
        ready.samples.push(weir.wait_for("/readyz", ctx.start_timeout()).await?.as_secs_f64());
        rss.samples.push(weir.rss_mib()?);
        let after = field(&weir.status().await?, "/pending")?;
        if after != pending {
            bail!("{pending} triggers were pending before the restart, {after} after");
        }
    }
    weir.stop().await?;
    let r = ready.median();
    report.goal("restart to /readyz ≤ 1 s", format!("{r:.3} s with {pending} pending"), Some(r <= 1.0));
    report.push(ready);
    report.push(shutdown);
    report.push(rss);
    report.push(Metric::with_samples("fill rate (closed loop)", Unit::PerSec, vec![filled.throughput()]));
    report.push(Metric::with_samples("pending before and after each restart", Unit::Count, vec![pending as f64]));
    report.push(Metric::with_samples("store files on disk", Unit::MiB, vec![dir_mib(&work.path().join("data"))]));
    Ok(report)
}

fn dir_mib(dir: &Path) -> f64 {
    let total: u64 = std::fs::read_dir(dir).map(|it| it.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0);
    total as f64 / (1024.0 * 1024.0)
}
