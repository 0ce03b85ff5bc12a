//! Python plugins: a project built by `componentize-py` (CPython and the
//! plugin's modules in one component), with the Weir SDK package copied
//! from this binary.
//!
//! ```text
//! NAME/
//!   pyproject.toml  requirements.txt  README.md  .gitignore
//!   app.py                           the plugin (a sample to edit)
//!   reshape.py                       its pure logic, unit-tested by `python3 -m unittest`
//!   test_reshape.py                  the unit test
//!   cases/*.http, cases/*.toml       sample requests for `weir plugin test`
//!   wit/plugin.wit                   the contract (weir:plugin@0.2.0)
//!   weir_plugin/                     the SDK package
//! ```
//!
//! `requirements.txt` is `plugins/python/requirements.txt` as built into
//! this binary: componentize-py pinned by hash, the version Weir's own
//! Python examples are built and tested with. `weir plugin build` makes a
//! virtualenv `.venv` with it when no `componentize-py` is found.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{CASES, File, Project, made_since, run_tool};

pub const BUILD_COMMAND: &str = "componentize-py -d wit -w trigger-plugin componentize app -o dist/NAME.wasm";

const WIT: &str = include_str!("../../../../../wit/plugin.wit");
const REQUIREMENTS: &str = include_str!("../../../../../plugins/python/requirements.txt");

/// The SDK package as this binary carries it, written under `weir_plugin/`.
pub(super) const SDK_SOURCES: &[(&str, &str)] = &[
    ("__init__.py", include_str!("../../../../../plugins/python/weir_plugin/__init__.py")),
    ("_native.py", include_str!("../../../../../plugins/python/weir_plugin/_native.py")),
    ("crypto.py", include_str!("../../../../../plugins/python/weir_plugin/crypto.py")),
    ("jsonc.py", include_str!("../../../../../plugins/python/weir_plugin/jsonc.py")),
    ("signature.py", include_str!("../../../../../plugins/python/weir_plugin/signature.py")),
    ("util.py", include_str!("../../../../../plugins/python/weir_plugin/util.py")),
];

const TEMPLATES: &[(&str, &str)] = &[
    ("pyproject.toml", include_str!("../templates/python/pyproject.toml.in")),
    ("README.md", include_str!("../templates/python/README.md.in")),
    (".gitignore", include_str!("../templates/python/gitignore.in")),
    ("app.py", include_str!("../templates/python/app.py.in")),
    ("reshape.py", include_str!("../templates/python/reshape.py.in")),
    ("test_reshape.py", include_str!("../templates/python/test_reshape.py.in")),
];

pub fn files(project: &Project) -> Result<Vec<File>, String> {
    let mut out: Vec<File> = TEMPLATES.iter().chain(CASES).map(|(path, t)| File::new(path, project.fill(t))).collect();
    out.push(File::new("requirements.txt", REQUIREMENTS));
    out.push(File::new("wit/plugin.wit", WIT));
    out.extend(SDK_SOURCES.iter().map(|(path, text)| File::new(&format!("weir_plugin/{path}"), *text)));
    Ok(out)
}

/// The project's name and module, from `pyproject.toml`.
fn project_of(dir: &Path) -> Result<(String, String), String> {
    let path = dir.join("pyproject.toml");
    let text = std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let table: toml::Table = text.parse().map_err(|e| format!("{}: {e}", path.display()))?;
    let name = table
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .ok_or_else(|| format!("{} has no [project] name", path.display()))?;
    let module = table.get("tool").and_then(|t| t.get("weir")).and_then(|w| w.get("module")).and_then(|m| m.as_str()).unwrap_or("app");
    Ok((name.to_string(), module.to_string()))
}

/// The `componentize-py` to build with: the project's `.venv`, else one on
/// `PATH`, else a new `.venv` with `requirements.txt` installed.
fn componentize_py(dir: &Path) -> Result<PathBuf, String> {
    let venv = dir.join(".venv/bin/componentize-py");
    if venv.is_file() {
        return Ok(venv);
    }
    if let Some(found) =
        std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|p| p.join("componentize-py")).find(|p| p.is_file()))
    {
        return Ok(found);
    }
    let python = Path::new("python3");
    run_tool(python, &["-m", "venv", ".venv"], dir, "install Python 3 with its venv module")?;
    let pip = dir.join(".venv/bin/pip");
    let args = ["install", "--disable-pip-version-check", "--require-hashes", "-r", "requirements.txt"];
    run_tool(&pip, &args, dir, "the virtualenv has no pip")?;
    Ok(venv)
}

pub fn build(dir: &Path, extra: &[String]) -> Result<Vec<PathBuf>, String> {
    let (name, module) = project_of(dir)?;
    let tool = componentize_py(dir)?;
    let component = format!("dist/{name}.wasm");
    std::fs::create_dir_all(dir.join("dist")).map_err(|e| format!("cannot create dist/: {e}"))?;
    let started = SystemTime::now();
    let mut args = vec!["-d", "wit", "-w", "trigger-plugin", "componentize"];
    args.extend(extra.iter().map(String::as_str));
    args.extend([module.as_str(), "-o", component.as_str()]);
    run_tool(&tool, &args, dir, "pip install componentize-py (requirements.txt)")?;
    Ok(vec![made_since(dir, &component, started)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sdk_file_is_carried() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/python/weir_plugin");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .expect("ls")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".py"))
            .collect();
        on_disk.sort();
        let mut known: Vec<String> = SDK_SOURCES.iter().map(|(p, _)| p.to_string()).collect();
        known.sort();
        assert_eq!(on_disk, known, "a module was added to or removed from plugins/python/weir_plugin: list it in SDK_SOURCES");
    }

    #[test]
    fn the_project_names_its_component_and_module() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pyproject.toml"), "[project]\nname = \"acme\"\n").expect("write");
        assert_eq!(project_of(dir.path()), Ok(("acme".into(), "app".into())));
        std::fs::write(dir.path().join("pyproject.toml"), "[project]\nname = \"acme\"\n[tool.weir]\nmodule = \"main\"\n").expect("write");
        assert_eq!(project_of(dir.path()), Ok(("acme".into(), "main".into())));
        std::fs::write(dir.path().join("pyproject.toml"), "[project]\n").expect("write");
        assert!(project_of(dir.path()).is_err_and(|e| e.contains("no [project] name")));
    }
}
