//! Runs the built JS/TS components under Weir's own plugin host
//! (`weir plugin test`): `node tools/check-components.mjs OUT_DIR WEIR_BIN
//! [RUST_JSON_TRANSFORM_WASM]`. Checks js-hmac-verify against every shared
//! signature vector at the vectors' `now` (future timestamps included), its
//! rotation, unknown-scheme and missing-secret behaviour; js- and
//! ts-json-transform against the end-to-end test's cases and, given the
//! Rust component, byte-for-byte against it; js-passthrough. Prints each
//! failure and exits 1 if any; prints the CPU cost of a 1 KiB body.
//
// The end-to-end tests proper (tests/it) are the lead's; this is the SDK
// author's check that needs no gateway.

import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const [outDir, weir, rustJson] = process.argv.slice(2);
if (!outDir || !weir) {
  console.error('usage: node tools/check-components.mjs OUT_DIR WEIR_BIN [RUST_JSON_TRANSFORM_WASM]');
  process.exit(2);
}
const wasm = (name) => resolve(outDir, name);
const tmp = mkdtempSync(join(tmpdir(), 'weir-js-check-'));
const failures = [];
let runs = 0;

/**
 * Runs `cases` (each `{body, headers, config, receivedAtMs, tenant,
 * source}`) through one `weir plugin test --request DIR --json` (the
 * component is compiled once); returns weir's report of each, in order.
 */
function runMany(component, cases) {
  const dir = mkdtempSync(join(tmp, 'cases-'));
  cases.forEach((c, i) => {
    const name = join(dir, `case-${String(i).padStart(4, '0')}`);
    const head = [`POST /ingest/${c.tenant ?? 'test'}/${c.source ?? 'test'} HTTP/1.1`];
    for (const [k, v] of Object.entries(c.headers ?? {})) head.push(`${k}: ${v}`);
    writeFileSync(`${name}.http`, Buffer.concat([Buffer.from(head.join('\r\n') + '\r\n\r\n'), Buffer.from(c.body ?? '')]));
    const toml = [];
    if (c.receivedAtMs !== undefined) toml.push(`received_at_ms = ${c.receivedAtMs}`);
    toml.push('[config]');
    for (const [k, v] of Object.entries(c.config ?? {})) toml.push(`${JSON.stringify(k)} = ${JSON.stringify(v)}`);
    writeFileSync(`${name}.toml`, toml.join('\n') + '\n');
  });
  let out;
  try {
    out = execFileSync(weir, ['plugin', 'test', component, '--request', dir, '--json'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      maxBuffer: 64 << 20,
    });
  } catch (e) {
    out = e.stdout; // exit 1: a case "failed" weir's default expectation; the JSON is there
  }
  runs += cases.length;
  return JSON.parse(out).cases;
}

/** One case, alone. */
function run(component, c = {}) {
  return runMany(component, [c])[0];
}

function expect(cond, what) {
  if (!cond) failures.push(what);
}

const REASON = {
  missing_header: 'missing ',
  malformed_header: 'malformed ',
  timestamp_out_of_tolerance: 'outside the tolerance',
  mismatch: 'signature mismatch',
};

// Checks are queued and run per component in one `weir plugin test`.
const queued = new Map();
function queue(component, c, check) {
  if (!queued.has(component)) queued.set(component, []);
  queued.get(component).push({ c, check });
}
function flush() {
  for (const [component, items] of queued) {
    const reports = runMany(component, items.map((i) => i.c));
    items.forEach((item, i) => item.check(reports[i]));
  }
  queued.clear();
}

