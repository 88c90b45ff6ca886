"""Status updates in batches: one store transaction per batch, acknowledgements only after its
commit, and nothing lost or applied twice when the scheduler dies mid-batch.

In-process tests use a real SQLite store and a driver that records (or dies on) ACKNOWLEDGE;
the last test kills a real `accessd scheduler` with SIGKILL while a launch's updates stream in,
restarts it, and checks every update was applied exactly once (the agent re-sends what was not
acknowledged)."""

from __future__ import annotations

import queue
import signal

import pytest

from scheduler.framework import Worker
from scheduler.sqlite_state import SQLiteStateStore
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import deploy_app, scale_app, start_scheduler
from tests.scheduler.test_framework import NOW, put_app, put_task, status
from tests.support import wait_until


class Died(BaseException):
    """The scheduler process dying (not an Exception: the worker's guard must not catch it)."""


class CountingStore(SQLiteStateStore):
    def __init__(self, path):
        super().__init__(path)
        self.transactions = 0
        self.fail_next = False

    def transact(self, plan):
        self.transactions += 1
        if self.fail_next:  # dies inside the transaction: SQLite rolls it back
            self.fail_next = False

            def dying(reader):
                plan(reader)
                raise Died()
            return super().transact(dying)
        return super().transact(plan)


class Driver:
    """Records acknowledgements with what the store held for the task at that moment; dies
    (like a SIGKILLed process) at the `die_at`-th one."""

    def __init__(self, store, die_at=None):
        self.store, self.die_at = store, die_at
        self.acks: list[tuple[str, str | None]] = []

    def acknowledgeStatusUpdate(self, st):
        if self.die_at is not None and len(self.acks) + 1 == self.die_at:
            raise Died()
        task = self.store.get_task(st["task_id"]["value"])
        self.acks.append((st["task_id"]["value"], task and task["state"]))

    def killTask(self, task_id):
        pass


def updates(tasks, *states):
    return [status(t["id"], s) for s in states for t in tasks]


def state_events(store):
    return sorted((e["taskId"], e["taskStatus"]) for _, e in store.events_since(0, 100_000)
                  if e["eventType"] == "status_update_event")


def test_queued_updates_are_one_transaction_and_acknowledged_after_it(tmp_path):
    store = CountingStore(tmp_path / "state.db")
    put_app(store, instances=5)
    tasks = [put_task(store, n, state="TASK_STAGING") for n in range(1, 6)]
    driver = Driver(store)
    work: queue.Queue = queue.Queue()
    worker = Worker(store, driver, work, clock=lambda: NOW)
    for st in updates(tasks, "TASK_STARTING", "TASK_RUNNING"):
        work.put(("status", (st,)))
    before = store.transactions
    worker.start()  # not subscribed: its ticks do nothing, so every write is the batch's
    try:
        wait_until(lambda: len(driver.acks) == 10, timeout=10, message="10 acknowledgements")
    finally:
        worker.stop()
    assert store.transactions - before == 1
    # each acknowledged once the store held the batch, i.e. the task's final state
    assert driver.acks == [(t["id"], "TASK_RUNNING") for t in tasks] * 2
    assert state_events(store) == sorted(
        (t["id"], s) for t in tasks for s in ("TASK_STARTING", "TASK_RUNNING"))
    store.close()


@pytest.mark.parametrize("die_at", [1, 3, 5])
def test_dying_after_the_commit_mid_acknowledgements_loses_nothing(tmp_path, die_at):
    path = tmp_path / "state.db"
    store = CountingStore(path)
    put_app(store, instances=5)
    tasks = [put_task(store, n, state="TASK_STAGING") for n in range(1, 5)]
    tasks.append(put_task(store, 5, state="TASK_RUNNING"))
    # As an agent sends them: one update of a task in flight at a time.
    batch = (updates(tasks[:2], "TASK_STARTING") + updates(tasks[2:4], "TASK_RUNNING")
             + updates(tasks[4:], "TASK_FAILED"))
    driver = Driver(store, die_at=die_at)
    with pytest.raises(Died):
        Worker(store, driver, queue.Queue(), clock=lambda: NOW).on_status_batch(batch)
    store.close()
    # The agents re-send every update not acknowledged; a new scheduler on the same store
    # applies them again: no second event, the same documents, the failure counted once.
    acked = len(driver.acks)
    assert acked == die_at - 1
    store = CountingStore(path)
    again = Driver(store)
    Worker(store, again, queue.Queue(), clock=lambda: NOW).on_status_batch(batch[acked:])
    assert len(again.acks) == len(batch) - acked
    assert state_events(store) == sorted(
        [(t["id"], "TASK_STARTING") for t in tasks[:2]]
        + [(t["id"], "TASK_RUNNING") for t in tasks[2:4]] + [(tasks[4]["id"], "TASK_FAILED")])
    assert [store.get_task(t["id"])["state"] for t in tasks[:4]] == \
        ["TASK_STARTING"] * 2 + ["TASK_RUNNING"] * 2
    assert store.get_task(tasks[4]["id"]) is None
    assert store.get_app_status("/a")["consecutiveFailures"] == 1
    store.close()


