//! Traces: one trace per trigger, from ingest to every forward attempt,
//! through the OpenTelemetry SDK, exported over OTLP (HTTP/protobuf or
//! gRPC, `export.rs`) when `[telemetry] otlp_endpoint` is set.
//!
//! Sampling is the SDK's parent-based trace-id ratio
//! (`telemetry.trace_sample_ratio`): a trigger arriving with a sampled
//! `traceparent` is always kept, one arriving with an unsampled one never,
//! the others by their trace id. A trace sampled out still has its ids: the
//! stored and forwarded `traceparent` names its spans, flagged unsampled.
//! With no endpoint the tracer is off: no task, no socket, no span.

use std::sync::Arc;

use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

pub use opentelemetry::trace::SpanContext;

use super::Metrics;
use super::export::{Exporter, SpanQueue};
use crate::config::TelemetryConfig;

/// Parses a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`); `None` for
/// anything invalid. The context is marked remote.
pub fn parse_traceparent(value: &str) -> Option<SpanContext> {
    let cx = TraceContextPropagator::new().extract_with_context(&Context::new(), &Traceparent(Some(value.trim().to_string())));
    let sc = cx.span().span_context().clone();
    sc.is_valid().then_some(sc)
}

/// The `traceparent` naming `sc`.
pub fn traceparent(sc: &SpanContext) -> String {
    let mut out = Traceparent(None);
    TraceContextPropagator::new().inject_context(&Context::new().with_remote_span_context(sc.clone()), &mut out);
    out.0.unwrap_or_default()
}

/// One `traceparent` header, as the propagator reads and writes it.
struct Traceparent(Option<String>);

impl Extractor for Traceparent {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0.as_deref()).flatten()
    }
    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

impl Injector for Traceparent {
    fn set(&mut self, key: &str, value: String) {
        if key == "traceparent" {
            self.0 = Some(value);
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal,
    Server,
    Client,
}

/// A span being recorded (or sampled out: then it only carries its ids).
/// Ending it hands it to the export queue.
pub struct Span(opentelemetry_sdk::trace::Span);

impl Span {
    /// The ids children and the `traceparent` take.
    pub fn context(&self) -> SpanContext {
        self.0.span_context().clone()
    }

    /// False when sampled out: attributes would be thrown away, so callers skip building them.
    pub fn is_recording(&self) -> bool {
        self.0.is_recording()
    }

    pub fn attr(&mut self, key: &'static str, value: impl Into<Attr>) {
        self.0.set_attribute(KeyValue::new(key, value.into().0));
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.0.set_status(Status::error(message.into()));
    }
}

/// An attribute value (`&'static str`, `String`, `u64` or `bool`).
pub struct Attr(Value);

impl From<&'static str> for Attr {
    fn from(s: &'static str) -> Self {
        Attr(Value::from(s))
    }
}
impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr(Value::from(s))
    }
}
impl From<u64> for Attr {
    fn from(i: u64) -> Self {
        Attr(Value::I64(i64::try_from(i).unwrap_or(i64::MAX)))
    }
}
impl From<bool> for Attr {
    fn from(b: bool) -> Self {
        Attr(Value::Bool(b))
    }
}

/// Hands out spans; cheap to clone. `Tracer::off()` records nothing.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tracer: SdkTracer,
    /// Keeps the tracer's pipeline (sampler, queue) alive.
    _provider: SdkTracerProvider,
    queue: SpanQueue,
    /// `tracing` spans join this tracer's traces while it is held.
    bridge: std::sync::Mutex<Option<super::logs::BridgeGuard>>,
}

impl Tracer {
    pub fn off() -> Tracer {
        Tracer { inner: None }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// The tracer for `config`: off without an endpoint (or when the
    /// exporter cannot be built, which is logged); else spans go to an
    /// export task on this runtime until [`Tracer::close`].
    pub fn start(config: &TelemetryConfig, metrics: &Metrics) -> Tracer {
        let Some(endpoint) = &config.otlp_endpoint else { return Tracer::off() };
        let exporter = match Exporter::new(endpoint, &config.otlp_protocol) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the OTLP trace export; no spans will be recorded");
                return Tracer::off();
            }
        };
        let spans = match exporter.spans(resource(config)) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot set up the OTLP trace export; no spans will be recorded");
                return Tracer::off();
            }
        };
        let queue = SpanQueue::start(spans, metrics);
        let provider = SdkTracerProvider::builder()
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(config.trace_sample_ratio))))
            .with_span_processor(queue.processor())
            .with_resource(resource(config))
            .build();
        let tracer = provider.tracer("weir");
        let bridge = std::sync::Mutex::new(super::logs::connect(tracer.clone()));
        Tracer { inner: Some(Arc::new(Inner { tracer, _provider: provider, queue, bridge })) }
    }

    /// Exports every span already ended, then stops the exporter; waits for
    /// it until `deadline`. Spans ended afterwards are dropped and counted.
    /// Returns false when the deadline came first.
    pub async fn close(&self, deadline: tokio::time::Instant) -> bool {
        match &self.inner {
            Some(inner) => {
                // No new bridged spans from here on: they would only be dropped.
                drop(inner.bridge.lock().unwrap_or_else(|e| e.into_inner()).take());
                inner.queue.close(deadline).await
            }
            None => true,
        }
    }

    /// A new span: a child of `parent`, or the root of a new trace; `None` when off.
    pub fn span(&self, name: &'static str, kind: Kind, parent: Option<&SpanContext>) -> Option<Span> {
        let inner = self.inner.as_ref()?;
        let cx = match parent {
            Some(p) => Context::new().with_remote_span_context(p.clone()),
            None => Context::new(),
        };
        let kind = match kind {
            Kind::Internal => SpanKind::Internal,
            Kind::Server => SpanKind::Server,
            Kind::Client => SpanKind::Client,
        };
        Some(Span(inner.tracer.span_builder(name).with_kind(kind).start_with_context(&inner.tracer, &cx)))
    }

    /// Ends the span now and queues it (if sampled).
    pub fn end(&self, span: Option<Span>) {
        if let Some(mut s) = span {
            s.0.end();
        }
    }
}

/// Runs `fut` with `span` (when given) as the current OpenTelemetry context:
/// log lines written meanwhile carry its ids, and `tracing` spans opened
/// inside are bridged as its children (`logs.rs`). Without a span, `fut`
/// keeps the context it is created in, wherever it is polled.
pub fn within<F: std::future::Future>(span: Option<&SpanContext>, fut: F) -> opentelemetry::context::WithContext<F> {
    use opentelemetry::context::FutureExt as _;
    let cx = match span {
        Some(sc) => Context::current().with_remote_span_context(sc.clone()),
        None => Context::current(),
    };
    fut.with_context(cx)
}

/// The OTLP resource: `service.name` and `[telemetry.resource]`.
pub fn resource(config: &TelemetryConfig) -> Resource {
    Resource::builder_empty()
        .with_attribute(KeyValue::new("service.name", config.service_name.clone()))
        .with_attributes(config.resource.iter().map(|(k, v)| KeyValue::new(k.clone(), v.clone())))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let ctx = parse_traceparent(tp).expect("valid");
        assert!(ctx.is_sampled() && ctx.is_remote());
        assert_eq!(traceparent(&ctx), tp);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-xyz-b7ad6b7169203331-01",
        ] {
            assert!(parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_off_tracer_records_nothing() {
        let t = Tracer::off();
        assert!(t.span("x", Kind::Internal, None).is_none());
        t.end(None);
    }
}
