/* scheduler-core dashboard: vanilla JavaScript, no build step, no dependency.
 *
 * Views (hash routes): #/ overview, #/jobs?status=&type=&queue=, #/jobs/<id>, #/queues,
 * #/schedules, #/schedules/<id>. Live data arrives over server-sent events
 * (/api/dashboard/events: an "overview" snapshot every second and right after new
 * jobs); the jobs list, a job and the schedules are re-read when a snapshot arrives.
 * Every write goes through the public API. Everything user-provided is inserted as
 * text (never as HTML).
 */
"use strict";

const STATUSES = ["Scheduled", "Pending", "Running", "Failed", "Succeeded", "DeadLetter", "Cancelled"];
const TERMINAL = new Set(["Succeeded", "DeadLetter", "Cancelled"]);
const CANCELLABLE = new Set(["Scheduled", "Pending", "Failed", "Running"]);
const RETRYABLE = new Set(["DeadLetter", "Cancelled", "Failed"]);
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const PAGE_SIZE = 50;
const SVG_NS = "http://www.w3.org/2000/svg";

const state = { overview: null, meta: null, view: null };

/* ---- DOM helpers ------------------------------------------------------------------ */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "className") el.className = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children) {
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function badge(status) {
  return h("span", { className: `badge s-${status}`, "data-testid": "status" }, status);
}

function utcTitle(date) {
  return "UTC: " + date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " Z");
}

/* A time in the browser's zone; UTC on hover. */
function when(iso, { relative = false } = {}) {
  if (!iso) return h("span", { className: "muted" }, "—");
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return h("span", {}, iso);
  const text = relative ? ago(date) : date.toLocaleString();
  return h("time", { datetime: iso, title: utcTitle(date) }, text);
}

function ago(date) {
  const seconds = (Date.now() - date.getTime()) / 1000;
  return seconds >= 0 ? `${duration(seconds)} ago` : `in ${duration(-seconds)}`;
}

function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d ${Math.round((seconds % 86400) / 3600)} h`;
}

function shortId(id) {
  return id ? id.slice(0, 8) + "…" + id.slice(-4) : "";
}

function number(n) {
  return Number(n).toLocaleString();
}

function json(value) {
  return h("pre", { className: "json" }, value === null || value === undefined
    ? "null" : JSON.stringify(value, null, 2));
}

function empty(...children) {
  return h("div", { className: "empty" }, ...children);
}

let toastTimer = null;
function toast(message, { bad = false } = {}) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, bad ? 6000 : 3000);
}

/* ---- the API ---------------------------------------------------------------------- */

class ApiProblem extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/* The CSRF cookie set at login (none when authentication is off), sent back as a header
 * on every call: the coordinator requires it on writes the session cookie authenticates
 * (it is bound to the session: a value of another one does not pass). */
function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)scheduler_csrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : null;
}

function signIn() { location.assign("/login"); }

/* Sign out: a POST (never a link a page elsewhere could follow) that ends the session on
 * the coordinator, not only in this browser; then the login page. */
async function signOut() {
  const csrf = csrfToken();
  try {
    await fetch("/logout", { method: "POST", headers: csrf ? { "X-CSRF-Token": csrf } : {} });
  } finally {
    signIn();
  }
}

async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  const csrf = csrfToken();
  if (csrf) init.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) signIn();  // no (or an expired) login: ask for the token
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { message: text }; }
  if (!resp.ok) throw new ApiProblem(resp.status, data);
  return data;
}

/* ---- routing ---------------------------------------------------------------------- */

function parseRoute() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "jobs" && parts[1]) return { name: "job", id: decodeURIComponent(parts[1]), params };
  if (parts[0] === "jobs") return { name: "jobs", params };
  if (parts[0] === "schedules" && parts[1]) return { name: "schedule", id: decodeURIComponent(parts[1]), params };
  if (parts[0] === "schedules") return { name: "schedules", params };
  if (parts[0] === "queues") return { name: "queues", params };
  return { name: "overview", params };
}

function navigate() {
  const route = parseRoute();
  if (state.view && state.view.leave) state.view.leave();
  const main = document.getElementById("view");
  main.replaceChildren();
  const section = { overview: "overview", jobs: "jobs", job: "jobs", schedules: "schedules", schedule: "schedules", queues: "queues" }[route.name];
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === section);
  }
  const View = { overview: OverviewView, jobs: JobsView, job: JobView, schedules: SchedulesView, schedule: ScheduleView, queues: QueuesView }[route.name];
  state.view = new View(main, route);
  state.view.enter();
}

/* Calls fn at most once per `gap` ms; one call in flight at a time; a call asked for
 * meanwhile runs after. */
function throttled(fn, gap) {
  let last = 0, running = false, again = false, timer = null;
  const run = async () => {
    if (running) { again = true; return; }
    const wait = last + gap - Date.now();
    if (wait > 0) { if (!timer) timer = setTimeout(() => { timer = null; run(); }, wait); return; }
    running = true; last = Date.now();
    try { await fn(); } finally {
      running = false;
      if (again) { again = false; run(); }
    }
  };
  run.cancel = () => { clearTimeout(timer); timer = null; again = false; };
  return run;
}

/* ---- overview --------------------------------------------------------------------- */

class OverviewView {
  constructor(root) { this.root = root; }

  enter() {
    document.title = "Overview · scheduler-core";
    this.render();
    if (!state.overview) api("/api/dashboard/overview").then((o) => { state.overview = o; this.render(); })
      .catch((e) => replace(this.root, empty(`Could not read the overview: ${e.message}`)));
  }

  onOverview() { this.render(); }

  render() {
    const o = state.overview;
    if (!o) { replace(this.root, h("p", { className: "muted" }, "Loading…")); return; }
    const total = STATUSES.reduce((sum, s) => sum + (o.counts[s] || 0), 0);
    replace(this.root,
      h("h1", {}, "Overview"),
      total === 0 ? h("div", { className: "panel" }, emptyJobs()) : null,
      h("section", { className: "cards", "aria-label": "Jobs by status" },
        STATUSES.map((s) => h("a", { className: "card", href: `#/jobs?status=${s}`, "data-testid": `count-${s}` },
          h("div", { className: `n s-${s}` }, (o.estimated.includes(s) ? "≈" : "") + number(o.counts[s] || 0)),
          h("div", { className: "label" }, s)))),
      h("div", { className: "grid2" },
        h("section", { className: "panel", "aria-label": "Throughput" }, throughputPanel(o)),
        h("section", { className: "panel", "aria-label": "Queue lag" }, lagPanel(o))),
      h("section", { className: "panel", "aria-label": "Workers" }, workersPanel(o)),
      h("p", { className: "muted small" },
        "Snapshot read ", when(o.generatedAt), ` in ${duration(o.refreshSeconds)}`,
        o.estimated.length ? ` · ≈ counts are estimates from PostgreSQL's statistics (large table)` : ""));
  }
}

