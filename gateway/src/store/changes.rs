//! Commit announcements: after every commit, the store tells its subscribers
//! which tenants got triggers that became pending, and the lowest such id.
//!
//! This is how work reaches the forwarder: nothing hands it triggers (not
//! ingest, not replay); it subscribes here and re-reads the store. Each
//! subscription coalesces what it has not taken yet into one entry per tenant
//! (the lowest id), so a slow subscriber holds at most one entry per tenant,
//! never a queue of commits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::Notify;

use crate::id::TriggerId;

/// The store's side: publishes after each commit.
#[derive(Default)]
pub(crate) struct Announcer {
    subscribers: Mutex<Vec<Weak<Inbox>>>,
}

#[derive(Default)]
struct Inbox {
    /// Per tenant, the lowest id that became pending since the last `take`.
    pending: Mutex<HashMap<String, TriggerId>>,
    notify: Notify,
}

/// A subscriber's side: wait for an announcement, then take what changed.
pub struct Subscription {
    inbox: Arc<Inbox>,
}

impl Announcer {
    pub(crate) fn subscribe(&self) -> Subscription {
        let inbox = Arc::new(Inbox::default());
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        subs.retain(|s| s.strong_count() > 0);
        subs.push(Arc::downgrade(&inbox));
        Subscription { inbox }
    }

    /// Called by a writer after `commit()` returned Ok (before it replies),
    /// with the lowest id per tenant that became pending in that commit
    /// (inserted pending, or moved to pending from another state).
    pub(crate) fn publish(&self, became_pending: &HashMap<String, u128>) {
        if became_pending.is_empty() {
            return;
        }
        let subs: Vec<Arc<Inbox>> = self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).iter().filter_map(Weak::upgrade).collect();
        for inbox in subs {
            {
                let mut pending = inbox.pending.lock().unwrap_or_else(|e| e.into_inner());
                for (tenant, id) in became_pending {
                    let id = TriggerId::from_u128(*id);
                    pending.entry(tenant.clone()).and_modify(|low| *low = (*low).min(id)).or_insert(id);
                }
            }
            // A permit is stored when nobody waits, so no announcement is lost.
            inbox.notify.notify_one();
        }
    }
}

impl Subscription {
    /// Resolves once something was announced since the last call (possibly
    /// already taken: callers `take` and may find nothing).
    pub async fn changed(&self) {
        self.inbox.notify.notified().await;
    }

    /// What was announced since the last `take`: (tenant, lowest id that
    /// became pending).
    pub fn take(&self) -> Vec<(String, TriggerId)> {
        std::mem::take(&mut *self.inbox.pending.lock().unwrap_or_else(|e| e.into_inner())).into_iter().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn announcements_coalesce_to_the_lowest_id_per_tenant() {
        let a = Announcer::default();
        let sub = a.subscribe();
        a.publish(&HashMap::from([("t".to_string(), 9), ("u".to_string(), 4)]));
        a.publish(&HashMap::from([("t".to_string(), 3)]));
        sub.changed().await;
        let mut got = sub.take();
        got.sort();
        assert_eq!(got, vec![("t".to_string(), TriggerId::from_u128(3)), ("u".to_string(), TriggerId::from_u128(4))]);
        assert!(sub.take().is_empty());
        drop(sub);
        // A dropped subscription is forgotten, not published to.
        a.publish(&HashMap::from([("t".to_string(), 1)]));
        assert!(a.subscribers.lock().unwrap().iter().all(|s| s.strong_count() == 0));
    }

    fn trigger(store: &crate::store::Store, state: crate::store::State) -> crate::store::NewTrigger {
        let meta = crate::store::TriggerMeta { state, tenant: "acme".into(), ..crate::store::TriggerMeta::sample() };
        crate::store::NewTrigger { id: store.next_id(std::time::SystemTime::now()), meta, body: bytes::Bytes::new(), transformed: None }
    }

    #[tokio::test]
    async fn the_store_announces_what_became_pending_after_each_commit() {
        use crate::store::{Change, State, Store};
        let dir = tempfile::tempdir().expect("tempdir");
        let config = crate::config::StoreConfig { path: dir.path().to_path_buf(), shards: 2, ..Default::default() };
        let store = Store::open(&config).expect("open");
        let sub = store.subscribe();
        let first = store.insert(trigger(&store, State::Pending)).await.expect("insert").id;
        store.insert(trigger(&store, State::Quarantined)).await.expect("insert");
        assert_eq!(sub.take(), vec![("acme".to_string(), first)], "a quarantined trigger is not work");
        let delivered = Change::SetState { state: State::Delivered, attempt: None, note: None };
        assert!(store.update(first, delivered).await.expect("deliver"));
        assert!(sub.take().is_empty(), "leaving pending is not announced");
        // What replay does: an older trigger becomes pending again.
        let later = store.insert(trigger(&store, State::Pending)).await.expect("insert").id;
        sub.take();
        let again = Change::SetState { state: State::Pending, attempt: None, note: None };
        assert!(store.update(first, again).await.expect("replay"));
        assert_eq!(sub.take(), vec![("acme".to_string(), first)], "the lowest id, behind {later}");
        store.close().await;
    }
}
