"""Marathon's readiness checks: the scheduler probes a new task's readiness endpoint, and a
deployment counts the task only once it is ready (`deployments.task_is_ready`).

As in Marathon, the scheduler itself probes (HTTP or HTTPS GET of `path` on the task's port named
`portName`, at its first IP address), every `intervalSeconds` with `timeoutSeconds`, until the
answer's status is one of `httpStatusCodesForReady`; then the task is ready for good (Marathon
stops checking it). The result is kept on the task document as Marathon's
`readinessCheckResults` (`{"name", "taskId", "ready", "lastResponse"}`, the response only with
`preserveLastResponse`), which deployments copy into `currentActions`.

Plan/submit shape: `ReadinessProber.round` runs in the scheduler's worker (the only writer of task
documents): it stores the results of finished probes and starts the probes now due in daemon
threads (at most MAX_INFLIGHT at once), so a slow endpoint never holds the worker.
"""

from __future__ import annotations

import ssl
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import Future
from typing import Any

Doc = dict[str, Any]

SCAN_SECONDS = 0.5      # how often due probes are looked for
MAX_BODY = 64 * 1024    # what a preserved response keeps of the body
MAX_INFLIGHT = 16       # probes running at once
RESULTS = "readinessCheckResults"


def is_ready(task: Doc) -> bool:
    return any(r.get("ready") is True for r in task.get(RESULTS) or ())


def probe_url(app: Doc, check: Doc, task: Doc) -> str | None:
    """The URL of `check` for `task`, or None when the task has no port of that name."""
    names = [p.get("name") for p in app.get("portDefinitions") or ()]
    try:
        port = (task.get("ports") or [])[names.index(check.get("portName"))]
    except (ValueError, IndexError):
        return None
    addresses = task.get("ipAddresses") or []
    host = addresses[0].get("ipAddress") if addresses else task.get("host")
    scheme = "https" if check.get("protocol") == "HTTPS" else "http"
    return f"{scheme}://{host}:{port}{check.get('path') or '/'}"


def probe(check: Doc, task_id: str, url: str) -> Doc:
    """One readiness probe; never raises (a failure is a not-ready result)."""
    codes = set(check.get("httpStatusCodesForReady") or [200])
    result: Doc = {"name": check.get("name", "readinessCheck"), "taskId": task_id,
                   "ready": False}
    context = ssl._create_unverified_context() if url.startswith("https") else None
    try:
        with urllib.request.urlopen(url, timeout=float(check.get("timeoutSeconds", 10)),
                                    context=context) as resp:
            status, ctype, body = resp.status, resp.headers.get_content_type(), resp.read(MAX_BODY)
    except urllib.error.HTTPError as exc:
        status, ctype, body = exc.code, exc.headers.get_content_type(), exc.read(MAX_BODY)
    except (OSError, ValueError) as exc:
        if check.get("preserveLastResponse"):
            result["lastResponse"] = {"status": 0, "contentType": "text/plain",
                                      "body": f"no answer from {url}: {exc}"}
        return result
    result["ready"] = status in codes
    if check.get("preserveLastResponse"):
        result["lastResponse"] = {"status": status, "contentType": ctype,
                                  "body": body.decode("utf-8", "replace")}
    return result


def _in_thread(fn: Any, *args: Any) -> Future:
    """`fn(*args)` in a daemon thread (a probe in flight never holds up the scheduler's exit,
    which a ThreadPoolExecutor's workers would, for up to `timeoutSeconds`)."""
    fut: Future = Future()

    def run() -> None:
        try:
            fut.set_result(fn(*args))
        except BaseException as exc:  # probe() does not raise; keep the future honest anyway
            fut.set_exception(exc)

    threading.Thread(target=run, name="readiness-probe", daemon=True).start()
    return fut


class ReadinessProber:
    def __init__(self, max_inflight: int = MAX_INFLIGHT) -> None:
        self.max_inflight = max_inflight
        self.inflight: dict[str, Future] = {}
        self.next_probe: dict[str, float] = {}
        self.last_scan = 0.0

    def round(self, store: Any, now: float | None = None) -> bool:
        """Store finished results and submit due probes; True when a task document changed
        (a deployment may have moved on)."""
        now = time.monotonic() if now is None else now
        changed = False
        for task_id, fut in list(self.inflight.items()):
            if not fut.done():
                continue
            del self.inflight[task_id]
            doc = store.get_task(task_id)
            try:
                result = fut.result()
            except Exception:
                continue  # probed again at its next interval
            if doc is not None and doc.get(RESULTS) != [result]:
                doc[RESULTS] = [result]
                store.upsert_task(doc)
                changed = True
        if now - self.last_scan >= SCAN_SECONDS:
            self.last_scan = now
            self._submit_due(store, now)
        return changed

    def _submit_due(self, store: Any, now: float) -> None:
        live: set[str] = set()
        for app in store.list_apps():
            checks = app.get("readinessChecks") or []
            if not checks:
                continue
            check = checks[0]
            for task in store.list_tasks(app["id"]):
                live.add(task["id"])
                if len(self.inflight) >= self.max_inflight:
                    return  # the rest at the next scan
                if (task.get("state") != "TASK_RUNNING" or task.get("killRequested")
                        or is_ready(task) or task["id"] in self.inflight
                        or self.next_probe.get(task["id"], 0.0) > now):
                    continue
                url = probe_url(app, check, task)
                if url is None:
                    continue
                self.next_probe[task["id"]] = now + float(check.get("intervalSeconds", 30))
                self.inflight[task["id"]] = _in_thread(probe, check, task["id"], url)
        for task_id in [t for t in self.next_probe if t not in live]:
            del self.next_probe[task_id]


def prober_of(worker: Any) -> ReadinessProber:
    """The worker's prober, made on first use."""
    prober = getattr(worker, "_readiness_prober", None)
    if prober is None:
        prober = worker._readiness_prober = ReadinessProber()
    return prober
