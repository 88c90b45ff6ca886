"""The master: the v1 scheduler API, frameworks, offers and allocation, /state.

Invariants (all state is touched under the cluster lock only):
- An agent's resources are split, at any moment, into used (live tasks and executors, as the
  agent reports), offered (outstanding offers) and unallocated; an offer is only ever made from
  unallocated resources, so nothing is offered or launched twice.
- Outstanding offers go only to connected, non-suppressed frameworks; an offer ends exactly once:
  accepted, declined, rescinded (offer timeout, agent loss) or dropped (framework gone/failover).
- Declines and accepts leave a refuse filter (default 5 s, as Mesos) on the returned resources
  of that agent; a filter only holds back offers it fully covers, so freed resources still flow.
- Status updates that the master makes itself (invalid launches, reconciliation, agent loss)
  carry no `uuid` and are not retried, as in Mesos; agents' updates are retried by the agent.
- A restart forgets frameworks, offers and streams; agents re-register with their running
  tasks, whose frameworks come back as `recovered` until they re-subscribe or time out.
"""


from __future__ import annotations

import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from localmesos import framework_auth, recordio
from localmesos.agent_health import AgentHealth
from localmesos.allocator import Allocator
from localmesos.call_validation import json_error_text, validate_call
from localmesos.frameworks import Framework, Offer
from localmesos.httpserver import Request, Response, Stream
from localmesos.leadership import Leadership
from localmesos.master_calls import SchedulerCalls
from localmesos.master_state import MASTER_CAPABILITIES, MasterState
from localmesos.model import (
    BUILD_DATE,
    BUILD_TIME,
    TERMINAL,
    VERSION,
    Task,
    make_status,
    value,
)
from localmesos.operator_api import operator_call
from localmesos.resources import format_proto

if TYPE_CHECKING:
    from localmesos.agent import Agent
    from localmesos.cluster import Cluster

log = logging.getLogger("localmesos.master")

MAX_COMPLETED_TASKS = 1000


