//! `/metrics` parses as Prometheus text (with a parser, not substrings) and
//! its counters move as triggers flow.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;
use weir::config::TenantConfig;
use weir_test_plugins as wasm;

use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, eventually};

/// Scrapes and parses; returns (metric name, sorted labels) → value.
/// (metric name, sorted labels) → value.
pub(crate) type Samples = BTreeMap<(String, Vec<(String, String)>), f64>;

pub(crate) async fn scrape(c: &Client, gw: &Gateway) -> Samples {
    let r = c.get(&gw.admin_url("/metrics"), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK);
    let text = String::from_utf8(r.body.to_vec()).expect("utf8");
    let lines = text.lines().map(|l| Ok(l.to_string()));
    let scrape = prometheus_parse::Scrape::parse(lines).expect("valid Prometheus text format");
    let mut out = BTreeMap::new();
    for s in scrape.samples {
        let mut labels: Vec<(String, String)> = s.labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        labels.sort();
        let v = match s.value {
            prometheus_parse::Value::Counter(v) | prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Untyped(v) => v,
            prometheus_parse::Value::Histogram(h) => h.iter().map(|b| b.count).fold(0.0, f64::max),
            prometheus_parse::Value::Summary(_) => 0.0,
        };
        out.insert((s.metric, labels), v);
    }
    out
}

pub(crate) fn get(m: &Samples, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut want: Vec<(String, String)> = labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    want.sort();
    m.get(&(name.to_string(), want)).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_as_triggers_flow_and_labels_stay_bounded() {
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| {
        c.forward.upstreams = vec![up.url()];
        c.telemetry.max_tenant_labels = 3;
        c.tenants.push(TenantConfig { id: "trap".into(), plugin: Some(PathBuf::from(wasm::TRAP)), ..TenantConfig::default() });
        c.tenants.push(TenantConfig { id: "late".into(), ..TenantConfig::default() });
    })
    .await;
    let c = Client::new();
    let before = scrape(&c, &gw).await;
    assert_eq!(get(&before, "weir_delivered_total", &[]), 0.0);
    assert!(get(&before, "weir_store_budget_bytes", &[]) > 0.0);

    for _ in 0..3 {
        c.post(&gw.ingest_url("/ingest/acme/m"), &[], "{}").await;
    }
    c.post(&gw.ingest_url("/ingest/acme/m"), &[("idempotency-key", "k")], "{}").await;
    c.post(&gw.ingest_url("/ingest/acme/m"), &[("idempotency-key", "k")], "{}").await;
    c.post(&gw.ingest_url("/ingest/nobody/m"), &[], "{}").await;
    c.post(&gw.ingest_url("/ingest/acme/m"), &[], vec![b'x'; 70_000]).await;
    c.post(&gw.ingest_url("/ingest/trap/m"), &[], "{}").await;
    c.post(&gw.ingest_url("/ingest/globex/m"), &[], "{}").await;
    // A fourth tenant label is over the cap of 3: it counts as `other`.
    c.post(&gw.ingest_url("/ingest/late/m"), &[], "{}").await;

    eventually(Duration::from_secs(20), || async {
        let s = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
        (s["pending"] == 0).then_some(())
    })
    .await;
    let m = scrape(&c, &gw).await;
    assert_eq!(get(&m, "weir_ingest_requests_total", &[("tenant", "acme"), ("outcome", "accepted")]), 4.0);
    assert_eq!(get(&m, "weir_ingest_requests_total", &[("tenant", "acme"), ("outcome", "duplicate")]), 1.0);
    assert_eq!(get(&m, "weir_ingest_requests_total", &[("tenant", "acme"), ("outcome", "too_large")]), 1.0);
    assert_eq!(get(&m, "weir_ingest_requests_total", &[("tenant", "unknown"), ("outcome", "unknown_tenant")]), 1.0);
    assert_eq!(get(&m, "weir_ingest_requests_total", &[("tenant", "trap"), ("outcome", "quarantined")]), 1.0);
    assert_eq!(
        get(&m, "weir_ingest_requests_total", &[("tenant", "other"), ("outcome", "accepted")]),
        2.0,
        "globex and late are over the cap"
    );
    assert_eq!(get(&m, "weir_plugin_failures_total", &[("tenant", "trap"), ("kind", "trap")]), 1.0);
    assert_eq!(get(&m, "weir_delivered_total", &[]), 6.0);
    assert_eq!(get(&m, "weir_forward_attempts_total", &[("upstream", &up.url()), ("outcome", "delivered")]), 6.0);
    assert_eq!(get(&m, "weir_triggers", &[("state", "quarantined")]), 1.0);
    assert_eq!(get(&m, "weir_upstream_state", &[("upstream", &up.url())]), 0.0);
    assert!(get(&m, "weir_commit_batch_size_count", &[]) >= 1.0);
    assert!(get(&m, "weir_store_used_bytes", &[]) > 0.0);
    assert_eq!(get(&m, "weir_ready", &[]), 1.0);
    // No trigger ids or paths in any label.
    for (_, labels) in m.keys() {
        for (k, v) in labels {
            assert!(!v.starts_with("/") && v.len() != 26, "label {k}={v} looks like a path or an id");
        }
    }
    gw.stop().await;
}

