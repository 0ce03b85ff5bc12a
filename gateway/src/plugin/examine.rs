//! What `weir plugin check` reports: every check an upload makes and a real
//! compile (the upload's own path, `PluginHost::prepare`), with what they
//! found. Stores and activates nothing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::upload::{Prepared, count_functions};
use super::{PluginHost, UploadError};

/// A component that passed every upload check and compiled.
#[derive(Debug, Clone)]
pub struct Examined {
    pub sha256: String,
    pub size: u64,
    /// Functions its core modules define (`plugins.max_functions` caps them).
    pub functions: u64,
    /// The WIT package of the world it targets, e.g. `weir:plugin@0.2.0`.
    pub world: &'static str,
    /// Its imports, as the component names them, sorted.
    pub imports: Vec<String>,
    /// Wall-clock time of the checks and the compile in the `weir compile-plugin` child.
    pub compile: Duration,
    /// Size of the native artifact Weir would keep for it.
    pub artifact_bytes: u64,
}

impl PluginHost {
    /// Runs the upload's checks and compile on `bytes` for `tenant` (whose
    /// one-compile-at-a-time turn it takes), keeping nothing.
    pub async fn examine(self: &Arc<Self>, tenant: &str, bytes: &[u8]) -> Result<Examined, UploadError> {
        let started = Instant::now();
        let Prepared { sha256, artifact, probe, component } = self.prepare(tenant, bytes).await?;
        let compile = started.elapsed();
        let mut imports: Vec<String> = component.component_type().imports(&self.engine).map(|(name, _)| name.to_string()).collect();
        imports.sort();
        Ok(Examined {
            sha256,
            size: bytes.len() as u64,
            functions: count_functions(bytes)?,
            world: probe.pre.version(),
            imports,
            compile,
            artifact_bytes: artifact.len() as u64,
        })
    }

    /// The limits plugins run under on this host, for reports.
    pub fn limits(&self) -> &crate::config::PluginsConfig {
        &self.limits
    }

    /// The largest new body plus header changes a verdict may carry.
    pub fn max_output_bytes(&self) -> usize {
        self.max_output_bytes
    }
}
