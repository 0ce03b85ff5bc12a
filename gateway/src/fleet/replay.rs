//! Fleet replay: one request on `<command_subject>.replay` reaches every PoP
//! (a plain subscription, no queue group), and each runs the local replay
//! (`admin::Admin::start_replay`, the same filter, selection and jobs as
//! `POST /v1/replay`) and answers with its pop, job and counts. Progress is
//! asked on `<command_subject>.replay.status` with the jobs the PoPs named;
//! each PoP answers for its own job from the local job table.
//!
//! Both sides treat what they receive as untrusted: a request is parsed
//! strictly (an unknown filter key is refused, never ignored: ignoring it
//! would replay more than was asked), a reply is bounded and checked before
//! it is counted. A fleet replay always runs as a background job on each
//! PoP, so a PoP answers as soon as its selection is fixed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_nats::Client;
use bytes::Bytes;
use futures::StreamExt;
use http::StatusCode;
use http_body_util::BodyExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Fleet;
use crate::admin::{Admin, FilterArgs, Scope};
use crate::shutdown::{Shutdown, Tasks};

/// The version of the command messages; both sides refuse others.
pub const FORMAT: u32 = 1;
/// A command or reply larger than this is refused unread.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How many recent requests a PoP remembers, so a request sent twice starts one job.
const REMEMBERED: usize = 64;
/// Longest error text a reply may carry.
const MAX_ERROR: usize = 2048;

/// The subject replay requests go to.
pub fn subject(command_subject: &str) -> String {
    format!("{command_subject}.replay")
}

/// The subject progress requests go to.
pub fn status_subject(command_subject: &str) -> String {
    format!("{command_subject}.replay.status")
}

/// `<command_subject>.replay`: run this replay locally.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    pub format: u32,
    /// Chosen by the sender; the same id twice starts one job per PoP.
    pub request_id: String,
    /// The filter and options of `POST /v1/replay` (docs/api.md).
    pub replay: FilterArgs,
}

/// `<command_subject>.replay.status`: how far is the job you started?
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StatusRequest {
    pub format: u32,
    pub request_id: String,
    /// pop → its job id; a PoP not named here does not answer.
    pub jobs: BTreeMap<String, u64>,
}

/// A PoP's answer to either request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PopReply {
    pub format: u32,
    pub request_id: String,
    pub pop: String,
    /// `dry_run` (counted only), `running`, `done`, `failed`, `refused`
    /// (the PoP would not run it: `error` says why) or `unknown` (no such job).
    pub state: String,
    pub job: Option<u64>,
    pub matched: u64,
    pub replayed: u64,
    pub not_pending: u64,
    pub skipped: u64,
    pub error: Option<String>,
}

pub const STATES: &[&str] = &["dry_run", "running", "done", "failed", "refused", "unknown"];

fn valid_request_id(id: &str) -> Result<(), String> {
    crate::config::validate_nats_name(id).map_err(|e| format!("request_id: {e}"))
}

fn parse_command<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(format!("{} bytes, more than the {MAX_MESSAGE_BYTES} a fleet command may have", bytes.len()));
    }
    serde_json::from_slice(bytes).map_err(|e| format!("not a valid command: {e}"))
}

impl ReplayRequest {
    pub fn parse(bytes: &[u8]) -> Result<ReplayRequest, String> {
        let r: ReplayRequest = parse_command(bytes)?;
        if r.format != FORMAT {
            return Err(format!("command format {}, this PoP reads format {FORMAT}", r.format));
        }
        valid_request_id(&r.request_id)?;
        Ok(r)
    }
}

impl StatusRequest {
    pub fn parse(bytes: &[u8]) -> Result<StatusRequest, String> {
        let r: StatusRequest = parse_command(bytes)?;
        if r.format != FORMAT {
            return Err(format!("command format {}, this PoP reads format {FORMAT}", r.format));
        }
        valid_request_id(&r.request_id)?;
        Ok(r)
    }
}

impl PopReply {
    fn new(request_id: &str, pop: &str, state: &str) -> PopReply {
        PopReply {
            format: FORMAT,
            request_id: request_id.to_string(),
            pop: pop.to_string(),
            state: state.to_string(),
            job: None,
            matched: 0,
            replayed: 0,
            not_pending: 0,
            skipped: 0,
            error: None,
        }
    }

    fn refused(request_id: &str, pop: &str, error: String) -> PopReply {
        PopReply { error: Some(clip(error)), ..PopReply::new(request_id, pop, "refused") }
    }

