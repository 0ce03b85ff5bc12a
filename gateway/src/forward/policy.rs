//! Delivery policy: which trigger goes next, and to which upstream.
//!
//! Pure state: every method takes `now`, nothing here reads a clock or does
//! I/O, so failover, the release of waiting retries and the order of retries
//! are unit-tested with a paused clock. The scheduler task owns the one
//! `Policy`, feeds it what the store and the attempts report, and carries
//! out the launches it returns.
//!
//! Sources of work, in order: retries whose backoff is over, then one trigger
//! per tenant in turn (round-robin lanes), so one tenant's backlog never
//! starves another's fresh triggers. A lane reads its tenant's pending index
//! in id order through a cursor; a store announcement of an id at or behind
//! the cursor rewinds it.
//!
//! Failover: a first attempt goes to the first upstream of its route whose
//! breaker admits it, and may be that breaker's probe. A retry goes first to
//! an upstream of the route whose breaker is closed, other than the one that
//! just failed it; only if none admits it does it fall back to the route's
//! order (where it may be a probe). So a dead primary costs a trigger at most
//! one backoff step, at any traffic level, and probes ride on first attempts.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::rngs::StdRng;

use super::attempt::{AttemptResult, Class};
use super::backoff::Backoff;
use super::breaker::{Admission, Breaker, BreakerConfig, BreakerState, Ticket};
use super::budget::{BudgetConfig, RetryBudget};
use super::routes::Routes;
use super::{ForwardError, ForwardStatus, UpstreamStatus};
use crate::config::Config;
use crate::id::TriggerId;
use crate::store::Change;

/// Triggers read from a lane's index at a time.
pub const LANE_PAGE: usize = 64;
/// A retry refused by the budget waits this long before asking again.
const BUDGET_WAIT: Duration = Duration::from_millis(250);
/// A trigger that could not be read (the store file is being reopened) is
/// tried again after this long; it stays in the books meanwhile.
const UNREADABLE_WAIT: Duration = Duration::from_millis(500);

pub struct Upstream {
    pub label: String,
    breaker: Breaker,
    in_flight: usize,
    attempts: u64,
    delivered: u64,
    failures: u64,
    last_error: Option<String>,
    /// When `last_error` happened: the status tells a current error from an old one.
    last_error_at: Option<Instant>,
    /// The last attempt failed (a failure after a success is logged again).
    failing: bool,
}

/// One tenant's queue of pending triggers.
struct Lane {
    tenant: Arc<str>,
    buffer: VecDeque<Job>,
    /// The last id read from the index; the next read starts after it.
    cursor: Option<TriggerId>,
    exhausted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: TriggerId,
    pub lane: usize,
    /// Index into the routing table.
    pub route: usize,
    /// Attempts made since this process took the trigger (0 = first).
    pub retries: u32,
    /// The upstream whose failure this retry follows: it is tried elsewhere first.
    pub avoid: Option<usize>,
    /// Released early by a breaker that closed: the slow start paces it, not the retry budget.
    pub released: bool,
}

/// A retry waiting for its time; ordered by (due, sequence).
#[derive(Debug, Clone)]
struct Delayed {
    at: Instant,
    seq: u64,
    job: Job,
}

