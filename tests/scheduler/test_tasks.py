"""TaskInfo building for both executors: data, env, ports, health checks, kill policy."""

from __future__ import annotations

import base64
import json
import re

from executor import taskinfo
from scheduler.placement import LaunchRequest, place
from scheduler.tasks import build_task_info, new_task_id, task_name
from tests.data import recording
from tests.scheduler.builders import make_app, make_offer

VERSION = "2026-11-24T06:30:00.123Z"


def launch_for(app, **offer_kw):
    offer = make_offer(hostname="127.0.1.1", offer_id="o1", agent_id="S1",
                       ports=[(31000, 31010)], **offer_kw)
    (launch,) = place([offer], [LaunchRequest(app, 1)], []).launches
    return launch


def build(app, task_id="jpm_ts.abc"):
    launch = launch_for(app)
    return launch, build_task_info(launch, app, task_id=task_id, config_version=VERSION,
                                   executor_python="/venv/bin/python")


def decode(info):
    return json.loads(base64.b64decode(info["data"]))


def full_app(**overrides):
    fields = dict(
        cmd="python -m http.server $PORT0", cpus=0.5, mem=64.0,
        portDefinitions=[{"port": 0, "name": "http"}, {"port": 0, "name": "admin-api"}],
        env={"APP_VAR": "x", "PORT0": "overridden-by-us"}, labels={"team": "jpm"},
        healthChecks=[{"protocol": "HTTP", "path": "/health", "portIndex": 1,
                       "gracePeriodSeconds": 5, "intervalSeconds": 2, "timeoutSeconds": 1,
                       "maxConsecutiveFailures": 4}],
        taskKillGracePeriodSeconds=2.5)
    fields.update(overrides)
    return make_app("/jpm/ts", **fields)


def test_new_task_id_and_name():
    tid = new_task_id("/jpm/timeseries")
    assert re.fullmatch(r"jpm_timeseries\.[0-9a-f]{32}", tid)
    assert new_task_id("/jpm/timeseries") != tid
    assert task_name("/jpm/timeseries") == "timeseries.jpm"


def test_accessd_executor_task_info():
    app = full_app()
    launch, info = build(app)
    assert info["task_id"] == {"value": "jpm_ts.abc"} and info["agent_id"] == {"value": "S1"}
    assert info["name"] == "ts.jpm"
    assert info["resources"] == launch.resources
    assert "command" not in info
    ex = info["executor"]
    assert ex["executor_id"] == {"value": "jpm_ts.abc"}
    assert ex["command"] == {"value": "/venv/bin/python -m executor", "shell": True}
    assert ex["resources"] == []
    assert info["kill_policy"] == {"grace_period": {"nanoseconds": 2_500_000_000}}
    assert info["labels"]["labels"] == [
        {"key": "team", "value": "jpm"}, {"key": "accessd.app", "value": "/jpm/ts"},
        {"key": "accessd.version", "value": VERSION}]

    data = decode(info)
    assert data["appId"] == "/jpm/ts" and data["cmd"] == "python -m http.server $PORT0"
    assert "args" not in data
    assert data["ports"] == [31000, 31001] == launch.ports
    assert data["host"] == "127.0.1.1"
    env = data["env"]
    assert env["APP_VAR"] == "x"
    assert (env["PORT0"], env["PORT1"], env["PORT"], env["PORTS"]) == \
        ("31000", "31001", "31000", "31000,31001")
    assert env["PORT_HTTP"] == "31000" and env["PORT_ADMIN_API"] == "31001"
    assert env["HOST"] == "127.0.1.1" and env["MESOS_TASK_ID"] == "jpm_ts.abc"
    assert env["MARATHON_APP_ID"] == "/jpm/ts" and env["MARATHON_APP_VERSION"] == VERSION
    assert env["MARATHON_APP_LABEL_TEAM"] == "jpm"
    assert data["healthChecks"] == [app.health_checks[0].to_json()]
    assert data["healthChecks"][0]["portIndex"] == 1

    hc = info["health_check"]
    assert hc["type"] == "HTTP"
    assert hc["http"] == {"port": 31001, "path": "/health", "scheme": "http"}
    assert (hc["interval_seconds"], hc["timeout_seconds"], hc["consecutive_failures"],
            hc["grace_period_seconds"], hc["delay_seconds"]) == (2, 1, 4, 5, 0)


def test_executor_parses_our_task_info():
    """The executor's own decoder accepts what we build (the contract, end to end)."""
    app = full_app()
    launch, info = build(app)
    cfg = taskinfo.parse_task(info)
    assert cfg.app_id == "/jpm/ts" and cfg.ports == (31000, 31001)
    assert cfg.env["PORT0"] == "31000" and cfg.kill_grace_seconds == 2.5
    assert len(cfg.health_checks) == 1


def test_command_executor_task_info():
    app = full_app(executor="//cmd", healthChecks=[
        {"protocol": "TCP", "portIndex": 0, "gracePeriodSeconds": 3}],
        taskKillGracePeriodSeconds=None)
    launch, info = build(app)
    assert "executor" not in info and "data" not in info and "kill_policy" not in info
    cmd = info["command"]
    assert cmd["shell"] is True and cmd["value"] == "python -m http.server $PORT0"
    env = {v["name"]: v["value"] for v in cmd["environment"]["variables"]}
    assert env["PORT0"] == "31000" and env["PORTS"] == "31000,31001"
    assert env["APP_VAR"] == "x" and env["MESOS_TASK_ID"] == "jpm_ts.abc"
    assert env["MARATHON_APP_ID"] == "/jpm/ts" and env["HOST"] == "127.0.1.1"
    hc = info["health_check"]
    assert hc["type"] == "TCP" and hc["tcp"] == {"port": 31000} and hc["grace_period_seconds"] == 3


