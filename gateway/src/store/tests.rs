//! Store tests: a model-based property test against an in-memory model
//! (Vector's disk-buffer approach), plus budget and reopen cases. All run on
//! real redb files in a temporary directory.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use proptest::prelude::*;

use super::*;
use crate::config::StoreConfig;

/// A small journal, so that the tests' batches reach checkpoints as well as
/// journal appends (and the tmpfs of the full-disk test holds it).
fn config(dir: &Path, shards: u32) -> StoreConfig {
    StoreConfig { path: dir.to_path_buf(), shards, journal_bytes: 128 * 1024, ..StoreConfig::default() }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

fn trigger(store: &Store, tenant: &str, key: Option<String>, body: &[u8], state: State) -> NewTrigger {
    let now = SystemTime::now();
    NewTrigger {
        id: store.next_id(now),
        meta: TriggerMeta {
            state,
            tenant: tenant.into(),
            source: "test".into(),
            idempotency_key: key,
            headers: vec![("content-type".into(), "application/json".into())],
            body_len: body.len() as u32,
            ..TriggerMeta::sample()
        },
        body: Bytes::copy_from_slice(body),
        transformed: None,
    }
}

#[derive(Debug, Clone)]
enum Op {
    Insert { tenant: u8, key: Option<u8>, body: Vec<u8>, quarantined: bool },
    SetState { pick: prop::sample::Index, state: u8, attempt: bool },
    Delete { pick: prop::sample::Index },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, proptest::option::of(0u8..4), proptest::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(tenant, key, body, quarantined)| Op::Insert { tenant, key, body, quarantined }),
        3 => (any::<prop::sample::Index>(), 0u8..4, any::<bool>()).prop_map(|(pick, state, attempt)| Op::SetState { pick, state, attempt }),
        1 => any::<prop::sample::Index>().prop_map(|pick| Op::Delete { pick }),
        1 => Just(Op::Reopen),
    ]
}

#[derive(Default)]
struct Model {
    triggers: BTreeMap<TriggerId, (State, Vec<u8>, usize, String)>,
    keys: HashMap<(String, String), TriggerId>,
    /// Every id ever returned, including deleted ones (picks may target them).
    ever: Vec<TriggerId>,
}

