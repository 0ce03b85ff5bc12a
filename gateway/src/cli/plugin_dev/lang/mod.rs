//! `weir plugin new` and `weir plugin build`: one table of languages. A
//! language is a row: its name, the file that marks one of its projects,
//! the files of a new project (templates and what the weir binary carries:
//! the WIT, the SDK source), and how its toolchain builds a component.
//! Adding a language is adding a row and its templates.
//!
//! A new project needs nothing of the Weir repository: everything it
//! builds from is written into it from this binary.

mod js;
mod python;
mod rust;

use std::path::{Path, PathBuf};

/// One supported plugin language.
pub struct Language {
    /// The `--lang` value.
    pub name: &'static str,
    /// A file whose presence marks a project of this language (for `build`).
    pub marker: &'static str,
    /// The toolchain command that builds the component, as the README gives it.
    pub build_command: &'static str,
    /// Top-level directories of a new project that hold what this binary
    /// carries (the SDK, generated types), listed as one line each.
    pub carried: &'static [&'static str],
    /// The files of a new project, relative to its directory.
    pub files: fn(&Project) -> Result<Vec<File>, String>,
    /// Runs the toolchain in `dir` (with the user's extra arguments) and
    /// returns the components it made.
    pub build: fn(dir: &Path, extra: &[String]) -> Result<Vec<PathBuf>, String>,
}

/// The table. Detection (`build`) takes the first row whose marker exists,
/// so a more specific marker comes first (TypeScript's before JavaScript's).
pub const LANGUAGES: &[Language] = &[
    Language {
        name: "rust",
        marker: "Cargo.toml",
        build_command: rust::BUILD_COMMAND,
        carried: &["vendor"],
        files: rust::files,
        build: rust::build,
    },
    Language {
        name: "ts",
        marker: "tsconfig.json",
        build_command: js::BUILD_COMMAND,
        carried: &["weir", "types"],
        files: js::ts_files,
        build: js::build,
    },
    Language {
        name: "js",
        marker: "package.json",
        build_command: js::BUILD_COMMAND,
        carried: &["weir", "types"],
        files: js::js_files,
        build: js::build,
    },
    Language {
        name: "python",
        marker: "pyproject.toml",
        build_command: python::BUILD_COMMAND,
        carried: &["weir_plugin"],
        files: python::files,
        build: python::build,
    },
];

/// The sample requests of a new project, the same in every language: the
/// sample plugins behave alike, so one set of cases checks each.
const CASES: &[(&str, &str)] = &[
    ("cases/issue-opened.http", include_str!("../templates/cases/issue-opened.http")),
    ("cases/issue-opened.toml", include_str!("../templates/cases/issue-opened.toml")),
    ("cases/ping.http", include_str!("../templates/cases/ping.http")),
    ("cases/ping.toml", include_str!("../templates/cases/ping.toml")),
    ("cases/not-json.http", include_str!("../templates/cases/not-json.http")),
    ("cases/not-json.toml", include_str!("../templates/cases/not-json.toml")),
];

/// Runs one toolchain step in `dir`. Its output goes to stderr: stdout is
/// only the paths of the components made (`weir plugin test $(weir plugin
/// build)`). `install` says what to install when the program is missing.
fn run_tool(program: &Path, args: &[&str], dir: &Path, install: &str) -> Result<(), String> {
    let shown = std::iter::once(program.to_string_lossy()).chain(args.iter().map(|a| (*a).into())).collect::<Vec<_>>().join(" ");
    let status = std::process::Command::new(program)
        .args(args)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::io::stderr())
        .stderr(std::process::Stdio::inherit())
        .status()
        .map_err(|e| format!("cannot run `{shown}` ({e}); {install}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{shown}` failed ({status}; its messages are above)")) }
}

/// The component a build made at `path` (relative to `dir`), which must be
/// newer than `started`: an old file left by an earlier build is not this
/// build's result.
fn made_since(dir: &Path, path: &str, started: std::time::SystemTime) -> Result<PathBuf, String> {
    let file = dir.join(path);
    let modified = std::fs::metadata(&file).and_then(|m| m.modified()).map_err(|e| format!("the build made no {}: {e}", file.display()))?;
    if modified < started {
        return Err(format!("the build did not write {} (it is older than the build)", file.display()));
    }
    // Absolute, as cargo prints its artifacts: usable from any directory.
    file.canonicalize().map_err(|e| format!("{}: {e}", file.display()))
}

/// What a template is filled with.
pub struct Project {
    /// The project's (package's) name, as given to `weir plugin new`.
    pub name: String,
    /// The version of the weir binary that wrote it (and its SDK copy).
    pub weir_version: &'static str,
}

