//! Rust plugins: a Cargo project with the SDK vendored from this binary.
//!
//! ```text
//! NAME/
//!   Cargo.toml  Cargo.lock  README.md  .gitignore
//!   src/lib.rs                       the plugin (a sample to edit)
//!   cases/*.http, cases/*.toml       sample requests for `weir plugin test`
//!   wit/plugin.wit                   the contract (weir:plugin@0.2.0)
//!   vendor/weir-plugin-sdk/          the SDK, as this weir was built with it
//! ```
//!
//! The SDK's `generate!` reads `../../wit` from its own directory, which is
//! the project's `wit/`: its source is written unchanged. Its manifest and
//! the project's lock file are derived from the `plugins/` workspace this
//! binary was built from, so the project builds with the same dependency
//! versions the repository's own plugins are tested with.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{CASES, File, Project};

pub const BUILD_COMMAND: &str = "cargo build --release --target wasm32-wasip2";

const TARGET: &str = "wasm32-wasip2";
/// Where the SDK goes in a project (the WIT is then at `../../wit` from it).
const SDK_DIR: &str = "vendor/weir-plugin-sdk";

/// The SDK's sources, as built into this binary. `vectors.rs` is left out:
/// it is compiled only for the SDK's own tests, and reads files of the
/// repository.
const SDK_SOURCES: &[(&str, &str)] = &[
    ("src/lib.rs", include_str!("../../../../../plugins/sdk/src/lib.rs")),
    ("src/crypto.rs", include_str!("../../../../../plugins/sdk/src/crypto.rs")),
    ("src/signature/mod.rs", include_str!("../../../../../plugins/sdk/src/signature/mod.rs")),
    ("src/signature/github.rs", include_str!("../../../../../plugins/sdk/src/signature/github.rs")),
    ("src/signature/shopify.rs", include_str!("../../../../../plugins/sdk/src/signature/shopify.rs")),
    ("src/signature/slack.rs", include_str!("../../../../../plugins/sdk/src/signature/slack.rs")),
    ("src/signature/standard_webhooks.rs", include_str!("../../../../../plugins/sdk/src/signature/standard_webhooks.rs")),
    ("src/signature/stripe.rs", include_str!("../../../../../plugins/sdk/src/signature/stripe.rs")),
];
const SDK_MANIFEST: &str = include_str!("../../../../../plugins/sdk/Cargo.toml");
/// The plugins workspace: its `[workspace.dependencies]` and lock file pin
/// what the SDK builds with.
const WORKSPACE_MANIFEST: &str = include_str!("../../../../../plugins/Cargo.toml");
const WORKSPACE_LOCK: &str = include_str!("../../../../../plugins/Cargo.lock");
const WIT: &str = include_str!("../../../../../wit/plugin.wit");

/// The project's own dependencies besides the SDK (the sample parses JSON).
const PROJECT_DEPS: &[&str] = &["serde_json"];

const TEMPLATES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../templates/rust/Cargo.toml.in")),
    ("README.md", include_str!("../templates/rust/README.md.in")),
    (".gitignore", include_str!("../templates/rust/gitignore.in")),
    ("src/lib.rs", include_str!("../templates/rust/lib.rs.in")),
];

pub fn files(project: &Project) -> Result<Vec<File>, String> {
    let workspace = parse(WORKSPACE_MANIFEST, "plugins/Cargo.toml")?;
    let mut out: Vec<File> = TEMPLATES.iter().chain(CASES).map(|(path, t)| File::new(path, project.fill(t))).collect();
    // The project's dependency lines, from the workspace's pins.
    let deps = PROJECT_DEPS.iter().map(|d| dependency_line(&workspace, d)).collect::<Result<Vec<_>, _>>()?.join("\n");
    if let Some(manifest) = out.iter_mut().find(|f| f.path == Path::new("Cargo.toml")) {
        manifest.contents = String::from_utf8_lossy(&manifest.contents).replace("{{dependencies}}", &deps).into_bytes();
    }
    out.push(File::new("Cargo.lock", lock_file(&project.name)?));
    out.push(File::new("wit/plugin.wit", WIT));
    out.push(File::new(&format!("{SDK_DIR}/Cargo.toml"), sdk_manifest(&workspace, project)?));
    out.extend(SDK_SOURCES.iter().map(|(path, text)| File::new(&format!("{SDK_DIR}/{path}"), *text)));
    Ok(out)
}

