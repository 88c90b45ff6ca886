"""Job definitions: Chronos fields, defaults, every problem named, graph checks."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scheduler.jobs.spec import (
    JobError,
    check_graph,
    find_cycle,
    job_json,
    parse_job,
)

NOW = 1_790_000_000.0

CHRONOS_SAMPLE = {  # the sample job of Chronos's API docs, as a client sends it back
    "name": "camus_kafka2hdfs", "command": "/srv/kafka_hdfs_job.bash",
    "arguments": ["-verbose", "-debug"], "shell": False, "epsilon": "PT30M", "executor": "",
    "executorFlags": "", "retries": 2, "owner": "bofh@your-company.com", "async": False,
    "successCount": 190, "errorCount": 3, "lastSuccess": "2014-03-08T16:57:17.507Z",
    "lastError": "2014-03-01T00:10:15.957Z", "cpus": 1.0, "disk": 10240, "mem": 1024,
    "disabled": False, "schedule": "R/2014-03-08T20:00:00.000Z/PT2H",
    "environmentVariables": [{"name": "JVMOPTS", "value": "-Xmx1000m"}],
}


def test_chronos_sample_job_is_accepted_and_read_only_fields_ignored():
    spec = parse_job(CHRONOS_SAMPLE, kind="iso8601", now=NOW)
    assert spec.name == "camus_kafka2hdfs" and spec.retries == 2 and not spec.shell
    assert spec.environment_variables == (("JVMOPTS", "-Xmx1000m"),)
    out = job_json(spec, {"successCount": 5})
    assert out["successCount"] == 5 and out["errorCount"] == 0  # ours, not the client's
    assert out["schedule"] == "R/2014-03-08T20:00:00.000Z/PT2H"
    assert "parents" not in out


def test_defaults_are_chronos_defaults():
    spec = parse_job({"name": "a", "command": "true", "schedule": "R/2026-01-01T00:00:00Z/PT1S"},
                     kind="iso8601", now=NOW)
    out = spec.to_json()
    assert (out["retries"], out["cpus"], out["mem"], out["disk"], out["epsilon"],
            out["shell"], out["disabled"]) == (2, 0.1, 128.0, 256.0, "PT60S", True, False)


def test_empty_start_is_fixed_at_post_time():
    spec = parse_job({"name": "a", "command": "true", "schedule": "R5//PT1M"}, kind="iso8601",
                     now=NOW)
    assert spec.schedule.startswith("R5/2026-") and spec.schedule.endswith("/PT1M")
    assert spec.parsed_schedule().start_epoch == pytest.approx(NOW)


def test_every_problem_is_named_at_once():
    with pytest.raises(JobError) as info:
        parse_job({"name": "bad/name", "schedule": "R/yesterday/PT1S", "epsilon": "soon",
                   "retries": -1, "cpus": 0, "mem": "lots", "constraints": [["rack", "NEAR", "x"]],
                   "environmentVariables": [{"name": 1}], "containr": {}, "container": {
                       "type": "DOCKER"}, "scheduleTimeZone": "Mars/Base"},
                  kind="iso8601", now=NOW)
    paths = {d["path"] for d in info.value.details}
    assert paths == {"/name", "/command", "/schedule", "/epsilon", "/retries", "/cpus", "/mem",
                     "/constraints/0", "/environmentVariables/0", "/containr", "/container",
                     "/scheduleTimeZone"}
    text = str(info.value)
    assert "did you mean 'container'" not in text  # container is known: it says unsupported
    assert "invalid ISO 8601 start time" in text and "unknown scheduleTimeZone" in text


def test_kind_must_match_endpoint():
    with pytest.raises(JobError, match="required for a dependent job"):
        parse_job({"name": "a", "command": "x", "schedule": "R/2026-01-01T00:00:00Z/PT1S"},
                  kind="dependency", now=NOW)
    with pytest.raises(JobError, match="required for a scheduled job"):
        parse_job({"name": "a", "command": "x", "parents": ["b"]}, kind="iso8601", now=NOW)
    with pytest.raises(JobError, match="not both"):
        parse_job({"name": "a", "command": "x", "parents": ["b"],
                   "schedule": "R/2026-01-01T00:00:00Z/PT1S"}, now=NOW)
    with pytest.raises(JobError, match="depend on itself"):
        parse_job({"name": "a", "command": "x", "parents": ["a"]}, kind="dependency", now=NOW)


def _dep(name, *parents):
    return parse_job({"name": name, "command": "x", "parents": list(parents)}, now=NOW)


def _sched(name):
    return parse_job({"name": name, "command": "x", "schedule": "R/2026-01-01T00:00:00Z/PT1S"},
                     now=NOW)


def test_graph_unknown_parent_and_cycle():
    jobs = {"a": _sched("a"), "b": _dep("b", "a", "ghost")}
    assert check_graph(jobs, "b") == [{"path": "/parents",
                                       "errors": ["unknown parent job 'ghost'"]}]
    jobs = {"a": _dep("a", "c"), "b": _dep("b", "a"), "c": _dep("c", "b")}
    problems = check_graph(jobs, "c")
    assert problems[0]["errors"][0].startswith("dependency cycle: ")
    assert set(problems[0]["errors"][0][18:].split(" -> ")) == {"a", "b", "c"}


@given(st.dictionaries(st.sampled_from("abcdefgh"), st.sets(st.sampled_from("abcdefgh"),
                                                            max_size=3), max_size=8))
def test_find_cycle_agrees_with_topological_sort(graph):
    graph = {k: {p for p in v if p in graph} for k, v in graph.items()}
    # Kahn: a graph is acyclic iff every node can be removed in dependency order
    remaining = {k: set(v) for k, v in graph.items()}
    while True:
        free = [k for k, v in remaining.items() if not v]
        if not free:
            break
        for k in free:
            del remaining[k]
        for v in remaining.values():
            v.difference_update(free)
    cycle = find_cycle(graph)
    assert (cycle is None) == (not remaining)
    if cycle:
        assert cycle[0] == cycle[-1]
        for child, parent in zip(cycle, cycle[1:], strict=False):
            assert parent in graph[child]


def test_fetch_and_uris_as_chronos_shows_them_both():
    spec = parse_job({"name": "f", "command": "./run.sh", "schedule": "R/2030-01-01T00:00:00Z/PT1H",
                      "fetch": [{"uri": "file:///tmp/run.sh", "executable": True,
                                 "extract": False, "outputFile": "run.sh"}]})
    out = spec.to_json()
    assert out["uris"] == ["file:///tmp/run.sh"]
    assert out["fetch"] == [{"uri": "file:///tmp/run.sh", "executable": True, "cache": False,
                             "extract": False, "outputFile": "run.sh"}]
    assert parse_job(out) == spec  # sent back as listed: both fields, in agreement
    old = parse_job({"name": "u", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/PT1H",
                     "uris": ["http://h/a.tgz"]})
    assert old.to_json()["fetch"] == [{"uri": "http://h/a.tgz", "executable": False,
                                       "cache": False, "extract": True}]
    with pytest.raises(JobError) as err:
        parse_job({"name": "b", "command": "x", "schedule": "R/2030-01-01T00:00:00Z/PT1H",
                   "uris": ["http://h/other"], "fetch": [{"uri": "http://h/a", "extract": "yes",
                                                          "outputFile": "../x", "bogus": 1},
                                                         {"executable": True}]})
    paths = {d["path"] for d in err.value.details}
    assert paths == {"/uris", "/fetch/0", "/fetch/0/extract", "/fetch/0/outputFile",
                     "/fetch/1/uri"}
