"""Nothing secret in any log of a real stack: localmesos with framework authentication,
`accessd scheduler` (debug logging, its secret from the environment, a secrets directory),
`accessd api` (access log on, tokens from the environment), an app whose `env` holds a planted
value and a Marathon secret reference, run by accessd's executor, CLI commands, and refused
requests that carry wrong credentials.

The secret reaches the task (it writes the value's hash) and no API answer: a read-only caller,
like a full one, sees the reference `{"secret": "db"}` and the source, never the value. Afterwards every process's output and every log file the run left (sandboxes
included: the executor's stdout/stderr) is searched for each planted value, raw and in the
forms it travels in (base64 of HTTP basic, the executor's base64 TaskInfo data)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import requests

from tests.fixtures_api import start_api
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import REGISTERED
from tests.support import PYTHON, REPO, Proc, assert_no_traceback, wait_until

TOKEN = "api-token-Planted-a91c0f"
READ_TOKEN = "read-token-Planted-3d7e55"
WRONG_TOKEN = "wrong-token-Planted-66b2"
FW_SECRET = "fw-secret-Planted-b03e1d"
ENV_VALUE = "plain-env-Planted-e4f7a2"
SECRET_VALUE = "db-password-Planted-0c5d19"
APP_ID = "/sec/web"


def forms(value: str) -> list[str]:
    b64 = base64.b64encode(value.encode()).decode()
    return [value, b64[:-4] if b64.endswith("=") else b64]


PLANTED = {v: forms(v) for v in (TOKEN, READ_TOKEN, WRONG_TOKEN, FW_SECRET, ENV_VALUE,
                                  SECRET_VALUE)}
PLANTED[FW_SECRET].append(base64.b64encode(f"accessd:{FW_SECRET}".encode()).decode())


def log_files(root: Path) -> list[Path]:
    """Every file a process of the run wrote as a log (not the state store, which holds the
    definitions by design)."""
    out = []
    for path in root.rglob("*"):
        if path.is_file() and (path.name in ("stdout", "stderr") or path.suffix == ".log"):
            out.append(path)
    return out


@pytest.mark.timeout(120)
def test_no_planted_secret_in_any_log(tmp_path):
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"credentials": [{"principal": "accessd",
                                                  "secret": FW_SECRET}]}))
    lm = start_localmesos(tmp_path, agents=1, extra_args=("--credentials", str(creds)))
    procs: list[Proc] = [lm.proc]
    cli_outputs: list[str] = []
    try:
        state = tmp_path / "state.db"
        secrets = tmp_path / "secrets"
        (secrets / "db").mkdir(parents=True)
        (secrets / "db" / "password").write_text(SECRET_VALUE + "\n")
        sched = Proc([PYTHON, "-m", "accessd.cli", "scheduler", "--master", lm.master,
                      "--state", str(state), "--log-level", "DEBUG",
                      "--secrets-dir", str(secrets)],
                     env={"ACCESSD_FRAMEWORK_PRINCIPAL": "accessd",
                          "ACCESSD_FRAMEWORK_SECRET": FW_SECRET}, cwd=REPO)
        procs.append(sched)
        sched.wait_for_line(lambda line: REGISTERED.search(line) is not None, timeout=60)
        api, base = start_api(state, workers=1, extra_args=("--access-log",),
                              env={"ACCESSD_API_TOKEN": TOKEN,
                                   "ACCESSD_API_READ_TOKEN": READ_TOKEN})
        procs.append(api)
        app = tmp_path / "app.json"
        seen = tmp_path / "seen-hash"
        app.write_text(json.dumps({
            "id": APP_ID, "cpus": 0.1, "mem": 32, "instances": 1, "portDefinitions": [],
            "cmd": 'printf %s "$DB_PASSWORD" | sha256sum > "$SEEN"; sleep 300',
            "env": {"PLAIN": ENV_VALUE, "SEEN": str(seen), "DB_PASSWORD": {"secret": "db"}},
            "secrets": {"db": {"source": "/db/password"}}}))
        env = {**os.environ, "ACCESSD_API": base, "ACCESSD_API_TOKEN": TOKEN}
        for args in (["deploy", str(app), "--wait"], ["apps", "list"], ["tasks", APP_ID]):
            r = subprocess.run([PYTHON, "-m", "accessd.cli", *args], cwd=REPO, env=env,
                               capture_output=True, text=True, timeout=90)
            assert r.returncode == 0, r.stdout + r.stderr
            cli_outputs.append(r.stderr)  # stdout is the answer asked for; stderr is the log
        # The task really runs with the value (it reached the executor and the process).
        tasks = requests.get(f"{base}/v2/apps{APP_ID}/tasks", timeout=10,
                             headers={"Authorization": f"Bearer {READ_TOKEN}"}).json()["tasks"]
        assert [t["state"] for t in tasks] == ["TASK_RUNNING"]
        want = hashlib.sha256(SECRET_VALUE.encode()).hexdigest()
        wait_until(lambda: seen.exists() and seen.read_text().split()[:1] == [want],
                   timeout=20, message="the task to see the secret's value")
        # What an API caller sees: the reference, never the value (read-only or full token).
        for token in (READ_TOKEN, TOKEN):
            headers = {"Authorization": f"Bearer {token}"}
            app_doc = requests.get(f"{base}/v2/apps{APP_ID}", headers=headers,
                                   timeout=10).json()["app"]
            assert app_doc["env"]["DB_PASSWORD"] == {"secret": "db"}
            assert app_doc["secrets"] == {"db": {"source": "/db/password"}}
            for path in ("/v2/apps?embed=apps.tasks", f"/v2/apps{APP_ID}/versions",
                         "/v2/groups?embed=group.apps", "/v2/tasks", "/v2/deployments",
                         "/v2/queue"):
                answer = requests.get(base + path, headers=headers, timeout=10)
                assert answer.status_code == 200 and SECRET_VALUE not in answer.text, path
        # A secret the scheduler cannot read: the task is not launched, and the log says why.
        r = requests.post(f"{base}/v2/apps", timeout=10, headers={
            "Authorization": f"Bearer {TOKEN}"}, json={
            "id": "/sec/missing", "cmd": "sleep 300", "cpus": 0.1, "mem": 16,
            "portDefinitions": [], "env": {"X": {"secret": "gone"}},
            "secrets": {"gone": {"source": "/no/such"}}})
        assert r.status_code == 201, r.text
        sched.wait_for_line(lambda line: "not launching a task of /sec/missing: secret 'gone' "
                                         "(source /no/such): No such file" in line, timeout=30)

        def queue_reason() -> str | None:
            queue = requests.get(f"{base}/v2/queue?embed=accessd", timeout=10,
                                 headers={"Authorization": f"Bearer {READ_TOKEN}"}).json()
            return next((q["lastUnusedOfferReason"] for q in queue["queue"]
                         if q["app"]["id"] == "/sec/missing"), None)

        reason = wait_until(lambda: (queue_reason() or "").startswith("secret unavailable")
                            and queue_reason(), timeout=30, message="the waiting reason")
        assert reason == ("secret unavailable: secret 'gone' (source /no/such): "
                          "No such file or directory")
        # Refused credentials, and a read-only token trying to write: logged without them.
        for token in (WRONG_TOKEN, READ_TOKEN):
            r = requests.put(f"{base}/v2/apps{APP_ID}", json={"instances": 2}, timeout=10,
                             headers={"Authorization": f"Bearer {token}"})
            assert r.status_code in (401, 403)
        r = requests.get(f"{base}/v2/apps", timeout=10, auth=("any", WRONG_TOKEN))
        assert r.status_code == 401
    finally:
        for proc in reversed(procs):
            proc.stop()
    assert_no_traceback(procs)
    texts = {f"{p.args[2:4]} output": p.full_output() for p in procs}
    texts.update({f"CLI stderr {i}": text for i, text in enumerate(cli_outputs)})
    files = log_files(tmp_path)
    assert any(p.name == "stderr" for p in files), "the executor's sandbox log was not found"
    texts.update({str(p): p.read_text(errors="replace") for p in files})
    leaks = [(value, form, where) for value, shapes in PLANTED.items() for form in shapes
             for where, text in texts.items() if form in text]
    assert not leaks, leaks
