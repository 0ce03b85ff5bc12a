// The console's browser tests: Debian's chromium driven by playwright-core
// against the real weir binary that tests/it/console.rs started. The Rust test
// owns the upstream: this script asks it for changes with a line on stdout
// ("ASK upstream_down") and waits for its answer on stdin ("DONE ...").
// Every wait is for an event or a selector, with a generous deadline; no sleeps.

import {chromium} from "playwright-core";
import {createInterface} from "node:readline";
import {mkdirSync} from "node:fs";
import assert from "node:assert/strict";

const env = (k) => { const v = process.env[k]; if (!v) throw new Error(`${k} is not set`); return v; };
const ADMIN = env("WEIR_ADMIN_URL");
const INGEST = env("WEIR_INGEST_URL");
const OPERATOR = env("WEIR_OPERATOR_TOKEN");
const ACME = env("WEIR_ACME_TOKEN");
const SHOTS = env("WEIR_SCREENSHOTS");
const WAIT = 60_000;
mkdirSync(SHOTS, {recursive: true});

const lines = createInterface({input: process.stdin})[Symbol.asyncIterator]();
async function ask(what) {
  process.stdout.write(`ASK ${what}\n`);
  const {value, done} = await lines.next();
  assert.ok(!done && value === `DONE ${what}`, `the test answered ${value} to ${what}`);
}
const log = (...a) => console.error("[console test]", ...a);

async function ingest(tenant, source, body, headers = {}) {
  const r = await fetch(`${INGEST}/ingest/${tenant}/${source}`, {method: "POST", body, headers});
  const j = await r.json();
  return {status: r.status, ...j};
}
async function adminGet(path, token = OPERATOR) {
  const r = await fetch(`${ADMIN}${path}`, {headers: {Authorization: `Bearer ${token}`}});
  return r.json();
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run"],
});
const context = await browser.newContext({viewport: {width: 1280, height: 900}});
// Probes: a dialog, a CSP violation (markup that tried to run), or a page error all fail the test.
const dialogs = [];
const pageErrors = [];
await context.addInitScript(() => {
  window.__violations = [];
  document.addEventListener("securitypolicyviolation", (e) => window.__violations.push(`${e.violatedDirective} ${e.blockedURI}`));
});
const page = await context.newPage();
page.on("dialog", (d) => { dialogs.push(d.message()); d.dismiss(); });
page.on("pageerror", (e) => pageErrors.push(e.message));
page.setDefaultTimeout(WAIT);
const shot = async (name) => { await page.screenshot({path: `${SHOTS}/${name}.png`, fullPage: true}); log("screenshot", name); };
const go = async (hash, ready) => { await page.evaluate((h) => { location.hash = h; }, hash); await page.waitForSelector(ready); };

async function loginAs(token) {
  await page.goto(`${ADMIN}/ui`);
  await page.waitForSelector("#login:not([hidden])");
  await page.fill("#token", token);
  await page.click("#login button[type=submit]");
  await page.waitForSelector("#nav:not([hidden])");
}

// The seed's scenario on its own gateway: the upstream down and the disk budget full (tests/it/console.rs filled it).
if (process.env.WEIR_SCENARIO === "disk_full") {
  await loginAs(OPERATOR);
  await page.waitForSelector("#headline .alert.open:has-text('Connection refused')");
  await page.waitForSelector("#summary.bad:has-text('ingest refusing')");
  await page.waitForSelector("#disk.warn");
  const summary = await page.textContent("#summary");
  assert.match(summary, /triggers held/, summary);
  await shot("overview-disk-full");
  await page.setViewportSize({width: 390, height: 844});
  await shot("overview-disk-full-phone");
  assert.deepEqual([dialogs, pageErrors], [[], []]);
  await browser.close();
  process.stdout.write("PASS\n");
  process.exit(0);
}

