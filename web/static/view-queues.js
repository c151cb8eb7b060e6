/* The queues (#/queues): running and waiting jobs of each, pause and resume, the
 * concurrency limit, rate windows and key limits and how much of each is in use, and a
 * warning on a queue whose jobs wait with no live worker to take them.
 * One queue (#/queues?queue=<name>): the same in full, its busiest concurrency keys,
 * and the form that edits its flow control (one PATCH /api/queues/<name>).
 *
 * Every field of the answer past the first ones (key limits, limits, topKeys, workers,
 * warning) may be missing (an older coordinator): the page shows what it has. */

import { api } from "./api.js";
import { badge, dataTable, duration, empty, h, nextAt, number, panel, plural, replace, toast, useBar, when } from "./dom.js";
import { DetailView, fact, factsPanel } from "./detail.js";
import { ListView } from "./list.js";

// schema/wire.py's RATE_WINDOWS_MAX: windows per list.
const RATE_WINDOWS_MAX = 8;

function queueHref(name) { return `#/queues?queue=${encodeURIComponent(name)}`; }
function jobsHref(name) { return `#/jobs?queue=${encodeURIComponent(name)}`; }

async function queueCall(name, path, init, done) {
  try {
    const q = await api(`/api/queues/${encodeURIComponent(name)}${path}`, init);
    toast(done(q));
    return q;
  } catch (e) {
    toast(`Queue ${name}: ${e.message}`, { bad: true });
    return null;
  }
}

function pauseButton(q, after) {
  return q.paused
    ? h("button", { onclick: async () => { await queueCall(q.name, "/resume", { method: "POST" }, (r) => `Queue ${r.name} resumed`); after(); } }, "Resume")
    : h("button", { onclick: async () => { await queueCall(q.name, "/pause", { method: "POST" }, (r) => `Queue ${r.name} paused`); after(); } }, "Pause");
}

/* "100/1s" and, when more than one may start at once, its burst. */
function windowText(w) {
  return `${number(w.limit)}/${w.per}` + (w.burst > 1 ? ` (burst ${number(w.burst)})` : "");
}

function windowsText(list) {
  return Array.isArray(list) && list.length ? list.map(windowText).join(", ") : null;
}

function none(text = "none") { return h("span", { className: "muted" }, text); }

function rateLimitsText(q) { return windowsText(q.rateLimits) || none(); }

/* The per-key limits in a line: "at most 2 running per key; 10/1s per key". */
function keyLimitsText(q) {
  const parts = [];
  if (q.keyConcurrencyLimit != null) parts.push(`at most ${number(q.keyConcurrencyLimit)} running per key`);
  const windows = windowsText(q.keyRateLimits);
  if (windows) parts.push(`${windows} per key`);
  return parts.length ? parts.join("; ") : none();
}

function waitingCount(q) { return number(q.waiting) + (q.waitingCapped ? "+" : ""); }

/* The warning a queue carries, in words (null when it has none). */
function warningText(q) {
  if (!q.warning) return null;
  if (q.warning === "no_worker") {
    const n = Number(q.waiting) || 0;
    const jobs = q.waitingCapped ? `More than ${plural(n, "job")} wait` : `${plural(n, "job")} ${n === 1 ? "waits" : "wait"}`;
    return [`${jobs} and no live worker takes jobs from this queue: start a worker with `,
      h("code", {}, `--queues ${q.name}`), " or ", h("code", {}, "*")];
  }
  return `Warning: ${q.warning}`;
}

function warningBox(q, { named = false } = {}) {
  const text = warningText(q);
  if (!text) return null;
  return h("div", { className: "warning", "data-testid": "queue-warning", "data-warning-queue": q.name, "data-warning": q.warning },
    named ? [h("a", { href: queueHref(q.name) }, q.name), ": "] : null, text);
}

/* One entry of `limits` as a bar and a figure: "7 of 10 running", "rate 100/1s: 40
 * used, next at T". */
