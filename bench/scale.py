"""Scale benchmark: launching and deleting hundreds of instances on the real stack.

    .venv/bin/python bench/scale.py [--quick] [--agents 4]

Starts localmesos (`--agents` agents with room for 1,000 small tasks), `accessd scheduler` and
`accessd api` (gunicorn, 2 workers) on one SQLite store, on free ports of 127.0.0.1, as
`accessd local` does, then drives them over HTTP only, as a user would:

- a `//cmd` app (`sleep`, no ports) created with 0 instances, scaled to 500 with one
  `PUT /v2/apps/{id}`: seconds until the API shows all of them TASK_RUNNING; then
  `DELETE /v2/apps/{id}`: seconds until localmesos has no task of it left and every process it
  started is gone; the same for 1,000 instances;
- an app on accessd's executor (a COMMAND health check), 0 → 100: seconds until all healthy;
  the executors' resident memory (VmRSS, from /proc) per task; then deleted the same way;
- `updates_per_s`, the scheduler's capacity to take status updates: with 1,000 tasks running
  (a third app, `backoffSeconds` 3600 so that nothing is relaunched meanwhile), the scheduler
  is paused (SIGSTOP), every task process is SIGKILLed, and once the master shows all 1,000
  TASK_FAILED (their updates sent or queued to the paused scheduler, none acknowledged) the
  scheduler resumes (SIGCONT): 1,000 divided by the seconds from the resume until the store
  holds the last of them (each stored, then acknowledged, as always). This is a burst that is
  already waiting, so the figure is the scheduler's rate, not the rate at which a launch
  produces updates; that arrival rate during the 1,000 scale is printed too (`arrival`).

`--quick` scales to 100 / 200 / 20 instead (the RESULT keys keep their names; the sizes are
printed). The load average is printed at the start and the end: on a shared machine compare
figures measured in the same conditions. The last line is
`RESULT scale_500_s=<n> scale_1000_s=<n> delete_500_s=<n> executor_100_healthy_s=<n>
updates_per_s=<n> executor_rss_mb=<n>`.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.loadgen import cpu_seconds  # noqa: E402
from scheduler.spec import parse_time  # noqa: E402
from tests.support import free_port, wait_until  # noqa: E402

AGENT_RESOURCES = "cpus:64;mem:65536;disk:100000;ports:[31000-31999]"
CMD_APP = "/bench/cmd"
EXEC_APP = "/bench/exec"


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.1) -> Any:
    """`tests.support.wait_until` ending the bench (SystemExit) with what it waited for; an
    error raised by `check` itself is not retried."""
    return wait_until(check, timeout, every, what, error=SystemExit, retry_on=())


class Stack:
    """localmesos + scheduler + API as child processes, each in its own process group."""

    def __init__(self, work: Path, agents: int) -> None:
        self.work = work
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []
        state = work / "state.db"
        master_port, api_port = free_port(), free_port()
        self.mesos = f"http://127.0.0.1:{master_port}"
        self.base = f"http://127.0.0.1:{api_port}"
        self.state_path = state
        lm = self._start("localmesos", "-m", "localmesos", "--port", str(master_port),
                         "--agents", str(agents), "--work-dir", str(work / "localmesos"),
                         "--resources", AGENT_RESOURCES, "--log-level", "WARNING")
        self._wait_line(lm, f"ready master=127.0.0.1:{master_port}", 60)
        self._start("scheduler", "-m", "accessd.cli", "scheduler", "--master",
                    f"127.0.0.1:{master_port}", "--state", str(state))
        self._start("api", "-m", "accessd.cli", "api", "--bind", f"127.0.0.1:{api_port}",
                    "--workers", "2", "--state", str(state))
        self.http = requests.Session()
        wait_for("the API", self._ping, 60, 0.2)
        wait_for("the scheduler to register", lambda: self.frameworks(), 60, 0.2)

    def _start(self, name: str, *args: str) -> subprocess.Popen:
        log = self.work / f"{name}.log"
        self.logs.append(log)
        out = subprocess.PIPE if name == "localmesos" else log.open("wb")
        proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=out,
                                stderr=log.open("ab") if name == "localmesos" else
                                subprocess.STDOUT, text=name == "localmesos",
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    @staticmethod
    def _wait_line(proc: subprocess.Popen, line: str, timeout: float) -> None:
        assert proc.stdout is not None
        deadline = time.monotonic() + timeout
        for text in proc.stdout:
            if text.strip() == line:
                return
            if time.monotonic() > deadline:
                break
        raise SystemExit(f"localmesos did not print {line!r}")

    def _ping(self) -> bool:
        try:
            return self.http.get(self.base + "/ping", timeout=2).text == "pong"
        except requests.RequestException:
            return False

    def frameworks(self) -> list[dict]:
        return self.http.get(self.mesos + "/state", timeout=10).json().get("frameworks") or []

    def mesos_tasks(self) -> list[dict]:
        return [t for f in self.frameworks() for t in f.get("tasks") or []]

    def pids(self) -> list[int]:
        agents = self.http.get(self.mesos + "/_localmesos/agents", timeout=10).json()["agents"]
        return [pid for a in agents for pid in a.get("pids") or []]

    def app(self, app_id: str) -> dict | None:
        """The app as `GET /v2/apps` lists it (counts and deployments, no tasks), as a client
        watching a deployment polls it. `GET /v2/apps/{id}` embeds every task: polled ten
        times a second during a launch of 1,000 it cost the API as much CPU as the
        scheduler's own work."""
        resp = self.http.get(self.base + "/v2/apps", params={"id": app_id}, timeout=30)
        if resp.status_code != 200:
            return None
        return next((a for a in resp.json()["apps"] if a["id"] == app_id), None)

    def call(self, method: str, path: str, body: Any = None) -> requests.Response:
        resp = self.http.request(method, self.base + path, json=body, timeout=30)
        if resp.status_code >= 300:
            raise SystemExit(f"{method} {path}: {resp.status_code} {resp.text}")
        return resp

    def stop(self) -> None:
        for proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is gone for our purposes (its parent reaps it)
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