impl PartialEq for Delayed {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Delayed {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

/// An attempt to start: the scheduler spawns it.
#[derive(Debug)]
pub struct Launch {
    pub job: Job,
    pub upstream: usize,
    pub ticket: Ticket,
}

/// What an attempt (or a recorder) reports back.
#[derive(Debug)]
pub enum Done {
    /// The upstream was asked. `finished`: the trigger leaves pending
    /// (delivered or dead). `unrecorded`: that new state could not be
    /// written yet; the trigger stays in the books until it is.
    Attempted { job: Job, upstream: usize, ticket: Ticket, result: AttemptResult, finished: bool, unrecorded: Option<Change> },
    /// Nothing was sent: the trigger is no longer pending (purged, replayed
    /// elsewhere), or it could not be read (`unreadable`: tried again later).
    Skipped { job: Job, upstream: usize, ticket: Ticket, unreadable: bool },
    /// A held outcome was finally written.
    Recorded { id: TriggerId },
}

pub struct Policy {
    pub upstreams: Vec<Upstream>,
    pub routes: Routes,
    lanes: Vec<Lane>,
    rr: usize,
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    paused: HashSet<String>,
    budget: RetryBudget,
    backoff: Backoff,
    rng: StdRng,
    in_flight: usize,
    /// Outcomes delivered/dead upstream whose write the store has not confirmed yet.
    recording: usize,
    /// Triggers in flight, waiting in `delayed` or being recorded: a lane
    /// re-read must not queue them a second time.
    scheduled: HashSet<TriggerId>,
    /// Deliveries per second of `started`-relative time, for the last minute.
    delivered_per_sec: VecDeque<(u64, u64)>,
    started: Instant,
}

impl Policy {
    pub fn new(config: &Config, paused: HashSet<String>, now: Instant) -> Result<Policy, ForwardError> {
        let f = &config.forward;
        let breaker_config = BreakerConfig {
            failure_threshold: f.failure_threshold,
            probe_interval: Duration::from_millis(f.probe_interval_ms),
            max_concurrency: f.max_in_flight as usize,
            ..BreakerConfig::default()
        };
        let routes = Routes::new(f);
        let mut upstreams = Vec::new();
        for url in &routes.urls {
            upstreams.push(Upstream {
                label: url.clone(),
                breaker: Breaker::new(breaker_config).map_err(|e| ForwardError::Config(e.to_string()))?,
                in_flight: 0,
                attempts: 0,
                delivered: 0,
                failures: 0,
                last_error: None,
                last_error_at: None,
                failing: false,
            });
        }
        let budget = RetryBudget::new(
            BudgetConfig { ratio: f.retry_budget_ratio, min_per_sec: f.retry_budget_min_per_sec, ..BudgetConfig::default() },
            now,
        )
        .map_err(|e| ForwardError::Config(e.to_string()))?;
        let backoff = Backoff::new(Duration::from_millis(f.backoff_base_ms), Duration::from_millis(f.backoff_cap_ms))
            .map_err(|e| ForwardError::Config(e.to_string()))?;
        Ok(Policy {
            upstreams,
            routes,
            lanes: config
                .tenants
                .iter()
                .map(|t| Lane { tenant: t.id.as_str().into(), buffer: VecDeque::new(), cursor: None, exhausted: false })
                .collect(),
            rr: 0,
            delayed: BinaryHeap::new(),
            seq: 0,
            paused,
            budget,
            backoff,
            rng: StdRng::from_os_rng(),
            in_flight: 0,
            recording: 0,
            scheduled: HashSet::new(),
            delivered_per_sec: VecDeque::new(),
            started: now,
        })
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    pub fn has_tenant(&self, tenant: &str) -> bool {
        self.lanes.iter().any(|l| *l.tenant == *tenant)
    }

    /// Gives `tenant` a lane if it has none (a tenant the fleet added, or one
    /// it removed that still has pending triggers: lanes are never removed,
    /// so what was accepted is forwarded). The new lane reads from the start.
    pub fn add_lane(&mut self, tenant: &str) -> usize {
        if let Some(i) = self.lanes.iter().position(|l| *l.tenant == *tenant) {
            return i;
        }
        self.lanes.push(Lane { tenant: tenant.into(), buffer: VecDeque::new(), cursor: None, exhausted: false });
        self.lanes.len() - 1
    }

    /// Lanes that may have more to read: (lane, tenant, read after this id).
    pub fn lanes_to_read(&self) -> Vec<(usize, Arc<str>, Option<TriggerId>)> {
        if self.upstreams.is_empty() {
            return Vec::new();
        }
        self.lanes
            .iter()
            .enumerate()
            .filter(|(_, l)| l.buffer.is_empty() && !l.exhausted && !self.paused.contains(&*l.tenant))
            .map(|(i, l)| (i, l.tenant.clone(), l.cursor))
            .collect()
    }

    /// A page of the lane's pending index: (id, route) in id order.
    pub fn refilled(&mut self, lane: usize, page: Vec<(TriggerId, Option<String>)>) {
        let l = &mut self.lanes[lane];
        l.exhausted = page.len() < LANE_PAGE;
        if let Some((last, _)) = page.last() {
            l.cursor = Some(*last);
        }
        for (id, route) in page {
            let route = self.routes.resolve(route.as_deref());
            // A trigger whose route has no upstream (no route matches and
            // `forward.upstreams` is empty) is held in the store: routes are
            // fixed until a restart, which reads it again.
            if !self.scheduled.contains(&id) && !self.routes.members[route].is_empty() {
                l.buffer.push_back(Job { id, lane, route, retries: 0, avoid: None, released: false });
            }
        }
    }

    /// The store announced that `lowest` (and maybe later ids) of `tenant`
    /// became pending: read on, and from before `lowest` if the cursor is past it.
    pub fn announced(&mut self, tenant: &str, lowest: TriggerId) {
        let lane = self.add_lane(tenant);
        let l = &mut self.lanes[lane];
        l.exhausted = false;
        let behind = l.cursor.is_some_and(|c| lowest <= c) || l.buffer.front().is_some_and(|j| lowest <= j.id);
        if behind {
            // Re-read from just before the lowest of what is buffered and
            // what was announced; the buffer is read again with it.
            let from = l.buffer.front().map_or(lowest, |j| j.id.min(lowest)).as_u128();
            l.buffer.clear();
            l.cursor = from.checked_sub(1).map(TriggerId::from_u128);
        }
    }

    pub fn set_paused(&mut self, tenant: &str, pause: bool) {
        if pause {
            self.paused.insert(tenant.to_string());
        } else {
            self.paused.remove(tenant);
            if let Some(l) = self.lanes.iter_mut().find(|l| *l.tenant == *tenant) {
                l.exhausted = false;
            }
        }
    }

    /// When the next retry is due, if any waits.
    pub fn next_due(&self) -> Option<Instant> {
        self.delayed.peek().map(|Reverse(d)| d.at)
    }

    /// Starts attempts while there is work and an upstream admits it.
    /// Returns them, and when to look again if an upstream holds traffic back.
    pub fn dispatch(&mut self, now: Instant) -> (Vec<Launch>, Option<Instant>) {
        let mut launches = Vec::new();
        let mut wake: Option<Instant> = None;
        // Once the budget refuses a retry, only first attempts go out this round.
        let mut retries_allowed = true;
        // Routes nobody admits this round, and retries set aside for them.
        let mut blocked: HashSet<usize> = HashSet::new();
        let mut deferred: Vec<Delayed> = Vec::new();
        while let Some((job, from_heap)) = self.next_job(now, retries_allowed, &blocked, &mut deferred) {
            let needs_budget = job.retries > 0 && !job.released;
            // Ask the budget before the breaker, so a refused retry never uses
            // up the one probe an open breaker allows per interval.
            if needs_budget && self.budget.available(now) == 0 {
                self.schedule(now + BUDGET_WAIT, job);
                wake = earliest(wake, Some(now + BUDGET_WAIT));
                retries_allowed = false;
                continue;
            }
            match self.admit(now, &job) {
                Ok((upstream, ticket)) => {
                    if needs_budget && !self.budget.try_withdraw_retry(now) {
                        self.upstreams[upstream].breaker.on_cancelled(ticket);
                        self.schedule(now + BUDGET_WAIT, job);
                        wake = earliest(wake, Some(now + BUDGET_WAIT));
                        retries_allowed = false;
                        continue;
                    }
                    if job.retries == 0 {
                        self.budget.record_first_attempt(now);
                    }
                    if from_heap.is_none() {
                        // The turn passes only when the lane's job really went out.
                        self.rr = (job.lane + 1) % self.lanes.len();
                    }
                    let up = &mut self.upstreams[upstream];
                    up.in_flight += 1;
                    up.attempts += 1;
                    self.in_flight += 1;
                    self.scheduled.insert(job.id);
                    launches.push(Launch { job, upstream, ticket });
                }
                Err(retry_at) => {
                    // Nobody on its route takes it now: put it back where it
                    // came from, and let other routes' work go on.
                    blocked.insert(job.route);
                    match from_heap {
                        Some((at, seq)) => deferred.push(Delayed { at, seq, job }),
                        None => self.lanes[job.lane].buffer.push_front(job),
                    }
                    wake = earliest(wake, retry_at);
                }
            }
        }
        for d in deferred {
            self.delayed.push(Reverse(d));
        }
        (launches, wake)
    }

    /// Which upstream of the job's route takes it now (see the module docs).
    /// A saturated upstream is waited for, not failed over (`Err(None)`).
    fn admit(&mut self, now: Instant, job: &Job) -> Result<(usize, Ticket), Option<Instant>> {
        let members = &self.routes.members[job.route];
        let mut retry_at: Option<Instant> = None;
        if let Some(avoid) = job.avoid {
            for &i in members {
                let up = &mut self.upstreams[i];
                if i == avoid || up.breaker.state() != BreakerState::Closed {
                    continue;
                }
                match up.breaker.try_acquire(now, up.in_flight) {
                    Admission::Allowed(t) | Admission::Probe(t) => return Ok((i, t)),
                    Admission::Saturated => return Err(None),
                    Admission::Denied { retry_at: at } => retry_at = earliest(retry_at, Some(at)),
                }
            }
        }
        for &i in members {
            let up = &mut self.upstreams[i];
            match up.breaker.try_acquire(now, up.in_flight) {
                Admission::Allowed(t) | Admission::Probe(t) => return Ok((i, t)),
                Admission::Saturated => return Err(None),
                Admission::Denied { retry_at: at } => retry_at = earliest(retry_at, Some(at)),
            }
        }
        Err(retry_at)
    }

    /// The next job: a due retry first, else the next lane's in turn. A
    /// retry comes with its (due, sequence), to be put back unchanged.
    #[allow(clippy::type_complexity)]
    fn next_job(
        &mut self,
        now: Instant,
        retries_allowed: bool,
        blocked: &HashSet<usize>,
        deferred: &mut Vec<Delayed>,
    ) -> Option<(Job, Option<(Instant, u64)>)> {
        if blocked.len() >= self.routes.members.len() {
            return None;
        }
        // Due retries of blocked routes are set aside to look past them, but
        // only so many per round: a large backlog must not be re-sorted on
        // every turn while its upstream is saturated.
        while retries_allowed && deferred.len() < LANE_PAGE && self.delayed.peek().is_some_and(|Reverse(d)| d.at <= now) {
            let Some(Reverse(d)) = self.delayed.pop() else { break };
            if self.paused.contains(&*self.lanes[d.job.lane].tenant) {
                self.scheduled.remove(&d.job.id);
                self.lanes[d.job.lane].buffer.push_back(d.job);
                continue;
            }
            if blocked.contains(&d.job.route) {
                deferred.push(d);
                continue;
            }
            return Some((d.job, Some((d.at, d.seq))));
        }
        let n = self.lanes.len();
        for k in 0..n {
            let i = (self.rr + k) % n;
            let lane = &mut self.lanes[i];
            if self.paused.contains(&*lane.tenant) {
                continue;
            }
            // The lane's oldest trigger on a route that may still send: a
            // route nobody admits now does not hold up the tenant's others
            // (within a route, id order is kept).
            if let Some(pos) = lane.buffer.iter().position(|j| !blocked.contains(&j.route))
                && let Some(job) = lane.buffer.remove(pos)
            {
                return Some((job, None));
            }
        }
        None
    }

    fn schedule(&mut self, at: Instant, job: Job) {
        self.scheduled.insert(job.id);
        self.seq += 1;
        self.delayed.push(Reverse(Delayed { at, seq: self.seq, job }));
    }

    /// Takes an attempt's report. Returns an outcome still to be written
    /// (the scheduler retries the write; the trigger stays in the books).
    pub fn complete(&mut self, done: Done, now: Instant) -> Option<(TriggerId, Change)> {
        match done {
            Done::Recorded { id } => {
                self.recording = self.recording.saturating_sub(1);
                self.scheduled.remove(&id);
                None
            }
            Done::Skipped { job, upstream, ticket, unreadable } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let up = &mut self.upstreams[upstream];
                up.in_flight = up.in_flight.saturating_sub(1);
                up.breaker.on_cancelled(ticket);
                if unreadable {
                    // Still pending in the store: keep it, try again soon.
                    self.schedule(now + UNREADABLE_WAIT, job);
                } else {
                    self.scheduled.remove(&job.id);
                }
                None
            }
            Done::Attempted { job, upstream, ticket, result, finished, unrecorded } => {
                self.in_flight = self.in_flight.saturating_sub(1);
                let held = unrecorded.map(|change| (job.id, change));
                if held.is_some() {
                    self.recording += 1;
                } else {
                    // A retry is re-inserted by `schedule` below.
                    self.scheduled.remove(&job.id);
                }
                self.upstreams[upstream].in_flight = self.upstreams[upstream].in_flight.saturating_sub(1);
                match result.class {
                    Class::Delivered => {
                        let up = &mut self.upstreams[upstream];
                        up.delivered += 1;
                        up.failing = false;
                        self.on_success(upstream, ticket, now);
                        self.count_delivery(now);
                    }
                    // The upstream is alive and answered: not its health's fault.
                    Class::Permanent => self.on_success(upstream, ticket, now),
                    Class::Retry => {
                        self.on_failure(upstream, ticket, &result, now);
                        if !finished {
                            let backoff = self.backoff.delay(job.retries, &mut self.rng);
                            let wait = result.retry_after.map_or(backoff, |ra| ra.max(backoff));
                            let next = Job { retries: job.retries + 1, avoid: Some(upstream), released: false, ..job };
                            self.schedule(now + wait, next);
                        }
                    }
                }
                held
            }
        }
    }