    /// Parses and checks a reply to request `request_id` (it comes from the network).
    pub fn parse(bytes: &[u8], request_id: &str) -> Result<PopReply, String> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(format!("{} bytes, more than the {MAX_MESSAGE_BYTES} a reply may have", bytes.len()));
        }
        let r: PopReply = serde_json::from_slice(bytes).map_err(|e| format!("not a replay reply: {e}"))?;
        if r.format != FORMAT {
            return Err(format!("reply format {}, this weir reads format {FORMAT}", r.format));
        }
        if r.request_id != request_id {
            return Err(format!("answers request {:?}, not {request_id:?}", r.request_id));
        }
        crate::config::validate_nats_name(&r.pop).map_err(|e| format!("pop: {e}"))?;
        if !STATES.contains(&r.state.as_str()) {
            return Err(format!("unknown state {:?}", r.state));
        }
        if r.error.as_ref().is_some_and(|e| e.len() > MAX_ERROR) {
            return Err(format!("error text longer than {MAX_ERROR} bytes"));
        }
        let handled = r.replayed.checked_add(r.not_pending).and_then(|n| n.checked_add(r.skipped));
        if handled.is_none_or(|n| n > r.matched) {
            return Err(format!(
                "counts do not add up: replayed {} + not_pending {} + skipped {} > matched {}",
                r.replayed, r.not_pending, r.skipped, r.matched
            ));
        }
        Ok(r)
    }

    /// Replayed, not pending and skipped: the part of `matched` this PoP is done with.
    pub fn handled(&self) -> u64 {
        self.replayed + self.not_pending + self.skipped
    }
}

fn clip(mut s: String) -> String {
    if s.len() > MAX_ERROR {
        let mut end = MAX_ERROR - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

// ---------------------------------------------------------------------------
// The PoP side.

/// Starts answering fleet replay commands, as a background task shutdown waits for.
pub fn spawn(fleet: Fleet, admin: Arc<Admin>, metrics: Arc<crate::telemetry::Metrics>, shutdown: Shutdown, tasks: &Tasks) {
    tasks.spawn("fleet replay commands", serve(fleet, admin, metrics, shutdown));
}

async fn serve(fleet: Fleet, admin: Arc<Admin>, metrics: Arc<crate::telemetry::Metrics>, mut shutdown: Shutdown) {
    let (start, status) = (subject(&fleet.config.command_subject), status_subject(&fleet.config.command_subject));
    // Subscriptions are kept by the client across reconnections (and made
    // once connected when NATS is down at startup).
    let (mut starts, mut statuses) = match (fleet.client.subscribe(start.clone()).await, fleet.client.subscribe(status.clone()).await) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(subject = %start, error = %e, "cannot subscribe to fleet replay commands; this PoP will not answer them");
            return;
        }
    };
    let mut pop = Responder { pop: fleet.config.pop.clone(), admin, recent: VecDeque::new() };
    loop {
        let (msg, command) = tokio::select! {
            _ = shutdown.wait() => break,
            m = starts.next() => (m, "replay"),
            m = statuses.next() => (m, "replay_status"),
        };
        let Some(msg) = msg else { break };
        let Some(reply_to) = msg.reply.clone() else {
            metrics.fleet_command(command, "invalid");
            tracing::warn!(subject = %msg.subject, "fleet command without a reply subject ignored");
            continue;
        };
        let answer = match command {
            "replay" => pop.start(&msg.payload).await,
            _ => pop.status(&msg.payload).await,
        };
        let Some(answer) = answer else { continue };
        metrics.fleet_command(command, if answer.state == "refused" { "refused" } else { "ok" });
        let bytes = serde_json::to_vec(&answer).unwrap_or_default();
        if let Err(e) = fleet.client.publish(reply_to, bytes.into()).await {
            tracing::warn!(error = %e, "fleet replay answer could not be sent");
        }
    }
    let _ = starts.unsubscribe().await;
    let _ = statuses.unsubscribe().await;
}

/// Answers commands for one PoP.
struct Responder {
    pop: String,
    admin: Arc<Admin>,
    /// Recent request ids and the answer given, so a repeated request does not start a second job.
    recent: VecDeque<(String, PopReply)>,
}

