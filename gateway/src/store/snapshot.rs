//! Snapshots: the backup format, written from a live store and restored into
//! a new one. The admin API streams and paces it; the format lives here.
//!
//! A snapshot is one redb read transaction per shard (MVCC: the writers go on
//! committing meanwhile), so ingest is never blocked. redb has no online file
//! copy, so the snapshot is Weir's own format:
//!
//! ```text
//! "WEIRBAK2"
//! frames: u8 kind, u32 payload length (LE), payload, u32 CRC-32 (LE) of kind, length and payload
//!   1 trigger    u128 id | u32 len, record (store/record.rs) | u32 len, raw body | u8 has transformed (0, 1) [| u32 len, body]
//!   2 plugin     str16 sha256 | component bytes (checked against the sha256 on restore)
//!   3 version    str16 tenant | u32 version | str16 sha256 | u64 uploaded ms | str16 source | u64 size
//!   4 active     str16 tenant | u32 version
//!   5 paused     str16 tenant
//!   9 end        u64 number of trigger frames   (a backup without it is truncated)
//! ```
//!
//! A frame is exactly its fields and nothing follows the end frame; a restore
//! refuses anything else, naming the byte offset. Each frame's checksum
//! catches what the fields cannot: a changed byte inside a body, an id or a
//! time is refused with the offset of its frame, never restored as it reads.
//! `WEIRBAK1` backups (the same frames without the checksum, written before
//! 2026-12-01) still restore, checked field by field only.
//!
//! A restore is all or nothing. Into a new directory, it builds the store in a
//! staging directory next to the target (`.NAME.restoring`) and renames it
//! into place only once every frame is in and committed. Into an existing
//! empty directory (a mount point, where no rename can land) it builds in
//! place. Either way the directory holds a `RESTORING` mark until the end: a
//! restore that fails removes what it wrote; one that was killed leaves the
//! mark, a later restore clears what it marked, and [`super::Store::open`]
//! refuses a marked directory, so a half-built store is never served as if it
//! were the whole one.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use redb::{ReadableDatabase, ReadableTable};

use super::{ControlFile, NewTrigger, PluginVersion, Store, StoreError, TriggerMeta, io_err, tables};
use crate::config::StoreConfig;
use crate::id::TriggerId;

const MAGIC: &[u8; 8] = b"WEIRBAK2";
/// The format before frame checksums; still restored.
const MAGIC_V1: &[u8; 8] = b"WEIRBAK1";
/// A frame's header: kind and payload length.
const HEAD: usize = 5;
/// A frame's trailer in `WEIRBAK2`: the CRC-32 of its header and payload.
const CRC: usize = 4;
const K_TRIGGER: u8 = 1;
const K_PLUGIN: u8 = 2;
const K_VERSION: u8 = 3;
const K_ACTIVE: u8 = 4;
const K_PAUSED: u8 = 5;
const K_END: u8 = 9;
/// Frames are handed out in chunks of about this size.
const CHUNK: usize = 256 * 1024;
/// The file that marks a directory as an unfinished restore.
pub const RESTORING_MARK: &str = "RESTORING";

/// Receives the snapshot chunk by chunk; an error stops the snapshot.
pub type Sink<'a> = dyn FnMut(Bytes) -> Result<(), StoreError> + 'a;