function emptyJobs() {
  return [
    empty("No jobs yet. Submit one with ",
      h("code", {}, `curl -X POST ${location.origin}/api/jobs -H 'Content-Type: application/json' -d '{"type": "noop"}'`),
      ", or add a few demo jobs of every type:"),
    h("button", { className: "primary", onclick: seed }, "Seed demo jobs"),
  ];
}

async function seed() {
  try {
    const reply = await api("/api/seed", { method: "POST" });
    toast(`Submitted ${reply.items.length} demo jobs`);
  } catch (e) { toast(`Seeding failed: ${e.message}`, { bad: true }); }
}

function throughputPanel(o) {
  const buckets = o.throughput || [];
  const sums = buckets.reduce((acc, b) => {
    acc.ok += b.succeeded; acc.bad += b.deadLetter; acc.idle += b.cancelled; return acc;
  }, { ok: 0, bad: 0, idle: 0 });
  const finished = sums.ok + sums.bad + sums.idle;
  const rate = sums.ok + sums.bad ? (100 * sums.bad) / (sums.ok + sums.bad) : 0;
  return [
    h("div", { className: "row" }, h("h2", {}, "Throughput, last hour"), h("span", { className: "spacer" }),
      h("span", { className: "muted small", "data-testid": "throughput-summary" },
        `${number(finished)} finished · ${rate.toFixed(1)}% failed`)),
    finished === 0
      ? empty("No job finished in the last hour. Finished jobs (Succeeded, DeadLetter, Cancelled) are counted per minute here.")
      : chart(buckets),
    h("div", { className: "legend" },
      h("span", {}, h("i", { className: "k-ok" }), "succeeded"),
      h("span", {}, h("i", { className: "k-bad" }), "dead-lettered"),
      h("span", {}, h("i", { className: "k-idle" }), "cancelled"),
      h("span", {}, h("i", { className: "k-rate" }), "failure rate (right axis)")),
  ];
}

