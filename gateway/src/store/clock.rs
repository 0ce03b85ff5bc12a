//! Weir's clock: the Unix time triggers are stamped with and aged by, which a
//! step of the system clock does not move while Weir runs.
//!
//! Every age Weir acts on compares a stored stamp with now: a trigger's id and
//! `received_at_ms` against `forward.max_age_secs` and `store.retention_secs`,
//! an idempotency key's first sighting against `store.idempotency_window_secs`.
//! Were both read from the system clock, a step forward of a day (NTP's
//! `makestep`, `date -s`, a VM restored from a snapshot) would dead-letter,
//! remove and forget a day's worth at once, and a step back would stamp new
//! triggers older than old ones. So Weir reads the system clock once, when the
//! clock is first used (the store's open), and counts from there on the
//! monotonic clock, which steps never move and NTP only slews: stamps and ages
//! agree whatever the system clock does, and an age is time Weir has seen pass.
//! A step is logged once, with its size; Weir keeps its own time until the next
//! start, which reads the system clock again (a restart cannot tell a step from
//! downtime). Retries, breakers and budgets never use this clock: they run on
//! tokio's (monotonic) timers.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A gap between the system clock and Weir's this large is a step, not NTP's
/// slewing or the few milliseconds between two clock reads.
const STEP_MS: i64 = 2_000;

/// Unix time from a start reading of the system clock plus monotonic time since.
#[derive(Debug)]
pub struct Clock {
    /// The system clock's reading at `start`, since the Unix epoch (to the
    /// nanosecond: Weir's milliseconds never lag the system clock's by a rounding).
    since_epoch: Duration,
    start: Instant,
    /// The gap (system clock minus Weir's) last logged, so a step is logged once.
    logged_gap_ms: AtomicI64,
}

impl Clock {
    /// A clock that reads `since_epoch` (Unix time) at `start`.
    pub fn new(since_epoch: Duration, start: Instant) -> Clock {
        Clock { since_epoch, start, logged_gap_ms: AtomicI64::new(0) }
    }

    /// Weir's time at `now`, in Unix milliseconds.
    pub fn ms_at(&self, now: Instant) -> u64 {
        let t = self.since_epoch.saturating_add(now.saturating_duration_since(self.start));
        u64::try_from(t.as_millis()).unwrap_or(u64::MAX)
    }

    /// The new gap when the system clock, reading `system_ms` at `now`, has
    /// stepped away from Weir's time since the last gap returned (or back to it).
    pub fn step(&self, system_ms: u64, now: Instant) -> Option<i64> {
        let gap = i128::from(system_ms) - i128::from(self.ms_at(now));
        let gap = i64::try_from(gap).unwrap_or(if gap < 0 { i64::MIN } else { i64::MAX });
        let logged = self.logged_gap_ms.load(Ordering::Relaxed);
        if gap.abs_diff(logged) < STEP_MS.unsigned_abs() {
            return None;
        }
        // Of the threads that see the same step, one reports it.
        self.logged_gap_ms.compare_exchange(logged, gap, Ordering::Relaxed, Ordering::Relaxed).ok().map(|_| gap)
    }
}

static CLOCK: OnceLock<Clock> = OnceLock::new();

fn since_epoch() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default()
}

fn system_ms() -> u64 {
    u64::try_from(since_epoch().as_millis()).unwrap_or(u64::MAX)
}

/// Weir's time now, in Unix milliseconds.
pub fn now_ms() -> u64 {
    let clock = CLOCK.get_or_init(|| Clock::new(since_epoch(), Instant::now()));
    let now = Instant::now();
    let ms = clock.ms_at(now);
    if let Some(gap) = clock.step(system_ms(), now) {
        log_step(gap);
    }
    ms
}

/// Weir's time now, as a `SystemTime` (for trigger ids).
pub fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(now_ms())
}

fn log_step(gap_ms: i64) {
    if gap_ms.unsigned_abs() < STEP_MS.unsigned_abs() {
        tracing::info!("the system clock agrees with Weir's clock again");
    } else {
        tracing::warn!(
            gap_ms,
            "the system clock stepped {} s away from Weir's clock; Weir keeps stamping and ageing triggers by its own \
             (the system clock read at start plus monotonic time since), so the step expires nothing; \
             timestamps follow the system clock again after a restart",
            gap_ms as f64 / 1000.0
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_moves_with_the_monotonic_clock_only() {
        let start = Instant::now();
        let clock = Clock::new(Duration::from_millis(1_700_000_000_000), start);
        assert_eq!(clock.ms_at(start), 1_700_000_000_000);
        assert_eq!(clock.ms_at(start + Duration::from_secs(90)), 1_700_000_090_000);
        // An instant from before the start (another thread's read) is the start.
        assert_eq!(clock.ms_at(start.checked_sub(Duration::from_secs(1)).unwrap_or(start)), 1_700_000_000_000);
    }

    #[test]
    fn a_step_is_reported_once_each_way_and_slewing_never() {
        let start = Instant::now();
        let clock = Clock::new(Duration::from_millis(1_700_000_000_000), start);
        let at = start + Duration::from_secs(10);
        // NTP's slewing: the system clock a second off.
        assert_eq!(clock.step(1_700_000_011_000, at), None);
        // +1 day.
        assert_eq!(clock.step(1_700_086_410_000, at), Some(86_400_000));
        assert_eq!(clock.step(1_700_086_410_500, at), None, "the same step is reported once");
        // ... then set back by 1 h from there, then corrected to the truth.
        assert_eq!(clock.step(1_700_082_810_000, at), Some(82_800_000));
        assert_eq!(clock.step(1_700_000_010_000, at), Some(0));
        assert_eq!(clock.step(1_699_996_410_000, at), Some(-3_600_000));
    }

    #[test]
    fn the_process_clock_follows_the_system_clock_when_nothing_steps() {
        let weir = now_ms();
        let system = system_ms();
        assert!(system.abs_diff(weir) < STEP_MS.unsigned_abs(), "system {system} vs Weir {weir}");
    }
}
