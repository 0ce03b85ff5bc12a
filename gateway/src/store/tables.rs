//! redb table definitions and the reads and writes over them.
//!
//! | table | key | value |
//! |---|---|---|
//! | `triggers` | id (`u128`) | record, see [`super::record`] |
//! | `bodies` | id | raw body bytes |
//! | `transformed` | id | the plugin's output body, when it changed the body |
//! | `by_state` | (state code, id) | `()`: an index, so "oldest pending" is one seek |
//! | `pending_by_tenant` | (tenant, id) | `()`: pending triggers per tenant, for fair forwarding |
//! | `idempotency` | (tenant, key) | (id, first seen ms) |
//! | `idem_expiry` | (first seen ms, id) | (tenant, key): lets the sweeper find old keys in order |
//! | `counters` | name | `u64`: per-state counts and live bytes, updated in the same transaction |

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition, WriteTransaction};

use super::record::{State, TriggerMeta};
use super::{StoreError, StoredTrigger, io_err};
use crate::id::TriggerId;

pub(crate) const TRIGGERS: TableDefinition<u128, &[u8]> = TableDefinition::new("triggers");
pub(crate) const BODIES: TableDefinition<u128, &[u8]> = TableDefinition::new("bodies");
pub(crate) const TRANSFORMED: TableDefinition<u128, &[u8]> = TableDefinition::new("transformed");
pub(crate) const BY_STATE: TableDefinition<(u8, u128), ()> = TableDefinition::new("by_state");
pub(crate) const PENDING_BY_TENANT: TableDefinition<(&str, u128), ()> = TableDefinition::new("pending_by_tenant");
pub(crate) const IDEMPOTENCY: TableDefinition<(&str, &str), (u128, u64)> = TableDefinition::new("idempotency");
pub(crate) const IDEM_EXPIRY: TableDefinition<(u64, u128), (&str, &str)> = TableDefinition::new("idem_expiry");
pub(crate) const COUNTERS: TableDefinition<&str, u64> = TableDefinition::new("counters");

pub(crate) const USED_BYTES: &str = "used_bytes";
/// The journal position a shard file holds the changes of (see `journal.rs`).
pub(crate) const JOURNAL_EPOCH: &str = "journal_epoch";
pub(crate) const JOURNAL_SEQ: &str = "journal_seq";

/// Bytes charged to the budget per trigger beyond its record and bodies:
/// index entries and B-tree overhead, measured roughly on this format.
pub(crate) const PER_TRIGGER_OVERHEAD: u64 = 96;

pub(crate) fn counter_name(state: State) -> &'static str {
    match state {
        State::Pending => "count_pending",
        State::Delivered => "count_delivered",
        State::Dead => "count_dead",
        State::Quarantined => "count_quarantined",
    }
}

/// What `init` loads: counts per state, live bytes, pending per tenant.
pub(crate) type Loaded = ([u64; 4], u64, std::collections::HashMap<String, u64>);

/// Creates missing tables and loads the counters.
pub(crate) fn init(db: &Database) -> Result<Loaded, StoreError> {
    let txn = db.begin_write().map_err(io_err)?;
    {
        txn.open_table(TRIGGERS).map_err(io_err)?;
        txn.open_table(BODIES).map_err(io_err)?;
        txn.open_table(TRANSFORMED).map_err(io_err)?;
        txn.open_table(BY_STATE).map_err(io_err)?;
        txn.open_table(PENDING_BY_TENANT).map_err(io_err)?;
        txn.open_table(IDEMPOTENCY).map_err(io_err)?;
        txn.open_table(IDEM_EXPIRY).map_err(io_err)?;
        txn.open_table(COUNTERS).map_err(io_err)?;
    }
    txn.commit().map_err(io_err)?;
    load(db)
}

/// Loads the counters.
pub(crate) fn load(db: &Database) -> Result<Loaded, StoreError> {
    let read = db.begin_read().map_err(io_err)?;
    let counters = read.open_table(COUNTERS).map_err(io_err)?;
    let get = |name: &str| counter(&counters, name);
    let mut counts = [0u64; 4];
    for st in State::ALL {
        counts[st.code() as usize] = get(counter_name(st))?;
    }
    let mut tenant_pending = std::collections::HashMap::new();
    let end = format!("{}\u{10FFFF}", TENANT_PENDING_PREFIX);
    for entry in counters.range(TENANT_PENDING_PREFIX..end.as_str()).map_err(io_err)? {
        let (k, v) = entry.map_err(io_err)?;
        if let Some(t) = k.value().strip_prefix(TENANT_PENDING_PREFIX) {
            tenant_pending.insert(t.to_string(), v.value());
        }
    }
    Ok((counts, get(USED_BYTES)?, tenant_pending))
}

