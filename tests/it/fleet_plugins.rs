//! Plugins for the whole fleet: three real `weir` processes as three PoPs
//! and one real nats-server. One `weir plugin upload --fleet` activates on
//! every PoP (seen through each PoP's admin API and in the bodies they
//! forward), rollback likewise; a PoP restarted while NATS is down serves its
//! persisted fleet plugin and catches up when NATS returns; what fails to
//! compile never reaches NATS; corrupted objects and bad values are refused
//! by the PoPs, which keep their previous version and keep serving.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use http::StatusCode;
use weir_test_plugins as wasm;

use crate::natsd::NatsServer;
use crate::support::{Client, Mode, TOKEN, Upstream, WeirProcess, config_toml, eventually, weir_bin};

/// Generous: a debug build compiles plugins in a child on a shared machine.
const WAIT: Duration = Duration::from_secs(90);

/// One PoP: a `weir serve` process with its own store, in the fleet.
struct Pop {
    name: String,
    config: PathBuf,
    weir: Option<WeirProcess>,
    _dir: tempfile::TempDir,
}

impl Pop {
    fn start(nats: &NatsServer, name: &str, upstream: &Upstream, extra: &str) -> Pop {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("weir.toml");
        let head = format!("[forward]\nupstreams = [\"{}\"]\nbackoff_base_ms = 20\nbackoff_cap_ms = 200\n", upstream.url());
        let text = format!("{head}{}\n{}{extra}", config_toml(&dir.path().join("data"), ""), nats.fleet_toml(name));
        std::fs::write(&config, text).expect("write config");
        let weir = WeirProcess::start(&config);
        Pop { name: name.into(), config, weir: Some(weir), _dir: dir }
    }

    fn weir(&self) -> &WeirProcess {
        self.weir.as_ref().expect("running")
    }

    fn admin(&self, path: &str) -> String {
        format!("http://{}{path}", self.weir().admin)
    }

    fn restart(&mut self) {
        assert!(self.weir.is_none(), "stop it first");
        self.weir = Some(WeirProcess::start(&self.config));
    }

    fn kill(&mut self) {
        if let Some(w) = self.weir.take() {
            w.sigkill();
        }
    }

    async fn fleet_status(&self, c: &Client) -> serde_json::Value {
        let r = c.get(&self.admin("/v1/fleet/plugins"), Some(TOKEN)).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
        r.json()
    }

