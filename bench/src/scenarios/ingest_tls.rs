//! `ingest-tls`: what HTTPS costs on ingest.
//!
//! Two weirs with the same tenants, one with plain HTTP ingest, one with
//! `[server.tls]` (an ECDSA P-256 certificate from a CA made in the run).
//! Per run, interleaved, for each tenant: the `ingest` load (1 KiB JSON POST,
//! 202 after the fsync'd commit, keep-alive connections, closed loop) on
//! plain HTTP/1.1, on HTTPS with HTTP/1.1, and on HTTPS with HTTP/2 (ALPN
//! `h2`, one connection per virtual user, one stream in flight on each).
//! Then connection setup: a few workers each connecting, sending
//! `GET /healthz`, reading the answer and closing, in a loop; plain TCP
//! against a full TLS handshake (the client resumes no session).
//!
//! Ratios are per run: each TLS figure over the plain one of the same run.
//! Issue 8 asks for the cost of TLS and sets no target, so the goal line only reports.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::ingest::check_accepts;
use super::{BIG_BUDGET, Ctx, LoadMetrics, Plugins, ingest_target, measure};
use crate::load::{self, Outcome, Plan, Target};
use crate::report::{Metric, Report, Unit};
use crate::tls::Pki;
use crate::weir::{IngestTls, Setup, Tenant, Weir};

/// Concurrent workers of the connection-setup loop.
const HANDSHAKE_WORKERS: usize = 16;

/// How requests reach weir: label, ingest address, TLS client (ALPN set).
type Transport = (&'static str, SocketAddr, Option<Arc<ClientConfig>>);

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let plugins = Plugins::ensure()?;
    // The first is the headline: no plugin, so TLS is most of the difference.
    let tenants = [("no plugin", Tenant::plain("plain")), ("passthrough", Tenant::with_plugin("pass", &plugins.path("passthrough")))];
    let work = ctx.workdir("ingest-tls")?;
    let pki = Pki::create(&work.path().join("pki"))?;
    let h1 = pki.client(b"http/1.1")?;
    let h2 = pki.client(b"h2")?;
    let mut plain_setup = Setup::new(tenants.iter().map(|(_, t)| t.clone()).collect());
    // Nothing is forwarded: every accepted trigger stays (the TLS weir takes
    // two transports' worth, over 1 GiB in a full run).
    plain_setup.max_bytes = BIG_BUDGET;
    let mut tls_setup = plain_setup.clone();
    tls_setup.tls = Some(IngestTls { cert: pki.cert.clone(), key: pki.key.clone(), client: h1.clone() });
    let (plain_dir, tls_dir) = (work.path().join("plain"), work.path().join("tls"));
    for dir in [&plain_dir, &tls_dir] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let bin = ctx.weir()?;
    let mut plain = Weir::start(bin, &plain_dir, &plain_setup, ctx.start_timeout()).await?;
    let mut tls = Weir::start(bin, &tls_dir, &tls_setup, ctx.start_timeout()).await?;

    let transports: [Transport; 3] =
        [("plain", plain.ingest, None), ("tls h1", tls.ingest, Some(h1.clone())), ("tls h2", tls.ingest, Some(h2))];
    let negotiated = check_transports(&transports).await?;
    // targets[tenant][transport]
    let mut targets: Vec<Vec<Target>> = Vec::new();
    for (_, tenant) in &tenants {
        let mut row = Vec::new();
        for (_, addr, client) in &transports {
            let t = ingest_target(*addr, &tenant.id)?.with_tls(client.clone());
            check_accepts(&t).await?;
            row.push(t);
        }
        targets.push(row);
    }
    let plain_health = Target::get(plain.ingest, "/healthz");
    let tls_health = Target::get(tls.ingest, "/healthz").with_tls(Some(h1));
    let churn_plan = Plan::closed(HANDSHAKE_WORKERS, ctx.warmup, ctx.duration);

    let mut report = Report::new(
        "ingest-tls",
        format!(
            "1 KiB JSON POST, {} keep-alive connections, closed loop: {:.1} s warm-up + {:.1} s measured per transport and tenant, {} run(s), \
             interleaved plain → tls h1 → tls h2 (h2: one connection per virtual user, one stream in flight). \
             New connections: {HANDSHAKE_WORKERS} workers × (connect + handshake + GET /healthz + close), same durations, \
             plain TCP → full TLS handshake without resumption ({negotiated}, ECDSA P-256 certificate). \
             Two weirs (plain and [server.tls]), same tenants, the idle one waits. weir: {}",
            ctx.connections,
            ctx.warmup.as_secs_f64(),
            ctx.duration.as_secs_f64(),
            ctx.runs,
            bin.display()
        ),
    );

    let mut ingest: Vec<Vec<LoadMetrics>> = tenants
        .iter()
        .map(|(tenant, _)| transports.iter().map(|(transport, ..)| LoadMetrics::new(&format!("{transport}, {tenant}"))).collect())
        .collect();
    let mut conn_plain = churn_metrics("new connections, plain TCP");
    let mut conn_tls = churn_metrics("new connections, TLS full handshake");
    for run in 0..ctx.runs {
        eprintln!("  ingest-tls run {}/{}: ingest, closed loop", run + 1, ctx.runs);
        for ((tenant, _), (row, metrics)) in tenants.iter().zip(targets.iter().zip(&mut ingest)) {
            for ((transport, ..), (t, m)) in transports.iter().zip(row.iter().zip(metrics)) {
                let what = format!("{transport}, {tenant} (closed)");
                let o = measure(t, &ctx.closed(), &what, &mut report).await?;
                if o.ok == 0 {
                    bail!("{what}: not one 202 ({})", o.failures().unwrap_or_default());
                }
                m.add(&o);
            }
        }
        eprintln!("  ingest-tls run {}/{}: new connections", run + 1, ctx.runs);
        conn_plain.add(&churn(&plain_health, &churn_plan, "plain TCP", &mut report).await?);
        conn_tls.add(&churn(&tls_health, &churn_plan, "TLS", &mut report).await?);
    }
    let rss_plain = plain.rss_mib()?;
    let rss_tls = tls.rss_mib()?;
    plain.stop().await?;
    tls.stop().await?;

    let mut ratios = Vec::new();
    for ((tenant, _), metrics) in tenants.iter().zip(&ingest) {
        for (k, (transport, ..)) in transports.iter().enumerate().skip(1) {
            ratios.push(ratio(format!("{transport} / plain throughput, {tenant}"), &metrics[k].throughput, &metrics[0].throughput));
        }
    }
    let conn_ratio = ratio("tls / plain new connections".to_string(), &conn_tls.throughput, &conn_plain.throughput);
    // Headline: the tenant without plugin.
    let summary = format!(
        "no plugin: tls h1 {:.2} × plain ({:.0} vs {:.0} req/s), tls h2 {:.2} × plain; new connections: {:.0}/s TLS vs {:.0}/s plain ({:.2} ×)",
        ratios[0].median(),
        ingest[0][1].throughput.median(),
        ingest[0][0].throughput.median(),
        ratios[1].median(),
        conn_tls.throughput.median(),
        conn_plain.throughput.median(),
        conn_ratio.median(),
    );
    report.goal("TLS cost on ingest (issue 8 sets no target: figures only)", summary, None);
    for row in ingest {
        for m in row {
            m.into_report(&mut report);
        }
    }
    for r in ratios {
        report.push(r);
    }
    conn_plain.into_report(&mut report);
    conn_tls.into_report(&mut report);
    report.push(conn_ratio);
    report.push(Metric::with_samples("weir (plain) RSS after the runs", Unit::MiB, vec![rss_plain]));
    report.push(Metric::with_samples("weir (tls) RSS after the runs", Unit::MiB, vec![rss_tls]));
    report.note(
        "the load generator's TLS (handshakes, encryption) runs on the same cores as weir: \
         the TLS / plain ratios include the client's share of the cost",
    );
    Ok(report)
}

