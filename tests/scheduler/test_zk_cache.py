"""The ZooKeeper store as one process sees it: the API's task views kept per stored revision,
its own writes in its cache without a round trip, an app change and its version history in one
`multi`, a commit whose answer is lost, a cache too far behind (reload), and `/v2/info`'s
`elected`. A real ZooKeeper server (started once for the module, on a loopback port); each test
gets its own root."""

from __future__ import annotations

import threading
import uuid

import falcon.testing
import orjson
import pytest

from api import task_views
from api.app import ApiConfig, create_app
from scheduler.stores import open_state
from tests.scheduler.state_docs import app_doc, task


@pytest.fixture
def url(zookeeper):
    return zookeeper.url(f"/c{uuid.uuid4().hex[:12]}") + "?session_timeout=4"


@pytest.fixture
def stores(url):
    opened = []

    def open_one(**kwargs):
        store = open_state(url, **kwargs) if kwargs else open_state(url)
        opened.append(store)
        return store

    yield open_one
    for store in opened:
        store.close()


def _tasks(client, extras=False):
    embed = ["apps.tasks", "accessd"] if extras else ["apps.tasks"]
    r = client.simulate_get("/v2/apps", params={"embed": embed})
    assert r.status_code == 200, r.text
    return {t["id"]: t for a in r.json["apps"] for t in a["tasks"]}


def test_the_apps_read_decodes_only_the_tasks_whose_node_changed(stores, url, monkeypatch):
    writer, api_store = stores(), stores()
    for app_id in ("/a", "/b"):
        writer.transact(lambda r, a=app_id: _put_app(a))
    for n in range(3):
        writer.upsert_task(task(f"a.{n}", "/a"))
        writer.upsert_task(task(f"b.{n}", "/b"))
    client = falcon.testing.TestClient(create_app(ApiConfig(state_path=url,
                                                            view_cache_seconds=0), api_store))
    decoded = set()  # the tasks decoded (a new revision: its counted fields and its view)

    def counting_loads(data):
        doc = orjson.loads(data)
        decoded.add(doc.get("id"))
        return doc

    monkeypatch.setattr(task_views, "_loads", counting_loads)
    first = _tasks(client)
    assert sorted(first) == ["a.0", "a.1", "a.2", "b.0", "b.1", "b.2"]
    assert decoded == set(first)
    decoded.clear()

    writer.upsert_task(dict(task("b.1", "/b"), state="TASK_KILLING"))  # another process
    writer.delete_task("a.2")
    second = _tasks(client)
    assert decoded == {"b.1"}
    assert second["b.1"]["state"] == "TASK_KILLING" and "a.2" not in second
    assert second["a.1"] == first["a.1"]

    decoded.clear()
    # gone and back between two reads, at the data version it had (0), with another content
    writer.delete_task("a.0")
    writer.upsert_task(dict(task("a.0", "/a"), state="TASK_STAGING"))
    third = _tasks(client)
    assert decoded == {"a.0"} and third["a.0"]["state"] == "TASK_STAGING"
    # the view with accessd's own fields is made once per revision too, apart from Marathon's
    decoded.clear()
    with_extras = _tasks(client, extras=True)
    assert decoded == set(third)
    decoded.clear()
    assert _tasks(client, extras=True) == with_extras and decoded == set()
    assert with_extras["a.1"].items() >= third["a.1"].items()
    assert _tasks(client) == third  # and the two shapes stay apart


def test_groups_embed_the_same_task_views(stores, url):
    writer = stores()
    for app_id in ("/g/a", "/g/b"):
        writer.transact(lambda r, a=app_id: _put_app(a))
        writer.upsert_task(task(f"{app_id[3]}.1", app_id))
    client = falcon.testing.TestClient(create_app(ApiConfig(state_path=url,
                                                            view_cache_seconds=0), stores()))
    for _ in range(2):  # made, then reused
        r = client.simulate_get("/v2/groups/g", params={"embed": ["group.apps",
                                                                   "group.apps.tasks"]})
        assert r.status_code == 200, r.text
        tasks = {t["id"]: t for a in r.json["apps"] for t in a["tasks"]}
        assert tasks == _tasks(client)


def _put_app(app_id):
    from scheduler.state import Put, Transaction

    return Transaction((Put("apps", app_id, app_doc(app_id)),), bump_generation=True), None


class _Counting:
    """Counts the ZooKeeper reads a store's client makes from this thread (kazoo's own
    thread re-arms the watch with get_children; that is not the reader waiting)."""

    READS = ("get", "get_async", "get_children", "get_children_async", "exists",
             "exists_async", "sync", "sync_async")

    def __init__(self, client, monkeypatch) -> None:
        self.calls: list[str] = []
        self.thread = threading.get_ident()
        for name in self.READS:
            real = getattr(client, name)
            monkeypatch.setattr(client, name, self._wrap(name, real))

    def _wrap(self, name, real):
        def call(*args, **kwargs):
            if threading.get_ident() == self.thread:
                self.calls.append(name)
            return real(*args, **kwargs)
        return call


