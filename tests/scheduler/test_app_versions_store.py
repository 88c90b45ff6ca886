"""App version histories in both state-store backends (SQLite, and ZooKeeper on a real server):
stored, listed newest first, bounded, read back by another store object on the same data,
deleted with the app."""

from __future__ import annotations

import json
import sqlite3
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


def _on_disk(path, app_id: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT count(*) FROM app_versions WHERE app_id = ?",
                            (app_id,)).fetchone()[0]
    finally:
        conn.close()


def _version(n: int) -> str:
    return f"2026-12-04T10:{n // 60:02d}:{n % 60:02d}.000Z"


def test_sqlite_prunes_lazily_on_disk_but_readers_see_exactly_the_newest_keep(tmp_path):
    from scheduler.sqlite_versions import PRUNE_EVERY

    path = str(tmp_path / "state.db")
    writer, reader = open_state(path), open_state(path)
    try:
        written = []
        for n in range(3 * PRUNE_EVERY):
            written.append(_version(n))
            writer.put_app_version("/p", written[-1], {"n": n}, keep=3)
            assert reader.list_app_versions("/p") == written[:-4:-1]
            if n >= 3:
                assert reader.get_app_version("/p", written[-4]) is None  # past the bound
            oldest_kept = max(0, n - 2)
            assert reader.get_app_version("/p", written[oldest_kept]) == {"n": oldest_kept}
            assert _on_disk(path, "/p") <= 3 + PRUNE_EVERY - 1
        assert _on_disk(path, "/p") > 3  # lazily: the rows are not deleted on every write
        # A bound that grows does not bring back what the smaller one hid.
        writer.put_app_version("/p", _version(999), {"n": 999}, keep=5)
        assert reader.list_app_versions("/p") == [_version(999), *written[:-4:-1]]
        # Deleting the app's history deletes the rows, hidden ones too.
        writer.delete_app_versions("/p")
        assert _on_disk(path, "/p") == 0 and reader.list_app_versions("/p") == []
    finally:
        writer.close()
        reader.close()


def test_sqlite_bound_written_in_a_transaction_that_rolled_back_is_written_again(tmp_path):
    path = str(tmp_path / "state.db")
    store = open_state(path)
    try:
        store._versions_table()
        with pytest.raises(RuntimeError), store._write() as c:
            store._put_version(c, "/r", _version(0), {"n": 0}, 2)
            store._put_version(c, "/r", _version(1), {"n": 1}, 2)  # reads the bound back
            raise RuntimeError("rolled back")
        for n in range(2, 6):
            store.put_app_version("/r", _version(n), {"n": n}, keep=2)
        assert store.list_app_versions("/r") == [_version(5), _version(4)]
    finally:
        store.close()


def test_sqlite_history_of_an_older_file_moves_to_the_rowid_table(tmp_path):
    # Files made before kept versions clustered on (app, version), where each ~1 KB document
    # took an overflow page; opening one moves its rows into the rowid table, all of them.
    path = str(tmp_path / "state.db")
    open_state(path).close()  # the file, its meta and every other table as this version makes
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE IF EXISTS app_versions")
    conn.execute("CREATE TABLE app_versions (app_id TEXT NOT NULL, version TEXT NOT NULL, "
                 "doc TEXT NOT NULL, PRIMARY KEY (app_id, version)) WITHOUT ROWID")
    conn.executemany("INSERT INTO app_versions VALUES (?, ?, ?)",
                     [(app, _version(n), json.dumps({"n": n, "pad": "x" * 1000}))
                      for app in ("/old/a", "/old/b") for n in range(5)])
    conn.commit()
    conn.close()
    store = open_state(path)
    try:
        assert store.list_app_versions("/old/a") == [_version(n) for n in range(4, -1, -1)]
        assert store.get_app_version("/old/b", _version(2))["n"] == 2
        store.put_app_version("/old/a", _version(9), {"n": 9}, keep=50)
        assert store.list_app_versions("/old/a")[0] == _version(9)
    finally:
        store.close()
    conn = sqlite3.connect(path)
    try:
        sql = conn.execute("SELECT sql FROM sqlite_master WHERE name='app_versions'").fetchone()
        assert "WITHOUT ROWID" not in sql[0].upper()
        assert conn.execute("SELECT count(*) FROM app_versions").fetchone()[0] == 11
    finally:
        conn.close()