    fn on_success(&mut self, upstream: usize, ticket: Ticket, now: Instant) {
        let breaker = &mut self.upstreams[upstream].breaker;
        let was = breaker.state();
        breaker.on_success(now, ticket);
        if was != BreakerState::Closed && breaker.state() == BreakerState::Closed {
            self.release(upstream, now);
        }
    }

    fn on_failure(&mut self, upstream: usize, ticket: Ticket, result: &AttemptResult, now: Instant) {
        let up = &mut self.upstreams[upstream];
        up.failures += 1;
        let error = match result.status {
            Some(s) => format!("HTTP {s}: {}", result.detail),
            None => result.detail.clone(),
        };
        // Logged when the failure changes, not on every attempt: an outage
        // is one line per upstream, not a storm.
        if !up.failing || up.last_error.as_deref() != Some(error.as_str()) {
            tracing::warn!(upstream = %up.label, error = %error, "upstream attempt failed; will retry");
        }
        up.last_error = Some(error);
        up.last_error_at = Some(now);
        up.failing = true;
        up.breaker.on_failure(now, ticket);
        if let Some(ra) = result.retry_after {
            up.breaker.hold_until(now + ra);
        }
    }

    /// A breaker closed: the retries that failed on that upstream are due now
    /// instead of waiting out their backoff (they keep their order, and the
    /// breaker's slow start paces them).
    fn release(&mut self, upstream: usize, now: Instant) {
        let mut released = 0;
        let delayed = std::mem::take(&mut self.delayed);
        self.delayed = delayed
            .into_iter()
            .map(|Reverse(mut d)| {
                if d.job.avoid == Some(upstream) && d.at > now {
                    d.at = now;
                    d.job.avoid = None;
                    d.job.released = true;
                    released += 1;
                }
                Reverse(d)
            })
            .collect();
        tracing::info!(upstream = %self.upstreams[upstream].label, released, "upstream recovered; its waiting retries are released");
    }

