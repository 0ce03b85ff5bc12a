//! Offline checks and repair of a store directory: what `weir store check`
//! and `weir store repair` run, and what the power-cut tests assert after
//! every cut.
//!
//! A file passes when redb opens it, every page verifies against its
//! checksum (`check_integrity`), and its content is whole: every record
//! decodes and has its bodies, the indexes and counters equal a recount, no
//! body or index entry is orphaned. The check runs on a copy next to the
//! file (redb may repair what it opens), so the store itself is never
//! changed; the copy is removed afterwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, ReadableTable};

use super::StoreError;
use super::record::{State, TriggerMeta};
use super::tables::{self, PER_TRIGGER_OVERHEAD};

/// What the check found in one store file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileCheck {
    pub path: PathBuf,
    /// Triggers found (when the file could be read).
    pub triggers: Option<u64>,
    /// Empty when the file is sound.
    pub problems: Vec<String>,
}

/// The shard files of the store in `dir`, in order.
pub fn shard_files(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = std::fs::read_dir(dir).map_err(|e| StoreError::Open { path: dir.to_path_buf(), reason: e.to_string() })?;
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("shard-") && n.ends_with(".redb")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(StoreError::Open { path: dir.to_path_buf(), reason: "no store files (shard-NN.redb) in this directory".into() });
    }
    Ok(files)
}

/// Checks every shard file of the store in `dir`. The gateway must be stopped.
pub fn check_dir(dir: &Path) -> Result<Vec<FileCheck>, StoreError> {
    shard_files(dir)?.into_iter().map(|p| check_file(&p)).collect()
}

/// Checks one store file through a copy of it.
pub fn check_file(path: &Path) -> Result<FileCheck, StoreError> {
    let mut report = FileCheck { path: path.to_path_buf(), triggers: None, problems: Vec::new() };
    if let Ok(Err(redb::DatabaseError::DatabaseAlreadyOpen)) = guarded(|| redb::ReadOnlyDatabase::open(path).map(drop)) {
        return Err(StoreError::Open {
            path: path.to_path_buf(),
            reason: "it is in use: stop the gateway before checking its store".into(),
        });
    }
    let copy = path.with_extension("redb.check");
    std::fs::copy(path, &copy).map_err(|e| StoreError::Io(format!("cannot copy {} to check it: {e}", path.display())))?;
    let result = guarded(|| check_copy(path, &copy, &mut report)).unwrap_or_else(|e| {
        report.problems.push(format!("redb failed reading it: {e}"));
        Ok(())
    });
    let _ = std::fs::remove_file(&copy);
    result?;
    Ok(report)
}

fn check_copy(original: &Path, copy: &Path, report: &mut FileCheck) -> Result<(), StoreError> {
    let mut db = match Database::builder().open(copy) {
        Ok(db) => db,
        Err(e) => {
            report.problems.push(format!("redb cannot open it: {e}"));
            return Ok(());
        }
    };
    match db.check_integrity() {
        Ok(true) => {}
        Ok(false) => {
            report.problems.push("pages failed their checksums (redb could repair its own structures, not the data in them)".into())
        }
        Err(e) => report.problems.push(format!("integrity check failed: {e}")),
    }
    // Judged as the gateway would open it: with what its journal holds.
    if let Err(e) = super::journal::replay_into(original, &db) {
        report.problems.push(format!("its journal cannot be replayed: {e}"));
    }
    match audit(&db) {
        Ok(n) => report.triggers = Some(n),
        Err(e) => report.problems.push(e),
    }
    Ok(())
}

/// What `repair` did to one store file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRepair {
    pub path: PathBuf,
    /// What the check found; nothing was changed when this is empty.
    pub problems: Vec<String>,
    /// Triggers copied into the rebuilt file.
    pub kept: u64,
    /// Records found but unreadable or missing a body: left behind.
    pub lost: u64,
    /// How many triggers the file's own counters claimed, when readable:
    /// `expected - kept` is the loss that left no record at all.
    pub expected: Option<u64>,
    /// Where the damaged original was moved (it is never deleted).
    pub moved_to: Option<PathBuf>,
}

