//! The example NATS permissions (`examples/nats/weir-permissions.conf`),
//! verbatim, on a real nats-server: the admin creates the buckets and the
//! platform's stream; a Weir PoP with its restricted credentials writes its
//! heartbeat, answers a fleet replay, may publish a trigger (acknowledged)
//! and read the control bucket and the plugin store, and may NOT write
//! another PoP's heartbeat, the control bucket or the plugin store.

use std::time::Duration;

use async_nats::jetstream::{self, kv, object_store, stream};
use futures::StreamExt;
use serde_json::Value;

use crate::natsd::NatsServer;
use crate::support::{WeirProcess, config_toml, weir_bin};

const PERMISSIONS: &str = include_str!("../../examples/nats/weir-permissions.conf");
const WAIT: Duration = Duration::from_secs(60);

/// A client as `user`, whose server errors (permission violations) arrive on the receiver.
async fn connect_as(nats: &NatsServer, user: &str, password: &str) -> (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), password.into())
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(nats.url())
        .await
        .unwrap_or_else(|e| panic!("connect as {user}: {e}"));
    (client, rx)
}

fn js(client: &async_nats::Client) -> jetstream::Context {
    let mut js = jetstream::new(client.clone());
    // A denied publish is never answered: fail fast, then look at the server's error.
    js.set_timeout(Duration::from_secs(1));
    js
}

/// Waits for the server to report a permission violation on `subject`.
async fn violation(errors: &mut tokio::sync::mpsc::UnboundedReceiver<String>, subject: &str) {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = errors.recv().await {
            if e.contains("Permissions Violation") && e.contains(subject) {
                return;
            }
        }
    })
    .await;
    assert!(found.is_ok(), "no permission violation reported for {subject}");
}