/// Writes a whole snapshot of `store` and `control` through `sink`; returns
/// the number of triggers. Blocking: run it off the async workers.
pub fn write(store: &Store, control: &ControlFile, sink: &mut Sink<'_>) -> Result<u64, StoreError> {
    let mut out = Frames { buf: BytesMut::with_capacity(CHUNK), sink };
    out.buf.put_slice(MAGIC);
    let mut count = 0u64;
    for shard in &store.inner.shards {
        let db = shard.database()?;
        // One read transaction per shard: a consistent view of that file.
        let txn = db.begin_read().map_err(io_err)?;
        let triggers = txn.open_table(tables::TRIGGERS).map_err(io_err)?;
        let bodies = txn.open_table(tables::BODIES).map_err(io_err)?;
        let transformed = txn.open_table(tables::TRANSFORMED).map_err(io_err)?;
        for entry in triggers.iter().map_err(io_err)? {
            let (k, v) = entry.map_err(io_err)?;
            let id = k.value();
            let body = bodies.get(id).map_err(io_err)?;
            let t = transformed.get(id).map_err(io_err)?;
            let (meta, body, t) = (v.value(), body.as_ref().map_or(&[][..], |b| b.value()), t.as_ref().map(|t| t.value()));
            let mut p = Vec::with_capacity(32 + meta.len() + body.len() + t.map_or(0, |t| t.len()));
            p.extend_from_slice(&id.to_le_bytes());
            len32(&mut p, meta);
            len32(&mut p, body);
            match t {
                Some(t) => {
                    p.push(1);
                    len32(&mut p, t);
                }
                None => p.push(0),
            }
            out.frame(K_TRIGGER, &p)?;
            count += 1;
        }
    }
    for (sha, bytes) in control.all_components()? {
        let mut p = Vec::new();
        str16(&mut p, &sha);
        p.extend_from_slice(&bytes);
        out.frame(K_PLUGIN, &p)?;
    }
    for (tenant, v) in control.all_versions()? {
        let mut p = Vec::new();
        str16(&mut p, &tenant);
        p.extend_from_slice(&v.version.to_le_bytes());
        str16(&mut p, &v.sha256);
        p.extend_from_slice(&v.uploaded_at_ms.to_le_bytes());
        str16(&mut p, &v.source);
        p.extend_from_slice(&v.size.to_le_bytes());
        out.frame(K_VERSION, &p)?;
    }
    for (tenant, version) in control.all_active()? {
        let mut p = Vec::new();
        str16(&mut p, &tenant);
        p.extend_from_slice(&version.to_le_bytes());
        out.frame(K_ACTIVE, &p)?;
    }
    for tenant in control.paused_tenants()? {
        let mut p = Vec::new();
        str16(&mut p, &tenant);
        out.frame(K_PAUSED, &p)?;
    }
    out.frame(K_END, &count.to_le_bytes())?;
    out.flush()?;
    Ok(count)
}

struct Frames<'s, 'a> {
    buf: BytesMut,
    sink: &'s mut Sink<'a>,
}

impl Frames<'_, '_> {
    fn frame(&mut self, kind: u8, payload: &[u8]) -> Result<(), StoreError> {
        let start = self.buf.len();
        self.buf.put_u8(kind);
        self.buf.put_u32_le(payload.len() as u32);
        self.buf.put_slice(payload);
        let crc = crc32fast::hash(&self.buf[start..]);
        self.buf.put_u32_le(crc);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StoreError> {
        if !self.buf.is_empty() {
            (self.sink)(self.buf.split().freeze())?;
        }
        Ok(())
    }
}

fn len32(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(bytes);
}

fn str16(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_le_bytes());
    buf.extend_from_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read backup {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is not a Weir backup (no WEIRBAK2 or WEIRBAK1 header)")]
    NotABackup { path: PathBuf },
    #[error(
        "the backup is truncated or damaged at byte {offset}: {reason}; take the backup again (nothing was written to the target directory)"
    )]
    Damaged { offset: usize, reason: String },
    #[error("{dir} already holds a store; restore into an empty or new directory")]
    NotEmpty { dir: PathBuf },
    #[error("cannot prepare {dir} for the restore: {reason}")]
    Staging { dir: PathBuf, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub triggers: u64,
    pub plugin_versions: u64,
}

