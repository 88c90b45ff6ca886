"""App version histories in both state-store backends (SQLite, and ZooKeeper on a real server):
stored, listed newest first, bounded, read back by another store object on the same data,
deleted with the app."""

from __future__ import annotations

import uuid

import pytest

from scheduler.stores import open_state


@pytest.fixture(params=["sqlite", "zookeeper"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return str(tmp_path / "state.db")
    zk = request.getfixturevalue("zookeeper")
    return zk.url(f"/v{uuid.uuid4().hex[:12]}") + "?session_timeout=4"


def test_versions_are_kept_bounded_shared_and_deleted(url):
    first, second = open_state(url), open_state(url)
    try:
        assert first.list_app_versions("/g/a") == [] and first.get_app_version("/g/a", "x") is None
        versions = [f"2026-12-03T10:00:{s:02d}.000Z" for s in range(6)]
        for n, v in enumerate(versions):
            first.put_app_version("/g/a", v, {"id": "/g/a", "version": v, "n": n}, keep=4)
        first.put_app_version("/g/b", versions[0], {"id": "/g/b"}, keep=4)
        assert second.list_app_versions("/g/a") == versions[:1:-1]  # newest 4, newest first
        assert second.get_app_version("/g/a", versions[5])["n"] == 5
        assert second.get_app_version("/g/a", versions[0]) is None  # pruned
        first.put_app_version("/g/a", versions[5], {"id": "/g/a", "n": 50}, keep=4)
        assert second.get_app_version("/g/a", versions[5])["n"] == 50  # replaced, not added
        second.delete_app_versions("/g/a")
        second.delete_app_versions("/g/none")
        assert first.list_app_versions("/g/a") == []
        assert first.list_app_versions("/g/b") == [versions[0]]
    finally:
        first.close()
        second.close()


def test_zookeeper_history_removal_that_missed_a_version_is_retried(zookeeper):
    # A delete lists the history's nodes, then deletes them and their parent in the app's own
    # multi. A version written after the listing makes the parent's delete fail (NotEmpty):
    # that is a write conflict, re-planned with a fresh listing, never a half-deleted history.
    from tests.scheduler.state_docs import app_doc, dep

    store = open_state(zookeeper.url(f"/h{uuid.uuid4().hex[:12]}") + "?session_timeout=4")
    try:
        for n in range(3):
            doc = dict(app_doc("/r", instances=n), version=f"2026-12-03T10:00:0{n}.000Z")
            store.apply_app_change("/r", doc, dep(f"d{n}", "/r"), force=True, history_keep=5)
        assert len(store.list_app_versions("/r")) == 3
        listed = []
        removal = store._history_removal

        def stale_first(app_id):
            writes = removal(app_id)
            listed.append(len(writes))
            return writes[1:] if len(listed) == 1 else writes  # the first misses a version

        store._history_removal = stale_first
        assert store.apply_app_change("/r", None, dep("d9", "/r"), force=True,
                                      history_keep=5) is None
        assert listed == [4, 4]  # 3 versions + their parent, listed twice
        assert store.get_app("/r") is None and store.list_app_versions("/r") == []
    finally:
        store.close()