def process_tree(root: int) -> list[int]:
    """`root` and its descendants (from /proc's parent links)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def executor_rss_mb(pids: list[int]) -> float:
    """Resident memory of the executor processes under the agents' `pids` (the Python
    processes of each tree: a wrapper shell or the task's own `sleep` are not the executor)."""
    total = 0.0
    for root in pids:
        for pid in process_tree(root):
            try:
                comm = Path(f"/proc/{pid}/comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith("python"):
                total += rss_mb(pid)
    return total


def tree_cpu_seconds(root: int) -> float:
    """User + system CPU seconds of `root` and its live descendants."""
    return sum(cpu_seconds(pid) or 0.0 for pid in process_tree(root))


def cpu_by_component(stack: Stack) -> dict[str, float]:
    """localmesos's own process (not its tasks), the scheduler, the API (gunicorn + workers)."""
    return {"localmesos": cpu_seconds(stack.procs[0].pid) or 0.0,
            "scheduler": tree_cpu_seconds(stack.procs[1].pid),
            "api": tree_cpu_seconds(stack.procs[2].pid)}


def cmd_app(app_id: str, **extra: Any) -> dict:
    return {"id": app_id, "executor": "//cmd", "cmd": "exec sleep 3600", "instances": 0,
            "cpus": 0.01, "mem": 8, "portDefinitions": [],
            "upgradeStrategy": {"minimumHealthCapacity": 0, "maximumOverCapacity": 0}, **extra}


def executor_app(app_id: str) -> dict:
    return {"id": app_id, "cmd": "exec sleep 3600", "instances": 0, "cpus": 0.01, "mem": 16,
            "portDefinitions": [],
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": "true"},
                              "gracePeriodSeconds": 30, "intervalSeconds": 2,
                              "timeoutSeconds": 1, "maxConsecutiveFailures": 3}]}


def scale_to_running(stack: Stack, app: dict, n: int, *, healthy: bool = False) -> float:
    """Create `app` with 0 instances, PUT instances=n; seconds until all n run (or are
    healthy)."""
    stack.call("POST", "/v2/apps", app)
    wait_for("the app's creation to finish",
             lambda: (stack.app(app["id"]) or {"deployments": [1]})["deployments"] == [], 60)
    started = time.monotonic()
    stack.call("PUT", f"/v2/apps{app['id']}", {"instances": n})
    key = "tasksHealthy" if healthy else "tasksRunning"
    last = [-1]

    def done() -> bool:
        doc = stack.app(app["id"]) or {}
        count = doc.get(key, 0)
        if count != last[0] and count % 100 == 0:
            print(f"    {key}={count} after {time.monotonic() - started:.1f}s", flush=True)
        last[0] = count
        return count >= n

    wait_for(f"{n} tasks of {app['id']} {key}", done, 600, 0.1)
    took = time.monotonic() - started
    wait_for("the scale's deployment to finish",
             lambda: (stack.app(app["id"]) or {}).get("deployments") == [], 120)
    return took


