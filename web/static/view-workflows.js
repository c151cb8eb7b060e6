/* The workflows (#/workflows?status=): newest first, each with its status, its steps
 * by status and when it was made; a status filter. */

import { badge, dataTable, empty, h, shortId, when } from "./dom.js";
import { ListView } from "./list.js";

const STATUSES = ["Running", "Succeeded", "Failed"];

export class WorkflowsView extends ListView {
  constructor(root, route) {
    const status = route.params.get("status") || "";
    super(root, {
      title: "Workflows", what: "workflows", gap: 2000,
      path: `/api/workflows?take=200${status ? `&status=${encodeURIComponent(status)}` : ""}`,
    });
    this.status = status;
  }

  enter() {
    super.enter();
    const select = h("select", {
      "aria-label": "Status", onchange: (e) => {
        location.hash = e.target.value ? `#/workflows?status=${e.target.value}` : "#/workflows";
      },
    }, h("option", { value: "" }, "any"),
    STATUSES.map((s) => h("option", { value: s, selected: s === this.status }, s)));
    this.root.insertBefore(h("form", { className: "filters", onsubmit: (e) => e.preventDefault() },
      h("label", { className: "field" }, "Status", select)), this.body);
  }

  none() {
    return empty(this.status ? `No ${this.status} workflows.` : "No workflows. Create one with ",
      this.status ? null : h("code", {}, `curl -X POST ${location.origin}/api/workflows -H 'Content-Type: application/json' -d '{"name": "demo", "steps": {"a": {"type": "noop"}, "b": {"type": "noop", "dependsOn": ["a"]}}}'`));
  }

  table(items) {
    return dataTable({ "data-testid": "workflows" },
      ["Workflow", "Name", "Status", "Steps", "Created", ["Finished", "opt"]],
      items.map((w) => h("tr", { "data-workflow-id": w.id },
        h("td", {}, h("a", { href: `#/workflows/${w.id}`, className: "mono", title: w.id }, shortId(w.id))),
        h("td", {}, w.name),
        h("td", {}, badge(w.status)),
        h("td", { className: "small" }, Object.entries(w.counts || {}).map(([s, n]) => `${n} ${s}`).join(", ")),
        h("td", {}, when(w.createdAt)),
        h("td", { className: "opt" }, when(w.finishedAt)))));
  }
}
