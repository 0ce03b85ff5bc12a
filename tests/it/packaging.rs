//! packaging/: the systemd unit, checked by `systemd-analyze verify` (no
//! warning at all) and `systemd-analyze security` (exposure at most 1.5) and
//! by its keys; the Dockerfile, linted by its instructions (there is no Docker
//! engine to build it here). The environment each sets is run through
//! `weir check-config`, and the image's health check command through a live
//! gateway. The unit's system call filter is held against every call a real
//! `weir serve` makes under `strace -f`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::time::Duration;

use http::StatusCode;
use weir_test_plugins as wasm;

use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, WeirProcess, weir_bin};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A unit's `Key=value` lines by section; a key given twice keeps every value.
fn unit_keys(text: &str) -> BTreeMap<(String, String), Vec<String>> {
    let mut keys: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';')) {
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = name.to_string();
        } else if let Some((k, v)) = line.split_once('=') {
            keys.entry((section.clone(), k.trim().to_string())).or_default().push(v.trim().to_string());
        }
    }
    keys
}

fn output_text(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `weir check-config examples/weir.toml` with `env`: what a packaged weir starts with.
fn check_config_with(env: &[(String, String)]) -> (Option<i32>, String) {
    let mut cmd = Command::new(weir_bin());
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("WEIR_")) {
        cmd.env_remove(k);
    }
    let out = cmd.envs(env.iter().map(|(k, v)| (k, v))).arg("check-config").arg(repo().join("examples/weir.toml")).output().expect("run");
    (out.status.code(), output_text(&out))
}

#[test]
fn the_systemd_unit_verifies_clean_and_is_hardened() {
    let text = read("packaging/systemd/weir.service");
    // verify checks that ExecStart's program exists: point it at the binary under test.
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = dir.path().join("weir.service");
    std::fs::write(&unit, text.replace("/usr/local/bin/weir", weir_bin().to_str().expect("path"))).expect("write");
    let verify = Command::new("systemd-analyze").args(["verify", "--man=no"]).arg(&unit).output();
    let verify = verify.expect("systemd-analyze runs (.ci/run installs the systemd package)");
    assert!(verify.status.success() && output_text(&verify).is_empty(), "systemd-analyze verify:\n{}", output_text(&verify));
    // Exposure 0.0 (locked down) .. 10.0 (exposed), compared as tenths.
    let security = Command::new("systemd-analyze").args(["security", "--offline=true", "--threshold=15"]).arg(&unit).output().expect("run");
    let text_out = output_text(&security);
    let overall = text_out.lines().find(|l| l.contains("Overall exposure level")).unwrap_or_default().to_string();
    assert!(security.status.success(), "exposure over 1.5: {overall}\n{text_out}");
    println!("{overall}");

    let keys = unit_keys(&text);
    let one = |section: &str, key: &str| -> String {
        let values = keys.get(&(section.to_string(), key.to_string())).unwrap_or_else(|| panic!("[{section}] {key}= missing"));
        values.last().cloned().unwrap_or_default()
    };
    let user = one("Service", "User");
    assert!(!user.is_empty() && user != "root" && user != "0", "a dedicated user: {user}");
    let sysusers = read("packaging/systemd/weir.sysusers");
    assert!(sysusers.lines().any(|l| l.starts_with(&format!("u {user} "))), "the user is created by weir.sysusers");
    assert_eq!(one("Service", "ProtectSystem"), "strict");
    assert_eq!(one("Service", "NoNewPrivileges"), "yes");
    assert_eq!(one("Service", "Restart"), "on-failure");
    assert!(one("Service", "RestartPreventExitStatus").split_whitespace().any(|s| s == "2"), "a config error (exit 2) is not retried");
    // A start limit, in [Unit] where systemd reads it: a broken gateway is not restarted forever.
    let burst: u32 = one("Unit", "StartLimitBurst").parse().expect("a number");
    let interval = one("Unit", "StartLimitIntervalSec");
    assert!((1..=10).contains(&burst) && interval.trim_end_matches('s').parse::<u32>().expect("seconds") >= 60, "{burst} in {interval}");
    let nofile: u64 = one("Service", "LimitNOFILE").parse().expect("a number");
    assert!(nofile >= 65_536, "{nofile}");
    // The store is the one writable path, and where the gateway puts it.
    let env: Vec<(String, String)> = keys
        .get(&("Service".to_string(), "Environment".to_string()))
        .into_iter()
        .flatten()
        .filter_map(|e| e.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let store = env.iter().find(|(k, _)| k == "WEIR_STORE_PATH").map(|(_, v)| v.clone()).expect("WEIR_STORE_PATH in Environment=");
    assert!(one("Service", "ReadWritePaths").split_whitespace().any(|p| p == store), "ReadWritePaths holds {store}");
    // It stops after the gateway's own drain, not before.
    let stop: u64 = one("Service", "TimeoutStopSec").trim_end_matches('s').parse().expect("seconds");
    assert!(stop * 1000 > weir::Config::default().server.shutdown_grace_ms, "{stop} s");
    // The unit's environment is one weir accepts, and the store lands there.
    let (code, out) = check_config_with(&env);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("store in {store}")), "{out}");
}

