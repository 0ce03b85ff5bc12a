//! Retry budget: caps retries to a fraction of first attempts over a sliding window.
//!
//! Per-delivery retry limits do not bound the *aggregate* extra load: when an
//! upstream degrades, every delivery retries at once and the retries become
//! the outage (a retry storm). Like Finagle's and Linkerd's retry budgets,
//! retries here may not exceed `ratio` × first attempts seen in the window,
//! plus a small floor so a low-traffic upstream can still retry at all.
//! Time is passed in, so the policy is deterministic under test.

use std::time::{Duration, Instant};

use thiserror::Error;

/// More buckets than this buys no accuracy and only costs memory/CPU per call.
const MAX_BUCKETS: u32 = 1024;

/// Why a [`RetryBudget`] could not be built.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum BudgetError {
    #[error("retry budget ratio must be a finite number >= 0, got {0}")]
    BadRatio(f64),
    #[error("retry budget window must be greater than zero")]
    ZeroWindow,
    #[error("retry budget buckets must be between 1 and {MAX_BUCKETS}, got {0}")]
    BadBuckets(u32),
    #[error("retry budget window {window:?} is too short for {buckets} buckets")]
    WindowTooShort { window: Duration, buckets: u32 },
}

/// Tunables of a [`RetryBudget`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BudgetConfig {
    /// Retries allowed per first attempt in the window (0.2 = 20 % extra load).
    pub ratio: f64,
    /// Retries always allowed per second of window, regardless of traffic.
    pub min_per_sec: u32,
    /// How far back first attempts and retries are remembered.
    pub window: Duration,
    /// Granularity of the sliding window; old buckets expire whole.
    pub buckets: u32,
}

impl Default for BudgetConfig {
    fn default() -> Self {
        Self { ratio: 0.2, min_per_sec: 1, window: Duration::from_secs(10), buckets: 10 }
    }
}

/// Counts for one slice of time. `epoch` says which slice the counts belong
/// to, so a slot reused after wrapping around the ring is recognised as stale.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    epoch: u64,
    firsts: u64,
    retries: u64,
}

/// A sliding-window retry budget for one upstream.
///
/// The window is approximated by `buckets` equal slices: counts age out one
/// slice at a time, so the effective window is between
/// `window - window/buckets` and `window`.
#[derive(Debug, Clone)]
pub struct RetryBudget {
    ratio: f64,
    floor: u64,
    bucket_nanos: u128,
    origin: Instant,
    slots: Vec<Slot>,
}

impl RetryBudget {
    /// Builds an empty budget; `now` anchors the bucket boundaries.
    pub fn new(config: BudgetConfig, now: Instant) -> Result<Self, BudgetError> {
        if !config.ratio.is_finite() || config.ratio < 0.0 {
            return Err(BudgetError::BadRatio(config.ratio));
        }
        if config.window.is_zero() {
            return Err(BudgetError::ZeroWindow);
        }
        if config.buckets == 0 || config.buckets > MAX_BUCKETS {
            return Err(BudgetError::BadBuckets(config.buckets));
        }
        let bucket_nanos = config.window.as_nanos() / u128::from(config.buckets);
        if bucket_nanos == 0 {
            return Err(BudgetError::WindowTooShort { window: config.window, buckets: config.buckets });
        }
        // The floor is a per-window allowance; float maths then truncation
        // keeps fractional windows sensible (0.5 s × 1/s → 0 retries).
        let floor = (f64::from(config.min_per_sec) * config.window.as_secs_f64()) as u64;
        // `buckets` is at most MAX_BUCKETS, so this always fits.
        let len = usize::try_from(config.buckets).unwrap_or(1);
        Ok(Self { ratio: config.ratio, floor, bucket_nanos, origin: now, slots: vec![Slot::default(); len] })
    }

