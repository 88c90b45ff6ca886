"""`accessd scheduler --master zk://…/mesos` against localmesos announced in a real ZooKeeper:
the scheduler finds the master through ZooKeeper; comes back as the same framework with the same
tasks after a master failover in place; and, when the leading master goes away for good, follows
ZooKeeper to the next contender at another address, where its app is brought back up."""

from __future__ import annotations

import time

from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import (
    agent_resources,
    deploy_app,
    mesos_tasks,
    start_scheduler,
    store_tasks,
)
from tests.fixtures_zk import start_zookeeper
from tests.support import assert_no_traceback, wait_until

APP = {"id": "/it/zk", "cmd": "sleep 600", "cpus": 0.1, "mem": 32, "instances": 2}


def registered_lines(sched) -> list[str]:
    return [line for line in sched.lines if "registered framework_id=" in line]


def test_scheduler_finds_the_master_through_zookeeper_and_follows_it(tmp_path) -> None:
    from scheduler.sqlite_state import open_state

    zk = start_zookeeper(tmp_path)
    mesos = standby = sched = store = None
    try:
        mesos = start_localmesos(tmp_path / "mesos", agents=3, resources=agent_resources(),
                                 extra_args=("--zk", zk.url("/mesos")))
        store = open_state(str(tmp_path / "state.db"))
        sched = start_scheduler(zk.url("/mesos"), tmp_path / "state.db",
                                ["--refuse-seconds", "1"])
        framework_id = sched.framework_id
        assert f"master=127.0.0.1:{mesos.port}" in registered_lines(sched)[0]
        deploy_app(store, APP)
        tasks = wait_until(lambda: (lambda ids: ids if len(ids) == 2 else None)(
            {t["id"] for t in store_tasks(store, APP["id"])}), timeout=30,
            message="two tasks running")

        # The restart drops the stream (pymesos reconnects at once) and then replaces the
        # znode (delete, create: pymesos's detector sees no master, then the new one, and
        # reconnects again): one re-registration or two, depending on which comes first. So
        # wait for any, and check every one.
        before = len(registered_lines(sched))
        started = time.monotonic()
        mesos.restart_master()
        wait_until(lambda: len(registered_lines(sched)) > before, timeout=60,
                   message="re-registration through ZooKeeper")
        print(f"master failover -> re-registered via ZooKeeper in "
              f"{time.monotonic() - started:.2f}s")
        assert all(f"registered framework_id={framework_id} master=127.0.0.1:{mesos.port}"
                   in line for line in registered_lines(sched)[before:])
        wait_until(lambda: set(mesos_tasks(mesos.state(), framework_id, ("TASK_RUNNING",)))
                   == tasks, timeout=30, message="the same tasks running after failover")
        assert {t["id"] for t in store_tasks(store, APP["id"], None)} == tasks

        # A second master contends (a higher sequence number); the leader leaves for good.
        standby = start_localmesos(tmp_path / "standby", agents=3, resources=agent_resources(),
                                   extra_args=("--zk", zk.url("/mesos")))
        started = time.monotonic()
        mesos.stop()
        at_standby = f"master=127.0.0.1:{standby.port}"
        last = wait_until(lambda: [line for line in registered_lines(sched)
                                   if at_standby in line], timeout=60,
                          message="registration with the standby master")[-1]
        print(f"leader gone -> registered with the standby in {time.monotonic() - started:.2f}s"
              " (including the old cluster's shutdown)")
        assert f"registered framework_id={framework_id} {at_standby}" in last
        wait_until(lambda: len(mesos_tasks(standby.state(), framework_id,
                                           ("TASK_RUNNING",))) == 2,
                   timeout=60, message="the app running again on the standby's agents")
        on_standby = set(mesos_tasks(standby.state(), framework_id, ("TASK_RUNNING",)))
        assert not on_standby & tasks
        wait_until(lambda: {t["id"] for t in store_tasks(store, APP["id"], None)} == on_standby,
                   timeout=30, message="the store holding just the new tasks")
    finally:
        if sched is not None:
            sched.stop()
        if store is not None:
            store.close()
        for cluster in (mesos, standby):
            if cluster is not None:
                cluster.stop()
        zk.stop()
    assert_no_traceback([sched])
