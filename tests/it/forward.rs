//! Forwarding against a real loopback upstream whose behaviour the test
//! switches: delivery headers, the sender's and the plugin's headers, routes,
//! dead letters, retries with history, Retry-After, failover and failback at
//! low traffic, outages and the release of waiting retries, 500 storms, slow
//! upstreams, pause/resume.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use http::StatusCode;

use weir::config::{RouteConfig, TenantConfig};
use weir_test_plugins as wasm;

use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, eventually};

/// Fast schedules so the tests take seconds.
fn fast(c: &mut weir::Config, upstreams: &[&Upstream]) {
    c.forward.upstreams = upstreams.iter().map(|u| u.url()).collect();
    c.forward.backoff_base_ms = 20;
    c.forward.backoff_cap_ms = 200;
    c.forward.timeout_ms = 2000;
    c.forward.probe_interval_ms = 1000;
}

async fn post(c: &Client, gw: &Gateway, tenant: &str, headers: &[(&str, &str)], body: &str) -> String {
    let r = c.post(&gw.ingest_url(&format!("/ingest/{tenant}/src")), headers, body.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    r.json()["id"].as_str().expect("id").to_string()
}

async fn get(c: &Client, gw: &Gateway, id: &str) -> serde_json::Value {
    c.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await.json()
}

async fn status(c: &Client, gw: &Gateway) -> serde_json::Value {
    c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json()
}

async fn wait_state(c: &Client, gw: &Gateway, id: &str, state: &str) -> serde_json::Value {
    eventually(Duration::from_secs(20), || async {
        let t = get(c, gw, id).await;
        (t["state"] == state).then_some(t)
    })
    .await
}

#[tokio::test]
async fn delivers_with_every_contract_header() {
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| fast(c, &[&up])).await;
    let c = Client::new();
    let tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let keyed =
        post(&c, &gw, "acme", &[("content-type", "application/json"), ("idempotency-key", "evt_9"), ("traceparent", tp)], r#"{"a":1}"#)
            .await;
    let plain = post(&c, &gw, "globex", &[("content-type", "text/plain")], "hello").await;
    let t = wait_state(&c, &gw, &keyed, "delivered").await;
    wait_state(&c, &gw, &plain, "delivered").await;
    let got = up.received();
    let by_id = |id: &str| got.iter().find(|r| r.header("weir-trigger-id") == id).cloned().expect("received");
    let k = by_id(&keyed);
    assert_eq!(k.header("weir-tenant"), "acme");
    assert_eq!(k.header("weir-source"), "src");
    assert_eq!(k.header("idempotency-key"), "evt_9", "the sender's key");
    assert_eq!(k.header("traceparent"), tp);
    assert_eq!(k.header("content-type"), "application/json");
    assert_eq!(&k.body[..], br#"{"a":1}"#);
    let p = by_id(&plain);
    assert_eq!(p.header("idempotency-key"), plain, "no sender key: the trigger id");
    assert_eq!(p.header("traceparent"), "");
    let attempts = t["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["outcome"], "delivered");
    assert_eq!(attempts[0]["status"], 200);
    assert_eq!(attempts[0]["upstream"], 0);
    gw.stop().await;
}

#[tokio::test]
async fn a_permanent_4xx_is_dead_at_once_with_the_reason() {
    let up = Upstream::start(Mode::Status(422, None)).await;
    let gw = Gateway::start_with("", |c| fast(c, &[&up])).await;
    let c = Client::new();
    let id = post(&c, &gw, "acme", &[], "{}").await;
    let t = wait_state(&c, &gw, &id, "dead").await;
    let attempts = t["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "no retry of a permanent refusal");
    assert_eq!(attempts[0]["status"], 422);
    assert!(attempts[0]["detail"].as_str().expect("detail").contains("upstream says 422"));
    assert!(t["note"].as_str().expect("note").contains("422"));
    assert_eq!(status(&c, &gw).await["dead"], 1);
    gw.stop().await;
}

#[tokio::test]
async fn server_errors_are_retried_and_the_history_kept() {
    let up = Upstream::start(Mode::Ok).await;
    up.script(&[503, 500, 408]);
    let gw = Gateway::start_with("", |c| fast(c, &[&up])).await;
    let c = Client::new();
    let id = post(&c, &gw, "acme", &[("idempotency-key", "same-every-time")], "{}").await;
    let t = wait_state(&c, &gw, &id, "delivered").await;
    let statuses: Vec<u64> = t["attempts"].as_array().expect("attempts").iter().map(|a| a["status"].as_u64().expect("status")).collect();
    assert_eq!(statuses, vec![503, 500, 408, 200]);
    let keys: BTreeSet<String> = up.received().iter().map(|r| r.header("idempotency-key").to_string()).collect();
    assert_eq!(keys.len(), 1, "the same idempotency key on every attempt: {keys:?}");
    gw.stop().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let up = Upstream::start(Mode::Status(503, Some(2))).await;
    let gw = Gateway::start_with("", |c| fast(c, &[&up])).await;
    let c = Client::new();
    let id = post(&c, &gw, "acme", &[], "{}").await;
    up.wait_until(Duration::from_secs(10), |r| !r.is_empty()).await;
    up.set_mode(Mode::Ok);
    wait_state(&c, &gw, &id, "delivered").await;
    let got = up.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at - got[0].at;
    assert!(gap >= Duration::from_millis(1950), "second attempt came {gap:?} after a Retry-After: 2");
    gw.stop().await;
}

#[tokio::test]
async fn max_attempts_makes_a_trigger_dead() {
    let up = Upstream::start(Mode::Status(500, None)).await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&up]);
        c.forward.max_attempts = 3;
        c.forward.failure_threshold = 100;
    })
    .await;
    let c = Client::new();
    let id = post(&c, &gw, "acme", &[], "{}").await;
    let t = wait_state(&c, &gw, &id, "dead").await;
    assert_eq!(t["attempts"].as_array().expect("attempts").len(), 3);
    assert!(t["note"].as_str().expect("note").contains("gave up after 3 attempts"));
    gw.stop().await;
}

