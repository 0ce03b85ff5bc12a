//! `hostile`: what a hostile plugin costs the other tenants (issue 12).
//!
//! One gateway with a well-behaved tenant ("good", passthrough plugin) and one
//! tenant per attack, each running a hostile test plugin from `plugins/`
//! under a `plugin_timeout_ms` of [`DEADLINE_MS`]. First the good tenant's
//! open-loop ingest is measured alone (the baseline); then, attack by attack,
//! the same load runs while senders hammer the hostile tenant. Reported per
//! attack: the good tenant's p99 as a ratio to its baseline (goal ≤ 1.5), its
//! answers other than 202 and its quarantined triggers (must be 0), the
//! slowest hostile answer as a ratio to the call's wall-clock cap (goal ≤ 1.2), and the
//! gateway's RSS after the attack against before it.

use std::time::Duration;

use anyhow::Context;

use super::{Ctx, Plugins, ingest_target, measure};
use crate::client;
use crate::load::{Outcome, Plan};
use crate::report::{Metric, Report, Unit};
use crate::weir::{Setup, TOKEN, Tenant, Weir};

/// The hostile tenants' `plugin_timeout_ms` (a CPU-time budget).
const DEADLINE_MS: u64 = 200;
/// The wall-clock cap of a call is this many times its CPU budget
/// (docs/plugins.md): the deadline a hostile trigger's answer is held to.
const WALL_FACTOR: u64 = 4;

/// (plugin file stem, what it does). A plugin missing from `plugins/` is
/// noted and skipped, so the list can name plugins other branches add.
const ATTACKS: [(&str, &str); 10] = [
    ("spin_forever", "infinite loop"),
    ("memory_hog", "grows memory until refused"),
    ("deep_recursion", "stack overflow"),
    ("log_flood", "floods the log"),
    ("giant_output", "returns an oversized body"),
    ("trap", "traps"),
    ("burn_then_sleep", "burns 1 ms, then sleeps in a WASI call"),
    ("udp_socket", "opens a UDP socket"),
    ("panic_stderr", "panics, writing to stderr"),
    ("header_flood", "returns 10,000 header changes"),
];

pub async fn run(ctx: &Ctx) -> anyhow::Result<Report> {
    let plugins = Plugins::ensure()?;
    let (rate, hostile_conns) = if ctx.quick { (100.0, 2) } else { (1000.0, 8) };
    let window = if ctx.quick { Duration::from_secs(1) } else { ctx.duration };
    let attacks: Vec<(&str, &str)> = ATTACKS.iter().copied().filter(|(stem, _)| plugins.path(stem).is_file()).collect();
    let mut report = Report::new(
        "hostile",
        format!(
            "tenant \"good\" (passthrough) at {rate:.0} req/s open loop, 1 KiB JSON, {} connections, {} s windows; \
             each attack: {hostile_conns} closed-loop connections to a tenant whose plugin is hostile \
             (plugin_timeout_ms = {DEADLINE_MS}); baseline measured alone, first and last",
            ctx.connections,
            window.as_secs()
        ),
    );
    for (stem, _) in ATTACKS.iter().filter(|(stem, _)| !plugins.path(stem).is_file()) {
        report.note(format!("{stem}: no such test plugin in plugins/; attack skipped"));
    }
    let mut tenants = vec![Tenant::with_plugin("good", &plugins.path("passthrough"))];
    for (stem, _) in &attacks {
        tenants.push(Tenant::with_plugin(&tenant_of(stem), &plugins.path(stem)).setting("plugin_timeout_ms", &DEADLINE_MS.to_string()));
    }
    let work = ctx.workdir("hostile")?;
    let mut weir = Weir::start(ctx.weir()?, work.path(), &Setup::new(tenants), ctx.start_timeout()).await?;
    let good = ingest_target(weir.ingest, "good")?;
    let good_plan = Plan::open(rate, ctx.connections, Duration::from_millis(500), window);
    let baseline = measure(&good, &good_plan, "good tenant alone", &mut report).await?;
    let base_p99 = baseline.quantile_ms(0.99);
    push(&mut report, "baseline: good p99", Unit::Millis, base_p99);
    for (stem, what) in &attacks {
        let label = format!("{stem} ({what})");
        let rss_before = weir.rss_mib()?;
        let bad = ingest_target(weir.ingest, &tenant_of(stem))?;
        let bad_plan = Plan::closed(hostile_conns, Duration::ZERO, window + Duration::from_millis(500));
        let during = format!("good tenant during {stem}");
        let (g, b) = tokio::join!(measure(&good, &good_plan, &during, &mut report), crate::load::run(&bad, &bad_plan));
        let (g, b) = (g?, b.with_context(|| format!("hostile load {stem}"))?);
        let quarantined = quarantined_count(&weir, "good").await?;
        let rss_after = weir.rss_mib()?;
        record(&mut report, &label, base_p99, &g, &b, quarantined, rss_before, rss_after);
    }
    let last = measure(&good, &good_plan, "good tenant alone, after the attacks", &mut report).await?;
    push(&mut report, "baseline after the attacks: good p99", Unit::Millis, last.quantile_ms(0.99));
    let log = weir.log_tail();
    let panics = log.lines().filter(|l| l.contains("panicked")).count();
    push(&mut report, "panic lines in the gateway log", Unit::Count, panics as f64);
    report.goal("no panic line in the log", format!("{panics}"), Some(panics == 0));
    weir.stop().await?;
    Ok(report)
}

