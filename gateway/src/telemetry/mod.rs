//! Logs, metrics and traces: how Weir makes its state visible. Metrics and
//! traces go through the OpenTelemetry SDK; `export` sends them over OTLP,
//! `prometheus` renders the metrics for `GET /metrics`; `logs` owns the
//! `tracing` subscriber (log lines with trace ids, the bridge to OpenTelemetry).

pub mod export;
pub mod logs;
pub mod metrics;
pub mod prometheus;
pub mod trace;

pub use logs::init_logging;
pub use metrics::{Gauges, Metrics, PluginCounts};
pub use trace::{Kind, Span, SpanContext, Tracer, within};
