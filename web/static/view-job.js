/* One job (#/jobs/<id>): its fields, payload, result, last error and runs, with Cancel
 * and Retry (the public API's POST /api/jobs/<id>/cancel and /retry); a waiting job
 * says why it waits (its queue paused, a concurrency or rate limit of its queue or of
 * its concurrency key, no worker for its queue, ...). */

import { api } from "./api.js";
import { badge, dataTable, duration, empty, h, json, nextAt, panel, progressBar, replace, shortId, toast, when } from "./dom.js";
import { DetailView, fact, factsPanel } from "./detail.js";
import { jobStatuses } from "./state.js";

/* The statuses a retry accepts (the retry query in schema/queries/jobs.sql; the meta
 * does not list them): the finished ones but Succeeded, and Failed (waiting to retry). */
const RETRYABLE = ["DeadLetter", "Cancelled", "Failed"];
const RETRYABLE_TEXT = `${RETRYABLE.slice(0, -1).join(", ")} or ${RETRYABLE.at(-1)}`;

/* Why a waiting job has not started (the answer's `waiting`), in words; null when the
 * answer says nothing (a job not waiting, or an older coordinator). */
function waitingWords(job) {
  const w = job.waiting;
  if (!w || !w.reason) return null;
  const queue = h("a", { href: `#/queues?queue=${encodeURIComponent(job.queue)}` }, job.queue);
  const key = job.concurrencyKey ? h("span", { className: "mono" }, job.concurrencyKey) : "its key";
  const of = w.running != null && w.limit != null ? `${w.running} of ${w.limit} running` : "as many running as its limit allows";
  const due = w.until && new Date(w.until).getTime() > Date.now();
  // Soon (a rate window's next start): the time of day and how soon; else the date.
  const soon = due ? [" at ", nextAt(w.until)] : " now";
  const at = w.until || job.runAt ? [" at ", when(w.until || job.runAt)] : "";
  switch (w.reason) {
    case "scheduled": return ["waits: scheduled to run", at];
    case "retry_backoff": return ["waits: its next attempt, after a failure, is due", at];
    case "queue_paused": return ["waits: queue ", queue, " is paused"];
    case "queue_concurrency": return ["waits: queue ", queue, ` has ${of}`];
    case "queue_rate": return ["waits: the queue's rate limit allows the next start", soon];
    case "key_concurrency": return ["waits: key ", key, ` has ${of}`];
    case "key_rate": return ["waits: the rate limit of key ", key, " allows the next start", soon];
    case "depends_on": if (!(w.parents || []).length) return ["waits: its parents succeeded; a coordinator is releasing it"];
      return ["waits: for ", String((w.parents || []).length),
      (w.parents || []).length === 1 ? " job it depends on to succeed: " : " jobs it depends on to succeed: ",
      ...jobLinks(w.parents || [], "waiting-parent")];
    case "no_worker": return ["waits: no live worker takes jobs from queue ", queue, ": start a worker with ",
      h("code", {}, `--queues ${job.queue}`), " or ", h("code", {}, "*")];
    case "ready": return ["ready: nothing holds it, the next claim by a worker may take it"];
    case "validating": return ["waits: enqueued through SQL, its type and payload are being checked by a coordinator"];
    default: return [`waits: ${w.reason}`];
  }
}

// Links to jobs (parents, children), by short id, separated by spaces.
function jobLinks(ids, testid) {
  const out = [];
  ids.forEach((id, i) => {
    if (i) out.push(" ");
    out.push(h("a", { href: `#/jobs/${id}`, className: "mono", "data-testid": testid }, shortId(id)));
  });
  return out;
}

export class JobView extends DetailView {
  constructor(root, route) {
    super(root, {
      kind: "Job", id: route.id, path: `/api/jobs/${encodeURIComponent(route.id)}`,
      back: ["#/jobs", "← All jobs"], notFound: `No job with id ${route.id}.`, gap: 1000,
    });
  }

  async act(action) {
    const path = `/api/jobs/${this.id}/${action}`;
    try {
      const job = action === "retry"
        ? await api(path, { method: "POST", body: { reason: "retried from the dashboard" } })
        : await api(path, { method: "POST" });
      toast(action === "cancel"
        ? (jobStatuses.terminal.has(job.status) ? "Cancelled" : "Cancel requested: the worker stops it within a heartbeat")
        : `Retried: the job is ${job.status}`);
      this.render(job);
      this.load();
    } catch (e) {
      toast(`${action === "cancel" ? "Cancel" : "Retry"} refused: ${e.message}`, { bad: true });
      this.load();
    }
  }