// --- hmac-verify over the shared vectors --------------------------------
const SCHEMES = ['github', 'stripe', 'standard-webhooks', 'shopify', 'slack'];
const vectorsDir = new URL('../../../tests/vectors/signatures/', import.meta.url);
const hmac = wasm('js-hmac-verify.wasm');
for (const scheme of SCHEMES) {
  const file = JSON.parse(readFileSync(new URL(`${scheme}.json`, vectorsDir), 'utf8'));
  const at = file.now * 1000;
  const receiver = { scheme, secret: file.secrets[0], previous_secret: file.secrets[1] };
  if (file.tolerance_secs !== undefined) receiver.tolerance_secs = String(file.tolerance_secs);
  for (const c of file.cases) {
    const name = `js-hmac-verify ${scheme}/${c.name}`;
    queue(hmac, { body: c.body, headers: c.headers, config: receiver, receivedAtMs: at }, (r) => {
      if (c.expect === 'ok') {
        expect(r.verdict === 'accept', `${name}: expected accept, got ${r.verdict} ${r.reason ?? ''}`);
        const rotated = r.logs.some((l) => l.message.includes('previous_secret'));
        expect(rotated === (c.matched_secret === 1), `${name}: previous_secret log ${rotated}`);
      } else {
        expect(
          r.verdict === 'reject' && r.status === 401 && r.reason.includes(REASON[c.expect]),
          `${name}: expected 401 ${c.expect}, got ${r.verdict} ${r.status} ${r.reason}`,
        );
        const warned = r.logs.some((l) => l.level === 'warn' && l.message.startsWith(`hmac-verify: rejected (${scheme}, ${c.expect}): `));
        expect(warned, `${name}: warn log`);
      }
    });
  }
  // Rotation: without previous_secret, the case signed with it is a mismatch;
  // `secret_previous`, the older name, still works.
  const rotated = file.cases.find((c) => c.expect === 'ok' && c.matched_secret === 1);
  const current = { ...receiver };
  delete current.previous_secret;
  queue(hmac, { body: rotated.body, headers: rotated.headers, config: current, receivedAtMs: at }, (r) =>
    expect(r.status === 401 && r.reason.includes('signature mismatch'), `js-hmac-verify ${scheme}: previous secret not configured: ${r.reason}`),
  );
  queue(hmac, { body: rotated.body, headers: rotated.headers, config: { ...current, secret_previous: file.secrets[1] }, receivedAtMs: at }, (r) =>
    expect(r.verdict === 'accept', `js-hmac-verify ${scheme}: secret_previous: ${r.verdict} ${r.reason ?? ''}`),
  );
}
{
  const github = JSON.parse(readFileSync(new URL('github.json', vectorsDir), 'utf8'));
  const valid = github.cases.find((c) => c.name === 'valid');
  queue(hmac, { body: valid.body, headers: valid.headers, config: { scheme: 'git-hub', secret: github.secrets[0] } }, (r) =>
    expect(
      r.verdict === 'reject' && r.status === 401 && r.reason.includes('unknown signature scheme "git-hub"') && r.reason.includes('standard-webhooks'),
      `js-hmac-verify unknown scheme: ${r.verdict} ${r.reason}`,
    ),
  );
  queue(hmac, { body: valid.body, headers: valid.headers, config: {} }, (r) =>
    expect(r.verdict === 'fault' && r.logs.some((l) => l.message.includes('`secret` is not set')), `js-hmac-verify no secret: ${r.verdict}`),
  );
  queue(hmac, { body: '{}', headers: { 'stripe-signature': 't=1,v1=00' }, config: { scheme: 'stripe', secret: 'x', tolerance_secs: 'soon' } }, (r) =>
    expect(r.verdict === 'fault', `js-hmac-verify tolerance_secs=soon: ${r.verdict}`),
  );
  queue(hmac, { body: '{}', config: { scheme: 'standard-webhooks', secret: 'whsec_not base64!' } }, (r) =>
    expect(r.verdict === 'fault', `js-hmac-verify bad whsec_: ${r.verdict}`),
  );
  queue(hmac, { body: valid.body, headers: valid.headers, config: { secret: github.secrets[0] } }, (r) =>
    expect(r.verdict === 'accept', `js-hmac-verify default scheme github: ${r.verdict}`),
  );
}

