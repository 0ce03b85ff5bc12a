//! The plugin author's loop through the real `weir` binary: `weir plugin
//! check` and `weir plugin test` on the components built from `plugins/`,
//! and `weir plugin new` → `build` → `test` → `check` in a directory that
//! knows nothing of this repository.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use weir_test_plugins as wasm;

use crate::support::weir_bin;

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }

    fn text(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

fn weir_in(dir: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new(weir_bin());
    cmd.args(args).env_remove("WEIR_CONFIG");
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    let out = cmd.output().expect("run weir");
    Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn weir(args: &[&str]) -> Run {
    weir_in(None, args)
}

/// A gateway config with these extra TOML lines, in `dir`.
fn config_file(dir: &Path, toml: &str) -> PathBuf {
    let path = dir.join("weir.toml");
    std::fs::write(&path, format!("[store]\npath = \"{}\"\n{toml}", dir.join("data").display())).expect("write config");
    path
}

/// A config whose tenants (`test`, the default, and those the cases name)
/// have a generous CPU budget: these tests are about the CLI, and on a busy
/// machine a plugin at nice 10 can miss the default's 200 ms wall-clock cap,
/// as it would in the gateway.
fn roomy(dir: &Path) -> String {
    let dir = dir.join("roomy");
    std::fs::create_dir_all(&dir).expect("mkdir");
    let tenants: String =
        ["test", "acme", "globex"].iter().map(|t| format!("[[tenants]]\nid = \"{t}\"\nplugin_timeout_ms = 5000\n")).collect();
    config_file(&dir, &tenants).to_str().expect("utf8").to_string()
}

/// The one case of a `weir plugin test --json` run.
fn only_case(run: &Run) -> Value {
    let v = run.json();
    assert_eq!(v["cases"].as_array().map(Vec::len), Some(1), "{v}");
    v["cases"][0].clone()
}

#[test]
fn check_reports_world_imports_compile_and_limits_and_refuses_what_an_upload_refuses() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config =
        config_file(dir.path(), "[plugins]\nconcurrency = 8\n[[tenants]]\nid = \"acme\"\nplugin_timeout_ms = 75\nplugin_memory_mb = 16\n");
    let config = config.to_str().expect("utf8");

    let run = weir(&["plugin", "check", wasm::HMAC_VERIFY, "--config", config, "--tenant", "acme", "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    let v = run.json();
    assert_eq!(v["accepted"], true);
    assert_eq!(v["world"], "weir:plugin@0.2.0");
    let imports: Vec<&str> = v["imports"].as_array().expect("imports").iter().filter_map(Value::as_str).collect();
    assert!(imports.contains(&"weir:plugin/host@0.2.0"), "{imports:?}");
    assert!(imports.iter().all(|i| i.starts_with("weir:plugin/") || i.starts_with("wasi:")), "{imports:?}");
    assert_eq!(v["size"].as_u64(), std::fs::metadata(wasm::HMAC_VERIFY).ok().map(|m| m.len()));
    assert!(v["functions"].as_u64().is_some_and(|n| n > 10), "{v}");
    assert!(v["compile_ms"].as_u64().is_some() && v["artifact_bytes"].as_u64().is_some_and(|n| n > 0), "{v}");
    // The tenant's own limits from the config, and the pool's.
    let limits = &v["limits"];
    assert_eq!((limits["plugin_timeout_ms"].as_u64(), limits["wall_clock_cap_ms"].as_u64()), (Some(75), Some(300)), "{limits}");
    assert_eq!((limits["plugin_memory_mb"].as_u64(), limits["instances"].as_u64()), (Some(16), Some(8)), "{limits}");
    assert_eq!(limits["instances_per_tenant"].as_u64(), Some(4));

    // The human form says the same.
    let run = weir(&["plugin", "check", wasm::LEGACY_V0_1]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(run.stdout.contains("weir:plugin@0.1.0 (older; still supported)"), "{}", run.stdout);
    assert!(run.stdout.contains("plugin_timeout_ms 50 ") && run.stdout.contains("plugin_memory_mb 32 "), "{}", run.stdout);

    // Refused as an upload is, with its code, exit 5.
    let not_wasm = dir.path().join("notes.txt");
    std::fs::write(&not_wasm, "not a component").expect("write");
    for (file, code) in [(wasm::WRONG_WORLD, "wrong_world"), (not_wasm.to_str().expect("utf8"), "not_wasm")] {
        let run = weir(&["plugin", "check", file, "--json"]);
        assert_eq!(run.code, Some(5), "{}", run.text());
        assert_eq!((run.json()["accepted"].clone(), run.json()["code"].clone()), (Value::Bool(false), Value::from(code)));
        assert!(run.stderr.contains("refused"), "{}", run.stderr);
    }
    // The config's upload limits are the ones checked.
    let small = config_file(dir.path(), "[plugins]\nmax_component_bytes = 2048\n");
    let run = weir(&["plugin", "check", wasm::PASSTHROUGH, "--config", small.to_str().expect("utf8")]);
    assert_eq!(run.code, Some(5), "{}", run.text());
    assert!(run.stderr.contains("plugins.max_component_bytes") && run.stderr.contains("component_too_large"), "{}", run.stderr);
}

#[test]
fn test_exits_by_verdict_and_by_expectation() {
    // (plugin, extra args, exit code, verdict, status)
    let cases: [(&str, &[&str], i32, &str, u64); 7] = [
        (wasm::PASSTHROUGH, &[], 0, "accept", 202),
        (wasm::DROP_ALL, &[], 0, "drop", 202),
        (wasm::REJECT_TEAPOT, &[], 1, "reject", 418),
        (wasm::REJECT_TEAPOT, &["--expect", "reject"], 0, "reject", 418),
        (wasm::DROP_ALL, &["--expect", "accept"], 1, "drop", 202),
        (wasm::PASSTHROUGH, &["--expect", "drop"], 1, "accept", 202),
        (wasm::TRAP, &["--expect", "fault"], 0, "fault", 202),
    ];
    let dir = tempfile::tempdir().expect("tempdir");
    let config = roomy(dir.path());
    for (plugin, extra, code, verdict, status) in cases {
        let mut args = vec!["plugin", "test", plugin, "--body", "{}", "--json", "--weir-config", &config];
        args.extend_from_slice(extra);
        let run = weir(&args);
        assert_eq!(run.code, Some(code), "{plugin} {extra:?}: {}", run.text());
        let c = only_case(&run);
        assert_eq!((c["verdict"].as_str(), c["status"].as_u64()), (Some(verdict), Some(status)), "{plugin} {extra:?}: {c}");
        assert_eq!(c["passed"], code == 0);
        if code == 1 {
            assert!(!c["mismatches"].as_array().expect("list").is_empty(), "{c}");
        }
    }
}

#[test]
fn test_shows_the_transform_the_logs_and_what_the_call_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = roomy(dir.path());
    let run = weir(&[
        "plugin",
        "test",
        wasm::JSON_TRANSFORM,
        "--weir-config",
        &config,
        "--body",
        r#"{"keep":1,"secret":"s3cr3t"}"#,
        "--config",
        "drop=secret",
        "--header",
        "Authorization: Bearer never-shown",
        "--header",
        "Idempotency-Key: order-7",
        "--tenant",
        "acme",
        "--source",
        "shop",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    let out = &run.stdout;
    assert!(out.contains("verdict   accept: the sender gets 202, stored as pending"), "{out}");
    assert!(out.contains("header    + content-type: application/json"), "{out}");
    assert!(out.contains("unseen    authorization"), "{out}");
    assert!(out.contains("key       order-7"), "{out}");
    // A unified diff of the pretty JSON: the dropped field out, `_weir` in.
    assert!(out.contains("--- received\n          +++ stored"), "{out}");
    assert!(out.contains("-  \"secret\": \"s3cr3t\""), "{out}");
    assert!(out.contains("+    \"tenant\": \"acme\""), "{out}");
    assert!(out.contains("cost      CPU "), "{out}");

    // The gateway's log cap applies, and the lines are the plugin's.
    let config = config_file(dir.path(), "[plugins]\nmax_log_calls = 5\n[[tenants]]\nid = \"test\"\nplugin_timeout_ms = 4000\n");
    let run = weir(&[
        "plugin",
        "test",
        wasm::LOG_FLOOD,
        "--config",
        "count=9",
        "--config",
        "size=40",
        "--weir-config",
        config.to_str().expect("utf8"),
        "--json",
    ]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    let c = only_case(&run);
    let logs = c["logs"].as_array().expect("logs");
    assert_eq!(logs.len(), 5, "plugins.max_log_calls: {c}");
    assert!(logs.iter().all(|l| l["level"] == "info" && l["message"].as_str().is_some_and(|m| m.len() == 40)), "{c}");
    // What the call used: its CPU time and the peak of its linear memory.
    let usage = &c["usage"];
    assert!(usage["cpu_us"].as_u64().is_some_and(|n| n > 0), "{usage}");
    assert!(usage["memory_peak_bytes"].as_u64().is_some_and(|n| n >= 64 * 1024), "{usage}");
    assert_eq!(usage["cpu_budget_ms"].as_u64(), Some(4000), "the tenant's plugin_timeout_ms");

    // A plugin that grows its memory: the peak follows it, up to the cap.
    let config = roomy(dir.path());
    let run = weir(&["plugin", "test", wasm::MEMORY_HOG, "--body", "x", "--expect", "fault", "--weir-config", &config, "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    let c = only_case(&run);
    assert_eq!(c["fault"]["kind"], "memory", "{c}");
    let peak = c["usage"]["memory_peak_bytes"].as_u64().expect("peak");
    assert!(peak > 16 << 20 && peak <= 32 << 20, "peak {peak} is under the 32 MiB cap and well above a small plugin's");

    // The phase reaches the plugin.
    let run = weir(&["plugin", "test", wasm::PHASE_ECHO, "--body", "x", "--phase", "replay", "--weir-config", &config, "--json"]);
    let c = only_case(&run);
    assert!(c["headers_set"].as_array().expect("set").iter().any(|h| h[0] == "x-phase" && h[1] == "replay"), "{c}");
}

#[test]
fn a_case_directory_runs_each_case_with_its_settings_and_expectation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = dir.path().join("cases");
    std::fs::create_dir(&cases).expect("mkdir");
    let write = |name: &str, text: &str| std::fs::write(cases.join(name), text).expect("write");
    // echo-config: the body lists config keys; the plugin answers with their values.
    write("a-region.http", "POST /ingest/acme/github?token=abc HTTP/1.1\r\nX-Test-Key: k-1\r\nCookie: c=1\r\n\r\nregion,secret");
    write(
        "a-region.toml",
        "[config]\nregion = \"eu\"\n[expect]\nverdict = \"accept\"\nbody = '{\"secret\": null, \"region\": \"eu\"}'\n\
         headers = { \"x-weir-plugin\" = \"echo-config\" }\nroute = \"echo\"\nidempotency_key = \"k-1\"\n",
    );
    // Ingest refuses a bad key before the plugin runs.
    write("b-bad-key.http", "POST /ingest/acme/github\nIdempotency-Key: has space\n\nregion");
    write("b-bad-key.toml", "[expect]\nverdict = \"reject\"\nstatus = 400\nreason_contains = \"Idempotency-Key\"\n");
    // An expectation that does not hold.
    write("c-wrong.http", "POST /ingest/globex/stripe\n\nregion");
    write("c-wrong.toml", "[expect]\nverdict = \"accept\"\nbody = '{\"region\": \"us\"}'\n");
    let path = cases.to_str().expect("utf8");
    let config = roomy(dir.path());

    let run = weir(&["plugin", "test", wasm::ECHO_CONFIG, "--weir-config", &config, "--request", path, "--json"]);
    assert_eq!(run.code, Some(1), "one case fails: {}", run.text());
    let v = run.json();
    assert_eq!((v["passed"].as_u64(), v["failed"].as_u64()), (Some(2), Some(1)), "{v}");
    let [a, b, c] = [&v["cases"][0], &v["cases"][1], &v["cases"][2]];
    assert_eq!((a["name"].as_str(), a["passed"].as_bool()), (Some("a-region"), Some(true)), "{a}");
    assert_eq!((a["tenant"].as_str(), a["source"].as_str()), (Some("acme"), Some("github")), "from the path: {a}");
    assert_eq!(a["not_stored_headers"], serde_json::json!(["cookie"]), "{a}");
    assert_eq!(a["dropped_query"], "token=abc", "{a}");
    assert_eq!((b["decided_by"].as_str(), b["passed"].as_bool()), (Some("ingest"), Some(true)), "{b}");
    assert_eq!((c["tenant"].as_str(), c["passed"].as_bool()), (Some("globex"), Some(false)), "{c}");
    assert!(c["mismatches"][0].as_str().is_some_and(|m| m.contains("expected body")), "{c}");

    // The human report names the failure; fixed, the directory passes.
    let run = weir(&["plugin", "test", wasm::ECHO_CONFIG, "--weir-config", &config, "--request", path]);
    assert!(run.stdout.contains("result    FAIL: expected body"), "{}", run.stdout);
    assert!(run.stdout.contains("3 case(s): 2 passed, 1 failed"), "{}", run.stdout);
    write("c-wrong.toml", "[config]\nregion = \"us\"\n[expect]\nverdict = \"accept\"\nbody = '{\"region\": \"us\"}'\n");
    let run = weir(&["plugin", "test", wasm::ECHO_CONFIG, "--weir-config", &config, "--request", path]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    // The command line wins over the case files: every case is expected to drop now.
    let run = weir(&["plugin", "test", wasm::ECHO_CONFIG, "--weir-config", &config, "--request", path, "--expect", "drop"]);
    assert_eq!(run.code, Some(1), "{}", run.text());
    assert!(run.stdout.contains("3 case(s): 0 passed, 3 failed"), "{}", run.stdout);
    // A component the host refuses ends the run before any case, as an upload would.
    let run = weir(&["plugin", "test", wasm::WRONG_WORLD, "--request", path]);
    assert_eq!(run.code, Some(5), "{}", run.text());
}

/// The customer's loop in a temporary directory: nothing the project
/// builds from may come from this repository.
#[test]
fn a_new_rust_project_builds_tests_and_checks_without_this_repository() {
    let (home, project) = new_project("acme-filter", "rust", &["vendor/weir-plugin-sdk/src/lib.rs"]);
    // Every path dependency stays inside the project.
    for manifest in walk(&project).iter().filter(|f| f.ends_with("Cargo.toml")) {
        let text = std::fs::read_to_string(manifest).expect("read");
        for line in text.lines().filter(|l| l.contains("path =")) {
            let rel = line.split("path = \"").nth(1).and_then(|r| r.split('"').next()).expect("a path value");
            let target = manifest.parent().expect("dir").join(rel).canonicalize().expect("the path exists");
            assert!(target.starts_with(project.canonicalize().expect("project")), "{} points outside: {line}", manifest.display());
        }
    }
    // A second project over the first is refused; a directory without one cannot be built.
    let run = weir_in(Some(home.path()), &["plugin", "new", "acme-filter", "--lang", "rust"]);
    assert_eq!(run.code, Some(2), "{}", run.text());
    assert!(run.stderr.contains("not empty"), "{}", run.stderr);
    let run = weir_in(Some(home.path()), &["plugin", "build"]);
    assert_eq!(run.code, Some(1), "{}", run.text());
    assert!(run.stderr.contains("is not a plugin project"), "{}", run.stderr);

    // Build with the project's own lock file, from the registry cache.
    let component = build_project(&project, &["--", "--locked", "--offline"]);
    assert_eq!(component, project.join("target/wasm32-wasip2/release/acme_filter.wasm"));
    test_and_check(home.path(), &project, &component);
}

/// The same loop in JavaScript: npm installs componentize-qjs from the
/// registry (at the version `plugins/js` pins), the unit test runs in
/// Node.js, the component under the gateway's host.
#[test]
fn a_new_javascript_project_builds_tests_and_checks_without_this_repository() {
    let (home, project) =
        new_project("acme-js", "js", &["weir/index.js", "weir/signature.js", "types/trigger-plugin.d.ts", "src/plugin.js"]);
    let component = build_project(&project, &[]);
    assert_eq!(component, project.join("dist/acme-js.wasm").canonicalize().expect("made"));
    run_in(&project, "npm", &["test"]);
    test_and_check(home.path(), &project, &component);
}

/// TypeScript: `npm run build` type-checks with tsc against the SDK's
/// typings and the WIT types, then componentizes the JavaScript tsc wrote.
#[test]
fn a_new_typescript_project_builds_tests_and_checks_without_this_repository() {
    let (home, project) =
        new_project("acme-ts", "ts", &["tsconfig.json", "src/plugin.ts", "weir/index.d.ts", "types/interfaces/weir-plugin-types.d.ts"]);
    let component = build_project(&project, &[]);
    assert_eq!(component, project.join("dist/acme-ts.wasm").canonicalize().expect("made"));
    run_in(&project, "npm", &["test"]);
    test_and_check(home.path(), &project, &component);
    // A type error stops the build before a component is made.
    let plugin = project.join("src/plugin.ts");
    let broken = std::fs::read_to_string(&plugin).expect("read").replace("return drop();", "return 42;");
    std::fs::write(&plugin, broken).expect("write");
    let out = build_command(&project, &[]).output().expect("run weir plugin build");
    assert!(!out.status.success(), "a type error must fail the build");
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty(), "no component path is printed");
}

/// Python: `weir plugin build` makes the project's `.venv` with the
/// hash-pinned componentize-py of `requirements.txt`.
#[test]
fn a_new_python_project_builds_tests_and_checks_without_this_repository() {
    let (home, project) =
        new_project("acme_py", "python", &["weir_plugin/__init__.py", "weir_plugin/signature.py", "app.py", "requirements.txt"]);
    let component = build_project(&project, &[]);
    assert_eq!(component, project.join("dist/acme_py.wasm").canonicalize().expect("made"));
    assert!(project.join(".venv/bin/componentize-py").is_file(), "the build made the project's venv");
    run_in(&project, "python3", &["-m", "unittest"]);
    test_and_check(home.path(), &project, &component);
}

/// `weir plugin new NAME --lang LANG` in a new temporary directory outside
/// the repository; checks the project holds `expected` and names nothing of
/// the repository.
fn new_project(name: &str, lang: &str, expected: &[&str]) -> (tempfile::TempDir, PathBuf) {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().expect("repo");
    let home = tempfile::tempdir().expect("tempdir");
    let project = home.path().join(name);
    assert!(!project.starts_with(&repo));
    let run = weir_in(Some(home.path()), &["plugin", "new", name, "--lang", lang]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    let files = walk(&project);
    assert!(files.iter().any(|f| f.ends_with("wit/plugin.wit")), "{files:?}");
    for e in expected {
        assert!(files.iter().any(|f| f.ends_with(e)), "{lang}: no {e} in {files:?}");
    }
    for f in &files {
        let text = String::from_utf8_lossy(&std::fs::read(f).expect("read")).into_owned();
        assert!(!text.contains(repo.to_str().expect("utf8")), "{} names the repository", f.display());
    }
    (home, project)
}

/// `weir plugin build` in `project`, without this build's settings.
fn build_command(project: &Path, args: &[&str]) -> Command {
    let mut build = Command::new(weir_bin());
    build.args(["plugin", "build"]).args(args).current_dir(project);
    // The outer build's settings are for the host target and this repository.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_BUILD_DIR",
    ] {
        build.env_remove(var);
    }
    build
}

/// Builds `project`; the one component path `weir plugin build` printed.
fn build_project(project: &Path, args: &[&str]) -> PathBuf {
    let out = build_command(project, args).output().expect("run weir plugin build");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weir plugin build failed: {stderr}");
    let component = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    assert!(component.is_file(), "{}: {stderr}", component.display());
    component
}

/// Runs the project's own unit tests with its language's tool.
fn run_in(project: &Path, program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).current_dir(project).output().expect("run the project's tests");
    assert!(out.status.success(), "{program} {args:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}

/// The sample cases pass under the gateway's host, with the JSON diff and
/// the log line the sample makes, and an upload would take the component.
fn test_and_check(home: &Path, project: &Path, component: &Path) {
    let component = component.to_str().expect("utf8");
    let config = roomy(home);
    let run = weir_in(Some(project), &["plugin", "test", component, "--request", "cases/", "--weir-config", &config, "--json"]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    let v = run.json();
    assert_eq!((v["passed"].as_u64(), v["failed"].as_u64()), (Some(3), Some(0)), "{v}");
    let accepted = v["cases"].as_array().expect("cases").iter().find(|c| c["verdict"] == "accept").expect("an accepted case");
    assert!(accepted["body"]["diff"].as_str().is_some_and(|d| d.contains("-  \"internal_note\"")), "{accepted}");
    assert!(accepted["logs"][0]["message"].as_str().is_some_and(|m| m.contains("issues event")), "{accepted}");
    let run = weir_in(Some(project), &["plugin", "check", component]);
    assert_eq!(run.code, Some(0), "{}", run.text());
    assert!(run.stdout.contains("OK, an upload would accept it"), "{}", run.stdout);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("ls").flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