function limitUse(l, compact) {
  let text;
  if (l.kind === "concurrency") {
    text = [`${number(l.used)} of ${number(l.limit)} running`];
  } else if (l.kind === "rate") {
    const wait = l.until ? (new Date(l.until).getTime() - Date.now()) / 1000 : 0;
    const head = `rate ${number(l.limit)}/${l.per || "?"}: ${number(l.used)} used`;
    if (compact) text = [head, wait > 0 ? `, next in ${duration(wait)}` : ""];
    else text = [`${head}, `, wait > 0 ? ["next at ", nextAt(l.until)] : "a start is allowed now"];
  } else {
    text = [`${l.kind}: ${number(l.used)} of ${number(l.limit)}`];
  }
  const label = [text].flat(Infinity).filter((t) => typeof t === "string").join("");
  return h("li", { className: "use", "data-testid": "limit-use", "data-kind": l.kind },
    useBar(l.used, l.limit, label), h("span", {}, text));
}

function limitsUse(q, { compact = false } = {}) {
  const limits = Array.isArray(q.limits) ? q.limits : [];
  if (limits.length === 0) return compact ? none("—") : empty("No limit: every job may start as soon as a worker has a slot.");
  return h("ul", { className: compact ? "uses compact" : "uses", "aria-label": `Limits of ${q.name} in use` }, limits.map((l) => limitUse(l, compact)));
}

function limitForm(q, after) {
  const input = h("input", {
    type: "number", min: "1", max: "100000", step: "1", className: "limit-input",
    value: q.concurrencyLimit == null ? "" : String(q.concurrencyLimit),
    placeholder: "none", "aria-label": `Concurrency limit of ${q.name}`,
  });
  return h("form", {
    className: "row", novalidate: true, onsubmit: async (ev) => {
      ev.preventDefault();
      const text = input.value.trim();
      const limit = text === "" ? null : Number(text);
      if (limit !== null && !(Number.isInteger(limit) && limit >= 1 && limit <= 100000)) {
        toast("A limit is a whole number from 1 to 100000, or empty for none", { bad: true });
        return;
      }
      await queueCall(q.name, "", { method: "PATCH", body: { concurrencyLimit: limit } },
        (r) => r.concurrencyLimit == null ? `Queue ${r.name}: no limit` : `Queue ${r.name}: at most ${r.concurrencyLimit} running`);
      after();
    },
  }, input, h("button", { type: "submit" }, "Set limit"));
}

class QueueListView extends ListView {
  constructor(root) { super(root, { title: "Queues", path: "/api/queues", what: "queues", gap: 2000 }); }

  none() { return empty("No queues yet: a queue appears when a job names it."); }

  table(items) {
    const after = () => this.load(true);
    return [
      items.map((q) => warningBox(q, { named: true })),
      dataTable({ className: "queues", "data-testid": "queues" },
        ["Queue", "State", ["Running", "num"], ["Waiting", "num"], "Concurrency limit",
          ["Rate limits", "opt"], ["Key limits", "opt"], ["In use", "opt"], ["Workers", "num opt"], ""],
        items.map((q) => h("tr", { "data-queue": q.name },
          h("td", {}, h("a", { href: jobsHref(q.name) }, q.name)),
          h("td", {}, badge(q.paused ? "paused" : "active"),
            q.warning ? [" ", h("span", { className: "badge s-warn", title: "no live worker takes jobs from this queue" }, "no worker")] : null),
          h("td", { className: "num" }, number(q.running) + (q.concurrencyLimit == null ? "" : ` / ${number(q.concurrencyLimit)}`)),
          h("td", { className: "num" }, waitingCount(q)),
          h("td", {}, limitForm(q, after)),
          h("td", { className: "opt", "data-testid": "rate-limits" }, rateLimitsText(q)),
          h("td", { className: "opt keys", "data-testid": "key-limits" }, keyLimitsText(q)),
          h("td", { className: "opt" }, limitsUse(q, { compact: true })),
          h("td", { className: "num opt" }, q.workers == null ? "—" : number(q.workers)),
          h("td", {}, h("div", { className: "row" }, pauseButton(q, after),
            h("a", { href: queueHref(q.name), "aria-label": `Settings of ${q.name}` }, "Settings")))))),
    ];
  }
}

// --- one queue ---------------------------------------------------------------------

/* The flow-control settings of an answer, as the form compares them: absent is none. */
function windowsOf(list) {
  return Array.isArray(list) && list.length
    ? list.map((w) => ({ limit: w.limit, per: w.per, burst: w.burst == null ? 1 : w.burst })) : null;
}

