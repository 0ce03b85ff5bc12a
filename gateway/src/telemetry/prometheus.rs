//! The Prometheus text format (0.0.4) of what the SDK collected: `# HELP`
//! and `# TYPE` for every metric of the catalogue (seen or not), then its
//! series, sorted by labels. Only the format lives here; the values and
//! their aggregation are the SDK's.
//!
//! Why not `opentelemetry-prometheus`: it renames (unit and `_total`
//! suffixes, `otel_scope_*` labels, `target_info`), it omits instruments
//! that have seen no event yet (the docs and alert rules rely on every
//! name from the start), and it is a second reader, so every measurement
//! would be aggregated twice; its text comes from the `prometheus` crate.

use std::collections::HashMap;
use std::fmt::{Display, Write as _};

use opentelemetry::KeyValue;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};

use super::metrics::CATALOGUE;

pub fn render(rm: &ResourceMetrics) -> String {
    let by_name: HashMap<&str, &Metric> = rm.scope_metrics().flat_map(|s| s.metrics()).map(|m| (m.name(), m)).collect();
    let mut out = String::with_capacity(8 * 1024);
    for (name, kind, help) in CATALOGUE {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
        if let Some(m) = by_name.get(name) {
            series(&mut out, name, m.data());
        }
    }
    out
}

fn series(out: &mut String, name: &str, data: &AggregatedMetrics) {
    match data {
        AggregatedMetrics::U64(d) => points(out, name, d),
        AggregatedMetrics::I64(d) => points(out, name, d),
        AggregatedMetrics::F64(d) => points(out, name, d),
    }
}

fn points<T: Display + Copy>(out: &mut String, name: &str, data: &MetricData<T>) {
    // (labels, the series' lines), sorted by labels so the page is stable.
    let mut lines: Vec<(String, String)> = Vec::new();
    let mut sample = |l: String, value: T| {
        let text = format!("{name}{l} {value}\n");
        lines.push((l, text));
    };
    match data {
        MetricData::Sum(s) => s.data_points().for_each(|p| sample(labels(p.attributes(), None), p.value())),
        MetricData::Gauge(g) => g.data_points().for_each(|p| sample(labels(p.attributes(), None), p.value())),
        MetricData::Histogram(h) => {
            for p in h.data_points() {
                let (l, mut text, mut cumulative) = (labels(p.attributes(), None), String::new(), 0);
                for (bound, count) in p.bounds().zip(p.bucket_counts()) {
                    cumulative += count;
                    let _ = writeln!(text, "{name}_bucket{} {cumulative}", labels(p.attributes(), Some(&bound.to_string())));
                }
                let _ = writeln!(text, "{name}_bucket{} {}", labels(p.attributes(), Some("+Inf")), p.count());
                let _ = writeln!(text, "{name}_sum{l} {}\n{name}_count{l} {}", p.sum(), p.count());
                lines.push((l, text));
            }
        }
        MetricData::ExponentialHistogram(_) => {}
    }
    lines.sort();
    out.extend(lines.into_iter().map(|(_, text)| text));
}

/// The order labels are written in (the order Weir always wrote them; the
/// SDK keeps attributes sorted by key): who, then what happened.
const LABEL_ORDER: &[&str] = &["tenant", "upstream", "listener", "command", "kind", "state", "outcome", "reason", "result"];

/// `{k="v",…}` (in [`LABEL_ORDER`], values escaped), with `le` last when
/// given; empty when there are no labels.
fn labels<'a>(attrs: impl Iterator<Item = &'a KeyValue>, le: Option<&str>) -> String {
    let mut pairs: Vec<(String, String)> = attrs.map(|kv| (kv.key.to_string(), kv.value.to_string())).collect();
    let rank = |k: &str| LABEL_ORDER.iter().position(|l| *l == k).unwrap_or(LABEL_ORDER.len());
    pairs.sort_by(|a, b| (rank(&a.0), &a.0).cmp(&(rank(&b.0), &b.0)));
    if let Some(le) = le {
        pairs.push(("le".into(), le.into()));
    }
    if pairs.is_empty() {
        return String::new();
    }
    let body: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
    format!("{{{}}}", body.join(","))
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::metrics::{Gauges, Metrics};

    #[test]
    fn histograms_are_cumulative_and_labels_escaped() {
        let m = Metrics::new(10);
        for ms in [0.05, 0.2, 20_000.0] {
            m.ingest("a\"b", "accepted", Duration::from_secs_f64(ms / 1000.0));
        }
        let page = m.render(Gauges::default());
        assert!(page.contains("weir_ingest_duration_seconds_bucket{le=\"0.0001\"} 1\n"), "{page}");
        assert!(page.contains("weir_ingest_duration_seconds_bucket{le=\"0.00025\"} 2\n"), "{page}");
        assert!(page.contains("weir_ingest_duration_seconds_bucket{le=\"+Inf\"} 3\n"), "{page}");
        assert!(page.contains("weir_ingest_duration_seconds_count 3\n"), "{page}");
        assert!(page.contains("weir_ingest_requests_total{tenant=\"a\\\"b\",outcome=\"accepted\"} 3\n"), "labels in Weir's order: {page}");
        assert!(page.contains("# TYPE weir_fleet_commands_total counter\n"), "declared before any event: {page}");
        assert!(page.contains("weir_dead_total 0\n"), "an unlabelled counter shows 0 from the start: {page}");
    }
}
