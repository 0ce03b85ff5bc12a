// Building the page without HTML strings: every value becomes a text node,
// so a trigger's body, header, source or note can never become markup.

/** An element: `el("td", {class: "x", on: {click: f}}, "text", child, ...)`. */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "on") {
      for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn);
    } else if (name.toLowerCase().startsWith("on") || name === "style" || name === "srcdoc") {
      throw new Error(`refusing attribute ${name}`); // handlers only through addEventListener
    } else if (name === "href" && !String(value).startsWith("#")) {
      throw new Error("links stay inside the console");
    } else if (name in node && typeof node[name] === "boolean") {
      node[name] = Boolean(value);
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

/** Replaces a node's children. */
export function put(node, ...children) {
  node.replaceChildren();
  append(node, children);
  return node;
}

/** A table with a header row; `rows` are arrays of cells (text or nodes). */
export function table(headers, rows, attrs = {}) {
  return el("div", {class: "scroll"},
    el("table", attrs,
      el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
      el("tbody", {}, rows.map((r) => el("tr", r.attrs || {}, (r.cells || r).map((c) => el("td", {}, c)))))));
}

/** An SVG line chart of `points` ([t, value]) over the last `spanMs`. */
export function chart(label, points, spanMs, now) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 300 60");
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  const max = Math.max(1, ...points.map((p) => p[1]));
  const coords = points.map(([t, v]) => `${(300 * (1 - (now - t) / spanMs)).toFixed(1)},${(58 - 56 * v / max).toFixed(1)}`);
  const line = document.createElementNS(ns, "polyline");
  line.setAttribute("points", coords.join(" "));
  svg.append(line);
  if (coords.length) {
    // The latest value as a dot: visible from the first poll on, before there is a line.
    const [x, y] = coords[coords.length - 1].split(",");
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x);
    dot.setAttribute("cy", y);
    dot.setAttribute("r", "2.5");
    svg.append(dot);
  }
  const title = document.createElementNS(ns, "title");
  title.textContent = `${label}: last hour, max ${fmtNum(max)}`;
  svg.append(title);
  return el("figure", {class: "chart-box", "data-points": points.length}, svg, el("figcaption", {}, `${label} (max ${fmtNum(max)})`));
}

export function fmtNum(n) {
  if (n === null || n === undefined) return "–";
  return Number(n).toLocaleString("en-US", {maximumFractionDigits: 1});
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

export function fmtAge(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return h < 48 ? `${h} h ${m % 60} min` : `${Math.floor(h / 24)} d`;
}

/** A body for reading: pretty JSON when it parses, a hex dump when it is binary. */
export function bodyText(body) {
  if (!body) return "(none)";
  if (body.encoding === "base64") return hexDump(body.data);
  try {
    return JSON.stringify(JSON.parse(body.data), null, 2);
  } catch {
    return body.data;
  }
}

function hexDump(b64) {
  const bin = atob(b64);
  const lines = [];
  for (let off = 0; off < bin.length; off += 16) {
    const chunk = [...bin.slice(off, off + 16)].map((c) => c.charCodeAt(0));
    const hex = chunk.map((b) => b.toString(16).padStart(2, "0")).join(" ");
    const ascii = chunk.map((b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(`${off.toString(16).padStart(8, "0")}  ${hex.padEnd(47)}  ${ascii}`);
  }
  return lines.join("\n");
}
