//! `weir plugin upload --fleet` and `weir plugin rollback --fleet`: talk to
//! NATS directly (the `[fleet]` settings of `--config`, or `--nats URL`),
//! not to a PoP. An upload is checked and test-compiled on this machine
//! first, exactly as a PoP would (the plugin host's own checks and compile
//! child): a component that fails never reaches NATS.

use std::path::{Path, PathBuf};

use super::plugin_dev::LocalHost;
use super::{CliError, print_json};
use crate::config::{Config, FleetConfig};
use crate::fleet::plugins::{PublishError, Published, publish_rollback, publish_upload};
use crate::plugin::UploadError;

/// Where the fleet is (`--nats URL`, else the `[fleet]` of `--config`, as
/// every fleet command finds it: `cli::fleet_config`), and the config whose
/// plugin limits the local check applies.
pub struct FleetTarget {
    pub config: Option<PathBuf>,
    pub nats: super::NatsArgs,
    pub json: bool,
}

impl FleetTarget {
    fn load(&self) -> Result<(Config, FleetConfig), CliError> {
        let fleet = super::fleet_config(&self.nats, self.config.as_deref())?;
        let config = match &self.config {
            Some(path) => Config::load(Some(path)).map_err(|e| CliError::Usage(e.to_string()))?,
            None => Config::default(),
        };
        Ok((config, fleet))
    }

    async fn jetstream(&self, fleet: &FleetConfig) -> Result<async_nats::jetstream::Context, CliError> {
        Ok(async_nats::jetstream::new(super::fleet::connect(fleet, "weir-cli").await?))
    }
}

/// Who did it, for the key's `by` (shown in status).
pub(super) fn by() -> String {
    format!("cli:{}", std::env::var("USER").unwrap_or_else(|_| "unknown".into()))
}

pub async fn plugin_upload_fleet(target: &FleetTarget, tenant: &str, file: &Path) -> Result<(), CliError> {
    crate::config::validate_label(tenant).map_err(|m| CliError::Usage(format!("--tenant: {m}")))?;
    let (config, fleet) = target.load()?;
    let bytes = std::fs::read(file).map_err(|e| CliError::Usage(format!("cannot read {}: {e}", file.display())))?;
    check_locally(&config, tenant, &bytes).await.map_err(|e| CliError::Refused(format!("{e}; nothing was sent to the fleet")))?;
    let js = target.jetstream(&fleet).await?;
    let published = publish_upload(&js, &fleet, tenant, &bytes, &by()).await.map_err(publish_error)?;
    report(target, &published, "uploaded");
    Ok(())
}

pub async fn plugin_rollback_fleet(target: &FleetTarget, tenant: &str, to: Option<&str>) -> Result<(), CliError> {
    crate::config::validate_label(tenant).map_err(|m| CliError::Usage(format!("--tenant: {m}")))?;
    let (_, fleet) = target.load()?;
    let js = target.jetstream(&fleet).await?;
    let published = publish_rollback(&js, &fleet, tenant, to, &by()).await.map_err(publish_error)?;
    report(target, &published, "rolled back");
    Ok(())
}

fn report(target: &FleetTarget, p: &Published, what: &str) {
    if target.json {
        print_json(&serde_json::to_value(p).unwrap_or_default());
    } else {
        println!(
            "{}: {what} for the fleet: sha256 {} ({} bytes), control revision {}; every PoP activates it when it sees the change",
            p.tenant, p.sha256, p.size, p.revision
        );
    }
}

fn publish_error(e: PublishError) -> CliError {
    match e {
        PublishError::InvalidTenant(_) | PublishError::InvalidSha256(_) => CliError::Usage(e.to_string()),
        PublishError::NoPlugin(_) | PublishError::UnknownComponent(_) => CliError::NotFound(e.to_string()),
        PublishError::NoPrevious(_) | PublishError::Conflict(_) => CliError::Refused(e.to_string()),
        PublishError::Bucket(_) | PublishError::Nats(_) => CliError::Failed(e.to_string()),
    }
}

/// Every check a PoP makes and a real compile (in the `weir compile-plugin`
/// child, with the config's limits), through a plugin host over a scratch
/// control file that is removed afterwards.
async fn check_locally(config: &Config, tenant: &str, bytes: &[u8]) -> Result<String, UploadError> {
    let local = LocalHost::start(config, 0).await?;
    local.host.check(tenant, bytes).await
}
