"""Reading a task's sandbox files through Mesos's own APIs, so the same code serves `accessd local`
and a real cluster.

- The agent: the task document's `slaveId` (live tasks), else the master's `/state`
  (`frameworks[].tasks`, `completed_tasks`, `unreachable_tasks`, also of `completed_frameworks`)
  for tasks that have ended; its address is the agent's `pid` (`slave(1)@IP:PORT`) in `/state`.
- The sandbox: the agent's virtual path `/frameworks/<fw>/executors/<executor>/runs/latest`, which
  a Mesos agent attaches for every executor until it garbage-collects the sandbox. accessd's
  executor id is the task id for both command tasks and its own executor (`scheduler.tasks`).
- The file: `/files/read?path=…&offset=…&length=…` (`offset=-1` answers the size).
- The master: `HOST:PORT`, or `zk://…/path` (the leader announced there, as Mesos does).

Failures become `LogsError(status, message)`: 404 when the task or its sandbox is unknown, 502/504
when the master or the agent cannot be reached.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import requests

MAX_READ = 64 * 1024  # a Mesos agent reads at most 16 pages per request
STATE_TTL = 2.0  # seconds a master /state answer is reused (a follower polls several times a s)
TIMEOUT = 5.0


class LogsError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Sandbox:
    agent_id: str
    agent_url: str  # http://IP:PORT
    path: str  # the virtual sandbox path on that agent


def master_url(master: str) -> str:
    master = master.strip().rstrip("/")
    return master if master.startswith(("http://", "https://")) else f"http://{master}"


def leader_from_zk(url: str) -> str:
    """The leading master's `http://IP:PORT` from ZooKeeper, as Mesos announces it: the
    `json.info_<seq>` child with the lowest sequence under the path holds its MasterInfo JSON.
    kazoo (through `scheduler.zk`, the one adapter) is imported only for `zk://` masters."""
    import json

    from scheduler.state import StateError
    from scheduler.zk import new_client, parse_zk_url

    try:
        zk = parse_zk_url(url)
        client = new_client(zk, connect_timeout=TIMEOUT)
    except StateError as exc:
        raise LogsError(502, f"cannot find the Mesos master in {url}: {exc}") from None
    from kazoo.exceptions import NoNodeError

    try:
        try:
            children = [c for c in client.get_children(zk.root) if c.startswith("json.info_")]
        except NoNodeError:
            children = []
        if not children:
            raise LogsError(502, f"no Mesos master is announced in {url}")
        lowest = min(children, key=lambda c: int(c.rsplit("_", 1)[1]))
        info = json.loads(client.get(f"{zk.root}/{lowest}")[0].decode("utf-8"))
    except LogsError:
        raise
    except Exception as exc:  # kazoo's errors, or a znode that is not MasterInfo JSON
        raise LogsError(502, f"cannot read the Mesos master from {url}: {exc}") from None
    finally:
        client.stop()
        client.close()
    address = info.get("address") or {}
    host = address.get("ip") or address.get("hostname") or info.get("hostname")
    port = address.get("port") or info.get("port")
    if not host or not port:
        raise LogsError(502, f"the master announced in {url} names no address")
    return f"http://{host}:{port}"


def agent_url_from_pid(pid: str) -> str | None:
    """`slave(1)@127.0.0.1:5051` -> `http://127.0.0.1:5051`."""
    _, sep, address = pid.rpartition("@")
    return f"http://{address}" if sep and ":" in address else None


def find_agent_of_task(state: dict[str, Any], framework_id: str, task_id: str) -> str | None:
    """The agent id a task ran on, from the master's /state (live, ended or unreachable)."""
    for fw in (state.get("frameworks") or []) + (state.get("completed_frameworks") or []):
        if fw.get("id") != framework_id:
            continue
        for key in ("tasks", "completed_tasks", "unreachable_tasks"):
            for task in fw.get(key) or []:
                if task.get("id") == task_id:
                    return task.get("slave_id")
    return None


def agent_address(state: dict[str, Any], agent_id: str) -> str | None:
    for agent in state.get("slaves") or []:
        if agent.get("id") == agent_id:
            return agent_url_from_pid(agent.get("pid") or "")
    return None


def sandbox_path(framework_id: str, executor_id: str) -> str:
    return f"/frameworks/{framework_id}/executors/{executor_id}/runs/latest"


class MesosFiles:
    """A client of the master's /state and the agents' /files API (thread-safe)."""

    def __init__(self, master: str) -> None:
        # A zk:// master is looked up when first needed and again after a failed /state.
        self.zk = master.strip() if master.strip().startswith("zk://") else None
        self.master = "" if self.zk else master_url(master)
        self.session = requests.Session()
        self._lock = threading.Lock()
        self._state: tuple[float, dict[str, Any]] | None = None

    def _get(self, url: str, params: dict[str, Any] | None, what: str) -> requests.Response:
        try:
            return self.session.get(url, params=params, timeout=TIMEOUT)
        except requests.Timeout:
            raise LogsError(504, f"{what} did not answer within {TIMEOUT:g} s") from None
        except requests.RequestException as exc:
            raise LogsError(502, f"{what} cannot be reached: {exc}") from None

    def master_state(self, fresh: bool = False) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            if not fresh and self._state is not None and now - self._state[0] < STATE_TTL:
                return self._state[1]
        if self.zk and not self.master:
            self.master = leader_from_zk(self.zk)
        try:
            resp = self._get(self.master + "/state", None, f"the Mesos master at {self.master}")
        except LogsError:
            if self.zk:
                self.master = ""  # the leader may have changed: look it up again next time
            raise
        if resp.status_code != 200:
            raise LogsError(502, f"the Mesos master answered {resp.status_code} to /state")
        state = resp.json()
        with self._lock:
            self._state = (now, state)
        return state

    def locate(self, framework_id: str, task_id: str, agent_id: str | None) -> Sandbox:
        """The sandbox of `task_id` (`agent_id` from the task document when it is known)."""
        for fresh in (False, True):
            state = self.master_state(fresh)
            aid = agent_id or find_agent_of_task(state, framework_id, task_id)
            url = agent_address(state, aid) if aid else None
            if url is not None:
                return Sandbox(aid or "", url, sandbox_path(framework_id, task_id))
        if agent_id:
            raise LogsError(404, f"the agent {agent_id} of task '{task_id}' is not in the "
                                 "cluster any more")
        raise LogsError(404, f"Task '{task_id}' is not known to the Mesos master")

    def read(self, box: Sandbox, name: str, offset: int, length: int | None) -> dict[str, Any]:
        """Mesos's `/files/read` answer `{"data", "offset"}` for `<sandbox>/<name>`."""
        params: dict[str, Any] = {"path": f"{box.path}/{name}", "offset": offset}
        if length is not None:
            params["length"] = min(length, MAX_READ)
        resp = self._get(box.agent_url + "/files/read", params, f"the agent {box.agent_id}")
        if resp.status_code == 404:
            raise LogsError(404, f"no file {name!r} in the task's sandbox (the sandbox may have "
                                 "been garbage-collected)")
        if resp.status_code != 200:
            raise LogsError(502, f"the agent {box.agent_id} answered {resp.status_code}: "
                                 f"{resp.text.strip()[:200]}")
        return resp.json()

    def size(self, box: Sandbox, name: str) -> int:
        return int(self.read(box, name, -1, None)["offset"])
