"""`accessd local`'s pipeline jobs: the example ingest and retrain jobs
(`examples/jobs/pipeline.json`) added through the control API's Chronos endpoints, on a short
schedule, so a new user sees model v2, v3 ... appear (status page, `GET /predict/JPM`)."""

from __future__ import annotations

import sys
from pathlib import Path

import requests

from services.pipeline import pipeline_jobs


def add_pipeline_jobs(http: requests.Session, api_url: str, store_url: str, models_dir: Path,
                      every_seconds: int) -> list[str]:
    """Post the jobs (a re-post replaces them: Chronos's POST is an upsert); returns lines to
    show. Raises RuntimeError naming the job the API refused."""
    lines = []
    for job in pipeline_jobs(python=sys.executable, store_url=store_url, models_dir=models_dir,
                             every_seconds=every_seconds):
        kind = "dependency" if job.get("parents") else "iso8601"
        resp = http.post(f"{api_url}/v1/scheduler/{kind}", json=job, timeout=10)
        if resp.status_code != 204:
            raise RuntimeError(f"adding job {job['name']} failed: HTTP {resp.status_code} "
                               f"{resp.text}")
        when = (f"every {every_seconds}s" if kind == "iso8601"
                else "after " + ", ".join(job["parents"]))
        lines.append(f"job {job['name']} ({when})")
    return lines
