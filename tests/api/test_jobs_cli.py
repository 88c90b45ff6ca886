"""`accessd jobs ...` as a real subprocess against a real API and store."""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from scheduler.jobs.plan import iso
from tests.fixtures_api import start_api
from tests.support import PYTHON, REPO


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=1)
    yield base
    proc.stop()


def jobs(api, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("ACCESSD_API", "ACCESSD_API_TOKEN")}
    return subprocess.run([PYTHON, "-m", "accessd.cli", "jobs", *args, "--api", api],
                          capture_output=True, text=True, timeout=60, cwd=REPO, env=env)


def test_add_list_run_history_delete(api, store, tmp_path):
    export = [  # a Chronos export: the child listed before its parent
        {"name": "retrain", "command": "echo retrain", "parents": ["ingest"]},
        {"name": "ingest", "command": "echo ingest", "schedule": "R/2030-01-01T00:00:00Z/PT1M"},
    ]
    path = tmp_path / "jobs.json"
    path.write_text(json.dumps(export))
    r = jobs(api, "add", str(path))
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == ["job ingest added (R/2030-01-01T00:00:00Z/PT1M)",
                                     "job retrain added (after ingest)"]
    r = jobs(api, "list")
    assert r.returncode == 0, r.stderr
    header, *rows = r.stdout.splitlines()
    assert header.split()[:3] == ["NAME", "SCHEDULE", "STATE"]
    assert rows[0].split()[:2] == ["ingest", "R/2030-01-01T00:00:00Z/PT1M"]
    assert "2030-01-01 00:00:00Z" in rows[0]          # the next run
    assert rows[1].split()[:3] == ["retrain", "after", "ingest"]

    assert jobs(api, "run", "ingest").returncode == 0
    assert [a["action"] for a in store.pending_job_actions()] == ["run"]
    t = time.time()
    store.record_jobs(runs=[{"id": "ct:1:0:ingest:", "job": "ingest", "state": "failed",
                             "active": False, "attempt": 0, "exitCode": 2,
                             "scheduledAt": iso(t - 5), "startedAt": iso(t - 4),
                             "finishedAt": iso(t - 3), "host": "127.0.1.1",
                             "message": "Command exited with status 2"}])
    r = jobs(api, "history", "ingest")
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[1]
    assert "failed" in line and " 2 " in line and "127.0.1.1" in line
    assert "Command exited with status 2" in line

    r = jobs(api, "history", "ghost")
    assert r.returncode == 1 and "Job 'ghost' not found" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "command": "y", "schedule": "R/soon/PT1S"}))
    r = jobs(api, "add", str(bad))
    assert r.returncode == 1 and "/schedule: invalid ISO 8601 start time" in r.stderr
    assert jobs(api, "delete", "retrain").returncode == 0
    assert store.get_job("retrain") is None
    assert jobs(api, "nonsense").returncode == 2
