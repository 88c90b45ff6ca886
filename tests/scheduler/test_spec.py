"""scheduler.spec: every validation rule, all errors at once, typo hints, the round trip."""

from __future__ import annotations

import copy
import json
import math
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck as HypothesisHealthCheck
from hypothesis import given, settings
from hypothesis import strategies as st

from scheduler.spec import (
    AppSpec,
    Constraint,
    FrozenMap,
    SpecError,
    app_id_to_task_prefix,
    format_time,
    is_scale_only,
    iso_now,
    json_copy,
    merge_patch,
    new_task_id,
    normalize_app_id,
    parse_app,
    parse_time,
    stamp_app,
    task_id_to_app_id,
)
from tests.support import container_ids

REPO = Path(__file__).resolve().parents[2]
BASE = {"id": "/a", "cmd": "sleep 1000"}
WEB = {"id": "/web", "cmd": "serve", "portDefinitions": [{"port": 0, "name": "http"}]}


def app(**fields):
    doc = dict(BASE)
    doc.update(fields)
    return doc


def errors_of(doc) -> dict[str, list[str]]:
    with pytest.raises(SpecError) as info:
        parse_app(doc)
    assert info.value.message == "Object is not valid"
    return {d["path"]: d["errors"] for d in info.value.details}


# -- good documents ------------------------------------------------------------------------------

GOOD = [
    ("minimal", app(), {"id": "/a", "cpus": 1.0, "mem": 128.0, "instances": 1}),
    ("relative id", app(id="prod/timeseries"), {"id": "/prod/timeseries"}),
    ("trailing slash", app(id="/prod/ts/"), {"id": "/prod/ts"}),
    ("dot segments", app(id="/a/./b/../c"), {"id": "/a/c"}),
    ("dots in segment", app(id="/svc.v2/x-1"), {"id": "/svc.v2/x-1"}),
    ("args", {"id": "/a", "args": ["python", "-m", "x"]}, {"args": ("python", "-m", "x"),
                                                          "cmd": None}),
    ("resources", app(cpus=0.1, mem=32, disk=0), {"cpus": 0.1, "mem": 32.0, "disk": 0.0}),
    ("zero instances", app(instances=0), {"instances": 0}),
    ("integral float instances", app(instances=2.0), {"instances": 2}),
    ("legacy ports", app(ports=[0, 8080]), {"port_definitions_ports": [0, 8080]}),
    ("port protocols", app(portDefinitions=[{"port": 1, "protocol": "udp"},
                                            {"port": 2, "protocol": "udp,tcp"}]),
     {"port_definitions_ports": [1, 2]}),
    ("require ports", app(requirePorts=True, portDefinitions=[{"port": 8080}, {"port": 8081}]),
     {"require_ports": True}),
    # Marathon: a 0 is given a service port when stored, which becomes the required host port
    ("require ports with zero", app(requirePorts=True, portDefinitions=[{"port": 0},
                                                                        {"port": 8081}]),
     {"require_ports": True, "port_definitions_ports": [0, 8081]}),
    ("env and labels", app(env={"A": "1", "B/C": ""}, labels={"x": "y"}),
     {"env": {"A": "1", "B/C": ""}, "labels": {"x": "y"}}),
    ("constraints", app(constraints=[["hostname", "UNIQUE"], ["rack", "CLUSTER", "r1"],
                                     ["rack", "CLUSTER"], ["rack", "GROUP_BY"],
                                     ["rack", "GROUP_BY", "3"], ["hostname", "LIKE", "agent[12].*"],
                                     ["hostname", "UNLIKE", "bad"], ["hostname", "MAX_PER", "2"],
                                     ["rack", "IS", "r2"], ["hostname", "MAX_PER", 4]]),
     {"n_constraints": 10}),
    ("health checks", dict(WEB, healthChecks=[
        {"protocol": "HTTP", "path": "/health", "portIndex": 0},
        {"protocol": "TCP"},
        {"protocol": "COMMAND", "command": {"value": "true"}, "delaySeconds": 5},
        {"intervalSeconds": 0.5, "timeoutSeconds": 0.25, "gracePeriodSeconds": 0,
         "maxConsecutiveFailures": 0, "ignoreHttp1xx": False},
    ]), {"n_health_checks": 4}),
    ("backoff", app(backoffSeconds=0, backoffFactor=1.0, maxLaunchDelaySeconds=0),
     {"backoff_seconds": 0.0, "backoff_factor": 1.0, "max_launch_delay_seconds": 0.0}),
    ("upgrade strategy", app(upgradeStrategy={"minimumHealthCapacity": 0.5,
                                              "maximumOverCapacity": 0}),
     {"upgrade_strategy": (0.5, 0.0)}),
    ("kill", app(killSelection="OLDEST_FIRST", taskKillGracePeriodSeconds=2.5),
     {"kill_selection": "OLDEST_FIRST", "task_kill_grace_period_seconds": 2.5}),
    ("command executor and role", app(executor="//cmd", role="prod"),
     {"executor": "//cmd", "role": "prod"}),
    ("nulls mean defaults", app(cpus=None, mem=None, env=None, role=None, healthChecks=None,
                                taskKillGracePeriodSeconds=None, upgradeStrategy=None),
     {"cpus": 1.0, "mem": 128.0}),
    ("read-only fields ignored", app(version="2026-01-01T00:00:00.000Z", tasksRunning=3,
                                     versionInfo={}, deployments=[], tasks=[],
                                     lastTaskFailure=None, taskStats={}, tasksStaged=0,
                                     tasksHealthy=0, tasksUnhealthy=0, readinessCheckResults=[]),
     {"id": "/a"}),
]


