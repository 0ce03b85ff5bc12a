//! Traces: one trace per trigger, from ingest to every forward attempt,
//! exported over OTLP/HTTP (protobuf) when `[telemetry] otlp_endpoint` is set.
//!
//! A small span recorder over the OpenTelemetry protocol types
//! (`opentelemetry-proto`): spans are plain values ended by the code that
//! owns the work and queued to one exporter task. The queue is bounded;
//! when the collector is slow or down, spans are dropped and counted
//! (`weir_trace_spans_dropped_total`), never queued without bound, and the
//! trigger path never waits on export. With no endpoint the tracer is off:
//! no task, no socket, no allocation per trigger.
//!
//! Why not the OpenTelemetry SDK's batch exporter: it exports from its own
//! thread without a tokio reactor, so its hyper client cannot run there, and
//! its blocking client pulls in OpenSSL; this exporter runs on the gateway's
//! runtime with the hyper client Weir already has.
//!
//! The exporter outlives the shutdown signal: draining requests and the
//! forwarder's last attempts still end spans, so it stops only when
//! [`Tracer::close`] asks, after them, and exports what is queued first.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as ProtoSpan, Status, status};
use prost::Message;
use rand::RngCore;
use tokio::sync::mpsc;

use crate::config::TelemetryConfig;

const QUEUE: usize = 8192;
const BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

/// W3C trace context of a span: what `traceparent` carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub sampled: bool,
}

impl SpanContext {
    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; `None` for anything else.
    pub fn from_traceparent(s: &str) -> Option<SpanContext> {
        let mut parts = s.trim().split('-');
        let (version, trace, span, flags) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 || flags.len() != 2 {
            return None;
        }
        let mut trace_id = [0u8; 16];
        let mut span_id = [0u8; 8];
        hex_into(trace, &mut trace_id)?;
        hex_into(span, &mut span_id)?;
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(SpanContext { trace_id, span_id, sampled: flags & 1 == 1 })
    }

    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", hex(&self.trace_id), hex(&self.span_id), u8::from(self.sampled))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn hex_into(s: &str, out: &mut [u8]) -> Option<()> {
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Internal = 1,
    Server = 2,
    Client = 3,
}

/// A span being recorded. Ending it hands it to the exporter.
pub struct Span {
    pub ctx: SpanContext,
    parent: Option<[u8; 8]>,
    name: &'static str,
    kind: Kind,
    start_ns: u64,
    attributes: Vec<KeyValue>,
    error: Option<String>,
}

impl Span {
    pub fn attr(&mut self, key: &'static str, value: impl Into<AttrValue>) {
        let value = match value.into() {
            AttrValue::S(s) => any_value::Value::StringValue(s),
            AttrValue::I(i) => any_value::Value::IntValue(i),
            AttrValue::B(b) => any_value::Value::BoolValue(b),
        };
        self.attributes.push(KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }), ..Default::default() });
    }

    pub fn error(&mut self, message: impl Into<String>) {
        self.error = Some(message.into());
    }
}

pub enum AttrValue {
    S(String),
    I(i64),
    B(bool),
}

impl From<&str> for AttrValue {
    fn from(s: &str) -> Self {
        AttrValue::S(s.to_string())
    }
}
impl From<String> for AttrValue {
    fn from(s: String) -> Self {
        AttrValue::S(s)
    }
}
impl From<u64> for AttrValue {
    fn from(i: u64) -> Self {
        AttrValue::I(i64::try_from(i).unwrap_or(i64::MAX))
    }
}
impl From<bool> for AttrValue {
    fn from(b: bool) -> Self {
        AttrValue::B(b)
    }
}

