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

from localmesos import recordio
from localmesos.httpserver import Request, Response, Stream
from localmesos.model import (
    BUILD_DATE,
    BUILD_TIME,
    TERMINAL,
    VERSION,
    Task,
    grace_seconds,
    id_problem,
    make_status,
    valid_uuid_b64,
    value,
)
from localmesos.resources import Resources, format_proto, from_proto

if TYPE_CHECKING:
    from localmesos.agent import Agent
    from localmesos.cluster import Cluster

log = logging.getLogger("localmesos.master")

CALL_TYPES = frozenset({
    "SUBSCRIBE", "TEARDOWN", "ACCEPT", "DECLINE", "ACCEPT_INVERSE_OFFERS",
    "DECLINE_INVERSE_OFFERS", "REVIVE", "KILL", "SHUTDOWN", "ACKNOWLEDGE",
    "ACKNOWLEDGE_OPERATION_STATUS", "RECONCILE", "RECONCILE_OPERATIONS", "MESSAGE", "REQUEST",
    "SUPPRESS", "UPDATE_FRAMEWORK",
})
# Calls whose payload field must be present (Mesos's scheduler::Call validation).
PAYLOAD = {"ACCEPT": "accept", "DECLINE": "decline", "KILL": "kill", "SHUTDOWN": "shutdown",
           "ACKNOWLEDGE": "acknowledge", "RECONCILE": "reconcile", "MESSAGE": "message",
           "REQUEST": "request", "ACCEPT_INVERSE_OFFERS": "accept_inverse_offers",
           "DECLINE_INVERSE_OFFERS": "decline_inverse_offers",
           "UPDATE_FRAMEWORK": "update_framework"}
DEFAULT_REFUSE_SECONDS = 5.0
MAX_COMPLETED_TASKS = 1000
MASTER_CAPABILITIES = ["AGENT_UPDATE", "AGENT_DRAINING", "QUOTA_V2"]
AGENT_CAPABILITIES = ["MULTI_ROLE", "HIERARCHICAL_ROLE", "RESERVATION_REFINEMENT",
                      "RESOURCE_PROVIDER", "RESIZE_VOLUME", "AGENT_OPERATION_FEEDBACK",
                      "AGENT_DRAINING", "TASK_RESOURCE_LIMITS"]


def json_error_text(body: bytes) -> str | None:
    """Mesos (picojson) wording for a body that is not JSON, None when it parses."""
    try:
        json.loads(body.decode("utf-8"))
        return None
    except UnicodeDecodeError:
        return "Failed to parse body into JSON: invalid UTF-8"
    except json.JSONDecodeError as exc:
        rest = exc.doc[exc.pos:].split("\n", 1)[0]
        return f"Failed to parse body into JSON: syntax error at line {exc.lineno} near: {rest}"


class Offer:
    def __init__(self, oid: str, fw: Framework, agent: Agent, resources: Resources, role: str) -> None:
        self.id = oid
        self.framework = fw
        self.agent = agent
        self.resources = resources
        self.role = role
        self.timer: Any = None

    def proto(self) -> dict[str, Any]:
        a = self.agent
        return {
            "id": {"value": self.id}, "framework_id": {"value": self.framework.id},
            "agent_id": {"value": a.id}, "hostname": a.hostname,
            "url": {"scheme": "http", "path": "/slave(1)",
                    "address": {"hostname": a.hostname, "ip": "127.0.0.1", "port": a.port}},
            "resources": self.resources.to_proto(self.role, with_role=True, ranges_first=True),
            "attributes": a.attributes_proto(), "allocation_info": {"role": self.role},
        }


class Framework:
    def __init__(self, fid: str, info: dict[str, Any], seq: int) -> None:
        self.id = fid
        self.info = info
        self.seq = seq
        self.stream: Stream | None = None
        self.stream_id: str | None = None
        self.recovered = False
        now = time.time()
        self.registered_time = now
        self.reregistered_time: float | None = None
        self.unregistered_time = 0.0
        self.tasks: dict[str, Task] = {}
        self.completed_tasks: list[Task] = []
        self.unreachable_tasks: list[Task] = []
        self.offers: dict[str, Offer] = {}
        self.suppressed: set[str] = set()
        self.filters: list[tuple[str, Resources, float]] = []  # (agent id, refused, until)
        self.failover_timer: Any = None
        self.heartbeat_timer: Any = None

    @property
    def connected(self) -> bool:
        return self.stream is not None

    @property
    def roles(self) -> list[str]:
        roles = self.info.get("roles")
        if isinstance(roles, list) and roles:
            return [str(r) for r in roles]
        return [str(self.info.get("role") or "*")]

    def capable(self, name: str) -> bool:
        return any(isinstance(c, dict) and c.get("type") == name
                   for c in self.info.get("capabilities") or [])

    def send(self, event: dict[str, Any]) -> bool:
        if self.stream is None:
            return False
        return self.stream.send(recordio.encode(event))