@pytest.mark.parametrize("doc,expect", [g[1:] for g in GOOD], ids=[g[0] for g in GOOD])
def test_good_documents(doc, expect):
    spec = parse_app(copy.deepcopy(doc))
    for key, want in expect.items():
        if key == "port_definitions_ports":
            assert [p.port for p in spec.port_definitions] == want
        elif key == "n_constraints":
            assert len(spec.constraints) == want
        elif key == "n_health_checks":
            assert len(spec.health_checks) == want
        elif key == "upgrade_strategy":
            us = spec.upgrade_strategy
            assert (us.minimum_health_capacity, us.maximum_over_capacity) == want
        else:
            assert getattr(spec, key) == want, key
    hash(spec)  # frozen and hashable
    assert parse_app(spec.to_json()) == spec


def test_defaults_and_shapes():
    spec = parse_app(dict(WEB, healthChecks=[{"protocol": "HTTP"},
                                             {"protocol": "COMMAND", "command": {"value": "x"}}]))
    assert spec.disk == 0.0 and spec.require_ports is False and spec.executor == ""
    assert spec.backoff_seconds == 1.0 and spec.backoff_factor == 1.15
    assert spec.max_launch_delay_seconds == 300.0 and spec.kill_selection == "YOUNGEST_FIRST"
    assert spec.task_kill_grace_period_seconds is None and spec.role is None
    assert spec.upgrade_strategy.minimum_health_capacity == 1.0
    assert spec.upgrade_strategy.maximum_over_capacity == 1.0
    assert spec.port_definitions[0].protocol == "tcp" and spec.port_definitions[0].name == "http"
    http, command = spec.health_checks
    assert (http.path, http.port_index, http.grace_period_seconds, http.interval_seconds,
            http.timeout_seconds, http.max_consecutive_failures) == ("/", 0, 300, 60, 20, 3)
    assert command.command == "x"
    js = spec.to_json()
    assert "ports" not in js and js["portDefinitions"] == [
        {"port": 0, "protocol": "tcp", "name": "http", "labels": {}}]
    assert js["healthChecks"][0] == {"protocol": "HTTP", "path": "/", "portIndex": 0,
                                     "gracePeriodSeconds": 300, "intervalSeconds": 60,
                                     "timeoutSeconds": 20, "maxConsecutiveFailures": 3}
    assert js["healthChecks"][1]["command"] == {"value": "x"}
    assert "portIndex" not in js["healthChecks"][1] and "path" not in js["healthChecks"][1]
    assert js["upgradeStrategy"] == {"minimumHealthCapacity": 1, "maximumOverCapacity": 1}
    assert json.loads(json.dumps(js)) == js
    assert isinstance(spec.env, FrozenMap) and dict(spec.env) == {}


def test_legacy_ports_become_port_definitions():
    js = parse_app(app(ports=[0, 9000])).to_json()
    assert "ports" not in js
    assert [p["port"] for p in js["portDefinitions"]] == [0, 9000]


# -- bad documents -------------------------------------------------------------------------------

