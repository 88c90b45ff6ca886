"""The pipeline's batch steps, run as scheduled jobs (`examples/jobs/`):

    accessd pipeline ingest  --symbol JPM --bars 30 [--seed-from-last] --store URL
    accessd pipeline retrain --symbol JPM --store URL --models-dir DIR [--window 10]
                             [--test-fraction 0.2]

ingest: appends the next `bars` one-minute bars of the symbol after its last quote in the
store (the sample generator's random walk, continuing from the last close on the session
calendar: weekends and nights skipped). An empty store gets one session first. Deterministic:
the walk's seed is the last quote's timestamp, so a rerun after a crash writes the same bars
(writes are upserts).

retrain: trains on every quote now in the store (`services.model.train`: the last
`test-fraction` held out) and publishes a new version only when its held-out MAE is not worse
than the current version's on the same held-out quotes; either way it says so, with both
errors. The prediction service notices the new `current` without a restart.

`--store` defaults to `$ACCESSD_STORE`, `--models-dir` to `$ACCESSD_MODELS_DIR`.
Exit status: 0 done (published or kept), 1 bad input, 2 usage, 3 store unavailable.
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np

from services.data import SynthParams, session_bar_starts, synth_days, trading_days
from services.model import Model, ModelError, errors, load_current, publish, train
from services.store import Quote, QuoteStore, StoreUnavailable, iso_ms, open_store

EXIT_OK, EXIT_BAD_INPUT, EXIT_USAGE, EXIT_STORE = 0, 1, 2, 3
INTERVAL_MS = 60_000
FIRST_DAY = date(2026, 1, 2)


def next_bar_times(after_ms: int, count: int) -> list[int]:
    """The session bar starts (1 minute) after `after_ms`, `count` of them."""
    day = datetime.fromtimestamp(after_ms / 1000, tz=UTC).date() - timedelta(days=1)
    out: list[int] = []
    for d in trading_days(day, count // 390 + 3):
        out += [int(t) for t in session_bar_starts(d, INTERVAL_MS) if t > after_ms]
        if len(out) >= count:
            break
    return out[:count]


def next_bars(symbol: str, last: Quote | None, count: int) -> list[Quote]:
    """`count` bars continuing after `last` (one session from FIRST_DAY when there is none)."""
    if last is None:
        (day,) = synth_days(SynthParams(symbol, FIRST_DAY, 1, INTERVAL_MS, seed=1))
        return day[:max(count, len(day))]
    # a fresh walk from the last close, restamped onto the next bar times
    params = SynthParams(symbol, FIRST_DAY, count // 390 + 1, INTERVAL_MS,
                         seed=last.ts % (2**32), start_price=last.close)
    walk = [q for day in synth_days(params) for q in day][:count]
    times = next_bar_times(last.ts, len(walk))
    return [Quote(symbol, ts, q.open, q.high, q.low, q.close, q.volume)
            for ts, q in zip(times, walk, strict=True)]


def ingest(store: QuoteStore, symbol: str, bars: int) -> tuple[int, Quote | None]:
    quotes = next_bars(symbol, store.last(symbol), bars)
    written = store.write(quotes)
    return written, quotes[-1] if quotes else None


def heldout_mae(model: Model, closes: np.ndarray, n_test: int) -> float:
    """MAE of `model` predicting each of the last `n_test` closes from the closes before it."""
    k = model.inputs_needed
    rows = np.array([closes[i - k:i] for i in range(len(closes) - n_test, len(closes))])
    return errors(closes[-n_test:], model.predict_many(rows))["mae"]


def retrain(store: QuoteStore, models_dir: Path, symbol: str, window: int,
            test_fraction: float) -> tuple[str | None, str]:
    """(published version or None, what happened)."""
    quotes = list(store.read_range(symbol))
    closes = np.array([q.close for q in quotes], dtype=float)
    data = {"from": iso_ms(quotes[0].ts) if quotes else None,
            "to": iso_ms(quotes[-1].ts) if quotes else None}
    # The quotes' times let the model name its first held-out quote (`testFromMs`), which
    # `accessd client compare` needs to score the held-out part alone, as for `model train`.
    model, metrics = train(symbol, closes, window, test_fraction, data=data,
                           ts=np.array([q.ts for q in quotes], dtype=np.int64))
    n_test = int(metrics["testSamples"])
    new_mae = heldout_mae(model, closes, n_test)
    current = load_current(models_dir, symbol)
    if current is not None and len(closes) - n_test >= current.inputs_needed:
        old_mae = heldout_mae(current, closes, n_test)
        if new_mae > old_mae:
            return None, (f"{symbol}: kept {current.version}: the new model's held-out MAE "
                          f"{new_mae:.6f} is worse than {current.version}'s {old_mae:.6f} on "
                          f"the same {n_test} held-out quotes (data up to {data['to']})")
        versus = f"{current.version}'s {old_mae:.6f}"
    else:
        versus = "no current model"
    version = publish(models_dir, model, metrics)
    return version, (f"{symbol}: published {version}: held-out MAE {new_mae:.6f} vs {versus} "
                     f"on {n_test} held-out quotes ({len(closes)} quotes, up to {data['to']})")


EXAMPLE_JOBS = Path(__file__).resolve().parent.parent / "examples" / "jobs" / "pipeline.json"


def pipeline_jobs(*, python: str, store_url: str, models_dir: Path, every_seconds: int = 30,
                  bars: int = 60, start: str = "", path: Path = EXAMPLE_JOBS) -> list[dict]:
    """The example jobs (`examples/jobs/pipeline.json`) for this machine: `accessd` run by
    `python -m accessd.cli`, the given store and models directory, ingest every
    `every_seconds` (from `start`, ISO 8601; empty: when posted)."""
    import json

    jobs = json.loads(path.read_text(encoding="utf-8"))
    for job in jobs:
        job["command"] = job["command"].replace("accessd ", f"{python} -m accessd.cli ", 1)
        job["command"] = job["command"].replace("--bars 60", f"--bars {bars}")
        env = {"ACCESSD_STORE": store_url, "ACCESSD_MODELS_DIR": str(models_dir)}
        job["environmentVariables"] = [{"name": v["name"], "value": env.get(v["name"],
                                                                             v["value"])}
                                       for v in job.get("environmentVariables", [])]
        if "schedule" in job:
            job["schedule"] = f"R/{start}/PT{every_seconds}S"
            job["epsilon"] = f"PT{max(1, every_seconds // 2)}S"
    return jobs


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="accessd pipeline", description="The pipeline's steps.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in ("ingest", "retrain"):
        s = sub.add_parser(name)
        s.add_argument("--symbol", required=True)
        s.add_argument("--store", default=os.environ.get("ACCESSD_STORE"))
        if name == "ingest":
            s.add_argument("--bars", type=int, default=30)
        else:
            s.add_argument("--models-dir", type=Path,
                           default=os.environ.get("ACCESSD_MODELS_DIR"))
            s.add_argument("--window", type=int, default=10)
            s.add_argument("--test-fraction", type=float, default=0.2)
    return p


def main(argv: list[str]) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:
        return EXIT_USAGE if exc.code else EXIT_OK
    if not args.store or (args.command == "retrain" and not args.models_dir):
        print("accessd pipeline: --store (and --models-dir for retrain) are required, or "
              "$ACCESSD_STORE / $ACCESSD_MODELS_DIR", file=sys.stderr)
        return EXIT_USAGE
    try:
        with open_store(args.store) as store:
            if args.command == "ingest":
                if args.bars < 1:
                    print("accessd pipeline: --bars must be >= 1", file=sys.stderr)
                    return EXIT_USAGE
                written, last = ingest(store, args.symbol, args.bars)
                print(f"{args.symbol}: appended {written} bars"
                      + (f", last {iso_ms(last.ts)} close {last.close:.2f}" if last else ""))
                return EXIT_OK
            _version, text = retrain(store, args.models_dir, args.symbol, args.window,
                                     args.test_fraction)
            print(text)
            return EXIT_OK
    except StoreUnavailable as exc:
        print(f"accessd pipeline: store unavailable: {exc}", file=sys.stderr)
        return EXIT_STORE
    except (ModelError, ValueError) as exc:
        print(f"accessd pipeline {args.command}: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
