//! The shard's journal: what makes a group commit durable.
//!
//! A durable redb commit costs 0.5–1.2 ms on this machine kind whatever the
//! batch (about twenty page writes, the freed-page bookkeeping, checksums,
//! an fdatasync); a non-durable one costs ~50 µs. So the writer commits each
//! batch to redb without durability, after appending what the batch changed
//! to this journal with one write and one fdatasync. Every so often (the
//! journal is full, or holds enough records that the checkpoint would stall
//! the writer long, or it holds a few and nothing is queued: see `writer.rs`)
//! a batch is committed durably instead: a checkpoint, after which the
//! journal starts over.
//!
//! The order within a batch is: apply to a redb transaction, append the
//! journal record and fdatasync it, then commit the transaction. So nothing
//! is visible to readers before it is durable, and a failed append aborts the
//! transaction: nothing of the batch was stored, as before.
//!
//! # Format
//!
//! The file (`shard-NN.journal`) has a fixed size (`store.journal_bytes`),
//! written with zeros when it is created, so an append overwrites allocated
//! blocks: its fdatasync has no metadata to write and a full disk cannot fail
//! it. Records follow each other from offset 0:
//!
//! ```text
//! [u8; 4] magic "WJ01"
//! u32     CRC-32 of the rest of the header and the payload
//! u64     epoch
//! u64     sequence number (1, 2, ... within the epoch)
//! u32     payload length
//! u32     zero
//! payload entries, each a tag byte then its fields (see `Entry`)
//! ```
//!
//! # Position
//!
//! Every redb transaction the writer commits records the journal position it
//! covers (`journal_epoch`, `journal_seq` in the `counters` table): the
//! epoch and the last sequence number whose entries it holds. A checkpoint
//! moves to the next epoch at sequence 0. Recovery (at open, and when the
//! writer reopens a failed shard) replays the records of the stored epoch
//! with a higher sequence number, in order, stopping at the first that is
//! torn, of another epoch or out of sequence, then checkpoints. Because the
//! position commits atomically with the changes, recovery is right whether
//! redb kept only its last durable commit (a crash) or also the non-durable
//! ones (redb makes them durable when a handle is closed).

use std::path::{Path, PathBuf};

use redb::{Database, Durability, StorageBackend};

use super::apply::{self, Transformed};
use super::record::TriggerMeta;
use super::tables::{self, Deltas, Tables};
use super::{Files, StoreError, io_err};
use crate::id::TriggerId;

const MAGIC: [u8; 4] = *b"WJ01";
pub(crate) const HEADER: usize = 32;
/// Zeros are written in pieces of this size when a journal is created.
const FILL_CHUNK: usize = 1 << 20;

/// The appending side of a shard's journal; owned by the shard's writer.
#[derive(Debug)]
pub(crate) struct Journal {
    file: Box<dyn StorageBackend>,
    capacity: u64,
    epoch: u64,
    /// Sequence number of the last record written in this epoch.
    seq: u64,
    /// Where the next record goes.
    offset: u64,
}

impl Drop for Journal {
    fn drop(&mut self) {
        let _ = self.file.close();
    }
}

/// One batch's record as it is built: room for the header, then the
/// entries, so the bodies are copied once, not again behind a header.
#[derive(Debug)]
pub(crate) struct Record(Vec<u8>);

impl Record {
    /// A record built in `buf`'s allocation: the writer reuses one buffer
    /// for every batch rather than growing a new one (tens of KiB, by
    /// doubling) and freeing it each time.
    pub(crate) fn reuse(mut buf: Vec<u8>) -> Record {
        buf.clear();
        buf.resize(HEADER, 0);
        Record(buf)
    }

    pub(crate) fn into_buffer(self) -> Vec<u8> {
        self.0
    }

    pub(crate) fn push(&mut self, entry: Entry<'_>) {
        entry.encode(&mut self.0);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.len() == HEADER
    }
}

/// What recovery replayed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Replayed {
    pub records: u64,
    pub entries: u64,
}

