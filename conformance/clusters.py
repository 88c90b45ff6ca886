"""The two clusters the conformance scenarios run on, behind one small interface.

Both are one master and one agent on 127.0.0.1, announced in a real ZooKeeper (the scheduler is
given `zk://…`), with the agent offering `cpus:4;mem:4096;disk:10000` and one block of 1000 ports
claimed through `localmesos.portblocks` (so neither cluster can offer a port a localmesos of
another test run offers).

- `RealMesos`: the Apache Mesos 1.12 build unpacked by `tools/conformance.sh`
  (`$ACCESSD_REAL_MESOS`), posix launcher, replicated-log registry (`--quorum=1`), short agent
  ping timeouts so that a SIGSTOPped agent becomes unreachable within seconds.
- `LocalMesosCluster`: `python -m localmesos --agents 1 --zk …`, as the test suite starts it.

The fault operations are the same names on both: `fail_over_master()`, `restart_agent()`
(executors kept), `partition_agent()` / `heal_agent()`. Where localmesos has no such control yet,
the call raises `MissingControl` naming the issue, and the scenario reports it as a difference.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from conformance.docker_support import real_agent_flags
from localmesos.portblocks import PortBlocks
from localmesos.resources import format_ranges, parse_spec
from tests.fixtures_mesos import start_localmesos
from tests.support import PYTHON, REPO, Proc, free_port, wait_until

AGENT_RESOURCES = "cpus:4;mem:4096;disk:10000;ports:[31000-31999]"
ATTRIBUTES = "rack:r1;zone:a"
# The master's agent health checks: an agent silent for PING_TIMEOUT x MAX_PINGS (15 s; Mesos
# defaults to 75 s) is unreachable. Longer than the agent restart scenario's outage, which must
# stay a restart, not a partition.
# The real master, killed and restarted, leads again after ~3 s (ZooKeeper session expiry of the
# old one, then the registry's recovery); localmesos is told to be recovering for part of that.
MASTER_RECOVERY_SECONDS = 2
PING_TIMEOUT_SECS = 1
MAX_PINGS = 15


class MissingControl(Exception):
    """The cluster cannot perform this fault (yet): a named difference, not a test bug."""


def http_json(url: str, method: str = "GET", data: bytes | None = None,
              timeout: float = 10.0) -> Any:
    req = urllib.request.Request(url, method=method, data=data)
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body else None


def claim_agent_ports(blocks: PortBlocks) -> str:
    """The agent's resources with a port block claimed for this process's lifetime."""
    claimed = blocks.claim(parse_spec(AGENT_RESOURCES))
    low, high = claimed.ranges["ports"][0][0], claimed.ranges["ports"][-1][1]
    return AGENT_RESOURCES.replace("[31000-31999]", format_ranges(((low, high),)))


class Cluster:
    name = ""
    label = ""
    master = ""  # what the scheduler gets as --master (zk://…)
    master_url = ""  # http://127.0.0.1:P of the leading master
    work: Path

    def state(self) -> dict[str, Any]:
        return http_json(self.master_url + "/state")

    def agent_ids(self) -> list[str]:
        return [s["id"] for s in self.state().get("slaves", []) if s.get("active", True)]

    def log(self, lines: int = 40) -> str:
        return ""

    def fail_over_master(self) -> None:
        raise NotImplementedError

    def restart_agent(self, down_seconds: float) -> None:
        """Stop the agent as a crash does, keep it down `down_seconds`, start it again on
        its checkpointed state: its executors and tasks live on meanwhile."""
        raise NotImplementedError

    def partition_agent(self) -> None:
        raise NotImplementedError

    def heal_agent(self) -> None:
        raise NotImplementedError

    def teardown_framework(self, framework_id: str) -> None:
        """Remove the framework and its tasks (end of the run: nothing may stay behind)."""

    def stop(self) -> None:
        raise NotImplementedError


class RealMesos(Cluster):
    name = "mesos"
    label = "real Mesos 1.12"

    def __init__(self, home: Path, work: Path, zk_url: str, blocks: PortBlocks) -> None:
        self.home = home
        self.work = work
        self.master = zk_url
        self.master_port = free_port()
        self.agent_port = free_port()
        self.master_url = f"http://127.0.0.1:{self.master_port}"
        self.resources = claim_agent_ports(blocks)
        self.master_proc: Proc | None = None
        self.agent_proc: Proc | None = None
        self.logs: list[Proc] = []
        self.start_master()
        self.start_agent()
        wait_until(lambda: self.state().get("activated_slaves") == 1, timeout=60,
                   message="the real agent registered")

    def _master_args(self) -> list[str]:
        return [str(self.home / "bin" / "mesos-master"), "--ip=127.0.0.1",
                f"--port={self.master_port}", f"--work_dir={self.work / 'master'}",
                f"--zk={self.master}", "--quorum=1", "--zk_session_timeout=3secs",
                f"--agent_ping_timeout={PING_TIMEOUT_SECS}secs",
                f"--max_agent_ping_timeouts={MAX_PINGS}"]

    def _agent_args(self) -> list[str]:
        return [str(self.home / "bin" / "mesos-agent"), f"--master={self.master}",
                "--ip=127.0.0.1", f"--port={self.agent_port}",
                f"--work_dir={self.work / 'agent'}", f"--runtime_dir={self.work / 'agent-run'}",
                "--launcher=posix", "--isolation=posix/cpu,posix/mem",
                "--no-systemd_enable_support", f"--launcher_dir={self.home / 'libexec' / 'mesos'}",
                f"--resources={self.resources}", f"--attributes={ATTRIBUTES}",
                *real_agent_flags()]

    def start_master(self) -> None:
        self.master_proc = Proc(self._master_args(), cwd=self.work)
        self.logs.append(self.master_proc)
        wait_until(lambda: http_json(self.master_url + "/state").get("elected_time"),
                   timeout=60, message="the real master elected")

    def start_agent(self) -> None:
        self.agent_proc = Proc(self._agent_args(), cwd=self.work)
        self.logs.append(self.agent_proc)

    def fail_over_master(self) -> None:
        """kill -9 the leading master and start it again on its replicated log."""
        assert self.master_proc is not None
        os.kill(self.master_proc.pid, signal.SIGKILL)
        self.master_proc.popen.wait(10)
        self.start_master()

    def restart_agent(self, down_seconds: float) -> None:
        """kill -9 the agent (its executors live on, in sessions of their own) and start it
        again on the same work dir, as an agent upgrade does."""
        assert self.agent_proc is not None
        os.kill(self.agent_proc.pid, signal.SIGKILL)
        self.agent_proc.popen.wait(10)
        time.sleep(down_seconds)  # the outage itself, the scenario's input
        self.start_agent()

    def partition_agent(self) -> None:
        assert self.agent_proc is not None
        os.kill(self.agent_proc.pid, signal.SIGSTOP)

    def heal_agent(self) -> None:
        assert self.agent_proc is not None
        os.kill(self.agent_proc.pid, signal.SIGCONT)

    def teardown_framework(self, framework_id: str) -> None:
        try:
            http_json(self.master_url + "/master/teardown", "POST",
                      f"frameworkId={framework_id}".encode())
        except (urllib.error.URLError, OSError):
            pass

    def log(self, lines: int = 40) -> str:
        return "\n".join(f"--- {p.args[0]}\n{chr(10).join(p.lines[-lines:])}" for p in self.logs)

    def stop(self) -> None:
        # The agent first, then the master. An agent's SIGTERM leaves executors running (as
        # after a crash): whatever is left is killed by the caller's process-table sweep.
        for proc in (self.agent_proc, self.master_proc):
            if proc is not None:
                proc.signal(signal.SIGCONT)
                proc.stop()
        for n, proc in enumerate(self.logs, 1):
            (self.work / f"{n}-{Path(proc.args[0]).name}.log").write_text(
                "\n".join(proc.lines) + "\n")


class LocalMesosCluster(Cluster):
    name = "localmesos"
    label = "localmesos"

    def __init__(self, work: Path, zk_url: str) -> None:
        self.work = work
        self.master = zk_url
        extra = ["--zk", zk_url, "--status-update-retry", "1"]
        if "--max-agent-ping-timeouts" in localmesos_options():  # the real master's budget
            extra += ["--agent-ping-timeout", str(PING_TIMEOUT_SECS),
                      "--max-agent-ping-timeouts", str(MAX_PINGS)]
        self.lm = start_localmesos(work, agents=1, resources=AGENT_RESOURCES,
                                   attributes=ATTRIBUTES, extra_args=extra)
        self.master_url = self.lm.url

    def _control(self, path: str, issue: str) -> Any:
        try:
            return self.lm._call("POST", path)
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                raise MissingControl(f"localmesos has no {path} ({issue})") from exc
            raise

    def fail_over_master(self) -> None:
        """As the real master's kill -9 and restart: streams reset, then a recovering master
        (503 'Master has not finished recovery') for a while."""
        self.lm._call("POST", f"/_localmesos/master/restart?reset=true"
                              f"&recovery_seconds={MASTER_RECOVERY_SECONDS}")

    def _agent(self) -> str:
        return self.lm.agents()[0]["id"]

    def restart_agent(self, down_seconds: float) -> None:
        self._control(f"/_localmesos/agents/{self._agent()}/restart?keep_executors=true"
                      f"&down_seconds={down_seconds}", "issue 18")

    def partition_agent(self) -> None:
        """The agent stops answering (as a SIGSTOPped one) while its executors run on."""
        self._control(f"/_localmesos/agents/{self._agent()}/stop?keep_executors=true",
                      "issue 18")

    def heal_agent(self) -> None:
        self._control(f"/_localmesos/agents/{self._agent()}/start", "issue 18")

    def log(self, lines: int = 40) -> str:
        return "\n".join(self.lm.proc.lines[-lines:])

    def stop(self) -> None:
        self.lm.stop()


def localmesos_options() -> str:
    """`python -m localmesos --help`: which flags this localmesos has."""
    return subprocess.run([PYTHON, "-m", "localmesos", "--help"], capture_output=True,
                          text=True, cwd=REPO, timeout=60).stdout


def wait_for_leader(cluster: Cluster, timeout: float = 60.0) -> None:
    wait_until(lambda: cluster.state().get("activated_slaves") == 1, timeout=timeout,
               message=f"{cluster.label}: a leading master with its agent")


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f}s"