BAD = [
    ("root id", app(id="/"), "/id", "root group"),
    ("empty id", app(id=""), "/id", "root group"),
    ("missing id", {"cmd": "x"}, "/id", "is required"),
    ("uppercase id", app(id="/Prod"), "/id", "lowercase"),
    ("underscore id", app(id="/a_b"), "/id", "lowercase"),
    ("hyphen edge", app(id="/-a"), "/id", "lowercase"),
    ("empty segment", app(id="/a//b"), "/id", "lowercase"),
    ("escaping root", app(id="/a/../.."), "/id", "leaves the root"),
    ("id type", app(id=5), "/id", "must be a string"),
    ("id trailing newline", app(id="/a\n"), "/id", "lowercase"),
    ("id with spaces", app(id=" /a"), "/id", "lowercase"),
    ("double leading slash", app(id="//a"), "/id", "lowercase"),
    ("port name newline", app(portDefinitions=[{"port": 0, "name": "http\n"}]),
     "/portDefinitions/0/name", "lowercase"),
    ("no command", {"id": "/a"}, "/", "'cmd'"),
    ("both commands", app(args=["x"]), "/", "not both"),
    ("empty args", {"id": "/a", "args": []}, "/args", "non-empty array"),
    ("args of numbers", {"id": "/a", "args": [1]}, "/args", "array of strings"),
    ("empty cmd", {"id": "/a", "cmd": ""}, "/cmd", "must not be empty"),
    ("zero cpus", app(cpus=0), "/cpus", "must be > 0"),
    ("string cpus", app(cpus="1"), "/cpus", "must be a number, got string"),
    ("bool cpus", app(cpus=True), "/cpus", "got boolean"),
    ("nan mem", app(mem=float("nan")), "/mem", "finite"),
    ("negative mem", app(mem=-1), "/mem", "must be > 0"),
    ("negative disk", app(disk=-0.5), "/disk", "must be >= 0"),
    ("bool instances", app(instances=True), "/instances", "got boolean"),
    ("negative instances", app(instances=-1), "/instances", ">= 0"),
    ("fractional instances", app(instances=1.5), "/instances", "integer"),
    ("string instances", app(instances="2"), "/instances", "integer, got string"),
    ("ports and definitions", app(ports=[1], portDefinitions=[{"port": 2}]), "/ports", "not both"),
    ("port out of range", app(portDefinitions=[{"port": 70000}]), "/portDefinitions/0/port",
     "<= 65535"),
    ("negative legacy port", app(ports=[-1]), "/ports/0", ">= 0"),
    ("port missing", app(portDefinitions=[{"protocol": "tcp"}]), "/portDefinitions/0/port",
     "is required"),
    ("bad protocol", app(portDefinitions=[{"port": 0, "protocol": "sctp"}]),
     "/portDefinitions/0/protocol", "must be one of"),
    ("duplicate port names", app(portDefinitions=[{"port": 0, "name": "h"},
                                                  {"port": 0, "name": "h"}]),
     "/portDefinitions/1/name", "more than once"),
    ("bad port name", app(portDefinitions=[{"port": 0, "name": "Http"}]),
     "/portDefinitions/0/name", "lowercase"),
    ("duplicate fixed ports", app(portDefinitions=[{"port": 80}, {"port": 80}]),
     "/portDefinitions/1/port", "more than once"),
    ("require ports duplicate", app(requirePorts=True, portDefinitions=[{"port": 9}, {"port": 9}]),
     "/portDefinitions/1/port", "more than once"),
    ("port labels not strings", app(portDefinitions=[{"port": 0, "labels": {"a": 1}}]),
     "/portDefinitions/0/labels/a", "must be a string"),
    ("requirePorts type", app(requirePorts="yes"), "/requirePorts", "boolean"),
    ("env number", app(env={"A": 1}), "/env/A", "must be a string, got number"),
    ("env secret undefined", app(env={"S": {"secret": "x"}}), "/env/S", "undefined secret"),
    ("env key escaped", app(env={"a/b": 2}), "/env/a~1b", "must be a string"),
    ("env not object", app(env=["A=1"]), "/env", "object of strings"),
    ("labels bool", app(labels={"a": True}), "/labels/a", "got boolean"),
    ("constraint shape", app(constraints=[["hostname"]]), "/constraints/0", "must be an array"),
    ("constraints not list", app(constraints="x"), "/constraints", "must be an array"),
    ("unknown operator", app(constraints=[["hostname", "SPREAD"]]), "/constraints/0",
     "valid operators are UNIQUE, CLUSTER, GROUP_BY, LIKE, UNLIKE, MAX_PER, IS"),
    ("lowercase operator", app(constraints=[["hostname", "unique"]]), "/constraints/0",
     "unknown operator"),
    ("unique with value", app(constraints=[["hostname", "UNIQUE", "x"]]), "/constraints/0",
     "takes no value"),
    ("like without value", app(constraints=[["hostname", "LIKE"]]), "/constraints/0",
     "requires a value"),
    ("unlike bad regex", app(constraints=[["hostname", "UNLIKE", "a["]]), "/constraints/0",
     "regular expression"),
    ("is without value", app(constraints=[["rack", "IS"]]), "/constraints/0", "requires a value"),
    ("max_per zero", app(constraints=[["rack", "MAX_PER", "0"]]), "/constraints/0",
     "positive integer"),
    ("max_per missing", app(constraints=[["rack", "MAX_PER"]]), "/constraints/0",
     "requires a value"),
    ("group_by text", app(constraints=[["rack", "GROUP_BY", "many"]]), "/constraints/0",
     "positive integer"),
    ("constraint empty field", app(constraints=[["", "UNIQUE"]]), "/constraints/0",
     "non-empty string"),
    ("hc protocol", dict(WEB, healthChecks=[{"protocol": "MESOS_HTTPS"}]),
     "/healthChecks/0/protocol", "use one of HTTP, TCP, COMMAND, MESOS_HTTP, MESOS_TCP"),
    ("hc https", dict(WEB, healthChecks=[{"protocol": "HTTPS"}]), "/healthChecks/0/protocol",
     "unsupported protocol"),
    ("hc port index", dict(WEB, healthChecks=[{"portIndex": 1}]), "/healthChecks/0/portIndex",
     "does not index"),
    ("hc no ports", app(portDefinitions=[], healthChecks=[{"protocol": "TCP"}]),
     "/healthChecks/0/portIndex", "defines no ports"),
    ("hc command missing", app(healthChecks=[{"protocol": "COMMAND"}]),
     "/healthChecks/0/command", "need"),
    ("hc command on http", dict(WEB, healthChecks=[{"command": {"value": "x"}}]),
     "/healthChecks/0/command", "only valid for COMMAND"),
    ("hc path on tcp", dict(WEB, healthChecks=[{"protocol": "TCP", "path": "/x"}]),
     "/healthChecks/0/path", "only valid for HTTP"),
    ("hc relative path", dict(WEB, healthChecks=[{"path": "health"}]), "/healthChecks/0/path",
     "start with '/'"),
    ("hc path with newline", dict(WEB, healthChecks=[{"path": "/h\r\nX: y"}]),
     "/healthChecks/0/path", "control characters"),
    ("hc path with space", dict(WEB, healthChecks=[{"path": "/a b"}]), "/healthChecks/0/path",
     "spaces"),
    ("hc timeout", dict(WEB, healthChecks=[{"intervalSeconds": 5, "timeoutSeconds": 5}]),
     "/healthChecks/0/timeoutSeconds", "< intervalSeconds"),
    ("hc default timeout vs interval", dict(WEB, healthChecks=[{"intervalSeconds": 10}]),
     "/healthChecks/0/timeoutSeconds", "< intervalSeconds"),
    ("hc negative failures", dict(WEB, healthChecks=[{"maxConsecutiveFailures": -1}]),
     "/healthChecks/0/maxConsecutiveFailures", ">= 0"),
    ("hc grace type", dict(WEB, healthChecks=[{"gracePeriodSeconds": "10"}]),
     "/healthChecks/0/gracePeriodSeconds", "must be a number"),
    ("hc not object", dict(WEB, healthChecks=["HTTP"]), "/healthChecks/0", "must be an object"),
    ("hc typo", dict(WEB, healthChecks=[{"intervalSecond": 5}]),
     "/healthChecks/0/intervalSecond", "did you mean 'intervalSeconds'?"),
    ("backoff negative", app(backoffSeconds=-1), "/backoffSeconds", ">= 0"),
    ("backoff factor", app(backoffFactor=0.5), "/backoffFactor", ">= 1"),
    ("max launch delay", app(maxLaunchDelaySeconds=-1), "/maxLaunchDelaySeconds", ">= 0"),
    ("min health", app(upgradeStrategy={"minimumHealthCapacity": 1.5}),
     "/upgradeStrategy/minimumHealthCapacity", "<= 1"),
    ("over capacity", app(upgradeStrategy={"maximumOverCapacity": -0.1}),
     "/upgradeStrategy/maximumOverCapacity", ">= 0"),
    ("upgrade typo", app(upgradeStrategy={"minimumHealthCapcity": 1}),
     "/upgradeStrategy/minimumHealthCapcity", "did you mean 'minimumHealthCapacity'?"),
    ("kill selection", app(killSelection="RANDOM"), "/killSelection", "must be one of"),
    ("kill grace negative", app(taskKillGracePeriodSeconds=-1), "/taskKillGracePeriodSeconds",
     ">= 0"),
    ("executor", app(executor="/usr/bin/exec"), "/executor", "must be one of"),
    ("role spaces", app(role="a b"), "/role", "not a valid Mesos role"),
    ("role type", app(role=1), "/role", "must be a string"),
    ("typo", app(instaces=2), "/instaces", "did you mean 'instances'?"),
    ("unknown field", app(zookeeper={"type": "DOCKER"}), "/zookeeper", "unknown field"),
    ("docker container without image", app(container={"type": "DOCKER"}),
     "/container/docker", "needs docker.image"),
    ("docker force pull", app(container={"docker": {"image": "x", "forcePullImage": True}}),
     "/container/docker/forcePullImage", "no Docker registry"),
    ("docker mappings on host", app(container={"docker": {"image": "x"},
                                               "portMappings": [{"containerPort": 80}]}),
     "/container/portMappings", "with host networking use portDefinitions"),
    ("docker bridge with portDefinitions", app(
        container={"docker": {"image": "x"}}, networks=[{"mode": "container/bridge"}],
        portDefinitions=[{"port": 0}]), "/portDefinitions", "container.portMappings"),
    ("docker parameter key", app(container={"docker": {"image": "x", "parameters": [
        {"key": "--privileged", "value": ""}]}}), "/container/docker/parameters/0/key",
     "without dashes"),
    ("docker external volume", app(container={"docker": {"image": "x"}, "volumes": [
        {"containerPath": "/d", "mode": "RW", "external": {"name": "v"}}]}),
     "/container/volumes/0/external", "no volume providers"),
    ("mesos container with image", app(container={"type": "MESOS", "docker": {"image": "x"}}),
     "/container/docker/image", "image provisioner"),
    ("persistent volume", app(container={"type": "MESOS", "volumes": [
        {"containerPath": "data", "mode": "RW", "persistent": {"size": 10}}]}),
     "/container/volumes", "persistent volumes"),
    ("container network", app(networks=[{"mode": "container", "name": "dcos"}]),
     "/networks/0", "IP-per-task"),
    ("ip per task", app(ipAddress={"networkName": "dcos"}), "/ipAddress", "IP-per-task"),
    ("secret source escapes", app(secrets={"s": {"source": "/db/../../x"}}),
     "/secrets/s/source", "'..'"),
    ("secret without source", app(secrets={"s": {"path": "/db"}}), "/secrets/s", "source"),
    ("store urls", app(storeUrls=["http://x"]), "/storeUrls", "artifact store"),
    ("tty", app(tty=True), "/tty", "not supported"),
    ("uris and fetch", app(uris=["http://a/b"], fetch=[{"uri": "http://a/c"}]), "/uris",
     "conjunction with fetch"),
    ("fetch without uri", app(fetch=[{"extract": True}]), "/fetch/0/uri", "required"),
    ("fetch dest escapes", app(fetch=[{"uri": "http://a/b", "destPath": "../x"}]),
     "/fetch/0/destPath", "inside the sandbox"),
    ("gpus negative", app(gpus=-1), "/gpus", ">= 0"),
    ("user empty", app(user=""), "/user", "must not be empty"),
    ("unreachable order", app(unreachableStrategy={"inactiveAfterSeconds": 10,
                                                   "expungeAfterSeconds": 5}),
     "/unreachableStrategy/inactiveAfterSeconds", "less or equal to expungeAfterSeconds"),
    ("unreachable bad", app(unreachableStrategy="sometimes"), "/unreachableStrategy",
     "disabled"),
    ("readiness port name", app(readinessChecks=[{"portName": "http"}]),
     "/readinessChecks/0/portName", "No port definition reference"),
    ("readiness two", app(portDefinitions=[{"port": 0, "name": "http"}],
                          readinessChecks=[{"portName": "http"}, {"portName": "http"}]),
     "/readinessChecks", "at most one"),
    ("readiness timeout", app(portDefinitions=[{"port": 0, "name": "http"}],
                              readinessChecks=[{"portName": "http", "intervalSeconds": 5,
                                                "timeoutSeconds": 5}]),
     "/readinessChecks/0/timeoutSeconds", "< intervalSeconds"),
    ("dependency self", app(dependencies=["/a"]), "/dependencies/0", "itself"),
    ("dependency bad id", app(dependencies=["Bad_Id"]), "/dependencies/0", "not a valid"),
    ("not an object", [BASE], "/", "must be a JSON object"),
    ("string doc", "x", "/", "got string"),
    ("null doc", None, "/", "got null"),
]


