//! The forwarder: one task that owns all delivery scheduling state (lanes,
//! retries, breakers, the retry budget) and spawns one task per attempt.
//!
//! Sources of work, in order: retries whose backoff is over, then one
//! trigger per tenant in turn (round-robin lanes), so one tenant's backlog
//! never starves another's fresh triggers. Each lane reads its tenant's
//! pending index in id order through a cursor; ingest marks a lane dirty
//! after a commit so the lane reads again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http::Uri;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde::Serialize;
use tokio::sync::{Notify, mpsc, oneshot};

use super::backoff::Backoff;
use super::breaker::{Admission, Breaker, BreakerConfig, Ticket};
use super::budget::{BudgetConfig, RetryBudget};
use super::deliver::{self, AttemptResult, Class, HttpClient};
use crate::config::Config;
use crate::id::TriggerId;
use crate::shutdown::Shutdown;
use crate::store::{Attempt, Change, Outcome, PluginRepo, State, Store};

/// Triggers read from a lane's index at a time.
const LANE_PAGE: usize = 64;
/// A retry refused by the budget waits this long before asking again.
const BUDGET_WAIT: Duration = Duration::from_millis(250);

/// A retry waiting in the heap: (due, sequence, upstream, trigger, retries so far).
type Delayed = (Instant, u64, usize, TriggerId, u32);

