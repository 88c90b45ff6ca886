"""High availability on a real 3-server ZooKeeper ensemble, localmesos, two schedulers and the
API on the ZooKeeper store: a standby takes over from a killed, paused or abdicating leader with
every task kept and none launched twice; the loss of one ZooKeeper server goes unnoticed; without
quorum nothing is launched or killed, writes get 503 and reads still answer.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest
import requests

from tests.fixtures_ha import HaCluster, running_ha_cluster
from tests.support import wait_until

APP = "/ha/web"


@pytest.fixture(scope="module")
def ha(tmp_path_factory):
    with running_ha_cluster(tmp_path_factory.mktemp("ha")) as cluster:
        yield cluster


def scale(ha: HaCluster, instances: int) -> requests.Response:
    return requests.put(f"{ha.api}/v2/apps{APP}?force=true", json={"instances": instances},
                        timeout=15)


def settle(ha: HaCluster, instances: int, timeout: float = 60) -> None:
    wait_until(lambda: ha.deployments_done() and ha.consistent(APP, instances), timeout=timeout,
               interval=0.2, message=f"{instances} tasks, store == Mesos, no deployment left")


# Each test starts from what it needs (`ensure_app`: /ha/web deployed), so none depends on the
# tests before it; in file order the first test creates it and the others find it.
def post_app(ha: HaCluster) -> requests.Response:
    return requests.post(ha.api + "/v2/apps", json={
        "id": APP, "cmd": "sleep 600", "cpus": 0.1, "mem": 16, "executor": "//cmd",
        "instances": 3}, timeout=15)


def ensure_app(ha: HaCluster) -> None:
    if requests.get(f"{ha.api}/v2/apps{APP}", timeout=10).status_code == 404:
        assert post_app(ha).status_code == 201
        settle(ha, 3)


def test_one_leader_and_the_api_on_zookeeper(ha):
    leader = ha.leader()
    # the first scheduler started was the first elected (a later test may have moved it on)
    assert any("elected leader sched-1 " in line for line in ha.schedulers["sched-1"].lines)
    assert leader in ha.schedulers
    r = requests.get(ha.api + "/v2/info", timeout=5)
    info = r.json()
    assert info["leader"] == leader and info["elected"] is False  # the API is not sched-1
    assert info["frameworkId"] == ha.framework_id
    assert info["zookeeper_config"]["zk"].startswith("zk://127.0.0.1:")
    assert r.headers["X-Marathon-Leader"] == f"http://{leader}"
    if requests.get(f"{ha.api}/v2/apps{APP}", timeout=10).status_code == 200:
        r = requests.delete(f"{ha.api}/v2/apps{APP}?force=true", timeout=15)
        assert r.status_code == 200, r.text
        wait_until(lambda: not ha.mesos_ids("ha_web.") and ha.deployments_done(), timeout=60,
                   message=f"{APP} gone before it is created again")
    r = post_app(ha)
    assert r.status_code == 201, r.text
    settle(ha, 3)


def test_kill9_leader_a_standby_takes_over_with_every_task(ha):
    """Three leader kills, each during a deployment (scale up, scale down, rolling restart);
    at most one scheduler leads at any sampled instant."""
    ensure_app(ha)
    leaders: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.05):
            leaders.append(ha.leading_count())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        for instances, restart in ((5, False), (3, False), (3, True)):
            old = ha.leader()
            before = ha.mesos_ids("ha_web.")
            if restart:
                r = requests.post(f"{ha.api}/v2/apps{APP}/restart?force=true", timeout=15)
            else:
                r = scale(ha, instances)
            assert r.status_code == 200, r.text
            ha.schedulers[old].signal(signal.SIGKILL)
            killed_at = time.monotonic()
            new = ha.wait_new_leader(old, timeout=ha.session_timeout + 15)
            print(f"leader {old} killed; {new} subscribed and reconciled after "
                  f"{time.monotonic() - killed_at:.2f}s")
            assert ha.schedulers[new].wait_for_line(
                lambda line: f"registered framework_id={ha.framework_id}" in line, 5)
            ha.add_scheduler().wait_for_line(lambda line: "waiting to be elected" in line, 30)
            settle(ha, instances)
            after = ha.mesos_ids("ha_web.")
            if restart:  # a rolling restart replaces every task, by design
                assert not before & after
            elif instances >= len(before):  # scaled up: every task kept
                assert before <= after
            else:  # scaled down: only kills, no task started twice
                assert after <= before
    finally:
        stop.set()
        sampler.join()
    assert leaders and max(leaders) == 1, leaders
    frameworks = [f for f in ha.mesos.state()["frameworks"] if f.get("name") == "accessd"]
    assert [f["id"] for f in frameworks] == [ha.framework_id]


def test_abdication_through_the_api(ha):
    ensure_app(ha)
    old = ha.leader()
    r = requests.delete(ha.api + "/v2/leader", timeout=5)
    assert r.status_code == 200 and r.json() == {"message": "Leadership abdicted"}
    started = time.monotonic()
    new = ha.wait_new_leader(old, timeout=ha.session_timeout + 10)
    print(f"abdication: {old} -> {new} in {time.monotonic() - started:.2f}s")
    ha.schedulers[old].wait_for_line(lambda line: "campaigning again" in line, 10)
    assert scale(ha, 3).status_code == 200
    settle(ha, 3)


def test_paused_leader_is_fenced_and_steps_down(ha):
    ensure_app(ha)
    old = ha.leader()
    proc = ha.schedulers[old]
    proc.signal(signal.SIGSTOP)
    try:
        new = ha.wait_new_leader(old, timeout=ha.session_timeout + 15)
        assert scale(ha, 4).status_code == 200
        settle(ha, 4)
        mark, new_mark = len(proc.lines), len(ha.schedulers[new].lines)
    finally:
        proc.signal(signal.SIGCONT)
    proc.wait_for_line(lambda line: "campaigning again" in line, 30)
    settle(ha, 4)
    after = proc.lines[mark:]
    # pymesos reconnects by itself: the old leader must not subscribe again (Mesos would fail
    # the new leader's connection over to it, and the two would take turns)
    assert not [line for line in ha.schedulers[new].lines[new_mark:] if "failed over" in line]
    # none of the old leader's launches or kills happened (each is logged after its fenced
    # write landed), and the new leader still leads
    assert not [line for line in after if "launching task" in line or "killing task" in line]
    assert ha.leader() == new
    time.sleep(2)  # the old leader's last round, if any, would have shown by now
    assert ha.consistent(APP, 4)


def test_zookeeper_server_loss_and_quorum_loss(ha):
    ensure_app(ha)
    zk = ha.zk
    leader_server = zk.modes().index("leader")
    zk.stop_server(leader_server)  # the ensemble's own leader: the others elect a new one
    assert scale(ha, 5).status_code == 200
    settle(ha, 5)
    zk.start_server(leader_server)
    zk.wait_serving(3)

    # quorum lost: two of three servers gone
    down = [i for i, mode in enumerate(zk.modes()) if mode is not None][:2]
    for i in down:
        zk.stop_server(i)
    before = ha.mesos_ids("ha_web.")
    try:
        wait_until(lambda: "Warning" in requests.get(ha.api + "/v2/apps", timeout=10).headers,
                   timeout=20, message="reads answered from the cache, marked stale")
        r = requests.get(f"{ha.api}/v2/apps{APP}", timeout=10)
        assert r.status_code == 200 and r.json()["app"]["instances"] == 5
        r = scale(ha, 2)
        assert r.status_code == 503 and "unavailable" in r.json()["message"], r.text
        some = sorted(before)[0]
        r = requests.delete(f"{ha.api}/v2/apps{APP}/tasks/{some}", timeout=15)
        assert r.status_code == 503, r.text
        deadline = time.monotonic() + 6
        while time.monotonic() < deadline:  # no launch, no kill
            assert ha.mesos_ids("ha_web.") == before
            time.sleep(0.3)
    finally:
        for i in down:
            zk.start_server(i)
    zk.wait_serving(3)
    wait_until(lambda: scale(ha, 3).status_code == 200, timeout=30, interval=0.5,
               message="writes accepted again")
    settle(ha, 3)
