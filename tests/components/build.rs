//! Builds every plugin in `plugins/` for `wasm32-wasip2` and writes a
//! constant with the path of each component, so the gateway's tests always
//! run freshly built plugins (Spin's `tests/test-components` does the same).
//! Also makes the random valid core modules (`wasm-smith`) that the upload
//! fuzz test feeds to the real upload path.

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
        // js/ and python/ are not crates: `other_languages` watches them.
        if name != "target" && name != "js" && name != "python" {
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
    let mut consts = wasm_consts(&plugins.join("target").join(TARGET).join("release"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    consts.push_str(&random_modules(&out_dir));
    consts.push_str(&world_components(&root, &out_dir));
    consts.push_str(&other_languages(&plugins, &out_dir));
    let out = out_dir.join("components.rs");
    std::fs::write(&out, consts).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
}

/// Modules made when `PROPTEST_CASES` is not set (CI), and the most made when it is.
const CI_MODULES: u64 = 100;
const MAX_MODULES: u64 = 2_000;

/// Writes random valid core modules to one file (each a u32 LE length and
/// the module) and returns the constants naming it and its seed. Made here,
/// in a build script, because wasm-smith turns on `arbitrary/derive`: as a
/// dev-dependency that feature would reach cranelift's `arbitrary` and
/// rebuild wasmtime for every test build; build dependencies keep their own.
/// `PROPTEST_CASES` sets the count (a longer run, docs/operations.md) and
/// `PROPTEST_RNG_SEED` the seed; otherwise every build draws a new seed.
fn random_modules(out_dir: &Path) -> String {
    println!("cargo:rerun-if-env-changed=PROPTEST_CASES");
    println!("cargo:rerun-if-env-changed=PROPTEST_RNG_SEED");
    let count = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse::<u64>().ok()).map_or(CI_MODULES, |c| c.min(MAX_MODULES));
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64));
    let mut rng = SplitMix(seed);
    let mut file = Vec::new();
    let mut made = 0;
    while made < count {
        let mut raw = vec![0u8; 256 + (rng.next_u64() % 8192) as usize];
        raw.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        let mut u = arbitrary::Unstructured::new(&raw);
        let Ok(module) = wasm_smith::Module::new(module_config(made), &mut u) else { continue };
        let bytes = module.to_bytes();
        file.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        file.extend_from_slice(&bytes);
        made += 1;
    }
    let path = out_dir.join("random-modules.bin");
    std::fs::write(&path, file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!(
        "/// Random valid core modules (u32 LE length, module), made by wasm-smith from [`RANDOM_MODULES_SEED`].\n\
         pub const RANDOM_MODULES: &str = {:?};\npub const RANDOM_MODULES_SEED: u64 = {seed};\n",
        canonical(&path)
    )
}

/// Three in four modules keep to the proposals Weir's engine enables, so
/// they reach the compiler; the rest use wasm-smith's defaults (GC,
/// exceptions, threads...), which the engine must refuse clearly. (Without
/// wasmtime's `gc` feature even `externref` is refused, so reference types
/// go too.)
fn module_config(i: u64) -> wasm_smith::Config {
    let mut c = wasm_smith::Config::default();
    if i % 4 != 3 {
        c.gc_enabled = false;
        c.exceptions_enabled = false;
        c.threads_enabled = false;
        c.memory64_enabled = false;
        c.reference_types_enabled = false;
    }
    c.max_memory32_bytes = 64 << 20;
    c
}

/// A small, well-known PRNG (no crate for it in a build script).
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn canonical(p: &Path) -> String {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).display().to_string()
}

