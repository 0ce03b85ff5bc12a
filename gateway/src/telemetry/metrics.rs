//! Metrics in the Prometheus text format (`GET /metrics` on the admin
//! listener). Instruments are plain atomics and small maps, updated on the
//! paths that own the events; gauges are read from their owners at scrape.
//!
//! Cardinality is bounded: the `tenant` label takes at most
//! `telemetry.max_tenant_labels` distinct values (first come), the rest are
//! counted under `other`; no trigger ids or paths are ever labels.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Latency buckets in seconds: 100 µs to 10 s.
const LATENCY: &[f64] = &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];
/// Commit batch sizes.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

pub struct Histogram {
    bounds: &'static [f64],
    counts: Vec<AtomicU64>,
    /// Sum in millionths, so it stays an integer atomic.
    sum_micro: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: bounds.iter().map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, v: f64) {
        if let Some(i) = self.bounds.iter().position(|b| v <= *b) {
            self.counts[i].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro.fetch_add((v * 1e6) as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{b}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {count}");
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{braces} {count}");
    }
}

/// Counters keyed by a few label values.
#[derive(Default)]
struct Family {
    values: Mutex<BTreeMap<Vec<String>, u64>>,
}

impl Family {
    fn inc(&self, labels: Vec<String>) {
        *self.values.lock().unwrap_or_else(|e| e.into_inner()).entry(labels).or_default() += 1;
    }

    fn render(&self, out: &mut String, name: &str, keys: &[&str]) {
        for (labels, v) in self.values.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            let _ = writeln!(out, "{name}{{{}}} {v}", label_pairs(keys, labels));
        }
    }
}

