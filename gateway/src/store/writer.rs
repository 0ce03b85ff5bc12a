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

use redb::{Database, Durability, ReadableTable};
use tokio::sync::{mpsc, oneshot};

use super::apply::{self, Transformed};
use super::journal::{Entry, Journal, Record};
use super::record::{State, TriggerMeta};
use super::tables::{self, Deltas, Tables};
use super::{Change, Inserted, NewTrigger, Shard, StoreError, io_err, open_shard};
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
    /// `None` after a failed append, until the shard is reopened.
    journal: Option<Journal>,
    /// The last batch's journal record buffer, reused by the next batch.
    record_buffer: Vec<u8>,
}

/// A checkpoint costs redb ~0.5 ms plus ~40 µs for every non-durable commit
/// since the last one (its freed-page bookkeeping, deferred; BENCHMARKS.md,
/// "issue 19"). So journal records, one per commit, bound how long one
/// checkpoint stalls the writer: at most `MAX_RECORDS` (~5 ms), and
/// `IDLE_RECORDS` (~1.8 ms) when the queue is empty.
const MAX_RECORDS: u64 = 128;
const IDLE_RECORDS: u64 = 32;
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
        journal: Journal,
    ) -> Writer {
        let now = Instant::now();
        let record_buffer = Vec::new();
        Writer { shard, metrics, budget, config, next_sweep: now, next_reopen: now, changes, journal: Some(journal), record_buffer }
    }

    /// Runs until every sender is dropped and the queue is empty.
    pub(crate) fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        let mut carry: Option<Command> = None;
        loop {
            let first = match carry.take() {
                Some(c) => c,
                None => match rx.try_recv() {
                    Ok(c) => c,
                    Err(mpsc::error::TryRecvError::Disconnected) => break,
                    Err(mpsc::error::TryRecvError::Empty) => {
                        self.checkpoint_when_idle();
                        match rx.blocking_recv() {
                            Some(c) => c,
                            None => break,
                        }
                    }
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
        #[cfg(test)]
        if self.shard.skip_final_checkpoint.load(Ordering::Relaxed) {
            return;
        }
        // A clean stop leaves nothing to replay, and a file whose cached pages the next start may trust.
        if self.shard.writable.load(Ordering::Relaxed) {
            match self.checkpoint() {
                Ok(()) => self.close_cleanly(),
                Err(e) => {
                    tracing::warn!(shard = self.shard.index, error = %e, "final store checkpoint failed; the journal is replayed at the next start");
                }
            }
        }
        tracing::debug!(shard = self.shard.index, "store writer stopped");
    }

    /// Closes the file after the final checkpoint and, if redb's close synced
    /// without error too, marks the stop clean (`clean_stop.rs`). Readers
    /// after this find the shard unavailable, as during a reopen.
    fn close_cleanly(&mut self) {
        let Some(db) = self.take_database() else { return };
        let closed = db
            .close()
            .map_err(io_err)
            .and_then(|()| super::clean_stop::mark(&self.shard.files, &self.shard.path).map_err(|e| StoreError::Io(e.to_string())));
        if let Err(e) = closed {
            tracing::warn!(shard = self.shard.index, error = %e, "store file not closed cleanly; the next start reads it from the disk");
        }
    }

    /// Takes the shard's database out of reach of new readers and waits out
    /// the current ones (they hold clones for the length of one read). None
    /// if there is none, or a reader held on for 5 s (it is put back).
    fn take_database(&mut self) -> Option<Database> {
        let mut arc = self.shard.db.write().unwrap_or_else(|e| e.into_inner()).take()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match Arc::try_unwrap(arc) {
                Ok(db) => return Some(db),
                Err(a) if Instant::now() < deadline => {
                    arc = a;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(a) => {
                    *self.shard.db.write().unwrap_or_else(|e| e.into_inner()) = Some(a);
                    return None;
                }
            }
        }
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
        let mut entries = Record::reuse(std::mem::take(&mut self.record_buffer));
        let applied = self.apply(batch, &mut entries);
        let buffer = entries.into_buffer();
        // A record larger than the journal is never appended (the batch checkpoints): keep no more than that.
        if buffer.capacity() as u64 <= self.config.journal_bytes {
            self.record_buffer = buffer;
        }
        match applied {
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
    fn apply(&mut self, batch: Vec<Command>, entries: &mut Record) -> Result<(Vec<Done>, Deltas), (Vec<Done>, StoreError)> {
        let mut done = Vec::with_capacity(batch.len());
        let db = match self.shard.database() {
            Ok(db) => db,
            Err(e) => return Err((placeholders(batch), e)),
        };
        let mut txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => return Err((placeholders(batch), io_err(e))),
        };
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
                    let r = self.insert(&mut tables, trigger, now_ms, &mut deltas, entries);
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
                    let r = update(&mut tables, id, change, &mut deltas, entries);
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
            let cutoff_ms = now_ms.saturating_sub(self.config.idempotency_window_secs * 1000);
            if let Err(e) = apply::sweep_idempotency(&mut tables, cutoff_ms, SWEEP_MAX) {
                return Err((done, e));
            }
            entries.push(Entry::Sweep { cutoff_ms, max: SWEEP_MAX as u32 });
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
        match self.make_durable(&mut txn, entries) {
            Ok(checkpoint) => match txn.commit() {
                Ok(()) => {
                    if let (Some(epoch), Some(journal)) = (checkpoint, self.journal.as_mut()) {
                        journal.restart(epoch);
                    }
                    Ok((done, deltas))
                }
                Err(e) => Err((done, io_err(e))),
            },
            // Dropping the transaction aborts it: nothing of the batch is stored.
            Err(e) => Err((done, e)),
        }
    }

    /// Makes the batch in `txn` durable before it is committed: appends its
    /// entries to the journal and syncs them, or, when they do not fit, turns
    /// the commit into a checkpoint. Returns the epoch a checkpoint starts.
    fn make_durable(&mut self, txn: &mut redb::WriteTransaction, entries: &mut Record) -> Result<Option<u64>, StoreError> {
        let (max_records, _) = self.record_bounds();
        let Some(journal) = self.journal.as_mut() else {
            return Err(StoreError::Unavailable("the store journal failed and is being reopened".into()));
        };
        if !journal.fits(entries) || journal.records() >= max_records {
            self.metrics.checkpoint();
            return start_checkpoint(txn, journal).map(Some);
        }
        txn.set_durability(Durability::None).map_err(|e| StoreError::Io(e.to_string()))?;
        if entries.is_empty() {
            return Ok(None);
        }
        tables::set_journal_position(txn, journal.epoch(), journal.next_seq())?;
        if let Err(e) = journal.append(entries) {
            // After a failed sync the handle's cached pages cannot be trusted
            // (fsyncgate): the shard is reopened, which reopens the journal.
            self.journal = None;
            return Err(StoreError::Io(format!("journal append failed: {e}")));
        }
        Ok(None)
    }

    /// With nothing queued, checkpoints once the journal holds
    /// [`IDLE_RECORDS`]: what arrives meanwhile waits for a short checkpoint
    /// instead of a batch meeting a long one later.
    fn checkpoint_when_idle(&mut self) {
        let (_, idle_records) = self.record_bounds();
        let due = self.journal.as_ref().is_some_and(|j| j.records() >= idle_records);
        if !due || !self.shard.writable.load(Ordering::Relaxed) {
            return;
        }
        let started = Instant::now();
        match self.checkpoint() {
            Ok(()) => {
                tracing::trace!(shard = self.shard.index, elapsed_us = started.elapsed().as_micros() as u64, "idle checkpoint");
            }
            Err(e) => {
                // redb refuses writes after a failed commit: the next batch reopens the shard.
                tracing::error!(shard = self.shard.index, error = %e, "store checkpoint failed; reopening the file");
                self.shard.writable.store(false, Ordering::Relaxed);
                self.next_reopen = Instant::now();
            }
        }
    }

    /// Journal records at which to checkpoint: (always, when idle).
    fn record_bounds(&self) -> (u64, u64) {
        #[cfg(test)]
        if self.shard.checkpoint_only_when_full.load(Ordering::Relaxed) {
            return (u64::MAX, u64::MAX);
        }
        (MAX_RECORDS, IDLE_RECORDS)
    }

    /// Commits durably at the start of the next journal epoch: afterwards
    /// the journal holds nothing to replay.
    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let db = self.shard.database()?;
        let Some(journal) = self.journal.as_mut() else { return Ok(()) };
        let mut txn = db.begin_write().map_err(io_err)?;
        let epoch = start_checkpoint(&mut txn, journal)?;
        txn.commit().map_err(io_err)?;
        journal.restart(epoch);
        self.metrics.checkpoint();
        Ok(())
    }

    fn insert(
        &self,
        tables: &mut Tables<'_>,
        t: NewTrigger,
        now_ms: u64,
        deltas: &mut Deltas,
        entries: &mut Record,
    ) -> Result<Inserted, StoreError> {
        let id = t.id.as_u128();
        if let Some(key) = &t.meta.idempotency_key {
            let seen = tables.idempotency.get((t.meta.tenant.as_str(), key.as_str())).map_err(io_err)?.map(|v| v.value());
            if let Some((old_id, first_ms)) = seen
                && first_ms + self.config.idempotency_window_secs * 1000 > now_ms
            {
                let state = existing_state(tables, old_id)?.unwrap_or(t.meta.state);
                return Ok(Inserted { id: TriggerId::from_u128(old_id), duplicate: true, state, batch: 0 });
            }
        }
        let record = t.meta.encode().map_err(|e| StoreError::Invalid(e.to_string()))?;
        let transformed = t.transformed.as_deref();
        let cost = apply::insert_cost(&record, &t.body, transformed);
        // Checked before anything is written, so a refused trigger leaves no trace.
        let used = self.budget.used().saturating_add_signed(deltas.bytes);
        if used + cost > self.budget.limit {
            return Err(StoreError::Full { used, budget: self.budget.limit });
        }
        apply::insert(tables, id, &t.meta, &record, &t.body, transformed, now_ms, deltas)?;
        entries.push(Entry::Insert { id, now_ms, record: &record, body: &t.body, transformed });
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
        let open = self.shard.db.read().unwrap_or_else(|e| e.into_inner()).is_some();
        if open {
            match self.take_database() {
                Some(db) => drop(db),
                None => return false,
            }
        }
        match open_shard(&self.shard.files, &self.shard.path, &self.config) {
            Ok((db, journal, (counts, used, tenant_pending))) => {
                self.journal = Some(journal);
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

fn update(tables: &mut Tables<'_>, id: TriggerId, change: Change, deltas: &mut Deltas, entries: &mut Record) -> Result<bool, StoreError> {
    let key = id.as_u128();
    let Some((old, old_len)) = apply::read(tables, id)? else { return Ok(false) };
    let encode = |meta: &TriggerMeta| meta.encode().map_err(|e| StoreError::Invalid(e.to_string()));
    match change {
        Change::SetState { state, attempt, note } => {
            let mut meta = old.clone();
            meta.state = state;
            if let Some(a) = attempt {
                meta.attempts.push(a);
            }
            if note.is_some() {
                meta.note = note;
            }
            let record = encode(&meta)?;
            apply::put(tables, key, (&old, old_len), &meta, &record, Transformed::Keep, deltas)?;
            entries.push(Entry::Put { id: key, record: &record, transformed: Transformed::Keep });
        }
        Change::Replace { meta: new_meta, transformed } => {
            let mut meta = *new_meta;
            // Identity and the raw body are immutable; only the rest is replaced.
            meta.tenant = old.tenant.clone();
            meta.received_at_ms = old.received_at_ms;
            meta.body_len = old.body_len;
            meta.has_transformed = transformed.is_some();
            let record = encode(&meta)?;
            let transformed = transformed.as_deref().map_or(Transformed::Remove, Transformed::Set);
            apply::put(tables, key, (&old, old_len), &meta, &record, transformed, deltas)?;
            entries.push(Entry::Put { id: key, record: &record, transformed });
        }
        Change::Delete => {
            apply::delete(tables, key, (&old, old_len), deltas)?;
            entries.push(Entry::Delete { id: key });
        }
    }
    Ok(true)
}

/// Makes `txn` a checkpoint: durable, and holding everything up to the
/// start of the journal's next epoch, which it returns.
fn start_checkpoint(txn: &mut redb::WriteTransaction, journal: &Journal) -> Result<u64, StoreError> {
    txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
    let epoch = journal.epoch() + 1;
    tables::set_journal_position(txn, epoch, 0)?;
    Ok(epoch)
}

fn existing_state(tables: &Tables<'_>, id: u128) -> Result<Option<State>, StoreError> {
    let raw = tables.triggers.get(id).map_err(io_err)?;
    Ok(raw.and_then(|r| TriggerMeta::decode(r.value()).ok()).map(|m| m.state))
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
