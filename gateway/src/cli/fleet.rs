//! The fleet commands: `weir fleet status` and `weir replay --fleet`. They
//! talk to NATS directly (the `[fleet]` section of `--config`, or `--nats
//! URL`), never to a PoP's admin API, so they work with any PoP down.
//!
//! Exit codes add one to the CLI's (docs/cli.md): 6 when the command worked
//! but something needs attention (a flag in `fleet status`; a PoP that did
//! not answer a fleet replay, or whose job failed).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::progress::{Progress, Total, Unit};
use super::{CliError, FilterFlags, human, print_json, table};
use crate::cli::human::duration_ms;
use crate::config::{Config, FleetConfig};
use crate::fleet::heartbeat::Heartbeat;
use crate::fleet::replay::{self, Collected, PopReply, ReplayRequest, StatusRequest};
use crate::fleet::status::{self, FleetStatus, PopStatus};

/// Where the fleet's NATS is, when not taken from `--config`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL (nats:// or tls://), instead of the [fleet] section of --config.
    /// Credentials: WEIR_NATS_TOKEN, or WEIR_NATS_USER and WEIR_NATS_PASSWORD, or --nats-creds
    #[arg(long, env = "WEIR_NATS_URL")]
    pub nats: Option<String>,
    /// With --nats: a .creds file (JWT and nkey seed)
    #[arg(long, env = "WEIR_NATS_CREDS", requires = "nats")]
    pub nats_creds: Option<PathBuf>,
    /// With --nats: CA certificates (PEM) the NATS servers' certificates chain to
    #[arg(long, env = "WEIR_NATS_CA_FILE", requires = "nats")]
    pub nats_ca_file: Option<PathBuf>,
}

/// The connection settings: `--nats URL` (credentials from the environment),
/// else the `[fleet]` section of `--config`.
pub fn fleet_config(nats: &NatsArgs, config: Option<&Path>) -> Result<FleetConfig, CliError> {
    if let Some(url) = &nats.nats {
        if !["nats://", "tls://"].iter().any(|s| url.starts_with(s)) {
            return Err(CliError::Usage(format!("--nats {url:?} must be nats://host:port or tls://host:port")));
        }
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        return Ok(FleetConfig {
            nats_urls: vec![url.clone()],
            pop: "cli".into(),
            token: env("WEIR_NATS_TOKEN"),
            user: env("WEIR_NATS_USER"),
            password: env("WEIR_NATS_PASSWORD"),
            creds_file: nats.nats_creds.clone(),
            ca_file: nats.nats_ca_file.clone(),
            ..FleetConfig::default()
        });
    }
    let Some(path) = config else {
        return Err(CliError::Usage("give --config FILE (its [fleet] section) or --nats URL".into()));
    };
    let c = Config::load(Some(path)).map_err(|e| CliError::Usage(e.to_string()))?;
    c.fleet.ok_or_else(|| CliError::Usage(format!("{} has no [fleet] section; give --nats URL instead", path.display())))
}

pub(super) async fn connect(f: &FleetConfig, what: &str) -> Result<async_nats::Client, CliError> {
    crate::fleet::connect::foreground(f, what).await.map_err(|e| match e {
        crate::fleet::FleetError::Credentials { .. } => CliError::Usage(e.to_string()),
        other => CliError::Failed(other.to_string()),
    })
}

/// The fleet as its heartbeats show it now.
async fn read_status(f: &FleetConfig, client: &async_nats::Client) -> Result<FleetStatus, CliError> {
    let js = async_nats::jetstream::new(client.clone());
    status::current(&js, &f.heartbeats_bucket).await.map_err(CliError::Failed)
}

/// `weir fleet status`.
pub async fn fleet_status(f: &FleetConfig, json: bool) -> Result<(), CliError> {
    let client = connect(f, "weir fleet status").await?;
    let s = read_status(f, &client).await?;
    if json {
        print_json(&serde_json::to_value(&s).unwrap_or(Value::Null));
    } else {
        print_status(&s);
    }
    match s.flags.len() {
        0 => Ok(()),
        n => Err(CliError::Attention(format!("{n} flag(s) raised"))),
    }
}

