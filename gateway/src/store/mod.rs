//! The durable buffer: triggers in sharded redb files, written by group commit.
//!
//! The store owns every byte on disk. It knows nothing of HTTP or Wasm: ingest
//! hands it a [`NewTrigger`] and gets an id back only once the transaction
//! holding it has committed with fsync durability.
//!
//! Layout: `store.path/shard-NN.redb`, one redb file per shard, each written
//! only by its own writer thread ([`writer`]). Parallel fsyncs on separate
//! files are what lets throughput grow past a single writer. A trigger with an
//! idempotency key always lands in the shard chosen by hashing (tenant, key),
//! so deduplication is a single-shard lookup; others are spread round-robin.
//! The shard count is fixed when the directory is created.

mod apply;
mod changes;
pub mod check;
mod clean_stop;
pub mod clock;
mod control;
mod disk;
#[cfg(test)]
pub(crate) mod fault;
mod journal;
mod list;
mod record;
pub mod retention;
pub mod snapshot;
mod tables;
mod writer;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use bytes::Bytes;
use redb::{Database, ReadableDatabase};
use tokio::sync::{mpsc, oneshot};

pub use changes::Subscription;
pub use control::{ControlFile, PluginVersion};
pub use list::{Filter, Order};
pub use record::{Attempt, DecodeError, FORMAT_VERSION, Outcome, State, TriggerMeta};
pub use snapshot::{RestoreError, RestoreSummary};

use crate::config::StoreConfig;
use crate::id::{IdGenerator, TriggerId};
use writer::Command;

/// Why the store could not do what was asked. Every variant says whether the
/// caller may retry: only [`StoreError::Full`] and [`StoreError::Unavailable`]
/// are Weir's own transient faults (ingest answers 503 with Retry-After).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "the store is over its disk budget ({used} of {budget} bytes used); delivered triggers are removed as they age out, or raise store.max_bytes"
    )]
    Full { used: u64, budget: u64 },
    #[error(
        "the store's filesystem is below its free-space reserve ({free} bytes free, store.min_free_bytes = {reserve}); free disk space"
    )]
    DiskLow { free: u64, reserve: u64 },
    #[error("the store cannot accept writes right now: {0}")]
    Unavailable(String),
    #[error("cannot open store file {path}: {reason}")]
    Open { path: PathBuf, reason: String },
    #[error("store I/O error: {0}")]
    Io(String),
    #[error("trigger record {id} is unreadable: {source}")]
    Corrupt { id: TriggerId, source: DecodeError },
    #[error("the trigger cannot be stored: {0}")]
    Invalid(String),
    #[error("the store is shutting down")]
    ShuttingDown,
}

impl StoreError {
    /// True for faults that clear by themselves: the caller should retry later.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Full { .. } | StoreError::DiskLow { .. } | StoreError::Unavailable(_) | StoreError::ShuttingDown)
    }
}

pub(crate) fn io_err<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Io(e.into().to_string())
}

/// A trigger as ingest hands it over.
#[derive(Debug, Clone)]
pub struct NewTrigger {
    pub id: TriggerId,
    pub meta: TriggerMeta,
    pub body: Bytes,
    /// The plugin's output body, when it changed the body.
    pub transformed: Option<Bytes>,
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inserted {
    pub id: TriggerId,
    /// The idempotency key was seen before: nothing new was stored.
    pub duplicate: bool,
    pub state: State,
    /// How many commands shared this trigger's group commit.
    pub batch: u32,
}

/// A trigger read back with its bodies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTrigger {
    pub id: TriggerId,
    pub meta: TriggerMeta,
    pub body: Vec<u8>,
    pub transformed: Option<Vec<u8>>,
}

/// Counts and sizes for `/v1/status` and `/readyz`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub quarantined: u64,
    /// Bytes of live triggers, what the budget counts.
    pub used_bytes: u64,
    pub budget_bytes: u64,
    /// Size of the redb files on disk (includes free pages redb will reuse).
    pub file_bytes: u64,
    pub oldest_pending_ms: Option<u64>,
    pub shards: usize,
    pub writable_shards: usize,
}

