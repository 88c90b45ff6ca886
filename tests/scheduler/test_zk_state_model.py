"""The store model of test_sqlite_state_model run against the ZooKeeper backend (a real
ZooKeeper server): the same random sequences of API and scheduler operations must leave the
ZooKeeper store equal to the plain model, and the generation must grow exactly as there."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import settings

from scheduler.zk_state import ZooKeeperStateStore
from tests.scheduler.test_sqlite_state_model import StoreModel

_SERVER: dict = {}


@pytest.fixture(scope="module", autouse=True)
def zookeeper(tmp_path_factory):
    from tests.fixtures_zk import start_zookeeper

    zk = start_zookeeper(tmp_path_factory.mktemp("zk-model"))
    _SERVER["zk"] = zk
    yield zk
    _SERVER.clear()
    zk.stop()


class ZkStoreModel(StoreModel):
    def open_store(self):
        if not hasattr(self, "url"):
            self.url = _SERVER["zk"].url(f"/m{uuid.uuid4().hex[:12]}")
        return ZooKeeperStateStore(self.url)

    def expected_kills(self) -> list[tuple[str, bool]]:
        # Oldest request first; the kill requests one request creates come out in task id
        # order (they share one ZooKeeper transaction, so one creation zxid).
        order = sorted(self.kills, key=lambda t: (self.kill_batch[t], t))
        return [(t, self.kills[t]["scale"]) for t in order]

    def check_backend(self) -> None:
        pass  # no SQLite index here


ZkStoreModel.TestCase.settings = settings(max_examples=25, stateful_step_count=20,
                                          deadline=None)
TestZkStoreModel = ZkStoreModel.TestCase
