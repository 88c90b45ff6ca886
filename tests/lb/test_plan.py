"""The balancer's pure stages: apps → model (labels), model → slots and runtime commands or a
reload, slots → HAProxy configuration text."""

from __future__ import annotations

from lb.config import Settings, render
from lb.model import DRAIN, READY, desired
from lb.slots import MIN_SLOTS, draining, step


def task(tid: str, port: int, **extra) -> dict:
    return {"id": tid, "state": "TASK_RUNNING", "host": "agent1", "ports": [port],
            "ipAddresses": [{"ipAddress": "127.0.1.1", "protocol": "IPv4"}], **extra}


def app(app_id: str = "/a", port: int = 10001, tasks=(), labels=None, checks=None) -> dict:
    return {"id": app_id, "portDefinitions": [{"port": port}],
            "labels": {"HAPROXY_GROUP": "external", **(labels or {})},
            "healthChecks": checks or [], "tasks": list(tasks)}


def test_group_label_selects_apps():
    apps = [app("/a"), app("/b", 10002, labels={"HAPROXY_GROUP": "internal"}),
            dict(app("/c", 10003), labels={})]
    assert [s.app_id for s in desired(apps).services] == ["/a"]
    assert [s.app_id for s in desired(apps, frozenset({"internal"})).services] == ["/b"]
    assert [s.app_id for s in desired(apps, frozenset({"*"})).services] == ["/a", "/b"]


def test_labels_mode_vhost_balance_and_defaults():
    http_checked = app("/h", checks=[{"protocol": "HTTP", "portIndex": 0}])
    vhost = app("/v", 10002, labels={"HAPROXY_0_VHOST": "Ts.example, ts2.example",
                                      "HAPROXY_0_BALANCE": "leastconn"})
    plain = app("/t", 10003)
    bad = app("/x", 10004, labels={"HAPROXY_0_MODE": "udp"})
    model = desired([http_checked, vhost, plain, bad])
    by = {s.app_id: s for s in model.services}
    assert by["/h"].mode == "http" and by["/t"].mode == "tcp"
    assert by["/v"].mode == "http" and by["/v"].vhosts == ("ts.example", "ts2.example")
    assert by["/v"].balance == "leastconn" and by["/t"].balance == "roundrobin"
    assert by["/x"].mode == "tcp" and any("udp" in p for p in model.problems)


def test_unassigned_and_clashing_service_ports_are_skipped():
    model = desired([app("/a", 0), app("/b", 10001), app("/c", 10001)])
    assert [s.app_id for s in model.services] == ["/b"]
    assert len(model.problems) == 2


def test_a_docker_apps_service_ports_are_its_port_mappings():
    bridge = {"id": "/d", "portDefinitions": [], "labels": {"HAPROXY_GROUP": "external"},
              "container": {"type": "DOCKER", "portMappings": [
                  {"containerPort": 8080, "hostPort": 0, "servicePort": 10007},
                  {"containerPort": 9090, "hostPort": 0, "servicePort": 10008}]},
              "tasks": [dict(task("t1", 31001), ports=[31001, 31002])]}
    model = desired([bridge])
    assert [(s.port_index, s.service_port) for s in model.services] == [(0, 10007), (1, 10008)]
    assert [[m.port for m in s.members] for s in model.services] == [[31001], [31002]]


def test_members_running_and_healthy_leaving_ones_drain():
    checks = [{"protocol": "HTTP", "portIndex": 0}]
    tasks = [task("ok", 31001, healthCheckResults=[{"alive": True}]),
             task("sick", 31002, healthCheckResults=[{"alive": False}]),
             task("unchecked-yet", 31003),
             task("staging", 31004, state="TASK_STAGING"),
             task("leaving", 31005, healthCheckResults=[{"alive": True}],
                  killRequested=True, leaving={"reason": "scale down"}),
             task("killed", 31006, healthCheckResults=[{"alive": True}], killRequested=True)]
    svc = desired([app(tasks=tasks, checks=checks)]).services[0]
    assert [(m.task_id, m.host, m.port, m.state) for m in svc.members] == [
        ("leaving", "127.0.1.1", 31005, DRAIN), ("ok", "127.0.1.1", 31001, READY)]
    # no health checks: running is enough, an explicit unhealthy verdict is not
    svc = desired([app(tasks=[task("a", 1), task("b", 2, healthy=False)])]).services[0]
    assert [m.task_id for m in svc.members] == ["a"]


