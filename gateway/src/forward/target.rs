//! Where an upstream's attempts go: an HTTP URL (`deliver.rs`) or a
//! JetStream subject (`jetstream.rs`). Chosen once per upstream from its
//! entry; the policy (breakers, retries, failover) never knows which.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use super::ForwardError;
use super::attempt::AttemptResult;
use super::deliver::{self, HttpClient};
use super::jetstream::Publisher;
use crate::config::JETSTREAM_SCHEME;
use crate::fleet::Fleet;
use crate::store::StoredTrigger;
use crate::telemetry::Span;

pub enum Transport {
    Http { client: HttpClient, url: Uri },
    JetStream(Publisher),
}

/// One upstream's transport and the stored headers it never gets.
pub struct Target {
    transport: Transport,
    /// `forward.deny_headers` for this upstream.
    deny: Arc<[String]>,
    timeout: Duration,
}

impl Target {
    /// `fleet` is the connection `jetstream:` entries publish on; config
    /// validation requires `[fleet]` for them, so its absence is a bug here.
    pub fn new(
        upstream: &str,
        deny: Arc<[String]>,
        client: &HttpClient,
        fleet: Option<&Fleet>,
        timeout: Duration,
    ) -> Result<Target, ForwardError> {
        let transport = if upstream.starts_with(JETSTREAM_SCHEME) {
            let fleet = fleet.ok_or_else(|| ForwardError::Config(format!("{upstream}: a jetstream: upstream needs [fleet]")))?;
            Transport::JetStream(Publisher::new(upstream, fleet, timeout))
        } else {
            let url = upstream.parse().map_err(|e| ForwardError::Config(format!("{upstream}: {e}")))?;
            Transport::Http { client: client.clone(), url }
        };
        Ok(Target { transport, deny, timeout })
    }

    /// Sends one attempt of `t`, sent by the route named `route` (`None`:
    /// the default route); `span` is the attempt's span, if traced: the
    /// upstream gets its `traceparent`, and it gets the destination.
    pub async fn send(&self, t: &StoredTrigger, route: Option<&str>, span: Option<&mut Span>) -> AttemptResult {
        let traceparent = span.as_ref().map(|s| crate::telemetry::trace::traceparent(&s.context()));
        match &self.transport {
            Transport::Http { client, url } => {
                let mut req = deliver::request(url, t, &self.deny);
                if let Some(v) = traceparent.and_then(|tp| http::HeaderValue::from_str(&tp).ok()) {
                    req.headers_mut().insert("traceparent", v);
                }
                if let Some(s) = span {
                    s.attr("url.full", url.to_string());
                }
                deliver::attempt(client, req, self.timeout).await
            }
            Transport::JetStream(publisher) => {
                let subject = publisher.subject(t, route);
                let result = publisher.attempt(t, &subject, &self.deny, traceparent.as_deref()).await;
                if let Some(s) = span {
                    s.attr("messaging.system", "nats");
                    s.attr("messaging.destination.name", subject);
                }
                result
            }
        }
    }
}
