//! Trigger routes: read one, list with filters and a cursor, delete one,
//! purge by filter. Tenant tokens see only their tenant's triggers.

use base64::Engine as _;
use http::{Request, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};

use super::{Admin, Scope, json_body};
use crate::http::{self as h, Resp};
use crate::id::TriggerId;
use crate::store::{Change, Filter, Order, State, StoredTrigger, TriggerMeta};

/// Filters as the API takes them (query string or JSON body).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterArgs {
    pub tenant: Option<String>,
    pub state: Option<String>,
    pub source: Option<String>,
    /// Unix milliseconds or RFC 3339 (`2026-11-24T02:49:51Z`).
    pub since: Option<TimeArg>,
    pub until: Option<TimeArg>,
    pub ids: Option<Vec<String>>,
    /// POST bodies only: count what would be affected, change nothing.
    #[serde(default, skip_serializing_if = "is_false")]
    pub dry_run: bool,
    /// Replay only: run the tenant's current plugin again on the raw body.
    #[serde(default, skip_serializing_if = "is_false")]
    pub rerun_plugin: bool,
    /// Replay only: run as a background job even when it is small.
    #[serde(default, skip_serializing_if = "is_false")]
    pub background: bool,
    /// Replay only: at most this many triggers per second, so a large replay
    /// does not hand the upstream its whole backlog at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_per_sec: Option<u32>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TimeArg {
    Ms(u64),
    Text(String),
}

impl TimeArg {
    fn ms(&self, key: &str) -> Result<u64, Resp> {
        match self {
            TimeArg::Ms(ms) => Ok(*ms),
            TimeArg::Text(t) => {
                t.parse::<u64>().ok().or_else(|| parse_rfc3339(t)).ok_or_else(|| {
                    bad_request(&format!("`{key}` = {t:?} is neither Unix milliseconds nor RFC 3339 (2026-11-24T02:49:51Z)"))
                })
            }
        }
    }
}

impl FilterArgs {
    pub fn is_empty(&self) -> bool {
        self.tenant.is_none()
            && self.state.is_none()
            && self.source.is_none()
            && self.since.is_none()
            && self.until.is_none()
            && self.ids.is_none()
    }

    /// The store filter, limited to what `scope` may see: a tenant token's
    /// filter is pinned to its tenant; naming another tenant is a 404.
    pub fn to_filter(&self, scope: &Scope) -> Result<Filter, Resp> {
        let tenant = match (scope.tenant(), &self.tenant) {
            (Some(own), Some(asked)) if own != asked => return Err(super::unknown_tenant(asked)),
            (Some(own), _) => Some(own.to_string()),
            (None, asked) => asked.clone(),
        };
        let state = match &self.state {
            None => None,
            Some(s) => Some(
                State::parse(s).ok_or_else(|| bad_request(&format!("state {s:?} is not one of pending, delivered, dead, quarantined")))?,
            ),
        };
        let ids = match &self.ids {
            None => None,
            Some(ids) => {
                Some(ids.iter().map(|i| i.parse::<TriggerId>().map_err(|e| bad_request(&e.to_string()))).collect::<Result<Vec<_>, _>>()?)
            }
        };
        Ok(Filter {
            tenant,
            state,
            source: self.source.clone(),
            since_ms: self.since.as_ref().map(|t| t.ms("since")).transpose()?,
            until_ms: self.until.as_ref().map(|t| t.ms("until")).transpose()?,
            ids,
        })
    }
}

