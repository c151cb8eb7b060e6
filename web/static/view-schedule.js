/* One schedule (#/schedules/<id>): its definition, payload and recent fires, with the
 * list's pause, resume and delete. A workflow schedule shows its workflow's name and
 * steps instead of a job's fields, and its recent fires are workflows (#/workflows/<id>). */

import { badge, dataTable, empty, h, json, panel, replace, shortId, when } from "./dom.js";
import { DetailView, fact, factsPanel } from "./detail.js";
import { scheduleButtons } from "./view-schedules.js";

export class ScheduleView extends DetailView {
  constructor(root, route) {
    super(root, {
      kind: "Schedule", id: route.id, path: `/api/schedules/${encodeURIComponent(route.id)}`,
      back: ["#/schedules", "← All schedules"],
      notFound: `No schedule with id ${route.id} (or it was deleted).`, gap: 2000,
    });
  }

  render(s) {
    const fires = s.recentFires || [];
    const wf = s.workflow;
    const what = wf
      ? [fact("Workflow", h("span", { "data-testid": "schedule-workflow" }, wf.name))]
      : [fact("Job type", s.type),
        fact("Queue", s.queue),
        fact("Priority", s.priority),
        fact("Max attempts", s.maxAttempts),
        fact("Timeout", `${s.timeoutSeconds} s`)];
    const detail = wf
      ? panel(h("h2", {}, "Steps"),
        dataTable({ "data-testid": "schedule-steps" }, ["Step", "Type", "Depends on"],
          wf.steps.map((st) => h("tr", {},
            h("td", { className: "mono" }, st.name),
            h("td", {}, st.type),
            h("td", { className: "mono" }, st.dependsOn.join(", ") || "—")))))
      : panel(h("h2", {}, "Payload"), json(s.payload));
    const link = (f) => wf
      ? h("a", { href: `#/workflows/${f.id}`, className: "mono" }, shortId(f.id))
      : h("a", { href: `#/jobs/${f.id}`, className: "mono" }, shortId(f.id));
    replace(this.root,
      this.backLink(),
      this.heading(s.id,
        badge(s.enabled ? "enabled" : "paused"), h("span", { className: "spacer" }),
        scheduleButtons(s, (deleted) => { if (deleted) location.hash = "#/schedules"; else this.load(); })),
      h("div", { className: "grid2" },
        factsPanel("Definition",
          fact("Cron", h("span", { className: "mono" }, s.cron)),
          fact("Time zone", s.timezone),
          fact("Next fire", s.enabled ? when(s.nextFireAt) : "paused"),
          fact("Last fired", when(s.lastFiredAt)),
          ...what,
          fact("Misfire policy", s.misfirePolicy),
          fact("Overlap policy", s.overlapPolicy),
          fact("Created", when(s.createdAt))),
        detail),
      panel(h("h2", {}, "Recent fires"),
        fires.length === 0
          ? empty("It has not fired yet.")
          : dataTable({ "data-testid": "schedule-fires" }, ["Fire time", wf ? "Workflow" : "Job", "Status", "Created"], fires.map((f) => h("tr", {},
            h("td", {}, when(f.fireTime)),
            h("td", {}, link(f)),
            h("td", {}, badge(f.status)),
            h("td", {}, when(f.createdAt)))))));
  }
}
