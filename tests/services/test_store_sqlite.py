"""SQLite quote store: interface behaviour, durability of the contract, failures and recovery."""

from __future__ import annotations

import gc
import math
import multiprocessing
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.sqlite_store import FETCH_BATCH, WRITE_BATCH, SQLiteQuoteStore
from services.store import (
    QUOTE_FIELDS,
    Quote,
    QuoteStore,
    StoreUnavailable,
    iso_ms,
    open_store,
)
from tests.support import REPO

DAY = 86_400_000
T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def q(symbol: str, ts: int, price: float = 100.0, volume: int = 10) -> Quote:
    return Quote(symbol, ts, price, price + 1, price - 1, price + 0.5, volume)


# -- Quote ---------------------------------------------------------------------------------------
def test_quote_to_json_full_and_restricted() -> None:
    quote = Quote("AAPL", T0 + 90_061_001, 1.5, 2.0, 1.0, 1.75, 1234)
    assert quote.to_json() == {
        "symbol": "AAPL", "ts": "2024-01-02T01:01:01.001Z", "epochMs": T0 + 90_061_001,
        "open": 1.5, "high": 2.0, "low": 1.0, "close": 1.75, "volume": 1234,
    }
    assert quote.to_json(["close", "volume"]) == {
        "symbol": "AAPL", "ts": "2024-01-02T01:01:01.001Z", "epochMs": T0 + 90_061_001,
        "close": 1.75, "volume": 1234,
    }
    with pytest.raises(ValueError, match="unknown quote field"):
        quote.to_json(["close", "bogus"])
    assert iso_ms(0) == "1970-01-01T00:00:00.000Z"
    assert iso_ms(-1) == "1969-12-31T23:59:59.999Z"


# -- basic contract ------------------------------------------------------------------------------
def test_write_read_last_symbols(sqlite_store: QuoteStore) -> None:
    assert sqlite_store.symbols() == []
    assert sqlite_store.last("AAPL") is None
    assert not sqlite_store.has_symbol("AAPL")
    quotes = [q("MSFT", T0 + i * 60_000, 300 + i) for i in range(5)]
    quotes += [q("AAPL", T0 + i * 60_000, 100 + i) for i in reversed(range(5))]
    assert sqlite_store.write(iter(quotes)) == 10
    assert sqlite_store.symbols() == ["AAPL", "MSFT"]
    assert sqlite_store.has_symbol("AAPL") and not sqlite_store.has_symbol("AAP")
    assert sqlite_store.last("AAPL") == q("AAPL", T0 + 4 * 60_000, 104)
    assert list(sqlite_store.read_range("AAPL")) == [q("AAPL", T0 + i * 60_000, 100 + i)
                                                    for i in range(5)]


def test_range_bounds_inclusive_and_limit(sqlite_store: QuoteStore) -> None:
    sqlite_store.write(q("X", T0 + i * 1000) for i in range(10))
    ts = lambda it: [x.ts - T0 for x in it]  # noqa: E731
    assert ts(sqlite_store.read_range("X", T0 + 2000, T0 + 5000)) == [2000, 3000, 4000, 5000]
    assert ts(sqlite_store.read_range("X", T0 + 2001, T0 + 4999)) == [3000, 4000]
    assert ts(sqlite_store.read_range("X", T0 + 5000, T0 + 5000)) == [5000]
    assert ts(sqlite_store.read_range("X", None, T0 + 1000)) == [0, 1000]
    assert ts(sqlite_store.read_range("X", T0 + 8000)) == [8000, 9000]
    assert ts(sqlite_store.read_range("X", T0 + 1000, limit=3)) == [1000, 2000, 3000]
    assert ts(sqlite_store.read_range("X", limit=0)) == []
    assert ts(sqlite_store.read_range("Y")) == []


def test_writes_are_idempotent_upserts(sqlite_store: QuoteStore) -> None:
    batch = [q("X", T0 + i, 10.0) for i in range(3)]
    assert sqlite_store.write(batch) == 3
    assert sqlite_store.write(batch) == 3
    assert len(list(sqlite_store.read_range("X"))) == 3
    sqlite_store.write([q("X", T0 + 1, 20.0, volume=99)])
    assert list(sqlite_store.read_range("X", T0 + 1, T0 + 1)) == [q("X", T0 + 1, 20.0, 99)]


