//! Per-upstream circuit breaker: admission control, probing and slow start.
//!
//! The breaker decides whether the forwarder may send to an upstream *now*.
//! It is pure state: the caller passes the current time and the number of
//! requests in flight, and reports each admitted request's outcome back with
//! the [`Ticket`] it was given. That keeps every transition deterministic and
//! testable without a clock or a runtime.
//!
//! States:
//! - **Closed**: traffic flows, up to a concurrency limit. `failure_threshold`
//!   consecutive failures open the breaker. After recovering, the limit
//!   restarts at 1 and grows by one per success (doubling per round trip, like
//!   TCP slow start) so a just-recovered upstream is not hit by the backlog.
//! - **Open**: nothing is sent except at most one probe per `probe_interval`.
//!   A successful probe moves to half-open; a failed one keeps it open.
//! - **HalfOpen**: a trickle of one request at a time. `half_open_successes`
//!   consecutive successes close it (with slow start); any failure reopens it.
//!
//! Independently of the state, [`Breaker::hold_until`] honours an upstream's
//! `Retry-After`: nothing is admitted before that instant.

use std::fmt;
use std::time::{Duration, Instant};

use thiserror::Error;

/// Longer intervals would leave an upstream unprobed for most of a day; the
/// bound also keeps `now + probe_interval` far away from `Instant` overflow.
pub const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(24 * 60 * 60);

/// Why a [`Breaker`] could not be built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum BreakerError {
    #[error("breaker failure_threshold must be at least 1")]
    ZeroFailureThreshold,
    #[error("breaker probe_interval must be greater than zero")]
    ZeroProbeInterval,
    #[error("breaker probe_interval must be at most {MAX_PROBE_INTERVAL:?}, got {0:?}")]
    ProbeIntervalTooLong(Duration),
    #[error("breaker half_open_successes must be at least 1")]
    ZeroHalfOpenSuccesses,
    #[error("breaker max_concurrency must be at least 1")]
    ZeroMaxConcurrency,
}

/// Tunables of a [`Breaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures (while closed) that open the breaker.
    pub failure_threshold: u32,
    /// While open, the minimum time between two probe launches.
    pub probe_interval: Duration,
    /// Consecutive half-open successes needed to close again.
    pub half_open_successes: u32,
    /// Concurrency limit once slow start has finished.
    pub max_concurrency: usize,
    /// How long a failure keeps a closed breaker reported as `degraded`.
    pub recent_failure_window: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            probe_interval: Duration::from_secs(1),
            half_open_successes: 3,
            max_concurrency: 64,
            recent_failure_window: Duration::from_secs(30),
        }
    }
}

impl BreakerConfig {
    /// Rejects values that would make the breaker never open, never close,
    /// probe in a tight loop, or admit nothing.
    pub fn validate(&self) -> Result<(), BreakerError> {
        if self.failure_threshold == 0 {
            return Err(BreakerError::ZeroFailureThreshold);
        }
        if self.probe_interval.is_zero() {
            return Err(BreakerError::ZeroProbeInterval);
        }
        if self.probe_interval > MAX_PROBE_INTERVAL {
            return Err(BreakerError::ProbeIntervalTooLong(self.probe_interval));
        }
        if self.half_open_successes == 0 {
            return Err(BreakerError::ZeroHalfOpenSuccesses);
        }
        if self.max_concurrency == 0 {
            return Err(BreakerError::ZeroMaxConcurrency);
        }
        Ok(())
    }
}

/// The breaker's position in its state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    /// Stable lowercase name for logs and metrics labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for BreakerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Coarse upstream health for status reporting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// Closed, no recent failures, no Retry-After hold.
    Healthy,
    /// Closed with recent failures or an active hold, or half-open.
    Degraded,
    /// Open: only probes are sent.
    Open,
}

