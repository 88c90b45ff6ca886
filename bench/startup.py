"""Time the main job: `accessd local` (what `make run` runs) from start to "all healthy", twice.

    .venv/bin/python bench/startup.py [--data-dir DIR]

The first start works on an empty data directory (it makes the sample quotes and trains the
model), the second reuses them. Each run is stopped with SIGINT, as Ctrl-C would, and the time to
a clean exit is measured too. Free ports on 127.0.0.1, so it runs beside a `make run`. The last
line is `RESULT first_start_s=<n> second_start_s=<n> stop_s=<n>`.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_run(data_dir: Path) -> tuple[float, float]:
    """Seconds from start to the `ready` line, and from SIGINT to exit."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "accessd.cli", "local", "--api-port", str(free_port()),
         "--master-port", str(free_port()), "--data-dir", str(data_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    assert proc.stdout is not None
    ready = None
    try:
        for line in proc.stdout:
            print("  " + line.rstrip(), flush=True)
            if line.startswith("ready api="):
                ready = time.monotonic() - started
                break
        if ready is None:
            raise SystemExit(f"accessd local exited with {proc.wait()} before it was ready")
        stopping = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        for line in proc.stdout:
            print("  " + line.rstrip(), flush=True)
        proc.wait(60)
        return ready, time.monotonic() - stopping
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", help="an empty or missing directory (default: a temporary one)")
    opts = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="accessd-startup-") as tmp:
        data_dir = Path(opts.data_dir or Path(tmp, "data"))
        print("first start (empty data directory)", flush=True)
        first, stop1 = one_run(data_dir)
        print("second start (reusing quotes, model and app definitions)", flush=True)
        second, stop2 = one_run(data_dir)
    print(f"first start {first:.1f}s, second start {second:.1f}s; stops {stop1:.1f}s, "
          f"{stop2:.1f}s")
    print(f"RESULT first_start_s={first:.1f} second_start_s={second:.1f} "
          f"stop_s={max(stop1, stop2):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