def test_bad_input_is_value_error(sqlite_store: QuoteStore) -> None:
    for bad in ("", None, 5, "A\x00B"):
        with pytest.raises(ValueError):
            sqlite_store.last(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="after"):
        sqlite_store.read_range("X", T0 + 1, T0)
    with pytest.raises(ValueError, match="limit"):
        sqlite_store.read_range("X", limit=-1)
    with pytest.raises(ValueError):
        sqlite_store.read_range("X", start_ms=1.5)  # type: ignore[arg-type]
    for bad_quote in (Quote("X", T0, math.nan, 1, 1, 1, 1), Quote("X", T0, 1, 1, 1, 1, -1),
                      Quote("X", True, 1, 1, 1, 1, 1), Quote("X", T0, 1, 1, 1, 1, 1.5),  # type: ignore[arg-type]
                      ("X", T0, 1, 1, 1, 1, 1)):
        with pytest.raises(ValueError):
            sqlite_store.write([bad_quote])  # type: ignore[list-item]
    assert sqlite_store.symbols() == []


def test_numpy_scalars_are_accepted(sqlite_store: QuoteStore) -> None:
    quote = Quote("N", np.int64(T0), np.float64(1.5), np.float32(2.0), 1, 1.25, np.int64(7))  # type: ignore[arg-type]
    sqlite_store.write([quote])
    got = sqlite_store.last("N")
    assert got == Quote("N", T0, 1.5, 2.0, 1.0, 1.25, 7)
    assert type(got.ts) is int and type(got.volume) is int and type(got.open) is float


def test_write_batches_a_bad_quote_stops_at_its_batch(sqlite_store: QuoteStore) -> None:
    good = (q("X", T0 + i) for i in range(WRITE_BATCH + 10))

    def with_bad_one():
        yield from good
        yield Quote("X", T0 - 1, math.inf, 1, 1, 1, 1)

    with pytest.raises(ValueError):
        sqlite_store.write(with_bad_one())
    # the first full batch was committed; the batch holding the bad quote was not
    assert len(list(sqlite_store.read_range("X"))) == WRITE_BATCH


# -- streaming -----------------------------------------------------------------------------------
def test_read_range_streams_with_bounded_memory(sqlite_store: QuoteStore) -> None:
    n = 100_000
    sqlite_store.write(q("BIG", T0 + i * 1000, 1.0 + i) for i in range(n))
    gc.collect()
    tracemalloc.start()
    try:
        count = 0
        prev = None
        for quote in sqlite_store.read_range("BIG"):
            assert prev is None or quote.ts > prev
            prev = quote.ts
            count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == n
    # 100k Quote objects held at once would be > 15 MB; a streamed read holds ~FETCH_BATCH rows.
    assert peak < 2_000_000, f"peak {peak} bytes for {n} rows (fetch batch {FETCH_BATCH})"


def test_stream_reads_one_snapshot_while_writes_go_on(sqlite_store: QuoteStore) -> None:
    sqlite_store.write(q("S", T0 + i) for i in range(3 * FETCH_BATCH))
    stream = sqlite_store.read_range("S")
    first = next(stream)
    sqlite_store.write(q("S", T0 + 10 * FETCH_BATCH + i) for i in range(10))  # WAL: not blocked
    assert 1 + sum(1 for _ in stream) == 3 * FETCH_BATCH
    assert first.ts == T0
    assert len(list(sqlite_store.read_range("S"))) == 3 * FETCH_BATCH + 10


def test_abandoned_streams_release_their_connection(sqlite_store: SQLiteQuoteStore) -> None:
    sqlite_store.write(q("S", T0 + i) for i in range(10))
    before = len(sqlite_store._conns)
    stream = sqlite_store.read_range("S")  # never iterated
    assert len(sqlite_store._conns) == before + 1
    del stream
    gc.collect()
    assert len(sqlite_store._conns) == before
    stream = sqlite_store.read_range("S")
    next(stream)
    stream.close()
    assert len(sqlite_store._conns) == before


def _as_row(quote: Quote) -> tuple:
    return (quote.ts, quote.open, quote.high, quote.low, quote.close, quote.volume)


@pytest.mark.parametrize("args,kwargs", [((), {}), ((T0 + 5, T0 + FETCH_BATCH + 7), {}),
                                         ((), {"limit": FETCH_BATCH}), ((), {"limit": 0}),
                                         ((T0 + 10 * FETCH_BATCH,), {})])
