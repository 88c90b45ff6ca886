"""The comparison client: incremental parsing, and `compare` against real services."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services import client
from services.client import StreamError, compare, iter_json_array, stream_timeseries
from services.model import errors, load_current, publish, train
from services.store import open_store
from tests.services.service_fixtures import SYMBOL, Service, seed

# -- incremental parsing -------------------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                max_size=3),
    max_leaves=8)


@settings(max_examples=200)
@given(st.lists(json_values, max_size=6), st.lists(st.integers(1, 7), min_size=1),
       st.sampled_from(["", " ", "\n  "]))
def test_any_chunking_gives_the_same_elements(items: list, sizes: list[int], ws: str):
    body = json.dumps(items, separators=("," + ws, ":"), ensure_ascii=False).encode()
    chunks, i, k = [], 0, 0
    while i < len(body):           # cut anywhere, even inside UTF-8 sequences
        n = sizes[k % len(sizes)]
        chunks.append(body[i:i + n])
        i, k = i + n, k + 1
    assert list(iter_json_array(chunks)) == items


def test_elements_come_out_before_the_body_ends():
    gate = threading.Event()

    def chunks() -> Iterator[bytes]:
        yield b'[{"a": 1},'
        gate.set()                 # reached only if the consumer asks for more
        yield b'{"a": 2}]'

    it = iter_json_array(chunks())
    assert next(it) == {"a": 1}
    assert not gate.is_set()
    assert list(it) == [{"a": 2}]


@pytest.mark.parametrize("body", [b"", b"{}", b"[1,", b"[1", b'[{"a":', b"[1 2]", b"[1]]",
                                  b"[\xff]", b"[1,]"])
def test_malformed_or_truncated_bodies(body: bytes):
    with pytest.raises(StreamError):
        list(iter_json_array([body[:3], body[3:]]))


# -- plotting ------------------------------------------------------------------------------------
def test_break_at_gaps_inserts_nan_between_sessions():
    minute, night = 60_000, 17 * 3_600_000
    ts = np.array([0, 1, 2, 3, 3 + night // minute, 4 + night // minute]) * minute
    actual = np.arange(6.0)
    t, a, e = client.break_at_gaps(ts, actual, -actual)
    assert len(t) == len(a) == len(e) == 7
    assert np.isnan(a[4]) and np.isnan(e[4]) and not np.isnan(np.delete(a, 4)).any()
    assert t[3] < t[4] < t[5] and list(np.delete(a, 4)) == list(actual)
    # regular spacing (or too few points): nothing inserted
    assert len(client.break_at_gaps(ts[:4], actual[:4])[0]) == 4
    assert len(client.break_at_gaps(ts[:2], actual[:2])[1]) == 2


# -- against the services ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Service, Service, Path]]:
    tmp = tmp_path_factory.mktemp("client")
    url = f"sqlite://{tmp / 'quotes.db'}"
    seed(url, days=3)
    with open_store(url) as store:
        quotes = list(store.read_range(SYMBOL))
    closes = np.array([q.close for q in quotes])
    model, metrics = train(SYMBOL, closes, window=10, ts=np.array([q.ts for q in quotes]))
    publish(tmp / "models", model, metrics)
    ts = Service("timeseries", url)
    pr = Service("prediction", url, tmp / "models")
    yield ts, pr, tmp
    ts.stop()
    pr.stop()


def test_stream_timeseries_reads_the_whole_range(services):
    ts, _, tmp = services
    got = list(stream_timeseries(ts.url, SYMBOL, chunk_size=1000))
    with open_store(f"sqlite://{tmp / 'quotes.db'}") as store:
        assert got == [q.to_json() for q in store.read_range(SYMBOL)]
    with pytest.raises(client.ServiceError) as err:
        list(stream_timeseries(ts.url, "NOPE"))
    assert err.value.status == 404


def test_compare_matches_local_predictions_and_plots(services, tmp_path: Path):
    ts, pr, tmp = services
    start, end = "2026-01-05T14:30:00Z", "2026-01-05T20:59:00Z"   # the second day
    result = compare(ts.url, pr.url, SYMBOL, client.parse_time(start), client.parse_time(end),
                     batch=64)
    assert result.quotes_read == 390
    assert len(result.actual) == 390 - 11      # the first 11 quotes only fill the window
    model = load_current(tmp / "models", SYMBOL)
    with open_store(f"sqlite://{tmp / 'quotes.db'}") as store:
        closes = np.array([q.close for q in store.read_range(
            SYMBOL, client.parse_time(start), client.parse_time(end))])
    rows = np.lib.stride_tricks.sliding_window_view(closes[:-1], 11)
    assert result.predicted == pytest.approx(model.predict_many(rows))
    assert result.actual == pytest.approx(closes[11:])
    assert result.metrics["model"] == pytest.approx(errors(closes[11:], model.predict_many(rows)))
    assert result.versions == ["v1"]
    out = client.plot(result, tmp_path / "plot.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_command(services, tmp_path: Path, capsys: pytest.CaptureFixture):
    ts, pr, _ = services
    out = tmp_path / "cmp.png"
    code = client.main(["compare", "--symbol", SYMBOL, "--timeseries", ts.url, "--predict",
                        pr.url, "--from", "2026-01-06", "--out", str(out)])
    assert code == 0
    text = capsys.readouterr().out
    assert "379 predictions from 390 quotes" in text
    assert "model  MAE" in text and "naive  MAE" in text
    # 3 days, 1,170 closes: the last 231 of the 1,159 samples are held out (from close 939 on,
    # in the third day), and reported on their own.
    assert "held out: 231 predictions from 2026-01-06T" in text
    assert text.count("model/naive  MAE") == 2
    assert out.read_bytes()[:4] == b"\x89PNG"
    assert client.main(["compare", "--symbol", "NOPE", "--timeseries", ts.url, "--predict",
                        pr.url, "--out", str(out)]) == 1
    assert client.main(["compare", "--symbol", SYMBOL, "--timeseries", ts.url, "--predict",
                        pr.url, "--from", "2030-01-01", "--out", str(out)]) == 1
