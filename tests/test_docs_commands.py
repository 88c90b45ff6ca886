"""Every command the docs print works as written, in a fresh shell, after `make run`.

The commands are read from the texts themselves, so this test follows the docs:
- the ready summary of `accessd local`: the indented lines after its `try` line;
- README.md: every line of every fenced code block, except blocks tagged `text` (the diagram).
  A README command this test cannot run here is listed in `NOT_RUN` with the reason; any other
  README command is run, so a new example is tested as soon as it is written.

The system is `accessd local` exactly as `make run` starts it (default data directory
`./.accessd`, default days), but on free ports, in a directory laid out like a clone where
`make run` has run: every top-level entry of the repository linked in, `.accessd` its own.
Each command runs in `bash` from that directory with an environment a new shell has: a PATH of
system directories only (no virtualenv: that is what the docs' `source .venv/bin/activate` line
must fix), a fresh HOME, and `ACCESSD_API` pointing at this run's control API (the README says
the CLI's default is `$ACCESSD_API`, then http://127.0.0.1:8080, which other runs may hold).
Lines that set up the shell (`source`, `export`, `cd`) are run before each later command of the
same block, as in one terminal session. A command documented as followed until Ctrl-C is
started, must say it is following (a line mentioning Ctrl-C), and must end cleanly (0, no
traceback) on SIGINT to its process group, as Ctrl-C does.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess

import pytest

from tests.support import PYTHON, REPO, Proc, free_port

README = REPO / "README.md"
CLEAN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NOT_RUN = {
    "make run": "it starts the system the other commands run against (accessd local, here)",
    "make test": "it is the test suite this test belongs to",
    "accessd scheduler --master mesos-master:5050 --state /var/lib/accessd/state.db":
        "needs a real Mesos master (mesos-master:5050) and /var/lib",
    'accessd api --bind 0.0.0.0:8080 --workers 4 --state /var/lib/accessd/state.db '
    '--token "$TOKEN" --master mesos-master:5050':
        "binds every interface on port 8080 of a production host",
    "accessd scheduler --master mesos-master:5050 --state zk://zk1:2181,zk2:2181,zk3:2181/accessd"
    " --advertise node1:8080": "needs a real Mesos master and a ZooKeeper ensemble",
    'accessd api --bind 0.0.0.0:8080 --state zk://zk1:2181,zk2:2181,zk3:2181/accessd '
    '--token "$TOKEN"': "needs a ZooKeeper ensemble; binds every interface of a production host",
    "accessd leader --api http://node2:8080": "talks to a production host (node2)",
    "accessd leader abdicate --api http://node2:8080": "talks to a production host (node2)",
    "accessd local --ha --data-dir ./.accessd-ha": "a second system besides the one under test "
    "(tests/scheduler/test_integration_ha.py covers HA)",
    "make run-containers": "a second system besides the one under test "
    "(tests/docker/ runs the services' image on localmesos)",
    "accessd image build": "minutes and root the first time on a machine (debootstrap); "
    "tests/docker/ builds the images through accessd.image",
    "accessd leader abdicate": "needs `accessd local --ha` (the system under test has no "
    "election: 409)",
}
SHELL_SETUP = ("source ", ". ", "export ", "cd ")


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(info string, lines) of each fenced code block of a Markdown text."""
    blocks: list[tuple[str, list[str]]] = []
    current: list[str] | None = None
    info = ""
    for line in text.splitlines():
        if line.startswith("```"):
            if current is None:
                info, current = line[3:].strip(), []
            else:
                blocks.append((info, current))
                current = None
        elif current is not None:
            current.append(line)
    assert current is None, "an unclosed code block"
    return blocks


def command_of(line: str) -> tuple[str, str]:
    """(command, comment) of a documented line: a `#` after whitespace starts the comment."""
    m = re.match(r"(.*?)(?:\s+#\s*(.*))?$", line.strip())
    assert m
    return m.group(1).strip(), (m.group(2) or "").strip()


def readme_blocks() -> list[list[tuple[str, str]]]:
    blocks = []
    for info, lines in fenced_blocks(README.read_text(encoding="utf-8")):
        if info == "text":
            continue
        blocks.append([command_of(line) for line in lines if line.strip()])
    return blocks


