//! Hostile plugins against the real `weir` binary, each while another tenant
//! is under steady load (issue 12): the hostile tenant's triggers end in the
//! documented outcome with the right fault kind; the other tenant gets only
//! 202s, none quarantined; no gateway thread panics. Times are the
//! benchmark harness's business: nothing here reads a stopwatch.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::StatusCode;
use weir_test_plugins as wasm;

use crate::support::{Client, Reply, TOKEN, WeirProcess};

/// The tenant under steady load: a passthrough plugin, default limits.
const CALM: &str = r#"
[[tenants]]
id = "calm"
plugin = "{PASSTHROUGH}"
"#;

/// Starts the real binary with the calm tenant, `hostile` (TOML tenants) and `extra` TOML.
fn start(hostile: &str, extra: &str) -> (tempfile::TempDir, WeirProcess) {
    let dir = tempfile::tempdir().expect("tempdir");
    let tenants = format!("{}{hostile}\n{extra}", CALM.replace("{PASSTHROUGH}", wasm::PASSTHROUGH));
    let config = crate::support::write_config(dir.path(), &tenants);
    let weir = WeirProcess::start(&config);
    (dir, weir)
}

fn hostile_tenant(id: &str, plugin: &str, timeout_ms: u64, config: &[(&str, &str)]) -> String {
    let mut t = format!("\n[[tenants]]\nid = \"{id}\"\nplugin = \"{plugin}\"\nplugin_timeout_ms = {timeout_ms}\n");
    if !config.is_empty() {
        t.push_str("[tenants.config]\n");
        for (k, v) in config {
            t.push_str(&format!("{k} = \"{v}\"\n"));
        }
    }
    t
}

/// How much the gateway's resident memory may grow over an attack: the warm
/// pool slots (up to 16 x 2 MiB kept resident) and allocator slack, with
/// room to spare; a per-trigger leak or instances that outlive their call
/// would blow through it over the test's triggers.
const RSS_GROWTH_BOUND: u64 = 128 * 1024 * 1024;

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok());
    kb.expect("VmRSS") * 1024
}

/// Passthrough ingests for the calm tenant from `workers` concurrent loops
/// until stopped; every answer that is not a plain 202 is recorded.
struct Load {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(usize, Vec<String>)>>,
    pid: u32,
    rss_before: u64,
}

impl Load {
    fn start(weir: &WeirProcess, workers: usize) -> Load {
        let (pid, rss_before) = (weir.child.id(), rss_bytes(weir.child.id()));
        let stop = Arc::new(AtomicBool::new(false));
        let url = format!("http://{}/ingest/calm/steady", weir.ingest);
        let tasks = (0..workers)
            .map(|_| {
                let (stop, url, c) = (stop.clone(), url.clone(), Client::new());
                tokio::spawn(async move {
                    let (mut n, mut bad) = (0, Vec::new());
                    while !stop.load(Ordering::Relaxed) || n == 0 {
                        n += 1;
                        match c.send(http::Method::POST, &url, &[("content-type", "application/json")], r#"{"calm":true}"#).await {
                            Ok(r) if r.status == StatusCode::ACCEPTED && r.json()["quarantined"] == false => {}
                            Ok(r) => bad.push(format!("{} {}", r.status, String::from_utf8_lossy(&r.body))),
                            Err(e) => bad.push(format!("no answer: {e}")),
                        }
                    }
                    (n, bad)
                })
            })
            .collect();
        Load { stop, tasks, pid, rss_before }
    }

    /// Stops the load and asserts that every one of its triggers was
    /// accepted, and that the gateway's memory came back within the bound.
    async fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in self.tasks {
            let (n, bad) = t.await.expect("load task");
            assert!(bad.is_empty(), "the calm tenant got {} bad answers of {n}, e.g. {:?}", bad.len(), &bad[..bad.len().min(3)]);
            total += n;
        }
        let after = rss_bytes(self.pid);
        assert!(
            after <= self.rss_before + RSS_GROWTH_BOUND,
            "RSS grew from {} to {} MiB over the attack",
            self.rss_before >> 20,
            after >> 20
        );
        total
    }
}

async fn trigger(c: &Client, weir: &WeirProcess, id: &str) -> serde_json::Value {
    let r = c.get(&format!("http://{}/v1/triggers/{id}", weir.admin), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::OK, "trigger {id}");
    r.json()
}

/// Asserts a 202 quarantined answer whose stored note names `kind` (and `also`).
async fn assert_quarantined(c: &Client, weir: &WeirProcess, r: &Reply, kind: &str, also: &str) -> serde_json::Value {
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    assert_eq!(r.json()["quarantined"], true, "{:?}", r.body);
    let t = trigger(c, weir, r.json()["id"].as_str().expect("id")).await;
    assert_eq!(t["state"], "quarantined");
    let note = t["note"].as_str().unwrap_or_default().to_string();
    assert!(note.contains(&format!("plugin {kind}:")), "note {note:?} should name {kind:?}");
    assert!(note.contains(also), "note {note:?} should contain {also:?}");
    t
}

