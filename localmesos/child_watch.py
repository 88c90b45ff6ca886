"""One thread that waits for many children to end, instead of a thread per child.

Starting a waiter thread for each command task was the largest share of localmesos's CPU left
in a launch of 500 tasks (py-spy: ~40% of the GIL time, in `Thread.__init__`/`start`), and a
thousand tasks meant a thousand threads. `ChildWatcher.watch(pid, fn)` opens a pidfd for the
child (Linux >= 5.3), which becomes readable once the child has exited; one thread polls them all
and calls `fn()` when its child ends. The child is not reaped here: `fn` reaps it (with
`Popen.wait()`, which then returns at once), so the reaper's rule that a spawned child belongs
to its `Popen` still holds.

Invariants:
- `fn` is called exactly once, after the child has exited (or, if no pidfd can be had, from a
  thread of its own that waits as before), unless the watcher is stopped first (localmesos is
  ending: nothing is called any more);
- callbacks run one at a time on the watcher thread, in the order their children were seen to
  end; one that raises is logged and the watcher goes on.
"""

from __future__ import annotations

import logging
import os
import selectors
import threading
from collections.abc import Callable

log = logging.getLogger("localmesos.procs")


class ChildWatcher:
    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)  # a full pipe already holds a wake-up
        self._selector.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._new: list[tuple[int, Callable[[], None]]] = []
        self._stopped = False
        self._closed = False  # the thread has ended and closed every descriptor
        self._thread = threading.Thread(target=self._run, name="child-watch", daemon=True)
        self._thread.start()

    def watch(self, pid: int, fn: Callable[[], None], wait: Callable[[], object]) -> None:
        """Call `fn()` once the child `pid` has exited. Without a pidfd (an old kernel, no
        descriptors left), a thread of its own calls `wait()` and then `fn()`."""
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            threading.Thread(target=lambda: (wait(), fn()), name=f"wait-{pid}",
                             daemon=True).start()
            return
        with self._lock:
            if self._stopped:
                os.close(fd)
                return
            self._new.append((fd, fn))
            self._wake()

    def stop(self) -> None:
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            self._wake()
        self._thread.join(5)

    def _wake(self) -> None:
        """Under the lock, so never after the thread has closed the pipe."""
        if not self._closed:
            try:
                os.write(self._wake_w, b"x")
            except BlockingIOError:
                pass

    def _run(self) -> None:
        watched: dict[int, Callable[[], None]] = {}
        while True:
            for key, _ in self._selector.select():
                fd = key.fd
                if fd == self._wake_r:
                    try:
                        while os.read(self._wake_r, 4096):
                            pass
                    except BlockingIOError:
                        pass
                    with self._lock:
                        new, self._new = self._new, []
                        if self._stopped:
                            for pidfd in [*watched, *(f for f, _ in new)]:
                                os.close(pidfd)
                            self._selector.close()
                            os.close(self._wake_r)
                            os.close(self._wake_w)
                            self._closed = True
                            return
                    for pidfd, fn in new:
                        watched[pidfd] = fn
                        self._selector.register(pidfd, selectors.EVENT_READ)
                    continue
                fn = watched.pop(fd)
                self._selector.unregister(fd)
                os.close(fd)
                try:
                    fn()
                except Exception:
                    log.exception("child exit callback failed")