#[tokio::test]
async fn failover_to_the_secondary_and_back_to_the_primary() {
    let mut primary = Upstream::start(Mode::Ok).await;
    let secondary = Upstream::start(Mode::Ok).await;
    primary.down().await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&primary, &secondary]);
        c.forward.failure_threshold = 2;
        c.forward.probe_interval_ms = 200;
    })
    .await;
    let c = Client::new();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(post(&c, &gw, "acme", &[], &format!("{i}")).await);
    }
    for id in &ids {
        let t = wait_state(&c, &gw, id, "delivered").await;
        let last = t["attempts"].as_array().expect("attempts").last().cloned().expect("attempt");
        assert_eq!(last["upstream"], 1, "delivered by the secondary while the primary is down");
    }
    let s = status(&c, &gw).await;
    assert_eq!(s["upstreams"][0]["state"], "open", "{s}");
    assert_eq!(s["upstreams"][1]["state"], "healthy", "{s}");

    primary.up();
    // Probes find the primary again; then traffic returns to it.
    let back = eventually(Duration::from_secs(20), || async {
        let id = post(&c, &gw, "acme", &[], "after").await;
        let t = wait_state(&c, &gw, &id, "delivered").await;
        (t["attempts"].as_array().and_then(|a| a.last()).map(|a| a["upstream"].clone()) == Some(0.into())).then_some(id)
    })
    .await;
    assert!(primary.received().iter().any(|r| r.header("weir-trigger-id") == back));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_absorbed_and_probed_then_the_backlog_drains() {
    const MAX_IN_FLIGHT: u32 = 8;
    let mut up = Upstream::start(Mode::Ok).await;
    up.down().await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&up]);
        c.forward.max_in_flight = MAX_IN_FLIGHT;
    })
    .await;
    let c = Client::new();
    let started = std::time::Instant::now();
    let mut tasks = Vec::new();
    for n in 0..8 {
        let (c, url) = (c.clone(), gw.ingest_url("/ingest/acme/load"));
        tasks.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..25 {
                let r = c.post(&url, &[], format!("{n}-{i}")).await;
                assert_eq!(r.status, StatusCode::ACCEPTED, "ingest keeps accepting during the outage");
                ids.push(r.json()["id"].as_str().expect("id").to_string());
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.extend(t.await.expect("load"));
    }
    assert_eq!(c.get(&gw.ingest_url("/healthz"), None).await.status, StatusCode::OK);
    assert_eq!(c.get(&gw.ingest_url("/readyz"), None).await.status, StatusCode::OK, "ready never depends on the upstream");
    // The outage lasts until the gateway has dated it at three probe
    // intervals; its attempts are bounded by that same clock (one status
    // snapshot), so a loaded machine stretches both alike.
    let s = eventually(Duration::from_secs(30), || async {
        let s = status(&c, &gw).await;
        (s["upstreams"][0]["out_for_ms"].as_u64() >= Some(3000)).then_some(s)
    })
    .await;
    assert_eq!(s["upstreams"][0]["state"], "open", "{s}");
    assert_eq!(s["backlog"], 200);
    let attempts = s["upstreams"][0]["attempts"].as_u64().expect("attempts");
    let out_for = s["upstreams"][0]["out_for_ms"].as_u64().expect("out_for_ms");
    // Before the breaker opened: the attempts in flight plus those started
    // while the first failures came back (fewer than the threshold); after:
    // one probe per probe interval (1 s).
    const THRESHOLD: u64 = 5;
    let allowed = u64::from(MAX_IN_FLIGHT) + THRESHOLD + out_for / 1000 + 1;
    println!(
        "outage: {out_for} ms, {:.1} s on the test's clock, connection attempts {attempts} (allowed {allowed})",
        started.elapsed().as_secs_f64()
    );
    assert!(attempts <= allowed, "{attempts} attempts in an outage of {out_for} ms");

    up.up();
    eventually(Duration::from_secs(120), || async { (status(&c, &gw).await["pending"] == 0).then_some(()) }).await;
    let delivered: BTreeSet<String> = up.received().iter().map(|r| r.header("weir-trigger-id").to_string()).collect();
    assert!(ids.iter().all(|id| delivered.contains(id)), "the whole backlog drained");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_500_storm_opens_the_breaker_without_multiplying_traffic() {
    let up = Upstream::start(Mode::Status(500, None)).await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&up]);
        c.forward.max_in_flight = 4;
        // The default schedule: a failed trigger waits before its retry.
        c.forward.backoff_base_ms = 500;
        c.forward.backoff_cap_ms = 300_000;
    })
    .await;
    let c = Client::new();
    for i in 0..100 {
        post(&c, &gw, "acme", &[], &format!("{i}")).await;
    }
    eventually(Duration::from_secs(10), || async { (status(&c, &gw).await["upstreams"][0]["state"] == "open").then_some(()) }).await;
    let opened = up.received().len();
    // Six more requests reach the upstream (attempts that were already out
    // when it opened, then probes); the gateway's own outage clock, read
    // after them, bounds how many there may be.
    up.wait_until(Duration::from_secs(30), |got| got.len() >= opened + 6).await;
    let out_for = status(&c, &gw).await["upstreams"][0]["out_for_ms"].as_u64().expect("out_for_ms");
    let got = up.received();
    let mut per_trigger: BTreeMap<String, usize> = BTreeMap::new();
    for r in &got[..opened] {
        *per_trigger.entry(r.header("weir-trigger-id").to_string()).or_default() += 1;
    }
    let ratio = opened as f64 / per_trigger.len() as f64;
    let probes = got.len() - opened;
    println!(
        "storm: {opened} attempts on {} triggers before open (ratio {ratio:.2}); {probes} probes in an outage of {out_for} ms",
        per_trigger.len()
    );
    assert!(ratio <= 1.2, "attempts per trigger before the breaker opened: {ratio}");
    // One probe per second (the probe interval), plus the attempts that
    // were out when the breaker opened (max_in_flight).
    let allowed = (out_for / 1000 + 1 + 4) as usize;
    assert!(probes <= allowed, "at most one probe per second: {probes} in {out_for} ms (allowed {allowed})");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_holds_at_most_max_in_flight_and_times_out() {
    let up = Upstream::start(Mode::Slow(Duration::from_secs(3))).await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&up]);
        c.forward.max_in_flight = 3;
        c.forward.timeout_ms = 1000;
        c.forward.failure_threshold = 1000;
    })
    .await;
    let c = Client::new();
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(post(&c, &gw, "acme", &[], &format!("{i}")).await);
    }
    let t = eventually(Duration::from_secs(20), || async {
        let t = get(&c, &gw, &ids[0]).await;
        (!t["attempts"].as_array().expect("attempts").is_empty()).then_some(t)
    })
    .await;
    // The event, not the stopwatch (how long it took is the benchmark's business).
    assert_eq!(t["attempts"][0]["outcome"], "retry");
    assert_eq!(t["attempts"][0]["status"], serde_json::Value::Null, "no answer came");
    assert!(t["attempts"][0]["detail"].as_str().expect("detail").contains("timed out after 1000 ms"));
    // Let a few rounds of attempts happen, then rebuild the gateway's own
    // in-flight timeline from the recorded attempts (the upstream keeps
    // sleeping on requests the gateway has abandoned, so it over-counts).
    eventually(Duration::from_secs(20), || async {
        let mut n = 0;
        for id in &ids {
            n += get(&c, &gw, id).await["attempts"].as_array().map_or(0, |a| a.len());
        }
        (n >= 9).then_some(())
    })
    .await;
    let mut edges = Vec::new();
    for id in &ids {
        for a in get(&c, &gw, id).await["attempts"].as_array().expect("attempts") {
            let end_ms = a["at_ms"].as_u64().expect("at_ms");
            let start_ms = end_ms - a["duration_ms"].as_u64().expect("duration");
            // Shrink by 2 ms on each side: millisecond rounding of two records.
            edges.push((start_ms + 2, 1i32));
            edges.push((end_ms.saturating_sub(2), -1i32));
        }
    }
    edges.sort();
    let (mut now, mut peak) = (0, 0);
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    assert!(peak <= 3, "the gateway had {peak} attempts in flight with max_in_flight = 3");
    gw.stop().await;
}

