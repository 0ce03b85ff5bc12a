//! A plugin host in the CLI's own process, as a PoP would run it (the same
//! checks, `weir compile-plugin` child and limits), over a scratch control
//! file that is removed afterwards. `weir plugin check`, `weir plugin test`
//! and `weir plugin upload --fleet` (its local test compile) use it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::Config;
use crate::plugin::{PluginHost, UploadError};
use crate::store::ControlFile;
use crate::tenants::Tenants;

/// The host, and the scratch directory that lives as long as it.
pub struct LocalHost {
    pub host: Arc<PluginHost>,
    /// Tenants are added (as the fleet adds them) per case: their settings
    /// can change between cases.
    pub tenants: Arc<Tenants>,
    _scratch: Scratch,
}

impl LocalHost {
    /// `config`'s `[plugins]` and `[server]` limits, no tenants loaded, no
    /// fleet. `memory_mb` is the largest `plugin_memory_mb` a tenant will be
    /// given (the engine's pool is sized for it).
    pub async fn start(config: &Config, memory_mb: u64) -> Result<LocalHost, UploadError> {
        let mut c = config.clone();
        c.tenants.clear();
        c.fleet = None;
        // Calls run one at a time here: a small pool reserves less address space.
        c.plugins.concurrency = c.plugins.concurrency.min(2);
        c.plugins.fleet_memory_mb = c.plugins.fleet_memory_mb.max(memory_mb);
        let scratch = Scratch::new().map_err(|e| UploadError::CompilerUnavailable(format!("cannot make a scratch directory: {e}")))?;
        let repo = Arc::new(ControlFile::open(&scratch.0)?);
        let tenants = Tenants::from_config(&c);
        let host = PluginHost::start(&c, tenants.clone(), repo).await.map_err(|e| UploadError::CompilerUnavailable(e.to_string()))?;
        Ok(LocalHost { host, tenants, _scratch: scratch })
    }
}

/// A directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> std::io::Result<Scratch> {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = std::env::temp_dir().join(format!("weir-plugin-check-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&dir)?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