@pytest.mark.parametrize("doc,path,fragment", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_documents(doc, path, fragment):
    errs = errors_of(copy.deepcopy(doc))
    assert path in errs, errs
    assert any(fragment in m for m in errs[path]), errs[path]


def test_every_error_at_once():
    doc = {
        "id": "/Bad", "cpus": "one", "mem": 0, "instances": False, "instaces": 1,
        "env": {"A": 1}, "constraints": [["hostname", "NOPE"]],
        "portDefinitions": [{"port": 0}],
        "healthChecks": [{"portIndex": 3, "timeoutSeconds": 99}],
        "upgradeStrategy": {"minimumHealthCapacity": 2},
    }
    errs = errors_of(doc)
    assert set(errs) >= {"/id", "/", "/cpus", "/mem", "/instances", "/instaces", "/env/A",
                         "/constraints/0", "/healthChecks/0/portIndex",
                         "/healthChecks/0/timeoutSeconds",
                         "/upgradeStrategy/minimumHealthCapacity"}


def test_spec_error_shape():
    with pytest.raises(SpecError) as info:
        parse_app(app(cpus=-1))
    err = info.value
    assert err.to_json() == {"message": "Object is not valid",
                             "details": [{"path": "/cpus", "errors": ["must be > 0"]}]}
    assert "/cpus: must be > 0" in str(err)
    assert isinstance(err, ValueError)


def test_far_off_unknown_field_has_no_hint():
    errs = errors_of(app(zzzzzz=1))
    assert errs["/zzzzzz"] == ["unknown field 'zzzzzz'"]


def test_example_apps_parse():
    files = sorted((REPO / "examples" / "apps").glob("*.json"))
    assert len(files) == 3
    for f in files:
        spec = parse_app(json.loads(f.read_text()))
        assert spec.id.startswith("/jpm/")
        assert spec.health_checks[0].path == "/health"
        assert parse_app(spec.to_json()).to_json() == spec.to_json()


def test_normalize_app_id():
    assert normalize_app_id("jpm/timeseries") == "/jpm/timeseries"
    with pytest.raises(SpecError):
        normalize_app_id("/")


# -- round trip ----------------------------------------------------------------------------------

_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,6}[a-z0-9])?", fullmatch=True)
_segment = st.lists(_label, min_size=1, max_size=2).map(".".join)
_app_id = st.lists(_segment, min_size=1, max_size=3).map(lambda s: "/" + "/".join(s))
_text = st.text(max_size=8)
_pos = st.floats(min_value=0.01, max_value=64, allow_nan=False)
_secs = st.one_of(st.integers(0, 600), st.floats(0, 600, allow_nan=False))


