"""scheduler.sqlite_state: every method, atomicity, several processes and threads, reopening."""

from __future__ import annotations

import json
import multiprocessing
import multiprocessing.connection
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from scheduler.sqlite_state import SQLiteStateStore, open_state
from scheduler.state import AppExists, DeploymentConflict, StateError, StateStore
from tests.scheduler.state_docs import app_doc, dep, task

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def db(tmp_path):
    return tmp_path / "state" / "accessd.db"


@pytest.fixture
def store(db):
    s = SQLiteStateStore(db)
    yield s
    s.close()


def test_is_a_state_store_in_wal_mode(store, db):
    assert isinstance(store, StateStore)
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# The schema of state files written before `deployment_apps` existed.
_OLD_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE apps (id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE deployments (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE, status TEXT NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX deployments_status ON deployments (status);
CREATE TABLE kill_requests (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, task_id TEXT NOT NULL UNIQUE, doc TEXT NOT NULL);
CREATE TABLE tasks (id TEXT PRIMARY KEY, app_id TEXT NOT NULL, doc TEXT NOT NULL);
CREATE INDEX tasks_app ON tasks (app_id);
CREATE TABLE app_status (app_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL);
INSERT INTO meta (key, value) VALUES ('generation', '7');
"""


def test_a_store_written_before_the_deployment_index_still_detects_conflicts(db):
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as old:
        old.execute("PRAGMA journal_mode=WAL")
        old.executescript(_OLD_SCHEMA)
        for app_id in ("/a", "/b", "/c"):
            old.execute("INSERT INTO apps (id, doc) VALUES (?, ?)",
                        (app_id, json.dumps(app_doc(app_id))))
        for d in (dict(dep("d1", "/a"), affectedApps=["/a", "/b"]),
                  dep("d2", "/c", status="succeeded")):
            old.execute("INSERT INTO deployments (id, status, doc) VALUES (?, ?, ?)",
                        (d["id"], d["status"], json.dumps(d)))
    old.close()
    for _ in range(2):  # the second open finds the file already migrated
        s = SQLiteStateStore(db)
        try:
            assert s.desired_generation() == 7
            assert [d["id"] for d in s.list_deployments()] == ["d1"]
            for app_id in ("/a", "/b"):
                with pytest.raises(DeploymentConflict) as info:
                    s.apply_app_change(app_id, app_doc(app_id, instances=2), dep("d3", app_id))
                assert info.value.deployment_ids == ["d1"]
            assert s.get_app("/a") == app_doc("/a") and s.get_deployment("d3") is None
        finally:
            s.close()
    conn = sqlite3.connect(db)
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='index'")}
    conn.close()
    # The index of every deployment's status gave way to one of the running ones.
    assert "deployments_status" not in indexes and "deployments_running" in indexes
    s = SQLiteStateStore(db)
    try:
        s.apply_app_change("/c", app_doc("/c", instances=2), dep("d3", "/c"))  # d2 is final
        s.apply_app_change("/b", app_doc("/b", instances=2), dep("d4", "/b"), force=True)
        assert s.get_deployment("d1")["status"] == "superseded"
        assert [d["id"] for d in s.list_deployments()] == ["d3", "d4"]
        s.apply_app_change("/a", app_doc("/a", instances=2), dep("d5", "/a"))  # free again
    finally:
        s.close()


# The conflict index's triggers as files made before kept them: the rows of a deployment that
# changed or went were found through an index on `deployment_id`.
_INDEXED_TRIGGERS = """
CREATE INDEX deployment_apps_deployment ON deployment_apps (deployment_id);
CREATE TRIGGER deployment_apps_update AFTER UPDATE ON deployments BEGIN
    DELETE FROM deployment_apps WHERE deployment_id = OLD.id;
    INSERT OR IGNORE INTO deployment_apps (app_id, deployment_id)
    SELECT value, NEW.id FROM json_each(NEW.doc, '$.affectedApps')
    WHERE type = 'text' AND NEW.status = 'running';
END;
CREATE TRIGGER deployment_apps_delete AFTER DELETE ON deployments BEGIN
    DELETE FROM deployment_apps WHERE deployment_id = OLD.id;
END;
"""


def _conflict_rows(db) -> set[tuple[str, str]]:
    conn = sqlite3.connect(db)
    try:
        return set(conn.execute("SELECT app_id, deployment_id FROM deployment_apps"))
    finally:
        conn.close()


def test_a_store_with_the_indexed_conflict_triggers_gets_the_keyed_ones(db):
    s = SQLiteStateStore(db)
    try:
        s.apply_app_change("/a", app_doc("/a"), dict(dep("d1", "/a"), affectedApps=["/a", "/b"]))
        s.apply_app_change("/c", app_doc("/c"), dep("d2", "/c"))
    finally:
        s.close()
    with sqlite3.connect(db) as old:
        old.execute("DROP TRIGGER deployment_apps_changed")
        old.execute("DROP TRIGGER deployment_apps_removed")
        old.executescript(_INDEXED_TRIGGERS)
    old.close()
    s = SQLiteStateStore(db)
    try:
        conn = sqlite3.connect(db)
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        conn.close()
        assert {"deployment_apps_deployment", "deployment_apps_update",
                "deployment_apps_delete"}.isdisjoint(names)
        assert {"deployment_apps_changed", "deployment_apps_removed"} <= names
        assert _conflict_rows(db) == {("/a", "d1"), ("/b", "d1"), ("/c", "d2")}
        with pytest.raises(DeploymentConflict):
            s.apply_app_change("/b", app_doc("/b"), dep("d3", "/b"))
        s.apply_app_change("/b", app_doc("/b"), dep("d3", "/b"), force=True)  # supersedes d1
        assert _conflict_rows(db) == {("/b", "d3"), ("/c", "d2")}
        progress = dict(dep("d2", "/c"), currentStep=2)  # still running, same apps
        assert s.update_deployment(progress)
        assert _conflict_rows(db) == {("/b", "d3"), ("/c", "d2")}
        assert s.update_deployment(dict(dep("d2", "/c"), status="succeeded"))
        assert _conflict_rows(db) == {("/b", "d3")}
        s.apply_app_change("/a", app_doc("/a", instances=2), dep("d4", "/a"))  # free again
    finally:
        s.close()


def test_a_store_written_before_delay_resets_opens_and_takes_them(db):
    db.parent.mkdir(parents=True)
    with sqlite3.connect(db) as old:
        old.execute("PRAGMA journal_mode=WAL")
        old.executescript(_OLD_SCHEMA)
        old.execute("INSERT INTO apps (id, doc) VALUES (?, ?)", ("/a", json.dumps(app_doc())))
        old.execute("INSERT INTO app_status (app_id, doc) VALUES (?, ?)",
                    ("/a", json.dumps({"appId": "/a", "consecutiveFailures": 3})))
    old.close()
    failures = 3
    for _ in range(2):  # the second open finds the table there already
        s = SQLiteStateStore(db)
        try:
            assert s.get_app_status("/a") == {"appId": "/a", "consecutiveFailures": failures}
            assert s.pending_delay_resets() == []
            request = s.request_delay_reset("/a")
            assert s.pending_delay_resets() == [request]
            failures = 0
            s.put_app_status("/a", {"appId": "/a", "consecutiveFailures": failures},
                             delay_reset=request)
            assert s.pending_delay_resets() == [] and s.desired_generation() > 7
        finally:
            s.close()


def test_a_reset_requested_from_another_process_is_not_lost(db):
    """The API (another process) requests a reset between the scheduler's read of the status
    and its write of a status computed from it: the request survives that write."""
    s = SQLiteStateStore(db)
    try:
        s.apply_app_change("/a", app_doc(), dep("d1", status="succeeded"))
        s.put_app_status("/a", {"appId": "/a", "delay": {"until": "t", "seconds": 8},
                                "consecutiveFailures": 3})
        stale = s.get_app_status("/a")  # the scheduler's read
        code = textwrap.dedent(f"""
            from scheduler.sqlite_state import SQLiteStateStore
            SQLiteStateStore({str(db)!r}).request_delay_reset("/a")
        """)
        subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)
        s.put_app_status("/a", dict(stale, waiting=None))  # the scheduler's stale write
        assert [r["appId"] for r in s.pending_delay_resets()] == ["/a"]  # still asked for
    finally:
        s.close()


def test_reopen_keeps_everything(db):
    s = SQLiteStateStore(db)
    s.set_framework_id("fw")
    s.apply_app_change("/a", app_doc("/a"), dep("d1"))
    s.request_kills(["a.1"], scale=False)
    s.upsert_task(task("a.1"))
    s.put_app_status("/a", {"appId": "/a"})
    eid = s.append_event("deployment_info", {"plan": {"id": "d1"}})
    gen = s.desired_generation()
    s.close()
    with pytest.raises(StateError):
        s.get_app("/a")
    s2 = open_state(str(db))
    try:
        assert s2.get_framework_id() == "fw"
        assert s2.get_app("/a") == app_doc("/a")
        assert s2.get_deployment("d1")["status"] == "running"
        assert [k["taskId"] for k in s2.pending_kill_requests()] == ["a.1"]
        assert s2.get_task("a.1")["id"] == "a.1"
        assert s2.get_app_status("/a") == {"appId": "/a"}
        assert s2.latest_event_id() == eid
        assert s2.desired_generation() == gen
    finally:
        s2.close()


def test_open_state_url_and_parent_dirs(tmp_path):
    target = tmp_path / "x" / "y" / "s.db"
    s = open_state(f"sqlite://{target}")
    try:
        s.set_framework_id("f")
        assert target.exists()
    finally:
        s.close()
    with pytest.raises(StateError):
        open_state("sqlite://")


def _writer(path: str, name: str, n: int, results) -> None:
    """Child process: interleave desired-state writes, observed-state writes and events."""
    try:
        s = SQLiteStateStore(path)
        for i in range(n):
            app_id = f"/{name}/app{i}"
            s.apply_app_change(app_id, {"id": app_id, "instances": 1}, dep(f"{name}-{i}", app_id))
            s.upsert_task(task(f"{name}_app{i}.x", app_id))
            s.append_event("api_post_event", {"writer": name, "i": i})
        s.close()
        results.put((name, None))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((name, repr(exc)))


def test_two_processes_write_concurrently(db):
    parent = SQLiteStateStore(db)  # opened before the fork: children must not reuse it
    gen0 = parent.desired_generation()
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    n = 60
    procs = [ctx.Process(target=_writer, args=(str(db), name, n, results))
             for name in ("p1", "p2", "p3")]
    for p in procs:
        p.start()
    seen = 0
    # read while they write: the log only ever grows, in id order
    while any(p.is_alive() for p in procs):
        batch = parent.events_since(seen)
        ids = [i for i, _ in batch]
        assert ids == sorted(ids) and all(i > seen for i in ids)
        if batch:
            seen = ids[-1]
        parent.list_apps()
        # pace the reader on the children's exit (not a sleep): it stops as soon as they end
        multiprocessing.connection.wait([p.sentinel for p in procs], timeout=0.01)
    outcomes = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert outcomes == {"p1": None, "p2": None, "p3": None}
    events = parent.events_since(0, limit=10_000)
    assert len(events) == 3 * n
    for name in ("p1", "p2", "p3"):
        mine = [e["i"] for _, e in events if e["writer"] == name]
        assert mine == list(range(n))  # each writer's events in its own order
    assert len(parent.list_apps()) == 3 * n
    assert len(parent.list_tasks()) == 3 * n
    assert parent.desired_generation() == gen0 + 3 * n
    parent.close()


def test_cross_process_tailing(db):
    store = SQLiteStateStore(db)
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from scheduler.sqlite_state import SQLiteStateStore
        s = SQLiteStateStore({str(db)!r})
        for i in range(50):
            s.append_event("status_update_event", {{"i": i}})
        s.close()
    """)
    child = subprocess.Popen([sys.executable, "-c", script])
    got: list[int] = []
    last = 0
    try:
        while True:
            done = child.poll() is not None
            for eid, doc in store.events_since(last, limit=7):
                assert eid > last
                last = eid
                got.append(doc["i"])
            if done and len(store.events_since(last)) == 0:
                break
            try:
                child.wait(timeout=0.005)  # pace the tail on the writer's exit
            except subprocess.TimeoutExpired:
                pass
    finally:
        child.wait(timeout=30)
    assert child.returncode == 0
    assert got == list(range(50))
    store.close()


def _use_inherited(store: SQLiteStateStore, results) -> None:
    try:
        store.append_event("from_child", {})
        store.upsert_task(task("a.child"))
        store.close()  # closes only the child's own connections
        results.put(None)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(repr(exc))


def test_forked_child_can_use_the_parents_store(store):
    """gunicorn forks workers after loading the app: the store object they inherit must open
    its own connection rather than share the parent's."""
    store.append_event("from_parent", {})
    ctx = multiprocessing.get_context("fork")
    results = ctx.Queue()
    child = ctx.Process(target=_use_inherited, args=(store, results))
    child.start()
    assert results.get(timeout=60) is None
    child.join(timeout=30)
    assert child.exitcode == 0
    assert [e["eventType"] for _, e in store.events_since(0)] == ["from_parent", "from_child"]
    assert store.get_task("a.child") is not None
    store.append_event("after", {})  # the parent's own connection still works


def _race_create(path: str, name: str, start, results) -> None:
    """Child: wait for the starting gun, then try to create the same app as everyone else."""
    try:
        s = SQLiteStateStore(path)
        start.wait(timeout=30)
        try:
            s.apply_app_change("/race", {"id": "/race", "by": name}, dep(f"d-{name}", "/race"),
                               must_exist=False)
            results.put((name, "created"))
        except AppExists:
            results.put((name, "exists"))
        except DeploymentConflict:
            results.put((name, "conflict"))
        s.close()
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put((name, repr(exc)))


def test_racing_creates_across_processes_have_one_winner(db):
    store = SQLiteStateStore(db)
    ctx = multiprocessing.get_context("fork")
    start, results = ctx.Event(), ctx.Queue()
    names = [f"w{i}" for i in range(4)]
    procs = [ctx.Process(target=_race_create, args=(str(db), n, start, results)) for n in names]
    for p in procs:
        p.start()
    start.set()
    outcomes = dict(results.get(timeout=60) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    winners = [n for n, o in outcomes.items() if o == "created"]
    assert len(winners) == 1, outcomes
    assert all(o in ("created", "exists") for o in outcomes.values()), outcomes
    assert store.get_app("/race")["by"] == winners[0]
    assert [d["id"] for d in store.list_deployments(active_only=False)] == [f"d-{winners[0]}"]
    store.close()


def test_a_write_waits_for_another_writer_instead_of_failing(store, db):
    """busy_timeout: while another connection holds the write lock, our write waits for it."""
    holder = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("INSERT INTO meta (key, value) VALUES ('held', '1')")
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            store.append_event("waited", {})
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        done.set()

    writer = threading.Thread(target=write)
    writer.start()
    # the writer cannot finish while the lock is held
    assert not done.wait(timeout=0.3)
    holder.execute("COMMIT")
    holder.close()
    assert done.wait(timeout=30)
    writer.join()
    assert errors == []
    assert [e["eventType"] for _, e in store.events_since(0)] == ["waited"]


def test_connections_of_finished_threads_are_released(store):
    import gc

    def work() -> None:
        store.get_app("/a")

    for _ in range(20):
        t = threading.Thread(target=work)
        t.start()
        t.join()
    gc.collect()
    assert len(store._all) <= 2  # the main thread's, and at most one not yet collected


def test_a_first_versioned_change_rolled_back_leaves_the_history_usable(db, monkeypatch):
    # The version table is made on first use. Made inside a change's transaction that then
    # rolled back (a full disk at the commit), it was gone while the store believed it there:
    # every later versioned change failed with "no such table" until a restart.
    store = SQLiteStateStore(db)
    put_version = store._put_version

    def then_fail(c, *args):
        put_version(c, *args)
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "_put_version", then_fail)
    with pytest.raises(Exception, match="disk is full"):
        store.apply_app_change("/a", app_doc("/a"), dep("d1"), history_keep=3)
    monkeypatch.undo()
    assert store.get_app("/a") is None
    stored = store.apply_app_change("/a", app_doc("/a"), dep("d1"), history_keep=3)
    assert store.list_app_versions("/a") == [stored["version"]]
    store.close()


def test_finished_deployments_are_pruned_to_the_newest_in_chunks(store, monkeypatch):
    import scheduler.sqlite_state as sqlite_state

    monkeypatch.setattr(sqlite_state, "PRUNE_CHUNK", 4)   # several transactions
    store.apply_app_change("/old", app_doc("/old"), dep("keeps-running", "/old"))
    store.apply_app_change("/p", app_doc("/p"), None)
    for n in range(12):
        store.apply_app_change("/p", app_doc("/p", instances=n), dep(f"p{n:02d}", "/p"),
                               force=True)
    store.cancel_deployment("p11")
    assert store.prune_deployments(keep_finished=2) == 10   # p00..p09 went
    left = [d["id"] for d in store.list_deployments(active_only=False)]
    assert left == ["keeps-running", "p10", "p11"]
    assert store.get_deployment("p00") is None
    assert store.prune_deployments(keep_finished=1) == 1 and store.prune_deployments(5) == 0
    assert [d["id"] for d in store.list_deployments(active_only=False)] == ["keeps-running",
                                                                          "p11"]
    # the running one still locks its app (its deployment_apps rows were not touched)
    with pytest.raises(DeploymentConflict):
        store.apply_app_change("/old", app_doc("/old", instances=2), dep("d-new", "/old"))


def test_a_transaction_stores_its_events_in_order_across_insert_chunks(store):
    from scheduler.sqlite_state import EVENTS_PER_INSERT
    from scheduler.state import Transaction

    last = store.append_event("before", {"n": -1})
    count = 2 * EVENTS_PER_INSERT + 3
    events = tuple({"eventType": "status_update_event", "n": n, "timestamp": "t"}
                   for n in range(count))
    store.transact(lambda r: (Transaction(events=events), None))
    stored = store.events_since(last, limit=count + 10)
    assert [doc["n"] for _, doc in stored] == list(range(count))
    assert [i for i, _ in stored] == list(range(last + 1, last + 1 + count))
