//! OTLP export: `opentelemetry-otlp`'s exporters (HTTP/protobuf or gRPC,
//! `telemetry.otlp_protocol`) over Weir's own hyper-rustls connector (ring,
//! the system's roots; `SSL_CERT_FILE` adds a private CA), driven from
//! Weir's runtime.
//!
//! Why a span queue of our own rather than the SDK's batch processor: that
//! one exports from a thread of its own, outside any tokio reactor, where
//! neither hyper nor tonic can run, and it neither counts the spans it
//! drops nor flushes on Weir's shutdown deadline. [`SpanQueue`] is a
//! bounded channel: a span that finds it full is dropped and counted
//! (`weir_trace_spans_dropped_total`), never waited for, so the trigger path
//! never blocks on export. One task batches and exports; it outlives the
//! shutdown signal (draining requests and the forwarder's last attempts
//! still end spans) and stops only when [`SpanQueue::close`] asks, after
//! them, exporting what is queued first.

use std::sync::Mutex;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use opentelemetry::metrics::Counter;
use opentelemetry_http::hyper::HyperClient;
use opentelemetry_otlp::{MetricExporter, Protocol, SpanExporter, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::trace::{SpanData, SpanExporter as _, SpanProcessor};
use tokio::sync::{mpsc, oneshot};

use super::Metrics;
use crate::config::OtlpProtocol;

const QUEUE: usize = 8192;
const BATCH: usize = 512;
const FLUSH_EVERY: Duration = Duration::from_secs(1);
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("telemetry.otlp_endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("cannot build the OTLP exporter: {0}")]
    Build(#[from] opentelemetry_otlp::ExporterBuildError),
}

/// Where and how the exporters send: the collector's base URL and protocol,
/// with one connection setup shared by traces and metrics.
pub struct Exporter {
    base: String,
    transport: Transport,
}

enum Transport {
    Http(Box<HyperClient<hyper_rustls::HttpsConnector<HttpConnector>>>),
    /// One HTTP/2 channel (connected lazily, reconnecting) for both signals.
    Grpc(tonic::transport::Channel),
}

impl Exporter {
    /// Must run inside the runtime the exports run on (the gRPC channel's worker starts there).
    pub fn new(endpoint: &str, protocol: &OtlpProtocol) -> Result<Exporter, ExportError> {
        let tls = crate::tls::upstream::client_tls(None, None, "telemetry")?;
        let connector = crate::tls::upstream::connector(tls, HttpConnector::new());
        let base = endpoint.trim_end_matches('/').to_string();
        let transport = match protocol {
            OtlpProtocol::Http => Transport::Http(Box::new(HyperClient::new(connector, EXPORT_TIMEOUT, None))),
            OtlpProtocol::Grpc => {
                let endpoint = tonic::transport::Endpoint::from_shared(base.clone())
                    .map_err(|e| ExportError::Endpoint { endpoint: base.clone(), reason: e.to_string() })?;
                Transport::Grpc(endpoint.timeout(EXPORT_TIMEOUT).connect_with_connector_lazy(connector))
            }
        };
        Ok(Exporter { base, transport })
    }

    /// The span exporter, carrying `resource`.
    pub fn spans(&self, resource: Resource) -> Result<SpanExporter, ExportError> {
        let builder = SpanExporter::builder();
        let mut exporter = match &self.transport {
            Transport::Http(client) => builder
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_http_client((**client).clone())
                .with_endpoint(format!("{}/v1/traces", self.base))
                .with_timeout(EXPORT_TIMEOUT)
                .build()?,
            Transport::Grpc(channel) => builder.with_tonic().with_channel(channel.clone()).with_timeout(EXPORT_TIMEOUT).build()?,
        };
        exporter.set_resource(&resource);
        Ok(exporter)
    }

    /// The metrics exporter (the resource comes with what is collected).
    pub fn metrics(&self) -> Result<MetricExporter, ExportError> {
        let builder = MetricExporter::builder();
        Ok(match &self.transport {
            Transport::Http(client) => builder
                .with_http()
                .with_protocol(Protocol::HttpBinary)
                .with_http_client((**client).clone())
                .with_endpoint(format!("{}/v1/metrics", self.base))
                .with_timeout(EXPORT_TIMEOUT)
                .build()?,
            Transport::Grpc(channel) => builder.with_tonic().with_channel(channel.clone()).with_timeout(EXPORT_TIMEOUT).build()?,
        })
    }
}

/// Pushes one collection of the metrics; a failure is logged at debug (the
/// next interval sends fresh cumulative values anyway).
pub async fn push_metrics(exporter: &MetricExporter, metrics: &Metrics, gauges: super::Gauges) {
    let collected = metrics.collect(gauges);
    if let Err(e) = exporter.export(&collected).await {
        tracing::debug!(error = %e, "metrics export failed; the next interval sends fresh values");
    }
}

/// The bounded queue between ended spans and the export task.
pub struct SpanQueue {
    tx: mpsc::Sender<SpanData>,
    dropped: Counter<u64>,
    /// Taken by [`SpanQueue::close`]: tells the task to flush and stop, and the task.
    task: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

impl SpanQueue {
    /// Starts the export task on the current runtime.
    pub fn start(exporter: SpanExporter, metrics: &Metrics) -> SpanQueue {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (close, closed) = oneshot::channel();
        let counts = Counts { exported: metrics.spans_exported.clone(), dropped: metrics.spans_dropped.clone() };
        let task = tokio::spawn(export_loop(exporter, rx, counts, closed));
        SpanQueue { tx, dropped: metrics.spans_dropped.clone(), task: Mutex::new(Some((close, task))) }
    }

    /// What the SDK calls as spans end.
    pub fn processor(&self) -> QueueProcessor {
        QueueProcessor { tx: self.tx.clone(), dropped: self.dropped.clone() }
    }

    /// Exports every span already ended, then stops the task; waits for it
    /// until `deadline`. Returns false when the deadline came first.
    pub async fn close(&self, deadline: tokio::time::Instant) -> bool {
        let task = self.task.lock().unwrap_or_else(|e| e.into_inner()).take();
        let Some((close, task)) = task else { return true };
        let _ = close.send(());
        tokio::time::timeout_at(deadline, task).await.is_ok()
    }
}

/// The SDK side of the queue: `on_end` never blocks.
#[derive(Debug)]
pub struct QueueProcessor {
    tx: mpsc::Sender<SpanData>,
    dropped: Counter<u64>,
}

impl SpanProcessor for QueueProcessor {
    fn on_start(&self, _span: &mut opentelemetry_sdk::trace::Span, _cx: &opentelemetry::Context) {}

    fn on_end(&self, span: SpanData) {
        if self.tx.try_send(span).is_err() {
            self.dropped.add(1, &[]);
        }
    }

    /// Flushing is the export task's, on Weir's shutdown (`SpanQueue::close`).
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

struct Counts {
    exported: Counter<u64>,
    dropped: Counter<u64>,
}

async fn export_loop(exporter: SpanExporter, mut rx: mpsc::Receiver<SpanData>, counts: Counts, mut closed: oneshot::Receiver<()>) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut failing = false;
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
                    export(&exporter, &mut batch, &counts, &mut failing).await;
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
            export(&exporter, &mut batch, &counts, &mut failing).await;
        }
        if closing {
            return;
        }
    }
}

/// Sends one batch (and empties it); a failure (after the exporter's own
/// short retries) drops and counts its spans.
async fn export(exporter: &SpanExporter, batch: &mut Vec<SpanData>, counts: &Counts, failing: &mut bool) {
    let spans = std::mem::take(batch);
    let n = spans.len() as u64;
    match exporter.export(spans).await {
        Ok(()) => {
            counts.exported.add(n, &[]);
            *failing = false;
        }
        Err(e) => {
            // Dropped, not kept: telemetry must never grow without bound.
            counts.dropped.add(n, &[]);
            if !*failing {
                tracing::warn!(error = %e, spans = n, "trace export failed; spans dropped");
                *failing = true;
            }
        }
    }
}