function niceMax(n) {
  if (n <= 5) return 5;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

function chart(buckets) {
  const W = 640, H = 180, L = 36, R = 34, T = 8, B = 22;
  const iw = W - L - R, ih = H - T - B;
  const max = niceMax(Math.max(1, ...buckets.map((b) => b.succeeded + b.deadLetter + b.cancelled)));
  const bw = iw / buckets.length;
  const y = (v) => T + ih - (v / max) * ih;
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
    "aria-label": "Jobs finished per minute over the last hour" });
  for (const frac of [0, 0.5, 1]) {
    root.append(svg("line", { class: "axis", x1: L, x2: W - R, y1: y(max * frac), y2: y(max * frac) }));
    root.append(svg("text", { x: L - 4, y: y(max * frac) + 3, "text-anchor": "end" }, number(max * frac)));
    root.append(svg("text", { x: W - R + 4, y: y(max * frac) + 3 }, `${Math.round(100 * frac)}%`));
  }
  const points = [];
  buckets.forEach((b, i) => {
    const x = L + i * bw;
    const minute = new Date(b.minute);
    const failed = b.succeeded + b.deadLetter ? b.deadLetter / (b.succeeded + b.deadLetter) : null;
    const g = svg("g", {});
    g.append(svg("title", {}, `${minute.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: `
      + `${b.succeeded} succeeded, ${b.deadLetter} dead-lettered, ${b.cancelled} cancelled`
      + (failed === null ? "" : ` (${(100 * failed).toFixed(0)}% failed)`)));
    let base = 0;
    for (const [value, cls] of [[b.succeeded, "b-ok"], [b.deadLetter, "b-bad"], [b.cancelled, "b-idle"]]) {
      if (value > 0) {
        g.append(svg("rect", { class: cls, x: x + 0.5, width: Math.max(bw - 1, 1), y: y(base + value),
          height: Math.max(y(base) - y(base + value), 0.5) }));
      }
      base += value;
    }
    // An invisible full-height target so the hover title works on empty minutes too.
    g.append(svg("rect", { x, width: bw, y: T, height: ih, fill: "transparent" }));
    root.append(g);
    if (failed !== null) points.push(`${(x + bw / 2).toFixed(1)},${(T + ih - failed * ih).toFixed(1)}`);
    if (i % 10 === 0 || i === buckets.length - 1) {
      root.append(svg("text", { x: x + bw / 2, y: H - 6, "text-anchor": "middle" },
        minute.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })));
    }
  });
  if (points.length > 1) root.append(svg("polyline", { class: "rate", points: points.join(" ") }));
  return root;
}

