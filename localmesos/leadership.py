"""How the master answers the scheduler API while it is not (yet) the leader in service.

A Mesos master that is not the elected leader answers `POST /api/v1/scheduler` with
`307 Temporary Redirect` to the leader (`Location: //host:port/api/v1/scheduler`), or 503 when
it knows none; an elected master still recovering its registry answers
`503 Service Unavailable` "Master has not finished recovery". pymesos follows the redirect and
retries a 503 at once, without a pause: against a real master restart that was a storm of
about 540 requests a second. Before either, a real master process that has just started
answers `404 Not Found` for a moment, because its HTTP routes are not installed yet (probed on a
real 1.12 master: 404 at 0.245 s, 503 at 0.284 s, 200 at 0.332 s after start); pymesos raises
on that 404 and the scheduler's I/O thread ends. localmesos reproduces those answers on request
(fault controls `master/restart?recovery_seconds=` — the first `STARTING_SECONDS` of the
recovery answer 404 —, `master/redirect?to=&seconds=`) and counts the scheduler API requests
by answer (`GET /_localmesos/master/requests`), so a test can measure the storm.
"""

from __future__ import annotations

import collections
import threading
import time

from localmesos.httpserver import Response

# How long a restarted master answers 404 before its routes exist (a real one: ~0.25 s); only
# when the restart asks for a recovery phase, which this phase opens.
STARTING_SECONDS = 0.3


class Leadership:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.starting_until = 0.0
        self.recovering_until = 0.0
        self.redirect_to: str | None = None
        self.redirect_until = 0.0
        self.requests: collections.Counter[str] = collections.Counter()

    def recover_for(self, seconds: float) -> None:
        with self._lock:
            now = time.monotonic()
            self.starting_until = now + min(STARTING_SECONDS, seconds)
            self.recovering_until = now + seconds

    def redirect_for(self, to: str, seconds: float) -> None:
        with self._lock:
            self.redirect_to = to
            self.redirect_until = time.monotonic() + seconds

    def refusal(self) -> Response | None:
        """The answer of a master that is not leading or still recovering, else None."""
        now = time.monotonic()
        with self._lock:
            if self.redirect_to is not None and now < self.redirect_until:
                return Response(307, headers={
                    "Location": f"//{self.redirect_to}/api/v1/scheduler"})
            if now < self.starting_until:
                return Response.text(404, "Not Found.")
            if now < self.recovering_until:
                return Response.text(503, "Master has not finished recovery")
        return None

    def count(self, status: int) -> None:
        with self._lock:
            self.requests[str(status)] += 1
            self.requests["total"] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.requests)
