"""Chronos's /v1/scheduler API through a real gunicorn on a real store: paths, verbs, JSON,
status codes, every problem named in a 400 that changes nothing, and the credentials."""

from __future__ import annotations

import time

import pytest
import requests

from scheduler.jobs.plan import iso
from tests.fixtures_api import start_api

V1 = "/v1/scheduler"


@pytest.fixture(scope="module")
def api(state_path, store):
    proc, base = start_api(state_path, workers=2)
    yield base
    proc.stop()


def job(name, **kw):
    doc = {"name": name, "command": f"echo {name}", "owner": "ops@example.com",
           "schedule": "R/2030-01-01T00:00:00Z/PT1H", "epsilon": "PT30S"}
    doc.update(kw)
    return doc


def dependent(name, *parents, **kw):
    doc = {"name": name, "command": f"echo {name}", "parents": list(parents)}
    doc.update(kw)
    return doc


def jobs_state(store):
    return store.list_jobs(), store.jobs_revision(), store.pending_job_actions()


@pytest.fixture
def pipeline(api):
    """`ingest` and `retrain` (a child of ingest) as the test starts, whatever ran before (a
    POST of an existing job replaces it; a deleted one is created again)."""
    for path, doc in (("/iso8601", job("ingest")), ("/dependency", dependent("retrain", "ingest"))):
        r = requests.post(api + V1 + path, json=doc, timeout=10)
        assert r.status_code == 204, r.text


def test_add_list_and_replace_jobs(api, store):
    r = requests.post(api + V1 + "/iso8601", json=job("load"), timeout=10)
    assert r.status_code == 204, r.text
    r = requests.post(api + V1 + "/dependency", json=dependent("fit", "load"), timeout=10)
    assert r.status_code == 204, r.text
    listed = {j["name"]: j for j in requests.get(api + V1 + "/jobs", timeout=10).json()}
    assert set(listed) >= {"load", "fit"}
    load = listed["load"]
    assert load["schedule"] == "R/2030-01-01T00:00:00Z/PT1H" and "parents" not in load
    assert (load["successCount"], load["errorCount"], load["lastSuccess"],
            load["retries"], load["cpus"]) == (0, 0, "", 2, 0.1)
    assert listed["fit"]["parents"] == ["load"] and "schedule" not in listed["fit"]
    assert "accessdStatus" not in load  # extras only when asked for
    # a client sends a job back as it got it (read-only counters included): a replace
    load["command"] = "echo v2"
    assert requests.post(api + V1 + "/iso8601", json=load, timeout=10).status_code == 204
    assert store.get_job("load")["command"] == "echo v2"


def test_bad_job_names_every_problem_and_changes_nothing(api, store):
    before = jobs_state(store)
    r = requests.post(api + V1 + "/iso8601", json={
        "name": "bad", "command": "", "schedule": "R/2026-02-30T00:00:00Z/PT1H",
        "epsilon": "whenever", "retries": "two", "cpu": 1}, timeout=10)
    assert r.status_code == 400
    body = r.json()
    problems = {d["path"]: d["errors"] for d in body["details"]}
    assert set(problems) == {"/command", "/schedule", "/epsilon", "/retries", "/cpu"}
    assert "did you mean 'cpus'" in problems["/cpu"][0]
    assert "invalid ISO 8601" in problems["/schedule"][0]
    assert jobs_state(store) == before


