//! One attempt as a task: read the trigger, send it, record the outcome;
//! and the recorder that keeps writing an outcome the store refused.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::Uri;

use super::breaker::Ticket;
use super::deliver::{self, AttemptResult, Class, HttpClient};
use super::policy::{Done, Job};
use crate::id::TriggerId;
use crate::shutdown::Shutdown;
use crate::store::{Attempt, Change, Outcome, State, Store, StoreError};

/// First and longest wait between two tries of an outcome write.
const RECORD_FIRST_WAIT: Duration = Duration::from_millis(100);
const RECORD_MAX_WAIT: Duration = Duration::from_secs(5);

/// Everything one attempt task needs.
pub struct AttemptCtx {
    pub store: Store,
    pub tracer: crate::telemetry::Tracer,
    pub client: HttpClient,
    pub url: Uri,
    pub deny: Arc<[String]>,
    pub upstream: usize,
    pub timeout: Duration,
    pub max_attempts: u32,
    pub max_age_ms: u64,
}

impl AttemptCtx {
    pub async fn run(self, job: Job, ticket: Ticket) -> Done {
        let trigger = match self.store.get(job.id).await {
            Ok(Some(t)) if t.meta.state == State::Pending => t,
            Ok(_) => return Done::Skipped { job, upstream: self.upstream, ticket, unreadable: false },
            // A corrupt record stays pending for the operator; anything else
            // (the file being reopened, an I/O error) is tried again soon.
            Err(e @ (StoreError::Corrupt { .. } | StoreError::Invalid(_))) => {
                tracing::error!(trigger_id = %job.id, error = %e, "cannot read trigger to forward; it stays pending");
                return Done::Skipped { job, upstream: self.upstream, ticket, unreadable: false };
            }
            Err(e) => {
                tracing::warn!(trigger_id = %job.id, error = %e, "cannot read trigger to forward now; it is tried again");
                return Done::Skipped { job, upstream: self.upstream, ticket, unreadable: true };
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
            .and_then(|(_, v)| crate::telemetry::trace::parse_traceparent(v));
        let mut span = self.tracer.span("forward", crate::telemetry::Kind::Client, parent.as_ref());
        let mut req = deliver::request(&self.url, &trigger, &self.deny);
        if let Some(s) = &span
            && let Ok(v) = http::HeaderValue::from_str(&crate::telemetry::trace::traceparent(&s.context()))
        {
            req.headers_mut().insert("traceparent", v);
        }
        let result = deliver::attempt(&self.client, req, self.timeout).await;
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
            detail: crate::trigger::note(&result.detail),
        };
        let change = Change::SetState { state, attempt: Some(attempt), note };
        let finished = state != State::Pending;
        let unrecorded = match self.store.update(job.id, change.clone()).await {
            Ok(_) => None,
            // A retry's trigger is still pending in the store: only the
            // attempt's history entry is lost, and it is retried anyway.
            Err(e) if !finished => {
                tracing::warn!(trigger_id = %job.id, tenant = %tenant, error = %e, "cannot record the failed attempt; the trigger stays pending");
                None
            }
            Err(e) => {
                tracing::warn!(trigger_id = %job.id, tenant = %tenant, error = %e, "cannot record the outcome yet; the forwarder keeps the trigger and retries the write");
                Some(change)
            }
        };
        if let Some(s) = span.as_mut().filter(|s| s.is_recording()) {
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
        Done::Attempted { job, upstream: self.upstream, ticket, result, finished, unrecorded }
    }
}

/// Writes `change` until the store confirms it (the upstream already has the
/// trigger: sending it again would be a duplicate). Gives up only at shutdown,
/// leaving the trigger pending for the next start (at-least-once).
pub async fn record(store: Store, id: TriggerId, change: Change, mut shutdown: Shutdown) -> Done {
    let mut wait = RECORD_FIRST_WAIT;
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            _ = tokio::time::sleep(wait) => {}
        }
        match store.update(id, change.clone()).await {
            Ok(_) => {
                tracing::info!(trigger_id = %id, "outcome recorded after the store recovered");
                break;
            }
            Err(StoreError::ShuttingDown) => break,
            Err(e) => tracing::debug!(trigger_id = %id, error = %e, "outcome still cannot be recorded; retrying"),
        }
        wait = (wait * 2).min(RECORD_MAX_WAIT);
    }
    Done::Recorded { id }
}

fn last(r: &AttemptResult) -> String {
    match r.status {
        Some(s) => format!("HTTP {s} {}", r.detail),
        None => r.detail.clone(),
    }
}