impl Health {
    /// Stable lowercase name, suitable as a serialized value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::Degraded => "degraded",
            Self::Open => "open",
        }
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Proof of admission, handed back with the outcome.
///
/// It records which generation of the breaker admitted the request, so an
/// outcome from before a state change (say, the 40 requests still in flight
/// when the breaker opened) cannot be mistaken for a probe result or reopen a
/// half-open breaker.
#[must_use = "report the outcome with on_success/on_failure/on_cancelled"]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket {
    epoch: u64,
    probe: bool,
}

impl Ticket {
    /// Whether this request is the breaker's single probe.
    pub fn is_probe(&self) -> bool {
        self.probe
    }
}

/// The answer of [`Breaker::try_acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Closed: send it.
    Allowed(Ticket),
    /// Open or half-open: send it as the one probe; others wait for its result.
    Probe(Ticket),
    /// At the concurrency limit (or a half-open probe is in flight): try again
    /// when an in-flight request to this upstream completes.
    Saturated,
    /// Nothing may be sent before `retry_at` (open breaker or Retry-After).
    Denied { retry_at: Instant },
}

/// State-specific data; kept inside the variants so impossible combinations
/// (a closed breaker with a probe in flight) cannot be represented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed { failures: u32, limit: usize },
    Open { next_probe_at: Instant, probe_in_flight: bool },
    HalfOpen { successes: u32, probe_in_flight: bool },
}

/// A circuit breaker for one upstream. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Breaker {
    config: BreakerConfig,
    phase: Phase,
    /// Bumped on every transition and every probe launch; tickets from another
    /// epoch are stale and their outcomes are ignored.
    epoch: u64,
    last_failure: Option<Instant>,
    hold: Option<Instant>,
    /// When the breaker last left closed (open, then half-open, until closed
    /// again): how long the upstream has been out, for the people watching.
    out_since: Option<Instant>,
}