fn parse(text: &str, what: &str) -> Result<toml::Table, String> {
    text.parse::<toml::Table>().map_err(|e| format!("the {what} built into this weir does not parse: {e}"))
}

/// The SDK's `[dependencies]` names.
fn sdk_dependencies() -> Result<Vec<String>, String> {
    let sdk = parse(SDK_MANIFEST, "plugins/sdk/Cargo.toml")?;
    Ok(sdk.get("dependencies").and_then(|d| d.as_table()).map(|t| t.keys().cloned().collect()).unwrap_or_default())
}

/// `name = <spec>` as `[workspace.dependencies]` pins it.
fn dependency_line(workspace: &toml::Table, name: &str) -> Result<String, String> {
    let spec = workspace
        .get("workspace")
        .and_then(|w| w.get("dependencies"))
        .and_then(|d| d.get(name))
        .ok_or_else(|| format!("plugins/Cargo.toml built into this weir does not pin {name}"))?;
    Ok(format!("{name} = {}", inline(spec)))
}

/// A TOML value on one line (the dependency specs: strings, booleans,
/// arrays and tables of those).
fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => format!("{s:?}"),
        toml::Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        toml::Value::Table(t) => {
            // `version` first, as people write it.
            let (version, rest): (Vec<_>, Vec<_>) = t.iter().partition(|(k, _)| *k == "version");
            let items: Vec<String> = version.into_iter().chain(rest).map(|(k, v)| format!("{k} = {}", inline(v))).collect();
            format!("{{ {} }}", items.join(", "))
        }
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Float(f) => f.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
    }
}

/// The vendored SDK's manifest: the SDK's own, with the workspace's
/// inherited fields and dependency pins written out (it is no workspace
/// member in the project) and without its dev-dependencies (its tests stay
/// in the Weir repository).
fn sdk_manifest(workspace: &toml::Table, project: &Project) -> Result<String, String> {
    let sdk = parse(SDK_MANIFEST, "plugins/sdk/Cargo.toml")?;
    let package = sdk.get("package").and_then(|p| p.as_table()).ok_or("plugins/sdk/Cargo.toml has no [package]")?;
    let field = |k: &str| -> Result<String, String> {
        match package.get(k) {
            Some(toml::Value::String(s)) => Ok(s.clone()),
            // `k.workspace = true`: the workspace's value.
            _ => workspace
                .get("workspace")
                .and_then(|w| w.get("package"))
                .and_then(|p| p.get(k))
                .and_then(|v| v.as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("plugins/Cargo.toml built into this weir has no workspace.package.{k}")),
        }
    };
    let mut out = format!(
        "# The Weir plugin SDK, written by weir {} (`weir plugin new`) from the source it was built with.\n\
         # Do not edit: a newer weir writes a newer copy (see the project's README).\n\
         [package]\nname = {:?}\nversion = {:?}\nedition = {:?}\nrust-version = {:?}\nlicense = {:?}\npublish = false\n\n[dependencies]\n",
        project.weir_version,
        field("name")?,
        field("version")?,
        field("edition")?,
        field("rust-version")?,
        field("license")?,
    );
    for dep in sdk_dependencies()? {
        out.push_str(&dependency_line(workspace, &dep)?);
        out.push('\n');
    }
    Ok(out)
}

/// One `[[package]]` of a lock file.
#[derive(Debug, Clone)]
struct Locked {
    name: String,
    version: String,
    source: Option<String>,
    checksum: Option<String>,
    dependencies: Vec<String>,
}

