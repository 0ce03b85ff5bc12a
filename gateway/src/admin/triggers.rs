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
                t.parse::<u64>().ok().or_else(|| h::parse_rfc3339(t)).ok_or_else(|| {
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

/// The query string of `GET /v1/triggers`, parsed: pure, so the property
/// tests can throw any query at it.
#[derive(Debug)]
pub(super) struct ListQuery {
    pub args: FilterArgs,
    pub limit: usize,
    pub cursor: Option<TriggerId>,
    pub order: Order,
}

impl ListQuery {
    /// A 400 naming the parameter for anything it cannot take.
    pub(super) fn parse(query: &str) -> Result<ListQuery, Resp> {
        let mut q = ListQuery { args: FilterArgs::default(), limit: 100, cursor: None, order: Order::Asc };
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            let v = v.into_owned();
            match &*k {
                "tenant" => q.args.tenant = Some(v),
                "state" => q.args.state = Some(v),
                "source" => q.args.source = Some(v),
                "since" => q.args.since = Some(TimeArg::Text(v)),
                "until" => q.args.until = Some(TimeArg::Text(v)),
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => q.limit = n,
                    _ => return Err(bad_request("limit must be a number from 1 to 1000")),
                },
                "cursor" => match v.parse::<TriggerId>() {
                    Ok(id) => q.cursor = Some(id),
                    Err(_) => return Err(bad_request("cursor is not valid: pass back the next_cursor of the previous page")),
                },
                "order" => match v.as_str() {
                    "asc" | "oldest" => q.order = Order::Asc,
                    "desc" | "newest" => q.order = Order::Desc,
                    _ => return Err(bad_request("order must be asc (oldest first) or desc (newest first)")),
                },
                other => return Err(bad_request(&format!("unknown query parameter {other:?}; see docs/api.md"))),
            }
        }
        Ok(q)
    }
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
        let ListQuery { args, limit, cursor, order } = match ListQuery::parse(query) {
            Ok(q) => q,
            Err(resp) => return resp,
        };
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
    use proptest::prop_oneof;

    use super::*;

    #[test]
    fn rfc3339_round_trips_with_the_formatter() {
        for ms in [0u64, 951_782_400_000, 1_795_488_591_123] {
            assert_eq!(h::parse_rfc3339(&h::rfc3339(ms)), Some(ms));
        }
        assert_eq!(h::parse_rfc3339("2026-11-24T02:49:51Z"), Some(1_795_488_591_000));
        assert_eq!(h::parse_rfc3339("2026-11-24T03:49:51+01:00"), Some(1_795_488_591_000), "an offset is honoured");
        assert_eq!(h::parse_rfc3339("2026-13-24T02:49:51Z"), None);
        assert_eq!(h::parse_rfc3339("2026-02-30T02:49:51Z"), None, "no such day");
        assert_eq!(h::parse_rfc3339("yesterday"), None);
    }

    /// The status and the `message` of an error response.
    fn error_of(resp: Resp) -> (StatusCode, String) {
        use http_body_util::BodyExt as _;
        let status = resp.status();
        let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
        let bytes = rt.block_on(resp.into_body().collect()).expect("a full body").to_bytes();
        let json: serde_json::Value = serde_json::from_slice(&bytes).expect("an error body is JSON");
        (status, json["message"].as_str().expect("a message").to_string())
    }

    fn param() -> impl proptest::strategy::Strategy<Value = (String, String)> {
        use proptest::prelude::*;
        let name = prop_oneof![
            4 => prop::sample::select(vec!["tenant", "state", "source", "since", "until", "limit", "cursor", "order"]).prop_map(String::from),
            1 => any::<String>(),
        ];
        let value = prop_oneof![
            any::<String>(),
            "[0-9]{0,22}",
            "-?[0-9]{1,5}",
            prop::sample::select(vec![
                "pending",
                "dead",
                "asc",
                "newest",
                "2026-11-24T02:49:51Z",
                "2026-02-30T00:00:00Z",
                "1969-12-31T23:59:59Z",
                "0"
            ])
            .prop_map(String::from),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2})",
            "[0-9A-Za-z]{0,30}",
        ];
        (name, value)
    }

    proptest::proptest! {
        #![proptest_config(crate::config::fuzz::fuzz_config(512))]

        /// Any list query: parsed, or a 400 that names the parameter.
        #[test]
        fn list_query_fuzz(params in proptest::collection::vec(param(), 0..5), raw in proptest::option::of(".{0,40}")) {
            let query = match &raw {
                Some(raw) => raw.clone(),
                None => form_urlencoded::Serializer::new(String::new()).extend_pairs(&params).finish(),
            };
            let names: Vec<String> = form_urlencoded::parse(query.as_bytes()).map(|(k, _)| k.into_owned()).collect();
            let refused = match ListQuery::parse(&query) {
                Ok(q) => q.args.to_filter(&Scope::Operator).err(),
                Err(resp) => Some(resp),
            };
            if let Some(resp) = refused {
                let (status, message) = error_of(resp);
                proptest::prop_assert_eq!(status, StatusCode::BAD_REQUEST, "{}", message);
                proptest::prop_assert!(
                    names.iter().any(|k| message.contains(&format!("{k:?}")) || (!k.is_empty() && message.contains(k.as_str()))),
                    "{query:?} refused without naming its parameter: {message}"
                );
            }
        }

        /// Time arguments: Unix ms or RFC 3339, or a 400 naming the key.
        #[test]
        fn time_arg_fuzz(text in prop_oneof![
            proptest::prelude::any::<String>(),
            "[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?([Zz]|[+-][0-9]{2}:[0-9]{2})",
        ]) {
            use proptest::prelude::*;
            match TimeArg::Text(text.clone()).ms("since") {
                Ok(ms) => prop_assert!(text.parse::<u64>() == Ok(ms) || h::parse_rfc3339(&text) == Some(ms)),
                Err(resp) => {
                    let (status, message) = error_of(resp);
                    prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                    prop_assert!(message.starts_with("`since`"), "{}", message);
                }
            }
        }
    }
}
