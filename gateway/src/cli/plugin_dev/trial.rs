//! `weir plugin test FILE.wasm`: runs a plugin on sample requests in this
//! process, under the gateway's own plugin host and limits, through the
//! code ingest uses: the stored-header and idempotency-key rules
//! (`trigger::`), the plugin's input (`plugin::Input::of`), the host's run
//! path (`PluginHost::run`: slots, CPU budget, slow lane, memory cap,
//! verdict checks) and the verdict applied to the record
//! (`trigger::apply_transform`). Only the store is left out.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

use super::case::{self, Case, Expect, Phase, Verdict};
use super::check::refused;
use super::host::LocalHost;
use super::logs::{Captured, LogLine};
use super::{Limits, TestArgs};
use crate::cli::CliError;
use crate::config::{Config, OnPluginError};
use crate::plugin::{Decision, Input, Usage};
use crate::store::{State, TriggerMeta};
use crate::tenants::TenantSettings;

/// Tenant and source when neither a flag, a case file nor a request path names one.
const DEFAULT_LABEL: &str = "test";

/// A case with everything decided: what runs, and what it must come to.
struct Planned {
    case: Case,
    tenant: String,
    source: String,
    phase: Phase,
    received_at_ms: u64,
    settings: TenantSettings,
    expect: Option<Expect>,
}

/// What one case came to.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<PathBuf>,
    pub tenant: String,
    pub source: String,
    pub phase: Phase,
    pub verdict: Verdict,
    /// Who decided: `plugin`, or `ingest` when the request never reached it.
    pub decided_by: &'static str,
    /// What the sender gets.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Whether the trigger would be stored (and in which state).
    pub stored: Option<&'static str>,
    /// Request headers a plugin never sees (Weir does not store them).
    pub not_stored_headers: Vec<String>,
    /// A query string the request had (not stored, not shown to the plugin).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_query: Option<String>,
    pub headers_set: Vec<(String, String)>,
    pub headers_removed: Vec<(String, String)>,
    /// The stored trigger's headers after the plugin (accepted triggers).
    pub headers_after: Vec<(String, String)>,
    pub idempotency_key: Option<String>,
    pub route: Option<String>,
    pub body: Option<BodyReport>,
    pub logs: Vec<LogLine>,
    pub usage: UsageReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    pub mismatches: Vec<String>,
    pub passed: bool,
}

#[derive(Debug, Serialize)]
pub struct Fault {
    pub kind: &'static str,
    pub detail: String,
}

/// The stored body of an accepted trigger.
#[derive(Debug, Serialize)]
pub struct BodyReport {
    /// The plugin returned a new body.
    pub changed: bool,
    pub bytes: usize,
    /// The body as text, when it is UTF-8 (pretty-printed when JSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// A unified diff of the pretty-printed JSON, received → stored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    #[serde(skip)]
    raw: Vec<u8>,
}

#[derive(Debug, Default, Serialize)]
pub struct UsageReport {
    /// CPU time of the call (what `plugin_timeout_ms` budgets), µs.
    pub cpu_us: u64,
    /// The tenant's `plugin_timeout_ms`.
    pub cpu_budget_ms: u64,
    /// Peak of the instance's linear memory (what `plugin_memory_mb` caps), bytes.
    pub memory_peak_bytes: u64,
    /// The tenant's `plugin_memory_mb`, in bytes.
    pub memory_limit_bytes: u64,
    /// Wall-clock time of the whole run, µs.
    pub wall_us: u64,
    /// The call used more than its first millisecond of CPU and finished on the slow lane.
    pub slow_lane: bool,
}

impl UsageReport {
    fn record(&mut self, u: Usage, wall: Duration, slow_lane: bool) {
        (self.cpu_us, self.memory_peak_bytes) = (u.cpu.as_micros() as u64, u.memory_peak_bytes);
        (self.wall_us, self.slow_lane) = (wall.as_micros() as u64, slow_lane);
    }
}