#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    #[error("invalid forwarding settings: {0}")]
    Config(String),
    #[error("the forwarder has stopped")]
    Stopped,
    #[error("unknown tenant {0:?}")]
    UnknownTenant(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// What `/v1/status` shows of forwarding.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ForwardStatus {
    pub upstreams: Vec<UpstreamStatus>,
    pub paused_tenants: Vec<String>,
    pub in_flight: usize,
    pub retries_waiting: usize,
    pub delivered_last_minute: u64,
    pub delivery_rate_per_sec: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct UpstreamStatus {
    pub url: String,
    /// `healthy`, `degraded` or `open`.
    pub state: &'static str,
    pub in_flight: usize,
    pub attempts: u64,
    pub delivered: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    pub held_for_ms: Option<u64>,
}

enum Control {
    Pause(String, oneshot::Sender<Result<(), ForwardError>>),
    Resume(String, oneshot::Sender<Result<(), ForwardError>>),
    /// Read the tenant's pending index from the start again (after a replay
    /// moved older triggers back to pending).
    Rescan(String, oneshot::Sender<Result<(), ForwardError>>),
}

/// The handle the rest of the gateway holds.
#[derive(Clone)]
pub struct Forwarder {
    shared: Arc<Shared>,
}

struct Shared {
    dirty: HashMap<String, AtomicBool>,
    wake: Notify,
    control: mpsc::Sender<Control>,
    status: RwLock<ForwardStatus>,
}

impl Forwarder {
    /// Starts the forwarding task; it runs until `shutdown`, then waits for
    /// in-flight attempts (bounded by the attempt timeout) and returns.
    pub async fn start(
        config: &Config,
        store: Store,
        repo: Arc<PluginRepo>,
        metrics: Arc<crate::telemetry::Metrics>,
        tracer: crate::telemetry::Tracer,
        shutdown: Shutdown,
    ) -> Result<(Forwarder, tokio::task::JoinHandle<()>), ForwardError> {
        let (control, control_rx) = mpsc::channel(16);
        let shared = Arc::new(Shared {
            dirty: config.tenants.iter().map(|t| (t.id.clone(), AtomicBool::new(true))).collect(),
            wake: Notify::new(),
            control,
            status: RwLock::new(ForwardStatus::default()),
        });
        let r = repo.clone();
        let paused: HashSet<String> = tokio::task::spawn_blocking(move || r.paused_tenants())
            .await
            .map_err(|e| ForwardError::Config(e.to_string()))??
            .into_iter()
            .collect();
        let scheduler = Scheduler::new(config, store, repo, metrics, tracer, shared.clone(), paused)?;
        let task = tokio::spawn(scheduler.run(control_rx, shutdown));
        Ok((Forwarder { shared }, task))
    }

    /// Called by ingest after a pending trigger of `tenant` was committed.
    pub fn notify(&self, tenant: &str) {
        if let Some(flag) = self.shared.dirty.get(tenant) {
            flag.store(true, Ordering::Release);
            self.shared.wake.notify_one();
        }
    }

    pub fn status(&self) -> ForwardStatus {
        self.shared.status.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Holds a tenant's triggers (they are still accepted and stored). Durable.
    pub async fn pause(&self, tenant: &str) -> Result<(), ForwardError> {
        self.control(|tx| Control::Pause(tenant.to_string(), tx)).await
    }

    /// Releases a paused tenant's triggers at the normal pace. Durable.
    pub async fn resume(&self, tenant: &str) -> Result<(), ForwardError> {
        self.control(|tx| Control::Resume(tenant.to_string(), tx)).await
    }

    /// Makes the forwarder read the tenant's pending triggers from the start
    /// again: replay puts triggers back to pending behind the lane's cursor.
    pub async fn rescan(&self, tenant: &str) -> Result<(), ForwardError> {
        self.control(|tx| Control::Rescan(tenant.to_string(), tx)).await
    }

    async fn control(&self, make: impl FnOnce(oneshot::Sender<Result<(), ForwardError>>) -> Control) -> Result<(), ForwardError> {
        let (tx, rx) = oneshot::channel();
        self.shared.control.send(make(tx)).await.map_err(|_| ForwardError::Stopped)?;
        rx.await.map_err(|_| ForwardError::Stopped)?
    }
}

struct Upstream {
    url: Uri,
    label: String,
    breaker: Breaker,
    in_flight: usize,
    attempts: u64,
    delivered: u64,
    failures: u64,
    last_error: Option<String>,
    /// The last attempt failed (a failure after a success is logged again).
    failing: bool,
}

/// One tenant's queue of pending triggers.
struct Lane {
    tenant: Arc<str>,
    buffer: VecDeque<Job>,
    cursor: Option<TriggerId>,
    exhausted: bool,
}

#[derive(Debug, Clone)]
struct Job {
    id: TriggerId,
    lane: usize,
    /// Attempts made since this process took the trigger (0 = first).
    retries: u32,
}

enum Done {
    Attempted {
        job: Job,
        upstream: usize,
        ticket: Ticket,
        result: AttemptResult,
        finished: bool,
    },
    /// The trigger is no longer pending (purged, replayed elsewhere): nothing was sent.
    Skipped {
        job: Job,
        upstream: usize,
        ticket: Ticket,
    },
}

struct Scheduler {
    store: Store,
    metrics: Arc<crate::telemetry::Metrics>,
    tracer: crate::telemetry::Tracer,
    repo: Arc<PluginRepo>,
    shared: Arc<Shared>,
    client: HttpClient,
    timeout: Duration,
    max_attempts: u32,
    max_age_ms: u64,
    upstreams: Vec<Upstream>,
    lanes: Vec<Lane>,
    rr: usize,
    delayed: BinaryHeap<Reverse<Delayed>>,
    seq: u64,
    paused: HashSet<String>,
    budget: RetryBudget,
    backoff: Backoff,
    rng: StdRng,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    in_flight: usize,
    /// Triggers in flight or waiting in `delayed`: a lane re-read must not
    /// queue them a second time.
    scheduled: HashSet<TriggerId>,
    delivered_per_sec: VecDeque<(u64, u64)>,
}

impl Scheduler {
    fn new(
        config: &Config,
        store: Store,
        repo: Arc<PluginRepo>,
        metrics: Arc<crate::telemetry::Metrics>,
        tracer: crate::telemetry::Tracer,
        shared: Arc<Shared>,
        paused: HashSet<String>,
    ) -> Result<Self, ForwardError> {
        let f = &config.forward;
        let breaker_config = BreakerConfig {
            failure_threshold: f.failure_threshold,
            probe_interval: Duration::from_millis(f.probe_interval_ms),
            max_concurrency: f.max_in_flight as usize,
            ..BreakerConfig::default()
        };
        let mut upstreams = Vec::new();
        for url in &f.upstreams {
            let uri: Uri = url.parse().map_err(|e| ForwardError::Config(format!("{url}: {e}")))?;
            upstreams.push(Upstream {
                url: uri,
                label: url.clone(),
                breaker: Breaker::new(breaker_config).map_err(|e| ForwardError::Config(e.to_string()))?,
                in_flight: 0,
                attempts: 0,
                delivered: 0,
                failures: 0,
                last_error: None,
                failing: false,
            });
        }
        let now = Instant::now();
        let budget = RetryBudget::new(
            BudgetConfig { ratio: f.retry_budget_ratio, min_per_sec: f.retry_budget_min_per_sec, ..BudgetConfig::default() },
            now,
        )
        .map_err(|e| ForwardError::Config(e.to_string()))?;
        let backoff = Backoff::new(Duration::from_millis(f.backoff_base_ms), Duration::from_millis(f.backoff_cap_ms))
            .map_err(|e| ForwardError::Config(e.to_string()))?;
        let timeout = Duration::from_millis(f.timeout_ms);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        Ok(Scheduler {
            store,
            metrics,
            tracer,
            repo,
            shared,
            client: deliver::client(
                crate::tls::upstream::client_config(f).map_err(|e| ForwardError::Config(e.to_string()))?,
                timeout,
                f.max_in_flight as usize,
            ),
            timeout,
            max_attempts: f.max_attempts,
            max_age_ms: f.max_age_secs.saturating_mul(1000),
            upstreams,
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
            done_tx,
            done_rx,
            in_flight: 0,
            scheduled: HashSet::new(),
            delivered_per_sec: VecDeque::new(),
        })
    }

    async fn run(mut self, mut control: mpsc::Receiver<Control>, mut shutdown: Shutdown) {
        let shared = self.shared.clone();
        loop {
            while let Ok(done) = self.done_rx.try_recv() {
                self.complete(done);
            }
            let now = Instant::now();
            if !self.upstreams.is_empty() {
                self.refill().await;
            }
            let blocked_until = self.dispatch(now);
            self.publish(now);
            let mut wake = now + Duration::from_secs(1);
            if let Some(t) = blocked_until {
                wake = wake.min(t);
            }
            if let Some(Reverse((t, ..))) = self.delayed.peek() {
                wake = wake.min(*t);
            }
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                Some(done) = self.done_rx.recv() => self.complete(done),
                Some(c) = control.recv() => self.control(c).await,
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.drain().await;
    }

    /// At shutdown: let attempts in flight finish (and record) within their timeout.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_secs(1);
        while self.in_flight > 0 {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(done)) => self.complete(done),
                _ => {
                    tracing::warn!(in_flight = self.in_flight, "forwarder stopped with attempts in flight; those triggers stay pending");
                    break;
                }
            }
        }
    }

    /// Reads more of each lane's index where it may have more.
    async fn refill(&mut self) {
        for (index, lane) in self.lanes.iter_mut().enumerate() {
            if !lane.buffer.is_empty() || self.paused.contains(&*lane.tenant) {
                continue;
            }
            let dirty = self.shared.dirty.get(&*lane.tenant).map(|f| f.swap(false, Ordering::AcqRel)).unwrap_or(false);
            if lane.exhausted && !dirty {
                continue;
            }
            match self.store.pending_of_tenant(&lane.tenant, lane.cursor, LANE_PAGE).await {
                Ok(ids) => {
                    lane.exhausted = ids.len() < LANE_PAGE;
                    if let Some(last) = ids.last() {
                        lane.cursor = Some(*last);
                    }
                    let scheduled = &self.scheduled;
                    lane.buffer.extend(ids.into_iter().filter(|id| !scheduled.contains(id)).map(|id| Job { id, lane: index, retries: 0 }));
                }
                Err(e) => {
                    tracing::warn!(tenant = %lane.tenant, error = %e, "cannot read pending triggers; will retry");
                    if let Some(f) = self.shared.dirty.get(&*lane.tenant) {
                        f.store(true, Ordering::Release);
                    }
                }
            }
        }
    }

    /// Starts attempts while there is work and an upstream admits it.
    /// Returns when to look again if an upstream is holding traffic back.
    fn dispatch(&mut self, now: Instant) -> Option<Instant> {
        let mut wake = None;
        // Once the budget refuses a retry, only first attempts go out this round.
        let mut retries_allowed = true;
        while let Some((job, from_lane)) = self.next_job(now, retries_allowed) {
            // Ask the budget before the breaker, so a refused retry never uses
            // up the one probe an open breaker allows per interval.
            if job.retries > 0 && self.budget.available(now) == 0 {
                self.schedule(now + BUDGET_WAIT, job);
                wake = Some(now + BUDGET_WAIT);
                retries_allowed = false;
                continue;
            }
            match self.admit(now) {
                Ok((upstream, ticket)) => {
                    if job.retries > 0 && !self.budget.try_withdraw_retry(now) {
                        self.upstreams[upstream].breaker.on_cancelled(ticket);
                        self.schedule(now + BUDGET_WAIT, job);
                        wake = Some(now + BUDGET_WAIT);
                        retries_allowed = false;
                        continue;
                    }
                    if job.retries == 0 {
                        self.budget.record_first_attempt(now);
                    }
                    if from_lane {
                        // The turn passes only when the lane's job really went out.
                        self.rr = (job.lane + 1) % self.lanes.len();
                    }
                    self.spawn(job, upstream, ticket);
                }
                Err(retry_at) => {
                    // Nobody takes it now: put it back where it came from.
                    if job.retries > 0 {
                        self.schedule(now, job);
                    } else {
                        self.lanes[job.lane].buffer.push_front(job);
                    }
                    wake = match (wake, retry_at) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    break;
                }
            }
        }
        wake
    }

    /// The first upstream, in configured order, whose breaker admits a
    /// request. A saturated primary is waited for, not failed over.
    fn admit(&mut self, now: Instant) -> Result<(usize, Ticket), Option<Instant>> {
        let mut retry_at: Option<Instant> = None;
        for (i, up) in self.upstreams.iter_mut().enumerate() {
            match up.breaker.try_acquire(now, up.in_flight) {
                Admission::Allowed(t) | Admission::Probe(t) => return Ok((i, t)),
                Admission::Saturated => return Err(None),
                Admission::Denied { retry_at: at } => retry_at = Some(retry_at.map_or(at, |r| r.min(at))),
            }
        }
        Err(retry_at)
    }

    /// The next job and whether it came from a lane (round-robin turn) or
    /// the retry heap.
    fn next_job(&mut self, now: Instant, retries_allowed: bool) -> Option<(Job, bool)> {
        while let Some(Reverse((at, _, lane, id, retries))) = self.delayed.peek().cloned() {
            if at > now || !retries_allowed {
                break;
            }
            self.delayed.pop();
            let job = Job { id, lane, retries };
            if self.paused.contains(&*self.lanes[lane].tenant) {
                self.scheduled.remove(&job.id);
                self.lanes[lane].buffer.push_back(job);
                continue;
            }
            return Some((job, false));
        }
        let n = self.lanes.len();
        for k in 0..n {
            let i = (self.rr + k) % n;
            if self.paused.contains(&*self.lanes[i].tenant) {
                continue;
            }
            if let Some(job) = self.lanes[i].buffer.pop_front() {
                return Some((job, true));
            }
        }
        None
    }

    fn schedule(&mut self, at: Instant, job: Job) {
        self.scheduled.insert(job.id);
        self.seq += 1;
        self.delayed.push(Reverse((at, self.seq, job.lane, job.id, job.retries)));
    }

    fn spawn(&mut self, job: Job, upstream: usize, ticket: Ticket) {
        let up = &mut self.upstreams[upstream];
        up.in_flight += 1;
        up.attempts += 1;
        self.in_flight += 1;
        self.scheduled.insert(job.id);
        let ctx = AttemptCtx {
            store: self.store.clone(),
            tracer: self.tracer.clone(),
            client: self.client.clone(),
            url: up.url.clone(),
            upstream,
            timeout: self.timeout,
            max_attempts: self.max_attempts,
            max_age_ms: self.max_age_ms,
        };
        let done_tx = self.done_tx.clone();
        tokio::spawn(async move {
            let done = ctx.run(job, ticket).await;
            // The scheduler outlives every attempt task it waits for; if it is
            // gone the process is exiting and the trigger stays pending.
            let _ = done_tx.send(done);
        });
    }

    fn complete(&mut self, done: Done) {
        let now = Instant::now();
        self.in_flight = self.in_flight.saturating_sub(1);
        match done {
            Done::Skipped { job, upstream, ticket } => {
                self.scheduled.remove(&job.id);
                let up = &mut self.upstreams[upstream];
                up.in_flight = up.in_flight.saturating_sub(1);
                up.breaker.on_cancelled(ticket);
            }
            Done::Attempted { job, upstream, ticket, result, finished } => {
                // A retry is re-inserted by `schedule` below.
                self.scheduled.remove(&job.id);
                let up = &mut self.upstreams[upstream];
                up.in_flight = up.in_flight.saturating_sub(1);
                let outcome = match (&result.class, finished) {
                    (Class::Delivered, _) => "delivered",
                    (_, true) => "dead",
                    _ => "retry",
                };
                self.metrics.forward_attempt(&up.label, outcome);
                match outcome {
                    "delivered" => self.metrics.delivered.fetch_add(1, Ordering::Relaxed),
                    "dead" => self.metrics.dead.fetch_add(1, Ordering::Relaxed),
                    _ => 0,
                };
                match result.class {
                    Class::Delivered => {
                        up.delivered += 1;
                        up.failing = false;
                        up.breaker.on_success(now, ticket);
                        self.count_delivery();
                    }
                    // The upstream is alive and answered: not its health's fault.
                    Class::Permanent => up.breaker.on_success(now, ticket),
                    Class::Retry => {
                        up.failures += 1;
                        let error = match result.status {
                            Some(s) => format!("HTTP {s}: {}", result.detail),
                            None => result.detail.clone(),
                        };
                        // Logged when the failure changes, not on every attempt:
                        // an outage is one line per upstream, not a storm.
                        if !up.failing || up.last_error.as_deref() != Some(error.as_str()) {
                            tracing::warn!(upstream = %up.label, error = %error, "upstream attempt failed; will retry");
                        }
                        up.last_error = Some(error);
                        up.failing = true;
                        up.breaker.on_failure(now, ticket);
                        if let Some(ra) = result.retry_after {
                            up.breaker.hold_until(now + ra);
                        }
                        if !finished {
                            let backoff = self.backoff.delay(job.retries, &mut self.rng);
                            let wait = result.retry_after.map_or(backoff, |ra| ra.max(backoff));
                            self.schedule(now + wait, Job { retries: job.retries + 1, ..job });
                        }
                    }
                }
            }
        }
    }

    fn count_delivery(&mut self) {
        let sec = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        match self.delivered_per_sec.back_mut() {
            Some((s, n)) if *s == sec => *n += 1,
            _ => self.delivered_per_sec.push_back((sec, 1)),
        }
        while self.delivered_per_sec.front().is_some_and(|(s, _)| *s + 60 < sec) {
            self.delivered_per_sec.pop_front();
        }
    }

    async fn control(&mut self, c: Control) {
        let (tenant, pause, reply) = match c {
            Control::Pause(t, r) => (t, true, r),
            Control::Resume(t, r) => (t, false, r),
            Control::Rescan(t, r) => {
                let result = match self.lanes.iter_mut().find(|l| *l.tenant == *t) {
                    Some(lane) => {
                        lane.buffer.clear();
                        lane.cursor = None;
                        lane.exhausted = false;
                        Ok(())
                    }
                    None => Err(ForwardError::UnknownTenant(t)),
                };
                let _ = r.send(result);
                return;
            }
        };
        if !self.lanes.iter().any(|l| *l.tenant == *tenant) {
            let _ = reply.send(Err(ForwardError::UnknownTenant(tenant)));
            return;
        }
        let repo = self.repo.clone();
        let t = tenant.clone();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let saved = tokio::task::spawn_blocking(move || repo.set_paused(&t, pause, now_ms)).await;
        let result = match saved {
            Ok(Ok(())) => {
                if pause {
                    self.paused.insert(tenant.clone());
                } else {
                    self.paused.remove(&tenant);
                    if let Some(f) = self.shared.dirty.get(&tenant) {
                        f.store(true, Ordering::Release);
                    }
                }
                tracing::info!(tenant = %tenant, paused = pause, "tenant forwarding {}", if pause { "paused" } else { "resumed" });
                Ok(())
            }
            Ok(Err(e)) => Err(ForwardError::Store(e)),
            Err(e) => Err(ForwardError::Config(e.to_string())),
        };
        let _ = reply.send(result);
    }

    fn publish(&self, now: Instant) {
        let delivered: u64 = self.delivered_per_sec.iter().map(|(_, n)| n).sum();
        let mut paused: Vec<String> = self.paused.iter().cloned().collect();
        paused.sort();
        let status = ForwardStatus {
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
                    held_for_ms: u.breaker.held_until(now).map(|t| t.saturating_duration_since(now).as_millis() as u64),
                })
                .collect(),
            paused_tenants: paused,
            in_flight: self.in_flight,
            retries_waiting: self.delayed.len(),
            delivered_last_minute: delivered,
            delivery_rate_per_sec: delivered as f64 / 60.0,
        };
        *self.shared.status.write().unwrap_or_else(|e| e.into_inner()) = status;
    }
}

