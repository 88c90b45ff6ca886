"""The master's v1 operator API (`POST /api/v1`), the one call localmesos implements:
`MARK_AGENT_GONE` (the operator asserts an agent is shut down for good; its tasks become
TASK_GONE_BY_OPERATOR for partition-aware frameworks, TASK_LOST for the others; see
agent_health.mark_gone). Other calls answer 501, naming themselves."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from localmesos.call_validation import json_error_text
from localmesos.httpserver import Request, Response
from localmesos.model import value

if TYPE_CHECKING:
    from localmesos.master import Master


def operator_call(master: Master, req: Request) -> Response:
    if req.method != "POST":
        return Response.text(405, f"Expecting one of {{ 'POST' }}, but received '{req.method}'")
    problem = json_error_text(req.body)
    if problem:
        return Response.text(400, problem)
    call = json.loads(req.body)
    if not isinstance(call, dict) or not isinstance(call.get("type"), str):
        return Response.text(400, "Failed to validate master::Call: Expecting 'type' to be present")
    if call["type"] != "MARK_AGENT_GONE":
        return Response.text(501, f"localmesos does not implement the operator call {call['type']}")
    aid = value(call.get("mark_agent_gone") or {}, "agent_id")
    if aid is None:
        return Response.text(400, "Failed to validate master::Call: "
                                  "Expecting 'mark_agent_gone' to be present")
    with master.cluster.lock:
        if aid in master.gone_agents:
            return Response(200)  # Mesos: marking a gone agent gone again is a no-op
        agent = master.agents.get(aid) or master.unreachable_agents.get(aid)
        if agent is None or agent.id != aid:  # (a lost machine's agent may be back, renamed)
            return Response.text(404, f"Agent '{aid}' not found")
        master.mark_gone(agent)
    return Response(200)
