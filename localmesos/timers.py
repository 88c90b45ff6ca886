"""One thread running delayed callbacks (offer timeouts, filters, retries, kill grace periods).

Invariants: callbacks run one at a time on the timer thread, each under the cluster lock that
was given at construction, so they see and change cluster state atomically; a cancelled timer
never runs; a callback that raises is logged and does not stop the thread.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

log = logging.getLogger("localmesos.timers")


class Timer:
    __slots__ = ("when", "fn", "args", "cancelled")

    def __init__(self, when: float, fn: Callable[..., Any], args: tuple) -> None:
        self.when = when
        self.fn = fn
        self.args = args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class Timers:
    def __init__(self, lock: threading.RLock) -> None:
        self._lock = lock
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="timers", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[..., Any], *args: Any) -> Timer:
        t = Timer(time.monotonic() + max(0.0, delay), fn, args)
        with self._cond:
            heapq.heappush(self._heap, (t.when, next(self._seq), t))
            if self._heap[0][2] is t:  # only a new earliest timer changes the thread's wait
                self._cond.notify()
        return t

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        break
                    wait = self._heap[0][0] - now if self._heap else None
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, t = heapq.heappop(self._heap)
            if t.cancelled:
                continue
            try:
                with self._lock:
                    if not t.cancelled:
                        t.fn(*t.args)
            except Exception:
                log.exception("timer callback %s failed", getattr(t.fn, "__name__", t.fn))
