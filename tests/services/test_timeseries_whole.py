"""Small answers from the day buckets are sent whole, with a Content-Length (issue 15): the
same bytes as the row path, and bigger answers still stream; a store failing while the
answer is gathered is a clean 503, before any byte is sent. And the workers keep the cycle
collector off their start-up objects."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest

from services.common import ServiceConfig
from services.sqlite_store import SQLiteQuoteStore
from services.store import StoreUnavailable
from services.timeseries import WHOLE_BODY_BYTES, create_app, page_encoder, read_whole, stream_array
from tests.services.service_fixtures import SYMBOL, seed

REPO = Path(__file__).resolve().parents[2]
DAY_MS = 86_400_000
T0 = 1_767_364_200_000  # 2026-01-02T14:30:00Z, the first synthetic quote


@pytest.fixture(scope="module")
def db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("whole") / "quotes.db"
    seed(f"sqlite://{path}", days=4)
    return path


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteQuoteStore]:
    s = SQLiteQuoteStore(db)
    yield s
    s.close()


def rows_body(store: SQLiteQuoteStore, start: int, end: int) -> bytes:
    return b"".join(stream_array(store.read_range_rows(SYMBOL, start, end),
                                 page_encoder(SYMBOL, None)))


@pytest.mark.parametrize("days", [0.01, 0.5, 1, 2, 4])
def test_whole_or_streamed_the_answer_is_the_row_paths(store: SQLiteQuoteStore,
                                                       days: float) -> None:
    client = falcon.testing.TestClient(create_app(ServiceConfig("unused"), store))
    start, end = T0 + 7 * 60_000, T0 + 7 * 60_000 + int(days * DAY_MS)
    want = rows_body(store, start, end)
    r = client.simulate_get(f"/timeseries/{SYMBOL}", params={"from": start, "to": end})
    assert r.status_code == 200 and r.content == want
    if len(want) <= WHOLE_BODY_BYTES:
        assert int(r.headers["content-length"]) == len(want)
    else:   # read from the store as a stream (chunked by the server)
        assert "content-length" not in r.headers and days > 1
    # Again, from the answer cache (entries up to 1 MB): one body with its length.
    again = client.simulate_get(f"/timeseries/{SYMBOL}", params={"from": start, "to": end})
    assert again.content == want and int(again.headers["content-length"]) == len(want)


class _Failing(Iterator[bytes]):
    def __init__(self) -> None:
        self.closed = False

    def __next__(self) -> bytes:
        raise StoreUnavailable("gone mid-read")

    def close(self) -> None:
        self.closed = True


def test_a_store_failing_while_the_answer_is_gathered_sends_nothing() -> None:
    rest = _Failing()
    with pytest.raises(StoreUnavailable):
        read_whole(b"{}", rest, WHOLE_BODY_BYTES)
    assert rest.closed
    # Over budget: what was read comes back with the rest, not closed, to stream.
    more = iter([b"x" * 10, b"y"])
    head, tail = read_whole(b"{}", more, 5)
    assert head == [b"{}", b"x" * 10] and tail is more and next(tail) == b"y"


def test_a_service_worker_keeps_the_cycle_collector_off_its_startup_objects(db: Path) -> None:
    """`services.common.quiet_gc` (what `get_app()` ends with, in each gunicorn worker): the
    objects start-up made are frozen out of collections, gen-0 waits for 100,000 allocations."""
    code = ("import gc; from services.timeseries import get_app; get_app(); "
            "print(gc.get_threshold()[0], gc.get_freeze_count() > 1000)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=REPO, env={**os.environ,
                                                    "ACCESSD_STORE": f"sqlite://{db}"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["100000", "True"]
