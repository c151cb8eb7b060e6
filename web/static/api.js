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

/* The parsed JSON answer of `path`; an ApiProblem (with the HTTP status and the
 * error body) when the status is not 2xx. */
export async function api(path, { method = "GET", body } = {}) {
  const init = { method, headers: { Accept: "application/json" } };
  const csrf = csrfToken();
  if (csrf) init.headers["X-CSRF-Token"] = csrf;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  if (resp.status === 401) signIn();  // no (or an expired) login: ask for the token
  const text = await resp.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch (_) { data = { message: text }; }
  if (!resp.ok) throw new ApiProblem(resp.status, data);
  return data;
}
