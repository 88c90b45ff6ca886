"""The conformance lane's own contract, checked without a real Mesos: without the tarball it says
so in one line and exits 0, and every known difference names a scenario that exists (a renamed
scenario must not leave a stale entry that silently stops applying)."""

from __future__ import annotations

import subprocess

from conformance.known_differences import KNOWN
from tests.support import PYTHON, REPO


def test_lane_without_the_tarball_is_one_line_and_exit_0(tmp_path):
    done = subprocess.run(["bash", "tools/conformance.sh"], cwd=REPO, capture_output=True,
                          text=True, timeout=60,
                          env={"PATH": "/usr/bin:/bin", "MESOS_TARBALL": str(tmp_path / "none"),
                               "PY": PYTHON})
    assert done.returncode == 0
    assert done.stdout.count("\n") == 1 and "lane skipped" in done.stdout
    assert not done.stderr


def test_every_known_difference_names_a_collected_scenario():
    done = subprocess.run([PYTHON, "-m", "pytest", "conformance", "-c", "conformance/pytest.ini",
                           "--rootdir=.", "--collect-only", "-q"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    # node ids: conformance/test_scenarios.py::test_x[mesos-executor-HTTP]
    collected = set()
    for line in done.stdout.splitlines():
        if "::" not in line:
            continue
        name = line.split("::", 1)[1]
        base, _, params = name.partition("[")
        cluster, *rest = params.rstrip("]").split("-")
        collected.add((f"{base}[{'-'.join(rest)}]" if rest else base, cluster))
    assert collected, done.stdout
    assert set(KNOWN) <= collected, set(KNOWN) - collected
