"""`PendingReader`: a snapshot read as it will be once a plan's operations are applied (pure).
Checked against applying the same operations to a copy of the snapshot."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from scheduler.pending_reader import PendingReader, merged
from scheduler.state import Delete, Put
from tests.scheduler.state_docs import app_doc, dep


class DictReader:
    """A snapshot held in dicts (deployments in creation order)."""

    def __init__(self, apps=None, deployments=None) -> None:
        self.docs = {"apps": dict(apps or {}), "deployments": dict(deployments or {}),
                     "tasks": {}, "kill_requests": {}, "delay_resets": {}}

    def applied(self, ops) -> DictReader:
        out = copy.deepcopy(self)
        for op in ops:
            if isinstance(op, Put):
                out.docs[op.kind][op.key] = op.doc
            else:
                out.docs[op.kind].pop(op.key, None)
        return out

    def app(self, app_id):
        return self.docs["apps"].get(app_id)

    def apps(self):
        return [self.docs["apps"][k] for k in sorted(self.docs["apps"])]

    def deployment(self, deployment_id):
        return self.docs["deployments"].get(deployment_id)

    def running_deployments(self, app_ids):
        return [d for d in self.docs["deployments"].values()
                if d["status"] == "running" and app_ids & set(d["affectedApps"])]

    def task(self, task_id):
        return self.docs["tasks"].get(task_id)

    def kill_request(self, task_id):
        return self.docs["kill_requests"].get(task_id)

    def delay_reset(self, app_id):
        return self.docs["delay_resets"].get(app_id)

    def generation(self):
        return 7

    def job(self, job_id):  # a method beyond the app reader's (a job reader's)
        return {"name": job_id}


APP_IDS = ["/a", "/b", "/c"]
DEP_IDS = ["d1", "d2", "d3", "d4"]
app_ops = st.builds(lambda i, n, delete: Delete("apps", i) if delete
                    else Put("apps", i, app_doc(i, instances=n)),
                    st.sampled_from(APP_IDS), st.integers(0, 5), st.booleans())
dep_ops = st.builds(lambda i, app, status: Put("deployments", i, dep(i, app, status=status)),
                    st.sampled_from(DEP_IDS), st.sampled_from(APP_IDS),
                    st.sampled_from(["running", "superseded"]))
dep_deletes = st.builds(lambda i: Delete("deployments", i), st.sampled_from(DEP_IDS))
ops_lists = st.lists(st.one_of(app_ops, dep_ops, dep_deletes), max_size=8)


@given(ops_lists, ops_lists)
def test_reads_match_the_snapshot_with_the_ops_applied(stored_ops, pending_ops):
    base = DictReader().applied(stored_ops)
    pending = PendingReader(base)
    pending.add(pending_ops[:3])
    pending.add(pending_ops[3:])
    after = base.applied(pending_ops)
    assert pending.apps() == after.apps()
    for app_id in APP_IDS:
        assert pending.app(app_id) == after.app(app_id)
    for dep_id in DEP_IDS:
        assert pending.deployment(dep_id) == after.deployment(dep_id)
    for app_ids in ({"/a"}, {"/b", "/c"}, set(APP_IDS)):
        assert (sorted(d["id"] for d in pending.running_deployments(app_ids))
                == sorted(d["id"] for d in after.running_deployments(app_ids)))


def test_new_deployments_come_after_the_snapshots_in_creation_order():
    base = DictReader(deployments={"old": dep("old", "/a")})
    pending = PendingReader(base, [Put("deployments", "new2", dep("new2", "/a")),
                                   Put("deployments", "new1", dep("new1", "/a"))])
    assert [d["id"] for d in pending.running_deployments({"/a"})] == ["old", "new2", "new1"]


def test_other_reads_go_to_the_snapshot():
    pending = PendingReader(DictReader(), [Delete("delay_resets", "/a")])
    assert pending.job("j") == {"name": "j"} and pending.generation() == 7
    assert pending.delay_reset("/a") is None and pending.task("t") is None


def test_merged_keeps_one_op_per_key_in_the_first_place():
    first, second = dep("d1", "/a"), dep("d1", "/a", status="superseded")
    ops = [Put("deployments", "d1", first), Put("apps", "/a", app_doc("/a")),
           Put("deployments", "d1", second)]
    assert merged(ops) == (Put("deployments", "d1", second), Put("apps", "/a", app_doc("/a")))
