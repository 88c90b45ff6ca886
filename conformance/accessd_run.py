"""accessd on a cluster, started unchanged as the test suite starts it (`tests/fixtures_*.py`):
`accessd scheduler --master zk://…` and `accessd api` (gunicorn) on one SQLite state, plus a
small client of the control API that the scenarios drive it through.
"""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from conformance.clusters import Cluster
from scheduler.sqlite_state import open_state
from tests.fixtures_api import start_api
from tests.fixtures_scheduler import mesos_tasks, start_scheduler
from tests.support import Proc, wait_until

SCHEDULER_ARGS = ("--refuse-seconds", "1")


class Accessd:
    def __init__(self, cluster: Cluster, work: Path) -> None:
        self.cluster = cluster
        self.work = work
        self.state_path = work / "state.db"
        self.store = open_state(str(self.state_path))
        self.schedulers: list[Proc] = []  # every one started, for their logs
        self.sched: Proc | None = None
        self.api_proc: Proc | None = None
        try:
            self.start_scheduler()
            self.framework_id: str = self.sched.framework_id  # type: ignore[union-attr]
            self.api_proc, self.api = start_api(self.state_path, workers=2)
        except BaseException:
            self.stop()
            raise

    # -- processes ---------------------------------------------------------------------------

    def start_scheduler(self, timeout: float = 90.0) -> Proc:
        self.sched = start_scheduler(self.cluster.master, self.state_path, SCHEDULER_ARGS,
                                     timeout=timeout)
        self.schedulers.append(self.sched)
        return self.sched

    def kill9_scheduler(self) -> None:
        assert self.sched is not None
        self.sched.signal(signal.SIGKILL)
        self.sched.popen.wait(10)
        self.sched = None

    def scheduler_logs(self) -> str:
        return "\n".join(p.output() for p in self.schedulers)

    def stop(self) -> None:
        if self.sched is not None:
            self.sched.stop()
        if self.api_proc is not None:
            self.api_proc.stop()
        self.store.close()
        # kept with the run's work dirs (tools/conformance.sh keeps them when the lane fails)
        for n, proc in enumerate(self.schedulers, 1):
            (self.work / f"scheduler-{n}.log").write_text("\n".join(proc.lines) + "\n")

    # -- the control API ---------------------------------------------------------------------

    def _ok(self, resp: requests.Response) -> Any:
        assert resp.status_code < 300, f"{resp.request.method} {resp.url}: {resp.status_code} " \
                                       f"{resp.text[:500]}"
        return resp.json() if resp.content else None

    def deploy(self, app: dict[str, Any]) -> str:
        body = self._ok(requests.post(f"{self.api}/v2/apps", json=app, timeout=30))
        return body["deployments"][0]["id"]

    def scale(self, app_id: str, instances: int) -> str:
        return self._ok(requests.put(f"{self.api}/v2/apps{app_id}",
                                     json={"instances": instances}, timeout=30))["deploymentId"]

    def restart(self, app_id: str) -> str:
        return self._ok(requests.post(f"{self.api}/v2/apps{app_id}/restart",
                                      timeout=30))["deploymentId"]

    def kill_task(self, app_id: str, task_id: str, scale: bool) -> Any:
        return self._ok(requests.delete(f"{self.api}/v2/apps{app_id}/tasks/{task_id}",
                                        params={"scale": str(scale).lower()}, timeout=30))

    def delete(self, app_id: str, force: bool = False) -> str:
        return self._ok(requests.delete(f"{self.api}/v2/apps{app_id}",
                                        params={"force": "true"} if force else None,
                                        timeout=30))["deploymentId"]

    def app(self, app_id: str) -> dict[str, Any]:
        return self._ok(requests.get(f"{self.api}/v2/apps{app_id}", params={"embed": [
            "app.tasks", "app.counts", "app.deployments", "app.lastTaskFailure"]},
            timeout=30))["app"]

    def app_ids(self) -> list[str]:
        return [a["id"] for a in self._ok(requests.get(f"{self.api}/v2/apps", timeout=30))["apps"]]

    def tasks(self, app_id: str) -> list[dict[str, Any]]:
        return self.app(app_id)["tasks"]

    def ready_tasks(self, app_id: str) -> list[dict[str, Any]]:
        return ready(self.app(app_id))

    def deployment_ids(self) -> set[str]:
        return {d["id"] for d in self._ok(requests.get(f"{self.api}/v2/deployments",
                                                       timeout=30))}

    def wait_deployed(self, deployment_id: str, timeout: float = 90.0) -> None:
        wait_until(lambda: deployment_id not in self.deployment_ids(), timeout=timeout,
                   interval=0.2, message=f"deployment {deployment_id} to finish")

    def wait_ready(self, app_id: str, count: int, timeout: float = 90.0,
                   fail_on_task_failure: bool = False) -> list[dict]:
        """Exactly `count` tasks, all running (and healthy when checked); returns them. With
        `fail_on_task_failure`, a task failure of the app (its `lastTaskFailure`) ends the wait."""
        def all_ready() -> list[dict] | None:
            app = self.app(app_id)
            if fail_on_task_failure and app.get("lastTaskFailure"):
                failure = app["lastTaskFailure"]
                pytest.fail(f"{app_id}: task failed before all were ready: "
                            f"{failure.get('state')} {failure.get('message')}")
            tasks = app["tasks"]
            good = ready(app)
            return good if len(good) == count == len(tasks) else None
        return wait_until(all_ready, timeout=timeout, interval=0.2,
                          message=f"{count} ready tasks of {app_id}")

    def events(self, event_type: str) -> list[dict[str, Any]]:
        return [e for _, e in self.store.events_since(0, limit=100000)
                if e.get("eventType") == event_type]

    # -- the cluster's view ------------------------------------------------------------------

    def cluster_tasks(self, prefix: str = "", states: tuple[str, ...] = ("TASK_RUNNING",)
                      ) -> set[str]:
        """Ids of this framework's tasks in the master's /state (ids starting with `prefix`)."""
        tasks = mesos_tasks(self.cluster.state(), self.framework_id, states)
        return {t for t in tasks if t.startswith(prefix)}


def healthy(task: dict[str, Any], checks: int) -> bool:
    """Healthy as a Marathon client judges it (marathon-lb, the UI): a result for every health
    check, each `alive`."""
    results = task.get("healthCheckResults") or []
    return len(results) >= checks and all(r.get("alive") is True for r in results)


def ready(app: dict[str, Any]) -> list[dict[str, Any]]:
    """The app's tasks that serve: TASK_RUNNING and, when the app has checks, healthy."""
    checks = len(app.get("healthChecks") or [])
    return [t for t in app["tasks"] if t.get("state") == "TASK_RUNNING"
            and (checks == 0 or healthy(t, checks))]


def watch(seconds: float, check, interval: float = 0.25) -> None:
    """Call `check()` (which asserts) repeatedly for `seconds`: a property that must hold all
    along, not just at one instant."""
    deadline = time.monotonic() + seconds
    while True:
        check()
        if time.monotonic() > deadline:
            return
        time.sleep(interval)
