//! The changes a writer makes to a shard's tables, as functions of what was
//! decided: applied live by the writer, and again from the journal by
//! recovery. One code path for both is what makes a replayed journal leave
//! exactly the tables, indexes and counters the writer left.
//!
//! Decisions (is this key a duplicate, does the budget allow it, what does a
//! state change make of the record) stay in the writer: recovery replays only
//! what was decided and logged.

use redb::ReadableTable;

use super::record::{State, TriggerMeta};
use super::tables::{Deltas, PER_TRIGGER_OVERHEAD, Tables};
use super::{StoreError, io_err};
use crate::id::TriggerId;

/// What a change does to a trigger's transformed body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transformed<'a> {
    Keep,
    Set(&'a [u8]),
    Remove,
}

/// Bytes an inserted trigger is charged against the budget.
pub(crate) fn insert_cost(record: &[u8], body: &[u8], transformed: Option<&[u8]>) -> u64 {
    (record.len() + body.len() + transformed.map_or(0, <[u8]>::len)) as u64 + PER_TRIGGER_OVERHEAD
}

/// Stores a new trigger, its bodies, its index entries and its idempotency
/// key (stamped `now_ms`, replacing an expired entry for the same key).
#[allow(clippy::too_many_arguments)]
pub(crate) fn insert(
    tables: &mut Tables<'_>,
    id: u128,
    meta: &TriggerMeta,
    record: &[u8],
    body: &[u8],
    transformed: Option<&[u8]>,
    now_ms: u64,
    deltas: &mut Deltas,
) -> Result<(), StoreError> {
    if let Some(key) = &meta.idempotency_key {
        let tenant = meta.tenant.as_str();
        let seen = tables.idempotency.get((tenant, key.as_str())).map_err(io_err)?.map(|v| v.value());
        if let Some((old_id, first_ms)) = seen {
            tables.idem_expiry.remove((first_ms, old_id)).map_err(io_err)?;
        }
        tables.idem_expiry.insert((now_ms, id), (tenant, key.as_str())).map_err(io_err)?;
        tables.idempotency.insert((tenant, key.as_str()), (id, now_ms)).map_err(io_err)?;
    }
    tables.triggers.insert(id, record).map_err(io_err)?;
    tables.bodies.insert(id, body).map_err(io_err)?;
    if let Some(t) = transformed {
        tables.transformed.insert(id, t).map_err(io_err)?;
    }
    tables.index_state(&meta.tenant, id, None, Some(meta.state))?;
    deltas.state(&meta.tenant, meta.state, 1);
    if meta.state == State::Pending {
        deltas.became_pending(&meta.tenant, id);
    }
    deltas.bytes += insert_cost(record, body, transformed) as i64;
    Ok(())
}

/// A stored record and its encoded length, if the trigger exists.
pub(crate) fn read(tables: &Tables<'_>, id: TriggerId) -> Result<Option<(TriggerMeta, usize)>, StoreError> {
    let Some(raw) = tables.triggers.get(id.as_u128()).map_err(io_err)? else { return Ok(None) };
    let raw = raw.value();
    let meta = TriggerMeta::decode(raw).map_err(|source| StoreError::Corrupt { id, source })?;
    Ok(Some((meta, raw.len())))
}

/// Replaces a trigger's record (`old` as stored, `old_len` bytes) with
/// `record` (the encoding of `new`), moving its index entries.
pub(crate) fn put(
    tables: &mut Tables<'_>,
    id: u128,
    (old, old_len): (&TriggerMeta, usize),
    new: &TriggerMeta,
    record: &[u8],
    transformed: Transformed<'_>,
    deltas: &mut Deltas,
) -> Result<(), StoreError> {
    tables.triggers.insert(id, record).map_err(io_err)?;
    tables.index_state(&old.tenant, id, Some(old.state), Some(new.state))?;
    let transformed_delta = match transformed {
        Transformed::Keep => 0,
        Transformed::Set(t) => t.len() as i64 - tables.transformed.insert(id, t).map_err(io_err)?.map_or(0, |b| b.value().len()) as i64,
        Transformed::Remove => -(tables.transformed.remove(id).map_err(io_err)?.map_or(0, |b| b.value().len()) as i64),
    };
    deltas.state(&old.tenant, old.state, -1);
    deltas.state(&old.tenant, new.state, 1);
    if new.state == State::Pending && old.state != State::Pending {
        deltas.became_pending(&old.tenant, id);
    }
    deltas.bytes += record.len() as i64 - old_len as i64 + transformed_delta;
    Ok(())
}

/// Removes a trigger (`old` as stored, `old_len` bytes), its bodies and index entries.
pub(crate) fn delete(
    tables: &mut Tables<'_>,
    id: u128,
    (old, old_len): (&TriggerMeta, usize),
    deltas: &mut Deltas,
) -> Result<(), StoreError> {
    tables.triggers.remove(id).map_err(io_err)?;
    tables.index_state(&old.tenant, id, Some(old.state), None)?;
    let body = tables.bodies.remove(id).map_err(io_err)?.map_or(0, |b| b.value().len());
    let transformed = tables.transformed.remove(id).map_err(io_err)?.map_or(0, |b| b.value().len());
    deltas.state(&old.tenant, old.state, -1);
    deltas.bytes -= (old_len + body + transformed) as i64 + PER_TRIGGER_OVERHEAD as i64;
    Ok(())
}

/// Forgets at most `max` idempotency keys first seen before `cutoff_ms`, oldest first.
pub(crate) fn sweep_idempotency(tables: &mut Tables<'_>, cutoff_ms: u64, max: usize) -> Result<(), StoreError> {
    let mut old = Vec::new();
    for entry in tables.idem_expiry.range((0, 0)..(cutoff_ms, 0)).map_err(io_err)?.take(max) {
        let (k, v) = entry.map_err(io_err)?;
        let (tenant, key) = v.value();
        old.push((k.value(), tenant.to_string(), key.to_string()));
    }
    for ((first_ms, id), tenant, key) in old {
        tables.idem_expiry.remove((first_ms, id)).map_err(io_err)?;
        let current = tables.idempotency.get((tenant.as_str(), key.as_str())).map_err(io_err)?.map(|v| v.value());
        if current == Some((id, first_ms)) {
            tables.idempotency.remove((tenant.as_str(), key.as_str())).map_err(io_err)?;
        }
    }
    Ok(())
}
