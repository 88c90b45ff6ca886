"""Validation of v1 API request bodies, with Mesos's error texts."""

from __future__ import annotations

import json
from typing import Any

from localmesos.model import id_problem, valid_uuid_b64, value

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


def validate_call(call: dict[str, Any]) -> str | None:
    """Mesos's wording for a scheduler::Call it refuses (400), None when it is valid."""
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
