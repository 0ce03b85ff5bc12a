//! JavaScript and TypeScript plugins: an npm project whose toolchain is
//! `componentize-qjs` (the QuickJS engine, wizened with the plugin's code
//! into one component), with the Weir SDK copied from this binary.
//!
//! ```text
//! NAME/
//!   package.json  README.md  .gitignore   (+ tsconfig.json for TypeScript)
//!   src/plugin.js|ts                 the plugin (a sample to edit)
//!   src/reshape.js|ts                its pure logic, unit-tested by `npm test`
//!   test/reshape.test.js             the unit test (node --test)
//!   cases/*.http, cases/*.toml       sample requests for `weir plugin test`
//!   wit/plugin.wit                   the contract (weir:plugin@0.2.0)
//!   weir/                            the SDK (ES modules, typings)
//!   types/                           the WIT world's types (jco guest-types)
//! ```
//!
//! The toolchain versions are the ones `plugins/js/package.json` pins for
//! Weir's own JavaScript examples, read from the copy built into this
//! binary. `package.json` names the component under `weir.component`, which
//! is how `weir plugin build` finds it.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::{CASES, File, Project, made_since, run_tool};

pub const BUILD_COMMAND: &str = "npm install && npm run build";

const WIT: &str = include_str!("../../../../../wit/plugin.wit");
/// The examples' package manifest: its pins are the scaffold's.
const PACKAGE: &str = include_str!("../../../../../plugins/js/package.json");

/// The SDK as this binary carries it, written under `weir/`.
pub(super) const SDK_SOURCES: &[(&str, &str)] = &[
    ("index.js", include_str!("../../../../../plugins/js/sdk/index.js")),
    ("index.d.ts", include_str!("../../../../../plugins/js/sdk/index.d.ts")),
    ("crypto.js", include_str!("../../../../../plugins/js/sdk/crypto.js")),
    ("json.js", include_str!("../../../../../plugins/js/sdk/json.js")),
    ("signature.js", include_str!("../../../../../plugins/js/sdk/signature.js")),
    ("trigger.js", include_str!("../../../../../plugins/js/sdk/trigger.js")),
];

/// The WIT world's TypeScript types (`jco guest-types`, committed in
/// `plugins/js/types`), written under `types/`: the SDK's typings refer to
/// them as `../types/trigger-plugin.d.ts`.
const TYPES: &[(&str, &str)] = &[
    ("trigger-plugin.d.ts", include_str!("../../../../../plugins/js/types/trigger-plugin.d.ts")),
    ("interfaces/weir-plugin-host.d.ts", include_str!("../../../../../plugins/js/types/interfaces/weir-plugin-host.d.ts")),
    ("interfaces/weir-plugin-types.d.ts", include_str!("../../../../../plugins/js/types/interfaces/weir-plugin-types.d.ts")),
];

const JS_TEMPLATES: &[(&str, &str)] = &[
    ("package.json", include_str!("../templates/js/package.json.in")),
    ("README.md", include_str!("../templates/js/README.md.in")),
    (".gitignore", include_str!("../templates/js/gitignore.in")),
    ("src/plugin.js", include_str!("../templates/js/plugin.js.in")),
    ("src/reshape.js", include_str!("../templates/js/reshape.js.in")),
    ("test/reshape.test.js", include_str!("../templates/js/reshape.test.js.in")),
];

const TS_TEMPLATES: &[(&str, &str)] = &[
    ("package.json", include_str!("../templates/ts/package.json.in")),
    ("tsconfig.json", include_str!("../templates/ts/tsconfig.json.in")),
    ("README.md", include_str!("../templates/ts/README.md.in")),
    (".gitignore", include_str!("../templates/js/gitignore.in")),
    ("src/plugin.ts", include_str!("../templates/ts/plugin.ts.in")),
    ("src/reshape.ts", include_str!("../templates/ts/reshape.ts.in")),
    ("test/reshape.test.js", include_str!("../templates/ts/reshape.test.js.in")),
];

pub fn js_files(project: &Project) -> Result<Vec<File>, String> {
    files(project, JS_TEMPLATES)
}

pub fn ts_files(project: &Project) -> Result<Vec<File>, String> {
    files(project, TS_TEMPLATES)
}

fn files(project: &Project, templates: &[(&str, &str)]) -> Result<Vec<File>, String> {
    // npm refuses upper-case package names; say so before writing anything.
    if project.name.chars().any(|c| c.is_ascii_uppercase()) {
        return Err(format!("{:?}: npm package names are lower case; try {:?}", project.name, project.name.to_ascii_lowercase()));
    }
    let pins = Pins::of(PACKAGE)?;
    let mut out: Vec<File> = templates.iter().chain(CASES).map(|(path, t)| File::new(path, pins.fill(&project.fill(t)))).collect();
    out.push(File::new("wit/plugin.wit", WIT));
    out.extend(SDK_SOURCES.iter().map(|(path, text)| File::new(&format!("weir/{path}"), *text)));
    out.extend(TYPES.iter().map(|(path, text)| File::new(&format!("types/{path}"), *text)));
    Ok(out)
}

