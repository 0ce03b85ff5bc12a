//! The CLI as an operator meets it, through the real `weir` binary against a
//! real gateway: closed pipes, `status` for people, trigger headers, paging
//! with `--cursor`, relative `--since`, purge, audit, replay jobs, tenants,
//! plugin activation, backups (refusing to overwrite, `FILE.partial`, a
//! progress bar on a real pseudo-terminal and none when piped), restore
//! exit codes, completions, `--version` and `health`.

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};
use weir::config::TenantConfig;
use weir_test_plugins as wasm;

use crate::support::{Client, Gateway, Mode, TOKEN, Upstream, eventually, weir_bin};

/// `weir ARGS --admin-url GW` with the operator token (or none).
fn weir_cmd(gw: &Gateway, token: Option<&str>, args: &[&str]) -> Command {
    let mut cmd = Command::new(weir_bin());
    cmd.args(args).arg("--admin-url").arg(gw.admin_url("")).env_remove("WEIR_ADMIN_TOKEN");
    if let Some(t) = token {
        cmd.env("WEIR_ADMIN_TOKEN", t);
    }
    cmd
}

fn run(mut cmd: Command) -> (i32, String, String) {
    let out = cmd.output().expect("run weir");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn cli(gw: &Gateway, args: &[&str]) -> (i32, String, String) {
    run(weir_cmd(gw, Some(TOKEN), args))
}

async fn ingest(c: &Client, gw: &Gateway, tenant: &str, headers: &[(&str, &str)], n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let r = c.post(&gw.ingest_url(&format!("/ingest/{tenant}/cli")), headers, format!("{{\"n\":{i}}}")).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
        ids.push(r.json()["id"].as_str().expect("id").to_string());
    }
    ids
}

/// Runs `cmd` with stderr on a new pseudo-terminal, as on an operator's
/// screen: (exit code, stdout, everything the terminal received).
fn on_terminal(mut cmd: Command) -> (i32, String, String) {
    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two new descriptors into the pointers given; the
    // name, termios and winsize pointers may be null.
    let rc = unsafe { libc::openpty(&mut master, &mut slave, std::ptr::null_mut(), std::ptr::null(), std::ptr::null()) };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned here alone.
    let (mut master, slave) = unsafe { (std::fs::File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    cmd.stdout(Stdio::piped()).stderr(Stdio::from(slave));
    let child = cmd.spawn().expect("spawn");
    // The child holds the only other end now: reading ends (EIO) when it exits.
    drop(cmd);
    let reader = std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            seen.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&seen).into_owned()
    });
    let out = child.wait_with_output().expect("wait");
    let terminal = reader.join().expect("reader");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), terminal)
}

