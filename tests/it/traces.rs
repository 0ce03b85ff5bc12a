//! One trace per trigger: real OTLP receivers, over HTTP (protobuf) and over
//! gRPC (a tonic service), decode what the gateway exports and check the
//! spans' parent-child links, the continued incoming trace, sampling, and
//! the traceparent the upstream receives.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::{BodyExt, Full};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{MetricsService, MetricsServiceServer};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;
use weir::config::{OtlpProtocol, TenantConfig};
use weir_test_plugins as wasm;

use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, eventually};

/// What a receiver got: every span, the request count, and per metric name
/// the sum of its number data points in the latest export.
#[derive(Clone, Default)]
struct Got {
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<usize>>,
    metrics: Arc<Mutex<BTreeMap<String, f64>>>,
}

impl Got {
    fn traces(&self, decoded: ExportTraceServiceRequest) {
        *self.requests.lock().expect("lock") += 1;
        for rs in decoded.resource_spans {
            let attrs = rs.resource.map(|r| r.attributes).unwrap_or_default();
            assert!(attrs.iter().any(|a| a.key == "service.name"), "service.name resource attribute");
            for ss in rs.scope_spans {
                self.spans.lock().expect("lock").extend(ss.spans);
            }
        }
    }

    fn metrics(&self, decoded: ExportMetricsServiceRequest) {
        use opentelemetry_proto::tonic::metrics::v1::{metric::Data, number_data_point::Value};
        *self.requests.lock().expect("lock") += 1;
        let mut latest = self.metrics.lock().expect("lock");
        for rm in decoded.resource_metrics {
            for sm in rm.scope_metrics {
                for metric in sm.metrics {
                    let points = match metric.data {
                        Some(Data::Sum(s)) => s.data_points,
                        Some(Data::Gauge(g)) => g.data_points,
                        _ => continue,
                    };
                    let total = points
                        .iter()
                        .filter_map(|p| match p.value {
                            Some(Value::AsDouble(v)) => Some(v),
                            Some(Value::AsInt(i)) => Some(i as f64),
                            None => None,
                        })
                        .sum();
                    latest.insert(metric.name, total);
                }
            }
        }
    }
}

/// A loopback OTLP receiver (HTTP/protobuf or gRPC) keeping every span.
pub(crate) struct Receiver {
    pub(crate) addr: std::net::SocketAddr,
    got: Got,
}

impl Receiver {
    /// OTLP/HTTP: protobuf bodies POSTed to `/v1/traces` and `/v1/metrics`.
    pub(crate) async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let got = Got::default();
        let g = got.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let g = g.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let g = g.clone();
                        async move {
                            assert_eq!(req.headers()["content-type"], "application/x-protobuf");
                            let path = req.uri().path().to_string();
                            let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            match path.as_str() {
                                "/v1/metrics" => g.metrics(ExportMetricsServiceRequest::decode(body).expect("valid OTLP metrics protobuf")),
                                "/v1/traces" => g.traces(ExportTraceServiceRequest::decode(body).expect("valid OTLP protobuf")),
                                other => panic!("OTLP/HTTP request to {other}"),
                            }
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::new())))
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                });
            }
        });
        Receiver { addr, got }
    }

    /// OTLP/gRPC: opentelemetry-proto's tonic services over HTTP/2 (h2c).
    pub(crate) async fn start_grpc() -> Receiver {
        Receiver::start_grpc_with(None).await
    }

    /// OTLP/gRPC, over TLS when `tls` is given (HTTP/2 by ALPN).
    pub(crate) async fn start_grpc_with(tls: Option<rustls::ServerConfig>) -> Receiver {
        use tonic::codegen::Service as _;
        let tls = tls.map(|c| tokio_rustls::TlsAcceptor::from(Arc::new(c)));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let got = Got::default();
        let (traces, metrics) = (TraceServiceServer::new(got.clone()), MetricsServiceServer::new(got.clone()));
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (traces, metrics, tls) = (traces.clone(), metrics.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (mut traces, mut metrics) = (traces.clone(), metrics.clone());
                        async move {
                            if req.uri().path().starts_with("/opentelemetry.proto.collector.trace.v1.TraceService/") {
                                traces.call(req).await
                            } else {
                                metrics.call(req).await
                            }
                        }
                    });
                    let http2 = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new());
                    match tls {
                        Some(tls) => {
                            let Ok(stream) = tls.accept(stream).await else { return };
                            let _ = http2.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                        }
                        None => {
                            let _ = http2.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
                        }
                    }
                });
            }
        });
        Receiver { addr, got }
    }

    pub(crate) fn spans(&self) -> Vec<Span> {
        self.got.spans.lock().expect("lock").clone()
    }

    pub(crate) fn metrics(&self) -> BTreeMap<String, f64> {
        self.got.metrics.lock().expect("lock").clone()
    }

    fn requests(&self) -> usize {
        *self.got.requests.lock().expect("lock")
    }
}

