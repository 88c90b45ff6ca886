"""The time-series service's cache of small encoded answers (`services.timeseries.AnswerCache`):
it is used, and never serves data older than the store's, whoever writes and however."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from services.common import ServiceConfig
from services.sqlite_store import SQLiteQuoteStore
from services.store import Quote, StoreUnavailable, open_store
from services.timeseries import AnswerCache, create_app, stream_array
from tests.services.service_fixtures import SYMBOL, Service, seed

T0 = 1_767_364_200_000  # 2026-01-02T14:30:00Z
MINUTE = 60_000


def quotes(symbol: str, n: int, price: float) -> list[Quote]:
    return [Quote(symbol, T0 + i * MINUTE, price + i, price + i + 1, price - 1, price + 0.5, i)
            for i in range(n)]


class CountingStore(SQLiteQuoteStore):
    """Counts the range reads that reach SQLite (a cache hit makes none)."""

    reads = 0

    def read_range_rows(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().read_range_rows(*args, **kwargs)

    def read_range_encoded(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().read_range_encoded(*args, **kwargs)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "quotes.db"


@pytest.fixture
def store(db: Path) -> Iterator[CountingStore]:
    s = CountingStore(db)
    s.write(quotes("A", 50, 100.0))
    yield s
    s.close()


@pytest.fixture
def client(store: CountingStore, db: Path) -> falcon.testing.TestClient:
    return falcon.testing.TestClient(create_app(ServiceConfig(f"sqlite://{db}"), store))


def closes(client: falcon.testing.TestClient, qs: str = "") -> list[float]:
    resp = client.simulate_get("/timeseries/A", query_string=qs)
    assert resp.status_code == 200
    return [d["close"] for d in resp.json]


def test_a_repeated_request_is_served_from_the_cache(client, store: CountingStore):
    first = client.simulate_get("/timeseries/A", query_string="limit=10")
    second = client.simulate_get("/timeseries/A", query_string="limit=10")
    assert store.reads == 1
    assert second.content == first.content and len(second.json) == 10
    # Same headers: a small answer (from the day buckets, or the cache) is one body with its
    # length, not a chunked stream.
    assert second.headers == first.headers
    assert int(second.headers["content-length"]) == len(second.content)
    # Another request (parameters differ) is its own entry.
    client.simulate_get("/timeseries/A", query_string="limit=11")
    client.simulate_get("/timeseries/A", query_string="limit=10&fields=close")
    assert store.reads == 3


def test_an_answer_cached_by_one_thread_serves_the_others(client, store: CountingStore):
    # gthread workers answer on several threads: the version must not depend on the thread.
    first = client.simulate_get("/timeseries/A").content
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(client.simulate_get("/timeseries/A").content))
    t.start()
    t.join(30)
    assert got == [first] and store.reads == 1


def test_data_version_is_one_sequence_for_all_threads(store: CountingStore, db: Path):
    v = store.data_version()
    seen: list[object] = []
    t = threading.Thread(target=lambda: seen.append(store.data_version()))
    t.start()
    t.join(30)
    assert seen == [v] and store.data_version() == v
    store.write(quotes("A", 1, 1.0))
    assert store.data_version() != v
    v = store.data_version()
    t = threading.Thread(target=lambda: store.write(quotes("A", 1, 2.0)))
    t.start()
    t.join(30)
    assert store.data_version() != v
    v = store.data_version()
    store.close()                                # new connections: the old token is no use
    assert store.data_version() != v


def test_a_write_by_the_same_store_and_thread_is_seen(client, store: CountingStore):
    assert closes(client)[0] == 100.5
    store.write(quotes("A", 50, 200.0))     # this thread's own connection: data_version unchanged
    assert closes(client)[0] == 200.5
    store.write([Quote("A", T0 + 50 * MINUTE, 1.0, 1.0, 1.0, 7.0, 1)])
    assert closes(client)[-1] == 7.0


def test_a_write_by_another_connection_is_seen(client, db: Path):
    assert closes(client)[0] == 100.5
    with SQLiteQuoteStore(db) as other:
        other.write(quotes("A", 50, 300.0))
    assert closes(client)[0] == 300.5


def _write_in_child(db: str) -> None:
    with SQLiteQuoteStore(db) as s:
        s.write(quotes("A", 50, 400.0))


def test_a_write_by_another_process_is_seen(client, db: Path):
    assert closes(client)[0] == 100.5
    p = multiprocessing.get_context("spawn").Process(target=_write_in_child, args=(str(db),))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert closes(client)[0] == 400.5


def test_a_replaced_file_is_seen(client, db: Path, tmp_path: Path):
    assert closes(client)[0] == 100.5
    other = tmp_path / "restored.db"
    with SQLiteQuoteStore(other) as s:
        s.write(quotes("A", 50, 500.0))
    # A restore: the old file's WAL set aside (SQLite would apply a leftover WAL to the new
    # file, cache or not), then a new file (inode) at the path.
    for suffix in ("-wal", "-shm"):
        os.rename(f"{db}{suffix}", tmp_path / f"old{suffix}")
    shutil.copy(other, db.with_name("incoming.db"))
    os.replace(db.with_name("incoming.db"), db)
    assert closes(client)[0] == 500.5


def test_the_store_going_away_is_still_503(client, db: Path):
    closes(client)
    aside = db.with_name("aside.db")
    os.rename(db, aside)
    resp = client.simulate_get("/timeseries/A")
    assert resp.status_code == 503 and resp.json["title"] == "Store unavailable"
    os.rename(aside, db)
    assert closes(client)[0] == 100.5


def test_big_answers_are_not_kept(store: CountingStore, db: Path):
    cache = AnswerCache(max_bytes=1 << 20, max_entry=2000)  # a few quotes only
    from services.timeseries import TimeSeriesResource

    app = create_app(ServiceConfig(f"sqlite://{db}"), store)
    app.add_route("/small/{symbol}", TimeSeriesResource(store, cache))
    client = falcon.testing.TestClient(app)
    for _ in range(2):
        assert len(client.simulate_get("/small/A").json) == 50
    assert store.reads == 2 and cache.size == 0
    for _ in range(2):
        assert len(client.simulate_get("/small/A", query_string="limit=3").json) == 3
    assert store.reads == 3 and 0 < cache.size <= 2000


def test_the_cache_is_bounded_least_recently_used_first():
    cache = AnswerCache(max_bytes=100, max_entry=60)
    cache.put("a", 1, [b"x" * 40])
    cache.put("b", 1, [b"y" * 40])
    assert cache.get("a", 1) == [b"x" * 40]      # "a" is now the most recently used
    cache.put("c", 1, [b"z" * 40])               # over 100 bytes: "b" goes
    assert cache.get("b", 1) is None and cache.get("a", 1) and cache.get("c", 1)
    assert cache.size == 80
    assert cache.get("a", 2) is None             # another version: a miss, and dropped
    assert cache.size == 40
    cache.put("d", 1, [b"w" * 61])               # over max_entry: not kept
    assert cache.get("d", 1) is None and cache.size == 40


def test_a_failed_or_abandoned_stream_is_not_kept():
    cache = AnswerCache()

    def failing() -> Iterator[bytes]:
        yield b"[1"
        raise StoreUnavailable("gone")

    out = cache.recording("k", 1, failing())
    assert next(out) == b"[1"
    with pytest.raises(StoreUnavailable):
        next(out)
    abandoned = cache.recording("k", 1, iter([b"[1", b",2]"]))
    next(abandoned)
    abandoned.close()
    assert cache.get("k", 1) is None
    assert list(cache.recording("k", 1, iter([b"[1", b",2]"]))) == [b"[1", b",2]"]
    assert cache.get("k", 1) == [b"[1", b",2]"]


def test_recording_closes_its_source():
    closed = []
    rows = [(T0, 1.0, 2.0, 0.5, 1.5, 3)]

    class Pages:
        def __init__(self) -> None:
            self.it = iter([rows, rows, rows])

        def __iter__(self) -> Pages:
            return self

        def __next__(self) -> list[tuple]:
            return next(self.it)

        def close(self) -> None:
            closed.append(True)

    from services.timeseries import page_encoder

    out = AnswerCache().recording("k", 1, stream_array(Pages(), page_encoder("A", None), 1))
    next(out)
    out.close()
    assert closed == [True]


def test_the_service_sees_writes_from_another_process(tmp_path: Path):
    url = f"sqlite://{tmp_path / 'quotes.db'}"
    seed(url, days=1, seed=1)
    svc = Service("timeseries", url)
    try:
        path = f"/timeseries/{SYMBOL}"
        params = {"from": "2026-01-02T15:00:00Z", "to": "2026-01-02T16:00:00Z"}
        before = svc.get(path, params=params)
        assert int(before.headers["Content-Length"]) == len(before.content)  # sent whole
        assert svc.get(path, params=params).json() == before.json()
        seed(url, days=1, seed=2)                # the same instants, other values (upserts)
        after = svc.get(path, params=params)
        with open_store(url) as s:
            want = [q.to_json() for q in s.read_range(SYMBOL, after.json()[0]["epochMs"],
                                                      after.json()[-1]["epochMs"])]
        assert after.json() == want and len(want) == 61
        assert after.json() != before.json()
        assert int(after.headers["Content-Length"]) == len(after.content)
    finally:
        svc.stop()