/// Checks every shard file and rebuilds each damaged one from what can be
/// read of it: whole triggers (record, bodies) with their idempotency keys,
/// and fresh indexes and counters. The damaged file is moved aside, never
/// deleted. The gateway must be stopped.
pub fn repair_dir(dir: &Path) -> Result<Vec<FileRepair>, StoreError> {
    let mut out = Vec::new();
    for path in shard_files(dir)? {
        let check = check_file(&path)?;
        let mut report = FileRepair {
            path: path.clone(),
            problems: check.problems,
            kept: check.triggers.unwrap_or(0),
            lost: 0,
            expected: None,
            moved_to: None,
        };
        if !report.problems.is_empty() {
            rebuild(&path, &mut report)?;
        }
        out.push(report);
    }
    Ok(out)
}

/// One trigger salvaged whole.
struct Salvaged {
    id: u128,
    record: Vec<u8>,
    meta: TriggerMeta,
    body: Vec<u8>,
    transformed: Option<Vec<u8>>,
}

fn rebuild(path: &Path, report: &mut FileRepair) -> Result<(), StoreError> {
    let io = |what: &str, e: &dyn std::fmt::Display| StoreError::Io(format!("{what} {}: {e}", path.display()));
    let copy = path.with_extension("redb.salvage");
    std::fs::copy(path, &copy).map_err(|e| io("cannot copy", &e))?;
    let salvaged = guarded(|| salvage(path, &copy, report)).unwrap_or_default();
    let _ = std::fs::remove_file(&copy);
    let fresh = path.with_extension("redb.repaired");
    let _ = std::fs::remove_file(&fresh);
    write_fresh(&fresh, &salvaged).map_err(|e| io("cannot write the rebuilt", &e))?;
    report.kept = salvaged.len() as u64;
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let aside = path.with_extension(format!("redb.damaged-{secs}"));
    std::fs::rename(path, &aside).map_err(|e| io("cannot move aside", &e))?;
    std::fs::rename(&fresh, path).map_err(|e| io("cannot put the rebuilt file in place of", &e))?;
    // Its changes are in the rebuilt file now (which starts at journal epoch
    // 0, so a journal left by a crash here is never replayed into it either).
    let _ = std::fs::remove_file(super::journal::path_of(path));
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync the directory of", &e))?;
    }
    report.moved_to = Some(aside);
    Ok(())
}

/// Reads every whole trigger that redb can still give back.
fn salvage(original: &Path, copy: &Path, report: &mut FileRepair) -> Vec<Salvaged> {
    let mut out = Vec::new();
    let Ok(mut db) = Database::builder().open(copy) else { return out };
    let _ = db.check_integrity();
    // Triggers acknowledged after the last checkpoint are in the journal.
    let _ = super::journal::replay_into(original, &db);
    let Ok(txn) = db.begin_read() else { return out };
    if let Ok(counters) = txn.open_table(tables::COUNTERS) {
        let mut total = 0;
        for st in State::ALL {
            total += counters.get(tables::counter_name(st)).ok().flatten().map_or(0, |v| v.value());
        }
        report.expected = Some(total);
    }
    let (Ok(triggers), Ok(bodies), Ok(transformed)) =
        (txn.open_table(tables::TRIGGERS), txn.open_table(tables::BODIES), txn.open_table(tables::TRANSFORMED))
    else {
        return out;
    };
    let Ok(iter) = triggers.iter() else { return out };
    for entry in iter {
        // A damaged page ends the walk: what lies past it is counted as lost.
        let Ok((k, v)) = entry else { break };
        let id = k.value();
        let whole = TriggerMeta::decode(v.value()).ok().and_then(|meta| {
            let body = bodies.get(id).ok()??.value().to_vec();
            let t = if meta.has_transformed { Some(transformed.get(id).ok()??.value().to_vec()) } else { None };
            (body.len() == meta.body_len as usize).then_some((meta, body, t))
        });
        match whole {
            Some((meta, body, transformed)) => out.push(Salvaged { id, record: v.value().to_vec(), meta, body, transformed }),
            None => report.lost += 1,
        }
    }
    out
}

