"""JSON schemas of the API's request and response bodies, for `/v2/openapi.json`.

Derived from the one app schema: the app definition's fields are `scheduler.spec`'s (Marathon's
names), with the value sets the spec accepts (operators, protocols, kill selections,
executors); the response objects are `api.shapes`' field lists, closed
(`additionalProperties: false`), so a document that validates has Marathon's fields only.
The request schema describes the JSON shape; `scheduler.spec` adds the rules across fields (a
health check's port index, `cmd` xor `args`, ...), answered with 422.
"""

from __future__ import annotations

from typing import Any

from api import shapes
from scheduler.spec.healthchecks import HEALTH_CHECK_FIELDS
from scheduler.spec.model import (
    CONSTRAINT_OPERATORS,
    EXECUTORS,
    HEALTH_CHECK_PROTOCOLS,
    KILL_SELECTIONS,
    PORT_PROTOCOLS,
    READ_ONLY_FIELDS,
    READINESS_PROTOCOLS,
)
from scheduler.spec.parse import TOP_FIELDS

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


STR = {"type": "string"}
NUM = {"type": "number"}
INT = {"type": "integer"}
BOOL = {"type": "boolean"}
STR_MAP = {"type": "object", "additionalProperties": STR}
STR_LIST = {"type": "array", "items": STR}
ANY_OBJECT = {"type": "object"}


def _obj(props: dict[str, Schema], required: tuple[str, ...] = (), closed: bool = True
         ) -> Schema:
    out: Schema = {"type": "object", "properties": props}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    return out


PORT_DEFINITION = _obj({"port": {"type": "integer", "minimum": 0, "maximum": 65535},
                        "protocol": {"enum": list(PORT_PROTOCOLS)},
                        "name": nullable(STR), "labels": STR_MAP}, ("port",))
HEALTH_CHECK = _obj({
    "protocol": {"enum": list(HEALTH_CHECK_PROTOCOLS)}, "path": STR,
    "portIndex": {"type": "integer", "minimum": 0},
    "command": nullable(_obj({"value": STR})),
    "gracePeriodSeconds": NUM, "intervalSeconds": NUM, "timeoutSeconds": NUM,
    "maxConsecutiveFailures": INT, "delaySeconds": NUM, "ignoreHttp1xx": BOOL,
    "ipProtocol": {"enum": ["IPv4", "IPv6"]}, "port": nullable(INT),
})
assert set(HEALTH_CHECK["properties"]) == HEALTH_CHECK_FIELDS
ARTIFACT = _obj({"uri": STR, "extract": BOOL, "executable": BOOL, "cache": BOOL,
                 "destPath": STR}, ("uri",))
READINESS_CHECK = _obj({
    "name": STR, "protocol": {"enum": list(READINESS_PROTOCOLS)}, "path": STR,
    "portName": STR, "intervalSeconds": INT, "timeoutSeconds": INT,
    "httpStatusCodesForReady": {"type": "array", "items": INT}, "preserveLastResponse": BOOL,
})
UNREACHABLE = {"anyOf": [{"const": "disabled"}, _obj({"inactiveAfterSeconds": INT,
                                                      "expungeAfterSeconds": INT})]}
CONSTRAINT = {"type": "array", "minItems": 2, "maxItems": 3,
              "prefixItems": [STR, {"enum": list(CONSTRAINT_OPERATORS)},
                              {"anyOf": [STR, INT]}]}

APP_DEFINITION_PROPERTIES: dict[str, Schema] = {
    "id": STR, "cmd": nullable(STR), "args": nullable(STR_LIST), "cpus": NUM, "mem": NUM,
    "disk": NUM, "gpus": INT, "instances": {"type": "integer", "minimum": 0},
    "portDefinitions": nullable({"type": "array", "items": PORT_DEFINITION}),
    "ports": nullable({"type": "array", "items": INT}), "requirePorts": BOOL,
    "env": {"type": "object", "additionalProperties": {"anyOf": [STR, ANY_OBJECT]}},
    "labels": STR_MAP, "constraints": {"type": "array", "items": CONSTRAINT},
    "healthChecks": {"type": "array", "items": HEALTH_CHECK},
    "readinessChecks": {"type": "array", "items": READINESS_CHECK},
    "backoffSeconds": NUM, "backoffFactor": NUM, "maxLaunchDelaySeconds": NUM,
    "upgradeStrategy": _obj({"minimumHealthCapacity": NUM, "maximumOverCapacity": NUM}),
    "killSelection": {"enum": list(KILL_SELECTIONS)},
    "taskKillGracePeriodSeconds": nullable(NUM), "executor": {"enum": list(EXECUTORS)},
    "role": nullable(STR), "user": nullable(STR),
    "fetch": {"type": "array", "items": ARTIFACT}, "uris": nullable(STR_LIST),
    "acceptedResourceRoles": nullable(STR_LIST), "dependencies": STR_LIST,
    "unreachableStrategy": UNREACHABLE,
    "networks": {"type": "array", "items": _obj({"mode": STR, "name": STR}, closed=False)},
    "container": nullable(ANY_OBJECT), "ipAddress": nullable(ANY_OBJECT),
    "secrets": ANY_OBJECT, "residency": nullable(ANY_OBJECT), "storeUrls": STR_LIST,
    "tty": nullable(BOOL), "resourceLimits": nullable(ANY_OBJECT),
    "executorResources": nullable(ANY_OBJECT), "check": nullable(ANY_OBJECT),
}
assert set(APP_DEFINITION_PROPERTIES) == set(TOP_FIELDS), set(TOP_FIELDS) ^ set(
    APP_DEFINITION_PROPERTIES)

