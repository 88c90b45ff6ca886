"""executor.process on real processes: environment and sandbox files, exit codes and signals,
kill with grace (timed), and that nothing of a task survives — not its grandchildren, not even
when the executor itself is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from executor.process import GUARD_SCRIPT, ExitStatus, ServiceProcess, task_environment
from tests.executor.proctable import live_children, live_in_group, pid_alive
from tests.support import REPO, wait_until

PY = sys.executable


def env_for(sandbox, **kw):
    args = dict(app_env={"APP_VAR": "x", "PORT0": "overridden-by-contract"}, ports=[31001, 31002],
                port_names=["http", None], host="127.0.1.1", task_id="jpm_ts.abc",
                app_id="/jpm/ts", sandbox=str(sandbox))
    args.update(kw)
    return task_environment({"PATH": os.environ["PATH"], "BASE": "1"}, **args)


def test_environment_stdout_stderr_and_cwd(tmp_path):
    script = ("import json, os, sys; json.dump({'env': dict(os.environ), 'cwd': os.getcwd()}, "
              "open('seen.json', 'w')); print('to stdout'); print('to stderr', file=sys.stderr)")
    proc = ServiceProcess(f"{PY} -c \"{script}\"", env_for(tmp_path), str(tmp_path))
    status = proc.wait(20)
    assert status == ExitStatus(code=0, signal=None) and status.succeeded
    assert status.message == "Command exited with status 0"
    seen = json.loads((tmp_path / "seen.json").read_text())
    env = seen["env"]
    assert seen["cwd"] == str(tmp_path)
    assert {k: env[k] for k in ("PORT0", "PORT1", "PORT", "PORTS", "PORT_HTTP", "HOST",
                                "MESOS_TASK_ID", "MARATHON_APP_ID", "MESOS_SANDBOX", "APP_VAR",
                                "BASE")} == {
        "PORT0": "31001", "PORT1": "31002", "PORT": "31001", "PORTS": "31001,31002",
        "PORT_HTTP": "31001", "HOST": "127.0.1.1", "MESOS_TASK_ID": "jpm_ts.abc",
        "MARATHON_APP_ID": "/jpm/ts", "MESOS_SANDBOX": str(tmp_path), "APP_VAR": "x", "BASE": "1"}
    assert (tmp_path / "stdout").read_text() == "to stdout\n"
    assert (tmp_path / "stderr").read_text() == "to stderr\n"


def test_output_is_appended_to_existing_sandbox_files(tmp_path):
    # The agent already writes the executor's own output to these files.
    (tmp_path / "stdout").write_text("executor line\n")
    ServiceProcess("echo service line", env_for(tmp_path), str(tmp_path)).wait(20)
    assert (tmp_path / "stdout").read_text() == "executor line\nservice line\n"


def test_args_argv_exit_code(tmp_path):
    proc = ServiceProcess([PY, "-c", "import sys; sys.exit(3)"], env_for(tmp_path), str(tmp_path))
    status = proc.wait(20)
    assert status == ExitStatus(code=3, signal=None)
    assert status.message == "Command exited with status 3"
    assert not status.succeeded


def test_args_are_not_shell_interpreted(tmp_path):
    proc = ServiceProcess([PY, "-c", "import sys; open('out', 'w').write(sys.argv[1])", "$HOME;x"],
                          env_for(tmp_path), str(tmp_path))
    assert proc.wait(20).succeeded
    assert (tmp_path / "out").read_text() == "$HOME;x"


def test_terminated_by_signal(tmp_path):
    proc = ServiceProcess("kill -TERM $$", env_for(tmp_path), str(tmp_path))
    status = proc.wait(20)
    assert status == ExitStatus(code=None, signal=signal.SIGTERM)
    assert status.message == "Command terminated with signal Terminated"


def test_missing_program_raises_and_leaves_nothing(tmp_path):
    with pytest.raises(OSError):
        ServiceProcess(["/nonexistent/program"], env_for(tmp_path), str(tmp_path))
    # The guard, started first, must be gone too: no child of ours runs the guard script.
    wait_until(lambda: not [p for p in live_children(os.getpid())
                            if GUARD_SCRIPT.encode() in _cmdline(p)],
               timeout=10, message="the guard to exit")


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


def test_service_runs_in_its_own_group(tmp_path):
    proc = ServiceProcess("sleep 30", env_for(tmp_path), str(tmp_path))
    try:
        assert os.getpgid(proc.pid) == proc.pgid != os.getpgid(0)
    finally:
        proc.kill(5)


def test_kill_sigterm_respecting_service_is_quick(tmp_path):
    proc = ServiceProcess(f"exec {PY} -c 'import time; open(\"up\", \"w\"); time.sleep(60)'",
                          env_for(tmp_path), str(tmp_path))
    wait_until(lambda: (tmp_path / "up").exists(), timeout=20, message="service up")
    t0 = time.monotonic()
    status = proc.kill(grace=5.0)
    elapsed = time.monotonic() - t0
    print(f"kill of a SIGTERM-respecting service took {elapsed:.3f}s (grace 5s)")
    assert status.signal == signal.SIGTERM and status.message.endswith("Terminated")
    assert elapsed < 2.0
    assert proc.killed
    assert live_in_group(proc.pgid) == []


def test_sigterm_ignoring_service_is_sigkilled_after_grace(tmp_path):
    # The main process ignores SIGTERM and has a grandchild that does too.
    service = textwrap.dedent("""
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        child = subprocess.Popen([sys.executable, "-c",
            "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(120)"])
        open("child.pid", "w").write(str(child.pid))
        time.sleep(120)
    """)
    (tmp_path / "service.py").write_text(service)
    proc = ServiceProcess([PY, "service.py"], env_for(tmp_path), str(tmp_path))
    child_pid = int(wait_until(lambda: (tmp_path / "child.pid").read_text(), timeout=20))
    t0 = time.monotonic()
    status = proc.kill(grace=1.5)
    elapsed = time.monotonic() - t0
    print(f"kill of a SIGTERM-ignoring service took {elapsed:.3f}s (grace 1.5s)")
    assert status == ExitStatus(code=None, signal=signal.SIGKILL)
    assert status.message == "Command terminated with signal Killed"
    assert 1.5 <= elapsed < 2.5
    assert not pid_alive(child_pid)
    assert live_in_group(proc.pgid) == []


def test_leftovers_of_an_exited_service_are_ended(tmp_path):
    proc = ServiceProcess("sleep 60 & echo $! > bg.pid; exit 0", env_for(tmp_path), str(tmp_path))
    assert proc.wait(20).succeeded
    bg = int((tmp_path / "bg.pid").read_text())
    assert not pid_alive(bg)
    assert live_in_group(proc.pgid) == []


EXECUTOR_STANDIN = """
import os, sys, time
sys.path.insert(0, {repo!r})
from executor.process import ServiceProcess
sandbox = sys.argv[1]
script = "sleep 120 & echo $! > grandchild.pid; exec sleep 120"
proc = ServiceProcess(script, dict(os.environ), sandbox)
print(proc.pid, proc.pgid, flush=True)
time.sleep(120)
"""


def test_sigkilled_executor_leaves_no_process(tmp_path):
    """PDEATHSIG ends the service, the guard ends the rest of its group (the grandchild)."""
    standin = subprocess.Popen([PY, "-c", EXECUTOR_STANDIN.format(repo=str(REPO)), str(tmp_path)],
                               stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        pid, pgid = map(int, standin.stdout.readline().split())
        grandchild = int(wait_until(lambda: (tmp_path / "grandchild.pid").read_text(), timeout=20))
        assert pid_alive(pid) and pid_alive(grandchild)
        t0 = time.monotonic()
        os.kill(standin.pid, signal.SIGKILL)
        standin.wait(10)
        wait_until(lambda: not pid_alive(pid) and not pid_alive(grandchild)
                   and not live_in_group(pgid), timeout=10, message="task group gone")
        print(f"task group gone {time.monotonic() - t0:.3f}s after the executor's SIGKILL")
    finally:
        if standin.poll() is None:
            os.killpg(standin.pid, signal.SIGKILL)
            standin.wait(10)
