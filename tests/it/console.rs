//! The operator console in a real headless Chromium (Debian's `chromium`,
//! driven by playwright-core from tests/console/run.mjs) against the real
//! `weir` binary and a real upstream. The browser script asks this test to
//! change the upstream ("ASK upstream_down"); this test answers when it has.
//! Screenshots of every page land in target/console-screenshots/.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::{Client, Mode, TOKEN, Upstream, WeirProcess};

const ACME_TOKEN: &str = "acme-console-token";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn config(dir: &std::path::Path, upstream: &str, store: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
max_body_bytes = 65536

[store]
path = "{}"
{store}

[admin]
token = "{TOKEN}"

[forward]
upstreams = ["{upstream}"]
failure_threshold = 1
probe_interval_ms = 300
backoff_base_ms = 50
backoff_cap_ms = 500

[[tenants]]
id = "acme"
token = "{ACME_TOKEN}"

[[tenants]]
id = "globex"
token = "globex-console-token"

[[tenants]]
id = "plug"
"#,
        dir.join("store").display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_runs_an_incident_in_a_real_browser() {
    let mut upstream = Upstream::start(Mode::Ok).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_file = dir.path().join("weir.toml");
    std::fs::write(&config_file, config(dir.path(), &upstream.url(), "")).expect("config");
    let weir = WeirProcess::start(&config_file);
    let admin = format!("http://{}", weir.admin);

    // Two plugin versions for the rollback (2 active).
    let c = Client::new();
    for wasm in [weir_test_plugins::PASSTHROUGH, weir_test_plugins::REJECT_TEAPOT] {
        let r = c.put(&format!("{admin}/v1/tenants/plug/plugin"), TOKEN, std::fs::read(wasm).expect("wasm")).await;
        assert_eq!(r.status, http::StatusCode::CREATED, "{}", String::from_utf8_lossy(&r.body));
    }

    let shots = run_browser(&weir, &mut upstream, "incident").await;
    for name in [
        "overview",
        "overview-upstream-open",
        "overview-phone",
        "triggers",
        "trigger-hostile",
        "dead-letters-dry-run",
        "dead-letters-replayed",
        "tenants",
        "audit",
        "fleet",
        "tenant-view",
    ] {
        assert!(shots.join(format!("{name}.png")).exists(), "screenshot {name}.png");
    }
}

/// Runs tests/console/run.mjs in `scenario` against `weir`, doing what it asks of
/// the upstream; panics unless it passes. Returns the screenshot folder.
async fn run_browser(weir: &WeirProcess, upstream: &mut Upstream, scenario: &str) -> PathBuf {
    let script = repo().join("tests/console/run.mjs");
    assert!(
        repo().join("tests/console/node_modules/playwright-core").exists(),
        "playwright-core is missing: run `npm ci --prefix tests/console` (.ci/run does)"
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(std::path::Path::new(&chromium).exists(), "{chromium} is missing: apt-get install chromium (.ci/run does)");
    let admin = format!("http://{}", weir.admin);
    let shots = repo().join("target/console-screenshots");
    let mut node = Command::new("node")
        .arg(&script)
        .env("WEIR_ADMIN_URL", &admin)
        .env("WEIR_INGEST_URL", format!("http://{}", weir.ingest))
        .env("WEIR_OPERATOR_TOKEN", TOKEN)
        .env("WEIR_ACME_TOKEN", ACME_TOKEN)
        .env("WEIR_SCREENSHOTS", &shots)
        .env("CHROMIUM", &chromium)
        .env("WEIR_SCENARIO", scenario)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("node runs (apt-get install nodejs)");
    let mut to_node = node.stdin.take().expect("stdin");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stdout = node.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });

    let mut passed = false;
    // Each step of the script waits up to a minute for its selector; the whole run gets ten.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(600);
    while let Ok(Some(line)) = tokio::time::timeout_at(deadline, rx.recv()).await {
        if line == "PASS" {
            passed = true;
            break;
        }
        let Some(ask) = line.strip_prefix("ASK ") else { continue };
        match ask {
            "upstream_down" => upstream.down().await,
            "upstream_up" => upstream.up(),
            "upstream_refuses" => upstream.set_mode(Mode::Status(422, None)),
            "upstream_ok" => upstream.set_mode(Mode::Ok),
            other => panic!("the browser script asked for {other:?}"),
        }
        writeln!(to_node, "DONE {ask}").expect("answer the script");
    }
    let status = node.wait().expect("node exits");
    assert!(status.success() && passed, "the browser script failed ({status}); weir's log:\n{}", weir.log_text());
    shots
}

/// The seed's scenario: the upstream down for good and the disk budget full. The overview must say both:
/// the upstream open with its cause, the triggers held, and ingest refusing with the /readyz reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_an_upstream_down_and_the_disk_full() {
    let mut upstream = Upstream::start(Mode::Ok).await;
    upstream.down().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config_file = dir.path().join("weir.toml");
    std::fs::write(&config_file, config(dir.path(), &upstream.url(), "max_bytes = 1048576")).expect("config");
    let weir = WeirProcess::start(&config_file);
    let c = Client::new();
    let body = vec![b'x'; 60_000];
    let mut accepted = 0;
    loop {
        let r = c.post(&format!("http://{}/ingest/acme/bulk", weir.ingest), &[], body.clone()).await;
        if r.status == http::StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(r.status, http::StatusCode::ACCEPTED);
        accepted += 1;
        assert!(accepted < 100, "a 1 MiB budget took 100 triggers of 60 kB");
    }
    let shots = run_browser(&weir, &mut upstream, "disk_full").await;
    assert!(shots.join("overview-disk-full.png").exists());
}
