//! Metrics: one set of OpenTelemetry SDK instruments, updated on the paths
//! that own the events, read by both `GET /metrics` (Prometheus text,
//! `prometheus.rs`) and the OTLP push (`export.rs`) through one SDK reader
//! (cumulative). Gauges are read from their owners at collect time: the
//! caller hands a [`Gauges`] snapshot and the SDK's callbacks observe it.
//!
//! Cardinality is bounded: the `tenant` label takes at most
//! `telemetry.max_tenant_labels` distinct values (first come), the rest are
//! counted under `other`; no trigger ids or paths are ever labels.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, Meter, MeterProvider as _, ObservableGauge};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::ResourceMetrics;
use opentelemetry_sdk::metrics::reader::MetricReader;
use opentelemetry_sdk::metrics::{InstrumentKind, ManualReader, Pipeline, SdkMeterProvider, Temporality};

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Commit batch sizes.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    Counter,
    Histogram,
    Gauge,
}

impl Type {
    pub fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Histogram => "histogram",
            Type::Gauge => "gauge",
        }
    }
}

/// Every metric Weir exposes, in page order, with its help text: the one
/// list the instruments are built from and `/metrics` declares (an
/// instrument that has seen nothing yet is still declared, so the docs and
/// alert rules can rely on every name from the start).
pub const CATALOGUE: &[(&str, Type, &str)] = &[
    ("weir_ingest_requests_total", Type::Counter, "Ingest requests by tenant and outcome."),
    ("weir_ingest_duration_seconds", Type::Histogram, "Ingest request latency, body read to answer."),
    ("weir_plugin_duration_seconds", Type::Histogram, "Plugin run time per trigger, by tenant."),
    (
        "weir_plugin_failures_total",
        Type::Counter,
        "Plugin failures by tenant and kind (deadline, memory, trap, malformed_output, unavailable, reject).",
    ),
    (
        "weir_plugin_slow_lane_total",
        Type::Counter,
        "Plugin calls that overran their first millisecond of CPU and finished on the low-priority slow lane, by tenant.",
    ),
    ("weir_commit_batch_size", Type::Histogram, "Triggers per group commit."),
    ("weir_commit_duration_seconds", Type::Histogram, "Group commit time including fsync."),
    (
        "weir_store_checkpoints_total",
        Type::Counter,
        "Group commits made durable in redb itself, after which the store journal starts over.",
    ),
    ("weir_forward_attempts_total", Type::Counter, "Delivery attempts by upstream and outcome (delivered, retry, dead)."),
    ("weir_fleet_updates_total", Type::Counter, "Fleet control values by kind (tenant, pause, plugin) and result (applied, rejected)."),
    ("weir_delivered_total", Type::Counter, "Triggers delivered."),
    ("weir_dead_total", Type::Counter, "Triggers that became dead."),
    ("weir_replayed_total", Type::Counter, "Triggers moved back to pending by replay."),
    ("weir_pending_triggers", Type::Gauge, "Pending triggers by tenant."),
    ("weir_triggers", Type::Gauge, "Stored triggers by state."),
    ("weir_oldest_pending_age_seconds", Type::Gauge, "Age of the oldest pending trigger (0 when none)."),
    ("weir_store_bytes", Type::Gauge, "Size of the store files on disk."),
    ("weir_store_used_bytes", Type::Gauge, "Bytes of live triggers (what the budget counts)."),
    ("weir_store_budget_bytes", Type::Gauge, "The store's disk budget (store.max_bytes)."),
    ("weir_store_free_bytes", Type::Gauge, "Free bytes on the store's filesystem (ingest refuses below store.min_free_bytes)."),
    ("weir_store_min_free_bytes", Type::Gauge, "The free-space reserve (store.min_free_bytes)."),
    ("weir_ready", Type::Gauge, "1 when /readyz answers 200."),
    ("weir_replay_jobs_running", Type::Gauge, "Replay jobs in progress."),
    ("weir_trace_spans_exported_total", Type::Counter, "Trace spans accepted by the OTLP collector."),
    ("weir_trace_spans_dropped_total", Type::Counter, "Trace spans dropped: export queue full or collector unreachable."),
    (
        "weir_tls_handshake_failures_total",
        Type::Counter,
        "TLS connections that never reached HTTP, by listener and reason (timeout, plain_http, not_tls, closed, error).",
    ),
    ("weir_tls_reloads_total", Type::Counter, "Certificate reloads by listener and result (ok, error)."),
    (
        "weir_fleet_plugin_rejected_total",
        Type::Counter,
        "Fleet plugins this PoP refused (it kept its previous version), by tenant and reason.",
    ),
    ("weir_connections", Type::Gauge, "Open connections per listener."),
    ("weir_connections_max", Type::Gauge, "The connection limit per listener (server.max_connections)."),
    (
        "weir_tls_reload_failing",
        Type::Gauge,
        "1 while a listener's certificate files on disk are rejected (the previous certificate is still served).",
    ),
    ("weir_tls_certificate_not_after_seconds", Type::Gauge, "When the certificate a listener serves expires (Unix seconds)."),
    ("weir_tls_certificate_expiring", Type::Gauge, "1 when the certificate a listener serves expires within expiry_warn_days."),
    ("weir_fleet_heartbeats_total", Type::Counter, "Fleet heartbeats by outcome (sent, skipped: NATS down or slow)."),
    ("weir_fleet_commands_total", Type::Counter, "Fleet commands answered, by command and outcome (ok, refused, invalid)."),
    ("weir_upstream_state", Type::Gauge, "Upstream breaker state: 0 healthy, 1 degraded, 2 open."),
];

