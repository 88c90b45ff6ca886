"""The time-series service, on a real gunicorn over a SQLite store."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.store import (
    MAX_TS_MS,
    MIN_TS_MS,
    QUOTE_FIELDS,
    Quote,
    StoreUnavailable,
    open_store,
)
from services.timeseries import page_encoder, stream_array
from tests.services.service_fixtures import (
    SYMBOL,
    Service,
    assert_error,
    bring_store_back,
    metric_value,
    seed,
    take_store_away,
)
from tests.support import wait_until

DAYS = 2
POINTS = DAYS * 390


@pytest.fixture(scope="module")
def store_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite://{tmp_path_factory.mktemp('ts') / 'quotes.db'}"
    seed(url, days=DAYS)
    return url


@pytest.fixture(scope="module")
def service(store_url: str) -> Iterator[Service]:
    svc = Service("timeseries", store_url)
    yield svc
    svc.stop()


@pytest.fixture(scope="module")
def expected(store_url: str) -> list[dict]:
    with open_store(store_url) as store:
        return [q.to_json() for q in store.read_range(SYMBOL)]


def test_whole_series_is_streamed_as_one_json_array(service: Service, expected: list[dict]):
    resp = service.get(f"/timeseries/{SYMBOL}")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("application/json")
    # Streamed: no length known up front, chunked transfer encoding.
    assert resp.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in resp.headers
    assert resp.json() == expected
    assert len(expected) == POINTS


@pytest.mark.parametrize("as_iso", [True, False], ids=["iso", "epoch-ms"])
def test_range_bounds_are_inclusive(service: Service, expected: list[dict], as_iso: bool):
    lo, hi = expected[10], expected[49]
    key = "ts" if as_iso else "epochMs"
    resp = service.get(f"/timeseries/{SYMBOL}", params={"from": lo[key], "to": hi[key]})
    assert resp.status_code == 200
    assert resp.json() == expected[10:50]


def test_iso_without_offset_is_utc_and_offsets_are_honoured(service: Service,
                                                             expected: list[dict]):
    first = expected[0]["ts"]            # 2026-01-02T14:30:00.000Z = 09:30 in New York
    assert first == "2026-01-02T14:30:00.000Z"
    a = service.get(f"/timeseries/{SYMBOL}", params={"to": "2026-01-02T14:30:00"}).json()
    b = service.get(f"/timeseries/{SYMBOL}", params={"to": "2026-01-02T09:30:00-05:00"}).json()
    assert a == b == expected[:1]


def test_fields_and_limit(service: Service, expected: list[dict]):
    resp = service.get(f"/timeseries/{SYMBOL}", params={"fields": "close,open", "limit": "5"})
    assert resp.status_code == 200
    docs = resp.json()
    assert [set(d) for d in docs] == [{"symbol", "ts", "epochMs", "close", "open"}] * 5
    assert [d["close"] for d in docs] == [e["close"] for e in expected[:5]]
    assert service.get(f"/timeseries/{SYMBOL}", params={"limit": "0"}).json() == []


def test_empty_range_of_a_known_symbol_is_an_empty_array(service: Service):
    resp = service.get(f"/timeseries/{SYMBOL}", params={"from": "2030-01-01"})
    assert resp.status_code == 200
    assert resp.json() == []


def test_unknown_symbol_is_404(service: Service):
    doc = assert_error(service.get("/timeseries/NOPE"), 404)
    assert "NOPE" in doc["description"]


@pytest.mark.parametrize("params", [
    {"from": "2026-01-03", "to": "2026-01-02"},
    {"from": "yesterday"},
    {"to": "2026-13-01"},
    {"from": "99999999999999999"},
    {"fields": "close,bogus"},
    {"fields": ""},
    {"fields": "open,,close"},
    {"limit": "-1"},
    {"limit": "ten"},
    {"limit": ""},
    {"frm": "2026-01-02"},
], ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items()))
def test_bad_parameters_are_400(service: Service, params: dict):
    doc = assert_error(service.get(f"/timeseries/{SYMBOL}", params=params), 400)
    assert doc["description"]


def test_a_client_leaving_mid_stream_does_not_hurt_the_service(store_url: str,
                                                                  service: Service):
    # A bigger series so the response cannot fit the socket buffers at once.
    seed(store_url, symbol="BIG", days=40)
    with socket.create_connection(("127.0.0.1", service.port), timeout=10) as s:
        s.sendall(b"GET /timeseries/BIG HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(4096).startswith(b"HTTP/1.1 200")
    # The server noticed (broken pipe) and goes on answering.
    resp = service.get("/timeseries/BIG", params={"limit": "3"})
    assert resp.status_code == 200 and len(resp.json()) == 3
    whole = service.get("/timeseries/BIG").json()
    assert len(whole) == 40 * 390


def test_metrics_count_requests_by_route_and_status(service: Service):
    service.get(f"/timeseries/{SYMBOL}", params={"limit": "1"})
    service.get(f"/timeseries/{SYMBOL}", params={"limit": "x"})
    text = service.get("/metrics").text
    assert "# TYPE accessd_http_requests_total counter" in text

    route = {"service": "timeseries", "route": "/timeseries/{symbol}"}
    requests_total = "accessd_http_requests_total"
    assert metric_value(text, requests_total, **route, method="GET", status="200") >= 1
    assert metric_value(text, requests_total, **route, method="GET", status="400") >= 1
    assert metric_value(text, "accessd_http_request_duration_seconds_bucket", **route,
                        le="+Inf") == \
        metric_value(text, "accessd_http_request_duration_seconds_count", **route)


def test_health_and_503_while_the_store_is_away_then_recovery(tmp_path: Path):
    db = tmp_path / "quotes.db"
    url = f"sqlite://{db}"
    seed(url, days=1)
    svc = Service("timeseries", url)
    try:
        assert svc.get("/health").json() == {"status": "ok", "store": "reachable"}
        assert svc.get(f"/timeseries/{SYMBOL}").status_code == 200
        aside = take_store_away(db)
        resp = svc.get(f"/timeseries/{SYMBOL}")
        doc = assert_error(resp, 503)
        assert resp.headers["Retry-After"] == "2"
        assert doc["title"] == "Store unavailable"
        health = svc.get("/health")
        assert health.status_code == 503 and health.headers["Retry-After"] == "2"
        assert health.json()["store"] == "unreachable"
        bring_store_back(aside, db)
        # No restart: the very next requests succeed.
        wait_until(lambda: svc.get("/health").status_code == 200, timeout=10,
                   message="health back to 200")
        assert len(svc.get(f"/timeseries/{SYMBOL}").json()) == 390
    finally:
        svc.stop()


def test_unknown_route_has_the_same_error_shape(service: Service):
    assert_error(service.get("/nothing/here"), 404)


# -- the streaming pieces, in process ------------------------------------------------------------
def _quote(i: int) -> Quote:
    return Quote(SYMBOL, 1_767_364_200_000 + i * 60_000, 100.0 + i, 101.0 + i, 99.5, 100.25, i)


def _row(q: Quote) -> tuple:
    return (q.ts, q.open, q.high, q.low, q.close, q.volume)


def _pages(quotes: list[Quote], size: int) -> Iterator[list[tuple]]:
    rows = [_row(q) for q in quotes]
    return iter([rows[i:i + size] for i in range(0, len(rows), size)])


def test_stream_array_produces_chunks_before_the_source_ends():
    # An endless source: only an incremental producer can yield anything at all.
    endless = ([_row(_quote(i)) for i in range(k * 7, k * 7 + 7)] for k in count())
    chunks = stream_array(endless, page_encoder(SYMBOL, None), chunk=5)
    first = next(chunks)
    assert first.startswith(b"[") and first.count(b'"symbol"') == 5
    second = next(chunks)
    assert second.startswith(b",") and second.count(b'"symbol"') == 2
    chunks.close()


def test_stream_array_closes_its_source_when_closed():
    closed = []

    class Source:
        def __init__(self) -> None:
            self.it = _pages([_quote(i) for i in range(100)], 10)

        def __iter__(self) -> Source:
            return self

        def __next__(self) -> list[tuple]:
            return next(self.it)

        def close(self) -> None:
            closed.append(True)

    chunks = stream_array(Source(), page_encoder(SYMBOL, None), chunk=5)
    next(chunks)
    chunks.close()
    assert closed == [True]


def test_stream_array_never_ends_the_array_when_the_source_fails():
    def failing() -> Iterator[list[tuple]]:
        yield [_row(_quote(0)), _row(_quote(1))]
        yield [_row(_quote(2))]
        raise StoreUnavailable("gone")

    chunks = stream_array(failing(), page_encoder(SYMBOL, None), chunk=1)
    sent = [next(chunks), next(chunks)]
    with pytest.raises(StoreUnavailable):
        next(chunks)
    assert not b"".join(sent).endswith(b"]")


@pytest.mark.parametrize("n,page,chunk", [(0, 3, 3), (1, 3, 3), (3, 3, 3), (7, 3, 3), (7, 5, 2),
                                          (7, 2, 5), (12, 12, 4)])
def test_stream_array_is_valid_json_for_any_length(n: int, page: int, chunk: int):
    quotes = [_quote(i) for i in range(n)]
    body = b"".join(stream_array(_pages(quotes, page), page_encoder(SYMBOL, None), chunk))
    assert json.loads(body) == [q.to_json() for q in quotes]


prices = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e300, max_value=1e300)


@given(st.builds(Quote, symbol=st.text(min_size=1, max_size=8).filter(lambda s: "\x00" not in s),
                 ts=st.integers(MIN_TS_MS, MAX_TS_MS), open=prices, high=prices, low=prices,
                 close=prices, volume=st.integers(0, 2**63 - 1)),
       st.one_of(st.none(), st.lists(st.sampled_from(QUOTE_FIELDS), min_size=1, unique=True)))
def test_the_fast_encoder_agrees_with_to_json(q: Quote, fields: list[str] | None):
    assert json.loads(page_encoder(q.symbol, fields)([_row(q)])) == [q.to_json(fields)]
