//! The writer thread of one shard: group commit.
//!
//! Whatever is queued when the writer comes round goes into one write
//! transaction with one fsync (`Durability::Immediate`), bounded by
//! `store.max_batch` and `store.max_batch_bytes` so a batch costs about one
//! fsync. Every caller's reply is sent only after `commit()` returned Ok: that
//! is the moment a trigger becomes durable, and the only moment ingest may
//! answer 2xx. A failed commit fails the whole batch (redb refuses further
//! writes on that handle), and the writer reopens the file before taking more.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use redb::{Durability, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use super::record::{State, TriggerMeta};
use super::tables::{self, Deltas, PER_TRIGGER_OVERHEAD, Tables};
use super::{Change, Inserted, NewTrigger, Shard, StoreError, io_err, open_database_in};
use crate::config::StoreConfig;
use crate::id::TriggerId;

pub(crate) enum Command {
    Insert { trigger: NewTrigger, reply: oneshot::Sender<Result<Inserted, StoreError>> },
    Update { id: TriggerId, change: Change, reply: oneshot::Sender<Result<bool, StoreError>> },
}

impl Command {
    fn bytes(&self) -> u64 {
        match self {
            Command::Insert { trigger, .. } => (trigger.body.len() + trigger.transformed.as_ref().map_or(0, |b| b.len())) as u64,
            Command::Update { .. } => 64,
        }
    }

    fn fail(self, err: impl Fn() -> StoreError) {
        // A dropped receiver means the caller gave up (client went away): nothing to do.
        match self {
            Command::Insert { reply, .. } => drop(reply.send(Err(err()))),
            Command::Update { reply, .. } => drop(reply.send(Err(err()))),
        }
    }
}

/// The disk budget, shared by all shards.
pub(crate) struct Budget {
    pub limit: u64,
    pub shards: Vec<Arc<Shard>>,
}

impl Budget {
    fn used(&self) -> u64 {
        self.shards.iter().map(|s| s.used_bytes.load(Ordering::Relaxed)).sum()
    }
}

/// An outcome waiting for the commit.
enum Done {
    Insert(oneshot::Sender<Result<Inserted, StoreError>>, Result<Inserted, StoreError>),
    Update(oneshot::Sender<Result<bool, StoreError>>, Result<bool, StoreError>),
}

pub(crate) struct Writer {
    shard: Arc<Shard>,
    metrics: Arc<crate::telemetry::Metrics>,
    budget: Budget,
    config: StoreConfig,
    next_sweep: Instant,
    next_reopen: Instant,
    changes: Arc<super::changes::Announcer>,
}

const SWEEP_EVERY: Duration = Duration::from_secs(10);
const SWEEP_MAX: usize = 1000;
const REOPEN_EVERY: Duration = Duration::from_secs(1);

impl Writer {
    pub(crate) fn new(
        shard: Arc<Shard>,
        budget: Budget,
        config: StoreConfig,
        metrics: Arc<crate::telemetry::Metrics>,
        changes: Arc<super::changes::Announcer>,
    ) -> Writer {
        let now = Instant::now();
        Writer { shard, metrics, budget, config, next_sweep: now, next_reopen: now, changes }
    }

