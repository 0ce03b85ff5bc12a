//! Process freezes: SIGSTOP the real `weir` process for 10 s, ten times,
//! under steady ingest load while a backlog is being forwarded (as a VM
//! pause, a debugger or a cgroup freeze does). Every acknowledged trigger
//! is delivered (re-sends carry the same idempotency key), the process
//! serves again after each SIGCONT, and its memory is back at the level of
//! the same load before the freezes once the load ends.
//!
//! Ten full-length stops make this test about two minutes long; it spends
//! them waiting on a stopped process, so it costs the parallel suite no CPU.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::StatusCode;

use crate::support::{Client, Mode, TOKEN, Upstream, WeirProcess, config_toml};

const STOPS: usize = 10;
const STOP_FOR: Duration = Duration::from_secs(10);
const CLIENTS: usize = 8;
/// Each client's pace: 8 clients at one request per 50 ms, about 160 triggers a second.
const PACE: Duration = Duration::from_millis(50);
/// Triggers ingested at once before the freezes, forwarded while they happen.
const BACKLOG: usize = 2000;
/// Acknowledgements between a resume and the next stop.
const ACKS_BETWEEN: usize = 100;
const MAX_IN_FLIGHT: usize = 8;
const WAIT: Duration = Duration::from_secs(120);

/// The process's resident set, from /proc/<pid>/status.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).expect("VmRSS")
}

/// The process's scheduler state letter (`T` while stopped).
fn proc_state(pid: u32) -> char {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    status.lines().find_map(|l| l.strip_prefix("State:")).and_then(|v| v.trim().chars().next()).expect("State")
}

