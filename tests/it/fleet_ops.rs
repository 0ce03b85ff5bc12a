//! Fleet operations across three real `weir` processes and a real
//! nats-server: `weir fleet status` (heartbeats, and each flag appearing on
//! the event that causes it) and `weir replay --fleet` (dry run, real
//! replay followed to the end, progress, refusals, untrusted commands).

use std::path::PathBuf;
use std::time::Duration;

use futures_util::StreamExt;
use http::StatusCode;
use serde_json::Value;

use crate::natsd::NatsServer;
use crate::support::{Client, Mode, TOKEN, Upstream, WeirProcess, config_toml, eventually, weir_bin};

const WAIT: Duration = Duration::from_secs(60);

/// A PoP: its config file (in its own directory) and the running process.
struct Pop {
    name: &'static str,
    _dir: tempfile::TempDir,
    weir: WeirProcess,
}

fn start_pop(nats: &NatsServer, name: &'static str, forward: &str) -> Pop {
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("{forward}\n{}heartbeat_interval_ms = 200\n", nats.fleet_toml(name));
    let file: PathBuf = dir.path().join("weir.toml");
    std::fs::write(&file, config_toml(&dir.path().join("data"), &extra)).expect("write config");
    let weir = WeirProcess::start(&file);
    Pop { name, _dir: dir, weir }
}

fn forward_to(url: &str, extra: &str) -> String {
    format!("[forward]\nupstreams = [\"{url}\"]\n{extra}\n")
}

/// Runs the real CLI; returns (exit code, stdout, stderr).
async fn weir(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(weir_bin())
        .args(args)
        .env_remove("WEIR_CONFIG")
        .env_remove("WEIR_NATS_URL")
        .output()
        .await
        .expect("run weir");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `weir fleet status --json` (exit code and the parsed document).
async fn fleet_status(nats: &NatsServer) -> (i32, Value) {
    let (code, out, err) = weir(&["fleet", "status", "--nats", &nats.url(), "--json"]).await;
    let v = serde_json::from_str(&out).unwrap_or_else(|e| panic!("fleet status --json is not JSON ({e}): {out}\n{err}"));
    (code, v)
}

fn pop<'a>(s: &'a Value, name: &str) -> Option<&'a Value> {
    s["pops"].as_array()?.iter().find(|p| p["pop"] == name)
}

fn has_flag(s: &Value, kind: &str, pop: Option<&str>, tenant: Option<&str>) -> bool {
    s["flags"].as_array().is_some_and(|f| {
        f.iter().any(|f| f["kind"] == kind && pop.is_none_or(|p| f["pop"] == p) && tenant.is_none_or(|t| f["tenant"] == t))
    })
}

