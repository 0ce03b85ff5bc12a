//! `drain-jetstream`: the same backlog drained into JetStream and into the
//! loopback HTTP upstream, in the same run (issue 13, "Measured").
//!
//! Each pair of runs, HTTP first then JetStream: a fresh Weir builds a
//! backlog of N triggers (1 KiB JSON, passthrough plugin) while its upstream
//! cannot take them (HTTP: nothing listens on the port; JetStream: a local
//! nats-server with file storage, but no stream captures the subject yet),
//! then the upstream opens (the listener starts; the stream is created, as
//! the platform would) and `/v1/status` is watched until nothing is pending.
//! No ingest runs during the drain: the figure is the forwarder's alone.
//!
//! Reported per transport: deliveries per second from the first delivery to
//! an empty backlog, the time from opening to the first delivery (a breaker
//! probe), and for JetStream the messages the stream holds at the end (must
//! equal the backlog: one per trigger).
//!
//! Then, JetStream only, an outage: the nats-server is killed and a quarter
//! of the backlog is ingested again; the publish attempts made meanwhile
//! (what the breaker lets through while NATS is gone: the burst before it
//! opens, then one probe per interval), per outage and per 100 arriving
//! triggers, and the ingests not answered 202 are reported. The tests assert the events (an open
//! breaker lets only its probe out; attempts stay far below the load); the
//! rate over time is measured here.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use async_nats::jetstream::{self, stream};

use super::{Ctx, Plugins, fill, forwarding_setup, ingest_target};
use crate::report::{Metric, Report, Unit, median};
use crate::servers::Upstream;
use crate::weir::{Weir, field};
use weir_natsd::NatsServer;

const SUBJECT_TEMPLATE: &str = "jetstream:weir.bench.{tenant}.{source}";
const STREAM: &str = "WEIR_BENCH";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Http,
    JetStream,
}

impl Transport {
    fn label(self) -> &'static str {
        match self {
            Transport::Http => "HTTP (loopback)",
            Transport::JetStream => "JetStream (file storage, local server)",
        }
    }
}

/// One drain as `/v1/status` saw it.
struct Drain {
    /// From opening the upstream to the first delivery.
    first_secs: f64,
    /// From the first delivery to an empty backlog.
    drain_secs: f64,
    delivered: u64,
    /// Pending when the upstream opened (the fill, plus the requests in flight when it stopped).
    backlog: u64,
    drained: bool,
    /// JetStream only: the stream's message count at the end.
    in_stream: Option<u64>,
    /// JetStream only: what the NATS outage after the drain cost.
    outage: Option<Outage>,
}

/// Ingest while NATS is down, after the drain.
struct Outage {
    secs: f64,
    publish_attempts: u64,
    accepted: u64,
    refused: u64,
}

impl Drain {
    fn rate(&self) -> f64 {
        self.delivered as f64 / self.drain_secs.max(1e-9)
    }
}

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let n = ctx.triggers.unwrap_or(if ctx.quick { 2_000 } else { 100_000 });
    let cap = Duration::from_secs(if ctx.quick { 60 } else { 600 });
    let plugins = Plugins::ensure()?;
    let mut report = Report::new(
        "drain-jetstream",
        format!(
            "backlog of {n} triggers (1 KiB JSON, passthrough plugin) filled closed-loop at {} connections while the upstream cannot \
             take them, then drained with no ingest: into the in-process HTTP upstream (200) and into JetStream (a local \
             nats-server {}, file storage, the stream created when the drain starts); the two interleaved, {} pair(s); \
             each drain watched for at most {} s",
            ctx.connections,
            nats_version(),
            ctx.runs,
            cap.as_secs()
        ),
    );
    let (mut http, mut js) = (Vec::new(), Vec::new());
    for run in 0..ctx.runs {
        for (t, out) in [(Transport::Http, &mut http), (Transport::JetStream, &mut js)] {
            eprintln!("  drain-jetstream run {}/{}: {} with {n} triggers", run + 1, ctx.runs, t.label());
            out.push(one_run(ctx, &plugins, t, n, cap, &mut report).await?);
        }
    }
    summarize(&mut report, &http, &js);
    Ok(report)
}

fn nats_version() -> String {
    std::process::Command::new("nats-server")
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().trim_start_matches("nats-server: ").to_string())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "(version unknown)".into())
}

