//! Backup and restore.
//!
//! `GET /v1/backup` streams a consistent logical snapshot: one redb read
//! transaction per shard (MVCC: the writers go on committing meanwhile), so
//! ingest is never blocked, and the stream stops at once on shutdown. redb
//! has no online file copy, so the snapshot is Weir's own format:
//!
//! ```text
//! "WEIRBAK1"
//! frames: u8 kind, u32 payload length (LE), payload
//!   1 trigger    u128 id | u32 len, record (store/record.rs) | u32 len, raw body | u8 has transformed [| u32 len, body]
//!   2 plugin     str16 sha256 | component bytes
//!   3 version    str16 tenant | u32 version | str16 sha256 | u64 uploaded ms | str16 source | u64 size
//!   4 active     str16 tenant | u32 version
//!   5 paused     str16 tenant
//!   9 end        u64 number of trigger frames   (a backup without it is truncated)
//! ```
//!
//! `weir restore --from FILE --data-dir DIR` rebuilds a store from it into an
//! empty directory; `weir serve` on that directory then has every trigger,
//! plugin version, active choice and pause of the snapshot.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::BodyExt;
use redb::ReadableDatabase;

use super::Admin;
use crate::config::StoreConfig;
use crate::http::Resp;
use crate::id::TriggerId;
use crate::store::{NewTrigger, PluginRepo, PluginVersion, Store, StoreError, TriggerMeta};

const MAGIC: &[u8; 8] = b"WEIRBAK1";
const K_TRIGGER: u8 = 1;
const K_PLUGIN: u8 = 2;
const K_VERSION: u8 = 3;
const K_ACTIVE: u8 = 4;
const K_PAUSED: u8 = 5;
const K_END: u8 = 9;
/// Frames are batched into chunks of about this size on the wire.
const CHUNK: usize = 256 * 1024;

impl Admin {
    pub(super) async fn backup(&self) -> Resp {
        let (mut tx, body) = http_body_util::channel::Channel::<Bytes, std::io::Error>::new(4);
        let (store, repo, shutdown) = (self.store.clone(), self.repo.clone(), self.shutdown.clone());
        let handle = tokio::runtime::Handle::current();
        let rate = self.backup_bytes_per_sec.max(1);
        tokio::task::spawn_blocking(move || {
            let mut out = Writer { buf: BytesMut::with_capacity(CHUNK), sent: 0 };
            let started = std::time::Instant::now();
            let mut paced = 0u64;
            let result = write_snapshot(&store, &repo, &mut out, &mut |chunk| {
                if shutdown.is_triggered() {
                    return Err(StoreError::ShuttingDown);
                }
                // Pace the stream (admin.backup_max_mb_per_sec): a backup must
                // not take the CPU and disk that ingest needs.
                paced += chunk.len() as u64;
                let due = std::time::Duration::from_secs_f64(paced as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait.min(std::time::Duration::from_millis(100)));
                }
                handle.block_on(tx.send_data(chunk)).map_err(|_| StoreError::Io("the client went away".into()))
            });
            match result {
                Ok(n) => tracing::info!(triggers = n, bytes = out.sent, "backup streamed"),
                Err(e) => {
                    tracing::warn!(error = %e, "backup stopped before the end; the client gets a truncated stream");
                    tx.abort(std::io::Error::other(e.to_string()));
                }
            }
        });
        let mut resp = Response::new(body.boxed());
        *resp.status_mut() = StatusCode::OK;
        resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.weir.backup"));
        resp
    }
}

struct Writer {
    buf: BytesMut,
    sent: u64,
}

impl Writer {
    fn frame(&mut self, kind: u8, payload: &[u8], flush: &mut dyn FnMut(Bytes) -> Result<(), StoreError>) -> Result<(), StoreError> {
        self.buf.put_u8(kind);
        self.buf.put_u32_le(payload.len() as u32);
        self.buf.put_slice(payload);
        if self.buf.len() >= CHUNK {
            self.flush(flush)?;
        }
        Ok(())
    }

    fn flush(&mut self, flush: &mut dyn FnMut(Bytes) -> Result<(), StoreError>) -> Result<(), StoreError> {
        if !self.buf.is_empty() {
            let chunk = self.buf.split().freeze();
            self.sent += chunk.len() as u64;
            flush(chunk)?;
        }
        Ok(())
    }
}

