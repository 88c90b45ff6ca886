"""Framework authentication, on a real Mesos 1.12 master and on localmesos, each started here
with the same credentials file (the real one with `--authenticate_http_frameworks
--http_framework_authenticators=basic --credentials`, localmesos with `--credentials`): the
answers recorded in `tests/data/mesos-1.12/framework_auth.json` hold on both (so the recording
stays true), and `accessd scheduler` registers with the right secret and exits 1 with one line
on a wrong one. Masters of their own, no agent: the shared scenario clusters stay open."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conformance.conftest import CLUSTERS
from tests.data import recording
from tests.fixtures_scheduler import REGISTERED
from tests.security.test_framework_auth import basic, first_record, post, subscribe_call
from tests.support import PYTHON, REPO, Proc, assert_no_traceback, free_port, wait_until


def start_master(kind: str, work: Path, creds: Path) -> tuple[Proc, int]:
    port = free_port()
    if kind == "mesos":
        home = os.environ.get("ACCESSD_REAL_MESOS")
        if not home:
            pytest.skip("no real Mesos ($ACCESSD_REAL_MESOS unset: run `make conformance`)")
        proc = Proc([str(Path(home) / "bin" / "mesos-master"), "--ip=127.0.0.1",
                     f"--port={port}", f"--work_dir={work / 'master'}", "--registry=in_memory",
                     "--authenticate_http_frameworks", "--http_framework_authenticators=basic",
                     f"--credentials=file://{creds}"], cwd=work)
    else:
        proc = Proc([PYTHON, "-m", "localmesos", "--port", str(port), "--agents", "1",
                     "--work-dir", str(work / "lm"), "--credentials", str(creds)], cwd=REPO)

    def up() -> bool:
        assert proc.popen.poll() is None, proc.output()
        try:
            return post(port, {}, None).status == 401
        except OSError:
            return False

    wait_until(up, timeout=60, message=f"the {kind} master to answer")
    return proc, port


@pytest.mark.parametrize("cluster", CLUSTERS)
def test_framework_authentication(cluster: str, tmp_path: Path) -> None:
    rec = recording("framework_auth.json")
    secrets = {c["principal"]: c["secret"] for c in rec["credentials"]}
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"credentials": rec["credentials"]}))
    master, port = start_master(cluster, tmp_path, creds)
    procs = [master]
    try:
        answers = {a["case"]: a for a in rec["answers"]}
        for case, auth in (("no Authorization", None), ("wrong secret", basic("accessd", "bad")),
                           ("another principal than FrameworkInfo's",
                            basic("other", secrets["other"]))):
            r = post(port, subscribe_call("accessd"), auth)
            assert (r.status, r.read().decode()) == (answers[case]["status"],
                                                    answers[case]["body"]), case
            for name, value in answers[case]["headers"].items():
                assert r.getheader(name) == value, (case, name)
        stream = post(port, subscribe_call(None), basic("accessd", secrets["accessd"]))
        assert stream.status == 200
        assert first_record(stream)["type"] == "SUBSCRIBED"
        stream.close()
        wrong = Proc([PYTHON, "-m", "accessd.cli", "scheduler", "--master",
                      f"127.0.0.1:{port}", "--state", str(tmp_path / "wrong.db"),
                      "--principal", "accessd"],
                     env={"ACCESSD_FRAMEWORK_SECRET": "not-" + secrets["accessd"]}, cwd=REPO)
        procs.append(wrong)
        assert wrong.popen.wait(60) == 1
        assert "refused the framework's credentials (401 Unauthorized)" in wrong.full_output()
        right = Proc([PYTHON, "-m", "accessd.cli", "scheduler", "--master",
                      f"127.0.0.1:{port}", "--state", str(tmp_path / "right.db"),
                      "--principal", "accessd"],
                     env={"ACCESSD_FRAMEWORK_SECRET": secrets["accessd"]}, cwd=REPO)
        procs.append(right)
        right.wait_for_line(lambda line: REGISTERED.search(line) is not None, timeout=60)
    finally:
        for proc in reversed(procs):
            proc.stop()
    assert_no_traceback(procs[1:])