fn help(name: &str) -> &'static str {
    CATALOGUE.iter().find(|(n, ..)| *n == name).map_or("", |(_, _, h)| h)
}

/// Every instrument Weir keeps; one per process, shared by `Arc`.
pub struct Metrics {
    max_tenants: usize,
    tenants: Mutex<HashSet<String>>,
    reader: Arc<ManualReader>,
    /// Owns the instruments' pipeline; kept for as long as they are.
    _provider: SdkMeterProvider,
    /// Observable gauges stay registered while held.
    _gauges: Vec<ObservableGauge<f64>>,
    /// What the gauges' callbacks read at collect time.
    scraped: Arc<Scraped>,
    ingest_requests: Counter<u64>,
    ingest_seconds: Histogram<f64>,
    plugin_seconds: Histogram<f64>,
    plugin_failures: Counter<u64>,
    plugin_slow_lane: Counter<u64>,
    commit_batch: Histogram<f64>,
    commit_seconds: Histogram<f64>,
    checkpoints: Counter<u64>,
    forward_attempts: Counter<u64>,
    fleet_updates: Counter<u64>,
    delivered: Counter<u64>,
    dead: Counter<u64>,
    replayed: Counter<u64>,
    tls_handshake_failures: Counter<u64>,
    tls_reloads: Counter<u64>,
    fleet_plugin_rejected: Counter<u64>,
    fleet_heartbeats: Counter<u64>,
    fleet_commands: Counter<u64>,
    /// Spans the OTLP exporter got through, and spans it dropped (`export.rs`).
    pub spans_exported: Counter<u64>,
    pub spans_dropped: Counter<u64>,
}

/// The SDK reader, shared: the provider holds one handle, collects go through the other.
#[derive(Debug, Clone)]
struct SharedReader(Arc<ManualReader>);

impl MetricReader for SharedReader {
    fn register_pipeline(&self, pipeline: Weak<Pipeline>) {
        self.0.register_pipeline(pipeline)
    }
    fn collect(&self, rm: &mut ResourceMetrics) -> OTelSdkResult {
        self.0.collect(rm)
    }
    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }
    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }
    fn temporality(&self, kind: InstrumentKind) -> Temporality {
        self.0.temporality(kind)
    }
}

fn counter(meter: &Meter, name: &'static str) -> Counter<u64> {
    meter.u64_counter(name).with_description(help(name)).build()
}

/// A counter without labels, shown as 0 before its first event.
fn total(meter: &Meter, name: &'static str) -> Counter<u64> {
    let c = counter(meter, name);
    c.add(0, &[]);
    c
}

fn histogram(meter: &Meter, name: &'static str, bounds: &[f64]) -> Histogram<f64> {
    meter.f64_histogram(name).with_description(help(name)).with_boundaries(bounds.to_vec()).build()
}

fn kv(key: &'static str, value: impl Into<opentelemetry::Value>) -> KeyValue {
    KeyValue::new(key, value)
}

impl Metrics {
    /// Instruments under a resource without attributes (tests, tools).
    pub fn new(max_tenant_labels: usize) -> Metrics {
        Metrics::with_resource(max_tenant_labels, Resource::builder_empty().build())
    }

