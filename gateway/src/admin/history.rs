//! The last hour of the gateway's totals, kept in memory so a freshly opened console tab can chart it
//! (`GET /v1/history`): a bounded ring of samples taken every `every` by one background task.
//!
//! The ring owns only what it sampled; the values come from the same owners `/v1/status` reads (the store's
//! statistics). Rates are derived from the deltas between neighbouring samples, so nothing counts twice.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::shutdown::{Shutdown, Tasks};

/// The default sampling: every 10 s, 360 samples = the last hour.
pub const EVERY: Duration = Duration::from_secs(10);
pub const CAPACITY: usize = 360;

/// One reading of the totals (wall-clock time of the reading, Unix ms).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Sample {
    pub at_ms: u64,
    /// Every trigger in the store (pending + delivered + dead + quarantined).
    pub stored: u64,
    pub delivered: u64,
    pub dead: u64,
    pub pending: u64,
    pub oldest_pending_age_ms: Option<u64>,
}

/// A sample as `/v1/history` answers it, with the rates since the sample before.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Point {
    #[serde(flatten)]
    pub sample: Sample,
    /// Per second since the previous point; `null` on the first one. A total that shrank (a purge,
    /// retention) counts as 0, not negative.
    pub stored_per_sec: Option<f64>,
    pub delivered_per_sec: Option<f64>,
}

/// The ring: never more than `capacity` samples, oldest dropped first.
pub struct History {
    every: Duration,
    capacity: usize,
    ring: Mutex<VecDeque<Sample>>,
}

impl History {
    pub fn new(every: Duration, capacity: usize) -> History {
        let capacity = capacity.max(1);
        History { every, capacity, ring: Mutex::new(VecDeque::with_capacity(capacity)) }
    }

    pub fn every(&self) -> Duration {
        self.every
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn push(&self, sample: Sample) {
        let mut ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        while ring.len() >= self.capacity {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// The samples oldest first, each with its rates.
    pub fn points(&self) -> Vec<Point> {
        let ring = self.ring.lock().unwrap_or_else(|e| e.into_inner());
        let mut prev: Option<&Sample> = None;
        ring.iter()
            .map(|s| {
                let rate =
                    |now: u64, before: fn(&Sample) -> u64| prev.and_then(|p| per_sec(before(p), now, s.at_ms.saturating_sub(p.at_ms)));
                let point = Point {
                    sample: *s,
                    stored_per_sec: rate(s.stored, |p| p.stored),
                    delivered_per_sec: rate(s.delivered, |p| p.delivered),
                };
                prev = Some(s);
                point
            })
            .collect()
    }

    /// Samples now and then every `every` until shutdown; `read` gives `None` when the sources cannot be read
    /// (that interval is skipped rather than charted as zero).
    pub fn start<F, Fut>(self: &Arc<Self>, tasks: &Tasks, shutdown: Shutdown, read: F)
    where
        F: Fn() -> Fut + Send + 'static,
        Fut: Future<Output = Option<Sample>> + Send,
    {
        let history = self.clone();
        tasks.spawn("history sampler", async move {
            let mut shutdown = shutdown;
            let mut tick = tokio::time::interval(history.every);
            // A stalled read (store busy) delays the next sample rather than bunching several.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = shutdown.wait() => return,
                    _ = tick.tick() => {}
                }
                if let Some(sample) = read().await {
                    history.push(sample);
                }
            }
        });
    }
}

impl super::Admin {
    /// Starts sampling the store's totals into the history (`GET /v1/history`).
    pub fn start_history(self: &Arc<Self>) {
        let admin = self.clone();
        self.history.start(&self.tasks, self.shutdown.clone(), move || {
            let admin = admin.clone();
            async move { admin.sample().await }
        });
    }

    /// The totals `/v1/status` shows, read from the same owner (the store).
    async fn sample(&self) -> Option<Sample> {
        let s = self.store.stats().await.ok()?;
        let at_ms = super::now_ms();
        Some(Sample {
            at_ms,
            stored: s.pending + s.delivered + s.dead + s.quarantined,
            delivered: s.delivered,
            dead: s.dead,
            pending: s.pending,
            oldest_pending_age_ms: s.oldest_pending_ms.map(|ms| at_ms.saturating_sub(ms)),
        })
    }

    pub(super) fn history_page(&self) -> crate::http::Resp {
        crate::http::json(
            http::StatusCode::OK,
            &serde_json::json!({
                "interval_ms": self.history.every().as_millis() as u64,
                "capacity": self.history.capacity(),
                "points": self.history.points(),
            }),
        )
    }
}

fn per_sec(before: u64, now: u64, elapsed_ms: u64) -> Option<f64> {
    if elapsed_ms == 0 {
        return None;
    }
    Some(now.saturating_sub(before) as f64 * 1000.0 / elapsed_ms as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn sample(at_ms: u64, stored: u64, delivered: u64) -> Sample {
        Sample { at_ms, stored, delivered, pending: stored - delivered, ..Sample::default() }
    }

    #[test]
    fn the_ring_keeps_the_newest_capacity_samples_and_rates_come_from_deltas() {
        let h = History::new(EVERY, 3);
        for i in 0..5u64 {
            h.push(sample(i * 10_000, i * 100, i * 50));
        }
        let points = h.points();
        assert_eq!(points.iter().map(|p| p.sample.at_ms).collect::<Vec<_>>(), vec![20_000, 30_000, 40_000]);
        assert_eq!(points[0].stored_per_sec, None, "the oldest kept point has nothing before it");
        assert_eq!(points[1].stored_per_sec, Some(10.0));
        assert_eq!(points[2].delivered_per_sec, Some(5.0));
    }

    #[test]
    fn a_shrinking_total_is_a_zero_rate() {
        let h = History::new(EVERY, 10);
        h.push(sample(0, 500, 100));
        h.push(sample(10_000, 200, 100));
        assert_eq!(h.points()[1].stored_per_sec, Some(0.0));
    }

    #[tokio::test(start_paused = true)]
    async fn the_sampler_samples_every_interval_stays_bounded_and_stops_at_shutdown() {
        let every = Duration::from_secs(10);
        let h = Arc::new(History::new(every, 6));
        let tasks = Tasks::default();
        let (trigger, shutdown) = crate::shutdown::channel();
        let reads = Arc::new(AtomicU64::new(0));
        let counter = reads.clone();
        // 7 triggers stored per second; the reading's time follows the (paused) clock.
        let start = tokio::time::Instant::now();
        h.start(&tasks, shutdown, move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let at_ms = start.elapsed().as_millis() as u64;
                Some(sample(at_ms, at_ms / 1000 * 7, 0))
            }
        });
        // The first sample is taken at once: a fresh gateway has a point to show.
        while h.points().is_empty() {
            tokio::task::yield_now().await;
        }
        assert_eq!(h.points().len(), 1);
        tokio::time::sleep(every * 20 + Duration::from_millis(1)).await;
        let points = h.points();
        assert_eq!(reads.load(Ordering::SeqCst), 21, "one reading per interval");
        assert_eq!(points.len(), 6, "never more than the capacity");
        assert_eq!(points.last().map(|p| p.sample.at_ms), Some(200_000));
        assert!(points.windows(2).all(|w| w[1].sample.at_ms - w[0].sample.at_ms == 10_000));
        assert!(points[1..].iter().all(|p| p.stored_per_sec == Some(7.0)), "{points:?}");
        trigger.trigger();
        tasks.wait().await;
        tokio::time::sleep(every * 3).await;
        assert_eq!(reads.load(Ordering::SeqCst), 21, "no sampling after shutdown");
    }
}
