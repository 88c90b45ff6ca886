"""localmesos --zk: the master announced in a real ZooKeeper as a Mesos master announces itself
(ephemeral sequential `json.info_` znodes holding MasterInfo JSON), replaced on failover and
withdrawn on shutdown."""

from __future__ import annotations

import json

import pytest

from localmesos.zkannounce import parse_zk_url
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_zk import start_zookeeper
from tests.support import wait_until


@pytest.fixture(scope="module")
def zookeeper(tmp_path_factory):
    zk = start_zookeeper(tmp_path_factory.mktemp("zk"))
    try:
        yield zk
    finally:
        zk.stop()


def announced(client, path: str = "/mesos") -> dict[str, dict]:
    return {child: json.loads(client.get(f"{path}/{child}")[0])
            for child in client.get_children(path)}


def test_master_is_announced_replaced_on_failover_and_withdrawn(zookeeper, tmp_path) -> None:
    from kazoo.client import KazooClient

    client = KazooClient(hosts=zookeeper.hosts)
    client.start(timeout=10)
    lm = start_localmesos(tmp_path, agents=1, extra_args=("--zk", zookeeper.url("/mesos")))
    try:
        nodes = announced(client)
        assert len(nodes) == 1
        (first_node, info), = nodes.items()
        assert first_node.startswith("json.info_")
        state = lm.state()
        assert info["id"] == state["id"]
        assert info["address"] == {"hostname": "localhost", "ip": "127.0.0.1", "port": lm.port}
        assert state["flags"]["zk"] == zookeeper.url("/mesos")

        new_id = lm.restart_master()["master_id"]
        nodes = announced(client)
        assert first_node not in nodes
        assert [i["id"] for i in nodes.values()] == [new_id]
        assert min(nodes) > first_node  # the newer contender sorts after the old one
    finally:
        lm.stop()
    try:
        wait_until(lambda: client.get_children("/mesos") == [], timeout=10,
                   message="the znode withdrawn")
    finally:
        client.stop()
        client.close()


@pytest.mark.parametrize("url,expected", [
    ("zk://127.0.0.1:2181/mesos", ("127.0.0.1:2181", "/mesos")),
    ("zk://u:p@a:1,b:2/x/y/", ("a:1,b:2", "/x/y")),
])
def test_zk_urls_parse(url, expected) -> None:
    assert parse_zk_url(url) == expected


@pytest.mark.parametrize("url", ["127.0.0.1:2181/mesos", "zk://127.0.0.1:2181", "zk:///mesos",
                                 "zk://h:1/"])
def test_bad_zk_urls_are_refused(url) -> None:
    with pytest.raises(ValueError):
        parse_zk_url(url)


def test_a_bad_zk_url_is_a_usage_error(tmp_path) -> None:
    import subprocess

    from tests.support import PYTHON, REPO

    done = subprocess.run([PYTHON, "-m", "localmesos", "--zk", "127.0.0.1:2181/mesos",
                           "--work-dir", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 2
    assert "expected zk://host:port/path" in done.stderr