pub(super) fn bad_request(message: &str) -> Resp {
    h::error(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// RFC 3339 (`2026-11-24T02:49:51.123Z`, or with an offset) to Unix ms;
/// `None` before 1970 or for anything else.
pub fn parse_rfc3339(s: &str) -> Option<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()?;
    u64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

#[derive(Serialize)]
struct Summary {
    id: String,
    tenant: String,
    source: String,
    state: &'static str,
    received_at: String,
    received_at_ms: u64,
    body_bytes: u32,
    attempts: usize,
    plugin_version: Option<u32>,
    note: Option<String>,
}

impl Summary {
    fn new(id: TriggerId, m: &TriggerMeta) -> Summary {
        Summary {
            id: id.to_string(),
            tenant: m.tenant.clone(),
            source: m.source.clone(),
            state: m.state.as_str(),
            received_at: h::rfc3339(m.received_at_ms),
            received_at_ms: m.received_at_ms,
            body_bytes: m.body_len,
            attempts: m.attempts.len(),
            plugin_version: Some(m.plugin_version).filter(|v| *v != 0),
            note: m.note.clone(),
        }
    }
}

impl Admin {
    pub(super) async fn trigger(&self, scope: &Scope, id: &str) -> Resp {
        match self.load(scope, id).await {
            Ok(t) => h::json(StatusCode::OK, &TriggerView::from(&t)),
            Err(resp) => resp,
        }
    }

    /// A trigger this scope may see, or the 404 (or 503) to answer.
    async fn load(&self, scope: &Scope, id: &str) -> Result<StoredTrigger, Resp> {
        let missing = || h::not_found(&format!("no trigger {id:?}: it was never stored, or was removed by retention or a purge"));
        let Ok(tid) = id.parse::<TriggerId>() else { return Err(missing()) };
        match self.store.get(tid).await {
            Ok(Some(t)) if scope.sees(&t.meta.tenant) => Ok(t),
            Ok(_) => Err(missing()),
            Err(e) => Err(h::unavailable("store_unavailable", &format!("the trigger could not be read: {e}"), 5)),
        }
    }

    pub(super) async fn list(&self, scope: &Scope, query: &str) -> Resp {
        let mut args = FilterArgs::default();
        let (mut limit, mut cursor, mut order) = (100usize, None, Order::Asc);
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.into_owned();
            match &*k {
                "tenant" => args.tenant = Some(v),
                "state" => args.state = Some(v),
                "source" => args.source = Some(v),
                "since" => args.since = Some(TimeArg::Text(v)),
                "until" => args.until = Some(TimeArg::Text(v)),
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => limit = n,
                    _ => return bad_request("limit must be a number from 1 to 1000"),
                },
                "cursor" => match v.parse::<TriggerId>() {
                    Ok(id) => cursor = Some(id),
                    Err(_) => return bad_request("cursor is not valid: pass back the next_cursor of the previous page"),
                },
                "order" => match v.as_str() {
                    "asc" | "oldest" => order = Order::Asc,
                    "desc" | "newest" => order = Order::Desc,
                    _ => return bad_request("order must be asc (oldest first) or desc (newest first)"),
                },
                other => return bad_request(&format!("unknown query parameter {other:?}; see docs/api.md")),
            }
        }
        let filter = match args.to_filter(scope) {
            Ok(f) => f,
            Err(resp) => return resp,
        };
        match self.store.list(filter, cursor, limit, order).await {
            Ok((items, next)) => h::json(
                StatusCode::OK,
                &serde_json::json!({
                    "items": items.iter().map(|(id, m)| Summary::new(*id, m)).collect::<Vec<_>>(),
                    "next_cursor": next.map(|n| n.to_string()),
                }),
            ),
            Err(e) => h::unavailable("store_unavailable", &format!("triggers could not be listed: {e}"), 5),
        }
    }

    pub(super) async fn delete(&self, scope: &Scope, id: &str) -> Resp {
        let t = match self.load(scope, id).await {
            Ok(t) => t,
            Err(resp) => return resp,
        };
        match self.store.update(t.id, Change::Delete).await {
            Ok(_) => {
                let detail = serde_json::json!({"id": id, "state": t.meta.state.as_str()});
                self.audit(scope, "trigger.delete", Some(&t.meta.tenant), detail, Some(1)).await;
                h::json(StatusCode::OK, &serde_json::json!({"id": id, "deleted": true}))
            }
            Err(e) => h::unavailable("store_unavailable", &format!("the trigger could not be deleted: {e}"), 5),
        }
    }

    pub(super) async fn purge(&self, scope: &Scope, req: Request<Incoming>) -> Resp {
        let body: FilterArgs = match json_body(req).await {
            Ok(b) => b,
            Err(resp) => return resp,
        };
        if body.rerun_plugin {
            return bad_request("rerun_plugin belongs to replay, not purge");
        }
        if body.is_empty() {
            return bad_request("refusing to purge every trigger: give at least one of tenant, state, source, since, until, ids");
        }
        let filter = match body.to_filter(scope) {
            Ok(f) => f,
            Err(resp) => return resp,
        };
        let (mut matched, mut purged, mut cursor) = (0u64, 0u64, None);
        loop {
            let (items, next) = match self.store.list(filter.clone(), cursor, 500, Order::Asc).await {
                Ok(page) => page,
                Err(e) => return h::unavailable("store_unavailable", &format!("purge stopped after {purged}: {e}"), 5),
            };
            matched += items.len() as u64;
            if !body.dry_run {
                for (id, _) in &items {
                    match self.store.update(*id, Change::Delete).await {
                        Ok(true) => purged += 1,
                        Ok(false) => {}
                        Err(e) => return h::unavailable("store_unavailable", &format!("purge stopped after {purged}: {e}"), 5),
                    }
                }
            }
            match next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        if !body.dry_run {
            let detail = serde_json::to_value(&body).unwrap_or_default();
            self.audit(scope, "trigger.purge", filter.tenant.as_deref(), detail, Some(purged)).await;
        }
        h::json(StatusCode::OK, &serde_json::json!({"matched": matched, "purged": purged, "dry_run": body.dry_run}))
    }
}

/// The JSON shape of one trigger (docs/api.md).
#[derive(Serialize)]
pub struct TriggerView {
    id: String,
    tenant: String,
    source: String,
    state: &'static str,
    received_at: String,
    received_at_ms: u64,
    idempotency_key: Option<String>,
    headers: Vec<(String, String)>,
    body: BodyView,
    transformed_body: Option<BodyView>,
    plugin_version: Option<u32>,
    route: Option<String>,
    note: Option<String>,
    attempts: Vec<AttemptView>,
}

/// A body as UTF-8 text when it is text, else base64.
#[derive(Serialize)]
pub struct BodyView {
    encoding: &'static str,
    data: String,
    bytes: usize,
}

impl BodyView {
    fn new(bytes: &[u8]) -> BodyView {
        match std::str::from_utf8(bytes) {
            Ok(s) => BodyView { encoding: "utf8", data: s.to_string(), bytes: bytes.len() },
            Err(_) => BodyView { encoding: "base64", data: base64::engine::general_purpose::STANDARD.encode(bytes), bytes: bytes.len() },
        }
    }
}

#[derive(Serialize)]
struct AttemptView {
    at: String,
    at_ms: u64,
    upstream: u16,
    outcome: &'static str,
    status: Option<u16>,
    duration_ms: u32,
    detail: String,
}

impl From<&StoredTrigger> for TriggerView {
    fn from(t: &StoredTrigger) -> TriggerView {
        let m = &t.meta;
        TriggerView {
            id: t.id.to_string(),
            tenant: m.tenant.clone(),
            source: m.source.clone(),
            state: m.state.as_str(),
            received_at: h::rfc3339(m.received_at_ms),
            received_at_ms: m.received_at_ms,
            idempotency_key: m.idempotency_key.clone(),
            headers: m.headers.clone(),
            body: BodyView::new(&t.body),
            transformed_body: t.transformed.as_deref().map(BodyView::new),
            plugin_version: Some(m.plugin_version).filter(|v| *v != 0),
            route: m.route.clone(),
            note: m.note.clone(),
            attempts: m
                .attempts
                .iter()
                .map(|a| AttemptView {
                    at: h::rfc3339(a.at_ms),
                    at_ms: a.at_ms,
                    upstream: a.upstream,
                    outcome: a.outcome.as_str(),
                    status: a.status,
                    duration_ms: a.duration_ms,
                    detail: a.detail.clone(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_the_formatter() {
        for ms in [0u64, 951_782_400_000, 1_795_488_591_123] {
            assert_eq!(parse_rfc3339(&h::rfc3339(ms)), Some(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-24T02:49:51Z"), Some(1_795_488_591_000));
        assert_eq!(parse_rfc3339("2026-11-24T03:49:51+01:00"), Some(1_795_488_591_000), "an offset is honoured");
        assert_eq!(parse_rfc3339("2026-13-24T02:49:51Z"), None);
        assert_eq!(parse_rfc3339("2026-02-30T02:49:51Z"), None, "no such day");
        assert_eq!(parse_rfc3339("yesterday"), None);
    }
}
