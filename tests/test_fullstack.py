"""The whole stack at once, driven the way an operator drives it: HTTP only.

One module-scoped cluster: localmesos (3 agents on 2 racks, real Mesos v1 APIs), `accessd
scheduler` (pymesos) and `accessd api` (gunicorn, 2 workers) on one SQLite store; the services
are `tests/fullstack_service.py` run by accessd's executor (HTTP health checks on `/health`,
made to fail by a file in `$CTL`) and `python -m http.server` on Mesos's command executor
(`"executor": "//cmd"`, the health check run by localmesos as Mesos would). A background thread
reads `GET /v2/events` for the whole module; every test asserts on the events of its own step.

In file order the tests follow an operator's session (bad inputs → create → refused changes →
scale → restart → update → unhealthy → `//cmd` health → kills → waiting/delayed → delete →
the stream as a whole), each starting from what the one before left. Each also stands alone
(`pytest --reverse`, or one test by id): it first brings the cluster to the state it starts
from (`clear_apps`, `ensure_web_and_cmd`, `ensure_absent`, `ensure_for_delete`), which in
file order finds that state already there and does nothing. Observed timings are printed
(`pytest -s`) and summed up at the end.
"""

from __future__ import annotations

import json
import os
import shlex
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.fixtures_api import start_api
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import capacity_from_events, mesos_tasks, start_scheduler
from tests.support import PYTHON, REPO, assert_no_traceback, wait_until

SERVICE = REPO / "tests" / "fullstack_service.py"
WEB, CMD, UNIQUE, CRASH = "/fs/web", "/fs/cmdweb", "/fs/unique", "/fs/crash"
MAX_EVENTS = 20_000
TIMINGS: dict[str, float] = {}


# -- the event stream, read for the whole module ---------------------------------------------------

