"""Port blocks: every agent of every localmesos on this machine offers ports no other one offers.

Each agent has its own address (127.0.1.k), but agent k of one cluster and agent k of another
running beside it (`make run` and `make test`) share it, and a service may bind 0.0.0.0 or
127.0.0.1 (reachable on every agent's address): two agents offering the same port would hand one
port to two services, and one of them would fail to bind. So each agent claims its block of ports with an
exclusive `flock` on one file per 1000-port chunk; the claim lasts as long as the process (the
kernel drops the lock however the process ends, so a crash never leaks a claim).

Blocks are taken *downwards* from the configured range (31000-31999, then 30000-30999, …):
Linux gives outgoing connections ephemeral ports from 32768 up, and a service port in that range
can be held at any moment by some client socket, making its bind fail now and then.

Invariants: a claimed block's chunks are all locked by this process; blocks never go below
`LOWEST_PORT`; `release()` drops every claim.
"""

from __future__ import annotations

import fcntl
import math
import os
import tempfile
from pathlib import Path

from localmesos.resources import Resources, shift_ranges, span

CHUNK = 1000
LOWEST_PORT = 1024
LOCK_DIR_ENV = "LOCALMESOS_PORT_LOCKS"


class NoFreePortBlock(Exception):
    """Every candidate block is claimed by another localmesos on this machine."""


def default_lock_dir() -> Path:
    return Path(os.environ.get(LOCK_DIR_ENV) or Path(tempfile.gettempdir(), "localmesos-ports"))


class PortBlocks:
    """Claims of port blocks held by this process, one per agent."""

    def __init__(self, lock_dir: Path | None = None) -> None:
        self.lock_dir = Path(lock_dir or default_lock_dir())
        self._held: list[int] = []  # open, locked file descriptors

    def claim(self, base: Resources, name: str = "ports") -> Resources:
        """`base` with its `name` ranges moved down by whole blocks to the first unclaimed one."""
        ranges = base.ranges.get(name)
        if not ranges:
            return base
        width = max(CHUNK, math.ceil(span(base, name) / CHUNK) * CHUNK)
        lowest = ranges[0][0]
        step = 0
        while lowest - step * width >= LOWEST_PORT:
            candidate = shift_ranges(base, name, -step * width)
            cand = candidate.ranges[name]
            if self._try_lock(cand[0][0], cand[-1][1]):
                return candidate
            step += 1
        raise NoFreePortBlock(
            f"no free block of {width} ports below {ranges[-1][1]}: other localmesos processes "
            f"hold them all (locks in {self.lock_dir})")

    def _try_lock(self, low: int, high: int) -> bool:
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        taken: list[int] = []
        for chunk in range(low // CHUNK, high // CHUNK + 1):
            fd = os.open(self.lock_dir / f"ports-{chunk * CHUNK}.lock", os.O_RDWR | os.O_CREAT,
                         0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                for held in taken:
                    os.close(held)  # closing drops the lock
                return False
            taken.append(fd)
        self._held.extend(taken)
        return True

    def release(self) -> None:
        while self._held:
            os.close(self._held.pop())
