"""Framework authentication on localmesos's scheduler API (a master run with
`--authenticate_http_frameworks --credentials=FILE` and the basic authenticator), and
`accessd scheduler` passing its principal and secret.

Raw HTTP first: no credential, a wrong secret, an unknown principal, another scheme get Mesos's
answer (401, `WWW-Authenticate: Basic realm="mesos-master-scheduler"`, `401 Unauthorized.`:
recorded from a real Mesos 1.12 master run with `--authenticate_http_frameworks
--http_framework_authenticators=basic --credentials`); a principal
that is not the framework's gets Mesos's 400. Then the real scheduler: with the right secret
(from the environment or a file) it registers and the master shows its principal; with a wrong
one it exits 1 saying why, without a traceback, and the secret appears in no output.
"""

from __future__ import annotations

import base64
import http.client
import json

import pytest

from tests.data import recording
from tests.fixtures_mesos import start_localmesos
from tests.fixtures_scheduler import start_scheduler
from tests.support import PYTHON, REPO, Proc, assert_no_traceback

PRINCIPAL, SECRET = "accessd", "s3cret-Planted-8c1f"
OTHER, OTHER_SECRET = "other-fw", "0ther-Planted-77aa"
CHALLENGE = 'Basic realm="mesos-master-scheduler"'