/// Rebuilds a store in `config.path` (which must be empty or absent) from a
/// backup file: into a staging directory first, renamed into place only when
/// complete. On error nothing is left at `config.path` or beside it.
pub async fn restore(from: &Path, config: &StoreConfig) -> Result<RestoreSummary, RestoreError> {
    let data = tokio::fs::read(from).await.map_err(|e| RestoreError::Read { path: from.to_path_buf(), reason: e.to_string() })?;
    if !data.starts_with(MAGIC) && !data.starts_with(MAGIC_V1) {
        return Err(RestoreError::NotABackup { path: from.to_path_buf() });
    }
    let target = config.path.clone();
    // A new directory is built beside the target and renamed into place. An
    // existing empty one (often a mount point, where no rename can land) is
    // built in place, marked until complete.
    let in_place = target.is_dir();
    let dir = if in_place { prepare_in_place(&target)? } else { prepare_staging(&target)? };
    let build = StoreConfig { path: dir.clone(), ..config.clone() };
    match restore_into(&data, &build).await {
        Ok(summary) => {
            unmark(&dir)?;
            if !in_place {
                publish(&dir, &target)?;
            }
            Ok(summary)
        }
        Err(e) => {
            let cleanup = if in_place { clear_dir(&dir) } else { std::fs::remove_dir_all(&dir) };
            if let Err(cleanup) = cleanup {
                tracing::warn!(dir = %dir.display(), error = %cleanup, "the failed restore's files could not be removed");
            }
            Err(e)
        }
    }
}

/// An existing target: empty, or what a killed restore left (marked), which is cleared.
fn prepare_in_place(target: &Path) -> Result<PathBuf, RestoreError> {
    let err = |e: std::io::Error| RestoreError::Staging { dir: target.to_path_buf(), reason: e.to_string() };
    let empty = std::fs::read_dir(target).map_err(err)?.next().is_none();
    if !empty {
        if !target.join(RESTORING_MARK).exists() {
            return Err(RestoreError::NotEmpty { dir: target.to_path_buf() });
        }
        clear_dir(target).map_err(err)?;
    }
    write_synced(&target.join(RESTORING_MARK), MARK_TEXT).map_err(err)?;
    Ok(target.to_path_buf())
}

/// Removes everything inside `dir`, keeping `dir`.
fn clear_dir(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() { std::fs::remove_dir_all(&path)? } else { std::fs::remove_file(&path)? }
    }
    Ok(())
}

const MARK_TEXT: &[u8] = b"weir restore in progress; delete this directory's contents and run weir restore again\n";

/// `.NAME.restoring` next to the target, created fresh and marked. A marked
/// one left by a killed restore is removed first; an unmarked one is not ours.
fn prepare_staging(target: &Path) -> Result<PathBuf, RestoreError> {
    let staging_err = |dir: &Path, e: std::io::Error| RestoreError::Staging { dir: dir.to_path_buf(), reason: e.to_string() };
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "weir-data".into());
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| staging_err(parent, e))?;
    let staging = parent.join(format!(".{name}.restoring"));
    if staging.exists() {
        if !staging.join(RESTORING_MARK).exists() {
            return Err(RestoreError::Staging { dir: staging, reason: "it exists and is not an unfinished restore; move it aside".into() });
        }
        std::fs::remove_dir_all(&staging).map_err(|e| staging_err(&staging, e))?;
    }
    std::fs::create_dir_all(&staging).map_err(|e| staging_err(&staging, e))?;
    write_synced(&staging.join(RESTORING_MARK), MARK_TEXT).map_err(|e| staging_err(&staging, e))?;
    Ok(staging)
}

/// Removes the mark of a complete restore, durably.
fn unmark(dir: &Path) -> Result<(), RestoreError> {
    let err = |e: std::io::Error| RestoreError::Staging { dir: dir.to_path_buf(), reason: e.to_string() };
    std::fs::remove_file(dir.join(RESTORING_MARK)).map_err(err)?;
    sync_dir(dir).map_err(err)
}

/// Renames the complete (unmarked) staging directory to the target.
fn publish(staging: &Path, target: &Path) -> Result<(), RestoreError> {
    let err = |e: std::io::Error| RestoreError::Staging { dir: staging.to_path_buf(), reason: e.to_string() };
    // The target does not exist: rename(2) creates it, atomically.
    std::fs::rename(staging, target).map_err(err)?;
    if let Some(parent) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent).map_err(err)?;
    }
    Ok(())
}

fn write_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

/// Reads every frame into a fresh store at `config.path`.
async fn restore_into(data: &[u8], config: &StoreConfig) -> Result<RestoreSummary, RestoreError> {
    let store = Store::open_dir(config, Arc::new(crate::telemetry::Metrics::new(100)))?;
    let result = restore_frames(data, &store, config).await;
    // Writers stop after their last commit, success or not.
    store.close().await;
    result
}

