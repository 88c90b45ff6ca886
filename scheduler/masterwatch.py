"""Notice a master connection that has gone quiet.

A subscription is one long HTTP response. If the master hangs, or a partition leaves the TCP
connection half-open, nothing closes it: the scheduler simply stops hearing anything (offers,
updates) while believing it is connected. Mesos sends a HEARTBEAT every
`heartbeat_interval_seconds` (given in SUBSCRIBED) for exactly this reason and leaves it to the
scheduler to re-subscribe after missing several; pymesos ignores heartbeats. `SilenceWatch` counts
the silence; the driver glue (`scheduler.main`) reconnects when it is overdue.
"""

from __future__ import annotations

import time
from collections.abc import Callable

DEFAULT_HEARTBEAT_INTERVAL = 15.0  # Mesos's default, used until SUBSCRIBED says otherwise


class SilenceWatch:
    """How long since the master last said anything, against `missed_heartbeats` intervals.

    Written from pymesos's I/O thread (`expect`, `subscribed`, `heard`, `disconnected`), read
    from the main thread (`overdue`); each is one attribute write or read.
    """

    def __init__(self, missed_heartbeats: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if missed_heartbeats <= 0:
            raise ValueError("missed_heartbeats must be positive")
        self.missed_heartbeats = missed_heartbeats
        self.clock = clock
        self.interval = DEFAULT_HEARTBEAT_INTERVAL
        self.last_heard: float | None = None  # None: not subscribed, nothing to watch

    @property
    def limit(self) -> float:
        """Seconds of silence after which the connection is presumed dead."""
        return self.missed_heartbeats * self.interval

    def expect(self) -> None:
        """A connection is about to SUBSCRIBE: SUBSCRIBED is due within the limit too (a master
        that accepts the connection but never answers is as dead as one that stops talking)."""
        self.last_heard = self.clock()

    def subscribed(self, heartbeat_interval: float | None) -> None:
        if heartbeat_interval and heartbeat_interval > 0:
            self.interval = float(heartbeat_interval)
        self.last_heard = self.clock()

    def heard(self) -> None:
        if self.last_heard is not None:
            self.last_heard = self.clock()

    def disconnected(self) -> None:
        self.last_heard = None

    def overdue(self) -> float | None:
        """The silence in seconds if it is past the limit on a subscribed connection, else None."""
        last = self.last_heard
        if last is None:
            return None
        silent = self.clock() - last
        return silent if silent > self.limit else None
