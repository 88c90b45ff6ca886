"""Start `accessd scheduler` as a real process for integration tests, and write desired state
the way the control API does (stamp the app, plan its deployment, store both atomically).
"""

from __future__ import annotations

import os
import random
import re
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from scheduler.deployments import plan_deployment
from scheduler.spec import iso_now, parse_app, stamp_app
from scheduler.sqlite_state import open_state
from scheduler.state import StateStore
from tests.fixtures_mesos import start_localmesos
from tests.support import PYTHON, REPO, Proc, assert_no_traceback, port_is_free, watch_processes

REGISTERED = re.compile(r"registered framework_id=(\S+)")



def agent_port_plan(agents: int = 3, width: int = 100) -> tuple[str, list[int]]:
    """localmesos `--resources` whose agents' port blocks are free right now, and the first
    port of each agent's block, in agent order.

    Every localmesos offers the same ports by default and all tasks listen on 127.0.0.1, so two
    clusters running at once (other test runs, `accessd local`) could hand out the same real
    ports. localmesos itself keeps its clusters apart (`localmesos/portblocks.py`): agent k
    claims, with a flock per 1000-port chunk, the k-th unclaimed block going *down* from the
    configured range in steps of 1000. This predicts those blocks the same way, from a random
    base below the kernel's ephemeral range, and checks every port of each free of listeners.
    """
    from localmesos.portblocks import CHUNK, LOWEST_PORT, default_lock_dir

    lock_dir = default_lock_dir()
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(10000, 30000, 100)
        blocks: list[int] = []
        step = 0
        while len(blocks) < agents and base - step * CHUNK >= LOWEST_PORT:
            low = base - step * CHUNK
            step += 1
            if not any(_chunk_claimed(lock_dir, c * CHUNK)
                       for c in range(low // CHUNK, (low + width - 1) // CHUNK + 1)):
                blocks.append(low)
        if len(blocks) == agents and all(port_is_free(b + i) for b in blocks
                                         for i in range(width)):
            return f"cpus:4;mem:4096;disk:10000;ports:[{base}-{base + width - 1}]", blocks
    raise RuntimeError("no free port block for the agents")


def agent_resources(agents: int = 3, width: int = 100) -> str:
    """`agent_port_plan`'s `--resources`."""
    return agent_port_plan(agents, width)[0]


def _chunk_claimed(lock_dir: Path, first_port: int) -> bool:
    """True if a process holds a flock on the lock file of the chunk starting at `first_port`.

    Read from /proc/locks rather than by trying the lock: a probe would hold it for a moment,
    and a localmesos claiming that chunk just then would skip it."""
    try:
        st = os.stat(lock_dir / f"ports-{first_port}.lock")
        with open("/proc/locks") as locks:
            table = locks.read()
    except OSError:
        return False
    for line in table.splitlines():
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 00:2a:1234 0 EOF" (blocked waiters have "->" first)
        if len(fields) >= 6 and fields[1] == "FLOCK":
            major, minor, inode = fields[5].split(":")
            if (int(inode) == st.st_ino and int(major, 16) == os.major(st.st_dev)
                    and int(minor, 16) == os.minor(st.st_dev)):
                return True
    return False


@contextmanager
def scheduler_cluster(work: Path, scheduler_args: Sequence[str] = (),
                      **mesos_kwargs: Any) -> Iterator[tuple[Any, StateStore, Proc]]:
    """localmesos (3 agents, their own ports) + a store + `accessd scheduler` on it (with
    `scheduler_args` besides `--refuse-seconds 1`), stopped in reverse order.

    Afterwards no scheduler started while the cluster was up (this one, and any a test started,
    killed or replaced) may have logged a traceback anywhere in its output: its worker logs an
    exception and carries on, so only the log shows one."""
    with watch_processes() as started_procs:
        mesos = start_localmesos(work / "mesos", agents=3, resources=agent_resources(),
                                 **mesos_kwargs)
        store = open_state(str(work / "state.db"))
        sched = None
        try:
            started = time.monotonic()
            sched = start_scheduler(mesos.master, work / "state.db",
                                    ["--refuse-seconds", "1", *scheduler_args])
            print(f"scheduler registered in {time.monotonic() - started:.2f}s")
            yield mesos, store, sched
        finally:
            if sched is not None:
                sched.stop()
            store.close()
            mesos.stop()
    assert_no_traceback(scheduler_procs(started_procs))


def scheduler_procs(procs: Sequence[Proc]) -> list[Proc]:
    """The `accessd scheduler` processes among `procs`."""
    return [p for p in procs if p.args[1:4] == ["-m", "accessd.cli", "scheduler"]]


def start_scheduler(master: str, state_path: str | os.PathLike, extra_args: Sequence[str] = (),
                    timeout: float = 60.0) -> Proc:
    """Run `accessd scheduler --master M --state S` and wait until it has registered.

    The framework id it logged is in `proc.framework_id`.
    """
    proc = Proc([PYTHON, "-m", "accessd.cli", "scheduler", "--master", master,
                 "--state", str(state_path), *extra_args], cwd=REPO)
    try:
        line = proc.wait_for_line(lambda text: REGISTERED.search(text) is not None,
                                  timeout=timeout)
    except BaseException:
        proc.stop()
        raise
    proc.framework_id = REGISTERED.search(line).group(1)  # type: ignore[attr-defined]
    return proc


# -- desired state, written as the API writes it -------------------------------------------------

def deploy_app(store: StateStore, app_json: dict[str, Any], *, force: bool = False) -> dict:
    """Create or replace an app (a new definition restarts its tasks); returns the deployment."""
    spec = parse_app(app_json)
    previous = store.get_app(spec.id)
    now = iso_now()
    doc = stamp_app(spec.to_json(), previous, now, scale_only=False)
    kind = "create" if previous is None else "update"
    deployment = plan_deployment(previous, doc, now=now, kind=kind)
    store.apply_app_change(spec.id, doc, deployment, force=force)
    store.append_event("api_post_event", {"clientIp": "127.0.0.1", "uri": f"/v2/apps{spec.id}",
                                          "appDefinition": doc})
    return deployment


def scale_app(store: StateStore, app_id: str, instances: int, *, force: bool = False) -> dict:
    previous = store.get_app(app_id)
    assert previous is not None, app_id
    now = iso_now()
    app_json = {k: v for k, v in previous.items() if k not in ("version", "versionInfo")}
    app_json["instances"] = instances
    doc = stamp_app(parse_app(app_json).to_json(), previous, now, scale_only=True)
    deployment = plan_deployment(previous, doc, now=now, kind="scale")
    store.apply_app_change(app_id, doc, deployment, force=force, must_exist=True)
    return deployment


def restart_app(store: StateStore, app_id: str, *, force: bool = False) -> dict:
    previous = store.get_app(app_id)
    assert previous is not None, app_id
    now = iso_now()
    app_json = {k: v for k, v in previous.items() if k not in ("version", "versionInfo")}
    doc = stamp_app(app_json, previous, now, scale_only=False)
    deployment = plan_deployment(previous, doc, now=now, kind="restart")
    store.apply_app_change(app_id, doc, deployment, force=force, must_exist=True)
    return deployment


def delete_app(store: StateStore, app_id: str, *, force: bool = False) -> dict:
    previous = store.get_app(app_id)
    assert previous is not None, app_id
    deployment = plan_deployment(previous, None, now=iso_now(), kind="delete")
    store.apply_app_change(app_id, None, deployment, force=force, must_exist=True)
    return deployment


# -- observing the cluster -------------------------------------------------------------------------

def mesos_tasks(state: dict[str, Any], framework_id: str,
                states: Sequence[str] = ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING",
                                         "TASK_KILLING")) -> dict[str, dict]:
    """The framework's tasks in a master `/state` document, by id, in the given states."""
    out: dict[str, dict] = {}
    for fw in state.get("frameworks", []):
        if fw.get("id") != framework_id:
            continue
        for task in fw.get("tasks", []):
            if task.get("state") in states:
                out[task["id"]] = task
    return out


def store_tasks(store: StateStore, app_id: str, state: str | None = "TASK_RUNNING") -> list[dict]:
    return [t for t in store.list_tasks(app_id) if state is None or t.get("state") == state]


_LEAVING = ("TASK_KILLING", "TASK_KILLED", "TASK_FAILED", "TASK_FINISHED", "TASK_LOST",
            "TASK_ERROR", "TASK_GONE", "TASK_DROPPED", "TASK_UNREACHABLE")


def capacity_from_events(events: Sequence[tuple[str, dict]], app_id: str,
                         healthy_before: set[str]) -> tuple[list[tuple[str, int]], int]:
    """Replay the event log (`(event type, payload)` pairs, in order) of `app_id` from a moment
    when `healthy_before` were its tasks, all
    healthy: for every kill (the task's first TASK_KILLING or TASK_KILLED), the number of the
    app's *other* tasks healthy at that moment; and the most tasks alive at once. Every change
    is in the log, so nothing happens between two samples unseen."""
    healthy, live = set(healthy_before), set(healthy_before)
    at_kills: list[tuple[str, int]] = []
    most = len(live)
    for kind, payload in events:
        if payload.get("appId") != app_id:
            continue
        task = payload.get("taskId")
        if kind == "health_status_changed_event":
            (healthy.add if payload["alive"] else healthy.discard)(task)
        elif kind == "status_update_event":
            if payload["taskStatus"] in _LEAVING:
                if task in live and payload["taskStatus"] in ("TASK_KILLING", "TASK_KILLED"):
                    at_kills.append((task, len(healthy - {task})))
                healthy.discard(task)
                live.discard(task)
            else:
                live.add(task)
                most = max(most, len(live))
    return at_kills, most
