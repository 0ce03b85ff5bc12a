//! Replay: move matching triggers back to `pending` with their original id
//! and idempotency key, so the forwarder delivers them again at its own pace.
//! Quarantined triggers always re-run the tenant's current plugin on the raw
//! payload; others only with `rerun_plugin`. Small replays answer at once;
//! large ones (or `background: true`) run as a job.
//!
//! A replay's selection is fixed when it starts: the ids the filter matched
//! then (the same scan a dry run counts), stored with the job in the control
//! file. Triggers that come to match while it runs (a backlog delivered during
//! the replay) are not picked up, and one that no longer matches when its turn
//! comes (replayed by someone else, deleted) is skipped and counted. Progress
//! is saved after every page, so a crash resumes the job where it stopped, and
//! a graceful shutdown stops it between two triggers, still `running`, for the
//! next start to resume.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::triggers::FilterArgs;
use super::{Admin, Scope, json_body};
use crate::http::{self as h, Resp};
use crate::id::TriggerId;
use crate::plugin::{Decision, Input, Phase};
use crate::store::{Change, Filter, Order, State, StoreError, StoredTrigger};

/// Replays up to this many run inside the request; more become a job.
const INLINE_MAX: u64 = 1000;
/// A job saves its progress after this many triggers.
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
    /// Triggers selected when the job started.
    pub matched: u64,
    pub replayed: u64,
    /// Triggers the replay did not bring back to pending (the plugin rejected or failed).
    pub not_pending: u64,
    /// Selected triggers that no longer matched (or were gone) when their turn came.
    #[serde(default)]
    pub skipped: u64,
    /// The last selected id handled.
    pub cursor: Option<String>,
    pub error: Option<String>,
    pub started_at: String,
}

impl Job {
    /// A job that runs in the background is recorded, with its selection, in the control file.
    fn is_recorded(&self) -> bool {
        self.args.background || self.matched > INLINE_MAX
    }
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

/// The filter a replay applies on top of the store filter: without a
/// `state`, every state but pending (the store filter has the named state).
fn matches(args: &FilterArgs, state: State) -> bool {
    match args.state.as_deref().and_then(State::parse) {
        Some(wanted) => state == wanted,
        None => state != State::Pending,
    }
}

/// Where one selected trigger ended.
enum Outcome {
    /// Back to pending (its tenant).
    Pending(String),
    /// Dead or quarantined after a plugin re-run (its tenant).
    NotPending(String),
    /// Gone, or no longer matching the filter.
    Skipped,
}

impl Admin {
    pub(super) async fn replay(self: &Arc<Self>, scope: &Scope, req: Request<Incoming>) -> Resp {
        let args: FilterArgs = match json_body(req).await {
            Ok(a) => a,
            Err(resp) => return resp,
        };
        self.start_replay(scope, args).await
    }

    /// Starts a replay (or counts it, for a dry run) and answers as
    /// `POST /v1/replay` does; fleet replay (`fleet/replay.rs`) comes here too.
    pub async fn start_replay(self: &Arc<Self>, scope: &Scope, args: FilterArgs) -> Resp {
        if args.max_per_sec == Some(0) {
            return super::triggers::bad_request("max_per_sec must be at least 1 (leave it out for no limit)");
        }
        let filter = match args.to_filter(scope) {
            Ok(f) => f,
            Err(resp) => return resp,
        };
        let selection = match self.select(&filter, &args, None).await {
            Ok(ids) => ids,
            Err(e) => {
                return h::unavailable("store_unavailable", &format!("replay could not read the store: {e}"), 5);
            }
        };
        let matched = selection.len() as u64;
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
            skipped: 0,
            cursor: None,
            error: None,
            started_at: h::rfc3339(super::now_ms()),
        };
        if !job.is_recorded() {
            self.run_job(&mut job, &selection).await;
            return match job.state.as_str() {
                "done" => h::json(
                    StatusCode::OK,
                    &serde_json::json!({"matched": job.matched, "replayed": job.replayed, "not_pending": job.not_pending, "skipped": job.skipped}),
                ),
                _ => {
                    h::unavailable("replay_failed", &format!("replay stopped after {}: {}", job.replayed, job.error.unwrap_or_default()), 5)
                }
            };
        }
        if let Err(e) = self.record(&job, selection.clone()).await {
            return h::unavailable("store_unavailable", &format!("the replay job could not be recorded: {e}"), 5);
        }
        let admin = self.clone();
        let reply = serde_json::json!({"job": job.job, "matched": matched, "replayed": 0, "status": format!("/v1/replays/{}", job.job)});
        self.tasks.spawn("replay job", async move { admin.run_job(&mut job, &selection).await });
        h::json(StatusCode::ACCEPTED, &reply)
    }

    pub fn replay_job(&self, scope: &Scope, id: &str) -> Resp {
        let found = id.parse::<u64>().ok().and_then(|id| self.jobs.get(id));
        match found {
            Some(job) if scope.tenant().is_none() || job.scope_tenant.as_deref() == scope.tenant() => h::json(StatusCode::OK, &job),
            _ => h::not_found(&format!("no replay job {id:?}")),
        }
    }

