"""The operator CLI (`api/cli.py`) as a real subprocess against a real API (gunicorn) and store.

The test plays the scheduler's part: it writes task documents and finishes deployments in the
SQLite store the API reads, so `--wait` is checked against the same convergence the scheduler
would produce: the CLI must exit 0 only once the deployment left `/v2/deployments` *and* the app
converged, and non-zero (with the reason) on a failed or cancelled deployment and on timeout.
"""

from __future__ import annotations

import json
import os
import pty
import signal
import subprocess

import pytest
import requests

from scheduler.spec import iso_now, parse_app, stamp_app
from scheduler.sqlite_state import SQLiteStateStore
from tests.api.conftest import put_task
from tests.fixtures_api import start_api
from tests.support import PYTHON, REPO, Proc, free_port, wait_until

pytestmark = pytest.mark.timeout(120)

HEALTH = [{"protocol": "HTTP", "path": "/health", "portIndex": 0, "gracePeriodSeconds": 5,
           "intervalSeconds": 2, "timeoutSeconds": 1, "maxConsecutiveFailures": 3}]


# -- playing the scheduler's part in the store ----------------------------------------------------

def put_app(store: SQLiteStateStore, app_id: str, instances: int, *, checks: bool = False,
            cpus: float = 0.1, mem: float = 32) -> dict:
    doc = {"id": app_id, "cmd": "sleep 1000", "cpus": cpus, "mem": mem, "instances": instances,
           "portDefinitions": [{"port": 0}]}
    if checks:
        doc["healthChecks"] = HEALTH
    app = stamp_app(parse_app(doc).to_json(), None, iso_now(), scale_only=False)
    store.apply_app_change(app["id"], app, None)
    return app



def running_deployment(store: SQLiteStateStore, app_id: str) -> dict | None:
    for dep in store.list_deployments(active_only=True):
        if app_id in (dep.get("affectedApps") or []):
            return dep
    return None


def await_deployment(store: SQLiteStateStore, app_id: str, proc: Proc | None = None) -> dict:
    """The running deployment of `app_id` once the API stored it (with the CLI's output if not)."""
    try:
        return wait_until(lambda: running_deployment(store, app_id), timeout=20,
                          message=f"a running deployment of {app_id}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\nCLI output:\n{proc.output() if proc else ''}") from None


def finish_deployment(store: SQLiteStateStore, dep: dict, status: str = "succeeded",
                      message: str | None = None) -> None:
    dep = dict(dep, status=status, finishedAt=iso_now())
    if message:
        dep["message"] = message
    store.update_deployment(dep)


# -- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def env(tmp_path_factory):
    state_path = tmp_path_factory.mktemp("cli") / "state.db"
    store = SQLiteStateStore(state_path)
    proc, base_url = start_api(str(state_path), workers=2)
    try:
        yield store, base_url
    finally:
        proc.stop()
        store.close()


@pytest.fixture
def store(env):
    return env[0]


@pytest.fixture
def api(env):
    return env[1]


