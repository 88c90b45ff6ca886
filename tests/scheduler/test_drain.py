"""The drain contract's decisions (scheduler.drain), pure."""

from __future__ import annotations

from scheduler import drain, reconcile
from scheduler.spec import format_time

NOW = 1_800_000_000.0


def balancer(name: str, drained=(), expires_in: float = 10.0) -> dict:
    return {"name": name, "drained": list(drained), "expiresAt": format_time(NOW + expires_in)}


def test_only_planned_removals_drain():
    assert drain.drainable(reconcile.KILL_SCALE_DOWN, False, False)
    assert drain.drainable(reconcile.KILL_REPLACED, False, False)
    assert drain.drainable(reconcile.KILL_REQUESTED, False, False)
    assert not drain.drainable("unhealthy: 500", True, False)       # out of rotation already
    assert not drain.drainable(reconcile.KILL_EXPUNGED, True, True)
    assert not drain.drainable(reconcile.KILL_APP_DELETED, False, False)


def test_expired_leases_do_not_count():
    live = drain.live_balancers([balancer("a"), balancer("b", expires_in=-0.1),
                                 {"name": "broken", "expiresAt": "soon"}], NOW)
    assert [b["name"] for b in live] == ["a"]


def test_release_waits_for_every_live_balancer_until_the_deadline():
    task = {"id": "t1", "leaving": drain.leaving_mark("scale down", NOW, 5.0)}
    assert drain.release({"id": "t1"}, [], NOW) == "not draining"
    assert drain.release(task, [], NOW) == "no balancer"
    both = [balancer("a", ["t1"]), balancer("b")]
    assert drain.release(task, both, NOW) is None
    assert drain.release(task, [balancer("a", ["t1"]), balancer("b", ["t1"])],
                         NOW) == "drained by a, b"
    # a balancer whose lease ran out is not waited for
    assert drain.release(task, [balancer("a", ["t1"]), balancer("b", expires_in=-1)],
                         NOW) == "drained by a"
    assert drain.release(task, both, NOW + 5.0) == "drain deadline"