/// The Dockerfile's instructions: (INSTRUCTION, arguments), continuations joined.
fn instructions(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let t = line.trim();
        if t.starts_with('#') || (t.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(head) = t.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(t);
        let full = std::mem::take(&mut pending);
        let (instr, rest) = full.split_once(' ').unwrap_or((&full, ""));
        out.push((instr.to_ascii_uppercase(), rest.trim().to_string()));
    }
    out
}

fn json_argv(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not an exec-form JSON array: {text}: {e}"))
}

fn port(addr: &str) -> &str {
    addr.rsplit(':').next().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dockerfile_builds_in_stages_and_runs_unprivileged_with_a_volume_and_a_health_check() {
    let all = instructions(&read("packaging/Dockerfile"));
    let mut stages: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for (instr, args) in all {
        if instr == "FROM" {
            let name = args.split_whitespace().collect::<Vec<_>>();
            let alias = match name.as_slice() {
                [_, as_, alias] if as_.eq_ignore_ascii_case("as") => alias.to_string(),
                _ => String::new(),
            };
            stages.push((alias, Vec::new()));
        } else {
            stages.last_mut().expect("FROM first").1.push((instr, args));
        }
    }
    assert!(stages.len() >= 2, "multi-stage");
    let (build_name, build) = &stages[0];
    assert!(build.iter().any(|(i, a)| i == "RUN" && a.contains("cargo build --release --locked")), "builds the release binary, locked");
    let (_, runtime) = stages.last().expect("runtime stage");
    let get = |instr: &str| -> Vec<&String> { runtime.iter().filter(|(i, _)| i == instr).map(|(_, a)| a).collect() };

    let copy = get("COPY").into_iter().find(|a| a.starts_with("--from=")).expect("COPY --from the build stage");
    assert!(copy.starts_with(&format!("--from={build_name} ")) && copy.contains("/target/release/weir "), "{copy}");
    let user = get("USER").last().map(|u| u.split(':').next().unwrap_or_default().to_string()).expect("USER");
    assert!(user != "root" && user != "0", "runs as {user}");
    let env: Vec<(String, String)> = get("ENV")
        .iter()
        .flat_map(|a| a.split_whitespace().filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let var = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_else(|| panic!("ENV {k}"));
    let store = var("WEIR_STORE_PATH");
    let volumes: Vec<String> = get("VOLUME").iter().flat_map(|v| json_argv(v)).collect();
    assert!(volumes.contains(&store), "the store ({store}) is on a volume: {volumes:?}");
    let exposed: Vec<&str> = get("EXPOSE").iter().flat_map(|e| e.split_whitespace()).collect();
    let admin = var("WEIR_SERVER_ADMIN_LISTEN");
    for addr in [var("WEIR_SERVER_LISTEN"), admin.clone()] {
        assert!(
            addr.starts_with("0.0.0.0:") && exposed.contains(&port(&addr)),
            "{addr} listens for the container's network and is exposed"
        );
    }
    let health = get("HEALTHCHECK").last().cloned().cloned().expect("HEALTHCHECK");
    let cmd = health.split_once("CMD ").map(|(_, c)| c).expect("HEALTHCHECK … CMD");
    let argv = json_argv(cmd);
    assert_eq!(argv[..3], ["weir", "health", "--admin-url"], "{argv:?}");
    assert_eq!(argv[3], format!("http://127.0.0.1:{}", port(&admin)), "asks the admin listener's /healthz");
    assert_eq!(get("ENTRYPOINT").last().map(|e| json_argv(e)), Some(vec!["weir".to_string()]));
    let cmd_argv = json_argv(get("CMD").last().expect("CMD"));
    assert_eq!(cmd_argv[..2], ["serve", "--config"]);

    // The image's environment is one weir accepts (a misspelt WEIR_ variable is an error).
    let (code, out) = check_config_with(&env);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains(&format!("store in {store}")), "{out}");
    // The health check command, as written, against a live gateway and a stopped one.
    let gw = Gateway::start().await;
    let run = |url: String| {
        let out = Command::new(weir_bin()).args(&argv[1..3]).arg(url).output().expect("run");
        out.status.code()
    };
    assert_eq!(run(gw.admin_url("")), Some(0));
    let url = gw.admin_url("");
    gw.stop().await;
    assert_eq!(run(url), Some(1), "unhealthy when nothing answers");

    let ignore = read(".dockerignore");
    for path in ["target", ".git"] {
        assert!(ignore.lines().any(|l| l.trim() == path), ".dockerignore leaves {path} out of the build context");
    }
}

/// The system calls a `systemd-analyze syscall-filter` set holds, groups expanded.
fn syscall_set(name: &str, memo: &mut BTreeMap<String, BTreeSet<String>>) -> BTreeSet<String> {
    if !name.starts_with('@') {
        return BTreeSet::from([name.to_string()]);
    }
    if let Some(known) = memo.get(name) {
        return known.clone();
    }
    let out = Command::new("systemd-analyze").args(["syscall-filter", name]).output().expect("systemd-analyze");
    assert!(out.status.success(), "{name}: {}", output_text(&out));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut set = BTreeSet::new();
    // The first line names the set; then its members, one per line (`@group` or a call), and comments.
    for member in text.lines().skip(1).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        set.extend(syscall_set(member, memo));
    }
    memo.insert(name.to_string(), set.clone());
    set
}

