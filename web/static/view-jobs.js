/* The jobs list (#/jobs?status=&type=&queue=): newest first, keyset pages, filters,
 * and the search by id or idempotency key. Its first page follows the live snapshots. */

import { api } from "./api.js";
import { badge, dataTable, empty, h, progressBar, replace, shortId, throttled, toast, when } from "./dom.js";
import { navigate } from "./router.js";
import { jobStatuses, state } from "./state.js";

const PAGE_SIZE = 50;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/* What an empty database shows (here and on the overview): how to submit a job. */
export function emptyJobs() {
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

export class JobsView {
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
      h("option", { value: "" }, "any status"), jobStatuses.order.map((s) => h("option", { value: s }, s)));
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
      replace(this.body, dataTable({ "data-testid": "jobs" },
        ["Job", "Type", "Status", ["Queue", "opt"], ["Attempts", "num"], ["Run at", "opt"], "Created", ["Finished", "opt"]],
        page.items.map((j) => h("tr", { "data-job-id": j.id, "data-testid": "job-row" },
          h("td", {}, h("a", { href: `#/jobs/${j.id}`, className: "mono", title: j.id }, shortId(j.id)),
            j.idempotencyKey ? h("div", { className: "muted small wrap" }, j.idempotencyKey) : null),
          h("td", {}, j.type),
          h("td", {}, badge(j.status),
            j.status === "Running" && j.progress != null ? [" ", progressBar(j, { compact: true })] : null),
          h("td", { className: "opt" }, j.queue),
          h("td", { className: "num" }, `${j.attempts} / ${j.maxAttempts}`),
          h("td", { className: "opt" }, when(j.runAt)),
          h("td", {}, when(j.createdAt)),
          h("td", { className: "opt" }, when(j.finishedAt))))));
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