/// Rate, p50 and p99 of a connection-setup loop.
fn churn_metrics(label: &str) -> LoadMetrics {
    let mut m = LoadMetrics::new(label);
    m.throughput.name = format!("{label}: rate");
    m.p50.name = format!("{label}: p50 (connect to close)");
    m.p99.name = format!("{label}: p99 (connect to close)");
    m
}

/// Per-run ratios `a / b` as a metric of their own.
fn ratio(name: String, a: &Metric, b: &Metric) -> Metric {
    let samples = a.samples.iter().zip(&b.samples).map(|(a, b)| a / b.max(1e-9)).collect();
    Metric::with_samples(name, Unit::Ratio, samples)
}

/// Runs a connection-setup loop and notes anything but 200.
async fn churn(target: &Target, plan: &Plan, what: &str, report: &mut Report) -> anyhow::Result<Outcome> {
    let o = load::churn(target, plan).await.with_context(|| format!("new connections, {what}"))?;
    if o.ok == 0 {
        bail!("new connections, {what}: no GET /healthz answered 200 ({})", o.failures().unwrap_or_default());
    }
    if let Some(f) = o.failures() {
        report.note(format!("new connections, {what}: besides {} × 200: {f}", o.ok));
    }
    Ok(o)
}

/// Checks each TLS transport gets the HTTP version it asks for; returns the
/// negotiated TLS version and key exchange group, for the report.
async fn check_transports(transports: &[Transport]) -> anyhow::Result<String> {
    let mut negotiated = String::from("TLS not checked");
    for (label, addr, client) in transports {
        let Some(client) = client else { continue };
        let conn = crate::client::Conn::open_with(*addr, Some(client)).await?;
        let wants_h2 = client.alpn_protocols.iter().any(|p| p == b"h2");
        if conn.is_h2() != wants_h2 {
            bail!("{label}: weir at {addr} answered with {}", if conn.is_h2() { "HTTP/2" } else { "HTTP/1.1" });
        }
        let tcp = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
        let stream = TlsConnector::from(client.clone())
            .connect(ServerName::IpAddress(addr.ip().into()), tcp)
            .await
            .with_context(|| format!("TLS handshake with {addr}"))?;
        let session = stream.get_ref().1;
        negotiated = format!(
            "{}, {}",
            session.protocol_version().map_or_else(|| "TLS ?".to_string(), |v| format!("{v:?}")),
            session.negotiated_key_exchange_group().map_or_else(|| "?".to_string(), |g| format!("{:?}", g.name())),
        );
    }
    Ok(negotiated)
}