/// Runs every case; Ok(outcomes) even when some failed.
pub async fn run(args: &TestArgs, config: &Config, captured: &Captured) -> Result<Vec<Outcome>, CliError> {
    let bytes = std::fs::read(&args.file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", args.file.display())))?;
    let planned = plan(args, config)?;
    let memory_mb = planned.iter().map(|p| p.settings.plugin_memory_mb).max().unwrap_or(0);
    let local = LocalHost::start(config, memory_mb).await.map_err(refused)?;
    let mut installed: Vec<&str> = Vec::new();
    let mut out = Vec::with_capacity(planned.len());
    for p in &planned {
        local.tenants.upsert_fleet(&p.tenant, &p.settings).map_err(|e| CliError::Usage(e.to_string()))?;
        if !installed.contains(&p.tenant.as_str()) {
            // Compiles once: a second tenant reuses the artifact.
            local.host.upload(&p.tenant, bytes.clone()).await.map_err(refused)?;
            installed.push(&p.tenant);
            // One call first, its outcome dropped: the figures reported are a
            // warm gateway's, not a new process's first touch of the pool and
            // the component's code (~4x more CPU time, measured).
            run_case(&local, config, p).await?;
        }
        let _ = captured.take();
        let mut outcome = run_case(&local, config, p).await?;
        outcome.logs = captured.take();
        judge(&mut outcome);
        out.push(outcome);
    }
    Ok(out)
}

/// The cases with the command line's flags applied (flags win over case
/// files, which win over the request path).
fn plan(args: &TestArgs, config: &Config) -> Result<Vec<Planned>, CliError> {
    let cases = match &args.request {
        Some(path) => case::load(path).map_err(CliError::Usage)?,
        None => {
            let body = args.body.as_deref().map(case::body_arg).transpose().map_err(CliError::Usage)?.unwrap_or_default();
            vec![case::from_flags(&[], body).map_err(CliError::Usage)?]
        }
    };
    let flag_config = key_values(&args.config)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
    cases
        .into_iter()
        .map(|mut case| {
            for h in &args.headers {
                let (name, value) = h.split_once(':').ok_or_else(|| CliError::Usage(format!("--header {h:?}: expected 'Name: value'")))?;
                case::append(&mut case.headers, name, value).map_err(|e| CliError::Usage(format!("--header {h:?}: {e}")))?;
            }
            let s = &case.settings;
            let pick = |flag: &Option<String>, file: &Option<String>, path: &Option<String>| {
                flag.clone().or_else(|| file.clone()).or_else(|| path.clone()).unwrap_or_else(|| DEFAULT_LABEL.into())
            };
            let tenant = pick(&args.tenant, &s.tenant, &case.tenant);
            let source = pick(&args.source, &s.source, &case.source);
            let mut settings = Limits::of(config, &tenant).settings;
            settings.config.extend(s.config.clone());
            settings.config.extend(flag_config.clone());
            Ok(Planned {
                tenant,
                source,
                phase: args.phase.or(s.phase).unwrap_or(Phase::Ingest),
                received_at_ms: args.received_at_ms.or(s.received_at_ms).unwrap_or(now),
                settings,
                expect: args.expect.map(Expect::verdict).or_else(|| s.expect.clone()),
                case,
            })
        })
        .collect()
}

fn key_values(pairs: &[String]) -> Result<BTreeMap<String, String>, CliError> {
    pairs
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .ok_or_else(|| CliError::Usage(format!("--config {kv:?}: expected KEY=VALUE")))
        })
        .collect()
}