def delete_to_nothing(stack: Stack, app_id: str) -> float:
    """DELETE the app; seconds until localmesos has no live task and none of its processes."""
    pids = stack.pids()
    mark = latest_event(stack.state_path)
    cpu_before = cpu_by_component(stack)
    started = time.monotonic()
    stack.call("DELETE", f"/v2/apps{app_id}")

    def gone() -> bool:
        # the cheap checks first: /state with hundreds of tasks is a large document
        if stack.pids() or any(alive(p) for p in pids):
            return False
        return not [t for t in stack.mesos_tasks()
                    if t.get("state") not in ("TASK_KILLED", "TASK_FINISHED", "TASK_FAILED",
                                              "TASK_LOST", "TASK_GONE")]

    wait_for(f"every task of {app_id} to be gone", gone, 600, 0.1)
    took = time.monotonic() - started
    cpu_after = cpu_by_component(stack)
    print("  CPU seconds during the delete: " + ", ".join(
        f"{k} {cpu_after[k] - cpu_before[k]:.1f}" for k in cpu_after), flush=True)
    print(f"  timeline: {timeline(stack.state_path, mark)}", flush=True)
    return took


def updates_per_second(state_path: Path, since_event: int) -> tuple[int, float]:
    """Status updates the scheduler stored after event id `since_event` and their rate."""
    import sqlite3

    conn = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT json_extract(doc, '$.timestamp') FROM events WHERE id > ? AND "
            "json_extract(doc, '$.eventType') = 'status_update_event' AND "
            "json_extract(doc, '$.taskStatus') != 'TASK_STAGING' ORDER BY id",
            (since_event,)).fetchall()
    finally:
        conn.close()
    times = [parse_time(r[0]) for r in rows if r[0]]
    if len(times) < 2:
        return len(times), 0.0
    span = max(times[-1] - times[0], 1e-3)
    return len(times), len(times) / span


def stored_count(state_path: Path, since_event: int, state: str) -> tuple[int, float]:
    """Status updates to `state` stored after event `since_event`: count, latest timestamp."""
    import sqlite3

    conn = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, timeout=30)
    try:
        n, last = conn.execute(
            "SELECT COUNT(*), MAX(json_extract(doc, '$.timestamp')) FROM events WHERE id > ? "
            "AND json_extract(doc, '$.eventType') = 'status_update_event' AND "
            "json_extract(doc, '$.taskStatus') = ?", (since_event, state)).fetchone()
    finally:
        conn.close()
    return int(n), parse_time(last) if last else 0.0


def update_burst(stack: Stack, app_id: str, n: int) -> float:
    """Status updates per second the scheduler stores (and then acknowledges) from a burst of
    `n` that wait for it: see the module docstring."""
    scale_to_running(stack, cmd_app(app_id, backoffSeconds=3600, maxLaunchDelaySeconds=3600), n)
    scheduler = stack.procs[1]
    mark = latest_event(stack.state_path)
    pids = stack.pids()
    os.kill(scheduler.pid, signal.SIGSTOP)
    try:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

        def all_failed() -> bool:
            states = [t.get("state") for t in stack.mesos_tasks()]
            return sum(1 for s in states if s == "TASK_FAILED") >= n

        wait_for(f"the master to show {n} TASK_FAILED", all_failed, 120, 0.2)
        before = tree_cpu_seconds(scheduler.pid)
    finally:
        resumed = time.time()
        os.kill(scheduler.pid, signal.SIGCONT)
    wait_for(f"the store to hold {n} TASK_FAILED",
             lambda: stored_count(stack.state_path, mark, "TASK_FAILED")[0] >= n, 120, 0.05)
    count, last = stored_count(stack.state_path, mark, "TASK_FAILED")
    took = max(last - resumed, 1e-3)
    print(f"  {count} TASK_FAILED stored {took:.2f}s after the resume: {count / took:.0f}/s; "
          f"scheduler CPU {tree_cpu_seconds(scheduler.pid) - before:.2f}s", flush=True)
    return count / took


def timeline(state_path: Path, since_event: int) -> str:
    """When the launches were stored (STAGING) and the updates applied, from the event log."""
    import sqlite3

    conn = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, timeout=30)
    try:
        rows = conn.execute(
            "SELECT json_extract(doc, '$.taskStatus'), MIN(json_extract(doc, '$.timestamp')), "
            "MAX(json_extract(doc, '$.timestamp')), COUNT(*) FROM events WHERE id > ? AND "
            "json_extract(doc, '$.eventType') = 'status_update_event' GROUP BY 1",
            (since_event,)).fetchall()
    finally:
        conn.close()
    if not rows:
        return "no status updates"
    start = min(parse_time(r[1]) for r in rows)
    return "; ".join(f"{state} x{n} {parse_time(a) - start:.1f}..{parse_time(b) - start:.1f}s"
                     for state, a, b, n in rows)


