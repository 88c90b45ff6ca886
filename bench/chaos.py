"""Fault suite: faults injected in a loop into the real stack while deployments run.

    .venv/bin/python bench/chaos.py [--seed 16] [--scale 1.0] [--storm 200]

Starts localmesos (3 agents), `accessd scheduler` and `accessd api` (gunicorn, 2 workers) on one
SQLite store that lives on a small tmpfs (`mount -t tmpfs`; where mounting is refused the
disk-full fault is skipped and says so), runs two apps — `/chaos/web` on accessd's executor (an
HTTP service with a 1 s HTTP health check) and `/chaos/cmd` on the Mesos command executor —
and then, in an order drawn from `--seed`, for each fault: a deployment through the API (a
scale or a restart), the fault a moment later, the cluster given time to settle, and the
invariants checked (`bench/chaos_checks.py` defines them). The faults:

- `scheduler_kill`: kill -9 of the scheduler, started again 0-2 s later (20 times);
- `agent_stop_start`: machine loss of an agent and a new one in its place;
- `agent_restart`: the agent process restarted with its executors kept (down 1-3 s);
- `master_restart`: master failover (sometimes with TCP resets, a recovery period);
- `api_worker_kill`: kill -9 of a gunicorn worker while a thread writes as fast as it can;
- `disk_full`: the store's filesystem filled: writes must answer 503/507 with a clear message,
  no running task may end, and writes work again once the ballast is removed;
- `event_clients`: 100 `/v2/events` clients that never read, while writes and reads go on;
- `storm`: one app scaled to `--storm` tasks (200) with 1 s health checks; the scheduler's CPU
  is sampled over 5 s windows while they all run (`max_scheduler_cpu`, % of one core).

`--scale` multiplies every fault's count (0.2 for a quick look). The load average is printed
at the start and the end. The last line is `RESULT faults=<n> lost=<n> duplicates=<n>
orphans=<n> partial_writes=<n> unexpected_5xx=<n> max_scheduler_cpu=<pct>`.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench import chaos_checks as checks  # noqa: E402
from bench.chaos_stack import Stack, wait_for  # noqa: E402
from bench.loadgen import cpu_seconds  # noqa: E402
from scheduler.sqlite_state import open_state  # noqa: E402
from tests.fixtures_disk import fill_filesystem, truncate_wal  # noqa: E402

COUNTS = {"scheduler_kill": 20, "agent_stop_start": 14, "agent_restart": 20,
          "master_restart": 16, "api_worker_kill": 24, "disk_full": 5, "event_clients": 2}
SETTLE_SECONDS = 90.0
WEB, CMD, STORM = "/chaos/web", "/chaos/cmd", "/chaos/storm"


def web_app(instances: int, docroot: Path) -> dict:
    root = shlex.quote(str(docroot))
    cmd = (f"mkdir -p {root}/$MESOS_TASK_ID && touch {root}/$MESOS_TASK_ID/health && "
           f"exec {shlex.quote(sys.executable)} -m http.server $PORT0 --bind $HOST "
           f"--directory {root}/$MESOS_TASK_ID")
    return {"id": WEB, "cmd": cmd, "cpus": 0.05, "mem": 32, "instances": instances,
            "portDefinitions": [{"port": 0, "name": "http"}], "backoffSeconds": 0.5,
            "taskKillGracePeriodSeconds": 2,
            "healthChecks": [{"protocol": "HTTP", "path": "/health", "portIndex": 0,
                              "gracePeriodSeconds": 15, "intervalSeconds": 1,
                              "timeoutSeconds": 0.5, "maxConsecutiveFailures": 3}]}


def cmd_app(instances: int) -> dict:
    return {"id": CMD, "cmd": "sleep 100000", "cpus": 0.02, "mem": 8, "instances": instances,
            "executor": "//cmd", "portDefinitions": [], "backoffSeconds": 0.5,
            "taskKillGracePeriodSeconds": 1}


def storm_app(instances: int, sick_flag: Path) -> dict:
    """Healthy while `sick_flag` does not exist: creating it for a moment makes every task's
    check fail at once (a burst of health updates), too briefly to get them killed."""
    check = f"[ ! -e {shlex.quote(str(sick_flag))} ]"
    return {"id": STORM, "cmd": "sleep 100000", "cpus": 0.01, "mem": 4, "instances": instances,
            "executor": "//cmd", "portDefinitions": [], "taskKillGracePeriodSeconds": 1,
            "healthChecks": [{"protocol": "COMMAND", "command": {"value": check},
                              "gracePeriodSeconds": 30, "intervalSeconds": 1,
                              "timeoutSeconds": 0.9, "maxConsecutiveFailures": 6}]}


class CpuSampler(threading.Thread):
    """The scheduler's CPU (% of one core) over 5 s windows, sampled every second, tagged with
    the phase running then."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(daemon=True)
        self.stack = stack
        self.phase = "setup"
        self.stop_event = threading.Event()
        self.windows: list[tuple[str, float]] = []

    def run(self) -> None:
        samples: list[tuple[float, float, int, str]] = []
        while not self.stop_event.wait(1.0):
            pid = self.stack.scheduler_pid
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            now = time.monotonic()
            samples = [s for s in samples if s[2] == pid and now - s[0] <= 5.05] + \
                [(now, cpu, pid, self.phase)]
            first = samples[0]
            if now - first[0] >= 4.95 and first[3] == self.phase:
                self.windows.append((self.phase, 100.0 * (cpu - first[1]) / (now - first[0])))

    def max(self, phase: str) -> float:
        return max((p for ph, p in self.windows if ph == phase), default=0.0)


