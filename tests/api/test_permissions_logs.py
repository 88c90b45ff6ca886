"""`GET /v2/permissions` on a real API (both credentials, and none), the task-logs endpoint's
answers without Mesos, and the pure helpers of `api.logs_mesos`."""

from __future__ import annotations

import requests

from api.logs_mesos import agent_address, agent_url_from_pid, find_agent_of_task, sandbox_path
from tests.api.conftest import put_task
from tests.api.test_status_page import put_app
from tests.fixtures_api import start_api

FULL, READ = "perm-full", "perm-read"


def test_permissions_follow_the_credential(state_path):
    proc, base = start_api(state_path, workers=1, extra_args=("--token", FULL,
                                                               "--read-token", READ))
    try:
        def perm(token):
            return requests.get(f"{base}/v2/permissions", timeout=10,
                                headers={"Authorization": f"Bearer {token}"} if token else {})
        assert perm(FULL).json() == {"read": True, "write": True}
        assert perm(READ).json() == {"read": True, "write": False}
        assert perm(None).status_code == 401 and perm("wrong").status_code == 401
        assert perm(READ).json()["write"] is False
        # The answer grants nothing: the read token's change is still refused.
        r = requests.post(f"{base}/v2/apps", json={"id": "/p", "cmd": "sleep 1"}, timeout=10,
                          headers={"Authorization": f"Bearer {READ}"})
        assert r.status_code == 403
    finally:
        proc.stop()


def test_open_api_may_write_and_logs_need_a_master(tmp_path, store):
    proc, base = start_api(tmp_path / "open.db", workers=1)
    try:
        assert requests.get(f"{base}/v2/permissions", timeout=10).json() == {
            "read": True, "write": True}
    finally:
        proc.stop()
    proc, base = start_api(store.path, workers=1)  # no --master
    try:
        put_app(store, "/nolog/app", 1)
        task = put_task(store, "/nolog/app")
        r = requests.get(f"{base}/v2/apps/nolog/app/tasks/{task['id']}/logs", timeout=10)
        assert r.status_code == 503 and "--master" in r.json()["message"]
        r = requests.get(f"{base}/v2/apps/nolog/app/tasks/{task['id']}/logs",
                         params={"stream": "../etc/passwd"}, timeout=10)
        assert r.status_code == 400 and r.json()["details"][0]["path"] == "/stream"
        r = requests.get(f"{base}/v2/apps/nolog/app/tasks/other_app.123/logs", timeout=10)
        assert r.status_code == 404
        spec = requests.get(f"{base}/v2/openapi.json", timeout=10).json()
        assert any(p.endswith("/tasks/{taskId}/logs") for p in spec["paths"])
    finally:
        proc.stop()


STATE = {
    "slaves": [{"id": "S0", "pid": "slave(1)@127.0.0.1:5051"},
               {"id": "S1", "pid": "slave(1)@10.0.0.7:5051"}],
    "frameworks": [{"id": "F1", "tasks": [{"id": "a.1", "slave_id": "S0"}],
                    "completed_tasks": [{"id": "a.0", "slave_id": "S1"}],
                    "unreachable_tasks": []},
                   {"id": "F2", "tasks": [{"id": "a.9", "slave_id": "S0"}]}],
    "completed_frameworks": [{"id": "F1", "completed_tasks": [{"id": "old.1",
                                                               "slave_id": "S1"}]}],
}


def test_the_agent_of_a_task_live_or_ended_from_the_master_state():
    assert find_agent_of_task(STATE, "F1", "a.1") == "S0"
    assert find_agent_of_task(STATE, "F1", "a.0") == "S1"
    assert find_agent_of_task(STATE, "F1", "old.1") == "S1"
    assert find_agent_of_task(STATE, "F1", "a.9") is None  # another framework's task
    assert agent_address(STATE, "S1") == "http://10.0.0.7:5051"
    assert agent_address(STATE, "S9") is None
    assert agent_url_from_pid("garbage") is None
    assert sandbox_path("F1", "a.1") == "/frameworks/F1/executors/a.1/runs/latest"
