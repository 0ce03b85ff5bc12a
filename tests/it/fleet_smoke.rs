//! The fleet's foundation: a gateway with `[fleet]` starts and serves
//! whether or not NATS is up, and the test nats-server speaks JetStream.

use std::time::Duration;

use http::StatusCode;

use crate::natsd::NatsServer;
use crate::support::Gateway;

#[tokio::test]
async fn a_fleet_gateway_is_ready_while_nats_is_down() {
    let mut nats = NatsServer::start();
    let fleet = nats.fleet_toml("fra1");
    nats.down();
    let gw = Gateway::start_with(&fleet, |_| {}).await;
    assert_eq!(gw.client.get(&gw.admin_url("/readyz"), None).await.status, StatusCode::OK);
    let r = gw.client.post(&gw.ingest_url("/ingest/acme/github"), &[], "{}").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    nats.up();
    let js = async_nats::jetstream::new(nats.client().await);
    let kv = js
        .create_key_value(async_nats::jetstream::kv::Config { bucket: "smoke".into(), ..Default::default() })
        .await
        .expect("JetStream KV on the test server");
    kv.put("k", "v".into()).await.expect("put");
    let got = tokio::time::timeout(Duration::from_secs(10), kv.get("k")).await.expect("kv get").expect("kv get");
    assert_eq!(got.as_deref(), Some(&b"v"[..]));
    gw.stop().await;
}
