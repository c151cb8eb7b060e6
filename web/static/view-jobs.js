/* The jobs list (#/jobs?status=&type=&queue=&where=&tag=&createdAfter=...): newest
 * first, keyset pages, the search filter (docs/search.md) kept in the hash so a view can
 * be shared, and the search by id or idempotency key. Its first page follows the live
 * snapshots. Rows can be selected (or every job the filter matches) for a bulk action:
 * a dry run first, a confirmation with its count, then the action in steps of
 * BULK_STEP jobs a request (limit/after), with its progress and then its result. */

import { api } from "./api.js";
import { badge, dataTable, empty, h, number, plural, progressBar, replace, shortId, throttled, toast, when } from "./dom.js";
import { navigate } from "./router.js";
import { jobStatuses, state } from "./state.js";

const PAGE_SIZE = 50;
const BULK_STEP = 1000;
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/* The filter's parameters (GET /api/jobs, and the bulk body's `filter`): the
 * repeatable ones are lists, the times ISO-8601 in the hash. */
const ONE = ["status", "type", "queue", "createdAfter", "createdBefore", "finishedAfter", "finishedBefore", "lastError"];
const MANY = ["where", "tag"];
const TIMES = [["createdAfter", "Created from"], ["createdBefore", "Created before"],
  ["finishedAfter", "Finished from"], ["finishedBefore", "Finished before"]];
const ACTIONS = [["retry", "Retry", "retried"], ["cancel", "Cancel", "cancelled"], ["delete", "Delete", "deleted"]];
/* Skip reasons a step finds in its own batches; the others are the dry run's (a later
 * step would count the jobs an earlier one retried as "not retryable: Pending"). */
const STEP_REASONS = ["locked", "unique key held by another job"];

/* The filter of a route's parameters: {status: "", ..., where: [], tag: []}. */
export function filterOf(params) {
  const filter = {};
  for (const k of ONE) filter[k] = params.get(k) || "";
  for (const k of MANY) filter[k] = params.getAll(k).filter(Boolean);
  return filter;
}

/* The filter as query parameters (the hash's and the API's), empty ones left out. */
export function filterQuery(filter) {
  const q = new URLSearchParams();
  for (const k of ONE) if (filter[k]) q.set(k, filter[k]);
  for (const k of MANY) for (const v of filter[k]) q.append(k, v);
  return q;
}

/* The filter as the bulk body's `filter` object. */
function filterBody(filter) {
  const body = {};
  for (const k of ONE) if (filter[k]) body[k] = filter[k];
  for (const k of MANY) if (filter[k].length) body[k] = filter[k];
  return body;
}

