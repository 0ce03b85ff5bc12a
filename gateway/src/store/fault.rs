//! A redb storage backend that can lose power, fail, and tear writes (tests only).
//!
//! A [`Disk`] holds every file of one simulated machine. Each file keeps two
//! images: `cache` (what reads see: the page cache) and `durable` (what a
//! power cut leaves), plus the writes since the last successful `sync_data`.
//! A kill -9 cannot tell the two apart; this can:
//!
//! - **power cut** ([`Disk::cut_power`], or armed to fire at the N-th write,
//!   `set_len` or sync with [`Disk::arm_cut`]): the unsynced writes are lost
//!   ([`Loss::All`]) or reach the disk in any order, one of them torn
//!   ([`Loss::Reordered`]); every handle of that boot fails from then on, and
//!   [`Disk::power_on`] boots the machine with only what was durable.
//! - **I/O errors** ([`Disk::inject`]): `write`, `sync_data` or `set_len`
//!   fail with EIO or ENOSPC, once or from then on.
//! - **torn write** ([`Disk::tear_next_write`]): the next write stores only a
//!   prefix, then fails.
//!
//! A failed `sync_data` follows Linux (fsyncgate): the unsynced writes are
//! dropped from writeback and never reach the disk, although reads on open
//! handles still see them; a later sync succeeds without persisting them.
//! The disk records any sync on a handle whose sync failed before: a store
//! must never trust such a handle again. When the last handle of a file is
//! closed its cache is dropped, so a reopen reads what is on the disk.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// Linux errno values (the backend reports them as a real file would).
pub(crate) const EIO: i32 = libc::EIO;
pub(crate) const ENOSPC: i32 = libc::ENOSPC;

/// The operations a fault can target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Write,
    SyncData,
    SetLen,
}

/// How often an injected fault fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Times {
    Once,
    Always,
}

/// What a power cut does to the writes since the last successful sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Loss {
    /// All of them are lost.
    All,
    /// Writeback had reached the disk in any order: a pseudo-random subset
    /// (from `seed`) persisted, and one of those only as a prefix (torn).
    Reordered { seed: u64 },
}

/// One simulated machine's disk; cheap to clone (all clones share it).
#[derive(Clone, Debug, Default)]
pub(crate) struct Disk {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    files: HashMap<PathBuf, File>,
    /// Incremented by each power cut; handles of an older boot are dead.
    boot: u64,
    powered_off: bool,
    /// Writes, `set_len`s and syncs so far: the clock armed cuts count on.
    ops: u64,
    cut: Option<(u64, Loss)>,
    /// (first operation it may hit, target, errno, how often)
    faults: Vec<(u64, Op, i32, Times)>,
    tear_next: Option<usize>,
    next_handle: u64,
    /// Linux keeps a file's pages cached after its last close, including
    /// pages whose writeback failed (they are marked clean): a reopen reads them.
    sticky_cache: bool,
    failed_handles: HashSet<u64>,
    stats: Stats,
}

/// What the disk saw, for assertions and reports.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stats {
    pub syncs: u64,
    pub failed_syncs: u64,
    /// Faults fired by [`Disk::inject`] and [`Disk::tear_next_write`].
    pub injected: u64,
    pub power_cuts: u64,
    /// Syncs asked of a handle whose earlier sync failed (must stay 0).
    pub syncs_after_failure: u64,
}

#[derive(Debug, Default)]
struct File {
    /// [`Disk::drop_cache`] calls for this file.
    cache_drops: u64,
    durable: Vec<u8>,
    cache: Vec<u8>,
    unsynced: Vec<Pending>,
    open_handles: usize,
    /// (operation number, handle) of the last failed and last good sync.
    failed_sync: Option<(u64, u64)>,
    good_sync: Option<(u64, u64)>,
}

#[derive(Debug, Clone)]
enum Pending {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

fn errno(code: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(code)
}

fn apply(image: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write { offset, data } => write_at(image, *offset, data),
        Pending::SetLen(len) => image.resize(*len as usize, 0),
    }
}

/// Writes like a file does: past the end extends it with zeros.
fn write_at(image: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = offset as usize;
    let end = start + data.len();
    if image.len() < end {
        image.resize(end, 0);
    }
    image[start..end].copy_from_slice(data);
}

