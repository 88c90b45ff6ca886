"""Fixtures for the localmesos tests: a running cluster (`lm`) and a pymesos framework on it.

`lm` is a real `python -m localmesos` process with short test timings (heartbeats every 2 s,
status update retries from 1 s). `sched` is a `Recorder` whose pymesos `MesosSchedulerDriver`
(`sched.driver`) is subscribed before the test starts and always stopped after it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures_mesos import LocalMesos, localmesos, start_localmesos  # noqa: F401
from tests.localmesos import helpers
from tests.localmesos.helpers import Recorder, start_driver, stop_driver

TEST_ARGS = ("--heartbeat-interval", "2", "--status-update-retry", "1",
             "--executor-shutdown-grace", "2")


@pytest.fixture(autouse=True)
def _stop_every_driver() -> Iterator[None]:
    """Whatever a test did, every pymesos driver it started is stopped when it ends."""
    yield
    while helpers.STARTED:
        stop_driver(helpers.STARTED.pop())


@pytest.fixture
def lm(tmp_path: Path) -> Iterator[LocalMesos]:
    cluster = start_localmesos(tmp_path, agents=3, extra_args=TEST_ARGS)
    try:
        yield cluster
    finally:
        while helpers.STARTED:  # drivers first, while the master still answers their TEARDOWN
            stop_driver(helpers.STARTED.pop())
        cluster.stop()


@pytest.fixture
def sched(lm: LocalMesos) -> Iterator[Recorder]:
    rec = Recorder()
    start_driver(lm.master, rec)
    yield rec