    /// Instruments whose OTLP export carries `resource`.
    pub fn with_resource(max_tenant_labels: usize, resource: Resource) -> Metrics {
        let reader = Arc::new(ManualReader::builder().with_temporality(Temporality::Cumulative).build());
        let provider = SdkMeterProvider::builder().with_resource(resource).with_reader(SharedReader(reader.clone())).build();
        let meter = provider.meter("weir");
        let scraped = Arc::new(Scraped::default());
        let gauges = CATALOGUE
            .iter()
            .filter(|(_, t, _)| *t == Type::Gauge)
            .map(|(name, ..)| {
                let scraped = scraped.clone();
                meter
                    .f64_observable_gauge(*name)
                    .with_description(help(name))
                    .with_callback(move |o| {
                        for (attrs, v) in scraped.values(name) {
                            o.observe(v, &attrs);
                        }
                    })
                    .build()
            })
            .collect();
        Metrics {
            max_tenants: max_tenant_labels,
            tenants: Mutex::new(HashSet::new()),
            reader,
            _gauges: gauges,
            scraped,
            ingest_requests: counter(&meter, "weir_ingest_requests_total"),
            ingest_seconds: histogram(&meter, "weir_ingest_duration_seconds", LATENCY),
            plugin_seconds: histogram(&meter, "weir_plugin_duration_seconds", LATENCY),
            plugin_failures: counter(&meter, "weir_plugin_failures_total"),
            plugin_slow_lane: counter(&meter, "weir_plugin_slow_lane_total"),
            commit_batch: histogram(&meter, "weir_commit_batch_size", BATCH),
            commit_seconds: histogram(&meter, "weir_commit_duration_seconds", LATENCY),
            checkpoints: total(&meter, "weir_store_checkpoints_total"),
            forward_attempts: counter(&meter, "weir_forward_attempts_total"),
            fleet_updates: counter(&meter, "weir_fleet_updates_total"),
            delivered: total(&meter, "weir_delivered_total"),
            dead: total(&meter, "weir_dead_total"),
            replayed: total(&meter, "weir_replayed_total"),
            tls_handshake_failures: counter(&meter, "weir_tls_handshake_failures_total"),
            tls_reloads: counter(&meter, "weir_tls_reloads_total"),
            fleet_plugin_rejected: counter(&meter, "weir_fleet_plugin_rejected_total"),
            fleet_heartbeats: counter(&meter, "weir_fleet_heartbeats_total"),
            fleet_commands: counter(&meter, "weir_fleet_commands_total"),
            spans_exported: total(&meter, "weir_trace_spans_exported_total"),
            spans_dropped: total(&meter, "weir_trace_spans_dropped_total"),
            _provider: provider,
        }
    }

    /// The label value for `tenant`: itself while under the cap, else `other`.
    pub fn tenant_label(&self, tenant: &str) -> String {
        let mut known = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
        if known.contains(tenant) {
            return tenant.to_string();
        }
        if known.len() < self.max_tenants {
            known.insert(tenant.to_string());
            return tenant.to_string();
        }
        "other".into()
    }

    pub fn ingest(&self, tenant: &str, outcome: &'static str, elapsed: Duration) {
        self.ingest_requests.add(1, &[kv("tenant", self.tenant_label(tenant)), kv("outcome", outcome)]);
        self.ingest_seconds.record(elapsed.as_secs_f64(), &[]);
    }

    pub fn plugin(&self, tenant: &str, elapsed: Duration, failure: Option<&'static str>, slow_lane: bool) {
        let t = kv("tenant", self.tenant_label(tenant));
        if slow_lane {
            self.plugin_slow_lane.add(1, std::slice::from_ref(&t));
        }
        self.plugin_seconds.record(elapsed.as_secs_f64(), std::slice::from_ref(&t));
        if let Some(kind) = failure {
            self.plugin_failures.add(1, &[t, kv("kind", kind)]);
        }
    }

    /// A group commit was a checkpoint (see `store/journal.rs`).
    pub fn checkpoint(&self) {
        self.checkpoints.add(1, &[]);
    }

    /// One group commit of `batch` triggers that took `elapsed`, fsync included.
    pub fn commit(&self, batch: usize, elapsed: Duration) {
        self.commit_batch.record(batch as f64, &[]);
        self.commit_seconds.record(elapsed.as_secs_f64(), &[]);
    }

