//! What a plugin sees of a trigger, built in one place for ingest and replay.
//!
//! The input is what Weir *stores* of the trigger, so a plugin re-run at
//! replay sees exactly what it saw at ingest (issue 16.5): the stored headers
//! (never credentials: `trigger/headers.rs` owns that rule), the raw body, the
//! arrival time. Nothing that is not stored (the query string, the sender's
//! `authorization`) is shown at either phase; only `phase` differs.

use bytes::Bytes;

use super::bindings::{Header, Phase as WitPhase, Trigger};
use crate::store::TriggerMeta;

/// When a plugin runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Ingest,
    Replay,
}

/// What a plugin sees of a trigger.
#[derive(Debug, Clone)]
pub struct Input {
    pub tenant: String,
    pub source: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
    pub received_at_ms: u64,
    pub phase: Phase,
}

impl Input {
    /// The input for a trigger as stored (at ingest: as it is about to be
    /// stored), with its raw body.
    pub fn of(meta: &TriggerMeta, body: Bytes, phase: Phase) -> Input {
        Input {
            tenant: meta.tenant.clone(),
            source: meta.source.clone(),
            headers: meta.headers.clone(),
            body,
            received_at_ms: meta.received_at_ms,
            phase,
        }
    }

    /// The WIT value the plugin is called with.
    pub(super) fn into_trigger(self) -> Trigger {
        Trigger {
            path: format!("/ingest/{}/{}", self.tenant, self.source),
            tenant: self.tenant,
            source: self.source,
            // Only POST reaches a plugin; the query string is not stored.
            method: "POST".into(),
            query: String::new(),
            headers: self.headers.into_iter().map(|(name, value)| Header { name, value }).collect(),
            body: self.body.to_vec(),
            received_at_ms: self.received_at_ms,
            phase: match self.phase {
                Phase::Ingest => WitPhase::Ingest,
                Phase::Replay => WitPhase::Replay,
            },
        }
    }
}
