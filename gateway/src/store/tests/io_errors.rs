//! I/O errors below the store: failed writes, syncs and resizes (EIO, ENOSPC),
//! torn writes, once or until the disk heals, under concurrent writers.
//!
//! The rules: a batch whose commit failed is acknowledged to nobody; after a
//! failed `sync_data` nothing is acknowledged until a handle opened after the
//! failure has synced (the failed handle is never synced again: Linux drops
//! the failed pages from writeback, so a second fsync "succeeds" and persists
//! nothing); the store recovers without a restart once the disk does; and a
//! power cut afterwards still finds every acknowledged trigger.
//!
//! Each case also runs with Linux's page cache ("sticky"): pages whose
//! writeback failed stay cached, clean, after the file is closed, so a naive
//! reopen reads a failed commit as if it were on disk. Before the store
//! evicted a file's cached pages on open, that case ended, after a power
//! cut, in records without bodies (`io_errors_under_concurrent_writers_...`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::power_cut::{View, audit, created, databases, view};
use super::*;
use crate::store::fault::{Disk, EIO, ENOSPC, Loss, Op as DiskOp, Times};

fn open(disk: &Disk, cfg: &StoreConfig) -> Store {
    Store::open_in(cfg, Arc::new(crate::telemetry::Metrics::new(10)), Files { disk: Some(disk.clone()) }).expect("open")
}

/// A store error during a disk fault must be one ingest answers with 503 + Retry-After.
fn assert_retryable(e: &StoreError) {
    assert!(e.is_transient() || matches!(e, StoreError::Io(_)), "{e}");
    assert!(!matches!(e, StoreError::Invalid(_) | StoreError::Full { .. }), "{e}");
}

#[test]
fn a_failed_sync_is_acknowledged_to_nobody_until_a_reopened_file_has_synced() {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { cache_mb: 4, min_free_bytes: 0, ..config(dir.path(), 1) };
    let shard = dir.path().join("shard-00.redb");
    for (code, sticky) in [(EIO, false), (ENOSPC, false), (EIO, true), (ENOSPC, true)] {
        let disk = created(&rt, &cfg);
        disk.set_sticky_cache(sticky);
        let store = open(&disk, &cfg);
        let a = trigger(&store, "t0", Some("a".into()), b"a", State::Pending);
        let a_id = rt.block_on(store.insert(a)).expect("a").id;
        disk.inject(DiskOp::SyncData, code, Times::Once);
        let b = trigger(&store, "t0", Some("b".into()), b"b", State::Pending);
        let b_id = b.id;
        let err = rt.block_on(store.insert(b)).expect_err("the batch whose sync failed is not acknowledged");
        assert_retryable(&err);
        assert_eq!(disk.stats().failed_syncs, 1);
        // Recovery without a restart: the writer reopened the file at once.
        let c = trigger(&store, "t0", Some("c".into()), b"c", State::Pending);
        let c_id = rt.block_on(store.insert(c)).expect("c after the reopen").id;
        assert!(disk.synced_since_failure(&shard), "c was acknowledged before a reopened handle synced");
        assert_eq!(disk.stats().syncs_after_failure, 0, "the handle whose sync failed was synced again");
        rt.block_on(store.close());
        drop(store);
        disk.cut_power(Loss::All);
        disk.power_on();
        let store = open(&disk, &cfg);
        assert!(matches!(rt.block_on(view(&store, a_id)).expect("a"), View::Present { .. }));
        assert!(matches!(rt.block_on(view(&store, c_id)).expect("c"), View::Present { .. }));
        // b is all there or not at all (its pages may have reached the disk before the error).
        let _ = rt.block_on(view(&store, b_id)).expect("b");
        audit(&databases(&store).expect("dbs")[0]).expect("audit");
        rt.block_on(store.close());
    }
}

/// What the concurrent writers saw.
#[derive(Default)]
struct Seen {
    acked: Vec<(TriggerId, Vec<u8>)>,
    failed: Vec<TriggerId>,
}

