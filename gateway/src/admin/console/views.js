// The console's views. Each view is `mount(root, ctx)` returning a `refresh()`
// the poller calls every 2 s; data goes into the page only as text nodes (dom.js).

import {api, query, readiness} from "./api.js";
import {el, put, table, chart, fmtNum, fmtBytes, fmtAge, bodyText} from "./dom.js";

const HOUR = 3600 * 1000;

// The overview's memory of the last hour: seeded once from the gateway's own history (GET /v1/history,
// a sample every 10 s), then extended by this tab's polls (2 s: at most 1800 points more).
const history = {points: [], lastTotal: null, firstSeen: new Map(), fromGateway: null};

async function seed() {
  if (history.fromGateway !== null) return;
  const h = await api("GET", "/v1/history");
  const polled = history.points;
  const first = polled.length ? polled[0].at : Infinity;
  const older = h.points.filter((p) => p.at_ms < first).map((p) => ({at: p.at_ms, backlog: p.pending,
    delivery: p.delivered_per_sec ?? 0, stored: p.stored_per_sec ?? 0}));
  history.points = older.concat(polled);
  history.fromGateway = older.length;
  const last = h.points[h.points.length - 1];
  if (last && !history.lastTotal) history.lastTotal = {at: last.at_ms, total: last.stored};
}

function remember(now, s) {
  const total = s.pending + s.delivered + s.dead + s.quarantined;
  let stored = 0;
  if (history.lastTotal) stored = Math.max(0, (total - history.lastTotal.total) / ((now - history.lastTotal.at) / 1000));
  history.lastTotal = {at: now, total};
  history.points.push({at: now, backlog: s.pending, delivery: s.delivery_rate_per_sec, stored});
  while (history.points.length && history.points[0].at < now - HOUR) history.points.shift();
  // When this tab first saw each upstream in its present state (the API gives its state, not since when).
  for (const u of s.upstreams) {
    const seen = history.firstSeen.get(u.url);
    if (!seen || seen.state !== u.state) history.firstSeen.set(u.url, {state: u.state, at: now, sinceLoad: !seen});
  }
  return stored;
}

function badge(state) {
  return el("span", {class: `badge ${state}`, "data-state": state}, state);
}

/** The sentences an on-call engineer reads first: what is wrong, where, and how much is held. */
function headline(s, ready, now) {
  const lines = [];
  for (const u of s.upstreams.filter((u) => u.state !== "healthy")) {
    // The gateway dates an outage (out_for_ms: since the breaker left closed);
    // a degraded upstream whose breaker is closed is dated from what this tab saw.
    const seen = history.firstSeen.get(u.url);
    const since = u.out_for_ms != null ? fmtAge(u.out_for_ms)
      : seen ? `${seen.sinceLoad ? "at least " : ""}${fmtAge(now - seen.at)}` : "?";
    const held = u.held_for_ms ? `, held by Retry-After for ${fmtAge(u.held_for_ms)} more` : "";
    lines.push(el("p", {class: `alert ${u.state}`, "data-upstream": u.url},
      `Upstream ${u.url} ${u.state} for ${since}${held}: `, el("q", {}, u.last_error || "no error recorded"),
      ` (last failure ${fmtAge(u.last_error_age_ms)} ago).`));
  }
  const held = `${fmtNum(s.pending)} triggers held, oldest ${fmtAge(s.oldest_pending_age_ms)}`;
  const ingest = ready.ready ? "ingest healthy" : `ingest refusing: ${ready.message}`;
  const paused = s.paused_tenants.length ? `; paused: ${s.paused_tenants.join(", ")}` : "";
  lines.push(el("p", {class: `summary ${ready.ready ? "ok" : "bad"}`, id: "summary"}, `${held}; ${ingest}${paused}.`));
  return lines;
}

function diskTile(s) {
  const budgetPct = s.budget_bytes ? (100 * s.used_bytes) / s.budget_bytes : 0;
  const low = s.free_bytes !== null && s.free_bytes < 2 * s.min_free_bytes;
  return el("div", {class: `tile ${budgetPct > 80 || low ? "warn" : ""}`, id: "disk"},
    el("h3", {}, "Disk"),
    el("progress", {max: 100, value: Math.min(100, budgetPct)}),
    el("p", {}, `budget: ${fmtBytes(s.used_bytes)} of ${fmtBytes(s.budget_bytes)} (${budgetPct.toFixed(1)} %)`),
    el("p", {}, `filesystem free: ${fmtBytes(s.free_bytes)}; ingest refuses below ${fmtBytes(s.min_free_bytes)}`));
}