/// Random components of Weir's `trigger-plugin` world (wit/plugin.wit): a
/// wasm-smith module that must export `handle`, `cabi_realloc` and `memory`
/// with the lowered signatures and may import the host functions, made into a
/// component by wit-component (what `cargo component` and wit-bindgen do).
/// Their bodies are random: they activate, and their calls trap, loop or
/// return anything. The same count and seed rules as [`random_modules`].
fn world_components(root: &Path, out_dir: &Path) -> String {
    use wit_parser::abi::{AbiVariant, WasmType};
    use wit_parser::{Resolve, WorldItem, WorldKey};
    let count = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse::<u64>().ok()).map_or(CI_MODULES / 2, |c| c.min(MAX_MODULES));
    let seed = std::env::var("PROPTEST_RNG_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64))
        ^ 0x5eed;
    let mut resolve = Resolve::default();
    let wit = root.join("wit").join("plugin.wit");
    let package = resolve.push_file(&wit).unwrap_or_else(|e| panic!("{}: {e:#}", wit.display()));
    let world = resolve.select_world(&[package], Some("trigger-plugin")).expect("the trigger-plugin world");
    let val = |t: &WasmType| match t {
        WasmType::I64 | WasmType::PointerOrI64 => wasm_encoder::ValType::I64,
        WasmType::F32 => wasm_encoder::ValType::F32,
        WasmType::F64 => wasm_encoder::ValType::F64,
        _ => wasm_encoder::ValType::I32,
    };
    let signature = |variant, f| {
        let sig = resolve.wasm_signature(variant, f);
        (sig.params.iter().map(val).collect::<Vec<_>>(), sig.results.iter().map(val).collect::<Vec<_>>())
    };
    // What the module must export, and what it may import.
    let mut exports = Vec::new();
    for (key, item) in &resolve.worlds[world].exports {
        if let (WorldKey::Name(name), WorldItem::Function(f)) = (key, item) {
            exports.push((name.clone(), signature(AbiVariant::GuestExport, f)));
        }
    }
    let i32 = wasm_encoder::ValType::I32;
    exports.push(("cabi_realloc".into(), (vec![i32; 4], vec![i32])));
    let mut imports = Vec::new();
    for (key, item) in &resolve.worlds[world].imports {
        if let WorldItem::Interface { id, .. } = item {
            let module = resolve.name_world_key(key);
            for (name, f) in &resolve.interfaces[*id].functions {
                imports.push((module.clone(), name.clone(), signature(AbiVariant::GuestImport, f)));
            }
        }
    }
    let (exports_spec, imports_spec) = (spec_module(&exports, true), spec_imports(&imports));
    let mut rng = SplitMix(seed);
    let (mut file, mut made, mut tries) = (Vec::new(), 0u64, 0u64);
    while made < count && tries < count * 50 {
        tries += 1;
        let mut raw = vec![0u8; 256 + (rng.next_u64() % 8192) as usize];
        raw.iter_mut().for_each(|b| *b = rng.next_u64() as u8);
        let mut c = module_config(0);
        c.exports = Some(exports_spec.clone());
        c.available_imports = Some(imports_spec.clone());
        // The exported memory is made for the `exports` spec; no other (the
        // engine gives a plugin one memory per instance).
        c.max_memories = 0;
        c.max_memory32_bytes = 16 << 20;
        let Ok(module) = wasm_smith::Module::new(c, &mut arbitrary::Unstructured::new(&raw)) else { continue };
        let mut bytes = module.to_bytes();
        let encoded = wit_component::embed_component_metadata(&mut bytes, &resolve, world, wit_component::StringEncoding::UTF8)
            .and_then(|()| wit_component::ComponentEncoder::default().module(&bytes)?.validate(true).encode());
        let Ok(component) = encoded else { continue };
        file.extend_from_slice(&(component.len() as u32).to_le_bytes());
        file.extend_from_slice(&component);
        made += 1;
    }
    assert!(made == count, "only {made} of {count} random modules became components in {tries} tries");
    let path = out_dir.join("random-components.bin");
    std::fs::write(&path, file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    format!(
        "/// Random components of the trigger-plugin world (u32 LE length, component), from [`RANDOM_COMPONENTS_SEED`].\n\
         pub const RANDOM_COMPONENTS: &str = {:?};\npub const RANDOM_COMPONENTS_SEED: u64 = {seed};\n",
        canonical(&path)
    )
}

type Signature = (Vec<wasm_encoder::ValType>, Vec<wasm_encoder::ValType>);

/// A module exporting these functions (bodies `unreachable`) and a memory:
/// what wasm-smith's `exports` option reads.
fn spec_module(funcs: &[(String, Signature)], memory: bool) -> Vec<u8> {
    use wasm_encoder::{
        CodeSection, ExportKind, ExportSection, Function, FunctionSection, Instruction, MemorySection, MemoryType, TypeSection,
    };
    let (mut types, mut functions, mut exports, mut code) =
        (TypeSection::new(), FunctionSection::new(), ExportSection::new(), CodeSection::new());
    for (i, (name, (params, results))) in funcs.iter().enumerate() {
        types.ty().function(params.iter().copied(), results.iter().copied());
        functions.function(i as u32);
        exports.export(name, ExportKind::Func, i as u32);
        let mut body = Function::new([]);
        body.instruction(&Instruction::Unreachable).instruction(&Instruction::End);
        code.function(&body);
    }
    let mut memories = MemorySection::new();
    if memory {
        memories.memory(MemoryType { minimum: 1, maximum: None, memory64: false, shared: false, page_size_log2: None });
        exports.export("memory", ExportKind::Memory, 0);
    }
    let mut m = wasm_encoder::Module::new();
    m.section(&types).section(&functions);
    if memory {
        m.section(&memories);
    }
    m.section(&exports).section(&code);
    m.finish()
}

/// A module importing these functions: what wasm-smith's `available_imports` reads.
fn spec_imports(funcs: &[(String, String, Signature)]) -> Vec<u8> {
    use wasm_encoder::{EntityType, ImportSection, TypeSection};
    let (mut types, mut imports) = (TypeSection::new(), ImportSection::new());
    for (i, (module, name, (params, results))) in funcs.iter().enumerate() {
        types.ty().function(params.iter().copied(), results.iter().copied());
        imports.import(module, name, EntityType::Function(i as u32));
    }
    let mut m = wasm_encoder::Module::new();
    m.section(&types).section(&imports);
    m.finish()
}

/// The JavaScript/TypeScript and Python example plugins (`plugins/js`,
/// `plugins/python`), built by their own build scripts with the toolchains
/// `scripts/deps.sh` installs from their lock files: one constant per
/// component (`JS_HMAC_VERIFY`, `TS_JSON_TRANSFORM`, `PY_HMAC_VERIFY`, ...).
fn other_languages(plugins: &Path, out_dir: &Path) -> String {
    let js = plugins.join("js");
    let py = plugins.join("python");
    for watched in ["sdk", "examples", "hostile", "build.mjs", "package-lock.json", "types"] {
        println!("cargo:rerun-if-changed={}", js.join(watched).display());
    }
    for watched in ["weir_plugin", "examples", "build.py", "requirements.txt"] {
        println!("cargo:rerun-if-changed={}", py.join(watched).display());
    }
    println!("cargo:rerun-if-changed={}", plugins.join("../wit").display());
    let dir = out_dir.join("languages");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let node_modules = js.join("node_modules");
    if !node_modules.is_dir() {
        panic!("{} is missing: run ./scripts/deps.sh (npm ci --prefix plugins/js)", node_modules.display());
    }
    run(Command::new("node").arg(js.join("build.mjs")).arg(&dir).current_dir(&js), "node plugins/js/build.mjs");
    let python = py.join(".venv/bin/python");
    if !python.is_file() {
        panic!("{} is missing: run ./scripts/deps.sh (the componentize-py venv)", python.display());
    }
    run(Command::new(&python).arg(py.join("build.py")).arg(&dir).current_dir(&py), "plugins/python/build.py");
    wasm_consts(&dir)
}

/// One constant per component in `dir`: its file stem in upper case, `-`
/// as `_` (`hmac_verify.wasm` is `HMAC_VERIFY`, `js-hmac-verify.wasm` is
/// `JS_HMAC_VERIFY`), holding the component's path.
fn wasm_consts(dir: &Path) -> String {
    let mut entries: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())).flatten().map(|e| e.path()).collect();
    entries.sort();
    let mut consts = String::new();
    for path in entries.into_iter().filter(|p| p.extension().is_some_and(|e| e == "wasm")) {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default().replace('-', "_").to_ascii_uppercase();
        consts.push_str(&format!("pub const {stem}: &str = {:?};\n", canonical(&path)));
    }
    consts
}

fn run(cmd: &mut Command, what: &str) {
    let status = cmd.status().unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    if !status.success() {
        panic!("{what} failed ({status}; see above)");
    }
}
