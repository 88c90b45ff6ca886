"""Starting the control API as a real process for tests: `start_api(state_path, ...)`.

It runs `python -m accessd api` (the real command line, gunicorn with gthread workers) on a free
127.0.0.1 port and waits until `/ping` answers. The caller stops it with `proc.stop()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import requests

from tests.support import PYTHON, REPO, Proc, free_port, wait_until


def start_api(state_path: str | Path, workers: int = 2, extra_args: Sequence[str] = (),
              env: dict[str, str] | None = None, timeout: float = 60.0,
              port: int | None = None) -> tuple[Proc, str]:
    """Start `accessd api` on `state_path` (on `port`, else a free one); return the process and
    its base URL."""
    port = port or free_port()
    base = f"http://127.0.0.1:{port}"
    proc = Proc([PYTHON, "-m", "accessd.cli", "api", "--bind", f"127.0.0.1:{port}",
                 "--workers", str(workers), "--state", str(state_path), *extra_args],
                env=env, cwd=REPO)

    def ready() -> bool:
        if proc.popen.poll() is not None:
            raise AssertionError(f"accessd api exited with {proc.popen.returncode}:\n"
                                 + proc.output())
        return requests.get(base + "/ping", timeout=2).text == "pong"

    try:
        wait_until(ready, timeout=timeout, message=f"accessd api on {base} to answer /ping")
    except BaseException:
        proc.stop()
        raise
    return proc, base