def cli(*args: str, timeout: float = 60, env_extra: dict | None = None,
        ) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in ("ACCESSD_API", "ACCESSD_API_TOKEN")}
    environment.update(env_extra or {})
    return subprocess.run([PYTHON, "-m", "accessd.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, env=environment)


def cli_proc(*args: str) -> Proc:
    return Proc([PYTHON, "-m", "accessd.cli", *args], cwd=REPO)


def no_traceback(result: subprocess.CompletedProcess | str) -> None:
    text = result if isinstance(result, str) else result.stdout + result.stderr
    assert "Traceback" not in text, text


# -- reading ---------------------------------------------------------------------------------------

def test_apps_list_table_and_json(store, api):
    put_app(store, "/list/web", 2, checks=True, cpus=0.5, mem=256)
    for n, healthy in enumerate((True, False)):
        put_task(store, "/list/web", healthy=healthy, n=n)
    put_app(store, "/list/idle", 0)

    out = cli("apps", "list", "--api", api)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["ID", "INSTANCES", "HEALTHY", "STATUS", "CPUS", "MEM"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert rows["/list/web"].split()[:3] == ["/list/web", "2/2", "1"]
    assert "(1 unhealthy)" in rows["/list/web"] and "Running" in rows["/list/web"]
    assert rows["/list/web"].split()[-2:] == ["0.5", "256"]
    assert rows["/list/idle"].split()[:4] == ["/list/idle", "0/0", "-", "Suspended"]

    raw = cli("apps", "--json", "--api", api)
    assert raw.returncode == 0
    apps = {a["id"]: a for a in json.loads(raw.stdout)["apps"]}
    assert apps["/list/web"]["tasksRunning"] == 2 and len(apps["/list/web"]["tasks"]) == 2


def test_tasks_and_deployments(store, api):
    put_app(store, "/read/svc", 1, checks=True)
    task = put_task(store, "/read/svc", healthy=False, n=7, cause="HTTP 500 on /health")
    out = cli("tasks", "read/svc", "--api", api)  # ids without the leading / work too
    assert out.returncode == 0, out.stderr
    header, row = out.stdout.splitlines()[:2]
    assert header.split() == ["ID", "HOST", "PORTS", "STATE", "HEALTH", "STARTED"]
    assert row.startswith(task["id"]) and "31007" in row and "TASK_RUNNING" in row
    assert "unhealthy (HTTP 500 on /health)" in row

    scaled = cli("scale", "/read/svc", "2", "--api", api)
    assert scaled.returncode == 0, scaled.stderr
    dep = running_deployment(store, "/read/svc")
    out = cli("deployments", "--api", api)
    assert out.returncode == 0
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith(dep["id"]))
    assert "/read/svc" in line and "ScaleApplication" in line
    assert json.loads(cli("deployments", "--json", "--api", api).stdout)[-1]["id"] == dep["id"]
    finish_deployment(store, dep)


# -- writing, and what errors look like -----------------------------------------------------------

def test_deploy_creates_then_updates(store, api, tmp_path):
    path = tmp_path / "app.json"
    path.write_text(json.dumps({"id": "/deploy/one", "cmd": "sleep 100", "cpus": 0.1,
                                "mem": 32, "instances": 1}))
    out = cli("deploy", str(path), "--api", api)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("created /deploy/one (deployment ")
    dep = running_deployment(store, "/deploy/one")
    assert dep is not None and store.get_app("/deploy/one")["instances"] == 1
    finish_deployment(store, dep)

    path.write_text(json.dumps({"id": "/deploy/one", "cmd": "sleep 200", "cpus": 0.1,
                                "mem": 32, "instances": 1}))
    out = cli("deploy", str(path), "--api", api)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("updated /deploy/one (deployment ")
    assert store.get_app("/deploy/one")["cmd"] == "sleep 200"
    finish_deployment(store, running_deployment(store, "/deploy/one"))


def test_api_errors_show_message_and_details(store, api, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"id": "/deploy/bad", "cmd": "x", "cpus": -1, "instancez": 2}))
    out = cli("deploy", str(bad), "--api", api)
    assert out.returncode == 1
    no_traceback(out)
    assert "422" in out.stderr
    assert "  /cpus: " in out.stderr           # the API's details, one line each
    assert "instances" in out.stderr           # the typo hint comes through

    missing = cli("scale", "/no/such/app", "3", "--api", api)
    assert missing.returncode == 1
    no_traceback(missing)
    assert "404" in missing.stderr and "/no/such/app" in missing.stderr

    put_app(store, "/err/locked", 1)
    assert cli("scale", "/err/locked", "2", "--api", api).returncode == 0
    locked = cli("restart", "/err/locked", "--api", api)
    assert locked.returncode == 1 and "409" in locked.stderr and "locked" in locked.stderr
    forced = cli("restart", "/err/locked", "--force", "--api", api)
    assert forced.returncode == 0, forced.stderr
    finish_deployment(store, running_deployment(store, "/err/locked"))

    not_json = tmp_path / "not.json"
    not_json.write_text("{nope")
    out = cli("deploy", str(not_json), "--api", api)
    assert out.returncode == 1 and "not valid JSON" in out.stderr
    out = cli("deploy", str(tmp_path / "absent.json"), "--api", api)
    assert out.returncode == 1 and "cannot read" in out.stderr


def test_usage_errors_exit_2():
    for args in (("scale", "/a"), ("scale", "/a", "many"), ("frobnicate",), ("apps", "show"),
                 ("scale", "/a", "3", "--timeout", "-1")):
        out = cli(*args)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        no_traceback(out)
        assert "usage:" in out.stderr + out.stdout