    /// Runs until every sender is dropped and the queue is empty.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut carry: Option<Command> = None;
        loop {
            let first = match carry.take() {
                Some(c) => c,
                None => match rx.blocking_recv() {
                    Some(c) => c,
                    None => break,
                },
            };
            let mut bytes = first.bytes();
            let mut batch = vec![first];
            while batch.len() < self.config.max_batch as usize {
                match rx.try_recv() {
                    Ok(c) if bytes + c.bytes() > self.config.max_batch_bytes => {
                        carry = Some(c);
                        break;
                    }
                    Ok(c) => {
                        bytes += c.bytes();
                        batch.push(c);
                    }
                    Err(_) => break,
                }
            }
            self.commit_batch(batch);
        }
        tracing::debug!(shard = self.shard.index, "store writer stopped");
    }

    fn commit_batch(&mut self, batch: Vec<Command>) {
        if !self.shard.writable.load(Ordering::Relaxed) && !self.try_reopen() {
            let path = self.shard.path.display().to_string();
            for c in batch {
                c.fail(|| StoreError::Unavailable(format!("{path} failed a commit and could not be reopened yet")));
            }
            return;
        }
        let started = Instant::now();
        let count = batch.len();
        match self.apply(batch) {
            Ok((done, mut deltas)) => {
                self.metrics.commit(count, started.elapsed());
                // Announced before any reply: once a caller hears its commit
                // succeeded, subscribers have heard of it too.
                self.changes.publish(&std::mem::take(&mut deltas.became_pending));
                self.publish(deltas);
                for d in done {
                    match d {
                        Done::Insert(reply, r) => drop(reply.send(r.map(|i| Inserted { batch: count as u32, ..i }))),
                        Done::Update(reply, r) => drop(reply.send(r)),
                    }
                }
                tracing::trace!(shard = self.shard.index, batch = count, elapsed_us = started.elapsed().as_micros() as u64, "group commit");
            }
            Err((replies, err)) => {
                tracing::error!(shard = self.shard.index, file = %self.shard.path.display(), error = %err, batch = count,
                    "store commit failed; nothing in the batch was acknowledged; reopening the file");
                self.shard.writable.store(false, Ordering::Relaxed);
                let msg = err.to_string();
                for d in replies {
                    match d {
                        Done::Insert(reply, _) => drop(reply.send(Err(StoreError::Unavailable(msg.clone())))),
                        Done::Update(reply, _) => drop(reply.send(Err(StoreError::Unavailable(msg.clone())))),
                    }
                }
                self.next_reopen = Instant::now();
                self.try_reopen();
            }
        }
    }

    /// One transaction for the whole batch. On error, hands back every reply
    /// channel so each caller hears that nothing was committed.
    #[allow(clippy::type_complexity)]
    fn apply(&mut self, batch: Vec<Command>) -> Result<(Vec<Done>, Deltas), (Vec<Done>, StoreError)> {
        let mut done = Vec::with_capacity(batch.len());
        let db = match self.shard.database() {
            Ok(db) => db,
            Err(e) => return Err((placeholders(batch), e)),
        };
        let mut txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => return Err((placeholders(batch), io_err(e))),
        };
        if let Err(e) = txn.set_durability(Durability::Immediate) {
            return Err((placeholders(batch), StoreError::Io(e.to_string())));
        }
        let mut deltas = Deltas::default();
        // Idempotency keys are stamped and expired by Weir's clock: a step of the
        // system clock forgets none (see `clock.rs`).
        let now_ms = super::clock::now_ms();
        let mut tables = match Tables::open(&txn) {
            Ok(t) => t,
            Err(e) => return Err((placeholders(batch), e)),
        };
        let mut iter = batch.into_iter();
        while let Some(cmd) = iter.next() {
            let result = match cmd {
                Command::Insert { trigger, reply } => {
                    let r = self.insert(&mut tables, trigger, now_ms, &mut deltas);
                    match r {
                        Err(e) if !is_logical(&e) => {
                            done.push(Done::Insert(reply, Err(StoreError::Io(String::new()))));
                            Err(e)
                        }
                        r => {
                            done.push(Done::Insert(reply, r));
                            Ok(())
                        }
                    }
                }
                Command::Update { id, change, reply } => {
                    let r = update(&mut tables, id, change, &mut deltas);
                    match r {
                        Err(e) if !is_logical(&e) => {
                            done.push(Done::Update(reply, Err(StoreError::Io(String::new()))));
                            Err(e)
                        }
                        r => {
                            done.push(Done::Update(reply, r));
                            Ok(())
                        }
                    }
                }
            };
            if let Err(e) = result {
                done.extend(placeholders(iter.collect()));
                return Err((done, e));
            }
        }
        if Instant::now() >= self.next_sweep {
            self.next_sweep = Instant::now() + SWEEP_EVERY;
            if let Err(e) = sweep_idempotency(&mut tables, now_ms.saturating_sub(self.config.idempotency_window_secs * 1000)) {
                return Err((done, e));
            }
        }
        drop(tables);
        if let Err(e) = deltas.write(&txn) {
            return Err((done, e));
        }
        #[cfg(test)]
        if self.shard.fail_commits.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            // Dropping the transaction aborts it, as a failed commit leaves nothing.
            return Err((done, StoreError::Io("injected commit failure".into())));
        }
        match txn.commit() {
            Ok(()) => Ok((done, deltas)),
            Err(e) => Err((done, io_err(e))),
        }
    }

    fn insert(&self, tables: &mut Tables<'_>, t: NewTrigger, now_ms: u64, deltas: &mut Deltas) -> Result<Inserted, StoreError> {
        let id = t.id.as_u128();
        let mut expired: Option<(u64, u128)> = None;
        if let Some(key) = &t.meta.idempotency_key {
            let seen = tables.idempotency.get((t.meta.tenant.as_str(), key.as_str())).map_err(io_err)?.map(|v| v.value());
            if let Some((old_id, first_ms)) = seen {
                if first_ms + self.config.idempotency_window_secs * 1000 > now_ms {
                    let state = existing_state(tables, old_id)?.unwrap_or(t.meta.state);
                    return Ok(Inserted { id: TriggerId::from_u128(old_id), duplicate: true, state, batch: 0 });
                }
                expired = Some((first_ms, old_id));
            }
        }
        let record = t.meta.encode().map_err(|e| StoreError::Invalid(e.to_string()))?;
        let cost = record.len() as u64 + t.body.len() as u64 + t.transformed.as_ref().map_or(0, |b| b.len() as u64) + PER_TRIGGER_OVERHEAD;
        // Checked before anything is written, so a refused trigger leaves no trace.
        let used = self.budget.used().saturating_add_signed(deltas.bytes);
        if used + cost > self.budget.limit {
            return Err(StoreError::Full { used, budget: self.budget.limit });
        }
        if let Some(key) = &t.meta.idempotency_key {
            if let Some(old) = expired {
                tables.idem_expiry.remove(old).map_err(io_err)?;
            }
            tables.idem_expiry.insert((now_ms, id), (t.meta.tenant.as_str(), key.as_str())).map_err(io_err)?;
            tables.idempotency.insert((t.meta.tenant.as_str(), key.as_str()), (id, now_ms)).map_err(io_err)?;
        }
        tables.triggers.insert(id, record.as_slice()).map_err(io_err)?;
        tables.bodies.insert(id, t.body.as_ref()).map_err(io_err)?;
        if let Some(tb) = &t.transformed {
            tables.transformed.insert(id, tb.as_ref()).map_err(io_err)?;
        }
        tables.index_state(&t.meta.tenant, id, None, Some(t.meta.state))?;
        deltas.state(&t.meta.tenant, t.meta.state, 1);
        if t.meta.state == State::Pending {
            deltas.became_pending(&t.meta.tenant, id);
        }
        deltas.bytes += cost as i64;
        Ok(Inserted { id: t.id, duplicate: false, state: t.meta.state, batch: 0 })
    }

    /// Makes a committed batch visible to stats and the budget.
    fn publish(&self, deltas: Deltas) {
        for (i, d) in deltas.counts.iter().enumerate() {
            apply_delta(&self.shard.counts[i], *d);
        }
        apply_delta(&self.shard.used_bytes, deltas.bytes);
        if !deltas.tenant_pending.is_empty() {
            let mut map = self.shard.tenant_pending.lock().unwrap_or_else(|e| e.into_inner());
            for (t, d) in deltas.tenant_pending {
                let v = map.entry(t).or_default();
                *v = v.saturating_add_signed(d);
            }
        }
    }

    /// Drops the failed handle and opens the file again (at most once a second).
    fn try_reopen(&mut self) -> bool {
        if Instant::now() < self.next_reopen {
            return false;
        }
        self.next_reopen = Instant::now() + REOPEN_EVERY;
        let old = self.shard.db.write().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut arc) = old {
            // Readers hold clones only for the length of one read; wait them out.
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                match Arc::try_unwrap(arc) {
                    Ok(db) => {
                        drop(db);
                        break;
                    }
                    Err(a) if Instant::now() < deadline => {
                        arc = a;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err(a) => {
                        *self.shard.db.write().unwrap_or_else(|e| e.into_inner()) = Some(a);
                        return false;
                    }
                }
            }
        }
        match open_database_in(&self.shard.files, &self.shard.path, self.config.cache_mb).and_then(|db| tables::init(&db).map(|c| (db, c)))
        {
            Ok((db, (counts, used, tenant_pending))) => {
                for (slot, c) in self.shard.counts.iter().zip(counts) {
                    slot.store(c, Ordering::Relaxed);
                }
                *self.shard.tenant_pending.lock().unwrap_or_else(|e| e.into_inner()) = tenant_pending;
                self.shard.used_bytes.store(used, Ordering::Relaxed);
                *self.shard.db.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(db));
                self.shard.writable.store(true, Ordering::Relaxed);
                tracing::warn!(shard = self.shard.index, file = %self.shard.path.display(), "store file reopened; accepting writes again");
                true
            }
            Err(e) => {
                tracing::error!(shard = self.shard.index, error = %e, "store file could not be reopened; retrying every second");
                false
            }
        }
    }
}