function lagPanel(o) {
  const due = o.queues.filter((q) => q.oldestDueAt);
  const paused = new Set((o.queueSettings || []).filter((s) => s.paused).map((s) => s.name));
  return [
    h("h2", {}, "Queue lag"),
    h("div", { className: "card", "data-testid": "queue-lag" },
      h("div", { className: "n" }, due.length ? duration(o.queueLagSeconds) : "none due"),
      h("div", { className: "label" }, "age of the oldest due job not yet claimed")),
    o.queues.length === 0
      ? empty("No job is waiting in any queue.")
      : h("div", { className: "table-wrap" }, h("table", {},
        h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", { className: "num" }, "Lag"), h("th", {}, "Oldest due"))),
        h("tbody", {}, o.queues.map((q) => h("tr", {},
          h("td", {}, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.queue)}` }, q.queue),
            paused.has(q.queue) ? [" ", h("a", { href: "#/queues" }, badge("paused"))] : null),
          h("td", { className: "num" }, q.oldestDueAt ? duration(q.lagSeconds) : "—"),
          h("td", {}, q.oldestDueAt ? when(q.oldestDueAt) : h("span", { className: "muted" }, "nothing due"))))))),
    due.length === 0 && o.queues.length ? h("p", { className: "muted small" }, "Waiting jobs exist but none is due yet.") : null,
  ];
}

function workersPanel(o) {
  const live = o.workers.filter((w) => w.state === "Active" || w.state === "Draining");
  return [
    h("div", { className: "row" }, h("h2", {}, "Workers"), h("span", { className: "spacer" }),
      h("span", { className: "muted small", "data-testid": "slots-summary" },
        `${live.length} live · ${o.busySlots} of ${o.slots} slots busy`)),
    o.workers.length === 0
      ? empty("No workers. Start one with ", h("code", {}, "scheduler worker"),
        " (", h("code", {}, "just up"), " starts two). Until then jobs wait as Pending.")
      : h("div", { className: "table-wrap" }, h("table", { "data-testid": "workers" },
        h("thead", {}, h("tr", {},
          h("th", {}, "Worker"), h("th", {}, "State"), h("th", {}, "Heartbeat"),
          h("th", { className: "num" }, "Running / slots"), h("th", { className: "num opt" }, "Runs done"),
          h("th", { className: "num opt" }, "Overhead / run"), h("th", { className: "opt" }, "Started"))),
        h("tbody", {}, o.workers.map((w) => {
          const s = w.stats;
          const overhead = s && s.executorOverheadSecondsCount
            ? duration(s.executorOverheadSecondsSum / s.executorOverheadSecondsCount) : "—";
          return h("tr", { "data-worker-id": w.id },
            h("td", { className: "wrap" }, h("span", { className: "mono" }, w.id),
              h("div", { className: "muted small" }, `${w.hostname} · pid ${w.pid}`)),
            h("td", {}, badge(w.state)),
            h("td", { title: utcTitle(new Date(w.lastHeartbeatAt)) }, `${duration(w.heartbeatAgeSeconds)} ago`),
            h("td", { className: "num" }, `${w.running} / ${w.capacity}`),
            h("td", { className: "num opt" }, s ? number(s.runsFinished) : "—"),
            h("td", { className: "num opt" }, overhead),
            h("td", { className: "opt" }, when(w.startedAt)));
        })))),
  ];
}

/* ---- jobs ------------------------------------------------------------------------- */

class JobsView {
  constructor(root, route) {
    this.root = root;
    this.filters = {
      status: route.params.get("status") || "",
      type: route.params.get("type") || "",
      queue: route.params.get("queue") || "",
    };
    this.cursors = [];  // cursors of the pages before the current one
    this.cursor = null;
    this.reload = throttled(() => this.load(), 1000);
  }

  enter() {
    document.title = "Jobs · scheduler-core";
    const statusSelect = h("select", { name: "status", "aria-label": "Status" },
      h("option", { value: "" }, "any status"), STATUSES.map((s) => h("option", { value: s }, s)));
    statusSelect.value = this.filters.status;
    this.typeSelect = h("select", { name: "type", "aria-label": "Type" }, h("option", { value: "" }, "any type"));
    this.fillTypes();
    const queueInput = h("input", { name: "queue", placeholder: "any queue", value: this.filters.queue, "aria-label": "Queue" });
    const search = h("input", { type: "search", name: "search", placeholder: "Job id or idempotency key",
      "aria-label": "Find a job by id or idempotency key" });
    const apply = () => {
      const q = new URLSearchParams();
      for (const [k, v] of Object.entries({ status: statusSelect.value, type: this.typeSelect.value, queue: queueInput.value.trim() })) {
        if (v) q.set(k, v);
      }
      const hash = "#/jobs" + (q.toString() ? "?" + q : "");
      if (location.hash === hash) navigate(); else location.hash = hash;
    };
    statusSelect.addEventListener("change", apply);
    this.typeSelect.addEventListener("change", apply);
    queueInput.addEventListener("change", apply);
    this.status = h("span", { className: "muted small", "data-testid": "list-status" });
    this.body = h("div", {});
    this.pager = h("div", { className: "pager" });
    replace(this.root,
      h("div", { className: "row" }, h("h1", {}, "Jobs"), h("span", { className: "spacer" }), this.status),
      h("form", { className: "filters", role: "search", onsubmit: (e) => { e.preventDefault(); findJob(search.value); } },
        h("label", { className: "field" }, "Status", statusSelect),
        h("label", { className: "field" }, "Type", this.typeSelect),
        h("label", { className: "field" }, "Queue", queueInput),
        h("label", { className: "field" }, "Find", search),
        h("button", { type: "submit" }, "Find")),
      h("section", { className: "panel" }, this.body, this.pager));
    this.load();
  }

  fillTypes() {
    if (!state.meta) return;
    for (const t of state.meta.types) this.typeSelect.append(h("option", { value: t }, t));
    this.typeSelect.value = this.filters.type;
  }

  onMeta() { if (this.typeSelect.options.length <= 1) this.fillTypes(); }

  leave() { this.reload.cancel(); this.left = true; }

  onOverview() {
    // Only the first page follows live; older pages stay put while you read them.
    if (this.cursor === null) this.reload();
  }

  async load() {
    const q = new URLSearchParams({ take: String(PAGE_SIZE) });
    for (const [k, v] of Object.entries(this.filters)) if (v) q.set(k, v);
    if (this.cursor) q.set("cursor", this.cursor);
    let page;
    try {
      page = await api("/api/jobs?" + q);
    } catch (e) {
      if (!this.left) replace(this.body, empty(`Could not list jobs: ${e.message}`));
      return;
    }
    if (this.left) return;
    this.render(page);
  }

  render(page) {
    const filtered = Object.values(this.filters).some(Boolean);
    this.status.textContent = this.cursor === null
      ? "live · newest first"
      : `page ${this.cursors.length + 1} · newest first (not live: go back to the first page)`;
    if (page.items.length === 0) {
      replace(this.body, filtered || this.cursor
        ? empty("No jobs match these filters.")
        : emptyJobs());
    } else {
      replace(this.body, h("div", { className: "table-wrap" }, h("table", { "data-testid": "jobs" },
        h("thead", {}, h("tr", {},
          h("th", {}, "Job"), h("th", {}, "Type"), h("th", {}, "Status"), h("th", { className: "opt" }, "Queue"),
          h("th", { className: "num" }, "Attempts"), h("th", { className: "opt" }, "Run at"),
          h("th", {}, "Created"), h("th", { className: "opt" }, "Finished"))),
        h("tbody", {}, page.items.map((j) => h("tr", { "data-job-id": j.id, "data-testid": "job-row" },
          h("td", {}, h("a", { href: `#/jobs/${j.id}`, className: "mono", title: j.id }, shortId(j.id)),
            j.idempotencyKey ? h("div", { className: "muted small wrap" }, j.idempotencyKey) : null),
          h("td", {}, j.type),
          h("td", {}, badge(j.status)),
          h("td", { className: "opt" }, j.queue),
          h("td", { className: "num" }, `${j.attempts} / ${j.maxAttempts}`),
          h("td", { className: "opt" }, when(j.runAt)),
          h("td", {}, when(j.createdAt)),
          h("td", { className: "opt" }, when(j.finishedAt))))))));
    }
    replace(this.pager,
      h("button", { disabled: this.cursor === null, onclick: () => {
        this.cursor = this.cursors.pop() ?? null; this.load();
      } }, "← Newer"),
      h("button", { disabled: !page.nextCursor, onclick: () => {
        this.cursors.push(this.cursor); this.cursor = page.nextCursor; this.load();
      } }, "Older →"),
      this.cursor !== null ? h("button", { onclick: () => { this.cursors = []; this.cursor = null; this.load(); } }, "Newest") : null);
  }
}

