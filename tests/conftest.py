"""Suite-wide guard: no process a test started may outlive the run.

Tests start localmesos, schedulers, APIs, services and ZooKeeper as real processes, each
with its files under the run's base temporary directory. A fixture that loses track of one (a
replaced scheduler its teardown never stopped was found this way) leaves it running for good,
where it keeps talking to whatever reuses its ports. At the end of the session every process
whose command line names that directory is listed, killed, and the run fails.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

FUZZ_SCALE = 0.25  # the share of the API fuzz test's full case counts `make test` runs


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fuzz-scale", type=float, default=FUZZ_SCALE,
        help="share of the API schemathesis fuzz test's full case counts to run (make test: "
             f"{FUZZ_SCALE}; make fuzz and make test-all: 1, about 1,000 API cases)")


@pytest.fixture(scope="session")
def fuzz_cases(request: pytest.FixtureRequest):
    """`fuzz_cases(full)`: how many examples a fuzz test runs of its `full` count.
    (tests/services/test_openapi.py runs its 250 in full: a few seconds, and a quarter of them
    can miss the 200 answers it requires.)"""
    scale = request.config.getoption("fuzz_scale")
    return lambda full: max(10, round(full * scale))


def _processes_naming(directory: str) -> list[tuple[int, str]]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # ended meanwhile
            continue
        if directory in args:
            found.append((int(entry.name), args.strip()))
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return  # no test asked for a temporary directory
    leftovers = _processes_naming(str(factory.getbasetemp()) + os.sep)
    if not leftovers:
        return
    for pid, _ in leftovers:
        try:  # its process group too (its children's command lines need not name the directory)
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = "\n".join(f"  pid {pid}: {args[:200]}" for pid, args in leftovers)
    message = f"\n{len(leftovers)} process(es) started by tests outlived the run (killed now):\n"
    if reporter is not None:
        reporter.write_line(message + lines, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
