//! Wall-clock jumps under the real `weir` binary: libfaketime (Debian's
//! `faketime`) steps the system clock Weir sees by -1 h, +1 h and +1 day
//! while triggers are pending, CLOCK_MONOTONIC untouched, as a real step
//! (NTP's `makestep`, an operator's `date -s`) leaves it. Nothing may expire
//! because of the step (a pending trigger's `forward.max_age_secs`, a
//! retained delivery, an idempotency key) and retries keep their spacing.
//!
//! Every window below is 1800 s, shorter than the +1 h and +1 day steps, so
//! a Weir that ages by the system clock fails each check.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use http::StatusCode;

use crate::support::{Client, Mode, Received, TOKEN, Upstream, WeirProcess, eventually};

/// Debian's libfaketime, under the multiarch directory (`/usr/lib/x86_64-linux-gnu/faketime/...`).
fn libfaketime() -> PathBuf {
    std::fs::read_dir("/usr/lib")
        .expect("read /usr/lib")
        .filter_map(Result::ok)
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .find(|p| p.exists())
        .expect("libfaketime.so.1 is missing: install Debian's faketime (scripts/deps.sh)")
}
/// `forward.max_age_secs`, `store.retention_secs` and `store.idempotency_window_secs`.
const WINDOW_SECS: u64 = 1800;
/// How much younger than the retention the delivery stamped by the first run
/// is when the second run starts: it survives the sweep at start and goes in
/// the one 30 s later, which therefore runs after the step.
const OLD_MARGIN_SECS: u64 = 28;
const BACKOFF_BASE_MS: u64 = 300;
const PENDING: usize = 6;
/// Failed attempts each pending trigger must make after the step.
const AFTER_STEP: usize = 3;
const WAIT: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_step_back_1h_expires_nothing_and_keeps_retry_spacing() {
    clock_step("-3600").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_step_forward_1h_expires_nothing_and_keeps_retry_spacing() {
    clock_step("+3600").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clock_step_forward_1d_expires_nothing_and_keeps_retry_spacing() {
    clock_step("+86400").await;
}

/// The faked clock: libfaketime re-reads this file at every clock read
/// (`FAKETIME_NO_CACHE`), so the step takes effect when `set` returns.
struct FakeClock {
    file: PathBuf,
}

impl FakeClock {
    fn new(dir: &Path, offset: &str) -> FakeClock {
        let clock = FakeClock { file: dir.join("faketime.rc") };
        clock.set(offset);
        clock
    }

    /// Written whole and renamed, so Weir never reads half an offset.
    fn set(&self, offset: &str) {
        let tmp = self.file.with_extension("tmp");
        std::fs::write(&tmp, format!("{offset}\n")).expect("write faketime file");
        std::fs::rename(&tmp, &self.file).expect("rename faketime file");
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", libfaketime().display().to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".to_string()),
            // A real step moves CLOCK_REALTIME only.
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".to_string()),
        ]
    }

    fn start(&self, config: &Path) -> WeirProcess {
        let env = self.env();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        WeirProcess::start_with_env(config, &env)
    }
}

fn config(dir: &Path, upstream: &str) -> PathBuf {
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[store]
path = "{data}"
retention_secs = {WINDOW_SECS}
idempotency_window_secs = {WINDOW_SECS}

[forward]
upstreams = ["{upstream}"]
max_age_secs = {WINDOW_SECS}
max_attempts = 1000
backoff_base_ms = {BACKOFF_BASE_MS}
backoff_cap_ms = 1200
# Neither the breaker nor the retry budget may space retries out: only the backoff.
failure_threshold = 1000000
retry_budget_min_per_sec = 1000

[admin]
token = "{TOKEN}"

[[tenants]]
id = "acme"
"#,
        data = dir.join("data").display()
    );
    let file = dir.join("weir.toml");
    std::fs::write(&file, text).expect("write config");
    file
}

fn with_key<'a>(log: &'a [Received], key: &str) -> Vec<&'a Received> {
    log.iter().filter(|r| r.header("idempotency-key") == key).collect()
}