/// A state change requested by the forwarder or an operator.
#[derive(Debug, Clone)]
pub enum Change {
    /// Move to `state`, optionally recording a delivery attempt and a note
    /// (why it is dead or quarantined; `None` keeps the current note).
    SetState { state: State, attempt: Option<Attempt>, note: Option<String> },
    /// Remove the trigger and its bodies.
    Delete,
    /// Replace the record (state, headers, note, ...) and the transformed
    /// body (`None` removes it); used by replay. The raw body never changes.
    Replace { meta: Box<TriggerMeta>, transformed: Option<Vec<u8>> },
}

/// Handle to the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    shards: Vec<Arc<Shard>>,
    budget: u64,
    /// Free space the filesystem keeps (`store.min_free_bytes`).
    disk: disk::Reserve,
    ids: IdGenerator,
    round_robin: AtomicUsize,
    /// Announces each commit's newly pending triggers to subscribers.
    changes: Arc<changes::Announcer>,
}

/// One redb file and the channel to its writer thread.
pub(crate) struct Shard {
    pub(crate) index: usize,
    pub(crate) path: PathBuf,
    /// `None` while the writer reopens the file after a failed commit.
    pub(crate) db: RwLock<Option<Arc<Database>>>,
    pub(crate) writable: AtomicBool,
    pub(crate) counts: [AtomicU64; 4],
    pub(crate) used_bytes: AtomicU64,
    pub(crate) tenant_pending: Mutex<std::collections::HashMap<String, u64>>,
    pub(crate) files: Files,
    tx: Mutex<Option<mpsc::Sender<Command>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Tests: this many next commits fail as a failed `commit()` would.
    #[cfg(test)]
    pub(crate) fail_commits: std::sync::atomic::AtomicU32,
    /// Tests: the writer stops without its final checkpoint.
    #[cfg(test)]
    pub(crate) skip_final_checkpoint: AtomicBool,
    /// Tests: checkpoints only when the journal is full (not by record count, not when idle).
    #[cfg(test)]
    pub(crate) checkpoint_only_when_full: AtomicBool,
}

impl Shard {
    pub(crate) fn database(&self) -> Result<Arc<Database>, StoreError> {
        let slot = self.db.read().unwrap_or_else(|e| e.into_inner());
        slot.clone().ok_or_else(|| StoreError::Unavailable(format!("{} is being reopened after a failed commit", self.path.display())))
    }

