//! A full disk on a real filesystem: the store on a small tmpfs (mounted
//! when the test runs as root; skipped with a message elsewhere). Inserts
//! past the space left fail with a retryable error and are acknowledged to
//! nobody; once space is freed the store takes writes again without a
//! restart; every acknowledged trigger survives a reopen.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use super::power_cut::{audit, databases};
use super::*;

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"]).arg(dir.path()).status().ok()?;
        ok.success().then_some(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a failed test may still hold files open; the mount must not outlive it.
        let _ = Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[test]
fn a_full_filesystem_refuses_writes_retryably_and_recovers_when_space_is_freed() {
    let Some(fs) = Tmpfs::mount("3m") else {
        eprintln!("skipped: mounting a tmpfs needs root (the fault backend's ENOSPC tests cover the store elsewhere)");
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    // No free-space reserve: this is about what happens when the disk itself says ENOSPC.
    let cfg = StoreConfig { cache_mb: 4, min_free_bytes: 0, ..config(&fs.path().join("data"), 1) };
    let store = Store::open(&cfg).expect("open");
    // Space that can be given back later.
    let filler: PathBuf = fs.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1024 * 1024]).expect("filler");
    let mut acked = Vec::new();
    let mut refused = 0;
    for i in 0..2000 {
        let body = vec![(i % 251) as u8; 8 * 1024];
        let t = trigger(&store, "t0", Some(format!("k{i}")), &body, State::Pending);
        match rt.block_on(store.insert(t)) {
            Ok(got) => acked.push((got.id, body)),
            Err(e) => {
                assert!(e.is_transient() || matches!(e, StoreError::Io(_)), "a full disk is a retryable fault: {e}");
                refused += 1;
                if refused >= 20 {
                    break;
                }
            }
        }
    }
    assert!(refused >= 20, "the filesystem never filled ({} acknowledged)", acked.len());
    assert!(!acked.is_empty());
    std::fs::remove_file(&filler).expect("free space");
    // Recovery without a restart: the writer reopens at most once a second.
    let deadline = Instant::now() + Duration::from_secs(20);
    let after = loop {
        let t = trigger(&store, "t0", None, b"after", State::Pending);
        match rt.block_on(store.insert(t)) {
            Ok(got) => break got.id,
            Err(e) if Instant::now() < deadline => {
                assert!(e.is_transient() || matches!(e, StoreError::Io(_)), "{e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("no recovery within 20 s of freeing space: {e}"),
        }
    };
    rt.block_on(store.close());
    drop(store);
    let store = Store::open(&cfg).expect("reopen");
    for (id, body) in &acked {
        let got = rt.block_on(store.get(*id)).expect("get").unwrap_or_else(|| panic!("acknowledged {id} lost"));
        assert_eq!(&got.body, body);
    }
    assert!(rt.block_on(store.get(after)).expect("get").is_some());
    audit(&databases(&store).expect("dbs")[0]).expect("audit");
    rt.block_on(store.close());
    eprintln!("full disk: {} acknowledged, {refused} refused, recovered after freeing 1 MiB", acked.len());
}