@st.composite
def app_docs(draw):
    doc = {"id": draw(_app_id)}
    if draw(st.booleans()):
        doc["cmd"] = draw(st.text(min_size=1, max_size=20))
    else:
        doc["args"] = draw(st.lists(_text, min_size=1, max_size=3))
    for key, strat in [("cpus", _pos), ("mem", _pos), ("disk", st.floats(0, 1e4)),
                       ("instances", st.integers(0, 50)),
                       ("backoffSeconds", _secs), ("backoffFactor", st.floats(1, 5)),
                       ("maxLaunchDelaySeconds", _secs),
                       ("killSelection", st.sampled_from(["YOUNGEST_FIRST", "OLDEST_FIRST"])),
                       ("taskKillGracePeriodSeconds", st.one_of(st.none(), _pos)),
                       ("executor", st.sampled_from(["", "//cmd"])),
                       ("role", st.one_of(st.none(), st.sampled_from(["*", "prod", "a/b"]))),
                       ("env", st.dictionaries(st.text(min_size=1, max_size=5), _text,
                                               max_size=3)),
                       ("labels", st.dictionaries(st.text(min_size=1, max_size=5), _text,
                                                  max_size=3)),
                       ("upgradeStrategy", st.fixed_dictionaries(
                           {}, optional={"minimumHealthCapacity": st.floats(0, 1),
                                         "maximumOverCapacity": st.floats(0, 1)}))]:
        if draw(st.booleans()):
            doc[key] = draw(strat)
    ports = draw(st.lists(st.integers(1, 65535), max_size=3, unique=True))
    nports = len(ports)
    if ports:
        if draw(st.booleans()):
            doc["ports"] = ports
        else:
            doc["portDefinitions"] = [
                {"port": p, "protocol": draw(st.sampled_from(["tcp", "udp", "udp,tcp"])),
                 **({"name": f"p{i}"} if draw(st.booleans()) else {})}
                for i, p in enumerate(ports)]
        doc["requirePorts"] = draw(st.booleans())
    doc["constraints"] = draw(st.lists(st.sampled_from([
        ["hostname", "UNIQUE"], ["rack", "CLUSTER", "r1"], ["rack", "GROUP_BY"],
        ["rack", "GROUP_BY", "2"], ["hostname", "LIKE", "a.*"], ["hostname", "UNLIKE", "b"],
        ["rack", "MAX_PER", "3"], ["rack", "IS", "x"]]), max_size=3))
    checks = []
    for _ in range(draw(st.integers(0, 2))):
        proto = draw(st.sampled_from(["HTTP", "TCP", "COMMAND"] if nports else ["COMMAND"]))
        interval = draw(st.integers(2, 120))
        hc = {"protocol": proto, "intervalSeconds": interval,
              "timeoutSeconds": draw(st.integers(1, interval - 1)),
              "gracePeriodSeconds": draw(_secs),
              "maxConsecutiveFailures": draw(st.integers(0, 10))}
        if proto == "HTTP":
            hc["path"] = "/" + draw(st.text(alphabet="abc/", max_size=5))
        if proto in ("HTTP", "TCP"):
            hc["portIndex"] = draw(st.integers(0, nports - 1))
        if proto == "COMMAND":
            hc["command"] = {"value": "true"}
        checks.append(hc)
    doc["healthChecks"] = checks
    return doc


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HypothesisHealthCheck.too_slow])
@given(app_docs())
def test_round_trip(doc):
    spec = parse_app(doc)
    js = spec.to_json()
    assert parse_app(js).to_json() == js
    assert parse_app(js) == spec
    assert hash(parse_app(js)) == hash(spec)
    assert json.loads(json.dumps(js)) == js


