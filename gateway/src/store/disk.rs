//! The free-space reserve (`store.min_free_bytes`): new triggers are refused
//! while the store's filesystem has less free space than that, so Weir says
//! so (503 `disk_low`, `/readyz` 503) before a commit meets ENOSPC. State
//! changes still go through: delivering the backlog is what frees space.
//!
//! Free space comes from statvfs(2) (`f_bavail`: what an unprivileged writer
//! may use), read at most every [`RECHECK`] so a busy ingest path does not
//! pay a system call per trigger.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::StoreError;

/// How stale the free-space figure may be.
const RECHECK: Duration = Duration::from_millis(250);

pub(crate) struct Reserve {
    /// Bytes to keep free; 0 turns the check off.
    reserve: u64,
    /// Free bytes at the last check (`u64::MAX`: unknown).
    free: AtomicU64,
    /// When the last check ran, in µs since `epoch` (0: never).
    checked_us: AtomicU64,
    epoch: Instant,
}

impl Reserve {
    pub(crate) fn new(reserve: u64) -> Reserve {
        Reserve { reserve, free: AtomicU64::new(u64::MAX), checked_us: AtomicU64::new(0), epoch: Instant::now() }
    }

    pub(crate) fn reserve(&self) -> u64 {
        self.reserve
    }

    /// `Err(DiskLow)` while the filesystem of `dir` has less than the reserve free.
    pub(crate) fn check(&self, dir: &Path) -> Result<(), StoreError> {
        if self.reserve == 0 {
            return Ok(());
        }
        let free = self.free(dir);
        if free < self.reserve {
            return Err(StoreError::DiskLow { free, reserve: self.reserve });
        }
        Ok(())
    }

    /// Free bytes on the filesystem of `dir`, re-read when the last figure is stale.
    pub(crate) fn free(&self, dir: &Path) -> u64 {
        let now = self.epoch.elapsed().as_micros() as u64 + 1;
        let last = self.checked_us.load(Ordering::Relaxed);
        if last == 0 || now.saturating_sub(last) >= RECHECK.as_micros() as u64 {
            self.checked_us.store(now, Ordering::Relaxed);
            match free_bytes(dir) {
                Ok(free) => self.free.store(free, Ordering::Relaxed),
                Err(e) => {
                    // Without a figure, do not refuse: the commit itself still reports ENOSPC.
                    tracing::debug!(dir = %dir.display(), error = %e, "statvfs failed; free-space reserve not checked");
                    self.free.store(u64::MAX, Ordering::Relaxed);
                }
            }
        }
        self.free.load(Ordering::Relaxed)
    }
}

/// Bytes an unprivileged process may still write on the filesystem of `dir`.
fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
    // SAFETY: statvfs only writes into the struct we pass; a zeroed statvfs is a valid value of a plain C struct.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string that outlives the call, `st` a valid out pointer.
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reserve_above_the_free_space_refuses_and_none_allows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let free = Reserve::new(0).free(dir.path());
        assert!(free > 0 && free < u64::MAX, "statvfs reads the real free space: {free}");
        assert!(Reserve::new(0).check(dir.path()).is_ok(), "0 turns the check off");
        assert!(Reserve::new(1).check(dir.path()).is_ok());
        match Reserve::new(free.saturating_mul(4)).check(dir.path()) {
            Err(StoreError::DiskLow { free: f, reserve }) => assert!(f < reserve),
            other => panic!("expected DiskLow, got {other:?}"),
        }
    }
}
