//! The operator surface: the authorisation matrix (generated from the route
//! table), listing, replay, purge, audit, backup and restore, and the CLI.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use http::{Method, StatusCode};
use weir::admin::routes::{Access, ROUTES};
use weir::config::TenantConfig;
use weir_test_plugins as wasm;

use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, eventually, weir_bin};

const ACME_TOKEN: &str = "acme-tenant-token";
const GLOBEX_TOKEN: &str = "globex-tenant-token";

fn with_tenant_tokens(c: &mut weir::Config) {
    for t in &mut c.tenants {
        match t.id.as_str() {
            "acme" => t.token = Some(ACME_TOKEN.into()),
            "globex" => t.token = Some(GLOBEX_TOKEN.into()),
            _ => {}
        }
    }
}

async fn call(c: &Client, gw: &Gateway, method: &str, path: &str, token: Option<&str>, body: &'static [u8]) -> StatusCode {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let method = Method::from_bytes(method.as_bytes()).expect("method");
    c.send(method, &gw.admin_url(path), &headers, body).await.expect("request").status
}

/// Every route × {no token, wrong token, operator, own tenant, other tenant}.
/// The rows come from `ROUTES`, so a new route gets checked without edits here;
/// the expected status of each cell follows from the route's access rule.
#[tokio::test]
async fn authorisation_matrix_covers_every_route() {
    let gw = Gateway::start_with("", with_tenant_tokens).await;
    let c = Client::new();
    let mut checked = 0;
    for route in ROUTES {
        // Point every route at acme's data (a fresh trigger: DELETE consumes one).
        let r = c.post(&gw.ingest_url("/ingest/acme/matrix"), &[], "{}").await;
        let acme_trigger = r.json()["id"].as_str().expect("id").to_string();
        let path =
            route.pattern.replace("{tenant}", "acme").replace("{id}", &acme_trigger).replace("{job}", "1").replace("{asset}", "app.js");
        if route.access == Access::Public {
            // The console's files hold no data: every caller, even without a token, gets them.
            for token in [None, Some("wrong-token"), Some(GLOBEX_TOKEN), Some(ACME_TOKEN), Some(TOKEN)] {
                assert_eq!(call(&c, &gw, route.method, &path, token, b"").await, StatusCode::OK, "{path} as {token:?}");
            }
            checked += 1;
            continue;
        }
        // Who a token is: every valid token may ask about itself.
        let whoami = route.name == weir::admin::routes::Name::WhoAmI;
        let path = if route.pattern == "/v1/triggers" || route.pattern == "/v1/audit" { format!("{path}?tenant=acme") } else { path };
        // Bodies that are valid for the route (a filter naming acme where one is taken).
        let body: &'static [u8] = match route.pattern {
            "/v1/replay" | "/v1/purge" => br#"{"tenant":"acme","dry_run":true}"#,
            "/v1/tenants/{tenant}/plugin" if route.method == "PUT" => b"not wasm",
            _ => b"",
        };
        let cells = [
            (None, "no token", StatusCode::UNAUTHORIZED),
            (Some("wrong-token"), "wrong token", StatusCode::UNAUTHORIZED),
            (
                Some(GLOBEX_TOKEN),
                "other tenant",
                if route.access == Access::Operator {
                    StatusCode::FORBIDDEN
                } else if whoami {
                    StatusCode::OK
                } else {
                    StatusCode::NOT_FOUND
                },
            ),
        ];
        for (token, who, want) in cells {
            let got = call(&c, &gw, route.method, &path, token, body).await;
            assert_eq!(got, want, "{} {} as {who}", route.method, route.pattern);
        }
        // Allowed callers get past authorisation (any status but 401/403/404-for-scope).
        for (token, who) in [(Some(ACME_TOKEN), "own tenant"), (Some(TOKEN), "operator")] {
            let path = if route.name == weir::admin::routes::Name::DeleteTrigger {
                let r = c.post(&gw.ingest_url("/ingest/acme/matrix"), &[], "{}").await;
                route.pattern.replace("{id}", r.json()["id"].as_str().expect("id"))
            } else {
                path.clone()
            };
            let got = call(&c, &gw, route.method, &path, token, body).await;
            if route.access == Access::Operator && who == "own tenant" {
                assert_eq!(got, StatusCode::FORBIDDEN, "{} {} as {who}", route.method, route.pattern);
                continue;
            }
            assert!(got != StatusCode::UNAUTHORIZED && got != StatusCode::FORBIDDEN, "{} {} as {who}: {got}", route.method, route.pattern);
            // The replay job 1 does not exist, and acme has no plugin to roll back.
            let benign_404 = route.pattern.contains("{job}");
            assert!(got != StatusCode::NOT_FOUND || benign_404, "{} {} as {who}: 404", route.method, route.pattern);
        }
        checked += 1;
    }
    assert_eq!(checked, ROUTES.len());
    // Fleet routes on a gateway without [fleet]: the operator gets past authorisation to a 409.
    let r = c.get(&gw.admin_url("/v1/fleet/pops"), Some(TOKEN)).await;
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(r.json()["error"], "no_fleet", "{:?}", r.body);
    gw.stop().await;
}