impl Journal {
    /// The epoch records are written in now.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Records written since the last checkpoint.
    pub(crate) fn records(&self) -> u64 {
        self.seq
    }

    /// The sequence number the next record gets.
    pub(crate) fn next_seq(&self) -> u64 {
        self.seq + 1
    }

    /// Whether `record` fits before the end.
    pub(crate) fn fits(&self, record: &Record) -> bool {
        self.offset + record.0.len() as u64 <= self.capacity
    }

    /// Appends `record` (its header filled in here) and syncs it. The caller
    /// commits the transaction holding the same changes only when this
    /// returned Ok.
    pub(crate) fn append(&mut self, record: &mut Record) -> std::io::Result<()> {
        let seq = self.seq + 1;
        let buf = &mut record.0;
        let payload_len = (buf.len() - HEADER) as u32;
        buf[..4].copy_from_slice(&MAGIC);
        buf[8..16].copy_from_slice(&self.epoch.to_le_bytes());
        buf[16..24].copy_from_slice(&seq.to_le_bytes());
        buf[24..28].copy_from_slice(&payload_len.to_le_bytes());
        let crc = crc32fast::hash(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file.write(self.offset, buf)?;
        self.file.sync_data()?;
        self.offset += buf.len() as u64;
        self.seq = seq;
        Ok(())
    }

    /// A checkpoint committed: the journal starts over in `epoch`.
    pub(crate) fn restart(&mut self, epoch: u64) {
        self.epoch = epoch;
        self.seq = 0;
        self.offset = 0;
    }
}

/// The journal file of the shard file `db_path`.
pub(crate) fn path_of(db_path: &Path) -> PathBuf {
    db_path.with_extension("journal")
}

/// Opens the journal of a shard (creating it at full size if missing),
/// replays into `db` what it holds beyond the position `db` records, and
/// checkpoints: on success the journal is empty, in the next epoch.
pub(crate) fn recover(files: &Files, db_path: &Path, capacity: u64, db: &Database) -> Result<(Journal, Replayed), StoreError> {
    let path = path_of(db_path);
    let open_err = |e: std::io::Error| StoreError::Open { path: path.clone(), reason: e.to_string() };
    create_zeroed(files, &path, capacity).map_err(&open_err)?;
    // Pages a failed sync left cached must not be replayed as if written.
    files.drop_cache(&path);
    let file = files.open_backend(&path).map_err(&open_err)?;
    let len = file.len().map_err(&open_err)?;
    if len < capacity {
        fill_zeros(file.as_ref(), len, capacity).map_err(&open_err)?;
    }
    let (epoch, replayed) = replay_file(file.as_ref(), len, db, &path)?;
    Ok((Journal { file, capacity, epoch, seq: 0, offset: 0 }, replayed))
}

/// Replays into `db` the records of `file` (`len` bytes) beyond the
/// position `db` holds, and checkpoints `db` at the start of the next epoch,
/// which it returns.
pub(crate) fn replay_file(file: &dyn StorageBackend, len: u64, db: &Database, path: &Path) -> Result<(u64, Replayed), StoreError> {
    let open_err = |e: std::io::Error| StoreError::Open { path: path.to_path_buf(), reason: e.to_string() };
    let (epoch, applied) = tables::journal_position(db)?;
    let mut txn = db.begin_write().map_err(io_err)?;
    txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
    let mut replayed = Replayed::default();
    let mut deltas = Deltas::default();
    {
        let mut tables = Tables::open(&txn)?;
        let mut reader = Records { file, len, offset: 0, epoch, seq: 0 };
        while let Some(payload) = reader.next_record().map_err(&open_err)? {
            if reader.seq <= applied {
                continue;
            }
            replayed.records += 1;
            replayed.entries += replay(&mut tables, &payload, &mut deltas)?;
        }
        if reader.seq < applied {
            tracing::warn!(journal = %path.display(), records = reader.seq, applied,
                "the journal holds fewer records than the store says it applied; was it replaced or truncated?");
        }
    }
    deltas.write(&txn)?;
    tables::set_journal_position(&txn, epoch + 1, 0)?;
    txn.commit().map_err(io_err)?;
    if replayed.records > 0 {
        tracing::info!(journal = %path.display(), records = replayed.records, changes = replayed.entries,
            "replayed the journal: changes acknowledged after the last checkpoint");
    }
    Ok((epoch + 1, replayed))
}

/// Replays the journal of the shard file whose copy is `db`, without
/// changing the journal: what `weir store check` and `repair` judge is the
/// store as the gateway would open it.
pub(crate) fn replay_into(db_path: &Path, db: &Database) -> Result<Replayed, StoreError> {
    let path = path_of(db_path);
    let file = match std::fs::File::open(&path) {
        Ok(f) => super::PlainFile(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Replayed::default()),
        Err(e) => return Err(StoreError::Open { path, reason: e.to_string() }),
    };
    let len = file.len().map_err(|e| StoreError::Open { path: path.clone(), reason: e.to_string() })?;
    Ok(replay_file(&file, len, db, &path)?.1)
}

fn fill_zeros(file: &dyn StorageBackend, from: u64, to: u64) -> std::io::Result<()> {
    let zeros = vec![0u8; FILL_CHUNK];
    let mut at = from;
    while at < to {
        let n = ((to - at) as usize).min(FILL_CHUNK);
        file.write(at, &zeros[..n])?;
        at += n as u64;
    }
    file.sync_data()
}

/// Creates `path` filled with `len` zeros, crash-safely (under a temporary
/// name, renamed into place once synced), unless it exists.
pub(crate) fn create_zeroed(files: &Files, path: &Path, len: u64) -> std::io::Result<()> {
    if files.exists(path) {
        return Ok(());
    }
    let fresh = path.with_extension("journal.new");
    files.remove_if_present(&fresh)?;
    let file = files.open_backend(&fresh)?;
    let filled = fill_zeros(file.as_ref(), 0, len);
    let _ = file.close();
    filled?;
    files.rename(&fresh, path)
}

/// Reads the records of one epoch in order.
struct Records<'f> {
    file: &'f dyn StorageBackend,
    len: u64,
    offset: u64,
    epoch: u64,
    /// Sequence number of the last record read.
    seq: u64,
}