impl Responder {
    async fn start(&mut self, payload: &[u8]) -> Option<PopReply> {
        let req = match ReplayRequest::parse(payload) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "fleet replay request refused");
                return Some(PopReply::refused("", &self.pop, e));
            }
        };
        if let Some((_, answer)) = self.recent.iter().find(|(id, _)| *id == req.request_id) {
            return Some(answer.clone());
        }
        let mut args = req.replay;
        // Every fleet replay is a job: the answer comes once the selection is
        // fixed, and progress is asked for separately.
        args.background = !args.dry_run;
        let resp = self.admin.start_replay(&Scope::Operator, args).await;
        let (status, body) = read(resp).await;
        let answer = started(&req.request_id, &self.pop, status, &body);
        tracing::info!(request_id = %req.request_id, state = %answer.state, job = ?answer.job, matched = answer.matched, "fleet replay request answered");
        if self.recent.len() == REMEMBERED {
            self.recent.pop_front();
        }
        self.recent.push_back((req.request_id, answer.clone()));
        Some(answer)
    }

    async fn status(&self, payload: &[u8]) -> Option<PopReply> {
        let req = match StatusRequest::parse(payload) {
            Ok(r) => r,
            Err(e) => return Some(PopReply::refused("", &self.pop, e)),
        };
        // Only the PoPs named answer: the others stay quiet rather than add noise.
        let job = *req.jobs.get(&self.pop)?;
        let resp = self.admin.replay_job(&Scope::Operator, &job.to_string());
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            let mut r = PopReply::new(&req.request_id, &self.pop, "unknown");
            r.job = Some(job);
            r.error = Some(format!("no replay job {job} on this PoP"));
            return Some(r);
        }
        let (_, body) = read(resp).await;
        Some(from_job(&req.request_id, &self.pop, &body))
    }
}