fn label_pairs(keys: &[&str], values: &[String]) -> String {
    keys.iter().zip(values).map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect::<Vec<_>>().join(",")
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// Every instrument Weir keeps; one per process, shared by `Arc`.
pub struct Metrics {
    max_tenants: usize,
    tenants: Mutex<HashSet<String>>,
    ingest_requests: Family,
    pub ingest_seconds: Histogram,
    plugin_seconds: Mutex<BTreeMap<String, Histogram>>,
    plugin_failures: Family,
    plugin_slow_lane: Family,
    pub commit_batch: Histogram,
    pub commit_seconds: Histogram,
    forward_attempts: Family,
    fleet_updates: Family,
    pub delivered: AtomicU64,
    pub dead: AtomicU64,
    pub replayed: AtomicU64,
    tls_handshake_failures: Family,
    tls_reloads: Family,
    /// Per listener: the certificate's notAfter (Unix seconds) and the warning window in days.
    tls_listeners: Mutex<BTreeMap<String, TlsListener>>,
    /// Per listener: its open connections (kept by `http::serve`) and the limit.
    connections: Mutex<BTreeMap<String, (Arc<AtomicUsize>, usize)>>,
    fleet_heartbeats: Family,
    fleet_commands: Family,
}

impl Metrics {
    pub fn new(max_tenant_labels: usize) -> Metrics {
        Metrics {
            max_tenants: max_tenant_labels,
            tenants: Mutex::new(HashSet::new()),
            ingest_requests: Family::default(),
            ingest_seconds: Histogram::new(LATENCY),
            plugin_seconds: Mutex::new(BTreeMap::new()),
            plugin_failures: Family::default(),
            plugin_slow_lane: Family::default(),
            commit_batch: Histogram::new(BATCH),
            commit_seconds: Histogram::new(LATENCY),
            forward_attempts: Family::default(),
            fleet_updates: Family::default(),
            delivered: AtomicU64::new(0),
            dead: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            tls_handshake_failures: Family::default(),
            tls_reloads: Family::default(),
            tls_listeners: Mutex::new(BTreeMap::new()),
            connections: Mutex::new(BTreeMap::new()),
            fleet_heartbeats: Family::default(),
            fleet_commands: Family::default(),
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
        self.ingest_requests.inc(vec![self.tenant_label(tenant), outcome.into()]);
        self.ingest_seconds.observe(elapsed.as_secs_f64());
    }

    pub fn plugin(&self, tenant: &str, elapsed: Duration, failure: Option<&'static str>, slow_lane: bool) {
        let t = self.tenant_label(tenant);
        if slow_lane {
            self.plugin_slow_lane.inc(vec![t.clone()]);
        }
        self.plugin_seconds
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(t.clone())
            .or_insert_with(|| Histogram::new(LATENCY))
            .observe(elapsed.as_secs_f64());
        if let Some(kind) = failure {
            self.plugin_failures.inc(vec![t, kind.into()]);
        }
    }

    pub fn forward_attempt(&self, upstream: &str, outcome: &'static str) {
        self.forward_attempts.inc(vec![upstream.into(), outcome.into()]);
    }

    /// A fleet heartbeat `sent` or `skipped` (NATS down or slow).
    pub fn fleet_heartbeat(&self, outcome: &'static str) {
        self.fleet_heartbeats.inc(vec![outcome.into()]);
    }

    /// A fleet command answered: `ok`, `refused` (invalid or not allowed) or `invalid` (no reply subject).
    pub fn fleet_command(&self, command: &'static str, outcome: &'static str) {
        self.fleet_commands.inc(vec![command.into(), outcome.into()]);
    }

    /// A control-bucket value this PoP applied or refused (`kind`: tenant, pause, plugin).
    pub fn fleet_update(&self, kind: &'static str, result: &'static str) {
        self.fleet_updates.inc(vec![kind.into(), result.into()]);
    }

    /// Lets `weir_connections` read a listener's open connections at scrape.
    pub fn track_connections(&self, listener: &str, open: Arc<AtomicUsize>, max: usize) {
        self.connections.lock().unwrap_or_else(|e| e.into_inner()).insert(listener.into(), (open, max));
    }

    pub fn tls_handshake_failure(&self, listener: &str, reason: &'static str) {
        self.tls_handshake_failures.inc(vec![listener.into(), reason.into()]);
    }

    /// Counts a reload (`ok` or `error`); an error means the files on disk
    /// are rejected until a later reload succeeds.
    pub fn tls_reload(&self, listener: &str, result: &'static str) {
        self.tls_reloads.inc(vec![listener.into(), result.into()]);
        self.tls_listener(listener, |t| t.failing = result == "error");
    }

    /// Records the certificate a listener now serves.
    pub fn tls_certificate(&self, listener: &str, not_after: Option<i64>, warn_days: u32) {
        self.tls_listener(listener, |t| (t.not_after, t.warn_days) = (not_after, warn_days));
    }

    fn tls_listener(&self, listener: &str, change: impl FnOnce(&mut TlsListener)) {
        change(self.tls_listeners.lock().unwrap_or_else(|e| e.into_inner()).entry(listener.into()).or_default());
    }

    /// The per-listener gauges, read at scrape.
    fn listener_gauges(&self) -> [ListenerGauge; 5] {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let (mut open, mut max) = (Vec::new(), Vec::new());
        for (l, (count, limit)) in self.connections.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            open.push((l.clone(), count.load(Ordering::Relaxed) as f64));
            max.push((l.clone(), *limit as f64));
        }
        let (mut failing, mut not_after, mut expiring) = (Vec::new(), Vec::new(), Vec::new());
        for (l, t) in self.tls_listeners.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            failing.push((l.clone(), f64::from(u8::from(t.failing))));
            if let Some(na) = t.not_after {
                not_after.push((l.clone(), na as f64));
                expiring.push((l.clone(), f64::from(u8::from(na - now <= i64::from(t.warn_days) * 86_400))));
            }
        }
        [
            ("weir_connections", "Open connections per listener.", open),
            ("weir_connections_max", "The connection limit per listener (server.max_connections).", max),
            (
                "weir_tls_reload_failing",
                "1 while a listener's certificate files on disk are rejected (the previous certificate is still served).",
                failing,
            ),
            ("weir_tls_certificate_not_after_seconds", "When the certificate a listener serves expires (Unix seconds).", not_after),
            ("weir_tls_certificate_expiring", "1 when the certificate a listener serves expires within expiry_warn_days.", expiring),
        ]
    }

    /// Renders the counters and histograms; `gauges` appends the values read at scrape.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut out = String::with_capacity(8 * 1024);
        let help = |out: &mut String, name: &str, kind: &str, text: &str| {
            let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
        };
        help(&mut out, "weir_ingest_requests_total", "counter", "Ingest requests by tenant and outcome.");
        self.ingest_requests.render(&mut out, "weir_ingest_requests_total", &["tenant", "outcome"]);
        help(&mut out, "weir_ingest_duration_seconds", "histogram", "Ingest request latency, body read to answer.");
        self.ingest_seconds.render(&mut out, "weir_ingest_duration_seconds", "");
        help(&mut out, "weir_plugin_duration_seconds", "histogram", "Plugin run time per trigger, by tenant.");
        for (t, h) in self.plugin_seconds.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            h.render(&mut out, "weir_plugin_duration_seconds", &format!("tenant=\"{}\"", escape(t)));
        }
        help(
            &mut out,
            "weir_plugin_failures_total",
            "counter",
            "Plugin failures by tenant and kind (deadline, memory, trap, malformed_output, unavailable, reject).",
        );
        self.plugin_failures.render(&mut out, "weir_plugin_failures_total", &["tenant", "kind"]);
        help(
            &mut out,
            "weir_plugin_slow_lane_total",
            "counter",
            "Plugin calls that overran their first millisecond of CPU and finished on the low-priority slow lane, by tenant.",
        );
        self.plugin_slow_lane.render(&mut out, "weir_plugin_slow_lane_total", &["tenant"]);
        help(&mut out, "weir_commit_batch_size", "histogram", "Triggers per group commit.");
        self.commit_batch.render(&mut out, "weir_commit_batch_size", "");
        help(&mut out, "weir_commit_duration_seconds", "histogram", "Group commit time including fsync.");
        self.commit_seconds.render(&mut out, "weir_commit_duration_seconds", "");
        help(&mut out, "weir_forward_attempts_total", "counter", "Delivery attempts by upstream and outcome (delivered, retry, dead).");
        self.forward_attempts.render(&mut out, "weir_forward_attempts_total", &["upstream", "outcome"]);
        help(
            &mut out,
            "weir_fleet_updates_total",
            "counter",
            "Fleet control values by kind (tenant, pause, plugin) and result (applied, rejected).",
        );
        self.fleet_updates.render(&mut out, "weir_fleet_updates_total", &["kind", "result"]);
        for (name, text, v) in [
            ("weir_delivered_total", "Triggers delivered.", &self.delivered),
            ("weir_dead_total", "Triggers that became dead.", &self.dead),
            ("weir_replayed_total", "Triggers moved back to pending by replay.", &self.replayed),
        ] {
            help(&mut out, name, "counter", text);
            let _ = writeln!(out, "{name} {}", v.load(Ordering::Relaxed));
        }
        help(&mut out, "weir_pending_triggers", "gauge", "Pending triggers by tenant.");
        let mut by_label: BTreeMap<String, u64> = BTreeMap::new();
        for (t, n) in &gauges.pending_by_tenant {
            *by_label.entry(self.tenant_label(t)).or_default() += n;
        }
        for (t, n) in by_label {
            let _ = writeln!(out, "weir_pending_triggers{{tenant=\"{}\"}} {n}", escape(&t));
        }
        for (name, kind, text, v) in [
            ("weir_triggers", "gauge", "Stored triggers by state.", None),
            (
                "weir_oldest_pending_age_seconds",
                "gauge",
                "Age of the oldest pending trigger (0 when none).",
                Some(gauges.oldest_pending_age_secs),
            ),
            ("weir_store_bytes", "gauge", "Size of the store files on disk.", Some(gauges.store_bytes as f64)),
            ("weir_store_used_bytes", "gauge", "Bytes of live triggers (what the budget counts).", Some(gauges.used_bytes as f64)),
            ("weir_store_budget_bytes", "gauge", "The store's disk budget (store.max_bytes).", Some(gauges.budget_bytes as f64)),
            (
                "weir_store_free_bytes",
                "gauge",
                "Free bytes on the store's filesystem (ingest refuses below store.min_free_bytes).",
                Some(gauges.free_bytes as f64),
            ),
            ("weir_store_min_free_bytes", "gauge", "The free-space reserve (store.min_free_bytes).", Some(gauges.min_free_bytes as f64)),
            ("weir_ready", "gauge", "1 when /readyz answers 200.", Some(f64::from(u8::from(gauges.ready)))),
            ("weir_replay_jobs_running", "gauge", "Replay jobs in progress.", Some(gauges.replays_running as f64)),
        ] {
            help(&mut out, name, kind, text);
            match v {
                Some(v) => {
                    let _ = writeln!(out, "{name} {v}");
                }
                None => {
                    for (state, n) in &gauges.by_state {
                        let _ = writeln!(out, "{name}{{state=\"{state}\"}} {n}");
                    }
                }
            }
        }
        help(&mut out, "weir_trace_spans_exported_total", "counter", "Trace spans accepted by the OTLP collector.");
        let _ = writeln!(out, "weir_trace_spans_exported_total {}", gauges.trace_spans.0);
        help(&mut out, "weir_trace_spans_dropped_total", "counter", "Trace spans dropped: export queue full or collector unreachable.");
        let _ = writeln!(out, "weir_trace_spans_dropped_total {}", gauges.trace_spans.1);
        help(
            &mut out,
            "weir_tls_handshake_failures_total",
            "counter",
            "TLS connections that never reached HTTP, by listener and reason (timeout, plain_http, not_tls, closed, error).",
        );
        self.tls_handshake_failures.render(&mut out, "weir_tls_handshake_failures_total", &["listener", "reason"]);
        help(&mut out, "weir_tls_reloads_total", "counter", "Certificate reloads by listener and result (ok, error).");
        self.tls_reloads.render(&mut out, "weir_tls_reloads_total", &["listener", "result"]);
        for (name, text, values) in self.listener_gauges() {
            help(&mut out, name, "gauge", text);
            for (l, v) in values {
                let _ = writeln!(out, "{name}{{listener=\"{}\"}} {v}", escape(&l));
            }
        }
        help(&mut out, "weir_fleet_heartbeats_total", "counter", "Fleet heartbeats by outcome (sent, skipped: NATS down or slow).");
        self.fleet_heartbeats.render(&mut out, "weir_fleet_heartbeats_total", &["outcome"]);
        help(&mut out, "weir_fleet_commands_total", "counter", "Fleet commands answered, by command and outcome (ok, refused, invalid).");
        self.fleet_commands.render(&mut out, "weir_fleet_commands_total", &["command", "outcome"]);
        help(&mut out, "weir_upstream_state", "gauge", "Upstream breaker state: 0 healthy, 1 degraded, 2 open.");
        for (url, state) in &gauges.upstreams {
            let _ = writeln!(out, "weir_upstream_state{{upstream=\"{}\"}} {}", escape(url), upstream_state_value(state));
        }
        out
    }
}

