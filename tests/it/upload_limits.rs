//! Compile limits of plugin uploads against hostile components, through the
//! real `weir` binary: refused early on the function count, killed at the
//! timeout and the memory limit (no compiler process left behind), the
//! gateway's RSS unmoved by what a compile needed, one compile per tenant,
//! and another tenant's uploads and triggers served throughout.
//!
//! The hostile components are generated here: a component whose only content
//! is a core module of `n` tiny functions. It is not a Weir plugin (it
//! exports nothing), so one that compiles ends as `wrong_world`, after the
//! whole compile ran.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use http::StatusCode;
use weir_test_plugins as wasm;

use crate::support::{Client, Gateway, Reply, TOKEN, WeirProcess};

/// 100k functions: ~600 KB, over the default `plugins.max_functions`;
/// compiling it took ~590 MiB and ~6 s of CPU in a debug build here.
const HOSTILE_FUNCTIONS: u32 = 100_000;

/// `n` in unsigned LEB128, as Wasm encodes sizes and counts.
pub(crate) fn leb(mut n: u64, out: &mut Vec<u8>) {
    loop {
        let byte = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(byte);
            return;
        }
        out.push(byte | 0x80);
    }
}

fn section(id: u8, body: &[u8], out: &mut Vec<u8>) {
    out.push(id);
    leb(body.len() as u64, out);
    out.extend_from_slice(body);
}

/// A component holding one core module of `n` functions `() -> i32`, each
/// returning a constant; `salt` makes the bytes (and the sha256) unique.
fn many_functions(n: u32, salt: u8) -> Vec<u8> {
    let mut types = Vec::new();
    leb(1, &mut types);
    types.extend_from_slice(&[0x60, 0, 1, 0x7f]);
    let mut funcs = Vec::new();
    leb(u64::from(n), &mut funcs);
    funcs.extend(std::iter::repeat_n(0u8, n as usize));
    let mut code = Vec::new();
    leb(u64::from(n), &mut code);
    for k in 0..n {
        // size, no locals, i32.const (k + salt) mod 64, end
        code.extend_from_slice(&[4, 0, 0x41, ((k + u32::from(salt)) % 64) as u8, 0x0b]);
    }
    let mut module = b"\0asm\x01\0\0\0".to_vec();
    section(1, &types, &mut module);
    section(3, &funcs, &mut module);
    section(10, &code, &mut module);
    let mut component = b"\0asm\x0d\0\x01\0".to_vec();
    section(1, &module, &mut component);
    component
}

/// Pids whose parent is `pid` (from /proc/*/stat).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|child| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { return false };
            // After the command name in parentheses: state, then ppid.
            let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
            rest.split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid)
        })
        .collect()
}

/// The nice value of a process (/proc/PID/stat, field 19).
fn nice_of(pid: u32) -> Option<i64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // Fields from the third (state) on; nice is the 19th field overall.
    rest.split_whitespace().nth(16)?.parse().ok()
}

/// A `/proc/PID/status` figure in KiB (VmRSS, VmHWM).
fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn rss_mib(pid: u32) -> u64 {
    status_kib(pid, "VmRSS:").expect("gateway RSS") / 1024
}

/// The real gateway with these `[plugins]` keys.
fn start_weir(dir: &tempfile::TempDir, plugins: &str) -> WeirProcess {
    let toml = crate::support::config_toml(dir.path(), &format!("\n[plugins]\n{plugins}\n"));
    let file = dir.path().join("weir.toml");
    std::fs::write(&file, toml).expect("config");
    WeirProcess::start(&file)
}

fn admin(w: &WeirProcess, path: &str) -> String {
    format!("http://{}{path}", w.admin)
}

