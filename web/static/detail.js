/* The base and the pieces of the pages showing one thing (a job, a schedule): a link
 * back to the list, a heading with its id and state, panels of facts, a table. */

import { api } from "./api.js";
import { empty, h, replace, shortId, throttled } from "./dom.js";

/* The thing the API answers at `path`, re-read at most every `gap` ms while
 * snapshots arrive. `kind` names it ("Job"), `back` is the list's [href, label],
 * `notFound` the text for an id the API does not know. Subclasses give `render(thing)`. */
export class DetailView {
  constructor(root, { kind, id, path, back, notFound, gap }) {
    Object.assign(this, { root, kind, id, path, back, notFound });
    this.reload = throttled(() => this.load(), gap);
  }

  enter() {
    document.title = `${this.kind} ${shortId(this.id)} · scheduler-core`;
    replace(this.root, h("p", { className: "muted" }, "Loading…"));
    this.load();
  }

  leave() { this.reload.cancel(); this.left = true; }

  onOverview() { this.reload(); }

  async load() {
    let thing;
    try {
      thing = await api(this.path);
    } catch (e) {
      if (this.left) return;
      replace(this.root, h("h1", {}, this.kind), empty(e.status === 404 || e.status === 400
        ? this.notFound : `Could not read the ${this.kind.toLowerCase()}: ${e.message}`),
        h("a", { href: this.back[0] }, this.back[1]));
      return;
    }
    if (!this.left) this.render(thing);
  }

  /* The link back to the list, above the heading. */
  backLink() {
    return h("a", { href: this.back[0], className: "small" }, this.back[1]);
  }

  /* The heading row: "<kind> <id>", then `rest` (its state, its buttons). */
  heading(id, ...rest) {
    return h("div", { className: "row" }, h("h1", {}, `${this.kind} `, h("span", { className: "mono" }, id)), ...rest);
  }
}

export function fact(label, value) {
  return [h("dt", {}, label), h("dd", {}, value)];
}

/* A panel titled `title` with `facts` (fact(...) pairs) as a definition list. */
export function factsPanel(title, ...facts) {
  return h("section", { className: "panel" }, h("h2", {}, title), h("dl", { className: "facts" }, facts));
}