    fn sender(&self) -> Option<mpsc::Sender<Command>> {
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Store {
    /// Opens (or creates) the store directory and starts one writer per shard.
    /// A file that exists but cannot be opened is an error naming the file:
    /// never a silent fresh start.
    pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
        Store::open_with(config, Arc::new(crate::telemetry::Metrics::new(100)))
    }

    /// Like [`Store::open`], recording commit metrics into `metrics`.
    /// A directory an unfinished restore left behind is refused.
    pub fn open_with(config: &StoreConfig, metrics: Arc<crate::telemetry::Metrics>) -> Result<Store, StoreError> {
        Store::open_checked(config, metrics, Files::default())
    }

    /// [`Store::open_with`], with the shard files opened through `files`.
    pub(crate) fn open_checked(config: &StoreConfig, metrics: Arc<crate::telemetry::Metrics>, files: Files) -> Result<Store, StoreError> {
        // Weir's clock reads the system clock once, now: see `clock.rs`.
        clock::now_ms();
        if config.path.join(snapshot::RESTORING_MARK).exists() {
            return Err(StoreError::Open {
                path: config.path.clone(),
                reason: format!(
                    "this directory is an unfinished `weir restore` (it holds {}): it is incomplete; delete it and run weir restore again",
                    snapshot::RESTORING_MARK
                ),
            });
        }
        Store::open_in(config, metrics, files)
    }

    /// Opens the directory without the restore check (a restore opens its own staging directory).
    fn open_dir(config: &StoreConfig, metrics: Arc<crate::telemetry::Metrics>) -> Result<Store, StoreError> {
        Store::open_in(config, metrics, Files::default())
    }

    /// Like [`Store::open_dir`], with the shard files opened through `files`.
    pub(crate) fn open_in(config: &StoreConfig, metrics: Arc<crate::telemetry::Metrics>, files: Files) -> Result<Store, StoreError> {
        let dir = config.path.clone();
        std::fs::create_dir_all(&dir).map_err(|e| StoreError::Open {
            path: dir.clone(),
            reason: format!("{e}; check that the directory is writable by this user"),
        })?;
        let shard_count = existing_shard_count(&dir)?.unwrap_or(config.shards as usize);
        if shard_count != config.shards as usize {
            tracing::warn!(
                existing = shard_count,
                configured = config.shards,
                "store.shards differs from the directory's shard count; using the directory's"
            );
        }
        let mut shards = Vec::with_capacity(shard_count);
        let mut journals = Vec::with_capacity(shard_count);
        for index in 0..shard_count {
            let path = dir.join(format!("shard-{index:02}.redb"));
            let (db, journal, (counts, used, tenant_pending)) = open_shard(&files, &path, config)?;
            journals.push(journal);
            shards.push(Arc::new(Shard {
                index,
                path,
                db: RwLock::new(Some(Arc::new(db))),
                writable: AtomicBool::new(true),
                counts: counts.map(AtomicU64::new),
                used_bytes: AtomicU64::new(used),
                tenant_pending: Mutex::new(tenant_pending),
                files: files.clone(),
                tx: Mutex::new(None),
                thread: Mutex::new(None),
                #[cfg(test)]
                fail_commits: std::sync::atomic::AtomicU32::new(0),
                #[cfg(test)]
                skip_final_checkpoint: AtomicBool::new(false),
                #[cfg(test)]
                checkpoint_only_when_full: AtomicBool::new(false),
            }));
        }
        let store = Store {
            inner: Arc::new(Inner {
                dir,
                shards,
                budget: config.max_bytes,
                disk: disk::Reserve::new(config.min_free_bytes),
                ids: IdGenerator::default(),
                round_robin: AtomicUsize::new(0),
                changes: Arc::new(changes::Announcer::default()),
            }),
        };
        for (shard, journal) in store.inner.shards.iter().zip(journals) {
            let (tx, rx) = mpsc::channel(config.max_batch as usize * 4);
            let w = writer::Writer::new(
                shard.clone(),
                store.clone_budget(),
                config.clone(),
                metrics.clone(),
                store.inner.changes.clone(),
                journal,
            );
            let handle = std::thread::Builder::new()
                .name(format!("weir-store-{}", shard.index))
                .spawn(move || w.run(rx))
                .map_err(|e| StoreError::Open { path: shard.path.clone(), reason: format!("cannot start writer thread: {e}") })?;
            *shard.tx.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx);
            *shard.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(handle);
        }
        Ok(store)
    }

    fn clone_budget(&self) -> writer::Budget {
        writer::Budget { limit: self.inner.budget, shards: self.inner.shards.clone() }
    }

    /// Subscribes to commit announcements: after each commit, which tenants
    /// got triggers that became pending and the lowest such id (see
    /// `store/changes.rs`). The forwarder learns of work only this way.
    pub fn subscribe(&self) -> Subscription {
        self.inner.changes.subscribe()
    }

    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// A fresh id for a trigger that arrived at `at`.
    pub fn next_id(&self, at: SystemTime) -> TriggerId {
        self.inner.ids.next(at)
    }

    /// Commits the trigger durably (fsync) and only then returns. Below the
    /// free-space reserve it is refused ([`StoreError::DiskLow`]) untouched.
    pub async fn insert(&self, trigger: NewTrigger) -> Result<Inserted, StoreError> {
        self.inner.disk.check(&self.inner.dir)?;
        let shard = self.shard_for(&trigger.meta);
        let (reply, rx) = oneshot::channel();
        self.send(shard, Command::Insert { trigger, reply }).await?;
        rx.await.map_err(|_| StoreError::ShuttingDown)?
    }

    /// Applies a change durably; `Ok(false)` when no such trigger exists.
    pub async fn update(&self, id: TriggerId, change: Change) -> Result<bool, StoreError> {
        // With one shard there is nothing to look up: the writer answers
        // `false` itself when the trigger does not exist.
        let shard = if self.inner.shards.len() == 1 {
            0
        } else {
            let Some(shard) = self.locate(id).await? else { return Ok(false) };
            shard
        };
        let (reply, rx) = oneshot::channel();
        self.send(shard, Command::Update { id, change, reply }).await?;
        rx.await.map_err(|_| StoreError::ShuttingDown)?
    }

