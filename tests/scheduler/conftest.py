"""Fixtures shared by the scheduler tests."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory):
    """A real single-server ZooKeeper for one test module (started only if a test asks)."""
    from tests.fixtures_zk import start_zookeeper

    zk = start_zookeeper(tmp_path_factory.mktemp("zk"))
    yield zk
    zk.stop()