  render(job) {
    const cancellable = jobStatuses.active.has(job.status) && !(job.status === "Running" && job.cancelRequested);
    const retryable = RETRYABLE.includes(job.status);
    const runs = job.runs || [];
    const waiting = waitingWords(job);
    replace(this.root,
      this.backLink(),
      this.heading(job.id,
        h("span", { "data-testid": "job-status" }, badge(job.status)),
        job.cancelRequested && !jobStatuses.terminal.has(job.status) ? h("span", { className: "muted small" }, "cancel requested") : null,
        h("span", { className: "spacer" }),
        h("button", { className: "danger", disabled: !cancellable, onclick: () => this.act("cancel"),
          title: cancellable ? "Cancel the job (a running one is stopped by its worker)" : `A ${job.status} job cannot be cancelled` }, "Cancel"),
        h("button", { disabled: !retryable, onclick: () => this.act("retry"),
          title: retryable ? "Run it again now, with one more attempt" : `Only ${RETRYABLE_TEXT} jobs can be retried` }, "Retry")),
      waiting ? h("p", { className: "waiting", "data-testid": "job-waiting", "data-reason": job.waiting.reason }, waiting) : null,
      job.progress != null ? h("p", { className: "job-progress-row" }, "Progress ", progressBar(job)) : null,
      h("div", { className: "grid2" },
        factsPanel("Details",
          fact("Type", job.type),
          fact("Queue", h("a", { href: `#/queues?queue=${encodeURIComponent(job.queue)}` }, job.queue)),
          job.concurrencyKey ? fact("Concurrency key", h("span", { className: "mono", "data-testid": "concurrency-key" }, job.concurrencyKey)) : null,
          fact("Priority", job.priority),
          fact("Attempts", `${job.attempts} of ${job.maxAttempts}`),
          job.snoozes ? fact("Snoozes", h("span", { "data-testid": "snoozes" }, String(job.snoozes))) : null,
          fact("Timeout", `${job.timeoutSeconds} s`),
          fact("Run at", when(job.runAt)),
          fact("Created", when(job.createdAt)),
          fact("Started", when(job.startedAt)),
          fact("Finished", when(job.finishedAt)),
          fact("Updated", when(job.updatedAt)),
          job.idempotencyKey ? fact("Idempotency key", h("span", { className: "mono" }, job.idempotencyKey)) : null,
          job.scheduleId ? fact("Schedule", h("a", { href: `#/schedules/${job.scheduleId}`, className: "mono" }, shortId(job.scheduleId))) : null,
          job.fireTime ? fact("Fire time", when(job.fireTime)) : null,
          job.retryReason ? fact("Retry reason", job.retryReason) : null,
          job.dependsOn ? fact("Depends on", h("span", { "data-testid": "parents" }, ...jobLinks(job.dependsOn, "parent"))) : null,
          job.dependents ? fact("Dependents", h("span", { "data-testid": "children" }, ...jobLinks(job.dependents, "child"))) : null),
        panel(
          h("h2", {}, "Payload"), json(job.payload),
          h("h2", {}, "Result"),
          job.result === null || job.result === undefined
            ? empty(job.status === "Succeeded" ? "The job returned nothing." : "No result yet: only a Succeeded job has one.")
            : json(job.result),
          job.lastError ? [h("h2", {}, "Last error"), h("div", { className: "error-text" }, job.lastError)] : null,
          job.meta ? [h("h2", {}, "Meta"), h("div", { "data-testid": "job-meta" }, json(job.meta))] : null)),
      panel(
        h("h2", {}, `Runs (${runs.length})`),
        runs.length === 0
          ? empty(job.status === "Scheduled"
            ? "Not run yet: it runs at its run-at time, when a worker has a free slot."
            : "Not run yet: every claim by a worker adds a run here.")
          : dataTable({ "data-testid": "runs" },
            [["#", "num"], "Worker", "Started", "Finished", ["Took", "num"], "Outcome", "Error"],
            runs.map((r) => h("tr", { "data-testid": "run-row" },
              h("td", { className: "num" }, r.attempt),
              h("td", { className: "mono wrap" }, r.workerId),
              h("td", {}, when(r.startedAt)),
              h("td", {}, r.finishedAt ? when(r.finishedAt) : h("span", { className: "muted" }, `lease until ${new Date(r.leaseExpiresAt).toLocaleTimeString()}`)),
              h("td", { className: "num" }, r.finishedAt ? duration((new Date(r.finishedAt) - new Date(r.startedAt)) / 1000) : "—"),
              h("td", {}, r.outcome ? badge(r.outcome) : badge("Running")),
              h("td", { className: "error-text wrap" }, r.error || ""))))));
  }
}