/// Hands out spans; cheap to clone. `Tracer::off()` records nothing.
#[derive(Clone, Default)]
pub struct Tracer {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    tx: mpsc::Sender<ProtoSpan>,
    dropped: Arc<AtomicU64>,
    exported: Arc<AtomicU64>,
    /// Taken by [`Tracer::close`]: tells the exporter to flush and stop, and its task.
    exporter: std::sync::Mutex<Option<(tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

impl Tracer {
    pub fn off() -> Tracer {
        Tracer { inner: None }
    }

    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Starts the exporter task when an endpoint is configured. It runs
    /// until [`Tracer::close`].
    pub fn start(config: &TelemetryConfig) -> Tracer {
        let Some(endpoint) = config.otlp_endpoint.clone() else { return Tracer::off() };
        let (tx, rx) = mpsc::channel(QUEUE);
        let exported = Arc::new(AtomicU64::new(0));
        let dropped = Arc::new(AtomicU64::new(0));
        let resource = resource(config);
        let (close, closed) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(export_loop(endpoint, resource, rx, exported.clone(), dropped.clone(), closed));
        let exporter = std::sync::Mutex::new(Some((close, task)));
        Tracer { inner: Some(Arc::new(Inner { tx, dropped, exported, exporter })) }
    }

    /// Exports every span already ended, then stops the exporter; waits for
    /// it until `deadline`. Spans ended afterwards are dropped and counted.
    /// Returns false when the deadline came first.
    pub async fn close(&self, deadline: tokio::time::Instant) -> bool {
        let Some(inner) = &self.inner else { return true };
        let exporter = inner.exporter.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some((close, task)) = exporter else { return true };
        let _ = close.send(());
        tokio::time::timeout_at(deadline, task).await.is_ok()
    }

    /// A new span: a child of `parent`, or the root of a new trace.
    pub fn span(&self, name: &'static str, kind: Kind, parent: Option<&SpanContext>) -> Option<Span> {
        self.inner.as_ref()?;
        let mut rng = rand::rng();
        let mut span_id = [0u8; 8];
        rng.fill_bytes(&mut span_id);
        let ctx = match parent {
            Some(p) => SpanContext { trace_id: p.trace_id, span_id, sampled: true },
            None => {
                let mut trace_id = [0u8; 16];
                rng.fill_bytes(&mut trace_id);
                SpanContext { trace_id, span_id, sampled: true }
            }
        };
        Some(Span { ctx, parent: parent.map(|p| p.span_id), name, kind, start_ns: now_ns(), attributes: Vec::new(), error: None })
    }

    /// Ends the span now and queues it; drops (and counts) it if the queue is full.
    pub fn end(&self, span: Option<Span>) {
        let (Some(inner), Some(span)) = (&self.inner, span) else { return };
        let proto = ProtoSpan {
            trace_id: span.ctx.trace_id.to_vec(),
            span_id: span.ctx.span_id.to_vec(),
            parent_span_id: span.parent.map(|p| p.to_vec()).unwrap_or_default(),
            name: span.name.into(),
            kind: span.kind as i32,
            start_time_unix_nano: span.start_ns,
            end_time_unix_nano: now_ns(),
            attributes: span.attributes,
            status: Some(match span.error {
                Some(message) => Status { message, code: status::StatusCode::Error as i32 },
                None => Status { message: String::new(), code: status::StatusCode::Unset as i32 },
            }),
            ..Default::default()
        };
        if inner.tx.try_send(proto).is_err() {
            inner.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// (exported, dropped) span counts, for metrics.
    pub fn counts(&self) -> (u64, u64) {
        self.inner.as_ref().map_or((0, 0), |i| (i.exported.load(Ordering::Relaxed), i.dropped.load(Ordering::Relaxed)))
    }
}

/// The OTLP resource: `service.name` and `[telemetry.resource]`.
pub fn resource(config: &TelemetryConfig) -> Resource {
    let mut attributes = vec![kv("service.name", &config.service_name)];
    for (k, v) in &config.resource {
        attributes.push(kv(k, v));
    }
    Resource { attributes, ..Default::default() }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue { key: k.into(), value: Some(AnyValue { value: Some(any_value::Value::StringValue(v.into())) }), ..Default::default() }
}

pub(crate) fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

async fn export_loop(
    endpoint: String,
    resource: Resource,
    mut rx: mpsc::Receiver<ProtoSpan>,
    exported: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
    mut closed: tokio::sync::oneshot::Receiver<()>,
) {
    let client = match otlp_client() {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot set up the OTLP trace export; no spans will be sent");
            return;
        }
    };
    let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
    let mut batch = Vec::with_capacity(BATCH);
    let mut last_error_logged = false;
    loop {
        let closing = tokio::select! {
            got = rx.recv() => match got {
                Some(span) => { batch.push(span); false }
                None => true,
            },
            _ = tokio::time::sleep(FLUSH_EVERY) => false,
            _ = &mut closed => true,
        };
        if closing {
            // Everything ended before close was asked goes out, in batches.
            while let Ok(span) = rx.try_recv() {
                batch.push(span);
                if batch.len() >= BATCH {
                    export(&client, &url, &resource, &mut batch, &exported, &dropped, &mut last_error_logged).await;
                }
            }
        }
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(s) => batch.push(s),
                Err(_) => break,
            }
        }
        if !batch.is_empty() && (batch.len() >= BATCH || closing || rx.is_empty()) {
            export(&client, &url, &resource, &mut batch, &exported, &dropped, &mut last_error_logged).await;
        }
        if closing {
            return;
        }
    }
}

/// Sends one batch (and empties it); a failure drops and counts its spans.
async fn export(
    client: &OtlpClient,
    url: &str,
    resource: &Resource,
    batch: &mut Vec<ProtoSpan>,
    exported: &AtomicU64,
    dropped: &AtomicU64,
    last_error_logged: &mut bool,
) {
    let n = batch.len() as u64;
    let body = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource.clone()),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope { name: "weir".into(), version: env!("CARGO_PKG_VERSION").into(), ..Default::default() }),
                spans: std::mem::take(batch),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    match send(client, url, body).await {
        Ok(()) => {
            exported.fetch_add(n, Ordering::Relaxed);
            *last_error_logged = false;
        }
        Err(e) => {
            // Dropped, not retried: telemetry must never grow without bound.
            dropped.fetch_add(n, Ordering::Relaxed);
            if !*last_error_logged {
                tracing::warn!(endpoint = %url, error = %e, spans = n, "trace export failed; spans dropped");
                *last_error_logged = true;
            }
        }
    }
}

