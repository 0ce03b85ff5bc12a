//! Replay: move matching triggers back to `pending` with their original id
//! and idempotency key, so the forwarder delivers them again at its own pace.
//! Quarantined triggers always re-run the tenant's current plugin on the raw
//! payload; others only with `rerun_plugin`. Small replays answer at once;
//! large ones (or `background: true`) run as a job whose progress is stored
//! durably after every page, so a crash resumes it where it stopped.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::triggers::FilterArgs;
use super::{Admin, Scope, json_body};
use crate::http::{self as h, Resp};
use crate::id::TriggerId;
use crate::plugin::{Decision, Input};
use crate::store::{Change, Filter, Order, State, StoreError};

/// Replays up to this many run inside the request; more become a job.
const INLINE_MAX: u64 = 1000;
const PAGE: usize = 256;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Job {
    pub job: u64,
    /// The tenant a tenant token started it for (`None`: the operator).
    pub scope_tenant: Option<String>,
    pub actor: String,
    pub args: FilterArgs,
    /// `running`, `done` or `failed`.
    pub state: String,
    pub matched: u64,
    pub replayed: u64,
    /// Triggers the replay did not bring back to pending (the plugin rejected or failed).
    pub not_pending: u64,
    pub cursor: Option<String>,
    pub error: Option<String>,
    pub started_at: String,
}

#[derive(Default)]
pub struct Jobs {
    jobs: Mutex<HashMap<u64, Job>>,
}

impl Jobs {
    fn set(&self, job: &Job) {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).insert(job.job, job.clone());
    }

    fn get(&self, id: u64) -> Option<Job> {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).get(&id).cloned()
    }

    pub fn running(&self) -> usize {
        self.jobs.lock().unwrap_or_else(|e| e.into_inner()).values().filter(|j| j.state == "running").count()
    }

    fn next_id(&self) -> u64 {
        let jobs = self.jobs.lock().unwrap_or_else(|e| e.into_inner());
        jobs.keys().max().map_or(1, |m| m + 1).max(super::now_ms())
    }
}

/// The filter a replay applies: without a `state`, every state but pending.
fn matches(args: &FilterArgs, state: State) -> bool {
    args.state.is_some() || state != State::Pending
}

impl Admin {
    pub(super) async fn replay(self: &Arc<Self>, scope: &Scope, req: Request<Incoming>) -> Resp {
        let args: FilterArgs = match json_body(req).await {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        let filter = match args.to_filter(scope) {
            Ok(f) => f,
            Err(resp) => return resp,
        };
        let matched = match self.count(&filter, &args).await {
            Ok(n) => n,
            Err(e) => return h::unavailable("store_unavailable", &format!("replay could not read the store: {e}"), 5),
        };
        if args.dry_run {
            return h::json(StatusCode::OK, &serde_json::json!({"matched": matched, "replayed": 0, "dry_run": true}));
        }
        let mut job = Job {
            job: self.jobs.next_id(),
            scope_tenant: scope.tenant().map(str::to_string),
            actor: scope.actor(),
            args,
            state: "running".into(),
            matched,
            replayed: 0,
            not_pending: 0,
            cursor: None,
            error: None,
            started_at: h::rfc3339(super::now_ms()),
        };
        if matched <= INLINE_MAX && !job.args.background {
            self.run_job(&mut job).await;
            return match job.state.as_str() {
                "done" => h::json(
                    StatusCode::OK,
                    &serde_json::json!({"matched": job.matched, "replayed": job.replayed, "not_pending": job.not_pending}),
                ),
                _ => {
                    h::unavailable("replay_failed", &format!("replay stopped after {}: {}", job.replayed, job.error.unwrap_or_default()), 5)
                }
            };
        }
        if let Err(e) = self.save(&job).await {
            return h::unavailable("store_unavailable", &format!("the replay job could not be recorded: {e}"), 5);
        }
        let admin = self.clone();
        let reply = serde_json::json!({"job": job.job, "matched": matched, "replayed": 0, "status": format!("/v1/replays/{}", job.job)});
        tokio::spawn(async move { admin.run_job(&mut job).await });
        h::json(StatusCode::ACCEPTED, &reply)
    }

    pub(super) fn replay_job(&self, scope: &Scope, id: &str) -> Resp {
        let found = id.parse::<u64>().ok().and_then(|id| self.jobs.get(id));
        match found {
            Some(job) if scope.tenant().is_none() || job.scope_tenant.as_deref() == scope.tenant() => h::json(StatusCode::OK, &job),
            _ => h::not_found(&format!("no replay job {id:?}")),
        }
    }

    async fn count(&self, filter: &Filter, args: &FilterArgs) -> Result<u64, StoreError> {
        let (mut n, mut cursor) = (0, None);
        loop {
            let (items, next) = self.store.list(filter.clone(), cursor, 1000, Order::Asc).await?;
            n += items.iter().filter(|(_, m)| matches(args, m.state)).count() as u64;
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(n),
            }
        }
    }

    async fn save(&self, job: &Job) -> Result<(), StoreError> {
        self.jobs.set(job);
        let bytes = serde_json::to_vec(job).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let (repo, id) = (self.repo.clone(), job.job);
        tokio::task::spawn_blocking(move || repo.put_job(id, &bytes)).await.map_err(|e| StoreError::Io(e.to_string()))?
    }

