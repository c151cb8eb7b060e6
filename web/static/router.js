/* Hash routes: #/ overview, #/jobs?status=&type=&queue=&where=&tag=&createdAfter=...
 * (the search filter, view-jobs.js), #/jobs/<id>, #/queues,
 * #/schedules, #/schedules/<id>, #/workflows?status=, #/workflows/<id>,
 * #/audit?actor=&route=&status=. A route names a view (a class the entry module
 * passes to `start`); the current one is left, the new one entered. */

import { state } from "./state.js";

/* The navigation link (data-nav) each view lights up. */
const SECTIONS = {
  overview: "overview", jobs: "jobs", job: "jobs", schedules: "schedules",
  schedule: "schedules", queues: "queues", workflows: "workflows", workflow: "workflows",
  audit: "audit",
};

let views = {};

export function parseRoute() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean);
  if (parts[0] === "jobs" && parts[1]) return { name: "job", id: decodeURIComponent(parts[1]), params };
  if (parts[0] === "jobs") return { name: "jobs", params };
  if (parts[0] === "schedules" && parts[1]) return { name: "schedule", id: decodeURIComponent(parts[1]), params };
  if (parts[0] === "schedules") return { name: "schedules", params };
  if (parts[0] === "queues") return { name: "queues", params };
  if (parts[0] === "workflows" && parts[1]) return { name: "workflow", id: decodeURIComponent(parts[1]), params };
  if (parts[0] === "workflows") return { name: "workflows", params };
  if (parts[0] === "audit") return { name: "audit", params };
  return { name: "overview", params };
}

/* Shows the view of the current hash (again, if it is the one shown). Each view gets
 * an element of its own: a view that was left may still have a request in flight, and
 * what it renders when the answer comes lands in its own element, now detached, not over
 * the view that replaced it. */
export function navigate() {
  const route = parseRoute();
  if (state.view && state.view.leave) state.view.leave();
  const root = document.createElement("div");
  document.getElementById("view").replaceChildren(root);
  for (const a of document.querySelectorAll("[data-nav]")) {
    a.classList.toggle("active", a.dataset.nav === SECTIONS[route.name]);
  }
  const View = views[route.name];
  state.view = new View(root, route);
  state.view.enter();
}

/* Routes with `table` (route name -> view class) from now on, starting with the
 * current hash. */
export function start(table) {
  views = table;
  window.addEventListener("hashchange", navigate);
  navigate();
}