/// A host panic is a plain stderr line, outside the JSON log (a guest's
/// panic message may appear inside a logged failure detail: that is fine).
fn assert_no_panic(weir: &WeirProcess) {
    let log = weir.log_text();
    let panics: Vec<&str> =
        log.lines().filter(|l| l.contains("panicked") && serde_json::from_str::<serde_json::Value>(l).is_err()).collect();
    assert!(panics.is_empty(), "a gateway thread panicked: {panics:?}\n{log}");
}

/// Sends `n` triggers to `tenant` at once and returns the answers.
async fn burst(weir: &WeirProcess, tenant: &str, n: usize) -> Vec<Reply> {
    let url = format!("http://{}/ingest/{tenant}/x", weir.ingest);
    let sends: Vec<_> = (0..n)
        .map(|_| {
            let (c, url) = (Client::new(), url.clone());
            tokio::spawn(async move { c.post(&url, &[], "payload").await })
        })
        .collect();
    let mut out = Vec::new();
    for s in sends {
        out.push(s.await.expect("send"));
    }
    out
}

/// Items 2 and 3: a sleep through WASI, after burning past the first
/// millisecond or at once, is cut at the deadline (`deadline`), answered,
/// and crashes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sleeping_plugins_end_at_their_deadline_while_another_tenant_is_served() {
    let hostile = hostile_tenant("burner", wasm::BURN_THEN_SLEEP, 200, &[("rounds", "5000000"), ("sleep_ms", "30000")])
        + &hostile_tenant("sleeper", wasm::BURN_THEN_SLEEP, 200, &[("sleep_ms", "30000")]);
    let (_dir, weir) = start(&hostile, "");
    let c = Client::new();
    let load = Load::start(&weir, 2);
    for tenant in ["burner", "sleeper"] {
        for r in burst(&weir, tenant, 4).await {
            assert_quarantined(&c, &weir, &r, "deadline", "budget").await;
        }
    }
    assert!(load.finish().await > 0);
    assert_no_panic(&weir);
    // A graceful stop with sleepers in flight leaves no thread behind to
    // panic when the runtime goes away.
    let url = format!("http://{}/ingest/sleeper/x", weir.ingest);
    let inflight: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { Client::new().send(http::Method::POST, &url, &[], "x").await })
        })
        .collect();
    // Not a synchronisation: whether the senders got in first or not, the
    // stop must be clean.
    let mut weir = weir;
    weir.signal(libc::SIGTERM);
    assert!(weir.wait_exit(Duration::from_secs(60)).is_some_and(|s| s.success()), "weir did not stop cleanly");
    for f in inflight {
        let _ = f.await;
    }
    assert_no_panic(&weir);
}

/// Item 3: creating a UDP socket fails inside the guest (the plugin sees the
/// error and rejects with it) instead of panicking a gateway thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_udp_socket_is_refused_to_the_guest_while_another_tenant_is_served() {
    let (_dir, weir) = start(&hostile_tenant("udp", wasm::UDP_SOCKET, 200, &[]), "");
    let load = Load::start(&weir, 2);
    for r in burst(&weir, "udp", 4).await {
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{:?}", r.body);
        let msg = r.json()["message"].as_str().unwrap_or_default().to_string();
        assert!(msg.starts_with("udp socket denied"), "{msg}");
    }
    assert!(load.finish().await > 0);
    assert_no_panic(&weir);
}

/// Item 3: a panic writes its message to stderr on the first (inline) call:
/// a `trap` whose note carries the message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_plugin_is_a_trap_with_its_message_while_another_tenant_is_served() {
    let (_dir, weir) = start(&hostile_tenant("panics", wasm::PANIC_STDERR, 200, &[]), "");
    let c = Client::new();
    let load = Load::start(&weir, 2);
    for r in burst(&weir, "panics", 4).await {
        assert_quarantined(&c, &weir, &r, "trap", "panic-stderr plugin gives up on 7 bytes").await;
    }
    assert!(load.finish().await > 0);
    assert_no_panic(&weir);
}

/// Item 4: 10,000 set-headers is `malformed_output`; none of them is stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_flood_is_malformed_output_while_another_tenant_is_served() {
    let (_dir, weir) = start(&hostile_tenant("flood", wasm::HEADER_FLOOD, 2000, &[]), "");
    let c = Client::new();
    let load = Load::start(&weir, 2);
    for r in burst(&weir, "flood", 4).await {
        let t = assert_quarantined(&c, &weir, &r, "malformed_output", "header changes").await;
        let headers = t["headers"].as_array().expect("headers");
        assert!(headers.len() < 10, "the plugin's headers were not stored: {} headers", headers.len());
    }
    assert!(load.finish().await > 0);
    assert_no_panic(&weir);
}