function settingsOf(q) {
  return {
    concurrencyLimit: q.concurrencyLimit == null ? null : q.concurrencyLimit,
    rateLimits: windowsOf(q.rateLimits),
    keyConcurrencyLimit: q.keyConcurrencyLimit == null ? null : q.keyConcurrencyLimit,
    keyRateLimits: windowsOf(q.keyRateLimits),
  };
}

/* What an input holds as the body sends it: a number when it reads as one, else the
 * text as typed (the server refuses it, naming the field); undefined when blank. */
function inputValue(input) {
  const text = input.value.trim();
  if (text === "") return undefined;
  const n = Number(text);
  return Number.isFinite(n) ? n : text;
}

function errorSlot(field) {
  return h("span", { className: "field-error", "data-error-for": field, hidden: true });
}

/* One limit input with its label and the place of its error. */
function limitField(field, label, value, placeholder) {
  const input = h("input", {
    type: "number", min: "1", max: "100000", step: "1", className: "limit-input", name: field,
    "data-field": field, placeholder, "aria-label": label, value: value == null ? "" : String(value),
  });
  return { input, el: h("label", { className: "field" }, label, input, errorSlot(field)) };
}

/* The rows of one list of rate windows (limit, per, burst), added and removed. */
class WindowsEditor {
  constructor({ field, label, legend, windows, onChange }) {
    Object.assign(this, { field, label, onChange });
    this.rows = h("div", { className: "windows" });
    this.none = h("p", { className: "muted small" }, "No window: starts are not limited by rate.");
    this.addButton = h("button", { type: "button", onclick: () => {
      const row = this.addRow(null);
      this.renumber();
      this.onChange();
      row.querySelector("input").focus();
    } }, `Add ${label.toLowerCase()}`);
    this.el = h("fieldset", { className: "windows-field", "data-field": field },
      h("legend", {}, legend), this.none, this.rows,
      h("div", { className: "row" }, this.addButton, errorSlot(field)));
    for (const w of windows || []) this.addRow(w);
    this.renumber();
  }

  addRow(w) {
    const input = (part, attrs, value) => h("input", { ...attrs, value, "data-part": part });
    const row = h("div", { className: "window-row" },
      h("label", { className: "field" }, "Limit",
        input("limit", { type: "number", min: "1", step: "1", className: "limit-input" }, w ? String(w.limit) : ""),
        errorSlot("")),
      h("label", { className: "field" }, "Per",
        input("per", { type: "text", className: "per-input", placeholder: "1s", autocomplete: "off", spellcheck: "false" }, w ? w.per : ""),
        errorSlot("")),
      h("label", { className: "field" }, "Burst",
        input("burst", { type: "number", min: "1", step: "1", className: "limit-input", placeholder: "1" }, w ? String(w.burst) : ""),
        errorSlot("")),
      h("button", { type: "button", className: "danger", onclick: () => {
        row.remove();
        this.renumber();
        this.onChange();
      } }, "Remove"),
      errorSlot(""));
    this.rows.append(row);
    return row;
  }

  /* Each row's fields named by its place in the list the PATCH sends
   * ("rateLimits[1].per"), which is how a 400 names them. */
  renumber() {
    const rows = [...this.rows.children];
    rows.forEach((row, i) => {
      const base = `${this.field}[${i}]`;
      for (const input of row.querySelectorAll("input")) {
        const part = input.dataset.part;
        input.dataset.field = `${base}.${part}`;
        input.setAttribute("aria-label", `${this.label} ${i + 1} ${part}`);
        input.nextElementSibling.dataset.errorFor = `${base}.${part}`;
      }
      row.querySelector("button").setAttribute("aria-label", `Remove ${this.label.toLowerCase()} ${i + 1}`);
      row.lastElementChild.dataset.errorFor = base;
    });
    this.none.hidden = rows.length > 0;
    this.addButton.disabled = rows.length >= RATE_WINDOWS_MAX;
  }

  /* Rows left entirely blank are dropped before saving (nothing to send). */
  dropBlank() {
    for (const row of [...this.rows.children]) {
      if ([...row.querySelectorAll("input")].every((i) => i.value.trim() === "")) row.remove();
    }
    this.renumber();
  }

  /* The windows as the body sends them (null: none); burst left out when blank. */
  value() {
    const rows = [...this.rows.children];
    if (rows.length === 0) return null;
    return rows.map((row) => {
      const w = {};
      for (const input of row.querySelectorAll("input")) {
        const part = input.dataset.part;
        const v = part === "per" ? (input.value.trim() || undefined) : inputValue(input);
        if (v !== undefined) w[part] = v;
      }
      return w;
    });
  }
}