impl Breaker {
    /// A closed breaker at full concurrency: with no evidence either way, an
    /// upstream is presumed healthy.
    pub fn new(config: BreakerConfig) -> Result<Self, BreakerError> {
        config.validate()?;
        Ok(Self {
            config,
            phase: Phase::Closed { failures: 0, limit: config.max_concurrency },
            epoch: 0,
            last_failure: None,
            hold: None,
            out_since: None,
        })
    }

    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    pub fn state(&self) -> BreakerState {
        match self.phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// How many requests may be in flight at once right now: the slow-start
    /// limit when closed, 1 when half-open, 0 when open (probes aside).
    pub fn allowed_concurrency(&self) -> usize {
        match self.phase {
            Phase::Closed { limit, .. } => limit,
            Phase::HalfOpen { .. } => 1,
            Phase::Open { .. } => 0,
        }
    }

    /// The Retry-After hold still in force at `now`, if any.
    pub fn held_until(&self, now: Instant) -> Option<Instant> {
        self.hold.filter(|&h| now < h)
    }

    pub fn health(&self, now: Instant) -> Health {
        match self.phase {
            Phase::Open { .. } => Health::Open,
            Phase::HalfOpen { .. } => Health::Degraded,
            Phase::Closed { failures, .. } => {
                let recent = self.last_failure.is_some_and(|at| now.saturating_duration_since(at) < self.config.recent_failure_window);
                if failures > 0 || recent || self.held_until(now).is_some() { Health::Degraded } else { Health::Healthy }
            }
        }
    }

    /// Asks to send one request. `in_flight` is the number of requests to
    /// this upstream currently outstanding; it only matters while closed,
    /// because open/half-open admission is governed by the single probe.
    pub fn try_acquire(&mut self, now: Instant, in_flight: usize) -> Admission {
        let held = self.held_until(now);
        match self.phase {
            Phase::Closed { limit, .. } => {
                if let Some(retry_at) = held {
                    Admission::Denied { retry_at }
                } else if in_flight >= limit {
                    Admission::Saturated
                } else {
                    Admission::Allowed(Ticket { epoch: self.epoch, probe: false })
                }
            }
            Phase::Open { next_probe_at, probe_in_flight } => {
                if probe_in_flight {
                    // The probe's result may come at any moment, but even a
                    // failure only allows the next probe at `next_probe_at`;
                    // if that has passed, check back one interval from now
                    // rather than inviting a busy loop.
                    let slot = if next_probe_at > now { next_probe_at } else { now + self.config.probe_interval };
                    Admission::Denied { retry_at: held.map_or(slot, |h| h.max(slot)) }
                } else if now < next_probe_at || held.is_some() {
                    let retry_at = held.map_or(next_probe_at, |h| h.max(next_probe_at));
                    Admission::Denied { retry_at }
                } else {
                    self.epoch += 1;
                    self.phase = Phase::Open { next_probe_at: now + self.config.probe_interval, probe_in_flight: true };
                    Admission::Probe(Ticket { epoch: self.epoch, probe: true })
                }
            }
            Phase::HalfOpen { successes, probe_in_flight } => {
                if let Some(retry_at) = held {
                    Admission::Denied { retry_at }
                } else if probe_in_flight {
                    Admission::Saturated
                } else {
                    self.epoch += 1;
                    self.phase = Phase::HalfOpen { successes, probe_in_flight: true };
                    Admission::Probe(Ticket { epoch: self.epoch, probe: true })
                }
            }
        }
    }

    /// Reports that the request admitted with `ticket` succeeded.
    pub fn on_success(&mut self, _now: Instant, ticket: Ticket) {
        if ticket.epoch != self.epoch {
            return;
        }
        match self.phase {
            Phase::Closed { limit, .. } => {
                // +1 per success doubles the limit per fully successful
                // round trip, up to the configured maximum.
                let limit = limit.saturating_add(1).min(self.config.max_concurrency);
                self.phase = Phase::Closed { failures: 0, limit };
            }
            Phase::Open { probe_in_flight: true, .. } if ticket.probe => {
                self.transition(Phase::HalfOpen { successes: 0, probe_in_flight: false });
            }
            Phase::HalfOpen { successes, probe_in_flight: true } if ticket.probe => {
                let successes = successes.saturating_add(1);
                if successes >= self.config.half_open_successes {
                    self.transition(Phase::Closed { failures: 0, limit: 1 });
                    self.out_since = None;
                } else {
                    self.phase = Phase::HalfOpen { successes, probe_in_flight: false };
                }
            }
            // A repeated report for a probe that already completed.
            Phase::Open { .. } | Phase::HalfOpen { .. } => {}
        }
    }

    /// Reports that the request admitted with `ticket` failed (in a way that
    /// says something about the upstream: connect error, timeout, 5xx, 429).
    pub fn on_failure(&mut self, now: Instant, ticket: Ticket) {
        if ticket.epoch != self.epoch {
            return;
        }
        match self.phase {
            Phase::Closed { failures, limit } => {
                self.last_failure = Some(now);
                let failures = failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    self.open(now);
                } else {
                    // Still ramping up: back off multiplicatively, as the
                    // upstream is evidently not ready for more.
                    let limit = if limit < self.config.max_concurrency { (limit / 2).max(1) } else { limit };
                    self.phase = Phase::Closed { failures, limit };
                }
            }
            Phase::Open { next_probe_at, probe_in_flight: true } if ticket.probe => {
                self.last_failure = Some(now);
                // The next probe stays one interval after this one's launch.
                self.phase = Phase::Open { next_probe_at, probe_in_flight: false };
            }
            Phase::HalfOpen { probe_in_flight: true, .. } if ticket.probe => {
                self.last_failure = Some(now);
                self.open(now);
            }
            Phase::Open { .. } | Phase::HalfOpen { .. } => {}
        }
    }

