//! Crash test: SIGKILL the real `weir` process under concurrent load,
//! restart it on the same data directory, and check that every trigger that
//! got a 202 is still there. lost = acknowledged − present must be 0.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use http::StatusCode;

use crate::support::{config_toml, Client, WeirProcess, TOKEN};

const CYCLES: usize = 5;
const CLIENTS: usize = 32;
const ACKS_PER_CYCLE: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_under_load_loses_no_acknowledged_trigger() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    std::fs::write(&config, config_toml(&dir.path().join("data"), "")).expect("write config");
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
    println!(
        "crash test: cycles={CYCLES} attempted={attempted_total} acknowledged={} stored={present} lost={}",
        ids.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged but lost: {lost:?}");
    assert!(present >= ids.len(), "the store holds at least every acknowledged trigger");
}
