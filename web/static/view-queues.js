/* The queues (#/queues): running and waiting jobs of each, pause and resume, the
 * concurrency limit. */

import { api } from "./api.js";
import { badge, dataTable, empty, h, number, toast } from "./dom.js";
import { ListView } from "./list.js";

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

export class QueuesView extends ListView {
  constructor(root) { super(root, { title: "Queues", path: "/api/queues", what: "queues", gap: 2000 }); }

  none() { return empty("No queues yet: a queue appears when a job names it."); }

  table(items) {
    const after = () => this.load(true);
    return dataTable({ "data-testid": "queues" },
      ["Queue", "State", ["Running", "num"], ["Waiting", "num"], "Concurrency limit", ""],
      items.map((q) => h("tr", { "data-queue": q.name },
        h("td", {}, h("a", { href: `#/jobs?queue=${encodeURIComponent(q.name)}` }, q.name)),
        h("td", {}, badge(q.paused ? "paused" : "active")),
        h("td", { className: "num" }, number(q.running) + (q.concurrencyLimit == null ? "" : ` / ${number(q.concurrencyLimit)}`)),
        h("td", { className: "num" }, number(q.waiting) + (q.waitingCapped ? "+" : "")),
        h("td", {}, limitForm(q, after)),
        h("td", {}, q.paused
          ? h("button", { onclick: async () => { await queueCall(q.name, "/resume", { method: "POST" }, (r) => `Queue ${r.name} resumed`); after(); } }, "Resume")
          : h("button", { onclick: async () => { await queueCall(q.name, "/pause", { method: "POST" }, (r) => `Queue ${r.name} paused`); after(); } }, "Pause")))));
  }
}
