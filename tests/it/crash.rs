//! Crash test: SIGKILL the real `weir` process under concurrent load,
//! restart it on the same data directory, and check that every trigger that
//! got a 202 is still there. lost = acknowledged − present must be 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;

use crate::support::{Client, TOKEN, WeirProcess, config_toml};

const CYCLES: usize = 5;
const CLIENTS: usize = 32;
const ACKS_PER_CYCLE: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_trigger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::write_config(dir.path(), "");
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut attempted_total = 0usize;

    for cycle in 0..CYCLES {
        let weir = WeirProcess::start(&config);
        let url = format!("http://{}/ingest/acme/crash", weir.ingest);
        let stop = Arc::new(AtomicBool::new(false));
        let (reached_tx, mut reached_rx) = tokio::sync::watch::channel(0usize);
        let reached_tx = Arc::new(reached_tx);
        let target = (cycle + 1) * ACKS_PER_CYCLE;
        let mut clients = Vec::new();
        for n in 0..CLIENTS {
            let (url, stop, acked, reached) = (url.clone(), stop.clone(), acked.clone(), reached_tx.clone());
            // A fresh client per task: each holds its own keep-alive connection.
            let client = Client::new();
            clients.push(tokio::spawn(async move {
                let mut attempted = 0usize;
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    attempted += 1;
                    let body = format!(r#"{{"cycle":{cycle},"client":{n},"seq":{i}}}"#);
                    let Ok(r) = client.send(http::Method::POST, &url, &[("content-type", "application/json")], body).await else {
                        break; // the process is gone: nothing more can be acknowledged
                    };
                    if r.status == StatusCode::ACCEPTED {
                        let id = r.json()["id"].as_str().expect("id").to_string();
                        let total = {
                            let mut a = acked.lock().expect("acked");
                            a.push(id);
                            a.len()
                        };
                        reached.send_replace(total);
                    }
                }
                attempted
            }));
        }
        // Kill at an arbitrary point under load: once this cycle's share is acknowledged.
        reached_rx.wait_for(|n| *n >= target).await.expect("acks reached");
        weir.sigkill();
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            attempted_total += c.await.expect("client task");
        }
    }

    let weir = WeirProcess::start(&config);
    let ids = acked.lock().expect("acked").clone();
    let client = Client::new();
    let mut lost = Vec::new();
    for chunk in ids.chunks(64) {
        let mut checks = Vec::new();
        for id in chunk {
            let (c, url) = (client.clone(), format!("http://{}/v1/triggers/{id}", weir.admin));
            let id = id.clone();
            checks.push(tokio::spawn(async move { (id, c.get(&url, Some(TOKEN)).await.status) }));
        }
        for c in checks {
            let (id, status) = c.await.expect("check");
            if status != StatusCode::OK {
                lost.push((id, status));
            }
        }
    }
    let status = client.get(&format!("http://{}/v1/status", weir.admin), Some(TOKEN)).await.json();
    let present = status["pending"].as_u64().expect("pending") as usize;
    println!("crash test: cycles={CYCLES} attempted={attempted_total} acknowledged={} stored={present} lost={}", ids.len(), lost.len());
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(present >= ids.len(), "the store holds at least every acknowledged trigger");
}

/// SIGKILL while forwarding: after a restart every acknowledged trigger is
/// delivered; duplicates stay within the in-flight window and carry the same
/// idempotency key as the first delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_forwarding_delivers_everything_at_least_once() {
    use crate::support::{Mode, Upstream};
    const MAX_IN_FLIGHT: usize = 8;
    let up = Upstream::start(Mode::Slow(std::time::Duration::from_millis(100))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    let extra = format!(
        "\n[forward]\nupstreams = [\"{}\"]\nmax_in_flight = {MAX_IN_FLIGHT}\nbackoff_base_ms = 20\nbackoff_cap_ms = 200\n",
        up.url()
    );
    // The [forward] table must come before [[tenants]]: put it first.
    let text = format!("{extra}{}", config_toml(&dir.path().join("data"), ""));
    std::fs::write(&config, text).expect("write config");

    let weir = WeirProcess::start(&config);
    let client = Client::new();
    let url = format!("http://{}/ingest/acme/fwd", weir.ingest);
    let mut acked = Vec::new();
    for i in 0..300 {
        let r = client.post(&url, &[], format!("{i}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        acked.push(r.json()["id"].as_str().expect("id").to_string());
    }
    // Kill mid-stream: once a sixth has reached the upstream.
    up.wait_until(std::time::Duration::from_secs(30), |r| r.len() >= 50).await;
    weir.sigkill();
    let before_restart = up.received().len();

    let weir = WeirProcess::start(&config);
    up.wait_until(std::time::Duration::from_secs(60), |r| {
        let got: std::collections::BTreeSet<&str> = r.iter().map(|x| x.header("weir-trigger-id")).collect();
        acked.iter().all(|id| got.contains(id.as_str()))
    })
    .await;
    let received = up.received();
    let mut per_id: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for r in &received {
        per_id.entry(r.header("weir-trigger-id").to_string()).or_default().push(r.header("idempotency-key").to_string());
    }
    let duplicates: usize = per_id.values().map(|keys| keys.len() - 1).sum();
    println!(
        "forwarding crash: acknowledged={} delivered_before_kill={before_restart} deliveries={} duplicates={duplicates}",
        acked.len(),
        received.len()
    );
    assert!(duplicates <= MAX_IN_FLIGHT, "duplicates {duplicates} exceed the in-flight window {MAX_IN_FLIGHT}");
    for (id, keys) in &per_id {
        assert!(keys.iter().all(|k| k == &keys[0]), "{id}: idempotency keys differ across deliveries: {keys:?}");
    }
    drop(weir);
}