function tile(label, value, id) {
  return el("div", {class: "tile", id}, el("h3", {}, label), el("p", {class: "big"}, value));
}

export function overview(root) {
  const body = el("div");
  put(root, el("h1", {}, "Overview"), body);
  return async () => {
    const [s, ready] = await Promise.all([api("GET", "/v1/status"), readiness(), seed()]);
    const now = Date.now();
    const stored = remember(now, s);
    const upstreamRows = s.upstreams.map((u) => ({
      attrs: {"data-url": u.url},
      cells: [u.url, badge(u.state), fmtNum(u.in_flight), fmtNum(u.delivered), fmtNum(u.failures),
        u.last_error ? `${u.last_error} (${fmtAge(u.last_error_age_ms)} ago)` : "–",
        u.held_for_ms ? fmtAge(u.held_for_ms) : "–"],
    }));
    const pts = (k) => history.points.map((p) => [p.at, p[k]]);
    put(body,
      el("div", {id: "headline"}, headline(s, ready, now)),
      el("div", {class: "tiles"},
        tile("Stored / s", fmtNum(stored), "ingest-rate"),
        tile("Delivered / s", fmtNum(s.delivery_rate_per_sec), "delivery-rate"),
        tile("Backlog", fmtNum(s.pending), "backlog"),
        tile("Oldest pending", fmtAge(s.oldest_pending_age_ms), "oldest"),
        tile("Dead / quarantined", `${fmtNum(s.dead)} / ${fmtNum(s.quarantined)}`, "dead-count"),
        diskTile(s)),
      el("h2", {}, "Upstreams"),
      table(["upstream", "state", "in flight", "delivered", "failures", "last error", "held for"], upstreamRows, {id: "upstreams"}),
      el("h2", {}, "Last hour"),
      el("div", {class: "tiles", id: "charts", "data-from-gateway": history.fromGateway},
        chart("backlog", pts("backlog"), HOUR, now),
        chart("delivered / s", pts("delivery"), HOUR, now),
        chart("stored / s", pts("stored"), HOUR, now)));
  };
}

export function tenants(root, ctx) {
  const body = el("div");
  const msg = el("p", {class: "msg", role: "status"});
  put(root, el("h1", {}, "Tenants"), msg, body);
  const act = async (what, fn) => {
    try {
      await fn();
      put(msg, what);
    } catch (e) {
      put(msg, el("span", {class: "error"}, `${what} failed: ${e.message}`));
    }
    await refresh();
  };
  const pluginCell = (t, p) => {
    if (!p || !p.versions.length) return "no plugin";
    return el("div", {},
      `v${p.active ?? "–"} active of ${p.versions.map((v) => v.version).join(", ")} `,
      el("button", {type: "button", class: "rollback", "data-tenant": t,
        on: {click: () => act(`${t}: rolled back`, () => api("POST", `/v1/tenants/${encodeURIComponent(t)}/plugin/rollback`))}}, "Roll back"),
      el("select", {class: "activate", "data-tenant": t, "aria-label": `activate a version of ${t}'s plugin`,
        on: {change: (ev) => ev.target.value && act(`${t}: version ${ev.target.value} active`,
          () => api("POST", `/v1/tenants/${encodeURIComponent(t)}/plugin/activate`, {version: Number(ev.target.value)}))}},
      el("option", {value: ""}, "activate…"),
      p.versions.map((v) => el("option", {value: v.version}, `v${v.version} (${v.source}, ${v.uploaded_at}, ${v.sha256.slice(0, 12)}…)`))));
  };
  async function refresh() {
    let rows;
    if (ctx.who.scope === "operator") {
      const s = await api("GET", "/v1/status");
      rows = s.tenants.map((t) => ({t, pending: s.pending_by_tenant?.[t] ?? 0, paused: s.paused_tenants.includes(t),
        plugin: s.plugins_by_tenant?.[t]}));
    } else {
      const w = await api("GET", "/v1/whoami");
      rows = [{t: w.tenant, pending: w.pending, paused: w.paused}];
    }
    const plugins = await Promise.all(rows.map((r) =>
      api("GET", `/v1/tenants/${encodeURIComponent(r.t)}/plugin`).catch(() => null)));
    put(body, table(["tenant", "backlog", "forwarding", "", "plugin", "plugin failures"], rows.map((r, i) => ({
      attrs: {"data-tenant": r.t},
      cells: [r.t, fmtNum(r.pending), badge(r.paused ? "paused" : "forwarding"),
        el("button", {type: "button", class: r.paused ? "resume" : "pause", "data-tenant": r.t,
          on: {click: () => act(`${r.t}: ${r.paused ? "resumed" : "paused"}`,
            () => api("POST", `/v1/tenants/${encodeURIComponent(r.t)}/${r.paused ? "resume" : "pause"}`))}},
        r.paused ? "Resume" : "Pause"),
        pluginCell(r.t, plugins[i]), failureRate(r.plugin)],
    })), {id: "tenants"}));
  }
  return refresh;
}

