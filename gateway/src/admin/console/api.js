// The admin API with the bearer token. The token lives in this module (and,
// if the operator asks, in sessionStorage for this tab): never in a URL,
// never in a cookie, so no other site can make the browser use it (no CSRF).

const KEY = "weir.console.token";
let token = sessionStorage.getItem(KEY);

export function hasToken() { return Boolean(token); }

export function setToken(value, remember) {
  token = value;
  if (remember) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
}

export function clearToken() {
  token = null;
  sessionStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls `method path` with the token; the JSON answer, or an ApiError with the API's words. */
export async function api(method, path, body) {
  const headers = {Authorization: `Bearer ${token}`};
  const init = {method, headers, cache: "no-store", credentials: "omit", redirect: "error"};
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } catch (e) {
    throw new ApiError(0, "unreachable", `the gateway did not answer (${e.message})`);
  }
  const text = await resp.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = null; }
  if (!resp.ok) {
    throw new ApiError(resp.status, json?.error || "http_" + resp.status, json?.message || text || resp.statusText);
  }
  return json;
}

/** `/readyz` needs no token; its message says why ingest refuses (disk low, store full). */
export async function readiness() {
  try {
    const resp = await fetch("/readyz", {cache: "no-store", credentials: "omit"});
    const json = await resp.json();
    return {ready: resp.ok, message: json.message || json.status};
  } catch (e) {
    return {ready: false, message: `no answer from /readyz (${e.message})`};
  }
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}