    /// Reports that the request admitted with `ticket` ended without an
    /// outcome (cancelled, shutdown). It counts neither way, but a probe
    /// must release its slot or the breaker would never probe again.
    pub fn on_cancelled(&mut self, ticket: Ticket) {
        if ticket.epoch != self.epoch || !ticket.probe {
            return;
        }
        match self.phase {
            Phase::Open { next_probe_at, probe_in_flight: true } => {
                self.phase = Phase::Open { next_probe_at, probe_in_flight: false };
            }
            Phase::HalfOpen { successes, probe_in_flight: true } => {
                self.phase = Phase::HalfOpen { successes, probe_in_flight: false };
            }
            _ => {}
        }
    }

    /// Admits nothing before `until` (an upstream's Retry-After), whatever
    /// the state. A later hold extends an earlier one; an earlier one never
    /// shortens it.
    pub fn hold_until(&mut self, until: Instant) {
        self.hold = Some(self.hold.map_or(until, |h| h.max(until)));
    }

    /// Since when the breaker has not been closed (`None` while closed): an
    /// open and half-open cycle of probes counts as one outage.
    pub fn out_since(&self) -> Option<Instant> {
        self.out_since
    }

    fn open(&mut self, now: Instant) {
        self.out_since.get_or_insert(now);
        self.transition(Phase::Open { next_probe_at: now + self.config.probe_interval, probe_in_flight: false });
    }

    fn transition(&mut self, phase: Phase) {
        self.epoch += 1;
        self.phase = phase;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_dated_from_the_first_open_through_failed_probes_until_closed() {
        let t0 = Instant::now();
        let config = BreakerConfig { failure_threshold: 1, half_open_successes: 1, ..BreakerConfig::default() };
        let mut b = Breaker::new(config).expect("breaker");
        assert_eq!(b.out_since(), None);
        let fail = |b: &mut Breaker, now| match b.try_acquire(now, 0) {
            Admission::Allowed(t) | Admission::Probe(t) => b.on_failure(now, t),
            other => panic!("not admitted: {other:?}"),
        };
        fail(&mut b, t0);
        assert_eq!(b.out_since(), Some(t0), "open since its first failure past the threshold");
        let later = t0 + config.probe_interval * 3;
        fail(&mut b, later);
        assert_eq!(b.out_since(), Some(t0), "a failed probe does not restart the outage");
        let recovered = later + config.probe_interval * 2;
        let succeed = |b: &mut Breaker| match b.try_acquire(recovered, 0) {
            Admission::Probe(t) => b.on_success(recovered, t),
            other => panic!("probe not admitted: {other:?}"),
        };
        succeed(&mut b);
        assert_eq!((b.state(), b.out_since()), (BreakerState::HalfOpen, Some(t0)), "still out while probing");
        succeed(&mut b);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.out_since(), None, "closed again: no outage");
    }

