"""`accessd local --ha`: the ZooKeeper ensemble of the local run (three servers, Debian's
`zookeeper` package, on loopback ports), so two schedulers and the API share a `zk://` store.

Each server is a `QuorumPeerMain` with its config and data under `<data-dir>/zookeeper/<n>/`;
`start_ensemble(run)` starts them as components of the run (stopped with it) and returns the
state URL once a quorum serves.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from typing import Any

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
SESSION_TIMEOUT = 6  # seconds: how long a dead leader keeps its leadership


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def srvr_mode(port: int) -> str | None:
    """A ZooKeeper server's `Mode` from its `srvr` four-letter answer (`leader`, `follower`,
    `standalone`) when it is in a quorum and serving, else None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"srvr")
            text = b""
            while chunk := s.recv(4096):
                text += chunk
    except OSError:
        return None
    for line in text.decode(errors="replace").splitlines():
        if line.startswith("Mode:"):
            return line.split(":", 1)[1].strip()
    return None


def _serving(port: int) -> bool:
    return srvr_mode(port) is not None


def start_ensemble(run: Any, servers: int = 3) -> str:
    """Start the servers as `run` components; the `zk://…/accessd` URL once a quorum serves."""
    from accessd.local import StepFailed, progress

    if shutil.which("java") is None or not ZOOKEEPER_JAR.exists():
        raise StepFailed("--ha needs ZooKeeper: apt-get install -y zookeeper "
                         "(tools/test-deps.sh installs it)")
    root = run.data_dir / "zookeeper"
    ports = [(_free_port(), _free_port(), _free_port()) for _ in range(servers)]
    members = "".join(f"server.{i + 1}=127.0.0.1:{p}:{e}\n"
                      for i, (_, p, e) in enumerate(ports))
    progress(f"starting a {servers}-server ZooKeeper ensemble")
    for i, (client, _, _) in enumerate(ports):
        data = root / str(i + 1)
        data.mkdir(parents=True, exist_ok=True)
        (data / "myid").write_text(f"{i + 1}\n")
        config = data / "zoo.cfg"
        config.write_text(f"tickTime=500\ninitLimit=20\nsyncLimit=5\ndataDir={data}\n"
                          f"clientPort={client}\nclientPortAddress=127.0.0.1\n"
                          "admin.enableServer=false\n4lw.commands.whitelist=srvr\n" + members)
        run._spawn(f"zookeeper-{i + 1}", [
            "java", "-Xmx128m", "-XX:+UseSerialGC", "-cp", str(ZOOKEEPER_JAR),
            "org.apache.zookeeper.server.quorum.QuorumPeerMain", str(config)])
    deadline = time.monotonic() + 90
    while sum(_serving(c) for c, _, _ in ports) < servers:
        if time.monotonic() > deadline:
            raise StepFailed(f"the ZooKeeper ensemble did not form; see {run.logs}/zookeeper-*")
        time.sleep(0.3)
    hosts = ",".join(f"127.0.0.1:{c}" for c, _, _ in ports)
    return f"zk://{hosts}/accessd?session_timeout={SESSION_TIMEOUT}"
