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

from accessd.local_ha import srvr_mode
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


_srvr_mode = srvr_mode  # `leader`/`follower` when in a quorum and serving, else None


class Ensemble:
    """A replicated ZooKeeper of `n` servers on 127.0.0.1 (QuorumPeerMain, one JVM each).

        zk = start_ensemble(tmp_path)        # blocks until every server is in the quorum
        zk.url("/accessd")                   # "zk://127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3/accessd"
        zk.stop_server(2); zk.start_server(2)
        zk.stop()
    """

    def __init__(self, work: Path, ports: list[tuple[int, int, int]]) -> None:
        self.work = work
        self.ports = ports  # (client, peer, election) per server
        self.procs: list[Proc | None] = [None] * len(ports)
        self.hosts = ",".join(f"127.0.0.1:{c}" for c, _, _ in ports)

    def url(self, path: str = "/accessd") -> str:
        return f"zk://{self.hosts}{path}"

    def start_server(self, i: int) -> None:
        config = self.work / f"zoo{i}.cfg"
        proc = Proc(["java", "-Xmx128m", "-XX:+UseSerialGC", "-cp", str(ZOOKEEPER_JAR),
                     "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(config)],
                    cwd=self.work)
        self.procs[i] = proc

    def stop_server(self, i: int) -> None:
        proc, self.procs[i] = self.procs[i], None
        if proc is not None:
            proc.stop(grace=5)

    def modes(self) -> list[str | None]:
        return [_srvr_mode(c) if self.procs[i] else None
                for i, (c, _, _) in enumerate(self.ports)]

    def wait_serving(self, count: int, timeout: float = 90.0) -> None:
        """Until `count` servers are in a serving quorum."""
        deadline = time.monotonic() + timeout
        while sum(m is not None for m in self.modes()) < count:
            for proc in self.procs:
                if proc is not None and proc.popen.poll() is not None:
                    raise AssertionError(f"a ZooKeeper server exited:\n{proc.output()}")
            if time.monotonic() > deadline:
                logs = "\n---\n".join(p.output()[-3000:] for p in self.procs if p)
                raise AssertionError(f"ZooKeeper quorum of {count} not serving: "
                                     f"{self.modes()}\n{logs}")
            time.sleep(0.2)

    def stop(self) -> None:
        for i in range(len(self.procs)):
            self.stop_server(i)


def start_ensemble(work_dir: Path, n: int = 3, tick_ms: int = 200) -> Ensemble:
    missing = zookeeper_missing()
    if missing:
        pytest.skip(missing)
    work = Path(work_dir) / "zk-ensemble"
    work.mkdir(parents=True, exist_ok=True)
    ports: list[tuple[int, int, int]] = []
    taken: set[int] = set()
    while len(ports) < n:
        trio = tuple(free_port() for _ in range(3))
        if len(set(trio) | taken) == len(taken) + 3:
            taken |= set(trio)
            ports.append(trio)  # type: ignore[arg-type]
    servers = "".join(f"server.{i + 1}=127.0.0.1:{p}:{e}\n" for i, (_, p, e) in
                      enumerate(ports))
    for i, (client, _, _) in enumerate(ports):
        data = work / f"data{i}"
        data.mkdir(exist_ok=True)
        (data / "myid").write_text(f"{i + 1}\n")
        # Session timeouts must lie within 2..20 ticks: 200 ms ticks allow 0.4..4 s sessions
        # by default; maxSessionTimeout widens that for the tests' 3 s sessions and clients'.
        (work / f"zoo{i}.cfg").write_text(
            f"tickTime={tick_ms}\ninitLimit=50\nsyncLimit=10\ndataDir={data}\n"
            f"clientPort={client}\nclientPortAddress=127.0.0.1\nadmin.enableServer=false\n"
            "4lw.commands.whitelist=srvr\nmaxSessionTimeout=60000\n"
            "quorumListenOnAllIPs=false\n" + servers)
    ensemble = Ensemble(work, ports)
    try:
        for i in range(n):
            ensemble.start_server(i)
        ensemble.wait_serving(n)
    except BaseException:
        ensemble.stop()
        raise
    return ensemble