def latest_event(state_path: Path) -> int:
    import sqlite3

    conn = sqlite3.connect(f"file:{state_path}?mode=ro", uri=True, timeout=30)
    try:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0])
    finally:
        conn.close()


def start_profiles(stack: Stack, out_dir: str, tag: str = "") -> list[subprocess.Popen]:
    """py-spy on localmesos, the scheduler and the API (with its gunicorn workers). `--gil`:
    only samples of the thread holding the GIL, i.e. Python running; without it, threads
    waiting in a lock or a queue are counted too and the profile shows mostly waiting."""
    spy = Path(sys.executable).parent / "py-spy"
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    return [subprocess.Popen([str(spy), "record", "--pid", str(proc.pid), "--format", "raw",
                              "--threads", "--gil", "--subprocesses", "--rate", "200",
                              "--nonblocking", "-o", str(Path(out_dir, f"{name}{tag}.txt"))],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for name, proc in zip(("localmesos", "scheduler", "api"), stack.procs[:3],
                                  strict=True)]


def stop_profiles(profilers: list[subprocess.Popen]) -> None:
    for proc in profilers:
        proc.send_signal(signal.SIGINT)
    for proc in profilers:
        proc.wait(60)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="100 / 200 / 20 instead of 500 / 1000 / 100")
    p.add_argument("--agents", type=int, default=4)
    p.add_argument("--sizes", metavar="SMALL,LARGE,EXECUTOR", help="other sizes (e.g. 50,600,10)")
    p.add_argument("--profile", metavar="DIR",
                   help="record localmesos, the scheduler and the API with py-spy (make bench "
                        "installs it) "
                        "during the large scale, as flame-graph text files in DIR")
    opts = p.parse_args()
    small, large, executors = (100, 200, 20) if opts.quick else (500, 1000, 100)
    if opts.sizes:
        small, large, executors = (int(x) for x in opts.sizes.split(","))
    print(f"sizes: {small} and {large} //cmd tasks, {executors} on accessd's executor; "
          f"{opts.agents} agents; load average {os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="accessd-scale-") as tmp:
        stack = Stack(Path(tmp), opts.agents)
        try:
            print(f"0 -> {small} //cmd", flush=True)
            scale_small = scale_to_running(stack, cmd_app(CMD_APP + "-a"), small)
            print(f"  all running after {scale_small:.2f}s; deleting", flush=True)
            delete_small = delete_to_nothing(stack, CMD_APP + "-a")
            print(f"  gone after {delete_small:.2f}s", flush=True)

            print(f"0 -> {large} //cmd", flush=True)
            mark = latest_event(stack.state_path)
            profilers = start_profiles(stack, opts.profile) if opts.profile else []
            cpu_before = cpu_by_component(stack)
            scale_large = scale_to_running(stack, cmd_app(CMD_APP + "-b"), large)
            cpu_after = cpu_by_component(stack)
            stop_profiles(profilers)
            print("  CPU seconds during it: " + ", ".join(
                f"{k} {cpu_after[k] - cpu_before[k]:.1f}" for k in cpu_after), flush=True)
            count, rate = updates_per_second(stack.state_path, mark)
            print(f"  timeline: {timeline(stack.state_path, mark)}", flush=True)
            print(f"  all running after {scale_large:.2f}s ({count} status updates, "
                  f"arrival {rate:.0f}/s); deleting", flush=True)
            profilers = start_profiles(stack, opts.profile, "-delete") if opts.profile else []
            delete_large = delete_to_nothing(stack, CMD_APP + "-b")
            stop_profiles(profilers)
            print(f"  gone after {delete_large:.2f}s", flush=True)

            print(f"{large} updates waiting for the scheduler (paused, then resumed)",
                  flush=True)
            updates = update_burst(stack, CMD_APP + "-c", large)
            delete_to_nothing(stack, CMD_APP + "-c")

            print(f"0 -> {executors} on accessd's executor, to healthy", flush=True)
            exec_s = scale_to_running(stack, executor_app(EXEC_APP), executors, healthy=True)
            pids = stack.pids()
            rss = executor_rss_mb(pids) / max(1, executors)
            print(f"  all healthy after {exec_s:.2f}s; {len(pids)} executors, "
                  f"{rss:.1f} MB RSS per task; deleting", flush=True)
            delete_exec = delete_to_nothing(stack, EXEC_APP)
            print(f"  gone after {delete_exec:.2f}s", flush=True)
        finally:
            stack.stop()
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    print(f"RESULT scale_500_s={scale_small:.2f} scale_1000_s={scale_large:.2f} "
          f"delete_500_s={delete_small:.2f} executor_100_healthy_s={exec_s:.2f} "
          f"updates_per_s={updates:.0f} executor_rss_mb={rss:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
