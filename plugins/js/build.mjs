//! Builds every JS/TS example into a Weir plugin component:
//! `node plugins/js/build.mjs OUT_DIR` writes OUT_DIR/js-hmac-verify.wasm,
//! js-json-transform.wasm, js-passthrough.wasm and ts-json-transform.wasm
//! (names the Rust test build relies on), and the hostile test plugins of
//! hostile/ as js-hostile-NAME.wasm, and prints one line per component.
//! Exits non-zero, saying what failed, on any error.
//
// Each example is an ES module exporting `handle`; componentize-qjs embeds
// it with its SDK imports into QuickJS, snapshots the initialised engine
// with Wizer, and emits a component of the world `trigger-plugin` of
// ../../wit. `sync`: Weir's host does not use the component-model async ABI.
// The TypeScript example is type-checked and compiled by tsc into a temp
// directory first (never into the source tree).
//
// Options (for measurements): `--speed` embeds the speed-optimised QuickJS
// runtime instead of the size-optimised one.

import { componentize } from 'componentize-qjs';
import { execFileSync } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(fileURLToPath(import.meta.url));
const WIT = resolve(ROOT, '../../wit');
const WORLD = 'trigger-plugin';

const args = process.argv.slice(2);
const outArg = args.find((a) => !a.startsWith('--'));
if (outArg === undefined) {
  console.error('usage: node plugins/js/build.mjs OUT_DIR [--speed]');
  process.exit(2);
}
const OUT = resolve(outArg);
const OPT_SIZE = !args.includes('--speed');

/** Componentize `entry` (a file under `moduleRoot`) into OUT/`name`. */
async function build(name, entry, moduleRoot) {
  let result;
  try {
    result = await componentize({
      witPath: WIT,
      world: WORLD,
      jsSource: readFileSync(entry, 'utf8'),
      jsPath: entry,
      moduleRoot,
      sync: true,
      optSize: OPT_SIZE,
    });
  } catch (e) {
    throw new Error(`${name}: componentize-qjs failed on ${entry}: ${e.message ?? e}`);
  }
  const out = join(OUT, name);
  writeFileSync(out, result.component);
  console.log(`${out} (${result.component.length} bytes)`);
}

/** tsc the TypeScript examples into a temp tree beside a copy of the SDK; returns its root. */
function compileTypeScript() {
  const tmp = mkdtempSync(join(tmpdir(), 'weir-js-build-'));
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    execFileSync(process.execPath, [tsc, '-p', join(ROOT, 'tsconfig.json'), '--noEmit', 'false', '--outDir', tmp], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    const output = `${e.stdout ?? ''}${e.stderr ?? ''}`.trim();
    throw new Error(`tsc failed on plugins/js/examples/ts:\n${output || e.message}`);
  }
  // The compiled example imports ../../sdk/index.js: put the SDK beside it.
  cpSync(join(ROOT, 'sdk'), join(tmp, 'sdk'), { recursive: true, filter: (src) => !src.endsWith('.d.ts') });
  return tmp;
}

async function main() {
  mkdirSync(OUT, { recursive: true });
  for (const [name, file] of [
    ['js-hmac-verify.wasm', 'hmac-verify.js'],
    ['js-json-transform.wasm', 'json-transform.js'],
    ['js-passthrough.wasm', 'passthrough.js'],
  ]) {
    await build(name, join(ROOT, 'examples', file), ROOT);
  }
  // Hostile plugins for the gateway's containment tests (tests/it/hostile.rs).
  for (const file of ['spin', 'memory-hog', 'deep-recursion']) {
    await build(`js-hostile-${file}.wasm`, join(ROOT, 'hostile', `${file}.js`), ROOT);
  }
  const tmp = compileTypeScript();
  try {
    await build('ts-json-transform.wasm', join(tmp, 'examples', 'ts', 'json-transform.js'), tmp);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

main().catch((e) => {
  console.error(`plugins/js/build.mjs: ${e.message ?? e}`);
  process.exit(1);
});
