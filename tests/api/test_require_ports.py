"""`requirePorts: true` with port 0, as Marathon has it: the app is accepted, its port 0 is given
a service port like any other (`scheduler.service_ports`), and that service port is the host
port every task must get (Marathon's PortsMatcher: with requirePorts the app's port numbers are
the host ports asked of the offer). Before, the definition was refused with a 422."""

from __future__ import annotations

from pathlib import Path

import falcon.testing
import pytest

from api.app import ApiConfig, create_app
from scheduler.placement import LaunchRequest, Unplaced, place
from scheduler.service_ports import PortRange
from scheduler.spec import parse_app
from scheduler.sqlite_state import SQLiteStateStore
from tests.scheduler.builders import make_offer

LOW, HIGH = 31000, 31010  # service ports inside the agents' port range, so they can be offered
APP = {"id": "/rp/web", "cmd": "sleep 100", "cpus": 0.1, "mem": 32, "instances": 2,
       "requirePorts": True, "portDefinitions": [{"port": 0, "name": "http"}, {"port": 0}]}


@pytest.fixture()
def api(tmp_path: Path):
    store = SQLiteStateStore(tmp_path / "state.db")
    config = ApiConfig(state_path="unused", port_range=PortRange(LOW, HIGH))
    yield falcon.testing.TestClient(create_app(config, store)), store
    store.close()


def test_port_zero_with_require_ports_gets_a_service_port_used_as_host_port(api) -> None:
    client, store = api
    assert client.simulate_post("/v2/apps", json={"id": "/rp/first", "cmd": "sleep 1",
                                                  "portDefinitions": [{"port": 0}]}
                                ).status_code == 201  # holds LOW
    r = client.simulate_post("/v2/apps", json=APP)
    assert r.status_code == 201, r.text
    assert r.json["requirePorts"] is True
    assert [d["port"] for d in r.json["portDefinitions"]] == [LOW + 1, LOW + 2]
    # kept across an update that sends 0 again
    r = client.simulate_put("/v2/apps/rp/web", params={"force": "true"},
                            json=dict(APP, cmd="sleep 200"))
    assert r.status_code == 200, r.text
    stored = store.get_app("/rp/web")
    assert [d["port"] for d in stored["portDefinitions"]] == [LOW + 1, LOW + 2]

    # The scheduler places the stored app: the host ports are exactly the service ports, so
    # only an offer holding them fits, once per agent.
    spec = parse_app(stored)
    offers = [make_offer(hostname="h0", offer_id="o0", agent_id="a0", ports=[(LOW, LOW + 9)]),
              make_offer(hostname="h1", offer_id="o1", agent_id="a1", ports=[(32000, 32099)]),
              make_offer(hostname="h2", offer_id="o2", agent_id="a2", ports=[(LOW, LOW + 9)])]
    result = place(offers, [LaunchRequest(spec, 2)], [])
    assert sorted((launch.hostname, launch.ports) for launch in result.launches) == [
        ("h0", [LOW + 1, LOW + 2]), ("h2", [LOW + 1, LOW + 2])]
    result = place(offers[:2], [LaunchRequest(spec, 2)], [])
    assert [launch.hostname for launch in result.launches] == ["h0"]
    assert result.unplaced["/rp/web"] == Unplaced(1, f"port {LOW + 1} not offered")
