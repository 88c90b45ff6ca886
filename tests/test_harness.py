"""The test harness itself: a hang names its test, and "no traceback" checks see everything."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import PYTHON, REPO, Proc, assert_no_traceback, watch_processes


def test_a_hanging_test_is_named_and_the_run_goes_on(tmp_path: Path) -> None:
    # The project's pytest configuration (pyproject.toml: `timeout`) with a 2 s limit instead
    # of the suite's: the hang fails its own test by name, and the next test still runs.
    (tmp_path / "test_hang.py").write_text(textwrap.dedent("""
        import time

        def test_hangs_forever():
            time.sleep(3600)

        def test_after_the_hang():
            pass
    """))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-c",
         str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path), "-o", "timeout=2",
         str(tmp_path / "test_hang.py")],
        capture_output=True, text=True, timeout=60, cwd=tmp_path)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Timeout" in out and "test_hangs_forever" in out, out
    assert "1 failed, 1 passed" in out, out


def test_the_suite_has_a_per_test_limit() -> None:
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert 0 < int(config["timeout"]) <= 300


def _printer(lines_after: int, traceback: bool = True) -> Proc:
    script = ("import sys\n"
              + ("print('Traceback (most recent call last):')\nprint('ValueError: boom')\n"
                 if traceback else "")
              + f"for i in range({lines_after}): print('line', i)\n"
              + "sys.stdout.flush()\nimport time\ntime.sleep(3600)\n")
    return Proc([PYTHON, "-c", script])


def test_no_traceback_check_sees_a_traceback_before_the_last_200_lines() -> None:
    proc = _printer(lines_after=500)
    try:
        proc.wait_for_line(lambda line: line == "line 499", timeout=20)
    finally:
        proc.stop()
    assert "Traceback" not in proc.output()  # the tail alone hides it: what the old check read
    with pytest.raises(AssertionError, match=r"1 traceback\(s\) among 502 lines; the first at "
                                             r"line 1:\nTraceback"):
        assert_no_traceback([proc])


def test_no_traceback_check_covers_a_process_that_was_killed_and_replaced() -> None:
    with watch_processes() as seen:
        first = _printer(lines_after=1)
        first.wait_for_line(lambda line: line == "line 0", timeout=20)
        first.signal(signal.SIGKILL)
        first.popen.wait(10)
        second = _printer(lines_after=1, traceback=False)  # the replacement is clean
        second.wait_for_line(lambda line: line == "line 0", timeout=20)
        second.stop()
    assert seen == [first, second]
    assert_no_traceback([second])
    with pytest.raises(AssertionError, match="ValueError: boom"):
        assert_no_traceback(seen)


def test_agent_port_plan_predicts_the_ports_localmesos_offers(tmp_path: Path) -> None:
    from tests.fixtures_mesos import start_localmesos
    from tests.fixtures_scheduler import agent_port_plan

    spec, blocks = agent_port_plan(agents=3, width=100)
    mesos = start_localmesos(tmp_path, agents=3, resources=spec)
    try:
        offered = sorted(s["resources"]["ports"] for s in mesos.state()["slaves"])
    finally:
        mesos.stop()
    # the ports the plan checked free are exactly the ones the agents offer
    assert offered == sorted(f"[{b}-{b + 99}]" for b in blocks), (offered, blocks)
