//! `GET /v1/fleet/pops` (operator only, on a PoP with `[fleet]`): what
//! `weir fleet status --json` shows, read from the heartbeats bucket through
//! this PoP's own fleet connection (`fleet::status::current`, shared with the CLI).

use std::time::Duration;

use http::StatusCode;

use super::Admin;
use crate::http::{self as h, Resp};

/// The longest the route waits for NATS before answering 503: the console
/// polls it, and a fleet that cannot be read must not hold the page.
const READ_WAIT: Duration = Duration::from_secs(5);

impl Admin {
    pub(super) async fn fleet_pops(&self) -> Resp {
        let Some(fleet) = self.fleet.as_ref() else {
            return h::error(
                StatusCode::CONFLICT,
                "no_fleet",
                "this gateway has no [fleet] section; fleet routes need one (see docs/fleet.md)",
            );
        };
        if !fleet.connected() {
            return nats_unavailable("this PoP is not connected to NATS right now");
        }
        let read = crate::fleet::status::current(&fleet.jetstream, &fleet.config.heartbeats_bucket);
        match tokio::time::timeout(READ_WAIT, read).await {
            Ok(Ok(status)) => h::json(StatusCode::OK, &status),
            Ok(Err(e)) => nats_unavailable(&e),
            Err(_) => nats_unavailable(&format!("NATS did not answer within {} s", READ_WAIT.as_secs())),
        }
    }
}

fn nats_unavailable(why: &str) -> Resp {
    h::unavailable("nats_unavailable", &format!("the fleet's heartbeats could not be read: {why}; this PoP's own view is in /v1/status"), 5)
}
