//! `fleet-idle`: what `[fleet]` costs an idle PoP (the NATS connection,
//! heartbeats, the command subscription and whatever watchers `[fleet]`
//! starts): RSS and CPU time over the same window of two idle Weirs started
//! side by side, one with `[fleet]` (against a local nats-server) and one
//! without. The difference is the cost; both run at once so the machine's
//! noise hits them alike.

use std::time::Duration;

use anyhow::{Context, bail};
use http::StatusCode;

use super::Ctx;
use crate::report::{Metric, Report, Unit};
use crate::weir::{Setup, TOKEN, Tenant, Weir};
use weir_natsd::NatsServer;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    // Quick mode beats every 200 ms so its short window still sees beats;
    // the full run uses the default interval (2 s) over a longer window.
    let (interval_ms, window) = if ctx.quick { (200, Duration::from_secs(2)) } else { (2_000, Duration::from_secs(30)) };
    let mut report = Report::new(
        "fleet-idle",
        format!(
            "two idle weirs side by side, one tenant, no traffic: one with [fleet] (local nats-server, heartbeat_interval_ms = \
             {interval_ms}) and one without; CPU time (utime + stime from /proc/PID/stat) over a {:.0} s window after the first \
             heartbeat, VmRSS at its end; {} run(s)",
            window.as_secs_f64(),
            ctx.runs
        ),
    );
    let nats = NatsServer::start(None).context("starting the bench's nats-server")?;
    let mut m = Figures::default();
    for _ in 0..ctx.runs {
        one_run(ctx, &nats, interval_ms, window, &mut m).await?;
    }
    let (rss_cost, cpu_cost) = (m.rss_with.median() - m.rss_without.median(), m.cpu_with.median() - m.cpu_without.median());
    report.goal(
        "cost of heartbeats and watchers on an idle PoP (RSS, CPU): reported",
        format!("+{rss_cost:.1} MiB RSS, +{cpu_cost:.2} ms CPU per second"),
        None,
    );
    for metric in [m.rss_without, m.rss_with, m.cpu_without, m.cpu_with, m.beats] {
        report.push(metric);
    }
    Ok(report)
}

struct Figures {
    rss_without: Metric,
    rss_with: Metric,
    cpu_without: Metric,
    cpu_with: Metric,
    beats: Metric,
}

impl Default for Figures {
    fn default() -> Figures {
        Figures {
            rss_without: Metric::new("idle without [fleet]: RSS", Unit::MiB),
            rss_with: Metric::new("idle with [fleet]: RSS", Unit::MiB),
            cpu_without: Metric::new("idle without [fleet]: CPU ms per s", Unit::Millis),
            cpu_with: Metric::new("idle with [fleet]: CPU ms per s", Unit::Millis),
            beats: Metric::new("heartbeats sent in the window", Unit::Count),
        }
    }
}

async fn one_run(ctx: &Ctx, nats: &NatsServer, interval_ms: u64, window: Duration, m: &mut Figures) -> anyhow::Result<()> {
    let (plain_dir, fleet_dir) = (ctx.workdir("fleet-idle-plain")?, ctx.workdir("fleet-idle-fleet")?);
    let plain_setup = Setup::new(vec![Tenant::plain("acme")]);
    let mut fleet_setup = Setup::new(vec![Tenant::plain("acme")]);
    fleet_setup.extra = format!("[fleet]\nnats_urls = [\"{}\"]\npop = \"bench1\"\nheartbeat_interval_ms = {interval_ms}\n", nats.url());
    let mut plain = Weir::start(ctx.weir()?, plain_dir.path(), &plain_setup, ctx.start_timeout()).await?;
    let mut fleet = Weir::start(ctx.weir()?, fleet_dir.path(), &fleet_setup, ctx.start_timeout()).await?;
    // Measure from the first heartbeat on: the connection and the bucket are set up by then.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while heartbeats_sent(&fleet).await? < 1.0 {
        if tokio::time::Instant::now() > deadline {
            bail!("the [fleet] weir sent no heartbeat within 30 s; its log ends with:\n{}", fleet.log_tail());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (plain_pid, fleet_pid) = (plain.pid().context("plain weir")?, fleet.pid().context("fleet weir")?);
    let (p0, f0, b0) = (cpu_ms(plain_pid)?, cpu_ms(fleet_pid)?, heartbeats_sent(&fleet).await?);
    let started = std::time::Instant::now();
    tokio::time::sleep(window).await;
    let (p1, f1, b1) = (cpu_ms(plain_pid)?, cpu_ms(fleet_pid)?, heartbeats_sent(&fleet).await?);
    let secs = started.elapsed().as_secs_f64();
    m.cpu_without.samples.push((p1 - p0) / secs);
    m.cpu_with.samples.push((f1 - f0) / secs);
    m.rss_without.samples.push(plain.rss_mib()?);
    m.rss_with.samples.push(fleet.rss_mib()?);
    m.beats.samples.push(b1 - b0);
    plain.stop().await?;
    fleet.stop().await?;
    Ok(())
}

/// `weir_fleet_heartbeats_total{outcome="sent"}` from `/metrics`.
async fn heartbeats_sent(w: &Weir) -> anyhow::Result<f64> {
    let (status, body) = crate::client::get(w.admin, "/metrics", Some(TOKEN), Duration::from_secs(5)).await?;
    if status != StatusCode::OK {
        bail!("/metrics answered {status}");
    }
    Ok(String::from_utf8_lossy(&body)
        .lines()
        .find_map(|l| l.strip_prefix("weir_fleet_heartbeats_total{outcome=\"sent\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

/// CPU time (user + system) a process has used, in milliseconds.
pub(super) fn cpu_ms(pid: u32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces): utime and stime are the 12th and 13th.
    let ticks: u64 = text
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().skip(11).take(2).filter_map(|v| v.parse::<u64>().ok()).sum())
        .with_context(|| format!("unexpected {path}"))?;
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 * 1000.0 / hz)
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_time_of_this_process_is_readable_and_grows() {
        let pid = std::process::id();
        let a = super::cpu_ms(pid).expect("readable");
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        assert!(super::cpu_ms(pid).expect("readable") >= a);
    }
}
