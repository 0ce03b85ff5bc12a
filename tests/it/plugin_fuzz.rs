//! Random valid WebAssembly through the real upload path. First, core
//! modules made by wasm-smith (tests/components/build.rs), uploaded with
//! `PUT /v1/tenants/{id}/plugin` to a gateway that compiles in the real
//! `weir` binary. Each is uploaded as it is (a core module: refused before
//! any compile) and wrapped as the only content of a component, which passes
//! the cheap checks and is compiled for real (cranelift, in the limited
//! compiler process); exporting nothing, it can only end as `wrong_world`,
//! or as a clear refusal of a proposal the engine does not enable. Never a
//! crash of the compiler, never a 5xx, and the tenant's plugin unchanged.
//! Then components of Weir's world: wasm-smith modules with the world's
//! exports and imports, made components by wit-component; with random
//! bodies they activate, and the triggers they handle are quarantined.
//!
//! `PROPTEST_CASES` (at build time) sets how many modules are made, up to
//! 2,000; `PROPTEST_RNG_SEED` repeats a run (docs/operations.md).

use std::collections::BTreeMap;

use http::StatusCode;
use weir_test_plugins as wasm;

use crate::support::{Gateway, TOKEN};
use crate::upload_limits::leb;

fn modules() -> Vec<Vec<u8>> {
    let file = std::fs::read(wasm::RANDOM_MODULES).expect("the modules build.rs made");
    let mut out = Vec::new();
    let mut rest = &file[..];
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let (module, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
        out.push(module.to_vec());
        rest = tail;
    }
    out
}

/// A component whose only content is `module` (section 1: a core module).
fn wrapped(module: &[u8]) -> Vec<u8> {
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    component.push(1);
    leb(module.len() as u64, &mut component);
    component.extend_from_slice(module);
    component
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_modules_are_refused_clearly_and_never_crash_the_compiler() {
    let gw = Gateway::start().await;
    let url = gw.admin_url("/v1/tenants/acme/plugin");
    let seed = wasm::RANDOM_MODULES_SEED;
    let modules = modules();
    assert!(!modules.is_empty());
    let mut codes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, module) in modules.iter().enumerate() {
        let r = gw.client.put(&url, TOKEN, module.clone()).await;
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("an error body is JSON");
        assert_eq!(
            (r.status, body["error"].as_str()),
            (StatusCode::BAD_REQUEST, Some("core_module")),
            "module {i} (seed {seed}) as it is: {body}"
        );

        let r = gw.client.put(&url, TOKEN, wrapped(module)).await;
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("an error body is JSON");
        let code = body["error"].as_str().unwrap_or_default().to_string();
        let message = body["message"].as_str().unwrap_or_default();
        // Exporting nothing, it never links; 5xx would mean the compiler
        // crashed or the host broke.
        assert!(r.status.is_client_error(), "module {i} (seed {seed}) wrapped: {} {body}", r.status);
        assert!(
            matches!(code.as_str(), "wrong_world" | "compile_failed" | "too_many_functions" | "compile_timeout" | "compile_memory"),
            "module {i} (seed {seed}) wrapped: {code}: {message}"
        );
        assert!(message.len() > 20, "module {i} (seed {seed}): a clear message, got {message:?}");
        // Reasons without their offsets, for the summary printed below.
        let reason = message.split(" (at offset").next().unwrap_or(message).split("; the previously").next().unwrap_or(message);
        *codes.entry(format!("{code}: {}", reason.chars().take(160).collect::<String>())).or_default() += 1;
    }
    // Nothing was stored, and the host still takes a real plugin.
    eprintln!("{} random modules (seed {seed}); wrapped, they ended as:\n{codes:#?}", modules.len());
    let ok = gw.client.put(&url, TOKEN, std::fs::read(wasm::PASSTHROUGH).expect("passthrough")).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&ok.body).expect("json")["version"], 1, "no random module was stored");
    gw.stop().await;
}

