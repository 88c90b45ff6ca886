"""The whole embedded cluster: one master, N agents, their HTTP servers and the fault controls.

Invariants:
- One re-entrant lock guards every piece of cluster state (master, agents, tasks, offers);
  HTTP handlers, timers and process waiters all take it, and no network write happens under it
  (streams only queue bytes).
- Agent k (1-based) is the machine 127.0.1.k (hostname and IP, `addresses.agent_address`) and
  gets the configured resources with its port ranges moved down to a block no other agent on this machine holds (see portblocks), so no two
  agents, of this cluster or another one running beside it, ever offer the same port.
- `shutdown()` leaves no process behind: SIGTERM to every task/executor group, SIGKILL after a
  short grace, then the guardian (see procs) for anything that slipped through.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from localmesos import docker_containerizer
from localmesos.agent import Agent
from localmesos.agent_recovery import AGENT_RECOVERING_SECONDS, AGENT_STARTING_SECONDS
from localmesos.httpserver import HttpServer, Request, Response
from localmesos.master import Master
from localmesos.model import mesos_duration
from localmesos.portblocks import PortBlocks
from localmesos.procs import Spawner, live_groups
from localmesos.resources import parse_spec
from localmesos.timers import Timers
from localmesos.zkannounce import ZkAnnouncer

log = logging.getLogger("localmesos")

DEFAULT_RESOURCES = "cpus:4;mem:4096;disk:10000;ports:[31000-31999]"


@dataclass
class Options:
    port: int = 5050
    agents: int = 3
    work_dir: Path = Path("localmesos-work")
    resources: str = DEFAULT_RESOURCES
    attributes: list[str] = field(default_factory=list)
    offer_timeout: float | None = None
    heartbeat_interval: float = 15.0
    status_update_retry: float = 10.0
    executor_shutdown_grace: float = 5.0
    executor_registration_timeout: float = 60.0
    # Agent recovery (Mesos agent flags): a restarted agent waits this long for its executors
    # to re-subscribe, then kills them; executors of checkpointing frameworks get the last two
    # as MESOS_SUBSCRIPTION_BACKOFF_MAX and MESOS_RECOVERY_TIMEOUT.
    executor_reregistration_timeout: float = 2.0
    executor_subscription_backoff_max: float = 2.0
    recovery_timeout: float = 900.0
    # Master flags: an agent that does not answer this many pings in a row is unreachable.
    agent_ping_timeout: float = 15.0
    max_agent_ping_timeouts: int = 5
    shutdown_grace: float = 3.0
    zk: str | None = None  # zk://host:port/path: announce the master there, as Mesos does
    # principal -> secret (`--credentials`): the scheduler API then requires HTTP basic auth
    # (localmesos.framework_auth); None: open, as a master without --authenticate_http_frameworks
    credentials: dict[str, str] | None = None


def parse_attributes(text: str) -> list[tuple[str, str]]:
    out = []
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, sep, val = part.partition(":")
        if not sep or not name.strip():
            raise ValueError(f"bad attribute {part!r}: expected name:value")
        out.append((name.strip(), val.strip()))
    return out


def agent_attributes(specs: list[str], index: int) -> list[tuple[str, str]]:
    """One spec: every agent; several: agent k gets the k-th (cycling); none: racks r1,r2,r1,…"""
    if not specs:
        return [("rack", f"r{(index - 1) % 2 + 1}")]
    return parse_attributes(specs[(index - 1) % len(specs)])


class Cluster:
    def __init__(self, opts: Options) -> None:
        self.opts = opts
        self.lock = threading.RLock()
        base = parse_spec(opts.resources)
        attrs = [agent_attributes(opts.attributes, k) for k in range(1, opts.agents + 1)]
        self.port_blocks = PortBlocks()
        resources = [self.port_blocks.claim(base) for _ in range(opts.agents)]
        self.work_dir = Path(opts.work_dir).resolve()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.master = Master(self, opts.port)
        self.server = HttpServer("127.0.0.1", opts.port, self.master.handle, "master-http")
        self.master.port = self.server.port
        self.timers = Timers(self.lock)
        self.spawner = Spawner(str(self.work_dir))
        self.agents = [Agent(self, k, resources[k - 1], attrs[k - 1], self.work_dir)
                       for k in range(1, opts.agents + 1)]
        self.announcer = ZkAnnouncer(opts.zk) if opts.zk else None

    @property
    def port(self) -> int:
        return self.server.port

    def start(self) -> None:
        """Raises ZkUnavailable, before anything runs, when `zk` is set and unreachable."""
        if self.announcer is not None:
            self.announcer.start(self.master.master_info())
        self.server.start()
        for agent in self.agents:
            agent.server.start()
        with self.lock:
            for agent in self.agents:
                agent.start(self.master.new_agent_id(), time.time())
                self.master.add_agent(agent)

    def flags(self) -> dict[str, str]:
        o = self.opts
        return {"port": str(self.port), "ip": "127.0.0.1", "work_dir": str(self.work_dir),
                "allocation_interval": "1secs", "allocator": "hierarchical",
                "offer_timeout": f"{o.offer_timeout:g}secs" if o.offer_timeout else "",
                "min_allocatable_resources": "cpus:0.01|mem:32", "version": "false",
                "authenticate_frameworks": "false", "authenticate_http_frameworks": "false",
                "localmesos_agents": str(o.agents), "localmesos_resources": o.resources,
                "localmesos_heartbeat_interval": f"{o.heartbeat_interval:g}secs",
                "localmesos_status_update_retry": f"{o.status_update_retry:g}secs",
                "agent_ping_timeout": mesos_duration(o.agent_ping_timeout),
                "max_agent_ping_timeouts": str(o.max_agent_ping_timeouts),
                "zk": o.zk or "", "quorum": "1" if o.zk else ""}

    # ---- fault controls (test-only surface) ---------------------------------------------

    def find_agent(self, key: str) -> Agent | None:
        for agent in self.agents:
            if key in (agent.id, agent.hostname, agent.ip, str(agent.index), f"agent{agent.index}"):
                return agent
        return None

    def control(self, req: Request) -> Response:
        parts = [p for p in req.path.split("/") if p][1:]
        with self.lock:
            if parts == ["agents"] and req.method == "GET":
                return Response.json(200, {"agents": [self._agent_doc(a) for a in self.agents]})
            if parts == ["master", "requests"] and req.method == "GET":
                return Response.json(200, {"scheduler_api": self.master.leadership.snapshot()})
            if req.method != "POST":
                return Response.json(405, {"message": "use POST for fault controls"})
            if parts == ["master", "redirect"]:
                seconds = _seconds(req.query.get("seconds", "10"))
                if seconds is None:
                    return Response.json(400, {"message": "seconds must be 0..3600"})
                to = req.query.get("to") or f"127.0.0.1:{self.port}"
                self.master.leadership.redirect_for(to, seconds)
                return Response.json(200, {"redirect_to": to, "seconds": seconds})
            if parts == ["master", "restart"]:
                seconds = _seconds(req.query.get("recovery_seconds", "0"))
                if seconds is None:
                    return Response.json(400, {"message": "recovery_seconds must be 0..3600"})
                forget = _seconds(req.query.get("forget_agents_seconds", "0"))
                if forget is None:
                    return Response.json(400, {"message": "forget_agents_seconds must be 0..3600"})
                self.master.restart(reset=_flag(req.query, "reset"), forget_agents_seconds=forget)
                self.master.leadership.recover_for(seconds)
                if self.announcer is not None:
                    self.announcer.replace(self.master.master_info())
                return Response.json(200, {"master_id": self.master.id})
            if parts == ["master", "silence"]:
                return Response.json(200, {"silenced": self.master.silence_streams()})
            if len(parts) == 3 and parts[0] == "agents" \
                    and parts[2] in ("stop", "start", "restart"):
                agent = self.find_agent(parts[1])
                if agent is None:
                    return Response.json(404, {"message": f"no agent {parts[1]!r}"})
                return self._agent_control(agent, parts[2], req.query)
        return Response.json(404, {"message": "unknown control; see localmesos/README.md"})

    def _agent_control(self, agent: Agent, action: str, query: dict[str, str]) -> Response:
        keep = _flag(query, "keep_executors")
        down = _seconds(query.get("down_seconds", "0"))
        if down is None:
            return Response.json(400, {"message": "down_seconds must be 0..3600"})
        # how long the restarted process answers executors 404, then 503 (agent_recovery)
        starting = _seconds(query.get("starting_seconds", str(AGENT_STARTING_SECONDS)))
        recovering = _seconds(query.get("recovering_seconds", str(AGENT_RECOVERING_SECONDS)))
        if starting is None or recovering is None:
            return Response.json(400, {"message": "starting_seconds and recovering_seconds "
                                                  "must be 0..3600"})
        phases = (starting, recovering)
        if action in ("stop", "restart"):
            if not agent.running or agent.down:
                return Response.json(409, {"message": f"{agent.hostname} is not running"})
            if keep:  # the agent process dies, its executors live on (checkpointed)
                agent.go_down()
                self.master.agent_disconnected(agent)
            else:  # machine loss
                tasks = agent.stop("stopped by /_localmesos (machine loss)")
                self.master.agent_lost(agent, tasks, "agent stopped")
        if action == "restart":
            self.timers.call_later(down, self._agent_back, agent, keep, phases)
        elif action == "start":
            if agent.running and not agent.down:
                return Response.json(409, {"message": f"{agent.hostname} is running"})
            self._agent_back(agent, agent.down, phases)
        return Response.json(200, self._agent_doc(agent))

    def _agent_back(self, agent: Agent, recovered: bool, phases: tuple[float, float]) -> None:
        if recovered:  # same agent id, executors waited for
            if not agent.down:
                return
            after = agent.recover(*phases)
            self.timers.call_later(after, self._agent_reregisters, agent, agent.recoveries)
        else:  # a new, empty agent
            if agent.running:
                return
            agent.start(self.master.new_agent_id(), time.time())
            self.master.add_agent(agent)

    def _agent_reregisters(self, agent: Agent, recovery: int) -> None:
        """The recovered agent registers with the master again (unless it went down again)."""
        if agent.down or not agent.registering or recovery != agent.recoveries:
            return
        self.master.agent_reregistered(agent)
        agent.reregistered()

    def _agent_doc(self, a: Agent) -> dict[str, Any]:
        return {"id": a.id, "hostname": a.hostname, "port": a.port,
                "running": a.running and not a.down, "pids": a.pids(),
                "pending_updates": sum(len(q) for q in a.pending.values()),
                "executor_api": dict(a.executor_api_answers),
                "executors": [{"id": e.id, "framework_id": e.framework_id, "pid": e.pid,
                               "subscribed": e.subscribed}
                              for e in a.executors.values() if not e.exited]}

    # ---- ending ------------------------------------------------------------------------------

    def shutdown(self) -> None:
        if self.announcer is not None:
            try:
                self.announcer.stop()  # no scheduler should find a master that is going away
            except Exception as exc:
                log.warning("could not withdraw the master from ZooKeeper: %s", exc)
        with self.lock:
            pids = [pid for a in self.agents for pid in a.pids()]
            for agent in self.agents:
                agent.shutdown_all()
                agent.generation += 1  # late exit callbacks change nothing
        log.debug("shutdown: SIGTERM sent to %d process groups", len(pids))
        deadline = time.monotonic() + self.opts.shutdown_grace
        while time.monotonic() < deadline and live_groups(pids):
            time.sleep(0.05)
        docker_containerizer.remove_all(self.spawner, str(self.work_dir))  # before their clients die
        self.spawner.kill_everything(signal.SIGKILL)
        log.debug("shutdown: process groups ended; stopping HTTP servers")
        stoppers = [threading.Thread(target=srv.stop, daemon=True)
                    for srv in [self.server] + [a.server for a in self.agents]]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(5)
        log.debug("shutdown: HTTP servers stopped")
        self.timers.stop()
        self.spawner.stop()
        log.info("localmesos stopped; %d process groups ended", len(pids))


def _seconds(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return None
    return seconds if 0 <= seconds <= 3600 else None


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "false").lower() in ("1", "true", "yes")


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True)
