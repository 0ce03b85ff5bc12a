//! The JetStream transport (`jetstream:SUBJECT_TEMPLATE` upstreams):
//! publish a stored trigger on the fleet connection and classify the PubAck.
//!
//! A trigger is delivered only on a PubAck. A `duplicate` PubAck is a
//! delivery when the message it names is the same tenant's (an attempt whose
//! outcome was never recorded); another tenant's message with the same key
//! is a collision, retried once the duplicate window has passed. Everything
//! else is a retry with a sentence for the operator:
//! no stream captures the subject, the stream is full, no PubAck in time,
//! NATS unreachable. Weir never creates or changes a stream; the platform
//! owns them.

use std::time::{Duration, Instant};

use async_nats::jetstream::context::{Publish, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
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
        let body = message::body(t);
        let mut headers = headers(t, deny, &self.pop, traceparent);
        if let Ok(key) = message::idempotency_key(t).parse::<async_nats::HeaderValue>() {
            headers.insert(async_nats::header::NATS_MESSAGE_ID, key);
        }
        if let Some(detail) = self.oversized(&headers, body.len()) {
            return AttemptResult { class: Class::Permanent, status: None, retry_after: None, elapsed: started.elapsed(), detail };
        }
        let deadline = tokio::time::Instant::now() + self.timeout;
        let publish = Publish::build().payload(body.into()).headers(headers);
        let acked = tokio::time::timeout_at(deadline, async {
            let ack = self.js.send_publish(subject.to_string(), publish).await?;
            ack.await
        })
        .await;
        match acked {
            Ok(Ok(ack)) => self.acked(started, &ack, &t.meta.tenant).await,
            Ok(Err(e)) => retry(started, self.refused(&e, subject, deadline).await),
            Err(_) => retry(started, no_ack(subject, self.timeout)),
        }
    }

    /// The client does not check a JetStream publish against the servers'
    /// `max_payload`, and a server answers an oversized one by closing the
    /// connection (everything else on it with it). Such a message would never
    /// fit: dead at once, like an HTTP 413, not a retry that keeps cutting
    /// the connection.
    fn oversized(&self, headers: &async_nats::HeaderMap, body: usize) -> Option<String> {
        let size = wire_size(headers, body);
        let max = self.client.server_info().max_payload;
        (max > 0 && size > max).then(|| {
            format!(
                "the message ({size} bytes with its headers) is larger than the NATS servers' max_payload ({max} bytes): \
                 raise max_payload, or lower server.max_body_bytes"
            )
        })
    }

    /// A PubAck: delivered, unless it is a duplicate of another tenant's message.
    async fn acked(&self, started: Instant, ack: &PublishAck, tenant: &str) -> AttemptResult {
        let (stream, seq) = (&ack.stream, ack.sequence);
        if !ack.duplicate {
            return delivered(started, format!("stream {stream} seq {seq}"));
        }
        match self.duplicate_of(ack, tenant).await {
            Duplicate::Ours => delivered(started, format!("stream {stream} seq {seq} (duplicate: the stream already had it)")),
            Duplicate::Unknown => {
                delivered(started, format!("stream {stream} seq {seq} (duplicate: the stream already had this Nats-Msg-Id)"))
            }
            Duplicate::Other(owner) => retry(
                started,
                format!(
                    "JetStream dropped it as a duplicate of {owner}'s message (stream {stream} seq {seq}) with the same \
                     Nats-Msg-Id (idempotency key); it is sent again once the stream's duplicate window has passed"
                ),
            ),
        }
    }

    /// Why a publish failed, in words; a full stream is named when the PoP
    /// may look it up.
    async fn refused(&self, e: &PublishError, subject: &str, deadline: tokio::time::Instant) -> String {
        match refusal(e) {
            Some(r) if r.full => {
                let lookup = deadline.min(tokio::time::Instant::now() + LOOKUP_MAX);
                match tokio::time::timeout_at(lookup, self.js.stream_by_subject(subject)).await {
                    Ok(Ok(name)) => format!("stream {name} is full ({})", r.description),
                    _ => format!("the stream capturing subject {subject} is full ({})", r.description),
                }
            }
            _ => describe(e, subject, self.timeout),
        }
    }

    /// Whose message a duplicate PubAck points at. JetStream drops a
    /// message whose `Nats-Msg-Id` it saw within the window, whoever sent
    /// it; the key is unique only within a tenant. The same tenant's message
    /// is this trigger's (an attempt whose outcome was never recorded, or
    /// the same event through another PoP): delivered. Another tenant's (or
    /// a message Weir did not publish) is a collision: delivering would lose
    /// this trigger. A message that cannot be read back (removed by the
    /// stream's retention, or no permission to read) is taken as ours.
    async fn duplicate_of(&self, ack: &PublishAck, tenant: &str) -> Duplicate {
        let read = async {
            let stream = self.js.get_stream_no_info(&ack.stream).await.ok()?;
            stream.get_raw_message(ack.sequence).await.ok()
        };
        let Ok(Some(message)) = tokio::time::timeout(LOOKUP_MAX.min(self.timeout), read).await else {
            return Duplicate::Unknown;
        };
        let owner = message.headers.iter().find(|(n, _)| AsRef::<str>::as_ref(*n) == "weir-tenant").and_then(|(_, v)| v.first());
        match owner.map(|v| v.as_str()) {
            Some(owner) if owner == tenant => Duplicate::Ours,
            Some(owner) => Duplicate::Other(format!("tenant {owner}")),
            None => Duplicate::Other("a publisher other than Weir".into()),
        }
    }
}

/// How long a follow-up read may take (naming a full stream, reading back
/// the message a duplicate PubAck names): a PoP without the permission for
/// it gets no answer, and must not hold the attempt for the whole timeout.
const LOOKUP_MAX: Duration = Duration::from_secs(2);

enum Duplicate {
    Ours,
    Unknown,
    Other(String),
}

fn delivered(started: Instant, detail: String) -> AttemptResult {
    AttemptResult { class: Class::Delivered, status: None, retry_after: None, elapsed: started.elapsed(), detail }
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

/// The bytes a message takes against `max_payload`: its headers as NATS
/// writes them (`NATS/1.0`, one `name: value` line per value, a blank line)
/// plus the body.
fn wire_size(headers: &async_nats::HeaderMap, body: usize) -> usize {
    let lines: usize = headers
        .iter()
        .map(|(name, values)| values.iter().map(|v| AsRef::<str>::as_ref(name).len() + 2 + v.as_str().len() + 2).sum::<usize>())
        .sum();
    "NATS/1.0\r\n".len() + lines + 2 + body
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
    fn the_wire_size_counts_every_header_line() {
        let mut h = async_nats::HeaderMap::new();
        assert_eq!(wire_size(&h, 5), "NATS/1.0\r\n\r\n".len() + 5);
        h.insert("ab", "cde");
        h.append("ab", "f");
        // "ab: cde\r\n" and "ab: f\r\n"
        assert_eq!(wire_size(&h, 0), 12 + 9 + 7);
    }

    #[test]
    fn unreachable_names_the_connection_state() {
        use async_nats::connection::State;
        assert_eq!(unreachable(&State::Connected), None);
        assert_eq!(unreachable(&State::Disconnected), Some("disconnected"));
        assert_eq!(unreachable(&State::Pending), Some("not connected yet"));
    }
}
