/* What the page knows besides the current view's own data: the latest overview
 * snapshot, the meta (job types and statuses, GET /api/dashboard/meta), the view shown.
 *
 * The job statuses are the coordinator's (never spelled out here): `order` is the order
 * the page shows them in (the unfinished ones first, then the finished ones, each in the
 * server's order), `active` the unfinished ones (a job in one can be cancelled),
 * `terminal` the finished ones. The meta's `activeStatuses` and `terminalStatuses` when
 * it has them; else `terminal` (older coordinators), the active ones being the rest of
 * `statuses`. */

import { api } from "./api.js";

export const state = { overview: null, meta: null, view: null };

export const jobStatuses = { order: [], active: new Set(), terminal: new Set() };

/* Reads the meta into `state.meta` and `jobStatuses`. */
export async function loadMeta() {
  const meta = await api("/api/dashboard/meta");
  const all = meta.statuses;
  const terminal = new Set(meta.terminalStatuses);
  const active = new Set(meta.activeStatuses);
  jobStatuses.order = [...all.filter((s) => !terminal.has(s)), ...all.filter((s) => terminal.has(s))];
  jobStatuses.active = active;
  jobStatuses.terminal = terminal;
  state.meta = meta;
  return meta;
}