def test_own_writes_are_read_back_without_a_round_trip(stores, monkeypatch):
    monkeypatch.setattr("scheduler.zk_cache.SESSION_TRUST_SECONDS", 3600.0)
    scheduler = stores(session_reads=True)
    monkeypatch.setattr(scheduler, "_catch_up", lambda: None)  # the watch brings nothing now
    reads = _Counting(scheduler.client, monkeypatch)
    scheduler.upsert_task(task("a.1", "/a"))
    scheduler.transact(lambda r: _put_app("/a"))  # a create, with a generation bump
    assert scheduler.get_task("a.1") == task("a.1", "/a")
    assert [a["id"] for a in scheduler.list_apps()] == ["/a"]
    updated = dict(task("a.1", "/a"), state="TASK_KILLING")
    scheduler.upsert_task(updated)  # a set_data of what the cache holds
    assert scheduler.get_task("a.1") == updated
    scheduler.delete_task("a.1")
    assert scheduler.get_task("a.1") is None and scheduler.list_tasks() == []
    assert reads.calls == []  # not one read of ZooKeeper, for the writes or the reads
    generation = scheduler._generation
    assert generation[0] == 1


def test_a_failed_watch_catch_up_is_repaired_by_the_next_read(stores, monkeypatch):
    """The watch's catch-up can fail (a timeout under load); when nobody writes again, no later
    watch repairs it. A session-reads store trusts the watch only SESSION_TRUST_SECONDS, then
    its reads ask ZooKeeper (bench/jobs.py --zk once saw none of 100 new jobs for 60 s)."""
    from scheduler.state import StoreUnavailable

    ours, theirs = stores(session_reads=True), stores()
    real, reader, failed = ours._catch_up, threading.get_ident(), threading.Event()

    def catch_up():
        if threading.get_ident() != reader:  # the watch's: fails
            failed.set()
            raise StoreUnavailable("timed out")
        real()

    monkeypatch.setattr(ours, "_catch_up", catch_up)
    monkeypatch.setattr("scheduler.zk_cache.SESSION_TRUST_SECONDS", 0.0)
    theirs.upsert_task(task("b.1", "/b"))
    assert failed.wait(10)
    assert ours.get_task("b.1") == task("b.1", "/b")


def test_a_newer_write_of_another_process_wins_over_our_older_one(stores):
    ours, theirs = stores(session_reads=True), stores()
    ours.upsert_task(task("a.1", "/a"))
    theirs.refresh()
    newer = dict(task("a.1", "/a"), state="TASK_FAILED")
    theirs.upsert_task(newer)
    ours.refresh()
    assert ours.get_task("a.1") == newer
    # a late read of our own, older write (a catch-up's fetch that raced the commit) is ignored
    entry = ours._cache["tasks"]["a.1"]
    stale = (orjson.dumps(task("a.1", "/a")), 0, entry[2], entry[3], entry[4] - 1)
    with ours._lock:
        ours._merge({("tasks", "a.1"): stale}, horizon=entry[4])
    assert ours.get_task("a.1") == newer
    # our delete, then a fetch from before it: the document stays deleted
    ours.delete_task("a.1")
    with ours._lock:
        ours._merge({("tasks", "a.1"): entry}, horizon=entry[4])
    assert ours.get_task("a.1") is None
    theirs.refresh()
    assert theirs.get_task("a.1") is None
    # and a later listing that finds it gone again (or back, newer) is applied
    theirs.upsert_task(dict(newer, state="TASK_STAGING"))
    ours.refresh()
    assert ours.get_task("a.1")["state"] == "TASK_STAGING"


class _Recording:
    """Every call of the listed client methods from this thread, with its first argument."""

    def __init__(self, client, monkeypatch, names) -> None:
        self.calls: list[tuple[str, object]] = []
        thread = threading.get_ident()
        for name in names:
            real = getattr(client, name)

            def call(*args, _name=name, _real=real, **kwargs):
                if threading.get_ident() == thread:
                    self.calls.append((_name, args[0] if args else None))
                return _real(*args, **kwargs)
            monkeypatch.setattr(client, name, call)


