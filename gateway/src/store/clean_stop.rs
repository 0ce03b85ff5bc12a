//! The clean-stop mark: `shard-NN.redb.clean`, which lets the next start
//! trust the page cache of a shard file instead of evicting it.
//!
//! Opening a shard evicts its cached pages (`Files::drop_cache`): after a
//! failed fsync Linux keeps the unwritten pages cached and marked clean, and
//! a reopen would read a failed commit as if it were on disk. Evicting costs
//! time in proportion to what is cached (and the reads after it come from
//! the disk): 0.44 s of a restart with 1 M triggers stored. A process that
//! stopped cleanly has no such pages: every failed sync made its writer
//! reopen the file (evicting them), and its last checkpoint and redb's close
//! both synced without error. Only then does the writer write the mark.
//!
//! The mark names the file it was written for (device, inode, length,
//! modification time): a file replaced or changed since (by `weir store
//! repair`, a restore, an operator's copy) does not match it. The next
//! open removes the mark before it trusts it, so a process that dies later
//! leaves none. Neither needs an fsync: a power cut empties the page cache
//! anyway, and an empty or lost mark only means the cache is evicted.

use std::path::{Path, PathBuf};

use super::Files;

/// Where the mark of `shard` lives.
fn mark_path(shard: &Path) -> PathBuf {
    shard.with_extension("redb.clean")
}

/// Records that `shard` was closed cleanly, as it is now.
pub(crate) fn mark(files: &Files, shard: &Path) -> std::io::Result<()> {
    let identity = files.identity(shard)?;
    let file = files.open_backend(&mark_path(shard))?;
    let written = file.set_len(0).and_then(|()| file.write(0, identity.as_bytes()));
    written.and(file.close())
}

/// Whether `shard` is as its last clean stop left it. The mark is removed
/// either way: true only if it matched and is gone.
pub(crate) fn take(files: &Files, shard: &Path) -> bool {
    let path = mark_path(shard);
    if !files.exists(&path) {
        return false;
    }
    let matched = read(files, &path).is_some_and(|mark| files.identity(shard).is_ok_and(|now| now.as_bytes() == mark));
    files.remove_if_present(&path).is_ok() && matched
}

fn read(files: &Files, path: &Path) -> Option<Vec<u8>> {
    let file = files.open_backend(path).ok()?;
    let read = (|| {
        let len = usize::try_from(file.len().ok()?).ok().filter(|&l| l <= 256)?;
        let mut out = vec![0; len];
        file.read(0, &mut out).ok()?;
        Some(out)
    })();
    let _ = file.close();
    read
}
