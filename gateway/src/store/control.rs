//! The control file: the operator's and the plugin host's state, apart from
//! the triggers. Uploaded components, their versions, which one is active per
//! tenant, Weir's own precompiled artifacts; paused tenants; the audit log;
//! replay jobs and the trigger ids each job selected when it started.
//!
//! It lives in its own redb file (`store.path/plugins.redb`, named for its
//! first use and kept for compatibility), apart from the trigger shards, so
//! uploads and operator actions never contend with the group-commit writers.
//! Writes are rare and serialised by redb itself.
//!
//! | table | key | value |
//! |---|---|---|
//! | `components` | sha256 (hex) | component bytes, as uploaded |
//! | `versions` | (tenant, version) | (sha256, uploaded ms, source, size) |
//! | `active` | tenant | version |
//! | `artifacts` | (sha256, engine compatibility hash) | precompiled bytes (Weir-produced only) |
//! | `paused` | tenant | when forwarding was paused (ms) |
//! | `audit` | (ms, sequence) | JSON audit entry (append-only) |
//! | `jobs` | job id | JSON replay job (filter and progress) |
//! | `job_selection` | (job id, chunk) | the job's trigger ids, 16 bytes each (u128 LE), ascending |
//! | `fleet_values` | control-bucket key (`tenants.<id>`) | the value last applied from the fleet (JSON, as received) |
//! | `fleet_cursors` | a watcher's name (`tenants`, `plugins`) | the control-bucket revision it has applied up to |
//! | `fleet_plugins` | tenant | JSON: the fleet plugin this PoP took for the tenant (`fleet::plugins`) |
//!
//! Beside it, `store.path/artifacts/SHA256-COMPAT.cwasm` holds each artifact
//! the host loads as a file ([`ControlFile::artifact_file`]), written from
//! the `artifacts` table: the engine maps it, so compiled code is
//! file-backed (paged in as it runs, shared with the page cache, dropped
//! under memory pressure) instead of a private copy per plugin. The table
//! stays the truth; a missing file is written again from it.

use std::path::{Path, PathBuf};

use redb::{Database, Durability, ReadableDatabase, ReadableTable, TableDefinition};

use super::{StoreError, io_err, open_database};
use crate::id::TriggerId;

const COMPONENTS: TableDefinition<&str, &[u8]> = TableDefinition::new("components");
const VERSIONS: TableDefinition<(&str, u32), (&str, u64, &str, u64)> = TableDefinition::new("versions");
const ACTIVE: TableDefinition<&str, u32> = TableDefinition::new("active");
const ARTIFACTS: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("artifacts");
/// Tenants whose forwarding an operator paused (value: when, ms).
const PAUSED: TableDefinition<&str, u64> = TableDefinition::new("paused");
/// The append-only audit log: (ms, sequence) → JSON entry.
const AUDIT: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("audit");
/// Replay jobs: id → JSON state (filter, progress), so a job survives a crash.
const JOBS: TableDefinition<u64, &[u8]> = TableDefinition::new("jobs");
/// What a replay job selected when it started, so triggers that come to match
/// while it runs are not picked up: (job, chunk number) → packed ids.
const JOB_SELECTION: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("job_selection");
/// Fleet state kept for a start while NATS is down: key → value as applied.
const FLEET_VALUES: TableDefinition<&str, &[u8]> = TableDefinition::new("fleet_values");
/// Per control-bucket watcher, the revision applied up to (it resumes after it).
const FLEET_CURSORS: TableDefinition<&str, u64> = TableDefinition::new("fleet_cursors");
/// What this PoP last took from the fleet's `plugins.<tenant>` keys, so a
/// restart without NATS comes back with the same plugins (`fleet::plugins`
/// owns the JSON; the component bytes are in `components`).
const FLEET_PLUGINS: TableDefinition<&str, &[u8]> = TableDefinition::new("fleet_plugins");
/// The plugin watcher's name in `fleet_cursors`; it moves with `fleet_plugins`, in the same transaction.
const PLUGINS_CURSOR: &str = "plugins";
/// Ids per `job_selection` value.
const SELECTION_CHUNK: usize = 4096;

/// One stored version of a tenant's plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersion {
    pub version: u32,
    pub sha256: String,
    pub uploaded_at_ms: u64,
    /// `upload` (admin API), `config` (the tenant's `plugin` file at startup) or `fleet` (`fleet::plugins`).
    pub source: String,
    pub size: u64,
}

