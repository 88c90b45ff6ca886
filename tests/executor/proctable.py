"""Reading the process table (/proc) the way the tests' assertions need it.

Zombies count as gone: a process reparented to PID 1 stays a zombie until PID 1 reaps it, and
what matters is that nothing of the task still runs.
"""

from __future__ import annotations

import os


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    # "pid (comm) state ppid pgrp ..."; comm may hold spaces and parentheses.
    return text[text.rindex(")") + 2:].split()


def pid_alive(pid: int) -> bool:
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def live_in_group(pgid: int) -> list[int]:
    """PIDs of the group `pgid` that are running (not zombies)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and fields[0] not in ("Z", "X") and int(fields[2]) == pgid:
                found.append(int(entry))
    return found


def live_children(ppid: int) -> list[int]:
    """PIDs (not zombies) whose parent is `ppid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat(int(entry))
            if fields and fields[0] not in ("Z", "X") and int(fields[1]) == ppid:
                found.append(int(entry))
    return found


def live_with_environ(text: str) -> list[int]:
    """PIDs (not zombies) whose environment or command line contains `text`."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read()
        except OSError:
            continue
        if (text.encode() in environ or text.encode() in cmdline) and pid_alive(int(entry)):
            found.append(int(entry))
    return found