class Chaos:
    def __init__(self, stack: Stack, rng: random.Random) -> None:
        self.stack = stack
        self.rng = rng
        self.api = checks.Api(stack.base)
        self.store = open_state(str(stack.state_path))
        self.totals: Counter[str] = Counter()
        self.sanity: Counter[str] = Counter()  # proof that the checks looked at something
        self.started: set[str] = set()  # task ids seen STARTING or RUNNING
        self.gaps: set[tuple[str, str]] = set()  # (app, version) missing from its history
        self.faults: Counter[str] = Counter()
        self.notes: list[str] = []
        self.after = self.store.latest_event_id()
        self.expect: dict[str, set[int]] = {}  # app -> instance counts the store may hold
        self.sampler = CpuSampler(stack)

    # -- writes ----------------------------------------------------------------------------------
    def write(self, app_id: str, instances: int) -> int | None:
        """Scale through the API; the status (None: no answer), the expectations kept."""
        resp = self.api.request("PUT", f"/v2/apps{app_id}?force=true", {"instances": instances})
        status = None if resp is None else resp.status_code
        if status is not None and status < 300:
            self.expect[app_id] = {instances}
        elif status is None or (status >= 500 and status != 503):
            self.expect.setdefault(app_id, set()).add(instances)  # maybe applied
        # 4xx and the documented 503 ("nothing was changed"): must not be applied
        return status

    def deployment(self) -> None:
        """The change each fault lands on: a scale of one app, or a restart of the web app."""
        pick = self.rng.random()
        if pick < 0.4:
            self.write(WEB, self.rng.randint(2, 4))
        elif pick < 0.8:
            self.write(CMD, self.rng.randint(2, 6))
        else:
            self.api.request("POST", f"/v2/apps{WEB}/restart?force=true")

    # -- faults ----------------------------------------------------------------------------------
    def scheduler_kill(self) -> set[str]:
        time.sleep(self.rng.uniform(0.0, 0.5))
        self.stack.kill_scheduler()
        time.sleep(self.rng.uniform(0.0, 2.0))
        self.stack.start_scheduler()
        return set()

    def agent_stop_start(self) -> set[str]:
        agent = self.rng.choice(self.stack.agents())
        self.stack.control(f"/_localmesos/agents/{agent['id']}/stop")
        time.sleep(self.rng.uniform(0.5, 1.5))
        self.stack.control(f"/_localmesos/agents/{agent['hostname']}/start")
        return {agent["hostname"]}

    def agent_restart(self) -> set[str]:
        agent = self.rng.choice(self.stack.agents())
        down = self.rng.uniform(1.0, 3.0)
        self.stack.control(f"/_localmesos/agents/{agent['id']}/restart?keep_executors=true"
                           f"&down_seconds={down:.2f}")
        wait_for("the agent back", lambda: all(a["running"] for a in self.stack.agents()),
                 down + 20, 0.2)
        return set()

    def master_restart(self) -> set[str]:
        options = []
        if self.rng.random() < 0.5:
            options.append("reset=true")
        if self.rng.random() < 0.5:
            options.append(f"recovery_seconds={self.rng.uniform(0.5, 2.0):.1f}")
        self.stack.control("/_localmesos/master/restart" + ("?" + "&".join(options)
                                                           if options else ""))
        return set()

    def api_worker_kill(self) -> set[str]:
        statuses: list[int | None] = []
        done = threading.Event()

        def writer() -> None:
            while not done.is_set() and len(statuses) < 60:
                app_id = self.rng.choice((WEB, CMD))
                n = self.rng.randint(2, 4) if app_id == WEB else self.rng.randint(2, 6)
                statuses.append(self.write(app_id, n))

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        time.sleep(self.rng.uniform(0.05, 0.4))
        workers = self.stack.api_workers()
        if workers:
            os.kill(self.rng.choice(workers), signal.SIGKILL)
        time.sleep(0.5)
        done.set()
        thread.join(30)
        wait_for("two API workers", lambda: len(self.stack.api_workers()) == 2, 30, 0.2)
        return set()

    def disk_full(self) -> set[str]:
        if self.stack.tmpfs_refused is not None:
            self.notes.append(f"disk_full skipped: mount -t tmpfs refused "
                              f"({self.stack.tmpfs_refused})")
            return set()
        # The step's deployment first: its own kills must not look like the full disk's.
        try:
            wait_for("the deployment before the disk fills",
                     lambda: checks.settled(self.stack, self.store), SETTLE_SECONDS, 0.25)
        except TimeoutError:
            self.notes.append("disk_full: not settled before the disk filled")
        # The log cut to nothing first: a checkpointed log is written again from its start, so
        # with its space kept every write found room and none met the full disk.
        if not truncate_wal(self.stack.state_path):
            self.notes.append("disk_full: the WAL was not truncated within 10 s")
        ballast = fill_filesystem(self.stack.state_dir)
        refused = 0
        try:
            for _ in range(40):  # until one write meets the full disk (the WAL may have room)
                n = self.rng.randint(2, 6)
                status = self.write(CMD, n)
                if status in (503, 507):
                    refused += 1
                    if refused >= 3:
                        break
                time.sleep(0.05)
            time.sleep(2.0)  # the scheduler meets the full disk too (ticks, updates)
            if refused == 0:
                self.notes.append("disk_full: every write found room, none refused")
            # Tasks ended meanwhile other than by a kill count as lost (`check`); a running
            # task the scheduler forgot would show as a store/Mesos difference after it.
        finally:
            ballast.unlink()
        wait_for("a write after the space came back",
                 lambda: (self.write(CMD, self.rng.randint(2, 6)) or 0) < 300, 30, 0.5)
        return set()

    def event_clients(self) -> set[str]:
        socks = []
        slowest = 0.0
        for _ in range(100):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", self.stack.api_port))
            s.sendall(b"GET /v2/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            socks.append(s)
        try:
            for k in range(20):  # events for the streams, reads and writes for everyone else
                started = time.monotonic()
                self.write(CMD, 2 + k % 5)
                self.api.get_json("/v2/apps")
                slowest = max(slowest, time.monotonic() - started)
            if slowest > 5.0:
                self.notes.append(f"event_clients: a write+read took {slowest:.1f}s")
                self.totals["slow_api"] += 1
        finally:
            answers: Counter[str] = Counter()
            for s in socks:  # only now read what each was answered, then hang up
                s.settimeout(2.0)
                try:
                    answers[s.recv(12).decode(errors="replace")[9:12] or "closed"] += 1
                except OSError:
                    answers["no answer"] += 1
                s.close()
            self.sanity.update({f"event clients answered {k}": n for k, n in answers.items()})
            self.sanity["event-client write+read rounds, slowest ms"] = max(
                self.sanity["event-client write+read rounds, slowest ms"], int(slowest * 1000))
        # Gone clients give their threads back (noticed at the next event sent to them):
        # every slot is free again. 8 streams: one worker's share (gunicorn does not spread
        # connections evenly, so 12 could meet a full worker with the other one half empty).
        self.write(CMD, 3)
        time.sleep(1.0)
        fresh = [requests.get(self.stack.base + "/v2/events", stream=True, timeout=10)
                 for _ in range(8)]
        refused = sum(1 for r in fresh if r.status_code != 200)
        for r in fresh:
            r.close()
        if refused:
            self.totals["stuck_event_slots"] += refused
            self.notes.append(f"event_clients: {refused} of 8 new streams refused after the "
                              "silent clients left")
        return set()

    # -- the loop --------------------------------------------------------------------------------
    def step(self, kind: str) -> None:
        seen = len(self.notes)
        self.sampler.phase = kind
        self.deployment()
        away = getattr(self, kind)()
        self.faults[kind] += 1
        self.sampler.phase = "settle"
        started = time.monotonic()
        try:
            wait_for("the cluster to settle", lambda: checks.settled(self.stack, self.store),
                     SETTLE_SECONDS, 0.25)
        except TimeoutError:
            self.notes.append(f"{kind}: not settled after {SETTLE_SECONDS:.0f}s")
        settle = time.monotonic() - started
        self.check(kind, away)
        for note in self.notes[seen:]:
            print("  note:", note, flush=True)
        print(f"  {sum(self.faults.values()):3d} {kind:<17} settled in {settle:5.1f}s "
              f"lost={self.totals['lost']} dup={self.totals['duplicates']} "
              f"orphans={self.totals['orphans']} partial={self.totals['partial_writes']} "
              f"5xx={len(self.api.unexpected_5xx)}", flush=True)

    def check(self, kind: str, away: set[str]) -> None:
        events = self.store.events_since(self.after, 100000)
        if events:
            self.after = events[-1][0]
        statuses = [e for _, e in events if e.get("eventType") == "status_update_event"]
        self.sanity["status events checked"] += len(statuses)
        self.sanity["tasks ended by machine loss (expected)"] += sum(
            1 for e in statuses if e.get("host") in away
            and e.get("taskStatus") not in checks.NOT_ENDED | checks.ENDED_BY_US)
        ran, never_ran = checks.unexpected_ends(events, away, self.started)
        for event in ran:
            self.totals["lost"] += 1
            self.notes.append(f"{kind}: {event['taskId']} {event['taskStatus']} "
                              f"({event.get('message')})")
        for event in never_ran:
            self.sanity["launches lost before starting (replaced)"] += 1
            self.notes.append(f"{kind}: launch of {event['taskId']} never started: "
                              f"{event['taskStatus']} ({event.get('message')})")
        lost, dup, notes = checks.count_after_settling(self.stack, self.store)
        self.totals["lost"] += lost
        self.totals["duplicates"] += dup
        self.notes += [f"{kind}: {n}" for n in notes]
        extra, seen = checks.orphans(self.stack)
        self.sanity["sandbox processes checked"] += seen
        self.totals["orphans"] += len(extra)
        if extra:
            self.notes.append(f"{kind}: orphan processes {sorted(extra)}")
        problems = checks.half_applied(self.store)
        for app_id in checks.history_gaps(self.store):
            version = self.store.get_app(app_id)["version"]
            if (app_id, version) not in self.gaps:
                self.gaps.add((app_id, version))
                self.sanity["version-history gaps"] += 1
                self.notes.append(f"{kind}: {app_id} version {version} not in its history")
        for app_id, allowed in self.expect.items():
            app = self.store.get_app(app_id)
            if app is not None and app["instances"] not in allowed:
                problems.append(f"{app_id} holds {app['instances']}, writes allowed {allowed}")
            if app is not None:
                self.expect[app_id] = {app["instances"]}
        self.totals["partial_writes"] += len(problems)
        self.notes += [f"{kind}: {p}" for p in problems]

    def storm(self, size: int, sick_flag: Path) -> float:
        """`size` tasks with 1 s health checks: the scheduler's CPU while they all run (30 s),
        then through a burst of health changes (every check fails ~2 s, then passes)."""
        self.sampler.phase = "storm-rampup"
        self.api.request("PUT", f"/v2/apps{STORM}?force=true", {"instances": size})
        started = time.monotonic()
        try:
            wait_for(f"{size} storm tasks healthy",
                     lambda: checks.settled(self.stack, self.store), 300, 1.0)
        except TimeoutError:
            self.notes.append("storm: not all healthy after 300s")
        print(f"  storm: {size} tasks with 1 s health checks healthy in "
              f"{time.monotonic() - started:.1f}s", flush=True)
        self.sampler.phase = "storm"
        time.sleep(31)
        self.sampler.phase = "storm-flap"
        first = self.store.latest_event_id()
        sick_flag.touch()
        time.sleep(2.0)
        sick_flag.unlink()
        time.sleep(11)
        changes = Counter(e.get("alive") for _, e in self.store.events_since(first, 100000)
                          if e.get("eventType") == "health_status_changed_event")
        print(f"  storm: health flap gave {changes[False]} unhealthy and {changes[True]} "
              "healthy changes", flush=True)
        self.faults["storm"] += 1
        self.sampler.phase = "storm-down"
        self.api.request("PUT", f"/v2/apps{STORM}?force=true", {"instances": 0})
        try:
            wait_for("the storm app scaled down",
                     lambda: checks.settled(self.stack, self.store), 120, 0.5)
        except TimeoutError:
            self.notes.append("storm: not scaled down after 120s")
        self.check("storm", set())
        return max(self.sampler.max("storm"), self.sampler.max("storm-flap"))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every fault's count")
    p.add_argument("--storm", type=int, default=200, help="tasks with 1 s health checks")
    p.add_argument("--keep", action="store_true", help="keep the work dir (logs)")
    args = p.parse_args(argv)
    rng = random.Random(args.seed)
    plan = [k for k, n in COUNTS.items() for _ in range(max(1, round(n * args.scale)))]
    rng.shuffle(plan)
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}; "
          f"{len(plan) + 1} faults, seed {args.seed}", flush=True)
    work = Path(tempfile.mkdtemp(prefix="accessd-chaos-"))
    began = time.monotonic()
    stack = Stack(work)
    if stack.tmpfs_refused is not None:
        print(f"mount -t tmpfs refused ({stack.tmpfs_refused}): the store is on {work}, "
              "the disk-full fault is skipped", flush=True)
    chaos = Chaos(stack, rng)
    chaos.sampler.start()
    max_cpu = 0.0
    try:
        for doc in (web_app(3, work / "www"), cmd_app(3), storm_app(0, work / "sick")):
            resp = chaos.api.request("POST", "/v2/apps", doc)
            if resp is None or resp.status_code != 201:
                raise SystemExit(f"creating {doc['id']}: {resp and resp.text}")
        wait_for("the apps to run", lambda: checks.settled(stack, chaos.store), 120, 0.5)
        print(f"stack up and apps running in {time.monotonic() - began:.1f}s", flush=True)
        for kind in plan:
            chaos.step(kind)
        seen = len(chaos.notes)
        max_cpu = chaos.storm(args.storm, work / "sick")
        for note in chaos.notes[seen:]:
            print("  note:", note, flush=True)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the stop
        chaos.sampler.stop_event.set()
        chaos.store.close()
        stack.stop()
        leftovers = stack.sandbox_processes()
        tracebacks = {name: stack.log_tail(name, 10**9).count("Traceback")
                      for name in ("scheduler", "api", "localmesos")}
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"{len(chaos.notes)} notes:")
    for note in chaos.notes:
        print("  note:", note)
    for line in chaos.api.unexpected_5xx:
        print("  5xx:", line)
    t = chaos.totals
    t["orphans"] += len(leftovers)
    busy = [p for ph, p in chaos.sampler.windows if not ph.startswith("storm")]
    print("tracebacks in the logs: " + ", ".join(f"{k} {n}" for k, n in tracebacks.items()))
    print(f"faults by kind: {dict(chaos.faults)}; documented 503s: {chaos.api.documented_503}; "
          f"connection errors (killed workers, restarts): {chaos.api.connection_errors}")
    print("sanity: " + "; ".join(f"{k}: {n}" for k, n in sorted(chaos.sanity.items())))
    print(f"scheduler CPU: storm max {chaos.sampler.max('storm'):.1f}% steady, "
          f"{chaos.sampler.max('storm-flap'):.1f}% in the health flap, ramp-up max "
          f"{chaos.sampler.max('storm-rampup'):.1f}%, other phases max "
          f"{max(busy, default=0):.1f}% (5 s windows, % of one core)")
    print(f"wall time {time.monotonic() - began:.0f}s; load average at end: "
          f"{os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f}")
    print(f"RESULT faults={sum(chaos.faults.values())} lost={t['lost']} "
          f"duplicates={t['duplicates']} orphans={t['orphans']} "
          f"partial_writes={t['partial_writes']} unexpected_5xx={len(chaos.api.unexpected_5xx)} "
          f"max_scheduler_cpu={max_cpu:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
