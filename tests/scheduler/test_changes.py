"""scheduler.changes: the store's domain rules as pure functions over a snapshot (no backend)."""

from __future__ import annotations

import copy

import pytest

from scheduler import changes
from scheduler.state import (
    AppExists,
    AppNotFound,
    Delete,
    DeploymentConflict,
    Put,
    StateError,
    Transaction,
)
from tests.scheduler.state_docs import app_doc, dep, task

NOW = "2026-12-03T12:00:00.000Z"


class Snapshot:
    """A Reader over plain dicts (deployments in creation order)."""

    def __init__(self, apps=(), deployments=(), tasks=(), kills=(), resets=(), generation=0):
        self.stored_apps = {a["id"]: a for a in apps}
        self.deployments = {d["id"]: d for d in deployments}
        self.tasks = {t["id"]: t for t in tasks}
        self.kills = {k["taskId"]: k for k in kills}
        self.resets = {r["appId"]: r for r in resets}
        self.gen = generation

    def app(self, app_id):
        return copy.deepcopy(self.stored_apps.get(app_id))

    def apps(self):
        return [copy.deepcopy(a) for _, a in sorted(self.stored_apps.items())]

    def deployment(self, deployment_id):
        return copy.deepcopy(self.deployments.get(deployment_id))

    def running_deployments(self, app_ids):
        return [copy.deepcopy(d) for d in self.deployments.values()
                if d.get("status", "running") == "running" and app_ids & set(d["affectedApps"])]

    def task(self, task_id):
        return copy.deepcopy(self.tasks.get(task_id))

    def kill_request(self, task_id):
        return copy.deepcopy(self.kills.get(task_id))

    def delay_reset(self, app_id):
        return copy.deepcopy(self.resets.get(app_id))

    def generation(self):
        return self.gen


def test_a_create_puts_app_and_deployment_and_bumps_the_generation():
    txn, _ = changes.app_change(Snapshot(), "/a", app_doc(), dep("d1"), force=False,
                                must_exist=False, now=NOW)
    assert txn == Transaction((Put("apps", "/a", app_doc()), Put("deployments", "d1", dep("d1"))),
                              bump_generation=True)


def test_refusals_raise_and_write_nothing():
    snap = Snapshot(apps=[app_doc()], deployments=[dep("d1")])
    with pytest.raises(AppExists):
        changes.app_change(snap, "/a", app_doc(), dep("d2"), force=True, must_exist=False,
                           now=NOW)
    with pytest.raises(AppNotFound):
        changes.app_change(snap, "/b", app_doc("/b"), dep("d2", "/b"), force=False,
                           must_exist=True, now=NOW)
    with pytest.raises(DeploymentConflict) as info:
        changes.app_change(snap, "/a", app_doc(), dep("d2"), force=False, must_exist=True,
                           now=NOW)
    assert info.value.deployment_ids == ["d1"]
    with pytest.raises(StateError):  # a deployment id is never reused
        changes.app_change(snap, "/a", app_doc(), dep("d1"), force=True, must_exist=True,
                           now=NOW)


def test_force_supersedes_and_a_delete_drops_the_pending_reset():
    snap = Snapshot(apps=[app_doc()], deployments=[dep("d1")],
                    resets=[{"appId": "/a", "seq": 3}])
    txn, _ = changes.app_change(snap, "/a", None, dep("d2"), force=True, must_exist=True,
                                now=NOW)
    superseded = dict(dep("d1"), status="superseded", finishedAt=NOW,
                      message="superseded by deployment d2")
    assert txn.ops == (Put("deployments", "d1", superseded), Delete("apps", "/a"),
                       Delete("delay_resets", "/a"), Put("deployments", "d2", dep("d2")))


def test_a_final_deployment_stays_final_and_cancel_only_a_running_one():
    snap = Snapshot(deployments=[dep("d1", status="cancelled"), dep("d2")])
    assert changes.deployment_update(snap, dep("d1")) == (Transaction(), False)
    txn, stored = changes.deployment_update(snap, dict(dep("d2"), currentStep=2))
    assert stored is True and txn.ops[0].doc["currentStep"] == 2 and not txn.bump_generation
    with pytest.raises(StateError):
        changes.cancel_deployment(snap, "d1", now=NOW)
    txn, doc = changes.cancel_deployment(snap, "d2", now=NOW)
    assert doc["status"] == "cancelled" and doc["finishedAt"] == NOW and txn.bump_generation


def test_a_scale_by_kills_counts_live_tasks_only_and_targets_the_new_count():
    snap = Snapshot(apps=[app_doc(instances=3)], tasks=[task("a.1"), task("a.2")],
                    kills=[{"taskId": "a.1", "scale": False, "requestedAt": "t0"}])
    txn, _ = changes.kill_requests(snap, ["a.1", "a.2", "a.9", "a.2"], scale=True,
                                   deployments=[dep("d2", instances=99)], force=False, now=NOW)
    puts = {(op.kind, op.key): op.doc for op in txn.ops}
    assert puts[("kill_requests", "a.1")] == {"taskId": "a.1", "scale": True,
                                              "requestedAt": "t0"}  # first request's time
    assert puts[("kill_requests", "a.9")]["requestedAt"] == NOW
    assert puts[("apps", "/a")]["instances"] == 1  # a.9 is not live: it does not count
    assert puts[("apps", "/a")]["versionInfo"]["lastScalingAt"] == "v"
    assert puts[("deployments", "d2")]["target"]["instances"] == 1
    assert txn.bump_generation
    assert snap.stored_apps["/a"]["instances"] == 3  # the snapshot is never changed


def test_delay_reset_seq_grows_and_a_status_write_consumes_only_its_own_request():
    snap = Snapshot(apps=[app_doc()], resets=[{"appId": "/a", "seq": 9}], generation=4)
    _, request = changes.delay_reset_request(snap, "/a", now=NOW)
    assert request == {"appId": "/a", "requestedAt": NOW, "seq": 10}
    txn, _ = changes.app_status_write(snap, "/a", {"appId": "/a"}, {"appId": "/a", "seq": 8})
    assert txn.ops == (Put("app_status", "/a", {"appId": "/a"}),)
    txn, _ = changes.app_status_write(snap, "/a", {"appId": "/a"}, {"appId": "/a", "seq": 9})
    assert txn.ops[1] == Delete("delay_resets", "/a") and not txn.bump_generation
    with pytest.raises(AppNotFound):
        changes.delay_reset_request(Snapshot(), "/a", now=NOW)