/// The other tenant under steady load: triggers sent one after another until
/// stopped; every status is kept, with its latency (reported, not asserted).
struct Load {
    stop: Arc<AtomicBool>,
    statuses: Arc<Mutex<Vec<(u16, Duration)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Load {
    fn start(url: String) -> Load {
        let (stop, statuses) = (Arc::new(AtomicBool::new(false)), Arc::new(Mutex::new(Vec::new())));
        let (flag, sink) = (stop.clone(), statuses.clone());
        let task = tokio::spawn(async move {
            let c = Client::new();
            while !flag.load(Ordering::Relaxed) {
                let sent = Instant::now();
                let status = c.post(&url, &[], "{\"steady\":true}").await.status.as_u16();
                sink.lock().expect("statuses").push((status, sent.elapsed()));
            }
        });
        Load { stop, statuses, task }
    }

    /// Stops and returns every status seen, after printing the latency
    /// percentiles of those from index `from` on.
    async fn finish(self, what: &str, from: usize) -> Vec<u16> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("load task");
        let seen = self.statuses.lock().expect("statuses").clone();
        let mut latencies: Vec<Duration> = seen.iter().skip(from).map(|(_, d)| *d).collect();
        latencies.sort();
        let at = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied();
        eprintln!("other tenant {what}: {} triggers, p50 {:?}, p99 {:?}", latencies.len(), at(0.5), at(0.99));
        seen.into_iter().map(|(s, _)| s).collect()
    }
}

/// Watches the gateway's children while a compile runs: the pids seen and
/// the highest peak RSS (VmHWM) any of them reached.
struct Watch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(Vec<u32>, u64)>,
}

