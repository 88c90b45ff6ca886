"""Marathon's field names per response object, and the filter that keeps answers to them.

Typed Marathon clients build objects from our JSON and reject keys they do not know, so every
answer carries Marathon's fields only (a subset is fine: Marathon omits empty optionals too).
The names are those of Marathon 1.x's RAML types (`docs/docs/rest-api/public/api/v2/types/`:
`App`/`AppInfo`, `Task`, `Health`, `TaskFailure`, `DeploymentPlan`/`DeploymentAction`,
`QueueApp`, `MarathonInfo`) and of its event bus documentation.

accessd's own fields (an app's status label, a task's agent attributes, resources, health
verdict and last message, a deployment's progress and target, a queue item's waiting reason,
…) are kept only when the request asks for them with `embed=accessd` (any prefix Marathon uses
is accepted too: `apps.accessd`, `app.accessd`, `tasks.accessd`). Marathon ignores embed values
it does not know, so a client may send it to either server. The status page and the CLI do.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Doc = dict[str, Any]

ACCESSD_EMBED = "accessd"

# App definition fields (RAML `App`), all Marathon 1.x versions together.
APP_DEFINITION_FIELDS = frozenset({
    "id", "acceptedResourceRoles", "args", "backoffFactor", "backoffSeconds", "cmd",
    "constraints", "container", "cpus", "dependencies", "disk", "env", "executor",
    "executorResources", "fetch", "healthChecks", "check", "instances", "labels",
    "maxLaunchDelaySeconds", "mem", "gpus", "ipAddress", "networks", "ports", "portDefinitions",
    "readinessChecks", "residency", "resourceLimits", "requirePorts", "secrets", "storeUrls",
    "taskKillGracePeriodSeconds", "upgradeStrategy", "uris", "user", "version", "versionInfo",
    "killSelection", "unreachableStrategy", "tty", "role",
})
# `AppInfo`: the definition plus what `embed` adds.
APP_FIELDS = APP_DEFINITION_FIELDS | {
    "tasksStaged", "tasksRunning", "tasksHealthy", "tasksUnhealthy", "deployments",
    "readinessCheckResults", "tasks", "lastTaskFailure", "tasksStats",
}
APP_EXTRAS = frozenset({"status"})

TASK_FIELDS = frozenset({
    "appId", "healthCheckResults", "checkResult", "host", "id", "ipAddresses", "ports",
    "servicePorts", "slaveId", "state", "stagedAt", "startedAt", "version", "localVolumes",
    "region", "zone", "role",
})
TASK_EXTRAS = frozenset({
    "agentId", "attributes", "healthy", "killRequested", "message", "reason", "resources",
    "leaving",
})
# accessd's own event types, streamed only with `embed=accessd` (the drain contract's).
ACCESSD_EVENT_TYPES = frozenset({"task_leaving_event"})
# `Health` (Marathon 1.4+ names the task `instanceId`; earlier versions `taskId`).
HEALTH_RESULT_FIELDS = frozenset({
    "alive", "consecutiveFailures", "firstSuccess", "lastSuccess", "lastFailure",
    "lastFailureCause", "instanceId", "taskId",
})
TASK_FAILURE_FIELDS = frozenset({
    "appId", "host", "message", "state", "taskId", "timestamp", "version", "slaveId",
})
DEPLOYMENT_FIELDS = frozenset({
    "id", "version", "affectedApps", "affectedPods", "steps", "currentActions", "currentStep",
    "totalSteps",
})
DEPLOYMENT_EXTRAS = frozenset({
    "status", "createdAt", "finishedAt", "message", "target", "progress", "kind",
    "parts",  # a plan of several apps: its apps' own deployments (scheduler.deployment_plans)
})
DEPLOYMENT_ACTION_FIELDS = frozenset({"action", "app", "pod", "readinessCheckResults"})
# The plan inside deployment events (`deployment_info`, `deployment_success`, …): Marathon's
# plan also carries `original` and `target` as whole groups, which accessd does not have.
EVENT_PLAN_FIELDS = frozenset({"id", "steps", "version"})
QUEUE_ITEM_FIELDS = frozenset({
    "app", "count", "role", "delay", "since", "processedOffersSummary", "lastUnusedOffers",
})
QUEUE_ITEM_EXTRAS = frozenset({"lastUnusedOfferReason", "consecutiveFailures"})
QUEUE_DELAY_FIELDS = frozenset({"timeLeftSeconds", "overdue"})
PROCESSED_OFFERS_SUMMARY_FIELDS = frozenset({
    "processedOffersCount", "unusedOffersCount", "lastUnusedOfferAt", "lastUsedOfferAt",
    "rejectSummaryLastOffers", "rejectSummaryLaunchAttempt",
})
INFO_FIELDS = frozenset({
    "name", "version", "buildref", "elected", "leader", "frameworkId", "marathon_config",
    "zookeeper_config", "http_config", "event_subscriber",
})
INFO_EXTRAS = frozenset({"authentication"})
HTTP_CONFIG_FIELDS = frozenset({"http_port", "https_port"})
MARATHON_CONFIG_FIELDS = frozenset({
    "access_control_allow_origin", "checkpoint", "decline_offer_duration",
    "default_network_name", "env_vars_prefix", "executor", "failover_timeout", "features",
    "framework_name", "ha", "hostname", "launch_token", "launch_token_refresh_interval",
    "leader_proxy_connection_timeout_ms", "leader_proxy_read_timeout_ms", "local_port_max",
    "local_port_min", "master", "max_instances_per_offer", "mesos_bridge_name",
    "mesos_heartbeat_failure_threshold", "mesos_heartbeat_interval", "mesos_leader_ui_url",
    "mesos_role", "mesos_user", "min_revive_offers_interval", "offer_matching_timeout",
    "on_elected_prepare_timeout", "reconciliation_initial_delay", "reconciliation_interval",
    "scale_apps_initial_delay", "scale_apps_interval", "store_cache",
    "task_launch_confirm_timeout", "task_launch_timeout", "task_lost_expunge_initial_delay",
    "task_lost_expunge_interval", "task_reservation_timeout", "webui_url",
})
# Event payloads by `eventType` (every event also has `eventType` and `timestamp`).
EVENT_FIELDS: dict[str, frozenset[str]] = {
    "api_post_event": frozenset({"clientIp", "uri", "appDefinition"}),
    "status_update_event": frozenset({
        "slaveId", "taskId", "taskStatus", "message", "appId", "host", "ipAddresses", "ports",
        "version"}),
    "health_status_changed_event": frozenset({"appId", "taskId", "instanceId", "version",
                                              "alive"}),
    "unhealthy_task_kill_event": frozenset({"appId", "taskId", "instanceId", "version",
                                            "reason", "host", "slaveId"}),
    "failed_health_check_event": frozenset({"appId", "taskId", "instanceId", "healthCheck"}),
    "deployment_info": frozenset({"plan", "currentStep"}),
    "deployment_step_success": frozenset({"plan", "currentStep"}),
    "deployment_step_failure": frozenset({"plan", "currentStep"}),
    "deployment_success": frozenset({"id", "plan"}),
    "deployment_failed": frozenset({"id", "plan"}),
    "app_terminated_event": frozenset({"appId"}),
    "scheduler_registered_event": frozenset({"frameworkId", "master"}),
    "scheduler_reregistered_event": frozenset({"masterId"}),
    "scheduler_disconnected_event": frozenset(),
    "event_stream_attached": frozenset({"remoteAddress"}),
    "event_stream_detached": frozenset({"remoteAddress"}),
}
EVENT_COMMON_FIELDS = frozenset({"eventType", "timestamp"})


def wants_extras(embed_values: Iterable[str]) -> bool:
    """True when an `embed` value asks for accessd's own fields (`accessd`, `apps.accessd`)."""
    for raw in embed_values:
        for value in raw.split(","):
            if value.strip().rsplit(".", 1)[-1] == ACCESSD_EMBED:
                return True
    return False