/// OTLP export of the same instruments (cumulative temporality).
pub mod otlp {
    use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
    use opentelemetry_proto::tonic::metrics::v1::{
        AggregationTemporality, Gauge, Histogram as OHistogram, HistogramDataPoint, Metric, NumberDataPoint, Sum, metric, number_data_point,
    };

    use super::*;

    fn attrs(keys: &[&str], values: &[String]) -> Vec<KeyValue> {
        keys.iter()
            .zip(values)
            .map(|(k, v)| KeyValue {
                key: (*k).into(),
                value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.clone())) }),
                ..Default::default()
            })
            .collect()
    }

    fn point(attributes: Vec<KeyValue>, v: f64, start: u64, now: u64) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn sum(name: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            description: description.into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            })),
            ..Default::default()
        }
    }

    fn gauge(name: &str, description: &str, points: Vec<NumberDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            description: description.into(),
            data: Some(metric::Data::Gauge(Gauge { data_points: points })),
            ..Default::default()
        }
    }

    fn histogram(name: &str, h: &Histogram, attributes: Vec<KeyValue>, start: u64, now: u64) -> HistogramDataPoint {
        let mut counts: Vec<u64> = h.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        let count = h.count.load(Ordering::Relaxed);
        counts.push(count.saturating_sub(counts.iter().sum()));
        let _ = name;
        HistogramDataPoint {
            attributes,
            start_time_unix_nano: start,
            time_unix_nano: now,
            count,
            sum: Some(h.sum_micro.load(Ordering::Relaxed) as f64 / 1e6),
            bucket_counts: counts,
            explicit_bounds: h.bounds.to_vec(),
            ..Default::default()
        }
    }

    fn hist_metric(name: &str, description: &str, points: Vec<HistogramDataPoint>) -> Metric {
        Metric {
            name: name.into(),
            description: description.into(),
            data: Some(metric::Data::Histogram(OHistogram {
                data_points: points,
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            })),
            ..Default::default()
        }
    }

    fn family(f: &Family, keys: &[&str], start: u64, now: u64) -> Vec<NumberDataPoint> {
        f.values.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(l, v)| point(attrs(keys, l), *v as f64, start, now)).collect()
    }

    impl Metrics {
        /// The instruments as OTLP metrics; `start` is when counting began.
        pub fn to_otlp(&self, g: &Gauges, start: u64, now: u64) -> Vec<Metric> {
            let mut out = vec![
                sum(
                    "weir_ingest_requests_total",
                    "Ingest requests by tenant and outcome.",
                    family(&self.ingest_requests, &["tenant", "outcome"], start, now),
                ),
                hist_metric(
                    "weir_ingest_duration_seconds",
                    "Ingest request latency.",
                    vec![histogram("", &self.ingest_seconds, vec![], start, now)],
                ),
                hist_metric(
                    "weir_plugin_duration_seconds",
                    "Plugin run time per trigger, by tenant.",
                    self.plugin_seconds
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .iter()
                        .map(|(t, h)| histogram("", h, attrs(&["tenant"], std::slice::from_ref(t)), start, now))
                        .collect(),
                ),
                sum(
                    "weir_plugin_failures_total",
                    "Plugin failures by tenant and kind.",
                    family(&self.plugin_failures, &["tenant", "kind"], start, now),
                ),
                sum(
                    "weir_plugin_slow_lane_total",
                    "Plugin calls that finished on the slow lane, by tenant.",
                    family(&self.plugin_slow_lane, &["tenant"], start, now),
                ),
                hist_metric(
                    "weir_commit_batch_size",
                    "Triggers per group commit.",
                    vec![histogram("", &self.commit_batch, vec![], start, now)],
                ),
                hist_metric(
                    "weir_commit_duration_seconds",
                    "Group commit time including fsync.",
                    vec![histogram("", &self.commit_seconds, vec![], start, now)],
                ),
                sum(
                    "weir_forward_attempts_total",
                    "Delivery attempts by upstream and outcome.",
                    family(&self.forward_attempts, &["upstream", "outcome"], start, now),
                ),
                sum(
                    "weir_fleet_updates_total",
                    "Fleet control values by kind and result.",
                    family(&self.fleet_updates, &["kind", "result"], start, now),
                ),
                sum(
                    "weir_delivered_total",
                    "Triggers delivered.",
                    vec![point(vec![], self.delivered.load(Ordering::Relaxed) as f64, start, now)],
                ),
                sum(
                    "weir_dead_total",
                    "Triggers that became dead.",
                    vec![point(vec![], self.dead.load(Ordering::Relaxed) as f64, start, now)],
                ),
                sum(
                    "weir_replayed_total",
                    "Triggers replayed.",
                    vec![point(vec![], self.replayed.load(Ordering::Relaxed) as f64, start, now)],
                ),
            ];
            let mut by_label: BTreeMap<String, u64> = BTreeMap::new();
            for (t, n) in &g.pending_by_tenant {
                *by_label.entry(self.tenant_label(t)).or_default() += n;
            }
            out.push(gauge(
                "weir_pending_triggers",
                "Pending triggers by tenant.",
                by_label.into_iter().map(|(t, n)| point(attrs(&["tenant"], &[t]), n as f64, start, now)).collect(),
            ));
            out.push(gauge(
                "weir_triggers",
                "Stored triggers by state.",
                g.by_state.iter().map(|(s, n)| point(attrs(&["state"], &[s.to_string()]), *n as f64, start, now)).collect(),
            ));
            for (name, v) in [
                ("weir_oldest_pending_age_seconds", g.oldest_pending_age_secs),
                ("weir_store_bytes", g.store_bytes as f64),
                ("weir_store_used_bytes", g.used_bytes as f64),
                ("weir_store_budget_bytes", g.budget_bytes as f64),
                ("weir_store_free_bytes", g.free_bytes as f64),
                ("weir_store_min_free_bytes", g.min_free_bytes as f64),
                ("weir_ready", f64::from(u8::from(g.ready))),
                ("weir_replay_jobs_running", g.replays_running as f64),
            ] {
                out.push(gauge(name, "", vec![point(vec![], v, start, now)]));
            }
            out.push(sum(
                "weir_tls_handshake_failures_total",
                "TLS connections that never reached HTTP, by listener and reason.",
                family(&self.tls_handshake_failures, &["listener", "reason"], start, now),
            ));
            out.push(sum(
                "weir_tls_reloads_total",
                "Certificate reloads by listener and result.",
                family(&self.tls_reloads, &["listener", "result"], start, now),
            ));
            for (name, text, values) in self.listener_gauges() {
                out.push(gauge(name, text, values.into_iter().map(|(l, v)| point(attrs(&["listener"], &[l]), v, start, now)).collect()));
            }
            out.push(sum(
                "weir_fleet_heartbeats_total",
                "Fleet heartbeats by outcome.",
                family(&self.fleet_heartbeats, &["outcome"], start, now),
            ));
            out.push(sum(
                "weir_fleet_commands_total",
                "Fleet commands answered, by command and outcome.",
                family(&self.fleet_commands, &["command", "outcome"], start, now),
            ));
            out.push(gauge(
                "weir_upstream_state",
                "0 healthy, 1 degraded, 2 open.",
                g.upstreams
                    .iter()
                    .map(|(u, s)| point(attrs(&["upstream"], std::slice::from_ref(u)), upstream_state_value(s), start, now))
                    .collect(),
            ));
            out
        }
    }
}

/// A gauge with a `listener` label: (name, help, listener → value).
type ListenerGauge = (&'static str, &'static str, Vec<(String, f64)>);

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

/// Values read from their owners at scrape time.
#[derive(Debug, Default)]
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
    /// (exported, dropped) trace spans.
    pub trace_spans: (u64, u64),
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
    fn histograms_are_cumulative() {
        let h = Histogram::new(&[1.0, 2.0]);
        h.observe(0.5);
        h.observe(1.5);
        h.observe(5.0);
        let mut s = String::new();
        h.render(&mut s, "x", "");
        assert!(s.contains("x_bucket{le=\"1\"} 1\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"2\"} 2\n"), "{s}");
        assert!(s.contains("x_bucket{le=\"+Inf\"} 3\n"), "{s}");
        assert!(s.contains("x_count 3\n"), "{s}");
    }
}
