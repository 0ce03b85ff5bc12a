//! The append-only audit log: uploads, activations, rollbacks, replays,
//! pauses, deletes and purges (who, when, what, how many), stored durably in
//! the control file and readable at `GET /v1/audit` (tenants see their own).

use http::StatusCode;
use serde::{Deserialize, Serialize};

use super::{Admin, Scope};
use crate::http::{self as h, Resp};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub at: String,
    pub at_ms: u64,
    /// `operator` or `tenant:<id>`.
    pub actor: String,
    /// e.g. `plugin.upload`, `plugin.rollback`, `trigger.replay`, `trigger.purge`, `tenant.pause`.
    pub action: String,
    pub tenant: Option<String>,
    pub count: Option<u64>,
    pub detail: serde_json::Value,
}

impl Admin {
    /// Records an action. A failure to record is logged loudly but does not
    /// undo the action, which has already happened.
    pub(super) async fn audit(&self, scope: &Scope, action: &str, tenant: Option<&str>, detail: serde_json::Value, count: Option<u64>) {
        let at_ms = super::now_ms();
        let entry = Entry {
            at: h::rfc3339(at_ms),
            at_ms,
            actor: scope.actor(),
            action: action.to_string(),
            tenant: tenant.map(str::to_string),
            count,
            detail,
        };
        let Ok(bytes) = serde_json::to_vec(&entry) else { return };
        let repo = self.repo.clone();
        match tokio::task::spawn_blocking(move || repo.audit(at_ms, &bytes)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(action, error = %e, "audit entry could not be stored"),
            Err(e) => tracing::error!(action, error = %e, "audit task failed"),
        }
    }

    pub(super) async fn audit_log(&self, scope: &Scope, query: &str) -> Resp {
        let mut limit = 100usize;
        let mut tenant: Option<String> = None;
        let mut before: Option<(u64, u64)> = None;
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match &*k {
                "limit" => match v.parse::<usize>() {
                    Ok(n) if (1..=1000).contains(&n) => limit = n,
                    _ => return super::triggers::bad_request("limit must be a number from 1 to 1000"),
                },
                "tenant" => tenant = Some(v.into_owned()),
                "cursor" => match v.split_once('-').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?))) {
                    Some(c) => before = Some(c),
                    None => return super::triggers::bad_request("cursor is not valid: pass back the next_cursor of the previous page"),
                },
                other => return super::triggers::bad_request(&format!("unknown query parameter {other:?}")),
            }
        }
        if let (Some(own), Some(asked)) = (scope.tenant(), &tenant)
            && own != asked
        {
            return super::unknown_tenant(asked);
        }
        let want = tenant.or(scope.tenant().map(str::to_string));
        let mut items = Vec::new();
        let mut next = None;
        // Scan newest first, keeping what this scope may see.
        let repo = self.repo.clone();
        let mut cursor = before;
        'scan: loop {
            let r = repo.clone();
            let page = match tokio::task::spawn_blocking(move || r.audit_entries(cursor, 500)).await {
                Ok(Ok(p)) => p,
                _ => return h::unavailable("store_unavailable", "the audit log could not be read", 5),
            };
            if page.is_empty() {
                break;
            }
            for (key, bytes) in page {
                cursor = Some(key);
                let Ok(entry) = serde_json::from_slice::<Entry>(&bytes) else { continue };
                if want.as_ref().is_some_and(|t| entry.tenant.as_ref() != Some(t)) {
                    continue;
                }
                items.push(entry);
                if items.len() >= limit {
                    next = Some(format!("{}-{}", key.0, key.1));
                    break 'scan;
                }
            }
        }
        h::json(StatusCode::OK, &serde_json::json!({"items": items, "next_cursor": next}))
    }
}
