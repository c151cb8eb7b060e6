/* The base of the pages listing what one API route answers (`{items: [...]}`). */

import { api } from "./api.js";
import { empty, h, replace, throttled } from "./dom.js";

/* One panel with the list, re-read at most every `gap` ms while snapshots arrive.
 * Subclasses give `none()` (the panel when the list is empty) and `table(items)`. */
export class ListView {
  constructor(root, { title, path, what, gap }) {
    Object.assign(this, { root, title, path, what });
    this.reload = throttled(() => this.load(), gap);
  }

  enter() {
    document.title = `${this.title} · scheduler-core`;
    this.body = h("section", { className: "panel" }, h("p", { className: "muted" }, "Loading…"));
    replace(this.root, h("h1", {}, this.title), this.body);
    this.load();
  }

  leave() { this.reload.cancel(); this.left = true; }

  onOverview() { this.reload(); }

  /* force: re-render even while an input of the list has focus (after the user's own
   * change went through). */
  async load(force = false) {
    let page;
    try {
      page = await api(this.path);
    } catch (e) {
      if (!this.left) replace(this.body, empty(`Could not list ${this.what}: ${e.message}`));
      return;
    }
    if (this.left) return;
    // Not while the user is typing in the list (a limit): the next snapshot re-reads it.
    const focused = document.activeElement;
    if (!force && focused && focused.tagName === "INPUT" && this.body.contains(focused)) return;
    const items = page.items || [];
    replace(this.body, items.length === 0 ? this.none() : this.table(items));
  }
}