/// Polls `weir fleet status --json` until `pred` holds; returns that reading.
async fn status_until(nats: &NatsServer, what: &str, pred: impl Fn(&Value) -> bool) -> (i32, Value) {
    let mut last = None;
    let found = tokio::time::timeout(WAIT, async {
        loop {
            let (code, s) = fleet_status(nats).await;
            if pred(&s) {
                return (code, s);
            }
            last = Some(s);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("fleet status never showed {what}; last: {last:#?}"))
}

async fn ingest(c: &Client, p: &Pop, n: usize) {
    for i in 0..n {
        let r = c.post(&format!("http://{}/ingest/acme/github", p.weir.ingest), &[], format!("{{\"pop\":\"{}\",\"n\":{i}}}", p.name)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    }
}

async fn admin_status(c: &Client, p: &Pop) -> Value {
    c.get(&format!("http://{}/v1/status", p.weir.admin), Some(TOKEN)).await.json()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_status_shows_three_pops_then_each_flag_on_its_event() {
    let nats = NatsServer::start();
    let upstream = Upstream::start(Mode::Ok).await;
    // sfo1 forwards to a port nobody listens on, and opens its breaker at the first failure.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let fra1 = start_pop(&nats, "fra1", &forward_to(&upstream.url(), ""));
    let ams1 = start_pop(&nats, "ams1", &forward_to(&upstream.url(), ""));
    let sfo1 = start_pop(&nats, "sfo1", &forward_to(&format!("http://{closed}/triggers"), "failure_threshold = 1"));
    let c = Client::new();

    let (code, s) =
        status_until(&nats, "three live PoPs", |s| ["fra1", "ams1", "sfo1"].iter().all(|p| pop(s, p).is_some_and(|p| p["state"] == "ok")))
            .await;
    assert_eq!(code, 0, "nothing flagged: {s:#}");
    assert_eq!(s["flags"], Value::Array(vec![]));
    let hb = &pop(&s, "fra1").expect("fra1")["heartbeat"];
    assert_eq!(hb["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(hb["interval_ms"], 200);
    assert_eq!(hb["upstreams"][0]["state"], "healthy");
    assert!(hb["disk"]["budget_bytes"].as_u64().is_some_and(|b| b > 0), "{hb}");
    assert_eq!(hb["plugins"], serde_json::json!({"acme": null, "globex": null}));
    // The table for people: one row per PoP, and no flag.
    let (code, out, err) = weir(&["fleet", "status", "--nats", &nats.url()]).await;
    assert_eq!(code, 0, "{err}");
    for name in ["fra1", "ams1", "sfo1"] {
        assert!(out.lines().any(|l| l.starts_with(name) && l.contains(" ok ")), "{name} row in:\n{out}");
    }
    assert!(out.contains("no flags"), "{out}");

    // One failed delivery opens sfo1's breaker: its next heartbeat says so.
    ingest(&c, &sfo1, 1).await;
    let (code, _) = status_until(&nats, "sfo1's upstream open", |s| has_flag(s, "upstream_open", Some("sfo1"), None)).await;
    assert_eq!(code, 6, "a flag exits 6");

    // A plugin on fra1 only: acme runs different code on fra1 than elsewhere.
    let wasm = std::fs::read(weir_test_plugins::PASSTHROUGH).expect("wasm");
    let r = c.put(&format!("http://{}/v1/tenants/acme/plugin", fra1.weir.admin), TOKEN, wasm).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let (_, s) = status_until(&nats, "plugin skew for acme", |s| has_flag(s, "plugin_skew", None, Some("acme"))).await;
    let skew = s["skew"].as_array().expect("skew")[0].clone();
    assert_eq!(skew["tenant"], "acme");
    assert_eq!(skew["pops"]["fra1"]["loaded"], true);
    assert_eq!(skew["pops"]["ams1"], Value::Null);

    // A graceful stop says goodbye; a SIGKILL leaves a heartbeat that goes stale.
    ams1.weir.signal(libc::SIGTERM);
    let (_, s) = status_until(&nats, "ams1 stopped", |s| pop(s, "ams1").is_some_and(|p| p["state"] == "stopped")).await;
    assert!(has_flag(&s, "stopped", Some("ams1"), None));
    sfo1.weir.sigkill();
    let (code, s) = status_until(&nats, "sfo1 stale", |s| pop(s, "sfo1").is_some_and(|p| p["state"] == "stale")).await;
    assert_eq!(code, 6);
    let stale = pop(&s, "sfo1").expect("sfo1");
    assert!(stale["age_ms"].as_u64() > stale["stale_after_ms"].as_u64(), "{stale}");
    assert_eq!(stale["stale_after_ms"], 600, "3 × its 200 ms interval");
    // What a dead PoP said last (an open upstream) is not a current flag.
    assert!(!has_flag(&s, "upstream_open", Some("sfo1"), None), "{s:#}");
    assert_eq!(pop(&s, "fra1").expect("fra1")["state"], "ok");
    let (_, out, _) = weir(&["fleet", "status", "--nats", &nats.url()]).await;
    assert!(out.lines().any(|l| l.starts_with("sfo1") && l.contains("stale")), "{out}");
    assert!(out.contains("FLAG stale: sfo1: last heartbeat"), "{out}");
    drop(fra1);
}

/// `GET /v1/fleet/pops` on `p`: status and body.
async fn fleet_pops(c: &Client, p: &Pop) -> (StatusCode, Value) {
    let r = c.get(&format!("http://{}/v1/fleet/pops", p.weir.admin), Some(TOKEN)).await;
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_route_shows_every_pop_from_the_heartbeats_and_503_without_nats() {
    let mut nats = NatsServer::start();
    let upstream = Upstream::start(Mode::Ok).await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr");
    let fra1 = start_pop(&nats, "fra1", &forward_to(&upstream.url(), ""));
    let ams1 = start_pop(&nats, "ams1", &forward_to(&format!("http://{closed}/triggers"), "failure_threshold = 1"));
    let c = Client::new();
    // fra1 reads ams1's row through its own fleet connection: both rows, and ams1's open upstream once it fails.
    ingest(&c, &ams1, 1).await;
    let s = eventually(WAIT, || async {
        let (code, s) = fleet_pops(&c, &fra1).await;
        let both = ["fra1", "ams1"].iter().all(|p| pop(&s, p).is_some_and(|p| p["state"] == "ok"));
        (code == StatusCode::OK && both && has_flag(&s, "upstream_open", Some("ams1"), None)).then_some(s)
    })
    .await;
    assert_eq!(s["format"], 1);
    assert_eq!(pop(&s, "ams1").expect("ams1")["open_upstreams"].as_array().map(Vec::len), Some(1), "{s:#}");
    assert!(!has_flag(&s, "upstream_open", Some("fra1"), None), "{s:#}");
    // The same document as `weir fleet status --json` (same rows and flags). The two are read at different
    // moments, and a heartbeat late on a loaded machine turns a PoP stale in one of them: compare reads of
    // the same beats, i.e. until both agree, and agree on a fleet with ams1's open upstream in it.
    let names = |v: &Value| {
        let mut n: Vec<String> = v["pops"].as_array().map_or(&[][..], Vec::as_slice).iter().map(|p| p["pop"].to_string()).collect();
        n.sort();
        n
    };
    let kinds = |v: &Value| v["flags"].as_array().map_or(&[][..], Vec::as_slice).iter().map(|f| f["kind"].to_string()).collect::<Vec<_>>();
    eventually(WAIT, || async {
        let (_, cli) = fleet_status(&nats).await;
        let (_, route) = fleet_pops(&c, &fra1).await;
        let same = names(&cli) == names(&route) && kinds(&cli) == kinds(&route);
        (same && names(&cli).len() == 2 && has_flag(&cli, "upstream_open", Some("ams1"), None)).then_some(())
    })
    .await;
    // The fleet is behind the operator token.
    let r = c.get(&format!("http://{}/v1/fleet/pops", fra1.weir.admin), Some("not-the-operator")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // NATS gone: a bounded 503 that says so (the console falls back to this PoP's own view).
    nats.down();
    let (code, s) = eventually(WAIT, || async {
        let (code, s) = fleet_pops(&c, &fra1).await;
        (code == StatusCode::SERVICE_UNAVAILABLE).then_some((code, s))
    })
    .await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(s["error"], "nats_unavailable", "{s}");
    assert!(s["message"].as_str().is_some_and(|m| m.contains("heartbeats could not be read")), "{s}");
    drop(ams1);
    drop(fra1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_replay_runs_on_every_pop_and_sums_their_counts() {
    let nats = NatsServer::start();
    let upstream = Upstream::start(Mode::Ok).await;
    let pops: Vec<Pop> = ["fra1", "ams1", "sfo1"].into_iter().map(|n| start_pop(&nats, n, &forward_to(&upstream.url(), ""))).collect();
    let c = Client::new();
    for (p, n) in pops.iter().zip([2, 3, 4]) {
        ingest(&c, p, n).await;
    }
    upstream.wait_until(WAIT, |r| r.len() == 9).await;
    for (p, n) in pops.iter().zip([2u64, 3, 4]) {
        eventually(WAIT, || async { (admin_status(&c, p).await["delivered"] == n).then_some(()) }).await;
    }
    status_until(&nats, "three live PoPs", |s| ["fra1", "ams1", "sfo1"].iter().all(|p| pop(s, p).is_some_and(|p| p["state"] == "ok")))
        .await;
    let url = nats.url();

    // Dry run: each PoP counts its own, the CLI sums them.
    let (code, out, err) =
        weir(&["replay", "--fleet", "--nats", &url, "--tenant", "acme", "--state", "delivered", "--dry-run", "--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["total"]["matched"], 9, "{r:#}");
    assert_eq!(r["missing"], Value::Array(vec![]));
    let matched: Vec<(String, u64)> = r["pops"]
        .as_array()
        .expect("pops")
        .iter()
        .map(|p| (p["pop"].as_str().unwrap_or("").to_string(), p["matched"].as_u64().unwrap_or(0)))
        .collect();
    assert_eq!(matched, [("ams1".to_string(), 3), ("fra1".to_string(), 2), ("sfo1".to_string(), 4)]);
    assert!(r["pops"].as_array().expect("pops").iter().all(|p| p["state"] == "dry_run"));
    assert_eq!(upstream.received().len(), 9, "a dry run sends nothing");

    // The real replay: a job per PoP, followed to the end, every trigger delivered again.
    let (code, out, err) = weir(&["replay", "--fleet", "--nats", &url, "--tenant", "acme", "--state", "delivered", "--json"]).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["total"]["replayed"], 9, "{r:#}");
    let jobs: Vec<String> = r["pops"]
        .as_array()
        .expect("pops")
        .iter()
        .map(|p| {
            assert_eq!(p["state"], "done", "{p}");
            format!("{}:{}", p["pop"].as_str().expect("pop"), p["job"].as_u64().expect("a job id"))
        })
        .collect();
    upstream.wait_until(WAIT, |r| r.len() == 18).await;
    let keys = |r: &[crate::support::Received]| {
        let mut k: Vec<String> = r.iter().map(|x| x.header("idempotency-key").to_string()).collect();
        k.sort();
        k
    };
    let received = upstream.received();
    assert_eq!(keys(&received[..9]), keys(&received[9..]), "replayed with the same idempotency keys");

    // Progress can be asked again later, by POP:JOB.
    let mut args = vec!["replay", "--fleet", "--nats", &url, "--json", "--status"];
    args.extend(jobs.iter().map(String::as_str));
    let (code, out, err) = weir(&args).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let s: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(s["total"]["replayed"], 9, "{s:#}");
    // A job no PoP has is reported, not invented.
    let (code, out, _) = weir(&["replay", "--fleet", "--nats", &url, "--json", "--status", "fra1:1"]).await;
    assert_eq!(code, 6, "{out}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["pops"][0]["state"], "unknown");

    // A filter every PoP refuses: each says why, exit 5.
    let (code, out, err) = weir(&["replay", "--fleet", "--nats", &url, "--state", "bogus", "--dry-run", "--json"]).await;
    assert_eq!(code, 5, "{out}\n{err}");
    let r: Value = serde_json::from_str(&out).expect("json");
    assert_eq!(r["pops"].as_array().expect("pops").len(), 3);
    assert!(r["pops"][0]["error"].as_str().is_some_and(|e| e.contains("bogus")), "{r:#}");

    untrusted_commands_are_refused_and_a_repeated_request_starts_one_job(&nats).await;
    // Still serving after all of that.
    for p in &pops {
        assert_eq!(admin_status(&c, p).await["ready"], true);
    }
}

/// Raw NATS requests, as anyone with publish rights could send them.
async fn untrusted_commands_are_refused_and_a_repeated_request_starts_one_job(nats: &NatsServer) {
    let client = nats.client().await;
    let ask = |payload: &'static [u8]| {
        let client = client.clone();
        async move {
            let inbox = client.new_inbox();
            let mut sub = client.subscribe(inbox.clone()).await.expect("subscribe");
            client.publish_with_reply("weir.fleet.replay", inbox, payload.into()).await.expect("publish");
            let mut answers = Vec::new();
            while answers.len() < 3 {
                let m = tokio::time::timeout(WAIT, sub.next()).await.expect("three answers").expect("message");
                answers.push(serde_json::from_slice::<Value>(&m.payload).expect("a JSON answer"));
            }
            answers
        }
    };
    for bad in [&b"not json"[..], br#"{"format":1,"request_id":"x1","replay":{"tenant":"acme","tennant":"acme"}}"#] {
        for a in ask(bad).await {
            assert_eq!(a["state"], "refused", "{a}");
        }
    }
    let once = br#"{"format":1,"request_id":"same-id","replay":{"tenant":"acme","state":"dead"}}"#;
    let first = ask(once).await;
    let again = ask(once).await;
    let job_of = |answers: &[Value], pop: &str| answers.iter().find(|a| a["pop"] == pop).map(|a| a["job"].clone());
    for pop in ["fra1", "ams1", "sfo1"] {
        let job = job_of(&first, pop);
        assert!(job.as_ref().is_some_and(Value::is_u64), "{first:?}");
        assert_eq!(job, job_of(&again, pop), "the same request id answers with the same job");
    }
}

/// NATS down: beats are skipped and counted while the gateway serves as
/// ever; NATS back: the PoP creates the heartbeats bucket (it was missing)
/// with the configured TTL and writes into it; a graceful stop says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_skip_while_nats_is_down_then_go_into_a_bucket_the_pop_creates() {
    use crate::metrics::{get, scrape};
    let mut nats = NatsServer::start();
    let fleet = format!("{}heartbeat_interval_ms = 200\nheartbeat_ttl_secs = 5\n", nats.fleet_toml("fra1"));
    nats.down();
    let gw = crate::support::Gateway::start_with(&fleet, |_| {}).await;
    let c = Client::new();
    eventually(WAIT, || async {
        (get(&scrape(&c, &gw).await, "weir_fleet_heartbeats_total", &[("outcome", "skipped")]) >= 2.0).then_some(())
    })
    .await;
    let r = c.post(&gw.ingest_url("/ingest/acme/github"), &[], "{}").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "ingest does not wait for NATS");
    assert_eq!(c.get(&gw.admin_url("/readyz"), None).await.status, StatusCode::OK);

    nats.up();
    let js = async_nats::jetstream::new(nats.client().await);
    let beat = eventually(WAIT, || async {
        let kv = js.get_key_value("weir_heartbeats").await.ok()?;
        kv.get("fra1").await.ok().flatten()
    })
    .await;
    let hb: Value = serde_json::from_slice(&beat).expect("json");
    assert_eq!(hb["backlog"], 1, "{hb}");
    assert!(hb["heartbeats_skipped"].as_u64().is_some_and(|n| n >= 2), "{hb}");
    let mut stream = js.get_stream("KV_weir_heartbeats").await.expect("the bucket's stream");
    let info = stream.info().await.expect("info");
    assert_eq!(info.config.max_age, Duration::from_secs(5), "max_age = heartbeat_ttl_secs");
    assert_eq!(info.config.max_messages_per_subject, 1, "history 1");
    assert!(get(&scrape(&c, &gw).await, "weir_fleet_heartbeats_total", &[("outcome", "sent")]) >= 1.0);

    gw.stop().await;
    let kv = js.get_key_value("weir_heartbeats").await.expect("bucket");
    let last: Value = serde_json::from_slice(&kv.get("fra1").await.expect("get").expect("the last beat")).expect("json");
    assert_eq!(last["stopping"], true, "a graceful stop writes a last beat that says so");
}
