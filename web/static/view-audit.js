/* The audit trail (#/audit?actor=&route=&status=): every operator's write, sign-in and
 * sign-out, newest first, in keyset pages, with filters. Admin only (GET /api/audit):
 * a read session sees why not. Not live: the rows are history; "Newest" re-reads. */

import { api } from "./api.js";
import { dataTable, empty, h, replace, shortId, when } from "./dom.js";
import { navigate } from "./router.js";

const PAGE_SIZE = 50;
const FILTERS = ["actor", "route", "status"];

export class AuditView {
  constructor(root, route) {
    this.root = root;
    this.filters = Object.fromEntries(FILTERS.map((k) => [k, route.params.get(k) || ""]));
    this.cursors = [];  // cursors of the pages before the current one
    this.cursor = null;
  }

  enter() {
    document.title = "Audit · scheduler-core";
    const inputs = {
      actor: h("input", { name: "actor", placeholder: "any token name", value: this.filters.actor, "aria-label": "Actor" }),
      route: h("input", { name: "route", placeholder: "any route, e.g. /api/jobs/<job_id>/cancel", value: this.filters.route, "aria-label": "Route", size: 36 }),
      status: h("input", { name: "status", placeholder: "any", value: this.filters.status, "aria-label": "Status", inputmode: "numeric", size: 5 }),
    };
    const apply = (e) => {
      e.preventDefault();
      const q = new URLSearchParams();
      for (const k of FILTERS) if (inputs[k].value.trim()) q.set(k, inputs[k].value.trim());
      const hash = "#/audit" + (q.toString() ? "?" + q : "");
      if (location.hash === hash) navigate(); else location.hash = hash;
    };
    this.body = h("div", {}, h("p", { className: "muted" }, "Loading…"));
    this.pager = h("div", { className: "pager" });
    replace(this.root,
      h("h1", {}, "Audit"),
      h("form", { className: "filters", role: "search", "data-testid": "audit-filters", onsubmit: apply },
        h("label", { className: "field" }, "Actor", inputs.actor),
        h("label", { className: "field" }, "Route", inputs.route),
        h("label", { className: "field" }, "Status", inputs.status),
        h("button", { type: "submit" }, "Filter")),
      h("section", { className: "panel" }, this.body, this.pager));
    this.load();
  }

  leave() { this.left = true; }

  async load() {
    const q = new URLSearchParams({ take: String(PAGE_SIZE) });
    for (const k of FILTERS) if (this.filters[k]) q.set(k, this.filters[k]);
    if (this.cursor) q.set("cursor", this.cursor);
    let page;
    try {
      page = await api("/api/audit?" + q);
    } catch (e) {
      if (!this.left) replace(this.body, empty(`Could not list the audit trail: ${e.message}`));
      return;
    }
    if (this.left) return;
    this.render(page);
  }

  render(page) {
    if (page.items.length === 0) {
      replace(this.body, empty(FILTERS.some((k) => this.filters[k]) || this.cursor
        ? "No audit rows match these filters."
        : "No audited calls yet: cancels, retries, queue and schedule changes, sign-ins and sessions appear here."));
    } else {
      replace(this.body, dataTable({ "data-testid": "audit" },
        ["When", "Actor", "Role", "Call", ["Target", "opt"], ["Status", "num"], "Outcome", ["From", "opt"], ["Details", "opt"]],
        page.items.map((r) => h("tr", { "data-audit-id": String(r.id), "data-testid": "audit-row" },
          h("td", {}, when(r.at)),
          h("td", {}, r.actor,
            r.sessionId ? h("div", { className: "muted small mono", title: r.sessionId }, `session ${shortId(r.sessionId)}`) : null),
          h("td", {}, r.role),
          h("td", { className: "mono small" }, `${r.method} ${r.route}`),
          h("td", { className: "opt mono small wrap" }, r.target || ""),
          h("td", { className: "num" }, String(r.status)),
          h("td", {}, r.outcome),
          h("td", { className: "opt mono small" }, r.remoteAddr || ""),
          h("td", { className: "opt mono small wrap" },
            Object.keys(r.details || {}).length ? JSON.stringify(r.details) : "")))));
    }
    replace(this.pager,
      h("button", { disabled: this.cursor === null, onclick: () => {
        this.cursor = this.cursors.pop() ?? null; this.load();
      } }, "← Newer"),
      h("button", { disabled: !page.nextCursor, onclick: () => {
        this.cursors.push(this.cursor); this.cursor = page.nextCursor; this.load();
      } }, "Older →"),
      h("button", { onclick: () => { this.cursors = []; this.cursor = null; this.load(); } }, "Newest"));
  }
}
