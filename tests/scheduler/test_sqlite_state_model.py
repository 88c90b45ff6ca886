"""SQLiteStateStore against a plain in-memory model: random sequences of API and scheduler
operations (with rejections, forced changes, kills and reopening) must leave the store and the
model equal, and the desired generation must grow exactly when desired state changes."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from contextlib import closing
from pathlib import Path

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from scheduler.sqlite_state import SQLiteStateStore
from scheduler.state import AppExists, AppNotFound, DeploymentConflict, StateError

APPS = ["/a", "/b", "/g/c"]
TASKS = [f"{app.strip('/').replace('/', '_')}.{i}" for app in APPS for i in range(2)]


def _app_of(task_id: str) -> str:
    return "/" + task_id.rsplit(".", 1)[0].replace("_", "/")


class StoreModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="state-model-")
        self.path = Path(self.dir) / "s.db"
        self.store = self.open_store()
        self.apps: dict[str, dict] = {}
        self.deps: dict[str, dict] = {}  # insertion order = creation order
        self.kills: dict[str, dict] = {}
        self.kill_batch: dict[str, int] = {}  # task id -> the request that created it
        self.resets: dict[str, dict] = {}  # app id -> pending delay reset (the newest request)
        self.requests: list[dict] = []     # every reset request made (the scheduler may hold any)
        self.tasks: dict[str, dict] = {}
        self.generation = self.store.desired_generation()
        self.n = 0

    def open_store(self):
        return SQLiteStateStore(self.path)

    def expected_kills(self) -> list[tuple[str, bool]]:
        """Oldest first; within one request, in the order of its task ids."""
        return [(k["taskId"], k["scale"]) for k in self.kills.values()]

    def teardown(self) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _next(self) -> str:
        self.n += 1
        return f"d{self.n}"

    def _blocking(self, app_ids: set[str]) -> list[str]:
        return [d for d, doc in self.deps.items()
                if doc["status"] == "running" and app_ids & set(doc["affectedApps"])]

    def _expect_generation(self, grew: bool) -> None:
        now = self.store.desired_generation()
        assert (now > self.generation) if grew else (now == self.generation)
        self.generation = now

    @rule(app_id=st.sampled_from(APPS), delete=st.booleans(), force=st.booleans(),
          must_exist=st.sampled_from([None, True, False]), instances=st.integers(0, 3))
    def change(self, app_id, delete, force, must_exist, instances):
        dep_id = self._next()
        app = None if delete else {"id": app_id, "instances": instances, "n": self.n}
        deployment = {"id": dep_id, "affectedApps": [app_id], "status": "running",
                      "target": {"app": app_id, "instances": instances}}
        expected: type[Exception] | None = None
        if must_exist is True and app_id not in self.apps:
            expected = AppNotFound
        elif must_exist is False and app_id in self.apps:
            expected = AppExists
        elif self._blocking({app_id}) and not force:
            expected = DeploymentConflict
        try:
            self.store.apply_app_change(app_id, app, deployment, force=force,
                                        must_exist=must_exist)
        except (AppNotFound, AppExists, DeploymentConflict) as exc:
            assert expected is not None and isinstance(exc, expected), (exc, expected)
            if isinstance(exc, DeploymentConflict):
                assert exc.deployment_ids == self._blocking({app_id})
            self._expect_generation(False)
            return
        assert expected is None
        for d in self._blocking({app_id}):
            self.deps[d]["status"] = "superseded"
        if app is None:
            self.apps.pop(app_id, None)
            self.resets.pop(app_id, None)  # deleting an app drops its pending reset
        else:
            self.apps[app_id] = app
        self.deps[dep_id] = deployment
        self._expect_generation(True)

    @precondition(lambda self: any(d["status"] == "running" for d in self.deps.values()))
    @rule(data=st.data(), status=st.sampled_from(["running", "succeeded", "failed"]))
    def scheduler_updates(self, data, status):
        running = [d for d, doc in self.deps.items() if doc["status"] == "running"]
        dep_id = data.draw(st.sampled_from(running))
        doc = dict(self.deps[dep_id], status=status, progress={"healthy": self.n})
        assert self.store.update_deployment(doc) is True
        self.deps[dep_id] = doc
        self._expect_generation(False)

    @precondition(lambda self: bool(self.deps))
    @rule(data=st.data())
    def stale_update_or_cancel(self, data):
        dep_id = data.draw(st.sampled_from(list(self.deps)))
        if self.deps[dep_id]["status"] == "running":
            self.store.cancel_deployment(dep_id)
            self.deps[dep_id]["status"] = "cancelled"
            self._expect_generation(True)
        else:
            assert self.store.update_deployment(dict(self.deps[dep_id],
                                                     status="running")) is False
            try:
                self.store.cancel_deployment(dep_id)
                raise AssertionError("cancelled a final deployment")
            except StateError:
                pass
            self._expect_generation(False)

    @rule(task_id=st.sampled_from(TASKS), live=st.booleans())
    def scheduler_task(self, task_id, live):
        if live:
            doc = {"id": task_id, "appId": _app_of(task_id), "state": "TASK_RUNNING",
                   "n": self.n}
            self.store.upsert_task(doc)
            self.tasks[task_id] = doc
        else:
            self.store.delete_task(task_id)
            self.tasks.pop(task_id, None)
        self._expect_generation(False)

    @rule(task_ids=st.lists(st.sampled_from(TASKS), min_size=1, max_size=3),
          scale=st.booleans(), force=st.booleans(), with_deployment=st.booleans())
    def kill(self, task_ids, scale, force, with_deployment):
        per_app: dict[str, int] = {}
        for t in dict.fromkeys(task_ids):
            if t in self.tasks:
                per_app[_app_of(t)] = per_app.get(_app_of(t), 0) + 1
        dep_id = self._next()
        first = _app_of(task_ids[0])
        deployment = ({"id": dep_id, "affectedApps": [first], "status": "running",
                       "target": {"app": first, "instances": -1}} if with_deployment else None)
        locked = set(per_app) | ({first} if deployment is not None else set())
        blocking = self._blocking(locked) if scale else []
        try:
            self.store.request_kills(task_ids, scale=scale, deployment=deployment, force=force)
        except DeploymentConflict as exc:
            assert blocking and not force and exc.deployment_ids == blocking
            self._expect_generation(False)
            return
        assert not blocking or force
        for d in blocking:
            self.deps[d]["status"] = "superseded"
        for t in dict.fromkeys(task_ids):
            if t in self.kills:
                self.kills[t]["scale"] = self.kills[t]["scale"] or scale
            else:
                self.kills[t] = {"taskId": t, "scale": scale}
                self.kill_batch[t] = self.n
        if scale:
            for app_id, n in per_app.items():
                if app_id in self.apps:
                    app = self.apps[app_id]
                    app["instances"] = max(0, app["instances"] - n)
                    if deployment is not None and first == app_id:
                        deployment["target"]["instances"] = app["instances"]
            if deployment is not None:
                self.deps[dep_id] = deployment
        self._expect_generation(True)

    @precondition(lambda self: bool(self.kills))
    @rule(data=st.data())
    def complete_kill(self, data):
        task_id = data.draw(st.sampled_from(list(self.kills)))
        self.store.complete_kill_request(task_id)
        del self.kills[task_id]
        self._expect_generation(False)

    @rule(app_id=st.sampled_from(APPS))
    def request_delay_reset(self, app_id):
        try:
            request = self.store.request_delay_reset(app_id)
        except AppNotFound:
            assert app_id not in self.apps
            self._expect_generation(False)
            return
        assert app_id in self.apps
        assert all(request["seq"] > r["seq"] for r in self.requests)
        self.resets.pop(app_id, None)  # replaced: the newest request goes last
        self.resets[app_id] = request
        self.requests.append(request)
        self._expect_generation(True)

    @rule(data=st.data(), app_id=st.sampled_from(APPS))
    def scheduler_status(self, data, app_id):
        """The scheduler writes a status including any request it may have read (a stale one,
        one already consumed, or none): only the pending request it names is consumed."""
        mine = [r for r in self.requests if r["appId"] == app_id]
        reset = data.draw(st.sampled_from([None, *mine]))
        self.store.put_app_status(app_id, {"appId": app_id, "n": self.n}, delay_reset=reset)
        if reset is not None and self.resets.get(app_id, {}).get("seq") == reset["seq"]:
            del self.resets[app_id]
        self._expect_generation(False)

    @rule()
    def reopen(self):
        self.store.close()
        self.store = self.open_store()
        self._expect_generation(False)

    def check_backend(self) -> None:
        # The conflict check's index lists exactly the running deployments' apps.
        with closing(sqlite3.connect(self.path)) as conn:
            rows = set(conn.execute("SELECT app_id, deployment_id FROM deployment_apps"))
        assert rows == {(app_id, d) for d, doc in self.deps.items() if doc["status"] == "running"
                        for app_id in doc["affectedApps"]}

    @invariant()
    def store_equals_model(self):
        stored_apps = {a["id"]: a for a in self.store.list_apps()}
        assert set(stored_apps) == set(self.apps)
        for app_id, app in self.apps.items():
            got = stored_apps[app_id]
            assert {k: got[k] for k in ("id", "instances", "n")} == app
        deps = self.store.list_deployments(active_only=False)
        assert [d["id"] for d in deps] == list(self.deps)
        for got in deps:
            want = self.deps[got["id"]]
            assert got["status"] == want["status"]
            assert got["target"]["instances"] == want["target"]["instances"]
            if want["status"] in ("superseded", "cancelled"):
                assert got["finishedAt"]
        assert [d["id"] for d in self.store.list_deployments()] == [
            d for d, doc in self.deps.items() if doc["status"] == "running"]
        kills = self.store.pending_kill_requests()
        assert [(k["taskId"], k["scale"]) for k in kills] == self.expected_kills()
        self.check_backend()
        assert {t["id"]: t for t in self.store.list_tasks()} == self.tasks
        assert self.store.pending_delay_resets() == list(self.resets.values())
        # at most one running deployment per app: the lock the store enforces
        for app_id in APPS:
            assert len(self._blocking({app_id})) <= 1


StoreModel.TestCase.settings = settings(max_examples=60, stateful_step_count=25,
                                        deadline=None)
TestStoreModel = StoreModel.TestCase