@settings(max_examples=150, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(
                        st.sampled_from(["id", "cmd", "cpus", "instances", "env",
                                         "healthChecks", "constraints", "portDefinitions",
                                         "ports", "upgradeStrategy", "protocol", "port",
                                         "value", "x"]), c, max_size=5),
                    max_leaves=12))
def test_garbage_never_raises_anything_but_spec_error(doc):
    try:
        spec = parse_app(doc)
    except SpecError as err:
        assert err.details and all(d["path"].startswith("/") and d["errors"]
                                   for d in err.details)
    else:
        assert isinstance(spec, AppSpec)


# -- patch, stamping, ids, times -------------------------------------------------------------------

def test_merge_patch_replaces_top_level_fields():
    base = app(env={"A": "1", "B": "2"}, instances=2, version="v1")
    merged = merge_patch(base, {"env": {"C": "3"}, "instances": 5})
    assert merged["env"] == {"C": "3"} and merged["instances"] == 5
    assert merged["cmd"] == "sleep 1000" and base["env"] == {"A": "1", "B": "2"}
    assert merge_patch(app(ports=[1]), {"portDefinitions": [{"port": 2}]}).get("ports") is None
    assert merge_patch(base, {"id": "a"})["id"] == "a"  # same app, relative spelling
    with pytest.raises(SpecError) as info:
        merge_patch(base, {"id": "/other"})
    assert info.value.details[0]["path"] == "/id"
    with pytest.raises(SpecError):
        merge_patch(base, ["x"])


def test_stamp_app_versions():
    t0, t1, t2 = "2026-11-24T06:00:00.000Z", "2026-11-24T06:01:00.000Z", "2026-11-24T06:02:00.000Z"
    created = stamp_app(app(), None, t0, scale_only=False)
    assert created["version"] == t0
    assert created["versionInfo"] == {"lastScalingAt": t0, "lastConfigChangeAt": t0}
    scaled = stamp_app(app(instances=3), created, t1, scale_only=True)
    assert scaled["version"] == t1
    assert scaled["versionInfo"] == {"lastScalingAt": t1, "lastConfigChangeAt": t0}
    changed = stamp_app(app(cmd="other"), scaled, t2, scale_only=False)
    assert changed["versionInfo"] == {"lastScalingAt": t2, "lastConfigChangeAt": t2}
    # created with scale_only=True still counts as a create
    assert stamp_app(app(), None, t0, scale_only=True)["versionInfo"]["lastConfigChangeAt"] == t0
    # echoed read-only fields are replaced, not kept
    assert stamp_app(scaled, scaled, t2, scale_only=True)["versionInfo"]["lastScalingAt"] == t2


def test_stamp_app_shares_nothing_with_its_inputs():
    """One copy of the whole document (not one per field): the stored document still owns
    every nested object, so changing it cannot change the caller's definition or the old app."""
    definition = parse_app(app(env={"A": "1"}, labels={"l": "v"},
                               portDefinitions=[{"port": 10001}])).to_json()
    previous = stamp_app(definition, None, "2026-11-24T06:00:00.000Z", scale_only=False)
    stamped = stamp_app(dict(definition, instances=3), previous, "2026-11-24T06:01:00.000Z",
                        scale_only=True)
    assert not container_ids(stamped) & (container_ids(definition) | container_ids(previous))
    assert list(stamped) == [k for k in definition if k not in ("version", "versionInfo")] + [
        "version", "versionInfo"]
    stamped["env"]["A"] = "2"
    stamped["portDefinitions"][0]["port"] = 10002
    assert definition["env"] == {"A": "1"} and previous["portDefinitions"][0]["port"] == 10001


def test_stamp_app_without_copy_is_the_same_document_sharing_its_values():
    definition = parse_app(app(env={"A": "1"}, portDefinitions=[{"port": 10001}])).to_json()
    previous = stamp_app(definition, None, "2026-11-24T06:00:00.000Z", scale_only=False)
    scaled = dict(definition, instances=3)
    copied = stamp_app(scaled, previous, "2026-11-24T06:01:00.000Z", scale_only=True)
    shared = stamp_app(scaled, previous, "2026-11-24T06:01:00.000Z", scale_only=True,
                       copy=False)
    assert json.dumps(shared) == json.dumps(copied)
    assert shared["env"] is definition["env"] and copied["env"] is not definition["env"]
    assert shared is not scaled and "version" not in scaled


def test_stamp_app_versions_grow_strictly():
    t = "2026-11-24T06:00:00.000Z"
    created = stamp_app(app(), None, t, scale_only=False)
    restarted = stamp_app(app(), created, t, scale_only=False)  # same millisecond
    assert restarted["version"] == "2026-11-24T06:00:00.001Z"
    assert restarted["versionInfo"]["lastConfigChangeAt"] == "2026-11-24T06:00:00.001Z"
    back = stamp_app(app(), restarted, "2026-11-24T05:00:00.000Z", scale_only=True)
    assert back["version"] == "2026-11-24T06:00:00.002Z"  # the clock stepped back
    assert back["versionInfo"]["lastConfigChangeAt"] == "2026-11-24T06:00:00.001Z"