/// One case through ingest's rules and the plugin host.
async fn run_case(local: &LocalHost, config: &Config, p: &Planned) -> Result<Outcome, CliError> {
    let mut o = Outcome::new(p);
    // What ingest refuses before any plugin runs.
    if let Err(m) = crate::config::validate_label(&p.source) {
        return Ok(o.refused_by_ingest(400, format!("source label {m}")));
    }
    if p.case.body.len() as u64 > config.server.max_body_bytes {
        let limit = config.server.max_body_bytes;
        return Ok(o.refused_by_ingest(413, format!("the body is larger than the limit of {limit} bytes (server.max_body_bytes)")));
    }
    let idempotency_key = match crate::trigger::idempotency_key_of(&p.case.headers) {
        Ok(k) => k,
        Err(why) => return Ok(o.refused_by_ingest(400, format!("the Idempotency-Key header {why}"))),
    };
    let meta = TriggerMeta {
        state: State::Pending,
        received_at_ms: p.received_at_ms,
        tenant: p.tenant.clone(),
        source: p.source.clone(),
        idempotency_key,
        headers: crate::trigger::stored_headers(&p.case.headers),
        body_len: u32::try_from(p.case.body.len()).unwrap_or(u32::MAX),
        has_transformed: false,
        plugin_version: 0,
        route: None,
        note: None,
        attempts: Vec::new(),
    };
    let phase = match p.phase {
        Phase::Ingest => crate::plugin::Phase::Ingest,
        Phase::Replay => crate::plugin::Phase::Replay,
    };
    let body = Bytes::from(p.case.body.clone());
    let ran = match local.host.run(Input::of(&meta, body, phase)).await {
        Some(Ok(ran)) => ran,
        Some(Err(_busy)) => return Err(CliError::Failed("no plugin instance came free (the pool is busy)".into())),
        None => return Err(CliError::Failed(format!("tenant {} has no plugin loaded", p.tenant))),
    };
    o.usage.record(ran.usage, ran.elapsed, ran.slow_lane);
    match ran.result {
        Ok(Decision::Accept(t)) => o.accepted(meta, t, &p.case.body),
        Ok(Decision::Reject { status, reason }) => {
            (o.verdict, o.status, o.reason) = (Verdict::Reject, status, Some(reason));
        }
        Ok(Decision::Drop) => (o.verdict, o.status) = (Verdict::Drop, 202),
        Err(f) => {
            o.verdict = Verdict::Fault;
            o.fault = Some(Fault { kind: f.kind.as_str(), detail: f.detail });
            (o.status, o.stored) = match ran.on_error {
                OnPluginError::Quarantine => (202, Some("quarantined")),
                OnPluginError::Reject => (503, None),
            };
        }
    }
    Ok(o)
}

impl Outcome {
    fn new(p: &Planned) -> Outcome {
        let mut not_stored: Vec<String> =
            p.case.headers.keys().map(|n| n.as_str().to_string()).filter(|n| !crate::trigger::is_stored_header(n)).collect();
        not_stored.dedup();
        Outcome {
            name: p.case.name.clone(),
            file: p.case.file.clone(),
            tenant: p.tenant.clone(),
            source: p.source.clone(),
            phase: p.phase,
            verdict: Verdict::Fault,
            decided_by: "plugin",
            status: 0,
            reason: None,
            fault: None,
            stored: None,
            not_stored_headers: not_stored,
            dropped_query: p.case.dropped_query.clone(),
            headers_set: Vec::new(),
            headers_removed: Vec::new(),
            headers_after: Vec::new(),
            idempotency_key: None,
            route: None,
            body: None,
            logs: Vec::new(),
            usage: UsageReport {
                cpu_budget_ms: p.settings.plugin_timeout_ms,
                memory_limit_bytes: p.settings.plugin_memory_mb * 1024 * 1024,
                ..UsageReport::default()
            },
            expect: p.expect.clone(),
            mismatches: Vec::new(),
            passed: false,
        }
    }

    fn refused_by_ingest(mut self, status: u16, reason: String) -> Outcome {
        (self.verdict, self.decided_by, self.status, self.reason) = (Verdict::Reject, "ingest", status, Some(reason));
        self
    }

    /// Applies the accepted verdict to the record as ingest does.
    fn accepted(&mut self, meta: TriggerMeta, t: crate::plugin::Transform, received: &[u8]) {
        let mut after = meta.clone();
        let new_body = crate::trigger::apply_transform(&mut after, t);
        (self.verdict, self.status, self.stored) = (Verdict::Accept, 202, Some("pending"));
        self.headers_set = after.headers.iter().filter(|h| !meta.headers.contains(h)).cloned().collect();
        self.headers_removed = meta.headers.iter().filter(|h| !after.headers.contains(h)).cloned().collect();
        self.headers_after = after.headers;
        (self.idempotency_key, self.route) = (after.idempotency_key, after.route);
        self.body = Some(BodyReport::of(received, new_body));
    }
}

