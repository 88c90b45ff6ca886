"""`accessd lb` in front of a real cluster: localmesos, the scheduler, the API and a real
HAProxy. One module-scoped cluster; each test deploys its own app on its own service port.
"""

from __future__ import annotations

import os
import signal
import time

import pytest
import requests

from lb.haproxy import HAProxyError, find_binary
from tests.lb.harness import Load, echo_app, lb_cluster
from tests.support import free_port, metric_samples, wait_until

pytestmark = pytest.mark.timeout(120)

try:
    find_binary()
except HAProxyError as exc:
    pytest.skip(f"{exc} (tools/test-deps.sh installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("lbcluster")
    with lb_cluster(work, drain_timeout=float(os.environ.get("LB_DRAIN", "5"))) as c:
        c.ctl = work / "ctl"
        c.ctl.mkdir()
        yield c


def test_requests_spread_over_every_healthy_instance(cluster):
    port = free_port()
    app = echo_app("/lb/spread", port, 3, cluster.ctl)
    app["labels"]["HAPROXY_0_VHOST"] = "spread.test"
    cluster.post("/v2/apps", app)
    tasks = cluster.wait_serving("/lb/spread", 3)
    session = requests.Session()
    seen = {session.get(f"http://127.0.0.1:{port}/", timeout=5).json()["taskId"]
            for _ in range(30)}
    assert seen == tasks  # round robin over exactly the healthy instances
    # the shared HTTP port routes by Host header
    vhost = {session.get(cluster.http, headers={"Host": "spread.test"}, timeout=5).json()[
        "taskId"] for _ in range(30)}
    assert vhost == tasks
    assert session.get(cluster.http, headers={"Host": "other.test"}, timeout=5).status_code == 503
    servers = metric_samples(requests.get(cluster.metrics, timeout=5).text)["accessd_lb_servers"]
    assert ({"backend": f"lb_spread_{port}", "app": "/lb/spread", "state": "ready"}, 3.0) \
        in servers
    assert requests.get(cluster.stats, timeout=5).status_code == 200  # HAProxy's stats page


def test_unhealthy_instance_leaves_rotation_within_one_interval(cluster):
    port = free_port()
    cluster.post("/v2/apps", echo_app("/lb/sick", port, 2, cluster.ctl))
    tasks = cluster.wait_serving("/lb/sick", 2)
    victim = sorted(tasks)[0]
    (cluster.ctl / f"{victim}.sick").touch()
    # The executor's verdict needs one failed check (maxConsecutiveFailures 1, every 1 s);
    # from the moment the API reports it, the balancer must drop it within one interval.
    wait_until(lambda: victim not in cluster.healthy("/lb/sick"), timeout=10, interval=0.02,
               message="the API reports the task unhealthy")
    reported = time.monotonic()
    wait_until(lambda: victim not in cluster.servers("/lb/sick"), timeout=5, interval=0.02,
               message="the balancer drops the unhealthy task")
    assert time.monotonic() - reported < 1.0
    session = requests.Session()
    seen = {session.get(f"http://127.0.0.1:{port}/", timeout=5).json()["taskId"]
            for _ in range(10)}
    assert victim not in seen


def test_haproxy_killed_serves_again_within_2s(cluster):
    port = free_port()
    cluster.post("/v2/apps", echo_app("/lb/phoenix", port, 1, cluster.ctl))
    cluster.wait_serving("/lb/phoenix", 1)
    url = f"http://127.0.0.1:{port}/"
    assert requests.get(url, timeout=5).status_code == 200
    pid = int((cluster.lb_work / "haproxy.pid").read_text())
    os.killpg(pid, signal.SIGKILL)  # the master and its workers
    killed = time.monotonic()

    def serving() -> bool:
        try:
            return requests.get(url, timeout=0.5).status_code == 200
        except requests.RequestException:
            return False
    wait_until(serving, timeout=10, interval=0.02, message="HAProxy serving again")
    assert time.monotonic() - killed < 2.0
    assert "haproxy exited" in cluster.lb.output()
    wait_until(lambda: metric_samples(requests.get(cluster.metrics, timeout=5).text)[
        "accessd_lb_haproxy_restarts_total"] == [({}, 1.0)], timeout=5,
        message="the restart counted in /metrics")


def test_a_reload_drops_no_request(cluster):
    """A new service is a new frontend: a reload (master-worker, listeners handed over), while
    another service is under load."""
    port, other = free_port(), free_port()
    cluster.post("/v2/apps", echo_app("/lb/busy", port, 1, cluster.ctl))
    cluster.wait_serving("/lb/busy", 1)
    reloads = cluster.lb_state()["counters"]["reloads"]
    load = Load(f"http://127.0.0.1:{port}/work?ms=5", threads=4).start()
    try:
        cluster.post("/v2/apps", echo_app("/lb/newcomer", other, 1, cluster.ctl))
        cluster.wait_serving("/lb/newcomer", 1)
        wait_until(lambda: load.result.ok > 50, timeout=10, message="load after the reload")
    finally:
        result = load.stop()
    assert cluster.lb_state()["counters"]["reloads"] > reloads
    assert requests.get(f"http://127.0.0.1:{other}/", timeout=5).status_code == 200
    assert result.failed == 0, result.why


def test_scale_and_rolling_restart_under_load_fail_no_request(cluster):
    """Scale 1 → 4 → 2 and restart 2 instances while 4 clients send requests taking 20 ms:
    leaving tasks are drained before their kill, new ones join once healthy."""
    port = free_port()
    cluster.post("/v2/apps", echo_app("/lb/steady", port, 1, cluster.ctl))
    cluster.wait_deployments_done(app_id="/lb/steady")  # else the scale is a 409
    cluster.wait_serving("/lb/steady", 1)
    load = Load(f"http://127.0.0.1:{port}/work?ms=20", threads=4).start()
    try:
        cluster.put("/v2/apps/lb/steady", {"instances": 4})
        cluster.wait_deployments_done(app_id="/lb/steady")
        before = cluster.wait_serving("/lb/steady", 4)
        cluster.put("/v2/apps/lb/steady", {"instances": 2})
        cluster.wait_deployments_done(app_id="/lb/steady")
        cluster.wait_serving("/lb/steady", 2)
        cluster.post("/v2/apps/lb/steady/restart")
        cluster.wait_deployments_done(app_id="/lb/steady")
        after = cluster.wait_serving("/lb/steady", 2)
    finally:
        result = load.stop()
    assert not after & before  # every instance was replaced
    assert result.failed == 0, result.why
    assert result.ok > 100
    log = cluster.sched.output(tail=None)
    assert "drained by test-lb-" in log  # the kills waited for the balancer,
    assert "; drain deadline)" not in log  # never for the deadline


def test_autoscale_follows_the_request_rate(cluster):
    """Opt-in labels: 20 req/s per instance, 1 to 2 instances, 1 s cooldown. A few hundred
    req/s take the app to 2 instances, through an ordinary scale deployment; no load, back to
    1 (drained like any scale-down)."""
    port = free_port()
    app = echo_app("/lb/auto", port, 1, cluster.ctl)
    app["labels"].update({"ACCESSD_AUTOSCALE_TARGET_RPS": "20",
                          "ACCESSD_AUTOSCALE_MAX_INSTANCES": "2",
                          "ACCESSD_AUTOSCALE_COOLDOWN_SECONDS": "1"})
    cluster.post("/v2/apps", app)
    cluster.wait_serving("/lb/auto", 1)
    load = Load(f"http://127.0.0.1:{port}/", threads=2).start()
    try:
        wait_until(lambda: cluster.get("/v2/apps/lb/auto")["app"]["instances"] == 2,
                   timeout=20, message="scaled up to 2")
        cluster.wait_serving("/lb/auto", 2)
    finally:
        result = load.stop()
    assert result.failed == 0, result.why
    wait_until(lambda: cluster.get("/v2/apps/lb/auto")["app"]["instances"] == 1, timeout=20,
               message="scaled back to 1")
    log = cluster.lb.output(tail=None)
    assert "autoscale /lb/auto: 1 -> 2 instances" in log
    assert "autoscale /lb/auto: 2 -> 1 instances (" in log


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_issues_scale_1_5_2_and_restart_of_4_fail_no_request(cluster):
    """The issue's figures, out of `make test` (`make test-all`; `bench/lb.py` measures the
    same): scale 1 → 5 → 2, then a rolling restart of 4, under 8 clients."""
    port = free_port()
    cluster.post("/v2/apps", echo_app("/lb/issue", port, 1, cluster.ctl))
    cluster.wait_deployments_done(app_id="/lb/issue")
    cluster.wait_serving("/lb/issue", 1)
    load = Load(f"http://127.0.0.1:{port}/work?ms=10", threads=8).start()
    try:
        for n in (5, 2, 4):
            cluster.put("/v2/apps/lb/issue", {"instances": n})
            cluster.wait_deployments_done(app_id="/lb/issue")
            before = cluster.wait_serving("/lb/issue", n)
        cluster.post("/v2/apps/lb/issue/restart")
        cluster.wait_deployments_done(app_id="/lb/issue")
        after = cluster.wait_serving("/lb/issue", 4)
    finally:
        result = load.stop()
    assert not after & before
    assert result.failed == 0, result.why