def test_dying_inside_the_transaction_stores_and_acknowledges_nothing(tmp_path):
    path = tmp_path / "state.db"
    store = CountingStore(path)
    put_app(store, instances=2)
    tasks = [put_task(store, n, state="TASK_STAGING") for n in range(1, 3)]
    batch = updates(tasks, "TASK_RUNNING")
    driver = Driver(store)
    store.fail_next = True
    with pytest.raises(Died):
        Worker(store, driver, queue.Queue(), clock=lambda: NOW).on_status_batch(batch)
    assert driver.acks == []
    assert [store.get_task(t["id"])["state"] for t in tasks] == ["TASK_STAGING"] * 2
    assert state_events(store) == []
    Worker(store, driver, queue.Queue(), clock=lambda: NOW).on_status_batch(batch)
    assert driver.acks == [(t["id"], "TASK_RUNNING") for t in tasks]
    assert state_events(store) == sorted((t["id"], "TASK_RUNNING") for t in tasks)
    store.close()


def test_killed_scheduler_mid_launch_applies_every_update_once(tmp_path):
    lm = start_localmesos(tmp_path, agents=2, resources="cpus:32;mem:32768;disk:10000;"
                          "ports:[31000-31999]", extra_args=("--status-update-retry", "1"))
    state = tmp_path / "state.db"
    sched = None
    try:
        sched = start_scheduler(lm.master, state)
        store = SQLiteStateStore(state)

        def running_events():
            return [e for e in state_events(store) if e[1] == "TASK_RUNNING"]

        # SIGKILL while the updates stream in: some stored, some not yet. A whole wave can be
        # stored in one batch before the kill lands (a loaded machine queues them all): then
        # nothing would be tested, so another wave is launched, at most twice more.
        n, wave = 0, 150
        for _attempt in range(3):
            before = len(running_events())
            n += wave
            if n == wave:
                deploy_app(store, {"id": "/batch", "executor": "//cmd", "cmd": "exec sleep 600",
                                   "cpus": 0.01, "mem": 8, "instances": n,
                                   "portDefinitions": []})
            else:  # a scale: the tasks of the waves before stay as they are
                scale_app(store, "/batch", n, force=True)
            wait_until(lambda seen=before: len(running_events()) > seen, timeout=60,
                       interval=0.01, message="the wave's first TASK_RUNNING")
            sched.popen.send_signal(signal.SIGKILL)
            sched.popen.wait(10)
            if len(running_events()) < n:
                break  # killed mid-launch
            sched = start_scheduler(lm.master, state)
        else:
            pytest.fail("every wave was stored whole before the kill: nothing was tested")
        sched = start_scheduler(lm.master, state)
        wait_until(lambda: len(store.list_tasks("/batch")) == n and all(
            t["state"] == "TASK_RUNNING" for t in store.list_tasks("/batch")), timeout=120,
            message=f"{n} tasks RUNNING in the store")
        ids = {t["id"] for t in store.list_tasks("/batch")}
        events = state_events(store)
        for state_name in ("TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"):
            got = sorted(e[0] for e in events if e[1] == state_name)
            assert got == sorted(ids), f"{state_name}: each task once"
        mesos_running = {t["id"] for f in lm.state()["frameworks"] for t in f["tasks"]
                         if t["state"] == "TASK_RUNNING"}
        assert mesos_running == ids
        store.close()
    finally:
        if sched is not None:
            sched.stop()
        lm.stop()


def test_a_batchs_plain_progress_is_one_line_per_state_and_the_rest_one_line_each(tmp_path):
    from scheduler import status_batch
    from scheduler.periodic_round import spec_or_none

    store = SQLiteStateStore(tmp_path / "state.db")
    put_app(store, instances=4)
    tasks = [put_task(store, n, state="TASK_STAGING") for n in range(1, 5)]
    batch = updates(tasks[:3], "TASK_STARTING", "TASK_RUNNING")
    batch.append(status(tasks[3]["id"], "TASK_FAILED", message="Executor terminated"))
    batch.append(status(tasks[0]["id"], "TASK_RUNNING"))  # a repeat: nothing new, no line
    outcome = store.transact(lambda r: status_batch.plan_batch(
        r, batch, NOW, store.get_app_status, spec_or_none))
    ids = " ".join(t["id"] for t in tasks[:3])
    assert outcome.log_lines == [f"task {tasks[3]['id']} TASK_FAILED (Executor terminated)",
                                 f"3 tasks TASK_STARTING: {ids}",
                                 f"3 tasks TASK_RUNNING: {ids}"]
    assert len(outcome.acknowledge) == len(batch)
    store.close()