    async fn send(&self, shard: usize, cmd: Command) -> Result<(), StoreError> {
        let sender = self.inner.shards[shard].sender().ok_or(StoreError::ShuttingDown)?;
        sender.send(cmd).await.map_err(|_| StoreError::ShuttingDown)
    }

    fn shard_for(&self, meta: &TriggerMeta) -> usize {
        let n = self.inner.shards.len();
        match &meta.idempotency_key {
            Some(key) => {
                let mut h = std::hash::DefaultHasher::new();
                (meta.tenant.as_str(), key.as_str()).hash(&mut h);
                (h.finish() % n as u64) as usize
            }
            None => self.inner.round_robin.fetch_add(1, Ordering::Relaxed) % n,
        }
    }

    /// Which shard holds `id`, if any.
    async fn locate(&self, id: TriggerId) -> Result<Option<usize>, StoreError> {
        let shards = self.inner.shards.clone();
        blocking(move || {
            for shard in &shards {
                let db = shard.database()?;
                let txn = db.begin_read().map_err(io_err)?;
                let table = txn.open_table(tables::TRIGGERS).map_err(io_err)?;
                if table.get(id.as_u128()).map_err(io_err)?.is_some() {
                    return Ok(Some(shard.index));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Reads one trigger with its bodies.
    pub async fn get(&self, id: TriggerId) -> Result<Option<StoredTrigger>, StoreError> {
        let shards = self.inner.shards.clone();
        blocking(move || {
            for shard in &shards {
                if let Some(t) = tables::read_trigger(&*shard.database()?, id)? {
                    return Ok(Some(t));
                }
            }
            Ok(None)
        })
        .await
    }

    /// Ids in `state`, oldest first, starting after `after`; at most `limit`.
    pub async fn ids_in_state(&self, state: State, after: Option<TriggerId>, limit: usize) -> Result<Vec<TriggerId>, StoreError> {
        let shards = self.inner.shards.clone();
        blocking(move || {
            let mut all = Vec::new();
            for shard in &shards {
                all.extend(tables::ids_in_state(&*shard.database()?, state, after, limit)?);
            }
            all.sort();
            all.truncate(limit);
            Ok(all)
        })
        .await
    }

    /// One page of triggers matching `filter`, after the cursor `after`, and
    /// the cursor of the next page (`None` at the end).
    pub async fn list(
        &self,
        filter: Filter,
        after: Option<TriggerId>,
        limit: usize,
        order: Order,
    ) -> Result<(Vec<(TriggerId, TriggerMeta)>, Option<TriggerId>), StoreError> {
        const SCAN_CAP: usize = 10_000;
        let shards = self.inner.shards.clone();
        blocking(move || {
            let mut pages = Vec::with_capacity(shards.len());
            for shard in &shards {
                pages.push(list::list_shard(&*shard.database()?, &filter, after, limit, order, SCAN_CAP)?);
            }
            Ok(list::merge(pages, limit, order))
        })
        .await
    }

    /// A tenant's pending ids, oldest first, after `after`; at most `limit`.
    pub async fn pending_of_tenant(&self, tenant: &str, after: Option<TriggerId>, limit: usize) -> Result<Vec<TriggerId>, StoreError> {
        let tenant = tenant.to_string();
        self.first_of_shards(limit, |id| *id, move |db| tables::pending_of_tenant(db, &tenant, after, limit)).await
    }

    /// Runs `read` on every shard and keeps the `limit` first results by id:
    /// ids are time-ordered across shards, so this is the oldest first.
    async fn first_of_shards<T: Send + 'static>(
        &self,
        limit: usize,
        id: fn(&T) -> TriggerId,
        read: impl Fn(&Database) -> Result<Vec<T>, StoreError> + Send + 'static,
    ) -> Result<Vec<T>, StoreError> {
        let shards = self.inner.shards.clone();
        blocking(move || {
            let mut all = Vec::new();
            for shard in &shards {
                all.extend(read(&*shard.database()?)?);
            }
            all.sort_by_key(id);
            all.truncate(limit);
            Ok(all)
        })
        .await
    }

    /// Free bytes on the store's filesystem (as of the last check, at most
    /// a moment old), for the `weir_store_free_bytes` gauge.
    pub fn free_bytes(&self) -> u64 {
        self.inner.disk.free(&self.inner.dir)
    }

    /// The free-space reserve (`store.min_free_bytes`).
    pub fn min_free_bytes(&self) -> u64 {
        self.inner.disk.reserve()
    }

    /// Like [`Store::pending_of_tenant`], with each trigger's route.
    pub async fn pending_routes_of_tenant(
        &self,
        tenant: &str,
        after: Option<TriggerId>,
        limit: usize,
    ) -> Result<Vec<(TriggerId, Option<String>)>, StoreError> {
        let tenant = tenant.to_string();
        self.first_of_shards(limit, |(id, _)| *id, move |db| tables::pending_routes_of_tenant(db, &tenant, after, limit)).await
    }

    /// Tests: makes the next `n` commits of every shard fail the way a
    /// failed `commit()` (ENOSPC, EIO) does: the batch is refused and the
    /// writer reopens the file.
    #[cfg(test)]
    pub(crate) fn fail_next_commits(&self, n: u32) {
        for shard in &self.inner.shards {
            shard.fail_commits.store(n, Ordering::SeqCst);
        }
    }

    /// The budget in bytes.
    pub fn budget(&self) -> u64 {
        self.inner.budget
    }

    /// Pending triggers per tenant, from counters kept with the data.
    pub fn pending_by_tenant(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        for shard in &self.inner.shards {
            for (t, n) in shard.tenant_pending.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                if *n > 0 {
                    *out.entry(t.clone()).or_default() += n;
                }
            }
        }
        out
    }

    /// Triggers stored now, in every state.
    pub fn live_count(&self) -> u64 {
        self.inner.shards.iter().flat_map(|s| s.counts.iter()).map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Bytes of live triggers now (what the budget counts).
    pub fn used_bytes(&self) -> u64 {
        self.inner.shards.iter().map(|s| s.used_bytes.load(Ordering::Relaxed)).sum()
    }

    /// Counts, sizes, and the oldest pending trigger's arrival time.
    pub async fn stats(&self) -> Result<StoreStats, StoreError> {
        let shards = self.inner.shards.clone();
        let budget = self.inner.budget;
        blocking(move || {
            let mut s = StoreStats { budget_bytes: budget, shards: shards.len(), ..Default::default() };
            for shard in &shards {
                let c = |st: State| shard.counts[st.code() as usize].load(Ordering::Relaxed);
                s.pending += c(State::Pending);
                s.delivered += c(State::Delivered);
                s.dead += c(State::Dead);
                s.quarantined += c(State::Quarantined);
                s.used_bytes += shard.used_bytes.load(Ordering::Relaxed);
                s.file_bytes += std::fs::metadata(&shard.path).map(|m| m.len()).unwrap_or(0);
                if shard.writable.load(Ordering::Relaxed) {
                    s.writable_shards += 1;
                }
                if let Ok(db) = shard.database()
                    && let Some(first) = tables::ids_in_state(&db, State::Pending, None, 1)?.first()
                {
                    let ms = first.timestamp_ms();
                    s.oldest_pending_ms = Some(s.oldest_pending_ms.map_or(ms, |o: u64| o.min(ms)));
                }
            }
            Ok(s)
        })
        .await
    }

    /// Why the store cannot take writes now, if it cannot (for `/readyz`):
    /// the filesystem below its free-space reserve, a shard that is not
    /// writable, or less budget left than `headroom` (the largest trigger a
    /// request may bring).
    pub fn not_ready_reason(&self, headroom: u64) -> Option<String> {
        if let Err(e) = self.inner.disk.check(&self.inner.dir) {
            return Some(e.to_string());
        }
        let used: u64 = self.inner.shards.iter().map(|s| s.used_bytes.load(Ordering::Relaxed)).sum();
        if used.saturating_add(headroom) > self.inner.budget {
            return Some(format!(
                "store is at its disk budget ({used} of {} bytes used, less than one largest trigger left); pending triggers drain as the upstream takes them",
                self.inner.budget
            ));
        }
        let down: Vec<String> =
            self.inner.shards.iter().filter(|s| !s.writable.load(Ordering::Relaxed)).map(|s| s.path.display().to_string()).collect();
        if !down.is_empty() {
            return Some(format!("store file(s) not writable: {}", down.join(", ")));
        }
        None
    }

    /// Stops the writers after they commit everything already queued.
    /// Callers must have stopped sending (ingest drained) first.
    pub async fn close(&self) {
        let mut handles = Vec::new();
        for shard in &self.inner.shards {
            // Dropping the last sender ends the writer loop once the queue is empty.
            shard.tx.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(h) = shard.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
                handles.push(h);
            }
        }
        let _ = tokio::task::spawn_blocking(move || {
            for h in handles {
                let _ = h.join();
            }
        })
        .await;
    }
}

/// Runs redb reads off the async workers: they may touch the disk.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T, StoreError> + Send + 'static) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::Io(format!("store read task failed: {e}")))?
}

fn existing_shard_count(dir: &Path) -> Result<Option<usize>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::Open { path: dir.to_path_buf(), reason: e.to_string() })?;
    let mut count = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("shard-") && name.ends_with(".redb") {
            count += 1;
        }
    }
    Ok((count > 0).then_some(count))
}