// --- json-transform (JS and TS) -----------------------------------------
const BODIES = [
  '{"name":"ada","password":"hunter2","ssn":"123","n":1}',
  '{"z":{"b":[3,{"d":1,"c":2}],"a":"é\\u0001\\n"},"_weir":"spoof","é":1,"e":2,"\\ud83d\\ude00":3,"\\uffff":4}',
  '{}',
  ' { "a" : true , "b" : null } ',
  '[1,2]',
  'not json',
  '42',
  '"text"',
  '{"a":1,}',
];
const reports = new Map();
for (const component of ['js-json-transform.wasm', 'ts-json-transform.wasm']) {
  for (const body of BODIES) {
    const opts = { body, config: { drop: 'password, ssn' }, tenant: 'js', source: 'crm' };
    const name = `${component} ${JSON.stringify(body)}`;
    queue(wasm(component), opts, (r) => {
      reports.set(name, r);
      let parsed;
      try {
        parsed = JSON.parse(body);
      } catch {
        parsed = undefined;
      }
      if (parsed === undefined) {
        expect(r.status === 400 && r.reason.startsWith('body is not valid JSON: '), `${name}: ${r.status} ${r.reason}`);
      } else if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
        expect(r.status === 400 && r.reason === 'body must be a JSON object', `${name}: ${r.status} ${r.reason}`);
      } else {
        expect(r.verdict === 'accept', `${name}: ${r.verdict} ${r.reason ?? ''}`);
        expect(JSON.stringify(r.headers_set) === '[["content-type","application/json"]]', `${name}: headers ${JSON.stringify(r.headers_set)}`);
        const out = JSON.parse(r.body.text);
        expect(out._weir.tenant === 'js' && out._weir.source === 'crm' && !('password' in out) && !('ssn' in out), `${name}: ${r.body.text}`);
      }
    });
  }
}
flush();
for (const component of ['js-json-transform.wasm', 'ts-json-transform.wasm']) {
  for (const body of BODIES) {
    const opts = { body, config: { drop: 'password, ssn' }, tenant: 'js', source: 'crm' };
    const name = `${component} ${JSON.stringify(body)}`;
    if (rustJson) {
      queue(rustJson, opts, (rust) => {
        const r = reports.get(name);
        const same =
          rust.verdict === r.verdict &&
          rust.status === r.status &&
          (rust.verdict !== 'accept' || (rust.body.text === r.body.text && rust.body.bytes === r.body.bytes)) &&
          (rust.verdict !== 'reject' || rust.reason.split(':')[0] === r.reason.split(':')[0]);
        expect(same, `${name}: differs from Rust: ${JSON.stringify([rust.verdict, rust.reason, rust.body])} vs ${JSON.stringify([r.verdict, r.reason, r.body])}`);
      });
    }
  }
}
flush();

// --- crypto.js's native paths, inside QuickJS -------------------------------
{
  const { componentize } = await import('componentize-qjs');
  const root = new URL('..', import.meta.url).pathname;
  const entry = join(root, 'tools', 'qjs-selftest.js');
  const { component } = await componentize({
    witPath: join(root, '..', '..', 'wit'), world: 'trigger-plugin', jsSource: readFileSync(entry, 'utf8'),
    jsPath: entry, moduleRoot: root, sync: true, optSize: true,
  });
  const selftest = join(tmp, 'selftest.wasm');
  writeFileSync(selftest, component);
  const { createHash } = await import('node:crypto');
  for (const size of [0, 1, 55, 56, 63, 64, 65, 1000, 4096]) {
    const body = Buffer.from(Array.from({ length: size }, (_, i) => (i * 7 + size) & 0xff));
    queue(selftest, { body, headers: { 'x-sha256': createHash('sha256').update(body).digest('hex') } }, (r) =>
      expect(r.verdict === 'accept', `qjs self-test (body ${size} bytes): ${r.reason ?? r.verdict}`),
    );
  }
  flush();
}

// --- passthrough and costs ----------------------------------------------
const kib = `{"data":"${'x'.repeat(1024 - 11)}"}`;
const pass = run(wasm('js-passthrough.wasm'), { body: kib });
expect(pass.verdict === 'accept' && (pass.body === null || pass.body.changed === false), `js-passthrough: ${pass.verdict} ${JSON.stringify(pass.body)}`);

const secret = 'whsec_cost';
const { HmacSha256, hexEncode } = await import('../sdk/crypto.js');
const sig = `t=1767225600,v1=${hexEncode(new HmacSha256(secret).update(`1767225600.${kib}`).digest())}`;
const best = (component, opts) => {
  const cpu = runMany(component, Array(7).fill(opts)).map((r) => r.usage.cpu_us);
  cpu.sort((a, b) => a - b);
  return `min ${cpu[0]} µs, median ${cpu[3]} µs`;
};
console.log(`1 KiB body, CPU per trigger (instantiation included) of 7 runs:`);
console.log(`  js-passthrough      ${best(wasm('js-passthrough.wasm'), { body: kib })}`);
console.log(`  js-json-transform   ${best(wasm('js-json-transform.wasm'), { body: kib, tenant: 'js', source: 'crm' })}`);
console.log(`  ts-json-transform   ${best(wasm('ts-json-transform.wasm'), { body: kib, tenant: 'js', source: 'crm' })}`);
console.log(
  `  js-hmac-verify      ${best(hmac, { body: kib, headers: { 'stripe-signature': sig }, config: { scheme: 'stripe', secret }, receivedAtMs: 1767225600000 })} (stripe)`,
);

rmSync(tmp, { recursive: true, force: true });
if (failures.length > 0) {
  console.error(`${failures.length} of ${runs} runs failed:\n  ${failures.join('\n  ')}`);
  process.exit(1);
}
console.log(`all ${runs} runs passed`);