/// Found by the test above: a module whose memory is over what a plugin
/// instance may have was refused as "module memory does not fit in pooling
/// allocator requirements", without the cause (which limit, by how much).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_memory_over_the_pool_is_refused_with_its_size_and_the_limit() {
    let gw = Gateway::start().await;
    // (module (memory 4096)): 256 MiB at the start, over the test tenants' limit.
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    module.extend_from_slice(&[5, 4, 1, 0, 0x80, 0x20]);
    let r = gw.client.put(&gw.admin_url("/v1/tenants/acme/plugin"), TOKEN, wrapped(&module)).await;
    let body: serde_json::Value = serde_json::from_slice(&r.body).expect("json");
    let message = body["message"].as_str().unwrap_or_default();
    assert_eq!((r.status, body["error"].as_str()), (StatusCode::UNPROCESSABLE_ENTITY, Some("compile_failed")), "{body}");
    assert!(message.contains("minimum byte size of 268435456") && message.contains("exceeds the limit"), "{message}");
    gw.stop().await;
}

fn components() -> Vec<Vec<u8>> {
    let file = std::fs::read(wasm::RANDOM_COMPONENTS).expect("the components build.rs made");
    let mut out = Vec::new();
    let mut rest = &file[..];
    while let Some((len, tail)) = rest.split_first_chunk::<4>() {
        let (component, tail) = tail.split_at(u32::from_le_bytes(*len) as usize);
        out.push(component.to_vec());
        rest = tail;
    }
    out
}

/// Random components of the trigger-plugin world (wasm-smith modules made
/// components by wit-component in build.rs), with random bodies: each is
/// activated or refused clearly, and a trigger sent through an activated one
/// (which traps, loops or returns anything) is quarantined with the plugin
/// fault or stored: never a 5xx, never a crash, and the other tenant is
/// served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_components_of_the_world_activate_or_are_refused_and_never_crash_ingest() {
    let gw = Gateway::start_with("\n[plugins]\ncompile_timeout_ms = 60000\n", |_| {}).await;
    let url = gw.admin_url("/v1/tenants/acme/plugin");
    let seed = wasm::RANDOM_COMPONENTS_SEED;
    let components = components();
    assert!(!components.is_empty());
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, component) in components.iter().enumerate() {
        let r = gw.client.put(&url, TOKEN, component.clone()).await;
        let body: serde_json::Value = serde_json::from_slice(&r.body).expect("a JSON body");
        if r.status != StatusCode::CREATED {
            let (code, message) = (body["error"].as_str().unwrap_or_default(), body["message"].as_str().unwrap_or_default());
            assert!(r.status.is_client_error(), "component {i} (seed {seed}): {} {body}", r.status);
            assert!(message.len() > 20, "component {i} (seed {seed}): a clear message, got {message:?}");
            let reason = message.split(" (at offset").next().unwrap_or(message).split("; the previously").next().unwrap_or(message);
            *outcomes.entry(format!("refused {code}: {}", reason.chars().take(120).collect::<String>())).or_default() += 1;
            continue;
        }
        let t = gw.client.post(&gw.ingest_url("/ingest/acme/x"), &[], "{\"n\":1}").await;
        assert!(!t.status.is_server_error(), "component {i} (seed {seed}): a trigger got {} {:?}", t.status, t.body);
        let t = t.json();
        let outcome = if t["quarantined"] == true { "activated; trigger quarantined" } else { "activated; trigger stored" };
        *outcomes.entry(outcome.into()).or_default() += 1;
        // The other tenant (no plugin) is served between two random plugins.
        let other = gw.client.post(&gw.ingest_url("/ingest/globex/x"), &[], "{}").await;
        assert_eq!(other.status, StatusCode::ACCEPTED, "component {i} (seed {seed})");
    }
    eprintln!("{} random world components (seed {seed}):\n{outcomes:#?}", components.len());
    assert_eq!(gw.client.get(&gw.ingest_url("/healthz"), None).await.status, StatusCode::OK);
    gw.stop().await;
}