def test_an_app_change_with_its_version_is_one_multi(stores, monkeypatch):
    from tests.scheduler.state_docs import dep

    api = stores()
    calls = _Recording(api.client, monkeypatch, _Counting.READS + (
        "ensure_path", "ensure_path_async", "transaction", "create", "set", "delete"))
    versions = []
    for n in range(1, 5):  # the creation, then three changes
        doc = dict(app_doc("/v", instances=n), version=f"2026-12-03T00:00:0{n}.000Z")
        versions.append(api.apply_app_change("/v", doc, dep(f"d{n}", "/v"), force=True,
                                             history_keep=50)["version"])
    history = [c for c in calls.calls if "app_versions" in str(c[1])]
    assert history == []  # no ensure_path, exists or listing of the history outside the multi
    assert [name for name, _ in calls.calls].count("transaction") == 4
    assert stores().list_app_versions("/v") == versions[::-1]


def test_a_store_without_the_history_node_gets_it(stores):
    from tests.scheduler.state_docs import dep

    old = stores()
    first = old.apply_app_change("/v", app_doc("/v"), dep("d1", "/v"))  # no history kept
    assert old.list_app_versions("/v") == []
    doc = dict(app_doc("/v", instances=2), version="2026-12-03T00:00:09.000Z")
    second = stores().apply_app_change("/v", doc, dep("d2", "/v"), force=True,
                                       history_keep=50)
    assert old.list_app_versions("/v") == [second["version"]] != [first["version"]]


def _lose_next_commit_answer(store, monkeypatch, *, lands: bool) -> list[bool]:
    """The next commit's answer is lost (ConnectionLoss), after the `multi` was really
    committed (`lands`) or before it was sent."""
    from kazoo.exceptions import ConnectionLoss

    real_transaction = store.client.transaction
    lost: list[bool] = []

    def transaction():
        t = real_transaction()
        if lost:
            return t
        real_commit = t.commit_async

        def commit_async():
            lost.append(True)
            if lands:
                real_commit().get(timeout=10)

            class Lost:
                def get(self, timeout=None):
                    raise ConnectionLoss()
            return Lost()
        t.commit_async = commit_async
        return t

    monkeypatch.setattr(store.client, "transaction", transaction)
    return lost


@pytest.mark.parametrize("lands", [True, False])
def test_a_commit_whose_answer_is_lost_reports_what_happened(stores, monkeypatch, lands):
    from tests.scheduler.state_docs import dep

    api, other = stores(), stores()
    lost = _lose_next_commit_answer(api, monkeypatch, lands=lands)
    stored = api.apply_app_change("/x", app_doc("/x"), dep("d1", "/x"), must_exist=False)
    assert lost == [True]  # the answer was lost, yet the caller learns the write is in
    assert stored["id"] == "/x" and api.get_app("/x") == other.get_app("/x") == stored
    assert [d["id"] for d in other.list_deployments()] == ["d1"]  # written once
    assert other.desired_generation() == 1


def _no_connection_back_after(store, monkeypatch, check: str, used_from: str) -> None:
    """The connection is gone once the write is sent: from the moment `zk_outcome.<check>`
    (as `used_from` calls it) looks for the write, it does not come back in time."""
    import importlib

    from scheduler import zk_outcome

    real_wait = store._connection.wait
    monkeypatch.setattr(zk_outcome, "WRITE_WAIT_SECONDS", 0.2)
    monkeypatch.setattr(store, "_connected", lambda: not hasattr(store, "_sent"))
    monkeypatch.setattr(store._connection, "wait",
                        lambda t=None: False if hasattr(store, "_sent") else real_wait(t))
    real_check = getattr(zk_outcome, check)

    def outcome(target, *args):
        target._sent = True
        return real_check(target, *args)

    monkeypatch.setattr(importlib.import_module(used_from), check, outcome)


def test_a_lost_commit_answer_without_a_connection_back_says_the_outcome_is_unknown(
        stores, monkeypatch):
    from scheduler.state import StoreUnavailable
    from tests.scheduler.state_docs import dep

    api, other = stores(), stores()
    _lose_next_commit_answer(api, monkeypatch, lands=True)
    _no_connection_back_after(api, monkeypatch, "commit_outcome", "scheduler.zk_state")
    with pytest.raises(StoreUnavailable, match="whether the change was written is not known"):
        api.apply_app_change("/x", app_doc("/x"), dep("d1", "/x"), must_exist=False)
    assert other.get_app("/x") is not None  # it had landed: the answer said it might have


def test_an_event_append_whose_outcome_cannot_be_known_says_so(stores, monkeypatch):
    from scheduler.state import StoreUnavailable

    api, other = stores(), stores()
    _lose_next_commit_answer(api, monkeypatch, lands=True)
    _no_connection_back_after(api, monkeypatch, "event_outcome", "scheduler.zk_outcome")
    with pytest.raises(StoreUnavailable, match="whether it was stored is not known"):
        api.append_event("lost_answer_event", {"n": 1})
    assert [doc["eventType"] for _, doc in other.events_since(0)] == ["lost_answer_event"]


