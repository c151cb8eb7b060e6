/* DOM and formatting helpers: elements built from data, everything user-provided
 * inserted as text (never as HTML); times, durations, numbers; the toast; a throttle. */

const SVG_NS = "http://www.w3.org/2000/svg";

export function h(tag, attrs, ...children) {
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

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) el.setAttribute(key, String(value));
  for (const child of children) {
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function replace(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function badge(status) {
  return h("span", { className: `badge s-${status}`, "data-testid": "status" }, status);
}

export function utcTitle(date) {
  return "UTC: " + date.toISOString().replace("T", " ").replace(/\.\d+Z$/, " Z");
}

/* A time in the browser's zone; UTC on hover. */
export function when(iso, { relative = false } = {}) {
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

export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ${Math.round((seconds % 3600) / 60)} min`;
  return `${Math.floor(seconds / 86400)} d ${Math.round((seconds % 86400) / 3600)} h`;
}

export function shortId(id) {
  return id ? id.slice(0, 8) + "…" + id.slice(-4) : "";
}

export function number(n) {
  return Number(n).toLocaleString();
}

export function json(value) {
  return h("pre", { className: "json" }, value === null || value === undefined
    ? "null" : JSON.stringify(value, null, 2));
}

export function empty(...children) {
  return h("div", { className: "empty" }, ...children);
}

let toastTimer = null;
export function toast(message, { bad = false } = {}) {
  const el = document.getElementById("toast");
  el.textContent = message;
  el.className = bad ? "bad" : "";
  el.hidden = false;
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.hidden = true; }, bad ? 6000 : 3000);
}

/* Calls fn at most once per `gap` ms; one call in flight at a time; a call asked for
 * meanwhile runs after. */
export function throttled(fn, gap) {
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

/* A table in its scrolling wrapper: `columns` are labels or [label, className]. */
export function dataTable(attrs, columns, rows) {
  return h("div", { className: "table-wrap" }, h("table", attrs,
    h("thead", {}, h("tr", {}, columns.map((c) => Array.isArray(c)
      ? h("th", { className: c[1] }, c[0]) : h("th", {}, c)))),
    h("tbody", {}, rows)));
}

export function panel(...children) {
  return h("section", { className: "panel" }, ...children);
}

/* "1 job" / "3 jobs": `n` (formatted) and the word for it. */
export function plural(n, one, many = `${one}s`) {
  return `${number(n)} ${n === 1 ? one : many}`;
}

/* When something is next allowed (a rate window's next start): "now" once it is due,
 * else the local time of day and how soon; UTC on hover. */
export function nextAt(iso) {
  if (!iso) return "now";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const seconds = (date.getTime() - Date.now()) / 1000;
  if (seconds <= 0) return "now";
  return h("time", { datetime: iso, title: utcTitle(date) },
    `${date.toLocaleTimeString()} (in ${duration(seconds)})`);
}

/* A job's progress (ctx.progress: 0..1, with its message) as a <progress> and its
 * percentage; `compact` (the jobs table) leaves the message to the title. */
export function progressBar(job, { compact = false } = {}) {
  const pct = `${Math.round(job.progress * 100)} %`;
  const label = job.progressMessage ? `${pct}: ${job.progressMessage}` : pct;
  return h("span", { className: compact ? "job-progress compact" : "job-progress", "data-testid": "job-progress",
    "data-value": String(job.progress), title: label },
    h("progress", { max: "1", value: String(job.progress), "aria-label": `Progress ${label}` }),
    h("span", { className: "num" }, pct),
    !compact && job.progressMessage ? h("span", { className: "muted", "data-testid": "progress-message" }, job.progressMessage) : null);
}

/* A use bar: `used` of `limit` as a <meter> (attributes only: the CSP allows no inline
 * style), full past 90 %. */
export function useBar(used, limit, label) {
  const max = Math.max(1, Number(limit) || 0);
  return h("meter", { className: "use-bar", min: "0", max: String(max), low: String(max * 0.7),
    high: String(max * 0.9), optimum: "0", value: String(Math.min(Number(used) || 0, max)),
    "aria-label": label, title: label });
}
