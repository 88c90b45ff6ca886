"""The next-close model: train, evaluate, publish versioned artefacts, load the current one.

    accessd model train --symbol JPM --store URL --models-dir DIR [--window 10]
                        [--from T] [--to T] [--test-fraction 0.2]

Model: ridge regression of the next log return on the last `window` log returns (features
standardised, intercept unpenalised, the penalty chosen on a time-ordered validation slice of
the training data). The prediction for the next close is `last_close * exp(predicted_return)`,
so it needs `window + 1` closes. Working in returns keeps the model independent of the price
level. What it can learn is linear structure in returns, such as the bid-ask bounce of trade
prices (a close at the ask tends to be followed by one nearer the bid: a negative lag-1
autocorrelation; `accessd data synth` makes quotes with it). On a pure random walk it can do no
better than the naive "next close = last close" baseline, and the metrics say so honestly.

Evaluation: the series is split in time order (the last `test_fraction` is held out and never
seen while fitting); MAE, RMSE and MAPE of the predicted close against the actual close are
reported for the model and for the naive baseline, with the paired difference of their
absolute errors and its standard error (`versus`), so "better" and "within noise" are read off.
The model's data names the first held-out quote (`testFrom`), and `accessd client compare`
reports that part on its own.

Artefacts, under `DIR/<SYMBOL>/`:
- `v<N>/model.json` (everything `Model.from_json` needs) and `v<N>/metrics.json`; a version
  directory is written under a temporary name and renamed into place, so it is complete or absent;
- `current`: a small text file naming the current version (`v3`), replaced atomically (write a
  temporary file, fsync, rename), so a reader sees the old or the new version, never a mix.

`ModelRegistry` is the reading side used by the prediction service: it re-reads `current` when the
pointer file changes (inode/mtime/size, checked on each call or every `check_interval` seconds),
so a newly published version is served without a restart.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from services.common import parse_time
from services.store import StoreUnavailable, iso_ms, open_store

FORMAT = 1
KIND = "ridge-log-returns"
ALPHAS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)     # penalty per sample, searched on validation
MIN_TRAIN_SAMPLES = 50
NEGLIGIBLE = 0.005    # an MAE ratio within this of 1 is "equal to naive", whatever the noise
_SYMBOL_DIR_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_VERSION_RE = re.compile(r"v(\d+)")

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3


class ModelError(ValueError):
    """A model artefact that cannot be used, or inputs a model cannot predict from."""


class BadSymbol(ModelError):
    """A symbol that cannot name a model directory (so it has no model)."""


# -- the model -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Model:
    """A fitted ridge model on log returns (see the module docstring)."""

    symbol: str
    version: str
    window: int
    alpha: float
    coef: tuple[float, ...]
    intercept: float
    feature_mean: tuple[float, ...]
    feature_std: tuple[float, ...]
    trained_at: str = ""
    data: dict | None = None

    @property
    def inputs_needed(self) -> int:
        """Closes needed for one prediction (the window of returns needs one more close)."""
        return self.window + 1

    def predict_returns(self, returns: np.ndarray) -> np.ndarray:
        """Predicted next log return for each row of `returns` (shape `(n, window)`)."""
        z = (returns - np.asarray(self.feature_mean)) / np.asarray(self.feature_std)
        return z @ np.asarray(self.coef) + self.intercept

    def predict_many(self, closes: np.ndarray) -> np.ndarray:
        """Next close for each row of `closes` (shape `(n, window + 1)`, positive, finite)."""
        closes = np.asarray(closes, dtype=float)
        if closes.ndim != 2 or closes.shape[1] != self.inputs_needed:
            raise ModelError(f"expected rows of {self.inputs_needed} closes")
        if not np.all(np.isfinite(closes)) or np.any(closes <= 0):
            raise ModelError("closes must be finite numbers > 0")
        returns = np.diff(np.log(closes), axis=1)
        return closes[:, -1] * np.exp(self.predict_returns(returns))

    def predict(self, closes: Sequence[float]) -> float:
        """Next close after `closes` (its last `window + 1` values are used)."""
        if len(closes) < self.inputs_needed:
            raise ModelError(f"need at least {self.inputs_needed} closes, got {len(closes)}")
        row = np.asarray(closes[-self.inputs_needed:], dtype=float)[None, :]
        return float(self.predict_many(row)[0])

    def to_json(self) -> dict:
        return {"format": FORMAT, "kind": KIND, "symbol": self.symbol, "version": self.version,
                "window": self.window, "alpha": self.alpha, "coef": list(self.coef),
                "intercept": self.intercept, "featureMean": list(self.feature_mean),
                "featureStd": list(self.feature_std), "trainedAt": self.trained_at,
                "data": self.data or {}}

    @classmethod
    def from_json(cls, doc: object) -> Model:
        """The model in `doc`, or `ModelError` naming what is wrong with it."""
        try:
            if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("kind") != KIND:
                raise ModelError(f"not a {KIND} model of format {FORMAT}")
            window = int(doc["window"])
            vecs = [tuple(float(x) for x in doc[k]) for k in ("coef", "featureMean", "featureStd")]
            if window < 1 or any(len(v) != window for v in vecs):
                raise ModelError("window and vector lengths disagree")
            numbers = [*vecs[0], *vecs[1], *vecs[2], float(doc["intercept"]), float(doc["alpha"])]
            if not all(math.isfinite(x) for x in numbers) or min(vecs[2]) <= 0:
                raise ModelError("non-finite parameters or non-positive scales")
            return cls(symbol=str(doc["symbol"]), version=str(doc["version"]), window=window,
                       alpha=float(doc["alpha"]), coef=vecs[0], intercept=float(doc["intercept"]),
                       feature_mean=vecs[1], feature_std=vecs[2],
                       trained_at=str(doc.get("trainedAt", "")), data=doc.get("data") or {})
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ModelError):
                raise
            raise ModelError(f"bad model document: {exc!r}") from None


# -- training --------------------------------------------------------------------------------------
def windows(closes: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Training pairs: rows of `window + 1` closes and the close that followed each row."""
    closes = np.asarray(closes, dtype=float)
    rows = sliding_window_view(closes[:-1], window + 1)
    return rows, closes[window + 1:]


