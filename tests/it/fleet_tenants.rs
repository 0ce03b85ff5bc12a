//! Fleet-wide tenants and pauses from the control bucket of a real
//! nats-server: a tenant the fleet adds is served, a pause holds its
//! triggers, a removed tenant's accepted triggers still go out, bad values
//! are refused and listed, and a PoP restarted while NATS is down serves
//! what it last applied, then catches up on what it missed.

use std::time::Duration;

use async_nats::jetstream::kv;
use http::StatusCode;

use crate::natsd::NatsServer;
use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, eventually};

const WAIT: Duration = Duration::from_secs(30);

async fn control(nats: &NatsServer) -> kv::Store {
    let js = async_nats::jetstream::new(nats.client().await);
    match js.get_key_value("weir_control").await {
        Ok(kv) => kv,
        Err(_) => js
            .create_key_value(kv::Config { bucket: "weir_control".into(), history: 16, ..Default::default() })
            .await
            .expect("create bucket"),
    }
}

async fn ingest(gw: &Gateway, tenant: &str) -> StatusCode {
    gw.client.post(&gw.ingest_url(&format!("/ingest/{tenant}/src")), &[], "{}").await.status
}

async fn status(gw: &Gateway) -> serde_json::Value {
    Client::new().get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json()
}

fn fast(c: &mut weir::Config, up: &Upstream) {
    c.forward.upstreams = vec![up.url()];
    c.forward.backoff_base_ms = 20;
    c.forward.backoff_cap_ms = 200;
}