fn update(tables: &mut Tables<'_>, id: TriggerId, change: Change, deltas: &mut Deltas) -> Result<bool, StoreError> {
    let key = id.as_u128();
    let Some(old) = tables.triggers.get(key).map_err(io_err)?.map(|v| v.value().to_vec()) else { return Ok(false) };
    let mut meta = TriggerMeta::decode(&old).map_err(|source| StoreError::Corrupt { id, source })?;
    let old_state = meta.state;
    deltas.state(&meta.tenant, old_state, -1);
    match change {
        Change::SetState { state, attempt, note } => {
            meta.state = state;
            if let Some(a) = attempt {
                meta.attempts.push(a);
            }
            if note.is_some() {
                meta.note = note;
            }
            let record = meta.encode().map_err(|e| StoreError::Invalid(e.to_string()))?;
            tables.triggers.insert(key, record.as_slice()).map_err(io_err)?;
            tables.index_state(&meta.tenant, key, Some(old_state), Some(state))?;
            deltas.state(&meta.tenant, state, 1);
            if state == State::Pending && old_state != State::Pending {
                deltas.became_pending(&meta.tenant, key);
            }
            deltas.bytes += record.len() as i64 - old.len() as i64;
        }
        Change::Replace { meta: new_meta, transformed } => {
            let mut new_meta = *new_meta;
            // Identity and the raw body are immutable; only the rest is replaced.
            new_meta.tenant = meta.tenant.clone();
            new_meta.received_at_ms = meta.received_at_ms;
            new_meta.body_len = meta.body_len;
            new_meta.has_transformed = transformed.is_some();
            let record = new_meta.encode().map_err(|e| StoreError::Invalid(e.to_string()))?;
            tables.triggers.insert(key, record.as_slice()).map_err(io_err)?;
            tables.index_state(&meta.tenant, key, Some(old_state), Some(new_meta.state))?;
            let old_t = match &transformed {
                Some(t) => tables.transformed.insert(key, t.as_slice()).map_err(io_err)?.map_or(0, |b| b.value().len()),
                None => tables.transformed.remove(key).map_err(io_err)?.map_or(0, |b| b.value().len()),
            };
            deltas.state(&meta.tenant, new_meta.state, 1);
            if new_meta.state == State::Pending && old_state != State::Pending {
                deltas.became_pending(&meta.tenant, key);
            }
            deltas.bytes += record.len() as i64 - old.len() as i64 + transformed.as_ref().map_or(0, |t| t.len()) as i64 - old_t as i64;
        }
        Change::Delete => {
            tables.triggers.remove(key).map_err(io_err)?;
            tables.index_state(&meta.tenant, key, Some(old_state), None)?;
            let body = tables.bodies.remove(key).map_err(io_err)?.map_or(0, |b| b.value().len());
            let transformed = tables.transformed.remove(key).map_err(io_err)?.map_or(0, |b| b.value().len());
            deltas.bytes -= (old.len() + body + transformed) as i64 + PER_TRIGGER_OVERHEAD as i64;
        }
    }
    Ok(true)
}

