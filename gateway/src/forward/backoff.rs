//! Retry delay policy: capped exponential backoff with full jitter.
//!
//! Full jitter between the base and the exponential ceiling (a uniform draw
//! in `[base, min(cap, base * 2^(attempt+1))]`) spreads retries from many
//! deliveries that failed together across the whole interval, so a
//! recovering upstream is not hit by synchronized waves; the floor at the
//! base keeps a retry from landing before the breaker has seen the failures.
//! The policy is pure: the caller passes the attempt number and the RNG, which
//! keeps it deterministic under test.

use std::time::Duration;

use rand::Rng;
use thiserror::Error;

/// Why a [`Backoff`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BackoffError {
    /// A zero base would make every ceiling zero: retries would spin.
    #[error("backoff base delay must be greater than zero")]
    ZeroBase,
    /// The cap bounds the ceiling from above, so it cannot be below the first ceiling.
    #[error("backoff cap ({cap:?}) must not be smaller than the base ({base:?})")]
    CapBelowBase { base: Duration, cap: Duration },
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
}

impl Backoff {
    /// Builds a policy whose ceiling starts at `base` and never exceeds `cap`.
    pub fn new(base: Duration, cap: Duration) -> Result<Self, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if cap < base {
            return Err(BackoffError::CapBelowBase { base, cap });
        }
        Ok(Self { base, cap })
    }

    /// The first ceiling.
    pub fn base(&self) -> Duration {
        self.base
    }

    /// The largest ceiling (and therefore the largest possible delay).
    pub fn cap(&self) -> Duration {
        self.cap
    }

    /// The upper bound of the draw for `attempt`: `min(cap, base * 2^attempt)`.
    ///
    /// Saturates instead of overflowing, because `attempt` comes from a
    /// persisted counter that may be arbitrarily large after a long outage.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        // 2^attempt does not fit in u32 from attempt 32 on; by then any
        // non-zero base is far beyond any sensible cap anyway.
        let Some(factor) = 1u32.checked_shl(attempt) else {
            return self.cap;
        };
        match self.base.checked_mul(factor) {
            Some(ceiling) => ceiling.min(self.cap),
            None => self.cap,
        }
    }

    /// The delay before retry number `attempt` (0 = the first retry):
    /// uniform in `[0, ceiling(attempt)]`, both ends included.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        // Full jitter *above the base*: uniform in [base, ceiling(attempt + 1)].
        // A retry never comes sooner than the base, so the failures that open
        // a breaker arrive before any retry can add to them.
        let floor = self.base.as_nanos();
        let ceiling = self.ceiling(attempt.saturating_add(1)).as_nanos().max(floor);
        // Draw in whole nanoseconds so the result is exact and can never
        // exceed the ceiling (a float draw could round past it).
        let nanos = rng.random_range(floor..=ceiling);
        duration_from_nanos(nanos)
    }
}