/// Item 1: a tenant whose plugin burns past the first millisecond and then
/// blocks, with senders that hang up mid-call, cannot take the pool: the
/// other tenant's triggers are all accepted, none quarantined for want of an
/// instance. A small pool (4 instances, 2 per tenant) makes it quick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn senders_hanging_up_on_a_blocking_plugin_do_not_exhaust_the_pool() {
    let hostile = hostile_tenant("hog", wasm::BURN_THEN_SLEEP, 5000, &[("rounds", "5000000"), ("sleep_ms", "15000")]);
    let (_dir, weir) = start(&hostile, "[plugins]\nconcurrency = 4\n");
    let load = Load::start(&weir, 2);
    let url = format!("http://{}/ingest/hog/x", weir.ingest);
    // Waves of senders that give up after 250 ms, more than the pool holds.
    for _ in 0..4 {
        let sends: Vec<_> = (0..8)
            .map(|_| {
                let (c, url) = (Client::new(), url.clone());
                tokio::spawn(async move {
                    // Hanging up is the point: the answer is never awaited to the end.
                    let _ = tokio::time::timeout(Duration::from_millis(250), c.post(&url, &[], "x")).await;
                })
            })
            .collect();
        for s in sends {
            s.await.expect("sender");
        }
    }
    // The calm tenant keeps going a little past the last wave.
    let after = Load::start(&weir, 1);
    assert!(after.finish().await > 0);
    assert!(load.finish().await > 0);
    assert_no_panic(&weir);
}

/// Item 1, the refusal: a tenant whose calls all hold their slot to the
/// wall-clock cap has more triggers than slots; a trigger that cannot get one
/// within its own deadline is refused with 503 `plugin_busy` + Retry-After
/// (nothing stored, nothing quarantined), while the other tenant is served.
/// Pool of 2: one slot per tenant; a 1 s budget gives a 4 s cap, so four
/// triggers sent together surely meet a held slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_that_finds_no_free_slot_within_its_deadline_is_refused_not_quarantined() {
    let hostile = hostile_tenant("slow", wasm::BURN_THEN_SLEEP, 1000, &[("sleep_ms", "60000")]);
    let (_dir, weir) = start(&hostile, "[plugins]\nconcurrency = 2\n");
    let load = Load::start(&weir, 1);
    let url = format!("http://{}/ingest/slow/x", weir.ingest);
    let sends: Vec<_> = (0..4)
        .map(|_| {
            let (c, url) = (Client::new(), url.clone());
            tokio::spawn(async move { c.post(&url, &[], "x").await })
        })
        .collect();
    let mut answers = Vec::new();
    for s in sends {
        answers.push(s.await.expect("sender"));
    }
    let busy: Vec<&Reply> = answers.iter().filter(|r| r.status == StatusCode::SERVICE_UNAVAILABLE).collect();
    assert!(
        !busy.is_empty(),
        "four triggers on one slot: some found none free: {:?}",
        answers.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    for r in &busy {
        assert_eq!(r.json()["error"], "plugin_busy", "{:?}", r.body);
        assert!(r.headers.contains_key("retry-after"), "a busy answer says when to come back");
    }
    // The others ran to their cap: quarantined with the deadline named.
    for r in answers.iter().filter(|r| r.status != StatusCode::SERVICE_UNAVAILABLE) {
        assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
        assert_eq!(r.json()["quarantined"], true, "{:?}", r.body);
    }
    // A refused trigger left nothing: only the ones that ran are stored.
    let c = Client::new();
    let listed = c.get(&format!("http://{}/v1/triggers?tenant=slow", weir.admin), Some(TOKEN)).await.json();
    let stored = listed["items"].as_array().expect("items").len();
    assert_eq!(stored, answers.len() - busy.len(), "refused triggers are not stored");
    assert!(load.finish().await > 0);
    assert_no_panic(&weir);
}

/// The same sandbox holds for JavaScript (QuickJS, `plugins/js/hostile`):
/// an endless loop ends at its CPU budget (`deadline`), a hoard of arrays
/// at the instance's memory limit (`memory`), endless recursion at the
/// Wasm stack limit (`trap`), each quarantined, while the calm tenant is
/// served and no gateway thread panics.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_javascript_plugins_fault_contained_while_another_tenant_is_served() {
    let hostile = hostile_tenant("js-spin", wasm::JS_HOSTILE_SPIN, 100, &[])
        + &hostile_tenant("js-hog", wasm::JS_HOSTILE_MEMORY_HOG, 2_000, &[])
        + &hostile_tenant("js-deep", wasm::JS_HOSTILE_DEEP_RECURSION, 2_000, &[]);
    let (_dir, weir) = start(&hostile, "");
    let c = Client::new();
    let load = Load::start(&weir, 2);
    for (tenant, kind, also) in
        [("js-spin", "deadline", "budget"), ("js-hog", "memory", "memory limit"), ("js-deep", "trap", "stack overflow")]
    {
        for r in burst(&weir, tenant, 3).await {
            assert_quarantined(&c, &weir, &r, kind, also).await;
        }
    }
    assert!(load.finish().await > 0);
    assert_no_panic(&weir);
}
