"""`StateStore.apply_app_update` on every backend (SQLite, ZooKeeper): a change computed from
the app as the store's transaction reads it (issue 15: a scale PUT reads its app once, inside
its transaction). Racing updates lose nothing; a refused update stores nothing."""

from __future__ import annotations

import threading
import uuid

import pytest

from scheduler.state import AppNotFound, DeploymentConflict, StateStore
from tests.scheduler.state_docs import app_doc, dep
from tests.scheduler.test_state_contract import backend, store  # noqa: F401 - fixtures


def _one_more(serial: list[int]):
    """An update adding one instance to the app it is given (a new deployment id per run).
    The ids carry a tag of their own: a thread's ident (used before) is reused by a thread
    started after it ended, and under load the second writer of the racing test could start
    after the first had finished, making the first one's ids again."""
    tag = uuid.uuid4().hex[:12]

    def update(previous):
        if previous is None:
            raise AppNotFound("/u")
        serial[0] += 1
        new = dict(previous, instances=previous["instances"] + 1)
        return new, dep(f"u{tag}-{serial[0]}", "/u", instances=new["instances"])
    return update


def _events(stored, deployment):
    return [{"eventType": "api_post_event", "appDefinition": stored, "timestamp": "t"},
            {"eventType": "deployment_info", "plan": deployment, "timestamp": "t"}]


def test_an_update_sees_the_app_as_its_transaction_reads_it(store):  # noqa: F811
    store.apply_app_change("/u", app_doc("/u", instances=1), None)
    before = store.latest_event_id()
    stored, deployment = store.apply_app_update("/u", _one_more([0]), events=_events,
                                                history_keep=5)
    assert stored == store.get_app("/u") and stored["instances"] == 2
    assert store.get_deployment(deployment["id"]) == deployment
    assert [e for _, e in store.events_since(before)] == _events(stored, deployment)
    assert store.get_app_version("/u", stored["version"]) == stored
    # a running deployment locks the app: refused unless forced, as apply_app_change
    generation = store.desired_generation()
    with pytest.raises(DeploymentConflict):
        store.apply_app_update("/u", _one_more([10]), events=_events)
    assert store.get_app("/u")["instances"] == 2 and store.desired_generation() == generation
    stored, _ = store.apply_app_update("/u", _one_more([20]), force=True, events=_events)
    assert stored["instances"] == 3


def test_a_refused_update_stores_nothing(store):  # noqa: F811
    generation, events = store.desired_generation(), store.latest_event_id()
    with pytest.raises(AppNotFound):
        store.apply_app_update("/u", _one_more([0]), events=_events, history_keep=5)
    assert store.get_app("/u") is None and store.list_deployments(active_only=False) == []
    assert store.desired_generation() == generation and store.latest_event_id() == events


def test_racing_updates_lose_nothing(backend):  # noqa: F811
    """Two stores (two API workers) add one instance each, forced, many times at once: each
    update is computed from the app its own transaction read, so every one counts."""
    a, b = backend.open(), backend.open()
    a.apply_app_change("/u", app_doc("/u", instances=0), None)
    errors: list[BaseException] = []

    def grow(writer: StateStore, times: int) -> None:
        update = _one_more([0])
        try:
            for _ in range(times):
                writer.apply_app_update("/u", update, force=True, events=_events)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=grow, args=(s, 15)) for s in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert a.get_app("/u")["instances"] == 30
    assert len(a.list_deployments()) == 1  # each forced update superseded the one before