/// An admin answer's status and JSON body.
async fn read(resp: crate::http::Resp) -> (StatusCode, Value) {
    let status = resp.status();
    let bytes = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

/// The answer to a replay request from what `POST /v1/replay` answered.
fn started(request_id: &str, pop: &str, status: StatusCode, body: &Value) -> PopReply {
    if !status.is_success() {
        let message = body["message"].as_str().map_or_else(|| format!("the replay answered {status}"), str::to_string);
        return PopReply::refused(request_id, pop, message);
    }
    let state = if body["dry_run"] == true {
        "dry_run"
    } else if body["job"].is_u64() {
        "running"
    } else {
        "done"
    };
    PopReply {
        job: body["job"].as_u64(),
        matched: count(body, "matched"),
        replayed: count(body, "replayed"),
        not_pending: count(body, "not_pending"),
        skipped: count(body, "skipped"),
        ..PopReply::new(request_id, pop, state)
    }
}

/// The answer to a status request from the job `GET /v1/replays/{job}` shows.
fn from_job(request_id: &str, pop: &str, job: &Value) -> PopReply {
    let state = job["state"].as_str().filter(|s| matches!(*s, "running" | "done" | "failed")).unwrap_or("unknown");
    PopReply {
        job: job["job"].as_u64(),
        matched: count(job, "matched"),
        replayed: count(job, "replayed"),
        not_pending: count(job, "not_pending"),
        skipped: count(job, "skipped"),
        error: job["error"].as_str().map(|e| clip(e.to_string())),
        ..PopReply::new(request_id, pop, state)
    }
}

// ---------------------------------------------------------------------------
// The sender's side (the CLI).

/// What came back for one request.
#[derive(Debug, Default)]
pub struct Collected {
    /// The first valid answer of each PoP.
    pub replies: BTreeMap<String, PopReply>,
    /// Answers that were refused (malformed, for another request), with the reason.
    pub invalid: Vec<String>,
}

/// A fresh request id (`r` + time + randomness).
pub fn new_request_id() -> String {
    use rand::Rng;
    format!("r{}-{:08x}", crate::admin::now_ms(), rand::rng().random::<u32>())
}

/// Publishes `payload` on `subject` with a reply inbox and collects the
/// answers to `request_id` until every PoP in `expected` answered (at least
/// one answer when `expected` is empty) or `timeout` passed.
pub async fn collect(
    client: &Client,
    subject: String,
    payload: Bytes,
    request_id: &str,
    expected: &BTreeSet<String>,
    timeout: Duration,
) -> Result<Collected, String> {
    let inbox = client.new_inbox();
    let mut sub = client.subscribe(inbox.clone()).await.map_err(|e| format!("cannot subscribe to the reply inbox: {e}"))?;
    client.publish_with_reply(subject.clone(), inbox, payload).await.map_err(|e| format!("cannot publish to {subject}: {e}"))?;
    client.flush().await.map_err(|e| format!("cannot send the request to NATS: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut got = Collected::default();
    loop {
        let done = if expected.is_empty() { false } else { expected.iter().all(|p| got.replies.contains_key(p)) };
        if done {
            break;
        }
        let msg = tokio::select! {
            m = sub.next() => m,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(msg) = msg else { break };
        match PopReply::parse(&msg.payload, request_id) {
            Ok(r) => {
                if got.replies.contains_key(&r.pop) {
                    got.invalid.push(format!("a second answer claiming to be {} (ignored)", r.pop));
                } else {
                    got.replies.insert(r.pop.clone(), r);
                }
            }
            Err(e) => got.invalid.push(e),
        }
    }
    let _ = sub.unsubscribe().await;
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply() -> PopReply {
        PopReply { job: Some(7), matched: 5, replayed: 3, not_pending: 1, skipped: 1, ..PopReply::new("r1", "fra1", "done") }
    }

    #[test]
    fn a_request_is_parsed_strictly() {
        let ok = br#"{"format":1,"request_id":"r1-abc","replay":{"tenant":"acme","state":"dead","dry_run":true}}"#;
        let r = ReplayRequest::parse(ok).expect("valid");
        assert_eq!(r.replay.tenant.as_deref(), Some("acme"));
        assert!(r.replay.dry_run);
        // An unknown filter key would widen the replay if ignored: refused.
        let unknown = br#"{"format":1,"request_id":"r1","replay":{"tenant":"acme","tennant":"x"}}"#;
        assert!(ReplayRequest::parse(unknown).expect_err("refused").contains("tennant"));
        assert!(ReplayRequest::parse(br#"{"format":2,"request_id":"r1","replay":{}}"#).is_err());
        assert!(ReplayRequest::parse(br#"{"format":1,"request_id":"r 1","replay":{}}"#).is_err());
        assert!(ReplayRequest::parse(br#"{"format":1,"request_id":"r1"}"#).is_err());
        assert!(ReplayRequest::parse(&vec![b' '; MAX_MESSAGE_BYTES + 1]).expect_err("refused").contains("bytes"));
        let s = StatusRequest::parse(br#"{"format":1,"request_id":"r1","jobs":{"fra1":12}}"#).expect("valid");
        assert_eq!(s.jobs["fra1"], 12);
    }

    #[test]
    fn a_reply_is_checked_before_it_counts() {
        let bytes = |r: &PopReply| serde_json::to_vec(r).expect("json");
        assert_eq!(PopReply::parse(&bytes(&reply()), "r1"), Ok(reply()));
        assert!(PopReply::parse(&bytes(&reply()), "r2").expect_err("other request").contains("r1"));
        let bad = |f: fn(&mut PopReply)| {
            let mut r = reply();
            f(&mut r);
            PopReply::parse(&bytes(&r), "r1").expect_err("refused")
        };
        assert!(bad(|r| r.pop = "fra 1".into()).contains("pop"));
        assert!(bad(|r| r.state = "exploded".into()).contains("state"));
        assert!(bad(|r| r.replayed = 10).contains("add up"));
        assert!(bad(|r| r.replayed = u64::MAX).contains("add up"));
        assert!(bad(|r| r.error = Some("x".repeat(MAX_ERROR + 1))).contains("error"));
        assert!(PopReply::parse(b"[1,2]", "r1").is_err());
    }

    #[test]
    fn admin_answers_become_pop_replies() {
        let dry = started("r1", "fra1", StatusCode::OK, &serde_json::json!({"matched": 4, "replayed": 0, "dry_run": true}));
        assert_eq!((dry.state.as_str(), dry.matched, dry.job), ("dry_run", 4, None));
        let job = started("r1", "fra1", StatusCode::ACCEPTED, &serde_json::json!({"job": 99, "matched": 4, "replayed": 0}));
        assert_eq!((job.state.as_str(), job.matched, job.job), ("running", 4, Some(99)));
        let refused = started(
            "r1",
            "fra1",
            StatusCode::BAD_REQUEST,
            &serde_json::json!({"error": "invalid_request", "message": "state \"x\" is not one of"}),
        );
        assert_eq!(refused.state, "refused");
        assert!(refused.error.as_deref().is_some_and(|e| e.contains("is not one of")));
        let done = from_job(
            "r1",
            "fra1",
            &serde_json::json!({"job": 99, "state": "done", "matched": 4, "replayed": 3, "not_pending": 0, "skipped": 1}),
        );
        assert_eq!((done.state.as_str(), done.handled()), ("done", 4));
        // Every reply this side builds passes the other side's checks.
        for r in [dry, job, refused, done] {
            PopReply::parse(&serde_json::to_vec(&r).expect("json"), "r1").expect("valid");
        }
    }
}
