//! Generates the TypeScript types of the WIT world (`jco guest-types` of
//! ../../wit, world trigger-plugin) into `types/` (or the directory given):
//! `node tools/gen-types.mjs [OUT_DIR]`. A unit test regenerates them into
//! a temp dir and compares with the committed ones.
//
// Why not plain `npx jco guest-types ../../wit -n trigger-plugin -o types`:
// jco 1.35.0 reads the WIT through its own Wasm build of wit-parser on
// @bytecodealliance/preview2-shim 0.26, which no longer preopens any
// directory by default, so every path fails with "failed to read path for
// WIT ... No such file or directory (os error 44)". This script preopens
// the WIT directory (read-only use) in that very shim instance, then runs
// jco's own CLI with the same arguments.

import { createRequire } from 'node:module';
import { realpathSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const witDir = resolve(here, '../../../wit');
const outDir = resolve(process.argv[2] ?? resolve(here, '../types'));

const jcoBin = realpathSync(resolve(here, '../node_modules/.bin/jco'));
const transpile = createRequire(jcoBin).resolve('@bytecodealliance/jco-transpile');
const shim = createRequire(transpile).resolve('@bytecodealliance/preview2-shim/filesystem');
const fs = await import(pathToFileURL(shim).href);
fs._setPreopens({ [witDir]: witDir });

process.argv = [process.argv[0], jcoBin, 'guest-types', witDir, '--world-name', 'trigger-plugin', '--out-dir', outDir, '--quiet'];
await import(pathToFileURL(jcoBin).href);