    fn count_delivery(&mut self, now: Instant) {
        let sec = now.saturating_duration_since(self.started).as_secs();
        match self.delivered_per_sec.back_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => self.delivered_per_sec.push_back((sec, 1)),
        }
        while self.delivered_per_sec.front().is_some_and(|(s, _)| *s + 60 < sec) {
            self.delivered_per_sec.pop_front();
        }
    }

    pub fn status(&self, now: Instant) -> ForwardStatus {
        let sec = now.saturating_duration_since(self.started).as_secs();
        let delivered: u64 = self.delivered_per_sec.iter().filter(|(s, _)| *s + 60 >= sec).map(|(_, n)| n).sum();
        let mut paused: Vec<String> = self.paused.iter().cloned().collect();
        paused.sort();
        ForwardStatus {
            upstreams: self
                .upstreams
                .iter()
                .map(|u| UpstreamStatus {
                    url: u.label.clone(),
                    state: u.breaker.health(now).as_str(),
                    in_flight: u.in_flight,
                    attempts: u.attempts,
                    delivered: u.delivered,
                    failures: u.failures,
                    last_error: u.last_error.clone(),
                    last_error_age_ms: u.last_error_at.map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    out_for_ms: u.breaker.out_since().map(|t| now.saturating_duration_since(t).as_millis() as u64),
                    held_for_ms: u.breaker.held_until(now).map(|t| t.saturating_duration_since(now).as_millis() as u64),
                })
                .collect(),
            routes: self.routes.status(),
            paused_tenants: paused,
            in_flight: self.in_flight,
            retries_waiting: self.delayed.len(),
            outcomes_unrecorded: self.recording,
            delivered_last_minute: delivered,
            delivery_rate_per_sec: delivered as f64 / 60.0,
        }
    }
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
mod tests;