impl Watch {
    fn start(gateway: u32) -> Watch {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let task = tokio::spawn(async move {
            let (mut seen, mut peak_kib) = (Vec::new(), 0);
            while !flag.load(Ordering::Relaxed) {
                for child in children_of(gateway) {
                    if !seen.contains(&child) {
                        seen.push(child);
                    }
                    peak_kib = peak_kib.max(status_kib(child, "VmHWM:").unwrap_or(0));
                }
                // Sampling /proc: there is no event for "memory grew".
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            (seen, peak_kib / 1024)
        });
        Watch { stop, task }
    }

    async fn finish(self) -> (Vec<u32>, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("watch task")
    }
}

/// Polls until the gateway has a child process (a compile started).
async fn wait_for_child(gateway: u32) -> u32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(child) = children_of(gateway).first() {
            return *child;
        }
        assert!(Instant::now() < deadline, "no compiler process appeared");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn error_of(r: &Reply) -> (String, String) {
    let v = r.json();
    (v["error"].as_str().unwrap_or("").to_string(), v["message"].as_str().unwrap_or("").to_string())
}

#[tokio::test]
async fn too_many_functions_is_refused_before_compiling_with_the_limit_named() {
    let gw = Gateway::start_with("\n[plugins]\nmax_functions = 2000\n", |_| {}).await;
    let c = Client::new();
    let url = gw.admin_url("/v1/tenants/acme/plugin");

    let r = c.put(&url, TOKEN, many_functions(2001, 0)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{:?}", r.body);
    let (code, message) = error_of(&r);
    assert_eq!(code, "too_many_functions");
    assert!(message.contains("2001") && message.contains("2000") && message.contains("plugins.max_functions"), "{message}");

    // At the limit it passes the cheap check and is compiled (then refused
    // for not being a plugin).
    let r = c.put(&url, TOKEN, many_functions(2000, 0)).await;
    assert_eq!(error_of(&r).0, "wrong_world", "{:?}", r.body);

    // The default limit refuses the hostile size too.
    let gw2 = Gateway::start().await;
    let r = c.put(&gw2.admin_url("/v1/tenants/acme/plugin"), TOKEN, many_functions(HOSTILE_FUNCTIONS, 0)).await;
    assert_eq!(error_of(&r).0, "too_many_functions", "{:?}", r.body);

    // A real plugin is far below it.
    assert_eq!(c.put(&url, TOKEN, std::fs::read(wasm::PASSTHROUGH).expect("passthrough")).await.status, StatusCode::CREATED);
    gw.stop().await;
    gw2.stop().await;
}

/// The case: a component that compiles, but needs hundreds of MiB to
/// do it. The gateway's memory stays where it was, one tenant gets one
/// compile at a time, and another tenant uploads and serves meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heavy_compile_costs_the_gateway_no_memory_and_other_tenants_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = start_weir(&dir, "max_functions = 1000000\ncompile_memory_mb = 4096\ncompile_timeout_ms = 600000");
    let pid = w.child.id();
    let c = Client::new();
    let load = Load::start(format!("http://{}/ingest/globex/steady", w.ingest));
    // Warm up: the load has run, the allocator has its working set.
    let warm = Instant::now() + Duration::from_secs(60);
    while load.statuses.lock().expect("statuses").len() < 200 {
        assert!(Instant::now() < warm, "the steady load did not get going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let before = rss_mib(pid);
    let baseline = load.statuses.lock().expect("statuses").clone();
    let mut sorted: Vec<Duration> = baseline.iter().map(|(_, d)| *d).collect();
    sorted.sort();
    eprintln!("other tenant before the compile: p50 {:?}, p99 {:?}", sorted[sorted.len() / 2], sorted[sorted.len() * 99 / 100]);

    let watch = Watch::start(pid);
    let hostile = {
        let (c, url) = (c.clone(), admin(&w, "/v1/tenants/acme/plugin"));
        tokio::spawn(async move {
            let started = Instant::now();
            let r = c.put(&url, TOKEN, many_functions(HOSTILE_FUNCTIONS, 1)).await;
            (r, started.elapsed())
        })
    };
    wait_for_child(pid).await;
    // The same tenant again while its compile runs: refused, not queued.
    let again = c.put(&admin(&w, "/v1/tenants/acme/plugin"), TOKEN, many_functions(10, 2)).await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS, "{:?}", again.body);
    assert_eq!(error_of(&again).0, "compile_in_progress");
    assert!(again.headers.contains_key("retry-after"), "a 429 says when to come back: {:?}", again.headers);
    // Another tenant's normal plugin uploads meanwhile and runs.
    let other = c.put(&admin(&w, "/v1/tenants/globex/plugin"), TOKEN, std::fs::read(wasm::PASSTHROUGH).expect("passthrough")).await;
    assert_eq!(other.status, StatusCode::CREATED, "{:?}", other.body);
    assert!(!hostile.is_finished(), "the heavy compile was still running when the other tenant's upload finished");
    // The compiler still running is the heavy one: lowest priority, kernel limits.
    for child in children_of(pid) {
        assert_eq!(nice_of(child), Some(19), "compiler {child} runs at the lowest priority");
        let limits = std::fs::read_to_string(format!("/proc/{child}/limits")).expect("limits");
        for name in ["Max cpu time", "Max data size"] {
            let line = limits.lines().find(|l| l.starts_with(name)).expect("limit line");
            assert!(!line.contains("unlimited"), "{line}");
        }
    }

    let (r, took) = hostile.await.expect("upload task");
    let (children, child_peak_mib) = watch.finish().await;
    let statuses = load.finish("during the compile", baseline.len()).await;
    let after = rss_mib(pid);
    // It compiled (in full), then was refused for not being a plugin.
    assert_eq!(error_of(&r).0, "wrong_world", "{:?}", r.body);
    assert!(!children.is_empty(), "the compile ran in a child process");
    assert!(children_of(pid).is_empty(), "no compiler outlives its upload");
    eprintln!(
        "heavy compile: {HOSTILE_FUNCTIONS} functions, upload answered in {took:?}; compiler peak RSS {child_peak_mib} MiB; \
         gateway RSS {before} MiB before, {after} MiB after; other tenant: {} triggers",
        statuses.len()
    );
    assert!(after <= before + 64, "gateway RSS grew from {before} MiB to {after} MiB");
    assert!(statuses.iter().all(|s| *s == 202), "the other tenant got {:?}", statuses.iter().filter(|s| **s != 202).collect::<Vec<_>>());
    // The other tenant's triggers went through its new plugin.
    let r = c.post(&format!("http://{}/ingest/globex/after", w.ingest), &[], "x").await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let id = r.json()["id"].as_str().expect("id").to_string();
    let t = c.get(&admin(&w, &format!("/v1/triggers/{id}")), Some(TOKEN)).await.json();
    assert_eq!(t["plugin_version"], 1, "{t}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_past_the_timeout_is_killed_and_the_limit_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 3 s: half the ~6 s of CPU the hostile component needs, while a real
    // plugin compiles well within it even on a loaded machine.
    let w = start_weir(&dir, "max_functions = 1000000\ncompile_memory_mb = 4096\ncompile_timeout_ms = 3000");
    let pid = w.child.id();
    let c = Client::new();
    let load = Load::start(format!("http://{}/ingest/globex/steady", w.ingest));
    let before = rss_mib(pid);
    let watch = Watch::start(pid);

    let r = c.put(&admin(&w, "/v1/tenants/acme/plugin"), TOKEN, many_functions(HOSTILE_FUNCTIONS, 3)).await;
    // Right at the answer: the compiler was killed and reaped before it.
    assert!(children_of(pid).is_empty(), "a compiler process outlived the timeout");
    let (children, child_peak_mib) = watch.finish().await;
    let statuses = load.finish("during the timed-out compile", 0).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let (code, message) = error_of(&r);
    assert_eq!(code, "compile_timeout");
    assert!(message.contains("3000 ms") && message.contains("plugins.compile_timeout_ms"), "{message}");
    assert!(!children.is_empty(), "the compile ran in a child process");
    for child in &children {
        assert!(!std::path::Path::new(&format!("/proc/{child}")).exists(), "compiler {child} still exists");
    }
    let after = rss_mib(pid);
    eprintln!("timed-out compile: compiler peak RSS {child_peak_mib} MiB; gateway RSS {before} MiB before, {after} MiB after");
    assert!(after <= before + 64, "gateway RSS grew from {before} MiB to {after} MiB");
    assert!(!statuses.is_empty() && statuses.iter().all(|s| *s == 202), "the other tenant got {statuses:?}");
    // Nothing of it was stored; a normal plugin still uploads.
    let list = c.get(&admin(&w, "/v1/tenants/acme/plugin"), Some(TOKEN)).await.json();
    assert_eq!(list["versions"].as_array().map(Vec::len), Some(0), "{list}");
    let ok = c.put(&admin(&w, "/v1/tenants/acme/plugin"), TOKEN, std::fs::read(wasm::PASSTHROUGH).expect("passthrough")).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_compile_over_the_memory_limit_is_stopped_and_the_limit_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let w = start_weir(&dir, "max_functions = 1000000\ncompile_memory_mb = 64\ncompile_timeout_ms = 600000");
    let pid = w.child.id();
    let c = Client::new();
    let before = rss_mib(pid);
    let watch = Watch::start(pid);
    let r = c.put(&admin(&w, "/v1/tenants/acme/plugin"), TOKEN, many_functions(HOSTILE_FUNCTIONS, 4)).await;
    let (children, child_peak_mib) = watch.finish().await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{:?}", r.body);
    let (code, message) = error_of(&r);
    assert_eq!(code, "compile_memory", "{message}");
    assert!(message.contains("64 MiB") && message.contains("plugins.compile_memory_mb"), "{message}");
    assert!(children_of(pid).is_empty(), "no compiler outlives its upload");
    let after = rss_mib(pid);
    eprintln!(
        "memory-capped compile: compiler peak RSS {child_peak_mib} MiB (children {children:?}); gateway RSS {before} MiB before, {after} MiB after"
    );
    assert!(after <= before + 64, "gateway RSS grew from {before} MiB to {after} MiB");
    // Normal plugins fit in that limit.
    let ok = c.put(&admin(&w, "/v1/tenants/acme/plugin"), TOKEN, std::fs::read(wasm::HMAC_VERIFY).expect("hmac")).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{:?}", ok.body);
}

#[tokio::test]
async fn a_compiler_that_is_not_weir_is_named_and_nothing_is_stored() {
    let gw = Gateway::start_with("", |c| c.plugins.compiler = Some("/bin/true".into())).await;
    let c = Client::new();
    let r = c.put(&gw.admin_url("/v1/tenants/acme/plugin"), TOKEN, std::fs::read(wasm::PASSTHROUGH).expect("passthrough")).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", r.body);
    let (code, message) = error_of(&r);
    assert_eq!(code, "compiler_unavailable");
    assert!(message.contains("/bin/true") && message.contains("plugins.compiler"), "{message}");
    gw.stop().await;
}

/// The CPU limit is the kernel's, in the child itself: it holds even with no
/// gateway around to enforce the timeout.
#[test]
fn the_compiler_process_is_stopped_by_its_own_cpu_limit() {
    use std::io::Write;
    use std::os::unix::process::ExitStatusExt;
    let mut child = std::process::Command::new(crate::support::weir_bin())
        .args(["compile-plugin", "--pool-concurrency", "4", "--pool-memory-bytes", "1048576"])
        .args(["--memory-mb", "4096", "--cpu-secs", "1", "--max-input-bytes", "16777216"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn the compiler");
    let wasm = many_functions(HOSTILE_FUNCTIONS, 5);
    child.stdin.take().expect("stdin").write_all(&wasm).expect("write the component");
    let status = child.wait().expect("wait");
    assert_eq!(status.signal(), Some(libc::SIGXCPU), "{status}");
}