def test_is_scale_only():
    old = stamp_app(parse_app(app(instances=1)).to_json(), None, "t", scale_only=False)
    assert is_scale_only(old, app(instances=4))
    assert is_scale_only(old, app())  # identical: nothing restarts
    assert not is_scale_only(old, app(instances=4, cpus=2))
    assert not is_scale_only(None, app())


def test_task_ids():
    assert app_id_to_task_prefix("/jpm/timeseries") == "jpm_timeseries"
    tid = new_task_id("/jpm/time.series")
    prefix, hexpart = tid.rsplit(".", 1)
    assert prefix == "jpm_time.series" and len(hexpart) == 32
    assert task_id_to_app_id(tid) == "/jpm/time.series"


def test_times():
    assert format_time(0) == "1970-01-01T00:00:00.000Z"
    assert format_time(1.5) == "1970-01-01T00:00:01.500Z"
    s = "2026-11-24T06:30:00.123Z"
    assert format_time(parse_time(s)) == s
    assert parse_time("2026-11-24T07:30:00.123+01:00") == parse_time(s)
    assert parse_time("2026-11-24T06:30:00Z") == pytest.approx(parse_time(s) - 0.123)
    now = iso_now()
    assert now.endswith("Z") and len(now) == len(s)


@given(st.floats(min_value=-62_135_000_000, max_value=253_402_300_000, allow_nan=False))
def test_format_time_is_the_strftime_form(epoch: float) -> None:
    """The isoformat fast path writes what strftime wrote (years below 1000 keep strftime)."""
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    assert format_time(epoch) == (dt.strftime("%Y-%m-%dT%H:%M:%S.")
                                  + f"{dt.microsecond // 1000:03d}Z")


def test_constraint_json_form():
    assert Constraint("hostname", "UNIQUE").to_json() == ["hostname", "UNIQUE"]
    spec = parse_app(app(constraints=[["rack", "MAX_PER", 2]]))
    assert spec.to_json()["constraints"] == [["rack", "MAX_PER", "2"]]


def test_frozen_map_is_an_immutable_hashable_dict():
    import pickle

    spec = parse_app(app(env={"A": "1"}, labels={"b": "2"}))
    env = spec.env
    assert isinstance(env, dict) and env == {"A": "1"} and {**env, "C": "3"} == {"A": "1",
                                                                                "C": "3"}
    assert json.dumps(env) == '{"A": "1"}'
    for mutate in (lambda m: m.__setitem__("x", "y"), lambda m: m.__delitem__("A"),
                   lambda m: m.update(x="y"), lambda m: m.pop("A"), lambda m: m.clear(),
                   lambda m: m.setdefault("x", "y"), lambda m: m.popitem()):
        with pytest.raises(TypeError):
            mutate(env)
    with pytest.raises(TypeError):
        env |= {"x": "y"}
    assert spec.env == {"A": "1"}
    assert copy.deepcopy(spec) == spec and pickle.loads(pickle.dumps(spec)) == spec
    assert hash(FrozenMap({"a": "1", "b": "2"})) == hash(FrozenMap({"b": "2", "a": "1"}))
    assert len({spec, parse_app(app(env={"A": "1"}, labels={"b": "2"}))}) == 1


_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-3, 70000) | st.floats(allow_nan=True)
    | st.text(max_size=4),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=4), c, max_size=3),
    max_leaves=6)
_VALID = dict(WEB, instances=2, env={"A": "1"}, constraints=[["hostname", "UNIQUE"]],
              healthChecks=[{"protocol": "HTTP", "path": "/h", "portIndex": 0}],
              upgradeStrategy={"minimumHealthCapacity": 0.5})
_PATHS = [("cpus",), ("instances",), ("env",), ("env", "A"), ("constraints",),
          ("constraints", 0), ("constraints", 0, 1), ("healthChecks", 0),
          ("healthChecks", 0, "portIndex"), ("healthChecks", 0, "protocol"),
          ("portDefinitions",), ("portDefinitions", 0), ("portDefinitions", 0, "port"),
          ("upgradeStrategy",), ("upgradeStrategy", "minimumHealthCapacity"), ("id",),
          ("cmd",), ("args",), ("ports",), ("labels",), ("role",), ("executor",)]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _json_values), min_size=1, max_size=3))
def test_mutated_valid_documents_fail_cleanly(mutations):
    """Any value anywhere in an otherwise valid document: either a valid spec that round-trips,
    or a SpecError whose every path is a JSON pointer into the document."""
    doc = copy.deepcopy(_VALID)
    for path, value in mutations:
        target = doc
        for key in path[:-1]:
            if isinstance(target, dict) and key in target:
                target = target[key]
            elif isinstance(target, list) and isinstance(key, int) and key < len(target):
                target = target[key]
            else:
                break
        else:
            if isinstance(target, dict) or (isinstance(target, list) and isinstance(
                    path[-1], int) and path[-1] < len(target)):
                target[path[-1]] = value
    try:
        spec = parse_app(doc)
    except SpecError as err:
        assert err.details
        for d in err.details:
            assert d["path"].startswith("/")  # ("/x/" is a pointer to the key "" of x)
            assert d["errors"] and all(isinstance(m, str) and m for m in d["errors"])
    else:
        assert parse_app(spec.to_json()) == spec


