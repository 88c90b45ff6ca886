"""A real ZooKeeper server (Debian's `zookeeper` package, standalone) on 127.0.0.1 for a test.

    zk = start_zookeeper(tmp_path)   # blocks until it answers `srvr`
    zk.hosts                         # "127.0.0.1:P"
    zk.url("/mesos")                 # "zk://127.0.0.1:P/mesos"
    zk.stop()

`tools/test-deps.sh` installs the package; where it could not (not root, no apt), the tests that
need ZooKeeper are skipped with the reason.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import pytest

from tests.support import Proc, free_port

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")


def zookeeper_missing() -> str | None:
    if shutil.which("java") is None:
        return "java is not installed (tools/test-deps.sh installs zookeeper, which brings it)"
    if not ZOOKEEPER_JAR.exists():
        return f"{ZOOKEEPER_JAR} is missing (Debian package zookeeper; tools/test-deps.sh)"
    return None


class ZooKeeper:
    def __init__(self, proc: Proc, port: int) -> None:
        self.proc = proc
        self.port = port
        self.hosts = f"127.0.0.1:{port}"

    def url(self, path: str = "/mesos") -> str:
        return f"zk://{self.hosts}{path}"

    def stop(self) -> int | None:
        return self.proc.stop()


def _answers_srvr(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"srvr")
            return s.recv(64).startswith(b"Zookeeper version")
    except OSError:
        return False


def start_zookeeper(work_dir: Path, timeout: float = 60.0) -> ZooKeeper:
    missing = zookeeper_missing()
    if missing:
        pytest.skip(missing)
    port = free_port()
    work = Path(work_dir) / "zookeeper"
    (work / "data").mkdir(parents=True, exist_ok=True)
    config = work / "zoo.cfg"
    config.write_text(f"tickTime=500\ndataDir={work / 'data'}\nclientPort={port}\n"
                      "clientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
                      "4lw.commands.whitelist=srvr\n")
    proc = Proc(["java", "-Xmx256m", "-cp", str(ZOOKEEPER_JAR),
                 "org.apache.zookeeper.server.ZooKeeperServerMain", str(config)], cwd=work)
    deadline = time.monotonic() + timeout
    while not _answers_srvr(port):
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            proc.stop()
            raise AssertionError(f"ZooKeeper did not start on {port}:\n{proc.output()}")
        time.sleep(0.1)
    return ZooKeeper(proc, port)
