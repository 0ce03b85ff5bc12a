//! The plugin's log lines during `weir plugin test`: the host logs them
//! through `tracing` under the target `weir::plugin_log` (as in the
//! gateway); this process's subscriber keeps them, and nothing else, so
//! they can be printed with the case that produced them.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use tracing::field::{Field, Visit};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

/// The target the plugin host logs a plugin's `log` calls under.
const PLUGIN_LOG: &str = "weir::plugin_log";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLine {
    pub level: String,
    pub message: String,
}

/// The lines logged since the last `take`.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<LogLine>>>);

impl Captured {
    /// Makes this process's subscriber keep the plugin's log lines (and
    /// drop every other event: the CLI's output is its own).
    pub fn install() -> Captured {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::registry().with(CaptureLayer(captured.clone()));
        // A second install (never done by the CLI) would keep the first.
        let _ = tracing::subscriber::set_global_default(subscriber);
        captured
    }

    pub fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

struct CaptureLayer(Captured);

impl<S: tracing::Subscriber> Layer<S> for CaptureLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if event.metadata().target() != PLUGIN_LOG {
            return;
        }
        let mut line = LineVisitor::default();
        event.record(&mut line);
        // The host logs a plugin's `error` at warn (the operator's errors
        // are Weir's), naming the plugin's level in a field.
        let level = line.plugin_level.unwrap_or_else(|| event.metadata().level().as_str().to_ascii_lowercase());
        (self.0).0.lock().unwrap_or_else(|e| e.into_inner()).push(LogLine { level, message: line.message });
    }
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    plugin_level: Option<String>,
}

impl Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "plugin_level" => self.plugin_level = Some(value.to_string()),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        match field.name() {
            "message" => self.message = format!("{value:?}"),
            "plugin_level" => self.plugin_level = Some(format!("{value:?}").trim_matches('"').to_string()),
            _ => {}
        }
    }
}