async fn ingest(c: &Client, gw: &Gateway, tenant: &str, source: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = c.post(&gw.ingest_url(&format!("/ingest/{tenant}/{source}")), &[], format!("{{\"n\":{i}}}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    ids
}

#[tokio::test]
async fn list_filters_and_pages_stably_while_triggers_arrive() {
    let gw = Gateway::start_with("", with_tenant_tokens).await;
    let c = Client::new();
    let a = ingest(&c, &gw, "acme", "github", 7).await;
    let _g = ingest(&c, &gw, "globex", "stripe", 3).await;
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let url = gw.admin_url(&format!("/v1/triggers?tenant=acme&limit=3&order=asc{cursor}"));
        let page = c.get(&url, Some(TOKEN)).await.json();
        seen.extend(page["items"].as_array().expect("items").iter().map(|t| t["id"].as_str().expect("id").to_string()));
        // New arrivals during paging land after the cursor, never between pages.
        ingest(&c, &gw, "globex", "stripe", 1).await;
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen, a);
    let newest = c.get(&gw.admin_url("/v1/triggers?tenant=acme&order=desc&limit=1"), Some(TOKEN)).await.json();
    assert_eq!(newest["items"][0]["id"], a.last().map(String::as_str).unwrap_or_default());
    let by_source = c.get(&gw.admin_url("/v1/triggers?source=stripe&limit=100"), Some(TOKEN)).await.json();
    assert!(by_source["items"].as_array().expect("items").iter().all(|t| t["tenant"] == "globex"));
    // A tenant token lists only its own tenant, with or without asking.
    let own = c.get(&gw.admin_url("/v1/triggers?limit=100"), Some(ACME_TOKEN)).await.json();
    assert_eq!(own["items"].as_array().expect("items").len(), 7);
    assert_eq!(c.get(&gw.admin_url("/v1/triggers?tenant=globex"), Some(ACME_TOKEN)).await.status, StatusCode::NOT_FOUND);
    let bad = c.get(&gw.admin_url("/v1/triggers?state=lost"), Some(TOKEN)).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let since = c.get(&gw.admin_url("/v1/triggers?since=2999-01-01T00:00:00Z"), Some(TOKEN)).await.json();
    assert!(since["items"].as_array().expect("items").is_empty());
    gw.stop().await;
}

fn tenant_with_plugin(id: &str, plugin: &str) -> TenantConfig {
    TenantConfig { id: id.into(), plugin: Some(PathBuf::from(plugin)), ..TenantConfig::default() }
}

async fn post_json(c: &Client, gw: &Gateway, path: &str, body: serde_json::Value) -> crate::support::Reply {
    let auth = format!("Bearer {TOKEN}");
    c.send(Method::POST, &gw.admin_url(path), &[("authorization", auth.as_str()), ("content-type", "application/json")], body.to_string())
        .await
        .expect("request")
}

async fn state_of(c: &Client, gw: &Gateway, id: &str) -> String {
    c.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await.json()["state"].as_str().unwrap_or("gone").to_string()
}

/// A gateway keeps its own history from startup: a fresh console tab has points to chart at once.
#[tokio::test]
async fn history_has_a_point_from_startup_with_the_status_totals() {
    let gw = Gateway::start().await;
    let c = Client::new();
    // The sampler reads the store once right after startup (the next sample is 10 s later).
    let h = eventually(Duration::from_secs(30), || async {
        let r = c.get(&gw.admin_url("/v1/history"), Some(TOKEN)).await;
        assert_eq!(r.status, StatusCode::OK);
        let h = r.json();
        (h["points"].as_array().map_or(0, Vec::len) > 0).then_some(h)
    })
    .await;
    assert_eq!(h["interval_ms"], 10_000);
    assert_eq!(h["capacity"], 360);
    let points = h["points"].as_array().expect("points");
    for key in ["at_ms", "stored", "delivered", "dead", "pending"] {
        assert!(points[0][key].is_u64(), "{key} in {h}");
    }
    assert!(points[0]["stored_per_sec"].is_null(), "no rate without a sample before: {h}");
    gw.stop().await;
}

#[tokio::test]
async fn replay_after_fixing_a_plugin_delivers_quarantined_triggers() {
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| {
        c.forward.upstreams = vec![up.url()];
        c.tenants.push(tenant_with_plugin("fragile", wasm::TRAP));
    })
    .await;
    let c = Client::new();
    let ids = ingest(&c, &gw, "fragile", "x", 4).await;
    for id in &ids {
        assert_eq!(state_of(&c, &gw, id).await, "quarantined");
    }
    // The plugin failures are in /v1/status per tenant, by kind (the console's failure-rate column).
    let status = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    let fragile = &status["plugins_by_tenant"]["fragile"];
    assert_eq!(fragile["calls"], 4, "{status:#}");
    assert_eq!(fragile["failures"], serde_json::json!({"trap": 4}), "{status:#}");
    assert!(status["plugins_by_tenant"].get("acme").is_none(), "acme has no plugin: no calls counted");
    // Dry run counts, changes nothing.
    let dry = post_json(&c, &gw, "/v1/replay", serde_json::json!({"tenant": "fragile", "state": "quarantined", "dry_run": true})).await;
    assert_eq!(dry.json()["matched"], 4);
    assert_eq!(state_of(&c, &gw, &ids[0]).await, "quarantined");
    // Replaying with the broken plugin leaves them quarantined.
    let again = post_json(&c, &gw, "/v1/replay", serde_json::json!({"tenant": "fragile", "ids": [ids[0]]})).await;
    assert_eq!(again.json()["replayed"], 0);
    assert_eq!(state_of(&c, &gw, &ids[0]).await, "quarantined");
    // Fix the plugin, replay: the current plugin runs on the raw body, then delivery.
    let auth = format!("Bearer {TOKEN}");
    let fix = c
        .send(
            Method::PUT,
            &gw.admin_url("/v1/tenants/fragile/plugin"),
            &[("authorization", auth.as_str())],
            std::fs::read(wasm::PASSTHROUGH).expect("wasm"),
        )
        .await
        .expect("upload");
    assert_eq!(fix.status, StatusCode::CREATED);
    let r = post_json(&c, &gw, "/v1/replay", serde_json::json!({"tenant": "fragile", "state": "quarantined"})).await;
    assert_eq!(r.status, StatusCode::OK, "{:?}", r.body);
    assert_eq!(r.json()["matched"], 4);
    assert_eq!(r.json()["replayed"], 4);
    for id in &ids {
        eventually(Duration::from_secs(20), || async { (state_of(&c, &gw, id).await == "delivered").then_some(()) }).await;
    }
    // Replaying delivered triggers sends them again with the same idempotency key.
    let r = post_json(&c, &gw, "/v1/replay", serde_json::json!({"ids": [ids[1]], "state": "delivered"})).await;
    assert_eq!(r.json()["replayed"], 1);
    up.wait_until(Duration::from_secs(20), |got| got.iter().filter(|g| g.header("weir-trigger-id") == ids[1]).count() == 2).await;
    let keys: Vec<String> =
        up.received().iter().filter(|g| g.header("weir-trigger-id") == ids[1]).map(|g| g.header("idempotency-key").to_string()).collect();
    assert_eq!(keys[0], keys[1]);
    // Every replay is in the audit log.
    let audit = c.get(&gw.admin_url("/v1/audit?limit=50"), Some(TOKEN)).await.json();
    let actions: Vec<&str> = audit["items"].as_array().expect("items").iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(actions.contains(&"trigger.replay") && actions.contains(&"plugin.upload"), "{actions:?}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_by_source_and_time_during_ingest() {
    let gw = Gateway::start_with("", |_| {}).await;
    let c = Client::new();
    let early = ingest(&c, &gw, "acme", "early", 5).await;
    let cut = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as u64 + 2;
    eventually(Duration::from_secs(5), || async {
        (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).ok()?.as_millis() as u64 > cut).then_some(())
    })
    .await;
    let late = ingest(&c, &gw, "acme", "late", 5).await;
    let none = post_json(&c, &gw, "/v1/replay", serde_json::json!({"tenant": "acme"})).await;
    assert_eq!(none.json()["matched"], 0, "pending triggers are not replayed unless asked by state");
    // Ingest keeps going while replays run.
    let bg = {
        let (c, url) = (c.clone(), gw.ingest_url("/ingest/acme/during"));
        tokio::spawn(async move {
            for i in 0..50 {
                assert_eq!(c.post(&url, &[], format!("{i}")).await.status, StatusCode::ACCEPTED);
            }
        })
    };
    let by_source = post_json(&c, &gw, "/v1/replay", serde_json::json!({"source": "early", "state": "pending", "dry_run": true})).await;
    assert_eq!(by_source.json()["matched"], early.len());
    let by_time =
        post_json(&c, &gw, "/v1/replay", serde_json::json!({"tenant": "acme", "state": "pending", "until": cut, "dry_run": true})).await;
    assert_eq!(by_time.json()["matched"], early.len());
    let since = post_json(&c, &gw, "/v1/replay", serde_json::json!({"source": "late", "state": "pending", "since": cut})).await;
    assert_eq!(since.json()["matched"], late.len());
    assert_eq!(since.json()["replayed"], late.len());
    bg.await.expect("ingest during replay");
    gw.stop().await;
}

