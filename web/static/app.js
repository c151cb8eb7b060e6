/* scheduler-core dashboard: the entry module (index.html loads it with
 * <script type="module">). Plain JavaScript modules the browser loads itself: no build
 * step, no dependency.
 *
 *   api.js      the HTTP API (JSON, CSRF token, login on 401, strong reads after
 *               a write while a read replica may lag)
 *   dom.js      building elements (user data always as text), formatting, toast
 *   state.js    the overview snapshot, the meta and the job statuses from the server
 *   router.js   hash routes to views
 *   live.js     server-sent events (/api/dashboard/events) to the current view
 *   list.js     the base of the list pages; detail.js that of the one-thing pages
 *   view-*.js   one module per view
 *
 * Live data re-reads the jobs list, a job, the schedules and the workflows when a
 * snapshot arrives.
 * Every write goes through the public API. The modules sit side by side in web/static/
 * (no sub-folder): the wheel ships `static/*` and the API document lists those files.
 */

import { csrfToken, signOut } from "./api.js";
import { connect } from "./live.js";
import { start } from "./router.js";
import { loadMeta } from "./state.js";
import { AuditView } from "./view-audit.js";
import { JobView } from "./view-job.js";
import { JobsView } from "./view-jobs.js";
import { OverviewView } from "./view-overview.js";
import { QueuesView } from "./view-queues.js";
import { ScheduleView } from "./view-schedule.js";
import { SchedulesView } from "./view-schedules.js";
import { WorkflowView } from "./view-workflow.js";
import { WorkflowsView } from "./view-workflows.js";

const VIEWS = {
  overview: OverviewView, jobs: JobsView, job: JobView,
  schedules: SchedulesView, schedule: ScheduleView, queues: QueuesView,
  workflows: WorkflowsView, workflow: WorkflowView, audit: AuditView,
};

const logout = document.getElementById("logout");
logout.hidden = !csrfToken();  // signed in with a token
logout.addEventListener("click", signOut);
connect();
// The views show the server's job statuses: the first one waits for them.
loadMeta()
  .catch(() => { /* no statuses nor types: the views show what they can */ })
  .finally(() => start(VIEWS));