async fn restore_frames(data: &[u8], store: &Store, config: &StoreConfig) -> Result<RestoreSummary, RestoreError> {
    let control = Arc::new(ControlFile::open(&config.path)?);
    let mut r = Reader { data, pos: MAGIC.len(), checksummed: data.starts_with(MAGIC) };
    let mut summary = RestoreSummary::default();
    let mut components = Vec::new();
    let mut versions: Vec<(String, PluginVersion)> = Vec::new();
    let mut active = Vec::new();
    let mut paused = Vec::new();
    let mut inserts = tokio::task::JoinSet::new();
    let mut ended = None;
    while let Some((kind, payload, offset)) = r.next()? {
        let damaged = |reason: &str| RestoreError::Damaged { offset, reason: reason.into() };
        let mut p = Cursor { b: payload };
        match kind {
            K_TRIGGER => {
                let trigger = p.trigger().map_err(|reason| damaged(&reason))?;
                let s = store.clone();
                // Many inserts at once share group commits.
                inserts.spawn(async move { s.insert(trigger).await });
                if inserts.len() >= 512
                    && let Some(r) = inserts.join_next().await
                {
                    r.map_err(|e| StoreError::Io(e.to_string()))??;
                }
                summary.triggers += 1;
            }
            K_PLUGIN => {
                let sha = p.str16().ok_or_else(|| damaged("sha256"))?;
                // The one frame with a digest of its own: check it, so a
                // damaged component is refused here rather than stored.
                if sha256_hex(p.b) != sha {
                    return Err(damaged("the component's bytes do not match its sha256"));
                }
                components.push((sha, p.b.to_vec()));
            }
            K_VERSION => {
                let tenant = p.str16().ok_or_else(|| damaged("tenant"))?;
                let version = p.u32().ok_or_else(|| damaged("version"))?;
                let sha256 = p.str16().ok_or_else(|| damaged("sha256"))?;
                let uploaded_at_ms = u64::from_le_bytes(p.array().ok_or_else(|| damaged("time"))?);
                let source = p.str16().ok_or_else(|| damaged("source"))?;
                let size = u64::from_le_bytes(p.array().ok_or_else(|| damaged("size"))?);
                p.end().map_err(|reason| damaged(&reason))?;
                versions.push((tenant, PluginVersion { version, sha256, uploaded_at_ms, source, size }));
            }
            K_ACTIVE => {
                let tenant = p.str16().ok_or_else(|| damaged("tenant"))?;
                active.push((tenant, p.u32().ok_or_else(|| damaged("version"))?));
                p.end().map_err(|reason| damaged(&reason))?;
            }
            K_PAUSED => {
                paused.push(p.str16().ok_or_else(|| damaged("tenant"))?);
                p.end().map_err(|reason| damaged(&reason))?;
            }
            K_END => {
                ended = Some(u64::from_le_bytes(p.array().ok_or_else(|| damaged("count"))?));
                p.end().map_err(|reason| damaged(&reason))?;
                // The writer ends the file here: anything after is damage
                // (a frame length that was changed, or two files joined).
                if r.pos != data.len() {
                    return Err(RestoreError::Damaged {
                        offset: r.pos,
                        reason: format!("{} bytes after the end frame", data.len() - r.pos),
                    });
                }
                break;
            }
            other => return Err(damaged(&format!("unknown frame kind {other}"))),
        }
    }
    while let Some(r) = inserts.join_next().await {
        r.map_err(|e| StoreError::Io(e.to_string()))??;
    }
    match ended {
        Some(n) if n == summary.triggers => {}
        Some(n) => {
            return Err(RestoreError::Damaged {
                offset: r.pos,
                reason: format!("the trailer says {n} triggers, {} were read", summary.triggers),
            });
        }
        None => {
            return Err(RestoreError::Damaged { offset: r.pos, reason: "no end frame: the backup is truncated".into() });
        }
    }
    summary.plugin_versions = versions.len() as u64;
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        for (sha, bytes) in &components {
            control.restore_plugin(sha, bytes, &versions)?;
        }
        for (tenant, v) in &active {
            control.set_active(tenant, *v)?;
        }
        for tenant in &paused {
            control.set_paused(tenant, true, 0)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Io(e.to_string()))??;
    Ok(summary)
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    /// `WEIRBAK2`: every frame ends with its CRC-32.
    checksummed: bool,
}

