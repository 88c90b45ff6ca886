"""`StateStore.apply_app_updates` on every backend (SQLite, ZooKeeper): several apps changed in
one transaction (a group, a batch `PUT /v2/apps`). All land with their deployments, events and
version histories, or, when one is refused, none does; each app's change sees the ones before
it in the same transaction."""

from __future__ import annotations

import pytest

from scheduler import service_ports
from scheduler.service_ports import ServicePortConflict
from scheduler.state import AppExists, DeploymentConflict
from tests.scheduler.state_docs import app_doc, dep
from tests.scheduler.test_state_contract import backend, store  # noqa: F401 - fixtures

NOW = "2026-12-04T13:00:00.000Z"


def _becomes(doc, dep_id):
    """An update storing `doc` in place of whatever the app is (None deletes it)."""
    def update(previous):
        app_id = (doc or previous)["id"]
        deployment = dep(dep_id, app_id)
        deployment["original"] = previous
        return doc, deployment
    return update


def _created(doc, dep_id):
    """An update creating `doc`: AppExists if the app is there already."""
    def update(previous):
        if previous is not None:
            raise AppExists(doc["id"])
        return _becomes(doc, dep_id)(previous)
    return update


def _events(stored, deployment):
    return [{"eventType": "deployment_info", "plan": deployment, "timestamp": NOW}]


def _state(store):  # noqa: F811 - any store, not the fixture
    return {"apps": store.list_apps(), "deployments": store.list_deployments(active_only=False),
            "generation": store.desired_generation(), "events": store.latest_event_id(),
            "versions": {a: store.list_app_versions(a) for a in ("/g/a", "/g/b", "/g/c")}}


def _with_port0(app_id):
    return dict(app_doc(app_id, version=NOW),
                portDefinitions=[{"port": 0, "protocol": "tcp", "name": "http"}])


def test_every_app_lands_with_its_deployment_events_and_history(store):  # noqa: F811
    before = store.latest_event_id()
    store.apply_app_change("/g/c", app_doc("/g/c"), None, history_keep=5)
    results = store.apply_app_updates(
        [("/g/a", _created(app_doc("/g/a", version=NOW), "da")),
         ("/g/b", _created(app_doc("/g/b", version=NOW), "db")),
         ("/g/c", _becomes(None, "dc"))],
        events=_events, history_keep=5, now=NOW)
    assert [stored["id"] if stored else None for stored, _ in results] == ["/g/a", "/g/b", None]
    assert [a["id"] for a in store.list_apps()] == ["/g/a", "/g/b"]
    assert [d["id"] for d in store.list_deployments()] == ["da", "db", "dc"]
    assert [e["plan"]["id"] for _, e in store.events_since(before)
            if e["eventType"] == "deployment_info"] == ["da", "db", "dc"]
    assert store.list_app_versions("/g/a") == [NOW] and store.list_app_versions("/g/b") == [NOW]
    assert store.list_app_versions("/g/c") == []  # a deleted app's history goes with it


@pytest.mark.parametrize("refusal", ["locked", "exists"])
def test_one_refused_app_stores_none_of_them(store, refusal):  # noqa: F811
    """Before, each app was its own transaction: the apps before the refused one stayed."""
    store.apply_app_change("/g/b", app_doc("/g/b"), dep("running-b", "/g/b"), history_keep=5)
    before = _state(store)
    second = (_becomes(app_doc("/g/b", instances=3, version=NOW), "db") if refusal == "locked"
              else _created(app_doc("/g/b", version=NOW), "db"))
    with pytest.raises(DeploymentConflict if refusal == "locked" else AppExists):
        store.apply_app_updates(
            [("/g/a", _created(app_doc("/g/a", version=NOW), "da")), ("/g/b", second)],
            events=_events, history_keep=5, now=NOW)
    assert _state(store) == before


def test_a_forced_change_supersedes_the_locking_deployment_once(store):  # noqa: F811
    store.apply_app_change("/g/a", app_doc("/g/a"), None)
    store.apply_app_change("/g/b", app_doc("/g/b"), None)
    both = dict(dep("both", "/g/a"), affectedApps=["/g/a", "/g/b"])
    store.apply_app_change("/g/a", app_doc("/g/a", instances=2), both, force=True)
    store.apply_app_updates(
        [("/g/a", _becomes(app_doc("/g/a", instances=3, version=NOW), "da")),
         ("/g/b", _becomes(app_doc("/g/b", instances=3, version=NOW), "db"))],
        force=True, events=_events, now=NOW)
    superseded = store.get_deployment("both")
    assert superseded["status"] == "superseded"
    assert superseded["message"] == "superseded by deployment da"
    assert [d["id"] for d in store.list_deployments()] == ["da", "db"]


def test_new_apps_of_one_transaction_get_distinct_service_ports(store):  # noqa: F811
    store.apply_app_updates([("/g/a", _created(_with_port0("/g/a"), "da")),
                             ("/g/b", _created(_with_port0("/g/b"), "db"))],
                            events=_events, now=NOW)
    ports = [service_ports.service_ports(store.get_app(i)) for i in ("/g/a", "/g/b")]
    assert ports[0] != ports[1] and 0 not in ports[0] + ports[1]


def test_a_port_asked_by_an_earlier_app_of_the_transaction_clashes(store):  # noqa: F811
    first = dict(app_doc("/g/a", version=NOW),
                 portDefinitions=[{"port": 10500, "protocol": "tcp", "name": "http"}])
    second = dict(first, id="/g/b")
    before = _state(store)
    with pytest.raises(ServicePortConflict):
        store.apply_app_updates([("/g/a", _created(first, "da")),
                                 ("/g/b", _created(second, "db"))], events=_events, now=NOW)
    assert _state(store) == before