fn print_status(s: &FleetStatus) {
    let rows: Vec<Vec<String>> = s.pops.iter().map(pop_row).collect();
    table::print(&["POP", "STATE", "AGE", "VERSION", "BACKLOG", "OLDEST", "RATE/S", "UPSTREAMS", "DISK USED/BUDGET"], &rows);
    for i in &s.invalid {
        println!("invalid heartbeat under key {}: {}", printable(&i.key), printable(&i.error));
    }
    if s.flags.is_empty() {
        println!("no flags");
    }
    for flag in &s.flags {
        println!("FLAG {}: {}", flag.kind, printable(&flag.message));
    }
}

fn pop_row(p: &PopStatus) -> Vec<String> {
    let hb: &Heartbeat = &p.heartbeat;
    vec![
        printable(&p.pop),
        p.state.to_string(),
        duration_ms(p.age_ms),
        printable(&hb.version),
        hb.backlog.to_string(),
        hb.oldest_pending_age_ms.map_or("-".into(), duration_ms),
        format!("{:.1}", hb.delivery_rate_per_sec),
        upstreams_text(hb),
        format!("{} / {}", human::bytes(hb.disk.used_bytes), human::bytes(hb.disk.budget_bytes)),
    ]
}

/// `2 healthy, 1 open`, or `-` without upstreams.
fn upstreams_text(hb: &Heartbeat) -> String {
    let mut by_state: BTreeMap<&str, usize> = BTreeMap::new();
    for u in &hb.upstreams {
        *by_state.entry(u.state.as_str()).or_default() += 1;
    }
    if by_state.is_empty() {
        return "-".into();
    }
    by_state.iter().map(|(s, n)| format!("{n} {}", printable(s))).collect::<Vec<_>>().join(", ")
}

/// Text from NATS goes to a terminal: no control characters (escape sequences).
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// What `weir replay --fleet` was asked.
pub struct FleetReplay<'a> {
    pub filter: &'a FilterFlags,
    pub ids: &'a [String],
    pub dry_run: bool,
    pub rerun_plugin: bool,
    pub max_per_sec: Option<u32>,
    /// How long to wait for the PoPs' answers, per round.
    pub timeout: Duration,
    pub json: bool,
}

/// `weir replay --fleet FILTER`: every live PoP replays locally; the counts
/// are summed, then the jobs followed to the end (like a local background replay).
pub async fn fleet_replay(f: &FleetConfig, r: &FleetReplay<'_>) -> Result<(), CliError> {
    let mut body = r.filter.json()?;
    if !r.ids.is_empty() {
        body.insert("ids".into(), Value::from(r.ids.to_vec()));
    }
    for (k, v) in [("dry_run", r.dry_run), ("rerun_plugin", r.rerun_plugin)] {
        if v {
            body.insert(k.into(), Value::Bool(true));
        }
    }
    if let Some(n) = r.max_per_sec {
        body.insert("max_per_sec".into(), Value::from(n));
    }
    // The same filter type the PoPs parse: a bad flag fails here, before anything is sent.
    let args = serde_json::from_value(Value::Object(body)).map_err(|e| CliError::Usage(format!("invalid replay filter: {e}")))?;
    let client = connect(f, "weir replay --fleet").await?;
    let fleet = read_status(f, &client).await?;
    let live: BTreeSet<String> = fleet.pops.iter().filter(|p| p.state == "ok").map(|p| p.pop.clone()).collect();
    let down: Vec<String> = fleet.pops.iter().filter(|p| p.state != "ok").map(|p| p.pop.clone()).collect();
    let request_id = replay::new_request_id();
    let request = ReplayRequest { format: replay::FORMAT, request_id: request_id.clone(), replay: args };
    let payload = serde_json::to_vec(&request).unwrap_or_default();
    let subject = replay::subject(&f.command_subject);
    let mut got = replay::collect(&client, subject, payload.into(), &request_id, &live, r.timeout).await.map_err(CliError::Failed)?;
    let mut outcome = Outcome {
        request_id,
        dry_run: r.dry_run,
        expected: live,
        down,
        lost: Vec::new(),
        invalid: std::mem::take(&mut got.invalid),
        replies: got.replies,
    };
    if !r.dry_run {
        follow(f, &client, &mut outcome, r.timeout, r.json).await?;
    }
    outcome.finish(r.json)
}

