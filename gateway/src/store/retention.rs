//! Retention: delivered triggers are kept for `store.retention_secs` (for
//! replay), then removed; when the store nears its budget the oldest
//! delivered go first. Pending, dead and quarantined triggers are never
//! removed to make room.
//!
//! Space: redb reuses freed pages for new writes, so a store that churns at a
//! steady state stops growing; the file itself only shrinks with `compact()`,
//! which needs exclusive access (not done online).

use std::time::Duration;

use super::{Change, State, Store, StoreError};
use crate::id::TriggerId;
use crate::shutdown::Shutdown;

/// Above this share of the budget, delivered triggers go regardless of age...
const PRESSURE_HIGH: f64 = 0.9;
/// ...until usage is back under this share.
const PRESSURE_LOW: f64 = 0.8;
const PAGE: usize = 512;

/// Sweeps every `every` until shutdown.
pub async fn run(store: Store, retention: Duration, every: Duration, mut shutdown: Shutdown) {
    loop {
        match sweep(&store, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "retention removed delivered triggers"),
            Err(e) => tracing::warn!(error = %e, "retention sweep failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.wait() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

/// One pass: removes delivered triggers older than `retention`, then more
/// (oldest first) while the store is over its pressure mark. Returns how many.
pub async fn sweep(store: &Store, retention: Duration) -> Result<usize, StoreError> {
    // Ids carry Weir's clock: a step of the system clock removes nothing early (see `clock.rs`).
    let now_ms = super::clock::now_ms();
    let cutoff = now_ms.saturating_sub(retention.as_millis() as u64);
    let budget = store.budget() as f64;
    let mut under_pressure = store.used_bytes() as f64 > budget * PRESSURE_HIGH;
    let mut removed = 0;
    loop {
        let ids = store.ids_in_state(State::Delivered, None, PAGE).await?;
        if ids.is_empty() {
            return Ok(removed);
        }
        let doomed: Vec<TriggerId> = if under_pressure {
            // About as many as it takes to get under the low mark, judging by
            // the average trigger size; the loop checks again after each chunk.
            let excess = store.used_bytes() as f64 - budget * PRESSURE_LOW;
            let average = store.used_bytes() as f64 / store.live_count().max(1) as f64;
            let n = ((excess / average.max(1.0)).ceil() as usize).clamp(1, PAGE);
            ids.into_iter().take(n).collect()
        } else {
            ids.into_iter().take_while(|id| id.timestamp_ms() < cutoff).collect()
        };
        if doomed.is_empty() {
            return Ok(removed);
        }
        // Concurrent deletes share group commits in the writer.
        let mut set = tokio::task::JoinSet::new();
        for id in doomed {
            let s = store.clone();
            set.spawn(async move { s.update(id, Change::Delete).await });
        }
        while let Some(r) = set.join_next().await {
            match r {
                Ok(Ok(true)) => removed += 1,
                Ok(Ok(false)) => {}
                Ok(Err(e)) => return Err(e),
                Err(e) => return Err(StoreError::Io(format!("retention task failed: {e}"))),
            }
        }
        if under_pressure && (store.used_bytes() as f64) < budget * PRESSURE_LOW {
            under_pressure = false;
        }
    }
}