class Master(SchedulerCalls, Allocator, MasterState, AgentHealth):
    def __init__(self, cluster: Cluster, port: int) -> None:
        self.cluster = cluster
        self.port = port
        self._reset()
        self.leadership = Leadership()
        self._alloc_timer: Any = None
        self._agent_seq = 0

    def _reset(self) -> None:
        self.id = str(uuid.uuid4())
        self.start_time = time.time()
        self.elected_time = self.start_time
        self.frameworks: dict[str, Framework] = {}
        self.completed_frameworks: list[Framework] = []
        self.removed: set[str] = set()
        self.offers: dict[str, Offer] = {}
        self.agents: dict[str, Agent] = {}
        self.unreachable_agents: dict[str, Agent] = {}
        self.unreachable_since: dict[str, float] = {}
        self.gone_agents: set[str] = set()
        self.ping_timers: dict[str, Any] = {}
        self._offer_seq = 0
        self._fw_seq = 0

    @property
    def opts(self) -> Any:
        return self.cluster.opts

    @property
    def pid(self) -> str:
        return f"master@127.0.0.1:{self.port}"

    # ---- agents ---------------------------------------------------------------------------

    def new_agent_id(self) -> str:
        aid = f"{self.id}-S{self._agent_seq}"
        self._agent_seq += 1
        return aid

    def add_agent(self, agent: Agent) -> None:
        self.agents[agent.id] = agent
        log.info("agent %s (%s) registered with %s", agent.id, agent.hostname,
                 format_proto(agent.total.to_proto()))
        self.allocate_soon()

    def agent_lost(self, agent: Agent, tasks: list[Task], why: str) -> None:
        """An agent is gone with its processes: rescind its offers, report its tasks lost."""
        self.agents.pop(agent.id, None)
        self.unreachable_agents[agent.id] = agent  # as far as the master can tell
        self.unreachable_since[agent.id] = time.time()
        for offer in [o for o in self.offers.values() if o.agent is agent]:
            self._remove_offer(offer)
            offer.framework.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.id}}})
        for task in tasks:
            fw = self.frameworks.get(task.framework_id)
            if task.terminal:
                if fw is not None and fw.tasks.pop(task.id, None) is not None:
                    self._complete(fw, task)
                continue
            aware = fw is not None and fw.capable("PARTITION_AWARE")
            state = "TASK_UNREACHABLE" if aware else "TASK_LOST"
            status = make_status(task.id, state, "SOURCE_MASTER", agent_id=agent.id,
                                 message=f"Agent {agent.hostname} removed: {why}",
                                 reason="REASON_AGENT_REMOVED",
                                 container_status=task.container_status())
            task.record(status)
            if fw is None:
                continue
            fw.tasks.pop(task.id, None)
            if aware:
                fw.unreachable_tasks.append(task)
            else:
                self._complete(fw, task)
            fw.send({"type": "UPDATE", "update": {"status": status}})
        for fw in self.frameworks.values():
            fw.send({"type": "FAILURE", "failure": {"agent_id": {"value": agent.id}}})
        log.info("agent %s (%s) removed: %s; %d tasks lost", agent.id, agent.hostname, why,
                 len([t for t in tasks if t.state in ("TASK_LOST", "TASK_UNREACHABLE")]))
        self.allocate_soon()

    # ---- status updates from agents -------------------------------------------------------

    def task_launched(self, task: Task) -> None:
        fw = self.frameworks.get(task.framework_id)
        if fw is not None:
            fw.tasks[task.id] = task

    def task_changed(self, task: Task) -> None:
        if task.terminal:
            self.allocate_soon()

    def task_removed(self, task: Task) -> None:
        """The agent forgot a terminal task (its last update was acknowledged)."""
        fw = self.frameworks.get(task.framework_id)
        if fw is not None and fw.tasks.get(task.id) is task:
            del fw.tasks[task.id]
            self._complete(fw, task)

    def forward_update(self, framework_id: str, status: dict[str, Any]) -> bool:
        fw = self.frameworks.get(framework_id)
        if fw is None:
            return False
        return fw.send({"type": "UPDATE", "update": {"status": status}})

    def executor_lost(self, framework_id: str, executor_id: str, agent_id: str, status: int) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is not None:
            fw.send({"type": "FAILURE", "failure": {
                "agent_id": {"value": agent_id}, "executor_id": {"value": executor_id},
                "status": status}})
        self.allocate_soon()

    def executor_message(self, framework_id: str, agent_id: str, executor_id: str, data: str) -> None:
        fw = self.frameworks.get(framework_id)
        if fw is not None:
            fw.send({"type": "MESSAGE", "message": {
                "agent_id": {"value": agent_id}, "executor_id": {"value": executor_id},
                "data": data}})

    def _complete(self, fw: Framework, task: Task) -> None:
        fw.completed_tasks.append(task)
        del fw.completed_tasks[:-MAX_COMPLETED_TASKS]

    # ---- HTTP ------------------------------------------------------------------------------

    def handle(self, req: Request) -> Response | Stream:
        path = req.path.rstrip("/") or "/"
        if path == "/api/v1/scheduler":
            return self.scheduler_api(req)
        if path == "/api/v1":
            return operator_call(self, req)
        if path.startswith("/_localmesos/"):
            return self.cluster.control(req)
        if req.method not in ("GET", "HEAD"):
            if path in ("/version", "/health", "/state", "/master/state", "/master/health"):
                return Response.text(405, f"Expecting one of {{ 'GET' }}, but received '{req.method}'")
            return Response(404)
        with self.cluster.lock:
            if path == "/version":
                return Response.json(200, {"build_date": BUILD_DATE, "build_time": BUILD_TIME,
                                           "build_user": "", "version": VERSION})
            if path in ("/health", "/master/health"):
                return Response(200)
            if path in ("/state", "/master/state", "/state.json", "/master/state.json"):
                return Response.json(200, self.state())
            if path in ("/master/slaves", "/slaves"):
                return Response.json(200, {"slaves": [self._agent_state(a) for a in self._agents()],
                                           "recovered_slaves": []})
            if path in ("/master/frameworks", "/frameworks"):
                st = self.state()
                return Response.json(200, {k: st[k] for k in (
                    "frameworks", "completed_frameworks", "unregistered_frameworks")})
            if path in ("/master/tasks", "/tasks"):
                tasks = [t.to_state() for fw in self.frameworks.values()
                         for t in list(fw.tasks.values()) + fw.completed_tasks]
                return Response.json(200, {"tasks": tasks})
            if path in ("/master/redirect", "/redirect"):
                return Response(307, headers={"Location": f"//127.0.0.1:{self.port}"})
        return Response(404)

    def scheduler_api(self, req: Request) -> Response | Stream:
        answer = self._scheduler_api(req)
        self.leadership.count(200 if isinstance(answer, Stream) else answer.status)
        return answer

    def _scheduler_api(self, req: Request) -> Response | Stream:
        principal = None  # with --credentials, libprocess authenticates before the handler
        if self.opts.credentials is not None:
            principal = framework_auth.authenticate(req.headers.get("Authorization"),
                                                    self.opts.credentials)
            if principal is None:
                return framework_auth.unauthorized()
        refusal = self.leadership.refusal()
        if refusal is not None:
            return refusal
        if req.method != "POST":
            return Response.text(405, f"Expecting one of {{ 'POST' }}, but received '{req.method}'")
        ctype = req.headers.get("Content-Type")
        if not ctype:
            return Response.text(400, "Expecting 'Content-Type' to be present")
        if ctype.split(";")[0].strip().lower() != "application/json":
            return Response.text(415, "Expecting 'Content-Type' of application/json "
                                      "(localmesos does not speak application/x-protobuf)")
        problem = json_error_text(req.body)
        if problem:
            return Response.text(400, problem)
        call = json.loads(req.body)
        if not isinstance(call, dict):
            return Response.text(400, "Failed to convert JSON into Call protobuf: "
                                      "Expecting a JSON object")
        err = validate_call(call)
        if err:
            return Response.text(400, err)
        kind = call["type"]
        if kind == "SUBSCRIBE":
            if principal is not None:
                refused = framework_auth.subscribe_refusal(call, principal)
                if refused is not None:
                    return refused
            return self._subscribe(call)
        fid = value(call, "framework_id") or ""
        with self.cluster.lock:
            fw = self.frameworks.get(fid)
            if fw is None:
                return Response.text(400, "Framework cannot be found")
            if principal is not None and principal != fw.info.get("principal"):
                return Response.text(400, framework_auth.mismatch(principal,
                                                                  fw.info.get("principal")))
            if not fw.connected:
                return Response.text(403, "Framework is not subscribed")
            sid = req.headers.get("Mesos-Stream-Id")
            if not sid:
                return Response.text(400, "All non-subscribe calls should include the "
                                          "'Mesos-Stream-Id' header")
            if sid != fw.stream_id:
                return Response.text(400, f"The stream ID '{sid}' included in this request didn't "
                                          "match the stream ID currently associated with "
                                          f"framework ID {fw.id}")
            handler = getattr(self, "_call_" + kind.lower(), None)
            if handler is None:
                return Response(202)
            result = handler(fw, call)
            return result if isinstance(result, Response) else Response(202)

    # ---- SUBSCRIBE and the framework lifecycle ------------------------------------------

    def _subscribe(self, call: dict[str, Any]) -> Stream:
        sub = call["subscribe"]
        info = dict(sub["framework_info"])
        fid = value(call, "framework_id") or value(info, "id")
        stream_id = str(uuid.uuid4())
        stream = Stream({"Mesos-Stream-Id": stream_id}, on_close=self._stream_closed)
        with self.cluster.lock:
            if fid and fid in self.removed:
                stream.send(recordio.encode({"type": "ERROR",
                                             "error": {"message": "Framework has been removed"}}))
                stream.close()
                log.info("refused subscription of removed framework %s", fid)
                return stream
            fw = self.frameworks.get(fid) if fid else None
            if fw is None:
                if not fid:
                    fid = f"{self.id}-{self._fw_seq:04d}"
                    self._fw_seq += 1
                fw = Framework(fid, info, len(self.frameworks) + len(self.completed_frameworks))
                self.frameworks[fid] = fw
                log.info("framework %s (%s) subscribed", fid, info.get("name"))
            else:
                self._disconnect(fw, failover=True)
                fw.reregistered_time = time.time()
                log.info("framework %s (%s) re-subscribed", fid, info.get("name"))
            if fw.failover_timer is not None:
                fw.failover_timer.cancel()
                fw.failover_timer = None
            info["id"] = {"value": fid}
            fw.info = info
            fw.recovered = False
            fw.filters = []
            fw.suppressed = set(str(r) for r in sub.get("suppressed_roles") or [])
            fw.stream = stream
            fw.stream_id = stream_id
            interval = self.opts.heartbeat_interval
            fw.send({"type": "SUBSCRIBED", "subscribed": {
                "framework_id": {"value": fid}, "heartbeat_interval_seconds": interval,
                "master_info": self.master_info()}})
            fw.send({"type": "HEARTBEAT"})
            fw.heartbeat_timer = self.cluster.timers.call_later(interval, self._heartbeat, fw, stream)
            for agent in self._agents():
                agent.framework_subscribed(fid, info)
            self.allocate_soon()
        return stream

    def master_info(self) -> dict[str, Any]:
        return {"id": self.id, "ip": 16777343, "port": self.port, "pid": self.pid,
                "hostname": "localhost", "version": VERSION,
                "address": {"hostname": "localhost", "ip": "127.0.0.1", "port": self.port},
                "capabilities": [{"type": c} for c in MASTER_CAPABILITIES]}

    def _heartbeat(self, fw: Framework, stream: Stream) -> None:
        if fw.stream is stream and not stream.closed:
            fw.send({"type": "HEARTBEAT"})
            fw.heartbeat_timer = self.cluster.timers.call_later(
                self.opts.heartbeat_interval, self._heartbeat, fw, stream)

    def _disconnect(self, fw: Framework, failover: bool = False) -> None:
        """Drop a framework's stream and its outstanding offers (it can no longer use them)."""
        if fw.stream is not None:
            if failover:
                fw.send({"type": "ERROR", "error": {"message": "Framework failed over"}})
            fw.stream.close()
            fw.stream = None
            fw.stream_id = None
        if fw.heartbeat_timer is not None:
            fw.heartbeat_timer.cancel()
            fw.heartbeat_timer = None
        for offer in list(fw.offers.values()):
            self._remove_offer(offer)
        self.allocate_soon()

    def _stream_closed(self, stream: Stream) -> None:
        with self.cluster.lock:
            for fw in self.frameworks.values():
                if fw.stream is stream:
                    break
            else:
                return
            self._disconnect(fw)
            fw.unregistered_time = time.time()
            timeout = float(fw.info.get("failover_timeout") or 0.0)
            log.info("framework %s disconnected; failover timeout %.1fs", fw.id, timeout)
            self._start_failover_timer(fw, timeout)

    def _start_failover_timer(self, fw: Framework, timeout: float) -> None:
        if fw.failover_timer is not None:
            fw.failover_timer.cancel()
        fw.failover_timer = self.cluster.timers.call_later(timeout, self._failover_expired, fw)

    def _failover_expired(self, fw: Framework) -> None:
        if self.frameworks.get(fw.id) is fw and not fw.connected:
            log.info("framework %s did not come back within its failover timeout", fw.id)
            self.remove_framework(fw)

    def remove_framework(self, fw: Framework) -> None:
        """TEARDOWN or failover timeout: kill its tasks and executors, forget it."""
        if fw.failover_timer is not None:
            fw.failover_timer.cancel()
            fw.failover_timer = None
        self._disconnect(fw)
        for agent in self._agents():
            agent.shutdown_framework(fw.id)
        for task in list(fw.tasks.values()):
            if not task.terminal:
                task.record(make_status(task.id, "TASK_KILLED", "SOURCE_MASTER",
                                        agent_id=task.agent_id,
                                        message="Framework removed"))
            self._complete(fw, task)
        fw.tasks.clear()
        fw.unregistered_time = time.time()
        self.frameworks.pop(fw.id, None)
        self.completed_frameworks.append(fw)
        del self.completed_frameworks[:-50]
        self.removed.add(fw.id)
        log.info("framework %s removed", fw.id)
        self.allocate_soon()

    def silence_streams(self) -> list[str]:
        """Fault control: every open scheduler stream goes quiet (see `Stream.silence`)."""
        silenced = []
        for fw in self.frameworks.values():
            if fw.stream is not None:
                fw.stream.silence()
                silenced.append(fw.id)
        log.info("silenced the event streams of %s", ", ".join(silenced) or "no framework")
        return silenced

    def restart(self, reset: bool = False, forget_agents_seconds: float = 0.0) -> None:
        """Master failover: forget frameworks and offers, agents re-register with their tasks.
        `reset`: the old streams end with a TCP reset, as when a master process is killed.
        `forget_agents_seconds`: a master with an in-memory registry, which forgets its agents;
        they re-register that long after the restart (meanwhile their tasks are unknown)."""
        old = [fw for fw in self.frameworks.values()]
        for fw in old:
            for t in (fw.failover_timer, fw.heartbeat_timer):
                if t is not None:
                    t.cancel()
            for offer in list(fw.offers.values()):
                if offer.timer is not None:
                    offer.timer.cancel()
        streams = [fw.stream for fw in old if fw.stream is not None]
        agents = self._agents()
        self.cancel_ping_timers()
        self._reset()
        for s in streams:
            if reset:
                s.abort()
            else:
                s.close()
        for agent in agents:
            if forget_agents_seconds > 0:
                self.cluster.timers.call_later(forget_agents_seconds, self.readmit, agent,
                                               self.id)
            else:
                self.readmit(agent, self.id)
        log.info("master restarted as %s; %d agents and %d frameworks recovered%s", self.id,
                 len(self.agents), len(self.frameworks),
                 f"; the others re-register in {forget_agents_seconds:g}s"
                 if forget_agents_seconds > 0 else "")
        self.allocate_soon()

    def readmit(self, agent: Agent, master_id: str) -> None:
        """An agent (re-)registers with this master incarnation, with its running tasks."""
        if master_id != self.id or not agent.running or agent.marked_gone:
            return
        self.agents[agent.id] = agent
        for task in agent.live_tasks():
            fw = self.frameworks.get(task.framework_id)
            if fw is None:
                info = dict(agent.framework_infos.get(task.framework_id) or {})
                fw = Framework(task.framework_id, info, len(self.frameworks))
                fw.recovered = True
                self.frameworks[fw.id] = fw
                self._start_failover_timer(fw, float(info.get("failover_timeout") or 0.0))
            fw.tasks[task.id] = task
        if agent.disconnected:
            self.agent_disconnected(agent)
        self.allocate_soon()


__all__ = ["Master", "Framework", "Offer", "TERMINAL", "json_error_text"]