def test_unknown_parent_and_cycle_are_refused(api, store, pipeline):
    before = jobs_state(store)
    r = requests.post(api + V1 + "/dependency", json=dependent("x", "ingest", "nope"),
                      timeout=10)
    assert r.status_code == 400
    assert r.json()["details"] == [{"path": "/parents", "errors": ["unknown parent job 'nope'"]}]
    # ingest made dependent on retrain (which depends on ingest): a cycle
    r = requests.post(api + V1 + "/dependency", json=dependent("ingest", "retrain"), timeout=10)
    assert r.status_code == 400
    assert "dependency cycle: " in r.json()["details"][0]["errors"][0]
    assert jobs_state(store) == before
    r = requests.post(api + V1 + "/iso8601", data=b"{not json", timeout=10,
                      headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and jobs_state(store) == before


def test_search(api, pipeline):
    requests.post(api + V1 + "/iso8601", json=job("report-daily", command="make report"),
                  timeout=10)
    names = [j["name"] for j in requests.get(api + V1 + "/jobs/search", params={
        "name": "REPORT"}, timeout=10).json()]
    assert names == ["report-daily"]
    names = [j["name"] for j in requests.get(api + V1 + "/jobs/search", params={
        "command": "echo"}, timeout=10).json()]
    assert "ingest" in names and "report-daily" not in names
    assert len(requests.get(api + V1 + "/jobs/search", params={"limit": 1},
                            timeout=10).json()) == 1


def test_run_now_and_kill_are_requests_for_the_scheduler(api, store, pipeline):
    assert requests.put(api + V1 + "/job/ingest", timeout=10).status_code == 204
    assert requests.delete(api + V1 + "/task/kill/ingest", timeout=10).status_code == 204
    actions = [(a["job"], a["action"]) for a in store.pending_job_actions()]
    assert actions[-2:] == [("ingest", "run"), ("ingest", "kill")]
    for method, path in (("PUT", "/job/ghost"), ("DELETE", "/job/ghost"),
                         ("DELETE", "/task/kill/ghost"), ("GET", "/job/stat/ghost")):
        r = requests.request(method, api + V1 + path, timeout=10)
        assert r.status_code == 400 and r.json()["message"] == "Job 'ghost' not found"


def test_stat_stats_and_graph(api, store, pipeline):
    t = time.time() - 100
    runs = []
    for i, secs in enumerate([1, 2, 3, 4, 10]):
        runs.append({"id": f"ct:{i}:0:ingest:", "job": "ingest", "state": "succeeded",
                     "active": False, "scheduledAt": iso(t + i), "startedAt": iso(t + i),
                     "finishedAt": iso(t + i + secs), "agentId": "a1", "attempt": 0})
    runs.append({"id": "ct:9:0:retrain:dep", "job": "retrain", "state": "running",
                 "active": True, "scheduledAt": iso(t), "startedAt": iso(t),
                 "finishedAt": None, "agentId": "a1", "attempt": 0})
    store.record_jobs(runs=runs, statuses=[{"name": "ingest", "successCount": 5,
                                            "lastSuccess": iso(t + 20)}])
    stat = requests.get(api + V1 + "/job/stat/ingest", timeout=10).json()
    hist = stat["histogram"]
    assert set(hist) == {"75thPercentile", "95thPercentile", "98thPercentile",
                         "99thPercentile", "median", "mean", "count"}
    assert (hist["count"], hist["median"], hist["mean"]) == (5, 3000.0, 4000.0)
    assert hist["99thPercentile"] == 10000.0
    first = stat["taskStatHistory"][0]
    assert set(first) == {"taskId", "jobName", "slaveId", "startTime", "endTime", "duration",
                          "status"}
    assert first["duration"] == "10s" and first["status"] == "Success"
    assert "runs" not in stat
    assert len(requests.get(api + V1 + "/job/stat/ingest", params={"runs": "true"},
                            timeout=10).json()["runs"]) == 5
    ranked = requests.get(api + V1 + "/stats/99thPercentile", timeout=10).json()
    assert ranked[0] == {"jobNameLabel": "ingest", "time": 10.0}
    assert requests.get(api + V1 + "/stats/nonsense", timeout=10).json() == []
    r = requests.get(api + V1 + "/graph/csv", timeout=10)
    assert r.headers["Content-Type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert "node,ingest,success,idle" in lines and "node,retrain,fresh,running" in lines
    assert "link,ingest,retrain" in lines
    listed = requests.get(api + V1 + "/jobs", params={"status": "true"}, timeout=10).json()
    status = {j["name"]: j["accessdStatus"] for j in listed}
    assert status["ingest"]["medianMs"] == 3000.0 and status["retrain"]["state"] == "running"
    assert status["ingest"]["nextRunAt"] == "2030-01-01T00:00:00.000Z"


def test_delete_rewires_children_as_chronos_does(api, store, pipeline):
    requests.post(api + V1 + "/dependency", json=dependent("publish", "retrain"), timeout=10)
    assert requests.delete(api + V1 + "/job/retrain", timeout=10).status_code == 204
    assert store.get_job("retrain") is None
    assert store.get_job("publish")["parents"] == ["ingest"]   # inherits retrain's parents
    assert requests.delete(api + V1 + "/job/ingest", timeout=10).status_code == 204
    publish = store.get_job("publish")
    assert publish["schedule"] == "R/2030-01-01T00:00:00Z/PT1H" and "parents" not in publish


def test_credentials_are_the_control_apis(tmp_path):
    proc, base = start_api(tmp_path / "s.db", workers=1,
                           extra_args=["--token", "t0k", "--read-token", "r3ad"])
    try:
        assert requests.get(base + V1 + "/jobs", timeout=10).status_code == 401
        assert requests.get(base + V1 + "/jobs", timeout=10,
                            headers={"Authorization": "Bearer r3ad"}).status_code == 200
        r = requests.post(base + V1 + "/iso8601", json=job("a"), timeout=10,
                          headers={"Authorization": "Bearer r3ad"})
        assert r.status_code == 403
        r = requests.post(base + V1 + "/iso8601", json=job("a"), timeout=10,
                          headers={"Authorization": "Bearer t0k"})
        assert r.status_code == 204
    finally:
        proc.stop()


def test_run_now_with_arguments_is_a_request_carrying_them(api, store):
    assert requests.post(api + V1 + "/iso8601", json=job("argued"), timeout=10).status_code == 204
    r = requests.put(api + V1 + "/job/argued", params={"arguments": "-debug --x=1"}, timeout=10)
    assert r.status_code == 204, r.text
    last = store.pending_job_actions()[-1]
    assert (last["job"], last["action"], last["arguments"]) == ("argued", "run", "-debug --x=1")
    assert requests.put(api + V1 + "/job/argued", timeout=10).status_code == 204
    assert "arguments" not in store.pending_job_actions()[-1]
    r = requests.put(api + V1 + "/job/ghost", params={"arguments": "x"}, timeout=10)
    assert r.status_code == 400 and r.json()["message"] == "Job 'ghost' not found"


def test_mark_success(api, store):
    assert requests.post(api + V1 + "/iso8601", json=job("marked"), timeout=10).status_code == 204
    r = requests.put(api + V1 + "/job/success/marked", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    assert r.text == "marked job marked as successful: true"
    assert store.pending_job_actions()[-1]["action"] == "success"
    before = len(store.pending_job_actions())
    r = requests.put(api + V1 + "/job/success/ghost", timeout=10)
    assert (r.status_code, r.text) == (200, "marked job ghost as successful: false")
    assert len(store.pending_job_actions()) == before


def test_task_progress(api, store):
    assert requests.post(api + V1 + "/iso8601", json=job("counted", dataProcessingJobType=True),
                         timeout=10).status_code == 204
    assert store.get_job("counted")["dataProcessingJobType"] is True
    assert requests.post(api + V1 + "/iso8601", json=job("uncounted"),
                         timeout=10).status_code == 204
    url = api + V1 + "/job/counted/task/ct:1700000000000:0:counted:/progress"
    r = requests.post(url, json={"numAdditionalElementsProcessed": 7}, timeout=10)
    assert r.status_code == 204, r.text
    last = store.pending_job_actions()[-1]
    assert (last["action"], last["taskId"], last["count"]) == (
        "progress", "ct:1700000000000:0:counted:", 7)
    before = store.pending_job_actions()
    for path, body, message in (
            ("/job/ghost/task/ct:1:0:ghost:/progress", {}, "Job 'ghost' not found"),
            ("/job/counted/task/nonsense/progress", {}, "Invalid task id format nonsense"),
            ("/job/uncounted/task/ct:1:0:uncounted:/progress", {},
             "Job 'uncounted' is not enabled to track data"),
            ("/job/counted/task/ct:1:0:counted:/progress",
             {"numAdditionalElementsProcessed": -1},
             "numAdditionalElementsProcessed (-1) is not positive")):
        r = requests.post(api + V1 + path, json=body, timeout=10)
        assert r.status_code == 400 and r.json()["message"] == message, (path, r.text)
    assert store.pending_job_actions() == before  # a refused report queues nothing


def test_graph_dot(api, store):
    for doc in (job("dot-a"), dependent("dot-b", "dot-a"), dependent("dot-c", "dot-a", "dot-b")):
        path = "/dependency" if "parents" in doc else "/iso8601"
        assert requests.post(api + V1 + path, json=doc, timeout=10).status_code == 204
    r = requests.get(api + V1 + "/graph/dot", timeout=10)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/plain")
    lines = r.text.splitlines()
    assert lines[0] == "digraph G {" and lines[-1] == "}"
    ids = {line.split('"')[1]: line.split()[0] for line in lines if "label=" in line}
    assert set(ids) == {j["name"] for j in store.list_jobs()}
    edges = {line.strip().rstrip(";") for line in lines if "->" in line}
    expected = {f"{ids[p]} -> {ids[j['name']]}" for j in store.list_jobs()
                for p in j.get("parents", [])}
    assert edges == expected and expected


def test_java_short_time_zone_ids_are_accepted(api, store):
    r = requests.post(api + V1 + "/iso8601", json=job("pacific", scheduleTimeZone="PST"),
                      timeout=10)
    assert r.status_code == 204, r.text
    assert store.get_job("pacific")["scheduleTimeZone"] == "PST"
    r = requests.post(api + V1 + "/iso8601", json=job("nowhere", scheduleTimeZone="XYZ"),
                      timeout=10)
    assert r.status_code == 400 and r.json()["details"][0]["path"] == "/scheduleTimeZone"