VERSION_INFO = _obj({"lastScalingAt": STR, "lastConfigChangeAt": STR})
TASK_FAILURE = _obj({k: nullable(STR) for k in shapes.TASK_FAILURE_FIELDS})
HEALTH_RESULT = _obj({"alive": BOOL, "consecutiveFailures": INT, "firstSuccess": nullable(STR),
                      "lastSuccess": nullable(STR), "lastFailure": nullable(STR),
                      "lastFailureCause": nullable(STR), "instanceId": STR, "taskId": STR})
IP_ADDRESS = _obj({"ipAddress": STR, "protocol": STR})
TASK = _obj({
    "appId": STR, "healthCheckResults": {"type": "array", "items": HEALTH_RESULT},
    "checkResult": ANY_OBJECT, "host": nullable(STR), "id": STR,
    "ipAddresses": {"type": "array", "items": IP_ADDRESS}, "ports": {"type": "array",
                                                                    "items": INT},
    "servicePorts": {"type": "array", "items": INT}, "slaveId": nullable(STR), "state": STR,
    "stagedAt": nullable(STR), "startedAt": nullable(STR), "version": nullable(STR),
    "localVolumes": {"type": "array"}, "region": STR, "zone": STR, "role": STR,
}, ("id", "appId", "state"))
assert set(TASK["properties"]) == shapes.TASK_FIELDS
READINESS_RESULT = _obj({"name": STR, "taskId": STR, "ready": BOOL,
                         "lastResponse": _obj({"status": INT, "contentType": STR, "body": STR})})
STATS = _obj({"stats": _obj({"counts": _obj({k: INT for k in ("staged", "running", "healthy",
                                                                "unhealthy")}),
                             "lifeTime": _obj({"averageSeconds": NUM, "medianSeconds": NUM})})})
APP = _obj({
    **{k: v for k, v in APP_DEFINITION_PROPERTIES.items()},
    "version": STR, "versionInfo": VERSION_INFO,
    "tasksStaged": INT, "tasksRunning": INT, "tasksHealthy": INT, "tasksUnhealthy": INT,
    "deployments": {"type": "array", "items": _obj({"id": STR}, ("id",))},
    "readinessCheckResults": {"type": "array", "items": READINESS_RESULT},
    "tasks": {"type": "array", "items": ref("Task")}, "lastTaskFailure": TASK_FAILURE,
    "tasksStats": _obj({k: STATS for k in ("startedAfterLastScaling", "withLatestConfig",
                                            "withOutdatedConfig", "totalSummary")}),
}, ("id",))
assert set(APP["properties"]) <= shapes.APP_FIELDS
APP_VERSION = _obj({**APP_DEFINITION_PROPERTIES, "version": STR, "versionInfo": VERSION_INFO},
                   ("id",))
ACTION = _obj({"action": STR, "app": STR, "pod": STR,
               "readinessCheckResults": {"type": "array", "items": READINESS_RESULT}})
DEPLOYMENT = _obj({
    "id": STR, "version": STR, "affectedApps": STR_LIST, "affectedPods": STR_LIST,
    "steps": {"type": "array", "items": _obj({"actions": {"type": "array", "items": ACTION}})},
    "currentActions": {"type": "array", "items": ACTION}, "currentStep": INT,
    "totalSteps": INT,
}, ("id",))
DEPLOYMENT_RESULT = _obj({"deploymentId": nullable(STR), "version": nullable(STR)},
                         ("deploymentId", "version"))
QUEUE_ITEM = _obj({
    "app": _obj({**APP_DEFINITION_PROPERTIES, "version": STR, "versionInfo": VERSION_INFO}),
    "count": INT, "role": STR, "delay": _obj({"timeLeftSeconds": INT, "overdue": BOOL}),
    "since": nullable(STR), "lastUnusedOffers": {"type": "array"},
    "processedOffersSummary": _obj({k: {} for k in shapes.PROCESSED_OFFERS_SUMMARY_FIELDS}),
})
INFO = _obj({k: {} for k in shapes.INFO_FIELDS})
GROUP = _obj({"id": STR, "apps": {"type": "array", "items": ref("App")},
              "groups": {"type": "array", "items": ref("Group")}, "pods": {"type": "array"},
              "dependencies": STR_LIST, "version": STR, "enforceRole": BOOL}, ("id",))
