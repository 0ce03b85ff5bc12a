//! The JetStream transport (`jetstream:SUBJECT_TEMPLATE` upstreams):
//! publish a stored trigger on the fleet connection and classify the PubAck.
//!
//! A trigger is delivered only on a PubAck (a `duplicate` one included: the
//! stream already holds it, from an attempt whose outcome was never
//! recorded). Everything else is a retry with a sentence for the operator:
//! no stream captures the subject, the stream is full, no PubAck in time,
//! NATS unreachable. Weir never creates or changes a stream; the platform
//! owns them.

use std::time::{Duration, Instant};

use async_nats::jetstream::context::{Publish, PublishError, PublishErrorKind};
use async_nats::jetstream::{self, ErrorCode};

use super::attempt::{AttemptResult, Class};
use super::message;
use crate::config::{JETSTREAM_SCHEME, SUBJECT_PLACEHOLDERS};
use crate::fleet::Fleet;
use crate::store::StoredTrigger;

/// The route placeholder's value for a trigger on the default route.
pub const DEFAULT_ROUTE_TOKEN: &str = "default";

/// One `jetstream:` upstream: its subject template and the connection.
pub struct Publisher {
    template: String,
    pop: String,
    client: async_nats::Client,
    /// The fleet's JetStream context, with `forward.timeout_ms` as its timeout.
    js: jetstream::Context,
    timeout: Duration,
}

impl Publisher {
    /// `upstream` is the whole entry (`jetstream:weir.triggers.{tenant}`);
    /// config validation has checked its template.
    pub fn new(upstream: &str, fleet: &Fleet, timeout: Duration) -> Publisher {
        let template = upstream.strip_prefix(JETSTREAM_SCHEME).unwrap_or(upstream).to_string();
        let mut js = fleet.jetstream.clone();
        js.set_timeout(timeout);
        Publisher { template, pop: fleet.config.pop.clone(), client: fleet.client.clone(), js, timeout }
    }

    /// The trigger's subject; `route` is the name of the route it is sent by
    /// (`None`: the default route).
    pub fn subject(&self, t: &StoredTrigger, route: Option<&str>) -> String {
        render(&self.template, &t.meta.tenant, &t.meta.source, &self.pop, route.unwrap_or(DEFAULT_ROUTE_TOKEN))
    }

    /// Publishes one attempt and waits for its PubAck within the timeout;
    /// never returns an error, only a classified result.
    pub async fn attempt(&self, t: &StoredTrigger, subject: &str, deny: &[String], traceparent: Option<&str>) -> AttemptResult {
        let started = Instant::now();
        // A client that is not connected would queue the publish until it
        // reconnects; fail the attempt now so the breaker sees the outage.
        if let Some(state) = unreachable(&self.client.connection_state()) {
            return retry(started, format!("NATS is unreachable ({state})"));
        }
        let publish = Publish::build()
            .payload(message::body(t).into())
            .headers(headers(t, deny, &self.pop, traceparent))
            .message_id(message::idempotency_key(t));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let acked = tokio::time::timeout_at(deadline, async {
            let ack = self.js.send_publish(subject.to_string(), publish).await?;
            ack.await
        })
        .await;
        match acked {
            Ok(Ok(ack)) => {
                let detail = match ack.duplicate {
                    false => format!("stream {} seq {}", ack.stream, ack.sequence),
                    true => format!("stream {} seq {} (duplicate: the stream already had it)", ack.stream, ack.sequence),
                };
                AttemptResult { class: Class::Delivered, status: None, retry_after: None, elapsed: started.elapsed(), detail }
            }
            Ok(Err(e)) => {
                let detail = match refusal(&e) {
                    Some(r) if r.full => {
                        let stream = tokio::time::timeout_at(deadline, self.js.stream_by_subject(subject)).await.ok().and_then(Result::ok);
                        match stream {
                            Some(name) => format!("stream {name} is full ({})", r.description),
                            None => format!("the stream capturing subject {subject} is full ({})", r.description),
                        }
                    }
                    _ => describe(&e, subject, self.timeout),
                };
                retry(started, detail)
            }
            Err(_) => retry(started, no_ack(subject, self.timeout)),
        }
    }
}

fn retry(started: Instant, detail: String) -> AttemptResult {
    AttemptResult { class: Class::Retry, status: None, retry_after: None, elapsed: started.elapsed(), detail }
}

fn unreachable(state: &async_nats::connection::State) -> Option<&'static str> {
    match state {
        async_nats::connection::State::Connected => None,
        async_nats::connection::State::Pending => Some("not connected yet"),
        async_nats::connection::State::Disconnected => Some("disconnected"),
    }
}

fn no_ack(subject: &str, timeout: Duration) -> String {
    format!(
        "no PubAck within {} ms for subject {subject} (JetStream overloaded or unavailable, or this PoP may not publish to the subject)",
        timeout.as_millis()
    )
}