fn tenant_of(stem: &str) -> String {
    format!("h-{}", stem.replace('_', "-"))
}

fn push(report: &mut Report, name: &str, unit: Unit, v: f64) {
    let mut m = Metric::new(name.to_string(), unit);
    m.samples.push(v);
    report.push(m);
}

#[allow(clippy::too_many_arguments)]
fn record(
    report: &mut Report,
    label: &str,
    base_p99: f64,
    good: &Outcome,
    bad: &Outcome,
    quarantined: u64,
    rss_before: f64,
    rss_after: f64,
) {
    let ratio = good.quantile_ms(0.99) / base_p99.max(1e-6);
    let failed = good.total() - good.ok;
    let slowest = bad.hist.max() as f64 / 1000.0;
    let deadline_ratio = slowest / (DEADLINE_MS * WALL_FACTOR) as f64;
    push(report, &format!("{label}: good p99"), Unit::Millis, good.quantile_ms(0.99));
    push(report, &format!("{label}: good p99 / baseline"), Unit::Ratio, ratio);
    push(report, &format!("{label}: hostile answers"), Unit::Count, bad.total() as f64);
    push(report, &format!("{label}: slowest hostile answer / wall-clock cap"), Unit::Ratio, deadline_ratio);
    push(report, &format!("{label}: RSS after - before"), Unit::MiB, rss_after - rss_before);
    report.goal(format!("{label}: good p99 ≤ 1.5 × baseline"), format!("{ratio:.2} ×"), Some(ratio <= 1.5));
    report.goal(
        format!("{label}: good tenant never failed or quarantined"),
        format!("{failed} failed, {quarantined} quarantined"),
        Some(failed == 0 && quarantined == 0),
    );
    report.goal(
        format!("{label}: hostile trigger answered within 1.2 × its wall-clock cap"),
        format!("{deadline_ratio:.2} × ({slowest:.0} ms)"),
        Some(deadline_ratio <= 1.2),
    );
}

/// How many of `tenant`'s triggers are quarantined (up to 1000).
async fn quarantined_count(weir: &Weir, tenant: &str) -> anyhow::Result<u64> {
    let v = client::get_json(weir.admin, &format!("/v1/triggers?tenant={tenant}&state=quarantined&limit=1000"), Some(TOKEN)).await?;
    Ok(v.pointer("/items").and_then(serde_json::Value::as_array).map_or(0, |a| a.len() as u64))
}
