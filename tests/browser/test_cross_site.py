"""Issue 12, item 4 in a real headless Chromium: a page of another site (here another
loopback port: another origin to the browser) attacks a coordinator without tokens,
the `just up` default, with what a browser lets any page send without permission: an
HTML form posting a JSON-shaped ``text/plain`` body that would create a ``file_write``
job, and ``fetch`` calls in ``no-cors`` mode (sent, answer unreadable) and in ``cors``
mode (a preflight first). Nothing may be created or changed."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.conftest import WAIT_MS
from tests.support import Coordinator, free_port, query

# The form's one field: name + "=" + value is a JSON document (text/plain encoding).
FORM_PAGE = """<!doctype html><html><body>
<form id="attack" method="post" action="{coordinator}/api/jobs" enctype="text/plain">
<input type="hidden" name='{{"type": "file_write", "payload": {{"fileName": "pwned.txt", "content": "x'
       value='"}}}}'>
<button type="submit">Win a prize</button>
</form></body></html>"""

FETCH_PAGE = """<!doctype html><html><body><pre id="out"></pre><script>
const c = "{coordinator}";
const job = JSON.stringify({{type: "file_write", payload: {{fileName: "pwned-fetch.txt", content: "x"}}}});
const attempts = {{
  "no-cors text/plain job": () => fetch(c + "/api/jobs", {{method: "POST", mode: "no-cors",
      headers: {{"Content-Type": "text/plain"}}, body: job}}),
  "no-cors queue pause": () => fetch(c + "/api/queues/default/pause", {{method: "POST", mode: "no-cors"}}),
  "no-cors seed": () => fetch(c + "/api/seed", {{method: "POST", mode: "no-cors"}}),
  "cors json job": () => fetch(c + "/api/jobs", {{method: "POST", mode: "cors",
      headers: {{"Content-Type": "application/json"}}, body: job}}),
  "cors queue patch": () => fetch(c + "/api/queues/default", {{method: "PATCH", mode: "cors",
      headers: {{"Content-Type": "application/json"}}, body: '{{"paused": true}}'}}),
}};
Promise.allSettled(Object.values(attempts).map((f) => f())).then((results) => {{
  const out = document.getElementById("out");
  out.textContent = JSON.stringify(Object.keys(attempts).map((name, i) =>
      [name, results[i].status, results[i].value ? results[i].value.type : String(results[i].reason)]));
  out.dataset.done = "yes";
}});
</script></body></html>"""


@pytest.fixture(scope="module")
def evil_site(shared_coordinator: Coordinator) -> Iterator[str]:
    """Another site: a tiny HTTP server on another loopback port serving the pages."""
    pages = {"/form.html": FORM_PAGE.format(coordinator=shared_coordinator.url),
             "/fetch.html": FETCH_PAGE.format(coordinator=shared_coordinator.url)}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # the stdlib's name
            page = pages.get(self.path)
            body = (page or "not here").encode()
            self.send_response(200 if page else 404)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # no output from the test

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.set_default_timeout(WAIT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def nothing_changed(dsn: str) -> tuple[list[object], list[object]]:
    return (query(dsn, "SELECT id, type FROM jobs"), query(dsn, "SELECT * FROM queues"))


def test_a_form_on_another_site_creates_no_job(page: Page, evil_site: str,
                                               shared_coordinator: Coordinator,
                                               module_dsn: str) -> None:
    page.goto(evil_site + "/form.html")
    with page.expect_navigation(url=shared_coordinator.url + "/api/jobs"):
        page.get_by_role("button", name="Win a prize").click()
    assert "forbidden" in page.content()  # the coordinator's 403 for a foreign Origin
    assert ([], []) == nothing_changed(module_dsn)


def test_fetch_from_another_site_creates_and_changes_nothing(
        page: Page, evil_site: str, module_dsn: str) -> None:
    page.goto(evil_site + "/fetch.html")
    page.locator("#out[data-done='yes']").wait_for()
    results = page.locator("#out").text_content() or ""
    # no-cors requests were sent (an opaque answer), cors ones stopped at the preflight.
    assert results.count('"opaque"') == 3 and results.count("TypeError") == 2, results
    assert ([], []) == nothing_changed(module_dsn)