def test_read_range_rows_pages_the_same_rows(sqlite_store: SQLiteQuoteStore, args: tuple,
                                             kwargs: dict) -> None:
    sqlite_store.write(q("S", T0 + i, 1.0 + i, i) for i in range(2 * FETCH_BATCH + 3))
    sqlite_store.write([q("T", T0 + 1)])
    want = [_as_row(x) for x in sqlite_store.read_range("S", *args, **kwargs)]
    for pages in (sqlite_store.read_range_rows("S", *args, **kwargs),
                  QuoteStore.read_range_rows(sqlite_store, "S", *args, **kwargs)):  # the default
        got = list(pages)
        assert all(0 < len(page) <= FETCH_BATCH for page in got)
        assert [row for page in got for row in page] == want


def test_read_range_rows_checks_arguments_and_releases_its_connection(
        sqlite_store: SQLiteQuoteStore) -> None:
    with pytest.raises(ValueError):
        sqlite_store.read_range_rows("S", T0, T0 - 1)
    sqlite_store.write(q("S", T0 + i) for i in range(FETCH_BATCH + 1))
    before = len(sqlite_store._conns)
    pages = sqlite_store.read_range_rows("S")
    assert len(sqlite_store._conns) == before + 1
    del pages
    gc.collect()
    assert len(sqlite_store._conns) == before
    pages = sqlite_store.read_range_rows("S")
    assert len(next(pages)) == FETCH_BATCH
    assert len(sqlite_store._conns) == before + 1
    pages.close()
    assert len(sqlite_store._conns) == before
    with pytest.raises(StopIteration):
        next(pages)


# -- failures and recovery -----------------------------------------------------------------------
def test_removed_file_is_unavailable_then_recovers(sqlite_store: SQLiteQuoteStore,
                                                   tmp_path: Path) -> None:
    sqlite_store.write([q("X", T0)])
    sqlite_store.ping()
    backup = tmp_path / "backup.db"
    sqlite_store.close()  # checkpoints the WAL into the file so a plain copy is complete
    shutil.copy(sqlite_store.path, backup)
    os.remove(sqlite_store.path)
    for call in (sqlite_store.ping, lambda: sqlite_store.last("X"),
                 lambda: sqlite_store.read_range("X"), sqlite_store.symbols,
                 lambda: sqlite_store.write([q("X", T0 + 1)])):
        with pytest.raises(StoreUnavailable):
            call()
    assert not os.path.exists(sqlite_store.path), "a removed store must not be recreated empty"
    shutil.copy(backup, sqlite_store.path)  # a new inode: the store reconnects by itself
    sqlite_store.ping()
    assert sqlite_store.last("X") == q("X", T0)


def test_garbage_file_is_unavailable(sqlite_store: SQLiteQuoteStore) -> None:
    sqlite_store.write([q("X", T0)])
    sqlite_store.close()
    Path(sqlite_store.path).write_bytes(b"not a database at all" * 100)
    with pytest.raises(StoreUnavailable):
        sqlite_store.ping()


_PING_AS_NOBODY = """
import os, sys
from services.store import StoreUnavailable, open_store
import services.sqlite_store  # everything imported first: the interpreter's own files may be
                              # out of an ordinary user's reach on this machine
if os.geteuid() == 0:  # root reads files whatever their mode: become an ordinary user
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
try:
    store = open_store(sys.argv[1])
    store.ping()
    print("reachable", os.geteuid())
except StoreUnavailable as exc:
    print("unavailable", os.geteuid(), exc)
"""