def test_connection_refused_is_one_line():
    url = f"http://127.0.0.1:{free_port()}"
    out = cli("apps", "list", "--api", url)
    assert out.returncode == 1
    assert out.stderr.strip().count("\n") == 0
    assert url in out.stderr and "connection refused" in out.stderr
    # The environment variable is the default for --api.
    out = cli("deployments", env_extra={"ACCESSD_API": url})
    assert out.returncode == 1 and url in out.stderr


# -- --wait ----------------------------------------------------------------------------------------

def test_scale_wait_exits_only_after_convergence(store, api):
    put_app(store, "/wait/up", 1, checks=True)
    put_task(store, "/wait/up", healthy=True, n=1)
    proc = cli_proc("scale", "/wait/up", "2", "--wait", "--timeout", "60", "--api", api)
    try:
        proc.wait_for_line(lambda ln: ln.startswith("scaling /wait/up to 2 (deployment "))
        dep = await_deployment(store, "/wait/up", proc)
        # A new instance runs but has no health verdict yet: not converged.
        put_task(store, "/wait/up", healthy=None, n=2)
        proc.wait_for_line(lambda ln: "2/2 running, 1/2 healthy" in ln)
        assert proc.popen.poll() is None
        # The deployment finishes (scheduler bookkeeping), the app is still not healthy: wait on.
        finish_deployment(store, dep)
        proc.wait_for_line(lambda ln: "deployment finished" in ln)
        assert proc.popen.poll() is None
        # The last health verdict arrives: now it converged.
        task = next(t for t in store.list_tasks("/wait/up") if t["healthy"] is None)
        task.update(healthy=True)
        store.upsert_task(task)
        assert proc.popen.wait(30) == 0, proc.output()
        proc.wait_for_line(lambda ln: ln == "scale of /wait/up done")
        no_traceback(proc.output())
    finally:
        proc.stop()


def test_deploy_wait_new_app_and_scale_to_zero(store, api, tmp_path):
    path = tmp_path / "new.json"
    path.write_text(json.dumps({"id": "/wait/new", "cmd": "sleep 100", "cpus": 0.1, "mem": 32,
                                "instances": 1, "portDefinitions": [{"port": 0}],
                                "healthChecks": HEALTH}))
    proc = cli_proc("deploy", str(path), "--wait", "--timeout", "60", "--api", api)
    try:
        dep = await_deployment(store, "/wait/new", proc)
        proc.wait_for_line(lambda ln: "StartApplication" in ln)
        task = put_task(store, "/wait/new", healthy=True, n=1)
        finish_deployment(store, dep)
        assert proc.popen.wait(30) == 0, proc.output()
        proc.wait_for_line(lambda ln: ln == "deploy of /wait/new done")
    finally:
        proc.stop()

    # Scale to 0: done once no task runs any more.
    proc = cli_proc("scale", "/wait/new", "0", "--wait", "--timeout", "60", "--api", api)
    try:
        dep = await_deployment(store, "/wait/new", proc)
        finish_deployment(store, dep)
        proc.wait_for_line(lambda ln: "1/0 running" in ln and "deployment finished" in ln)
        assert proc.popen.poll() is None
        store.delete_task(task["id"])
        assert proc.popen.wait(30) == 0, proc.output()
    finally:
        proc.stop()


def test_restart_wait_follows_the_new_version(store, api):
    put_app(store, "/wait/roll", 1)
    old = put_task(store, "/wait/roll", n=1)
    proc = cli_proc("restart", "/wait/roll", "--wait", "--timeout", "60", "--api", api)
    try:
        dep = await_deployment(store, "/wait/roll", proc)
        # The app's counters already say 1/1 (the old task): not done while the deployment runs.
        proc.wait_for_line(lambda ln: "1/1 running" in ln and "RestartApplication" in ln)
        assert proc.popen.poll() is None
        put_task(store, "/wait/roll", n=2)  # the new version's task (app's current version)
        store.update_deployment(dict(dep, progress={"running": 1, "healthy": 0, "old": 1}))
        proc.wait_for_line(lambda ln: "new version: 1 running; 1 old" in ln)
        assert proc.popen.poll() is None
        store.delete_task(old["id"])
        finish_deployment(store, store.get_deployment(dep["id"]))
        assert proc.popen.wait(30) == 0, proc.output()
        proc.wait_for_line(lambda ln: ln == "restart of /wait/roll done")
    finally:
        proc.stop()


