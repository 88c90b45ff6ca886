"""A master failover as a real one looks to the scheduler: the stream ends with a TCP reset,
then the master answers 503 "Master has not finished recovery" (or redirects with 307) for a
while. pymesos alone retried at once, hundreds of times a second, with a traceback for the
reset; accessd's driver backs off (bounded, jittered) and logs the reset in one line.
"""

from __future__ import annotations

import time

import pytest

from tests.fixtures_scheduler import scheduler_cluster
from tests.support import wait_until

RECOVERY_SECONDS = 3.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    work = tmp_path_factory.mktemp("master-storm")
    with scheduler_cluster(work) as (mesos, store, sched):
        yield mesos, store, sched


def requests(mesos) -> dict[str, int]:
    return mesos._call("GET", "/_localmesos/master/requests")["scheduler_api"]


def subscribed_since(mesos, framework_id: str, since: float) -> bool:
    """The framework is connected to the master by a subscription made after `since`."""
    return any(fw["id"] == framework_id and fw["connected"]
               and max(fw["registered_time"], fw.get("reregistered_time", 0)) >= since
               for fw in mesos.state()["frameworks"])


def test_recovering_master_gets_a_few_requests_not_a_storm(cluster):
    mesos, store, sched = cluster
    before, lines = requests(mesos), len(sched.lines)
    wall = time.time()
    mesos._call("POST", f"/_localmesos/master/restart?reset=true"
                        f"&recovery_seconds={RECOVERY_SECONDS:g}")
    restarted = time.monotonic()
    wait_until(lambda: subscribed_since(mesos, sched.framework_id, wall), timeout=30,
               message="the scheduler to subscribe to the recovered master")
    took = time.monotonic() - restarted
    after = requests(mesos)
    refused = after.get("503", 0) - before.get("503", 0)
    not_found = after.get("404", 0) - before.get("404", 0)
    print(f"master recovering {RECOVERY_SECONDS:g}s: {not_found} answered 404 (starting), "
          f"{refused} refused subscriptions ({refused / RECOVERY_SECONDS:.1f}/s), subscribed "
          f"again {took:.2f}s after the restart")
    # The starting master's 404 came first, as a real one's; the scheduler outlived it.
    assert not_found >= 1 and sched.popen.poll() is None
    assert 1 <= refused <= 12
    assert took < RECOVERY_SECONDS + 3.0
    log = "\n".join(sched.lines[lines:])
    print(f"{len(log.splitlines())} scheduler log lines meanwhile:\n{log}")
    assert log.count("Master is not available") <= 2  # repeats are summarised
    assert "Traceback" not in log
    # The reset stream: one line from pymesos, with its cause.
    assert log.count("Failed to recv from") <= 1


def test_redirect_loop_is_paced(cluster):
    mesos, store, sched = cluster
    before, lines = requests(mesos), len(sched.lines)
    wall = time.time()
    # A master that redirects to itself (not yet leading) for 2 s, then serves.
    mesos._call("POST", "/_localmesos/master/redirect?seconds=2")
    mesos._call("POST", "/_localmesos/master/restart")
    wait_until(lambda: subscribed_since(mesos, sched.framework_id, wall), timeout=30,
               message="the scheduler to subscribe after the redirects")
    redirected = requests(mesos).get("307", 0) - before.get("307", 0)
    print(f"redirecting 2s: {redirected} redirected subscriptions")
    assert 1 <= redirected <= 10
    log = "\n".join(sched.lines[lines:])
    assert log.count("Try to redirect to new master") <= 2  # repeats are summarised
