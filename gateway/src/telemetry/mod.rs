//! Logs, metrics and traces: how Weir makes its state visible. Metrics and
//! traces go through the OpenTelemetry SDK; `export` sends them over OTLP,
//! `prometheus` renders the metrics for `GET /metrics`.

pub mod export;
pub mod metrics;
pub mod prometheus;
pub mod trace;

pub use metrics::{Gauges, Metrics, PluginCounts};
pub use trace::{Kind, Span, SpanContext, Tracer};

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global `tracing` subscriber. `format` is `auto` (human on a
/// terminal, JSON otherwise), `human` or `json`; `level` is a filter such as
/// `info`. `RUST_LOG`, when set, wins over `level`.
pub fn init_logging(format: &str, level: &str) {
    let filter = EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        "json" => true,
        "human" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    // A second init (tests) is harmless: the first subscriber stays.
    let _ = if json {
        builder.json().flatten_event(true).with_current_span(false).try_init()
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).try_init()
    };
}