async function findJob(text) {
  const value = text.trim();
  if (!value) return;
  if (UUID_RE.test(value)) { location.hash = `#/jobs/${value.toLowerCase()}`; return; }
  try {
    const job = await api("/api/jobs/by-key?key=" + encodeURIComponent(value));
    location.hash = `#/jobs/${job.id}`;
  } catch (e) {
    toast(e.status === 404 ? `No job has the id or idempotency key “${value}”` : e.message, { bad: true });
  }
}

/* ---- one job ---------------------------------------------------------------------- */

class JobView {
  constructor(root, route) {
    this.root = root;
    this.id = route.id;
    this.reload = throttled(() => this.load(), 1000);
  }

  enter() {
    document.title = `Job ${shortId(this.id)} · scheduler-core`;
    replace(this.root, h("p", { className: "muted" }, "Loading…"));
    this.load();
  }

  leave() { this.reload.cancel(); this.left = true; }

  onOverview() { this.reload(); }

  async load() {
    let job;
    try {
      job = await api(`/api/jobs/${encodeURIComponent(this.id)}`);
    } catch (e) {
      if (this.left) return;
      replace(this.root, h("h1", {}, "Job"), empty(e.status === 404 || e.status === 400
        ? `No job with id ${this.id}.` : `Could not read the job: ${e.message}`),
        h("a", { href: "#/jobs" }, "← All jobs"));
      return;
    }
    if (!this.left) this.render(job);
  }

  async act(action) {
    const path = `/api/jobs/${this.id}/${action}`;
    try {
      const job = action === "retry"
        ? await api(path, { method: "POST", body: { reason: "retried from the dashboard" } })
        : await api(path, { method: "POST" });
      toast(action === "cancel"
        ? (job.status === "Cancelled" ? "Cancelled" : "Cancel requested: the worker stops it within a heartbeat")
        : `Retried: the job is ${job.status}`);
      this.render(job);
      this.load();
    } catch (e) {
      toast(`${action === "cancel" ? "Cancel" : "Retry"} refused: ${e.message}`, { bad: true });
      this.load();
    }
  }