@pytest.mark.parametrize("lands", [True, False])
@pytest.mark.parametrize("before", [1, 5])  # a log shorter, and longer, than the window of 3
def test_an_event_append_whose_answer_is_lost_is_found_or_appended_once(stores, monkeypatch,
                                                                         lands, before):
    from scheduler import zk_outcome

    api, other = stores(), stores()
    monkeypatch.setattr(zk_outcome, "EVENTS_LOOKED_AT", 3)
    for n in range(before):
        api.append_event("before_event", {"n": n})
    lost = _lose_next_commit_answer(api, monkeypatch, lands=lands)
    event_id = api.append_event("lost_answer_event", {"n": before})
    assert lost == [True]
    logged = other.events_since(0)
    assert [doc["eventType"] for _, doc in logged] == ["before_event"] * before + [
        "lost_answer_event"]
    assert logged[-1][0] == event_id  # the id answered is the stored event's


class _Unanswered:
    """A request whose answer was lost with the connection (as kazoo fails it)."""

    def get(self, timeout=None):
        from kazoo.exceptions import ConnectionLoss

        raise ConnectionLoss()


def test_an_event_append_lost_behind_many_newer_events_is_not_guessed(stores, monkeypatch):
    """Where the log stood before the append is unknown too: only the newest events are
    searched, and not finding it there is not taken for "not stored"."""
    from scheduler import zk_outcome
    from scheduler.state import StoreUnavailable

    api, other = stores(), stores()
    monkeypatch.setattr(zk_outcome, "EVENTS_LOOKED_AT", 3)
    lost = _lose_next_commit_answer(api, monkeypatch, lands=True)
    monkeypatch.setattr(api.client, "exists_async", lambda *args, **kwargs: _Unanswered())
    real_event_outcome = zk_outcome.event_outcome

    def outcome(store, *args):  # three others append before the connection is back
        for n in range(3):
            other.append_event("later_event", {"n": n})
        return real_event_outcome(store, *args)

    monkeypatch.setattr(zk_outcome, "event_outcome", outcome)
    with pytest.raises(StoreUnavailable, match="whether it was stored is not known"):
        api.append_event("lost_answer_event", {"n": 1})
    assert lost == [True]
    assert [doc["eventType"] for _, doc in other.events_since(0)][0] == "lost_answer_event"


@pytest.mark.parametrize("bind,advertise,leader_name,elected", [
    ("127.0.0.1:9999", None, "127.0.0.1:9999", True),       # the scheduler advertises our bind
    ("127.0.0.1:9999", "node-a:9999", "node-a:9999", True),  # our own name, given
    ("0.0.0.0:9999", None, "{hostname}:9999", True),         # bound everywhere: hostname:port
    ("127.0.0.1:9999", None, "node-b:9999", False),          # another node leads
    ("127.0.0.1:9999", None, "{hostname}:9999", False),      # a specific address is the name
])
def test_elected_compares_the_leader_record_with_this_nodes_names(stores, url, bind, advertise,
                                                                   leader_name, elected):
    import socket

    from scheduler.leader import Candidate

    scheduler = stores()
    candidate = Candidate(scheduler.client, scheduler.root,
                          leader_name.format(hostname=socket.gethostname()))
    assert candidate.campaign(threading.Event())
    client = falcon.testing.TestClient(create_app(
        ApiConfig(state_path=url, leader=bind, advertise=advertise), stores()))
    info = client.simulate_get("/v2/info").json
    assert info["leader"] == candidate.name and info["elected"] is elected
    candidate.resign()


def test_a_cache_further_behind_than_the_kept_records_reloads_everything(stores, monkeypatch):
    from scheduler import zk_state

    monkeypatch.setattr(zk_state, "CHANGES_KEPT", 20)  # pruned at the 100th record
    keep = 100
    ours, theirs = stores(session_reads=True), stores()
    theirs.upsert_task(task("gone", "/a"))
    ours.refresh()
    ours.upsert_task(task("mine", "/a"))
    assert ours.get_task("gone") is not None
    with ours._catch_up_lock:  # our watch's catch-ups wait meanwhile
        theirs.delete_task("gone")
        for n in range(keep + 1):  # the records we would need are pruned
            theirs.upsert_task(dict(task(f"t{n % 10}", "/a"), n=n))
    assert len(theirs.client.get_children(theirs._path("changes"))) < keep
    ours.refresh()
    assert ours.get_task("gone") is None and ours.get_task("mine") is not None
    assert {t["id"]: t["n"] for t in ours.list_tasks() if "n" in t} == {
        f"t{n % 10}": n for n in range(keep + 1)}  # each key's last write