impl Records<'_> {
    /// The next record's payload; `None` at the first record that is not
    /// the next one of this epoch, whole.
    fn next_record(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        if self.offset + HEADER as u64 > self.len {
            return Ok(None);
        }
        let mut header = [0u8; HEADER];
        self.file.read(self.offset, &mut header)?;
        let field = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().unwrap_or_default());
        let payload_len = u32::from_le_bytes(header[24..28].try_into().unwrap_or_default()) as u64;
        if header[..4] != MAGIC || field(8) != self.epoch || field(16) != self.seq + 1 {
            return Ok(None);
        }
        if self.offset + HEADER as u64 + payload_len > self.len {
            return Ok(None);
        }
        let mut payload = vec![0u8; payload_len as usize];
        self.file.read(self.offset + HEADER as u64, &mut payload)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header[8..]);
        crc.update(&payload);
        if crc.finalize().to_le_bytes() != header[4..8] {
            return Ok(None);
        }
        self.offset += HEADER as u64 + payload_len;
        self.seq += 1;
        Ok(Some(payload))
    }
}

/// One change as the journal records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Entry<'a> {
    Insert { id: u128, now_ms: u64, record: &'a [u8], body: &'a [u8], transformed: Option<&'a [u8]> },
    Put { id: u128, record: &'a [u8], transformed: Transformed<'a> },
    Delete { id: u128 },
    Sweep { cutoff_ms: u64, max: u32 },
}

const INSERT: u8 = 1;
const PUT: u8 = 2;
const DELETE: u8 = 3;
const SWEEP: u8 = 4;

