"""The agents' files API (`/files/browse`, `/files/read`, `/files/download`, `/files/debug`),
replayed request by request from a real Mesos 1.12 agent's recorded answers
(`tests/data/mesos-1.12/files_api.json`) against a localmesos sandbox, field by field.

The recorded task printed `hello-stdout` to stdout and `hello-stderr` to stderr; ours does too.
Values that differ by nature (sandbox path, owner, times, the real command executor's own log
lines in stderr) are compared by type and form; everything else by value.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from tests.data import recording
from tests.localmesos.helpers import command_task

RECORDED = recording("files_api.json")
SANDBOX_RE = re.compile(r"/var/lib/mesos/slaves/([^/]+)/frameworks/([^/]+)/executors/([^/]+)"
                        r"/runs/([^/]+)")


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def agent_url(lm, agent_id: str) -> str:
    agent = next(a for a in lm.agents() if a["id"] == agent_id)
    return f"http://{agent['hostname']}:{agent['port']}"


def launch_hello(lm, sched, task_id: str = "hello") -> tuple[str, str, str]:
    """Run the recorded task; return (agent url, its sandbox, framework id)."""
    offer = sched.take_offer()
    sched.driver.launchTasks(offer["id"], [command_task(
        task_id, offer, "echo hello-stdout; echo hello-stderr >&2; sleep 60")])
    sched.wait_state(task_id, "TASK_RUNNING")
    agent_id = offer["agent_id"]["value"]
    url = agent_url(lm, agent_id)
    fid = offer["framework_id"]["value"]
    state = get(url + "/state")
    assert state[0] == 200

    executors = [e for f in json.loads(state[2])["frameworks"] for e in f["executors"]]
    sandbox = next((e["directory"] for e in executors if e["id"] == task_id), None)
    if sandbox is None:  # command tasks have no Executor object in localmesos' agent /state
        runs = lm.work_dir / "slaves" / agent_id / "frameworks" / fid / "executors" / task_id
        sandbox = str(next((runs / "runs").iterdir()))
    # Wait until both lines are written (the shell runs concurrently with TASK_RUNNING).
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if (open(sandbox + "/stderr").read().endswith("hello-stderr\n")
                and open(sandbox + "/stdout").read() == "hello-stdout\n"):
            break
        time.sleep(0.02)
    return url, sandbox, fid


def translate(request: str, sandbox: str, fid: str, eid: str) -> str:
    """The recorded request with the recorded sandbox (and ids) replaced by ours."""
    path, _, query = request.partition("?")
    params = urllib.parse.parse_qsl(query)
    out = []
    for k, v in params:
        if k == "path":
            v = SANDBOX_RE.sub(sandbox, v)
        out.append((k, v))
    return path + ("?" + urllib.parse.urlencode(out) if out else "")


def same_shape(ours: Any, theirs: Any, where: str) -> None:
    assert type(ours) is type(theirs), f"{where}: {type(ours).__name__} vs {type(theirs).__name__}"
    if isinstance(theirs, dict):
        assert sorted(ours) == sorted(theirs), f"{where}: keys {sorted(ours)} vs {sorted(theirs)}"


def test_every_recorded_files_answer_matches_field_by_field(lm, sched):
    url, sandbox, fid = launch_hello(lm, sched)
    recorded_sandbox = RECORDED["sandbox"]
    for answer in RECORDED["answers"]:
        req = answer["request"]
        if req == "/files/debug":
            continue  # compared below with the sandbox ids substituted
        status, headers, body = get(url + translate(req, sandbox, fid, "hello"))
        where = req.split("?")[0] + " " + urllib.parse.unquote(req)[-40:]
        assert status == answer["status"], where
        assert headers["Content-Type"] == answer["headers"]["Content-Type"], where
        if "Content-Disposition" in answer["headers"]:
            assert headers["Content-Disposition"] == answer["headers"]["Content-Disposition"]
        theirs = answer["body"]
        if headers["Content-Type"] != "application/json":
            assert body.decode() == theirs, where
            continue

        ours = json.loads(body)
        same_shape(ours, theirs, where)
        if isinstance(theirs, list):  # browse: one entry per file, same names, fields, types
            assert [e["path"].replace(sandbox, recorded_sandbox) for e in ours] == \
                [e["path"] for e in theirs]
            for o, t in zip(ours, theirs, strict=True):
                same_shape(o, t, where)
                for key in t:
                    same_shape(o[key], t[key], f"{where} {key}")
                assert o["mode"] == t["mode"] and o["nlink"] == t["nlink"]
                assert o["mtime"] == int(o["mtime"]) and abs(o["mtime"] - time.time()) < 120
                if o["path"].endswith("stdout"):
                    assert o["size"] == t["size"]  # the same 13 bytes
            continue
        for key in theirs:
            same_shape(ours[key], theirs[key], f"{where} {key}")
        assert ours["offset"] == theirs["offset"], where
        if "stderr" in req:  # the real command executor logs its own lines before ours
            assert ours["data"].endswith("hello-stderr\n")
        else:
            assert ours["data"] == theirs["data"], where


def test_debug_lists_the_three_names_of_a_sandbox(lm, sched):
    url, sandbox, fid = launch_hello(lm, sched, "dbg")

    status, headers, body = get(url + "/files/debug")
    assert status == 200 and headers["Content-Type"] == "application/json"
    ours = json.loads(body)
    recorded_sandbox = RECORDED["sandbox"]
    m = SANDBOX_RE.match(recorded_sandbox)
    assert m is not None
    agent_id, rec_fid, rec_eid, _ = m.groups()
    work = sandbox[:sandbox.index("/slaves/")]

    def rec_form(text: str) -> str:
        return (text.replace(sandbox, recorded_sandbox).replace(work, "/var/lib/mesos")
                .replace(fid, rec_fid).replace("/dbg/", f"/{rec_eid}/"))
    theirs = next(a["body"] for a in RECORDED["answers"] if a["request"] == "/files/debug")
    mine = {rec_form(k): rec_form(v) for k, v in ours.items()}
    agent_now = sandbox.split("/slaves/")[1].split("/")[0]
    mine = {k.replace(agent_now, agent_id): v.replace(agent_now, agent_id)
            for k, v in mine.items()}
    assert mine == theirs


def test_virtual_path_traversal_and_bad_queries(lm, sched, tmp_path):
    url, sandbox, fid = launch_hello(lm, sched, "virt")

    latest = f"/frameworks/{fid}/executors/virt/runs/latest"
    status, _, body = get(url + "/files/read?" + urllib.parse.urlencode(
        {"path": latest + "/stdout", "offset": 6, "length": 3}))
    assert status == 200 and json.loads(body) == {"data": "std", "offset": 6}
    status, _, body = get(url + "/files/browse?" + urllib.parse.urlencode({"path": latest}))
    assert status == 200
    assert [e["path"] for e in json.loads(body)] == [latest + "/stderr", latest + "/stdout"]
    # Nothing outside an attached sandbox is served, however the path is spelled.
    (tmp_path / "secret").write_text("no")
    for path in (latest + "/../../../../../../../../../" + str(tmp_path / "secret"), "/etc/passwd",
                 str(tmp_path / "secret")):
        status, _, _ = get(url + "/files/read?" + urllib.parse.urlencode(
            {"path": path, "offset": 0}))
        assert status == 404, path
    status, ctype, body = get(url + "/files/read?offset=0")
    assert status == 400 and body.startswith(b"Expecting 'path=value'")
    status, _, body = get(url + "/files/read?" + urllib.parse.urlencode(
        {"path": latest + "/stdout", "offset": "x"}))
    assert status == 400 and body.startswith(b"Failed to parse offset")
    status, _, body = get(url + "/files/read?" + urllib.parse.urlencode(
        {"path": latest, "offset": 0}))
    assert status == 400


def test_logs_of_a_finished_task_stay_readable(lm, sched):
    offer = sched.take_offer()
    sched.driver.launchTasks(offer["id"], [command_task("done", offer, "echo bye")])
    sched.wait_state("done", "TASK_FINISHED")
    url = agent_url(lm, offer["agent_id"]["value"])
    fid = offer["framework_id"]["value"]

    status, _, body = get(url + "/files/read?" + urllib.parse.urlencode(
        {"path": f"/frameworks/{fid}/executors/done/runs/latest/stdout", "offset": 0}))
    assert status == 200 and json.loads(body) == {"data": "bye\n", "offset": 0}


def test_resolve_stays_inside_attached_sandboxes(tmp_path):
    from localmesos.files_api import SandboxFiles
    from localmesos.httpserver import Request

    work = tmp_path / "work"
    box = work / "slaves" / "S0" / "frameworks" / "F" / "executors" / "E" / "runs" / "C"
    box.mkdir(parents=True)
    (box / "stdout").write_text("x")
    (tmp_path / "secret").write_text("no")
    (box / "escape").symlink_to(tmp_path / "secret")
    files = SandboxFiles()
    files.attach_sandbox(str(work), "S0", "F", "E", str(box))
    latest = "/frameworks/F/executors/E/runs/latest"
    assert files.resolve(latest + "/stdout") == str(box / "stdout")
    assert files.resolve(str(box.parent / "latest" / "stdout")) == str(box / "stdout")
    assert files.resolve(latest) == str(box)
    assert files.resolve(latest + "/escape") is None
    assert files.resolve(latest + "/../../E2/runs/latest") is None
    assert files.resolve("/frameworks/F") is None
    assert files.resolve("relative/stdout") is None
    # A NUL is refused (404), not passed to the OS (ValueError: a 500), however it is placed.
    assert files.resolve(latest + "/stdout\x00") is None
    assert files.resolve(latest + "/x\x00/../stdout") is None
    for endpoint in ("read", "browse", "download"):
        answer = files.handle(Request("GET", f"/files/{endpoint}",
                                      {"path": latest + "/stdout\x00", "offset": "0"}, {}, b""))
        assert answer.status == 404, endpoint


def test_edge_answers_match_a_real_agent(lm, sched):
    """`files_api_edges.json`: a real 1.12 agent's answers to malformed queries, a file browsed,
    a directory read or downloaded, a `..` escape, the removed `.json` forms."""
    url, sandbox, fid = launch_hello(lm, sched, "edge")
    for answer in recording("files_api_edges.json")["answers"]:
        req = answer["request"].replace("{fw}", fid).replace("{executor}", "edge")
        status, headers, body = get(url + req)
        assert status == answer["status"], req
        assert headers.get("Content-Type") == answer["headers"].get("Content-Type"), req
        assert headers.get("Content-Disposition") == answer["headers"].get(
            "Content-Disposition"), req
        theirs = answer["body"]
        if isinstance(theirs, str):
            assert body.decode() == theirs, req
        elif isinstance(theirs, list) and theirs:  # the sandbox listing: names and fields
            ours = json.loads(body)
            assert [e["path"].replace(fid, "{fw}").replace("/edge/", "/{executor}/")
                    for e in ours] == [e["path"] for e in theirs]
            assert all(sorted(o) == sorted(t) for o, t in zip(ours, theirs, strict=True))
        else:
            assert json.loads(body) == theirs, req
