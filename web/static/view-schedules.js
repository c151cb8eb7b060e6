/* The schedules (#/schedules): each with its cron, time zone, next and last fire,
 * pause, resume and delete (the buttons the schedule's own page shows too). */

import { api } from "./api.js";
import { badge, dataTable, empty, h, shortId, toast, when } from "./dom.js";
import { ListView } from "./list.js";

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

export function scheduleButtons(s, after) {
  return [
    s.enabled
      ? h("button", { onclick: async () => { await scheduleAction(s.id, "pause"); after(); } }, "Pause")
      : h("button", { onclick: async () => { await scheduleAction(s.id, "resume"); after(); } }, "Resume"),
    h("button", { className: "danger", onclick: async () => { if (await scheduleAction(s.id, "delete")) after(true); } }, "Delete"),
  ];
}

export class SchedulesView extends ListView {
  constructor(root) {
    super(root, { title: "Schedules", path: "/api/schedules?take=200", what: "schedules", gap: 5000 });
  }

  none() {
    return empty("No schedules. Create one with ",
      h("code", {}, `curl -X POST ${location.origin}/api/jobs -H 'Content-Type: application/json' -d '{"type": "noop", "cron": "*/5 * * * *"}'`));
  }

  table(items) {
    return dataTable({ "data-testid": "schedules" },
      ["Schedule", "Type", "Cron", ["Time zone", "opt"], "State", "Next fire", ["Last fired", "opt"], ""],
      items.map((s) => h("tr", { "data-schedule-id": s.id },
        h("td", {}, h("a", { href: `#/schedules/${s.id}`, className: "mono", title: s.id }, shortId(s.id)),
          s.idempotencyKey ? h("div", { className: "muted small wrap" }, s.idempotencyKey) : null),
        h("td", {}, s.type),
        h("td", { className: "mono" }, s.cron),
        h("td", { className: "opt" }, s.timezone),
        h("td", {}, badge(s.enabled ? "enabled" : "paused")),
        h("td", {}, s.enabled ? when(s.nextFireAt) : h("span", { className: "muted" }, "paused")),
        h("td", { className: "opt" }, when(s.lastFiredAt)),
        h("td", {}, h("div", { className: "row" }, scheduleButtons(s, () => this.load()))))));
  }
}