/// Every metric the alert rules and the docs name exists on `/metrics`, so
/// neither can drift into naming a series that never comes.
#[tokio::test]
async fn alert_rules_and_docs_name_only_metrics_that_exist() {
    let gw = Gateway::start().await;
    let page = Client::new().get(&gw.admin_url("/metrics"), Some(TOKEN)).await;
    let text = String::from_utf8(page.body.to_vec()).expect("utf8");
    let declared: std::collections::BTreeSet<&str> =
        text.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    for (file, body) in [
        ("examples/alerts/weir.rules.yml", include_str!("../../examples/alerts/weir.rules.yml")),
        ("docs/observability.md", include_str!("../../docs/observability.md")),
        ("docs/tls.md", include_str!("../../docs/tls.md")),
    ] {
        let mut named = 0;
        for word in body.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("weir_") && !w.ends_with('_')) {
            let base = ["_count", "_bucket", "_sum"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(word);
            assert!(declared.contains(base) || declared.contains(word), "{file} names {word}, which /metrics does not have");
            named += 1;
        }
        assert!(named > 0, "{file} names no metric");
    }
    gw.stop().await;
}

/// Metrics name every tenant, and tenants reach the admin listener with their
/// own tokens: scraping needs the operator token or the dedicated metrics
/// token, which opens nothing else.
#[tokio::test]
async fn scraping_needs_the_operator_or_the_metrics_token() {
    const METRICS_TOKEN: &str = "scrape-only-token";
    let gw = Gateway::start_with("", |c| {
        c.admin.metrics_token = Some(METRICS_TOKEN.into());
        c.tenants[0].token = Some("acme-own-token".into());
    })
    .await;
    let c = Client::new();
    let page = |token: Option<&'static str>| {
        let (c, url) = (c.clone(), gw.admin_url("/metrics"));
        async move { c.get(&url, token).await }
    };
    let anonymous = page(None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED);
    assert!(!String::from_utf8_lossy(&anonymous.body).contains("globex"), "no tenant name leaks to an anonymous caller");
    assert_eq!(page(Some("acme-own-token")).await.status, StatusCode::FORBIDDEN, "a tenant token does not scrape");
    assert_eq!(page(Some("wrong")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(page(Some(TOKEN)).await.status, StatusCode::OK);
    let scraped = page(Some(METRICS_TOKEN)).await;
    assert_eq!(scraped.status, StatusCode::OK);
    assert!(String::from_utf8_lossy(&scraped.body).contains("# TYPE weir_ready gauge"));
    // The metrics token opens nothing else.
    assert_eq!(c.get(&gw.admin_url("/v1/status"), Some(METRICS_TOKEN)).await.status, StatusCode::UNAUTHORIZED);
    gw.stop().await;
}