/// Polls /proc until the process is (or is no longer) stopped.
async fn wait_state(pid: u32, stopped: bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while (proc_state(pid) == 'T') != stopped {
        assert!(tokio::time::Instant::now() < deadline, "weir did not {} within {WAIT:?}", if stopped { "stop" } else { "resume" });
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Acknowledged triggers: id → idempotency key.
type Acked = Arc<Mutex<HashMap<String, String>>>;

/// Clients posting at a steady pace, each with its own keys, until `stop`.
fn load(
    url: String,
    prefix: &'static str,
    acked: Acked,
    stop: Arc<AtomicBool>,
    count: tokio::sync::watch::Sender<usize>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let count = Arc::new(count);
    (0..CLIENTS)
        .map(|n| {
            let (url, acked, stop, count) = (url.clone(), acked.clone(), stop.clone(), count.clone());
            let client = Client::new();
            tokio::spawn(async move {
                let mut pace = tokio::time::interval(PACE);
                // After a freeze the load goes on at its pace; it does not catch up.
                pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    pace.tick().await;
                    i += 1;
                    let key = format!("{prefix}-{n}-{i}");
                    let r = client.post(&url, &[("idempotency-key", key.as_str())], key.clone()).await;
                    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
                    let id = r.json()["id"].as_str().expect("id").to_string();
                    let total = {
                        let mut a = acked.lock().expect("acked");
                        a.insert(id, key);
                        a.len()
                    };
                    count.send_replace(total);
                }
            })
        })
        .collect()
}

/// Waits until the upstream has every acknowledged trigger and the store has nothing pending.
async fn drained(up: &Upstream, weir: &WeirProcess, acked: &Acked) {
    let ids: HashSet<String> = acked.lock().expect("acked").keys().cloned().collect();
    up.wait_until(WAIT, |log| {
        let got: HashSet<&str> = log.iter().map(|r| r.header("weir-trigger-id")).collect();
        ids.iter().all(|id| got.contains(id.as_str()))
    })
    .await;
    let client = Client::new();
    crate::support::eventually(WAIT, || async {
        let s = client.get(&format!("http://{}/v1/status", weir.admin), Some(TOKEN)).await.json();
        (s["pending"] == 0 && s["in_flight"] == 0).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigstop_ten_times_under_load_loses_nothing_and_memory_returns() {
    let up = Upstream::start(Mode::Slow(Duration::from_millis(20))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    let forward = format!(
        "\n[forward]\nupstreams = [\"{}\"]\nmax_in_flight = {MAX_IN_FLIGHT}\nbackoff_base_ms = 50\nbackoff_cap_ms = 1000\n",
        up.url()
    );
    std::fs::write(&config, format!("{forward}{}", config_toml(&dir.path().join("data"), ""))).expect("write config");
    let weir = WeirProcess::start(&config);
    let pid = weir.child.id();
    let url = format!("http://{}/ingest/acme/sigstop", weir.ingest);
    let acked: Acked = Arc::default();

    // The same load without freezes first: the memory level to come back to.
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut count) = tokio::sync::watch::channel(0);
    let clients = load(url.clone(), "warm", acked.clone(), stop.clone(), tx);
    count.wait_for(|n| *n >= 2 * BACKLOG).await.expect("warm-up acks");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    drained(&up, &weir, &acked).await;
    let baseline = rss_kib(pid);

    // A backlog, then the load again, and the freezes.
    let client = Client::new();
    for chunk in (0..BACKLOG).collect::<Vec<_>>().chunks(50) {
        let posts = chunk.iter().map(|i| {
            let (client, url, key) = (client.clone(), url.clone(), format!("backlog-{i}"));
            async move { (client.post(&url, &[("idempotency-key", key.as_str())], key.clone()).await, key) }
        });
        for (r, key) in futures_util::future::join_all(posts).await {
            assert_eq!(r.status, StatusCode::ACCEPTED);
            acked.lock().expect("acked").insert(r.json()["id"].as_str().expect("id").to_string(), key);
        }
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, mut count) = tokio::sync::watch::channel(0);
    let clients = load(url.clone(), "load", acked.clone(), stop.clone(), tx);
    let mut peak = rss_kib(pid);
    let mut backlog_left = Vec::new();
    for _ in 0..STOPS {
        // Serving and forwarding since the last resume: acknowledgements and deliveries both moved.
        let (acks, sent) = (*count.borrow(), up.received().len());
        count.wait_for(|n| *n >= acks + ACKS_BETWEEN).await.expect("acks after resume");
        up.wait_until(WAIT, |log| log.len() > sent).await;
        let s = client.get(&format!("http://{}/v1/status", weir.admin), Some(TOKEN)).await.json();
        backlog_left.push(s["pending"].as_u64().expect("pending"));
        peak = peak.max(rss_kib(pid));
        weir.signal(libc::SIGSTOP);
        wait_state(pid, true).await;
        // The fault itself lasts this long; nothing waits on it as a condition.
        tokio::time::sleep(STOP_FOR).await;
        weir.signal(libc::SIGCONT);
        wait_state(pid, false).await;
    }
    let acks = *count.borrow();
    count.wait_for(|n| *n >= acks + ACKS_BETWEEN).await.expect("acks after the last resume");
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client");
    }
    drained(&up, &weir, &acked).await;
    let after = rss_kib(pid);

    // Every acknowledged trigger reached the upstream under its own key, and
    // no key under two triggers; re-sends (an attempt cut by a freeze) keep the key.
    let acked = acked.lock().expect("acked").clone();
    let mut keys_by_id: HashMap<&str, HashSet<&str>> = HashMap::new();
    let log = up.received();
    for r in &log {
        keys_by_id.entry(r.header("weir-trigger-id")).or_default().insert(r.header("idempotency-key"));
    }
    let resent = log.len() - keys_by_id.len();
    for (id, key) in &acked {
        let keys = keys_by_id.get(id.as_str()).unwrap_or_else(|| panic!("acknowledged trigger {id} never delivered"));
        assert_eq!(keys, &HashSet::from([key.as_str()]), "trigger {id} was sent under another key");
    }
    assert_eq!(keys_by_id.len(), acked.len(), "the upstream got triggers nobody acknowledged");
    assert!(resent <= STOPS * MAX_IN_FLIGHT, "{resent} re-sends: more than the attempts in flight at the freezes");
    println!(
        "sigstop: {STOPS} stops of {STOP_FOR:?}, {} acknowledged, all delivered, {resent} re-sent; pending at each stop {backlog_left:?}; \
         RSS baseline {baseline} KiB, peak {peak} KiB, after {after} KiB",
        acked.len()
    );
    // Memory is back at the level the same load left before the freezes
    // (generous: allocator and page cache noise, not a leak per freeze).
    assert!(after <= baseline + baseline / 2 + 16 * 1024, "RSS {after} KiB after the freezes, {baseline} KiB before");
}