    /// A delivery attempt's outcome: `delivered`, `retry` or `dead` (the
    /// last two also count the trigger in `weir_delivered_total` / `weir_dead_total`).
    pub fn forward_attempt(&self, upstream: &str, outcome: &'static str) {
        self.forward_attempts.add(1, &[kv("upstream", upstream.to_string()), kv("outcome", outcome)]);
        match outcome {
            "delivered" => self.delivered.add(1, &[]),
            "dead" => self.dead.add(1, &[]),
            _ => {}
        }
    }

    /// A trigger moved back to pending by replay.
    pub fn replayed(&self) {
        self.replayed.add(1, &[]);
    }

    /// A fleet heartbeat `sent` or `skipped` (NATS down or slow).
    pub fn fleet_heartbeat(&self, outcome: &'static str) {
        self.fleet_heartbeats.add(1, &[kv("outcome", outcome)]);
    }

    /// A fleet command answered: `ok`, `refused` (invalid or not allowed) or `invalid` (no reply subject).
    pub fn fleet_command(&self, command: &'static str, outcome: &'static str) {
        self.fleet_commands.add(1, &[kv("command", command), kv("outcome", outcome)]);
    }

    /// A control-bucket value this PoP applied or refused (`kind`: tenant, pause, plugin).
    pub fn fleet_update(&self, kind: &'static str, result: &'static str) {
        self.fleet_updates.add(1, &[kv("kind", kind), kv("result", result)]);
    }

    /// A fleet plugin this PoP refused (`fleet::plugins`); `tenant` is empty
    /// for a control key that names no valid tenant.
    pub fn fleet_plugin_rejected(&self, tenant: &str, reason: &'static str) {
        let t = if tenant.is_empty() { "-".to_string() } else { self.tenant_label(tenant) };
        self.fleet_plugin_rejected.add(1, &[kv("tenant", t), kv("reason", reason)]);
    }

    /// Lets `weir_connections` read a listener's open connections at scrape.
    pub fn track_connections(&self, listener: &str, open: Arc<AtomicUsize>, max: usize) {
        self.scraped.connections.lock().unwrap_or_else(|e| e.into_inner()).insert(listener.into(), (open, max));
    }

    pub fn tls_handshake_failure(&self, listener: &str, reason: &'static str) {
        self.tls_handshake_failures.add(1, &[kv("listener", listener.to_string()), kv("reason", reason)]);
    }

    /// Counts a reload (`ok` or `error`); an error means the files on disk
    /// are rejected until a later reload succeeds.
    pub fn tls_reload(&self, listener: &str, result: &'static str) {
        self.tls_reloads.add(1, &[kv("listener", listener.to_string()), kv("result", result)]);
        self.tls_listener(listener, |t| t.failing = result == "error");
    }

    /// Records the certificate a listener now serves.
    pub fn tls_certificate(&self, listener: &str, not_after: Option<i64>, warn_days: u32) {
        self.tls_listener(listener, |t| (t.not_after, t.warn_days) = (not_after, warn_days));
    }

    fn tls_listener(&self, listener: &str, change: impl FnOnce(&mut TlsListener)) {
        change(self.scraped.tls_listeners.lock().unwrap_or_else(|e| e.into_inner()).entry(listener.into()).or_default());
    }

    /// Every instrument's current value, with `gauges` (read from their owners just now) observed.
    pub fn collect(&self, gauges: Gauges) -> ResourceMetrics {
        let mut pending: BTreeMap<String, u64> = BTreeMap::new();
        for (t, n) in &gauges.pending_by_tenant {
            *pending.entry(self.tenant_label(t)).or_default() += n;
        }
        *self.scraped.gauges.lock().unwrap_or_else(|e| e.into_inner()) = Some((gauges, pending));
        let mut rm = ResourceMetrics::default();
        if let Err(e) = self.reader.collect(&mut rm) {
            tracing::debug!(error = %e, "metrics collection failed");
        }
        rm
    }

