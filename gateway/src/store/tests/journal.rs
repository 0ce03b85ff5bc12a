//! The journal under the store: acknowledged group commits that only the
//! journal made durable survive a power cut and are replayed exactly once,
//! whichever commits redb itself kept; a full journal is checkpointed and
//! starts over.

use std::sync::Arc;

use super::power_cut::{View, audit, created, databases, view};
use super::*;
use crate::store::fault::{Disk, Loss};

fn open_on(disk: &Disk, cfg: &StoreConfig) -> Store {
    Store::open_in(cfg, Arc::new(crate::telemetry::Metrics::new(10)), Files { disk: Some(disk.clone()) }).expect("open")
}

/// Inserts `n` triggers from 8 concurrent tasks (so they share group
/// commits), then delivers every third and deletes every fifth. Returns
/// what each trigger must look like.
async fn workload(store: &Store, n: usize) -> Vec<(TriggerId, View)> {
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut out = Vec::new();
                for i in (task..n).step_by(8) {
                    let body: Vec<u8> = (0..1024).map(|j| (i * 13 + j) as u8).collect();
                    let key = (i % 2 == 0).then(|| format!("k{i}"));
                    let t = trigger(&store, &format!("t{}", i % 3), key, &body, State::Pending);
                    let id = store.insert(t).await.expect("insert").id;
                    out.push((i, id, body));
                }
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("task"));
    }
    all.sort_by_key(|(i, _, _)| *i);
    let mut want = Vec::new();
    for (i, id, body) in all {
        let view = if i % 5 == 0 {
            assert!(store.update(id, Change::Delete).await.expect("delete"));
            View::Absent
        } else if i % 3 == 0 {
            let change = Change::SetState { state: State::Delivered, attempt: None, note: None };
            assert!(store.update(id, change).await.expect("deliver"));
            View::Present { state: State::Delivered, body, transformed: None, attempts: 0 }
        } else {
            View::Present { state: State::Pending, body, transformed: None, attempts: 0 }
        };
        want.push((id, view));
    }
    want
}

/// Every trigger as wanted, and counters and indexes equal to a recount.
async fn assert_holds(store: &Store, want: &[(TriggerId, View)]) {
    for (id, v) in want {
        assert_eq!(&view(store, *id).await.expect("view"), v, "{id}");
    }
    for db in databases(store).expect("databases") {
        audit(&db).expect("audit");
    }
    let stats = store.stats().await.expect("stats");
    let present = want.iter().filter(|(_, v)| *v != View::Absent).count() as u64;
    assert_eq!(stats.pending + stats.delivered, present, "{stats:?}");
}

/// A runtime, and a fresh store on a fault disk with a journal of `journal_bytes`.
fn setup(journal_bytes: u64) -> (tokio::runtime::Runtime, tempfile::TempDir, StoreConfig, Disk, Store) {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { cache_mb: 4, min_free_bytes: 0, journal_bytes, ..config(dir.path(), 1) };
    let disk = created(&rt, &cfg);
    let store = open_on(&disk, &cfg);
    // Checkpoints happen where each test says: when the journal is full.
    store.inner.shards[0].checkpoint_only_when_full.store(true, std::sync::atomic::Ordering::Relaxed);
    (rt, dir, cfg, disk, store)
}

/// The journal epoch shard 0 is in.
fn epoch(store: &Store) -> u64 {
    let db = databases(store).expect("databases").remove(0);
    tables::journal_position(&db).expect("position").0
}

#[test]
fn commits_only_the_journal_made_durable_survive_a_power_cut_and_replay_once() {
    // A journal far larger than the workload: no checkpoint before the cut.
    let (rt, _dir, cfg, disk, store) = setup(4 << 20);
    let first = epoch(&store);
    let want = rt.block_on(workload(&store, 120));
    disk.cut_power(Loss::All);
    drop(store);
    disk.power_on();
    let store = open_on(&disk, &cfg);
    rt.block_on(assert_holds(&store, &want));
    // Nothing was checkpointed before the cut: every trigger came from the journal.
    let db = databases(&store).expect("databases").remove(0);
    assert_eq!(tables::journal_position(&db).expect("position"), (first + 1, 0), "one epoch later, by the reopen's checkpoint");
    drop(db);
    // A second reopen replays nothing again.
    reopen_holds(&rt, store, &disk, &cfg, &want);
}

/// Closes `store`, opens it again and checks that it holds `want`.
fn reopen_holds(rt: &tokio::runtime::Runtime, store: Store, disk: &Disk, cfg: &StoreConfig, want: &[(TriggerId, View)]) {
    rt.block_on(store.close());
    drop(store);
    let store = open_on(disk, cfg);
    rt.block_on(assert_holds(&store, want));
    rt.block_on(store.close());
}

#[test]
fn a_shard_closed_without_a_checkpoint_replays_nothing_redb_already_kept() {
    let (rt, _dir, cfg, disk, store) = setup(4 << 20);
    let want = rt.block_on(workload(&store, 80));
    // redb makes its non-durable commits durable when the handle closes:
    // the journal then holds records the file already has.
    store.inner.shards[0].skip_final_checkpoint.store(true, std::sync::atomic::Ordering::Relaxed);
    reopen_holds(&rt, store, &disk, &cfg, &want);
}

#[test]
fn a_full_journal_is_checkpointed_and_a_cut_after_replays_only_the_new_epoch() {
    let (rt, _dir, cfg, disk, store) = setup(64 * 1024);
    let first = epoch(&store);
    // ~300 KiB of inserts through a 64 KiB journal.
    let want = rt.block_on(workload(&store, 300));
    let now = epoch(&store);
    assert!(now >= first + 3, "checkpoints: epoch {first} → {now}");
    disk.cut_power(Loss::Reordered { seed: 7 });
    drop(store);
    disk.power_on();
    let store = open_on(&disk, &cfg);
    rt.block_on(assert_holds(&store, &want));
    rt.block_on(store.close());
}

#[test]
fn an_idle_writer_checkpoints_a_short_journal_and_a_cut_after_replays_the_rest() {
    let (rt, _dir, cfg, disk, store) = setup(4 << 20);
    store.inner.shards[0].checkpoint_only_when_full.store(false, std::sync::atomic::Ordering::Relaxed);
    let first = epoch(&store);
    let mut want = Vec::new();
    let mut insert = |i: usize| {
        let body = format!("lone {i}").into_bytes();
        let id = rt.block_on(store.insert(trigger(&store, "t0", None, &body, State::Pending))).expect("insert").id;
        want.push((id, View::Present { state: State::Pending, body, transformed: None, attempts: 0 }));
    };
    // 40 records, far from a full journal; then nothing is queued, so the
    // writer checkpoints before it waits (an event to wait for, not a time).
    (0..40).for_each(&mut insert);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while epoch(&store) == first {
        assert!(std::time::Instant::now() < deadline, "no checkpoint of an idle writer with 40 journal records");
        std::thread::yield_now();
    }
    // These are only in the journal when the power goes.
    (40..50).for_each(&mut insert);
    disk.cut_power(Loss::All);
    drop(store);
    disk.power_on();
    let store = open_on(&disk, &cfg);
    rt.block_on(assert_holds(&store, &want));
    rt.block_on(store.close());
}
