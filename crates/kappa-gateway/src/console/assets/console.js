// The console's shell: authentication, the connection state, routing
// between pages, and the helpers every page uses (api, live, el).
import { live } from "/console/assets/live.js";

const TOKEN_KEY = "kappa-console-token";

/** The Authorization header value, from the token the user gave. */
export function authorization() {
  const t = sessionStorage.getItem(TOKEN_KEY);
  if (!t) return null;
  return /^(Bearer|Basic) /i.test(t) ? t : `Bearer ${t}`;
}

/** An answer that was not 2xx: carries the status and problem+json body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

const status = document.getElementById("status");
const banner = document.getElementById("banner");

/** Shows whether the service answers; a failure keeps the last data on screen. */
export function connection(ok, why) {
  status.dataset.state = ok ? "ok" : "degraded";
  status.textContent = ok ? "connected" : "unreachable";
  banner.hidden = ok;
  if (!ok) banner.textContent = `The service is unreachable (${why}); showing the last data received, retrying…`;
}

/** fetch() with the token, JSON in and out; throws ApiError for non-2xx answers. */
export async function api(path, { method = "GET", body, signal, allow = [] } = {}) {
  const headers = { accept: "application/json" };
  const auth = authorization();
  if (auth) headers.authorization = auth;
  if (body !== undefined) headers["content-type"] = "application/json";
  let r;
  try {
    r = await fetch(path, { method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (e) {
    if (e.name !== "AbortError") connection(false, "no answer");
    throw e;
  }
  connection(r.status !== 502 && r.status !== 503 && r.status !== 504, `HTTP ${r.status}`);
  const text = await r.text();
  let json = null;
  try { json = text ? JSON.parse(text) : null; } catch { json = { detail: text }; }
  if (!r.ok && !allow.includes(r.status)) {
    if (r.status === 401) askForToken(json?.detail);
    throw new ApiError(r.status, json);
  }
  return { status: r.status, body: json, headers: r.headers };
}

/** Builds an element; strings become text nodes (never HTML). */
export function el(tag, attrs = {}, ...children) {
  const ns = attrs.svg ? "http://www.w3.org/2000/svg" : null;
  const e = ns ? document.createElementNS(ns, tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "svg" || v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "text") e.textContent = v;
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** A table's header row: one `th` per name. */
export function thead(...names) {
  return el("thead", {}, el("tr", {}, ...names.map((h) => el("th", {}, h))));
}

/** Shows an error where the data would be. */
export function failure(e) {
  return el("p", { class: "error" }, e instanceof ApiError ? `${e.status}: ${e.message}` : String(e.message || e));
}

/** Collects items and hands them over at most every `ms` (keeps pages smooth under load). */
export function batcher(flush, ms = 250) {
  let items = [];
  let timer = null;
  return (item) => {
    items.push(item);
    if (timer === null) {
      timer = setTimeout(() => {
        const out = items;
        items = [];
        timer = null;
        flush(out);
      }, ms);
    }
  };
}

/** Parses `#/page?a=b` into its page and parameters. */
function parseHash() {
  const h = location.hash.replace(/^#\/?/, "");
  const [page, q] = h.split("?");
  return { page: page || "topology", params: new URLSearchParams(q || "") };
}

/** Goes to `page` with `params` (an object). */
export function navigate(page, params = {}) {
  const q = new URLSearchParams(params).toString();
  location.hash = `#/${page}${q ? `?${q}` : ""}`;
}

function askForToken(detail) {
  const input = document.getElementById("token");
  input.placeholder = detail ? `token needed: ${detail}` : "token needed";
  input.focus();
}

const builtIn = {
  system: "/console/assets/system.js",
  topology: "/console/assets/topology.js",
  topics: "/console/assets/topics.js",
  commands: "/console/assets/commands.js",
  views: "/console/assets/views.js",
};

let info = null;
let current = null;

async function loadInfo() {
  const r = await api("/console/api/info");
  info = r.body;
  document.title = `${info.title} · Kappa console`;
  document.getElementById("title").textContent = info.title;
  document.getElementById("backend").textContent = `${info.backend} log`;
  const menu = document.getElementById("menu");
  for (const p of info.pages) {
    if (!menu.querySelector(`[data-page="${CSS.escape(p.id)}"]`)) {
      menu.append(el("a", { href: `#/app/${p.id}`, dataset: { page: p.id } }, p.title));
    }
  }
}

async function route() {
  if (current) current.abort();
  const controller = new AbortController();
  current = controller;
  const root = document.getElementById("page");
  root.replaceChildren(el("p", { class: "muted" }, "loading…"));
  const { page, params } = parseHash();
  for (const a of document.querySelectorAll("#menu a")) {
    a.classList.toggle("active", a.getAttribute("href") === `#/${page}`);
  }
  try {
    if (!info) await loadInfo();
    let script = builtIn[page];
    if (page.startsWith("app/")) script = info.pages.find((p) => `app/${p.id}` === page)?.script;
    if (!script) throw new Error(`no page ${page}`);
    const module = await import(script);
    if (controller.signal.aborted) return;
    root.replaceChildren();
    const ctx = { api, live, el, thead, failure, batcher, navigate, info, params, signal: controller.signal };
    await module.render(root, ctx);
    root.dataset.page = page;
  } catch (e) {
    if (e.name === "AbortError" || controller.signal.aborted) return;
    root.replaceChildren(failure(e));
  }
}

document.getElementById("token-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  const v = document.getElementById("token").value.trim();
  if (v) sessionStorage.setItem(TOKEN_KEY, v);
  else sessionStorage.removeItem(TOKEN_KEY);
  document.getElementById("token").value = "";
  info = null;
  route();
});
window.addEventListener("hashchange", route);
route();