#[tokio::test]
async fn delete_and_purge_are_audited_and_refuse_an_empty_filter() {
    let gw = Gateway::start_with("", with_tenant_tokens).await;
    let c = Client::new();
    let a = ingest(&c, &gw, "acme", "s", 3).await;
    ingest(&c, &gw, "globex", "s", 2).await;
    let auth = format!("Bearer {ACME_TOKEN}");
    let del = c
        .send(Method::DELETE, &gw.admin_url(&format!("/v1/triggers/{}", a[0])), &[("authorization", auth.as_str())], "")
        .await
        .expect("delete");
    assert_eq!(del.status, StatusCode::OK);
    assert_eq!(state_of(&c, &gw, &a[0]).await, "gone");
    let everything = post_json(&c, &gw, "/v1/purge", serde_json::json!({})).await;
    assert_eq!(everything.status, StatusCode::BAD_REQUEST);
    let dry = post_json(&c, &gw, "/v1/purge", serde_json::json!({"tenant": "acme", "dry_run": true})).await;
    assert_eq!(dry.json()["matched"], 2);
    let purge = post_json(&c, &gw, "/v1/purge", serde_json::json!({"tenant": "acme"})).await;
    assert_eq!(purge.json()["purged"], 2);
    let s = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(s["pending"], 2, "globex untouched");
    let audit = c.get(&gw.admin_url("/v1/audit"), Some(ACME_TOKEN)).await.json();
    let entries = audit["items"].as_array().expect("items");
    assert!(entries.iter().any(|e| e["action"] == "trigger.delete" && e["actor"] == "tenant:acme"));
    assert!(entries.iter().any(|e| e["action"] == "trigger.purge" && e["count"] == 2 && e["actor"] == "operator"));
    assert!(entries.iter().all(|e| e["tenant"] == "acme"), "a tenant sees only its own audit entries");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_under_ingest_then_restore_round_trips() {
    let gw = Gateway::start_with("", |c| c.tenants.push(tenant_with_plugin("plug", wasm::PASSTHROUGH))).await;
    let c = Client::new();
    let mut before = ingest(&c, &gw, "acme", "s", 200).await;
    before.extend(ingest(&c, &gw, "plug", "s", 5).await);
    let pause = post_json(&c, &gw, "/v1/tenants/globex/pause", serde_json::json!({})).await;
    assert_eq!(pause.status, StatusCode::OK);
    // Ingest goes on during the backup; measure its latency meanwhile.
    let load = {
        let (c, url) = (c.clone(), gw.ingest_url("/ingest/acme/during"));
        tokio::spawn(async move {
            let mut lat = Vec::new();
            for i in 0..100 {
                let t = std::time::Instant::now();
                assert_eq!(c.post(&url, &[], format!("{i}")).await.status, StatusCode::ACCEPTED);
                lat.push(t.elapsed());
            }
            lat
        })
    };
    let backup = c.get(&gw.admin_url("/v1/backup"), Some(TOKEN)).await;
    assert_eq!(backup.status, StatusCode::OK);
    let mut lat = load.await.expect("load");
    lat.sort();
    println!("ingest p99 during backup: {:?} ({} bytes of backup)", lat[lat.len() * 99 / 100], backup.body.len());
    assert!(backup.body.starts_with(b"WEIRBAK2"));
    let dir = gw.stop().await;

    let file = dir.path().join("snapshot.weirbak");
    std::fs::write(&file, &backup.body).expect("write");
    let restored = tempfile::tempdir().expect("tempdir");
    let target = restored.path().join("data");
    let out = Command::new(weir_bin()).args(["restore", "--from"]).arg(&file).arg("--data-dir").arg(&target).output().expect("restore");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Restoring twice into the same place is refused (exit 2), nothing overwritten.
    let again = Command::new(weir_bin()).args(["restore", "--from"]).arg(&file).arg("--data-dir").arg(&target).output().expect("restore");
    assert_eq!(again.status.code(), Some(2));
    // A truncated backup is refused with a clear message.
    let cut = dir.path().join("cut.weirbak");
    std::fs::write(&cut, &backup.body[..backup.body.len() / 2]).expect("write");
    let bad = Command::new(weir_bin())
        .args(["restore", "--from"])
        .arg(&cut)
        .arg("--data-dir")
        .arg(restored.path().join("other"))
        .output()
        .expect("restore");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("truncated"), "{}", String::from_utf8_lossy(&bad.stderr));

    // Start weir on the restored data: every trigger of the snapshot is there.
    let gw2 = Gateway::start_in(restored, "", |c| {
        c.store.path = target.clone();
        c.tenants.push(TenantConfig { id: "plug".into(), ..TenantConfig::default() });
    })
    .await;
    for id in &before {
        let t = c.get(&gw2.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await;
        assert_eq!(t.status, StatusCode::OK, "{id} missing after restore");
    }
    let plugins = c.get(&gw2.admin_url("/v1/tenants/plug/plugin"), Some(TOKEN)).await.json();
    assert_eq!(plugins["active"], 1, "plugin versions come back too: {plugins}");
    let s = c.get(&gw2.admin_url("/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(s["paused_tenants"][0], "globex", "pauses come back too");
    gw2.stop().await;
}

fn cli(gw: &Gateway, token: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(weir_bin());
    cmd.args(args).arg("--admin-url").arg(gw.admin_url("")).env_remove("WEIR_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("WEIR_ADMIN_TOKEN", t);
    }
    let out = cmd.output().expect("run weir");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_end_to_end_with_json_and_exit_codes() {
    let gw = Gateway::start_with("", |c| c.tenants.push(TenantConfig { id: "clit".into(), ..TenantConfig::default() })).await;
    let c = Client::new();
    let ids = ingest(&c, &gw, "acme", "cli", 3).await;

    let (code, out, err) = cli(&gw, Some(TOKEN), &["status", "--json"]);
    assert_eq!(code, 0, "{err}");
    let s: serde_json::Value = serde_json::from_str(&out).expect("status JSON");
    assert_eq!(s["pending"], 3);

    let (code, out, _) = cli(&gw, Some(TOKEN), &["triggers", "list", "--tenant", "acme", "--json", "--all", "--limit", "2"]);
    assert_eq!(code, 0);
    let l: serde_json::Value = serde_json::from_str(&out).expect("list JSON");
    assert_eq!(l["items"].as_array().expect("items").len(), 3);

    let (code, out, _) = cli(&gw, Some(TOKEN), &["triggers", "list", "--tenant", "acme"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("ID") && ids.iter().all(|id| out.contains(id.as_str())), "{out}");

    let (code, out, _) = cli(&gw, Some(TOKEN), &["triggers", "show", &ids[0], "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("JSON")["id"], ids[0].as_str());

    let (code, _, err) = cli(&gw, Some(TOKEN), &["triggers", "show", "01ARZ3NDEKTSV4RRFFQ69G5FAV"]);
    assert_eq!(code, 3, "not found: {err}");
    let (code, _, err) = cli(&gw, Some("wrong"), &["status"]);
    assert_eq!(code, 4, "unauthorised: {err}");
    assert!(err.contains("WEIR_ADMIN_TOKEN"), "says what to do: {err}");
    let (code, _, _) = cli(&gw, None, &["status"]);
    assert_eq!(code, 4);

    let (code, out, _) = cli(&gw, Some(TOKEN), &["replay", "--tenant", "acme", "--state", "pending", "--dry-run", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("JSON")["matched"], 3);
    // A paced background job, followed to the end.
    let (code, out, err) =
        cli(&gw, Some(TOKEN), &["replay", "--tenant", "acme", "--state", "pending", "--background", "--max-per-sec", "100"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("matched 3  replayed 3  not pending 0  skipped 0"), "{out}");
    let (code, _, err) = cli(&gw, Some(TOKEN), &["replay", "--tenant", "acme", "--state", "pending", "--max-per-sec", "0"]);
    assert_eq!(code, 5, "a pace of 0 is refused: {err}");

    let (code, _, _) = cli(&gw, Some(TOKEN), &["pause", "--tenant", "acme"]);
    assert_eq!(code, 0);
    let (code, _, _) = cli(&gw, Some(TOKEN), &["resume", "--tenant", "acme"]);
    assert_eq!(code, 0);

    let (code, out, err) = cli(&gw, Some(TOKEN), &["plugin", "upload", "--tenant", "clit", wasm::PASSTHROUGH, "--json"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("JSON")["version"], 1);
    let (code, _, err) = cli(&gw, Some(TOKEN), &["plugin", "upload", "--tenant", "clit", wasm::WRONG_WORLD]);
    assert_eq!(code, 5, "a refused upload: {err}");
    let (code, out, _) = cli(&gw, Some(TOKEN), &["plugin", "list", "--tenant", "clit"]);
    assert_eq!(code, 0);
    assert!(out.contains("VERSION"));
    let (code, _, _) = cli(&gw, Some(TOKEN), &["plugin", "rollback", "--tenant", "clit"]);
    assert_eq!(code, 5, "nothing to roll back to");

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("b.weirbak");
    let (code, _, err) = cli(&gw, Some(TOKEN), &["backup", "--out", file.to_str().expect("path")]);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&file).expect("backup").starts_with(b"WEIRBAK2"));

    let (code, _, err) = cli(&gw, Some(TOKEN), &["triggers", "list", "--state", "lost"]);
    assert_eq!(code, 5, "{err}");
    let out = Command::new(weir_bin()).args(["status", "--admin-url", "http://127.0.0.1:1"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1), "unreachable");
    gw.stop().await;
}

#[tokio::test]
async fn a_replay_job_killed_midway_resumes_after_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = crate::support::write_config(dir.path(), "");
    let weir = crate::support::WeirProcess::start(&config);
    let c = Client::new();
    let mut ids = Vec::new();
    for i in 0..600 {
        let r = c.post(&format!("http://{}/ingest/acme/job", weir.ingest), &[], format!("{i}")).await;
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    let admin = format!("http://{}", weir.admin);
    let auth = format!("Bearer {TOKEN}");
    // Replaying pending triggers (asked for by state) as a background job.
    let r = c
        .send(
            Method::POST,
            &format!("{admin}/v1/replay"),
            &[("authorization", auth.as_str())],
            r#"{"tenant":"acme","state":"pending","background":true}"#,
        )
        .await
        .expect("replay");
    assert_eq!(r.status, StatusCode::ACCEPTED, "{:?}", r.body);
    let job = r.json()["job"].as_u64().expect("job");
    weir.sigkill();
    let weir = crate::support::WeirProcess::start(&config);
    weir.wait_for_log("resuming a replay job", Duration::from_secs(10));
    let admin = format!("http://{}", weir.admin);
    let done = eventually(Duration::from_secs(60), || async {
        let j = c.get(&format!("{admin}/v1/replays/{job}"), Some(TOKEN)).await;
        (j.status == StatusCode::OK && j.json()["state"] == "done").then(|| j.json())
    })
    .await;
    assert_eq!(done["matched"], 600);
    let status = c.get(&format!("{admin}/v1/status"), Some(TOKEN)).await.json();
    assert_eq!(status["pending"], 600, "nothing lost");
}

/// A replay's selection is fixed when it starts: triggers that come to match
/// while it runs (a held backlog delivered during the replay) are not
/// replayed, and the job's count and progress agree with the dry run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_moves_only_what_it_matched_while_state_changes_under_it() {
    let up = Upstream::start(Mode::Ok).await;
    let gw = Gateway::start_with("", |c| c.forward.upstreams = vec![up.url()]).await;
    let c = Client::new();
    let first = ingest(&c, &gw, "acme", "first", 200).await;
    up.wait_until(Duration::from_secs(30), |got| got.len() >= 200).await;
    eventually(Duration::from_secs(30), || async {
        let s = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
        (s["delivered"] == 200).then_some(())
    })
    .await;
    // A backlog held behind a pause: pending while the replay starts.
    assert_eq!(post_json(&c, &gw, "/v1/tenants/acme/pause", serde_json::json!({})).await.status, StatusCode::OK);
    let held = ingest(&c, &gw, "acme", "held", 600).await;
    let filter = serde_json::json!({"tenant": "acme", "state": "delivered"});
    let dry = post_json(&c, &gw, "/v1/replay", serde_json::json!({"tenant": "acme", "state": "delivered", "dry_run": true})).await;
    assert_eq!(dry.json()["matched"], 200);

    // A paced job (about 7 s), and the backlog delivered while it runs.
    let mut body = filter.clone();
    body["background"] = true.into();
    body["max_per_sec"] = 30.into();
    let started = post_json(&c, &gw, "/v1/replay", body).await;
    assert_eq!(started.status, StatusCode::ACCEPTED, "{:?}", started.body);
    assert_eq!(started.json()["matched"], 200, "the job selects what the dry run counted");
    let job = started.json()["job"].as_u64().expect("job");
    assert_eq!(post_json(&c, &gw, "/v1/tenants/acme/resume", serde_json::json!({})).await.status, StatusCode::OK);
    let job_url = gw.admin_url(&format!("/v1/replays/{job}"));
    eventually(Duration::from_secs(30), || async {
        let left = c.get(&gw.admin_url("/v1/triggers?tenant=acme&source=held&state=pending&limit=1"), Some(TOKEN)).await.json();
        left["items"].as_array().is_some_and(|a| a.is_empty()).then_some(())
    })
    .await;
    let mid = c.get(&job_url, Some(TOKEN)).await.json();
    assert_eq!(mid["state"], "running", "the backlog was delivered while the job ran, so the test shows the race: {mid}");

    let done = eventually(Duration::from_secs(60), || async {
        let j = c.get(&job_url, Some(TOKEN)).await.json();
        (j["state"] == "done").then_some(j)
    })
    .await;
    assert_eq!(done["matched"], 200, "{done}");
    assert_eq!(done["replayed"], 200, "only what was selected moves: {done}");
    assert_eq!(done["skipped"], 0, "{done}");
    // The upstream got every held trigger once and every replayed one twice.
    up.wait_until(Duration::from_secs(30), |got| got.len() >= 200 + 600 + 200).await;
    let mut seen = std::collections::HashMap::<String, usize>::new();
    for r in up.received() {
        *seen.entry(r.header("weir-trigger-id").to_string()).or_default() += 1;
    }
    assert!(held.iter().all(|id| seen.get(id) == Some(&1)), "a held trigger was delivered again by the replay");
    assert!(first.iter().all(|id| seen.get(id) == Some(&2)), "each selected trigger is delivered again, once");
    gw.stop().await;
}

/// A restore is all or nothing: a damaged backup leaves nothing at the
/// target (so a retry works), and `weir serve` refuses a directory an
/// unfinished restore left behind.
#[tokio::test]
async fn a_failed_restore_leaves_nothing_behind_and_a_retry_succeeds() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let ids = ingest(&c, &gw, "acme", "s", 300).await;
    let backup = c.get(&gw.admin_url("/v1/backup"), Some(TOKEN)).await;
    assert_eq!(backup.status, StatusCode::OK);
    gw.stop().await;

    let work = tempfile::tempdir().expect("tempdir");
    let (good, damaged) = (work.path().join("good.weirbak"), work.path().join("damaged.weirbak"));
    std::fs::write(&good, &backup.body).expect("write");
    // Damaged two thirds in: many triggers are read (and inserted) before the damage shows.
    std::fs::write(&damaged, &backup.body[..backup.body.len() * 2 / 3]).expect("write");
    let target = work.path().join("restored").join("data");
    let restore = |from: &std::path::Path| {
        Command::new(weir_bin()).args(["restore", "--from"]).arg(from).arg("--data-dir").arg(&target).output().expect("restore")
    };
    let failed = restore(&damaged);
    assert!(!failed.status.success());
    assert!(String::from_utf8_lossy(&failed.stderr).contains("damaged"), "{}", String::from_utf8_lossy(&failed.stderr));
    let left: Vec<_> =
        std::fs::read_dir(target.parent().expect("parent")).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "a failed restore leaves no store and no staging directory: {left:?}");

    let retried = restore(&good);
    assert!(retried.status.success(), "the retry into the same directory works: {}", String::from_utf8_lossy(&retried.stderr));
    let gw = Gateway::start_with("", |c| c.store.path = target.clone()).await;
    for id in [&ids[0], &ids[299]] {
        assert_eq!(c.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await.status, StatusCode::OK);
    }
    assert_eq!(c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json()["pending"], 300);
    gw.stop().await;

    // What a killed restore leaves (its staging directory, marked) is never served.
    let marked = work.path().join("marked");
    std::fs::create_dir_all(&marked).expect("mkdir");
    std::fs::write(marked.join("RESTORING"), "weir restore in progress").expect("mark");
    let config = work.path().join("weir.toml");
    std::fs::write(&config, crate::support::config_toml(&marked, "")).expect("write");
    let served = Command::new(weir_bin()).args(["serve", "--config"]).arg(&config).output().expect("serve");
    assert!(!served.status.success());
    let err = String::from_utf8_lossy(&served.stderr);
    assert!(err.contains("unfinished `weir restore`") && err.contains("run weir restore again"), "{err}");
}

/// A job recorded by an older Weir (no stored selection) still resumes: its
/// selection is what its filter matches past its cursor at the restart.
#[tokio::test]
async fn a_running_job_recorded_without_a_selection_still_resumes() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let ids = ingest(&c, &gw, "acme", "old", 5).await;
    let dir = gw.stop().await;
    {
        let control = weir::store::ControlFile::open(dir.path()).expect("open the control file");
        let job = serde_json::json!({
            "job": 7, "scope_tenant": null, "actor": "operator", "args": {"tenant": "acme", "state": "pending"},
            "state": "running", "matched": 5, "replayed": 2, "not_pending": 0, "cursor": ids[1], "error": null,
            "started_at": "2026-12-01T00:00:00Z"
        });
        control.put_job(7, job.to_string().as_bytes()).expect("put");
    }
    let gw = Gateway::start_in(dir, "", |_| {}).await;
    let done = eventually(Duration::from_secs(30), || async {
        let j = c.get(&gw.admin_url("/v1/replays/7"), Some(TOKEN)).await.json();
        (j["state"] == "done").then_some(j)
    })
    .await;
    assert_eq!(done["replayed"], 5, "two before the restart, the three past its cursor after: {done}");
    assert_eq!(done["skipped"], 0, "{done}");
    gw.stop().await;
}