fn write_fresh(path: &Path, salvaged: &[Salvaged]) -> Result<(), StoreError> {
    let db = Database::create(path).map_err(|e| StoreError::Io(e.to_string()))?;
    tables::init(&db)?;
    let txn = db.begin_write().map_err(super::io_err)?;
    let mut deltas = tables::Deltas::default();
    {
        let mut t = tables::Tables::open(&txn)?;
        for s in salvaged {
            t.triggers.insert(s.id, s.record.as_slice()).map_err(super::io_err)?;
            t.bodies.insert(s.id, s.body.as_slice()).map_err(super::io_err)?;
            if let Some(tb) = &s.transformed {
                t.transformed.insert(s.id, tb.as_slice()).map_err(super::io_err)?;
            }
            t.index_state(&s.meta.tenant, s.id, None, Some(s.meta.state))?;
            if let Some(key) = &s.meta.idempotency_key {
                let first = s.meta.received_at_ms;
                t.idempotency.insert((s.meta.tenant.as_str(), key.as_str()), (s.id, first)).map_err(super::io_err)?;
                t.idem_expiry.insert((first, s.id), (s.meta.tenant.as_str(), key.as_str())).map_err(super::io_err)?;
            }
            deltas.state(&s.meta.tenant, s.meta.state, 1);
            let cost = s.record.len() + s.body.len() + s.transformed.as_ref().map_or(0, Vec::len);
            deltas.bytes += cost as i64 + PER_TRIGGER_OVERHEAD as i64;
        }
    }
    deltas.write(&txn)?;
    txn.commit().map_err(super::io_err)?;
    Ok(())
}

/// Runs `f`, turning a panic inside redb (it panics on some damaged files)
/// into an error: a damaged file must be reported, not crash the check.
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| super::panic_message(p.as_ref()))
}