fn check(store: &Store, model: &Model) -> Result<(), TestCaseError> {
    let r = rt();
    for (id, (state, body, attempts, _)) in &model.triggers {
        let got = r.block_on(store.get(*id)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let got = got.ok_or_else(|| TestCaseError::fail(format!("{id} missing")))?;
        prop_assert_eq!(got.meta.state, *state);
        prop_assert_eq!(&got.body, body);
        prop_assert_eq!(got.meta.attempts.len(), *attempts);
    }
    for id in &model.ever {
        if !model.triggers.contains_key(id) {
            prop_assert!(r.block_on(store.get(*id)).map_err(|e| TestCaseError::fail(e.to_string()))?.is_none());
        }
    }
    let stats = r.block_on(store.stats()).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let count = |s: State| model.triggers.values().filter(|t| t.0 == s).count() as u64;
    prop_assert_eq!(stats.pending, count(State::Pending));
    prop_assert_eq!(stats.delivered, count(State::Delivered));
    prop_assert_eq!(stats.dead, count(State::Dead));
    prop_assert_eq!(stats.quarantined, count(State::Quarantined));
    prop_assert_eq!(stats.used_bytes == 0, model.triggers.is_empty());
    for s in State::ALL {
        let ids = r.block_on(store.ids_in_state(s, None, 10_000)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want: Vec<TriggerId> = model.triggers.iter().filter(|(_, t)| t.0 == s).map(|(id, _)| *id).collect();
        prop_assert_eq!(ids, want);
    }
    let per_tenant = store.pending_by_tenant();
    for tenant in ["t0", "t1", "t2"] {
        let want_n = model.triggers.values().filter(|t| t.0 == State::Pending && t.3 == tenant).count() as u64;
        prop_assert_eq!(per_tenant.get(tenant).copied().unwrap_or(0), want_n);
        let got = r.block_on(store.pending_of_tenant(tenant, None, 10_000)).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let want: Vec<TriggerId> =
            model.triggers.iter().filter(|(_, t)| t.0 == State::Pending && t.3 == tenant).map(|(id, _)| *id).collect();
        prop_assert_eq!(got, want);
    }
    // Listing: paging by cursor (both orders, small pages) rebuilds exactly
    // what the model holds for a filter.
    for (tenant, state) in [(Some("t1"), None), (None, Some(State::Pending)), (Some("t0"), Some(State::Delivered)), (None, None)] {
        let filter = Filter { tenant: tenant.map(str::to_string), state, ..Filter::default() };
        let want: Vec<TriggerId> = model
            .triggers
            .iter()
            .filter(|(_, t)| tenant.is_none_or(|x| t.3 == x) && state.is_none_or(|s| t.0 == s))
            .map(|(id, _)| *id)
            .collect();
        for order in [Order::Asc, Order::Desc] {
            let mut got = Vec::new();
            let mut cursor = None;
            loop {
                let (items, next) =
                    r.block_on(store.list(filter.clone(), cursor, 3, order)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                got.extend(items.into_iter().map(|(id, _)| id));
                match next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
            let mut want = want.clone();
            if order == Order::Desc {
                want.reverse();
            }
            prop_assert_eq!(&got, &want);
        }
    }
    let oldest = model.triggers.iter().find(|(_, t)| t.0 == State::Pending).map(|(id, _)| id.timestamp_ms());
    prop_assert_eq!(stats.oldest_pending_ms, oldest);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn store_matches_model(ops in proptest::collection::vec(op(), 1..40), shards in 1u32..4) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let cfg = config(dir.path(), shards);
        let r = rt();
        let mut store = r.block_on(async { Store::open(&cfg) }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut model = Model::default();
        for op in ops {
            match op {
                Op::Insert { tenant, key, body, quarantined } => {
                    let tenant = format!("t{tenant}");
                    let key = key.map(|k| format!("k{k}"));
                    let state = if quarantined { State::Quarantined } else { State::Pending };
                    let t = trigger(&store, &tenant, key.clone(), &body, state);
                    let new_id = t.id;
                    let got = r.block_on(store.insert(t)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    match key.and_then(|k| model.keys.get(&(tenant.clone(), k.clone())).copied().map(|id| (k, id))) {
                        Some((_, old)) => {
                            prop_assert!(got.duplicate);
                            prop_assert_eq!(got.id, old);
                        }
                        None => {
                            prop_assert!(!got.duplicate);
                            prop_assert_eq!(got.id, new_id);
                            if let Some(k) = &got_key(&store, &r, new_id)? {
                                model.keys.insert((tenant.clone(), k.clone()), new_id);
                            }
                            model.triggers.insert(new_id, (state, body, 0, tenant.clone()));
                            model.ever.push(new_id);
                        }
                    }
                }
                Op::SetState { pick, state, attempt } => {
                    if model.ever.is_empty() { continue; }
                    let id = model.ever[pick.index(model.ever.len())];
                    let state = State::from_code(state).unwrap_or(State::Pending);
                    let attempt = attempt.then(|| Attempt {
                        at_ms: 1, duration_ms: 2, upstream: 0, outcome: Outcome::Retry, status: Some(503), detail: "busy".into(),
                    });
                    let found = r.block_on(store.update(id, Change::SetState { state, attempt: attempt.clone(), note: None }))
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(found, model.triggers.contains_key(&id));
                    if let Some(t) = model.triggers.get_mut(&id) {
                        t.0 = state;
                        t.2 += usize::from(attempt.is_some());
                    }
                }
                Op::Delete { pick } => {
                    if model.ever.is_empty() { continue; }
                    let id = model.ever[pick.index(model.ever.len())];
                    let found = r.block_on(store.update(id, Change::Delete)).map_err(|e| TestCaseError::fail(e.to_string()))?;
                    prop_assert_eq!(found, model.triggers.remove(&id).is_some());
                }
                Op::Reopen => {
                    r.block_on(store.close());
                    drop(store);
                    store = r.block_on(async { Store::open(&cfg) }).map_err(|e| TestCaseError::fail(e.to_string()))?;
                }
            }
        }
        check(&store, &model)?;
        r.block_on(store.close());
        drop(store);
        let store = r.block_on(async { Store::open(&cfg) }).map_err(|e| TestCaseError::fail(e.to_string()))?;
        check(&store, &model)?;
        r.block_on(store.close());
    }
}

/// The key a stored trigger carries (the model mirrors what was stored).
fn got_key(store: &Store, r: &tokio::runtime::Runtime, id: TriggerId) -> Result<Option<String>, TestCaseError> {
    let t = r.block_on(store.get(id)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(t.and_then(|t| t.meta.idempotency_key))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inserts_share_commits_and_all_land() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&config(dir.path(), 2)).expect("open");
    let mut tasks = Vec::new();
    for i in 0..200 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            let t = trigger(&s, "t", None, format!("body {i}").as_bytes(), State::Pending);
            s.insert(t).await
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("join").expect("insert").id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 200);
    assert_eq!(store.stats().await.expect("stats").pending, 200);
    store.close().await;
}

#[tokio::test]
async fn over_budget_is_refused_and_leaves_no_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { max_bytes: 1024 * 1024, ..config(dir.path(), 1) };
    let store = Store::open(&cfg).expect("open");
    let big = vec![7u8; 600 * 1024];
    store.insert(trigger(&store, "t", None, &big, State::Pending)).await.expect("first fits");
    let err = store.insert(trigger(&store, "t", Some("k".into()), &big, State::Pending)).await.unwrap_err();
    assert!(matches!(err, StoreError::Full { .. }), "{err}");
    assert!(err.is_transient());
    assert!(store.not_ready_reason(1024).is_none(), "still room for small triggers");
    assert!(store.not_ready_reason(600 * 1024).is_some(), "no room for another big one");
    // The refused trigger's idempotency key was not remembered.
    let small = store.insert(trigger(&store, "t", Some("k".into()), b"x", State::Pending)).await.expect("fits");
    assert!(!small.duplicate);
    assert_eq!(store.stats().await.expect("stats").pending, 2);
    store.close().await;
}

#[tokio::test]
async fn idempotency_keys_expire_after_the_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { idempotency_window_secs: 1, ..config(dir.path(), 1) };
    let store = Store::open(&cfg).expect("open");
    let a = store.insert(trigger(&store, "t", Some("k".into()), b"1", State::Pending)).await.expect("a");
    let b = store.insert(trigger(&store, "t", Some("k".into()), b"2", State::Pending)).await.expect("b");
    assert!(b.duplicate && b.id == a.id);
    // Another tenant's identical key is independent.
    let other = store.insert(trigger(&store, "u", Some("k".into()), b"3", State::Pending)).await.expect("u");
    assert!(!other.duplicate);
    // Real time must pass for the window to close; the store reads the wall clock.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let c = store.insert(trigger(&store, "t", Some("k".into()), b"4", State::Pending)).await.expect("c");
    assert!(!c.duplicate && c.id != a.id);
    store.close().await;
}

#[test]
fn a_file_that_is_not_a_store_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("shard-00.redb"), b"this is not a redb file at all, just text").expect("write");
    let err = Store::open(&config(dir.path(), 1)).err().expect("must fail").to_string();
    assert!(err.contains("shard-00.redb"), "{err}");
    // The file is left as it was: no silent fresh start.
    assert_eq!(std::fs::read(dir.path().join("shard-00.redb")).expect("read"), b"this is not a redb file at all, just text");
}

