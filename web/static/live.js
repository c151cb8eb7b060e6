/* Live data: server-sent events from /api/dashboard/events (an "overview" snapshot
 * every second and right after new jobs), passed to the current view's onOverview;
 * the badge in the header says whether they arrive. */

import { api, sawSnapshot } from "./api.js";
import { state } from "./state.js";

function setLive(kind, text) {
  const el = document.getElementById("live");
  el.dataset.state = kind;
  el.textContent = text;
}

export function connect() {
  const source = new EventSource("/api/dashboard/events");
  source.addEventListener("open", () => setLive("live", "live"));
  source.addEventListener("overview", (e) => {
    state.overview = JSON.parse(e.data);
    sawSnapshot(state.overview);
    setLive("live", "live");
    if (state.view && state.view.onOverview) state.view.onOverview();
  });
  source.addEventListener("problem", (e) => {
    const body = JSON.parse(e.data);
    setLive("problem", "database unreachable");
    document.getElementById("live").title = body.message;
  });
  source.addEventListener("error", () => {
    // EventSource reconnects by itself (the server asks for 2 s), except after an
    // error status: then a plain request tells whether the login is the reason (401).
    setLive("offline", "reconnecting");
    if (source.readyState === EventSource.CLOSED) {
      api("/api/dashboard/meta").then(() => setTimeout(connect, 2000), () => setTimeout(connect, 2000));
    }
  });
}