def test_args_under_both_executors():
    app = make_app("/a", cmd=None, args=["python", "-m", "http.server"])
    _, info = build(app)
    assert decode(info)["args"] == ["python", "-m", "http.server"] and "cmd" not in decode(info)
    app = make_app("/a", cmd=None, args=["python", "-m", "http.server"], executor="//cmd")
    _, info = build(app)
    assert info["command"]["shell"] is False
    assert info["command"]["value"] == "python"
    assert info["command"]["arguments"] == ["python", "-m", "http.server"]


def test_command_health_check_and_no_ports():
    app = make_app("/a", healthChecks=[{"protocol": "COMMAND", "command": {"value": "true"}}])
    _, info = build(app)
    hc = info["health_check"]
    assert hc["type"] == "COMMAND" and hc["command"]["value"] == "true"
    assert hc["command"]["shell"] is True
    env = decode(info)["env"]
    assert "PORT" not in env and "PORTS" not in env and "PORT0" not in env


def test_task_info_is_json_serialisable_and_resources_match_recording_shape():
    _, info = build(full_app())
    json.dumps(info)
    for r in info["resources"]:
        assert r["allocation_info"] == {"role": "*"}
        assert set(r) <= {"name", "type", "scalar", "ranges", "role", "allocation_info"}


def test_recorded_offer_to_recorded_launch_shape():
    """Placing on the recorded Mesos 1.12 offer gives the resources the recorded ACCEPT carried
    (the recording omits the deprecated `role: "*"`; both forms are accepted by Mesos)."""
    events = recording("scheduler_events.json")
    offer = next(r["event"]["offers"]["offers"][0] for r in events
                 if r["event"].get("type") == "OFFERS")
    calls = recording("scheduler_calls.json")
    accept = next(c["request"] for c in calls if c["request"].get("type") == "ACCEPT"
                  and c["request"]["accept"]["operations"])
    recorded = accept["accept"]["operations"][0]["launch"]["task_infos"][0]

    app = make_app("/env", cpus=0.1, mem=32, portDefinitions=[{"port": 0}], executor="//cmd")
    (launch,) = place([offer], [LaunchRequest(app, 1)], []).launches
    info = build_task_info(launch, app, task_id="env.x", config_version=VERSION,
                           executor_python="python3")
    ours = [{k: v for k, v in r.items() if k != "role"} for r in info["resources"]]
    theirs = sorted(recorded["resources"], key=lambda r: ["cpus", "mem", "ports"].index(r["name"]))
    assert ours == theirs
    assert info["agent_id"] == recorded["agent_id"]
    assert info["command"]["shell"] is True and launch.ports == [31000]


def test_fetch_and_user_go_into_the_command_info_that_starts_the_process():
    fields = {"fetch": [{"uri": "http://127.0.0.1:9/app.tgz"},
                        {"uri": "http://127.0.0.1:9/run.sh", "extract": False,
                         "executable": True, "destPath": "bin/run.sh"}],
              "user": "nobody"}
    uris = [{"value": "http://127.0.0.1:9/app.tgz", "extract": True, "executable": False,
             "cache": False},
            {"value": "http://127.0.0.1:9/run.sh", "extract": False, "executable": True,
             "cache": False, "output_file": "bin/run.sh"}]
    _, cmd_info = build(make_app("/f", executor="//cmd", **fields))
    assert cmd_info["command"]["uris"] == uris and cmd_info["command"]["user"] == "nobody"
    _, exec_info = build(make_app("/f", **fields))
    # accessd's executor: the task runs in the executor's sandbox, so the executor's command
    # carries them (the agent fetches before it starts the executor)
    assert exec_info["executor"]["command"]["uris"] == uris
    assert exec_info["executor"]["command"]["user"] == "nobody"
    _, plain = build(make_app("/f", executor="//cmd"))
    assert "uris" not in plain["command"] and "user" not in plain["command"]


def test_gpus_are_a_scalar_demand_like_cpus():
    app = make_app("/gpu", gpus=1)
    without = make_offer(hostname="a1", offer_id="o1")
    assert place([without], [LaunchRequest(app, 1)], []).unplaced["/gpu"].reason == \
        "insufficient gpus"
    with_gpu = make_offer(hostname="a2", offer_id="o2", extra_resources=[
        {"name": "gpus", "type": "SCALAR", "scalar": {"value": 2.0}, "role": "*",
         "allocation_info": {"role": "*"}}])
    (launch,) = place([with_gpu], [LaunchRequest(app, 1)], []).launches
    assert [r["scalar"]["value"] for r in launch.resources if r["name"] == "gpus"] == [1.0]


def test_accepted_resource_roles_limit_the_offers_an_app_takes():
    reserved = make_offer(hostname="a1", offer_id="o1", role="ml")
    public = make_offer(hostname="a2", offer_id="o2")
    only_ml = make_app("/ml", role="ml", acceptedResourceRoles=["ml"])
    (launch,) = place([public, reserved], [LaunchRequest(only_ml, 1)], [], role="ml").launches
    assert launch.hostname == "a1"
    only_star = make_app("/star", role="ml", acceptedResourceRoles=["*"])
    (launch,) = place([reserved, public], [LaunchRequest(only_star, 1)], [], role="ml").launches
    assert launch.hostname == "a2"
    assert place([reserved], [LaunchRequest(only_star, 1)], [], role="ml").unplaced