/// The control file (see the module docs).
pub struct ControlFile {
    db: Database,
    path: PathBuf,
}

/// The control-bucket revision taken into account, and (tenant, JSON record) pairs.
pub type FleetPluginRecords = (u64, Vec<(String, Vec<u8>)>);

/// An audit entry's key: (Unix ms, sequence).
pub type AuditKey = (u64, u64);

impl ControlFile {
    pub fn open(dir: &Path) -> Result<ControlFile, StoreError> {
        let path = dir.join("plugins.redb");
        let db = open_database(&path, 4)?;
        let txn = db.begin_write().map_err(io_err)?;
        {
            txn.open_table(COMPONENTS).map_err(io_err)?;
            txn.open_table(VERSIONS).map_err(io_err)?;
            txn.open_table(ACTIVE).map_err(io_err)?;
            txn.open_table(ARTIFACTS).map_err(io_err)?;
            txn.open_table(PAUSED).map_err(io_err)?;
            txn.open_table(AUDIT).map_err(io_err)?;
            txn.open_table(JOBS).map_err(io_err)?;
            txn.open_table(JOB_SELECTION).map_err(io_err)?;
            txn.open_table(FLEET_VALUES).map_err(io_err)?;
            txn.open_table(FLEET_CURSORS).map_err(io_err)?;
            txn.open_table(FLEET_PLUGINS).map_err(io_err)?;
        }
        txn.commit().map_err(io_err)?;
        Ok(ControlFile { db, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores a new version (and its precompiled artifact) and makes it active,
    /// in one durable transaction. Returns the version number.
    pub fn add_version(
        &self,
        tenant: &str,
        sha256: &str,
        component: &[u8],
        artifact: Option<(u64, &[u8])>,
        source: &str,
        now_ms: u64,
    ) -> Result<u32, StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        let version;
        {
            let mut versions = txn.open_table(VERSIONS).map_err(io_err)?;
            let last = versions
                .range((tenant, 0)..=(tenant, u32::MAX))
                .map_err(io_err)?
                .next_back()
                .transpose()
                .map_err(io_err)?
                .map(|(k, _)| k.value().1)
                .unwrap_or(0);
            version = last + 1;
            versions.insert((tenant, version), (sha256, now_ms, source, component.len() as u64)).map_err(io_err)?;
            let mut components = txn.open_table(COMPONENTS).map_err(io_err)?;
            if components.get(sha256).map_err(io_err)?.is_none() {
                components.insert(sha256, component).map_err(io_err)?;
            }
            if let Some((compat, bytes)) = artifact {
                txn.open_table(ARTIFACTS).map_err(io_err)?.insert((sha256, compat), bytes).map_err(io_err)?;
            }
            txn.open_table(ACTIVE).map_err(io_err)?.insert(tenant, version).map_err(io_err)?;
        }
        txn.commit().map_err(io_err)?;
        Ok(version)
    }

    pub fn set_active(&self, tenant: &str, version: u32) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io_err)?;
        txn.open_table(ACTIVE).map_err(io_err)?.insert(tenant, version).map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    pub fn active(&self, tenant: &str) -> Result<Option<u32>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(ACTIVE).map_err(io_err)?;
        Ok(t.get(tenant).map_err(io_err)?.map(|v| v.value()))
    }

    /// Every tenant with an active version.
    pub fn all_active(&self) -> Result<Vec<(String, u32)>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(ACTIVE).map_err(io_err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(io_err)? {
            let (k, v) = e.map_err(io_err)?;
            out.push((k.value().to_string(), v.value()));
        }
        Ok(out)
    }

