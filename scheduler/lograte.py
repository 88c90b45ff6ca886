"""Logging filters for a scheduler whose master connection flaps.

- `RepeatFilter`: a warning or error identical to one logged within the last `window` seconds
  is held back; the next one let through after the window says how many were held back. A
  master failover made pymesos log the same redirect warning hundreds of times a second.
- `ConnectionErrorFilter`: pymesos logs a reset or refused connection with `logger.exception`;
  during a master failover that is expected, so it becomes one warning line naming the error
  instead of an error with a traceback.
Both are installed on pymesos's loggers by `install()` (logger filters do not apply to child
loggers, so each is named).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

PYMESOS_LOGGERS = ("pymesos", "pymesos.process", "pymesos.scheduler", "pymesos.detector")
EXPECTED_ERRORS = (ConnectionError, TimeoutError)


class RepeatFilter(logging.Filter):
    def __init__(self, window: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._seen: dict[tuple[str, int, str], tuple[float, int]] = {}  # -> (shown at, held)

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.levelno, record.getMessage())
        now = self.clock()
        with self._lock:
            shown, held = self._seen.get(key, (float("-inf"), 0))
            if now - shown < self.window:
                self._seen[key] = (shown, held + 1)
                return False
            self._seen[key] = (now, 0)
            if len(self._seen) > 1000:  # forget old messages
                self._seen = {k: v for k, v in self._seen.items() if now - v[0] < self.window}
        if held:
            record.msg = f"{record.getMessage()} (repeated {held} more times in "\
                         f"{now - shown:.0f}s)"
            record.args = ()
        return True


class ConnectionErrorFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, EXPECTED_ERRORS):
            record.msg = f"{record.getMessage()}: {type(exc).__name__}: {exc}"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            if record.levelno > logging.WARNING:  # expected in a failover: a warning
                record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_installed = False
_install_lock = threading.Lock()


def install(names: tuple[str, ...] = PYMESOS_LOGGERS, window: float = 10.0) -> None:
    """Put both filters on each named logger, once per process (one-line errors first, so a
    repeated reset is recognised as the same line)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        _installed = True
    repeats = RepeatFilter(window)
    for name in names:
        logger = logging.getLogger(name)
        logger.addFilter(ConnectionErrorFilter())
        logger.addFilter(repeats)
