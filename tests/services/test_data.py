"""Synthetic data and the CSV loader (`accessd data`)."""

from __future__ import annotations

import subprocess
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from services import data
from services.data import SynthParams, parse_interval, synth_days
from services.store import QuoteStore, iso_ms, open_store
from tests.support import PYTHON, REPO


def quotes_of(params: SynthParams) -> list:
    return [q for day in synth_days(params) for q in day]


def test_synth_is_deterministic_and_prefix_stable():
    a = quotes_of(SynthParams("JPM", date(2026, 1, 2), 3, seed=7))
    assert a == quotes_of(SynthParams("JPM", date(2026, 1, 2), 3, seed=7))
    assert a != quotes_of(SynthParams("JPM", date(2026, 1, 2), 3, seed=8))
    assert quotes_of(SynthParams("JPM", date(2026, 1, 2), 5, seed=7))[:len(a)] == a


def test_synth_bars_follow_market_hours_weekdays_and_dst():
    # 2026-03-06 is a Friday before the US DST change (Sunday 03-08): 09:30 New York is 14:30Z,
    # then 13:30Z on Monday.
    qs = quotes_of(SynthParams("JPM", date(2026, 3, 6), 2))
    assert len(qs) == 2 * 390
    assert iso_ms(qs[0].ts) == "2026-03-06T14:30:00.000Z"
    assert iso_ms(qs[389].ts) == "2026-03-06T20:59:00.000Z"
    assert iso_ms(qs[390].ts) == "2026-03-09T13:30:00.000Z"
    assert all(b.ts - a.ts == 60_000 for a, b in zip(qs[:389], qs[1:390], strict=True))


@pytest.mark.parametrize("random_walk", [False, True])
def test_synth_bars_are_consistent(random_walk: bool):
    qs = quotes_of(SynthParams("JPM", date(2026, 1, 2), 5, interval_ms=5 * 60_000,
                               random_walk=random_walk))
    assert len(qs) == 5 * 78
    for q in qs:
        assert q.low <= min(q.open, q.close) <= max(q.open, q.close) <= q.high
        assert q.volume > 0 and round(q.close, 2) == q.close
    # The pure random walk's bars open at the previous close; trades at the bid or the ask
    # open anywhere in the spread around it.
    same_open = [b.open == a.close for a, b in zip(qs[:77], qs[1:78], strict=True)]
    assert all(same_open) if random_walk else not all(same_open)


def intraday_returns(params: SynthParams) -> tuple[np.ndarray, np.ndarray]:
    """1-minute log returns within sessions (no overnight gap) and each one's minute of the day."""
    qs = quotes_of(params)
    ts = np.array([q.ts for q in qs])
    close = np.log([q.close for q in qs])
    within = np.diff(ts) == params.interval_ms
    minute = (np.arange(len(qs)) % 390)[1:]
    return np.diff(close)[within], minute[within]


def lag1(r: np.ndarray) -> float:
    return float(np.corrcoef(r[:-1], r[1:])[0, 1])


def test_bid_ask_bounce_gives_negative_lag1_autocorrelation():
    # 20 days of 1-minute bars: ~7,800 returns, so the estimate's noise is ~0.011.
    bounce, _ = intraday_returns(SynthParams("JPM", date(2026, 1, 2), 20))
    walk, _ = intraday_returns(SynthParams("JPM", date(2026, 1, 2), 20, random_walk=True))
    assert -0.3 < lag1(bounce) < -0.15
    assert abs(lag1(walk)) < 0.04
    # A wider spread, a stronger bounce.
    wide, _ = intraday_returns(SynthParams("JPM", date(2026, 1, 2), 20, spread_bps=20))
    assert lag1(wide) < lag1(bounce) - 0.1


def test_volatility_is_u_shaped_over_the_day():
    r, minute = intraday_returns(SynthParams("JPM", date(2026, 1, 2), 20, spread_bps=0))
    first, middle, last = (float(np.std(r[(minute >= a) & (minute < b)]))
                           for a, b in ((1, 60), (165, 225), (330, 390)))
    assert first > 1.5 * middle and last > 1.5 * middle
    flat_r, flat_minute = intraday_returns(SynthParams("JPM", date(2026, 1, 2), 20,
                                                       random_walk=True))
    flat_first, flat_middle = (float(np.std(flat_r[(flat_minute >= a) & (flat_minute < b)]))
                               for a, b in ((1, 60), (165, 225)))
    assert 0.8 < flat_first / flat_middle < 1.25