/// `weir replay --fleet --status POP:JOB...`: one look at those jobs.
pub async fn fleet_replay_status(f: &FleetConfig, jobs: &[String], timeout: Duration, json: bool) -> Result<(), CliError> {
    let mut wanted = BTreeMap::new();
    for j in jobs {
        let (pop, job) = j
            .split_once(':')
            .and_then(|(p, j)| Some((p, j.parse::<u64>().ok()?)))
            .ok_or_else(|| CliError::Usage(format!("--status {j:?}: give POP:JOB, as `weir replay --fleet` printed it")))?;
        crate::config::validate_nats_name(pop).map_err(|e| CliError::Usage(format!("--status {j:?}: {e}")))?;
        wanted.insert(pop.to_string(), job);
    }
    let client = connect(f, "weir replay --fleet --status").await?;
    let request_id = replay::new_request_id();
    let got = status_round(f, &client, &request_id, &wanted, timeout).await?;
    let expected: BTreeSet<String> = wanted.keys().cloned().collect();
    let outcome =
        Outcome { request_id, dry_run: false, expected, down: Vec::new(), lost: Vec::new(), invalid: got.invalid, replies: got.replies };
    outcome.finish(json)
}

async fn status_round(
    f: &FleetConfig,
    client: &async_nats::Client,
    request_id: &str,
    jobs: &BTreeMap<String, u64>,
    timeout: Duration,
) -> Result<Collected, CliError> {
    let request = StatusRequest { format: replay::FORMAT, request_id: request_id.to_string(), jobs: jobs.clone() };
    let payload = serde_json::to_vec(&request).unwrap_or_default();
    let expected: BTreeSet<String> = jobs.keys().cloned().collect();
    let mut got = replay::collect(client, replay::status_subject(&f.command_subject), payload.into(), request_id, &expected, timeout)
        .await
        .map_err(CliError::Failed)?;
    // Only the PoPs asked about count; anything else answering is noise.
    got.replies.retain(|pop, _| jobs.contains_key(pop));
    Ok(got)
}

/// Asks for the jobs' progress until none is running; a PoP that stops
/// answering is left out (and named) rather than waited for forever.
async fn follow(f: &FleetConfig, client: &async_nats::Client, o: &mut Outcome, timeout: Duration, json: bool) -> Result<(), CliError> {
    let mut bar = Progress::on_stderr(json, "fleet replay", Unit::Triggers, Total::Unknown);
    loop {
        let running: BTreeMap<String, u64> =
            o.replies.values().filter(|r| r.state == "running").filter_map(|r| Some((r.pop.clone(), r.job?))).collect();
        let (done, total) = o.replies.values().fold((0, 0), |(d, t), r| (d + r.handled(), t + r.matched));
        bar.set_total(Total::Exact(total));
        if running.is_empty() {
            bar.finish(done);
            break;
        }
        bar.update(done);
        // Polling a remote job: there is no event to wait on from here.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let got = status_round(f, client, &replay::new_request_id(), &running, timeout).await?;
        o.invalid.extend(got.invalid);
        for pop in running.keys() {
            match got.replies.get(pop) {
                Some(r) => {
                    o.replies.insert(pop.clone(), r.clone());
                }
                None => {
                    o.lost.push(pop.clone());
                    if let Some(r) = o.replies.get_mut(pop) {
                        r.error = Some("stopped answering; its job may still be running".into());
                        r.state = "unknown".into();
                    }
                }
            }
        }
    }
    Ok(())
}

/// The PoPs' answers to one fleet replay.
struct Outcome {
    request_id: String,
    dry_run: bool,
    /// The PoPs whose heartbeat was live: each should answer.
    expected: BTreeSet<String>,
    /// PoPs with a stale or stopped heartbeat (not waited for).
    down: Vec<String>,
    /// PoPs that answered, then stopped answering while followed.
    lost: Vec<String>,
    invalid: Vec<String>,
    replies: BTreeMap<String, PopReply>,
}

impl Outcome {
    fn missing(&self) -> Vec<String> {
        self.expected.iter().filter(|p| !self.replies.contains_key(*p)).cloned().collect()
    }

    fn total(&self, key: fn(&PopReply) -> u64) -> u64 {
        self.replies.values().map(key).sum()
    }

