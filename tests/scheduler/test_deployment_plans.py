"""The plan clients see of a change of several apps (`scheduler.deployment_plans`), from the
apps' own deployment documents as `plan_deployment` and the scheduler leave them."""

from __future__ import annotations

from scheduler.deployment_plans import final_event, mark_part, parts_of, plan_id, plan_of, plans
from scheduler.deployments import plan_deployment

NOW = "2026-12-04T12:00:00.000Z"


def app(app_id: str, instances: int = 1, version: str = NOW) -> dict:
    return {"id": app_id, "cmd": "sleep 60", "instances": instances, "version": version,
            "versionInfo": {"lastConfigChangeAt": version, "lastScalingAt": version}}


PLAN = ["/g/a-dep", "/g/b-dep", "/g/c-dep"]   # the deployments of one change of /g's apps


def part(app_id: str, kind: str, plan: list[str] | None = PLAN, **fields) -> dict:
    old = None if kind == "create" else app(app_id, version="2026-12-01T00:00:00.000Z")
    new = None if kind == "delete" else app(app_id, 3)
    doc = plan_deployment(old, new, now=NOW, deployment_id=f"{app_id}-dep", kind=kind)
    if plan is not None:
        mark_part(doc, plan)
    doc.update(fields)
    return doc


def test_a_plan_is_known_by_its_first_deployments_id_which_lists_them_all():
    first, second = part("/g/a", "scale"), part("/g/b", "scale")
    assert plan_id(first) == plan_id(second) == "/g/a-dep"
    assert first["planParts"] == PLAN and "planParts" not in second


def test_a_change_of_one_app_is_its_own_plan():
    doc = part("/a", "scale", plan=None)
    assert plan_id(doc) == "/a-dep"
    assert plan_of([doc]) is doc
    assert plans([doc], []) == [doc]


def test_the_plan_of_several_apps_holds_every_apps_steps_in_order():
    created, scaled = part("/g/a", "create"), part("/g/b", "scale")
    plan = plan_of([created, scaled])
    assert plan["id"] == "/g/a-dep" and plan["version"] == NOW
    assert plan["affectedApps"] == ["/g/a", "/g/b"] and plan["affectedPods"] == []
    assert plan["steps"] == [
        {"actions": [{"action": "StartApplication", "app": "/g/a"},
                     {"action": "ScaleApplication", "app": "/g/b"}]},
        {"actions": [{"action": "ScaleApplication", "app": "/g/a"}]}]
    assert plan["totalSteps"] == 2 and plan["currentStep"] == 1
    assert [(a["action"], a["app"]) for a in plan["currentActions"]] == [
        ("StartApplication", "/g/a"), ("ScaleApplication", "/g/b")]
    assert plan["status"] == "running" and plan["finishedAt"] is None
    assert plan["parts"] == ["/g/a-dep", "/g/b-dep"]


def test_the_plan_runs_until_its_last_app_is_deployed():
    created = part("/g/a", "create", currentStep=2,
                   currentActions=[{"action": "ScaleApplication", "app": "/g/a"}])
    scaled = part("/g/b", "scale", status="succeeded", finishedAt="2026-12-04T12:00:05.000Z")
    plan = plan_of([created, scaled])
    assert plan["status"] == "running" and plan["finishedAt"] is None
    assert plan["currentStep"] == 2
    assert plan["currentActions"] == [{"action": "ScaleApplication", "app": "/g/a"}]
    done = dict(created, status="succeeded", finishedAt="2026-12-04T12:00:09.000Z")
    plan = plan_of([done, scaled])
    assert plan["status"] == "succeeded" and plan["currentActions"] == []
    assert plan["finishedAt"] == "2026-12-04T12:00:09.000Z" and plan["currentStep"] == 2


def test_a_plan_whose_app_failed_failed_and_its_messages_are_kept():
    failed = part("/g/a", "scale", status="failed", finishedAt=NOW, message="app /g/a is gone")
    cancelled = part("/g/b", "scale", status="cancelled", finishedAt=NOW)
    plan = plan_of([failed, cancelled])
    assert plan["status"] == "failed" and plan["message"] == "app /g/a is gone"
    assert plan_of([cancelled, dict(failed, status="superseded")])["status"] == "cancelled"


def test_running_deployments_become_one_plan_each_where_the_first_stands():
    """A plan is listed once, where its first running part stands, with its finished parts
    (read by id), its apps in the change's order whatever order the parts come in."""
    alone = part("/x", "scale", plan=None)
    finished = part("/g/a", "scale", status="succeeded", finishedAt=NOW)
    b, c = part("/g/b", "scale"), part("/g/c", "delete")
    other = part("/h/d", "scale", plan=["/h/d-dep", "/h/e-dep"])
    listed = plans([c, alone, b, other], {finished["id"]: finished}.get)
    assert [d["id"] for d in listed] == ["/g/a-dep", "/x-dep", "/h/d-dep"]
    assert listed[0]["affectedApps"] == ["/g/a", "/g/b", "/g/c"]
    assert listed[0]["parts"] == PLAN and listed[0]["status"] == "running"
    assert listed[1] is alone
    # a plan whose other part is gone (pruned) is what is left of it
    assert listed[2]["affectedApps"] == ["/h/d"] and listed[2]["parts"] == ["/h/d-dep"]


def test_a_plans_parts_are_read_through_its_first_part():
    a, b, c = part("/g/a", "scale"), part("/g/b", "scale"), part("/g/c", "scale")
    stored = {d["id"]: d for d in (a, b, c)}
    assert [d["id"] for d in parts_of(c, stored.get)] == PLAN
    assert [d["id"] for d in parts_of(a, stored.get)] == PLAN
    del stored["/g/b-dep"]                          # pruned
    assert [d["id"] for d in parts_of(c, stored.get)] == ["/g/a-dep", "/g/c-dep"]
    alone = part("/x", "scale", plan=None)
    assert parts_of(alone, stored.get) == [alone]
    assert parts_of(b, {}.get) == [b]                # its first part is gone


def test_a_plan_ends_with_one_event_once_no_part_runs():
    a, b = part("/g/a", "scale"), part("/g/b", "scale")
    assert final_event([a, b]) is None
    a_done = dict(a, status="succeeded", finishedAt=NOW)
    assert final_event([a_done, b]) is None
    kind, payload = final_event([a_done, dict(b, status="succeeded", finishedAt=NOW)])
    assert kind == "deployment_success" and payload["id"] == "/g/a-dep"
    assert payload["plan"]["affectedApps"] == ["/g/a", "/g/b"]
    kind, payload = final_event([a_done, dict(b, status="failed", finishedAt=NOW)])
    assert kind == "deployment_failed" and payload["plan"]["status"] == "failed"