/// The pid of weir, the child strace started.
fn traced_child(strace: u32) -> i32 {
    let tasks = std::fs::read_dir(format!("/proc/{strace}/task")).expect("strace's tasks");
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok())
        .flat_map(|c| c.split_whitespace().filter_map(|p| p.parse().ok()).collect::<Vec<i32>>())
        .next()
        .expect("strace has started weir")
}

/// Every call `weir serve` makes while serving, compiling a plugin in its
/// child, ingesting through it, delivering, streaming a backup and draining
/// on SIGTERM is allowed by the unit's `SystemCallFilter=` lines (allowed
/// sets minus `~` sets): the sandbox does not break the gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_system_call_weir_makes_passes_the_units_filter() {
    let up = Upstream::start(Mode::Ok).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("[forward]\nupstreams = [\"{}\"]\n", up.url());
    let config = crate::support::write_config(dir.path(), &extra);
    let trace = dir.path().join("weir.strace");
    let wrapper: Vec<&OsStr> = vec![OsStr::new("strace"), OsStr::new("-f"), OsStr::new("-qq"), OsStr::new("-o"), trace.as_os_str()];
    let mut weir = WeirProcess::start_wrapped(&wrapper, &config, &[]);
    let pid = traced_child(weir.child.id());
    struct KillOnDrop(i32);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            // SAFETY: kill(2) on the weir process this test started.
            unsafe { libc::kill(self.0, libc::SIGKILL) };
        }
    }
    let _guard = KillOnDrop(pid);

    let c = Client::new();
    let admin = format!("http://{}", weir.admin);
    let uploaded = c.put(&format!("{admin}/v1/tenants/acme/plugin"), TOKEN, std::fs::read(wasm::PASSTHROUGH).expect("wasm")).await;
    assert_eq!(uploaded.status, StatusCode::CREATED, "{:?}", uploaded.body);
    for i in 0..5 {
        let r = c.post(&format!("http://{}/ingest/acme/trace", weir.ingest), &[], format!("{{\"n\":{i}}}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    up.wait_until(Duration::from_secs(60), |r| r.len() >= 5).await;
    let backup = c.get(&format!("{admin}/v1/backup"), Some(TOKEN)).await;
    assert!(backup.status == StatusCode::OK && backup.body.starts_with(b"WEIRBAK2"));
    // SAFETY: kill(2) on the weir process this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = weir.wait_exit(Duration::from_secs(60)).expect("strace ends when weir does");
    assert!(status.success(), "weir under strace: {status:?}\n{}", weir.log_text());

    let text = std::fs::read_to_string(&trace).expect("trace");
    // Lines are `PID name(args…` (or `<… name resumed>`, signals, exits): the calls made.
    let used: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.trim_start()))
        .filter_map(|rest| {
            let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            (!name.is_empty() && rest[name.len()..].starts_with('(')).then_some(name)
        })
        .collect();
    assert!(
        used.len() > 40 && used.contains("setpriority") && used.contains("fsync"),
        "the trace covers the compile child and commits: {used:?}"
    );

    let unit = unit_keys(&read("packaging/systemd/weir.service"));
    let filters = unit.get(&("Service".to_string(), "SystemCallFilter".to_string())).expect("SystemCallFilter=");
    let (mut allowed, mut denied, mut memo) = (BTreeSet::new(), BTreeSet::new(), BTreeMap::new());
    for line in filters {
        let (into, sets) = match line.strip_prefix('~') {
            Some(rest) => (&mut denied, rest),
            None => (&mut allowed, line.as_str()),
        };
        for set in sets.split_whitespace() {
            into.extend(syscall_set(set, &mut memo));
        }
    }
    let outside: Vec<&String> = used.iter().filter(|s| !allowed.contains(*s) || denied.contains(*s)).collect();
    assert!(outside.is_empty(), "weir makes calls the unit's filter refuses: {outside:?}");
    println!("{} distinct system calls, all allowed by the unit's filter", used.len());
}