def summary_commands(output: str) -> list[tuple[str, str]]:
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("try"))
    commands = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        commands.append(command_of(line))
    return commands


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A directory like the clone after `make run`, with `accessd local` running in it."""
    root = tmp_path_factory.mktemp("clone")
    for entry in REPO.iterdir():
        if entry.name not in (".accessd", ".git"):
            (root / entry.name).symlink_to(entry)
    home = tmp_path_factory.mktemp("home")
    api_port, master_port = free_port(), free_port()
    proc = Proc([PYTHON, "-m", "accessd.cli", "local", "--api-port", str(api_port),
                 "--master-port", str(master_port)], cwd=root)
    try:
        proc.wait_for_line(lambda line: line.startswith("ready api="), timeout=240)
        # The summary is printed in one write after the ready line: wait for its last line.
        proc.wait_for_line(lambda line: line.strip().startswith("accessd client compare"),
                           timeout=10)
        env = {"PATH": CLEAN_PATH, "HOME": str(home), "LANG": "C.UTF-8",
               "ACCESSD_API": f"http://127.0.0.1:{api_port}"}
        yield {"root": root, "proc": proc, "env": env}
    finally:
        proc.stop(grace=30)


def run(command: str, setup: list[str], clone: dict, comment: str) -> str:
    """Run one documented command after its block's setup lines; fail with its output."""
    script = "\n".join(["set -e", *setup, command])
    if "ctrl-c" in comment.lower():
        return follow_until_ctrl_c(script, command, clone)
    done = subprocess.run(["bash", "-c", script], cwd=clone["root"], env=clone["env"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Traceback" not in done.stderr, (
        f"`{command}` failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    if command.startswith("curl "):
        body = json.loads(done.stdout)   # the services answer JSON; an error has a title
        assert not (isinstance(body, dict) and "title" in body), f"`{command}`: {body}"
    return done.stdout


def follow_until_ctrl_c(script: str, command: str, clone: dict) -> str:
    proc = Proc(["bash", "-c", script], cwd=clone["root"], env=clone["env"])
    try:
        proc.wait_for_line(lambda line: "Ctrl-C" in line, timeout=30)
        proc.signal(signal.SIGINT)
        code = proc.popen.wait(15)
        out = proc.output()
        assert code == 0 and "Traceback" not in out, f"`{command}` on Ctrl-C: {code}\n{out}"
        return out
    finally:
        proc.stop()


def run_block(commands: list[tuple[str, str]], clone: dict) -> dict[str, str]:
    setup: list[str] = []
    outputs = {}
    for command, comment in commands:
        if command in NOT_RUN:
            continue
        outputs[command] = run(command, setup, clone, comment)
        if command.startswith(SHELL_SETUP):
            setup.append(command)
    return outputs


def test_the_clean_shell_has_no_accessd_on_its_path(clone):
    assert shutil.which("accessd", path=CLEAN_PATH) is None
    done = subprocess.run(["bash", "-c", "accessd apps list"], cwd=clone["root"],
                          env=clone["env"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 127   # command not found: what a new user met before


def test_ready_summary_commands_work_as_printed(clone):
    commands = summary_commands(clone["proc"].output())
    assert [c for c, _ in commands if c.startswith("source ")], "the summary says how to get accessd"
    assert len(commands) >= 5
    outputs = run_block(commands, clone)
    compare = next(out for c, out in outputs.items() if c.startswith("accessd client compare"))
    assert "MAE" in compare and (clone["root"] / "jpm-compare.png").is_file()


def test_readme_commands_work_as_written(clone):
    blocks = readme_blocks()
    documented = {c for block in blocks for c, _ in block}
    assert set(NOT_RUN) <= documented, f"stale NOT_RUN entries: {set(NOT_RUN) - documented}"
    ran = 0
    outputs: dict[str, str] = {}
    for block in blocks:
        outputs.update(run_block(block, clone))
        ran += sum(1 for c, _ in block if c not in NOT_RUN)
    assert ran >= 10
    # What the README says these commands show: the model beats naive on the held-out quotes of
    # the default sample data; the vendor sample loads all its rows.
    jpm = outputs[next(c for c in outputs if "--symbol JPM" in c and "compare" in c)]
    held_out = jpm[jpm.index("held out"):]
    assert "better than naive" in held_out, jpm
    load = outputs[next(c for c in outputs if c.startswith("accessd data load"))]
    assert "loaded 390 quotes (ACME)" in load
    assert (clone["root"] / "acme-compare.png").is_file()
