//! packaging/: the systemd unit, checked by `systemd-analyze verify` (no
//! warning at all) and `systemd-analyze security` (exposure at most 1.5) and
//! by its keys; the Dockerfile, linted by its instructions (there is no Docker
//! engine to build it here). The environment each sets is run through
//! `weir check-config`, and the image's health check command through a live
//! gateway.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Gateway, weir_bin};

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
