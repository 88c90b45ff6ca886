"""Service ports of Docker apps on a container network: Marathon keeps them in
`container.portMappings[].servicePort` and assigns the ones left 0 (or absent) exactly as for
`portDefinitions` (its AssignDynamicServiceLogic works on `app.servicePorts`, the mappings' when
there are any): unique across all apps, kept across updates, shown in the app's JSON and in each
task's `servicePorts`. Before, a mapping's servicePort was stored as sent (0) and tasks got the
host-port definitions as `servicePorts`. In process: the API and the scheduler's worker on one
SQLite store; the driver only records."""

from __future__ import annotations

import queue
from pathlib import Path

import falcon.testing
import pytest

from api.app import ApiConfig, create_app
from scheduler.framework import Worker
from scheduler.service_ports import PortRange
from scheduler.sqlite_state import SQLiteStateStore
from tests.scheduler.builders import make_offer

LOW, HIGH = 12000, 12010


def docker_app(app_id: str, *mappings: dict, **extra) -> dict:
    return {"id": app_id, "cpus": 0.1, "mem": 32, "instances": 2,
            "container": {"type": "DOCKER", "docker": {"image": "accessd/busybox:latest"},
                          "portMappings": list(mappings)},
            "networks": [{"mode": "container/bridge"}], **extra}


class RecordingDriver:
    framework_id = "F1"

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def __getattr__(self, name: str):
        return lambda *args, **kwargs: self.calls.append((name, args))


@pytest.fixture()
def stack(tmp_path: Path):
    store = SQLiteStateStore(tmp_path / "state.db")
    config = ApiConfig(state_path="unused", port_range=PortRange(LOW, HIGH))
    yield falcon.testing.TestClient(create_app(config, store)), store
    store.close()


def mapped_service_ports(app: dict) -> list[int]:
    return [m["servicePort"] for m in app["container"]["portMappings"]]


def test_port_mappings_get_unique_service_ports_kept_and_shown_in_tasks(stack) -> None:
    client, store = stack
    r = client.simulate_post("/v2/apps", json={"id": "/host", "cmd": "sleep 1",
                                               "portDefinitions": [{"port": 0}]})
    assert r.status_code == 201 and r.json["portDefinitions"][0]["port"] == LOW
    web = docker_app("/web", {"containerPort": 8080},
                     {"containerPort": 9090, "hostPort": 0, "servicePort": 0},
                     {"containerPort": 7070, "servicePort": LOW + 5})
    r = client.simulate_post("/v2/apps", json=web)
    assert r.status_code == 201, r.text
    assert mapped_service_ports(r.json) == [LOW + 1, LOW + 2, LOW + 5]
    assert r.json["portDefinitions"] == []
    assert mapped_service_ports(client.simulate_get("/v2/apps/web").json["app"]) == \
        [LOW + 1, LOW + 2, LOW + 5]

    # kept across an update that sends them as 0/absent again (a real change: the command)
    r = client.simulate_put("/v2/apps/web", params={"force": "true"},
                            json=dict(web, cmd="sleep 200"))
    assert r.status_code == 200, r.text
    assert mapped_service_ports(store.get_app("/web")) == [LOW + 1, LOW + 2, LOW + 5]
    # the same definition again (ports 0/absent) is no config change
    changed_at = store.get_app("/web")["versionInfo"]["lastConfigChangeAt"]
    r = client.simulate_put("/v2/apps/web", params={"force": "true"},
                            json=dict(web, cmd="sleep 200"))
    assert r.status_code == 200, r.text
    assert store.get_app("/web")["versionInfo"]["lastConfigChangeAt"] == changed_at
    # unique across apps, also between portDefinitions and portMappings
    r = client.simulate_post("/v2/apps", json=docker_app("/other", {"containerPort": 80},
                                                         {"containerPort": 81}))
    assert r.status_code == 201, r.text
    assert mapped_service_ports(r.json) == [LOW + 3, LOW + 4]
    r = client.simulate_post("/v2/apps", json=docker_app(
        "/clash", {"containerPort": 80, "servicePort": LOW + 2}))
    assert r.status_code == 422
    assert r.json["details"] == [{"path": "/container/portMappings/0/servicePort",
                                  "errors": [f"service port {LOW + 2} is already used by "
                                             "app /web"]}]
    assert store.get_app("/clash") is None

    # the scheduler's tasks carry the app's service ports; the API shows them
    worker = Worker(store, RecordingDriver(), queue.Queue(), clock=lambda: 1_795_000_000.0)
    worker.subscribed = True
    worker.handle("offers", ([make_offer(ports=[(31000, 31020)])],))
    tasks = client.simulate_get("/v2/apps/web/tasks").json["tasks"]
    assert len(tasks) == 2
    assert all(t["servicePorts"] == [LOW + 1, LOW + 2, LOW + 5] for t in tasks)
    assert all(len(t["ports"]) == 3 for t in tasks)  # host ports, one per mapping