/// A counter's value (0 when it was never written).
fn counter(counters: &impl ReadableTable<&'static str, u64>, name: &str) -> Result<u64, StoreError> {
    Ok(counters.get(name).map_err(io_err)?.map(|v| v.value()).unwrap_or(0))
}

/// The journal position (epoch, last sequence number) `db` holds the changes of.
pub(crate) fn journal_position(db: &Database) -> Result<(u64, u64), StoreError> {
    let read = db.begin_read().map_err(io_err)?;
    let counters = read.open_table(COUNTERS).map_err(io_err)?;
    Ok((counter(&counters, JOURNAL_EPOCH)?, counter(&counters, JOURNAL_SEQ)?))
}

/// Records in `txn` that it holds the journal's changes up to (epoch, seq).
pub(crate) fn set_journal_position(txn: &WriteTransaction, epoch: u64, seq: u64) -> Result<(), StoreError> {
    let mut counters = txn.open_table(COUNTERS).map_err(io_err)?;
    counters.insert(JOURNAL_EPOCH, epoch).map_err(io_err)?;
    counters.insert(JOURNAL_SEQ, seq).map_err(io_err)?;
    Ok(())
}

pub(crate) fn read_trigger(db: &Database, id: TriggerId) -> Result<Option<StoredTrigger>, StoreError> {
    let txn = db.begin_read().map_err(io_err)?;
    let triggers = txn.open_table(TRIGGERS).map_err(io_err)?;
    let Some(raw) = triggers.get(id.as_u128()).map_err(io_err)? else { return Ok(None) };
    let meta = TriggerMeta::decode(raw.value()).map_err(|source| StoreError::Corrupt { id, source })?;
    let bodies = txn.open_table(BODIES).map_err(io_err)?;
    let body = bodies.get(id.as_u128()).map_err(io_err)?.map(|b| b.value().to_vec()).unwrap_or_default();
    let transformed = if meta.has_transformed {
        let t = txn.open_table(TRANSFORMED).map_err(io_err)?;
        t.get(id.as_u128()).map_err(io_err)?.map(|b| b.value().to_vec())
    } else {
        None
    };
    Ok(Some(StoredTrigger { id, meta, body, transformed }))
}

pub(crate) fn ids_in_state(db: &Database, state: State, after: Option<TriggerId>, limit: usize) -> Result<Vec<TriggerId>, StoreError> {
    let txn = db.begin_read().map_err(io_err)?;
    let index = txn.open_table(BY_STATE).map_err(io_err)?;
    let code = state.code();
    let start = match after {
        Some(id) if id.as_u128() == u128::MAX => return Ok(Vec::new()),
        Some(id) => id.as_u128() + 1,
        None => 0,
    };
    let mut out = Vec::new();
    for entry in index.range((code, start)..=(code, u128::MAX)).map_err(io_err)? {
        let (k, _) = entry.map_err(io_err)?;
        out.push(TriggerId::from_u128(k.value().1));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// A tenant's pending ids, oldest first, after `after`; at most `limit`.
pub(crate) fn pending_of_tenant(db: &Database, tenant: &str, after: Option<TriggerId>, limit: usize) -> Result<Vec<TriggerId>, StoreError> {
    let txn = db.begin_read().map_err(io_err)?;
    let index = txn.open_table(PENDING_BY_TENANT).map_err(io_err)?;
    let start = match after {
        Some(id) if id.as_u128() == u128::MAX => return Ok(Vec::new()),
        Some(id) => id.as_u128() + 1,
        None => 0,
    };
    let mut out = Vec::new();
    for entry in index.range((tenant, start)..=(tenant, u128::MAX)).map_err(io_err)? {
        let (k, _) = entry.map_err(io_err)?;
        out.push(TriggerId::from_u128(k.value().1));
        if out.len() >= limit {
            break;
        }
    }
    Ok(out)
}

/// Like [`pending_of_tenant`], with each trigger's route, for the
/// forwarder's lanes. The index and the records are read in one transaction,
/// so they agree.
pub(crate) fn pending_routes_of_tenant(
    db: &Database,
    tenant: &str,
    after: Option<TriggerId>,
    limit: usize,
) -> Result<Vec<(TriggerId, Option<String>)>, StoreError> {
    let txn = db.begin_read().map_err(io_err)?;
    let index = txn.open_table(PENDING_BY_TENANT).map_err(io_err)?;
    let triggers = txn.open_table(TRIGGERS).map_err(io_err)?;
    let start = match after {
        Some(id) if id.as_u128() == u128::MAX => return Ok(Vec::new()),
        Some(id) => id.as_u128() + 1,
        None => 0,
    };
    let mut out = Vec::new();
    for entry in index.range((tenant, start)..=(tenant, u128::MAX)).map_err(io_err)?.take(limit) {
        let id = TriggerId::from_u128(entry.map_err(io_err)?.0.value().1);
        // An unreadable record takes the default route; reading it to send
        // it reports the corruption.
        let route = triggers.get(id.as_u128()).map_err(io_err)?.and_then(|raw| TriggerMeta::decode(raw.value()).ok()?.route);
        out.push((id, route));
    }
    Ok(out)
}

/// Every table a write batch touches, opened once per transaction (opening
/// a table costs a lookup in redb's table tree: per trigger it adds up).
pub(crate) struct Tables<'t> {
    pub triggers: redb::Table<'t, u128, &'static [u8]>,
    pub bodies: redb::Table<'t, u128, &'static [u8]>,
    pub transformed: redb::Table<'t, u128, &'static [u8]>,
    pub by_state: redb::Table<'t, (u8, u128), ()>,
    pub pending: redb::Table<'t, (&'static str, u128), ()>,
    pub idempotency: redb::Table<'t, (&'static str, &'static str), (u128, u64)>,
    pub idem_expiry: redb::Table<'t, (u64, u128), (&'static str, &'static str)>,
}