    /// Runs (or resumes) a job to the end, saving progress after every page.
    async fn run_job(&self, job: &mut Job) {
        let scope = match &job.scope_tenant {
            Some(t) => Scope::Tenant(t.clone()),
            None => Scope::Operator,
        };
        let result = self.replay_pages(job, &scope).await;
        match result {
            // The store announces the triggers that became pending; the
            // forwarder re-reads those lanes from there by itself.
            Ok(_) => job.state = "done".into(),
            Err(e) => {
                job.state = "failed".into();
                job.error = Some(e.to_string());
            }
        }
        if let Err(e) = self.save(job).await {
            tracing::warn!(job = job.job, error = %e, "replay job state could not be saved");
        }
        let detail = serde_json::to_value(&job.args).unwrap_or_default();
        self.audit(&scope, "trigger.replay", job.args.tenant.as_deref().or(job.scope_tenant.as_deref()), detail, Some(job.replayed)).await;
        tracing::info!(job = job.job, replayed = job.replayed, state = %job.state, "replay finished");
    }

    async fn replay_pages(&self, job: &mut Job, scope: &Scope) -> Result<BTreeSet<String>, StoreError> {
        let filter = job.args.to_filter(scope).map_err(|_| StoreError::Invalid("the job's filter is no longer valid".into()))?;
        let mut cursor = job.cursor.as_deref().and_then(|c| c.parse::<TriggerId>().ok());
        let mut tenants = BTreeSet::new();
        loop {
            let (items, next) = self.store.list(filter.clone(), cursor, PAGE, Order::Asc).await?;
            for (id, meta) in &items {
                if !matches(&job.args, meta.state) {
                    continue;
                }
                match self.replay_one(*id, job.args.rerun_plugin).await? {
                    Some(State::Pending) => {
                        job.replayed += 1;
                        self.metrics.replayed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                    Some(_) => job.not_pending += 1,
                    None => {}
                }
                tenants.insert(meta.tenant.clone());
            }
            cursor = next;
            job.cursor = cursor.map(|c| c.to_string());
            if !job.args.dry_run && (job.args.background || job.matched > INLINE_MAX) {
                self.save(job).await?;
            }
            if cursor.is_none() {
                return Ok(tenants);
            }
            if self.shutdown.is_triggered() {
                return Err(StoreError::ShuttingDown);
            }
        }
    }

    /// One trigger back to pending (or, after a plugin re-run, wherever its
    /// verdict puts it). Returns its new state; `None` if it is gone.
    async fn replay_one(&self, id: TriggerId, rerun: bool) -> Result<Option<State>, StoreError> {
        let Some(t) = self.store.get(id).await? else { return Ok(None) };
        let mut meta = t.meta.clone();
        let mut transformed = t.transformed.clone();
        meta.state = State::Pending;
        meta.note = None;
        let run_plugin = rerun || t.meta.state == State::Quarantined;
        if run_plugin && self.plugins.has_plugin(&meta.tenant) {
            let input = Input {
                tenant: meta.tenant.clone(),
                source: meta.source.clone(),
                method: "POST".into(),
                path: format!("/ingest/{}/{}", meta.tenant, meta.source),
                query: String::new(),
                headers: t.meta.headers.clone(),
                body: t.body.clone().into(),
                received_at_ms: meta.received_at_ms,
            };
            if let Some(ran) = self.plugins.run(input).await {
                meta.plugin_version = ran.version.unwrap_or(0);
                let v = meta.plugin_version;
                match ran.result {
                    Ok(Decision::Accept(tr)) => transformed = crate::ingest::apply_transform(&mut meta, tr),
                    Ok(Decision::Reject { status, reason }) => {
                        meta.state = State::Dead;
                        meta.note = Some(format!("rejected by plugin v{v} on replay ({status}): {reason}"));
                    }
                    Ok(Decision::Drop) => {
                        meta.state = State::Dead;
                        meta.note = Some(format!("dropped by plugin v{v} on replay"));
                    }
                    Err(f) => {
                        meta.state = State::Quarantined;
                        meta.note = Some(crate::plugin::truncate_note(&f.to_string()));
                    }
                }
            }
        } else if run_plugin {
            // The tenant has no plugin any more: the raw trigger goes as it is.
            transformed = None;
            meta.plugin_version = 0;
        }
        let state = meta.state;
        let found = self.store.update(id, Change::Replace { meta: Box::new(meta), transformed }).await?;
        Ok(found.then_some(state))
    }
}

/// At startup: resume every job a crash left running.
pub async fn resume_all(admin: Arc<Admin>) {
    let repo = admin.repo.clone();
    let stored = match tokio::task::spawn_blocking(move || repo.jobs()).await {
        Ok(Ok(jobs)) => jobs,
        _ => {
            tracing::warn!("replay jobs could not be read; none resumed");
            return;
        }
    };
    for (_, bytes) in stored {
        let Ok(mut job) = serde_json::from_slice::<Job>(&bytes) else { continue };
        admin.jobs.set(&job);
        if job.state == "running" {
            tracing::info!(job = job.job, replayed = job.replayed, "resuming a replay job interrupted by a restart");
            let a = admin.clone();
            tokio::spawn(async move { a.run_job(&mut job).await });
        }
    }
}