/// The message's headers: the stored headers that travel (the same rule as
/// HTTP), then Weir's: the trigger's names, `weir-pop`, the attempt's
/// `traceparent` when traced. `Nats-Msg-Id` is set by the caller.
fn headers(t: &StoredTrigger, deny: &[String], pop: &str, traceparent: Option<&str>) -> async_nats::HeaderMap {
    let mut h = async_nats::HeaderMap::new();
    for (name, value) in message::forwarded_headers(t, deny) {
        // NATS headers are text lines: a name or value that cannot be one is
        // left out rather than failing the attempt.
        if let (Ok(n), Ok(v)) = (name.parse::<async_nats::HeaderName>(), value.parse::<async_nats::HeaderValue>()) {
            h.append(n, v);
        }
    }
    let own = message::weir_headers(t).into_iter().chain([("weir-pop", pop.to_string())]);
    for (name, value) in own.chain(traceparent.map(|tp| ("traceparent", tp.to_string()))) {
        if let Ok(v) = value.parse::<async_nats::HeaderValue>() {
            h.insert(name, v);
        }
    }
    h
}

/// A JetStream API error on a publish (`maximum messages exceeded`, ...).
struct Refusal {
    description: String,
    code: u64,
    /// The stream's limits refused it (messages, bytes, per subject).
    full: bool,
}

fn refusal(e: &PublishError) -> Option<Refusal> {
    let api = std::error::Error::source(e)?.downcast_ref::<jetstream::Error>()?;
    // The description has no accessor; the error is serializable.
    let description = serde_json::to_value(api)
        .ok()
        .and_then(|v| v["description"].as_str().map(str::to_string))
        .unwrap_or_else(|| "no description".into());
    let code = serde_json::to_value(api.error_code()).ok().and_then(|v| v.as_u64()).unwrap_or(0);
    let full = api.error_code() == ErrorCode::STREAM_STORE_FAILED && description.contains("exceeded");
    Some(Refusal { description, code, full })
}

/// A sentence for the operator: `/v1/status` shows it as the upstream's `last_error`.
fn describe(e: &PublishError, subject: &str, timeout: Duration) -> String {
    match e.kind() {
        PublishErrorKind::StreamNotFound => {
            format!("no JetStream stream captures subject {subject}: ask the platform team to create one")
        }
        PublishErrorKind::TimedOut => no_ack(subject, timeout),
        PublishErrorKind::BrokenPipe => "the NATS connection was lost before the PubAck".into(),
        _ => match refusal(e) {
            Some(r) => format!("JetStream refused the message on subject {subject}: {} (error {})", r.description, r.code),
            None => format!("publishing to {subject} failed: {e}"),
        },
    }
}

/// Renders a subject template: each placeholder becomes its value with every
/// character a subject token may not hold (`.`, `*`, `>`, whitespace,
/// control and non-ASCII characters) replaced by `_`, and an empty value by
/// `_`, so a template always yields the same number of tokens (a stream's
/// subject filter such as `weir.triggers.*.*` keeps matching).
pub fn render(template: &str, tenant: &str, source: &str, pop: &str, route: &str) -> String {
    let mut out = template.to_string();
    for (placeholder, value) in SUBJECT_PLACEHOLDERS.iter().zip([tenant, source, pop, route]) {
        if out.contains(placeholder) {
            out = out.replace(placeholder, &token(value));
        }
    }
    out
}

fn token(value: &str) -> String {
    if value.is_empty() {
        return "_".into();
    }
    value.chars().map(|c| if c.is_ascii_graphic() && !matches!(c, '.' | '*' | '>') { c } else { '_' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_and_tokens_stay_tokens() {
        assert_eq!(SUBJECT_PLACEHOLDERS, ["{tenant}", "{source}", "{pop}", "{route}"], "render zips values in this order");
        let t = "weir.triggers.{tenant}.{source}";
        assert_eq!(render(t, "acme", "github", "fra1", "default"), "weir.triggers.acme.github");
        assert_eq!(render("w.{pop}.{route}.x-{tenant}", "acme", "s", "fra1", "push"), "w.fra1.push.x-acme");
        for (source, rendered) in
            [("a.b", "a_b"), ("*", "_"), (">", "_"), ("a b\tc", "a_b_c"), ("caf\u{e9}", "caf_"), ("", "_"), ("gh-1_x", "gh-1_x")]
        {
            let s = render(t, "acme", source, "p", "r");
            assert_eq!(s, format!("weir.triggers.acme.{rendered}"), "{source:?}");
            assert_eq!(s.split('.').count(), 4, "{source:?}: the token count is fixed");
        }
    }

    #[test]
    fn unreachable_names_the_connection_state() {
        use async_nats::connection::State;
        assert_eq!(unreachable(&State::Connected), None);
        assert_eq!(unreachable(&State::Disconnected), Some("disconnected"));
        assert_eq!(unreachable(&State::Pending), Some("not connected yet"));
    }
}