async fn ingest(client: &Client, weir: &WeirProcess, key: &str) -> serde_json::Value {
    let r = client.post(&format!("http://{}/ingest/acme/clock", weir.ingest), &[("idempotency-key", key)], key.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    r.json()
}

async fn trigger(client: &Client, weir: &WeirProcess, id: &str) -> (StatusCode, serde_json::Value) {
    let r = client.get(&format!("http://{}/v1/triggers/{id}", weir.admin), Some(TOKEN)).await;
    let json = if r.status == StatusCode::OK { r.json() } else { serde_json::Value::Null };
    (r.status, json)
}

async fn clock_step(step: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = Upstream::start(Mode::Ok).await;
    let config = config(dir.path(), &up.url());
    let client = Client::new();

    // First run, its clock set back so that what it stamps is nearly as old
    // as the retention when the second run starts.
    let clock = FakeClock::new(dir.path(), &format!("-{}", WINDOW_SECS - OLD_MARGIN_SECS));
    let weir = clock.start(&config);
    let old = ingest(&client, &weir, "old").await["id"].as_str().expect("id").to_string();
    up.wait_until(WAIT, |log| !with_key(log, "old").is_empty()).await;
    eventually(WAIT, || async { (trigger(&client, &weir, &old).await.1["state"] == "delivered").then_some(()) }).await;
    weir.signal(libc::SIGTERM);
    let mut weir = weir;
    assert!(weir.wait_exit(WAIT).is_some_and(|s| s.success()), "weir did not stop: {}", weir.log_text());

    // Second run on the true time: a fresh delivery, then pending triggers retrying against 503s.
    clock.set("+0");
    let weir = clock.start(&config);
    let fresh = ingest(&client, &weir, "fresh").await["id"].as_str().expect("id").to_string();
    eventually(WAIT, || async { (trigger(&client, &weir, &fresh).await.1["state"] == "delivered").then_some(()) }).await;
    up.set_mode(Mode::Status(503, None));
    let keys: Vec<String> = (0..PENDING).map(|i| format!("pending-{i}")).collect();
    let mut pending = Vec::new();
    for key in &keys {
        pending.push(ingest(&client, &weir, key).await["id"].as_str().expect("id").to_string());
    }
    up.wait_until(WAIT, |log| keys.iter().all(|k| !with_key(log, k).is_empty())).await;
    assert_eq!(trigger(&client, &weir, &old).await.0, StatusCode::OK, "the first run's delivery must outlive the sweep at start");

    clock.set(step);
    let stepped_at = Instant::now();
    let after_step = |log: &[Received], key: &str| with_key(log, key).iter().filter(|r| r.at > stepped_at).count();
    // Each pending trigger has an outcome recorded after the step (an attempt
    // in flight across the step counts: its outcome is judged after it).
    let attempts = |json: &serde_json::Value| json["attempts"].as_array().map_or(0, Vec::len);
    let mut at_step = Vec::new();
    for id in &pending {
        at_step.push(attempts(&trigger(&client, &weir, id).await.1));
    }
    for (id, n) in pending.iter().zip(at_step) {
        let json = eventually(WAIT, || async {
            let json = trigger(&client, &weir, id).await.1;
            (attempts(&json) > n || json["state"] != "pending").then_some(json)
        })
        .await;
        assert_eq!(json["state"], "pending", "a pending trigger expired after the clock stepped {step}: {json}");
    }
    up.wait_until(WAIT, |log| keys.iter().all(|k| after_step(log, k) >= AFTER_STEP)).await;
    // The delivery stamped by the first run is past the retention now, by
    // Weir's clock and by the true one: its removal is a sweep after the step.
    assert_eq!(trigger(&client, &weir, &old).await.0, StatusCode::OK, "the sweep that removes it runs after the step");
    eventually(WAIT, || async { (trigger(&client, &weir, &old).await.0 == StatusCode::NOT_FOUND).then_some(()) }).await;

    // Nothing younger than the windows expired because of the step.
    let (status, json) = trigger(&client, &weir, &fresh).await;
    assert_eq!(status, StatusCode::OK, "a retained delivery was removed after the clock stepped {step}");
    assert_eq!(json["state"], "delivered");
    let again = ingest(&client, &weir, "fresh").await;
    assert_eq!(again["duplicate"], true, "the idempotency key was forgotten after the clock stepped {step}: {again}");
    assert_eq!(again["id"], fresh.as_str());
    for id in &pending {
        let (_, json) = trigger(&client, &weir, id).await;
        assert_eq!(json["state"], "pending", "a pending trigger expired after the clock stepped {step}: {json}");
    }

    // Each retry came at least the backoff's floor after the previous
    // attempt: the step caused no burst.
    let log = up.received();
    let mut gaps = 0;
    for key in &keys {
        let times: Vec<Instant> = with_key(&log, key).iter().map(|r| r.at).collect();
        for pair in times.windows(2) {
            let gap = pair[1] - pair[0];
            assert!(gap >= Duration::from_millis(BACKOFF_BASE_MS), "{key}: a retry {gap:?} after the previous attempt (step {step})");
            gaps += 1;
        }
    }

    // The upstream recovers: every trigger is delivered, each key once.
    up.set_mode(Mode::Ok);
    for id in &pending {
        eventually(WAIT, || async { (trigger(&client, &weir, id).await.1["state"] == "delivered").then_some(()) }).await;
    }
    let status = client.get(&format!("http://{}/v1/status", weir.admin), Some(TOKEN)).await.json();
    assert_eq!(status["dead"], 0, "{status}");
    assert_eq!(with_key(&up.received(), "fresh").len(), 1, "the key `fresh` reached the upstream more than once");
    // The operator is told, once, that the system clock and Weir's differ.
    weir.wait_for_log("system clock stepped", WAIT);
    println!("clock step {step}: {PENDING} pending triggers, {gaps} retry gaps all >= {BACKOFF_BASE_MS} ms, nothing expired");
}
