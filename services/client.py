"""Compare the prediction service with actual quotes, as a library and as a command.

    accessd client compare --symbol JPM --timeseries URL|APP --predict URL|APP [--from T]
                           [--to T] [--batch 1000] [--api URL] --out plot.png

A service is named by its base URL or by its app id (`/jpm/timeseries`), which is looked up
through the control API (`--api`, env `ACCESSD_API`): the address of one of its healthy tasks.

The time series is read from the time-series service *as it streams*: `iter_json_array` parses
the JSON array incrementally from `requests`' `iter_content` chunks, so each quote is handled as
soon as its bytes arrive and memory does not hold the response body. For each quote that has
`window + 1` preceding closes within the range, the preceding closes go to the prediction service
(`POST /predict` in its batch form, `batch` inputs per request) and the answer is set against the
actual close. The first `window + 1` quotes of the range only fill the window.

Reports MAE, RMSE and MAPE of the predictions and of the naive last-close baseline, how they
compare (ratios; the paired difference of absolute errors with its standard error), the same for
the held-out part alone when the model names its first held-out quote, and writes a
PNG (matplotlib, Agg backend): actual vs predicted above, the error below, the lines broken at
gaps in time (nights, weekends: more than 3x the median spacing between quotes).
"""

from __future__ import annotations

import argparse
import codecs
import json
import os
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests

from services.common import parse_time
from services.model import errors, versus, versus_line
from services.store import iso_ms

CHUNK_BYTES = 64 * 1024
MAX_ITEM_CHARS = 16 * 1024 * 1024      # one array element larger than this is not a quote
_WS = " \t\n\r"
_NUMBER_CHARS = frozenset("0123456789.eE+-")


class StreamError(Exception):
    """The response body is not (or not all of) a JSON array: malformed or truncated."""


class ServiceError(Exception):
    """A service answered with an error status; `status`, `title`, `description` say which."""

    def __init__(self, url: str, status: int, title: str, description: str) -> None:
        super().__init__(f"{url}: {status} {title}: {description}")
        self.status, self.title, self.description = status, title, description


