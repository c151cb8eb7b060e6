/* One workflow (#/workflows/<id>): its graph, drawn left to right by depth (a step's
 * column is the longest chain of parents before it), each node coloured by its step's
 * status and linking to its job, live (re-read as snapshots arrive); its steps in a
 * table; a cancel button. */

import { api } from "./api.js";
import { badge, dataTable, duration, h, panel, replace, shortId, svg, toast, when } from "./dom.js";
import { DetailView, fact, factsPanel } from "./detail.js";

const NODE_W = 140, NODE_H = 34, COL = 190, ROW = 52, PAD = 12;

/* Each step's depth: 0 for a step without parents, else 1 + its deepest parent's. */
function depths(steps) {
  const byName = new Map(steps.map((s) => [s.name, s]));
  const depth = new Map();
  const visit = (name, seen) => {
    if (depth.has(name)) return depth.get(name);
    if (seen.has(name)) return 0;  // (the server refuses cycles; never loop here)
    seen.add(name);
    const s = byName.get(name);
    const d = s && s.dependsOn.length ? 1 + Math.max(...s.dependsOn.map((p) => visit(p, seen))) : 0;
    depth.set(name, d);
    return d;
  };
  for (const s of steps) visit(s.name, new Set());
  return depth;
}

export function graph(steps) {
  const depth = depths(steps);
  const columns = [];
  for (const s of steps) (columns[depth.get(s.name)] ||= []).push(s);
  const at = new Map();
  columns.forEach((col, x) => col.forEach((s, y) => at.set(s.name, [PAD + x * COL, PAD + y * ROW])));
  const width = PAD * 2 + Math.max(0, columns.length - 1) * COL + NODE_W;
  const height = PAD * 2 + Math.max(1, ...columns.map((c) => c.length)) * ROW - (ROW - NODE_H);
  const edges = [];
  for (const s of steps) {
    const [cx, cy] = at.get(s.name);
    for (const p of s.dependsOn) {
      if (!at.has(p)) continue;
      const [px, py] = at.get(p);
      edges.push(svg("line", {
        x1: px + NODE_W, y1: py + NODE_H / 2, x2: cx, y2: cy + NODE_H / 2, class: "edge",
        "data-edge": `${p}->${s.name}`,
      }));
    }
  }
  const nodes = steps.map((s) => {
    const [x, y] = at.get(s.name);
    return svg("a", { href: `#/jobs/${s.jobId}`, "data-testid": `node-${s.name}`, "data-status": s.status,
      class: `node s-${s.status}` },
    svg("title", {}, `${s.name}: ${s.status}`),
    svg("rect", { x, y, width: NODE_W, height: NODE_H, rx: 6 }),
    svg("text", { x: x + 10, y: y + NODE_H / 2 + 4 }, s.name.length > 16 ? `${s.name.slice(0, 15)}…` : s.name));
  });
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": "Workflow graph", "data-testid": "workflow-graph", class: "graph" }, ...edges, ...nodes);
}

export class WorkflowView extends DetailView {
  constructor(root, route) {
    super(root, {
      kind: "Workflow", id: route.id, path: `/api/workflows/${encodeURIComponent(route.id)}`,
      back: ["#/workflows", "← All workflows"], notFound: `No workflow with id ${route.id}.`, gap: 1000,
    });
  }

  async cancel() {
    if (!window.confirm("Cancel every step of this workflow that has not finished?")) return;
    try {
      await api(`/api/workflows/${this.id}/cancel`, { method: "POST" });
      toast("Workflow cancelled");
    } catch (e) {
      toast(`Could not cancel the workflow: ${e.message}`, { bad: true });
    }
    this.load();
  }

  render(w) {
    const steps = w.steps || [];
    replace(this.root,
      this.backLink(),
      this.heading(w.id, badge(w.status), h("span", { className: "spacer" }),
        w.status === "Running" ? h("button", { className: "danger", onclick: () => this.cancel() }, "Cancel") : null),
      factsPanel("Workflow",
        fact("Name", w.name),
        fact("Steps", Object.entries(w.counts || {}).map(([s, n]) => `${n} ${s}`).join(", ")),
        w.failedSteps && w.failedSteps.length ? fact("Failed steps", w.failedSteps.join(", ")) : null,
        fact("Created", when(w.createdAt)),
        fact("Finished", when(w.finishedAt))),
      panel(h("h2", {}, "Graph"), h("div", { className: "graph-scroll" }, graph(steps))),
      panel(h("h2", {}, "Steps"), dataTable({ "data-testid": "workflow-steps" },
        ["Step", "Job", "Status", "Depends on", "Started", "Took", "Error"],
        steps.map((s) => h("tr", {},
          h("td", {}, s.name),
          h("td", {}, h("a", { href: `#/jobs/${s.jobId}`, className: "mono" }, shortId(s.jobId))),
          h("td", {}, badge(s.status)),
          h("td", { className: "small" }, s.dependsOn.join(", ")),
          h("td", {}, when(s.startedAt)),
          h("td", {}, s.startedAt && s.finishedAt
            ? duration((new Date(s.finishedAt) - new Date(s.startedAt)) / 1000) : ""),
          h("td", { className: "small wrap" }, s.lastError || ""))))));
  }
}