def only(doc: Doc, fields: frozenset[str]) -> Doc:
    # The subset test runs in C; most documents hold no foreign key, and then a copy is enough.
    if doc.keys() <= fields:
        return dict(doc)
    return {k: v for k, v in doc.items() if k in fields}


def health_result(doc: Doc) -> Doc:
    return only(doc, HEALTH_RESULT_FIELDS)


def task(doc: Doc, extras: bool = False) -> Doc:
    out = only(doc, TASK_FIELDS | TASK_EXTRAS if extras else TASK_FIELDS)
    if isinstance(out.get("healthCheckResults"), list):
        out["healthCheckResults"] = [health_result(r) if isinstance(r, dict) else r
                                     for r in out["healthCheckResults"]]
    return out


def app(doc: Doc, extras: bool = False) -> Doc:
    out = only(doc, APP_FIELDS | APP_EXTRAS if extras else APP_FIELDS)
    if isinstance(out.get("tasks"), list):
        out["tasks"] = [task(t, extras) for t in out["tasks"]]
    if isinstance(out.get("lastTaskFailure"), dict):
        out["lastTaskFailure"] = only(out["lastTaskFailure"], TASK_FAILURE_FIELDS)
    return out


def deployment(doc: Doc, extras: bool = False) -> Doc:
    out = only(doc, DEPLOYMENT_FIELDS | DEPLOYMENT_EXTRAS if extras else DEPLOYMENT_FIELDS)
    if isinstance(out.get("currentActions"), list):
        out["currentActions"] = [only(a, DEPLOYMENT_ACTION_FIELDS) if isinstance(a, dict) else a
                                 for a in out["currentActions"]]
    return out