# -- incremental JSON array parsing --------------------------------------------------------------
def iter_json_array(chunks: Iterable[bytes], max_item: int = MAX_ITEM_CHARS) -> Iterator[Any]:
    """Each element of the JSON array spread over the byte `chunks`, as soon as it is complete.

    Chunks may split anywhere, even inside a UTF-8 sequence. An element is taken as complete
    only when a character follows it that cannot continue it (`12` at the end of a chunk might be
    the start of `123`, `3.` of `3.5`), or at the end of the input. `StreamError` for a malformed or truncated array.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    source = iter(chunks)
    buf, pos, eof = "", 0, False

    def more() -> None:
        nonlocal buf, pos, eof
        for chunk in source:
            text = utf8.decode(chunk)
            if text:
                buf, pos = buf[pos:] + text, 0
                return
        try:
            tail = utf8.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise StreamError(f"invalid UTF-8 at the end of the stream: {exc}") from None
        buf, pos, eof = buf[pos:] + tail, 0, True

    def next_char() -> str:
        """The next non-blank character (not consumed), '' at the end of the input."""
        nonlocal pos
        while True:
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            if pos < len(buf):
                return buf[pos]
            if eof:
                return ""
            more()

    try:
        if next_char() != "[":
            raise StreamError("the body does not start with a JSON array")
        pos += 1
        if next_char() == "]":
            pos += 1
        else:
            while True:
                if not next_char():
                    raise StreamError("truncated: the array ends before its next element")
                try:
                    item, end = decoder.raw_decode(buf, pos)
                except json.JSONDecodeError as exc:
                    if eof:
                        raise StreamError(f"malformed or truncated element: {exc}") from None
                    if len(buf) - pos > max_item:
                        raise StreamError(f"an element is longer than {max_item} chars") from None
                    more()
                    continue
                if not eof and (end == len(buf) or (
                        buf[end] in _NUMBER_CHARS and isinstance(item, int | float))):
                    # Only complete once a delimiter follows: "12" may go on as "123", "3." as "3.5".
                    more()
                    continue
                pos = end
                yield item
                sep = next_char()
                pos += 1
                if sep == "]":
                    break
                if sep != ",":
                    raise StreamError("truncated: the array is not closed" if not sep
                                      else f"expected ',' or ']', got {sep!r}")
        if next_char():
            raise StreamError("unexpected data after the array")
    except UnicodeDecodeError as exc:
        raise StreamError(f"invalid UTF-8: {exc}") from None


# -- the services ------------------------------------------------------------------------------
def _raise_for(resp: requests.Response) -> None:
    if resp.status_code < 400:
        return
    try:
        doc = resp.json()
        title, description = str(doc.get("title", "")), str(doc.get("description", ""))
    except ValueError:
        title, description = resp.reason or "", resp.text[:200]
    raise ServiceError(resp.url, resp.status_code, title, description)


def stream_timeseries(base_url: str, symbol: str, start: int | None = None,
                      end: int | None = None, *, fields: Iterable[str] | None = None,
                      session: requests.Session | None = None, timeout: float = 30.0,
                      chunk_size: int = CHUNK_BYTES) -> Iterator[dict]:
    """The quotes of `symbol` from the time-series service at `base_url`, while they stream.

    `ServiceError` for an error status, `StreamError` if the body breaks off or is malformed.
    """
    params: dict[str, str] = {}
    if start is not None:
        params["from"] = str(start)
    if end is not None:
        params["to"] = str(end)
    if fields is not None:
        params["fields"] = ",".join(fields)
    http = session or requests.Session()
    url = f"{base_url.rstrip('/')}/timeseries/{requests.utils.quote(symbol, safe='')}"
    with http.get(url, params=params, stream=True, timeout=timeout) as resp:
        _raise_for(resp)
        try:
            yield from iter_json_array(resp.iter_content(chunk_size))
        except (requests.exceptions.ChunkedEncodingError,
                requests.exceptions.ConnectionError) as exc:
            raise StreamError(f"the time series stream broke off: {exc}") from None


def model_info(predict_url: str, symbol: str, session: requests.Session | None = None,
               timeout: float = 10.0) -> dict:
    """`GET /models/{symbol}` of the prediction service."""
    http = session or requests.Session()
    resp = http.get(f"{predict_url.rstrip('/')}/models/{requests.utils.quote(symbol, safe='')}",
                    timeout=timeout)
    _raise_for(resp)
    return resp.json()


def predict_batch(predict_url: str, symbol: str, inputs: list[dict],
                  session: requests.Session | None = None,
                  timeout: float = 30.0) -> tuple[str, list[float]]:
    """(model version, predictions) for `inputs` (`[{"closes": [...], "ts": ...}, ...]`)."""
    http = session or requests.Session()
    resp = http.post(f"{predict_url.rstrip('/')}/predict", json={"symbol": symbol, "inputs": inputs},
                     timeout=timeout)
    _raise_for(resp)
    doc = resp.json()
    return doc["modelVersion"], [float(p["prediction"]) for p in doc["predictions"]]


# -- comparison --------------------------------------------------------------------------------
@dataclass
class Comparison:
    """Predictions set against actual closes; arrays are aligned, in time order."""

    symbol: str
    versions: list[str]
    ts: np.ndarray                 # epoch ms of the predicted quote
    actual: np.ndarray
    predicted: np.ndarray
    naive: np.ndarray              # the preceding close (the naive baseline)
    quotes_read: int = 0
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    # The part of the range from the model's first held-out quote on, if the model names it.
    held_out_from: int | None = None
    held_out: dict = field(default_factory=dict)


def compare(timeseries_url: str, predict_url: str, symbol: str, start: int | None = None,
            end: int | None = None, *, batch: int = 1000,
            session: requests.Session | None = None) -> Comparison:
    """Stream the quotes, predict each from its preceding window, and measure the errors.

    `ValueError` if the range leaves nothing to predict.
    """
    if batch < 1:
        raise ValueError("batch must be >= 1")
    http = session or requests.Session()
    info = model_info(predict_url, symbol, http)
    need = int(info["inputsNeeded"])
    held_out_from = (info.get("data") or {}).get("testFromMs")
    window: deque[float] = deque(maxlen=need)
    ts: list[int] = []
    actual: list[float] = []
    predicted: list[float] = []
    naive: list[float] = []
    versions: list[str] = []
    pending: list[dict] = []
    read = 0

    def flush() -> None:
        if not pending:
            return
        version, preds = predict_batch(predict_url, symbol, pending, http)
        if version not in versions:
            versions.append(version)   # a new model version may be published meanwhile
        predicted.extend(preds)
        pending.clear()

    for quote in stream_timeseries(timeseries_url, symbol, start, end, fields=("close",),
                                   session=http):
        read += 1
        close = float(quote["close"])
        if len(window) == need:
            pending.append({"closes": list(window), "ts": quote["epochMs"]})
            ts.append(int(quote["epochMs"]))
            actual.append(close)
            naive.append(window[-1])
            if len(pending) >= batch:
                flush()
        window.append(close)
    flush()
    if not actual:
        raise ValueError(f"{read} quotes of {symbol} in the range: nothing to predict "
                         f"(each prediction needs {need} preceding quotes)")
    result = Comparison(symbol, versions, np.array(ts, dtype=np.int64), np.array(actual),
                        np.array(predicted), np.array(naive), quotes_read=read)
    result.metrics = {"model": errors(result.actual, result.predicted),
                      "naive": errors(result.actual, result.naive),
                      "versus": versus(result.actual, result.predicted, result.naive)}
    if isinstance(held_out_from, int):
        # The quotes the model's training never saw: the honest figures.
        tail = result.ts >= held_out_from
        if tail.any():
            result.held_out_from = held_out_from
            a, p, nv = result.actual[tail], result.predicted[tail], result.naive[tail]
            result.held_out = {"count": int(tail.sum()), "model": errors(a, p),
                               "naive": errors(a, nv), "versus": versus(a, p, nv)}
    return result


GAP_FACTOR = 3.0   # a spacing this many times the median one is a gap (night, weekend, halt)


def break_at_gaps(ts: np.ndarray, *series: np.ndarray,
                  factor: float = GAP_FACTOR) -> tuple[np.ndarray, ...]:
    """`ts` (epoch ms, ascending) and each of `series` with a NaN point inserted wherever
    consecutive times are more than `factor` times the median spacing apart, so that a line
    plot stops at the gap instead of drawing a straight segment across it. The inserted time is
    the middle of the gap. Returned as float arrays: `(ts, *series)`."""
    t = np.asarray(ts, dtype=np.float64)
    columns = [np.asarray(y, dtype=np.float64) for y in series]
    if len(t) < 3:
        return (t, *columns)
    spacing = np.diff(t)
    median = float(np.median(spacing))
    if median <= 0:
        return (t, *columns)
    gaps = np.flatnonzero(spacing > factor * median) + 1   # index of the point after each gap
    middle = (t[gaps - 1] + t[gaps]) / 2
    return (np.insert(t, gaps, middle), *(np.insert(y, gaps, np.nan) for y in columns))


def plot(result: Comparison, out: Path) -> Path:
    """Write a PNG of actual vs predicted (top) and the prediction error (bottom); the lines
    stop at gaps in time (nights, weekends) instead of joining them with long segments."""
    import matplotlib

    matplotlib.use("Agg")   # no display: a file is all we want
    import matplotlib.pyplot as plt

    ts, actual, predicted, error = break_at_gaps(result.ts, result.actual, result.predicted,
                                                 result.predicted - result.actual)
    when = [datetime.fromtimestamp(t / 1000, UTC) for t in ts]
    fig, (top, bottom) = plt.subplots(2, 1, sharex=True, figsize=(11, 6),
                                      gridspec_kw={"height_ratios": [3, 1]})
    try:
        top.plot(when, actual, label="actual close", linewidth=0.8)
        top.plot(when, predicted, label="predicted", linewidth=0.8, alpha=0.8)
        m, nv = result.metrics["model"], result.metrics["naive"]
        title = (f"{result.symbol}, model {', '.join(result.versions)}: "
                 f"MAE {m['mae']:.4f} (naive {nv['mae']:.4f})")
        if result.held_out_from is not None:
            hm, hn = result.held_out["model"], result.held_out["naive"]
            title += f"; held out: MAE {hm['mae']:.4f} (naive {hn['mae']:.4f})"
            start = datetime.fromtimestamp(result.held_out_from / 1000, UTC)
            for ax in (top, bottom):
                ax.axvline(start, color="grey", linestyle="--", linewidth=0.8)
            top.annotate("held out →", (start, 1), xycoords=("data", "axes fraction"),
                         xytext=(4, -14), textcoords="offset points", color="grey")
        top.set_title(title)
        top.set_ylabel("price")
        top.legend(loc="upper left")
        bottom.plot(when, error, linewidth=0.6, color="tab:red")
        bottom.axhline(0, color="black", linewidth=0.5)
        bottom.set_ylabel("predicted - actual")
        fig.autofmt_xdate()
        fig.tight_layout()
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, format="png", dpi=100)
    finally:
        plt.close(fig)
    return out


# -- service addresses -----------------------------------------------------------------------------
DEFAULT_API = "http://127.0.0.1:8080"


def service_url(target: str, api: str, token: str | None = None,
                session: requests.Session | None = None, timeout: float = 10.0) -> str:
    """`target` as a base URL: a URL is kept; an app id (`/jpm/timeseries`) becomes its stable
    address through the load balancer (`accessd lb`: `http://$ACCESSD_LB_HOST:<servicePort>`,
    127.0.0.1 by default) when the app is balanced and that address answers, else the address
    of one of its healthy tasks (first port), asked of the control API at `api` — the ports
    Mesos gives change from run to run, the app id does not. `ValueError` if it has none."""
    if not target.startswith("/"):
        return target
    http = session or requests.Session()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    url = f"{api.rstrip('/')}/v2/apps{target}"
    resp = http.get(url, params={"embed": "app.tasks"}, headers=headers, timeout=timeout)
    _raise_for(resp)
    app = resp.json().get("app") or {}
    stable = _balanced_url(app, http, timeout)
    if stable:
        return stable
    checked = bool(app.get("healthChecks"))
    for task in sorted(app.get("tasks") or [], key=lambda t: t.get("id", "")):
        healthy = all(r.get("alive") for r in task.get("healthCheckResults") or [])
        if task.get("state", "TASK_RUNNING") != "TASK_RUNNING" or not task.get("ports") or (
                checked and not (task.get("healthCheckResults") and healthy)):
            continue
        ip = (task.get("ipAddresses") or [{}])[0].get("ipAddress") or task.get("host")
        return f"http://{ip}:{task['ports'][0]}"
    raise ValueError(f"app {target} has no healthy task with a port (asked {api})")


def _balanced_url(app: dict, http: requests.Session, timeout: float) -> str | None:
    """The app's service-port URL on the balancer, if it is balanced and answers `/health`."""
    ports = [int(p.get("port") or 0) for p in app.get("portDefinitions") or []]
    if not (app.get("labels") or {}).get("HAPROXY_GROUP") or not ports or ports[0] <= 0:
        return None
    url = f"http://{os.environ.get('ACCESSD_LB_HOST', '127.0.0.1')}:{ports[0]}"
    try:
        if http.get(f"{url}/health", timeout=min(timeout, 2.0)).status_code == 200:
            return url
    except requests.RequestException:
        pass
    return None