def basic(principal: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{principal}:{secret}".encode()).decode()


def subscribe_call(principal: str | None = PRINCIPAL) -> dict:
    info = {"user": "test", "name": "auth-test", "failover_timeout": 60}
    if principal is not None:
        info["principal"] = principal
    return {"type": "SUBSCRIBE", "subscribe": {"framework_info": info}}


def post(port: int, call: dict, authorization: str | None,
         extra: dict | None = None) -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = {"Content-Type": "application/json", "Accept": "application/json", **(extra or {})}
    if authorization is not None:
        headers["Authorization"] = authorization
    conn.request("POST", "/api/v1/scheduler", json.dumps(call), headers)
    return conn.getresponse()


def first_record(r: http.client.HTTPResponse) -> dict:
    """The first RecordIO record (`<length>\\n<json>`) of a chunked event stream."""
    buf = b""
    while True:
        length, sep, rest = buf.partition(b"\n")
        if sep and len(rest) >= int(length):
            return json.loads(rest[:int(length)])
        buf += r.read1(4096)


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    work = tmp_path_factory.mktemp("fwauth")
    creds = work / "credentials.json"
    creds.write_text(json.dumps({"credentials": [
        {"principal": PRINCIPAL, "secret": SECRET},
        {"principal": OTHER, "secret": OTHER_SECRET}]}))
    lm = start_localmesos(work, agents=1, extra_args=("--credentials", str(creds)))
    yield lm, work
    lm.stop()
    assert_no_traceback([lm.proc])
    assert SECRET not in lm.proc.full_output() and OTHER_SECRET not in lm.proc.full_output()


@pytest.mark.parametrize("authorization", [
    None, basic(PRINCIPAL, "wrong"), basic("nobody", SECRET), f"Bearer {SECRET}",
    "Basic not-base64!", basic(PRINCIPAL, SECRET).lower(), basic(PRINCIPAL, SECRET + ":x")])
def test_missing_or_wrong_credentials_get_mesos_401(secured, authorization):
    lm, _ = secured
    r = post(lm.port, subscribe_call(), authorization)
    assert r.status == 401
    assert r.getheader("WWW-Authenticate") == CHALLENGE
    assert r.getheader("Content-Type") == "text/plain; charset=utf-8"
    assert r.read() == b"401 Unauthorized."  # as a real Mesos 1.12 master answers


def test_principal_must_match_the_framework_info(secured):
    lm, _ = secured
    r = post(lm.port, subscribe_call(PRINCIPAL), basic(OTHER, OTHER_SECRET))
    assert r.status == 400
    assert r.read().decode() == (
        "Failed to validate scheduler::Call: Authenticated principal 'other-fw' does not match "
        "principal 'accessd' set in `FrameworkInfo`")


def test_right_credentials_subscribe_and_calls_need_the_same_principal(secured):
    lm, _ = secured
    r = post(lm.port, subscribe_call(None), basic(PRINCIPAL, SECRET))  # no principal: set
    assert r.status == 200
    stream_id = r.getheader("Mesos-Stream-Id")
    event = first_record(r)
    assert event["type"] == "SUBSCRIBED"
    fid = event["subscribed"]["framework_id"]["value"]
    fw = next(f for f in lm.state()["frameworks"] if f["id"] == fid)
    assert fw["principal"] == PRINCIPAL  # set from the authenticated principal, as Mesos does
    call = {"type": "REVIVE", "framework_id": {"value": fid}}
    other = post(lm.port, call, basic(OTHER, OTHER_SECRET), {"Mesos-Stream-Id": stream_id})
    assert other.status == 400
    assert other.read().decode() == ("Authenticated principal 'other-fw' does not match "
                                     "principal 'accessd' set in `FrameworkInfo`")
    assert post(lm.port, call, None, {"Mesos-Stream-Id": stream_id}).status == 401
    ok = post(lm.port, call, basic(PRINCIPAL, SECRET), {"Mesos-Stream-Id": stream_id})
    assert ok.status == 202
    r.close()


def test_scheduler_with_the_secret_in_a_file_registers(secured, tmp_path):
    lm, _ = secured
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    proc = start_scheduler(f"127.0.0.1:{lm.port}", tmp_path / "state.db",
                           extra_args=("--principal", PRINCIPAL, "--secret-file", str(secret_file)))
    fw = next(f for f in lm.state()["frameworks"] if f["id"] == proc.framework_id)
    assert fw["principal"] == PRINCIPAL and fw["active"]
    proc.stop()
    assert_no_traceback([proc])
    assert SECRET not in proc.full_output()


def test_scheduler_with_a_wrong_secret_exits_saying_why(secured, tmp_path):
    lm, _ = secured
    proc = Proc([PYTHON, "-m", "accessd.cli", "scheduler", "--master", f"127.0.0.1:{lm.port}",
                 "--state", str(tmp_path / "state.db"), "--principal", PRINCIPAL],
                env={"ACCESSD_FRAMEWORK_SECRET": "not-" + SECRET}, cwd=REPO)
    try:
        assert proc.popen.wait(30) == 1
    finally:
        proc.stop()
    out = proc.full_output()
    assert "refused the framework's credentials (401 Unauthorized)" in out, out
    assert SECRET not in out
    assert_no_traceback([proc])


def test_every_recorded_answer_of_a_real_master_is_replayed(tmp_path):
    """The same requests as `tests/data/mesos-1.12/framework_auth.json`, recorded from a real
    Mesos 1.12 master, get the same status, headers and body from localmesos."""
    rec = recording("framework_auth.json")
    creds = tmp_path / "credentials.json"
    creds.write_text(json.dumps({"credentials": rec["credentials"]}))
    lm = start_localmesos(tmp_path, agents=1, extra_args=("--credentials", str(creds)))
    try:
        secrets = {c["principal"]: c["secret"] for c in rec["credentials"]}
        auth = {"no Authorization": None, "wrong secret": basic("accessd", "bad"),
                "unknown principal": basic("nobody", secrets["accessd"]),
                "Bearer scheme": "Bearer " + secrets["accessd"], "not base64": "Basic not-base64!",
                "secret with a colon": basic("accessd", secrets["accessd"] + ":x"),
                "another principal than FrameworkInfo's": basic("other", secrets["other"])}
        answers = {a["case"]: a for a in rec["answers"]}
        for case, authorization in auth.items():
            r = post(lm.port, subscribe_call("accessd"), authorization)
            want = answers[case]
            got = {"status": r.status, "body": r.read().decode(),
                   "headers": {k: r.getheader(k) for k in want["headers"]}}
            assert got == {k: want[k] for k in ("status", "body", "headers")}, case
        stream = post(lm.port, subscribe_call(None), basic("accessd", secrets["accessd"]))
        assert stream.status == answers["subscribe without principal, right credentials"]["status"]
        fid = first_record(stream)["subscribed"]["framework_id"]["value"]
        sid = {"Mesos-Stream-Id": stream.getheader("Mesos-Stream-Id")}
        revive = {"type": "REVIVE", "framework_id": {"value": fid}}
        for case, principal in (("call by another principal", "other"),
                                ("call by the framework's principal", "accessd")):
            r = post(lm.port, revive, basic(principal, secrets[principal]), sid)
            want = answers[case]
            assert (r.status, r.read().decode()) == (want["status"], want["body"]), case
            assert r.getheader("Content-Type") == want["headers"].get("Content-Type"), case
        fw = next(f for f in lm.state()["frameworks"] if f["id"] == fid)
        assert fw["principal"] == answers["state: principal set from the authenticated one"][
            "principal"]
        stream.close()
    finally:
        lm.stop()
    assert_no_traceback([lm.proc])


def test_credentials_file_forms(tmp_path):
    from localmesos.framework_auth import CredentialsError, load_credentials

    text = tmp_path / "creds.txt"
    text.write_text("accessd s1\n\nother   s2\n")
    assert load_credentials(str(text)) == {"accessd": "s1", "other": "s2"}
    assert load_credentials(f"file://{text}") == {"accessd": "s1", "other": "s2"}
    for bad in ("accessd\n", '{"credentials": [{"secret": "x"}]}', '{"creds": []}', ""):
        text.write_text(bad)
        with pytest.raises(CredentialsError):
            load_credentials(str(text))
    with pytest.raises(CredentialsError, match="cannot read"):
        load_credentials(str(tmp_path / "missing"))
    # localmesos refuses to start on a bad file, in one line (argparse), not a traceback
    lm = Proc([PYTHON, "-m", "localmesos", "--port", "0", "--credentials",
               str(tmp_path / "missing")], cwd=REPO)
    assert lm.popen.wait(30) == 2
    lm.stop()
    assert "cannot read credentials file" in lm.full_output()
    assert_no_traceback([lm])
