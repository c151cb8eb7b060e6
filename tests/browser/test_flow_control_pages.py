"""Flow control on the dashboard, in a real headless Chromium against a real
coordinator (and, where jobs must start, a real worker): the queue page's settings
form (rate windows, key limits) read back through the API, a refused window shown next
to the field the server names with nothing changed, the no_worker warning, and a
waiting job's reason in words. Waits are Playwright's (expect) or wait_until."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import httpx
from playwright.sync_api import Locator, Page, Request, expect

from tests.browser.conftest import Dashboard
from tests.support import Coordinator, Worker, submit, wait_until

FAST = {"SCHEDULER_HEARTBEAT_SECONDS": "0.2", "SCHEDULER_CLAIM_WAIT_SECONDS": "2"}
FUTURE = "2999-01-01T00:00:00Z"
SETTINGS = ("concurrencyLimit", "rateLimits", "keyConcurrencyLimit", "keyRateLimits",
            "paused", "updatedAt")


def queue(url: str, name: str) -> dict[str, Any]:
    resp = httpx.get(f"{url}/api/queues/{name}", timeout=10)
    resp.raise_for_status()
    return dict(resp.json())


def settings(url: str, name: str) -> dict[str, Any]:
    """What a refused save must leave as it was (missing fields read as None)."""
    q = queue(url, name)
    return {k: q.get(k) for k in SETTINGS}


def patch(url: str, name: str, **body: Any) -> httpx.Response:
    return httpx.patch(f"{url}/api/queues/{name}", json=body, timeout=10)


def settings_form(page: Page, name: str) -> Locator:
    form = page.get_by_role("form", name=f"Flow control of {name}")
    expect(form).to_be_visible()
    return form


def patches(page: Page) -> list[Request]:
    """The PATCH requests the page sends from now on."""
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.method == "PATCH" else None)
    return sent


def job_waiting(url: str, job_id: str, reason: str) -> dict[str, Any]:
    """The job once the API says it waits for ``reason``."""
    def check() -> dict[str, Any] | None:
        job = httpx.get(f"{url}/api/jobs/{job_id}", timeout=10).json()
        return job if (job.get("waiting") or {}).get("reason") == reason else None
    return wait_until(check, timeout=15, what=f"job {job_id} waiting for {reason}")


def test_rate_windows_set_through_the_form_are_what_the_api_answers(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    submit(dashboard.url, queue="fc-rates", runAt=FUTURE)
    page = dashboard.open("#/queues?queue=fc-rates")
    expect(page.get_by_role("heading", name="Queue fc-rates", exact=True)).to_be_visible()
    form = settings_form(page, "fc-rates")
    expect(form).to_contain_text("No window")
    sent = patches(page)

    form.get_by_role("button", name="Add rate window").click()
    form.get_by_label("Rate window 1 limit").fill("100")
    form.get_by_label("Rate window 1 per").fill("1s")
    form.get_by_label("Rate window 1 burst").fill("10")
    form.get_by_role("button", name="Add rate window").click()
    form.get_by_label("Rate window 2 limit").fill("1000")
    form.get_by_label("Rate window 2 per").fill("1h")  # burst left blank: 1
    form.get_by_label("Concurrency limit", exact=True).fill("5")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#toast")).to_contain_text("Queue fc-rates: flow control saved")
    assert 1 == len(sent)  # one PATCH with both fields
    assert {"concurrencyLimit": 5,
            "rateLimits": [{"limit": 100, "per": "1s", "burst": 10},
                           {"limit": 1000, "per": "1h"}]} == sent[0].post_data_json
    q = queue(dashboard.url, "fc-rates")
    assert 5 == q["concurrencyLimit"]
    assert [{"limit": 100, "per": "1s", "burst": 10},
            {"limit": 1000, "per": "1h", "burst": 1}] == q["rateLimits"]
    expect(page.get_by_test_id("rate-limits")).to_have_text("100/1s (burst 10), 1,000/1h")
    # The form is filled again from the answer.
    expect(form.get_by_label("Rate window 2 burst")).to_have_value("1")

    # Removing a window sends the rest (and only the rates: the limit did not change).
    form.get_by_role("button", name="Remove rate window 1").click()
    expect(form.get_by_label("Rate window 1 per")).to_have_value("1h")
    form.get_by_role("button", name="Save").click()
    wait_until(lambda: len(sent) == 2, what="the second PATCH")
    assert {"rateLimits": [{"limit": 1000, "per": "1h", "burst": 1}]} == sent[1].post_data_json
    wait_until(lambda: [{"limit": 1000, "per": "1h", "burst": 1}]
               == queue(dashboard.url, "fc-rates")["rateLimits"], what="one window left")
    expect(page.get_by_test_id("rate-limits")).to_have_text("1,000/1h")

    form.get_by_role("button", name="Remove rate window 1").click()
    form.get_by_role("button", name="Save").click()
    wait_until(lambda: queue(dashboard.url, "fc-rates")["rateLimits"] is None,
               what="the windows removed")
    assert 5 == queue(dashboard.url, "fc-rates")["concurrencyLimit"]
    expect(page.get_by_test_id("rate-limits")).to_have_text("none")
    # Nothing changed: nothing sent.
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#toast")).to_contain_text("nothing changed")
    assert 3 == len(sent)
    assert [] == dashboard.errors


def test_key_limits_set_through_the_form_are_what_the_api_answers(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    page = dashboard.open("#/queues?queue=fc-keys")
    form = settings_form(page, "fc-keys")
    form.get_by_label("Key concurrency limit").fill("2")
    form.get_by_role("button", name="Add key rate window").click()
    form.get_by_label("Key rate window 1 limit").fill("10")
    form.get_by_label("Key rate window 1 per").fill("500ms")
    form.get_by_label("Key rate window 1 burst").fill("3")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#toast")).to_contain_text("Queue fc-keys: flow control saved")
    q = queue(dashboard.url, "fc-keys")
    assert 2 == q.get("keyConcurrencyLimit")
    assert [{"limit": 10, "per": "500ms", "burst": 3}] == q.get("keyRateLimits")
    assert q["concurrencyLimit"] is None and q["rateLimits"] is None
    expect(page.get_by_test_id("key-limits")).to_have_text(
        "at most 2 running per key; 10/500ms (burst 3) per key")

    form.get_by_label("Key concurrency limit").fill("")
    form.get_by_role("button", name="Remove key rate window 1").click()
    form.get_by_role("button", name="Save").click()
    wait_until(lambda: (lambda q: q.get("keyConcurrencyLimit") is None
                        and q.get("keyRateLimits") is None)(queue(dashboard.url, "fc-keys")),
               what="the key limits removed")
    expect(page.get_by_test_id("key-limits")).to_have_text("none")
    assert [] == dashboard.errors


def test_a_refused_window_is_shown_next_to_the_field_the_server_names_and_changes_nothing(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    name = "fc-bad"
    patch(dashboard.url, name, concurrencyLimit=4,
          rateLimits=[{"limit": 5, "per": "1s"}]).raise_for_status()
    before = settings(dashboard.url, name)
    page = dashboard.open(f"#/queues?queue={name}")
    form = settings_form(page, name)
    expect(form.get_by_label("Rate window 1 per")).to_have_value("1s")
    errors = form.locator(".field-error:not([hidden])")
    expect(errors).to_have_count(0)

    # per "2x": the server's message, as it answers the same body, next to that input.
    refused = patch(dashboard.url, name, concurrencyLimit=9,
                    rateLimits=[{"limit": 5, "per": "2x", "burst": 1}])
    assert 400 == refused.status_code
    assert "rateLimits[0].per" == refused.json()["field"]
    form.get_by_label("Concurrency limit", exact=True).fill("9")
    form.get_by_label("Rate window 1 per").fill("2x")
    form.get_by_role("button", name="Save").click()
    shown = form.locator("[data-error-for='rateLimits[0].per']")
    expect(shown).to_have_text(refused.json()["message"])
    expect(shown).to_be_visible()
    expect(errors).to_have_count(1)
    expect(form.get_by_label("Rate window 1 per")).to_have_attribute("aria-invalid", "true")
    # The field and its message sit together (the message is the input's next sibling).
    assert "rateLimits[0].per" == form.get_by_label("Rate window 1 per").evaluate(
        "el => el.nextElementSibling.dataset.errorFor")
    assert before == settings(dashboard.url, name)
    # What the user typed stays; the rest of the page still shows the stored settings.
    expect(form.get_by_label("Concurrency limit", exact=True)).to_have_value("9")
    expect(page.get_by_test_id("rate-limits")).to_have_text("5/1s")
    expect(page.locator("#toast")).not_to_contain_text("saved")

    # burst above the window's limit.
    refused = patch(dashboard.url, name, concurrencyLimit=9,
                    rateLimits=[{"limit": 5, "per": "1s", "burst": 50}])
    assert 400 == refused.status_code
    assert "rateLimits[0].burst" == refused.json()["field"]
    form.get_by_label("Rate window 1 per").fill("1s")
    form.get_by_label("Rate window 1 burst").fill("50")
    form.get_by_role("button", name="Save").click()
    shown = form.locator("[data-error-for='rateLimits[0].burst']")
    expect(shown).to_have_text(refused.json()["message"])
    expect(shown).to_contain_text("expected at most the window's limit (5), found 50")
    expect(errors).to_have_count(1)  # the earlier message is gone
    expect(form.get_by_label("Rate window 1 per")).not_to_have_attribute("aria-invalid", "true")
    assert before == settings(dashboard.url, name)
    expect(page.get_by_test_id("rate-limits")).to_have_text("5/1s")
    dashboard.screenshot("queue-settings-refused")

    # Put right, it saves; the messages go.
    form.get_by_label("Rate window 1 burst").fill("5")
    form.get_by_role("button", name="Save").click()
    expect(page.locator("#toast")).to_contain_text("flow control saved")
    expect(errors).to_have_count(0)
    q = queue(dashboard.url, name)
    assert (9, [{"limit": 5, "per": "1s", "burst": 5}]) == (q["concurrencyLimit"], q["rateLimits"])
    # Chromium reports the API's two 400s itself; the page adds no error of its own.
    assert 2 == len(dashboard.errors), dashboard.errors
    assert all("status of 400" in e for e in dashboard.errors), dashboard.errors


def test_a_queue_with_waiting_jobs_and_no_worker_is_flagged(
        shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    submit(dashboard.url, queue="fc-idle")
    submit(dashboard.url, queue="fc-idle")
    wait_until(lambda: queue(dashboard.url, "fc-idle").get("warning") == "no_worker",
               what="the API's no_worker warning")
    text = ("2 jobs wait and no live worker takes jobs from this queue: "
            "start a worker with --queues fc-idle or *")
    page = dashboard.open("#/queues")
    warning = page.locator("[data-testid='queue-warning'][data-warning-queue='fc-idle']")
    expect(warning).to_contain_text(text)
    expect(page.locator("[data-queue='fc-idle']").get_by_text("no worker")).to_be_visible()
    warning.get_by_role("link", name="fc-idle").click()
    expect(page.get_by_role("heading", name="Queue fc-idle", exact=True)).to_be_visible()
    expect(page.get_by_test_id("queue-warning")).to_have_text(text)
    expect(page.get_by_text("0 live workers take jobs from it")).to_be_visible()
    assert [] == dashboard.errors


def test_a_waiting_jobs_page_says_why_it_waits(shared_dashboard: Dashboard) -> None:
    dashboard = shared_dashboard
    httpx.post(f"{dashboard.url}/api/queues/fc-paused/pause", timeout=10).raise_for_status()
    paused = submit(dashboard.url, queue="fc-paused", concurrencyKey="customer:42")
    job_waiting(dashboard.url, paused["id"], "queue_paused")
    page = dashboard.open(f"#/jobs/{paused['id']}")
    expect(page.get_by_test_id("concurrency-key")).to_have_text("customer:42")
    expect(page.get_by_test_id("job-waiting")).to_have_text("waits: queue fc-paused is paused")
    page.get_by_test_id("job-waiting").get_by_role("link", name="fc-paused").click()
    expect(page.get_by_role("heading", name="Queue fc-paused", exact=True)).to_be_visible()

    later = submit(dashboard.url, runAt=FUTURE)
    job_waiting(dashboard.url, later["id"], "scheduled")
    page = dashboard.open(f"#/jobs/{later['id']}")
    expect(page.get_by_test_id("job-waiting")).to_contain_text("waits: scheduled to run at ")
    expect(page.get_by_test_id("job-waiting").locator("time")).to_have_attribute(
        "title", "UTC: 2999-01-01 00:00:00 Z")

    orphan = submit(dashboard.url, queue="fc-nobody")
    job_waiting(dashboard.url, orphan["id"], "no_worker")
    page = dashboard.open(f"#/jobs/{orphan['id']}")
    expect(page.get_by_test_id("job-waiting")).to_have_text(
        "waits: no live worker takes jobs from queue fc-nobody: "
        "start a worker with --queues fc-nobody or *")
    assert [] == dashboard.errors


def test_limits_in_use_top_keys_and_the_reasons_a_worker_leaves_jobs_waiting(
        dashboard: Dashboard, coordinator: Coordinator,
        start_worker: Callable[..., Worker]) -> None:
    url = coordinator.url
    patch(url, "fc-rated", rateLimits=[{"limit": 1, "per": "1h"}]).raise_for_status()
    patch(url, "fc-keyed", concurrencyLimit=3, keyConcurrencyLimit=1).raise_for_status()
    start_worker(url, slots=4, env=FAST,
                 extra=["--worker-id", "fc-w1", "--queues", "fc-rated,fc-keyed"])

    # fc-rated: one start an hour; the first job runs, the second waits for the window.
    first = submit(url, queue="fc-rated")
    wait_until(lambda: httpx.get(f"{url}/api/jobs/{first['id']}").json()["status"] == "Succeeded",
               timeout=30, what="the first rated job ran")
    second = submit(url, queue="fc-rated")
    job_waiting(url, second["id"], "queue_rate")
    page = dashboard.open(f"#/jobs/{second['id']}")
    expect(page.get_by_test_id("job-waiting")).to_have_text(re.compile(
        r"^waits: the queue's rate limit allows the next start at .+ \(in (59 min|1 h)"))
    page = dashboard.open("#/queues?queue=fc-rated")
    rate = page.locator("[data-testid='limit-use'][data-kind='rate']")
    expect(rate).to_contain_text(re.compile(r"rate 1/1h: 1 used, next at .+ \(in (59 min|1 h)"))
    expect(page.get_by_test_id("queue-warning")).to_have_count(0)  # fc-w1 serves it
    expect(page.get_by_text("1 live worker takes jobs from it")).to_be_visible()

    # fc-keyed: one running job per key; a second of the same key waits for it.
    busy = submit(url, "sleep", {"seconds": 60}, queue="fc-keyed", concurrencyKey="customer:42")
    wait_until(lambda: httpx.get(f"{url}/api/jobs/{busy['id']}").json()["status"] == "Running",
               timeout=30, what="the keyed job running")
    held = submit(url, queue="fc-keyed", concurrencyKey="customer:42")
    job_waiting(url, held["id"], "key_concurrency")
    page = dashboard.open(f"#/jobs/{held['id']}")
    expect(page.get_by_test_id("job-waiting")).to_have_text(
        "waits: key customer:42 has 1 of 1 running")
    page = dashboard.open("#/queues?queue=fc-keyed")
    expect(page.locator("[data-testid='limit-use'][data-kind='concurrency']")).to_contain_text(
        "1 of 3 running")
    key = page.get_by_test_id("top-keys").locator("[data-key='customer:42']")
    expect(key).to_have_text(re.compile(r"customer:42\s*1\s*1 of 1"))
    expect(page.get_by_test_id("key-limits")).to_have_text("at most 1 running per key")
    dashboard.screenshot("queue-flow-control")

    # A queue no live worker takes from is flagged; the served ones are not.
    submit(url, queue="fc-orphan")
    page = dashboard.open("#/queues")
    expect(page.locator("[data-testid='queue-warning'][data-warning-queue='fc-orphan']")).to_contain_text(
        "1 job waits and no live worker takes jobs from this queue")
    expect(page.locator("[data-testid='queue-warning'][data-warning-queue='fc-keyed']")).to_have_count(0)
    dashboard.screenshot("queues-list-flow-control")
    httpx.post(f"{url}/api/jobs/{busy['id']}/cancel").raise_for_status()
    assert [] == dashboard.errors