    const INTERVAL: Duration = Duration::from_secs(1);

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            failure_threshold: 3,
            probe_interval: INTERVAL,
            half_open_successes: 2,
            max_concurrency: 8,
            recent_failure_window: Duration::from_secs(10),
        }
    }

    fn breaker() -> Breaker {
        Breaker::new(cfg()).expect("valid config")
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[track_caller]
    fn allowed(b: &mut Breaker, now: Instant, in_flight: usize) -> Ticket {
        match b.try_acquire(now, in_flight) {
            Admission::Allowed(t) => t,
            other => panic!("expected Allowed, got {other:?}"),
        }
    }

    #[track_caller]
    fn probe(b: &mut Breaker, now: Instant) -> Ticket {
        match b.try_acquire(now, 0) {
            Admission::Probe(t) => {
                assert!(t.is_probe());
                t
            }
            other => panic!("expected Probe, got {other:?}"),
        }
    }

    #[track_caller]
    fn denied(b: &mut Breaker, now: Instant) -> Instant {
        match b.try_acquire(now, 0) {
            Admission::Denied { retry_at } => retry_at,
            other => panic!("expected Denied, got {other:?}"),
        }
    }

    /// Drives a fresh breaker to Open at `t0` with `failure_threshold` failures.
    fn opened(t0: Instant) -> Breaker {
        let mut b = breaker();
        let tickets: Vec<_> = (0..3).map(|i| allowed(&mut b, t0, i)).collect();
        for t in tickets {
            b.on_failure(t0, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
        b
    }

    /// Drives a fresh breaker to HalfOpen at `t0 + INTERVAL`.
    fn half_opened(t0: Instant) -> Breaker {
        let mut b = opened(t0);
        let t = probe(&mut b, t0 + INTERVAL);
        b.on_success(t0 + INTERVAL, t);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b
    }

    #[test]
    fn rejects_bad_config() {
        let d = cfg();
        let err = |c| Breaker::new(c).map(|_| ()).expect_err("should be rejected");
        assert_eq!(err(BreakerConfig { failure_threshold: 0, ..d }), BreakerError::ZeroFailureThreshold);
        assert_eq!(err(BreakerConfig { probe_interval: Duration::ZERO, ..d }), BreakerError::ZeroProbeInterval);
        assert_eq!(err(BreakerConfig { half_open_successes: 0, ..d }), BreakerError::ZeroHalfOpenSuccesses);
        assert_eq!(err(BreakerConfig { max_concurrency: 0, ..d }), BreakerError::ZeroMaxConcurrency);
        let long = MAX_PROBE_INTERVAL + Duration::from_nanos(1);
        assert_eq!(err(BreakerConfig { probe_interval: long, ..d }), BreakerError::ProbeIntervalTooLong(long));
        assert!(Breaker::new(BreakerConfig { probe_interval: MAX_PROBE_INTERVAL, ..d }).is_ok());
        assert!(Breaker::new(BreakerConfig::default()).is_ok());
    }

    #[test]
    fn starts_closed_healthy_at_full_concurrency() {
        let b = breaker();
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.health(Instant::now()), Health::Healthy);
        assert_eq!(b.allowed_concurrency(), 8);
    }

    #[test]
    fn closed_enforces_concurrency_limit() {
        let mut b = breaker();
        let now = Instant::now();
        for in_flight in 0..8 {
            let _ = allowed(&mut b, now, in_flight);
        }
        assert_eq!(b.try_acquire(now, 8), Admission::Saturated);
        assert_eq!(b.try_acquire(now, 100), Admission::Saturated);
    }

    #[test]
    fn consecutive_failures_open_and_success_resets() {
        let t0 = Instant::now();
        let mut b = breaker();
        for _ in 0..5 {
            let (a, c) = (allowed(&mut b, t0, 0), allowed(&mut b, t0, 1));
            b.on_failure(t0, a);
            b.on_failure(t0, c);
            let s = allowed(&mut b, t0, 0);
            b.on_success(t0, s); // breaks the streak every time
            assert_eq!(b.state(), BreakerState::Closed);
        }
        let tickets: Vec<_> = (0..3).map(|i| allowed(&mut b, t0, i)).collect();
        b.on_failure(t0, tickets[0]);
        b.on_failure(t0, tickets[1]);
        assert_eq!(b.state(), BreakerState::Closed);
        b.on_failure(t0, tickets[2]);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(b.allowed_concurrency(), 0);
        assert_eq!(b.health(t0), Health::Open);
    }

    #[test]
    fn open_denies_until_probe_interval() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        assert_eq!(denied(&mut b, t0), t0 + INTERVAL);
        assert_eq!(denied(&mut b, t0 + ms(999)), t0 + INTERVAL);
        // Closed-state concurrency does not leak into open: in_flight is ignored.
        assert!(matches!(b.try_acquire(t0 + ms(500), 0), Admission::Denied { .. }));
        let _p = probe(&mut b, t0 + INTERVAL);
    }

    #[test]
    fn probe_in_flight_blocks_other_probes() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let _p = probe(&mut b, t0 + INTERVAL);
        // Before the next slot: told to come back at the slot.
        assert_eq!(denied(&mut b, t0 + INTERVAL), t0 + 2 * INTERVAL);
        // A slow probe outlives its interval: still no second probe.
        for k in 2..10u32 {
            let now = t0 + INTERVAL * k;
            assert_eq!(denied(&mut b, now), now + INTERVAL);
        }
    }

    #[test]
    fn failed_probe_stays_open_and_next_probe_waits_an_interval() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let launch = t0 + INTERVAL;
        let p = probe(&mut b, launch);
        b.on_failure(launch + ms(200), p);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(denied(&mut b, launch + ms(200)), launch + INTERVAL);
        let _p2 = probe(&mut b, launch + INTERVAL);
    }

    #[test]
    fn failed_slow_probe_allows_next_probe_immediately_after_interval() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let launch = t0 + INTERVAL;
        let p = probe(&mut b, launch);
        // The probe took 3 intervals; its launch was long enough ago.
        b.on_failure(launch + 3 * INTERVAL, p);
        let _p2 = probe(&mut b, launch + 3 * INTERVAL);
    }

    #[test]
    fn at_most_one_probe_per_interval_under_polling() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let mut launches = Vec::new();
        // Poll every 10 ms for 20 s; every probe fails after 50 ms.
        let mut pending: Option<(Instant, Ticket)> = None;
        for step in 0..2000u32 {
            let now = t0 + ms(10) * step;
            if let Some((done_at, t)) = pending
                && now >= done_at
            {
                b.on_failure(now, t);
                pending = None;
            }
            match b.try_acquire(now, 0) {
                Admission::Probe(t) => {
                    assert!(pending.is_none(), "second probe while one in flight");
                    launches.push(now);
                    pending = Some((now + ms(50), t));
                }
                Admission::Denied { retry_at } => assert!(retry_at > now),
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(launches.len(), 19); // at 1 s, 2 s, ... 19 s
        for pair in launches.windows(2) {
            assert!(pair[1] - pair[0] >= INTERVAL);
        }
    }

    #[test]
    fn probe_success_half_opens_then_trickles_then_closes() {
        let t0 = Instant::now();
        let mut b = half_opened(t0);
        let now = t0 + INTERVAL;
        assert_eq!(b.allowed_concurrency(), 1);
        assert_eq!(b.health(now), Health::Degraded);

        let p = probe(&mut b, now);
        // One at a time: the trickle.
        assert_eq!(b.try_acquire(now, 0), Admission::Saturated);
        b.on_success(now, p);
        assert_eq!(b.state(), BreakerState::HalfOpen);

        // No interval wait in half-open: the next one goes right away.
        let p = probe(&mut b, now);
        b.on_success(now, p);
        assert_eq!(b.state(), BreakerState::Closed);
        assert_eq!(b.allowed_concurrency(), 1);
    }

    #[test]
    fn half_open_failure_reopens_with_fresh_interval() {
        let t0 = Instant::now();
        let mut b = half_opened(t0);
        let p = probe(&mut b, t0 + INTERVAL);
        b.on_success(t0 + INTERVAL, p);
        let at = t0 + INTERVAL + ms(300);
        let p = probe(&mut b, at);
        b.on_failure(at, p);
        assert_eq!(b.state(), BreakerState::Open);
        assert_eq!(denied(&mut b, at), at + INTERVAL);
        // Half-open successes do not carry over into the next half-open.
        let p = probe(&mut b, at + INTERVAL);
        b.on_success(at + INTERVAL, p);
        let p = probe(&mut b, at + INTERVAL);
        b.on_success(at + INTERVAL, p);
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    fn closed_after_recovery(t0: Instant) -> Breaker {
        let mut b = half_opened(t0);
        for _ in 0..2 {
            let p = probe(&mut b, t0 + INTERVAL);
            b.on_success(t0 + INTERVAL, p);
        }
        assert_eq!(b.state(), BreakerState::Closed);
        b
    }

    #[test]
    fn slow_start_ramps_to_max() {
        let t0 = Instant::now();
        let mut b = closed_after_recovery(t0);
        let now = t0 + INTERVAL;
        assert_eq!(b.allowed_concurrency(), 1);
        let t = allowed(&mut b, now, 0);
        assert_eq!(b.try_acquire(now, 1), Admission::Saturated);
        b.on_success(now, t);
        assert_eq!(b.allowed_concurrency(), 2);

        // Round trips: fill the limit, then complete them all.
        let mut seen = vec![2];
        while b.allowed_concurrency() < 8 {
            let limit = b.allowed_concurrency();
            let tickets: Vec<_> = (0..limit).map(|i| allowed(&mut b, now, i)).collect();
            assert_eq!(b.try_acquire(now, limit), Admission::Saturated);
            for t in tickets {
                b.on_success(now, t);
            }
            seen.push(b.allowed_concurrency());
        }
        assert_eq!(seen, vec![2, 4, 8]); // doubles per round trip, capped
        let t = allowed(&mut b, now, 0);
        b.on_success(now, t);
        assert_eq!(b.allowed_concurrency(), 8);
    }

    #[test]
    fn failure_during_slow_start_halves_limit() {
        let t0 = Instant::now();
        let mut b = closed_after_recovery(t0);
        let now = t0 + INTERVAL;
        for _ in 0..5 {
            let t = allowed(&mut b, now, 0);
            b.on_success(now, t);
        }
        assert_eq!(b.allowed_concurrency(), 6);
        let t = allowed(&mut b, now, 0);
        b.on_failure(now, t);
        assert_eq!(b.allowed_concurrency(), 3);
        assert_eq!(b.state(), BreakerState::Closed);
        let t = allowed(&mut b, now, 0);
        b.on_failure(now, t);
        assert_eq!(b.allowed_concurrency(), 1);
        let t = allowed(&mut b, now, 0);
        b.on_failure(now, t);
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn failure_at_full_concurrency_keeps_limit() {
        let mut b = breaker();
        let now = Instant::now();
        let t = allowed(&mut b, now, 0);
        b.on_failure(now, t);
        assert_eq!(b.allowed_concurrency(), 8);
    }

    #[test]
    fn stale_outcomes_are_ignored() {
        let t0 = Instant::now();
        let mut b = breaker();
        // Ten requests in flight when the upstream dies.
        let tickets: Vec<_> = (0..10).map(|i| allowed(&mut b, t0, i.min(7))).collect();
        for &t in &tickets[..3] {
            b.on_failure(t0, t);
        }
        assert_eq!(b.state(), BreakerState::Open);
        // Late successes from the closed era do not count as probe results.
        b.on_success(t0, tickets[3]);
        assert_eq!(b.state(), BreakerState::Open);
        let p = probe(&mut b, t0 + INTERVAL);
        b.on_success(t0 + INTERVAL, tickets[4]);
        assert_eq!(b.state(), BreakerState::Open);
        b.on_success(t0 + INTERVAL, p);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        // Late failures from the closed era do not reopen a half-open breaker.
        for &t in &tickets[5..] {
            b.on_failure(t0 + INTERVAL, t);
        }
        assert_eq!(b.state(), BreakerState::HalfOpen);
    }

    #[test]
    fn repeated_probe_report_is_ignored() {
        let t0 = Instant::now();
        let mut b = half_opened(t0);
        let now = t0 + INTERVAL;
        let p = probe(&mut b, now);
        b.on_success(now, p);
        b.on_success(now, p); // would close the breaker if counted
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let p2 = probe(&mut b, now);
        b.on_failure(now, p); // old probe, new one in flight
        assert_eq!(b.state(), BreakerState::HalfOpen);
        b.on_success(now, p2);
        assert_eq!(b.state(), BreakerState::Closed);
    }

    #[test]
    fn cancelled_probe_frees_the_slot() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let p = probe(&mut b, t0 + INTERVAL);
        b.on_cancelled(p);
        assert_eq!(b.state(), BreakerState::Open);
        // The interval still counts from the cancelled probe's launch.
        assert_eq!(denied(&mut b, t0 + INTERVAL), t0 + 2 * INTERVAL);
        let p = probe(&mut b, t0 + 2 * INTERVAL);
        b.on_success(t0 + 2 * INTERVAL, p);
        let p = probe(&mut b, t0 + 2 * INTERVAL);
        b.on_cancelled(p);
        assert_eq!(b.state(), BreakerState::HalfOpen);
        let _p = probe(&mut b, t0 + 2 * INTERVAL);
    }

    #[test]
    fn hold_denies_in_every_state() {
        let t0 = Instant::now();
        let until = t0 + Duration::from_secs(30);

        let mut closed = breaker();
        closed.hold_until(until);
        assert_eq!(denied(&mut closed, t0), until);
        assert_eq!(closed.health(t0), Health::Degraded);
        let _ = allowed(&mut closed, until, 0);
        assert_eq!(closed.health(until), Health::Healthy);

        let mut open = opened(t0);
        open.hold_until(until);
        // The probe slot opens at t0+1s but the hold wins.
        assert_eq!(denied(&mut open, t0 + INTERVAL), until);
        let _ = probe(&mut open, until);

        let mut half = half_opened(t0);
        half.hold_until(until);
        assert_eq!(denied(&mut half, t0 + INTERVAL), until);
        let _ = probe(&mut half, until);
    }

    #[test]
    fn hold_is_never_shortened() {
        let t0 = Instant::now();
        let mut b = breaker();
        b.hold_until(t0 + Duration::from_secs(10));
        b.hold_until(t0 + Duration::from_secs(2));
        assert_eq!(denied(&mut b, t0 + Duration::from_secs(5)), t0 + Duration::from_secs(10));
        b.hold_until(t0 + Duration::from_secs(20));
        assert_eq!(b.held_until(t0), Some(t0 + Duration::from_secs(20)));
        assert_eq!(b.held_until(t0 + Duration::from_secs(20)), None);
    }

    #[test]
    fn hold_shorter_than_probe_slot_reports_probe_slot() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        b.hold_until(t0 + ms(200));
        assert_eq!(denied(&mut b, t0 + ms(100)), t0 + INTERVAL);
    }

    #[test]
    fn hold_while_probe_in_flight_is_respected() {
        let t0 = Instant::now();
        let mut b = opened(t0);
        let _p = probe(&mut b, t0 + INTERVAL);
        b.hold_until(t0 + Duration::from_secs(60));
        assert_eq!(denied(&mut b, t0 + INTERVAL), t0 + Duration::from_secs(60));
    }

    #[test]
    fn health_degrades_on_recent_failure_and_recovers() {
        let t0 = Instant::now();
        let mut b = breaker();
        let t = allowed(&mut b, t0, 0);
        b.on_failure(t0, t);
        assert_eq!(b.health(t0), Health::Degraded);
        let t = allowed(&mut b, t0, 0);
        b.on_success(t0, t);
        // Streak reset, but the failure is still recent.
        assert_eq!(b.health(t0 + Duration::from_secs(9)), Health::Degraded);
        assert_eq!(b.health(t0 + Duration::from_secs(10)), Health::Healthy);
    }

    #[test]
    fn labels_are_stable() {
        assert_eq!(Health::Healthy.as_str(), "healthy");
        assert_eq!(Health::Degraded.as_str(), "degraded");
        assert_eq!(Health::Open.to_string(), "open");
        assert_eq!(BreakerState::Closed.as_str(), "closed");
        assert_eq!(BreakerState::HalfOpen.to_string(), "half_open");
        assert_eq!(BreakerState::Open.as_str(), "open");
    }
}
