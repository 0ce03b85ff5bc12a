// The console's shell: login, navigation by #fragment (never carrying the
// token), and the 2-second poll of whichever view is showing.

import {api, hasToken, setToken, clearToken, ApiError} from "./api.js";
import {put} from "./dom.js";
import * as views from "./views.js";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const ctx = {who: null, tenants: [], upstreams: [], filters: {}};
let refresh = null;
let timer = null;
let generation = 0;

async function login() {
  try {
    ctx.who = await api("GET", "/v1/whoami");
  } catch (e) {
    clearToken();
    return showLogin(e instanceof ApiError && e.status === 401 ? "That token is not accepted here." : e.message);
  }
  if (ctx.who.scope === "operator") {
    const s = await api("GET", "/v1/status").catch(() => null);
    ctx.tenants = s ? s.tenants : [];
    ctx.upstreams = s ? s.upstreams.map((u) => u.url) : [];
  } else {
    ctx.tenants = [ctx.who.tenant];
  }
  $("login").hidden = true;
  $("nav").hidden = false;
  $("logout").hidden = false;
  for (const a of document.querySelectorAll("#nav a")) {
    a.hidden = ctx.who.scope !== "operator" && ["overview", "fleet"].includes(a.dataset.view);
  }
  put($("who"), ctx.who.scope === "operator" ? "operator" : `tenant ${ctx.who.tenant}`);
  route();
}

function showLogin(error) {
  clearInterval(timer);
  refresh = null;
  $("login").hidden = false;
  $("nav").hidden = true;
  $("logout").hidden = true;
  put($("view"));
  put($("who"));
  put($("login-error"), error || "");
}

function route() {
  if (!ctx.who) return;
  const [name, arg] = location.hash.slice(1).split("/");
  const fallback = ctx.who.scope === "operator" ? "overview" : "triggers";
  const operatorOnly = ["overview", "fleet"].includes(name) && ctx.who.scope !== "operator";
  const view = views[name] && !operatorOnly ? name : fallback;
  for (const a of document.querySelectorAll("#nav a")) a.classList.toggle("current", a.dataset.view === view);
  const root = $("view");
  root.dataset.view = view;
  refresh = views[view](root, ctx, arg && decodeURIComponent(arg));
  const mine = ++generation;
  const tick = async () => {
    if (mine !== generation) return;
    try {
      await refresh();
      put($("updated"), `updated ${new Date().toLocaleTimeString()} · refreshes every 2 s`);
      $("updated").classList.remove("error");
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) return showLogin("The token was refused; log in again.");
      put($("updated"), `update failed: ${e.message}`);
      $("updated").classList.add("error");
    }
  };
  clearInterval(timer);
  tick();
  timer = setInterval(tick, POLL_MS);
}

$("login").addEventListener("submit", (ev) => {
  ev.preventDefault();
  setToken($("token").value.trim(), $("remember").checked);
  $("token").value = "";
  login();
});
$("logout").addEventListener("click", () => {
  clearToken();
  ctx.who = null;
  showLogin();
});
window.addEventListener("hashchange", route);

if (hasToken()) login(); else showLogin();