function sameWindows(sent, saved) {
  const norm = (list) => list === null ? null
    : list.map((w) => ({ limit: w.limit, per: w.per, burst: w.burst === undefined ? 1 : w.burst }));
  return JSON.stringify(norm(sent)) === JSON.stringify(saved);
}

/* The form editing a queue's flow control. Save sends one PATCH of the fields that
 * differ from what the form was filled with (a rate list sent again would start its
 * buckets afresh); a 400 shows the server's message next to the field it names and
 * changes nothing else. */
class SettingsForm {
  constructor(q, { onSaved, onReset }) {
    this.name = q.name;
    this.initial = settingsOf(q);
    this.key = JSON.stringify(this.initial);
    this.dirty = false;
    const touch = () => { this.dirty = true; };
    this.concurrency = limitField("concurrencyLimit", "Concurrency limit", this.initial.concurrencyLimit, "none");
    this.rates = new WindowsEditor({ field: "rateLimits", label: "Rate window", legend: "Rate limits of the queue",
      windows: this.initial.rateLimits, onChange: touch });
    this.keyConcurrency = limitField("keyConcurrencyLimit", "Key concurrency limit", this.initial.keyConcurrencyLimit, "none");
    this.keyRates = new WindowsEditor({ field: "keyRateLimits", label: "Key rate window", legend: "Rate limits of each key",
      windows: this.initial.keyRateLimits, onChange: touch });
    this.saveButton = h("button", { type: "submit", className: "primary" }, "Save");
    this.form = h("form", { className: "settings", novalidate: true, "aria-label": `Flow control of ${q.name}`,
      oninput: touch, onsubmit: (ev) => { ev.preventDefault(); this.save(onSaved); } },
    h("div", { className: "row settings-limits" }, this.concurrency.el, this.keyConcurrency.el),
    h("p", { className: "muted small" },
      "Concurrency: how many of its jobs run at once across the cluster (per key: of the jobs with one concurrency key). "
      + "A rate window allows at most limit starts in any per (a whole number and ms, s, m, h or d, up to 1d); "
      + "burst is how many may start at once (1 when blank: evenly spaced). Empty: no limit."),
    this.rates.el, this.keyRates.el,
    h("div", { className: "row" }, this.saveButton,
      h("button", { type: "button", onclick: onReset }, "Reset"), errorSlot("body")));
    this.el = panel(h("h2", {}, "Flow control"), this.form);
  }

  /* The fields to send: each that differs from what the form was filled with. */
  changes() {
    const body = {};
    for (const [field, input] of [["concurrencyLimit", this.concurrency.input], ["keyConcurrencyLimit", this.keyConcurrency.input]]) {
      const v = inputValue(input);
      const value = v === undefined ? null : v;
      if (value !== this.initial[field]) body[field] = value;
    }
    for (const [field, editor] of [["rateLimits", this.rates], ["keyRateLimits", this.keyRates]]) {
      const value = editor.value();
      if (!sameWindows(value, this.initial[field])) body[field] = value;
    }
    return body;
  }