impl Project {
    /// `{{name}}`, `{{crate}}` (the name with `-` as `_`, as Rust and
    /// Python name modules) and `{{weir_version}}` replaced.
    pub fn fill(&self, template: &str) -> String {
        template
            .replace("{{name}}", &self.name)
            .replace("{{crate}}", &self.name.replace('-', "_"))
            .replace("{{weir_version}}", self.weir_version)
    }
}

/// A file of a new project.
pub struct File {
    pub path: PathBuf,
    pub contents: Vec<u8>,
}

impl File {
    pub fn new(path: &str, contents: impl Into<Vec<u8>>) -> File {
        File { path: PathBuf::from(path), contents: contents.into() }
    }
}

pub fn by_name(name: &str) -> Result<&'static Language, String> {
    LANGUAGES.iter().find(|l| l.name == name).ok_or_else(|| {
        let names: Vec<&str> = LANGUAGES.iter().map(|l| l.name).collect();
        format!("unknown --lang {name:?}; one of {}", names.join(", "))
    })
}

/// A plugin's name: what a package name may be in every language's
/// toolchain (Cargo's rule is the strictest: ASCII letters, digits, `-`
/// and `_`, starting with a letter).
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a plugin name: 1 to 64 ASCII letters, digits, '-' or '_', starting with a letter"))
    }
}

/// Writes a new project for `lang` into `dir` (which must not exist, or be
/// empty); returns the files written, relative to `dir`.
pub fn new_project(lang: &Language, name: &str, dir: &Path) -> Result<Vec<PathBuf>, String> {
    check_name(name)?;
    if dir.exists() && std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?.next().is_some() {
        return Err(format!("{} exists and is not empty; give a new directory (--dir)", dir.display()));
    }
    let project = Project { name: name.to_string(), weir_version: env!("CARGO_PKG_VERSION") };
    let files = (lang.files)(&project)?;
    for f in &files {
        let path = dir.join(&f.path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        }
        std::fs::write(&path, &f.contents).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(files.into_iter().map(|f| f.path).collect())
}

/// The language of the project in `dir`, by its marker file.
pub fn detect(dir: &Path) -> Result<&'static Language, String> {
    LANGUAGES.iter().find(|l| dir.join(l.marker).is_file()).ok_or_else(|| {
        let markers: Vec<String> = LANGUAGES.iter().map(|l| format!("{} ({})", l.marker, l.name)).collect();
        format!("{} is not a plugin project: it has none of {}", dir.display(), markers.join(", "))
    })
}

/// Builds the project in `dir`: the components it made.
pub fn build(dir: &Path, extra: &[String]) -> Result<(&'static Language, Vec<PathBuf>), String> {
    let lang = detect(dir)?;
    Ok((lang, (lang.build)(dir, extra)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_strictest_toolchain() {
        for ok in ["a", "my-plugin", "hmac_verify2"] {
            assert!(check_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "1abc", "-x", "a b", "../x", "a/b", "é", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_build_result_must_be_newer_than_the_build() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(made_since(dir.path(), "dist/x.wasm", std::time::SystemTime::now()).is_err_and(|e| e.contains("made no")));
        std::fs::create_dir(dir.path().join("dist")).expect("mkdir");
        std::fs::write(dir.path().join("dist/x.wasm"), b"old").expect("write");
        let later = std::time::SystemTime::now() + std::time::Duration::from_secs(60);
        assert!(made_since(dir.path(), "dist/x.wasm", later).is_err_and(|e| e.contains("older than the build")));
        let made = made_since(dir.path(), "dist/x.wasm", std::time::UNIX_EPOCH).expect("made");
        assert!(made.is_absolute() && made.ends_with("dist/x.wasm"), "{}", made.display());
    }

    #[test]
    fn every_language_is_named_and_found_by_its_marker() {
        for l in LANGUAGES {
            assert!(by_name(l.name).is_ok());
        }
        assert!(by_name("cobol").err().is_some_and(|e| e.contains("rust") && e.contains("python")));
        for (marker, lang) in [("Cargo.toml", "rust"), ("package.json", "js"), ("tsconfig.json", "ts"), ("pyproject.toml", "python")] {
            let dir = tempfile::tempdir().expect("tempdir");
            std::fs::write(dir.path().join(marker), "").expect("write");
            assert_eq!(detect(dir.path()).map(|l| l.name), Ok(lang), "{marker}");
        }
        // TypeScript's marker wins over package.json, which both have.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("package.json"), "").expect("write");
        std::fs::write(dir.path().join("tsconfig.json"), "").expect("write");
        assert_eq!(detect(dir.path()).map(|l| l.name), Ok("ts"));
    }
}
