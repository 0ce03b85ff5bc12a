//! What an attempt sends, whatever the transport (an HTTP POST or a
//! JetStream publish): the body, the stored headers that may travel, Weir's
//! own headers, and the idempotency key. Each rule once, so a trigger that
//! fails over between HTTP and JetStream carries the same thing on both.

use crate::store::StoredTrigger;

/// The body sent: the plugin's transformed body if it gave one, else the sender's.
pub fn body(t: &StoredTrigger) -> Vec<u8> {
    t.transformed.clone().unwrap_or_else(|| t.body.clone())
}

/// The key every attempt and replay of a trigger carries (`idempotency-key`
/// over HTTP, `Nats-Msg-Id` on JetStream): the sender's or the plugin's
/// key, else the trigger id. The same on every attempt, so the upstream (or
/// JetStream's duplicate window) drops a re-send.
pub fn idempotency_key(t: &StoredTrigger) -> String {
    t.meta.idempotency_key.clone().unwrap_or_else(|| t.id.to_string())
}

/// Headers Weir sets itself, or that would steer the receiver rather than
/// describe the trigger: a stored header (a sender's or a plugin's) of such a
/// name is never sent. `nats-*` headers drive JetStream (`Nats-Msg-Id`,
/// `Nats-Expected-*`, `Nats-Rollup` could purge a subject), so a sender never
/// gets to set them, on either transport.
fn is_reserved(name: &str) -> bool {
    name.starts_with("weir-") || name.starts_with("nats-") || matches!(name, "idempotency-key" | "user-agent" | "content-length" | "host")
}

/// The stored headers that travel with the trigger, in stored order: the
/// plugin's changes were applied at ingest, credentials and hop-by-hop
/// headers were never stored (`trigger/headers.rs`); here Weir's reserved
/// names and the upstream's `deny` list (`forward.deny_headers`) are left out.
pub fn forwarded_headers<'a>(t: &'a StoredTrigger, deny: &'a [String]) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    t.meta
        .headers
        .iter()
        .filter(move |(name, _)| !is_reserved(name) && !deny.iter().any(|d| d == name))
        .map(|(n, v)| (n.as_str(), v.as_str()))
}

/// Weir's headers naming the trigger (set over any stored header).
pub fn weir_headers(t: &StoredTrigger) -> [(&'static str, String); 3] {
    [("weir-trigger-id", t.id.to_string()), ("weir-tenant", t.meta.tenant.clone()), ("weir-source", t.meta.source.clone())]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::TriggerId;
    use crate::store::TriggerMeta;

    fn trigger(headers: &[(&str, &str)], key: Option<&str>) -> StoredTrigger {
        StoredTrigger {
            id: TriggerId::from_u128(42),
            meta: TriggerMeta {
                headers: headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect(),
                idempotency_key: key.map(str::to_string),
                ..TriggerMeta::sample()
            },
            body: b"raw".to_vec(),
            transformed: None,
        }
    }

    #[test]
    fn reserved_and_denied_headers_never_travel() {
        let t = trigger(
            &[
                ("content-type", "application/json"),
                ("weir-tenant", "forged"),
                ("nats-msg-id", "forged"),
                ("nats-rollup", "all"),
                ("idempotency-key", "stored"),
                ("x-secret", "s"),
                ("x-kept", "k"),
            ],
            None,
        );
        let deny = vec!["x-secret".to_string()];
        let names: Vec<&str> = forwarded_headers(&t, &deny).map(|(n, _)| n).collect();
        assert_eq!(names, ["content-type", "x-kept"]);
    }

    #[test]
    fn the_key_is_the_senders_else_the_id_and_the_body_the_transformed_one() {
        let mut t = trigger(&[], Some("evt_1"));
        assert_eq!(idempotency_key(&t), "evt_1");
        assert_eq!(body(&t), b"raw");
        t.meta.idempotency_key = None;
        t.transformed = Some(b"new".to_vec());
        assert_eq!(idempotency_key(&t), t.id.to_string());
        assert_eq!(body(&t), b"new");
    }
}