# -- the whole Marathon 1.x app definition ---------------------------------------------------
MARATHON = REPO / "tests" / "data" / "marathon"


@pytest.mark.parametrize("name", ["app-export-1.10.json", "app-export-1.4.json"])
def test_marathon_exports_parse_unchanged(name):
    """A `GET /v2/apps/{id}` answer of Marathon, every field with its empty, null or default
    value and the read-only fields, is a valid definition as it is."""
    doc = json.loads((MARATHON / name).read_text())["app"]
    spec = parse_app(copy.deepcopy(doc))
    assert spec.cmd == doc["cmd"] and spec.args is None and spec.user is None
    assert [p.port for p in spec.port_definitions] == [p["port"] for p in doc["portDefinitions"]]
    assert parse_app(spec.to_json()) == spec


def test_default_port_definition_and_explicit_none():
    """Marathon's normalisation: no portDefinitions (or null) is one port 0 named "default",
    so $PORT0 and portIndex 0 health checks work; `[]` is no ports."""
    spec = parse_app(app(healthChecks=[{"protocol": "HTTP", "path": "/"}]))
    assert [(p.port, p.name) for p in spec.port_definitions] == [(0, "default")]
    assert parse_app(app(portDefinitions=None)).port_definitions == spec.port_definitions
    assert parse_app(app(portDefinitions=[])).port_definitions == ()
    assert parse_app(app(ports=[])).port_definitions == ()
    assert parse_app(parse_app(app(portDefinitions=[])).to_json()).port_definitions == ()


def test_fields_with_effect_parse_to_the_spec():
    spec = parse_app({
        "id": "/g/web", "args": ["python3", "-m", "http.server"], "gpus": 1, "user": "nobody",
        "uris": ["http://127.0.0.1:1/data.tar.gz", "http://127.0.0.1:1/run.sh?x=1"],
        "acceptedResourceRoles": ["*", "ml"], "dependencies": ["db", "/other/cache"],
        "portDefinitions": [{"port": 0, "name": "http"}],
        "readinessChecks": [{"portName": "http", "path": "/ready", "intervalSeconds": 2,
                             "timeoutSeconds": 1}],
        "unreachableStrategy": "disabled", "container": {"type": "MESOS", "volumes": []},
        "networks": [{"mode": "host"}], "secrets": {}, "residency": None, "tty": False})
    assert spec.args == ("python3", "-m", "http.server") and spec.gpus == 1
    assert spec.user == "nobody" and spec.accepted_resource_roles == ("*", "ml")
    assert [(f.uri.rsplit("/", 1)[1], f.extract) for f in spec.fetch] == [
        ("data.tar.gz", True), ("run.sh?x=1", False)]
    assert spec.dependencies == ("/g/db", "/other/cache")
    assert spec.readiness_checks[0].path == "/ready"
    assert spec.unreachable_strategy.enabled is False
    out = spec.to_json()
    assert out["unreachableStrategy"] == "disabled" and "uris" not in out
    assert out["fetch"][0] == {"uri": "http://127.0.0.1:1/data.tar.gz", "extract": True,
                               "executable": False, "cache": False}
    assert parse_app(out) == spec
    fetched = parse_app(app(fetch=[{"uri": "http://h/x.zip", "extract": False,
                                    "executable": True, "cache": True, "destPath": "bin/x"}]))
    assert fetched.fetch[0].to_mesos() == {"value": "http://h/x.zip", "extract": False,
                                           "executable": True, "cache": True,
                                           "output_file": "bin/x"}


def test_mesos_health_check_protocols_and_marathon_fields_of_checks():
    spec = parse_app(app(healthChecks=[
        {"protocol": "MESOS_HTTP", "path": "/h", "portIndex": 0, "ipProtocol": "IPv4",
         "port": None, "delaySeconds": 15},
        {"protocol": "MESOS_TCP", "portIndex": 0}]))
    assert [h.protocol for h in spec.health_checks] == ["MESOS_HTTP", "MESOS_TCP"]
    assert spec.health_checks[0].to_json()["path"] == "/h"
    assert parse_app(spec.to_json()) == spec
    errs = errors_of(app(healthChecks=[{"protocol": "HTTPS"}, {"ipProtocol": "IPv6"},
                                       {"port": 8080}]))
    assert any("TLS" in m for m in errs["/healthChecks/0/protocol"])
    assert errs["/healthChecks/1/ipProtocol"] and errs["/healthChecks/2/port"]


# -- json_copy ------------------------------------------------------------------------------------
def test_json_copy_is_an_exact_independent_deep_copy() -> None:
    shared = [1, 2]
    doc = {"a": shared, "b": shared, "n": float("nan"), "big": 10**30, "s": "é\ud800",
           "t": True, "none": None, "nested": [{"x": {"y": [0.1]}}]}
    out = json_copy(doc)
    assert list(out) == list(doc) and out["big"] == 10**30 and math.isnan(out["n"])
    assert out["s"] == doc["s"] and out["t"] is True and out["nested"] == doc["nested"]
    out["a"].append(3)                      # held twice: two independent copies
    out["nested"][0]["x"]["y"].append(1)
    assert shared == [1, 2] and out["b"] == [1, 2] and doc["nested"][0]["x"]["y"] == [0.1]


def test_json_copy_shares_what_is_not_json() -> None:
    class Tagged(dict):
        pass

    thing = object()
    doc = {"a": [Tagged(k=[1])], "o": thing}
    out = json_copy(doc)
    assert out == doc and out["o"] is thing and out["a"][0] == {"k": [1]}
    out["a"][0]["k"].append(2)
    assert doc["a"][0]["k"] == [1]
