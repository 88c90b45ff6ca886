"""A small real framework for the executor's integration tests: a pymesos MesosSchedulerDriver
that launches the TaskInfos a test asks for (with accessd's executor) on the next fitting offer
and records every status update as the scheduler receives it.

TaskInfos are the ones accessd's scheduler sends: `scheduler.tasks.build_task_info` on a Launch
made here from the offer (the first free ports; placement itself is not under test).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pymesos import MesosSchedulerDriver, Scheduler

from scheduler.placement import Launch
from scheduler.spec import iso_now, parse_app
from scheduler.tasks import build_task_info, new_task_id
from tests.support import PYTHON, port_is_free

Status = dict[str, Any]


def scalar(offer: dict, name: str) -> float:
    return sum(r.get("scalar", {}).get("value", 0.0) for r in offer.get("resources", [])
               if r.get("name") == name)


def offer_ports(offer: dict) -> list[int]:
    out: list[int] = []
    for r in offer.get("resources", []):
        if r.get("name") == "ports":
            for rng in r.get("ranges", {}).get("range", []):
                out.extend(range(int(rng["begin"]), int(rng["end"]) + 1))
    return out


def build_for_offer(offer: dict, app_doc: dict, task_id: str, nports: int) -> tuple[dict, list[int]]:
    """The TaskInfo accessd's scheduler would send for `app_doc` on `offer` (placement by hand:
    the first free ports of the offer, small cpus/mem)."""
    app = parse_app(app_doc)
    ports = [p for p in offer_ports(offer) if port_is_free(p)][:nports]
    resources: list[dict] = [
        {"name": "cpus", "type": "SCALAR", "scalar": {"value": app.cpus}},
        {"name": "mem", "type": "SCALAR", "scalar": {"value": app.mem}},
    ]
    if ports:
        resources.append({"name": "ports", "type": "RANGES", "ranges": {
            "range": [{"begin": p, "end": p} for p in ports]}})
    launch = Launch(offer_id=offer["id"]["value"], agent_id=offer["agent_id"]["value"],
                    hostname=offer.get("hostname", ""), attributes={}, app_id=app.id,
                    resources=resources, ports=ports)
    info = build_task_info(launch, app, task_id=task_id, config_version=iso_now(),
                           executor_python=PYTHON)
    return info, ports


class RecordingFramework(Scheduler):
    """Launches requested tasks on offers; records statuses (arrival time in `t`)."""

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.statuses: list[Status] = []
        self.pending: list[tuple[Callable[[dict], dict], int]] = []  # (builder, ports needed)
        self.framework_id: str | None = None
        self.driver: MesosSchedulerDriver | None = None

    # -- pymesos callbacks (its I/O thread) ---------------------------------------------------
    def registered(self, driver, framework_id, master_info) -> None:
        with self.cond:
            self.framework_id = framework_id["value"]
            self.cond.notify_all()

    def resourceOffers(self, driver, offers) -> None:
        for offer in offers:
            with self.cond:
                chosen = None
                for i, (_builder, nports) in enumerate(self.pending):
                    free = [p for p in offer_ports(offer) if port_is_free(p)]
                    if scalar(offer, "cpus") >= 0.2 and scalar(offer, "mem") >= 64 and \
                            len(free) >= nports:
                        chosen = self.pending.pop(i)
                        break
            if chosen is None:
                driver.declineOffer([offer["id"]], {"refuse_seconds": 1})
                continue
            builder, nports = chosen
            task = builder(offer)
            driver.launchTasks([offer["id"]], [task], {"refuse_seconds": 1})

    def statusUpdate(self, driver, status) -> None:
        status = dict(status)
        status["t"] = time.monotonic()
        with self.cond:
            self.statuses.append(status)
            self.cond.notify_all()

    # -- test side -------------------------------------------------------------------------------
    def launch(self, app: dict, *, mutate: Callable[[dict], None] | None = None
               ) -> tuple[str, dict]:
        """Queue a task of `app` (Marathon JSON; `mutate` may spoil its TaskInfo); returns the
        task id and a dict that receives `ports`, `agent_id`, `hostname` at launch."""
        task_id = new_task_id(parse_app(app).id)
        nports = len(app.get("portDefinitions", app.get("ports", [])))
        launched: dict[str, Any] = {}

        def build(offer: dict) -> dict:
            info, ports = build_for_offer(offer, app, task_id, nports)
            if mutate is not None:
                mutate(info)
            launched.update(ports=ports, agent_id=offer["agent_id"]["value"],
                            hostname=offer.get("hostname"), info=info)
            return info

        with self.cond:
            self.pending.append((build, nports))
        assert self.driver is not None
        self.driver.reviveOffers()
        return task_id, launched

    def kill(self, task_id: str, grace: float | None = None) -> None:
        """KILL call; with `grace`, the call carries a kill_policy overriding the TaskInfo's."""
        assert self.driver is not None
        if grace is None:
            self.driver.killTask({"value": task_id})
            return
        self.driver._send({  # pymesos's killTask has no kill_policy parameter
            "type": "KILL", "framework_id": {"value": self.framework_id},
            "kill": {"task_id": {"value": task_id},
                     "kill_policy": {"grace_period": {"nanoseconds": int(grace * 1e9)}}}})

    def of(self, task_id: str) -> list[Status]:
        with self.cond:
            return [s for s in self.statuses if s["task_id"]["value"] == task_id]

    def wait_for(self, task_id: str, predicate: Callable[[Status], bool], timeout: float = 30.0,
                 what: str = "status") -> Status:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for s in self.statuses:
                    if s["task_id"]["value"] == task_id and predicate(s):
                        return s
                left = deadline - time.monotonic()
                if left <= 0:
                    seen = [(s["state"], s.get("healthy"), s.get("message"))
                            for s in self.statuses if s["task_id"]["value"] == task_id]
                    raise AssertionError(f"timed out waiting for {what} of {task_id}; seen {seen}")
                self.cond.wait(min(left, 0.5))

    def wait_state(self, task_id: str, state: str, timeout: float = 30.0) -> Status:
        return self.wait_for(task_id, lambda s: s["state"] == state, timeout, state)


def start_framework(master: str, timeout: float = 30.0, checkpoint: bool = False
                    ) -> tuple[RecordingFramework, MesosSchedulerDriver]:
    framework = RecordingFramework()
    info = {"user": "", "name": "executor-tests", "hostname": "127.0.0.1",
            "failover_timeout": 0, "checkpoint": checkpoint}
    driver = MesosSchedulerDriver(framework, info, master, use_addict=False)
    framework.driver = driver
    driver.start()
    deadline = time.monotonic() + timeout
    with framework.cond:
        while framework.framework_id is None:
            left = deadline - time.monotonic()
            if left <= 0:
                driver.stop()
                raise AssertionError(f"framework did not register with {master}")
            framework.cond.wait(left)
    return framework, driver