impl BodyReport {
    fn of(received: &[u8], new: Option<Vec<u8>>) -> BodyReport {
        let changed = new.is_some();
        let raw = new.unwrap_or_else(|| received.to_vec());
        let (old_json, new_json) = (pretty_json(received), pretty_json(&raw));
        let diff = match (&old_json, &new_json) {
            (Some(a), Some(b)) if changed => Some(super::diff::unified(a, b, "received", "stored")),
            _ => None,
        };
        let text = new_json.or_else(|| String::from_utf8(raw.clone()).ok());
        BodyReport { changed, bytes: raw.len(), text, diff, raw }
    }
}

fn pretty_json(bytes: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    serde_json::to_string_pretty(&v).ok()
}

/// Passed: as expected, or (with no expectation) accepted or dropped.
fn judge(o: &mut Outcome) {
    o.mismatches = match &o.expect {
        Some(e) => mismatches(e, o),
        None if matches!(o.verdict, Verdict::Accept | Verdict::Drop) => Vec::new(),
        None => vec![format!("{} (with no --expect, a case passes on accept or drop)", o.verdict.as_str())],
    };
    o.passed = o.mismatches.is_empty();
}

fn mismatches(e: &Expect, o: &Outcome) -> Vec<String> {
    let mut m = Vec::new();
    if e.verdict != o.verdict {
        m.push(format!("expected {}, got {}", e.verdict.as_str(), o.verdict.as_str()));
        return m;
    }
    if let Some(s) = e.status
        && s != o.status
    {
        m.push(format!("expected status {s}, got {}", o.status));
    }
    let said = o.reason.clone().or_else(|| o.fault.as_ref().map(|f| f.detail.clone())).unwrap_or_default();
    if let Some(r) = &e.reason_contains
        && !said.contains(r.as_str())
    {
        m.push(format!("expected the reason to contain {r:?}, got {said:?}"));
    }
    let header = |name: &str| o.headers_after.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    for (name, want) in &e.headers {
        if header(name) != Some(want.as_str()) {
            m.push(format!("expected header {name}: {want:?}, got {:?}", header(name)));
        }
    }
    for name in &e.absent_headers {
        if let Some(v) = header(name) {
            m.push(format!("expected no header {name}, got {v:?}"));
        }
    }
    if let Some(want) = &e.body {
        let got = o.body.as_ref().map(|b| b.raw.as_slice()).unwrap_or_default();
        if !same_body(want.as_bytes(), got) {
            m.push(format!("expected body {want:?}, got {:?}", String::from_utf8_lossy(got)));
        }
    }
    if e.route.is_some() && e.route != o.route {
        m.push(format!("expected route {:?}, got {:?}", e.route, o.route));
    }
    if e.idempotency_key.is_some() && e.idempotency_key != o.idempotency_key {
        m.push(format!("expected idempotency key {:?}, got {:?}", e.idempotency_key, o.idempotency_key));
    }
    for want in &e.logs_contain {
        if !o.logs.iter().any(|l| l.message.contains(want.as_str())) {
            m.push(format!("expected a log line containing {want:?}"));
        }
    }
    m
}

/// Equal as JSON values when both are JSON, byte for byte otherwise.
fn same_body(want: &[u8], got: &[u8]) -> bool {
    match (serde_json::from_slice::<serde_json::Value>(want), serde_json::from_slice::<serde_json::Value>(got)) {
        (Ok(a), Ok(b)) => a == b,
        _ => want == got,
    }
}