fn str16(buf: &mut Vec<u8>, s: &str) {
    buf.extend_from_slice(&(s.len().min(u16::MAX as usize) as u16).to_le_bytes());
    buf.extend_from_slice(&s.as_bytes()[..s.len().min(u16::MAX as usize)]);
}

/// Writes the whole snapshot through `flush`; returns the number of triggers.
fn write_snapshot(
    store: &Store,
    repo: &PluginRepo,
    out: &mut Writer,
    flush: &mut dyn FnMut(Bytes) -> Result<(), StoreError>,
) -> Result<u64, StoreError> {
    out.buf.put_slice(MAGIC);
    let mut count = 0u64;
    for db in store.databases()? {
        // One read transaction per shard: a consistent view of that file.
        let txn = db.begin_read().map_err(crate::store::io_err)?;
        count += crate::store::for_each_trigger(&txn, &mut |id, meta, body, transformed| {
            let mut p = Vec::with_capacity(32 + meta.len() + body.len() + transformed.map_or(0, |t| t.len()));
            p.extend_from_slice(&id.as_u128().to_le_bytes());
            p.extend_from_slice(&(meta.len() as u32).to_le_bytes());
            p.extend_from_slice(meta);
            p.extend_from_slice(&(body.len() as u32).to_le_bytes());
            p.extend_from_slice(body);
            match transformed {
                Some(t) => {
                    p.push(1);
                    p.extend_from_slice(&(t.len() as u32).to_le_bytes());
                    p.extend_from_slice(t);
                }
                None => p.push(0),
            }
            out.frame(K_TRIGGER, &p, flush)
        })?;
    }
    for (sha, bytes) in repo.all_components()? {
        let mut p = Vec::new();
        str16(&mut p, &sha);
        p.extend_from_slice(&bytes);
        out.frame(K_PLUGIN, &p, flush)?;
    }
    for (tenant, v) in repo.all_versions()? {
        let mut p = Vec::new();
        str16(&mut p, &tenant);
        p.extend_from_slice(&v.version.to_le_bytes());
        str16(&mut p, &v.sha256);
        p.extend_from_slice(&v.uploaded_at_ms.to_le_bytes());
        str16(&mut p, &v.source);
        p.extend_from_slice(&v.size.to_le_bytes());
        out.frame(K_VERSION, &p, flush)?;
    }
    for (tenant, version) in repo.all_active()? {
        let mut p = Vec::new();
        str16(&mut p, &tenant);
        p.extend_from_slice(&version.to_le_bytes());
        out.frame(K_ACTIVE, &p, flush)?;
    }
    for tenant in repo.paused_tenants()? {
        let mut p = Vec::new();
        str16(&mut p, &tenant);
        out.frame(K_PAUSED, &p, flush)?;
    }
    out.frame(K_END, &count.to_le_bytes(), flush)?;
    out.flush(flush)?;
    Ok(count)
}

#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    #[error("cannot read backup {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("{path} is not a Weir backup (no WEIRBAK1 header)")]
    NotABackup { path: PathBuf },
    #[error("the backup is truncated or damaged at byte {offset}: {reason}; take the backup again")]
    Damaged { offset: usize, reason: String },
    #[error("{dir} already holds a store; restore into an empty or new directory")]
    NotEmpty { dir: PathBuf },
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RestoreSummary {
    pub triggers: u64,
    pub plugin_versions: u64,
}

