//! JetStream as a delivery target, against a real nats-server: what a
//! published trigger carries, exactly one message per trigger across a
//! crash and an outage, a missing or full stream holding triggers pending
//! with the cause in `/v1/status`, routes and failover between HTTP and
//! JetStream. The streams are created here, as the platform would: Weir
//! never creates one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use http::StatusCode;
use weir::config::{RouteConfig, TenantConfig};
use weir_test_plugins as wasm;

use crate::natsd::NatsServer;
use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, WeirProcess, config_toml, eventually};

const SUBJECTS: &str = "jetstream:weir.triggers.{tenant}.{source}";

/// The platform's side: a file-backed stream with a duplicate window longer than any test.
async fn create_stream(js: &jetstream::Context, name: &str, subjects: &[&str], tweak: impl FnOnce(&mut stream::Config)) {
    let mut config = stream::Config {
        name: name.into(),
        subjects: subjects.iter().map(|s| s.to_string()).collect(),
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(600),
        ..Default::default()
    };
    tweak(&mut config);
    js.create_stream(config).await.expect("create the stream");
}

/// Every message the stream holds, in sequence order.
async fn messages(js: &jetstream::Context, name: &str) -> Vec<jetstream::message::StreamMessage> {
    let mut s = js.get_stream(name).await.expect("stream");
    let state = s.info().await.expect("info").state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = s.get_raw_message(seq).await {
            out.push(m);
        }
    }
    out
}

async fn count(js: &jetstream::Context, name: &str) -> u64 {
    js.get_stream(name).await.expect("stream").info().await.expect("info").state.messages
}

/// A header of a stored message, by name (NATS names keep their case; the
/// client's map tells a well-known name from a custom one, so look by text).
fn header(m: &jetstream::message::StreamMessage, name: &str) -> String {
    m.headers
        .iter()
        .find(|(n, _)| AsRef::<str>::as_ref(*n) == name)
        .and_then(|(_, v)| v.first())
        .map(|v| v.as_str().to_string())
        .unwrap_or_default()
}

/// Fast schedules so the tests take seconds.
fn fast(c: &mut weir::Config, upstreams: Vec<String>) {
    c.forward.upstreams = upstreams;
    c.forward.backoff_base_ms = 20;
    c.forward.backoff_cap_ms = 200;
    c.forward.timeout_ms = 2000;
    c.forward.probe_interval_ms = 500;
}

async fn post(c: &Client, gw: &Gateway, path: &str, headers: &[(&str, &str)], body: &str) -> String {
    let r = c.post(&gw.ingest_url(path), headers, body.to_string()).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    r.json()["id"].as_str().expect("id").to_string()
}

async fn get(c: &Client, admin: &str, id: &str) -> serde_json::Value {
    c.get(&format!("{admin}/v1/triggers/{id}"), Some(TOKEN)).await.json()
}

async fn status(c: &Client, admin: &str) -> serde_json::Value {
    c.get(&format!("{admin}/v1/status"), Some(TOKEN)).await.json()
}

async fn wait_state(c: &Client, admin: &str, id: &str, state: &str) -> serde_json::Value {
    eventually(Duration::from_secs(30), || async {
        let t = get(c, admin, id).await;
        (t["state"] == state).then_some(t)
    })
    .await
}

/// Waits until upstream `i`'s `last_error` in `/v1/status` is `error`.
async fn wait_last_error(c: &Client, admin: &str, i: usize, error: &str) -> serde_json::Value {
    eventually(Duration::from_secs(30), || async {
        let s = status(c, admin).await;
        (s["upstreams"][i]["last_error"] == error).then_some(s)
    })
    .await
}

