"""The command line, and no orphan processes whichever way localmesos ends."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.fixtures_mesos import start_localmesos
from tests.localmesos.conftest import TEST_ARGS
from tests.localmesos.helpers import Recorder, command_task, start_driver, stop_driver
from tests.support import PYTHON, REPO, Proc, free_port, wait_until


def processes_under(work_dir: Path) -> list[int]:
    """Pids of live processes whose environment points into `work_dir` (tasks and children)."""
    needle = str(work_dir).encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes()
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        if needle in env and stat.rsplit(")", 1)[1].split()[0] != "Z":
            found.append(int(entry))
    return found


def _start_tasks(lm, n: int) -> Recorder:
    rec = Recorder()
    start_driver(lm.master, rec)
    for i in range(n):
        offer = rec.take_offer()
        # A shell with a background grandchild that ignores SIGTERM: only a group kill ends it.
        rec.driver.launchTasks(offer["id"], [command_task(
            f"t{i}", offer, "(trap '' TERM; sleep 300) & sleep 300")])
    for i in range(n):
        rec.wait_state(f"t{i}", "TASK_RUNNING")
    wait_until(lambda: len(processes_under(lm.work_dir)) >= 3 * n, message="task processes up")
    return rec


def test_sigterm_ends_every_task_process(tmp_path: Path) -> None:
    lm = start_localmesos(tmp_path, agents=2, extra_args=TEST_ARGS)
    try:
        rec = _start_tasks(lm, 2)
        stop_driver(rec.driver, failover=True)  # leave the tasks running
        assert processes_under(lm.work_dir)
        t0 = time.monotonic()
        rc = lm.stop()
        took = time.monotonic() - t0
        # (a slow stop makes localmesos log every thread's stack after 6 s: shown on failure;
        # a -9 in well under 10 s would mean something else killed it)
        assert rc == 0 and took < 8, (rc, took, lm.proc.output()[-20000:])
        wait_until(lambda: processes_under(lm.work_dir) == [], timeout=5, message="no orphans")
    finally:
        lm.stop()


def test_sigkill_of_localmesos_alone_leaves_no_orphans(tmp_path: Path) -> None:
    lm = start_localmesos(tmp_path, agents=2, extra_args=TEST_ARGS)
    try:
        rec = _start_tasks(lm, 2)
        stop_driver(rec.driver, failover=True)
        os.kill(lm.proc.pid, signal.SIGKILL)  # not the group: only localmesos itself
        lm.proc.popen.wait(5)
        wait_until(lambda: processes_under(lm.work_dir) == [], timeout=10, message="no orphans")
    finally:
        lm.stop()


def test_orphans_of_an_ended_task_are_killed(lm, sched) -> None:
    offer = sched.take_offer()
    # The task starts a child in a session of its own, then exits: the child is an orphan.
    sched.driver.launchTasks(offer["id"], [command_task(
        "leaver", offer, "setsid sleep 300 & echo $! > child.pid; sleep 0.3")])
    sched.wait_state("leaver", "TASK_FINISHED")
    sandbox = next(lm.work_dir.glob("slaves/*/frameworks/*/executors/leaver/runs/*"))
    child = int((sandbox / "child.pid").read_text())
    wait_until(lambda: not Path(f"/proc/{child}").exists(), timeout=5, message="orphan killed")


def test_sigkill_leaves_no_orphans_even_in_other_sessions(tmp_path: Path) -> None:
    lm = start_localmesos(tmp_path, agents=1, extra_args=TEST_ARGS)
    try:
        rec = Recorder()
        start_driver(lm.master, rec)
        offer = rec.take_offer()
        rec.driver.launchTasks(offer["id"], [command_task("deep", offer,
                                                          "setsid sleep 300 & sleep 300")])
        rec.wait_state("deep", "TASK_RUNNING")
        wait_until(lambda: len(processes_under(lm.work_dir)) >= 3, message="processes up")
        stop_driver(rec.driver, failover=True)
        os.kill(lm.proc.pid, signal.SIGKILL)
        lm.proc.popen.wait(5)
        wait_until(lambda: processes_under(lm.work_dir) == [], timeout=10, message="no orphans")
    finally:
        lm.stop()


def test_ready_line_and_options(tmp_path: Path) -> None:
    port = free_port()
    proc = Proc([str(Path(PYTHON).with_name("accessd")), "localmesos", "--port", str(port),
                 "--agents", "4", "--work-dir", str(tmp_path / "w"),
                 "--resources", "cpus:2;mem:1024;ports:[20000-20499]",
                 "--attributes", "rack:a;zone:z1", "--attributes", "rack:b"], cwd=REPO)
    try:
        proc.wait_for_line(lambda line: line.startswith("ready"), timeout=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/state", timeout=5) as resp:
            state = json.loads(resp.read())
        slaves = sorted(state["slaves"], key=lambda s: s["hostname"])
        assert [s["hostname"] for s in slaves] == [f"127.0.1.{k}" for k in range(1, 5)]
        # each agent claims a block of the asked width, downwards from the asked range; blocks
        # other clusters on the machine hold are skipped (localmesos/portblocks.py)
        blocks = [tuple(map(int, s["resources"]["ports"].strip("[]").split("-"))) for s in slaves]
        assert all(low % 1000 == 0 and high == low + 499 and high <= 20499
                   for low, high in blocks), blocks
        assert blocks[0][0] <= 20000 and blocks == sorted(blocks, reverse=True), blocks
        assert len(set(blocks)) == 4, blocks
        assert [s["attributes"] for s in slaves] == [
            {"rack": "a", "zone": "z1"}, {"rack": "b"}, {"rack": "a", "zone": "z1"}, {"rack": "b"}]
        assert slaves[0]["resources"]["cpus"] == 2.0 and slaves[0]["resources"]["mem"] == 1024.0
        assert len({s["port"] for s in slaves}) == 4
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=5) as resp:
            assert json.loads(resp.read())["version"] == "1.12.0"
    finally:
        assert proc.stop() == 0
    stdout = [line for line in proc.lines if not line.startswith("20")]  # logs start with a date
    assert stdout == [f"ready master=127.0.0.1:{port}"]


def test_default_racks_and_bad_options(tmp_path: Path) -> None:
    lm = start_localmesos(tmp_path, agents=3)
    try:
        racks = [s["attributes"]["rack"] for s in
                 sorted(lm.state()["slaves"], key=lambda s: s["hostname"])]
        assert racks == ["r1", "r2", "r1"]
    finally:
        lm.stop()
    bad = subprocess.run([PYTHON, "-m", "localmesos", "--resources", "cpus:x"], cwd=REPO,
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "bad resource 'cpus:x'" in bad.stderr
    busy = start_localmesos(tmp_path / "b", agents=1)
    try:
        clash = subprocess.run([PYTHON, "-m", "localmesos", "--port", str(busy.port)], cwd=REPO,
                               capture_output=True, text=True, timeout=30)
        assert clash.returncode == 1 and "cannot listen" in clash.stderr
        assert "Traceback" not in clash.stderr
    finally:
        busy.stop()
