//! The forwarder task: the one owner of scheduling state (a [`Policy`]).
//!
//! It learns of work only from the store: it subscribes to the store's
//! commit announcements and reads each tenant's pending index. It reads the
//! clock once per turn and hands `now` to the policy, spawns the attempts the
//! policy launches, and feeds their reports back. Nothing else holds its
//! state; the rest of the gateway talks to it through [`Forwarder`].

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::attempt::{self, AttemptCtx, Class};
use super::deliver;
use super::policy::{Done, LANE_PAGE, Launch, Policy};
use super::routes::RouteStatus;
use super::target::Target;
use crate::config::Config;
use crate::fleet::Fleet;
use crate::id::TriggerId;
use crate::shutdown::Shutdown;
use crate::store::{Change, ControlFile, Store, Subscription};
use crate::tenants::Tenants;

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
    /// The default route (`name: null`, `forward.upstreams`) and each `[[forward.routes]]`.
    pub routes: Vec<RouteStatus>,
    pub paused_tenants: Vec<String>,
    pub in_flight: usize,
    pub retries_waiting: usize,
    /// Triggers delivered (or dead) upstream whose new state the store has not confirmed yet.
    pub outcomes_unrecorded: usize,
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
    /// How long ago `last_error` happened.
    pub last_error_age_ms: Option<u64>,
    /// How long the upstream has been out: since its breaker left closed (open, then probing); `null` while closed.
    pub out_for_ms: Option<u64>,
    pub held_for_ms: Option<u64>,
}

enum Control {
    Pause(String, oneshot::Sender<Result<(), ForwardError>>),
    Resume(String, oneshot::Sender<Result<(), ForwardError>>),
}

/// The handle the rest of the gateway holds (admin: status, pause, resume).
#[derive(Clone)]
pub struct Forwarder {
    control: mpsc::Sender<Control>,
    status: Arc<RwLock<ForwardStatus>>,
}

