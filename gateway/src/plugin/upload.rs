//! Uploads, startup registration of configured plugin files, rollback:
//! validate (cheap checks first) → compile (in a limited child process, see
//! `compile.rs`) → store durably → activate atomically.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wasmtime::component::Component;

use super::{Loaded, PluginHost, Pre, Slot, blocking};
use crate::store::{PluginVersion, StoreError};

/// Why an upload (or a configured plugin file) was refused. The previous
/// version stays active whatever the error.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the component is {size} bytes, over the limit of {limit} (plugins.max_component_bytes)")]
    TooLarge { size: u64, limit: u64 },
    #[error(
        "not a WebAssembly binary (it does not start with \\0asm); upload the .wasm file that `cargo build --target wasm32-wasip2` produced"
    )]
    NotWasm,
    #[error("this is a core WebAssembly module, not a component; build the plugin for the wasm32-wasip2 target (see docs/plugins.md)")]
    CoreModule,
    #[error("the component defines {count} functions, over the limit of {limit} (plugins.max_functions)")]
    TooManyFunctions { count: u64, limit: u32 },
    #[error("the component failed to compile: {0}")]
    Compile(String),
    #[error("compiling the component took longer than the limit of {ms} ms (plugins.compile_timeout_ms); the compiler was stopped")]
    CompileTimeout { ms: u64 },
    #[error(
        "compiling the component used more than {secs} s of CPU time, the limit derived from plugins.compile_timeout_ms ({ms} ms: twice that on every core); the compiler was stopped"
    )]
    CompileCpu { secs: u64, ms: u64 },
    #[error(
        "compiling the component needed more than the limit of {mb} MiB of memory (plugins.compile_memory_mb); the compiler was stopped"
    )]
    CompileMemory { mb: u64 },
    #[error("tenant {0} already has a plugin compiling, and a tenant compiles one at a time; retry once that upload is answered")]
    CompileBusy(String),
    #[error("the plugin compiler is unavailable: {0}")]
    CompilerUnavailable(String),
    #[error(
        "the component imports something Weir does not provide (plugins may import only weir:plugin/host and capability-free WASI): {0}"
    )]
    Imports(String),
    #[error("the component does not target a supported weir:plugin trigger-plugin world ({}; it must export `handle`): {}", super::SUPPORTED_WIT, .0)]
    WrongWorld(String),
    #[error("{0}")]
    NotFound(String),
    #[error("tenant {0} has no earlier plugin version to roll back to")]
    NoPrevious(String),
    #[error("cannot read plugin file: {0}")]
    File(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl UploadError {
    /// HTTP status and stable code for the admin API.
    pub fn status_and_code(&self) -> (u16, &'static str) {
        match self {
            UploadError::TooLarge { .. } => (400, "component_too_large"),
            UploadError::NotWasm => (400, "not_wasm"),
            UploadError::CoreModule => (400, "core_module"),
            UploadError::TooManyFunctions { .. } => (400, "too_many_functions"),
            UploadError::Compile(_) => (422, "compile_failed"),
            UploadError::CompileTimeout { .. } | UploadError::CompileCpu { .. } => (422, "compile_timeout"),
            UploadError::CompileMemory { .. } => (422, "compile_memory"),
            UploadError::CompileBusy(_) => (429, "compile_in_progress"),
            UploadError::CompilerUnavailable(_) => (503, "compiler_unavailable"),
            UploadError::Imports(_) => (422, "unsupported_imports"),
            UploadError::WrongWorld(_) => (422, "wrong_world"),
            UploadError::NotFound(_) => (404, "not_found"),
            UploadError::NoPrevious(_) => (409, "no_previous_version"),
            UploadError::File(_) => (400, "unreadable_file"),
            UploadError::Store(_) => (503, "store_unavailable"),
        }
    }
}

/// Cheap checks before compiling: size and the component binary header.
pub fn check_header(bytes: &[u8], limit: u64) -> Result<(), UploadError> {
    if bytes.len() as u64 > limit {
        return Err(UploadError::TooLarge { size: bytes.len() as u64, limit });
    }
    if bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return Err(UploadError::NotWasm);
    }
    match &bytes[4..8] {
        [0x0d, 0x00, 0x01, 0x00] => Ok(()),
        [0x01, 0x00, 0x00, 0x00] => Err(UploadError::CoreModule),
        _ => Err(UploadError::NotWasm),
    }
}