  render(job) {
    const cancellable = CANCELLABLE.has(job.status) && !(job.status === "Running" && job.cancelRequested);
    const runs = job.runs || [];
    replace(this.root,
      h("a", { href: "#/jobs", className: "small" }, "← All jobs"),
      h("div", { className: "row" },
        h("h1", {}, "Job ", h("span", { className: "mono" }, job.id)),
        h("span", { "data-testid": "job-status" }, badge(job.status)),
        job.cancelRequested && !TERMINAL.has(job.status) ? h("span", { className: "muted small" }, "cancel requested") : null,
        h("span", { className: "spacer" }),
        h("button", { className: "danger", disabled: !cancellable, onclick: () => this.act("cancel"),
          title: cancellable ? "Cancel the job (a running one is stopped by its worker)" : `A ${job.status} job cannot be cancelled` }, "Cancel"),
        h("button", { disabled: !RETRYABLE.has(job.status), onclick: () => this.act("retry"),
          title: RETRYABLE.has(job.status) ? "Run it again now, with one more attempt" : "Only DeadLetter, Cancelled or Failed jobs can be retried" }, "Retry")),
      h("div", { className: "grid2" },
        h("section", { className: "panel" }, h("h2", {}, "Details"), h("dl", { className: "facts" },
          fact("Type", job.type),
          fact("Queue", job.queue),
          fact("Priority", job.priority),
          fact("Attempts", `${job.attempts} of ${job.maxAttempts}`),
          fact("Timeout", `${job.timeoutSeconds} s`),
          fact("Run at", when(job.runAt)),
          fact("Created", when(job.createdAt)),
          fact("Started", when(job.startedAt)),
          fact("Finished", when(job.finishedAt)),
          fact("Updated", when(job.updatedAt)),
          job.idempotencyKey ? fact("Idempotency key", h("span", { className: "mono" }, job.idempotencyKey)) : null,
          job.scheduleId ? fact("Schedule", h("a", { href: `#/schedules/${job.scheduleId}`, className: "mono" }, shortId(job.scheduleId))) : null,
          job.fireTime ? fact("Fire time", when(job.fireTime)) : null,
          job.retryReason ? fact("Retry reason", job.retryReason) : null)),
        h("section", { className: "panel" },
          h("h2", {}, "Payload"), json(job.payload),
          h("h2", {}, "Result"),
          job.result === null || job.result === undefined
            ? empty(job.status === "Succeeded" ? "The job returned nothing." : "No result yet: only a Succeeded job has one.")
            : json(job.result),
          job.lastError ? [h("h2", {}, "Last error"), h("div", { className: "error-text" }, job.lastError)] : null)),
      h("section", { className: "panel" },
        h("h2", {}, `Runs (${runs.length})`),
        runs.length === 0
          ? empty(job.status === "Scheduled"
            ? "Not run yet: it runs at its run-at time, when a worker has a free slot."
            : "Not run yet: every claim by a worker adds a run here.")
          : h("div", { className: "table-wrap" }, h("table", { "data-testid": "runs" },
            h("thead", {}, h("tr", {}, h("th", { className: "num" }, "#"), h("th", {}, "Worker"), h("th", {}, "Started"),
              h("th", {}, "Finished"), h("th", { className: "num" }, "Took"), h("th", {}, "Outcome"), h("th", {}, "Error"))),
            h("tbody", {}, runs.map((r) => h("tr", { "data-testid": "run-row" },
              h("td", { className: "num" }, r.attempt),
              h("td", { className: "mono wrap" }, r.workerId),
              h("td", {}, when(r.startedAt)),
              h("td", {}, r.finishedAt ? when(r.finishedAt) : h("span", { className: "muted" }, `lease until ${new Date(r.leaseExpiresAt).toLocaleTimeString()}`)),
              h("td", { className: "num" }, r.finishedAt ? duration((new Date(r.finishedAt) - new Date(r.startedAt)) / 1000) : "—"),
              h("td", {}, r.outcome ? badge(r.outcome) : badge("Running")),
              h("td", { className: "error-text wrap" }, r.error || ""))))))));
  }
}

function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

/* ---- list pages ------------------------------------------------------------------- */

/* A page listing what one API route answers (`{items: [...]}`) in one panel, re-read
 * at most every `gap` ms while snapshots arrive. Subclasses give `none()` (the panel
 * when the list is empty) and `table(items)`. */
class ListView {
  constructor(root, { title, path, what, gap }) {
    Object.assign(this, { root, title, path, what });
    this.reload = throttled(() => this.load(), gap);
  }

  enter() {
    document.title = `${this.title} · scheduler-core`;
    this.body = h("section", { className: "panel" }, h("p", { className: "muted" }, "Loading…"));
    replace(this.root, h("h1", {}, this.title), this.body);
    this.load();
  }

  leave() { this.reload.cancel(); this.left = true; }

  onOverview() { this.reload(); }

  /* force: re-render even while an input of the list has focus (after the user's own
   * change went through). */
  async load(force = false) {
    let page;
    try {
      page = await api(this.path);
    } catch (e) {
      if (!this.left) replace(this.body, empty(`Could not list ${this.what}: ${e.message}`));
      return;
    }
    if (this.left) return;
    // Not while the user is typing in the list (a limit): the next snapshot re-reads it.
    const focused = document.activeElement;
    if (!force && focused && focused.tagName === "INPUT" && this.body.contains(focused)) return;
    const items = page.items || [];
    replace(this.body, items.length === 0 ? this.none() : this.table(items));
  }
}

/* ---- queues ----------------------------------------------------------------------- */

async function queueCall(name, path, init, done) {
  try {
    const q = await api(`/api/queues/${encodeURIComponent(name)}${path}`, init);
    toast(done(q));
    return true;
  } catch (e) {
    toast(`Queue ${name}: ${e.message}`, { bad: true });
    return false;
  }
}