fn s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Everything one shard's file must satisfy on its own: bodies with every
/// record, indexes and counters equal to a recount, no orphans.
pub fn audit(db: &Database) -> Result<u64, String> {
    let txn = db.begin_read().map_err(s)?;
    macro_rules! open {
        ($d:expr) => {
            txn.open_table($d).map_err(s)
        };
    }
    let triggers = open!(tables::TRIGGERS)?;
    let bodies = open!(tables::BODIES)?;
    let transformed = open!(tables::TRANSFORMED)?;
    let mut counts = [0u64; 4];
    let mut total = 0u64;
    let mut used = 0u64;
    let mut tenant_pending: BTreeMap<String, u64> = BTreeMap::new();
    let mut want_by_state = BTreeSet::new();
    let mut want_pending = BTreeSet::new();
    let mut want_keys = Vec::new();
    for entry in triggers.iter().map_err(s)? {
        let (k, v) = entry.map_err(s)?;
        let id = k.value();
        let meta = TriggerMeta::decode(v.value()).map_err(|x| format!("{id}: {x}"))?;
        let body = bodies.get(id).map_err(s)?.ok_or(format!("{id}: record without body"))?;
        if body.value().len() != meta.body_len as usize {
            return Err(format!("{id}: body of {} bytes, record says {}", body.value().len(), meta.body_len));
        }
        let t = transformed.get(id).map_err(s)?;
        if t.is_some() != meta.has_transformed {
            return Err(format!("{id}: transformed body present {} but record says {}", t.is_some(), meta.has_transformed));
        }
        counts[meta.state.code() as usize] += 1;
        total += 1;
        used += v.value().len() as u64 + body.value().len() as u64 + t.map_or(0, |t| t.value().len() as u64) + PER_TRIGGER_OVERHEAD;
        want_by_state.insert((meta.state.code(), id));
        if meta.state == State::Pending {
            *tenant_pending.entry(meta.tenant.clone()).or_default() += 1;
            want_pending.insert((meta.tenant.clone(), id));
        }
        if let Some(key) = meta.idempotency_key {
            want_keys.push((meta.tenant, key, id));
        }
    }
    for entry in bodies.iter().map_err(s)? {
        let id = entry.map_err(s)?.0.value();
        if triggers.get(id).map_err(s)?.is_none() {
            return Err(format!("{id}: body without record"));
        }
    }
    for entry in transformed.iter().map_err(s)? {
        let id = entry.map_err(s)?.0.value();
        if triggers.get(id).map_err(s)?.is_none() {
            return Err(format!("{id}: transformed body without record"));
        }
    }
    let mut by_state = BTreeSet::new();
    for entry in open!(tables::BY_STATE)?.iter().map_err(s)? {
        by_state.insert(entry.map_err(s)?.0.value());
    }
    if by_state != want_by_state {
        return Err(format!("by_state index {by_state:?} but records say {want_by_state:?}"));
    }
    let mut pending = BTreeSet::new();
    for entry in open!(tables::PENDING_BY_TENANT)?.iter().map_err(s)? {
        let (k, _) = entry.map_err(s)?;
        let (tenant, id) = k.value();
        pending.insert((tenant.to_string(), id));
    }
    if pending != want_pending {
        return Err(format!("pending_by_tenant {pending:?} but records say {want_pending:?}"));
    }
    let idempotency = open!(tables::IDEMPOTENCY)?;
    let expiry = open!(tables::IDEM_EXPIRY)?;
    for (tenant, key, id) in want_keys {
        let Some(v) = idempotency.get((tenant.as_str(), key.as_str())).map_err(s)? else {
            return Err(format!("{id}: key {key} of a stored trigger is not remembered"));
        };
        let (kid, first_ms) = v.value();
        if kid != id {
            return Err(format!("{id}: key {key} names {kid}"));
        }
        if expiry.get((first_ms, id)).map_err(s)?.is_none() {
            return Err(format!("{id}: key {key} has no expiry entry"));
        }
    }
    let counters = open!(tables::COUNTERS)?;
    let counter = |name: &str| -> Result<u64, String> { Ok(counters.get(name).map_err(s)?.map_or(0, |v| v.value())) };
    for st in State::ALL {
        let got = counter(tables::counter_name(st))?;
        if got != counts[st.code() as usize] {
            return Err(format!("counter {st:?} is {got}, recount {}", counts[st.code() as usize]));
        }
    }
    if counter(tables::USED_BYTES)? != used {
        return Err(format!("used_bytes counter {} but recount {used}", counter(tables::USED_BYTES)?));
    }
    for entry in counters.iter().map_err(s)? {
        let (k, v) = entry.map_err(s)?;
        if let Some(tenant) = k.value().strip_prefix(tables::TENANT_PENDING_PREFIX) {
            let want = tenant_pending.remove(tenant).unwrap_or(0);
            if v.value() != want {
                return Err(format!("pending counter of {tenant} is {}, recount {want}", v.value()));
            }
        }
    }
    if !tenant_pending.is_empty() {
        return Err(format!("pending triggers without a tenant counter: {tenant_pending:?}"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::config::StoreConfig;
    use crate::store::{NewTrigger, Store};

    const MARKER: &[u8] = b"WEIR-CHECK-MARKER-";

    /// A stopped store with `n` triggers whose bodies carry [`MARKER`].
    fn store_with(dir: &Path, n: usize) -> PathBuf {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let store = Store::open(&StoreConfig { path: dir.to_path_buf(), shards: 1, ..StoreConfig::default() }).expect("open");
        for i in 0..n {
            let body: Vec<u8> = MARKER.iter().copied().chain(format!("{i:04}-").bytes()).chain(std::iter::repeat_n(b'x', 2000)).collect();
            let meta = TriggerMeta { idempotency_key: Some(format!("k{i}")), body_len: body.len() as u32, ..TriggerMeta::sample() };
            let t = NewTrigger { id: store.next_id(std::time::SystemTime::now()), meta, body: Bytes::from(body), transformed: None };
            rt.block_on(store.insert(t)).expect("insert");
        }
        rt.block_on(store.close());
        dir.join("shard-00.redb")
    }

    fn offsets_of(bytes: &[u8], needle: &[u8]) -> Vec<usize> {
        bytes.windows(needle.len()).enumerate().filter(|(_, w)| *w == needle).map(|(i, _)| i).collect()
    }

    #[test]
    fn a_sound_store_passes_and_is_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = store_with(dir.path(), 20);
        let before = std::fs::read(&path).expect("read");
        let reports = check_dir(dir.path()).expect("check");
        assert_eq!(reports, vec![FileCheck { path: path.clone(), triggers: Some(20), problems: vec![] }]);
        assert_eq!(std::fs::read(&path).expect("read"), before, "the check changes nothing");
        assert!(!path.with_extension("redb.check").exists(), "the copy is removed");
    }

    #[test]
    fn a_flipped_byte_in_a_body_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = store_with(dir.path(), 20);
        let mut bytes = std::fs::read(&path).expect("read");
        let at = offsets_of(&bytes, MARKER);
        assert!(!at.is_empty(), "the bodies are in the file");
        // One byte of one body: nothing but a checksum can notice it.
        bytes[at[at.len() / 2] + MARKER.len() + 10] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        let reports = check_dir(dir.path()).expect("check");
        assert!(!reports[0].problems.is_empty(), "{reports:?}");
        assert_eq!(std::fs::read(&path).expect("read"), bytes, "the check changes nothing");
    }

    #[test]
    fn a_truncated_file_is_reported() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = store_with(dir.path(), 20);
        let len = std::fs::metadata(&path).expect("meta").len();
        std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(len / 3).expect("truncate");
        let reports = check_dir(dir.path()).expect("check");
        assert!(!reports[0].problems.is_empty(), "{reports:?}");
    }

    #[test]
    fn repair_rebuilds_a_truncated_file_from_what_is_readable_and_keeps_the_original() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = store_with(dir.path(), 40);
        let len = std::fs::metadata(&path).expect("meta").len();
        std::fs::OpenOptions::new().write(true).open(&path).expect("open").set_len(len * 2 / 3).expect("truncate");
        let damaged = std::fs::read(&path).expect("read");
        let reports = repair_dir(dir.path()).expect("repair");
        let r = &reports[0];
        assert!(!r.problems.is_empty(), "{r:?}");
        let aside = r.moved_to.clone().expect("moved aside");
        assert_eq!(std::fs::read(&aside).expect("read"), damaged, "the damaged original is kept as it was");
        // The rebuilt file passes the check and holds exactly what was kept.
        let after = check_dir(dir.path()).expect("check");
        assert_eq!(after[0].problems, Vec::<String>::new());
        assert_eq!(after[0].triggers, Some(r.kept));
        // And the store opens on it and counts the same.
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let store = Store::open(&StoreConfig { path: dir.path().to_path_buf(), shards: 1, ..StoreConfig::default() }).expect("open");
        assert_eq!(rt.block_on(store.stats()).expect("stats").pending, r.kept);
        rt.block_on(store.close());
        eprintln!("truncated to 2/3: {r:?}");
    }

    #[test]
    fn repair_leaves_a_sound_file_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = store_with(dir.path(), 5);
        let before = std::fs::read(&path).expect("read");
        let reports = repair_dir(dir.path()).expect("repair");
        assert_eq!(reports[0].kept, 5);
        assert!(reports[0].moved_to.is_none() && reports[0].problems.is_empty());
        assert_eq!(std::fs::read(&path).expect("read"), before);
    }

    #[test]
    fn repair_salvages_a_file_with_a_flipped_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = store_with(dir.path(), 20);
        let mut bytes = std::fs::read(&path).expect("read");
        let at = offsets_of(&bytes, MARKER);
        bytes[at[at.len() / 2] + MARKER.len() + 10] ^= 0x01;
        std::fs::write(&path, &bytes).expect("write");
        let reports = repair_dir(dir.path()).expect("repair");
        eprintln!("flipped byte: {:?}", reports[0]);
        assert!(reports[0].moved_to.is_some());
        let after = check_dir(dir.path()).expect("check");
        assert_eq!(after[0].problems, Vec::<String>::new());
        assert_eq!(after[0].triggers, Some(reports[0].kept));
    }

    /// A file whose tail reads as zeros (lost or never-written pages) makes
    /// redb panic rather than fail: the check reports it, repair salvages
    /// around it, and startup names the file instead of dying.
    #[test]
    fn a_zeroed_tail_is_reported_not_a_crash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = store_with(dir.path(), 20);
        let mut bytes = std::fs::read(&path).expect("read");
        let len = bytes.len();
        bytes[len * 2 / 3..].fill(0);
        std::fs::write(&path, &bytes).expect("write");
        let reports = check_dir(dir.path()).expect("check");
        assert!(!reports[0].problems.is_empty(), "{reports:?}");
        let err = Store::open(&StoreConfig { path: dir.path().to_path_buf(), shards: 1, ..StoreConfig::default() })
            .err()
            .expect("startup refuses")
            .to_string();
        assert!(err.contains("shard-00.redb") && err.contains("damaged"), "{err}");
        let repaired = repair_dir(dir.path()).expect("repair");
        assert!(repaired[0].moved_to.is_some(), "{repaired:?}");
        assert_eq!(check_dir(dir.path()).expect("check")[0].problems, Vec::<String>::new());
    }

    #[test]
    fn a_store_in_use_is_not_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let _store = Store::open(&StoreConfig { path: dir.path().to_path_buf(), shards: 1, ..StoreConfig::default() }).expect("open");
        let err = check_dir(dir.path()).expect_err("in use");
        assert!(err.to_string().contains("in use"), "{err}");
    }

    #[test]
    fn a_directory_without_a_store_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(check_dir(dir.path()).expect_err("empty").to_string().contains("no store files"));
    }
}
