"""The agent's v1 executor API (`POST /api/v1/executor`): validation with Mesos's error texts,
SUBSCRIBE (the event stream, queued LAUNCHes), UPDATE (accepted, then ACKNOWLEDGED back) and
MESSAGE. A mixin of `agent.Agent`."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from localmesos.call_validation import json_error_text
from localmesos.httpserver import Request, Response, Stream
from localmesos.model import TERMINAL, Executor, valid_uuid_b64, value

EXECUTOR_CALLS = frozenset({"SUBSCRIBE", "UPDATE", "MESSAGE", "UPDATE_OPERATION_STATUS",
                            "HEARTBEAT"})

log = logging.getLogger("localmesos.agent")

RESENDABLE = TERMINAL | {"TASK_STARTING", "TASK_RUNNING", "TASK_KILLING"}


class ExecutorApi:
    def executor_api(self, req: Request) -> Response | Stream:
        refusal = self.start_refusal()
        answer = refusal if refusal is not None else self._executor_call(req)
        with self.cluster.lock:  # counted by answer, to measure a reconnect storm
            self.executor_api_answers[
                str(answer.status if isinstance(answer, Response) else 200)] += 1
        return answer

    def _executor_call(self, req: Request) -> Response | Stream:
        if req.method != "POST":
            return Response.text(405, f"Expecting one of {{ 'POST' }}, but received '{req.method}'")
        if not req.headers.get("Content-Type"):
            return Response.text(400, "Expecting 'Content-Type' to be present")
        problem = json_error_text(req.body)
        if problem:
            return Response.text(400, problem)
        call = json.loads(req.body)
        prefix = "Failed to validate executor::Call: "
        if not isinstance(call, dict) or call.get("type") not in EXECUTOR_CALLS:
            return Response.text(400, prefix + "Expecting 'type' to be present")
        fid, eid = value(call, "framework_id"), value(call, "executor_id")
        if eid is None:
            return Response.text(400, prefix + "Expecting 'executor_id' to be present")
        if fid is None:
            return Response.text(400, prefix + "Expecting 'framework_id' to be present")
        kind = call["type"]
        if kind == "UPDATE":
            status = (call.get("update") or {}).get("status")
            if not isinstance(status, dict):
                return Response.text(400, prefix + "Expecting 'update' to be present")
            if not valid_uuid_b64(status.get("uuid")):
                return Response.text(400, prefix + "Expecting 'uuid' to be present")
            if status.get("source", "SOURCE_EXECUTOR") != "SOURCE_EXECUTOR":
                return Response.text(400, prefix + f"Received Call from executor {eid} of "
                                     f"framework {fid} with invalid source, expecting "
                                     "'SOURCE_EXECUTOR'")
            if status.get("state") == "TASK_STAGING":
                return Response.text(400, prefix + f"Received TASK_STAGING from executor {eid} "
                                     f"of framework {fid} which is not allowed")
            if status.get("state") not in TERMINAL | {"TASK_STARTING", "TASK_RUNNING",
                                                       "TASK_KILLING"} \
                    or value(status, "task_id") is None:
                return Response.text(400, "Failed to convert JSON into Call protobuf: "
                                          "bad update.status (state, task_id)")
        if kind == "MESSAGE" and not isinstance(call.get("message"), dict):
            return Response.text(400, prefix + "Expecting 'message' to be present")
        with self.cluster.lock:
            if self.down:
                return Response.text(503, "Agent is not running")
            if not self.running or fid not in self.framework_infos:
                return Response.text(400, "Framework cannot be found")
            ex = self.executors.get((fid, eid))
            if ex is None or ex.exited:
                return Response.text(400, "Executor cannot be found")
            if kind == "SUBSCRIBE":
                return self._executor_subscribe(ex, call)
            if not ex.subscribed:
                return Response.text(403, "Executor is not subscribed")
            if kind == "UPDATE":
                self._executor_update(ex, call["update"]["status"])
            elif kind == "MESSAGE":
                self.master.executor_message(fid, self.id, eid, call["message"].get("data", ""))
            return Response(202)

    def _executor_subscribe(self, ex: Executor, call: dict[str, Any]) -> Stream:
        again = ex.subscribed or ex.stream is not None or ex.recovering
        ex.recovering = False
        if ex.stream is not None:
            ex.stream.close()
        stream = Stream(on_close=lambda s: self._executor_stream_closed(ex, s))
        ex.stream = stream
        ex.subscribed = True
        fw_info = dict(self.framework_infos.get(ex.framework_id) or {})
        fw_info["id"] = {"value": ex.framework_id}
        ex.send({"type": "SUBSCRIBED", "subscribed": {
            "agent_info": self.agent_info(), "container_id": {"value": ex.container_id},
            "executor_info": ex.info, "framework_info": fw_info}})
        for task in ex.queued:
            if not task.terminal and not ex.shutting_down:
                ex.send({"type": "LAUNCH", "launch": {"task": task.info}})
        ex.queued = []
        # Updates the executor sent that were never ACKNOWLEDGED (the agent died, or the ACK was
        # lost with the old stream): new ones are taken as if sent now, resends only answered.
        for update in (call.get("subscribe") or {}).get("unacknowledged_updates") or []:
            status = update.get("status") if isinstance(update, dict) else None
            if isinstance(status, dict) and valid_uuid_b64(status.get("uuid")) \
                    and value(status, "task_id") is not None and status.get("state") in RESENDABLE:
                self._executor_update(ex, status)
        if ex.shutting_down:
            ex.send({"type": "SHUTDOWN"})
            ex.timers.append(self.cluster.timers.call_later(
                self.cluster.opts.executor_shutdown_grace, self._force_kill, ex))
        log.info("executor %s of %s %s on %s", ex.id, ex.framework_id,
                 "re-subscribed" if again else "subscribed", self.hostname)
        return stream

    def _executor_stream_closed(self, ex: Executor, stream: Stream) -> None:
        with self.cluster.lock:
            if ex.stream is stream:
                ex.stream = None

    def _executor_update(self, ex: Executor, raw: dict[str, Any]) -> None:
        tid = value(raw, "task_id") or ""
        task = ex.tasks.get(tid)
        ack = {"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": tid},
                                                        "uuid": raw["uuid"]}}
        if task is not None and not task.terminal and raw["uuid"] not in task.update_uuids:
            status = dict(raw)
            status["agent_id"] = {"value": self.id}
            status["source"] = "SOURCE_EXECUTOR"
            status.setdefault("timestamp", time.time())
            status["container_status"] = task.container_status()
            self._accept_status(task, status)
        ex.send(ack)