async fn insert_many(store: Store, writer: usize, n: usize, body_len: usize) -> Seen {
    let mut seen = Seen::default();
    for i in 0..n {
        let body: Vec<u8> = (0..body_len).map(|j| (i * 31 + j * 7 + writer) as u8).collect();
        let key = (i % 4 == 0).then(|| format!("w{writer}-{i}"));
        let t = trigger(&store, &format!("t{}", writer % 3), key, &body, State::Pending);
        let id = t.id;
        match store.insert(t).await {
            Ok(got) => {
                assert!(!got.duplicate);
                seen.acked.push((id, body));
            }
            Err(e) => {
                assert_retryable(&e);
                seen.failed.push(id);
            }
        }
    }
    seen
}

/// Inserts until one is acknowledged (the writer reopens at most once a
/// second), with a generous deadline.
async fn recovers(store: &Store) -> TriggerId {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let t = trigger(store, "t0", None, b"after the fault", State::Pending);
        match store.insert(t).await {
            Ok(got) => return got.id,
            Err(e) if Instant::now() < deadline => {
                assert_retryable(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("the store did not recover within 20 s of the disk healing: {e}"),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fault {
    Inject(DiskOp, i32, Times),
    Tear,
}

#[test]
fn io_errors_under_concurrent_writers_lose_no_acknowledged_trigger() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { cache_mb: 4, min_free_bytes: 0, ..config(dir.path(), 2) };
    let mut faults = vec![Fault::Tear];
    for op in [DiskOp::Write, DiskOp::SyncData, DiskOp::SetLen] {
        for code in [EIO, ENOSPC] {
            for times in [Times::Once, Times::Always] {
                faults.push(Fault::Inject(op, code, times));
            }
        }
    }
    let (mut injected, mut acked, mut failed) = (0, 0, 0);
    for (fault, sticky) in faults.into_iter().flat_map(|f| [(f, false), (f, true)]) {
        let mut fired_here = 0;
        for (round, after) in [3u64, 40, 150].into_iter().enumerate() {
            let disk = created(&rt, &cfg);
            disk.set_sticky_cache(sticky);
            let store = open(&disk, &cfg);
            let base = disk.ops();
            match fault {
                Fault::Inject(op, code, times) => disk.inject_from(base + after, op, code, times),
                Fault::Tear => disk.tear_next_write(97 * (round + 1)),
            }
            // Bodies big enough that the files grow (redb calls set_len).
            let tasks: Vec<_> = (0..3).map(|w| rt.spawn(insert_many(store.clone(), w, 12, 6000 + 3000 * w))).collect();
            let seen: Vec<Seen> = tasks.into_iter().map(|t| rt.block_on(t).expect("writer")).collect();
            let fired = disk.stats().injected;
            disk.heal();
            let last = rt.block_on(recovers(&store));
            let stats = disk.stats();
            assert_eq!(stats.syncs_after_failure, 0, "{fault:?}: a handle whose sync failed was synced again");
            rt.block_on(store.close());
            drop(store);
            disk.cut_power(Loss::All);
            disk.power_on();
            let store = open(&disk, &cfg);
            assert!(rt.block_on(store.get(last)).expect("get").is_some(), "{fault:?}: the trigger after recovery");
            for s in &seen {
                for (id, body) in &s.acked {
                    let got = rt.block_on(store.get(*id)).expect("get");
                    let got = got.unwrap_or_else(|| panic!("{fault:?} after {after} (sticky cache {sticky}): acknowledged {id} is lost"));
                    assert_eq!(&got.body, body, "{fault:?}: {id}");
                }
                acked += s.acked.len();
                failed += s.failed.len();
            }
            for db in databases(&store).expect("dbs") {
                audit(&db).unwrap_or_else(|e| panic!("{fault:?} after {after} (sticky cache {sticky}): {e}"));
            }
            rt.block_on(store.close());
            fired_here += fired;
        }
        assert!(fired_here > 0, "{fault:?} never fired: the workload must reach it");
        injected += fired_here;
    }
    eprintln!("io_errors: {injected} faults injected, {acked} acknowledged and {failed} refused inserts checked");
}