#[tokio::test]
async fn pause_holds_a_tenant_and_resume_releases_it() {
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| fast(c, &[&up])).await;
    let c = Client::new();
    let pause = c
        .send(http::Method::POST, &gw.admin_url("/v1/tenants/acme/pause"), &[("authorization", &format!("Bearer {TOKEN}"))], "")
        .await
        .expect("pause");
    assert_eq!(pause.status, StatusCode::OK);
    let held: Vec<String> = futures_ids(&c, &gw, "acme", 5).await;
    let free: Vec<String> = futures_ids(&c, &gw, "globex", 5).await;
    for id in &free {
        wait_state(&c, &gw, id, "delivered").await;
    }
    for id in &held {
        assert_eq!(get(&c, &gw, id).await["state"], "pending", "paused: held, never discarded");
    }
    assert!(up.received().iter().all(|r| r.header("weir-tenant") != "acme"));
    assert_eq!(status(&c, &gw).await["paused_tenants"][0], "acme");
    let resume = c
        .send(http::Method::POST, &gw.admin_url("/v1/tenants/acme/resume"), &[("authorization", &format!("Bearer {TOKEN}"))], "")
        .await
        .expect("resume");
    assert_eq!(resume.status, StatusCode::OK);
    for id in &held {
        wait_state(&c, &gw, id, "delivered").await;
    }
    let unknown = c
        .send(http::Method::POST, &gw.admin_url("/v1/tenants/nobody/pause"), &[("authorization", &format!("Bearer {TOKEN}"))], "")
        .await
        .expect("pause");
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    gw.stop().await;
}

