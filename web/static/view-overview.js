/* The overview (#/): jobs by status, throughput and failure rate over the last hour,
 * queue lag, the workers; it follows the live snapshots. */

import { api, sawSnapshot } from "./api.js";
import { badge, dataTable, duration, empty, h, number, replace, svg, utcTitle, when } from "./dom.js";
import { jobStatuses, state } from "./state.js";
import { emptyJobs } from "./view-jobs.js";

export class OverviewView {
  constructor(root) { this.root = root; }

  enter() {
    document.title = "Overview · scheduler-core";
    this.render();
    if (!state.overview) api("/api/dashboard/overview").then((o) => { state.overview = o; sawSnapshot(o); this.render(); })
      .catch((e) => replace(this.root, empty(`Could not read the overview: ${e.message}`)));
  }

  onOverview() { this.render(); }

  render() {
    const o = state.overview;
    if (!o) { replace(this.root, h("p", { className: "muted" }, "Loading…")); return; }
    const statuses = jobStatuses.order;
    const total = statuses.reduce((sum, s) => sum + (o.counts[s] || 0), 0);
    replace(this.root,
      h("h1", {}, "Overview"),
      total === 0 ? h("div", { className: "panel" }, emptyJobs()) : null,
      h("section", { className: "cards", "aria-label": "Jobs by status" },
        statuses.map((s) => h("a", { className: "card", href: `#/jobs?status=${s}`, "data-testid": `count-${s}` },
          h("div", { className: `n s-${s}` }, (o.estimated.includes(s) ? "≈" : "") + number(o.counts[s] || 0)),
          h("div", { className: "label" }, s)))),
      h("div", { className: "grid2" },
        h("section", { className: "panel", "aria-label": "Throughput" }, throughputPanel(o)),
        h("section", { className: "panel", "aria-label": "Queue lag" }, lagPanel(o))),
      h("section", { className: "panel", "aria-label": "Workers" }, workersPanel(o)),
      h("p", { className: "muted small" },
        "Snapshot read ", when(o.generatedAt), ` in ${duration(o.refreshSeconds)}`,
        o.estimated.length ? ` · ≈ counts are estimates from PostgreSQL's statistics (large table)` : "",
        replicaNote(o.replica)));
  }
}

/* With a read replica configured (SCHEDULER_READ_DATABASE_URL) the snapshot says how far
 * behind it is; without one, nothing is shown. */
function replicaNote(r) {
  if (!r) return null;
  let text;
  if (r.readsFrom !== "replica") text = "replica unreachable: reading from the primary";
  else if (r.lagBytes == null) text = "replica lag unknown";
  else {
    text = `replica lag ${r.lagSeconds == null ? "?" : r.lagSeconds.toFixed(1)} s`;
    if (r.lagBytes > 0) text += ` (${number(r.lagBytes)} bytes behind)`;
    if (r.replayPaused) text += " · replay paused";
  }
  return h("span", { "data-testid": "replica-lag", title: "Lists and counts are read from the "
    + "read replica; add consistency=strong to an API read to read the primary" }, ` · ${text}`);
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
      ? empty("No job finished in the last hour. Finished jobs "
        + `(${jobStatuses.order.filter((s) => jobStatuses.terminal.has(s)).join(", ")}) are counted per minute here.`)
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
      : dataTable({}, ["Queue", ["Lag", "num"], "Oldest due"], o.queues.map((q) => h("tr", {},
          h("td", {}, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.queue)}` }, q.queue),
            paused.has(q.queue) ? [" ", h("a", { href: "#/queues" }, badge("paused"))] : null),
          h("td", { className: "num" }, q.oldestDueAt ? duration(q.lagSeconds) : "—"),
          h("td", {}, q.oldestDueAt ? when(q.oldestDueAt) : h("span", { className: "muted" }, "nothing due"))))),
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
      : dataTable({ "data-testid": "workers" },
        ["Worker", "State", "Heartbeat", ["Running / slots", "num"], ["Runs done", "num opt"],
          ["Overhead / run", "num opt"], ["Started", "opt"]],
        o.workers.map((w) => {
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
        })),
  ];
}

