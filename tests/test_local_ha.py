"""`accessd local --ha` end to end: three ZooKeeper servers, two schedulers, the API on the
ZooKeeper store, with the pipeline jobs; `accessd leader` names the leader, `accessd leader
abdicate` hands over to the other scheduler (same framework, services untouched, a scale still
works, the jobs go on with each slot once), and the stop leaves no process behind."""

from __future__ import annotations

import subprocess

import pytest
import requests

from tests.fixtures_zk import zookeeper_missing
from tests.support import PYTHON, REPO, Proc, free_port, wait_until
from tests.test_local_e2e import processes_mentioning


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([PYTHON, "-m", "accessd.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def jobs(api: str) -> list[dict]:
    return requests.get(api + "/v1/scheduler/jobs", timeout=10).json()


def successes(api: str, name: str) -> int:
    return next(j["successCount"] for j in jobs(api) if j["name"] == name)


def test_local_ha_fails_over_on_abdication(tmp_path):
    missing = zookeeper_missing()
    if missing:
        pytest.skip(missing)
    data_dir = tmp_path / "accessd-ha"
    proc = Proc([PYTHON, "-m", "accessd.cli", "local", "--ha", "--api-port", str(free_port()),
                 "--master-port", str(free_port()), "--data-dir", str(data_dir), "--days", "5",
                 "--jobs-every", "5"],
                cwd=REPO, env={"ACCESSD_DATA_DIR_MARK": str(data_dir)})
    try:
        api = proc.wait_for_line(lambda line: line.startswith("ready api="),
                                 timeout=240).split("=", 1)[1]
        # the summary's lines follow the ready line: wait for the one this test needs
        proc.wait_for_line(lambda line: "accessd leader abdicate" in line, timeout=10)
        first = cli("leader", "--api", api)
        assert first.returncode == 0 and first.stdout.strip() in ("scheduler-1", "scheduler-2")
        info = requests.get(api + "/v2/info", timeout=10).json()
        framework_id = info["frameworkId"]
        before = {t["id"] for t in requests.get(api + "/v2/tasks", timeout=10).json()["tasks"]}
        assert {"ingest-jpm", "retrain-jpm"} <= {j["name"] for j in jobs(api)}
        ingested = wait_until(lambda: successes(api, "ingest-jpm") or None, timeout=60,
                              message="the ingest job ran under the first leader")
        abdicated = cli("leader", "abdicate", "--api", api)
        assert abdicated.returncode == 0 and abdicated.stdout.strip() == "Leadership abdicted"
        other = {"scheduler-1": "scheduler-2", "scheduler-2": "scheduler-1"}[first.stdout.strip()]
        wait_until(lambda: cli("leader", "--api", api).stdout.strip() == other, timeout=30,
                   interval=0.5, message=f"{other} to lead")
        log = data_dir / "logs" / f"{other}.log"
        wait_until(lambda: f"registered framework_id={framework_id}" in log.read_text(),
                   timeout=30, message=f"{other} subscribed with the same framework id")
        scaled = cli("scale", "/jpm/quotes", "2", "--api", api, "--wait")
        assert scaled.returncode == 0, scaled.stdout + scaled.stderr
        after = {t["id"] for t in requests.get(api + "/v2/tasks", timeout=10).json()["tasks"]}
        assert before < after and len(after) == len(before) + 1  # kept all, added one
        wait_until(lambda: successes(api, "ingest-jpm") > ingested, timeout=60,
                   message="the ingest job ran under the new leader")
        runs = requests.get(api + "/v1/scheduler/job/stat/ingest-jpm?runs=true",
                            timeout=10).json()["runs"]
        slots = [r["scheduledAt"] for r in runs if r["state"] != "skipped"]
        assert len(slots) == len(set(slots)), f"a slot ran twice: {slots}"
    finally:
        proc.signal(2)  # Ctrl-C
        proc.popen.wait(60)
        proc.stop()
    assert processes_mentioning(str(data_dir)) == []