async fn futures_ids(c: &Client, gw: &Gateway, tenant: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(post(c, gw, tenant, &[], &format!("{i}")).await);
    }
    ids
}

#[tokio::test]
async fn one_tenants_backlog_does_not_starve_anothers_fresh_trigger() {
    let up = Upstream::start(Mode::Slow(Duration::from_millis(20))).await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&up]);
        c.forward.max_in_flight = 1;
    })
    .await;
    let c = Client::new();
    let pause = |t: &'static str, on: bool| {
        let (c, url) = (c.clone(), gw.admin_url(&format!("/v1/tenants/{t}/{}", if on { "pause" } else { "resume" })));
        async move { c.send(http::Method::POST, &url, &[("authorization", &format!("Bearer {TOKEN}"))], "").await.expect("pause") }
    };
    // Build a backlog for acme while it is paused, then release it together with one globex trigger.
    pause("acme", true).await;
    let backlog = futures_ids(&c, &gw, "acme", 100).await;
    pause("globex", true).await;
    let fresh = post(&c, &gw, "globex", &[], "fresh").await;
    pause("acme", false).await;
    pause("globex", false).await;
    wait_state(&c, &gw, &fresh, "delivered").await;
    let pos = up.received().iter().position(|r| r.header("weir-trigger-id") == fresh).expect("fresh delivered");
    println!("fresh trigger delivered as number {} behind a backlog of {}", pos + 1, backlog.len());
    assert!(pos < 10, "round robin: the fresh trigger went out early, not after the backlog (position {pos})");
    gw.stop().await;
}