/// SplitMix64: deterministic choices from a seed, no extra dependency.
pub(crate) fn mix(seed: &mut u64) -> u64 {
    *seed = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *seed;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl State {
    /// Counts one mutating operation; fires an armed cut when it is due.
    /// Returns false when the power is (now) off.
    fn tick(&mut self) -> bool {
        if self.powered_off {
            return false;
        }
        if let Some((at, loss)) = self.cut
            && self.ops >= at
        {
            self.cut = None;
            self.cut_power(loss);
            return false;
        }
        self.ops += 1;
        true
    }

    fn take_fault(&mut self, op: Op) -> Option<i32> {
        let now = self.ops;
        let i = self.faults.iter().position(|(from, o, _, _)| *o == op && *from < now)?;
        let (_, _, code, times) = self.faults[i];
        if times == Times::Once {
            self.faults.remove(i);
        }
        self.stats.injected += 1;
        Some(code)
    }

    fn cut_power(&mut self, loss: Loss) {
        self.powered_off = true;
        self.boot += 1;
        self.stats.power_cuts += 1;
        for file in self.files.values_mut() {
            let unsynced = std::mem::take(&mut file.unsynced);
            if let Loss::Reordered { seed } = loss {
                let mut seed = seed;
                let kept: Vec<Pending> = unsynced.into_iter().filter(|_| mix(&mut seed).is_multiple_of(2)).collect();
                let torn = (!kept.is_empty()).then(|| mix(&mut seed) as usize % kept.len());
                for (i, p) in kept.iter().enumerate() {
                    match p {
                        Pending::Write { offset, data } if Some(i) == torn => {
                            let prefix = mix(&mut seed) as usize % (data.len() + 1);
                            write_at(&mut file.durable, *offset, &data[..prefix]);
                        }
                        p => apply(&mut file.durable, p),
                    }
                }
            }
            file.open_handles = 0;
        }
    }
}

impl Disk {
    pub(crate) fn new() -> Disk {
        Disk::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens (creating if absent) the file at `path`: a new handle.
    pub(crate) fn open(&self, path: &Path) -> std::io::Result<FaultFile> {
        let mut s = self.lock();
        if s.powered_off {
            return Err(errno(EIO));
        }
        s.files.entry(path.to_path_buf()).or_default().open_handles += 1;
        s.next_handle += 1;
        Ok(FaultFile { disk: self.clone(), path: path.to_path_buf(), handle: s.next_handle, boot: s.boot })
    }

    /// Whether `path` exists (power off: as far as anyone can tell, no).
    pub(crate) fn exists(&self, path: &Path) -> bool {
        let s = self.lock();
        !s.powered_off && s.files.contains_key(path)
    }

    /// Renames `from` to `to`, replacing it: atomic and durable at once (the
    /// store syncs the directory after a rename). Counts as an operation.
    pub(crate) fn rename(&self, from: &Path, to: &Path) -> std::io::Result<()> {
        let mut s = self.lock();
        if !s.tick() {
            return Err(errno(EIO));
        }
        let file = s.files.remove(from).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        s.files.insert(to.to_path_buf(), file);
        Ok(())
    }

    /// Removes `path` if it exists.
    pub(crate) fn remove(&self, path: &Path) -> std::io::Result<()> {
        let mut s = self.lock();
        if s.powered_off {
            return Err(errno(EIO));
        }
        s.files.remove(path);
        Ok(())
    }

    /// Makes the next `op` fail with `code` (EIO, ENOSPC), once or always.
    pub(crate) fn inject(&self, op: Op, code: i32, times: Times) {
        let mut s = self.lock();
        let now = s.ops;
        s.faults.push((now, op, code, times));
    }

    /// Like [`Disk::inject`], from the `from`-th mutating operation on.
    pub(crate) fn inject_from(&self, from: u64, op: Op, code: i32, times: Times) {
        self.lock().faults.push((from, op, code, times));
    }

    /// Keeps cached pages (also those whose sync failed) after the last close.
    pub(crate) fn set_sticky_cache(&self, sticky: bool) {
        self.lock().sticky_cache = sticky;
    }

    /// Evicts `path`'s cached pages that are not waiting for writeback, as
    /// `posix_fadvise(POSIX_FADV_DONTNEED)` does: reads then see the disk
    /// plus the writes still queued.
    pub(crate) fn drop_cache(&self, path: &Path) {
        let mut s = self.lock();
        if let Some(f) = s.files.get_mut(path) {
            f.cache_drops += 1;
            let mut image = f.durable.clone();
            for p in &f.unsynced {
                apply(&mut image, p);
            }
            f.cache = image;
        }
    }

    /// Removes every injected fault (the disk is healthy again).
    pub(crate) fn heal(&self) {
        let mut s = self.lock();
        s.faults.clear();
        s.tear_next = None;
    }

    /// The next write stores only its first `prefix` bytes, then fails with EIO.
    pub(crate) fn tear_next_write(&self, prefix: usize) {
        self.lock().tear_next = Some(prefix);
    }

    /// Cuts the power now.
    pub(crate) fn cut_power(&self, loss: Loss) {
        self.lock().cut_power(loss);
    }

    /// Cuts the power just before the `at`-th mutating operation (counted
    /// from 0 over every file: writes, `set_len`s and syncs).
    pub(crate) fn arm_cut(&self, at: u64, loss: Loss) {
        self.lock().cut = Some((at, loss));
    }

    /// Whether an armed cut has fired (or the power was cut by hand).
    pub(crate) fn is_off(&self) -> bool {
        self.lock().powered_off
    }

    /// Boots the machine: every file is what was durable; old handles stay dead.
    pub(crate) fn power_on(&self) {
        let mut s = self.lock();
        s.powered_off = false;
        s.cut = None;
        for file in s.files.values_mut() {
            file.cache = file.durable.clone();
            file.unsynced.clear();
            file.open_handles = 0;
        }
    }

    /// Whether `path` may acknowledge writes: no sync of it ever failed, or
    /// since the last failure a handle opened after the failed one synced it.
    pub(crate) fn synced_since_failure(&self, path: &Path) -> bool {
        let s = self.lock();
        let Some(f) = s.files.get(path) else { return true };
        match (f.failed_sync, f.good_sync) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some((failed_at, failed_handle)), Some((good_at, good_handle))) => good_at > failed_at && good_handle > failed_handle,
        }
    }

    /// How often `path`'s cache was evicted ([`Disk::drop_cache`]).
    pub(crate) fn cache_drops(&self, path: &Path) -> u64 {
        self.lock().files.get(path).map_or(0, |f| f.cache_drops)
    }

    /// Mutating operations so far.
    pub(crate) fn ops(&self) -> u64 {
        self.lock().ops
    }

    pub(crate) fn stats(&self) -> Stats {
        self.lock().stats
    }

    /// What a power cut now would leave of `path` (the synced bytes).
    pub(crate) fn durable(&self, path: &Path) -> Option<Vec<u8>> {
        self.lock().files.get(path).map(|f| f.durable.clone())
    }
}

