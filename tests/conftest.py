"""Suite-wide guard: no process a test started may outlive the run.

Tests start localmesos, schedulers, APIs, services and ZooKeeper as real processes, each
with its files under the run's base temporary directory. A fixture that loses track of one (a
replaced scheduler its teardown never stopped was found this way) leaves it running for good,
where it keeps talking to whatever reuses its ports. At the end of the session every process
whose command line names that directory is listed, killed, and the run fails.

Under pytest-xdist (`make test` runs 2 workers) each worker has its own base directory
(`<base>/popen-gwN`) and checks it when it finishes; it sends what it found to the controller
(`workeroutput`), which reports it and fails the run, and then checks the whole base directory
once more (a worker that crashed checked nothing).
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


LEFTOVERS = "leftover_processes"
_leftovers_key = pytest.StashKey[list]()


def _kill_leftovers(base: str) -> list[tuple[int, str]]:
    """Every process naming the directory `base`, each killed with its process group."""
    leftovers = _processes_naming(base.rstrip(os.sep) + os.sep)
    for pid, _ in leftovers:
        try:  # its process group too (its children's command lines need not name the directory)
            group = os.getpgid(pid)
            if group != os.getpgrp():
                os.killpg(group, signal.SIGKILL)
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return leftovers


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist controller: keep what a finished worker found left behind."""
    found = (getattr(node, "workeroutput", None) or {}).get(LEFTOVERS) or []
    node.config.stash.setdefault(_leftovers_key, []).extend(
        (node.gateway.id, pid, args) for pid, args in found)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    config = session.config
    found = list(config.stash.get(_leftovers_key, []))   # (worker, pid, command line)
    factory = getattr(config, "_tmp_path_factory", None)
    if factory is not None and getattr(factory, "_basetemp", None) is not None:
        found += [("", pid, args) for pid, args in _kill_leftovers(str(factory.getbasetemp()))]
    if hasattr(config, "workeroutput"):  # an xdist worker: the controller reports
        config.workeroutput[LEFTOVERS] = [(pid, args) for _, pid, args in found]
        return
    if not found:
        return
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    lines = "\n".join(f"  {worker + ' ' if worker else ''}pid {pid}: {args[:200]}"
                      for worker, pid, args in found)
    message = f"\n{len(found)} process(es) started by tests outlived the run (killed now):\n"
    if reporter is not None:
        reporter.write_line(message + lines, red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
