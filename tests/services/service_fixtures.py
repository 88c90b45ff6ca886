"""Real access services for the tests: gunicorn processes on 127.0.0.1, SQLite stores with data.

`Service` starts `gunicorn '<module>:get_app()'` with the same worker settings as the example app
definitions and waits until it answers `/metrics` (which does not touch the store, so a service
can be started with its store down). `seed(url, ...)` fills a store with synthetic quotes.
`metric_value(text, name, **labels)` reads one sample of a `/metrics` answer.
"""

from __future__ import annotations

import os
from datetime import date
from pathlib import Path

import requests
from prometheus_client.parser import text_string_to_metric_families

from services.data import SynthParams, synth
from services.store import open_store
from tests.support import PYTHON, REPO, Proc, free_port, wait_until

SYMBOL = "JPM"
START = date(2026, 1, 2)


def seed(url: str, symbol: str = SYMBOL, days: int = 2, seed: int = 1,
         interval_ms: int = 60_000) -> int:
    """Write `days` trading days of synthetic 1-minute quotes of `symbol` to the store at `url`."""
    with open_store(url) as store:
        return synth(store, SynthParams(symbol, START, days, interval_ms, seed))


def gunicorn_args(app: str, port: int, workers: int = 1, threads: int = 4) -> list[str]:
    """The gunicorn command the example apps use (gthread: a long stream is not a timeout)."""
    return [PYTHON, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--worker-class", "gthread", "--threads", str(threads), "--graceful-timeout", "3",
            "--log-level", "warning", app]


class Service:
    """A running access service; `url` is its base URL. Stop it with `stop()`."""

    def __init__(self, module: str, store_url: str, models_dir: Path | None = None,
                 workers: int = 1, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {"ACCESSD_STORE": store_url, "ACCESSD_RETRY_AFTER": "2",
                    "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        if models_dir is not None:
            full_env["ACCESSD_MODELS_DIR"] = str(models_dir)
        full_env.update(env or {})
        self.proc = Proc(gunicorn_args(f"services.{module}:get_app()", self.port, workers),
                         env=full_env, cwd=REPO)
        self.http = requests.Session()
        try:
            wait_until(lambda: self._answers(), timeout=30, message=f"{module} on {self.url}")
        except AssertionError:
            self.stop()
            raise AssertionError(f"{module} did not start:\n{self.proc.output()}") from None

    def _answers(self) -> bool:
        if self.proc.popen.poll() is not None:
            raise AssertionError(f"gunicorn exited:\n{self.proc.output()}")
        return requests.get(self.url + "/metrics", timeout=2).status_code == 200

    def get(self, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.http.get(self.url + path, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> requests.Response:
        kwargs.setdefault("timeout", 30)
        return self.http.post(self.url + path, **kwargs)  # type: ignore[arg-type]

    def stop(self) -> None:
        self.http.close()
        self.proc.stop(grace=5)


def take_store_away(db: Path) -> Path:
    """Move the SQLite file aside (the store becomes unreachable); returns where it went."""
    aside = db.with_name(db.name + ".away")
    os.rename(db, aside)
    return aside


def bring_store_back(aside: Path, db: Path) -> None:
    os.rename(aside, db)


def assert_error(resp: requests.Response, status: int) -> dict:
    """`resp` has `status` and the services' JSON error shape; returns the document."""
    assert resp.status_code == status, (resp.status_code, resp.text)
    assert resp.headers["Content-Type"].startswith("application/json")
    doc = resp.json()
    assert isinstance(doc.get("title"), str) and doc["title"]
    assert "Traceback" not in resp.text
    return doc


def metric_value(text: str, name: str, **labels: str) -> float:
    """The value of the one sample `name{labels}` (exactly these labels, in any order: the
    Prometheus text format does not order them) in a `/metrics` answer."""
    hits = [s.value for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name and s.labels == labels]
    assert len(hits) == 1, f"{name}{labels}: {len(hits)} samples"
    return hits[0]
