"""The HAProxy process: start it in master-worker mode, talk to its sockets, reload it without
dropping a connection, and restart it when it dies.

`haproxy -W -S <master.sock> -f <cfg>`: the master re-executes itself on `reload` (its CLI),
the new worker takes the listening sockets from the old one over the runtime socket
(`expose-fd listeners`), and the old worker finishes its connections. A reload is refused
before it starts when `haproxy -c` rejects the configuration, so a bad one never replaces a
good one. `Supervisor` watches the master and starts it again (with the configuration last
written) within a fraction of a second when it exits without being asked to.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("accessd.lb.haproxy")


class HAProxyError(Exception):
    """HAProxy refused something (a configuration, a command) or is not there."""


def find_binary(explicit: str | None = None) -> str:
    for candidate in (explicit, shutil.which("haproxy"), "/usr/sbin/haproxy"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise HAProxyError("haproxy not found (Debian: apt-get install haproxy; "
                       "or pass --haproxy PATH)")


def socket_command(path: str, command: str, timeout: float = 2.0) -> str:
    """One command on a HAProxy CLI socket (runtime or master), its whole answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)  # the master CLI answers and closes only then
        chunks = []
        while True:
            data = s.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks).decode(errors="replace")


def _die_with_parent() -> None:
    """In the child before exec: a soft stop (SIGUSR1) when the thread that started it goes,
    so HAProxy never outlives `accessd lb` (not even a SIGKILLed one). Linux only."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGUSR1)  # PR_SET_PDEATHSIG
    except OSError:
        pass


SOCKET_PATH_MAX = 97   # HAProxy refuses a longer UNIX socket path (sun_path, less its margin)


def socket_dir(work_dir: Path) -> Path:
    """Where HAProxy's UNIX sockets go: `work_dir` itself, unless their paths would be too long
    for HAProxy (a deep data directory, a test's temporary one); then a short directory of the
    temporary directory named after `work_dir`, so every `accessd lb` on that work dir finds
    the same sockets."""
    if len(str(work_dir / "runtime.sock")) <= SOCKET_PATH_MAX:
        return work_dir
    digest = hashlib.sha1(str(work_dir.resolve()).encode()).hexdigest()[:16]
    short = Path(tempfile.gettempdir(), f"accessd-lb-{digest}")
    short.mkdir(mode=0o700, exist_ok=True)
    return short


class HAProxy:
    """One master-worker HAProxy whose files live in `work_dir`."""

    def __init__(self, work_dir: Path, binary: str | None = None) -> None:
        self.binary = find_binary(binary)
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.config_path = self.work_dir / "haproxy.cfg"
        sockets = socket_dir(self.work_dir)
        self.master_socket = str(sockets / "master.sock")
        self.runtime_socket = str(sockets / "runtime.sock")
        self.log_path = self.work_dir / "haproxy.log"
        self.popen: subprocess.Popen | None = None
        self.lock = threading.RLock()

    # -- configuration --------------------------------------------------------------------------
    def check(self, text: str) -> None:
        candidate = self.work_dir / "haproxy.cfg.new"
        candidate.write_text(text, encoding="utf-8")
        # (not -q: it silences the alerts that say why a configuration is refused)
        done = subprocess.run([self.binary, "-c", "-f", str(candidate)],
                              capture_output=True, text=True, timeout=30)
        if done.returncode != 0:
            raise HAProxyError(f"configuration refused: {(done.stdout + done.stderr).strip()}")

    def write(self, text: str) -> None:
        """Make `text` the configuration the next start or reload reads (atomically)."""
        tmp = self.work_dir / "haproxy.cfg.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, self.config_path)

    # -- process ------------------------------------------------------------------------------
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def start(self, timeout: float = 5.0) -> None:
        with self.lock:
            for path in (self.master_socket, self.runtime_socket):
                Path(path).unlink(missing_ok=True)
            out = open(self.log_path, "ab")
            self.popen = subprocess.Popen(
                [self.binary, "-W", "-S", f"{self.master_socket},mode,600", "-f",
                 str(self.config_path)], stdout=out, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=_die_with_parent)
            out.close()
            (self.work_dir / "haproxy.pid").write_text(f"{self.popen.pid}\n")
            deadline = time.monotonic() + timeout
            while True:
                try:
                    self.worker_pid()
                    self.old_workers()  # the master's CLI answers too (a reload needs it)
                    return
                except (OSError, HAProxyError):
                    pass
                if self.popen.poll() is not None:
                    raise HAProxyError(f"haproxy exited with {self.popen.returncode} at start; "
                                       f"see {self.log_path}")
                if time.monotonic() > deadline:
                    raise HAProxyError(f"haproxy did not answer within {timeout:.0f}s")
                time.sleep(0.02)

    def stop(self, grace: float = 5.0) -> None:
        with self.lock:
            if self.popen is None:
                return
            pgid = self.popen.pid
            for sig in (signal.SIGUSR1, signal.SIGKILL):  # soft stop, then what is left
                try:
                    os.killpg(pgid, sig)
                except (ProcessLookupError, PermissionError):
                    break
                try:
                    self.popen.wait(grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            try:
                os.killpg(pgid, signal.SIGKILL)  # workers it may have left in its group
            except (ProcessLookupError, PermissionError):
                pass
            self.popen = None

    # -- sockets ------------------------------------------------------------------------------
    def runtime(self, command: str) -> str:
        return socket_command(self.runtime_socket, command)

    def worker_pid(self) -> int:
        for line in self.runtime("show info").splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        raise HAProxyError("no Pid in 'show info'")

    def apply(self, commands: list[str] | tuple[str, ...]) -> None:
        """Runtime-API commands, in order; raises on the first one HAProxy refuses."""
        with self.lock:
            for command in commands:
                answer = self.runtime(command).strip()
                if answer and not answer.startswith(("IP changed", "no need to change",
                                                     "port changed")):
                    raise HAProxyError(f"{command!r}: {answer}")

    def reload(self, timeout: float = 10.0) -> None:
        """Hitless reload with the configuration written last; returns once the new worker
        answers on the runtime socket."""
        with self.lock:
            old = self.worker_pid()
            socket_command(self.master_socket, "reload")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    if self.worker_pid() != old:
                        self.old_workers()  # and the re-executed master's CLI answers
                        return
                except (OSError, HAProxyError):
                    pass
                time.sleep(0.02)
            raise HAProxyError(f"no new worker within {timeout:.0f}s of the reload")

    def old_workers(self) -> list[int]:
        """Workers a reload left finishing their connections (`show proc`, master CLI)."""
        pids, section = [], ""
        for line in socket_command(self.master_socket, "show proc").splitlines():
            if line.startswith("#"):
                section = line.strip("# ").lower()
            elif section == "old workers" and line.split() and line.split()[0].isdigit():
                pids.append(int(line.split()[0]))
        return pids

    def stats(self) -> list[dict[str, str]]:
        """`show stat` as one dict a row (pxname, svname, scur, qcur, status, stot, …)."""
        text = self.runtime("show stat")
        rows = [line for line in text.splitlines() if line.strip()]
        if not rows or not rows[0].startswith("# "):
            return []
        names = rows[0][2:].split(",")
        return [dict(zip(names, row.split(","), strict=False)) for row in rows[1:]]


class Supervisor:
    """Starts HAProxy again when it exits unasked (checked every `every` seconds)."""

    def __init__(self, proxy: HAProxy, on_restart: Callable[[], None] | None = None,
                 every: float = 0.1) -> None:
        self.proxy = proxy
        self.on_restart = on_restart or (lambda: None)
        self.every = every
        self.restarts = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="haproxy-supervisor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)

    def _run(self) -> None:
        while not self.stopping.wait(self.every):
            with self.proxy.lock:
                if self.stopping.is_set() or self.proxy.alive():
                    continue
                code = self.proxy.popen.returncode if self.proxy.popen else None
                log.warning("haproxy exited (status %s); starting it again", code)
                self.proxy.stop(grace=0.5)  # whatever is left of its group
                try:
                    self.proxy.start()
                except Exception as exc:  # noqa: BLE001 - keep supervising; try next period
                    log.error("haproxy restart failed: %s", exc)
                    continue
                self.restarts += 1
                log.info("haproxy restarted (worker pid %s)", self.proxy.worker_pid())
            self.on_restart()