class EventLog:
    """`GET /v2/events` read by a background thread: `(id, type, payload)` in arrival order."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.events: list[tuple[int, str, dict]] = []
        self.cond = threading.Condition()
        self.opened = threading.Event()
        self.error: BaseException | None = None
        self.overflow = False
        self._resp: requests.Response | None = None
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="sse-reader", daemon=True)

    def start(self) -> None:
        self.thread.start()
        if not self.opened.wait(15):
            raise AssertionError(f"the event stream did not open: {self.error!r}")

    def stop(self) -> None:
        """The reader checks the flag at every line, keep-alive comments included."""
        self._stop.set()
        self.thread.join(5)
        if self._resp is not None:
            self._resp.close()

    def _run(self) -> None:
        try:
            with requests.get(self.base + "/v2/events", stream=True, timeout=(5, 30),
                              headers={"Accept": "text/event-stream"}) as resp:
                assert resp.status_code == 200, resp.text
                self._resp = resp
                fields: dict[str, str] = {}
                for line in resp.iter_lines(decode_unicode=True):
                    if self._stop.is_set():
                        return
                    if line is None:
                        continue
                    if line.startswith(":"):
                        self.opened.set()
                        continue
                    if line:
                        name, _, value = line.partition(":")
                        fields[name] = value[1:] if value.startswith(" ") else value
                        continue
                    if "data" in fields:
                        self._append(int(fields["id"]), fields.get("event", "message"),
                                     json.loads(fields["data"]))
                    fields = {}
        except BaseException as exc:  # noqa: BLE001 (reported by the tests that need events)
            if not self._stop.is_set():
                self.error = exc
        finally:
            self.opened.set()

    def _append(self, event_id: int, kind: str, payload: dict) -> None:
        with self.cond:
            if len(self.events) >= MAX_EVENTS:
                self.overflow = True
                return
            self.events.append((event_id, kind, payload))
            self.cond.notify_all()

    def mark(self) -> int:
        """The id of the newest event seen (events after it belong to the step starting now)."""
        with self.cond:
            return self.events[-1][0] if self.events else 0

    def since(self, mark: int, *kinds: str) -> list[tuple[int, str, dict]]:
        with self.cond:
            return [e for e in self.events if e[0] > mark and (not kinds or e[1] in kinds)]

    def wait_for(self, mark: int, predicate, timeout: float = 20.0, message: str = "an event"):
        """Wait until `predicate(events since mark)` is truthy; return its value."""
        return wait_until(lambda: predicate(self.since(mark)), timeout=timeout,
                          message=f"{message} (stream error: {self.error!r})")


# -- the cluster -----------------------------------------------------------------------------------

class Stack:
    def __init__(self, mesos, sched, api_proc, base: str, events: EventLog, ctl: Path) -> None:
        self.mesos, self.sched, self.api_proc, self.base = mesos, sched, api_proc, base
        self.events, self.ctl = events, ctl
        self.http = requests.Session()

    def call(self, method: str, path: str, body: Any = None, **kw: Any) -> requests.Response:
        if body is not None and not isinstance(body, (str, bytes)):
            kw["json"] = body
        elif body is not None:
            kw["data"] = body
            kw.setdefault("headers", {"Content-Type": "application/json"})
        # accessd's own fields too (status label, task health, deployment status): the test
        # asserts them; tests/api/test_marathon_shapes.py covers the answers without them.
        kw.setdefault("params", {"embed": "accessd"})
        return self.http.request(method, self.base + path, timeout=10, **kw)

    def app(self, app_id: str) -> dict:
        resp = self.call("GET", f"/v2/apps{app_id}?embed=app.tasks")
        assert resp.status_code == 200, resp.text
        return resp.json()["app"]

    def queue(self) -> dict[str, dict]:
        return {item["app"]["id"]: item for item in self.call("GET", "/v2/queue").json()["queue"]}

    def deployment(self, dep_id: str) -> dict:
        return self.call("GET", f"/v2/deployments/{dep_id}").json()

    def active_deployment_ids(self) -> set[str]:
        return {d["id"] for d in self.call("GET", "/v2/deployments").json()}

    def wait_deployment(self, dep_id: str, timeout: float = 40.0) -> float:
        """Wait until the deployment succeeded (and left /v2/deployments); seconds it took."""
        started = time.monotonic()
        wait_until(lambda: self.deployment(dep_id)["status"] == "succeeded"
                   and dep_id not in self.active_deployment_ids(), timeout=timeout,
                   message=f"deployment {dep_id} to succeed: {self.sched.output()[-3000:]}")
        return time.monotonic() - started

    def wait_app(self, app_id: str, predicate, timeout: float = 40.0, message: str = "") -> dict:
        def check():
            app = self.app(app_id)
            return app if predicate(app) else None
        return wait_until(check, timeout=timeout, message=message or f"{app_id} to converge")

    def mesos_active(self) -> dict[str, dict]:
        return mesos_tasks(self.mesos.state(), self.sched.framework_id)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    work = tmp_path_factory.mktemp("fullstack")
    ctl = work / "ctl"
    ctl.mkdir()
    state = work / "state.db"
    mesos = start_localmesos(work, agents=3, attributes=["rack:r1", "rack:r2", "rack:r1"],
                             extra_args=("--status-update-retry", "1"))
    sched = api_proc = events = None
    try:
        # keep-alive comments every 0.5 s: the reader notices it should stop within that
        api_proc, base = start_api(state, workers=2, env={"ACCESSD_API_SSE_POLL": "0.05",
                                                          "ACCESSD_API_SSE_KEEPALIVE": "0.5"})
        sched = start_scheduler(mesos.master, state, ["--refuse-seconds", "1"])
        events = EventLog(base)
        events.start()
        yield Stack(mesos, sched, api_proc, base, events, ctl)
    finally:
        if events is not None:
            events.stop()
        if api_proc is not None:
            api_proc.stop()
        if sched is not None:
            sched.stop()
        mesos.stop()
    assert_no_traceback([sched, api_proc, mesos.proc])


def web_app(ctl: Path, instances: int = 2) -> dict:
    return {
        "id": WEB, "cmd": f"exec {shlex.quote(PYTHON)} {shlex.quote(str(SERVICE))}",
        "cpus": 0.1, "mem": 32, "instances": instances, "env": {"CTL": str(ctl)},
        "portDefinitions": [{"port": 0, "name": "http"}], "taskKillGracePeriodSeconds": 1,
        "backoffSeconds": 0.2, "labels": {"suite": "fullstack"},
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                          "gracePeriodSeconds": 5, "intervalSeconds": 0.5,
                          "timeoutSeconds": 0.4, "maxConsecutiveFailures": 3}],
    }


def cmd_app(ctl: Path) -> dict:
    """`python -m http.server` serving `$CTL/<task id>/`; healthy while its `health` file is
    there. The check is Mesos-native: localmesos probes it and kills the task after
    `maxConsecutiveFailures` failures in a row."""
    return {
        "id": CMD, "executor": "//cmd", "cpus": 0.1, "mem": 32, "instances": 1,
        "env": {"CTL": str(ctl)},
        "cmd": ('mkdir -p "$CTL/$MESOS_TASK_ID" && touch "$CTL/$MESOS_TASK_ID/health" && '
                f"exec {shlex.quote(PYTHON)} -m http.server $PORT0 --bind $HOST "
                '--directory "$CTL/$MESOS_TASK_ID"'),
        "portDefinitions": [{"port": 0}], "taskKillGracePeriodSeconds": 1,
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                          "gracePeriodSeconds": 5, "intervalSeconds": 0.5,
                          "timeoutSeconds": 0.4, "maxConsecutiveFailures": 5}],
    }


# -- the state each test starts from (already there when the tests run in file order) -----------

def delete_apps(stack, app_ids) -> None:
    """Delete `app_ids` (forced) and wait until their deployments are done and tasks gone."""
    deps = []
    for app_id in app_ids:
        resp = stack.call("DELETE", f"/v2/apps{app_id}?force=true")
        assert resp.status_code == 200, (app_id, resp.text)
        deps.append(resp.json()["deploymentId"])
    for dep_id in deps:
        stack.wait_deployment(dep_id)
    gone = {app_id.lstrip("/").replace("/", "_") + "." for app_id in app_ids}
    wait_until(lambda: not [t for t in stack.mesos_active()
                            if any(t.startswith(prefix) for prefix in gone)],
               timeout=20, message=f"the tasks of {sorted(app_ids)} gone from localmesos")


def clear_apps(stack) -> None:
    """No app and no task in the cluster."""
    delete_apps(stack, [a["id"] for a in stack.call("GET", "/v2/apps").json()["apps"]])


def ensure_absent(stack, *app_ids: str) -> None:
    delete_apps(stack, [a for a in app_ids
                        if stack.call("GET", f"/v2/apps{a}").status_code == 200])


def ensure_app(stack, doc: dict, strategy: bool = False) -> None:
    """`doc`'s app exists (created from `doc` if not) with `doc`'s instances and, with
    `strategy`, its upgrade strategy (the update test changes it; changing it back restarts)."""
    resp = stack.call("GET", f"/v2/apps{doc['id']}")
    if resp.status_code == 404:
        resp = stack.call("POST", "/v2/apps", doc)
        assert resp.status_code == 201, resp.text
        stack.wait_deployment(resp.headers["Marathon-Deployment-Id"])
        return
    app = resp.json()["app"]
    wanted = {"instances": doc["instances"]}
    if strategy:
        wanted["upgradeStrategy"] = doc.get(
            "upgradeStrategy", {"minimumHealthCapacity": 1, "maximumOverCapacity": 1})
    change = {k: v for k, v in wanted.items() if app[k] != v}
    if change:
        resp = stack.call("PUT", f"/v2/apps{doc['id']}?force=true", change)
        assert resp.status_code == 200, resp.text
        stack.wait_deployment(resp.json()["deploymentId"], timeout=60)


def ensure_web_and_cmd(stack, strategy: bool = False) -> None:
    """Only WEB (2 instances) and CMD (1), both converged."""
    ensure_absent(stack, *[a["id"] for a in stack.call("GET", "/v2/apps").json()["apps"]
                           if a["id"] not in (WEB, CMD)])
    for doc in (web_app(stack.ctl), cmd_app(stack.ctl)):
        ensure_app(stack, doc, strategy)
        stack.wait_app(doc["id"], converged)


def ensure_for_delete(stack) -> None:
    """The four apps of the session: WEB and CMD running, UNIQUE with 3 of its 5 tasks placed,
    CRASH suspended."""
    for doc in (web_app(stack.ctl, instances=1), cmd_app(stack.ctl)):
        if stack.call("GET", f"/v2/apps{doc['id']}").status_code == 404:
            ensure_app(stack, doc)
        stack.wait_app(doc["id"], converged)
    if stack.call("GET", f"/v2/apps{UNIQUE}").status_code == 404:
        resp = stack.call("POST", "/v2/apps", unique_app())
        assert resp.status_code == 201, resp.text
        stack.wait_app(UNIQUE, lambda a: a["tasksRunning"] == 3, message="3 unique tasks")
        # its deployment can never finish: given up on, as the unique-hostname test does
        dep_id = resp.headers["Marathon-Deployment-Id"]
        assert stack.call("DELETE", f"/v2/deployments/{dep_id}?force=true").status_code == 202
    stack.wait_app(UNIQUE, lambda a: a["tasksRunning"] == 3, message="3 unique tasks")
    if stack.call("GET", f"/v2/apps{CRASH}").status_code == 404:
        ensure_app(stack, dict(crash_app(), instances=0))


def unique_app() -> dict:
    return {"id": UNIQUE, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "instances": 5,
            "constraints": [["hostname", "UNIQUE"]], "taskKillGracePeriodSeconds": 1}


def crash_app() -> dict:
    return {"id": CRASH, "cmd": "exit 3", "cpus": 0.1, "mem": 16, "instances": 1,
            "backoffSeconds": 1, "backoffFactor": 4, "maxLaunchDelaySeconds": 60}


def ready(task: dict) -> bool:
    return (task["state"] == "TASK_RUNNING" and task.get("healthy") is True
            and not task.get("killRequested"))


def converged(app: dict) -> bool:
    n = app["instances"]
    return (app["tasksRunning"] == app["tasksHealthy"] == n == len(app["tasks"])
            and all(ready(t) for t in app["tasks"]) and not app["deployments"])


def task_ids(app: dict) -> set[str]:
    return {t["id"] for t in app["tasks"]}


def status_events(events, app_id: str | None = None, task_id: str | None = None,
                  state: str | None = None) -> list:
    return [e for e in events if e[1] == "status_update_event"
            and (app_id is None or e[2]["appId"] == app_id)
            and (task_id is None or e[2]["taskId"] == task_id)
            and (state is None or e[2]["taskStatus"] == state)]


def index_of(events, predicate) -> int:
    for i, e in enumerate(events):
        if predicate(e):
            return i
    raise AssertionError("no such event among " + repr([(e[0], e[1]) for e in events][-50:]))


def dep_event(kind: str, dep_id: str):
    def match(e):
        if e[1] != kind:
            return False
        plan = e[2].get("plan") or {}
        return plan.get("id") == dep_id or e[2].get("id") == dep_id
    return match


def has_success(events, *dep_ids: str) -> bool:
    return all(any(dep_event("deployment_success", d)(e) for e in events) for d in dep_ids)


def assert_deployment_events(events, dep_id: str, steps: int) -> None:
    """deployment_info, then `steps` step successes, then deployment_success, in that order."""
    info = index_of(events, dep_event("deployment_info", dep_id))
    step_idx = [i for i, e in enumerate(events) if dep_event("deployment_step_success", dep_id)(e)]
    done = index_of(events, dep_event("deployment_success", dep_id))
    assert len(step_idx) == steps, [(e[1], e[2].get("currentStep")) for e in events
                                    if dep_event("deployment_step_success", dep_id)(e)]
    assert info < min(step_idx) and max(step_idx) < done
    assert not [e for e in events if dep_event("deployment_failed", dep_id)(e)]


def processes_with(texts: set[str]) -> list[int]:
    """PIDs whose command line or environment mentions any of `texts` (task ids)."""
    found = []
    needles = [t.encode() for t in texts]
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                blob = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                blob += f.read()
        except OSError:
            continue
        if any(n in blob for n in needles):
            found.append(int(entry))
    return found


# -- 9 (first): bad inputs change nothing ------------------------------------------------------------

def test_bad_inputs_change_nothing(stack):
    clear_apps(stack)
    mark = stack.events.mark()
    bad = [
        ("POST", "/v2/apps", {"id": "/fs/bad", "cmd": "sleep 60", "cpus": -1, "instancez": 2},
         422),
        ("POST", "/v2/apps", {"id": "/fs/bad", "cmd": "sleep 60",
                              "constraints": [["hostname", "MAX_PER", "zero"]]}, 422),
        ("POST", "/v2/apps", {"id": "/fs/bad", "cmd": "sleep 60", "args": ["x"]}, 422),
        ("POST", "/v2/apps", '{"id": "/fs/bad", "cmd": ', 400),
        ("PUT", "/v2/apps/fs/bad", {"instances": 3}, 404),
        ("DELETE", "/v2/apps/fs/bad", None, 404),
        ("POST", "/v2/apps/fs/bad/restart", None, 404),
        ("DELETE", "/v2/apps/fs/bad/tasks/fs_bad.0123", None, 404),
        ("POST", "/v2/tasks/delete", {"ids": ["fs_bad.0123"]}, 404),
    ]
    for method, path, body, code in bad:
        resp = stack.call(method, path, body)
        assert resp.status_code == code, (method, path, resp.status_code, resp.text)
        assert resp.json()["message"]
    problems = stack.call("POST", "/v2/apps", bad[0][2]).json()["details"]
    assert {p["path"] for p in problems} >= {"/cpus", "/instancez"}
    # A good app created now is the only thing the scheduler acts on: it proves the scheduler
    # has planned since the bad requests, and the cluster runs nothing else.
    resp = stack.call("POST", "/v2/apps", {"id": "/fs/probe", "cmd": "sleep 600", "cpus": 0.1,
                                           "mem": 16})
    assert resp.status_code == 201, resp.text
    stack.wait_deployment(resp.headers["Marathon-Deployment-Id"])
    app = stack.app("/fs/probe")
    assert app["tasksRunning"] == 1
    assert {t["appId"] for t in stack.call("GET", "/v2/tasks").json()["tasks"]} == {"/fs/probe"}
    assert set(stack.mesos_active()) == task_ids(app)
    assert [a["id"] for a in stack.call("GET", "/v2/apps").json()["apps"]] == ["/fs/probe"]
    events = stack.events.wait_for(mark, lambda ev: has_success(
        ev, resp.headers["Marathon-Deployment-Id"]) and ev, message="the probe's deployment")
    posts = [e for e in events if e[1] == "api_post_event"]
    assert [e[2]["appDefinition"]["id"] for e in posts] == ["/fs/probe"]
    assert [e[2]["plan"]["id"] for e in events if e[1] == "deployment_info"] == [
        resp.headers["Marathon-Deployment-Id"]]
    assert stack.call("DELETE", "/v2/apps/fs/probe").status_code == 200
    wait_until(lambda: stack.call("GET", "/v2/apps/fs/probe").status_code == 404
               and not stack.mesos_active(), timeout=20, message="the probe app gone")


# -- 1: create ----------------------------------------------------------------------------------

def test_create_deploys_healthy_tasks_that_serve(stack):
    clear_apps(stack)
    mark = stack.events.mark()
    started = time.monotonic()
    created = {}
    for doc in (web_app(stack.ctl), cmd_app(stack.ctl)):
        resp = stack.call("POST", "/v2/apps", doc)
        assert resp.status_code == 201, resp.text
        assert resp.headers["Location"].endswith("/v2/apps" + doc["id"])
        dep_id = resp.headers["Marathon-Deployment-Id"]
        assert resp.json()["deployments"] == [{"id": dep_id}]
        assert resp.json()["status"] == "Deploying"
        created[doc["id"]] = dep_id
    assert set(created.values()) <= stack.active_deployment_ids()
    for dep_id in created.values():
        stack.wait_deployment(dep_id)
    TIMINGS["create -> deployments succeeded (2+1 tasks)"] = time.monotonic() - started

    for app_id in (WEB, CMD):
        app = stack.app(app_id)
        assert converged(app), app
        assert app["status"] == "Running" and app["tasksUnhealthy"] == 0
        assert app["versionInfo"]["lastConfigChangeAt"]
        for task in app["tasks"]:
            assert task["host"].startswith("127.0.1.") and len(task["ports"]) == 1
            assert task["attributes"]["rack"] in ("r1", "r2")
            assert task["ipAddresses"] == [{"ipAddress": task["host"], "protocol": "IPv4"}]
            assert task["version"] == app["versionInfo"]["lastConfigChangeAt"]
            result = task["healthCheckResults"][0]
            assert result["alive"] is True and result["taskId"] == task["id"]
            assert result["firstSuccess"] and result["consecutiveFailures"] == 0
            answer = requests.get(f"http://{task['host']}:{task['ports'][0]}/", timeout=5)
            assert answer.status_code == 200
            if app_id == WEB:
                assert answer.json()["taskId"] == task["id"]
                assert answer.json()["appId"] == WEB
        mesos = stack.mesos_active()
        for task in app["tasks"]:
            assert mesos[task["id"]]["state"] == "TASK_RUNNING"
    listed = {a["id"]: a for a in stack.call("GET", "/v2/apps?embed=apps.tasks").json()["apps"]}
    assert set(listed) == {WEB, CMD}
    for app_id, app in listed.items():
        assert app["tasksHealthy"] == app["instances"] and app["status"] == "Running"
        assert task_ids(app) == task_ids(stack.app(app_id))
        assert all(t["healthCheckResults"][0]["alive"] for t in app["tasks"])
    assert "tasks" not in stack.call("GET", "/v2/apps").json()["apps"][0]
    # A client that knows only /v2/tasks reaches every task at host:ports[0] (issue 12): the
    # host resolves, and the answer comes from that very task.
    listed_tasks = stack.call("GET", "/v2/tasks").json()["tasks"]
    assert {t["appId"] for t in listed_tasks} == {WEB, CMD} and len(listed_tasks) == 3
    service_ports = {a: [d["port"] for d in stack.app(a)["portDefinitions"]] for a in (WEB, CMD)}
    assert all(10000 <= p < 20000 for ports in service_ports.values() for p in ports)
    assert service_ports[WEB] != service_ports[CMD]  # unique across apps
    for task in listed_tasks:
        assert task["servicePorts"] == service_ports[task["appId"]]
        socket.getaddrinfo(task["host"], task["ports"][0])
        answer = requests.get(f"http://{task['host']}:{task['ports'][0]}/", timeout=5)
        assert answer.status_code == 200
        if task["appId"] == WEB:
            assert answer.json()["taskId"] == task["id"]

    events = stack.events.wait_for(mark, lambda ev: has_success(ev, *created.values()) and ev,
                                   message="both deployment_success events")
    posts = [e for e in events if e[1] == "api_post_event"]
    assert [e[2]["appDefinition"]["id"] for e in posts] == [WEB, CMD]
    assert all(e[2]["uri"] == "/v2/apps" for e in posts)
    for app_id, dep_id in created.items():
        post = index_of(events, lambda e, a=app_id: e[1] == "api_post_event"
                        and e[2]["appDefinition"]["id"] == a)
        assert post < index_of(events, dep_event("deployment_info", dep_id))
        assert_deployment_events(events, dep_id, steps=2)  # StartApplication, ScaleApplication
        done = index_of(events, dep_event("deployment_success", dep_id))
        for task in stack.app(app_id)["tasks"]:
            mine = [e for e in events if e[2].get("taskId") == task["id"]]
            states = [e[2]["taskStatus"] for e in mine if e[1] == "status_update_event"]
            assert states == ["TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"], states
            health = [e for e in mine if e[1] == "health_status_changed_event"]
            assert [e[2]["alive"] for e in health] == [True]
            running = index_of(events, lambda e, t=task["id"]: e[2].get("taskId") == t
                               and e[2].get("taskStatus") == "TASK_RUNNING")
            healthy = index_of(events, lambda e, t=task["id"]: e[2].get("taskId") == t
                               and e[1] == "health_status_changed_event")
            assert post < running < healthy < done
            ev = mine[0][2]
            assert ev["appId"] == app_id and ev["host"] == task["host"]
            assert ev["ports"] == task["ports"] and ev["version"] == task["version"]
    print(f"\ncreate -> all healthy: {TIMINGS['create -> deployments succeeded (2+1 tasks)']:.2f}s")


# -- 2: scale -------------------------------------------------------------------------------------

def test_refused_changes_to_a_live_app_change_nothing(stack):
    ensure_web_and_cmd(stack)
    before = stack.app(WEB)
    mark = stack.events.mark()
    for method, path, body, code in [
        ("PUT", f"/v2/apps{WEB}", {"instances": -1}, 422),
        ("POST", "/v2/apps", web_app(stack.ctl), 409),
        ("PATCH", f"/v2/apps{WEB}", {"cpus": 0, "healthChecks": [{"protocol": "UDP"}]}, 422),
        ("PUT", f"/v2/apps{WEB}", {"id": "/fs/other", "instances": 3}, 422),
        ("DELETE", f"/v2/apps{WEB}/tasks/fs_web.{'0' * 32}", None, 404),
    ]:
        resp = stack.call(method, path, body)
        assert resp.status_code == code, (method, path, resp.status_code, resp.text)
    after = stack.app(WEB)
    assert after["version"] == before["version"] and after["instances"] == 2
    assert task_ids(after) == task_ids(before) and converged(after)
    assert not stack.active_deployment_ids()
    assert not stack.events.since(mark, "api_post_event", "deployment_info")
    assert set(stack.mesos_active()) == task_ids(after) | task_ids(stack.app(CMD))


def test_scale_up_then_down_kills_youngest_first(stack):
    ensure_web_and_cmd(stack)
    original = task_ids(stack.app(WEB))
    mark = stack.events.mark()
    started = time.monotonic()
    resp = stack.call("PUT", f"/v2/apps{WEB}", {"instances": 4})
    assert resp.status_code == 200, resp.text
    up = resp.json()["deploymentId"]
    assert resp.headers["Marathon-Deployment-Id"] == up
    assert up in stack.active_deployment_ids()
    stack.wait_deployment(up)
    TIMINGS["scale 2 -> 4"] = time.monotonic() - started
    app = stack.app(WEB)
    assert converged(app) and app["instances"] == 4, app
    assert task_ids(app) > original
    added = task_ids(app) - original
    assert app["versionInfo"]["lastScalingAt"] > app["versionInfo"]["lastConfigChangeAt"]

    started = time.monotonic()
    resp = stack.call("PUT", f"/v2/apps{WEB}", {"instances": 2})
    assert resp.status_code == 200, resp.text
    down = resp.json()["deploymentId"]
    stack.wait_deployment(down)
    TIMINGS["scale 4 -> 2"] = time.monotonic() - started
    app = stack.app(WEB)
    assert converged(app) and app["instances"] == 2, app
    assert task_ids(app) == original  # YOUNGEST_FIRST (the default): the two added ones died
    wait_until(lambda: set(stack.mesos_active()) == original | task_ids(stack.app(CMD)),
               timeout=15, message="localmesos to run exactly the remaining tasks")
    assert stack.queue() == {}
    assert stack.app(WEB)["status"] == "Running"

    events = stack.events.wait_for(mark, lambda ev: len(status_events(
        ev, WEB, state="TASK_KILLED")) >= 2 and has_success(ev, up, down) and ev,
        message="the scale-down kills and both deployments' success")
    killed = {e[2]["taskId"] for e in status_events(events, WEB, state="TASK_KILLED")}
    assert killed == added
    assert {e[2]["taskId"] for e in status_events(events, WEB, state="TASK_STAGING")} == added
    assert_deployment_events(events, up, steps=1)
    assert_deployment_events(events, down, steps=1)
    assert not status_events(events, CMD)  # the other app was not touched
    print(f"\nscale 2->4: {TIMINGS['scale 2 -> 4']:.2f}s, 4->2: {TIMINGS['scale 4 -> 2']:.2f}s")


# -- 3: rolling restart ----------------------------------------------------------------------------

def test_restart_is_rolling_and_keeps_healthy_capacity(stack):
    ensure_web_and_cmd(stack, strategy=True)  # the default one (the update test changes it)
    before = stack.app(WEB)
    old = task_ids(before)
    n = before["instances"]
    strategy = before["upgradeStrategy"]
    min_ready = -(-int(n * strategy["minimumHealthCapacity"] * 1000) // 1000)  # ceil
    max_total = n + int(n * strategy["maximumOverCapacity"])
    mark = stack.events.mark()
    started = time.monotonic()
    resp = stack.call("POST", f"/v2/apps{WEB}/restart")
    assert resp.status_code == 200, resp.text
    dep_id = resp.json()["deploymentId"]
    assert dep_id in stack.active_deployment_ids()
    assert all(ready(t) for t in before["tasks"]) and len(old) == n
    stack.wait_deployment(dep_id, timeout=60)
    TIMINGS["rolling restart (2 tasks)"] = time.monotonic() - started
    app = stack.wait_app(WEB, converged)
    assert not task_ids(app) & old, "every task replaced"
    assert all(t["version"] == app["versionInfo"]["lastConfigChangeAt"] for t in app["tasks"])
    assert app["versionInfo"]["lastConfigChangeAt"] > before["versionInfo"]["lastConfigChangeAt"]

    events = stack.events.wait_for(mark, lambda ev: len(status_events(
        ev, WEB, state="TASK_KILLED")) >= n and has_success(ev, dep_id) and ev,
        message="old tasks killed, deployment_success")
    assert_deployment_events(events, dep_id, steps=1)
    assert {e[2]["taskId"] for e in status_events(events, WEB, state="TASK_KILLED")} == old
    # at every kill, the healthy tasks left meet minimumHealthCapacity; never over capacity
    at_kills, highest = capacity_from_events([(e[1], e[2]) for e in events], WEB, old)
    assert {task for task, _ in at_kills} == old, at_kills
    lowest = min(left for _, left in at_kills)
    assert lowest >= min_ready, f"a kill left {at_kills} healthy (< {min_ready})"
    assert highest <= max_total, f"{highest} tasks at once (> {max_total})"
    # each old task dies only after a replacement became healthy (minimumHealthCapacity 1)
    first_kill = min(index_of(events, lambda e, t=t: e[2].get("taskId") == t
                              and e[2].get("taskStatus") == "TASK_KILLED") for t in old)
    healthy_new = [i for i, e in enumerate(events) if e[1] == "health_status_changed_event"
                   and e[2]["taskId"] in task_ids(app) and e[2]["alive"]]
    assert len(healthy_new) == n and min(healthy_new) < first_kill
    print(f"\nrolling restart: {TIMINGS['rolling restart (2 tasks)']:.2f}s, "
          f"healthy at each kill {[left for _, left in at_kills]}, at most {highest} tasks")


def test_update_with_tight_upgrade_strategy_replaces_within_its_bounds(stack):
    """A new definition (PATCH) is rolled out under its own upgradeStrategy: with
    minimumHealthCapacity 0.5 and maximumOverCapacity 0 on 2 instances, one ready task at
    least and never more than 2 tasks at once."""
    ensure_web_and_cmd(stack)
    old = task_ids(stack.app(WEB))
    mark = stack.events.mark()
    started = time.monotonic()
    resp = stack.call("PATCH", f"/v2/apps{WEB}", {
        "upgradeStrategy": {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}})
    assert resp.status_code == 200, resp.text
    dep_id = resp.json()["deploymentId"]
    stack.wait_deployment(dep_id, timeout=60)
    TIMINGS["update, strategy 0.5/0 (2 tasks)"] = time.monotonic() - started
    app = stack.wait_app(WEB, converged)
    assert not task_ids(app) & old
    assert app["upgradeStrategy"] == {"minimumHealthCapacity": 0.5, "maximumOverCapacity": 0}
    events = stack.events.wait_for(mark, lambda ev: len(status_events(
        ev, WEB, state="TASK_KILLED")) >= 2 and has_success(ev, dep_id) and ev,
        message="the old tasks killed, the update's deployment_success")
    assert_deployment_events(events, dep_id, steps=1)
    assert [e[2]["plan"]["steps"][0]["actions"][0]["action"] for e in events
            if dep_event("deployment_info", dep_id)(e)] == ["RestartApplication"]
    # no room over capacity: an old task is killed before the first new one is staged
    first_kill = min(index_of(events, lambda e, t=t: e[2].get("taskId") == t
                              and e[2].get("taskStatus") == "TASK_KILLED") for t in old)
    first_stage = index_of(events, lambda e: e[1] == "status_update_event"
                           and e[2]["taskStatus"] == "TASK_STAGING")
    assert first_kill < first_stage
    at_kills, highest = capacity_from_events([(e[1], e[2]) for e in events], WEB, old)
    assert {task for task, _ in at_kills} == old, at_kills
    assert all(left >= 1 for _, left in at_kills), f"healthy left at each kill: {at_kills}"
    assert highest <= 2, f"{highest} tasks at once (> 2)"
    print(f"\nupdate with strategy 0.5/0: {TIMINGS['update, strategy 0.5/0 (2 tasks)']:.2f}s, "
          f"healthy at each kill {[left for _, left in at_kills]}, at most {highest} tasks")


# -- 6: an unhealthy task is replaced, its sibling untouched ---------------------------------------

def test_unhealthy_task_replaced_sibling_untouched(stack):
    ensure_web_and_cmd(stack)
    app = stack.app(WEB)
    sick, sibling = sorted(app["tasks"], key=lambda t: t["id"])
    mark = stack.events.mark()
    started = time.monotonic()
    (stack.ctl / f"{sick['id']}.sick").touch()
    seen_sibling = []

    def replaced():
        a = stack.app(WEB)
        sib = [t for t in a["tasks"] if t["id"] == sibling["id"]]
        seen_sibling.append(bool(sib) and ready(sib[0]))
        return converged(a) and sick["id"] not in task_ids(a) and a

    app = wait_until(replaced, timeout=40, message="the sick task replaced")
    TIMINGS["unhealthy -> replaced and healthy"] = time.monotonic() - started
    assert all(seen_sibling), "the healthy sibling was never touched"
    same = [t for t in app["tasks"] if t["id"] == sibling["id"]]
    assert same and same[0]["startedAt"] == sibling["startedAt"]
    assert app["lastTaskFailure"]["taskId"] == sick["id"]

    new = task_ids(app) - {sibling["id"]}
    assert len(new) == 1
    new_id = new.pop()
    events = stack.events.wait_for(mark, lambda ev: status_events(
        ev, WEB, sick["id"], "TASK_KILLED") and [e for e in ev if e[2].get("taskId") == new_id
                                                 and e[1] == "health_status_changed_event"]
        and ev, message="the sick task killed, its replacement healthy")
    unhealthy = index_of(events, lambda e: e[1] == "health_status_changed_event"
                         and e[2]["taskId"] == sick["id"] and e[2]["alive"] is False)
    kill = index_of(events, lambda e: e[1] == "unhealthy_task_kill_event"
                    and e[2]["taskId"] == sick["id"])
    killed = index_of(events, lambda e: e[2].get("taskId") == sick["id"]
                      and e[2].get("taskStatus") == "TASK_KILLED")
    assert unhealthy < kill < killed
    assert events[kill][2]["appId"] == WEB and events[kill][2]["host"] == sick["host"]
    assert not [e for e in events if e[2].get("taskId") == sibling["id"]]
    assert [e[2]["taskStatus"] for e in status_events(events, WEB, new_id)] == [
        "TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"]
    print(f"\nunhealthy -> replaced: {TIMINGS['unhealthy -> replaced and healthy']:.2f}s")


def test_command_task_health_is_mesos_native(stack):
    """`//cmd`: localmesos runs the check (Mesos reports every counted failure as
    `healthy: false`); a failure or two below `maxConsecutiveFailures` must not cost the task,
    as many in a row make Mesos kill it, and the scheduler replaces it."""
    ensure_web_and_cmd(stack)
    task = stack.app(CMD)["tasks"][0]
    health = stack.ctl / task["id"] / "health"
    mark = stack.events.mark()
    health.unlink()
    stack.events.wait_for(mark, lambda ev: [e for e in ev if e[1] == "health_status_changed_event"
                                            and e[2]["taskId"] == task["id"]],
                          timeout=10, message="the first failed check reported")
    health.touch()  # back before maxConsecutiveFailures (5 x 0.5 s)
    app = stack.wait_app(CMD, lambda a: a["tasksHealthy"] == 1, timeout=10,
                         message="healthy again")
    assert task_ids(app) == {task["id"]}, "a transient failure killed the task"
    events = stack.events.wait_for(mark, lambda ev: [e for e in ev if e[1] ==
                                                     "health_status_changed_event"
                                                     and e[2]["alive"]] and ev,
                                   message="healthy again, in the event stream")
    assert [e[2]["alive"] for e in events if e[1] == "health_status_changed_event"] == [
        False, True]
    assert not status_events(events, CMD, state="TASK_KILLED")
    assert not [e for e in events if e[1] == "unhealthy_task_kill_event"]

    mark = stack.events.mark()
    started = time.monotonic()
    health.unlink()  # for good: Mesos kills it after 5 failures, the scheduler replaces it
    app = stack.wait_app(CMD, lambda a: converged(a) and task["id"] not in task_ids(a),
                         timeout=30, message="the unhealthy command task replaced")
    TIMINGS["//cmd unhealthy -> killed by Mesos, replaced"] = time.monotonic() - started
    events = stack.events.wait_for(mark, lambda ev: status_events(
        ev, CMD, task["id"], "TASK_KILLED") and ev, message="TASK_KILLED of the command task")
    killed = status_events(events, CMD, task["id"], "TASK_KILLED")[0]
    assert events.index(killed) > index_of(events, lambda e: e[1] == "health_status_changed_event"
                                           and e[2]["taskId"] == task["id"])
    assert app["lastTaskFailure"]["taskId"] == task["id"]


# -- 4: kill a task, with and without scale -------------------------------------------------------

def test_kill_task_without_and_with_scale(stack):
    ensure_web_and_cmd(stack)
    app = stack.app(WEB)
    victim, other = sorted(app["tasks"], key=lambda t: t["id"])
    mark = stack.events.mark()
    resp = stack.call("DELETE", f"/v2/apps{WEB}/tasks/{victim['id']}")
    assert resp.status_code == 200, resp.text
    assert resp.json()["task"]["id"] == victim["id"]
    app = stack.wait_app(WEB, lambda a: converged(a) and victim["id"] not in task_ids(a),
                         message="the killed task replaced")
    assert app["instances"] == 2 and other["id"] in task_ids(app)
    replacement = (task_ids(app) - {other["id"]}).pop()
    wait_until(lambda: not processes_with({victim["id"]}), timeout=10,
               message="the killed task's service and executor processes gone")
    assert processes_with({other["id"]}), "the other task's processes are still there"
    events = stack.events.wait_for(mark, lambda ev: status_events(
        ev, WEB, victim["id"], "TASK_KILLED") and [e for e in ev if e[2].get("taskId") ==
                                                   replacement and e[1] ==
                                                   "health_status_changed_event"] and ev,
        message="the kill, the replacement healthy")
    assert status_events(events, WEB, replacement, "TASK_RUNNING")
    assert not [e for e in events if e[1] in ("deployment_info", "unhealthy_task_kill_event")]

    mark = stack.events.mark()
    resp = stack.call("DELETE", f"/v2/apps{WEB}/tasks/{replacement}?scale=true")
    assert resp.status_code == 200, resp.text
    dep_id = resp.json()["deploymentId"]
    assert resp.json()["version"]
    stack.wait_deployment(dep_id)
    app = stack.wait_app(WEB, converged)
    assert app["instances"] == 1 and task_ids(app) == {other["id"]}
    assert set(stack.mesos_active()) == {other["id"]} | task_ids(stack.app(CMD))
    events = stack.events.wait_for(mark, lambda ev: status_events(
        ev, WEB, replacement, "TASK_KILLED") and has_success(ev, dep_id) and ev,
        message="the scale kill, deployment_success")
    assert_deployment_events(events, dep_id, steps=1)
    # The scheduler's round that saw the deployment done had planned no launch either (it plans
    # before it advances deployments), so no relaunch can be on its way.
    assert not status_events(events, WEB, state="TASK_STAGING"), "killed with scale: no relaunch"
    assert WEB not in stack.queue()


# -- 5: waiting on a constraint; delayed by backoff --------------------------------------------------

def test_unique_hostname_beyond_agents_waits(stack):
    ensure_absent(stack, UNIQUE)
    resp = stack.call("POST", "/v2/apps", unique_app())
    assert resp.status_code == 201, resp.text
    dep_id = resp.headers["Marathon-Deployment-Id"]
    app = stack.wait_app(UNIQUE, lambda a: a["tasksRunning"] == 3, message="3 unique tasks")
    assert len({t["host"] for t in app["tasks"]}) == 3
    # The queue's count is the scheduler's last waiting status, rewritten each round: one
    # written before all 3 were placed (a count of 3 or 4) may still be stored.
    item = wait_until(lambda: (i := stack.queue().get(UNIQUE)) and i["count"] == 2 and i,
                      timeout=20, message="/fs/unique in the queue with 2 waiting")
    assert item["lastUnusedOfferReason"] == "constraint hostname UNIQUE"
    assert item["delay"]["overdue"] is True
    # Its deployment cannot finish (2 can never be placed): the app says why, not "Deploying".
    app = stack.wait_app(UNIQUE, lambda a: a["status"] == "Waiting", message="status Waiting")
    assert dep_id in stack.active_deployment_ids()
    # The operator gives up on the deployment (cancel, keep the app): it goes on waiting.
    assert stack.call("DELETE", f"/v2/deployments/{dep_id}?force=true").status_code == 202
    app = stack.wait_app(UNIQUE, lambda a: a["status"] == "Waiting" and not a["deployments"],
                         message="status Waiting once the deployment is cancelled")
    assert app["tasksRunning"] == 3 and app["instances"] == 5
    assert stack.deployment(dep_id)["status"] == "cancelled"
    assert len([t for t in stack.mesos_active().values()
                if t["id"].startswith("fs_unique.")]) == 3


def test_crashing_command_is_delayed_and_delay_can_be_reset(stack):
    ensure_absent(stack, CRASH)
    mark = stack.events.mark()
    resp = stack.call("POST", "/v2/apps", crash_app())
    assert resp.status_code == 201, resp.text
    dep_id = resp.headers["Marathon-Deployment-Id"]
    seen: dict[int, int] = {}  # consecutive failures -> largest timeLeftSeconds seen

    def third_failure():
        item = stack.queue().get(CRASH)
        if item and item["delay"]["overdue"] is False:
            n = item["consecutiveFailures"]
            seen[n] = max(seen.get(n, 0), item["delay"]["timeLeftSeconds"])
        return seen.get(3, 0) >= 10 and item  # delays 1, 4, 16 s

    started = time.monotonic()
    wait_until(third_failure, timeout=30, message="three failures, a long delay")
    TIMINGS["crash x3 -> 16 s delay"] = time.monotonic() - started
    assert seen[3] > max(seen.get(1, 0), seen.get(2, 0)), seen
    # Without health checks a RUNNING task is ready, so the create may have succeeded in the
    # moment between a task's TASK_RUNNING and its TASK_FAILED (Marathon's rule too; a loaded
    # machine widens that moment). Otherwise the operator cancels the hopeless deployment.
    resp = stack.call("DELETE", f"/v2/deployments/{dep_id}?force=true")
    if resp.status_code == 404:
        assert stack.deployment(dep_id)["status"] == "succeeded"
    else:
        assert resp.status_code == 202, resp.text
    app = stack.wait_app(CRASH, lambda a: a["status"] == "Delayed", timeout=5,
                         message="status Delayed")
    assert app["lastTaskFailure"]["state"] == "TASK_FAILED"
    assert "3" in app["lastTaskFailure"]["message"]
    # the queue shows the store; the event log may trail it by a poll of the stream
    stack.events.wait_for(mark, lambda ev: len(status_events(ev, CRASH, state="TASK_FAILED"))
                          >= 3, timeout=5, message="three TASK_FAILED events")
    assert len(status_events(stack.events.since(mark), CRASH, state="TASK_FAILED")) == 3
    assert len(status_events(stack.events.since(mark), CRASH, state="TASK_STAGING")) == 3

    left = stack.queue()[CRASH]["delay"]["timeLeftSeconds"]
    reset_at = time.monotonic()
    resp = stack.call("DELETE", f"/v2/queue{CRASH}/delay")
    assert resp.status_code == 204, resp.text
    # relaunched well before the delay would have allowed it
    stack.events.wait_for(mark, lambda ev: len(status_events(ev, CRASH, state="TASK_STAGING"))
                          >= 4, timeout=left - 2, message="a launch right after the reset")
    TIMINGS["delay reset -> relaunched"] = time.monotonic() - reset_at
    stack.events.wait_for(mark, lambda ev: len(status_events(ev, CRASH, state="TASK_FAILED"))
                          >= 4, timeout=20, message="the relaunched task failing")
    # the failure count started again: 1, or 2 if it failed again. The entry is absent while a
    # relaunch (after the 1 s delay) is staging or running, so wait for it to be listed.
    item = wait_until(lambda: stack.queue().get(CRASH), timeout=10,
                      message="/fs/crash in the queue again")
    assert 1 <= item["consecutiveFailures"] <= 2 and item["delay"]["timeLeftSeconds"] <= 4, item
    # stop the crash loop: scale to 0
    resp = stack.call("PUT", f"/v2/apps{CRASH}", {"instances": 0})
    assert resp.status_code == 200, resp.text
    stack.wait_deployment(resp.json()["deploymentId"])
    assert stack.app(CRASH)["status"] == "Suspended"
    print(f"\nbackoff: 3 failures in {TIMINGS['crash x3 -> 16 s delay']:.2f}s, "
          f"relaunch after reset {TIMINGS['delay reset -> relaunched']:.2f}s")


# -- 7: delete ------------------------------------------------------------------------------------

def test_delete_removes_tasks_everywhere(stack):
    ensure_for_delete(stack)
    every_task = {e[2]["taskId"] for e in stack.events.since(0, "status_update_event")}
    live = {t["id"] for t in stack.call("GET", "/v2/tasks").json()["tasks"]}
    web = stack.app(WEB)["instances"]
    assert len(live) == web + 1 + 3 and live <= every_task  # web, cmdweb, 3 unique
    assert processes_with(live), "the services should be visible before"
    mark = stack.events.mark()
    started = time.monotonic()
    deps = {}
    for app_id in (WEB, CMD, UNIQUE, CRASH):
        resp = stack.call("DELETE", f"/v2/apps{app_id}")
        assert resp.status_code == 200, (app_id, resp.text)
        deps[app_id] = resp.json()["deploymentId"]
    for dep_id in deps.values():
        stack.wait_deployment(dep_id)
    TIMINGS["delete 4 apps"] = time.monotonic() - started
    for app_id in deps:
        assert stack.call("GET", f"/v2/apps{app_id}").status_code == 404
    assert stack.call("GET", "/v2/apps").json() == {"apps": []}
    assert stack.call("GET", "/v2/tasks").json() == {"tasks": []}
    assert stack.queue() == {}
    wait_until(lambda: not stack.mesos_active(), timeout=15, message="no task in localmesos")
    wait_until(lambda: not processes_with(every_task), timeout=15,
               message="no task or executor process left")
    events = stack.events.wait_for(mark, lambda ev: len([e for e in ev if e[1] ==
                                                         "app_terminated_event"]) >= 4
                                   and has_success(ev, *deps.values()) and ev,
                                   message="app_terminated_event x4")
    terminated = [e[2]["appId"] for e in events if e[1] == "app_terminated_event"]
    assert sorted(terminated) == sorted(deps)
    for app_id, dep_id in deps.items():
        assert_deployment_events(events, dep_id, steps=1)
        done = index_of(events, dep_event("deployment_success", dep_id))
        assert done < index_of(events, lambda e, a=app_id: e[1] == "app_terminated_event"
                               and e[2]["appId"] == a)
    killed = {e[2]["taskId"] for e in status_events(events, state="TASK_KILLED")}
    assert killed == live
    print(f"\ndelete 4 apps: {TIMINGS['delete 4 apps']:.2f}s")


# -- 8: the stream as a whole ----------------------------------------------------------------------

def test_event_stream_saw_every_step(stack):
    """The stream as a whole: every event the module's steps caused (each step checks its own
    kinds and states: TASK_FAILED, unhealthy_task_kill_event, app_terminated_event, ...) came
    once, in id order, well formed. A change of its own makes sure there is one to see."""
    mark = stack.events.mark()
    resp = stack.call("POST", "/v2/apps", {"id": "/fs/stream", "cmd": "sleep 600",
                                           "cpus": 0.1, "mem": 16, "instances": 0})
    assert resp.status_code == 201, resp.text
    stack.wait_deployment(resp.headers["Marathon-Deployment-Id"])
    delete_apps(stack, ["/fs/stream"])
    stack.events.wait_for(mark, lambda ev: [e for e in ev if e[1] == "app_terminated_event"
                                            and e[2]["appId"] == "/fs/stream"],
                          message="the probe's app_terminated_event")
    assert stack.events.error is None, stack.events.error
    assert not stack.events.overflow
    events = stack.events.since(0)
    ids = [e[0] for e in events]
    assert ids == sorted(set(ids)), "ids strictly increasing, none repeated"
    kinds = {e[1] for e in events}
    assert kinds >= {"api_post_event", "deployment_info", "deployment_step_success",
                     "deployment_success", "app_terminated_event"}
    for e in events:
        assert e[2]["eventType"] == e[1] and e[2]["timestamp"].endswith("Z")
    print("\ntimings:\n" + "\n".join(f"  {k}: {v:.2f}s" for k, v in TIMINGS.items()))