def test_wait_fails_on_failed_deployment(store, api):
    put_app(store, "/wait/fail", 1)
    proc = cli_proc("scale", "/wait/fail", "3", "--wait", "--api", api)
    try:
        dep = await_deployment(store, "/wait/fail", proc)
        proc.wait_for_line(lambda ln: "0/3 running" in ln)
        finish_deployment(store, dep, "failed", "insufficient cpus on every agent")
        assert proc.popen.wait(30) == 1, proc.output()
        proc.wait_for_line(
            lambda ln: f"deployment {dep['id']} of /wait/fail failed: insufficient cpus" in ln)
        no_traceback(proc.output())
    finally:
        proc.stop()


def test_wait_fails_when_deployment_is_cancelled(store, api):
    put_app(store, "/wait/cancel", 1)
    proc = cli_proc("restart", "/wait/cancel", "--wait", "--api", api)
    try:
        dep = await_deployment(store, "/wait/cancel", proc)
        proc.wait_for_line(lambda ln: "RestartApplication" in ln)
        r = requests.delete(f"{api}/v2/deployments/{dep['id']}", params={"force": "true"},
                            timeout=10)
        assert r.status_code == 202
        assert proc.popen.wait(30) == 1, proc.output()
        proc.wait_for_line(lambda ln: f"deployment {dep['id']} of /wait/cancel cancelled" in ln)
    finally:
        proc.stop()


def test_wait_times_out(store, api):
    put_app(store, "/wait/slow", 1)
    out = cli("scale", "/wait/slow", "2", "--wait", "--timeout", "1.5", "--api", api)
    assert out.returncode == 1
    no_traceback(out)
    assert "timed out after 1.5s" in out.stderr and "0/2 running" in out.stderr
    # A pipe gets one progress line per change (not carriage-return redraws).
    assert "\r" not in out.stderr
    finish_deployment(store, running_deployment(store, "/wait/slow"))


def test_wait_progress_redraws_on_a_tty(store, api):
    put_app(store, "/wait/tty", 1)
    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen([PYTHON, "-m", "accessd.cli", "scale", "/wait/tty", "2",
                                 "--wait", "--timeout", "1", "--api", api],
                                stdout=subprocess.PIPE, stderr=slave, cwd=REPO)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        assert proc.wait(30) == 1
    finally:
        os.close(master)
    text = b"".join(chunks).decode()
    assert "\r\x1b[K[" in text and "timed out" in text
    finish_deployment(store, running_deployment(store, "/wait/tty"))


def test_delete_wait(store, api):
    put_app(store, "/wait/gone", 1)
    task = put_task(store, "/wait/gone", n=3)
    proc = cli_proc("delete", "/wait/gone", "--wait", "--api", api)
    try:
        dep = await_deployment(store, "/wait/gone", proc)
        proc.wait_for_line(lambda ln: "StopApplication" in ln)
        assert proc.popen.poll() is None  # the app is gone, the deployment is not done yet
        store.delete_task(task["id"])
        finish_deployment(store, dep)
        assert proc.popen.wait(30) == 0, proc.output()
        proc.wait_for_line(lambda ln: ln == "delete of /wait/gone done")
    finally:
        proc.stop()


# -- events ----------------------------------------------------------------------------------------

def test_events_type_filter_and_limit(store, api):
    proc = cli_proc("events", "--type", "deployment_info,app_terminated_event", "--limit", "2",
                    "--json", "--api", api)
    try:
        proc.wait_for_line(lambda ln: ln.startswith("following events from "))
        store.append_event("status_update_event", {"appId": "/ev/a", "taskId": "ev_a.1"})
        store.append_event("app_terminated_event", {"appId": "/ev/a"})
        store.append_event("deployment_info", {"plan": {"id": "p1"}, "currentStep": None})
        store.append_event("app_terminated_event", {"appId": "/ev/never-shown"})
        assert proc.popen.wait(30) == 0, proc.output()
        # Its last lines may still be in the pipe when it has exited: wait for the reader to
        # get the second event (lines arrive in order, so the first is there too).
        proc.wait_for_line(lambda ln: ln.startswith("{") and "deployment_info" in ln,
                           timeout=10)
        events = [json.loads(ln) for ln in proc.lines if ln.startswith("{")]
        assert [e["eventType"] for e in events] == ["app_terminated_event", "deployment_info"]
        assert events[0]["appId"] == "/ev/a" and events[1]["plan"]["id"] == "p1"
    finally:
        proc.stop()