async fn one_run(ctx: &Ctx, plugins: &Plugins, t: Transport, n: u64, cap: Duration, report: &mut Report) -> anyhow::Result<Drain> {
    let work = ctx.workdir("drain-jetstream")?;
    let (upstream, mut nats) = match t {
        Transport::Http => (Some(Upstream::reserve()?), None),
        Transport::JetStream => (None, Some(NatsServer::start(None).context("starting the bench's nats-server")?)),
    };
    let mut setup = forwarding_setup(plugins, upstream.as_ref().map_or_else(|| SUBJECT_TEMPLATE.to_string(), Upstream::url));
    if let Some(nats) = &nats {
        setup.extra = format!("[fleet]\nnats_urls = [\"{}\"]\npop = \"bench\"\n", nats.url());
    }
    let mut weir = Weir::start(ctx.weir()?, work.path(), &setup, ctx.start_timeout()).await?;
    let target = ingest_target(weir.ingest, "pass")?;
    let filled = fill(ctx, &target, n, report).await?;
    eprintln!("  filled at {:.0}/s", filled.throughput());
    let before = weir.status().await?;
    let (pending0, delivered0) = (field(&before, "/pending")?, field(&before, "/delivered")?);
    if delivered0 > 0 {
        bail!("{} triggers were delivered while the upstream was closed", delivered0);
    }
    // Open the upstream.
    let js = match (&upstream, &nats) {
        (Some(up), _) => {
            up.start().await?;
            None
        }
        (_, Some(nats)) => {
            let client = async_nats::connect(nats.url()).await.context("connecting to the bench nats-server")?;
            let js = jetstream::new(client);
            js.create_stream(stream::Config {
                name: STREAM.into(),
                subjects: vec!["weir.bench.>".into()],
                storage: stream::StorageType::File,
                ..Default::default()
            })
            .await
            .context("creating the bench stream")?;
            Some(js)
        }
        _ => bail!("no upstream"),
    };
    let opened = Instant::now();
    let mut first: Option<Instant> = None;
    let (mut pending, mut delivered);
    loop {
        tokio::time::sleep(Duration::from_millis(25)).await;
        let s = weir.status().await?;
        pending = field(&s, "/pending")?;
        delivered = field(&s, "/delivered")?;
        if first.is_none() && delivered > 0 {
            first = Some(Instant::now());
        }
        if pending == 0 || opened.elapsed() >= cap {
            break;
        }
    }
    let done = Instant::now();
    let first = first.unwrap_or(done);
    let in_stream = match js {
        Some(js) => Some(js.get_stream(STREAM).await.context("the bench stream")?.info().await.context("stream info")?.state.messages),
        None => None,
    };
    let outage = match nats.take() {
        Some(server) => Some(outage(&weir, &target, server, n / 4, ctx, report).await?),
        None => None,
    };
    weir.stop().await?;
    Ok(Drain {
        first_secs: first.duration_since(opened).as_secs_f64(),
        drain_secs: done.duration_since(first).as_secs_f64(),
        delivered,
        backlog: pending0,
        drained: pending == 0,
        in_stream,
        outage,
    })
}

/// Kills the nats-server, ingests `n` triggers closed-loop, and counts the
/// publish attempts the forwarder made meanwhile.
async fn outage(
    weir: &Weir,
    target: &crate::load::Target,
    server: NatsServer,
    n: u64,
    ctx: &Ctx,
    report: &mut Report,
) -> anyhow::Result<Outage> {
    let attempts = |s: &serde_json::Value| field(s, "/upstreams/0/attempts");
    let before = attempts(&weir.status().await?)?;
    drop(server);
    let started = Instant::now();
    let load = fill(ctx, target, n.max(1), report).await?;
    let secs = started.elapsed().as_secs_f64();
    let after = attempts(&weir.status().await?)?;
    Ok(Outage {
        secs,
        publish_attempts: after.saturating_sub(before),
        accepted: load.ok,
        refused: load.other.values().sum::<u64>() + load.errors,
    })
}

fn summarize(report: &mut Report, http: &[Drain], js: &[Drain]) {
    let col = |d: &[Drain], f: fn(&Drain) -> f64| d.iter().map(f).collect::<Vec<f64>>();
    let (http_rate, js_rate) = (col(http, Drain::rate), col(js, Drain::rate));
    report.push(Metric::with_samples("HTTP: deliveries per second (first delivery to empty)", Unit::PerSec, http_rate.clone()));
    report.push(Metric::with_samples("JetStream: deliveries per second (first delivery to empty)", Unit::PerSec, js_rate.clone()));
    report.push(Metric::with_samples("HTTP: backlog", Unit::Count, col(http, |d| d.backlog as f64)));
    report.push(Metric::with_samples("JetStream: backlog", Unit::Count, col(js, |d| d.backlog as f64)));
    report.push(Metric::with_samples("HTTP: time to first delivery", Unit::Seconds, col(http, |d| d.first_secs)));
    report.push(Metric::with_samples("JetStream: time to first delivery", Unit::Seconds, col(js, |d| d.first_secs)));
    report.push(Metric::with_samples("JetStream: messages in the stream", Unit::Count, col(js, |d| d.in_stream.unwrap_or(0) as f64)));
    for (label, runs) in [("HTTP", http), ("JetStream", js)] {
        for (i, d) in runs.iter().enumerate() {
            if !d.drained {
                report.note(format!("{label} run {}: not drained within the window; the rate is over that window", i + 1));
            }
        }
    }
    for (i, d) in js.iter().enumerate() {
        if d.drained && d.in_stream != Some(d.backlog) {
            report.note(format!("JetStream run {}: the stream holds {:?} messages for {} triggers", i + 1, d.in_stream, d.backlog));
        }
    }
    let outages: Vec<&Outage> = js.iter().filter_map(|d| d.outage.as_ref()).collect();
    let per = |f: fn(&Outage) -> f64| outages.iter().map(|o| f(o)).collect::<Vec<f64>>();
    // The count includes the burst before the breaker opened (the attempts
    // in flight plus the failure threshold): over a short outage it dominates.
    report.push(Metric::with_samples("NATS down: publish attempts during the outage", Unit::Count, per(|o| o.publish_attempts as f64)));
    report.push(Metric::with_samples("NATS down: length of the outage", Unit::Seconds, per(|o| o.secs)));
    report.push(Metric::with_samples(
        "NATS down: publish attempts per 100 triggers that arrived",
        Unit::Count,
        per(|o| 100.0 * o.publish_attempts as f64 / o.accepted.max(1) as f64),
    ));
    report.push(Metric::with_samples(
        "NATS down: triggers accepted (202) per second",
        Unit::PerSec,
        per(|o| o.accepted as f64 / o.secs.max(1e-9)),
    ));
    report.push(Metric::with_samples("NATS down: ingests not answered 202", Unit::Count, per(|o| o.refused as f64)));
    let ratio = median(&js_rate) / median(&http_rate).max(1e-9);
    report.goal(
        "JetStream drain ≥ HTTP drain (same run)",
        format!("{:.0}/s vs {:.0}/s ({ratio:.2} ×)", median(&js_rate), median(&http_rate)),
        Some(ratio >= 1.0),
    );
}
