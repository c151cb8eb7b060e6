/* The coordinator's HTTP API as the page calls it: JSON in and out, the CSRF token on
 * every call, the login page on a 401. */

export class ApiProblem extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body;
  }
}

/* The CSRF cookie set at login (none when authentication is off), sent back as a header
 * on every call: the coordinator requires it on writes the session cookie authenticates
 * (it is bound to the session: a value of another one does not pass). */
export function csrfToken() {
  const match = document.cookie.match(/(?:^|;\s*)scheduler_csrf=([^;]*)/);
  return match ? decodeURIComponent(match[1]) : null;
}

function signIn() { location.assign("/login"); }

/* Sign out: a POST (never a link a page elsewhere could follow) that ends the session on
 * the coordinator, not only in this browser; then the login page. */
export async function signOut() {
  const csrf = csrfToken();
  try {
    await fetch("/logout", { method: "POST", headers: csrf ? { "X-CSRF-Token": csrf } : {} });
  } finally {
    signIn();
  }
}

/* Read-your-writes with a read replica (docs/decisions/0030-read-replica.md): the GET
 * routes below read the replica, which may lag the primary, so the list a view reloads
 * right after its own write (cancel, retry, bulk, a queue paused) could show the old
 * state. After each write of this page, its reads of those routes ask for
 * `consistency=strong` (the primary) until a snapshot shows the replica has replayed
 * that write, and never when the snapshot says no replica is configured (a coordinator
 * without one needs nothing, and older ones may not know the parameter).
 *
 * Why until replayed rather than for the next reload or a fixed few seconds: each view
 * re-reads every second or so while snapshots arrive, so a strong first reload followed
 * by eventual ones would flick the row back to its old state for as long as the
 * replica lags, and a fixed delay is wrong whenever the lag is longer (replay paused,
 * a busy standby). The snapshot's `replica.lagSeconds` bounds the age of the oldest
 * change the replica has not replayed when measured, so a snapshot received
 * `REPLICA_MEASURE_MS` + lag after the write's answer vouches for it; `REPLICA_MEASURE_MS`
 * covers how old that measure may be when it arrives (the lag is cached 1 s on the
 * coordinator, pushed every second, plus transit). Only this page's own reads of the
 * views it shows turn strong meanwhile: a few requests a second to the primary at most. */
const REPLICA_MEASURE_MS = 3000;
const READS_THE_REPLICA = /^\/api\/(jobs|schedules|workflows|queues|audit|dashboard\/overview)(\/|\?|$)/;
let unreplayedWriteAt = null;  // performance.now() of the last write's answer, until replayed
let replicaConfigured = null;  // null until the first snapshot says

/* The page saw a snapshot (`GET /api/dashboard/overview` or the event stream): whether
 * a replica is configured, and whether it has replayed this page's last write. */
export function sawSnapshot(overview) {
  const replica = overview ? overview.replica : null;
  replicaConfigured = Boolean(replica);
  if (unreplayedWriteAt === null) return;
  const since = performance.now() - unreplayedWriteAt;
  if (!replica) { unreplayedWriteAt = null; return; }
  if (replica.readsFrom !== "replica" || replica.lagSeconds == null) return;  // unknown: stay strong
  if (since >= REPLICA_MEASURE_MS + replica.lagSeconds * 1000) unreplayedWriteAt = null;
}

/* Whether a GET of `path` now asks the primary (the comment above). */
export function readsStrong(path) {
  return unreplayedWriteAt !== null && replicaConfigured !== false && READS_THE_REPLICA.test(path)
    && !/[?&]consistency=/.test(path);
}

/* The parsed JSON answer of `path`; an ApiProblem (with the HTTP status and the
 * error body) when the status is not 2xx. A write makes the reads after it strong
 * while a replica may not have it yet (above). */
export async function api(path, { method = "GET", body } = {}) {
  if (method === "GET" && readsStrong(path)) path += (path.includes("?") ? "&" : "?") + "consistency=strong";
  const init = { method, headers: { Accept: "application/json" } };
  const csrf = csrfToken();
  if (csrf) init.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(path, init);
  } finally {
    // Any answer of a write, even an error (a bulk step may have changed rows before it
    // failed), or none (it may have committed): the reads after it read the primary.
    if (method !== "GET") unreplayedWriteAt = performance.now();
  }
  if (resp.status === 401) signIn();  // no (or an expired) login: ask for the token
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { message: text }; }
  if (!resp.ok) throw new ApiProblem(resp.status, data);
  return data;
}