  clearErrors() {
    for (const slot of this.form.querySelectorAll(".field-error")) { slot.textContent = ""; slot.hidden = true; }
    for (const input of this.form.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
  }

  /* The message next to the field it names, or next to the nearest enclosing one
   * ("rateLimits[0]", then "rateLimits"); next to Save when none is on the form. */
  showError(field, message) {
    const slots = [...this.form.querySelectorAll("[data-error-for]")];
    let name = field || "body";
    let slot = null;
    for (;;) {
      slot = slots.find((s) => s.dataset.errorFor === name) || null;
      if (slot || name === "body") break;
      const shorter = name.replace(/(\.[^.[\]]+|\[\d+\])$/, "");
      name = shorter === name || shorter === "" ? "body" : shorter;
    }
    slot.textContent = name === "body" && field && field !== "body" ? `${field}: ${message}` : message;
    slot.hidden = false;
    const input = [...this.form.querySelectorAll("[data-field]")].find((i) => i.dataset.field === name);
    if (input && input.tagName === "INPUT") { input.setAttribute("aria-invalid", "true"); input.focus(); }
  }

  async save(onSaved) {
    this.clearErrors();
    this.rates.dropBlank();
    this.keyRates.dropBlank();
    const body = this.changes();
    if (Object.keys(body).length === 0) { toast(`Queue ${this.name}: nothing changed`); return; }
    this.saveButton.disabled = true;
    let q;
    try {
      q = await api(`/api/queues/${encodeURIComponent(this.name)}`, { method: "PATCH", body });
    } catch (e) {
      // web/errors.py's body is {error, message, field}; also read {error: {message, field}}.
      const b = (e.body && typeof e.body.error === "object" && e.body.error) || e.body || {};
      if (e.status === 400) this.showError(b.field, b.message || e.message);
      else { this.showError("body", `Not saved: ${e.message}`); toast(`Queue ${this.name}: not saved: ${e.message}`, { bad: true }); }
      return;
    } finally {
      this.saveButton.disabled = false;
    }
    toast(`Queue ${q.name}: flow control saved`);
    onSaved(q);
  }
}

class QueueView extends DetailView {
  constructor(root, name) {
    super(root, {
      kind: "Queue", id: name, path: `/api/queues/${encodeURIComponent(name)}`,
      back: ["#/queues", "← All queues"], gap: 1000,
      notFound: `No queue named ${name}: a queue name is 1 to 64 letters, digits, _ . or -.`,
    });
    this.top = h("div", {});
  }

  enter() {
    super.enter();
    document.title = `Queue ${this.id} · scheduler-core`;
  }

  /* Everything but the form follows each answer; the form is filled again only when
   * untouched and the settings changed (or after a save, or on Reset). */
  render(q, { refill = false } = {}) {
    this.last = q;
    const after = () => this.load();
    const keys = Array.isArray(q.topKeys) ? q.topKeys : [];
    replace(this.top,
      this.backLink(),
      this.heading(q.name, badge(q.paused ? "paused" : "active"), h("span", { className: "spacer" }),
        h("a", { href: jobsHref(q.name) }, "Jobs of this queue"), pauseButton(q, after)),
      warningBox(q),
      h("div", { className: "grid2" },
        factsPanel("Load and limits",
          fact("Running", number(q.running)),
          fact("Waiting", waitingCount(q)),
          fact("Workers", q.workers == null ? none("—") : `${plural(q.workers, "live worker")} ${q.workers === 1 ? "takes" : "take"} jobs from it`),
          fact("Concurrency limit", q.concurrencyLimit == null ? none() : `at most ${number(q.concurrencyLimit)} running`),
          fact("Rate limits", h("span", { "data-testid": "rate-limits" }, rateLimitsText(q))),
          fact("Key limits", h("span", { "data-testid": "key-limits" }, keyLimitsText(q))),
          fact("Settings changed", q.updatedAt ? when(q.updatedAt) : none("never (defaults)"))),
        panel(h("h2", {}, "In use"), limitsUse(q))),
      panel(h("h2", {}, "Busiest keys"),
        keys.length === 0
          ? empty("No waiting or running job of this queue has a concurrency key.")
          : dataTable({ "data-testid": "top-keys" }, ["Key", ["Waiting", "num"], ["Running", "num"]],
            keys.map((k) => h("tr", { "data-key": k.key },
              h("td", { className: "mono wrap" }, k.key),
              h("td", { className: "num" }, number(k.waiting)),
              h("td", { className: "num" }, number(k.running)
                + (q.keyConcurrencyLimit == null ? "" : ` of ${number(q.keyConcurrencyLimit)}`)))))));
    const settings = this.settings;
    if (refill || !settings || (!settings.dirty && settings.key !== JSON.stringify(settingsOf(q)))) {
      this.settings = new SettingsForm(q, {
        onSaved: (saved) => { this.render(saved, { refill: true }); this.load(); },
        onReset: () => this.render(this.last, { refill: true }),
      });
    }
    if (this.root.firstElementChild !== this.top || !this.root.contains(this.settings.el)) {
      replace(this.root, this.top, this.settings.el);
    }
  }
}

/* #/queues lists them; #/queues?queue=<name> shows one. */
export class QueuesView {
  constructor(root, route) {
    const name = route && route.params ? route.params.get("queue") : null;
    this.view = name ? new QueueView(root, name) : new QueueListView(root);
  }

  enter() { this.view.enter(); }

  leave() { this.view.leave(); }

  onOverview() { this.view.onOverview(); }
}