def queue_item(doc: Doc, extras: bool = False) -> Doc:
    out = only(doc, QUEUE_ITEM_FIELDS | QUEUE_ITEM_EXTRAS if extras else QUEUE_ITEM_FIELDS)
    if isinstance(out.get("app"), dict):  # `QueueApp.app` is a definition, without counters
        out["app"] = app(out["app"], True) if extras else only(out["app"],
                                                                APP_DEFINITION_FIELDS)
    if isinstance(out.get("delay"), dict):
        out["delay"] = only(out["delay"], QUEUE_DELAY_FIELDS)
    if isinstance(out.get("processedOffersSummary"), dict):
        out["processedOffersSummary"] = only(out["processedOffersSummary"],
                                             PROCESSED_OFFERS_SUMMARY_FIELDS)
    return out


def info(doc: Doc, extras: bool = False) -> Doc:
    out = only(doc, INFO_FIELDS | INFO_EXTRAS if extras else INFO_FIELDS)
    if isinstance(out.get("http_config"), dict) and not extras:
        out["http_config"] = only(out["http_config"], HTTP_CONFIG_FIELDS)
    if isinstance(out.get("marathon_config"), dict) and not extras:
        out["marathon_config"] = only(out["marathon_config"], MARATHON_CONFIG_FIELDS)
    return out


def event(doc: Doc, extras: bool = False) -> Doc:
    """An event bus payload; unknown event types pass unchanged (they are accessd's own or
    newer Marathon ones, and a subscriber filters by `eventType`)."""
    if extras:
        return doc
    fields = EVENT_FIELDS.get(str(doc.get("eventType")))
    if fields is None:
        return doc
    out = only(doc, fields | EVENT_COMMON_FIELDS)
    if isinstance(out.get("plan"), dict):
        out["plan"] = only(out["plan"], EVENT_PLAN_FIELDS)
    if isinstance(out.get("appDefinition"), dict):
        out["appDefinition"] = only(out["appDefinition"], APP_DEFINITION_FIELDS)
    return out