// 0. The headers of the page itself.
{
  const r = await fetch(`${ADMIN}/ui`);
  assert.equal(r.status, 200);
  assert.equal(r.headers.get("content-security-policy"),
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
  assert.equal(r.headers.get("x-content-type-options"), "nosniff");
  assert.equal(r.headers.get("referrer-policy"), "no-referrer");
}

// 1. Log in: a wrong token is refused in words; the operator's opens the overview.
await page.goto(`${ADMIN}/ui`);
await page.fill("#token", "not-a-token");
await page.click("#login button[type=submit]");
await page.waitForSelector("#login-error:has-text('not accepted')");
await loginAs(OPERATOR);
await page.waitForSelector("#summary:has-text('ingest healthy')");
// The charts open with the gateway's own history (GET /v1/history), not with an empty plot.
const fromGateway = Number(await page.getAttribute("#charts", "data-from-gateway"));
assert.ok(fromGateway >= 1, `the charts start from the gateway's history, got ${fromGateway} points from it`);
const plotted = await page.$$eval("#charts .chart-box", (fs) => fs.map((f) => Number(f.dataset.points)));
assert.equal(plotted.length, 3);
assert.ok(plotted.every((n) => n >= fromGateway + 1), `history and the first poll are plotted: ${plotted}`);
assert.equal(await page.evaluate(() => document.cookie), "", "no cookie holds the token");
assert.ok(!page.url().includes(OPERATOR), "the token is never in the URL");
log("logged in");

// 2. Watch a trigger arrive on the triggers page, without a reload.
await go("#triggers", "#trigger-list");
const arrived = await ingest("acme", "arrival", JSON.stringify({hello: "console"}), {"content-type": "application/json"});
assert.equal(arrived.status, 202);
await page.waitForSelector(`tr[data-id="${arrived.id}"]`);
await shot("triggers");

// 3. Take the upstream down: it turns "open" with its cause in words; the held count shows.
await ask("upstream_down");
const held = await ingest("acme", "outage", "{}");
await go("#overview", "#upstreams");
await page.waitForSelector("#upstreams .badge[data-state=open]");
await page.waitForSelector("#headline .alert.open:has-text('Connection refused')");
await page.waitForSelector("#summary:has-text('ingest healthy')");
const headline = await page.textContent("#headline");
assert.match(headline, /Upstream http:\/\/127\.0\.0\.1:\d+\/triggers open for/, headline);
assert.match(headline, /triggers held/, headline);
await shot("overview-upstream-open");
await ask("upstream_up");
// After an outage the breaker half-opens (degraded) before it closes: either way, no longer open.
await page.waitForSelector("#upstreams .badge:not([data-state=open])");
log("upstream open and recovered", held.id);

// 4. Dead letters: grouped by cause, replayed through dry run, confirmation and the progress bar.
await ask("upstream_refuses");
const deadIds = [];
for (let i = 0; i < 3; i++) deadIds.push((await ingest("acme", "doomed", `{"n":${i}}`)).id);
await go("#dead", "#dead-groups");
await page.waitForSelector(`tr[data-cause^="dead: upstream refused it for good (HTTP 422)"] td:nth-child(3):has-text("3")`);
await ask("upstream_ok");
await page.check(`tr[data-cause^="dead: upstream refused it for good"] input[type=checkbox]`);
await page.click("#dry-run");
await page.waitForSelector("#dry-run-count:has-text('3 triggers would be replayed')");
await shot("dead-letters-dry-run");
await page.click("#confirm-replay");
await page.waitForSelector("#replay-state[data-state=done]");
const bar = await page.$eval("#replay-progress", (p) => [p.value, p.max]);
assert.deepEqual(bar, [3, 3], "the bar ends full");
await shot("dead-letters-replayed");
for (const id of deadIds) {
  for (let t = Date.now(); ; ) {
    const tr = await adminGet(`/v1/triggers/${id}`);
    if (tr.state === "delivered") break;
    assert.ok(Date.now() - t < WAIT, `${id} was not delivered after the replay: ${tr.state}`);
    await new Promise((ok) => setTimeout(ok, 100)); // polling the API for a state, not timing
  }
}
log("replayed", deadIds.length);

// 5. Pause and resume a tenant.
await go("#tenants", "#tenants");
await page.click(`button.pause[data-tenant=globex]`);
await page.waitForSelector(`tr[data-tenant=globex] .badge[data-state=paused]`);
assert.ok((await adminGet("/v1/status")).paused_tenants.includes("globex"));
await shot("tenants-paused");
await page.click(`button.resume[data-tenant=globex]`);
await page.waitForSelector(`tr[data-tenant=globex] .badge[data-state=forwarding]`);
assert.ok(!(await adminGet("/v1/status")).paused_tenants.includes("globex"));

// 6. Roll back a plugin (plug has versions 1 and 2, 2 active).
await page.waitForSelector(`tr[data-tenant=plug]:has-text("v2 active")`);
await page.click(`button.rollback[data-tenant=plug]`);
await page.waitForSelector(`tr[data-tenant=plug]:has-text("v1 active")`);
assert.equal((await adminGet("/v1/tenants/plug/plugin")).active, 1);
await page.waitForSelector(".msg:has-text('plug: rolled back')");
await shot("tenants");

// 7. The audit log shows what was done.
await go("#audit", "#audit");
await page.waitForSelector("#audit td:has-text('plugin.rollback')");
await page.waitForSelector("#audit td:has-text('tenant.pause')");
await page.waitForSelector("#audit td:has-text('trigger.replay')");
await shot("audit");

// 8. Fleet: this PoP has no [fleet]: it says so.
await go("#fleet", "#fleet");
await page.waitForSelector("#fleet:has-text('no [fleet]')");
await shot("fleet");

// 9. Hostile payloads stay text: body, header, idempotency key; a hostile source is refused at ingest.
const IMG = "<img src=x onerror=alert(1)>";
const SCRIPT = "</script><script>alert(1);window.__pwned=1</script>";
const hostile = await ingest("acme", "xss", `${SCRIPT}${IMG}`, {"x-evil": IMG, "x-evil-2": SCRIPT, "idempotency-key": "<svg/onload=window.__pwned=1>"});
assert.equal(hostile.status, 202);
const badSource = await fetch(`${INGEST}/ingest/acme/${encodeURIComponent(IMG)}`, {method: "POST", body: "{}"});
assert.equal(badSource.status, 400, "a source is a label: markup is refused at ingest");
await go(`#trigger/${hostile.id}`, "#raw-body");
await page.waitForSelector(`#raw-body:has-text("onerror=alert(1)")`);
assert.equal(await page.textContent("#raw-body"), `${SCRIPT}${IMG}`);
assert.ok((await page.textContent("#headers")).includes(IMG));
assert.equal(await page.textContent(`dd[data-field="idempotency key"]`), "<svg/onload=window.__pwned=1>");
await go("#triggers", `tr[data-id="${hostile.id}"]`);
await go(`#trigger/${hostile.id}`, "#headers");
await shot("trigger-hostile");
const probe = await page.evaluate(() => ({
  pwned: window.__pwned, violations: window.__violations,
  markup: document.querySelectorAll("#view img, #view script, #view svg:not(.chart)").length,
}));
assert.deepEqual(probe, {pwned: undefined, violations: [], markup: 0}, "the payloads became markup");
assert.deepEqual(dialogs, [], "a dialog opened");

// 10. Phone-sized screen.
await page.setViewportSize({width: 390, height: 844});
await go("#overview", "#upstreams");
await page.waitForSelector("#summary");
const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
assert.ok(overflow <= 0, `the page is ${overflow}px wider than a phone`);
await shot("overview-phone");
await page.setViewportSize({width: 1280, height: 900});
await shot("overview");

// 11. A tenant token sees only its tenant (globex's trigger answers 404, as in the API).
const other = await ingest("globex", "secret", `{"globex":"only"}`);
await page.click("#logout");
await loginAs(ACME);
await page.waitForSelector("#who:has-text('tenant acme')");
assert.equal(await page.isVisible("#nav a[data-view=overview]"), false);
await page.waitForSelector("#trigger-list");
const tenantsShown = await page.$$eval("#trigger-list tbody tr td:nth-child(3)", (tds) => [...new Set(tds.map((t) => t.textContent))]);
assert.deepEqual(tenantsShown, ["acme"]);
assert.equal(await page.$(`tr[data-id="${other.id}"]`), null);
await go("#tenants", "#tenants");
const rows = await page.$$eval("#tenants tbody tr", (trs) => trs.map((t) => t.dataset.tenant));
assert.deepEqual(rows, ["acme"]);
await shot("tenant-view");
await go(`#trigger/${other.id}`, "#updated.error");
assert.match(await page.textContent("#updated"), /not found|no trigger|404/i);
assert.equal(await page.$("#raw-body"), null, "another tenant's trigger shows nothing");

assert.deepEqual(pageErrors, [], "the page threw");
assert.deepEqual(dialogs, []);
await browser.close();
process.stdout.write("PASS\n");
process.exit(0); // stdin (the test's channel) would keep node alive

