//! Following `plugins.>` in the control bucket: an ordered consumer from the
//! revision after the last one taken into account (or, when the bucket no
//! longer holds that history or was recreated, the current value of every
//! key). Changes that arrive together are coalesced per key and applied in
//! revision order; whatever goes wrong ends the session, which starts again
//! (backing off) from the persisted revision.

use std::time::Duration;

use async_nats::jetstream::object_store::{GetErrorKind, ObjectStore};
use rand::Rng;
use tokio::io::AsyncReadExt;

use super::value::{self, Pointer, Refused};
use super::{ApplyError, FleetPlugins};
use crate::fleet::control;
use crate::shutdown::Shutdown;

/// First and longest wait before following the bucket again.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// Follows the bucket until shutdown, starting over after any failure.
pub(super) async fn run(fp: std::sync::Arc<FleetPlugins>, mut shutdown: Shutdown) {
    let mut failures = 0u32;
    let mut last_logged: Option<String> = None;
    loop {
        let error = tokio::select! {
            _ = shutdown.wait() => return,
            e = session(&fp, &mut failures) => e,
        };
        let text = error.to_string();
        // One line per distinct cause, not one per retry while NATS is down;
        // and not for the connection still coming up at startup.
        let starting = matches!(error, SessionError::NotConnected) && failures < 5;
        if !starting && last_logged.as_deref() != Some(text.as_str()) {
            tracing::warn!(error = %text, revision = fp.revision(),
                "not following the fleet's plugins; this PoP keeps serving what it last took, and retries");
            last_logged = Some(text.clone());
        }
        fp.set_following(false, Some(text));
        failures = failures.saturating_add(1);
        let wait = retry_delay(failures);
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Full jitter, doubling per failure up to [`RETRY_MAX`].
fn retry_delay(failures: u32) -> Duration {
    let exp = RETRY_FIRST.saturating_mul(1u32 << failures.min(8)).min(RETRY_MAX);
    let ms = exp.as_millis() as u64;
    Duration::from_millis(rand::rng().random_range(ms / 2..=ms))
}

/// The plugins Object Store, read with limits.
pub(super) struct Objects(ObjectStore);

impl Objects {
    /// The component `pointer` names, verified (size, sha256). Read in its
    /// own task: the client's object reader may panic when the connection
    /// breaks mid-read, and that must cost this fetch only.
    pub(super) async fn fetch(&self, pointer: &Pointer, max: u64) -> Result<Vec<u8>, ApplyError> {
        let (store, name) = (self.0.clone(), pointer.sha256.clone());
        let read = tokio::spawn(async move {
            let mut object = match store.get(&name).await {
                Ok(o) => o,
                Err(e) if e.kind() == GetErrorKind::NotFound => return Err(ApplyError::Refused(Refused::ObjectMissing(name))),
                Err(e) => return Err(ApplyError::Transient(format!("reading object {name}: {e}"))),
            };
            let announced = object.info().size as u64;
            if announced > max {
                return Err(ApplyError::Refused(Refused::TooLarge { size: announced, limit: max }));
            }
            let mut bytes = Vec::with_capacity(announced as usize);
            match (&mut object).take(max + 1).read_to_end(&mut bytes).await {
                Ok(_) => Ok(bytes),
                // The bucket's own digest disagrees with the chunks: as corrupted as a sha mismatch.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    Err(ApplyError::Refused(Refused::Sha256Mismatch { expected: name, got: format!("unknown ({e})") }))
                }
                Err(e) => Err(ApplyError::Transient(format!("reading object {name}: {e}"))),
            }
        });
        let bytes = read.await.map_err(|e| ApplyError::Transient(format!("the object read failed: {e}")))??;
        if bytes.len() as u64 > max {
            return Err(ApplyError::Refused(Refused::TooLarge { size: bytes.len() as u64, limit: max }));
        }
        super::verify(pointer, &bytes)?;
        Ok(bytes)
    }
}

/// Why a session ended.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("NATS is not connected")]
    NotConnected,
    #[error(transparent)]
    Bucket(#[from] crate::fleet::FleetError),
    #[error("reading the control bucket: {0}")]
    Read(String),
    #[error("{0}")]
    Apply(String),
}

/// Opens the buckets, catches up, then follows changes until something fails.
async fn session(fp: &FleetPlugins, failures: &mut u32) -> SessionError {
    match follow(fp, failures).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn follow(fp: &FleetPlugins, failures: &mut u32) -> Result<std::convert::Infallible, SessionError> {
    let fleet = &fp.fleet;
    if !fleet.connected() {
        return Err(SessionError::NotConnected);
    }
    let objects = Objects(control::plugins_bucket(&fleet.jetstream, &fleet.config).await?);
    let mut follower = control::Follower::open(fleet, value::KEY_PREFIX, fp.revision(), "plugins").await?;
    loop {
        let batch = follower.next().await.map_err(SessionError::Read)?;
        settle(fp, &objects, batch).await?;
        following(fp, failures);
    }
}

fn following(fp: &FleetPlugins, failures: &mut u32) {
    *failures = 0;
    fp.set_following(true, None);
}

/// Applies a batch in revision order. On a full re-read (`resync`),
/// tenants the batch does not name have no fleet plugin any more.
async fn settle(fp: &FleetPlugins, objects: &Objects, batch: control::Batch) -> Result<(), SessionError> {
    let control::Batch { changes, resync } = batch;
    let newest = changes.last().map_or(0, |c| c.revision);
    if resync.is_some() {
        let named: std::collections::HashSet<String> =
            changes.iter().filter_map(|c| value::tenant_of(&c.key).ok().map(str::to_string)).collect();
        let gone: Vec<String> = fp.status().tenants.into_keys().filter(|t| !named.contains(t)).collect();
        for tenant in gone {
            let _one = fp.applying.lock().await;
            fp.delete(&tenant, 0).await.map_err(|e| SessionError::Apply(e.to_string()))?;
        }
    }
    for change in changes {
        let _one = fp.applying.lock().await;
        let applied = match value::tenant_of(&change.key) {
            Err(refused) => fp.invalid_key(&change.key, change.revision, refused).await,
            Ok(tenant) => match &change.value {
                Some(v) => fp.put(objects, tenant, v, change.revision).await,
                None => fp.delete(tenant, change.revision).await,
            },
        };
        if let Err(e) = applied {
            return Err(SessionError::Apply(format!("{}: {e}", change.key)));
        }
    }
    if let Some(last) = resync {
        // Everything up to the bucket's end is now reflected, in this bucket's numbering.
        fp.force_revision(last.max(newest)).await.map_err(|e| SessionError::Apply(e.to_string()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_with_jitter_to_the_cap() {
        for failures in 0..40 {
            let d = retry_delay(failures);
            assert!(d >= RETRY_FIRST / 2 && d <= RETRY_MAX, "{failures}: {d:?}");
        }
        assert!(retry_delay(30) >= RETRY_MAX / 2);
    }
}