#[tonic::async_trait]
impl TraceService for Got {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.traces(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

#[tonic::async_trait]
impl MetricsService for Got {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        self.metrics(request.into_inner());
        Ok(tonic::Response::new(ExportMetricsServiceResponse::default()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub(crate) fn attr(s: &Span, key: &str) -> Option<String> {
    use opentelemetry_proto::tonic::common::v1::any_value::Value;
    s.attributes.iter().find(|a| a.key == key).and_then(|a| a.value.as_ref()).and_then(|v| match &v.value {
        Some(Value::StringValue(s)) => Some(s.clone()),
        Some(Value::IntValue(i)) => Some(i.to_string()),
        _ => None,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_is_one_trace_from_ingest_to_the_upstream() {
    one_trace_from_ingest_to_the_upstream(Receiver::start().await, OtlpProtocol::Http).await;
}

/// The same tree over OTLP/gRPC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_is_one_trace_from_ingest_to_the_upstream_over_grpc() {
    one_trace_from_ingest_to_the_upstream(Receiver::start_grpc().await, OtlpProtocol::Grpc).await;
}

async fn one_trace_from_ingest_to_the_upstream(otlp: Receiver, protocol: OtlpProtocol) {
    let up = Upstream::start(Mode::Ok).await;
    up.script(&[503]); // one failed attempt, then delivery: two forward spans
    let gw = Gateway::start_with("", |c| {
        c.forward.upstreams = vec![up.url()];
        c.forward.backoff_base_ms = 20;
        c.telemetry.otlp_endpoint = Some(format!("http://{}", otlp.addr));
        c.telemetry.otlp_protocol = protocol;
        c.telemetry.resource.insert("weir.pop".into(), "test-pop".into());
        c.telemetry.otlp_metrics_interval_secs = 1;
        c.tenants.push(TenantConfig { id: "traced".into(), plugin: Some(PathBuf::from(wasm::PASSTHROUGH)), ..TenantConfig::default() });
    })
    .await;
    let c = Client::new();
    let incoming_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let incoming_span = "00f067aa0ba902b7";
    let tp = format!("00-{incoming_trace}-{incoming_span}-01");
    let r = c.post(&gw.ingest_url("/ingest/traced/github"), &[("traceparent", &tp)], "{}").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json()["id"].as_str().expect("id").to_string();
    up.wait_until(Duration::from_secs(20), |got| got.len() >= 2).await;

    let spans = eventually(Duration::from_secs(20), || async {
        let spans = otlp.spans();
        (spans.iter().filter(|s| s.name == "forward").count() >= 2 && spans.iter().any(|s| s.name == "ingest")).then_some(spans)
    })
    .await;
    let find = |name: &str| spans.iter().find(|s| s.name == name).cloned().unwrap_or_else(|| panic!("no {name} span in {spans:?}"));
    let ingest = find("ingest");
    let plugin = find("plugin");
    let commit = find("store.commit");
    assert!(spans.iter().all(|s| hex(&s.trace_id) == incoming_trace), "every span continues the sender's trace");
    assert_eq!(hex(&ingest.parent_span_id), incoming_span, "ingest is a child of the sender's span");
    assert_eq!(plugin.parent_span_id, ingest.span_id);
    assert_eq!(commit.parent_span_id, ingest.span_id);
    assert!(attr(&commit, "weir.commit.batch_size").is_some());
    assert_eq!(attr(&ingest, "weir.trigger_id").as_deref(), Some(id.as_str()));
    assert_eq!(attr(&ingest, "http.response.status_code").as_deref(), Some("202"));
    let forwards: Vec<&Span> = spans.iter().filter(|s| s.name == "forward").collect();
    for f in &forwards {
        assert_eq!(f.parent_span_id, ingest.span_id, "forward attempts join the trigger's trace");
        assert_eq!(attr(f, "weir.trigger_id").as_deref(), Some(id.as_str()));
    }
    // The upstream got a traceparent of this trace, naming the attempt's span.
    let got = up.received();
    for (i, g) in got.iter().enumerate() {
        let sent = g.header("traceparent");
        assert!(sent.starts_with(&format!("00-{incoming_trace}-")), "attempt {i}: {sent}");
        let span_id = &sent[36..52];
        assert!(forwards.iter().any(|f| hex(&f.span_id) == span_id), "attempt {i}'s traceparent names a forward span");
    }
    let m = c.get(&gw.admin_url("/metrics"), Some(TOKEN)).await;
    assert!(String::from_utf8_lossy(&m.body).contains("weir_trace_spans_exported_total"));
    // The same instruments arrive over OTLP.
    let pushed = eventually(Duration::from_secs(20), || async {
        let m = otlp.metrics();
        (m.get("weir_delivered_total").copied().unwrap_or(0.0) >= 1.0).then_some(m)
    })
    .await;
    assert_eq!(pushed.get("weir_ingest_requests_total").copied(), Some(1.0));
    assert!(pushed.contains_key("weir_store_budget_bytes"));

    gw.stop().await;
}

#[tokio::test]
async fn with_telemetry_off_nothing_connects_and_traceparent_passes_through() {
    let otlp = Receiver::start().await;
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| c.forward.upstreams = vec![up.url()]).await;
    let c = Client::new();
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    for _ in 0..5 {
        c.post(&gw.ingest_url("/ingest/acme/x"), &[("traceparent", tp)], "{}").await;
    }
    up.wait_until(Duration::from_secs(20), |got| got.len() >= 5).await;
    assert!(up.received().iter().all(|g| g.header("traceparent") == tp), "the sender's traceparent, unchanged");
    let dir = gw.stop().await;
    drop(dir);
    assert_eq!(otlp.requests(), 0, "no export without an endpoint");
}

/// At `trace_sample_ratio = 0` no new trace is recorded, yet a trigger that
/// arrives with a sampled `traceparent` is kept whole (ingest to forward),
/// one with an unsampled `traceparent` is not, and every upstream request
/// still carries a `traceparent` of its trigger's trace naming the attempt,
/// flagged as the trace was sampled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_ratio_zero_only_a_sampled_incoming_trace_is_recorded() {
    let otlp = Receiver::start().await;
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| {
        c.forward.upstreams = vec![up.url()];
        c.telemetry.otlp_endpoint = Some(format!("http://{}", otlp.addr));
        c.telemetry.trace_sample_ratio = 0.0;
    })
    .await;
    let c = Client::new();
    let kept = "4bf92f3577b34da6a3ce929d0e0e4736";
    let unsampled = "5bf92f3577b34da6a3ce929d0e0e4737";
    for _ in 0..20 {
        assert_eq!(c.post(&gw.ingest_url("/ingest/acme/x"), &[], "{}").await.status, StatusCode::ACCEPTED);
    }
    let sampled_tp = format!("00-{kept}-00f067aa0ba902b7-01");
    assert_eq!(c.post(&gw.ingest_url("/ingest/acme/x"), &[("traceparent", &sampled_tp)], "{}").await.status, StatusCode::ACCEPTED);
    let unsampled_tp = format!("00-{unsampled}-00f067aa0ba902b7-00");
    assert_eq!(c.post(&gw.ingest_url("/ingest/acme/x"), &[("traceparent", &unsampled_tp)], "{}").await.status, StatusCode::ACCEPTED);
    up.wait_until(Duration::from_secs(20), |got| got.len() >= 22).await;
    // Stopping exports every span already ended: what is absent now was never recorded.
    gw.stop().await;

    let spans = otlp.spans();
    let names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
    assert!(spans.iter().all(|s| hex(&s.trace_id) == kept), "only the sampled incoming trace is recorded: {names:?}");
    for name in ["ingest", "store.commit", "forward"] {
        assert!(spans.iter().any(|s| s.name == name), "the kept trace has its {name} span: {names:?}");
    }
    let received = up.received();
    let mut traces = std::collections::BTreeSet::new();
    for r in &received {
        let tp = r.header("traceparent");
        let (trace, flags) = (&tp[3..35], &tp[53..55]);
        traces.insert(trace.to_string());
        if trace == kept {
            assert_eq!(flags, "01", "{tp}");
            assert!(spans.iter().any(|s| s.name == "forward" && hex(&s.span_id) == tp[36..52]), "{tp} names the recorded attempt");
        } else {
            assert_eq!(flags, "00", "a sampled-out trigger's upstream request says so: {tp}");
        }
    }
    assert!(traces.contains(unsampled), "an unsampled incoming trace continues to the upstream");
    assert_eq!(traces.len(), 22, "each trigger its own trace (sampled out, yet propagated)");
}

/// In the real binary (its own `tracing` subscriber), with the log level at
/// debug for the plugin module: the plugin call's `tracing` spans
/// (`plugin.instantiate`, `plugin.handle`) are bridged into
/// the trigger's trace under its plugin span, the plugin's log line becomes
/// an event of `plugin.handle` and is written with the trace and span ids,
/// and a sampled-out trigger exports nothing yet still logs its trace id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_spans_join_the_trigger_trace_and_log_lines_carry_its_ids() {
    let otlp = Receiver::start().await;
    let up = Upstream::start(Mode::Ok).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!(
        "\n[[tenants]]\nid = \"logged\"\nplugin = \"{}\"\n[tenants.config]\ncount = \"1\"\nsize = \"24\"\n\n\
         [forward]\nupstreams = [\"{}\"]\n\n[telemetry]\notlp_endpoint = \"http://{}\"\n",
        wasm::LOG_FLOOD,
        up.url(),
        otlp.addr
    );
    let config = crate::support::write_config(dir.path(), &extra);
    // The plugin call's steps are debug spans: asked for by the log level.
    let mut weir = crate::support::WeirProcess::start_with_env(&config, &[("RUST_LOG", "info,weir::plugin=debug")]);
    let c = Client::new();
    let (kept, unsampled) = ("4bf92f3577b34da6a3ce929d0e0e4736", "5bf92f3577b34da6a3ce929d0e0e4737");
    for (trace, flags) in [(kept, "01"), (unsampled, "00")] {
        let tp = format!("00-{trace}-00f067aa0ba902b7-{flags}");
        let r = c.post(&format!("http://{}/ingest/logged/x", weir.ingest), &[("traceparent", &tp)], "{}").await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    }
    let message = "flood ".repeat(5)[..24].to_string();
    weir.wait_for_log(&message, Duration::from_secs(20));
    weir.wait_for_log(&message, Duration::from_secs(20));
    up.wait_until(Duration::from_secs(20), |got| got.len() >= 2).await;
    // SIGTERM: every span that ended is exported before the process exits.
    weir.signal(libc::SIGTERM);
    let status = weir.wait_exit(Duration::from_secs(20)).expect("exits after draining");
    assert_eq!(status.code(), Some(0), "log:\n{}", weir.log_text());

    let spans = otlp.spans();
    let names: Vec<(&str, String)> = spans.iter().map(|s| (s.name.as_str(), hex(&s.trace_id))).collect();
    assert!(spans.iter().all(|s| hex(&s.trace_id) == kept), "only the sampled trigger is exported: {names:?}");
    let find = |name: &str| spans.iter().find(|s| s.name == name).cloned().unwrap_or_else(|| panic!("no {name} span in {names:?}"));
    let (plugin, instantiate, handle) = (find("plugin"), find("plugin.instantiate"), find("plugin.handle"));
    for bridged in [&instantiate, &handle] {
        assert_eq!(bridged.parent_span_id, plugin.span_id, "{} is a child of the plugin span", bridged.name);
        assert_eq!(attr(bridged, "weir.tenant").as_deref(), Some("logged"));
    }
    assert!(instantiate.end_time_unix_nano <= handle.start_time_unix_nano, "instantiation comes before the call");
    assert!(handle.events.iter().any(|e| e.name == message), "the plugin's log line is an event of its call: {:?}", handle.events);

    // The log lines: one per trigger, each with its trigger's trace id; the
    // recorded one names the span that wrote it.
    let lines: Vec<serde_json::Value> = weir
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message.as_str())
        .collect();
    let ids: Vec<(&str, &str)> =
        lines.iter().map(|v| (v["trace_id"].as_str().unwrap_or(""), v["span_id"].as_str().unwrap_or(""))).collect();
    assert_eq!(ids.len(), 2, "{lines:?}");
    assert!(ids.contains(&(kept, hex(&handle.span_id).as_str())), "the kept trigger's line names plugin.handle: {ids:?}");
    assert!(ids.iter().any(|(t, s)| *t == unsampled && s.len() == 16), "a sampled-out trigger's line still has its ids: {ids:?}");
}