/// The project's Cargo.lock: the project, the SDK, and every registry
/// package they reach, at the versions the plugins workspace locks.
fn lock_file(project: &str) -> Result<String, String> {
    let lock = parse(WORKSPACE_LOCK, "plugins/Cargo.lock")?;
    let packages: Vec<Locked> = lock
        .get("package")
        .and_then(|p| p.as_array())
        .ok_or("plugins/Cargo.lock has no packages")?
        .iter()
        .filter_map(|p| {
            let s = |k: &str| p.get(k).and_then(|v| v.as_str()).map(str::to_string);
            let deps =
                p.get("dependencies").and_then(|d| d.as_array()).map(|a| a.iter().filter_map(|d| d.as_str().map(str::to_string)).collect());
            Some(Locked {
                name: s("name")?,
                version: s("version")?,
                source: s("source"),
                checksum: s("checksum"),
                dependencies: deps.unwrap_or_default(),
            })
        })
        .collect();
    let find = |reference: &str| -> Result<&Locked, String> {
        let mut parts = reference.split(' ');
        let (name, version) = (parts.next().unwrap_or_default(), parts.next());
        let mut matches = packages.iter().filter(|p| p.name == name && version.is_none_or(|v| p.version == v));
        match (matches.next(), matches.next()) {
            (Some(p), None) => Ok(p),
            _ => Err(format!("plugins/Cargo.lock built into this weir has no single package {reference:?}")),
        }
    };
    let sdk_deps = sdk_dependencies()?;
    let sdk = find("weir-plugin-sdk")?;
    // The SDK's entry lists its dev-dependencies too: keep its normal ones.
    let sdk_refs: Vec<String> =
        sdk.dependencies.iter().filter(|d| sdk_deps.iter().any(|n| d.split(' ').next() == Some(n))).cloned().collect();
    let mut chosen: BTreeMap<(String, String), Locked> = BTreeMap::new();
    let mut todo: Vec<String> = sdk_refs.clone();
    todo.extend(PROJECT_DEPS.iter().map(|d| d.to_string()));
    while let Some(reference) = todo.pop() {
        let p = find(&reference)?;
        if chosen.insert((p.name.clone(), p.version.clone()), p.clone()).is_none() {
            todo.extend(p.dependencies.iter().cloned());
        }
    }
    let mut root_refs: Vec<String> = PROJECT_DEPS.iter().map(|d| d.to_string()).collect();
    root_refs.push("weir-plugin-sdk".into());
    let root = Locked { name: project.into(), version: "0.1.0".into(), source: None, checksum: None, dependencies: root_refs };
    let sdk = Locked { dependencies: sdk_refs, ..sdk.clone() };
    for p in [root, sdk] {
        chosen.insert((p.name.clone(), p.version.clone()), p);
    }
    // A reference names the version only when the lock holds several of that name.
    let versions: BTreeMap<&str, usize> = chosen.keys().fold(BTreeMap::new(), |mut m, (n, _)| {
        *m.entry(n.as_str()).or_default() += 1;
        m
    });
    let mut out =
        String::from("# This file is automatically @generated by Cargo.\n# It is not intended for manual editing.\nversion = 4\n");
    for p in chosen.values() {
        out.push_str(&format!("\n[[package]]\nname = {:?}\nversion = {:?}\n", p.name, p.version));
        if let Some(s) = &p.source {
            out.push_str(&format!("source = {s:?}\n"));
        }
        if let Some(c) = &p.checksum {
            out.push_str(&format!("checksum = {c:?}\n"));
        }
        let refs: BTreeSet<String> = p
            .dependencies
            .iter()
            .map(|r| {
                let l = find(r).map_or_else(|_| (r.clone(), String::new()), |l| (l.name.clone(), l.version.clone()));
                if versions.get(l.0.as_str()).copied().unwrap_or(0) > 1 { format!("{} {}", l.0, l.1) } else { l.0 }
            })
            .collect();
        if !refs.is_empty() {
            out.push_str("dependencies = [\n");
            for r in refs {
                out.push_str(&format!(" {r:?},\n"));
            }
            out.push_str("]\n");
        }
    }
    Ok(out)
}

/// `cargo build --release --target wasm32-wasip2` (plus the user's extra
/// arguments) in `dir`; the `.wasm` files of the cdylibs it built, as
/// cargo reports them (so `CARGO_TARGET_DIR` and workspaces work).
pub fn build(dir: &Path, extra: &[String]) -> Result<Vec<PathBuf>, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.args(["build", "--release", "--target", TARGET, "--message-format", "json-render-diagnostics"])
        .args(extra)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let out = cmd.output().map_err(|e| format!("cannot run {} ({e}); install Rust from https://rustup.rs", cargo.to_string_lossy()))?;
    if !out.status.success() {
        return Err(format!(
            "`{BUILD_COMMAND}` failed ({}; its messages are above). If the target is missing: rustup target add {TARGET}",
            out.status
        ));
    }
    let wasm = components(&String::from_utf8_lossy(&out.stdout));
    if wasm.is_empty() {
        return Err(format!("`{BUILD_COMMAND}` built no component: the package needs `[lib] crate-type = [\"cdylib\"]`"));
    }
    Ok(wasm)
}