/// The example hub config (which includes the permissions) is one nats-server accepts.
#[test]
fn the_example_hub_config_is_valid() {
    let conf = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/nats/nats-server.conf");
    let out = std::process::Command::new(crate::natsd::nats_server_bin()).args(["-t", "-c", conf]).output().expect("run nats-server -t");
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_with_the_example_permissions_does_its_job_and_nothing_more() {
    let nats = NatsServer::start_with_config(Some(PERMISSIONS));

    // The operator creates the buckets; the platform its stream.
    let (admin, _) = connect_as(&nats, "admin", "admin-secret-change-me").await;
    let admin_js = js(&admin);
    let heartbeats = admin_js
        .create_key_value(kv::Config {
            bucket: "weir_heartbeats".into(),
            history: 1,
            max_age: Duration::from_secs(60),
            ..Default::default()
        })
        .await
        .expect("admin creates the heartbeats bucket");
    let control = admin_js
        .create_key_value(kv::Config { bucket: "weir_control".into(), history: 16, ..Default::default() })
        .await
        .expect("admin creates the control bucket");
    control.put("tenants.initech", br#"{"plugin_timeout_ms":50}"#.as_slice().into()).await.expect("admin writes the control bucket");
    let plugins = admin_js
        .create_object_store(object_store::Config { bucket: "weir_plugins".into(), ..Default::default() })
        .await
        .expect("admin creates the plugin store");
    let component = vec![7u8; 300 * 1024];
    plugins.put("component-a", &mut component.as_slice()).await.expect("admin uploads a component");
    let (platform, _) = connect_as(&nats, "platform", "platform-secret-change-me").await;
    let platform_js = js(&platform);
    let triggers = platform_js
        .create_stream(stream::Config { name: "WEIR_TRIGGERS".into(), subjects: vec!["weir.triggers.>".into()], ..Default::default() })
        .await
        .expect("the platform creates its stream");

    // A Weir PoP with fra1's credentials: its heartbeat appears.
    let dir = tempfile::tempdir().expect("tempdir");
    let fleet = format!(
        "[fleet]\nnats_urls = [\"{}\"]\npop = \"fra1\"\nuser = \"fra1\"\npassword = \"fra1-secret-change-me\"\nheartbeat_interval_ms = 200\n",
        nats.url()
    );
    let file = dir.path().join("weir.toml");
    std::fs::write(&file, config_toml(&dir.path().join("data"), &fleet)).expect("config");
    let pop = WeirProcess::start(&file);
    let beat = tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(Some(v)) = heartbeats.get("fra1").await {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("fra1's heartbeat appears under its restricted credentials");
    assert_eq!(serde_json::from_slice::<Value>(&beat).expect("json")["pop"], "fra1");

    // The operator's CLI sees it (credentials from the environment), and fra1 answers a fleet replay.
    let cli = |args: &'static [&'static str]| {
        let url = nats.url();
        async move {
            let out = tokio::process::Command::new(weir_bin())
                .args(args)
                .args(["--nats", &url, "--json"])
                .env("WEIR_NATS_USER", "admin")
                .env("WEIR_NATS_PASSWORD", "admin-secret-change-me")
                .output()
                .await
                .expect("run weir");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            (out.status.code(), serde_json::from_str::<Value>(&text).unwrap_or_else(|_| panic!("JSON: {text}")))
        }
    };
    // The PoP watched the control bucket under its credentials: it serves the fleet's tenant.
    let (code, s) = tokio::time::timeout(WAIT, async {
        loop {
            let (code, s) = cli(&["fleet", "status"]).await;
            if s["pops"][0]["heartbeat"]["plugins"].get("initech").is_some() {
                return (code, s);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("fra1 serves the fleet tenant initech");
    assert_eq!(code, Some(0), "{s:#}");
    assert_eq!(s["pops"][0]["pop"], "fra1");
    let (code, r) = cli(&["replay", "--fleet", "--dry-run"]).await;
    assert_eq!(code, Some(0), "{r:#}");
    assert_eq!(r["pops"][0]["pop"], "fra1", "fra1 may answer the command it received");
    assert_eq!(r["pops"][0]["state"], "dry_run");

    // The same credentials, as the PoP holds them.
    let (fra1, mut errors) = connect_as(&nats, "fra1", "fra1-secret-change-me").await;
    let fra1_js = js(&fra1);
    // Publish a trigger and get its PubAck.
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", "acme:key-1");
    let ack = fra1_js
        .publish_with_headers("weir.triggers.acme.github", headers, "{}".into())
        .await
        .expect("publish")
        .await
        .expect("a PubAck for a trigger");
    assert_eq!((ack.stream.as_str(), ack.sequence, ack.duplicate), ("WEIR_TRIGGERS", 1, false));
    assert_eq!(triggers.get_raw_message(1).await.expect("the platform reads it").subject.as_str(), "weir.triggers.acme.github");
    // Read and watch the control bucket; fetch a component.
    let control_ro = fra1_js.get_key_value("weir_control").await.expect("open the control bucket");
    assert_eq!(control_ro.get("tenants.initech").await.expect("get").as_deref(), Some(&br#"{"plugin_timeout_ms":50}"#[..]));
    let mut watch = control_ro.watch_all_from_revision(1).await.expect("watch the control bucket");
    let first = tokio::time::timeout(WAIT, watch.next()).await.expect("a watched entry").expect("entry").expect("entry");
    assert_eq!(first.key, "tenants.initech");
    let store_ro = fra1_js.get_object_store("weir_plugins").await.expect("open the plugin store");
    let mut object = store_ro.get("component-a").await.expect("fetch a component");
    let mut fetched = Vec::new();
    tokio::io::AsyncReadExt::read_to_end(&mut object, &mut fetched).await.expect("read the component");
    assert_eq!(fetched, component);

    // Another PoP's heartbeat: refused by the server.
    let heartbeats_ro = fra1_js.get_key_value("weir_heartbeats").await.expect("open the heartbeats bucket");
    assert!(heartbeats_ro.put("ams1", "{}".into()).await.is_err(), "fra1 wrote ams1's heartbeat");
    violation(&mut errors, "$KV.weir_heartbeats.ams1").await;
    assert_eq!(heartbeats.get("ams1").await.expect("get"), None);
    // The control bucket: refused.
    assert!(control_ro.put("tenants.initech", "{}".into()).await.is_err(), "fra1 wrote the control bucket");
    violation(&mut errors, "$KV.weir_control.tenants.initech").await;
    assert_eq!(control.get("tenants.initech").await.expect("get").as_deref(), Some(&br#"{"plugin_timeout_ms":50}"#[..]));
    // The plugin store, and creating or deleting buckets: refused.
    assert!(store_ro.put("component-b", &mut [1u8, 2, 3].as_slice()).await.is_err(), "fra1 wrote the plugin store");
    violation(&mut errors, "$O.weir_plugins").await;
    assert!(fra1_js.delete_key_value("weir_control").await.is_err(), "fra1 deleted the control bucket");
    violation(&mut errors, "$JS.API.STREAM.DELETE.KV_weir_control").await;
    assert!(admin_js.get_key_value("weir_control").await.is_ok(), "the control bucket is still there");

    // The PoP itself is still writing its heartbeat.
    let before = heartbeats.entry("fra1").await.expect("entry").expect("fra1").revision;
    tokio::time::timeout(WAIT, async {
        while heartbeats.entry("fra1").await.ok().flatten().is_none_or(|e| e.revision == before) {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("fra1 keeps beating");
    drop(pop);
}
