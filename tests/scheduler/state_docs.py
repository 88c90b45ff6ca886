"""Small state-store documents the store tests share."""


def app_doc(app_id="/a", instances=1, version="2026-11-24T06:00:00.000Z"):
    return {"id": app_id, "cmd": "sleep 100", "instances": instances, "version": version,
            "versionInfo": {"lastScalingAt": version, "lastConfigChangeAt": version}}


def dep(dep_id, app_id="/a", status="running", instances=1):
    return {"id": dep_id, "version": "v", "affectedApps": [app_id], "affectedPods": [],
            "steps": [{"actions": [{"action": "ScaleApplication", "app": app_id}]}],
            "currentStep": 1, "totalSteps": 1, "currentActions": [], "status": status,
            "createdAt": "t", "finishedAt": None, "message": None,
            "target": {"app": app_id, "instances": instances, "configVersion": "v"},
            "progress": {"healthy": 0, "running": 0, "old": 0}}


def task(task_id, app_id="/a", staged="2026-11-24T06:00:00.000Z"):
    return {"id": task_id, "appId": app_id, "state": "TASK_RUNNING", "stagedAt": staged,
            "version": "v", "healthy": None}
