"""An HA accessd on loopback for tests and benchmarks: a 3-server ZooKeeper ensemble, localmesos,
schedulers sharing a `zk://` state store (one leader, the others standing by) and control APIs
on the same store.

    ha = HaCluster(work); ha.start(schedulers=2, apis=1)
    ha.leader()                      # the name GET /v2/leader gives (the scheduler's --advertise)
    ha.scheduler(name)               # its Proc
    ha.consistent("/app", n)         # store tasks == Mesos tasks, n of them, each once
    ha.stop()
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from scheduler.stores import open_state
from tests.fixtures_api import start_api
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import REGISTERED, agent_resources, mesos_tasks
from tests.fixtures_zk import start_ensemble
from tests.support import PYTHON, REPO, Proc, wait_until

SESSION_TIMEOUT = 3.0


class HaCluster:
    def __init__(self, work: Path, session_timeout: float = SESSION_TIMEOUT) -> None:
        self.work = Path(work)
        self.session_timeout = session_timeout
        self.zk: Any = None
        self.mesos: Any = None
        self.store: Any = None
        self.url = ""
        self.schedulers: dict[str, Proc] = {}
        self.apis: list[tuple[Proc, str]] = []
        self.framework_id: str | None = None
        self._n = 0

    def start(self, schedulers: int = 2, apis: int = 1) -> None:
        self.zk = start_ensemble(self.work)
        self.url = self.zk.url("/accessd") + f"?session_timeout={self.session_timeout:g}"
        self.mesos = start_localmesos(self.work / "mesos", agents=3, resources=agent_resources())
        self.store = open_state(self.url)
        for _ in range(apis):
            self.apis.append(start_api(self.url, workers=1))
        first = self.add_scheduler()
        line = first.wait_for_line(lambda text: REGISTERED.search(text) is not None, 60)
        self.framework_id = REGISTERED.search(line).group(1)
        for _ in range(schedulers - 1):
            self.add_scheduler().wait_for_line(lambda text: "waiting to be elected" in text, 60)

    @property
    def api(self) -> str:
        return self.apis[0][1]

    def add_scheduler(self) -> Proc:
        self._n += 1
        name = f"sched-{self._n}"
        self.schedulers[name] = Proc(
            [PYTHON, "-m", "accessd.cli", "scheduler", "--master", self.mesos.master,
             "--state", self.url, "--refuse-seconds", "1", "--advertise", name], cwd=REPO)
        return self.schedulers[name]

    def leader(self, api: str | None = None) -> str | None:
        r = requests.get((api or self.api) + "/v2/leader", timeout=5)
        return r.json()["leader"] if r.status_code == 200 else None

    def wait_new_leader(self, old: str | None, timeout: float) -> str:
        """The next leader (not `old`) once it has subscribed to Mesos and reconciled."""
        name = wait_until(lambda: (lambda n: n if n and n != old else None)(self.leader()),
                          timeout=timeout, interval=0.05, message=f"a leader other than {old}")
        self.schedulers[name].wait_for_line(lambda text: "reconciling" in text, 30)
        return name

    def leading_count(self) -> int:
        """How many live schedulers lead now, by their logs (elected, not stepped down)."""
        count = 0
        for proc in list(self.schedulers.values()):
            if proc.popen.poll() is not None:
                continue
            state = False
            for line in list(proc.lines):
                if "elected leader" in line:
                    state = True
                elif "leadership lost" in line or "stepped down" in line:
                    state = False
            count += state
        return count

    def mesos_ids(self, app_prefix: str) -> set[str]:
        return {t for t in mesos_tasks(self.mesos.state(), self.framework_id or "")
                if t.startswith(app_prefix)}

    def consistent(self, app_id: str, instances: int) -> bool:
        """Store and Mesos hold the same `instances` live tasks of the app, each once."""
        prefix = app_id.strip("/").replace("/", "_") + "."
        in_store = {t["id"] for t in self.store.list_tasks(app_id)}
        running = [t for t in self.store.list_tasks(app_id) if t.get("state") == "TASK_RUNNING"]
        return (in_store == self.mesos_ids(prefix) and len(in_store) == instances
                and len(running) == instances)

    def deployments_done(self) -> bool:
        return requests.get(self.api + "/v2/deployments", timeout=5).json() == []

    def stop(self) -> list[str]:
        outputs = []
        for proc in self.schedulers.values():
            proc.signal(18)  # SIGCONT: a paused one must be able to stop
            proc.stop()
            outputs.append(proc.output())
        for proc, _ in self.apis:
            proc.stop()
        if self.store is not None:
            self.store.close()
        if self.mesos is not None:
            self.mesos.stop()
        if self.zk is not None:
            self.zk.stop()
        return outputs


@contextlib.contextmanager
def running_ha_cluster(work: Path) -> Iterator[HaCluster]:
    """Two schedulers and an API on a 3-server ensemble; afterwards no process of it may have
    logged a traceback (each shown with its surroundings)."""
    cluster = HaCluster(work)
    try:
        cluster.start(schedulers=2, apis=1)
        yield cluster
    finally:
        outputs = cluster.stop()
    tracebacks = [out[max(0, out.index("Traceback") - 2000):out.index("Traceback") + 3000]
                  for out in outputs if "Traceback" in out]
    assert not tracebacks, "\n=====\n".join(tracebacks)
