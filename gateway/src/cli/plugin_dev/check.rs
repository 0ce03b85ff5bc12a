//! `weir plugin check FILE.wasm`: the checks an upload makes (size, header,
//! function count, world, imports) and a real compile in the
//! `weir compile-plugin` child under the config's limits, through the
//! plugin host's own upload path; then what it found and the limits the
//! plugin would run under.

use std::path::Path;

use serde_json::json;

use super::Limits;
use super::host::LocalHost;
use super::{emit, json_text};
use crate::cli::CliError;
use crate::config::Config;
use crate::plugin::{Examined, UploadError};

pub async fn run(file: &Path, config: &Config, tenant: &str, json: bool) -> Result<(), CliError> {
    crate::config::validate_label(tenant).map_err(|m| CliError::Usage(format!("--tenant: {m}")))?;
    let bytes = std::fs::read(file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    let limits = Limits::of(config, tenant);
    let local = LocalHost::start(config, limits.settings.plugin_memory_mb).await.map_err(refused)?;
    let examined = match local.host.examine(tenant, &bytes).await {
        Ok(e) => e,
        Err(e) => {
            if json {
                let (_, code) = e.status_and_code();
                emit(&json_text(&json!({"file": file.display().to_string(), "accepted": false, "code": code, "error": e.to_string()})));
            }
            return Err(refused(e));
        }
    };
    let text = if json {
        json_text(&json!({
            "file": file.display().to_string(),
            "accepted": true,
            "sha256": examined.sha256,
            "size": examined.size,
            "functions": examined.functions,
            "world": examined.world,
            "imports": examined.imports,
            "compile_ms": examined.compile.as_millis() as u64,
            "artifact_bytes": examined.artifact_bytes,
            "limits": limits.json(),
        }))
    } else {
        render(file, &examined, &limits, config)
    };
    emit(&text);
    Ok(())
}

/// An upload error as the CLI reports it: the component's fault is a
/// refusal (exit 5, as `weir plugin upload` gives), the machine's a failure.
pub fn refused(e: UploadError) -> CliError {
    match e {
        UploadError::CompilerUnavailable(_) | UploadError::Store(_) | UploadError::File(_) | UploadError::CompileBusy(_) => {
            CliError::Failed(e.to_string())
        }
        other => {
            let code = other.status_and_code().1;
            CliError::Refused(format!("{other} [{code}]; an upload would be refused the same way"))
        }
    }
}

fn render(file: &Path, e: &Examined, limits: &Limits, config: &Config) -> String {
    let mut out = String::new();
    let p = &config.plugins;
    out!(out, "{}: OK, an upload would accept it", file.display());
    let newest = if e.world == "weir:plugin@0.2.0" { "the newest" } else { "older; still supported" };
    out!(out, "  world      weir:plugin/trigger-plugin, {} ({newest})", e.world);
    out!(out, "  size       {} bytes (limit {}: plugins.max_component_bytes)", e.size, p.max_component_bytes);
    out!(out, "  functions  {} (limit {}: plugins.max_functions)", e.functions, p.max_functions);
    out!(out, "  imports    {}", e.imports.first().map_or("none", String::as_str));
    for import in e.imports.iter().skip(1) {
        out!(out, "             {import}");
    }
    out!(
        out,
        "  compile    {} ms in the weir compile-plugin child (limits: {} ms, plugins.compile_timeout_ms; {} MiB, plugins.compile_memory_mb); native code {} bytes",
        e.compile.as_millis(),
        p.compile_timeout_ms,
        p.compile_memory_mb,
        e.artifact_bytes
    );
    out!(out, "  sha256     {}", e.sha256);
    limits.render("  ", &mut out);
    out
}