    /// Plugin runs and failures by kind per tenant label, as the instruments
    /// counted them (read back from the SDK, not counted a second time).
    /// The gauges observe their last snapshot; only the plugin series are kept.
    pub fn plugin_counts(&self) -> BTreeMap<String, PluginCounts> {
        use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
        let mut rm = ResourceMetrics::default();
        if let Err(e) = self.reader.collect(&mut rm) {
            tracing::debug!(error = %e, "metrics collection failed");
        }
        let mut out: BTreeMap<String, PluginCounts> = BTreeMap::new();
        for m in rm.scope_metrics().flat_map(|s| s.metrics()) {
            match (m.name(), m.data()) {
                ("weir_plugin_duration_seconds", AggregatedMetrics::F64(MetricData::Histogram(h))) => {
                    for p in h.data_points() {
                        out.entry(attr(p.attributes(), "tenant")).or_default().calls += p.count();
                    }
                }
                ("weir_plugin_failures_total", AggregatedMetrics::U64(MetricData::Sum(s))) => {
                    for p in s.data_points() {
                        let counts = out.entry(attr(p.attributes(), "tenant")).or_default();
                        *counts.failures.entry(attr(p.attributes(), "kind")).or_default() += p.value();
                    }
                }
                _ => {}
            }
        }
        out
    }

    /// The Prometheus text page.
    pub fn render(&self, gauges: Gauges) -> String {
        super::prometheus::render(&self.collect(gauges))
    }
}

/// What the gauge callbacks read: the latest snapshot, and the per-listener state.
#[derive(Default)]
struct Scraped {
    /// The gauges the collector handed, and the pending triggers by tenant label.
    gauges: Mutex<Option<(Gauges, BTreeMap<String, u64>)>>,
    /// Per listener: the certificate's notAfter (Unix seconds) and the warning window in days.
    tls_listeners: Mutex<BTreeMap<String, TlsListener>>,
    /// Per listener: its open connections (kept by `http::serve`) and the limit.
    connections: Mutex<BTreeMap<String, (Arc<AtomicUsize>, usize)>>,
}

impl Scraped {
    /// A gauge's values, by label set.
    fn values(&self, name: &str) -> Vec<(Vec<KeyValue>, f64)> {
        let plain = |v: f64| vec![(Vec::new(), v)];
        let listener = |l: &String| vec![kv("listener", l.clone())];
        match name {
            "weir_connections" | "weir_connections_max" => {
                let open = name == "weir_connections";
                let conns = self.connections.lock().unwrap_or_else(|e| e.into_inner());
                conns
                    .iter()
                    .map(|(l, (count, limit))| (listener(l), if open { count.load(Ordering::Relaxed) } else { *limit } as f64))
                    .collect()
            }
            "weir_tls_reload_failing" | "weir_tls_certificate_not_after_seconds" | "weir_tls_certificate_expiring" => {
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
                let tls = self.tls_listeners.lock().unwrap_or_else(|e| e.into_inner());
                tls.iter()
                    .filter_map(|(l, t)| {
                        let v = match name {
                            "weir_tls_reload_failing" => f64::from(u8::from(t.failing)),
                            "weir_tls_certificate_not_after_seconds" => t.not_after? as f64,
                            _ => f64::from(u8::from(t.not_after? - now <= i64::from(t.warn_days) * 86_400)),
                        };
                        Some((listener(l), v))
                    })
                    .collect()
            }
            _ => {
                let snapshot = self.gauges.lock().unwrap_or_else(|e| e.into_inner());
                let Some((g, pending)) = snapshot.as_ref() else { return Vec::new() };
                match name {
                    "weir_pending_triggers" => pending.iter().map(|(t, n)| (vec![kv("tenant", t.clone())], *n as f64)).collect(),
                    "weir_triggers" => g.by_state.iter().map(|(s, n)| (vec![kv("state", *s)], *n as f64)).collect(),
                    "weir_oldest_pending_age_seconds" => plain(g.oldest_pending_age_secs),
                    "weir_store_bytes" => plain(g.store_bytes as f64),
                    "weir_store_used_bytes" => plain(g.used_bytes as f64),
                    "weir_store_budget_bytes" => plain(g.budget_bytes as f64),
                    "weir_store_free_bytes" => plain(g.free_bytes as f64),
                    "weir_store_min_free_bytes" => plain(g.min_free_bytes as f64),
                    "weir_ready" => plain(f64::from(u8::from(g.ready))),
                    "weir_replay_jobs_running" => plain(g.replays_running as f64),
                    "weir_upstream_state" => {
                        g.upstreams.iter().map(|(u, s)| (vec![kv("upstream", u.clone())], upstream_state_value(s))).collect()
                    }
                    _ => Vec::new(),
                }
            }
        }
    }
}