/// Cheap check before compiling: how many functions the component's core
/// modules (nested ones included) define. Compile time and memory grow with
/// it, and counting reads section headers only. A component that does not
/// parse is refused as not compiling.
pub fn check_functions(bytes: &[u8], limit: u32) -> Result<(), UploadError> {
    let count = count_functions(bytes)?;
    if count > u64::from(limit) {
        return Err(UploadError::TooManyFunctions { count, limit });
    }
    Ok(())
}

/// The functions the component's core modules define, counted from section
/// headers (nested modules included).
pub fn count_functions(bytes: &[u8]) -> Result<u64, UploadError> {
    let (mut declared, mut bodies) = (0u64, 0u64);
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        match payload.map_err(|e| UploadError::Compile(format!("malformed component: {e}")))? {
            wasmparser::Payload::FunctionSection(reader) => declared += u64::from(reader.count()),
            wasmparser::Payload::CodeSectionStart { count, .. } => bodies += u64::from(count),
            _ => {}
        }
    }
    // A module states its function count twice (function and code
    // sections); a mismatch fails validation later, but count the larger.
    Ok(declared.max(bodies))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `source` of versions the fleet activated (`fleet::plugins`).
pub const FLEET_SOURCE: &str = "fleet";

/// What passed every upload check and compiled: may be stored and activated.
pub(super) struct Prepared {
    pub sha256: String,
    pub artifact: Vec<u8>,
    pub probe: Loaded,
    /// The compiled component (its imports, for `weir plugin check`).
    pub component: Component,
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

impl PluginHost {
    /// Validates, compiles, stores and activates a new version. In-flight
    /// triggers finish on the version they started with.
    pub async fn upload(self: &Arc<Self>, tenant: &str, bytes: Vec<u8>) -> Result<(u32, String), UploadError> {
        self.add(tenant, bytes, "upload").await.map(|l| (l.version, l.sha256.clone()))
    }

    async fn add(self: &Arc<Self>, tenant: &str, bytes: Vec<u8>, source: &'static str) -> Result<Arc<Loaded>, UploadError> {
        let Prepared { sha256, artifact, probe, .. } = self.prepare(tenant, &bytes).await?;
        let (bytes, artifact) = (Arc::new(bytes), Arc::new(artifact));
        let (repo, t, sha, compat, art) = (self.repo.clone(), tenant.to_string(), sha256.clone(), self.compat, artifact.clone());
        let version = blocking(move || repo.add_version(&t, &sha, &bytes, Some((compat, &art)), source, now_ms())).await?;
        // Run from the artifact's file (file-backed code, as after a
        // restart); the copy `prepare` linked is kept only if that fails.
        let pre = match self.file_backed_pre(&sha256, version, artifact).await {
            Ok(Some(pre)) => pre,
            Ok(None) => probe.pre,
            Err(e) => {
                tracing::warn!(tenant, sha256 = %sha256, error = %e, "plugin artifact file unusable; running the in-memory copy");
                probe.pre
            }
        };
        let loaded = Arc::new(Loaded { version, sha256, pre });
        self.set_slot(tenant, Slot::Ready(loaded.clone()));
        tracing::info!(tenant, version, sha256 = %loaded.sha256, source, "plugin version activated");
        Ok(loaded)
    }

    /// The linked instance-pre of the artifact's file, written from
    /// `artifact` when missing.
    async fn file_backed_pre(self: &Arc<Self>, sha256: &str, version: u32, artifact: Arc<Vec<u8>>) -> Result<Option<Pre>, UploadError> {
        match self.file_backed(sha256, Some(artifact)).await? {
            Some(component) => Ok(Some(self.link(component, version, sha256)?.pre)),
            None => Ok(None),
        }
    }

    /// Every check an upload makes, then compile and link: what may be
    /// stored. Changes nothing.
    pub(super) async fn prepare(self: &Arc<Self>, tenant: &str, bytes: &[u8]) -> Result<Prepared, UploadError> {
        check_header(bytes, self.limits.max_component_bytes)?;
        check_functions(bytes, self.limits.max_functions)?;
        let sha256 = sha256_hex(bytes);
        // The same component (another tenant, or a re-upload) compiles once:
        // reuse Weir's own artifact for this content and engine when there is one.
        let (repo, sha, compat) = (self.repo.clone(), sha256.clone(), self.compat);
        let cached = blocking(move || repo.artifact(&sha, compat)).await?;
        // SAFETY: artifacts in plugins.redb are produced by this engine's
        // precompile_component and stored where tenants cannot write.
        let reused = cached.and_then(|a| unsafe { Component::deserialize(&self.engine, &a) }.ok().map(|c| (a, c)));
        let (artifact, component) = match reused {
            Some(pair) => pair,
            None => {
                let artifact = self.compile(tenant, bytes).await?;
                // SAFETY: `artifact` was just produced by Weir's own compiler process
                // (this binary, or plugins.compiler) with this engine's configuration.
                // `{:#}`: loading checks the engine's pool limits, and only the
                // cause says which limit and by how much (the upload fuzz test
                // found "module memory does not fit in pooling allocator
                // requirements" and nothing more).
                let component =
                    unsafe { Component::deserialize(&self.engine, &artifact) }.map_err(|e| UploadError::Compile(format!("{e:#}")))?;
                (artifact, component)
            }
        };
        // Link before storing: a component for the wrong world is never stored.
        let probe = self.link(component.clone(), 0, &sha256)?;
        Ok(Prepared { sha256, artifact, probe, component })
    }