def test_membership_changes_are_runtime_commands_and_slots_stick():
    first = step(None, desired([app(tasks=[task("t1", 31001)])]), 9080)
    assert first.reload and first.commands == ()
    grown = step(first.applied, desired([app(tasks=[task("t1", 31001), task("t2", 31002)])]),
                 9080)
    assert not grown.reload
    assert grown.commands == ("set server a_10001/s2 addr 127.0.1.1 port 31002",
                              "set server a_10001/s2 state ready")
    # t1 leaves: its slot goes to maintenance, t2 keeps s2
    left = step(grown.applied, desired([app(tasks=[task("t2", 31002)])]), 9080)
    assert left.commands == ("set server a_10001/s1 state maint",)
    # a drain is one command, and the drained task is known by its server
    drain = step(grown.applied, desired([app(tasks=[
        task("t1", 31001, killRequested=True, leaving={}), task("t2", 31002)])]), 9080)
    assert drain.commands == ("set server a_10001/s1 state drain",)
    assert draining(drain.applied) == {"t1": ["a_10001/s1"]}
    # the same state again: nothing to do
    assert step(drain.applied, desired([app(tasks=[
        task("t1", 31001, killRequested=True, leaving={}), task("t2", 31002)])]), 9080
    ).commands == ()


def test_layout_changes_and_more_members_than_slots_reload():
    base = step(None, desired([app()]), 9080).applied
    assert step(base, desired([app(), app("/b", 10002)]), 9080).reload
    assert step(base, desired([app(labels={"HAPROXY_0_MODE": "http"})]), 9080).reload
    many = [task(f"t{i}", 31000 + i) for i in range(MIN_SLOTS + 1)]
    bigger = step(base, desired([app(tasks=many)]), 9080)
    assert bigger.reload and len(bigger.applied.slots[0]) == 2 * MIN_SLOTS


def test_config_lists_every_slot_and_routes_vhosts():
    applied = step(None, desired([app(tasks=[task("t1", 31001), task(
        "t2", 31002, killRequested=True, leaving={})], labels={"HAPROXY_0_VHOST": "a.example"})]),
        9080).applied
    text = render(applied, Settings(runtime_socket="/tmp/x.sock", stats_port=9090))
    assert "expose-fd listeners" in text and "bind 127.0.0.1:10001" in text
    assert "bind 127.0.0.1:9080" in text and "-i a.example" in text
    assert "server s1 127.0.1.1:31001  # t1" in text
    assert "server s2 127.0.1.1:31002 disabled" in text  # draining: the new worker sends none
    assert text.count("server s") == MIN_SLOTS


def test_leaving_tasks_are_let_go_when_idle_or_not_routed_here():
    from lb.slots import drained

    applied = step(None, desired([app(tasks=[
        task("t1", 31001, killRequested=True, leaving={"reason": "scale down"}),
        task("t2", 31002, killRequested=True, leaving={"reason": "scale down"}),
        task("t3", 31003)])]), 9080).applied
    # t1 still has a request in flight; t2 is idle; "other" is a task this balancer never
    # routed to (another group's app, or not healthy yet): nothing to wait for
    assert drained({"t1", "t2", "other"}, applied, busy={"a_10001/s1"}) == ["other", "t2"]
    assert drained({"t1"}, applied, busy=set()) == ["t1"]
    assert drained({"x"}, None, busy=set()) == ["x"]


def _apply(slots: dict[str, tuple[str, int, str]], commands) -> None:
    """What HAProxy does with the runtime commands, on a table `server -> (host, port, state)`."""
    for command in commands:
        words = command.split()
        server = words[2]
        host, port, state = slots.get(server, ("127.0.0.1", 1, "maint"))
        if words[3] == "addr":
            slots[server] = (words[4], int(words[6]), state)
        else:
            slots[server] = (host, port, words[4])


def test_runtime_commands_always_reach_the_desired_membership():
    """Property: from any membership to any other, either a reload (whose configuration holds
    the new assignment) or the commands alone make HAProxy route exactly to the desired members,
    in their states, and a member that stays keeps its server."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    member = st.tuples(st.integers(0, 11), st.booleans())  # (task number, leaving)
    memberships = st.lists(st.lists(member, max_size=12, unique_by=lambda m: m[0]),
                           min_size=1, max_size=6)

    @settings(max_examples=150, deadline=None)
    @given(memberships)
    def check(sequence):
        applied, table = None, {}
        for members in sequence:
            tasks = [task(f"t{n}", 31000 + n, **({"killRequested": True, "leaving": {}}
                                                 if leaving else {})) for n, leaving in members]
            before = {s.task_id: i for i, s in enumerate(applied.slots[0])
                      if s.task_id} if applied else {}
            result = step(applied, desired([app(tasks=tasks)]), 9080)
            if result.reload:  # the configuration is the whole truth
                table = {f"a_10001/s{i + 1}": (s.host, s.port, s.state)
                         for i, s in enumerate(result.applied.slots[0])}
            else:
                _apply(table, result.commands)
            routed = {(h, p, st_) for h, p, st_ in table.values() if st_ != "maint"}
            assert routed == {("127.0.1.1", 31000 + n, "drain" if leaving else "ready")
                              for n, leaving in members}
            after = {s.task_id: i for i, s in enumerate(result.applied.slots[0]) if s.task_id}
            assert all(after[t] == before[t] for t in before.keys() & after.keys())
            applied = result.applied

    check()
