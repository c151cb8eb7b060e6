/* One schedule (#/schedules/<id>): its definition, payload and recent fires, with the
 * list's pause, resume and delete. */

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
          fact("Job type", s.type),
          fact("Queue", s.queue),
          fact("Priority", s.priority),
          fact("Max attempts", s.maxAttempts),
          fact("Timeout", `${s.timeoutSeconds} s`),
          fact("Misfire policy", s.misfirePolicy),
          fact("Overlap policy", s.overlapPolicy),
          fact("Created", when(s.createdAt))),
        panel(h("h2", {}, "Payload"), json(s.payload))),
      panel(h("h2", {}, "Recent fires"),
        fires.length === 0
          ? empty("It has not fired yet.")
          : dataTable({}, ["Fire time", "Job", "Status", "Created"], fires.map((f) => h("tr", {},
            h("td", {}, when(f.fireTime)),
            h("td", {}, h("a", { href: `#/jobs/${f.id}`, className: "mono" }, shortId(f.id))),
            h("td", {}, badge(f.status)),
            h("td", {}, when(f.createdAt)))))));
  }
}