    /// Runs every upload check and compiles, activating nothing: what a
    /// fleet upload does on the PoP it is sent to before anything reaches
    /// NATS. The artifact is kept, so activating it later compiles nothing.
    pub async fn check(self: &Arc<Self>, tenant: &str, bytes: &[u8]) -> Result<String, UploadError> {
        let Prepared { sha256, artifact, .. } = self.prepare(tenant, bytes).await?;
        let (repo, sha, compat) = (self.repo.clone(), sha256.clone(), self.compat);
        blocking(move || repo.put_artifact(&sha, compat, &artifact)).await?;
        Ok(sha256)
    }

    /// Makes `bytes` the tenant's active plugin for the fleet (`fleet::plugins`):
    /// the same checks, compile and swap as an upload. A version already
    /// stored with this content (a fleet rollback) is activated again rather
    /// than added twice; the active one is left alone.
    pub async fn activate_fleet(self: &Arc<Self>, tenant: &str, bytes: Vec<u8>) -> Result<(u32, String), UploadError> {
        check_header(&bytes, self.limits.max_component_bytes)?;
        check_functions(&bytes, self.limits.max_functions)?;
        let sha256 = sha256_hex(&bytes);
        if self.active_sha256(tenant).as_deref() == Some(sha256.as_str())
            && let Some(version) = self.active_version(tenant)
        {
            return Ok((version, sha256));
        }
        let (repo, t) = (self.repo.clone(), tenant.to_string());
        let stored = blocking(move || repo.versions(&t)).await?.into_iter().filter(|v| v.sha256 == sha256).map(|v| v.version).max();
        if let Some(version) = stored {
            self.activate_version(tenant, version).await?;
            let (repo, t) = (self.repo.clone(), tenant.to_string());
            blocking(move || repo.set_active(&t, version)).await?;
            tracing::info!(tenant, version, sha256 = %sha256, source = FLEET_SOURCE, "plugin version activated again");
            return Ok((version, sha256));
        }
        self.add(tenant, bytes, FLEET_SOURCE).await.map(|l| (l.version, l.sha256.clone()))
    }

    /// The fleet no longer gives the tenant a plugin: when `fleet_sha256` is
    /// still what runs, the tenant goes back to its latest local version
    /// (an upload or its `plugin` file), or to no plugin at all. Returns
    /// the version now active.
    pub async fn deactivate_fleet(self: &Arc<Self>, tenant: &str, fleet_sha256: &str) -> Result<Option<u32>, UploadError> {
        if self.active_sha256(tenant).as_deref() != Some(fleet_sha256) {
            // A local upload replaced it since: that one stays.
            return Ok(self.active_version(tenant));
        }
        let (repo, t) = (self.repo.clone(), tenant.to_string());
        let local = blocking(move || repo.versions(&t)).await?.into_iter().filter(|v| v.source != FLEET_SOURCE).map(|v| v.version).max();
        let (repo, t) = (self.repo.clone(), tenant.to_string());
        match local {
            Some(version) => {
                self.activate_version(tenant, version).await?;
                blocking(move || repo.set_active(&t, version)).await?;
            }
            None => {
                blocking(move || repo.clear_active(&t)).await?;
                self.active.write().unwrap_or_else(|e| e.into_inner()).remove(tenant);
            }
        }
        tracing::info!(tenant, fleet_sha256, local_version = ?local, "fleet plugin removed");
        Ok(local)
    }

    /// The sha256 of the version running for `tenant`, if one is loaded.
    pub fn active_sha256(&self, tenant: &str) -> Option<String> {
        match self.active.read().unwrap_or_else(|e| e.into_inner()).get(tenant)? {
            Slot::Ready(l) => Some(l.sha256.clone()),
            Slot::Broken { .. } => None,
        }
    }