/// Every command that prints, its stdout a pipe whose reader is already gone
/// (`weir … | head -0`): each ends quietly with 0, no panic, no "Broken pipe".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_pipe_ends_every_printing_command_quietly() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let ids = ingest(&c, &gw, "acme", &[], 3).await;
    let uploaded = c.put(&gw.admin_url("/v1/tenants/globex/plugin"), TOKEN, std::fs::read(wasm::PASSTHROUGH).expect("wasm")).await;
    assert_eq!(uploaded.status, StatusCode::CREATED);
    let dir = tempfile::tempdir().expect("tempdir");
    let backup = dir.path().join("b.weirbak");
    let commands: Vec<Vec<&str>> = vec![
        vec!["status"],
        vec!["status", "--json"],
        vec!["triggers", "list"],
        vec!["triggers", "list", "--json"],
        vec!["triggers", "show", &ids[0]],
        vec!["tenants", "list"],
        vec!["audit"],
        vec!["plugin", "list", "--tenant", "globex"],
        vec!["replay", "--tenant", "acme", "--state", "pending", "--dry-run"],
        vec!["purge", "--tenant", "acme", "--dry-run"],
        vec!["health"],
        vec!["backup", "--out", backup.to_str().expect("path")],
        vec!["completions", "bash"],
        vec!["--version"],
        vec!["--help"],
    ];
    for args in commands {
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let mut cmd = weir_cmd(&gw, Some(TOKEN), &args);
        if args[0].starts_with("--") || args[0] == "completions" {
            cmd = Command::new(weir_bin());
            cmd.args(&args);
        }
        cmd.stdout(Stdio::from(writer));
        let (code, _, err) = run(cmd);
        assert_eq!(code, 0, "weir {}: {err}", args.join(" "));
        assert!(!err.contains("Broken pipe") && !err.contains("panicked"), "weir {}: {err}", args.join(" "));
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_whole_errors_paused_tenants_and_human_units() {
    let mut up = Upstream::start(Mode::Ok).await;
    up.down().await;
    let gw = Gateway::start_with("", |c| {
        c.forward.upstreams = vec![up.url()];
        c.forward.backoff_base_ms = 20;
        c.forward.backoff_cap_ms = 200;
        c.forward.probe_interval_ms = 200;
    })
    .await;
    let c = Client::new();
    ingest(&c, &gw, "acme", &[], 2).await;
    let (code, _, err) = cli(&gw, &["pause", "--tenant", "globex"]);
    assert_eq!(code, 0, "{err}");
    let error = eventually(Duration::from_secs(20), || async {
        let s = c.get(&gw.admin_url("/v1/status"), Some(TOKEN)).await.json();
        s["upstreams"][0]["last_error"].as_str().map(str::to_string)
    })
    .await;
    assert!(error.len() > 20, "{error}");
    let (code, out, err) = cli(&gw, &["status"]);
    assert_eq!(code, 0, "{err}");
    // The error whole, on its own line, current (the upstream is down), with its age.
    let line = out.lines().find(|l| l.starts_with("  error ")).unwrap_or_else(|| panic!("no error line:\n{out}"));
    assert!(line.contains(" ago: ") && line.ends_with(&error), "{line}\n{out}");
    assert!(!out.contains("recovered"), "{out}");
    assert!(out.contains("globex (PAUSED"), "paused tenants are in the table:\n{out}");
    assert!(out.contains("oldest pending ") && (out.contains(" s)") || out.contains(" ms)")), "{out}");
    assert!(out.contains(" budget") && out.contains("GiB") && !out.contains("bytes"), "human byte units:\n{out}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn triggers_show_headers_list_pages_by_cursor_and_takes_relative_times() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let ids = ingest(&c, &gw, "acme", &[("x-weir-probe", "hello <b>"), ("content-type", "application/json")], 5).await;

    let (code, out, err) = cli(&gw, &["triggers", "show", &ids[0]]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("\n  x-weir-probe: hello <b>\n") && out.contains("\n  content-type: application/json\n"), "{out}");

    // Page by page with the cursor the previous page suggests.
    let mut seen = Vec::new();
    let mut args: Vec<String> = ["triggers", "list", "--tenant", "acme", "--limit", "2", "--order", "asc"].map(String::from).to_vec();
    loop {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = cli(&gw, &argv);
        assert_eq!(code, 0, "{err}");
        seen.extend(ids.iter().filter(|id| out.contains(id.as_str())).cloned());
        let Some(cursor) = err.split("--cursor ").nth(1).and_then(|s| s.split_whitespace().next()) else { break };
        args.truncate(8);
        args.extend(["--cursor".to_string(), cursor.to_string()]);
        assert!(seen.len() <= ids.len(), "pages repeat: {seen:?}");
    }
    assert_eq!(seen, ids, "every trigger once, in order");

    let count = |args: &[&str]| {
        let (code, out, err) = cli(&gw, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        serde_json::from_str::<serde_json::Value>(&out).expect("JSON")["items"].as_array().expect("items").len()
    };
    assert_eq!(count(&["triggers", "list", "--tenant", "acme", "--since", "1h", "--json"]), 5);
    assert_eq!(count(&["triggers", "list", "--tenant", "acme", "--since", "2d", "--until", "1h", "--json"]), 0);
    assert_eq!(count(&["triggers", "list", "--tenant", "acme", "--since", "30m", "--json"]), 5);
    let (code, _, err) = cli(&gw, &["triggers", "list", "--since", "yesterday"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("30m") && err.contains("RFC 3339"), "says what it takes: {err}");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_counts_first_deletes_with_yes_and_audit_shows_it() {
    let gw = Gateway::start().await;
    let c = Client::new();
    let ids = ingest(&c, &gw, "acme", &[], 3).await;
    ingest(&c, &gw, "globex", &[], 1).await;

    let (code, out, err) = cli(&gw, &["purge", "--tenant", "acme"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("matched 3  purged 0  (dry run)") && err.contains("--yes"), "{out}{err}");
    assert_eq!(c.get(&gw.admin_url(&format!("/v1/triggers/{}", ids[0])), Some(TOKEN)).await.status, StatusCode::OK);

    let (code, out, err) = cli(&gw, &["purge", "--tenant", "acme", "--yes"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("matched 3  purged 3"), "{out}");
    for id in &ids {
        assert_eq!(c.get(&gw.admin_url(&format!("/v1/triggers/{id}")), Some(TOKEN)).await.status, StatusCode::NOT_FOUND);
    }
    let (code, _, err) = cli(&gw, &["purge"]);
    assert_eq!(code, 5, "an empty filter is refused by the gateway: {err}");

    let (code, out, err) = cli(&gw, &["audit"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("AT") && out.contains("trigger.purge") && out.contains("operator"), "{out}");
    let (code, out, _) = cli(&gw, &["audit", "--json", "--limit", "1"]);
    assert_eq!(code, 0);
    let a: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(a["items"][0]["action"], "trigger.purge");
    assert_eq!(a["items"][0]["count"], 3);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_jobs_are_followed_with_a_bar_on_a_terminal_and_looked_up_by_number() {
    let gw = Gateway::start().await;
    let c = Client::new();
    ingest(&c, &gw, "acme", &[], 4).await;

    // Started by the CLI on a terminal: a bar that ends full, the result on stdout.
    let cmd = weir_cmd(&gw, Some(TOKEN), &["replay", "--tenant", "acme", "--state", "pending", "--background", "--max-per-sec", "50"]);
    let (code, out, terminal) = on_terminal(cmd);
    assert_eq!(code, 0, "{terminal}");
    assert!(terminal.contains("replay job ") && terminal.contains("100%") && terminal.contains("4 / 4"), "{terminal:?}");
    let job: u64 = out.split_whitespace().nth(1).and_then(|j| j.trim_end_matches(':').parse().ok()).unwrap_or_else(|| panic!("{out}"));
    assert!(out.contains("done  matched 4  replayed 4"), "{out}");

    // Piped: no bar at all, the same result line.
    let (code, out, err) = cli(&gw, &["replay", "--tenant", "acme", "--state", "pending", "--background"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("matched 4  replayed 4") && !err.contains('%') && !err.contains('\r'), "{out}{err:?}");

    let (code, out, err) = cli(&gw, &["replay", "--status", &job.to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), format!("job {job}: done  matched 4  replayed 4  not pending 0  skipped 0"));
    let (code, out, _) = cli(&gw, &["replay", "--status", &job.to_string(), "--follow", "--json"]);
    assert_eq!(code, 0);
    assert_eq!(serde_json::from_str::<serde_json::Value>(&out).expect("JSON")["state"], "done");
    let (code, _, _) = cli(&gw, &["replay", "--status", "99999"]);
    assert_eq!(code, 3, "an unknown job");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_listed_and_a_plugin_rolls_forward_again() {
    let gw = Gateway::start_with("", |c| c.tenants.push(TenantConfig { id: "plug".into(), ..TenantConfig::default() })).await;
    let (code, _, err) = cli(&gw, &["pause", "--tenant", "globex"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&gw, &["tenants", "list"]);
    assert_eq!(code, 0, "{err}");
    let row = |t: &str| out.lines().find(|l| l.starts_with(&format!("{t} "))).unwrap_or_else(|| panic!("{t} missing:\n{out}")).to_string();
    assert!(row("globex").contains("paused") && row("acme").contains("forwarding") && row("plug").contains("forwarding"), "{out}");

    for file in [wasm::PASSTHROUGH, wasm::REJECT_TEAPOT] {
        let (code, _, err) = cli(&gw, &["plugin", "upload", "--tenant", "plug", file]);
        assert_eq!(code, 0, "{err}");
    }
    let (code, _, err) = cli(&gw, &["plugin", "rollback", "--tenant", "plug"]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = cli(&gw, &["plugin", "activate", "--tenant", "plug", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "plug: version 2 active");
    // The new version is the one running: the teapot plugin refuses.
    let r = Client::new().post(&gw.ingest_url("/ingest/plug/x"), &[], "{}").await;
    assert_eq!(r.status, StatusCode::IM_A_TEAPOT);

    let (code, out, _) = cli(&gw, &["plugin", "list", "--tenant", "plug"]);
    assert_eq!(code, 0);
    let sha = weir::plugin::sha256_hex(&std::fs::read(wasm::REJECT_TEAPOT).expect("wasm"));
    let line = out.lines().find(|l| l.starts_with("2 ")).unwrap_or_else(|| panic!("{out}"));
    assert!(line.contains(" * ") && line.ends_with(&sha), "the whole sha256 of the active version:\n{out}");

    let (code, _, err) = cli(&gw, &["plugin", "activate", "--tenant", "plug", "9"]);
    assert_eq!(code, 3, "no such version: {err}");
    let (code, out, _) = cli(&gw, &["audit", "--tenant", "plug", "--json"]);
    assert_eq!(code, 0);
    let a: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(a["items"][0]["action"], "plugin.activate", "{a}");
    assert_eq!(a["items"][0]["detail"]["previous"], 1, "{a}");
    gw.stop().await;
}

/// A tenant token may roll its own plugin forward, not another tenant's
/// (which answers 404, as for data that does not exist).
#[tokio::test]
async fn plugin_activation_follows_the_tenant_rule() {
    let gw = Gateway::start_with("", |c| {
        for t in &mut c.tenants {
            t.token = Some(format!("{}-token", t.id));
        }
    })
    .await;
    let c = Client::new();
    assert_eq!(
        c.put(&gw.admin_url("/v1/tenants/acme/plugin"), TOKEN, std::fs::read(wasm::PASSTHROUGH).expect("wasm")).await.status,
        StatusCode::CREATED
    );
    let activate = |token: &'static str, tenant: &'static str| {
        let (c, url) = (c.clone(), gw.admin_url(&format!("/v1/tenants/{tenant}/plugin/activate")));
        async move {
            let auth = format!("Bearer {token}");
            c.send(Method::POST, &url, &[("authorization", auth.as_str())], r#"{"version":1}"#).await.expect("request").status
        }
    };
    assert_eq!(activate("acme-token", "acme").await, StatusCode::OK);
    assert_eq!(activate("globex-token", "acme").await, StatusCode::NOT_FOUND);
    assert_eq!(activate("acme-token", "globex").await, StatusCode::NOT_FOUND);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_refuses_to_overwrite_shows_a_bar_on_a_terminal_and_restore_codes_match_the_docs() {
    let gw = Gateway::start().await;
    let c = Client::new();
    for i in 0..40 {
        let r = c.post(&gw.ingest_url("/ingest/acme/big"), &[], format!("{i:04}{}", "x".repeat(30_000))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED);
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let out_file = dir.path().join("weir.weirbak");
    let out_arg = out_file.to_str().expect("path").to_string();

    // On a terminal: a bar with a total, ending full; the file is complete.
    let (code, out, terminal) = on_terminal(weir_cmd(&gw, Some(TOKEN), &["backup", "--out", &out_arg]));
    assert_eq!(code, 0, "{terminal}");
    assert!(terminal.contains("backup [##############################] 100%") && terminal.contains(" MiB / "), "{terminal:?}");
    assert!(out.contains("backup written to") && out.contains("MiB)"), "{out}");
    let first = std::fs::read(&out_file).expect("backup");
    assert!(first.starts_with(b"WEIRBAK2"));

    // An existing file is kept unless --force.
    let (code, _, err) = cli(&gw, &["backup", "--out", &out_arg]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("already exists") && err.contains("--force"), "{err}");
    assert_eq!(std::fs::read(&out_file).expect("backup"), first, "untouched");
    ingest(&c, &gw, "acme", &[], 1).await;
    let (code, _, err) = cli(&gw, &["backup", "--out", &out_arg, "--force"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.is_empty(), "piped: no progress output at all: {err:?}");
    assert_ne!(std::fs::read(&out_file).expect("backup"), first, "replaced");

    // The stream goes to FILE.partial (a directory there makes that visible).
    let other = dir.path().join("other.weirbak");
    std::fs::create_dir(dir.path().join("other.weirbak.partial")).expect("mkdir");
    let (code, _, err) = cli(&gw, &["backup", "--out", other.to_str().expect("path")]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("other.weirbak.partial"), "{err}");
    assert!(!other.exists());

    // A damaged (cut) backup is bad input: exit 2, as docs/cli.md says.
    let full = std::fs::read(&out_file).expect("backup");
    let cut = dir.path().join("cut.weirbak");
    std::fs::write(&cut, &full[..full.len() * 2 / 3]).expect("write");
    let out =
        Command::new(weir_bin()).args(["restore", "--from"]).arg(&cut).arg("--data-dir").arg(dir.path().join("r1")).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("truncated or damaged"));
    assert!(!dir.path().join("r1").exists(), "nothing left behind");
    let out = Command::new(weir_bin())
        .args(["restore", "--from"])
        .arg(&out_file)
        .arg("--data-dir")
        .arg(dir.path().join("r2"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    gw.stop().await;
}

#[test]
fn completions_complete_commands_and_flags_in_bash() {
    let out = Command::new(weir_bin()).args(["completions", "bash"]).output().expect("run");
    assert!(out.status.success());
    let dir = tempfile::tempdir().expect("tempdir");
    let script = dir.path().join("weir.bash");
    std::fs::write(&script, &out.stdout).expect("write");
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let program = format!(
            "source {}; COMP_WORDS=({}); COMP_CWORD={}; COMP_LINE='{line}'; COMP_POINT=${{#COMP_LINE}}; _weir weir '{}' '{}'; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script.display(),
            words.iter().map(|w| format!("'{w}'")).collect::<Vec<_>>().join(" "),
            words.len() - 1,
            words[words.len() - 1],
            words[words.len() - 2],
        );
        let out = Command::new("bash").args(["--norc", "-c", &program]).output().expect("bash");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect::<Vec<_>>()
    };
    assert_eq!(complete("weir tri"), ["triggers"]);
    assert_eq!(complete("weir triggers l"), ["list"]);
    assert!(complete("weir backup --f").contains(&"--force".to_string()));
    assert!(complete("weir plugin ").contains(&"activate".to_string()));
    for (shell, marker) in [("zsh", "#compdef weir"), ("fish", "complete -c weir")] {
        let out = Command::new(weir_bin()).args(["completions", shell]).output().expect("run");
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains(marker), "{shell}");
    }
    let out = Command::new(weir_bin()).args(["completions", "tcsh"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "an unknown shell is a usage error");
}

#[test]
fn version_names_the_commit_it_was_built_from() {
    let out = Command::new(weir_bin()).arg("--version").output().expect("run");
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let head = Command::new("git").arg("-C").arg(manifest).args(["rev-parse", "--short=12", "HEAD"]).output();
    // A checkout (CI's is one) names its HEAD; a tarball build says so.
    let want = match head {
        Ok(h) if h.status.success() => String::from_utf8_lossy(&h.stdout).trim().to_string(),
        _ => "unknown".to_string(),
    };
    assert_eq!(version, format!("weir {} (commit {want})", env!("CARGO_PKG_VERSION")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_asks_healthz_and_readyz_without_a_token() {
    let gw = Gateway::start().await;
    assert_eq!(run(weir_cmd(&gw, None, &["health"])).1.trim(), "ok");
    let (code, out, err) = run(weir_cmd(&gw, None, &["health", "--ready"]));
    assert_eq!((code, out.trim()), (0, "ready"), "{err}");
    let out = Command::new(weir_bin()).args(["health", "--admin-url", "http://127.0.0.1:1"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    gw.stop().await;
}
