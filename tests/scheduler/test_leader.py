"""scheduler.leader and the store's fence, on a real ZooKeeper server: one leader among
candidates, the next one on the leader's loss, a deposed leader's writes refused whole; and the
ZooKeeper event log's bound."""

from __future__ import annotations

import threading
import uuid

import pytest

from scheduler.leader import Candidate, depose, leader_node
from scheduler.state import NotLeader
from scheduler.zk_state import ZooKeeperStateStore
from tests.scheduler.state_docs import app_doc, dep, task
from tests.support import wait_until


@pytest.fixture
def stores(zookeeper):
    url = zookeeper.url(f"/l{uuid.uuid4().hex[:12]}") + "?session_timeout=4"
    opened = [ZooKeeperStateStore(url) for _ in range(3)]
    yield opened
    for s in opened:
        s.close()


def campaign_in_background(candidate: Candidate) -> tuple[threading.Event, threading.Event]:
    elected, stop = threading.Event(), threading.Event()

    def run() -> None:
        if candidate.campaign(stop):
            elected.set()

    threading.Thread(target=run, daemon=True).start()
    return elected, stop


def test_one_leader_then_the_next_in_line(stores):
    a, b, c = (Candidate(s.client, s.root, name) for s, name in zip(stores, "abc", strict=True))
    assert a.campaign(threading.Event())
    b_elected, b_stop = campaign_in_background(b)
    wait_until(lambda: b.node is not None, timeout=5, message="b's candidacy")  # b before c
    c_elected, c_stop = campaign_in_background(c)
    wait_until(lambda: c.node is not None, timeout=5, message="c's candidacy")
    assert not b_elected.wait(1.0) and not c_elected.is_set()
    assert leader_node(stores[0].client, stores[0].root)[1] == "a" and a.holds() and a.verify()
    a.resign()
    assert b_elected.wait(5) and not c_elected.wait(0.5)  # only the next in line wakes
    assert depose(stores[2].client, stores[2].root) == "b"  # DELETE /v2/leader
    assert c_elected.wait(5)
    assert not b.holds() and not b.verify() and c.holds()
    b_stop.set()
    c_stop.set()


def test_a_deposed_leaders_writes_are_refused_whole(stores):
    leader_store, api_store = stores[0], stores[1]
    api_store.apply_app_change("/a", app_doc("/a", instances=2), dep("d1"))
    candidate = Candidate(leader_store.client, leader_store.root, "old")
    assert candidate.campaign(threading.Event())
    leader_store.fence = candidate.fence()
    leader_store.upsert_task(task("a.1"))  # while leading: lands
    generation = api_store.desired_generation()
    depose(api_store.client, api_store.root)
    with pytest.raises(NotLeader):
        leader_store.upsert_task(task("a.2"))
    with pytest.raises(NotLeader):
        leader_store.update_deployment(dict(dep("d1"), status="succeeded"))
    with pytest.raises(NotLeader):
        leader_store.append_event("status_update_event", {"taskId": "a.2"})
    assert [t["id"] for t in api_store.list_tasks()] == ["a.1"]
    assert api_store.get_deployment("d1")["status"] == "running"
    assert api_store.desired_generation() == generation
    assert [e["eventType"] for _, e in api_store.events_since(0)] == []


def test_the_event_log_keeps_its_newest_events(stores, monkeypatch):
    from scheduler import zk_events

    monkeypatch.setattr(zk_events, "EVENTS_KEPT", 40)
    store = stores[0]
    ids = [store.append_event("x", {"i": i}) for i in range(520)]
    kept = store.events_since(0, limit=10_000)
    assert len(kept) <= 40 + 20  # pruned at each 500th id (ids start at 1)
    assert kept[-1][0] == ids[-1] and [i for i, _ in kept] == sorted(i for i, _ in kept)
    assert store.prune_events(keep=10**9) == len(kept) - 40  # the bound caps any keep


def test_one_freshness_check_per_api_request_still_reads_every_earlier_write(stores):
    """The API checks ZooKeeper once per request (begin_request): every write committed before
    the request began is read, and so is the request's own write."""
    api, other = stores[0], stores[1]
    other.apply_app_change("/a", app_doc("/a"), dep("d1"))
    api.begin_request()
    try:
        assert api.get_app("/a") == app_doc("/a")
        api.apply_app_change("/b", app_doc("/b"), dep("d2", "/b"))  # its own write
        assert [a["id"] for a in api.list_apps()] == ["/a", "/b"]
    finally:
        api.end_request()
    other.apply_app_change("/c", app_doc("/c"), dep("d3", "/c"))
    api.begin_request()  # the next request sees what was committed before it began
    try:
        assert [a["id"] for a in api.list_apps()] == ["/a", "/b", "/c"]
    finally:
        api.end_request()