/// What the metrics know of one TLS listener.
#[derive(Default)]
struct TlsListener {
    /// The served certificate's notAfter (Unix seconds), when readable.
    not_after: Option<i64>,
    warn_days: u32,
    /// The files on disk were rejected; the previous certificate is still served.
    failing: bool,
}

/// `weir_upstream_state`: 0 healthy, 1 degraded, 2 open.
fn upstream_state_value(state: &str) -> f64 {
    match state {
        "healthy" => 0.0,
        "degraded" => 1.0,
        _ => 2.0,
    }
}

/// One tenant label's plugin runs, and its failures by kind (`trap`, `timeout`…).
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PluginCounts {
    pub calls: u64,
    pub failures: BTreeMap<String, u64>,
}

fn attr<'a>(attrs: impl Iterator<Item = &'a KeyValue>, key: &str) -> String {
    attrs.into_iter().find(|a| a.key.as_str() == key).map(|a| a.value.as_str().into_owned()).unwrap_or_default()
}

/// Values read from their owners at scrape time.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    pub pending_by_tenant: BTreeMap<String, u64>,
    pub by_state: Vec<(&'static str, u64)>,
    pub oldest_pending_age_secs: f64,
    pub store_bytes: u64,
    pub used_bytes: u64,
    pub budget_bytes: u64,
    /// Free bytes on the store's filesystem, and the reserve kept there.
    pub free_bytes: u64,
    pub min_free_bytes: u64,
    pub ready: bool,
    pub replays_running: usize,
    pub upstreams: Vec<(String, &'static str)>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_labels_are_capped() {
        let m = Metrics::new(2);
        assert_eq!(m.tenant_label("a"), "a");
        assert_eq!(m.tenant_label("b"), "b");
        assert_eq!(m.tenant_label("c"), "other");
        assert_eq!(m.tenant_label("a"), "a");
    }

    #[test]
    fn every_instrument_is_in_the_catalogue_and_every_gauge_is_observed() {
        let m = Metrics::new(10);
        m.ingest("a", "accepted", Duration::from_millis(1));
        m.plugin("a", Duration::from_millis(1), Some("trap"), true);
        m.commit(3, Duration::from_millis(2));
        m.forward_attempt("http://u", "dead");
        m.replayed();
        m.fleet_heartbeat("sent");
        m.fleet_command("replay", "ok");
        m.fleet_update("tenant", "applied");
        m.fleet_plugin_rejected("", "invalid");
        m.tls_handshake_failure("ingest", "timeout");
        m.tls_reload("ingest", "ok");
        m.tls_certificate("ingest", Some(1), 30);
        m.track_connections("ingest", Arc::new(AtomicUsize::new(2)), 10);
        m.spans_exported.add(1, &[]);
        let gauges = Gauges {
            pending_by_tenant: [("a".to_string(), 1)].into(),
            by_state: vec![("pending", 1)],
            upstreams: vec![("http://u".into(), "open")],
            ..Gauges::default()
        };
        let rm = m.collect(gauges);
        let names: HashSet<&str> = rm.scope_metrics().flat_map(|s| s.metrics()).map(|m| m.name()).collect();
        let catalogue: HashSet<&str> = CATALOGUE.iter().map(|(n, ..)| *n).collect();
        assert_eq!(names, catalogue, "every catalogue entry has data, and nothing outside it does");
    }

    #[test]
    fn plugin_counts_read_back_what_the_instruments_counted() {
        let m = Metrics::new(1);
        assert!(m.plugin_counts().is_empty());
        m.plugin("a", Duration::from_millis(1), None, false);
        m.plugin("a", Duration::from_millis(1), Some("trap"), false);
        m.plugin("a", Duration::from_millis(1), Some("trap"), true);
        m.plugin("a", Duration::from_millis(1), Some("timeout"), false);
        m.plugin("b", Duration::from_millis(1), None, false);
        let counts = m.plugin_counts();
        let a = &counts["a"];
        assert_eq!(a.calls, 4);
        assert_eq!(a.failures, [("timeout".to_string(), 1), ("trap".to_string(), 2)].into());
        // Past the label cap, tenants are counted under `other`, as on /metrics.
        assert_eq!(counts["other"], PluginCounts { calls: 1, failures: BTreeMap::new() });
        // Reading is not counting: a second read sees the same totals.
        assert_eq!(m.plugin_counts(), counts);
    }
}