fn last_attempt(t: &serde_json::Value) -> serde_json::Value {
    t["attempts"].as_array().and_then(|a| a.last()).cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_arrive_in_the_stream_with_every_header_and_their_key_as_msg_id() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    create_stream(&js, "TRIGGERS", &["weir.triggers.>"], |_| {}).await;
    let otlp = crate::traces::Receiver::start().await;
    let gw = Gateway::start_with(&nats.fleet_toml("fra1"), |c| {
        fast(c, vec![SUBJECTS.into()]);
        c.forward.deny_headers.insert(SUBJECTS.into(), vec!["x-internal".into()]);
        c.telemetry.otlp_endpoint = Some(format!("http://{}", otlp.addr));
        let plugin = Some(PathBuf::from(wasm::JSON_TRANSFORM));
        c.tenants.push(TenantConfig { id: "shaped".into(), plugin, ..TenantConfig::default() });
    })
    .await;
    let (c, admin) = (Client::new(), format!("http://{}", gw.admin));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let tp = format!("00-{trace}-00f067aa0ba902b7-01");
    let keyed = post(
        &c,
        &gw,
        "/ingest/acme/gh.push",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", "evt_9"),
            ("traceparent", &tp),
            ("x-hub-signature-256", "sha256=ab"),
            ("x-internal", "never sent"),
            ("nats-rollup", "all"),
        ],
        r#"{"a":1}"#,
    )
    .await;
    let plain = post(&c, &gw, "/ingest/globex/stripe", &[("content-type", "text/plain")], "hello").await;
    let shaped = post(&c, &gw, "/ingest/shaped/crm", &[("content-type", "application/json")], r#"{"name":"ada"}"#).await;
    let mut delivered = BTreeMap::new();
    for id in [&keyed, &plain, &shaped] {
        delivered.insert(id.clone(), wait_state(&c, &admin, id, "delivered").await);
    }
    let got = messages(&js, "TRIGGERS").await;
    assert_eq!(got.len(), 3, "one message per trigger");
    let by_id = |id: &str| got.iter().find(|m| header(m, "weir-trigger-id") == id).cloned().expect("published");

    let k = by_id(&keyed);
    assert_eq!(k.subject.as_str(), "weir.triggers.acme.gh_push", "a '.' in the source becomes '_': the token count is fixed");
    assert_eq!(header(&k, "Nats-Msg-Id"), "evt_9", "the sender's key");
    assert_eq!(header(&k, "weir-tenant"), "acme");
    assert_eq!(header(&k, "weir-source"), "gh.push");
    assert_eq!(header(&k, "weir-pop"), "fra1");
    assert_eq!(header(&k, "content-type"), "application/json");
    assert_eq!(header(&k, "x-hub-signature-256"), "sha256=ab", "a stored header");
    assert_eq!(header(&k, "x-internal"), "", "forward.deny_headers applies to JetStream too");
    assert_eq!(header(&k, "nats-rollup"), "", "a sender never sets a nats-* header");
    assert_eq!(&k.payload[..], br#"{"a":1}"#);
    // The traceparent names the attempt's span, in the sender's trace.
    let sent = header(&k, "traceparent");
    assert!(sent.starts_with(&format!("00-{trace}-")), "{sent}");
    let spans = eventually(Duration::from_secs(20), || async {
        let spans = otlp.spans();
        spans.iter().any(|s| s.name == "forward" && hex(&s.span_id) == sent[36..52]).then_some(spans)
    })
    .await;
    let span = spans.iter().find(|s| hex(&s.span_id) == sent[36..52]).expect("the attempt's span");
    assert_eq!(crate::traces::attr(span, "messaging.destination.name").as_deref(), Some("weir.triggers.acme.gh_push"));

    let p = by_id(&plain);
    assert_eq!(header(&p, "Nats-Msg-Id"), plain, "no sender key: the trigger id, as over HTTP");
    assert_eq!(p.subject.as_str(), "weir.triggers.globex.stripe");
    assert_eq!(&p.payload[..], b"hello");

    let s = by_id(&shaped);
    let transformed = delivered[&shaped]["transformed_body"]["data"].as_str().expect("transformed").to_string();
    assert_eq!(std::str::from_utf8(&s.payload).expect("utf8"), transformed, "the plugin's body, not the sender's");
    assert!(transformed.contains("_weir"));

    // The attempt names the stream and the sequence.
    for (id, t) in &delivered {
        let m = by_id(id);
        let a = last_attempt(t);
        assert_eq!(a["outcome"], "delivered");
        assert_eq!(a["status"], serde_json::Value::Null, "no HTTP status on JetStream");
        assert_eq!(a["detail"], format!("stream TRIGGERS seq {}", m.sequence), "{t}");
    }
    let m = c.get(&gw.admin_url("/metrics"), Some(TOKEN)).await;
    let text = String::from_utf8_lossy(&m.body).to_string();
    assert!(
        text.lines().any(|l| l.contains("weir_forward_attempts_total") && l.contains(SUBJECTS) && l.contains("delivered")),
        "metrics label the upstream with its jetstream: entry:\n{text}"
    );
    gw.stop().await;
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A config file for the real binary, publishing to JetStream.
fn process_config(dir: &std::path::Path, nats: &NatsServer) -> PathBuf {
    let path = dir.join("weir.toml");
    let extra = format!(
        "{}\n[forward]\nupstreams = [\"{SUBJECTS}\"]\nbackoff_base_ms = 20\nbackoff_cap_ms = 200\ntimeout_ms = 2000\nprobe_interval_ms = 500\n",
        nats.fleet_toml("fra1")
    );
    std::fs::write(&path, config_toml(&dir.join("data"), &extra)).expect("write config");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resend_after_sigkill_between_publish_and_mark_leaves_one_message() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let config = process_config(dir.path(), &nats);
    let c = Client::new();

    // No stream yet: every trigger stays pending.
    let weir = WeirProcess::start(&config);
    let (ingest, admin) = (format!("http://{}", weir.ingest), format!("http://{}", weir.admin));
    let mut ids = Vec::new();
    for i in 0..10 {
        let key = format!("order-{i}");
        let headers: Vec<(&str, &str)> = if i % 2 == 0 { vec![("idempotency-key", key.as_str())] } else { vec![] };
        let r = c.post(&format!("{ingest}/ingest/acme/shop"), &headers, format!("{{\"n\":{i}}}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    wait_last_error(&c, &admin, 0, "no JetStream stream captures subject weir.triggers.acme.shop: ask the platform team to create one")
        .await;
    let mut keys = BTreeMap::new();
    for id in &ids {
        let t = get(&c, &admin, id).await;
        assert_eq!(t["state"], "pending");
        keys.insert(id.clone(), t["idempotency_key"].as_str().map_or(id.clone(), str::to_string));
    }
    weir.sigkill();

    // The crash window: Weir's publish of three of them got its PubAck, and
    // the process died before the store recorded `delivered`. The stream
    // holds them; Weir's store says pending.
    create_stream(&js, "TRIGGERS", &["weir.triggers.>"], |_| {}).await;
    let crashed: Vec<String> = vec![ids[0].clone(), ids[1].clone(), ids[4].clone()];
    for id in &crashed {
        let mut h = async_nats::HeaderMap::new();
        h.insert("weir-trigger-id", id.as_str());
        h.insert("weir-tenant", "acme");
        h.insert("Nats-Msg-Id", keys[id].as_str());
        let ack = js.publish_with_headers("weir.triggers.acme.shop", h, "{}".into()).await.expect("publish").await.expect("ack");
        assert!(!ack.duplicate);
    }

    // The restart sends every pending trigger again, with the same Nats-Msg-Id.
    let weir = WeirProcess::start(&config);
    let admin = format!("http://{}", weir.admin);
    for id in &ids {
        let t = wait_state(&c, &admin, id, "delivered").await;
        let detail = last_attempt(&t)["detail"].as_str().unwrap_or_default().to_string();
        assert_eq!(detail.contains("duplicate"), crashed.contains(id), "{id}: {detail}");
    }
    assert_eq!(count(&js, "TRIGGERS").await, ids.len() as u64, "exactly one message per trigger");
    let got = messages(&js, "TRIGGERS").await;
    let msg_ids: BTreeSet<String> = got.iter().map(|m| header(m, "Nats-Msg-Id")).collect();
    assert_eq!(msg_ids, keys.values().cloned().collect::<BTreeSet<_>>());

    // And a real kill in the middle of ingest and drain: whatever was
    // published and not yet marked is sent again after the restart and
    // dropped by the duplicate window.
    let url = format!("http://{}/ingest/globex/bulk", weir.ingest);
    let mut load = Vec::new();
    for n in 0..8 {
        let (c, url) = (Client::new(), url.clone());
        load.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for i in 0.. {
                // The process is gone: nothing more can be acknowledged.
                let Ok(r) = c.send(http::Method::POST, &url, &[], format!("{n}-{i}")).await else { break };
                assert_eq!(r.status, StatusCode::ACCEPTED);
                acked.push(r.json()["id"].as_str().expect("id").to_string());
            }
            acked
        }));
    }
    let target = ids.len() as u64 + 150;
    eventually(Duration::from_secs(60), || async { (count(&js, "TRIGGERS").await >= target).then_some(()) }).await;
    weir.sigkill();
    let mut acked = Vec::new();
    for l in load {
        acked.extend(l.await.expect("load"));
    }
    let weir = WeirProcess::start(&config);
    let admin = format!("http://{}", weir.admin);
    let s = eventually(Duration::from_secs(60), || async {
        let s = status(&c, &admin).await;
        (s["pending"] == 0).then_some(s)
    })
    .await;
    let delivered = s["delivered"].as_u64().expect("delivered");
    assert_eq!(count(&js, "TRIGGERS").await, delivered, "exactly one message per trigger after a kill mid-drain");
    let published: BTreeSet<String> = messages(&js, "TRIGGERS").await.iter().map(|m| header(m, "weir-trigger-id")).collect();
    assert!(acked.iter().all(|id| published.contains(id)), "every acknowledged trigger is in the stream");
    println!("kill mid-drain: {} acknowledged, {delivered} delivered, one message each", acked.len() + ids.len());
    drop(weir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_down_under_ingest_load_then_the_backlog_drains_exactly_once() {
    const MAX_IN_FLIGHT: u32 = 8;
    const THRESHOLD: u32 = 5;
    let mut nats = NatsServer::start();
    // The test's own client gives up after one reconnection attempt, so the
    // connection attempts counted below are Weir's (give or take that one).
    let client = async_nats::ConnectOptions::new().max_reconnects(1).connect(nats.url()).await.expect("connect");
    let js = jetstream::new(client);
    create_stream(&js, "TRIGGERS", &["weir.triggers.>"], |_| {}).await;
    let gw = Gateway::start_with(&format!("{}reconnect_max_ms = 1000\n", nats.fleet_toml("fra1")), |c| {
        fast(c, vec![SUBJECTS.into()]);
        c.forward.max_in_flight = MAX_IN_FLIGHT;
        c.forward.failure_threshold = THRESHOLD;
    })
    .await;
    let (c, admin) = (Client::new(), format!("http://{}", gw.admin));

    // Steady ingest load from four clients until told to stop; every answer must be 202.
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for n in 0..4 {
        let (c, url, stop, accepted) = (c.clone(), gw.ingest_url("/ingest/acme/load"), stop.clone(), accepted.clone());
        load.push(tokio::spawn(async move {
            let mut ids = Vec::new();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let r = c.post(&url, &[], format!("{n}-{i}")).await;
                assert_eq!(r.status, StatusCode::ACCEPTED, "ingest keeps accepting while NATS is down");
                ids.push(r.json()["id"].as_str().expect("id").to_string());
                accepted.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
            ids
        }));
    }
    // /readyz is polled all along: it never looks at NATS.
    let ready = {
        let (c, url, stop) = (c.clone(), gw.ingest_url("/readyz"), stop.clone());
        tokio::spawn(async move {
            let mut polls = 0;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(c.get(&url, None).await.status, StatusCode::OK, "/readyz while NATS is down");
                polls += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            polls
        })
    };
    eventually(Duration::from_secs(30), || async { (count(&js, "TRIGGERS").await >= 100).then_some(()) }).await;
    drop(js);

    nats.down();
    // While it is down, a stand-in listener on its port counts the client's
    // connection attempts (and drops each one).
    let connects = Arc::new(AtomicUsize::new(0));
    let stand_in = {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_reuseaddr(true).expect("reuseaddr");
        socket.bind(format!("127.0.0.1:{}", nats.port).parse().expect("addr")).expect("bind the NATS port");
        let listener = socket.listen(64).expect("listen");
        let connects = connects.clone();
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                connects.fetch_add(1, Ordering::Relaxed);
                drop(s);
            }
        })
    };
    let s = wait_last_error(&c, &admin, 0, "NATS is unreachable (disconnected)").await;
    let attempts_at_outage = s["upstreams"][0]["attempts"].as_u64().expect("attempts");
    let during = accepted.load(Ordering::Relaxed);
    // The outage lasts until another 400 triggers were accepted and the client
    // has come back at the port three times (several of its backoff steps).
    // Attempts sent before the breaker opened may still be out when it is
    // open (each waits for its PubAck until the attempt timeout), so the
    // in-flight count is bounded by the limit, not by one; that an open
    // breaker launches nothing but its probe is the breaker's unit tests'
    // claim, and the attempt count below bounds the whole outage.
    eventually(Duration::from_secs(60), || async {
        let s = status(&c, &admin).await;
        assert!(s["upstreams"][0]["in_flight"].as_u64() <= Some(MAX_IN_FLIGHT.into()), "at most max_in_flight out: {s}");
        (accepted.load(Ordering::Relaxed) >= during + 400 && connects.load(Ordering::Relaxed) >= 3).then_some(())
    })
    .await;
    let s = status(&c, &admin).await;
    // Open, or half-open while a probe is out.
    assert!(["open", "degraded"].contains(&s["upstreams"][0]["state"].as_str().unwrap_or_default()), "{s}");
    assert_eq!(s["upstreams"][0]["last_error"], "NATS is unreachable (disconnected)");
    let attempts = s["upstreams"][0]["attempts"].as_u64().expect("attempts") - attempts_at_outage;
    let arrived = (accepted.load(Ordering::Relaxed) - during) as u64;
    stand_in.abort();
    let _ = stand_in.await;
    let tcp = connects.load(Ordering::Relaxed) as u64;
    // Bounded by the breaker and the client's backoff, not by the load: a
    // retry storm would try (and reconnect) at least once per arriving
    // trigger; here both stay a small fraction of them. (What an outage costs
    // over time is measured by `weir-bench drain-jetstream`, not asserted.)
    println!("outage: {arrived} triggers arrived, {attempts} publish attempts, {tcp} connection attempts");
    assert!(attempts * 4 <= arrived, "{attempts} publish attempts for {arrived} triggers that arrived during the outage");
    assert!(tcp * 4 <= arrived, "{tcp} connection attempts for {arrived} triggers that arrived during the outage");
    assert!(tcp >= 3, "the client kept trying to reconnect");

    nats.up();
    let after = accepted.load(Ordering::Relaxed);
    eventually(Duration::from_secs(60), || async { (accepted.load(Ordering::Relaxed) >= after + 100).then_some(()) }).await;
    stop.store(true, Ordering::Relaxed);
    let mut ids = BTreeSet::new();
    for l in load {
        ids.extend(l.await.expect("load"));
    }
    assert!(ready.await.expect("readyz poller") > 0);
    eventually(Duration::from_secs(120), || async { (status(&c, &admin).await["pending"] == 0).then_some(()) }).await;
    let js = jetstream::new(nats.client().await);
    let got = messages(&js, "TRIGGERS").await;
    let published: BTreeSet<String> = got.iter().map(|m| header(m, "weir-trigger-id")).collect();
    assert_eq!(got.len(), ids.len(), "the stream holds exactly the unique triggers");
    assert_eq!(published, ids, "every accepted trigger, once");
    println!("{} triggers accepted, {} during the outage", ids.len(), after - during);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_full_stream_holds_triggers_pending_and_status_names_the_cause() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    let gw = Gateway::start_with(&nats.fleet_toml("fra1"), |c| fast(c, vec![SUBJECTS.into()])).await;
    let (c, admin) = (Client::new(), format!("http://{}", gw.admin));
    let mut first = Vec::new();
    for i in 0..3 {
        first.push(post(&c, &gw, "/ingest/acme/src", &[], &format!("{i}")).await);
    }
    wait_last_error(&c, &admin, 0, "no JetStream stream captures subject weir.triggers.acme.src: ask the platform team to create one")
        .await;
    for id in &first {
        assert_eq!(get(&c, &admin, id).await["state"], "pending");
    }

    // The platform creates a small stream that refuses new messages when full.
    create_stream(&js, "TRIGGERS", &["weir.triggers.>"], |s| {
        s.max_messages = 5;
        s.discard = stream::DiscardPolicy::New;
    })
    .await;
    for id in &first {
        wait_state(&c, &admin, id, "delivered").await;
    }
    let mut second = Vec::new();
    for i in 0..4 {
        second.push(post(&c, &gw, "/ingest/acme/src", &[], &format!("more-{i}")).await);
    }
    let s = wait_last_error(&c, &admin, 0, "stream TRIGGERS is full (maximum messages exceeded)").await;
    eventually(Duration::from_secs(30), || async { (status(&c, &admin).await["pending"] == 2).then_some(()) }).await;
    assert_eq!(count(&js, "TRIGGERS").await, 5);
    println!("full: {}", s["upstreams"][0]);

    // Raising the limit releases them.
    let mut config = js.get_stream("TRIGGERS").await.expect("stream").info().await.expect("info").config.clone();
    config.max_messages = 8;
    js.update_stream(config).await.expect("raise the limit");
    for id in &second {
        wait_state(&c, &admin, id, "delivered").await;
    }
    assert_eq!(count(&js, "TRIGGERS").await, 7);

    // Full again; a purge releases them too.
    let mut third = Vec::new();
    for i in 0..3 {
        third.push(post(&c, &gw, "/ingest/acme/src", &[], &format!("last-{i}")).await);
    }
    eventually(Duration::from_secs(30), || async { (status(&c, &admin).await["pending"] == 2).then_some(()) }).await;
    assert_eq!(status(&c, &admin).await["upstreams"][0]["last_error"], "stream TRIGGERS is full (maximum messages exceeded)");
    js.get_stream("TRIGGERS").await.expect("stream").purge().await.expect("purge");
    for id in &third {
        wait_state(&c, &admin, id, "delivered").await;
    }
    assert_eq!(count(&js, "TRIGGERS").await, 2, "the two held back, after the purge");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugins_route_sends_its_triggers_to_jetstream_and_fails_over_from_http() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    create_stream(&js, "ROUTED", &["weir.routes.>"], |_| {}).await;
    let default = Upstream::start(Mode::Ok).await;
    let mut dead = Upstream::start(Mode::Ok).await;
    dead.down().await;
    let routed_subject = "jetstream:weir.routes.{route}.{tenant}";
    let gw = Gateway::start_with(&nats.fleet_toml("fra1"), |c| {
        fast(c, vec![default.url()]);
        c.forward.routes = vec![
            RouteConfig { name: "push".into(), upstreams: vec![routed_subject.into()] },
            // HTTP primary (down) → JetStream secondary.
            RouteConfig { name: "reverse".into(), upstreams: vec![dead.url(), routed_subject.into()] },
        ];
        c.tenants.push(TenantConfig { id: "routed".into(), plugin: Some(wasm::SET_ROUTE.into()), ..TenantConfig::default() });
    })
    .await;
    let (c, admin) = (Client::new(), format!("http://{}", gw.admin));
    let send = |route: &'static str| {
        let (c, url) = (c.clone(), gw.ingest_url("/ingest/routed/gh"));
        async move {
            let r = c.post(&url, &[("x-route", route), ("x-kept", "yes")], "{}").await;
            assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
            r.json()["id"].as_str().expect("id").to_string()
        }
    };
    let pushed = send("push").await;
    let other = send("nobody-has-this-route").await;
    let reversed = send("reverse").await;
    for id in [&pushed, &other, &reversed] {
        wait_state(&c, &admin, id, "delivered").await;
    }
    let got = messages(&js, "ROUTED").await;
    let find = |id: &str| got.iter().find(|m| header(m, "weir-trigger-id") == id).cloned();
    let p = find(&pushed).expect("the route's stream got it");
    assert_eq!(p.subject.as_str(), "weir.routes.push.routed", "{{route}} is the route's name");
    assert_eq!(header(&p, "x-routed-by"), "set-route", "a header the plugin set");
    assert_eq!(header(&p, "x-kept"), "yes");
    assert!(find(&other).is_none(), "an unknown route takes forward.upstreams");
    assert!(default.received().iter().any(|r| r.header("weir-trigger-id") == other));
    assert!(default.received().iter().all(|r| r.header("weir-trigger-id") != pushed));
    let r = find(&reversed).expect("the HTTP primary is down: the JetStream secondary took it");
    assert_eq!(r.subject.as_str(), "weir.routes.reverse.routed");
    let t = get(&c, &admin, &reversed).await;
    let attempts = t["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.first().expect("attempt")["outcome"], "retry", "{t}");
    assert_eq!(last_attempt(&t)["outcome"], "delivered");
    let s = status(&c, &admin).await;
    assert_eq!(s["routes"][1]["upstreams"][0], routed_subject);
    assert_eq!(s["upstreams"][last_attempt(&t)["upstream"].as_u64().expect("upstream") as usize]["url"], routed_subject);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jetstream_primary_without_a_stream_fails_over_to_http_and_back_at_sparse_traffic() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    let http = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with(&nats.fleet_toml("fra1"), |c| fast(c, vec![SUBJECTS.into(), http.url()])).await;
    let (c, admin) = (Client::new(), format!("http://{}", gw.admin));
    // One trigger at a time: each is delivered by the secondary, at most one
    // backoff step late.
    for i in 0..8 {
        let id = post(&c, &gw, "/ingest/acme/sparse", &[], &format!("{i}")).await;
        let t = wait_state(&c, &admin, &id, "delivered").await;
        assert_eq!(last_attempt(&t)["upstream"], 1, "{t}");
        assert!(t["attempts"].as_array().expect("attempts").len() <= 2, "{t}");
    }
    let s = status(&c, &admin).await;
    assert_eq!(s["upstreams"][0]["state"], "open", "{s}");
    assert_eq!(
        s["upstreams"][0]["last_error"],
        "no JetStream stream captures subject weir.triggers.acme.sparse: ask the platform team to create one"
    );
    assert_eq!(http.received().len(), 8);

    // The platform creates the stream: a probe finds it and traffic fails back.
    create_stream(&js, "TRIGGERS", &["weir.triggers.>"], |_| {}).await;
    let back = eventually(Duration::from_secs(30), || async {
        let id = post(&c, &gw, "/ingest/acme/sparse", &[], "probe").await;
        let t = wait_state(&c, &admin, &id, "delivered").await;
        (last_attempt(&t)["upstream"] == 0).then_some(id)
    })
    .await;
    for i in 0..3 {
        let id = post(&c, &gw, "/ingest/acme/sparse", &[], &format!("after-{i}")).await;
        let t = wait_state(&c, &admin, &id, "delivered").await;
        assert_eq!(last_attempt(&t)["upstream"], 0, "back on the primary: {t}");
    }
    let got = messages(&js, "TRIGGERS").await;
    assert!(got.iter().any(|m| header(m, "weir-trigger-id") == back));
    assert_eq!(got.len(), 4);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_message_with_the_same_key_is_not_taken_for_a_delivery() {
    let nats = NatsServer::start();
    let js = jetstream::new(nats.client().await);
    // A short window, so the collision ends within the test.
    create_stream(&js, "TRIGGERS", &["weir.triggers.>"], |s| s.duplicate_window = Duration::from_secs(2)).await;
    let gw = Gateway::start_with(&nats.fleet_toml("fra1"), |c| {
        fast(c, vec![SUBJECTS.into()]);
        c.forward.max_attempts = 1000;
    })
    .await;
    let (c, admin) = (Client::new(), format!("http://{}", gw.admin));
    let first = post(&c, &gw, "/ingest/acme/shop", &[("idempotency-key", "order-1")], "acme's").await;
    wait_state(&c, &admin, &first, "delivered").await;
    // Another tenant, the same key: JetStream answers duplicate.
    let second = post(&c, &gw, "/ingest/globex/shop", &[("idempotency-key", "order-1")], "globex's").await;
    let s = eventually(Duration::from_secs(30), || async {
        let s = status(&c, &admin).await;
        s["upstreams"][0]["last_error"]
            .as_str()
            .is_some_and(|e| e.starts_with("JetStream dropped it as a duplicate of tenant acme's message"))
            .then_some(s)
    })
    .await;
    println!("collision: {}", s["upstreams"][0]["last_error"]);
    // Once the window has passed, the retry is stored.
    let t = wait_state(&c, &admin, &second, "delivered").await;
    assert!(!last_attempt(&t)["detail"].as_str().unwrap_or_default().contains("duplicate"), "{t}");
    let got = messages(&js, "TRIGGERS").await;
    assert_eq!(got.len(), 2);
    assert_eq!(got.iter().map(|m| std::str::from_utf8(&m.payload).expect("utf8").to_string()).collect::<Vec<_>>(), ["acme's", "globex's"]);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trigger_larger_than_max_payload_is_dead_and_the_connection_stays_up() {
    let nats = NatsServer::start_with_config(Some("max_payload: 4096"));
    let js = jetstream::new(nats.client().await);
    create_stream(&js, "TRIGGERS", &["weir.triggers.>"], |_| {}).await;
    let gw = Gateway::start_with(&nats.fleet_toml("fra1"), |c| fast(c, vec![SUBJECTS.into()])).await;
    let (c, admin) = (Client::new(), format!("http://{}", gw.admin));
    let small = post(&c, &gw, "/ingest/acme/src", &[], "small").await;
    wait_state(&c, &admin, &small, "delivered").await;
    let big = post(&c, &gw, "/ingest/acme/src", &[], &"x".repeat(5000)).await;
    let t = wait_state(&c, &admin, &big, "dead").await;
    let note = t["note"].as_str().unwrap_or_default();
    assert!(note.contains("larger than the NATS servers' max_payload (4096 bytes)"), "{t}");
    assert_eq!(t["attempts"].as_array().map(Vec::len), Some(1), "never retried: it would never fit");
    let after = post(&c, &gw, "/ingest/acme/src", &[], "after").await;
    let t = wait_state(&c, &admin, &after, "delivered").await;
    assert_eq!(t["attempts"].as_array().map(Vec::len), Some(1), "the connection was never cut: {t}");
    assert_eq!(count(&js, "TRIGGERS").await, 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_publishing_delivers_and_names_a_full_stream() {
    // The PoP may publish to its trigger subjects and receive replies, nothing more.
    let nats = NatsServer::start_with_config(Some(
        r#"accounts {
  FLEET: {
    jetstream: enabled
    users: [
      {user: platform, password: platform-secret}
      {user: pop, password: pop-secret, permissions: {publish: {allow: ["weir.triggers.>"]}, subscribe: {allow: ["_INBOX.>"]}}}
    ]
  }
}"#,
    ));
    let platform = async_nats::ConnectOptions::with_user_and_password("platform".into(), "platform-secret".into())
        .connect(nats.url())
        .await
        .expect("the platform connects");
    let js = jetstream::new(platform);
    create_stream(&js, "TRIGGERS", &["weir.triggers.>"], |s| {
        s.max_messages = 1;
        s.discard = stream::DiscardPolicy::New;
    })
    .await;
    let fleet = format!("{}user = \"pop\"\npassword = \"pop-secret\"\n", nats.fleet_toml("fra1"));
    let gw = Gateway::start_with(&fleet, |c| fast(c, vec![SUBJECTS.into()])).await;
    let (c, admin) = (Client::new(), format!("http://{}", gw.admin));
    let first = post(&c, &gw, "/ingest/acme/src", &[], "one").await;
    let t = wait_state(&c, &admin, &first, "delivered").await;
    assert_eq!(last_attempt(&t)["detail"], "stream TRIGGERS seq 1");
    // Full, and the PoP may not list streams: the cause is still named.
    let second = post(&c, &gw, "/ingest/acme/src", &[("idempotency-key", "dup-1")], "two").await;
    wait_last_error(&c, &admin, 0, "the stream capturing subject weir.triggers.acme.src is full (maximum messages exceeded)").await;
    // Meanwhile another publisher stores a message with the same Nats-Msg-Id
    // (the tenant is paused so that it comes first); the PoP may not read it
    // back, so the duplicate is taken as its own.
    let auth = format!("Bearer {TOKEN}");
    let r = c.post(&format!("{admin}/v1/tenants/acme/pause"), &[("authorization", auth.as_str())], "").await;
    assert_eq!(r.status, StatusCode::OK);
    eventually(Duration::from_secs(30), || async { (status(&c, &admin).await["in_flight"] == 0).then_some(()) }).await;
    let mut config = js.get_stream("TRIGGERS").await.expect("stream").info().await.expect("info").config.clone();
    config.max_messages = 10;
    js.update_stream(config).await.expect("raise the limit");
    let mut h = async_nats::HeaderMap::new();
    h.insert("Nats-Msg-Id", "dup-1");
    js.publish_with_headers("weir.triggers.acme.src", h, "two".into()).await.expect("publish").await.expect("ack");
    let r = c.post(&format!("{admin}/v1/tenants/acme/resume"), &[("authorization", auth.as_str())], "").await;
    assert_eq!(r.status, StatusCode::OK);
    let t = wait_state(&c, &admin, &second, "delivered").await;
    assert_eq!(last_attempt(&t)["detail"], "stream TRIGGERS seq 2 (duplicate: the stream already had this Nats-Msg-Id)", "{t}");
    gw.stop().await;
}