    /// The ids a replay selects now, ascending: what the filter matches after `after`.
    async fn select(&self, filter: &Filter, args: &FilterArgs, after: Option<TriggerId>) -> Result<Vec<TriggerId>, StoreError> {
        let (mut ids, mut cursor) = (Vec::new(), after);
        loop {
            let (items, next) = self.store.list(filter.clone(), cursor, 1000, Order::Asc).await?;
            ids.extend(items.iter().filter(|(_, m)| matches(args, m.state)).map(|(id, _)| *id));
            match next {
                Some(c) => cursor = Some(c),
                None => return Ok(ids),
            }
        }
    }

    /// Records a new background job and its selection, durably, before it starts.
    async fn record(&self, job: &Job, selection: Vec<TriggerId>) -> Result<(), StoreError> {
        self.jobs.set(job);
        let bytes = serde_json::to_vec(job).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let (repo, id) = (self.repo.clone(), job.job);
        tokio::task::spawn_blocking(move || repo.put_job_with_selection(id, &bytes, &selection))
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?
    }

    /// Saves a job's progress (`finished`: and forgets its selection).
    async fn save(&self, job: &Job, finished: bool) -> Result<(), StoreError> {
        self.jobs.set(job);
        let bytes = serde_json::to_vec(job).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let (repo, id) = (self.repo.clone(), job.job);
        tokio::task::spawn_blocking(move || if finished { repo.finish_job(id, &bytes) } else { repo.put_job(id, &bytes) })
            .await
            .map_err(|e| StoreError::Io(e.to_string()))?
    }

    /// Runs (or resumes) a job over its selection to the end, or until shutdown.
    async fn run_job(&self, job: &mut Job, selection: &[TriggerId]) {
        let scope = match &job.scope_tenant {
            Some(t) => Scope::Tenant(t.clone()),
            None => Scope::Operator,
        };
        match self.replay_selection(job, selection).await {
            // The store announces the triggers that became pending; the
            // forwarder re-reads those lanes from there by itself.
            Ok(_) => job.state = "done".into(),
            Err(StoreError::ShuttingDown) => {
                if !job.is_recorded() {
                    // An inline replay answers its request and is not resumed.
                    job.error = Some("the gateway is shutting down; replay the rest again".into());
                    return;
                }
                // Stopped like a crash would stop it: still running, resumed at the next start.
                if let Err(e) = self.save(job, false).await {
                    tracing::warn!(job = job.job, error = %e, "replay job progress could not be saved at shutdown");
                }
                tracing::info!(
                    job = job.job,
                    replayed = job.replayed,
                    matched = job.matched,
                    "replay job stopped by shutdown; it resumes at the next start"
                );
                return;
            }
            Err(e) => {
                job.state = "failed".into();
                job.error = Some(e.to_string());
            }
        }
        if let Err(e) = self.save(job, true).await {
            tracing::warn!(job = job.job, error = %e, "replay job state could not be saved");
        }
        let detail = serde_json::to_value(&job.args).unwrap_or_default();
        self.audit(&scope, "trigger.replay", job.args.tenant.as_deref().or(job.scope_tenant.as_deref()), detail, Some(job.replayed)).await;
        tracing::info!(job = job.job, matched = job.matched, replayed = job.replayed, state = %job.state, "replay finished");
    }

    /// Replays the selected ids after the job's cursor, paced by
    /// `max_per_sec`; returns the tenants whose triggers went back to pending.
    async fn replay_selection(&self, job: &mut Job, selection: &[TriggerId]) -> Result<BTreeSet<String>, StoreError> {
        let after = job.cursor.as_deref().and_then(|c| c.parse::<TriggerId>().ok());
        let start = after.map_or(0, |a| selection.partition_point(|id| *id <= a));
        let pace = job.args.max_per_sec.map(|n| Duration::from_secs_f64(1.0 / f64::from(n.max(1))));
        let mut due = tokio::time::Instant::now();
        let mut shutdown = self.shutdown.clone();
        let mut tenants = BTreeSet::new();
        for (n, id) in selection[start..].iter().enumerate() {
            if let Some(pace) = pace {
                tokio::select! {
                    _ = tokio::time::sleep_until(due) => {}
                    _ = shutdown.wait() => {}
                }
                due += pace;
            }
            if self.shutdown.is_triggered() {
                return Err(StoreError::ShuttingDown);
            }
            match self.replay_one(*id, &job.args).await? {
                Outcome::Pending(tenant) => {
                    job.replayed += 1;
                    self.metrics.replayed();
                    tenants.insert(tenant);
                }
                Outcome::NotPending(tenant) => {
                    job.not_pending += 1;
                    tenants.insert(tenant);
                }
                Outcome::Skipped => job.skipped += 1,
            }
            job.cursor = Some(id.to_string());
            if job.is_recorded() && (n + 1) % PAGE == 0 {
                self.save(job, false).await?;
            } else {
                // `GET /v1/replays/{job}` shows progress between saves too.
                self.jobs.set(job);
            }
        }
        Ok(tenants)
    }