#[test]
fn a_second_process_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _first = Store::open(&config(dir.path(), 1)).expect("open");
    let err = Store::open(&config(dir.path(), 1)).err().expect("must fail").to_string();
    assert!(err.contains("already open"), "{err}");
}

#[tokio::test]
async fn retention_removes_only_delivered_triggers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&config(dir.path(), 1)).expect("open");
    let mut by_state = Vec::new();
    for state in [State::Pending, State::Delivered, State::Dead, State::Quarantined, State::Delivered] {
        let t = trigger(&store, "t", None, b"x", State::Pending);
        let id = store.insert(t).await.expect("insert").id;
        store.update(id, Change::SetState { state, attempt: None, note: None }).await.expect("update");
        by_state.push((id, state));
    }
    // A long retention keeps young delivered triggers.
    assert_eq!(retention::sweep(&store, Duration::from_secs(3600)).await.expect("sweep"), 0);
    // Zero retention removes every delivered one, and nothing else.
    assert_eq!(retention::sweep(&store, Duration::ZERO).await.expect("sweep"), 2);
    for (id, state) in by_state {
        let present = store.get(id).await.expect("get").is_some();
        assert_eq!(present, state != State::Delivered, "{state:?}");
    }
    let s = store.stats().await.expect("stats");
    assert_eq!((s.pending, s.delivered, s.dead, s.quarantined), (1, 0, 1, 1));
    store.close().await;
}