def test_synth_help_documents_the_model_and_the_random_walk_flag():
    done = subprocess.run([PYTHON, "-m", "accessd.cli", "data", "synth", "--help"],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0
    for text in ("bid or the ask", "lag-1 autocorrelation", "U", "--random-walk",
                 "--spread-bps", "--vol-u"):
        assert text in done.stdout


@pytest.mark.parametrize("text,ms", [("1m", 60_000), ("30s", 30_000), ("1h", 3_600_000),
                                     ("1d", 390 * 60_000)])
def test_parse_interval(text: str, ms: int):
    assert parse_interval(text) == ms


@pytest.mark.parametrize("text", ["0m", "1w", "2d", "7h", "m", ""])
def test_parse_interval_rejects(text: str):
    with pytest.raises(ValueError):
        parse_interval(text)


def test_synth_command_through_accessd(tmp_path: Path):
    url = f"sqlite://{tmp_path / 'q.db'}"
    done = subprocess.run([PYTHON, "-m", "accessd.cli", "data", "synth", "--symbol", "JPM",
                           "--start", "2026-01-02", "--days", "3", "--interval", "1m",
                           "--seed", "1", "--store", url],
                          capture_output=True, text=True, cwd=REPO, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "wrote 1170 quotes of JPM" in done.stdout
    assert "synth JPM: day 3/3" in done.stderr     # progress on stderr
    with open_store(url) as store:
        assert sum(1 for _ in store.read_range("JPM")) == 1170


# -- load ------------------------------------------------------------------------------------------
GOOD = """symbol,timestamp,open,high,low,close,volume
JPM,2026-01-02T14:30:00Z,100,101,99.5,100.5,1000
JPM,1767364260000,100.5,101.2,100.1,101,1500
MSFT,2026-01-02T09:30:00-05:00,400,401,399,400.5,300
"""


def write(tmp_path: Path, text: str, name: str = "q.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def rows(store: QuoteStore) -> list:
    return [q for s in store.symbols() for q in store.read_range(s)]


def test_load_good_file_twice_is_idempotent(tmp_path: Path, sqlite_store: QuoteStore,
                                            sqlite_url: str, capsys: pytest.CaptureFixture):
    path = write(tmp_path, GOOD)
    assert data.main(["load", str(path), "--store", sqlite_url]) == 0
    once = rows(sqlite_store)
    assert len(once) == 3
    assert data.main(["load", str(path), "--store", sqlite_url]) == 0
    assert rows(sqlite_store) == once
    jpm = list(sqlite_store.read_range("JPM"))
    assert [q.ts for q in jpm] == [1767364200000, 1767364260000]
    assert sqlite_store.last("MSFT").ts == 1767364200000   # -05:00 honoured
    out = capsys.readouterr()
    assert "loaded 3 quotes (JPM, MSFT)" in out.out
    assert "checking q.csv" in out.err


BAD = """symbol,timestamp,open,high,low,close,volume
JPM,2026-01-02T14:30:00Z,100,101,99.5,100.5,1000
JPM,not-a-time,100,101,99,100,1
JPM,2026-01-02T14:32:00Z,100,99,99.5,100.5,1000
JPM,2026-01-02T14:33:00Z,100,101,99.5,100.5
JPM,2026-01-02T14:34:00Z,100,101,99.5,100.5,-3

JPM,2026-01-02T14:35:00Z,nan,101,99.5,100.5,3
JPM,2026-01-02T14:36:00Z,100,101,99.5,100.5,7
"""


def test_bad_rows_are_reported_with_line_numbers_and_nothing_is_written(
        tmp_path: Path, sqlite_store: QuoteStore, sqlite_url: str,
        capsys: pytest.CaptureFixture):
    path = write(tmp_path, BAD)
    assert data.main(["load", str(path), "--store", sqlite_url]) == 1
    err = capsys.readouterr().err
    for line in (3, 4, 5, 6, 8):
        assert f"{path}:{line}:" in err, err
    assert f"{path}:2:" not in err and f"{path}:9:" not in err
    assert "5 bad rows; nothing written" in err
    assert rows(sqlite_store) == []


def test_skip_bad_writes_the_good_rows(tmp_path: Path, sqlite_store: QuoteStore,
                                       sqlite_url: str, capsys: pytest.CaptureFixture):
    path = write(tmp_path, BAD)
    assert data.main(["load", str(path), "--skip-bad", "--store", sqlite_url]) == 0
    assert [iso_ms(q.ts) for q in rows(sqlite_store)] == ["2026-01-02T14:30:00.000Z",
                                                          "2026-01-02T14:36:00.000Z"]
    assert "skipped 5 bad rows" in capsys.readouterr().out


@pytest.mark.parametrize("text", ["", "sym,timestamp,open,high,low,close,volume\n",
                                  "symbol,timestamp,open,high,low,close\n"])
def test_bad_header(tmp_path: Path, sqlite_url: str, text: str, capsys: pytest.CaptureFixture):
    assert data.main(["load", str(write(tmp_path, text)), "--store", sqlite_url]) == 1
    assert ":1:" in capsys.readouterr().err


def test_columns_in_any_order(tmp_path: Path, sqlite_store: QuoteStore, sqlite_url: str):
    path = write(tmp_path, "volume,close,low,high,open,timestamp,symbol\n"
                           "5,10.5,9,11,10,2026-01-02T14:30:00,X\n")
    assert data.main(["load", str(path), "--store", sqlite_url]) == 0
    q = sqlite_store.last("X")
    assert (q.open, q.high, q.low, q.close, q.volume) == (10.0, 11.0, 9.0, 10.5, 5)


def test_store_unavailable_and_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture):
    path = write(tmp_path, GOOD)
    assert data.main(["load", str(path)]) in (0, 2)   # depends on $ACCESSD_STORE
    assert data.main(["load", str(path), "--store", "nosuch://x"]) == 2
    assert data.main(["synth", "--symbol", "J", "--interval", "9w", "--store",
                      f"sqlite://{tmp_path / 'x.db'}"]) == 2
    # A store whose directory is gone cannot be opened for writing.
    missing = f"sqlite://{tmp_path / 'gone' / 'q.db'}"
    assert data.main(["load", str(path), "--store", missing]) == 3
    assert "store unavailable" in capsys.readouterr().err


# -- a vendor's export: column mapping, time zones, formats ----------------------------------------
VENDOR = """Date,Time,Open,High,Low,Last,Volume,VWAP
2026-03-06,09:30,100,101,99.5,100.5,1000,100.2
2026-03-06,15:59,100.5,101.2,100.1,101,1500,100.8
2026-03-09,09:30,101,101.5,100.5,101.2,700,101.1
"""


def test_vendor_layout_with_mapping_symbol_and_time_zone(tmp_path: Path, sqlite_store: QuoteStore,
                                                         sqlite_url: str,
                                                         capsys: pytest.CaptureFixture):
    path = write(tmp_path, VENDOR)
    assert data.main(["load", str(path), "--symbol", "ACME", "--columns",
                      "timestamp=Date+Time,close=Last", "--tz", "America/New_York",
                      "--store", sqlite_url]) == 0
    got = list(sqlite_store.read_range("ACME"))
    # New York time: EST (-05:00) before the DST change of Sunday 2026-03-08, EDT after.
    assert [iso_ms(q.ts) for q in got] == ["2026-03-06T14:30:00.000Z", "2026-03-06T20:59:00.000Z",
                                          "2026-03-09T13:30:00.000Z"]
    assert [q.close for q in got] == [100.5, 101.0, 101.2]
    assert "loaded 3 quotes (ACME)" in capsys.readouterr().out


def test_vendor_layout_time_format_and_offsets_win_over_tz(tmp_path: Path,
                                                           sqlite_store: QuoteStore,
                                                           sqlite_url: str):
    path = write(tmp_path, "Ticker,When,O,H,L,C,V\n"
                           "ACME,03/06/2026 09:30,100,101,99,100,1\n")
    assert data.main(["load", str(path), "--columns", "symbol=Ticker,timestamp=When",
                      "--columns", "open=O,high=H,low=L,close=C,volume=V",
                      "--time-format", "%m/%d/%Y %H:%M", "--tz", "America/Chicago",
                      "--store", sqlite_url]) == 0
    assert iso_ms(sqlite_store.last("ACME").ts) == "2026-03-06T15:30:00.000Z"
    path = write(tmp_path, "symbol,timestamp,open,high,low,close,volume\n"
                           "ZED,2026-03-06T09:30:00-05:00,100,101,99,100,1\n"
                           "ZED,2026-03-06T10:30:00,100,101,99,100,1\n", "z.csv")
    assert data.main(["load", str(path), "--tz", "Europe/London", "--store", sqlite_url]) == 0
    assert [iso_ms(q.ts) for q in sqlite_store.read_range("ZED")] == [
        "2026-03-06T10:30:00.000Z", "2026-03-06T14:30:00.000Z"]


def test_vendor_layout_errors_say_what_to_do(tmp_path: Path, sqlite_store: QuoteStore,
                                             sqlite_url: str, capsys: pytest.CaptureFixture):
    path = write(tmp_path, VENDOR)
    assert data.main(["load", str(path), "--symbol", "ACME", "--store", sqlite_url]) == 1
    err = capsys.readouterr().err
    assert f"{path}:1:" in err and "no column timestamp, close" in err and "--columns" in err
    assert data.main(["load", str(path), "--columns", "when=Date", "--store", sqlite_url]) == 2
    assert "the fields are symbol, timestamp" in capsys.readouterr().err
    assert data.main(["load", str(path), "--tz", "Mars/Olympus", "--store", sqlite_url]) == 2
    assert "unknown time zone" in capsys.readouterr().err
    # A bad time in a mapped file: reported by line, nothing written.
    write(tmp_path, VENDOR.replace("2026-03-06,15:59", "2026-03-06,3:59 pm"))
    assert data.main(["load", str(path), "--symbol", "ACME", "--columns",
                      "timestamp=Date+Time,close=Last", "--tz", "America/New_York",
                      "--store", sqlite_url]) == 1
    assert f"{path}:3:" in capsys.readouterr().err
    assert rows(sqlite_store) == []


def test_the_shipped_vendor_sample_loads_as_the_readme_shows(tmp_path: Path,
                                                             sqlite_store: QuoteStore,
                                                             sqlite_url: str):
    sample = REPO / "examples" / "data" / "acme-1min.csv"
    assert data.main(["load", str(sample), "--symbol", "ACME", "--columns",
                      "timestamp=Date+Time,close=Last", "--tz", "America/New_York",
                      "--store", sqlite_url]) == 0
    got = list(sqlite_store.read_range("ACME"))
    assert len(got) == 390
    assert (iso_ms(got[0].ts), iso_ms(got[-1].ts)) == ("2026-03-02T14:30:00.000Z",
                                                       "2026-03-02T20:59:00.000Z")


def test_local_times_skipped_or_repeated_at_a_dst_change_are_bad_rows(
        tmp_path: Path, sqlite_store: QuoteStore, sqlite_url: str, capsys: pytest.CaptureFixture):
    # New York: 2026-03-08 02:30 does not exist, 2026-11-01 01:30 happens twice.
    path = write(tmp_path, "Date,Open,High,Low,Close,Volume\n"
                           "2026-03-08 02:30,1,1,1,1,1\n"
                           "2026-11-01 01:30,1,1,1,1,1\n"
                           "2026-11-01 01:30-05:00,1,1,1,1,1\n")
    assert data.main(["load", str(path), "--symbol", "X", "--columns", "timestamp=Date",
                      "--tz", "America/New_York", "--store", sqlite_url]) == 1
    err = capsys.readouterr().err
    assert f"{path}:2:" in err and "does not exist in America/New_York" in err
    assert f"{path}:3:" in err and "happens twice" in err
    assert f"{path}:4:" not in err
    assert rows(sqlite_store) == []