    pub fn versions(&self, tenant: &str) -> Result<Vec<PluginVersion>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(VERSIONS).map_err(io_err)?;
        let mut out = Vec::new();
        for e in t.range((tenant, 0)..=(tenant, u32::MAX)).map_err(io_err)? {
            let (k, v) = e.map_err(io_err)?;
            let (sha256, uploaded_at_ms, source, size) = v.value();
            out.push(PluginVersion { version: k.value().1, sha256: sha256.to_string(), uploaded_at_ms, source: source.to_string(), size });
        }
        Ok(out)
    }

    pub fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(COMPONENTS).map_err(io_err)?;
        Ok(t.get(sha256).map_err(io_err)?.map(|v| v.value().to_vec()))
    }

    pub fn artifact(&self, sha256: &str, compat: u64) -> Result<Option<Vec<u8>>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(ARTIFACTS).map_err(io_err)?;
        Ok(t.get((sha256, compat)).map_err(io_err)?.map(|v| v.value().to_vec()))
    }

    /// Records (durably) that a tenant's forwarding is paused or resumed.
    pub fn set_paused(&self, tenant: &str, paused: bool, now_ms: u64) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut t = txn.open_table(PAUSED).map_err(io_err)?;
            if paused {
                t.insert(tenant, now_ms).map_err(io_err)?;
            } else {
                t.remove(tenant).map_err(io_err)?;
            }
        }
        txn.commit().map_err(io_err)
    }

    pub fn paused_tenants(&self) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(PAUSED).map_err(io_err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(io_err)? {
            out.push(e.map_err(io_err)?.0.value().to_string());
        }
        Ok(out)
    }

    /// Every stored component (sha256, bytes), for backups.
    pub fn all_components(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(COMPONENTS).map_err(io_err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(io_err)? {
            let (k, v) = e.map_err(io_err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Every version of every tenant, for backups.
    pub fn all_versions(&self) -> Result<Vec<(String, PluginVersion)>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(VERSIONS).map_err(io_err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(io_err)? {
            let (k, v) = e.map_err(io_err)?;
            let (tenant, version) = k.value();
            let (sha256, uploaded_at_ms, source, size) = v.value();
            out.push((
                tenant.to_string(),
                PluginVersion { version, sha256: sha256.to_string(), uploaded_at_ms, source: source.to_string(), size },
            ));
        }
        Ok(out)
    }

    /// Restores one component and the versions that use it (from a backup).
    pub fn restore_plugin(&self, sha256: &str, component: &[u8], versions: &[(String, PluginVersion)]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io_err)?;
        {
            txn.open_table(COMPONENTS).map_err(io_err)?.insert(sha256, component).map_err(io_err)?;
            let mut t = txn.open_table(VERSIONS).map_err(io_err)?;
            for (tenant, v) in versions.iter().filter(|(_, v)| v.sha256 == sha256) {
                t.insert((tenant.as_str(), v.version), (v.sha256.as_str(), v.uploaded_at_ms, v.source.as_str(), v.size)).map_err(io_err)?;
            }
        }
        txn.commit().map_err(io_err)
    }

    /// Appends an audit entry durably.
    pub fn audit(&self, now_ms: u64, entry: &[u8]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut t = txn.open_table(AUDIT).map_err(io_err)?;
            let seq = t
                .range((now_ms, 0)..=(now_ms, u64::MAX))
                .map_err(io_err)?
                .next_back()
                .transpose()
                .map_err(io_err)?
                .map_or(0, |(k, _)| k.value().1 + 1);
            t.insert((now_ms, seq), entry).map_err(io_err)?;
        }
        txn.commit().map_err(io_err)
    }

    /// Audit entries, newest first, before `before` (ms, seq); at most `limit`.
    pub fn audit_entries(&self, before: Option<AuditKey>, limit: usize) -> Result<Vec<(AuditKey, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(AUDIT).map_err(io_err)?;
        let mut out = Vec::new();
        let range = match before {
            Some(b) => t.range(..b).map_err(io_err)?,
            None => t.range::<(u64, u64)>(..).map_err(io_err)?,
        };
        for e in range.rev() {
            let (k, v) = e.map_err(io_err)?;
            out.push((k.value(), v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    pub fn put_job(&self, id: u64, state: &[u8]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        txn.open_table(JOBS).map_err(io_err)?.insert(id, state).map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    /// Records a new job together with the ids it selected, in one durable
    /// transaction: a job that exists always has its whole selection.
    pub fn put_job_with_selection(&self, id: u64, state: &[u8], selection: &[TriggerId]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut t = txn.open_table(JOB_SELECTION).map_err(io_err)?;
            for (n, chunk) in selection.chunks(SELECTION_CHUNK).enumerate() {
                let packed: Vec<u8> = chunk.iter().flat_map(|id| id.as_u128().to_le_bytes()).collect();
                t.insert((id, n as u64), packed.as_slice()).map_err(io_err)?;
            }
            txn.open_table(JOBS).map_err(io_err)?.insert(id, state).map_err(io_err)?;
        }
        txn.commit().map_err(io_err)
    }

    /// The ids a job selected when it started, ascending.
    pub fn job_selection(&self, id: u64) -> Result<Vec<TriggerId>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(JOB_SELECTION).map_err(io_err)?;
        let mut out = Vec::new();
        for e in t.range((id, 0)..=(id, u64::MAX)).map_err(io_err)? {
            let (_, v) = e.map_err(io_err)?;
            out.extend(v.value().chunks_exact(16).filter_map(|b| b.try_into().ok()).map(|b| TriggerId::from_u128(u128::from_le_bytes(b))));
        }
        Ok(out)
    }

    /// Saves a finished job and forgets its selection.
    pub fn finish_job(&self, id: u64, state: &[u8]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut t = txn.open_table(JOB_SELECTION).map_err(io_err)?;
            let mut chunks = Vec::new();
            for e in t.range((id, 0)..=(id, u64::MAX)).map_err(io_err)? {
                chunks.push(e.map_err(io_err)?.0.value());
            }
            for key in chunks {
                t.remove(key).map_err(io_err)?;
            }
            txn.open_table(JOBS).map_err(io_err)?.insert(id, state).map_err(io_err)?;
        }
        txn.commit().map_err(io_err)
    }

    pub fn jobs(&self) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let t = txn.open_table(JOBS).map_err(io_err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(io_err)? {
            let (k, v) = e.map_err(io_err)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Records what a fleet watcher applied at `revision`: `value` for `key`
    /// (`None`: the key was deleted), and the watcher's cursor, in one durable
    /// transaction, so a restart resumes exactly after it.
    pub fn apply_fleet_value(&self, watcher: &str, revision: u64, key: &str, value: Option<&[u8]>) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut values = txn.open_table(FLEET_VALUES).map_err(io_err)?;
            match value {
                Some(v) => values.insert(key, v).map(drop).map_err(io_err)?,
                None => values.remove(key).map(drop).map_err(io_err)?,
            }
            txn.open_table(FLEET_CURSORS).map_err(io_err)?.insert(watcher, revision).map_err(io_err)?;
        }
        txn.commit().map_err(io_err)
    }

    /// Moves a watcher's cursor past a value it refused (nothing else changes).
    pub fn set_fleet_cursor(&self, watcher: &str, revision: u64) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        txn.open_table(FLEET_CURSORS).map_err(io_err)?.insert(watcher, revision).map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    pub fn fleet_cursor(&self, watcher: &str) -> Result<Option<u64>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        Ok(txn.open_table(FLEET_CURSORS).map_err(io_err)?.get(watcher).map_err(io_err)?.map(|v| v.value()))
    }

    /// The applied fleet values whose key starts with `prefix`, in key order.
    pub fn fleet_values(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let table = txn.open_table(FLEET_VALUES).map_err(io_err)?;
        let mut out = Vec::new();
        for entry in table.range(prefix..).map_err(io_err)? {
            let (k, v) = entry.map_err(io_err)?;
            if !k.value().starts_with(prefix) {
                break;
            }
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Forgets which version is active: the tenant runs no plugin.
    pub fn clear_active(&self, tenant: &str) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        txn.open_table(ACTIVE).map_err(io_err)?.remove(tenant).map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    /// Keeps a component's bytes (content-addressed) without a version:
    /// a fleet plugin waiting for its tenant to appear on this PoP.
    pub fn put_component(&self, sha256: &str, component: &[u8]) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut t = txn.open_table(COMPONENTS).map_err(io_err)?;
            if t.get(sha256).map_err(io_err)?.is_none() {
                t.insert(sha256, component).map_err(io_err)?;
            }
        }
        txn.commit().map_err(io_err)
    }

    /// Records what this PoP took from the fleet for `tenant` (`None`:
    /// nothing, the key was deleted) and the control-bucket revision it has
    /// now taken into account, durably and together.
    pub fn put_fleet_plugin(&self, tenant: &str, record: Option<&[u8]>, revision: u64) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        {
            let mut t = txn.open_table(FLEET_PLUGINS).map_err(io_err)?;
            match record {
                Some(bytes) => t.insert(tenant, bytes).map_err(io_err)?,
                None => t.remove(tenant).map_err(io_err)?,
            };
            txn.open_table(FLEET_CURSORS).map_err(io_err)?.insert(PLUGINS_CURSOR, revision).map_err(io_err)?;
        }
        txn.commit().map_err(io_err)
    }

    /// Moves the control-bucket revision forward without a tenant's record changing.
    pub fn put_fleet_revision(&self, revision: u64) -> Result<(), StoreError> {
        let mut txn = self.db.begin_write().map_err(io_err)?;
        txn.set_durability(Durability::Immediate).map_err(|e| StoreError::Io(e.to_string()))?;
        txn.open_table(FLEET_CURSORS).map_err(io_err)?.insert(PLUGINS_CURSOR, revision).map_err(io_err)?;
        txn.commit().map_err(io_err)
    }

    /// The control-bucket revision last taken into account and every tenant's fleet plugin record.
    pub fn fleet_plugins(&self) -> Result<FleetPluginRecords, StoreError> {
        let txn = self.db.begin_read().map_err(io_err)?;
        let revision = txn.open_table(FLEET_CURSORS).map_err(io_err)?.get(PLUGINS_CURSOR).map_err(io_err)?.map_or(0, |v| v.value());
        let t = txn.open_table(FLEET_PLUGINS).map_err(io_err)?;
        let mut out = Vec::new();
        for e in t.iter().map_err(io_err)? {
            let (k, v) = e.map_err(io_err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok((revision, out))
    }

    /// The artifact of `sha256` for engine `compat` as a file the engine
    /// can map (`None` when there is none). Written when missing, from
    /// `known` (the bytes a caller that just compiled or stored it holds)
    /// or else from the table, completely or not at all (a temporary file,
    /// synced, then renamed): an existing file is a whole artifact Weir
    /// wrote, and a restart reads no artifact bytes through redb.
    pub fn artifact_file(&self, sha256: &str, compat: u64, known: Option<&[u8]>) -> Result<Option<PathBuf>, StoreError> {
        // The key is Weir's own hex digest; refuse anything else as a name.
        if sha256.is_empty() || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::Io(format!("not a sha256 digest: {sha256:?}")));
        }
        let dir = self.path.parent().unwrap_or(Path::new(".")).join("artifacts");
        let file = dir.join(format!("{sha256}-{compat:016x}.cwasm"));
        if file.is_file() {
            return Ok(Some(file));
        }
        let stored;
        let bytes = match known {
            Some(bytes) => bytes,
            None => match self.artifact(sha256, compat)? {
                Some(bytes) => {
                    stored = bytes;
                    &stored
                }
                None => return Ok(None),
            },
        };
        let io = |what: &str, e: std::io::Error| StoreError::Io(format!("{what} {}: {e}", dir.display()));
        std::fs::create_dir_all(&dir).map_err(|e| io("cannot create", e))?;
        let tmp = dir.join(format!(".{sha256}-{compat:016x}.{}.tmp", std::process::id()));
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &file)
        };
        if let Err(e) = write() {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("cannot write an artifact file in", e));
        }
        Ok(Some(file))
    }

    /// Removes an artifact file the engine refused (a newer weir, or a file
    /// changed behind Weir's back): the next load writes it again.
    pub fn drop_artifact_file(&self, file: &Path) {
        let _ = std::fs::remove_file(file);
    }

    pub fn put_artifact(&self, sha256: &str, compat: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let txn = self.db.begin_write().map_err(io_err)?;
        txn.open_table(ARTIFACTS).map_err(io_err)?.insert((sha256, compat), bytes).map_err(io_err)?;
        txn.commit().map_err(io_err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_artifact_file_is_written_once_from_the_table_and_then_read_from_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let repo = ControlFile::open(dir.path()).expect("open");
        assert_eq!(repo.artifact_file("ab12", 7, None).expect("lookup"), None, "no artifact, no file");
        repo.put_artifact("ab12", 7, b"compiled").expect("put");
        let file = repo.artifact_file("ab12", 7, None).expect("write").expect("a file");
        assert_eq!(std::fs::read(&file).expect("read"), b"compiled");
        assert!(file.starts_with(dir.path().join("artifacts")));
        // Once there, the file is what is used (the table is not read again).
        std::fs::write(&file, b"on disk").expect("overwrite");
        assert_eq!(repo.artifact_file("ab12", 7, None).expect("again"), Some(file.clone()));
        assert_eq!(repo.artifact_file("ab12", 7, Some(b"other")).expect("again"), Some(file.clone()), "nor the caller's bytes");
        assert_eq!(std::fs::read(&file).expect("read"), b"on disk");
        // A dropped file is written again from the table.
        repo.drop_artifact_file(&file);
        assert_eq!(std::fs::read(repo.artifact_file("ab12", 7, None).expect("rewrite").expect("file")).expect("read"), b"compiled");
        // Another engine's artifact is another file, written from the
        // caller's bytes when it has them; a digest is hex only.
        assert_eq!(repo.artifact_file("ab12", 8, None).expect("lookup"), None);
        let known = repo.artifact_file("cd34", 7, Some(b"just compiled")).expect("write").expect("a file");
        assert_eq!(std::fs::read(&known).expect("read"), b"just compiled");
        assert!(repo.artifact_file("../x", 7, None).is_err());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("artifacts")).expect("ls").flatten().map(|e| e.file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary file is left: {leftovers:?}");
    }

    #[test]
    fn versions_count_up_per_tenant_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let repo = ControlFile::open(dir.path()).expect("open");
            assert_eq!(repo.add_version("a", "h1", b"one", Some((7, b"art")), "upload", 1).expect("add"), 1);
            assert_eq!(repo.add_version("a", "h2", b"two", None, "upload", 2).expect("add"), 2);
            assert_eq!(repo.add_version("b", "h1", b"one", None, "config", 3).expect("add"), 1);
            repo.set_active("a", 1).expect("activate");
        }
        let repo = ControlFile::open(dir.path()).expect("reopen");
        assert_eq!(repo.active("a").expect("active"), Some(1));
        assert_eq!(repo.active("b").expect("active"), Some(1));
        assert_eq!(repo.active("c").expect("active"), None);
        let v = repo.versions("a").expect("versions");
        assert_eq!(v.iter().map(|v| v.version).collect::<Vec<_>>(), vec![1, 2]);
        assert_eq!(v[1].sha256, "h2");
        assert_eq!(repo.component("h1").expect("c"), Some(b"one".to_vec()));
        assert_eq!(repo.artifact("h1", 7).expect("a"), Some(b"art".to_vec()));
        assert_eq!(repo.artifact("h1", 8).expect("a"), None);
        assert_eq!(repo.all_active().expect("all").len(), 2);
    }

    #[test]
    fn fleet_plugin_records_and_their_revision_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let control = ControlFile::open(dir.path()).expect("open");
            assert_eq!(control.fleet_plugins().expect("read"), (0, vec![]));
            control.put_fleet_plugin("a", Some(b"{\"x\":1}"), 5).expect("put");
            control.put_fleet_plugin("b", Some(b"{}"), 7).expect("put");
            control.put_fleet_plugin("a", None, 9).expect("delete");
            control.put_component("h9", b"bytes").expect("component");
            control.add_version("c", "h1", b"one", None, "upload", 1).expect("add");
            control.clear_active("c").expect("clear");
        }
        let control = ControlFile::open(dir.path()).expect("reopen");
        assert_eq!(control.fleet_plugins().expect("read"), (9, vec![("b".to_string(), b"{}".to_vec())]));
        control.put_fleet_revision(12).expect("revision");
        assert_eq!(control.fleet_plugins().expect("read").0, 12);
        assert_eq!(control.component("h9").expect("read"), Some(b"bytes".to_vec()));
        assert_eq!(control.active("c").expect("active"), None, "the version stays, none is active");
        assert_eq!(control.versions("c").expect("versions").len(), 1);
    }

    #[test]
    fn a_job_keeps_its_selection_until_it_finishes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids: Vec<TriggerId> = (1..=5000u128).map(TriggerId::from_u128).collect();
        {
            let control = ControlFile::open(dir.path()).expect("open");
            control.put_job_with_selection(7, b"{}", &ids).expect("put");
            control.put_job_with_selection(8, b"{}", &ids[..3]).expect("put");
        }
        let control = ControlFile::open(dir.path()).expect("reopen");
        assert_eq!(control.job_selection(7).expect("read"), ids, "two chunks, in order, across a reopen");
        control.finish_job(7, br#"{"state":"done"}"#).expect("finish");
        assert!(control.job_selection(7).expect("read").is_empty());
        assert_eq!(control.job_selection(8).expect("read").len(), 3, "other jobs keep theirs");
        assert_eq!(control.jobs().expect("jobs").len(), 2);
    }
}