/// Opens one shard: its redb file, then its journal, replaying into the
/// file what the journal holds beyond it; then loads the counters.
pub(crate) fn open_shard(
    files: &Files,
    path: &Path,
    config: &StoreConfig,
) -> Result<(Database, journal::Journal, tables::Loaded), StoreError> {
    let open_err = |e: StoreError| StoreError::Open { path: path.to_path_buf(), reason: e.to_string() };
    let db = open_database_in(files, path, config.cache_mb)?;
    tables::init(&db).map_err(open_err)?;
    let (journal, _) = journal::recover(files, path, config.journal_bytes, &db)?;
    let loaded = tables::load(&db).map_err(open_err)?;
    Ok((db, journal, loaded))
}

pub(crate) fn open_database(path: &Path, cache_mb: u64) -> Result<Database, StoreError> {
    open_database_in(&Files::default(), path, cache_mb)
}

/// Where a store's files live: the real filesystem, or (in tests) a
/// [`fault::Disk`] that can lose power and fail. Production only ever uses
/// the default.
#[derive(Clone, Debug, Default)]
pub(crate) struct Files {
    #[cfg(test)]
    pub(crate) disk: Option<fault::Disk>,
}

impl Files {
    fn exists(&self, path: &Path) -> bool {
        #[cfg(test)]
        if let Some(disk) = &self.disk {
            return disk.exists(path);
        }
        // When existence cannot be told, assume the file is there: opening
        // it then fails naming the reason, and nothing is created over it.
        path.try_exists().unwrap_or(true)
    }

