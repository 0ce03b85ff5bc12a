//! Builds every plugin in `plugins/` for `wasm32-wasip2` and writes a
//! constant with the path of each component, so the gateway's tests always
//! run freshly built plugins (Spin's `tests/test-components` does the same).

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest_dir.join("../..");
    let plugins = root.join("plugins");
    // Not `plugins/` as a whole: its `target/` changes on every build.
    println!("cargo:rerun-if-changed={}", root.join("wit").display());
    for entry in std::fs::read_dir(&plugins).unwrap_or_else(|e| panic!("{}: {e}", plugins.display())).flatten() {
        let name = entry.file_name();
        if name != "target" {
            println!("cargo:rerun-if-changed={}", entry.path().display());
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"]).arg(plugins.join("Cargo.toml")).current_dir(&plugins);
    // The outer build's settings are for the host target, not for the guests.
    for var in ["CARGO_ENCODED_RUSTFLAGS", "RUSTFLAGS", "CARGO_TARGET_DIR", "CARGO_BUILD_TARGET", "RUSTC_WORKSPACE_WRAPPER"] {
        cmd.env_remove(var);
    }
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run cargo to build the test plugins: {e}"));
    if !status.success() {
        panic!(
            "building plugins/ for {TARGET} failed (see above). If the target is missing, run `rustup target add {TARGET}` \
             (./scripts/test.sh does this)."
        );
    }
    let out_dir = plugins.join("target").join(TARGET).join("release");
    let mut consts = String::new();
    for entry in std::fs::read_dir(&out_dir).unwrap_or_else(|e| panic!("{}: {e}", out_dir.display())) {
        let path = entry.expect("dir entry").path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_ascii_uppercase();
        consts.push_str(&format!("pub const {stem}: &str = {:?};\n", canonical(&path)));
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("components.rs");
    std::fs::write(&out, consts).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

fn canonical(p: &Path) -> String {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}
