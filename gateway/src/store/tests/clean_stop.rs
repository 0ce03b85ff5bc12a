//! The clean-stop mark (`clean_stop.rs`): an open trusts the cached pages of
//! a shard file only after a clean stop of the file as it is now, and only
//! once; after a failed sync, a stop without the final checkpoint or a
//! changed file, it evicts them. The page cache here is Linux's ("sticky"):
//! pages whose sync failed stay cached, clean, after the file is closed.

use std::sync::Arc;

use super::power_cut::{View, audit, created, databases, view};
use super::*;
use crate::store::fault::{Disk, EIO, Loss, Op as DiskOp, Times};

fn open(disk: &Disk, cfg: &StoreConfig) -> Store {
    Store::open_in(cfg, Arc::new(crate::telemetry::Metrics::new(10)), Files { disk: Some(disk.clone()) }).expect("open")
}

fn setup(dir: &Path) -> (tokio::runtime::Runtime, StoreConfig, Disk, PathBuf, PathBuf) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let cfg = StoreConfig { cache_mb: 4, min_free_bytes: 0, ..config(dir, 1) };
    let disk = created(&rt, &cfg);
    disk.set_sticky_cache(true);
    let shard = dir.join("shard-00.redb");
    let mark = dir.join("shard-00.redb.clean");
    (rt, cfg, disk, shard, mark)
}

fn insert(rt: &tokio::runtime::Runtime, store: &Store, key: &str) -> Result<TriggerId, StoreError> {
    let t = trigger(store, "t0", Some(key.into()), key.as_bytes(), State::Pending);
    rt.block_on(store.insert(t)).map(|i| i.id)
}

#[test]
fn a_clean_stop_is_trusted_once_and_a_stop_without_the_final_checkpoint_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rt, cfg, disk, shard, mark) = setup(dir.path());
    assert!(disk.exists(&mark), "creating the store ended in a clean stop");

    let drops = disk.cache_drops(&shard);
    let store = open(&disk, &cfg);
    assert_eq!(disk.cache_drops(&shard), drops, "the open after a clean stop evicted the cache");
    assert!(!disk.exists(&mark), "the open left the mark for a later start to trust");
    let a = insert(&rt, &store, "a").expect("a");
    // Stopped without the final checkpoint, as by a SIGKILL: no mark, and the next open evicts.
    store.inner.shards[0].skip_final_checkpoint.store(true, std::sync::atomic::Ordering::Relaxed);
    rt.block_on(store.close());
    drop(store);
    assert!(!disk.exists(&mark));
    let store = open(&disk, &cfg);
    assert_eq!(disk.cache_drops(&shard), drops + 1);
    assert!(matches!(rt.block_on(view(&store, a)).expect("a"), View::Present { .. }));
    rt.block_on(store.close());
    drop(store);

    // A mark that no longer describes the file (changed after the stop) is removed, not trusted.
    assert!(disk.exists(&mark));
    let f = disk.open(&shard).expect("shard");
    let len = redb::StorageBackend::len(&f).expect("len");
    redb::StorageBackend::set_len(&f, len + 4096).expect("grow");
    redb::StorageBackend::close(&f).expect("close");
    let store = open(&disk, &cfg);
    assert_eq!(disk.cache_drops(&shard), drops + 2, "a changed file's cache was trusted");
    assert!(!disk.exists(&mark));
    assert!(matches!(rt.block_on(view(&store, a)).expect("a"), View::Present { .. }));
    rt.block_on(store.close());
}

#[test]
fn after_a_failed_sync_the_stop_leaves_no_mark_and_the_next_start_reads_the_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (rt, cfg, disk, shard, mark) = setup(dir.path());
    let store = open(&disk, &cfg);
    let a = insert(&rt, &store, "a").expect("a");
    // Every sync fails from now on: the writer cannot reopen and stop cleanly.
    disk.inject(DiskOp::SyncData, EIO, Times::Always);
    let b = trigger(&store, "t0", Some("b".into()), b"b", State::Pending);
    let b_id = b.id;
    rt.block_on(store.insert(b)).expect_err("the batch whose sync failed is not acknowledged");
    rt.block_on(store.close());
    drop(store);
    assert!(!disk.exists(&mark), "a stop after a failed sync was marked clean");

    // The process is gone, the page cache is not: the next start must not read b's failed pages as stored.
    disk.heal();
    let drops = disk.cache_drops(&shard);
    let store = open(&disk, &cfg);
    assert_eq!(disk.cache_drops(&shard), drops + 1);
    assert!(matches!(rt.block_on(view(&store, a)).expect("a"), View::Present { .. }));
    let c = insert(&rt, &store, "c").expect("c");
    rt.block_on(store.close());
    drop(store);
    disk.cut_power(Loss::All);
    disk.power_on();
    let store = open(&disk, &cfg);
    for id in [a, c] {
        assert!(matches!(rt.block_on(view(&store, id)).expect("acknowledged"), View::Present { .. }), "{id} lost");
    }
    let _ = rt.block_on(view(&store, b_id)).expect("b is all there or not at all");
    audit(&databases(&store).expect("dbs")[0]).expect("audit");
    rt.block_on(store.close());
    assert!(disk.exists(&shard));
}

#[test]
fn on_the_real_file_system_the_mark_names_the_file_and_a_touched_file_no_longer_matches() {
    use std::os::unix::fs::MetadataExt;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { cache_mb: 4, min_free_bytes: 0, ..config(dir.path(), 1) };
    let (shard, mark) = (dir.path().join("shard-00.redb"), dir.path().join("shard-00.redb.clean"));
    let store = Store::open(&cfg).expect("open");
    let a = insert(&rt, &store, "a").expect("a");
    rt.block_on(store.close());
    drop(store);
    let text = std::fs::read_to_string(&mark).expect("a clean stop leaves the mark");
    let ino = std::fs::metadata(&shard).expect("shard").ino();
    assert!(text.contains(&format!("ino {ino} ")), "{text}");
    let files = Files::default();
    assert!(crate::store::clean_stop::take(&files, &shard));
    assert!(!mark.exists(), "a taken mark is removed");

    // Changed after the mark (here only its mtime): not trusted, and removed.
    crate::store::clean_stop::mark(&files, &shard).expect("mark");
    let later = std::fs::metadata(&shard).and_then(|m| m.modified()).expect("mtime") + std::time::Duration::from_secs(1);
    std::fs::OpenOptions::new().write(true).open(&shard).and_then(|f| f.set_modified(later)).expect("touch");
    assert!(!crate::store::clean_stop::take(&files, &shard));
    assert!(!mark.exists());
    let store = Store::open(&cfg).expect("reopen");
    assert!(matches!(rt.block_on(view(&store, a)).expect("a"), View::Present { .. }));
    rt.block_on(store.close());
}