    /// One selected trigger back to pending (or, after a plugin re-run,
    /// wherever its verdict puts it), unless it no longer matches.
    async fn replay_one(&self, id: TriggerId, args: &FilterArgs) -> Result<Outcome, StoreError> {
        let Some(t) = self.store.get(id).await? else {
            return Ok(Outcome::Skipped);
        };
        if !matches(args, t.meta.state) {
            return Ok(Outcome::Skipped);
        }
        let tenant = t.meta.tenant.clone();
        let Some((meta, transformed)) = self.replayed_record(t, args.rerun_plugin).await else {
            // No plugin instance came free within the deadline: the trigger
            // stays as it was, counted as skipped (a later replay can take it).
            tracing::warn!(trigger_id = %id, tenant = %tenant, "replay skipped a trigger: no plugin instance free (plugin_busy)");
            return Ok(Outcome::Skipped);
        };
        let state = meta.state;
        let found = self.store.update(id, Change::Replace { meta: Box::new(meta), transformed }).await?;
        Ok(match (found, state) {
            (false, _) => Outcome::Skipped,
            (true, State::Pending) => Outcome::Pending(tenant),
            (true, _) => Outcome::NotPending(tenant),
        })
    }

    /// The record a replayed trigger gets: pending, or the verdict of the
    /// tenant's current plugin when it re-runs. `None` when the plugin
    /// could not run for want of a free instance (the trigger stays as it is).
    async fn replayed_record(&self, t: StoredTrigger, rerun: bool) -> Option<(crate::store::TriggerMeta, Option<Vec<u8>>)> {
        let mut meta = t.meta.clone();
        let mut transformed = t.transformed.clone();
        meta.state = State::Pending;
        meta.note = None;
        let run_plugin = rerun || t.meta.state == State::Quarantined;
        if run_plugin && self.plugins.has_plugin(&meta.tenant) {
            let input = Input::of(&t.meta, t.body.clone().into(), Phase::Replay);
            match self.plugins.run(input).await {
                // No instance free within the deadline: the trigger stays as it was.
                Some(Err(crate::plugin::Busy)) => return None,
                Some(Ok(ran)) => {
                    meta.plugin_version = ran.version.unwrap_or(0);
                    let v = meta.plugin_version;
                    match ran.result {
                        Ok(Decision::Accept(tr)) => transformed = crate::trigger::apply_transform(&mut meta, tr),
                        Ok(Decision::Reject { status, reason }) => {
                            meta.state = State::Dead;
                            meta.note = Some(format!("rejected by plugin v{v} on replay ({status}): {reason}"));
                        }
                        Ok(Decision::Drop) => {
                            meta.state = State::Dead;
                            meta.note = Some(format!("dropped by plugin v{v} on replay"));
                        }
                        Err(f) => crate::trigger::quarantine(&mut meta, &f),
                    }
                }
                None => {}
            }
        } else if run_plugin {
            // The tenant has no plugin any more: the raw trigger goes as it is.
            transformed = None;
            meta.plugin_version = 0;
        }
        Some((meta, transformed))
    }

    /// The selection of a job to resume: the stored one, or for a job
    /// recorded before selections were stored, what its filter matches now
    /// past its cursor.
    async fn selection_of(&self, job: &Job) -> Result<Vec<TriggerId>, StoreError> {
        let (repo, id) = (self.repo.clone(), job.job);
        let stored = tokio::task::spawn_blocking(move || repo.job_selection(id)).await.map_err(|e| StoreError::Io(e.to_string()))??;
        if !stored.is_empty() || job.matched == 0 {
            return Ok(stored);
        }
        let scope = match &job.scope_tenant {
            Some(t) => Scope::Tenant(t.clone()),
            None => Scope::Operator,
        };
        let filter = job.args.to_filter(&scope).map_err(|_| StoreError::Invalid("the job's filter is no longer valid".into()))?;
        let after = job.cursor.as_deref().and_then(|c| c.parse::<TriggerId>().ok());
        self.select(&filter, &job.args, after).await
    }
}

/// At startup: resume every job a crash or a shutdown left running.
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
        let Ok(mut job) = serde_json::from_slice::<Job>(&bytes) else {
            continue;
        };
        admin.jobs.set(&job);
        if job.state != "running" {
            continue;
        }
        let selection = match admin.selection_of(&job).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(job = job.job, error = %e, "a replay job's selection could not be read; it is not resumed");
                continue;
            }
        };
        tracing::info!(job = job.job, replayed = job.replayed, matched = job.matched, "resuming a replay job interrupted by a restart");
        let a = admin.clone();
        admin.tasks.spawn("replay job", async move { a.run_job(&mut job, &selection).await });
    }
}