    /// Prints the answers and the total; the exit status says whether all went well.
    fn finish(self, json: bool) -> Result<(), CliError> {
        let missing = self.missing();
        let total = serde_json::json!({
            "matched": self.total(|r| r.matched),
            "replayed": self.total(|r| r.replayed),
            "not_pending": self.total(|r| r.not_pending),
            "skipped": self.total(|r| r.skipped),
        });
        if json {
            print_json(&serde_json::json!({
                "format": replay::FORMAT,
                "request_id": self.request_id,
                "dry_run": self.dry_run,
                "pops": self.replies.values().collect::<Vec<_>>(),
                "total": total,
                "missing": missing,
                "not_running": self.down,
                "lost": self.lost,
                "invalid_replies": self.invalid,
            }));
        } else {
            self.print(&missing, &total);
        }
        let refused: Vec<&PopReply> = self.replies.values().filter(|r| r.state == "refused").collect();
        if let Some(r) = refused.first() {
            return Err(CliError::Refused(format!(
                "{} PoP(s) refused the replay; {}: {}",
                refused.len(),
                r.pop,
                r.error.as_deref().unwrap_or("")
            )));
        }
        let failed = self.replies.values().filter(|r| matches!(r.state.as_str(), "failed" | "unknown")).count();
        let mut problems = Vec::new();
        if self.replies.is_empty() {
            problems.push("no PoP answered".to_string());
        }
        if !missing.is_empty() {
            problems.push(format!("{} PoP(s) did not answer", missing.len()));
        }
        if failed > 0 {
            problems.push(format!("{failed} PoP job(s) failed or were lost"));
        }
        if problems.is_empty() { Ok(()) } else { Err(CliError::Attention(problems.join("; "))) }
    }

    fn print(&self, missing: &[String], total: &Value) {
        let rows: Vec<Vec<String>> = self
            .replies
            .values()
            .map(|r| {
                vec![
                    printable(&r.pop),
                    r.job.map_or("-".into(), |j| j.to_string()),
                    r.state.clone(),
                    r.matched.to_string(),
                    r.replayed.to_string(),
                    r.not_pending.to_string(),
                    r.skipped.to_string(),
                    printable(r.error.as_deref().unwrap_or("")),
                ]
            })
            .collect();
        table::print(&["POP", "JOB", "STATE", "MATCHED", "REPLAYED", "NOT PENDING", "SKIPPED", "ERROR"], &rows);
        println!(
            "total: matched {}  replayed {}  not pending {}  skipped {}  ({} PoP(s) answered{})",
            total["matched"],
            total["replayed"],
            total["not_pending"],
            total["skipped"],
            self.replies.len(),
            if self.dry_run { ", dry run" } else { "" }
        );
        if !missing.is_empty() {
            println!("did not answer: {}", missing.join(", "));
        }
        if !self.down.is_empty() {
            println!("not running (stale or stopped heartbeat, not asked): {}", self.down.join(", "));
        }
        if !self.lost.is_empty() {
            println!("stopped answering: {}", self.lost.join(", "));
        }
        for i in &self.invalid {
            println!("refused an answer: {}", printable(i));
        }
        let jobs: Vec<String> = self.replies.values().filter_map(|r| Some(format!("{}:{}", r.pop, r.job?))).collect();
        if !jobs.is_empty() {
            println!("progress: weir replay --fleet --status {}", jobs.join(" "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_text_loses_its_control_characters() {
        assert_eq!(printable("fra1\u{1b}[2J\n"), "fra1?[2J?");
    }

    #[test]
    fn nats_flags_need_a_nats_url_scheme_and_config_needs_a_fleet_section() {
        let nats = NatsArgs { nats: Some("127.0.0.1:4222".into()), ..NatsArgs::default() };
        assert!(matches!(fleet_config(&nats, None), Err(CliError::Usage(m)) if m.contains("nats://")));
        let nats = NatsArgs { nats: Some("nats://127.0.0.1:4222".into()), ..NatsArgs::default() };
        assert_eq!(fleet_config(&nats, None).expect("ok").nats_urls, ["nats://127.0.0.1:4222"]);
        assert!(matches!(fleet_config(&NatsArgs::default(), None), Err(CliError::Usage(_))));
    }
}
