//! Following `plugins.>` in the control bucket: an ordered consumer from the
//! revision after the last one taken into account (or, when the bucket no
//! longer holds that history or was recreated, the current value of every
//! key). Changes that arrive together are coalesced per key and applied in
//! revision order; whatever goes wrong ends the session, which starts again
//! (backing off) from the persisted revision.

use std::collections::BTreeMap;
use std::time::Duration;

use async_nats::jetstream::consumer::DeliverPolicy;
use async_nats::jetstream::consumer::push::OrderedConfig;
use async_nats::jetstream::object_store::{GetErrorKind, ObjectStore};
use futures_util::StreamExt;
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

/// One change read from the bucket.
struct Change {
    key: String,
    revision: u64,
    /// `None`: deleted or purged.
    value: Option<bytes::Bytes>,
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
    let kv = control::control_bucket(&fleet.jetstream, &fleet.config).await?;
    let objects = Objects(control::plugins_bucket(&fleet.jetstream, &fleet.config).await?);
    let mut stream = kv.stream.clone();
    let state = stream.info().await.map_err(|e| SessionError::Read(e.to_string()))?.state.clone();
    let last = fp.revision();
    // Resuming needs every revision after `last` still in the bucket (its
    // history is bounded) and the same bucket (a recreated one restarts at 1);
    // otherwise take the current value of every key, and what they no longer
    // name is gone.
    let resync = last == 0 || state.last_sequence < last || state.first_sequence > last + 1;
    let deliver_policy = if resync { DeliverPolicy::LastPerSubject } else { DeliverPolicy::ByStartSequence { start_sequence: last + 1 } };
    let consumer = stream
        .create_consumer(OrderedConfig {
            deliver_subject: fleet.client.new_inbox(),
            description: Some(format!("weir {} plugins watcher", fleet.config.pop)),
            filter_subject: format!("{}{}>", kv.prefix, value::KEY_PREFIX),
            deliver_policy,
            replay_policy: async_nats::jetstream::consumer::ReplayPolicy::Instant,
            ..Default::default()
        })
        .await
        .map_err(|e| SessionError::Read(e.to_string()))?;
    let pending = consumer.cached_info().num_pending;
    let mut messages = consumer.messages().await.map_err(|e| SessionError::Read(e.to_string()))?;
    let mut batch: BTreeMap<String, Change> = BTreeMap::new();
    let mut resync = resync.then_some(state.last_sequence);
    if pending == 0 {
        settle(fp, &objects, &mut batch, resync.take()).await?;
        following(fp, failures);
    }
    loop {
        let message = match messages.next().await {
            Some(Ok(m)) => m,
            Some(Err(e)) => return Err(SessionError::Read(e.to_string())),
            None => return Err(SessionError::Read("the watch ended".into())),
        };
        let info = message.info().map_err(|e| SessionError::Read(e.to_string()))?;
        let (revision, left) = (info.stream_sequence, info.pending);
        let key = message.subject.as_str().strip_prefix(kv.prefix.as_str()).unwrap_or(message.subject.as_str()).to_string();
        let deleted = message.headers.as_ref().and_then(|h| h.get("KV-Operation")).is_some_and(|op| matches!(op.as_str(), "DEL" | "PURGE"));
        let value = (!deleted).then(|| message.payload.clone());
        batch.insert(key.clone(), Change { key, revision, value });
        // Apply once the backlog is read: several changes to a key while this
        // PoP was away compile only the last.
        if left == 0 {
            settle(fp, &objects, &mut batch, resync.take()).await?;
            following(fp, failures);
        }
    }
}

fn following(fp: &FleetPlugins, failures: &mut u32) {
    *failures = 0;
    fp.set_following(true, None);
}

/// Applies a batch in revision order. `resync` (the bucket's last revision
/// when the batch is every key's current value): tenants the batch does not
/// name have no fleet plugin any more.
async fn settle(
    fp: &FleetPlugins,
    objects: &Objects,
    batch: &mut BTreeMap<String, Change>,
    resync: Option<u64>,
) -> Result<(), SessionError> {
    let mut changes: Vec<Change> = std::mem::take(batch).into_values().collect();
    changes.sort_by_key(|c| c.revision);
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
