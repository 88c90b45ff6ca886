"""Child processes of localmesos: spawning, process trees, and the no-orphans guarantee.

Invariants:
- Every task and executor runs in its own session (hence its own process group, pgid == pid),
  with `MESOS_SANDBOX` pointing into the cluster's work dir.
- Every child is spawned from one of `SPAWN_THREADS` long-lived threads with
  PR_SET_PDEATHSIG=SIGKILL set in the child: Linux delivers the death signal when the *thread*
  that forked exits, so forking from short-lived HTTP handler threads would kill children early.
  Several threads because a spawn mostly waits (for the child's exec, and for the GIL after each
  system call while other threads run): one thread started about 130 tasks a second at load 7.
- A spawn's Future is completed, and its callbacks run (`_command_started`, which takes the
  cluster lock), on one separate thread, in the order the spawns finished: a callback waiting for
  the lock (an ACCEPT of hundreds of tasks holds it) never holds up the next spawn.
- localmesos is a child subreaper: a process whose parent (a task, an executor) died is
  re-parented to localmesos, not to init. The reaper thread reaps such zombies, and kills such
  orphans unless the sandbox in their environment belongs to a container still running (as
  Mesos destroys a container's processes when its executor ends).
- The reaper never waits for a child it spawned itself (`subprocess.Popen` owns those): a
  spawn counts as in flight from before its fork until it is registered as owned, and the
  reaper leaves children it does not know alone while any spawn is in flight.
- A guardian process (own session, so a kill of localmesos's group does not reach it) knows
  every process group under localmesos; when localmesos dies, even by SIGKILL, its stdin hits
  EOF and it SIGKILLs those groups and every process whose environment points into the work dir.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import logging
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import Future
from typing import Any

from localmesos.child_watch import ChildWatcher

log = logging.getLogger("localmesos.procs")

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
REAP_INTERVAL = 0.5
SPAWN_THREADS = 4

try:
    _libc: Any = ctypes.CDLL(None, use_errno=True)
except OSError:  # pragma: no cover - non-Linux
    _libc = None

GUARDIAN = r"""
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
work = sys.argv[1].rstrip("/").encode() + b"/"
groups, synced = set(), set()
for line in sys.stdin:
    line = line.strip()
    if line[:1] == "+":
        groups.add(int(line[1:]))
    elif line[:1] == "-":
        groups.discard(int(line[1:]))
    elif line[:1] == "=":
        synced = {int(g) for g in line[1:].split(",") if g}