class Master:
    def __init__(self, cluster: Cluster, port: int) -> None:
        self.cluster = cluster
        self.port = port
        self._reset()
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
        err = self._validate(call)
        if err:
            return Response.text(400, err)
        kind = call["type"]
        if kind == "SUBSCRIBE":
            return self._subscribe(call)
        fid = value(call, "framework_id") or ""
        with self.cluster.lock:
            fw = self.frameworks.get(fid)
            if fw is None:
                return Response.text(400, "Framework cannot be found")
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

    def _validate(self, call: dict[str, Any]) -> str | None:
        prefix = "Failed to validate scheduler::Call: "
        kind = call.get("type")
        if kind not in CALL_TYPES:
            return prefix + "Expecting 'type' to be present"
        if kind == "SUBSCRIBE":
            sub = call.get("subscribe")
            if not isinstance(sub, dict):
                return prefix + "Expecting 'subscribe' to be present"
            info = sub.get("framework_info")
            if not isinstance(info, dict):
                return ("Failed to convert JSON into Call protobuf: Missing required fields: "
                        "subscribe.framework_info")
            missing = [f"subscribe.framework_info.{k}" for k in ("user", "name")
                       if not isinstance(info.get(k), str)]
            if missing:
                return ("Failed to convert JSON into Call protobuf: Missing required fields: "
                        + ", ".join(missing))
            if value(info, "id") is not None and value(info, "id") != value(call, "framework_id"):
                return prefix + "'framework_id' differs from 'subscribe.framework_info.id'"
            fid = value(call, "framework_id")
            if fid is not None and id_problem("FrameworkID", fid):
                return prefix + str(id_problem("FrameworkID", fid))
            return None
        if value(call, "framework_id") is None:
            return prefix + "Expecting 'framework_id' to be present"
        field = PAYLOAD.get(kind)
        if field and not isinstance(call.get(field), dict):
            return prefix + f"Expecting '{field}' to be present"
        if kind == "ACKNOWLEDGE":
            ack = call["acknowledge"]
            if value(ack, "task_id") is None or value(ack, "agent_id") is None:
                return ("Failed to convert JSON into Call protobuf: Missing required fields: "
                        "acknowledge.agent_id, acknowledge.task_id, acknowledge.uuid")
            if not valid_uuid_b64(ack.get("uuid")):
                return prefix + "Not a valid UUID"
        if kind == "KILL" and value(call["kill"], "task_id") is None:
            return ("Failed to convert JSON into Call protobuf: Missing required fields: "
                    "kill.task_id")
        if kind == "ACCEPT":
            for i, op in enumerate(call["accept"].get("operations") or []):
                if not isinstance(op, dict):
                    return f"Failed to convert JSON into Call protobuf: bad operation {i}"
                for j, ti in enumerate(((op.get("launch") or {}).get("task_infos")) or []):
                    missing = [f"accept.operations[{i}].launch.task_infos[{j}].{k}"
                               for k in ("name", "task_id", "agent_id")
                               if (k == "name" and not isinstance(ti.get(k), str))
                               or (k != "name" and value(ti, k) is None)]
                    if missing:
                        return ("Failed to convert JSON into Call protobuf: Missing required "
                                "fields: " + ", ".join(missing))
        return None

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

    def restart(self) -> None:
        """Master failover: forget frameworks and offers, agents re-register with their tasks."""
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
        self._reset()
        for s in streams:
            s.close()
        for agent in agents:
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
        log.info("master restarted as %s; %d agents and %d frameworks recovered", self.id,
                 len(self.agents), len(self.frameworks))
        self.allocate_soon()

    # ---- calls -----------------------------------------------------------------------------

    def _call_teardown(self, fw: Framework, call: dict[str, Any]) -> None:
        log.info("framework %s asked for TEARDOWN", fw.id)
        self.remove_framework(fw)

    def _call_accept(self, fw: Framework, call: dict[str, Any]) -> None:
        acc = call["accept"]
        offer_ids = [value({"x": o}, "x") or "" for o in acc.get("offer_ids") or []]
        ops = [op for op in acc.get("operations") or [] if isinstance(op, dict)]
        offers: list[Offer] = []
        error = None
        if not offer_ids:
            error = "No offers specified"
        for oid in offer_ids:
            offer = self.offers.get(oid)
            if offer is None or offer.framework is not fw:
                error = error or f"Offer {oid} is no longer valid"
            elif offer not in offers:
                offers.append(offer)
        if error is None and len({o.agent.id for o in offers}) > 1:
            error = "Aggregated offers must belong to one single agent"
        for offer in offers:
            self._remove_offer(offer)
        launches: list[dict[str, Any]] = []
        for op in ops:
            if op.get("type") == "LAUNCH":
                launches.extend(t for t in (op.get("launch") or {}).get("task_infos") or []
                                if isinstance(t, dict))
            elif op.get("type") == "LAUNCH_GROUP":
                for ti in ((op.get("launch_group") or {}).get("task_group") or {}).get("tasks") or []:
                    self._master_update(fw, ti, "TASK_ERROR", "REASON_TASK_GROUP_INVALID",
                                        "LAUNCH_GROUP is not supported by localmesos")
        if error is not None:
            for ti in launches:
                self._master_update(fw, ti, "TASK_LOST", "REASON_INVALID_OFFERS",
                                    f"Task launched with invalid offers: {error}")
            log.info("framework %s: ACCEPT with invalid offers: %s", fw.id, error)
            self.allocate_soon()
            return
        agent = offers[0].agent
        role = offers[0].role
        available = Resources()
        for offer in offers:
            available = available + offer.resources
        used = Resources()
        new_executors: set[str] = set()
        for ti in launches:
            problem, need = self._check_task(fw, agent, ti, available - used, role, new_executors)
            if problem is not None:
                self._master_update(fw, ti, "TASK_ERROR", "REASON_TASK_INVALID", problem)
                continue
            used = used + need
            if "executor" in ti:
                new_executors.add(value(ti["executor"], "executor_id") or "")
            task = agent.launch(fw.id, fw.info, ti, from_proto(ti.get("resources")), role)
            fw.tasks[task.id] = task
            log.info("framework %s: launching task %s on %s", fw.id, task.id, agent.hostname)
        leftover = available - used
        self._add_filter(fw, agent, leftover, acc.get("filters"))
        self.allocate_soon()

    def _check_task(self, fw: Framework, agent: Agent, ti: dict[str, Any], available: Resources,
                    role: str, new_executors: set[str]) -> tuple[str | None, Resources]:
        tid = value(ti, "task_id") or ""
        problem = id_problem("TaskID", tid)
        if problem is not None:
            return problem, Resources()
        if tid in fw.tasks:
            return f"Task has duplicate ID: {tid}", Resources()
        if value(ti, "agent_id") != agent.id:
            return (f"Task uses invalid agent: {value(ti, 'agent_id')} (the offers are for "
                    f"agent {agent.id})"), Resources()
        if ("command" in ti) == ("executor" in ti):
            return ("Task should have at least one (but not both) of CommandInfo or "
                    "ExecutorInfo present"), Resources()
        try:
            need = from_proto(ti.get("resources"))
            exec_items: list[dict[str, Any]] = []
            if "executor" in ti:
                ex = ti["executor"]
                eid = value(ex, "executor_id") or ""
                problem = id_problem("ExecutorID", eid)
                if problem is not None:
                    return problem, Resources()
                if not isinstance(ex.get("command"), dict):
                    return f"Executor {eid} has no command", Resources()
                if not agent.has_executor(fw.id, eid) and eid not in new_executors:
                    exec_items = list(ex.get("resources") or [])
                    need = need + from_proto(exec_items)
        except ValueError as exc:
            return f"Invalid task resources: {exc}", Resources()
        if not available.contains(need):
            task_items = list(ti.get("resources") or []) + exec_items
            have = available.to_proto(role, ranges_first=True)
            return (f"Total resources {format_proto(task_items)} required by task and its "
                    f"executor is more than available {format_proto(have)}"), Resources()
        return None, need

    def _master_update(self, fw: Framework, ti: dict[str, Any], state: str, reason: str,
                       message: str) -> None:
        status = make_status(value(ti, "task_id") or "", state, "SOURCE_MASTER",
                             agent_id=value(ti, "agent_id"), message=message, reason=reason)
        fw.send({"type": "UPDATE", "update": {"status": status}})

    def _call_decline(self, fw: Framework, call: dict[str, Any]) -> None:
        dec = call["decline"]
        for o in dec.get("offer_ids") or []:
            offer = self.offers.get(value({"x": o}, "x") or "")
            if offer is None or offer.framework is not fw:
                continue
            self._remove_offer(offer)
            self._add_filter(fw, offer.agent, offer.resources, dec.get("filters"))
        self.allocate_soon()

    def _add_filter(self, fw: Framework, agent: Agent, res: Resources, filters: Any) -> None:
        refuse = DEFAULT_REFUSE_SECONDS
        if isinstance(filters, dict) and isinstance(filters.get("refuse_seconds"), (int, float)):
            refuse = float(filters["refuse_seconds"])
            if refuse < 0:
                refuse = DEFAULT_REFUSE_SECONDS
        if refuse <= 0 or res.empty():
            return
        refuse = min(refuse, 365 * 86400.0)
        fw.filters.append((agent.id, res, time.monotonic() + refuse))
        self.cluster.timers.call_later(refuse + 0.001, self.allocate_soon)

    def _call_revive(self, fw: Framework, call: dict[str, Any]) -> None:
        roles = (call.get("revive") or {}).get("roles") or fw.roles
        fw.suppressed -= set(roles)
        fw.filters = []
        self.allocate_soon()

    def _call_suppress(self, fw: Framework, call: dict[str, Any]) -> None:
        roles = (call.get("suppress") or {}).get("roles") or fw.roles
        fw.suppressed |= set(roles)

    def _call_kill(self, fw: Framework, call: dict[str, Any]) -> None:
        kill = call["kill"]
        tid = value(kill, "task_id") or ""
        task = fw.tasks.get(tid)
        if task is None:
            log.info("framework %s: KILL of unknown task %s; reconciling", fw.id, tid)
            self._reconcile(fw, [{"task_id": {"value": tid}, **(
                {"agent_id": kill["agent_id"]} if value(kill, "agent_id") else {})}])
            return
        if task.terminal:
            return
        task.agent.kill_task(task, grace_seconds(kill.get("kill_policy")))

    def _call_acknowledge(self, fw: Framework, call: dict[str, Any]) -> None:
        ack = call["acknowledge"]
        agent = self.agents.get(value(ack, "agent_id") or "")
        if agent is not None:
            agent.acknowledge(fw.id, value(ack, "task_id") or "", ack["uuid"])

    def _call_reconcile(self, fw: Framework, call: dict[str, Any]) -> None:
        self._reconcile(fw, [t for t in call["reconcile"].get("tasks") or [] if isinstance(t, dict)])

    def _reconcile(self, fw: Framework, wanted: list[dict[str, Any]]) -> None:
        aware = fw.capable("PARTITION_AWARE")
        if not wanted:
            for task in list(fw.tasks.values()):
                fw.send({"type": "UPDATE", "update": {"status": self._latest(task)}})
            return
        unreachable = {t.id: t for t in fw.unreachable_tasks}
        for item in wanted:
            tid = value(item, "task_id") or ""
            aid = value(item, "agent_id")
            task = fw.tasks.get(tid)
            if task is not None:
                status = self._latest(task)
            elif tid in unreachable:
                status = make_status(tid, "TASK_UNREACHABLE" if aware else "TASK_LOST",
                                     "SOURCE_MASTER", agent_id=unreachable[tid].agent_id,
                                     message="Reconciliation: Task is unreachable",
                                     reason="REASON_RECONCILIATION")
            elif aid is not None and aid in self.agents:
                status = make_status(tid, "TASK_GONE" if aware else "TASK_LOST", "SOURCE_MASTER",
                                     agent_id=aid,
                                     message="Reconciliation: Task is unknown to the agent",
                                     reason="REASON_RECONCILIATION")
            else:
                status = make_status(tid, "TASK_UNKNOWN" if aware else "TASK_LOST",
                                     "SOURCE_MASTER", agent_id=aid,
                                     message="Reconciliation: Task is unknown",
                                     reason="REASON_RECONCILIATION")
            fw.send({"type": "UPDATE", "update": {"status": status}})

    def _latest(self, task: Task) -> dict[str, Any]:
        status = make_status(task.id, task.state, "SOURCE_MASTER", agent_id=task.agent_id,
                             message="Reconciliation: Latest task state",
                             reason="REASON_RECONCILIATION",
                             container_status=task.container_status())
        if task.latest is not None:
            for k in ("healthy", "labels", "data"):
                if k in task.latest:
                    status[k] = task.latest[k]
        return status

    def _call_message(self, fw: Framework, call: dict[str, Any]) -> None:
        msg = call["message"]
        agent = self.agents.get(value(msg, "agent_id") or "")
        if agent is not None:
            agent.framework_message(fw.id, value(msg, "executor_id") or "", msg.get("data", ""))

    def _call_shutdown(self, fw: Framework, call: dict[str, Any]) -> None:
        sd = call["shutdown"]
        agent = self.agents.get(value(sd, "agent_id") or "")
        if agent is not None:
            agent.shutdown_executor(fw.id, value(sd, "executor_id") or "")

    def _call_update_framework(self, fw: Framework, call: dict[str, Any]) -> Response:
        info = (call["update_framework"] or {}).get("framework_info")
        if isinstance(info, dict):
            info = dict(info)
            info["id"] = {"value": fw.id}
            fw.info = info
        return Response(200)

    # ---- allocation ------------------------------------------------------------------------

    def allocate_soon(self) -> None:
        if self._alloc_timer is None:
            self._alloc_timer = self.cluster.timers.call_later(0.005, self._allocate)

    def _agents(self) -> list[Agent]:
        return sorted(self.agents.values(), key=lambda a: a.index)

    def _offered(self, agent: Agent) -> Resources:
        total = Resources()
        for offer in self.offers.values():
            if offer.agent is agent:
                total = total + offer.resources
        return total

    def unallocated(self, agent: Agent) -> Resources:
        return agent.total - agent.used() - self._offered(agent)

    def _offer_role(self, fw: Framework) -> str | None:
        for role in fw.roles:
            if role not in fw.suppressed:
                return role
        return None

    def _allocate(self) -> None:
        self._alloc_timer = None
        now = time.monotonic()
        frameworks = [fw for fw in self.frameworks.values()
                      if fw.connected and self._offer_role(fw) is not None]
        for fw in self.frameworks.values():
            fw.filters = [f for f in fw.filters if f[2] > now]
        if not frameworks:
            return
        agents = self._agents()
        cluster_total = Resources()
        for a in agents:
            cluster_total = cluster_total + a.total
        held = {fw.id: self._held(fw) for fw in frameworks}
        batches: dict[str, list[Offer]] = {}
        for agent in agents:
            avail = self.unallocated(agent)
            if not avail.allocatable():
                continue
            candidates = [fw for fw in frameworks
                          if not any(aid == agent.id and res.contains(avail)
                                     for aid, res, _ in fw.filters)]
            if not candidates:
                continue
            fw = min(candidates, key=lambda f: (self._share(held[f.id], cluster_total), f.seq))
            role = self._offer_role(fw) or "*"
            oid = f"{self.id}-O{self._offer_seq}"
            self._offer_seq += 1
            offer = Offer(oid, fw, agent, avail, role)
            self.offers[oid] = offer
            fw.offers[oid] = offer
            held[fw.id] = held[fw.id] + avail
            if self.opts.offer_timeout and self.opts.offer_timeout > 0:
                offer.timer = self.cluster.timers.call_later(self.opts.offer_timeout,
                                                             self._offer_expired, offer)
            batches.setdefault(fw.id, []).append(offer)
        for fid, offers in batches.items():
            self.frameworks[fid].send({"type": "OFFERS",
                                       "offers": {"offers": [o.proto() for o in offers]}})
            log.debug("offered %s to %s", [o.id for o in offers], fid)

    def _held(self, fw: Framework) -> Resources:
        total = Resources()
        for t in fw.tasks.values():
            if not t.terminal:
                total = total + t.resources
        for o in fw.offers.values():
            total = total + o.resources
        return total

    @staticmethod
    def _share(held: Resources, total: Resources) -> float:
        shares = [held.scalars.get(k, 0) / v for k, v in total.scalars.items()
                  if k in ("cpus", "mem", "disk") and v > 0]
        return max(shares, default=0.0)

    def _remove_offer(self, offer: Offer) -> None:
        self.offers.pop(offer.id, None)
        offer.framework.offers.pop(offer.id, None)
        if offer.timer is not None:
            offer.timer.cancel()
            offer.timer = None

    def _offer_expired(self, offer: Offer) -> None:
        if self.offers.get(offer.id) is not offer:
            return
        self._remove_offer(offer)
        offer.framework.send({"type": "RESCIND", "rescind": {"offer_id": {"value": offer.id}}})
        log.info("offer %s to %s rescinded after %.1fs", offer.id, offer.framework.id,
                 self.opts.offer_timeout)
        self.allocate_soon()

    # ---- /state ----------------------------------------------------------------------------

    def _agent_state(self, a: Agent) -> dict[str, Any]:
        return {
            "id": a.id, "pid": f"slave(1)@127.0.0.1:{a.port}", "hostname": a.hostname,
            "port": a.port, "attributes": a.attributes_state(), "registered_time": a.registered_time,
            "resources": a.total.to_state(), "used_resources": a.used().to_state(),
            "offered_resources": self._offered(a).to_state(), "reserved_resources": {},
            "unreserved_resources": a.total.to_state(), "active": True, "deactivated": False,
            "version": VERSION, "capabilities": list(AGENT_CAPABILITIES),
        }

    def _framework_state(self, fw: Framework) -> dict[str, Any]:
        used = Resources()
        for t in fw.tasks.values():
            if not t.terminal:
                used = used + t.resources
        executors = []
        for a in self._agents():
            for ex in a.executors_of(fw.id):
                used = used + ex.resources
                executors.append({**{k: v for k, v in ex.info.items() if k != "resources"},
                                  "executor_id": ex.id, "framework_id": fw.id,
                                  "resources": ex.resources.to_state(), "slave_id": a.id})
        offered = Resources()
        for o in fw.offers.values():
            offered = offered + o.resources
        out: dict[str, Any] = {
            "id": fw.id, "name": fw.info.get("name", ""), "user": fw.info.get("user", ""),
            "hostname": fw.info.get("hostname", ""), "webui_url": fw.info.get("webui_url", ""),
            "failover_timeout": float(fw.info.get("failover_timeout") or 0.0),
            "checkpoint": bool(fw.info.get("checkpoint", False)),
            "capabilities": [c.get("type") for c in fw.info.get("capabilities") or []
                             if isinstance(c, dict)],
            "roles": fw.roles, "active": fw.connected, "connected": fw.connected,
            "recovered": fw.recovered, "registered_time": fw.registered_time,
            "unregistered_time": fw.unregistered_time,
            "resources": (used + offered).to_state(), "used_resources": used.to_state(),
            "offered_resources": offered.to_state(),
            "offers": [{"id": o.id, "framework_id": fw.id, "slave_id": o.agent.id,
                        "resources": o.resources.to_state(),
                        "allocation_info": {"role": o.role}} for o in fw.offers.values()],
            "tasks": [t.to_state() for t in fw.tasks.values()],
            "completed_tasks": [t.to_state() for t in fw.completed_tasks],
            "unreachable_tasks": [t.to_state() for t in fw.unreachable_tasks],
            "executors": executors, "offer_constraints": {},
        }
        if fw.reregistered_time is not None:
            out["reregistered_time"] = fw.reregistered_time
        if "principal" in fw.info:
            out["principal"] = fw.info["principal"]
        return out

    def state(self) -> dict[str, Any]:
        agents = self._agents()
        return {
            "version": VERSION, "build_date": BUILD_DATE, "build_time": BUILD_TIME,
            "build_user": "", "start_time": self.start_time, "elected_time": self.elected_time,
            "id": self.id, "pid": self.pid, "hostname": "localhost",
            "capabilities": list(MASTER_CAPABILITIES), "activated_slaves": float(len(agents)),
            "deactivated_slaves": 0.0, "unreachable_slaves": 0.0, "leader": self.pid,
            "leader_info": {"hostname": "localhost", "id": self.id, "pid": self.pid,
                            "port": self.port},
            "flags": self.cluster.flags(),
            "slaves": [self._agent_state(a) for a in agents], "recovered_slaves": [],
            "frameworks": [self._framework_state(fw) for fw in self.frameworks.values()],
            "completed_frameworks": [self._framework_state(fw) for fw in self.completed_frameworks],
            "orphan_tasks": [], "unregistered_frameworks": [],
        }


__all__ = ["Master", "Framework", "Offer", "TERMINAL"]