/// Rebuilds a store in `config.path` (which must be empty) from a backup file.
pub async fn restore(from: &Path, config: &StoreConfig) -> Result<RestoreSummary, RestoreError> {
    let data = tokio::fs::read(from).await.map_err(|e| RestoreError::Read { path: from.to_path_buf(), reason: e.to_string() })?;
    if !data.starts_with(MAGIC) {
        return Err(RestoreError::NotABackup { path: from.to_path_buf() });
    }
    if std::fs::read_dir(&config.path).map(|mut d| d.next().is_some()).unwrap_or(false) {
        return Err(RestoreError::NotEmpty { dir: config.path.clone() });
    }
    let store = Store::open(config)?;
    let repo = Arc::new(PluginRepo::open(&config.path)?);
    let mut r = Frames { data: &data, pos: MAGIC.len() };
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
                let id = TriggerId::from_u128(u128::from_le_bytes(p.array().ok_or_else(|| damaged("trigger id"))?));
                let meta_len = p.u32().ok_or_else(|| damaged("record length"))? as usize;
                let meta = TriggerMeta::decode(p.take(meta_len).ok_or_else(|| damaged("record"))?)
                    .map_err(|e| damaged(&format!("record: {e}")))?;
                let body_len = p.u32().ok_or_else(|| damaged("body length"))? as usize;
                let body = Bytes::copy_from_slice(p.take(body_len).ok_or_else(|| damaged("body"))?);
                let transformed = match p.take(1).ok_or_else(|| damaged("flag"))?[0] {
                    1 => {
                        let n = p.u32().ok_or_else(|| damaged("transformed length"))? as usize;
                        Some(Bytes::copy_from_slice(p.take(n).ok_or_else(|| damaged("transformed"))?))
                    }
                    _ => None,
                };
                let s = store.clone();
                // Many inserts at once share group commits.
                inserts.spawn(async move { s.insert(NewTrigger { id, meta, body, transformed }).await });
                if inserts.len() >= 512
                    && let Some(r) = inserts.join_next().await
                {
                    r.map_err(|e| StoreError::Io(e.to_string()))??;
                }
                summary.triggers += 1;
            }
            K_PLUGIN => {
                let sha = p.str16().ok_or_else(|| damaged("sha256"))?;
                components.push((sha, p.b.to_vec()));
            }
            K_VERSION => {
                let tenant = p.str16().ok_or_else(|| damaged("tenant"))?;
                let version = p.u32().ok_or_else(|| damaged("version"))?;
                let sha256 = p.str16().ok_or_else(|| damaged("sha256"))?;
                let uploaded_at_ms = u64::from_le_bytes(p.array().ok_or_else(|| damaged("time"))?);
                let source = p.str16().ok_or_else(|| damaged("source"))?;
                let size = u64::from_le_bytes(p.array().ok_or_else(|| damaged("size"))?);
                versions.push((tenant, PluginVersion { version, sha256, uploaded_at_ms, source, size }));
            }
            K_ACTIVE => {
                let tenant = p.str16().ok_or_else(|| damaged("tenant"))?;
                active.push((tenant, p.u32().ok_or_else(|| damaged("version"))?));
            }
            K_PAUSED => paused.push(p.str16().ok_or_else(|| damaged("tenant"))?),
            K_END => {
                ended = Some(u64::from_le_bytes(p.array().ok_or_else(|| damaged("count"))?));
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
        None => return Err(RestoreError::Damaged { offset: r.pos, reason: "no end frame: the backup is truncated".into() }),
    }
    let repo2 = repo.clone();
    let plugin_versions = versions.len() as u64;
    tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
        for (sha, bytes) in &components {
            repo2.restore_plugin(sha, bytes, &versions)?;
        }
        for (tenant, v) in &active {
            repo2.set_active(tenant, *v)?;
        }
        for tenant in &paused {
            repo2.set_paused(tenant, true, 0)?;
        }
        Ok(())
    })
    .await
    .map_err(|e| StoreError::Io(e.to_string()))??;
    summary.plugin_versions = plugin_versions;
    store.close().await;
    Ok(summary)
}

struct Frames<'a> {
    data: &'a [u8],
    pos: usize,
}

/// One frame of a backup: its kind, its payload, and the offset after it.
type Frame<'a> = (u8, &'a [u8], usize);

impl<'a> Frames<'a> {
    fn next(&mut self) -> Result<Option<Frame<'a>>, RestoreError> {
        if self.pos == self.data.len() {
            return Ok(None);
        }
        let offset = self.pos;
        let damaged = |reason: &str| RestoreError::Damaged { offset, reason: reason.into() };
        let head = self.data.get(self.pos..self.pos + 5).ok_or_else(|| damaged("frame header"))?;
        let len = u32::from_le_bytes([head[1], head[2], head[3], head[4]]) as usize;
        let payload = self.data.get(self.pos + 5..self.pos + 5 + len).ok_or_else(|| damaged("frame payload"))?;
        self.pos += 5 + len;
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
}
