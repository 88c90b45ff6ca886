"""The test harness itself: a hang names its test."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support import REPO


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