    /// The fleet plugin record of `tenant` on this PoP, once `pred` holds.
    async fn wait_for(&self, c: &Client, tenant: &str, what: &str, pred: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let s = self.fleet_status(c).await;
            if pred(&s["tenants"][tenant]) {
                return s["tenants"][tenant].clone();
            }
            assert!(
                Instant::now() < deadline,
                "{}: {what} not reached within {WAIT:?}; status {s}\nlog:\n{}",
                self.name,
                self.weir().log_text()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits until `sha` is the tenant's active fleet plugin here.
    async fn wait_active(&self, c: &Client, tenant: &str, sha: &str) {
        self.wait_for(c, tenant, &format!("{sha} active"), |t| t["state"] == "active" && t["active_sha256"] == sha).await;
    }

    /// The sha256 of the version the plugin host runs for `tenant` (its own admin API).
    async fn host_sha(&self, c: &Client, tenant: &str) -> Option<String> {
        let list = c.get(&self.admin(&format!("/v1/tenants/{tenant}/plugin")), Some(TOKEN)).await.json();
        let active = list["active"].as_u64()?;
        list["versions"].as_array()?.iter().find(|v| v["version"] == active).and_then(|v| v["sha256"].as_str().map(str::to_string))
    }

    async fn ingest(&self, c: &Client, body: &str) {
        let r = c
            .post(&format!("http://{}/ingest/acme/fleet", self.weir().ingest), &[("content-type", "application/json")], body.to_string())
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}: {:?}", self.name, r.body);
    }

    async fn rejected_metric(&self, c: &Client, reason: &str) -> f64 {
        let text = String::from_utf8(c.get(&self.admin("/metrics"), Some(TOKEN)).await.body.to_vec()).expect("utf8");
        let want = format!("weir_fleet_plugin_rejected_total{{tenant=\"acme\",reason=\"{reason}\"}} ");
        text.lines().find_map(|l| l.strip_prefix(&want)).map_or(0.0, |v| v.trim().parse().expect("number"))
    }
}

fn read(path: &str) -> Vec<u8> {
    std::fs::read(path).expect("component")
}

fn sha(bytes: &[u8]) -> String {
    weir::plugin::sha256_hex(bytes)
}

/// Runs the real CLI; (exit code, stdout, stderr).
async fn weir_cli(args: &[&str]) -> (i32, String, String) {
    let out = tokio::process::Command::new(weir_bin()).args(args).output().await.expect("run weir");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

async fn upload(nats: &NatsServer, tenant: &str, file: &str) -> (i32, String, String) {
    weir_cli(&["plugin", "upload", "--fleet", "--nats", &nats.url(), "--tenant", tenant, file, "--json"]).await
}

async fn control(nats: &NatsServer) -> jetstream::kv::Store {
    jetstream::new(nats.client().await).get_key_value("weir_control").await.expect("the control bucket exists")
}

/// Waits until the upstream has a body from every PoP tagged `step`, and
/// says whether each carries the json-transform marker `_weir`.
async fn forwarded(up: &Upstream, pops: &[&Pop], step: &str) -> Vec<bool> {
    let tag = |pop: &str| format!("\"pop\":\"{pop}\",\"step\":\"{step}\"");
    let tags: Vec<String> = pops.iter().map(|p| tag(&p.name)).collect();
    up.wait_until(WAIT, |rs| tags.iter().all(|t| rs.iter().any(|r| String::from_utf8_lossy(&r.body).contains(t.as_str())))).await;
    let received = up.received();
    tags.iter()
        .map(|t| {
            let body =
                received.iter().map(|r| String::from_utf8_lossy(&r.body).into_owned()).find(|b| b.contains(t.as_str())).unwrap_or_default();
            body.contains("\"_weir\"")
        })
        .collect()
}

async fn ingest_step(c: &Client, pops: &[&Pop], step: &str) {
    for p in pops {
        // json-transform sorts keys: "pop" before "step" either way.
        p.ingest(c, &format!("{{\"pop\":\"{}\",\"step\":\"{step}\"}}", p.name)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_fleet_upload_activates_on_every_pop_and_rollback_follows() {
    let nats = NatsServer::start();
    let up = Upstream::start(Mode::Ok).await;
    let pops: Vec<Pop> = ["p1", "p2", "p3"].iter().map(|n| Pop::start(&nats, n, &up, "")).collect();
    let all: Vec<&Pop> = pops.iter().collect();
    let c = Client::new();
    let (pass, transform) = (sha(&read(wasm::PASSTHROUGH)), sha(&read(wasm::JSON_TRANSFORM)));

    // Version 1 everywhere, from one command.
    let (code, out, err) = upload(&nats, "acme", wasm::PASSTHROUGH).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("JSON")["sha256"], pass.as_str());
    for p in &pops {
        p.wait_active(&c, "acme", &pass).await;
        assert_eq!(p.host_sha(&c, "acme").await.as_deref(), Some(pass.as_str()), "{}: the host runs it", p.name);
    }
    ingest_step(&c, &all, "v1").await;
    assert_eq!(forwarded(&up, &all, "v1").await, vec![false; 3], "passthrough leaves bodies alone");

    // Version 2 (transforming): timed from the command to active on all three.
    let started = Instant::now();
    let (code, _, err) = upload(&nats, "acme", wasm::JSON_TRANSFORM).await;
    assert_eq!(code, 0, "{err}");
    let cli_done = started.elapsed();
    for p in &pops {
        p.wait_active(&c, "acme", &transform).await;
    }
    println!(
        "fleet upload: CLI (check + compile + publish) {cli_done:?}, active on all 3 PoPs {:?} after the command started",
        started.elapsed()
    );
    ingest_step(&c, &all, "v2").await;
    assert_eq!(forwarded(&up, &all, "v2").await, vec![true; 3], "every PoP forwards the transformed body");

    // Rollback: a KV update, followed by every PoP.
    let started = Instant::now();
    let (code, out, err) = weir_cli(&["plugin", "rollback", "--fleet", "--nats", &nats.url(), "--tenant", "acme", "--json"]).await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("JSON")["sha256"], pass.as_str());
    for p in &pops {
        p.wait_active(&c, "acme", &pass).await;
        assert_eq!(p.host_sha(&c, "acme").await.as_deref(), Some(pass.as_str()), "{}", p.name);
    }
    println!("fleet rollback: active on all 3 PoPs {:?} after the command started", started.elapsed());
    ingest_step(&c, &all, "rolled-back").await;
    assert_eq!(forwarded(&up, &all, "rolled-back").await, vec![false; 3]);

    // A rollback to a named component, and nothing to roll back for an unknown key.
    let (code, _, err) = weir_cli(&["plugin", "rollback", "--fleet", "--nats", &nats.url(), "--tenant", "acme", "--to", &transform]).await;
    assert_eq!(code, 0, "{err}");
    for p in &pops {
        p.wait_active(&c, "acme", &transform).await;
    }
    let (code, _, err) = weir_cli(&["plugin", "rollback", "--fleet", "--nats", &nats.url(), "--tenant", "globex"]).await;
    assert_eq!(code, 3, "no fleet plugin for globex: {err}");

    // The key's deletion takes the fleet plugin away: acme had no local one.
    control(&nats).await.delete("plugins.acme").await.expect("delete");
    for p in &pops {
        eventually(WAIT, || async { p.fleet_status(&c).await["tenants"]["acme"].is_null().then_some(()) }).await;
        assert_eq!(p.host_sha(&c, "acme").await, None, "{}: no plugin any more", p.name);
    }
    ingest_step(&c, &all, "deleted").await;
    assert_eq!(forwarded(&up, &all, "deleted").await, vec![false; 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_restarted_while_nats_is_down_keeps_its_fleet_plugin_and_catches_up() {
    let mut nats = NatsServer::start();
    let up = Upstream::start(Mode::Ok).await;
    // newco is not a tenant of the PoP yet: its fleet plugin is kept for it.
    let mut pop = Pop::start(&nats, "p1", &up, "");
    let c = Client::new();
    let (pass, transform) = (sha(&read(wasm::PASSTHROUGH)), sha(&read(wasm::JSON_TRANSFORM)));
    let (code, _, err) = upload(&nats, "acme", wasm::JSON_TRANSFORM).await;
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = upload(&nats, "newco", wasm::JSON_TRANSFORM).await;
    assert_eq!(code, 0, "{err}");
    pop.wait_active(&c, "acme", &transform).await;
    pop.wait_for(&c, "newco", "kept for an unknown tenant", |t| t["state"] == "unknown_tenant" && t["wanted_sha256"] == transform.as_str())
        .await;

    // While the PoP is down the fleet moves on; then NATS goes down too.
    pop.kill();
    let (code, _, err) = upload(&nats, "acme", wasm::PASSTHROUGH).await;
    assert_eq!(code, 0, "{err}");
    nats.down();

    // Restarted without NATS (and with newco added): what it had, from its own disk.
    let text = std::fs::read_to_string(&pop.config).expect("config");
    std::fs::write(&pop.config, format!("{text}\n[[tenants]]\nid = \"newco\"\n")).expect("config");
    pop.restart();
    assert_eq!(c.get(&pop.admin("/readyz"), None).await.status, StatusCode::OK);
    let s = pop.fleet_status(&c).await;
    assert_eq!(s["tenants"]["acme"]["active_sha256"], transform.as_str(), "{s}");
    assert_eq!(pop.host_sha(&c, "acme").await.as_deref(), Some(transform.as_str()));
    pop.wait_active(&c, "newco", &transform).await;
    assert_eq!(pop.host_sha(&c, "newco").await.as_deref(), Some(transform.as_str()), "applied from the kept copy, without NATS");
    ingest_step(&c, &[&pop], "offline").await;
    assert_eq!(forwarded(&up, &[&pop], "offline").await, vec![true], "serving the persisted fleet plugin");

    // NATS returns: the missed revision is caught up.
    nats.up();
    pop.wait_active(&c, "acme", &pass).await;
    assert_eq!(pop.host_sha(&c, "acme").await.as_deref(), Some(pass.as_str()));
    let s = pop.fleet_status(&c).await;
    assert_eq!(s["following"], true, "{s}");
    ingest_step(&c, &[&pop], "caught-up").await;
    assert_eq!(forwarded(&up, &[&pop], "caught-up").await, vec![false]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_that_fails_to_compile_never_reaches_nats() {
    let nats = NatsServer::start();
    let up = Upstream::start(Mode::Ok).await;
    let pop = Pop::start(&nats, "p1", &up, "");
    let c = Client::new();
    // The PoP created both buckets, the control one with history to roll back to.
    let js = jetstream::new(nats.client().await);
    let kv = eventually(WAIT, || async { js.get_key_value("weir_control").await.ok() }).await;
    assert_eq!(kv.status().await.expect("status").history(), 16);
    let objects = eventually(WAIT, || async { js.get_object_store("weir_plugins").await.ok() }).await;

    let dir = tempfile::tempdir().expect("tempdir");
    let mut truncated = read(wasm::PASSTHROUGH);
    truncated.truncate(truncated.len() / 2);
    let truncated_file = dir.path().join("truncated.wasm");
    std::fs::write(&truncated_file, &truncated).expect("write");
    for (what, file) in [("truncated", truncated_file.to_str().expect("path")), ("other world", wasm::WRONG_WORLD)] {
        let (code, _, err) = upload(&nats, "acme", file).await;
        assert_eq!(code, 5, "{what}: refused: {err}");
        assert!(err.contains("nothing was sent to the fleet"), "{what}: {err}");
    }
    // The admin API's fleet route checks on the PoP first too.
    let r = c.put(&pop.admin("/v1/fleet/plugins/acme"), TOKEN, truncated.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    assert_eq!(r.json()["error"], "compile_failed");
    let r = c.put(&pop.admin("/v1/fleet/plugins/bad%2Fid"), TOKEN, read(wasm::PASSTHROUGH)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    assert_eq!(kv.entry("plugins.acme").await.expect("read"), None, "no key was set");
    let mut listed = objects.list().await.expect("list");
    use futures_util::StreamExt;
    assert!(listed.next().await.is_none(), "no object was put");

    // A good one through the admin API reaches the fleet, audited.
    let r = c.put(&pop.admin("/v1/fleet/plugins/acme"), TOKEN, read(wasm::PASSTHROUGH)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let pass = sha(&read(wasm::PASSTHROUGH));
    assert_eq!(r.json()["sha256"], pass.as_str());
    pop.wait_active(&c, "acme", &pass).await;
    let audit = c.get(&pop.admin("/v1/audit?tenant=acme"), Some(TOKEN)).await.json();
    assert_eq!(audit["items"][0]["action"], "fleet.plugin.upload", "{audit}");
    let r = c
        .send(http::Method::POST, &pop.admin("/v1/fleet/plugins/acme/rollback"), &[("authorization", &format!("Bearer {TOKEN}"))], "")
        .await
        .expect("rollback");
    assert_eq!(r.status, StatusCode::CONFLICT, "nothing earlier to go back to: {:?}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupted_objects_and_bad_values_are_refused_and_the_pops_keep_serving() {
    let nats = NatsServer::start();
    let up = Upstream::start(Mode::Ok).await;
    let pops: Vec<Pop> = ["p1", "p2"].iter().map(|n| Pop::start(&nats, n, &up, "")).collect();
    let all: Vec<&Pop> = pops.iter().collect();
    let c = Client::new();
    let pass = sha(&read(wasm::PASSTHROUGH));
    let (code, _, err) = upload(&nats, "acme", wasm::PASSTHROUGH).await;
    assert_eq!(code, 0, "{err}");
    for p in &pops {
        p.wait_active(&c, "acme", &pass).await;
    }
    let js = jetstream::new(nats.client().await);
    let kv = control(&nats).await;
    let objects = js.get_object_store("weir_plugins").await.expect("plugins bucket");

    // The test's own client puts what no Weir would: a component under another's sha256,
    // a component that does not compile (under its true sha256), values that are not pointers.
    let transform = read(wasm::JSON_TRANSFORM);
    let mut corrupted = transform.clone();
    let middle = corrupted.len() / 2;
    corrupted[middle] ^= 0xff;
    objects.put(sha(&transform).as_str(), &mut &corrupted[..]).await.expect("put");
    let mut truncated = read(wasm::PASSTHROUGH);
    truncated.truncate(truncated.len() / 2);
    objects.put(sha(&truncated).as_str(), &mut &truncated[..]).await.expect("put");
    let pointer = |sha: &str, size: usize| format!(r#"{{"sha256":"{sha}","size":{size},"uploaded_at_ms":1,"by":"test"}}"#);
    let cases: Vec<(String, &str)> = vec![
        (pointer(&sha(&transform), transform.len()), "sha256_mismatch"),
        (pointer(&sha(&truncated), truncated.len()), "compile_failed"),
        ("garbage".into(), "invalid_value"),
        (pointer("not-a-sha", 10), "invalid_value"),
        (pointer(&"0".repeat(64), 10), "object_missing"),
    ];
    let mut counted: std::collections::BTreeMap<&str, f64> = Default::default();
    for (value, reason) in cases {
        *counted.entry(reason).or_default() += 1.0;
        let revision = kv.put("plugins.acme", value.clone().into()).await.expect("put");
        for p in &pops {
            let t = p
                .wait_for(&c, "acme", reason, |t| t["last_rejected"]["revision"] == revision && t["last_rejected"]["reason"] == reason)
                .await;
            assert_eq!(t["state"], "rejected", "{}: {value}: {t}", p.name);
            assert_eq!(t["active_sha256"], pass.as_str(), "{}: keeps its previous version", p.name);
            assert_eq!(p.host_sha(&c, "acme").await.as_deref(), Some(pass.as_str()), "{}: {value}", p.name);
            assert_eq!(p.rejected_metric(&c, reason).await, counted[reason], "{}: counted once each: {reason}", p.name);
            assert_eq!(c.get(&p.admin("/readyz"), None).await.status, StatusCode::OK);
        }
    }
    // A key that names no tenant is reported, and nothing else changes.
    let revision = kv.put("plugins.a=b", pointer(&pass, 10).into()).await.expect("put");
    for p in &pops {
        eventually(WAIT, || async { (p.fleet_status(&c).await["invalid_keys"]["plugins.a=b"]["revision"] == revision).then_some(()) })
            .await;
    }
    ingest_step(&c, &all, "after-garbage").await;
    assert_eq!(forwarded(&up, &all, "after-garbage").await, vec![false; 2], "still serving, on the previous version");

    // A real upload still goes through (the bucket's bad copy is replaced).
    let (code, _, err) = upload(&nats, "acme", wasm::JSON_TRANSFORM).await;
    assert_eq!(code, 0, "{err}");
    for p in &pops {
        p.wait_active(&c, "acme", &sha(&transform)).await;
        assert!(p.fleet_status(&c).await["tenants"]["acme"]["last_rejected"].is_null());
    }
    ingest_step(&c, &all, "repaired").await;
    assert_eq!(forwarded(&up, &all, "repaired").await, vec![true; 2]);
}

/// A PoP whose credentials may not create the buckets (nor write the control
/// bucket) says so and keeps trying; once an operator's upload has created
/// them, it follows what exists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pop_that_may_not_create_the_buckets_reports_it_and_uses_them_once_they_exist() {
    let nats = NatsServer::start_with_config(Some(
        r#"
accounts {
  weir: {
    jetstream: enabled
    users: [
      { user: operator, password: operator }
      { user: pop, password: pop, permissions: { publish: { deny: ["$JS.API.STREAM.CREATE.>", "$KV.weir_control.>", "$O.weir_plugins.>"] } } }
    ]
  }
}
no_auth_user: operator
"#,
    ));
    let up = Upstream::start(Mode::Ok).await;
    let pop = Pop::start(&nats, "p1", &up, "user = \"pop\"\npassword = \"pop\"\n");
    let c = Client::new();
    let s = eventually(WAIT, || async {
        let s = pop.fleet_status(&c).await;
        s["last_error"].as_str().is_some_and(|e| e.contains("could not be opened") && e.contains("nor created")).then_some(s)
    })
    .await;
    assert_eq!(s["following"], false, "{s}");
    assert_eq!(c.get(&pop.admin("/readyz"), None).await.status, StatusCode::OK);

    let (code, _, err) = upload(&nats, "acme", wasm::PASSTHROUGH).await;
    assert_eq!(code, 0, "the operator's credentials create the buckets: {err}");
    pop.wait_active(&c, "acme", &sha(&read(wasm::PASSTHROUGH))).await;
    // The watcher marks itself following after it has applied the batch
    // that activated the plugin: wait for that event, not the next read.
    eventually(WAIT, || async { (pop.fleet_status(&c).await["following"] == true).then_some(()) }).await;
    assert!(pop.fleet_status(&c).await["last_error"].is_null(), "following, so no error is shown");
}

/// A control bucket deleted and created again numbers its revisions from 1:
/// resuming after the PoP's last revision would see nothing, so the PoP
/// reads every key's current value, and what no key names any more is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_control_bucket_is_read_again_from_scratch() {
    let nats = NatsServer::start();
    let up = Upstream::start(Mode::Ok).await;
    let mut pop = Pop::start(&nats, "p1", &up, "");
    let c = Client::new();
    let (pass, transform) = (sha(&read(wasm::PASSTHROUGH)), sha(&read(wasm::JSON_TRANSFORM)));
    for (tenant, file) in [("acme", wasm::PASSTHROUGH), ("globex", wasm::PASSTHROUGH), ("acme", wasm::JSON_TRANSFORM)] {
        let (code, _, err) = upload(&nats, tenant, file).await;
        assert_eq!(code, 0, "{err}");
    }
    pop.wait_active(&c, "acme", &transform).await;
    pop.wait_active(&c, "globex", &pass).await;
    let before = pop.fleet_status(&c).await["revision"].as_u64().expect("revision");
    assert!(before >= 3, "{before}");

    pop.kill();
    jetstream::new(nats.client().await).delete_key_value("weir_control").await.expect("delete the bucket");
    let (code, _, err) = upload(&nats, "acme", wasm::PASSTHROUGH).await;
    assert_eq!(code, 0, "{err}");
    assert!(control(&nats).await.entry("plugins.acme").await.expect("read").expect("set").revision < before);

    pop.restart();
    pop.wait_active(&c, "acme", &pass).await;
    eventually(WAIT, || async { pop.fleet_status(&c).await["tenants"]["globex"].is_null().then_some(()) }).await;
    assert_eq!(pop.host_sha(&c, "globex").await, None, "globex's fleet plugin went with its key");
    assert_eq!(pop.host_sha(&c, "acme").await.as_deref(), Some(pass.as_str()));
}