GROUP_UPDATE = _obj({"id": STR, "apps": {"type": "array", "items": ref("AppDefinition")},
                     "groups": {"type": "array", "items": ref("GroupUpdate")},
                     "dependencies": STR_LIST, "scaleBy": NUM, "version": STR,
                     "pods": {"type": "array"}, "enforceRole": BOOL})
ERROR = _obj({"message": STR, "details": {"type": "array", "items": _obj({
    "path": STR, "errors": STR_LIST})}, "deployments": {"type": "array"}}, ("message",))


def components() -> dict[str, Schema]:
    return {
        "AppDefinition": _obj(APP_DEFINITION_PROPERTIES | {k: {} for k in READ_ONLY_FIELDS},
                              closed=False),
        "App": APP, "AppVersion": APP_VERSION, "Task": TASK, "Deployment": DEPLOYMENT,
        "DeploymentResult": DEPLOYMENT_RESULT, "QueueItem": QUEUE_ITEM, "Info": INFO,
        "Group": GROUP, "GroupUpdate": GROUP_UPDATE, "Error": ERROR,
        "TasksKill": _obj({"ids": STR_LIST}, ("ids",)),
    }


def _list(key: str, item: Schema) -> Schema:
    return _obj({key: {"type": "array", "items": item}}, (key,))


# Success answers by operation (resource class, method): status -> schema (None: no body).
RESPONSES: dict[tuple[str, str], dict[str, Schema | None]] = {
    ("AppsCollection", "get"): {"200": _list("apps", ref("App"))},
    ("AppsCollection", "post"): {"201": ref("App")},
    ("AppsCollection", "put"): {"200": ref("DeploymentResult")},
    ("AppsCollection", "patch"): {"200": ref("DeploymentResult")},
    ("AppResource", "get"): {"200": _obj({"app": ref("App")}, ("app",))},
    ("AppResource", "put"): {"200": ref("DeploymentResult"), "201": ref("DeploymentResult")},
    ("AppResource", "patch"): {"200": ref("DeploymentResult")},
    ("AppResource", "delete"): {"200": ref("DeploymentResult")},
    ("AppRestart", "post"): {"200": ref("DeploymentResult")},
    ("AppTasks", "get"): {"200": _list("tasks", ref("Task"))},
    ("AppTasks", "delete"): {"200": {"anyOf": [_list("tasks", ref("Task")),
                                               ref("DeploymentResult")]}},
    ("AppTask", "delete"): {"200": {"anyOf": [_obj({"task": ref("Task")}, ("task",)),
                                              ref("DeploymentResult")]}},
    ("AppsInGroup", "get"): {"200": _obj({"*": {"type": "array", "items": ref("App")}},
                                         ("*",))},
    ("AppVersions", "get"): {"200": _obj({"versions": STR_LIST}, ("versions",))},
    ("AppVersion", "get"): {"200": ref("AppVersion")},
    ("Groups", "get"): {"200": ref("Group")},
    ("Groups", "post"): {"201": ref("DeploymentResult")},
    ("Groups", "put"): {"200": ref("DeploymentResult"), "201": ref("DeploymentResult")},
    ("Groups", "delete"): {"200": ref("DeploymentResult")},
    ("Tasks", "get"): {"200": _list("tasks", ref("Task"))},
    ("TasksDelete", "post"): {"200": {"anyOf": [_list("tasks", ref("Task")),
                                                ref("DeploymentResult")]}},
    ("Deployments", "get"): {"200": {"type": "array", "items": ref("Deployment")}},
    ("Deployment", "get"): {"200": ref("Deployment")},
    ("Deployment", "delete"): {"200": ref("DeploymentResult"), "202": None},
    ("Queue", "get"): {"200": _list("queue", ref("QueueItem"))},
    ("QueueDelay", "delete"): {"204": None},
    ("Info", "get"): {"200": ref("Info")},
    ("LeaderResource", "get"): {"200": _obj({"leader": STR}, ("leader",))},
}

REQUESTS: dict[tuple[str, str], Schema] = {
    ("AppsCollection", "post"): ref("AppDefinition"),
    ("AppsCollection", "put"): {"type": "array", "items": ref("AppDefinition")},
    ("AppsCollection", "patch"): {"type": "array", "items": ref("AppDefinition")},
    ("AppResource", "put"): ref("AppDefinition"),
    ("AppResource", "patch"): ref("AppDefinition"),
    ("Groups", "post"): ref("GroupUpdate"),
    ("Groups", "put"): ref("GroupUpdate"),
    ("TasksDelete", "post"): ref("TasksKill"),
}
