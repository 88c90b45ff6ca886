"""The invariants `bench/chaos.py` checks after each fault, and its HTTP client that counts 5xx.

Definitions (all counted per fault, summed over the run):
- lost: a task that had started (STARTING/RUNNING) and ended other than by the scheduler's
  own kill (TASK_LOST, TASK_FAILED, TASK_GONE, TASK_UNREACHABLE, TASK_ERROR, TASK_DROPPED,
  TASK_UNKNOWN...) and was not on the agent the fault took away (machine loss ends those tasks
  by design); launches that never started and were reported gone (an ACCEPT that crossed a
  master restart) are counted apart (printed with the sanity counts); plus, after the cluster
  had `CONVERGE_SECONDS` to settle, every instance an app is short of, and every task the
  store holds that Mesos does not know.
- duplicates: after settling, live tasks beyond an app's `instances`, and tasks Mesos runs
  that the store does not know.
- orphans: processes whose `MESOS_SANDBOX` is in the cluster's work dir and that belong to no
  process tree the agents account for (task and executor pids), still there 10 s after settling.
- partial_writes: an app document whose version has no deployment, whose newest deployment
  targets other instances than the app holds, or a write the API acknowledged (2xx) that the
  store does not show, or a refused/unanswered write that it does.
- unexpected_5xx: every API answer >= 500 other than the documented 503s (`State store
  unavailable` with Retry-After, `Too many event streams` with Retry-After).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import requests

from bench.chaos_stack import Stack, process_tree

ENDED_BY_US = {"TASK_KILLED", "TASK_FINISHED", "TASK_KILLING"}
NOT_ENDED = {"TASK_STAGING", "TASK_STARTING", "TASK_RUNNING"}
DOCUMENTED_503 = ("State store unavailable", "Too many event streams")


class Api:
    """requests against the control API, counting answers >= 500."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.local = threading.local()
        self.lock = threading.Lock()
        self.unexpected_5xx: list[str] = []
        self.documented_503 = 0
        self.connection_errors = 0

    def _session(self) -> requests.Session:
        s = getattr(self.local, "s", None)
        if s is None:
            s = self.local.s = requests.Session()
        return s

    def request(self, method: str, path: str, body: Any = None,
                timeout: float = 20) -> requests.Response | None:
        try:
            resp = self._session().request(method, self.base + path, json=body, timeout=timeout)
        except requests.RequestException:
            with self.lock:
                self.connection_errors += 1
            self.local.s = None  # a fresh connection next time
            return None
        if resp.status_code >= 500:
            try:
                message = resp.json().get("message", "")
            except ValueError:
                message = resp.text[:200]
            with self.lock:
                if resp.status_code in (503, 507) and message.startswith(DOCUMENTED_503) \
                        and resp.headers.get("Retry-After"):
                    self.documented_503 += 1
                else:
                    self.unexpected_5xx.append(f"{method} {path}: {resp.status_code} {message}")
        return resp

    def get_json(self, path: str, tries: int = 20) -> Any:
        for _ in range(tries):
            resp = self.request("GET", path)
            if resp is not None and resp.status_code == 200:
                return resp.json()
            time.sleep(0.25)
        raise RuntimeError(f"GET {path} kept failing")


def app_shortfall(store: Any, apps: list[dict], mesos: dict[str, dict]) -> dict[str, int]:
    """{app id: instances missing}, counting live, running (and healthy, with checks) tasks."""
    short: dict[str, int] = {}
    tasks = store.list_tasks()
    for app in apps:
        checked = bool(app.get("healthChecks"))
        ok = [t for t in tasks if t["appId"] == app["id"] and t["state"] == "TASK_RUNNING"
              and not t.get("killRequested") and (not checked or t.get("healthy") is True)
              and t["id"] in mesos]
        if len(ok) < app["instances"]:
            short[app["id"]] = app["instances"] - len(ok)
    return short


def settled(stack: Stack, store: Any) -> bool:
    """No deployment running, every app at its instances, store and Mesos agree, agents up."""
    if store.list_deployments(active_only=True):
        return False
    if not all(a["running"] for a in stack.agents()):
        return False
    mesos = stack.mesos_live_tasks()
    live = {t["id"]: t for t in store.list_tasks()}
    if set(mesos) != set(live):
        return False
    apps = store.list_apps()
    if app_shortfall(store, apps, mesos):
        return False
    return all(sum(1 for t in live.values() if t["appId"] == a["id"]) == a["instances"]
               for a in apps)