function limitForm(q, after) {
  const input = h("input", {
    type: "number", min: "1", max: "100000", step: "1", className: "limit-input",
    value: q.concurrencyLimit == null ? "" : String(q.concurrencyLimit),
    placeholder: "none", "aria-label": `Concurrency limit of ${q.name}`,
  });
  return h("form", {
    className: "row", novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      const limit = text === "" ? null : Number(text);
      if (limit !== null && !(Number.isInteger(limit) && limit >= 1 && limit <= 100000)) {
        toast("A limit is a whole number from 1 to 100000, or empty for none", { bad: true });
        return;
      }
      await queueCall(q.name, "", { method: "PATCH", body: { concurrencyLimit: limit } },
        (r) => r.concurrencyLimit == null ? `Queue ${r.name}: no limit` : `Queue ${r.name}: at most ${r.concurrencyLimit} running`);
      after();
    },
  }, input, h("button", { type: "submit" }, "Set limit"));
}

class QueuesView extends ListView {
  constructor(root) { super(root, { title: "Queues", path: "/api/queues", what: "queues", gap: 2000 }); }

  none() { return empty("No queues yet: a queue appears when a job names it."); }

  table(items) {
    const after = () => this.load(true);
    return h("div", { className: "table-wrap" }, h("table", { "data-testid": "queues" },
      h("thead", {}, h("tr", {}, h("th", {}, "Queue"), h("th", {}, "State"), h("th", { className: "num" }, "Running"),
        h("th", { className: "num" }, "Waiting"), h("th", {}, "Concurrency limit"), h("th", {}, ""))),
      h("tbody", {}, items.map((q) => h("tr", { "data-queue": q.name },
        h("td", {}, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.name)}` }, q.name)),
        h("td", {}, badge(q.paused ? "paused" : "active")),
        h("td", { className: "num" }, number(q.running) + (q.concurrencyLimit == null ? "" : ` / ${number(q.concurrencyLimit)}`)),
        h("td", { className: "num" }, number(q.waiting) + (q.waitingCapped ? "+" : "")),
        h("td", {}, limitForm(q, after)),
        h("td", {}, q.paused
          ? h("button", { onclick: async () => { await queueCall(q.name, "/resume", { method: "POST" }, (r) => `Queue ${r.name} resumed`); after(); } }, "Resume")
          : h("button", { onclick: async () => { await queueCall(q.name, "/pause", { method: "POST" }, (r) => `Queue ${r.name} paused`); after(); } }, "Pause")))))));
  }
}

/* ---- schedules -------------------------------------------------------------------- */

async function scheduleAction(id, action) {
  try {
    if (action === "delete") {
      if (!window.confirm("Delete this schedule? It fires no more; the jobs it made stay.")) return false;
      await api(`/api/schedules/${id}`, { method: "DELETE" });
      toast("Schedule deleted");
    } else {
      const s = await api(`/api/schedules/${id}/${action}`, { method: "POST" });
      toast(s.enabled ? "Schedule resumed" : "Schedule paused");
    }
    return true;
  } catch (e) {
    toast(`Could not ${action} the schedule: ${e.message}`, { bad: true });
    return false;
  }
}

function scheduleButtons(s, after) {
  return [
    s.enabled
      ? h("button", { onclick: async () => { await scheduleAction(s.id, "pause"); after(); } }, "Pause")
      : h("button", { onclick: async () => { await scheduleAction(s.id, "resume"); after(); } }, "Resume"),
    h("button", { className: "danger", onclick: async () => { if (await scheduleAction(s.id, "delete")) after(true); } }, "Delete"),
  ];
}

class SchedulesView extends ListView {
  constructor(root) {
    super(root, { title: "Schedules", path: "/api/schedules?take=200", what: "schedules", gap: 5000 });
  }

  none() {
    return empty("No schedules. Create one with ",
      h("code", {}, `curl -X POST ${location.origin}/api/jobs -H 'Content-Type: application/json' -d '{"type": "noop", "cron": "*/5 * * * *"}'`));
  }

  table(items) {
    return h("div", { className: "table-wrap" }, h("table", { "data-testid": "schedules" },
      h("thead", {}, h("tr", {}, h("th", {}, "Schedule"), h("th", {}, "Type"), h("th", {}, "Cron"),
        h("th", { className: "opt" }, "Time zone"), h("th", {}, "State"), h("th", {}, "Next fire"),
        h("th", { className: "opt" }, "Last fired"), h("th", {}, ""))),
      h("tbody", {}, items.map((s) => h("tr", { "data-schedule-id": s.id },
        h("td", {}, h("a", { href: `#/schedules/${s.id}`, className: "mono", title: s.id }, shortId(s.id)),
          s.idempotencyKey ? h("div", { className: "muted small wrap" }, s.idempotencyKey) : null),
        h("td", {}, s.type),
        h("td", { className: "mono" }, s.cron),
        h("td", { className: "opt" }, s.timezone),
        h("td", {}, badge(s.enabled ? "enabled" : "paused")),
        h("td", {}, s.enabled ? when(s.nextFireAt) : h("span", { className: "muted" }, "paused")),
        h("td", { className: "opt" }, when(s.lastFiredAt)),
        h("td", {}, h("div", { className: "row" }, scheduleButtons(s, () => this.load()))))))));
  }
}

