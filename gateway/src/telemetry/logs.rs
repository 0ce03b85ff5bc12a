//! The process's `tracing` subscriber: log lines on stderr, and the bridge
//! that turns Weir's `tracing` spans into OpenTelemetry spans.
//!
//! - **Log lines carry the trace.** A line written while a trigger's span is
//!   the current OpenTelemetry context (ingest, its plugin call, a forward
//!   attempt: see [`super::trace::within`]) gets `trace_id` and `span_id`,
//!   sampled or not, so a log line and the trace (or the upstream's own logs,
//!   which got the same `traceparent`) can be joined.
//! - **The bridge** (`tracing-opentelemetry`) records `tracing` spans from
//!   Weir's code (targets `weir…`, at the log level: `log.level` or
//!   `RUST_LOG`, e.g. `weir::plugin=debug` for the plugin call's steps) as children of the
//!   current OpenTelemetry span, so a span opened anywhere joins the
//!   trigger's trace (in a trace sampled out, none is opened); events inside
//!   them become span events. It is connected
//!   by the gateway's tracer when an OTLP endpoint is set; until then (and
//!   with telemetry off) its filter refuses everything, at the cost of one
//!   atomic load per such span.
//!
//! There is one subscriber per process, hence one bridge: the gateway that
//! connected last owns it (the binary runs one gateway; in-process tests run
//! several and install no subscriber).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use opentelemetry::trace::TraceContextExt;
use opentelemetry_sdk::trace::SdkTracer;
use tracing::subscriber::Interest;
use tracing::{Level, Metadata};
use tracing_subscriber::filter::FilterExt as _;
use tracing_subscriber::fmt::format::{Format, JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::{LookupSpan, Registry};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, filter, reload};

type Bridge = tracing_opentelemetry::OpenTelemetryLayer<Registry, SdkTracer>;

/// The bridge's slot in the installed subscriber.
struct Slot {
    handle: reload::Handle<Option<Bridge>, Registry>,
    /// Held while the bridge and `CONNECTED` change together.
    changing: Mutex<()>,
}

static SLOT: OnceLock<Slot> = OnceLock::new();
/// The connection now holding the bridge (0: none): the filter's switch,
/// and what a dropped guard checks before it disconnects.
static CONNECTED: AtomicU64 = AtomicU64::new(0);
static NEXT: AtomicU64 = AtomicU64::new(1);

/// Installs the global `tracing` subscriber. `format` is `auto` (human on a
/// terminal, JSON otherwise), `human` or `json`; `level` is a filter such as
/// `info`. `RUST_LOG`, when set, wins over `level`. A second call (tests) is
/// harmless: the first subscriber stays.
pub fn init_logging(format: &str, level: &str) {
    let levels = || EnvFilter::try_from_default_env().or_else(|_| EnvFilter::try_new(level)).unwrap_or_else(|_| EnvFilter::new("info"));
    let filter = levels();
    let json = match format {
        "json" => true,
        "human" => false,
        _ => !std::io::stderr().is_terminal(),
    };
    let (bridge, handle) = reload::Layer::new(None::<Bridge>);
    // The log level decides which spans exist at all (the plugin call's
    // steps are debug spans: off at the default `info`, so the trace of a
    // trigger costs no more than its own spans unless asked); then, per
    // callsite once, Weir's spans and events or never; then per use,
    // connected and in a sampled trace.
    let bridge = bridge.with_filter(
        levels().and(
            filter::dynamic_filter_fn(|m, _| CONNECTED.load(Ordering::Relaxed) != 0 && bridged(m) && (m.is_event() || in_sampled_trace()))
                .with_callsite_filter(|m| if bridged(m) { Interest::sometimes() } else { Interest::never() }),
        ),
    );
    let stderr = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let installed = if json {
        let format = Format::default().json().flatten_event(true).with_current_span(false).with_span_list(false);
        let lines = stderr.fmt_fields(JsonFields::new()).event_format(WithTraceIds { inner: format, json: true });
        Registry::default().with(bridge).with(lines.with_filter(filter)).try_init()
    } else {
        let ansi = std::io::stderr().is_terminal();
        let lines = stderr.with_ansi(ansi).event_format(WithTraceIds { inner: Format::default().with_ansi(ansi), json: false });
        Registry::default().with(bridge).with(lines.with_filter(filter)).try_init()
    };
    if installed.is_ok() {
        let _ = SLOT.set(Slot { handle, changing: Mutex::new(()) });
    }
}