/** A tenant's plugin failure rate since start, with the kinds (`trap 3, timeout 1`); `–` without runs or for a tenant token. */
function failureRate(p) {
  if (!p || !p.calls) return "–";
  const failed = Object.values(p.failures).reduce((a, n) => a + n, 0);
  const kinds = Object.entries(p.failures).map(([k, n]) => `${k} ${fmtNum(n)}`).join(", ");
  return el("span", {class: "failure-rate", title: `${fmtNum(failed)} of ${fmtNum(p.calls)} runs failed`},
    `${(100 * failed / p.calls).toFixed(1)}% of ${fmtNum(p.calls)}`, kinds ? ` (${kinds})` : "");
}

export function triggers(root, ctx) {
  const f = ctx.filters;
  const input = (name, attrs) => el("input", {name, value: f[name] || "", ...attrs,
    on: {change: (ev) => { f[name] = ev.target.value; f.cursor = ""; refresh(); }}});
  const select = (name, options) => el("select", {name, on: {change: (ev) => { f[name] = ev.target.value; f.cursor = ""; refresh(); }}},
    options.map((o) => el("option", {value: o, selected: (f[name] || "") === o}, o || `any ${name}`)));
  const list = el("div");
  const more = el("button", {type: "button", id: "more", hidden: true, on: {click: () => { f.cursor = f.next; refresh(); }}}, "Older…");
  put(root, el("h1", {}, "Triggers"),
    el("form", {class: "filters", id: "filters", on: {submit: (ev) => ev.preventDefault()}},
      ctx.who.scope === "operator" ? select("tenant", ["", ...ctx.tenants]) : null,
      select("state", ["", "pending", "delivered", "dead", "quarantined"]),
      el("label", {}, "source ", input("source", {size: 10})),
      el("label", {}, "since ", input("since", {type: "datetime-local"})),
      el("label", {}, "until ", input("until", {type: "datetime-local"}))),
    list, more);
  async function refresh() {
    const ms = (v) => (v ? new Date(v).getTime() : "");
    const page = await api("GET", "/v1/triggers" + query({tenant: f.tenant, state: f.state, source: f.source,
      since: ms(f.since), until: ms(f.until), cursor: f.cursor, order: "desc", limit: 50}));
    f.next = page.next_cursor;
    more.hidden = !page.next_cursor;
    put(list, table(["received", "id", "tenant", "source", "state", "attempts", "note"], page.items.map((t) => ({
      attrs: {"data-id": t.id},
      cells: [t.received_at, el("a", {href: `#trigger/${t.id}`}, t.id), t.tenant, t.source, badge(t.state),
        fmtNum(t.attempts), t.note || ""],
    })), {id: "trigger-list"}));
  }
  return refresh;
}

function traceId(headers) {
  const tp = headers.find(([n]) => n === "traceparent");
  const parts = tp ? tp[1].split("-") : [];
  return parts.length >= 3 ? parts[1] : "–";
}

