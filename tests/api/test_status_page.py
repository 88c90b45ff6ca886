"""The status page (`/`, api/static) in a real headless Chromium against a real API and store.

The test writes apps, tasks and app runtime status into the SQLite store as the scheduler would,
then reads the live DOM through the Chrome DevTools protocol (Playwright driving Debian's
`/usr/bin/chromium`; no browser download). Waits are Playwright's `expect` assertions, which
poll the DOM until a deadline.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from scheduler.spec import format_time, iso_now, parse_app, stamp_app
from scheduler.sqlite_state import SQLiteStateStore
from tests.api.conftest import put_task
from tests.fixtures_api import start_api
from tests.support import REPO

pytestmark = pytest.mark.timeout(120)

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
# The page polls every 2 s; a change must show within a few polls even on a loaded machine.
LIVE = 15_000
HEALTH = [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 5,
           "intervalSeconds": 2, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}]


def ensure_chromium() -> None:
    if not os.path.exists(CHROMIUM):
        subprocess.run(["bash", str(REPO / "tools" / "test-deps.sh")], check=False)
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is not installed and tools/test-deps.sh could not install it")


# -- playing the scheduler's part in the store ----------------------------------------------------

def put_app(store: SQLiteStateStore, app_id: str, instances: int, *, checks: bool = False,
            cpus: float = 0.25, mem: float = 64) -> dict:
    doc = {"id": app_id, "cmd": "sleep 1000", "cpus": cpus, "mem": mem, "instances": instances,
           "portDefinitions": [{"port": 0}]}
    if checks:
        doc["healthChecks"] = HEALTH
    app = stamp_app(parse_app(doc).to_json(), None, iso_now(), scale_only=False)
    store.apply_app_change(app["id"], app, None)
    return app



def put_status(store: SQLiteStateStore, app_id: str, *, delay_seconds: float | None = None,
               waiting: str | None = None, failure: str | None = None) -> None:
    now = iso_now()
    store.put_app_status(app_id, {
        "appId": app_id,
        "delay": ({"until": format_time(time.time() + delay_seconds), "seconds": delay_seconds}
                  if delay_seconds else None),
        "waiting": {"reason": waiting, "since": now, "count": 1} if waiting else None,
        "lastTaskFailure": ({"appId": app_id, "host": "127.0.1.2", "message": failure,
                             "state": "TASK_FAILED", "taskId": "x.1", "timestamp": now,
                             "version": now, "slaveId": "s1"} if failure else None),
        "consecutiveFailures": 1 if failure else 0, "updatedAt": now,
    })


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state_path = tmp_path_factory.mktemp("page") / "state.db"
    store = SQLiteStateStore(state_path)
    proc, base_url = start_api(str(state_path), workers=2)
    try:
        yield store, base_url
    finally:
        proc.stop()
        store.close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    ensure_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 700})
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def row(page: Page, app_id: str):
    return page.locator(f'tr.app-row[data-app-id="{app_id}"]')


# -- tests -----------------------------------------------------------------------------------------

def test_rows_show_status_labels_and_instances(env, page, tmp_path):
    store, api = env
    put_app(store, "/labels/running", 2, checks=True, cpus=0.5, mem=256)
    put_task(store, "/labels/running", healthy=True, n=1)
    put_task(store, "/labels/running", healthy=True, n=2)
    put_app(store, "/labels/suspended", 0)
    put_app(store, "/labels/delayed", 1)
    put_status(store, "/labels/delayed", delay_seconds=600, failure="Command exited with 1")
    put_app(store, "/labels/waiting", 2)
    put_task(store, "/labels/waiting", n=3)
    put_status(store, "/labels/waiting", waiting="constraint hostname UNIQUE")
    # A real deployment, made the way an operator makes one.
    r = requests.post(f"{api}/v2/apps", json={"id": "/labels/deploying", "cmd": "sleep 1",
                                              "cpus": 0.1, "mem": 32, "instances": 1},
                      timeout=10)
    assert r.status_code == 201, r.text

    page.goto(api + "/")
    expected = {
        "/labels/running": ("Running", "2 of 2"),
        "/labels/suspended": ("Suspended", "0 of 0"),
        "/labels/delayed": ("Delayed", "0 of 1"),
        "/labels/waiting": ("Waiting", "1 of 2"),
        "/labels/deploying": ("Deploying", "0 of 1"),
    }
    for app_id, (status, instances) in expected.items():
        expect(row(page, app_id).locator(".col-status")).to_have_text(status, timeout=LIVE)
        expect(row(page, app_id).locator(".col-instances")).to_have_text(instances)
    running = row(page, "/labels/running")
    expect(running.locator(".col-cpus")).to_have_text("0.5")
    expect(running.locator(".col-mem")).to_have_text("256 MiB")
    expect(running.locator(".bar")).to_have_attribute("data-healthy", "2")
    expect(running.locator(".health-text")).to_have_text("2 healthy")
    expect(row(page, "/labels/suspended").locator(".health-text")).to_have_text("no checks")
    expect(page.locator("#conn")).to_have_text("live")
    # Rows come sorted by id, as in Marathon's list.
    ids = page.locator("tr.app-row").evaluate_all("rows => rows.map(r => r.dataset.appId)")
    assert ids == sorted(ids)

    shot = tmp_path / "apps.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_page_follows_store_changes_without_reload(env, page):
    store, api = env
    put_app(store, "/live/svc", 2, checks=True)
    staging = put_task(store, "/live/svc", state="TASK_STAGING", n=1)
    page.goto(api + "/")
    svc = row(page, "/live/svc")
    expect(svc.locator(".col-instances")).to_have_text("0 of 2", timeout=LIVE)
    page.evaluate("window.__sameDocument = true")

    # The staged task starts and passes its health check.
    put_task(store, "/live/svc", healthy=True, n=1, task_id=staging["id"])
    expect(svc.locator(".col-instances")).to_have_text("1 of 2", timeout=LIVE)
    expect(svc.locator(".bar")).to_have_attribute("data-healthy", "1", timeout=LIVE)

    # A second one starts and fails its checks.
    put_task(store, "/live/svc", healthy=False, n=2, cause="HTTP 500")
    expect(svc.locator(".col-instances")).to_have_text("2 of 2", timeout=LIVE)
    expect(svc.locator(".bar")).to_have_attribute("data-unhealthy", "1", timeout=LIVE)
    expect(svc.locator(".health-text")).to_have_text("1 healthy, 1 unhealthy")
    expect(svc.locator(".col-status")).to_have_text("Running")

    # The scheduler backs off after a failure: the app gets a delay.
    put_status(store, "/live/svc", delay_seconds=300, failure="health check failed")
    expect(svc.locator(".col-status")).to_have_text("Delayed", timeout=LIVE)

    # Deleted apps disappear.
    put_app(store, "/live/gone", 1)
    expect(row(page, "/live/gone")).to_have_count(1, timeout=LIVE)
    store.apply_app_change("/live/gone", None, None)
    expect(row(page, "/live/gone")).to_have_count(0, timeout=LIVE)

    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"


def test_detail_view_lists_tasks_and_health(env, page):
    store, api = env
    put_app(store, "/detail/svc", 2, checks=True, cpus=0.5, mem=128)
    good = put_task(store, "/detail/svc", healthy=True, n=4)
    bad = put_task(store, "/detail/svc", healthy=False, n=5,
                   cause="HTTP health check failed: 500 Internal Server Error")
    put_status(store, "/detail/svc", failure="Command exited with status 1")

    page.goto(api + "/")
    row(page, "/detail/svc").locator(".col-cpus").click()
    expect(page).to_have_url(api + "/#/apps/detail/svc", timeout=LIVE)
    expect(page.locator("#detail-title")).to_have_text("/detail/svc")
    expect(page.locator("#list-view")).to_be_hidden()
    tasks = page.locator("tr.task-row")
    expect(tasks).to_have_count(2, timeout=LIVE)

    good_row = page.locator(f'tr.task-row[data-task-id="{good["id"]}"]')
    cells = good_row.locator("td")
    expect(cells.nth(0)).to_have_text(good["id"])
    expect(cells.nth(1)).to_contain_text("127.0.1.2")
    expect(cells.nth(2)).to_have_text("31004")
    expect(cells.nth(3)).to_have_text("running")
    expect(cells.nth(4)).to_have_text("Healthy")
    expect(cells.nth(5)).to_contain_text(good["startedAt"][:10])

    bad_health = page.locator(f'tr.task-row[data-task-id="{bad["id"]}"] td.task-health')
    expect(bad_health).to_contain_text("Unhealthy")
    expect(bad_health.locator(".cause")).to_contain_text(
        "HTTP health check failed: 500 Internal Server Error")
    expect(page.locator("#detail-alerts")).to_contain_text("Command exited with status 1")
    expect(page.locator("#detail-checks")).to_contain_text("HTTP /health")
    expect(page.locator("#detail-facts")).to_contain_text("2 of 2 running")

    # The detail view is live too: a new task shows up, a killed one goes.
    third = put_task(store, "/detail/svc", state="TASK_STAGING", n=6)
    store.delete_task(bad["id"])
    expect(page.locator(f'tr.task-row[data-task-id="{third["id"]}"] .task-state')).to_have_text(
        "staging", timeout=LIVE)
    expect(page.locator(f'tr.task-row[data-task-id="{bad["id"]}"]')).to_have_count(0)

    # Straight to an app by URL; the waiting reason comes from /v2/queue.
    put_app(store, "/detail/waits", 3)
    put_status(store, "/detail/waits", waiting="insufficient cpus")
    page.goto(api + "/#/apps/detail/waits")
    expect(page.locator("#detail-status")).to_have_text("Waiting", timeout=LIVE)
    expect(page.locator("#detail-alerts")).to_contain_text("insufficient cpus")
    expect(page.locator("#tasks-empty")).to_be_visible()

    # A deployment in progress shows its step and actions.
    r = requests.post(f"{api}/v2/apps", json={"id": "/detail/new", "cmd": "sleep 1",
                                              "cpus": 0.1, "mem": 32, "instances": 2},
                      timeout=10)
    assert r.status_code == 201, r.text
    dep_id = r.json()["deployments"][0]["id"]
    page.goto(api + "/#/apps/detail/new")
    expect(page.locator("#detail-status")).to_have_text("Deploying", timeout=LIVE)
    expect(page.locator(f'.deployment[data-deployment-id="{dep_id}"]')).to_contain_text(
        "step 1/2: StartApplication /detail/new", timeout=LIVE)

    page.locator("a.back").click()
    expect(page.locator("#list-view")).to_be_visible()
    expect(row(page, "/detail/svc")).to_have_count(1)


def test_read_token_required_shows_message_then_token_works(tmp_path, browser):
    state_path = tmp_path / "state.db"
    store = SQLiteStateStore(state_path)
    put_app(store, "/auth/svc", 1)
    proc, api = start_api(str(state_path), workers=1,
                          extra_args=("--token", "w-secret", "--read-token", "r-secret"))
    page = browser.new_page()
    try:
        page.goto(api + "/")
        notice = page.locator("#notice")
        expect(notice).to_be_visible(timeout=LIVE)
        expect(notice).to_contain_text("requires a token to read (401 Unauthorized)")
        expect(page.locator("tr.app-row")).to_have_count(0)

        page.locator("#token-input").fill("wrong")
        page.locator("#token-form button").click()
        expect(notice).to_contain_text("refused the token", timeout=LIVE)

        page.locator("#token-input").fill("r-secret")
        page.locator("#token-form button").click()
        expect(row(page, "/auth/svc")).to_have_count(1, timeout=LIVE)
        expect(notice).to_be_hidden()
    finally:
        page.close()
        proc.stop()
        store.close()


def test_api_outage_is_reported_and_recovers(tmp_path, browser):
    state_path = tmp_path / "state.db"
    store = SQLiteStateStore(state_path)
    put_app(store, "/outage/svc", 1)
    proc, api = start_api(str(state_path), workers=1)
    page = browser.new_page()
    try:
        page.goto(api + "/")
        expect(row(page, "/outage/svc")).to_have_count(1, timeout=LIVE)
        proc.stop()
        expect(page.locator("#notice")).to_contain_text("Cannot reach the control API",
                                                        timeout=LIVE)
        expect(page.locator("#conn")).to_have_text("API unreachable")
        # The last good data stays on screen.
        expect(row(page, "/outage/svc")).to_have_count(1)
        # The API comes back (same address) with a change made meanwhile: the page notices by
        # itself, clears the notice and shows the new data.
        put_app(store, "/outage/later", 1)
        proc, _ = start_api(str(state_path), workers=1, port=int(api.rsplit(":", 1)[1]))
        expect(page.locator("#conn")).to_have_text("live", timeout=LIVE)
        expect(page.locator("#notice")).to_be_hidden()
        expect(row(page, "/outage/later")).to_have_count(1)
        expect(row(page, "/outage/svc")).to_have_count(1)
    finally:
        page.close()
        proc.stop()
        store.close()


def test_static_files_are_served(env):
    _, api = env
    for name in ("app.js", "style.css"):
        r = requests.get(f"{api}/static/{name}", timeout=10)
        assert r.status_code == 200 and r.text == (Path(REPO) / "api/static" / name).read_text()