/// What the bridge records: Weir's own spans at DEBUG or above, and its
/// events at INFO or above (as span events of a bridged span).
fn bridged(m: &Metadata<'_>) -> bool {
    let level = if m.is_span() { Level::DEBUG } else { Level::INFO };
    m.target().starts_with("weir") && *m.level() <= level
}

/// Whether a span opened now would be recorded: inside a sampled trace, or
/// outside any trace (a new root, left to the sampler). In a trace sampled
/// out, a bridged span would only be dropped at its end, after building its
/// attributes: it is not opened at all (its log lines carry the enclosing
/// span's ids instead).
fn in_sampled_trace() -> bool {
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    !sc.is_valid() || sc.is_sampled()
}

/// A bridge connection: `tracing` spans go to its tracer until it is dropped
/// (or another one connects).
pub struct BridgeGuard(u64);

/// Connects the bridge to `tracer`; `None` when no subscriber was installed
/// by [`init_logging`] (in-process tests), so there is nothing to bridge.
pub fn connect(tracer: SdkTracer) -> Option<BridgeGuard> {
    let slot = SLOT.get()?;
    let _changing = slot.changing.lock().unwrap_or_else(|e| e.into_inner());
    // Attributes a span pays for at 100 % sampling, left out: thread ids (a
    // trigger's work moves between worker threads) and the source location
    // and target (the span's name says where it is; four strings per span).
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_threads(false).with_location(false).with_target(false);
    if let Err(e) = slot.handle.reload(Some(layer)) {
        tracing::warn!(error = %e, "cannot connect tracing spans to OpenTelemetry; Weir's own spans are still exported");
        return None;
    }
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    CONNECTED.store(id, Ordering::Relaxed);
    Some(BridgeGuard(id))
}

impl Drop for BridgeGuard {
    fn drop(&mut self) {
        let Some(slot) = SLOT.get() else { return };
        let _changing = slot.changing.lock().unwrap_or_else(|e| e.into_inner());
        // A later connection keeps the bridge.
        if CONNECTED.load(Ordering::Relaxed) == self.0 {
            CONNECTED.store(0, Ordering::Relaxed);
            let _ = slot.handle.reload(None);
        }
    }
}

/// The line format of `inner`, plus the current OpenTelemetry span's ids when
/// there is one: `"trace_id"` and `"span_id"` first in a JSON object, or
/// ` trace_id=… span_id=…` at the end of a human line (such a line is written
/// without colour: it is formatted into a buffer first).
struct WithTraceIds<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &tracing::Event<'_>) -> std::fmt::Result {
        let cx = opentelemetry::Context::current();
        let span = cx.span();
        let sc = span.span_context();
        if !sc.is_valid() {
            return self.inner.format_event(ctx, writer, event);
        }
        let mut line = String::new();
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        writer.write_str(&with_ids(&line, &sc.trace_id().to_string(), &sc.span_id().to_string(), self.json))
    }
}

/// `line` (one formatted log line, newline-terminated) with the ids added.
fn with_ids(line: &str, trace_id: &str, span_id: &str, json: bool) -> String {
    let body = line.strip_suffix('\n').unwrap_or(line);
    match body.strip_prefix('{') {
        Some(rest) if json => format!("{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}\n"),
        _ => format!("{body} trace_id={trace_id} span_id={span_id}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_lead_a_json_object_and_end_a_human_line() {
        let (t, s) = ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
        let json = with_ids("{\"level\":\"INFO\",\"message\":\"hi\"}\n", t, s, true);
        let v: serde_json::Value = serde_json::from_str(&json).expect("still one JSON object");
        assert_eq!((v["trace_id"].as_str(), v["span_id"].as_str(), v["message"].as_str()), (Some(t), Some(s), Some("hi")));
        assert!(json.ends_with("}\n"));
        assert_eq!(with_ids("2026 INFO weir: hi\n", t, s, false), format!("2026 INFO weir: hi trace_id={t} span_id={s}\n"));
    }
}