/// The toolchain versions of `plugins/js/package.json`.
struct Pins {
    componentize_qjs: String,
    typescript: String,
}

impl Pins {
    fn of(package: &str) -> Result<Pins, String> {
        let v: serde_json::Value =
            serde_json::from_str(package).map_err(|e| format!("the plugins/js/package.json built into this weir does not parse: {e}"))?;
        let pin = |name: &str| -> Result<String, String> {
            ["devDependencies", "dependencies"]
                .iter()
                .find_map(|section| v[section][name].as_str())
                .map(str::to_string)
                .ok_or_else(|| format!("the plugins/js/package.json built into this weir does not pin {name}"))
        };
        Ok(Pins { componentize_qjs: pin("componentize-qjs")?, typescript: pin("typescript")? })
    }

    fn fill(&self, template: &str) -> String {
        template.replace("{{componentize_qjs}}", &self.componentize_qjs).replace("{{typescript}}", &self.typescript)
    }
}

/// `npm ci` (or `npm install` without a lock file) when `node_modules` is
/// missing, then `npm run build`; the component is `weir.component` of
/// `package.json`.
pub fn build(dir: &Path, extra: &[String]) -> Result<Vec<PathBuf>, String> {
    let manifest = std::fs::read_to_string(dir.join("package.json")).map_err(|e| format!("{}: {e}", dir.join("package.json").display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest).map_err(|e| format!("package.json is not JSON: {e}"))?;
    let component = manifest["weir"]["component"]
        .as_str()
        .ok_or("package.json has no \"weir\": {\"component\": \"dist/NAME.wasm\"}: where the build writes the component")?
        .to_string();
    let npm = Path::new("npm");
    let install = "install Node.js and npm (https://nodejs.org)";
    if !dir.join("node_modules").is_dir() {
        let how = if dir.join("package-lock.json").is_file() { "ci" } else { "install" };
        run_tool(npm, &[how, "--no-audit", "--no-fund"], dir, install)?;
    }
    let started = SystemTime::now();
    let mut args = vec!["run", "build"];
    if !extra.is_empty() {
        args.push("--");
        args.extend(extra.iter().map(String::as_str));
    }
    run_tool(npm, &args, dir, install)?;
    Ok(vec![made_since(dir, &component, started)?])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdk_dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../plugins/js/sdk")
    }

    #[test]
    fn every_sdk_file_is_carried() {
        let mut on_disk: Vec<String> =
            std::fs::read_dir(sdk_dir()).expect("ls").flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
        on_disk.sort();
        let mut known: Vec<String> = SDK_SOURCES.iter().map(|(p, _)| p.to_string()).collect();
        known.sort();
        assert_eq!(on_disk, known, "a file was added to or removed from plugins/js/sdk: list it in SDK_SOURCES");
        // And every generated WIT type file, which the SDK's typings refer to.
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).expect("ls").flatten() {
                if e.path().is_dir() {
                    walk(&e.path(), base, out);
                } else {
                    out.push(e.path().strip_prefix(base).expect("under").display().to_string());
                }
            }
        }
        let types = sdk_dir().join("../types");
        let mut on_disk = Vec::new();
        walk(&types, &types, &mut on_disk);
        on_disk.sort();
        let mut known: Vec<String> = TYPES.iter().map(|(p, _)| p.to_string()).collect();
        known.sort();
        assert_eq!(on_disk, known, "a file was added to or removed from plugins/js/types: list it in TYPES");
    }

    #[test]
    fn the_scaffolds_pin_the_examples_toolchain() {
        let pins = Pins::of(PACKAGE).expect("pins");
        let project = Project { name: "acme".into(), weir_version: "0" };
        for files in [js_files(&project).expect("js"), ts_files(&project).expect("ts")] {
            let package = files.iter().find(|f| f.path == Path::new("package.json")).expect("package.json");
            let package: serde_json::Value = serde_json::from_slice(&package.contents).expect("the template is JSON once filled");
            assert_eq!(package["devDependencies"]["componentize-qjs"], pins.componentize_qjs.as_str());
            assert_eq!(package["weir"]["component"], "dist/acme.wasm");
            let ours = files.iter().filter(|f| !f.path.starts_with("weir") && !f.path.starts_with("types"));
            assert!(ours.clone().count() >= 8);
            for f in ours {
                assert!(!String::from_utf8_lossy(&f.contents).contains("{{"), "a placeholder is left in {}", f.path.display());
            }
        }
        assert!(Pins::of("{}").is_err());
        // A package.json that does not say where the component goes is
        // refused before npm runs.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("package.json"), r#"{"name":"x","scripts":{"build":"exit 1"}}"#).expect("write");
        assert!(build(dir.path(), &[]).is_err_and(|e| e.contains("\"weir\": {\"component\"")));
        std::fs::write(dir.path().join("package.json"), "not json").expect("write");
        assert!(build(dir.path(), &[]).is_err_and(|e| e.contains("package.json is not JSON")));
        let upper = Project { name: "Acme".into(), weir_version: "0" };
        assert!(js_files(&upper).err().is_some_and(|e| e.contains("lower case") && e.contains("\"acme\"")));
    }
}