export function trigger(root, ctx, id) {
  const body = el("div");
  put(root, el("p", {}, el("a", {href: "#triggers"}, "← triggers")), el("h1", {}, "Trigger ", el("code", {}, id)), body);
  return async () => {
    const t = await api("GET", `/v1/triggers/${encodeURIComponent(id)}`);
    const s = ctx.upstreams || [];
    put(body,
      el("dl", {class: "facts", id: "facts"},
        [["tenant", t.tenant], ["source", t.source], ["state", badge(t.state)], ["received", t.received_at],
          ["idempotency key", t.idempotency_key || "–"], ["route", t.route || "default"],
          ["plugin version", t.plugin_version ?? "–"], ["trace id", traceId(t.headers)], ["note", t.note || "–"]]
          .map(([k, v]) => [el("dt", {}, k), el("dd", {"data-field": k}, v)])),
      el("h2", {}, "Headers"),
      table(["name", "value"], t.headers.map(([n, v]) => [n, v]), {id: "headers"}),
      el("h2", {}, `Body (${fmtBytes(t.body.bytes)}, ${t.body.encoding === "base64" ? "binary: hex" : "text"})`),
      el("pre", {id: "raw-body"}, bodyText(t.body)),
      el("h2", {}, "Transformed body"),
      el("pre", {id: "transformed-body"}, t.transformed_body ? bodyText(t.transformed_body) : "(the plugin did not change it, or no plugin)"),
      el("h2", {}, "Attempts"),
      t.attempts.length
        ? el("ol", {class: "timeline", id: "attempts"}, t.attempts.map((a) => el("li", {},
          el("time", {}, a.at), " ", badge(a.outcome), ` ${s[a.upstream] || `upstream #${a.upstream}`}`,
          a.status ? ` HTTP ${a.status}` : "", ` in ${a.duration_ms} ms`, a.detail ? el("div", {class: "detail"}, a.detail) : null)))
        : el("p", {id: "attempts"}, "no attempts yet"));
  };
}

/** A dead letter's cause without its particulars: notes of one kind group together. */
function cause(t) {
  const note = t.note || "(no note)";
  const i = note.indexOf(":");
  return `${t.state}: ${i > 0 ? note.slice(0, i) : note}`;
}

export function dead(root, ctx) {
  const groupsBox = el("div");
  const flow = el("div", {id: "replay-flow"});
  let groups = new Map();
  const selected = new Set();
  let busy = false;
  put(root, el("h1", {}, "Dead letters and quarantine"),
    el("p", {}, "Grouped by cause (first 1000 of each state). Select groups, then replay: a dry run counts first."),
    groupsBox,
    el("button", {type: "button", id: "dry-run", on: {click: dryRun}}, "Replay selected…"),
    flow);
  const ids = () => [...selected].flatMap((c) => (groups.get(c) || []).map((t) => t.id));
  async function dryRun() {
    const chosen = ids();
    if (!chosen.length) return put(flow, el("p", {class: "error"}, "select at least one group"));
    busy = true;
    try {
      const r = await api("POST", "/v1/replay", {ids: chosen, dry_run: true});
      put(flow, el("p", {id: "dry-run-count"}, `${fmtNum(r.matched)} triggers would be replayed.`),
        el("button", {type: "button", id: "confirm-replay", on: {click: () => start(chosen)}}, `Replay ${r.matched}`),
        el("button", {type: "button", on: {click: () => { busy = false; put(flow); }}}, "Cancel"));
    } catch (e) {
      busy = false;
      put(flow, el("p", {class: "error"}, `dry run failed: ${e.message}`));
    }
  }
  async function start(chosen) {
    try {
      const r = await api("POST", "/v1/replay", {ids: chosen, background: true});
      const bar = el("progress", {id: "replay-progress", max: Math.max(1, r.matched), value: 0});
      const text = el("p", {id: "replay-state"}, `job ${r.job}: starting`);
      put(flow, bar, text);
      for (;;) {
        const j = await api("GET", `/v1/replays/${encodeURIComponent(r.job)}`);
        const handled = j.replayed + j.not_pending + j.skipped;
        bar.max = Math.max(1, j.matched);
        bar.value = handled;
        put(text, `job ${r.job}: ${j.state}, ${handled} of ${j.matched} handled (${j.replayed} replayed, ${j.not_pending} not pending, ${j.skipped} skipped)`);
        text.dataset.state = j.state;
        if (j.state !== "running") break;
        await new Promise((ok) => setTimeout(ok, 500));
      }
    } catch (e) {
      put(flow, el("p", {class: "error"}, `replay failed: ${e.message}`));
    }
    busy = false;
    selected.clear();
  }
  return async () => {
    const [d, q] = await Promise.all(["dead", "quarantined"].map((state) => api("GET", "/v1/triggers" + query({state, limit: 1000}))));
    groups = new Map();
    for (const t of [...d.items, ...q.items]) {
      const c = cause(t);
      if (!groups.has(c)) groups.set(c, []);
      groups.get(c).push(t);
    }
    if (busy) return; // keep the selection the dry run counted
    put(groupsBox, groups.size ? table(["", "cause", "count", "tenants", "example note"], [...groups].map(([c, ts]) => ({
      attrs: {"data-cause": c},
      cells: [el("input", {type: "checkbox", "aria-label": `select ${c}`, checked: selected.has(c),
        on: {change: (ev) => (ev.target.checked ? selected.add(c) : selected.delete(c))}}),
      c, fmtNum(ts.length), [...new Set(ts.map((t) => t.tenant))].join(", "), ts[0].note || ""],
    })), {id: "dead-groups"}) : el("p", {id: "dead-groups"}, "No dead or quarantined triggers."));
  };
}