#[tokio::test]
async fn fleet_tenants_and_pauses_apply_and_a_removed_tenants_triggers_still_go_out() {
    let nats = NatsServer::start();
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with(&nats.fleet_toml("fra1"), |c| fast(c, &up)).await;
    assert_eq!(ingest(&gw, "initech").await, StatusCode::NOT_FOUND, "not a tenant yet");
    let kv = control(&nats).await;
    kv.put("tenants.initech", r#"{"plugin_timeout_ms": 80}"#.into()).await.expect("put");
    eventually(WAIT, || async { (ingest(&gw, "initech").await == StatusCode::ACCEPTED).then_some(()) }).await;
    up.wait_until(WAIT, |r| r.iter().any(|r| r.header("weir-tenant") == "initech")).await;

    // A fleet-wide pause holds the tenant's triggers; they are still accepted.
    kv.put("paused.initech", r#"{"paused": true, "at_ms": 1, "by": "test"}"#.into()).await.expect("put");
    eventually(WAIT, || async { (status(&gw).await["paused_tenants"].as_array()?.iter().any(|t| t == "initech")).then_some(()) }).await;
    let before = up.received().len();
    for _ in 0..3 {
        assert_eq!(ingest(&gw, "initech").await, StatusCode::ACCEPTED);
    }
    // The tenant leaves the fleet: new triggers are refused, held ones stay.
    kv.delete("tenants.initech").await.expect("delete");
    eventually(WAIT, || async { (ingest(&gw, "initech").await == StatusCode::NOT_FOUND).then_some(()) }).await;
    let s = status(&gw).await;
    assert_eq!(s["pending"], 3, "paused triggers wait in the store: {s}");
    assert_eq!(up.received().len(), before, "nothing of a paused tenant goes out");
    // Resuming (deleting the pause) sends what it was owed, tenant or not.
    kv.delete("paused.initech").await.expect("delete");
    up.wait_until(WAIT, |r| r.len() == before + 3).await;
    assert_eq!(up.received().iter().filter(|r| r.header("weir-tenant") == "initech").count(), 4);
    gw.stop().await;
}

#[tokio::test]
async fn bad_fleet_values_are_refused_and_listed_and_change_nothing() {
    let nats = NatsServer::start();
    let gw = Gateway::start_with(&nats.fleet_toml("fra1"), |_| {}).await;
    let kv = control(&nats).await;
    kv.put("tenants.garbage", "{not json".into()).await.expect("put");
    kv.put("tenants.greedy", r#"{"plugin_memory_mb": 4096}"#.into()).await.expect("put");
    kv.put("tenants.sneaky", r#"{"token": "let-me-in"}"#.into()).await.expect("put");
    kv.put("tenants.acme", r#"{"plugin_timeout_ms": 1}"#.into()).await.expect("put");
    kv.put("paused.nobody", r#"{"paused": true}"#.into()).await.expect("put");
    kv.put("tenants.fine", "{}".into()).await.expect("put");
    let rejected = eventually(WAIT, || async {
        let s = status(&gw).await;
        let r = s["fleet"]["rejected"].as_array()?.clone();
        (r.len() == 5).then_some(r)
    })
    .await;
    let reason =
        |key: &str| rejected.iter().find(|r| r["key"] == key).and_then(|r| r["reason"].as_str()).map(str::to_string).unwrap_or_default();
    assert!(reason("tenants.garbage").contains("not valid JSON"), "{rejected:?}");
    assert!(reason("tenants.greedy").contains("plugin_memory_mb"), "{rejected:?}");
    assert!(reason("tenants.sneaky").contains("token"), "{rejected:?}");
    assert!(reason("tenants.acme").contains("config file"), "{rejected:?}");
    assert!(reason("paused.nobody").contains("unknown tenant"), "{rejected:?}");
    let s = status(&gw).await;
    assert_eq!(s["tenants"], serde_json::json!(["acme", "fine", "globex"]), "only the good value applied");
    assert_eq!(ingest(&gw, "fine").await, StatusCode::ACCEPTED);
    assert_eq!(ingest(&gw, "garbage").await, StatusCode::NOT_FOUND);
    // A corrected value clears the entry.
    kv.put("tenants.garbage", "{}".into()).await.expect("put");
    eventually(WAIT, || async { (ingest(&gw, "garbage").await == StatusCode::ACCEPTED).then_some(()) }).await;
    assert!(!status(&gw).await["fleet"]["rejected"].as_array().expect("list").iter().any(|r| r["key"] == "tenants.garbage"));
    gw.stop().await;
}

#[tokio::test]
async fn a_pop_restarted_while_nats_is_down_serves_its_fleet_tenants_and_catches_up_on_reconnect() {
    let mut nats = NatsServer::start();
    let fleet = nats.fleet_toml("fra1");
    let gw = Gateway::start_with(&fleet, |_| {}).await;
    let kv = control(&nats).await;
    kv.put("tenants.initech", "{}".into()).await.expect("put");
    eventually(WAIT, || async { (ingest(&gw, "initech").await == StatusCode::ACCEPTED).then_some(()) }).await;
    let dir = gw.stop().await;
    // While the PoP is away the fleet changes; then NATS goes down too.
    kv.put("tenants.hooli", "{}".into()).await.expect("put");
    kv.delete("tenants.initech").await.expect("delete");
    nats.down();
    let gw = Gateway::start_in(dir, &fleet, |_| {}).await;
    assert_eq!(ingest(&gw, "initech").await, StatusCode::ACCEPTED, "served from the persisted fleet state");
    assert_eq!(ingest(&gw, "hooli").await, StatusCode::NOT_FOUND, "not learnt yet");
    assert_eq!(status(&gw).await["fleet"]["connected"], false);
    nats.up();
    eventually(WAIT, || async { (ingest(&gw, "hooli").await == StatusCode::ACCEPTED).then_some(()) }).await;
    eventually(WAIT, || async { (ingest(&gw, "initech").await == StatusCode::NOT_FOUND).then_some(()) }).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_tenant_removed_from_the_config_still_gets_its_acknowledged_triggers_forwarded_after_a_restart() {
    let gw = Gateway::start_with("", |_| {}).await;
    for _ in 0..2 {
        assert_eq!(ingest(&gw, "globex").await, StatusCode::ACCEPTED);
    }
    let dir = gw.stop().await;
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_in(dir, "", |c| {
        c.tenants.retain(|t| t.id != "globex");
        fast(c, &up);
    })
    .await;
    assert_eq!(ingest(&gw, "globex").await, StatusCode::NOT_FOUND, "no longer a tenant");
    up.wait_until(WAIT, |r| r.iter().filter(|r| r.header("weir-tenant") == "globex").count() == 2).await;
    gw.stop().await;
}