impl Forwarder {
    /// Starts the forwarding task; it runs until `shutdown`, then waits for
    /// in-flight attempts (bounded by the attempt timeout) and returns.
    /// `fleet`: the connection `jetstream:` upstreams publish on.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        config: &Config,
        store: Store,
        repo: Arc<ControlFile>,
        tenants: Arc<Tenants>,
        metrics: Arc<crate::telemetry::Metrics>,
        tracer: crate::telemetry::Tracer,
        shutdown: Shutdown,
        fleet: Option<Fleet>,
    ) -> Result<(Forwarder, tokio::task::JoinHandle<()>), ForwardError> {
        let (control, control_rx) = mpsc::channel(16);
        let status = Arc::new(RwLock::new(ForwardStatus::default()));
        // Subscribe before the first read, so no commit falls in between.
        let changes = store.subscribe();
        let r = repo.clone();
        let paused: HashSet<String> = tokio::task::spawn_blocking(move || r.paused_tenants())
            .await
            .map_err(|e| ForwardError::Config(e.to_string()))??
            .into_iter()
            .collect();
        let mut policy = Policy::new(config, paused, clock())?;
        // A lane for every tenant served now, and for every tenant with
        // pending triggers (one the fleet removed still gets what it is owed).
        for tenant in tenants.ids().into_iter().chain(store.pending_by_tenant().into_keys()) {
            policy.add_lane(&tenant);
        }
        let f = &config.forward;
        let timeout = Duration::from_millis(f.timeout_ms);
        let client = deliver::client(
            crate::tls::upstream::client_config(f).map_err(|e| ForwardError::Config(e.to_string()))?,
            timeout,
            f.max_in_flight as usize,
        );
        // One target per upstream, indexed as the policy's upstreams are.
        let targets = policy
            .routes
            .urls
            .iter()
            .map(|url| {
                let deny: Arc<[String]> = f.deny_headers.get(url).cloned().unwrap_or_default().into();
                Target::new(url, deny, &client, fleet.as_ref(), timeout).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let scheduler = Scheduler {
            policy,
            store,
            repo,
            tenants,
            metrics,
            tracer,
            targets,
            timeout,
            max_attempts: f.max_attempts,
            max_age_ms: f.max_age_secs.saturating_mul(1000),
            status: status.clone(),
            done_tx,
            done_rx,
            shutdown: shutdown.clone(),
        };
        let task = spawn_in_background(scheduler.run(changes, control_rx, shutdown))?;
        Ok((Forwarder { control, status }, task))
    }

    pub fn status(&self) -> ForwardStatus {
        self.status.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Holds a tenant's triggers (they are still accepted and stored). Durable.
    pub async fn pause(&self, tenant: &str) -> Result<(), ForwardError> {
        self.control(|tx| Control::Pause(tenant.to_string(), tx)).await
    }

    /// Releases a paused tenant's triggers at the normal pace. Durable.
    pub async fn resume(&self, tenant: &str) -> Result<(), ForwardError> {
        self.control(|tx| Control::Resume(tenant.to_string(), tx)).await
    }

    async fn control(&self, make: impl FnOnce(oneshot::Sender<Result<(), ForwardError>>) -> Control) -> Result<(), ForwardError> {
        let (tx, rx) = oneshot::channel();
        self.control.send(make(tx)).await.map_err(|_| ForwardError::Stopped)?;
        rx.await.map_err(|_| ForwardError::Stopped)?
    }
}

/// Runs the scheduler, and every attempt it spawns, on a thread of its own at
/// background priority (`crate::priority`): during a drain, deliveries take
/// the CPU that ingest leaves over instead of queueing ingest's requests
/// behind them on the same workers (BENCHMARKS.md, "drain"). The returned
/// handle ends when the scheduler has returned. On a current-thread runtime
/// (tests that pause tokio's clock) it stays a task of that runtime.
fn spawn_in_background(run: impl Future<Output = ()> + Send + 'static) -> Result<tokio::task::JoinHandle<()>, ForwardError> {
    if tokio::runtime::Handle::current().runtime_flavor() == tokio::runtime::RuntimeFlavor::CurrentThread {
        return Ok(tokio::spawn(run));
    }
    let runtime = crate::priority::BackgroundRuntime::start("weir-forward", 1)
        .map_err(|e| ForwardError::Config(format!("cannot start the forwarding thread: {e}")))?;
    let Some(handle) = runtime.handle() else { return Ok(tokio::spawn(run)) };
    let scheduler = handle.spawn(run);
    Ok(tokio::spawn(async move {
        let _ = scheduler.await;
        // Attempts still running were waited for by the scheduler; anything
        // else on that runtime ends with it.
        drop(runtime);
    }))
}

/// The scheduler's one clock read per turn (tokio's, so a paused test clock applies).
fn clock() -> Instant {
    tokio::time::Instant::now().into_std()
}

struct Scheduler {
    policy: Policy,
    store: Store,
    repo: Arc<ControlFile>,
    tenants: Arc<Tenants>,
    metrics: Arc<crate::telemetry::Metrics>,
    tracer: crate::telemetry::Tracer,
    /// Per upstream (the policy's index), where its attempts go.
    targets: Vec<Arc<Target>>,
    timeout: Duration,
    max_attempts: u32,
    max_age_ms: u64,
    status: Arc<RwLock<ForwardStatus>>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    shutdown: Shutdown,
}

impl Scheduler {
    async fn run(mut self, changes: Subscription, mut control: mpsc::Receiver<Control>, mut shutdown: Shutdown) {
        loop {
            while let Ok(done) = self.done_rx.try_recv() {
                self.complete(done);
            }
            for (tenant, lowest) in changes.take() {
                self.policy.announced(&tenant, lowest);
            }
            self.refill().await;
            let now = clock();
            let (launches, blocked_until) = self.policy.dispatch(now);
            for launch in launches {
                self.spawn(launch);
            }
            *self.status.write().unwrap_or_else(|e| e.into_inner()) = self.policy.status(now);
            let mut wake = now + Duration::from_secs(1);
            for t in [blocked_until, self.policy.next_due()].into_iter().flatten() {
                wake = wake.min(t);
            }
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                Some(done) = self.done_rx.recv() => self.complete(done),
                Some(c) = control.recv() => self.control(c).await,
                _ = changes.changed() => {}
                _ = tokio::time::sleep_until(wake.into()) => {}
            }
        }
        self.drain().await;
    }

    /// At shutdown: let attempts in flight finish (and record) within their timeout.
    async fn drain(&mut self) {
        let deadline = tokio::time::Instant::now() + self.timeout + Duration::from_secs(1);
        while self.policy.in_flight() > 0 {
            match tokio::time::timeout_at(deadline, self.done_rx.recv()).await {
                Ok(Some(done)) => self.complete(done),
                _ => {
                    tracing::warn!(
                        in_flight = self.policy.in_flight(),
                        "forwarder stopped with attempts in flight; those triggers stay pending"
                    );
                    break;
                }
            }
        }
    }

    /// Reads more of each lane's index where it may have more.
    async fn refill(&mut self) {
        // Without named routes every trigger takes the default route: the
        // index alone is enough, no record needs decoding.
        let routed = self.policy.routes.members.len() > 1;
        for (lane, tenant, after) in self.policy.lanes_to_read() {
            let page = if routed {
                self.store.pending_routes_of_tenant(&tenant, after, LANE_PAGE).await
            } else {
                self.store.pending_of_tenant(&tenant, after, LANE_PAGE).await.map(|ids| ids.into_iter().map(|id| (id, None)).collect())
            };
            match page {
                Ok(page) => self.policy.refilled(lane, page),
                // The lane stays readable: the next turn reads again.
                Err(e) => tracing::warn!(tenant = %tenant, error = %e, "cannot read pending triggers; will retry"),
            }
        }
    }

    fn spawn(&mut self, launch: Launch) {
        let Launch { job, upstream, ticket } = launch;
        let ctx = AttemptCtx {
            store: self.store.clone(),
            tracer: self.tracer.clone(),
            target: self.targets[upstream].clone(),
            route: self.policy.routes.names[job.route].clone(),
            upstream,
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
        if let Done::Attempted { upstream, result, finished, .. } = &done {
            let outcome = match (&result.class, finished) {
                (Class::Delivered, _) => "delivered",
                (_, true) => "dead",
                _ => "retry",
            };
            self.metrics.forward_attempt(&self.policy.upstreams[*upstream].label, outcome);
        }
        if let Some((id, change)) = self.policy.complete(done, clock()) {
            self.spawn_recorder(id, change);
        }
    }

    fn spawn_recorder(&self, id: TriggerId, change: Change) {
        let (store, done_tx, shutdown) = (self.store.clone(), self.done_tx.clone(), self.shutdown.clone());
        tokio::spawn(async move {
            let _ = done_tx.send(attempt::record(store, id, change, shutdown).await);
        });
    }

    async fn control(&mut self, c: Control) {
        let (tenant, pause, reply) = match c {
            Control::Pause(t, r) => (t, true, r),
            Control::Resume(t, r) => (t, false, r),
        };
        if !self.tenants.contains(&tenant) && !self.policy.has_tenant(&tenant) {
            let _ = reply.send(Err(ForwardError::UnknownTenant(tenant)));
            return;
        }
        self.policy.add_lane(&tenant);
        let repo = self.repo.clone();
        let t = tenant.clone();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let saved = tokio::task::spawn_blocking(move || repo.set_paused(&t, pause, now_ms)).await;
        let result = match saved {
            Ok(Ok(())) => {
                self.policy.set_paused(&tenant, pause);
                tracing::info!(tenant = %tenant, paused = pause, "tenant forwarding {}", if pause { "paused" } else { "resumed" });
                Ok(())
            }
            Ok(Err(e)) => Err(ForwardError::Store(e)),
            Err(e) => Err(ForwardError::Config(e.to_string())),
        };
        let _ = reply.send(result);
    }
}