me = os.getpid()
targets = set(groups | synced)
for entry in os.listdir("/proc"):
    if entry.isdigit() and int(entry) != me:
        try:
            with open("/proc/%s/environ" % entry, "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if any(v.startswith(b"MESOS_SANDBOX=" + work) for v in env):
            targets.add(-int(entry))
for g in targets:
    try:
        if g > 0:
            os.killpg(g, signal.SIGKILL)
        else:
            os.kill(-g, signal.SIGKILL)
    except OSError:
        pass# Docker containers of this work dir (docker_containerizer.py leaves this marker): no client
# is left to end them, so they are removed here, whatever way localmesos ended.
marker = sys.argv[1].rstrip("/") + "/.docker-containers"
if os.path.exists(marker):
    import subprocess
    try:
        docker = open(marker).read().strip() or "docker"
        label = "label=localmesos.work_dir=" + sys.argv[1].rstrip("/")
        ids = subprocess.run([docker, "ps", "-aq", "--filter", label], capture_output=True,
                             text=True, timeout=30).stdout.split()
        if ids:
            subprocess.run([docker, "rm", "-f", "-v", *ids], capture_output=True, timeout=60)
    except Exception:
        pass
"""


def _child_setup(parent_pid: int) -> None:
    if _libc is not None:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)


_WRAPPER: list[list[str]] = []


def _pdeathsig_wrapper() -> list[str]:
    """`setpriv --pdeathsig KILL --` (util-linux), when it has that option: the child then
    needs no Python code between fork and exec, so Popen uses vfork, whose cost does not grow
    with localmesos's size and thread count (a preexec_fn forces a full fork: ~50 ms a task
    under load, the launch path's largest cost). Without it, the preexec_fn does the same
    (`_child_setup`). Either way the guardian covers a localmesos that dies mid-spawn."""
    if not _WRAPPER:
        found = shutil.which("setpriv")
        wrapper: list[str] = []
        if found:
            try:
                text = subprocess.run([found, "--help"], capture_output=True, text=True,
                                      timeout=10).stdout
            except (OSError, subprocess.SubprocessError):
                text = ""
            if "--pdeathsig" in text:
                wrapper = [found, "--pdeathsig", "KILL", "--"]
        _WRAPPER.append(wrapper)
    return _WRAPPER[0]


def proc_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (ppid, pgid, state) for every process we can see.

    Read with os.open/os.read: a text-mode open() costs ~3x as much, and the reaper reads the
    whole table every pass (with 500 tasks running it was 40% of localmesos's CPU)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
        except OSError:
            continue
        try:
            stat = os.read(fd, 4096)
        except OSError:
            continue
        finally:
            os.close(fd)
        fields = stat.rsplit(b")", 1)[-1].split(None, 3)
        if len(fields) < 3:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[2]), fields[0].decode())
    return table


def _sandbox_of(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(b"MESOS_SANDBOX="):
                    return item[len(b"MESOS_SANDBOX="):].decode(errors="replace")
    except OSError:
        pass
    return None


def exited(pid: int) -> bool:
    """True once our child `pid` has ended, reaped or not (it is left unreaped: its Popen
    reaps it)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped already
        return True


def kill_group(pgid: int, sig: int) -> bool:
    """Signal a whole process group; False when no such group exists any more."""
    if pgid <= 1 or pgid == os.getpgrp():
        return False
    try:
        os.killpg(pgid, sig)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def group_alive(pgid: int) -> bool:
    """True while a process of the group runs (zombies waiting to be reaped do not count)."""
    if not kill_group(pgid, 0):
        return False
    return any(g == pgid and st != "Z" for _, g, st in proc_table().values())


def live_groups(pgids: list[int]) -> set[int]:
    """The groups among `pgids` that still have a running (non-zombie) process."""
    wanted = set(pgids)
    return {g for _, g, st in proc_table().values() if g in wanted and st != "Z"}


def descendants(table: dict[int, tuple[int, int, str]], root: int) -> list[int]:
    """Every process below `root` in `table` (`proc_table()`), each once."""
    children: dict[int, list[int]] = {}
    for p, (pp, _, _) in table.items():
        children.setdefault(pp, []).append(p)
    found: list[int] = []
    seen = {root}
    todo = list(children.get(root, ()))
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.add(p)
        found.append(p)
        todo.extend(children.get(p, ()))
    return found


def destroy_container(sandbox: str, timeout: float = 5.0) -> list[int]:
    """SIGKILL every process of the container whose sandbox is `sandbox` (its `MESOS_SANDBOX`:
    a task's children in sessions of their own too, wherever they were re-parented under us)
    and wait until none runs, as Mesos destroys a container before it reports its end. Returns
    the pids still running at the deadline (e.g. in uninterruptible sleep)."""
    deadline = time.monotonic() + timeout
    while True:
        table = proc_table()
        left = [p for p in descendants(table, os.getpid())
                if table[p][2] != "Z" and _sandbox_of(p) == sandbox]
        if not left or time.monotonic() > deadline:
            return left
        for p in left:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(p, signal.SIGKILL)
        time.sleep(0.005)  # a SIGKILLed process is gone within a scheduler tick


_RECENT_TABLE_SECONDS = 0.25
_recent_table: list[tuple[float, dict[int, tuple[int, int, str]]]] = []
_recent_lock = threading.Lock()


def _recent_proc_table() -> dict[int, tuple[int, int, str]]:
    """`proc_table()`, shared by the kills of the next 0.25 s. Reading /proc costs a few ms
    per thousand processes, and deleting an app of 500 tasks sends 500 kills at once: once
    per kill, it made localmesos CPU-bound for 20 s. A descendant started within the 0.25 s
    is still in its task's process group, which is signalled as a whole; a later kill (the
    SIGKILL after the grace period) reads /proc afresh, and the reaper kills orphans of
    ended containers."""
    now = time.monotonic()
    with _recent_lock:
        if _recent_table and now - _recent_table[0][0] < _RECENT_TABLE_SECONDS:
            return _recent_table[0][1]
        table = proc_table()
        _recent_table[:] = [(now, table)]
        return table


def kill_tree(pid: int, sig: int) -> None:
    """Signal `pid`, all its descendants, and every process group among them."""
    table = _recent_proc_table() if sig != signal.SIGKILL else proc_table()
    seen = set() if pid == os.getpid() else {pid, *descendants(table, pid)} - {os.getpid()}
    for g in {table[p][1] for p in seen if p in table}:
        kill_group(g, sig)
    for p in seen:
        with contextlib.suppress(OSError):
            os.kill(p, sig)


class Spawner:
    """Starts children from one dedicated thread; reaps and kills orphans; feeds the guardian."""

    def __init__(self, work_dir: str, threads: int = SPAWN_THREADS) -> None:
        self.work_dir = work_dir
        self._jobs: queue.Queue[tuple[dict[str, Any], Future] | None] = queue.Queue()
        self._done: queue.SimpleQueue[tuple[Future, Any, BaseException | None] | None] = \
            queue.SimpleQueue()
        self._guard_lock = threading.Lock()
        self._spawn_lock = threading.Lock()
        self._inflight = 0  # spawns between their fork and their registration in _owned
        self._owned: set[int] = set()
        self._live_sandboxes: collections.Counter[str] = collections.Counter()
        self._synced: set[int] = set()
        self._stopped = threading.Event()
        self._guardian: subprocess.Popen | None = None
        self._guardian_started = threading.Event()
        if _libc is not None:
            _libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        self._threads = [threading.Thread(target=self._run, args=(i == 0,),
                                          name=f"spawner-{i}", daemon=True)
                         for i in range(max(1, threads))]
        for t in self._threads:
            t.start()
        self._completer = threading.Thread(target=self._complete_loop, name="spawned",
                                           daemon=True)
        self._completer.start()
        self.children = ChildWatcher()  # waits for the command tasks' ends (child_watch.py)
        self._reaper = threading.Thread(target=self._reap_loop, name="reaper", daemon=True)
        self._reaper.start()

    def _run(self, first: bool) -> None:
        if first:
            try:
                with self._spawn_lock:
                    self._guardian = subprocess.Popen(
                        [sys.executable, "-c", GUARDIAN, self.work_dir], stdin=subprocess.PIPE,
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                        start_new_session=True, text=True, close_fds=True)
                    self._owned.add(self._guardian.pid)
            except OSError:
                log.exception("could not start the guardian process")
            self._guardian_started.set()
        else:
            self._guardian_started.wait()  # no child before the guardian can hear of it
        while True:
            job = self._jobs.get()
            if job is None:
                return
            spec, fut = job
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                self._done.put((fut, self._spawn(**spec), None))
            except Exception as exc:
                self._done.put((fut, None, exc))

    def _complete_loop(self) -> None:
        while True:
            item = self._done.get()
            if item is None:
                return
            fut, popen, exc = item
            if exc is not None:
                fut.set_exception(exc)
            else:
                fut.set_result(popen)

    def _spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: str,
               stderr: str) -> subprocess.Popen:
        parent = os.getpid()
        wrapper = _pdeathsig_wrapper()
        if wrapper:
            # As Popen would, refuse a program that cannot be run (setpriv would exit 127).
            program = argv[0] if "/" in argv[0] else shutil.which(argv[0], path=env.get("PATH"))
            if program is None or not os.access(program, os.X_OK):
                raise FileNotFoundError(2, "No such file or directory", argv[0])
        with open(stdout, "ab") as out, open(stderr, "ab") as err:
            with self._spawn_lock:
                self._inflight += 1
            try:
                if wrapper:
                    p = subprocess.Popen([*wrapper, *argv], env=env, cwd=cwd,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                         start_new_session=True, close_fds=True)
                else:
                    p = subprocess.Popen(argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL,
                                         stdout=out, stderr=err, start_new_session=True,
                                         close_fds=True,
                                         preexec_fn=lambda: _child_setup(parent))
            except BaseException:
                with self._spawn_lock:
                    self._inflight -= 1
                raise
            with self._spawn_lock:
                self._inflight -= 1
                self._owned.add(p.pid)
                self._live_sandboxes[env.get("MESOS_SANDBOX", cwd)] += 1
        self.guard(p.pid)
        return p

    def spawn(self, argv: list[str], env: dict[str, str], cwd: str, stdout: str,
              stderr: str) -> Future:
        fut: Future = Future()
        self._jobs.put((dict(argv=argv, env=env, cwd=cwd, stdout=stdout, stderr=stderr), fut))
        return fut

    def run_helper(self, argv: list[str], timeout: float) -> subprocess.CompletedProcess:
        """A short command localmesos itself runs and waits for (the docker CLI): owned while
        it runs, so the reaper neither kills it as an orphan nor reaps its exit status."""
        with self._spawn_lock:
            p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, close_fds=True)
            self._owned.add(p.pid)
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.communicate()
            raise
        finally:
            with self._spawn_lock:
                self._owned.discard(p.pid)
        return subprocess.CompletedProcess(argv, p.returncode, out, err)

    def ended(self, pid: int, sandbox: str) -> None:
        """A task's or executor's main process was reaped: its container is over."""
        with self._spawn_lock:
            if pid in self._owned:
                self._owned.discard(pid)
                self._live_sandboxes[sandbox] -= 1
                if self._live_sandboxes[sandbox] <= 0:
                    del self._live_sandboxes[sandbox]
        self.unguard(pid)

    # ---- the reaper ------------------------------------------------------------------------

    def _reap_loop(self) -> None:
        interval = REAP_INTERVAL
        while not self._stopped.wait(interval):
            started = time.thread_time()
            try:
                self.reap()
            except Exception:
                log.exception("reaper pass failed")
            # A pass reads every process's stat: on a busy machine (thousands of processes) it
            # waits longer between passes, so that it never takes more than ~10% of a core.
            interval = max(REAP_INTERVAL, 10 * (time.thread_time() - started))

    def reap(self) -> None:
        """Reap adopted zombies, kill adopted orphans of ended containers, sync the guardian."""
        me = os.getpid()
        table = proc_table()
        with self._spawn_lock:
            for pid, (ppid, _, state) in table.items():
                if ppid != me or pid in self._owned:
                    continue
                if self._inflight:  # perhaps a child being spawned: the next pass sees
                    break
                if state == "Z":
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(pid, os.WNOHANG)
                    continue
                sandbox = _sandbox_of(pid)
                if sandbox is not None and self._live_sandboxes.get(sandbox, 0) > 0:
                    continue  # its container still runs: it lives as long as that does
                log.info("killing orphan process %d (sandbox %s)", pid, sandbox)
                kill_tree(pid, signal.SIGKILL)
        groups = {table[p][1] for p in descendants(table, me)} - {os.getpgrp()}
        if self._guardian is not None:
            groups.discard(self._guardian.pid)
        if groups != self._synced:
            self._synced = groups
            self._tell("=" + ",".join(str(g) for g in sorted(groups)))

    def kill_everything(self, sig: int) -> None:
        """Signal every process under localmesos except the guardian (shutdown)."""
        me = os.getpid()
        guardian = self._guardian.pid if self._guardian is not None else -1
        for pid, (ppid, _, _) in proc_table().items():
            if ppid == me and pid != guardian:
                kill_tree(pid, sig)

    # ---- the guardian ----------------------------------------------------------------------

    def _tell(self, line: str) -> None:
        with self._guard_lock:
            g = self._guardian
            if g is None or g.stdin is None:
                return
            try:
                g.stdin.write(line + "\n")
                g.stdin.flush()
            except (OSError, ValueError):
                pass

    def guard(self, pgid: int) -> None:
        self._tell(f"+{pgid}")

    def unguard(self, pgid: int) -> None:
        self._tell(f"-{pgid}")

    def stop(self) -> None:
        """Stop spawning and reaping, then let the guardian finish (it kills what is left)."""
        self._stopped.set()
        for _ in self._threads:
            self._jobs.put(None)
        for t in self._threads:
            t.join(5)
        self._done.put(None)
        self._completer.join(5)
        self._reaper.join(5)
        self.children.stop()
        with self._guard_lock:
            g = self._guardian
            self._guardian = None
        if g is not None and g.stdin is not None:
            try:
                g.stdin.close()
            except OSError:
                pass
            try:
                g.wait(5)
            except subprocess.TimeoutExpired:
                g.kill()