fn existing_state(tables: &Tables<'_>, id: u128) -> Result<Option<State>, StoreError> {
    let raw = tables.triggers.get(id).map_err(io_err)?;
    Ok(raw.and_then(|r| TriggerMeta::decode(r.value()).ok()).map(|m| m.state))
}

/// Forgets idempotency keys first seen before `cutoff_ms`, a bounded number per batch.
fn sweep_idempotency(tables: &mut Tables<'_>, cutoff_ms: u64) -> Result<(), StoreError> {
    let mut old = Vec::new();
    for entry in tables.idem_expiry.range((0, 0)..(cutoff_ms, 0)).map_err(io_err)?.take(SWEEP_MAX) {
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

/// Errors that concern one command only; the transaction is still sound.
fn is_logical(e: &StoreError) -> bool {
    matches!(e, StoreError::Full { .. } | StoreError::Invalid(_) | StoreError::Corrupt { .. })
}

/// Reply slots for commands that were never applied.
fn placeholders(batch: Vec<Command>) -> Vec<Done> {
    batch
        .into_iter()
        .map(|c| match c {
            Command::Insert { reply, .. } => Done::Insert(reply, Err(StoreError::Io(String::new()))),
            Command::Update { reply, .. } => Done::Update(reply, Err(StoreError::Io(String::new()))),
        })
        .collect()
}

fn apply_delta(slot: &std::sync::atomic::AtomicU64, d: i64) {
    if d >= 0 {
        slot.fetch_add(d as u64, Ordering::Relaxed);
    } else {
        // Counters never go below zero even if a delta overshoots.
        let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| Some(v.saturating_sub(d.unsigned_abs())));
    }
}