# -- command line ----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accessd client", description="Use the access services.")
    sub = p.add_subparsers(dest="command", required=True)
    c = sub.add_parser("compare", help="predictions vs actual closes, with a plot")
    c.add_argument("--symbol", required=True)
    c.add_argument("--timeseries", required=True,
                   help="time-series service: base URL, or app id (/jpm/timeseries) looked up "
                        "through the control API")
    c.add_argument("--predict", required=True,
                   help="prediction service: base URL, or app id (/jpm/prediction)")
    c.add_argument("--api", default=os.environ.get("ACCESSD_API") or DEFAULT_API,
                   help="control API for app ids (env ACCESSD_API; default %(default)s)")
    c.add_argument("--token", default=os.environ.get("ACCESSD_API_TOKEN"),
                   help="control API token (env ACCESSD_API_TOKEN)")
    c.add_argument("--from", dest="start", help="first quote (ISO 8601 or epoch ms)")
    c.add_argument("--to", dest="end", help="last quote (ISO 8601 or epoch ms)")
    c.add_argument("--batch", type=int, default=1000, help="inputs per POST /predict")
    c.add_argument("--out", type=Path, required=True, help="PNG file to write")
    return p


def _print_metrics(metrics: dict) -> None:
    for name in ("model", "naive"):
        m = metrics[name]
        print(f"    {name:<6} MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  MAPE {m['mape']:.4f}%")
    print(f"    {versus_line(metrics['versus'])}")


def main(argv: list[str]) -> int:
    """`accessd client compare ...`: 0 done, 1 a service failed, 2 usage."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return 2 if exc.code else 0
    try:
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
    except ValueError as exc:
        print(f"accessd client: {exc}", file=sys.stderr)
        return 2
    try:
        timeseries = service_url(args.timeseries, args.api, args.token)
        predict = service_url(args.predict, args.api, args.token)
        result = compare(timeseries, predict, args.symbol, start, end, batch=args.batch)
    except (ServiceError, StreamError, ValueError, requests.RequestException) as exc:
        print(f"accessd client: {exc}", file=sys.stderr)
        return 1
    plot(result, args.out)
    print(f"{args.symbol}: {len(result.actual)} predictions from {result.quotes_read} quotes "
          f"({iso_ms(int(result.ts[0]))} .. {iso_ms(int(result.ts[-1]))}), model "
          f"{', '.join(result.versions)}")
    print("  all predictions (the model was trained on the part before its held-out quotes):")
    _print_metrics(result.metrics)
    if result.held_out_from is not None:
        print(f"  held out: {result.held_out['count']} predictions from "
              f"{iso_ms(result.held_out_from)} on, quotes the model's training never saw:")
        _print_metrics(result.held_out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
