"""Marathon 1.x's field names per response object type, written down from Marathon's RAML
(`docs/docs/rest-api/public/api/v2/types/*.raml`) and event bus documentation, independently of
`api/shapes.py`: the tests check answers against these lists, so a field accessd adds by
mistake fails them even if it was also added to the API's own list."""

from __future__ import annotations

from typing import Any

APP = {
    # App (the definition)
    "id", "acceptedResourceRoles", "args", "backoffFactor", "backoffSeconds", "cmd",
    "constraints", "container", "cpus", "dependencies", "disk", "env", "executor",
    "executorResources", "fetch", "healthChecks", "check", "instances", "labels",
    "maxLaunchDelaySeconds", "mem", "gpus", "ipAddress", "networks", "ports", "portDefinitions",
    "readinessChecks", "residency", "resourceLimits", "requirePorts", "secrets", "storeUrls",
    "taskKillGracePeriodSeconds", "upgradeStrategy", "uris", "user", "version", "versionInfo",
    "killSelection", "unreachableStrategy", "tty", "role",
    # AppInfo
    "tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "deployments",
    "readinessCheckResults", "tasks", "lastTaskFailure", "tasksStats",
}
TASK = {
    "appId", "healthCheckResults", "checkResult", "host", "id", "ipAddresses", "ports",
    "servicePorts", "slaveId", "state", "stagedAt", "startedAt", "version", "localVolumes",
    "region", "zone", "role",
}
HEALTH = {"alive", "consecutiveFailures", "firstSuccess", "lastSuccess", "lastFailure",
          "lastFailureCause", "instanceId", "taskId"}
TASK_FAILURE = {"appId", "host", "message", "state", "taskId", "timestamp", "version", "slaveId"}
DEPLOYMENT = {"id", "version", "affectedApps", "affectedPods", "steps", "currentActions",
              "currentStep", "totalSteps"}
DEPLOYMENT_ACTION = {"action", "app", "pod", "readinessCheckResults"}
QUEUE_ITEM = {"app", "count", "role", "delay", "since", "processedOffersSummary",
              "lastUnusedOffers"}
INFO = {"name", "version", "buildref", "elected", "leader", "frameworkId", "marathon_config",
        "zookeeper_config", "http_config", "event_subscriber"}
EVENT_COMMON = {"eventType", "timestamp"}
EVENTS = {
    "api_post_event": {"clientIp", "uri", "appDefinition"},
    "deployment_info": {"plan", "currentStep"},
    "status_update_event": {"slaveId", "taskId", "taskStatus", "message", "appId", "host",
                            "ipAddresses", "ports", "version"},
}
PLAN = {"id", "original", "target", "steps", "version"}


def extra_keys(doc: dict[str, Any], allowed: set[str]) -> set[str]:
    return set(doc) - allowed


def check_app(app: dict[str, Any]) -> None:
    assert not extra_keys(app, APP), extra_keys(app, APP)
    for task in app.get("tasks") or ():
        check_task(task)
    if app.get("lastTaskFailure"):
        assert not extra_keys(app["lastTaskFailure"], TASK_FAILURE)


def check_task(task: dict[str, Any]) -> None:
    assert not extra_keys(task, TASK), extra_keys(task, TASK)
    for result in task.get("healthCheckResults") or ():
        assert not extra_keys(result, HEALTH), extra_keys(result, HEALTH)


def check_deployment(dep: dict[str, Any]) -> None:
    assert not extra_keys(dep, DEPLOYMENT), extra_keys(dep, DEPLOYMENT)
    for action in dep.get("currentActions") or ():
        assert not extra_keys(action, DEPLOYMENT_ACTION)
