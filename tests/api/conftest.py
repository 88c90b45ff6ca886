"""Shared helpers of the API tests: a real store file, task documents as the scheduler writes
them, and a snapshot of everything a rejected request must leave unchanged."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from scheduler.spec import app_id_to_task_prefix, iso_now
from scheduler.sqlite_state import SQLiteStateStore


def make_task(app: dict[str, Any], host: str = "127.0.1.1", state: str = "TASK_RUNNING",
              healthy: bool | None = True, port: int = 31000, *, cause: str | None = None,
              task_id: str | None = None) -> dict[str, Any]:
    """A task document shaped as DEVELOPERS.md says the scheduler stores it."""
    now = iso_now()
    task_id = task_id or f"{app_id_to_task_prefix(app['id'])}.{uuid.uuid4().hex}"
    return {
        "id": task_id, "appId": app["id"], "host": host, "slaveId": "agent-" + host,
        "agentId": "agent-" + host,
        "ipAddresses": [{"ipAddress": host, "protocol": "IPv4"}], "ports": [port],
        "servicePorts": [d["port"] for d in app.get("portDefinitions") or []], "stagedAt": now,
        "startedAt": now if state == "TASK_RUNNING" else None,
        "version": app["versionInfo"]["lastConfigChangeAt"], "state": state, "healthy": healthy,
        "healthCheckResults": ([{"taskId": task_id, "alive": bool(healthy),
                                 "consecutiveFailures": 0 if healthy else 3,
                                 "firstSuccess": now if healthy else None,
                                 "lastSuccess": now if healthy else None,
                                 "lastFailure": None if healthy else now,
                                 "lastFailureCause": cause}] if healthy is not None else []),
        "message": None, "reason": None, "attributes": {"rack": "r1"},
        "resources": {"cpus": app["cpus"], "mem": app["mem"], "disk": app["disk"]},
        "killRequested": False,
    }


def put_task(store: SQLiteStateStore, app_id: str, *, state: str = "TASK_RUNNING",
             healthy: bool | None = None, n: int = 0, cause: str | None = None,
             task_id: str | None = None) -> dict[str, Any]:
    """Store task number `n` of an app as the scheduler would (agent n % 3 + 1, port 31000 + n)."""
    task = make_task(store.get_app(app_id), host=f"127.0.1.{n % 3 + 1}", state=state,
                     healthy=healthy, port=31000 + n, cause=cause, task_id=task_id)
    store.upsert_task(task)
    return task


def snapshot(store: SQLiteStateStore) -> dict[str, Any]:
    """All desired state and the event log's head: equal before and after a refused request."""
    return {
        "apps": store.list_apps(),
        "deployments": store.list_deployments(active_only=False),
        "kills": store.pending_kill_requests(),
        "generation": store.desired_generation(),
        "events": store.latest_event_id(),
        "tasks": store.list_tasks(),
    }


def finish_deployments(store: SQLiteStateStore) -> None:
    """Mark running deployments succeeded, as the scheduler does when they complete."""
    for dep in store.list_deployments(active_only=True):
        dep["status"] = "succeeded"
        dep["finishedAt"] = iso_now()
        store.update_deployment(dep)


@pytest.fixture(scope="module")
def state_path(tmp_path_factory: pytest.TempPathFactory):
    return tmp_path_factory.mktemp("api-state") / "state.db"


@pytest.fixture(scope="module")
def store(state_path):
    s = SQLiteStateStore(state_path)
    yield s
    s.close()


class SseReader:
    """Reads `/v2/events` in a thread (requests, stream=True, bounded read timeout) and keeps
    every event and comment it received, for `wait_until` conditions."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        import threading

        import requests

        self.events: list[dict[str, Any]] = []   # {"id", "event", "data"}
        self.comments: list[str] = []
        self.error: BaseException | None = None
        self.status: int | None = None
        self.content_type: str | None = None
        self._resp = requests.get(url, stream=True, timeout=(5, 30), headers=headers or {})
        self.status = self._resp.status_code
        self.content_type = self._resp.headers.get("Content-Type")
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import json

        current: dict[str, Any] = {}
        try:
            for raw in self._resp.iter_lines(chunk_size=None, decode_unicode=True):
                line = raw if isinstance(raw, str) else raw.decode()
                if line == "":
                    if current:
                        current["data"] = json.loads(current.get("data", "null"))
                        self.events.append(current)
                    current = {}
                elif line.startswith(":"):
                    self.comments.append(line[1:].strip())
                else:
                    field, _, value = line.partition(":")
                    current[field] = value[1:] if value.startswith(" ") else value
        except BaseException as exc:  # closed by the test or the server
            self.error = exc

    def of_type(self, event_type: str) -> list[dict[str, Any]]:
        return [e["data"] for e in list(self.events) if e.get("event") == event_type]

    def close(self) -> None:
        self._resp.close()
        self._thread.join(5)