/// The `.wasm` files of the cdylib artifacts in cargo's JSON messages.
fn components(messages: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for line in messages.lines() {
        let Ok(m) = serde_json::from_str::<serde_json::Value>(line) else { continue };
        let cdylib = m["target"]["kind"].as_array().is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if m["reason"] != "compiler-artifact" || !cdylib {
            continue;
        }
        let files = m["filenames"].as_array().into_iter().flatten().filter_map(|f| f.as_str());
        out.extend(files.filter(|f| f.ends_with(".wasm")).map(PathBuf::from));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Left out of the vendored SDK on purpose (see `SDK_SOURCES`).
    const SDK_TEST_ONLY: &[&str] = &["src/signature/vectors.rs"];

    fn sdk_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk")
    }

    #[test]
    fn every_sdk_source_file_is_vendored_or_named_as_test_only() {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).expect("ls").flatten() {
                let p = e.path();
                if p.is_dir() {
                    walk(&p, base, out);
                } else {
                    out.push(p.strip_prefix(base).expect("under").display().to_string());
                }
            }
        }
        let mut on_disk = Vec::new();
        walk(&sdk_dir().join("src"), &sdk_dir(), &mut on_disk);
        on_disk.sort();
        let mut known: Vec<String> =
            SDK_SOURCES.iter().map(|(p, _)| p.to_string()).chain(SDK_TEST_ONLY.iter().map(|p| p.to_string())).collect();
        known.sort();
        assert_eq!(on_disk, known, "a file was added to or removed from plugins/sdk/src: list it in SDK_SOURCES (or SDK_TEST_ONLY)");
        // The test-only file is only compiled for tests.
        let signature = std::fs::read_to_string(sdk_dir().join("src/signature/mod.rs")).expect("read");
        assert!(signature.contains("#[cfg(test)]\nmod vectors;"));
    }

    #[test]
    fn the_sdk_reads_the_wit_where_the_project_puts_it() {
        let lib = SDK_SOURCES.iter().find(|(p, _)| *p == "src/lib.rs").expect("lib.rs").1;
        assert!(lib.contains("path: \"../../wit\""), "the SDK's generate! path changed: move wit/ in the project to match");
        assert!(Path::new(SDK_DIR).join("../../wit").components().count() == 5);
    }

    #[test]
    fn the_lock_file_pins_the_workspace_versions_and_the_manifest_has_no_outside_path() {
        let project = Project { name: "my-plugin".into(), weir_version: "9.9.9" };
        let files = files(&project).expect("files");
        let text = |p: &str| String::from_utf8(files.iter().find(|f| f.path == Path::new(p)).expect(p).contents.clone()).expect("utf8");
        let lock = text("Cargo.lock");
        let parsed = lock.parse::<toml::Table>().expect("lock parses");
        let names: Vec<&str> = parsed["package"].as_array().expect("packages").iter().map(|p| p["name"].as_str().expect("name")).collect();
        for must in ["my-plugin", "weir-plugin-sdk", "wit-bindgen", "hmac", "sha2", "serde_json"] {
            assert!(names.contains(&must), "{must} missing from {names:?}");
        }
        assert!(!names.contains(&"passthrough"), "only what the project reaches");
        let manifest = text("Cargo.toml");
        assert!(
            manifest.contains("name = \"my-plugin\"") && manifest.contains("weir-plugin-sdk = { path = \"vendor/weir-plugin-sdk\" }"),
            "{manifest}"
        );
        assert!(!manifest.contains("{{"), "{manifest}");
        let sdk = text("vendor/weir-plugin-sdk/Cargo.toml");
        assert!(sdk.contains("wit-bindgen = { version = ") && !sdk.contains("workspace") && !sdk.contains("serde_json"), "{sdk}");
        assert!(text("README.md").contains("target/wasm32-wasip2/release/my_plugin.wasm"));
    }

    #[test]
    fn components_come_from_cargo_messages() {
        let messages = r#"{"reason":"compiler-artifact","target":{"kind":["lib"]},"filenames":["/t/libweir_plugin_sdk.rlib"]}
{"reason":"compiler-artifact","target":{"kind":["cdylib"]},"filenames":["/t/wasm32-wasip2/release/my_plugin.wasm"]}
not json
{"reason":"build-finished","success":true}"#;
        assert_eq!(components(messages), vec![PathBuf::from("/t/wasm32-wasip2/release/my_plugin.wasm")]);
    }
}