/// Rebuilds a `Duration` from a nanosecond count no larger than some existing
/// `Duration::as_nanos()`, so the seconds always fit in a u64.
fn duration_from_nanos(nanos: u128) -> Duration {
    const NANOS_PER_SEC: u128 = 1_000_000_000;
    let secs = u64::try_from(nanos / NANOS_PER_SEC).unwrap_or(u64::MAX);
    // The remainder is below 10^9, so it always fits in a u32.
    let subsec = u32::try_from(nanos % NANOS_PER_SEC).unwrap_or(0);
    Duration::new(secs, subsec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rejects_zero_base() {
        assert_eq!(Backoff::new(Duration::ZERO, ms(10)), Err(BackoffError::ZeroBase));
        assert_eq!(Backoff::new(Duration::ZERO, Duration::ZERO), Err(BackoffError::ZeroBase));
    }

    #[test]
    fn rejects_cap_below_base() {
        assert_eq!(Backoff::new(ms(100), ms(99)), Err(BackoffError::CapBelowBase { base: ms(100), cap: ms(99) }));
    }

    #[test]
    fn accepts_cap_equal_to_base() {
        let b = Backoff::new(ms(100), ms(100)).expect("valid");
        assert_eq!(b.ceiling(0), ms(100));
        assert_eq!(b.ceiling(40), ms(100));
    }

    #[test]
    fn ceiling_doubles_then_caps() {
        let b = Backoff::new(ms(100), Duration::from_secs(5)).expect("valid");
        let expected = [100, 200, 400, 800, 1600, 3200, 5000, 5000];
        for (attempt, want) in expected.into_iter().enumerate() {
            let attempt = u32::try_from(attempt).expect("small");
            assert_eq!(b.ceiling(attempt), ms(want), "attempt {attempt}");
        }
    }

    #[test]
    fn delay_stays_within_bounds_for_many_attempts() {
        let b = Backoff::new(ms(50), Duration::from_secs(30)).expect("valid");
        let mut rng = StdRng::seed_from_u64(7);
        for attempt in 0..200u32 {
            let ceiling = b.ceiling(attempt.saturating_add(1));
            for _ in 0..50 {
                let d = b.delay(attempt, &mut rng);
                assert!(d <= ceiling, "attempt {attempt}: {d:?} > {ceiling:?}");
                assert!(d >= b.base(), "attempt {attempt}: {d:?} below the base");
                assert!(d <= b.cap());
            }
        }
    }

    #[test]
    fn no_overflow_at_extreme_attempts() {
        let mut rng = StdRng::seed_from_u64(1);
        // The widest possible policy: a huge base and the largest cap.
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 2), Duration::MAX).expect("valid");
        for attempt in [0, 1, 2, 31, 32, 33, 63, 64, 1000, u32::MAX - 1, u32::MAX] {
            assert!(huge.delay(attempt, &mut rng) <= Duration::MAX);
        }
        assert_eq!(huge.ceiling(u32::MAX), Duration::MAX);

        let small = Backoff::new(Duration::from_nanos(1), ms(250)).expect("valid");
        assert_eq!(small.ceiling(u32::MAX), ms(250));
        assert!(small.delay(u32::MAX, &mut rng) <= ms(250));
    }

    #[test]
    fn duration_max_round_trips_through_nanos() {
        assert_eq!(duration_from_nanos(Duration::MAX.as_nanos()), Duration::MAX);
        assert_eq!(duration_from_nanos(0), Duration::ZERO);
        assert_eq!(duration_from_nanos(1_500_000_001), Duration::new(1, 500_000_001));
    }

    #[test]
    fn distribution_is_not_degenerate() {
        let b = Backoff::new(ms(100), Duration::from_secs(10)).expect("valid");
        let mut rng = StdRng::seed_from_u64(42);
        let attempt = 4; // draws in [0.1 s, 3.2 s]
        let floor = b.base().as_secs_f64();
        let ceiling = b.ceiling(attempt + 1).as_secs_f64();
        let n = 4000;
        let mut buckets = [0usize; 4];
        let mut sum = 0.0;
        for _ in 0..n {
            let d = b.delay(attempt, &mut rng).as_secs_f64();
            sum += d;
            // Quarter of the range each; clamp the inclusive top end.
            let idx = (((d - floor) / (ceiling - floor)) * 4.0) as usize;
            buckets[idx.min(3)] += 1;
        }
        // A uniform draw puts ~25% in each quarter and averages the midpoint.
        for (i, count) in buckets.iter().enumerate() {
            assert!((800..=1200).contains(count), "quarter {i} has {count} of {n}");
        }
        let mean = sum / f64::from(n);
        assert!((mean - (floor + ceiling) / 2.0).abs() < ceiling * 0.05, "mean {mean}");
    }

    #[test]
    fn same_seed_same_delays() {
        let b = Backoff::new(ms(10), Duration::from_secs(1)).expect("valid");
        let mut a = StdRng::seed_from_u64(3);
        let mut c = StdRng::seed_from_u64(3);
        for attempt in 0..20 {
            assert_eq!(b.delay(attempt, &mut a), b.delay(attempt, &mut c));
        }
    }
}