def _ping_in_child(url: str) -> str:
    """`ping()` on the store at `url` in a child process that is not root."""
    done = subprocess.run([sys.executable, "-c", _PING_AS_NOBODY, url], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_unreadable_file_is_unavailable() -> None:
    # Runs its check in a child without root's privileges, so it runs as root too (CI).
    work = Path(tempfile.mkdtemp(prefix="accessd-modes-"))
    try:
        work.chmod(0o777)  # the unprivileged child may create SQLite's -wal/-shm files here
        path = work / "quotes.db"
        with open_store(f"sqlite://{path}") as store:
            store.write([q("X", T0)])
        path.chmod(0)
        out = _ping_in_child(f"sqlite://{path}")
        assert out.startswith("unavailable ") and not out.startswith("unavailable 0 "), out
        path.chmod(0o666)
        out = _ping_in_child(f"sqlite://{path}")
        assert out.startswith("reachable ") and not out.startswith("reachable 0"), out
    finally:
        shutil.rmtree(work, ignore_errors=True)


def test_lock_held_past_timeout_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:{tmp_path / 'locked.db'}?timeout=0.1")
    other = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(StoreUnavailable, match="locked"):
            store.write([q("X", T0)])
        other.execute("ROLLBACK")
        assert store.write([q("X", T0)]) == 1
    finally:
        other.close()
        store.close()


def _child_uses_store(store: SQLiteQuoteStore, conn_ids: list[int], out: multiprocessing.Queue) -> None:
    try:
        store.write([q("CHILD", T0)])
        last = store.last("X")
        local_conn = store._local.conn
        out.put((last, id(local_conn) in conn_ids, store._local.pid == os.getpid()))
    except BaseException as exc:  # reported to the parent, which fails the test
        out.put(repr(exc))


def test_store_opened_before_fork_reconnects_in_the_child(sqlite_store: SQLiteQuoteStore) -> None:
    sqlite_store.write([q("X", T0)])
    assert sqlite_store._local.conn is not None
    parent_conns = [id(c) for _, c in sqlite_store._conns]
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    child = ctx.Process(target=_child_uses_store, args=(sqlite_store, parent_conns, out))
    child.start()
    try:
        result = out.get(timeout=30)
    finally:
        child.join(30)
    assert result == (q("X", T0), False, True)
    assert sqlite_store.has_symbol("CHILD")
    assert sqlite_store.last("X") == q("X", T0)  # the parent's connection is still fine


def test_threads_each_get_their_connection(sqlite_store: SQLiteQuoteStore) -> None:
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            for i in range(200):
                sqlite_store.write([q(f"T{k}", T0 + i)])
            assert len(list(sqlite_store.read_range(f"T{k}"))) == 200
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sqlite_store.symbols() == ["T0", "T1", "T2", "T3"]


# -- URLs ----------------------------------------------------------------------------------------
def test_open_store_urls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rel = open_store("sqlite:rel.db")
    assert isinstance(rel, SQLiteQuoteStore) and rel.path == str(tmp_path / "rel.db")
    assert open_store(f"sqlite://{tmp_path}/abs.db").path == str(tmp_path / "abs.db")
    assert open_store(f"sqlite:///{tmp_path}/abs.db").path == str(tmp_path / "abs.db")
    for bad in ("sqlite://host/x.db", "sqlite:", "sqlite:x.db?bogus=1", "sqlite:x.db?timeout=x",
                "mysql://x", "nonsense"):
        with pytest.raises(ValueError):
            open_store(bad)


# -- model-based check ---------------------------------------------------------------------------
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    writes=st.lists(st.tuples(st.sampled_from(["A", "B"]), st.integers(0, 50),
                              st.integers(0, 1000)), max_size=60),
    start=st.none() | st.integers(-5, 55),
    span=st.none() | st.integers(0, 30),
    limit=st.none() | st.integers(0, 10),
)
def test_matches_a_dict_model(tmp_path_factory: pytest.TempPathFactory,
                              writes: list[tuple[str, int, int]], start: int | None,
                              span: int | None, limit: int | None) -> None:
    store = SQLiteQuoteStore(tmp_path_factory.mktemp("model") / "m.db")
    try:
        model: dict[tuple[str, int], Quote] = {}
        for sym, ts, vol in writes:
            quote = q(sym, ts, float(vol), vol)
            store.write([quote])
            model[(sym, ts)] = quote
        end = None if start is None or span is None else start + span
        expected = sorted((v for (s, t), v in model.items() if s == "A"
                           and (start is None or t >= start) and (end is None or t <= end)),
                          key=lambda x: x.ts)
        if limit is not None:
            expected = expected[:limit]
        assert list(store.read_range("A", start, end, limit=limit)) == expected
        assert store.symbols() == sorted({s for s, _ in model})
        assert store.last("B") == max((v for (s, _), v in model.items() if s == "B"),
                                      key=lambda x: x.ts, default=None)
    finally:
        store.close()


def test_quote_fields_constant() -> None:
    assert QUOTE_FIELDS == ("open", "high", "low", "close", "volume")