/// One open handle on a [`Disk`] file: what redb reads and writes through.
#[derive(Debug)]
pub(crate) struct FaultFile {
    disk: Disk,
    path: PathBuf,
    handle: u64,
    boot: u64,
}

impl FaultFile {
    /// The file's state, or EIO when this handle's machine lost power.
    fn with<T>(&self, f: impl FnOnce(&mut State) -> std::io::Result<T>) -> std::io::Result<T> {
        let mut s = self.disk.lock();
        if s.powered_off || s.boot != self.boot {
            return Err(errno(EIO));
        }
        f(&mut s)
    }
}

fn file<'a>(s: &'a mut State, path: &Path) -> &'a mut File {
    s.files.entry(path.to_path_buf()).or_default()
}

impl redb::StorageBackend for FaultFile {
    fn len(&self) -> Result<u64, std::io::Error> {
        self.with(|s| Ok(file(s, &self.path).cache.len() as u64))
    }

    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), std::io::Error> {
        self.with(|s| {
            let cache = &file(s, &self.path).cache;
            let start = offset as usize;
            let src = cache.get(start..start + out.len()).ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
            out.copy_from_slice(src);
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.with(|s| {
            if !s.tick() {
                return Err(errno(EIO));
            }
            if let Some(code) = s.take_fault(Op::SetLen) {
                return Err(errno(code));
            }
            let f = file(s, &self.path);
            f.cache.resize(len as usize, 0);
            f.unsynced.push(Pending::SetLen(len));
            Ok(())
        })
    }

    fn sync_data(&self) -> Result<(), std::io::Error> {
        self.with(|s| {
            if !s.tick() {
                return Err(errno(EIO));
            }
            if s.failed_handles.contains(&self.handle) {
                s.stats.syncs_after_failure += 1;
            }
            if let Some(code) = s.take_fault(Op::SyncData) {
                // fsyncgate: the failed pages are dropped from writeback.
                s.failed_handles.insert(self.handle);
                s.stats.failed_syncs += 1;
                let at = s.ops;
                let f = file(s, &self.path);
                f.unsynced.clear();
                f.failed_sync = Some((at, self.handle));
                return Err(errno(code));
            }
            s.stats.syncs += 1;
            let at = s.ops;
            let f = file(s, &self.path);
            f.good_sync = Some((at, self.handle));
            for p in std::mem::take(&mut f.unsynced) {
                apply(&mut f.durable, &p);
            }
            Ok(())
        })
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), std::io::Error> {
        self.with(|s| {
            if !s.tick() {
                return Err(errno(EIO));
            }
            if let Some(prefix) = s.tear_next.take() {
                s.stats.injected += 1;
                let data = &data[..prefix.min(data.len())];
                let f = file(s, &self.path);
                write_at(&mut f.cache, offset, data);
                f.unsynced.push(Pending::Write { offset, data: data.to_vec() });
                return Err(errno(EIO));
            }
            if let Some(code) = s.take_fault(Op::Write) {
                return Err(errno(code));
            }
            let f = file(s, &self.path);
            write_at(&mut f.cache, offset, data);
            f.unsynced.push(Pending::Write { offset, data: data.to_vec() });
            Ok(())
        })
    }

    fn close(&self) -> Result<(), std::io::Error> {
        let mut s = self.disk.lock();
        if s.boot != self.boot {
            return Ok(());
        }
        let sticky = s.sticky_cache;
        let Some(f) = s.files.get_mut(&self.path) else { return Ok(()) };
        f.open_handles = f.open_handles.saturating_sub(1);
        if f.open_handles == 0 && !sticky {
            // Nothing holds the file: its cache is gone, a reopen reads the disk.
            // Unsynced writes that did not fail stay queued for writeback.
            let mut image = f.durable.clone();
            for p in &f.unsynced {
                apply(&mut image, p);
            }
            f.cache = image;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use redb::{ReadableDatabase, StorageBackend, TableDefinition};

    use super::*;

    const T: TableDefinition<u64, &[u8]> = TableDefinition::new("t");

    fn path() -> PathBuf {
        PathBuf::from("/fault/a.redb")
    }

    fn put(db: &redb::Database, k: u64, v: &[u8]) -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        txn.open_table(T)?.insert(k, v)?;
        txn.commit()?;
        Ok(())
    }

    fn get(db: &redb::Database, k: u64) -> Option<Vec<u8>> {
        let txn = db.begin_read().expect("read");
        let t = txn.open_table(T).ok()?;
        t.get(k).expect("get").map(|v| v.value().to_vec())
    }

    fn open(disk: &Disk) -> redb::Database {
        redb::Database::builder().create_with_backend(disk.open(&path()).expect("open")).expect("create")
    }

    #[test]
    fn a_power_cut_keeps_synced_writes_and_drops_the_rest() {
        let disk = Disk::new();
        let f = disk.open(&path()).expect("open");
        f.write(0, b"synced").expect("write");
        f.sync_data().expect("sync");
        f.write(0, b"SYNCED-not").expect("write");
        assert_eq!(f.len().expect("len"), 10, "reads see the cache");
        disk.cut_power(Loss::All);
        assert_eq!(f.read(0, &mut [0; 6]).unwrap_err().raw_os_error(), Some(EIO), "a dead handle fails");
        assert!(disk.open(&path()).is_err(), "no new handles while the power is off");
        disk.power_on();
        assert_eq!(f.len().unwrap_err().raw_os_error(), Some(EIO), "handles of the old boot stay dead");
        let g = disk.open(&path()).expect("open");
        let mut buf = vec![0; g.len().expect("len") as usize];
        g.read(0, &mut buf).expect("read");
        assert_eq!(buf, b"synced");
    }

    #[test]
    fn a_reordered_cut_keeps_a_subset_and_tears_one() {
        // Over many seeds every unsynced write is sometimes kept, sometimes
        // lost, and sometimes torn; synced bytes are always kept.
        let (mut kept, mut lost, mut torn) = (0, 0, 0);
        for seed in 0..64 {
            let disk = Disk::new();
            let f = disk.open(&path()).expect("open");
            f.write(0, &[1; 16]).expect("write");
            f.sync_data().expect("sync");
            f.write(16, &[2; 16]).expect("write");
            disk.cut_power(Loss::Reordered { seed });
            let image = disk.durable(&path()).expect("file");
            assert_eq!(&image[..16], &[1; 16]);
            match image.len() {
                16 => lost += 1,
                32 => kept += 1,
                _ => torn += 1,
            }
        }
        assert!(kept > 0 && lost > 0 && torn > 0, "kept {kept} lost {lost} torn {torn}");
    }

    #[test]
    fn an_armed_cut_fires_at_its_operation() {
        let disk = Disk::new();
        let f = disk.open(&path()).expect("open");
        disk.arm_cut(2, Loss::All);
        f.write(0, b"a").expect("op 0");
        f.sync_data().expect("op 1");
        assert!(!disk.is_off());
        assert_eq!(f.write(1, b"b").unwrap_err().raw_os_error(), Some(EIO), "op 2 meets the cut");
        assert!(disk.is_off());
        assert_eq!(disk.ops(), 2);
        assert_eq!(disk.durable(&path()).expect("file"), b"a");
    }

    #[test]
    fn injected_faults_fire_once_or_always_with_their_errno() {
        let disk = Disk::new();
        let f = disk.open(&path()).expect("open");
        disk.inject(Op::Write, ENOSPC, Times::Once);
        assert_eq!(f.write(0, b"x").unwrap_err().raw_os_error(), Some(ENOSPC));
        f.write(0, b"x").expect("only once");
        disk.inject(Op::SetLen, EIO, Times::Always);
        for _ in 0..3 {
            assert_eq!(f.set_len(10).unwrap_err().raw_os_error(), Some(EIO));
        }
        assert_eq!(f.len().expect("len"), 1, "a failed set_len changes nothing");
        disk.heal();
        f.set_len(10).expect("healed");
        assert_eq!(disk.stats().injected, 4);
    }

    #[test]
    fn a_failed_sync_loses_its_writes_for_good_and_marks_the_handle() {
        let disk = Disk::new();
        let f = disk.open(&path()).expect("open");
        f.write(0, b"old").expect("write");
        f.sync_data().expect("sync");
        f.write(0, b"new").expect("write");
        disk.inject(Op::SyncData, EIO, Times::Once);
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        let mut buf = [0; 3];
        f.read(0, &mut buf).expect("read");
        assert_eq!(&buf, b"new", "the page cache still shows the write");
        // Linux reports the error once: the retry "succeeds" and persists nothing.
        f.sync_data().expect("second sync");
        assert_eq!(disk.durable(&path()).expect("file"), b"old");
        assert_eq!(disk.stats().syncs_after_failure, 1, "the retry on the failed handle is recorded");
        f.close().expect("close");
        let g = disk.open(&path()).expect("reopen");
        g.read(0, &mut buf).expect("read");
        assert_eq!(&buf, b"old", "a reopen after the last close reads the disk");
    }

    #[test]
    fn a_torn_write_stores_only_its_prefix() {
        let disk = Disk::new();
        let f = disk.open(&path()).expect("open");
        disk.tear_next_write(2);
        assert_eq!(f.write(0, b"abcd").unwrap_err().raw_os_error(), Some(EIO));
        f.sync_data().expect("sync");
        assert_eq!(disk.durable(&path()).expect("file"), b"ab");
    }

    #[test]
    fn redb_runs_on_it_and_a_cut_loses_only_the_uncommitted() {
        let disk = Disk::new();
        let db = open(&disk);
        put(&db, 1, b"one").expect("commit");
        let before = disk.ops();
        // Cut during the second commit: somewhere after its first write.
        disk.arm_cut(before + 1, Loss::All);
        assert!(put(&db, 2, b"two").is_err());
        drop(db);
        disk.power_on();
        let db = open(&disk);
        assert_eq!(get(&db, 1).as_deref(), Some(&b"one"[..]));
        assert_eq!(get(&db, 2), None);
    }
}
