"""The status page's actions and task log view, in headless Chromium against a real stack:
localmesos, `accessd scheduler`, and `accessd api --master … --token … --read-token …`.

Every action goes through the control API with the page's token, as the CLI's do; the tests
watch what the page shows and what the API then answers.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Page, expect, sync_playwright

from tests.api.test_status_page import CHROMIUM, CHROMIUM_ARGS, ensure_chromium
from tests.fixtures_api import start_api
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import agent_resources, start_scheduler
from tests.support import assert_no_traceback, wait_until, watch_processes

pytestmark = pytest.mark.timeout(180)

FULL, READ = "full-secret", "read-secret"
LIVE = 20_000  # the page polls every 2 s; scheduling a task takes a round or two more


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("actions")
    state = work / "state.db"
    with watch_processes() as procs:
        mesos = start_localmesos(work, agents=2, resources=agent_resources(2),
                                 extra_args=("--status-update-retry", "1"))
        api_proc = sched = None
        try:
            api_proc, base = start_api(state, workers=2, extra_args=(
                "--master", mesos.master, "--token", FULL, "--read-token", READ))
            sched = start_scheduler(mesos.master, state, ["--refuse-seconds", "1"])
            yield base, work
        finally:
            if sched is not None:
                sched.stop()
            if api_proc is not None:
                api_proc.stop()
            mesos.stop()
    assert_no_traceback(procs)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    ensure_chromium()
    profile = tmp_path_factory.mktemp("chromium-profile-actions")
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(profile), executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 800})
        try:
            yield context
        finally:
            context.close()


def open_page(browser, token: str):
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(f"sessionStorage.setItem('accessd.apiToken', {json.dumps(token)});")
    return page, errors


@pytest.fixture
def page(browser):
    page, errors = open_page(browser, FULL)
    yield page
    page.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def api(base: str, method: str, path: str, token: str = FULL, **kw) -> requests.Response:
    return requests.request(method, base + path, headers={"Authorization": f"Bearer {token}"},
                            timeout=10, **kw)


def deploy(base: str, app_id: str, cmd: str = "exec sleep 600", instances: int = 1) -> None:
    r = api(base, "POST", "/v2/apps", json={"id": app_id, "cmd": cmd, "cpus": 0.05, "mem": 16,
                                            "instances": instances, "portDefinitions": []})
    assert r.status_code == 201, r.text


def running(base: str, app_id: str) -> int:
    tasks = api(base, "GET", f"/v2/apps{app_id}/tasks").json()["tasks"]
    return sum(t["state"] == "TASK_RUNNING" for t in tasks)


def detail(page: Page, base: str, app_id: str) -> None:
    page.goto(f"{base}/#/apps{app_id}")
    expect(page.locator("#detail-title")).to_have_text(app_id)
    expect(page.locator("#conn")).to_have_text("live", timeout=LIVE)


def test_scale_from_the_page_and_watch_the_instances_change(stack, page):
    base, _ = stack
    deploy(base, "/ui/web")
    wait_until(lambda: running(base, "/ui/web") == 1, 60, message="1 running")
    detail(page, base, "/ui/web")
    expect(page.locator("tr.task-row")).to_have_count(1, timeout=LIVE)
    page.locator("#scale-input").fill("3")
    page.locator("button.action-scale").click()
    expect(page.locator("#action-message")).to_contain_text("Scale of /ui/web to 3 — deployment")
    expect(page.locator("tr.task-row .state-running")).to_have_count(3, timeout=LIVE)
    expect(page.locator("#detail-facts dd").first).to_have_text("3 of 3 running")
    assert api(base, "GET", "/v2/apps/ui/web").json()["app"]["instances"] == 3
    # Suspend: scale to 0, through the same API. Three running tasks show before the scheduler
    # ends the scale's deployment, and a change while it runs is refused (409, as Marathon):
    # the suspend waits for it, as a user reading the page's deployment would.
    wait_until(lambda: not any("/ui/web" in d["affectedApps"]
                               for d in api(base, "GET", "/v2/deployments").json()),
               60, message="the scale's deployment to end")
    page.locator("button.action-suspend").click()
    expect(page.locator("tr.task-row")).to_have_count(0, timeout=LIVE)
    assert api(base, "GET", "/v2/apps/ui/web").json()["app"]["instances"] == 0


def test_destroy_asks_for_a_confirmation(stack, page):
    base, _ = stack
    deploy(base, "/ui/doomed", instances=0)
    detail(page, base, "/ui/doomed")
    page.locator("button.action-destroy").click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    expect(page.locator("#confirm-dialog .confirm-text")).to_contain_text("Destroy /ui/doomed?")
    page.locator("#confirm-no").click()
    expect(page.locator("#confirm-dialog")).to_be_hidden()
    assert api(base, "GET", "/v2/apps/ui/doomed").status_code == 200  # nothing happened
    page.locator("button.action-destroy").click()
    page.locator("#confirm-yes").click()
    expect(page.locator("#list-view")).to_be_visible()
    expect(page.locator("#action-message")).to_contain_text("Destroy of /ui/doomed — deployment")
    wait_until(lambda: api(base, "GET", "/v2/apps/ui/doomed").status_code == 404, 30,
               message="the app deleted")
    expect(page.locator('tr.app-row[data-app-id="/ui/doomed"]')).to_have_count(0, timeout=LIVE)


def test_create_from_json_shows_a_bad_field_at_its_field(stack, page):
    base, _ = stack
    page.goto(base + "/")
    expect(page.locator("#conn")).to_have_text("live", timeout=LIVE)
    page.locator("button.action-create").click()
    bad = {"id": "/ui/created", "cmd": "exec sleep 600", "cpus": -1, "mem": 16, "instances": 0}
    page.locator("#app-json").fill(json.dumps(bad, indent=2))
    page.locator("#app-json-submit").click()
    error = page.locator('#app-json-errors li.field-error[data-path="/cpus"]')
    expect(error).to_be_visible()
    expect(error.locator(".field-line")).to_have_text(" (line 4)")
    details = api(base, "POST", "/v2/apps", json=bad).json()["details"]
    cpus_errors = next(d["errors"] for d in details if d["path"] == "/cpus")
    expect(error.locator(".field-message")).to_have_text(": " + "; ".join(cpus_errors))
    assert api(base, "GET", "/v2/apps/ui/created").status_code == 404  # nothing was created
    page.locator("#app-json").fill(json.dumps({**bad, "cpus": 0.05}, indent=2))
    page.locator("#app-json-submit").click()
    expect(page.locator("#detail-title")).to_have_text("/ui/created", timeout=LIVE)
    assert api(base, "GET", "/v2/apps/ui/created").status_code == 200


def test_a_read_only_token_sees_no_actions_and_is_refused(stack, browser):
    base, _ = stack
    deploy(base, "/ui/readonly", instances=0)
    page, errors = open_page(browser, READ)
    try:
        detail(page, base, "/ui/readonly")
        # Wait for the permission answer to be applied, then count.
        expect(page.locator("body")).to_have_attribute("data-can-write", "false", timeout=LIVE)
        expect(page.locator("#detail-actions button")).to_have_count(0)
        expect(page.locator("#list-actions button")).to_have_count(0)
        expect(page.locator("tr.task-row")).to_have_count(0)
    finally:
        page.close()
    assert not errors, errors
    r = api(base, "PUT", "/v2/apps/ui/readonly", token=READ, json={"instances": 1})
    assert r.status_code == 403
    full_page, errors = open_page(browser, FULL)
    try:
        detail(full_page, base, "/ui/readonly")
        expect(full_page.locator("body")).to_have_attribute("data-can-write", "true")
        expect(full_page.locator("button.action-scale")).to_be_visible()
    finally:
        full_page.close()


def test_log_view_shows_a_line_printed_after_the_page_opened(stack, page):
    base, work = stack
    go = work / "go-logs"
    go2 = work / "go-rotate"
    script = (f"echo first-line; while [ ! -e {shlex.quote(str(go))} ]; do sleep 0.05; done; "
              "echo late-line-after-open; "
              f"while [ ! -e {shlex.quote(str(go2))} ]; do sleep 0.05; done; "
              "echo before-rotation; mv stdout stdout.1; exec >stdout; echo after-rotation; "
              "exec sleep 600")
    deploy(base, "/ui/talker", cmd=script)
    wait_until(lambda: running(base, "/ui/talker") == 1, 60, message="talker running")
    detail(page, base, "/ui/talker")
    page.locator("tr.task-row button.task-logs").first.click(timeout=LIVE)
    text = page.locator("#task-log-text")
    expect(text).to_contain_text("first-line", timeout=LIVE)
    expect(text).not_to_contain_text("late-line-after-open")
    Path(go).touch()
    expect(text).to_contain_text("late-line-after-open", timeout=10_000)
    # A rotation: both sides of it appear, once each.
    Path(go2).touch()
    expect(text).to_contain_text("after-rotation", timeout=10_000)
    shown = text.text_content() or ""
    assert shown.count("before-rotation") == 1 and shown.count("after-rotation") == 1, shown
    assert shown.count("late-line-after-open") == 1, shown
    page.locator('button.log-stream[data-stream="stderr"]').click()
    expect(text).not_to_contain_text("first-line")


def test_page_follows_the_event_stream_and_falls_back_to_polling(stack, browser):
    base, _ = stack
    deploy(base, "/ui/evented", instances=0)
    page, errors = open_page(browser, FULL)
    # While following events, the safety poll is set to a minute here: a change that shows
    # within seconds was drawn because of an event.
    page.add_init_script("window.accessdPage = {followPollMs: 60000};")
    try:
        detail(page, base, "/ui/evented")
        expect(page.locator("#conn")).to_have_attribute("data-mode", "events", timeout=LIVE)
        expect(page.locator("#updated")).to_contain_text("follows the event stream")
        r = api(base, "PUT", "/v2/apps/ui/evented", json={"instances": 1})
        assert r.status_code == 200, r.text
        expect(page.locator("#detail-facts dd").first).to_have_text("1 of 1 running",
                                                                     timeout=10_000)
        # The stream drops and cannot come back: the page polls every 2 s instead.
        page.route("**/v2/events*", lambda route: route.abort())
        page.evaluate("window.dispatchEvent(new StorageEvent('storage'))")
        expect(page.locator("#conn")).to_have_attribute("data-mode", "polling", timeout=LIVE)
        expect(page.locator("#updated")).to_contain_text("refreshes every 2 s", timeout=LIVE)
        r = api(base, "PUT", "/v2/apps/ui/evented", json={"instances": 2})
        assert r.status_code == 200, r.text
        expect(page.locator("#detail-facts dd").first).to_have_text("2 of 2 running",
                                                                     timeout=LIVE)
    finally:
        page.close()
    assert not errors, errors


def test_deployment_progress_is_shown_step_by_step(stack, page):
    base, work = stack
    gate = work / "healthy-gate"
    r = api(base, "POST", "/v2/apps", json={
        "id": "/ui/gated", "cmd": "exec sleep 600", "cpus": 0.05, "mem": 16, "instances": 2,
        "portDefinitions": [],
        "healthChecks": [{"protocol": "COMMAND",
                          "command": {"value": f"test -e {shlex.quote(str(gate))}"},
                          "gracePeriodSeconds": 300, "intervalSeconds": 2,
                          "timeoutSeconds": 1, "maxConsecutiveFailures": 3}]})
    assert r.status_code == 201, r.text
    detail(page, base, "/ui/gated")
    # Marathon's plan for a new app: StartApplication, then ScaleApplication to the instances.
    steps = page.locator(".deployment .deployment-steps li")
    current = page.locator(".deployment .deployment-steps li.step-current")
    expect(current).to_contain_text("ScaleApplication /ui/gated", timeout=LIVE)
    expect(steps.nth(0)).to_have_class("step step-done")
    expect(steps.nth(0)).to_contain_text("✓ StartApplication /ui/gated")
    expect(current.locator(".step-progress")).to_contain_text("2 running, 0 healthy of 2",
                                                              timeout=LIVE)
    Path(gate).touch()  # the health checks pass: the deployment completes
    expect(page.locator(".deployment")).to_have_count(0, timeout=LIVE)
    expect(page.locator("#detail-facts dd").nth(1)).to_have_text("2 healthy")


def test_restart_and_edit_from_the_page(stack, page):
    base, _ = stack
    deploy(base, "/ui/edited")
    first = wait_until(lambda: running(base, "/ui/edited") == 1 and api(
        base, "GET", "/v2/apps/ui/edited/tasks").json()["tasks"][0]["id"], 60,
        message="one task")
    detail(page, base, "/ui/edited")
    expect(page.locator(f'tr.task-row[data-task-id="{first}"]')).to_have_count(1, timeout=LIVE)
    page.locator("button.action-restart").click()
    expect(page.locator("#action-message")).to_contain_text("Restart of /ui/edited — deployment")
    # The task is replaced by a new one (a rolling restart).
    expect(page.locator(f'tr.task-row[data-task-id="{first}"]')).to_have_count(0, timeout=LIVE)
    expect(page.locator("tr.task-row .state-running")).to_have_count(1, timeout=LIVE)
    # Edit: the editor holds the stored definition (without the view's fields); change cmd.
    wait_until(lambda: not api(base, "GET", "/v2/deployments").json(), 30,
               message="the restart done")
    page.locator("button.action-edit").click()
    area = page.locator("#app-json")
    expect(area).not_to_have_value("loading…")
    doc = json.loads(area.input_value())
    assert doc["id"] == "/ui/edited" and "tasks" not in doc and "version" not in doc
    doc["cmd"] = "exec sleep 601"
    area.fill(json.dumps(doc, indent=2))
    page.locator("#app-json-submit").click()
    expect(page.locator("#action-message")).to_contain_text("Updated /ui/edited")
    assert api(base, "GET", "/v2/apps/ui/edited").json()["app"]["cmd"] == "exec sleep 601"
    expect(page.locator("#detail-facts dd").last).to_have_text("exec sleep 601", timeout=LIVE)


def test_a_change_refused_by_a_running_deployment_can_be_forced(stack, page):
    base, work = stack
    gate = work / "force-gate"
    r = api(base, "POST", "/v2/apps", json={
        "id": "/ui/held", "cmd": "exec sleep 600", "cpus": 0.05, "mem": 16, "instances": 1,
        "portDefinitions": [],
        "healthChecks": [{"protocol": "COMMAND",
                          "command": {"value": f"test -e {shlex.quote(str(gate))}"},
                          "gracePeriodSeconds": 300, "intervalSeconds": 2,
                          "timeoutSeconds": 1, "maxConsecutiveFailures": 3}]})
    assert r.status_code == 201, r.text
    detail(page, base, "/ui/held")
    expect(page.locator(".deployment")).to_have_count(1, timeout=LIVE)  # held: never healthy
    page.locator("#scale-input").fill("0")
    page.locator("button.action-scale").click()
    message = page.locator("#action-message")
    expect(message).to_contain_text("refused")
    expect(message).to_contain_text("force the change")
    assert api(base, "GET", "/v2/apps/ui/held").json()["app"]["instances"] == 1
    message.locator("button.action-force").click()
    expect(message).to_contain_text("Scale of /ui/held to 0 — deployment")
    assert api(base, "GET", "/v2/apps/ui/held").json()["app"]["instances"] == 0
    expect(page.locator("tr.task-row")).to_have_count(0, timeout=LIVE)