def count_after_settling(stack: Stack, store: Any) -> tuple[int, int, list[str]]:
    """(lost, duplicates, notes) from the state at the end of a step."""
    notes: list[str] = []
    mesos = stack.mesos_live_tasks()
    live = {t["id"]: t for t in store.list_tasks()}
    apps = store.list_apps()
    lost = duplicates = 0
    for app_id, n in app_shortfall(store, apps, mesos).items():
        lost += n
        notes.append(f"{app_id} short of {n}")
    for task_id in set(live) - set(mesos):
        lost += 1
        notes.append(f"store has {task_id}, Mesos does not")
    for task_id in set(mesos) - set(live):
        duplicates += 1
        notes.append(f"Mesos runs {task_id}, the store does not know it")
    for app in apps:
        n = sum(1 for t in mesos.values() if t["id"] in live and live[t["id"]]["appId"] == app["id"])
        if n > app["instances"]:
            duplicates += n - app["instances"]
            notes.append(f"{app['id']} has {n} tasks for {app['instances']} instances")
    return lost, duplicates, notes


def unexpected_ends(events: list[tuple[int, dict]], away_hosts: set[str],
                    started: set[str]) -> tuple[list[dict], list[dict]]:
    """Status updates that ended a task other than by a kill, outside the hosts taken away:
    (tasks that had started, launches that never did). `started` (task ids seen STARTING or
    RUNNING) is kept up to date across calls. A launch whose ACCEPT crossed a master restart
    never reaches an agent: reconciliation reports it gone and it is replaced; Mesos launches
    are at most once, so those are counted apart, not as lost tasks."""
    ran, never_ran = [], []
    for _, event in events:
        if event.get("eventType") != "status_update_event":
            continue
        state = event.get("taskStatus")
        if state in ("TASK_STARTING", "TASK_RUNNING"):
            started.add(event.get("taskId"))
        if state in NOT_ENDED or state in ENDED_BY_US:
            continue
        if event.get("host") in away_hosts:
            continue
        (ran if event.get("taskId") in started else never_ran).append(event)
    return ran, never_ran


def orphans(stack: Stack, grace: float = 10.0) -> tuple[set[int], int]:
    """Sandbox processes outside every tree the agents account for (`grace` s to go away),
    and how many sandbox processes were looked at."""
    deadline = time.monotonic() + grace
    while True:
        roots = [pid for a in stack.agents() for pid in a.get("pids") or []]
        roots += [e["pid"] for a in stack.agents() for e in a.get("executors") or []
                  if e.get("pid")]
        seen = stack.sandbox_processes()
        extra = seen - process_tree(roots)
        if not extra or time.monotonic() > deadline:
            return extra, len(seen)
        time.sleep(0.5)


def history_gaps(store: Any) -> list[str]:
    """Apps whose current version is missing from their version history. App changes commit
    their history entry with them; a scale by killing tasks (`/v2/tasks/delete?scale=true`)
    still writes it after its transaction, so this is counted apart from partial writes."""
    return [app["id"] for app in store.list_apps()
            if app["version"] not in store.list_app_versions(app["id"])]


def half_applied(store: Any) -> list[str]:
    """Apps whose document and deployments disagree (one transaction writes both).

    The scheduler prunes finished deployments, oldest first, past the newest
    `FINISHED_DEPLOYMENTS_KEPT` (scheduler.periodic_round): an app version older than every
    finished deployment still stored may have lost its deployment that way, and is not counted
    (an app untouched since early in a long run, such as the storm's)."""
    problems = []
    deployments = store.list_deployments(active_only=False)  # in creation order
    oldest_kept = next((d.get("version") or "" for d in deployments
                        if d.get("status") != "running"), None)
    for app in store.list_apps():
        mine = [d for d in deployments if app["id"] in d.get("affectedApps", [])]
        if not any(d.get("version") == app["version"] for d in mine):
            if oldest_kept is not None and app["version"] <= oldest_kept:
                continue  # its deployment finished and was pruned
            problems.append(f"{app['id']} version {app['version']} has no deployment")
            continue
        newest = max(mine, key=lambda d: (d.get("createdAt") or "", d.get("version") or ""))
        target = (newest.get("target") or {}).get("instances")
        if target is not None and target != app["instances"]:
            problems.append(f"{app['id']} holds {app['instances']} instances, its newest "
                            f"deployment targets {target}")
    return problems