/// Everything one attempt task needs.
struct AttemptCtx {
    store: Store,
    tracer: crate::telemetry::Tracer,
    client: HttpClient,
    url: Uri,
    upstream: usize,
    timeout: Duration,
    max_attempts: u32,
    max_age_ms: u64,
}

impl AttemptCtx {
    async fn run(self, job: Job, ticket: Ticket) -> Done {
        let skipped = Done::Skipped { job: job.clone(), upstream: self.upstream, ticket };
        let trigger = match self.store.get(job.id).await {
            Ok(Some(t)) if t.meta.state == State::Pending => t,
            Ok(_) => return skipped,
            Err(e) => {
                tracing::warn!(trigger_id = %job.id, error = %e, "cannot read trigger to forward; it stays pending");
                return skipped;
            }
        };
        let tenant = trigger.meta.tenant.clone();
        // Each attempt is a span of the trigger's trace (stored at ingest);
        // the upstream gets a traceparent naming this attempt.
        let parent = trigger
            .meta
            .headers
            .iter()
            .rev()
            .find(|(n, _)| n == "traceparent")
            .and_then(|(_, v)| crate::telemetry::SpanContext::from_traceparent(v));
        let mut span = self.tracer.span("forward", crate::telemetry::Kind::Client, parent.as_ref());
        let result = match deliver::request(&self.url, &trigger) {
            Ok(mut req) => {
                if let Some(s) = &span
                    && let Ok(v) = http::HeaderValue::from_str(&s.ctx.traceparent())
                {
                    req.headers_mut().insert("traceparent", v);
                }
                deliver::attempt(&self.client, req, self.timeout).await
            }
            Err(e) => AttemptResult {
                class: Class::Permanent,
                status: None,
                retry_after: None,
                elapsed: Duration::ZERO,
                detail: format!("cannot build request: {e}"),
            },
        };
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let attempts = trigger.meta.attempts.len() as u32 + 1;
        let age_ms = now_ms.saturating_sub(trigger.meta.received_at_ms);
        let (state, outcome, note) = match result.class {
            Class::Delivered => (State::Delivered, Outcome::Delivered, None),
            Class::Permanent => (
                State::Dead,
                Outcome::Dead,
                Some(format!(
                    "upstream refused it for good ({}): {}",
                    result.status.map_or("no status".into(), |s| format!("HTTP {s}")),
                    result.detail
                )),
            ),
            Class::Retry if attempts >= self.max_attempts => {
                (State::Dead, Outcome::Dead, Some(format!("gave up after {attempts} attempts; last: {}", last(&result))))
            }
            Class::Retry if age_ms >= self.max_age_ms => (
                State::Dead,
                Outcome::Dead,
                Some(format!("gave up: older than forward.max_age_secs after {attempts} attempts; last: {}", last(&result))),
            ),
            Class::Retry => (State::Pending, Outcome::Retry, None),
        };
        let attempt = Attempt {
            at_ms: now_ms,
            duration_ms: result.elapsed.as_millis().min(u32::MAX as u128) as u32,
            upstream: self.upstream as u16,
            outcome,
            status: result.status,
            detail: crate::plugin::truncate_note(&result.detail),
        };
        if let Err(e) = self.store.update(job.id, Change::SetState { state, attempt: Some(attempt), note }).await {
            // Delivered but not marked: it will be sent again with the same
            // idempotency key (at-least-once), never lost.
            tracing::warn!(trigger_id = %job.id, tenant = %tenant, error = %e, "cannot record the attempt; the trigger stays pending");
        }
        if let Some(s) = span.as_mut() {
            s.attr("url.full", self.url.to_string());
            s.attr("weir.trigger_id", job.id.to_string());
            s.attr("weir.tenant", tenant.clone());
            s.attr("weir.attempt", u64::from(attempts));
            s.attr("weir.outcome", outcome.as_str());
            if let Some(status) = result.status {
                s.attr("http.response.status_code", u64::from(status));
            }
            if result.class != Class::Delivered {
                s.error(result.detail.clone());
            }
        }
        self.tracer.end(span);
        match state {
            State::Dead => {
                tracing::warn!(trigger_id = %job.id, tenant = %tenant, status = ?result.status, "trigger is dead: {}", result.detail)
            }
            State::Delivered => tracing::debug!(trigger_id = %job.id, tenant = %tenant, "trigger delivered"),
            _ => tracing::debug!(trigger_id = %job.id, tenant = %tenant, status = ?result.status, "attempt failed; will retry"),
        }
        Done::Attempted { job, upstream: self.upstream, ticket, result, finished: state != State::Pending }
    }
}

fn last(r: &AttemptResult) -> String {
    match r.status {
        Some(s) => format!("HTTP {s} {}", r.detail),
        None => r.detail.clone(),
    }
}