/// The client both OTLP exports use: http:// or https:// (verified against
/// the system's roots; `SSL_CERT_FILE` adds a private CA).
pub type OtlpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

pub fn otlp_client() -> Result<OtlpClient, crate::tls::TlsError> {
    let tls = crate::tls::upstream::client_tls(None, None, "telemetry")?;
    Ok(Client::builder(TokioExecutor::new()).build(crate::tls::upstream::connector(tls, HttpConnector::new())))
}

/// POSTs one OTLP/HTTP protobuf export.
pub async fn send(client: &OtlpClient, url: &str, body: Vec<u8>) -> Result<(), String> {
    let req = http::Request::post(url)
        .header("content-type", "application/x-protobuf")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp =
        tokio::time::timeout(EXPORT_TIMEOUT, client.request(req)).await.map_err(|_| "timed out".to_string())?.map_err(|e| e.to_string())?;
    if resp.status().is_success() { Ok(()) } else { Err(format!("collector answered {}", resp.status())) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traceparent_round_trips_and_rejects_garbage() {
        let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        let ctx = SpanContext::from_traceparent(tp).expect("valid");
        assert_eq!(ctx.traceparent(), tp);
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-xyz-b7ad6b7169203331-01",
        ] {
            assert!(SpanContext::from_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn an_off_tracer_records_nothing() {
        let t = Tracer::off();
        assert!(t.span("x", Kind::Internal, None).is_none());
        t.end(None);
        assert_eq!(t.counts(), (0, 0));
    }
}
