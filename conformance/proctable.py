"""The process table, searched for a run's processes: every process the lane starts (masters,
agents, executors, tasks, ZooKeeper, scheduler, API) has the run's directory in its command line
or its environment (work dirs, `MESOS_SANDBOX`, state paths), so whatever is left is found.

    python -m conformance.proctable DIR          # prints "pid command" of each, exit 0
    python -m conformance.proctable --kill DIR   # SIGKILLs them too
"""

from __future__ import annotations

import os
import signal
import sys


def _ancestors() -> set[int]:
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            with open(f"/proc/{pid}/stat") as f:
                pid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def processes_mentioning(text: str, exclude: set[int] | None = None) -> dict[int, str]:
    """{pid: command line} of live processes whose command line or environment holds `text`
    (this process and its ancestors left out)."""
    skip = _ancestors() | (exclude or set())
    needle = text.encode()
    found: dict[int, str] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) in skip:
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/stat") as f:
                zombie = f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except OSError:
            continue
        if not zombie and (needle in cmdline or needle in environ):
            found[int(entry)] = cmdline.replace(b"\0", b" ").decode(errors="replace").strip()
    return found


def sandbox_processes(root: str) -> dict[int, str]:
    """Task and executor processes of a cluster whose work dir is `root`: those whose
    `MESOS_SANDBOX` lies under it (both Mesos's agent and localmesos set it)."""
    needle = f"MESOS_SANDBOX={root}".encode()
    found: dict[int, str] = {}
    for pid, cmd in processes_mentioning(root).items():
        try:
            with open(f"/proc/{pid}/environ", "rb") as f:
                if needle in f.read():
                    found[pid] = cmd
        except OSError:
            continue
    return found


def kill_all(text: str) -> dict[int, str]:
    found = processes_mentioning(text)
    for pid in found:
        try:
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return found


def main(argv: list[str]) -> int:
    kill = "--kill" in argv
    args = [a for a in argv if a != "--kill"]
    if len(args) != 1:
        print("usage: python -m conformance.proctable [--kill] DIR", file=sys.stderr)
        return 2
    found = kill_all(args[0]) if kill else processes_mentioning(args[0])
    for pid, cmd in sorted(found.items()):
        print(f"{pid} {cmd[:200]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