impl<'t> Tables<'t> {
    pub fn open(txn: &'t WriteTransaction) -> Result<Tables<'t>, StoreError> {
        Ok(Tables {
            triggers: txn.open_table(TRIGGERS).map_err(io_err)?,
            bodies: txn.open_table(BODIES).map_err(io_err)?,
            transformed: txn.open_table(TRANSFORMED).map_err(io_err)?,
            by_state: txn.open_table(BY_STATE).map_err(io_err)?,
            pending: txn.open_table(PENDING_BY_TENANT).map_err(io_err)?,
            idempotency: txn.open_table(IDEMPOTENCY).map_err(io_err)?,
            idem_expiry: txn.open_table(IDEM_EXPIRY).map_err(io_err)?,
        })
    }

    /// Keeps `by_state` and `pending_by_tenant` in step with a trigger's state.
    pub fn index_state(&mut self, tenant: &str, id: u128, old: Option<State>, new: Option<State>) -> Result<(), StoreError> {
        if let Some(old) = old {
            self.by_state.remove((old.code(), id)).map_err(io_err)?;
        }
        if let Some(new) = new {
            self.by_state.insert((new.code(), id), ()).map_err(io_err)?;
        }
        let was = old == Some(State::Pending);
        let is = new == Some(State::Pending);
        if was != is {
            if is {
                self.pending.insert((tenant, id), ()).map_err(io_err)?;
            } else {
                self.pending.remove((tenant, id)).map_err(io_err)?;
            }
        }
        Ok(())
    }
}

/// Per-batch changes to the counters, written once per transaction.
#[derive(Default, Debug, Clone)]
pub(crate) struct Deltas {
    pub counts: [i64; 4],
    pub bytes: i64,
    /// Pending count changes per tenant (for per-tenant backlog metrics).
    pub tenant_pending: std::collections::HashMap<String, i64>,
    /// Per tenant, the lowest id that became pending: announced after commit.
    pub became_pending: std::collections::HashMap<String, u128>,
}

/// Counter key of a tenant's pending count.
pub(crate) const TENANT_PENDING_PREFIX: &str = "pending:";

impl Deltas {
    pub fn is_zero(&self) -> bool {
        self.bytes == 0 && self.counts.iter().all(|c| *c == 0) && self.tenant_pending.values().all(|d| *d == 0)
    }

    /// A trigger of `tenant` entered (`delta` 1) or left (-1) `state`.
    pub fn state(&mut self, tenant: &str, state: State, delta: i64) {
        self.counts[state.code() as usize] += delta;
        if state == State::Pending {
            *self.tenant_pending.entry(tenant.to_string()).or_default() += delta;
        }
    }

    /// Trigger `id` of `tenant` became pending (inserted, or moved from another state).
    pub fn became_pending(&mut self, tenant: &str, id: u128) {
        let low = self.became_pending.entry(tenant.to_string()).or_insert(id);
        *low = (*low).min(id);
    }

    pub fn write(&self, txn: &WriteTransaction) -> Result<(), StoreError> {
        if self.is_zero() {
            return Ok(());
        }
        let mut counters = txn.open_table(COUNTERS).map_err(io_err)?;
        let mut bump = |name: &str, delta: i64| -> Result<(), StoreError> {
            if delta == 0 {
                return Ok(());
            }
            let old = counters.get(name).map_err(io_err)?.map(|v| v.value()).unwrap_or(0);
            counters.insert(name, old.saturating_add_signed(delta)).map_err(io_err)?;
            Ok(())
        };
        for st in State::ALL {
            bump(counter_name(st), self.counts[st.code() as usize])?;
        }
        for (tenant, d) in &self.tenant_pending {
            bump(&format!("{TENANT_PENDING_PREFIX}{tenant}"), *d)?;
        }
        bump(USED_BYTES, self.bytes)
    }
}