impl Entry<'_> {
    /// Appends the entry's encoding to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Entry::Insert { id, now_ms, record, body, transformed } => {
                out.push(INSERT);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&now_ms.to_le_bytes());
                bytes32(out, record);
                bytes32(out, body);
                match transformed {
                    Some(t) => {
                        out.push(1);
                        bytes32(out, t);
                    }
                    None => out.push(0),
                }
            }
            Entry::Put { id, record, transformed } => {
                out.push(PUT);
                out.extend_from_slice(&id.to_le_bytes());
                bytes32(out, record);
                match transformed {
                    Transformed::Keep => out.push(0),
                    Transformed::Set(t) => {
                        out.push(1);
                        bytes32(out, t);
                    }
                    Transformed::Remove => out.push(2),
                }
            }
            Entry::Delete { id } => {
                out.push(DELETE);
                out.extend_from_slice(&id.to_le_bytes());
            }
            Entry::Sweep { cutoff_ms, max } => {
                out.push(SWEEP);
                out.extend_from_slice(&cutoff_ms.to_le_bytes());
                out.extend_from_slice(&max.to_le_bytes());
            }
        }
    }
}

fn bytes32(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Decodes the entries of one record's payload.
pub(crate) fn entries(payload: &[u8]) -> Result<Vec<Entry<'_>>, String> {
    let mut r = Reader(payload);
    let mut out = Vec::new();
    while !r.0.is_empty() {
        let entry = match r.u8()? {
            INSERT => {
                let (id, now_ms, record, body) = (r.u128()?, r.u64()?, r.bytes32()?, r.bytes32()?);
                let transformed = if r.u8()? == 1 { Some(r.bytes32()?) } else { None };
                Entry::Insert { id, now_ms, record, body, transformed }
            }
            PUT => {
                let (id, record) = (r.u128()?, r.bytes32()?);
                let transformed = match r.u8()? {
                    0 => Transformed::Keep,
                    1 => Transformed::Set(r.bytes32()?),
                    _ => Transformed::Remove,
                };
                Entry::Put { id, record, transformed }
            }
            DELETE => Entry::Delete { id: r.u128()? },
            SWEEP => Entry::Sweep { cutoff_ms: r.u64()?, max: r.u32()? },
            tag => return Err(format!("unknown journal entry tag {tag}")),
        };
        out.push(entry);
    }
    Ok(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("journal entry is truncated".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }
    fn u128(&mut self) -> Result<u128, String> {
        Ok(u128::from_le_bytes(self.take(16)?.try_into().unwrap_or_default()))
    }
    fn bytes32(&mut self) -> Result<&'a [u8], String> {
        let n = self.u32()? as usize;
        self.take(n)
    }
}

/// Applies one record's entries; returns how many.
fn replay(tables: &mut Tables<'_>, payload: &[u8], deltas: &mut Deltas) -> Result<u64, StoreError> {
    // The record's checksum matched: entries that do not decode are a bug
    // in this build, not damage, and must not be skipped silently.
    let entries = entries(payload).map_err(|e| StoreError::Io(format!("cannot replay the journal: {e}")))?;
    let count = entries.len() as u64;
    for entry in entries {
        match entry {
            Entry::Insert { id, now_ms, record, body, transformed } => {
                let meta = decode(id, record)?;
                apply::insert(tables, id, &meta, record, body, transformed, now_ms, deltas)?;
            }
            Entry::Put { id, record, transformed } => {
                let new = decode(id, record)?;
                match apply::read(tables, TriggerId::from_u128(id))? {
                    Some((old, old_len)) => apply::put(tables, id, (&old, old_len), &new, record, transformed, deltas)?,
                    None => tracing::warn!(id = %TriggerId::from_u128(id), "journal changes a trigger the store does not hold; skipped"),
                }
            }
            Entry::Delete { id } => {
                if let Some((old, old_len)) = apply::read(tables, TriggerId::from_u128(id))? {
                    apply::delete(tables, id, (&old, old_len), deltas)?;
                }
            }
            Entry::Sweep { cutoff_ms, max } => apply::sweep_idempotency(tables, cutoff_ms, max as usize)?,
        }
    }
    Ok(count)
}

