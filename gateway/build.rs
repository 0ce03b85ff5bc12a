//! Names the commit `weir --version` reports: `WEIR_BUILD_COMMIT` when the
//! packager sets it, else `git rev-parse` of the checkout, else "unknown"
//! (a source tarball has no `.git`; it must still build). Emitted as
//! `GATEWAY_BUILD_COMMIT`: cargo also sets it when it runs the binary and
//! its tests, and a `WEIR_*` name would read as a config override there.

use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git").arg("-C").arg(dir).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-env-changed=WEIR_BUILD_COMMIT");
    let dir = std::env::var("CARGO_MANIFEST_DIR").map(std::path::PathBuf::from).unwrap_or_default();
    let commit = match std::env::var("WEIR_BUILD_COMMIT") {
        Ok(c) if !c.trim().is_empty() => c.trim().to_string(),
        _ => git(&dir, &["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into()),
    };
    // Rebuilt when HEAD moves: HEAD itself (a checkout), the branch it points
    // at (a commit) and packed-refs (a gc). Paths come from git, so a worktree works.
    // (A path that does not exist would make cargo rerun this on every build.)
    let branch = git(&dir, &["symbolic-ref", "-q", "HEAD"]);
    for name in ["HEAD", "packed-refs"].into_iter().chain(branch.as_deref()) {
        if let Some(path) = git(&dir, &["rev-parse", "--path-format=absolute", "--git-path", name])
            && Path::new(&path).exists()
        {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    println!("cargo:rustc-env=GATEWAY_BUILD_COMMIT={commit}");
}