def test_events_follow_stops_cleanly_on_ctrl_c(store, api):
    proc = cli_proc("events", "--api", api)
    try:
        proc.wait_for_line(lambda ln: ln.startswith("following events from "))
        store.append_event("app_terminated_event", {"appId": "/ev/b"})
        proc.wait_for_line(lambda ln: "app_terminated_event" in ln and "/ev/b" in ln)
        proc.signal(signal.SIGINT)
        assert proc.popen.wait(15) == 0
        no_traceback(proc.output())
    finally:
        proc.stop()


# -- auth ------------------------------------------------------------------------------------------

def test_token_required_by_api(tmp_path):
    state_path = tmp_path / "state.db"
    store = SQLiteStateStore(state_path)
    put_app(store, "/auth/app", 0)
    proc, api = start_api(str(state_path), workers=1, extra_args=("--token", "s3cret"))
    try:
        out = cli("apps", "list", "--api", api)
        assert out.returncode == 1
        no_traceback(out)
        assert "401" in out.stderr and "--token" in out.stderr
        out = cli("apps", "list", "--api", api, "--token", "s3cret")
        assert out.returncode == 0 and "/auth/app" in out.stdout
        out = cli("apps", "list", "--api", api, env_extra={"ACCESSD_API_TOKEN": "s3cret"})
        assert out.returncode == 0 and "/auth/app" in out.stdout
    finally:
        proc.stop()
        store.close()


# -- the API restarts while a command follows it ---------------------------------------------------

def api_on_port(state_path, base_url: str) -> Proc:
    """`accessd api` again on the port `base_url` names (what a restart of the API does)."""
    port = base_url.rsplit(":", 1)[1]
    proc = Proc([PYTHON, "-m", "accessd.cli", "api", "--bind", f"127.0.0.1:{port}",
                 "--workers", "1", "--state", str(state_path)], cwd=REPO)
    wait_until(lambda: requests.get(base_url + "/ping", timeout=2).text == "pong", timeout=60,
               message="the restarted API")
    return proc


def test_wait_and_events_ride_out_an_api_restart(tmp_path):
    state_path = tmp_path / "state.db"
    store = SQLiteStateStore(state_path)
    put_app(store, "/restart/svc", 1)
    api_proc, api = start_api(str(state_path), workers=1)
    waiter = cli_proc("scale", "/restart/svc", "2", "--wait", "--timeout", "60", "--api", api)
    events = cli_proc("events", "--type", "app_terminated_event", "--limit", "2", "--api", api)
    second = None
    try:
        dep = await_deployment(store, "/restart/svc", waiter)
        events.wait_for_line(lambda ln: ln.startswith("following events from "))
        store.append_event("app_terminated_event", {"appId": "/restart/one"})
        events.wait_for_line(lambda ln: "/restart/one" in ln)
        waiter.wait_for_line(lambda ln: "0/2 running" in ln)

        api_proc.stop()
        waiter.wait_for_line(lambda ln: "API unavailable, retrying" in ln)
        events.wait_for_line(lambda ln: "reconnecting" in ln)
        # While the API is down the scheduler goes on: the app converges, an event is logged.
        put_task(store, "/restart/svc", n=1)
        put_task(store, "/restart/svc", n=2)
        finish_deployment(store, dep)
        store.append_event("app_terminated_event", {"appId": "/restart/two"})
        assert waiter.popen.poll() is None and events.popen.poll() is None

        second = api_on_port(state_path, api)
        assert waiter.popen.wait(30) == 0, waiter.output()
        # Last-Event-ID: the event appended during the outage arrives after the reconnect.
        assert events.popen.wait(30) == 0, events.output()
        # (its output may trail its exit: wait for the line rather than read what came so far)
        events.wait_for_line(lambda ln: "/restart/two" in ln, timeout=10)
        no_traceback(waiter.output() + events.output())
    finally:
        for proc in (waiter, events, api_proc, second):
            if proc is not None:
                proc.stop()
        store.close()