def fit_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float, np.ndarray,
                                                                  np.ndarray]:
    """(coef, intercept, mean, std) of ridge on standardised `x`; `alpha` is per sample."""
    mean = x.mean(axis=0)
    std = x.std(axis=0)
    std = np.where(std > 0, std, 1.0)    # a constant feature carries nothing; avoid 0/0
    z = (x - mean) / std
    y_mean = float(y.mean())
    gram = z.T @ z + alpha * len(z) * np.eye(z.shape[1])
    coef = np.linalg.solve(gram, z.T @ (y - y_mean))
    return coef, y_mean, mean, std


def errors(actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """MAE, RMSE and MAPE (%) of `predicted` against `actual`."""
    actual = np.asarray(actual, dtype=float)
    err = np.asarray(predicted, dtype=float) - actual
    return {"mae": float(np.mean(np.abs(err))), "rmse": float(np.sqrt(np.mean(err**2))),
            "mape": float(np.mean(np.abs(err) / np.abs(actual)) * 100)}


def split(n_closes: int, window: int, test_fraction: float) -> tuple[int, int]:
    """(training samples, held-out samples) of `n_closes` closes: sample `i` predicts close
    `i + window + 1` from closes `i .. i + window`; the first ones train, the last
    `test_fraction` are held out. The last training sample reads up to close
    `n_train + window`, so no held-out close (from `n_train + window + 1` on) reaches training."""
    n = max(n_closes - window - 1, 0)
    n_test = int(n * test_fraction)
    return n - n_test, n_test


def versus(actual: np.ndarray, predicted: np.ndarray, baseline: np.ndarray) -> dict[str, float]:
    """How `predicted` compares with `baseline` on the same `actual` values: the ratios of
    their MAE and RMSE, and the mean paired difference of absolute errors with its standard
    error (`maeDiff`, `maeDiffSe`): a difference within about two standard errors is noise."""
    actual = np.asarray(actual, dtype=float)
    a = np.abs(np.asarray(predicted, dtype=float) - actual)
    b = np.abs(np.asarray(baseline, dtype=float) - actual)
    d = a - b
    se = float(d.std(ddof=1) / math.sqrt(len(d))) if len(d) > 1 else math.inf
    rmse_a, rmse_b = math.sqrt(float(np.mean(a**2))), math.sqrt(float(np.mean(b**2)))
    return {"maeRatio": float(a.mean() / b.mean()) if b.mean() > 0 else math.nan,
            "rmseRatio": rmse_a / rmse_b if rmse_b > 0 else math.nan,
            "maeDiff": float(d.mean()), "maeDiffSe": se}


def train(symbol: str, closes: np.ndarray, window: int = 10, test_fraction: float = 0.2,
          version: str = "v0", data: dict | None = None,
          now: datetime | None = None, ts: np.ndarray | None = None) -> tuple[Model, dict]:
    """Fit on the first `1 - test_fraction` of `closes` (time order), evaluate on the rest.

    Returns the model (fitted on the training part only, so the test metrics are honest) and its
    metrics document. With `ts` (epoch ms of each close) the model's data names the first
    held-out quote (`testFromMs`, `testFrom`), so a client can score the held-out part alone.
    `ModelError` when there is too little data.
    """
    if window < 1:
        raise ModelError("window must be >= 1")
    if not 0 < test_fraction < 1:
        raise ModelError("test fraction must be between 0 and 1")
    closes = np.asarray(closes, dtype=float)
    if closes.size and (not np.all(np.isfinite(closes)) or np.any(closes <= 0)):
        raise ModelError("closes must be finite numbers > 0")
    if ts is not None and len(ts) != len(closes):
        raise ModelError(f"{len(ts)} timestamps for {len(closes)} closes")
    rows, targets = windows(closes, window) if len(closes) > window + 1 else (None, None)
    n_train, n_test = split(len(closes), window, test_fraction)
    if n_train < MIN_TRAIN_SAMPLES or n_test < 1:
        raise ModelError(f"too little data: {len(closes)} closes give {n_train} training and "
                         f"{n_test} test samples for window {window} (need >= "
                         f"{MIN_TRAIN_SAMPLES} and >= 1)")
    returns = np.diff(np.log(rows), axis=1)
    next_returns = np.log(targets / rows[:, -1])
    x_train, y_train = returns[:n_train], next_returns[:n_train]
    # Choose alpha on the last fifth of the training part (still time-ordered), then refit.
    n_fit = max(int(n_train * 0.8), MIN_TRAIN_SAMPLES // 2)
    best_alpha, best_mse = ALPHAS[-1], math.inf
    if n_train - n_fit >= 1:
        for alpha in ALPHAS:
            coef, b, mean, std = fit_ridge(x_train[:n_fit], y_train[:n_fit], alpha)
            pred = ((x_train[n_fit:] - mean) / std) @ coef + b
            mse = float(np.mean((pred - y_train[n_fit:]) ** 2))
            if mse < best_mse:
                best_alpha, best_mse = alpha, mse
    coef, b, mean, std = fit_ridge(x_train, y_train, best_alpha)
    trained_at = (now or datetime.now(UTC)).isoformat(timespec="seconds")
    held_out: dict = {}
    if ts is not None:
        first = int(np.asarray(ts)[n_train + window + 1])
        held_out = {"testFromMs": first, "testFrom": iso_ms(first)}
    model = Model(symbol=symbol, version=version, window=window, alpha=best_alpha,
                  coef=tuple(map(float, coef)), intercept=b, feature_mean=tuple(map(float, mean)),
                  feature_std=tuple(map(float, std)), trained_at=trained_at,
                  data={**(data or {}), "closes": int(len(closes)), "trainSamples": n_train,
                        "testSamples": n_test, **held_out})
    test_rows, actual = rows[n_train:], targets[n_train:]
    metrics = {"symbol": symbol, "version": version, "testSamples": n_test, **held_out,
               "model": errors(actual, model.predict_many(test_rows)),
               "naive": errors(actual, test_rows[:, -1])}
    metrics["versusNaive"] = versus(actual, model.predict_many(test_rows), test_rows[:, -1])
    return model, metrics


def versus_line(v: dict[str, float]) -> str:
    """One line for a `versus` result, with a verdict a reader need not work out."""
    diff, se = v["maeDiff"], v["maeDiffSe"]
    # Better or worse only when the difference is both beyond noise and big enough to matter:
    # a ridge that shrinks to ~0 on a random walk tracks naive so closely that a 0.01 %
    # difference is "significant" yet means nothing.
    if diff < -2 * se and v["maeRatio"] < 1 - NEGLIGIBLE:
        verdict = "better than naive"
    elif diff > 2 * se and v["maeRatio"] > 1 + NEGLIGIBLE:
        verdict = "worse than naive"
    else:
        verdict = f"equal to naive (within noise or {NEGLIGIBLE:.1%})"
    return (f"model/naive  MAE {v['maeRatio']:.3f}  RMSE {v['rmseRatio']:.3f}; "
            f"MAE difference {diff:+.5f} (standard error {se:.5f}): {verdict}")


# -- artefacts -------------------------------------------------------------------------------------
def symbol_dir(models_dir: Path, symbol: str) -> Path:
    """`models_dir/symbol`, refusing names that could leave `models_dir` (`..`, `/`, ...)."""
    if not _SYMBOL_DIR_RE.fullmatch(symbol) or ".." in symbol:
        raise BadSymbol(f"symbol {symbol!r} cannot name a model directory")
    return Path(models_dir) / symbol


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_json(path: Path, doc: dict) -> None:
    with open(path, "w", encoding="utf-8") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())


def versions(models_dir: Path, symbol: str) -> list[int]:
    """Published version numbers of `symbol`, ascending."""
    d = symbol_dir(models_dir, symbol)
    if not d.is_dir():
        return []
    return sorted(int(m.group(1)) for p in d.iterdir()
                  if p.is_dir() and (m := _VERSION_RE.fullmatch(p.name)))


def publish(models_dir: Path, model: Model, metrics: dict) -> str:
    """Write `model` as the next version of its symbol and point `current` at it; return it.

    The version directory is filled under a temporary name and renamed into place; if another
    trainer took the same number meanwhile, the next free number is used.
    """
    d = symbol_dir(models_dir, model.symbol)
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".tmp-{os.getpid()}-{time.monotonic_ns()}"
    tmp.mkdir()
    number = (versions(models_dir, model.symbol) or [0])[-1] + 1
    while True:
        version = f"v{number}"
        _write_json(tmp / "model.json", {**model.to_json(), "version": version})
        _write_json(tmp / "metrics.json", {**metrics, "version": version})
        try:
            # rename() of a directory onto an existing non-empty one fails: no overwrite.
            os.rename(tmp, d / version)
            break
        except OSError:
            if not (d / version).exists():
                raise
            number += 1
    _fsync_dir(d)
    pointer_tmp = d / f".current-{os.getpid()}-{time.monotonic_ns()}"
    with open(pointer_tmp, "w", encoding="utf-8") as f:
        f.write(version + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(pointer_tmp, d / "current")
    _fsync_dir(d)
    return version


def load_current(models_dir: Path, symbol: str) -> Model | None:
    """The model `current` names, None if `symbol` has none; `ModelError` if it is unusable."""
    d = symbol_dir(models_dir, symbol)
    try:
        version = (d / "current").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    if not _VERSION_RE.fullmatch(version):
        raise ModelError(f"{d / 'current'} names {version!r}, not a version")
    try:
        doc = json.loads((d / version / "model.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read {d / version / 'model.json'}: {exc}") from None
    model = Model.from_json(doc)
    return model


class ModelRegistry:
    """The current model of each symbol, reloaded when its `current` pointer changes.

    Thread-safe (gthread workers). A symbol without a model gives None; a broken artefact keeps
    the last good model of that symbol if there is one (and raises `ModelError` otherwise), so a
    bad publish never takes predictions down.
    """

    def __init__(self, models_dir: Path, check_interval: float = 0.0) -> None:
        self.models_dir = Path(models_dir)
        self.check_interval = check_interval
        self._lock = threading.Lock()
        # symbol -> (pointer identity, checked at (monotonic), model or None)
        self._cache: dict[str, tuple[tuple | None, float, Model | None]] = {}

    def _identity(self, symbol: str) -> tuple | None:
        try:
            st = os.stat(symbol_dir(self.models_dir, symbol) / "current")
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def get(self, symbol: str) -> Model | None:
        try:
            symbol_dir(self.models_dir, symbol)
        except BadSymbol:
            return None
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(symbol)
        if cached is not None and now - cached[1] < self.check_interval:
            return cached[2]
        ident = self._identity(symbol)
        if cached is not None and cached[0] == ident:
            with self._lock:
                self._cache[symbol] = (ident, now, cached[2])
            return cached[2]
        try:
            model = None if ident is None else load_current(self.models_dir, symbol)
        except ModelError:
            if cached is None or cached[2] is None:
                raise
            model = cached[2]   # keep serving the last good version; retried next call
            ident = cached[0]
        with self._lock:
            self._cache[symbol] = (ident, now, model)
        return model


# -- command line ----------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accessd model", description="Train and publish models.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train on a symbol's closes and publish a new version")
    t.add_argument("--symbol", required=True)
    t.add_argument("--store", default=os.environ.get("ACCESSD_STORE"),
                   help="store URL (default $ACCESSD_STORE)")
    t.add_argument("--models-dir", type=Path,
                   default=os.environ.get("ACCESSD_MODELS_DIR"),
                   help="artefact directory (default $ACCESSD_MODELS_DIR)")
    t.add_argument("--window", type=int, default=10, help="past returns used per prediction")
    t.add_argument("--from", dest="start", help="first quote used (ISO 8601 or epoch ms)")
    t.add_argument("--to", dest="end", help="last quote used (ISO 8601 or epoch ms)")
    t.add_argument("--test-fraction", type=float, default=0.2, help="held-out tail of the series")
    return p


def main(argv: list[str]) -> int:
    """`accessd model train ...` (see the module docstring)."""
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if not args.store or not args.models_dir:
        print("accessd model: --store and --models-dir (or $ACCESSD_STORE, $ACCESSD_MODELS_DIR) "
              "are required", file=sys.stderr)
        return EXIT_USAGE
    try:
        symbol_dir(args.models_dir, args.symbol)
        start = parse_time(args.start) if args.start else None
        end = parse_time(args.end) if args.end else None
    except ValueError as exc:
        print(f"accessd model: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        store = open_store(args.store)
        with store:
            print(f"reading {args.symbol} closes from {args.store} ...", file=sys.stderr)
            stamps: list[int] = []
            closes: list[float] = []
            for q in store.read_range(args.symbol, start, end):
                stamps.append(q.ts)
                closes.append(q.close)
            first_ts = stamps[0] if stamps else None
            last_ts = stamps[-1] if stamps else None
    except StoreUnavailable as exc:
        print(f"accessd model: store unavailable: {exc}", file=sys.stderr)
        return EXIT_STORE
    except ValueError as exc:
        print(f"accessd model: {exc}", file=sys.stderr)
        return EXIT_USAGE
    data = {"from": iso_ms(first_ts) if first_ts is not None else None,
            "to": iso_ms(last_ts) if last_ts is not None else None}
    try:
        model, metrics = train(args.symbol, np.array(closes), args.window, args.test_fraction,
                               data=data, ts=np.array(stamps, dtype=np.int64))
    except ModelError as exc:
        print(f"accessd model: {args.symbol}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    version = publish(args.models_dir, model, metrics)
    m, nv = metrics["model"], metrics["naive"]
    print(f"{args.symbol} {version}: ridge on the last {model.window} log returns "
          f"(alpha {model.alpha:g}), {model.data['trainSamples']} training / "
          f"{metrics['testSamples']} test samples, quotes {data['from']} .. {data['to']}")
    print(f"  held out: the last {metrics['testSamples']} closes, from {metrics['testFrom']}, "
          "never seen in training")
    print(f"  model  MAE {m['mae']:.4f}  RMSE {m['rmse']:.4f}  MAPE {m['mape']:.4f}%")
    print(f"  naive  MAE {nv['mae']:.4f}  RMSE {nv['rmse']:.4f}  MAPE {nv['mape']:.4f}%")
    print("  " + versus_line(metrics["versusNaive"]))
    print(f"published {symbol_dir(args.models_dir, args.symbol) / version} (current -> {version})")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