/// The human report of one case.
pub fn render(o: &Outcome, out: &mut String) {
    let from = o.file.as_ref().map(|f| format!(" ({})", f.display())).unwrap_or_default();
    let phase = match o.phase {
        Phase::Ingest => "ingest",
        Phase::Replay => "replay",
    };
    out!(out, "== {}{from}: tenant {}, source {}, phase {phase}", o.name, o.tenant, o.source);
    let stored = o.stored.map_or_else(|| "nothing stored".to_string(), |s| format!("stored as {s}"));
    let by = if o.decided_by == "ingest" { " by ingest, before the plugin" } else { "" };
    out!(out, "verdict   {}{by}: the sender gets {}, {stored}", o.verdict.as_str(), o.status);
    if let Some(r) = &o.reason {
        out!(out, "reason    {r}");
    }
    if let Some(f) = &o.fault {
        out!(out, "fault     {}: {}", f.kind, f.detail.replace('\n', "\n          "));
    }
    if !o.not_stored_headers.is_empty() {
        out!(out, "unseen    {} (never stored, so never shown to a plugin)", o.not_stored_headers.join(", "));
    }
    if let Some(q) = &o.dropped_query {
        out!(out, "unseen    query string ?{q} (never stored)");
    }
    print_changes(o, out);
    print_logs(&o.logs, out);
    if o.decided_by == "plugin" {
        print_usage(&o.usage, out);
    }
    match (&o.expect, o.passed) {
        (_, true) => {
            out!(out, "result    PASS{}", o.expect.as_ref().map(|e| format!(" (expected {})", e.verdict.as_str())).unwrap_or_default())
        }
        (_, false) => {
            for m in &o.mismatches {
                out!(out, "result    FAIL: {m}");
            }
        }
    }
    out!(out);
}

fn print_changes(o: &Outcome, out: &mut String) {
    if o.verdict != Verdict::Accept || o.decided_by != "plugin" {
        return;
    }
    for (n, v) in &o.headers_set {
        out!(out, "header    + {n}: {v}");
    }
    for (n, v) in &o.headers_removed {
        out!(out, "header    - {n}: {v}");
    }
    if let Some(k) = &o.idempotency_key {
        out!(out, "key       {k}");
    }
    if let Some(r) = &o.route {
        out!(out, "route     {r}");
    }
    let Some(b) = &o.body else { return };
    match (&b.diff, &b.text) {
        (_, _) if !b.changed => out!(out, "body      unchanged ({} bytes)", b.bytes),
        (Some(d), _) if d.is_empty() => out!(out, "body      new, equal as JSON to the received one ({} bytes)", b.bytes),
        (Some(d), _) => {
            out!(out, "body      new ({} bytes); as pretty JSON:", b.bytes);
            out.push_str(&indent(d));
        }
        (None, Some(t)) => {
            out!(out, "body      new ({} bytes):", b.bytes);
            out!(out, "{}", indent(t).trim_end());
        }
        (None, None) => out!(out, "body      new ({} bytes, not UTF-8)", b.bytes),
    }
}

fn indent(text: &str) -> String {
    text.lines().map(|l| format!("          {l}\n")).collect()
}

fn print_logs(logs: &[LogLine], out: &mut String) {
    for (i, l) in logs.iter().enumerate() {
        let label = if i == 0 { "logs" } else { "" };
        out!(out, "{label:<9} {:<5} {}", l.level, shorten(&l.message));
    }
}

/// A log line as the terminal shows it: one line, at most `SHOWN` characters
/// (`--json` has it whole).
fn shorten(message: &str) -> String {
    const SHOWN: usize = 200;
    let one_line = message.replace('\n', "\\n");
    match one_line.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}… ({} bytes)", &one_line[..cut], message.len()),
        None => one_line,
    }
}

fn print_usage(u: &UsageReport, out: &mut String) {
    let (budget_ms, memory_mb) = (u.cpu_budget_ms, u.memory_limit_bytes / (1024 * 1024));
    let lane = if u.slow_lane { "; finished on the slow lane (over 1 ms of CPU)" } else { "" };
    out!(
        out,
        "cost      CPU {:.3} ms of its {budget_ms} ms budget (the call's CPU time, instantiation included){lane}",
        u.cpu_us as f64 / 1000.0
    );
    out!(
        out,
        "          memory peak {:.2} MiB of linear memory (limit {memory_mb} MiB; the guest's memories, not the host's bookkeeping); wall {:.3} ms",
        u.memory_peak_bytes as f64 / (1024.0 * 1024.0),
        u.wall_us as f64 / 1000.0
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_compare_as_values() {
        assert!(same_body(br#"{"a":1,"b":[2]}"#, br#"{ "b": [2], "a": 1 }"#));
        assert!(!same_body(br#"{"a":1}"#, br#"{"a":2}"#));
        assert!(same_body(b"plain", b"plain"));
        assert!(!same_body(b"plain", b"plain\n"));
    }
}