    /// Counts an original (non-retry) attempt: it earns `ratio` retries.
    pub fn record_first_attempt(&mut self, now: Instant) {
        let slot = self.current_slot(now);
        slot.firsts = slot.firsts.saturating_add(1);
    }

    /// Asks to spend one retry. `true` means the retry is allowed and has
    /// been counted; `false` means the budget is exhausted for now.
    pub fn try_withdraw_retry(&mut self, now: Instant) -> bool {
        if self.available(now) == 0 {
            return false;
        }
        let slot = self.current_slot(now);
        slot.retries = slot.retries.saturating_add(1);
        true
    }

    /// Retries that could still be withdrawn at `now` (for metrics/status).
    pub fn available(&self, now: Instant) -> u64 {
        let (firsts, retries) = self.totals(now);
        // `as` saturates on overflow, which is the behaviour we want.
        let earned = (self.ratio * firsts as f64) as u64;
        self.floor.saturating_add(earned).saturating_sub(retries)
    }

    /// The retries allowed in any window even with no traffic.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    fn epoch(&self, now: Instant) -> u64 {
        // An instant before the origin (callers sampling clocks in a
        // different order) is treated as the first bucket rather than a panic.
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        u64::try_from(elapsed / self.bucket_nanos).unwrap_or(u64::MAX)
    }

    fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    /// Sums the slots whose epoch lies in the window ending at `now`.
    fn totals(&self, now: Instant) -> (u64, u64) {
        let current = self.epoch(now);
        let len = self.len();
        self.slots
            .iter()
            .filter(|s| s.epoch <= current && current - s.epoch < len)
            .fold((0u64, 0u64), |(f, r), s| (f.saturating_add(s.firsts), r.saturating_add(s.retries)))
    }

    /// The slot for `now`, cleared first if it still holds an older epoch.
    fn current_slot(&mut self, now: Instant) -> &mut Slot {
        let epoch = self.epoch(now);
        let idx = usize::try_from(epoch % self.len()).unwrap_or(0);
        let slot = &mut self.slots[idx];
        if slot.epoch != epoch {
            *slot = Slot { epoch, firsts: 0, retries: 0 };
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn budget(t0: Instant) -> RetryBudget {
        RetryBudget::new(BudgetConfig::default(), t0).expect("valid config")
    }

    fn drain(b: &mut RetryBudget, now: Instant) -> u64 {
        let mut n = 0;
        while b.try_withdraw_retry(now) {
            n += 1;
            assert!(n < 1_000_000, "budget never ran out");
        }
        n
    }

    #[test]
    fn no_first_attempts_only_floor() {
        let t0 = Instant::now();
        let mut b = budget(t0);
        assert_eq!(b.floor(), 10); // 1/s × 10 s
        assert_eq!(b.available(t0), 10);
        assert_eq!(drain(&mut b, t0), 10);
        assert!(!b.try_withdraw_retry(t0 + secs(1)));
    }

    #[test]
    fn ratio_of_first_attempts_plus_floor() {
        let t0 = Instant::now();
        let mut b = budget(t0);
        for _ in 0..100 {
            b.record_first_attempt(t0);
        }
        assert_eq!(b.available(t0), 30);
        assert_eq!(drain(&mut b, t0), 30); // 20 % of 100 + floor 10
        assert_eq!(b.available(t0), 0);
    }

    #[test]
    fn retries_spread_across_buckets_still_count() {
        let t0 = Instant::now();
        let mut b = budget(t0);
        for i in 0..100u64 {
            b.record_first_attempt(t0 + Duration::from_millis(i * 50)); // over 5 s
        }
        let mut allowed = 0;
        for i in 0..100u64 {
            if b.try_withdraw_retry(t0 + secs(5) + Duration::from_millis(i * 40)) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 30);
    }

    #[test]
    fn window_expiry_restores_budget() {
        let t0 = Instant::now();
        let mut b = budget(t0);
        for _ in 0..100 {
            b.record_first_attempt(t0);
        }
        assert_eq!(drain(&mut b, t0), 30);
        // Still inside the window: nothing back yet.
        assert!(!b.try_withdraw_retry(t0 + Duration::from_millis(9_999)));
        // The first-attempt credit expired with the retries: only the floor.
        assert_eq!(b.available(t0 + secs(10)), 10);
        for _ in 0..50 {
            b.record_first_attempt(t0 + secs(10));
        }
        assert_eq!(drain(&mut b, t0 + secs(10)), 20);
    }

    #[test]
    fn buckets_age_out_one_at_a_time() {
        let t0 = Instant::now();
        let mut b = budget(t0);
        assert_eq!(drain(&mut b, t0), 10); // floor spent in bucket 0
        for _ in 0..50 {
            b.record_first_attempt(t0 + secs(3)); // bucket 3: +10
        }
        assert_eq!(b.available(t0 + secs(9)), 10);
        // Bucket 0 (the spent floor) expires, bucket 3 is still in the window.
        assert_eq!(b.available(t0 + secs(10)), 20);
        // Bucket 3 expires too.
        assert_eq!(b.available(t0 + secs(13)), 10);
    }

    #[test]
    fn ring_reuse_does_not_leak_old_counts() {
        let t0 = Instant::now();
        let mut b = budget(t0);
        for _ in 0..100 {
            b.record_first_attempt(t0 + secs(2));
        }
        // Same slot index (22 % 10 == 2), twenty seconds later.
        b.record_first_attempt(t0 + secs(22));
        assert_eq!(b.available(t0 + secs(22)), 10); // floor + 0.2 truncated
    }

    #[test]
    fn instant_before_origin_does_not_panic() {
        let t0 = Instant::now() + secs(5);
        let mut b = budget(t0);
        let earlier = Instant::now();
        b.record_first_attempt(earlier);
        assert!(b.try_withdraw_retry(earlier));
    }

    #[test]
    fn zero_ratio_and_zero_floor_disallow_retries() {
        let t0 = Instant::now();
        let cfg = BudgetConfig { ratio: 0.0, min_per_sec: 0, ..BudgetConfig::default() };
        let mut b = RetryBudget::new(cfg, t0).expect("valid");
        for _ in 0..1000 {
            b.record_first_attempt(t0);
        }
        assert!(!b.try_withdraw_retry(t0));
    }

    #[test]
    fn huge_time_jump_is_fine() {
        let t0 = Instant::now();
        let mut b = budget(t0);
        let later = t0 + secs(60 * 60 * 24 * 365 * 100);
        b.record_first_attempt(later);
        assert_eq!(b.available(later), 10);
    }

    #[test]
    fn rejects_bad_config() {
        let t0 = Instant::now();
        let d = BudgetConfig::default();
        let bad = |cfg| RetryBudget::new(cfg, t0).map(|_| ()).expect_err("should be rejected");
        assert!(matches!(bad(BudgetConfig { ratio: -0.1, ..d }), BudgetError::BadRatio(_)));
        assert!(matches!(bad(BudgetConfig { ratio: f64::NAN, ..d }), BudgetError::BadRatio(_)));
        assert!(matches!(bad(BudgetConfig { ratio: f64::INFINITY, ..d }), BudgetError::BadRatio(_)));
        assert_eq!(bad(BudgetConfig { window: Duration::ZERO, ..d }), BudgetError::ZeroWindow);
        assert_eq!(bad(BudgetConfig { buckets: 0, ..d }), BudgetError::BadBuckets(0));
        assert_eq!(bad(BudgetConfig { buckets: 5000, ..d }), BudgetError::BadBuckets(5000));
        assert_eq!(
            bad(BudgetConfig { window: Duration::from_nanos(5), buckets: 10, ..d }),
            BudgetError::WindowTooShort { window: Duration::from_nanos(5), buckets: 10 }
        );
    }
}