/* ISO-8601 <-> the value of a datetime-local input (the browser's zone, to the minute). */
function toLocalInput(iso) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  const pad = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}`;
}

function fromLocalInput(value) {
  const d = new Date(value);
  return value && !Number.isNaN(d.getTime()) ? d.toISOString() : "";
}

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
    this.filters = filterOf(route.params);
    this.selected = new Set();  // ids of the rows ticked on this page
    this.allMatching = false;   // "all that match this filter" instead
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
    const f = this.filters;
    const whereInput = h("textarea", { name: "where", rows: String(Math.max(1, f.where.length)),
      placeholder: "payload.customerId=42\nresult.status>=500", "aria-label": "Payload or result conditions, one a line",
      spellcheck: "false" }, f.where.join("\n"));
    const tagInput = h("input", { name: "tag", placeholder: "any tags (comma-separated)", value: f.tag.join(", "), "aria-label": "Tags" });
    const timeInputs = TIMES.map(([name, label]) => [name, label, h("input", { type: "datetime-local", name,
      value: f[name] ? toLocalInput(f[name]) : "", "aria-label": label })]);
    const errorInput = h("input", { name: "lastError", placeholder: "text in the last error", value: f.lastError, "aria-label": "Last error" });
    const apply = () => {
      const q = filterQuery({
        status: statusSelect.value, type: this.typeSelect.value, queue: queueInput.value.trim(),
        where: whereInput.value.split("\n").map((w) => w.trim()).filter(Boolean),
        tag: tagInput.value.split(",").map((t) => t.trim()).filter(Boolean),
        lastError: errorInput.value.trim(),
        ...Object.fromEntries(timeInputs.map(([name, , input]) => [name, fromLocalInput(input.value)])),
      });
      const hash = "#/jobs" + (q.toString() ? "?" + q : "");
      if (location.hash === hash) navigate(); else location.hash = hash;
    };
    statusSelect.addEventListener("change", apply);
    this.typeSelect.addEventListener("change", apply);
    queueInput.addEventListener("change", apply);
    this.status = h("span", { className: "muted small", "data-testid": "list-status" });
    this.bulkBar = h("div", { className: "bulk-bar", "data-testid": "bulk-bar" });
    this.bulkPanel = h("div", { "data-testid": "bulk-panel" });
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
      h("form", { className: "filters", "data-testid": "search-form", onsubmit: (e) => { e.preventDefault(); apply(); } },
        h("label", { className: "field" }, "Payload / result (one a line)", whereInput),
        h("label", { className: "field" }, "Tags", tagInput),
        timeInputs.map(([, label, input]) => h("label", { className: "field" }, label, input)),
        h("label", { className: "field" }, "Last error", errorInput),
        h("button", { type: "submit", className: "primary" }, "Search"),
        h("a", { href: "#/jobs", className: "small" }, "Clear")),
      this.bulkPanel,
      h("section", { className: "panel" }, this.bulkBar, this.body, this.pager));
    this.renderBulkBar();
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
    const q = filterQuery(this.filters);
    q.set("take", String(PAGE_SIZE));
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
    const filtered = filterQuery(this.filters).toString() !== "";
    this.pageIds = page.items.map((j) => j.id);
    this.status.textContent = this.cursor === null
      ? "live · newest first"
      : `page ${this.cursors.length + 1} · newest first (not live: go back to the first page)`;
    if (page.items.length === 0) {
      replace(this.body, filtered || this.cursor
        ? empty("No jobs match these filters.")
        : emptyJobs());
    } else {
      const all = h("input", { type: "checkbox", className: "pick", "aria-label": "Select the jobs of this page", "data-testid": "select-page",
        checked: this.allMatching || this.pageIds.every((id) => this.selected.has(id)),
        onchange: (e) => this.selectPage(e.target.checked) });
      replace(this.body, dataTable({ "data-testid": "jobs" },
        [[[all, " Job"], "job"], "Type", "Status", ["Queue", "opt"], ["Attempts", "num"], ["Run at", "opt"], "Created", ["Finished", "opt"]],
        page.items.map((j) => h("tr", { "data-job-id": j.id, "data-testid": "job-row" },
          h("td", {}, h("input", { type: "checkbox", className: "pick", "aria-label": `Select job ${j.id}`, "data-testid": "select-job",
            checked: this.allMatching || this.selected.has(j.id), disabled: this.allMatching,
            onchange: (e) => this.select(j.id, e.target.checked) }), " ", h("a", { href: `#/jobs/${j.id}`, className: "mono", title: j.id }, shortId(j.id)),
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
    this.renderBulkBar();
  }

  /* -- selection and bulk actions -------------------------------------------------- */

  select(id, on) {
    if (on) this.selected.add(id); else this.selected.delete(id);
    this.renderBulkBar();
  }

  selectPage(on) {
    this.allMatching = false;
    for (const id of this.pageIds || []) if (on) this.selected.add(id); else this.selected.delete(id);
    for (const box of this.body.querySelectorAll("[data-testid=select-job]")) { box.checked = on; box.disabled = false; }
    this.renderBulkBar();
  }

  selectAllMatching(on) {
    this.allMatching = on;
    if (!on) this.selected.clear();
    for (const box of this.body.querySelectorAll("[data-testid=select-job]")) { box.checked = on; box.disabled = on; }
    const pageBox = this.body.querySelector("[data-testid=select-page]");
    if (pageBox) pageBox.checked = on;
    this.renderBulkBar();
  }

  renderBulkBar() {
    const n = this.selected.size;
    const chosen = this.allMatching ? "All jobs that match this filter" : n ? `${plural(n, "job")} selected` : "Select jobs, or";
    replace(this.bulkBar,
      h("span", { className: "small", "data-testid": "selection" }, chosen),
      h("button", { type: "button", className: "link small", "data-testid": "select-all-matching",
        onclick: () => this.selectAllMatching(!this.allMatching) },
      this.allMatching ? "clear the selection" : "select all that match this filter"),
      h("span", { className: "spacer" }),
      ACTIONS.map(([action, label]) => h("button", { type: "button", className: action === "retry" ? "" : "danger",
        "data-testid": `bulk-${action}`, disabled: this.running || (!this.allMatching && n === 0),
        onclick: () => this.plan(action) }, label)));
  }

  /* The body of a bulk request: the filter, and the ticked ids unless "all". */
  bulkBody(action, extra) {
    const body = { action, filter: filterBody(this.filters), ...extra };
    if (!this.allMatching) body.ids = [...this.selected];
    return body;
  }

  async plan(action) {
    const [, label] = ACTIONS.find(([a]) => a === action);
    let dry;
    try {
      dry = await api("/api/jobs/bulk", { method: "POST", body: this.bulkBody(action, { dryRun: true }) });
    } catch (e) { toast(`${label} failed: ${e.message}${e.body && e.body.field ? ` (${e.body.field})` : ""}`, { bad: true }); return; }
    if (this.left) return;
    const go = h("button", { type: "button", className: action === "retry" ? "primary" : "primary danger", "data-testid": "bulk-confirm",
      disabled: dry.count === 0, onclick: () => this.run(action, dry) }, `${label} ${plural(dry.count, "job")}`);
    replace(this.bulkPanel, h("section", { className: "panel bulk", "data-testid": "bulk-plan", "data-count": String(dry.count) },
      h("p", {}, h("strong", {}, `${label} ${plural(dry.count, "job")}?`), " ",
        h("span", { className: "muted" }, `${number(dry.matched)} match${dry.matched === 1 ? "es" : ""}`)),
      skippedList(dry.skipped),
      h("div", { className: "row" }, go,
        h("button", { type: "button", "data-testid": "bulk-back", onclick: () => replace(this.bulkPanel) }, "Back"))));
    go.focus();
  }

  async run(action, dry) {
    const [, label, done] = ACTIONS.find(([a]) => a === action);
    this.running = true;
    this.renderBulkBar();
    const bar = h("progress", { max: String(Math.max(1, dry.count)), value: "0", "aria-label": `${label} progress` });
    const text = h("span", { className: "num", "data-testid": "bulk-done" }, `0 / ${number(dry.count)}`);
    const box = h("section", { className: "panel bulk", "data-testid": "bulk-progress", "data-changed": "0", "data-total": String(dry.count) },
      h("p", {}, h("strong", {}, `${label}…`)), h("div", { className: "row" }, bar, text));
    replace(this.bulkPanel, box);
    const skipped = { ...dry.skipped };
    let changed = 0, after = null, failure = null;
    try {
      do {
        const step = await api("/api/jobs/bulk", { method: "POST",
          body: this.bulkBody(action, { limit: BULK_STEP, ...(after ? { after } : {}) }) });
        changed += step.count;
        for (const why of STEP_REASONS) if (step.skipped[why]) skipped[why] = (skipped[why] || 0) + step.skipped[why];
        after = step.next;
        bar.value = Math.min(changed, Number(bar.max));
        text.textContent = `${number(changed)} / ${number(dry.count)}`;
        box.dataset.changed = String(changed);
      } while (after && !this.left);
    } catch (e) { failure = e; }
    this.running = false;
    if (this.left) return;
    this.selected.clear();
    this.allMatching = false;
    this.renderBulkBar();
    replace(this.bulkPanel, h("section", { className: "panel bulk", "data-testid": "bulk-result", "data-changed": String(changed) },
      h("p", {}, h("strong", {}, `${plural(changed, "job")} ${done}.`),
        failure ? h("span", { className: "field-error" }, ` Stopped: ${failure.message}`) : null),
      skippedList(skipped),
      h("button", { type: "button", onclick: () => replace(this.bulkPanel) }, "Close")));
    this.load();
  }
}

/* The skip reasons of a bulk answer, as a list (nothing when none). */
function skippedList(skipped) {
  const entries = Object.entries(skipped || {}).filter(([, n]) => n > 0);
  if (!entries.length) return null;
  return h("ul", { className: "small muted", "data-testid": "bulk-skipped" },
    entries.map(([why, n]) => h("li", {}, `${plural(n, "job")} skipped: ${why}`)));
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