    /// Renames and makes the rename durable (the directory is synced).
    fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(disk) = &self.disk {
            return disk.rename(from, to);
        }
        std::fs::rename(from, to)?;
        std::fs::File::open(to.parent().unwrap_or(Path::new(".")))?.sync_all()
    }

    /// Evicts the file's clean cached pages before it is opened. After a
    /// failed fsync Linux marks the pages it could not write clean and keeps
    /// them cached: a reopen (even by a restarted process) would read a
    /// failed commit as if it were on disk, later commits would build on
    /// pages the disk never got, and a power cut would then corrupt
    /// acknowledged triggers. Evicted, they are read back from the disk.
    /// Best effort: pages still dirty are kept, and will be written.
    fn drop_cache(&self, path: &Path) {
        #[cfg(test)]
        if let Some(disk) = &self.disk {
            disk.drop_cache(path);
            return;
        }
        #[cfg(target_os = "linux")]
        if let Ok(file) = std::fs::File::open(path) {
            use std::os::fd::AsRawFd;
            // SAFETY: an advisory syscall on a descriptor that `file` keeps open for the call.
            let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
            if rc != 0 {
                tracing::warn!(file = %path.display(), errno = rc, "could not drop the store file's cached pages before opening it");
            }
        }
    }

    /// What tells this file apart from a replaced or changed one: the
    /// clean-stop mark records it (see `clean_stop.rs`).
    fn identity(&self, path: &Path) -> std::io::Result<String> {
        #[cfg(test)]
        if let Some(disk) = &self.disk {
            use redb::StorageBackend;
            let file = disk.open(path)?;
            let len = file.len();
            file.close()?;
            return Ok(format!("len {}", len?));
        }
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(format!("dev {} ino {} len {} mtime {}.{:09}", m.dev(), m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
    }

    /// A file opened for reading and writing (created if missing), as a
    /// redb storage backend: the journal writes through the same interface
    /// as redb, so the fault tests' disk covers both.
    fn open_backend(&self, path: &Path) -> std::io::Result<Box<dyn redb::StorageBackend>> {
        #[cfg(test)]
        if let Some(disk) = &self.disk {
            return Ok(Box::new(disk.open(path)?));
        }
        let file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        Ok(Box::new(PlainFile(file)))
    }

    fn remove_if_present(&self, path: &Path) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(disk) = &self.disk {
            return disk.remove(path);
        }
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Creates a missing store file under a temporary name and renames it
    /// into place once redb has written and synced its header. redb refuses a
    /// non-empty file without its magic number, and a power cut during
    /// creation can leave exactly that (the new length reaches the disk
    /// before the header): the store would then refuse to start forever.
    /// A cut now leaves at most a `.redb.new` leftover, replaced next time.
    fn create_if_missing(&self, path: &Path, cache_mb: u64) -> Result<(), StoreError> {
        if self.exists(path) {
            return Ok(());
        }
        let fresh = path.with_extension("redb.new");
        let fail = |e: std::io::Error| StoreError::Open { path: path.to_path_buf(), reason: format!("cannot create it: {e}") };
        self.remove_if_present(&fresh).map_err(fail)?;
        drop(open_redb(self, &fresh, cache_mb)?);
        self.rename(&fresh, path).map_err(fail)
    }
}

/// A plain file as a redb storage backend, for the journal.
#[derive(Debug)]
pub(crate) struct PlainFile(std::fs::File);

impl redb::StorageBackend for PlainFile {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, out, offset)
    }

    fn set_len(&self, len: u64) -> std::io::Result<()> {
        self.0.set_len(len)
    }

    fn sync_data(&self) -> std::io::Result<()> {
        self.0.sync_data()
    }

    fn write(&self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, data, offset)
    }
}

