//! Plugin overhead: a fresh Store + instance + `handle` call per trigger,
//! on the calling thread, for the example plugins and a 1 KiB JSON body.
//!
//! Build the plugins first, then run in release:
//!
//! ```sh
//! cargo build --release --target wasm32-wasip2 --manifest-path plugins/Cargo.toml
//! cargo run --release -p weir-gateway --example plugin_overhead [ITERATIONS]
//! ```

use std::sync::Arc;
use std::time::Instant;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use weir::config::TenantConfig;
use weir::plugin::{Decision, Input, PluginHost};

fn main() -> anyhow::Result<()> {
    let iterations: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20_000);
    let dir = tempfile::tempdir()?;
    let wasm = |name: &str| format!("{}/../plugins/target/wasm32-wasip2/release/{name}.wasm", env!("CARGO_MANIFEST_DIR"));
    let mut config = weir::Config::default();
    config.store.path = dir.path().to_path_buf();
    for (id, plugin) in [("pass", "passthrough"), ("hmac", "hmac_verify"), ("json", "json_transform")] {
        config.tenants.push(TenantConfig {
            id: id.into(),
            plugin: Some(wasm(plugin).into()),
            config: [("secret".to_string(), "s3cret".to_string())].into(),
            ..TenantConfig::default()
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let repo = Arc::new(weir::store::PluginRepo::open(dir.path())?);
    let host = rt.block_on(PluginHost::start(&config, repo))?;

    let body: Vec<u8> = {
        let mut s = String::from("{\"event\":\"push\",\"items\":[");
        while s.len() < 1000 {
            s.push_str("{\"k\":\"value\",\"n\":12345},");
        }
        s.push_str("{}]}");
        s.into_bytes()
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(b"s3cret")?;
    mac.update(&body);
    let sig: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    println!("body {} bytes, {iterations} iterations each, fresh instance per call", body.len());
    println!("{:<16} {:>9} {:>9} {:>9}", "plugin", "p50 µs", "p99 µs", "mean µs");
    for tenant in ["pass", "hmac", "json"] {
        let input = Input {
            tenant: tenant.into(),
            source: "bench".into(),
            method: "POST".into(),
            path: format!("/ingest/{tenant}/bench"),
            query: String::new(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("x-hub-signature-256".into(), format!("sha256={sig}")),
            ],
            body: body.clone().into(),
            received_at_ms: 1_700_000_000_000,
        };
        let mut samples = Vec::with_capacity(iterations);
        for i in 0..iterations + iterations / 10 {
            let t = Instant::now();
            let r = host.run_inline(input.clone()).ok_or_else(|| anyhow::anyhow!("no plugin"))?;
            let d = t.elapsed();
            match r {
                Ok(Decision::Accept(_)) => {}
                other => anyhow::bail!("{tenant}: unexpected verdict {other:?}"),
            }
            if i >= iterations / 10 {
                samples.push(d.as_nanos() as f64 / 1000.0);
            }
        }
        samples.sort_by(|a, b| a.total_cmp(b));
        let mean = samples.iter().sum::<f64>() / samples.len() as f64;
        println!(
            "{:<16} {:>9.1} {:>9.1} {:>9.1}",
            tenant,
            samples[samples.len() / 2],
            samples[samples.len() * 99 / 100],
            mean
        );
    }
    Ok(())
}
