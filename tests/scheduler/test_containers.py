"""Marathon's `container` into the Mesos TaskInfo (scheduler.spec.container, scheduler.containers):
the ContainerInfo Marathon builds for a Docker app, its ports and environment in each network
mode, and the JSON round trip."""

from __future__ import annotations

from scheduler.placement import LaunchRequest, place
from scheduler.spec import parse_app
from scheduler.tasks import build_task_info
from tests.scheduler.builders import make_offer

VERSION = "2026-11-24T06:30:00.123Z"


def build(doc):
    app = parse_app({"id": "/c/app", "cpus": 0.5, "mem": 64, **doc})
    offer = make_offer(hostname="agent1.localmesos", offer_id="o1", agent_id="S1",
                       ports=[(31000, 31010)])
    (launch,) = place([offer], [LaunchRequest(app, 1)], []).launches
    info = build_task_info(launch, app, task_id="c_app.1", config_version=VERSION,
                           executor_python="/venv/bin/python")
    env = {v["name"]: v["value"] for v in info["command"]["environment"]["variables"]}
    return app, launch, info, env


def test_a_bridge_app_maps_offer_ports_to_container_ports():
    app, launch, info, env = build({
        "cmd": "serve", "networks": [{"mode": "container/bridge"}],
        "container": {"type": "DOCKER", "docker": {"image": "accessd/python:latest"},
                      "portMappings": [{"containerPort": 8080, "hostPort": 0, "name": "http"},
                                       {"containerPort": 0, "hostPort": 0}]},
        "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0}]})
    first, second = launch.ports
    assert "executor" not in info and "data" not in info  # Mesos's docker executor, not ours
    assert info["container"] == {"type": "DOCKER", "docker": {
        "image": "accessd/python:latest", "network": "BRIDGE", "privileged": False,
        "force_pull_image": False,
        "port_mappings": [{"host_port": first, "container_port": 8080, "protocol": "tcp"},
                          {"host_port": second, "container_port": second, "protocol": "tcp"}]}}
    assert info["command"] == {"shell": True, "value": "serve",
                               "environment": info["command"]["environment"]}
    assert env["PORT0"] == str(first) and env["PORTS"] == f"{first},{second}"
    assert env["PORT_8080"] == str(first) and env["PORT_HTTP"] == str(first)
    assert env["MARATHON_APP_DOCKER_IMAGE"] == "accessd/python:latest"
    assert info["health_check"]["http"]["port"] == first  # reached through the mapping


def test_a_host_network_docker_app_with_args_volumes_and_parameters():
    app, launch, info, env = build({
        "args": ["httpd", "-f"], "portDefinitions": [{"port": 0}],
        "container": {"docker": {"image": "busybox", "privileged": False,
                                 "parameters": [{"key": "label", "value": "team=jpm"}]},
                      "volumes": [{"containerPath": "/data", "hostPath": "/srv/q",
                                   "mode": "RO"}]}})
    assert info["container"] == {
        "type": "DOCKER",
        "volumes": [{"container_path": "/data", "host_path": "/srv/q", "mode": "RO"}],
        "docker": {"image": "busybox", "network": "HOST", "privileged": False,
                   "force_pull_image": False,
                   "parameters": [{"key": "label", "value": "team=jpm"}]}}
    assert info["command"]["shell"] is False and info["command"]["arguments"] == ["httpd", "-f"]
    assert "value" not in info["command"]  # the args follow the image's entrypoint
    assert env["PORT0"] == str(launch.ports[0])


def test_a_docker_app_may_leave_the_command_to_its_image():
    _, _, info, _ = build({"container": {"docker": {"image": "busybox"}}})
    assert info["command"]["shell"] is False and "value" not in info["command"]


def test_the_marathon_json_round_trips():
    doc = {"id": "/c/rt", "cmd": "x", "networks": [{"mode": "container/bridge"}],
           "container": {"type": "DOCKER", "docker": {"image": "i", "network": "BRIDGE"},
                         "portMappings": [{"containerPort": 80, "servicePort": 10001}]}}
    app = parse_app(doc)
    out = app.to_json()
    assert out["networks"] == [{"mode": "container/bridge"}] and out["portDefinitions"] == []
    assert out["container"]["portMappings"] == [{"containerPort": 80, "hostPort": 0,
                                                 "servicePort": 10001, "protocol": "tcp",
                                                 "labels": {}}]
    assert parse_app(out) == app


def test_legacy_docker_network_and_mappings_are_read():
    app = parse_app({"id": "/c/legacy", "cmd": "x", "container": {
        "type": "DOCKER", "docker": {"image": "i", "network": "BRIDGE",
                                     "portMappings": [{"containerPort": 80}]}}})
    assert app.container.network == "BRIDGE"
    assert [m.container_port for m in app.container.port_mappings] == [80]
    assert [p.port for p in app.port_definitions] == [0]