class ScheduleView {
  constructor(root, route) {
    this.root = root;
    this.id = route.id;
    this.reload = throttled(() => this.load(), 2000);
  }

  enter() {
    document.title = `Schedule ${shortId(this.id)} · scheduler-core`;
    replace(this.root, h("p", { className: "muted" }, "Loading…"));
    this.load();
  }

  leave() { this.reload.cancel(); this.left = true; }

  onOverview() { this.reload(); }

  async load() {
    let s;
    try {
      s = await api(`/api/schedules/${encodeURIComponent(this.id)}`);
    } catch (e) {
      if (this.left) return;
      replace(this.root, h("h1", {}, "Schedule"), empty(e.status === 404 || e.status === 400
        ? `No schedule with id ${this.id} (or it was deleted).` : `Could not read the schedule: ${e.message}`),
        h("a", { href: "#/schedules" }, "← All schedules"));
      return;
    }
    if (this.left) return;
    const fires = s.recentFires || [];
    replace(this.root,
      h("a", { href: "#/schedules", className: "small" }, "← All schedules"),
      h("div", { className: "row" }, h("h1", {}, "Schedule ", h("span", { className: "mono" }, s.id)),
        badge(s.enabled ? "enabled" : "paused"), h("span", { className: "spacer" }),
        scheduleButtons(s, (deleted) => { if (deleted) location.hash = "#/schedules"; else this.load(); })),
      h("div", { className: "grid2" },
        h("section", { className: "panel" }, h("h2", {}, "Definition"), h("dl", { className: "facts" },
          fact("Cron", h("span", { className: "mono" }, s.cron)),
          fact("Time zone", s.timezone),
          fact("Next fire", s.enabled ? when(s.nextFireAt) : "paused"),
          fact("Last fired", when(s.lastFiredAt)),
          fact("Job type", s.type),
          fact("Queue", s.queue),
          fact("Priority", s.priority),
          fact("Max attempts", s.maxAttempts),
          fact("Timeout", `${s.timeoutSeconds} s`),
          fact("Misfire policy", s.misfirePolicy),
          fact("Overlap policy", s.overlapPolicy),
          fact("Created", when(s.createdAt)))),
        h("section", { className: "panel" }, h("h2", {}, "Payload"), json(s.payload))),
      h("section", { className: "panel" }, h("h2", {}, "Recent fires"),
        fires.length === 0
          ? empty("It has not fired yet.")
          : h("div", { className: "table-wrap" }, h("table", {},
            h("thead", {}, h("tr", {}, h("th", {}, "Fire time"), h("th", {}, "Job"), h("th", {}, "Status"), h("th", {}, "Created"))),
            h("tbody", {}, fires.map((f) => h("tr", {},
              h("td", {}, when(f.fireTime)),
              h("td", {}, h("a", { href: `#/jobs/${f.id}`, className: "mono" }, shortId(f.id))),
              h("td", {}, badge(f.status)),
              h("td", {}, when(f.createdAt)))))))));
  }
}

/* ---- live updates ----------------------------------------------------------------- */

function setLive(kind, text) {
  const el = document.getElementById("live");
  el.dataset.state = kind;
  el.textContent = text;
}

function connect() {
  const source = new EventSource("/api/dashboard/events");
  source.addEventListener("open", () => setLive("live", "live"));
  source.addEventListener("overview", (e) => {
    state.overview = JSON.parse(e.data);
    setLive("live", "live");
    if (state.view && state.view.onOverview) state.view.onOverview();
  });
  source.addEventListener("problem", (e) => {
    const body = JSON.parse(e.data);
    setLive("problem", "database unreachable");
    document.getElementById("live").title = body.message;
  });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself (the server asks for 2 s), except after an
    // error status: then a plain request tells whether the login is the reason (401).
    setLive("offline", "reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      api("/api/dashboard/meta").then(() => setTimeout(connect, 2000), () => setTimeout(connect, 2000));
    }
  });
}

window.addEventListener("hashchange", navigate);
window.addEventListener("DOMContentLoaded", () => {
  const logout = document.getElementById("logout");
  logout.hidden = !csrfToken();  // signed in with a token
  logout.addEventListener("click", signOut);
  navigate();
  connect();
  api("/api/dashboard/meta").then((meta) => {
    state.meta = meta;
    if (state.view && state.view.onMeta) state.view.onMeta();
  }).catch(() => { /* the filters then offer no type list */ });
});