fn decode(id: u128, record: &[u8]) -> Result<TriggerMeta, StoreError> {
    TriggerMeta::decode(record).map_err(|source| StoreError::Corrupt { id: TriggerId::from_u128(id), source })
}

#[cfg(test)]
mod tests {
    use redb::backends::InMemoryBackend;

    use super::*;

    fn journal(file: InMemoryBackend, epoch: u64) -> Journal {
        Journal { file: Box::new(file), capacity: 4096, epoch, seq: 0, offset: 0 }
    }

    /// A record whose payload is `payload` (not entries: the reader does not decode them).
    fn raw(payload: &[u8]) -> Record {
        let mut r = Record::reuse(Vec::new());
        r.0.extend_from_slice(payload);
        r
    }

    fn read_all(file: &dyn StorageBackend, epoch: u64) -> Vec<Vec<u8>> {
        let len = file.len().expect("len");
        let mut r = Records { file, len, offset: 0, epoch, seq: 0 };
        std::iter::from_fn(|| r.next_record().expect("read")).collect()
    }

    #[test]
    fn entries_decode_to_what_was_encoded() {
        let all = [
            Entry::Insert { id: 7 << 90, now_ms: 99, record: b"rec", body: b"body", transformed: Some(b"t") },
            Entry::Insert { id: 1, now_ms: 0, record: b"", body: b"", transformed: None },
            Entry::Put { id: 2, record: b"r2", transformed: Transformed::Keep },
            Entry::Put { id: 3, record: b"r3", transformed: Transformed::Set(b"new") },
            Entry::Put { id: 4, record: b"r4", transformed: Transformed::Remove },
            Entry::Delete { id: u128::MAX },
            Entry::Sweep { cutoff_ms: 12345, max: 1000 },
        ];
        let mut buf = Vec::new();
        for e in &all {
            e.encode(&mut buf);
        }
        assert_eq!(entries(&buf).expect("decode"), all);
        assert!(entries(&buf[..buf.len() - 1]).is_err(), "a truncated entry is an error");
        assert!(entries(&[9]).is_err(), "an unknown tag is an error");
    }

    #[test]
    fn records_are_read_back_in_order_up_to_the_first_that_is_not_whole_or_not_next() {
        let file = InMemoryBackend::new();
        file.set_len(4096).expect("len");
        let mut j = journal(file, 5);
        for p in [&b"one"[..], b"two", b"three"] {
            j.append(&mut raw(p)).expect("append");
        }
        assert_eq!(read_all(j.file.as_ref(), 5), vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
        assert!(read_all(j.file.as_ref(), 4).is_empty(), "another epoch's records are not replayed");
        // A flipped payload byte in the second record ends the replay before it.
        let second = (HEADER + 3) as u64;
        j.file.write(second + HEADER as u64, b"x").expect("flip");
        assert_eq!(read_all(j.file.as_ref(), 5), vec![b"one".to_vec()]);
        // Records of the next epoch overwrite from the start; the old tail is not read as theirs.
        j.restart(6);
        j.append(&mut raw(b"new")).expect("append");
        assert_eq!(read_all(j.file.as_ref(), 6), vec![b"new".to_vec()]);
        assert!(read_all(j.file.as_ref(), 5).is_empty());
    }

    #[test]
    fn a_record_that_does_not_fit_is_refused_before_it_is_written() {
        let file = InMemoryBackend::new();
        file.set_len(4096).expect("len");
        let mut j = journal(file, 1);
        assert!(j.fits(&raw(&[0; 4096 - HEADER])));
        assert!(!j.fits(&raw(&[0; 4096 - HEADER + 1])));
        j.append(&mut raw(&[1; 100])).expect("append");
        assert!(!j.fits(&raw(&[0; 4096 - HEADER - 100])));
    }
}