    /// Compiles in a child process under the compile limits (`compile.rs`):
    /// this process's memory does not grow with what the compile needed.
    pub(super) async fn compile(&self, tenant: &str, bytes: &[u8]) -> Result<Vec<u8>, UploadError> {
        self.compiler.compile(tenant, bytes).await
    }

    /// At startup: a configured plugin file becomes a new version (and active)
    /// unless this tenant already has a version with the same content, in
    /// which case the stored active version (maybe a later upload or a
    /// rollback) stays.
    pub(super) async fn register_file(self: &Arc<Self>, tenant: &str, path: &Path) -> Result<(), UploadError> {
        let bytes = tokio::fs::read(path).await.map_err(|e| UploadError::File(format!("{}: {e}", path.display())))?;
        let sha = sha256_hex(&bytes);
        let (repo, t) = (self.repo.clone(), tenant.to_string());
        let known = blocking(move || repo.versions(&t)).await?.iter().any(|v| v.sha256 == sha);
        if known {
            return Ok(());
        }
        self.add(tenant, bytes, "config").await.map(|_| ())
    }

    /// Re-activates the highest version below the active one.
    pub async fn rollback(self: &Arc<Self>, tenant: &str) -> Result<u32, UploadError> {
        let (repo, t) = (self.repo.clone(), tenant.to_string());
        let (versions, active) = blocking(move || Ok((repo.versions(&t)?, repo.active(&t)?))).await?;
        let active = active.ok_or_else(|| UploadError::NoPrevious(tenant.to_string()))?;
        let previous = versions
            .iter()
            .filter(|v| v.version < active)
            .map(|v| v.version)
            .max()
            .ok_or_else(|| UploadError::NoPrevious(tenant.to_string()))?;
        let loaded = self.activate_version(tenant, previous).await?;
        let (repo, t) = (self.repo.clone(), tenant.to_string());
        blocking(move || repo.set_active(&t, previous)).await?;
        tracing::info!(tenant, from = active, to = loaded.version, "plugin rolled back");
        Ok(previous)
    }

    /// Makes a stored version the active one, whichever it is (a roll
    /// forward after a rollback, or any older one). Returns the version that
    /// was active before.
    pub async fn activate(self: &Arc<Self>, tenant: &str, version: u32) -> Result<Option<u32>, UploadError> {
        let previous = self.active_version(tenant);
        self.activate_version(tenant, version).await?;
        let (repo, t) = (self.repo.clone(), tenant.to_string());
        blocking(move || repo.set_active(&t, version)).await?;
        tracing::info!(tenant, from = ?previous, to = version, "plugin version activated");
        Ok(previous)
    }

    /// Stored versions and the active one.
    pub async fn versions(&self, tenant: &str) -> Result<(Vec<PluginVersion>, Option<u32>), UploadError> {
        let (repo, t) = (self.repo.clone(), tenant.to_string());
        let versions = blocking(move || repo.versions(&t)).await?;
        Ok((versions, self.active_version(tenant)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_checks_name_the_problem() {
        assert!(matches!(check_header(b"hello world", 100), Err(UploadError::NotWasm)));
        assert!(matches!(check_header(b"\0asm\x01\0\0\0rest", 100), Err(UploadError::CoreModule)));
        assert!(matches!(check_header(b"\0asm\x0d\0\x01\0rest", 100), Ok(())));
        assert!(matches!(check_header(&[0u8; 200], 100), Err(UploadError::TooLarge { size: 200, limit: 100 })));
    }

    #[test]
    fn function_count_is_checked_in_nested_modules() {
        // A component holding one core module of three `() -> ()` functions.
        let module = b"\0asm\x01\0\0\0\x01\x04\x01\x60\0\0\x03\x04\x03\0\0\0\x0a\x0a\x03\x02\0\x0b\x02\0\x0b\x02\0\x0b";
        let mut component = b"\0asm\x0d\0\x01\0\x01".to_vec();
        component.push(module.len() as u8);
        component.extend_from_slice(module);
        assert!(check_functions(&component, 3).is_ok());
        let err = check_functions(&component, 2).unwrap_err();
        assert!(matches!(err, UploadError::TooManyFunctions { count: 3, limit: 2 }), "{err}");
        assert!(err.to_string().contains("plugins.max_functions"));
        assert!(matches!(check_functions(&component[..component.len() - 3], 10), Err(UploadError::Compile(_))));
    }

    #[test]
    fn sha256_is_lower_hex() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