#[tokio::test]
async fn a_dead_primary_costs_a_lone_trigger_one_backoff_step_and_traffic_fails_back() {
    let mut primary = Upstream::start(Mode::Ok).await;
    let secondary = Upstream::start(Mode::Ok).await;
    primary.down().await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&primary, &secondary]);
        // Every retry finds the open primary due for a probe (backoff longer
        // than the probe interval): the low-traffic case in which every retry
        // used to be a probe to the dead primary.
        c.forward.failure_threshold = 1;
        c.forward.probe_interval_ms = 50;
        c.forward.backoff_base_ms = 300;
        c.forward.backoff_cap_ms = 300;
    })
    .await;
    let c = Client::new();
    for n in 0..3 {
        let id = post(&c, &gw, "acme", &[], &format!("lone {n}")).await;
        let t = wait_state(&c, &gw, &id, "delivered").await;
        let upstreams: Vec<u64> =
            t["attempts"].as_array().expect("attempts").iter().map(|a| a["upstream"].as_u64().expect("upstream")).collect();
        // The first attempt may be the primary's probe; the retry is not.
        assert!(upstreams == [1] || upstreams == [0, 1], "trigger {n}: attempts went to {upstreams:?}");
    }
    primary.up();
    let back = eventually(Duration::from_secs(20), || async {
        let id = post(&c, &gw, "acme", &[], "after").await;
        let t = wait_state(&c, &gw, &id, "delivered").await;
        (t["attempts"].as_array().and_then(|a| a.last()).map(|a| a["upstream"].clone()) == Some(0.into())).then_some(id)
    })
    .await;
    assert!(primary.received().iter().any(|r| r.header("weir-trigger-id") == back), "failback to the primary");
    gw.stop().await;
}

#[tokio::test]
async fn retries_waiting_on_a_recovered_upstream_go_when_its_breaker_closes() {
    let mut up = Upstream::start(Mode::Ok).await;
    up.down().await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&up]);
        c.forward.failure_threshold = 1;
        c.forward.probe_interval_ms = 100;
        // A failed trigger waits a minute: far longer than this test may take.
        c.forward.backoff_base_ms = 60_000;
        c.forward.backoff_cap_ms = 60_000;
    })
    .await;
    let c = Client::new();
    let mut waiting = Vec::new();
    for n in 0..3 {
        let id = post(&c, &gw, "acme", &[], &format!("outage {n}")).await;
        eventually(Duration::from_secs(20), || async { (!get(&c, &gw, &id).await["attempts"].as_array()?.is_empty()).then_some(()) }).await;
        waiting.push(id);
    }
    // (The attempt is on the trigger a moment before the forwarder books the retry.)
    eventually(Duration::from_secs(20), || async { (status(&c, &gw).await["retries_waiting"] == 3).then_some(()) }).await;
    up.up();
    // Fresh triggers probe the upstream until its breaker closes...
    eventually(Duration::from_secs(20), || async {
        let id = post(&c, &gw, "acme", &[], "fresh").await;
        wait_state(&c, &gw, &id, "delivered").await;
        (status(&c, &gw).await["retries_waiting"] == 0).then_some(())
    })
    .await;
    // ...and then the waiting retries go at once, not a minute later.
    for id in &waiting {
        let t = wait_state(&c, &gw, id, "delivered").await;
        assert_eq!(t["attempts"].as_array().expect("attempts").len(), 2);
    }
    gw.stop().await;
}

#[tokio::test]
async fn a_github_webhook_reaches_the_upstream_with_its_headers() {
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&up]);
        c.forward.deny_headers.insert(up.url(), vec!["x-internal-only".into()]);
    })
    .await;
    let c = Client::new();
    let headers = [
        ("content-type", "application/json"),
        ("x-github-event", "push"),
        ("x-github-delivery", "72d3162e-cc78-11e3-81ab-4c9367dc0958"),
        ("x-hub-signature-256", "sha256=d57c68ca6f92289e6987922ff26938930f6e66a2d161ef06abdf1859230aa23c"),
        ("authorization", "Bearer sender-secret"),
        ("x-internal-only", "never upstream"),
        // A sender cannot forge what Weir says.
        ("weir-tenant", "globex"),
        ("weir-trigger-id", "forged"),
    ];
    let id = post(&c, &gw, "acme", &headers, r#"{"ref":"refs/heads/main"}"#).await;
    wait_state(&c, &gw, &id, "delivered").await;
    let got = up.received().into_iter().find(|r| r.header("weir-trigger-id") == id).expect("received");
    assert_eq!(got.header("x-github-event"), "push");
    assert_eq!(got.header("x-github-delivery"), "72d3162e-cc78-11e3-81ab-4c9367dc0958");
    assert_eq!(got.header("x-hub-signature-256"), headers[3].1);
    assert_eq!(got.header("content-type"), "application/json");
    assert_eq!(got.header("authorization"), "", "credentials are never stored, so never sent");
    assert_eq!(got.header("x-internal-only"), "", "the upstream's deny list");
    assert_eq!(got.header("weir-tenant"), "acme");
    assert_eq!(got.headers.get_all("weir-trigger-id").iter().count(), 1);
    assert_eq!(got.header("idempotency-key"), id);
    gw.stop().await;
}