export function audit(root) {
  const body = el("div");
  put(root, el("h1", {}, "Audit log"), body);
  return async () => {
    const a = await api("GET", "/v1/audit" + query({limit: 100}));
    put(body, table(["at", "actor", "action", "tenant", "count", "detail"], a.items.map((e) =>
      [e.at, e.actor, e.action, e.tenant || "–", e.count ?? "–", JSON.stringify(e.detail)]), {id: "audit"}));
  };
}

export function fleet(root, ctx) {
  const body = el("div");
  put(root, el("h1", {}, "Fleet"),
    el("p", {}, "One row per PoP, from the heartbeats this PoP reads in NATS (GET /v1/fleet/pops, as `weir fleet status`)."), body);
  return async () => {
    if (ctx.who.scope !== "operator") return put(body, "The fleet is the operator's view.");
    const s = await api("GET", "/v1/status");
    if (!s.fleet) return put(body, el("p", {id: "fleet"}, "This PoP has no [fleet] section: it runs alone."));
    // The fleet's heartbeats; when NATS cannot be read (409/503), this PoP's own view below says why.
    let pops = null, why = "";
    try {
      pops = await api("GET", "/v1/fleet/pops");
    } catch (e) {
      why = e.message;
    }
    const fp = await api("GET", "/v1/fleet/plugins").catch(() => null);
    put(body,
      pops ? fleetRows(pops) : el("p", {class: "error", id: "fleet-unread"}, `The fleet's heartbeats could not be read: ${why}. This PoP's own view:`),
      el("h2", {}, "This PoP"),
      table(["PoP", "NATS", "ready", "backlog", "version"], [[s.fleet.pop, badge(s.fleet.connected ? "connected" : "disconnected"),
        s.ready ? "yes" : "no", fmtNum(s.pending), s.version]], {id: "fleet"}),
      el("h2", {}, "Refused control values"),
      s.fleet.rejected.length ? table(["key", "revision", "reason"], s.fleet.rejected.map((r) => [r.key, r.revision, r.reason])) : el("p", {}, "none"),
      el("h2", {}, "Fleet plugins on this PoP"),
      fp ? table(["tenant", "state", "active sha256", "wanted sha256"], Object.entries(fp.tenants).map(([t, v]) =>
        [t, badge(v.state), v.active_sha256 || "–", v.wanted_sha256 || "–"])) : el("p", {}, "not available"));
  };
}

/** The PoPs' rows (state, age, backlog, upstreams) and every flag, as `weir fleet status` prints them. */
function fleetRows(f) {
  const flagsOf = (pop) => f.flags.filter((x) => x.pop === pop).map((x) => x.kind);
  return el("div", {},
    table(["PoP", "state", "heartbeat age", "ready", "backlog", "open upstreams", "version", "flags"], f.pops.map((p) => ({
      attrs: {"data-pop": p.pop},
      cells: [p.pop, badge(p.state), fmtAge(p.age_ms), p.heartbeat.ready ? "yes" : "no", fmtNum(p.heartbeat.backlog),
        p.open_upstreams.length ? p.open_upstreams.join(", ") : "none", p.heartbeat.version, flagsOf(p.pop).join(", ") || "–"],
    })), {id: "fleet-pops"}),
    el("h2", {}, "Flags"),
    f.flags.length ? el("ul", {id: "fleet-flags"}, f.flags.map((x) => el("li", {}, badge(x.kind), " ", x.message)))
      : el("p", {id: "fleet-flags"}, "no flags"));
}
