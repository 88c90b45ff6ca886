"""The pipeline loop end to end: the example jobs (ingest every 3 s, retrain after it) run on
localmesos under the real scheduler, and the prediction service, started once, reports each
newly published model version without a restart."""

from __future__ import annotations

import re
import time

import numpy as np

from scheduler.jobs.plan import iso
from scheduler.jobs.spec import parse_job
from services.model import Model, load_current, publish
from services.pipeline import EXAMPLE_JOBS, heldout_mae, pipeline_jobs
from services.store import open_store
from tests.fixtures_scheduler import scheduler_cluster
from tests.services.service_fixtures import Service
from tests.support import PYTHON, wait_until


def test_example_jobs_are_valid_chronos_jobs():
    import json

    jobs = json.loads(EXAMPLE_JOBS.read_text())
    specs = [parse_job(j, now=time.time()) for j in jobs]
    assert [s.name for s in specs] == ["ingest-jpm", "retrain-jpm"]
    assert specs[1].parents == ("ingest-jpm",)


def bad_model(symbol: str) -> Model:
    """A v1 that predicts a 5 % jump every minute: any honest retrain beats it."""
    window = 10
    return Model(symbol=symbol, version="v0", window=window, alpha=1.0,
                 coef=(0.0,) * window, intercept=0.05, feature_mean=(0.0,) * window,
                 feature_std=(1.0,) * window, trained_at="2026-01-01T00:00:00+00:00",
                 data={"note": "deliberately bad"})


def test_ingest_retrain_and_the_prediction_service_serves_the_new_version(tmp_path):
    store_url = f"sqlite:///{tmp_path}/quotes.db"
    models = tmp_path / "models"
    publish(models, bad_model("JPM"), {"note": "deliberately bad"})  # v1
    predict = Service("prediction", store_url, models)
    try:
        with scheduler_cluster(tmp_path / "cluster") as (mesos, store, sched):
            now = time.time()
            for job in pipeline_jobs(python=PYTHON, store_url=store_url, models_dir=models,
                                     every_seconds=3, bars=60, start=iso(now + 1)):
                spec = parse_job(job, now=now)
                store.write_jobs([dict(spec.to_json(), version=iso(now))])
            wait_until(lambda: predict.get("/predict/JPM").status_code == 200, timeout=30,
                       message="quotes ingested and v1 served")
            assert predict.get("/predict/JPM").json()["modelVersion"] == "v1"

            def retrains():
                return [r for r in store.list_job_runs("retrain-jpm")
                        if r["state"] == "succeeded"]

            # the first retrain must beat the bad v1: v2 is published and served
            wait_until(lambda: predict.get("/predict/JPM").json()["modelVersion"] == "v2",
                       timeout=60, message="the prediction service to report v2")
            wait_until(lambda: len(retrains()) >= 3, timeout=60, message="three retrains")
            # every retrain ran after an ingest that succeeded since the previous retrain
            ingests = sorted(r["finishedAt"] for r in store.list_job_runs("ingest-jpm")
                             if r["state"] == "succeeded")
            runs = sorted(retrains(), key=lambda r: r["startedAt"])
            for prev, run in zip([None, *runs], runs, strict=False):
                assert any(i <= run["startedAt"] and (prev is None or i > prev["startedAt"])
                           for i in ingests)
            # each retrain said what it did; the service serves what `current` names
            outputs = []
            for run in runs:
                (out,) = [p.read_text() for p in (tmp_path / "cluster" / "mesos").glob(
                    f"**/executors/{run['id']}/runs/*/stdout")]
                outputs.append(out.strip())
            assert re.search(r"published v2: held-out MAE [\d.]+ vs v1's", outputs[0])
            assert all(re.search(r"(published v\d+|kept v\d+)", o) for o in outputs), outputs
            current = load_current(models, "JPM").version
            # a retrained model names its first held-out quote (`accessd client compare`
            # scores that part alone only then)
            assert isinstance(load_current(models, "JPM").data.get("testFromMs"), int)
            wait_until(lambda: predict.get("/predict/JPM").json()["modelVersion"] == current,
                       timeout=10, message=f"the service to serve {current}")
            assert predict.proc.popen.poll() is None  # the same process all along
    finally:
        predict.stop()
    # the published models were never worse than their predecessor on their held-out tail
    with open_store(store_url) as quotes:
        closes = np.array([q.close for q in quotes.read_range("JPM")])
    assert heldout_mae(load_current(models, "JPM"), closes, 50) < heldout_mae(
        bad_model("JPM"), closes, 50)