#[tokio::test]
async fn a_plugins_headers_and_route_reach_the_routes_upstream() {
    let default = Upstream::start(Mode::Ok).await;
    let pushes = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| {
        fast(c, &[&default]);
        c.forward.routes = vec![RouteConfig { name: "push".into(), upstreams: vec![pushes.url()] }];
        c.tenants.push(TenantConfig { id: "routed".into(), plugin: Some(wasm::SET_ROUTE.into()), ..TenantConfig::default() });
    })
    .await;
    let c = Client::new();
    let url = gw.ingest_url("/ingest/routed/gh");
    let send = |route: &'static str| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c.post(&url, &[("x-route", route), ("x-remove-me", "secret-ish"), ("x-kept", "yes")], "{}").await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
            r.json()["id"].as_str().expect("id").to_string()
        }
    };
    let routed = send("push").await;
    let unknown = send("nobody-has-this-route").await;
    wait_state(&c, &gw, &routed, "delivered").await;
    wait_state(&c, &gw, &unknown, "delivered").await;
    let got = pushes.received().into_iter().find(|r| r.header("weir-trigger-id") == routed).expect("the route's upstream got it");
    assert_eq!(got.header("x-routed-by"), "set-route", "a header the plugin set");
    assert_eq!(got.header("x-remove-me"), "", "a header the plugin removed");
    assert_eq!(got.header("x-kept"), "yes");
    assert!(default.received().iter().all(|r| r.header("weir-trigger-id") != routed));
    assert!(default.received().iter().any(|r| r.header("weir-trigger-id") == unknown), "an unknown route takes forward.upstreams");
    let s = status(&c, &gw).await;
    assert_eq!(s["routes"][0]["name"], serde_json::Value::Null);
    assert_eq!(s["routes"][0]["upstreams"][0], default.url());
    assert_eq!(s["routes"][1]["name"], "push");
    assert_eq!(s["routes"][1]["upstreams"][0], pushes.url());
    assert_eq!(s["upstreams"][1]["url"], pushes.url());
    gw.stop().await;
}

/// The threads of process `pid`: (name, nice value), from /proc.
fn threads_of(pid: u32) -> Vec<(String, i64)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    tasks
        .flatten()
        .filter_map(|t| {
            let name = std::fs::read_to_string(t.path().join("comm")).ok()?.trim().to_string();
            let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
            // Fields from the third (state) on; nice is the 19th field overall.
            let nice = stat.rsplit_once(')')?.1.split_whitespace().nth(16)?.parse().ok()?;
            Some((name, nice))
        })
        .collect()
}

/// In the real binary, deliveries run on a thread of their own at nice 10,
/// so during a drain they take the CPU that ingest leaves over; the
/// workers that serve ingest stay at normal priority.
#[tokio::test]
async fn the_binary_forwards_on_a_background_priority_thread_beside_normal_priority_ingest() {
    let up = Upstream::start(Mode::Ok).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("weir.toml");
    // The [forward] table must come before [[tenants]]: put it first.
    let text = format!("\n[forward]\nupstreams = [\"{}\"]\n{}", up.url(), crate::support::config_toml(&dir.path().join("data"), ""));
    std::fs::write(&config, text).expect("write config");
    let weir = crate::support::WeirProcess::start(&config);
    let r = Client::new().post(&format!("http://{}/ingest/acme/src", weir.ingest), &[], "{}".to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    up.wait_until(Duration::from_secs(30), |r| r.len() == 1).await;
    let threads = threads_of(weir.child.id());
    let forward: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("weir-forward")).collect();
    assert!(!forward.is_empty(), "no forwarding thread in {threads:?}");
    assert!(forward.iter().all(|(_, nice)| *nice == 10), "forwarding threads {forward:?}");
    let workers: Vec<_> = threads.iter().filter(|(name, _)| name.starts_with("tokio-r")).collect();
    assert!(!workers.is_empty(), "no tokio worker in {threads:?}");
    assert!(workers.iter().all(|(_, nice)| *nice == 0), "ingest workers {workers:?}");
}