/// One frame of a backup: its kind, its payload, and the offset of its header.
type Frame<'a> = (u8, &'a [u8], usize);

impl<'a> Reader<'a> {
    fn next(&mut self) -> Result<Option<Frame<'a>>, RestoreError> {
        if self.pos == self.data.len() {
            return Ok(None);
        }
        let offset = self.pos;
        let damaged = |reason: &str| RestoreError::Damaged { offset, reason: reason.into() };
        let head = self.data.get(offset..offset + HEAD).ok_or_else(|| damaged("frame header"))?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let end = offset + HEAD + len;
        let payload = self.data.get(offset + HEAD..end).ok_or_else(|| damaged("frame payload"))?;
        self.pos = end;
        if self.checksummed {
            let stored = self.data.get(end..end + CRC).ok_or_else(|| damaged("frame checksum"))?;
            let stored = u32::from_le_bytes([stored[0], stored[1], stored[2], stored[3]]);
            if crc32fast::hash(&self.data[offset..end]) != stored {
                return Err(damaged("the frame's checksum does not match: a byte of it changed after the backup was written"));
            }
            self.pos = end + CRC;
        }
        Ok(Some((head[0], payload, offset)))
    }
}

struct Cursor<'a> {
    b: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (h, t) = self.b.split_at(n);
        self.b = t;
        Some(h)
    }
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }
    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }
    fn str16(&mut self) -> Option<String> {
        let n = u16::from_le_bytes(self.array()?) as usize;
        String::from_utf8(self.take(n)?.to_vec()).ok()
    }
    /// Every field read: a frame is exactly its fields (what the writer writes).
    fn end(&self) -> Result<(), String> {
        if self.b.is_empty() { Ok(()) } else { Err(format!("{} bytes after the frame's last field", self.b.len())) }
    }
    fn len32(&mut self, what: &str) -> Result<&'a [u8], String> {
        let n = self.u32().ok_or_else(|| format!("{what} length"))? as usize;
        self.take(n).ok_or_else(|| what.to_string())
    }

    /// A trigger frame's payload.
    fn trigger(&mut self) -> Result<NewTrigger, String> {
        let id = TriggerId::from_u128(u128::from_le_bytes(self.array().ok_or("trigger id")?));
        let meta = TriggerMeta::decode(self.len32("record")?).map_err(|e| format!("record: {e}"))?;
        let body = Bytes::copy_from_slice(self.len32("body")?);
        // Only 0 or 1: any other flag was read as "none" before, silently
        // dropping the transformed body that follows (seen while writing
        // the restore fuzz test).
        let transformed = match self.take(1).ok_or("flag")?[0] {
            0 => None,
            1 => Some(Bytes::copy_from_slice(self.len32("transformed")?)),
            other => return Err(format!("transformed-body flag {other}, not 0 or 1")),
        };
        self.end()?;
        Ok(NewTrigger { id, meta, body, transformed })
    }
}

/// `backup` (a `WEIRBAK2` file) as the `WEIRBAK1` writer made it: the same
/// frames without their checksums. For tests of the field checks and of
/// restoring old backups.
#[cfg(test)]
pub(crate) fn without_checksums(backup: &[u8]) -> Vec<u8> {
    let mut out = MAGIC_V1.to_vec();
    let mut pos = MAGIC.len();
    while pos + HEAD <= backup.len() {
        let len = u32::from_le_bytes([backup[pos + 1], backup[pos + 2], backup[pos + 3], backup[pos + 4]]) as usize;
        out.extend_from_slice(&backup[pos..pos + HEAD + len]);
        pos += HEAD + len + CRC;
    }
    out
}