#[tokio::test]
async fn budget_pressure_removes_the_oldest_delivered_first_and_never_pending() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cfg = StoreConfig { max_bytes: 2 * 1024 * 1024, ..config(dir.path(), 1) };
    let store = Store::open(&cfg).expect("open");
    let body = vec![1u8; 100 * 1024];
    let mut delivered = Vec::new();
    for _ in 0..18 {
        let id = store.insert(trigger(&store, "t", None, &body, State::Pending)).await.expect("insert").id;
        store.update(id, Change::SetState { state: State::Delivered, attempt: None, note: None }).await.expect("deliver");
        delivered.push(id);
    }
    let pending = store.insert(trigger(&store, "t", None, &body, State::Pending)).await.expect("insert").id;
    let pending2 = store.insert(trigger(&store, "t", None, &body, State::Pending)).await.expect("insert").id;
    assert!(store.used_bytes() as f64 > 0.9 * store.budget() as f64, "set-up must be over the pressure mark");
    // Young triggers, long retention: only pressure can remove them.
    let removed = retention::sweep(&store, Duration::from_secs(3600)).await.expect("sweep");
    assert!(removed > 0 && removed < delivered.len(), "removed {removed}");
    assert!((store.used_bytes() as f64) < 0.8 * store.budget() as f64);
    // Oldest first: the removed ones are a prefix of the delivered list.
    let mut gone = Vec::new();
    for id in &delivered {
        gone.push(store.get(*id).await.expect("get").is_none());
    }
    assert!(gone.windows(2).all(|w| w[0] >= w[1]), "oldest first: {gone:?}");
    assert!(store.get(pending).await.expect("get").is_some() && store.get(pending2).await.expect("get").is_some());
    store.close().await;
}

/// A snapshot restores whole; a damaged one (a record it cannot decode, in
/// the middle of the file) leaves nothing at the target and nothing beside
/// it; a directory still marked as an unfinished restore is never opened.
#[test]
fn a_restore_is_all_or_nothing() {
    let r = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    let store = Store::open(&config(&source, 2)).expect("open");
    let mut ids = Vec::new();
    for i in 0..40u8 {
        ids.push(r.block_on(store.insert(trigger(&store, "t0", None, &[i; 100], State::Pending))).expect("insert").id);
    }
    let control = ControlFile::open(&source).expect("control");
    let mut snapshot = Vec::new();
    let n = snapshot::write(&store, &control, &mut |chunk| {
        snapshot.extend_from_slice(&chunk);
        Ok(())
    })
    .expect("snapshot");
    assert_eq!(n, 40);
    r.block_on(store.close());

    // The third trigger frame's record gets an unknown format version: in a
    // backup without frame checksums (WEIRBAK1), the record's own check
    // refuses it; in a checksummed one, the frame's checksum does first.
    let third = |data: &[u8], crc: usize| {
        let mut pos = 8;
        for _ in 0..2 {
            let len = u32::from_le_bytes(data[pos + 1..pos + 5].try_into().expect("len")) as usize;
            pos += 5 + len + crc;
        }
        pos
    };
    let mut checksummed = snapshot.clone();
    let at = third(&checksummed, 4);
    checksummed[at + 5 + 16 + 4] = 99;
    let bad_v2 = dir.path().join("bad-v2");
    std::fs::write(&bad_v2, &checksummed).expect("write");
    match r.block_on(snapshot::restore(&bad_v2, &config(&dir.path().join("restored-v2"), 1))) {
        Err(RestoreError::Damaged { offset, reason }) => assert!(offset == at && reason.contains("checksum"), "{offset} {reason}"),
        other => panic!("expected Damaged, got {other:?}"),
    }
    let mut damaged = snapshot::without_checksums(&snapshot);
    let pos = third(&damaged, 0);
    damaged[pos + 5 + 16 + 4] = 99;
    let (good_file, bad_file) = (dir.path().join("good"), dir.path().join("bad"));
    std::fs::write(&good_file, &snapshot).expect("write");
    std::fs::write(&bad_file, &damaged).expect("write");

    let target = dir.path().join("restored");
    match r.block_on(snapshot::restore(&bad_file, &config(&target, 1))) {
        Err(RestoreError::Damaged { reason, .. }) => assert!(reason.contains("version 99"), "{reason}"),
        other => panic!("expected Damaged, got {other:?}"),
    }
    assert!(!target.exists(), "nothing at the target");
    assert!(!dir.path().join(".restored.restoring").exists(), "no staging directory left");

    let summary = r.block_on(snapshot::restore(&good_file, &config(&target, 1))).expect("restore");
    assert_eq!(summary.triggers, 40);
    let restored = Store::open(&config(&target, 1)).expect("open the restored store");
    for id in &ids {
        assert!(r.block_on(restored.get(*id)).expect("get").is_some(), "{id} restored");
    }
    r.block_on(restored.close());

    let marked = dir.path().join("marked");
    std::fs::create_dir_all(&marked).expect("mkdir");
    std::fs::write(marked.join(snapshot::RESTORING_MARK), "").expect("mark");
    match Store::open(&config(&marked, 1)) {
        Err(StoreError::Open { reason, .. }) => assert!(reason.contains("unfinished `weir restore`"), "{reason}"),
        Err(other) => panic!("expected Open, got {other}"),
        Ok(_) => panic!("a marked directory was opened"),
    }
}