/// Opens a store file, creating it (crash-safely) if it is missing, and
/// reading it from the disk rather than from cached pages, unless the last
/// process to use it stopped cleanly (`clean_stop.rs`).
pub(crate) fn open_database_in(files: &Files, path: &Path, cache_mb: u64) -> Result<Database, StoreError> {
    files.create_if_missing(path, cache_mb)?;
    if !clean_stop::take(files, path) {
        files.drop_cache(path);
    }
    open_redb(files, path, cache_mb)
}

fn open_redb(files: &Files, path: &Path, cache_mb: u64) -> Result<Database, StoreError> {
    // redb panics on some damaged files (zeroed pages: "entered unreachable
    // code") instead of returning an error; startup must still name the file.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| open_redb_unguarded(files, path, cache_mb))).unwrap_or_else(|panic| {
        Err(StoreError::Open {
            path: path.to_path_buf(),
            reason: format!(
                "redb failed reading it ({}): the file is damaged; `weir store check` says more, `weir store repair` salvages what is readable, or restore a backup",
                panic_message(panic.as_ref())
            ),
        })
    })
}

/// The text of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

fn open_redb_unguarded(files: &Files, path: &Path, cache_mb: u64) -> Result<Database, StoreError> {
    let mut builder = Database::builder();
    builder.set_cache_size((cache_mb as usize) * 1024 * 1024);
    #[cfg(test)]
    let opened = match &files.disk {
        Some(disk) => {
            let backend = disk.open(path).map_err(|e| StoreError::Open { path: path.to_path_buf(), reason: e.to_string() })?;
            builder.create_with_backend(backend)
        }
        None => builder.create(path),
    };
    #[cfg(not(test))]
    let opened = {
        let Files {} = files;
        builder.create(path)
    };
    opened.map_err(|e| {
        let reason = match e {
            redb::DatabaseError::DatabaseAlreadyOpen => "it is already open (is another weir process using this store.path?)".to_string(),
            other => format!("{other}; the file is left untouched: move it aside to start empty, or restore a backup"),
        };
        StoreError::Open { path: path.to_path_buf(), reason }
    })
}

#[cfg(test)]
mod tests;
