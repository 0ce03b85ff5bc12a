//! Filtered, paged listing of triggers, the basis of the admin list, replay
//! and purge. Paging is by trigger id (a cursor), so pages are stable while
//! triggers keep arriving: new ids never fall between pages already read.

use redb::{Database, ReadableDatabase};

use super::record::{State, TriggerMeta};
use super::tables::{BY_STATE, TRIGGERS};
use super::{StoreError, io_err};
use crate::id::TriggerId;

/// Which triggers to list. Every field narrows the set; none means all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    pub tenant: Option<String>,
    pub state: Option<State>,
    pub source: Option<String>,
    /// Arrived at or after (Unix ms).
    pub since_ms: Option<u64>,
    /// Arrived before (Unix ms).
    pub until_ms: Option<u64>,
    pub ids: Option<Vec<TriggerId>>,
}

impl Filter {
    fn keeps(&self, meta: &TriggerMeta) -> bool {
        self.tenant.as_ref().is_none_or(|t| *t == meta.tenant)
            && self.source.as_ref().is_none_or(|s| *s == meta.source)
            && self.state.is_none_or(|s| s == meta.state)
    }

    /// The id range the time bounds allow (inclusive).
    fn id_range(&self) -> (u128, u128) {
        let lo = self.since_ms.map_or(0, |ms| TriggerId::min_for_ms(ms).as_u128());
        let hi = self.until_ms.map_or(u128::MAX, |ms| TriggerId::min_for_ms(ms).as_u128().saturating_sub(1));
        (lo, hi)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    #[default]
    Asc,
    Desc,
}

/// One shard's answer: matching triggers in order, and where scanning stopped
/// when it did not reach the end of the range.
pub(crate) struct ShardPage {
    pub items: Vec<(TriggerId, TriggerMeta)>,
    pub stopped_at: Option<TriggerId>,
}

pub(crate) fn list_shard(
    db: &Database,
    filter: &Filter,
    after: Option<TriggerId>,
    limit: usize,
    order: Order,
    scan_cap: usize,
) -> Result<ShardPage, StoreError> {
    let (mut lo, mut hi) = filter.id_range();
    match (after, order) {
        (Some(a), Order::Asc) => lo = lo.max(a.as_u128().saturating_add(1)),
        (Some(a), Order::Desc) => hi = hi.min(a.as_u128().saturating_sub(1)),
        (None, _) => {}
    }
    let mut page = ShardPage { items: Vec::new(), stopped_at: None };
    if lo > hi || (after.is_some_and(|a| a.as_u128() == 0) && order == Order::Desc) {
        return Ok(page);
    }
    let txn = db.begin_read().map_err(io_err)?;
    let triggers = txn.open_table(TRIGGERS).map_err(io_err)?;
    let mut scanned = 0;
    let mut visit = |id: u128, page: &mut ShardPage| -> Result<bool, StoreError> {
        scanned += 1;
        let tid = TriggerId::from_u128(id);
        if let Some(raw) = triggers.get(id).map_err(io_err)? {
            let meta = TriggerMeta::decode(raw.value()).map_err(|source| StoreError::Corrupt { id: tid, source })?;
            if filter.keeps(&meta) {
                page.items.push((tid, meta));
            }
        }
        if page.items.len() >= limit || scanned >= scan_cap {
            page.stopped_at = Some(tid);
            return Ok(false);
        }
        Ok(true)
    };
    if let Some(ids) = &filter.ids {
        let mut ids: Vec<u128> = ids.iter().map(|i| i.as_u128()).filter(|i| (lo..=hi).contains(i)).collect();
        ids.sort_unstable();
        ids.dedup();
        if order == Order::Desc {
            ids.reverse();
        }
        for id in ids {
            if !visit(id, &mut page)? {
                break;
            }
        }
    } else if let Some(state) = filter.state {
        let index = txn.open_table(BY_STATE).map_err(io_err)?;
        let range = index.range((state.code(), lo)..=(state.code(), hi)).map_err(io_err)?;
        let ids: Box<dyn Iterator<Item = _>> = if order == Order::Asc { Box::new(range) } else { Box::new(range.rev()) };
        for entry in ids {
            let (k, _) = entry.map_err(io_err)?;
            if !visit(k.value().1, &mut page)? {
                break;
            }
        }
    } else {
        let range = triggers.range(lo..=hi).map_err(io_err)?;
        let keys: Vec<u128> = {
            // Collect keys in bounded chunks: `visit` reads the same table.
            let it: Box<dyn Iterator<Item = _>> = if order == Order::Asc { Box::new(range) } else { Box::new(range.rev()) };
            let mut keys = Vec::new();
            for entry in it.take(scan_cap) {
                keys.push(entry.map_err(io_err)?.0.value());
            }
            keys
        };
        for id in keys {
            if !visit(id, &mut page)? {
                break;
            }
        }
    }
    Ok(page)
}

/// Merges shard pages into one page of at most `limit` and its next cursor.
pub(crate) fn merge(pages: Vec<ShardPage>, limit: usize, order: Order) -> (Vec<(TriggerId, TriggerMeta)>, Option<TriggerId>) {
    let before = |a: TriggerId, b: TriggerId| if order == Order::Asc { a < b } else { a > b };
    // Items past the point where some shard stopped scanning could hide
    // unscanned items of that shard: only return up to the earliest stop.
    let boundary = pages.iter().filter_map(|p| p.stopped_at).reduce(|a, b| if before(a, b) { a } else { b });
    let mut items: Vec<(TriggerId, TriggerMeta)> =
        pages.into_iter().flat_map(|p| p.items).filter(|(id, _)| boundary.is_none_or(|b| *id == b || before(*id, b))).collect();
    items.sort_by(|a, b| if order == Order::Asc { a.0.cmp(&b.0) } else { b.0.cmp(&a.0) });
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(|(id, _)| *id);
        return (items, next);
    }
    (items, boundary)
}
