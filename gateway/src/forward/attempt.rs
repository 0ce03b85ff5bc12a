//! One attempt as a task: read the trigger, send it to the upstream's
//! target (HTTP or JetStream), record the outcome; and the recorder that
//! keeps writing an outcome the store refused.

use std::sync::Arc;
use std::time::Duration;

use super::breaker::Ticket;
use super::policy::{Done, Job};
use super::target::Target;
use crate::id::TriggerId;
use crate::shutdown::Shutdown;
use crate::store::{Attempt, Change, Outcome, State, Store, StoreError};

/// First and longest wait between two tries of an outcome write.
const RECORD_FIRST_WAIT: Duration = Duration::from_millis(100);
const RECORD_MAX_WAIT: Duration = Duration::from_secs(5);

/// How an attempt ended, as the scheduler needs to know it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Class {
    /// HTTP 2xx, or a JetStream PubAck: delivered.
    Delivered,
    /// HTTP 408, 429, 5xx, connect errors, resets, timeouts; on JetStream
    /// anything but a PubAck: try again later.
    Retry,
    /// Any other HTTP status, or a message larger than the NATS servers'
    /// `max_payload`: the upstream will never take it.
    Permanent,
}

#[derive(Debug, Clone)]
pub struct AttemptResult {
    pub class: Class,
    /// HTTP status, when an HTTP upstream answered.
    pub status: Option<u16>,
    pub retry_after: Option<Duration>,
    pub elapsed: Duration,
    /// Why it failed, for the operator; on a JetStream delivery the stream and sequence.
    pub detail: String,
}

/// Everything one attempt task needs.
pub struct AttemptCtx {
    pub store: Store,
    pub tracer: crate::telemetry::Tracer,
    pub target: Arc<Target>,
    /// The name of the route the trigger is sent by (`None`: the default).
    pub route: Option<String>,
    pub upstream: usize,
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
        let sc = span.as_ref().map(|s| s.context());
        let result = crate::telemetry::within(sc.as_ref(), self.target.send(&trigger, self.route.as_deref(), span.as_mut())).await;
        // Weir's clock, which stamped `received_at_ms`: the age is time Weir saw pass, so a step of the
        // system clock never dead-letters a trigger (store/clock.rs).
        let now_ms = crate::store::clock::now_ms();
        let attempts = trigger.meta.attempts.len() as u32 + 1;
        let age_ms = now_ms.saturating_sub(trigger.meta.received_at_ms);
        let (state, outcome, note) = match result.class {
            Class::Delivered => (State::Delivered, Outcome::Delivered, None),
            Class::Permanent => (
                State::Dead,
                Outcome::Dead,
                Some(match result.status {
                    Some(s) => format!("upstream refused it for good (HTTP {s}): {}", result.detail),
                    None => format!("upstream refused it for good: {}", result.detail),
                }),
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