/// Into an existing empty directory (a mount point) the restore builds in
/// place, marked: a failure leaves it empty, a killed restore's leftovers
/// (marked) are cleared by the next one, an unmarked non-empty one is refused.
#[test]
fn a_restore_into_an_existing_directory_builds_in_place_and_marked() {
    let r = rt();
    let dir = tempfile::tempdir().expect("tempdir");
    let source = dir.path().join("source");
    let store = Store::open(&config(&source, 1)).expect("open");
    for i in 0..10u8 {
        r.block_on(store.insert(trigger(&store, "t0", None, &[i; 10], State::Pending))).expect("insert");
    }
    let control = ControlFile::open(&source).expect("control");
    let mut snapshot = Vec::new();
    snapshot::write(&store, &control, &mut |chunk| {
        snapshot.extend_from_slice(&chunk);
        Ok(())
    })
    .expect("snapshot");
    r.block_on(store.close());
    let (good, cut) = (dir.path().join("good"), dir.path().join("cut"));
    std::fs::write(&good, &snapshot).expect("write");
    std::fs::write(&cut, &snapshot[..snapshot.len() - 20]).expect("write");

    let mount = dir.path().join("mount");
    std::fs::create_dir_all(&mount).expect("mkdir");
    assert!(matches!(r.block_on(snapshot::restore(&cut, &config(&mount, 1))), Err(RestoreError::Damaged { .. })));
    assert_eq!(std::fs::read_dir(&mount).expect("read").count(), 0, "a failed restore empties the directory it was given");
    // What a killed restore leaves: marked, partly written.
    std::fs::write(mount.join(snapshot::RESTORING_MARK), "").expect("mark");
    std::fs::write(mount.join("shard-00.redb"), "half").expect("leftover");
    assert!(Store::open(&config(&mount, 1)).is_err(), "never served");
    let summary = r.block_on(snapshot::restore(&good, &config(&mount, 1))).expect("restore over a killed one");
    assert_eq!(summary.triggers, 10);
    assert!(!mount.join(snapshot::RESTORING_MARK).exists());
    let restored = Store::open(&config(&mount, 1)).expect("open");
    assert_eq!(restored.live_count(), 10);
    r.block_on(restored.close());
    assert!(
        matches!(r.block_on(snapshot::restore(&good, &config(&mount, 1))), Err(RestoreError::NotEmpty { .. })),
        "a real store is never overwritten"
    );
}

mod clean_stop;
mod full_disk;
mod io_errors;
mod journal;
mod power_cut;
mod restore_fuzz;
